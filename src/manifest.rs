//! `--manifest FILE`: a forensic account of a run, one JSON line per source message.
//!
//! The first record (`header`) names the tool, version, host, user, command line, source,
//! target, start and the zone used for From_ dates without one. Then one record per source
//! message as it is dealt with: `copy` (or `would_copy` in a dry run), `exists`, `flags`
//! (`would_flags`), `filtered`; each with the source path (an mbox message's byte offset and
//! length), the SHA-256 of the source bytes exactly as stored there (read again for the
//! manifest), the message's SHA-256 (its identity: the bytes written into a Maildir, or the
//! message as an mbox holds it without its state fields), the target, flags, keywords and
//! internal date with where it came from. At the end: a `source_file` record per mbox file
//! read (size, mtime, SHA-256), an `error` record per problem, an `end` record with the counts,
//! and with `--sign-key` a `signature` record over everything before it.
//!
//! The file is created new (never over an existing one) 0600, never through a symlink.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::events::{Event, Recorder};
use crate::message::Meta;
use crate::report::Summary;
use crate::source::Origin;

pub const SCHEMA: &str = "mailmover.manifest/1";

struct State {
    out: File,
    /// SHA-256 of every byte written so far (what a signature covers).
    digest: Sha256,
    error: Option<std::io::Error>,
    /// The mbox files messages came from (a `source_file` record each at the end).
    mbox_files: BTreeSet<PathBuf>,
}

pub struct Manifest {
    path: PathBuf,
    state: Mutex<State>,
    dry_run: bool,
    sign: Option<ed25519_dalek::SigningKey>,
}

/// A time as RFC 3339 UTC, from seconds since the epoch.
fn rfc3339(secs: i64) -> Value {
    chrono::DateTime::from_timestamp(secs, 0)
        .map_or(Value::Null, |t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
}

/// The source as a record has it: path, and an mbox message's offset and length.
fn source_fields(o: &Origin) -> (String, Value, Value) {
    match o {
        Origin::File(p) => (p.display().to_string(), Value::Null, Value::Null),
        Origin::Mbox { path, offset, len } => (path.display().to_string(), json!(offset), json!(len)),
    }
}

/// The SHA-256 of the source bytes of `o` as they are stored, and for a message file its
/// size and mtime; read again here (with `O_NOFOLLOW`).
fn source_digest(o: &Origin) -> std::io::Result<(String, Option<(u64, i64)>)> {
    let (path, range) = match o {
        Origin::File(p) => (p, None),
        Origin::Mbox { path, offset, len } => (path, Some((*offset, *len))),
    };
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let (start, len) = range.unwrap_or((0, md.len()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let want = usize::try_from((len - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = f.read_at(&mut buf[..want], start + off)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "shorter than when it was read"));
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    let file = range.is_none().then(|| (md.len(), md.mtime()));
    Ok((hex::encode(h.finalize()), file))
}

impl Manifest {
    /// Creates `path` (it must not exist) and writes the header record.
    pub fn create(
        path: &Path,
        header: Value,
        dry_run: bool,
        sign: Option<ed25519_dalek::SigningKey>,
    ) -> Result<Manifest> {
        let usage = |why: String| Error::Usage(format!("manifest {}: {why}; nothing written", path.display()));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => usage("exists already (a manifest is never overwritten)".into()),
                _ => usage(crate::error::io_reason(&e)),
            })?;
        let m = Manifest {
            path: path.to_path_buf(),
            state: Mutex::new(State { out, digest: Sha256::new(), error: None, mbox_files: BTreeSet::new() }),
            dry_run,
            sign,
        };
        m.write(header);
        Ok(m)
    }

    fn write(&self, rec: Value) {
        let mut line = rec.to_string();
        line.push('\n');
        let Ok(mut st) = self.state.lock() else { return };
        st.digest.update(line.as_bytes());
        if let Err(e) = st.out.write_all(line.as_bytes()) {
            st.error.get_or_insert(e);
        }
    }

    /// The records of one message.
    fn message(&self, kind: &str, folder: &str, origin: &Origin, fields: Value) {
        let (path, offset, length) = source_fields(origin);
        let mut rec = json!({"type": kind, "folder": folder, "source": path, "offset": offset, "length": length});
        match source_digest(origin) {
            Ok((sha, file)) => {
                rec["sha256_source"] = json!(sha);
                if let Some((size, mtime)) = file {
                    rec["source_size"] = json!(size);
                    rec["source_mtime"] = rfc3339(mtime);
                }
            }
            Err(e) => {
                rec["sha256_source"] = Value::Null;
                rec["source_read_error"] = json!(crate::error::io_reason(&e));
            }
        }
        if let (Value::Object(r), Value::Object(f)) = (&mut rec, fields) {
            r.extend(f);
        }
        if let Origin::Mbox { path, .. } = origin
            && let Ok(mut st) = self.state.lock()
            && !st.mbox_files.contains(path)
        {
            st.mbox_files.insert(path.clone());
        }
        self.write(rec);
    }

    /// Writes the closing records (source files, problems, counts, and the signature) and
    /// syncs the file.
    pub fn finish(&self, s: &Summary) -> Result<()> {
        let files: Vec<PathBuf> =
            self.state.lock().map(|st| st.mbox_files.iter().cloned().collect()).unwrap_or_default();
        for f in files {
            let o = Origin::File(f.clone());
            let mut rec = json!({"type": "source_file", "path": f.display().to_string()});
            match source_digest(&o) {
                Ok((sha, Some((size, mtime)))) => {
                    rec["size"] = json!(size);
                    rec["mtime"] = rfc3339(mtime);
                    rec["sha256"] = json!(sha);
                }
                Ok(_) => {}
                Err(e) => rec["read_error"] = json!(crate::error::io_reason(&e)),
            }
            self.write(rec);
        }
        for (kind, list) in [("error", &s.errors), ("warning", &s.warnings)] {
            for p in list {
                let (path, escaped) = crate::error::json_path(&p.path);
                self.write(json!({"type": kind, "path": path, "path_escaped": escaped, "offset": p.offset,
                                  "kind": p.kind, "reason": p.reason}));
            }
        }
        self.write(json!({
            "type": "end",
            "finished": crate::logfile::now(),
            "complete": s.complete,
            "dry_run": s.dry_run,
            "exit": s.exit_code().code(),
            "counts": serde_json::to_value(&s.counts).unwrap_or(Value::Null),
        }));
        if let Some(key) = &self.sign {
            let digest: [u8; 32] = self.state.lock().map(|st| st.digest.clone().finalize().into()).unwrap_or_default();
            self.write(crate::sign::record(key, &digest, "every line before this one"));
        }
        let mut st = self.state.lock().map_err(|_| Error::bad(&self.path, "manifest lock poisoned"))?;
        if let Some(e) = st.error.take() {
            return Err(Error::Io { path: self.path.clone(), source: e });
        }
        st.out.sync_all().map_err(|e| Error::Io { path: self.path.clone(), source: e })
    }
}

fn meta_fields(meta: &Meta) -> Value {
    json!({
        "flags": meta.flags.to_string(),
        "keywords": meta.keywords.iter().collect::<Vec<_>>(),
        "internal_date": rfc3339(meta.date),
        "internal_date_epoch": meta.date,
        "date_source": crate::sync::date_source_name(meta.date_source),
    })
}

impl Recorder for Manifest {
    fn record(&self, e: Event) {
        let would = |k: &str| if self.dry_run { format!("would_{k}") } else { k.to_string() };
        match e {
            Event::Copy { folder, origin, target, sha256, size, meta } => {
                let mut f = meta_fields(&meta);
                f["sha256"] = json!(hex::encode(sha256));
                f["size"] = json!(size);
                f["target"] = if self.dry_run { Value::Null } else { json!(target.display().to_string()) };
                self.message(&would("copy"), folder.as_str(), &origin, f);
            }
            Event::Flags { folder, origin, target, sha256, meta, redate } => {
                let mut f = meta_fields(&meta);
                f["sha256"] = json!(hex::encode(sha256));
                f["target"] = json!(target.display().to_string());
                f["redate"] = json!(redate);
                self.message(&would("flags"), folder.as_str(), &origin, f);
            }
            Event::Skip { folder, origin, reason, sha256 } => {
                let kind = if reason.starts_with("exists") { "exists" } else { "filtered" };
                let f = json!({"sha256": sha256.map(hex::encode), "reason": reason});
                self.message(kind, folder.as_str(), &origin, f);
            }
            Event::Plan(_)
            | Event::Delete { .. }
            | Event::Error { .. }
            | Event::Metadata { .. }
            | Event::MetadataGone { .. }
            | Event::Discovered { .. }
            | Event::Folder { .. }
            | Event::Folders { .. }
            | Event::FolderDone { .. }
            | Event::Progress { .. } => {}
        }
    }
}

/// What `audit-verify --public-key` finds in a manifest.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Ok { records: u64 },
    Bad { line: u64, reason: String },
}

/// Whether `path` is a manifest (its first record is a manifest header), not an audit log.
pub fn is_manifest(path: &Path) -> Result<bool> {
    use std::io::{BufRead, Read};
    let f = crate::fsx::open_source_nonblocking(path)?;
    let mut first = Vec::new();
    std::io::BufReader::new(f)
        .take(1 << 20)
        .read_until(b'\n', &mut first)
        .map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let v: Value = serde_json::from_slice(&first).unwrap_or(Value::Null);
    Ok(v.get("schema").and_then(Value::as_str) == Some(SCHEMA))
}

/// Checks a manifest's signature record (its last line) with `key`.
pub fn verify(path: &Path, key: &ed25519_dalek::VerifyingKey) -> Result<Check> {
    use std::io::BufRead;
    let f = crate::fsx::open_source_nonblocking(path)?;
    let mut h = Sha256::new();
    let mut last: Option<(u64, Vec<u8>)> = None;
    let mut n = 0u64;
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        n += 1;
        if let Some((_, prev)) = last.take() {
            h.update(&prev);
            h.update(b"\n");
        }
        last = Some((n, line));
    }
    let Some((line, sig)) = last else { return Ok(Check::Bad { line: 1, reason: "empty manifest".into() }) };
    let rec: Value = match serde_json::from_slice(&sig) {
        Ok(v) => v,
        Err(_) => return Ok(Check::Bad { line, reason: "the last line is not a JSON record".into() }),
    };
    if rec.get("type").and_then(Value::as_str) != Some("signature") {
        return Ok(Check::Bad {
            line,
            reason: "the last line is not a signature record (unsigned or cut short)".into(),
        });
    }
    let digest: [u8; 32] = h.finalize().into();
    Ok(match crate::sign::check(&rec, &digest, key) {
        Ok(()) => Check::Ok { records: n },
        Err(reason) => Check::Bad { line, reason },
    })
}
