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

/// The reasons of a `--json` run's warnings about its options (kind `usage`; the fixture
/// account has warnings of its own).
fn warned(r: &Run) -> Vec<String> {
    let j = r.json();
    let w = j["warnings"].as_array().unwrap_or_else(|| panic!("no warnings list in {j}"));
    w.iter().filter(|p| p["kind"] == "usage").map(|p| p["reason"].as_str().unwrap().to_string()).collect()
}

/// Whether one warning starts with each of `opts` (and says it is ignored or renamed nothing).
#[track_caller]
fn warns_of(r: &Run, opts: &[&str]) {
    let w = warned(r);
    for o in opts {
        assert!(w.iter().any(|x| x.starts_with(o)), "no warning about {o}: {w:#?}");
    }
}

/// The fixture account (fixtures/cpanel, every mailbox a Maildir), copied as `cp -a` does.
fn cpanel_account(env: &TestEnv) -> (String, String) {
    let st = std::process::Command::new("cp").arg("-a").arg(fixtures().join("cpanel")).arg(env.path("acc")).status();
    assert!(st.unwrap().success());
    restore_maildir_dirs(&env.path("acc"));
    ("cpanel:acc/home/acct".into(), env.path("acc/etc").display().to_string())
}

/// The options of cPanel accounts given with two plain stores each warn (in the summary on
/// stderr, with -q too, and in --json), and the run goes on without them.
#[test]
fn cpanel_options_with_plain_stores_warn() {
    let env = TestEnv::new();
    maildir_of(&env, "src", &[10]);
    env.write("map.csv", b"old.example,new.example\n");
    let opts = [
        "--map-domain",
        "old.example=new.example",
        "--map-user",
        "a=b",
        "--map-file",
        "map.csv",
        "--source-etc",
        "/srv/etc",
        "--target-etc",
        "/srv/new-etc",
        "--mailbox",
        "a@old.example",
        "--overwrite-metadata",
    ];
    let r = env.sync("maildir:src", "maildir:dst", &opts);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 1);
    warns_of(
        &r,
        &[
            "--map-domain old.example=new.example: for cPanel accounts",
            "--map-user a=b: for cPanel accounts",
            "--map-file map.csv: for cPanel accounts",
            "--source-etc /srv/etc: for cPanel accounts",
            "--target-etc /srv/new-etc: for cPanel accounts",
            "--mailbox a@old.example: for cPanel accounts",
            "--overwrite-metadata: for cPanel accounts",
        ],
    );
    let mut quiet = vec!["sync", "maildir:src", "maildir:quiet", "-q"];
    quiet.extend_from_slice(&opts);
    let q = env.run(quiet);
    q.expect_code(0);
    assert!(q.stderr.contains("warning: src: --mailbox a@old.example: for cPanel accounts"), "{}", q.stderr);
    assert!(warned(&env.sync("maildir:src", "maildir:plain", &[])).is_empty());

    // One mailbox out of an account: nothing renames or carries account files there.
    let (acc, etc) = cpanel_account(&env);
    let args = ["--mailbox", "info@example.com", "--map-domain", "example.com=x.example", "--source-etc", &etc];
    let r = env.sync(&acc, "maildir:export", &args);
    r.expect_code(0);
    warns_of(
        &r,
        &[
            "--map-domain example.com=x.example: renames mailboxes of a cPanel target",
            &format!("--source-etc {etc}: account files go only from a cPanel account"),
        ],
    );
    assert!(!warned(&r).iter().any(|w| w.starts_with("--mailbox")), "{:?}", warned(&r));
}

/// Into or within cPanel accounts, a rename of a domain or user the source does not have
/// warns; one that renames a mailbox does not.
#[test]
fn renames_of_what_the_source_lacks_warn() {
    let env = TestEnv::new();
    let (acc, etc) = cpanel_account(&env);
    let args = [
        "--source-etc",
        &etc,
        "--target-etc",
        "new-etc",
        "--map-domain",
        "example.org=example.net",
        "--map-domain",
        "nosuch.example=x.example",
        "--map-user",
        "ghost@example.com=g@example.com",
        "--map-user",
        "nobody=somebody",
        "--map-user",
        "sales=selling",
    ];
    let r = env.sync(&acc, "cpanel:new", &args);
    r.expect_code(0);
    warns_of(
        &r,
        &[
            "--map-domain nosuch.example=x.example: the source account has no domain nosuch.example (its domains: ",
            "--map-user ghost@example.com=g@example.com: the source account has no address ghost@example.com",
            "--map-user nobody=somebody: no address of the source account has the local part nobody",
        ],
    );
    assert_eq!(warned(&r).len(), 3, "{:#?}", warned(&r));
    assert!(env.path("new/mail/example.net/bob/cur").is_dir() && env.path("new/mail/example.com/selling").is_dir());

    // A plain store into one mailbox: the renames apply to its address only.
    maildir_of(&env, "md", &[10]);
    let args = ["--mailbox", "ann@example.com", "--map-domain", "example.com=new.example", "--map-user", "bo=ann"];
    let r = env.sync("maildir:md", "cpanel:imported", &args);
    r.expect_code(0);
    warns_of(&r, &["--map-user bo=ann: renames only the --mailbox address here, ann@example.com"]);
    assert_eq!(warned(&r).len(), 1, "{:#?}", warned(&r));
    assert!(env.path("imported/mail/new.example/ann/cur").is_dir());
}

/// A --map-folder rule that matches none of the folders synced warns, also when the folder
/// it matches is not selected.
#[test]
fn folder_renames_that_match_nothing_warn() {
    let env = TestEnv::new();
    maildir_of(&env, "src", &[10]);
    maildir_of(&env, "src/.Archive", &[10]);
    let r = env.sync("maildir:src", "maildir:a", &["--map-folder", "s/^Archive$/Old/", "--map-folder", "s/^Nope/X/"]);
    r.expect_code(0);
    assert_eq!(warned(&r), ["--map-folder s/^Nope/X/: matches none of the folders synced; it renamed nothing"]);
    assert!(env.path("a/.Old/cur").is_dir());
    let r = env.sync("maildir:src", "maildir:b", &["--folder", "INBOX", "--map-folder", "s/^Archive$/Old/"]);
    warns_of(&r, &["--map-folder s/^Archive$/Old/: matches none of the folders synced"]);
}

/// mbox options that cannot apply warn: --mbox-format into a Maildir (or a cPanel account),
/// the reading options of mbox sources with a Maildir source or an account without mbox
/// mailboxes. Where they apply they do not.
#[test]
fn mbox_options_that_cannot_apply_warn() {
    let env = TestEnv::new();
    maildir_of(&env, "md", &[10]);
    let reading = ["--mbox-variant", "mboxo", "--mbox-tz", "UTC", "--keep-mbox-headers"];
    let mut args = vec!["--mbox-format", "mboxrd"];
    args.extend_from_slice(&reading);
    let r = env.sync("maildir:md", "maildir:out", &args);
    r.expect_code(0);
    warns_of(
        &r,
        &[
            "--mbox-format mboxrd: for an mbox target, and this target is a Maildir",
            "--mbox-variant: for reading mbox sources, and this source is a Maildir",
            "--mbox-tz: for reading mbox sources",
            "--keep-mbox-headers: for reading mbox sources",
        ],
    );
    assert_eq!(warned(&r).len(), 4);
    let r = env.sync("maildir:md", "mbox:out.mbox", &["--mbox-format", "mboxrd"]);
    assert!(warned(&r).is_empty(), "{:?}", warned(&r));
    env.write("in.mbox", b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n\n");
    let r = env.sync("mbox:in.mbox", "maildir:from-mbox", &reading);
    r.expect_code(0);
    assert!(warned(&r).is_empty(), "{:?}", warned(&r));

    let (acc, etc) = cpanel_account(&env);
    let r = env.sync(
        &acc,
        "cpanel:new",
        &["--source-etc", &etc, "--target-etc", "e", "--mbox-tz", "UTC", "--mbox-format", "dovecot"],
    );
    r.expect_code(0);
    warns_of(
        &r,
        &[
            "--mbox-tz: for reading mbox sources, and every mailbox of this account is a Maildir",
            "--mbox-format dovecot: for an mbox target, and a cPanel account's mailboxes are Maildirs",
        ],
    );
}
