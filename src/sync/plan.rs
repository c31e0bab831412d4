//! The plan of a folder: what becomes of each source message and each target message. Pure:
//! no file is read or written here, so sync, its dry run, verify and the cPanel archive path
//! take the same decisions from the same facts.
//!
//! Identity is the SHA-256 of the bytes as written. Matching is a multiset: each target
//! message answers for at most one source message, so two identical source messages need two
//! target copies. Among target messages with the right bytes, one that already has the right
//! flags is preferred, so a re-run plans nothing.

use std::borrow::Borrow;

use crate::deletion::{self, Deletion, Record, SourceState};
use crate::fsx;
use crate::message::Meta;

pub use crate::message::Hash;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not in the target: write it.
    Copy,
    /// In the target with the same flags and keywords.
    Skip(usize),
    /// In the target with other flags, keywords or date: rename or re-time that file.
    UpdateFlags(usize),
}

/// The target messages' states, by index: a list, or the target's own index (so the matcher
/// needs no copy of them).
pub trait TargetMetas {
    fn meta(&self, i: usize) -> Option<&Meta>;
}

impl<M: Borrow<Meta>> TargetMetas for Vec<M> {
    fn meta(&self, i: usize) -> Option<&Meta> {
        self.get(i).map(Borrow::borrow)
    }
}

/// The target side of one folder: hashes sorted for binary search, each target message's
/// state looked up in `metas` (a few bytes per target message, whatever the folder size).
#[derive(Debug)]
pub struct Matcher<T = Vec<Meta>> {
    sorted: Vec<(Hash, u32)>,
    metas: T,
    used: Vec<bool>,
    /// Target messages of a hash that belong to someone else (see [`Matcher::reserve`]).
    reserved: std::collections::HashMap<Hash, u32>,
}

impl<M: Borrow<Meta>> Matcher<Vec<M>> {
    pub fn new(targets: impl IntoIterator<Item = (Hash, M)>) -> Matcher<Vec<M>> {
        let (hashes, metas): (Vec<Hash>, Vec<M>) = targets.into_iter().unzip();
        Matcher::over(hashes, metas)
    }
}

impl<T: TargetMetas> Matcher<T> {
    /// `hashes` in target order; `metas` answers for the same indexes.
    pub fn over(hashes: impl IntoIterator<Item = Hash>, metas: T) -> Matcher<T> {
        let mut sorted: Vec<(Hash, u32)> = hashes.into_iter().enumerate().map(|(i, h)| (h, i as u32)).collect();
        let used = vec![false; sorted.len()];
        sorted.sort_unstable();
        Matcher { sorted, metas, used, reserved: Default::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
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
        // A copy in exactly this state first (new/ for new/), then one that will do (a seen
        // copy for a new message): else two identical messages in two states could swap copies
        // from one run to the next.
        let fits = |i: usize, exact: bool| {
            self.metas.meta(i).is_some_and(|t| meta.same_state(t) && (!exact || meta.goes_to_new() == t.goes_to_new()))
        };
        let pick = free()
            .find(|&i| fits(i, true))
            .or_else(|| free().find(|&i| fits(i, false)))
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
        self.metas.meta(i)
    }
}

/// What makes a target message a copy of a source message (`--identity`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityBy {
    /// The same bytes (as the target keeps them).
    #[default]
    Content,
    /// The same bytes, or else the same Message-ID, Date and body (as every tool keeps it)
    /// ([`super::by_headers`]): copies other tools made.
    Headers,
}

impl IdentityBy {
    pub const ALL: [IdentityBy; 2] = [IdentityBy::Content, IdentityBy::Headers];

    pub fn name(self) -> &'static str {
        match self {
            IdentityBy::Content => "content",
            IdentityBy::Headers => "headers",
        }
    }
}

/// How a message's identity is computed for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The bytes exactly.
    Exact,
    /// The bytes as an mbox holds them: without mbox-internal header fields (Status, X-UID,
    /// Content-Length…, which are the mbox's state, not the message's), and ending with a
    /// newline (an mbox message always does, so one without gets it and must still match its
    /// copy). See [`crate::store::mbox::flavour`].
    Mbox,
}

impl Identity {
    pub fn hash(self, pieces: &[&[u8]]) -> Hash {
        match self {
            Identity::Exact => fsx::sha256_pieces(pieces),
            Identity::Mbox => {
                let mut h = MboxHasher::default();
                crate::store::mbox::write::cut_windows(pieces, &mut |_, s| h.update(s));
                h.finish()
            }
        }
    }
}

/// [`Identity::Mbox`] of bytes already cut.
#[derive(Default)]
pub struct MboxHasher {
    h: sha2::Sha256,
    last: Option<u8>,
}

impl MboxHasher {
    pub fn update(&mut self, s: &[u8]) {
        use sha2::Digest;
        if let Some(&b) = s.last() {
            self.last = Some(b);
            self.h.update(s);
        }
    }

    pub fn finish(mut self) -> Hash {
        use sha2::Digest;
        if self.last.is_some_and(|b| b != b'\n') {
            self.h.update(b"\n");
        }
        self.h.finalize().into()
    }
}

/// A date the target's file system cannot store becomes the nearest one it can, said per
/// message; sync and verify compare the stored date.
pub fn storable_date(date: i64, bounds: Option<(i64, i64)>) -> i64 {
    bounds.map_or(date, |(lo, hi)| date.clamp(lo, hi))
}

/// Why a message is left out by `--max-size`, `--min-age` or `--max-age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterReason {
    MaxSize,
    MinAge,
    MaxAge,
}

impl FilterReason {
    /// The name reports and the JSON counts use.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterReason::MaxSize => "max-size",
            FilterReason::MinAge => "min-age",
            FilterReason::MaxAge => "max-age",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub max_size: Option<u64>,
    pub min_age_days: Option<f64>,
    pub max_age_days: Option<f64>,
    pub now: i64,
}

impl Filters {
    /// Why a message is filtered out, if it is.
    pub fn reason(&self, size: u64, date: i64) -> Option<FilterReason> {
        if self.max_size.is_some_and(|m| size > m) {
            return Some(FilterReason::MaxSize);
        }
        let age_days = (self.now - date) as f64 / 86400.0;
        if self.min_age_days.is_some_and(|d| age_days < d) {
            return Some(FilterReason::MinAge);
        }
        if self.max_age_days.is_some_and(|d| age_days > d) {
            return Some(FilterReason::MaxAge);
        }
        None
    }

    pub fn any(&self) -> bool {
        self.max_size.is_some() || self.min_age_days.is_some() || self.max_age_days.is_some()
    }
}

/// Why a source entry is not a message to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotMail {
    /// The folder-state message some mbox writers put first (UW-IMAP, Dovecot).
    Pseudo,
    /// Deleted from the source while the run read it.
    Gone,
}

/// What the plan does with one source message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not in the target: write it.
    Copy,
    /// Target message `i` holds it as it should be.
    Skip(usize),
    /// Target message `i` holds the bytes with other flags or keywords (maybe another date
    /// too): rename, and re-time, that file.
    UpdateFlags(usize),
    /// Target message `i` holds the bytes and the flags with another internal date: re-time it.
    UpdateDate(usize),
    Filtered(FilterReason),
    NotMail(NotMail),
}

impl Decision {
    /// The target message this decision acts on or leaves alone.
    pub fn target(self) -> Option<usize> {
        match self {
            Decision::Skip(i) | Decision::UpdateFlags(i) | Decision::UpdateDate(i) => Some(i),
            _ => None,
        }
    }

    /// Something is written for it (a new file or a changed one).
    pub fn writes(self) -> bool {
        matches!(self, Decision::Copy | Decision::UpdateFlags(_) | Decision::UpdateDate(_))
    }

    pub fn updates(self) -> bool {
        matches!(self, Decision::UpdateFlags(_) | Decision::UpdateDate(_))
    }
}

/// What one source message brings to the plan. `hash` is `None` when the target folder is
/// empty and nothing asks for it: such a message is copied without being compared.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'m> {
    pub hash: Option<&'m Hash>,
    pub meta: &'m Meta,
    pub size: u64,
    pub not_mail: Option<NotMail>,
}

/// The rules of a folder's plan.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub filters: Filters,
    /// The file times the target's file system stores (dates outside are compared clamped).
    pub bounds: Option<(i64, i64)>,
    /// The target is an mbox: flags compare as an mbox can hold them ([`Meta::mbox_view`]).
    pub mbox: bool,
}

impl Rules {
    /// A source message's state as the target will hold it.
    pub fn as_stored(&self, meta: &Meta) -> Meta {
        let mut m = if self.mbox { meta.mbox_view() } else { meta.clone() };
        m.date = storable_date(m.date, self.bounds);
        m
    }
}

/// A folder's plan being made, one source message at a time (a folder is planned as it is
/// read, in chunks; [`plan`] makes a whole one at once).
pub struct Planner<T = Vec<Meta>> {
    matcher: Matcher<T>,
    rules: Rules,
}

impl<M: Borrow<Meta>> Planner<Vec<M>> {
    /// `targets`: each target message's hash and state, as the target holds it.
    pub fn new(targets: impl IntoIterator<Item = (Hash, M)>, rules: Rules) -> Planner<Vec<M>> {
        Planner { matcher: Matcher::new(targets), rules }
    }
}

impl<T: TargetMetas> Planner<T> {
    /// Leaves `n` target copies of `hash` to another source of a merged folder.
    pub fn reserve(&mut self, hash: Hash, n: u32) {
        self.matcher.reserve(hash, n);
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn decide(&mut self, c: Candidate<'_>) -> Decision {
        if let Some(n) = c.not_mail {
            return Decision::NotMail(n);
        }
        if let Some(why) = self.rules.filters.reason(c.size, c.meta.date) {
            return Decision::Filtered(why);
        }
        let Some(hash) = c.hash else { return Decision::Copy };
        let want = self.rules.as_stored(c.meta);
        match self.matcher.decide(hash, &want) {
            Action::Copy => Decision::Copy,
            Action::Skip(i) => Decision::Skip(i),
            Action::UpdateFlags(i) => match self.matcher.target_meta(i) {
                Some(t) if want.same_flags(t) && (want.goes_to_new() || !t.goes_to_new()) => Decision::UpdateDate(i),
                _ => Decision::UpdateFlags(i),
            },
        }
    }

    /// Target messages no source message matched, with their hashes, in target order.
    pub fn unmatched(&self) -> Vec<(usize, Hash)> {
        self.matcher.unmatched_hashes()
    }
}

/// What the plan does with a target message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFate {
    Keep,
    Delete,
}

/// A whole folder's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per source message, in the order given.
    pub sources: Vec<Decision>,
    /// Per target message, in the order given.
    pub targets: Vec<TargetFate>,
    /// Why deletions the mode asked for were not planned.
    pub refusal: Option<String>,
}

impl Plan {
    pub fn copies(&self) -> usize {
        self.sources.iter().filter(|d| **d == Decision::Copy).count()
    }

    pub fn updates(&self) -> usize {
        self.sources.iter().filter(|d| d.updates()).count()
    }

    pub fn deletions(&self) -> usize {
        self.targets.iter().filter(|t| **t == TargetFate::Delete).count()
    }

    /// Nothing to write and nothing to delete: a run would leave the folder as it is.
    pub fn is_settled(&self) -> bool {
        self.copies() == 0 && self.updates() == 0 && self.deletions() == 0
    }
}

/// What deleting in a folder depends on besides its matching.
#[derive(Debug, Clone, Copy)]
pub struct DeletionRules<'r> {
    pub mode: Deletion,
    pub max_delete: Option<u64>,
    /// Reading the source folder failed somewhere.
    pub read_errors: bool,
    /// The record of earlier copies (only `--delete` reads it).
    pub record: &'r Record,
}

/// Plans a whole folder: `sources` in order, `targets` as the target holds them. Deletions
/// follow [`deletion::choose`].
pub fn plan<'m>(
    sources: impl IntoIterator<Item = Candidate<'m>>,
    targets: &[(Hash, Meta)],
    rules: Rules,
    deletion: DeletionRules<'_>,
) -> Plan {
    let mut p = Planner::new(targets.iter().map(|(h, m)| (*h, m)), rules);
    let mut source =
        SourceState { messages: 0, read_errors: deletion.read_errors, filtered: false, interrupted: false };
    let mut decisions = Vec::new();
    for c in sources {
        let d = p.decide(c);
        match d {
            Decision::Filtered(_) => source.filtered = true,
            Decision::NotMail(_) => {}
            _ => source.messages += 1,
        }
        decisions.push(d);
    }
    let (gone, refusal) = deletion::choose(deletion.mode, &p.unmatched(), deletion.record, source, deletion.max_delete);
    let mut fates = vec![TargetFate::Keep; targets.len()];
    for i in gone {
        if let Some(f) = fates.get_mut(i) {
            *f = TargetFate::Delete;
        }
    }
    Plan { sources: decisions, targets: fates, refusal }
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

    fn cand<'m>(h: &'m Hash, m: &'m Meta) -> Candidate<'m> {
        Candidate { hash: Some(h), meta: m, size: 10, not_mail: None }
    }

    fn dated(f: &str, date: i64) -> Meta {
        let mut m = meta(f);
        m.date = date;
        m
    }

    #[test]
    fn each_decision_from_facts_alone() {
        let (a, b, c, d) = ([1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32]);
        let targets = [(a, dated("S", 5)), (b, dated("S", 5)), (c, dated("S", 5))];
        let filters = Filters { max_size: Some(100), ..Filters::default() };
        let mut p = Planner::new(targets.iter().map(|(h, m)| (*h, m)), Rules { filters, ..Rules::default() });
        assert_eq!(p.decide(cand(&a, &dated("S", 5))), Decision::Skip(0));
        assert_eq!(p.decide(cand(&b, &dated("SF", 5))), Decision::UpdateFlags(1));
        assert_eq!(p.decide(cand(&c, &dated("S", 9))), Decision::UpdateDate(2));
        assert_eq!(p.decide(cand(&d, &dated("S", 5))), Decision::Copy);
        let big = Candidate { size: 101, ..cand(&d, &targets[0].1) };
        assert_eq!(p.decide(big), Decision::Filtered(FilterReason::MaxSize));
        let pseudo = Candidate { not_mail: Some(NotMail::Pseudo), ..cand(&d, &targets[0].1) };
        assert_eq!(p.decide(pseudo), Decision::NotMail(NotMail::Pseudo));
        let unhashed = Candidate { hash: None, ..cand(&a, &targets[0].1) };
        assert_eq!(p.decide(unhashed), Decision::Copy, "nothing to compare with: copied");
    }

    #[test]
    fn a_seen_copy_is_never_made_new_again_but_an_unseen_one_is_re_flagged() {
        let h = [1u8; 32];
        let mut new = meta("");
        new.recent = true;
        let seen = meta("");
        let mut p = Planner::new(vec![(h, &new)], Rules::default());
        assert_eq!(p.decide(cand(&h, &seen)), Decision::UpdateFlags(0), "seen in the source, new/ in the target");
        let mut p = Planner::new(vec![(h, &seen)], Rules::default());
        assert_eq!(p.decide(cand(&h, &new)), Decision::Skip(0));
    }

    #[test]
    fn an_mbox_target_compares_what_an_mbox_holds() {
        let h = [1u8; 32];
        let mut passed = meta("SP");
        passed.stray_letters = 1;
        let held = meta("S");
        let mut p = Planner::new(vec![(h, &held)], Rules { mbox: true, ..Rules::default() });
        assert_eq!(p.decide(cand(&h, &passed)), Decision::Skip(0), "P and keyword letters have no place in an mbox");
        let mut p = Planner::new(vec![(h, &held)], Rules::default());
        assert_eq!(p.decide(cand(&h, &passed)), Decision::UpdateFlags(0));
    }

    /// Found by the property below: two copies of one message, one new and one seen, must each
    /// keep the copy in their own state, or a re-run re-flags one of them.
    #[test]
    fn identical_messages_keep_the_copies_in_their_own_state() {
        let h = [4u8; 32];
        let mut new = meta("");
        new.recent = true;
        let seen = meta("");
        let src = vec![(h, new.clone()), (h, seen.clone())];
        let dst = vec![(h, dated("", 1)), (h, new.clone())];
        let p = whole(&src, &dst, Deletion::Off, Rules::default());
        assert_eq!(p.sources, vec![Decision::Skip(1), Decision::UpdateDate(0)]);
        let after = vec![(h, seen), (h, new)];
        assert!(whole(&src, &after, Deletion::Off, Rules::default()).is_settled());
    }

    #[test]
    fn dates_compare_as_the_target_stores_them() {
        let h = [1u8; 32];
        let stored = dated("S", -100);
        let rules = Rules { bounds: Some((-100, 100)), ..Rules::default() };
        let mut p = Planner::new(vec![(h, &stored)], rules);
        assert_eq!(p.decide(cand(&h, &dated("S", -5000))), Decision::Skip(0));
    }

    fn whole(sources: &[(Hash, Meta)], targets: &[(Hash, Meta)], mode: Deletion, rules: Rules) -> Plan {
        let cands = sources.iter().map(|(h, m)| cand(h, m));
        let record = Record::default();
        plan(cands, targets, rules, DeletionRules { mode, max_delete: None, read_errors: false, record: &record })
    }

    #[test]
    fn a_whole_plan_and_its_deletions() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let src = vec![(a, meta("S")), (c, meta(""))];
        let dst = vec![(a, meta("S")), (b, meta("S"))];
        let p = whole(&src, &dst, Deletion::Mirror, Rules::default());
        assert_eq!(p.sources, vec![Decision::Skip(0), Decision::Copy]);
        assert_eq!(p.targets, vec![TargetFate::Keep, TargetFate::Delete]);
        assert_eq!((p.copies(), p.updates(), p.deletions()), (1, 0, 1));
        let off = whole(&src, &dst, Deletion::Off, Rules::default());
        assert_eq!(off.targets, vec![TargetFate::Keep, TargetFate::Keep]);
        // --delete with no record of earlier copies cannot tell a copy from other mail.
        let copied = whole(&src, &dst, Deletion::Copied, Rules::default());
        assert_eq!(copied.deletions(), 0);
        assert!(copied.refusal.is_some());
    }

    #[test]
    fn a_filter_or_an_empty_source_deletes_nothing() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let dst = vec![(a, meta("S")), (b, meta("S"))];
        let filters = Filters { max_size: Some(1), ..Filters::default() };
        let p = whole(&[(a, meta("S"))], &dst, Deletion::Mirror, Rules { filters, ..Rules::default() });
        assert_eq!(p.sources, vec![Decision::Filtered(FilterReason::MaxSize)]);
        assert_eq!(p.deletions(), 0, "the filtered message's copy only looks unmatched");
        let p = whole(&[], &dst, Deletion::Mirror, Rules::default());
        assert_eq!(p.deletions(), 0, "an empty source looks like a failed mount");
    }

    #[test]
    fn the_plan_after_carrying_it_out_is_settled() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let src = vec![(a, dated("S", 1)), (b, dated("F", 2)), (c, dated("", 3)), (c, dated("", 3))];
        let dst = vec![(b, dated("", 2)), (a, dated("S", 7))];
        let p = whole(&src, &dst, Deletion::Mirror, Rules::default());
        assert!(!p.is_settled());
        // Carried out: updates take the source's state, copies are added.
        let mut after = dst.clone();
        for (d, (h, m)) in p.sources.iter().zip(&src) {
            match d {
                Decision::Copy => after.push((*h, m.clone())),
                Decision::UpdateFlags(i) | Decision::UpdateDate(i) => after[*i].1 = m.clone(),
                _ => {}
            }
        }
        assert!(whole(&src, &after, Deletion::Mirror, Rules::default()).is_settled());
    }

    fn arb_meta() -> impl proptest::strategy::Strategy<Value = Meta> {
        use proptest::prelude::*;
        (0u8..4, any::<bool>(), 0i64..3).prop_map(|(f, recent, date)| {
            let mut m = dated(["", "S", "SF", "R"][f as usize], date);
            m.recent = recent && f == 0;
            m
        })
    }

    proptest::proptest! {
        /// Whatever the folder pair, carrying out a plan (copies added, updates taking the
        /// source's state, deletions done) leaves a pair whose plan is settled; every source
        /// message gets one decision and no target message answers for two.
        #[test]
        fn carrying_out_a_plan_settles_the_folder(
            src in proptest::collection::vec((0u8..5, arb_meta()), 0..12),
            dst in proptest::collection::vec((0u8..5, arb_meta()), 0..12),
        ) {
            let h = |b: u8| [b; 32];
            let src: Vec<(Hash, Meta)> = src.into_iter().map(|(b, m)| (h(b), m)).collect();
            let dst: Vec<(Hash, Meta)> = dst.into_iter().map(|(b, m)| (h(b), m)).collect();
            let p = whole(&src, &dst, Deletion::Mirror, Rules::default());
            proptest::prop_assert_eq!(p.sources.len(), src.len());
            let mut used: Vec<usize> = p.sources.iter().filter_map(|d| d.target()).collect();
            used.sort_unstable();
            let n = used.len();
            used.dedup();
            proptest::prop_assert_eq!(n, used.len(), "a target message answers for two sources");
            let mut after: Vec<Option<(Hash, Meta)>> = dst.iter().cloned().map(Some).collect();
            for (d, (hash, m)) in p.sources.iter().zip(&src) {
                match d {
                    Decision::Copy => after.push(Some((*hash, m.clone()))),
                    Decision::UpdateFlags(i) | Decision::UpdateDate(i) => after[*i] = Some((*hash, m.clone())),
                    _ => {}
                }
            }
            for (i, f) in p.targets.iter().enumerate() {
                if *f == TargetFate::Delete {
                    after[i] = None;
                }
            }
            let after: Vec<(Hash, Meta)> = after.into_iter().flatten().collect();
            let again = whole(&src, &after, Deletion::Mirror, Rules::default());
            proptest::prop_assert!(again.is_settled(), "{:?}", again);
        }
    }
}
