//! What an mbox holds of a message, whichever writer put it there, and the flavours mailmover
//! writes (FORMATS.md §1.2, §6.3).
//!
//! A message's identity in an mbox is its bytes without the fields the mbox keeps its state in
//! ([`super::read::MBOX_STATE_HEADERS`]) and without the flavour's quoting: the same whether mailmover wrote it
//! in any flavour, Dovecot rewrote it (adding `X-UID`, `X-IMAPbase`, `Content-Length`), or a
//! source carried `Status` lines of its own (mb2md). [`Cut`] takes those fields out of a
//! message fed in pieces, and [`Quoter`] adds mboxrd quoting to a stream; both keep a few bytes
//! of state only, so a message of any size streams through them.

use super::read::{MBOX_STATE_HEADERS, Variant};

/// How mailmover writes an mbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// Every line matching `^>*From ` gets one more `>`; flags in Status/X-Status/X-Keywords.
    /// Read back exactly by mutt, Thunderbird, Python's `mailbox` and mboxrd readers.
    Mboxrd,
    /// No quoting; a `Content-Length` header delimits each message.
    Mboxcl2,
    /// Dovecot's own: mboxcl2 with `X-IMAPbase` (UIDVALIDITY kept across rewrites) on the first
    /// message and an `X-UID` on each, so Dovecot serves the file as it is and never renumbers.
    Dovecot,
}

impl Flavour {
    pub const ALL: [Flavour; 3] = [Flavour::Mboxrd, Flavour::Mboxcl2, Flavour::Dovecot];

    /// The name `--mbox-format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Mboxrd => "mboxrd",
            Flavour::Mboxcl2 => "mboxcl2",
            Flavour::Dovecot => "dovecot",
        }
    }

    pub fn from_name(s: &str) -> Option<Flavour> {
        Flavour::ALL.into_iter().find(|f| f.name() == s)
    }

    /// How a file written in this flavour is read back: mboxrd bodies are unquoted whether or
    /// not a server added Content-Length since; the others are never unquoted.
    pub fn variant(self) -> Variant {
        match self {
            Flavour::Mboxrd => Variant::Mboxrd,
            Flavour::Mboxcl2 | Flavour::Dovecot => Variant::Mboxcl2,
        }
    }

    pub fn quotes(self) -> bool {
        self == Flavour::Mboxrd
    }

    pub fn content_length(self) -> bool {
        self != Flavour::Mboxrd
    }
}

/// Which part of the message a slice given out by [`Cut`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// A header line (or part of one) that is kept.
    Head,
    /// The empty line that ends the header block.
    Blank,
    Body,
    /// A last header line without a line end, too short to tell what it is.
    Tail,
}

/// Longest start of a header line looked at before it is taken as no field (as the header
/// scanner takes it).
use super::headers::NAME_WINDOW;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a header line (its first bytes are in `pending`).
    LineStart,
    /// Inside a header line, kept or skipped.
    InLine {
        skip: bool,
    },
    Body,
}

/// Takes the mbox-internal header fields (continuation lines included) out of a message fed in
/// pieces. The header block is every line up to the first empty one (as
/// [`super::headers::scan`] reads it); lines that are not fields stay.
pub struct Cut {
    state: State,
    pending: Vec<u8>,
    /// The field the current continuation lines belong to is internal.
    skipping: bool,
}

impl Default for Cut {
    fn default() -> Self {
        Cut { state: State::LineStart, pending: Vec::with_capacity(NAME_WINDOW), skipping: false }
    }
}

/// What the start of a header line is, once enough of it is known.
enum LineKind {
    Blank,
    Continuation,
    Field { internal: bool },
    Other,
}

fn classify(p: &[u8]) -> Option<LineKind> {
    match p {
        [] => None,
        [b'\n'] | [b'\r', b'\n'] => Some(LineKind::Blank),
        [b'\r'] => None,
        [b' ' | b'\t', ..] => Some(LineKind::Continuation),
        _ => {
            let name_end = p.iter().position(|&b| !(33..=126).contains(&b) || b == b':');
            let Some(n) = name_end else {
                return (p.len() >= NAME_WINDOW).then_some(LineKind::Other);
            };
            let mut i = n;
            while i < p.len() && matches!(p[i], b' ' | b'\t') {
                i += 1;
            }
            match p.get(i) {
                None if p.len() < NAME_WINDOW => None,
                Some(b':') if n > 0 => {
                    let name = &p[..n];
                    Some(LineKind::Field {
                        internal: MBOX_STATE_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h.as_bytes())),
                    })
                }
                _ => Some(LineKind::Other),
            }
        }
    }
}

impl Cut {
    /// Feeds the next bytes of the message; `emit` gets what stays, in order.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(Part, &[u8])) {
        while !data.is_empty() {
            match self.state {
                State::Body => {
                    emit(Part::Body, data);
                    return;
                }
                State::InLine { skip } => {
                    let end = memchr::memchr(b'\n', data).map(|i| i + 1);
                    let (line, rest) = data.split_at(end.unwrap_or(data.len()));
                    if !skip {
                        emit(Part::Head, line);
                    }
                    if end.is_some() {
                        self.state = State::LineStart;
                    }
                    data = rest;
                }
                State::LineStart => {
                    self.pending.push(data[0]);
                    data = &data[1..];
                    let Some(kind) = classify(&self.pending) else { continue };
                    let (skip, part) = match kind {
                        LineKind::Blank => {
                            emit(Part::Blank, &self.pending);
                            self.pending.clear();
                            self.state = State::Body;
                            continue;
                        }
                        LineKind::Continuation => (self.skipping, Part::Head),
                        LineKind::Field { internal } => (internal, Part::Head),
                        LineKind::Other => (false, Part::Head),
                    };
                    self.skipping = skip;
                    if !skip {
                        emit(part, &self.pending);
                    }
                    self.state =
                        if self.pending.last() == Some(&b'\n') { State::LineStart } else { State::InLine { skip } };
                    self.pending.clear();
                }
            }
        }
    }

    /// The end of the message: a line start still undecided is kept (it is no field).
    pub fn finish(&mut self, emit: &mut dyn FnMut(Part, &[u8])) {
        if !self.pending.is_empty() {
            emit(Part::Tail, &self.pending);
            self.pending.clear();
        }
    }
}

/// Runs `pieces` through a [`Cut`].
pub fn cut_pieces(pieces: &[&[u8]], emit: &mut dyn FnMut(Part, &[u8])) {
    let mut cut = Cut::default();
    for p in pieces {
        cut.feed(p, emit);
    }
    cut.finish(emit);
}

/// Adds mboxrd quoting to a stream: every line matching `^>*From ` gets one more `>`. Only the
/// `>`s and the part of `From ` seen at a line start are held back, as counts.
#[derive(Debug)]
pub struct Quoter {
    at_line_start: bool,
    gts: u64,
    matched: usize,
}

impl Default for Quoter {
    fn default() -> Self {
        Quoter { at_line_start: true, gts: 0, matched: 0 }
    }
}

const FROM: &[u8] = b"From ";

fn put_gts(n: u64, out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
    const GTS: &[u8; 64] = &[b'>'; 64];
    let mut left = n;
    while left > 0 {
        let k = left.min(64) as usize;
        out(&GTS[..k])?;
        left -= k as u64;
    }
    Ok(())
}

impl Quoter {
    pub fn write(&mut self, mut data: &[u8], out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        while !data.is_empty() {
            if !self.at_line_start {
                // Out in one piece up to the next line that may need a `>`: one starting with
                // `>` or `F` (or a line start at the end of `data`).
                let mut pos = 0;
                let cut = loop {
                    let Some(i) = memchr::memchr(b'\n', &data[pos..]) else { break None };
                    let start = pos + i + 1;
                    match data.get(start) {
                        None | Some(b'>' | b'F') => break Some(start),
                        Some(_) => pos = start,
                    }
                };
                let (chunk, rest) = data.split_at(cut.unwrap_or(data.len()));
                out(chunk)?;
                self.at_line_start = cut.is_some();
                data = rest;
                continue;
            }
            let b = data[0];
            if self.matched == 0 && b == b'>' {
                self.gts += 1;
                data = &data[1..];
            } else if b == FROM[self.matched] {
                self.matched += 1;
                data = &data[1..];
                if self.matched == FROM.len() {
                    put_gts(self.gts + 1, out)?;
                    out(FROM)?;
                    (self.gts, self.matched, self.at_line_start) = (0, 0, false);
                }
            } else {
                // Not a From line: what was held back goes out as it was; `b` is read again.
                self.flush(out)?;
                self.at_line_start = false;
            }
        }
        Ok(())
    }

    /// Gives out what is held back (a line cut short that did not become `>*From `).
    pub fn flush(&mut self, out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        put_gts(self.gts, out)?;
        out(&FROM[..self.matched])?;
        (self.gts, self.matched) = (0, 0);
        Ok(())
    }

    /// After bytes written around the quoter that end a line.
    pub fn at_line_start(&mut self) {
        self.at_line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cut(msg: &[u8], split: usize) -> (Vec<u8>, Vec<u8>, bool) {
        let (mut head, mut body, mut blank) = (Vec::new(), Vec::new(), false);
        let split = split.min(msg.len());
        cut_pieces(&[&msg[..split], &msg[split..]], &mut |part, s| match part {
            Part::Head | Part::Tail => head.extend_from_slice(s),
            Part::Blank => {
                blank = true;
                head.extend_from_slice(s)
            }
            Part::Body => body.extend_from_slice(s),
        });
        (head, body, blank)
    }

    #[test]
    fn internal_fields_go_others_stay() {
        let m = b"Subject: a\nStatus: RO\n  cont\nX-UID: 3\nX-Statusx: keep\nx-keywords:a\nContent-Length : 4\n\nStatus: body\n";
        for split in 0..m.len() {
            let (head, body, blank) = cut(m, split);
            assert_eq!(head, b"Subject: a\nX-Statusx: keep\n\n", "split {split}");
            assert_eq!(body, b"Status: body\n");
            assert!(blank);
        }
    }

    /// A colon past the name window makes no field, for the cut as for the header scanner.
    #[test]
    fn a_far_colon_makes_no_field() {
        let m = format!("Status{}: RO\nStatus: RO\n\nb\n", " ".repeat(60));
        let (head, _, _) = cut(m.as_bytes(), 3);
        assert_eq!(head, format!("Status{}: RO\n\n", " ".repeat(60)).into_bytes());
        let hb = super::super::headers::scan(m.as_bytes());
        assert_eq!(hb.fields.iter().filter(|f| !f.name.is_empty()).count(), 1);
    }

    #[test]
    fn header_less_and_unterminated_messages() {
        assert_eq!(cut(b"just text\nStatus: RO\n", 3), (b"just text\n".to_vec(), vec![], false));
        assert_eq!(cut(b"Subject: x", 4), (b"Subject: x".to_vec(), vec![], false));
        assert_eq!(cut(b"Stat", 2), (b"Stat".to_vec(), vec![], false));
        assert_eq!(cut(b"\r\nbody", 1), (b"\r\n".to_vec(), b"body".to_vec(), true));
    }

    fn quote_all(parts: &[&[u8]]) -> Vec<u8> {
        let mut q = Quoter::default();
        let mut v = Vec::new();
        for p in parts {
            q.write(p, &mut |s| {
                v.extend_from_slice(s);
                Ok(())
            })
            .unwrap();
        }
        q.flush(&mut |s| {
            v.extend_from_slice(s);
            Ok(())
        })
        .unwrap();
        v
    }

    fn quote_whole(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in b.split_inclusive(|&c| c == b'\n') {
            let gts = line.iter().take_while(|&&c| c == b'>').count();
            if line[gts..].starts_with(FROM) {
                out.push(b'>');
            }
            out.extend_from_slice(line);
        }
        out
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_all(&[b"From a\n>From b\nx From c\n>>From d"]), b">From a\n>>From b\nx From c\n>>>From d");
        assert_eq!(quote_all(&[b">>Fr", b"om x\n>Fro"]), b">>>From x\n>Fro");
    }

    proptest! {
        /// Quoting a stream cut anywhere gives what quoting it whole gives.
        #[test]
        fn quoting_streams(lines in proptest::collection::vec(
            proptest::sample::select(vec!["From x", ">From y", ">>From", "Fro", ">", "", "a From b", ">>>>F", "\r"]), 0..12),
            cuts in proptest::collection::vec(0usize..80, 0..4)) {
            let b = lines.join("\n").into_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(b.len())).collect();
            cuts.sort();
            let mut parts = Vec::new();
            let mut last = 0;
            for c in cuts {
                parts.push(&b[last..c]);
                last = c;
            }
            parts.push(&b[last..]);
            prop_assert_eq!(quote_all(&parts), quote_whole(&b));
        }

        /// The cut gives the same bytes however the message is split, and exactly what the
        /// header scanner's fields say stays.
        #[test]
        fn cut_is_split_independent(lines in proptest::collection::vec(
            proptest::sample::select(vec!["Status: RO", "Subject: s", " cont", "X-UID: 1", "text", "", "Content-Length: 3", "\r", "X-Keywords:"]), 0..10),
            split in 0usize..120) {
            let m = lines.join("\n").into_bytes();
            let whole = cut(&m, m.len());
            prop_assert_eq!(cut(&m, split), whole.clone());
            let hb = super::super::headers::scan(&m);
            let (mut want, mut pos) = (Vec::new(), 0);
            for f in &hb.fields {
                let name = &m[f.name.clone()];
                if !name.is_empty() && MBOX_STATE_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h.as_bytes())) {
                    want.extend_from_slice(&m[pos..f.range.start]);
                    pos = f.range.end;
                }
            }
            want.extend_from_slice(&m[pos..]);
            let mut got = whole.0;
            got.extend_from_slice(&whole.1);
            prop_assert_eq!(got, want);
        }
    }
}
