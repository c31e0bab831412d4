//! Which source folder goes to which target folder: selection, mapping, clashes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::SyncOptions;
use super::target::mbox_folder_path;
use crate::error::{Error, Problem, Result};
use crate::folder::FolderName;
use crate::spec::{Kind, Store};
use crate::store::maildir::layout::{self, Layout};
use crate::store::maildir::read::{self as mdread, ScanOptions};
use crate::store::maildir::write::MaildirTarget;
use crate::store::{self, SourceFolder};

/// Folder names a target already has (for `--automap`).
pub fn existing_folders(dst: &Store, layout: Layout) -> Vec<FolderName> {
    if !dst.path.exists() {
        return Vec::new();
    }
    let mut ignore = Vec::new();
    match dst.kind {
        Kind::Maildir => mdread::folders(&dst.path, ScanOptions::default(), &mut ignore)
            .into_iter()
            .filter(|f| {
                layout == Layout::Fs
                    || f.name.is_inbox()
                    || f.dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .map(|f| f.name)
            .collect(),
        Kind::Mbox if dst.path.is_dir() => {
            store::mbox::folders(&dst.path, false, &mut ignore).into_iter().map(|f| f.name).collect()
        }
        _ => Vec::new(),
    }
}

/// The source folders with their target names, after selection and mapping.
/// Source folders with their target names.
pub type FolderPairs = Vec<(SourceFolder, FolderName)>;

pub fn mapped_folders(src: &Store, dst: &Store, opts: &SyncOptions) -> Result<(FolderPairs, Vec<Problem>)> {
    let (folders, mut problems) = store::source_folders(&src.path, src.format()?, opts.follow_symlinks)?;
    let existing = if opts.map.automap { existing_folders(dst, opts.layout) } else { Vec::new() };
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
        _ => mbox_folder_path(&dst.path, name),
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
