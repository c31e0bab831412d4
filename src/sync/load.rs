//! Loading a chunk of source messages in parallel, hashed for matching.

use rayon::prelude::*;

use super::SyncOptions;
use super::plan::Identity;
use crate::error::{Problem, Result};
use crate::fsx;
use crate::source::{Body, Loaded, Opened, Ref};
use crate::store::maildir::read::MaildirEntry;
use crate::sync::plan::{Decision, Hash};
use crate::target_index;

/// A source message loaded for a folder's run, with its hash and the decision taken on it.
pub(super) struct Prepared<'a> {
    pub(super) loaded: Loaded<'a>,
    pub(super) hash: Option<Hash>,
    pub(super) decision: Option<Decision>,
}

/// Loads a chunk in parallel, hashing when the target has something to match against.
pub(super) fn load_chunk<'a>(
    opened: &'a Opened,
    refs: &[Ref],
    opts: &SyncOptions,
    need_hash: Option<Identity>,
    known: Option<&target_index::SourceCache>,
) -> Vec<Result<Prepared<'a>, Problem>> {
    fn hash_known<'r>(
        opened: &Opened,
        known: Option<&target_index::SourceCache>,
        r: &'r Ref,
    ) -> Option<(&'r MaildirEntry, [u8; 32])> {
        let e = opened.entry(r)?;
        known?.get(e.base(), e.size, e.mtime_ns).map(|h| (e, h))
    }
    // From a cold cache every file of the chunk is opened and asked for at once, then read
    // through the same descriptor: the disk gets a queue.
    let mut ahead: Vec<Option<fsx::MessageFile>> = Vec::new();
    if fsx::source_is_cold() {
        ahead = refs
            .par_iter()
            .map(|r| if hash_known(opened, known, r).is_some() { None } else { opened.open_ahead(r) })
            .collect();
    }
    ahead.resize_with(refs.len(), || None);
    refs.par_iter()
        .zip(ahead.into_par_iter())
        .map(|(r, file)| {
            if let Some((e, h)) = hash_known(opened, known, r) {
                return Ok(Prepared { loaded: opened.unread(e), hash: Some(h), decision: None });
            }
            let loaded = opened.load_from(r, &opts.read, file)?;
            // A mapped file is always hashed: what is written is checked against it.
            let need = need_hash.or(matches!(loaded.body, Body::Mapped(_)).then_some(Identity::Exact));
            let hash = need.map(|id| id.hash(&loaded.body.pieces()));
            Ok(Prepared { loaded, hash, decision: None })
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
}
