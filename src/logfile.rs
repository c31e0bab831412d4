//! `--log-file`: a plain, timestamped log a cron job keeps, as rsync's `--log-file` does.
//!
//! Each run appends a start line (version, host, user, command line, source, target), one
//! itemized line per action (copy, flags, re-date, delete, metadata; "would …" in a dry run),
//! a line per warning and error of the run, and an end line with the summary. Every line starts with the time in RFC 3339
//! UTC and the process id, and is written with one `write` to a file opened `O_APPEND`, so
//! lines of runs that share a log never mix. The file is opened as the audit log is (created
//! 0600, never through a symlink, one hard link).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::error::Result;
use crate::events::{Event, Recorder};
use crate::report::Summary;
use crate::source::Origin;

pub struct LogFile {
    out: Mutex<File>,
    dry_run: bool,
}

/// The name of the user the run is (its uid when it has none).
pub fn user() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(|| uid.to_string(), |u| u.name)
}

/// The time now, RFC 3339 UTC to the second.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn shown(o: &Origin) -> String {
    match o {
        Origin::File(p) => p.display().to_string(),
        Origin::Mbox { path, offset, len } => format!("{} at byte {offset} ({len} bytes)", path.display()),
    }
}

impl LogFile {
    /// Opens `path` and appends the run's start line.
    pub fn open(path: &Path, source: &str, target: &str, dry_run: bool, zone: &str) -> Result<LogFile> {
        let log = LogFile { out: Mutex::new(crate::audit::open_append(path, "log file")?), dry_run };
        let argv: Vec<String> = std::env::args().map(|a| crate::folder::sanitize(&a)).collect();
        log.line(&format!(
            "start mailmover {} host={} user={} source={source} target={target}{} zone-less From_ dates in {zone} command: {}",
            env!("CARGO_PKG_VERSION"),
            crate::store::mbox::lock::host(),
            user(),
            if dry_run { " (dry run)" } else { "" },
            argv.join(" ")
        ));
        Ok(log)
    }

    fn line(&self, text: &str) {
        let line = format!("{} [{}] {}\n", now(), std::process::id(), crate::folder::sanitize(text));
        if let Ok(mut f) = self.out.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// Appends the end line: the counts and whether the run is complete.
    pub fn finish(&self, s: &Summary) {
        let c = &s.counts;
        let state = match (s.dry_run, s.complete, s.signal) {
            (_, _, Some(sig)) => format!("interrupted by {}", crate::interrupt::name(sig)),
            (true, _, None) => "dry run: nothing was written".into(),
            (false, _, None) if s.folders_only && s.errors.is_empty() => {
                format!("folders only: {} made", s.folders_created.unwrap_or(0))
            }
            (false, true, None) => "complete".into(),
            (false, false, None) => format!("NOT complete: {} problem(s)", s.errors.len()),
        };
        // Every problem of the run, also those found where no event is sent (listings, state).
        for w in &s.warnings {
            self.line(&format!("warning {w}"));
        }
        for e in &s.errors {
            self.line(&format!("error {e}"));
        }
        let (copied, flagged, deleted) = if s.dry_run {
            ("would copy", "would update flags", "would delete")
        } else {
            ("transferred", "flags", "deleted")
        };
        self.line(&format!(
            "end {state}; exit {}; folders {} source {} target {} {copied} {} ({} bytes) {flagged} {} {deleted} {} failed {} warnings {} in {:.2} s",
            s.exit_code().code(),
            c.folders,
            c.messages_source,
            c.messages_target,
            c.transferred,
            c.bytes_transferred,
            c.flags_updated,
            c.deleted_target,
            c.failed,
            s.warnings.len(),
            s.seconds
        ));
    }
}

impl Recorder for LogFile {
    fn record(&self, e: Event) {
        let would = if self.dry_run { "would " } else { "" };
        let text = match e {
            Event::Copy { folder, origin, target, sha256, size, .. } => {
                let to = if self.dry_run { String::new() } else { format!(" -> {}", target.display()) };
                format!(
                    "{would}copy {}: {}{to} ({size} bytes, sha256 {})",
                    folder.as_str(),
                    shown(&origin),
                    hex::encode(sha256)
                )
            }
            Event::Flags { folder, target, meta, redate, .. } => {
                if redate {
                    format!("{would}re-date {}: {} to {}", folder.as_str(), target.display(), meta.date)
                } else {
                    let kw: Vec<&str> = meta.keywords.iter().collect();
                    format!(
                        "{would}set flags {}: {} to \"{}\"{}{}",
                        folder.as_str(),
                        target.display(),
                        meta.flags,
                        if kw.is_empty() { "" } else { " " },
                        kw.join(" ")
                    )
                }
            }
            Event::Delete { folder, target, size, .. } => {
                format!("{would}delete {}: {} ({size} bytes)", folder.as_str(), target.display())
            }
            Event::Folder { folder, path } => format!("{would}make folder {}: {}", folder.as_str(), path.display()),
            Event::Metadata { path, from, bytes } => {
                format!("{would}write metadata {} ({bytes} bytes, from {})", path.display(), from.display())
            }
            Event::MetadataGone { path, what, removed: true } => {
                format!("{would}remove metadata {what} from {} (gone from the source)", path.display())
            }
            Event::MetadataGone { path, what, removed: false } => {
                format!("keep metadata {what} in {}: gone from the source (--delete would remove it)", path.display())
            }
            Event::Plan(l) if self.dry_run => format!("plan {l}"),
            // Errors go in with the summary, all of them (see `finish`).
            Event::Plan(_)
            | Event::Error { .. }
            | Event::Skip { .. }
            | Event::Discovered { .. }
            | Event::Folders { .. }
            | Event::FolderDone { .. }
            | Event::Progress { .. } => return,
        };
        self.line(&text);
    }
}
