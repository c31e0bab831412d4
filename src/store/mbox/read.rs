//! Reading one mbox file: the splitter's ranges become messages with flags, keywords, dates
//! and the exact bytes to write, as a list of slices of the mapped file (quoting undone and
//! mbox-internal headers cut out without copying).

use std::fs::File;
use std::path::{Path, PathBuf};

use memchr::memmem;

use super::date::{self, Zone};
use super::headers::{self, HeaderBlock};
use super::lock;
use super::split::{self, ContentLength, Entry, Splitter};
use super::write::ImapBase;
use crate::error::{At, Error, Result};
use crate::flags::Flags;
use crate::fsx::{self, Mapped};
use crate::message::{DateSource, Meta};

/// Headers the mbox format keeps its own state in; removed on conversion unless asked not to.
pub const INTERNAL_HEADERS: [&str; 10] = [
    "Status",
    "X-Status",
    "X-Keywords",
    "X-Mozilla-Status",
    "X-Mozilla-Status2",
    "X-Mozilla-Keys",
    "X-UID",
    "X-IMAP",
    "X-IMAPbase",
    "Content-Length",
];

/// The fields an mbox keeps its own state in, as Dovecot hides them from clients: what an mbox
/// target holds besides the message (Thunderbird's X-Mozilla-* fields are part of a message
/// there; in an mbox source they are Thunderbird's state and go too).
pub const MBOX_STATE_HEADERS: [&str; 7] =
    ["Status", "X-Status", "X-Keywords", "X-UID", "X-IMAP", "X-IMAPbase", "Content-Length"];

/// How `>From ` lines were quoted by the writer (FORMATS.md §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Content-Length where it is consistent (then no unquoting), else mboxrd.
    Auto,
    Mboxrd,
    Mboxo,
    Mboxcl,
    Mboxcl2,
}

impl Variant {
    pub const ALL: [Variant; 5] = [Variant::Auto, Variant::Mboxrd, Variant::Mboxo, Variant::Mboxcl, Variant::Mboxcl2];

    /// Whether this variant's writers keep `Content-Length` right (auto checks it).
    pub fn content_length(self) -> ContentLength {
        match self {
            Variant::Auto | Variant::Mboxcl | Variant::Mboxcl2 => ContentLength::Used,
            Variant::Mboxrd | Variant::Mboxo => ContentLength::Ignored,
        }
    }

    /// The name `--mbox-variant` takes.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Auto => "auto",
            Variant::Mboxrd => "mboxrd",
            Variant::Mboxo => "mboxo",
            Variant::Mboxcl => "mboxcl",
            Variant::Mboxcl2 => "mboxcl2",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    pub variant: Variant,
    pub zone: Zone,
    pub keep_internal_headers: bool,
    /// Read as an mbox target: only [`MBOX_STATE_HEADERS`] are taken out and read for flags.
    pub as_target: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { variant: Variant::Auto, zone: Zone::Local, keep_internal_headers: false, as_target: false }
    }
}

/// An open, mapped mbox file.
pub struct MboxFile {
    pub path: PathBuf,
    map: Mapped,
    start: Option<usize>,
    mtime: i64,
    /// Kept open for the stamp checks (and, for a source, its shared lock).
    file: File,
    stamp: Stamp,
    /// Why a source is read without its shared lock, if it is.
    pub lock_warning: Option<String>,
}

/// What tells that a file changed: identity, size and times (ctime cannot be set back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(f: &File) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = f.metadata()?;
        Ok(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// One message of an mbox file.
#[derive(Debug)]
pub struct MboxMessage<'a> {
    /// Offset of the From_ line in the file.
    pub offset: u64,
    /// Stored length, From_ line to the end of the message.
    pub stored_len: u64,
    pub from_line: &'a [u8],
    pub pieces: Vec<&'a [u8]>,
    pub meta: Meta,
    /// The UW-IMAP/Dovecot "FOLDER INTERNAL DATA" pseudo message: not mail.
    pub pseudo: bool,
    pub truncated: Option<&'static str>,
    /// Thunderbird expunged (0x0008) or partial (0x0400) markers, for the report.
    pub mozilla_expunged: bool,
    pub mozilla_partial: bool,
    /// Its `X-UID`, and the `X-IMAPbase` (or a pseudo message's `X-IMAP`) it carries.
    pub uid: Option<u32>,
    pub imap_base: Option<ImapBase>,
}

impl MboxMessage<'_> {
    pub fn size(&self) -> u64 {
        self.pieces.iter().map(|p| p.len() as u64).sum()
    }
}

impl MboxFile {
    /// Opens an mbox to read it, without a lock (inspection, the check of a lone source).
    pub fn open(path: &Path) -> Result<MboxFile> {
        let file = fsx::open_source_nonblocking(path)?;
        MboxFile::from_file(file, path)
    }

    /// Opens a source mbox under a shared fcntl lock, as Dovecot reads one (FORMATS.md §6.5);
    /// when the lock cannot be had in [`lock::READ_WAIT`], it is read anyway and
    /// `lock_warning` says why.
    pub fn open_locked(path: &Path) -> Result<MboxFile> {
        MboxFile::from_file_locked(fsx::open_source_nonblocking(path)?, path)
    }

    /// [`MboxFile::open_locked`] for a file already opened (a target's, through its directory).
    pub fn from_file_locked(file: File, path: &Path) -> Result<MboxFile> {
        if !file.metadata().at(path)?.is_file() {
            return Err(Error::refused(path, "not a regular file"));
        }
        let warning = lock::read_lock(&file, lock::READ_WAIT).err();
        // A Ctrl-C ended the wait: the run stops here, nothing read without the lock.
        if let Some(sig) = crate::interrupt::requested() {
            return Err(Error::Interrupted(sig));
        }
        let mut f = MboxFile::from_file(file, path)?;
        f.lock_warning = warning;
        Ok(f)
    }

    pub fn from_file(file: File, path: &Path) -> Result<MboxFile> {
        let md = file.metadata().at(path)?;
        if !md.is_file() {
            return Err(Error::refused(path, "not a regular file"));
        }
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let stamp = Stamp::of(&file).at(path)?;
        let map = Mapped::new(&file, path)?;
        // Mapped after the stamp: a file that grew in between maps longer than its stamp says,
        // and `intact` reports it.
        let start = split::mbox_start(map.bytes());
        Ok(MboxFile { path: path.to_path_buf(), map, start, mtime, file, stamp, lock_warning: None })
    }

    /// The file's stamp when it was opened.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// Fails when the file shrank or was rewritten in place since it was opened: what was read
    /// from it cannot be trusted and must not be committed. Mail appended after the bytes read
    /// is no change to them (the next run copies it); a file replaced by rename leaves the
    /// opened one whole. A rewrite in place that also grew the file is not seen here: lock
    /// honouring writers (Dovecot) are kept out by the shared lock while it is read.
    pub fn intact(&self) -> Result<()> {
        let shrank = || {
            Error::bad(
                &self.path,
                "the file shrank while it was read (another program truncated or expunged it); this folder is not copied, run again",
            )
        };
        if self.map.faulted() {
            return Err(shrank());
        }
        let now = Stamp::of(&self.file).at(&self.path)?;
        if now.size < self.stamp.size {
            return Err(shrank());
        }
        if now.size == self.stamp.size && now.mtime != self.stamp.mtime {
            return Err(Error::bad(
                &self.path,
                "the file was rewritten while it was read (another program wrote to it); this folder is not copied, run again",
            ));
        }
        Ok(())
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    /// Drops the resident pages before `offset` (see [`Mapped::release_before`]).
    pub fn release_before(&self, offset: usize) {
        self.map.release_before(offset);
    }

    pub fn will_need(&self, offset: usize, len: usize) {
        self.map.will_need(offset, len);
    }

    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// Fails when the file is not an mbox (it does not start with a From_ line).
    pub fn check(&self) -> Result<()> {
        match self.start {
            Some(_) => Ok(()),
            None => Err(Error::of(
                crate::error::Kind::Malformed,
                &self.path,
                "not an mbox: the file does not start with a From_ line",
            )),
        }
    }

    pub fn entries(&self, opts: &ReadOptions) -> Splitter<'_> {
        let d = self.bytes();
        Splitter::new(d, self.start.unwrap_or(d.len()), opts.variant.content_length())
    }

    /// The messages from `offset` on (which must be at a From_ line, after any blank lines).
    pub fn entries_from(&self, opts: &ReadOptions, offset: usize) -> Splitter<'_> {
        let d = self.bytes();
        let skip = d.get(offset..).map_or(0, |t| t.iter().take_while(|&&b| b == b'\n' || b == b'\r').count());
        Splitter::new(d, (offset + skip).min(d.len()), opts.variant.content_length())
    }

    pub fn message<'a>(&'a self, e: &Entry, opts: &ReadOptions) -> MboxMessage<'a> {
        parse_message(self.bytes(), e, opts, self.mtime)
    }

    /// The UIDVALIDITY and last UID Dovecot keeps in the first message's `X-IMAPbase` (or a
    /// pseudo message's `X-IMAP`): then the messages' `X-UID`s are their UIDs.
    pub fn imap_base(&self) -> Option<ImapBase> {
        let ro = ReadOptions::default();
        let first = self.entries(&ro).next()?;
        self.message(&first, &ro).imap_base
    }
}

pub fn parse_message<'a>(d: &'a [u8], e: &Entry, opts: &ReadOptions, file_mtime: i64) -> MboxMessage<'a> {
    let msg = &d[e.msg.clone()];
    let hb = headers::scan(msg);
    let from_line = &d[e.from_line.clone()];

    let (date, source) = if let Some(t) = date::from_line_date(from_line, opts.zone) {
        (t, DateSource::FromLine)
    } else if let Some(t) = hb.get(msg, "Received").and_then(received_date) {
        (t, DateSource::Received)
    } else if let Some(t) = hb.get(msg, "Date").and_then(date::header_date) {
        (t, DateSource::DateHeader)
    } else {
        (file_mtime, DateSource::FileMtime)
    };
    let mut meta = Meta::new(date, source);
    let st = status_flags(msg, &hb, &mut meta, !opts.as_target);

    let unquote = match opts.variant {
        Variant::Auto | Variant::Mboxrd => Unquote::Rd,
        Variant::Mboxo | Variant::Mboxcl => Unquote::O,
        Variant::Mboxcl2 => Unquote::None,
    };
    let unquote =
        if (e.by_length && opts.variant == Variant::Auto) || !e.maybe_quoted { Unquote::None } else { unquote };
    let strip: &[&str] = match (opts.keep_internal_headers, opts.as_target) {
        (true, _) => &[],
        (false, false) => &INTERNAL_HEADERS,
        (false, true) => &MBOX_STATE_HEADERS,
    };
    let pieces = pieces(msg, &hb, unquote, strip, e.by_length);
    let pseudo = hb.get(msg, "X-IMAP").is_some()
        && hb.get(msg, "Subject").is_some_and(|s| memmem::find(s, b"FOLDER INTERNAL DATA").is_some());
    let uid = hb.get(msg, "X-UID").and_then(|v| std::str::from_utf8(&headers::unfold(v)).ok()?.parse().ok());
    let imap_base = hb.get(msg, "X-IMAPbase").or_else(|| hb.get(msg, "X-IMAP")).and_then(ImapBase::parse);
    MboxMessage {
        offset: e.from_line.start as u64,
        stored_len: (e.msg.end - e.from_line.start) as u64,
        from_line,
        pieces,
        meta,
        pseudo,
        truncated: e.truncated,
        mozilla_expunged: st.expunged,
        mozilla_partial: st.partial,
        uid,
        imap_base,
    }
}

fn received_date(v: &[u8]) -> Option<i64> {
    let i = memchr::memrchr(b';', v)?;
    date::header_date(&v[i + 1..])
}

#[derive(Default)]
struct MozillaState {
    expunged: bool,
    partial: bool,
}

/// Flags and keywords from Status, X-Status, X-Keywords and Thunderbird's headers
/// (FORMATS.md §1.3, §1.4). Note the crossed letters: mbox `D` is deleted (Maildir `T`), mbox
/// `T` is draft (Maildir `D`).
fn status_flags(msg: &[u8], hb: &HeaderBlock, meta: &mut Meta, mozilla: bool) -> MozillaState {
    let mut moz = MozillaState::default();
    let mut old = false;
    if let Some(v) = hb.get(msg, "Status") {
        for &c in v {
            match c {
                b'R' => meta.flags.insert(Flags::SEEN),
                b'O' => old = true,
                _ => {}
            }
        }
    }
    if let Some(v) = hb.get(msg, "X-Status") {
        for &c in v {
            match c {
                b'A' => meta.flags.insert(Flags::REPLIED),
                b'F' => meta.flags.insert(Flags::FLAGGED),
                b'T' => meta.flags.insert(Flags::DRAFT),
                b'D' => meta.flags.insert(Flags::TRASHED),
                _ => {}
            }
        }
    }
    if let Some(v) = hb.get(msg, "X-Mozilla-Status").and_then(hex_value).filter(|_| mozilla) {
        for (bit, f) in [
            (0x1, Flags::SEEN),
            (0x2, Flags::REPLIED),
            (0x4, Flags::FLAGGED),
            (0x8, Flags::TRASHED),
            (0x1000, Flags::PASSED),
        ] {
            if v & bit != 0 {
                meta.flags.insert(f);
            }
        }
        moz.expunged = v & 0x8 != 0;
        moz.partial = v & 0x400 != 0;
    }
    if let Some(v) = hb.get(msg, "X-Mozilla-Status2").and_then(hex_value)
        && mozilla
        && v & 0x0020_0000 != 0
    {
        meta.flags.insert(Flags::TRASHED);
    }
    for name in ["X-Keywords", "X-Mozilla-Keys"].into_iter().filter(|n| mozilla || *n == "X-Keywords") {
        for v in hb.get_all(msg, name) {
            meta.keywords.extend_from_header(v);
        }
    }
    meta.recent = !old && meta.flags.is_empty() && meta.keywords.is_empty();
    moz
}

fn hex_value(v: &[u8]) -> Option<u32> {
    let s = headers::unfold(v);
    let s = std::str::from_utf8(&s).ok()?;
    u32::from_str_radix(s.split_whitespace().next()?, 16).ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unquote {
    None,
    /// mboxo: `^>From ` loses its `>`.
    O,
    /// mboxrd: `^>+From ` loses one `>`.
    Rd,
}

/// The bytes to write, as slices: internal header fields cut, one `>` cut from quoted lines.
fn pieces<'a>(msg: &'a [u8], hb: &HeaderBlock, unquote: Unquote, strip: &[&str], by_length: bool) -> Vec<&'a [u8]> {
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    if !strip.is_empty() {
        for f in &hb.fields {
            let name = &msg[f.name.clone()];
            let internal = strip.iter().any(|h| name.eq_ignore_ascii_case(h.as_bytes()));
            // Content-Length is mbox state only when it delimited the message.
            let is_cl = name.eq_ignore_ascii_case(b"Content-Length");
            if internal && (!is_cl || by_length) {
                cuts.push((f.range.start, f.range.end));
            }
        }
    }
    if unquote != Unquote::None {
        for i in memmem::find_iter(msg, b"From ") {
            let mut j = i;
            while j > 0 && msg[j - 1] == b'>' {
                j -= 1;
            }
            let quotes = i - j;
            if quotes == 0 || (j > 0 && msg[j - 1] != b'\n') {
                continue;
            }
            if unquote == Unquote::O && quotes != 1 {
                continue;
            }
            if !cuts.iter().any(|&(s, e)| s <= j && j < e) {
                cuts.push((j, j + 1));
            }
        }
    }
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut pos = 0;
    for (s, e) in cuts {
        if s > pos {
            out.push(&msg[pos..s]);
        }
        pos = pos.max(e);
    }
    if pos < msg.len() || out.is_empty() {
        out.push(&msg[pos..]);
    }
    out
}

/// Envelope sender for a From_ line: Return-Path, else the From address, else MAILER-DAEMON.
pub fn envelope_sender(msg_head: &[u8]) -> String {
    let hb = headers::scan(msg_head);
    let end = if hb.terminated { hb.end } else { msg_head.len() };
    // Only the two fields looked at are parsed, in their order, when the block is clean:
    // parsing every field (Received lines most of all) cost more than the rest of the From_ line.
    let mut picked = Vec::new();
    let head = if hb.terminated && hb.all_fields {
        for f in &hb.fields {
            let name = &msg_head[f.name.clone()];
            if name.eq_ignore_ascii_case(b"Return-Path") || name.eq_ignore_ascii_case(b"From") {
                picked.extend_from_slice(&msg_head[f.range.clone()]);
            }
        }
        picked.extend_from_slice(b"\n");
        &picked[..]
    } else {
        // A private copy for the parser (see `date::from_line_date`).
        picked.extend_from_slice(&msg_head[..end]);
        &picked[..]
    };
    sender_of(head)
}

/// The From_ line sender of a parsed header block.
fn sender_of(head: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default().parse_headers(head);
    let pick = parsed.as_ref().and_then(|m| {
        m.return_address()
            .map(str::to_string)
            .or_else(|| m.from().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_string))
    });
    match pick {
        Some(a) if !a.is_empty() && a.bytes().all(|b| b > 0x20 && b < 0x7f) => a,
        _ => "MAILER-DAEMON".to_string(),
    }
}

/// Exposes the variant-independent splitter for callers that only count.
pub fn count_messages(d: &[u8]) -> usize {
    match split::mbox_start(d) {
        Some(s) => Splitter::new(d, s, ContentLength::Used).count(),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(msg: &str, variant: Variant) -> (Vec<u8>, Meta) {
        let d = format!("From a@b Mon Jan  2 15:04:05 2006\n{msg}");
        let d = d.as_bytes();
        let opts = ReadOptions { variant, zone: Zone::Utc, ..Default::default() };
        let e = Splitter::new(d, 0, ContentLength::Used).next().unwrap();
        let m = parse_message(d, &e, &opts, 0);
        (m.pieces.concat(), m.meta)
    }

    #[test]
    fn mboxrd_unquoting() {
        let (b, _) = one("S: x\n\n>From a\n>>From b\nx >From c\n>Fromage\n", Variant::Auto);
        assert_eq!(b, b"S: x\n\nFrom a\n>From b\nx >From c\n>Fromage\n");
        let (b, _) = one("S: x\n\n>From a\n>>From b\n", Variant::Mboxo);
        assert_eq!(b, b"S: x\n\nFrom a\n>>From b\n");
        let (b, _) = one(">From first line\n", Variant::Auto);
        assert_eq!(b, b"From first line\n");
    }

    #[test]
    fn status_headers_map_and_are_stripped() {
        let (b, m) =
            one("Subject: s\nStatus: RO\nX-Status: ADFT\nX-Keywords: $Junk Work\nX-UID: 4\n\nbody\n", Variant::Auto);
        assert_eq!(b, b"Subject: s\n\nbody\n");
        assert_eq!(m.flags.to_string(), "DFRST");
        assert_eq!(m.keywords.iter().collect::<Vec<_>>(), vec!["$Junk", "Work"]);
        assert!(!m.recent);
        assert_eq!(m.date, 1136214245);
    }

    #[test]
    fn mozilla_status() {
        let (_, m) = one("X-Mozilla-Status: 1005\nX-Mozilla-Status2: 00000000\n\nb\n", Variant::Auto);
        assert_eq!(m.flags.to_string(), "FPS");
        let (_, m) = one("X-Mozilla-Status: 0000\n\nb\n", Variant::Auto);
        assert!(m.recent);
        let (_, m) = one("Status: O\n\nb\n", Variant::Auto);
        assert!(!m.recent && m.flags.is_empty());
    }

    #[test]
    fn content_length_kept_when_it_did_not_delimit() {
        let (b, _) = one("Content-Length: 999\n\nb\n", Variant::Auto);
        assert_eq!(b, b"Content-Length: 999\n\nb\n");
        let (b, _) = one("Content-Length: 2\n\nb\n", Variant::Auto);
        assert_eq!(b, b"\nb\n");
    }

    #[test]
    fn sender() {
        assert_eq!(envelope_sender(b"Return-Path: <r@x.org>\nFrom: A <a@b.c>\n\n"), "r@x.org");
        assert_eq!(envelope_sender(b"From: A <a@b.c>\n\n"), "a@b.c");
        assert_eq!(envelope_sender(b"Subject: none\n\n"), "MAILER-DAEMON");
    }

    /// Parsing only Return-Path and From picks what parsing the whole block picks.
    #[test]
    fn sender_from_picked_fields_matches_whole_block() {
        let blocks: [&[u8]; 8] = [
            b"Received: from a (b [1.2.3.4])\n\tby c; Mon, 2 Jan 2006 15:04:05 +0000\nFrom: A <a@b.c>\nReturn-Path: <r@x.org>\n\n",
            b"Return-Path: <>\nFrom: A <a@b.c>\n\n",
            b"Return-Path: <first@x>\nReturn-Path: <second@x>\nFrom: b@c\n\n",
            b"From: =?utf-8?q?J=C3=B6rg?=\r\n <j@x.de>\r\nSubject: s\r\n\r\n",
            b"FROM: Team: a@b.c, d@e.f;\n\n",
            b"From: \"odd, name\" <o@x>, p@y\nTo: t@u\n\n",
            b"from: lower@x\nreturn-path: <rp@x>\n\n",
            b"Subject: only\nX: From: not@this\n\n",
        ];
        for b in blocks {
            assert_eq!(envelope_sender(b), sender_of(b), "{}", String::from_utf8_lossy(b));
        }
    }
}
