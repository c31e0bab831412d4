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

use memchr::memmem;
use sha2::{Digest, Sha256};

use super::date::asctime_utc;
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
    /// Bytes appended, and how many of them were already handed to the disk (durable mode).
    written: u64,
    kicked: u64,
    pub messages: u64,
    /// Keywords to list in the first message's X-IMAPbase (Dovecot honours X-Keywords only for
    /// keywords listed there).
    keywords: Vec<String>,
}

impl<'d> MboxWriter<'d> {
    /// Starts writing the mbox `name` of `dir` under a temporary name there, created 0600 and
    /// owned by `owner` (`--owner`; as root without it: as `dir`) before anything is written
    /// to it.
    pub fn create(dir: &'d Dir, name: &OsStr, owner: Option<Owner>, durable: bool) -> Result<MboxWriter<'d>> {
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
            written: 0,
            kicked: 0,
            messages: 0,
            keywords: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keywords used anywhere in the file, announced in the first message's X-IMAPbase.
    pub fn set_keywords(&mut self, keywords: Vec<String>) {
        self.keywords = keywords;
    }

    /// Appends one message given as the bytes to store (no From_ line, no mbox headers).
    pub fn append(&mut self, pieces: &[&[u8]], meta: &Meta) -> Result<()> {
        let msg: Vec<u8>;
        let bytes: &[u8] = if pieces.len() == 1 {
            pieces[0]
        } else {
            msg = pieces.concat();
            &msg
        };
        let head = &bytes[..bytes.len().min(64 * 1024)];
        let sender = envelope_sender(head);
        let p = &self.path;
        let w = &mut self.out;
        writeln!(w, "From {} {}", sender, asctime_utc(meta.date)).at(p)?;
        let hb = headers::scan(bytes);
        let crlf = memchr::memchr(b'\n', bytes).is_some_and(|n| n > 0 && bytes[n - 1] == b'\r');
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut status = Vec::new();
        if self.messages == 0 && !self.keywords.is_empty() {
            // UIDVALIDITY is the time of writing, as Dovecot does; UIDs are left to the reader.
            let validity = chrono::Utc::now().timestamp().clamp(1, i64::from(u32::MAX));
            status
                .extend_from_slice(format!("X-IMAPbase: {validity} 0000000000 {}", self.keywords.join(" ")).as_bytes());
            status.extend_from_slice(eol);
        }
        status.extend(status_lines(meta, eol));
        let (head_end, can_insert) = if hb.terminated {
            (hb.end, true)
        } else if hb.all_fields && bytes.ends_with(b"\n") {
            (bytes.len(), true)
        } else {
            (0, false)
        };
        write_quoted(w, &bytes[..head_end], p)?;
        if can_insert {
            w.write_all(&status).at(p)?;
        }
        // In windows that end at line ends (quoting looks at line starts), each let go of
        // once written when it lies in a mapped source: memory stays flat for a huge message.
        let mut body = &bytes[head_end..];
        while !body.is_empty() {
            let cut = if body.len() <= fsx::WINDOW {
                body.len()
            } else {
                memchr::memrchr(b'\n', &body[..fsx::WINDOW])
                    .or_else(|| memchr::memchr(b'\n', &body[fsx::WINDOW..]).map(|i| i + fsx::WINDOW))
                    .map_or(body.len(), |i| i + 1)
            };
            write_quoted(w, &body[..cut], p)?;
            fsx::release_through(bytes, bytes.len() - body.len() + cut);
            body = &body[cut..];
        }
        if !bytes.ends_with(b"\n") {
            w.write_all(eol).at(p)?;
        }
        w.write_all(eol).at(p)?;
        self.messages += 1;
        self.written += bytes.len() as u64;
        if self.durable && self.written - self.kicked >= KICK_BYTES {
            // What the buffer has passed on so far goes to the disk now, not all at the final fsync.
            fsx::start_writeback_range(self.out.get_ref(), self.kicked, 0);
            self.kicked = self.written;
        }
        Ok(())
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
        let MboxWriter { dir, name, tmp_name, out, path, owner, durable, .. } = self;
        let mut f = out.into_inner().map_err(|e| Error::Io { path: path.clone(), source: e.into_error() })?;
        let locked = WriteLock::take(dir, &name, wait)?;
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

    /// Gives up: the temporary file is removed, the target is untouched.
    pub fn abort(self) {
        let _ = self.dir.unlink(&self.tmp_name);
    }

    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }
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

/// `Status`, `X-Status` and `X-Keywords` lines for `meta` (C-client/Dovecot letters).
pub fn status_lines(meta: &Meta, eol: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut st = String::new();
    if meta.flags.contains(Flags::SEEN) {
        st.push('R');
    }
    if !meta.goes_to_new() {
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

/// Writes `b` with mboxrd quoting: every line matching `^>*From ` gets one more `>`.
fn write_quoted(w: &mut impl Write, b: &[u8], p: &Path) -> Result<()> {
    let mut pos = 0;
    for i in memmem::find_iter(b, b"From ") {
        let mut j = i;
        while j > 0 && b[j - 1] == b'>' {
            j -= 1;
        }
        if j == 0 || b[j - 1] == b'\n' {
            w.write_all(&b[pos..j]).at(p)?;
            w.write_all(b">").at(p)?;
            pos = j;
        }
    }
    w.write_all(&b[pos..]).at(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DateSource;

    #[test]
    fn quoting() {
        let mut v = Vec::new();
        write_quoted(&mut v, b"From a\n>From b\nx From c\n>>From d", Path::new("x")).unwrap();
        assert_eq!(v, b">From a\n>>From b\nx From c\n>>>From d");
    }

    #[test]
    fn status_letters() {
        let mut m = Meta::new(0, DateSource::Mtime);
        m.flags = Flags::parse("DFRST");
        m.keywords.insert("Work");
        let s = String::from_utf8(status_lines(&m, b"\n")).unwrap();
        assert_eq!(s, "Status: RO\nX-Status: AFTD\nX-Keywords: Work\n");
        let mut m = Meta::new(0, DateSource::Mtime);
        m.recent = true;
        assert!(status_lines(&m, b"\n").is_empty());
    }
}
