//! What a folder's plan keeps on disk between its passes: where each source message is (its
//! place, to be read again when it is written) and each target message's file, as bytes the
//! sorted runs of [`crate::spill`] hold.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::join::{Held, Wanted};
use super::plan::{Decision, FilterReason, Hash, NotMail};
use crate::message::Meta;
use crate::spill::Spill;
use crate::store::maildir::read::MaildirEntry;
use crate::store::mbox::split::Entry;
use crate::wire::{put_bytes, put_u64, take_bytes, take_u64};

/// Where a source message is, so that its bytes can be had again.
#[derive(Debug, Clone)]
pub(crate) enum Place {
    Maildir(Box<MaildirEntry>),
    Mbox(Entry),
    /// Bytes fed from memory (a cPanel archive's): kept with the place.
    Memory {
        origin: PathBuf,
        data: Vec<u8>,
    },
}

/// The reasons a splitter gives for a truncated mbox message (kept as their number).
const TRUNCATED: [&str; 2] = [
    "message truncated: its Content-Length runs past end of file",
    "message truncated inside its header block (no empty line, no final newline)",
];

impl Place {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Place::Maildir(e) => {
                out.push(0);
                e.encode(out);
            }
            Place::Mbox(e) => {
                out.push(1);
                for n in [e.from_line.start, e.from_line.end, e.msg.start, e.msg.end] {
                    put_u64(out, n as u64);
                }
                let truncated = e.truncated.map_or(0, |t| TRUNCATED.iter().position(|k| *k == t).map_or(3, |i| i + 1));
                out.extend_from_slice(&[u8::from(e.by_length), u8::from(e.maybe_quoted), truncated as u8]);
            }
            Place::Memory { origin, data } => {
                out.push(2);
                put_bytes(out, origin.as_os_str().as_bytes());
                put_bytes(out, data);
            }
        }
    }

    /// A place [`Place::encode`] wrote.
    pub(crate) fn decode(b: &[u8]) -> Option<Place> {
        let (&tag, b) = b.split_first()?;
        match tag {
            0 => MaildirEntry::decode(b).filter(|(_, rest)| rest.is_empty()).map(|(e, _)| Place::Maildir(Box::new(e))),
            1 => {
                let (a, b) = take_u64(b)?;
                let (z, b) = take_u64(b)?;
                let (ms, b) = take_u64(b)?;
                let (me, b) = take_u64(b)?;
                let [by_length, maybe_quoted, truncated] = *<&[u8; 3]>::try_from(b).ok()?;
                let truncated = match truncated {
                    0 => None,
                    i => Some(TRUNCATED.get(usize::from(i) - 1).copied().unwrap_or("message truncated")),
                };
                let r = |x: u64| usize::try_from(x).ok();
                Some(Place::Mbox(Entry {
                    from_line: r(a)?..r(z)?,
                    msg: r(ms)?..r(me)?,
                    by_length: by_length != 0,
                    truncated,
                    maybe_quoted: maybe_quoted != 0,
                }))
            }
            2 => {
                let (origin, b) = take_bytes(b)?;
                let (data, b) = take_bytes(b)?;
                b.is_empty()
                    .then(|| Place::Memory { origin: PathBuf::from(OsStr::from_bytes(origin)), data: data.to_vec() })
            }
            _ => None,
        }
    }
}

/// A source message with its decision, in source order, for the executing pass.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    pub(crate) seq: u64,
    pub(crate) decision: Decision,
    /// `None`: not hashed (nothing to compare with).
    pub(crate) hash: Option<Hash>,
    pub(crate) meta: Meta,
    pub(crate) place: Vec<u8>,
    /// The target message the decision names.
    pub(crate) held: Option<Held>,
    /// The hash came from the source cache.
    pub(crate) cached: bool,
    /// Matched to its target message by headers, not bytes (`--identity headers`).
    pub(crate) by_headers: bool,
    /// A copy's name gets `Q<q>` (when not 0): a copy of the message with the name it would
    /// have is there already.
    pub(crate) q: u32,
}

impl Decided {
    pub(crate) fn joined(w: Wanted, decision: Decision, held: Option<&Held>) -> Decided {
        Decided {
            seq: w.seq,
            decision,
            hash: Some(w.hash),
            meta: w.meta,
            place: w.place,
            held: held.cloned(),
            cached: w.cached,
            by_headers: w.by_headers,
            q: 0,
        }
    }
}

// Each source message is decided once: its place in the source orders them.
crate::ordered_by!(Decided, seq);

fn decision_code(d: Decision) -> (u8, u64) {
    match d {
        Decision::Copy => (0, 0),
        Decision::Skip(i) => (1, i as u64),
        Decision::UpdateFlags(i) => (2, i as u64),
        Decision::UpdateDate(i) => (3, i as u64),
        Decision::Filtered(FilterReason::MaxSize) => (4, 0),
        Decision::Filtered(FilterReason::MinAge) => (4, 1),
        Decision::Filtered(FilterReason::MaxAge) => (4, 2),
        Decision::NotMail(NotMail::Pseudo) => (5, 0),
        Decision::NotMail(NotMail::Gone) => (5, 1),
    }
}

fn decision_of(code: u8, n: u64) -> Option<Decision> {
    let i = usize::try_from(n).ok()?;
    Some(match (code, n) {
        (0, _) => Decision::Copy,
        (1, _) => Decision::Skip(i),
        (2, _) => Decision::UpdateFlags(i),
        (3, _) => Decision::UpdateDate(i),
        (4, 0) => Decision::Filtered(FilterReason::MaxSize),
        (4, 1) => Decision::Filtered(FilterReason::MinAge),
        (4, 2) => Decision::Filtered(FilterReason::MaxAge),
        (5, 0) => Decision::NotMail(NotMail::Pseudo),
        (5, 1) => Decision::NotMail(NotMail::Gone),
        _ => return None,
    })
}

impl Spill for Decided {
    fn weight(&self) -> usize {
        self.meta.weight() + self.place.len() + self.held.as_ref().map_or(0, |h| h.weight() + 80)
    }

    fn write(&self, out: &mut Vec<u8>) {
        put_u64(out, self.seq);
        put_u64(out, u64::from(self.q));
        let (code, n) = decision_code(self.decision);
        out.push(code);
        put_u64(out, n);
        out.push(u8::from(self.cached) | u8::from(self.by_headers) << 1);
        match &self.hash {
            Some(h) => {
                out.push(1);
                out.extend_from_slice(h);
            }
            None => out.push(0),
        }
        let mut meta = Vec::new();
        self.meta.encode(&mut meta);
        put_bytes(out, &meta);
        put_bytes(out, &self.place);
        if let Some(h) = &self.held {
            h.write(out);
        }
    }

    fn read(b: &[u8]) -> Option<Decided> {
        let (seq, b) = take_u64(b)?;
        let (q, b) = take_u64(b)?;
        let q = u32::try_from(q).ok()?;
        let (&code, b) = b.split_first()?;
        let (n, b) = take_u64(b)?;
        let decision = decision_of(code, n)?;
        let (&cached, b) = b.split_first()?;
        let (&has, b) = b.split_first()?;
        let (hash, b) = match has {
            0 => (None, b),
            _ => {
                let (h, b) = b.split_first_chunk::<32>()?;
                (Some(*h), b)
            }
        };
        let (meta, b) = take_bytes(b)?;
        let (meta, rest) = Meta::decode(meta)?;
        if !rest.is_empty() {
            return None;
        }
        let (place, b) = take_bytes(b)?;
        let held = if b.is_empty() { None } else { Some(Held::read(b)?) };
        let (cached, by_headers) = (cached & 1 != 0, cached & 2 != 0);
        Some(Decided { seq, decision, hash, meta, place: place.to_vec(), held, cached, by_headers, q })
    }
}

impl Spill for Hash {
    fn weight(&self) -> usize {
        0
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn read(b: &[u8]) -> Option<Hash> {
        Hash::try_from(b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Flags;
    use crate::message::DateSource;
    use crate::store::maildir::read::Sub;

    #[test]
    fn places_and_decisions_read_back_as_written() {
        let mut meta = Meta::new(7, DateSource::Mtime);
        meta.flags = Flags::parse("S");
        let file = MaildirEntry {
            sub: Sub::Cur,
            name: b"1.M2P3.h,S=4:2,S".to_vec(),
            size: 4,
            mtime_ns: -3,
            meta: meta.clone(),
            ino: 99,
            uid: Some(7),
        };
        let places = [
            Place::Maildir(Box::new(file.clone())),
            Place::Mbox(Entry {
                from_line: 0..20,
                msg: 21..300,
                by_length: true,
                truncated: Some(TRUNCATED[1]),
                maybe_quoted: false,
            }),
            Place::Memory { origin: PathBuf::from("a/b"), data: b"x\n".to_vec() },
        ];
        for p in &places {
            let mut b = Vec::new();
            p.encode(&mut b);
            let back = Place::decode(&b).unwrap();
            assert_eq!(format!("{back:?}"), format!("{p:?}"));
            assert!(Place::decode(&b[..b.len() - 1]).is_none());
        }
        let mut place = Vec::new();
        places[0].encode(&mut place);
        let held = Held { hash: [5; 32], idx: 3, meta: meta.clone(), entry: place.clone(), key: Some([6; 32]) };
        for (decision, held, by_headers) in
            [(Decision::UpdateDate(3), Some(held), true), (Decision::Filtered(FilterReason::MaxAge), None, false)]
        {
            let d = Decided {
                seq: 12,
                decision,
                hash: Some([1; 32]),
                meta: meta.clone(),
                place: place.clone(),
                held,
                cached: true,
                by_headers,
                q: 4,
            };
            let mut b = Vec::new();
            d.write(&mut b);
            let r = Decided::read(&b).unwrap();
            assert_eq!(format!("{r:?}"), format!("{d:?}"));
        }
    }
}
