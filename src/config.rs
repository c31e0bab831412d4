//! The options of a run in plain types, and the one place they are checked and turned into the
//! library's configuration ([`SyncOptions`], [`ReadOptions`], [`FolderMap`], the two stores):
//! regexes compiled, folder names and renames parsed, the owner looked up, the zone read.
//!
//! Both front ends come through here: `cli` fills these types from the command line, `batch`
//! applies a row's options on top of the command line's and converts each row. Parsing the
//! command line is left to cli.rs; what a run does with the configuration, to the library.
//! Every failure is [`Error::Usage`] (exit 2, nothing written).

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use crate::cpanel::CpanelOptions;
use crate::deletion::Deletion;
use crate::error::{Error, Result};
use crate::folder::FolderName;
use crate::folder_map::{FolderMap, Rename};
use crate::fsx::Owner;
use crate::spec::Store;
use crate::store::maildir::layout::Layout;
use crate::store::mbox::date::Zone;
use crate::store::mbox::flavour::Flavour;
use crate::store::mbox::read::{ReadOptions, Variant};
use crate::sync::{Filters, IdentityBy, SyncOptions};

/// How sources are read (`sync`, `verify`, `inspect`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSettings {
    pub mbox_variant: Variant,
    /// `local`, `UTC` or `+HHMM`/`-HHMM`, checked by [`read_options`].
    pub mbox_tz: String,
    pub keep_mbox_headers: bool,
    pub follow_symlinks: bool,
    /// Worker threads; 0 for all cores.
    pub jobs: usize,
}

impl Default for ReadSettings {
    fn default() -> Self {
        ReadSettings {
            mbox_variant: Variant::Auto,
            mbox_tz: "local".into(),
            keep_mbox_headers: false,
            follow_symlinks: false,
            jobs: 0,
        }
    }
}

/// Which folders, under which names, in which layout (`sync`, `verify`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FolderSettings {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub folder: Vec<String>,
    /// `s/RE/REPL/` each.
    pub map_folder: Vec<String>,
    pub automap: bool,
    pub layout: Layout,
    pub mbox_format: Option<Flavour>,
    pub merge_folders: bool,
    pub identity: IdentityBy,
}

/// The options of one sync, as given: a batch row changes them before [`sync_options`] checks
/// them, so that a bad value names the row.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    pub dry_run: bool,
    pub delete: bool,
    /// Wins over `delete`.
    pub mirror: bool,
    pub max_delete: Option<u64>,
    /// `USER[:GROUP]`, looked up by [`parse_owner`].
    pub owner: Option<String>,
    pub durable: bool,
    pub use_cache: bool,
    pub lock_wait: Duration,
    pub max_size: Option<u64>,
    pub min_age: Option<f64>,
    pub max_age: Option<f64>,
    pub audit_log: Option<PathBuf>,
    pub audit_key_file: Option<PathBuf>,
    /// Make the folder tree only (`sync --folders-only`; batch rows copy their messages).
    pub folders_only: bool,
    pub folders: FolderSettings,
    pub read: ReadSettings,
    pub cpanel: CpanelOptions,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            dry_run: false,
            delete: false,
            mirror: false,
            max_delete: None,
            owner: None,
            durable: true,
            use_cache: true,
            lock_wait: Duration::ZERO,
            max_size: None,
            min_age: None,
            max_age: None,
            audit_log: None,
            audit_key_file: None,
            folders_only: false,
            folders: FolderSettings::default(),
            read: ReadSettings::default(),
            cpanel: CpanelOptions::default(),
        }
    }
}

impl SyncSettings {
    pub fn deletion(&self) -> Deletion {
        if self.mirror {
            Deletion::Mirror
        } else if self.delete {
            Deletion::Copied
        } else {
            Deletion::Off
        }
    }
}

pub fn read_options(a: &ReadSettings) -> Result<ReadOptions> {
    let zone = Zone::parse(&a.mbox_tz)
        .ok_or_else(|| Error::Usage(format!("--mbox-tz {:?}: expected local, UTC or +HHMM", a.mbox_tz)))?;
    Ok(ReadOptions { variant: a.mbox_variant, zone, keep_internal_headers: a.keep_mbox_headers, as_target: false })
}

fn regexes(v: &[String], what: &str) -> Result<Vec<Regex>> {
    v.iter().map(|r| Regex::new(r).map_err(|e| Error::Usage(format!("{what} {r:?}: {e}")))).collect()
}

pub fn folder_map(a: &FolderSettings) -> Result<FolderMap> {
    Ok(FolderMap {
        folders: a
            .folder
            .iter()
            .map(|f| FolderName::parse(f).map_err(|e| Error::Usage(format!("--folder {f:?}: {e}"))))
            .collect::<Result<_>>()?,
        include: regexes(&a.include, "--include")?,
        exclude: regexes(&a.exclude, "--exclude")?,
        renames: a
            .map_folder
            .iter()
            .map(|s| Rename::parse(s).map_err(|e| Error::Usage(format!("--map-folder {e}"))))
            .collect::<Result<_>>()?,
        automap: a.automap,
        ..Default::default()
    })
}

/// `USER[:GROUP]` by name or number; a user alone brings their primary group.
pub fn parse_owner(spec: &str) -> Result<Owner> {
    use nix::unistd::{Group, User};
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = match u.parse::<u32>() {
        Ok(uid) => User::from_uid(uid.into()).ok().flatten(),
        Err(_) => User::from_name(u).ok().flatten(),
    };
    let uid = match (&user, u.parse::<u32>()) {
        (Some(us), _) => us.uid.as_raw(),
        (None, Ok(n)) => n,
        (None, Err(_)) => return Err(Error::Usage(format!("--owner: no such user {u:?}"))),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .map(|gr| gr.gid.as_raw())
                .ok_or_else(|| Error::Usage(format!("--owner: no such group {g:?}")))?,
        },
        None => user
            .map(|us| us.gid.as_raw())
            .ok_or_else(|| Error::Usage(format!("--owner {spec:?}: give the group too (USER:GROUP)")))?,
    };
    if !nix::unistd::geteuid().is_root()
        && (uid != nix::unistd::geteuid().as_raw() || gid != nix::unistd::getegid().as_raw())
    {
        return Err(Error::Usage("--owner: only root can give files to another user".into()));
    }
    Ok(Owner { uid, gid })
}

pub fn sync_options(a: &SyncSettings) -> Result<SyncOptions> {
    let owner = a.owner.as_deref().map(parse_owner).transpose()?;
    Ok(SyncOptions {
        read: read_options(&a.read)?,
        layout: a.folders.layout,
        mbox_format: a.folders.mbox_format,
        owner,
        durable: a.durable,
        dry_run: a.dry_run,
        deletion: a.deletion(),
        max_delete: a.max_delete,
        delete_budget: None,
        jobs: a.read.jobs,
        map: folder_map(&a.folders)?,
        filters: Filters {
            max_size: a.max_size,
            min_age_days: a.min_age,
            max_age_days: a.max_age,
            now: chrono::Utc::now().timestamp(),
        },
        follow_symlinks: a.read.follow_symlinks,
        use_cache: a.use_cache,
        merge_folders: a.folders.merge_folders,
        lock_wait: a.lock_wait,
        merged: false,
        folders_only: a.folders_only,
        identity: a.folders.identity,
    })
}

/// What `verify` reads and compares: sync's selection and reading, nothing of its writing.
pub fn verify_options(folders: &FolderSettings, read: &ReadSettings) -> Result<SyncOptions> {
    Ok(SyncOptions {
        read: read_options(read)?,
        layout: folders.layout,
        mbox_format: folders.mbox_format,
        jobs: read.jobs,
        map: folder_map(folders)?,
        follow_symlinks: read.follow_symlinks,
        merge_folders: folders.merge_folders,
        identity: folders.identity,
        ..Default::default()
    })
}

/// The source and target of a run: the source must exist and the target must not be inside it.
pub fn stores(src: &str, dst: &str) -> Result<(Store, Store)> {
    let s = Store::parse(src)?;
    let d = Store::parse(dst)?;
    if !s.path.exists() {
        return Err(Error::Usage(format!("{}: source does not exist", s.path.display())));
    }
    if let (Ok(a), Some(b)) = (s.path.canonicalize(), canonical_target(&d.path))
        && (a == b || b.starts_with(&a))
    {
        return Err(Error::Usage("the target is inside the source (or the same store); nothing written".into()));
    }
    Ok((s, d))
}

/// The canonical form of a path that may not exist yet: its nearest existing ancestor
/// canonicalized, the rest appended.
fn canonical_target(p: &Path) -> Option<PathBuf> {
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().ok()?.join(p) };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return Some(rest.iter().rev().fold(c, |acc, x| acc.join(x)));
        }
        rest.push(cur.file_name()?.to_os_string());
        cur = cur.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_needs_root_for_others() {
        if nix::unistd::geteuid().is_root() {
            assert!(parse_owner("root:root").is_ok());
            assert!(parse_owner("no-such-user-xyz").is_err());
        } else {
            assert!(parse_owner("0:0").is_err());
        }
    }

    #[test]
    fn mirror_wins_over_delete() {
        let s = |delete, mirror| SyncSettings { delete, mirror, ..Default::default() }.deletion();
        assert_eq!(s(false, false), Deletion::Off);
        assert_eq!(s(true, false), Deletion::Copied);
        assert_eq!(s(true, true), Deletion::Mirror);
        assert_eq!(s(false, true), Deletion::Mirror);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let bad = [
            SyncSettings { read: ReadSettings { mbox_tz: "Mars".into(), ..Default::default() }, ..Default::default() },
            SyncSettings {
                folders: FolderSettings { include: vec!["(".into()], ..Default::default() },
                ..Default::default()
            },
            SyncSettings {
                folders: FolderSettings { map_folder: vec!["x".into()], ..Default::default() },
                ..Default::default()
            },
        ];
        for s in bad {
            assert!(sync_options(&s).is_err_and(|e| e.is_usage()), "{s:?}");
        }
        assert!(sync_options(&SyncSettings::default()).is_ok());
    }

    #[test]
    fn a_target_inside_the_source_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().display().to_string();
        assert!(stores(&src, &format!("{src}/sub/new")).is_err_and(|e| e.is_usage()));
        assert!(stores(&format!("{src}/missing"), "/tmp/x").is_err_and(|e| e.is_usage()));
    }
}
