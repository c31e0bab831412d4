//! File-system primitives with the guarantees mailmover promises.
//!
//! Sources are opened read-only (and without touching atime where the kernel allows).
//! Targets are reached through directory descriptors opened with `O_NOFOLLOW`, so a symlink
//! planted anywhere in a target tree is refused instead of followed; new files are created
//! in `tmp/` (unnamed, `O_TMPFILE`, where the file system allows; else under an exclusive
//! temporary name), written, chowned, timestamped and synced through their descriptor, and only
//! then linked or renamed into place without replacing anything (`linkat`, `RENAME_NOREPLACE`).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::Mmap;
use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::{Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use sha2::{Digest, Sha256};

use crate::error::{At, Error, Result};

/// Opens a source file for reading: read-only, no atime update when permitted.
pub fn open_source(path: &Path) -> Result<File> {
    open_source_flags(path, 0)
}

/// Like [`open_source`], but a FIFO or device swapped in for the file is not waited on (the
/// caller checks the type before any read).
pub fn open_source_nonblocking(path: &Path) -> Result<File> {
    open_source_flags(path, libc::O_NONBLOCK)
}

/// Like [`open_source`], but a symlink is refused (for files found inside a source tree).
pub fn open_source_nofollow(path: &Path) -> Result<File> {
    open_source_flags(path, libc::O_NOFOLLOW | libc::O_NONBLOCK)
}

fn open_source_flags(path: &Path, extra: i32) -> Result<File> {
    let open =
        |flags: i32| std::fs::OpenOptions::new().read(true).custom_flags(flags | extra | libc::O_CLOEXEC).open(path);
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0).at(path),
        r => r.at(path),
    }
}

/// Reads a whole message file (bounded by its size) from a source tree, refusing symlinks and
/// anything that is not a regular file (a FIFO is never opened for reading: `O_NONBLOCK` plus
/// the type check happen before any read).
pub fn read_source_file(path: &Path) -> Result<Vec<u8>> {
    read_message_file(path, false)
}

/// Reads a message file; with `follow`, a symlink to a message is read too (`--follow-symlinks`).
pub fn read_message_file(path: &Path, follow: bool) -> Result<Vec<u8>> {
    MessageFile::open(path, follow)?.read(path)
}

/// A source message file, opened and checked to be a regular file, not yet read.
pub struct MessageFile {
    f: File,
    len: usize,
    /// Size and times when it was opened: the read must end with the same.
    stamp: FileStamp,
    /// Held while the file waits to be read, when it was opened ahead of its read.
    _slot: Option<FdSlot>,
}

impl MessageFile {
    pub fn open(path: &Path, follow: bool) -> Result<MessageFile> {
        let f = if follow { open_source_flags(path, libc::O_NONBLOCK)? } else { open_source_nofollow(path)? };
        let md = f.metadata().at(path)?;
        if !md.is_file() {
            return Err(Error::bad(path, "not a regular file"));
        }
        let len = usize::try_from(md.len()).map_err(|_| Error::bad(path, "file too large for this machine"))?;
        Ok(MessageFile { f, len, stamp: FileStamp::from_metadata(&md), _slot: None })
    }

    /// Opens the file ahead of its read and asks the kernel to start reading it into the page
    /// cache, without waiting (see [`source_is_cold`]). `None` when the descriptor budget is
    /// spent or the file cannot be opened (its read reports why).
    pub fn open_ahead(path: &Path, follow: bool) -> Option<MessageFile> {
        let slot = FdSlot::take()?;
        let mut m = MessageFile::open(path, follow).ok()?;
        m.will_need();
        m._slot = Some(slot);
        Some(m)
    }

    /// Refuses a file that is not where it was looked for: opened by its full path, a
    /// directory on the way swapped for a link meanwhile would lead elsewhere. The open
    /// descriptor's real path must lie directly in `folder`'s `cur/` or `new/` (`folder`
    /// canonical; a rename inside them is fine). Where `/proc` cannot tell, nothing is refused.
    pub fn check_in_folder(&self, folder: &Path, path: &Path) -> Result<()> {
        let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", self.f.as_raw_fd())) else { return Ok(()) };
        let parent = real.parent();
        if parent.is_some_and(|p| p == folder.join("cur") || p == folder.join("new")) {
            Ok(())
        } else {
            Err(Error::bad(path, format!("leads to {} (a link on the way?); not read", real.display())))
        }
    }

    fn will_need(&self) {
        // SAFETY: a valid descriptor; the call only reads its arguments.
        unsafe { libc::posix_fadvise(self.f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
    }

    /// Reads the whole file. A file whose size or modification time changed while it was read
    /// is read again (up to three times) and then reported, never returned half old.
    pub fn read(self, path: &Path) -> Result<Vec<u8>> {
        let MessageFile { f, mut len, stamp, .. } = self;
        let probe = !SOURCE_COLD.load(Ordering::Relaxed) && !NOWAIT_REFUSED.load(Ordering::Relaxed);
        let mut before = stamp;
        for _ in 0..3 {
            let r = read_exact_at(&mut SysReader(&f), len, probe);
            let after = FileStamp::of(&f).at(path)?;
            match r {
                Ok(buf) if after == before => return Ok(buf),
                Ok(_) | Err(ReadError::Changed) => {}
                Err(ReadError::Io(e)) => return Err(e).at(path),
            }
            before = after;
            len = usize::try_from(after.size).map_err(|_| Error::bad(path, "file too large for this machine"))?;
        }
        Err(Error::bad(path, "the file kept changing while it was read; not copied"))
    }

    /// Reads the file, or maps it when it is big (from [`BIG_FILE`] bytes): a message bigger
    /// than memory is then read through in windows ([`release_read`]) instead of held.
    pub fn read_any(self, path: &Path) -> Result<FileBytes> {
        if self.len < BIG_FILE {
            return self.read(path).map(FileBytes::Owned);
        }
        let stamp = self.stamp;
        // SAFETY: a read-only private mapping; a file that shrinks under it is caught by the
        // SIGBUS guard registered here, and [`MappedFile::intact`] tells whether it changed.
        let map = unsafe { Mmap::map(&self.f) }.at(path)?;
        let _ = map.advise(memmap2::Advice::Sequential);
        let guard = sigbus::Guard::register(map.as_ptr() as usize, map.len());
        if guard.is_none() {
            // Unguarded, a truncation would kill the run: read it instead.
            drop(map);
            return self.read(path).map(FileBytes::Owned);
        }
        Ok(FileBytes::Mapped(MappedFile { _guard: guard, map, file: self.f, stamp }))
    }
}

/// Message files from this size on are mapped, not read into memory.
pub const BIG_FILE: usize = 64 << 20;

/// A source file's bytes: in memory, or mapped when big.
#[derive(Debug)]
pub enum FileBytes {
    Owned(Vec<u8>),
    Mapped(MappedFile),
}

/// A big source file, mapped read-only; its pages are let go as they are read through.
#[derive(Debug)]
pub struct MappedFile {
    // Declared before `map`: the guard is dropped before the mapping goes away.
    _guard: Option<sigbus::Guard>,
    map: Mmap,
    file: File,
    stamp: FileStamp,
}

impl MappedFile {
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Whether the file is still as it was mapped: same size and times, no page lost to a
    /// truncation.
    pub fn intact(&self) -> bool {
        !self._guard.as_ref().is_some_and(|g| g.faulted()) && FileStamp::of(&self.file).is_ok_and(|s| s == self.stamp)
    }
}

/// What tells that a file changed while it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(f: &File) -> io::Result<FileStamp> {
        f.metadata().map(|m| FileStamp::from_metadata(&m))
    }

    fn from_metadata(m: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp { size: m.len(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) }
    }
}

/// Positional reads of one file: the system's, or one that misbehaves on purpose in tests.
pub(crate) trait PositionalRead {
    /// Reads into `buf` from `offset`; with `nowait`, only what is in the page cache.
    fn read_at(&mut self, buf: &mut [u8], offset: u64, nowait: bool) -> io::Result<usize>;
}

struct SysReader<'a>(&'a File);

impl PositionalRead for SysReader<'_> {
    fn read_at(&mut self, buf: &mut [u8], offset: u64, nowait: bool) -> io::Result<usize> {
        let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which outlives the call.
        let n = unsafe { libc::preadv2(self.0.as_raw_fd(), &iov, 1, offset, flags) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file is shorter or longer than `len` now.
    Changed,
    Io(io::Error),
}

/// Reads exactly `len` bytes from offset 0, each read continuing where the last one ended; a
/// file that ends sooner has changed. With `probe`, the first read asks not to wait, which tells
/// whether the source is in the page cache (see [`source_is_cold`]).
pub(crate) fn read_exact_at(r: &mut impl PositionalRead, len: usize, probe: bool) -> Result<Vec<u8>, ReadError> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    let mut nowait = probe && len > 0;
    // Regular files do not return EAGAIN without RWF_NOWAIT, or EINTR forever; the bound keeps
    // a misbehaving file system from spinning the run.
    let mut retries = 0u32;
    while done < len {
        match r.read_at(&mut buf[done..], done as u64, nowait) {
            Ok(0) => return Err(ReadError::Changed),
            Ok(n) => {
                if nowait {
                    note_probe(done + n < len);
                    nowait = false;
                }
                done += n.min(len - done);
                retries = 0;
            }
            Err(e) if nowait => {
                nowait = false;
                match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                    Errno::EAGAIN => note_probe(true),
                    Errno::EOPNOTSUPP | Errno::EINVAL | Errno::ENOSYS => NOWAIT_REFUSED.store(true, Ordering::Relaxed),
                    Errno::EINTR => {}
                    _ => return Err(ReadError::Io(e)),
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) && retries < 1000 => {
                retries += 1;
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    // Growth shows in the size and times taken after the read (see MessageFile::read).
    Ok(buf)
}

static SOURCE_COLD: AtomicBool = AtomicBool::new(false);
static PROBES: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

/// Counts a probing read. A few misses in a warm cache (pages reclaimed under memory pressure)
/// do not make the source cold: at least 32 misses, and one read in four.
fn note_probe(missed: bool) {
    let probes = PROBES.fetch_add(1, Ordering::Relaxed) + 1;
    if missed {
        let misses = MISSES.fetch_add(1, Ordering::Relaxed) + 1;
        if cold_by(probes, misses) {
            SOURCE_COLD.store(true, Ordering::Relaxed);
        }
    }
}

fn cold_by(probes: u64, misses: u64) -> bool {
    misses >= 32 && misses * 4 >= probes
}
/// The file system or kernel does not do `RWF_NOWAIT` reads: no cache probing, no hints.
static NOWAIT_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether source message files were found missing from the page cache in this process (see
/// [`note_probe`]). From a cold cache,
/// reading small files one after another leaves the disk idle between requests (one 20 KiB
/// file per round trip); hinting many files at once lets it work through a queue of them
/// (4.5× faster on the bench's 47,593 files), while on a warm cache the hints would only cost
/// syscalls.
pub fn source_is_cold() -> bool {
    SOURCE_COLD.load(Ordering::Relaxed)
}

/// The file times a directory's file system can store, as (earliest, latest) seconds: the
/// kernel clamps any other time silently (ext4: 1901-12-13 to 2446-05-10), so a date outside
/// must be stored as the nearest end, said so, and compared as stored. Found by timing an
/// unnamed file (`O_TMPFILE`) that never appears in the directory; `None` where that is not
/// possible (a read-only target, no `O_TMPFILE`).
pub fn time_bounds(dir: &Path) -> Option<(i64, i64)> {
    let d = Dir::open_root(dir).ok()?;
    let f = d.create_unnamed(0o600).ok()?;
    let far = 3_000_000_000_000i64; // ±95,000 years: past every file system's range
    let mut out = [0i64; 2];
    for (i, t) in [-far, far].into_iter().enumerate() {
        let ts = TimeSpec::new(t, 0);
        nix::sys::stat::futimens(f.as_raw_fd(), &ts, &ts).ok()?;
        out[i] = nix::sys::stat::fstat(f.as_raw_fd()).ok()?.st_mtime;
    }
    Some((out[0], out[1]))
}

/// A file's bytes: memory-mapped, or read when mapping is not possible (empty files, special
/// file systems).
pub enum Mapped {
    /// The guard is declared first so it is dropped first: the range leaves the SIGBUS table
    /// before it is unmapped and could be reused.
    Map {
        guard: Option<sigbus::Guard>,
        map: Mmap,
    },
    Buf(Vec<u8>),
}

impl Mapped {
    pub fn new(file: &File, path: &Path) -> Result<Mapped> {
        let len = file.metadata().at(path)?.len();
        if len == 0 {
            return Ok(Mapped::Buf(Vec::new()));
        }
        // SAFETY: the mapping is read-only and private to this process. A source changed under
        // us by another process is the documented hazard of reading a live mbox; the splitter
        // only ever indexes inside the slice it was given, so a changed file gives wrong
        // messages at worst, never out-of-bounds reads. A truncated file would raise SIGBUS:
        // the guard turns that into zero pages and a flag ([`Mapped::faulted`]), and callers
        // check [`Mapped::faulted`] and the file's stamp before they commit what they read.
        match unsafe { Mmap::map(file) } {
            Ok(m) => {
                #[cfg(target_os = "linux")]
                let _ = m.advise(memmap2::Advice::Sequential);
                let guard = sigbus::Guard::register(m.as_ptr() as usize, m.len());
                Ok(Mapped::Map { guard, map: m })
            }
            Err(_) => {
                let mut buf = Vec::new();
                let mut f = file;
                f.read_to_end(&mut buf).at(path)?;
                Ok(Mapped::Buf(buf))
            }
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Mapped::Map { map, .. } => map,
            Mapped::Buf(b) => b,
        }
    }

    /// Whether a read of the mapping hit a page past the file's end (the file shrank since it
    /// was mapped): the bytes from there on read as zeros and must not be trusted.
    pub fn faulted(&self) -> bool {
        match self {
            Mapped::Map { guard, .. } => guard.as_ref().is_some_and(sigbus::Guard::faulted),
            Mapped::Buf(_) => false,
        }
    }

    /// Asks the kernel to start reading `len` bytes from `offset` into the page cache now, so
    /// a cold file is read from disk while earlier messages are being written.
    pub fn will_need(&self, offset: usize, len: usize) {
        if let Mapped::Map { map: m, .. } = self {
            let start = offset.min(m.len()) & !4095;
            let len = len.min(m.len() - start);
            if len > 0 {
                let _ = m.advise_range(memmap2::Advice::WillNeed, start, len);
            }
        }
    }

    /// Tells the kernel the pages before `offset` are not needed any more, so the process's
    /// resident memory does not grow with the file.
    pub fn release_before(&self, offset: usize) {
        if let Mapped::Map { map: m, .. } = self {
            let len = offset.min(m.len()) & !4095;
            if len > 0 {
                // SAFETY: the mapping is private, read-only and never written, so dropping its
                // pages loses nothing: a later access reads them again from the file (or, past
                // a truncation, the guard's zero pages).
                let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, len) };
            }
        }
    }
}

/// Survives SIGBUS from mapped files that shrink while they are read (a mail client expunged
/// from a source mbox): a fault inside a registered mapping gets anonymous zero pages mapped
/// over the rest of that mapping, the mapping is flagged, and the read goes on; any other
/// SIGBUS keeps its previous disposition. The alternative, reading through bounded buffers,
/// would give up the borrowed slices every reader relies on.
pub mod sigbus {
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    struct Slot {
        start: AtomicUsize,
        len: AtomicUsize,
        faulted: AtomicBool,
    }

    /// More mappings than folders read at once by any run; past this a mapping is unguarded.
    const SLOTS: usize = 1024;
    static TABLE: [Slot; SLOTS] =
        [const { Slot { start: AtomicUsize::new(0), len: AtomicUsize::new(0), faulted: AtomicBool::new(false) } };
            SLOTS];
    static PAGE: AtomicUsize = AtomicUsize::new(4096);
    static INSTALL: Once = Once::new();
    static PREVIOUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();

    /// A registered mapping; unregistered when dropped.
    #[derive(Debug)]
    pub struct Guard(usize);

    impl Guard {
        pub fn register(start: usize, len: usize) -> Option<Guard> {
            if start == 0 || len == 0 || !install() {
                return None;
            }
            for (i, s) in TABLE.iter().enumerate() {
                if s.start.load(SeqCst) == 0 && s.len.compare_exchange(0, len, SeqCst, SeqCst).is_ok() {
                    s.faulted.store(false, SeqCst);
                    s.start.store(start, SeqCst);
                    return Some(Guard(i));
                }
            }
            None
        }

        pub fn faulted(&self) -> bool {
            TABLE[self.0].faulted.load(SeqCst)
        }
    }

    /// Whether `[start, start + len)` lies inside one registered mapping (all of them are
    /// read-only, private mappings of files, or the zero pages put over a truncated end).
    pub fn covers(start: usize, len: usize) -> bool {
        TABLE.iter().any(|s| {
            let (a, l) = (s.start.load(SeqCst), s.len.load(SeqCst));
            a != 0 && start >= a && start - a + len <= l
        })
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let s = &TABLE[self.0];
            s.start.store(0, SeqCst);
            s.len.store(0, SeqCst);
        }
    }

    fn install() -> bool {
        INSTALL.call_once(|| {
            // SAFETY: sysconf has no memory effects.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if page > 0 {
                PAGE.store(page as usize, SeqCst);
            }
            // SAFETY: a zeroed sigaction is valid; the handler only uses async-signal-safe
            // calls (mmap, sigaction) and atomics.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigbus;
                sa.sa_sigaction = handler as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, &sa, &mut old) == 0 {
                    let _ = PREVIOUS.set(old);
                }
            }
        });
        PREVIOUS.get().is_some()
    }

    extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let addr = unsafe { (*info).si_addr() } as usize;
        let page = PAGE.load(SeqCst);
        for s in &TABLE {
            let start = s.start.load(SeqCst);
            let len = s.len.load(SeqCst);
            if start == 0 || addr < start || addr - start >= len {
                continue;
            }
            let from = addr & !(page - 1);
            let end = (start + len).div_ceil(page) * page;
            // SAFETY: [from, end) lies inside a live read-only mapping of ours (its guard is
            // dropped before it is unmapped); replacing its pages with zeros changes only
            // what this process reads there, and the flag says those bytes are not the file.
            let p = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    end - from,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                s.faulted.store(true, SeqCst);
                return;
            }
        }
        // Not a guarded mapping: back to the previous disposition; the access faults again.
        if let Some(old) = PREVIOUS.get() {
            // SAFETY: restores a sigaction the kernel gave us.
            unsafe { libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut()) };
        }
    }
}

/// Owner for everything written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn apply(self, fd: RawFd, path: &Path) -> Result<()> {
        nix::unistd::fchown(fd, Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid))).at(path)
    }
}

/// An open directory of a target tree.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    pub path: PathBuf,
}

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
        let fd = dir.fd.try_clone().at(&dir.path)?;
        let shared = std::sync::Arc::new(SyncShared {
            state: std::sync::Mutex::new(SyncState::default()),
            turn: std::sync::Condvar::new(),
            path: dir.path.clone(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mailmover-sync".into())
            .spawn(move || run_syncs(&s, || nix::unistd::syncfs(fd.as_raw_fd()).map_err(|e| e.to_string())))
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

/// How an unnamed (`O_TMPFILE`) file is linked into a directory: by its descriptor
/// (`AT_EMPTY_PATH`, which needs `CAP_DAC_READ_SEARCH`) or through `/proc/self/fd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkVia {
    EmptyPath,
    ProcFd,
}

/// How many descriptors may be held across calls at once ([`FdSlot`]): half the soft limit,
/// after raising it towards the hard limit (the usual soft limit of 1,024 would be one batch).
pub fn held_fd_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 0;
            }
            let want = lim.rlim_max.min(65_536);
            if want > lim.rlim_cur {
                let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = want;
                }
            }
        }
        (lim.rlim_cur / 2) as usize
    })
}

/// Descriptors held open across calls (unnamed files waiting for their sync, source files
/// opened ahead of their read), across all folders.
static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One descriptor of the budget [`held_fd_budget`], given back when dropped.
#[derive(Debug)]
pub struct FdSlot;

impl FdSlot {
    pub fn take() -> Option<FdSlot> {
        let budget = held_fd_budget();
        HELD.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < budget).then_some(n + 1)).ok().map(|_| FdSlot)
    }

    /// Descriptors held now.
    pub fn held() -> usize {
        HELD.load(Ordering::Acquire)
    }
}

/// Serialises the unit tests that count [`FdSlot`]s, so one's slots do not show in another's count.
#[cfg(test)]
pub static SLOT_COUNT_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for FdSlot {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::AcqRel);
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl Dir {
    /// Opens (creating it and its parents if needed) the root of a target. The root itself is
    /// named by the user, so a symlink there is followed; nothing below it is.
    pub fn create_root(path: &Path, mode: u32, owner: Option<Owner>) -> Result<Dir> {
        if !path.exists() {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).at(parent)?;
            }
            match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e).at(path),
            }
            let d = Dir::open_root(path)?;
            fchmod(d.raw(), mode, path)?;
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let owner = match owner {
                Some(o) => Some(o),
                None => Dir::open_root(parent).ok().and_then(|p| p.owner_for_new(None)),
            };
            if let Some(o) = owner {
                o.apply(d.raw(), path)?;
            }
            return Ok(d);
        }
        Dir::open_root(path)
    }

    pub fn open_root(path: &Path) -> Result<Dir> {
        let fd =
            nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).at(path)?;
        Ok(Dir { fd: owned(fd), path: path.to_path_buf() })
    }

    /// Opens `dir`, a directory at or below the target `root`: the root as given (an admin's
    /// path may go through links), every level below it without following a link.
    pub fn open_beneath(root: &Path, dir: &Path) -> Result<Dir> {
        let rel = dir.strip_prefix(root).map_err(|_| Error::bad(dir, "internal: not below the target root"))?;
        let mut d = Dir::open_root(if root.as_os_str().is_empty() { Path::new(".") } else { root })?;
        for c in rel.components() {
            match c {
                std::path::Component::Normal(name) => {
                    d = d.open(name)?.ok_or_else(|| Error::bad(d.path.join(name), "no such directory"))?;
                }
                std::path::Component::CurDir => {}
                _ => return Err(Error::bad(dir, "internal: not a plain path below the target root")),
            }
        }
        Ok(d)
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// This directory opened again, through its descriptor.
    pub fn reopen(&self) -> Result<Dir> {
        let fd = nix::fcntl::openat(Some(self.raw()), ".", dir_flags(), Mode::empty()).at(&self.path)?;
        Ok(Dir { fd: owned(fd), path: self.path.clone() })
    }

    /// Opens the subdirectory `name`, refusing a symlink.
    pub fn open(&self, name: &OsStr) -> Result<Option<Dir>> {
        let path = self.path.join(name);
        match nix::fcntl::openat(Some(self.raw()), name, dir_flags(), Mode::empty()) {
            Ok(fd) => Ok(Some(Dir { fd: owned(fd), path })),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) if self.is_symlink(name) => {
                Err(Error::bad(path, "is a symlink in the target; nothing is written through it"))
            }
            Err(e) => Err(e).at(&path),
        }
    }

    fn is_symlink(&self, name: &OsStr) -> bool {
        nix::sys::stat::fstatat(Some(self.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
    }

    /// Opens or creates the subdirectory `name` (mode and owner applied on creation only).
    pub fn create(&self, name: &OsStr, mode: u32, owner: Option<Owner>) -> Result<Dir> {
        if let Some(d) = self.open(name)? {
            return Ok(d);
        }
        let path = self.path.join(name);
        match nix::sys::stat::mkdirat(Some(self.raw()), name, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).at(&path),
        }
        let d = self.open(name)?.ok_or_else(|| Error::bad(&path, "directory vanished after creation"))?;
        fchmod(d.raw(), mode, &path)?;
        if let Some(o) = self.owner_for_new(owner) {
            o.apply(d.raw(), &path)?;
        }
        Ok(d)
    }

    /// Another descriptor of the same directory.
    pub fn try_clone(&self) -> Result<Dir> {
        Ok(Dir { fd: self.fd.try_clone().at(&self.path)?, path: self.path.clone() })
    }

    /// What `name` is here, not following a symlink; `None` when it does not exist.
    pub fn stat_at(&self, name: &OsStr) -> Result<Option<Entry>> {
        match nix::sys::stat::fstatat(Some(self.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Entry::of(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e).at(&self.path.join(name)),
        }
    }

    /// This directory's owner and mode.
    pub fn stat(&self) -> Result<Entry> {
        nix::sys::stat::fstat(self.raw()).map(|st| Entry::of(&st)).at(&self.path)
    }

    /// Opens the regular file `name` here, refusing a symlink, a FIFO or anything else that is
    /// not a regular file (checked on the descriptor, before any read); `None` when absent.
    /// `write` opens it read-write (an fcntl write lock needs that).
    pub fn open_file(&self, name: &OsStr, write: bool) -> Result<Option<File>> {
        let path = self.path.join(name);
        let access = if write { OFlag::O_RDWR } else { OFlag::O_RDONLY };
        let flags = access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::openat(Some(self.raw()), name, flags, Mode::empty()) {
            Ok(fd) => owned(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) if self.is_symlink(name) => {
                return Err(Error::bad(path, "is a symlink in the target; nothing is written through it"));
            }
            Err(e) => return Err(e).at(&path),
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).at(&path)?;
        if Entry::of(&st).kind != FileKind::File {
            return Err(Error::bad(path, "not a regular file; not read or written"));
        }
        // Reads of a regular file never block; O_NONBLOCK was there for the FIFO case only.
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).at(&path)?;
        Ok(Some(File::from(fd)))
    }

    /// The owner to give what is created in this directory: `given` (`--owner`) when there is
    /// one; else, when running as root, this directory's owner and group, as Dovecot gives a
    /// user's new mail files their mail directory's owner (a root-owned message in a user's
    /// Maildir is one their Dovecot cannot read). `None`: nothing to change, the kernel's
    /// choice (the running user) is right.
    pub fn owner_for_new(&self, given: Option<Owner>) -> Option<Owner> {
        if given.is_some() || !running_as_root() {
            return given;
        }
        let st = nix::sys::stat::fstat(self.raw()).ok()?;
        let o = Owner { uid: st.st_uid, gid: st.st_gid };
        let me = Owner { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw() };
        (o != me).then_some(o)
    }

    /// Removes the temporary files ([`temp_name`]) that killed runs left here: those whose
    /// run is gone, and those older than a day whatever their pid says (the pid was reused).
    /// Only regular files are touched; returns how many were removed.
    pub fn remove_leftovers(&self) -> usize {
        self.remove_leftovers_where(&|_| true)
    }

    /// [`Dir::remove_leftovers`], for the temporary names `pick` accepts.
    pub fn remove_leftovers_where(&self, pick: &dyn Fn(&[u8]) -> bool) -> usize {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let me = std::process::id() as i32;
        let mut n = 0;
        for name in self.names() {
            let Some(pid) = temp_pid(&name).filter(|_| pick(&name)) else { continue };
            let name = OsStr::from_bytes(&name);
            let Ok(st) = nix::sys::stat::fstatat(Some(self.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            let stale = now.saturating_sub(st.st_mtime) > LEFTOVER_AGE_SECS;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG
                && pid != me
                && (stale || !pid_alive(pid))
                && self.unlink(name).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    /// The names in this directory, listed through its descriptor (a directory swapped for a
    /// link after it was opened is not what is listed).
    fn names(&self) -> Vec<Vec<u8>> {
        let listed =
            std::fs::read_dir(format!("/proc/self/fd/{}", self.raw())).or_else(|_| std::fs::read_dir(&self.path));
        listed
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name().as_bytes().to_vec())).collect())
            .unwrap_or_default()
    }

    pub fn exists(&self, name: &OsStr) -> bool {
        nix::sys::stat::fstatat(Some(self.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// Creates `name` exclusively (never through a symlink) for writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> Result<File> {
        let path = self.path.join(name);
        let fd = nix::fcntl::openat(
            Some(self.raw()),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .at(&path)?;
        let f = File::from(owned(fd));
        if mode & !process_umask() != mode {
            fchmod(f.as_raw_fd(), mode, &path)?;
        }
        Ok(f)
    }

    /// Opens a file with no name on this directory's file system (`O_TMPFILE`): it is invisible
    /// until [`Dir::link_unnamed`] names it, and vanishes with the process if that never happens.
    pub fn create_unnamed(&self, mode: u32) -> Result<File> {
        let fd = nix::fcntl::openat(
            Some(self.raw()),
            ".",
            OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .at(&self.path)?;
        let f = File::from(owned(fd));
        if mode & !process_umask() != mode {
            fchmod(f.as_raw_fd(), mode, &self.path)?;
        }
        Ok(f)
    }

    /// Gives the unnamed file `f` the name `name` here; fails if the name exists.
    pub fn link_unnamed(&self, f: &File, via: LinkVia, name: &OsStr) -> Result<()> {
        let path = self.path.join(name);
        match via {
            LinkVia::EmptyPath => nix::unistd::linkat(
                Some(f.as_raw_fd()),
                OsStr::new(""),
                Some(self.raw()),
                name,
                nix::fcntl::AtFlags::AT_EMPTY_PATH,
            ),
            LinkVia::ProcFd => {
                let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
                nix::unistd::linkat(
                    None,
                    OsStr::new(&proc),
                    Some(self.raw()),
                    name,
                    nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                )
            }
        }
        .at(&path)
    }

    /// Whether unnamed files can be made and named in this directory, and how: tried with a
    /// throwaway file (`probe_name` is unlinked again). `None` where the file system or the
    /// process cannot (no `O_TMPFILE`, no privilege for `AT_EMPTY_PATH` and no `/proc`).
    pub fn probe_unnamed(&self, probe_name: &OsStr) -> Option<LinkVia> {
        let f = self.create_unnamed(0o600).ok()?;
        let _ = self.unlink(probe_name);
        for via in [LinkVia::EmptyPath, LinkVia::ProcFd] {
            if self.link_unnamed(&f, via, probe_name).is_ok() {
                let _ = self.unlink(probe_name);
                return Some(via);
            }
        }
        None
    }

    /// Moves `name` from this directory to `to/new_name`; fails if the target name exists.
    pub fn rename_noreplace(&self, name: &OsStr, to: &Dir, new_name: &OsStr) -> Result<()> {
        nix::fcntl::renameat2(Some(self.raw()), name, Some(to.raw()), new_name, RenameFlags::RENAME_NOREPLACE)
            .at(&to.path.join(new_name))
    }

    /// Replaces `to/new_name` by `name` (for files only mailmover writes: keyword lists, state).
    pub fn rename_replace(&self, name: &OsStr, to: &Dir, new_name: &OsStr) -> Result<()> {
        nix::fcntl::renameat(Some(self.raw()), name, Some(to.raw()), new_name).at(&to.path.join(new_name))
    }

    pub fn unlink(&self, name: &OsStr) -> Result<()> {
        nix::unistd::unlinkat(Some(self.raw()), name, nix::unistd::UnlinkatFlags::NoRemoveDir).at(&self.path.join(name))
    }

    pub fn set_times(&self, name: &OsStr, secs: i64) -> Result<()> {
        let t = TimeSpec::new(secs, 0);
        nix::sys::stat::utimensat(Some(self.raw()), name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .at(&self.path.join(name))
    }

    pub fn fsync(&self) -> Result<()> {
        nix::unistd::fsync(self.raw()).at(&self.path)
    }

    /// Flushes every dirty page of the file system this directory is on: one call makes a
    /// whole batch of written files durable, far cheaper than an fsync per file.
    pub fn syncfs(&self) -> Result<()> {
        nix::unistd::syncfs(self.raw()).at(&self.path)
    }

    /// Writes a small file atomically: a temporary name ([`temp_name`]) in this directory, owned
    /// as [`Dir::owner_for_new`] says, then rename over `name`.
    pub fn write_atomic(&self, name: &str, data: &[u8], mode: u32, owner: Option<Owner>, durable: bool) -> Result<()> {
        let tmp = temp_name(OsStr::new(name));
        let tmp = tmp.as_os_str();
        let owner = self.owner_for_new(owner);
        let _ = self.unlink(tmp);
        let mut f = self.create_file(tmp, mode)?;
        let path = self.path.join(name);
        let r = (|| {
            f.write_all(data).at(&path)?;
            if let Some(o) = owner {
                o.apply(f.as_raw_fd(), &path)?;
            }
            if durable {
                f.sync_all().at(&path)?;
            }
            self.rename_replace(tmp, self, OsStr::new(name))
        })();
        if r.is_err() {
            let _ = self.unlink(tmp);
        }
        r
    }

    /// Names in the directory (not `.`/`..`) with their d_type hint.
    pub fn list(&self) -> Result<Vec<(Vec<u8>, Option<FileKind>)>> {
        list_dir(&self.path)
    }
}

/// The process umask, read once (reading it means setting it, so it is done before any other
/// thread could create files).
pub fn process_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
        nix::sys::stat::umask(old);
        old.bits()
    })
}

fn fchmod(fd: RawFd, mode: u32, path: &Path) -> Result<()> {
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode)).at(path)
}

/// What `fstat` says about a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: FileKind,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
}

impl Entry {
    fn of(st: &libc::stat) -> Entry {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        };
        Entry { kind, uid: st.st_uid, gid: st.st_gid, mode: st.st_mode & 0o7777, dev: st.st_dev, ino: st.st_ino }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl FileKind {
    pub fn of(ft: std::fs::FileType) -> FileKind {
        if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        }
    }
}

/// Directory entries with their types, sorted by name (so output does not depend on the file
/// system's order).
pub fn list_dir(path: &Path) -> Result<Vec<(Vec<u8>, Option<FileKind>)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).at(path)? {
        let e = e.at(path)?;
        let kind = e.file_type().ok().map(FileKind::of);
        out.push((e.file_name().as_bytes().to_vec(), kind));
    }
    out.sort();
    Ok(out)
}

/// Writes `pieces` to `f`; returns the size, SHA-256 and bare-LF count of what was written.
/// The bytes are written first and hashed after, a block at a time: the copy into the page
/// cache brings them into the CPU cache, where SHA-256 runs about half as fast again as on bytes
/// still in memory (measured: 1.2 GB/s from memory, 1.6 GB/s for the copy and the hash together).
pub fn write_pieces(f: &mut File, pieces: &[&[u8]], path: &Path) -> Result<(u64, [u8; 32], u64)> {
    const BLOCK: usize = 256 << 10;
    let mut h = Sha256::new();
    let mut lfs = BareLfs::default();
    let mut n = 0u64;
    let mut block: Vec<&[u8]> = Vec::with_capacity(pieces.len().min(16));
    let mut block_len = 0;
    let mut flush = |block: &mut Vec<&[u8]>| -> Result<()> {
        write_all_vectored(f, block, path)?;
        for s in block.drain(..) {
            h.update(s);
            lfs.update(s);
        }
        Ok(())
    };
    for p in pieces {
        n += p.len() as u64;
        let mut done = 0;
        for w in windows(p) {
            done += w.len();
            let mut rest = w;
            while !rest.is_empty() {
                let take = (BLOCK - block_len).min(rest.len());
                block.push(&rest[..take]);
                block_len += take;
                rest = &rest[take..];
                if block_len == BLOCK {
                    flush(&mut block)?;
                    block_len = 0;
                }
            }
            if w.len() >= WINDOW / 2 {
                // Written and hashed: a big mapped piece's pages can go.
                if !block.is_empty() {
                    flush(&mut block)?;
                    block_len = 0;
                }
                release_through(p, done);
            }
        }
    }
    if !block.is_empty() {
        flush(&mut block)?;
    }
    Ok((n, h.finalize().into(), lfs.n))
}

fn write_all_vectored(f: &mut File, pieces: &[&[u8]], path: &Path) -> Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = pieces.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)).at(path),
            Ok(k) => io::IoSlice::advance_slices(&mut rest, k),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).at(path),
        }
    }
    Ok(())
}

/// Starts writing `len` bytes of `f` from `offset` (0: to the end) to disk without waiting, so
/// the `fsync` that makes them durable later finds most of the work done while the CPU went on.
/// Best effort: where it is not supported, the later sync does all of it. Worth it for big
/// ranges only: a small file kicked on its own costs one disk request (and, in a VM, one exit)
/// that the batch `syncfs` would have merged with its neighbours.
pub fn start_writeback_range(f: &File, offset: u64, len: u64) {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: plain syscall on a descriptor this `File` owns; no memory is passed.
    let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Number of LFs not preceded by CR, across piece boundaries (for Dovecot's `,W=` size).
pub fn bare_lf_count(pieces: &[&[u8]]) -> u64 {
    let mut c = BareLfs::default();
    for p in pieces {
        c.update(p);
    }
    c.n
}

/// [`bare_lf_count`] fed piece by piece: every LF minus every CRLF, both counted with
/// vectorised searches (the CRLF search only where a CR occurs at all).
#[derive(Default)]
struct BareLfs {
    n: u64,
    prev: u8,
}

impl BareLfs {
    fn update(&mut self, p: &[u8]) {
        let lfs = memchr::memchr_iter(b'\n', p).count() as u64;
        let mut crlfs = 0;
        if memchr::memchr(b'\r', p).is_some() {
            crlfs = memchr::memmem::find_iter(p, b"\r\n").count() as u64;
        }
        if self.prev == b'\r' && p.first() == Some(&b'\n') {
            crlfs += 1;
        }
        self.n += lfs - crlfs;
        if let Some(&l) = p.last() {
            self.prev = l;
        }
    }
}

pub fn sha256_pieces(pieces: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in pieces {
        let mut done = 0;
        for w in windows(p) {
            h.update(w);
            done += w.len();
            release_through(p, done);
        }
    }
    h.finalize().into()
}

/// Pieces bigger than this are read in windows whose mapped pages are let go behind them.
pub const WINDOW: usize = 8 << 20;

/// A piece in windows of [`WINDOW`] bytes (one window when it is smaller).
pub fn windows(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.chunks(WINDOW.max(1)).chain(p.is_empty().then_some(p))
}

/// Lets go of the pages of `p` read so far (up to `done`): the last two windows, so that a
/// page a window boundary cut in two goes too (the kernel maps whole folios around a fault).
pub fn release_through(p: &[u8], done: usize) {
    release_read(&p[done.saturating_sub(2 * WINDOW)..done.min(p.len())]);
}

/// Lets go of the pages of `b` when it lies in a mapped source file: a message bigger than
/// memory is read through once, not held (peak memory stays flat for a 1.5 GiB message).
/// Anything else (heap memory) is left alone; small slices are not worth a system call.
pub fn release_read(b: &[u8]) {
    if b.len() < WINDOW / 2 || !sigbus::covers(b.as_ptr() as usize, b.len()) {
        return;
    }
    let page = 4096usize;
    let start = (b.as_ptr() as usize).div_ceil(page) * page;
    let end = (b.as_ptr() as usize + b.len()) & !(page - 1);
    if end > start {
        // SAFETY: the range lies inside a registered mapping, which is read-only and private
        // and never written: dropping its pages loses nothing, a later read maps them again
        // from the file (or the zero pages of a truncated end).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// Whether the process `pid` is alive (for cleaning temporary files of crashed runs).
pub fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Opens one of mailmover's own files in a target (a cache, a state, the record of copies) or
/// a Dovecot keyword list for reading. They are data a mailbox owner can replace, not trust: a
/// symlink is never followed, a FIFO or device is never opened (checked with `lstat`, then the
/// open is `O_NOFOLLOW | O_NONBLOCK` and the descriptor's `fstat` must say regular file), and a
/// file bigger than `max` is not read. `Ok(None)`: there is none.
pub fn open_own_file(path: &Path, max: u64) -> Result<Option<(File, u64)>> {
    // lstat first: opening a device node can have effects of its own.
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
        Ok(m) if m.file_type().is_symlink() => return Err(Error::bad(path, "is a symlink; not followed")),
        Ok(m) if !m.is_file() => return Err(Error::bad(path, "not a regular file (FIFO, device or directory)")),
        Ok(_) => {}
    }
    let f = match open_source_nofollow(path) {
        Err(e) if e.is_not_found() => return Ok(None),
        r => r?,
    };
    let md = f.metadata().at(path)?;
    if !md.is_file() {
        return Err(Error::bad(path, "not a regular file (FIFO, device or directory)"));
    }
    if md.len() > max {
        return Err(Error::bad(path, format!("{} bytes, more than the {max} such a file may have", md.len())));
    }
    Ok(Some((f, md.len())))
}

/// [`open_own_file`], read whole (never more than `max` bytes, even if it grows meanwhile).
pub fn read_own_file(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let Some((f, len)) = open_own_file(path, max)? else { return Ok(None) };
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(max.saturating_add(1)).read_to_end(&mut buf).at(path)?;
    if buf.len() as u64 > max {
        return Err(Error::bad(path, format!("grew past the {max} bytes such a file may have while it was read")));
    }
    Ok(Some(buf))
}

/// The identity of a target folder that its caches and state record: the device and inode of
/// its directory and its real path. A cache found in another directory (a folder copied with
/// its files, a cache planted by hand) does not match and is not trusted. `None` when the
/// directory cannot be looked at.
pub fn folder_id(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let real = dir.canonicalize().ok()?;
    let md = std::fs::symlink_metadata(&real).ok()?;
    md.is_dir().then(|| format!("{}:{} {}", md.dev(), md.ino(), real.as_os_str().as_bytes().escape_ascii()))
}

/// Whether this process runs as root (checked once).
fn running_as_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| nix::unistd::geteuid().is_root())
}

/// How long a temporary file of a run whose pid is alive is left alone: past this its pid
/// was given to another process (or the run hangs).
const LEFTOVER_AGE_SECS: i64 = 24 * 3600;

/// The temporary name under which `name` is written beside it before it is renamed into place:
/// a dot-file ending in `.lock` (Dovecot lists no `*.lock` name as a mailbox, Maildir readers
/// no plain file, mailmover's readers none of these) that names its writer's pid, so a later
/// run can tell a killed run's leftover from a running one's file.
pub fn temp_name(name: &OsStr) -> std::ffi::OsString {
    let mut t = std::ffi::OsString::from(".");
    t.push(name);
    t.push(format!(".mailmover-{}.tmp.lock", std::process::id()));
    t
}

/// The pid in a name [`temp_name`] made, or an older version of mailmover made
/// (`.NAME.mailmover-PID.tmp`, `.NAME.mailmover-PID`, `.mailmover-cache.PID`,
/// `.mailmover-source-cache.PID`); `None` for any other name.
pub fn temp_pid(name: &[u8]) -> Option<i32> {
    let digits = |d: &[u8]| -> Option<i32> {
        (!d.is_empty() && d.iter().all(u8::is_ascii_digit)).then(|| std::str::from_utf8(d).ok()?.parse().ok())?
    };
    let rest = name.strip_prefix(b".")?;
    for old in [&b"mailmover-cache."[..], b"mailmover-source-cache."] {
        if let Some(pid) = rest.strip_prefix(old).and_then(digits) {
            return Some(pid);
        }
    }
    let at = memchr::memmem::rfind(rest, b".mailmover-")?;
    let tail = &rest[at + ".mailmover-".len()..];
    let tail = tail.strip_suffix(b".lock").unwrap_or(tail);
    let tail = tail.strip_suffix(b".tmp").unwrap_or(tail);
    (at > 0).then(|| digits(tail))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `path` in the page cache (mincore on a mapping does not read anything in).
    fn cached_pages(path: &Path) -> usize {
        let f = File::open(path).unwrap();
        let m = unsafe { Mmap::map(&f) }.unwrap();
        let pages = m.len().div_ceil(4096);
        let mut v = vec![0u8; pages];
        assert_eq!(unsafe { libc::mincore(m.as_ptr() as *mut _, m.len(), v.as_mut_ptr()) }, 0);
        v.iter().filter(|b| *b & 1 == 1).count()
    }

    fn evict(path: &Path) {
        let f = File::open(path).unwrap();
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }

    /// A read that has to wait for the disk marks the source cold; a hint brings a file into
    /// the page cache without reading it.
    #[test]
    fn cold_reads_are_noticed_and_hints_fill_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("msg");
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let mut f = File::create(&path).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        evict(&path);
        if cached_pages(&path) > 0 {
            eprintln!("this file system keeps file pages in memory (tmpfs?): nothing to observe");
            return;
        }
        let ahead = MessageFile::open(&path, false).unwrap();
        ahead.will_need();
        let t0 = std::time::Instant::now();
        while cached_pages(&path) < 256 {
            assert!(t0.elapsed().as_secs() < 20, "the hint did not bring the file into the cache");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(ahead.read(&path).unwrap(), data, "a file opened ahead reads whole");
        // Misses are counted (other tests may probe meanwhile: counters only grow), and enough
        // of them make the source cold; reads stay whole either way.
        let misses = MISSES.load(Ordering::Relaxed);
        evict(&path);
        assert_eq!(read_message_file(&path, false).unwrap(), data);
        assert!(MISSES.load(Ordering::Relaxed) > misses || NOWAIT_REFUSED.load(Ordering::Relaxed) || source_is_cold());
        let small = tmp.path().join("small");
        std::fs::write(&small, &data[..4096]).unwrap();
        File::open(&small).unwrap().sync_all().unwrap();
        for _ in 0..100_000 {
            if source_is_cold() || NOWAIT_REFUSED.load(Ordering::Relaxed) {
                break;
            }
            evict(&small);
            assert_eq!(read_message_file(&small, false).unwrap(), &data[..4096]);
        }
        assert!(source_is_cold() || NOWAIT_REFUSED.load(Ordering::Relaxed));
        evict(&path);
        assert_eq!(read_message_file(&path, false).unwrap(), data);
    }

    /// A file whose reads misbehave as the kernel may: short reads, EAGAIN and EINTR at the
    /// steps `script` says, and a size that may change after the first read.
    struct Flaky {
        data: Vec<u8>,
        script: Vec<u8>,
        step: usize,
        grow_to: Option<usize>,
    }

    impl PositionalRead for Flaky {
        fn read_at(&mut self, buf: &mut [u8], offset: u64, _nowait: bool) -> io::Result<usize> {
            let s = self.script.get(self.step).copied().unwrap_or(0);
            self.step += 1;
            if let Some(n) = self.grow_to.take() {
                self.data.resize(n, b'+');
            }
            match s % 4 {
                1 => return Err(io::Error::from_raw_os_error(libc::EAGAIN)),
                2 => return Err(io::Error::from_raw_os_error(libc::EINTR)),
                _ => {}
            }
            let off = offset as usize;
            let rest = self.data.len().saturating_sub(off);
            let n = if s % 4 == 3 { rest.min(buf.len()).min(1 + s as usize / 4) } else { rest.min(buf.len()) };
            buf[..n].copy_from_slice(&self.data[off..off + n]);
            Ok(n)
        }
    }

    proptest::proptest! {
        #[test]
        fn reads_deliver_exactly_the_bytes(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20_000),
            script in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            probe in proptest::prelude::any::<bool>(),
        ) {
            let mut r = Flaky { data: data.clone(), script, step: 0, grow_to: None };
            let got = read_exact_at(&mut r, data.len(), probe).unwrap();
            proptest::prop_assert!(got == data);
        }

        #[test]
        fn a_file_that_shrank_is_never_returned(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..5_000),
            script in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32),
            delta in -100i64..100,
        ) {
            // Shorter: found by the reads. Longer: by the size taken after them (below).
            let new_len = (data.len() as i64 + delta).max(0) as usize;
            proptest::prop_assume!(new_len < data.len());
            let mut r = Flaky { data: data.clone(), script, step: 0, grow_to: Some(new_len) };
            proptest::prop_assert!(matches!(read_exact_at(&mut r, data.len(), true), Err(ReadError::Changed)));
        }
    }

    /// A file that grew after it was opened is read again at its new size, never returned as
    /// its first part.
    #[test]
    fn a_file_that_grew_is_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m");
        std::fs::write(&path, b"Subject: a\n\nfirst\n").unwrap();
        let m = MessageFile::open(&path, false).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"second\n").unwrap();
        assert_eq!(m.read(&path).unwrap(), b"Subject: a\n\nfirst\nsecond\n");
    }

    /// A file partly in the page cache (its first page read back after eviction) reads whole:
    /// the probe returns a short read and the rest must continue at that offset.
    #[test]
    fn partly_cached_files_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, size) in [4097usize, 9000, 30_000, 200_000].into_iter().enumerate() {
            let path = tmp.path().join(format!("m{i}"));
            let data: Vec<u8> = (0..size).map(|j| (j * 7 + i) as u8).collect();
            let mut f = File::create(&path).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            for _ in 0..20 {
                evict(&path);
                let f = File::open(&path).unwrap();
                let mut head = [0u8; 4096];
                std::os::unix::fs::FileExt::read_at(&f, &mut head, 0).unwrap();
                assert_eq!(read_message_file(&path, false).unwrap(), data, "size {size}");
            }
        }
    }

    #[test]
    fn a_few_misses_do_not_make_a_warm_source_cold() {
        assert!(!cold_by(10, 10), "too few misses to tell");
        assert!(!cold_by(1000, 200), "one read in five missed: pages reclaimed, not a cold source");
        assert!(cold_by(40, 32));
        assert!(cold_by(1000, 250));
    }

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

    #[test]
    fn bare_lfs_across_pieces() {
        assert_eq!(bare_lf_count(&[b"a\r", b"\nb\n"]), 1);
        assert_eq!(bare_lf_count(&[b"a\n", b"\n"]), 2);
        assert_eq!(bare_lf_count(&[b"a\r", b"", b"\n\r\n\n"]), 1);
        // Against a byte-by-byte count, over every split of a mixed text into three pieces.
        let text = b"\r\n\nx\r\r\n\n\rab\n\r";
        let naive = (0..text.len()).filter(|&i| text[i] == b'\n' && (i == 0 || text[i - 1] != b'\r')).count() as u64;
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(bare_lf_count(&[&text[..i], &text[i..j], &text[j..]]), naive, "{i} {j}");
            }
        }
    }

    /// Issue 17: a mapped file truncated while it is read makes reads past its new end give
    /// zeros and flags the mapping, instead of killing the process with SIGBUS.
    #[test]
    fn truncated_mapping_is_flagged_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mbox");
        let data: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&path, &data).unwrap();
        let f = File::open(&path).unwrap();
        let m = Mapped::new(&f, &path).unwrap();
        assert!(!m.faulted());
        assert_eq!(m.bytes()[..4096], data[..4096]);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(1 << 20).unwrap();
        let sum: u64 = m.bytes().iter().map(|&b| u64::from(b)).sum();
        assert!(m.faulted(), "the read past the new end was noticed");
        let whole: u64 = data[..1 << 20].iter().map(|&b| u64::from(b)).sum();
        assert!(sum >= whole && sum < data.iter().map(|&b| u64::from(b)).sum::<u64>());
        // Another mapping is not flagged by this one's fault, and a dropped guard frees its slot.
        let other = Mapped::new(&File::open(&path).unwrap(), &path).unwrap();
        assert!(!other.faulted());
        drop(m);
        assert!(!other.faulted());
    }

    #[test]
    fn symlinked_subdir_refused() {
        let t = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), t.path().join("cur")).unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let e = root.create(OsStr::new("cur"), 0o700, None).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
    }

    /// Issue 18: the temporary names of this and older versions are recognised, with their
    /// pid; mailmover's own files and lock files are not temporary.
    #[test]
    fn temporary_names_and_their_pids() {
        let ours = temp_name(OsStr::new("Sent"));
        assert_eq!(temp_pid(ours.as_bytes()), Some(std::process::id() as i32));
        let ours = ours.to_str().unwrap();
        assert!(ours.starts_with(".Sent.mailmover-") && ours.ends_with(".lock"));
        for (name, pid) in [
            (".Sent.mailmover-12.tmp", Some(12)),
            (".mailmover-cache.mailmover-7.tmp.lock", Some(7)),
            (".dovecot-keywords.mailmover-9", Some(9)),
            (".mailmover-source-cache.44", Some(44)),
            (".INBOX.mailmover-state", None),
            (".mailmover.lock", None),
            (".Sent.mailmover.lock", None),
            ("Sent.mailmover-3.tmp", None),
            (".mailmover-4", None),
        ] {
            assert_eq!(temp_pid(name.as_bytes()), pid, "{name}");
        }
    }

    #[test]
    fn create_file_is_exclusive() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        root.create_file(OsStr::new("x"), 0o600).unwrap();
        assert!(root.create_file(OsStr::new("x"), 0o600).is_err());
    }
}
