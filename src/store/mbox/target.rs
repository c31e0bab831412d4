//! Where a folder lives in an mbox target, reached only through descriptors.
//!
//! An mbox-directory target is walked from its opened root one level at a time: every level is
//! looked at with `fstatat(AT_SYMLINK_NOFOLLOW)` and opened with `O_NOFOLLOW`, so a symlink
//! planted at any level (`A`, `A.sbd`, `INBOX`, the mbox file itself) is refused, naming its
//! path, and nothing is read or written through it. Missing levels are created 0700 and owned
//! as `--owner` says (as root without it: as the directory they are created in, the way
//! Dovecot treats a user's mail directory) before anything is put in them. Levels are
//! directories named in modified UTF-7 as Dovecot writes them; a level that is also a folder
//! with mail (a file) keeps its children in `NAME.sbd/` (Thunderbird).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::read::MboxFile;
use super::write::Read;
use crate::error::{Error, Result};
use crate::folder::FolderName;
use crate::fsx::{Dir, FileKind, Owner};
use crate::mutf7;

/// The directory a folder's mbox file is in, opened, and the file's name there.
#[derive(Debug)]
pub struct Place {
    pub dir: Dir,
    pub name: OsString,
    pub path: PathBuf,
}

/// The directory name for the children of the folder whose last level is `level`, given what
/// `level` is on disk and whether that folder is written as an mbox file in this run.
fn children_dir(level: &str, on_disk: Option<FileKind>, written: bool) -> String {
    match on_disk {
        Some(FileKind::File) => format!("{level}.sbd"),
        Some(_) => level.to_string(),
        None if written => format!("{level}.sbd"),
        None => level.to_string(),
    }
}

fn symlink(path: PathBuf) -> Error {
    Error::refused(path, "is a symlink in the target; nothing is written through it")
}

/// Reaches the folder `name` of the mbox directory `root`. With `create`, missing levels are
/// made (owned as [`Dir::create`] owns new directories); without, `None` when a level is missing. `written` tells
/// which folders this run writes as files (their children go to `NAME.sbd/`).
pub fn place(
    root: &Dir,
    name: &FolderName,
    written: &dyn Fn(&FolderName) -> bool,
    create: Option<Option<Owner>>,
) -> Result<Option<Place>> {
    let levels: Vec<&str> = name.levels().collect();
    let mut dir = root.try_clone()?;
    for (i, level) in levels.iter().enumerate() {
        let enc = mutf7::encode(level);
        let here = OsStr::new(&enc);
        let on_disk = dir.stat_at(here)?;
        if on_disk.is_some_and(|e| e.kind == FileKind::Symlink) {
            return Err(symlink(dir.path.join(here)));
        }
        if i + 1 == levels.len() {
            return match on_disk.map(|e| e.kind) {
                Some(FileKind::Dir) => {
                    Err(Error::bad(dir.path.join(here), "is a directory, so it cannot be this folder's mbox file"))
                }
                Some(FileKind::Other) => Err(Error::refused(dir.path.join(here), "not a regular file; not written")),
                _ => Ok(Some(Place { path: dir.path.join(here), name: here.to_os_string(), dir })),
            };
        }
        let folder = FolderName::from_levels(levels[..=i].iter().copied()).map_err(|e| Error::bad(&dir.path, e))?;
        let sub = children_dir(&enc, on_disk.map(|e| e.kind), written(&folder));
        let sub = OsStr::new(&sub);
        match dir.stat_at(sub)?.map(|e| e.kind) {
            Some(FileKind::Symlink) => return Err(symlink(dir.path.join(sub))),
            Some(FileKind::Dir) => {}
            Some(_) => {
                return Err(Error::bad(dir.path.join(sub), "not a directory; the folders below it are not written"));
            }
            None if create.is_none() => return Ok(None),
            None => {}
        }
        dir = match create {
            Some(owner) => dir.create(sub, 0o700, owner)?,
            None => dir.open(sub)?.ok_or_else(|| Error::bad(dir.path.join(sub), "vanished while it was opened"))?,
        };
    }
    Err(Error::bad(&root.path, "empty folder name"))
}

/// The path [`place`] reaches, computed from the paths alone (nothing is opened or created):
/// for the folder state beside the mbox and for reports.
pub fn place_path(root: &Path, name: &FolderName, written: &dyn Fn(&FolderName) -> bool) -> PathBuf {
    let levels: Vec<&str> = name.levels().collect();
    let mut p = root.to_path_buf();
    for (i, level) in levels.iter().enumerate() {
        let enc = mutf7::encode(level);
        if i + 1 == levels.len() {
            p.push(enc);
            break;
        }
        let on_disk = std::fs::symlink_metadata(p.join(&enc)).ok().map(|m| FileKind::of(m.file_type()));
        let written = FolderName::from_levels(levels[..=i].iter().copied()).is_ok_and(|f| written(&f));
        p.push(children_dir(&enc, on_disk, written));
    }
    p
}

/// Opens the existing mbox of `place` for reading (refusing a symlink or a non-file) and
/// takes its digest as read, in the same pass as `each` sees its bytes. `None` when there is
/// none.
pub fn read_existing(place: &Place) -> Result<Option<(MboxFile, Read)>> {
    let Some(file) = place.dir.open_file(&place.name, false)? else { return Ok(None) };
    let mbox = MboxFile::from_file(file, &place.path)?;
    let mut h = Sha256::new();
    // Hashed a window at a time, dropping the pages behind, so memory stays bounded.
    const WINDOW: usize = crate::fsx::WINDOW;
    let bytes = mbox.bytes();
    let mut off = 0;
    while off < bytes.len() {
        let end = (off + WINDOW).min(bytes.len());
        h.update(&bytes[off..end]);
        off = end;
        mbox.release_before(off);
    }
    let read = Read { stamp: mbox.stamp(), digest: h.finalize().into() };
    Ok(Some((mbox, read)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(_: &FolderName) -> bool {
        false
    }

    #[test]
    fn symlink_at_any_level_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        for link in ["A", "A.sbd", "INBOX", "Work"] {
            std::os::unix::fs::symlink(victim.path(), t.path().join(link)).unwrap();
        }
        std::fs::write(t.path().join("B"), b"").unwrap();
        std::os::unix::fs::symlink(victim.path(), t.path().join("B.sbd")).unwrap();
        for (folder, bad) in [("A/x", "A"), ("INBOX", "INBOX"), ("Work", "Work"), ("B/y", "B.sbd")] {
            let name = FolderName::parse(folder).unwrap();
            let e = place(&root, &name, &no, Some(None)).unwrap_err().to_string();
            assert!(e.contains(&format!("{}: is a symlink", t.path().join(bad).display())), "{folder}: {e}");
        }
        assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0, "nothing created through a link");
    }

    #[test]
    fn places_follow_thunderbird_and_dovecot_layouts() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let written = |f: &FolderName| f.as_str() == "Archive";
        for (folder, want) in
            [("Archive/2019", "Archive.sbd/2019"), ("Old/2019", "Old/2019"), ("Entwürfe", "Entw&APw-rfe")]
        {
            let name = FolderName::parse(folder).unwrap();
            let p = place(&root, &name, &written, Some(None)).unwrap().unwrap();
            assert_eq!(p.path, t.path().join(want));
            assert_eq!(place_path(t.path(), &name, &written), p.path);
        }
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(t.path().join("Old")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700);
        assert!(place(&root, &FolderName::parse("New/x").unwrap(), &no, None).unwrap().is_none(), "nothing created");
        assert!(!t.path().join("New").exists());
    }
}
