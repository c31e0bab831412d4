//! Where a folder lives in an mbox target, reached only through descriptors.
//!
//! An mbox-directory target is walked from its opened root one level at a time: every level is
//! looked at with `fstatat(AT_SYMLINK_NOFOLLOW)` and opened with `O_NOFOLLOW`, so a symlink
//! planted at any level (`A`, `A.sbd`, `INBOX`, the mbox file itself) is refused, naming its
//! path, and nothing is read or written through it. Missing levels are created 0700 and owned
//! as `--owner` says (as root without it: as the directory they are created in, the way
//! Dovecot treats a user's mail directory) before anything is put in them. Levels are named in
//! modified UTF-7 as Dovecot writes them; subfolders nest as directories (Dovecot's layout,
//! where a folder cannot have mail and subfolders both) or in `NAME.sbd/` (Thunderbird's),
//! as [`MboxLayout`] says; an `NAME.sbd/` already there is used either way.

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
    /// In Dovecot's layout: the `NAME.sbd/` directory the folder went to because its parent
    /// folder holds mail (that layout has no place for both), to be reported.
    pub fallback: Option<PathBuf>,
}

/// Where an mbox directory keeps a folder's subfolders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MboxLayout {
    /// Dovecot's (`fs`): `Archive/2019` is the file `2019` in the directory `Archive`, so a
    /// folder cannot hold mail and subfolders both.
    Dovecot,
    /// Thunderbird's: `Archive.sbd/2019` beside the file `Archive`.
    Thunderbird,
}

impl MboxLayout {
    /// The mbox layout `--layout` asks for: `thunderbird`, else Dovecot's.
    pub fn of(layout: crate::store::maildir::layout::Layout) -> MboxLayout {
        match layout {
            crate::store::maildir::layout::Layout::Thunderbird => MboxLayout::Thunderbird,
            _ => MboxLayout::Dovecot,
        }
    }
}

/// The directory that holds the subfolders of the folder whose last level (encoded) is
/// `level`: `level.sbd` when one is there already (written by Thunderbird, or by mailmover
/// before layouts could be chosen), or when that folder holds mail in Dovecot's layout (a file
/// there, or written by this run: no place for both, the children go beside it, reported),
/// else as `layout` says. The flag: the Dovecot fallback was taken.
fn children_dir(level: &str, sbd_there: bool, holds_mail: bool, layout: MboxLayout) -> (String, bool) {
    match (sbd_there, layout) {
        (true, _) | (false, MboxLayout::Thunderbird) => (format!("{level}.sbd"), false),
        (false, MboxLayout::Dovecot) if holds_mail => (format!("{level}.sbd"), true),
        (false, MboxLayout::Dovecot) => (level.to_string(), false),
    }
}

fn symlink(path: PathBuf) -> Error {
    Error::refused(path, "is a symlink in the target; nothing is written through it")
}

/// Reaches the folder `name` of the mbox directory `root`. With `create`, missing levels are
/// made (owned as [`Dir::create`] owns new directories); without, `None` when a level is
/// missing. Subfolders are where `layout` puts them (see [`children_dir`]); `written` tells
/// which folders this run writes as files.
pub fn place(
    root: &Dir,
    name: &FolderName,
    (layout, written): (MboxLayout, &dyn Fn(&FolderName) -> bool),
    create: Option<Option<Owner>>,
) -> Result<Option<Place>> {
    let levels: Vec<&str> = name.levels().collect();
    let mut dir = root.try_clone()?;
    let mut fallback = None;
    for (i, level) in levels.iter().enumerate() {
        let enc = mutf7::encode(level);
        let here = OsStr::new(&enc);
        let on_disk = dir.stat_at(here)?;
        if on_disk.is_some_and(|e| e.kind == FileKind::Symlink) {
            return Err(symlink(dir.path.join(here)));
        }
        if i + 1 == levels.len() {
            return match on_disk.map(|e| e.kind) {
                Some(FileKind::Dir) => Err(Error::bad(
                    dir.path.join(here),
                    "is a directory of subfolders, so it cannot be this folder's mbox file (Dovecot's mbox \
                     layout has no place for both; --layout thunderbird has)",
                )),
                Some(FileKind::Other) => Err(Error::refused(dir.path.join(here), "not a regular file; not written")),
                _ => Ok(Some(Place { path: dir.path.join(here), name: here.to_os_string(), dir, fallback })),
            };
        }
        let sbd = format!("{enc}.sbd");
        let sbd_entry = dir.stat_at(OsStr::new(&sbd))?;
        if sbd_entry.is_some_and(|e| e.kind == FileKind::Symlink) {
            return Err(symlink(dir.path.join(&sbd)));
        }
        let folder = FolderName::from_levels(levels[..=i].iter().copied()).map_err(|e| Error::bad(&dir.path, e))?;
        let holds_mail = on_disk.is_some_and(|e| e.kind == FileKind::File) || written(&folder);
        let (sub, fell_back) =
            children_dir(&enc, sbd_entry.is_some_and(|e| e.kind == FileKind::Dir), holds_mail, layout);
        if fell_back {
            fallback = Some(dir.path.join(&sub));
        }
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
pub fn place_path(
    root: &Path,
    name: &FolderName,
    (layout, written): (MboxLayout, &dyn Fn(&FolderName) -> bool),
) -> PathBuf {
    let levels: Vec<&str> = name.levels().collect();
    let mut p = root.to_path_buf();
    for (i, level) in levels.iter().enumerate() {
        let enc = mutf7::encode(level);
        if i + 1 == levels.len() {
            p.push(enc);
            break;
        }
        let sbd_there = std::fs::symlink_metadata(p.join(format!("{enc}.sbd"))).is_ok_and(|m| m.is_dir());
        let folder = FolderName::from_levels(levels[..=i].iter().copied());
        let holds_mail =
            std::fs::symlink_metadata(p.join(&enc)).is_ok_and(|m| m.is_file()) || folder.is_ok_and(|f| written(&f));
        p.push(children_dir(&enc, sbd_there, holds_mail, layout).0);
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
            let layout = if folder == "B/y" { MboxLayout::Thunderbird } else { MboxLayout::Dovecot };
            let e = place(&root, &name, (layout, &|_| false), Some(None)).unwrap_err().to_string();
            assert!(e.contains(&format!("{}: is a symlink", t.path().join(bad).display())), "{folder}: {e}");
        }
        assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0, "nothing created through a link");
    }

    #[test]
    fn places_follow_thunderbird_and_dovecot_layouts() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        std::fs::create_dir(t.path().join("Kept.sbd")).unwrap();
        for (folder, layout, want) in [
            ("Archive/2019", MboxLayout::Dovecot, "Archive/2019"),
            ("Old/2019", MboxLayout::Thunderbird, "Old.sbd/2019"),
            ("Kept/x", MboxLayout::Dovecot, "Kept.sbd/x"),
            ("Entwürfe", MboxLayout::Dovecot, "Entw&APw-rfe"),
        ] {
            let name = FolderName::parse(folder).unwrap();
            let p = place(&root, &name, (layout, &|_| false), Some(None)).unwrap().unwrap();
            assert_eq!(p.path, t.path().join(want));
            assert_eq!(place_path(t.path(), &name, (layout, &|_| false)), p.path);
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(t.path().join("Old.sbd")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
        let none = place(&root, &FolderName::parse("New/x").unwrap(), (MboxLayout::Dovecot, &|_| false), None).unwrap();
        assert!(none.is_none(), "nothing created");
        assert!(!t.path().join("New").exists());
        // A folder with mail cannot hold subfolders in Dovecot's layout: they go to NAME.sbd/,
        // said (a file there, or a folder this run writes).
        std::fs::write(t.path().join("Mail"), b"").unwrap();
        let p = place(&root, &FolderName::parse("Mail/x").unwrap(), (MboxLayout::Dovecot, &|_| false), Some(None));
        let p = p.unwrap().unwrap();
        assert_eq!((p.path.clone(), p.fallback), (t.path().join("Mail.sbd/x"), Some(t.path().join("Mail.sbd"))));
        let w = |f: &FolderName| f.as_str() == "Sent";
        assert_eq!(
            place_path(t.path(), &FolderName::parse("Sent/x").unwrap(), (MboxLayout::Dovecot, &w)),
            t.path().join("Sent.sbd/x")
        );
        assert!(place(&root, &FolderName::parse("Archive").unwrap(), (MboxLayout::Dovecot, &|_| false), None).is_err());
    }
}
