//! The unchanged-folder shortcut: a folder whose source, target and options are as the last
//! run left them is not read again (see state.rs).

use std::path::Path;

use super::SyncOptions;
use super::state;
use super::sync_folder_read;
use super::target::Target;
use super::target::target_folder;
use super::target::{root_dir, target_root};
use crate::events::Recorder;
use crate::folder::FolderName;
use crate::fsx;
use crate::interrupt;
use crate::report::FolderOutcome;
use crate::store::SourceFolder;
use crate::store::maildir::read as mdread;
use crate::store::maildir::write::{self as mdwrite};

pub(super) fn sync_folder(
    sf: &SourceFolder,
    tn: &FolderName,
    target: &Target,
    opts: &SyncOptions,
    rec: &dyn Recorder,
) -> FolderOutcome {
    if interrupt::requested().is_some() {
        return FolderOutcome { interrupted: true, ..Default::default() };
    }
    // Stamps first: a source changed while it is read must not look unchanged next time.
    let tfolder = target_folder(target, tn, opts.layout);
    let stamp = match (&tfolder, opts.use_cache) {
        (Some(_), true) => state::options_stamp(opts, sf.loc.path(), tn).zip(state::source_stamp(&sf.loc)),
        _ => None,
    };
    let mut warnings = Vec::new();
    let root = root_dir(target);
    let root = root.as_ref();
    // A folder reached through a link is not read, its state included; the read below refuses
    // it and says so.
    let linked = |tpath: &Path, mbox: bool| {
        let dir = if mbox { tpath.parent() } else { Some(tpath) };
        !matches!(target, Target::MboxFile(_))
            && dir.and_then(|d| fsx::link_on_the_way(target_root(target), d)).is_some()
    };
    let saved = match (&tfolder, &stamp) {
        (Some((tpath, mbox)), Some(_)) if !linked(tpath, *mbox) => {
            state::load(root, tpath, *mbox).unwrap_or_else(|p| {
                warnings.push(p);
                None
            })
        }
        _ => None,
    };
    if let (Some((tpath, mbox)), Some((o, s))) = (&tfolder, &stamp)
        && let Some(mut saved) = saved
        && &saved.options == o
        && &saved.source == s
        && saved.target == state::target_stamp(root, tpath, *mbox)
        && (saved.whole(tpath) || sizes_match(root, tpath, *mbox))
    {
        if (saved.old_name || !saved.whole(tpath)) && !opts.dry_run {
            if !saved.whole(tpath) {
                saved.verified = true;
                saved.epoch = None;
            }
            save_state(root, tpath, *mbox, &saved, opts);
        }
        let mut out = FolderOutcome { counts: state::unchanged_counts(&saved.counts), warnings, ..Default::default() };
        if opts.dry_run {
            out.plan_line = Some(format!("{} -> {}: unchanged since the last run", sf.name.as_str(), tn.as_str()));
        }
        return out;
    }
    let mut out = sync_folder_read(sf, tn, target, opts, rec);
    out.warnings.append(&mut warnings);
    // A folder cut short by a signal must be read again next time.
    let finished = out.errors.is_empty() && !out.interrupted;
    let format = out.mbox_format.map(String::from);
    if let (Some((tpath, true)), false, Some(_)) = (&tfolder, opts.dry_run, &format) {
        // How the mbox is written must be known to the next run whatever else is saved: with
        // --no-cache too, and after a run with errors (the file was committed all the same).
        let kept = state::load(root, tpath, true).ok().flatten();
        if kept.as_ref().and_then(|s| s.mbox_format.as_ref()) != format.as_ref() {
            let saved = kept.unwrap_or_else(|| state::Saved::format_only(tpath));
            save_state(root, tpath, true, &state::Saved { mbox_format: format.clone(), ..saved }, opts);
        }
    }
    if let (Some((tpath, mbox)), Some((o, s)), false, true) = (&tfolder, stamp, opts.dry_run, finished) {
        let saved = state::Saved {
            options: o,
            source: s,
            target: state::target_stamp(root, tpath, *mbox),
            counts: out.counts.clone(),
            verified: opts.durable,
            epoch: if opts.durable { None } else { state::write_epoch(tpath) },
            // Taken by save_state from the directory it writes into.
            folder: None,
            old_name: false,
            mbox_format: format,
        };
        save_state(root, tpath, *mbox, &saved, opts);
    }
    out
}

pub(super) fn save_state(root: Option<&fsx::Dir>, tpath: &Path, mbox: bool, saved: &state::Saved, opts: &SyncOptions) {
    let path = state::state_path(tpath, mbox);
    // A text file with a final newline: tools that concatenate files next to an mbox (`cat`,
    // grep counts) must not see it glued to the next file's first line.
    let text = |saved: &state::Saved| {
        serde_json::to_vec(saved).map(|mut t| {
            t.push(b'\n');
            t
        })
    };
    // A bare file name's directory is the current one (`Path::parent` gives "").
    let dir = path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d });
    if let (Some(dir), Some(name), Some(root)) = (dir, path.file_name(), root)
        && let Ok(d) = root.open_below(dir)
    {
        // The identity of the directory written into, not of whatever its path names now.
        let saved = state::Saved { folder: state::folder_in(&d, tpath, mbox), ..saved.clone() };
        if let Ok(text) = text(&saved)
            && d.write_atomic(&name.to_string_lossy(), &text, mdwrite::FILE_MODE, opts.owner, false).is_ok()
            && let Some(old) = state::old_mbox_state_name(tpath).filter(|_| mbox)
        {
            // Written under its new name: the old one goes (a reader took it for a mailbox).
            let _ = d.unlink(&old);
        }
    }
}

/// Every message file of a target Maildir folder has the size its `,S=` says (an mbox target
/// is covered by its stamp, which holds its size). Looked at through the folder opened from
/// `root`; a folder that cannot be opened so does not match.
pub(super) fn sizes_match(root: Option<&fsx::Dir>, tpath: &Path, mbox: bool) -> bool {
    if mbox {
        return true;
    }
    let Some(Ok(Some(dir))) = root.map(|r| r.find_below(tpath)) else { return false };
    let Ok(subs) = mdread::MessageDirs::open(&dir, &mut Vec::new()) else { return false };
    let kw = Default::default();
    subs.stream(&kw)
        .all(|r| r.is_ok_and(|e| crate::store::maildir::name::size_field(e.base()).is_none_or(|s| s == e.size)))
}
