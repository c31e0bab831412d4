//! Matching source messages to target messages by content: pure, no I/O.
//!
//! Identity is the SHA-256 of the bytes as written. Matching is a multiset: each target
//! message answers for at most one source message, so two identical source messages need two
//! target copies. Among target messages with the right bytes, one that already has the right
//! flags is preferred, so a re-run plans nothing.

use std::borrow::Borrow;

use crate::fsx;
use crate::message::Meta;

pub type Hash = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not in the target: write it.
    Copy,
    /// In the target with the same flags and keywords.
    Skip(usize),
    /// In the target with other flags, keywords or date: rename or re-time that file.
    UpdateFlags(usize),
}

/// The target side of one folder: hashes sorted for binary search, metadata borrowed from the
/// target's index (a few bytes per target message, whatever the folder size).
#[derive(Debug)]
pub struct Matcher<M = Meta> {
    sorted: Vec<(Hash, u32)>,
    metas: Vec<M>,
    used: Vec<bool>,
    /// Target messages of a hash that belong to someone else (see [`Matcher::reserve`]).
    reserved: std::collections::HashMap<Hash, u32>,
}

impl<M: Borrow<Meta>> Matcher<M> {
    pub fn new(targets: impl IntoIterator<Item = (Hash, M)>) -> Matcher<M> {
        let mut m = Matcher { sorted: Vec::new(), metas: Vec::new(), used: Vec::new(), reserved: Default::default() };
        for (i, (h, meta)) in targets.into_iter().enumerate() {
            m.sorted.push((h, i as u32));
            m.metas.push(meta);
            m.used.push(false);
        }
        m.sorted.sort_unstable();
        m
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Leaves `n` of the target messages with this hash to someone else: at most the rest
    /// answer for source messages (which of them is still chosen by state).
    pub fn reserve(&mut self, hash: Hash, n: u32) {
        *self.reserved.entry(hash).or_default() += n;
    }

    pub fn decide(&mut self, hash: &Hash, meta: &Meta) -> Action {
        let lo = self.sorted.partition_point(|(h, _)| h < hash);
        let hi = lo + self.sorted[lo..].partition_point(|(h, _)| h == hash);
        let taken = self.sorted[lo..hi].iter().filter(|&&(_, i)| self.used[i as usize]).count();
        let reserved = self.reserved.get(hash).copied().unwrap_or(0) as usize;
        if taken + reserved >= hi - lo {
            return Action::Copy;
        }
        let free = || self.sorted[lo..hi].iter().map(|&(_, i)| i as usize).filter(|&i| !self.used[i]);
        let pick = free()
            .find(|&i| meta.same_state(self.metas[i].borrow()))
            .map(Action::Skip)
            .or_else(|| free().next().map(Action::UpdateFlags));
        match pick {
            Some(Action::Skip(i) | Action::UpdateFlags(i)) => {
                self.used[i] = true;
                pick.unwrap_or(Action::Copy)
            }
            _ => Action::Copy,
        }
    }

    /// Target messages no source message matched (what `--delete` removes).
    pub fn unmatched(&self) -> impl Iterator<Item = usize> + '_ {
        self.used.iter().enumerate().filter(|(_, u)| !**u).map(|(i, _)| i)
    }

    /// [`Matcher::unmatched`] with each one's hash, in target order.
    pub fn unmatched_hashes(&self) -> Vec<(usize, Hash)> {
        let mut v: Vec<(usize, Hash)> =
            self.sorted.iter().filter(|&&(_, i)| !self.used[i as usize]).map(|&(h, i)| (i as usize, h)).collect();
        v.sort_unstable_by_key(|&(i, _)| i);
        v
    }

    pub fn target_meta(&self, i: usize) -> Option<&Meta> {
        self.metas.get(i).map(Borrow::borrow)
    }
}

/// How a message's identity is computed for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The bytes exactly.
    Exact,
    /// The bytes as an mbox can hold them: ending with a newline (an mbox message always
    /// does, so one without gets it and must still match its copy).
    Mbox,
}

impl Identity {
    pub fn hash(self, pieces: &[&[u8]]) -> Hash {
        let ends = pieces.iter().rev().find(|p| !p.is_empty()).is_none_or(|p| p.ends_with(b"\n"));
        if self == Identity::Mbox && !ends {
            let mut v = pieces.to_vec();
            v.push(b"\n");
            fsx::sha256_pieces(&v)
        } else {
            fsx::sha256_pieces(pieces)
        }
    }
}

/// message; sync and verify compare the stored date.
pub fn storable_date(date: i64, bounds: Option<(i64, i64)>) -> i64 {
    bounds.map_or(date, |(lo, hi)| date.clamp(lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Flags;
    use crate::message::DateSource;

    fn meta(f: &str) -> Meta {
        let mut m = Meta::new(0, DateSource::Mtime);
        m.flags = Flags::parse(f);
        m
    }

    #[test]
    fn multiset_and_flag_preference() {
        let h1 = [1u8; 32];
        let h2 = [2u8; 32];
        let (s, e, f) = (meta("S"), meta(""), meta("F"));
        let mut m = Matcher::new(vec![(h1, &s), (h1, &e), (h2, &f)]);
        assert_eq!(m.decide(&h1, &meta("")), Action::Skip(1));
        assert_eq!(m.decide(&h1, &meta("R")), Action::UpdateFlags(0));
        assert_eq!(m.decide(&h1, &meta("")), Action::Copy, "two targets answer for two sources only");
        assert_eq!(m.decide(&[3u8; 32], &meta("")), Action::Copy);
        assert_eq!(m.unmatched().collect::<Vec<_>>(), vec![2]);
        assert_eq!(m.unmatched_hashes(), vec![(2, h2)]);
    }

    #[test]
    fn reserved_copies_answer_for_nobody() {
        let h = [1u8; 32];
        let (s, e) = (meta("S"), meta(""));
        let mut m = Matcher::new(vec![(h, &e), (h, &s)]);
        m.reserve(h, 1);
        assert_eq!(m.decide(&h, &meta("S")), Action::Skip(1), "the copy in the same state is chosen");
        assert_eq!(m.decide(&h, &meta("")), Action::Copy, "the other one is someone else's");
    }

    #[test]
    fn second_plan_is_empty() {
        let hs: Vec<(Hash, Meta)> = (0..5u8).map(|i| ([i; 32], meta(if i % 2 == 0 { "S" } else { "" }))).collect();
        let mut m = Matcher::new(hs.iter().map(|(h, m)| (*h, m)));
        for (h, mt) in &hs {
            assert!(matches!(m.decide(h, mt), Action::Skip(_)));
        }
        assert_eq!(m.unmatched().count(), 0);
    }
}
