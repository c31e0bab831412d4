//! Batch runs: many syncs from one CSV file, optionally one shard of it, each row's result
//! written as a JSON report, and the merge of those reports (issue 8).
//!
//! This module owns the scheduling around the sync, not the sync itself: it reads and checks
//! the file ([`rows`]), picks this process's rows ([`shard`]), runs them biggest first on
//! `--jobs` threads through [`crate::engine::sync`] (all rows on the run's one worker pool,
//! [`crate::sync::pool`]), writes one report per row atomically and merges the
//! reports ([`merge`]). A row that fails is a report saying so; the others go on. Every check
//! that can fail on the file happens before the first row runs (exit 2, nothing written).
//!
//! Report directory: `row-ID.json` per row (ID from [`rows::Row::id`], so shards never write
//! the same name) and `batch.json`, the list of every row of the file, from which `report`
//! knows which rows are missing. Files are written under a temporary name unique to the host
//! and process, then renamed: readers never see half a report, even on shared storage.

pub mod merge;
pub mod rows;
pub mod shard;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use crate::config::{self, SyncSettings};
use crate::error::{At, Error, Problem, Result};
use crate::events::{Discard, Recorder};
use crate::exit::Exit;
use crate::report::Summary;
use crate::spec::Store;
use crate::sync::SyncOptions;

use merge::{Expected, Merged};
use rows::Row;
use shard::Shard;

/// What `batch` was asked to do.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub file: PathBuf,
    /// `K/N`, checked by [`shard::select`].
    pub shard: Option<String>,
    pub shards: Option<u64>,
    pub report_dir: Option<PathBuf>,
    pub rerun: bool,
    pub list: bool,
    /// Every row's settings before its own options.
    pub sync: SyncSettings,
    pub json: bool,
    pub quiet: bool,
}

/// What `report` was asked to do.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub dir: PathBuf,
    pub json: bool,
    /// The batch file whose rows are expected (else the one the report directory names).
    pub file: Option<PathBuf>,
}

/// Name of the list of rows in a report directory.
const MANIFEST: &str = "batch.json";

fn report_name(id: &str) -> String {
    format!("row-{id}.json")
}

/// A row ready to run: its store specs checked and its options turned into sync options.
struct Job<'a> {
    row: &'a Row,
    id: String,
    settings: SyncSettings,
    so: SyncOptions,
    /// Rows with the same target are never run at the same time by one process.
    target_key: PathBuf,
}

/// Reads and checks the whole file (not only this shard's rows, so every shard agrees on
/// whether the file is good).
fn read_rows(file: &Path) -> Result<Vec<Row>> {
    let bytes = std::fs::read(file)
        .map_err(|e| Error::Usage(format!("{}: {}", file.display(), crate::error::io_reason(&e))))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = e.as_bytes().get(..e.utf8_error().valid_up_to()).unwrap_or_default();
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        Error::Usage(format!("{}:{line}: not UTF-8 text", file.display()))
    })?;
    let rows = rows::parse(&text).map_err(|e| Error::Usage(format!("{}:{}: {}", file.display(), e.line, e.reason)))?;
    if rows.is_empty() {
        return Err(Error::Usage(format!("{}: no rows (only comments or blank lines)", file.display())));
    }
    Ok(rows)
}

fn job<'a>(file: &Path, row: &'a Row, base: &SyncSettings, have_key: bool) -> Result<Job<'a>> {
    let at = |m: String| Error::Usage(format!("{}:{}: {m}", file.display(), row.line));
    let settings = row.settings(base);
    let so = config::sync_options(&settings).map_err(|e| at(e.to_string()))?;
    Store::parse(&row.source).map_err(|e| at(format!("source: {e}")))?;
    let target = Store::parse(&row.target).map_err(|e| at(format!("target: {e}")))?;
    if settings.audit_log.is_some() && !have_key {
        return Err(at("audit-log needs --audit-key-file on the command line".into()));
    }
    Ok(Job { row, id: row.id(), settings, so, target_key: target.path })
}

/// A path as report text. Serializing the path itself fails (a panic inside `json!`) when it
/// is not UTF-8.
fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn host() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes `name` in `dir` atomically: a temporary name no other host or process uses, then a
/// rename over `name`.
fn write_atomic(dir: &Path, name: &str, data: &[u8], durable: bool) -> Result<()> {
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", host(), std::process::id()));
    let path = dir.join(name);
    let r = (|| {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(data).at(&tmp)?;
        if durable {
            f.sync_all().at(&tmp)?;
        }
        std::fs::rename(&tmp, &path).at(&path)?;
        if durable {
            File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn read_report(path: &Path) -> std::result::Result<Value, Problem> {
    let bytes = std::fs::read(path).map_err(|e| Problem::io(path, &e))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Problem::new(path, "the report is not a JSON object")),
        Err(e) => Err(Problem::new(path, format!("the report is not JSON: {e}"))),
    }
}

/// Every readable `row-ID.json` in `dir` by ID, and why the others could not be read.
fn read_reports(dir: &Path) -> Result<(BTreeMap<String, Value>, BTreeMap<String, Problem>)> {
    let mut ok = BTreeMap::new();
    let mut bad = BTreeMap::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix("row-")).and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        match read_report(&entry.path()) {
            Ok(v) => ok.insert(id.to_string(), v),
            Err(p) => bad.insert(id.to_string(), p).map(|_| Value::Null),
        };
    }
    Ok((ok, bad))
}

/// Whether an earlier report lets this run skip the row: a real (not dry) run that finished
/// with no errors.
fn is_complete(v: &Value) -> bool {
    v.get("complete").and_then(Value::as_bool) == Some(true) && v.get("dry_run").and_then(Value::as_bool) != Some(true)
}

/// A cheap size estimate for running big rows first: a file's length or the sum of the file
/// lengths below a directory (metadata only). Unreadable means 0: the row reports its own error.
fn estimate(spec: &str) -> u64 {
    let Ok(st) = Store::parse(spec) else { return 0 };
    match std::fs::metadata(&st.path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => walkdir::WalkDir::new(&st.path)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .fold(0u64, u64::saturating_add),
        _ => 0,
    }
}

fn estimates(specs: &[&str], threads: usize) -> Vec<u64> {
    let chunk = specs.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            specs.chunks(chunk).map(|c| s.spawn(move || c.iter().map(|x| estimate(x)).collect::<Vec<u64>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// The given rows with their estimated sizes, biggest first (ties in file order).
fn biggest_first(jobs: &[Job], rows: Vec<usize>, threads: usize) -> Vec<(usize, u64)> {
    let specs: Vec<&str> = rows.iter().map(|&i| jobs.get(i).map_or("", |j| j.row.source.as_str())).collect();
    let mut sized: Vec<(usize, u64)> = rows.into_iter().zip(estimates(&specs, threads)).collect();
    sized.sort_by_key(|&(i, size)| (std::cmp::Reverse(size), jobs.get(i).map_or(0, |j| j.row.line)));
    sized
}

fn threads(jobs: usize) -> usize {
    if jobs == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { jobs }
}

/// Shared by the workers of one batch run.
struct Ctx<'a> {
    shard: Shard,
    host: String,
    file: &'a Path,
    audit_key: Option<Vec<u8>>,
    dry_run: bool,
}

/// Runs one row; whatever happens becomes its report.
fn run_row(job: &Job, ctx: &Ctx) -> Value {
    let start = now();
    let t0 = Instant::now();
    let row = job.row;
    let attempt = || -> Result<Summary> {
        let (s, d) = config::stores(&row.source, &row.target)?;
        let audit = match (&job.settings.audit_log, &ctx.audit_key) {
            (Some(p), Some(k)) => Some(crate::audit::AuditLog::create(
                p,
                k.clone(),
                json!({"batch": shown(ctx.file), "line": row.line, "source": row.source, "target": row.target, "dry_run": job.settings.dry_run, "delete": job.settings.delete, "mirror": job.settings.mirror}),
            )?),
            _ => None,
        };
        let rec: &dyn Recorder = match &audit {
            Some(l) => l,
            None => &Discard,
        };
        let mut summary = crate::engine::sync(&s, &d, &job.so, &job.settings.cpanel, rec)?;
        if let Some(Err(e)) =
            audit.as_ref().map(|l| l.finish(serde_json::to_value(&summary.counts).unwrap_or_default()))
        {
            summary.errors.push(e.problem());
            summary.complete = false;
        }
        Ok(summary)
    };
    // A panic in one row's sync must not take the other rows down with it.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt))
        .unwrap_or_else(|_| Err(Error::bad(&row.source, "internal error (panic) while syncing this row")));
    let summary = result.unwrap_or_else(|e| {
        let mut p = e.problem();
        if p.path.as_os_str().is_empty() {
            // Usage errors (`source does not exist`) carry the path in their text.
            let shown = Store::parse(&row.source).map(|s| format!("{}: ", s.path.display())).unwrap_or_default();
            if let Some(r) = p.reason.strip_prefix(&shown).filter(|_| !shown.is_empty()) {
                p.reason = r.to_string();
            }
            p.path = row.source.clone().into();
        }
        let mut s = Summary { dry_run: ctx.dry_run, complete: false, errors: vec![p], ..Default::default() };
        s.counts.failed = 1;
        s.seconds = t0.elapsed().as_secs_f64();
        s
    });
    let mut v = serde_json::to_value(&summary).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        // A row is complete only when its sync finished and listed no error.
        let complete = summary.complete && summary.errors.is_empty();
        m.insert("schema".into(), json!(crate::contract::BATCH_ROW));
        m.insert("complete".into(), json!(complete));
        m.insert("id".into(), json!(job.id));
        m.insert("line".into(), json!(row.line));
        m.insert("source".into(), json!(row.source));
        m.insert("target".into(), json!(row.target));
        m.insert("options".into(), json!(row.written));
        m.insert("shard".into(), json!(ctx.shard.to_string()));
        m.insert("host".into(), json!(ctx.host));
        m.insert("start".into(), json!(start));
        m.insert("end".into(), json!(now()));
        m.insert("batch_file".into(), json!(shown(ctx.file)));
        m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    }
    v
}

/// The queue of rows, biggest first; a row waits while another row of the same target runs.
struct Queue {
    pending: Vec<usize>,
    busy: HashSet<PathBuf>,
}

fn run_all(jobs: &[Job], order: Vec<usize>, workers: usize, ctx: &Ctx, mut done: impl FnMut(usize, Value) + Send) {
    let queue = Mutex::new(Queue { pending: order, busy: HashSet::new() });
    let wake = Condvar::new();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Value)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (queue, wake) = (&queue, &wake);
            s.spawn(move || {
                loop {
                    let i = {
                        let Ok(mut q) = queue.lock() else { return };
                        loop {
                            // After a signal, rows not started are left for the next run.
                            if q.pending.is_empty() || crate::interrupt::requested().is_some() {
                                return;
                            }
                            let pos = q
                                .pending
                                .iter()
                                .position(|&i| jobs.get(i).is_some_and(|j| !q.busy.contains(&j.target_key)));
                            if let Some(pos) = pos {
                                let i = q.pending.remove(pos);
                                if let Some(j) = jobs.get(i) {
                                    q.busy.insert(j.target_key.clone());
                                }
                                break i;
                            }
                            q = match wake.wait(q) {
                                Ok(q) => q,
                                Err(_) => return,
                            };
                        }
                    };
                    let Some(j) = jobs.get(i) else { continue };
                    let v = run_row(j, ctx);
                    if let Ok(mut q) = queue.lock() {
                        q.busy.remove(&j.target_key);
                    }
                    wake.notify_all();
                    if tx.send((i, v)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        // One receiver writes the reports and owns stderr, so lines never interleave.
        for (i, v) in rx {
            done(i, v);
        }
    });
}

pub fn run_batch(a: &BatchOptions) -> Result<Exit> {
    crate::interrupt::install();
    let shard = shard::select(a.shard.as_deref(), a.shards, |k| std::env::var(k).ok()).map_err(Error::Usage)?;
    if a.sync.audit_log.is_some() {
        return Err(Error::Usage(
            "batch: --audit-log names one file and rows run at the same time; give each row its own with the row option audit-log=FILE".into(),
        ));
    }
    let audit_key = a.sync.audit_key_file.as_deref().map(crate::audit::read_key).transpose()?;
    let rows = read_rows(&a.file)?;
    let all: Vec<Job> = rows.iter().map(|r| job(&a.file, r, &a.sync, audit_key.is_some())).collect::<Result<_>>()?;
    let mine: Vec<Job> = all.into_iter().filter(|j| shard.contains(&j.row.source)).collect();
    let nthreads = threads(a.sync.read.jobs);
    let quiet = a.quiet;

    if a.list {
        if a.json {
            return Err(Error::Usage("batch: --list prints text (a row per line); leave out --json".into()));
        }
        let mut out = std::io::stdout().lock();
        for (i, size) in biggest_first(&mine, (0..mine.len()).collect(), nthreads) {
            if let Some(j) = mine.get(i) {
                let _ = writeln!(out, "{}\t{shard}\t{}\t{size}\t{}\t{}", j.row.line, j.id, j.row.source, j.row.target);
            }
        }
        return Ok(Exit::Ok);
    }

    let durable = a.sync.durable;
    let mut previous: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(dir) = &a.report_dir {
        std::fs::create_dir_all(dir).at(dir)?;
        let expected: Vec<Expected> = rows.iter().map(expected).collect();
        let manifest = json!({
            "schema": crate::contract::BATCH_MANIFEST,
            "batch_file": shown(&a.file), "shards": shard.n, "host": host(), "time": now(),
            "version": env!("CARGO_PKG_VERSION"), "rows": expected,
        });
        write_atomic(dir, MANIFEST, manifest.to_string().as_bytes(), durable)?;
        if !a.rerun {
            for j in &mine {
                if let Ok(v) = read_report(&dir.join(report_name(&j.id)))
                    && is_complete(&v)
                {
                    previous.insert(j.id.clone(), v);
                }
            }
        }
    }
    let todo: Vec<usize> =
        (0..mine.len()).filter(|&i| mine.get(i).is_some_and(|j| !previous.contains_key(&j.id))).collect();
    if !quiet && !previous.is_empty() {
        let n = crate::human::count(previous.len() as u64, "row", "rows");
        eprintln!("batch: {n} skipped, complete in their reports (--rerun runs them again)");
    }

    let order: Vec<usize> = biggest_first(&mine, todo, nthreads).into_iter().map(|(i, _)| i).collect();

    // Rows share the cores: `--jobs` rows at once, their folders and chunks on the run's one
    // pool of `--jobs` threads (a row alone at the end gets all of them).
    let workers = nthreads.min(order.len()).max(1);
    crate::sync::pool(nthreads)?;
    let ctx = Ctx { shard, host: host(), file: &a.file, audit_key, dry_run: a.sync.dry_run };
    let total = order.len();
    let mut finished = 0usize;
    let skipped = previous.len();
    let mut results: BTreeMap<String, Value> = previous;
    let mut write_failures = 0u64;
    run_all(&mine, order, workers, &ctx, |i, v| {
        finished += 1;
        let Some(j) = mine.get(i) else { return };
        if let Some(dir) = &a.report_dir {
            let data = serde_json::to_vec_pretty(&v).unwrap_or_default();
            if let Err(e) = write_atomic(dir, &report_name(&j.id), &data, durable) {
                write_failures += 1;
                eprintln!(
                    "batch: line {}: report not written: {}",
                    j.row.line,
                    crate::folder::sanitize(&e.to_string())
                );
            }
        }
        if !quiet {
            let ok = v.get("complete").and_then(Value::as_bool) == Some(true);
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            let errs = v.get("errors").and_then(Value::as_array).map_or(0, Vec::len);
            let secs = v.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
            eprintln!(
                "[{finished}/{total}] {} line {}: {} -> {}: {} transferred, {errs} error(s), {secs:.2} s",
                if ok { "done" } else { "FAILED" },
                j.row.line,
                crate::folder::sanitize(&j.row.source),
                crate::folder::sanitize(&j.row.target),
                n("transferred"),
            );
        }
        results.insert(j.id.clone(), v);
    });

    let expected_mine: Vec<Expected> = mine.iter().map(|j| expected(j.row)).collect();
    let merged = merge::merge(Some(&expected_mine), &results, &BTreeMap::new());
    print_batch(&merged, a, shard, skipped, write_failures);
    if let Some(sig) = crate::interrupt::requested() {
        eprintln!(
            "batch: interrupted by {}; rows not started are missing from the reports, run it again to finish",
            crate::interrupt::name(sig)
        );
        return Ok(Exit::Signal(sig));
    }
    Ok(Exit::ok_if(merged.failed == 0 && merged.missing == 0 && write_failures == 0))
}

fn expected(r: &Row) -> Expected {
    Expected { id: r.id(), line: r.line, source: r.source.clone(), target: r.target.clone() }
}

fn print_batch(m: &Merged, a: &BatchOptions, shard: Shard, skipped: usize, write_failures: u64) {
    if a.json {
        let mut v = serde_json::to_value(m).unwrap_or_else(|_| json!({}));
        if let Value::Object(o) = &mut v {
            o.insert("schema".into(), json!(crate::contract::BATCH));
            o.insert("shard".into(), json!(shard.to_string()));
            o.insert("skipped".into(), json!(skipped));
            o.insert("reports_not_written".into(), json!(write_failures));
            o.insert("interrupted".into(), json!(crate::interrupt::requested().is_some()));
            // An empty shard is a success for the run, whatever `report` would say.
            o.insert("ok".into(), json!(m.failed == 0 && m.missing == 0 && write_failures == 0));
        }
        println!("{v}");
    }
    if !a.quiet || m.failed > 0 {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "Batch shard {shard} of {}:", a.file.display());
        if m.rows == 0 {
            let _ = writeln!(err, "no rows in this shard.");
        } else {
            let _ = m.write_human(&mut err);
        }
    }
}

pub fn run_report(a: &ReportOptions) -> Result<Exit> {
    if !a.dir.is_dir() {
        return Err(Error::Usage(format!("{}: not a directory of batch reports", a.dir.display())));
    }
    let expected: Option<Vec<Expected>> = match &a.file {
        Some(f) => Some(read_rows(f)?.iter().map(expected).collect()),
        None => {
            let path = a.dir.join(MANIFEST);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let v: Value =
                        serde_json::from_slice(&bytes).map_err(|e| Error::bad(&path, format!("not JSON: {e}")))?;
                    let rows =
                        v.get("rows").and_then(Value::as_array).ok_or_else(|| Error::bad(&path, "no list of rows"))?;
                    Some(rows.iter().map(|r| manifest_row(r, &path)).collect::<Result<_>>()?)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!(
                        "report: no {MANIFEST} in {}: rows that never ran cannot be named (give --file)",
                        a.dir.display()
                    );
                    None
                }
                Err(e) => return Err(e).at(&path),
            }
        }
    };
    let (reports, unreadable) = read_reports(&a.dir)?;
    let m = merge::merge(expected.as_deref(), &reports, &unreadable);
    if a.json {
        println!("{}", crate::contract::line(crate::contract::REPORT, &m)?);
    } else {
        let _ = m.write_human(&mut std::io::stdout().lock());
    }
    Ok(m.exit_code())
}

fn manifest_row(r: &Value, path: &Path) -> Result<Expected> {
    let s = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::bad(path, format!("a row without {k}")))
    };
    Ok(Expected {
        id: s("id")?,
        line: r.get("line").and_then(Value::as_u64).and_then(|l| usize::try_from(l).ok()).unwrap_or(0),
        source: s("source")?,
        target: s("target")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness_needs_a_real_run() {
        assert!(is_complete(&json!({"complete": true, "dry_run": false})));
        assert!(is_complete(&json!({"complete": true})));
        assert!(!is_complete(&json!({"complete": true, "dry_run": true})));
        assert!(!is_complete(&json!({"complete": false})));
        assert!(!is_complete(&json!({"complete": "yes"})));
    }

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        write_atomic(d.path(), "row-x.json", b"{}", true).unwrap();
        write_atomic(d.path(), "row-x.json", b"{\"a\":1}", false).unwrap();
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["row-x.json"]);
        assert_eq!(std::fs::read(d.path().join("row-x.json")).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn reports_are_found_by_name_and_bad_ones_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("row-aa.json"), b"{\"complete\":true}").unwrap();
        std::fs::write(d.path().join("row-bb.json"), b"{trunc").unwrap();
        std::fs::write(d.path().join(".row-cc.json.h.1.tmp"), b"{}").unwrap();
        std::fs::write(d.path().join(MANIFEST), b"{}").unwrap();
        let (ok, bad) = read_reports(d.path()).unwrap();
        assert_eq!(ok.keys().collect::<Vec<_>>(), ["aa"]);
        assert_eq!(bad.keys().collect::<Vec<_>>(), ["bb"]);
        assert!(bad["bb"].path.ends_with("row-bb.json"));
    }

    #[test]
    fn estimate_sums_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/cur")).unwrap();
        std::fs::write(d.path().join("a/cur/1"), [0u8; 100]).unwrap();
        std::fs::write(d.path().join("a/cur/2"), [0u8; 50]).unwrap();
        std::fs::write(d.path().join("m.mbox"), [0u8; 70]).unwrap();
        let p = |s: &str| d.path().join(s).display().to_string();
        assert_eq!(estimate(&p("a")), 150);
        assert_eq!(estimate(&format!("maildir:{}", p("a"))), 150);
        assert_eq!(estimate(&p("m.mbox")), 70);
        assert_eq!(estimate(&p("nothing")), 0);
        assert_eq!(estimates(&[&p("a"), &p("m.mbox"), &p("nothing")], 2), [150, 70, 0]);
    }
}
