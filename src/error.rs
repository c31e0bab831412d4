//! Errors of the library. Every variant names the path it concerns; per-message and per-folder
//! failures are turned into [`Problem`] values that are counted and reported while the run goes on.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exit::Exit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    Bad { path: PathBuf, reason: String, kind: Kind },
    /// Wrong command line or configuration: exit 2, nothing written.
    #[error("{0}")]
    Usage(String),
    /// The target's lock is held by another run, or its lock file cannot be used: exit 2,
    /// nothing written.
    #[error("{}: {reason}", path.display())]
    Locked { path: PathBuf, reason: String },
    /// A signal stopped the run before it got anywhere (exit 128 + the signal).
    #[error("interrupted by {}", crate::interrupt::name(*.0))]
    Interrupted(i32),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Bad { path: path.into(), reason: reason.into(), kind: Kind::Other }
    }

    /// Untrusted input refused (see [`Kind::Refused`]).
    pub fn refused(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::of(Kind::Refused, path, reason)
    }

    /// An error of a kind code acts on (see [`Kind`]).
    pub fn of(kind: Kind, path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Bad { path: path.into(), reason: reason.into(), kind }
    }

    /// The file was not there (deleted or renamed meanwhile).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_))
    }

    /// The exit status of a run that ends with this error.
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Usage(_) | Error::Locked { .. } => Exit::Usage,
            Error::Interrupted(sig) => Exit::Signal(*sig),
            Error::Io { .. } | Error::Bad { .. } => Exit::Failed,
        }
    }

    /// The error as a report entry.
    pub fn problem(&self) -> Problem {
        match self {
            Error::Io { path, source } => Problem::of(Kind::Io, path, io_reason(source)),
            Error::Bad { path, reason, kind } => Problem::of(*kind, path, reason.clone()),
            Error::Locked { path, reason } => Problem::of(Kind::Locked, path, reason.clone()),
            Error::Interrupted(_) => Problem::of(Kind::Interrupted, Path::new(""), self.to_string()),
            Error::Usage(m) => Problem::of(Kind::Usage, Path::new(""), m.clone()),
        }
    }
}

/// The OS message without Rust's " (os error N)" suffix, which means nothing to a mail admin.
pub fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Adds the path to an I/O error at the call site.
pub trait At<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.to_path_buf(), source })
    }
}

impl<T> At<T> for nix::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::Io { path: path.to_path_buf(), source: io::Error::from(e) })
    }
}

/// What kind of trouble a [`Problem`] is: what code acts on (never the wording of a reason),
/// and what a report's reader can count and filter on (`"kind"` in JSON, snake_case).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Anything not named below.
    #[default]
    Other,
    /// The operating system refused or failed a call.
    Io,
    /// Renamed or deleted between the listing and the read (not an error of the run).
    Vanished,
    /// Changed while it was read: left for the next run.
    Changed,
    /// A target file whose size is not the one its name gives (a torn or rewritten copy).
    Torn,
    /// Refused as untrusted input: a symlink, a FIFO, a file too big, another folder's file.
    Refused,
    /// Not readable as what it should be (a garbled mbox, a truncated message, an empty file).
    Malformed,
    /// Another run holds the target.
    Locked,
    /// A signal stopped the run.
    Interrupted,
    /// The command line or configuration is wrong.
    Usage,
    /// An account file's line, rule or file that the source and the target both have,
    /// different (cPanel metadata): a warning when nobody knows which changed, an error when
    /// both changed since the last sync.
    Conflict,
}

/// One thing that went wrong, as listed in reports: the path, the reason, its [`Kind`] and,
/// for a message inside an mbox file, its byte offset. In JSON the path is text as long as it is UTF-8, and
/// escaped otherwise ([`json_path`]), so that no byte of it is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(from = "JsonProblem", into = "JsonProblem")]
pub struct Problem {
    /// Empty for a problem of no file (a usage error, a signal).
    pub path: PathBuf,
    pub reason: String,
    pub offset: Option<u64>,
    pub kind: Kind,
}

impl Problem {
    pub fn new(path: &Path, reason: impl Into<String>) -> Self {
        Problem::of(Kind::Other, path, reason)
    }

    /// An operating system error at `path`.
    pub fn io(path: &Path, e: &io::Error) -> Self {
        Problem::of(Kind::Io, path, io_reason(e))
    }

    /// Untrusted input refused (see [`Kind::Refused`]).
    pub fn refused(path: &Path, reason: impl Into<String>) -> Self {
        Problem::of(Kind::Refused, path, reason)
    }

    pub fn of(kind: Kind, path: &Path, reason: impl Into<String>) -> Self {
        Problem { path: path.to_path_buf(), reason: reason.into(), offset: None, kind }
    }

    pub fn at_offset(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        Problem { offset: Some(offset), ..Problem::new(path, reason) }
    }

    fn key(&self) -> (&[u8], &str, Option<u64>) {
        (self.path.as_os_str().as_bytes(), &self.reason, self.offset)
    }
}

// Byte order, not Path's component order: reports list problems as they always have.
impl Ord for Problem {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Problem {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} (byte {}): {}", self.path.display(), o, self.reason),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

/// A [`Problem`] as reports hold it.
#[derive(Serialize, serde::Deserialize)]
struct JsonProblem {
    path: String,
    // Both written always (`offset` null when none): no key comes and goes.
    #[serde(default)]
    path_escaped: bool,
    reason: String,
    #[serde(default)]
    kind: Kind,
    #[serde(default)]
    offset: Option<u64>,
}

impl From<Problem> for JsonProblem {
    fn from(p: Problem) -> Self {
        let (path, path_escaped) = json_path(&p.path);
        JsonProblem { path, path_escaped, reason: p.reason, kind: p.kind, offset: p.offset }
    }
}

impl From<JsonProblem> for Problem {
    fn from(j: JsonProblem) -> Self {
        let path = match j.path_escaped.then(|| unescape(&j.path)).flatten() {
            Some(bytes) => PathBuf::from(OsString::from_vec(bytes)),
            None => PathBuf::from(j.path),
        };
        Problem { path, reason: j.reason, offset: j.offset, kind: j.kind }
    }
}

/// A path as JSON text, and whether it had to be escaped: a UTF-8 path as it is; any other
/// with each byte that is not UTF-8 written `\xNN` and each backslash doubled, so the bytes
/// come back unambiguously (README, "Bad input is reported").
pub fn json_path(p: &Path) -> (String, bool) {
    let bytes = p.as_os_str().as_bytes();
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_string(), false);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    (out, true)
}

/// The bytes of an escaped path ([`json_path`]); `None` when it is not one.
fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = b.get(i + 2..i + 4).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    fn json(p: &Problem) -> String {
        serde_json::to_string(p).unwrap()
    }

    #[test]
    fn utf8_paths_are_written_as_they_are() {
        let p = Problem::at_offset(Path::new("/m/caf\u{e9} \\x41\"q"), 7, "bad");
        assert_eq!(
            json(&p),
            r#"{"path":"/m/café \\x41\"q","path_escaped":false,"reason":"bad","kind":"other","offset":7}"#
        );
        assert_eq!(
            json(&Problem::new(Path::new(""), "r")),
            r#"{"path":"","path_escaped":false,"reason":"r","kind":"other","offset":null}"#
        );
        assert_eq!(serde_json::from_str::<Problem>(&json(&p)).unwrap(), p);
    }

    #[test]
    fn other_paths_are_escaped_and_come_back_whole() {
        let raw = b"/m/\xff\\x41\xc3(caf\xc3\xa9)";
        let p = Problem::new(Path::new(OsStr::from_bytes(raw)), "bad");
        assert_eq!(
            json(&p),
            r#"{"path":"/m/\\xff\\\\x41\\xc3(café)","path_escaped":true,"reason":"bad","kind":"other","offset":null}"#
        );
        let back: Problem = serde_json::from_str(&json(&p)).unwrap();
        assert_eq!(back.path.as_os_str().as_bytes(), raw);
        assert_eq!(back, p);
    }

    /// Each kind is written by its snake_case name and read back; a report of an older version
    /// (no kind) reads as `other`; the error a kind came with keeps it as a problem.
    #[test]
    fn kinds_are_named_in_json_and_kept() {
        let p = Problem::refused(Path::new("/t/cur"), "is a symlink");
        assert_eq!(
            json(&p),
            r#"{"path":"/t/cur","path_escaped":false,"reason":"is a symlink","kind":"refused","offset":null}"#
        );
        assert_eq!(serde_json::from_str::<Problem>(&json(&p)).unwrap(), p);
        let old: Problem = serde_json::from_str(r#"{"path":"/x","reason":"r"}"#).unwrap();
        assert_eq!(old.kind, Kind::Other);
        let io = Error::Io { path: "/x".into(), source: io::Error::from(io::ErrorKind::PermissionDenied) };
        assert_eq!(io.problem().kind, Kind::Io);
        assert_eq!(Error::of(Kind::Changed, "/x", "changed").problem().kind, Kind::Changed);
        assert_eq!(Error::Interrupted(15).problem().kind, Kind::Interrupted);
        assert_eq!(Error::Usage("u".into()).problem().kind, Kind::Usage);
        let named = serde_json::to_string(&[Kind::Vanished, Kind::Torn, Kind::Malformed, Kind::Locked]).unwrap();
        assert_eq!(named, r#"["vanished","torn","malformed","locked"]"#);
    }

    #[test]
    fn unescape_refuses_what_escaping_never_writes() {
        for s in ["a\\", "\\x4", "\\xzz", "\\x+1", "\\n"] {
            assert_eq!(unescape(s), None, "{s:?}");
        }
        assert_eq!(unescape("\\\\\\x00").unwrap(), b"\\\0");
    }

    #[test]
    fn problems_sort_by_the_bytes_of_their_paths() {
        let mut v = [Problem::new(Path::new("a/b"), "r"), Problem::new(Path::new("a.b"), "r")];
        v.sort();
        assert_eq!(v[0].path, Path::new("a.b"), "'.' sorts before '/' as in the former strings");
    }
}
