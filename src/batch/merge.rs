//! Merging the per-row JSON reports of batch runs into one: totals of every counter, the rows
//! that failed and the rows that have no report at all. Pure: reports come in as parsed JSON,
//! the merged report goes out as a value; reading the directory is `batch`'s job.
//!
//! Counters are summed by name over the keys of [`Counts`], so a counter added to the sync
//! report is merged without touching this file; `biggest_message` is a maximum, not a sum.
//! Reports are read as loose JSON (not a struct) because they may come from another version of
//! mailmover on another host: what is there is used, what is missing counts as zero.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Problem;
use crate::exit::Exit;
use crate::human;
use crate::report::Counts;

/// A row the batch file says should have a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expected {
    pub id: String,
    pub line: usize,
    pub source: String,
    pub target: String,
}

/// A row in the lists of failed and missing rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowRef {
    pub id: String,
    pub line: Option<u64>,
    pub source: String,
    pub target: String,
    /// Null when no report says (a missing row, or a report without them).
    pub shard: Option<String>,
    pub host: Option<String>,
    /// Empty for a missing row.
    pub errors: Vec<Problem>,
}

/// The merged report (`report --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    /// Every row has a report and every report says complete.
    pub ok: bool,
    pub rows: u64,
    pub complete: u64,
    pub failed: u64,
    pub missing: u64,
    /// Rows whose report is of a dry run (counted as complete when they had no errors).
    pub dry_run: u64,
    /// The sync counters summed over the rows.
    pub totals: Map<String, Value>,
    /// Sum of the rows' own durations.
    pub seconds: f64,
    /// From the first row's start to the last row's end.
    pub wall_seconds: Option<f64>,
    /// Rows per host that ran them.
    pub hosts: BTreeMap<String, u64>,
    pub failed_rows: Vec<RowRef>,
    pub missing_rows: Vec<RowRef>,
    /// Reports of rows that are no longer in the batch file (not counted).
    pub ignored: u64,
}

fn counter_keys() -> Vec<(String, Value)> {
    match serde_json::to_value(Counts::default()) {
        Ok(Value::Object(m)) => m.into_iter().collect(),
        _ => Vec::new(),
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn add_counter(total: &mut Value, key: &str, v: &Value) {
    match (total, v) {
        (Value::Number(t), Value::Number(n)) => {
            let (a, b) = (t.as_u64().unwrap_or(0), n.as_u64().unwrap_or(0));
            let r = if key == "biggest_message" { a.max(b) } else { a.saturating_add(b) };
            *t = r.into();
        }
        (Value::Object(t), Value::Object(m)) => {
            for (k, n) in m {
                let slot = t.entry(k.clone()).or_insert(Value::from(0u64));
                add_counter(slot, k, n);
            }
        }
        _ => {}
    }
}

fn time_of(v: &Value, key: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    v.get(key).and_then(Value::as_str).and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
}

/// Merges reports (by row id). With `expected` (the rows of the batch file) rows without a
/// report are missing and reports of other rows are ignored; without it every report counts.
/// `unreadable` holds, by row id, why a report file could not be read: such a row failed.
pub fn merge(
    expected: Option<&[Expected]>,
    reports: &BTreeMap<String, Value>,
    unreadable: &BTreeMap<String, Problem>,
) -> Merged {
    let keys = counter_keys();
    let mut totals: Map<String, Value> = keys.iter().cloned().collect();
    let mut m = Merged {
        ok: true,
        rows: 0,
        complete: 0,
        failed: 0,
        missing: 0,
        dry_run: 0,
        totals: Map::new(),
        seconds: 0.0,
        wall_seconds: None,
        hosts: BTreeMap::new(),
        failed_rows: Vec::new(),
        missing_rows: Vec::new(),
        ignored: 0,
    };
    let rows: Vec<Expected> = match expected {
        Some(e) => e.to_vec(),
        None => {
            let ids = reports.keys().chain(unreadable.keys());
            let mut v: Vec<Expected> = ids
                .map(|id| {
                    let r = reports.get(id);
                    Expected {
                        id: id.clone(),
                        line: r
                            .and_then(|r| r.get("line"))
                            .and_then(Value::as_u64)
                            .and_then(|l| usize::try_from(l).ok())
                            .unwrap_or(0),
                        source: r.and_then(|r| text(r, "source")).unwrap_or_default(),
                        target: r.and_then(|r| text(r, "target")).unwrap_or_default(),
                    }
                })
                .collect();
            v.sort_by(|a, b| (a.line, &a.id).cmp(&(b.line, &b.id)));
            v.dedup_by(|a, b| a.id == b.id);
            v
        }
    };
    let wanted: HashMap<&str, ()> = rows.iter().map(|r| (r.id.as_str(), ())).collect();
    m.ignored = reports.keys().chain(unreadable.keys()).filter(|id| !wanted.contains_key(id.as_str())).count() as u64;
    let (mut first, mut last) = (None, None);
    for row in &rows {
        m.rows += 1;
        let mut rref = RowRef {
            id: row.id.clone(),
            line: (row.line > 0).then_some(row.line as u64),
            source: row.source.clone(),
            target: row.target.clone(),
            shard: None,
            host: None,
            errors: Vec::new(),
        };
        let Some(r) = reports.get(&row.id) else {
            if let Some(p) = unreadable.get(&row.id) {
                m.failed += 1;
                rref.errors.push(p.clone());
                m.failed_rows.push(rref);
            } else {
                m.missing += 1;
                m.missing_rows.push(rref);
            }
            continue;
        };
        for (k, _) in &keys {
            if let (Some(t), Some(v)) = (totals.get_mut(k), r.get(k)) {
                add_counter(t, k, v);
            }
        }
        m.seconds += r.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
        if r.get("dry_run").and_then(Value::as_bool) == Some(true) {
            m.dry_run += 1;
        }
        rref.shard = text(r, "shard");
        rref.host = text(r, "host");
        if let Some(h) = &rref.host {
            *m.hosts.entry(h.clone()).or_default() += 1;
        }
        if let Some(s) = time_of(r, "start") {
            first = Some(first.map_or(s, |f: chrono::DateTime<_>| f.min(s)));
        }
        if let Some(e) = time_of(r, "end") {
            last = Some(last.map_or(e, |l: chrono::DateTime<_>| l.max(e)));
        }
        if r.get("complete").and_then(Value::as_bool) == Some(true) {
            m.complete += 1;
        } else {
            m.failed += 1;
            rref.errors = r.get("errors").cloned().and_then(|e| serde_json::from_value(e).ok()).unwrap_or_default();
            if rref.errors.is_empty() {
                let source = std::path::PathBuf::from(row.source.clone());
                rref.errors.push(Problem::new(&source, "the report does not say complete"));
            }
            m.failed_rows.push(rref);
        }
    }
    if let (Some(f), Some(l)) = (first, last) {
        m.wall_seconds = Some(((l - f).num_milliseconds().max(0) as f64) / 1000.0);
    }
    m.totals = totals;
    m.ok = m.failed == 0 && m.missing == 0 && m.rows > 0;
    m
}

impl Merged {
    pub fn exit_code(&self) -> Exit {
        Exit::ok_if(self.ok)
    }

    fn total(&self, key: &str) -> u64 {
        self.totals.get(key).and_then(Value::as_u64).unwrap_or(0)
    }

    /// The human form: counts, then one line per failed or missing row.
    pub fn write_human(&self, w: &mut impl Write) -> std::io::Result<()> {
        let s = crate::folder::sanitize;
        writeln!(
            w,
            "rows .................. {} ({} complete, {} failed, {} missing)",
            self.rows, self.complete, self.failed, self.missing
        )?;
        for (label, key) in [
            ("folders synced ........", "folders"),
            ("messages in source ....", "messages_source"),
            ("transferred ...........", "transferred"),
            ("skipped (existing) ....", "skipped_existing"),
            ("flags updated .........", "flags_updated"),
            ("deleted in target .....", "deleted_target"),
            ("failed ................", "failed"),
        ] {
            writeln!(w, "{label} {}", self.total(key))?;
        }
        writeln!(w, "bytes transferred ..... {}", human::size(self.total("bytes_transferred")))?;
        writeln!(w, "row seconds (sum) ..... {:.2}", self.seconds)?;
        if let Some(ws) = self.wall_seconds {
            writeln!(w, "wall clock ............ {ws:.2} s")?;
        }
        if self.hosts.len() > 1 {
            let hosts: Vec<String> = self.hosts.iter().map(|(h, n)| format!("{} {n}", s(h))).collect();
            writeln!(w, "rows per host ......... {}", hosts.join(", "))?;
        }
        if self.dry_run > 0 {
            writeln!(w, "dry-run rows .......... {}", self.dry_run)?;
        }
        if self.ignored > 0 {
            let n = human::count(self.ignored, "report", "reports");
            writeln!(w, "ignored ............... {n} of rows not in the batch file")?;
        }
        for r in &self.failed_rows {
            let at = match (&r.shard, &r.host) {
                (Some(k), Some(h)) => format!(" [shard {} on {}]", s(k), s(h)),
                _ => String::new(),
            };
            writeln!(w, "FAILED {}: {} -> {}{at}", line_of(r), s(&r.source), s(&r.target))?;
            for e in &r.errors {
                writeln!(w, "  error: {}", s(&e.to_string()))?;
            }
        }
        for r in &self.missing_rows {
            writeln!(w, "MISSING {}: {} -> {} (no report)", line_of(r), s(&r.source), s(&r.target))?;
        }
        if self.ok && self.rows == 1 {
            writeln!(w, "The one row is complete.")
        } else if self.ok {
            writeln!(w, "All {} rows are complete.", self.rows)
        } else if self.rows == 0 {
            writeln!(w, "No rows: nothing was reported.")
        } else {
            writeln!(w, "NOT complete: {} failed, {} missing.", self.failed, self.missing)
        }
    }
}

fn line_of(r: &RowRef) -> String {
    match r.line {
        Some(l) => format!("line {l}"),
        None => format!("row {}", r.id),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exp(id: &str, line: usize) -> Expected {
        Expected { id: id.into(), line, source: format!("/src/{id}"), target: format!("/dst/{id}") }
    }

    fn rep(complete: bool, transferred: u64, biggest: u64) -> Value {
        json!({
            "complete": complete, "transferred": transferred, "messages_source": transferred,
            "biggest_message": biggest, "skipped_filtered": {"max-size": 1}, "seconds": 0.5,
            "host": "h1", "shard": "1/2", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:02.5Z",
            "errors": if complete { json!([]) } else { json!([{"path": "/src/x", "reason": "broken"}]) },
        })
    }

    #[test]
    fn totals_failed_and_missing() {
        let rows = [exp("a", 1), exp("b", 2), exp("c", 3), exp("d", 4)];
        let mut reports = BTreeMap::new();
        reports.insert("a".to_string(), rep(true, 3, 10));
        reports.insert("b".to_string(), rep(false, 4, 20));
        reports.insert("zzz".to_string(), rep(true, 100, 1000));
        let mut unreadable = BTreeMap::new();
        unreadable.insert("c".to_string(), Problem::new(std::path::Path::new("r/row-c.json"), "not JSON"));
        let m = merge(Some(&rows), &reports, &unreadable);
        assert!(!m.ok);
        assert_eq!((m.rows, m.complete, m.failed, m.missing, m.ignored), (4, 1, 2, 1, 1));
        assert_eq!(m.totals["transferred"], json!(7));
        assert_eq!(m.totals["messages_source"], json!(7));
        assert_eq!(m.totals["biggest_message"], json!(20));
        assert_eq!(m.totals["skipped_filtered"], json!({"max-size": 2}));
        assert_eq!(m.totals["deleted_target"], json!(0));
        assert_eq!(m.failed_rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(m.failed_rows[0].errors[0].reason, "broken");
        assert_eq!(m.missing_rows[0].id, "d");
        assert_eq!(m.seconds, 1.0);
        assert_eq!(m.wall_seconds, Some(2.5));
        assert_eq!(m.hosts["h1"], 2);
        assert_eq!(m.exit_code(), Exit::Failed);
        let mut out = Vec::new();
        m.write_human(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("FAILED line 2: /src/b -> /dst/b [shard 1/2 on h1]"), "{out}");
        assert!(out.contains("MISSING line 4"), "{out}");
    }

    #[test]
    fn without_a_file_every_report_counts() {
        let mut reports = BTreeMap::new();
        reports.insert("a".to_string(), rep(true, 1, 1));
        reports.insert("b".to_string(), rep(true, 2, 1));
        let m = merge(None, &reports, &BTreeMap::new());
        assert!(m.ok);
        assert_eq!((m.rows, m.complete, m.ignored), (2, 2, 0));
        assert_eq!(m.totals["transferred"], json!(3));
    }

    #[test]
    fn nothing_reported_is_not_ok() {
        let m = merge(None, &BTreeMap::new(), &BTreeMap::new());
        assert!(!m.ok);
        assert_eq!(m.rows, 0);
    }

    #[test]
    fn a_report_without_complete_is_a_failure() {
        let rows = [exp("a", 1)];
        let mut reports = BTreeMap::new();
        reports.insert("a".to_string(), json!({"transferred": "many"}));
        let m = merge(Some(&rows), &reports, &BTreeMap::new());
        assert_eq!(m.failed, 1);
        assert_eq!(m.totals["transferred"], json!(0));
        assert!(!m.failed_rows[0].errors.is_empty());
    }
}
