//! The sync: every selected source folder into its target folder, folders in parallel and,
//! inside a folder, messages in parallel chunks (rayon on a pool sized by `--jobs`).
//!
//! Per folder: index the target folder (content hash per message), match source messages
//! against it (plan.rs), then copy what is missing, rename what has other flags and, with
//! `--delete`, remove what no source message matched. Only what was in the target when the
//! folder was indexed can be renamed or removed, so mail delivered meanwhile is never touched.
//! A dry run does all the reading and matching and writes nothing.

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;

use crate::deletion::{self, Deletion};
use crate::error::{Error, Problem, Result};
use crate::events::{Event, Recorder};
use crate::folder::FolderName;
use crate::folder_map::FolderMap;
use crate::fsx::Owner;
use crate::lock::LockOptions;
use crate::report::{FolderOutcome, Summary, peak_rss_kib};
use crate::source::Opened;
use crate::spec::{Kind, Store};
use crate::spill::Sorted;
use crate::store::maildir::layout::Layout;
use crate::store::maildir::read::ScanOptions;
use crate::store::mbox::flavour::Flavour;
use crate::store::mbox::read::{MboxFile, ReadOptions};
use crate::store::{self, SourceFolder};

mod by_headers;
mod fate;
mod folders;
pub use by_headers::{Keyer, key_of, pair as pair_by_headers};
pub mod join;
mod load;
mod maildir;
mod mbox;
pub mod plan;
mod planned;
mod shortcut;
mod state;
mod target;

pub use fate::date_source_name;
pub use folders::{FolderPairs, existing_folders, mapped_folders};
pub use plan::{FilterReason, Filters, Identity, IdentityBy, MboxHasher, storable_date};
pub use target::mbox_folder_path;

use folders::by_target;
pub use maildir::FedFolder;
use maildir::{MaildirPlace, TargetFolder, to_maildir};
use mbox::to_mbox;
pub(crate) use mbox::{existing_flavour, target_mbox_read_options};
use shortcut::sync_folder;
use target::{Target, lock_target, mbox_place, open_target, target_folder};

/// One folder pair's run: what each of its steps needs to know.
#[derive(Clone, Copy)]
pub(crate) struct FolderJob<'j> {
    /// The source folder as reports name it.
    pub(crate) source_name: &'j str,
    /// Where the source folder is (its record of copies is kept under this name).
    pub(crate) source_path: &'j Path,
    pub(crate) tn: &'j FolderName,
    pub(crate) opts: &'j SyncOptions,
    pub(crate) rec: &'j dyn Recorder,
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub read: ReadOptions,
    pub layout: Layout,
    /// How an mbox target is written; `None`: as it was, else the kind's default.
    pub mbox_format: Option<Flavour>,
    pub owner: Option<Owner>,
    pub durable: bool,
    pub dry_run: bool,
    pub deletion: Deletion,
    /// `--max-delete`: also allows deleting in a folder whose source has no messages.
    pub max_delete: Option<u64>,
    /// What is left of `--max-delete` in this run.
    pub delete_budget: Option<deletion::Budget>,
    pub jobs: usize,
    pub map: FolderMap,
    pub filters: Filters,
    pub follow_symlinks: bool,
    pub use_cache: bool,
    /// Source folders that map to one target folder are merged into it (else reported, and
    /// none of them synced).
    pub merge_folders: bool,
    /// How long to wait for another run's lock on the target (`--lock-wait`).
    pub lock_wait: std::time::Duration,
    /// This folder's target is shared with other source folders of the run (`--merge-folders`).
    pub merged: bool,
    /// Make the target's folders (empty) and their subscriptions only: no message is read,
    /// copied or deleted (`--folders-only`).
    pub folders_only: bool,
    /// `--identity`: what makes a target message a copy of a source message.
    pub identity: IdentityBy,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            read: ReadOptions::default(),
            layout: Layout::MaildirPlusPlus,
            mbox_format: None,
            owner: None,
            durable: true,
            dry_run: false,
            deletion: Deletion::Off,
            max_delete: None,
            delete_budget: None,
            jobs: 0,
            map: FolderMap::default(),
            filters: Filters::default(),
            follow_symlinks: false,
            use_cache: true,
            merge_folders: false,
            lock_wait: std::time::Duration::ZERO,
            merged: false,
            folders_only: false,
            identity: IdentityBy::Content,
        }
    }
}

impl SyncOptions {
    /// The options of mbox reading given other than as by default: without an mbox source
    /// they do nothing.
    pub fn mbox_reading_given(&self) -> Vec<&'static str> {
        let r = &self.read;
        let given = [
            (r.variant != crate::store::mbox::read::Variant::Auto, "--mbox-variant"),
            (r.zone != crate::store::mbox::date::Zone::Local, "--mbox-tz"),
            (r.keep_internal_headers, "--keep-mbox-headers"),
        ];
        given.into_iter().filter(|(g, _)| *g).map(|(_, name)| name).collect()
    }

    /// How this run takes its target's lock.
    pub fn lock_options(&self) -> LockOptions {
        LockOptions { wait: self.lock_wait, owner: self.owner, dry_run: self.dry_run }
    }
}

static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();

/// The process's one worker pool, made by the first caller with `jobs` threads (0: one per
/// core): every folder, chunk, batch row and cPanel mailbox of a run shares it, so threads
/// never multiply with nested pools. Later callers' `jobs` are ignored.
pub fn pool(jobs: usize) -> Result<&'static rayon::ThreadPool> {
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let n = if jobs == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { jobs };
    let made = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("mailmover-{i}"))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {n} worker threads: {e}")))?;
    // Two first callers at once: one pool wins, the other is dropped unused.
    Ok(POOL.get_or_init(|| made))
}

pub fn sync(src: &Store, dst: &Store, opts: &SyncOptions, rec: &dyn Recorder) -> Result<Summary> {
    sync_in(src, dst, None, opts, rec)
}

/// [`sync`] into a target whose root the caller opened (`root`; a cPanel mailbox reached from
/// its home without following a link): not opened by its path again.
pub fn sync_in(
    src: &Store,
    dst: &Store,
    root: Option<crate::fsx::Dir>,
    opts: &SyncOptions,
    rec: &dyn Recorder,
) -> Result<Summary> {
    let started = Instant::now();
    if dst.kind == Kind::Cpanel || src.kind == Kind::Cpanel {
        return Err(Error::Usage("cpanel: stores are not supported by this version".into()));
    }
    if src.kind == Kind::Mbox && src.path.is_file() {
        // The only source given is not an mbox: nothing to do, and nothing is written.
        let f = MboxFile::open(&src.path)?;
        if let Err(e) = f.check() {
            let mut s = Summary { rejected: true, dry_run: opts.dry_run, ..Default::default() };
            s.errors.push(e.problem());
            s.counts.failed = 1;
            s.seconds = started.elapsed().as_secs_f64();
            return Ok(s);
        }
    }
    let root = root.or_else(|| target::open_root(dst));
    let (pairs, mut source_problems) = folders::mapped_folders_in(src, dst, root.as_ref(), opts)?;
    let groups = by_target(&pairs, dst, opts.layout);
    // Looked at before the target is opened, which makes a Maildir's INBOX.
    let there: Vec<bool> = match opts.folders_only {
        true => groups.iter().map(|g| target::folder_there(dst, root.as_ref(), &g[0].1, &pairs, opts.layout)).collect(),
        false => Vec::new(),
    };
    let target = open_target(dst, &pairs, root, opts)?;
    let _lock = lock_target(&target, opts)?;
    if dst.kind == Kind::Mbox && !opts.dry_run {
        match &target {
            Target::MboxDir { root: Some(r), .. } => store::mbox::remove_leftovers_in(r),
            _ => store::mbox::remove_leftovers(&dst.path),
        }
    }
    let pool = pool(opts.jobs)?;
    rec.record(Event::Folders { total: pairs.len() as u64 });
    let outcomes: Vec<FolderOutcome> = if opts.folders_only {
        // Nothing is read: one target folder after another (merged sources make one).
        groups
            .iter()
            .zip(there)
            .map(|(g, there)| target::make_folder(g[0].0.name.as_str(), &g[0].1, &target, there, opts, rec))
            .collect()
    } else {
        pool.install(|| {
            groups
                .par_iter()
                .flat_map_iter(|g| {
                    // A merged folder's sources share it: --mirror would delete each other's mail.
                    let merged;
                    let opts = if g.len() > 1 {
                        let deletion = if opts.deletion == Deletion::Mirror { Deletion::Copied } else { opts.deletion };
                        merged = SyncOptions { deletion, merged: true, ..opts.clone() };
                        &merged
                    } else {
                        opts
                    };
                    g.iter()
                        .map(|(sf, tn)| {
                            let o = sync_folder(sf, tn, &target, opts, rec);
                            rec.record(Event::FolderDone { folder: tn.clone() });
                            o
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        })
    };

    let mut summary = Summary { dry_run: opts.dry_run, ..Default::default() };
    for o in &outcomes {
        summary.counts.add(&o.counts);
        summary.errors.extend(o.errors.iter().cloned());
        summary.warnings.extend(o.warnings.iter().cloned());
        if let Some(l) = &o.plan_line {
            rec.record(Event::Plan(l.clone()));
        }
    }
    let names: Vec<FolderName> = pairs.iter().map(|(_, t)| t.clone()).collect();
    if let Target::Maildir { writer: Some(w), .. } = &target {
        summary.errors.extend(w.root_problem.clone());
        if let Err(e) = w.subscribe(&names, &mut summary.warnings) {
            summary.errors.push(e.problem());
        }
    }
    // Dovecot keeps an mbox directory's subscriptions in `.subscriptions` at its root (a name
    // its lister and mailmover's mbox reader skip).
    if let (Target::MboxDir { root: Some(root), .. }, false) = (&target, opts.dry_run) {
        let at = (opts.owner, opts.durable);
        if let Err(e) = store::maildir::write::subscribe_in(root, ".subscriptions", &names, at, &mut summary.warnings) {
            summary.errors.push(e.problem());
        }
    }
    summary.errors.append(&mut source_problems);
    summary.errors.sort();
    summary.errors.dedup();
    summary.warnings.sort();
    summary.counts.failed = summary.counts.failed.max(summary.errors.len() as u64);
    // No message was copied: the run is not complete until a sync copies them.
    summary.complete = summary.errors.is_empty() && !opts.folders_only;
    if opts.folders_only {
        summary.folders_only = true;
        summary.folders_created = Some(outcomes.iter().filter(|o| o.created).count() as u64);
    }
    summary.note_interruption(outcomes.iter().any(|o| o.interrupted));
    summary.seconds = started.elapsed().as_secs_f64();
    summary.peak_rss_kib = peak_rss_kib();
    Ok(summary)
}

fn sync_folder_read(
    sf: &SourceFolder,
    tn: &FolderName,
    target: &Target,
    opts: &SyncOptions,
    rec: &dyn Recorder,
) -> FolderOutcome {
    let mut out = FolderOutcome::default();
    out.counts.folders = 1;
    let scan = ScanOptions { follow_symlinks: opts.follow_symlinks };
    let mut problems = Vec::new();
    let job = FolderJob { source_name: sf.name.as_str(), source_path: sf.loc.path(), tn, opts, rec };
    let place = match target {
        Target::Maildir { path, writer, bounds, root } => {
            Some(MaildirPlace { root: path, root_dir: root.as_ref(), writer: writer.as_deref(), bounds: *bounds })
        }
        _ => None,
    };
    // A Maildir source is listed sorted by name (on disk when it is big): each file once, in
    // the same order every run, and an mbox target is written in that order. A Maildir target
    // folder is indexed meanwhile (it is only read until the source is open).
    let (opened, folder) = match &place {
        Some(place) => rayon::join(
            || Opened::open(&sf.loc, scan, &mut problems),
            || {
                let mut seen = FolderOutcome::default();
                (Some(TargetFolder::open(place, job, &mut seen)), seen)
            },
        ),
        None => (Opened::open(&sf.loc, scan, &mut problems), (None, FolderOutcome::default())),
    };
    let (folder, mut seen) = folder;
    let opened = match opened {
        Ok(o) => o,
        Err(Error::Interrupted(_)) => {
            out.interrupted = true;
            out.counts.folders = 0;
            return out;
        }
        Err(e) => {
            out.errors.push(e.problem());
            out.counts.folders = 0;
            return out;
        }
    };
    out.errors.append(&mut problems);
    out.errors.append(&mut seen.errors);
    out.warnings.append(&mut seen.warnings);
    if let Opened::Mbox(f) = &opened
        && let Some(w) = &f.lock_warning
    {
        out.warnings.push(Problem::new(&f.path, w.clone()));
    }
    let messages = match &opened {
        Opened::Maildir { listed: Some(l), .. } => Some(l.count),
        _ => None,
    };
    rec.record(Event::Discovered { folder: tn.clone(), bytes: folder_bytes(&opened), messages });
    let r = match (&place, folder) {
        (Some(place), Some(folder)) => folder.and_then(|f| to_maildir(&opened, f, job, place, &mut out)),
        _ => {
            let shown = target_folder(target, tn, opts.layout).map(|(p, _)| p).unwrap_or_default();
            // A directory of mboxes is a mail root a server reads; a single file is an export.
            let default = if matches!(target, Target::MboxFile(_)) { Flavour::Mboxrd } else { Flavour::Dovecot };
            let flavour = opts.mbox_format.unwrap_or(default);
            mbox_place(target, tn, opts).and_then(|place| {
                if let Some(dir) = place.as_ref().and_then(|p| p.fallback.as_ref()) {
                    out.warnings.push(target::fallback_warning(dir, tn));
                }
                to_mbox(&opened, job, shown, place, flavour, &mut out)
            })
        }
    };
    match r {
        Err(Error::Interrupted(_)) => {
            out.interrupted = true;
            // An mbox is replaced whole or not at all: none of its planned writes happened.
            if !matches!(target, Target::Maildir { .. }) {
                out.counts.abandon_writes();
            }
        }
        Err(e) => out.errors.push(e.problem()),
        Ok(()) => {}
    }
    // A source that shrank or changed while it was read: whatever was read is not trusted.
    if let Err(p) = opened.intact()
        && !out.errors.contains(&p)
    {
        out.errors.push(p);
    }
    // Messages a failed commit did not write were counted as failed already.
    out.counts.failed = out.counts.failed.max(out.errors.len() as u64);
    out
}

fn folder_bytes(o: &Opened) -> u64 {
    match o {
        Opened::Mbox(f) => f.len(),
        Opened::Maildir { listed, .. } => listed.as_ref().map_or(0, |l| l.bytes),
    }
}

/// The target messages of a folder to delete (indexes into `unmatched`'s entries), by the
/// deletion mode, the safety rules and the run's `--max-delete` budget; refusals are reported.
fn choose_deletions(
    unmatched: &Sorted<join::Held>,
    record: &deletion::Record,
    target: &Path,
    source: &dyn load::Feed,
    opts: &SyncOptions,
    out: &mut FolderOutcome,
) -> std::io::Result<bool> {
    let read_errors = !out.errors.is_empty() || source.unsure_of_gone() || source.intact().is_err();
    let src = deletion::SourceState {
        messages: out.counts.messages_source,
        read_errors,
        filtered: !out.counts.skipped_filtered.is_empty(),
        interrupted: out.interrupted,
    };
    if let Err(why) = deletion::allowed(opts.deletion, !unmatched.is_empty(), record, src, opts.max_delete) {
        out.warnings.extend(why.map(|why| Problem::new(target, why)));
        return Ok(false);
    }
    let mut chooser = deletion::Chooser::new(opts.deletion, record);
    let mut n = 0u64;
    for h in unmatched.iter() {
        match chooser.chosen(&h?.hash) {
            Ok(chosen) => n += u64::from(chosen),
            Err(e) => {
                out.warnings.push(Problem::new(target, deletion::unreadable_record(&e)));
                return Ok(false);
            }
        }
    }
    if n > 0 && opts.delete_budget.as_ref().is_some_and(|b| !b.take(n)) {
        out.errors.push(Problem::new(
            target,
            format!("{n} deletions here would pass --max-delete {}; deleted none", opts.max_delete.unwrap_or(0)),
        ));
        return Ok(false);
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pool_for_the_whole_process() {
        let first = pool(3).unwrap();
        let again = pool(64).unwrap();
        assert!(std::ptr::eq(first, again), "a second caller got a pool of its own");
        // Inside the pool, asking again runs on the same workers: no nested pool.
        let inner = first.install(|| pool(5).unwrap().install(rayon::current_num_threads));
        assert_eq!(inner, first.current_num_threads());
    }

    /// A target root the caller opened (a cPanel mailbox reached from its home) and whose path
    /// was swapped for a link since: the folder is indexed, and the messages, the lock, the
    /// cache and the record of copies go, in the opened directory; nothing is read or written
    /// through the link.
    #[test]
    fn sync_in_writes_into_the_root_it_was_given() {
        let t = tempfile::tempdir().unwrap();
        let (src, root, moved, other) =
            (t.path().join("src"), t.path().join("root"), t.path().join("moved"), t.path().join("other"));
        for d in [&src, &root, &other] {
            for s in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(d.join(s)).unwrap();
            }
        }
        std::fs::write(src.join("cur/1.m:2,S"), b"Subject: a\n\nbody\n").unwrap();
        // Read through the link, this copy would make the source message look synced already.
        std::fs::write(other.join("cur/9.planted:2,S"), b"Subject: a\n\nbody\n").unwrap();
        let opened = crate::fsx::Dir::open_root(&root).unwrap();
        std::fs::rename(&root, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &root).unwrap();
        let store = |p: &std::path::Path| Store { kind: Kind::Maildir, path: p.to_path_buf(), explicit: true };
        let s = sync_in(&store(&src), &store(&root), Some(opened), &SyncOptions::default(), &crate::events::Discard)
            .unwrap();
        assert_eq!(s.counts.transferred, 1, "{:?}", s.errors);
        let names = |d: &std::path::Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&moved.join("cur")).len(), 1);
        for f in ["mailmover.lock", "mailmover-cache", "mailmover-copied"] {
            assert!(names(&moved).contains(&f.to_string()), "{f}: {:?}", names(&moved));
            assert!(!names(&other).contains(&f.to_string()), "{f} written through the link");
        }
        assert_eq!(names(&other.join("cur")), ["9.planted:2,S"]);
        assert!(names(&other.join("new")).is_empty());
    }
}
