//! What happened to each message: counts, events, duplicates.

use std::collections::HashSet;
use std::path::Path;

use super::SyncOptions;
use super::load::Prepared;
use crate::error::Problem;
use crate::events::{Event, Recorder};
use crate::folder::FolderName;
use crate::message::DateSource;
use crate::report::FolderOutcome;
use crate::sync::plan::Hash;

/// What happened to one source message.
pub(super) enum Fate {
    Copied { sha: Hash, size: u64, name: String },
    Skipped { sha: Hash, reason: &'static str },
    Filtered { reason: &'static str },
    FlagsUpdated { sha: Hash, name: String },
    Failed(Problem),
    NotMail,
}

/// Counts that do not depend on the target; false when the message is not to be synced.
pub(super) fn account(p: &Prepared<'_>, opts: &SyncOptions, out: &mut FolderOutcome) -> Option<&'static str> {
    let l = &p.loaded;
    if l.pseudo {
        out.counts.pseudo_skipped += 1;
        return Some("pseudo");
    }
    if l.gone {
        out.counts.vanished_source += 1;
        return Some("gone");
    }
    out.counts.messages_source += 1;
    if let Some(why) = l.truncated {
        out.errors.push(l.origin.problem(format!("{why}; the bytes present are still written")));
    }
    if l.expunged {
        out.counts.expunged_kept += 1;
    }
    if l.partial {
        out.warnings
            .push(l.origin.problem("Thunderbird marks this message partial (body not downloaded): copied as it is"));
    }
    if !matches!(l.meta.date_source, DateSource::FromLine | DateSource::Mtime) {
        *out.counts.date_fallbacks.entry(date_source_name(l.meta.date_source).to_string()).or_default() += 1;
    }
    opts.filters.reason(l.body.len(), l.meta.date)
}

pub fn date_source_name(d: DateSource) -> &'static str {
    match d {
        DateSource::Mtime => "mtime",
        DateSource::FromLine => "from-line",
        DateSource::Received => "received-header",
        DateSource::DateHeader => "date-header",
        DateSource::FileMtime => "file-mtime",
    }
}
pub(super) fn tally(
    p: &Prepared<'_>,
    fate: Fate,
    tn: &FolderName,
    tdir: &Path,
    seen: &mut HashSet<[u8; 8]>,
    rec: &dyn Recorder,
    out: &mut FolderOutcome,
) {
    let l = &p.loaded;
    rec.record(Event::Progress { bytes: l.body.len() });
    let mut note_hash = |sha: &Hash, out: &mut FolderOutcome| {
        if !seen.insert(hash_key(sha)) {
            out.counts.duplicates_source += 1;
        }
    };
    match fate {
        Fate::Copied { sha, size, name } => {
            note_hash(&sha, out);
            out.counts.transferred += 1;
            out.counts.bytes_transferred += size;
            out.counts.biggest_message = out.counts.biggest_message.max(size);
            rec.record(Event::Copy {
                folder: tn.clone(),
                origin: l.origin.clone(),
                target: tdir.join(&name),
                sha256: sha,
                size,
                meta: l.meta.clone(),
            });
        }
        Fate::Skipped { sha, reason } => {
            note_hash(&sha, out);
            out.counts.skipped_existing += 1;
            rec.record(Event::Skip {
                folder: tn.clone(),
                origin: l.origin.clone(),
                reason: reason.to_string(),
                sha256: Some(sha),
            });
        }
        Fate::Filtered { reason } => {
            *out.counts.skipped_filtered.entry(reason.to_string()).or_default() += 1;
            rec.record(Event::Skip {
                folder: tn.clone(),
                origin: l.origin.clone(),
                reason: reason.to_string(),
                sha256: None,
            });
        }
        Fate::FlagsUpdated { sha, name } => {
            note_hash(&sha, out);
            out.counts.flags_updated += 1;
            out.counts.skipped_existing += 1;
            rec.record(Event::Flags {
                folder: tn.clone(),
                origin: l.origin.clone(),
                target: tdir.join(&name),
                sha256: sha,
                meta: l.meta.clone(),
            });
        }
        Fate::Failed(problem) => {
            rec.record(Event::Error { folder: tn.clone(), problem: problem.clone() });
            out.errors.push(problem);
        }
        Fate::NotMail => {}
    }
}
pub(super) fn hash_key(h: &Hash) -> [u8; 8] {
    let mut k = [0u8; 8];
    k.copy_from_slice(&h[..8]);
    k
}
