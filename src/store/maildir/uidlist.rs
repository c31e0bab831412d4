//! Dovecot's `dovecot-uidlist` for a folder mailmover filled (FORMATS.md §6.1).
//!
//! Dovecot numbers files it finds without a record by name (date first), so messages copied
//! in source order would get UIDs in date order, and a moved folder would get a new
//! UIDVALIDITY: every IMAP client would fetch it all again. Written before Dovecot first opens
//! the folder, a uidlist is taken as it is. A folder filled from empty gets one: when the
//! source folder has a `dovecot-uidlist` of its own, its UIDVALIDITY and each message's UID
//! and fields (GUID, POP3 UIDL and order, sizes) are carried to the copy's new name; messages
//! it does not list get UIDs after its next UID, in source order. Else UIDs follow the source
//! order. A folder that has a uidlist already is never given one (its UIDs are Dovecot's, or
//! a client's memory of them), and one that appears while mailmover writes is left alone.
//! Everything goes through sorted runs ([`crate::spill`]): memory stays flat whatever the
//! folder's size.

use std::ffi::OsStr;
use std::io::{BufRead, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::error::{At, Result};
use crate::fsx::{Dir, Owner};
use crate::spill::{Sorted, Sorter, Spill};
use crate::wire::{put_bytes, put_u64, take_bytes, take_u64};

pub const UIDLIST: &str = "dovecot-uidlist";
const LOCK: &str = "dovecot-uidlist.lock";
/// A record longer than this is not one Dovecot wrote: skipped.
const MAX_LINE: usize = 64 << 10;

/// A message of a source folder's uidlist: its base name, UID and other fields.
#[derive(Clone, Debug)]
struct Listed {
    base: Vec<u8>,
    uid: u64,
    fields: Vec<u8>,
}

crate::ordered_by!(Listed, base, uid);

impl Spill for Listed {
    fn weight(&self) -> usize {
        self.base.len() + self.fields.len() + 64
    }
    fn write(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.base);
        put_u64(out, self.uid);
        put_bytes(out, &self.fields);
    }
    fn read(b: &[u8]) -> Option<Listed> {
        let (base, b) = take_bytes(b)?;
        let (uid, b) = take_u64(b)?;
        let (fields, b) = take_bytes(b)?;
        b.is_empty().then(|| Listed { base: base.to_vec(), uid, fields: fields.to_vec() })
    }
}

/// The IMAP state of a source folder: a Maildir's `dovecot-uidlist`, or a Dovecot mbox's
/// `X-IMAPbase` (its messages carry their UIDs themselves).
pub struct SourceUids {
    validity: u32,
    next: u64,
    listed: Option<Sorted<Listed>>,
}

impl SourceUids {
    /// A Dovecot mbox's UIDVALIDITY and last UID.
    pub fn of_mbox(validity: u32, last_uid: u32) -> SourceUids {
        SourceUids { validity, next: u64::from(last_uid) + 1, listed: None }
    }

    pub fn validity(&self) -> u32 {
        self.validity
    }

    /// The last UID given out (the next one less one, at least the highest listed).
    pub fn last_uid(&self) -> u32 {
        u32::try_from(self.next.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// The listed messages as (base name, UID), sorted by base name (then UID).
    pub fn by_base(&self) -> impl Iterator<Item = std::io::Result<(Vec<u8>, u32)>> + '_ {
        self.listed.iter().flat_map(|l| l.iter()).map(|x| x.map(|x| (x.base, x.uid as u32)))
    }
}

/// Opens the `dovecot-uidlist` of the source folder `dir` and reads its header: the reader
/// at the first record, UIDVALIDITY and the next UID.
fn open_source(dir: &Path) -> Option<(std::io::BufReader<std::fs::File>, u32, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(UIDLIST))
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut r = std::io::BufReader::new(f);
    let (validity, next) = header(&mut r)?;
    Some((r, validity, next))
}

/// UIDVALIDITY and next UID from the first line of a uidlist (version 3), when Dovecot would
/// take it.
fn header(r: &mut impl BufRead) -> Option<(u32, u64)> {
    let mut line = Vec::new();
    r.take(MAX_LINE as u64).read_until(b'\n', &mut line).ok()?;
    let header = std::str::from_utf8(&line).ok()?;
    let mut words = header.split_ascii_whitespace();
    if words.next() != Some("3") {
        return None;
    }
    // UIDs are 32-bit to Dovecot: a larger one makes it throw the list away.
    let (mut validity, mut next) = (0u32, 0u64);
    for w in words {
        if let Some(v) = w.strip_prefix('V') {
            validity = v.parse().ok()?;
        } else if let Some(n) = w.strip_prefix('N') {
            next = u64::from(n.parse::<u32>().ok()?);
        }
    }
    (validity != 0 && next != 0).then_some((validity, next))
}

/// The UIDVALIDITY of the `dovecot-uidlist` of a target folder, read through the opened
/// folder; `None` when it has none Dovecot would take.
pub fn validity_in(dir: &Dir) -> Option<u32> {
    let (f, _) = dir.open_own_file(OsStr::new(UIDLIST), u64::MAX).ok()??;
    header(&mut std::io::BufReader::new(f)).map(|h| h.0)
}

/// The UIDVALIDITY and last UID (next less one) the `dovecot-uidlist` of the source folder
/// `dir` states in its header, when it is one Dovecot would take.
pub fn source_header(dir: &Path) -> Option<(u32, u32)> {
    let (_, validity, next) = open_source(dir)?;
    Some((validity, u32::try_from(next - 1).unwrap_or(u32::MAX)))
}

/// Reads the `dovecot-uidlist` of the source folder `dir` (version 3, as Dovecot writes it):
/// `None` when there is none, or it is not one Dovecot would take. Never through a link, never
/// from a FIFO.
pub fn read_source(dir: &Path) -> Option<SourceUids> {
    let (mut r, validity, mut next) = open_source(dir)?;
    let mut line = Vec::new();
    let mut listed = Sorter::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return None,
        }
        if line.len() > MAX_LINE {
            continue;
        }
        let l = line.strip_suffix(b"\n").unwrap_or(&line);
        let Some(colon) = memchr::memmem::find(l, b" :") else { continue };
        let (head, base) = (&l[..colon], &l[colon + 2..]);
        let mut parts = head.splitn(2, |&b| b == b' ');
        let Some(uid) = parts.next().and_then(|u| std::str::from_utf8(u).ok()?.parse::<u32>().ok()) else { continue };
        if uid == 0 || uid == u32::MAX || base.is_empty() {
            continue;
        }
        let uid = u64::from(uid);
        let fields = parts.next().unwrap_or_default().to_vec();
        listed.push(Listed { base: base.to_vec(), uid, fields }).ok()?;
        next = next.max(uid + 1);
    }
    Some(SourceUids { validity, next, listed: Some(listed.sorted().ok()?) })
}

/// A message copied into the folder: the base name of its source file (empty: not a Maildir
/// file), the UID the source message carried (0: none), its place in the source, and its new
/// base name.
#[derive(Clone, Debug)]
struct Copy {
    source: Vec<u8>,
    uid: u64,
    order: u64,
    base: Vec<u8>,
}

crate::ordered_by!(Copy, source, order);

impl Spill for Copy {
    fn weight(&self) -> usize {
        self.source.len() + self.base.len() + 64
    }
    fn write(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.source);
        put_u64(out, self.uid);
        put_u64(out, self.order);
        put_bytes(out, &self.base);
    }
    fn read(b: &[u8]) -> Option<Copy> {
        let (source, b) = take_bytes(b)?;
        let (uid, b) = take_u64(b)?;
        let (order, b) = take_u64(b)?;
        let (base, b) = take_bytes(b)?;
        b.is_empty().then(|| Copy { source: source.to_vec(), uid, order, base: base.to_vec() })
    }
}

/// A record of the new uidlist: UID, the copy's place in the source, base name, the fields
/// carried.
#[derive(Clone, Debug)]
struct Record {
    uid: u64,
    order: u64,
    base: Vec<u8>,
    fields: Vec<u8>,
}

crate::ordered_by!(Record, uid, order);

impl Spill for Record {
    fn weight(&self) -> usize {
        self.base.len() + self.fields.len() + 64
    }
    fn write(&self, out: &mut Vec<u8>) {
        put_u64(out, self.uid);
        put_u64(out, self.order);
        put_bytes(out, &self.base);
        put_bytes(out, &self.fields);
    }
    fn read(b: &[u8]) -> Option<Record> {
        let (uid, b) = take_u64(b)?;
        let (order, b) = take_u64(b)?;
        let (base, b) = take_bytes(b)?;
        let (fields, b) = take_bytes(b)?;
        b.is_empty().then(|| Record { uid, order, base: base.to_vec(), fields: fields.to_vec() })
    }
}

/// The copies of a folder being filled from empty, for its uidlist.
pub struct UidLines {
    mode: Mode,
    count: u64,
}

enum Mode {
    /// No IMAP state to carry: UIDs in the order the copies come (source order), the records
    /// streamed to an unlinked file.
    Plain(BufWriter<std::fs::File>),
    /// The source's UIDs go with its messages: joined at the end.
    Carried { source: SourceUids, copies: Sorter<Copy> },
}

impl UidLines {
    /// `source`: the source folder's IMAP state, when it has one.
    pub fn new(source: Option<SourceUids>) -> std::io::Result<UidLines> {
        let mode = match source {
            Some(source) => Mode::Carried { source, copies: Sorter::new() },
            None => Mode::Plain(BufWriter::new(tempfile::tempfile()?)),
        };
        Ok(UidLines { mode, count: 0 })
    }

    /// A copy written under the base name `base`: the source file's base name `source` (a
    /// Maildir source), the UID the source message carries (a Dovecot mbox's), `order` its
    /// place in the source. Copies come in source order.
    pub fn add(&mut self, base: &[u8], (source, uid): (Option<&[u8]>, Option<u32>), order: u64) -> std::io::Result<()> {
        self.count += 1;
        match &mut self.mode {
            Mode::Plain(out) => {
                write!(out, "{} :", self.count)?;
                out.write_all(base)?;
                out.write_all(b"\n")
            }
            Mode::Carried { copies, .. } => {
                let source = source.unwrap_or_default().to_vec();
                copies.push(Copy { source, uid: uid.map_or(0, u64::from), order, base: base.to_vec() })
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The records: the copies of messages `source` numbered (its uidlist lists them, or they
    /// carry their UID) with their UIDs and fields (a bare `P`, a UIDL that was the old base
    /// name, spelled out), the others after its next UID in source order; and the next UID.
    /// A UID two copies claim goes to the first; the second is new mail.
    fn records(source: &SourceUids, copies: Sorter<Copy>) -> std::io::Result<(Sorted<Record>, u64)> {
        let copies = copies.sorted()?;
        let (mut known, mut fresh) = (Sorter::new(), Sorter::new());
        let mut next = source.next;
        let mut listed = source.listed.as_ref().map(|l| l.iter().peekable());
        for c in copies.iter() {
            let c = c?;
            let mut hit = None;
            if let Some(l) = listed.as_mut().filter(|_| !c.source.is_empty()) {
                while let Some(x) = l.next_if(|x| x.as_ref().map_or(true, |x| x.base < c.source)) {
                    x?;
                }
                // Each listed message is one copy's: a second copy of one file is new mail.
                hit = l.next_if(|x| x.as_ref().is_ok_and(|x| x.base == c.source)).transpose()?;
            }
            let (order, base) = (c.order, c.base);
            match hit {
                Some(x) => {
                    let fields = spelled_out(&x.fields, &x.base);
                    known.push(Record { uid: x.uid, order, base, fields })?;
                }
                None if c.uid != 0 => known.push(Record { uid: c.uid, order, base, fields: Vec::new() })?,
                None => fresh.push(Record { uid: order, order, base, fields: Vec::new() })?,
            }
        }
        let mut out = Sorter::new();
        let mut last = 0;
        for r in known.sorted()?.iter() {
            let r = r?;
            if r.uid == last {
                fresh.push(Record { uid: r.order, ..r })?;
            } else {
                last = r.uid;
                next = next.max(r.uid + 1);
                out.push(r)?;
            }
        }
        for r in fresh.sorted()?.iter() {
            let r = r?;
            out.push(Record { uid: next, ..r })?;
            next += 1;
        }
        if next > u64::from(u32::MAX) {
            // Dovecot would throw such a list away and number the folder itself anyway.
            return Err(std::io::Error::other("the source's UIDs leave no room for these messages"));
        }
        Ok((out.sorted()?, next))
    }

    /// Puts the uidlist into `dir` (UIDVALIDITY the source's, else `validity`), under
    /// Dovecot's lock and never over an existing one: `Ok(false)` when Dovecot holds the lock
    /// or wrote a uidlist first.
    pub fn write(self, dir: &Dir, validity: u32, owner: Option<Owner>, durable: bool) -> Result<bool> {
        let path = dir.path.join(UIDLIST);
        let count = self.count;
        let body = match self.mode {
            Mode::Plain(out) => {
                let mut f = out.into_inner().map_err(|e| e.into_error()).at(&path)?;
                f.rewind().at(&path)?;
                Body::Plain { validity, next: count + 1, lines: f }
            }
            Mode::Carried { source, copies } => {
                let (records, next) = UidLines::records(&source, copies).at(&path)?;
                Body::Carried { validity: source.validity, next, records }
            }
        };
        let lock = match dir.create_file(OsStr::new(LOCK), 0o600) {
            Ok(mut f) => {
                let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
                let _ = write!(f, "{}:{host}", std::process::id());
                f
            }
            Err(_) => return Ok(false),
        };
        let r = (|| {
            if dir.stat_at(OsStr::new(UIDLIST))?.is_some() {
                return Ok(false);
            }
            let mut body = body;
            dir.write_new_with(std::ffi::OsStr::new(UIDLIST), 0o600, owner, durable, &mut |w| body.put(w))
        })();
        drop(lock);
        let _ = dir.unlink(OsStr::new(LOCK));
        r
    }
}

/// A uidlist ready to be written.
enum Body {
    Plain { validity: u32, next: u64, lines: std::fs::File },
    Carried { validity: u32, next: u64, records: Sorted<Record> },
}

impl Body {
    fn put(&mut self, w: &mut dyn Write) -> std::io::Result<bool> {
        match self {
            Body::Plain { validity, next, lines } => {
                writeln!(w, "3 V{validity} N{next}")?;
                std::io::copy(lines, w)?;
            }
            Body::Carried { validity, next, records } => {
                writeln!(w, "3 V{validity} N{next}")?;
                for r in records.iter() {
                    let r = r?;
                    write!(w, "{}", r.uid)?;
                    if !r.fields.is_empty() {
                        w.write_all(b" ")?;
                        w.write_all(&r.fields)?;
                    }
                    w.write_all(b" :")?;
                    w.write_all(&r.base)?;
                    w.write_all(b"\n")?;
                }
            }
        }
        Ok(true)
    }
}

/// A record's fields for the copy: a bare `P` meant "the POP3 UIDL is the base name", which
/// the copy does not have, so it becomes `P<old base name>`.
fn spelled_out(fields: &[u8], old_base: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len());
    for (i, f) in fields.split(|&b| b == b' ').enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f);
        if f == b"P" {
            out.extend_from_slice(old_base);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_never_over_another() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_root(t.path()).unwrap();
        let mut u = UidLines::new(None).unwrap();
        u.add(b"1.M0P1.h,S=3,W=4", (None, None), 0).unwrap();
        u.add(b"1.M1P2.h,S=3,W=4", (None, None), 1).unwrap();
        assert!(u.write(&dir, 77, None, false).unwrap());
        let text = std::fs::read_to_string(t.path().join(UIDLIST)).unwrap();
        assert_eq!(text, "3 V77 N3\n1 :1.M0P1.h,S=3,W=4\n2 :1.M1P2.h,S=3,W=4\n");
        assert!(!t.path().join(LOCK).exists());
        // One there already (Dovecot's) stays as it is.
        let mut u = UidLines::new(None).unwrap();
        u.add(b"x", (None, None), 0).unwrap();
        assert!(!u.write(&dir, 78, None, false).unwrap());
        assert_eq!(std::fs::read_to_string(t.path().join(UIDLIST)).unwrap(), text);
        // Dovecot holding its lock: nothing is written.
        std::fs::remove_file(t.path().join(UIDLIST)).unwrap();
        std::fs::write(t.path().join(LOCK), b"1:h").unwrap();
        let mut u = UidLines::new(None).unwrap();
        u.add(b"x", (None, None), 0).unwrap();
        assert!(!u.write(&dir, 79, None, false).unwrap());
        assert!(!t.path().join(UIDLIST).exists() && t.path().join(LOCK).exists());
    }

    /// A source's UIDVALIDITY, UIDs and fields follow its messages to their new names; a bare
    /// `P` keeps the old name as the UIDL; what the source did not list, and a second copy of
    /// one file, come after its next UID in source order; a broken record is skipped.
    #[test]
    fn a_source_uidlist_is_carried() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(
            src.path().join(UIDLIST),
            "3 V1234 N40 G3a7234031c51046b3822000083ecc375\n10 :a.host,S=3\n20 GX P W9 :b.host,S=4\nbad line\n30 Pxyz :c\n18446744073709551615 :big\n4294967296 :big2\n",
        )
        .unwrap();
        let s = read_source(src.path()).unwrap();
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_root(t.path()).unwrap();
        let mut u = UidLines::new(Some(s)).unwrap();
        u.add(b"n-d", (Some(b"d.unlisted"), None), 0).unwrap();
        u.add(b"n-b", (Some(b"b.host,S=4"), None), 1).unwrap();
        u.add(b"n-a", (Some(b"a.host,S=3"), None), 2).unwrap();
        u.add(b"n-a2", (Some(b"a.host,S=3"), None), 3).unwrap();
        u.add(b"n-c", (Some(b"c"), None), 4).unwrap();
        assert!(u.write(&dir, 1, None, false).unwrap());
        let text = std::fs::read_to_string(t.path().join(UIDLIST)).unwrap();
        assert_eq!(text, "3 V1234 N42\n10 :n-a\n20 GX Pb.host,S=4 W9 :n-b\n30 Pxyz :n-c\n40 :n-d\n41 :n-a2\n");
    }

    /// A Dovecot mbox's messages carry their UIDs: kept with its UIDVALIDITY; a UID claimed
    /// twice goes to the first message, the other becomes new mail after the last UID.
    #[test]
    fn an_mbox_sources_uids_are_carried() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_root(t.path()).unwrap();
        let mut u = UidLines::new(Some(SourceUids::of_mbox(555, 12))).unwrap();
        u.add(b"n0", (None, Some(7)), 0).unwrap();
        u.add(b"n1", (None, None), 1).unwrap();
        u.add(b"n2", (None, Some(9)), 2).unwrap();
        u.add(b"n3", (None, Some(9)), 3).unwrap();
        assert!(u.write(&dir, 1, None, false).unwrap());
        let text = std::fs::read_to_string(t.path().join(UIDLIST)).unwrap();
        assert_eq!(text, "3 V555 N15\n7 :n0\n9 :n2\n13 :n1\n14 :n3\n");
    }

    #[test]
    fn only_dovecot_uidlists_are_read() {
        let src = tempfile::tempdir().unwrap();
        for text in ["1 100 200\n1 a\n", "3 N4\n", "3 V0 N4\n"] {
            std::fs::write(src.path().join(UIDLIST), text).unwrap();
            assert!(read_source(src.path()).is_none(), "{text}");
        }
        std::fs::remove_file(src.path().join(UIDLIST)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join(UIDLIST)).unwrap();
        assert!(read_source(src.path()).is_none(), "never through a link");
    }
}
