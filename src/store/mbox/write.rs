//! Writing an mbox file (mboxrd, RFC 4155).
//!
//! Each message gets a From_ line with its envelope sender and its internal date in asctime
//! UTC, `Status`/`X-Status`/`X-Keywords` from its flags (inserted at the end of its header
//! block, in the message's own line-end style), mboxrd quoting of `^>*From ` lines, and one
//! empty line after it. The whole file is written under a temporary name in the target's
//! (guarded) directory and, under the mbox locks mail servers honour, checked against what was
//! read and renamed over the target, so a reader sees the old file or the new one, never a
//! mix, and mail appended meanwhile is kept (see [`MboxWriter::commit`]).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::date::asctime_utc;
use super::flavour::{Cut, Flavour, Part, Quoter};
use super::grow::{self, AppendPoint};
use super::headers;
use super::lock::WriteLock;
use super::read::{Stamp, envelope_sender};
use crate::error::{At, Error, Result};
use crate::flags::Flags;
use crate::fsx::{self, Dir, Owner};
use crate::message::Meta;

/// Durable mode starts the disk writes every this many bytes.
const KICK_BYTES: u64 = 8 << 20;

/// Removes the temporary files of `name` that killed runs left in `dir` ([`fsx::temp_name`];
/// older runs named them without the `.lock` suffix).
fn clean_leftovers(dir: &Dir, name: &OsStr) {
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b".mailmover-");
    dir.remove_leftovers_where(&|n| n.starts_with(&prefix));
}

/// An existing target mbox as it was read: what the locked commit compares it with.
#[derive(Clone, Debug)]
pub struct Read {
    pub stamp: Stamp,
    /// SHA-256 of the `stamp.size` bytes that were read.
    pub digest: [u8; 32],
}

/// Vets mail appended to a target mbox during the run: the locked file and where it starts.
pub type AppendedCheck<'a> = dyn Fn(&File, u64) -> Result<()> + 'a;

pub struct MboxWriter<'d> {
    dir: &'d Dir,
    name: OsString,
    tmp_name: OsString,
    out: BufWriter<File>,
    path: PathBuf,
    owner: Option<Owner>,
    durable: bool,
    /// Bytes of the file handed to the disk so far (durable mode).
    kicked: u64,
    pub messages: u64,
    /// Keywords to list in the first message's X-IMAPbase (Dovecot honours X-Keywords only for
    /// keywords listed there).
    keywords: Vec<String>,
    flavour: Flavour,
    /// The target's UIDVALIDITY, kept; `None`: a new one if one is written.
    validity: Option<u32>,
    /// The target's last UID: new messages get UIDs above it, never one it gave out.
    uid_floor: u32,
    /// The last UID given to a message written so far.
    last_uid: u32,
    /// Bytes written to the file, and where X-IMAPbase's last UID digits are.
    pos: u64,
    base_at: Option<u64>,
    /// Growing an existing file in place: the messages written here go after its last byte,
    /// and `base_at` is where its own X-IMAPbase last UID is.
    grow: Option<AppendPoint>,
}

impl<'d> MboxWriter<'d> {
    /// Starts writing the mbox `name` of `dir` under a temporary name there, created 0600 and
    /// owned by `owner` (`--owner`; as root without it: as `dir`) before anything is written
    /// to it.
    pub fn create(
        dir: &'d Dir,
        name: &OsStr,
        flavour: Flavour,
        owner: Option<Owner>,
        durable: bool,
    ) -> Result<MboxWriter<'d>> {
        let path = dir.path.join(name);
        clean_leftovers(dir, name);
        let tmp_name = fsx::temp_name(name);
        let _ = dir.unlink(&tmp_name);
        let f = dir.create_file(&tmp_name, 0o600)?;
        if let Some(o) = dir.owner_for_new(owner)
            && let Err(e) = o.apply(f.as_raw_fd(), &path)
        {
            let _ = dir.unlink(&tmp_name);
            return Err(e);
        }
        Ok(MboxWriter {
            dir,
            name: name.to_os_string(),
            tmp_name,
            out: BufWriter::with_capacity(1 << 20, f),
            path,
            owner,
            durable,
            kicked: 0,
            messages: 0,
            keywords: Vec::new(),
            flavour,
            validity: None,
            uid_floor: 0,
            last_uid: 0,
            pos: 0,
            base_at: None,
            grow: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keywords used anywhere in the file, announced in the first message's X-IMAPbase.
    pub fn set_keywords(&mut self, keywords: Vec<String>) {
        self.keywords = keywords;
    }

    /// The IMAP state of the mbox this one replaces: its UIDVALIDITY is kept and no UID up to
    /// its last one is given to a new message.
    pub fn keep_imap_state(&mut self, state: Option<ImapBase>) {
        if let Some(b) = state {
            self.validity = Some(b.validity);
            self.uid_floor = b.last_uid;
        }
    }

    /// Writes the messages to add after the last byte of the existing file (`point`), which
    /// is left as it is but for its X-IMAPbase's last UID: no rewrite of what is there.
    pub fn grow_from(&mut self, point: AppendPoint) {
        self.uid_floor = self.uid_floor.max(point.last_uid);
        self.base_at = point.digits_at;
        self.grow = Some(point);
    }

    /// Appends one message given as the bytes to store (no From_ line). Its own mbox-internal
    /// fields are left out ([`Cut`]), the flavour's fields for `meta` and `uid` go at the end
    /// of its header block (a message without one gets them after its last line, where
    /// Dovecot and the readers here look for them too), then the body, quoted when the flavour
    /// quotes, and one empty line. Bytes are streamed: a huge mapped message is read through
    /// in windows whose pages are let go behind.
    pub fn append(&mut self, pieces: &[&[u8]], meta: &Meta, uid: Option<u32>) -> Result<()> {
        let meta = &meta.mbox_view();
        let head = first_bytes(pieces, 64 * 1024);
        let sender = envelope_sender(&head);
        let crlf = memchr::memchr(b'\n', &head).is_some_and(|n| n > 0 && head[n - 1] == b'\r');
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let Measure { terminated, body_len, last, cr_tail } = measure(pieces);
        let uid = self.next_uid(uid);
        // The body as written: with the final newline a message without one gets.
        let body_len = if terminated { body_len + u64::from(last.is_some_and(|b| b != b'\n')) } else { 0 };
        let (fields, digits) = self.fields(meta, uid, body_len, eol);
        let from = format!("From {} {}\n", sender, asctime_utc(meta.date));
        let mut base_at = None;
        let quotes = self.flavour.quotes();
        let mut q = Quoter::default();
        let mut sink = Sink { out: &mut self.out, pos: &mut self.pos };
        let mut res = sink.put(from.as_bytes());
        cut_windows(pieces, &mut |part, s| {
            if res.is_err() {
                return;
            }
            if part == Part::Blank || (part == Part::Tail && cr_tail) {
                base_at = digits.map(|d| *sink.pos + d as u64);
                res = sink.put(&fields);
                q.at_line_start();
            }
            if res.is_ok() {
                res = if quotes { q.write(s, &mut |b| sink.put(b)) } else { sink.put(s) };
            }
        });
        if res.is_ok() {
            res = (|| {
                q.flush(&mut |b| sink.put(b))?;
                // A plain LF, as the message's identity in an mbox has it.
                if last.is_some_and(|b| b != b'\n') {
                    sink.put(b"\n")?;
                }
                if !terminated && !cr_tail {
                    base_at = digits.map(|d| *sink.pos + d as u64);
                    sink.put(&fields)?;
                }
                sink.put(eol)
            })();
        }
        res.at(&self.path)?;
        if base_at.is_some() {
            self.base_at = base_at;
        }
        self.messages += 1;
        if self.durable && self.pos - self.kicked >= KICK_BYTES {
            // What the buffer has passed on so far goes to the disk now, not all at the final fsync.
            fsx::start_writeback_range(self.out.get_ref(), self.kicked, 0);
            self.kicked = self.pos;
        }
        Ok(())
    }

    /// The UID a message gets: its own while UIDs keep increasing; else, and for a new message
    /// in the Dovecot flavour, the next free one. `None` when it has none and gets none.
    fn next_uid(&mut self, uid: Option<u32>) -> Option<u32> {
        let free = self.last_uid.max(self.uid_floor).checked_add(1);
        let uid = match uid {
            Some(u) if u > self.last_uid => Some(u),
            Some(_) => free,
            None if self.flavour == Flavour::Dovecot => free,
            None => None,
        };
        if let Some(u) = uid {
            self.last_uid = u;
        }
        uid
    }

    /// The fields the flavour adds to a message, in Dovecot's order (FORMATS.md §6.3), and
    /// where in them the ten digits of X-IMAPbase's last UID are.
    fn fields(&self, meta: &Meta, uid: Option<u32>, body_len: u64, eol: &[u8]) -> (Vec<u8>, Option<usize>) {
        let (mut v, mut digits) = (Vec::new(), None);
        let line = |v: &mut Vec<u8>, s: &str| {
            v.extend_from_slice(s.as_bytes());
            v.extend_from_slice(eol);
        };
        let wants_base = self.flavour == Flavour::Dovecot || !self.keywords.is_empty() || self.validity.is_some();
        if self.messages == 0 && self.grow.is_none() && wants_base {
            // UIDVALIDITY is the target's own when it had one, else the time, as Dovecot does.
            let validity =
                self.validity.unwrap_or_else(|| chrono::Utc::now().timestamp().clamp(1, i64::from(u32::MAX)) as u32);
            let mut s = format!("X-IMAPbase: {validity} ");
            // The last UID is known at the end: its ten digits are written over then.
            digits = Some(v.len() + s.len());
            s.push_str("0000000000");
            for k in &self.keywords {
                s.push(' ');
                s.push_str(k);
            }
            line(&mut v, &s);
        }
        if let Some(u) = uid {
            line(&mut v, &format!("X-UID: {u}"));
        }
        // Dovecot marks every message old (`O`) at a client's first visit and rewrites the file
        // to say so: written old, the file stays as it is. \Recent is a session's state.
        v.extend(status_lines(meta, eol, self.flavour == Flavour::Dovecot));
        if self.flavour.content_length() {
            line(&mut v, &format!("Content-Length: {body_len}"));
        }
        (v, digits)
    }
    /// Finishes the file and puts it in place under the mbox locks (dotlock, then fcntl):
    /// the target must be what `was` says was read (`None`: there was none), or have grown
    /// only by whole messages appended after it, which are then kept after ours. Anything else
    /// fails and leaves the target as it is. A replaced mbox keeps its owner, group and mode
    /// (`owner` wins when given). `appended_ok` vets appended mail (given the locked file and
    /// the offset it starts at) before it is kept; `ready` is asked last, under the locks,
    /// whether what the file was written from is still valid. Returns how many appended bytes
    /// were kept.
    pub fn commit(
        self,
        was: Option<&Read>,
        wait: std::time::Duration,
        appended_ok: &AppendedCheck<'_>,
        ready: &dyn Fn() -> Result<()>,
    ) -> Result<u64> {
        let dir = self.dir;
        let tmp = self.tmp_name.clone();
        let r = self.commit_inner(was, wait, appended_ok, ready);
        if r.is_err() {
            let _ = dir.unlink(&tmp);
        }
        r
    }

    fn commit_inner(
        self,
        was: Option<&Read>,
        wait: std::time::Duration,
        appended_ok: &AppendedCheck<'_>,
        ready: &dyn Fn() -> Result<()>,
    ) -> Result<u64> {
        if self.grow.is_some() {
            return self.commit_grown(was, wait, appended_ok, ready);
        }
        let last = self.last_uid.max(self.uid_floor);
        let MboxWriter { dir, name, tmp_name, out, path, owner, durable, base_at, .. } = self;
        let mut f = out.into_inner().map_err(|e| Error::Io { path: path.clone(), source: e.into_error() })?;
        if let Some(at) = base_at {
            f.write_all_at(format!("{last:010}").as_bytes(), at).at(&path)?;
        }
        let locked = WriteLock::take(dir, &name, wait)?;
        let mut old_mtime = None;
        let kept = match (was, locked.file()) {
            (None, None) => 0,
            (Some(_), None) => {
                return Err(Error::bad(&path, "the target mbox was removed during the run; not written, run again"));
            }
            (was, Some(cur)) => {
                let now = Stamp::of(cur).at(&path)?;
                let read_len = was.map_or(0, |w| w.stamp.size);
                if let Some(w) = was {
                    same_prefix(cur, w, &now, &path)?;
                }
                if now.size > read_len {
                    appended_ok(cur, read_len)?;
                }
                let kept = copy_appended(cur, read_len, now.size, &mut f, &path)?;
                old_mtime = Some(now.mtime.0);
                let st = nix::sys::stat::fstat(cur.as_raw_fd()).at(&path)?;
                let keep = owner.unwrap_or(Owner { uid: st.st_uid, gid: st.st_gid });
                if owner.is_some() || nix::unistd::geteuid().is_root() {
                    keep.apply(f.as_raw_fd(), &path)?;
                }
                nix::sys::stat::fchmod(f.as_raw_fd(), nix::sys::stat::Mode::from_bits_truncate(st.st_mode & 0o777))
                    .at(&path)?;
                kept
            }
        };
        set_whole_second_mtime(&f, old_mtime).at(&path)?;
        if durable {
            f.sync_all().at(&path)?;
        }
        drop(f);
        ready()?;
        locked.refresh();
        if locked.file().is_some() {
            dir.rename_replace(&tmp_name, dir, &name)?;
        } else {
            // Someone who ignores the locks may have created it since: never replace that.
            dir.rename_noreplace(&tmp_name, dir, &name).map_err(|e| {
                Error::bad(&path, format!("the target mbox appeared during the run; not replaced, run again ({e})"))
            })?;
        }
        if durable {
            dir.fsync()?;
        }
        drop(locked);
        Ok(kept)
    }

    /// [`MboxWriter::commit`] for a file grown in place: under the locks, the written messages
    /// are copied after the file's last byte (after mail appended meanwhile, vetted as for a
    /// rewrite), X-IMAPbase's last UID is written over, and the file is synced. Any failure
    /// cuts the file back to the length it had and puts the old digits back: it is then as it
    /// was.
    fn commit_grown(
        self,
        was: Option<&Read>,
        wait: std::time::Duration,
        appended_ok: &AppendedCheck<'_>,
        ready: &dyn Fn() -> Result<()>,
    ) -> Result<u64> {
        let last = self.last_uid.max(self.uid_floor);
        let MboxWriter { dir, name, tmp_name, out, path, durable, base_at, pos, owner, .. } = self;
        let Some(was) = was else { return Err(Error::bad(&path, "internal: grown without a file read")) };
        let staged = out.into_inner().map_err(|e| Error::Io { path: path.clone(), source: e.into_error() })?;
        if durable {
            staged.sync_all().at(&path)?;
        }
        drop(staged);
        // Written write-only: read back through a descriptor of its own.
        let Some(staged) = dir.open_file(&tmp_name, false)? else {
            return Err(Error::bad(&path, "the staged messages were removed during the run; not written, run again"));
        };
        let locked = WriteLock::take(dir, &name, wait)?;
        let Some(cur) = locked.file().filter(|_| locked.writable()) else {
            let why = match locked.file() {
                None => "the target mbox was removed during the run; not written, run again",
                Some(_) => "the target mbox is no longer writable; not written",
            };
            return Err(Error::bad(&path, why));
        };
        let now = Stamp::of(cur).at(&path)?;
        same_prefix(cur, was, &now, &path)?;
        if now.size > was.stamp.size {
            appended_ok(cur, was.stamp.size)?;
            if !ends_with_empty_line(cur, now.size).at(&path)? {
                return Err(Error::bad(
                    &path,
                    "mail appended to the target mbox during the run does not end with an empty line; not written, run again",
                ));
            }
        }
        ready()?;
        locked.refresh();
        let at = now.size;
        let mut old_digits = [0u8; 10];
        if let Some(d) = base_at {
            cur.read_exact_at(&mut old_digits, d).at(&path)?;
        }
        // The journal first: a run killed from here on is taken back by the next one.
        let (journal_name, data_name) = grow::journal_names(&name);
        let journal = grow::Journal {
            dev: now.dev,
            ino: now.ino,
            old_len: at,
            new_len: at + pos,
            digits: base_at.map(|d| {
                let mut new = [0u8; 10];
                new.copy_from_slice(format!("{last:010}").as_bytes());
                (d, old_digits, new)
            }),
        };
        dir.rename_noreplace(&tmp_name, dir, &data_name)?;
        let journaled = dir.write_new_with(&journal_name, 0o600, owner, durable, &mut |w| {
            w.write_all(&journal.encode()).map(|()| true)
        });
        let cleanup = || {
            let _ = dir.unlink(&journal_name);
            let _ = dir.unlink(&data_name);
        };
        match journaled {
            Ok(true) if !durable => {}
            Ok(true) => dir.fsync().inspect_err(|_| cleanup())?,
            Ok(false) => {
                let _ = dir.unlink(&data_name);
                return Err(Error::bad(&path, "an append journal appeared during the run; not written, run again"));
            }
            Err(e) => {
                cleanup();
                return Err(e);
            }
        }
        let grown = (|| -> std::io::Result<()> {
            copy_range(&staged, pos, cur, at)?;
            if let Some(d) = base_at {
                cur.write_all_at(format!("{last:010}").as_bytes(), d)?;
            }
            set_whole_second_mtime(cur, Some(now.mtime.0))?;
            if durable {
                cur.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = grown {
            let _ = cur.set_len(at);
            if let Some(d) = base_at {
                let _ = cur.write_all_at(&old_digits, d);
            }
            let _ = cur.sync_all();
            let source =
                std::io::Error::new(e.kind(), format!("{}; the mbox is as it was", crate::error::io_reason(&e)));
            cleanup();
            return Err(Error::Io { path: path.clone(), source });
        }
        drop(staged);
        cleanup();
        drop(locked);
        Ok(now.size - was.stamp.size)
    }

    /// Gives up: the temporary file is removed, the target is untouched.
    pub fn abort(self) {
        let _ = self.dir.unlink(&self.tmp_name);
    }

    /// The last UID the file gives out (its X-IMAPbase's last UID; 0: it has none).
    pub fn last_uid(&self) -> u32 {
        if self.base_at.is_some() { self.last_uid.max(self.uid_floor) } else { 0 }
    }

    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }
}

/// Gives the new file an mtime in whole seconds, later than the file it replaces. Dovecot sets
/// the mtime of an mbox it synced back to whole seconds (so one written with nanoseconds
/// looks changed after its first visit), and notices an outside change only by size or the
/// mtime's seconds.
fn set_whole_second_mtime(f: &File, old: Option<i64>) -> std::io::Result<()> {
    use nix::sys::time::TimeSpec;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let secs = old.map_or(now, |o| now.max(o.saturating_add(1)));
    let omit = TimeSpec::new(0, libc::UTIME_OMIT);
    nix::sys::stat::futimens(f.as_raw_fd(), &omit, &TimeSpec::new(secs, 0)).map_err(std::io::Error::from)
}

/// Checks under the lock that the mbox still starts with exactly the bytes that were read: the
/// same file (not replaced), no shorter, and, unless its times show no write at all, the same
/// digest over the bytes read.
fn same_prefix(cur: &File, was: &Read, now: &Stamp, path: &Path) -> Result<()> {
    let w = &was.stamp;
    let changed = |why: &str| {
        Err(Error::bad(
            path,
            format!("the target mbox {why} since it was read (another writer); not written, run again"),
        ))
    };
    if (now.dev, now.ino) != (w.dev, w.ino) {
        return changed("was replaced");
    }
    if now.size < w.size {
        return changed("shrank");
    }
    if now == w {
        return Ok(());
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < w.size {
        let want = usize::try_from((w.size - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = cur.read_at(&mut buf[..want], off).at(path)?;
        if n == 0 {
            return changed("shrank");
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    if <[u8; 32]>::from(h.finalize()) != was.digest {
        return changed("was rewritten");
    }
    Ok(())
}

/// Whether the `len` bytes of `f` end with an empty line (new messages may follow).
fn ends_with_empty_line(f: &File, len: u64) -> std::io::Result<bool> {
    let mut tail = [0u8; 3];
    let n = len.min(3) as usize;
    f.read_exact_at(&mut tail[3 - n..], len - n as u64)?;
    Ok(tail[1..] == *b"\n\n" || tail == *b"\n\r\n")
}

/// Copies the first `len` bytes of `from` to `to` at offset `at`.
fn copy_range(from: &File, len: u64, to: &File, at: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let want = usize::try_from((len - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = from.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the staged messages are short"));
        }
        to.write_all_at(&buf[..n], at + off)?;
        off += n as u64;
    }
    Ok(())
}

/// Copies what was appended to the mbox after the `from` bytes that were read (up to `to`)
/// to the end of `out`. Appended data must be whole messages: blank lines, then a From_ line.
fn copy_appended(cur: &File, from: u64, to: u64, out: &mut File, path: &Path) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = from;
    let mut first = true;
    while off < to {
        let want = usize::try_from((to - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = cur.read_at(&mut buf[..want], off).at(path)?;
        if n == 0 {
            return Err(Error::bad(path, "the target mbox shrank while it was locked; not written, run again"));
        }
        let mut chunk = &buf[..n];
        if first {
            let skip = chunk.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
            chunk = &chunk[skip..];
            if chunk.is_empty() && off + (n as u64) < to {
                off += n as u64;
                continue;
            }
            if !chunk.is_empty() && !chunk.starts_with(b"From ") {
                return Err(Error::bad(
                    path,
                    "the target mbox changed since it was read (data that is not a new message was added); not written, run again",
                ));
            }
            first = false;
        }
        out.write_all(chunk).at(path)?;
        off += n as u64;
    }
    Ok(to - from)
}

/// The file being written, and how many bytes went to it.
struct Sink<'a> {
    out: &'a mut BufWriter<File>,
    pos: &'a mut u64,
}

impl Sink<'_> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        *self.pos += b.len() as u64;
        self.out.write_all(b)
    }
}

/// What the fields a message gets depend on, read from its header block only.
struct Measure {
    terminated: bool,
    /// Bytes after the empty line that ends the header block.
    body_len: u64,
    /// The last byte of the message as an mbox holds it (its own state fields cut).
    last: Option<u8>,
    /// Its last line is a lone CR (with the final newline, the empty line that ends the
    /// header block: the fields go before it).
    cr_tail: bool,
}

/// Measures a message: the header block is cut, the body only counted (a huge message is not
/// read twice).
fn measure(pieces: &[&[u8]]) -> Measure {
    let total: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    let mut m = Measure { terminated: false, body_len: 0, last: None, cr_tail: false };
    let mut cut = Cut::default();
    let mut fed = 0u64;
    for p in pieces {
        for w in fsx::windows(p) {
            let mut body_at = None;
            cut.feed(w, &mut |part, s| {
                match part {
                    Part::Blank => m.terminated = true,
                    Part::Body => body_at = Some(s.as_ptr() as u64 - w.as_ptr() as u64),
                    Part::Head => {}
                    Part::Tail => m.cr_tail = s == b"\r",
                }
                if let Some(&b) = s.last() {
                    m.last = Some(b);
                }
            });
            if let Some(at) = body_at {
                // The body runs to the end, uncut: its last byte is the message's.
                m.body_len = total - (fed + at);
                m.last = pieces.iter().rev().find_map(|p| p.last().copied());
                return m;
            }
            fed += w.len() as u64;
        }
    }
    cut.finish(&mut |part, s| {
        if part == Part::Tail {
            m.cr_tail = s == b"\r";
        }
        if let Some(&b) = s.last() {
            m.last = Some(b);
        }
    });
    m
}

/// The first `n` bytes of a message given in pieces.
fn first_bytes(pieces: &[&[u8]], n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n.min(4096));
    for p in pieces {
        let k = p.len().min(n - v.len());
        v.extend_from_slice(&p[..k]);
        if v.len() == n {
            break;
        }
    }
    v
}

/// Runs `pieces` through a [`Cut`] in windows, letting the mapped pages of each go behind it.
pub fn cut_windows(pieces: &[&[u8]], emit: &mut dyn FnMut(Part, &[u8])) {
    let mut cut = Cut::default();
    for p in pieces {
        let mut done = 0;
        for w in fsx::windows(p) {
            cut.feed(w, emit);
            done += w.len();
            fsx::release_through(p, done);
        }
    }
    cut.finish(emit);
}

/// UIDVALIDITY and last UID of an mbox, from the `X-IMAPbase` (or `X-IMAP`) field of its
/// first message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImapBase {
    pub validity: u32,
    pub last_uid: u32,
}

impl ImapBase {
    pub fn parse(value: &[u8]) -> Option<ImapBase> {
        let v = headers::unfold(value);
        let s = std::str::from_utf8(&v).ok()?;
        let mut it = s.split_ascii_whitespace();
        let validity = it.next()?.parse().ok().filter(|&v| v > 0)?;
        let last_uid = it.next()?.parse().ok()?;
        Some(ImapBase { validity, last_uid })
    }
}

/// `Status`, `X-Status` and `X-Keywords` lines for `meta` (C-client/Dovecot letters); with
/// `all_old`, a new message is written old too.
pub fn status_lines(meta: &Meta, eol: &[u8], all_old: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let mut st = String::new();
    if meta.flags.contains(Flags::SEEN) {
        st.push('R');
    }
    if all_old || !meta.goes_to_new() {
        st.push('O');
    }
    if !st.is_empty() {
        v.extend_from_slice(format!("Status: {st}").as_bytes());
        v.extend_from_slice(eol);
    }
    let mut xs = String::new();
    for (f, c) in [(Flags::REPLIED, 'A'), (Flags::FLAGGED, 'F'), (Flags::DRAFT, 'T'), (Flags::TRASHED, 'D')] {
        if meta.flags.contains(f) {
            xs.push(c);
        }
    }
    if !xs.is_empty() {
        v.extend_from_slice(format!("X-Status: {xs}").as_bytes());
        v.extend_from_slice(eol);
    }
    if !meta.keywords.is_empty() {
        v.extend_from_slice(b"X-Keywords: ");
        v.extend_from_slice(meta.keywords.iter().collect::<Vec<_>>().join(" ").as_bytes());
        v.extend_from_slice(eol);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DateSource;

    #[test]
    fn status_letters() {
        let mut m = Meta::new(0, DateSource::Mtime);
        m.flags = Flags::parse("DFRST");
        m.keywords.insert("Work");
        let s = String::from_utf8(status_lines(&m, b"\n", false)).unwrap();
        assert_eq!(s, "Status: RO\nX-Status: AFTD\nX-Keywords: Work\n");
        let mut m = Meta::new(0, DateSource::Mtime);
        m.recent = true;
        assert!(status_lines(&m, b"\n", false).is_empty());
        assert_eq!(status_lines(&m, b"\n", true), b"Status: O\n");
    }

    fn write(flavour: Flavour, imap: Option<ImapBase>, msgs: &[(&[u8], &Meta, Option<u32>)]) -> Vec<u8> {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_root(t.path()).unwrap();
        let mut w = MboxWriter::create(&dir, OsStr::new("m"), flavour, None, false).unwrap();
        w.keep_imap_state(imap);
        for (b, m, u) in msgs {
            w.append(&[b], m, *u).unwrap();
        }
        w.commit(None, std::time::Duration::from_secs(1), &|_, _| Ok(()), &|| Ok(())).unwrap();
        std::fs::read(t.path().join("m")).unwrap()
    }

    fn seen() -> Meta {
        let mut m = Meta::new(0, DateSource::Mtime);
        m.flags = Flags::parse("S");
        m
    }

    /// The Dovecot flavour is what Dovecot writes (FORMATS.md §6.3): the message's own state
    /// fields go, Dovecot's come last in its order, the body is not quoted, the UIDVALIDITY
    /// kept and the last UID filled in at the end.
    #[test]
    fn dovecot_flavour_as_dovecot_writes_it() {
        let m = seen();
        let base = Some(ImapBase { validity: 1234, last_uid: 7 });
        let a: &[u8] = b"Subject: s\nStatus: RO\nX-UID: 99\n\nFrom here\n>From there\n";
        let out = write(Flavour::Dovecot, base, &[(a, &m, None), (b"Subject: t\n\nx\n", &m, None)]);
        let want = "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: s\nX-IMAPbase: 1234 0000000009\nX-UID: 8\n\
            Status: RO\nContent-Length: 22\n\nFrom here\n>From there\n\n\
            From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: t\nX-UID: 9\nStatus: RO\nContent-Length: 2\n\nx\n\n";
        assert_eq!(String::from_utf8_lossy(&out), want);
    }

    /// A kept message keeps its UID while UIDs increase; one out of order, and every new one,
    /// gets the next free one above the old last UID.
    #[test]
    fn uids_are_kept_in_order_and_never_reused() {
        let m = seen();
        let b: &[u8] = b"S: x\n\nb\n";
        let out = write(
            Flavour::Dovecot,
            Some(ImapBase { validity: 5, last_uid: 20 }),
            &[(b, &m, Some(3)), (b, &m, Some(10)), (b, &m, Some(4)), (b, &m, None)],
        );
        let uids: Vec<&str> = out
            .split(|&c| c == b'\n')
            .filter_map(|l| l.strip_prefix(b"X-UID: "))
            .map(|u| std::str::from_utf8(u).unwrap())
            .collect();
        assert_eq!(uids, ["3", "10", "21", "22"]);
        assert!(out.windows(27).any(|w| w == b"X-IMAPbase: 5 0000000022\nX-"));
    }

    /// A keyword letter a Maildir source had no name for has no place in an mbox.
    #[test]
    fn unnamed_letters_are_left_out() {
        let mut m = seen();
        m.add_letter(0, Some("$Junk"));
        m.add_letter(11, None);
        let out = write(Flavour::Dovecot, None, &[(b"S: x\n\nb\n", &m, None)]);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("X-Keywords: $Junk\n") && !text.contains("unknown"), "{text}");
    }

    /// mboxrd quotes and writes no UIDs; without keywords or an old UIDVALIDITY no X-IMAPbase.
    #[test]
    fn mboxrd_flavour_quotes() {
        let m = seen();
        let out = write(Flavour::Mboxrd, None, &[(b"S: x\n\nFrom a\n>From b\n", &m, None)]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nS: x\nStatus: RO\n\n>From a\n>>From b\n\n"
        );
    }

    proptest::proptest! {
        /// Whatever the flavour, a message read back from the file (as a target is read) has
        /// the identity and flags it was written with: header-less messages, messages without
        /// a final newline, CRLF, quoted-looking lines and state fields of their own included.
        #[test]
        fn every_flavour_reads_back(
            msgs in proptest::collection::vec(proptest::collection::vec(proptest::sample::select(vec![
                "Subject: s", "Status: RO", "X-Mozilla-Status: 0001", " cont", "", "From here", ">From x",
                "text", "Content-Length: 3", "\r", "X-UID: 4", "From a@b Mon Jan  1 00:00:00 2024",
            ]), 0..8), 1..4),
            flags in proptest::collection::vec(0u8..32, 4),
            nl in proptest::collection::vec(proptest::bool::ANY, 4),
        ) {
            use crate::store::mbox::read::{MboxFile, ReadOptions};
            use crate::sync::Identity;
            let bodies: Vec<Vec<u8>> = msgs.iter().zip(&nl).map(|(l, nl)| {
                let mut b = l.join("\n").into_bytes();
                if *nl { b.push(b'\n'); }
                b
            }).collect();
            let metas: Vec<Meta> = flags.iter().map(|f| {
                let mut m = Meta::new(0, DateSource::Mtime);
                for (bit, fl) in [Flags::DRAFT, Flags::FLAGGED, Flags::REPLIED, Flags::SEEN, Flags::TRASHED].into_iter().enumerate() {
                    if f & (1 << bit) != 0 {
                        m.flags.insert(fl);
                    }
                }
                m
            }).collect();
            for flavour in Flavour::ALL {
                let input: Vec<(&[u8], &Meta, Option<u32>)> =
                    bodies.iter().zip(&metas).map(|(b, m)| (&b[..], m, None)).collect();
                let out = write(flavour, None, &input);
                let t = tempfile::tempdir().unwrap();
                let p = t.path().join("m");
                std::fs::write(&p, &out).unwrap();
                let f = MboxFile::open(&p).unwrap();
                let ro = ReadOptions { variant: flavour.variant(), as_target: true, ..Default::default() };
                let back: Vec<_> = f.entries(&ro).map(|e| f.message(&e, &ro)).collect();
                proptest::prop_assert_eq!(back.len(), bodies.len(), "{:?} {}", flavour, String::from_utf8_lossy(&out));
                for ((b, m), r) in bodies.iter().zip(&metas).zip(&back) {
                    proptest::prop_assert_eq!(Identity::Mbox.hash(&r.pieces), Identity::Mbox.hash(&[b]),
                        "{:?}: {:?} came back as {:?}", flavour, String::from_utf8_lossy(b), r.pieces);
                    proptest::prop_assert_eq!(r.meta.flags, m.flags, "{:?} {}", flavour, String::from_utf8_lossy(&out));
                }
            }
        }
    }
}
