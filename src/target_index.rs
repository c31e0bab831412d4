//! The index of a target folder: each message file with the SHA-256 of its bytes.
//!
//! Hashing every target file on every run would make a re-run cost a full read, so the hashes
//! are cached in `mailmover-cache` in the folder directory (a name Dovecot, Courier and Python's
//! `mailbox` ignore), keyed by the file's base name, size and mtime. A cache that does not
//! parse is ignored whole and rebuilt; an entry whose size or mtime no longer matches the file
//! is hashed again. Nothing is trusted that the file system does not confirm.
//!
//! A cache is data a mailbox owner can replace: it is read only from a regular file below
//! [`MAX_CACHE_BYTES`], never through a symlink, never from a FIFO or device
//! ([`fsx::Dir::open_own_file`]); its first line names the folder it belongs to (device, inode
//! and path of the folder directory, [`fsx::Dir::folder_id`]), so a cache copied from another
//! folder is ignored. Anything refused is reported as a warning and rebuilt; a cache of an
//! older version (no folder in its first line) is rebuilt without a word.
//!
//! The folder is opened once ([`fsx::Dir`]); its `cur/` and `new/`, their messages, its
//! keyword list and its caches are all listed, looked at and read relative to that descriptor,
//! so a folder or file swapped for a link during the run is not read through.

use std::ffi::OsStr;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Kind, Problem, Result};
use crate::fsx;
use crate::message::Hash;
use crate::spill;
use crate::store::maildir::name;
use crate::store::maildir::read::{self as mdread, MaildirEntry};
use crate::store::maildir::write::{FILE_MODE, FolderWriter};

pub const CACHE_FILE: &str = "mailmover-cache";
/// The same for the messages of a Maildir source, kept in the target folder (nothing is ever
/// written into a source): a re-run after new mail arrived reads only the new files.
pub const SOURCE_CACHE_FILE: &str = "mailmover-source-cache";
/// Version 2 names its folder in the first line: `mailmover-cache 2 DEV:INO PATH`.
const CACHE_VERSION: &str = "2";
/// Some 130 bytes a message: 30 million messages. Bigger is not a cache of ours.
const MAX_CACHE_BYTES: u64 = 4 << 30;
/// A line holds a hash, two numbers and a base name (at most 255 bytes).
const MAX_LINE: u64 = 1024;
/// The first line holds a path (up to 4,096 bytes, each escaped to at most 4).
const MAX_HEADER: u64 = 20 << 10;

/// The first line of the cache `file` of the folder `folder` ([`fsx::folder_id`]).
fn header(file: &str, folder: &str) -> String {
    format!("{file} {CACHE_VERSION} {folder}")
}

/// A target folder's messages, each with its hash, sorted by hash (on disk when there are many:
/// memory stays the same for 5,000 or 5,000,000 messages).
pub struct Index {
    pub sorted: spill::Sorted<Indexed>,
    /// Messages listed.
    pub count: u64,
    /// Every entry's hash came from a valid cache entry.
    pub from_cache: bool,
    /// Copies mailmover wrote that a crash left shorter than their `,S=` says.
    pub torn: Vec<PathBuf>,
    /// A cache or keyword list that was refused (and is rebuilt): why.
    pub warnings: Vec<Problem>,
}

impl Index {
    /// A folder that does not exist (yet).
    pub fn empty() -> Result<Index> {
        let sorted =
            spill::Sorter::new().sorted().map_err(|e| crate::error::Error::Io { path: PathBuf::new(), source: e })?;
        Ok(Index { sorted, count: 0, from_cache: false, torn: Vec::new(), warnings: Vec::new() })
    }
}

/// One target message with its hash; `idx` is its place in the listing (ties between copies
/// of one message go to the first listed).
#[derive(Debug, Clone)]
pub struct Indexed {
    pub hash: Hash,
    pub idx: u64,
    pub entry: MaildirEntry,
}

crate::ordered_by!(Indexed, hash, idx);

impl spill::Spill for Indexed {
    fn weight(&self) -> usize {
        self.entry.weight() + std::mem::size_of::<MaildirEntry>()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.idx.to_le_bytes());
        self.entry.encode(out);
    }

    fn read(b: &[u8]) -> Option<Indexed> {
        let (hash, b) = b.split_first_chunk::<32>()?;
        let (idx, b) = b.split_first_chunk::<8>()?;
        let (entry, rest) = MaildirEntry::decode(b)?;
        rest.is_empty().then_some(Indexed { hash: *hash, idx: u64::from_le_bytes(*idx), entry })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    size: u64,
    mtime_ns: i64,
}

/// Cache entries are looked up by a 64-bit digest of the base name rather than the name itself:
/// a few dozen bytes per message instead of a copy of every name (size and mtime must match
/// too, so a digest collision can only cost a re-read).
fn name_key(base: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(base)
}

/// A cache file read whole into memory, by name digest (the tests' reading of the format).
#[cfg(test)]
#[derive(Debug, Default)]
struct Table(Vec<(u64, Key, Hash)>);

/// A cache file opened and its first line checked: positioned after that line.
fn open_cache(dir: &fsx::Dir, file: &str) -> Result<Option<std::io::BufReader<std::fs::File>>, Problem> {
    let path = dir.path.join(file);
    let refused = |why: String| Problem::new(&path, format!("{why}; ignored, rebuilt"));
    let opened = dir.open_own_file(OsStr::new(file), MAX_CACHE_BYTES).map_err(|e| refused(e.problem().reason))?;
    let Some((f, _)) = opened else { return Ok(None) };
    let folder = dir.folder_id().ok_or_else(|| refused("its folder cannot be looked at".into()))?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, f);
    let mut first = Vec::new();
    (&mut r).take(MAX_HEADER).read_until(b'\n', &mut first).map_err(|e| refused(e.to_string()))?;
    if strip_nl(&first) != header(file, &folder).as_bytes() {
        let ours = first.strip_prefix(format!("{file} {CACHE_VERSION} ").as_bytes()).is_some();
        return if ours { Err(refused("it belongs to another folder".into())) } else { Ok(None) };
    }
    Ok(Some(r))
}

/// The lines after a cache's first line, each handed to `take` (which says `false` to stop);
/// `None` when a line is not one of ours (the cache is then no cache).
fn parse_lines(mut r: impl BufRead, take: &mut dyn FnMut(u64, Key, Hash) -> bool) -> Option<()> {
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // A line longer than any of ours (a file of zeros) ends the reading: not a cache.
        let n = (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            return Some(());
        }
        if n as u64 == MAX_LINE && !line.ends_with(b"\n") {
            return None;
        }
        let l = strip_nl(&line);
        if l.is_empty() {
            continue;
        }
        let mut f = l.splitn(4, |&b| b == b' ');
        let (h, s, m, n) = (f.next()?, f.next()?, f.next()?, f.next()?);
        let hash = crate::wire::unhex32(h)?;
        let size = std::str::from_utf8(s).ok()?.parse().ok()?;
        let mtime_ns = std::str::from_utf8(m).ok()?.parse().ok()?;
        if !take(name_key(n), Key { size, mtime_ns }, hash) {
            return None;
        }
    }
}

#[cfg(test)]
impl Table {
    /// The cache `file` of the opened folder `dir`: `Ok(None)` when there is none, or one of
    /// an older version, or one that does not parse; `Err` (a warning) when it was refused.
    fn read(dir: &fsx::Dir, file: &str) -> Result<Option<Table>, Problem> {
        let Some(r) = open_cache(dir, file)? else { return Ok(None) };
        let mut v = Vec::new();
        let parsed = parse_lines(r, &mut |n, k, h| {
            v.push((n, k, h));
            true
        });
        Ok(parsed.map(|()| Table::sorted(v)))
    }

    fn sorted(mut v: Vec<(u64, Key, Hash)>) -> Table {
        v.sort_unstable_by_key(|e| (e.0, e.1.size, e.1.mtime_ns));
        v.dedup();
        Table(v)
    }

    fn parse(mut r: impl BufRead, header: &str, _capacity: usize) -> Option<Table> {
        let mut line = Vec::new();
        (&mut r).take(MAX_HEADER).read_until(b'\n', &mut line).ok()?;
        if strip_nl(&line) != header.as_bytes() {
            return None;
        }
        let mut v = Vec::new();
        parse_lines(r, &mut |n, k, h| {
            v.push((n, k, h));
            true
        })?;
        Some(Table::sorted(v))
    }

    fn get(&self, base: &[u8], key: Key) -> Option<Hash> {
        self.with_name(base).find(|e| e.1 == key).map(|e| e.2)
    }

    fn contains(&self, base: &[u8]) -> bool {
        self.with_name(base).next().is_some()
    }

    fn with_name(&self, base: &[u8]) -> impl Iterator<Item = &(u64, Key, Hash)> {
        let n = name_key(base);
        let lo = self.0.partition_point(|e| e.0 < n);
        self.0[lo..].iter().take_while(move |e| e.0 == n)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

fn strip_nl(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// One line of a cache: a message file's name digest, size and mtime with its hash; sorted by
/// name digest to be merged with a listing sorted the same way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CacheLine {
    pub name_key: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: Hash,
}

impl spill::Spill for CacheLine {
    fn weight(&self) -> usize {
        0
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.name_key.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.mtime_ns.to_le_bytes());
        out.extend_from_slice(&self.hash);
    }

    fn read(b: &[u8]) -> Option<CacheLine> {
        let (n, b) = b.split_first_chunk::<8>()?;
        let (s, b) = b.split_first_chunk::<8>()?;
        let (m, b) = b.split_first_chunk::<8>()?;
        let hash = <Hash>::try_from(b).ok()?;
        Some(CacheLine {
            name_key: u64::from_le_bytes(*n),
            size: u64::from_le_bytes(*s),
            mtime_ns: i64::from_le_bytes(*m),
            hash,
        })
    }
}

/// Hashes of a Maildir source folder's messages from an earlier run, by base name, size and
/// mtime (the same checks as the target's cache: a file the file system shows changed
/// misses), sorted by name digest in bounded memory (on disk when there are many).
pub struct SourceCache {
    pub lines: spill::Sorted<CacheLine>,
}

impl SourceCache {
    /// The source cache kept in the opened target folder `target_dir`; a refused one is a
    /// warning, one that does not read back is none.
    pub fn load(target_dir: &fsx::Dir, warnings: &mut Vec<Problem>) -> Option<SourceCache> {
        read_sorted(target_dir, SOURCE_CACHE_FILE, warnings).map(|lines| SourceCache { lines })
    }
}

/// A listed message file sorted as caches are merged: by name digest, size and mtime, with its
/// place in the listing.
#[derive(Debug, Clone)]
pub struct ByName {
    pub key: (u64, u64, i64),
    pub seq: u64,
    pub entry: MaildirEntry,
}

impl ByName {
    pub fn new(seq: u64, entry: MaildirEntry) -> ByName {
        ByName { key: (name_key(entry.base()), entry.size, entry.mtime_ns), seq, entry }
    }
}

crate::ordered_by!(ByName, key, seq);

impl spill::Spill for ByName {
    fn weight(&self) -> usize {
        self.entry.weight() + std::mem::size_of::<MaildirEntry>()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_le_bytes());
        self.entry.encode(out);
    }

    fn read(b: &[u8]) -> Option<ByName> {
        let (seq, b) = b.split_first_chunk::<8>()?;
        let (entry, rest) = MaildirEntry::decode(b)?;
        rest.is_empty().then(|| ByName::new(u64::from_le_bytes(*seq), entry))
    }
}

/// Merges a listing sorted by name with a cache sorted the same way: each listed file comes
/// with its cached hash, if the cache has its name, size and mtime with one hash only (two
/// different files of one base name, size and mtime in new/ and cur/ cannot be told apart by
/// the cache: both are read). Returns the number of cache lines.
pub fn merge_cached(
    listed: &spill::Sorted<ByName>,
    cache: Option<&spill::Sorted<CacheLine>>,
    take: &mut dyn FnMut(ByName, Option<Hash>) -> crate::error::Result<()>,
    io_error: &dyn Fn(std::io::Error) -> crate::error::Error,
) -> crate::error::Result<u64> {
    let mut lines = cache.map(|c| c.iter().peekable());
    // The lines of the last key taken: the key, its hash, and whether they disagree.
    let mut group: Option<((u64, u64, i64), Hash, bool)> = None;
    let mut total = 0u64;
    let mut note = |c: CacheLine, group: &mut Option<((u64, u64, i64), Hash, bool)>| {
        total += 1;
        let key = (c.name_key, c.size, c.mtime_ns);
        match group {
            Some((k, h, conflict)) if *k == key => *conflict |= *h != c.hash,
            _ => *group = Some((key, c.hash, false)),
        }
    };
    for l in listed.iter() {
        let l = l.map_err(io_error)?;
        if let Some(lines) = lines.as_mut() {
            while let Some(c) = lines.next_if(|c| c.as_ref().is_ok_and(|c| (c.name_key, c.size, c.mtime_ns) <= l.key)) {
                note(c.map_err(io_error)?, &mut group);
            }
        }
        // Two files of one name, size and mtime (new/ and cur/) share the line.
        let hash = group.filter(|(k, _, conflict)| *k == l.key && !conflict).map(|(_, h, _)| h);
        take(l, hash)?;
    }
    for c in lines.into_iter().flatten() {
        note(c.map_err(io_error)?, &mut group);
    }
    Ok(total)
}

/// The cache `file` of the opened folder `dir`, sorted by name digest in bounded memory; a
/// refused one is a warning, one that does not parse is none.
fn read_sorted(dir: &fsx::Dir, file: &str, warnings: &mut Vec<Problem>) -> Option<spill::Sorted<CacheLine>> {
    let r = open_cache(dir, file).map_err(|p| warnings.push(p)).ok().flatten()?;
    let mut sorter = spill::Sorter::new();
    let mut failed = None;
    let parsed = parse_lines(r, &mut |name_key, k, hash| {
        let line = CacheLine { name_key, size: k.size, mtime_ns: k.mtime_ns, hash };
        sorter.push(line).map_err(|e| failed = Some(e)).is_ok()
    });
    if let Some(e) = failed {
        warnings.push(Problem::new(&dir.path.join(file), format!("not used: {}", crate::error::io_reason(&e))));
        return None;
    }
    parsed?;
    sorter.sorted().ok()
}

/// Messages hashed at once (in parallel) while a folder is indexed.
const HASH_BATCH: usize = 1024;

/// Indexes the opened Maildir folder `dir`, listing it as the directories yield it and hashing
/// what the cache does not know, a batch at a time.
pub fn maildir(dir: &fsx::Dir, use_cache: bool, problems: &mut Vec<Problem>) -> Result<Index> {
    // A link at tmp/ refuses the folder too: the writer would have to go through it.
    if dir.stat_at(OsStr::new("tmp"))?.is_some_and(|e| e.kind == fsx::FileKind::Symlink) {
        return Err(crate::error::Error::bad(
            dir.path.join("tmp"),
            "is a symlink in the target; nothing is written through it",
        ));
    }
    let subs = mdread::MessageDirs::open(dir, problems)?;
    let mut warnings = Vec::new();
    let kw = mdread::keywords_in(dir).unwrap_or_else(|p| {
        warnings.push(p);
        Default::default()
    });
    let cache = if use_cache { read_sorted(dir, CACHE_FILE, &mut warnings) } else { None };
    let spilled = |e: std::io::Error| {
        crate::error::Error::bad(
            &dir.path,
            format!("the folder index could not be sorted: {}", crate::error::io_reason(&e)),
        )
    };
    // Listed in directory order (its place ranks copies of one message), merged with the
    // cache by name, then sorted by hash.
    let mut listed = spill::Sorter::new();
    let mut seq = 0;
    for r in subs.stream(&kw) {
        match r {
            Ok(e) => {
                listed.push(ByName::new(seq, e)).map_err(spilled)?;
                seq += 1;
            }
            Err(p) => problems.push(p),
        }
    }
    let listed = listed.sorted().map_err(spilled)?;
    let mut sorter = spill::Sorter::new();
    let mut torn = Vec::new();
    let (mut count, mut cached, mut failed) = (0u64, 0u64, false);
    let mut batch: Vec<(ByName, Option<Hash>)> = Vec::with_capacity(HASH_BATCH);
    let mut flush = |batch: &mut Vec<(ByName, Option<Hash>)>, problems: &mut Vec<Problem>| -> Result<()> {
        let hashed: Vec<(u64, Hashed)> = std::mem::take(batch)
            .into_par_iter()
            .map(|(l, h)| (l.seq, hash_entry(&dir.path, &subs, l.entry, h)))
            .collect();
        for (idx, r) in hashed {
            match r {
                Ok((entry, hash, from_cache)) => {
                    cached += u64::from(from_cache);
                    sorter.push(Indexed { hash, idx, entry }).map_err(spilled)?;
                    count += 1;
                }
                Err(p) => {
                    failed = true;
                    let name =
                        Path::new(&p.path).file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
                    if p.kind == Kind::Torn && written_by_us(&name) {
                        torn.push(PathBuf::from(&p.path));
                    } else {
                        problems.push(p)
                    }
                }
            }
        }
        Ok(())
    };
    let lines = merge_cached(
        &listed,
        cache.as_ref(),
        &mut |l, h| {
            batch.push((l, h));
            if batch.len() >= HASH_BATCH { flush(&mut batch, problems) } else { Ok(()) }
        },
        &spilled,
    )?;
    flush(&mut batch, problems)?;
    // Every message found in the cache, and nothing else in it.
    let from_cache = !failed && cache.is_some() && cached == count && lines == count;
    let sorted = sorter.sorted().map_err(spilled)?;
    Ok(Index { sorted, count, from_cache, torn, warnings })
}

/// A target message with its hash and whether the cache gave it, or why it has none.
type Hashed = Result<(MaildirEntry, Hash, bool), Problem>;

/// A target message's hash: from the cache when its name, size and mtime are there, else read
/// through its directory's descriptor.
fn hash_entry(dir: &Path, subs: &mdread::MessageDirs, e: MaildirEntry, cached: Option<Hash>) -> Hashed {
    let torn = |path: &Path, n: u64, s: u64| {
        Problem::of(Kind::Torn, path, format!("file has {n} bytes but its name says S={s} (torn or rewritten file)"))
    };
    let path = e.path(dir);
    // Checked on every run, cache or not: a stat is enough.
    if let Some(s) = name::size_field(e.base())
        && s != e.size
    {
        return Err(torn(&path, e.size, s));
    }
    if let Some(h) = cached {
        return Ok((e, h, true));
    }
    let data = subs
        .open_message(&e)
        .and_then(|f| fsx::MessageFile::from_file(f, &path)?.read(&path))
        .map_err(|err| err.problem())?;
    if let Some(s) = name::size_field(e.base())
        && s != data.len() as u64
    {
        return Err(torn(&path, data.len() as u64, s));
    }
    Ok((e, fsx::sha256_pieces(&[&data]), false))
}

/// Names in the shape mailmover writes (`<secs>.M<order>P<8 hex>[Q<n>].host,S=…`, or
/// `<secs>.M<usec>P<pid>Q<n>.host,S=…` before names were the same on every run): a size that
/// does not match such a name means a copy was torn by a crash without fsync.
fn written_by_us(name: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(name) else { return false };
    let mut parts = s.splitn(3, '.');
    let (Some(secs), Some(id)) = (parts.next(), parts.next()) else { return false };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = id.strip_prefix('M') else { return false };
    let Some((order, rest)) = rest.split_once('P') else { return false };
    let (p, q) = match rest.split_once('Q') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let hash = p.len() == 8 && p.bytes().all(|b| b.is_ascii_hexdigit()) && q.is_none_or(digits);
    let pid = digits(p) && q.is_some_and(digits);
    digits(secs) && digits(order) && (hash || pid) && s.contains(",S=")
}

/// Moves a torn copy out of sight (a dot-name in the same directory, which Maildir readers
/// ignore) so its message is copied again; its bytes are kept, nothing is deleted.
pub fn set_aside(folder: &fsx::Dir, path: &Path) -> crate::error::Result<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let aside = path.with_file_name(format!(".{name}.torn"));
    // Reached from the opened folder without following a link on the way.
    let dir = folder.open_below(path.parent().unwrap_or(Path::new(".")))?;
    dir.rename_noreplace(std::ffi::OsStr::new(&name), &dir, std::ffi::OsStr::new(&format!(".{name}.torn")))?;
    Ok(aside)
}

/// Writes a folder's cache during a sync, one line per message as it is written, then the
/// entries of the index that are still there; renamed over the old cache at the end. Nothing
/// is collected in memory and the folder is not listed again.
pub struct CacheWriter {
    dir: fsx::Dir,
    file: &'static str,
    tmp: std::ffi::OsString,
    out: std::io::BufWriter<std::fs::File>,
    pub lines: u64,
    error: Option<std::io::Error>,
}

impl CacheWriter {
    pub fn create(w: &FolderWriter<'_>) -> crate::error::Result<CacheWriter> {
        CacheWriter::create_file(w, CACHE_FILE)
    }

    /// The writer of the folder's [`SourceCache`].
    pub fn create_source(w: &FolderWriter<'_>) -> crate::error::Result<CacheWriter> {
        CacheWriter::create_file(w, SOURCE_CACHE_FILE)
    }

    fn create_file(w: &FolderWriter<'_>, file: &'static str) -> crate::error::Result<CacheWriter> {
        let dir = w.dir.reopen()?;
        let folder = dir
            .folder_id()
            .ok_or_else(|| crate::error::Error::bad(&dir.path, "the folder cannot be looked at; no cache written"))?;
        let tmp = fsx::temp_name(std::ffi::OsStr::new(file));
        let _ = dir.unlink(&tmp);
        let f = dir.create_file(&tmp, FILE_MODE)?;
        if let Some(o) = dir.owner_for_new(w.owner()) {
            o.apply(std::os::fd::AsRawFd::as_raw_fd(&f), &dir.path.join(&tmp))?;
        }
        let mut out = std::io::BufWriter::new(f);
        let error = writeln!(out, "{}", header(file, &folder)).err();
        Ok(CacheWriter { dir, file, tmp, out, lines: 0, error })
    }

    pub fn add(&mut self, base: &[u8], size: u64, mtime_ns: i64, hash: &Hash) {
        if base.contains(&b'\n') || self.error.is_some() {
            return;
        }
        let r = self
            .out
            .write_all(&crate::wire::hex32(hash))
            .and_then(|()| write!(self.out, " {size} {mtime_ns} "))
            .and_then(|()| self.out.write_all(base))
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.error = Some(e);
        }
        self.lines += 1;
    }

    pub fn commit(mut self) -> crate::error::Result<()> {
        let path = self.dir.path.join(self.file);
        if let Some(e) = self.error.take().or_else(|| self.out.flush().err()) {
            self.discard();
            return Err(crate::error::Error::Io { path, source: e });
        }
        self.dir.rename_replace(&self.tmp, &self.dir, std::ffi::OsStr::new(self.file))
    }

    pub fn discard(self) {}
}

impl Drop for CacheWriter {
    /// A cache not committed (a run that stopped early, or nothing to say) leaves nothing
    /// behind; after a commit the temporary name is already gone.
    fn drop(&mut self) {
        let _ = self.dir.unlink(&self.tmp);
    }
}

/// Base name of a written file name (`new/NAME` or `cur/NAME:2,…`).
pub fn base_of(written_name: &str) -> Vec<u8> {
    let n = written_name.rsplit('/').next().unwrap_or(written_name);
    name::parse(n.as_bytes()).base.to_vec()
}

pub fn cache_path(dir: &Path) -> std::path::PathBuf {
    dir.join(OsStr::new(CACHE_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_names() {
        assert!(written_by_us(b"1136214245.M123P45Q6.host,S=10,W=11:2,S"));
        assert!(!written_by_us(b"1136214245.M123P45.host,S=10:2,S"));
        assert!(!written_by_us(b"1136214245.000001.mbox:2,S"));
        assert!(written_by_us(b"1136214245.M3P4c92bbbb.vm,S=144,W=151"));
        assert!(written_by_us(b"1136214245.M3P4c92bbbbQ2.vm,S=144,W=151:2,S"));
        assert!(!written_by_us(b"1136214245.M3P4c92bbbQ2.vm,S=144,W=151:2,S"));
    }

    fn render_cache(head: &str, entries: &[(&[u8], Key, Hash)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * 120);
        out.extend_from_slice(head.as_bytes());
        out.push(b'\n');
        for (base, k, h) in entries {
            if base.contains(&b'\n') {
                continue;
            }
            out.extend_from_slice(&crate::wire::hex32(h));
            out.extend_from_slice(format!(" {} {} ", k.size, k.mtime_ns).as_bytes());
            out.extend_from_slice(base);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn cache_round_trip_and_corruption() {
        let h = [7u8; 32];
        let head = header(CACHE_FILE, "1:2 /x");
        let text = render_cache(&head, &[(b"1.M1P1.h,S=3", Key { size: 3, mtime_ns: 5 }, h)]);
        let parse = |t: &[u8]| Table::parse(t, &head, 0);
        let m = parse(&text).unwrap();
        assert_eq!(m.get(b"1.M1P1.h,S=3", Key { size: 3, mtime_ns: 5 }), Some(h));
        assert_eq!(m.get(b"1.M1P1.h,S=3", Key { size: 3, mtime_ns: 6 }), None, "a changed mtime misses");
        assert!(!m.contains(b"2.M1P1.h,S=3"));
        assert!(parse(b"garbage").is_none());
        let mut bad = text.clone();
        bad.extend_from_slice(b"zz 1 2 name\n");
        assert!(parse(&bad).is_none(), "a bad line invalidates the whole cache");
        let mut long = text.clone();
        long.extend(std::iter::repeat_n(b'0', 5000));
        assert!(parse(&long).is_none(), "a line longer than any of ours ends it");
        // A folder deep in the tree: its header is long, and still read whole.
        let deep = header(CACHE_FILE, &format!("1:2 /{}", "d/".repeat(2000)));
        let text = render_cache(&deep, &[(b"1.M1P1.h,S=3", Key { size: 3, mtime_ns: 5 }, h)]);
        assert!(Table::parse(&text[..], &deep, 0).is_some());
    }

    #[test]
    fn table_read_from_a_file_finds_every_entry() {
        let named: Vec<(Vec<u8>, Key, Hash)> = (0..300u32)
            .map(|i| {
                (
                    format!("{i}.M1P1.h,S={i}").into_bytes(),
                    Key { size: i.into(), mtime_ns: i64::from(i) * 7 },
                    [i as u8; 32],
                )
            })
            .collect();
        let mut entries: Vec<(&[u8], Key, Hash)> = named.iter().map(|(n, k, h)| (n.as_slice(), *k, *h)).collect();
        // The same name twice (new/ and cur/): both lines answer.
        entries.push((b"5.M1P1.h,S=5", Key { size: 5, mtime_ns: 1 }, [9; 32]));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(CACHE_FILE);
        let id = fsx::folder_id(dir.path()).unwrap();
        std::fs::write(&p, render_cache(&header(CACHE_FILE, &id), &entries)).unwrap();
        let d = fsx::Dir::open_root(dir.path()).unwrap();
        let t = Table::read(&d, CACHE_FILE).unwrap().unwrap();
        assert_eq!(t.len(), 301);
        for (n, k, h) in &entries {
            assert_eq!(t.get(n, *k), Some(*h));
        }
        std::fs::rename(&p, dir.path().join(SOURCE_CACHE_FILE)).unwrap();
        assert!(Table::read(&d, SOURCE_CACHE_FILE).unwrap().is_none(), "the other cache's header does not parse");
    }

    /// Issue 18: everything of a target folder is read through the folder opened once. Here
    /// the folder is swapped for a link to another folder (its own messages, keywords and
    /// caches) after it was opened: the index still holds the opened folder's messages, its
    /// keywords and its caches' hashes.
    #[test]
    fn the_index_is_read_through_the_opened_folder() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let (f, moved, other) = (t.path().join("f"), t.path().join("moved"), t.path().join("other"));
        std::fs::create_dir(&f).unwrap();
        let dir = fsx::Dir::open_root(&f).unwrap();
        std::fs::rename(&f, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &f).unwrap();
        // Each folder's caches name the directory they are in (its identity holds its path).
        let mut keys = Vec::new();
        for (d, name, body, kw, h) in [
            (&moved, "1.M1P1.h,S=5:2,Sa", "hello", "$Mine", 7u8),
            (&other, "2.M1P1.h,S=7:2,Sa", "planted", "$Planted", 8),
        ] {
            for s in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(d.join(s)).unwrap();
            }
            std::fs::write(d.join("cur").join(name), body).unwrap();
            std::fs::write(d.join("dovecot-keywords"), format!("0 {kw}\n")).unwrap();
            let md = std::fs::metadata(d.join("cur").join(name)).unwrap();
            let key = Key { size: md.size(), mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec() };
            let base = name::parse(name.as_bytes()).base.to_vec();
            let id = fsx::folder_id(d).unwrap();
            for file in [CACHE_FILE, SOURCE_CACHE_FILE] {
                std::fs::write(d.join(file), render_cache(&header(file, &id), &[(&base, key, [h; 32])])).unwrap();
            }
            keys.push((base, key));
        }
        for use_cache in [true, false] {
            let mut problems = Vec::new();
            let index = maildir(&dir, use_cache, &mut problems).unwrap();
            assert!(problems.is_empty() && index.warnings.is_empty(), "{problems:?} {:?}", index.warnings);
            let all: Vec<Indexed> = index.sorted.iter().map(Result::unwrap).collect();
            let [Indexed { entry: e, hash: h, .. }] = &all[..] else { panic!("{all:?}") };
            assert_eq!(e.name, b"1.M1P1.h,S=5:2,Sa");
            assert_eq!(e.meta.keywords.iter().collect::<Vec<_>>(), vec!["$Mine"]);
            assert_eq!(*h, if use_cache { [7; 32] } else { fsx::sha256_pieces(&[b"hello"]) });
        }
        let known = SourceCache::load(&dir, &mut Vec::new()).unwrap();
        let lines: Vec<CacheLine> = known.lines.iter().map(Result::unwrap).collect();
        let want = CacheLine {
            name_key: name_key(&keys[0].0),
            size: keys[0].1.size,
            mtime_ns: keys[0].1.mtime_ns,
            hash: [7; 32],
        };
        assert_eq!(lines, vec![want]);
    }

    /// A message file swapped for a link (or a FIFO) between the listing and its read is
    /// refused by the open, never followed or waited on.
    #[test]
    fn a_message_swapped_for_a_link_after_the_listing_is_not_read() {
        let t = tempfile::tempdir().unwrap();
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir(t.path().join(s)).unwrap();
        }
        let (a, b) = (t.path().join("cur/1.M1P1.h:2,S"), t.path().join("cur/2.M1P1.h:2,S"));
        std::fs::write(&a, "x").unwrap();
        std::fs::write(&b, "y").unwrap();
        let dir = fsx::Dir::open_root(t.path()).unwrap();
        let subs = mdread::MessageDirs::open(&dir, &mut Vec::new()).unwrap();
        let kw = Default::default();
        let mut entries: Vec<MaildirEntry> = subs.stream(&kw).collect::<Result<_, _>>().unwrap();
        entries.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(entries.len(), 2);
        std::fs::remove_file(&a).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &a).unwrap();
        std::fs::remove_file(&b).unwrap();
        nix::unistd::mkfifo(&b, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = subs.open_message(&entries[0]).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");
        let e = subs.open_message(&entries[1]).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    /// Issue 18: a cache is data. A symlink (to /dev/zero), a FIFO, an oversize file or the
    /// cache of another folder is refused at once with a reason, never read; an old version's
    /// cache is rebuilt silently.
    #[test]
    fn planted_caches_are_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = fsx::Dir::open_root(dir.path()).unwrap();
        let p = dir.path().join(CACHE_FILE);
        let refused = |why: &str| {
            let t0 = std::time::Instant::now();
            let e = Table::read(&d, CACHE_FILE).unwrap_err();
            assert!(e.reason.contains(why), "{why}: {e}");
            assert!(t0.elapsed().as_secs() < 5, "{why}: took {:?}", t0.elapsed());
        };
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        refused("symlink");
        std::fs::remove_file(&p).unwrap();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        refused("not a regular file");
        std::fs::remove_file(&p).unwrap();
        std::fs::File::create(&p).unwrap().set_len(MAX_CACHE_BYTES + 1).unwrap();
        refused("more than");
        std::fs::remove_file(&p).unwrap();
        let other = tempfile::tempdir().unwrap();
        let head = header(CACHE_FILE, &fsx::folder_id(other.path()).unwrap());
        std::fs::write(&p, render_cache(&head, &[(b"1.M1P1.h,S=3", Key { size: 3, mtime_ns: 5 }, [1; 32])])).unwrap();
        refused("another folder");
        std::fs::write(&p, b"mailmover-cache 1\n").unwrap();
        assert!(Table::read(&d, CACHE_FILE).unwrap().is_none());
        std::fs::File::create(&p).unwrap().set_len(64 << 20).unwrap();
        assert!(Table::read(&d, CACHE_FILE).unwrap().is_none(), "zeros are not a cache");
    }
}
