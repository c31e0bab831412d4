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
