//! Which source folders are synced and what they are called in the target: `--folder`,
//! `--include`/`--exclude` regexes over the `/`-separated name, `--map-folder 's/RE/REPL/'`
//! rules applied in order, and `--automap` of special folders to the names the target uses.
//! Pure: names in, names out; a mapping that yields an invalid name or merges two folders is an
//! error before anything is written. The one thing kept is which rules matched a folder, so
//! that a rule that renamed nothing can be reported.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use regex::Regex;

use crate::folder::FolderName;

#[derive(Debug, Clone)]
pub struct Rename {
    pub re: Regex,
    pub repl: String,
    /// The rule as it was given.
    pub spec: String,
}

impl Rename {
    /// Parses `s/RE/REPL/` (any delimiter after the `s`; `\/` is a literal delimiter).
    pub fn parse(spec: &str) -> Result<Rename, String> {
        let mut chars = spec.chars();
        if chars.next() != Some('s') {
            return Err(format!("{spec:?}: expected s/REGEX/REPLACEMENT/"));
        }
        let delim = chars.next().ok_or_else(|| format!("{spec:?}: expected s/REGEX/REPLACEMENT/"))?;
        let mut parts = vec![String::new()];
        let mut esc = false;
        for c in chars {
            if esc {
                if c != delim
                    && let Some(p) = parts.last_mut()
                {
                    p.push('\\');
                }
                if let Some(p) = parts.last_mut() {
                    p.push(c);
                }
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == delim {
                parts.push(String::new());
            } else {
                if let Some(p) = parts.last_mut() {
                    p.push(c);
                }
            }
        }
        if esc && let Some(p) = parts.last_mut() {
            p.push('\\');
        }
        if parts.len() != 3 || !parts[2].is_empty() {
            return Err(format!("{spec:?}: expected s/REGEX/REPLACEMENT/"));
        }
        let re = Regex::new(&parts[0]).map_err(|e| format!("{spec:?}: {e}"))?;
        // Perl's $1 and \1 both mean the first group; the regex crate wants ${1}.
        let repl = Regex::new(r"\\(\d)").map_or(parts[1].clone(), |r| r.replace_all(&parts[1], "$${$1}").into_owned());
        Ok(Rename { re, repl, spec: spec.to_string() })
    }
}

#[derive(Debug, Clone, Default)]
pub struct FolderMap {
    pub folders: Vec<FolderName>,
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    pub renames: Vec<Rename>,
    pub automap: bool,
    pub matched: Matched,
}

/// The renames (by index) that matched a selected folder so far. Clones share it: every
/// mailbox of a cPanel account adds to the run's one record.
#[derive(Debug, Clone, Default)]
pub struct Matched(Arc<Mutex<BTreeSet<usize>>>);

impl Matched {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Special-use folders: the names clients use, the first being the default.
const SPECIAL: [&[&str]; 4] = [
    &["Sent", "Sent Items", "Sent Messages", "Sent Mail"],
    &["Trash", "Deleted Items", "Deleted Messages"],
    &["Junk", "Spam", "Bulk Mail", "Junk E-mail"],
    &["Drafts", "Draft"],
];

impl FolderMap {
    pub fn selects(&self, name: &FolderName) -> bool {
        let s = name.as_str();
        if !self.folders.is_empty() && !self.folders.contains(name) {
            return false;
        }
        if !self.include.is_empty() && !self.include.iter().any(|r| r.is_match(s)) {
            return false;
        }
        !self.exclude.iter().any(|r| r.is_match(s))
    }

    /// The target name of `name`, given the folders the target already has.
    pub fn target(&self, name: &FolderName, existing: &[FolderName]) -> Result<FolderName, String> {
        let mut s = name.as_str().to_string();
        for (i, r) in self.renames.iter().enumerate() {
            if r.re.is_match(&s) {
                self.matched.lock().insert(i);
            }
            s = r.re.replace_all(&s, r.repl.as_str()).into_owned();
        }
        let mut out = FolderName::parse(&s).map_err(|e| format!("folder {:?} maps to {s:?}: {e}", name.as_str()))?;
        if self.automap {
            out = automap(&out, existing);
        }
        Ok(out)
    }

    /// (source, target) pairs of the selected folders; an error when two folders would merge.
    pub fn plan(&self, names: &[FolderName], existing: &[FolderName]) -> Result<Vec<(FolderName, FolderName)>, String> {
        let mut out = Vec::new();
        let mut seen: BTreeMap<FolderName, FolderName> = BTreeMap::new();
        for n in names.iter().filter(|n| self.selects(n)) {
            let t = self.target(n, existing)?;
            if let Some(prev) = seen.get(&t) {
                return Err(format!(
                    "folders {:?} and {:?} would both be written to {:?}",
                    prev.as_str(),
                    n.as_str(),
                    t.as_str()
                ));
            }
            seen.insert(t.clone(), n.clone());
            out.push((n.clone(), t));
        }
        Ok(out)
    }
}

impl FolderMap {
    /// The renames that matched no folder [`FolderMap::target`] was asked about.
    pub fn unmatched(&self) -> Vec<&Rename> {
        let matched = self.matched.lock();
        self.renames.iter().enumerate().filter(|(i, _)| !matched.contains(i)).map(|(_, r)| r).collect()
    }
}

fn automap(name: &FolderName, existing: &[FolderName]) -> FolderName {
    let s = name.as_str();
    for group in SPECIAL {
        if group.iter().any(|g| g.eq_ignore_ascii_case(s)) {
            let found = existing.iter().find(|e| group.iter().any(|g| g.eq_ignore_ascii_case(e.as_str())));
            return match found {
                Some(e) => e.clone(),
                None => FolderName::parse(group[0]).unwrap_or_else(|_| name.clone()),
            };
        }
    }
    name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> FolderName {
        FolderName::parse(s).unwrap()
    }

    #[test]
    fn rename_rules() {
        let r = Rename::parse("s/^Archive/Old/").unwrap();
        assert_eq!(r.re.replace_all("Archive/2019", r.repl.as_str()), "Old/2019");
        let r = Rename::parse(r"s/\//./").unwrap();
        assert_eq!(r.re.as_str(), "/");
        let r = Rename::parse(r"s/^(\w+)$/X-\1/").unwrap();
        assert_eq!(r.re.replace_all("abc", r.repl.as_str()), "X-abc");
        assert!(Rename::parse("x/a/b/").is_err());
        assert!(Rename::parse("s/a/b").is_err());
        assert!(Rename::parse("s/(/b/").is_err());
    }

    #[test]
    fn selection_and_merge_errors() {
        let m = FolderMap { include: vec![Regex::new("^Archive").unwrap()], ..Default::default() };
        let plan = m.plan(&[f("INBOX"), f("Archive"), f("Archive/2019")], &[]).unwrap();
        assert_eq!(plan.len(), 2);
        let m = FolderMap { renames: vec![Rename::parse("s/.*/Same/").unwrap()], ..Default::default() };
        assert!(m.plan(&[f("A"), f("B")], &[]).is_err());
        let m = FolderMap { renames: vec![Rename::parse("s/.*/..\\/x/").unwrap()], ..Default::default() };
        assert!(m.plan(&[f("A")], &[]).is_err(), "escaping names are refused");
    }

    /// A rule is matched when it matches a selected folder's name as the rules before it left
    /// it; clones of the map (a cPanel account's mailboxes) share what was matched.
    #[test]
    fn rules_that_match_no_folder_are_told() {
        let rules = ["s/^Archive/Old/", "s/^Old/Older/", "s/^Nothing$/X/", "s/^Sent$/Outbox/"];
        let m = FolderMap {
            renames: rules.iter().map(|r| Rename::parse(r).unwrap()).collect(),
            exclude: vec![Regex::new("^Sent$").unwrap()],
            ..Default::default()
        };
        let mailbox = m.clone();
        mailbox.plan(&[f("INBOX"), f("Sent")], &[]).unwrap();
        assert_eq!(m.unmatched().len(), 4, "nothing matched yet");
        m.plan(&[f("Archive/2019")], &[]).unwrap();
        let left: Vec<&str> = mailbox.unmatched().iter().map(|r| r.spec.as_str()).collect();
        assert_eq!(left, ["s/^Nothing$/X/", "s/^Sent$/Outbox/"], "an excluded folder matches nothing");
    }

    #[test]
    fn automap_uses_target_names() {
        let m = FolderMap { automap: true, ..Default::default() };
        assert_eq!(m.target(&f("Sent Items"), &[f("Sent")]).unwrap(), f("Sent"));
        assert_eq!(m.target(&f("Sent"), &[f("Sent Messages")]).unwrap(), f("Sent Messages"));
        assert_eq!(m.target(&f("Deleted Items"), &[]).unwrap(), f("Trash"));
        assert_eq!(m.target(&f("Work"), &[]).unwrap(), f("Work"));
    }
}
