//! The JSON contract (docs/json.md): every `--json` output of the real binary, each batch row's
//! report and the batch manifest validate against the JSON Schema in docs/schema/ that their
//! `"schema"` field names; a fatal error with `--json` is one such object too; the schemas are
//! strict enough to catch a changed type, a missing key or an unknown one.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema")
}

/// The schema file a contract's name points to: `mailmover.NAME/1` is `NAME.schema.json`.
fn schema_file(name: &str) -> PathBuf {
    let stem = name
        .strip_prefix("mailmover.")
        .and_then(|n| n.strip_suffix("/1"))
        .unwrap_or_else(|| panic!("{name:?} is not a contract name of version 1"));
    schema_dir().join(format!("{stem}.schema.json"))
}

fn load(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options().should_validate_formats(true).build(schema).expect("a usable schema")
}

/// Why `v` does not validate against the schema of contract `name` (empty when it does).
fn violations(name: &str, v: &Value) -> Vec<String> {
    let schema = load(&schema_file(name));
    validator(&schema).iter_errors(v).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// Asserts that `v` names contract `name`, that the schema file of that name is the one for
/// it (its `schema` constant), and that `v` validates against it.
#[track_caller]
fn conforms(v: &Value, name: &str) {
    assert_eq!(v["schema"], json!(name), "the output names another contract: {v}");
    let schema = load(&schema_file(name));
    assert_eq!(schema["properties"]["schema"]["const"], json!(name), "{} is not {name}'s", schema_file(name).display());
    let bad = violations(name, v);
    assert!(bad.is_empty(), "{name}: {}\n{v:#}", bad.join("\n"));
}

/// stdout is exactly one JSON object, which conforms to `name`.
#[track_caller]
fn printed(r: &Run, name: &str) -> Value {
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line of JSON on stdout:\n{}\n--- stderr\n{}", r.stdout, r.stderr);
    let v = r.json();
    conforms(&v, name);
    v
}

const NAMES: [&str; 9] = [
    "mailmover.sync/1",
    "mailmover.verify/1",
    "mailmover.inspect/1",
    "mailmover.report/1",
    "mailmover.batch/1",
    "mailmover.batch-row/1",
    "mailmover.batch-manifest/1",
    "mailmover.error/1",
    "mailmover.audit-verify/1",
];

/// Each file is a draft 2020-12 schema of one contract, there is one file per contract, every
/// required key is described, and the definitions the files share are the same in each.
#[test]
fn schema_files_are_schemas_of_one_contract_each() {
    let mut files: Vec<String> = std::fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> =
        NAMES.iter().map(|n| schema_file(n).file_name().unwrap().to_string_lossy().into_owned()).collect();
    want.sort();
    assert_eq!(files, want);
    let mut shared: std::collections::BTreeMap<String, (String, Value)> = Default::default();
    for name in NAMES {
        let s = load(&schema_file(name));
        assert_eq!(s["$schema"], json!("https://json-schema.org/draft/2020-12/schema"), "{name}");
        jsonschema::meta::validate(&s).unwrap_or_else(|e| panic!("{name}: not a valid schema: {e}"));
        assert_eq!(s["additionalProperties"], json!(false), "{name}: the top object is closed");
        for key in s["required"].as_array().unwrap() {
            assert!(s["properties"].get(key.as_str().unwrap()).is_some(), "{name}: {key} is required, not described");
        }
        for (def, body) in s["$defs"].as_object().into_iter().flatten() {
            match shared.get(def) {
                Some((first, b)) => assert_eq!(b, body, "$defs/{def} of {name} differs from {first}'s"),
                None => {
                    shared.insert(def.clone(), (name.to_string(), body.clone()));
                }
            }
        }
    }
}

/// A sync output, and mutations of it: the schema refuses a count as text, a missing key, an
/// unknown key, a time that is not RFC 3339 UTC and a problem without its kind.
#[test]
fn schemas_are_strict() {
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    let r = env.sync(src.to_str().unwrap(), "maildir:out", &[]);
    r.expect_code(0);
    let good = printed(&r, "mailmover.sync/1");
    let problem = |kind: Value, offset: Value| {
        json!([{
            "path": "/x", "path_escaped": false, "reason": "r", "kind": kind, "offset": offset,
        }])
    };
    // (what, key, its new value; None: the key removed)
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        ("a count as a string", "transferred", Some(json!("5"))),
        ("a count as a float", "failed", Some(json!(0.5))),
        ("a negative count", "folders", Some(json!(-1))),
        ("seconds as a string", "seconds", Some(json!("0.1"))),
        ("a missing key", "errors", None),
        ("a missing null", "signal", None),
        ("an unknown key", "copied", Some(json!(5))),
        ("a local time", "started", Some(json!("2026-01-01T10:00:00+01:00"))),
        ("a time as a number", "finished", Some(json!(1_700_000_000))),
        ("another contract", "schema", Some(json!("mailmover.sync/2"))),
        ("a problem of an unknown kind", "errors", Some(problem(json!("weird"), Value::Null))),
        ("a problem with an offset as text", "warnings", Some(problem(json!("io"), json!("7")))),
    ];
    assert!(violations("mailmover.sync/1", &good).is_empty());
    for (what, key, value) in cases {
        let mut v = good.clone();
        let m = v.as_object_mut().unwrap();
        match value {
            Some(x) => m.insert(key.into(), x),
            None => m.remove(key),
        };
        assert!(!violations("mailmover.sync/1", &v).is_empty(), "{what} passed the sync schema");
    }
    let mut v = good.clone();
    v["errors"] = problem(json!("io"), json!(7));
    v["errors"][0].as_object_mut().unwrap().remove("kind");
    assert!(!violations("mailmover.sync/1", &v).is_empty(), "a problem without its kind passed");
    v["errors"] = problem(json!("io"), json!(7));
    assert!(violations("mailmover.sync/1", &v).is_empty(), "a whole problem did not pass");
    let fatal = json!({
        "schema": "mailmover.error/1",
        "error": {"path": "", "path_escaped": false, "reason": "r", "kind": "usage", "offset": null},
        "exit": 2,
    });
    assert!(violations("mailmover.error/1", &fatal).is_empty());
    for bad in [json!("2"), json!(0), Value::Null] {
        let mut v = fatal.clone();
        v["exit"] = bad.clone();
        assert!(!violations("mailmover.error/1", &v).is_empty(), "exit {bad} passed");
    }
    let mut v = fatal.clone();
    v["error"]["kind"] = json!("weird");
    assert!(!violations("mailmover.error/1", &v).is_empty(), "an unknown kind passed");
}

#[test]
fn sync_complete_and_dry_run() {
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    let src = src.to_str().unwrap();
    let dry = env.sync(src, "maildir:out", &["--dry-run"]);
    dry.expect_code(0);
    let d = printed(&dry, "mailmover.sync/1");
    assert_eq!((d["dry_run"].clone(), d["transferred"].clone()), (json!(true), json!(5)));
    assert!(dry.stderr.contains("plan: would copy"), "plan lines go to stderr with --json:\n{}", dry.stderr);
    let r = env.sync(src, "maildir:out", &[]);
    r.expect_code(0);
    let v = printed(&r, "mailmover.sync/1");
    assert_eq!(
        (v["complete"].clone(), v["transferred"].clone(), v["signal"].clone()),
        (json!(true), json!(5), Value::Null)
    );
    assert_eq!((v["source"].as_str(), v["target"].as_str()), (Some(src), Some("maildir:out")));
    let again = env.sync(src, "maildir:out", &[]);
    assert_eq!(printed(&again, "mailmover.sync/1")["skipped_existing"], json!(5));
}

/// Errors of a run: a truncated mbox message (with its byte offset), an empty Maildir file
/// whose name is not UTF-8 (escaped path), and a source that is not a store (rejected, exit 2).
#[test]
fn sync_with_errors() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/truncated-last.mbox");
    let r = env.sync(src.to_str().unwrap(), "maildir:out", &[]);
    r.expect_code(1);
    let v = printed(&r, "mailmover.sync/1");
    assert_eq!(v["complete"], json!(false));
    assert!(v["errors"].as_array().unwrap().iter().any(|e| e["offset"].is_u64()), "no offset: {v}");

    let md = env.path("md");
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(s)).unwrap();
    }
    std::fs::write(md.join("cur/1700000000.M1P1.host:2,S"), message("one", "body\n")).unwrap();
    let raw = md.join("cur").join(std::ffi::OsStr::from_bytes(b"1700000001.M2P2.h\xff:2,S"));
    std::fs::write(&raw, b"").unwrap();
    let r = env.sync("maildir:md", "maildir:out2", &[]);
    r.expect_code(1);
    let v = printed(&r, "mailmover.sync/1");
    let escaped: Vec<&Value> =
        v["errors"].as_array().unwrap().iter().filter(|e| e["path_escaped"] == json!(true)).collect();
    assert!(escaped.len() == 1 && escaped[0]["path"].as_str().unwrap().ends_with("h\\xff:2,S"), "{v}");

    let notmbox = env.fixture("mbox/not-an-mbox.json");
    let r = env.sync(notmbox.to_str().unwrap(), "maildir:out3", &[]);
    r.expect_code(2);
    let v = printed(&r, "mailmover.sync/1");
    assert_eq!((v["rejected"].clone(), v["errors"][0]["kind"].clone()), (json!(true), json!("malformed")));
}

#[test]
fn sync_of_a_cpanel_account() {
    let env = TestEnv::new();
    let st = Command::new("cp").arg("-a").arg(fixtures().join("cpanel")).arg(env.path("src")).status().unwrap();
    assert!(st.success());
    restore_maildir_dirs(&env.path("src"));
    std::fs::create_dir_all(env.path("dst/home/acct")).unwrap();
    let r = env.sync(
        "cpanel:src/home/acct",
        "cpanel:dst/home/acct",
        &["--source-etc", "src/etc", "--target-etc", "dst/etc"],
    );
    r.expect_code(0);
    let v = printed(&r, "mailmover.sync/1");
    assert!(v["transferred"].as_u64().unwrap() > 0 && !v["warnings"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn verify_ok_and_different() {
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    let src = src.to_str().unwrap();
    env.sync(src, "maildir:out", &[]).expect_code(0);
    let r = env.run(["verify", src, "maildir:out", "--json"]);
    r.expect_code(0);
    let v = printed(&r, "mailmover.verify/1");
    assert_eq!((v["ok"].clone(), v["differences"].clone()), (json!(true), json!([])));

    // One copy gone, one message only in the target.
    let cur = env.path("out/cur");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&cur).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    std::fs::remove_file(&names[0]).unwrap();
    std::fs::write(cur.join("1700000000.M9P9.elsewhere:2,S"), message("extra", "only here\n")).unwrap();
    let r = env.run(["verify", src, "maildir:out", "--json"]);
    r.expect_code(1);
    let v = printed(&r, "mailmover.verify/1");
    assert_eq!(
        (v["ok"].clone(), v["missing_in_target"].clone(), v["extra_in_target"].clone()),
        (json!(false), json!(1), json!(1))
    );
    let d = v["differences"].as_array().unwrap();
    assert!(d.iter().any(|d| d["source"].is_string() && d["target"].is_null()), "a missing copy has no target: {v}");
    assert!(d.iter().any(|d| d["source"].is_null() && d["target"].is_string()), "an extra has no source: {v}");
}

#[test]
fn inspect_mbox_maildir_and_cpanel() {
    let env = TestEnv::new();
    let mbox = env.fixture("example.mbox");
    let v = printed(env.run(["inspect", "--json", mbox.to_str().unwrap()]).expect_code(0), "mailmover.inspect/1");
    assert_eq!((v["kind"].clone(), v["messages"].clone()), (json!("mbox"), json!(5)));
    assert!(v["folders"][0]["date_first"].as_str().is_some_and(|d| d.ends_with('Z')), "{v}");

    let trunc = env.fixture("mbox/truncated-last.mbox");
    let r = env.run(["inspect", "--json", trunc.to_str().unwrap()]);
    r.expect_code(1);
    assert!(!printed(&r, "mailmover.inspect/1")["problems"].as_array().unwrap().is_empty());

    let dir = env.fixture("mbox/utf7-dir");
    printed(env.run(["inspect", "--json", &format!("mbox:{}", dir.display())]).expect_code(0), "mailmover.inspect/1");

    let md = env.fixture("maildir/dovecot-keywords");
    let v = printed(
        env.run(["inspect", "--json", &format!("maildir:{}", md.display())]).expect_code(0),
        "mailmover.inspect/1",
    );
    assert_eq!(v["kind"], json!("maildir"));

    // An empty folder has no dates: null, not left out.
    let empty = env.fixture("mbox/empty.mbox");
    let v = printed(env.run(["inspect", "--json", empty.to_str().unwrap()]).expect_code(0), "mailmover.inspect/1");
    assert_eq!(
        (v["folders"][0]["date_first"].clone(), v["folders"][0]["date_last"].clone()),
        (Value::Null, Value::Null)
    );

    let st = Command::new("cp").arg("-a").arg(fixtures().join("cpanel")).arg(env.path("cp")).status().unwrap();
    assert!(st.success());
    restore_maildir_dirs(&env.path("cp"));
    let r = env.run(["inspect", "--json", "cpanel:cp/home/acct"]);
    r.expect_code(0);
    let v = printed(&r, "mailmover.inspect/1");
    assert_eq!(v["kind"], json!("cpanel"));
    assert!(!v["mailboxes"].as_array().unwrap().is_empty() && !v["domains"].as_array().unwrap().is_empty(), "{v}");

    // The cPanel keys belong to cPanel stores only.
    let mut plain =
        printed(env.run(["inspect", "--json", mbox.to_str().unwrap()]).expect_code(0), "mailmover.inspect/1");
    plain["domains"] = json!([]);
    assert!(!violations("mailmover.inspect/1", &plain).is_empty());
    let mut cp = v.clone();
    cp.as_object_mut().unwrap().remove("mailboxes");
    assert!(!violations("mailmover.inspect/1", &cp).is_empty());
}

/// A Maildir of `n` messages at `dir`.
fn account(dir: &Path, n: usize) {
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(s)).unwrap();
    }
    for i in 0..n {
        let name = format!("17000000{i:02}.M{i}P1.old:2,S");
        std::fs::write(dir.join("cur").join(name), message(&format!("{} {i}", dir.display()), "body\n")).unwrap();
    }
}

/// Batch with a report directory: the `batch --json` object, each row's report, the manifest,
/// and `report --json` with failed and missing rows.
#[test]
fn batch_rows_manifest_and_report() {
    let env = TestEnv::new();
    account(&env.path("src/a"), 3);
    account(&env.path("src/b"), 1);
    let rows = concat!(
        "source,target\n",
        "maildir:src/a,maildir:dst/a\n",
        "maildir:src/b,maildir:dst/b,max-size=100000\n",
        "maildir:src/gone,maildir:dst/gone\n",
    );
    env.write("rows.csv", rows.as_bytes());
    let r = env.run(["batch", "rows.csv", "--report-dir", "R", "--json"]);
    r.expect_code(1);
    let v = printed(&r, "mailmover.batch/1");
    assert_eq!((v["rows"].clone(), v["complete"].clone(), v["failed"].clone()), (json!(3), json!(2), json!(1)));
    assert_eq!(v["totals"]["transferred"], json!(4));

    let mut reports = 0;
    for e in std::fs::read_dir(env.path("R")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "batch.json" {
            let m = load(&p);
            conforms(&m, "mailmover.batch-manifest/1");
            assert_eq!(m["rows"].as_array().unwrap().len(), 3);
        } else {
            assert!(name.starts_with("row-") && name.ends_with(".json"), "{name}");
            conforms(&load(&p), "mailmover.batch-row/1");
            reports += 1;
        }
    }
    assert_eq!(reports, 3);

    let r = env.run(["report", "R", "--json"]);
    r.expect_code(1);
    let v = printed(&r, "mailmover.report/1");
    let failed = &v["failed_rows"][0];
    assert_eq!((failed["shard"].clone(), failed["errors"][0]["kind"].clone()), (json!("1/1"), json!("usage")));

    // A row added to the file since: missing, with no shard, host or errors to tell.
    env.write("more.csv", format!("{rows}maildir:src/later,maildir:dst/later\n").as_bytes());
    let r = env.run(["report", "R", "--json", "--file", "more.csv"]);
    r.expect_code(1);
    let v = printed(&r, "mailmover.report/1");
    let missing = &v["missing_rows"][0];
    assert_eq!(
        (missing["shard"].clone(), missing["host"].clone(), missing["errors"].clone(), missing["line"].clone()),
        (Value::Null, Value::Null, json!([]), json!(5))
    );

    // A run whose rows all have complete reports skips them, and says how many.
    std::fs::remove_file(env.path("rows.csv")).unwrap();
    env.write("rows.csv", b"maildir:src/a,maildir:dst/a\n");
    let r = env.run(["batch", "rows.csv", "--report-dir", "R", "--json"]);
    r.expect_code(0);
    assert_eq!(printed(&r, "mailmover.batch/1")["skipped"], json!(1));
}

/// A batch file whose name is not UTF-8: its reports name it with U+FFFD for the bytes that
/// are not (writing them used to panic).
#[test]
fn batch_file_named_in_bytes_that_are_not_utf8() {
    let env = TestEnv::new();
    account(&env.path("src/a"), 1);
    let name = std::ffi::OsStr::from_bytes(b"rows\xff.csv");
    std::fs::write(env.root().join(name), "maildir:src/a,maildir:dst/a\n").unwrap();
    let args: Vec<&std::ffi::OsStr> =
        vec!["batch".as_ref(), name, "--report-dir".as_ref(), "R".as_ref(), "--json".as_ref()];
    let r = env.run(args);
    r.expect_code(0);
    printed(&r, "mailmover.batch/1");
    let manifest = load(&env.path("R/batch.json"));
    conforms(&manifest, "mailmover.batch-manifest/1");
    assert_eq!(manifest["batch_file"], json!("rows\u{fffd}.csv"));
    let row = std::fs::read_dir(env.path("R"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("row-"))
        .unwrap();
    let row = load(&row);
    conforms(&row, "mailmover.batch-row/1");
    assert_eq!(row["batch_file"], json!("rows\u{fffd}.csv"));
}

/// A fatal error with `--json` prints one error object on stdout (and the human line on
/// stderr), for each command that takes `--json`; without `--json` stdout stays empty.
#[test]
fn fatal_errors_are_one_json_object() {
    let env = TestEnv::new();
    let fatal = |args: &[&str], code: i32, kind: &str| -> Value {
        let r = env.run(args);
        r.expect_code(code);
        assert!(r.stderr.starts_with("mailmover: "), "the human line is on stderr too:\n{}", r.stderr);
        let v = printed(&r, "mailmover.error/1");
        assert_eq!((v["exit"].clone(), v["error"]["kind"].clone()), (json!(code), json!(kind)), "{args:?}");
        v
    };
    let v = fatal(&["sync", "nowhere", "maildir:out", "--json"], 2, "usage");
    assert!(v["error"]["reason"].as_str().unwrap().contains("nowhere"), "{v}");
    fatal(&["sync", "nowhere", "maildir:out", "--json", "--dry-run"], 2, "usage");
    fatal(&["verify", "nowhere", "maildir:out", "--json"], 2, "usage");
    fatal(&["inspect", "--json", "nowhere"], 2, "usage");
    fatal(&["batch", "nowhere.csv", "--json"], 2, "usage");
    fatal(&["report", "nowhere", "--json"], 2, "usage");
    env.write("rows.csv", b"maildir:a,maildir:b\n");
    fatal(&["batch", "rows.csv", "--list", "--json"], 2, "usage");
    // An unreadable key file (a configuration error).
    let src = env.fixture("example.mbox");
    let src = src.to_str().unwrap();
    fatal(&["sync", src, "maildir:out", "--json", "--audit-log", "a.log", "--audit-key-file", "nokey"], 2, "usage");

    // A locked target.
    env.sync(src, "maildir:md", &[]).expect_code(0);
    let f = std::fs::OpenOptions::new().write(true).open(env.path("md/mailmover.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e).unwrap();
    let v = fatal(&["sync", src, "maildir:md", "--json"], 2, "locked");
    assert!(v["error"]["path"].as_str().unwrap().ends_with("md/mailmover.lock"), "{v}");
    drop(held);

    let r = env.run(["sync", "nowhere", "maildir:out"]);
    r.expect_code(2);
    assert_eq!(r.stdout, "", "without --json a fatal error prints nothing on stdout");
    // clap's own errors come before --json is known (docs/json.md says so).
    let r = env.run(["sync", "a", "b", "--json", "--no-such-option"]);
    r.expect_code(2);
    assert_eq!(r.stdout, "");
}

/// `audit-verify --json`: an audit log checked by its HMAC chain and by its signatures, a
/// signed manifest, each when it checks out and when a line fails; an unreadable key is the
/// error object.
#[test]
fn audit_verify_ok_and_failed() {
    let env = TestEnv::new();
    let hmac = audited_source(&env);
    let (private, public) = ed25519_keys(&env, 3);
    let (_, other) = ed25519_keys(&env, 4);
    let audit = ["--audit-log", "a.jsonl", "--audit-key-file", hmac.as_str(), "--sign-key", private.as_str()];
    env.run([&["sync", "maildir:src", "out", "--manifest", "m.jsonl"][..], &audit[..]].concat()).expect_code(0);
    let check = |args: &[&str], code: i32| -> Value {
        let r = env.run([&["audit-verify", "--json"][..], args].concat());
        r.expect_code(code);
        printed(&r, "mailmover.audit-verify/1")
    };
    let v = check(&["a.jsonl", "--audit-key-file", &hmac], 0);
    assert_eq!(
        (v["ok"].clone(), v["kind"].clone(), v["runs"].clone(), v["signed_by"].clone()),
        (json!(true), json!("audit-log"), json!(1), Value::Null)
    );
    let v = check(&["a.jsonl", "--public-key", &public], 0);
    assert!(v["signed_by"].as_str().is_some_and(|s| s.len() == 64), "{v}");
    let v = check(&["m.jsonl", "--public-key", &public], 0);
    assert_eq!((v["kind"].clone(), v["runs"].clone()), (json!("manifest"), Value::Null));
    assert!(v["records"].as_u64().is_some_and(|n| n > 2), "{v}");
    let v = check(&["m.jsonl", "--public-key", &other], 1);
    assert_eq!((v["ok"].clone(), v["records"].clone()), (json!(false), Value::Null));
    assert!(v["line"].as_u64().is_some() && v["reason"].as_str().is_some_and(|r| r.contains("another key")), "{v}");
    let text = std::fs::read_to_string(env.path("a.jsonl")).unwrap();
    std::fs::write(env.path("a.jsonl"), text.replacen("maildir:src", "maildir:srC", 1)).unwrap();
    let v = check(&["a.jsonl", "--audit-key-file", &hmac], 1);
    assert_eq!(v["line"], json!(1), "{v}");
    let r = env.run(["audit-verify", "--json", "a.jsonl", "--audit-key-file", "nokey"]);
    r.expect_code(2);
    printed(&r, "mailmover.error/1");
}
