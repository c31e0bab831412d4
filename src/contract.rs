//! The JSON contracts: every object a command prints with `--json`, each batch row's report
//! and the list of rows beside them name their contract and version in `"schema"`
//! (docs/json.md; the JSON Schema of each is in docs/schema/). Adding a key keeps a version;
//! removing a key or changing its type makes the next one.

use serde::Serialize;

use crate::error::{Error, Problem, Result};

pub const SYNC: &str = "mailmover.sync/1";
pub const VERIFY: &str = "mailmover.verify/1";
pub const INSPECT: &str = "mailmover.inspect/1";
pub const REPORT: &str = "mailmover.report/1";
pub const BATCH: &str = "mailmover.batch/1";
pub const BATCH_ROW: &str = "mailmover.batch-row/1";
/// `batch.json` in a report directory: the rows of the batch file.
pub const BATCH_MANIFEST: &str = "mailmover.batch-manifest/1";
pub const ERROR: &str = "mailmover.error/1";
pub const AUDIT_VERIFY: &str = "mailmover.audit-verify/1";

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

/// What a fatal error prints on stdout with `--json`: the error as a report lists a problem,
/// and the exit status.
#[derive(Serialize)]
struct Fatal {
    error: Problem,
    exit: u8,
}

/// The one JSON object of a run that ends with `e`.
pub fn error_line(e: &Error) -> String {
    let exit = e.exit_code().code();
    line(ERROR, &Fatal { error: e.problem(), exit }).unwrap_or_else(|_| {
        // Unreachable with the types above; the fallback still keeps the contract's shape.
        serde_json::json!({
            "schema": ERROR,
            "error": {"path": "", "path_escaped": false, "reason": e.to_string(), "kind": "other", "offset": null},
            "exit": exit,
        })
        .to_string()
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::*;
    use crate::error::Kind;

    #[test]
    fn the_name_comes_first_and_the_body_follows() {
        #[derive(Serialize)]
        struct B {
            a: u64,
            b: Option<String>,
        }
        assert_eq!(line(SYNC, &B { a: 1, b: None }).unwrap(), r#"{"schema":"mailmover.sync/1","a":1,"b":null}"#);
    }

    #[test]
    fn fatal_errors_name_kind_path_reason_and_exit() {
        let e = Error::Locked { path: "/t/.lock".into(), reason: "held by pid 7".into() };
        assert_eq!(
            error_line(&e),
            r#"{"schema":"mailmover.error/1","error":{"path":"/t/.lock","path_escaped":false,"reason":"held by pid 7","kind":"locked","offset":null},"exit":2}"#
        );
        let v: serde_json::Value = serde_json::from_str(&error_line(&Error::Usage("no source".into()))).unwrap();
        assert_eq!((&v["error"]["kind"], &v["error"]["path"], &v["exit"]), (&"usage".into(), &"".into(), &2.into()));
        let raw = Path::new(OsStr::from_bytes(b"/m/\xff"));
        let v: serde_json::Value =
            serde_json::from_str(&error_line(&Error::of(Kind::Malformed, raw, "not an mbox"))).unwrap();
        assert_eq!(
            (&v["error"]["path"], &v["error"]["path_escaped"], &v["exit"]),
            (&"/m/\\xff".into(), &true.into(), &1.into())
        );
        let v: serde_json::Value = serde_json::from_str(&error_line(&Error::Interrupted(15))).unwrap();
        assert_eq!((&v["error"]["kind"], &v["exit"]), (&"interrupted".into(), &143.into()));
    }
}
