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
                return Ok(Store { kind, path: PathBuf::from(p), explicit: true });
            }
        }
        let path = PathBuf::from(spec);
        Ok(Store { kind: detect(&path), path, explicit: false })
    }
}

/// Detection of a bare path: a regular file is mbox; a directory with `cur/` and `new/` is
/// Maildir; one with `mail/` and `etc/` is cPanel; any other directory holds mbox files; a path
/// that does not exist yet (a new target) is Maildir.
pub fn detect(path: &Path) -> Kind {
    let Ok(md) = std::fs::metadata(path) else { return Kind::Maildir };
    if md.is_file() {
        return Kind::Mbox;
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
    }
}
