//! Writing an mbox file (mboxrd, RFC 4155).
//!
//! Each message gets a From_ line with its envelope sender and its internal date in asctime
//! UTC, `Status`/`X-Status`/`X-Keywords` from its flags (inserted at the end of its header
//! block, in the message's own line-end style), mboxrd quoting of `^>*From ` lines, and one
//! empty line after it. The whole file is written under a temporary name in the same directory
//! and renamed over the target, so a reader sees the old file or the new one, never a mix.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use memchr::memmem;

use super::date::asctime_utc;
use super::headers;
use super::read::envelope_sender;
use crate::error::{At, Error, Result};
use crate::flags::Flags;
use crate::fsx::{self, Dir, Owner};
use crate::message::Meta;

/// Durable mode starts the disk writes every this many bytes.
const KICK_BYTES: u64 = 8 << 20;

pub struct MboxWriter {
    dir: Dir,
    name: String,
    tmp_name: String,
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

impl MboxWriter {
    /// Starts writing `path` (a file in an existing directory) under a temporary name.
    pub fn create(path: &Path, owner: Option<Owner>, durable: bool) -> Result<MboxWriter> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(OsStr::to_str)
            .ok_or_else(|| Error::bad(path, "not a usable file name"))?
            .to_string();
        let dir = Dir::open_root(parent)?;
        let tmp_name = format!(".{name}.mailmover-{}.tmp", std::process::id());
        let _ = dir.unlink(OsStr::new(&tmp_name));
        let f = dir.create_file(OsStr::new(&tmp_name), 0o600)?;
        if let Some(o) = owner {
            o.apply(f.as_raw_fd(), path)?;
        }
        Ok(MboxWriter {
            dir,
            name,
            tmp_name,
            out: BufWriter::with_capacity(1 << 20, f),
            path: path.to_path_buf(),
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
        write_quoted(w, &bytes[head_end..], p)?;
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

    /// Finishes the file and renames it into place.
    pub fn commit(self) -> Result<()> {
        let MboxWriter { dir, name, tmp_name, out, path, owner: _, durable, .. } = self;
        let f = out.into_inner().map_err(|e| Error::Io { path: path.clone(), source: e.into_error() })?;
        if durable {
            f.sync_all().at(&path)?;
        }
        drop(f);
        dir.rename_replace(OsStr::new(&tmp_name), &dir, OsStr::new(&name))?;
        if durable {
            dir.fsync()?;
        }
        Ok(())
    }

    /// Gives up: the temporary file is removed, the target is untouched.
    pub fn abort(self) {
        let _ = self.dir.unlink(OsStr::new(&self.tmp_name));
    }

    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }
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
