//! Uniform access to the messages of one source folder, whatever its format: an opened folder
//! yields references in source order, in chunks of bounded size, and each reference loads into
//! the bytes to write (borrowed from the mbox mapping, or read from the Maildir file) with its
//! metadata. sync, verify and inspect all read through here, so they agree on what a message is.

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
const CHUNK_MESSAGES: usize = 1024;
pub const CHUNK_BYTES: u64 = 16 << 20;

pub enum Opened {
    Mbox(Arc<MboxFile>),
    Maildir {
        dir: PathBuf,
        keywords: Box<KeywordMap>,
        scan: ScanOptions,
        /// The whole listing, sorted by name (`None`: streamed in directory order).
        listed: Option<Box<Listing>>,
    },
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
        match self {
            Origin::Mbox { path, offset, .. } => Problem::at_offset(path, *offset, reason),
            Origin::File(p) => Problem::new(p, reason),
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
    /// A Maildir file of this size whose hash was known without reading it; read with
    /// [`Opened::read_body`] before its bytes are needed.
    Unread(u64),
}

impl Body<'_> {
    pub fn pieces(&self) -> Vec<&[u8]> {
        match self {
            Body::Slices(v) => v.clone(),
            Body::Owned(b) => vec![b.as_slice()],
            Body::Unread(_) => Vec::new(),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Body::Slices(v) => v.iter().map(|p| p.len() as u64).sum(),
            Body::Owned(b) => b.len() as u64,
            Body::Unread(n) => *n,
        }
    }

    pub fn is_unread(&self) -> bool {
        matches!(self, Body::Unread(_))
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
}

impl Opened {
    /// Opens a source folder, a Maildir fully listed and sorted by name (the order an mbox
    /// target is written in). An mbox that is not an mbox is an error (nothing is read).
    pub fn open(loc: &Location, scan: ScanOptions, problems: &mut Vec<Problem>) -> Result<Opened> {
        let mut o = Opened::open_streaming(loc, scan)?;
        if let Opened::Maildir { dir, keywords, listed, .. } = &mut o {
            *listed = Some(Box::new(Listing::build(dir, keywords, scan, problems)?));
        }
        Ok(o)
    }

    /// Opens a source folder whose Maildir messages are read in directory order, chunk by
    /// chunk, so memory does not grow with the folder; listing problems come out of `load`.
    pub fn open_streaming(loc: &Location, scan: ScanOptions) -> Result<Opened> {
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
            Opened::Maildir { dir, keywords, scan, listed: None } => {
                let stream = mdread::MessageStream::new(dir, (**keywords).clone(), *scan);
                let mut it = stream
                    .map(|r| match r {
                        Ok(e) => Ref::Maildir(Box::new(e)),
                        Err(p) => Ref::Problem(Box::new(p)),
                    })
                    .peekable();
                Box::new(std::iter::from_fn(move || {
                    let mut v = bounded_chunk(&mut it, max)?;
                    v.sort_by(|a, b| match (a, b) {
                        (Ref::Maildir(x), Ref::Maildir(y)) => (x.sub, &x.name).cmp(&(y.sub, &y.name)),
                        _ => std::cmp::Ordering::Equal,
                    });
                    Some(v)
                }))
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
        let path = l.origin.path();
        let data = match file {
            Some(f) => f.read(path),
            None => fsx::read_message_file(path, matches!(self, Opened::Maildir { scan, .. } if scan.follow_symlinks)),
        };
        let data = data.map_err(|err| err.problem())?;
        if data.is_empty() {
            return Err(l.origin.problem("empty file (0 bytes) is not a message; skipped"));
        }
        l.body = Body::Owned(data);
        Ok(())
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
    SourceKey { base: e.base().to_vec(), size: e.size, mtime_ns: e.mtime_ns }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
