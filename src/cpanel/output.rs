//! Putting planned metadata files into the target — or comparing them with it (`verify`).
//!
//! A [`Planned`] file says where it goes (below the target home or the target's system `etc`),
//! with which modes (FORMATS.md §3.3) and what it must contain. Keyed files are merged into
//! what the target already has by line or rule (lines.rs, filter.rs), whole files as one
//! piece, each decided against the last sync's base (base.rs) when there is one: a change on
//! one side is taken, a change on both is a conflict (an error), what the source removed goes
//! with `--delete`. With no base, a difference is a conflict reported as a warning and the
//! target's stays unless `--overwrite-metadata`.
//! Everything goes through `fsx::Dir`, so a symlink anywhere below the target roots is refused,
//! and through `write_atomic`, so a reader never sees half a file. A file that already exists
//! keeps its owner; a file whose content would not change is not touched (re-runs are no-ops).

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::lines::{self, Action, Base, Format, KLine, Merged, Note, Rules, Winner};
use crate::error::{Error, Kind, Problem, Result};
use crate::events::{Event, Recorder};
use crate::fsx::{Dir, Owner};
use crate::verify::{Difference, Verification};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// The target account's home.
    Home,
    /// The target's system-wide directory (`--target-etc`).
    Etc,
}

#[derive(Debug, Clone)]
pub enum Body {
    Keyed(Format, Vec<KLine>),
    /// An Exim filter, merged by rule block (filter.rs).
    Filter(String),
    Whole(Vec<u8>),
}

impl Body {
    /// What `inspect` and the base call this kind of file.
    pub fn kind(&self) -> String {
        match self {
            Body::Keyed(f, _) => f.name().to_string(),
            Body::Filter(_) => "exim filter".to_string(),
            Body::Whole(_) => "file".to_string(),
        }
    }

    /// A body of the kind [`Body::kind`] names, with nothing in it (for a file the source no
    /// longer has).
    pub fn empty(kind: &str) -> Option<Body> {
        match kind {
            "exim filter" => Some(Body::Filter(String::new())),
            "file" => Some(Body::Whole(Vec::new())),
            k => Format::ALL.into_iter().find(|f| f.name() == k).map(|f| Body::Keyed(f, Vec::new())),
        }
    }
}

/// One metadata file to be put into the target.
#[derive(Debug, Clone)]
pub struct Planned {
    pub root: Root,
    /// Path components below the root; the last one is the file name.
    pub rel: Vec<String>,
    /// Modes of the directories on the way (used when they are created).
    pub dir_modes: Vec<u32>,
    pub mode: u32,
    /// Group `mail` (cPanel's `etc/` files and the system routing files).
    pub group_mail: bool,
    pub body: Body,
    /// The source file it comes from.
    pub from: PathBuf,
    /// `(old line, new line)` for every line the mapping changed (printed by `--dry-run`).
    pub rewrites: Vec<(String, String)>,
}

/// The key a whole file's base is kept under.
const WHOLE: &str = "";

/// An account's metadata file (forwarders, filters, passwd, quotas) past this is not one.
const MAX_METADATA_BYTES: u64 = 64 << 20;

impl Planned {
    fn file_name(&self) -> &str {
        self.rel.last().map_or("", String::as_str)
    }

    fn dirs(&self) -> &[String] {
        self.rel.split_last().map_or(&[][..], |(_, d)| d)
    }
}

/// Where and as whom metadata is written.
pub struct Output<'a> {
    pub home: PathBuf,
    /// The home opened at the start (`None`: opened by its path).
    pub home_dir: Option<Dir>,
    pub etc: PathBuf,
    pub owner: Option<Owner>,
    pub mail_gid: Option<u32>,
    pub root_run: bool,
    pub dry_run: bool,
    /// Who wins a line or file both sides have, different.
    pub winner: Winner,
    /// What the source removed since the last sync goes from the target (`--delete`).
    pub delete: bool,
    pub rec: &'a dyn Recorder,
}

fn component(s: &str) -> Result<&OsStr> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return Err(Error::bad(s, "unsafe name for a target file; not written"));
    }
    Ok(OsStr::new(s))
}

impl Output<'_> {
    fn root_path(&self, r: Root) -> &Path {
        match r {
            Root::Home => &self.home,
            Root::Etc => &self.etc,
        }
    }

    pub fn path_of(&self, p: &Planned) -> PathBuf {
        p.rel.iter().fold(self.root_path(p.root).to_path_buf(), |acc, c| acc.join(c))
    }

    fn dir_owner(&self, p: &Planned) -> Option<Owner> {
        match p.root {
            // cPanel keeps the routing directories root:mail.
            Root::Etc => self.root_run.then(|| Owner { uid: 0, gid: self.mail_gid.unwrap_or(0) }),
            Root::Home => self.file_owner(p),
        }
    }

    fn file_owner(&self, p: &Planned) -> Option<Owner> {
        let o = self.owner?;
        Some(if p.group_mail && self.root_run { Owner { uid: o.uid, gid: self.mail_gid.unwrap_or(o.gid) } } else { o })
    }

    /// The directory that holds the file: opened (created when `create`), never through a
    /// symlink; `None` when it does not exist and was not to be created.
    fn parent(&self, p: &Planned, create: bool) -> Result<Option<Dir>> {
        let rootp = self.root_path(p.root);
        let mut dir = if let (Root::Home, Some(home)) = (p.root, &self.home_dir) {
            home.try_clone()?
        } else if create {
            let mode = if p.root == Root::Etc { 0o755 } else { 0o711 };
            Dir::create_root(rootp, mode, None)?
        } else {
            if !rootp.exists() {
                return Ok(None);
            }
            Dir::open_root(rootp)?
        };
        for (i, c) in p.dirs().iter().enumerate() {
            let name = component(c)?;
            dir = if create {
                dir.create(name, p.dir_modes.get(i).copied().unwrap_or(0o700), self.dir_owner(p))?
            } else {
                match dir.open(name)? {
                    Some(d) => d,
                    None => return Ok(None),
                }
            };
        }
        if create {
            // Temporary files that killed runs left beside the file about to be written.
            dir.remove_leftovers();
        }
        Ok(Some(dir))
    }

    /// The target file's bytes, owner and mode, if it exists.
    fn existing(&self, p: &Planned) -> Result<Option<(Vec<u8>, Owner, u32)>> {
        let Some(dir) = self.parent(p, false)? else { return Ok(None) };
        let name = component(p.file_name())?;
        if !dir.exists(name) {
            return Ok(None);
        }
        let path = dir.path.join(name);
        // Through the guarded directory: a link or FIFO planted here is refused, not followed,
        // and a metadata file is read up to a bound.
        let Some(f) = dir.open_file(name, false)? else { return Ok(None) };
        let md = f.metadata().map_err(|e| Error::Io { path: path.clone(), source: e })?;
        if md.len() > MAX_METADATA_BYTES {
            return Err(Error::refused(&path, "larger than any account file should be; not read"));
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&f, MAX_METADATA_BYTES), &mut data)
            .map_err(|e| Error::Io { path: path.clone(), source: e })?;
        Ok(Some((data, Owner { uid: md.uid(), gid: md.gid() }, md.mode() & 0o7777)))
    }

    fn rules(&self) -> Rules {
        Rules { winner: self.winner, delete: self.delete }
    }

    /// Merges or writes one planned file, deciding against `base` (what the last sync recorded
    /// of it; `None`: nothing, the two-way merge). Problems, and conflicts of what changed on
    /// both sides since the last sync, go to `errors`; other conflicts to `warnings`. Returns
    /// what the next run's base is for the file, `None` when it was not settled (a failed
    /// write: the old base stays).
    pub fn apply(
        &self,
        p: &Planned,
        base: Option<&Base>,
        errors: &mut Vec<Problem>,
        warnings: &mut Vec<Problem>,
    ) -> Option<Base> {
        let path = self.path_of(p);
        if self.dry_run {
            let shadow = p.file_name() == "shadow";
            for (old, new) in &p.rewrites {
                let (old, new) =
                    if shadow { (without_hash(old), without_hash(new)) } else { (old.clone(), new.clone()) };
                self.rec.record(Event::Plan(format!("{}: {old} -> {new}", path.display())));
            }
        }
        self.settle(self.apply_inner(p, &path, base, true, errors, warnings), errors)
    }

    /// An account file the last sync recorded that the source no longer has: `p` names its
    /// place, with an empty body of its kind. What the source removed since goes from the
    /// target with `--delete`; with no `--delete` it stays, and the log says so.
    pub fn apply_gone(
        &self,
        p: &Planned,
        base: &Base,
        errors: &mut Vec<Problem>,
        warnings: &mut Vec<Problem>,
    ) -> Option<Base> {
        let path = self.path_of(p);
        self.settle(self.apply_inner(p, &path, Some(base), false, errors, warnings), errors)
    }

    fn settle(&self, r: Result<Base>, errors: &mut Vec<Problem>) -> Option<Base> {
        r.map_err(|e| errors.push(e.problem())).ok()
    }

    fn apply_inner(
        &self,
        p: &Planned,
        path: &Path,
        base: Option<&Base>,
        present: bool,
        errors: &mut Vec<Problem>,
        warnings: &mut Vec<Problem>,
    ) -> Result<Base> {
        let existing = self.existing(p)?;
        let rules = self.rules();
        let shadow = p.file_name() == "shadow";
        let shown = |l: &str| if shadow { without_hash(l) } else { l.to_string() };
        let conflict = |c: &str| Problem::of(Kind::Conflict, path, format!("conflict: {c}"));
        let old_text = existing.as_ref().map(|(old, _, _)| String::from_utf8_lossy(old).into_owned());
        // The content to write (`None`: nothing), the file's new base, and the merge of its
        // lines or rules with what they are called.
        let (content, record, merged, label): (Option<Vec<u8>>, Base, Option<Merged>, &str) = match &p.body {
            Body::Keyed(fmt, src) => {
                let target_lines = old_text.as_deref().map(|t| lines::parse(*fmt, t).0).unwrap_or_default();
                let m = lines::merge(&target_lines, src, base, rules, &shown);
                let content = match (&existing, base) {
                    (None, None) => Some(lines::render(src).into_bytes()),
                    // Removed from the target and nothing of the source's taken: not made again.
                    (None, Some(_)) if m.lines.iter().all(|l| l.key.is_none()) => None,
                    _ => Some(lines::render(&m.lines).into_bytes()),
                };
                (content, m.base.clone(), Some(m), "line")
            }
            Body::Filter(src) => {
                let (text, m) = super::filter::merge(old_text.as_deref().unwrap_or(""), src, base, rules);
                let content = match (&existing, base) {
                    (None, None) => Some(src.clone().into_bytes()),
                    (None, Some(_)) if m.lines.is_empty() => None,
                    _ => Some(text.into_bytes()),
                };
                (content, m.base.clone(), Some(m), "rule")
            }
            Body::Whole(new) => {
                let sd = present.then(|| lines::digest(new));
                let td = existing.as_ref().map(|(old, _, _)| lines::digest(old));
                let b = base.and_then(|b| b.get(WHOLE)).map(String::as_str);
                let d = lines::decide(b, sd.as_deref(), td.as_deref(), rules);
                let from = p.from.display();
                match d.note {
                    Note::Differs => warnings.push(conflict(&format!(
                        "the target file differs from {from}; kept the {}",
                        self.winner.kept()
                    ))),
                    Note::BothChanged => {
                        let what = if present {
                            "changed on both sides"
                        } else {
                            "removed at the source and changed in the target"
                        };
                        let c = conflict(&format!(
                            "the target file and {from}: {what} since the last sync; kept the {}",
                            self.winner.kept()
                        ));
                        if self.winner == Winner::Source { warnings.push(c) } else { errors.push(c) }
                    }
                    Note::Gone => self.gone(path, "file".into(), false),
                    Note::None | Note::Removed => {}
                }
                let record: Base = d.record.into_iter().map(|r| (WHOLE.to_string(), r)).collect();
                match d.action {
                    Action::Remove => {
                        self.remove(p, path)?;
                        return Ok(record);
                    }
                    Action::TakeSource => (Some(new.clone()), record, None, ""),
                    Action::Keep => (None, record, None, ""),
                }
            }
        };
        if let Some(m) = &merged {
            // A line's conflict is named by its key alone, as it always was.
            let prefix = if label == "rule" { "rule " } else { "" };
            warnings.extend(m.conflicts.iter().map(|c| conflict(&format!("{prefix}{c}"))));
            errors.extend(m.unresolved.iter().map(|c| conflict(&format!("{prefix}{c}"))));
            for k in &m.gone {
                self.gone(path, format!("{label} {k:?}"), false);
            }
        }
        let Some(content) = content else { return Ok(record) };
        let removed = || {
            for k in merged.iter().flat_map(|m| &m.removed) {
                self.gone(path, format!("{label} {k:?}"), true);
            }
        };
        if existing.as_ref().is_some_and(|(old, _, _)| *old == content) {
            return Ok(record);
        }
        if self.dry_run {
            self.rec.record(Event::Plan(format!(
                "{}: write {} bytes (from {})",
                path.display(),
                content.len(),
                p.from.display()
            )));
            removed();
            return Ok(record);
        }
        let dir = self.parent(p, true)?.ok_or_else(|| Error::bad(path, "directory missing"))?;
        // A file the source no longer has keeps its mode: nothing planned it.
        let (owner, mode) = match &existing {
            Some((_, o, m)) => (self.root_run.then_some(*o), if present { p.mode } else { *m }),
            None => (self.file_owner(p), p.mode),
        };
        dir.write_atomic(p.file_name(), &content, mode, owner, true)?;
        self.rec.record(Event::Metadata {
            path: path.to_path_buf(),
            from: p.from.clone(),
            bytes: content.len() as u64,
        });
        removed();
        Ok(record)
    }

    /// Says that `what` of the account file at `path` is gone from the source: removed from
    /// the target, or kept for want of `--delete`.
    fn gone(&self, path: &Path, what: String, removed: bool) {
        self.rec.record(Event::MetadataGone { path: path.to_path_buf(), what, removed });
    }

    /// Removes a whole account file the source no longer has (`--delete`).
    fn remove(&self, p: &Planned, path: &Path) -> Result<()> {
        if !self.dry_run {
            let Some(dir) = self.parent(p, false)? else { return Ok(()) };
            dir.unlink(component(p.file_name())?)?;
        }
        self.gone(path, "file".into(), true);
        Ok(())
    }

    /// Lists in `v` every way the target differs from the planned file, but what the target
    /// changed on its own since the last sync (`base`: the source's line, rule or file is as it
    /// was then), which a sync keeps. A shadow line is shown without its hash.
    pub fn compare(&self, p: &Planned, base: Option<&Base>, v: &mut Verification) {
        let path = self.path_of(p);
        // The source's text is the one the last sync recorded: the target's differs by its own
        // doing.
        let kept = |key: &str, text: &[u8]| base.and_then(|b| b.get(key)).is_some_and(|d| *d == lines::digest(text));
        let shown = |l: &str| if p.file_name() == "shadow" { without_hash(l) } else { l.to_string() };
        let mut diff = |what: String| {
            v.differences.push(Difference {
                folder: "metadata".into(),
                source: Some(p.from.display().to_string()),
                target: Some(path.display().to_string()),
                what,
            });
        };
        let existing = match self.existing(p) {
            Ok(e) => e,
            Err(e) => {
                v.errors.push(e.problem());
                return;
            }
        };
        let Some((old, _, _)) = existing else {
            let whole = match &p.body {
                Body::Whole(new) => kept(WHOLE, new),
                _ => false,
            };
            if !whole {
                diff("metadata file missing in target".into());
            }
            return;
        };
        match &p.body {
            Body::Whole(new) => {
                if *new != old && !kept(WHOLE, new) {
                    diff("metadata file differs".into());
                }
            }
            Body::Filter(src) => {
                let (_, t) = super::filter::parse(&String::from_utf8_lossy(&old));
                for b in super::filter::parse(src).1 {
                    match t.iter().find(|x| x.key == b.key) {
                        Some(x) if x.text == b.text => {}
                        _ if b.key.as_deref().is_some_and(|k| kept(k, b.text.as_bytes())) => {}
                        Some(_) => diff(format!("filter rule {:?} differs", b.key.as_deref().unwrap_or(""))),
                        None => diff(format!("filter rule {:?} missing in target", b.key.as_deref().unwrap_or(""))),
                    }
                }
            }
            Body::Keyed(fmt, src) => {
                let (t, _) = lines::parse(*fmt, &String::from_utf8_lossy(&old));
                for s in src {
                    let found = match &s.key {
                        Some(k) => t.iter().find(|x| x.key.as_deref() == Some(k.as_str())),
                        None if s.text.trim().is_empty() => continue,
                        None => t.iter().find(|x| x.text == s.text),
                    };
                    match found {
                        Some(x) if x.text == s.text => {}
                        _ if s.key.as_deref().is_some_and(|k| kept(k, s.text.as_bytes())) => {}
                        Some(x) => diff(format!("line {:?} in target, {:?} expected", shown(&x.text), shown(&s.text))),
                        None => diff(format!("line {:?} missing in target", shown(&s.text))),
                    }
                }
            }
        }
    }
}

/// A shadow line as a plan shows it: the password hash is not printed, only its scheme and
/// length (`$6$…, 106 characters`).
fn without_hash(line: &str) -> String {
    let mut fields: Vec<String> = line.split(':').map(str::to_string).collect();
    if let Some(h) = fields.get_mut(1)
        && h.len() > 2
    {
        let scheme =
            h.strip_prefix('$').and_then(|r| r.split_once('$')).map_or(String::new(), |(s, _)| format!("${s}$"));
        *h = format!("{scheme}…, {} characters", h.chars().count());
    }
    fields.join(":")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_plan_shows_no_password_hash() {
        let line = "info:$6$salt$abcdefghijklmnopqrstuvwxyz0123456789:19000::::::";
        let shown = super::without_hash(line);
        assert_eq!(shown, "info:$6$…, 44 characters:19000::::::");
        assert!(!shown.contains("salt"));
        assert_eq!(super::without_hash("bob::19000"), "bob::19000", "no hash, nothing hidden");
    }
}
