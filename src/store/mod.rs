//! The mail formats on disk (mbox, Maildir), and the folders a store of either holds. What a
//! `KIND:PATH` argument names (cPanel accounts included) is [`crate::spec`]'s business.

pub mod maildir;
pub mod mbox;

use std::path::{Path, PathBuf};

use crate::error::{Error, Problem, Result};
use crate::folder::FolderName;

/// The on-disk formats this layer reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Mbox,
    Maildir,
}

/// Where a source folder's messages are.
#[derive(Debug, Clone)]
pub enum Location {
    MboxFile(PathBuf),
    Maildir(PathBuf),
}

impl Location {
    pub fn path(&self) -> &Path {
        match self {
            Location::MboxFile(p) | Location::Maildir(p) => p,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceFolder {
    pub name: FolderName,
    pub loc: Location,
}

/// The folders of the store of `format` at `path`, sorted by name, with what was wrong on the
/// way.
pub fn source_folders(path: &Path, format: Format, follow_symlinks: bool) -> Result<(Vec<SourceFolder>, Vec<Problem>)> {
    let mut problems = Vec::new();
    let md = std::fs::metadata(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let folders = match format {
        Format::Mbox if md.is_file() => {
            vec![SourceFolder { name: FolderName::inbox(), loc: Location::MboxFile(path.to_path_buf()) }]
        }
        Format::Mbox if md.is_dir() => mbox::folders(path, follow_symlinks, &mut problems)
            .into_iter()
            .map(|f| SourceFolder { name: f.name, loc: Location::MboxFile(f.file) })
            .collect(),
        Format::Mbox => return Err(Error::bad(path, "not a file or directory")),
        Format::Maildir => {
            if !md.is_dir() {
                return Err(Error::bad(path, "not a directory (a Maildir has cur/, new/ and tmp/)"));
            }
            let opts = maildir::read::ScanOptions { follow_symlinks };
            maildir::read::folders(path, opts, &mut problems)
                .into_iter()
                .map(|f| SourceFolder { name: f.name, loc: Location::Maildir(f.dir) })
                .collect()
        }
    };
    Ok((folders, problems))
}
