//! What happened to each message: counts, events, duplicates.

use std::path::Path;

use super::load::Prepared;
use crate::error::Problem;
use crate::events::{Event, Recorder};
use crate::folder::FolderName;
use crate::message::DateSource;
use crate::report::FolderOutcome;
use crate::source::Loaded;
use crate::sync::plan::{Candidate, Decision, FilterReason, Hash, NotMail};

/// What happened to one source message.
pub(super) enum Fate {
    Copied {
        sha: Hash,
        size: u64,
        name: String,
    },
    /// Its copy is there: the same bytes, or (`by_headers`) the same Message-ID, Date and body.
    Skipped {
        sha: Hash,
        by_headers: bool,
    },
    Filtered(FilterReason),
    FlagsUpdated {
        sha: Hash,
        name: String,
    },
    Failed(Problem),
    NotMail,
}

fn not_mail(l: &Loaded<'_>) -> Option<NotMail> {
    if l.pseudo {
        Some(NotMail::Pseudo)
    } else if l.gone {
        Some(NotMail::Gone)
    } else {
        None
    }
}

/// A loaded message as the planner takes it.
pub(super) fn candidate<'p>(p: &'p Prepared<'_>) -> Candidate<'p> {
    Candidate { hash: p.hash.as_ref(), meta: &p.loaded.meta, size: p.loaded.body.len(), not_mail: not_mail(&p.loaded) }
}

/// The fate of a message its decision writes nothing for (`None`: the executor acts).
pub(super) fn settled(d: Decision, p: &Prepared<'_>) -> Option<Fate> {
    match d {
        Decision::Skip(_) => Some(Fate::Skipped { sha: p.hash.unwrap_or_default(), by_headers: p.by_headers }),
        Decision::Filtered(why) => Some(Fate::Filtered(why)),
        Decision::NotMail(_) => Some(Fate::NotMail),
        Decision::Copy | Decision::UpdateFlags(_) | Decision::UpdateDate(_) => None,
    }
}

/// Counts that do not depend on the target, and the problems a message carries.
pub(super) fn account(p: &Prepared<'_>, out: &mut FolderOutcome) {
    let l = &p.loaded;
    match not_mail(l) {
        Some(NotMail::Pseudo) => {
            out.counts.pseudo_skipped += 1;
            return;
        }
        Some(NotMail::Gone) => {
            out.counts.vanished_source += 1;
            return;
        }
        None => {}
    }
    out.counts.messages_source += 1;
    if let Some(why) = l.truncated {
        let why = format!("{why}; the bytes present are still written");
        out.errors.push(l.origin.problem_of(crate::error::Kind::Malformed, why));
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
    rec: &dyn Recorder,
    out: &mut FolderOutcome,
) {
    let l = &p.loaded;
    rec.record(Event::Progress { bytes: l.body.len() });
    match fate {
        Fate::Copied { sha, size, name } => {
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
        Fate::Skipped { sha, by_headers } => {
            out.counts.skipped_existing += 1;
            out.counts.matched_by_headers += u64::from(by_headers);
            rec.record(Event::Skip {
                folder: tn.clone(),
                origin: l.origin.clone(),
                reason: if by_headers { "exists (headers)" } else { "exists" }.into(),
                sha256: Some(sha),
            });
        }
        Fate::Filtered(why) => {
            *out.counts.skipped_filtered.entry(why.as_str().to_string()).or_default() += 1;
            rec.record(Event::Skip {
                folder: tn.clone(),
                origin: l.origin.clone(),
                reason: why.as_str().to_string(),
                sha256: None,
            });
        }
        Fate::FlagsUpdated { sha, name } => {
            out.counts.flags_updated += 1;
            out.counts.matched_by_headers += u64::from(p.by_headers);
            out.counts.skipped_existing += 1;
            rec.record(Event::Flags {
                folder: tn.clone(),
                origin: l.origin.clone(),
                target: tdir.join(&name),
                // The file re-flagged: a copy matched by headers has bytes of its own.
                sha256: p.held_hash.filter(|_| p.by_headers).unwrap_or(sha),
                meta: l.meta.clone(),
                redate: matches!(p.decision, Some(crate::sync::plan::Decision::UpdateDate(_))),
            });
        }
        Fate::Failed(problem) => {
            rec.record(Event::Error { folder: tn.clone(), problem: problem.clone() });
            out.errors.push(problem);
        }
        Fate::NotMail => {}
    }
}
