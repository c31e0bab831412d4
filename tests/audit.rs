//! The audit log (`--audit-log`, `audit-verify`): a log verifies; a changed, removed or
//! reordered line, or a cut log, is rejected naming the right 1-based line; a missing or empty
//! key file is a usage error before any work.

mod common;

use common::*;

/// Runs a sync with an audit log; returns (env, log lines).
fn logged() -> (TestEnv, Vec<String>) {
    let env = TestEnv::new();
    env.write("key", b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
    let src = env.fixture("example.mbox");
    env.sync(src.to_str().unwrap(), "out", &["--audit-log", "audit.log", "--audit-key-file", "key"]).expect_code(0);
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
    env.write("key", b"ffff\n");
    assert_eq!(rejected_line(&audit_verify(&env)), 1);
}

#[test]
fn missing_or_empty_key_file_is_a_usage_error_before_any_work() {
    for key in [None, Some(&b""[..]), Some(&b"\n  \n"[..])] {
        let env = TestEnv::new();
        if let Some(k) = key {
            env.write("key", k);
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
