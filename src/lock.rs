//! One run per target: an exclusive `flock` on a lock file at the target's root, held for the
//! whole run, so two runs (a cron job overlapping an admin's) never copy the same messages
//! twice.
//!
//! Where the lock file lives, and why its name: `mailmover.lock` in a Maildir root (a regular
//! file there is never a folder to Dovecot, Courier, Python's `mailbox` or mailmover's reader,
//! like `mailmover-cache`); `.mailmover.lock` in an mbox directory and a cPanel home, and
//! `.NAME.mailmover.lock` beside an mbox file `NAME` (mailmover's mbox reader skips dot-files
//! that are not mbox files, and Dovecot's mbox lister skips every `*.lock` name).
//!
//! `flock` dies with its process, so a killed run leaves a file that blocks nobody; the file is
//! never deleted, because unlinking a lock file while another run waits on it would let a third
//! lock a new file under the same name. Nor is it ever written: a refused run names the holder
//! by the pid the kernel lists for the lock in `/proc/locks` (never stale, unlike a pid written
//! into the file), and an unchanged re-run leaves the target exactly as it was, lock file
//! included. The file is opened without following symlinks, checked to be a regular file with
//! one link before it is opened (a FIFO or device planted there is never opened), and created
//! 0600 with the owner of the target's other files. A dry run creates nothing: it takes a
//! shared lock on the file if there is one (so it never plans against a half-written target),
//! and none otherwise.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use crate::error::{Error, Result};
use crate::fsx::{Dir, Owner};
use crate::interrupt;

/// The lock file in a Maildir root.
pub const MAILDIR: &str = "mailmover.lock";
/// The lock file in an mbox directory or a cPanel home.
pub const HIDDEN: &str = ".mailmover.lock";

const MODE: u32 = 0o600;

/// How a target is locked.
#[derive(Clone, Copy, Debug)]
pub struct LockOptions {
    /// How long to wait for another run's lock (zero: not at all).
    pub wait: Duration,
    /// Owner of a lock file created here (the target's other files get the same).
    pub owner: Option<Owner>,
    pub dry_run: bool,
}

/// A held target lock, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct TargetLock {
    /// `None`: a dry run found no lock file to take.
    _file: Option<Flock<File>>,
    pub path: PathBuf,
}

impl TargetLock {
    /// Locks the target directory `dir` (a Maildir root, an mbox directory, a cPanel home)
    /// through its lock file `name`; `dir` exists unless this is a dry run.
    pub fn inside(dir: &Path, name: &str, o: &LockOptions) -> Result<TargetLock> {
        acquire(dir, OsStr::new(name), o)
    }

    /// [`TargetLock::inside`] the target directory opened at the start (not by its path again).
    pub fn inside_opened(dir: &Dir, name: &str, o: &LockOptions) -> Result<TargetLock> {
        acquire_in(dir, OsStr::new(name), o)
    }

    /// Locks the mbox file target `file` through `.NAME.mailmover.lock` beside it, creating
    /// its directory if needed.
    pub fn beside(file: &Path, o: &LockOptions) -> Result<TargetLock> {
        let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !o.dry_run && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| locked(dir, format!("cannot create: {e}")))?;
        }
        acquire(dir, OsStr::new(&format!(".{name}.mailmover.lock")), o)
    }
}

fn locked(path: &Path, reason: impl Into<String>) -> Error {
    Error::Locked { path: path.to_path_buf(), reason: reason.into() }
}

fn acquire(dir: &Path, name: &OsStr, o: &LockOptions) -> Result<TargetLock> {
    match Dir::open_root(dir) {
        Ok(d) => acquire_in(&d, name, o),
        Err(_) if o.dry_run => Ok(TargetLock { _file: None, path: dir.join(name) }),
        Err(e) => Err(locked(dir, format!("cannot open the target to lock it: {}", e.problem().reason))),
    }
}

fn acquire_in(d: &Dir, name: &OsStr, o: &LockOptions) -> Result<TargetLock> {
    let path = d.path.join(name);
    let file = if o.dry_run {
        match open(d, name, &path)? {
            Some(f) => f,
            None => return Ok(TargetLock { _file: None, path }),
        }
    } else {
        create_or_open(d, name, &path, o.owner)?
    };
    let file = take(file, !o.dry_run, o.wait, &path)?;
    Ok(TargetLock { _file: Some(file), path })
}

/// Refuses anything but a regular file with one name: a symlink, FIFO or device planted at the
/// lock's path, or a hard link to a file elsewhere (whose other users the lock would block).
fn check(st: &FileStat, path: &Path) -> Result<()> {
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let what = match kind {
        SFlag::S_IFREG if st.st_nlink == 1 => return Ok(()),
        SFlag::S_IFREG => "has other hard links",
        SFlag::S_IFLNK => "is a symlink",
        SFlag::S_IFDIR => "is a directory",
        _ => "is not a regular file (FIFO, socket or device)",
    };
    Err(locked(path, format!("{what}, not mailmover's lock file; nothing written (remove it if it is not needed)")))
}

/// Opens an existing lock file (`None`: there is none). Read access is all `flock` needs.
fn open(d: &Dir, name: &OsStr, path: &Path) -> Result<Option<File>> {
    match nix::sys::stat::fstatat(Some(d.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => check(&st, path)?,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(locked(path, e.desc())),
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    match nix::fcntl::openat(Some(d.raw()), name, flags, Mode::empty()) {
        Ok(fd) => {
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            // Checked again through the descriptor: the name may have been replaced meanwhile.
            check(&nix::sys::stat::fstat(f.as_raw_fd()).map_err(|e| locked(path, e.desc()))?, path)?;
            Ok(Some(f))
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ELOOP) => Err(locked(path, "is a symlink, not mailmover's lock file; nothing written")),
        Err(e) => Err(locked(path, format!("cannot open the lock file: {}", e.desc()))),
    }
}

fn create_or_open(d: &Dir, name: &OsStr, path: &Path, owner: Option<Owner>) -> Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match nix::fcntl::openat(Some(d.raw()), name, flags, Mode::from_bits_truncate(MODE)) {
        Ok(fd) => {
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            let made = nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(MODE))
                .map_err(|e| locked(path, e.desc()))
                .and_then(|()| d.owner_for_new(owner).map_or(Ok(()), |o| o.apply(f.as_raw_fd(), path)));
            made.map(|()| f)
        }
        Err(Errno::EEXIST) => open(d, name, path)?.ok_or_else(|| locked(path, "the lock file vanished; try again")),
        Err(e) => Err(locked(path, format!("cannot create the lock file: {}", e.desc()))),
    }
}

/// Takes the lock, waiting up to `wait` for its holder; a signal ends the wait.
fn take(mut f: File, exclusive: bool, wait: Duration, path: &Path) -> Result<Flock<File>> {
    let op = if exclusive { FlockArg::LockExclusiveNonblock } else { FlockArg::LockSharedNonblock };
    let deadline = Instant::now() + wait;
    loop {
        f = match Flock::lock(f, op) {
            Ok(held) => return Ok(held),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => f,
            Err((_, e)) => return Err(locked(path, format!("cannot lock: {}", e.desc()))),
        };
        if let Some(sig) = interrupt::requested() {
            return Err(Error::Interrupted(sig));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(locked(path, held_by(&f, wait)));
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Why the lock could not be had, naming its holder.
fn held_by(f: &File, waited: Duration) -> String {
    let waited = if waited.is_zero() { String::new() } else { format!(" after waiting {} s", waited.as_secs_f64()) };
    let hint = "nothing written; wait for it to finish (or give --lock-wait SECS)";
    // /proc/locks is read a page at a time while other locks come and go, so a pass can miss
    // a line: a few passes before the holder is said to be unknown.
    let holders = (0..3)
        .map(|_| {
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            nix::sys::stat::fstat(f.as_raw_fd()).map(|st| holders(&locks, &st)).unwrap_or_default()
        })
        .find(|h| !h.is_empty())
        .unwrap_or_default();
    match holders.as_slice() {
        [] => format!("another run holds this target's lock{waited}; {hint}"),
        [pid] => format!("another mailmover run (pid {pid}) holds this target's lock{waited}; {hint}"),
        pids => format!(
            "other runs (pids {}) hold this target's lock{waited} (dry runs share it); {hint}",
            pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The pids holding a `flock` on the file `st` describes, from the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`; lines with `->` are waiters).
fn holders(locks: &str, st: &FileStat) -> Vec<u32> {
    let id = format!("{:02x}:{:02x}:{}", nix::sys::stat::major(st.st_dev), nix::sys::stat::minor(st.st_dev), st.st_ino);
    let mut pids: Vec<u32> = locks
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|x| *x == id)?;
            (f.get(1) == Some(&"FLOCK")).then_some(())?;
            f.get(i.checked_sub(1)?)?.parse().ok()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dry_run: bool) -> LockOptions {
        LockOptions { wait: Duration::ZERO, owner: None, dry_run }
    }

    /// A second lock of the same file is refused while the first is held, names the holder's
    /// pid, and is granted once the first is dropped; the file stays, empty and untouched.
    #[test]
    fn one_holder_at_a_time() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let a = TargetLock::inside(t.path(), MAILDIR, &opts(false)).unwrap();
        let p = t.path().join(MAILDIR);
        let made = std::fs::metadata(&p).unwrap();
        assert_eq!((made.mode() & 0o7777, made.len()), (0o600, 0));
        let e = TargetLock::inside(t.path(), MAILDIR, &opts(false)).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::Exit::Usage);
        if std::path::Path::new("/proc/locks").exists() {
            assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        }
        assert!(TargetLock::inside(t.path(), MAILDIR, &opts(true)).is_err(), "a dry run waits for a writer too");
        drop(a);
        let b = TargetLock::inside(t.path(), MAILDIR, &opts(false)).unwrap();
        drop(b);
        let after = std::fs::metadata(&p).unwrap();
        assert_eq!(
            (after.mtime(), after.mtime_nsec(), after.ctime_nsec(), after.len()),
            (made.mtime(), made.mtime_nsec(), made.ctime_nsec(), 0)
        );
    }

    /// The lock is taken in the target root opened at the start, not in whatever its path
    /// names by then.
    #[test]
    fn the_lock_goes_into_the_opened_root() {
        let t = tempfile::tempdir().unwrap();
        let (root, moved, other) = (t.path().join("root"), t.path().join("moved"), t.path().join("other"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let opened = Dir::open_root(&root).unwrap();
        std::fs::rename(&root, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &root).unwrap();
        let l = TargetLock::inside_opened(&opened, MAILDIR, &opts(false)).unwrap();
        assert_eq!(l.path, root.join(MAILDIR));
        assert!(moved.join(MAILDIR).exists() && !other.join(MAILDIR).exists());
    }

    #[test]
    fn holders_from_proc_locks() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, b"").unwrap();
        let st = nix::sys::stat::stat(&p).unwrap();
        let id =
            format!("{:02x}:{:02x}:{}", nix::sys::stat::major(st.st_dev), nix::sys::stat::minor(st.st_dev), st.st_ino);
        let text = format!(
            "1: POSIX  ADVISORY  WRITE 11 {id} 0 EOF\n2: FLOCK  ADVISORY  READ 22 {id} 0 EOF\n2: -> FLOCK  ADVISORY  WRITE 33 {id} 0 EOF\n3: FLOCK  ADVISORY  WRITE 44 00:01:1 0 EOF\n4: FLOCK  ADVISORY  READ 21 {id} 0 EOF\n"
        );
        assert_eq!(holders(&text, &st), vec![21, 22], "flock holders of this file only, no waiters");
    }

    /// A dry run creates nothing and shares the lock with other dry runs.
    #[test]
    fn dry_runs_write_nothing_and_share() {
        let t = tempfile::tempdir().unwrap();
        let a = TargetLock::inside(t.path(), HIDDEN, &opts(true)).unwrap();
        assert!(a._file.is_none());
        assert!(!t.path().join(HIDDEN).exists());
        drop(TargetLock::inside(t.path(), HIDDEN, &opts(false)).unwrap());
        let a = TargetLock::inside(t.path(), HIDDEN, &opts(true)).unwrap();
        let b = TargetLock::inside(t.path(), HIDDEN, &opts(true)).unwrap();
        assert!(TargetLock::inside(t.path(), HIDDEN, &opts(false)).is_err(), "a writer waits for dry runs");
        drop((a, b));
        assert!(TargetLock::inside(&t.path().join("missing"), HIDDEN, &opts(true)).is_ok());
    }

    #[test]
    fn beside_an_mbox_file() {
        let t = tempfile::tempdir().unwrap();
        let l = TargetLock::beside(&t.path().join("sub/INBOX"), &opts(false)).unwrap();
        assert_eq!(l.path, t.path().join("sub/.INBOX.mailmover.lock"));
        assert!(l.path.is_file());
    }

    /// Anything but a plain file at the lock's path is refused without being opened.
    #[test]
    fn planted_files_refused() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::write(&elsewhere, b"keep").unwrap();
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join(MAILDIR)).unwrap();
        nix::unistd::mkfifo(&dir.join(HIDDEN), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::hard_link(&elsewhere, dir.join(".x.mailmover.lock")).unwrap();
        for (name, why) in [(MAILDIR, "symlink"), (HIDDEN, "FIFO"), (".x.mailmover.lock", "hard links")] {
            for dry in [false, true] {
                let e = TargetLock::inside(&dir, name, &opts(dry)).unwrap_err();
                assert!(e.to_string().contains(why), "{e}");
                assert_eq!(e.exit_code(), crate::exit::Exit::Usage);
            }
        }
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"keep");
    }

    #[test]
    fn waits_for_the_holder() {
        let t = tempfile::tempdir().unwrap();
        let a = TargetLock::inside(t.path(), MAILDIR, &opts(false)).unwrap();
        let dir = t.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let o = LockOptions { wait: Duration::from_secs(20), ..opts(false) };
            TargetLock::inside(&dir, MAILDIR, &o).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!waiter.is_finished(), "the second lock did not wait");
        drop(a);
        waiter.join().unwrap().unwrap();
        let o = LockOptions { wait: Duration::from_millis(120), ..opts(false) };
        let _a = TargetLock::inside(t.path(), MAILDIR, &opts(false)).unwrap();
        let e = TargetLock::inside(t.path(), MAILDIR, &o).unwrap_err();
        assert!(e.to_string().contains("after waiting 0.12 s"), "{e}");
    }
}
