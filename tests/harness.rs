//! The test harness itself: `require`'s run/skip/fail decision, the skip notice reaching the
//! terminal past libtest's capture, and CI requiring (and installing) every need.

mod common;

use std::process::Command;

use common::{Decision, Need, decide, require};

const FAIL_OWN: Decision = Decision::Fail { by_all: false };
const FAIL_ALL: Decision = Decision::Fail { by_all: true };

#[test]
fn a_need_that_is_met_always_runs() {
    for own in [None, Some(""), Some("0"), Some("1")] {
        for all in [None, Some(""), Some("0"), Some("1")] {
            assert_eq!(decide(true, own, all), Ok(Decision::Run), "own {own:?}, all {all:?}");
        }
    }
}

#[test]
fn an_unmet_need_skips_unless_required() {
    let cases = [
        (None, None, Decision::Skip),
        (Some(""), Some(""), Decision::Skip),
        (Some("0"), None, Decision::Skip),
        (None, Some("0"), Decision::Skip),
        (Some("1"), None, FAIL_OWN),
        (Some("1"), Some("0"), FAIL_OWN),
        (Some("1"), Some("1"), FAIL_OWN),
        (None, Some("1"), FAIL_ALL),
        (Some(""), Some("1"), FAIL_ALL),
        // A need's own 0 exempts it from ALL, for a machine that cannot have it.
        (Some("0"), Some("1"), Decision::Skip),
    ];
    for (own, all, want) in cases {
        assert_eq!(decide(false, own, all), Ok(want), "own {own:?}, all {all:?}");
    }
}

/// A misspelt setting must not read as "not required": CI would skip without a word.
#[test]
fn other_values_are_errors_even_when_the_need_is_met() {
    for bad in ["true", "yes", "2", " 1", "1 "] {
        for found in [true, false] {
            assert!(decide(found, Some(bad), None).is_err(), "own {bad:?}");
            assert!(decide(found, None, Some(bad)).is_err(), "all {bad:?}");
        }
    }
}

#[test]
fn every_need_has_its_own_variable_and_a_way_to_meet_it() {
    let mut vars: Vec<String> = Need::ALL.iter().map(|n| n.var()).collect();
    for (n, v) in Need::ALL.iter().zip(&vars) {
        assert!(v.starts_with("MAILMOVER_REQUIRE_") && v != "MAILMOVER_REQUIRE_ALL", "{n:?}: {v}");
        assert!(!n.how().is_empty() && !n.missing().is_empty(), "{n:?}");
    }
    vars.sort();
    vars.dedup();
    assert_eq!(vars.len(), Need::ALL.len(), "two needs share a variable");
}

/// CI must skip nothing, so it requires everything and installs every package a need names.
#[test]
fn ci_requires_every_need_and_installs_its_packages() {
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == "export MAILMOVER_REQUIRE_ALL=1"), ".ci/run does not require everything");
    let installed: Vec<&str> = ci
        .lines()
        .filter_map(|l| l.trim().strip_prefix("apt-get install "))
        .flat_map(|l| l.split_whitespace())
        .filter(|w| !w.starts_with('-') && !w.starts_with('>'))
        .collect();
    for n in Need::ALL {
        if let Some(pkgs) = n.how().strip_prefix("apt-get install -y ") {
            for p in pkgs.split_whitespace() {
                assert!(installed.contains(&p), "{n:?}: .ci/run does not install {p} (it installs {installed:?})");
            }
        }
    }
}

/// Does something only when run by the tests below, in a child with no doveadm on PATH.
#[test]
fn probe_requires_doveadm() {
    if std::env::var_os("MAILMOVER_HARNESS_PROBE").is_none() {
        return;
    }
    if require(Need::Doveadm) {
        panic!("doveadm was found on an empty PATH");
    }
}

/// This test binary running only `probe_requires_doveadm`, as `cargo test` would: output captured.
fn probe(env: &[(&str, &str)]) -> (bool, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "probe_requires_doveadm", "--test-threads", "1"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("MAILMOVER_REQUIRE_") {
            c.env_remove(k);
        }
    }
    c.env("MAILMOVER_HARNESS_PROBE", "1").env("PATH", "/nonexistent").envs(env.iter().copied());
    let out = c.output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), all)
}

#[test]
fn a_skip_shows_on_the_terminal_past_the_capture() {
    let (ok, out) = probe(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("test probe_requires_doveadm ... ok"), "{out}");
    assert!(
        out.contains(
            "SKIPPED probe_requires_doveadm: doveadm is not installed \
             (apt-get install -y dovecot-core; MAILMOVER_REQUIRE_DOVEADM=1 makes this a failure)"
        ),
        "{out}"
    );
}

#[test]
fn a_required_need_fails_naming_the_tool_and_its_install() {
    for (var, by) in [
        ("MAILMOVER_REQUIRE_DOVEADM", "MAILMOVER_REQUIRE_DOVEADM=1"),
        ("MAILMOVER_REQUIRE_ALL", "MAILMOVER_REQUIRE_ALL=1"),
    ] {
        let (ok, out) = probe(&[(var, "1")]);
        assert!(!ok, "{var}=1: {out}");
        assert!(
            out.contains(&format!(
                "probe_requires_doveadm: doveadm is not installed, and {by} requires it: apt-get install -y dovecot-core"
            )),
            "{var}=1: {out}"
        );
        assert!(!out.contains("SKIPPED"), "{var}=1: {out}");
    }
    let (ok, out) = probe(&[("MAILMOVER_REQUIRE_DOVEADM", "yes")]);
    assert!(!ok && out.contains("\"yes\" (use 1 or 0)"), "{out}");
}
