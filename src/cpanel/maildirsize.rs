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
use std::path::Path;

use crate::fsx::{self, FileKind};

/// `(bytes, messages)` of the mailbox at `root`.
pub fn usage(root: &Path) -> (u64, u64) {
    let mut dirs = vec![root.to_path_buf()];
    for (raw, kind) in fsx::list_dir(root).unwrap_or_default() {
        if raw.starts_with(b".") && raw.len() > 1 && raw != b".." && kind == Some(FileKind::Dir) {
            dirs.push(root.join(OsStr::from_bytes(&raw)));
        }
    }
    let (mut bytes, mut count) = (0u64, 0u64);
    for d in dirs {
        for sub in ["new", "cur"] {
            let sd = d.join(sub);
            // A linked cur/ or new/ is someone else's files: not counted (the sync refuses it).
            if std::fs::symlink_metadata(&sd).is_ok_and(|m| m.file_type().is_symlink()) {
                continue;
            }
            for (raw, _) in fsx::list_dir(&sd).unwrap_or_default() {
                if raw.starts_with(b".") {
                    continue;
                }
                let p = sd.join(OsStr::from_bytes(&raw));
                if let Ok(md) = std::fs::symlink_metadata(&p)
                    && md.is_file()
                {
                    bytes += md.len();
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
        let r = t.path();
        for d in ["cur", "new", ".Sent/cur", "dom.example/a/cur"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("cur/1:2,S"), b"12345").unwrap();
        std::fs::write(r.join("new/2"), b"123").unwrap();
        std::fs::write(r.join(".Sent/cur/3:2,S"), b"1").unwrap();
        std::fs::write(r.join("dom.example/a/cur/4"), b"1234567").unwrap();
        std::os::unix::fs::symlink(r.join("cur/1:2,S"), r.join("new/link")).unwrap();
        assert_eq!(usage(r), (9, 3));
        assert_eq!(render("100S", 9, 3), "100S\n           9            3\n");
    }
}
