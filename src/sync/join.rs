//! A folder's plan in bounded memory: source and target messages sorted by hash (on disk when
//! there are many, [`crate::spill`]) and joined one hash at a time. Each hash's group is
//! planned by the same [`Planner`] a whole folder would use, so the decisions are the ones the
//! in-memory plan takes (a property test holds them equal), with memory for one group only.

use std::io;
use std::iter::Peekable;

use super::plan::{Candidate, Decision, Hash, Planner, Rules};
use crate::message::Meta;
use crate::spill::Spill;

/// A source message waiting for its decision: its identity, its place in the source order,
/// its state and where its bytes are (opaque bytes). Sorted by hash, then order.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub hash: Hash,
    pub seq: u64,
    pub meta: Meta,
    pub place: Vec<u8>,
    /// The hash came from a cache, not from reading the message.
    pub cached: bool,
    /// Its header key, when known (`--identity headers`, [`super::by_headers`]).
    pub key: Option<Hash>,
    /// Its own hash when it is joined under a target message's ([`super::by_headers::pair`]).
    pub content: Option<Hash>,
    /// It was joined under a target message's hash (set by the join, with its own hash back).
    pub by_headers: bool,
}

/// A target message: its identity, its place in the target index, its state and what the
/// executor needs to act on it (opaque bytes). Sorted by hash, then place.
#[derive(Debug, Clone)]
pub struct Held {
    pub hash: Hash,
    pub idx: u64,
    pub meta: Meta,
    pub entry: Vec<u8>,
    /// Its header key, when known (`--identity headers`).
    pub key: Option<Hash>,
}

crate::ordered_by!(Wanted, hash, seq);
crate::ordered_by!(Held, hash, idx);

impl Spill for Wanted {
    fn weight(&self) -> usize {
        self.meta.weight() + self.place.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(u8::from(self.cached) | u8::from(self.by_headers) << 1);
        write_hash(self.key.as_ref(), out);
        write_hash(self.content.as_ref(), out);
        self.meta.encode(out);
        out.extend_from_slice(&self.place);
    }

    fn read(b: &[u8]) -> Option<Wanted> {
        let (hash, b) = b.split_first_chunk::<32>()?;
        let (seq, b) = b.split_first_chunk::<8>()?;
        let (&cached, b) = b.split_first()?;
        let (key, b) = read_hash(b)?;
        let (content, b) = read_hash(b)?;
        let (meta, place) = Meta::decode(b)?;
        let (hash, seq) = (*hash, u64::from_le_bytes(*seq));
        let (cached, by_headers) = (cached & 1 != 0, cached & 2 != 0);
        Some(Wanted { hash, seq, meta, place: place.to_vec(), cached, key, content, by_headers })
    }
}

impl Spill for Held {
    fn weight(&self) -> usize {
        self.meta.weight() + self.entry.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.idx.to_le_bytes());
        write_hash(self.key.as_ref(), out);
        self.meta.encode(out);
        out.extend_from_slice(&self.entry);
    }

    fn read(b: &[u8]) -> Option<Held> {
        let (hash, b) = b.split_first_chunk::<32>()?;
        let (idx, b) = b.split_first_chunk::<8>()?;
        let (key, b) = read_hash(b)?;
        let (meta, entry) = Meta::decode(b)?;
        Some(Held { hash: *hash, idx: u64::from_le_bytes(*idx), meta, entry: entry.to_vec(), key })
    }
}

fn write_hash(h: Option<&Hash>, out: &mut Vec<u8>) {
    match h {
        Some(h) => {
            out.push(1);
            out.extend_from_slice(h);
        }
        None => out.push(0),
    }
}

fn read_hash(b: &[u8]) -> Option<(Option<Hash>, &[u8])> {
    match b.split_first()? {
        (0, b) => Some((None, b)),
        (1, b) => b.split_first_chunk::<32>().map(|(h, b)| (Some(*h), b)),
        _ => None,
    }
}

/// What the join tells its caller, in hash order.
pub trait Outcome {
    /// Source message `wanted` gets `decision`; `held` is the target message it names, if any
    /// (its index in the decision is `held.idx`).
    fn decided(&mut self, wanted: Wanted, decision: Decision, held: Option<&Held>) -> io::Result<()>;
    /// No source message matched this target message.
    fn unmatched(&mut self, held: Held) -> io::Result<()>;
    /// The target messages of the hash group decided next (before its `decided` calls).
    fn group(&mut self, _held: &[Held]) {}
}

/// Joins `sources` and `targets`, each sorted, hash by hash. `reserved`: per hash, target
/// copies that answer for another source of a merged folder (sorted by hash). Filters and
/// messages that are not mail are decided before: every source message here is compared.
pub fn join(
    sources: impl Iterator<Item = io::Result<Wanted>>,
    targets: impl Iterator<Item = io::Result<Held>>,
    reserved: impl Iterator<Item = (Hash, u32)>,
    rules: &Rules,
    out: &mut dyn Outcome,
) -> io::Result<()> {
    let mut sources = sources.peekable();
    let mut targets = targets.peekable();
    let mut reserved = reserved.peekable();
    // Filters were applied already; the rest compares states as the folder's plan does.
    let group_rules = Rules { filters: Default::default(), ..rules.clone() };
    loop {
        let next = match (peek_hash(&mut sources)?, peek_hash(&mut targets)?) {
            (None, None) => return Ok(()),
            (Some(s), None) => s,
            (None, Some(t)) => t,
            (Some(s), Some(t)) => s.min(t),
        };
        let wanted = group(&mut sources, &next)?;
        let held = group(&mut targets, &next)?;
        let mut n_reserved = 0;
        while let Some((h, n)) = reserved.next_if(|(h, _)| *h <= next) {
            if h == next {
                n_reserved += n;
            }
        }
        if wanted.is_empty() {
            for h in held {
                out.unmatched(h)?;
            }
            continue;
        }
        out.group(&held);
        let mut planner = Planner::new(held.iter().map(|h| (h.hash, &h.meta)), group_rules.clone());
        if n_reserved > 0 {
            planner.reserve(next, n_reserved);
        }
        for mut w in wanted {
            let d = planner.decide(Candidate { hash: Some(&w.hash), meta: &w.meta, size: 0, not_mail: None });
            // Joined under a target message's hash, it goes on with its own.
            if let Some(own) = w.content.take() {
                (w.hash, w.by_headers) = (own, true);
            }
            let named = d.target().and_then(|i| held.get(i));
            let d = match (d, named) {
                (Decision::Skip(_), Some(h)) => Decision::Skip(h.idx as usize),
                (Decision::UpdateFlags(_), Some(h)) => Decision::UpdateFlags(h.idx as usize),
                (Decision::UpdateDate(_), Some(h)) => Decision::UpdateDate(h.idx as usize),
                (d, _) => d,
            };
            out.decided(w, d, named)?;
        }
        let unmatched: Vec<usize> = planner.unmatched().into_iter().map(|(i, _)| i).collect();
        for (i, h) in held.into_iter().enumerate() {
            if unmatched.binary_search(&i).is_ok() {
                out.unmatched(h)?;
            }
        }
    }
}

trait Hashed {
    fn hash(&self) -> &Hash;
}

impl Hashed for Wanted {
    fn hash(&self) -> &Hash {
        &self.hash
    }
}

impl Hashed for Held {
    fn hash(&self) -> &Hash {
        &self.hash
    }
}

fn peek_hash<T: Hashed, I: Iterator<Item = io::Result<T>>>(it: &mut Peekable<I>) -> io::Result<Option<Hash>> {
    match it.peek() {
        None => Ok(None),
        Some(Ok(t)) => Ok(Some(*t.hash())),
        Some(Err(_)) => match it.next() {
            Some(Err(e)) => Err(e),
            _ => Ok(None),
        },
    }
}

/// The items with hash `h` at the head of `it` (sorted, so they are all there).
fn group<T: Hashed, I: Iterator<Item = io::Result<T>>>(it: &mut Peekable<I>, h: &Hash) -> io::Result<Vec<T>> {
    let mut g = Vec::new();
    while peek_hash(it)?.as_ref() == Some(h) {
        match it.next() {
            Some(Ok(t)) => g.push(t),
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Flags;
    use crate::message::{DateSource, InfoTail};
    use crate::spill::Sorter;
    use proptest::prelude::*;

    #[derive(Default)]
    struct Collected {
        decisions: Vec<(u64, Decision)>,
        unmatched: Vec<u64>,
    }

    impl Outcome for Collected {
        fn decided(&mut self, w: Wanted, d: Decision, held: Option<&Held>) -> io::Result<()> {
            assert_eq!(d.target().map(|i| i as u64), held.map(|h| h.idx));
            self.decisions.push((w.seq, d));
            Ok(())
        }
        fn unmatched(&mut self, held: Held) -> io::Result<()> {
            self.unmatched.push(held.idx);
            Ok(())
        }
    }

    fn arb_meta() -> impl Strategy<Value = Meta> {
        (0u8..4, any::<bool>(), 0i64..3, 0u8..3, 0u32..3).prop_map(|(f, recent, date, kw, stray)| {
            let mut m = Meta::new(date, DateSource::Mtime);
            m.flags = Flags::parse(["", "S", "SF", "R"][f as usize]);
            m.recent = recent && f == 0;
            if kw > 0 {
                m.keywords.insert("$Junk");
            }
            if kw > 1 {
                m.keywords.insert("work");
            }
            m.stray_letters = stray;
            m
        })
    }

    #[test]
    fn states_read_back_as_written() {
        let mut m = Meta::new(-5, DateSource::DateHeader);
        m.flags = Flags::parse("SF");
        m.keywords.insert("$Label1");
        m.stray_letters = 5;
        m.recent = true;
        m.info_tail = Some(InfoTail::Extension(",W=10".into()));
        let w = Wanted {
            hash: [3; 32],
            seq: 9,
            meta: m.clone(),
            place: b"p".to_vec(),
            cached: true,
            key: Some([5; 32]),
            content: None,
            by_headers: true,
        };
        let mut b = Vec::new();
        w.write(&mut b);
        let r = Wanted::read(&b).unwrap();
        assert_eq!((r.hash, r.seq, &r.meta, &r.place, r.cached), (w.hash, w.seq, &m, &w.place, true));
        assert_eq!((r.key, r.content, r.by_headers), (w.key, None, true));
        let h = Held { hash: [4; 32], idx: 7, meta: m.clone(), entry: b"cur/x:2,S".to_vec(), key: None };
        let mut b = Vec::new();
        h.write(&mut b);
        let r = Held::read(&b).unwrap();
        assert_eq!((r.hash, r.idx, &r.meta, &r.entry, r.key), (h.hash, h.idx, &m, &h.entry, None));
        assert!(Held::read(&b[..40]).is_none());
    }

    proptest! {
        /// The join, through sorted runs of any size, decides every source message as the
        /// whole folder's planner does, and leaves the same target messages unmatched.
        #[test]
        fn joined_by_hash_decides_as_the_whole_folder(
            src in proptest::collection::vec((0u8..6, arb_meta()), 0..40),
            dst in proptest::collection::vec((0u8..6, arb_meta()), 0..40),
            reserve in proptest::collection::vec((0u8..6, 1u32..3), 0..3),
            budget in 1usize..4000,
            mbox in any::<bool>(),
        ) {
            let h = |b: u8| [b; 32];
            let rules = Rules { mbox, ..Rules::default() };
            let mut whole = Planner::new(dst.iter().map(|(b, m)| (h(*b), m.clone())), rules.clone());
            let mut reserved: Vec<(Hash, u32)> = reserve.iter().map(|(b, n)| (h(*b), *n)).collect();
            reserved.sort_unstable();
            for (hash, n) in &reserved {
                whole.reserve(*hash, *n);
            }
            let want: Vec<(u64, Decision)> = src
                .iter()
                .enumerate()
                .map(|(i, (b, m))| (i as u64, whole.decide(Candidate { hash: Some(&h(*b)), meta: m, size: 0, not_mail: None })))
                .collect();
            let want_unmatched: Vec<u64> = whole.unmatched().into_iter().map(|(i, _)| i as u64).collect();

            let mut s = Sorter::with_budget(budget);
            for (i, (b, m)) in src.iter().enumerate() {
                s.push(Wanted {
                    hash: h(*b),
                    seq: i as u64,
                    meta: m.clone(),
                    place: Vec::new(),
                    cached: false,
                    key: None,
                    content: None,
                    by_headers: false,
                })
                .unwrap();
            }
            let mut t = Sorter::with_budget(budget);
            for (i, (b, m)) in dst.iter().enumerate() {
                t.push(Held { hash: h(*b), idx: i as u64, meta: m.clone(), entry: vec![*b], key: None }).unwrap();
            }
            let (s, t) = (s.sorted().unwrap(), t.sorted().unwrap());
            let mut got = Collected::default();
            join(s.iter(), t.iter(), reserved.iter().copied(), &rules, &mut got).unwrap();
            got.decisions.sort_unstable_by_key(|(seq, _)| *seq);
            got.unmatched.sort_unstable();
            prop_assert_eq!(got.decisions, want);
            prop_assert_eq!(got.unmatched, want_unmatched);
        }
    }
}
