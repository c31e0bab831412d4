//! Issue 7's bad-input matrix and hostile targets, each case through `sync` and `inspect`:
//! no panic, no hang, exit 0 or 1, every good message converted, every problem listed with its
//! path; and nothing ever written through a symlink planted in a target.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Need, require};
use serde_json::Value;

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("mailmover")
}

struct Run {
    code: i32,
    json: Value,
    stderr: String,
}

/// Runs the binary with a time limit (a hang is a failure, not a stuck test run).
fn run_as(args: &[&str], uid: Option<u32>) -> Run {
    let mut cmd = if let Some(u) = uid {
        let mut c = Command::new("setpriv");
        c.args([&format!("--reuid={u}"), &format!("--regid={u}"), "--clear-groups"]).arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let mut child = cmd
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1 || code == 2,
        "{args:?} exited {code} (panic or signal): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        code,
        json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Run {
    run_as(args, None)
}

fn msg(tag: &str, i: usize) -> Vec<u8> {
    format!("From: a@example.com\nSubject: {tag} {i}\nMessage-ID: <{tag}.{i}@example.com>\n\nbody {tag} {i}\n")
        .into_bytes()
}

fn mbox_entry(i: usize, tag: &str) -> Vec<u8> {
    let mut v = b"From a@example.com Mon Jan  2 15:04:05 2006\n".to_vec();
    v.extend(msg(tag, i));
    v.push(b'\n');
    v
}

fn maildir(root: &Path) {
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(s)).unwrap();
    }
}

/// Messages written into a Maildir target tree, all folders.
fn written(root: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).into_iter().flatten() {
        let p = e.path();
        let in_msg_dir = p.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "cur" || n == "new");
        if in_msg_dir && e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with('.') {
            out.push(std::fs::read(p).unwrap());
        }
    }
    out
}

fn names_path(v: &Value, key: &str, needle: &str) -> bool {
    v[key].as_array().is_some_and(|a| a.iter().any(|e| e["path"].as_str().is_some_and(|p| p.contains(needle))))
}

/// One matrix case: a source built in `dir`, the good messages it holds, and the path fragments
/// that must be reported.
struct Case {
    src: String,
    good: Vec<Vec<u8>>,
    report: Vec<String>,
}

fn check(name: &str, dir: &Path, c: Case) {
    let out = dir.join("out");
    let r = run(&["sync", &c.src, &format!("maildir:{}", out.display()), "--json", "-q"]);
    let want = if c.report.is_empty() { 0 } else { 1 };
    assert_eq!(r.code, want, "{name}: sync exit code: {}", r.stderr);
    let got = written(&out);
    for g in &c.good {
        assert!(got.contains(g), "{name}: a good message was not converted");
    }
    for frag in &c.report {
        assert!(names_path(&r.json, "errors", frag), "{name}: sync errors do not name {frag}: {}", r.json["errors"]);
    }
    let i = run(&["inspect", "--json", &c.src]);
    assert_eq!(i.code, want, "{name}: inspect exit code: {}", i.stderr);
    for frag in &c.report {
        assert!(
            names_path(&i.json, "problems", frag),
            "{name}: inspect problems do not name {frag}: {}",
            i.json["problems"]
        );
    }
}

#[test]
fn random_megabyte_is_rejected_everywhere() {
    let t = tempfile::tempdir().unwrap();
    let mut x = 0x9E3779B97F4A7C15u64;
    let data: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let d = t.path().join("mail");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("Random"), &data).unwrap();
    std::fs::write(d.join("INBOX"), mbox_entry(1, "ok")).unwrap();
    check(
        "1 MB random",
        t.path(),
        Case { src: format!("mbox:{}", d.display()), good: vec![msg("ok", 1)], report: vec!["Random".into()] },
    );
}

#[test]
fn impossible_from_date_and_no_from_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("mail");
    std::fs::create_dir(&d).unwrap();
    let mut m = b"From a@b Mon Feb 31 25:61:00 2006\n".to_vec();
    m.extend(msg("baddate", 1));
    m.push(b'\n');
    m.extend(mbox_entry(2, "baddate"));
    std::fs::write(d.join("INBOX"), &m).unwrap();
    std::fs::write(d.join("NoFrom"), msg("nofrom", 1)).unwrap();
    // The first message keeps its bytes and takes its date from elsewhere; the file without
    // any From_ line is not an mbox.
    check(
        "impossible date",
        t.path(),
        Case {
            src: format!("mbox:{}", d.display()),
            good: vec![msg("baddate", 1), msg("baddate", 2)],
            report: vec!["NoFrom".into()],
        },
    );
}

#[test]
fn fifty_megabyte_message_and_a_hundred_thousand_tiny_ones() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("mail");
    std::fs::create_dir(&d).unwrap();
    let mut big = b"From: a@example.com\nSubject: big\n\n".to_vec();
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\n";
    while big.len() < 50 << 20 {
        big.extend_from_slice(line);
    }
    let mut m = b"From a@b Mon Jan  2 15:04:05 2006\n".to_vec();
    m.extend(&big);
    m.push(b'\n');
    std::fs::write(d.join("Big"), &m).unwrap();
    let mut tiny = Vec::with_capacity(100_000 * 60);
    for i in 0..100_000 {
        tiny.extend_from_slice(format!("From a@b Mon Jan  2 15:04:05 2006\nSubject: t{i}\n\nx\n\n").as_bytes());
    }
    std::fs::write(d.join("Tiny"), &tiny).unwrap();
    let out = t.path().join("out");
    let r = run(&[
        "sync",
        &format!("mbox:{}", d.display()),
        &format!("maildir:{}", out.display()),
        "--json",
        "-q",
        "--no-fsync",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["transferred"], 100_001);
    assert_eq!(r.json["biggest_message"], big.len() as u64);
    let i = run(&["inspect", "--json", &format!("mbox:{}", d.display())]);
    assert_eq!(i.code, 0);
    let counts: Vec<u64> =
        i.json["folders"].as_array().unwrap().iter().map(|f| f["messages"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![1, 100_000]);
}

#[test]
fn maildir_names_without_info_with_unknown_letters_and_twice() {
    let t = tempfile::tempdir().unwrap();
    let s = t.path().join("md");
    maildir(&s);
    std::fs::write(s.join("cur/1700000001.M1P1.noinfo"), msg("noinfo", 1)).unwrap();
    std::fs::write(s.join("cur/1700000002.M2P2.odd:2,SZq%!9"), msg("odd", 1)).unwrap();
    std::fs::write(s.join("new/1700000003.M3P3.twice"), msg("twice", 1)).unwrap();
    std::fs::write(s.join("cur/1700000003.M3P3.twice:2,S"), msg("twice", 2)).unwrap();
    let c = Case {
        src: format!("maildir:{}", s.display()),
        good: vec![msg("noinfo", 1), msg("odd", 1), msg("twice", 1), msg("twice", 2)],
        report: vec![],
    };
    check("maildir names", t.path(), c);
    // The unknown uppercase letter is kept; the name is the same identity in new/ and cur/, but
    // both messages arrive under new unique names.
    let names: Vec<String> = walkdir::WalkDir::new(t.path().join("out/cur"))
        .into_iter()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(":2,SZq")), "{names:?}");
}

#[test]
fn hostile_folder_names_are_reported_or_kept_inside() {
    for (label, dir) in [
        ("dots", "..."),
        ("dots4", "...."),
        ("utf7-slash", ".&AC8-"),
        ("control", ".bad\u{1}name"),
        ("dotdot-level", ".a..b"),
    ] {
        for layout in ["maildir++", "fs"] {
            let t = tempfile::tempdir().unwrap();
            let s = t.path().join("md");
            maildir(&s);
            std::fs::write(s.join("cur/1.M1P1.h:2,S"), msg("inbox", 1)).unwrap();
            maildir(&s.join(dir));
            std::fs::write(s.join(dir).join("cur/2.M2P2.h:2,S"), msg(label, 1)).unwrap();
            let out = t.path().join("out");
            let r = run(&[
                "sync",
                &format!("maildir:{}", s.display()),
                &format!("maildir:{}", out.display()),
                "--json",
                "-q",
                "--layout",
                layout,
            ]);
            assert!(r.code == 0 || r.code == 1, "{label} {layout}: {}", r.stderr);
            let got = written(&out);
            assert!(got.contains(&msg("inbox", 1)), "{label} {layout}: INBOX not converted");
            let converted = got.contains(&msg(label, 1));
            let reported = names_path(&r.json, "errors", dir.trim_start_matches('.'));
            assert!(converted || reported, "{label} {layout}: message neither converted nor reported: {}", r.json);
            // Nothing outside the target: every written path is below `out`.
            for e in walkdir::WalkDir::new(t.path()).into_iter().flatten() {
                let p = e.path();
                assert!(
                    p.starts_with(&s) || p.starts_with(&out) || p == t.path(),
                    "{label} {layout}: {} written outside",
                    p.display()
                );
            }
            let i = run(&["inspect", "--json", &format!("maildir:{}", s.display())]);
            assert!(i.code == 0 || i.code == 1);
        }
    }
}

#[test]
fn unreadable_file_is_reported_when_run_as_another_user() {
    let t = tempfile::tempdir().unwrap();
    let root_run = nix::unistd::geteuid().is_root();
    // Root reads every file: the binary has to drop to another user for this case.
    if root_run && !require(Need::Setpriv) {
        return;
    }
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = t.path().join("md");
    maildir(&s);
    std::fs::write(s.join("cur/1.M1P1.h:2,S"), msg("readable", 1)).unwrap();
    std::fs::write(s.join("cur/2.M2P2.h:2,S"), msg("secret", 1)).unwrap();
    std::fs::set_permissions(s.join("cur/2.M2P2.h:2,S"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let uid = if root_run {
        for e in walkdir::WalkDir::new(&out).into_iter().flatten() {
            std::os::unix::fs::lchown(e.path(), Some(65534), Some(65534)).unwrap();
        }
        Some(65534)
    } else {
        None
    };
    let src = format!("maildir:{}", s.display());
    let r = run_as(&["sync", &src, &format!("maildir:{}", out.display()), "--json", "-q"], uid);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(names_path(&r.json, "errors", "2.M2P2.h"), "{}", r.json);
    assert!(written(&out).contains(&msg("readable", 1)));
    let i = run_as(&["inspect", "--json", &src], uid);
    assert_eq!(i.code, 1);
    assert!(names_path(&i.json, "problems", "2.M2P2.h"), "{}", i.json);
}

/// Hostile targets: cur/, new/, tmp/ or a folder directory that is a symlink, or a folder name
/// planted as a symlink: nothing is written through it, the folder is reported.
#[test]
fn symlinks_planted_in_the_target_are_never_written_through() {
    for victim in ["cur", "new", "tmp", ".Sent", ".Sent/cur"] {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().join("md");
        maildir(&s);
        maildir(&s.join(".Sent"));
        std::fs::write(s.join("new/1.M1P1.h"), msg("inbox", 1)).unwrap();
        std::fs::write(s.join("cur/2.M2P2.h:2,S"), msg("inbox", 2)).unwrap();
        std::fs::write(s.join(".Sent/cur/3.M3P3.h:2,S"), msg("sent", 1)).unwrap();
        let out = t.path().join("out");
        maildir(&out);
        let elsewhere = t.path().join("elsewhere");
        maildir(&elsewhere);
        let planted = out.join(victim);
        if let Some(p) = planted.parent() {
            std::fs::create_dir_all(p).unwrap();
        }
        if victim.starts_with(".Sent/") {
            maildir(&out.join(".Sent"));
            std::fs::remove_dir(&planted).unwrap();
        } else if planted.exists() {
            std::fs::remove_dir(&planted).unwrap();
        }
        let target_of_link = if victim.contains("cur") || victim.contains("new") || victim.contains("tmp") {
            elsewhere.join("cur")
        } else {
            elsewhere.clone()
        };
        std::os::unix::fs::symlink(&target_of_link, &planted).unwrap();
        let r =
            run(&["sync", &format!("maildir:{}", s.display()), &format!("maildir:{}", out.display()), "--json", "-q"]);
        assert_eq!(r.code, 1, "{victim}: {}", r.stderr);
        assert!(r.json["errors"].to_string().contains("symlink"), "{victim}: {}", r.json["errors"]);
        assert!(written(&elsewhere).is_empty(), "{victim}: a message was written through the symlink");
        assert_eq!(std::fs::read_dir(elsewhere.join("tmp")).unwrap().count(), 0, "{victim}: tmp/ behind the link used");
        assert!(
            std::fs::symlink_metadata(&planted).unwrap().file_type().is_symlink(),
            "{victim}: the link was replaced"
        );
    }
}
