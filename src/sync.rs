//! The sync: every selected source folder into its target folder, folders in parallel and,
//! inside a folder, messages in parallel chunks (rayon on a pool sized by `--jobs`).
//!
//! Per folder: index the target folder (content hash per message), match source messages
//! against it (plan.rs), then copy what is missing, rename what has other flags and, with
//! `--delete`, remove what no source message matched. Only what was in the target when the
//! folder was indexed can be renamed or removed, so mail delivered meanwhile is never touched.
//! A dry run does all the reading and matching and writes nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::deletion::{self, Deletion};
use crate::error::{Error, Problem, Result};
use crate::events::{Event, Recorder};
use crate::folder::FolderName;
use crate::folder_map::FolderMap;
use crate::fsx::{self, Owner};
use crate::interrupt;
use crate::lock::{self, LockOptions, TargetLock};
use crate::message::{DateSource, Meta};
use crate::plan::{Action, Hash, Matcher};
use crate::report::{FolderOutcome, Summary, peak_rss_kib};
use crate::source::{self, Body, Loaded, Opened, Ref};
use crate::state;
use crate::store::maildir::layout::{self, Layout};
use crate::store::maildir::read::{self as mdread, MaildirEntry, ScanOptions};
use crate::store::maildir::write::{self as mdwrite, FolderWriter, MaildirTarget, Staged, WriteOptions};
use crate::store::mbox::lock as mbox_lock;
use crate::store::mbox::read::{MboxFile, ReadOptions};
use crate::store::mbox::target as mbox_target;
use crate::store::mbox::write::{self as mbox_write, MboxWriter};
use crate::store::{self, Kind, SourceFolder, Store};
use crate::target_index;

#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub max_size: Option<u64>,
    pub min_age_days: Option<f64>,
    pub max_age_days: Option<f64>,
    pub now: i64,
}

impl Filters {
    /// Why a message is filtered out, if it is.
    pub fn reason(&self, size: u64, date: i64) -> Option<&'static str> {
        if self.max_size.is_some_and(|m| size > m) {
            return Some("max-size");
        }
        let age_days = (self.now - date) as f64 / 86400.0;
        if self.min_age_days.is_some_and(|d| age_days < d) {
            return Some("min-age");
        }
        if self.max_age_days.is_some_and(|d| age_days > d) {
            return Some("max-age");
        }
        None
    }
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub read: ReadOptions,
    pub layout: Layout,
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
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            read: ReadOptions::default(),
            layout: Layout::MaildirPlusPlus,
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
        }
    }
}

pub fn pool(jobs: usize) -> Result<rayon::ThreadPool> {
    let n = if jobs == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { jobs };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {n} worker threads: {e}")))
}

/// Where the target puts things.
enum Target {
    Maildir {
        path: PathBuf,
        writer: Option<Box<MaildirTarget>>,
        /// The file times the target's file system stores ([`fsx::time_bounds`]).
        bounds: Option<(i64, i64)>,
    },
    MboxFile(PathBuf),
    /// An mbox directory: its root opened (not in a dry run) and the folders written as files.
    MboxDir {
        path: PathBuf,
        root: Option<fsx::Dir>,
        written: HashSet<FolderName>,
    },
}

/// Folder names a target already has (for `--automap`).
pub fn existing_folders(dst: &Store, layout: Layout) -> Vec<FolderName> {
    if !dst.path.exists() {
        return Vec::new();
    }
    let mut ignore = Vec::new();
    match dst.kind {
        Kind::Maildir => mdread::folders(&dst.path, ScanOptions::default(), &mut ignore)
            .into_iter()
            .filter(|f| {
                layout == Layout::Fs
                    || f.name.is_inbox()
                    || f.dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .map(|f| f.name)
            .collect(),
        Kind::Mbox if dst.path.is_dir() => {
            store::mbox::folders(&dst.path, false, &mut ignore).into_iter().map(|f| f.name).collect()
        }
        _ => Vec::new(),
    }
}

/// The source folders with their target names, after selection and mapping.
/// Source folders with their target names.
pub type FolderPairs = Vec<(SourceFolder, FolderName)>;

pub fn mapped_folders(src: &Store, dst: &Store, opts: &SyncOptions) -> Result<(FolderPairs, Vec<Problem>)> {
    let (folders, mut problems) = store::source_folders(src, opts.follow_symlinks)?;
    let existing = if opts.map.automap { existing_folders(dst, opts.layout) } else { Vec::new() };
    let names: Vec<FolderName> = folders.iter().map(|f| f.name.clone()).collect();
    let pairs = opts.map.plan(&names, &existing).map_err(Error::Usage)?;
    let mut out = Vec::new();
    for (s, t) in pairs {
        if dst.kind == Kind::Maildir
            && let Err(e) = layout::components(&t, opts.layout)
        {
            // A name the user's mapping made is a usage error; one found on disk is a
            // problem with that folder only.
            if s != t {
                return Err(Error::Usage(format!("folder {:?} maps to {:?}: {e}", s.as_str(), t.as_str())));
            }
            if let Some(f) = folders.iter().find(|f| f.name == s) {
                problems.push(Problem::new(
                    f.loc.path(),
                    format!("{e}; folder skipped (try --layout maildir++ or --map-folder)"),
                ));
            }
            continue;
        }
        if let Some(f) = folders.iter().find(|f| f.name == s) {
            out.push((f.clone(), t));
        }
    }
    if !opts.merge_folders {
        out = without_clashes(out, dst, opts.layout, &mut problems);
    }
    Ok((out, problems))
}

/// Where a target folder lives on disk: two folder names with one place are one folder.
fn target_place(dst: &Store, name: &FolderName, layout: Layout) -> PathBuf {
    match dst.kind {
        Kind::Maildir => MaildirTarget::folder_path(&dst.path, name, layout).unwrap_or_else(|_| dst.path.clone()),
        _ => mbox_folder_path(&dst.path, name),
    }
}

/// The pairs' indexes grouped by the place of their target folder, in first-seen order.
fn groups_by_place(pairs: &FolderPairs, dst: &Store, layout: Layout) -> Vec<(PathBuf, Vec<usize>)> {
    let mut groups: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    let mut at: HashMap<PathBuf, usize> = HashMap::new();
    for (i, (_, t)) in pairs.iter().enumerate() {
        let place = target_place(dst, t, layout);
        match at.get(&place) {
            Some(&g) => groups[g].1.push(i),
            None => {
                at.insert(place.clone(), groups.len());
                groups.push((place, vec![i]));
            }
        }
    }
    groups
}

/// Drops every pair whose target folder another source folder maps to as well (`v1.0` and
/// `v1_0` both become `.v1_0` in Maildir++), each reported: neither is written or deleted in.
fn without_clashes(pairs: FolderPairs, dst: &Store, layout: Layout, problems: &mut Vec<Problem>) -> FolderPairs {
    let mut drop = HashSet::new();
    for (place, idx) in groups_by_place(&pairs, dst, layout).into_iter().filter(|(_, v)| v.len() > 1) {
        let names: Vec<String> = idx.iter().map(|&i| format!("{:?}", pairs[i].0.name.as_str())).collect();
        for &i in &idx {
            problems.push(Problem::new(
                pairs[i].0.loc.path(),
                format!(
                    "source folders {} all map to the target folder {}; none of them is synced \
                     (rename one with --map-folder, or give --merge-folders to merge them)",
                    names.join(", "),
                    place.display()
                ),
            ));
            drop.insert(i);
        }
    }
    pairs.into_iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, p)| p).collect()
}

/// Pairs grouped by target folder: with `--merge-folders` several sources may share one, and
/// they are synced one after another, never at once.
fn by_target<'p>(pairs: &'p FolderPairs, dst: &Store, layout: Layout) -> Vec<Vec<&'p (SourceFolder, FolderName)>> {
    groups_by_place(pairs, dst, layout).into_iter().map(|(_, idx)| idx.iter().map(|&i| &pairs[i]).collect()).collect()
}

pub fn sync(src: &Store, dst: &Store, opts: &SyncOptions, rec: &dyn Recorder) -> Result<Summary> {
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
    let (pairs, mut source_problems) = mapped_folders(src, dst, opts)?;
    let target = open_target(dst, &pairs, opts)?;
    let _lock = lock_target(&target, opts)?;
    if dst.kind == Kind::Mbox && !opts.dry_run {
        store::mbox::remove_leftovers(&dst.path);
    }
    let pool = pool(opts.jobs)?;
    let groups = by_target(&pairs, dst, opts.layout);
    let outcomes: Vec<FolderOutcome> = pool.install(|| {
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
                g.iter().map(|(sf, tn)| sync_folder(sf, tn, &target, opts, rec)).collect::<Vec<_>>()
            })
            .collect()
    });

    let mut summary = Summary { dry_run: opts.dry_run, ..Default::default() };
    for o in &outcomes {
        summary.counts.add(&o.counts);
        summary.errors.extend(o.errors.iter().cloned());
        summary.warnings.extend(o.warnings.iter().cloned());
        if let Some(l) = &o.plan_line {
            rec.record(Event::Plan(l.clone()));
        }
    }
    if let Target::Maildir { writer: Some(w), .. } = &target {
        summary.errors.extend(w.root_problem.clone());
        let names: Vec<FolderName> = pairs.iter().map(|(_, t)| t.clone()).collect();
        if let Err(e) = w.subscribe(&names, &mut summary.warnings) {
            summary.errors.push(e.problem());
        }
    }
    summary.errors.append(&mut source_problems);
    summary.errors.sort();
    summary.errors.dedup();
    summary.warnings.sort();
    summary.counts.failed = summary.counts.failed.max(summary.errors.len() as u64);
    summary.complete = summary.errors.is_empty();
    summary.note_interruption(outcomes.iter().any(|o| o.interrupted));
    summary.seconds = started.elapsed().as_secs_f64();
    summary.peak_rss_kib = peak_rss_kib();
    Ok(summary)
}

fn open_target(dst: &Store, pairs: &[(SourceFolder, FolderName)], opts: &SyncOptions) -> Result<Target> {
    match dst.kind {
        Kind::Maildir => {
            if dst.path.exists() && !dst.path.is_dir() {
                return Err(Error::Usage(format!("{}: target exists and is not a directory", dst.path.display())));
            }
            let writer = if opts.dry_run {
                None
            } else {
                let wo = WriteOptions { durable: opts.durable, owner: opts.owner, layout: opts.layout };
                Some(Box::new(MaildirTarget::create(&dst.path, wo)?))
            };
            Ok(Target::Maildir { path: dst.path.clone(), writer, bounds: fsx::time_bounds(&dst.path) })
        }
        Kind::Mbox => {
            let single = pairs.len() <= 1 && pairs.iter().all(|(_, t)| t.is_inbox());
            if dst.path.is_dir() || !single {
                if dst.path.exists() && !dst.path.is_dir() {
                    return Err(Error::Usage(format!(
                        "{}: the source has several folders, so the mbox target must be a directory",
                        dst.path.display()
                    )));
                }
                let root = if opts.dry_run {
                    None
                } else {
                    Some(fsx::Dir::create_root(&dst.path, mdwrite::DIR_MODE, opts.owner)?)
                };
                let written = pairs.iter().map(|(_, t)| t.clone()).collect();
                Ok(Target::MboxDir { path: dst.path.clone(), root, written })
            } else {
                Ok(Target::MboxFile(dst.path.clone()))
            }
        }
        Kind::Cpanel => Err(Error::Usage("cpanel: targets are not supported by this version".into())),
    }
}

/// The target's lock, held until the run ends (see lock.rs).
fn lock_target(target: &Target, opts: &SyncOptions) -> Result<TargetLock> {
    let o = LockOptions::of(opts);
    match target {
        Target::Maildir { path, .. } => TargetLock::inside(path, lock::MAILDIR, &o),
        Target::MboxDir { path, .. } => TargetLock::inside(path, lock::HIDDEN, &o),
        Target::MboxFile(p) => TargetLock::beside(p, &o),
    }
}

/// The file of folder `name` in an mbox directory as it is on disk: levels as directories
/// (modified UTF-7 names, as Dovecot writes them), `NAME.sbd/` beside a folder file.
pub fn mbox_folder_path(root: &Path, name: &FolderName) -> PathBuf {
    mbox_target::place_path(root, name, &|_| false)
}

/// Where folder `tn` of an mbox target is, reached through descriptors (see
/// [`mbox_target::place`]); `None` in a dry run when it does not exist yet.
fn mbox_place(target: &Target, tn: &FolderName, opts: &SyncOptions) -> Result<Option<mbox_target::Place>> {
    match target {
        Target::MboxFile(p) => {
            let name = p.file_name().ok_or_else(|| Error::bad(p, "not a usable file name"))?;
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            // The file's directory is named by the user: it may be reached through links.
            let dir = if opts.dry_run {
                if !parent.is_dir() {
                    return Ok(None);
                }
                fsx::Dir::open_root(parent)?
            } else {
                fsx::Dir::create_root(parent, mdwrite::DIR_MODE, opts.owner)?
            };
            if dir.stat_at(name)?.is_some_and(|e| e.kind == fsx::FileKind::Symlink) {
                return Err(Error::bad(
                    p,
                    "is a symlink; name the mbox file itself (nothing is written through a link)",
                ));
            }
            Ok(Some(mbox_target::Place { dir, name: name.to_os_string(), path: p.clone() }))
        }
        Target::MboxDir { path, root, written } => {
            let is_written = |f: &FolderName| written.contains(f);
            match root {
                Some(r) => mbox_target::place(r, tn, &is_written, Some(opts.owner)),
                None if path.is_dir() => mbox_target::place(&fsx::Dir::open_root(path)?, tn, &is_written, None),
                None => Ok(None),
            }
        }
        Target::Maildir { .. } => Err(Error::bad("", "internal: not an mbox target")),
    }
}

/// The directory everything of the target is below (an mbox file's own directory).
fn target_root(target: &Target) -> &Path {
    match target {
        Target::Maildir { path, .. } | Target::MboxDir { path, .. } => path,
        Target::MboxFile(p) => p.parent().unwrap_or(Path::new("")),
    }
}

/// The target folder's path and whether it is an mbox file.
fn target_folder(target: &Target, tn: &FolderName, layout: Layout) -> Option<(PathBuf, bool)> {
    match target {
        Target::Maildir { path, .. } => MaildirTarget::folder_path(path, tn, layout).ok().map(|p| (p, false)),
        Target::MboxFile(p) => Some((p.clone(), true)),
        Target::MboxDir { path, written, .. } => {
            Some((mbox_target::place_path(path, tn, &|f| written.contains(f)), true))
        }
    }
}

fn sync_folder(
    sf: &SourceFolder,
    tn: &FolderName,
    target: &Target,
    opts: &SyncOptions,
    rec: &dyn Recorder,
) -> FolderOutcome {
    if interrupt::requested().is_some() {
        return FolderOutcome { interrupted: true, ..Default::default() };
    }
    // Stamps first: a source changed while it is read must not look unchanged next time.
    let tfolder = target_folder(target, tn, opts.layout);
    let stamp = match (&tfolder, opts.use_cache) {
        (Some(_), true) => state::options_stamp(opts, sf.loc.path(), tn).zip(state::source_stamp(&sf.loc)),
        _ => None,
    };
    let mut warnings = Vec::new();
    let saved = match (&tfolder, &stamp) {
        (Some((tpath, mbox)), Some(_)) => state::load(tpath, *mbox).unwrap_or_else(|p| {
            warnings.push(p);
            None
        }),
        _ => None,
    };
    if let (Some((tpath, mbox)), Some((o, s))) = (&tfolder, &stamp)
        && let Some(mut saved) = saved
        && &saved.options == o
        && &saved.source == s
        && saved.target == state::target_stamp(tpath, *mbox)
        && (saved.whole(tpath) || sizes_match(tpath, *mbox))
    {
        if !saved.whole(tpath) && !opts.dry_run {
            saved.verified = true;
            saved.epoch = None;
            save_state(target_root(target), tpath, *mbox, &saved, opts);
        }
        let mut out = FolderOutcome { counts: state::unchanged_counts(&saved.counts), warnings, ..Default::default() };
        if opts.dry_run {
            out.plan_line = Some(format!("{} -> {}: unchanged since the last run", sf.name.as_str(), tn.as_str()));
        }
        return out;
    }
    let mut out = sync_folder_read(sf, tn, target, opts, rec);
    out.warnings.append(&mut warnings);
    // A folder cut short by a signal must be read again next time.
    let finished = out.errors.is_empty() && !out.interrupted;
    if let (Some((tpath, mbox)), Some((o, s)), false, true) = (&tfolder, stamp, opts.dry_run, finished) {
        let saved = state::Saved {
            options: o,
            source: s,
            target: state::target_stamp(tpath, *mbox),
            counts: out.counts.clone(),
            verified: opts.durable,
            epoch: if opts.durable { None } else { state::write_epoch(tpath) },
            folder: state::folder_of(tpath, *mbox),
        };
        save_state(target_root(target), tpath, *mbox, &saved, opts);
    }
    out
}

fn save_state(root: &Path, tpath: &Path, mbox: bool, saved: &state::Saved, opts: &SyncOptions) {
    let path = state::state_path(tpath, mbox);
    // A text file with a final newline: tools that concatenate files next to an mbox (`cat`,
    // grep counts) must not see it glued to the next file's first line.
    let text = serde_json::to_vec(saved).map(|mut t| {
        t.push(b'\n');
        t
    });
    // A bare file name's directory is the current one (`Path::parent` gives "").
    let dir = path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d });
    let root = if root.as_os_str().is_empty() { Path::new(".") } else { root };
    if let (Some(dir), Some(name), Ok(text)) = (dir, path.file_name(), text)
        && let Ok(d) = fsx::Dir::open_beneath(root, dir)
    {
        let _ = d.write_atomic(&name.to_string_lossy(), &text, mdwrite::FILE_MODE, opts.owner, false);
    }
}

/// Every message file of a target Maildir folder has the size its `,S=` says (an mbox target
/// is covered by its stamp, which holds its size).
fn sizes_match(tpath: &Path, mbox: bool) -> bool {
    if mbox {
        return true;
    }
    mdread::MessageStream::new(tpath, Default::default(), ScanOptions::default())
        .all(|r| r.is_ok_and(|e| crate::store::maildir::name::size_field(e.base()).is_none_or(|s| s == e.size)))
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
    // A Maildir target takes messages in any order, so a Maildir source is streamed; an mbox
    // target is written in the source's sorted order.
    let opened = if matches!(target, Target::Maildir { .. }) {
        Opened::open_streaming(&sf.loc, scan)
    } else {
        Opened::open(&sf.loc, scan, &mut problems)
    };
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            out.errors.push(e.problem());
            out.counts.folders = 0;
            return out;
        }
    };
    out.errors.append(&mut problems);
    if let Opened::Mbox(f) = &opened
        && let Some(w) = &f.lock_warning
    {
        out.warnings.push(Problem::new(&f.path, w.clone()));
    }
    rec.record(Event::Discovered { bytes: folder_bytes(&opened) });
    let r = match target {
        Target::Maildir { path, writer, bounds } => {
            let job = MaildirJob { root: path, writer: writer.as_deref(), bounds: *bounds };
            to_maildir(&opened, sf, tn, &job, opts, rec, &mut out)
        }
        Target::MboxFile(_) | Target::MboxDir { .. } => {
            let shown = target_folder(target, tn, opts.layout).map(|(p, _)| p).unwrap_or_default();
            mbox_place(target, tn, opts).and_then(|place| to_mbox(&opened, sf, tn, shown, place, opts, rec, &mut out))
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

/// What happened to one source message.
enum Fate {
    Copied { sha: Hash, size: u64, name: String },
    Skipped { sha: Hash, reason: &'static str },
    Filtered { reason: &'static str },
    FlagsUpdated { sha: Hash, name: String },
    Failed(Problem),
    NotMail,
}

struct Prepared<'a> {
    loaded: Loaded<'a>,
    hash: Option<Hash>,
    action: Option<Action>,
}

/// Loads a chunk in parallel, hashing when the target has something to match against.
/// How a message's identity is computed for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The bytes exactly.
    Exact,
    /// The bytes as an mbox can hold them: ending with a newline (an mbox message always
    /// does, so one without gets it and must still match its copy).
    Mbox,
}

impl Identity {
    pub fn hash(self, pieces: &[&[u8]]) -> Hash {
        let ends = pieces.iter().rev().find(|p| !p.is_empty()).is_none_or(|p| p.ends_with(b"\n"));
        if self == Identity::Mbox && !ends {
            let mut v = pieces.to_vec();
            v.push(b"\n");
            fsx::sha256_pieces(&v)
        } else {
            fsx::sha256_pieces(pieces)
        }
    }
}

fn load_chunk<'a>(
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
                return Ok(Prepared { loaded: opened.unread(e), hash: Some(h), action: None });
            }
            let loaded = opened.load_from(r, &opts.read, file)?;
            // A mapped file is always hashed: what is written is checked against it.
            let need = need_hash.or(matches!(loaded.body, Body::Mapped(_)).then_some(Identity::Exact));
            let hash = need.map(|id| id.hash(&loaded.body.pieces()));
            Ok(Prepared { loaded, hash, action: None })
        })
        .collect()
}

/// A cache that cannot be started is a warning: the run goes on without it.
fn cache_writer(
    c: Result<target_index::CacheWriter>,
    warnings: &mut Vec<Problem>,
) -> Option<target_index::CacheWriter> {
    c.map_err(|e| warnings.push(e.problem())).ok()
}

/// Counts that do not depend on the target; false when the message is not to be synced.
fn account(p: &Prepared<'_>, opts: &SyncOptions, out: &mut FolderOutcome) -> Option<&'static str> {
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

/// Where a folder goes in a Maildir target.
struct MaildirJob<'t> {
    root: &'t Path,
    writer: Option<&'t MaildirTarget>,
    bounds: Option<(i64, i64)>,
}

/// A date the target's file system cannot store becomes the nearest one it can, said per
/// message; sync and verify compare the stored date.
pub fn storable_date(date: i64, bounds: Option<(i64, i64)>) -> i64 {
    bounds.map_or(date, |(lo, hi)| date.clamp(lo, hi))
}

fn clamp_dates(prepared: &mut [Prepared<'_>], bounds: Option<(i64, i64)>, out: &mut FolderOutcome) {
    let show = |t: i64| chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.to_rfc3339());
    for p in prepared.iter_mut() {
        let d = p.loaded.meta.date;
        let c = storable_date(d, bounds);
        if c != d {
            out.warnings.push(p.loaded.origin.problem(format!(
                "internal date {} is outside what the target file system stores; stored as {}",
                show(d),
                show(c)
            )));
            p.loaded.meta.date = c;
        }
    }
}

fn to_maildir(
    opened: &Opened,
    sf: &SourceFolder,
    tn: &FolderName,
    job: &MaildirJob<'_>,
    opts: &SyncOptions,
    rec: &dyn Recorder,
    out: &mut FolderOutcome,
) -> Result<()> {
    let (root, writer) = (job.root, job.writer);
    let tdir = MaildirTarget::folder_path(root, tn, opts.layout).map_err(|e| Error::bad(root, e))?;
    let mut index = target_index::maildir(&tdir, opts.use_cache && !opts.dry_run, &mut out.errors)?;
    out.warnings.append(&mut index.warnings);
    for t in &index.torn {
        if writer.is_none() {
            out.warnings.push(Problem::new(t, "torn copy (shorter than its ,S=): would be set aside and copied again"));
            continue;
        }
        match target_index::set_aside(root, t) {
            Ok(a) => out.warnings.push(Problem::new(
                t,
                format!("torn copy (shorter than its ,S=) set aside as {}; its message is copied again", a.display()),
            )),
            Err(e) => out.errors.push(e.problem()),
        }
    }
    let source_id = deletion::source_id(sf.loc.path());
    let record_path = tdir.join(deletion::COPIED_FILE);
    let mut record = deletion::Record::load(&record_path, &source_id).unwrap_or_else(|p| {
        // Only --delete reads the record; other runs keep it quietly.
        if opts.deletion == Deletion::Copied {
            out.warnings.push(p);
        }
        deletion::Record::default()
    });
    // In a folder merged from several sources, the copies recorded for the others are theirs:
    // each source matches only its own (a message both have is there twice, and neither
    // re-flags the other's copy run after run).
    let mut matcher = Matcher::new(index.entries.iter().map(|(e, h)| (*h, &e.meta)));
    if opts.merged {
        for (h, n) in record.others_by_hash() {
            matcher.reserve(h, n);
        }
    }
    let mut fw: Option<FolderWriter<'_>> = match writer {
        Some(w) => Some(w.folder(tn)?),
        None => None,
    };
    if let Some(w) = &fw {
        w.clean_tmp(&mut out.errors);
        w.dir.remove_leftovers();
    }
    let (_, replaced) = layout::components(tn, opts.layout).unwrap_or_default();
    if replaced {
        out.warnings.push(Problem::new(
            &tdir,
            format!(
                "'.' in folder name {:?} written as '{}' (Maildir++ uses '.' between levels)",
                tn.as_str(),
                layout::DOT_REPLACEMENT
            ),
        ));
    }
    let need_hash = !matcher.is_empty() || opts.dry_run;
    let maildir_source = matches!(opened, Opened::Maildir { .. });
    // Hashes of source files seen by an earlier run: only new or changed files are read.
    let known = if need_hash && opts.use_cache && maildir_source {
        target_index::SourceCache::load(&tdir, &mut out.warnings)
    } else {
        None
    };
    let mut books = Books {
        known: known.as_ref(),
        tn,
        tdir: &tdir,
        source_cache: match &fw {
            Some(w) if opts.use_cache && maildir_source => {
                cache_writer(target_index::CacheWriter::create_source(w), &mut out.warnings)
            }
            _ => None,
        },
        source_cache_same: 0,
        cache: match &fw {
            Some(w) if opts.use_cache => cache_writer(target_index::CacheWriter::create(w), &mut out.warnings),
            _ => None,
        },
        retimed: HashMap::new(),
        seen: HashSet::new(),
        copied: Vec::new(),
    };
    let (mut copy_n, mut upd_n) = (0u64, 0u64);
    let streamed = matches!(opened, Opened::Maildir { listed: None, .. });
    let load = |refs: Vec<Ref>| {
        let loaded = load_chunk(opened, &refs, opts, need_hash.then_some(Identity::Exact), known.as_ref());
        (refs, loaded)
    };
    // Chunks in flight: the next one is split, read and hashed while this one is written into
    // tmp/, and the ones before wait for the background sync that makes them durable, then are
    // put in place (the CPU writes on while the disk works). Each gets half the usual byte
    // budget; the bytes of a written chunk are let go before it waits.
    let mut chunks = opened.chunks_of(&opts.read, source::CHUNK_BYTES / 2);
    let mut current = chunks.next().map(load);
    let mut pending: VecDeque<StagedChunk<'_>> = VecDeque::new();
    while let Some((refs, loaded)) = current.take() {
        // A signal: this chunk is dropped unwritten; the staged ones are put in place below.
        if interrupt::requested().is_some() {
            out.interrupted = true;
            break;
        }
        let (done, next) = rayon::join(
            || -> Result<()> {
                if streamed {
                    rec.record(Event::Discovered { bytes: refs.iter().map(|r| opened.stored_len(r)).sum() });
                }
                let mut prepared = Vec::with_capacity(refs.len());
                for p in loaded {
                    match p {
                        Ok(p) => prepared.push(p),
                        Err(e) => {
                            rec.record(Event::Error { folder: tn.clone(), problem: e.clone() });
                            out.errors.push(e);
                        }
                    }
                }
                clamp_dates(&mut prepared, job.bounds, out);
                let mut fates: Vec<Option<Fate>> = Vec::with_capacity(prepared.len());
                for p in prepared.iter_mut() {
                    let fate = match account(p, opts, out) {
                        Some("pseudo" | "gone") => Some(Fate::NotMail),
                        Some(reason) => Some(Fate::Filtered { reason }),
                        None => {
                            if let Some(h) = &p.hash {
                                let a = matcher.decide(h, &p.loaded.meta);
                                p.action = Some(a);
                                match a {
                                    Action::Skip(_) => Some(Fate::Skipped { sha: *h, reason: "exists" }),
                                    Action::Copy => {
                                        copy_n += 1;
                                        None
                                    }
                                    Action::UpdateFlags(_) => {
                                        upd_n += 1;
                                        None
                                    }
                                }
                            } else {
                                p.action = Some(Action::Copy);
                                copy_n += 1;
                                None
                            }
                        }
                    };
                    fates.push(fate);
                }
                let Some(w) = fw.as_mut() else {
                    for (p, f) in prepared.iter().zip(fates.iter_mut()) {
                        if f.is_none() {
                            let sha = p.hash.unwrap_or_default();
                            *f = Some(match p.action {
                                Some(Action::UpdateFlags(_)) => Fate::FlagsUpdated { sha, name: String::new() },
                                _ => Fate::Copied { sha, size: p.loaded.body.len(), name: String::new() },
                            });
                        }
                    }
                    books.tally(prepared, fates, rec, out);
                    return Ok(());
                };
                // A message known from the source cache whose copy is gone from the target: its
                // bytes are read now.
                let unread: Vec<Option<Problem>> = prepared
                    .par_iter_mut()
                    .zip(fates.par_iter())
                    .map(|(p, f)| match (f, p.action) {
                        (None, Some(Action::Copy)) => opened.read_body(&mut p.loaded).err(),
                        _ => None,
                    })
                    .collect();
                for ((f, e), p) in fates.iter_mut().zip(unread).zip(prepared.iter()) {
                    if let Some(e) = e {
                        *f = Some(Fate::Failed(e));
                    } else if f.is_none() && p.loaded.gone {
                        // Known from the source cache, deleted from the source since.
                        out.counts.vanished_source += 1;
                        out.counts.messages_source -= 1;
                        copy_n -= 1;
                        *f = Some(Fate::NotMail);
                    }
                }
                let mut reserved = 0u32;
                let mut kws: Vec<&str> = Vec::new();
                for p in prepared.iter().filter(|p| matches!(p.action, Some(Action::Copy | Action::UpdateFlags(_)))) {
                    reserved |= p.loaded.meta.stray_letters;
                    kws.extend(p.loaded.meta.keywords.iter());
                }
                kws.sort_unstable();
                kws.dedup();
                for k in w.add_keywords(kws, reserved) {
                    out.errors.push(Problem::new(
                        w.path(),
                        format!("keyword {k:?} not kept: a Maildir folder holds at most 26 keywords"),
                    ));
                }
                let saved = w.save_keywords();
                let w = &*w;
                if let Err(e) = saved {
                    for (prepared, fates) in place_synced(&mut pending, w, &index.entries, 0, opened) {
                        books.tally(prepared, fates, rec, out);
                    }
                    return Err(e);
                }
                // This chunk goes into tmp/ while the one before is synced and put in place.
                let (staged, finished) = rayon::join(
                    || -> Vec<Option<Result<Staged, Problem>>> {
                        prepared
                            .par_iter()
                            .zip(fates.par_iter())
                            .map(|(p, f)| match (f, p.action) {
                                (None, Some(Action::Copy)) if p.loaded.body.is_unread() => {
                                    Some(Err(p.loaded.origin.problem("internal: message bytes not read; not copied")))
                                }
                                (None, Some(Action::Copy)) => {
                                    Some(
                                        w.stage(&p.loaded.body.pieces(), &p.loaded.meta)
                                            .map_err(|e| e.problem())
                                            .and_then(|st| {
                                                // What was written must be what was decided on.
                                                let same = p.hash.is_none_or(|h| h == st.written.sha256)
                                                    && p.loaded.body.intact();
                                                if same {
                                                    Ok(st)
                                                } else {
                                                    w.discard(st);
                                                    Err(p.loaded.origin.problem(CHANGED))
                                                }
                                            }),
                                    )
                                }
                                _ => None,
                            })
                            .collect()
                    },
                    || place_synced(&mut pending, w, &index.entries, MAX_STAGED_CHUNKS, opened),
                );
                for p in prepared.iter_mut() {
                    p.loaded.body = Body::Unread(p.loaded.body.len());
                }
                opened.release(&refs);
                for (prepared, fates) in finished {
                    books.tally(prepared, fates, rec, out);
                }
                let ticket = if staged.iter().any(|s| matches!(s, Some(Ok(_)))) { w.ask_sync() } else { None };
                pending.push_back(StagedChunk { prepared, fates, staged, ticket });
                Ok(())
            },
            || chunks.next().map(load),
        );
        done?;
        current = next;
    }
    if let Some(w) = &fw {
        for (prepared, fates) in place_synced(&mut pending, w, &index.entries, 0, opened) {
            books.tally(prepared, fates, rec, out);
        }
    }
    let Books { source_cache, source_cache_same, cache, retimed, copied, .. } = books;
    let mut deleted = 0;
    let mut gone: HashSet<usize> = HashSet::new();
    let unmatched = matcher.unmatched_hashes();
    for i in choose_deletions(&unmatched, &mut record, &tdir, opened, opts, out) {
        let Some((e, h)) = index.entries.get(i) else { continue };
        let path = e.path(&tdir);
        if let Some(w) = &fw
            && let Err(err) = w.delete(e)
        {
            out.errors.push(err.problem());
            record.give_back(h);
            continue;
        }
        deleted += 1;
        gone.insert(i);
        rec.record(Event::Delete { folder: tn.clone(), target: path, sha256: *h, size: e.size });
    }
    out.counts.deleted_target = deleted;
    out.counts.messages_target = (index.entries.len() as u64 + out.counts.transferred).saturating_sub(deleted);
    if let Some(w) = &fw {
        w.sync_dirs()?;
        let kept: Vec<Hash> = index
            .entries
            .iter()
            .enumerate()
            .filter(|(i, (_, h))| !gone.contains(i) && record.take(h))
            .map(|(_, (_, h))| *h)
            .collect();
        save_record(&record, root, &record_path, &source_id, &kept, &copied, deleted, opts, out);
        if let Some(c) = source_cache {
            // Unchanged (every line as it was): the file is left alone, so a re-run writes nothing.
            let unchanged = known.as_ref().is_some_and(|k| k.len() as u64 == c.lines && source_cache_same == c.lines);
            if unchanged {
                c.discard();
            } else if let Err(e) = c.commit() {
                out.warnings.push(e.problem());
            }
        }
        if let Some(mut c) = cache {
            if index.from_cache && c.lines == 0 && retimed.is_empty() && gone.is_empty() {
                c.discard();
            } else {
                for (i, (e, h)) in index.entries.iter().enumerate().filter(|(i, _)| !gone.contains(i)) {
                    let mtime_ns = match retimed.get(&i) {
                        Some(d) if *d != e.meta.date => d.saturating_mul(1_000_000_000),
                        _ => e.mtime_ns,
                    };
                    c.add(e.base(), e.size, mtime_ns, h);
                }
                if let Err(e) = c.commit() {
                    out.warnings.push(e.problem());
                }
            }
        }
    }
    if opts.dry_run {
        out.plan_line = Some(format!(
            "{} -> {}: {} to copy, {} flag updates, {} to delete, {} already there",
            sf.name.as_str(),
            tn.as_str(),
            copy_n,
            upd_n,
            deleted,
            out.counts.skipped_existing
        ));
    }
    let _ = sf;
    Ok(())
}

/// The target messages of a folder to delete (indexes into `unmatched`'s entries), by the
/// deletion mode, the safety rules and the run's `--max-delete` budget; refusals are reported.
fn choose_deletions(
    unmatched: &[(usize, Hash)],
    record: &mut deletion::Record,
    target: &Path,
    opened: &Opened,
    opts: &SyncOptions,
    out: &mut FolderOutcome,
) -> Vec<usize> {
    // Source messages not read yet match nothing: no deletion after a signal.
    if out.interrupted {
        return Vec::new();
    }
    // A message a filter left out matched nothing, and its copy would look gone.
    if opts.deletion != Deletion::Off && !unmatched.is_empty() && !out.counts.skipped_filtered.is_empty() {
        out.warnings.push(Problem::new(
            target,
            "--max-size, --min-age or --max-age left messages of this folder out: nothing deleted here",
        ));
        return Vec::new();
    }
    let read_errors = !out.errors.is_empty() || opened.unsure_of_gone() || opened.intact().is_err();
    let src = deletion::SourceState { messages: out.counts.messages_source, read_errors };
    // Lines of the record are given up only for deletions that happen.
    let mut trial = record.clone();
    let (chosen, why) = deletion::choose(opts.deletion, unmatched, &mut trial, src, opts.max_delete);
    if let Some(why) = why {
        out.warnings.push(Problem::new(target, why));
    }
    let n = chosen.len() as u64;
    if n > 0 && opts.delete_budget.as_ref().is_some_and(|b| !b.take(n)) {
        out.errors.push(Problem::new(
            target,
            format!("{n} deletions here would pass --max-delete {}; deleted none", opts.max_delete.unwrap_or(0)),
        ));
        return Vec::new();
    }
    *record = trial;
    chosen
}

/// Writes a folder's record of copies when it changed (a re-run that did nothing writes nothing;
/// a target with no record and no new copy gets none, so `--delete` keeps saying it cannot tell).
#[allow(clippy::too_many_arguments)]
fn save_record(
    record: &deletion::Record,
    root: &Path,
    path: &Path,
    source_id: &str,
    kept: &[Hash],
    copied: &[Hash],
    deleted: u64,
    opts: &SyncOptions,
    out: &mut FolderOutcome,
) {
    let unchanged = record.found && copied.is_empty() && deleted == 0 && kept.len() as u64 == record.total();
    if opts.dry_run || unchanged || (!record.found && copied.is_empty()) {
        return;
    }
    let Some(folder) = path.parent().and_then(fsx::folder_id) else {
        out.warnings.push(Problem::new(path, "its folder cannot be looked at; the record of copies is not written"));
        return;
    };
    let text = record.text(&folder, source_id, kept, copied);
    if let Err(p) = deletion::Record::save(root, path, &text, opts.owner, opts.durable) {
        out.warnings.push(p);
    }
}

const CHANGED: &str = "the message changed while it was copied; not copied (the next run copies it)";

/// A mapped source file written into an mbox must not have changed meanwhile: the folder is
/// then not written (its temporary mbox is dropped) and the next run does it.
fn still_the_same(l: &source::Loaded<'_>) -> Result<()> {
    if l.body.intact() { Ok(()) } else { Err(Error::bad(l.origin.path(), CHANGED)) }
}

/// Staged chunks of one folder that may wait for their sync at once (each holds up to 1,024
/// descriptors of unnamed files); past this the oldest is waited for.
const MAX_STAGED_CHUNKS: usize = 8;

/// The messages of a chunk put in place, with their fates.
type Placed<'a> = (Vec<Prepared<'a>>, Vec<Option<Fate>>);

/// A chunk written into tmp/, waiting for its sync and for being put in place.
struct StagedChunk<'a> {
    prepared: Vec<Prepared<'a>>,
    fates: Vec<Option<Fate>>,
    staged: Vec<Option<Result<Staged, Problem>>>,
    /// The sync that makes it durable (`None`: nothing to wait for).
    ticket: Option<fsx::Ticket>,
}

/// Puts in place, oldest first, the staged chunks whose sync has finished, waiting for the
/// oldest while more than `keep` wait (0: every chunk is waited for). Returns the messages
/// with their fates.
fn place_synced<'a>(
    pending: &mut VecDeque<StagedChunk<'a>>,
    w: &FolderWriter<'_>,
    index: &[(MaildirEntry, Hash)],
    keep: usize,
    source: &Opened,
) -> Vec<Placed<'a>> {
    let mut done = Vec::new();
    while let Some(c) = pending.front() {
        let synced = match c.ticket {
            None => Ok(()),
            Some(t) => match w.synced(t, pending.len() > keep) {
                Some(r) => r,
                None => break,
            },
        };
        if let Some(c) = pending.pop_front() {
            // Bytes read from a source mbox that shrank or changed since are not put in place.
            let synced = synced.map_err(|e| e.problem()).and_then(|()| source.intact());
            done.push(c.put_in_place(w, index, synced));
        }
    }
    done
}

impl<'a> StagedChunk<'a> {
    /// Links or renames each staged message of a synced chunk into place (or discards them
    /// when the sync failed) and renames the files whose flags change; returns the messages
    /// with their fates.
    fn put_in_place(
        self,
        w: &FolderWriter<'_>,
        index: &[(MaildirEntry, Hash)],
        synced: Result<(), Problem>,
    ) -> Placed<'a> {
        let StagedChunk { prepared, mut fates, staged, .. } = self;
        let done: Vec<Option<Fate>> = prepared
            .par_iter()
            .zip(fates.par_iter())
            .zip(staged.into_par_iter())
            .map(|((p, f), s)| {
                if f.is_some() {
                    return None;
                }
                Some(match (s, &synced) {
                    (Some(Ok(s)), Ok(())) => match w.commit(s) {
                        Ok(wr) => Fate::Copied {
                            sha: wr.sha256,
                            size: wr.size,
                            name: format!("{}/{}", wr.sub.as_str(), wr.name),
                        },
                        Err(e) => Fate::Failed(e.problem()),
                    },
                    (Some(Ok(s)), Err(e)) => {
                        w.discard(s);
                        Fate::Failed(e.clone())
                    }
                    (Some(Err(e)), _) => Fate::Failed(e),
                    (None, _) => update_flags(w, p, index),
                })
            })
            .collect();
        for (f, d) in fates.iter_mut().zip(done) {
            if d.is_some() {
                *f = d;
            }
        }
        (prepared, fates)
    }
}

/// What a folder's run keeps account of across chunks for its caches.
struct Books<'k> {
    /// Source file hashes from an earlier run.
    known: Option<&'k target_index::SourceCache>,
    tn: &'k FolderName,
    tdir: &'k Path,
    source_cache: Option<target_index::CacheWriter>,
    /// Source cache lines found as they were.
    source_cache_same: u64,
    cache: Option<target_index::CacheWriter>,
    /// Index entries whose file got a new date (flag updates that re-timed it).
    retimed: HashMap<usize, i64>,
    seen: HashSet<[u8; 8]>,
    /// Hashes of the messages copied in this run (for the record of copies).
    copied: Vec<Hash>,
}

impl Books<'_> {
    /// Records each message's fate (events, counts) and what the caches learn from it.
    fn tally(
        &mut self,
        prepared: Vec<Prepared<'_>>,
        fates: Vec<Option<Fate>>,
        rec: &dyn Recorder,
        out: &mut FolderOutcome,
    ) {
        for (p, f) in prepared.iter().zip(fates) {
            if let Some(Fate::Copied { sha, .. }) = &f {
                self.copied.push(*sha);
            }
            match (&f, p.action, self.cache.as_mut()) {
                (Some(Fate::Copied { sha, name, size }), _, Some(c)) => {
                    c.add(&target_index::base_of(name), *size, p.loaded.meta.date.saturating_mul(1_000_000_000), sha)
                }
                (Some(Fate::FlagsUpdated { .. }), Some(Action::UpdateFlags(i)), _) => {
                    self.retimed.insert(i, p.loaded.meta.date);
                }
                _ => {}
            }
            if let (Some(c), Some(k)) = (self.source_cache.as_mut(), &p.loaded.key)
                && let Some(Fate::Copied { sha, .. } | Fate::Skipped { sha, .. } | Fate::FlagsUpdated { sha, .. }) = &f
            {
                c.add(&k.base, k.size, k.mtime_ns, sha);
                if self.known.and_then(|kc| kc.get(&k.base, k.size, k.mtime_ns)) == Some(*sha) {
                    self.source_cache_same += 1;
                }
            }
            tally(p, f.unwrap_or(Fate::NotMail), self.tn, self.tdir, &mut self.seen, rec, out);
        }
    }
}

fn update_flags(w: &FolderWriter<'_>, p: &Prepared<'_>, index: &[(MaildirEntry, Hash)]) -> Fate {
    let Some(Action::UpdateFlags(i)) = p.action else {
        return Fate::Failed(p.loaded.origin.problem("internal: no action for this message"));
    };
    let Some((e, h)) = index.get(i) else { return Fate::Failed(p.loaded.origin.problem("internal: no target entry")) };
    match w.set_flags(e, &p.loaded.meta) {
        Ok((sub, name)) => Fate::FlagsUpdated { sha: *h, name: format!("{}/{name}", sub.as_str()) },
        Err(err) => Fate::Failed(err.problem()),
    }
}

fn tally(
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

/// An existing target mbox as read: its messages, and what the locked commit checks.
struct TargetMbox {
    file: MboxFile,
    read: mbox_write::Read,
    entries: Vec<(crate::store::mbox::split::Entry, Hash, Meta)>,
}

fn target_mbox_read_options() -> ReadOptions {
    ReadOptions {
        variant: crate::store::mbox::read::Variant::Auto,
        zone: crate::store::mbox::date::Zone::Utc,
        keep_internal_headers: false,
    }
}

fn read_target_mbox(place: &mbox_target::Place) -> Result<Option<TargetMbox>> {
    let Some((file, read)) = mbox_target::read_existing(place)? else { return Ok(None) };
    if file.check().is_err() && !file.is_empty() {
        return Err(Error::bad(&place.path, "target exists and is not an mbox; not overwritten"));
    }
    let ro = target_mbox_read_options();
    let mut entries = Vec::new();
    for (i, e) in file.entries(&ro).enumerate() {
        let m = file.message(&e, &ro);
        if !m.pseudo {
            entries.push((e.clone(), Identity::Mbox.hash(&m.pieces), m.meta));
        }
        if i % 1024 == 1023 {
            file.release_before(e.msg.end);
        }
    }
    file.intact()?;
    Ok(Some(TargetMbox { file, read, entries }))
}

/// Takes back the counts of messages a failed mbox commit did not write (counted from
/// `before`): they are failed, not transferred, and the folder says so.
fn uncount_failed_commit(before: &crate::report::Counts, out: &mut FolderOutcome) {
    let c = &mut out.counts;
    let copied = c.transferred.saturating_sub(before.transferred);
    let flagged = c.flags_updated.saturating_sub(before.flags_updated);
    c.transferred = before.transferred;
    c.bytes_transferred = before.bytes_transferred;
    c.flags_updated = before.flags_updated;
    c.skipped_existing = c.skipped_existing.saturating_sub(flagged);
    c.deleted_target = before.deleted_target;
    c.messages_target = before.messages_target;
    c.failed += copied + flagged;
}

fn hash_key(h: &Hash) -> [u8; 8] {
    let mut k = [0u8; 8];
    k.copy_from_slice(&h[..8]);
    k
}

/// Mail appended to a target mbox during the run is kept, unless it holds a message this run
/// copies too: then another copier (a second run) wrote meanwhile, and keeping both would
/// double it.
fn appended_is_new_mail(cur: &std::fs::File, from: u64, path: &Path, ours: &HashSet<[u8; 8]>) -> Result<()> {
    let f = MboxFile::from_file(cur.try_clone().map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?, path)?;
    let ro = target_mbox_read_options();
    let from = usize::try_from(from).map_err(|_| Error::bad(path, "file too large for this machine"))?;
    for e in f.entries_from(&ro, from) {
        let m = f.message(&e, &ro);
        if !m.pseudo && ours.contains(&hash_key(&Identity::Mbox.hash(&m.pieces))) {
            return Err(Error::bad(
                path,
                "another program appended copies of messages this run copies (a second run?); not written, run again",
            ));
        }
    }
    f.intact()
}

/// Commits an mbox written for a folder, or gives it up: the sources read must still be as
/// they were, then [`MboxWriter::commit`] checks the target under its locks. On failure the
/// folder's counts say that nothing was written.
#[allow(clippy::too_many_arguments)]
fn commit_mbox(
    w: MboxWriter<'_>,
    res: Result<()>,
    checks: &[&MboxFile],
    was: Option<&mbox_write::Read>,
    ours: &HashSet<[u8; 8]>,
    tn: &FolderName,
    before: &crate::report::Counts,
    rec: &dyn Recorder,
    out: &mut FolderOutcome,
) -> Result<()> {
    let path = w.path().to_path_buf();
    let vet = |cur: &std::fs::File, from: u64| appended_is_new_mail(cur, from, &path, ours);
    // Checked before the wait for the locks and again, last, under them.
    let ready = || checks.iter().try_for_each(|f| f.intact());
    let res = match res.and_then(|()| ready()) {
        Ok(()) => w.commit(was, mbox_lock::WRITE_WAIT, &vet, &ready),
        Err(e) => {
            w.abort();
            Err(e)
        }
    };
    if let Ok(kept) = res
        && kept > 0
    {
        let why = format!("{kept} bytes of mail another program appended during the run were kept after the copies");
        out.warnings.push(Problem::new(&path, why));
    }
    if let Err(e) = &res {
        uncount_failed_commit(before, out);
        let p = e.problem();
        rec.record(Event::Error {
            folder: tn.clone(),
            problem: Problem { reason: format!("{}; none of this folder's copies were written", p.reason), ..p },
        });
    }
    res.map(|_| ())
}

/// Reads a source folder in order for an mbox target: each message, once loaded (hashed as an
/// mbox holds it) and past the filters, goes to `decide`, which returns its fate; load errors,
/// counts and events are handled here, and mapped pages are released chunk by chunk.
fn for_mbox_target(
    opened: &Opened,
    tn: &FolderName,
    path: &Path,
    opts: &SyncOptions,
    rec: &dyn Recorder,
    out: &mut FolderOutcome,
    mut decide: impl FnMut(&Ref, &Prepared<'_>) -> Result<Fate> + Send,
) -> Result<()> {
    let mut seen = HashSet::new();
    let load = |refs: Vec<Ref>| {
        let prepared = load_chunk(opened, &refs, opts, Some(Identity::Mbox), None);
        (refs, prepared)
    };
    // Two chunks are in memory at a time here: each gets half the usual budget.
    let mut chunks = opened.chunks_of(&opts.read, source::CHUNK_BYTES / 2);
    let mut current = chunks.next().map(load);
    // The next chunk is read and hashed while this one is written: the writer is sequential,
    // and a big folder would otherwise keep one core idle at every chunk.
    while let Some((refs, prepared)) = current.take() {
        if let Some(sig) = interrupt::requested() {
            return Err(Error::Interrupted(sig));
        }
        let following = chunks.next();
        let (done, next) = rayon::join(
            || -> Result<()> {
                for (r, p) in refs.iter().zip(prepared) {
                    let p = match p {
                        Ok(p) => p,
                        Err(e) => {
                            out.errors.push(e);
                            continue;
                        }
                    };
                    let fate = match account(&p, opts, out) {
                        Some("pseudo" | "gone") => Fate::NotMail,
                        Some(reason) => Fate::Filtered { reason },
                        None => decide(r, &p)?,
                    };
                    tally(&p, fate, tn, path, &mut seen, rec, out);
                }
                Ok(())
            },
            || following.map(load),
        );
        done?;
        opened.release(&refs);
        current = next;
    }
    Ok(())
}

/// Writes a new mbox from a Maildir folder in one pass (see [`to_mbox`]).
#[allow(clippy::too_many_arguments)]
fn new_mbox_from_maildir(
    opened: &Opened,
    tn: &FolderName,
    place: &mbox_target::Place,
    keywords: std::collections::BTreeSet<String>,
    opts: &SyncOptions,
    rec: &dyn Recorder,
    out: &mut FolderOutcome,
) -> Result<()> {
    let before = out.counts.clone();
    let mut w = MboxWriter::create(&place.dir, &place.name, opts.owner, opts.durable)?;
    w.set_keywords(keywords.into_iter().collect());
    let mut ours = HashSet::new();
    let res = for_mbox_target(opened, tn, &place.path, opts, rec, out, |_, p| {
        w.append(&p.loaded.body.pieces(), &p.loaded.meta)?;
        still_the_same(&p.loaded)?;
        let sha = p.hash.unwrap_or_default();
        ours.insert(hash_key(&sha));
        Ok(Fate::Copied { sha, size: p.loaded.body.len(), name: String::new() })
    });
    out.counts.messages_target = out.counts.transferred;
    // A file that appeared meanwhile (a delivery) is kept after the copies by the commit.
    commit_mbox(w, res, &[], None, &ours, tn, &before, rec, out)
}

#[allow(clippy::too_many_arguments)]
fn to_mbox(
    opened: &Opened,
    sf: &SourceFolder,
    tn: &FolderName,
    shown: PathBuf,
    place: Option<mbox_target::Place>,
    opts: &SyncOptions,
    rec: &dyn Recorder,
    out: &mut FolderOutcome,
) -> Result<()> {
    let existing = match &place {
        Some(p) => read_target_mbox(p)?,
        None => None,
    };
    if existing.is_none()
        && let (Some(place), Opened::Maildir { listed: Some(listing), .. }) = (&place, opened)
        && !opts.dry_run
    {
        // A new mbox from a listed Maildir: the keywords for X-IMAPbase are known from the
        // names, so every file is read once, hashed and written in the same pass.
        return new_mbox_from_maildir(opened, tn, place, listing.keywords.clone(), opts, rec, out);
    }
    // No record of copies beside an mbox (Dovecot would list it as a mailbox): --delete cannot
    // tell copies from other mail there and deletes nothing; --mirror works.
    let mut record = deletion::Record::default();
    let path = place.as_ref().map_or(shown, |p| p.path.clone());
    let before = out.counts.clone();
    let mut matcher = Matcher::new(existing.iter().flat_map(|t| t.entries.iter().map(|(_, h, m)| (*h, m))));
    let mut updates: Vec<Option<Meta>> = vec![None; existing.as_ref().map_or(0, |t| t.entries.len())];
    // Phase 1: decide for every message (the file is rewritten once, in order).
    let mut copies: Vec<(Ref, Hash)> = Vec::new();
    let mut ours = HashSet::new();
    let mut keywords: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for_mbox_target(opened, tn, &path, opts, rec, out, |r, p| {
        let h = p.hash.unwrap_or_default();
        Ok(match matcher.decide(&h, &p.loaded.meta.mbox_view()) {
            Action::Copy => {
                ours.insert(hash_key(&h));
                keywords.extend(p.loaded.meta.keywords.iter().map(str::to_string));
                copies.push((r.clone(), h));
                Fate::Copied { sha: h, size: p.loaded.body.len(), name: String::new() }
            }
            Action::Skip(_) => Fate::Skipped { sha: h, reason: "exists" },
            Action::UpdateFlags(i) => {
                if let Some(u) = updates.get_mut(i) {
                    *u = Some(p.loaded.meta.mbox_view());
                }
                Fate::FlagsUpdated { sha: h, name: String::new() }
            }
        })
    })?;
    let unmatched = matcher.unmatched_hashes();
    let deletes: HashSet<usize> =
        choose_deletions(&unmatched, &mut record, &path, opened, opts, out).into_iter().collect();
    out.counts.deleted_target = deletes.len() as u64;
    if let Some(t) = &existing {
        for (i, (_, _, meta)) in t.entries.iter().enumerate().filter(|(i, _)| !deletes.contains(i)) {
            let meta = updates.get(i).and_then(Option::as_ref).unwrap_or(meta);
            keywords.extend(meta.keywords.iter().map(str::to_string));
        }
    }
    let n_existing = existing.as_ref().map_or(0, |t| t.entries.len()) as u64;
    out.counts.messages_target = n_existing + out.counts.transferred - out.counts.deleted_target;
    let changed =
        !copies.is_empty() || updates.iter().any(Option::is_some) || !deletes.is_empty() || existing.is_none();
    if opts.dry_run {
        out.plan_line = Some(format!(
            "{} -> {} (mbox {}): {} to copy, {} flag updates, {} to delete",
            sf.name.as_str(),
            tn.as_str(),
            path.display(),
            copies.len(),
            updates.iter().filter(|u| u.is_some()).count(),
            deletes.len()
        ));
        return Ok(());
    }
    if !changed {
        return Ok(());
    }
    let Some(place) = &place else { return Err(Error::bad(&path, "internal: no place for the mbox")) };
    let mut w = MboxWriter::create(&place.dir, &place.name, opts.owner, opts.durable)?;
    w.set_keywords(keywords.into_iter().collect());
    let res = (|| {
        if let Some(t) = &existing {
            let ro = target_mbox_read_options();
            for (i, (e, _, meta)) in t.entries.iter().enumerate() {
                if deletes.contains(&i) {
                    continue;
                }
                let m = t.file.message(e, &ro);
                let meta = updates.get(i).and_then(Option::as_ref).unwrap_or(meta);
                w.append(&m.pieces, meta)?;
            }
        }
        for (r, planned) in &copies {
            if let Some(sig) = interrupt::requested() {
                return Err(Error::Interrupted(sig));
            }
            // Read again for this pass: it must still be the message that was decided on.
            let again = opened.load(r, &opts.read).and_then(|l| {
                if l.gone || Identity::Mbox.hash(&l.body.pieces()) == *planned {
                    Ok(l)
                } else {
                    Err(l.origin.problem("the message changed while the run read it; not copied (the next run does)"))
                }
            });
            match again {
                Ok(l) if l.gone => {
                    // Deleted from the source between the two passes.
                    out.counts.transferred = out.counts.transferred.saturating_sub(1);
                    out.counts.messages_target = out.counts.messages_target.saturating_sub(1);
                    out.counts.vanished_source += 1;
                }
                Ok(l) => {
                    w.append(&l.body.pieces(), &l.meta)?;
                    still_the_same(&l)?;
                }
                Err(p) => {
                    // Counted as copied when it was decided; it is not in the file.
                    out.counts.transferred = out.counts.transferred.saturating_sub(1);
                    out.counts.messages_target = out.counts.messages_target.saturating_sub(1);
                    out.counts.failed += 1;
                    out.errors.push(p);
                }
            }
        }
        Ok(())
    })();
    // The source and the target were read through mappings: both must be as they were, and
    // the target is checked again under its locks.
    let mut checks: Vec<&MboxFile> = existing.iter().map(|t| &t.file).collect();
    if let Opened::Mbox(f) = opened {
        checks.push(f);
    }
    commit_mbox(w, res, &checks, existing.as_ref().map(|t| &t.read), &ours, tn, &before, rec, out)
}
