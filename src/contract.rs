//! The JSON contracts: every object a command prints with `--json`, each batch row's report
//! and the list of rows beside them name their contract and version in `"schema"` (docs/json.md; the JSON Schema of
//! each is in docs/schema/). Adding a key keeps a version; removing a key or changing its type
//! makes the next one.

use serde::Serialize;

use crate::error::{Error, Result};

pub const SYNC: &str = "mailmover.sync/1";
pub const VERIFY: &str = "mailmover.verify/1";
pub const INSPECT: &str = "mailmover.inspect/1";
pub const REPORT: &str = "mailmover.report/1";
pub const BATCH: &str = "mailmover.batch/1";
pub const BATCH_ROW: &str = "mailmover.batch-row/1";
/// `batch.json` in a report directory: the rows of the batch file.
pub const BATCH_MANIFEST: &str = "mailmover.batch-manifest/1";
pub const ERROR: &str = "mailmover.error/1";

/// An output object with the name of its contract first.
#[derive(Serialize)]
struct Named<'a, T> {
    schema: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// `body` as one line of JSON named `schema`. An object that cannot be written is an error of
/// the run, so that stdout never holds half an object or an empty line.
pub fn line<T: Serialize>(schema: &'static str, body: &T) -> Result<String> {
    serde_json::to_string(&Named { schema, body }).map_err(|e| Error::bad("", format!("the JSON output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_comes_first_and_the_body_follows() {
        #[derive(Serialize)]
        struct B {
            a: u64,
            b: Option<String>,
        }
        assert_eq!(line(SYNC, &B { a: 1, b: None }).unwrap(), r#"{"schema":"mailmover.sync/1","a":1,"b":null}"#);
    }
}
