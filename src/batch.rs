//! Batch runs: many syncs from a CSV file, sharded deterministically, with JSON reports.
//! (Being implemented: see the state note.)

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// CSV file of `source,target` rows.
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Directory of batch reports.
    pub dir: PathBuf,
}

pub fn run_batch(_a: &BatchArgs) -> Result<i32> {
    Err(Error::Usage("batch: not supported by this build".into()))
}

pub fn run_report(_a: &ReportArgs) -> Result<i32> {
    Err(Error::Usage("report: not supported by this build".into()))
}
