//! Counters of a run, the `--json` object (docs/json.md) and the human statistics on stderr.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::error::Problem;
use crate::exit::Exit;
use crate::human;

#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Counts {
    pub folders: u64,
    pub messages_source: u64,
    pub messages_target: u64,
    pub transferred: u64,
    pub skipped_existing: u64,
    /// Skipped by a filter, by reason (`max-size`, `min-age`, `max-age`).
    pub skipped_filtered: BTreeMap<String, u64>,
    pub duplicates_source: u64,
    /// Source messages matched to a target message by Message-ID, Date and body, not by
    /// their bytes (`--identity headers`).
    pub matched_by_headers: u64,
    pub flags_updated: u64,
    pub deleted_target: u64,
    pub failed: u64,
    /// Maildir source messages deleted by someone else while the run read the folder.
    pub vanished_source: u64,
    pub bytes_transferred: u64,
    /// UW-IMAP/Dovecot "FOLDER INTERNAL DATA" pseudo messages (not mail, not copied).
    pub pseudo_skipped: u64,
    /// Thunderbird messages marked expunged, kept with the T flag.
    pub expunged_kept: u64,
    /// Messages whose internal date came from a fallback, by source.
    pub date_fallbacks: BTreeMap<String, u64>,
    pub biggest_message: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.folders += o.folders;
        self.messages_source += o.messages_source;
        self.messages_target += o.messages_target;
        self.transferred += o.transferred;
        self.skipped_existing += o.skipped_existing;
        for (k, v) in &o.skipped_filtered {
            *self.skipped_filtered.entry(k.clone()).or_default() += v;
        }
        self.duplicates_source += o.duplicates_source;
        self.matched_by_headers += o.matched_by_headers;
        self.flags_updated += o.flags_updated;
        self.deleted_target += o.deleted_target;
        self.vanished_source += o.vanished_source;
        self.failed += o.failed;
        self.bytes_transferred += o.bytes_transferred;
        self.pseudo_skipped += o.pseudo_skipped;
        self.expunged_kept += o.expunged_kept;
        for (k, v) in &o.date_fallbacks {
            *self.date_fallbacks.entry(k.clone()).or_default() += v;
        }
        self.biggest_message = self.biggest_message.max(o.biggest_message);
    }

    /// The counts of a folder whose planned writes were all abandoned.
    pub fn abandon_writes(&mut self) {
        self.messages_target = (self.messages_target + self.deleted_target).saturating_sub(self.transferred);
        self.transferred = 0;
        self.bytes_transferred = 0;
        self.biggest_message = 0;
        self.flags_updated = 0;
        self.deleted_target = 0;
    }
}

/// Outcome of one folder.
#[derive(Debug, Default, Clone)]
pub struct FolderOutcome {
    pub counts: Counts,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// `SOURCE -> TARGET: N to copy, …` (dry run plan).
    pub plan_line: Option<String>,
    /// A signal stopped the folder before it was finished.
    pub interrupted: bool,
    /// The flavour an mbox target folder is written in after the run (kept in its state).
    pub mbox_format: Option<&'static str>,
    /// `--folders-only` made the folder (would make it, in a dry run).
    pub created: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub counts: Counts,
    pub seconds: f64,
    pub dry_run: bool,
    pub complete: bool,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    pub peak_rss_kib: u64,
    /// `--folders-only`: the folder tree was made, no message copied, nothing deleted
    /// (`complete` is false: the messages are still to copy).
    pub folders_only: bool,
    /// How many folders `--folders-only` made (would make, in a dry run).
    pub folders_created: Option<u64>,
    /// The only source given is not a store at all: nothing was written (exit 2).
    pub rejected: bool,
    /// A signal (SIGINT, SIGTERM, SIGHUP) stopped the run at a safe point.
    pub interrupted: bool,
    /// Which one (exit 128 + it); null when none.
    pub signal: Option<i32>,
    /// The source and target as given, and when the run started and finished (RFC 3339 UTC):
    /// a sync's, always set there (a batch row's report has its own keys for them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// The zone From_ line dates without one were read in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mbox_tz: Option<String>,
}

impl Summary {
    /// Records a signal received during the run: a run with `unfinished` work is not complete.
    pub fn note_interruption(&mut self, unfinished: bool) {
        self.signal = crate::interrupt::requested();
        self.interrupted = self.signal.is_some();
        if unfinished {
            self.complete = false;
        }
    }

    pub fn exit_code(&self) -> Exit {
        if let Some(sig) = self.signal {
            Exit::Signal(sig)
        } else if self.rejected {
            Exit::Usage
        } else {
            Exit::ok_if(self.errors.is_empty())
        }
    }

    /// The end-of-run statistics, imapsync style.
    pub fn write_human(&self, w: &mut impl Write) -> std::io::Result<()> {
        if self.folders_only {
            return self.write_folders_only(w);
        }
        let c = &self.counts;
        let secs = self.seconds.max(1e-6);
        let mib = c.bytes_transferred as f64 / (1024.0 * 1024.0);
        match self.signal {
            Some(sig) => writeln!(
                w,
                "Sync interrupted by {}: stopped at a safe point (every message written is whole); run it again to finish.",
                crate::interrupt::name(sig)
            )?,
            None if self.dry_run => writeln!(w, "Dry run (nothing is written): what a sync would do.")?,
            None => writeln!(w, "Sync finished.")?,
        }
        self.write_run(w)?;
        writeln!(w, "  folders synced ........ {}", c.folders)?;
        writeln!(w, "  messages in source .... {}", c.messages_source)?;
        writeln!(w, "  messages in target .... {}", c.messages_target)?;
        let (copied, flagged, deleted) = if self.dry_run {
            ("would copy ............", "would update flags ....", "would delete ..........")
        } else {
            ("transferred ...........", "flags updated .........", "deleted in target .....")
        };
        writeln!(w, "  {copied} {}", c.transferred)?;
        writeln!(w, "  skipped (existing) .... {}", c.skipped_existing)?;
        for (k, v) in &c.skipped_filtered {
            writeln!(w, "  skipped ({k}) {} {v}", ".".repeat(13usize.saturating_sub(k.len())))?;
        }
        writeln!(w, "  duplicates in source .. {}", c.duplicates_source)?;
        if c.matched_by_headers > 0 {
            writeln!(
                w,
                "  matched by headers .... {} (Message-ID, Date and body; not the bytes)",
                c.matched_by_headers
            )?;
        }
        writeln!(w, "  {flagged} {}", c.flags_updated)?;
        writeln!(w, "  {deleted} {}", c.deleted_target)?;
        if c.vanished_source > 0 {
            writeln!(w, "  gone from source ...... {} (deleted there during the run)", c.vanished_source)?;
        }
        if c.pseudo_skipped > 0 {
            writeln!(w, "  pseudo messages ....... {} (mbox folder data, not mail)", c.pseudo_skipped)?;
        }
        if c.expunged_kept > 0 {
            writeln!(w, "  expunged, kept as T ... {}", c.expunged_kept)?;
        }
        for (k, v) in &c.date_fallbacks {
            writeln!(w, "  date from {k} ... {v}")?;
        }
        writeln!(w, "  failed ................ {}", c.failed)?;
        let bytes = if self.dry_run { "bytes to copy ........." } else { "bytes transferred ....." };
        writeln!(w, "  {bytes} {}", human::size(c.bytes_transferred))?;
        writeln!(w, "  biggest message ....... {}", human::size(c.biggest_message))?;
        writeln!(w, "  elapsed ............... {:.2} s", self.seconds)?;
        writeln!(
            w,
            "  rate .................. {:.0} messages/s, {:.1} MiB/s",
            c.transferred as f64 / secs,
            mib / secs
        )?;
        writeln!(w, "  peak memory ........... {} MiB", self.peak_rss_kib / 1024)?;
        self.write_problems(w)?;
        if self.dry_run && self.signal.is_none() {
            match self.errors.len() as u64 {
                0 => writeln!(w, "dry run: nothing was written"),
                n => writeln!(w, "dry run: nothing was written; {} above", human::count(n, "problem", "problems")),
            }
        } else if self.complete {
            writeln!(w, "The run is complete: every source message is in the target.")
        } else if self.interrupted && self.errors.is_empty() {
            writeln!(w, "The run is NOT complete: it was interrupted.")
        } else {
            let n = self.errors.len() as u64;
            writeln!(w, "The run is NOT complete: {} above.", human::count(n, "problem", "problems"))
        }
    }
}

impl Summary {
    /// Which run this was: source, target, start and end.
    fn write_run(&self, w: &mut impl Write) -> std::io::Result<()> {
        for (name, v) in [
            ("source ................", &self.source),
            ("target ................", &self.target),
            ("started ...............", &self.started),
            ("finished ..............", &self.finished),
            ("zone-less From_ dates .", &self.mbox_tz),
        ] {
            if let Some(v) = v {
                writeln!(w, "  {name} {}", sanitize(v))?;
            }
        }
        Ok(())
    }

    fn write_problems(&self, w: &mut impl Write) -> std::io::Result<()> {
        for e in &self.warnings {
            writeln!(w, "warning: {}", sanitize(&e.to_string()))?;
        }
        for e in &self.errors {
            writeln!(w, "error: {}", sanitize(&e.to_string()))?;
        }
        Ok(())
    }

    /// The summary of a `--folders-only` run: the folders, made or there already.
    fn write_folders_only(&self, w: &mut impl Write) -> std::io::Result<()> {
        let made = self.folders_created.unwrap_or(0);
        match self.signal {
            Some(sig) => {
                writeln!(w, "Folders only, interrupted by {}: run it again to finish.", crate::interrupt::name(sig))?
            }
            None if self.dry_run => {
                writeln!(w, "Dry run of --folders-only (nothing is written): the folders a run would make.")?
            }
            None => writeln!(
                w,
                "Folders only: the target's folder tree is made; no message is copied, nothing is deleted."
            )?,
        }
        self.write_run(w)?;
        writeln!(w, "  folders ............... {}", self.counts.folders)?;
        let label = if self.dry_run { "would make ............" } else { "made .................." };
        writeln!(w, "  {label} {made}")?;
        writeln!(w, "  there already ......... {}", self.counts.folders.saturating_sub(made))?;
        writeln!(w, "  elapsed ............... {:.2} s", self.seconds)?;
        self.write_problems(w)?;
        let problems = human::count(self.errors.len() as u64, "problem", "problems");
        if self.dry_run && self.signal.is_none() {
            match self.errors.len() {
                0 => writeln!(w, "dry run: nothing was written"),
                _ => writeln!(w, "dry run: nothing was written; {problems} above"),
            }
        } else if !self.errors.is_empty() {
            writeln!(w, "The folder tree is NOT complete: {problems} above.")
        } else if self.signal.is_some() {
            writeln!(w, "The folder tree is NOT complete: it was interrupted.")
        } else {
            writeln!(
                w,
                "Every folder is in the target, empty where it was new; a sync without --folders-only copies the messages."
            )
        }
    }
}

fn sanitize(s: &str) -> String {
    crate::folder::sanitize(s)
}

/// Peak resident memory of this process in KiB (Linux), 0 when unknown.
pub fn peak_rss_kib() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
