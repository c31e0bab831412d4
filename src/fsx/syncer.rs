//! Getting written files onto the disk: a background thread that batches `syncfs` calls (group
//! commit), and an early writeback start for big files.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use super::dir::Dir;
use crate::error::{At, Error, Result};

/// Group commit for `syncfs`, in the background: callers ask for a sync and go on writing,
/// and one thread runs a sync after another while any is asked for. Each sync covers every
/// file written before it started, so a batch grows by itself while the disk is slow and
/// writers never sit in `syncfs` themselves (each sync costs disk cache flushes, and two at
/// once slow each other down).
pub struct Syncer {
    shared: std::sync::Arc<SyncShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The sync a caller waits for: it started after the caller asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

struct SyncShared {
    state: std::sync::Mutex<SyncState>,
    turn: std::sync::Condvar,
    path: PathBuf,
}

#[derive(Default)]
struct SyncState {
    /// The highest sync number asked for; syncs started and finished so far (from 1).
    asked: u64,
    started: u64,
    finished: u64,
    /// The first failed sync and why. Pages whose writeback failed are not written again, so
    /// every later sync is failed too.
    failed: Option<(u64, String)>,
    closing: bool,
}

impl SyncShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn outcome(&self, st: &SyncState, t: Ticket) -> Option<Result<()>> {
        (st.finished >= t.0).then(|| match &st.failed {
            Some((n, why)) if *n <= t.0 => Err(Error::bad(&self.path, why.clone())),
            _ => Ok(()),
        })
    }
}

impl Syncer {
    /// Starts the sync thread for the file system `dir` is on.
    pub fn start(dir: &Dir) -> Result<Syncer> {
        let own = dir.try_clone()?;
        let shared = std::sync::Arc::new(SyncShared {
            state: std::sync::Mutex::new(SyncState::default()),
            turn: std::sync::Condvar::new(),
            path: dir.path.clone(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mailmover-sync".into())
            .spawn(move || run_syncs(&s, || nix::unistd::syncfs(own.raw()).map_err(|e| e.to_string())))
            .at(&dir.path)?;
        Ok(Syncer { shared, thread: Some(thread) })
    }

    /// Asks for a sync of everything written so far; returns at once.
    pub fn ask(&self) -> Ticket {
        let mut st = self.shared.lock();
        // A sync already running may have missed the caller's files: the next one is needed.
        let t = Ticket(st.started + 1);
        st.asked = st.asked.max(t.0);
        self.shared.turn.notify_all();
        t
    }

    /// The ticket's outcome, if its sync has finished.
    pub fn poll(&self, t: Ticket) -> Option<Result<()>> {
        let st = self.shared.lock();
        self.shared.outcome(&st, t)
    }

    /// Waits for the ticket's sync.
    pub fn wait(&self, t: Ticket) -> Result<()> {
        let mut st = self.shared.lock();
        loop {
            if let Some(r) = self.shared.outcome(&st, t) {
                return r;
            }
            st = self.shared.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns once a sync that started after this call has finished.
    pub fn sync(&self) -> Result<()> {
        self.wait(self.ask())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.turn.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sync thread: one sync after another while any is asked for, until closed.
fn run_syncs(sh: &SyncShared, mut syncfs: impl FnMut() -> std::result::Result<(), String>) {
    let mut st = sh.lock();
    loop {
        if st.asked > st.started {
            st.started += 1;
            let n = st.started;
            drop(st);
            let r = syncfs();
            st = sh.lock();
            st.finished = n;
            if let (Err(why), None) = (r, &st.failed) {
                st.failed = Some((n, format!("syncfs failed: {why}")));
            }
            sh.turn.notify_all();
        } else if st.closing {
            return;
        } else {
            st = sh.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Starts writing `len` bytes of `f` from `offset` (0: to the end) to disk without waiting, so
/// the `fsync` that makes them durable later finds most of the work done while the CPU went on.
/// Best effort: where it is not supported, the later sync does all of it. Worth it for big
/// ranges only: a small file kicked on its own costs one disk request (and, in a VM, one exit)
/// that the batch `syncfs` would have merged with its neighbours.
pub fn start_writeback_range(f: &File, offset: u64, len: u64) {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: plain syscall on a descriptor this `File` owns; no memory is passed. libc: neither
    // nix nor std has sync_file_range.
    let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syncer driven by a fake syncfs that blocks until the test lets it go.
    fn held_syncer() -> (std::sync::Arc<SyncShared>, std::sync::mpsc::Sender<Result<(), String>>, Syncer) {
        let shared = std::sync::Arc::new(SyncShared {
            state: std::sync::Mutex::new(SyncState::default()),
            turn: std::sync::Condvar::new(),
            path: PathBuf::from("/fs"),
        });
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let s = shared.clone();
        let thread = std::thread::spawn(move || run_syncs(&s, || rx.recv().unwrap_or(Ok(()))));
        (shared.clone(), tx, Syncer { shared, thread: Some(thread) })
    }

    fn wait_until(sh: &SyncShared, f: impl Fn(&SyncState) -> bool) {
        while !f(&sh.lock()) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Asking never waits; callers that ask while a sync runs share the next one; a ticket
    /// is done only by a sync that started after it was asked for.
    #[test]
    fn syncer_batches_while_a_sync_runs() {
        let (sh, release, syncer) = held_syncer();
        let first = syncer.ask();
        wait_until(&sh, |st| st.started == 1);
        let (a, b) = (syncer.ask(), syncer.ask());
        assert_eq!(a, b, "asked during the same sync: one ticket");
        assert_ne!(a, first);
        assert!(syncer.poll(first).is_none() && syncer.poll(a).is_none());
        release.send(Ok(())).unwrap();
        syncer.wait(first).unwrap();
        assert!(syncer.poll(a).is_none(), "the second sync has not run yet");
        wait_until(&sh, |st| st.started == 2);
        release.send(Ok(())).unwrap();
        syncer.wait(b).unwrap();
        assert_eq!(sh.lock().started, 2, "three asks, two syncs");
    }

    /// A failed sync fails its ticket and every later one, not earlier ones.
    #[test]
    fn syncer_failure_is_sticky() {
        let (sh, release, syncer) = held_syncer();
        let ok = syncer.ask();
        release.send(Ok(())).unwrap();
        syncer.wait(ok).unwrap();
        let bad = syncer.ask();
        release.send(Err("EIO".into())).unwrap();
        assert!(syncer.wait(bad).unwrap_err().to_string().contains("syncfs failed: EIO"));
        let later = syncer.ask();
        wait_until(&sh, |st| st.started == 3);
        release.send(Ok(())).unwrap();
        assert!(syncer.wait(later).is_err());
        assert!(syncer.poll(ok).unwrap().is_ok());
    }

    #[test]
    fn syncer_syncs_a_real_file_system() {
        let tmp = tempfile::tempdir().unwrap();
        let syncer = Syncer::start(&Dir::open_root(tmp.path()).unwrap()).unwrap();
        syncer.sync().unwrap();
        let t = syncer.ask();
        syncer.wait(t).unwrap();
        assert!(syncer.poll(t).unwrap().is_ok());
    }
}
