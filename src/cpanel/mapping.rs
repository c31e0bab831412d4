//! Identity mapping for cPanel moves: `--map-domain`, `--map-user` and `--map-file` parsed and
//! validated into a [`Mapping`], and the [`Rewriter`] that applies it to text.
//!
//! Pure: strings in, strings out. A name is only ever replaced where it stands as a whole
//! token (an address is not matched inside a longer address, `old.example` is not matched inside
//! `cold.example`), because metadata files mix addresses, domains, paths and free text and a
//! substring replacement would corrupt them. Names that could leave the target tree when used
//! as directory names (`/`, `..`, control characters) are refused when the mapping is parsed, so
//! every later use of a mapped name as a path component is safe.

use std::collections::BTreeMap;
use std::path::Path;

/// The renames asked for on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    domains: BTreeMap<String, String>,
    /// Full address → full address.
    addresses: BTreeMap<String, String>,
    /// Local part → local part, in every domain of the account.
    locals: BTreeMap<String, String>,
    /// Each rename as it was given, to name it when it matches nothing.
    asked: Vec<Asked>,
}

/// What a rename's old side names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renamed {
    Domain,
    Address,
    LocalPart,
}

/// One rename as it was given: the option (or `--map-file` line) and its old side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub given: String,
    pub what: Renamed,
    pub old: String,
}

/// Whether `s` can be a domain name used as a directory name.
pub fn valid_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && !s.contains("..")
        && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Whether `s` can be a local part used as a directory and file name.
pub fn valid_local(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '@' | ':' | ',' | '"' | '\\'))
}

/// Splits and validates `local@domain`.
pub fn split_address(s: &str) -> Option<(&str, &str)> {
    let (l, d) = s.rsplit_once('@')?;
    (valid_local(l) && valid_domain(d)).then_some((l, d))
}

impl Mapping {
    /// Builds the mapping from the three options; every error is a usage error text.
    pub fn from_options(
        map_domain: &[String],
        map_user: &[String],
        map_file: Option<&Path>,
    ) -> Result<Mapping, String> {
        let mut m = Mapping::default();
        for spec in map_domain {
            let (o, n) = spec.split_once('=').ok_or_else(|| format!("--map-domain {spec:?}: expected OLD=NEW"))?;
            m.add_domain(o.trim(), n.trim()).map_err(|e| format!("--map-domain {spec:?}: {e}"))?;
            m.note(format!("--map-domain {spec}"), Renamed::Domain, o.trim());
        }
        for spec in map_user {
            let (o, n) = spec.split_once('=').ok_or_else(|| format!("--map-user {spec:?}: expected OLD=NEW"))?;
            let what = m.add_user(o.trim(), n.trim()).map_err(|e| format!("--map-user {spec:?}: {e}"))?;
            m.note(format!("--map-user {spec}"), what, o.trim());
        }
        if let Some(p) = map_file {
            let text = std::fs::read_to_string(p).map_err(|e| format!("--map-file {}: {e}", p.display()))?;
            for (line, o, n) in parse_csv(&text).map_err(|e| format!("--map-file {}: {e}", p.display()))? {
                let r =
                    if o.contains('@') { m.add_user(&o, &n) } else { m.add_domain(&o, &n).map(|()| Renamed::Domain) };
                let what = r.map_err(|e| format!("--map-file {} line {line}: {e}", p.display()))?;
                m.note(format!("--map-file {} line {line} ({o},{n})", p.display()), what, &o);
            }
        }
        Ok(m)
    }

    fn note(&mut self, given: String, what: Renamed, old: &str) {
        self.asked.push(Asked { given, what, old: old.to_string() });
    }

    /// The renames whose old side is none of `domains`, or of the addresses (local part,
    /// domain) in `addresses`: they rename no mailbox.
    pub fn unmatched(&self, domains: &[String], addresses: &[(String, String)]) -> Vec<&Asked> {
        self.asked
            .iter()
            .filter(|a| match a.what {
                Renamed::Domain => !domains.contains(&a.old),
                Renamed::Address => !addresses.iter().any(|(l, d)| format!("{l}@{d}") == a.old),
                Renamed::LocalPart => !addresses.iter().any(|(l, _)| *l == a.old),
            })
            .collect()
    }

    fn add_domain(&mut self, old: &str, new: &str) -> Result<(), String> {
        if !valid_domain(old) || !valid_domain(new) {
            return Err("both sides must be domain names (letters, digits, '-', '.')".into());
        }
        insert_once(&mut self.domains, old, new)
    }

    /// Adds a user rename; says whether it renames a whole address or a local part.
    fn add_user(&mut self, old: &str, new: &str) -> Result<Renamed, String> {
        match (old.contains('@'), new.contains('@')) {
            (true, _) => {
                let (_, od) = split_address(old).ok_or("the old side is not a valid address")?;
                let new_full = if new.contains('@') {
                    split_address(new).ok_or("the new side is not a valid address")?;
                    new.to_string()
                } else if valid_local(new) {
                    format!("{new}@{od}")
                } else {
                    return Err("the new side is not a valid local part".into());
                };
                insert_once(&mut self.addresses, old, &new_full).map(|()| Renamed::Address)
            }
            (false, false) => {
                if !valid_local(old) || !valid_local(new) {
                    return Err("both sides must be valid local parts".into());
                }
                insert_once(&mut self.locals, old, new).map(|()| Renamed::LocalPart)
            }
            (false, true) => {
                Err("a local part can only be renamed to a local part (or give the full old address)".into())
            }
        }
    }

    pub fn is_identity(&self) -> bool {
        self.domains.is_empty() && self.addresses.is_empty() && self.locals.is_empty()
    }

    pub fn domain(&self, d: &str) -> String {
        self.domains.get(d).cloned().unwrap_or_else(|| d.to_string())
    }

    /// Where `local@domain` goes. An explicit address rename wins; when it keeps the domain,
    /// the domain rename still applies (renaming a user inside a renamed domain).
    pub fn address(&self, local: &str, domain: &str) -> (String, String) {
        if let Some((nl, nd)) = self.addresses.get(&format!("{local}@{domain}")).and_then(|n| n.rsplit_once('@')) {
            let nd = if nd == domain { self.domain(domain) } else { nd.to_string() };
            return (nl.to_string(), nd);
        }
        let nl = self.locals.get(local).cloned().unwrap_or_else(|| local.to_string());
        (nl, self.domain(domain))
    }

    /// The mapped form of a full address (or the input when it is not one).
    pub fn full_address(&self, addr: &str) -> String {
        match addr.rsplit_once('@') {
            Some((l, d)) => {
                let (nl, nd) = self.address(l, d);
                format!("{nl}@{nd}")
            }
            None => addr.to_string(),
        }
    }

    /// Every old address named explicitly and every local-part rename expanded over `domains`.
    fn address_keys(&self, domains: &[String]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for old in self.addresses.keys() {
            out.push((old.clone(), self.full_address(old)));
        }
        for l in self.locals.keys() {
            for d in domains {
                let old = format!("{l}@{d}");
                out.push((old.clone(), self.full_address(&old)));
            }
        }
        out
    }
}

fn insert_once(map: &mut BTreeMap<String, String>, old: &str, new: &str) -> Result<(), String> {
    match map.get(old) {
        Some(prev) if prev != new => Err(format!("{old:?} is already mapped to {prev:?}")),
        _ => {
            map.insert(old.to_string(), new.to_string());
            Ok(())
        }
    }
}

/// Rows of a mapping CSV: `(line number, old, new)`. Blank lines, `#` comments and an
/// `old,new` header are skipped; anything else that is not two non-empty fields is an error
/// naming the line.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, String, String)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<String> = line.split(',').map(|f| f.trim().trim_matches('"').trim().to_string()).collect();
        let [old, new] = fields.as_slice() else {
            return Err(format!("line {n}: expected two fields old,new, got {line:?}"));
        };
        if old.is_empty() || new.is_empty() {
            return Err(format!("line {n}: empty field in {line:?}"));
        }
        if old.eq_ignore_ascii_case("old") && new.eq_ignore_ascii_case("new") {
            continue;
        }
        if old.contains('@') != new.contains('@') && !old.contains('@') {
            return Err(format!("line {n}: a domain cannot be mapped to an address: {line:?}"));
        }
        out.push((n, old.clone(), new.clone()));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Address,
    Domain,
    Path,
}

fn wordish(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Token {
    fn prev_ok(self, c: Option<char>) -> bool {
        let Some(c) = c else { return true };
        match self {
            Token::Address => !(wordish(c) || matches!(c, '.' | '+' | '-')),
            Token::Domain => !(wordish(c) || matches!(c, '.' | '-')),
            Token::Path => !(wordish(c) || matches!(c, '.' | '-' | '/')),
        }
    }

    fn next_ok(self, c: Option<char>) -> bool {
        let Some(c) = c else { return true };
        match self {
            Token::Address | Token::Domain => !(wordish(c) || c == '-'),
            Token::Path => !(wordish(c) || matches!(c, '.' | '-')),
        }
    }
}

/// Applies a mapping (and the move from one home directory to another) to text.
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    /// (old, new, kind), longest old first so the most specific token wins at a position.
    pairs: Vec<(String, String, Token)>,
}

/// What the rewriter needs to know about the account besides the mapping.
pub struct Context<'a> {
    /// Domains of the source account (local-part renames apply in these).
    pub domains: &'a [String],
    /// Source addresses whose mailbox paths appear in metadata (`HOME/mail/DOMAIN/LOCAL`).
    pub addresses: &'a [(String, String)],
    /// Spellings of the source home (as given, absolute, as recorded in passwd).
    pub source_homes: &'a [String],
    pub target_home: &'a str,
}

impl Rewriter {
    pub fn new(m: &Mapping, cx: &Context<'_>) -> Rewriter {
        let mut pairs = Vec::new();
        for (o, n) in &m.domains {
            pairs.push((o.clone(), n.clone(), Token::Domain));
        }
        for (o, n) in m.address_keys(cx.domains) {
            pairs.push((o, n, Token::Address));
        }
        for h in cx.source_homes.iter().filter(|h| h.len() > 1) {
            for (l, d) in cx.addresses {
                let (nl, nd) = m.address(l, d);
                pairs.push((format!("{h}/mail/{d}/{l}"), format!("{}/mail/{nd}/{nl}", cx.target_home), Token::Path));
            }
            pairs.push((h.clone(), cx.target_home.to_string(), Token::Path));
        }
        pairs.retain(|(o, n, _)| o != n && !o.is_empty());
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Rewriter { pairs }
    }

    pub fn is_identity(&self) -> bool {
        self.pairs.is_empty()
    }

    /// `s` with every whole-token occurrence of an old name replaced.
    pub fn apply(&self, s: &str) -> String {
        if self.pairs.is_empty() {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut prev: Option<char> = None;
        for (i, c) in s.char_indices() {
            if i < last {
                prev = Some(c);
                continue;
            }
            let rest = s.get(i..).unwrap_or("");
            let hit = self.pairs.iter().find(|(o, _, k)| {
                rest.starts_with(o.as_str())
                    && k.prev_ok(prev)
                    && k.next_ok(rest.get(o.len()..).and_then(|r| r.chars().next()))
            });
            if let Some((o, n, _)) = hit {
                out.push_str(s.get(last..i).unwrap_or(""));
                out.push_str(n);
                last = i + o.len();
            }
            prev = Some(c);
        }
        out.push_str(s.get(last..).unwrap_or(""));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(domains: &[&str], users: &[&str]) -> Mapping {
        let d: Vec<String> = domains.iter().map(|s| s.to_string()).collect();
        let u: Vec<String> = users.iter().map(|s| s.to_string()).collect();
        Mapping::from_options(&d, &u, None).unwrap()
    }

    fn rw(map: &Mapping) -> Rewriter {
        let domains = vec!["old.example".to_string(), "other.example".to_string()];
        let addrs = vec![("a".to_string(), "old.example".to_string())];
        let homes = vec!["/home/src".to_string()];
        Rewriter::new(
            map,
            &Context { domains: &domains, addresses: &addrs, source_homes: &homes, target_home: "/home/dst" },
        )
    }

    #[test]
    fn domain_rename_is_token_wise() {
        let r = rw(&m(&["old.example=new.example"], &[]));
        assert_eq!(r.apply("a@old.example, boss@cold.example"), "a@new.example, boss@cold.example");
        assert_eq!(r.apply("parked.example: old.example\n"), "parked.example: new.example\n");
        assert_eq!(r.apply("x@sub.old.example"), "x@sub.old.example");
    }

    #[test]
    fn address_rename_leaves_others() {
        let r = rw(&m(&[], &["a@old.example=alice@old.example"]));
        assert_eq!(
            r.apply("sales@old.example: a@old.example, b@old.example, ba@old.example"),
            "sales@old.example: alice@old.example, b@old.example, ba@old.example"
        );
    }

    #[test]
    fn user_and_domain_rename_compose() {
        let map = m(&["old.example=new.example"], &["a@old.example=alice@old.example"]);
        assert_eq!(map.address("a", "old.example"), ("alice".into(), "new.example".into()));
        assert_eq!(map.address("b", "old.example"), ("b".into(), "new.example".into()));
        assert_eq!(map.address("c", "other.example"), ("c".into(), "other.example".into()));
        let local = m(&[], &["a=alice"]);
        assert_eq!(local.address("a", "other.example"), ("alice".into(), "other.example".into()));
        assert_eq!(rw(&local).apply("a@other.example a@far.example"), "alice@other.example a@far.example");
    }

    #[test]
    fn homes_and_mailbox_paths() {
        let r = rw(&m(&["old.example=new.example"], &["a@old.example=al@old.example"]));
        assert_eq!(
            r.apply("save \"/home/src/mail/old.example/a/.Junk\""),
            "save \"/home/dst/mail/new.example/al/.Junk\""
        );
        assert_eq!(r.apply("|/home/src/bin/x.php"), "|/home/dst/bin/x.php");
        assert_eq!(r.apply("/home/srcx/bin"), "/home/srcx/bin");
        let id = rw(&Mapping::default());
        assert_eq!(id.apply("/home/src/.autorespond"), "/home/dst/.autorespond");
    }

    #[test]
    fn bad_options_are_errors() {
        let bad = |d: &[&str], u: &[&str]| {
            let d: Vec<String> = d.iter().map(|s| s.to_string()).collect();
            let u: Vec<String> = u.iter().map(|s| s.to_string()).collect();
            Mapping::from_options(&d, &u, None).is_err()
        };
        assert!(bad(&["old.example"], &[]));
        assert!(bad(&["old.example=../x"], &[]));
        assert!(bad(&[], &["a=b/c"]));
        assert!(bad(&[], &["a=b@x.example"]));
        assert!(bad(&["a.example=b.example", "a.example=c.example"], &[]));
        assert!(!bad(&["a.example=b.example", "a.example=b.example"], &[]));
    }

    #[test]
    fn renames_of_nothing_in_the_account_are_named() {
        let map = m(&["old.example=new.example", "gone.example=x.example"], &["a=alice", "z=zed", "b@old.example=bo"]);
        let domains = vec!["old.example".to_string()];
        let addrs = vec![("a".to_string(), "old.example".to_string())];
        let left: Vec<(&str, Renamed)> =
            map.unmatched(&domains, &addrs).iter().map(|a| (a.given.as_str(), a.what)).collect();
        assert_eq!(
            left,
            [
                ("--map-domain gone.example=x.example", Renamed::Domain),
                ("--map-user z=zed", Renamed::LocalPart),
                ("--map-user b@old.example=bo", Renamed::Address)
            ]
        );
    }

    #[test]
    fn csv_rows() {
        let rows = parse_csv("old,new\n# c\nold.example,new.example\n\nc@o.example, carol@o.example\n").unwrap();
        assert_eq!(
            rows,
            vec![(3, "old.example".into(), "new.example".into()), (5, "c@o.example".into(), "carol@o.example".into())]
        );
        let e = parse_csv("a.example,b.example\nonly-one-field\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(parse_csv("a.example,b@c.example\n").unwrap_err().contains("line 1"));
        assert!(parse_csv("a,b,c\n").is_err());
    }

    #[test]
    fn unicode_text_is_safe() {
        let r = rw(&m(&["old.example=new.example"], &[]));
        assert_eq!(r.apply("À bientôt old.example é"), "À bientôt new.example é");
    }
}
