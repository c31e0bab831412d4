//! Which metadata files of a cPanel account go where, and with what content (FORMATS.md §3.2,
//! §3.4, §3.5): `etc/DOMAIN/{passwd,shadow,quota}` (re-keyed per mapped address, so a user
//! moved to another domain lands in that domain's files), per-account filters and Roundcube
//! databases, autoresponders, SpamAssassin settings, webmail data, and the system-wide
//! `valiases/`, `vfilters/` and `vdomainaliases/` files of the account's domains and of the
//! domains parked on them.
//!
//! This module only reads the source and plans; output.rs writes or compares. Text is mapped
//! with the [`Rewriter`] (whole tokens only); binary files (databases) are copied as bytes
//! under their mapped names. Lines that do not parse are planned verbatim and reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::account::Account;
use super::lines::{self, Format, KLine};
use super::mapping::{Mapping, Rewriter, split_address, valid_domain, valid_local};
use super::output::{Body, Planned, Root};
use super::tree::Tree;
use crate::error::Problem;
use crate::fsx::FileKind;

/// What planning needs besides the account.
pub struct Cx<'a> {
    /// Where the source is read from (the file system or an archive in memory).
    pub tree: &'a dyn Tree,
    pub mapping: &'a Mapping,
    pub rw: &'a Rewriter,
    /// `--mailbox`: only this address's lines and files.
    pub selected: Option<(String, String)>,
    pub source_etc: &'a Path,
    pub target_home: &'a str,
    /// The cPanel user names (bare-name destinations in valiases).
    pub source_user: &'a str,
    pub target_user: &'a str,
    /// The target account's uid and gid, which its passwd lines get (`None`: kept as they are).
    pub target_ids: Option<(u32, u32)>,
}

impl Cx<'_> {
    fn wants(&self, local: &str, domain: &str) -> bool {
        self.selected.as_ref().is_none_or(|(l, d)| l == local && d == domain)
    }

    fn wants_address(&self, addr: &str) -> bool {
        match split_address(addr) {
            Some((l, d)) => self.wants(l, d),
            None => self.selected.is_none(),
        }
    }
}

/// Lines bound for one target file, with the rewrites made on the way.
type Grouped = (Vec<KLine>, Vec<(String, String)>);

#[derive(Default)]
pub struct Plan {
    pub files: Vec<Planned>,
    pub warnings: Vec<Problem>,
    /// Some account file of the source (or a directory of them) could not be read: what is
    /// not planned may still be there.
    pub unread: bool,
}

fn read_text(tree: &dyn Tree, path: &Path, plan: &mut Plan) -> Option<String> {
    match tree.read(path) {
        Ok(b) => match String::from_utf8(b) {
            Ok(s) => Some(s),
            Err(e) => Some(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
        Err(e) => {
            if tree.exists(path) {
                plan.warnings.push(e.problem());
                plan.unread = true;
            }
            None
        }
    }
}

fn report_bad(path: &Path, text: &str, fmt: Format, bad: Vec<(usize, String)>, plan: &mut Plan) {
    for (n, why) in bad {
        let line = text.lines().nth(n.saturating_sub(1)).unwrap_or("");
        plan.warnings.push(Problem::new(
            path,
            format!("line {n} {line:?} is not a valid {} line ({why}); kept verbatim", fmt.name()),
        ));
    }
}

fn line_rewrites(old: &str, new: &str) -> Vec<(String, String)> {
    old.lines().zip(new.lines()).filter(|(a, b)| a != b).map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

pub fn plan(acc: &Account, cx: &Cx<'_>) -> Plan {
    let mut plan = Plan::default();
    // What the listing of the mailboxes could not list is theirs to say.
    let _ = cx.tree.take_unlisted();
    linked_dirs(acc, cx, &mut plan);
    etc_domain_files(acc, cx, &mut plan);
    autoresponders(acc, cx, &mut plan);
    if cx.selected.is_none() {
        spam(acc, cx, &mut plan);
    }
    webmail(acc, cx, &mut plan);
    system_files(acc, cx, &mut plan);
    // A directory of account files that could not be listed is not an empty one: nothing the
    // last sync wrote from it is taken for removed at the source.
    let mut unlisted = cx.tree.take_unlisted();
    plan.unread |= !unlisted.is_empty();
    // A link was said already (linked_dirs).
    unlisted.retain(|u| !plan.warnings.iter().any(|w| w.path == u.path));
    unlisted.dedup_by(|a, b| a.path == b.path);
    plan.warnings.extend(
        unlisted
            .into_iter()
            .map(|p| Problem { reason: format!("{}; the account files in it are not copied", p.reason), ..p }),
    );
    plan
}

/// The directories whose files are planned, when they are links: not followed (the tree lists
/// nothing through them), which must be said, not left silent.
fn linked_dirs(acc: &Account, cx: &Cx<'_>, plan: &mut Plan) {
    let linked = |dir: &Path, names: &mut dyn Iterator<Item = &str>| {
        let listed = cx.tree.list(dir);
        names
            .filter(|n| listed.iter().any(|(l, k)| l == n && *k == FileKind::Symlink))
            .map(|n| dir.join(n))
            .collect::<Vec<_>>()
    };
    let mut found = linked(&acc.home, &mut ["etc", ".autorespond", ".spamassassin", ".sqmail", ".cphorde"].into_iter());
    found.extend(linked(&acc.home.join("etc"), &mut acc.domains.iter().map(String::as_str)));
    for p in found {
        plan.warnings.push(Problem::refused(&p, "symlink not followed; the account files in it are not copied"));
        plan.unread = true;
    }
}

/// passwd/shadow/quota of every domain, plus `etc/DOMAIN/LOCAL/filter` and
/// `etc/DOMAIN/LOCAL.rcube.db`.
fn etc_domain_files(acc: &Account, cx: &Cx<'_>, plan: &mut Plan) {
    let m = cx.mapping;
    for dom in &acc.domains {
        let ddir = acc.home.join("etc").join(dom);
        for (name, fmt) in [("passwd", Format::Passwd), ("shadow", Format::Shadow), ("quota", Format::Quota)] {
            let path = ddir.join(name);
            let Some(text) = read_text(cx.tree, &path, plan) else { continue };
            let (src, bad) = lines::parse(fmt, &text);
            report_bad(&path, &text, fmt, bad, plan);
            let mut by_domain: BTreeMap<String, Grouped> = BTreeMap::new();
            for l in src {
                let (key, text, nd) = match &l.key {
                    Some(local) => {
                        if !cx.wants(local, dom) {
                            continue;
                        }
                        let (nl, nd) = m.address(local, dom);
                        let mut fields: Vec<String> = l.text.split(':').map(str::to_string).collect();
                        if let Some(f) = fields.first_mut() {
                            *f = nl.clone();
                        }
                        if fmt == Format::Passwd {
                            if let Some((uid, gid)) = cx.target_ids {
                                for (i, id) in [(2, uid), (3, gid)] {
                                    if let Some(f) = fields.get_mut(i) {
                                        *f = id.to_string();
                                    }
                                }
                            }
                            if let Some(f) = fields.get_mut(5) {
                                *f = format!("{}/mail/{nd}/{nl}", cx.target_home);
                            }
                            if let Some(f) = fields.get_mut(6) {
                                *f = cx.rw.apply(f);
                            }
                        }
                        (Some(nl), fields.join(":"), nd)
                    }
                    None if cx.selected.is_some() => continue,
                    None => (None, l.text.clone(), m.domain(dom)),
                };
                let e = by_domain.entry(nd).or_default();
                if text != l.text {
                    e.1.push((l.text.clone(), text.clone()));
                }
                push_unique(&mut e.0, KLine { key, text }, &path, &mut plan.warnings);
            }
            for (nd, (lines, rewrites)) in by_domain {
                if lines.iter().all(|l| l.key.is_none() && l.text.trim().is_empty()) {
                    continue;
                }
                plan.files.push(Planned {
                    root: Root::Home,
                    rel: vec!["etc".into(), nd, name.into()],
                    dir_modes: vec![0o750, 0o750],
                    mode: 0o640,
                    group_mail: true,
                    body: Body::Keyed(fmt, lines),
                    from: path.clone(),
                    rewrites,
                });
            }
        }
        for (name, kind) in cx.tree.list(&ddir) {
            if let (Some(local), FileKind::File) = (name.strip_suffix(".rcube.db"), kind) {
                if valid_local(local) && cx.wants(local, dom) {
                    let (nl, nd) = m.address(local, dom);
                    copy_bytes(
                        cx.tree,
                        &ddir.join(&name),
                        vec!["etc".into(), nd, format!("{nl}.rcube.db")],
                        vec![0o750, 0o750],
                        0o600,
                        plan,
                    );
                }
            } else if kind == FileKind::Dir && valid_local(&name) && cx.wants(&name, dom) {
                let f = ddir.join(&name).join("filter");
                if let Some(text) = read_text(cx.tree, &f, plan) {
                    let (nl, nd) = m.address(&name, dom);
                    let new = cx.rw.apply(&text);
                    plan.files.push(Planned {
                        root: Root::Home,
                        rel: vec!["etc".into(), nd, nl, "filter".into()],
                        dir_modes: vec![0o750, 0o750, 0o750],
                        mode: 0o640,
                        group_mail: true,
                        rewrites: line_rewrites(&text, &new),
                        body: Body::Filter(new),
                        from: f,
                    });
                }
            }
        }
    }
}

/// Adds a planned line unless a line with its key is already planned: two source lines that
/// the mapping gives one key (two users renamed onto one) keep the first, and a different
/// second one is reported.
fn push_unique(lines: &mut Vec<KLine>, l: KLine, from: &Path, warnings: &mut Vec<Problem>) {
    if let Some(k) = &l.key
        && let Some(prev) = lines.iter().find(|x| x.key.as_ref() == Some(k))
    {
        if prev.text != l.text {
            warnings.push(Problem::new(
                from,
                format!("conflict: {k}: {:?} and {:?} map to the same key; kept the first", prev.text, l.text),
            ));
        }
        return;
    }
    lines.push(l);
}

fn copy_bytes(tree: &dyn Tree, from: &Path, rel: Vec<String>, dir_modes: Vec<u32>, mode: u32, plan: &mut Plan) {
    match tree.read(from) {
        Ok(b) => plan.files.push(Planned {
            root: Root::Home,
            rel,
            dir_modes,
            mode,
            group_mail: false,
            body: Body::Whole(b),
            from: from.to_path_buf(),
            rewrites: Vec::new(),
        }),
        Err(e) => {
            plan.warnings.push(e.problem());
            plan.unread = true;
        }
    }
}

/// `.autorespond/ADDRESS` (message template), `ADDRESS.json` (interval, start, stop) and the
/// older `ADDRESS.conf`; anything else there is reply-tracking data cPanel regenerates.
fn autoresponders(acc: &Account, cx: &Cx<'_>, plan: &mut Plan) {
    let dir = acc.home.join(".autorespond");
    for (name, kind) in cx.tree.list(&dir) {
        let path = dir.join(&name);
        if kind == FileKind::Symlink {
            plan.warnings.push(Problem::refused(&path, "symlink not followed (use --follow-symlinks)"));
            plan.unread = true;
            continue;
        }
        if kind != FileKind::File {
            continue;
        }
        let (addr, suffix) = match name.strip_suffix(".json").or_else(|| name.strip_suffix(".conf")) {
            Some(a) => (a, name.get(a.len()..).unwrap_or("")),
            None => (name.as_str(), ""),
        };
        let Some((l, d)) = split_address(addr) else {
            plan.warnings
                .push(Problem::new(&path, "not an autoresponder (ADDRESS, ADDRESS.json or ADDRESS.conf); not copied"));
            continue;
        };
        if !cx.wants(l, d) {
            continue;
        }
        let target_name = format!("{}{suffix}", cx.mapping.full_address(addr));
        let Some(text) = read_text(cx.tree, &path, plan) else { continue };
        let (body, rewrites) = match suffix {
            ".json" => {
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(serde_json::Value::Object(_)) => {}
                    _ => plan
                        .warnings
                        .push(Problem::new(&path, "autoresponder settings are not a JSON object; copied verbatim")),
                }
                (Body::Whole(text.into_bytes()), Vec::new())
            }
            ".conf" => {
                let (src, bad) = lines::parse(Format::AutorespondConf, &text);
                report_bad(&path, &text, Format::AutorespondConf, bad, plan);
                let (out, rewrites) = map_lines(src, |t| cx.rw.apply(t), Format::AutorespondConf);
                (Body::Keyed(Format::AutorespondConf, out), rewrites)
            }
            _ => {
                if !(text.contains("\n\n") || text.contains("\r\n\r\n")) {
                    plan.warnings.push(Problem::new(
                        &path,
                        "autoresponder has no empty line between its headers and body; copied as it is",
                    ));
                }
                let new = cx.rw.apply(&text);
                (Body::Whole(new.clone().into_bytes()), line_rewrites(&text, &new))
            }
        };
        plan.files.push(Planned {
            root: Root::Home,
            rel: vec![".autorespond".into(), target_name],
            dir_modes: vec![0o755],
            mode: 0o644,
            group_mail: false,
            body,
            from: path,
            rewrites,
        });
    }
}

/// `.spamassassin/user_prefs` merged by setting; other files there (Bayes databases) copied;
/// `.spamassassinenable`/`.spamassassindisable` markers copied.
fn spam(acc: &Account, cx: &Cx<'_>, plan: &mut Plan) {
    let dir = acc.home.join(".spamassassin");
    for (name, kind) in cx.tree.list(&dir) {
        let path = dir.join(&name);
        if kind != FileKind::File {
            if kind == FileKind::Symlink {
                plan.warnings.push(Problem::refused(&path, "symlink not followed (use --follow-symlinks)"));
                plan.unread = true;
            }
            continue;
        }
        if name == "user_prefs" {
            let Some(text) = read_text(cx.tree, &path, plan) else { continue };
            let (src, _) = lines::parse(Format::SpamPrefs, &text);
            let (out, rewrites) = map_lines(src, |t| cx.rw.apply(t), Format::SpamPrefs);
            plan.files.push(Planned {
                root: Root::Home,
                rel: vec![".spamassassin".into(), name],
                dir_modes: vec![0o700],
                mode: 0o644,
                group_mail: false,
                body: Body::Keyed(Format::SpamPrefs, out),
                from: path,
                rewrites,
            });
        } else {
            copy_bytes(cx.tree, &path, vec![".spamassassin".into(), name], vec![0o700], 0o600, plan);
        }
    }
    for marker in [".spamassassinenable", ".spamassassindisable"] {
        let p = acc.home.join(marker);
        if cx.tree.list(&acc.home).iter().any(|(n, k)| n == marker && *k == FileKind::File) {
            copy_bytes(cx.tree, &p, vec![marker.into()], Vec::new(), 0o644, plan);
        }
    }
}

/// `.sqmail/` (SquirrelMail) and `.cphorde/` (Horde): copied as files, names mapped (their
/// files are named after addresses). With `--mailbox`, only files named after that address.
fn webmail(acc: &Account, cx: &Cx<'_>, plan: &mut Plan) {
    for top in [".sqmail", ".cphorde"] {
        let mut stack = vec![(acc.home.join(top), vec![top.to_string()], 0usize)];
        while let Some((dir, rel, depth)) = stack.pop() {
            if depth > 16 {
                plan.warnings.push(Problem::new(&dir, "nested deeper than 16 levels; not copied further"));
                continue;
            }
            for (name, kind) in cx.tree.list(&dir) {
                let path = dir.join(&name);
                let mapped = cx.rw.apply(&name);
                let mut r = rel.clone();
                r.push(mapped);
                match kind {
                    FileKind::Dir => stack.push((path, r, depth + 1)),
                    FileKind::File => {
                        if let Some((l, d)) = &cx.selected
                            && !name.starts_with(&format!("{l}@{d}"))
                        {
                            continue;
                        }
                        let modes = vec![0o700; r.len().saturating_sub(1)];
                        copy_bytes(cx.tree, &path, r, modes, 0o600, plan);
                    }
                    FileKind::Symlink | FileKind::Other => {
                        let why = if kind == FileKind::Symlink {
                            "symlink not followed (use --follow-symlinks)"
                        } else {
                            "not a regular file; not copied"
                        };
                        plan.warnings.push(Problem::refused(&path, why));
                        plan.unread = true;
                    }
                }
            }
        }
    }
}

/// Bare destinations naming the source cPanel user become the target user (a bare name
/// delivers to the account's default mailbox).
fn rewrite_alias_value(v: &str, cx: &Cx<'_>) -> String {
    let v = cx.rw.apply(v);
    if cx.source_user == cx.target_user || cx.source_user.is_empty() || v.trim_start().starts_with(':') {
        return v;
    }
    let mut items: Vec<String> = vec![String::new()];
    let mut quoted = false;
    for c in v.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == ',' && !quoted {
            items.push(String::new());
        } else if let Some(last) = items.last_mut() {
            last.push(c);
        }
    }
    let mut changed = false;
    for it in items.iter_mut() {
        if it.trim() == cx.source_user {
            *it = it.replacen(cx.source_user, cx.target_user, 1);
            changed = true;
        }
    }
    if changed { items.join(",") } else { v }
}

/// valiases/vfilters/vdomainaliases of the account's domains and of the domains aliased to
/// them.
fn system_files(acc: &Account, cx: &Cx<'_>, plan: &mut Plan) {
    let etc = cx.source_etc;
    let ours: BTreeSet<&str> = acc.domains.iter().map(String::as_str).collect();
    let mut aliases: BTreeSet<String> = BTreeSet::new();
    for (name, kind) in cx.tree.list(&etc.join("vdomainaliases")) {
        if kind != FileKind::File || !valid_domain(&name) {
            continue;
        }
        let path = etc.join("vdomainaliases").join(&name);
        let Some(text) = read_text(cx.tree, &path, plan) else { continue };
        let targets_ours = text.lines().any(|l| l.split_once(':').is_some_and(|(_, t)| ours.contains(t.trim())));
        if targets_ours || ours.contains(name.as_str()) {
            aliases.insert(name.clone());
            if cx.selected.is_some() {
                continue;
            }
            let (src, bad) = lines::parse(Format::Aliases, &text);
            report_bad(&path, &text, Format::Aliases, bad, plan);
            let (out, rewrites) = map_lines(src, |t| cx.rw.apply(t), Format::Aliases);
            plan.files.push(system(
                vec!["vdomainaliases".into(), cx.mapping.domain(&name)],
                Body::Keyed(Format::Aliases, out),
                path,
                rewrites,
            ));
        }
    }
    let all: BTreeSet<String> = acc.domains.iter().cloned().chain(aliases).collect();
    for dom in &all {
        let path = etc.join("valiases").join(dom);
        if let Some(text) = read_text(cx.tree, &path, plan) {
            let (src, bad) = lines::parse(Format::Aliases, &text);
            report_bad(&path, &text, Format::Aliases, bad, plan);
            let mut by_domain: BTreeMap<String, Grouped> = BTreeMap::new();
            for l in src {
                let nd_default = cx.mapping.domain(dom);
                let (key, text, nd) = match l.key.as_deref() {
                    Some(k) => {
                        if cx.selected.is_some() && !(k.contains('@') && cx.wants_address(k)) {
                            continue;
                        }
                        let (lhs, rhs) = l.text.split_once(':').unwrap_or((&l.text, ""));
                        let nk = if k == "*" { k.to_string() } else { cx.rw.apply(k) };
                        let new_lhs = lhs.replacen(k, &nk, 1);
                        let text = format!("{new_lhs}:{}", rewrite_alias_value(rhs, cx));
                        // An address renamed into another domain takes its forwarder along.
                        let nd = match (k.rsplit_once('@'), nk.rsplit_once('@')) {
                            (Some((_, od)), Some((_, d))) if od == dom && valid_domain(d) => d.to_string(),
                            _ => nd_default,
                        };
                        (Some(nk), text, nd)
                    }
                    None if cx.selected.is_some() => continue,
                    None => (None, l.text.clone(), nd_default),
                };
                let e = by_domain.entry(nd).or_default();
                if text != l.text {
                    e.1.push((l.text.clone(), text.clone()));
                }
                push_unique(&mut e.0, KLine { key, text }, &path, &mut plan.warnings);
            }
            for (nd, (lines, rewrites)) in by_domain {
                plan.files.push(system(
                    vec!["valiases".into(), nd],
                    Body::Keyed(Format::Aliases, lines),
                    path.clone(),
                    rewrites,
                ));
            }
            if text.is_empty() && cx.selected.is_none() {
                plan.files.push(system(
                    vec!["valiases".into(), cx.mapping.domain(dom)],
                    Body::Keyed(Format::Aliases, Vec::new()),
                    path.clone(),
                    Vec::new(),
                ));
            }
        }
        if cx.selected.is_some() {
            continue;
        }
        let path = etc.join("vfilters").join(dom);
        if let Some(text) = read_text(cx.tree, &path, plan) {
            let new = cx.rw.apply(&text);
            let rewrites = line_rewrites(&text, &new);
            plan.files.push(system(vec!["vfilters".into(), cx.mapping.domain(dom)], Body::Filter(new), path, rewrites));
        }
    }
}

fn map_lines(src: Vec<KLine>, f: impl Fn(&str) -> String, fmt: Format) -> (Vec<KLine>, Vec<(String, String)>) {
    let mut rewrites = Vec::new();
    let out = src
        .into_iter()
        .map(|l| {
            let t = f(&l.text);
            if t != l.text {
                rewrites.push((l.text.clone(), t.clone()));
            }
            let key = if l.key.is_some() { fmt.key(&t).ok().flatten() } else { None };
            KLine { key, text: t }
        })
        .collect();
    (out, rewrites)
}

fn system(rel: Vec<String>, body: Body, from: PathBuf, rewrites: Vec<(String, String)>) -> Planned {
    Planned { root: Root::Etc, rel, dir_modes: vec![0o751], mode: 0o640, group_mail: true, body, from, rewrites }
}

/// The homes recorded in the account's passwd files (field 7, and field 6 without
/// `/mail/DOMAIN/LOCAL`), and every `(local, domain)` they list.
pub fn recorded(tree: &dyn Tree, acc: &Account) -> (Vec<String>, Vec<(String, String)>) {
    let mut homes = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    for dom in &acc.domains {
        let Ok(b) = tree.read(&acc.home.join("etc").join(dom).join("passwd")) else { continue };
        for line in String::from_utf8_lossy(&b).lines() {
            let f: Vec<&str> = line.split(':').collect();
            let Some(local) = f.first().filter(|l| valid_local(l)) else { continue };
            addrs.insert((local.to_string(), dom.clone()));
            if let Some(h) = f.get(6).filter(|h| h.starts_with('/') && h.len() > 1) {
                homes.insert(h.trim_end_matches('/').to_string());
            }
            if let Some(h) = f
                .get(5)
                .and_then(|p| p.strip_suffix(&format!("/mail/{dom}/{local}")))
                .filter(|h| h.starts_with('/') && h.len() > 1)
            {
                homes.insert(h.to_string());
            }
        }
    }
    (homes.into_iter().collect(), addrs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpanel::mapping::Context;

    #[test]
    fn bare_user_destinations_follow_the_account() {
        let m = Mapping::default();
        let rw = Rewriter::new(&m, &Context { domains: &[], addresses: &[], source_homes: &[], target_home: "/h" });
        let cx = Cx {
            tree: &crate::cpanel::tree::Fs::new(Path::new("/nonexistent")),
            mapping: &m,
            rw: &rw,
            selected: None,
            source_etc: Path::new("/nonexistent"),
            target_home: "/h",
            target_ids: None,
            source_user: "olduser",
            target_user: "newuser",
        };
        assert_eq!(rewrite_alias_value(" olduser", &cx), " newuser");
        assert_eq!(rewrite_alias_value(" a@x.example, olduser", &cx), " a@x.example, newuser");
        assert_eq!(rewrite_alias_value(" olduserx@x.example", &cx), " olduserx@x.example");
        assert_eq!(rewrite_alias_value(" :fail: olduser gone", &cx), " :fail: olduser gone");
    }

    #[test]
    fn plan_renames_domain_everywhere() {
        use crate::cpanel::tree::{Mem, MemEntry};
        let home = Path::new("/a/homedir");
        let etc = Path::new("/a/etc");
        let mut t = Mem::default();
        let f = |s: &str| MemEntry::File(s.as_bytes().to_vec());
        t.insert(home, home.join("etc/old.example/passwd"), f("a:x:1:1::/home/u/mail/old.example/a:/home/u\nbroken\n"));
        t.insert(home, home.join("etc/old.example/quota"), f("a:100\n"));
        t.insert(home, home.join(".autorespond/a@old.example"), f("From: <a@old.example>\n\nbye\n"));
        t.insert(etc, etc.join("valiases/old.example"), f("a@old.example: b@cold.example\n*: u\n"));
        t.insert(etc, etc.join("valiases/stranger.example"), f("x@stranger.example: y@z.example\n"));
        t.insert(etc, etc.join("vdomainaliases/parked.example"), f("parked.example: old.example\n"));
        let acc = Account { home: home.to_path_buf(), domains: vec!["old.example".into()], ..Default::default() };
        let m = Mapping::from_options(&["old.example=new.example".to_string()], &[], None).unwrap();
        let homes = vec!["/home/u".to_string()];
        let addrs = vec![("a".to_string(), "old.example".to_string())];
        let domains = acc.domains.clone();
        let rw = Rewriter::new(
            &m,
            &Context { domains: &domains, addresses: &addrs, source_homes: &homes, target_home: "/home/v" },
        );
        let cx = Cx {
            tree: &t,
            mapping: &m,
            rw: &rw,
            selected: None,
            source_etc: etc,
            target_home: "/home/v",
            target_ids: None,
            source_user: "u",
            target_user: "v",
        };
        let plan = plan(&acc, &cx);
        let text = |rel: &[&str]| {
            let p = plan.files.iter().find(|p| p.rel == rel).unwrap_or_else(|| panic!("{rel:?} not planned"));
            match &p.body {
                Body::Keyed(_, l) => lines::render(l),
                Body::Filter(t) => t.clone(),
                Body::Whole(b) => String::from_utf8_lossy(b).into_owned(),
            }
        };
        assert_eq!(text(&["etc", "new.example", "passwd"]), "a:x:1:1::/home/v/mail/new.example/a:/home/v\nbroken\n");
        assert_eq!(text(&["etc", "new.example", "quota"]), "a:100\n");
        assert_eq!(text(&[".autorespond", "a@new.example"]), "From: <a@new.example>\n\nbye\n");
        assert_eq!(text(&["valiases", "new.example"]), "a@new.example: b@cold.example\n*: v\n");
        assert_eq!(text(&["vdomainaliases", "parked.example"]), "parked.example: new.example\n");
        assert!(plan.files.iter().all(|p| p.rel.iter().all(|c| c != "stranger.example" && c != "old.example")));
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        let pw = plan.files.iter().find(|p| p.rel == ["etc", "new.example", "passwd"]).map(|p| p.rewrites.len());
        assert_eq!(pw, Some(1));
    }
}
