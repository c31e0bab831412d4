//! The audit log (`--audit-log`, `audit-verify`): a log verifies; a changed, removed or
//! reordered line, or a cut log, is rejected naming the right 1-based line; a missing or empty
//! key file is a usage error before any work. Issue 18: the log is appended to, never
//! truncated, one chain across runs; a symlink at its path or a weak key file is refused.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

const KEY: &[u8] = b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

/// Writes a key file readable by its owner only.
fn key_file(env: &TestEnv, name: &str, key: &[u8]) {
    let p = env.write(name, key);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn audited_sync(env: &TestEnv, src: &str, dst: &str) -> Run {
    env.sync(src, dst, &["--audit-log", "audit.log", "--audit-key-file", "key"])
}

/// Runs a sync with an audit log; returns (env, log lines).
fn logged() -> (TestEnv, Vec<String>) {
    let env = TestEnv::new();
    key_file(&env, "key", KEY);
    let src = env.fixture("example.mbox");
    audited_sync(&env, src.to_str().unwrap(), "out").expect_code(0);
    let text = std::fs::read_to_string(env.path("audit.log")).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    (env, lines)
}

fn audit_verify(env: &TestEnv) -> Run {
    env.run(["audit-verify", "audit.log", "--audit-key-file", "key"])
}

fn write_log(env: &TestEnv, lines: &[String]) {
    env.write("audit.log", (lines.join("\n") + "\n").as_bytes());
}

/// The line number `audit-verify` names in its output.
#[track_caller]
fn rejected_line(r: &Run) -> u64 {
    r.expect_code(1);
    let text = format!("{}{}", r.stdout, r.stderr);
    let i = text.find("line ").unwrap_or_else(|| panic!("no line named: {text}"));
    text[i + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no line number: {text}"))
}

#[test]
fn log_has_a_line_per_message_and_verifies() {
    let (env, lines) = logged();
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
    let copies = lines.iter().filter(|l| l.contains("\"copy\"")).count();
    assert!(copies >= 5, "{copies} copy records for 5 messages");
    audit_verify(&env).expect_code(0);
}

#[test]
fn changed_line_is_named() {
    let (env, mut lines) = logged();
    lines[2] = lines[2].replacen("\"INBOX\"", "\"INBOY\"", 1);
    assert!(lines[2].contains("INBOY"));
    write_log(&env, &lines);
    assert_eq!(rejected_line(&audit_verify(&env)), 3);
}

#[test]
fn removed_line_is_named() {
    let (env, mut lines) = logged();
    lines.remove(3);
    write_log(&env, &lines);
    assert_eq!(rejected_line(&audit_verify(&env)), 4);
}

#[test]
fn reordered_lines_are_named() {
    let (env, mut lines) = logged();
    lines.swap(1, 2);
    write_log(&env, &lines);
    assert_eq!(rejected_line(&audit_verify(&env)), 2);
}

#[test]
fn truncated_log_is_detected() {
    let (env, lines) = logged();
    let n = lines.len();
    write_log(&env, &lines[..n - 1]);
    let r = audit_verify(&env);
    let l = rejected_line(&r);
    assert!(l == n as u64 - 1 || l == n as u64, "cut after line {}: named line {l}", n - 1);
}

#[test]
fn wrong_key_is_rejected_at_line_1() {
    let (env, _) = logged();
    key_file(&env, "key", &[b'f'; 64]);
    assert_eq!(rejected_line(&audit_verify(&env)), 1);
}

#[test]
fn missing_or_empty_key_file_is_a_usage_error_before_any_work() {
    for key in [None, Some(&b""[..]), Some(&b"\n  \n"[..])] {
        let env = TestEnv::new();
        if let Some(k) = key {
            key_file(&env, "key", k);
        }
        let src = env.fixture("example.mbox");
        let r = env.sync(src.to_str().unwrap(), "out", &["--audit-log", "audit.log", "--audit-key-file", "key"]);
        assert_eq!(r.code, 2, "key {key:?}: {r:?}");
        assert!(!env.path("out").exists(), "key {key:?}: target created");
        assert!(!env.path("audit.log").exists(), "key {key:?}: log created");
        if key.is_none() {
            let r = env.run(["audit-verify", "audit.log", "--audit-key-file", "key"]);
            assert_eq!(r.code, 2, "{r:?}");
        }
    }
}

#[test]
fn log_cut_mid_line_names_that_line() {
    let (env, lines) = logged();
    let mut text = lines[..3].join("\n");
    text.push('\n');
    text.push_str(&lines[3][..lines[3].len() / 2]);
    env.write("audit.log", text.as_bytes());
    assert_eq!(rejected_line(&audit_verify(&env)), 4);
}

#[test]
fn appended_forged_line_is_named() {
    let (env, mut lines) = logged();
    let n = lines.len();
    lines.push(lines[n - 2].clone());
    write_log(&env, &lines);
    assert_eq!(rejected_line(&audit_verify(&env)), n as u64 + 1);
}

#[test]
fn empty_log_is_rejected() {
    let (env, _) = logged();
    env.write("audit.log", b"");
    assert_eq!(rejected_line(&audit_verify(&env)), 1);
}

/// Issue 18: a symlink at the log path (here to a file that must stay as it is) is refused
/// with exit 2 before anything is written: neither the file it points to nor the target.
#[test]
fn symlink_at_the_log_path_is_refused() {
    let env = TestEnv::new();
    key_file(&env, "key", KEY);
    let victim = env.write("victim.conf", b"precious\n");
    std::os::unix::fs::symlink(&victim, env.path("audit.log")).unwrap();
    let src = env.fixture("example.mbox");
    let r = audited_sync(&env, src.to_str().unwrap(), "out");
    r.expect_code(2);
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    assert!(!env.path("out").exists(), "target written");
    assert!(std::fs::symlink_metadata(env.path("audit.log")).unwrap().file_type().is_symlink());
}

/// Issue 18: two runs append to one chain that verifies whole; a line of the first run
/// changed afterwards is found, and the second run's lines do not hide it.
#[test]
fn two_runs_make_one_chain_and_run_one_stays_checked() {
    let (env, first) = logged();
    let src = env.fixture("example.mbox");
    audited_sync(&env, src.to_str().unwrap(), "out2").expect_code(0);
    let text = std::fs::read_to_string(env.path("audit.log")).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    assert!(lines.len() > first.len() + 2, "the second run appended");
    assert_eq!(lines[..first.len()], first[..], "the first run's lines are kept as they were");
    let r = audit_verify(&env);
    r.expect_code(0);
    assert!(r.stdout.contains("2 run(s)"), "{}", r.stdout);
    let mut tampered = lines.clone();
    tampered[2] = tampered[2].replacen("\"INBOX\"", "\"INBOY\"", 1);
    write_log(&env, &tampered);
    assert_eq!(rejected_line(&audit_verify(&env)), 3);
    // A run refuses to continue a chain whose last record does not verify with its key.
    let mut forged = lines.clone();
    let n = forged.len();
    forged[n - 1] = forged[n - 1].replacen("\"end\"", "\"End\"", 1);
    write_log(&env, &forged);
    let r = audited_sync(&env, src.to_str().unwrap(), "out3");
    r.expect_code(2);
    assert!(!env.path("out3").exists());
}

/// Issue 18: the key file must be only its owner's, at least 32 bytes, hex; otherwise exit 2
/// with the reason, and nothing is written.
#[test]
fn weak_key_files_are_usage_errors_that_say_why() {
    let long_hex = "ab".repeat(32);
    let cases: [(&str, Vec<u8>, u32, &str); 4] = [
        ("world-readable", KEY.to_vec(), 0o644, "chmod 600"),
        ("group-readable", KEY.to_vec(), 0o640, "owner only"),
        ("short", b"0011223344\n".to_vec(), 0o600, "at least 64"),
        ("non-hex", format!("{}zz\n", &long_hex[..62]).into_bytes(), 0o600, "not a hex key"),
    ];
    for (what, key, mode, why) in cases {
        let env = TestEnv::new();
        let p = env.write("key", &key);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        let src = env.fixture("example.mbox");
        let r = audited_sync(&env, src.to_str().unwrap(), "out");
        assert_eq!(r.code, 2, "{what}: {r:?}");
        assert!(r.stderr.contains(why), "{what}: {}", r.stderr);
        assert!(!env.path("out").exists() && !env.path("audit.log").exists(), "{what}: something written");
        let r = env.run(["audit-verify", "audit.log", "--audit-key-file", "key"]);
        assert_eq!(r.code, 2, "{what}: audit-verify {r:?}");
    }
    let env = TestEnv::new();
    key_file(&env, "real", KEY);
    std::os::unix::fs::symlink(env.path("real"), env.path("key")).unwrap();
    let src = env.fixture("example.mbox");
    let r = audited_sync(&env, src.to_str().unwrap(), "out");
    r.expect_code(2);
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
}
