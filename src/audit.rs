//! The audit log: JSON Lines, one record per action, each line sealed with an HMAC-SHA256
//! chained to the previous line's MAC, so removing, reordering or changing a line — or cutting
//! the log short — is detected by anyone holding the key.
//!
//! A line is the record's JSON object with `"mac":"<hex>"` as its last member; the MAC covers
//! the previous MAC (hex), a newline and the record's bytes without the `mac` member, exactly
//! as written. The first record describes the run, the last carries the totals.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::error::{At, Error, Result};
use crate::events::{Event, Recorder};
use crate::message::Meta;
use crate::source::Origin;

type HmacSha256 = Hmac<Sha256>;

/// Reads an audit key: one line of hex text (decoded), or any other non-empty text (its bytes).
pub fn read_key(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path)
        .map_err(|e| Error::Usage(format!("audit key file {}: {}", path.display(), crate::error::io_reason(&e))))?;
    let text = String::from_utf8_lossy(&raw);
    let t = text.trim();
    if t.is_empty() {
        return Err(Error::Usage(format!("audit key file {} is empty", path.display())));
    }
    Ok(hex::decode(t).unwrap_or_else(|_| t.as_bytes().to_vec()))
}

fn seal(key: &[u8], prev: &str, body: &str) -> String {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(prev.as_bytes());
    m.update(b"\n");
    m.update(body.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

struct State {
    out: BufWriter<File>,
    prev: String,
    seq: u64,
    error: Option<std::io::Error>,
}

pub struct AuditLog {
    key: Vec<u8>,
    path: PathBuf,
    state: Mutex<State>,
}

impl AuditLog {
    /// Creates (truncating) the log and writes its first record.
    pub fn create(path: &Path, key: Vec<u8>, params: Value) -> Result<AuditLog> {
        let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path).at(path)?;
        let log = AuditLog {
            key,
            path: path.to_path_buf(),
            state: Mutex::new(State { out: BufWriter::new(f), prev: String::new(), seq: 0, error: None }),
        };
        log.write(json!({
            "type": "start",
            "tool": "mailmover",
            "version": env!("CARGO_PKG_VERSION"),
            "parameters": params,
        }));
        Ok(log)
    }

    fn write(&self, mut rec: Value) {
        let Ok(mut st) = self.state.lock() else { return };
        st.seq += 1;
        if let Value::Object(m) = &mut rec {
            let mut head = serde_json::Map::new();
            head.insert("seq".into(), json!(st.seq));
            head.insert("time".into(), json!(now()));
            head.append(m);
            *m = head;
        }
        let body = rec.to_string();
        let mac = seal(&self.key, &st.prev, &body);
        let line = format!("{},\"mac\":\"{mac}\"}}\n", &body[..body.len() - 1]);
        if let Err(e) = st.out.write_all(line.as_bytes()) {
            st.error.get_or_insert(e);
        }
        st.prev = mac;
    }

    /// Writes the last record and flushes the log.
    pub fn finish(&self, totals: Value) -> Result<()> {
        self.write(json!({"type": "end", "totals": totals}));
        let mut st = self.state.lock().map_err(|_| Error::bad(&self.path, "audit log lock poisoned"))?;
        if let Some(e) = st.error.take() {
            return Err(e).at(&self.path);
        }
        st.out.flush().at(&self.path)?;
        st.out.get_ref().sync_all().at(&self.path)
    }
}

fn origin_json(o: &Origin) -> Value {
    match o {
        Origin::Mbox { path, offset, len } => {
            json!({"path": path.display().to_string(), "offset": offset, "length": len})
        }
        Origin::File(p) => json!({"path": p.display().to_string()}),
    }
}

fn meta_json(m: &Meta) -> (Value, Value, Value) {
    (json!(m.flags.to_string()), json!(m.keywords.iter().collect::<Vec<_>>()), json!(m.date))
}

impl Recorder for AuditLog {
    fn record(&self, e: Event) {
        let rec = match e {
            Event::Plan(line) => json!({"type": "plan", "line": line}),
            Event::Copy { folder, origin, target, sha256, size, meta } => {
                let (f, k, d) = meta_json(&meta);
                json!({"type": "copy", "folder": folder.as_str(), "source": origin_json(&origin), "target": target.display().to_string(),
                       "sha256": hex::encode(sha256), "size": size, "flags": f, "keywords": k, "internal_date": d})
            }
            Event::Flags { folder, origin, target, sha256, meta } => {
                let (f, k, d) = meta_json(&meta);
                json!({"type": "flags", "folder": folder.as_str(), "source": origin_json(&origin), "target": target.display().to_string(),
                       "sha256": hex::encode(sha256), "flags": f, "keywords": k, "internal_date": d})
            }
            Event::Skip { folder, origin, reason, sha256 } => {
                json!({"type": "skip", "folder": folder.as_str(), "source": origin_json(&origin),
                "reason": reason, "sha256": sha256.map(hex::encode)})
            }
            Event::Delete { folder, target, sha256, size } => {
                json!({"type": "delete", "folder": folder.as_str(), "target": target.display().to_string(),
                "sha256": hex::encode(sha256), "size": size})
            }
            Event::Discovered { .. } | Event::Progress { .. } => return,
            Event::Error { folder, problem } => {
                json!({"type": "error", "folder": folder.as_str(), "path": problem.path, "offset": problem.offset, "reason": problem.reason})
            }
        };
        self.write(rec);
    }
}

/// Result of checking a log.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Ok {
        records: u64,
    },
    /// 1-based line number and why.
    Bad {
        line: u64,
        reason: String,
    },
}

pub fn verify_log(path: &Path, key: &[u8]) -> Result<Check> {
    let f = File::open(path).at(path)?;
    let mut prev = String::new();
    let mut n = 0u64;
    let mut last_type = String::new();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let lineno = i as u64 + 1;
        let line = line.at(path)?;
        let bad = |reason: &str| Ok(Check::Bad { line: lineno, reason: reason.to_string() });
        let Ok(text) = std::str::from_utf8(&line) else { return bad("not UTF-8") };
        const TAIL: usize = ",\"mac\":\"".len() + 64 + 2;
        if text.len() < TAIL + 2 || !text.ends_with("\"}") {
            return bad("not a sealed record (no trailing \"mac\" member)");
        }
        let (head, tail) = text.split_at(text.len() - TAIL);
        let Some(mac) = tail.strip_prefix(",\"mac\":\"").and_then(|t| t.strip_suffix("\"}")) else {
            return bad("not a sealed record (no trailing \"mac\" member)");
        };
        let body = format!("{head}}}");
        if seal(key, &prev, &body) != mac {
            return bad("MAC does not match: the line was changed, removed, inserted or moved, or the key is wrong");
        }
        let v: Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(_) => return bad("not a JSON object"),
        };
        if v.get("seq").and_then(Value::as_u64) != Some(lineno) {
            return bad("sequence number out of order");
        }
        last_type = v.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        if lineno == 1 && last_type != "start" {
            return bad("the first record is not the run's start record");
        }
        prev = mac.to_string();
        n = lineno;
    }
    if n == 0 {
        return Ok(Check::Bad { line: 1, reason: "empty log".into() });
    }
    if last_type != "end" {
        return Ok(Check::Bad {
            line: n + 1,
            reason: "log ends without its final (totals) record: it was cut short".into(),
        });
    }
    Ok(Check::Ok { records: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let p = dir.join("log");
        let log = AuditLog::create(&p, b"k".to_vec(), json!({"a": 1})).unwrap();
        log.record(Event::Plan("x -> y".into()));
        log.record(Event::Plan("z -> w".into()));
        log.finish(json!({"transferred": 0})).unwrap();
        p
    }

    #[test]
    fn intact_log_verifies() {
        let t = tempfile::tempdir().unwrap();
        let p = sample(t.path());
        assert_eq!(verify_log(&p, b"k").unwrap(), Check::Ok { records: 4 });
        assert!(matches!(verify_log(&p, b"other").unwrap(), Check::Bad { line: 1, .. }));
    }

    #[test]
    fn tampering_is_located() {
        let t = tempfile::tempdir().unwrap();
        let p = sample(t.path());
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let write = |ls: &[&str]| std::fs::write(&p, ls.join("\n") + "\n").unwrap();
        write(&[lines[0], lines[2], lines[1], lines[3]]);
        assert!(matches!(verify_log(&p, b"k").unwrap(), Check::Bad { line: 2, .. }));
        write(&[lines[0], lines[1], lines[3]]);
        assert!(matches!(verify_log(&p, b"k").unwrap(), Check::Bad { line: 3, .. }));
        let changed = lines[1].replace("x -> y", "x -> q");
        write(&[lines[0], &changed, lines[2], lines[3]]);
        assert!(matches!(verify_log(&p, b"k").unwrap(), Check::Bad { line: 2, .. }));
        write(&lines[..3]);
        assert!(matches!(verify_log(&p, b"k").unwrap(), Check::Bad { line: 4, .. }));
    }
}
