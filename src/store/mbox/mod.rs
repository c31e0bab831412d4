//! mbox files and directories of mbox files.
//!
//! A directory holds one mbox file per folder; subfolders are directories, and Thunderbird's
//! `NAME.sbd/` directories hold the subfolders of `NAME`. File names are modified UTF-7 where
//! Dovecot wrote them. Index and state files of mail clients are not folders, and neither are
//! mailmover's own temporary files (`.NAME.mailmover-PID.tmp.lock`, and the older
//! `.NAME.mailmover-PID.tmp` a killed run may have left, which starts like an mbox): a target
//! that is read back, or inspected, never shows them as folders, and a sync into an mbox target
//! removes those of runs that are gone ([`remove_leftovers`]).

pub mod date;
pub mod flavour;
pub mod grow;
pub mod headers;
pub mod lock;
pub mod read;
pub mod split;
pub mod target;
pub mod write;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Problem;
use crate::folder::FolderName;
use crate::fsx::{self, FileKind};
use crate::mutf7;

#[derive(Debug, Clone)]
pub struct MboxFolder {
    pub name: FolderName,
    pub file: PathBuf,
}

/// Files in an mbox directory that belong to mail clients, not folders.
fn is_index_file(name: &[u8]) -> bool {
    const SUFFIXES: [&[u8]; 8] = [b".msf", b".dat", b".html", b".json", b".lock", b".sqlite", b".mozmsgs", b".summary"];
    SUFFIXES.iter().any(|s| name.ends_with(s)) || name.starts_with(b"dovecot")
}

/// Dot-entries are client state (Dovecot's `.imap/`, `.subscriptions`), unless the file is an
/// mbox: a folder named `...` is still mail and must not vanish silently.
fn is_hidden_mbox(path: &Path, kind: Option<FileKind>) -> bool {
    use std::io::Read;
    if kind != Some(FileKind::File) {
        return false;
    }
    let mut head = [0u8; 5];
    fsx::open_source_nofollow(path).is_ok_and(|mut f| f.read_exact(&mut head).is_ok() && &head == b"From ")
}

/// Every folder of an mbox directory, sorted by name.
pub fn folders(root: &Path, follow_symlinks: bool, problems: &mut Vec<Problem>) -> Vec<MboxFolder> {
    let mut out = Vec::new();
    walk(root, &mut Vec::new(), follow_symlinks, &mut out, problems, 0);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let mut i = 1;
    while i < out.len() {
        if out[i].name == out[i - 1].name {
            let d = out.remove(i);
            problems
                .push(Problem::new(&d.file, format!("another file is already folder {:?}; skipped", d.name.as_str())));
        } else {
            i += 1;
        }
    }
    out
}

fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    follow: bool,
    out: &mut Vec<MboxFolder>,
    problems: &mut Vec<Problem>,
    depth: usize,
) {
    if depth > 64 {
        problems.push(Problem::new(dir, "folder tree deeper than 64 levels; not read further"));
        return;
    }
    let entries = match fsx::list_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(e.problem());
            return;
        }
    };
    for (raw, kind) in entries {
        let path = dir.join(std::ffi::OsStr::from_bytes(&raw));
        if is_index_file(&raw)
            || fsx::temp_pid(&raw).is_some()
            || (raw.starts_with(b".") && !is_hidden_mbox(&path, kind))
        {
            continue;
        }
        let kind = match kind {
            Some(FileKind::Symlink) if follow => {
                if path.is_dir() {
                    Some(FileKind::Dir)
                } else if path.is_file() {
                    Some(FileKind::File)
                } else {
                    None
                }
            }
            Some(FileKind::Symlink) => {
                problems.push(Problem::refused(&path, "symlink not followed (use --follow-symlinks)"));
                continue;
            }
            k => k,
        };
        let Ok(s) = std::str::from_utf8(&raw) else {
            problems.push(Problem::new(&path, "file name is not valid UTF-8; skipped"));
            continue;
        };
        match kind {
            Some(FileKind::File) => {
                let name = FolderName::from_levels(
                    prefix.iter().map(String::as_str).chain(std::iter::once(mutf7::decode_lenient(s).as_str())),
                );
                match name {
                    Ok(name) => out.push(MboxFolder { name, file: path }),
                    Err(why) => problems.push(Problem::new(&path, format!("invalid folder name: {why}; skipped"))),
                }
            }
            Some(FileKind::Dir) => {
                let level = s.strip_suffix(".sbd").unwrap_or(s);
                prefix.push(mutf7::decode_lenient(level));
                walk(&path, prefix, follow, out, problems, depth + 1);
                prefix.pop();
            }
            Some(FileKind::Other) => {
                problems.push(Problem::refused(&path, "not a regular file (FIFO, socket or device); not read"))
            }
            _ => {}
        }
    }
}

/// The folder names of an mbox directory target, for `--automap`: listed through its root
/// opened at the start and the directories opened from it, never through a link. Sorted.
pub fn folder_names_in(root: &fsx::Dir) -> Vec<FolderName> {
    let mut out = Vec::new();
    names_in(root, &mut Vec::new(), &mut out, 0);
    out.sort();
    out.dedup();
    out
}

fn names_in(dir: &fsx::Dir, prefix: &mut Vec<String>, out: &mut Vec<FolderName>, depth: usize) {
    use std::io::Read;
    if depth > 64 {
        return;
    }
    for (raw, kind) in dir.list().unwrap_or_default() {
        let name = std::ffi::OsStr::from_bytes(&raw);
        let kind = kind.or_else(|| dir.stat_at(name).ok().flatten().map(|e| e.kind));
        // As `is_hidden_mbox`, through the directory: a regular file only, never waited on.
        let hidden_mbox = || {
            let mut head = [0u8; 5];
            kind == Some(FileKind::File)
                && dir.open_file(name, false).ok().flatten().is_some_and(|mut f| f.read_exact(&mut head).is_ok())
                && &head == b"From "
        };
        if is_index_file(&raw) || fsx::temp_pid(&raw).is_some() || (raw.starts_with(b".") && !hidden_mbox()) {
            continue;
        }
        let Ok(s) = std::str::from_utf8(&raw) else { continue };
        match kind {
            Some(FileKind::File) => {
                let levels = prefix.iter().map(String::as_str);
                if let Ok(n) = FolderName::from_levels(levels.chain(std::iter::once(mutf7::decode_lenient(s).as_str())))
                {
                    out.push(n);
                }
            }
            Some(FileKind::Dir) => {
                let Ok(Some(sub)) = dir.open(name) else { continue };
                prefix.push(mutf7::decode_lenient(s.strip_suffix(".sbd").unwrap_or(s)));
                names_in(&sub, prefix, out, depth + 1);
                prefix.pop();
            }
            _ => {}
        }
    }
}

/// Removes the temporary files of runs that are gone ([`fsx::Dir::remove_leftovers`]) from an
/// mbox target: every directory of an mbox directory tree (reached without following a link),
/// or, for an mbox file, those of that file beside it.
pub fn remove_leftovers(target: &Path) {
    let Ok(md) = std::fs::symlink_metadata(target) else { return };
    if md.is_dir() {
        if let Ok(root) = fsx::Dir::open_root(target) {
            remove_leftovers_in(&root);
        }
        return;
    }
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else { return };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b".mailmover-");
    if let Ok(dir) = fsx::Dir::open_root(parent) {
        dir.remove_leftovers_where(&|n| n.starts_with(&prefix));
    }
}

/// [`remove_leftovers`] of an mbox directory target whose root was opened at the start.
pub fn remove_leftovers_in(root: &fsx::Dir) {
    remove_leftovers_below(root, 0);
}

fn remove_leftovers_below(dir: &fsx::Dir, depth: usize) {
    dir.remove_leftovers();
    if depth >= 64 {
        return;
    }
    for (raw, kind) in dir.list().unwrap_or_default() {
        if kind == Some(FileKind::Dir)
            && let Ok(Some(sub)) = dir.open(std::ffi::OsStr::from_bytes(&raw))
        {
            remove_leftovers_below(&sub, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thunderbird_and_dovecot_layouts() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("Inbox.sbd/Bugs.sbd")).unwrap();
        std::fs::create_dir_all(r.join("Archive")).unwrap();
        for f in [
            "Inbox",
            "Inbox.msf",
            "Inbox.sbd/Bugs",
            "Inbox.sbd/Bugs.sbd/Old",
            "Archive/2019",
            "Entw&APw-rfe",
            ".imap",
            "popstate.dat",
        ] {
            std::fs::write(r.join(f), b"").unwrap();
        }
        std::fs::write(r.join("..."), b"From a Mon Jan  2 15:04:05 2006\n\nx\n").unwrap();
        // Issue 18: temporary files of mailmover (a killed run's) are not folders.
        for f in [".Archive.sbd.mailmover-7.tmp", ".Inbox.mailmover-99999.tmp.lock", "Archive/.2019.mailmover-3"] {
            std::fs::write(r.join(f), b"From a Mon Jan  2 15:04:05 2006\n\nx\n").unwrap();
        }
        let mut p = Vec::new();
        let names: Vec<String> = folders(r, false, &mut p).into_iter().map(|f| f.name.to_string()).collect();
        assert_eq!(names, vec!["...", "Archive/2019", "Entwürfe", "INBOX", "INBOX/Bugs", "INBOX/Bugs/Old"]);
        assert!(p.is_empty());
    }
}
