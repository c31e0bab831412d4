//! cPanel account trees as stores: every mailbox of every domain plus the account's metadata.
//! (Being implemented: see the state note.)

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::events::Recorder;
use crate::report::Summary;
use crate::store::Store;
use crate::sync::SyncOptions;

/// Options that only cPanel stores use.
#[derive(Args, Debug, Clone, Default)]
pub struct CpanelArgs {
    /// Rename a domain everywhere it occurs, OLD=NEW (repeatable).
    #[arg(long, value_name = "OLD=NEW")]
    pub map_domain: Vec<String>,
    /// Rename a user, OLD=NEW, as local parts or full addresses (repeatable).
    #[arg(long, value_name = "OLD=NEW")]
    pub map_user: Vec<String>,
    /// CSV file of `old,new` rows (addresses or domains).
    #[arg(long, value_name = "CSV")]
    pub map_file: Option<PathBuf>,
    /// Where the source's system-wide files (valiases/, vfilters/, vdomainaliases/) are read.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub source_etc: PathBuf,
    /// Where the target's system-wide files are written.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub target_etc: PathBuf,
    /// Move only this address's mailbox and its metadata lines.
    #[arg(long, value_name = "ADDR")]
    pub mailbox: Option<String>,
    /// Let the source's metadata lines win over the target's for the same key.
    #[arg(long)]
    pub overwrite_metadata: bool,
}

pub fn sync(_src: &Store, _dst: &Store, _opts: &SyncOptions, _cp: &CpanelArgs, _rec: &dyn Recorder) -> Result<Summary> {
    Err(Error::Usage("cpanel: stores are not supported by this build".into()))
}
