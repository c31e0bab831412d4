//! Errors of the library. Every variant names the path it concerns; per-message and per-folder
//! failures are turned into [`Problem`] values that are counted and reported while the run goes on.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exit::Exit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    Bad { path: PathBuf, reason: String },
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
        Error::Bad { path: path.into(), reason: reason.into() }
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
            Error::Io { path, source } => Problem::new(path, io_reason(source)),
            Error::Bad { path, reason } | Error::Locked { path, reason } => Problem::new(path, reason.clone()),
            Error::Interrupted(_) => Problem { path: String::new(), reason: self.to_string(), offset: None },
            Error::Usage(m) => Problem { path: String::new(), reason: m.clone(), offset: None },
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

/// One thing that went wrong, as listed in reports: the path, the reason and, for a message
/// inside an mbox file, its byte offset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Problem {
    pub path: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub offset: Option<u64>,
}

impl Problem {
    pub fn new(path: &Path, reason: impl Into<String>) -> Self {
        Problem { path: path.display().to_string(), reason: reason.into(), offset: None }
    }

    pub fn at_offset(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        Problem { path: path.display().to_string(), reason: reason.into(), offset: Some(offset) }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} (byte {}): {}", self.path, o, self.reason),
            None => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}
