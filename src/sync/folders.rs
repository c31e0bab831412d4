//! Which source folder goes to which target folder: selection, mapping, clashes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::SyncOptions;
use super::target::{mbox_folder_path, open_root};
use crate::error::{Error, Problem, Result};
use crate::folder::FolderName;
use crate::fsx::Dir;
use crate::spec::{Kind, Store};
use crate::store::maildir::layout::{self, Layout};
use crate::store::maildir::read as mdread;
use crate::store::maildir::write::MaildirTarget;
use crate::store::{self, SourceFolder};

/// Folder names a target already has (for `--automap`), listed through its root opened at the
/// start (`None`: not a directory, nothing there) and never through a link.
pub fn existing_folders(dst: &Store, layout: Layout, root: Option<&Dir>) -> Vec<FolderName> {
    let Some(root) = root else { return Vec::new() };
    match dst.kind {
        Kind::Maildir => {
            let mut names: Vec<FolderName> = mdread::folder_names_in(root)
                .into_iter()
                .filter(|(_, dot)| layout == Layout::Fs || *dot)
                .map(|(n, _)| n)
                .collect();
            names.dedup();
            names
        }
        Kind::Mbox => store::mbox::folder_names_in(root),
        _ => Vec::new(),
    }
}

/// The source folders with their target names, after selection and mapping.
/// Source folders with their target names.
pub type FolderPairs = Vec<(SourceFolder, FolderName)>;

pub fn mapped_folders(src: &Store, dst: &Store, opts: &SyncOptions) -> Result<(FolderPairs, Vec<Problem>)> {
    let root = if opts.map.automap { open_root(dst) } else { None };
    mapped_folders_in(src, dst, root.as_ref(), opts)
}

/// [`mapped_folders`] with the target's root opened at the start ([`open_root`]).
pub(super) fn mapped_folders_in(
    src: &Store,
    dst: &Store,
    root: Option<&Dir>,
    opts: &SyncOptions,
) -> Result<(FolderPairs, Vec<Problem>)> {
    if dst.kind == Kind::Maildir && opts.layout == Layout::Thunderbird {
        return Err(Error::Usage(
            "--layout thunderbird is for mbox directories; a Maildir takes maildir++ or fs".into(),
        ));
    }
    let (folders, mut problems) = store::source_folders(&src.path, src.format()?, opts.follow_symlinks)?;
    let existing = if opts.map.automap { existing_folders(dst, opts.layout, root) } else { Vec::new() };
    let names: Vec<FolderName> = folders.iter().map(|f| f.name.clone()).collect();
    let pairs = opts.map.plan(&names, &existing).map_err(Error::Usage)?;
    let mut out = Vec::new();
    for (s, t) in pairs {
        if dst.kind == Kind::Maildir
            && let Err(e) = layout::components(&t, opts.layout)
        {
            // A name the user's mapping made is a usage error; one found on disk is a
            // problem with that folder only.
            if s != t {
                return Err(Error::Usage(format!("folder {:?} maps to {:?}: {e}", s.as_str(), t.as_str())));
            }
            if let Some(f) = folders.iter().find(|f| f.name == s) {
                problems.push(Problem::new(
                    f.loc.path(),
                    format!("{e}; folder skipped (try --layout maildir++ or --map-folder)"),
                ));
            }
            continue;
        }
        if let Some(f) = folders.iter().find(|f| f.name == s) {
            out.push((f.clone(), t));
        }
    }
    if !opts.merge_folders {
        out = without_clashes(out, dst, opts.layout, &mut problems);
    }
    Ok((out, problems))
}

/// Where a target folder lives on disk: two folder names with one place are one folder.
pub(super) fn target_place(dst: &Store, name: &FolderName, layout: Layout) -> PathBuf {
    match dst.kind {
        Kind::Maildir => MaildirTarget::folder_path(&dst.path, name, layout).unwrap_or_else(|_| dst.path.clone()),
        _ => mbox_folder_path(&dst.path, name, layout),
    }
}

/// The pairs' indexes grouped by the place of their target folder, in first-seen order.
pub(super) fn groups_by_place(pairs: &FolderPairs, dst: &Store, layout: Layout) -> Vec<(PathBuf, Vec<usize>)> {
    let mut groups: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    let mut at: HashMap<PathBuf, usize> = HashMap::new();
    for (i, (_, t)) in pairs.iter().enumerate() {
        let place = target_place(dst, t, layout);
        match at.get(&place) {
            Some(&g) => groups[g].1.push(i),
            None => {
                at.insert(place.clone(), groups.len());
                groups.push((place, vec![i]));
            }
        }
    }
    groups
}

/// Drops every pair whose target folder another source folder maps to as well (`v1.0` and
/// `v1_0` both become `.v1_0` in Maildir++), each reported: neither is written or deleted in.
pub(super) fn without_clashes(
    pairs: FolderPairs,
    dst: &Store,
    layout: Layout,
    problems: &mut Vec<Problem>,
) -> FolderPairs {
    let mut drop = HashSet::new();
    for (place, idx) in groups_by_place(&pairs, dst, layout).into_iter().filter(|(_, v)| v.len() > 1) {
        let names: Vec<String> = idx.iter().map(|&i| format!("{:?}", pairs[i].0.name.as_str())).collect();
        for &i in &idx {
            problems.push(Problem::new(
                pairs[i].0.loc.path(),
                format!(
                    "source folders {} all map to the target folder {}; none of them is synced \
                     (rename one with --map-folder, or give --merge-folders to merge them)",
                    names.join(", "),
                    place.display()
                ),
            ));
            drop.insert(i);
        }
    }
    pairs.into_iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, p)| p).collect()
}

/// Pairs grouped by target folder: with `--merge-folders` several sources may share one, and
/// they are synced one after another, never at once.
pub(super) fn by_target<'p>(
    pairs: &'p FolderPairs,
    dst: &Store,
    layout: Layout,
) -> Vec<Vec<&'p (SourceFolder, FolderName)>> {
    groups_by_place(pairs, dst, layout).into_iter().map(|(_, idx)| idx.iter().map(|&i| &pairs[i]).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir(p: &std::path::Path) {
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(p.join(s)).unwrap();
        }
    }

    fn names(v: Vec<FolderName>) -> Vec<String> {
        v.iter().map(|n| n.as_str().to_string()).collect()
    }

    /// `--automap` lists the target through its root opened at the start: a root swapped for a
    /// link since is not what is listed, and a linked folder below it is not followed.
    #[test]
    fn existing_folders_are_listed_through_the_opened_root() {
        let t = tempfile::tempdir().unwrap();
        let (root, moved, other, outside) =
            (t.path().join("root"), t.path().join("moved"), t.path().join("other"), t.path().join("outside"));
        for d in ["", ".Sent", ".Archive.2019", "Fs/Level"] {
            maildir(&root.join(d));
        }
        maildir(&other.join(".Planted"));
        maildir(&outside.join(".Elsewhere"));
        std::os::unix::fs::symlink(outside.join(".Elsewhere"), root.join(".Linked")).unwrap();
        let dst = Store { kind: Kind::Maildir, path: root.clone(), explicit: true };
        let opened = open_root(&dst).unwrap();
        std::fs::rename(&root, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &root).unwrap();
        let got = names(existing_folders(&dst, Layout::MaildirPlusPlus, Some(&opened)));
        assert_eq!(got, ["Archive/2019", "INBOX", "Sent"]);
        let got = names(existing_folders(&dst, Layout::Fs, Some(&opened)));
        assert_eq!(got, ["Archive/2019", "Fs/Level", "INBOX", "Sent"]);
        assert!(existing_folders(&dst, Layout::Fs, None).is_empty());

        let mbox = t.path().join("mbox");
        std::fs::create_dir_all(mbox.join("Lists.sbd")).unwrap();
        for f in ["INBOX", "Lists", "Lists.sbd/Rust", "INBOX.msf"] {
            std::fs::write(mbox.join(f), b"From a@b Thu Jan  1 00:00:00 1970\n\nx\n").unwrap();
        }
        std::os::unix::fs::symlink(outside.join(".Elsewhere"), mbox.join("Linked")).unwrap();
        let dst = Store { kind: Kind::Mbox, path: mbox.clone(), explicit: true };
        let opened = open_root(&dst).unwrap();
        std::fs::rename(&mbox, t.path().join("mbox-moved")).unwrap();
        std::fs::create_dir_all(&mbox).unwrap();
        std::fs::write(mbox.join("Planted"), b"").unwrap();
        assert_eq!(
            names(existing_folders(&dst, Layout::MaildirPlusPlus, Some(&opened))),
            ["INBOX", "Lists", "Lists/Rust"]
        );
    }
}
