//! mbox locks as mail servers take them (FORMATS.md §6.5).
//!
//! Writers take a `NAME.lock` dotlock (created `O_EXCL`, holding `pid:host`) and an `fcntl`
//! write lock on the whole mbox. Dovecot on Debian takes fcntl first, procmail and maildrop the
//! dotlock first, so a third writer must never wait on one while it holds the other: the
//! dotlock is created, the fcntl lock only tried, and on failure both are dropped and the
//! whole is tried again after a short random pause. Readers take a shared fcntl lock, waiting
//! a bounded time. The fcntl locks are open-file-description locks, which conflict with the
//! classic ones other programs take but are not dropped when another descriptor of the same
//! file in this process is closed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;

use crate::error::{At, Error, Result};
use crate::fsx::Dir;

/// Dovecot's `mbox_lock_timeout`.
pub const WRITE_WAIT: Duration = Duration::from_secs(300);
/// How long a source read waits for writers before it reads unlocked (and says so).
pub const READ_WAIT: Duration = Duration::from_secs(10);
/// Dovecot's `mbox_dotlock_change_timeout`: a dotlock nothing touched for this long is stale.
const DOTLOCK_STALE: Duration = Duration::from_secs(120);

/// An fcntl lock: shared by readers, or one writer's alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fcntl {
    Read,
    Write,
}

/// Tries a whole-file fcntl lock without waiting: `Ok(false)` when another holds a
/// conflicting one.
pub fn try_fcntl(f: &File, kind: Fcntl) -> std::io::Result<bool> {
    // SAFETY: libc::flock holds only integers, so all zero is a valid value (and l_pid must be
    // 0 for OFD locks). Zeroed, not a literal: its fields differ by target (MIPS has more).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match kind {
        Fcntl::Read => libc::F_RDLCK,
        Fcntl::Write => libc::F_WRLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let ofd = fcntl(f.as_raw_fd(), FcntlArg::F_OFD_SETLK(&fl));
    // A kernel without OFD locks: the classic lock is the next best.
    let r = if ofd == Err(Errno::EINVAL) { fcntl(f.as_raw_fd(), FcntlArg::F_SETLK(&fl)) } else { ofd };
    match r {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Takes a shared lock on a source mbox, waiting at most `wait` for a writer to finish.
/// `Err` says why the file is read unlocked (a warning, not a failure: a read-only or
/// lock-less file system must still be readable).
pub fn read_lock(f: &File, wait: Duration) -> std::result::Result<(), String> {
    let t0 = Instant::now();
    loop {
        match try_fcntl(f, Fcntl::Read) {
            Ok(true) => return Ok(()),
            // A Ctrl-C ends the wait (the caller stops the run).
            Ok(false) if crate::interrupt::requested().is_some() => {
                return Err("interrupted while waiting for another program's write lock".into());
            }
            Ok(false) if t0.elapsed() < wait => std::thread::sleep(pause()),
            Ok(false) => {
                return Err(format!(
                    "another program held a write lock for {} s; read without a lock (a change while it is read is still detected)",
                    wait.as_secs()
                ));
            }
            Err(e) => return Err(format!("no shared lock ({e}); read without a lock")),
        }
    }
}

/// 50 to 150 ms, different for each caller, so two waiting writers do not retry in step.
fn pause() -> Duration {
    let n = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let salt = std::process::id().wrapping_mul(2_654_435_761) ^ n;
    Duration::from_millis(50 + u64::from(salt % 100))
}

pub fn host() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// The dotlock and fcntl write lock of one mbox; both released when dropped (fcntl first).
pub struct WriteLock<'d> {
    dir: &'d Dir,
    dotlock: OsString,
    /// Open while the lock is held, so its times can be refreshed.
    dotlock_fd: File,
    /// The mbox as it was when locked (`None`: it did not exist).
    file: Option<File>,
    /// `file` is open for writing too.
    writable: bool,
    taken: Instant,
}

impl<'d> WriteLock<'d> {
    /// Locks the mbox `name` in `dir` (which may not exist yet), waiting at most `wait`.
    pub fn take(dir: &'d Dir, name: &OsStr, wait: Duration) -> Result<WriteLock<'d>> {
        let mut dotlock = name.to_os_string();
        dotlock.push(".lock");
        let lock_path = dir.path.join(&dotlock);
        let t0 = Instant::now();
        let mut holder;
        loop {
            match create_excl(dir, &dotlock) {
                Ok(mut fd) => {
                    let _ = fd.write_all(format!("{}:{}", std::process::id(), host()).as_bytes());
                    match Self::fcntl_on(dir, name) {
                        Ok(Some((file, writable))) => {
                            let taken = Instant::now();
                            return Ok(WriteLock { dir, dotlock, dotlock_fd: fd, file, writable, taken });
                        }
                        Ok(None) => holder = "an fcntl lock of another program".into(),
                        Err(e) => {
                            let _ = dir.unlink(&dotlock);
                            return Err(e);
                        }
                    }
                    let _ = dir.unlink(&dotlock);
                }
                Err(Errno::EEXIST) => {
                    // A directory, link or FIFO there is nobody's lock, and will not go away.
                    if dir.stat_at(&dotlock)?.is_some_and(|e| e.kind != crate::fsx::FileKind::File) {
                        return Err(Error::bad(
                            lock_path,
                            "is not a dotlock (not a regular file); the mbox is not written",
                        ));
                    }
                    if stale(dir, &dotlock, name) {
                        // Another waiter may remove and recreate it between our checks; O_EXCL
                        // still lets only one of us hold it.
                        let _ = dir.unlink(&dotlock);
                        continue;
                    }
                    holder = format!("the dotlock {} ({})", lock_path.display(), dotlock_owner(dir, &dotlock));
                }
                Err(e) => return Err(e).at(&lock_path),
            }
            if t0.elapsed() >= wait {
                return Err(Error::bad(
                    dir.path.join(name),
                    format!("could not lock the mbox within {} s ({holder}); not written", wait.as_secs()),
                ));
            }
            // A Ctrl-C ends the wait at once, not after it: nothing is written yet.
            if let Some(sig) = crate::interrupt::requested() {
                return Err(Error::Interrupted(sig));
            }
            std::thread::sleep(pause());
        }
    }

    /// Opens the mbox (if it exists) and tries its fcntl write lock: `Ok(None)` when busy; the
    /// file, and whether it is open for writing.
    fn fcntl_on(dir: &Dir, name: &OsStr) -> Result<Option<(Option<File>, bool)>> {
        let path = dir.path.join(name);
        // Replacing needs only the directory; a file we may not write is locked for reading,
        // which keeps every writer out just the same.
        let (file, kind) = match dir.open_file(name, true) {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EACCES) => {
                (dir.open_file(name, false)?, Fcntl::Read)
            }
            r => (r?, Fcntl::Write),
        };
        let Some(file) = file else { return Ok(Some((None, false))) };
        match try_fcntl(&file, kind) {
            Ok(true) => Ok(Some((Some(file), kind == Fcntl::Write))),
            Ok(false) => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    /// The mbox as it was when the lock was taken.
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// The locked mbox is open for writing (it can grow in place).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Touches the dotlock when it has been held a while, so nobody takes it for stale.
    pub fn refresh(&self) {
        if self.taken.elapsed() > Duration::from_secs(30) {
            let now = nix::sys::time::TimeSpec::UTIME_NOW;
            let _ = nix::sys::stat::futimens(self.dotlock_fd.as_raw_fd(), &now, &now);
        }
    }
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        // Closing the descriptor releases the fcntl lock; the dotlock goes last (§6.5).
        drop(self.file.take());
        let _ = self.dir.unlink(&self.dotlock);
    }
}

fn create_excl(dir: &Dir, name: &OsStr) -> std::result::Result<File, Errno> {
    let fd = nix::fcntl::openat(
        Some(dir.raw()),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    // SAFETY: a descriptor just returned by openat, owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `pid:host` of a dotlock, as far as it can be read.
fn dotlock_owner(dir: &Dir, dotlock: &OsStr) -> String {
    let mut text = Vec::new();
    if let Ok(Some(f)) = dir.open_file(dotlock, false) {
        let _ = f.take(256).read_to_end(&mut text);
    }
    let s = String::from_utf8_lossy(&text).trim().to_string();
    if s.is_empty() { "no pid in it".into() } else { format!("held by {s}") }
}

/// Whether a dotlock is stale: its pid on this host is dead, or neither it nor the mbox
/// changed for [`DOTLOCK_STALE`].
fn stale(dir: &Dir, dotlock: &OsStr, name: &OsStr) -> bool {
    let owner = dotlock_owner(dir, dotlock);
    if let Some((pid, h)) = owner.strip_prefix("held by ").and_then(|s| s.split_once(':'))
        && h == host()
        && let Ok(pid) = pid.parse::<i32>()
        && pid > 0
        && !crate::fsx::pid_alive(pid)
    {
        return true;
    }
    let age = |n: &OsStr| {
        let st = nix::sys::stat::fstatat(Some(dir.raw()), n, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
        Some(now.saturating_sub(st.st_mtime.max(st.st_ctime)))
    };
    let limit = DOTLOCK_STALE.as_secs() as i64;
    age(dotlock).is_some_and(|a| a > limit) && age(name).is_none_or(|a| a > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("INBOX"), b"From a Mon Jan  2 15:04:05 2006\n\nx\n\n").unwrap();
        let d = Dir::open_root(t.path()).unwrap();
        (t, d)
    }

    /// A dotlock of a dead local process is stale and taken over; one of a live process is
    /// waited for, and the wait gives up naming the lock.
    #[test]
    fn dotlocks_of_dead_processes_are_taken_over() {
        let (t, d) = setup();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(t.path().join("INBOX.lock"), format!("{dead}:{}", host())).unwrap();
        let l = WriteLock::take(&d, OsStr::new("INBOX"), Duration::from_secs(5)).unwrap();
        assert!(l.file().is_some());
        let held = std::fs::read_to_string(t.path().join("INBOX.lock")).unwrap();
        assert_eq!(held, format!("{}:{}", std::process::id(), host()));
        drop(l);
        assert!(!t.path().join("INBOX.lock").exists(), "released");
        std::fs::write(t.path().join("INBOX.lock"), format!("1:{}", host())).unwrap();
        let e = WriteLock::take(&d, OsStr::new("INBOX"), Duration::from_millis(300)).err().unwrap().to_string();
        assert!(e.contains("INBOX.lock") && e.contains("could not lock"), "{e}");
        std::fs::remove_file(t.path().join("INBOX.lock")).unwrap();
        std::fs::create_dir(t.path().join("INBOX.lock")).unwrap();
        let t0 = Instant::now();
        let e = WriteLock::take(&d, OsStr::new("INBOX"), Duration::from_secs(60)).err().unwrap().to_string();
        assert!(e.contains("not a dotlock") && t0.elapsed() < Duration::from_secs(5), "a planted directory: {e}");
    }

    /// An fcntl lock held elsewhere is waited for without holding the dotlock meanwhile (so a
    /// writer that takes fcntl first, then the dotlock, is never deadlocked), and a reader
    /// waits a bounded time, then goes on.
    #[test]
    fn fcntl_holders_are_waited_for_without_the_dotlock() {
        let (t, d) = setup();
        let other = std::fs::OpenOptions::new().read(true).write(true).open(t.path().join("INBOX")).unwrap();
        assert!(try_fcntl(&other, Fcntl::Write).unwrap());
        let path = t.path().to_path_buf();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            // While we hold fcntl, the waiting writer must not be sitting on the dotlock. It
            // exists for microseconds at each try, which a loaded machine may catch a few
            // times; held, it would be seen at every look.
            let seen = (0..25)
                .filter(|_| {
                    std::thread::sleep(Duration::from_millis(4));
                    path.join("INBOX.lock").exists()
                })
                .count();
            drop(other);
            seen <= 5
        });
        let reader = File::open(t.path().join("INBOX")).unwrap();
        assert!(read_lock(&reader, Duration::from_millis(100)).is_err(), "a writer holds it: bounded wait");
        let t0 = Instant::now();
        let l = WriteLock::take(&d, OsStr::new("INBOX"), Duration::from_secs(10)).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(300), "waited for the holder");
        assert!(holder.join().unwrap(), "the dotlock was held while waiting for fcntl");
        drop(l);
        assert!(read_lock(&reader, Duration::from_millis(100)).is_ok());
    }
}
