//! Loading a chunk of source messages in parallel, hashed for matching.

use rayon::prelude::*;

use super::SyncOptions;
use super::plan::Identity;
use super::planned::Place;
use crate::error::{Problem, Result};
use crate::fsx;
use crate::message::Meta;
use crate::source::{Body, Loaded, Opened, Origin, Ref};
use crate::store::maildir::read::{MaildirEntry, Sub};
use crate::store::mbox::read::ReadOptions;
use crate::sync::plan::{Decision, Hash};

/// A source message loaded for a folder's run, with its hash and the decision taken on it.
pub(super) struct Prepared<'a> {
    pub(super) loaded: Loaded<'a>,
    pub(super) hash: Option<Hash>,
    pub(super) decision: Option<Decision>,
    /// An mbox message's place in its file (to be had again after the plan).
    pub(super) place: Option<Place>,
    /// The target message the decision names (a copy to re-flag).
    pub(super) held: Option<Box<MaildirEntry>>,
    /// Its hash: not the source message's when headers matched them (`--identity headers`),
    /// and the target's cache must say what the target file holds.
    pub(super) held_hash: Option<Hash>,
    /// Matched to its target message by headers, not bytes (`--identity headers`).
    pub(super) by_headers: bool,
    /// Its place in the source order, when it is fed out of that order.
    pub(super) seq: Option<u64>,
    /// Its hash came from the source cache.
    pub(super) cached: bool,
    /// The `Q<n>` its copy's name gets (0: none).
    pub(super) q: u32,
}

impl<'a> Prepared<'a> {
    pub(super) fn new(loaded: Loaded<'a>, hash: Option<Hash>) -> Prepared<'a> {
        Prepared {
            loaded,
            hash,
            decision: None,
            place: None,
            held: None,
            held_hash: None,
            by_headers: false,
            seq: None,
            cached: false,
            q: 0,
        }
    }

    /// Where its bytes can be had again: an mbox message's range, a Maildir file (as listed,
    /// or where it moved), or its bytes themselves when they came from memory.
    pub(super) fn place(&self) -> Option<Place> {
        if let Some(p) = &self.place {
            return Some(p.clone());
        }
        let Origin::File(path) = &self.loaded.origin else { return None };
        match &self.loaded.key {
            Some(k) => {
                let sub = match path.parent().and_then(|d| d.file_name()).map(|n| n.as_encoded_bytes()) {
                    Some(b"new") => Sub::New,
                    _ => Sub::Cur,
                };
                Some(Place::Maildir(Box::new(MaildirEntry {
                    sub,
                    name: path.file_name()?.as_encoded_bytes().to_vec(),
                    size: k.size,
                    mtime_ns: k.mtime_ns,
                    meta: self.loaded.meta.clone(),
                    ino: k.ino,
                    uid: self.loaded.uid,
                })))
            }
            None => match &self.loaded.body {
                Body::Owned(data) => Some(Place::Memory { origin: path.clone(), data: data.clone() }),
                _ => None,
            },
        }
    }
}

/// Loads a chunk in parallel, hashing when the target has something to match against.
pub(super) fn load_chunk<'a>(
    opened: &'a Opened,
    refs: &[Ref],
    opts: &SyncOptions,
    need_hash: Option<Identity>,
) -> Vec<Result<Prepared<'a>, Problem>> {
    // From a cold cache every file of the chunk is opened and asked for at once, then read
    // through the same descriptor: the disk gets a queue.
    let mut ahead: Vec<Option<fsx::MessageFile>> = Vec::new();
    if fsx::source_is_cold() {
        ahead = refs.par_iter().map(|r| opened.open_ahead(r)).collect();
    }
    ahead.resize_with(refs.len(), || None);
    refs.par_iter()
        .zip(ahead.into_par_iter())
        .map(|(r, file)| {
            let loaded = opened.load_from(r, &opts.read, file)?;
            // A mapped file is always hashed: what is written is checked against it.
            let need = need_hash.or(matches!(loaded.body, Body::Mapped(_)).then_some(Identity::Exact));
            let hash = need.map(|id| id.hash(&loaded.body.pieces()));
            let mut p = Prepared::new(loaded, hash);
            if let Ref::Mbox(e) = r {
                p.place = Some(Place::Mbox(e.clone()));
            }
            Ok(p)
        })
        .collect()
}

/// What a folder's run asks of the source it is fed from: a source folder on disk
/// ([`Opened`]), or messages already in memory (a cPanel archive's).
pub(super) trait Feed: Sync {
    /// Reads the bytes of a message known from the source cache only.
    fn read_body(&self, l: &mut Loaded<'_>) -> Result<(), Problem>;
    /// The source is still as it was read (else nothing read from it is put in place).
    fn intact(&self) -> Result<(), Problem>;
    /// Entries vanished while the source was listed: its message count is not one to delete by.
    fn unsure_of_gone(&self) -> bool;
    /// The message at `place` again, in state `meta`, its bytes not read yet where they can
    /// be read later ([`Feed::read_body`]).
    fn reload(&self, place: Place, meta: Meta, ropts: &ReadOptions) -> Result<Loaded<'_>, Problem>;
    /// The messages up to `place` are written: their mapped pages may go.
    fn release(&self, place: &Place);
}

impl Feed for Opened {
    fn read_body(&self, l: &mut Loaded<'_>) -> Result<(), Problem> {
        Opened::read_body(self, l)
    }

    fn intact(&self) -> Result<(), Problem> {
        Opened::intact(self)
    }

    fn unsure_of_gone(&self) -> bool {
        Opened::unsure_of_gone(self)
    }

    fn reload(&self, place: Place, meta: Meta, ropts: &ReadOptions) -> Result<Loaded<'_>, Problem> {
        let mut l = match place {
            Place::Maildir(e) => self.unread(&e),
            Place::Mbox(e) => self.load(&Ref::Mbox(e), ropts)?,
            Place::Memory { origin, .. } => {
                return Err(Problem::new(&origin, "internal: a message from memory in a folder read from disk"));
            }
        };
        l.meta = meta;
        Ok(l)
    }

    fn release(&self, place: &Place) {
        if let Place::Mbox(e) = place {
            Opened::release(self, &[Ref::Mbox(e.clone())]);
        }
    }
}

/// Messages whose bytes were read whole before they were fed (a cPanel archive's).
pub(super) struct InMemory;

impl Feed for InMemory {
    fn read_body(&self, l: &mut Loaded<'_>) -> Result<(), Problem> {
        if l.body.is_unread() { Err(l.origin.problem("internal: message bytes not read; not copied")) } else { Ok(()) }
    }

    fn intact(&self) -> Result<(), Problem> {
        Ok(())
    }

    fn unsure_of_gone(&self) -> bool {
        false
    }

    fn reload(&self, place: Place, meta: Meta, _: &ReadOptions) -> Result<Loaded<'_>, Problem> {
        match place {
            Place::Memory { origin, data } => Ok(Loaded::from_memory(origin, data, meta)),
            _ => {
                Err(Problem::new(std::path::Path::new(""), "internal: a message from disk in a folder fed from memory"))
            }
        }
    }

    fn release(&self, _: &Place) {}
}
