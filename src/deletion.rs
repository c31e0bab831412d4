//! What `--delete` and `--mirror` may remove from a target folder, and the record that makes
//! `--delete` safe.
//!
//! `--delete` removes only copies an earlier run made from this source: each Maildir target
//! folder keeps `mailmover-copied`, one line per message mailmover copied there,
//! `HASH SOURCE-ID`. Mail that reached the target any other way (a delivery after the DNS
//! switch, another source) has no line and is never deleted by `--delete`. mbox targets keep no
//! record (a file beside the mbox would be listed by Dovecot as a mailbox), so `--delete`
//! deletes nothing there and says so. `--mirror` removes every target message no source
//! message matched.
//!
//! The record is data a mailbox owner can replace: it is read through the opened folder's
//! descriptor only from a regular file (never through a symlink, never a FIFO:
//! [`fsx::Dir::open_own_file`]) below a size bound, and its first line names the folder it was
//! written for ([`fsx::Dir::folder_id`]). A record copied from another
//! folder, or one written before records named their folder, is no record: `--delete` then
//! deletes nothing there, which errs on keeping mail.
//!
//! Neither deletes in a folder whose source had a read error (an unreadable `cur/` looks like
//! an empty folder), nor in a folder whose source has no message at all (a failed mount looks
//! the same) unless `--max-delete` bounds the damage.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::error::Problem;
use crate::fsx::{self, Owner};
use crate::message::Hash;
use crate::spill::{Sorted, Sorter, Spill};

pub const COPIED_FILE: &str = "mailmover-copied";
/// Version 2 names its folder: `mailmover-copied 2 DEV:INO PATH`.
const HEADER: &str = "mailmover-copied 2";
/// A line holds a hash and a source id (a folder's header line a path: up to 4,096 bytes,
/// each escaped to at most 4).
const MAX_LINE: u64 = 20 << 10;
/// A record bigger than this is not ours to trust (about 80 bytes a message: 100 million).
const MAX_RECORD_BYTES: u64 = 8 << 30;

/// Which target messages a sync may remove.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deletion {
    /// None.
    #[default]
    Off,
    /// Copies an earlier run made from this source, whose source message is gone (`--delete`).
    Copied,
    /// Every target message that no source message matched (`--mirror`).
    Mirror,
}

/// The run-wide cap of `--max-delete`: folders take their deletions from it, and a folder that
/// would overdraw it deletes nothing.
#[derive(Clone, Debug)]
pub struct Budget(Arc<AtomicU64>);

impl Budget {
    pub fn new(n: u64) -> Budget {
        Budget(Arc::new(AtomicU64::new(n)))
    }

    /// Takes `n` deletions, all or none.
    pub fn take(&self, n: u64) -> bool {
        self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(n)).is_ok()
    }
}

/// An identifier of a source folder: its path, hashed (records hold no paths of other people's
/// folders, and their lines stay short).
pub fn source_id(source: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let abs = source.canonicalize().unwrap_or_else(|_| source.to_path_buf());
    hex::encode(&Sha256::digest(abs.as_os_str().as_bytes())[..8])
}

/// The copies a target folder holds from one source, as a multiset of hashes, and the lines of
/// other sources (kept as they are). Both are sorted by hash, on disk past a bound
/// ([`crate::spill`]): a record of millions of lines costs no more memory than a small one.
/// Read only: what a run deletes or copies is given to [`Record::write_after`].
#[derive(Default)]
pub struct Record {
    /// This source's copies: a hash a line.
    ours: Sorted<Hash>,
    /// Other sources' lines.
    others: Sorted<Other>,
    /// Lines of this source when it was read.
    total: u64,
    /// The file existed and parsed: without it nothing is known to be a copy.
    pub found: bool,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Record {{ ours: {}, others: {}, found: {} }}", self.total, self.others.len(), self.found)
    }
}

/// Another source's line, as it was.
#[derive(Debug, Clone)]
struct Other {
    hash: Hash,
    line: String,
}

crate::ordered_by!(Other, hash, line);

impl Spill for Other {
    fn weight(&self) -> usize {
        self.line.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(self.line.as_bytes());
    }

    fn read(b: &[u8]) -> Option<Other> {
        let (hash, line) = b.split_first_chunk::<32>()?;
        Some(Other { hash: *hash, line: String::from_utf8(line.to_vec()).ok()? })
    }
}

/// How many times each hash is in a sorted list, asked for in increasing order.
pub(crate) struct CountsOf<I: Iterator<Item = std::io::Result<Hash>>> {
    it: std::iter::Peekable<I>,
}

impl<I: Iterator<Item = std::io::Result<Hash>>> CountsOf<I> {
    pub(crate) fn new(it: I) -> Self {
        CountsOf { it: it.peekable() }
    }

    /// The occurrences of `h` (each hash asked once, in increasing order).
    pub(crate) fn of(&mut self, h: &Hash) -> std::io::Result<u32> {
        let mut n = 0;
        loop {
            match self.it.peek() {
                Some(Ok(x)) if x < h => {}
                Some(Ok(x)) if x == h => n += 1,
                Some(Ok(_)) | None => return Ok(n),
                Some(Err(_)) => return self.it.next().map_or(Ok(n), |r| r.map(|_| n)),
            }
            self.it.next();
        }
    }
}

/// The hashes of the target messages that stay and of those deleted now, each sorted.
pub type Hashes<'h> =
    (&'h mut dyn Iterator<Item = std::io::Result<Hash>>, &'h mut dyn Iterator<Item = std::io::Result<Hash>>);

/// A target message deleted by a run: its hash and place in the folder's index.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub hash: Hash,
    pub idx: u64,
}

crate::ordered_by!(Deleted, hash, idx);

impl Spill for Deleted {
    fn weight(&self) -> usize {
        0
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.idx.to_le_bytes());
    }

    fn read(b: &[u8]) -> Option<Deleted> {
        let (hash, idx) = b.split_first_chunk::<32>()?;
        Some(Deleted { hash: *hash, idx: u64::from_le_bytes(idx.try_into().ok()?) })
    }
}

/// Decides, for the target messages no source message matched, taken in hash order (then
/// place), which the mode deletes: `--mirror` every one, `--delete` as many of each hash as
/// the record has lines for it, the first places first. The same messages in the same order
/// get the same answers, so a folder is counted in one pass and deleted in a second.
pub struct Chooser<'r> {
    mode: Deletion,
    counts: CountsOf<crate::spill::Merge<'r, Hash>>,
    last: Option<Hash>,
    left: u32,
}

impl<'r> Chooser<'r> {
    pub fn new(mode: Deletion, record: &'r Record) -> Chooser<'r> {
        Chooser { mode, counts: CountsOf::new(record.ours.iter()), last: None, left: 0 }
    }

    pub fn chosen(&mut self, h: &Hash) -> std::io::Result<bool> {
        match self.mode {
            Deletion::Off => Ok(false),
            Deletion::Mirror => Ok(true),
            Deletion::Copied => {
                if self.last != Some(*h) {
                    self.last = Some(*h);
                    self.left = self.counts.of(h)?;
                }
                let take = self.left > 0;
                self.left = self.left.saturating_sub(1);
                Ok(take)
            }
        }
    }
}

impl Record {
    /// Reads the record of the opened folder `dir`; a missing or garbled one is an empty record
    /// with `found` false, and so is a refused one, returned as `Err` with why (a symlink, FIFO
    /// or oversize file, or another folder's record).
    pub fn load(dir: &fsx::Dir, source: &str) -> Result<Record, Problem> {
        use std::io::BufRead;
        let path = dir.path.join(COPIED_FILE);
        let refused = |why: &str| Problem::new(&path, format!("{why}; not used (--delete deletes nothing here)"));
        let f = match dir.open_own_file(std::ffi::OsStr::new(COPIED_FILE), MAX_RECORD_BYTES) {
            Ok(Some((f, _))) => f,
            Ok(None) => return Ok(Record::default()),
            Err(e) => return Err(refused(&e.problem().reason)),
        };
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        let mut first = String::new();
        // Read a line at a time, each of bounded length: the text of a big record is never
        // held whole.
        if std::io::Read::take(&mut r, MAX_LINE).read_line(&mut first).is_err() {
            return Ok(Record::default());
        }
        let folder = dir.folder_id().unwrap_or_default();
        match first.trim_end_matches(['\n', '\r']) {
            h if h == record_header(&folder) => Ok(Record::parse_lines(r, source).unwrap_or_default()),
            h if h.starts_with(HEADER) => Err(refused("the record of another folder")),
            h if h.starts_with("mailmover-copied ") => {
                Err(refused("a record of an older version, which does not name its folder"))
            }
            _ => Ok(Record::default()),
        }
    }

    /// The lines after the header; `None` when one is not a line of a record (or they could not
    /// be sorted).
    fn parse_lines(mut r: impl std::io::BufRead, source: &str) -> Option<Record> {
        use std::io::BufRead;
        let (mut ours, mut others) = (Sorter::new(), Sorter::new());
        let mut line = String::new();
        loop {
            line.clear();
            let n = std::io::Read::take(&mut r, MAX_LINE).read_line(&mut line).ok()?;
            if n == 0 {
                break;
            }
            // A line longer than any of ours: not a record.
            if n as u64 == MAX_LINE && !line.ends_with('\n') {
                return None;
            }
            let l = line.trim_end_matches(['\n', '\r']);
            if l.is_empty() {
                continue;
            }
            let (h, id) = l.split_once(' ')?;
            let hash = crate::wire::unhex32(h.as_bytes())?;
            if id == source {
                ours.push(hash).ok()?;
            } else {
                others.push(Other { hash, line: l.to_string() }).ok()?;
            }
        }
        let ours = ours.sorted().ok()?;
        Some(Record { total: ours.len(), ours, others: others.sorted().ok()?, found: true })
    }

    #[cfg(test)]
    fn parse(text: &str, source: &str) -> Option<Record> {
        let mut lines = text.split_inclusive('\n');
        lines.next()?.strip_prefix(HEADER)?;
        Record::parse_lines(lines.collect::<String>().as_bytes(), source)
    }

    /// The copies recorded for other sources: hash and count, sorted by hash.
    pub fn others_by_hash(&self) -> std::io::Result<Vec<(Hash, u32)>> {
        let mut v: Vec<(Hash, u32)> = Vec::new();
        for o in self.others.iter() {
            let o = o?;
            match v.last_mut() {
                Some((h, n)) if *h == o.hash => *n += 1,
                _ => v.push((o.hash, 1)),
            }
        }
        Ok(v)
    }

    /// Lines of this source when the record was read.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The lines of this source that still stand for `staying` (the hashes of every target
    /// message that stays, sorted): a hash's lines, less the copies `gone` (sorted) deleted
    /// now, answer for as many staying messages.
    fn standing_lines(
        &self,
        (staying, gone): Hashes<'_>,
        each: &mut dyn FnMut(&Hash) -> std::io::Result<()>,
    ) -> std::io::Result<u64> {
        let mut counts = CountsOf::new(self.ours.iter());
        let mut gone = CountsOf::new(gone);
        let (mut n, mut last, mut left) = (0, None, 0u32);
        for h in staying {
            let h = h?;
            if last != Some(h) {
                last = Some(h);
                left = counts.of(&h)?.saturating_sub(gone.of(&h)?);
            }
            if left > 0 {
                left -= 1;
                n += 1;
                each(&h)?;
            }
        }
        Ok(n)
    }

    /// How many lines of this source [`Record::write_after`] would write with no copy made.
    pub fn standing(&self, hashes: Hashes<'_>) -> std::io::Result<u64> {
        self.standing_lines(hashes, &mut |_| Ok(()))
    }

    /// Writes the record of `folder` ([`fsx::folder_id`]) after a run, a line at a time: this
    /// source's copies still in the target (see [`Record::standing`]), the copies made now,
    /// then the other sources' lines as they were. Returns the number of this source's lines.
    pub fn write_after(
        &self,
        out: &mut dyn Write,
        folder: &str,
        source: &str,
        hashes: Hashes<'_>,
        copied: &mut dyn Iterator<Item = std::io::Result<Hash>>,
    ) -> std::io::Result<u64> {
        writeln!(out, "{}", record_header(folder))?;
        let line = |h: &Hash, out: &mut dyn Write| -> std::io::Result<()> {
            out.write_all(&crate::wire::hex32(h))?;
            writeln!(out, " {source}")
        };
        let mut ours = self.standing_lines(hashes, &mut |h| line(h, out))?;
        for h in copied {
            line(&h?, out)?;
            ours += 1;
        }
        for o in self.others.iter() {
            writeln!(out, "{}", o?.line)?;
        }
        Ok(ours)
    }

    /// Writes the record of the opened folder `folder` whole (temporary file, then rename), its
    /// lines from `fill`; a `fill` that says `false` leaves the old one.
    pub fn save_with(
        folder: &fsx::Dir,
        owner: Option<Owner>,
        durable: bool,
        fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<bool>,
    ) -> Result<(), Problem> {
        folder
            .write_atomic_with(COPIED_FILE, crate::store::maildir::write::FILE_MODE, owner, durable, fill)
            .map_err(|e| e.problem())
    }
}

fn record_header(folder: &str) -> String {
    format!("{HEADER} {folder}")
}

/// What a folder's source looked like, for the safety rules.
#[derive(Clone, Copy, Debug)]
pub struct SourceState {
    /// Messages (mail, not pseudo messages) read from the source folder.
    pub messages: u64,
    /// Any message or listing of the source folder failed to read.
    pub read_errors: bool,
    /// A filter (`--max-size`, `--min-age`, `--max-age`) left messages out: their copies would
    /// look unmatched.
    pub filtered: bool,
    /// The run stopped at a signal before the folder was read through.
    pub interrupted: bool,
}

/// Whether the safety rules let the mode delete in a folder with unmatched target messages
/// (`any`): `Err` with why not (`None`: nothing to say, as with no deletion asked for).
pub fn allowed(
    mode: Deletion,
    any: bool,
    record: &Record,
    src: SourceState,
    max_delete: Option<u64>,
) -> Result<(), Option<String>> {
    // Source messages not read yet match nothing: no deletion after a signal.
    if mode == Deletion::Off || !any || src.interrupted {
        return Err(None);
    }
    if src.filtered {
        return Err(Some(
            "--max-size, --min-age or --max-age left messages of this folder out: nothing deleted here".into(),
        ));
    }
    let flag = if mode == Deletion::Mirror { "--mirror" } else { "--delete" };
    if src.read_errors {
        return Err(Some(format!("the source folder had read errors: {flag} deleted nothing here")));
    }
    if src.messages == 0 && max_delete.is_none() {
        return Err(Some(format!(
            "the source folder has no messages (a failed mount looks the same): {flag} deleted nothing here; \
             give --max-delete N to allow it"
        )));
    }
    if mode == Deletion::Copied && !record.found {
        return Err(Some(format!(
            "no record of what earlier runs copied here ({COPIED_FILE}): --delete deleted nothing; \
             --mirror deletes every message the source does not have"
        )));
    }
    Ok(())
}

/// Picks from the target messages no source message matched (`unmatched`: place and hash) the
/// ones to delete, by the mode and the safety rules; a refusal says why. The places chosen,
/// in order.
pub fn choose(
    mode: Deletion,
    unmatched: &[(usize, Hash)],
    record: &Record,
    src: SourceState,
    max_delete: Option<u64>,
) -> (Vec<usize>, Option<String>) {
    if let Err(why) = allowed(mode, !unmatched.is_empty(), record, src, max_delete) {
        return (Vec::new(), why);
    }
    let mut by_hash = unmatched.to_vec();
    by_hash.sort_unstable_by_key(|&(i, h)| (h, i));
    let mut chooser = Chooser::new(mode, record);
    let mut chosen = Vec::new();
    for (i, h) in by_hash {
        match chooser.chosen(&h) {
            Ok(true) => chosen.push(i),
            Ok(false) => {}
            Err(e) => return (Vec::new(), Some(unreadable_record(&e))),
        }
    }
    chosen.sort_unstable();
    (chosen, None)
}

/// Why nothing is deleted when the record cannot be read back from its sorted runs.
pub fn unreadable_record(e: &std::io::Error) -> String {
    format!("the record of copies could not be read back ({}): nothing deleted here", crate::error::io_reason(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: SourceState = SourceState { messages: 3, read_errors: false, filtered: false, interrupted: false };

    fn record(lines: &[(u8, &str)]) -> Record {
        let mut t = String::from(HEADER);
        for (h, id) in lines {
            t.push_str(&format!("\n{} {id}", hex::encode([*h; 32])));
        }
        Record::parse(&t, "me").unwrap()
    }

    #[test]
    fn delete_takes_only_recorded_copies_of_this_source() {
        let r = record(&[(1, "me"), (2, "other"), (3, "me")]);
        let unmatched = [(0, [1u8; 32]), (1, [2u8; 32]), (2, [4u8; 32])];
        let (d, why) = choose(Deletion::Copied, &unmatched, &r, SRC, None);
        assert_eq!(d, vec![0]);
        assert!(why.is_none());
        let mut text = Vec::new();
        let ours = r
            .write_after(
                &mut text,
                "1:2 /f",
                "me",
                (&mut [Ok([3u8; 32]), Ok([4u8; 32])].into_iter(), &mut [Ok([1u8; 32])].into_iter()),
                &mut [Ok([5u8; 32])].into_iter(),
            )
            .unwrap();
        assert_eq!(ours, 2, "4 is no copy of ours");
        let again = Record::parse(&String::from_utf8(text).unwrap(), "me").unwrap();
        assert_eq!(again.ours.len(), 2, "the kept and the new copy");
        assert_eq!(again.others.len(), 1, "another source's line survives");
    }

    #[test]
    fn a_recorded_hash_answers_for_one_copy() {
        let r = record(&[(1, "me")]);
        let unmatched = [(1, [1u8; 32]), (0, [1u8; 32])];
        assert_eq!(choose(Deletion::Copied, &unmatched, &r, SRC, None).0, vec![0], "the first place first");
    }

    #[test]
    fn mirror_takes_everything_unmatched() {
        let unmatched = [(0, [1u8; 32]), (4, [2u8; 32])];
        assert_eq!(choose(Deletion::Mirror, &unmatched, &Record::default(), SRC, None).0, vec![0, 4]);
    }

    #[test]
    fn refusals() {
        let unmatched = [(0, [1u8; 32])];
        let r = record(&[(1, "me")]);
        let errs = SourceState { read_errors: true, ..SRC };
        for mode in [Deletion::Copied, Deletion::Mirror] {
            let (d, why) = choose(mode, &unmatched, &r, errs, Some(100));
            assert!(d.is_empty() && why.unwrap().contains("read errors"));
        }
        let empty = SourceState { messages: 0, ..SRC };
        let (d, why) = choose(Deletion::Mirror, &unmatched, &r, empty, None);
        assert!(d.is_empty() && why.unwrap().contains("--max-delete"));
        assert_eq!(choose(Deletion::Mirror, &unmatched, &r, empty, Some(1)).0, vec![0]);
        let (d, why) = choose(Deletion::Copied, &unmatched, &Record::default(), SRC, None);
        assert!(d.is_empty() && why.unwrap().contains(COPIED_FILE));
    }

    /// A record edited with CRLF line ends still reads; a line longer than any of ours (a file
    /// of zeros) makes it no record, without holding it whole.
    #[test]
    fn line_ends_and_long_lines() {
        let h = hex::encode([7u8; 32]);
        let r = Record::parse(&format!("{HEADER} x\r\n{h} me\r\n"), "me").unwrap();
        assert_eq!(r.total(), 1);
        let long = format!("{HEADER} x\n{h} {}\n", "m".repeat(MAX_LINE as usize));
        assert!(Record::parse(&long, "me").is_none());
    }

    #[test]
    fn garbage_is_no_record() {
        assert!(Record::parse("mailmover-copied 2 x\nzz me\n", "me").is_none());
        assert!(Record::parse("something else\n", "me").is_none());
        let tmp = tempfile::tempdir().unwrap();
        let dir = fsx::Dir::open_root(tmp.path()).unwrap();
        assert!(!Record::load(&dir, "me").unwrap().found);
        std::os::unix::fs::symlink("/dev/zero", tmp.path().join(COPIED_FILE)).unwrap();
        assert!(Record::load(&dir, "me").unwrap_err().reason.contains("symlink"));
    }

    /// Issue 18: the record is read through the opened folder. The folder swapped for a link
    /// to another folder (with a record of its own) after it was opened: the record read is
    /// still the opened folder's.
    #[test]
    fn the_record_is_read_through_the_opened_folder() {
        let t = tempfile::tempdir().unwrap();
        let (f, moved, other) = (t.path().join("f"), t.path().join("moved"), t.path().join("other"));
        std::fs::create_dir(&f).unwrap();
        std::fs::create_dir(&other).unwrap();
        let dir = fsx::Dir::open_root(&f).unwrap();
        std::fs::rename(&f, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &f).unwrap();
        // Each names the directory it is in (a folder's identity holds its path).
        for (d, h) in [(&moved, 1u8), (&other, 2)] {
            let mut text = Vec::new();
            let folder = fsx::folder_id(d).unwrap();
            Record::default()
                .write_after(
                    &mut text,
                    &folder,
                    "me",
                    (&mut std::iter::empty(), &mut std::iter::empty()),
                    &mut [Ok([h; 32])].into_iter(),
                )
                .unwrap();
            std::fs::write(d.join(COPIED_FILE), text).unwrap();
        }
        let r = Record::load(&dir, "me").unwrap();
        let unmatched = [(0, [1; 32]), (1, [2; 32])];
        let chosen = choose(Deletion::Copied, &unmatched, &r, SRC, None).0;
        assert_eq!(chosen, vec![0], "the opened folder's record, and it names that folder");
    }

    /// Issue 18: a record names its folder; another folder's record, or one that names none,
    /// is not used (nothing is deleted by it).
    #[test]
    fn a_record_is_used_only_in_its_own_folder() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut text = Vec::new();
        let folder = fsx::folder_id(a.path()).unwrap();
        Record::default()
            .write_after(
                &mut text,
                &folder,
                "me",
                (&mut std::iter::empty(), &mut std::iter::empty()),
                &mut [Ok([1u8; 32])].into_iter(),
            )
            .unwrap();
        std::fs::write(a.path().join(COPIED_FILE), &text).unwrap();
        std::fs::write(b.path().join(COPIED_FILE), &text).unwrap();
        let (da, db) = (fsx::Dir::open_root(a.path()).unwrap(), fsx::Dir::open_root(b.path()).unwrap());
        assert_eq!(Record::load(&da, "me").unwrap().total(), 1);
        let e = Record::load(&db, "me").unwrap_err();
        assert!(e.reason.contains("another folder"), "{e}");
        let old = format!("mailmover-copied 1\n{} me\n", hex::encode([1u8; 32]));
        std::fs::write(b.path().join(COPIED_FILE), old).unwrap();
        assert!(Record::load(&db, "me").unwrap_err().reason.contains("older version"));
    }

    #[test]
    fn budget_is_all_or_nothing() {
        let b = Budget::new(5);
        assert!(b.take(3));
        assert!(!b.take(3));
        assert!(b.take(2));
        assert!(!b.take(1));
    }

    proptest::proptest! {
        /// Through sorted runs of any size, the record answers as a multiset of hashes: a
        /// hash's lines, less the copies deleted, stand for as many staying messages; counting
        /// them writes nothing; the record written reads back with those lines, the new copies
        /// and the other sources' lines.
        #[test]
        fn the_record_is_a_multiset_of_hashes(
            lines in proptest::collection::vec((0u8..8, proptest::prelude::any::<bool>()), 0..30),
            staying in proptest::collection::vec(0u8..8, 0..30),
            gone in proptest::collection::vec(0u8..8, 0..6),
            copied in proptest::collection::vec(0u8..8, 0..6),
        ) {
            let mut text = String::from(HEADER);
            for (b, mine) in &lines {
                text.push_str(&format!("\n{} {}", hex::encode([*b; 32]), if *mine { "me" } else { "other" }));
            }
            let rec = Record::parse(&text, "me").unwrap();
            let count = |v: &[u8], b: u8| v.iter().filter(|x| **x == b).count();
            let mine: Vec<u8> = lines.iter().filter(|(_, m)| *m).map(|(b, _)| *b).collect();
            let mut staying_h: Vec<Hash> = staying.iter().map(|b| [*b; 32]).collect();
            staying_h.sort_unstable();
            let mut gone_h: Vec<Hash> = gone.iter().map(|b| [*b; 32]).collect();
            gone_h.sort_unstable();
            let want: usize = (0u8..8)
                .map(|b| count(&mine, b).saturating_sub(count(&gone, b)).min(count(&staying, b)))
                .sum();
            let counted = rec.standing((&mut staying_h.iter().map(|h| Ok(*h)), &mut gone_h.iter().map(|h| Ok(*h)))).unwrap();
            proptest::prop_assert_eq!(counted, want as u64);
            let mut out = Vec::new();
            let copied_h: Vec<Hash> = { let mut v: Vec<Hash> = copied.iter().map(|b| [*b; 32]).collect(); v.sort_unstable(); v };
            let kept = rec
                .write_after(&mut out, "f", "me", (&mut staying_h.iter().map(|h| Ok(*h)), &mut gone_h.iter().map(|h| Ok(*h))), &mut copied_h.iter().map(|h| Ok(*h)))
                .unwrap();
            proptest::prop_assert_eq!(kept, (want + copied.len()) as u64);
            let text = String::from_utf8(out).unwrap().replacen("mailmover-copied 2 f", HEADER, 1);
            let again = Record::parse(&text, "me").unwrap();
            proptest::prop_assert_eq!(again.total(), kept);
            proptest::prop_assert_eq!(again.others.len(), (lines.len() - mine.len()) as u64);
            // --delete answers with as many unmatched places per hash as there are lines.
            let unmatched: Vec<(usize, Hash)> = staying.iter().enumerate().map(|(i, b)| (i, [*b; 32])).collect();
            let src = SourceState { messages: 1, read_errors: false, filtered: false, interrupted: false };
            let chosen = choose(Deletion::Copied, &unmatched, &rec, src, None).0;
            let want_chosen: usize = (0u8..8).map(|b| count(&mine, b).min(count(&staying, b))).sum();
            proptest::prop_assert_eq!(chosen.len(), if lines.is_empty() && staying.is_empty() { 0 } else { want_chosen });
        }
    }
}
