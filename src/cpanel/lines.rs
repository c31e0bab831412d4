//! Line-oriented cPanel metadata formats (FORMATS.md §3.2–§3.5): `etc/DOMAIN/passwd`, `shadow`,
//! `quota`, `/etc/valiases/DOMAIN`, `/etc/vdomainaliases/DOMAIN`, `.spamassassin/user_prefs` and
//! the older `.autorespond/ADDRESS.conf` — each parsed into keyed lines, and merged by key.
//!
//! Design: every format is "one record per line, identified by a key" (the local part, the
//! alias's left-hand side, a SpamAssassin setting), so one parser per format only has to find
//! the key and say whether the line is well-formed. The text of a line is kept as it was read,
//! so a file that is not renamed is written back byte-identical. A line that does not parse is
//! kept verbatim (key `None`) and reported by the caller; it is never dropped. Rewriting names
//! inside lines is the caller's business (mapping.rs), not this module's.
//!
//! Merging is three-way when the last sync left a base (base.rs): per key, [`decide`] weighs
//! source and target against it, so a catch-up run takes what changed on one side, reports
//! what changed on both, and removes with `--delete` what the source removed. Without a base it
//! is the two-way merge of earlier versions. Storing and reading the base is not done here.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::mapping::valid_local;

/// One line of a metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KLine {
    /// The record's identity; `None` for comments, blank lines and lines that do not parse.
    pub key: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Passwd,
    Shadow,
    Quota,
    /// `KEY: destinations` (valiases) and `ALIAS: TARGET` (vdomainaliases).
    Aliases,
    SpamPrefs,
    AutorespondConf,
}

/// SpamAssassin settings that take one value (a second line for them replaces the first);
/// every other setting is a list (`whitelist_from`, `blacklist_from`, …) whose lines add up.
const SPAM_SINGLE: &[&str] = &[
    "required_score",
    "required_hits",
    "report_safe",
    "use_bayes",
    "bayes_auto_learn",
    "skip_rbl_checks",
    "ok_locales",
    "use_razor2",
    "use_pyzor",
    "use_dcc",
    "fold_headers",
];

impl Format {
    pub const ALL: [Format; 6] =
        [Format::Passwd, Format::Shadow, Format::Quota, Format::Aliases, Format::SpamPrefs, Format::AutorespondConf];

    pub fn name(self) -> &'static str {
        match self {
            Format::Passwd => "passwd",
            Format::Shadow => "shadow",
            Format::Quota => "quota",
            Format::Aliases => "aliases",
            Format::SpamPrefs => "user_prefs",
            Format::AutorespondConf => "autoresponder settings",
        }
    }

    /// The key of `line`: `Ok(None)` for comments and blank lines, `Err` for a line that does
    /// not parse.
    pub fn key(self, line: &str) -> Result<Option<String>, String> {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            return Ok(None);
        }
        match self {
            Format::Passwd | Format::Shadow | Format::Quota => {
                let fields: Vec<&str> = line.split(':').collect();
                let first = fields.first().copied().unwrap_or("");
                if !valid_local(first) {
                    return Err(format!("{:?} is not a valid local part", first));
                }
                let ok = match self {
                    Format::Passwd => fields.len() == 7,
                    Format::Shadow => fields.len() >= 2,
                    _ => {
                        fields.len() == 2 && fields.get(1).is_some_and(|q| q.trim().chars().all(|c| c.is_ascii_digit()))
                    }
                };
                if !ok {
                    return Err(match self {
                        Format::Passwd => format!("expected 7 colon-separated fields, found {}", fields.len()),
                        Format::Shadow => "expected LOCALPART:HASH:…".to_string(),
                        _ => "expected LOCALPART:BYTES".to_string(),
                    });
                }
                Ok(Some(first.to_string()))
            }
            Format::Aliases => {
                let (k, _) = line.split_once(':').ok_or("no ':' between the address and its destinations")?;
                let k = k.trim();
                if k.is_empty() || k.chars().any(char::is_whitespace) {
                    return Err(format!("{k:?} is not an address"));
                }
                Ok(Some(k.to_string()))
            }
            Format::SpamPrefs => {
                let words: Vec<&str> = t.split_whitespace().collect();
                let first = words.first().copied().unwrap_or("");
                if SPAM_SINGLE.contains(&first) {
                    Ok(Some(format!("setting {first}")))
                } else if first == "rewrite_header" {
                    Ok(Some(format!("setting rewrite_header {}", words.get(1).copied().unwrap_or(""))))
                } else {
                    Ok(Some(format!("line {}", words.join(" "))))
                }
            }
            Format::AutorespondConf => {
                let (k, _) = line.split_once('=').ok_or("expected key=value")?;
                Ok(Some(k.trim().to_string()))
            }
        }
    }
}

/// The lines of `text` with their keys, and `(line number, reason)` for each line that did
/// not parse (kept verbatim).
pub fn parse(fmt: Format, text: &str) -> (Vec<KLine>, Vec<(usize, String)>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let key = match fmt.key(line) {
            Ok(k) => k,
            Err(why) => {
                bad.push((i + 1, why));
                None
            }
        };
        out.push(KLine { key, text: line.to_string() });
    }
    (out, bad)
}

pub fn render(lines: &[KLine]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(&l.text);
        s.push('\n');
    }
    s
}

/// What the last sync recorded of one account file: for each key, the digest of the line the
/// source had then, as mapped (see [`digest`]). A key it does not list has no base.
pub type Base = BTreeMap<String, String>;

/// The digest a [`Base`] keeps of a line (or a whole file): SHA-256, so that the base holds no
/// password hash of a shadow line, only a fingerprint of it.
pub fn digest(text: &[u8]) -> String {
    hex::encode(Sha256::digest(text))
}

/// Whose line stays when both sides have the key with different text: the target's, unless
/// `--overwrite-metadata` asks for the source's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winner {
    Target,
    Source,
}

impl Winner {
    /// Which one a conflict report says was kept.
    pub fn kept(self) -> &'static str {
        match self {
            Winner::Source => "source's (--overwrite-metadata)",
            Winner::Target => "target's (use --overwrite-metadata to take the source's)",
        }
    }
}

/// How a merge decides: who wins a conflict, and whether what the source removed since the
/// last sync goes from the target too (`--delete`).
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub winner: Winner,
    pub delete: bool,
}

/// What becomes of one key (a line, a filter rule, a whole file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Keep,
    /// The source's replaces the target's, or is added.
    TakeSource,
    Remove,
}

/// Why a key was decided as it was, when the run must say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    None,
    /// Both sides have it, different, and no base says which changed (a warning).
    Differs,
    /// Changed (or removed) on both sides since the last sync: an error when the target's is
    /// kept, a warning when `--overwrite-metadata` took the source's.
    BothChanged,
    /// Removed at the source since the last sync, unchanged in the target, and kept: no
    /// `--delete`.
    Gone,
    /// Removed at the source since the last sync, so removed from the target (`--delete`).
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub note: Note,
    /// The digest the new base keeps for the key (`None`: no base for it).
    pub record: Option<String>,
}

/// The three-way decision for one key, from the digests of its base, its source and its
/// target (`None`: absent there).
///
/// The base is what the source had at the last sync (mapped), so "the source changed" is
/// source against base; "the target changed" is target against that same text, since a
/// synced line was written as the source had it. A line the target kept against the source
/// (a conflict) therefore counts as changed in the target, which errs on asking.
/// Without a base, nobody knows which side is newer: the two-way merge of earlier versions.
pub fn decide(base: Option<&str>, source: Option<&str>, target: Option<&str>, rules: Rules) -> Decision {
    let d = |action, note, record: Option<&str>| Decision { action, note, record: record.map(str::to_string) };
    let take = rules.winner == Winner::Source;
    match (base, source) {
        (None, None) => d(Action::Keep, Note::None, None),
        (None, Some(s)) => match target {
            None => d(Action::TakeSource, Note::None, Some(s)),
            Some(t) if t == s => d(Action::Keep, Note::None, Some(s)),
            // Left without a base while unsettled, so that it stays a two-way question.
            Some(_) if take => d(Action::TakeSource, Note::Differs, Some(s)),
            Some(_) => d(Action::Keep, Note::Differs, None),
        },
        // Unchanged at the source: whatever the target did since is the new server's business.
        (Some(b), Some(s)) if b == s => d(Action::Keep, Note::None, Some(b)),
        (Some(b), Some(s)) => match target {
            Some(t) if t == s => d(Action::Keep, Note::None, Some(s)),
            Some(t) if t == b => d(Action::TakeSource, Note::None, Some(s)),
            _ if take => d(Action::TakeSource, Note::BothChanged, Some(s)),
            // The old base stays: the next run asks again until the sides agree.
            _ => d(Action::Keep, Note::BothChanged, Some(b)),
        },
        (Some(b), None) => match target {
            None => d(Action::Keep, Note::None, None),
            Some(t) if t == b && rules.delete => d(Action::Remove, Note::Removed, None),
            Some(t) if t == b => d(Action::Keep, Note::Gone, Some(b)),
            Some(_) if rules.delete && take => d(Action::Remove, Note::BothChanged, None),
            Some(_) if rules.delete => d(Action::Keep, Note::BothChanged, Some(b)),
            Some(_) => d(Action::Keep, Note::None, Some(b)),
        },
    }
}

/// The result of merging source lines into a target file.
#[derive(Debug, Default)]
pub struct Merged {
    pub lines: Vec<KLine>,
    /// One sentence per key both sides have, different, with no base to tell which changed
    /// (warnings), and per key changed on both sides that `--overwrite-metadata` settled.
    pub conflicts: Vec<String>,
    /// One sentence per key changed on both sides since the last sync, kept as the target has
    /// it (errors: the run is not complete).
    pub unresolved: Vec<String>,
    /// Keys removed since they are gone from the source (`--delete`).
    pub removed: Vec<String>,
    /// Keys gone from the source, kept since there is no `--delete`.
    pub gone: Vec<String>,
    /// What the next run's base is.
    pub base: Base,
}

/// Merges `source` into `target` by key: target-only lines stay, source-only lines are added,
/// and a key both have with different text is decided by [`decide`] against `base` (the last
/// sync's; `None`: none, the two-way merge). Unkeyed source lines are added unless the same
/// text is already there (blank lines only into an empty file). `shown` is how a line is
/// quoted in a sentence (a shadow line without its hash).
pub fn merge(
    target: &[KLine],
    source: &[KLine],
    base: Option<&Base>,
    rules: Rules,
    shown: &dyn Fn(&str) -> String,
) -> Merged {
    let mut m = Merged { lines: target.to_vec(), ..Merged::default() };
    let empty_target = target.is_empty();
    // The source's line of each key (the first).
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut dropped: BTreeSet<usize> = BTreeSet::new();
    let quote = |l: Option<&KLine>| l.map_or("nothing".to_string(), |l| format!("{:?}", shown(&l.text)));
    let mut decide_key = |m: &mut Merged, k: &str, s: Option<&KLine>| {
        let at = m.lines.iter().position(|t| t.key.as_deref() == Some(k));
        let t = at.and_then(|i| m.lines.get(i));
        let (sd, td) = (s.map(|s| digest(s.text.as_bytes())), t.map(|t| digest(t.text.as_bytes())));
        let b = base.and_then(|b| b.get(k)).map(String::as_str);
        let dec = decide(b, sd.as_deref(), td.as_deref(), rules);
        let (ts, ss) = (quote(t), quote(s));
        match dec.note {
            Note::None => {}
            Note::Differs => {
                m.conflicts.push(format!("{k}: target has {ts}, source has {ss}; kept the {}", rules.winner.kept()))
            }
            Note::BothChanged => {
                let what = if s.is_none() {
                    "removed at the source and changed in the target"
                } else {
                    "changed on both sides"
                };
                let text = format!(
                    "{k}: {what} since the last sync (target has {ts}, source has {ss}); kept the {}",
                    rules.winner.kept()
                );
                if rules.winner == Winner::Source { m.conflicts.push(text) } else { m.unresolved.push(text) }
            }
            Note::Gone => m.gone.push(k.to_string()),
            Note::Removed => m.removed.push(k.to_string()),
        }
        match (dec.action, at, s) {
            (Action::TakeSource, Some(i), Some(s)) => {
                if let Some(t) = m.lines.get_mut(i) {
                    t.text = s.text.clone();
                }
            }
            (Action::TakeSource, None, Some(s)) => m.lines.push(s.clone()),
            (Action::Remove, Some(i), _) => {
                dropped.insert(i);
            }
            _ => {}
        }
        if let Some(r) = dec.record {
            m.base.insert(k.to_string(), r);
        }
    };
    for s in source {
        match &s.key {
            // A second source line with a key already seen changes nothing (the first decides);
            // one that says something else is not carried, and that is said.
            Some(k) if seen.contains_key(k.as_str()) => {
                if seen.get(k.as_str()) != Some(&s.text.as_str()) {
                    m.conflicts.push(format!("{k}: the source has it twice; {:?} not merged", shown(&s.text)));
                }
            }
            Some(k) => {
                seen.insert(k.as_str(), s.text.as_str());
                decide_key(&mut m, k, Some(s))
            }
            None => {
                if s.text.trim().is_empty() {
                    if empty_target {
                        m.lines.push(s.clone());
                    }
                } else if !m.lines.iter().any(|t| t.text == s.text) {
                    m.lines.push(s.clone());
                }
            }
        }
    }
    for k in base.into_iter().flat_map(|b| b.keys()) {
        if !seen.contains_key(k.as_str()) {
            decide_key(&mut m, k, None);
        }
    }
    if !dropped.is_empty() {
        m.lines = m.lines.into_iter().enumerate().filter(|(i, _)| !dropped.contains(i)).map(|(_, l)| l).collect();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_keys_and_bad_lines() {
        let (l, bad) = parse(Format::Passwd, "a:x:1:1::/h/mail/d/a:/h\n\nbroken line\n# c\n");
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].key.as_deref(), Some("a"));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 3);
        assert_eq!(render(&l), "a:x:1:1::/h/mail/d/a:/h\n\nbroken line\n# c\n");
    }

    #[test]
    fn shadow_and_quota() {
        assert_eq!(Format::Shadow.key("a:$6$x$y:19005::::::").unwrap().as_deref(), Some("a"));
        assert!(Format::Quota.key("a:12x").is_err());
        assert_eq!(Format::Quota.key("a:262144000").unwrap().as_deref(), Some("a"));
        assert!(Format::Shadow.key("../x:h").is_err());
    }

    #[test]
    fn aliases() {
        assert_eq!(Format::Aliases.key("*: :fail: No Such User Here").unwrap().as_deref(), Some("*"));
        assert_eq!(Format::Aliases.key("s@d: a@d, \"|/bin/x y\"").unwrap().as_deref(), Some("s@d"));
        assert!(Format::Aliases.key("no colon here").is_err());
    }

    #[test]
    fn spam_prefs_single_and_list_settings() {
        assert_eq!(
            Format::SpamPrefs.key("required_score 6.0").unwrap(),
            Format::SpamPrefs.key("required_score 5").unwrap()
        );
        assert_ne!(
            Format::SpamPrefs.key("whitelist_from *@a").unwrap(),
            Format::SpamPrefs.key("whitelist_from *@b").unwrap()
        );
    }

    const KEEP: Rules = Rules { winner: Winner::Target, delete: false };
    const TAKE: Rules = Rules { winner: Winner::Source, delete: false };

    fn same(l: &str) -> String {
        l.to_string()
    }

    #[test]
    fn merge_keeps_target_and_reports_conflicts() {
        let t = parse(Format::Passwd, "t:x:1:1::/h/mail/d/t:/h\na:x:1:1::/OLD:/h\n").0;
        let s = parse(Format::Passwd, "a:x:1:1::/NEW:/h\nb:x:1:1::/h/mail/d/b:/h\n").0;
        let m = merge(&t, &s, None, KEEP, &same);
        assert_eq!(render(&m.lines), "t:x:1:1::/h/mail/d/t:/h\na:x:1:1::/OLD:/h\nb:x:1:1::/h/mail/d/b:/h\n");
        assert_eq!(m.conflicts.len(), 1);
        assert!(m.unresolved.is_empty());
        assert!(!m.base.contains_key("a"), "an unsettled key keeps no base");
        let m = merge(&t, &s, None, TAKE, &same);
        assert!(render(&m.lines).contains("/NEW"));
        let again = merge(&m.lines, &s, None, TAKE, &same);
        assert_eq!(again.lines, m.lines);
        assert!(again.conflicts.is_empty());
        // A key twice in the source: the first decides, the other text is said, not merged.
        let twice = parse(Format::Passwd, "b:x:1:1::/h/mail/d/b:/h\nb:x:2:2::/other:/h\nb:x:1:1::/h/mail/d/b:/h\n").0;
        let m = merge(&t, &twice, None, KEEP, &same);
        assert_eq!(render(&m.lines), "t:x:1:1::/h/mail/d/t:/h\na:x:1:1::/OLD:/h\nb:x:1:1::/h/mail/d/b:/h\n");
        assert_eq!(m.conflicts.len(), 1, "{:?}", m.conflicts);
        assert!(m.conflicts[0].contains("/other"), "{:?}", m.conflicts);
    }

    #[test]
    fn merge_into_nothing_is_the_source() {
        let s = parse(Format::Aliases, "# head\n\nx@d: y@d\nbad\n").0;
        assert_eq!(render(&merge(&[], &s, None, KEEP, &same).lines), "# head\n\nx@d: y@d\nbad\n");
    }

    fn d(s: &str) -> String {
        digest(s.as_bytes())
    }

    /// Every case of the three-way decision, with its record.
    #[test]
    fn decide_each_case() {
        let (b, s, t) = (d("base"), d("source"), d("target"));
        let (b, s, t) = (Some(b.as_str()), Some(s.as_str()), Some(t.as_str()));
        let del = Rules { delete: true, ..KEEP };
        let del_take = Rules { delete: true, ..TAKE };
        let case = |base, source, target, rules| {
            let x = decide(base, source, target, rules);
            (x.action, x.note, x.record)
        };
        let rec = |x: Option<&str>| x.map(str::to_string);
        use Action::*;
        // No base: the two-way merge.
        assert_eq!(case(None, s, None, KEEP), (TakeSource, Note::None, rec(s)));
        assert_eq!(case(None, s, s, KEEP), (Keep, Note::None, rec(s)));
        assert_eq!(case(None, s, t, KEEP), (Keep, Note::Differs, None));
        assert_eq!(case(None, s, t, TAKE), (TakeSource, Note::Differs, rec(s)));
        assert_eq!(case(None, None, t, del), (Keep, Note::None, None));
        // Unchanged at the source: the target's, whatever it is, even with --overwrite-metadata.
        for target in [b, t, None] {
            assert_eq!(case(b, b, target, TAKE), (Keep, Note::None, rec(b)));
        }
        // Changed at the source only, or the same change on both sides.
        assert_eq!(case(b, s, b, KEEP), (TakeSource, Note::None, rec(s)));
        assert_eq!(case(b, s, s, KEEP), (Keep, Note::None, rec(s)));
        // Changed (or removed) on both sides: the old base stays while unresolved.
        assert_eq!(case(b, s, t, KEEP), (Keep, Note::BothChanged, rec(b)));
        assert_eq!(case(b, s, None, KEEP), (Keep, Note::BothChanged, rec(b)));
        assert_eq!(case(b, s, t, TAKE), (TakeSource, Note::BothChanged, rec(s)));
        // Removed at the source.
        assert_eq!(case(b, None, b, KEEP), (Keep, Note::Gone, rec(b)));
        assert_eq!(case(b, None, b, del), (Remove, Note::Removed, None));
        assert_eq!(case(b, None, t, KEEP), (Keep, Note::None, rec(b)));
        assert_eq!(case(b, None, t, del), (Keep, Note::BothChanged, rec(b)));
        assert_eq!(case(b, None, t, del_take), (Remove, Note::BothChanged, None));
        assert_eq!(case(b, None, None, del), (Keep, Note::None, None));
    }

    #[test]
    fn merge_three_way() {
        let synced = "a:1\nb:2\nc:3\n";
        let base = merge(&[], &parse(Format::Quota, synced).0, None, KEEP, &same).base;
        assert_eq!(base.len(), 3);
        // The source changed a, the target changed b, the source removed c; x is new.
        let source = parse(Format::Quota, "a:10\nb:2\nx:9\n").0;
        let target = parse(Format::Quota, "b:20\na:1\nc:3\nt:5\n").0;
        let m = merge(&target, &source, Some(&base), KEEP, &same);
        assert_eq!(render(&m.lines), "b:20\na:10\nc:3\nt:5\nx:9\n");
        assert!(m.conflicts.is_empty() && m.unresolved.is_empty() && m.removed.is_empty());
        assert_eq!(m.gone, ["c"]);
        assert_eq!(m.base.get("a"), Some(&d("a:10")));
        assert_eq!(m.base.get("c"), Some(&d("c:3")), "kept for a later --delete");
        assert!(!m.base.contains_key("t"), "a target-only line has no base");
        let m = merge(&target, &source, Some(&base), Rules { delete: true, ..KEEP }, &same);
        assert_eq!(render(&m.lines), "b:20\na:10\nt:5\nx:9\n");
        assert_eq!((m.removed.as_slice(), m.base.contains_key("c")), (&["c".to_string()][..], false));
        // Both changed a: unresolved, the target's kept, shown as `shown` says.
        let target = parse(Format::Quota, "a:7\nb:2\nc:3\n").0;
        let m = merge(&target, &source, Some(&base), KEEP, &|l| l.replace('7', "*"));
        assert_eq!(render(&m.lines), "a:7\nb:2\nc:3\nx:9\n");
        assert_eq!(m.unresolved.len(), 1);
        assert!(m.unresolved[0].contains("\"a:*\"") && m.unresolved[0].contains("\"a:10\""), "{:?}", m.unresolved);
        assert_eq!(m.base.get("a"), Some(&d("a:1")), "asked again next run");
        // A key the target removed and the source left alone stays removed.
        let m = merge(&parse(Format::Quota, "b:2\nc:3\n").0, &parse(Format::Quota, synced).0, Some(&base), KEEP, &same);
        assert_eq!(render(&m.lines), "b:2\nc:3\n");
    }
}
