//! One sync of any two stores, as `sync` and every batch row run it: cPanel accounts go
//! through the cpanel module, the rest through the store sync, and `--max-delete` is enforced
//! over the whole run (a dry pass counts the deletions first). The options come checked from
//! [`crate::config`].

use crate::cpanel::CpanelOptions;
use crate::deletion::{Budget, Deletion};
use crate::error::{Problem, Result};
use crate::events::Recorder;
use crate::report::Summary;
use crate::spec::{Kind, Store};
use crate::sync::SyncOptions;

pub fn sync(s: &Store, d: &Store, so: &SyncOptions, cp: &CpanelOptions, rec: &dyn Recorder) -> Result<Summary> {
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
