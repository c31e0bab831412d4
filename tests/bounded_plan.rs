//! The plan of a folder that already holds messages is made through sorted runs that go to
//! disk past `MAILMOVER_SORT_MEMORY` bytes. With a budget of one byte every run spills (each
//! source message, target message and decision goes through the disk and back): the result
//! must be the one the in-memory plan gives, message for message and count for count.

mod common;

use common::*;
use serde_json::Value;

const COUNTS: [&str; 9] = [
    "messages_source",
    "messages_target",
    "transferred",
    "skipped_existing",
    "flags_updated",
    "deleted_target",
    "duplicates_source",
    "vanished_source",
    "failed",
];

fn run(env: &TestEnv, budget: Option<&str>, args: &[&str]) -> Run {
    let mut c = env.cmd();
    if let Some(b) = budget {
        c.env("MAILMOVER_SORT_MEMORY", b);
    }
    let out = c.args(args).output().expect("run mailmover");
    let r = Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_ne!(r.code, 101, "panicked:\n{}", r.stderr);
    r
}

fn counts(r: &Run) -> Vec<(String, Value)> {
    let j = r.json();
    COUNTS.iter().map(|k| (k.to_string(), j.get(*k).cloned().unwrap_or(Value::Null))).collect()
}

/// What a Maildir tree holds, whatever the unique parts of its names: per folder, each
/// message's bytes, flags, keywords, new/ or cur/ and date.
fn contents(root: &std::path::Path) -> Vec<(String, String, String, Vec<String>, String, i64)> {
    let mut v: Vec<_> = read_maildir(root, Layout::MaildirPP)
        .into_iter()
        .map(|m| (m.folder.clone(), sha256(&m.bytes), m.flags.clone(), m.keywords.clone(), m.sub.clone(), m.mtime))
        .collect();
    v.sort();
    v
}

/// The lines of a record of copies after its header (the header names the folder's path).
fn record_lines(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("mailmover-copied")).unwrap_or_default();
    let mut v: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    v.sort();
    v
}

/// A source with every kind of state: flags, keywords, new/ messages, duplicates.
fn source(env: &TestEnv, n: usize) {
    env.write("src/dovecot-keywords", b"0 $Junk\n1 work\n");
    for i in 0..n {
        let body = message(&format!("m {}", i % (n - 7)), &format!("body {}\n", i % (n - 7)));
        let (sub, info) = match i % 5 {
            0 => ("new", String::new()),
            1 => ("cur", ":2,S".into()),
            2 => ("cur", ":2,FSa".into()),
            3 => ("cur", ":2,RSb".into()),
            _ => ("cur", ":2,".into()),
        };
        let p = env.write(&format!("src/{sub}/{}.M{i}P7.src{info}", 1_600_000_000 + i), &body);
        set_mtime(&p, 1_600_000_000 + i as i64);
    }
    restore_maildir_dirs(&env.path("src"));
}

/// Changes the source after a first sync: flags changed, messages gone, new ones.
fn change(env: &TestEnv, n: usize) {
    for i in (1..n).step_by(9) {
        let from = env.path(&format!("src/cur/{}.M{i}P7.src:2,S", 1_600_000_000 + i));
        if from.exists() {
            std::fs::rename(&from, from.with_file_name(format!("{}.M{i}P7.src:2,FRS", 1_600_000_000 + i))).unwrap();
        }
    }
    for i in (4..n).step_by(11) {
        let _ = std::fs::remove_file(env.path(&format!("src/cur/{}.M{i}P7.src:2,", 1_600_000_000 + i)));
    }
    for i in 0..25 {
        let p =
            env.write(&format!("src/new/{}.M{i}P8.later", 1_700_000_000 + i), &message(&format!("later {i}"), "x\n"));
        set_mtime(&p, 1_700_000_000 + i as i64);
    }
    // Dated differently in the source: the copy is re-dated.
    set_mtime(&env.path(&format!("src/cur/{}.M3P7.src:2,RSb", 1_600_000_003)), 1_650_000_000);
}

#[test]
fn a_plan_through_the_disk_is_the_plan_in_memory() {
    let env = TestEnv::new();
    let n = 240;
    source(&env, n);
    run(&env, None, &["sync", "maildir:src", "maildir:dst", "--json"]).expect_code(0);
    env.write("dst/new/1800000000.M1P1.delivered", &message("delivered after the switch", "d\n"));
    change(&env, n);
    copy_store(&env.path("dst"), &env.path("disk"));
    copy_store(&env.path("dst"), &env.path("mem"));

    // verify reads both sides through the same sorted runs: the same report either way.
    let v_disk = run(&env, Some("1"), &["verify", "maildir:src", "maildir:mem", "--json"]);
    let v_mem = run(&env, None, &["verify", "maildir:src", "maildir:mem", "--json"]);
    assert_eq!(v_disk.json(), v_mem.json());
    assert!(v_disk.json()["differences"].as_array().is_some_and(|d| d.len() > 30), "{}", v_disk.stdout);

    for args in [&["--dry-run"][..], &["--delete"][..]] {
        let on_disk = run(&env, Some("1"), &[&["sync", "maildir:src", "maildir:disk", "--json"][..], args].concat());
        let in_memory = run(&env, None, &[&["sync", "maildir:src", "maildir:mem", "--json"][..], args].concat());
        on_disk.expect_code(0);
        in_memory.expect_code(0);
        assert_eq!(counts(&on_disk), counts(&in_memory), "{args:?}");
    }
    let (disk, mem) = (contents(&env.path("disk")), contents(&env.path("mem")));
    assert_eq!(disk, mem);
    assert_eq!(record_lines(&env.path("disk")), record_lines(&env.path("mem")));
    assert!(disk.iter().any(|m| m.2 == "FRS"), "flags were updated");
    assert!(disk.iter().any(|m| m.5 == 1_650_000_000), "a copy was re-dated");
    assert!(read_maildir(&env.path("disk"), Layout::MaildirPP).iter().any(|m| m.name.contains("delivered")));

    // Settled: a re-run through the disk changes nothing, not even the cache.
    let cache = env.path("disk/mailmover-cache");
    let before = std::fs::metadata(&cache).map(|m| (std::os::unix::fs::MetadataExt::ino(&m), m.len())).unwrap();
    // The source looks touched: the unchanged-folder shortcut does not spare the reading.
    set_mtime(&env.path("src/cur"), 1_234_567_890);
    let again = run(&env, Some("1"), &["sync", "maildir:src", "maildir:disk", "--json"]);
    assert_eq!(again.n("skipped_existing"), again.n("messages_source"), "{}", again.stdout);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("flags_updated"), again.n("deleted_target")), (0, 0, 0));
    let after = std::fs::metadata(&cache).map(|m| (std::os::unix::fs::MetadataExt::ino(&m), m.len())).unwrap();
    assert_eq!(before, after, "the cache was rewritten by a run that changed nothing");
    run(&env, Some("1"), &["verify", "maildir:src", "maildir:disk"]).expect_code(0);
}

#[test]
fn an_mbox_source_planned_through_the_disk() {
    let env = TestEnv::new();
    let msgs: Vec<Vec<u8>> = (0..60).map(|i| message(&format!("mbox {}", i % 50), "From here\nbody\n")).collect();
    let entries: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  1 00:00:00 2024", m.as_slice())).collect();
    env.write("in.mbox", &make_mbox(&entries[..40]));
    run(&env, None, &["sync", "mbox:in.mbox", "maildir:dst", "--json"]).expect_code(0);
    env.write("in.mbox", &make_mbox(&entries));
    copy_store(&env.path("dst"), &env.path("mem"));
    let on_disk = run(&env, Some("1"), &["sync", "mbox:in.mbox", "maildir:dst", "--json"]);
    let in_memory = run(&env, None, &["sync", "mbox:in.mbox", "maildir:mem", "--json"]);
    on_disk.expect_code(0);
    assert_eq!(counts(&on_disk), counts(&in_memory));
    assert_eq!(on_disk.n("transferred"), 20);
    assert_eq!(contents(&env.path("dst")), contents(&env.path("mem")));
    set_mtime(&env.path("in.mbox"), 1_234_567_890);
    let again = run(&env, Some("1"), &["sync", "mbox:in.mbox", "maildir:dst", "--json"]);
    assert_eq!(again.n("skipped_existing"), 60, "{}", again.stdout);
    assert_eq!(again.n("transferred"), 0);
}

/// The messages of an mbox file in order: From_ line and raw bytes (headers included; the
/// UIDVALIDITY of `X-IMAPbase` is the second the file was written, left out).
fn mbox_contents(path: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let data = std::fs::read(path).unwrap_or_default();
    let validity = regex::bytes::Regex::new(r"(?m)^X-IMAPbase: [0-9]+ ").unwrap();
    read_mbox(&data, Variant::Mboxrd)
        .into_iter()
        .map(|m| (m.from_line, validity.replace(&m.raw, &b"X-IMAPbase: V "[..]).into_owned()))
        .collect()
}

#[test]
fn an_mbox_target_planned_through_the_disk() {
    let env = TestEnv::new();
    let n = 240;
    source(&env, n);
    run(&env, None, &["sync", "maildir:src", "mbox:dst.mbox", "--json"]).expect_code(0);
    // Delivered into the target after the switch: kept, and last in the file.
    let mut t = std::fs::read(env.path("dst.mbox")).unwrap();
    t.extend_from_slice(&make_mbox(&[("Tue Jan  2 00:00:00 2024", &message("delivered", "d\n"))]));
    env.write("dst.mbox", &t);
    change(&env, n);
    for name in ["disk.mbox", "mem.mbox"] {
        std::fs::copy(env.path("dst.mbox"), env.path(name)).unwrap();
    }

    let v_disk = run(&env, Some("1"), &["verify", "maildir:src", "mbox:mem.mbox", "--json"]);
    let v_mem = run(&env, None, &["verify", "maildir:src", "mbox:mem.mbox", "--json"]);
    assert_eq!(v_disk.json(), v_mem.json());
    assert!(v_disk.json()["differences"].as_array().is_some_and(|d| d.len() > 30), "{}", v_disk.stdout);

    for args in [&["--dry-run"][..], &["--mirror", "--max-delete", "100"][..]] {
        let on_disk = run(&env, Some("1"), &[&["sync", "maildir:src", "mbox:disk.mbox", "--json"][..], args].concat());
        let in_memory = run(&env, None, &[&["sync", "maildir:src", "mbox:mem.mbox", "--json"][..], args].concat());
        on_disk.expect_code(0);
        in_memory.expect_code(0);
        assert_eq!(counts(&on_disk), counts(&in_memory), "{args:?}");
        if args[0] == "--mirror" {
            assert!(on_disk.n("transferred") >= 25 && on_disk.n("flags_updated") > 0, "{}", on_disk.stdout);
            assert!(on_disk.n("deleted_target") > 0, "{}", on_disk.stdout);
        }
    }
    let (disk, mem) = (mbox_contents(&env.path("disk.mbox")), mbox_contents(&env.path("mem.mbox")));
    assert_eq!(disk.len(), mem.len());
    assert!(disk == mem, "the mboxes differ");
    assert!(!disk.iter().any(|(_, raw)| String::from_utf8_lossy(raw).contains("Subject: delivered")), "mirrored away");

    // Settled: a re-run through the disk copies, re-flags and deletes nothing.
    let again = run(&env, Some("1"), &["sync", "maildir:src", "mbox:disk.mbox", "--json", "--mirror"]);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("flags_updated"), again.n("deleted_target")), (0, 0, 0));
    run(&env, Some("1"), &["verify", "maildir:src", "mbox:disk.mbox"]).expect_code(0);

    // An mbox source into the mbox, through the disk: only what is new is appended.
    let msgs: Vec<Vec<u8>> = (0..30).map(|i| message(&format!("from an mbox {i}"), "From here\nbody\n")).collect();
    let entries: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  1 00:00:00 2024", m.as_slice())).collect();
    env.write("in.mbox", &make_mbox(&entries[..20]));
    run(&env, Some("1"), &["sync", "mbox:in.mbox", "mbox:both.mbox", "--json"]).expect_code(0);
    env.write("in.mbox", &make_mbox(&entries));
    let more = run(&env, Some("1"), &["sync", "mbox:in.mbox", "mbox:both.mbox", "--json"]);
    more.expect_code(0);
    assert_eq!((more.n("transferred"), more.n("skipped_existing")), (10, 20), "{}", more.stdout);
    assert_eq!(mbox_contents(&env.path("both.mbox")).len(), 30);
}
