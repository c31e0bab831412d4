//! A folder's messages in source order in bounded memory, for targets written in order (an
//! mbox) and for names and UIDs that follow the source: the UIDs of the folder's
//! `dovecot-uidlist` when it has one (the order its IMAP clients know), the messages it does
//! not list after them, in name order (new/ then cur/). Entries are sorted in runs; once a folder has more than one run, each
//! sorted run goes to an unlinked file in the temporary directory and the runs are merged
//! as the listing is read, so memory stays the same for 5,000 or 5,000,000 messages.

use std::collections::BTreeSet;
use std::path::Path;

use super::keywords::KeywordMap;
use super::read::{MaildirEntry, MessageStream, ScanOptions, Sub, entry};
use super::uidlist::{SourceUids, read_source};
use crate::error::{Error, Problem, Result, io_reason};
use crate::spill::{Sorted, Sorter, Spill};

pub struct Listing {
    kw: KeywordMap,
    dir: std::path::PathBuf,
    sorted: Sorted<Listed>,
    /// Names of files listed twice (renamed while the folder was listed), but the first.
    again: std::collections::HashSet<(Sub, Vec<u8>)>,
    pub count: u64,
    pub bytes: u64,
    /// Every keyword the folder's messages carry.
    pub keywords: BTreeSet<String>,
}

/// What a listed entry keeps while sorted (its flags and keywords come back from its name).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    /// Its UID in the folder's uidlist; [`UNLISTED`] for none (0 until the uidlist is read).
    uid: u64,
    sub: Sub,
    name: Vec<u8>,
    size: u64,
    secs: i64,
    mtime_ns: i64,
    ino: u64,
}

impl Spill for Listed {
    fn weight(&self) -> usize {
        self.name.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.push(self.sub as u8);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.secs.to_le_bytes());
        out.extend_from_slice(&self.mtime_ns.to_le_bytes());
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&self.name);
    }

    fn read(b: &[u8]) -> Option<Listed> {
        let uid = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let (&sub, b) = b.get(8..)?.split_first()?;
        let word = |i: usize| b.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok());
        Some(Listed {
            uid,
            sub: if sub == Sub::New as u8 { Sub::New } else { Sub::Cur },
            size: u64::from_le_bytes(word(0)?),
            secs: i64::from_le_bytes(word(8)?),
            mtime_ns: i64::from_le_bytes(word(16)?),
            ino: u64::from_le_bytes(word(24)?),
            name: b.get(32..)?.to_vec(),
        })
    }
}

/// The order key of a message the folder's uidlist does not list: after every UID.
const UNLISTED: u64 = u64::MAX;

/// A listed entry by its base name (its name without the `:2,` info), to be joined with the
/// uidlist, which lists base names.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ByBase {
    base: Vec<u8>,
    entry: Listed,
}

impl Spill for ByBase {
    fn weight(&self) -> usize {
        self.base.len() + self.entry.weight()
    }

    fn write(&self, out: &mut Vec<u8>) {
        crate::wire::put_bytes(out, &self.base);
        self.entry.write(out);
    }

    fn read(b: &[u8]) -> Option<ByBase> {
        let (base, b) = crate::wire::take_bytes(b)?;
        Some(ByBase { base: base.to_vec(), entry: Listed::read(b)? })
    }
}

/// `sorted` in the order of `uids` (each listed base name gives its UID to the first of its
/// files), the unlisted after, in the order they had.
fn in_uid_order(sorted: Sorted<Listed>, uids: &SourceUids, budget: usize) -> std::io::Result<Sorted<Listed>> {
    let mut by_base = Sorter::with_budget(budget);
    for l in sorted.iter() {
        let l = l?;
        let base = l.name.split(|&b| b == b':').next().unwrap_or_default().to_vec();
        by_base.push(ByBase { base, entry: l })?;
    }
    let mut listed = uids.by_base().peekable();
    let mut out = Sorter::with_budget(budget);
    for b in by_base.sorted()?.iter() {
        let ByBase { base, mut entry } = b?;
        while let Some(x) = listed.next_if(|x| x.as_ref().map_or(true, |(lb, _)| *lb < base)) {
            x?;
        }
        let hit = listed.next_if(|x| x.as_ref().is_ok_and(|(lb, _)| *lb == base)).transpose()?;
        entry.uid = hit.map_or(UNLISTED, |(_, uid)| u64::from(uid));
        out.push(entry)?;
    }
    out.sorted()
}

/// A listed file by its identity: a file renamed while the folder was listed shows up under
/// two names with one inode, size and mtime (two files of one base name are two messages).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Inode {
    id: (u64, u64, i64),
    sub: Sub,
    name: Vec<u8>,
}

impl Spill for Inode {
    fn weight(&self) -> usize {
        self.name.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0.to_le_bytes());
        out.extend_from_slice(&self.id.1.to_le_bytes());
        out.extend_from_slice(&self.id.2.to_le_bytes());
        out.push(self.sub as u8);
        out.extend_from_slice(&self.name);
    }

    fn read(b: &[u8]) -> Option<Inode> {
        let word = |i: usize| b.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok());
        let sub = if *b.get(24)? == Sub::New as u8 { Sub::New } else { Sub::Cur };
        Some(Inode {
            id: (u64::from_le_bytes(word(0)?), u64::from_le_bytes(word(8)?), i64::from_le_bytes(word(16)?)),
            sub,
            name: b.get(25..)?.to_vec(),
        })
    }
}

impl Listing {
    /// Lists `dir`; unreadable entries go to `problems`. Fails only if a run cannot be spilled.
    pub fn build(dir: &Path, kw: &KeywordMap, scan: ScanOptions, problems: &mut Vec<Problem>) -> Result<Listing> {
        Listing::build_with(dir, kw, scan, problems, Sorter::new())
    }

    fn build_with(
        dir: &Path,
        kw: &KeywordMap,
        scan: ScanOptions,
        problems: &mut Vec<Problem>,
        mut sorter: Sorter<Listed>,
    ) -> Result<Listing> {
        let spilled =
            |e: std::io::Error| Error::bad(dir, format!("the folder listing could not be sorted: {}", io_reason(&e)));
        let (mut count, mut bytes, mut keywords) = (0, 0, BTreeSet::new());
        let mut inodes = Sorter::with_budget(sorter.budget());
        for r in MessageStream::new(dir, kw.clone(), scan) {
            match r {
                Ok(e) => {
                    if e.ino != 0 {
                        let id = Inode { id: (e.ino, e.size, e.mtime_ns), sub: e.sub, name: e.name.clone() };
                        inodes.push(id).map_err(spilled)?;
                    }
                    count += 1;
                    bytes += e.size;
                    // As an mbox holds them (the listing's keywords go into X-IMAPbase).
                    for k in e.meta.mbox_view().keywords.iter() {
                        if !keywords.contains(k) {
                            keywords.insert(k.to_string());
                        }
                    }
                    let l = Listed {
                        uid: 0,
                        sub: e.sub,
                        size: e.size,
                        secs: e.meta.date,
                        mtime_ns: e.mtime_ns,
                        ino: e.ino,
                        name: e.name,
                    };
                    sorter.push(l).map_err(spilled)?;
                }
                Err(p) => problems.push(p),
            }
        }
        // Each file once, under its first name in the listing's order.
        let mut again = std::collections::HashSet::new();
        let mut last: Option<(u64, u64, i64)> = None;
        for i in inodes.sorted().map_err(spilled)?.iter() {
            let i = i.map_err(spilled)?;
            if last == Some(i.id) {
                again.insert((i.sub, i.name));
                count -= 1;
                bytes -= i.id.1;
            }
            last = Some(i.id);
        }
        let budget = sorter.budget();
        let mut sorted = sorter.sorted().map_err(spilled)?;
        if let Some(uids) = read_source(dir) {
            sorted = in_uid_order(sorted, &uids, budget).map_err(spilled)?;
        }
        Ok(Listing { kw: kw.clone(), dir: dir.to_path_buf(), sorted, again, count, bytes, keywords })
    }

    /// The entries in order. A spilled run that cannot be read back yields one problem and
    /// ends there (its messages are then missing from the run's report, never silently).
    pub fn iter(&self) -> Box<dyn Iterator<Item = Result<MaildirEntry, Problem>> + Send + '_> {
        let again =
            |l: &std::io::Result<Listed>| l.as_ref().is_ok_and(|l| self.again.contains(&(l.sub, l.name.clone())));
        Box::new(self.sorted.iter().filter(move |l| self.again.is_empty() || !again(l)).map(|r| match r {
            Ok(l) => {
                let mut e = entry(l.sub, l.name, l.size, l.secs, 0, &self.kw);
                e.mtime_ns = l.mtime_ns;
                e.ino = l.ino;
                e.uid = u32::try_from(l.uid).ok().filter(|&u| u > 0);
                Ok(e)
            }
            Err(err) => Err(Problem::new(
                &self.dir,
                format!("the sorted folder listing could not be read back: {}", io_reason(&err)),
            )),
        }))
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

    /// With a `dovecot-uidlist`, the listing follows its UIDs (whatever the names say), a base
    /// name listed once gives its UID to one file, and files it does not list come after, in
    /// name order; spilled or not.
    #[test]
    fn a_uidlist_gives_the_order() {
        let d = tempfile::tempdir().unwrap();
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir(d.path().join(s)).unwrap();
        }
        for (sub, name) in [("cur", "3.c:2,S"), ("cur", "1.a:2,"), ("new", "2.b"), ("new", "0.z"), ("cur", "4.d:2,S")] {
            std::fs::write(d.path().join(sub).join(name), name).unwrap();
        }
        std::fs::write(d.path().join("dovecot-uidlist"), "3 V7 N20\n5 :3.c\n9 :1.a\n12 :2.b\n15 :gone\n").unwrap();
        let kw = KeywordMap::default();
        for budget in [1, 1 << 20] {
            let l = Listing::build_with(
                d.path(),
                &kw,
                ScanOptions::default(),
                &mut Vec::new(),
                Sorter::with_budget(budget),
            )
            .unwrap();
            let got: Vec<(String, Option<u32>)> =
                l.iter().map(|e| e.unwrap()).map(|e| (String::from_utf8(e.name).unwrap(), e.uid)).collect();
            let want = [("3.c:2,S", Some(5)), ("1.a:2,", Some(9)), ("2.b", Some(12)), ("0.z", None), ("4.d:2,S", None)];
            assert_eq!(got, want.map(|(n, u)| (n.to_string(), u)), "budget {budget}");
        }
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
        let whole = Listing::build_with(d.path(), &kw, ScanOptions::default(), &mut probs, Sorter::new()).unwrap();
        for run in [1, 2, 10, 256, 257, 1 << 20] {
            let l =
                Listing::build_with(d.path(), &kw, ScanOptions::default(), &mut probs, Sorter::with_budget(run * 100))
                    .unwrap();
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
