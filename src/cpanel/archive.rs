//! A cPanel backup archive (`cpmove-USER.tar.gz`, pkgacct layout, FORMATS.md §3.6) read
//! directly as a `cpanel:` source, without unpacking it to disk.
//!
//! Design: two streaming passes over the (gzip-compressed or plain) tar. The first keeps the
//! small files in memory — the home's metadata (`etc/`, `.autorespond/`, `.spamassassin/`, the
//! Maildir control files) and the system files `va/`, `vf/`, `vad/` re-rooted as
//! `valiases/`, `vfilters/`, `vdomainaliases/` — and only lists the message files. Then the
//! account is known (mailboxes, folders, `dovecot-keywords`), so the second pass can match
//! and write each message as it streams past, one message in memory at a time. A nested
//! `homedir.tar` (older pkgacct) is read the same way, inside the outer stream.
//!
//! Member names are untrusted: absolute names and `..` are reported and skipped; symlinks are
//! never followed. The archive's numeric owners are ignored: what is written belongs to the
//! target's owner. Legacy mbox mailboxes inside an archive are reported, not read (unpack
//! such an archive first).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::account::{Account, BoxFormat, Mailbox};
use super::mapping::{valid_domain, valid_local};
use super::tree::{Mem, MemEntry, Tree};
use crate::deletion::Deletion;
use crate::error::{At, Error, Problem, Result};
use crate::events::{Event, Recorder};
use crate::folder::FolderName;
use crate::fsx::{Dir, FileKind};
use crate::message::{DateSource, Meta};
use crate::report::Counts;
use crate::source::Origin;
use crate::store::maildir::keywords::KeywordMap;
use crate::store::maildir::layout;
use crate::store::maildir::name;
use crate::store::maildir::write::{MaildirTarget, WriteOptions};
use crate::sync::{FedFolder, SyncOptions};

// Files bigger than this are not kept in memory in the first pass (they are not metadata).
use super::tree::SMALL_FILE;

/// Where an archive member belongs.
enum Place {
    /// Below the account's home (path relative to it).
    Home(PathBuf),
    /// A system routing file: (valiases|vfilters|vdomainaliases, domain).
    Sys(&'static str, String),
    /// `homedir.tar`: the home, as a tar inside the tar.
    NestedHome,
    Other,
}

/// Safe relative components of a member name, without the archive's top directory.
fn components(p: &Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn place(comps: &[String], nested: bool) -> Place {
    if nested {
        // Members of homedir.tar are relative to the home (possibly under a `homedir/` dir).
        let rest = match comps.first().map(String::as_str) {
            Some("homedir") => comps.get(1..).unwrap_or(&[]),
            _ => comps,
        };
        return Place::Home(rest.iter().collect());
    }
    let rest = comps.get(1..).unwrap_or(&[]);
    match rest {
        [h, tail @ ..] if h == "homedir" => Place::Home(tail.iter().collect()),
        [h] if h == "homedir.tar" => Place::NestedHome,
        [d, dom] if valid_domain(dom) => match d.as_str() {
            "va" => Place::Sys("valiases", dom.clone()),
            "vf" => Place::Sys("vfilters", dom.clone()),
            "vad" => Place::Sys("vdomainaliases", dom.clone()),
            _ => Place::Other,
        },
        _ => Place::Other,
    }
}

/// A message file's place: (mailbox components below `mail/`, Maildir++ folder dir or "",
/// "cur"/"new", file name).
fn message_place(rel: &Path) -> Option<(Vec<String>, String, String, String)> {
    let c = components(rel)?;
    let (first, rest) = c.split_first()?;
    if first != "mail" {
        return None;
    }
    let (file, dirs) = rest.split_last()?;
    let (sub, prefix) = dirs.split_last()?;
    if sub != "cur" && sub != "new" {
        return None;
    }
    match prefix.split_last() {
        Some((f, boxc)) if f.starts_with('.') => Some((boxc.to_vec(), f.clone(), sub.clone(), file.clone())),
        _ => Some((prefix.to_vec(), String::new(), sub.clone(), file.clone())),
    }
}

fn open(path: &Path) -> Result<Box<dyn Read>> {
    // Not waited on if a FIFO was swapped in after the caller saw a file (it may lie in a
    // user's home); a regular file reads the same with O_NONBLOCK.
    let mut f = crate::fsx::open_source_nonblocking(path)?;
    if !f.metadata().at(path)?.is_file() {
        return Err(Error::refused(path, "not a regular file; not read"));
    }
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).at(path)?;
    f.seek(std::io::SeekFrom::Start(0)).at(path)?;
    let r = std::io::BufReader::with_capacity(1 << 20, f);
    Ok(if n == 2 && magic == [0x1f, 0x8b] { Box::new(flate2::read::MultiGzDecoder::new(r)) } else { Box::new(r) })
}

/// One member, as the walkers see it.
struct Member<'r> {
    place: Place,
    kind: FileKind,
    size: u64,
    mtime: i64,
    display: String,
    /// A hard link's target, relative to the home (Dovecot hard-links a message copied to
    /// another folder, and tar stores the second name as a link without data).
    hardlink: Option<PathBuf>,
    data: &'r mut dyn Read,
}

fn walk(path: &Path, visit: &mut dyn FnMut(Member<'_>) -> Result<()>, problems: &mut Vec<Problem>) -> Result<()> {
    let mut ar = tar::Archive::new(open(path)?);
    for e in ar.entries().at(path)? {
        let e = e.at(path)?;
        walk_entry(path, e, false, visit, problems)?;
    }
    Ok(())
}

fn walk_entry<R: Read>(
    archive: &Path,
    mut e: tar::Entry<'_, R>,
    nested: bool,
    visit: &mut dyn FnMut(Member<'_>) -> Result<()>,
    problems: &mut Vec<Problem>,
) -> Result<()> {
    let name = e.path_bytes().into_owned();
    let display = format!("{}:{}", archive.display(), String::from_utf8_lossy(&name));
    let Some(comps) = components(Path::new(OsStr::from_bytes(&name))) else {
        problems.push(Problem::new(Path::new(&display), "member name is absolute, has '..' or is not UTF-8; skipped"));
        return Ok(());
    };
    let h = e.header();
    let kind = match h.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => FileKind::File,
        tar::EntryType::Directory => FileKind::Dir,
        tar::EntryType::Link => FileKind::File,
        tar::EntryType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    };
    let hardlink = if h.entry_type() == tar::EntryType::Link {
        let target = e.link_name_bytes().map(|b| b.into_owned()).unwrap_or_default();
        match components(Path::new(OsStr::from_bytes(&target))).map(|c| place(&c, nested)) {
            Some(Place::Home(rel)) => Some(rel),
            _ => {
                problems.push(Problem::new(Path::new(&display), "hard link to a member outside the home; skipped"));
                return Ok(());
            }
        }
    } else {
        None
    };
    let size = h.size().unwrap_or(0);
    let mtime = h.mtime().ok().and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
    let pl = place(&comps, nested);
    if let Place::NestedHome = pl {
        // Through `dyn Read`, so a tar inside a tar does not make the walker's type recursive.
        let reader: &mut dyn Read = &mut e;
        let mut inner = tar::Archive::new(reader);
        let entries = inner.entries().map_err(|err| Error::bad(Path::new(&display), err.to_string()))?;
        for ie in entries {
            let ie = ie.map_err(|err| Error::bad(Path::new(&display), err.to_string()))?;
            walk_entry(archive, ie, true, visit, problems)?;
        }
        return Ok(());
    }
    visit(Member { place: pl, kind, size, mtime, display, hardlink, data: &mut e })
}

/// What the first pass found.
pub struct Scanned {
    pub tree: Mem,
    /// Virtual roots: `ARCHIVE/homedir` and `ARCHIVE/etc`.
    pub home: PathBuf,
    pub etc: PathBuf,
    /// Every message member's home-relative path and size.
    pub messages: Vec<(PathBuf, u64)>,
    /// Message members other members are hard links to (kept in memory in the second pass
    /// until the link is read).
    pub link_targets: HashSet<PathBuf>,
    pub problems: Vec<Problem>,
}

pub fn scan(path: &Path) -> Result<Scanned> {
    let home = path.join("homedir");
    let etc = path.join("etc");
    let mut tree = Mem::default();
    let mut messages = Vec::new();
    let mut link_targets = HashSet::new();
    let mut sizes: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut errs = Vec::new();
    walk(
        path,
        &mut |m: Member<'_>| {
            let full = match &m.place {
                Place::Home(rel) => {
                    if message_place(rel).is_some() && m.kind == FileKind::File {
                        // Archives need not list directories: the message's own make the
                        // mailbox and folder known.
                        if let Some(dir) = rel.parent() {
                            tree.insert(&home, home.join(dir), MemEntry::Dir);
                        }
                        let size = match &m.hardlink {
                            Some(t) => {
                                link_targets.insert(t.clone());
                                sizes.get(t).copied().unwrap_or(0)
                            }
                            None => m.size,
                        };
                        sizes.insert(rel.clone(), size);
                        messages.push((rel.clone(), size));
                        return Ok(());
                    }
                    home.join(rel)
                }
                Place::Sys(sub, dom) => etc.join(sub).join(dom),
                _ => return Ok(()),
            };
            let root = if full.starts_with(&home) { home.clone() } else { etc.clone() };
            match m.kind {
                FileKind::Dir => tree.insert(&root, full, MemEntry::Dir),
                FileKind::Symlink => tree.insert(&root, full, MemEntry::Symlink),
                FileKind::File if m.hardlink.is_some() => {
                    let copy = m.hardlink.as_ref().and_then(|t| tree.entries.get(&home.join(t)).cloned());
                    match copy {
                        Some(e) => tree.insert(&root, full, e),
                        None => errs.push(Problem::new(
                            Path::new(&m.display),
                            "hard link to a member not seen before; skipped",
                        )),
                    }
                }
                FileKind::File if m.size <= SMALL_FILE => {
                    let mut b = Vec::with_capacity(m.size as usize);
                    m.data.read_to_end(&mut b).map_err(|e| Error::bad(Path::new(&m.display), e.to_string()))?;
                    tree.insert(&root, full, MemEntry::File(b));
                }
                FileKind::File => tree.insert(&root, full, MemEntry::Big(m.size)),
                FileKind::Other => errs.push(Problem::refused(Path::new(&m.display), "not a regular file; skipped")),
            }
            Ok(())
        },
        &mut problems,
    )?;
    problems.extend(errs);
    if messages.is_empty() && !tree.exists(&home) {
        return Err(Error::bad(path, "not a cPanel backup archive (no homedir/ or homedir.tar inside)"));
    }
    Ok(Scanned { tree, home, etc, messages, link_targets, problems })
}

/// The account as the archive describes it.
pub fn account(s: &Scanned) -> Account {
    let home = &s.home;
    let mut acc = Account { home: home.clone(), problems: s.problems.clone(), ..Default::default() };
    let t = &s.tree;
    let is_md = |d: &Path| t.list(d).iter().any(|(n, k)| *k == FileKind::Dir && (n == "cur" || n == "new"));
    let is_mdbox = |d: &Path| match t.read(&d.join("mailbox_format.cpanel")) {
        Ok(b) => String::from_utf8_lossy(&b).trim() == "mdbox",
        Err(_) => t.list(d).iter().any(|(n, k)| n == "storage" && *k == FileKind::Dir),
    };
    let has_inbox = |d: &Path| t.list(d).iter().any(|(n, k)| n.eq_ignore_ascii_case("inbox") && *k == FileKind::File);
    let mail = home.join("mail");
    let mut domains = std::collections::BTreeSet::new();
    if is_mdbox(&mail) {
        acc.mdbox.push(("default account".into(), mail.clone()));
    } else if is_md(&mail)
        || t.list(&mail).iter().any(|(n, k)| n.starts_with('.') && *k == FileKind::Dir && is_md(&mail.join(n)))
    {
        acc.mailboxes.push(Mailbox { address: None, archive: false, dir: mail.clone(), format: BoxFormat::Maildir });
    }
    for (d, k) in t.list(&mail) {
        if k != FileKind::Dir || d.starts_with('.') || matches!(d.as_str(), "cur" | "new" | "tmp") {
            continue;
        }
        let dpath = mail.join(&d);
        if d == "archive" {
            for (ad, ak) in t.list(&dpath) {
                if ak == FileKind::Dir && valid_domain(&ad) && is_md(&dpath.join(&ad)) {
                    acc.mailboxes.push(Mailbox {
                        address: Some(("_archive".into(), ad.clone())),
                        archive: true,
                        dir: dpath.join(&ad),
                        format: BoxFormat::Maildir,
                    });
                }
            }
            continue;
        }
        if !(valid_domain(&d) && d.contains('.')) {
            continue;
        }
        domains.insert(d.clone());
        for (l, lk) in t.list(&dpath) {
            let lpath = dpath.join(&l);
            if lk != FileKind::Dir || l.starts_with('.') || l.starts_with('@') || l == "boxtrapper" || !valid_local(&l)
            {
                continue;
            }
            if is_mdbox(&lpath) {
                acc.mdbox.push((format!("{l}@{d}"), lpath));
            } else if is_md(&lpath) {
                acc.mailboxes.push(Mailbox {
                    address: Some((l.clone(), d.clone())),
                    archive: false,
                    dir: lpath,
                    format: BoxFormat::Maildir,
                });
            } else if has_inbox(&lpath) {
                acc.problems.push(Problem::new(
                    &lpath,
                    "legacy mbox mailbox inside an archive is not read; unpack the archive and sync the directory",
                ));
            }
        }
    }
    for (d, k) in t.list(&home.join("etc")) {
        if k == FileKind::Dir && valid_domain(&d) && d.contains('.') {
            domains.insert(d);
        }
    }
    acc.domains = domains.into_iter().collect();
    acc.mailboxes.sort_by_key(Mailbox::label);
    acc
}

/// Components of a mailbox's directory below `mail/` (how message members name it).
fn box_key(b: &Mailbox) -> Vec<String> {
    match (&b.address, b.archive) {
        (None, _) => Vec::new(),
        (Some((_, d)), true) => vec!["archive".into(), d.clone()],
        (Some((l, d)), false) => vec![d.clone(), l.clone()],
    }
}

/// A mailbox being written: its target directory and, outside dry runs, its writer.
pub struct BoxTarget {
    pub mailbox: Mailbox,
    pub path: PathBuf,
    pub writer: Option<MaildirTarget>,
    /// The file times its file system stores ([`crate::fsx::time_bounds`]), probed once.
    pub bounds: Option<(i64, i64)>,
}

impl BoxTarget {
    /// `opened`: the mailbox directory as reached from the home (not opened by its path again).
    pub fn new(mailbox: Mailbox, path: PathBuf, opened: Option<Dir>, opts: &SyncOptions) -> Result<BoxTarget> {
        let wo = WriteOptions { durable: opts.durable, owner: opts.owner, layout: opts.layout };
        let writer = match opened.as_ref().map(Dir::try_clone).transpose()? {
            _ if opts.dry_run => None,
            Some(d) => Some(MaildirTarget::create_in(d, wo)?),
            None => Some(MaildirTarget::create(&path, wo)?),
        };
        let bounds = match writer.as_ref().map(|w| &w.root).or(opened.as_ref()) {
            Some(d) => d.time_bounds(),
            None => crate::fsx::time_bounds(&path),
        };
        Ok(BoxTarget { mailbox, path, writer, bounds })
    }
}

/// The totals of the second pass.
#[derive(Default)]
pub struct Outcome {
    pub counts: Counts,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Second pass: every message member of a selected mailbox goes, folder by folder, through
/// sync's Maildir run ([`FedFolder`]): planned against its target folder, written in synced
/// batches, its flags updated. Nothing is deleted: a folder the archive does not hold is not
/// visited, so deleting could only ever be partial. Runs on the process's one pool, as every
/// other mailbox does.
pub fn sync_messages(
    path: &Path,
    s: &Scanned,
    targets: &[BoxTarget],
    opts: &SyncOptions,
    rec: &dyn Recorder,
) -> Result<Outcome> {
    crate::sync::pool(opts.jobs)?.install(|| feed_messages(path, s, targets, opts, rec))
}

fn feed_messages(
    path: &Path,
    s: &Scanned,
    targets: &[BoxTarget],
    opts: &SyncOptions,
    rec: &dyn Recorder,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    // Folder names per mailbox and their target names (--include/--exclude/--map-folder).
    let mut names: BTreeMap<(usize, String), FolderName> = BTreeMap::new();
    for (i, bt) in targets.iter().enumerate() {
        let key = box_key(&bt.mailbox);
        let mut dirs: Vec<String> = s
            .messages
            .iter()
            .filter_map(|(m, _)| message_place(m))
            .filter(|(b, ..)| *b == key)
            .map(|(_, f, ..)| f)
            .collect();
        dirs.sort();
        dirs.dedup();
        let mut src_names = Vec::new();
        for d in &dirs {
            let n = if d.is_empty() { Ok(FolderName::inbox()) } else { layout::from_dot_dir(d) };
            match n {
                Ok(n) => src_names.push((d.clone(), n)),
                Err(why) => out
                    .errors
                    .push(Problem::new(&bt.mailbox.dir.join(d), format!("invalid folder name: {why}; skipped"))),
            }
        }
        let plain: Vec<FolderName> = src_names.iter().map(|(_, n)| n.clone()).collect();
        let pairs = opts.map.plan(&plain, &[]).map_err(Error::Usage)?;
        for (sn, tn) in pairs {
            if let Err(e) = layout::components(&tn, opts.layout) {
                out.errors.push(Problem::new(&bt.path, format!("folder {:?}: {e}; skipped", tn.as_str())));
                continue;
            }
            if let Some((d, _)) = src_names.iter().find(|(_, n)| *n == sn) {
                names.insert((i, d.clone()), tn);
            }
        }
    }
    let opts = &SyncOptions { deletion: Deletion::Off, ..opts.clone() };
    // Each folder's source as reports show it and as its record of copies names it.
    let sources: BTreeMap<(usize, String), (String, PathBuf)> = names
        .keys()
        .filter_map(|(i, fdir)| {
            let bt = targets.get(*i)?;
            let dir = if fdir.is_empty() { bt.mailbox.dir.clone() } else { bt.mailbox.dir.join(fdir) };
            Some(((*i, fdir.clone()), (dir.display().to_string(), dir)))
        })
        .collect();
    // One folder open at a time (a tar holds a directory's members together): memory, open
    // descriptors and keyword tables stay those of one folder, and two mailboxes merged into one
    // target folder never have two writers on it at once. A folder met again later is opened
    // again, on the index its earlier part left.
    let mut current: Option<Current<'_>> = None;
    let mut opened: HashSet<(usize, String)> = HashSet::new();
    let mut problems = Vec::new();
    let mut stash: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let walked = walk(
        path,
        &mut |mut m: Member<'_>| {
            // A signal stops the walk between messages; what was written is put in place below.
            if let Some(sig) = crate::interrupt::requested() {
                return Err(Error::Interrupted(sig));
            }
            let Place::Home(rel) = &m.place else { return Ok(()) };
            let rel = &rel.clone();
            let Some((bk, fdir, sub, fname)) = message_place(rel) else { return Ok(()) };
            if m.kind != FileKind::File {
                if m.kind == FileKind::Symlink {
                    out.errors
                        .push(Problem::refused(Path::new(&m.display), "symlink not followed (use --follow-symlinks)"));
                }
                return Ok(());
            }
            // A message another member links to is kept until the link is read, whether or
            // not its own mailbox is selected.
            if m.hardlink.is_none() && s.link_targets.contains(rel) {
                let mut d = Vec::with_capacity(m.size as usize);
                if let Err(e) = m.data.read_to_end(&mut d) {
                    out.errors.push(Problem::new(Path::new(&m.display), format!("cannot read from the archive: {e}")));
                    return Ok(());
                }
                stash.insert(rel.clone(), d);
            }
            let Some(i) = targets.iter().position(|t| box_key(&t.mailbox) == bk) else { return Ok(()) };
            let key = (i, fdir.clone());
            let Some(tn) = names.get(&key) else { return Ok(()) };
            let Some(bt) = targets.get(i) else { return Ok(()) };
            let Some((shown, src_dir)) = sources.get(&key) else { return Ok(()) };
            if current.as_ref().is_none_or(|c| c.key != key) {
                if let Some(c) = current.take() {
                    c.settle(targets, false, rec, &mut out);
                }
                let keywords =
                    s.tree.read(&src_dir.join("dovecot-keywords")).map(|b| KeywordMap::parse(&b)).unwrap_or_default();
                let source = (shown.as_str(), src_dir.as_path());
                let folder = FedFolder::open(&bt.path, bt.writer.as_ref(), bt.bounds, tn, source, opts, rec);
                let first = opened.insert(key.clone());
                current = Some(Current { key, folder, keywords, first });
            }
            let Some(Current { folder, keywords, .. }) = current.as_mut() else { return Ok(()) };
            let Some(data) = member_bytes(&mut m, rel, &stash).map_err(|p| out.errors.push(p)).ok() else {
                return Ok(());
            };
            let meta = member_meta(&fname, &sub, m.mtime, keywords);
            folder.add(PathBuf::from(&m.display), data, meta);
            Ok(())
        },
        &mut problems,
    );
    let interrupted = matches!(walked, Err(Error::Interrupted(_)));
    if let Some(c) = current.take() {
        c.settle(targets, interrupted, rec, &mut out);
    }
    out.errors.extend(problems);
    for (i, bt) in targets.iter().enumerate() {
        let Some(w) = &bt.writer else { continue };
        let folders: Vec<FolderName> = names.iter().filter(|((j, _), _)| *j == i).map(|(_, n)| n.clone()).collect();
        // A refused subscriptions file is replaced; this pass reports errors only.
        if let Err(e) = w.subscribe(&folders, &mut Vec::new()) {
            out.errors.push(e.problem());
        }
    }
    if !interrupted {
        walked?;
    }
    Ok(out)
}

/// The folder being fed during the walk.
struct Current<'t> {
    key: (usize, String),
    folder: FedFolder<'t>,
    keywords: KeywordMap,
    /// Its first part (a folder met again later is not counted twice).
    first: bool,
}

impl Current<'_> {
    fn settle(self, targets: &[BoxTarget], interrupted: bool, rec: &dyn Recorder, out: &mut Outcome) {
        let mut o = self.folder.finish(interrupted);
        if !self.first {
            o.counts.folders = 0;
        }
        out.counts.add(&o.counts);
        out.errors.extend(o.errors);
        out.warnings.extend(o.warnings);
        if let (Some(line), Some(bt)) = (o.plan_line, targets.get(self.key.0)) {
            rec.record(Event::Plan(format!("{line} (in {})", bt.path.display())));
        }
    }
}

/// A message member's bytes: its own, or, for a hard link, those of the member it links to
/// (kept in `stash` when it was read).
fn member_bytes(m: &mut Member<'_>, rel: &Path, stash: &BTreeMap<PathBuf, Vec<u8>>) -> Result<Vec<u8>, Problem> {
    let origin = Origin::File(PathBuf::from(&m.display));
    let link = m.hardlink.as_deref().or(stash.contains_key(rel).then_some(rel));
    let data = match link {
        Some(t) => {
            stash.get(t).cloned().ok_or_else(|| origin.problem("hard link to a message not seen before; skipped"))?
        }
        None => {
            let mut d = Vec::with_capacity(m.size as usize);
            m.data.read_to_end(&mut d).map_err(|e| origin.problem(format!("cannot read from the archive: {e}")))?;
            d
        }
    };
    if data.is_empty() {
        return Err(origin.problem_of(crate::error::Kind::Malformed, "empty file (0 bytes) is not a message; skipped"));
    }
    Ok(data)
}

/// A message member's state from its Maildir name (`sub`: `new` or `cur`), its mtime and its
/// folder's keyword table.
fn member_meta(fname: &str, sub: &str, mtime: i64, keywords: &KeywordMap) -> Meta {
    let n = name::parse(fname.as_bytes());
    let mut meta = Meta::new(mtime, DateSource::Mtime);
    meta.flags = n.flags;
    for l in (0u8..26).filter(|l| n.keyword_letters & (1 << l) != 0) {
        meta.add_letter(l, keywords.name(l));
    }
    meta.recent = sub == "new" && n.info.is_none();
    meta
}

/// `(mailbox, folder name, messages, bytes)` per folder, from the listing alone (inspect).
pub fn folder_totals(s: &Scanned, acc: &Account) -> Vec<(Mailbox, FolderName, u64, u64)> {
    let mut out: BTreeMap<(usize, String), (u64, u64)> = BTreeMap::new();
    for (rel, size) in &s.messages {
        let Some((bk, fdir, ..)) = message_place(rel) else { continue };
        let Some(i) = acc.mailboxes.iter().position(|b| box_key(b) == bk) else { continue };
        let e = out.entry((i, fdir)).or_default();
        e.0 += 1;
        e.1 += size;
    }
    out.into_iter()
        .filter_map(|((i, fdir), (n, b))| {
            let name = if fdir.is_empty() { FolderName::inbox() } else { layout::from_dot_dir(&fdir).ok()? };
            Some((acc.mailboxes.get(i)?.clone(), name, n, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive swapped for a FIFO after the caller saw a file is refused, not waited on.
    #[test]
    fn a_fifo_for_an_archive_is_not_waited_on() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("cpmove-u.tar.gz");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(open(&fifo).err().map(|e| e.to_string())));
        let e = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("open waited on the FIFO");
        assert!(e.is_some_and(|e| e.contains("not a regular file")));
    }

    #[test]
    fn member_places() {
        let c = |s: &str| components(Path::new(s)).unwrap();
        assert!(
            matches!(place(&c("cpmove-u/homedir/mail/cur/x"), false), Place::Home(p) if p == Path::new("mail/cur/x"))
        );
        assert!(matches!(place(&c("cpmove-u/va/example.com"), false), Place::Sys("valiases", d) if d == "example.com"));
        assert!(matches!(place(&c("cpmove-u/homedir.tar"), false), Place::NestedHome));
        assert!(matches!(place(&c("cpmove-u/mysql/x.sql"), false), Place::Other));
        assert!(matches!(place(&c("mail/.Sent/cur/x"), true), Place::Home(p) if p == Path::new("mail/.Sent/cur/x")));
        assert!(components(Path::new("../etc/passwd")).is_none());
        assert!(components(Path::new("/etc/passwd")).is_none());
    }

    #[test]
    fn message_places() {
        let m = |s: &str| message_place(Path::new(s));
        assert_eq!(m("mail/cur/1:2,S"), Some((vec![], String::new(), "cur".into(), "1:2,S".into())));
        assert_eq!(
            m("mail/d.example/a/.Sent/new/2"),
            Some((vec!["d.example".into(), "a".into()], ".Sent".into(), "new".into(), "2".into()))
        );
        assert_eq!(m("mail/d.example/a/maildirsize"), None);
        assert_eq!(m("etc/d.example/passwd"), None);
    }
}
