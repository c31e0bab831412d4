//! One sync of any two stores, as `sync` and every batch row run it: cPanel accounts go
//! through the cpanel module, the rest through the store sync, and `--max-delete` is enforced
//! over the whole run (a dry pass counts the deletions first). The options come checked from
//! [`crate::config`]; those the two stores make no use of are warned about here.

use std::path::Path;

use crate::cpanel::CpanelOptions;
use crate::deletion::{Budget, Deletion};
use crate::error::{self, Error, Problem, Result};
use crate::events::Recorder;
use crate::report::Summary;
use crate::spec::{Kind, Store};
use crate::sync::SyncOptions;

pub fn sync(s: &Store, d: &Store, so: &SyncOptions, cp: &CpanelOptions, rec: &dyn Recorder) -> Result<Summary> {
    if so.folders_only && (s.kind == Kind::Cpanel || d.kind == Kind::Cpanel) {
        return Err(Error::Usage(
            "--folders-only is for mbox and Maildir stores; a cPanel account's mailboxes are made with their mail"
                .into(),
        ));
    }
    let mut summary = sync_budgeted(s, d, so, cp, rec)?;
    // A refused source is said alone.
    if !summary.rejected {
        summary.warnings.extend(unused_options(s, d, so, cp));
        summary.warnings.sort();
    }
    Ok(summary)
}

/// Options given that these two stores make no use of, one warning each: a run that leaves
/// out what was asked says so. What only a cPanel account's contents tell (renames of domains
/// and users it does not have, mbox reading of Maildir mailboxes) the cpanel module says.
fn unused_options(s: &Store, d: &Store, so: &SyncOptions, cp: &CpanelOptions) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut warn = |path: &Path, reason: String| out.push(Problem::of(error::Kind::Usage, path, reason));
    let mapping: Vec<String> = (cp.map_domain.iter().map(|m| format!("--map-domain {m}")))
        .chain(cp.map_user.iter().map(|m| format!("--map-user {m}")))
        .chain(cp.map_file.iter().map(|f| format!("--map-file {}", f.display())))
        .collect();
    let default = CpanelOptions::default();
    let mut metadata = Vec::new();
    if cp.source_etc != default.source_etc {
        metadata.push(format!("--source-etc {}", cp.source_etc.display()));
    }
    if cp.target_etc != default.target_etc {
        metadata.push(format!("--target-etc {}", cp.target_etc.display()));
    }
    if cp.overwrite_metadata {
        metadata.push("--overwrite-metadata".to_string());
    }
    match (s.kind == Kind::Cpanel, d.kind == Kind::Cpanel) {
        (false, false) => {
            let mailbox = cp.mailbox.iter().map(|m| format!("--mailbox {m}"));
            for o in mapping.into_iter().chain(metadata).chain(mailbox) {
                warn(&s.path, format!("{o}: for cPanel accounts (cpanel:HOME), and neither store is one; ignored"));
            }
        }
        (true, false) => {
            for o in mapping {
                warn(
                    &d.path,
                    format!("{o}: renames mailboxes of a cPanel target, and this target is not one; ignored"),
                );
            }
            for o in metadata {
                warn(
                    &d.path,
                    format!("{o}: account files go only from a cPanel account into a cPanel account; ignored"),
                );
            }
        }
        (false, true) => {
            for o in metadata {
                warn(
                    &s.path,
                    format!("{o}: account files come only from a cPanel account, and this source is not one; ignored"),
                );
            }
        }
        (true, true) => {}
    }
    if let Some(f) = so.mbox_format.filter(|_| d.kind != Kind::Mbox) {
        let is = if d.kind == Kind::Cpanel {
            "a cPanel account's mailboxes are Maildirs"
        } else {
            "this target is a Maildir"
        };
        warn(&d.path, format!("--mbox-format {}: for an mbox target, and {is}; ignored", f.name()));
    }
    if s.kind == Kind::Maildir {
        for o in so.mbox_reading_given() {
            warn(&s.path, format!("{o}: for reading mbox sources, and this source is a Maildir; ignored"));
        }
    }
    for r in so.map.unmatched() {
        warn(&s.path, format!("--map-folder {}: matches none of the folders synced; it renamed nothing", r.spec));
    }
    out
}

fn sync_budgeted(s: &Store, d: &Store, so: &SyncOptions, cp: &CpanelOptions, rec: &dyn Recorder) -> Result<Summary> {
    let run = |so: &SyncOptions, rec: &dyn Recorder| {
        if s.kind == Kind::Cpanel || d.kind == Kind::Cpanel {
            crate::cpanel::sync(s, d, so, cp, rec)
        } else {
            crate::sync::sync(s, d, so, rec)
        }
    };
    let Some(max) = so.max_delete.filter(|_| so.deletion != Deletion::Off) else { return run(so, rec) };
    let over = |n: u64, summary: &mut Summary, done: &str| {
        summary.errors.push(Problem::new(
            &d.path,
            format!("this run would delete {n} messages, more than --max-delete {max}: {done}"),
        ));
        summary.counts.failed += 1;
        summary.complete = false;
    };
    if so.dry_run {
        let mut summary = run(so, rec)?;
        if summary.counts.deleted_target > max {
            over(summary.counts.deleted_target, &mut summary, "a real run deletes none");
        }
        return Ok(summary);
    }
    // The whole run's deletions are counted first (a dry run), so that "none" means none; the
    // budget still holds if the source changes between the two passes.
    let planned = run(&SyncOptions { dry_run: true, ..so.clone() }, &crate::events::Discard)?;
    if planned.counts.deleted_target > max {
        let mut summary = run(&SyncOptions { deletion: Deletion::Off, ..so.clone() }, rec)?;
        over(planned.counts.deleted_target, &mut summary, "deleted none");
        return Ok(summary);
    }
    run(&SyncOptions { delete_budget: Some(Budget::new(max)), ..so.clone() }, rec)
}
