//! Discovery of a cPanel account tree (FORMATS.md §3.1): the default account's mailbox at
//! `HOME/mail`, one mailbox per `HOME/mail/DOMAIN/LOCALPART`, the email-archive pseudo
//! mailboxes `HOME/mail/archive/DOMAIN`, the account's domains, and which mailboxes are
//! Maildir, legacy mbox (UW-IMAP `inbox` plus folder files) or Dovecot mdbox.
//!
//! Only directories are looked at here; messages are read by the store readers. An mdbox
//! mailbox is recorded, not read: the caller refuses the run before anything is written,
//! because half an account is worse than a clear error. Symlinks are never followed; the
//! `mail/.LOCALPART@DOMAIN` compatibility links are skipped silently (they point inside the
//! account), any other symlink is reported.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::mapping::{Mapping, valid_domain, valid_local};
use crate::error::{Error, Problem, Result};
use crate::fsx::{self, FileKind};
use crate::spec::{Kind, Store};
use crate::store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxFormat {
    Maildir,
    /// Legacy cPanel mbox: `inbox` and folder files in the mailbox directory.
    Mbox,
}

/// One mailbox of the account.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// `(local part, domain)`; `None` for the default account (`HOME/mail`).
    pub address: Option<(String, String)>,
    /// `HOME/mail/archive/DOMAIN` (local part `_archive`).
    pub archive: bool,
    pub dir: PathBuf,
    pub format: BoxFormat,
}

impl Mailbox {
    /// The address as shown and as `--mailbox` names it; empty for the default account.
    pub fn label(&self) -> String {
        match &self.address {
            Some((l, d)) => format!("{l}@{d}"),
            None => String::new(),
        }
    }

    /// The mapped address in the target.
    pub fn target_address(&self, m: &Mapping) -> Option<(String, String)> {
        let (l, d) = self.address.as_ref()?;
        Some(if self.archive { (l.clone(), m.domain(d)) } else { m.address(l, d) })
    }

    /// Path components of the target mailbox below the target home.
    pub fn target_rel(&self, m: &Mapping) -> Vec<String> {
        match self.target_address(m) {
            None => vec!["mail".into()],
            Some((_, d)) if self.archive => vec!["mail".into(), "archive".into(), d],
            Some((l, d)) => vec!["mail".into(), d, l],
        }
    }

    pub fn store(&self) -> Store {
        let kind = if self.format == BoxFormat::Mbox { Kind::Mbox } else { Kind::Maildir };
        Store { kind, path: self.dir.clone(), explicit: true }
    }
}

#[derive(Debug, Default)]
pub struct Account {
    pub home: PathBuf,
    pub mailboxes: Vec<Mailbox>,
    /// Mail domains of the account (from `mail/` and `etc/`), sorted.
    pub domains: Vec<String>,
    /// Mailboxes stored in Dovecot mdbox: (address or "default account", path).
    pub mdbox: Vec<(String, PathBuf)>,
    /// Folder names the Maildir reader would see in `HOME/mail` that are really the domain
    /// directories (fs-layout look-alikes): excluded from the default account's folders.
    pub default_excludes: Vec<String>,
    pub problems: Vec<Problem>,
}

fn kind_of(dir: &Path, name: &[u8]) -> Option<FileKind> {
    std::fs::symlink_metadata(dir.join(OsStr::from_bytes(name))).ok().map(|m| FileKind::of(m.file_type()))
}

/// cPanel's marker holds one word; more is not one.
const MAX_FORMAT_BYTES: u64 = 4096;

/// Whether the mailbox at `dir` is mdbox. The marker is the user's file: a link, FIFO or huge
/// file there is not read (never followed, never waited on) but reported, and the mailbox is
/// then taken by its `storage/` directory, as when there is no marker.
fn is_mdbox(dir: &Path, problems: &mut Vec<Problem>) -> bool {
    let marker = dir.join("mailbox_format.cpanel");
    match fsx::read_own_file(&marker, MAX_FORMAT_BYTES) {
        Ok(Some(b)) => return String::from_utf8_lossy(&b).trim() == "mdbox",
        Ok(None) => {}
        Err(e) => problems.push(Problem::new(&marker, format!("{}; not read", e.problem().reason))),
    }
    std::fs::symlink_metadata(dir.join("storage")).is_ok_and(|m| m.is_dir())
}

fn has_inbox_file(dir: &Path) -> bool {
    fsx::list_dir(dir)
        .is_ok_and(|v| v.iter().any(|(n, k)| n.eq_ignore_ascii_case(b"inbox") && *k == Some(FileKind::File)))
}

fn classify(dir: &Path) -> Option<BoxFormat> {
    if crate::store::maildir::read::is_maildir(dir) {
        Some(BoxFormat::Maildir)
    } else if has_inbox_file(dir) {
        Some(BoxFormat::Mbox)
    } else {
        None
    }
}

/// Reads the layout of the account at `home`.
pub fn discover(home: &Path) -> Result<Account> {
    let mut acc = Account { home: home.to_path_buf(), ..Default::default() };
    let mail = home.join("mail");
    let mut domains = std::collections::BTreeSet::new();
    if std::fs::symlink_metadata(&mail).is_ok_and(|m| m.file_type().is_symlink()) {
        acc.problems.push(Problem::refused(&mail, "symlink not followed (use --follow-symlinks)"));
    } else if mail.is_dir() {
        scan_mail(&mail, &mut acc, &mut domains)?;
    }
    if let Ok(entries) = fsx::list_dir(&home.join("etc")) {
        for (raw, kind) in entries {
            if let (Ok(name), Some(FileKind::Dir)) = (std::str::from_utf8(&raw), kind)
                && valid_domain(name)
                && name.contains('.')
            {
                domains.insert(name.to_string());
            }
        }
    }
    acc.domains = domains.into_iter().collect();
    Ok(acc)
}

fn scan_mail(mail: &Path, acc: &mut Account, domains: &mut std::collections::BTreeSet<String>) -> Result<()> {
    let entries = fsx::list_dir(mail)?;
    let has_dot_folder = entries.iter().any(|(n, k)| {
        n.starts_with(b".")
            && *k == Some(FileKind::Dir)
            && crate::store::maildir::read::is_maildir(&mail.join(OsStr::from_bytes(n)))
    });
    if is_mdbox(mail, &mut acc.problems) {
        acc.mdbox.push(("default account".into(), mail.to_path_buf()));
    } else if let Some(f) = classify(mail).or(has_dot_folder.then_some(BoxFormat::Maildir)) {
        acc.mailboxes.push(Mailbox { address: None, archive: false, dir: mail.to_path_buf(), format: f });
        default_excludes(mail, f, acc);
    }
    for (raw, kind) in entries {
        if raw.starts_with(b".") || matches!(raw.as_slice(), b"cur" | b"new" | b"tmp") {
            continue;
        }
        let path = mail.join(OsStr::from_bytes(&raw));
        match kind.or_else(|| kind_of(mail, &raw)) {
            Some(FileKind::Dir) => {}
            Some(FileKind::Symlink) => {
                acc.problems.push(Problem::refused(&path, "symlink not followed (use --follow-symlinks)"));
                continue;
            }
            _ => continue,
        }
        let Ok(name) = std::str::from_utf8(&raw) else { continue };
        if name == "archive" {
            for (d, dk) in fsx::list_dir(&path).unwrap_or_default() {
                let Ok(dom) = std::str::from_utf8(&d) else { continue };
                let dpath = path.join(dom);
                if dk == Some(FileKind::Dir) && valid_domain(dom) && crate::store::maildir::read::is_maildir(&dpath) {
                    acc.mailboxes.push(Mailbox {
                        address: Some(("_archive".into(), dom.into())),
                        archive: true,
                        dir: dpath,
                        format: BoxFormat::Maildir,
                    });
                }
            }
            continue;
        }
        if !(valid_domain(name) && name.contains('.')) {
            continue;
        }
        domains.insert(name.to_string());
        for (l, lk) in fsx::list_dir(&path)? {
            let lpath = path.join(OsStr::from_bytes(&l));
            if l.starts_with(b".") || l.starts_with(b"@") || l.as_slice() == b"boxtrapper" {
                continue;
            }
            match lk.or_else(|| kind_of(&path, &l)) {
                Some(FileKind::Dir) => {}
                Some(FileKind::Symlink) => {
                    acc.problems.push(Problem::refused(&lpath, "symlink not followed (use --follow-symlinks)"));
                    continue;
                }
                _ => continue,
            }
            let Some(local) = std::str::from_utf8(&l).ok().filter(|s| valid_local(s)) else {
                acc.problems.push(Problem::new(&lpath, "not a valid local part; mailbox skipped"));
                continue;
            };
            let addr = format!("{local}@{name}");
            if is_mdbox(&lpath, &mut acc.problems) {
                acc.mdbox.push((addr, lpath));
            } else if let Some(format) = classify(&lpath) {
                acc.mailboxes.push(Mailbox {
                    address: Some((local.into(), name.into())),
                    archive: false,
                    dir: lpath,
                    format,
                });
            }
        }
    }
    acc.mailboxes.sort_by_key(|b| b.label());
    Ok(())
}

/// The folders the store reader finds under `mail/`'s plain (non-dot) directories: those are
/// the domains' mailboxes, not folders of the default account.
fn default_excludes(mail: &Path, f: BoxFormat, acc: &mut Account) {
    let format = if f == BoxFormat::Mbox { store::Format::Mbox } else { store::Format::Maildir };
    let Ok((folders, _)) = store::source_folders(mail, format, false) else { return };
    for sf in folders {
        let Ok(rel) = sf.loc.path().strip_prefix(mail) else { continue };
        let Some(first) = rel.components().next() else { continue };
        let first = first.as_os_str();
        let plain_dir = !first.as_bytes().starts_with(b".")
            && std::fs::symlink_metadata(mail.join(first)).is_ok_and(|m| m.is_dir());
        if plain_dir {
            acc.default_excludes.push(sf.name.as_str().to_string());
        }
    }
}

/// The mdbox error: names every such mailbox and what to do.
pub fn mdbox_error(list: &[(String, PathBuf)]) -> Error {
    let names: Vec<String> = list.iter().map(|(a, p)| format!("{a} ({})", p.display())).collect();
    let first = list.first().map(|(_, p)| p.clone()).unwrap_or_default();
    Error::bad(
        first,
        format!(
            "stored in Dovecot mdbox, which mailmover does not read: {}; convert the account to Maildir first (e.g. `doveadm sync -u USER maildir:~/mail-maildir`) — nothing was written",
            names.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir(p: &Path) {
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(p.join(s)).unwrap();
        }
    }

    #[test]
    fn finds_boxes_and_skips_domain_dirs_in_default() {
        let t = tempfile::tempdir().unwrap();
        let h = t.path();
        maildir(&h.join("mail"));
        maildir(&h.join("mail/.Sent"));
        maildir(&h.join("mail/ex.example/a"));
        maildir(&h.join("mail/ex.example/a/.Sent"));
        std::fs::create_dir_all(h.join("mail/ex.example/@pwcache")).unwrap();
        std::fs::create_dir_all(h.join("mail/ex.example/old")).unwrap();
        std::fs::write(h.join("mail/ex.example/old/inbox"), b"").unwrap();
        std::fs::create_dir_all(h.join("mail/ex.example/mdb/storage")).unwrap();
        std::os::unix::fs::symlink("ex.example/a", h.join("mail/.a@ex.example")).unwrap();
        std::fs::create_dir_all(h.join("etc/other.example")).unwrap();
        let acc = discover(h).unwrap();
        let labels: Vec<String> = acc.mailboxes.iter().map(Mailbox::label).collect();
        assert_eq!(labels, vec!["", "a@ex.example", "old@ex.example"]);
        assert_eq!(acc.mailboxes[2].format, BoxFormat::Mbox);
        assert_eq!(acc.domains, vec!["ex.example", "other.example"]);
        assert_eq!(acc.mdbox.len(), 1);
        assert_eq!(acc.default_excludes, vec!["ex.example/a"]);
        assert!(acc.problems.is_empty(), "{:?}", acc.problems);
    }
}
