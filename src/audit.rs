//! The audit log: JSON Lines, one record per action, each line sealed with an HMAC-SHA256
//! chained to the previous line's MAC, so removing, reordering or changing a line — or cutting
//! the log short — is detected by anyone holding the key.
//!
//! A line is the record's JSON object with `"mac":"<hex>"` as its last member; the MAC covers
//! the previous MAC (hex), a newline and the record's bytes without the `mac` member, exactly
//! as written. The first record describes the run, the last carries the totals.
//!
//! One log holds every run: it is never truncated. A run appends, its first record chained to
//! the last record already there (whose MAC must verify with the run's key, or nothing is
//! written), and `audit-verify` checks the whole chain across runs; a run that follows one
//! that never wrote its final record (killed) says so in its first record. The log is opened
//! `O_NOFOLLOW | O_APPEND`, must be a regular file with one link (a symlink or hard link
//! planted at its path could make root append to another file), and is locked (`flock`) for
//! the run so two runs never interleave their chains. The key file must be a regular file of
//! the running user (or root) that nobody else may read, holding at least 32 bytes of key as
//! hex. Anything else is a usage error (exit 2) before any work.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use nix::fcntl::{Flock, FlockArg};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::error::{At, Error, Result};
use crate::events::{Event, Recorder};
use crate::message::Meta;
use crate::source::Origin;

type HmacSha256 = Hmac<Sha256>;

/// The shortest key accepted: 32 bytes, the size of the HMAC-SHA256 output.
pub const MIN_KEY_BYTES: usize = 32;

/// Reads a file holding a secret (`what`: "audit key file", "signing key"): a regular file of
/// the running user or root that only its owner may read; anything else is a usage error
/// that says why.
pub(crate) fn read_secret(path: &Path, what: &str) -> Result<Vec<u8>> {
    let usage = |why: String| Error::Usage(format!("{what} {}: {why}", path.display()));
    let (f, _) = crate::fsx::open_own_file(path, 64 << 10)
        .map_err(|e| usage(e.problem().reason))?
        .ok_or_else(|| usage("No such file or directory".into()))?;
    let md = f.metadata().map_err(|e| usage(crate::error::io_reason(&e)))?;
    if md.mode() & 0o077 != 0 {
        return Err(usage(format!(
            "others may read it (mode {:04o}); make it readable by its owner only (chmod 600)",
            md.mode() & 0o7777
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me && md.uid() != 0 {
        return Err(usage(format!("it belongs to uid {}, not to the user running mailmover or root", md.uid())));
    }
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut raw).map_err(|e| usage(crate::error::io_reason(&e)))?;
    Ok(raw)
}

/// Reads an audit key: hex text (64 hex digits or more: 32 bytes) in a regular file of the
/// running user or root that only its owner may read. Anything else is a usage error that
/// says why.
pub fn read_key(path: &Path) -> Result<Vec<u8>> {
    let raw = read_secret(path, "audit key file")?;
    let usage = |why: String| Error::Usage(format!("audit key file {}: {why}", path.display()));
    let text = String::from_utf8_lossy(&raw);
    let t = text.trim();
    if t.is_empty() {
        return Err(usage("it is empty".into()));
    }
    if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(usage(format!("not a hex key (only 0-9 and a-f; at least {} digits)", 2 * MIN_KEY_BYTES)));
    }
    // An odd count cannot be decoded: earlier versions took such a key as its text, and so
    // does this one (logs written with it still verify); 63 digits carry 252 bits.
    if t.len() < 2 * MIN_KEY_BYTES - 1 {
        return Err(usage(format!(
            "{} hex digits; at least {} are needed ({MIN_KEY_BYTES} bytes of key)",
            t.len(),
            2 * MIN_KEY_BYTES
        )));
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

/// The log, locked for the run: writes go to the file (`Flock` only derefs to it).
struct Locked(Flock<File>);

impl Write for Locked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        (&*self.0).flush()
    }
}

struct State {
    out: BufWriter<Locked>,
    prev: String,
    seq: u64,
    error: Option<std::io::Error>,
    /// SHA-256 of this run's lines so far (what its signature covers).
    run: Sha256,
}

pub struct AuditLog {
    key: Vec<u8>,
    path: PathBuf,
    state: Mutex<State>,
    /// Signs the run's records at its end (`--sign-key`).
    sign: Option<ed25519_dalek::SigningKey>,
}

impl AuditLog {
    /// Opens the log (created 0600 if it is not there), locks it for this run and appends the
    /// run's first record, chained to the last record in it. Every refusal is a usage error.
    pub fn create(path: &Path, key: Vec<u8>, params: Value) -> Result<AuditLog> {
        let f = open_log(path)?;
        let (prev, seq, finished) = last_record(&f, path, &key)?;
        let log = AuditLog {
            key,
            path: path.to_path_buf(),
            state: Mutex::new(State { out: BufWriter::new(Locked(f)), prev, seq, error: None, run: Sha256::new() }),
            sign: None,
        };
        let mut start = json!({
            "type": "start",
            "tool": "mailmover",
            "version": env!("CARGO_PKG_VERSION"),
            "parameters": params,
        });
        if !finished && let Value::Object(m) = &mut start {
            // Chained to a run that never wrote its final record: said where it can't be removed.
            m.insert("after_unfinished_run".into(), json!(true));
        }
        log.write(start);
        Ok(log)
    }

    /// Ends each run with a `signature` record: an Ed25519 signature over the SHA-256 of the
    /// run's lines before it, which `audit-verify --public-key` checks without the HMAC key.
    pub fn signed_with(mut self, key: Option<ed25519_dalek::SigningKey>) -> AuditLog {
        self.sign = key;
        self
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
        st.run.update(line.as_bytes());
        if let Err(e) = st.out.write_all(line.as_bytes()) {
            st.error.get_or_insert(e);
        }
        st.prev = mac;
    }

    /// Writes the last record and flushes the log.
    pub fn finish(&self, totals: Value) -> Result<()> {
        self.write(json!({"type": "end", "totals": totals}));
        if let Some(k) = &self.sign {
            let digest: [u8; 32] = self.state.lock().map(|st| st.run.clone().finalize().into()).unwrap_or_default();
            self.write(crate::sign::record(k, &digest, "this run's lines before this one"));
        }
        let mut st = self.state.lock().map_err(|_| Error::bad(&self.path, "audit log lock poisoned"))?;
        if let Some(e) = st.error.take() {
            return Err(e).at(&self.path);
        }
        st.out.flush().at(&self.path)?;
        st.out.get_ref().0.sync_all().at(&self.path)
    }
}

/// Opens the audit log for appending: never through a symlink, only a regular file with one
/// link, locked against another run writing it at the same time.
fn open_log(path: &Path) -> Result<Flock<File>> {
    let f = open_append(path, "audit log")?;
    let usage = |why: String| Error::Usage(format!("audit log {}: {why}; nothing written", path.display()));
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|_| usage("another run is writing it".into()))
}

/// Opens a log `path` to append to (created 0600), refusing a symlink, anything but a regular
/// file and a file with other hard links (planted there, they could make root append to
/// another file). Every refusal is a usage error naming `what`.
pub(crate) fn open_append(path: &Path, what: &str) -> Result<File> {
    let usage = |why: String| Error::Usage(format!("{what} {}: {why}; nothing written", path.display()));
    // lstat first: a FIFO or device planted there is never opened.
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(usage("is a symlink, which is not followed".into())),
        Ok(m) if !m.is_file() => return Err(usage("not a regular file".into())),
        _ => {}
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => usage("is a symlink, which is not followed".into()),
            _ => usage(crate::error::io_reason(&e)),
        })?;
    let md = f.metadata().map_err(|e| usage(crate::error::io_reason(&e)))?;
    if !md.is_file() {
        return Err(usage("not a regular file".into()));
    }
    if md.nlink() > 1 {
        return Err(usage(format!("has {} hard links; a log must have one", md.nlink())));
    }
    Ok(f)
}

/// The MAC and sequence number of the log's last record, and whether it was a run's final
/// record (`("", 0, true)` for an empty log). The last record must be whole and its MAC must
/// verify with `key` (chained to the record before it): a run never continues a chain it
/// cannot vouch for.
fn last_record(f: &File, path: &Path, key: &[u8]) -> Result<(String, u64, bool)> {
    let usage = |why: &str| {
        Error::Usage(format!("audit log {}: {why}; nothing written (check it with audit-verify)", path.display()))
    };
    let len = f.metadata().at(path)?.len();
    if len == 0 {
        return Ok((String::new(), 0, true));
    }
    // The last two lines: records are a few hundred bytes, a path list at most some KiB.
    const WINDOW: u64 = 1 << 20;
    let start = len.saturating_sub(WINDOW);
    let mut buf = vec![0u8; (len - start) as usize];
    f.read_exact_at(&mut buf, start).at(path)?;
    let Some(body) = buf.strip_suffix(b"\n") else { return Err(usage("its last line is incomplete")) };
    let (before, last) = match memchr::memrchr(b'\n', body) {
        Some(i) => (&body[..i], &body[i + 1..]),
        None if start == 0 => (&body[..0], body),
        None => return Err(usage("its last line is too long to be a record")),
    };
    let prev = if before.is_empty() && start == 0 {
        String::new()
    } else {
        let line = match memchr::memrchr(b'\n', before) {
            Some(i) => &before[i + 1..],
            None if start == 0 => before,
            None => return Err(usage("its last lines are too long to be records")),
        };
        let (_, mac) = sealed(line).ok_or_else(|| usage("its last records are not sealed records"))?;
        mac.to_string()
    };
    let (body, mac) = sealed(last).ok_or_else(|| usage("its last line is not a sealed record"))?;
    if seal(key, &prev, &body) != mac {
        return Err(usage("its last record does not verify with this key (another key, or the log was changed)"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|_| usage("its last line is not a JSON object"))?;
    let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(|| usage("its last record has no sequence number"))?;
    Ok((mac.to_string(), seq, matches!(v.get("type").and_then(Value::as_str), Some("end" | "signature"))))
}

/// A sealed line's record without its MAC, and the MAC.
fn sealed(line: &[u8]) -> Option<(String, &str)> {
    let text = std::str::from_utf8(line).ok()?;
    const TAIL: usize = ",\"mac\":\"".len() + 64 + 2;
    if text.len() < TAIL + 2 || !text.ends_with("\"}") {
        return None;
    }
    let (head, tail) = text.split_at(text.len() - TAIL);
    let mac = tail.strip_prefix(",\"mac\":\"")?.strip_suffix("\"}")?;
    Some((format!("{head}}}"), mac))
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
            Event::Flags { folder, origin, target, sha256, meta, .. } => {
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
            Event::Discovered { .. } | Event::Progress { .. } | Event::Folders { .. } | Event::FolderDone { .. } => {
                return;
            }
            Event::Folder { folder, path } => {
                json!({"type": "folder", "folder": folder.as_str(), "path": path.display().to_string()})
            }
            Event::Metadata { path, from, bytes } => {
                json!({"type": "metadata", "path": path.display().to_string(), "from": from.display().to_string(), "size": bytes})
            }
            Event::MetadataGone { path, what, removed: true } => {
                json!({"type": "metadata_removed", "path": path.display().to_string(), "what": what})
            }
            Event::MetadataGone { removed: false, .. } => return,
            Event::Error { folder, problem } => {
                let (path, escaped) = crate::error::json_path(&problem.path);
                let mut r = json!({"type": "error", "folder": folder.as_str(), "path": path, "offset": problem.offset, "reason": problem.reason});
                if escaped {
                    r["path_escaped"] = json!(true);
                }
                r
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
        /// Runs in the log (each starts with a start record).
        runs: u64,
        /// Lines of runs that followed a run that never wrote its final record.
        after_unfinished: Vec<u64>,
    },
    /// 1-based line number and why.
    Bad { line: u64, reason: String },
}

/// Checks the whole log, every run in it: each line's MAC chained to the line before, the
/// sequence numbers, a start record first, the final record last.
/// Checks every run of an audit log with the public key alone: each run (from its `start`
/// record) must end with a `signature` record over its lines before it.
pub fn verify_signatures(path: &Path, key: &ed25519_dalek::VerifyingKey) -> Result<Check> {
    let f = crate::fsx::open_source_nonblocking(path)?;
    let (mut run, mut runs, mut n) = (Sha256::new(), 0u64, 0u64);
    // The line of the run being read, while it has no signature yet.
    let mut unsigned: Option<u64> = None;
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let lineno = i as u64 + 1;
        let line = line.at(path)?;
        n = lineno;
        let v: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(_) => return Ok(Check::Bad { line: lineno, reason: "not a JSON record".into() }),
        };
        match v.get("type").and_then(Value::as_str) {
            Some("start") => {
                if let Some(at) = unsigned {
                    return Ok(Check::Bad { line: at, reason: "this run has no signature".into() });
                }
                run = Sha256::new();
                runs += 1;
                unsigned = Some(lineno);
            }
            Some("signature") => {
                let digest: [u8; 32] = run.clone().finalize().into();
                if let Err(reason) = crate::sign::check(&v, &digest, key) {
                    return Ok(Check::Bad { line: lineno, reason });
                }
                unsigned = None;
            }
            _ if lineno == 1 => return Ok(Check::Bad { line: 1, reason: "not an audit log (no start record)".into() }),
            _ => {}
        }
        run.update(&line);
        run.update(b"\n");
    }
    if let Some(at) = unsigned {
        return Ok(Check::Bad { line: at, reason: "this run has no signature (unsigned, or cut short)".into() });
    }
    if n == 0 {
        return Ok(Check::Bad { line: 1, reason: "empty log".into() });
    }
    Ok(Check::Ok { records: n, runs, after_unfinished: Vec::new() })
}

/// A run ended with its totals, and its signature when it was signed.
fn ended(last_type: &str) -> bool {
    matches!(last_type, "end" | "signature")
}

pub fn verify_log(path: &Path, key: &[u8]) -> Result<Check> {
    let f = crate::fsx::open_source_nonblocking(path)?;
    if !f.metadata().at(path)?.is_file() {
        return Err(Error::Usage(format!("audit log {}: not a regular file", path.display())));
    }
    let mut prev = String::new();
    let mut n = 0u64;
    let mut runs = 0u64;
    let mut after_unfinished = Vec::new();
    let mut last_type = String::new();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let lineno = i as u64 + 1;
        let line = line.at(path)?;
        let bad = |reason: &str| Ok(Check::Bad { line: lineno, reason: reason.to_string() });
        if std::str::from_utf8(&line).is_err() {
            return bad("not UTF-8");
        }
        let Some((body, mac)) = sealed(&line) else {
            return bad("not a sealed record (no trailing \"mac\" member)");
        };
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
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        if lineno == 1 && ty != "start" {
            return bad("the first record is not the run's start record");
        }
        if ty == "start" {
            runs += 1;
            let said = v.get("after_unfinished_run").and_then(Value::as_bool) == Some(true);
            if lineno > 1 && !ended(&last_type) {
                if !said {
                    return bad("a run starts here although the run before did not end");
                }
                after_unfinished.push(lineno);
            }
        }
        last_type = ty.to_string();
        prev = mac.to_string();
        n = lineno;
    }
    if n == 0 {
        return Ok(Check::Bad { line: 1, reason: "empty log".into() });
    }
    if !ended(&last_type) {
        return Ok(Check::Bad {
            line: n + 1,
            reason: "log ends without its final (totals) record: it was cut short".into(),
        });
    }
    Ok(Check::Ok { records: n, runs, after_unfinished })
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

    /// Issue 18: a second run appends, chained to the first; a run killed before its final
    /// record is named by the next run's first record; the wrong key appends nothing.
    #[test]
    fn runs_append_to_one_chain() {
        let t = tempfile::tempdir().unwrap();
        let p = sample(t.path());
        sample(t.path());
        assert_eq!(verify_log(&p, b"k").unwrap(), Check::Ok { records: 8, runs: 2, after_unfinished: vec![] });
        let killed = AuditLog::create(&p, b"k".to_vec(), json!({})).unwrap();
        killed.record(Event::Plan("a -> b".into()));
        drop(killed.state.lock().unwrap().out.flush());
        drop(killed);
        sample(t.path());
        assert_eq!(verify_log(&p, b"k").unwrap(), Check::Ok { records: 14, runs: 4, after_unfinished: vec![11] });
        let before = std::fs::read(&p).unwrap();
        assert!(AuditLog::create(&p, b"other".to_vec(), json!({})).err().unwrap().is_usage());
        assert_eq!(std::fs::read(&p).unwrap(), before, "nothing appended with another key");
        let mut cut = before.clone();
        cut.truncate(cut.len() - 10);
        std::fs::write(&p, &cut).unwrap();
        assert!(AuditLog::create(&p, b"k".to_vec(), json!({})).err().unwrap().to_string().contains("incomplete"));
    }

    #[test]
    fn intact_log_verifies() {
        let t = tempfile::tempdir().unwrap();
        let p = sample(t.path());
        assert_eq!(verify_log(&p, b"k").unwrap(), Check::Ok { records: 4, runs: 1, after_unfinished: vec![] });
        assert!(matches!(verify_log(&p, b"other").unwrap(), Check::Bad { line: 1, .. }));
    }

    #[test]
    fn error_paths_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("log");
        let log = AuditLog::create(&p, b"k".to_vec(), json!({})).unwrap();
        let folder = crate::folder::FolderName::parse("INBOX").unwrap();
        for path in [&b"/m/a\\b"[..], b"/m/\xff"] {
            let problem = crate::error::Problem::new(Path::new(std::ffi::OsStr::from_bytes(path)), "bad");
            log.record(Event::Error { folder: folder.clone(), problem });
        }
        log.finish(json!({})).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let errors: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &Value| v["type"] == "error")
            .collect();
        assert_eq!(errors.len(), 2, "{text}");
        assert_eq!((&errors[0]["path"], &errors[0]["path_escaped"]), (&json!("/m/a\\b"), &Value::Null));
        assert_eq!((&errors[1]["path"], &errors[1]["path_escaped"]), (&json!("/m/\\xff"), &json!(true)));
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
