//! What a `KIND:PATH` argument names: an mbox file or directory, a Maildir tree or a cPanel
//! account (CLI.md), written out or detected. The store layer below knows formats only
//! ([`crate::store::Format`]); cPanel accounts are [`crate::cpanel`]'s.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::Format;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Mbox,
    Maildir,
    Cpanel,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mbox => "mbox",
            Kind::Maildir => "maildir",
            Kind::Cpanel => "cpanel",
        }
    }
}

/// A store as named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub kind: Kind,
    pub path: PathBuf,
    /// The kind was written out (`mbox:…`), not detected.
    pub explicit: bool,
}

impl Store {
    /// Parses `KIND:PATH` or a bare path whose kind is detected (CLI.md).
    pub fn parse(spec: &str) -> Result<Store> {
        if spec.is_empty() {
            return Err(Error::Usage("empty store path".into()));
        }
        for (prefix, kind) in [("mbox:", Kind::Mbox), ("maildir:", Kind::Maildir), ("cpanel:", Kind::Cpanel)] {
            if let Some(p) = spec.strip_prefix(prefix) {
                if p.is_empty() {
                    return Err(Error::Usage(format!("{spec}: no path after {prefix}")));
                }
                return Ok(Store { kind, path: home_expanded(p)?, explicit: true });
            }
        }
        let path = home_expanded(spec)?;
        if let Some(missing) = broken_maildir(&path) {
            return Err(Error::Usage(format!(
                "{}: looks like a Maildir without its {missing}/ directory (a copy that lost empty directories?); \
                 create it (mkdir {}) or name the kind (maildir:{spec})",
                path.display(),
                path.join(missing).display()
            )));
        }
        Ok(Store { kind: detect(&path), path, explicit: false })
    }
}

/// `~` and `~USER` at the start of a path, as a shell would have expanded them (a quoted or
/// prefixed path, `mbox:~/Mail`, reaches us unexpanded).
fn home_expanded(p: &str) -> Result<PathBuf> {
    let Some(rest) = p.strip_prefix('~') else { return Ok(PathBuf::from(p)) };
    let (user, tail) = rest.split_once('/').map_or((rest, ""), |(u, t)| (u, t));
    let home = if user.is_empty() {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.dir))
    } else {
        nix::unistd::User::from_name(user).ok().flatten().map(|u| u.dir)
    };
    let home = home.ok_or_else(|| Error::Usage(format!("{p}: no home directory for ~{user}")))?;
    Ok(if tail.is_empty() { home } else { home.join(tail) })
}

/// The Maildir subdirectory a directory lacks when it is a Maildir otherwise (`cur/` or
/// `new/` with `tmp/`, or a `cur/` of files with Maildir info): read as a directory of mbox
/// files it would give nonsense. A directory of mbox files whose folders happen to be named
/// `cur` or `new` has neither.
fn broken_maildir(path: &Path) -> Option<&'static str> {
    let isdir = |s: &str| path.join(s).is_dir();
    let info_in_cur = || {
        std::fs::read_dir(path.join("cur"))
            .is_ok_and(|d| d.flatten().take(64).any(|e| e.file_name().to_string_lossy().contains(":2,")))
    };
    match (isdir("cur"), isdir("new"), isdir("tmp")) {
        (true, false, true) => Some("new"),
        (true, false, false) if info_in_cur() => Some("new"),
        (false, true, true) => Some("cur"),
        _ => None,
    }
}

/// A cPanel backup (`cpmove-USER.tar.gz`), which is a cPanel account as a source.
fn is_cpanel_archive(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("cpmove-") && [".tar.gz", ".tgz", ".tar"].iter().any(|e| n.ends_with(e)))
}

/// Detection of a bare path: a cPanel backup (`cpmove-USER.tar.gz`) is a cPanel account; any
/// other regular file is mbox; a directory with `cur/` and `new/` is Maildir; one with `mail/`
/// and `etc/` is cPanel; any other directory holds mbox files; a path that does not exist yet
/// (a new target) is Maildir.
pub fn detect(path: &Path) -> Kind {
    let Ok(md) = std::fs::metadata(path) else { return Kind::Maildir };
    if md.is_file() {
        return if is_cpanel_archive(path) { Kind::Cpanel } else { Kind::Mbox };
    }
    let isdir = |s: &str| path.join(s).is_dir();
    if isdir("cur") && isdir("new") {
        Kind::Maildir
    } else if isdir("mail") && isdir("etc") {
        Kind::Cpanel
    } else if is_empty_dir(path) {
        Kind::Maildir
    } else {
        Kind::Mbox
    }
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

impl Store {
    /// The mail format of a plain store; a cPanel account is not one.
    pub fn format(&self) -> Result<Format> {
        match self.kind {
            Kind::Mbox => Ok(Format::Mbox),
            Kind::Maildir => Ok(Format::Maildir),
            Kind::Cpanel => {
                Err(Error::Usage(format!("{}: a cPanel account is not a plain store here", self.path.display())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let s = Store::parse("mbox:/x/y").unwrap();
        assert_eq!((s.kind, s.path.to_str().unwrap(), s.explicit), (Kind::Mbox, "/x/y", true));
        assert_eq!(Store::parse("/does/not/exist").unwrap().kind, Kind::Maildir);
        assert!(Store::parse("maildir:").is_err());
    }

    #[test]
    fn detection() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        std::fs::write(p.join("f"), b"").unwrap();
        assert_eq!(detect(&p.join("f")), Kind::Mbox);
        std::fs::create_dir_all(p.join("md/cur")).unwrap();
        std::fs::create_dir_all(p.join("md/new")).unwrap();
        assert_eq!(detect(&p.join("md")), Kind::Maildir);
        std::fs::create_dir_all(p.join("cp/mail")).unwrap();
        std::fs::create_dir_all(p.join("cp/etc")).unwrap();
        assert_eq!(detect(&p.join("cp")), Kind::Cpanel);
        std::fs::create_dir_all(p.join("mb")).unwrap();
        std::fs::write(p.join("mb/INBOX"), b"").unwrap();
        assert_eq!(detect(&p.join("mb")), Kind::Mbox);
        std::fs::write(p.join("cpmove-bob.tar.gz"), b"").unwrap();
        assert_eq!(detect(&p.join("cpmove-bob.tar.gz")), Kind::Cpanel);
        std::fs::write(p.join("bob.tar.gz"), b"").unwrap();
        assert_eq!(detect(&p.join("bob.tar.gz")), Kind::Mbox);
    }

    #[test]
    fn a_maildir_missing_a_directory_is_named_not_read_as_mbox() {
        let t = tempfile::tempdir().unwrap();
        for (dirs, missing) in [(&["cur", "tmp"][..], "new/"), (&["new", "tmp"][..], "cur/")] {
            let p = t.path().join(dirs.join("-"));
            for d in dirs {
                std::fs::create_dir_all(p.join(d)).unwrap();
            }
            let e = Store::parse(p.to_str().unwrap()).unwrap_err().to_string();
            assert!(e.contains(&format!("without its {missing} directory")) && e.contains("maildir:"), "{e}");
            assert_eq!(Store::parse(&format!("maildir:{}", p.display())).unwrap().kind, Kind::Maildir);
        }
        // A cur/ of Maildir files alone; folders named cur or new in a directory of mboxes.
        std::fs::create_dir_all(t.path().join("lone/cur")).unwrap();
        std::fs::write(t.path().join("lone/cur/1.a:2,S"), b"").unwrap();
        assert!(Store::parse(t.path().join("lone").to_str().unwrap()).is_err());
        std::fs::create_dir_all(t.path().join("mboxes/cur")).unwrap();
        std::fs::write(t.path().join("mboxes/cur/Sent"), b"").unwrap();
        assert_eq!(Store::parse(t.path().join("mboxes").to_str().unwrap()).unwrap().kind, Kind::Mbox);
    }

    #[test]
    fn a_tilde_is_the_home_directory() {
        let home = std::env::var("HOME").unwrap_or_default();
        if home.is_empty() {
            return;
        }
        assert_eq!(Store::parse("mbox:~/Mail").unwrap().path, Path::new(&home).join("Mail"));
        assert_eq!(Store::parse("maildir:~").unwrap().path, Path::new(&home));
        let root = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(0)).unwrap().unwrap();
        assert_eq!(Store::parse(&format!("~{}/x", root.name)).unwrap().path, root.dir.join("x"));
        assert!(Store::parse("~no-such-user-here/x").is_err());
        assert_eq!(Store::parse("a~b").unwrap().path, Path::new("a~b"));
    }
}
