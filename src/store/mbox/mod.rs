//! mbox files and directories of mbox files.
//!
//! A directory holds one mbox file per folder; subfolders are directories, and Thunderbird's
//! `NAME.sbd/` directories hold the subfolders of `NAME`. File names are modified UTF-7 where
//! Dovecot wrote them. Index and state files of mail clients are not folders.

pub mod date;
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
        if is_index_file(&raw) || (raw.starts_with(b".") && !is_hidden_mbox(&path, kind)) {
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
                problems.push(Problem::new(&path, "symlink not followed (use --follow-symlinks)"));
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
                problems.push(Problem::new(&path, "not a regular file (FIFO, socket or device); not read"))
            }
            _ => {}
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
        let mut p = Vec::new();
        let names: Vec<String> = folders(r, false, &mut p).into_iter().map(|f| f.name.to_string()).collect();
        assert_eq!(names, vec!["...", "Archive/2019", "Entwürfe", "INBOX", "INBOX/Bugs", "INBOX/Bugs/Old"]);
        assert!(p.is_empty());
    }
}
