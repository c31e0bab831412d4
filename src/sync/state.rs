//! Folder sync state: what makes an unchanged re-run cost a few `stat` calls per folder.
//!
//! After a folder synced with no problem, a stamp of both sides is stored beside the target
//! folder: the source mbox file's inode, size and mtime, or the mtimes of a source Maildir's
//! `new/`, `cur/` and `dovecot-keywords` (a directory's mtime changes with every file added,
//! removed or renamed in it — the same signal Dovecot uses to decide whether to rescan a
//! Maildir); the target's, taken after the run; and the options that shape the result. When
//! the next run finds the same stamp, neither side has changed and the folder is not read.
//! `--no-cache` ignores and does not write it. Age filters depend on the clock, so runs with
//! them always read everything. A state saved by a `--no-fsync` run is unverified: a power cut
//! could have torn a copy without changing any directory, so a run after the machine restarted
//! or the file system was mounted again first compares every target file's size with its `,S=`
//! (a `stat` each, no reads) before it trusts the stamps. Within the same boot and mount no
//! copy can be torn: readers see every written byte whether or not it has reached the disk.
//!
//! The state is data a mailbox owner can replace: it is read only from a regular file below
//! [`MAX_STATE_BYTES`] (never through a symlink, never from a FIFO: [`fsx::Dir::open_own_file`]),
//! and it names the folder it was written for ([`folder_in`]); one found beside another folder,
//! or written before states named their folder, is ignored and written anew. The state and the
//! target's stamp are read through the directory that holds them, opened from the target root
//! (opened once at the start) without following a link ([`fsx::Dir::find_below`]).

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, StatxFlags};
use serde::{Deserialize, Serialize};

use super::SyncOptions;
use crate::error::Problem;
use crate::folder::FolderName;
use crate::fsx;
use crate::report::Counts;
use crate::store::Location;
use crate::store::mbox::flavour::Flavour;

pub const STATE_FILE: &str = "mailmover-state";
/// A state is a few hundred bytes.
const MAX_STATE_BYTES: u64 = 1 << 20;

fn meta_stamp(p: &Path) -> String {
    match std::fs::symlink_metadata(p) {
        Ok(m) => format!("{}:{}:{}:{}", m.ino(), m.size(), m.mtime(), m.mtime_nsec()),
        Err(_) => "-".into(),
    }
}

fn maildir_stamp(dir: &Path) -> String {
    ["new", "cur", "dovecot-keywords"].iter().map(|s| meta_stamp(&dir.join(s))).collect::<Vec<_>>().join(",")
}

/// Stamp of a source folder, taken before it is read; `None` when a part changed in the last
/// two seconds: file-system timestamps are coarse, so a change right after the stamp could
/// leave it the same (Dovecot applies the same rule to Maildir directories).
pub fn source_stamp(loc: &Location) -> Option<String> {
    let paths: Vec<PathBuf> = match loc {
        Location::MboxFile(p) => vec![p.clone()],
        Location::Maildir(d) => ["new", "cur", "dovecot-keywords"].iter().map(|s| d.join(s)).collect(),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if paths.iter().any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.mtime() >= now - 2)) {
        return None;
    }
    Some(match loc {
        Location::MboxFile(p) => format!("mbox {}", meta_stamp(p)),
        Location::Maildir(d) => format!("maildir {}", maildir_stamp(d)),
    })
}

/// Stamp of a target folder below the target `root` (opened; `None`: not there): a Maildir
/// folder directory, or an mbox file. Taken through the directory opened from `root`: a folder
/// reached through a link has none (`-`, which no saved stamp matches).
pub fn target_stamp(root: Option<&fsx::Dir>, target: &Path, mbox: bool) -> String {
    let find = |dir: &Path| root.and_then(|r| r.find_below(dir).ok().flatten());
    let stamp = |d: Option<&fsx::Dir>, name: &OsStr| match d.and_then(|d| d.stat_at(name).ok().flatten()) {
        Some(e) => format!("{}:{}:{}:{}", e.ino, e.size, e.mtime, e.mtime_nsec),
        None => "-".into(),
    };
    if mbox {
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else { return "mbox -".into() };
        let dir = find(parent);
        return format!("mbox {}", stamp(dir.as_ref(), name));
    }
    let dir = find(target);
    let parts: Vec<String> =
        ["new", "cur", "dovecot-keywords"].iter().map(|n| stamp(dir.as_ref(), OsStr::new(n))).collect();
    format!("maildir {}", parts.join(","))
}

/// The options that change what a sync writes; `None` when the result depends on the clock.
pub fn options_stamp(opts: &SyncOptions, src: &Path, tn: &FolderName) -> Option<String> {
    let f = &opts.filters;
    if f.min_age_days.is_some() || f.max_age_days.is_some() {
        return None;
    }
    Some(format!(
        "v2 {:?} {:?} {} {:?} {:?} {} {} {:?} {} {:?} {:?}{}",
        opts.read.variant,
        opts.read.zone,
        opts.read.keep_internal_headers,
        opts.layout,
        opts.deletion,
        opts.max_delete.is_some(),
        opts.follow_symlinks,
        opts.owner,
        f.max_size.unwrap_or(0),
        src,
        tn.as_str(),
        // Added only when not the default: stamps of earlier runs stay valid.
        match opts.identity {
            super::IdentityBy::Content => "",
            super::IdentityBy::Headers => " identity=headers",
        }
    ))
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
pub struct Saved {
    pub options: String,
    pub source: String,
    pub target: String,
    pub counts: Counts,
    /// The run that saved this synced its data (or a later run checked every file's size):
    /// no copy can be torn, the stamps alone decide.
    #[serde(default)]
    pub verified: bool,
    /// For an unverified state: the [`write_epoch`] its writes belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The target folder this state belongs to ([`folder_in`]); a state without it is not used.
    #[serde(default)]
    pub folder: Option<String>,
    /// Read under an mbox state's old name: to be written under the new one.
    #[serde(skip)]
    pub old_name: bool,
    /// The flavour an mbox target was last written in: how it is read back (a server may
    /// have added Content-Length and X-IMAPbase to an mboxrd file since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbox_format: Option<String>,
}

impl Saved {
    /// A state that records only an mbox's flavour: its stamps match nothing.
    pub fn format_only(target: &Path) -> Saved {
        Saved {
            options: String::new(),
            source: String::new(),
            target: String::new(),
            counts: Counts::default(),
            verified: false,
            epoch: write_epoch(target),
            folder: None,
            old_name: false,
            mbox_format: None,
        }
    }

    /// Whether the target's copies are known whole: synced, checked, or written in this boot
    /// and mount of its file system.
    pub fn whole(&self, target: &Path) -> bool {
        self.verified || self.epoch.as_ref().is_some_and(|e| write_epoch(target).as_ref() == Some(e))
    }
}

/// This boot of the machine and this mount of the file system holding `target`: unsynced
/// writes can only be lost across a change of either. `None` when the kernel cannot tell (no
/// boot id, or no unique mount id, which Linux gives since 6.8; a plain mount id can be reused
/// by the next mount).
pub fn write_epoch(target: &Path) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    // rustix has no name for this flag yet, but passes it on.
    let unique = StatxFlags::from_bits_retain(libc::STATX_MNT_ID_UNIQUE);
    let st = rustix::fs::statx(rustix::fs::CWD, target, AtFlags::SYMLINK_NOFOLLOW, unique).ok()?;
    (st.stx_mask & unique.bits() != 0).then(|| format!("{} {}", boot.trim(), st.stx_mnt_id))
}

/// Where the state of a target folder lives: inside a Maildir folder's directory (which
/// Dovecot, Courier and Python's `mailbox` ignore), or next to an mbox file as a dot-file
/// ending in `.lock`: mutt and Thunderbird do not list dot-files, and Dovecot's mbox lister
/// skips names ending in `.lock` (any other file beside an mbox is a mailbox to it).
pub fn state_path(target: &Path, mbox: bool) -> PathBuf {
    if mbox {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        target.with_file_name(format!(".{name}.{STATE_FILE}.lock"))
    } else {
        target.join(STATE_FILE)
    }
}

/// The name an mbox target's state had before it ended in `.lock` (Dovecot listed it as a
/// mailbox): read when the new one is missing, removed once the new one is written.
pub fn old_mbox_state_name(target: &Path) -> Option<std::ffi::OsString> {
    let name = target.file_name()?.to_string_lossy().into_owned();
    Some(format!(".{name}.{STATE_FILE}").into())
}

/// The identity of a target folder, from the opened directory `dir` that holds its state: a
/// Maildir folder's own directory, or an mbox file's directory and the file's name (see
/// [`fsx::Dir::folder_id`]).
pub fn folder_in(dir: &fsx::Dir, target: &Path, mbox: bool) -> Option<String> {
    if !mbox {
        return dir.folder_id();
    }
    let name = target.file_name()?.as_encoded_bytes().escape_ascii().to_string();
    Some(format!("{} {name}", dir.folder_id()?))
}

/// The state of the target folder `target` below the target `root`: `Ok(None)` when there is
/// none usable (missing, garbled, of an older version, or of another folder); `Err` when the
/// file was refused.
pub fn load(root: Option<&fsx::Dir>, target: &Path, mbox: bool) -> Result<Option<Saved>, Problem> {
    let path = state_path(target, mbox);
    let refused = |why: String| Problem::new(&path, format!("{why}; ignored, written anew"));
    let (Some(dir), Some(root)) = (path.parent(), root) else { return Ok(None) };
    match root.find_below(dir) {
        Ok(Some(d)) => load_in(&d, target, mbox).map_err(refused),
        Ok(None) => Ok(None),
        Err(e) => Err(refused(e.problem().reason)),
    }
}

/// The flavour the mbox `target` (in the opened directory `dir`) was last written in, as its
/// state says; the state's other fields need not match.
pub fn recorded_mbox_format(dir: &fsx::Dir, target: &Path) -> Option<Flavour> {
    load_in(dir, target, true).ok().flatten()?.mbox_format.as_deref().and_then(Flavour::from_name)
}

/// [`load`] from the opened directory `dir` that holds the state: read through its
/// descriptor, and checked against its identity.
fn load_in(dir: &fsx::Dir, target: &Path, mbox: bool) -> Result<Option<Saved>, String> {
    let name = state_path(target, mbox).file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let (text, old_name) = match dir.read_own_file(&name, MAX_STATE_BYTES) {
        Ok(Some(t)) => (t, false),
        Ok(None) => match old_mbox_state_name(target).filter(|_| mbox) {
            Some(old) => match dir.read_own_file(&old, MAX_STATE_BYTES) {
                Ok(Some(t)) => (t, true),
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.problem().reason),
            },
            None => return Ok(None),
        },
        Err(e) => return Err(e.problem().reason),
    };
    let Ok(saved) = serde_json::from_slice::<Saved>(&text) else { return Ok(None) };
    let saved = Saved { old_name, ..saved };
    match (&saved.folder, folder_in(dir, target, mbox)) {
        (Some(f), Some(here)) if *f == here => Ok(Some(saved)),
        (Some(_), _) => Err("the state of another folder".into()),
        (None, _) => Ok(None),
    }
}

/// The counts an unchanged folder reports: everything there, nothing done.
pub fn unchanged_counts(saved: &Counts) -> Counts {
    let filtered: u64 = saved.skipped_filtered.values().sum();
    Counts {
        folders: 1,
        messages_source: saved.messages_source,
        messages_target: saved.messages_target,
        skipped_existing: saved.messages_source.saturating_sub(filtered),
        skipped_filtered: saved.skipped_filtered.clone(),
        duplicates_source: saved.duplicates_source,
        matched_by_headers: saved.matched_by_headers,
        pseudo_skipped: saved.pseudo_skipped,
        expunged_kept: saved.expunged_kept,
        date_fallbacks: saved.date_fallbacks.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_epoch_is_per_mount() {
        let t = tempfile::tempdir().unwrap();
        let (Some(a), Some(b)) = (write_epoch(t.path()), write_epoch(t.path())) else {
            eprintln!("no unique mount id on this kernel");
            return;
        };
        assert_eq!(a, b);
        if let Some(p) = write_epoch(Path::new("/proc/self")) {
            assert_ne!(a, p, "another mount, another epoch");
            assert_eq!(a.split(' ').next(), p.split(' ').next(), "the same boot");
        }
    }

    #[test]
    fn stamps_change_with_the_directory() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir(d.join(s)).unwrap();
        }
        let loc = Location::Maildir(d.to_path_buf());
        assert_eq!(source_stamp(&loc), None, "just created: not trusted yet");
        let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        for s in ["cur", "new"] {
            filetime::set_file_mtime(d.join(s), old).unwrap();
        }
        let a = source_stamp(&loc).unwrap();
        assert_eq!(Some(a.clone()), source_stamp(&loc));
        std::fs::write(d.join("cur/x:2,S"), b"m").unwrap();
        filetime::set_file_mtime(d.join("cur"), filetime::FileTime::from_unix_time(1_600_000_001, 0)).unwrap();
        assert_ne!(Some(a), source_stamp(&loc));
    }

    /// Issue 18: a state is read through the directory opened for it. The folder swapped for
    /// a link to another folder (with a state of its own) after it was opened: the state read
    /// is the opened folder's. Opened from the root, a linked folder has neither a state nor a
    /// stamp.
    #[test]
    fn the_state_is_read_through_the_opened_folder() {
        let t = tempfile::tempdir().unwrap();
        let (f, moved, other) = (t.path().join("f"), t.path().join("moved"), t.path().join("other"));
        std::fs::create_dir_all(f.join("cur")).unwrap();
        std::fs::create_dir_all(other.join("cur")).unwrap();
        let dir = fsx::Dir::open_root(&f).unwrap();
        let root = fsx::Dir::open_root(t.path()).unwrap();
        let stamp = target_stamp(Some(&root), &f, false);
        assert!(stamp.starts_with("maildir -,") && !stamp.ends_with("-,-,-"), "{stamp}");
        std::fs::rename(&f, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &f).unwrap();
        for (d, n) in [(&moved, 1), (&other, 2)] {
            write_state(d, n);
        }
        assert_eq!(load_in(&dir, &f, false).unwrap().unwrap().counts.messages_source, 1);
        let e = load(Some(&root), &f, false).unwrap_err();
        assert!(e.reason.contains("is a symlink"), "{e:?}");
        assert_eq!(target_stamp(Some(&root), &f, false), "maildir -,-,-");
    }

    /// A state in folder `d` that says it saw `n` source messages, naming `d` as its folder.
    fn write_state(d: &Path, n: u64) {
        let saved = Saved {
            options: String::new(),
            source: String::new(),
            target: String::new(),
            counts: Counts { messages_source: n, ..Default::default() },
            verified: true,
            epoch: None,
            folder: folder_in(&fsx::Dir::open_root(d).unwrap(), d, false),
            old_name: false,
            mbox_format: None,
        };
        std::fs::write(d.join(STATE_FILE), serde_json::to_vec(&saved).unwrap()).unwrap();
    }

    /// The target root swapped for a link to another target (with a state of its own) after
    /// the run opened it: the state and the stamp are the opened root's folder's.
    #[test]
    fn the_state_is_found_from_the_opened_root() {
        let t = tempfile::tempdir().unwrap();
        let (root, moved, other) = (t.path().join("root"), t.path().join("moved"), t.path().join("other"));
        for (r, n) in [(&root, 1), (&other, 2)] {
            let f = r.join(".F");
            std::fs::create_dir_all(f.join("cur")).unwrap();
            write_state(&f, n);
        }
        let opened = fsx::Dir::open_root(&root).unwrap();
        let stamp = target_stamp(Some(&opened), &root.join(".F"), false);
        std::fs::rename(&root, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &root).unwrap();
        let f = root.join(".F");
        // The folder's identity is its real path: the opened one is now named `moved/.F`.
        let e = load(Some(&opened), &f, false).unwrap_err();
        assert!(e.reason.contains("the state of another folder"), "{e:?}");
        assert_eq!(target_stamp(Some(&opened), &f, false), stamp, "the opened root's folder");
        std::fs::remove_file(&root).unwrap();
        std::fs::rename(&moved, &root).unwrap();
        assert_eq!(load(Some(&opened), &f, false).unwrap().unwrap().counts.messages_source, 1);
        assert!(load(None, &f, false).unwrap().is_none(), "no root, no state");
    }

    #[test]
    fn unchanged_counts_skip_everything() {
        let mut c = Counts { messages_source: 10, messages_target: 12, transferred: 10, ..Default::default() };
        c.skipped_filtered.insert("max-size".into(), 2);
        let u = unchanged_counts(&c);
        assert_eq!((u.transferred, u.skipped_existing, u.messages_target), (0, 8, 12));
    }
}
