//! The target of a run: opened, locked, and where each folder goes in it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::SyncOptions;
use crate::error::{Error, Problem, Result};
use crate::events::{Event, Recorder};
use crate::folder::FolderName;
use crate::fsx;
use crate::lock::{self, TargetLock};
use crate::report::FolderOutcome;
use crate::spec::{Kind, Store};
use crate::store::SourceFolder;
use crate::store::maildir::layout::Layout;
use crate::store::maildir::write::{self as mdwrite, MaildirTarget, WriteOptions};
use crate::store::mbox::target::{self as mbox_target, MboxLayout};

/// Where the target puts things.
pub(super) enum Target {
    Maildir {
        path: PathBuf,
        writer: Option<Box<MaildirTarget>>,
        /// The file times the target's file system stores ([`fsx::time_bounds`]).
        bounds: Option<(i64, i64)>,
        /// The root, opened once (`None`: a dry run's target that is not there).
        root: Option<fsx::Dir>,
    },
    MboxFile(PathBuf),
    /// An mbox directory: its root opened once (`None`: a dry run's target that is not there)
    /// and the folders written as files.
    MboxDir {
        path: PathBuf,
        root: Option<fsx::Dir>,
        written: HashSet<FolderName>,
    },
}

/// The target's root when it is a directory now, opened once at the start: the target is
/// reached from it, not from its path again (a root swapped for a link during the run is not
/// followed; one there at the start is, as the admin named it). `None` also when it cannot be
/// opened: what opens it again says why.
pub(super) fn open_root(dst: &Store) -> Option<fsx::Dir> {
    match dst.kind {
        Kind::Maildir | Kind::Mbox if dst.path.is_dir() => fsx::Dir::open_root(&dst.path).ok(),
        _ => None,
    }
}

/// Opens the target, from `root` ([`open_root`]) when it was there.
pub(super) fn open_target(
    dst: &Store,
    pairs: &[(SourceFolder, FolderName)],
    root: Option<fsx::Dir>,
    opts: &SyncOptions,
) -> Result<Target> {
    match dst.kind {
        Kind::Maildir => {
            if dst.path.exists() && !dst.path.is_dir() {
                return Err(Error::Usage(format!("{}: target exists and is not a directory", dst.path.display())));
            }
            let (writer, root) = if opts.dry_run {
                (None, root)
            } else {
                let wo = WriteOptions { durable: opts.durable, owner: opts.owner, layout: opts.layout };
                let w = match root {
                    Some(r) => MaildirTarget::create_in(r, wo)?,
                    None => MaildirTarget::create(&dst.path, wo)?,
                };
                let root = w.root.try_clone()?;
                (Some(Box::new(w)), Some(root))
            };
            let bounds = root.as_ref().and_then(fsx::Dir::time_bounds);
            Ok(Target::Maildir { path: dst.path.clone(), writer, bounds, root })
        }
        Kind::Mbox => {
            let single = pairs.len() <= 1 && pairs.iter().all(|(_, t)| t.is_inbox());
            if dst.path.is_dir() || !single {
                if dst.path.exists() && !dst.path.is_dir() {
                    return Err(Error::Usage(format!(
                        "{}: the source has several folders, so the mbox target must be a directory",
                        dst.path.display()
                    )));
                }
                let root = match root {
                    Some(r) => Some(r),
                    None if opts.dry_run => None,
                    None => Some(fsx::Dir::create_root(&dst.path, mdwrite::DIR_MODE, opts.owner)?),
                };
                let written = pairs.iter().map(|(_, t)| t.clone()).collect();
                Ok(Target::MboxDir { path: dst.path.clone(), root, written })
            } else {
                Ok(Target::MboxFile(dst.path.clone()))
            }
        }
        Kind::Cpanel => Err(Error::Usage("cpanel: targets are not supported by this version".into())),
    }
}

/// The target's lock, held until the run ends (see lock.rs).
pub(super) fn lock_target(target: &Target, opts: &SyncOptions) -> Result<TargetLock> {
    let o = opts.lock_options();
    match target {
        Target::Maildir { root: Some(r), .. } => TargetLock::inside_opened(r, lock::MAILDIR, &o),
        Target::MboxDir { root: Some(r), .. } => TargetLock::inside_opened(r, lock::HIDDEN, &o),
        Target::Maildir { path, .. } => TargetLock::inside(path, lock::MAILDIR, &o),
        Target::MboxDir { path, .. } => TargetLock::inside(path, lock::HIDDEN, &o),
        Target::MboxFile(p) => TargetLock::beside(p, &o),
    }
}

/// The file of folder `name` in an mbox directory as it is on disk: levels as directories
/// (modified UTF-7 names, as Dovecot writes them), `NAME.sbd/` beside a folder file.
pub fn mbox_folder_path(root: &Path, name: &FolderName, layout: Layout) -> PathBuf {
    mbox_target::place_path(root, name, (MboxLayout::of(layout), &|_| false))
}

/// Where folder `tn` of an mbox target is, reached through descriptors (see
/// [`mbox_target::place`]); `None` in a dry run when it does not exist yet.
pub(super) fn mbox_place(target: &Target, tn: &FolderName, opts: &SyncOptions) -> Result<Option<mbox_target::Place>> {
    match target {
        Target::MboxFile(p) => {
            let name = p.file_name().ok_or_else(|| Error::bad(p, "not a usable file name"))?;
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            // The file's directory is named by the user: it may be reached through links.
            let dir = if opts.dry_run {
                if !parent.is_dir() {
                    return Ok(None);
                }
                fsx::Dir::open_root(parent)?
            } else {
                fsx::Dir::create_root(parent, mdwrite::DIR_MODE, opts.owner)?
            };
            if dir.stat_at(name)?.is_some_and(|e| e.kind == fsx::FileKind::Symlink) {
                return Err(Error::bad(
                    p,
                    "is a symlink; name the mbox file itself (nothing is written through a link)",
                ));
            }
            Ok(Some(mbox_target::Place { dir, name: name.to_os_string(), path: p.clone(), fallback: None }))
        }
        Target::MboxDir { root, written, .. } => match root {
            Some(r) => {
                let is_written = |f: &FolderName| written.contains(f);
                mbox_target::place(
                    r,
                    tn,
                    (MboxLayout::of(opts.layout), &is_written),
                    (!opts.dry_run).then_some(opts.owner),
                )
            }
            None => Ok(None),
        },
        Target::Maildir { .. } => Err(Error::bad("", "internal: not an mbox target")),
    }
}

/// The directory everything of the target is below (an mbox file's own directory).
pub(super) fn target_root(target: &Target) -> &Path {
    match target {
        Target::Maildir { path, .. } | Target::MboxDir { path, .. } => path,
        Target::MboxFile(p) => p.parent().unwrap_or(Path::new("")),
    }
}

/// The directory everything of the target is below, opened: the root opened at the start; an
/// mbox file's directory, which the admin names, opened now. `None`: not there (a dry run).
pub(super) fn root_dir(target: &Target) -> Option<fsx::Dir> {
    match target {
        Target::Maildir { root, .. } | Target::MboxDir { root, .. } => root.as_ref()?.try_clone().ok(),
        Target::MboxFile(p) => {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            fsx::Dir::open_root(parent).ok()
        }
    }
}

/// The target folder's path and whether it is an mbox file.
pub(super) fn target_folder(target: &Target, tn: &FolderName, layout: Layout) -> Option<(PathBuf, bool)> {
    match target {
        Target::Maildir { path, .. } => MaildirTarget::folder_path(path, tn, layout).ok().map(|p| (p, false)),
        Target::MboxFile(p) => Some((p.clone(), true)),
        Target::MboxDir { path, written, .. } => {
            Some((mbox_target::place_path(path, tn, (MboxLayout::of(layout), &|f| written.contains(f))), true))
        }
    }
}

/// The warning for folder `tn`, put below `dir` (a `NAME.sbd/` beside a folder with mail) in
/// Dovecot's mbox layout, which has no place for a folder with mail and subfolders both.
pub(super) fn fallback_warning(dir: &Path, tn: &FolderName) -> Problem {
    Problem::new(
        dir,
        format!(
            "folder {:?} written below the folder beside this directory, which has mail: \
             Dovecot's mbox layout has no place for both, so its subfolders are here \
             (Dovecot lists them under this name); --layout thunderbird writes every \
             subfolder so, or --map-folder moves them",
            tn.as_str()
        ),
    )
}

/// Whether folder `tn` is in the target already, looked at from the root opened at the start
/// (`None`: no directory there): a Maildir folder with its `cur/ new/ tmp/`, or the file of an
/// mbox folder where the run puts it (`pairs`: the folders the run writes).
pub(super) fn folder_there(
    dst: &Store,
    root: Option<&fsx::Dir>,
    tn: &FolderName,
    pairs: &[(SourceFolder, FolderName)],
    layout: Layout,
) -> bool {
    let is = |dir: Option<&fsx::Dir>, name: &OsStr, kind: fsx::FileKind| {
        dir.and_then(|d| d.stat_at(name).ok().flatten()).is_some_and(|e| e.kind == kind)
    };
    match (dst.kind, root) {
        (Kind::Maildir, Some(root)) => {
            let Ok(tdir) = MaildirTarget::folder_path(&dst.path, tn, layout) else { return false };
            let dir = root.find_below(&tdir).ok().flatten();
            ["cur", "new", "tmp"].iter().all(|s| is(dir.as_ref(), OsStr::new(s), fsx::FileKind::Dir))
        }
        (Kind::Mbox, Some(root)) => {
            let written = |f: &FolderName| pairs.iter().any(|(_, t)| t == f);
            let path = mbox_target::place_path(&dst.path, tn, (MboxLayout::of(layout), &written));
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return false };
            is(root.find_below(parent).ok().flatten().as_ref(), name, fsx::FileKind::File)
        }
        // A single mbox file: its directory is the user's to name.
        (Kind::Mbox, None) => {
            let parent = dst.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let Some(name) = dst.path.file_name() else { return false };
            is(fsx::Dir::open_root(parent).ok().as_ref(), name, fsx::FileKind::File)
        }
        _ => false,
    }
}

/// `--folders-only`: makes folder `tn` as a sync makes one from an empty source folder (a
/// Maildir folder with `cur/ new/ tmp/`, an empty mbox file where the layout puts it) and
/// nothing else: no message and no folder state, so the next sync reads it as a new folder.
/// A dry run says what it would make. `there`: the folder was in the target before the run.
pub(super) fn make_folder(
    source_name: &str,
    tn: &FolderName,
    target: &Target,
    there: bool,
    opts: &SyncOptions,
    rec: &dyn Recorder,
) -> FolderOutcome {
    let mut out = FolderOutcome::default();
    if crate::interrupt::requested().is_some() {
        out.interrupted = true;
        return out;
    }
    out.counts.folders = 1;
    let shown = target_folder(target, tn, opts.layout).map(|(p, _)| p).unwrap_or_default();
    if opts.dry_run {
        if there {
            out.plan_line = Some(format!("{source_name} -> {}: {} is there already", tn.as_str(), shown.display()));
        } else {
            out.created = true;
            rec.record(Event::Folder { folder: tn.clone(), path: shown });
        }
        return out;
    }
    let made = match target {
        Target::Maildir { writer: Some(w), .. } => w.folder(tn).map(|mut f| {
            out.warnings.append(&mut f.notes);
            f.dir.path.clone()
        }),
        Target::Maildir { writer: None, .. } => Err(Error::bad(&shown, "internal: no writer for the target")),
        _ => mbox_place(target, tn, opts).and_then(|place| {
            let place = place.ok_or_else(|| Error::bad(&shown, "internal: no place for the mbox"))?;
            if let Some(dir) = &place.fallback {
                out.warnings.push(fallback_warning(dir, tn));
            }
            // Never over a file there (one delivered meanwhile included).
            place.dir.write_new_with(&place.name, mdwrite::FILE_MODE, opts.owner, opts.durable, &mut |_| Ok(true))?;
            Ok(place.path)
        }),
    };
    match made {
        Ok(path) if !there => {
            out.created = true;
            rec.record(Event::Folder { folder: tn.clone(), path });
        }
        Ok(_) => {}
        Err(e) => {
            out.errors.push(e.problem());
            out.counts.failed = 1;
        }
    }
    out
}
