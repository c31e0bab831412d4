//! Where the metadata planner reads a source account from: the file system, or the small files
//! of a pkgacct archive held in memory (archive.rs). Both answer the same three questions —
//! a file's bytes, a directory's entries, whether a path exists — so metadata.rs plans the
//! same files whichever the source is.
//!
//! The file-system side reads below the account home through descriptors: the home opened
//! once (the admin names it), every level below it opened relative to the one above without
//! following a link, and files read only when they are regular and small ([`SMALL_FILE`]).
//! The account is its user's: a link planted there (`etc/DOMAIN` to `/etc`) must not make root
//! copy a file of root's, a FIFO must not hang the run, a huge file must not fill memory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Problem, Result};
use crate::fsx::{self, Dir, FileKind};

/// Metadata files bigger than this are not read (an archive's are not kept in memory either):
/// the account's own files are a few KiB, their databases a few MiB.
pub const SMALL_FILE: u64 = 32 << 20;

pub trait Tree: Sync {
    /// The bytes of the regular file at `path`.
    fn read(&self, path: &Path) -> Result<Vec<u8>>;
    /// `(name, kind)` of the entries of the directory at `path`, sorted; empty when missing
    /// or when it cannot be listed (said by [`Tree::take_unlisted`]).
    fn list(&self, path: &Path) -> Vec<(String, FileKind)>;
    fn exists(&self, path: &Path) -> bool;
    /// The directories that are there but could not be listed since the last call: what is in
    /// them is not known, which is not the same as nothing.
    fn take_unlisted(&self) -> Vec<Problem> {
        Vec::new()
    }
}

/// The real file system: the account at `home` through its descriptor, anything else (the
/// system `etc` the admin names) by path, never through a link at its last level.
pub struct Fs {
    home: PathBuf,
    /// `None`: the home could not be opened; nothing below it is read.
    dir: Option<Dir>,
    unlisted: std::sync::Mutex<Vec<Problem>>,
}

impl Fs {
    pub fn new(home: &Path) -> Fs {
        Fs { home: home.to_path_buf(), dir: Dir::open_root(home).ok(), unlisted: Default::default() }
    }

    /// The directory `dir` below the home, reached level by level without following a link;
    /// `None` when a level is missing. `Err(None)`: `dir` is not below the home.
    fn below(&self, dir: &Path) -> std::result::Result<Option<Dir>, Option<Error>> {
        let rel = dir.strip_prefix(&self.home).map_err(|_| None)?;
        let Some(home) = &self.dir else { return Ok(None) };
        let mut d = home.try_clone().map_err(Some)?;
        let mut at = self.home.clone();
        for c in rel.components() {
            let Component::Normal(name) = c else { return Err(Some(Error::bad(dir, "not a plain path"))) };
            at.push(name);
            // Looked at first for the message; the open below refuses a link swapped in since.
            match d.stat_at(name).map_err(Some)? {
                None => return Ok(None),
                Some(e) if e.kind == FileKind::Symlink => return Err(Some(Error::bad(at, LINK))),
                Some(e) if e.kind != FileKind::Dir => return Ok(None),
                Some(_) => {}
            }
            d = match d.open(name).map_err(Some)? {
                Some(next) => next,
                None => return Ok(None),
            };
        }
        Ok(Some(d))
    }
}

const LINK: &str = "is a symlink; not followed";

fn not_found(path: &Path) -> Error {
    Error::Io { path: path.to_path_buf(), source: std::io::ErrorKind::NotFound.into() }
}

impl Tree for Fs {
    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return Err(not_found(path)) };
        let read = match self.below(parent) {
            Ok(Some(d)) => d.read_own_file(name, SMALL_FILE),
            Ok(None) => return Err(not_found(path)),
            Err(Some(e)) => return Err(e),
            Err(None) => fsx::read_own_file(path, SMALL_FILE),
        };
        read?.ok_or_else(|| not_found(path))
    }

    fn list(&self, path: &Path) -> Vec<(String, FileKind)> {
        let unlisted = |e: Error| {
            if !e.is_not_found()
                && let Ok(mut u) = self.unlisted.lock()
            {
                u.push(e.problem());
            }
            Vec::new()
        };
        let (listed, dir) = match self.below(path) {
            Ok(Some(d)) => (d.list().unwrap_or_else(unlisted), Some(d)),
            Ok(None) => return Vec::new(),
            Err(Some(e)) => {
                unlisted(e);
                return Vec::new();
            }
            Err(None) => (fsx::list_dir(path).unwrap_or_else(unlisted), None),
        };
        listed
            .into_iter()
            .filter_map(|(raw, k)| {
                let name = String::from_utf8(raw).ok()?;
                let kind = k.or_else(|| match &dir {
                    Some(d) => d.stat_at(OsStr::new(&name)).ok().flatten().map(|e| e.kind),
                    None => std::fs::symlink_metadata(path.join(&name)).ok().map(|m| FileKind::of(m.file_type())),
                });
                Some((name, kind.unwrap_or(FileKind::Other)))
            })
            .collect()
    }

    fn take_unlisted(&self) -> Vec<Problem> {
        self.unlisted.lock().map(|mut u| std::mem::take(&mut *u)).unwrap_or_default()
    }

    /// Also true for a path behind a link on the way: its read is refused, and said.
    fn exists(&self, path: &Path) -> bool {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return false };
        match self.below(parent) {
            Ok(Some(d)) => d.exists(name),
            Ok(None) => false,
            Err(Some(_)) => true,
            Err(None) => std::fs::symlink_metadata(path).is_ok(),
        }
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
            Some(MemEntry::Symlink) => Err(Error::refused(path, "symlink not followed (use --follow-symlinks)")),
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

    /// What the account's user plants is not read through: a link at any level below the
    /// home, a FIFO (not waited on), a file bigger than [`SMALL_FILE`] (not read whole).
    #[test]
    fn fs_reads_below_the_home_through_no_link() {
        let t = tempfile::tempdir().unwrap();
        let (home, elsewhere) = (t.path().join("home"), t.path().join("elsewhere"));
        std::fs::create_dir_all(home.join("etc/own.example")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(home.join("etc/own.example/passwd"), b"mine").unwrap();
        std::fs::write(elsewhere.join("shadow"), b"root:secret").unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.join("etc/linked.example")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.join(".spamassassin")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("shadow"), home.join("etc/own.example/shadow")).unwrap();
        nix::unistd::mkfifo(&home.join("etc/own.example/quota"), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap();
        std::fs::File::create(home.join("etc/own.example/big")).unwrap().set_len(SMALL_FILE + 1).unwrap();
        let fs = Fs::new(&home);
        let read = |rel: &str| fs.read(&home.join(rel)).map_err(|e| e.to_string());
        assert_eq!(read("etc/own.example/passwd").unwrap(), b"mine");
        let e = read("etc/linked.example/shadow").unwrap_err();
        assert!(e.contains("linked.example: is a symlink; not followed"), "{e}");
        assert!(fs.exists(&home.join("etc/linked.example/shadow")), "refused, so said");
        assert!(read("etc/own.example/shadow").unwrap_err().contains("is a symlink; not followed"));
        assert!(read("etc/own.example/quota").unwrap_err().contains("not a regular file"));
        assert!(read("etc/own.example/big").unwrap_err().contains("more than the"));
        let e = fs.read(&home.join("etc/none.example/passwd")).unwrap_err();
        assert!(e.is_not_found() && !fs.exists(&home.join("etc/none.example/passwd")), "{e}");
        assert!(fs.list(&home.join(".spamassassin")).is_empty(), "not listed through the link");
        assert!(fs.list(&home.join("etc")).contains(&("linked.example".into(), FileKind::Symlink)));
        // Outside the home (the system etc): by path, still no FIFO and no final link.
        let outside = Fs::new(&t.path().join("other-home"));
        let e = outside.read(&home.join("etc/own.example/quota")).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert_eq!(outside.read(&home.join("etc/own.example/passwd")).unwrap(), b"mine");
    }

    /// A level swapped for a link after the account was opened is still refused: every level
    /// is opened from the one above, never by the path again.
    #[test]
    fn fs_keeps_the_home_it_opened() {
        let t = tempfile::tempdir().unwrap();
        let (home, moved) = (t.path().join("home"), t.path().join("moved"));
        std::fs::create_dir_all(home.join("etc/d.example")).unwrap();
        std::fs::write(home.join("etc/d.example/passwd"), b"mine").unwrap();
        let fs = Fs::new(&home);
        std::fs::rename(&home, &moved).unwrap();
        std::fs::create_dir_all(home.join("etc/d.example")).unwrap();
        std::fs::write(home.join("etc/d.example/passwd"), b"planted").unwrap();
        assert_eq!(fs.read(&home.join("etc/d.example/passwd")).unwrap(), b"mine");
    }
}
