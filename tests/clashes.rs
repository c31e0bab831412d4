//! Source folders that map to one target folder are found before anything is written.

mod common;

use common::*;

/// An mbox directory whose folders `v1.0` and `v1_0` both become `.v1_0` in Maildir++ (a dot
/// is the level separator there), and an INBOX.
fn source(env: &TestEnv) {
    for (name, tag) in [("v1.0", "dot"), ("v1_0", "underscore"), ("INBOX", "inbox")] {
        let mut m = b"From a@example.org Sat Jan  1 00:00:00 2022\n".to_vec();
        m.extend_from_slice(&message(tag, "x\n"));
        m.extend_from_slice(b"\n");
        env.write(&format!("src/{name}"), &m);
    }
}

#[test]
fn clashing_folders_are_reported_and_neither_is_written() {
    let env = TestEnv::new();
    source(&env);
    // "v1.0" and "v1_0" both become .v1_0 in Maildir++.
    let r = env.sync("mbox:src", "maildir:dst", &[]);
    r.expect_code(1);
    let errs = r.errors();
    assert_eq!(errs.iter().filter(|(_, why)| why.contains("--merge-folders")).count(), 2, "{errs:?}");
    assert!(!env.path("dst/.v1_0").exists(), "a clashing folder was written");
    assert_eq!(read_maildir(&env.path("dst"), Layout::MaildirPP).len(), 1, "INBOX still synced");
    // --delete and --mirror delete nothing in a clashing folder (it is not synced at all).
    env.write("dst/.v1_0/cur/1700000000.M9P9.other:2,S", &message("delivered", "y\n"));
    env.write("dst/.v1_0/maildirfolder", b"");
    restore_maildir_dirs(&env.path("dst"));
    let r = env.sync("mbox:src", "maildir:dst", &["--mirror"]);
    r.expect_code(1);
    assert_eq!(r.n("deleted_target"), 0);
    // verify reports the same clash.
    let v = env.run(["verify", "mbox:src", "maildir:dst", "--json"]);
    assert_eq!(v.code, 1, "{}", v.stdout);
}

#[test]
fn merge_folders_merges_them_one_after_another() {
    let env = TestEnv::new();
    source(&env);
    let r = env.sync("mbox:src", "maildir:dst", &["--merge-folders"]);
    r.expect_code(0);
    let msgs = read_maildir(&env.path("dst"), Layout::MaildirPP);
    assert_eq!(msgs.iter().filter(|m| m.folder == "v1_0").count(), 2, "{msgs:?}");
    env.run(["verify", "mbox:src", "maildir:dst", "--merge-folders"]).expect_code(0);
    // --mirror in a merged folder removes neither source's mail.
    let r = env.sync("mbox:src", "maildir:dst", &["--merge-folders", "--mirror"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 0);
    assert_eq!(read_maildir(&env.path("dst"), Layout::MaildirPP).len(), 3);
}

#[test]
fn map_folder_into_an_existing_name_is_a_clash() {
    let env = TestEnv::new();
    source(&env);
    let r = env.sync("mbox:src", "maildir:dst", &["--map-folder", "s/^v1_0$/v1.0/", "--layout", "fs"]);
    assert!(r.code == 1 || r.code == 2, "{}", r.stderr);
    assert!(!env.path("dst/v1.0").exists());
}

/// A message both merged sources hold, with other flags in each: each source keeps its own
/// copy, and a second run changes nothing (no source re-flags the other's copy).
#[test]
fn merged_sources_with_one_message_in_common_settle() {
    let env = TestEnv::new();
    let m = b"From a@b Mon Jan  2 15:04:05 2006\nSubject: same\nMessage-ID: <same@x>\n";
    env.write("src/v1.0", &[&m[..], b"Status: RO\n\nsame body\n\n"].concat());
    env.write("src/v1_0", &[&m[..], b"\nsame body\n\n"].concat());
    let first = env.sync("mbox:src", "maildir:dst", &["--merge-folders"]);
    first.expect_code(0);
    assert_eq!(first.n("transferred"), 2, "{}", first.stdout);
    for _ in 0..2 {
        let again = env.sync("mbox:src", "maildir:dst", &["--merge-folders"]);
        again.expect_code(0);
        assert_eq!((again.n("transferred"), again.n("flags_updated")), (0, 0), "{}", again.stdout);
    }
    assert_eq!(read_maildir(&env.path("dst"), Layout::MaildirPP).len(), 2);
}
