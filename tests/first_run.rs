//! The rough edges a first run hits (issue 21, item 8): `~` in a prefixed path, a Maildir that
//! lost a directory, the help naming every kind of store.

mod common;

use common::*;

#[test]
fn a_tilde_after_the_kind_is_the_home_directory() {
    let env = TestEnv::new();
    env.write("Mail/INBOX", b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n\n");
    let r =
        env.cmd().env("HOME", env.root()).args(["sync", "mbox:~/Mail", "maildir:~/out", "--json"]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(read_maildir(&env.path("out"), Layout::MaildirPP).len(), 1);
    assert!(!env.path("~").exists(), "no directory named ~");
}

#[test]
fn a_maildir_that_lost_a_directory_is_named_with_a_hint() {
    let env = TestEnv::new();
    env.write("md/cur/1.a:2,S", &message("x", "x\n"));
    std::fs::create_dir_all(env.path("md/tmp")).unwrap();
    for cmd in ["sync", "inspect"] {
        let args: Vec<&str> = if cmd == "sync" { vec!["sync", "md", "out"] } else { vec!["inspect", "md"] };
        let r = env.run(args);
        r.expect_code(2);
        assert!(r.stderr.contains("looks like a Maildir without its new/ directory"), "{}", r.stderr);
        assert!(r.stderr.contains("mkdir md/new") && r.stderr.contains("maildir:md"), "{}", r.stderr);
        assert!(!r.stderr.contains("not an mbox"), "{}", r.stderr);
    }
    // Named, it is read as the Maildir it is.
    env.sync("maildir:md", "out", &[]).expect_code(0);
}

#[test]
fn the_help_names_every_kind_of_store() {
    let env = TestEnv::new();
    let top = env.run(["--help"]);
    let sync = env.run(["sync", "--help"]);
    for text in [&top.stdout, &sync.stdout] {
        for kind in ["mbox:", "maildir:", "cpanel:"] {
            assert!(text.contains(kind), "{kind} missing from:\n{text}");
        }
    }
    let man =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man/mailmover.1")).unwrap();
    assert!(man.contains("cpanel:"), "the man page names cpanel:");
}

/// A Maildir of `sizes.len()` messages in INBOX, each padded to about that many bytes.
fn maildir_of(env: &TestEnv, dir: &str, sizes: &[usize]) {
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("{dir}/{d}"))).unwrap();
    }
    for (i, n) in sizes.iter().enumerate() {
        env.write(&format!("{dir}/cur/{i}.m{i}:2,S"), &message(&format!("m{i}"), &"x".repeat(*n)));
    }
}

/// `inspect` says "1 message" and "2 messages", and sizes past a KiB in units with the exact
/// count; its JSON keeps plain numbers.
#[test]
fn inspect_counts_in_words_and_sizes_in_units() {
    let env = TestEnv::new();
    maildir_of(&env, "one", &[10]);
    let r = env.run(["inspect", "one"]);
    r.expect_code(0);
    let first = r.stdout.lines().next().unwrap();
    assert!(first.ends_with(": 1 folder, 1 message, 104 bytes"), "{first}");
    assert!(r.stdout.lines().nth(1).unwrap().contains(" 1 message "), "{}", r.stdout);

    maildir_of(&env, "two", &[1000, 2000]);
    let r = env.run(["inspect", "two"]);
    let first = r.stdout.lines().next().unwrap();
    assert!(first.ends_with(": 1 folder, 2 messages, 3.1 KiB (3,188 bytes)"), "{first}");
    assert!(r.stdout.contains(" 2 messages ") && !r.stdout.contains("message(s)"), "{}", r.stdout);
    let json = env.run(["inspect", "two", "--json"]).json();
    assert_eq!((json["messages"].as_u64(), json["bytes"].as_u64()), (Some(2), Some(3188)));
}

/// The sync summary gives sizes in units with the exact count and counts its problems in words;
/// `--json` keeps the plain numbers.
#[test]
fn the_summary_gives_readable_sizes_and_plurals() {
    let env = TestEnv::new();
    maildir_of(&env, "src", &[1000, 2000]);
    let r = env.run(["sync", "maildir:src", "maildir:dst"]);
    r.expect_code(0);
    assert!(r.stderr.contains("  bytes transferred ..... 3.1 KiB (3,188 bytes)\n"), "{}", r.stderr);
    assert!(r.stderr.contains("  biggest message ....... 2.0 KiB (2,094 bytes)\n"), "{}", r.stderr);
    let json = env.sync("maildir:src", "maildir:again", &[]).json();
    assert_eq!((json["bytes_transferred"].as_u64(), json["biggest_message"].as_u64()), (Some(3188), Some(2094)));

    env.write("src/cur/9.bad:2,S", b"");
    let r = env.run(["sync", "maildir:src", "maildir:dst"]);
    r.expect_code(1);
    assert!(r.stderr.trim_end().ends_with("The run is NOT complete: 1 problem above."), "{}", r.stderr);
}

/// `report` over a batch's reports: the bytes in units, and one row is "the one row".
#[test]
fn report_gives_readable_sizes_and_plurals() {
    let env = TestEnv::new();
    maildir_of(&env, "a", &[2000]);
    env.write("rows.csv", b"source,target\nmaildir:a,maildir:b\n");
    env.run(["batch", "rows.csv", "--report-dir", "r"]).expect_code(0);
    let r = env.run(["report", "r"]);
    r.expect_code(0);
    assert!(r.stdout.contains("bytes transferred ..... 2.0 KiB (2,094 bytes)\n"), "{}", r.stdout);
    assert!(r.stdout.trim_end().ends_with("The one row is complete."), "{}", r.stdout);
    let json = env.run(["report", "r", "--json"]).json();
    assert_eq!(json["totals"]["bytes_transferred"].as_u64(), Some(2094));
}
