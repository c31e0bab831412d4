//! The base of a catch-up run: what the source's account files held, as mapped, when they
//! were last synced into this target, so that the next run can tell which side changed a
//! line, a filter rule or a file since (lines.rs [`decide`](super::lines::decide)).
//!
//! One file per target account, `.mailmover-metadata` in its home beside the lock: inside the
//! target, in no directory Dovecot reads as mail (the mail root is `mail/`) and under no name
//! cPanel reads. For each account file (by where it goes: `home/…` below the home, `etc/…`
//! below `--target-etc`) it keeps the SHA-256 of each keyed line's text, never the text, so no
//! password hash is kept twice. It is written last, after every account file it describes
//! (a run killed before leaves an older base, which only makes the next run take what is
//! already there), atomically through the opened home, mode 0600, owned as the lock is (the
//! home's owner), never in a dry run. A base that is missing or garbled is no base (the
//! two-way merge of older versions); a link, FIFO or hard-linked file in its place is refused
//! and left as it is. The account's owner can edit it, so it is trusted only for the files
//! the account's own run may touch (the caller's business, see `cpanel::apply_metadata`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use super::lines::Base;
use super::output::{Planned, Root};
use crate::error::{Error, Kind, Problem, Result};
use crate::fsx::{Dir, FileKind, Owner};

pub const FILE: &str = ".mailmover-metadata";
const SCHEMA: &str = "mailmover.metadata-base/1";
/// About a hundred bytes a line: far more than any account's files have.
const MAX_BYTES: u64 = 64 << 20;

/// The base of one account file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBase {
    /// How it is merged (a `Body` kind: `passwd`, `aliases`, `exim filter`, `file`…).
    pub kind: String,
    /// The source file it came from (for reports about a file gone from the source).
    pub from: String,
    pub keys: Base,
}

/// Every account file's base, by [`id`].
pub type Bases = BTreeMap<String, FileBase>;

#[derive(Serialize, Deserialize)]
struct Stored {
    schema: String,
    files: Bases,
}

/// What reading the base found.
pub struct Loaded {
    /// `None`: there is no base to go by.
    pub bases: Option<Bases>,
    /// Why there is none, when that must be said (a warning for a garbled one, an error for a
    /// refused one).
    pub problem: Option<Problem>,
    /// Whether the run may put its own in place (not over a refused one).
    pub writable: bool,
}

/// Where a planned file goes, as the base names it: `home/etc/DOMAIN/passwd`,
/// `etc/valiases/DOMAIN`.
pub fn id(p: &Planned) -> String {
    let root = match p.root {
        Root::Home => "home",
        Root::Etc => "etc",
    };
    std::iter::once(root).chain(p.rel.iter().map(String::as_str)).collect::<Vec<_>>().join("/")
}

/// The root and path components of an [`id`]; `None` when it is not one.
pub fn place(id: &str) -> Option<(Root, Vec<String>)> {
    let (root, rest) = id.split_once('/')?;
    let root = match root {
        "home" => Root::Home,
        "etc" => Root::Etc,
        _ => return None,
    };
    let rel: Vec<String> = rest.split('/').map(str::to_string).collect();
    rel.iter().all(|c| !c.is_empty() && c != "." && c != "..").then_some((root, rel))
}

/// Reads the base in the target home `home`.
pub fn read(home: &Dir) -> Loaded {
    let name = OsStr::new(FILE);
    let path = home.path.join(name);
    let none = |problem, writable| Loaded { bases: None, problem, writable };
    let opened = match home.open_own_file(name, MAX_BYTES) {
        Ok(Some(f)) => f,
        Ok(None) => return none(None, true),
        Err(e) => return none(Some(e.problem()), false),
    };
    let (f, len) = opened;
    let md = match f.metadata() {
        Ok(m) => m,
        Err(e) => return none(Some(Problem::io(&path, &e)), false),
    };
    if md.nlink() != 1 {
        return none(
            Some(Problem::refused(&path, "has hard links; not used as the base of this run, nor replaced")),
            false,
        );
    }
    let garbled = |why: &str| {
        Some(Problem::of(
            Kind::Malformed,
            &path,
            format!("{why}; not used (metadata is merged as on a first run) and replaced"),
        ))
    };
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_BYTES), &mut data) {
        return none(Some(Problem::io(&path, &e)), false);
    }
    match serde_json::from_slice::<Stored>(&data) {
        Ok(s) if s.schema == SCHEMA => Loaded { bases: Some(s.files), problem: None, writable: true },
        Ok(_) => none(garbled("not a metadata base of this version"), true),
        Err(_) => none(garbled("not a metadata base (garbled)"), true),
    }
}

/// Puts `bases` in place in the target home `home` (owned by `owner`, else as the home's new
/// files are), unless a link or anything but a regular file took the name meanwhile.
pub fn write(home: &Dir, bases: &Bases, owner: Option<Owner>, durable: bool) -> Result<()> {
    let name = OsStr::new(FILE);
    if let Some(e) = home.stat_at(name)?
        && e.kind != FileKind::File
    {
        return Err(Error::refused(home.path.join(name), "is not a regular file in the target; not replaced"));
    }
    let body = serde_json::to_vec(&Stored { schema: SCHEMA.to_string(), files: bases.clone() })
        .map_err(|e| Error::bad(home.path.join(name), e.to_string()))?;
    home.write_atomic(FILE, &body, 0o600, owner, durable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_where_files_go() {
        assert_eq!(
            place("home/etc/d.example/passwd"),
            Some((Root::Home, vec!["etc".into(), "d.example".into(), "passwd".into()]))
        );
        assert_eq!(place("etc/valiases/d.example").map(|p| p.0), Some(Root::Etc));
        for bad in ["etc", "etc/", "etc/../x", "var/x", "home/a//b", "etc/./x"] {
            assert_eq!(place(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_base_round_trips_and_garbage_is_none() {
        let t = tempfile::tempdir().unwrap();
        let home = Dir::open_root(t.path()).unwrap();
        assert!(read(&home).bases.is_none() && read(&home).problem.is_none());
        let mut b = Bases::new();
        b.insert(
            "home/etc/d/passwd".into(),
            FileBase { kind: "passwd".into(), from: "/s".into(), keys: [("a".into(), "00".into())].into() },
        );
        write(&home, &b, None, false).unwrap();
        let mode = std::fs::metadata(t.path().join(FILE)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read(&home).bases, Some(b));
        std::fs::write(t.path().join(FILE), b"{\"schema\": 3").unwrap();
        let l = read(&home);
        assert!(l.bases.is_none() && l.writable);
        assert_eq!(l.problem.map(|p| p.kind), Some(Kind::Malformed));
    }

    #[test]
    fn a_planted_link_or_fifo_is_refused_and_left() {
        let t = tempfile::tempdir().unwrap();
        let home = Dir::open_root(t.path()).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::write(&elsewhere, b"{}").unwrap();
        std::os::unix::fs::symlink(&elsewhere, t.path().join(FILE)).unwrap();
        let l = read(&home);
        assert!(l.bases.is_none() && !l.writable);
        assert_eq!(l.problem.map(|p| p.kind), Some(Kind::Refused));
        assert!(write(&home, &Bases::new(), None, false).is_err());
        assert!(std::fs::symlink_metadata(t.path().join(FILE)).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"{}");
        std::fs::remove_file(t.path().join(FILE)).unwrap();
        nix::unistd::mkfifo(&t.path().join(FILE), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let l = read(&home);
        assert!(!l.writable);
        assert_eq!(l.problem.map(|p| p.kind), Some(Kind::Refused));
    }
}
