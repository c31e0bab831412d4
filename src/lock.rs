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
//! lock a new file under the same name. The holder writes its pid into the file for the message
//! a refused run prints. The file is opened without following symlinks, checked to be a regular
//! file with one link before it is opened (a FIFO or device planted there is never opened), and
//! created 0600 with the owner of the target's other files. A dry run writes nothing: it takes a
//! shared lock on the file if there is one (so it never plans against a half-written target),
//! and none otherwise.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
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

impl LockOptions {
    pub fn of(o: &crate::sync::SyncOptions) -> LockOptions {
        LockOptions { wait: o.lock_wait, owner: o.owner, dry_run: o.dry_run }
    }
}

/// A held target lock, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct TargetLock {
    /// `None`: a dry run found no lock file to take.
    file: Option<File>,
    exclusive: bool,
    pub path: PathBuf,
}

impl TargetLock {
    /// Locks the target directory `dir` (a Maildir root, an mbox directory, a cPanel home)
    /// through its lock file `name`; `dir` exists unless this is a dry run.
    pub fn inside(dir: &Path, name: &str, o: &LockOptions) -> Result<TargetLock> {
        acquire(dir, OsStr::new(name), o)
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

impl Drop for TargetLock {
    fn drop(&mut self) {
        // The pid goes with the lock, so a later refusal never names a finished run.
        if let (Some(f), true) = (&self.file, self.exclusive) {
            let _ = f.set_len(0);
        }
    }
}

fn locked(path: &Path, reason: impl Into<String>) -> Error {
    Error::Locked { path: path.to_path_buf(), reason: reason.into() }
}

fn acquire(dir: &Path, name: &OsStr, o: &LockOptions) -> Result<TargetLock> {
    let path = dir.join(name);
    let d = match Dir::open_root(dir) {
        Ok(d) => d,
        Err(_) if o.dry_run => return Ok(TargetLock { file: None, exclusive: false, path }),
        Err(e) => return Err(locked(dir, format!("cannot open the target to lock it: {}", e.problem().reason))),
    };
    let file = if o.dry_run {
        match open(&d, name, &path, OFlag::O_RDONLY)? {
            Some(f) => f,
            None => return Ok(TargetLock { file: None, exclusive: false, path }),
        }
    } else {
        create_or_open(&d, name, &path, o.owner)?
    };
    let exclusive = !o.dry_run;
    take(&file, exclusive, o.wait, &path)?;
    if exclusive {
        let pid = format!("{}\n", std::process::id());
        file.set_len(0).and_then(|()| file.write_all_at(pid.as_bytes(), 0)).map_err(|e| {
            locked(&path, format!("cannot write the pid into the lock file: {}", crate::error::io_reason(&e)))
        })?;
    }
    Ok(TargetLock { file: Some(file), exclusive, path })
}

/// Refuses anything but a regular file with one name: a symlink, FIFO or device planted at the
/// lock's path, or a hard link to a file elsewhere that writing the pid would clobber.
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

/// Opens an existing lock file (`None`: there is none, or this process may not read it).
fn open(d: &Dir, name: &OsStr, path: &Path, access: OFlag) -> Result<Option<File>> {
    match nix::sys::stat::fstatat(Some(d.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => check(&st, path)?,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(locked(path, e.desc())),
    }
    let flags = access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    match nix::fcntl::openat(Some(d.raw()), name, flags, Mode::empty()) {
        Ok(fd) => {
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            // Checked again through the descriptor: the name may have been replaced meanwhile.
            check(&nix::sys::stat::fstat(f.as_raw_fd()).map_err(|e| locked(path, e.desc()))?, path)?;
            Ok(Some(f))
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::EACCES) if access == OFlag::O_RDONLY => Ok(None),
        Err(Errno::ELOOP) => Err(locked(path, "is a symlink, not mailmover's lock file; nothing written")),
        Err(e) => Err(locked(path, format!("cannot open the lock file: {}", e.desc()))),
    }
}

fn create_or_open(d: &Dir, name: &OsStr, path: &Path, owner: Option<Owner>) -> Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match nix::fcntl::openat(Some(d.raw()), name, flags, Mode::from_bits_truncate(MODE)) {
        Ok(fd) => {
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            let made = nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(MODE))
                .map_err(|e| locked(path, e.desc()))
                .and_then(|()| owner.map_or(Ok(()), |o| o.apply(f.as_raw_fd(), path)));
            made.map(|()| f)
        }
        Err(Errno::EEXIST) => {
            open(d, name, path, OFlag::O_RDWR)?.ok_or_else(|| locked(path, "the lock file vanished; try again"))
        }
        Err(e) => Err(locked(path, format!("cannot create the lock file: {}", e.desc()))),
    }
}

/// Takes the lock, waiting up to `wait` for its holder; a signal ends the wait.
fn take(f: &File, exclusive: bool, wait: Duration, path: &Path) -> Result<()> {
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    let deadline = Instant::now() + wait;
    loop {
        // SAFETY: flock on a descriptor this File owns; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EWOULDBLOCK | Errno::EINTR => {}
            e => return Err(locked(path, format!("cannot lock: {}", e.desc()))),
        }
        if let Some(sig) = interrupt::requested() {
            return Err(Error::Interrupted(sig));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(locked(path, held_by(f, wait)));
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Why the lock could not be had, naming its holder.
fn held_by(f: &File, waited: Duration) -> String {
    let waited = if waited.is_zero() { String::new() } else { format!(" after waiting {} s", waited.as_secs_f64()) };
    let hint = "nothing written; wait for it to finish (or give --lock-wait SECS)";
    // The holder writes its pid right after locking: give it a moment.
    for _ in 0..20 {
        if let Some(pid) = holder(f) {
            return format!("another mailmover run (pid {pid}) holds this target's lock{waited}; {hint}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    format!("another run holds this target's lock{waited} (pid not recorded: a dry run, or one starting); {hint}")
}

/// The pid recorded in the lock file, if any.
fn holder(f: &File) -> Option<u32> {
    let mut buf = [0u8; 32];
    let n = f.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(buf.get(..n)?).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dry_run: bool) -> LockOptions {
        LockOptions { wait: Duration::ZERO, owner: None, dry_run }
    }

    /// A second lock of the same file is refused while the first is held, names the holder's
    /// pid, and is granted once the first is dropped; the file stays, without a pid.
    #[test]
    fn one_holder_at_a_time() {
        let t = tempfile::tempdir().unwrap();
        let a = TargetLock::inside(t.path(), MAILDIR, &opts(false)).unwrap();
        let p = t.path().join(MAILDIR);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{}\n", std::process::id()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let e = TargetLock::inside(t.path(), MAILDIR, &opts(false)).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(TargetLock::inside(t.path(), MAILDIR, &opts(true)).is_err(), "a dry run waits for a writer too");
        drop(a);
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        let b = TargetLock::inside(t.path(), MAILDIR, &opts(false)).unwrap();
        drop(b);
    }

    /// A dry run creates nothing and shares the lock with other dry runs.
    #[test]
    fn dry_runs_write_nothing_and_share() {
        let t = tempfile::tempdir().unwrap();
        let a = TargetLock::inside(t.path(), HIDDEN, &opts(true)).unwrap();
        assert!(a.file.is_none());
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
                assert_eq!(e.exit_code(), 2);
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
