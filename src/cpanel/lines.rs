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

/// The result of merging source lines into a target file.
#[derive(Debug, Default)]
pub struct Merged {
    pub lines: Vec<KLine>,
    /// One sentence per key whose lines differ.
    pub conflicts: Vec<String>,
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

/// Merges `source` into `target` by key: target-only lines stay, source-only lines are added,
/// and for a key present in both with different text the `winner`'s line stays (each such key
/// is a conflict either way). Unkeyed source lines are added unless the same text is already
/// there (blank lines only into an empty file).
pub fn merge(target: &[KLine], source: &[KLine], winner: Winner) -> Merged {
    let mut m = Merged { lines: target.to_vec(), conflicts: Vec::new() };
    let empty_target = target.is_empty();
    for s in source {
        match &s.key {
            Some(k) => match m.lines.iter().position(|t| t.key.as_deref() == Some(k.as_str())) {
                Some(i) => {
                    let Some(t) = m.lines.get_mut(i) else { continue };
                    if t.text != s.text {
                        m.conflicts.push(format!(
                            "{k}: target has {:?}, source has {:?}; kept the {}",
                            t.text,
                            s.text,
                            winner.kept()
                        ));
                        if winner == Winner::Source {
                            t.text = s.text.clone();
                        }
                    }
                }
                None => m.lines.push(s.clone()),
            },
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

    #[test]
    fn merge_keeps_target_and_reports_conflicts() {
        let t = parse(Format::Passwd, "t:x:1:1::/h/mail/d/t:/h\na:x:1:1::/OLD:/h\n").0;
        let s = parse(Format::Passwd, "a:x:1:1::/NEW:/h\nb:x:1:1::/h/mail/d/b:/h\n").0;
        let m = merge(&t, &s, Winner::Target);
        assert_eq!(render(&m.lines), "t:x:1:1::/h/mail/d/t:/h\na:x:1:1::/OLD:/h\nb:x:1:1::/h/mail/d/b:/h\n");
        assert_eq!(m.conflicts.len(), 1);
        let m = merge(&t, &s, Winner::Source);
        assert!(render(&m.lines).contains("/NEW"));
        let again = merge(&m.lines, &s, Winner::Source);
        assert_eq!(again.lines, m.lines);
        assert!(again.conflicts.is_empty());
    }

    #[test]
    fn merge_into_nothing_is_the_source() {
        let s = parse(Format::Aliases, "# head\n\nx@d: y@d\nbad\n").0;
        assert_eq!(render(&merge(&[], &s, Winner::Target).lines), "# head\n\nx@d: y@d\nbad\n");
    }
}
