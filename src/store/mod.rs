//! Stores: how a `KIND:PATH` argument is understood, and the folders a store holds.

pub mod maildir;
pub mod mbox;

use std::path::{Path, PathBuf};

use crate::error::{Error, Problem, Result};
use crate::folder::FolderName;

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

/// Where a source folder's messages are.
#[derive(Debug, Clone)]
pub enum Location {
    MboxFile(PathBuf),
    Maildir(PathBuf),
}

impl Location {
    pub fn path(&self) -> &Path {
        match self {
            Location::MboxFile(p) | Location::Maildir(p) => p,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceFolder {
    pub name: FolderName,
    pub loc: Location,
}

/// The folders of a source store, sorted by name, with what was wrong on the way.
pub fn source_folders(store: &Store, follow_symlinks: bool) -> Result<(Vec<SourceFolder>, Vec<Problem>)> {
    let mut problems = Vec::new();
    let md = std::fs::metadata(&store.path).map_err(|e| Error::Io { path: store.path.clone(), source: e })?;
    let folders = match store.kind {
        Kind::Mbox if md.is_file() => {
            vec![SourceFolder { name: FolderName::inbox(), loc: Location::MboxFile(store.path.clone()) }]
        }
        Kind::Mbox if md.is_dir() => mbox::folders(&store.path, follow_symlinks, &mut problems)
            .into_iter()
            .map(|f| SourceFolder { name: f.name, loc: Location::MboxFile(f.file) })
            .collect(),
        Kind::Mbox => return Err(Error::bad(&store.path, "not a file or directory")),
        Kind::Maildir => {
            if !md.is_dir() {
                return Err(Error::bad(&store.path, "not a directory (a Maildir has cur/, new/ and tmp/)"));
            }
            let opts = maildir::read::ScanOptions { follow_symlinks };
            maildir::read::folders(&store.path, opts, &mut problems)
                .into_iter()
                .map(|f| SourceFolder { name: f.name, loc: Location::Maildir(f.dir) })
                .collect()
        }
        Kind::Cpanel => return Err(Error::Usage("cpanel: stores are not supported yet".into())),
    };
    Ok((folders, problems))
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
