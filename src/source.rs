//! Uniform access to the messages of one source folder, whatever its format: an opened folder
//! yields references in source order, in chunks of bounded size, and each reference loads into
//! the bytes to write (borrowed from the mbox mapping, or read from the Maildir file) with its
//! metadata. sync, verify and inspect all read through here, so they agree on what a message is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Problem, Result};
use crate::fsx;
use crate::message::Meta;
use crate::store::Location;
use crate::store::maildir::read::{self as mdread, MaildirEntry, ScanOptions};
use crate::store::mbox::read::{MboxFile, ReadOptions};
use crate::store::mbox::split::{Entry, Splitter};

/// Messages per chunk, and bytes per chunk for files read into memory.
const CHUNK_MESSAGES: usize = 1024;
const CHUNK_BYTES: u64 = 16 << 20;

pub enum Opened {
    Mbox(Arc<MboxFile>),
    Maildir { dir: PathBuf, entries: Vec<MaildirEntry>, follow_symlinks: bool },
}

#[derive(Debug, Clone)]
pub enum Ref {
    Mbox(Entry),
    Maildir(usize),
}

/// Where a message came from, for reports and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Mbox { path: PathBuf, offset: u64, len: u64 },
    File(PathBuf),
}

impl Origin {
    pub fn problem(&self, reason: impl Into<String>) -> Problem {
        match self {
            Origin::Mbox { path, offset, .. } => Problem::at_offset(path, *offset, reason),
            Origin::File(p) => Problem::new(p, reason),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Origin::Mbox { path, .. } | Origin::File(path) => path,
        }
    }
}

pub enum Body<'a> {
    Slices(Vec<&'a [u8]>),
    Owned(Vec<u8>),
}

impl Body<'_> {
    pub fn pieces(&self) -> Vec<&[u8]> {
        match self {
            Body::Slices(v) => v.clone(),
            Body::Owned(b) => vec![b.as_slice()],
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Body::Slices(v) => v.iter().map(|p| p.len() as u64).sum(),
            Body::Owned(b) => b.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Loaded<'a> {
    pub body: Body<'a>,
    pub meta: Meta,
    pub origin: Origin,
    pub pseudo: bool,
    pub truncated: Option<&'static str>,
    pub expunged: bool,
    pub partial: bool,
}

impl Opened {
    /// Opens a source folder. An mbox that is not an mbox is an error (nothing is read).
    pub fn open(loc: &Location, scan: ScanOptions, problems: &mut Vec<Problem>) -> Result<Opened> {
        match loc {
            Location::MboxFile(p) => {
                let f = MboxFile::open(p)?;
                f.check()?;
                Ok(Opened::Mbox(Arc::new(f)))
            }
            Location::Maildir(dir) => {
                let kw = mdread::keyword_map(dir);
                let entries = mdread::messages(dir, &kw, scan, problems);
                Ok(Opened::Maildir { dir: dir.clone(), entries, follow_symlinks: scan.follow_symlinks })
            }
        }
    }

    /// References in source order, in chunks.
    pub fn chunks<'s>(&'s self, ropts: &ReadOptions) -> Box<dyn Iterator<Item = Vec<Ref>> + 's> {
        match self {
            Opened::Mbox(f) => {
                let mut it: Splitter<'s> = f.entries(ropts);
                Box::new(std::iter::from_fn(move || {
                    let v: Vec<Ref> = it.by_ref().take(CHUNK_MESSAGES).map(Ref::Mbox).collect();
                    (!v.is_empty()).then_some(v)
                }))
            }
            Opened::Maildir { entries, .. } => {
                let mut i = 0;
                Box::new(std::iter::from_fn(move || {
                    let start = i;
                    let mut bytes = 0u64;
                    while i < entries.len() && i - start < CHUNK_MESSAGES && (bytes < CHUNK_BYTES || i == start) {
                        bytes += entries[i].size;
                        i += 1;
                    }
                    (i > start).then(|| (start..i).map(Ref::Maildir).collect())
                }))
            }
        }
    }

    pub fn origin(&self, r: &Ref) -> Origin {
        match (self, r) {
            (Opened::Mbox(f), Ref::Mbox(e)) => Origin::Mbox {
                path: f.path.clone(),
                offset: e.from_line.start as u64,
                len: (e.msg.end - e.from_line.start) as u64,
            },
            (Opened::Maildir { dir, entries, .. }, Ref::Maildir(i)) => {
                Origin::File(entries.get(*i).map_or_else(|| dir.clone(), |e| e.path(dir)))
            }
            (Opened::Mbox(f), _) => Origin::File(f.path.clone()),
            (Opened::Maildir { dir, .. }, _) => Origin::File(dir.clone()),
        }
    }

    /// Metadata known without reading the message (Maildir), for planning.
    pub fn entry(&self, r: &Ref) -> Option<&MaildirEntry> {
        match (self, r) {
            (Opened::Maildir { entries, .. }, Ref::Maildir(i)) => entries.get(*i),
            _ => None,
        }
    }

    pub fn load<'a>(&'a self, r: &Ref, ropts: &ReadOptions) -> Result<Loaded<'a>, Problem> {
        let origin = self.origin(r);
        match (self, r) {
            (Opened::Mbox(f), Ref::Mbox(e)) => {
                let m = f.message(e, ropts);
                Ok(Loaded {
                    body: Body::Slices(m.pieces),
                    meta: m.meta,
                    origin,
                    pseudo: m.pseudo,
                    truncated: m.truncated,
                    expunged: m.mozilla_expunged,
                    partial: m.mozilla_partial,
                })
            }
            (Opened::Maildir { entries, follow_symlinks, .. }, Ref::Maildir(i)) => {
                let e = entries.get(*i).ok_or_else(|| origin.problem("message vanished"))?;
                let data = fsx::read_message_file(origin.path(), *follow_symlinks).map_err(|err| err.problem())?;
                if data.is_empty() {
                    return Err(origin.problem("empty file (0 bytes) is not a message; skipped"));
                }
                Ok(Loaded {
                    body: Body::Owned(data),
                    meta: e.meta.clone(),
                    origin,
                    pseudo: false,
                    truncated: None,
                    expunged: false,
                    partial: false,
                })
            }
            _ => Err(origin.problem("internal: reference of another folder")),
        }
    }

    /// The chunk `refs` is finished: its mapped pages need not stay resident (memory stays
    /// bounded whatever the mbox size; the pages stay in the page cache).
    pub fn release(&self, refs: &[Ref]) {
        if let (Opened::Mbox(f), Some(Ref::Mbox(e))) = (self, refs.last()) {
            f.release_before(e.msg.end);
        }
    }

    /// Stored bytes of the folder (mbox: message bytes as stored; Maildir: file sizes).
    pub fn stored_len(&self, r: &Ref) -> u64 {
        match (self, r) {
            (Opened::Mbox(_), Ref::Mbox(e)) => (e.msg.end - e.msg.start) as u64,
            (Opened::Maildir { entries, .. }, Ref::Maildir(i)) => entries.get(*i).map_or(0, |e| e.size),
            _ => 0,
        }
    }
}
