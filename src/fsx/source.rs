//! Reading source files: opened read-only without touching atime, checked to be regular files
//! before any read, read whole at the size they had when opened, and read again when they
//! change meanwhile. The first read of a file also tells whether the source is in the page
//! cache, which decides whether files are hinted ahead of their read.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

use super::fd_budget::FdSlot;
use super::mapped::{BIG_FILE, FileBytes, MappedFile, map_guarded};
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
        MessageFile::from_file(f, path)
    }

    /// A file already opened (a target's, through its directory's descriptor); `path` names it
    /// in reports.
    pub fn from_file(f: File, path: &Path) -> Result<MessageFile> {
        let md = f.metadata().at(path)?;
        if !md.is_file() {
            return Err(Error::refused(path, "not a regular file"));
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
        let _ = posix_fadvise(self.f.as_raw_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
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
    /// than memory is then read through in windows ([`release_read`](super::release_read))
    /// instead of held.
    pub fn read_any(self, path: &Path) -> Result<FileBytes> {
        if self.len < BIG_FILE {
            return self.read(path).map(FileBytes::Owned);
        }
        let (guard, map) = map_guarded(&self.f).at(path)?;
        if guard.is_none() {
            // Unguarded, a truncation would kill the run: read it instead.
            drop(map);
            return self.read(path).map(FileBytes::Owned);
        }
        Ok(FileBytes::Mapped(MappedFile { _guard: guard, map, file: self.f, stamp: self.stamp }))
    }
}

/// What tells that a file changed while it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileStamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    pub(super) fn of(f: &File) -> io::Result<FileStamp> {
        f.metadata().map(|m| FileStamp::from_metadata(&m))
    }

    fn from_metadata(m: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp { size: m.len(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) }
    }
}

/// Positional reads of one file: the system's, or one that misbehaves on purpose in tests.
trait PositionalRead {
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
        // libc, not nix or std: neither offers preadv2, and its RWF_NOWAIT is what probes the
        // page cache.
        let n = unsafe { libc::preadv2(self.0.as_raw_fd(), &iov, 1, offset, flags) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

#[derive(Debug)]
enum ReadError {
    /// The file is shorter or longer than `len` now.
    Changed,
    Io(io::Error),
}

/// Reads exactly `len` bytes from offset 0, each read continuing where the last one ended; a
/// file that ends sooner has changed. With `probe`, the first read asks not to wait, which tells
/// whether the source is in the page cache (see [`source_is_cold`]).
fn read_exact_at(r: &mut impl PositionalRead, len: usize, probe: bool) -> Result<Vec<u8>, ReadError> {
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use memmap2::Mmap;

    use super::*;

    /// Pages of `path` in the page cache (mincore on a mapping does not read anything in).
    fn cached_pages(path: &Path) -> usize {
        let f = File::open(path).unwrap();
        // SAFETY: read-only and private; only its address is used, never its bytes.
        let m = unsafe { Mmap::map(&f) }.unwrap();
        let pages = m.len().div_ceil(4096);
        let mut v = vec![0u8; pages];
        // SAFETY: `v` has a byte for every 4 KiB of the live mapping, at least one per page
        // (nix has no mincore).
        assert_eq!(unsafe { libc::mincore(m.as_ptr() as *mut _, m.len(), v.as_mut_ptr()) }, 0);
        v.iter().filter(|b| *b & 1 == 1).count()
    }

    fn evict(path: &Path) {
        let f = File::open(path).unwrap();
        let _ = posix_fadvise(f.as_raw_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
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
}
