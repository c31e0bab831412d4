//! Big source files, mapped instead of read into memory. A message bigger than memory is read
//! through in windows whose pages are let go behind the reader; a file that shrinks under its
//! mapping is survived ([`super::sigbus`]) and flagged, never trusted.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use memmap2::Mmap;

use super::sigbus;
use super::source::FileStamp;
use crate::error::{At, Result};

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
    pub(super) _guard: Option<sigbus::Guard>,
    pub(super) map: Mmap,
    pub(super) file: File,
    pub(super) stamp: FileStamp,
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

/// Maps all of `file` for one pass from start to end, registered with the SIGBUS guard (`None`
/// when its table is full). The guard comes first: dropped with the pair, it goes first.
pub(super) fn map_guarded(file: &File) -> io::Result<(Option<sigbus::Guard>, Mmap)> {
    // SAFETY: the mapping is read-only and private to this process. A source changed under us
    // by another process is the documented hazard of reading a live mailbox; readers only ever
    // index inside the slice they were given, so a changed file gives wrong messages at worst,
    // never out-of-bounds reads. A truncated file would raise SIGBUS: the guard turns that into
    // zero pages and a flag, and callers check the flag and the file's stamp before they commit
    // what they read ([`Mapped::faulted`], [`MappedFile::intact`]).
    let map = unsafe { Mmap::map(file) }?;
    let _ = map.advise(memmap2::Advice::Sequential);
    let guard = sigbus::Guard::register(map.as_ptr() as usize, map.len());
    Ok((guard, map))
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
        match map_guarded(file) {
            Ok((guard, map)) => Ok(Mapped::Map { guard, map }),
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
        // from the file (or the zero pages of a truncated end). libc: nix's madvise is unsafe
        // too, and memmap2's needs the `Mmap`, which the caller's slice does not carry.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
