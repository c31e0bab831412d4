//! The guarded target tree: below a target root every directory is opened through its parent's
//! descriptor with `O_NOFOLLOW`, so a symlink planted in a target is refused, not followed;
//! files are created exclusively or unnamed (`O_TMPFILE`) and named without replacing anything.
//! The sweep of what killed runs left under temporary names is `Dir`'s too, in `temp`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::{Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use super::temp::temp_name;
use crate::error::{At, Error, Result};

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

/// How an unnamed (`O_TMPFILE`) file is linked into a directory: by its descriptor
/// (`AT_EMPTY_PATH`, which needs `CAP_DAC_READ_SEARCH`) or through `/proc/self/fd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkVia {
    EmptyPath,
    ProcFd,
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    // Needed because nix 0.29's `open`/`openat` hand back a bare RawFd (std has no openat).
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
        Dir::find_beneath(root, dir)?.ok_or_else(|| Error::bad(dir, "no such directory"))
    }

    /// [`Dir::open_beneath`], `None` when a level is missing (a folder not created yet). One
    /// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the kernel has it; else, and for
    /// the error that names the link or the missing level, a walk with `O_NOFOLLOW` at every
    /// level.
    pub fn find_beneath(root: &Path, dir: &Path) -> Result<Option<Dir>> {
        let names = names_below(root, dir)?;
        let d = match Dir::open_root(if root.as_os_str().is_empty() { Path::new(".") } else { root }) {
            Err(e) if e.is_not_found() => return Ok(None),
            r => r?,
        };
        d.find_names(&names)
    }

    /// [`Dir::find_beneath`] from this directory, a target root opened once at the start:
    /// `dir` is its path or below it, and that path is not opened again (a root swapped for a
    /// link since is not followed).
    pub fn find_below(&self, dir: &Path) -> Result<Option<Dir>> {
        self.find_names(&names_below(&self.path, dir)?)
    }

    /// [`Dir::find_below`], an error when a level is missing.
    pub fn open_below(&self, dir: &Path) -> Result<Dir> {
        self.find_below(dir)?.ok_or_else(|| Error::bad(dir, "no such directory"))
    }

    fn find_names(&self, names: &[&OsStr]) -> Result<Option<Dir>> {
        if names.is_empty() {
            return self.try_clone().map(Some);
        }
        let rel: PathBuf = names.iter().collect();
        let how = rustix::fs::ResolveFlags::BENEATH
            | rustix::fs::ResolveFlags::NO_SYMLINKS
            | rustix::fs::ResolveFlags::NO_MAGICLINKS;
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        if let Ok(fd) = rustix::fs::openat2(&self.fd, &rel, flags, rustix::fs::Mode::empty(), how) {
            return Ok(Some(Dir { fd, path: self.path.join(rel) }));
        }
        self.walk(names)
    }

    /// Opens `names` one below the other from here, refusing a link at every level.
    fn walk(&self, names: &[&OsStr]) -> Result<Option<Dir>> {
        let mut d = self.try_clone()?;
        for name in names {
            match d.open(name)? {
                Some(next) => d = next,
                None => return Ok(None),
            }
        }
        Ok(Some(d))
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
                Err(Error::refused(path, "is a symlink in the target; nothing is written through it"))
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
        match self.entry_at(name) {
            Ok(e) => Ok(Some(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&self.path.join(name)),
        }
    }

    /// [`Dir::stat_at`] with the system's error (`NotFound` included), for listings that tell
    /// a vanished entry from a failed one.
    pub fn entry_at(&self, name: &OsStr) -> std::io::Result<Entry> {
        nix::sys::stat::fstatat(Some(self.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| Entry::of(&st))
            .map_err(std::io::Error::from)
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
        let open = |flags| nix::fcntl::openat(Some(self.raw()), name, flags, Mode::empty());
        // Reading leaves the atime alone where the kernel lets us (the file's owner, or root).
        let opened = match open(if write { flags } else { flags | OFlag::O_NOATIME }) {
            Err(Errno::EPERM) if !write => open(flags),
            r => r,
        };
        let fd = match opened {
            Ok(fd) => owned(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) if self.is_symlink(name) => {
                return Err(Error::refused(path, "is a symlink in the target; nothing is written through it"));
            }
            Err(e) => return Err(e).at(&path),
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).at(&path)?;
        if Entry::of(&st).kind != FileKind::File {
            return Err(Error::refused(path, "not a regular file; not read or written"));
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

    /// The names in this directory (empty when it cannot be listed).
    pub(super) fn names(&self) -> Vec<Vec<u8>> {
        self.list().map(|l| l.into_iter().map(|(n, _)| n).collect()).unwrap_or_default()
    }

    /// The entries of this directory as they are read, through its descriptor: a directory
    /// swapped for a link after it was opened is not what is listed.
    pub fn entries(&self) -> Result<Entries> {
        rustix::fs::Dir::read_from(&self.fd).map(Entries).map_err(std::io::Error::from).at(&self.path)
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
        self.write_atomic_with(name, mode, owner, durable, &mut |w| w.write_all(data).map(|()| true))
    }

    /// [`Dir::write_atomic`] with the content written by `fill`, a piece at a time; when `fill`
    /// says `false` the file is not put in place (nothing changed).
    pub fn write_atomic_with(
        &self,
        name: impl AsRef<OsStr>,
        mode: u32,
        owner: Option<Owner>,
        durable: bool,
        fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<bool>,
    ) -> Result<()> {
        self.write_whole(name.as_ref(), (mode, owner, durable), true, fill)
    }

    /// [`Dir::write_atomic_with`] for a file that must not be there: `Ok(false)` when it
    /// appeared meanwhile (it is left as it is).
    pub fn write_new_with(
        &self,
        name: &OsStr,
        mode: u32,
        owner: Option<Owner>,
        durable: bool,
        fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<bool>,
    ) -> Result<bool> {
        match self.write_whole(name, (mode, owner, durable), false, fill) {
            Ok(()) => Ok(true),
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn write_whole(
        &self,
        name: &OsStr,
        (mode, owner, durable): (u32, Option<Owner>, bool),
        replace: bool,
        fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<bool>,
    ) -> Result<()> {
        let tmp = temp_name(name);
        let tmp = tmp.as_os_str();
        let owner = self.owner_for_new(owner);
        let _ = self.unlink(tmp);
        let f = self.create_file(tmp, mode)?;
        let path = self.path.join(name);
        let mut put = false;
        let r = (|| {
            let mut w = std::io::BufWriter::new(&f);
            put = fill(&mut w).at(&path)?;
            w.flush().at(&path)?;
            drop(w);
            if !put {
                return Ok(());
            }
            if let Some(o) = owner {
                o.apply(f.as_raw_fd(), &path)?;
            }
            if durable {
                f.sync_all().at(&path)?;
            }
            if replace { self.rename_replace(tmp, self, name) } else { self.rename_noreplace(tmp, self, name) }
        })();
        if r.is_err() || !put {
            let _ = self.unlink(tmp);
        }
        r
    }

    /// Names in the directory (not `.`/`..`) with their d_type hint, sorted, read through its
    /// descriptor.
    pub fn list(&self) -> Result<Vec<(Vec<u8>, Option<FileKind>)>> {
        let mut out = self.entries()?.collect::<std::io::Result<Vec<_>>>().at(&self.path)?;
        out.sort();
        Ok(out)
    }

    /// The identity of this directory as a folder's caches and state record it (see
    /// [`super::folder_id`]), taken from the descriptor: device, inode and the kernel's name for
    /// the open directory, not whatever its path leads to now.
    pub fn folder_id(&self) -> Option<String> {
        id_of(self.fd.as_fd(), &self.path)
    }
}

/// The names of a directory with their d_type hint (`None`: the file system gives none), `.`
/// and `..` left out.
pub struct Entries(rustix::fs::Dir);

impl Iterator for Entries {
    type Item = std::io::Result<(Vec<u8>, Option<FileKind>)>;

    fn next(&mut self) -> Option<Self::Item> {
        use rustix::fs::FileType as T;
        loop {
            let e = match self.0.next()? {
                Ok(e) => e,
                Err(err) => return Some(Err(err.into())),
            };
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match e.file_type() {
                T::RegularFile => Some(FileKind::File),
                T::Directory => Some(FileKind::Dir),
                T::Symlink => Some(FileKind::Symlink),
                T::Unknown => None,
                _ => Some(FileKind::Other),
            };
            return Some(Ok((name.to_vec(), kind)));
        }
    }
}

/// See [`Dir::folder_id`]. Where `/proc` cannot name the descriptor, `path` made canonical
/// stands in, if it still leads to the same directory.
pub(super) fn id_of(fd: std::os::fd::BorrowedFd<'_>, path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return None;
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok().filter(|p| p.is_absolute());
    let real = match real {
        Some(r) => r,
        None => {
            let r = path.canonicalize().ok()?;
            let md = std::fs::symlink_metadata(&r).ok()?;
            (md.dev() == st.st_dev && md.ino() == st.st_ino).then_some(r)?
        }
    };
    Some(format!("{}:{} {}", st.st_dev, st.st_ino, real.as_os_str().as_bytes().escape_ascii()))
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
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Entry {
    fn of(st: &libc::stat) -> Entry {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        };
        Entry {
            kind,
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
        }
    }

    /// The same from `std`'s metadata (a listing by path).
    pub fn of_metadata(m: &std::fs::Metadata) -> Entry {
        use std::os::unix::fs::MetadataExt;
        Entry {
            kind: FileKind::of(m.file_type()),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
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

/// The first symlink on the way from `root` down to `dir` (`dir` included), looked at with
/// `lstat`: a place a run must not read through. `None` also when the way ends early (a folder
/// not created yet holds nothing to read). Only the early refusal that names the link: reads
/// and writes go through [`Dir`], which refuses links by itself (a link swapped in after this
/// check included).
pub fn link_on_the_way(root: &Path, dir: &Path) -> Option<PathBuf> {
    let rel = dir.strip_prefix(root).ok()?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Some(at),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Directory entries with their types, sorted by name (so output does not depend on the file
/// system's order), listed by path: for sources, which are not walked through descriptors.
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

/// The levels of `dir` below `root` (an empty or `.` root: the current directory, which a
/// relative `dir` is below).
fn names_below<'a>(root: &Path, dir: &'a Path) -> Result<Vec<&'a OsStr>> {
    let here = root.as_os_str().is_empty() || root == Path::new(".");
    let rel = match dir.strip_prefix(root) {
        Ok(rel) => rel,
        Err(_) if here && dir.is_relative() => dir,
        Err(_) => return Err(Error::bad(dir, "internal: not below the target root")),
    };
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(name) => names.push(name),
            std::path::Component::CurDir => {}
            _ => return Err(Error::bad(dir, "internal: not a plain path below the target root")),
        }
    }
    Ok(names)
}

/// Whether this process runs as root (checked once).
fn running_as_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| nix::unistd::geteuid().is_root())
}

/// The file times a directory's file system can store, as (earliest, latest) seconds: the
/// kernel clamps any other time silently (ext4: 1901-12-13 to 2446-05-10), so a date outside
/// must be stored as the nearest end, said so, and compared as stored. Found by timing an
/// unnamed file (`O_TMPFILE`) that never appears in the directory; `None` where that is not
/// possible (a read-only target, no `O_TMPFILE`).
pub fn time_bounds(dir: &Path) -> Option<(i64, i64)> {
    Dir::open_root(dir).ok()?.time_bounds()
}

impl Dir {
    /// [`time_bounds`] of this directory's file system.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        let f = self.create_unnamed(0o600).ok()?;
        let far = 3_000_000_000_000i64; // ±95,000 years: past every file system's range
        let mut out = [0i64; 2];
        for (i, t) in [-far, far].into_iter().enumerate() {
            let ts = TimeSpec::new(t, 0);
            nix::sys::stat::futimens(f.as_raw_fd(), &ts, &ts).ok()?;
            out[i] = nix::sys::stat::fstat(f.as_raw_fd()).ok()?.st_mtime;
        }
        Some((out[0], out[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_subdir_refused() {
        let t = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), t.path().join("cur")).unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let e = root.create(OsStr::new("cur"), 0o700, None).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
    }

    #[test]
    fn find_beneath_refuses_a_link_at_any_level() {
        let t = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        std::fs::create_dir_all(other.path().join("c")).unwrap();
        let found = Dir::find_beneath(t.path(), &t.path().join("a/b/c")).unwrap().unwrap();
        assert_eq!(found.path, t.path().join("a/b/c"));
        assert!(Dir::find_beneath(t.path(), &t.path().join("a/x/c")).unwrap().is_none(), "a missing level");
        assert!(Dir::find_beneath(t.path(), t.path()).unwrap().is_some());
        let none = t.path().join("none");
        assert!(Dir::find_beneath(&none, &none.join("a")).unwrap().is_none(), "no root (a dry run's target)");
        std::os::unix::fs::symlink(other.path(), t.path().join("a/l")).unwrap();
        for (dir, link) in [("a/l/c", "a/l"), ("a/l", "a/l")] {
            let e = Dir::find_beneath(t.path(), &t.path().join(dir)).unwrap_err().to_string();
            assert!(e.contains(&format!("{}: is a symlink", t.path().join(link).display())), "{dir}: {e}");
        }
        // The walk alone, as on a kernel without openat2.
        let root = Dir::open_root(t.path()).unwrap();
        let names = |p: &'static str| p.split('/').map(OsStr::new).collect::<Vec<_>>();
        assert_eq!(root.walk(&names("a/b/c")).unwrap().unwrap().path, t.path().join("a/b/c"));
        assert!(root.walk(&names("a/x/c")).unwrap().is_none());
        assert!(root.walk(&names("a/l/c")).unwrap_err().to_string().contains("is a symlink"));
    }

    /// A directory swapped for a link after it was opened: what is listed, looked at and read
    /// through the `Dir` is still the directory that was opened.
    #[test]
    fn reads_go_through_the_descriptor_not_the_path() {
        let t = tempfile::tempdir().unwrap();
        let (f, moved, elsewhere) = (t.path().join("f"), t.path().join("moved"), t.path().join("elsewhere"));
        for (d, text) in [(&f, "mine"), (&elsewhere, "planted")] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("own"), text).unwrap();
            std::fs::write(d.join(text), "").unwrap();
        }
        let d = Dir::find_beneath(t.path(), &f).unwrap().unwrap();
        let id = d.folder_id().unwrap();
        assert_eq!(Some(&id), super::super::folder_id(&f).as_ref(), "one identity, by path or descriptor");
        std::fs::rename(&f, &moved).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &f).unwrap();
        let names: Vec<Vec<u8>> = d.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec![b"mine".to_vec(), b"own".to_vec()]);
        assert_eq!(d.read_own_file(OsStr::new("own"), 100).unwrap().unwrap(), b"mine");
        assert!(d.stat_at(OsStr::new("planted")).unwrap().is_none());
        assert_eq!(d.folder_id().unwrap(), super::super::folder_id(&moved).unwrap(), "the opened directory's");
        assert_ne!(d.folder_id(), super::super::folder_id(&f));
    }

    /// A target root swapped for a link after it was opened: folders found from the opened
    /// root are its own; opened by the root's path again, they would be the link's.
    #[test]
    fn find_below_keeps_the_root_it_opened() {
        let t = tempfile::tempdir().unwrap();
        let (root, moved, other) = (t.path().join("root"), t.path().join("moved"), t.path().join("other"));
        std::fs::create_dir_all(root.join("a/mine")).unwrap();
        std::fs::create_dir_all(other.join("a/planted")).unwrap();
        let opened = Dir::open_root(&root).unwrap();
        std::fs::rename(&root, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &root).unwrap();
        let a = opened.find_below(&root.join("a")).unwrap().unwrap();
        assert_eq!(a.path, root.join("a"), "named as asked");
        assert!(
            a.stat_at(OsStr::new("mine")).unwrap().is_some() && a.stat_at(OsStr::new("planted")).unwrap().is_none()
        );
        assert!(opened.open_below(&root).unwrap().stat_at(OsStr::new("a")).unwrap().is_some());
        assert!(opened.find_below(&root.join("none")).unwrap().is_none());
        assert!(opened.open_below(&root.join("none")).is_err());
        assert!(opened.find_below(&other.join("a")).is_err(), "not below the root");
        let by_path = Dir::find_beneath(&root, &root.join("a")).unwrap().unwrap();
        assert!(by_path.stat_at(OsStr::new("planted")).unwrap().is_some(), "the path leads elsewhere now");
        // The current directory as root: a relative path is below it.
        let here = Dir::open_root(Path::new(".")).unwrap();
        assert_eq!(here.find_below(Path::new("")).unwrap().unwrap().path, Path::new("."));
    }

    #[test]
    fn own_files_through_a_dir_are_regular_files_only() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_root(t.path()).unwrap();
        let read = |n: &str| d.read_own_file(OsStr::new(n), 10).map_err(|e| e.to_string());
        std::os::unix::fs::symlink("/dev/zero", t.path().join("link")).unwrap();
        nix::unistd::mkfifo(&t.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(t.path().join("big"), [b'x'; 11]).unwrap();
        std::fs::create_dir(t.path().join("dir")).unwrap();
        assert!(read("link").unwrap_err().contains("is a symlink; not followed"));
        assert!(read("fifo").unwrap_err().contains("not a regular file (FIFO, device or directory)"));
        assert!(read("dir").unwrap_err().contains("not a regular file"));
        assert!(read("big").unwrap_err().contains("11 bytes, more than the 10"));
        assert_eq!(read("none").unwrap(), None);
    }

    #[test]
    fn create_file_is_exclusive() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        root.create_file(OsStr::new("x"), 0o600).unwrap();
        assert!(root.create_file(OsStr::new("x"), 0o600).is_err());
    }
}
