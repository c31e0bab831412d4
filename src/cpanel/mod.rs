//! cPanel account trees as stores (FORMATS.md §3): every mailbox of every domain plus the
//! account's metadata, as a source and as a target of `sync`, and for `inspect` and `verify`.
//!
//! This module orchestrates; it does not parse mail. Discovery (account.rs) finds the
//! mailboxes; each one is an ordinary Maildir (or legacy mbox) tree handed to the store sync
//! engine with a target inside the target home, after the directories on the way there were
//! created or opened without following symlinks. Then each target mailbox's `maildirsize` is
//! recomputed (maildirsize.rs) and the metadata is planned (metadata.rs, with the identity
//! mapping of mapping.rs) and merged into the target (output.rs). A pkgacct archive source
//! (archive.rs) is streamed instead of walked; the metadata planner reads either through
//! tree.rs. Usage errors (bad mapping, unknown `--mailbox`) and mdbox accounts stop the run
//! before anything is written; a failure in one mailbox or file is reported and the run goes
//! on.

pub mod account;
pub mod archive;
pub mod base;
pub mod filter;
pub mod lines;
pub mod maildirsize;
pub mod mapping;
pub mod metadata;
pub mod output;
pub mod tree;

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use regex::Regex;
use serde::Serialize;

use self::account::{Account, BoxFormat, Mailbox};
use self::lines::Winner;
use self::mapping::{Context, Mapping, Renamed, Rewriter, split_address};
use self::output::Output;
use self::tree::Tree;
use crate::error::{Error, Problem, Result};
use crate::events::Recorder;
use crate::fsx::{Dir, Owner};
use crate::human;
use crate::inspect::FolderInfo;
use crate::interrupt;
use crate::lock::{LockOptions, TargetLock};
use crate::report::{Summary, peak_rss_kib};
use crate::spec::{Kind, Store};
use crate::store::mbox::read::ReadOptions;
use crate::sync::SyncOptions;
use crate::verify::Verification;

/// Options that only cPanel stores use (`--map-domain`, `--mailbox`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct CpanelOptions {
    /// `OLD=NEW` each.
    pub map_domain: Vec<String>,
    /// `OLD=NEW` each, local parts or full addresses.
    pub map_user: Vec<String>,
    /// CSV file of `old,new` rows.
    pub map_file: Option<PathBuf>,
    /// Where the source's system-wide files (valiases/, vfilters/, vdomainaliases/) are read.
    pub source_etc: PathBuf,
    /// Where the target's system-wide files are written.
    pub target_etc: PathBuf,
    /// Only this address's mailbox and its metadata lines.
    pub mailbox: Option<String>,
    /// The source's metadata lines win over the target's for the same key.
    pub overwrite_metadata: bool,
    /// The home the account will have on its server, when the target is staged elsewhere:
    /// the account files name it, not the staging path.
    pub target_home_path: Option<PathBuf>,
}

impl Default for CpanelOptions {
    fn default() -> Self {
        CpanelOptions {
            map_domain: Vec::new(),
            map_user: Vec::new(),
            map_file: None,
            source_etc: PathBuf::from("/etc"),
            target_etc: PathBuf::from("/etc"),
            mailbox: None,
            overwrite_metadata: false,
            target_home_path: None,
        }
    }
}

/// Mode of `mail/`, `mail/DOMAIN/` and each `mail/DOMAIN/LOCAL/` (FORMATS.md §3.3: world-x
/// so Exim can reach `maildirsize`).
const MAIL_DIR_MODE: u32 = 0o751;
const HOME_MODE: u32 = 0o711;

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn mapping_of(cp: &CpanelOptions) -> Result<Mapping> {
    Mapping::from_options(&cp.map_domain, &cp.map_user, cp.map_file.as_deref()).map_err(Error::Usage)
}

/// The `--mailbox` address, validated.
fn selected_of(cp: &CpanelOptions) -> Result<Option<(String, String)>> {
    match cp.mailbox.as_deref() {
        None => Ok(None),
        Some(a) => split_address(a)
            .map(|(l, d)| Some((l.to_string(), d.to_string())))
            .ok_or_else(|| Error::Usage(format!("--mailbox {a:?}: expected an address LOCAL@DOMAIN"))),
    }
}

/// The account at `home`, with `--mailbox` checked and mdbox mailboxes refused.
fn open_account(home: &Path, selected: &Option<(String, String)>) -> Result<Account> {
    if !home.is_dir() {
        return Err(Error::Usage(format!("{}: not a cPanel home directory", home.display())));
    }
    let mut acc = account::discover(home)?;
    if let Some((l, d)) = selected {
        let addr = format!("{l}@{d}");
        let (_, listed) = metadata::recorded(&tree::Fs::new(&acc.home), &acc);
        let known = acc.mailboxes.iter().any(|b| b.label() == addr)
            || listed.iter().any(|(a, b)| a == l && b == d)
            || acc.mdbox.iter().any(|(a, _)| *a == addr);
        if !known {
            return Err(Error::Usage(format!("--mailbox {addr}: no such mailbox in {}", home.display())));
        }
        acc.mailboxes.retain(|b| b.label() == addr);
        acc.mdbox.retain(|(a, _)| *a == addr);
    }
    if !acc.mdbox.is_empty() {
        return Err(account::mdbox_error(&acc.mdbox));
    }
    Ok(acc)
}

/// Sync options for one mailbox: the default account's mailbox does not read the domain
/// directories below it as folders.
fn box_options(b: &Mailbox, acc: &Account, opts: &SyncOptions) -> Result<SyncOptions> {
    let mut o = opts.clone();
    if b.address.is_none() {
        for name in &acc.default_excludes {
            let re = Regex::new(&format!("^{}$", regex::escape(name))).map_err(|e| Error::Usage(e.to_string()))?;
            o.map.exclude.push(re);
        }
    }
    Ok(o)
}

/// The target home, opened once (created outside dry runs): its mailboxes, lock and metadata
/// files are reached from it, not from its path again. `None` in a dry run when it cannot be
/// opened (what opens it by path then says why).
fn open_home(home: &Path, owner: Option<Owner>, dry_run: bool) -> Result<Option<Dir>> {
    if dry_run {
        return Ok(if home.is_dir() { Dir::open_root(home).ok() } else { None });
    }
    Dir::create_root(home, HOME_MODE, owner).map(Some)
}

/// Opens (creating with cPanel's modes when `create`) the target mailbox directory below the
/// target home (`opened`: the home opened at the start), refusing symlinks on the way.
fn mailbox_dir(
    home: &Path,
    opened: Option<&Dir>,
    rel: &[String],
    owner: Option<Owner>,
    create: bool,
) -> Result<Option<Dir>> {
    let mut dir = match opened {
        Some(d) => d.try_clone()?,
        None if !create && !home.exists() => return Ok(None),
        None => Dir::open_root(home)?,
    };
    for c in rel {
        if c.is_empty() || c == "." || c == ".." || c.contains('/') {
            return Err(Error::bad(home.join(c), "unsafe mailbox path component"));
        }
        let name = OsStr::new(c);
        dir = if create {
            dir.create(name, MAIL_DIR_MODE, owner)?
        } else {
            match dir.open(name)? {
                Some(d) => d,
                None => return Ok(None),
            }
        };
    }
    Ok(Some(dir))
}

/// Dovecot recalculates a `maildirsize` at 5,120 bytes; far more is not one (a file planted to
/// make root read without end).
const MAX_MAILDIRSIZE_BYTES: u64 = 1 << 20;

/// The quota definition line for a target mailbox's `maildirsize`.
fn quota_for(
    src: &dyn tree::Tree,
    b: &Mailbox,
    acc: &Account,
    target_dir: &Dir,
    warnings: &mut Vec<Problem>,
) -> Option<String> {
    let target = target_dir
        .read_own_file(OsStr::new("maildirsize"), MAX_MAILDIRSIZE_BYTES)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    if let Some(q) = target.and_then(|t| maildirsize::quota_line(&t)) {
        return Some(q);
    }
    let read = |p: PathBuf| src.read(&p).ok().map(|v| String::from_utf8_lossy(&v).into_owned());
    if b.format == BoxFormat::Maildir
        && let Some(q) = maildirsize_quota(src, b, warnings, "not used for the target's quota")
    {
        return Some(q);
    }
    let (l, d) = b.address.as_ref()?;
    let text = read(acc.home.join("etc").join(d).join("quota"))?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        let bytes: u64 = v.trim().parse().ok()?;
        (k == l && bytes > 0).then(|| format!("{bytes}S"))
    })
}

fn write_maildirsize(
    src: &dyn tree::Tree,
    b: &Mailbox,
    acc: &Account,
    dir: &Dir,
    owner: Option<Owner>,
    root_run: bool,
    warnings: &mut Vec<Problem>,
) -> Result<()> {
    let Some(q) = quota_for(src, b, acc, dir, warnings) else { return Ok(()) };
    let (bytes, count) = maildirsize::usage(dir);
    let text = maildirsize::render(&q, bytes, count);
    let name = OsStr::new("maildirsize");
    let path = dir.path.join(name);
    let existing = dir.stat_at(name)?;
    if existing.is_some_and(|e| e.kind == crate::fsx::FileKind::Symlink) {
        return Err(Error::refused(&path, "is a symlink in the target; not written"));
    }
    if existing.is_some_and(|e| e.kind != crate::fsx::FileKind::File) {
        return Err(Error::refused(&path, "is not a regular file in the target; not written"));
    }
    if dir.read_own_file(name, MAX_MAILDIRSIZE_BYTES).is_ok_and(|old| old.as_deref() == Some(text.as_bytes())) {
        return Ok(());
    }
    let owner = match existing {
        Some(e) if root_run => Some(Owner { uid: e.uid, gid: e.gid }),
        Some(_) => None,
        None => owner,
    };
    dir.write_atomic("maildirsize", text.as_bytes(), 0o600, owner, true)
}

fn merge_summary(total: &mut Summary, s: Summary) {
    total.counts.add(&s.counts);
    total.errors.extend(s.errors);
    total.warnings.extend(s.warnings);
}

fn finish(mut s: Summary, started: Instant, dry_run: bool) -> Summary {
    s.errors.sort();
    s.errors.dedup();
    s.warnings.sort();
    s.warnings.dedup();
    s.dry_run = dry_run;
    s.counts.failed = s.counts.failed.max(s.errors.len() as u64);
    s.complete = s.errors.is_empty();
    // Mailboxes or metadata may have been left out after any signal.
    s.note_interruption(interrupt::requested().is_some());
    s.seconds = started.elapsed().as_secs_f64();
    s.peak_rss_kib = peak_rss_kib();
    s
}

fn mail_gid() -> Option<u32> {
    nix::unistd::Group::from_name("mail").ok().flatten().map(|g| g.gid.as_raw())
}

fn basename(p: &str) -> String {
    Path::new(p).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Everything the metadata planner needs, derived from the two homes and the options.
struct Setup {
    mapping: Mapping,
    rw: Rewriter,
    target_home: String,
    source_user: String,
    target_user: String,
    /// The source account's addresses: its mailboxes' and those its files list.
    addresses: Vec<(String, String)>,
    /// The uid and gid of the target account (its home's owner, when not root): its passwd
    /// lines get them.
    target_ids: Option<(u32, u32)>,
}

impl Setup {
    /// The renames that name no domain or address of the source account at `src`, each a
    /// warning: they rename no mailbox.
    fn unmatched(&self, acc: &Account, src: &Path) -> Vec<Problem> {
        self.mapping
            .unmatched(&acc.domains, &self.addresses)
            .into_iter()
            .map(|a| {
                let why = match a.what {
                    Renamed::Domain => {
                        format!("the source account has no domain {} (its domains: {})", a.old, acc.domains.join(", "))
                    }
                    Renamed::Address => format!("the source account has no address {}", a.old),
                    Renamed::LocalPart => format!("no address of the source account has the local part {}", a.old),
                };
                Problem::of(crate::error::Kind::Usage, src, format!("{}: {why}; it renames no mailbox", a.given))
            })
            .collect()
    }
}

/// `--mbox-variant`, `--mbox-tz` and `--keep-mbox-headers` warned about when none of the
/// account's mailboxes (those the run takes) is an mbox one.
fn unread_mbox_options(acc: &Account, opts: &SyncOptions, src: &Path) -> Vec<Problem> {
    if acc.mailboxes.iter().any(|b| b.format == BoxFormat::Mbox) {
        return Vec::new();
    }
    let why = "for reading mbox sources, and every mailbox of this account is a Maildir; ignored";
    opts.mbox_reading_given()
        .into_iter()
        .map(|o| Problem::of(crate::error::Kind::Usage, src, format!("{o}: {why}")))
        .collect()
}

/// The uid and gid of the account whose home is `home`: its owner, unless that is root (a home
/// made by this run, or not an account's).
fn account_ids(home: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(home).ok().filter(|m| m.is_dir())?;
    (m.uid() != 0).then_some((m.uid(), m.gid()))
}

/// [`account_ids`] of a sync's target home, asked once the run made it; a dry run, which makes
/// none, takes the owner it would have been given (`owner`, else the user running).
fn new_account_ids(home: &Path, owner: Option<Owner>) -> Option<(u32, u32)> {
    if home.is_dir() {
        return account_ids(home);
    }
    let (uid, gid) = match owner {
        Some(o) => (o.uid, o.gid),
        None => (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()),
    };
    (uid != 0).then_some((uid, gid))
}

fn setup(src: &dyn tree::Tree, acc: &Account, src_home: &Path, dst_home: &Path, mapping: Mapping) -> Setup {
    let (recorded_homes, listed) = metadata::recorded(src, acc);
    let mut homes: Vec<String> = vec![
        src_home.to_string_lossy().trim_end_matches('/').to_string(),
        absolute(src_home).to_string_lossy().into_owned(),
    ];
    if let Ok(c) = src_home.canonicalize() {
        homes.push(c.to_string_lossy().into_owned());
    }
    homes.extend(recorded_homes.iter().cloned());
    homes.sort();
    homes.dedup();
    let mut addresses: Vec<(String, String)> =
        acc.mailboxes.iter().filter(|b| !b.archive).filter_map(|b| b.address.clone()).collect();
    addresses.extend(listed);
    addresses.sort();
    addresses.dedup();
    let target_home = absolute(dst_home).to_string_lossy().trim_end_matches('/').to_string();
    let rw = Rewriter::new(
        &mapping,
        &Context { domains: &acc.domains, addresses: &addresses, source_homes: &homes, target_home: &target_home },
    );
    let source_user =
        recorded_homes.first().map(|h| basename(h)).unwrap_or_else(|| basename(&absolute(src_home).to_string_lossy()));
    let target_user = basename(&target_home);
    Setup { mapping, rw, target_home, source_user, target_user, addresses, target_ids: None }
}

pub fn sync(src: &Store, dst: &Store, opts: &SyncOptions, cp: &CpanelOptions, rec: &dyn Recorder) -> Result<Summary> {
    let started = Instant::now();
    if let Some(p) = cp.target_home_path.as_ref().filter(|p| !p.is_absolute()) {
        return Err(Error::Usage(format!("--target-home-path {}: must be an absolute path", p.display())));
    }
    let mapping = mapping_of(cp)?;
    let selected = selected_of(cp)?;
    match (src.kind, dst.kind) {
        (Kind::Cpanel, Kind::Cpanel) => {}
        (Kind::Cpanel, _) => return export_one(src, dst, opts, &selected, rec, started),
        (_, Kind::Cpanel) => return import_one(src, dst, opts, &mapping, &selected, rec, started),
        _ => return crate::sync::sync(src, dst, opts, rec),
    }
    if src.path.is_file() {
        return sync_archive(src, dst, opts, cp, mapping, &selected, rec, started);
    }
    let acc = open_account(&src.path, &selected)?;
    let root_run = nix::unistd::geteuid().is_root();
    let dst_home = dst.path.clone();
    if dst_home.exists() && !dst_home.is_dir() {
        return Err(Error::Usage(format!("{}: target exists and is not a directory", dst_home.display())));
    }
    let owner = match opts.owner {
        Some(o) => Some(o),
        None if root_run => std::fs::metadata(&dst_home).ok().map(|m| Owner { uid: m.uid(), gid: m.gid() }),
        None => None,
    };
    let fs = tree::Fs::new(&acc.home);
    let mut st = setup(&fs, &acc, &src.path, cp.target_home_path.as_deref().unwrap_or(&dst_home), mapping);
    let home = open_home(&dst_home, owner, opts.dry_run)?;
    st.target_ids = new_account_ids(&dst_home, owner);
    let _lock = lock_home(&dst_home, home.as_ref(), opts, owner)?;
    let mut total = Summary::default();
    total.errors.extend(acc.problems.iter().cloned());
    total.warnings.extend(collisions(&acc, &st.mapping, &dst_home));
    total.warnings.extend(st.unmatched(&acc, &src.path));
    total.warnings.extend(unread_mbox_options(&acc, opts, &src.path));
    let mut opts = opts.clone();
    opts.owner = owner;
    for b in &acc.mailboxes {
        if interrupt::requested().is_some() {
            break;
        }
        let rel = b.target_rel(&st.mapping);
        let tpath = rel.iter().fold(dst_home.clone(), |p, c| p.join(c));
        let dir = match mailbox_dir(&dst_home, home.as_ref(), &rel, owner, !opts.dry_run) {
            Ok(d) => d,
            Err(e) => {
                total.errors.push(e.problem());
                continue;
            }
        };
        let bo = box_options(b, &acc, &opts)?;
        if opts.dry_run {
            let shown = if b.address.is_some() { b.label() } else { "default account".into() };
            rec.record(crate::events::Event::Plan(format!(
                "mailbox {shown}: {} -> {}",
                b.dir.display(),
                tpath.display()
            )));
        }
        let target = Store { kind: Kind::Maildir, path: tpath, explicit: true };
        // The mailbox as reached from the home, not its path again (its levels are the user's).
        let opened = dir.as_ref().and_then(|d| d.try_clone().ok());
        match crate::sync::sync_in(&b.store(), &target, opened, &bo, rec) {
            Ok(s) => merge_summary(&mut total, s),
            Err(e) if e.is_usage() => return Err(e),
            Err(e) => total.errors.push(e.problem()),
        }
        if let Some(d) = dir.filter(|_| !opts.dry_run)
            && let Err(e) = write_maildirsize(&fs, b, &acc, &d, owner, root_run, &mut total.warnings)
        {
            total.errors.push(e.problem());
        }
    }
    let cx = metadata::Cx {
        tree: &fs,
        mapping: &st.mapping,
        rw: &st.rw,
        selected: selected.clone(),
        source_etc: &cp.source_etc,
        target_home: &st.target_home,
        source_user: &st.source_user,
        target_user: &st.target_user,
        target_ids: st.target_ids,
    };
    if interrupt::requested().is_none() {
        apply_metadata(&acc, &cx, &dst_home, home, cp, owner, root_run, &opts, rec, &mut total);
    }
    Ok(finish(total, started, opts.dry_run))
}

/// `cpanel:HOME --mailbox ADDR` into a plain Maildir or mbox store.
fn export_one(
    src: &Store,
    dst: &Store,
    opts: &SyncOptions,
    selected: &Option<(String, String)>,
    rec: &dyn Recorder,
    started: Instant,
) -> Result<Summary> {
    if selected.is_none() {
        return Err(Error::Usage(
            "a cpanel: source with a maildir:/mbox: target needs --mailbox ADDR (or use a cpanel: target)".into(),
        ));
    }
    let acc = open_account(&src.path, selected)?;
    let Some(b) = acc.mailboxes.first() else {
        return Err(Error::Usage("--mailbox: that address has no mailbox directory".into()));
    };
    let mut s = crate::sync::sync(&b.store(), dst, &box_options(b, &acc, opts)?, rec)?;
    s.warnings.extend(unread_mbox_options(&acc, opts, &src.path));
    Ok(finish(s, started, opts.dry_run))
}

/// A plain store into one mailbox of a cPanel account (`--mailbox ADDR`, else the default
/// account's mailbox).
fn import_one(
    src: &Store,
    dst: &Store,
    opts: &SyncOptions,
    mapping: &Mapping,
    selected: &Option<(String, String)>,
    rec: &dyn Recorder,
    started: Instant,
) -> Result<Summary> {
    let b = Mailbox { address: selected.clone(), archive: false, dir: src.path.clone(), format: BoxFormat::Maildir };
    let rel = b.target_rel(mapping);
    let root_run = nix::unistd::geteuid().is_root();
    let owner = opts.owner.or_else(|| {
        if root_run { std::fs::metadata(&dst.path).ok().map(|m| Owner { uid: m.uid(), gid: m.gid() }) } else { None }
    });
    let mut o = opts.clone();
    o.owner = owner;
    let home = open_home(&dst.path, owner, opts.dry_run)?;
    let _lock = lock_home(&dst.path, home.as_ref(), opts, owner)?;
    let dir = if opts.dry_run { None } else { mailbox_dir(&dst.path, home.as_ref(), &rel, owner, true)? };
    let target =
        Store { kind: Kind::Maildir, path: rel.iter().fold(dst.path.clone(), |p, c| p.join(c)), explicit: true };
    let mut s = crate::sync::sync_in(src, &target, dir, &o, rec)?;
    // The renames apply to the one mailbox written: the --mailbox address.
    let (domains, addresses): (Vec<String>, Vec<(String, String)>) =
        selected.iter().map(|(l, d)| (d.clone(), (l.clone(), d.clone()))).unzip();
    for a in mapping.unmatched(&domains, &addresses) {
        let why = match selected {
            Some((l, d)) => format!("renames only the --mailbox address here, {l}@{d}"),
            None => "the store goes into the default account's mailbox, which no rename applies to".to_string(),
        };
        s.warnings.push(Problem::of(crate::error::Kind::Usage, &src.path, format!("{}: {why}; ignored", a.given)));
    }
    Ok(finish(s, started, opts.dry_run))
}

/// `verify cpanel:A cpanel:B`: every mailbox as `verify` compares Maildirs (telling `rec` how
/// far it is), then every metadata file the same sync would write, each difference listed.
pub fn verify(
    src: &Store,
    dst: &Store,
    opts: &SyncOptions,
    cp: &CpanelOptions,
    rec: &dyn Recorder,
) -> Result<Verification> {
    if src.kind != Kind::Cpanel || dst.kind != Kind::Cpanel {
        return Err(Error::Usage("verify of a cPanel account needs cpanel: on both sides".into()));
    }
    let mapping = mapping_of(cp)?;
    let selected = selected_of(cp)?;
    if src.path.is_file() {
        return verify_archive(src, dst, opts, cp, mapping, selected);
    }
    let acc = open_account(&src.path, &selected)?;
    let fs = tree::Fs::new(&acc.home);
    let mut st = setup(&fs, &acc, &src.path, cp.target_home_path.as_deref().unwrap_or(&dst.path), mapping);
    st.target_ids = account_ids(&dst.path);
    let mut v = Verification { errors: acc.problems.clone(), ..Default::default() };
    for b in &acc.mailboxes {
        let rel = b.target_rel(&st.mapping);
        let tpath = rel.iter().fold(dst.path.clone(), |p, c| p.join(c));
        let label = if b.address.is_some() { b.label() } else { "default account".into() };
        if let Err(e) = mailbox_dir(&dst.path, None, &rel, None, false) {
            v.errors.push(e.problem());
            continue;
        }
        let target = Store { kind: Kind::Maildir, path: tpath, explicit: true };
        match crate::verify::verify_with(&b.store(), &target, &box_options(b, &acc, opts)?, rec) {
            Ok(mut mv) => {
                if b.address.is_some() {
                    for d in &mut mv.differences {
                        d.folder = format!("{label}/{}", d.folder);
                    }
                    for f in &mut mv.folders {
                        f.folder = format!("{label}/{}", f.folder);
                    }
                }
                v.absorb(mv);
            }
            Err(e) => v.errors.push(e.problem()),
        }
    }
    let cx = metadata::Cx {
        tree: &fs,
        mapping: &st.mapping,
        rw: &st.rw,
        selected,
        source_etc: &cp.source_etc,
        target_home: &st.target_home,
        source_user: &st.source_user,
        target_user: &st.target_user,
        target_ids: st.target_ids,
    };
    compare_metadata(&acc, &cx, dst, cp, &mut v);
    Ok(v)
}

/// Writes (or, in a dry run, prints) the metadata files the source account maps to, each
/// decided against the base the last sync left in the target home, and then records the new
/// base (not in a dry run).
#[allow(clippy::too_many_arguments)]
fn apply_metadata(
    acc: &Account,
    cx: &metadata::Cx<'_>,
    dst_home: &Path,
    home: Option<Dir>,
    cp: &CpanelOptions,
    owner: Option<Owner>,
    root_run: bool,
    opts: &SyncOptions,
    rec: &dyn Recorder,
    total: &mut Summary,
) {
    let plan = metadata::plan(acc, cx);
    total.warnings.extend(plan.warnings);
    // A --mailbox run plans only some lines of each file: measured against a whole base, the
    // others would look removed at the source. It neither goes by the base nor records one.
    let loaded = match (&home, cx.selected.is_none()) {
        (Some(h), true) => base::read(h),
        _ => base::Loaded { bases: None, problem: None, writable: false },
    };
    match loaded.problem {
        Some(p) if p.kind == crate::error::Kind::Malformed => total.warnings.push(p),
        Some(p) => total.errors.push(p),
        None => {}
    }
    let out = Output {
        home: dst_home.to_path_buf(),
        home_dir: home,
        etc: cp.target_etc.clone(),
        owner,
        mail_gid: if root_run { mail_gid() } else { None },
        root_run,
        dry_run: opts.dry_run,
        winner: if cp.overwrite_metadata { Winner::Source } else { Winner::Target },
        delete: opts.deletion != crate::deletion::Deletion::Off,
        rec,
    };
    let old = loaded.bases.as_ref();
    let mut new = base::Bases::new();
    for p in &plan.files {
        let id = base::id(p);
        let (alone, fb) = base_of(&plan.files, old, p);
        let got = out.apply(p, fb.map(|f| &f.keys), &mut total.errors, &mut total.warnings);
        let Some(keys) = got.or_else(|| fb.map(|f| f.keys.clone())).filter(|k| alone && !k.is_empty()) else {
            continue;
        };
        new.insert(id, base::FileBase { kind: p.body.kind(), from: p.from.display().to_string(), keys });
    }
    // Files the last sync wrote that the source no longer has. Not when the source could not
    // be read whole (a file unread looks removed), nor when it has no account file at all (a
    // wrong --source-etc or an unmounted home looks the same).
    let whole_source = !plan.unread && !plan.files.is_empty();
    let domains: Vec<String> = acc.domains.iter().map(|d| cx.mapping.domain(d)).collect();
    for (id, fb) in old.into_iter().flatten().filter(|(id, _)| !plan.files.iter().any(|p| base::id(p) == **id)) {
        let gone = base::place(id)
            .filter(|(root, rel)| ours(*root, rel, &fb.kind, &domains))
            .zip(output::Body::empty(&fb.kind))
            .filter(|_| whole_source);
        let keys = match gone {
            Some(((root, rel), body)) => {
                let p = output::Planned {
                    root,
                    rel,
                    dir_modes: Vec::new(),
                    mode: 0o600,
                    group_mail: false,
                    body,
                    from: PathBuf::from(&fb.from),
                    rewrites: Vec::new(),
                };
                out.apply_gone(&p, &fb.keys, &mut total.errors, &mut total.warnings).unwrap_or_else(|| fb.keys.clone())
            }
            None => fb.keys.clone(),
        };
        if !keys.is_empty() {
            new.insert(id.clone(), base::FileBase { keys, ..fb.clone() });
        }
    }
    let changed = match old {
        Some(o) => *o != new,
        None => !new.is_empty(),
    };
    if changed
        && !opts.dry_run
        && loaded.writable
        && let Some(h) = &out.home_dir
        && let Err(e) = base::write(h, &new, owner, opts.durable)
    {
        total.errors.push(e.problem());
    }
}

/// Whether a file the base names is one this account's run may write: below its home, only
/// where the planner puts account files (its domains' `etc/`, autoresponders, SpamAssassin
/// and webmail settings); below the target's `etc` only the routing files of its domains as
/// the run maps them. The base is in the account's home, writable by its owner: it must not
/// name another account's forwarders, `/etc/passwd`, nor any other file of the home a root
/// run could be made to remove.
fn ours(root: output::Root, rel: &[String], kind: &str, domains: &[String]) -> bool {
    let top = |names: &[&str]| rel.first().is_some_and(|t| names.contains(&t.as_str()));
    match (root, rel) {
        (output::Root::Home, [etc, domain, name]) if etc == "etc" => {
            domains.contains(domain)
                && (["passwd", "shadow", "quota"].contains(&name.as_str()) || name.ends_with(".rcube.db"))
        }
        (output::Root::Home, [etc, domain, _, filter]) if etc == "etc" => {
            domains.contains(domain) && filter == "filter"
        }
        (output::Root::Home, [_, _]) if top(&[".autorespond", ".spamassassin"]) => true,
        (output::Root::Home, [_]) => top(&[".spamassassinenable", ".spamassassindisable"]),
        (output::Root::Home, [_, _, ..]) => top(&[".sqmail", ".cphorde"]),
        (output::Root::Home, _) => false,
        (output::Root::Etc, [dir, domain]) => {
            let want = match dir.as_str() {
                "valiases" | "vdomainaliases" => "aliases",
                "vfilters" => "exim filter",
                _ => return false,
            };
            kind == want && domains.contains(domain)
        }
        (output::Root::Etc, _) => false,
    }
}

/// Compares the metadata the source would write with what the target holds, then settles
/// the verdict.
fn compare_metadata(acc: &Account, cx: &metadata::Cx<'_>, dst: &Store, cp: &CpanelOptions, v: &mut Verification) {
    let plan = metadata::plan(acc, cx);
    let out = Output {
        home: dst.path.clone(),
        home_dir: None,
        etc: cp.target_etc.clone(),
        owner: None,
        mail_gid: None,
        root_run: false,
        dry_run: true,
        winner: Winner::Target,
        delete: false,
        rec: &crate::events::Discard,
    };
    // As the sync goes by the last sync's base (a whole account's only), so does verify: what
    // the target changed on its own since is kept by a sync, and no difference.
    let home = Dir::find_beneath(&dst.path, &dst.path).ok().flatten();
    let bases = home.as_ref().filter(|_| cx.selected.is_none()).and_then(|h| base::read(h).bases);
    for p in &plan.files {
        out.compare(p, base_of(&plan.files, bases.as_ref(), p).1.map(|f| &f.keys), v);
    }
    v.settle();
}

/// Whether `p` is the only planned file going to its place, and the base the last sync left
/// for it. A file two source files map onto (two domains renamed onto one) has no one source
/// to compare with: it is merged two-way, as before there was a base.
fn base_of<'b>(
    files: &[output::Planned],
    bases: Option<&'b base::Bases>,
    p: &output::Planned,
) -> (bool, Option<&'b base::FileBase>) {
    let id = base::id(p);
    let alone = files.iter().filter(|q| base::id(q) == id).count() == 1;
    (alone, bases.and_then(|b| b.get(&id)).filter(|f| alone && f.kind == p.body.kind()))
}

/// One mailbox in `inspect`.
#[derive(Debug, Serialize)]
pub struct MailboxInfo {
    /// The address; empty for the default account's mailbox (`HOME/mail`).
    pub address: String,
    pub path: String,
    pub format: &'static str,
    pub folders: Vec<String>,
    pub messages: u64,
    pub bytes: u64,
    /// Quota in bytes from `etc/DOMAIN/quota` (0 = unlimited), if listed.
    pub quota: Option<u64>,
    /// The quota line of its `maildirsize`, if any.
    pub maildirsize_quota: Option<String>,
}

/// One metadata file found.
#[derive(Debug, Serialize)]
pub struct MetadataInfo {
    pub path: String,
    pub kind: String,
    pub entries: u64,
}

#[derive(Debug, Serialize)]
pub struct AccountInspection {
    pub kind: &'static str,
    pub path: String,
    pub domains: Vec<String>,
    /// Every folder of every mailbox: `ADDRESS/FOLDER`, the default account's by plain name.
    pub folders: Vec<FolderInfo>,
    pub mailboxes: Vec<MailboxInfo>,
    pub metadata: Vec<MetadataInfo>,
    pub messages: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

/// The inspection of an account (directory or archive): its folders and mailboxes, the
/// metadata files the account would carry, and every problem, sorted.
fn account_inspection(
    st: &Store,
    acc: &Account,
    cx: &metadata::Cx<'_>,
    folders: Vec<FolderInfo>,
    mailboxes: Vec<MailboxInfo>,
    mut problems: Vec<Problem>,
) -> AccountInspection {
    let plan = metadata::plan(acc, cx);
    problems.extend(plan.warnings);
    problems.sort();
    problems.dedup();
    AccountInspection {
        kind: "cpanel",
        path: st.path.display().to_string(),
        domains: acc.domains.clone(),
        messages: folders.iter().map(|f| f.messages).sum(),
        bytes: folders.iter().map(|f| f.bytes).sum(),
        metadata: plan
            .files
            .iter()
            .map(|p| MetadataInfo {
                path: p.from.display().to_string(),
                kind: p.body.kind(),
                entries: body_entries(&p.body),
            })
            .collect(),
        folders,
        mailboxes,
        problems,
    }
}

/// `inspect cpanel:HOME`, read-only, telling `rec` how far it is. mdbox mailboxes are listed as
/// problems (not read).
pub fn inspect(
    st: &Store,
    ropts: &ReadOptions,
    (follow_symlinks, jobs): (bool, usize),
    rec: &dyn Recorder,
) -> Result<AccountInspection> {
    if st.path.is_file() {
        return inspect_archive(st);
    }
    if !st.path.is_dir() {
        return Err(Error::Usage(format!("{}: not a cPanel home directory", st.path.display())));
    }
    let acc = account::discover(&st.path)?;
    let mut problems = acc.problems.clone();
    for (a, p) in &acc.mdbox {
        problems
            .push(Problem::new(p, format!("{a}: stored in Dovecot mdbox; convert it with doveadm before moving it")));
    }
    let mut folders = Vec::new();
    let mut mailboxes = Vec::new();
    let fs = tree::Fs::new(&acc.home);
    for b in &acc.mailboxes {
        let ins = crate::inspect::inspect_with(&b.store(), ropts, follow_symlinks, jobs, rec)?;
        // The default account's reader also walks the domain directories; what it finds
        // there belongs to those mailboxes, which are inspected on their own.
        let in_domain_dir = |p: &Problem| {
            b.address.is_none()
                && p.path.strip_prefix(&b.dir).ok().and_then(|r| r.components().next()).is_some_and(|c| {
                    let c = c.as_os_str();
                    !c.to_string_lossy().starts_with('.')
                        && b.dir.join(c).is_dir()
                        && !matches!(c.to_str(), Some("cur" | "new" | "tmp"))
                })
        };
        problems.extend(ins.problems.into_iter().filter(|p| !in_domain_dir(p)));
        let mut names = Vec::new();
        let (mut msgs, mut bytes) = (0, 0);
        for mut f in ins.folders {
            if b.address.is_none() && acc.default_excludes.contains(&f.name) {
                continue;
            }
            names.push(f.name.clone());
            msgs += f.messages;
            bytes += f.bytes;
            if b.address.is_some() {
                f.name = format!("{}/{}", b.label(), f.name);
            }
            folders.push(f);
        }
        let quota = quota_of(&fs, &acc, b);
        let mds = maildirsize_quota(&fs, b, &mut problems, "its quota not shown");
        mailboxes.push(MailboxInfo {
            address: b.label(),
            path: b.dir.display().to_string(),
            format: if b.format == BoxFormat::Mbox { "mbox" } else { "maildir" },
            folders: names,
            messages: msgs,
            bytes,
            quota,
            maildirsize_quota: mds,
        });
    }
    let mapping = Mapping::default();
    let s = setup(&fs, &acc, &st.path, &st.path, mapping);
    let cx = metadata::Cx {
        tree: &fs,
        mapping: &s.mapping,
        rw: &s.rw,
        selected: None,
        source_etc: Path::new("/nonexistent-mailmover-etc"),
        target_home: &s.target_home,
        source_user: &s.source_user,
        target_user: &s.target_user,
        target_ids: s.target_ids,
    };
    Ok(account_inspection(st, &acc, &cx, folders, mailboxes, problems))
}

impl AccountInspection {
    pub fn write_human(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let s = crate::folder::sanitize;
        writeln!(
            w,
            "cpanel account {}: {}, {}, {}, {}",
            s(&self.path),
            human::count(self.domains.len() as u64, "domain", "domains"),
            human::count(self.mailboxes.len() as u64, "mailbox", "mailboxes"),
            human::count(self.messages, "message", "messages"),
            human::size(self.bytes)
        )?;
        writeln!(w, "  domains: {}", s(&self.domains.join(", ")))?;
        for b in &self.mailboxes {
            let name = if b.address.is_empty() { "(default account)".to_string() } else { b.address.clone() };
            let quota = match b.quota {
                Some(0) => "unlimited".to_string(),
                Some(q) => human::size(q),
                None => "-".to_string(),
            };
            writeln!(
                w,
                "  {:<32} {} {:>7} {:<8} {:>28}  quota {quota}",
                s(&name),
                b.format,
                b.messages,
                human::noun(b.messages, "message", "messages"),
                human::size(b.bytes)
            )?;
            writeln!(w, "      folders: {}", s(&b.folders.join(", ")))?;
        }
        for m in &self.metadata {
            writeln!(w, "  metadata {} ({}, {})", s(&m.path), m.kind, human::count(m.entries, "entry", "entries"))?;
        }
        for p in &self.problems {
            writeln!(w, "problem: {}", s(&p.to_string()))?;
        }
        Ok(())
    }
}

/// A cPanel target is locked at its home for the whole run (its mailboxes are locked each
/// on their own too, as any Maildir target).
fn lock_home(home: &Path, opened: Option<&Dir>, opts: &SyncOptions, owner: Option<Owner>) -> Result<TargetLock> {
    let o = LockOptions { owner, ..opts.lock_options() };
    match opened {
        Some(d) => TargetLock::inside_opened(d, crate::lock::HIDDEN, &o),
        None => TargetLock::inside(home, crate::lock::HIDDEN, &o),
    }
}

/// The target's owner: `--owner`, else (as root) the owner of the target home.
fn target_owner(opts: &SyncOptions, dst_home: &Path, root_run: bool) -> Option<Owner> {
    match opts.owner {
        Some(o) => Some(o),
        None if root_run => std::fs::metadata(dst_home).ok().map(|m| Owner { uid: m.uid(), gid: m.gid() }),
        None => None,
    }
}

/// `sync cpanel:cpmove-USER.tar.gz cpanel:HOME`: the archive is read in two streaming passes
/// (archive.rs); mailboxes, `maildirsize` and metadata then go as for a directory source.
#[allow(clippy::too_many_arguments)]
fn sync_archive(
    src: &Store,
    dst: &Store,
    opts: &SyncOptions,
    cp: &CpanelOptions,
    mapping: Mapping,
    selected: &Option<(String, String)>,
    rec: &dyn Recorder,
    started: Instant,
) -> Result<Summary> {
    let scanned = archive::scan(&src.path)?;
    let mut acc = archive::account(&scanned);
    if let Some((l, d)) = selected {
        let addr = format!("{l}@{d}");
        let (_, listed) = metadata::recorded(&scanned.tree, &acc);
        let known = acc.mailboxes.iter().any(|b| b.label() == addr)
            || listed.iter().any(|(a, b)| a == l && b == d)
            || acc.mdbox.iter().any(|(a, _)| *a == addr);
        if !known {
            return Err(Error::Usage(format!("--mailbox {addr}: no such mailbox in {}", src.path.display())));
        }
        acc.mailboxes.retain(|b| b.label() == addr);
        acc.mdbox.retain(|(a, _)| *a == addr);
    }
    if !acc.mdbox.is_empty() {
        return Err(account::mdbox_error(&acc.mdbox));
    }
    let root_run = nix::unistd::geteuid().is_root();
    let dst_home = dst.path.clone();
    if dst_home.exists() && !dst_home.is_dir() {
        return Err(Error::Usage(format!("{}: target exists and is not a directory", dst_home.display())));
    }
    let owner = target_owner(opts, &dst_home, root_run);
    let mut st =
        setup(&scanned.tree, &acc, &scanned.home, cp.target_home_path.as_deref().unwrap_or(&dst_home), mapping);
    let home = open_home(&dst_home, owner, opts.dry_run)?;
    st.target_ids = new_account_ids(&dst_home, owner);
    let _lock = lock_home(&dst_home, home.as_ref(), opts, owner)?;
    let mut opts = opts.clone();
    opts.owner = owner;
    let mut total = Summary::default();
    total.errors.extend(acc.problems.iter().cloned());
    total.warnings.extend(collisions(&acc, &st.mapping, &dst_home));
    total.warnings.extend(st.unmatched(&acc, &src.path));
    total.warnings.extend(unread_mbox_options(&acc, &opts, &src.path));
    let mut targets = Vec::new();
    let mut dirs = Vec::new();
    for b in &acc.mailboxes {
        let rel = b.target_rel(&st.mapping);
        let tpath = rel.iter().fold(dst_home.clone(), |p, c| p.join(c));
        let dir = mailbox_dir(&dst_home, home.as_ref(), &rel, owner, !opts.dry_run);
        let target = |d: &Option<Dir>| {
            let opened = d.as_ref().map(Dir::try_clone).transpose()?;
            archive::BoxTarget::new(b.clone(), tpath, opened, &opts)
        };
        match dir.and_then(|d| target(&d).map(|t| (d, t))) {
            Ok((d, t)) => {
                targets.push(t);
                dirs.push(d);
            }
            Err(e) => total.errors.push(e.problem()),
        }
    }
    let out = archive::sync_messages(&src.path, &scanned, &targets, &opts, rec)?;
    total.counts.add(&out.counts);
    total.errors.extend(out.errors);
    total.warnings.extend(out.warnings);
    for (t, d) in targets.iter().zip(dirs) {
        if let Some(d) = d.filter(|_| !opts.dry_run)
            && let Err(e) = write_maildirsize(&scanned.tree, &t.mailbox, &acc, &d, owner, root_run, &mut total.warnings)
        {
            total.errors.push(e.problem());
        }
    }
    let cx = metadata::Cx {
        tree: &scanned.tree,
        mapping: &st.mapping,
        rw: &st.rw,
        selected: selected.clone(),
        source_etc: &scanned.etc,
        target_home: &st.target_home,
        source_user: &st.source_user,
        target_user: &st.target_user,
        target_ids: st.target_ids,
    };
    if interrupt::requested().is_none() {
        apply_metadata(&acc, &cx, &dst_home, home, cp, owner, root_run, &opts, rec, &mut total);
    }
    Ok(finish(total, started, opts.dry_run))
}

/// `inspect cpanel:cpmove-USER.tar.gz`: mailboxes, folders, counts and bytes from the archive's
/// listing (messages are not read), and the metadata found.
fn inspect_archive(st: &Store) -> Result<AccountInspection> {
    let scanned = archive::scan(&st.path)?;
    let acc = archive::account(&scanned);
    let mut problems = acc.problems.clone();
    for (a, p) in &acc.mdbox {
        problems
            .push(Problem::new(p, format!("{a}: stored in Dovecot mdbox; convert it with doveadm before moving it")));
    }
    let mut folders = Vec::new();
    let mut mailboxes: Vec<MailboxInfo> = Vec::new();
    for (b, name, n, bytes) in archive::folder_totals(&scanned, &acc) {
        let label = b.label();
        let shown = if b.address.is_some() { format!("{label}/{}", name.as_str()) } else { name.as_str().to_string() };
        folders.push(FolderInfo {
            name: shown,
            path: b.dir.display().to_string(),
            format: "maildir",
            messages: n,
            bytes,
            ..Default::default()
        });
        match mailboxes.iter_mut().find(|m| m.address == label) {
            Some(m) => {
                m.folders.push(name.as_str().to_string());
                m.messages += n;
                m.bytes += bytes;
            }
            None => mailboxes.push(MailboxInfo {
                address: label,
                path: b.dir.display().to_string(),
                format: "maildir",
                folders: vec![name.as_str().to_string()],
                messages: n,
                bytes,
                quota: quota_of(&scanned.tree, &acc, &b),
                maildirsize_quota: maildirsize_quota(&scanned.tree, &b, &mut problems, "its quota not shown"),
            }),
        }
    }
    let s = setup(&scanned.tree, &acc, &scanned.home, &scanned.home, Mapping::default());
    let cx = metadata::Cx {
        tree: &scanned.tree,
        mapping: &s.mapping,
        rw: &s.rw,
        selected: None,
        source_etc: &scanned.etc,
        target_home: &s.target_home,
        source_user: &s.source_user,
        target_user: &s.target_user,
        target_ids: s.target_ids,
    };
    Ok(account_inspection(st, &acc, &cx, folders, mailboxes, problems))
}

fn body_entries(b: &output::Body) -> u64 {
    match b {
        output::Body::Keyed(_, l) => l.iter().filter(|x| x.key.is_some()).count() as u64,
        output::Body::Filter(t) => filter::parse(t).1.len() as u64,
        output::Body::Whole(_) => 1,
    }
}

/// `verify cpanel:cpmove-USER.tar.gz cpanel:HOME`: the archive's second pass run as a dry run
/// (what it would copy is missing, what it would re-flag differs), then the metadata compared.
fn verify_archive(
    src: &Store,
    dst: &Store,
    opts: &SyncOptions,
    cp: &CpanelOptions,
    mapping: Mapping,
    selected: Option<(String, String)>,
) -> Result<Verification> {
    let scanned = archive::scan(&src.path)?;
    let mut acc = archive::account(&scanned);
    if let Some((l, d)) = &selected {
        acc.mailboxes.retain(|b| b.address.as_ref().is_some_and(|(bl, bd)| bl == l && bd == d));
    }
    let mut st =
        setup(&scanned.tree, &acc, &scanned.home, cp.target_home_path.as_deref().unwrap_or(&dst.path), mapping);
    st.target_ids = account_ids(&dst.path);
    let mut v = Verification { errors: acc.problems.clone(), ..Default::default() };
    let mut o = opts.clone();
    o.dry_run = true;
    let mut targets = Vec::new();
    for b in &acc.mailboxes {
        let rel = b.target_rel(&st.mapping);
        let tpath = rel.iter().fold(dst.path.clone(), |p, c| p.join(c));
        match mailbox_dir(&dst.path, None, &rel, None, false)
            .and_then(|_| archive::BoxTarget::new(b.clone(), tpath, None, &o))
        {
            Ok(t) => targets.push(t),
            Err(e) => v.errors.push(e.problem()),
        }
    }
    let out = archive::sync_messages(&src.path, &scanned, &targets, &o, &crate::events::Discard)?;
    v.counts.source = out.counts.messages_source;
    v.counts.target = out.counts.messages_target.saturating_sub(out.counts.transferred);
    v.counts.missing_in_target = out.counts.transferred;
    v.counts.flag_mismatches = out.counts.flags_updated;
    v.errors.extend(out.errors);
    let cx = metadata::Cx {
        tree: &scanned.tree,
        mapping: &st.mapping,
        rw: &st.rw,
        selected,
        source_etc: &scanned.etc,
        target_home: &st.target_home,
        source_user: &st.source_user,
        target_user: &st.target_user,
        target_ids: st.target_ids,
    };
    compare_metadata(&acc, &cx, dst, cp, &mut v);
    Ok(v)
}

/// The quota line of a source mailbox's `maildirsize`, read as the other account files are
/// (a link, FIFO or huge file planted there is refused and said, never followed or waited on).
fn maildirsize_quota(src: &dyn Tree, b: &Mailbox, problems: &mut Vec<Problem>, then: &str) -> Option<String> {
    let path = b.dir.join("maildirsize");
    match src.read(&path) {
        Ok(t) => maildirsize::quota_line(&String::from_utf8_lossy(&t)),
        Err(e) => {
            if src.exists(&path) {
                problems.push(Problem::new(&path, format!("{}; {then}", e.problem().reason)));
            }
            None
        }
    }
}

/// A mailbox's quota in bytes from `etc/DOMAIN/quota`, if listed (0 = unlimited).
fn quota_of(src: &dyn Tree, acc: &Account, b: &Mailbox) -> Option<u64> {
    let (l, d) = b.address.as_ref()?;
    let t = src.read(&acc.home.join("etc").join(d).join("quota")).ok()?;
    String::from_utf8_lossy(&t)
        .lines()
        .find_map(|line| line.split_once(':').filter(|(k, _)| k == l).and_then(|(_, v)| v.trim().parse().ok()))
}

/// Two source mailboxes mapped onto one target mailbox: allowed (their mail is merged), but
/// said, since it is rarely what was meant.
fn collisions(acc: &Account, m: &Mapping, dst_home: &Path) -> Vec<Problem> {
    let mut seen: std::collections::BTreeMap<Vec<String>, String> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for b in &acc.mailboxes {
        let rel = b.target_rel(m);
        let label = if b.address.is_some() { b.label() } else { "the default account".into() };
        if let Some(prev) = seen.get(&rel) {
            let p = rel.iter().fold(dst_home.to_path_buf(), |p, c| p.join(c));
            out.push(Problem::new(
                &p,
                format!("{prev} and {label} are both mapped to this mailbox; their mail is merged"),
            ));
        } else {
            seen.insert(rel, label);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use output::{Body, Planned, Root};

    /// A base names files by where they go; a file the source no longer has is touched only
    /// where the account's own run writes: the account files below its home, and its domains'
    /// routing files.
    #[test]
    fn a_base_names_only_the_accounts_own_files() {
        let doms = ["new.example".to_string()];
        let rel = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        for r in [
            ".autorespond/a@new.example",
            ".spamassassin/user_prefs",
            ".spamassassinenable",
            ".sqmail/data/a@new.example.pref",
            "etc/new.example/passwd",
            "etc/new.example/a.rcube.db",
            "etc/new.example/a/filter",
        ] {
            assert!(ours(Root::Home, &rel(r), "file", &doms), "{r}");
        }
        for r in [
            ".ssh/authorized_keys",
            "public_html/index.html",
            ".bashrc",
            "etc/other.example/passwd",
            "etc/new.example/secret",
            "etc/new.example/a/b",
            ".autorespond/a/b",
            ".sqmail",
        ] {
            assert!(!ours(Root::Home, &rel(r), "file", &doms), "{r}");
        }
        assert!(ours(Root::Etc, &rel("valiases/new.example"), "aliases", &doms));
        assert!(ours(Root::Etc, &rel("vfilters/new.example"), "exim filter", &doms));
        for (r, kind) in [
            ("valiases/other.example", "aliases"),
            ("vfilters/new.example", "aliases"),
            ("passwd", "passwd"),
            ("valiases/new.example/x", "aliases"),
            ("shadow/new.example", "file"),
        ] {
            assert!(!ours(Root::Etc, &rel(r), kind, &doms), "{r} {kind}");
        }
    }

    /// The target home opened at the start, then swapped for a link to another home: its
    /// mailboxes, its lock and its metadata files are reached from the opened one.
    #[test]
    fn the_target_home_is_reached_from_where_it_was_opened() {
        let t = tempfile::tempdir().unwrap();
        let (home, moved, other) = (t.path().join("home"), t.path().join("moved"), t.path().join("other"));
        std::fs::create_dir_all(&other).unwrap();
        let opened = open_home(&home, None, false).unwrap();
        std::fs::rename(&home, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &home).unwrap();
        let rel: Vec<String> = ["mail", "d.example", "u"].map(String::from).to_vec();
        let b = mailbox_dir(&home, opened.as_ref(), &rel, None, true).unwrap().unwrap();
        assert_eq!(b.path, home.join("mail/d.example/u"));
        assert!(moved.join("mail/d.example/u").is_dir());
        let _lock = lock_home(&home, opened.as_ref(), &SyncOptions::default(), None).unwrap();
        assert!(moved.join(crate::lock::HIDDEN).exists());
        let out = Output {
            home: home.clone(),
            home_dir: opened,
            etc: t.path().join("etc"),
            owner: None,
            mail_gid: None,
            root_run: false,
            dry_run: false,
            winner: Winner::Target,
            delete: false,
            rec: &crate::events::Discard,
        };
        let planned = Planned {
            root: Root::Home,
            rel: ["etc", "d.example", "passwd"].map(String::from).to_vec(),
            dir_modes: vec![0o750, 0o750],
            mode: 0o640,
            group_mail: false,
            body: Body::Whole(b"u:x:1:1::/h:/bin/sh\n".to_vec()),
            from: PathBuf::new(),
            rewrites: Vec::new(),
        };
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        out.apply(&planned, None, &mut errors, &mut warnings);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(moved.join("etc/d.example/passwd").is_file());
        assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0, "nothing written through the link");
    }
}
