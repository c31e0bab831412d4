//! The header block of a message: where each field starts and ends, so fields can be read
//! (flags) or cut out (mbox-internal headers) without copying the message.

use std::ops::Range;

/// One header field, continuation lines included.
#[derive(Debug, Clone)]
pub struct Field {
    /// The whole field with its line ends.
    pub range: Range<usize>,
    /// The name, without the colon and trailing blanks.
    pub name: Range<usize>,
    /// The value after the colon, continuation lines included, line ends included.
    pub value: Range<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct HeaderBlock {
    pub fields: Vec<Field>,
    /// Offset of the empty line that ends the header block, or the message length.
    pub end: usize,
    /// An empty line ended the header block.
    pub terminated: bool,
    /// Every line of the block is a field or a continuation (`Name: value` shape).
    pub all_fields: bool,
}

impl HeaderBlock {
    pub fn get<'a>(&self, msg: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|f| msg[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| &msg[f.value.clone()])
    }

    pub fn get_all<'a>(&'a self, msg: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |f| msg[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(move |f| &msg[f.value.clone()])
    }
}

fn line_end(msg: &[u8], pos: usize) -> usize {
    match memchr::memchr(b'\n', &msg[pos..]) {
        Some(i) => pos + i + 1,
        None => msg.len(),
    }
}

pub fn is_blank_line(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// Scans the header block of `msg`.
pub fn scan(msg: &[u8]) -> HeaderBlock {
    // Room for a typical header block at once: growing the list field by field costs
    // reallocations that contend between worker threads.
    let mut hb = HeaderBlock { all_fields: true, fields: Vec::with_capacity(32), ..Default::default() };
    let mut pos = 0;
    while pos < msg.len() {
        let le = line_end(msg, pos);
        let line = &msg[pos..le];
        if is_blank_line(line) {
            hb.end = pos;
            hb.terminated = true;
            return hb;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(last) = hb.fields.last_mut() {
                last.range.end = le;
                last.value.end = le;
            } else {
                hb.all_fields = false;
            }
        } else {
            match field_name_len(line) {
                Some((name_len, colon)) => {
                    hb.fields.push(Field { range: pos..le, name: pos..pos + name_len, value: pos + colon + 1..le })
                }
                None => {
                    hb.all_fields = false;
                    hb.fields.push(Field { range: pos..le, name: pos..pos, value: pos..le });
                }
            }
        }
        pos = le;
    }
    hb.end = msg.len();
    hb
}

/// Whether a line has the `Name: value` shape of a header field.
pub fn is_field_line(line: &[u8]) -> bool {
    field_name_len(line).is_some()
}

/// Length of the field name and offset of the colon, when the line has the `Name: value` shape
/// (printable characters, then optional blanks, then a colon).
/// The colon of a field comes within this many bytes of the line's start: further on, the
/// line is taken as text (the mbox writer's streaming cut looks no further).
pub const NAME_WINDOW: usize = 64;

fn field_name_len(line: &[u8]) -> Option<(usize, usize)> {
    let n = line.iter().position(|&b| !(33..=126).contains(&b) || b == b':')?;
    if n == 0 {
        return None;
    }
    let mut i = n;
    while matches!(line.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    (line.get(i) == Some(&b':') && i < NAME_WINDOW).then_some((n, i))
}

/// A header value with folding undone and blanks trimmed.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b'\t' => out.push(b' '),
            _ => out.push(b),
        }
    }
    let s = out.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(out.len());
    let e = out.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |i| i + 1);
    out[s..e].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_continuations() {
        let m = b"Subject: a\r\n b\r\nStatus: RO\nFrom : x\n\nbody\n";
        let hb = scan(m);
        assert!(hb.terminated && hb.all_fields);
        assert_eq!(hb.fields.len(), 3);
        assert_eq!(unfold(hb.get(m, "subject").unwrap()), b"a b");
        assert_eq!(unfold(hb.get(m, "STATUS").unwrap()), b"RO");
        assert_eq!(unfold(hb.get(m, "From").unwrap()), b"x");
        assert_eq!(&m[hb.end..hb.end + 1], b"\n");
    }

    #[test]
    fn body_only_message() {
        let hb = scan(b"just text\nmore\n");
        assert!(!hb.all_fields && !hb.terminated);
    }

    #[test]
    fn truncated_in_headers() {
        let hb = scan(b"From: x@y\nSubj");
        assert!(!hb.terminated);
        assert!(!hb.all_fields, "the cut line has no colon yet");
        let hb = scan(b"From: x@y\nSubject: cut");
        assert!(hb.all_fields && !hb.terminated);
    }
}
