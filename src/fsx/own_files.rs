//! mailmover's own files in a target (caches, state, the record of copies) and Dovecot keyword
//! lists: read as data a mailbox owner may have replaced, and tied to the folder they describe.
//! In a target they are opened relative to their folder's descriptor ([`Dir::open_own_file`]),
//! so a folder swapped for a link after it was opened is not where they are read from.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::dir::{Dir, FileKind, id_of};
use super::source::open_source_nofollow;
use crate::error::{At, Error, Result};

const SYMLINK: &str = "is a symlink; not followed";
const NOT_A_FILE: &str = "not a regular file (FIFO, device or directory)";

/// Opens one of mailmover's own files in a target (a cache, a state, the record of copies) or
/// a Dovecot keyword list for reading. They are data a mailbox owner can replace, not trust: a
/// symlink is never followed, a FIFO or device is never opened (checked with `lstat`, then the
/// open is `O_NOFOLLOW | O_NONBLOCK` and the descriptor's `fstat` must say regular file), and a
/// file bigger than `max` is not read. `Ok(None)`: there is none. By path: for files outside a
/// target (a source's keyword list, the audit key); a target's go through
/// [`Dir::open_own_file`].
pub fn open_own_file(path: &Path, max: u64) -> Result<Option<(File, u64)>> {
    // lstat first: opening a device node can have effects of its own.
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
        Ok(m) if m.file_type().is_symlink() => return Err(Error::refused(path, SYMLINK)),
        Ok(m) if !m.is_file() => return Err(Error::refused(path, NOT_A_FILE)),
        Ok(_) => {}
    }
    let f = match open_source_nofollow(path) {
        Err(e) if e.is_not_found() => return Ok(None),
        r => r?,
    };
    checked(f, path, max).map(Some)
}

/// The descriptor's `fstat` must say regular file of at most `max` bytes.
fn checked(f: File, path: &Path, max: u64) -> Result<(File, u64)> {
    let md = f.metadata().at(path)?;
    if !md.is_file() {
        return Err(Error::refused(path, NOT_A_FILE));
    }
    if md.len() > max {
        return Err(Error::refused(path, format!("{} bytes, more than the {max} such a file may have", md.len())));
    }
    Ok((f, md.len()))
}

/// Reads `f` whole, never more than `max` bytes even if it grows meanwhile.
fn read_bounded(f: File, len: u64, path: &Path, max: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(max.saturating_add(1)).read_to_end(&mut buf).at(path)?;
    if buf.len() as u64 > max {
        return Err(Error::refused(path, format!("grew past the {max} bytes such a file may have while it was read")));
    }
    Ok(buf)
}

/// [`open_own_file`], read whole (never more than `max` bytes, even if it grows meanwhile).
pub fn read_own_file(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let Some((f, len)) = open_own_file(path, max)? else { return Ok(None) };
    read_bounded(f, len, path, max).map(Some)
}

impl Dir {
    /// [`open_own_file`] for the file `name` of this directory, opened relative to its
    /// descriptor (`fstatat`, then `openat` with `O_NOFOLLOW | O_NONBLOCK`, then `fstat`).
    pub fn open_own_file(&self, name: &OsStr, max: u64) -> Result<Option<(File, u64)>> {
        let path = self.path.join(name);
        // fstatat first: opening a device node can have effects of its own.
        match self.entry_at(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
            Ok(e) if e.kind == FileKind::Symlink => return Err(Error::refused(path, SYMLINK)),
            Ok(e) if e.kind != FileKind::File => return Err(Error::refused(path, NOT_A_FILE)),
            Ok(_) => {}
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::openat(Some(self.raw()), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(Error::refused(path, SYMLINK)),
            Err(e) => return Err(e).at(&path),
        };
        // SAFETY: `fd` was just returned by a successful openat and is owned by nobody else.
        let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        checked(f, &path, max).map(Some)
    }

    /// [`Dir::open_own_file`], read whole (never more than `max` bytes).
    pub fn read_own_file(&self, name: &OsStr, max: u64) -> Result<Option<Vec<u8>>> {
        let Some((f, len)) = self.open_own_file(name, max)? else { return Ok(None) };
        read_bounded(f, len, &self.path.join(name), max).map(Some)
    }
}

/// The identity of a target folder that its caches and state record: the device and inode of
/// its directory and its real path. A cache found in another directory (a folder copied with
/// its files, a cache planted by hand) does not match and is not trusted. `None` when the
/// directory cannot be looked at. Readers of a target take it from the opened folder instead
/// ([`Dir::folder_id`]); both give the same text for the same directory.
pub fn folder_id(dir: &Path) -> Option<String> {
    let fd = nix::fcntl::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    // SAFETY: `fd` was just returned by a successful open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    id_of(fd.as_fd(), dir)
}
