//! mailmover's own files in a target (caches, state, the record of copies) and Dovecot keyword
//! lists: read as data a mailbox owner may have replaced, and tied to the folder they describe.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::source::open_source_nofollow;
use crate::error::{At, Error, Result};

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
