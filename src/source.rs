//! Uniform access to the messages of one source folder, whatever its format: an opened folder
//! yields references in source order, in chunks of bounded size, and each reference loads into
//! the bytes to write (borrowed from the mbox mapping, or read from the Maildir file) with its
//! metadata. sync, verify and inspect all read through here, so they agree on what a message is.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Problem, Result};
use crate::fsx;
use crate::message::Meta;
use crate::store::Location;
use crate::store::maildir::keywords::KeywordMap;
use crate::store::maildir::listing::Listing;
use crate::store::maildir::read::{self as mdread, MaildirEntry, ScanOptions};
use crate::store::mbox::read::{MboxFile, ReadOptions};
use crate::store::mbox::split::{Entry, Splitter};

/// Takes the next chunk: at most [`CHUNK_MESSAGES`] references and about `max_bytes` of
/// message bytes (always at least one).
fn bounded_chunk(it: &mut std::iter::Peekable<impl Iterator<Item = Ref>>, max_bytes: u64) -> Option<Vec<Ref>> {
    let mut v = Vec::new();
    let mut bytes = 0u64;
    while v.len() < CHUNK_MESSAGES && (bytes < max_bytes || v.is_empty()) {
        let Some(r) = it.next() else { break };
        bytes += match &r {
            Ref::Maildir(e) => e.size,
            Ref::Mbox(e) => (e.msg.end - e.msg.start) as u64,
            Ref::Problem(_) => 0,
        };
        v.push(r);
    }
    (!v.is_empty()).then_some(v)
}

/// Messages per chunk, and bytes per chunk for files read into memory.
pub const CHUNK_MESSAGES: usize = 1024;
pub const CHUNK_BYTES: u64 = 16 << 20;

pub enum Opened {
    Mbox(Arc<MboxFile>),
    Maildir {
        dir: PathBuf,
        keywords: Box<KeywordMap>,
        scan: ScanOptions,
        /// The whole listing, sorted by name (`None`: streamed in directory order).
        listed: Option<Box<Listing>>,
        /// Where messages that moved during the run went (a live server renames new/ to cur/
        /// and changes flags while the folder is read).
        moved: std::sync::Mutex<Moved>,
        /// The folder's real path when it was opened: every message file read must be in it.
        real: Option<PathBuf>,
    },
}

/// The folder's current names by base name, listed again when a message was not where the
/// listing saw it.
#[derive(Debug, Default)]
pub struct Moved {
    names: HashMap<Vec<u8>, (mdread::Sub, Vec<u8>)>,
    relists: u32,
    /// When the last fresh listing ended, and what it took.
    last: Option<(std::time::Instant, std::time::Duration)>,
    /// A message was taken for gone without a fresh listing to confirm it.
    pub unsure: bool,
}

/// Fresh listings of one folder any time; past these, one more only once the run has gone on
/// for `RELIST_PACE` times what the last one took (listings then cost at most a tenth of the
/// run, however many messages a live server moves). A message not found meanwhile is taken for
/// gone on the last listing's word, and the folder deletes nothing in this run.
const MAX_RELISTS: u32 = 16;
const RELIST_PACE: u32 = 10;

impl Moved {
    /// Whether a fresh listing may be made now (see [`MAX_RELISTS`]).
    fn may_relist(&self) -> bool {
        self.relists < MAX_RELISTS || self.last.is_none_or(|(at, took)| at.elapsed() >= took * RELIST_PACE)
    }

    fn relist(&mut self, dir: &Path) {
        let start = std::time::Instant::now();
        self.relists += 1;
        self.names.clear();
        for sub in [mdread::Sub::New, mdread::Sub::Cur] {
            let Ok(rd) = std::fs::read_dir(dir.join(sub.as_str())) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().as_bytes().to_vec();
                let base = crate::store::maildir::name::parse(&name).base.to_vec();
                self.names.insert(base, (sub, name));
            }
        }
        self.last = Some((std::time::Instant::now(), start.elapsed()));
    }

    /// The current name of the message with this base name, if it is still in the folder.
    fn find(&mut self, dir: &Path, base: &[u8], old: &[u8], stale: bool) -> Option<(mdread::Sub, Vec<u8>)> {
        let fresh = |m: &Moved| m.names.get(base).filter(|(_, n)| n != old).cloned();
        if !stale && let Some(hit) = fresh(self) {
            return Some(hit);
        }
        if !self.may_relist() {
            self.unsure = true;
            return None;
        }
        self.relist(dir);
        fresh(self)
    }
}

#[derive(Debug, Clone)]
pub enum Ref {
    Mbox(Entry),
    Maildir(Box<MaildirEntry>),
    /// A directory entry that is not a readable message: loading it yields the problem.
    Problem(Box<Problem>),
}

/// Where a message came from, for reports and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Mbox { path: PathBuf, offset: u64, len: u64 },
    File(PathBuf),
}

impl Origin {
    pub fn problem(&self, reason: impl Into<String>) -> Problem {
        self.problem_of(crate::error::Kind::Other, reason)
    }

    pub fn problem_of(&self, kind: crate::error::Kind, reason: impl Into<String>) -> Problem {
        match self {
            Origin::Mbox { path, offset, .. } => Problem { kind, ..Problem::at_offset(path, *offset, reason) },
            Origin::File(p) => Problem::of(kind, p, reason),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Origin::Mbox { path, .. } | Origin::File(path) => path,
        }
    }
}

pub enum Body<'a> {
    Slices(Vec<&'a [u8]>),
    Owned(Vec<u8>),
    /// A big Maildir file, mapped ([`fsx::BIG_FILE`]).
    Mapped(fsx::MappedFile),
    /// A Maildir file of this size whose hash was known without reading it; read with
    /// [`Opened::read_body`] before its bytes are needed.
    Unread(u64),
}

impl Body<'_> {
    pub fn pieces(&self) -> Vec<&[u8]> {
        match self {
            Body::Slices(v) => v.clone(),
            Body::Owned(b) => vec![b.as_slice()],
            Body::Mapped(m) => vec![m.bytes()],
            Body::Unread(_) => Vec::new(),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Body::Slices(v) => v.iter().map(|p| p.len() as u64).sum(),
            Body::Owned(b) => b.len() as u64,
            Body::Mapped(m) => m.bytes().len() as u64,
            Body::Unread(n) => *n,
        }
    }

    pub fn is_unread(&self) -> bool {
        matches!(self, Body::Unread(_))
    }

    /// Whether the bytes are still those of the source: a mapped file must not have changed
    /// since it was mapped (read bytes are a snapshot already).
    pub fn intact(&self) -> bool {
        match self {
            Body::Mapped(m) => m.intact(),
            _ => true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Maildir source file's cache key: base name, size, mtime.
pub struct SourceKey {
    pub base: Vec<u8>,
    pub size: u64,
    pub mtime_ns: i64,
    /// The file's inode when listed (0: not known).
    pub ino: u64,
}

pub struct Loaded<'a> {
    pub body: Body<'a>,
    pub meta: Meta,
    pub origin: Origin,
    /// Set for Maildir sources.
    pub key: Option<SourceKey>,
    pub pseudo: bool,
    pub truncated: Option<&'static str>,
    pub expunged: bool,
    pub partial: bool,
    /// A Maildir message deleted from the source while the run read it: not copied, not an
    /// error.
    pub gone: bool,
    /// Its IMAP UID in the source, where the source keeps one in the message (Dovecot's mbox
    /// `X-UID`).
    pub uid: Option<u32>,
}

impl Loaded<'_> {
    /// A message whose bytes were read whole before it was fed (a cPanel archive's).
    pub fn from_memory(origin: PathBuf, data: Vec<u8>, meta: Meta) -> Loaded<'static> {
        Loaded {
            body: Body::Owned(data),
            meta,
            origin: Origin::File(origin),
            key: None,
            pseudo: false,
            truncated: None,
            expunged: false,
            partial: false,
            gone: false,
            uid: None,
        }
    }
}

impl Opened {
    /// Opens a source folder, a Maildir fully listed and sorted by name (the order an mbox
    /// target is written in). An mbox that is not an mbox is an error (nothing is read).
    pub fn open(loc: &Location, scan: ScanOptions, problems: &mut Vec<Problem>) -> Result<Opened> {
        let mut o = Opened::open_unlisted(loc, scan)?;
        if let Opened::Maildir { dir, keywords, listed, moved, .. } = &mut o {
            let mut found = Vec::new();
            *listed = Some(Box::new(Listing::build(dir, keywords, scan, &mut found)?));
            for p in found {
                if p.kind == crate::error::Kind::Vanished {
                    moved.get_mut().unwrap_or_else(|e| e.into_inner()).unsure = true;
                } else {
                    problems.push(p);
                }
            }
        }
        Ok(o)
    }

    /// Opens a source folder whose Maildir messages are read in directory order, chunk by
    /// chunk, so memory does not grow with the folder; listing problems come out of `load`.
    fn open_unlisted(loc: &Location, scan: ScanOptions) -> Result<Opened> {
        match loc {
            Location::MboxFile(p) => {
                let f = MboxFile::open_locked(p)?;
                f.check()?;
                Ok(Opened::Mbox(Arc::new(f)))
            }
            Location::Maildir(dir) => Ok(Opened::Maildir {
                dir: dir.clone(),
                keywords: Box::new(mdread::keyword_map(dir)),
                scan,
                listed: None,
                moved: Default::default(),
                real: if scan.follow_symlinks { None } else { dir.canonicalize().ok() },
            }),
        }
    }

    /// References in source order, in chunks of bounded count and bytes.
    pub fn chunks<'s>(&'s self, ropts: &ReadOptions) -> Box<dyn Iterator<Item = Vec<Ref>> + Send + 's> {
        self.chunks_of(ropts, CHUNK_BYTES)
    }

    /// [`Opened::chunks`] with another byte budget per chunk.
    pub fn chunks_of<'s>(&'s self, ropts: &ReadOptions, max: u64) -> Box<dyn Iterator<Item = Vec<Ref>> + Send + 's> {
        match self {
            Opened::Mbox(f) => {
                f.will_need(0, 2 * max as usize);
                let splitter: Splitter<'s> = f.entries(ropts);
                let mut it = splitter.map(Ref::Mbox).peekable();
                let mut stopped = false;
                Box::new(std::iter::from_fn(move || {
                    if stopped {
                        return None;
                    }
                    // A file that shrank or changed since it was opened is split no further:
                    // its folder gets the problem instead of messages made of other bytes.
                    let v = bounded_chunk(&mut it, max);
                    if let Err(e) = f.intact() {
                        stopped = true;
                        return Some(vec![Ref::Problem(Box::new(e.problem()))]);
                    }
                    let v = v?;
                    // The splitter reads on from here when the next chunk is asked for: have
                    // the disk fetch it while this one is processed.
                    if let Some(Ref::Mbox(e)) = v.last() {
                        f.will_need(e.msg.end, 2 * max as usize);
                    }
                    Some(v)
                }))
            }
            // The listing lets each file through once already (a file renamed while it was
            // listed is there under its first name only).
            Opened::Maildir { listed: Some(listing), .. } => {
                let mut it = listing
                    .iter()
                    .map(|r| match r {
                        Ok(e) => Ref::Maildir(Box::new(e)),
                        Err(p) => Ref::Problem(Box::new(p)),
                    })
                    .peekable();
                Box::new(std::iter::from_fn(move || bounded_chunk(&mut it, max)))
            }
            Opened::Maildir { dir, listed: None, .. } => {
                let p = Problem::new(dir, "internal: the folder was not listed; nothing read");
                Box::new(std::iter::once(vec![Ref::Problem(Box::new(p))]))
            }
        }
    }

    pub fn origin(&self, r: &Ref) -> Origin {
        match (self, r) {
            (Opened::Mbox(f), Ref::Mbox(e)) => Origin::Mbox {
                path: f.path.clone(),
                offset: e.from_line.start as u64,
                len: (e.msg.end - e.from_line.start) as u64,
            },
            (Opened::Maildir { dir, .. }, Ref::Maildir(e)) => Origin::File(e.path(dir)),
            (_, Ref::Problem(p)) => Origin::File(PathBuf::from(&p.path)),
            (Opened::Mbox(f), _) => Origin::File(f.path.clone()),
            (Opened::Maildir { dir, .. }, _) => Origin::File(dir.clone()),
        }
    }

    /// Metadata known without reading the message (Maildir), for planning.
    pub fn entry<'r>(&self, r: &'r Ref) -> Option<&'r MaildirEntry> {
        match r {
            Ref::Maildir(e) => Some(e),
            _ => None,
        }
    }

    pub fn load<'a>(&'a self, r: &Ref, ropts: &ReadOptions) -> Result<Loaded<'a>, Problem> {
        self.load_from(r, ropts, None)
    }

    /// Like [`Opened::load`], reading a Maildir message from `file` when it was opened ahead.
    pub fn load_from<'a>(
        &'a self,
        r: &Ref,
        ropts: &ReadOptions,
        file: Option<fsx::MessageFile>,
    ) -> Result<Loaded<'a>, Problem> {
        let origin = self.origin(r);
        match (self, r) {
            (Opened::Mbox(f), Ref::Mbox(e)) => {
                let m = f.message(e, ropts);
                Ok(Loaded {
                    body: Body::Slices(m.pieces),
                    meta: m.meta,
                    origin,
                    key: None,
                    pseudo: m.pseudo,
                    truncated: m.truncated,
                    expunged: m.mozilla_expunged,
                    partial: m.mozilla_partial,
                    gone: false,
                    uid: m.uid,
                })
            }
            (_, Ref::Problem(p)) => Err((**p).clone()),
            (Opened::Maildir { .. }, Ref::Maildir(e)) => {
                let mut l = self.unread(e);
                self.read_body_from(&mut l, file)?;
                Ok(l)
            }
            _ => Err(origin.problem("internal: reference of another folder")),
        }
    }

    /// Opens a Maildir message file ahead of its read and has the kernel start reading it
    /// (see [`fsx::source_is_cold`]); [`Opened::load_from`] reads it.
    pub fn open_ahead(&self, r: &Ref) -> Option<fsx::MessageFile> {
        match (self, r) {
            (Opened::Maildir { dir, scan, .. }, Ref::Maildir(e)) => {
                fsx::MessageFile::open_ahead(&e.path(dir), scan.follow_symlinks)
                    .filter(|f| self.in_folder(f, &e.path(dir)).is_ok())
            }
            _ => None,
        }
    }

    /// A Maildir message whose hash is already known: everything but its bytes.
    pub fn unread<'a>(&'a self, e: &MaildirEntry) -> Loaded<'a> {
        let path = match self {
            Opened::Maildir { dir, .. } => e.path(dir),
            Opened::Mbox(f) => f.path.clone(),
        };
        Loaded {
            body: Body::Unread(e.size),
            meta: e.meta.clone(),
            origin: Origin::File(path),
            key: Some(source_key(e)),
            pseudo: false,
            truncated: None,
            expunged: false,
            partial: false,
            gone: false,
            uid: e.uid,
        }
    }

    /// Reads the bytes of a message loaded [`Opened::unread`].
    pub fn read_body(&self, l: &mut Loaded<'_>) -> Result<(), Problem> {
        self.read_body_from(l, None)
    }

    fn read_body_from(&self, l: &mut Loaded<'_>, file: Option<fsx::MessageFile>) -> Result<(), Problem> {
        if !l.body.is_unread() {
            return Ok(());
        }
        let follow = matches!(self, Opened::Maildir { scan, .. } if scan.follow_symlinks);
        let path = l.origin.path().to_path_buf();
        let data = match file {
            Some(f) => f.read_any(&path),
            None => self.read_file(&path, follow),
        };
        let data = match data {
            Err(e) if e.is_not_found() => {
                let Some(data) = self.read_moved(l, follow)? else {
                    l.gone = true;
                    l.body = Body::Owned(Vec::new());
                    return Ok(());
                };
                data
            }
            r => r.map_err(|err| err.problem())?,
        };
        l.body = match data {
            fsx::FileBytes::Owned(d) if d.is_empty() => {
                return Err(l
                    .origin
                    .problem_of(crate::error::Kind::Malformed, "empty file (0 bytes) is not a message; skipped"));
            }
            fsx::FileBytes::Owned(d) => Body::Owned(d),
            fsx::FileBytes::Mapped(m) => Body::Mapped(m),
        };
        Ok(())
    }

    /// A message not found where it was listed: read from where it moved to in the same
    /// folder (with the flags of its new name), or `None` when it is gone.
    fn read_moved(&self, l: &mut Loaded<'_>, follow: bool) -> Result<Option<fsx::FileBytes>, Problem> {
        let Opened::Maildir { dir, keywords, moved, .. } = self else { return Ok(None) };
        let old = l.origin.path().to_path_buf();
        let Some(old_name) = old.file_name().map(|n| n.as_bytes().to_vec()) else { return Ok(None) };
        let base = crate::store::maildir::name::parse(&old_name).base.to_vec();
        for attempt in 0..3 {
            // After a miss the names known are stale: list again.
            let found = moved.lock().unwrap_or_else(|p| p.into_inner()).find(dir, &base, &old_name, attempt > 0);
            let Some((sub, name)) = found else { return Ok(None) };
            let path = dir.join(sub.as_str()).join(std::ffi::OsStr::from_bytes(&name));
            // Renamed, the file keeps its inode: another file of the same base name is another
            // message (it is listed and copied on its own).
            let ino = l.key.as_ref().map_or(0, |k| k.ino);
            let same = std::fs::symlink_metadata(&path).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if ino != 0 && same.as_ref().is_ok_and(|i| *i != ino) {
                return Ok(None);
            }
            match self.read_file(&path, follow) {
                Ok(data) => {
                    let e = mdread::entry(sub, name, 0, l.meta.date, 0, keywords);
                    l.meta.flags = e.meta.flags;
                    l.meta.keywords = e.meta.keywords;
                    l.meta.stray_letters = e.meta.stray_letters;
                    l.meta.recent = e.meta.recent;
                    l.meta.info_tail = e.meta.info_tail;
                    l.origin = Origin::File(path);
                    return Ok(Some(data));
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.problem()),
            }
        }
        Err(l.origin.problem("the message kept moving while it was read; not copied"))
    }

    /// Opens a message file of this folder by path, checks it is in the folder, and reads it.
    fn read_file(&self, path: &Path, follow: bool) -> crate::error::Result<fsx::FileBytes> {
        let f = fsx::MessageFile::open(path, follow)?;
        self.in_folder(&f, path)?;
        f.read_any(path)
    }

    /// A message file opened by path must be in this folder (see
    /// [`fsx::MessageFile::check_in_folder`]); not checked with `--follow-symlinks`.
    fn in_folder(&self, f: &fsx::MessageFile, path: &Path) -> crate::error::Result<()> {
        match self {
            Opened::Maildir { real: Some(real), .. } => f.check_in_folder(real, path),
            _ => Ok(()),
        }
    }

    /// Whether a message of this folder was taken for gone without a fresh listing.
    pub fn unsure_of_gone(&self) -> bool {
        match self {
            Opened::Maildir { moved, .. } => moved.lock().map_or(true, |m| m.unsure),
            Opened::Mbox(_) => false,
        }
    }

    /// The chunk `refs` is finished: its mapped pages need not stay resident (memory stays
    /// bounded whatever the mbox size; the pages stay in the page cache).
    pub fn release(&self, refs: &[Ref]) {
        if let (Opened::Mbox(f), Some(Ref::Mbox(e))) = (self, refs.last()) {
            f.release_before(e.msg.end);
        }
    }

    /// Fails when a source mbox shrank or changed since it was opened (see
    /// [`MboxFile::intact`]); nothing read from it may be committed then.
    pub fn intact(&self) -> Result<(), Problem> {
        match self {
            Opened::Mbox(f) => f.intact().map_err(|e| e.problem()),
            Opened::Maildir { .. } => Ok(()),
        }
    }

    /// Stored bytes of the folder (mbox: message bytes as stored; Maildir: file sizes).
    pub fn stored_len(&self, r: &Ref) -> u64 {
        match (self, r) {
            (Opened::Mbox(_), Ref::Mbox(e)) => (e.msg.end - e.msg.start) as u64,
            (_, Ref::Maildir(e)) => e.size,
            _ => 0,
        }
    }
}

fn source_key(e: &MaildirEntry) -> SourceKey {
    SourceKey { base: e.base().to_vec(), size: e.size, mtime_ns: e.mtime_ns, ino: e.ino }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past its free fresh listings, a folder lists again once the run has gone on for ten
    /// times what the last listing took: a message a live server moved late is still found,
    /// and listings stay a small part of the run.
    #[test]
    fn fresh_listings_go_on_at_a_pace() {
        let t = tempfile::tempdir().unwrap();
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("cur/1.a:2,S"), b"x").unwrap();
        let mut m = Moved { relists: MAX_RELISTS, ..Moved::default() };
        let long_ago = std::time::Instant::now() - std::time::Duration::from_secs(10);
        m.last = Some((long_ago, std::time::Duration::from_millis(1)));
        assert_eq!(m.find(t.path(), b"1.a", b"1.a", true), Some((mdread::Sub::Cur, b"1.a:2,S".to_vec())));
        assert!(!m.unsure);
        // Just listed, and listing took long: not again yet; the miss is taken for gone.
        m.last = Some((std::time::Instant::now(), std::time::Duration::from_secs(60)));
        std::fs::rename(t.path().join("cur/1.a:2,S"), t.path().join("cur/1.a:2,RS")).unwrap();
        assert_eq!(m.find(t.path(), b"1.a", b"1.a:2,S", true), None);
        assert!(m.unsure);
    }

    /// Issue 17: a source mbox that shrinks while its chunks are taken ends with its problem
    /// (naming the file) instead of messages made of other bytes; verify and inspect read
    /// through here too.
    #[test]
    fn a_source_mbox_that_shrinks_ends_its_chunks_with_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("Big");
        let mut data = Vec::new();
        for i in 0..3000 {
            data.extend_from_slice(format!("From a@b Mon Jan  2 15:04:05 2006\nSubject: {i}\n\n").as_bytes());
            data.extend_from_slice(&[b'x'; 8000]);
            data.extend_from_slice(b"\n\n");
        }
        std::fs::write(&path, &data).unwrap();
        let mut problems = Vec::new();
        let opened = Opened::open(&Location::MboxFile(path.clone()), ScanOptions::default(), &mut problems).unwrap();
        let mut chunks = opened.chunks_of(&ReadOptions::default(), 1 << 20);
        assert!(matches!(chunks.next().unwrap().first(), Some(Ref::Mbox(_))));
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4096).unwrap();
        let rest: Vec<Vec<Ref>> = chunks.collect();
        let Some([Ref::Problem(p)]) = rest.last().map(Vec::as_slice) else { panic!("no problem at the end") };
        assert_eq!(p.path, path.display().to_string());
        assert!(p.reason.contains("shrank"), "{p}");
        assert!(opened.intact().is_err());
    }

    /// A message file opened ahead of its read (cold cache) loads the same bytes as one read by
    /// path; a file that is not a regular file any more is not opened ahead, and its read says
    /// why.
    #[test]
    fn opened_ahead_loads_as_by_path() {
        let tmp = tempfile::tempdir().unwrap();
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir(tmp.path().join(s)).unwrap();
        }
        std::fs::write(tmp.path().join("cur/1.M1P1Q1.h,S=12:2,S"), b"Subject: a\n\nx").unwrap();
        std::fs::write(tmp.path().join("cur/2.M1P1Q2.h:2,"), b"Subject: b\n\ny").unwrap();
        let loc = Location::Maildir(tmp.path().to_path_buf());
        let mut problems = Vec::new();
        let opened = Opened::open(&loc, ScanOptions::default(), &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let refs: Vec<Ref> = opened.chunks(&ReadOptions::default()).flatten().collect();
        assert_eq!(refs.len(), 2);
        let ropts = ReadOptions::default();
        let _counting = fsx::SLOT_COUNT_TEST.lock().unwrap_or_else(|p| p.into_inner());
        let held = fsx::FdSlot::held();
        let ahead = opened.open_ahead(&refs[0]).expect("opened ahead");
        let by_path = opened.load(&refs[0], &ropts).unwrap();
        let from_ahead = opened.load_from(&refs[0], &ropts, Some(ahead)).unwrap();
        assert_eq!(from_ahead.body.pieces(), by_path.body.pieces());
        assert_eq!(from_ahead.body.pieces(), vec![&b"Subject: a\n\nx"[..]]);
        assert_eq!(fsx::FdSlot::held(), held, "the descriptor's slot is given back once read");

        let second = tmp.path().join("cur/2.M1P1Q2.h:2,");
        std::fs::remove_file(&second).unwrap();
        nix::unistd::mkfifo(&second, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(opened.open_ahead(&refs[1]).is_none());
        let err = opened.load_from(&refs[1], &ropts, None).err().expect("a FIFO is not read");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    /// A live server renames and deletes messages while a folder is read: a renamed message is
    /// read under its new name with its new flags, once; a deleted one is gone, not an error.
    #[test]
    fn messages_moved_or_deleted_during_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir(tmp.path().join(s)).unwrap();
        }
        let p = |n: &str| tmp.path().join(n);
        std::fs::write(p("new/1.M1P1.h"), b"Subject: a\n\na\n").unwrap();
        std::fs::write(p("new/2.M2P1.h"), b"Subject: b\n\nb\n").unwrap();
        std::fs::write(p("cur/3.M3P1.h:2,S"), b"Subject: c\n\nc\n").unwrap();
        let loc = Location::Maildir(tmp.path().to_path_buf());
        let mut problems = Vec::new();
        let opened = Opened::open(&loc, ScanOptions::default(), &mut problems).unwrap();
        std::fs::rename(p("new/1.M1P1.h"), p("cur/1.M1P1.h:2,RS")).unwrap();
        std::fs::remove_file(p("new/2.M2P1.h")).unwrap();
        let ropts = ReadOptions::default();
        let refs: Vec<Ref> = opened.chunks(&ropts).flatten().collect();
        assert_eq!(refs.len(), 3);
        let loaded: Vec<Loaded<'_>> = refs.iter().map(|r| opened.load(r, &ropts).unwrap()).collect();
        let a = loaded.iter().find(|l| l.body.pieces() == vec![&b"Subject: a\n\na\n"[..]]).expect("a read");
        assert_eq!(a.meta.flags, crate::flags::Flags::parse("RS"), "the new name's flags");
        assert_eq!(loaded.iter().filter(|l| l.gone).count(), 1, "b is gone");
        assert!(!opened.unsure_of_gone());

        // One file listed under both names (moved between the reads of new/ and cur/; a hard
        // link stands for that here): once. Two files of one base name are two messages.
        std::fs::write(p("new/4.M4P1.h"), b"Subject: d\n\nd\n").unwrap();
        std::fs::hard_link(p("new/4.M4P1.h"), p("cur/4.M4P1.h:2,S")).unwrap();
        let o = Opened::open(&loc, ScanOptions::default(), &mut problems).unwrap();
        let refs: Vec<Ref> = o.chunks(&ropts).flatten().collect();
        assert_eq!(refs.len(), 3, "1, 3 and 4, each once");
        assert!(refs.iter().any(|r| matches!(r, Ref::Maildir(e) if e.name == b"4.M4P1.h")), "under its first name");
        std::fs::remove_file(p("cur/4.M4P1.h:2,S")).unwrap();
        std::fs::write(p("cur/4.M4P1.h:2,S"), b"Subject: d\n\nd\n").unwrap();
        let o = Opened::open(&loc, ScanOptions::default(), &mut problems).unwrap();
        assert_eq!(o.chunks(&ropts).flatten().count(), 4);
    }

    /// A message deleted during the run whose base name another, separate file shares is gone;
    /// the other file is not read in its place (it is copied once, as itself).
    #[test]
    fn a_moved_message_is_found_by_inode_not_by_name_alone() {
        let tmp = tempfile::tempdir().unwrap();
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir(tmp.path().join(s)).unwrap();
        }
        let p = |n: &str| tmp.path().join(n);
        std::fs::write(p("new/1.M1P1.h"), b"Subject: x\n\nx\n").unwrap();
        std::fs::write(p("cur/1.M1P1.h:2,S"), b"Subject: y\n\ny\n").unwrap();
        let loc = Location::Maildir(tmp.path().to_path_buf());
        let opened = Opened::open(&loc, ScanOptions::default(), &mut Vec::new()).unwrap();
        std::fs::remove_file(p("new/1.M1P1.h")).unwrap();
        let ropts = ReadOptions::default();
        let loaded: Vec<Loaded<'_>> =
            opened.chunks(&ropts).flatten().map(|r| opened.load(&r, &ropts).unwrap()).collect();
        assert_eq!(loaded.iter().filter(|l| l.gone).count(), 1);
        let ys = loaded.iter().filter(|l| !l.gone && l.body.pieces() == vec![&b"Subject: y\n\ny\n"[..]]).count();
        assert_eq!(ys, 1, "y once");
    }

    /// `cur/` swapped for a link between the listing and the read: the file it leads to is not
    /// read (a mailbox owner could point root at anyone's mail).
    #[test]
    fn a_directory_swapped_for_a_link_is_not_read_through() {
        let tmp = tempfile::tempdir().unwrap();
        let md = tmp.path().join("md");
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(s)).unwrap();
        }
        std::fs::write(md.join("cur/1.M1P1.h:2,S"), b"Subject: mine\n\nmine\n").unwrap();
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("1.M1P1.h:2,S"), b"Subject: secret\n\nsecret\n").unwrap();
        let loc = Location::Maildir(md.clone());
        let opened = Opened::open(&loc, ScanOptions::default(), &mut Vec::new()).unwrap();
        std::fs::rename(md.join("cur"), md.join("cur.real")).unwrap();
        std::os::unix::fs::symlink(&victim, md.join("cur")).unwrap();
        let ropts = ReadOptions::default();
        for r in opened.chunks(&ropts).flatten() {
            assert!(opened.open_ahead(&r).is_none());
            match opened.load(&r, &ropts) {
                Ok(l) => assert!(
                    l.gone || l.body.pieces() != vec![&b"Subject: secret\n\nsecret\n"[..]],
                    "read through the link"
                ),
                Err(p) => assert!(p.reason.contains("link"), "{p:?}"),
            }
        }
    }
}
