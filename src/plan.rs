//! Matching source messages to target messages by content: pure, no I/O.
//!
//! Identity is the SHA-256 of the bytes as written. Matching is a multiset: each target
//! message answers for at most one source message, so two identical source messages need two
//! target copies. Among target messages with the right bytes, one that already has the right
//! flags is preferred, so a re-run plans nothing.

use std::collections::HashMap;

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

#[derive(Debug, Default)]
pub struct Matcher {
    by_hash: HashMap<Hash, Vec<usize>>,
    metas: Vec<Meta>,
    used: Vec<bool>,
}

impl Matcher {
    pub fn new(targets: impl IntoIterator<Item = (Hash, Meta)>) -> Matcher {
        let mut m = Matcher::default();
        for (i, (h, meta)) in targets.into_iter().enumerate() {
            m.by_hash.entry(h).or_default().push(i);
            m.metas.push(meta);
            m.used.push(false);
        }
        m
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    pub fn decide(&mut self, hash: &Hash, meta: &Meta) -> Action {
        let Some(cands) = self.by_hash.get(hash) else { return Action::Copy };
        let free = || cands.iter().copied().filter(|&i| !self.used[i]);
        let pick = free()
            .find(|&i| meta.same_state(&self.metas[i]))
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

    pub fn target_meta(&self, i: usize) -> Option<&Meta> {
        self.metas.get(i)
    }
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
        let mut m = Matcher::new(vec![(h1, meta("S")), (h1, meta("")), (h2, meta("F"))]);
        assert_eq!(m.decide(&h1, &meta("")), Action::Skip(1));
        assert_eq!(m.decide(&h1, &meta("R")), Action::UpdateFlags(0));
        assert_eq!(m.decide(&h1, &meta("")), Action::Copy, "two targets answer for two sources only");
        assert_eq!(m.decide(&[3u8; 32], &meta("")), Action::Copy);
        assert_eq!(m.unmatched().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn second_plan_is_empty() {
        let hs: Vec<(Hash, Meta)> = (0..5u8).map(|i| ([i; 32], meta(if i % 2 == 0 { "S" } else { "" }))).collect();
        let mut m = Matcher::new(hs.clone());
        for (h, mt) in &hs {
            assert!(matches!(m.decide(h, mt), Action::Skip(_)));
        }
        assert_eq!(m.unmatched().count(), 0);
    }
}
