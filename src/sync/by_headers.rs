//! `--identity headers`: messages matched by Message-ID, Date and body, so copies another
//! tool made (mb2md, imapsync, a run with the other `--keep-mbox-headers`) count as copies.
//!
//! Matching by content comes first, always: a source message whose bytes are in the target
//! matches those bytes. Only what is left on both sides (source messages no target message has
//! the bytes of, target messages no source message has the bytes of) is then paired by header
//! key, in source and target order within a key. A pair is planned as if the source message
//! had the target message's bytes (it is joined under that hash), so the copy is kept, re-flagged
//! or re-dated and never copied again; caches, records and names keep the real hashes.
//!
//! The key leaves out what other tools change: header fields other than Message-ID and Date,
//! line ends (CRLF or LF), the `>` of quoted `From ` lines, and blank lines. A message without a
//! Message-ID has no key and is matched by content only.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::SyncOptions;
use super::join::{Held, Wanted};
use super::plan::IdentityBy;
use crate::error::Problem;
use crate::message::Hash;
use crate::spill::{Sorted, Sorter, Spill};

/// Header bytes looked at for Message-ID and Date (more is spam's Received chains).
const MAX_HEADER: usize = 256 << 10;

/// The header key of a message given in pieces, or `None` without a Message-ID.
pub fn key_of(pieces: &[&[u8]]) -> Option<Hash> {
    let mut k = Keyer::default();
    for p in pieces {
        k.feed(p);
    }
    k.finish()
}

/// Computes a header key from a message's bytes fed in any slices (a stream).
#[derive(Default)]
pub struct Keyer {
    head: Vec<u8>,
    /// The blank line that ends the header was seen.
    in_body: bool,
    /// The header's last bytes, to find `\n\n` or `\n\r\n` across slices.
    tail: u32,
    body: BodyDigest,
}

impl Keyer {
    pub fn feed(&mut self, mut s: &[u8]) {
        while !self.in_body && !s.is_empty() {
            let b = s[0];
            s = &s[1..];
            if self.head.len() < MAX_HEADER {
                self.head.push(b);
            }
            // The last three bytes of the header seen; a blank line ends it.
            self.tail = (self.tail << 8 | u32::from(b)) & 0x00ff_ffff;
            if b == b'\n' && (self.tail & 0xffff == 0x0a0a || self.tail == 0x0a_0d0a) {
                self.in_body = true;
            }
        }
        if self.in_body {
            self.body.feed(s);
        }
    }

    pub fn finish(self) -> Option<Hash> {
        let (mid, date) = fields(&self.head);
        let mid = message_id(mid?)?;
        let date = date.map_or_else(String::new, |d| match crate::store::mbox::date::header_date(&d) {
            Some(t) => t.to_string(),
            None => String::from_utf8_lossy(&d).split_whitespace().collect::<Vec<_>>().join(" "),
        });
        let mut h = Sha256::new();
        h.update(b"mailmover header key 2\0");
        h.update(&mid);
        h.update(b"\0");
        h.update(date.as_bytes());
        h.update(b"\0");
        h.update(self.body.finish());
        Some(h.finalize().into())
    }
}

/// The body as every tool keeps it: its bytes but CR, LF and the `>` that quote a `From ` line,
/// digested. (Its size alone would make two messages with one Message-ID and Date, and bodies
/// of one length, the same message: one-time codes, reissued notices.)
#[derive(Default)]
struct BodyDigest {
    h: Sha256,
    /// Bytes waiting for the digest.
    out: Vec<u8>,
    /// The start of the current line while it may be a quoted `From ` line: its `>`s, then
    /// what of `From ` follows them.
    pending: Vec<u8>,
    quotes: usize,
    /// Past that start.
    mid_line: bool,
}

impl BodyDigest {
    fn feed(&mut self, s: &[u8]) {
        for &b in s {
            match b {
                b'\n' => {
                    self.settle();
                    self.mid_line = false;
                    continue;
                }
                b'\r' => continue,
                _ => {}
            }
            if self.mid_line {
                self.out.push(b);
            } else {
                let matched = self.pending.len() - self.quotes;
                self.pending.push(b);
                if b == b'>' && matched == 0 {
                    self.quotes += 1;
                } else if self.quotes > 0 && b == b"From "[matched] {
                    if matched + 1 == 5 {
                        // A quoted From line: without its quotes.
                        self.pending.drain(..self.quotes);
                        self.settle();
                        self.mid_line = true;
                    }
                } else {
                    self.settle();
                    self.mid_line = true;
                }
            }
            if self.out.len() >= 8192 {
                self.h.update(&self.out);
                self.out.clear();
            }
        }
    }

    /// What the line start held goes to the digest as it is.
    fn settle(&mut self) {
        self.out.append(&mut self.pending);
        self.quotes = 0;
    }

    fn finish(mut self) -> Hash {
        self.settle();
        self.h.update(&self.out);
        self.h.finalize().into()
    }
}

/// The first Message-ID and Date fields of a header block, unfolded.
fn fields(head: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let (mut mid, mut date) = (None, None);
    let mut current: Option<(bool, Vec<u8>)> = None;
    let done = |f: Option<(bool, Vec<u8>)>, mid: &mut Option<Vec<u8>>, date: &mut Option<Vec<u8>>| {
        if let Some((is_mid, v)) = f {
            let slot = if is_mid { mid } else { date };
            slot.get_or_insert(v);
        }
    };
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, v)) = current.as_mut() {
                v.push(b' ');
                v.extend_from_slice(line);
            }
            continue;
        }
        done(current.take(), &mut mid, &mut date);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"message-id") {
            current = Some((true, line[colon + 1..].to_vec()));
        } else if name.eq_ignore_ascii_case(b"date") {
            current = Some((false, line[colon + 1..].to_vec()));
        }
    }
    done(current, &mut mid, &mut date);
    (mid, date)
}

/// A Message-ID without the white space and angle brackets tools fold it with; `None` if empty.
fn message_id(v: Vec<u8>) -> Option<Vec<u8>> {
    let v: Vec<u8> = v.into_iter().filter(|b| !b.is_ascii_whitespace()).collect();
    let inner = match (v.iter().position(|&b| b == b'<'), v.iter().rposition(|&b| b == b'>')) {
        (Some(a), Some(z)) if a < z => v[a + 1..z].to_vec(),
        _ => v,
    };
    (!inner.is_empty()).then_some(inner)
}

/// Said when a run matching by content would copy more than half as many messages as a target
/// folder already holds while most of those match no source message: copies another tool made
/// look like that, and a second copy of each is seldom what was meant.
pub fn suggestion(opts: &SyncOptions, copies: u64, held: u64, lone: u64, folder: &Path) -> Option<Problem> {
    if opts.identity != IdentityBy::Content || held == 0 || copies * 2 <= held || lone * 2 <= held {
        return None;
    }
    let verb = if opts.dry_run { "would copy" } else { "copies" };
    Some(Problem::new(
        folder,
        format!(
            "this run {verb} {} into a folder that already holds {}, {} of which have the bytes of no source \
             message: if another tool (mb2md, imapsync) or a run with the other --keep-mbox-headers made \
             those, --identity headers matches them by Message-ID, Date and body instead",
            crate::human::count(copies, "message", "messages"),
            crate::human::count(held, "message", "messages"),
            lone
        ),
    ))
}

/// A message by one hash and its place, with another hash: what content left over on one
/// side (its key, place and own hash), or a pair (the source's hash and place, the target's
/// hash).
#[derive(Debug, Clone)]
struct Entry {
    by: Hash,
    ord: u64,
    with: Hash,
}

crate::ordered_by!(Entry, by, ord);

impl Spill for Entry {
    fn weight(&self) -> usize {
        72
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.by);
        out.extend_from_slice(&self.ord.to_le_bytes());
        out.extend_from_slice(&self.with);
    }

    fn read(b: &[u8]) -> Option<Entry> {
        let (by, b) = b.split_first_chunk::<32>()?;
        let (ord, b) = b.split_first_chunk::<8>()?;
        let with = b.try_into().ok()?;
        Some(Entry { by: *by, ord: u64::from_le_bytes(*ord), with })
    }
}

/// Pairs the source messages no target message has the bytes of with target messages no source
/// message has the bytes of, by header key (see the module). `wanted` and `held` are sorted by
/// hash; a message whose key is not known yet gets it from `source_key` / `target_key` (which
/// read it; `None`: no key). Returns the source messages again, sorted, each paired one under
/// its target message's hash with its own in [`Wanted::content`], and how many were paired.
pub fn pair(
    wanted: &Sorted<Wanted>,
    held: impl Iterator<Item = io::Result<Held>>,
    source_key: &mut dyn FnMut(&Wanted) -> Option<Hash>,
    target_key: &mut dyn FnMut(&Held) -> Option<Hash>,
) -> io::Result<(Sorted<Wanted>, u64)> {
    let (mut lone_sources, mut lone_targets) = (Sorter::new(), Sorter::new());
    let mut sources = wanted.iter().peekable();
    let mut targets = held.peekable();
    loop {
        let s = match sources.peek() {
            Some(Ok(w)) => Some(w.hash),
            Some(Err(_)) => return Err(sources.next().and_then(Result::err).unwrap_or_else(|| io::Error::other("?"))),
            None => None,
        };
        let t = match targets.peek() {
            Some(Ok(h)) => Some(h.hash),
            Some(Err(_)) => return Err(targets.next().and_then(Result::err).unwrap_or_else(|| io::Error::other("?"))),
            None => None,
        };
        let next = match (s, t) {
            (None, None) => break,
            (Some(s), None) => s,
            (None, Some(t)) => t,
            (Some(s), Some(t)) => s.min(t),
        };
        let (in_source, in_target) = (s == Some(next), t == Some(next));
        while let Some(Ok(w)) = sources.next_if(|w| w.as_ref().is_ok_and(|w| w.hash == next)) {
            if !in_target && let Some(key) = w.key.or_else(|| source_key(&w)) {
                lone_sources.push(Entry { by: key, ord: w.seq, with: w.hash })?;
            }
        }
        while let Some(Ok(h)) = targets.next_if(|h| h.as_ref().is_ok_and(|h| h.hash == next)) {
            if !in_source && let Some(key) = h.key.or_else(|| target_key(&h)) {
                lone_targets.push(Entry { by: key, ord: h.idx, with: h.hash })?;
            }
        }
    }
    let (lone_sources, lone_targets) = (lone_sources.sorted()?, lone_targets.sorted()?);
    let mut aliases = Sorter::new();
    let mut paired = 0;
    let mut ts = lone_targets.iter().peekable();
    for s in lone_sources.iter() {
        let s = s?;
        // The target messages of smaller keys pair with nothing.
        while let Some(Ok(t)) = ts.peek()
            && t.by < s.by
        {
            ts.next();
        }
        match ts.next_if(|t| t.as_ref().is_ok_and(|t| t.by == s.by)) {
            Some(Ok(t)) => {
                aliases.push(Entry { by: s.with, ord: s.ord, with: t.with })?;
                paired += 1;
            }
            Some(Err(e)) => return Err(e),
            None => {
                if let Some(Err(_)) = ts.peek() {
                    return Err(ts.next().and_then(Result::err).unwrap_or_else(|| io::Error::other("?")));
                }
            }
        }
    }
    let aliases = aliases.sorted()?;
    let mut aliases = aliases.iter().peekable();
    let mut out = Sorter::new();
    for w in wanted.iter() {
        let mut w = w?;
        if let Some(Err(_)) = aliases.peek() {
            return Err(aliases.next().and_then(Result::err).unwrap_or_else(|| io::Error::other("?")));
        }
        if let Some(Ok(a)) = aliases.next_if(|a| a.as_ref().is_ok_and(|a| (a.by, a.ord) == (w.hash, w.seq))) {
            w.content = Some(w.hash);
            w.hash = a.with;
        }
        out.push(w)?;
    }
    Ok((out.sorted()?, paired))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DateSource, Meta};

    fn key(m: &str) -> Option<Hash> {
        key_of(&[m.as_bytes()])
    }

    #[test]
    fn what_other_tools_change_leaves_the_key_alone() {
        let m = "Message-ID: <a@b>\nDate: Mon, 2 Jan 2006 15:04:05 +0000\nSubject: x\n\nFrom here\nline\n";
        let k = key(m).unwrap();
        // Status fields, CRLF, a quoted From line, a folded Message-ID, a trailing blank line.
        let other = "Status: RO\r\nX-Mozilla-Status: 0001\r\nMessage-Id:\r\n <a@b>\r\nDate: Mon, 02 Jan 2006 \
                     16:04:05 +0100\r\nSubject: x\r\n\r\n>From here\r\nline\r\n\r\n";
        assert_eq!(key(other), Some(k));
        // Split anywhere, the same.
        for at in 0..other.len() {
            let (a, b) = other.as_bytes().split_at(at);
            assert_eq!(key_of(&[a, b]), Some(k), "split at {at}");
        }
        assert_ne!(key(&m.replace("line", "lime!")), Some(k), "another body");
        assert_ne!(key(&m.replace("line", "lint")), Some(k), "another body of the same size");
        assert_ne!(key(&m.replace("15:04:05", "15:04:06")), Some(k), "another date");
        assert_ne!(key(&m.replace("a@b", "a@c")), Some(k), "another Message-ID");
        assert_ne!(key(&m.replace(">From", "> From")), None);
        assert_eq!(key("Subject: none\n\nbody\n"), None, "no Message-ID, no key");
        assert_eq!(key("Message-ID:   \n\nbody\n"), None, "an empty one neither");
        assert_eq!(key("Message-ID: <a@b>"), key("Message-ID: <a@b>\n\n"), "header only");
        // A quote that is not a From line's counts.
        assert_ne!(key("Message-ID: <a@b>\n\n>Fro\n"), key("Message-ID: <a@b>\n\nFro\n"));
    }

    #[test]
    fn unparsable_dates_compare_as_text() {
        let a = key("Message-ID: <a@b>\nDate: sometime  soon\n\nx\n");
        assert_eq!(a, key("Message-ID: <a@b>\nDate: sometime soon\n\nx\n"));
        assert_ne!(a, key("Message-ID: <a@b>\n\nx\n"));
    }

    fn sorted<T: Spill>(v: Vec<T>) -> Sorted<T> {
        let mut s = Sorter::with_budget(1);
        for x in v {
            s.push(x).unwrap();
        }
        s.sorted().unwrap()
    }

    impl Wanted {
        fn with_key(mut self, key: Option<Hash>) -> Wanted {
            self.key = key;
            self
        }
    }

    fn wanted(hash: u8, seq: u64, key: Option<u8>) -> Wanted {
        Wanted {
            hash: [hash; 32],
            seq,
            meta: Meta::new(0, DateSource::Mtime),
            place: Vec::new(),
            cached: false,
            key: key.map(|k| [k; 32]),
            content: None,
            by_headers: false,
        }
    }

    fn held(hash: u8, idx: u64, key: Option<u8>) -> Held {
        Held {
            hash: [hash; 32],
            idx,
            meta: Meta::new(0, DateSource::Mtime),
            entry: Vec::new(),
            key: key.map(|k| [k; 32]),
        }
    }

    #[test]
    fn content_first_then_keys_in_order() {
        // Source: 1 (in the target too), 2 and 3 (key 9), 4 (key 8), 5 (no key).
        let w = sorted(vec![
            wanted(1, 0, Some(7)),
            wanted(2, 1, Some(9)),
            wanted(3, 2, Some(9)),
            wanted(4, 3, Some(8)),
            wanted(5, 4, None),
        ]);
        // Target: 1, 6 (key 7: its content twin is matched, so it stays alone), 7 (key 9), 8
        // (key 8, but also a source's bytes? no), 9 (no key known: asked).
        let h = sorted(vec![held(1, 0, Some(7)), held(6, 1, Some(7)), held(7, 2, Some(9)), held(10, 3, None)]);
        let mut asked = Vec::new();
        let (out, n) = pair(&w, h.iter(), &mut |_| None, &mut |h| {
            asked.push(h.idx);
            Some([8; 32])
        })
        .unwrap();
        assert_eq!(asked, vec![3]);
        assert_eq!(n, 2);
        let got: Vec<(u64, Hash, Option<Hash>)> =
            out.iter().map(|w| w.unwrap()).map(|w| (w.seq, w.hash, w.content)).collect();
        assert!(got.contains(&(0, [1; 32], None)));
        assert!(got.contains(&(1, [7; 32], Some([2; 32]))), "first of key 9 takes the one target");
        assert!(got.contains(&(2, [3; 32], None)));
        assert!(got.contains(&(3, [10; 32], Some([4; 32]))));
        assert!(got.contains(&(4, [5; 32], None)));
        let hashes: Vec<Hash> = out.iter().map(|w| w.unwrap().hash).collect();
        assert!(hashes.is_sorted());
    }

    /// Through the join, whatever the sides: every source message is decided once; a target
    /// message answers for at most one; one named for a source message has its bytes or, paired,
    /// its key; a source message goes on with its own hash; and a key shared by a source and a
    /// target message that content left alone never leaves both unmatched.
    #[test]
    fn paired_plans_lose_nothing_and_match_only_equals() {
        use super::super::join::{Outcome, join};
        use super::super::plan::{Decision, Rules};
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        struct Seen(Vec<(Wanted, Decision)>, Vec<u64>);
        impl Outcome for Seen {
            fn decided(&mut self, w: Wanted, d: Decision, _: Option<&Held>) -> io::Result<()> {
                self.0.push((w, d));
                Ok(())
            }
            fn unmatched(&mut self, h: Held) -> io::Result<()> {
                self.1.push(h.idx);
                Ok(())
            }
        }
        // (content, key) by a small alphabet: a key follows from the content, as it does.
        let side = || proptest::collection::vec(0u8..8, 0..24);
        proptest!(|(src in side(), dst in side(), budget in 1usize..3000)| {
            let key_of = |c: u8| (!c.is_multiple_of(3)).then_some([100 + c / 2; 32]);
            let mut s = Sorter::with_budget(budget);
            for (i, c) in src.iter().enumerate() {
                s.push(wanted(*c, i as u64, None).with_key(key_of(*c))).unwrap();
            }
            let mut t = Sorter::with_budget(budget);
            for (i, c) in dst.iter().enumerate() {
                t.push(held(*c, i as u64, None)).unwrap();
            }
            let (s, t) = (s.sorted().unwrap(), t.sorted().unwrap());
            let (paired, n) = pair(&s, t.iter(), &mut |_| None, &mut |h| key_of(h.hash[0])).unwrap();
            let mut seen = Seen(Vec::new(), Vec::new());
            join(paired.iter(), t.iter(), std::iter::empty(), &Rules::default(), &mut seen).unwrap();
            prop_assert_eq!(seen.0.len(), src.len());
            let mut named: BTreeMap<usize, u64> = BTreeMap::new();
            let mut by_headers = 0;
            for (w, d) in &seen.0 {
                prop_assert_eq!(w.hash, [src[w.seq as usize]; 32], "its own hash again");
                prop_assert!(w.content.is_none());
                if let Some(i) = d.target() {
                    *named.entry(i).or_default() += 1;
                    let (sc, tc) = (src[w.seq as usize], dst[i]);
                    prop_assert!(sc == tc || (w.by_headers && key_of(sc) == key_of(tc)));
                    by_headers += u64::from(sc != tc);
                }
            }
            prop_assert!(named.values().all(|&n| n == 1), "{named:?}");
            prop_assert_eq!(by_headers, n);
            let copied: Vec<u8> =
                seen.0.iter().filter(|(_, d)| *d == Decision::Copy).map(|(w, _)| src[w.seq as usize]).collect();
            for i in &seen.1 {
                let tc = dst[*i as usize];
                let lone = !src.contains(&tc);
                prop_assert!(
                    !(lone && copied.iter().any(|&c| !dst.contains(&c) && key_of(c).is_some() && key_of(c) == key_of(tc))),
                    "target {tc} left alone beside a copy of its key"
                );
            }
        });
    }
}
