//! Reading a Maildir tree: its folders (root = INBOX, Maildir++ `.Folder` directories and
//! nested fs-layout directories alike) and each folder's messages from `new/` and `cur/`
//! (`tmp/` holds deliveries in progress and is never read).
//!
//! Only regular files are messages. A symlink is reported and not followed (unless asked), a
//! FIFO or device is reported and never opened, a directory or an empty file where a message
//! should be is reported; the rest of the folder is read all the same.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::keywords::KeywordMap;
use super::layout;
use super::name;
use crate::error::{Error, Kind, Problem};
use crate::folder::FolderName;
use crate::fsx::{self, Dir, Entry, FileKind};
use crate::message::{DateSource, Meta};
use crate::wire;

#[derive(Debug, Clone)]
pub struct MaildirFolder {
    pub name: FolderName,
    pub dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sub {
    New,
    Cur,
}

impl Sub {
    pub fn as_str(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// A message file found in a Maildir folder.
#[derive(Debug, Clone)]
pub struct MaildirEntry {
    pub sub: Sub,
    /// File name in `new/` or `cur/`.
    pub name: Vec<u8>,
    pub size: u64,
    pub mtime_ns: i64,
    pub meta: Meta,
    /// The file's inode (0: not known): a renamed file keeps it.
    pub ino: u64,
    /// The UID the folder's `dovecot-uidlist` gives it.
    pub uid: Option<u32>,
}

impl MaildirEntry {
    /// The bytes [`MaildirEntry::decode`] reads back (a listing kept on disk while sorted).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.sub as u8);
        wire::put_u64(out, self.size);
        wire::put_u64(out, self.mtime_ns as u64);
        wire::put_u64(out, self.ino);
        wire::put_u64(out, self.uid.map_or(0, u64::from));
        wire::put_bytes(out, &self.name);
        self.meta.encode(out);
    }

    /// An entry [`MaildirEntry::encode`] wrote, and the bytes after it.
    pub fn decode(b: &[u8]) -> Option<(MaildirEntry, &[u8])> {
        let (&sub, b) = b.split_first()?;
        let sub = match sub {
            s if s == Sub::New as u8 => Sub::New,
            s if s == Sub::Cur as u8 => Sub::Cur,
            _ => return None,
        };
        let (size, b) = wire::take_u64(b)?;
        let (mtime_ns, b) = wire::take_u64(b)?;
        let (ino, b) = wire::take_u64(b)?;
        let (uid, b) = wire::take_u64(b)?;
        let uid = u32::try_from(uid).ok().filter(|&u| u > 0);
        let (name, b) = wire::take_bytes(b)?;
        let (meta, b) = Meta::decode(b)?;
        Some((MaildirEntry { sub, name: name.to_vec(), size, mtime_ns: mtime_ns as i64, meta, ino, uid }, b))
    }

    /// About the heap bytes it holds.
    pub fn weight(&self) -> usize {
        self.name.len() + self.meta.weight()
    }

    pub fn path(&self, folder_dir: &Path) -> PathBuf {
        folder_dir.join(self.sub.as_str()).join(std::ffi::OsStr::from_bytes(&self.name))
    }

    pub fn base(&self) -> &[u8] {
        name::parse(&self.name).base
    }
}

pub fn is_maildir(dir: &Path) -> bool {
    let d = |s: &str| std::fs::symlink_metadata(dir.join(s)).is_ok_and(|m| m.is_dir());
    d("cur") || d("new")
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ScanOptions {
    pub follow_symlinks: bool,
}

/// Every folder of the Maildir tree at `root`, sorted by name.
pub fn folders(root: &Path, opts: ScanOptions, problems: &mut Vec<Problem>) -> Vec<MaildirFolder> {
    let mut out = Vec::new();
    if is_maildir(root) {
        out.push(MaildirFolder { name: FolderName::inbox(), dir: root.to_path_buf() });
    }
    let entries = match fsx::list_dir(root) {
        Ok(e) => e,
        Err(e) => {
            problems.push(e.problem());
            return out;
        }
    };
    for (raw, kind) in entries {
        let path = root.join(std::ffi::OsStr::from_bytes(&raw));
        if matches!(raw.as_slice(), b"cur" | b"new" | b"tmp") {
            continue;
        }
        let is_dir = match kind {
            Some(FileKind::Dir) => true,
            Some(FileKind::Symlink) => {
                if symlink_is_cpanel_alias(&raw) {
                    continue;
                }
                if opts.follow_symlinks {
                    path.is_dir()
                } else {
                    if path.is_dir() || raw.starts_with(b".") {
                        problems.push(Problem::refused(&path, "symlink not followed (use --follow-symlinks)"));
                    }
                    continue;
                }
            }
            _ => false,
        };
        if !is_dir {
            continue;
        }
        if raw.starts_with(b".") {
            let Ok(s) = std::str::from_utf8(&raw) else {
                if is_maildir(&path) {
                    problems.push(Problem::new(&path, "folder name is not valid UTF-8 or modified UTF-7; skipped"));
                }
                continue;
            };
            if !is_maildir(&path) {
                continue;
            }
            match layout::from_dot_dir(s) {
                Ok(name) => out.push(MaildirFolder { name, dir: path }),
                Err(why) => problems.push(Problem::new(&path, format!("invalid folder name: {why}; skipped"))),
            }
        } else {
            fs_folders(&path, &mut vec![raw.clone()], opts, &mut out, problems, 0);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    dedupe(&mut out, problems);
    out
}

/// Whether the opened directory is a Maildir: its `cur/` or `new/` a directory (not a link).
fn is_maildir_in(d: &Dir) -> bool {
    let sub = |s: &str| d.stat_at(std::ffi::OsStr::new(s)).ok().flatten().is_some_and(|e| e.kind == FileKind::Dir);
    sub("cur") || sub("new")
}

/// The subdirectory `raw` of `d` when it is one (not a link), opened from `d`.
fn sub_dir(d: &Dir, raw: &[u8], kind: Option<FileKind>) -> Option<Dir> {
    let name = std::ffi::OsStr::from_bytes(raw);
    let kind = kind.or_else(|| d.stat_at(name).ok().flatten().map(|e| e.kind));
    if kind != Some(FileKind::Dir) {
        return None;
    }
    d.open(name).ok().flatten()
}

/// The folder names of a Maildir target, for `--automap`: listed through its root opened at
/// the start and the directories opened from it, never through a link (at the root either).
/// `true`: INBOX or a Maildir++ (dot) folder; `false`: a folder of the `fs` layout. Sorted.
pub fn folder_names_in(root: &Dir) -> Vec<(FolderName, bool)> {
    let mut out = Vec::new();
    if is_maildir_in(root) {
        out.push((FolderName::inbox(), true));
    }
    for (raw, kind) in root.list().unwrap_or_default() {
        if matches!(raw.as_slice(), b"cur" | b"new" | b"tmp") {
            continue;
        }
        let Some(sub) = sub_dir(root, &raw, kind) else { continue };
        if raw.starts_with(b".") {
            if let Ok(s) = std::str::from_utf8(&raw)
                && is_maildir_in(&sub)
                && let Ok(name) = layout::from_dot_dir(s)
            {
                out.push((name, true));
            }
        } else {
            fs_names_in(&sub, &mut vec![raw], &mut out, 0);
        }
    }
    out.sort();
    out
}

fn fs_names_in(dir: &Dir, levels: &mut Vec<Vec<u8>>, out: &mut Vec<(FolderName, bool)>, depth: usize) {
    if depth > 64 {
        return;
    }
    if is_maildir_in(dir) {
        let strs: Option<Vec<&str>> = levels.iter().map(|l| std::str::from_utf8(l).ok()).collect();
        if let Some(Ok(name)) = strs.map(|s| layout::from_fs_levels(&s)) {
            out.push((name, false));
        }
    }
    for (raw, kind) in dir.list().unwrap_or_default() {
        if raw.starts_with(b".") || matches!(raw.as_slice(), b"cur" | b"new" | b"tmp") {
            continue;
        }
        let Some(sub) = sub_dir(dir, &raw, kind) else { continue };
        levels.push(raw);
        fs_names_in(&sub, levels, out, depth + 1);
        levels.pop();
    }
}

/// cPanel's `mail/.user@domain` compatibility links point inside the account: skipped silently.
fn symlink_is_cpanel_alias(raw: &[u8]) -> bool {
    raw.starts_with(b".") && memchr::memchr(b'@', raw).is_some()
}

fn fs_folders(
    dir: &Path,
    levels: &mut Vec<Vec<u8>>,
    opts: ScanOptions,
    out: &mut Vec<MaildirFolder>,
    problems: &mut Vec<Problem>,
    depth: usize,
) {
    if depth > 64 {
        problems.push(Problem::new(dir, "folder tree deeper than 64 levels; not read further"));
        return;
    }
    if is_maildir(dir) {
        let strs: Option<Vec<&str>> = levels.iter().map(|l| std::str::from_utf8(l).ok()).collect();
        match strs.ok_or_else(|| "folder name is not valid UTF-8".to_string()).and_then(|s| layout::from_fs_levels(&s))
        {
            Ok(name) => out.push(MaildirFolder { name, dir: dir.to_path_buf() }),
            Err(why) => problems.push(Problem::new(dir, format!("invalid folder name: {why}; skipped"))),
        }
    }
    let Ok(entries) = fsx::list_dir(dir) else { return };
    for (raw, kind) in entries {
        if raw.starts_with(b".") || matches!(raw.as_slice(), b"cur" | b"new" | b"tmp") {
            continue;
        }
        let path = dir.join(std::ffi::OsStr::from_bytes(&raw));
        match kind {
            Some(FileKind::Dir) => {}
            Some(FileKind::Symlink) if opts.follow_symlinks && path.is_dir() => {}
            Some(FileKind::Symlink) => {
                if path.is_dir() {
                    problems.push(Problem::refused(&path, "symlink not followed (use --follow-symlinks)"));
                }
                continue;
            }
            _ => continue,
        }
        levels.push(raw);
        fs_folders(&path, levels, opts, out, problems, depth + 1);
        levels.pop();
    }
}

/// Two directories that decode to the same folder name (`.Inbox` and the root, a raw UTF-8
/// and a modified UTF-7 spelling): the first is read, the others are reported.
fn dedupe(out: &mut Vec<MaildirFolder>, problems: &mut Vec<Problem>) {
    let mut i = 1;
    while i < out.len() {
        if out[i].name == out[i - 1].name {
            let d = out.remove(i);
            problems.push(Problem::new(
                &d.dir,
                format!("another directory is already folder {:?}; skipped", d.name.as_str()),
            ));
        } else {
            i += 1;
        }
    }
}

/// Dovecot's keyword list is at most 26 short lines; more than this is not one.
const MAX_KEYWORDS_BYTES: u64 = 64 << 10;
const KEYWORDS_FILE: &str = "dovecot-keywords";

/// The source folder's `dovecot-keywords` (empty when there is none or it cannot be used).
pub fn keyword_map(dir: &Path) -> KeywordMap {
    keywords_read(&dir.join(KEYWORDS_FILE), fsx::read_own_file(&dir.join(KEYWORDS_FILE), MAX_KEYWORDS_BYTES))
        .unwrap_or_default()
}

/// The `dovecot-keywords` of the opened target folder `dir`, read through its descriptor only
/// from a regular file (a symlink, FIFO, device or oversize file planted there is refused,
/// never read: see [`fsx::Dir::open_own_file`]).
pub fn keywords_in(dir: &Dir) -> Result<KeywordMap, Problem> {
    let name = std::ffi::OsStr::new(KEYWORDS_FILE);
    keywords_read(&dir.path.join(name), dir.read_own_file(name, MAX_KEYWORDS_BYTES))
}

fn keywords_read(path: &Path, read: crate::error::Result<Option<Vec<u8>>>) -> Result<KeywordMap, Problem> {
    match read {
        Ok(Some(b)) => Ok(KeywordMap::parse(&b)),
        Ok(None) => Ok(KeywordMap::default()),
        Err(e) if e.is_not_found() => Ok(KeywordMap::default()),
        Err(e) => Err(Problem::new(path, format!("{}; ignored (keywords get letters anew)", e.problem().reason))),
    }
}

/// A target folder's `new/` and `cur/`, opened through the folder's descriptor: listed, looked
/// at (`fstatat`) and read (`openat` with `O_NOFOLLOW`) relative to them, never by path, so a
/// directory or file swapped for a link after the folder was opened is not read through.
pub struct MessageDirs {
    new: Option<Dir>,
    cur: Option<Dir>,
}

impl MessageDirs {
    /// `new/` and `cur/` of the opened folder `folder` (a missing one holds nothing). A link in
    /// their place refuses the folder; any other failure is a problem, and the folder is read
    /// without that directory.
    pub fn open(folder: &Dir, problems: &mut Vec<Problem>) -> crate::error::Result<MessageDirs> {
        let mut dirs = [None, None];
        for (i, sub) in [Sub::New, Sub::Cur].into_iter().enumerate() {
            let name = std::ffi::OsStr::new(sub.as_str());
            if folder.stat_at(name)?.is_some_and(|e| e.kind == FileKind::Symlink) {
                return Err(Error::bad(
                    folder.path.join(name),
                    "is a symlink in the target; nothing is written through it",
                ));
            }
            match folder.open(name) {
                Ok(d) => dirs[i] = d,
                Err(e) => problems.push(e.problem()),
            }
        }
        let [new, cur] = dirs;
        Ok(MessageDirs { new, cur })
    }

    pub fn get(&self, sub: Sub) -> Option<&Dir> {
        match sub {
            Sub::New => self.new.as_ref(),
            Sub::Cur => self.cur.as_ref(),
        }
    }

    /// The messages as the directories yield them, new/ then cur/: memory does not grow with
    /// the folder.
    pub fn stream<'a>(&'a self, kw: &'a KeywordMap) -> impl Iterator<Item = Result<MaildirEntry, Problem>> + 'a {
        [Sub::New, Sub::Cur].into_iter().filter_map(|sub| self.get(sub).map(|d| (sub, d))).flat_map(move |(sub, d)| {
            let (listed, failed) = match d.entries() {
                Ok(l) => (Some(l), None),
                Err(e) => (None, Some(Err(e.problem()))),
            };
            failed.into_iter().chain(listed.into_iter().flatten().filter_map(move |r| match r {
                Ok((raw, _)) => classify_at(d, sub, raw, kw),
                Err(e) => Some(Err(Problem::io(&d.path, &e))),
            }))
        })
    }

    /// Opens the message file of `e` for reading, relative to its directory: a link is refused
    /// (not followed), a FIFO or anything else that is not a regular file is not read.
    pub fn open_message(&self, e: &MaildirEntry) -> crate::error::Result<std::fs::File> {
        let name = std::ffi::OsStr::from_bytes(&e.name);
        let d = self.get(e.sub).ok_or_else(|| Error::bad(e.sub.as_str(), "internal: directory not opened"))?;
        d.open_file(name, false)?.ok_or_else(|| {
            let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
            Error::Io { path: d.path.join(name), source: gone }
        })
    }
}

/// [`classify`] for an entry of the opened directory `d`, looked at through its descriptor.
fn classify_at(d: &Dir, sub: Sub, raw: Vec<u8>, kw: &KeywordMap) -> Option<Result<MaildirEntry, Problem>> {
    let st = d.entry_at(std::ffi::OsStr::from_bytes(&raw));
    classify(&d.path, sub, raw, kw, ScanOptions::default(), Some(st))
}

/// The reason of an entry that vanished between the directory read and its stat.
pub const VANISHED: &str = "renamed or deleted while the folder was listed";

/// One directory entry of new/ or cur/: a message, a problem, or nothing (dot-files).
/// `lstat` is the entry's own metadata when the caller has it (from the directory's descriptor,
/// which spares a walk of the whole path).
fn classify(
    sd: &Path,
    sub: Sub,
    raw: Vec<u8>,
    kw: &KeywordMap,
    opts: ScanOptions,
    lstat: Option<std::io::Result<Entry>>,
) -> Option<Result<MaildirEntry, Problem>> {
    if raw.starts_with(b".") {
        return None;
    }
    let path = || sd.join(std::ffi::OsStr::from_bytes(&raw));
    let follow = || std::fs::metadata(path()).map(|m| Entry::of_metadata(&m));
    let md = match lstat {
        Some(Ok(m)) if opts.follow_symlinks && m.kind == FileKind::Symlink => follow(),
        Some(md) => md,
        None if opts.follow_symlinks => follow(),
        None => std::fs::symlink_metadata(path()).map(|m| Entry::of_metadata(&m)),
    };
    let md = match md {
        Ok(m) => m,
        // Renamed or deleted since the directory was read: not an error, but the listing may
        // have missed its new name, so the folder deletes nothing in this run.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(Err(Problem::of(Kind::Vanished, &path(), VANISHED)));
        }
        Err(e) => return Some(Err(Problem::io(&path(), &e))),
    };
    let (kind, why) = match md.kind {
        FileKind::Symlink => (Kind::Refused, "symlink not followed (use --follow-symlinks)"),
        FileKind::Dir => (Kind::Malformed, "a directory where a message file should be"),
        FileKind::Other => (Kind::Refused, "not a regular file (FIFO, socket or device); not read"),
        FileKind::File if md.size == 0 => (Kind::Malformed, "empty file (0 bytes) is not a message; skipped"),
        FileKind::File => {
            let mut e = entry(sub, raw, md.size, md.mtime, md.mtime_nsec, kw);
            e.ino = md.ino;
            return Some(Ok(e));
        }
    };
    Some(Err(Problem::of(kind, &path(), why)))
}

/// The messages of one folder as the directories yield them, without holding the whole
/// listing: memory stays bounded however many messages a folder has.
pub struct MessageStream {
    dir: PathBuf,
    kw: KeywordMap,
    opts: ScanOptions,
    next_sub: usize,
    current: Option<(Sub, PathBuf, std::fs::ReadDir)>,
}

impl MessageStream {
    pub fn new(dir: &Path, kw: KeywordMap, opts: ScanOptions) -> MessageStream {
        MessageStream { dir: dir.to_path_buf(), kw, opts, next_sub: 0, current: None }
    }
}

impl Iterator for MessageStream {
    type Item = Result<MaildirEntry, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((sub, sd, rd)) = &mut self.current {
                match rd.next() {
                    Some(Ok(e)) => {
                        let raw = e.file_name().as_bytes().to_vec();
                        let md = e.metadata().map(|m| Entry::of_metadata(&m));
                        if let Some(r) = classify(sd, *sub, raw, &self.kw, self.opts, Some(md)) {
                            return Some(r);
                        }
                        continue;
                    }
                    Some(Err(e)) => return Some(Err(Problem::io(sd, &e))),
                    None => self.current = None,
                }
            }
            let sub = *[Sub::New, Sub::Cur].get(self.next_sub)?;
            self.next_sub += 1;
            let sd = self.dir.join(sub.as_str());
            match std::fs::read_dir(&sd) {
                Ok(rd) => self.current = Some((sub, sd, rd)),
                Err(e) if std::fs::symlink_metadata(&sd).is_ok() => return Some(Err(Problem::io(&sd, &e))),
                Err(_) => {}
            }
        }
    }
}

pub(crate) fn entry(sub: Sub, raw: Vec<u8>, size: u64, mtime: i64, nsec: i64, kw: &KeywordMap) -> MaildirEntry {
    let n = name::parse(&raw);
    let mut meta = Meta::new(mtime, DateSource::Mtime);
    meta.flags = n.flags;
    for i in (0u8..26).filter(|i| n.keyword_letters & (1 << i) != 0) {
        meta.add_letter(i, kw.name(i));
    }
    meta.recent = sub == Sub::New && n.info.is_none();
    meta.info_tail = n.tail;
    MaildirEntry {
        sub,
        size,
        mtime_ns: mtime.saturating_mul(1_000_000_000).saturating_add(nsec),
        meta,
        name: raw,
        ino: 0,
        uid: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_resolved_and_letters_without_a_name_named_as_dovecot_does() {
        let kw = KeywordMap::parse(b"0 $Junk\n");
        let e = entry(Sub::Cur, b"1.M1P1.h:2,Sab".to_vec(), 10, 5, 0, &kw);
        assert_eq!(e.meta.keywords.iter().collect::<Vec<_>>(), vec!["$Junk", "unknown-1"]);
        assert_eq!(e.meta.stray_string(), "b");
        assert_eq!(e.meta.mbox_view().keywords.iter().collect::<Vec<_>>(), vec!["$Junk"], "no place in an mbox");
        assert!(!e.meta.recent);
        let e = entry(Sub::New, b"1.M1P1.h".to_vec(), 10, 5, 0, &kw);
        assert!(e.meta.recent);
        let e = entry(Sub::New, b"1.M1P1.h:2,F".to_vec(), 10, 5, 0, &kw);
        assert!(!e.meta.goes_to_new(), "flags in new/ are real");
    }

    #[test]
    fn an_entry_gone_before_its_stat_is_vanished_not_an_error() {
        let gone = Some(Err(std::io::Error::from(std::io::ErrorKind::NotFound)));
        let r = classify(
            Path::new("/x/cur"),
            Sub::Cur,
            b"1.M1P1.h:2,S".to_vec(),
            &KeywordMap::default(),
            ScanOptions::default(),
            gone,
        );
        assert!(matches!(r, Some(Err(p)) if p.kind == Kind::Vanished && p.reason == VANISHED));
    }
}
