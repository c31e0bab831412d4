//! `mailmover inspect`: kinds, folder names, counts, bytes and problems, read-only.

mod common;

use common::*;
use serde_json::Value;

fn inspect(env: &TestEnv, store: &str) -> Run {
    env.run(["inspect", store, "--json"])
}

fn folders(j: &Value) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = j["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| {
            (f["name"].as_str().unwrap().to_string(), f["messages"].as_u64().unwrap(), f["bytes"].as_u64().unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn mbox_file_counts_and_bytes() {
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    let size = std::fs::metadata(&src).unwrap().len();
    let snap = snapshot(&src);
    let r = inspect(&env, src.to_str().unwrap());
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["kind"], "mbox");
    let f = folders(&j);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].0.as_str(), f[0].1), ("INBOX", 5));
    assert!(f[0].2 > 0 && f[0].2 <= size, "bytes {} of a {size}-byte file", f[0].2);
    assert_eq!(j["problems"].as_array().map(Vec::len), Some(0));
    assert_unchanged(&snap, &src, "the store");
}

#[test]
fn thunderbird_dir_names_and_empty_folder() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/thunderbird-dir");
    let r = inspect(&env, &format!("mbox:{}", src.display()));
    r.expect_code(0);
    let f: Vec<(String, u64)> = folders(&r.json()).into_iter().map(|(n, m, _)| (n, m)).collect();
    assert_eq!(f, [("INBOX".into(), 4), ("INBOX/Work".into(), 1), ("Sent".into(), 1), ("Trash".into(), 0)]);
}

#[test]
fn bare_mbox_dir_is_detected_with_utf7_names() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/utf7-dir");
    let r = inspect(&env, src.to_str().unwrap());
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["kind"], "mbox");
    let names: Vec<String> = folders(&j).into_iter().map(|f| f.0).collect();
    assert_eq!(names, ["Archive/2019", "Deleted Items", "Entwürfe", "INBOX", "Q&A", "Sent Items", "日本語"]);
}

#[test]
fn maildir_bytes_are_file_sizes() {
    let env = TestEnv::new();
    let src = env.fixture("maildir/utf7-folders");
    let snap = snapshot(&src);
    let r = inspect(&env, src.to_str().unwrap());
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["kind"], "maildir");
    let msgs = read_maildir(&src, Layout::MaildirPP);
    let mut want: Vec<(String, u64, u64)> = maildir_folders(&src, Layout::MaildirPP)
        .into_iter()
        .map(|(name, _)| {
            let ms: Vec<&Msg> = msgs.iter().filter(|m| m.folder == name).collect();
            (name, ms.len() as u64, ms.iter().map(|m| m.bytes.len() as u64).sum())
        })
        .collect();
    want.sort();
    // Implicit parents (日本語 of 日本語/子) may be listed with no messages.
    let got: Vec<_> = folders(&j).into_iter().filter(|f| f.1 > 0).collect();
    assert_eq!(got, want.into_iter().filter(|f| f.1 > 0).collect::<Vec<_>>());
    assert!(folders(&j).iter().any(|f| f.0 == "日本語/子" && f.1 == 1));
    assert_unchanged(&snap, &src, "the store");
}

#[test]
fn garbage_file_is_a_problem_with_its_path() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/not-an-mbox.json");
    let r = inspect(&env, &format!("mbox:{}", src.display()));
    r.expect_code(1);
    let p = r.json()["problems"].as_array().cloned().unwrap_or_default();
    assert!(p.iter().any(|x| x["path"].as_str().is_some_and(|s| s.ends_with("not-an-mbox.json"))), "{p:?}");
}

/// A name that is not UTF-8 reaches the JSON whole: escaped, and marked so.
#[test]
fn non_utf8_problem_paths_are_escaped_not_lost() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    env.write("md/cur/1.h:2,S", b"Subject: x\n\nhi\n");
    std::fs::create_dir_all(env.path("md/new")).unwrap();
    std::fs::create_dir_all(env.path("md/tmp")).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"2.h\xff\\st,S=0:2,S");
    std::fs::write(env.path("md/cur").join(name), b"").unwrap();
    let r = inspect(&env, env.path("md").to_str().unwrap());
    r.expect_code(1);
    let p = r.json()["problems"].as_array().cloned().unwrap_or_default();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0]["path"].as_str().is_some_and(|s| s.ends_with(r"/cur/2.h\xff\\st,S=0:2,S")), "{p:?}");
    assert_eq!(p[0]["path_escaped"], Value::Bool(true));
}

#[test]
fn zero_byte_maildir_file_is_a_problem() {
    let env = TestEnv::new();
    let src = env.fixture("maildir/zero-byte-file");
    let r = inspect(&env, src.to_str().unwrap());
    r.expect_code(1);
    let j = r.json();
    let p = j["problems"].as_array().cloned().unwrap_or_default();
    assert!(p.iter().any(|x| x["path"].as_str().is_some_and(|s| s.contains("S=0:2,S"))), "{p:?}");
    assert_eq!(folders(&j)[0].1, 1, "the good message is still counted");
}

#[test]
fn truncated_mbox_is_a_problem() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/truncated-last.mbox");
    let r = inspect(&env, src.to_str().unwrap());
    r.expect_code(1);
    assert!(!r.json()["problems"].as_array().unwrap().is_empty());
}

#[test]
fn empty_mbox_is_an_empty_folder() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/empty.mbox");
    let r = inspect(&env, src.to_str().unwrap());
    r.expect_code(0);
    assert_eq!(folders(&r.json()), [("INBOX".to_string(), 0, 0)]);
}

#[test]
fn missing_store_is_a_usage_error() {
    let env = TestEnv::new();
    let r = inspect(&env, "does-not-exist");
    r.expect_code(2);
    assert!(r.stderr.contains("does-not-exist"), "{}", r.stderr);
}

#[test]
fn human_output_names_folders() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/thunderbird-dir");
    let r = env.run(["inspect", &format!("mbox:{}", src.display())]);
    r.expect_code(0);
    assert!(r.stdout.contains("INBOX/Work"), "{}", r.stdout);
}

/// Every fixture has its README line, and inspect reads each one without a panic; only the
/// ones made to show a defect report problems.
#[test]
fn every_fixture_is_described_and_inspectable() {
    let readme = std::fs::read_to_string(fixtures().join("README.md")).unwrap();
    let mut stores = vec!["example.mbox".to_string()];
    for kind in ["mbox", "maildir"] {
        for e in std::fs::read_dir(fixtures().join(kind)).unwrap() {
            stores.push(format!("{kind}/{}", e.unwrap().file_name().to_string_lossy()));
        }
    }
    let defective = ["mbox/truncated-last.mbox", "mbox/not-an-mbox.json", "maildir/zero-byte-file"];
    for s in &stores {
        let shown =
            if std::path::Path::new(&fixtures().join(s)).is_dir() { format!("`{s}/`") } else { format!("`{s}`") };
        assert!(readme.contains(&shown), "fixtures/README.md has no line for {shown}");
        let env = TestEnv::new();
        let p = env.fixture(s);
        let spec = if s.starts_with("mbox/") { format!("mbox:{}", p.display()) } else { p.display().to_string() };
        let r = inspect(&env, &spec);
        let want = if defective.contains(&s.as_str()) { 1 } else { 0 };
        assert_eq!(r.code, want, "{s}: {r:?}");
    }
}
