//! Where the metadata planner reads a source account from: the file system, or the small files
//! of a pkgacct archive held in memory (archive.rs). Both answer the same three questions —
//! a file's bytes, a directory's entries, whether a path exists — so metadata.rs plans the
//! same files whichever the source is.
//!
//! The file-system side never follows a symlink inside the account (files are opened with
//! `O_NOFOLLOW`, entries are typed with `lstat`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsx::{self, FileKind};

pub trait Tree: Sync {
    /// The bytes of the regular file at `path`.
    fn read(&self, path: &Path) -> Result<Vec<u8>>;
    /// `(name, kind)` of the entries of the directory at `path`, sorted; empty when missing.
    fn list(&self, path: &Path) -> Vec<(String, FileKind)>;
    fn exists(&self, path: &Path) -> bool;
}

/// The real file system.
pub struct Fs;

impl Tree for Fs {
    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        fsx::read_source_file(path)
    }

    fn list(&self, path: &Path) -> Vec<(String, FileKind)> {
        fsx::list_dir(path)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(raw, k)| {
                let name = String::from_utf8(raw).ok()?;
                let kind =
                    k.or_else(|| std::fs::symlink_metadata(path.join(&name)).ok().map(|m| FileKind::of(m.file_type())));
                Some((name, kind.unwrap_or(FileKind::Other)))
            })
            .collect()
    }

    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }
}

#[derive(Debug, Clone)]
pub enum MemEntry {
    File(Vec<u8>),
    /// A file too big to be held in memory (its size): listed, never read.
    Big(u64),
    Dir,
    Symlink,
}

/// A tree held in memory, keyed by full (virtual) path.
#[derive(Debug, Default)]
pub struct Mem {
    pub entries: BTreeMap<PathBuf, MemEntry>,
}

impl Mem {
    /// Adds an entry and every directory above it up to `root`.
    pub fn insert(&mut self, root: &Path, path: PathBuf, e: MemEntry) {
        let mut p = path.parent();
        while let Some(d) = p {
            if !d.starts_with(root) {
                break;
            }
            self.entries.entry(d.to_path_buf()).or_insert(MemEntry::Dir);
            p = d.parent();
        }
        self.entries.insert(path, e);
    }
}

impl Tree for Mem {
    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        match self.entries.get(path) {
            Some(MemEntry::File(b)) => Ok(b.clone()),
            Some(MemEntry::Symlink) => Err(Error::bad(path, "symlink not followed (use --follow-symlinks)")),
            Some(MemEntry::Big(n)) => Err(Error::bad(
                path,
                format!("{n} bytes: too big to be copied out of an archive; not copied (unpack the archive)"),
            )),
            Some(MemEntry::Dir) => Err(Error::bad(path, "a directory, not a file")),
            None => Err(Error::bad(path, "not in the archive")),
        }
    }

    fn list(&self, path: &Path) -> Vec<(String, FileKind)> {
        self.entries
            .range(path.to_path_buf()..)
            .skip_while(|(p, _)| p.as_path() == path)
            .take_while(|(p, _)| p.starts_with(path))
            .filter(|(p, _)| p.parent() == Some(path))
            .filter_map(|(p, e)| {
                let name = p.file_name()?.to_str()?.to_string();
                let kind = match e {
                    MemEntry::File(_) | MemEntry::Big(_) => FileKind::File,
                    MemEntry::Dir => FileKind::Dir,
                    MemEntry::Symlink => FileKind::Symlink,
                };
                Some((name, kind))
            })
            .collect()
    }

    fn exists(&self, path: &Path) -> bool {
        self.entries.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_lists_children_only() {
        let mut m = Mem::default();
        let root = Path::new("/a.tar/homedir");
        m.insert(root, root.join("etc/d.example/passwd"), MemEntry::File(b"x".to_vec()));
        m.insert(root, root.join("etc/d.example-2/quota"), MemEntry::File(b"y".to_vec()));
        m.insert(root, root.join("mail/.x@y"), MemEntry::Symlink);
        assert_eq!(
            m.list(&root.join("etc")),
            vec![("d.example".into(), FileKind::Dir), ("d.example-2".into(), FileKind::Dir)]
        );
        assert_eq!(m.list(&root.join("etc/d.example")), vec![("passwd".into(), FileKind::File)]);
        assert_eq!(m.read(&root.join("etc/d.example/passwd")).unwrap(), b"x");
        assert!(m.read(&root.join("mail/.x@y")).is_err());
        assert!(m.exists(&root.join("mail")));
    }
}
