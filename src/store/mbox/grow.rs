//! Growing an mbox in place: where new messages can go after the last byte of a file, and
//! whether the file allows it.
//!
//! A re-sync that only adds messages appends them instead of rewriting the file (a nightly
//! archive of a big mbox must not need its size free, or rewrite it). The file must end the
//! way every writer here and Dovecot leave it (an empty line after the last message), and
//! when its first message has an `X-IMAPbase`, its last UID must be the ten digits Dovecot
//! writes, so it can be updated in place.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::headers;
use super::lock::WriteLock;
use super::read::MboxFile;
use crate::error::{At, Result};
use crate::fsx::Dir;

/// Where new messages go when an mbox grows in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendPoint {
    /// The file's length as read: the new messages start there.
    pub len: u64,
    /// Where the ten digits of the first message's X-IMAPbase last UID are in the file.
    pub digits_at: Option<u64>,
    /// The keywords that X-IMAPbase lists (X-Keywords holds no others).
    pub keywords: Vec<String>,
    /// The highest UID given out: X-IMAPbase's last one, or a message's X-UID above it.
    pub last_uid: u32,
}

/// The append point of `file`, whose messages have `max_uid` as their highest X-UID, and
/// whose first message starts at `first` (offset of the message after its From_ line).
/// `None` when the file cannot grow in place: it does not end with an empty line, or its
/// X-IMAPbase is not one whose last UID can be written over.
pub fn append_point(file: &MboxFile, first: Option<usize>, max_uid: u32) -> Option<AppendPoint> {
    let d = file.bytes();
    if !(d.ends_with(b"\n\n") || d.ends_with(b"\n\r\n")) {
        return None;
    }
    let mut p = AppendPoint { len: d.len() as u64, digits_at: None, keywords: Vec::new(), last_uid: max_uid };
    let Some(start) = first else { return Some(p) };
    let msg = &d[start..];
    let hb = headers::scan(&msg[..msg.len().min(1 << 20)]);
    let Some(f) = hb.fields.iter().find(|f| msg[f.name.clone()].eq_ignore_ascii_case(b"X-IMAPbase")) else {
        return Some(p);
    };
    let value = &msg[f.value.clone()];
    let (digits, last, keywords) = base_digits(value)?;
    p.digits_at = Some((start + f.value.start + digits) as u64);
    p.last_uid = p.last_uid.max(last);
    p.keywords = keywords;
    Some(p)
}

/// In an X-IMAPbase value: where its last UID's digits start (they must be ten, as Dovecot
/// writes them), the last UID, and the keywords after it.
fn base_digits(value: &[u8]) -> Option<(usize, u32, Vec<String>)> {
    let blank = |b: u8| b == b' ' || b == b'\t';
    let mut i = value.iter().take_while(|&&b| blank(b)).count();
    let validity = value[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if validity == 0 {
        return None;
    }
    i += validity;
    let gap = value[i..].iter().take_while(|&&b| blank(b)).count();
    if gap == 0 {
        return None;
    }
    i += gap;
    let at = i;
    let n = value[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let after = value.get(i + n).copied();
    if n != 10 || !matches!(after, Some(b' ' | b'\t' | b'\r' | b'\n') | None) {
        return None;
    }
    let last = std::str::from_utf8(&value[at..at + n]).ok()?.parse().ok()?;
    let rest = String::from_utf8_lossy(&headers::unfold(&value[at + n..])).into_owned();
    Some((at, last, rest.split_ascii_whitespace().map(str::to_string).collect()))
}

/// The names of an append's journal and of the messages it adds, beside the mbox `name`:
/// while both are there, the file may hold an unfinished append. Dot names ending in `.lock`,
/// which no mbox reader lists and no clean-up of temporary files removes.
pub fn journal_names(name: &OsStr) -> (OsString, OsString) {
    let named = |what: &str| {
        let mut n = OsString::from(".");
        n.push(name);
        n.push(what);
        n
    };
    (named(".mailmover-append.lock"), named(".mailmover-append-data.lock"))
}

/// What an append in progress records before the file is touched, so that a run killed in the
/// middle can be taken back by the next one ([`recover`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal {
    pub dev: u64,
    pub ino: u64,
    pub old_len: u64,
    pub new_len: u64,
    /// Where X-IMAPbase's last UID is, with the digits before and after.
    pub digits: Option<(u64, [u8; 10], [u8; 10])>,
}

impl Journal {
    pub fn encode(&self) -> Vec<u8> {
        let digits = match &self.digits {
            Some((at, old, new)) => {
                format!("{at} {} {}", String::from_utf8_lossy(old), String::from_utf8_lossy(new))
            }
            None => "- - -".into(),
        };
        format!("mailmover-append 1\n{} {} {} {} {digits}\n", self.dev, self.ino, self.old_len, self.new_len)
            .into_bytes()
    }

    pub fn decode(b: &[u8]) -> Option<Journal> {
        let s = std::str::from_utf8(b).ok()?.strip_prefix("mailmover-append 1\n")?;
        let v: Vec<&str> = s.trim_end_matches('\n').split(' ').collect();
        let [dev, ino, old_len, new_len, at, old, new] = v[..] else { return None };
        let ten = |d: &str| -> Option<[u8; 10]> {
            d.bytes().all(|b| b.is_ascii_digit()).then(|| d.as_bytes().try_into().ok())?
        };
        let digits = match at {
            "-" => None,
            _ => Some((at.parse().ok()?, ten(old)?, ten(new)?)),
        };
        let (old_len, new_len) = (old_len.parse().ok()?, new_len.parse().ok()?);
        (old_len <= new_len).then_some(())?;
        Some(Journal { dev: dev.parse().ok()?, ino: ino.parse().ok()?, old_len, new_len, digits })
    }
}

/// Takes back what a run killed during an append left at the end of the mbox `name` in
/// `dir`, under the mbox locks: bytes after the old length that are the start of the messages
/// it was adding are cut off (the file is then as before that run); a finished append is
/// kept, its last UID written if it was not yet. Bytes that are not ours are left as they
/// are. Returns what the report should say of the file, if anything. With `dry_run`, only
/// says it.
pub fn recover(dir: &Dir, name: &OsStr, wait: std::time::Duration, dry_run: bool) -> Result<Option<String>> {
    let (journal_name, data_name) = journal_names(name);
    let path = dir.path.join(name);
    if !dir.exists(&journal_name) {
        if !dry_run && dir.exists(&data_name) {
            // Killed before the journal was written: the mbox was not touched.
            let _ = dir.unlink(&data_name);
        }
        return Ok(None);
    }
    if dry_run {
        return Ok(Some("an append of an interrupted run may be unfinished; the next sync checks it".into()));
    }
    let locked = WriteLock::take(dir, name, wait)?;
    let raw = dir.read_own_file(&journal_name, 4096)?.unwrap_or_default();
    let said = match (Journal::decode(&raw), locked.file().filter(|_| locked.writable())) {
        (Some(j), Some(cur)) => take_back(&j, cur, dir, &data_name, &path)?,
        (None, _) => Some(format!("its unreadable append journal {} was removed", journal_name.to_string_lossy())),
        (Some(_), None) => None,
    };
    let _ = dir.unlink(&journal_name);
    let _ = dir.unlink(&data_name);
    drop(locked);
    Ok(said)
}

fn take_back(j: &Journal, cur: &File, dir: &Dir, data_name: &OsStr, path: &Path) -> Result<Option<String>> {
    let st = nix::sys::stat::fstat(cur.as_raw_fd()).at(path)?;
    let size = st.st_size as u64;
    if (st.st_dev, st.st_ino) != (j.dev, j.ino) || size <= j.old_len {
        // Replaced since, or nothing was appended: nothing to take back.
        return Ok(None);
    }
    let ours = match dir.open_file(data_name, false)? {
        Some(data) => same_bytes(cur, j.old_len, &data, size.min(j.new_len) - j.old_len).at(path)?,
        None => false,
    };
    if !ours {
        return Ok(Some(format!(
            "an interrupted run was appending at byte {}, and what is there now is not what it was writing; left as it is (look at the end of the file)",
            j.old_len
        )));
    }
    if size >= j.new_len {
        // Finished but for its last UID, maybe.
        if let Some((at, old, new)) = &j.digits {
            let mut now = [0u8; 10];
            cur.read_exact_at(&mut now, *at).at(path)?;
            if now == *old {
                cur.write_all_at(new, *at).at(path)?;
                cur.sync_all().at(path)?;
            }
        }
        return Ok(None);
    }
    cur.set_len(j.old_len).at(path)?;
    cur.sync_all().at(path)?;
    Ok(Some(format!(
        "an interrupted run left {} bytes of an unfinished append at the end; taken back",
        size - j.old_len
    )))
}

/// Whether the `n` bytes of `a` from `at` are the first `n` bytes of `b`.
fn same_bytes(a: &File, at: u64, b: &File, n: u64) -> std::io::Result<bool> {
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0u64;
    while off < n {
        let want = usize::try_from((n - off).min(x.len() as u64)).unwrap_or(x.len());
        let got = a.read_at(&mut x[..want], at + off)?;
        if got == 0 || b.read_at(&mut y[..got], off)? != got || x[..got] != y[..got] {
            return Ok(false);
        }
        off += got as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(data: &[u8], max_uid: u32) -> Option<AppendPoint> {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), data).unwrap();
        let f = MboxFile::open(t.path()).unwrap();
        let first = data.iter().position(|&b| b == b'\n').map(|n| n + 1);
        append_point(&f, first, max_uid)
    }

    #[test]
    fn the_last_uid_is_found_where_dovecot_writes_it() {
        let m = b"From a@b Thu Jan  1 00:00:00 2015\nX-IMAPbase: 1420070400 0000000007 Work $Later\nX-UID: 7\n\nhi\n\n";
        let p = point(m, 9).unwrap();
        let at = p.digits_at.unwrap() as usize;
        assert_eq!(&m[at..at + 10], b"0000000007");
        assert_eq!((p.len, p.last_uid, p.keywords.clone()), (m.len() as u64, 9, vec!["Work".into(), "$Later".into()]));
        assert_eq!(point(m, 3).unwrap().last_uid, 7);
    }

    #[test]
    fn files_that_cannot_grow_in_place() {
        // No empty line at the end: the next From_ line would join the last message.
        assert_eq!(point(b"From a@b Thu Jan  1 00:00:00 2015\n\nhi\n", 0), None);
        // A last UID that is not ten digits cannot be written over.
        assert_eq!(point(b"From a@b Thu Jan  1 00:00:00 2015\nX-IMAPbase: 5 7\n\nhi\n\n", 0), None);
        assert_eq!(point(b"From a@b Thu Jan  1 00:00:00 2015\nX-IMAPbase: 5 00000000070\n\nhi\n\n", 0), None);
        let plain = point(b"From a@b Thu Jan  1 00:00:00 2015\n\nhi\n\n", 0).unwrap();
        assert_eq!((plain.digits_at, plain.keywords.len()), (None, 0));
        assert!(point(b"From a@b Thu Jan  1 00:00:00 2015\r\n\r\nhi\r\n\r\n", 0).is_some());
    }

    /// An mbox with `old` bytes, then `tail`; a journal of an append of `data` after `old`.
    fn interrupted(old: &[u8], tail: &[u8], data: &[u8]) -> (tempfile::TempDir, Dir) {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("INBOX"), [old, tail].concat()).unwrap();
        std::fs::write(t.path().join(".INBOX.mailmover-append-data.lock"), data).unwrap();
        let m = std::fs::metadata(t.path().join("INBOX")).unwrap();
        let len = old.len() as u64;
        let j = Journal { dev: m.dev(), ino: m.ino(), old_len: len, new_len: len + data.len() as u64, digits: None };
        std::fs::write(t.path().join(".INBOX.mailmover-append.lock"), j.encode()).unwrap();
        let d = Dir::open_root(t.path()).unwrap();
        (t, d)
    }

    #[test]
    fn only_our_own_unfinished_bytes_are_taken_back() {
        let wait = std::time::Duration::from_secs(5);
        let old = b"From a@b Thu Jan  1 00:00:00 2015\n\nold\n\n";
        let data = b"From c@d Thu Jan  1 00:00:00 2015\n\nnew\n\n";
        for (tail, kept, said) in [
            (&data[..20], &old[..], Some("20 bytes of an unfinished append")),
            (&data[..], &[old, &data[..]].concat()[..], None),
            (
                &b"From x@y Fri Jan  2 00:00:00 2015\n"[..],
                &[old, &b"From x@y Fri Jan  2 00:00:00 2015\n"[..]].concat()[..],
                Some("left as it is"),
            ),
            (&b""[..], &old[..], None),
        ] {
            let (t, d) = interrupted(old, tail, data);
            let r = recover(&d, OsStr::new("INBOX"), wait, true).unwrap();
            assert!(r.is_some_and(|r| r.contains("may be unfinished")), "a dry run only says it");
            assert_eq!(std::fs::read(t.path().join("INBOX")).unwrap().len(), old.len() + tail.len());
            let r = recover(&d, OsStr::new("INBOX"), wait, false).unwrap();
            assert_eq!(r.as_deref().map(|r| said.is_some_and(|s| r.contains(s))), said.map(|_| true), "{r:?}");
            assert_eq!(std::fs::read(t.path().join("INBOX")).unwrap(), kept);
            let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(left, ["INBOX"], "the journal and its data are gone");
        }
    }

    #[test]
    fn journals_read_back() {
        let j = Journal {
            dev: 2049,
            ino: 77,
            old_len: 10,
            new_len: 99,
            digits: Some((40, *b"0000000003", *b"0000000005")),
        };
        assert_eq!(Journal::decode(&j.encode()), Some(j.clone()));
        let plain = Journal { digits: None, ..j };
        assert_eq!(Journal::decode(&plain.encode()), Some(plain));
        for bad in [&b"mailmover-append 1\n1 2 30 10 - - -\n"[..], b"mailmover-append 1\n1 2 3\n", b"x"] {
            assert_eq!(Journal::decode(bad), None);
        }
    }
}
