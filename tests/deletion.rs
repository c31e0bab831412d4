//! `--delete`, `--mirror` and `--max-delete`: what may be removed from a target, and when
//! nothing may.

mod common;

use common::*;

/// A Maildir source of `n` messages in INBOX and, with `sub`, `n` more in `.Work`.
fn source(env: &TestEnv, n: usize, sub: bool) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for i in 0..n {
        paths.push(
            env.write(&format!("src/cur/{}.M{i}P1.h:2,S", 1_600_000_000 + i), &message(&format!("in {i}"), "x\n")),
        );
        if sub {
            paths.push(env.write(
                &format!("src/.Work/cur/{}.M{i}P1.h:2,S", 1_600_000_000 + i),
                &message(&format!("work {i}"), "y\n"),
            ));
        }
    }
    restore_maildir_dirs(&env.path("src"));
    paths
}

fn count(env: &TestEnv, dst: &str) -> usize {
    read_maildir(&env.path(dst), Layout::MaildirPP).len()
}

#[test]
fn delete_removes_only_what_it_copied_and_mirror_the_rest() {
    let env = TestEnv::new();
    let paths = source(&env, 4, false);
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    let delivered = env.write("dst/new/1700000000.M1P1.newserver", &message("after the switch", "z\n"));
    std::fs::remove_file(&paths[0]).unwrap();
    let r = env.sync("maildir:src", "maildir:dst", &["--delete"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 1);
    assert!(delivered.exists(), "--delete removed mail delivered to the target");
    assert_eq!(count(&env, "dst"), 4);
    let r = env.sync("maildir:src", "maildir:dst", &["--mirror"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 1);
    assert!(!delivered.exists());
    assert_eq!(count(&env, "dst"), 3);
}

#[test]
fn delete_on_an_mbox_target_deletes_nothing_and_mirror_does() {
    let env = TestEnv::new();
    let paths = source(&env, 3, false);
    env.sync("maildir:src", "mbox:out.mbox", &[]).expect_code(0);
    let mut data = std::fs::read(env.path("out.mbox")).unwrap();
    data.extend_from_slice(b"From other@example.org Sat Jan  1 00:00:00 2022\n");
    data.extend_from_slice(&message("delivered locally", "w\n"));
    data.extend_from_slice(b"\n");
    std::fs::write(env.path("out.mbox"), &data).unwrap();
    std::fs::remove_file(&paths[1]).unwrap();
    // No record beside an mbox: --delete cannot tell copies from other mail, deletes nothing.
    let r = env.sync("maildir:src", "mbox:out.mbox", &["--delete"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 0);
    assert!(r.stderr.contains("mailmover-copied"), "{}", r.stderr);
    let r = env.sync("maildir:src", "mbox:out.mbox", &["--mirror"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 2);
    let text = std::fs::read(env.path("out.mbox")).unwrap();
    assert!(!String::from_utf8_lossy(&text).contains("delivered locally"));
    assert!(!String::from_utf8_lossy(&text).contains("Subject: in 1\n"));
}

#[test]
fn without_a_record_delete_deletes_nothing_and_says_so() {
    let env = TestEnv::new();
    let paths = source(&env, 3, false);
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    std::fs::remove_file(env.path("dst/mailmover-copied")).unwrap();
    std::fs::remove_file(&paths[0]).unwrap();
    let r = env.sync("maildir:src", "maildir:dst", &["--delete"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 0);
    assert!(r.stdout.contains("mailmover-copied") || r.stderr.contains("mailmover-copied"), "{}", r.stderr);
    assert_eq!(count(&env, "dst"), 3);
}

#[test]
fn a_record_of_another_source_does_not_count() {
    let env = TestEnv::new();
    let paths = source(&env, 3, false);
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    copy_store(&env.path("src"), &env.path("src2"));
    std::fs::remove_file(env.path("src2/cur/1600000000.M0P1.h:2,S")).unwrap();
    let r = env.sync("maildir:src2", "maildir:dst", &["--delete"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 0, "src2 copied nothing into dst");
    assert_eq!(count(&env, "dst"), 3);
    drop(paths);
}

#[test]
fn an_empty_source_folder_deletes_nothing_unless_max_delete_allows() {
    let env = TestEnv::new();
    let paths = source(&env, 3, false);
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    for p in &paths {
        std::fs::remove_file(p).unwrap();
    }
    for flag in ["--delete", "--mirror"] {
        let r = env.sync("maildir:src", "maildir:dst", &[flag]);
        r.expect_code(0);
        assert_eq!(r.n("deleted_target"), 0, "{flag}");
        assert!(r.stderr.contains("no messages"), "{}", r.stderr);
        assert_eq!(count(&env, "dst"), 3);
    }
    let r = env.sync("maildir:src", "maildir:dst", &["--delete", "--max-delete", "3"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 3);
    assert_eq!(count(&env, "dst"), 0);
}

#[test]
fn a_source_folder_with_a_read_error_deletes_nothing() {
    let env = TestEnv::new();
    let paths = source(&env, 3, false);
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    std::fs::remove_file(&paths[0]).unwrap();
    // A message that cannot be read: a symlink is not followed and is reported.
    std::os::unix::fs::symlink("/nonexistent/message", env.path("src/cur/1600000099.M9P1.h:2,S")).unwrap();
    for flag in ["--delete", "--mirror"] {
        let r = env.sync("maildir:src", "maildir:dst", &[flag, "--max-delete", "10"]);
        r.expect_code(1);
        assert_eq!(r.n("deleted_target"), 0, "{flag}: {}", r.stderr);
        assert_eq!(count(&env, "dst"), 3);
    }
}

#[test]
fn an_unreadable_cur_deletes_nothing() {
    let env = TestEnv::new();
    source(&env, 3, false);
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    // cur/ replaced by something that is not a directory: the folder cannot be listed.
    std::fs::rename(env.path("src/cur"), env.path("cur-aside")).unwrap();
    std::fs::write(env.path("src/cur"), b"not a directory").unwrap();
    let r = env.sync("maildir:src", "maildir:dst", &["--mirror", "--max-delete", "10"]);
    assert_eq!(r.n("deleted_target"), 0, "{}", r.stderr);
    assert_eq!(count(&env, "dst"), 3);
}

#[test]
fn max_delete_caps_the_whole_run() {
    let env = TestEnv::new();
    let paths = source(&env, 4, true);
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    // Three gone from each folder: six in all.
    for p in paths.iter().skip(2) {
        std::fs::remove_file(p).unwrap();
    }
    let dry = env.run(["sync", "maildir:src", "maildir:dst", "--delete", "--max-delete", "5", "--dry-run"]);
    dry.expect_code(1);
    assert_eq!(dry.stdout.matches("would delete from").count(), 6, "{}", dry.stdout);
    let r = env.sync("maildir:src", "maildir:dst", &["--delete", "--max-delete", "5"]);
    r.expect_code(1);
    assert_eq!(r.n("deleted_target"), 0);
    assert!(r.stderr.contains("--max-delete 5") && r.stderr.contains('6'), "{}", r.stderr);
    assert_eq!(count(&env, "dst"), 8);
    let r = env.sync("maildir:src", "maildir:dst", &["--delete", "--max-delete", "6"]);
    r.expect_code(0);
    assert_eq!(r.n("deleted_target"), 6);
    assert_eq!(count(&env, "dst"), 2);
    let again = env.sync("maildir:src", "maildir:dst", &["--delete"]);
    again.expect_code(0);
    assert_eq!((again.n("deleted_target"), again.n("transferred")), (0, 0));
}

#[test]
fn mirror_and_delete_exclude_each_other() {
    let env = TestEnv::new();
    source(&env, 1, false);
    env.run(["sync", "maildir:src", "maildir:dst", "--delete", "--mirror"]).expect_code(2);
    assert!(!env.path("dst").exists());
}

#[test]
fn filters_turn_deletion_off_in_their_folder() {
    let env = TestEnv::new();
    let paths = source(&env, 4, false);
    for p in &paths[..3] {
        set_mtime(p, 1_500_000_000);
    }
    env.sync("maildir:src", "maildir:dst", &[]).expect_code(0);
    std::fs::remove_file(&paths[3]).unwrap();
    // The three old messages are left out by --max-age; their copies must not look gone.
    for flag in ["--delete", "--mirror"] {
        let r = env.sync("maildir:src", "maildir:dst", &[flag, "--max-age", "30"]);
        r.expect_code(0);
        assert_eq!(r.n("deleted_target"), 0, "{flag}: {}", r.stdout);
        assert!(r.stderr.contains("--max-age"), "{}", r.stderr);
        assert_eq!(count(&env, "dst"), 4);
    }
}
