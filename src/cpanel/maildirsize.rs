//! The Maildir++ quota file `maildirsize` (FORMATS.md §2.7) of a target mailbox, recomputed
//! from scratch after a sync: line 1 is the quota definition, line 2 the totals of every
//! message file in `new/` and `cur/` of the root and of each `.Folder/`.
//!
//! A delta-appending update would carry over whatever the old file got wrong; a recalculated
//! file is what Dovecot and Courier write themselves when theirs is missing or too big. The
//! quota line is the target's own, else the source mailbox's, else `etc/DOMAIN/quota`'s.
//! Symlinks are not followed (they are not part of the mailbox).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::fsx::{Dir, FileKind};

/// `(bytes, messages)` of the opened mailbox `root`: its `.Folder/`s, their `new/` and `cur/`
/// and their files are opened, listed and looked at relative to it, never through a link.
pub fn usage(root: &Dir) -> (u64, u64) {
    let mut dirs = vec![root.try_clone().ok()];
    for (raw, kind) in root.list().unwrap_or_default() {
        if raw.starts_with(b".") && raw.len() > 1 && raw != b".." && kind == Some(FileKind::Dir) {
            dirs.push(root.open(OsStr::from_bytes(&raw)).ok().flatten());
        }
    }
    let (mut bytes, mut count) = (0u64, 0u64);
    for d in dirs.into_iter().flatten() {
        for sub in ["new", "cur"] {
            // A linked cur/ or new/ is someone else's files: not counted (the sync refuses it).
            let Ok(Some(sd)) = d.open(OsStr::new(sub)) else { continue };
            for (raw, _) in sd.list().unwrap_or_default() {
                if raw.starts_with(b".") {
                    continue;
                }
                if let Ok(e) = sd.entry_at(OsStr::from_bytes(&raw))
                    && e.kind == FileKind::File
                {
                    bytes += e.size;
                    count += 1;
                }
            }
        }
    }
    (bytes, count)
}

/// The quota definition line of a `maildirsize` text, if it has a valid one (`<n>S` and/or
/// `<n>C`, comma-separated).
pub fn quota_line(text: &str) -> Option<String> {
    let first = text.lines().next()?.trim();
    let ok = !first.is_empty()
        && first.split(',').all(|p| {
            let p = p.trim();
            p.len() > 1
                && (p.ends_with('S') || p.ends_with('C'))
                && p.get(..p.len() - 1).is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        });
    ok.then(|| first.to_string())
}

/// The file: quota line, then one totals line.
pub fn render(quota: &str, bytes: u64, count: u64) -> String {
    format!("{quota}\n{bytes:>12} {count:>12}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_lines() {
        assert_eq!(quota_line("1048576000S\n  12 1\n").as_deref(), Some("1048576000S"));
        assert_eq!(quota_line("10000000S,1000C\n").as_deref(), Some("10000000S,1000C"));
        assert_eq!(quota_line("garbage\n"), None);
        assert_eq!(quota_line(""), None);
    }

    #[test]
    fn usage_counts_root_and_dot_folders_only() {
        let t = tempfile::tempdir().unwrap();
        let mb = t.path().join("mb");
        let r = mb.as_path();
        for d in ["cur", "new", ".Sent/cur", "dom.example/a/cur"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("cur/1:2,S"), b"12345").unwrap();
        std::fs::write(r.join("new/2"), b"123").unwrap();
        std::fs::write(r.join(".Sent/cur/3:2,S"), b"1").unwrap();
        std::fs::write(r.join("dom.example/a/cur/4"), b"1234567").unwrap();
        std::os::unix::fs::symlink(r.join("cur/1:2,S"), r.join("new/link")).unwrap();
        std::fs::create_dir_all(r.join("elsewhere/cur")).unwrap();
        std::fs::write(r.join("elsewhere/cur/5"), b"123456789").unwrap();
        std::os::unix::fs::symlink(r.join("elsewhere"), r.join(".Linked")).unwrap();
        std::os::unix::fs::symlink(r.join("elsewhere/cur"), r.join(".Sent/new")).unwrap();
        let root = Dir::open_root(r).unwrap();
        assert_eq!(usage(&root), (9, 3));
        // Counted through the opened mailbox: its path swapped for a link meanwhile changes nothing.
        let moved = t.path().join("moved");
        std::fs::rename(r, &moved).unwrap();
        std::os::unix::fs::symlink(moved.join("elsewhere"), r).unwrap();
        assert_eq!(usage(&root), (9, 3));
        assert_eq!(render("100S", 9, 3), "100S\n           9            3\n");
    }
}
