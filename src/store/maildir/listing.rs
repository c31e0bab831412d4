//! A folder's messages in name order (new/ then cur/) in bounded memory, for targets written
//! in order (an mbox). Entries are sorted in runs; once a folder has more than one run, each
//! sorted run goes to an unlinked file in the temporary directory and the runs are merged
//! as the listing is read, so memory stays the same for 5,000 or 5,000,000 messages.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::keywords::KeywordMap;
use super::read::{MaildirEntry, MessageStream, ScanOptions, Sub, entry};
use crate::error::{Error, Problem, Result, io_reason};

/// Entries sorted in memory at a time (a few MB).
const RUN_ENTRIES: usize = 32 * 1024;
const READ_BUF: usize = 64 * 1024;
/// sub, size, mtime (s), mtime (ns), name length, inode.
const HEADER: usize = 1 + 8 + 8 + 8 + 4 + 8;

pub struct Listing {
    kw: KeywordMap,
    /// The last run, sorted (the whole listing when nothing was spilled).
    tail: Vec<MaildirEntry>,
    spill: Option<Spill>,
    pub count: u64,
    pub bytes: u64,
    /// Every keyword the folder's messages carry.
    pub keywords: BTreeSet<String>,
}

struct Spill {
    file: File,
    dir: PathBuf,
    /// Byte ranges of the sorted runs.
    runs: Vec<(u64, u64)>,
    len: u64,
}

fn order(a: &MaildirEntry, b: &MaildirEntry) -> Ordering {
    (a.sub, &a.name).cmp(&(b.sub, &b.name))
}

impl Listing {
    /// Lists `dir`; unreadable entries go to `problems`. Fails only if a run cannot be spilled.
    pub fn build(dir: &Path, kw: &KeywordMap, scan: ScanOptions, problems: &mut Vec<Problem>) -> Result<Listing> {
        Listing::build_with(dir, kw, scan, problems, RUN_ENTRIES)
    }

    fn build_with(
        dir: &Path,
        kw: &KeywordMap,
        scan: ScanOptions,
        problems: &mut Vec<Problem>,
        run: usize,
    ) -> Result<Listing> {
        let mut l =
            Listing { kw: kw.clone(), tail: Vec::new(), spill: None, count: 0, bytes: 0, keywords: BTreeSet::new() };
        for r in MessageStream::new(dir, kw.clone(), scan) {
            match r {
                Ok(e) => {
                    l.count += 1;
                    l.bytes += e.size;
                    for k in e.meta.keywords.iter() {
                        if !l.keywords.contains(k) {
                            l.keywords.insert(k.to_string());
                        }
                    }
                    l.tail.push(e);
                    if l.tail.len() >= run {
                        l.spill_tail()?;
                    }
                }
                Err(p) => problems.push(p),
            }
        }
        l.tail.sort_unstable_by(order);
        Ok(l)
    }

    fn spill_tail(&mut self) -> Result<()> {
        self.tail.sort_unstable_by(order);
        if self.spill.is_none() {
            let dir = std::env::temp_dir();
            let file = tempfile::tempfile_in(&dir).map_err(|e| Error::Io { path: dir.clone(), source: e })?;
            self.spill = Some(Spill { file, dir, runs: Vec::new(), len: 0 });
        }
        let Some(s) = self.spill.as_mut() else { return Ok(()) };
        let start = s.len;
        let mut w = BufWriter::with_capacity(READ_BUF, &s.file);
        let mut n = 0u64;
        for e in self.tail.drain(..) {
            let name_len = u32::try_from(e.name.len()).unwrap_or(u32::MAX);
            w.write_all(&[e.sub as u8])
                .and_then(|()| w.write_all(&e.size.to_le_bytes()))
                .and_then(|()| w.write_all(&e.meta.date.to_le_bytes()))
                .and_then(|()| w.write_all(&e.mtime_ns.to_le_bytes()))
                .and_then(|()| w.write_all(&name_len.to_le_bytes()))
                .and_then(|()| w.write_all(&e.ino.to_le_bytes()))
                .and_then(|()| w.write_all(&e.name[..name_len as usize]))
                .map_err(|err| Error::Io { path: s.dir.clone(), source: err })?;
            n += (HEADER + name_len as usize) as u64;
        }
        w.flush().map_err(|err| Error::Io { path: s.dir.clone(), source: err })?;
        s.len += n;
        s.runs.push((start, s.len));
        Ok(())
    }

    /// The entries in order. A spilled run that cannot be read back yields one problem and
    /// ends there (its messages are then missing from the run's report, never silently).
    pub fn iter(&self) -> Box<dyn Iterator<Item = Result<MaildirEntry, Problem>> + Send + '_> {
        let Some(s) = &self.spill else {
            return Box::new(self.tail.iter().cloned().map(Ok));
        };
        let mut sources: Vec<Source<'_>> = s
            .runs
            .iter()
            .map(|&(start, end)| Source::Run(RunReader { file: &s.file, pos: start, end, buf: Vec::new(), at: 0 }))
            .collect();
        sources.push(Source::Mem(self.tail.iter()));
        let mut m = Merge { sources, heap: BinaryHeap::new(), kw: &self.kw, dir: &s.dir, failed: Vec::new() };
        for i in 0..m.sources.len() {
            m.refill(i);
        }
        Box::new(m)
    }
}

enum Source<'a> {
    Run(RunReader<'a>),
    Mem(std::slice::Iter<'a, MaildirEntry>),
}

struct RunReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

/// A decoded record: sub, size, mtime (s), mtime (ns), name, inode.
type Record = (Sub, u64, i64, i64, Vec<u8>, u64);

impl RunReader<'_> {
    /// Makes at least `n` unread bytes available, unless the run ends first.
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        if self.buf.len() - self.at >= n {
            return Ok(true);
        }
        self.buf.drain(..self.at);
        self.at = 0;
        while self.buf.len() < n && self.pos < self.end {
            let want = (self.end - self.pos).min(READ_BUF.max(n) as u64) as usize;
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let got = self.file.read_at(&mut self.buf[old..], self.pos)?;
            self.buf.truncate(old + got);
            if got == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "sort run ended early"));
            }
            self.pos += got as u64;
        }
        Ok(self.buf.len() >= n)
    }

    fn next(&mut self) -> std::io::Result<Option<Record>> {
        if !self.fill(HEADER)? {
            return Ok(None);
        }
        let h = &self.buf[self.at..self.at + HEADER];
        let word = |i: usize| <[u8; 8]>::try_from(&h[i..i + 8]).unwrap_or_default();
        let sub = if h[0] == Sub::New as u8 { Sub::New } else { Sub::Cur };
        let size = u64::from_le_bytes(word(1));
        let secs = i64::from_le_bytes(word(9));
        let ns = i64::from_le_bytes(word(17));
        let len = u32::from_le_bytes(<[u8; 4]>::try_from(&h[25..29]).unwrap_or_default()) as usize;
        let ino = u64::from_le_bytes(word(29));
        if !self.fill(HEADER + len)? {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "sort run ended early"));
        }
        let name = self.buf[self.at + HEADER..self.at + HEADER + len].to_vec();
        self.at += HEADER + len;
        Ok(Some((sub, size, secs, ns, name, ino)))
    }
}

struct Head {
    e: MaildirEntry,
    src: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    /// Reversed: `BinaryHeap` is a max-heap and the merge wants the smallest name first.
    fn cmp(&self, o: &Self) -> Ordering {
        order(&o.e, &self.e).then(o.src.cmp(&self.src))
    }
}

struct Merge<'a> {
    sources: Vec<Source<'a>>,
    heap: BinaryHeap<Head>,
    kw: &'a KeywordMap,
    dir: &'a Path,
    failed: Vec<Problem>,
}

impl Merge<'_> {
    fn refill(&mut self, i: usize) {
        let next = match &mut self.sources[i] {
            Source::Mem(it) => it.next().cloned(),
            Source::Run(r) => match r.next() {
                Ok(Some((sub, size, secs, ns, name, ino))) => {
                    let mut e = entry(sub, name, size, secs, 0, self.kw);
                    e.mtime_ns = ns;
                    e.ino = ino;
                    Some(e)
                }
                Ok(None) => None,
                Err(err) => {
                    self.failed.push(Problem::new(
                        self.dir,
                        format!("the sorted folder listing could not be read back: {}", io_reason(&err)),
                    ));
                    None
                }
            },
        };
        if let Some(e) = next {
            self.heap.push(Head { e, src: i });
        }
    }
}

impl Iterator for Merge<'_> {
    type Item = Result<MaildirEntry, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(p) = self.failed.pop() {
            return Some(Err(p));
        }
        let h = self.heap.pop()?;
        self.refill(h.src);
        Some(Ok(h.e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(l: &Listing) -> Vec<(Sub, Vec<u8>, u64, i64, i64)> {
        l.iter()
            .map(|r| {
                let e = r.unwrap();
                (e.sub, e.name, e.size, e.meta.date, e.mtime_ns)
            })
            .collect()
    }

    #[test]
    fn spilled_runs_merge_into_the_in_memory_order() {
        let d = tempfile::tempdir().unwrap();
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir(d.path().join(s)).unwrap();
        }
        std::fs::write(d.path().join("dovecot-keywords"), "0 $Junk\n1 work\n").unwrap();
        // Deterministic but scrambled names, in both subdirectories, some with keywords.
        for i in 0..257u64 {
            let k = (i * 7919) % 1000;
            let (sub, info) = match i % 3 {
                0 => ("new", String::new()),
                1 => ("cur", ":2,S".to_string()),
                _ => ("cur", ":2,Sab".to_string()),
            };
            let p = d.path().join(sub).join(format!("{}.M{k}P1.host,S={}{info}", 1_600_000_000 + k, i + 1));
            std::fs::write(&p, vec![b'x'; i as usize + 1]).unwrap();
            let t = filetime::FileTime::from_unix_time(1_600_000_000 + k as i64, (i * 1000) as u32);
            filetime::set_file_mtime(&p, t).unwrap();
        }
        let kw = KeywordMap::parse(b"0 $Junk\n1 work\n");
        let mut probs = Vec::new();
        let whole = Listing::build_with(d.path(), &kw, ScanOptions::default(), &mut probs, usize::MAX).unwrap();
        assert!(whole.spill.is_none());
        for run in [1, 2, 10, 256, 257] {
            let l = Listing::build_with(d.path(), &kw, ScanOptions::default(), &mut probs, run).unwrap();
            assert_eq!(l.spill.is_some(), run <= 257, "run {run}");
            assert_eq!(names(&l), names(&whole), "run {run}");
            assert_eq!((l.count, l.bytes), (257, (1..=257).sum::<u64>()));
            assert_eq!(l.keywords.iter().map(String::as_str).collect::<Vec<_>>(), ["$Junk", "work"]);
            let kws: Vec<usize> = l.iter().map(|e| e.unwrap().meta.keywords.iter().count()).collect();
            assert_eq!(kws.iter().filter(|&&k| k == 2).count(), 85);
        }
        assert!(probs.is_empty());
        let w = names(&whole);
        assert!(w.windows(2).all(|p| (p[0].0, &p[0].1) < (p[1].0, &p[1].1)));
        assert_eq!(w[0].0, Sub::New);
    }
}
