//! Events of a run, one per action on a message, for whoever records them (the audit log,
//! the dry-run plan printer). Workers emit; a recorder must be thread-safe.

use std::path::PathBuf;

use crate::error::Problem;
use crate::folder::FolderName;
use crate::message::Hash;
use crate::message::Meta;
use crate::source::Origin;

#[derive(Debug, Clone)]
pub enum Event {
    Plan(String),
    Copy {
        folder: FolderName,
        origin: Origin,
        target: PathBuf,
        sha256: Hash,
        size: u64,
        meta: Meta,
    },
    Flags {
        folder: FolderName,
        origin: Origin,
        target: PathBuf,
        sha256: Hash,
        meta: Meta,
        /// Only its date changes (its flags are right already).
        redate: bool,
    },
    Skip {
        folder: FolderName,
        origin: Origin,
        reason: String,
        sha256: Option<Hash>,
    },
    Delete {
        folder: FolderName,
        target: PathBuf,
        sha256: Hash,
        size: u64,
    },
    Error {
        folder: FolderName,
        problem: Problem,
    },
    /// A folder made in the target by `--folders-only` (to be made, in a dry run).
    Folder {
        folder: FolderName,
        path: PathBuf,
    },
    /// An account file (cPanel metadata) written: `bytes` at `path`, from `from`.
    Metadata {
        path: PathBuf,
        from: PathBuf,
        bytes: u64,
    },
    /// Something of an account file (a line, a filter rule, the file) that the source no
    /// longer has: removed from the target (`--delete`), or kept.
    MetadataGone {
        path: PathBuf,
        what: String,
        removed: bool,
    },
    /// The run has this many folders to go through.
    Folders {
        total: u64,
    },
    /// A folder was opened: this many more stored bytes to go through, and messages when the
    /// listing says (a Maildir's; an mbox is counted as it is read).
    Discovered {
        folder: FolderName,
        bytes: u64,
        messages: Option<u64>,
    },
    /// A folder is done with.
    FolderDone {
        folder: FolderName,
    },
    /// One more source message dealt with (whatever its fate), of this many stored bytes.
    Progress {
        bytes: u64,
    },
}

pub trait Recorder: Sync {
    fn record(&self, e: Event);
}

/// Records nothing.
pub struct Discard;

impl Recorder for Discard {
    fn record(&self, _: Event) {}
}

/// Fans events out to several recorders.
pub struct Tee<'a>(pub Vec<&'a dyn Recorder>);

impl Recorder for Tee<'_> {
    fn record(&self, e: Event) {
        for r in &self.0 {
            r.record(e.clone());
        }
    }
}
