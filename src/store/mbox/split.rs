//! Splitting an mbox into messages.
//!
//! Design: a From_ line starts a message at the start of the file or right after an empty line,
//! and must carry a valid date (FORMATS.md §1.1); Python's "any `From ` line" rule would cut
//! messages at body text. The empty line before the next From_ line belongs to no message. A
//! `Content-Length` wins when it lands exactly on end of file or on a From_ line (Dovecot's
//! rule), so unquoted mboxcl2 bodies holding `From ` lines stay whole; one that lands anywhere
//! else is ignored. The splitter works on a byte slice (an mmap) and only yields ranges.

use std::ops::Range;

use memchr::memmem;

use super::date::{Zone, from_line_date};
use super::headers;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The From_ line without its line end.
    pub from_line: Range<usize>,
    /// The message as stored: after the From_ line, before the separating empty line.
    pub msg: Range<usize>,
    /// Delimited by a consistent Content-Length (then nothing is unquoted).
    pub by_length: bool,
    /// Why the message is incomplete, when it is.
    pub truncated: Option<&'static str>,
    /// A `>From ` line (one or more `>`) may be in the message: false only when splitting
    /// looked at every `From ` in it and none was quoted, so unquoting need not look again.
    pub maybe_quoted: bool,
}

/// Offset of the first From_ line, skipping leading empty lines; `None` when the data is not an
/// mbox. Empty data is an empty mbox (`Some(0)`).
pub fn mbox_start(data: &[u8]) -> Option<usize> {
    let mut p = 0;
    while p < data.len() {
        if data[p..].starts_with(b"From ") {
            return Some(p);
        }
        let le = line_end(data, p);
        if !headers::is_blank_line(&data[p..le]) {
            return None;
        }
        p = le;
    }
    Some(data.len())
}

/// Whether a consistent `Content-Length` delimits a message (mboxcl, mboxcl2, auto) or only
/// From_ lines do (mboxrd, mboxo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentLength {
    Used,
    Ignored,
}

pub struct Splitter<'a> {
    data: &'a [u8],
    pos: usize,
    length: ContentLength,
    finder: memmem::Finder<'static>,
}

impl<'a> Splitter<'a> {
    /// `data` must start at a From_ line (see [`mbox_start`]).
    pub fn new(data: &'a [u8], start: usize, length: ContentLength) -> Splitter<'a> {
        Splitter { data, pos: start, length, finder: memmem::Finder::new(b"From ") }
    }

    /// Offset of the next unread byte (the next From_ line).
    pub fn position(&self) -> usize {
        self.pos
    }

    fn by_length(&self, start: usize) -> Result<Option<(usize, usize)>, ()> {
        let d = self.data;
        let hb = headers::scan(&d[start..]);
        if !hb.terminated {
            return Ok(None);
        }
        let Some(v) = hb.get(&d[start..], "Content-Length") else { return Ok(None) };
        let v = headers::unfold(v);
        let Some(cl) = std::str::from_utf8(&v).ok().and_then(|s| s.parse::<usize>().ok()) else {
            return Ok(None);
        };
        let blank = start + hb.end;
        let body = blank + if d[blank..].starts_with(b"\r\n") { 2 } else { 1 };
        let Some(e) = body.checked_add(cl) else { return Err(()) };
        let n = d.len();
        if e > n {
            return Err(());
        }
        // With no body and nothing between it and the next From_ line (or the end), the
        // empty line after the header block is the separator: so Dovecot reads, and so a
        // message without a header block of its own is written (its fields after its text).
        let end = if cl == 0 { blank } else { e };
        if e == n {
            return Ok(Some((end, n)));
        }
        if &d[e..] == b"\n" || &d[e..] == b"\r\n" {
            return Ok(Some((e, n)));
        }
        for sep in [&b"\n"[..], b"\r\n", b""] {
            let f = e + sep.len();
            if d[e..].starts_with(sep) && d[f..].starts_with(b"From ") && is_from_line(d, f) {
                return Ok(Some((if sep.is_empty() { end } else { e }, f)));
            }
        }
        Ok(None)
    }

    /// End of the message starting at `start` by the From_ rule: (message end, next From_ line,
    /// whether a quoted `>From ` line was passed on the way).
    fn by_from_lines(&self, start: usize) -> (usize, usize, bool) {
        let d = self.data;
        let mut from = start;
        let mut quoted = false;
        // Every `From ` is looked at once: at a line start it may be the next From_ line,
        // after `>`s at a line start it is a quoted line.
        // Searched a window at a time: the pages of a huge message are let go behind the
        // search when the file is mapped (its bytes are read again when they are copied).
        let window = crate::fsx::WINDOW;
        loop {
            let upto = d.len().min(from.saturating_add(window));
            let Some(i) = self.finder.find(&d[from..upto]) else {
                if upto == d.len() {
                    break;
                }
                // The next window starts 4 bytes back: a "From " across the cut is found.
                crate::fsx::release_through(d, upto - 4);
                from = upto - 4;
                continue;
            };
            let f = from + i;
            from = f + 5;
            if f > start && d[f - 1] == b'>' {
                let mut j = f - 1;
                while j > start && d[j - 1] == b'>' {
                    j -= 1;
                }
                quoted |= j == start || d[j - 1] == b'\n';
                continue;
            }
            if let Some(ls) = blank_line_before(d, start, f)
                && is_from_line(d, f)
            {
                return (ls, f, quoted);
            }
        }
        let n = d.len();
        match last_line_start(d, start) {
            Some(ls) if headers::is_blank_line(&d[ls..n]) => (ls, n, quoted),
            _ => (n, n, quoted),
        }
    }
}

impl Iterator for Splitter<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let d = self.data;
        if self.pos >= d.len() {
            return None;
        }
        let le = line_end(d, self.pos);
        let mut fe = le;
        while fe > self.pos && matches!(d[fe - 1], b'\n' | b'\r') {
            fe -= 1;
        }
        let from_line = self.pos..fe;
        let start = le;
        let mut past_eof = false;
        if self.length == ContentLength::Used {
            match self.by_length(start) {
                Ok(Some((end, next))) => {
                    self.pos = next;
                    return Some(Entry {
                        from_line,
                        msg: start..end,
                        by_length: true,
                        truncated: None,
                        maybe_quoted: true,
                    });
                }
                Ok(None) => {}
                Err(()) => past_eof = true,
            }
        }
        let (end, next, quoted) = self.by_from_lines(start);
        self.pos = next;
        let at_eof = next >= d.len();
        let mut truncated = None;
        if at_eof && past_eof {
            truncated = Some("message truncated: its Content-Length runs past end of file");
        } else if at_eof && end == d.len() && end > start && d[end - 1] != b'\n' && cut_in_headers(&d[start..end]) {
            truncated = Some("message truncated inside its header block (no empty line, no final newline)");
        }
        Some(Entry { from_line, msg: start..end, by_length: false, truncated, maybe_quoted: quoted })
    }
}

/// A message without a final newline that ends inside its header block: its first line and
/// every complete line are header fields (the last, partial line may be cut anywhere). A first
/// line that is not a field makes it a body-only message, which is complete.
fn cut_in_headers(msg: &[u8]) -> bool {
    let first_end = memchr::memchr(b'\n', msg).unwrap_or(msg.len());
    if !headers::is_field_line(&msg[..first_end]) {
        return false;
    }
    let complete = memchr::memrchr(b'\n', msg).map_or(0, |i| i + 1);
    let hb = headers::scan(&msg[..complete]);
    !hb.terminated && hb.all_fields
}

fn line_end(d: &[u8], pos: usize) -> usize {
    match memchr::memchr(b'\n', &d[pos..]) {
        Some(i) => pos + i + 1,
        None => d.len(),
    }
}

/// Start of the empty line that ends right before `f`, if that line is empty and not before
/// `start`.
fn blank_line_before(d: &[u8], start: usize, f: usize) -> Option<usize> {
    if f > start && d[f - 1] == b'\n' {
        if f >= start + 2 && d[f - 2] == b'\r' && (f == start + 2 || d[f - 3] == b'\n') {
            return Some(f - 2);
        }
        if f == start + 1 || d[f - 2] == b'\n' {
            return Some(f - 1);
        }
    }
    None
}

fn last_line_start(d: &[u8], start: usize) -> Option<usize> {
    let n = d.len();
    if n <= start {
        return None;
    }
    let body = &d[start..n - 1];
    Some(match memchr::memrchr(b'\n', body) {
        Some(i) => start + i + 1,
        None => start,
    })
}

/// A From_ line we split at: `From ` and a valid date.
pub fn is_from_line(d: &[u8], pos: usize) -> bool {
    if !d[pos..].starts_with(b"From ") {
        return false;
    }
    let le = line_end(d, pos);
    from_line_date(&d[pos..le], Zone::Utc).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(d: &[u8]) -> Vec<(Vec<u8>, bool, bool)> {
        let s = mbox_start(d).unwrap();
        Splitter::new(d, s, ContentLength::Used)
            .map(|e| (d[e.msg.clone()].to_vec(), e.by_length, e.truncated.is_some()))
            .collect()
    }

    const F: &str = "From a@b Mon Jan  2 15:04:05 2006\n";

    /// `maybe_quoted` is false only when the message has no `>From ` line: checked against a
    /// line-by-line look over every arrangement of awkward lines.
    #[test]
    fn maybe_quoted_is_never_wrongly_false() {
        let lines = [
            "From x\n",
            ">From y\n",
            ">>From z\n",
            "a >From b\n",
            "\n",
            "t\n",
            ">\n",
            "From a@b Mon Jan  2 15:04:05 2006\n",
        ];
        for mask in 0..(8u32.pow(4)) {
            let mut d = format!("{F}A: 1\n\n");
            let mut m = mask;
            for _ in 0..4 {
                d.push_str(lines[(m % 8) as usize]);
                m /= 8;
            }
            let d = d.as_bytes();
            for e in Splitter::new(d, 0, ContentLength::Ignored) {
                let msg = &d[e.msg.clone()];
                let quoted = msg.split(|&b| b == b'\n').any(|l| {
                    let k = l.iter().take_while(|&&b| b == b'>').count();
                    k > 0 && l[k..].starts_with(b"From ")
                });
                assert!(e.maybe_quoted || !quoted, "{:?}", String::from_utf8_lossy(msg));
            }
        }
    }

    #[test]
    fn two_messages_blank_separator_excluded() {
        let d = format!("{F}A: 1\n\nx\n\n{F}B: 2\n\ny\n");
        let m = split(d.as_bytes());
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, b"A: 1\n\nx\n");
        assert_eq!(m[1].0, b"B: 2\n\ny\n");
    }

    #[test]
    fn from_without_date_or_blank_does_not_split() {
        let d = format!("{F}A: 1\n\nFrom here on\n\nFrom there\nFrom x Mon Jan  2 15:04:05 2006\n\n{F}B: 2\n\ny\n\n");
        let m = split(d.as_bytes());
        assert_eq!(m.len(), 2, "{m:?}");
    }

    #[test]
    fn content_length_keeps_body_from_lines() {
        let body = format!("q\n\n{F}end\n");
        let d = format!("{F}Content-Length: {}\n\n{body}\n{F}B: 2\n\ny\n", body.len());
        let m = split(d.as_bytes());
        assert_eq!(m.len(), 2);
        assert!(m[0].1);
    }

    /// A message with no header block of its own, as Dovecot rewrites it (its fields after
    /// its text, one empty line, the next From_ line or the end): that empty line separates.
    #[test]
    fn empty_body_before_the_next_from_line_ends_at_its_header() {
        let d = format!(
            "{F}X-UID: 1\nContent-Length: 0\ntext\nX-Status: F\n\n{F}B: 2\n\ny\n\n{F}Content-Length: 0\nlast\n\n"
        );
        let m = split(d.as_bytes());
        assert_eq!(m.len(), 3);
        assert!(m[0].1 && m[2].1);
        assert_eq!(m[0].0, b"X-UID: 1\nContent-Length: 0\ntext\nX-Status: F\n");
        assert_eq!(m[2].0, b"Content-Length: 0\nlast\n");
        // An empty body with its separator keeps the header block's empty line.
        let d = format!("{F}S: x\nContent-Length: 0\n\n\n{F}B: 2\n\ny\n");
        assert_eq!(split(d.as_bytes())[0].0, b"S: x\nContent-Length: 0\n\n");
    }

    #[test]
    fn lying_content_length_ignored() {
        let d = format!("{F}Content-Length: 3\n\nhello world\n\n{F}B: 2\n\ny\n");
        let m = split(d.as_bytes());
        assert_eq!(m.len(), 2);
        assert!(!m[0].1);
        assert_eq!(m[0].0, b"Content-Length: 3\n\nhello world\n");
    }

    #[test]
    fn content_length_past_eof_is_truncation() {
        let d = format!("{F}Content-Length: 300\n\nshort\n");
        let m = split(d.as_bytes());
        assert_eq!(m.len(), 1);
        assert!(m[0].2);
    }

    #[test]
    fn crlf_files() {
        let d = "From a@b Mon Jan  2 15:04:05 2006\r\nA: 1\r\n\r\nx\r\n\r\nFrom a@b Mon Jan  2 15:04:05 2006\r\nB: 2\r\n\r\ny\r\n\r\n";
        let m = split(d.as_bytes());
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, b"A: 1\r\n\r\nx\r\n");
        assert_eq!(m[1].0, b"B: 2\r\n\r\ny\r\n");
    }

    #[test]
    fn no_final_newline_and_truncated_headers() {
        let d = format!("{F}A: 1\n\nno newline");
        let m = split(d.as_bytes());
        assert_eq!(m[0].0, b"A: 1\n\nno newline");
        assert!(!m[0].2);
        let d = format!("{F}From: x@y\nSubject: cu");
        assert!(split(d.as_bytes())[0].2);
        let d = format!("{F}From: x@y\nSubj");
        assert!(split(d.as_bytes())[0].2, "the partial last line may be cut before its colon");
        let d = format!("{F}just a body line");
        assert!(!split(d.as_bytes())[0].2, "body-only message is not truncated");
    }

    #[test]
    fn leading_blank_lines_and_garbage() {
        assert_eq!(mbox_start(b"\n\r\nFrom x"), Some(3));
        assert_eq!(mbox_start(b"{\"json\": 1}\n"), None);
        assert_eq!(mbox_start(b""), Some(0));
    }

    #[test]
    fn empty_message_between_from_lines() {
        let d = format!("{F}\n{F}B: 2\n\ny\n");
        let m = split(d.as_bytes());
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, b"");
    }
}
