//! `--identity headers`: a migration another tool began (mb2md, imapsync), or a run with the
//! other `--keep-mbox-headers`, continues without copying every message again; the content
//! identity says when a run looks like that and points to the option.

mod common;

use std::path::Path;

use common::*;

fn mail(id: Option<&str>, date: &str, body: &str, extra: &str) -> String {
    let mid = id.map(|i| format!("Message-ID: <{i}@example.com>\n")).unwrap_or_default();
    format!("{extra}From: a@example.com\nSubject: {body}\nDate: {date}\n{mid}\n{body}\n")
}

const D1: &str = "Mon, 2 Jan 2006 15:04:05 +0000";
const D2: &str = "Tue, 3 Jan 2006 10:00:00 +0100";

/// The From_ line date of every message here.
const FROM_DATE: i64 = 1136214245;

/// An mbox of five messages: 1 (read, with a line that mboxrd quotes), 2 and 3 (read), 4 (no
/// Message-ID) and 5 (the one the other tool never saw).
fn source_mbox(env: &TestEnv) -> String {
    let m1 = format!("Status: RO\n{}", mail(Some("one"), D1, "first\nFrom the start", ""));
    let m2 = mail(Some("two"), D2, "second", "Status: RO\n");
    let m3 = mail(Some("three"), D2, "third", "Status: RO\n");
    let m4 = mail(None, D1, "no id", "");
    let m5 = mail(Some("five"), D1, "fifth, new", "");
    let date = "Mon Jan  2 15:04:05 2006";
    let msgs: Vec<(&str, &[u8])> = [&m1, &m2, &m3, &m4, &m5].iter().map(|m| (date, m.as_bytes())).collect();
    env.write("src.mbox", &make_mbox(&msgs));
    "mbox:src.mbox".into()
}

/// A Maildir as another tool left it from messages 1–4: its own header fields, CRLF line
/// ends, the `From ` line still quoted, message 1 not marked read yet; dated as the source.
fn other_tools_copies(env: &TestEnv) -> Vec<(String, Vec<u8>)> {
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("dst/{s}"))).unwrap();
    }
    let crlf = |s: String| s.replace('\n', "\r\n").into_bytes();
    let files = vec![
        (
            "1136214245.mb2md1.host:2,",
            crlf(mail(Some("one"), D1, "first\n>From the start", "X-Mozilla-Status: 0000\n")),
        ),
        ("1136214246.mb2md2.host:2,S", crlf(mail(Some("two"), D2, "second", "X-Status: A\n"))),
        ("1136214247.mb2md3.host:2,S", mail(Some("three"), D2, "third", "X-Imported: yes\n").into_bytes()),
        ("1136214248.mb2md4.host:2,S", mail(None, D1, "no id", "X-Imported: yes\n").into_bytes()),
    ];
    for (name, data) in &files {
        set_mtime(&env.write(&format!("dst/cur/{name}"), data), FROM_DATE);
    }
    files.into_iter().map(|(n, d)| (n.to_string(), d)).collect()
}

fn cur_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The other tool's copies of 1–3 are taken as copies (1 re-flagged as read in place, its bytes
/// untouched); 4 has no Message-ID and other bytes, so it is copied, as is 5. A second run does
/// nothing; verify, given nothing, uses the identity the sync recorded.
#[test]
fn a_migration_another_tool_began_continues_without_duplicates() {
    let env = TestEnv::new();
    let src = source_mbox(&env);
    let theirs = other_tools_copies(&env);

    // By content, the run would copy all five, and says what the option is for.
    let r = env.sync(&src, "maildir:dst", &["--dry-run"]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 5);
    let warnings = r.json()["warnings"].to_string();
    assert!(warnings.contains("--identity headers") && warnings.contains("mb2md"), "{warnings}");

    let r = env.sync(&src, "maildir:dst", &["--identity", "headers", "--manifest", "m0.jsonl"]);
    r.expect_code(0);
    assert_eq!((r.n("transferred"), r.n("matched_by_headers")), (2, 3), "{}", r.stdout);
    assert_eq!(r.n("flags_updated"), 1);
    // The manifest's record of the re-flag names the digest of the file re-flagged.
    let manifest = std::fs::read_to_string(env.path("m0.jsonl")).unwrap();
    let flags: serde_json::Value = manifest
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["type"] == "flags")
        .unwrap_or_else(|| panic!("{manifest}"));
    let file = std::fs::read(env.root().join(flags["target"].as_str().unwrap())).unwrap();
    assert_eq!(flags["sha256"].as_str(), Some(sha256(&file).as_str()), "{flags}");
    assert!(!r.json()["warnings"].to_string().contains("--identity"), "{}", r.stdout);
    let names = cur_names(&env.path("dst/cur"));
    assert!(names.contains(&"1136214245.mb2md1.host:2,S".to_string()), "re-flagged in place: {names:?}");
    for (name, data) in &theirs {
        let now = env.path("dst/cur").join(name.replace("mb2md1.host:2,", "mb2md1.host:2,S"));
        assert_eq!(&std::fs::read(&now).unwrap(), data, "{name} kept byte for byte");
    }
    let inbox = inbox(&env.path("dst"));
    assert_eq!(inbox.len(), 6, "four of theirs and two copies");
    let bodies: Vec<String> = inbox.iter().map(|m| String::from_utf8_lossy(&m.bytes).into_owned()).collect();
    assert!(bodies.iter().any(|b| b.contains("fifth, new")));
    assert_eq!(bodies.iter().filter(|b| b.contains("no id")).count(), 2, "no Message-ID: content decides");

    let again = env.sync(&src, "maildir:dst", &["--identity", "headers", "--manifest", "m.jsonl"]);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("flags_updated")), (0, 0), "{}", again.stdout);
    // The manifest says which copies are the same message by headers, not by bytes.
    let manifest = std::fs::read_to_string(env.path("m.jsonl")).unwrap();
    let reasons: Vec<String> = manifest
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|r| r["reason"].as_str().map(str::to_string))
        .collect();
    let by_headers = reasons.iter().filter(|r| *r == "exists (headers)").count();
    assert_eq!((by_headers, reasons.len()), (3, 5), "{manifest}");

    let v = env.run(["verify", &src, "maildir:dst", "--json"]);
    v.expect_code(0);
    assert_eq!(v.json()["ok"], true, "{}", v.stdout);
    let v = env.run(["verify", &src, "maildir:dst", "--json", "--identity", "content"]);
    v.expect_code(1);
    assert_eq!(v.json()["missing_in_target"], 3, "{}", v.stdout);

    // Neither the unchanged-folder shortcut nor the folder's cache answers for content what
    // headers decided: by content, the three (one re-flagged) are other messages.
    let r = env.sync(&src, "maildir:dst", &["--dry-run", "--identity", "content"]);
    assert_eq!(r.n("transferred"), 3, "{}", r.stdout);
    let r = env.sync(&src, "maildir:dst", &["--identity", "content"]);
    assert_eq!(r.n("transferred"), 3, "{}", r.stdout);
}

/// A run with the other `--keep-mbox-headers` made different bytes of every message; by
/// headers it continues, by content it would copy everything again (and says so).
#[test]
fn a_run_with_the_other_keep_mbox_headers_continues() {
    let env = TestEnv::new();
    let src = source_mbox(&env);
    env.sync(&src, "maildir:dst", &[]).expect_code(0);
    let before = inbox(&env.path("dst"));
    let r = env.sync(&src, "maildir:dst", &["--keep-mbox-headers", "--dry-run"]);
    assert_eq!(r.n("transferred"), 3, "the three with a Status field: {}", r.stdout);
    let r = env.sync(&src, "maildir:dst", &["--keep-mbox-headers", "--identity", "headers"]);
    r.expect_code(0);
    assert_eq!((r.n("transferred"), r.n("matched_by_headers")), (0, 3), "{}", r.stdout);
    assert_eq!(inbox(&env.path("dst")), before, "nothing to do by headers");
}

/// `--mirror` by headers deletes what matches nothing, and keeps the copies matched by headers.
#[test]
fn mirror_keeps_what_headers_matched() {
    let env = TestEnv::new();
    let src = source_mbox(&env);
    other_tools_copies(&env);
    env.write("dst/cur/1136214249.other.host:2,S", mail(Some("gone"), D1, "deleted at the source", "").as_bytes());
    let r = env.sync(&src, "maildir:dst", &["--identity", "headers", "--mirror"]);
    r.expect_code(0);
    // The extra one and the other tool's copy of 4 (no Message-ID, other bytes) go.
    assert_eq!((r.n("deleted_target"), r.n("transferred")), (2, 2), "{}", r.stdout);
    let names = cur_names(&env.path("dst/cur"));
    assert!(!names.iter().any(|n| n.contains(".other.")), "{names:?}");
    for kept in ["mb2md1", "mb2md2", "mb2md3"] {
        assert!(names.iter().any(|n| n.contains(kept)), "{kept} kept: {names:?}");
    }
    assert_eq!(inbox(&env.path("dst")).len(), 5);
}

/// Into an mbox another tool wrote (its own header fields), from a Maildir: nothing is copied,
/// the file is left as it was; verify agrees.
#[test]
fn an_mbox_another_tool_wrote_is_continued() {
    let env = TestEnv::new();
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("src/{s}"))).unwrap();
    }
    set_mtime(&env.write("src/cur/1.a.host:2,S", mail(Some("two"), D2, "second", "").as_bytes()), FROM_DATE);
    set_mtime(&env.write("src/cur/2.a.host:2,S", mail(Some("three"), D2, "third", "").as_bytes()), FROM_DATE);
    let theirs = [
        mail(Some("two"), D2, "second", "X-Mozilla-Status: 0001\nStatus: RO\n"),
        mail(Some("three"), D2, "third", "X-Mozilla-Status: 0001\nStatus: RO\n"),
    ];
    let msgs: Vec<(&str, &[u8])> = theirs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_bytes())).collect();
    let target = env.write("out.mbox", &make_mbox(&msgs));
    let before = std::fs::read(&target).unwrap();
    let r = env.sync("maildir:src", "mbox:out.mbox", &["--dry-run"]);
    assert_eq!(r.n("transferred"), 2, "{}", r.stdout);
    let r = env.sync("maildir:src", "mbox:out.mbox", &["--identity", "headers"]);
    r.expect_code(0);
    assert_eq!((r.n("transferred"), r.n("matched_by_headers")), (0, 2), "{}", r.stdout);
    assert_eq!(std::fs::read(&target).unwrap(), before, "the mbox is left as it was");
    let v = env.run(["verify", "maildir:src", "mbox:out.mbox", "--json", "--identity", "headers"]);
    assert_eq!(v.json()["ok"], true, "{}", v.stdout);
}

/// A Maildir source read before is known from its cache (no bytes read): the keys of the
/// messages left over by content are read then, so the pairs are found all the same.
#[test]
fn source_messages_known_from_the_cache_are_read_for_their_keys() {
    let env = TestEnv::new();
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("src/{s}"))).unwrap();
    }
    for (i, id) in ["one", "two", "three"].iter().enumerate() {
        let p = env.write(&format!("src/cur/{i}.a.host:2,S"), mail(Some(id), D1, id, "").as_bytes());
        set_mtime(&p, FROM_DATE);
    }
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    assert!(env.path("dst/mailmover-source-cache").is_file());
    // Another tool's copies take the place of ours.
    for e in std::fs::read_dir(env.path("dst/cur")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (i, id) in ["one", "two", "three"].iter().enumerate() {
        let p = env.write(&format!("dst/cur/{i}.other.host:2,S"), mail(Some(id), D1, id, "X-Other: 1\n").as_bytes());
        set_mtime(&p, FROM_DATE);
    }
    let r = env.sync("maildir:src", "maildir:dst", &["--identity", "headers"]);
    r.expect_code(0);
    assert_eq!((r.n("transferred"), r.n("matched_by_headers")), (0, 3), "{}", r.stdout);
    assert_eq!(inbox(&env.path("dst")).len(), 3);
}

/// A catch-up run that copies much new mail into a folder whose messages all match is not
/// what the warning is for.
#[test]
fn no_warning_when_the_target_matches() {
    let env = TestEnv::new();
    let src = source_mbox(&env);
    let two = mail(Some("two"), D2, "second", "Status: RO\n");
    env.write("first.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", two.as_bytes())]));
    env.sync("mbox:first.mbox", "maildir:dst", &[]).expect_code(0);
    let r = env.sync(&src, "maildir:dst", &[]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 4);
    assert_eq!(r.json()["warnings"], serde_json::json!([]), "{}", r.stdout);
}

/// A message the source holds twice is one duplicate, whether or not one of the two was
/// matched by headers (into an mbox, which counts them as it plans). Forty other messages put
/// hashes between the pair's two, which the plan walks in order.
#[test]
fn a_duplicate_is_counted_once_beside_a_pair() {
    let env = TestEnv::new();
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("src/{s}"))).unwrap();
    }
    for name in ["1.a.host:2,S", "2.a.host:2,S"] {
        set_mtime(&env.write(&format!("src/cur/{name}"), mail(Some("two"), D2, "second", "").as_bytes()), FROM_DATE);
    }
    for i in 0..40 {
        let m = mail(Some(&format!("other{i}")), D2, &format!("other {i}"), "");
        set_mtime(&env.write(&format!("src/cur/{}.b.host:2,S", 10 + i), m.as_bytes()), FROM_DATE);
    }
    let theirs = mail(Some("two"), D2, "second", "X-Mozilla-Status: 0001\nStatus: RO\n");
    env.write("out.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", theirs.as_bytes())]));
    let r = env.sync("maildir:src", "mbox:out.mbox", &["--identity", "headers"]);
    r.expect_code(0);
    assert_eq!((r.n("transferred"), r.n("matched_by_headers"), r.n("duplicates_source")), (41, 1, 1), "{}", r.stdout);
}

/// Two messages with one Message-ID and Date and bodies of one length (one-time codes): the
/// other tool's copy of the second is that message's, never the first's, and the first is
/// copied.
#[test]
fn one_message_id_with_two_bodies_is_two_messages() {
    let env = TestEnv::new();
    let first = mail(Some("code"), D1, "Your code is 222222", "");
    let second = mail(Some("code"), D1, "Your code is 111111", "");
    let date = "Mon Jan  2 15:04:05 2006";
    env.write("src.mbox", &make_mbox(&[(date, first.as_bytes()), (date, second.as_bytes())]));
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("dst/{s}"))).unwrap();
    }
    let theirs = env.write(
        "dst/cur/1.other.host:2,",
        mail(Some("code"), D1, "Your code is 111111", "Return-Path: <a@b>\n").as_bytes(),
    );
    set_mtime(&theirs, FROM_DATE);
    let r = env.sync("mbox:src.mbox", "maildir:dst", &["--identity", "headers", "--mbox-tz", "UTC"]);
    r.expect_code(0);
    assert_eq!((r.n("transferred"), r.n("matched_by_headers")), (1, 1), "{}", r.stdout);
    let bodies: Vec<String> =
        inbox(&env.path("dst")).iter().map(|m| String::from_utf8_lossy(&m.bytes).into_owned()).collect();
    assert!(bodies.iter().any(|b| b.contains("222222")), "the first is copied: {bodies:?}");
    assert_eq!(bodies.iter().filter(|b| b.contains("111111")).count(), 1, "{bodies:?}");
}
