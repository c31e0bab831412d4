//! Issue 18 (a root tool in users' homes), points 2, 4 and 5 for Maildir and cPanel targets:
//! mailmover's own files in a target are data, not trust (a symlink to /dev/zero, a FIFO or
//! another folder's cache is refused, never read, and rebuilt); as root, what a run creates in
//! an existing target belongs to the owner of the directory it is created in (`--owner` wins);
//! temporary files of killed runs are removed by the next run and never listed as folders.
//! https://github.com/mailmover/mailmover/issues/18

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;

fn message(subject: &str) -> Vec<u8> {
    format!("From: a@example.com\nSubject: {subject}\nMessage-ID: <{subject}@x>\n\nbody of {subject}\n").into_bytes()
}

/// A Maildir source: INBOX with `n` messages (one with keyword `$Junk`), and `.Sent` with one.
fn maildir_source(env: &TestEnv, n: usize) -> PathBuf {
    let src = env.path("src");
    for d in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("dovecot-keywords"), b"0 $Junk\n").unwrap();
    for i in 0..n {
        let flags = if i == 0 { "Sa" } else { "S" };
        std::fs::write(src.join(format!("cur/{}.M{i}P1.src:2,{flags}", 1_500_000_000 + i)), message(&format!("m{i}")))
            .unwrap();
    }
    std::fs::write(src.join(".Sent/cur/1500000100.M1P1.src:2,S"), message("sent")).unwrap();
    src
}

/// Sets every directory's mtime below `root` to a fixed past time (`n` seconds after a base),
/// so the source's stamp counts as settled and states are read and written.
fn settle(root: &Path, n: i64) {
    let t = filetime::FileTime::from_unix_time(1_600_000_000 + n, 0);
    for e in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
        if e.file_type().is_dir() || e.file_name() == "dovecot-keywords" {
            filetime::set_file_mtime(e.path(), t).unwrap();
        }
    }
}

/// A pid no process has: a child that already exited.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn warnings(r: &Run) -> String {
    r.json()["warnings"].to_string()
}

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

fn link_to_dev_zero(p: &Path) {
    let _ = std::fs::remove_file(p);
    std::os::unix::fs::symlink("/dev/zero", p).unwrap();
}

/// Point 2: each own file of a Maildir target replaced by a link to /dev/zero or a FIFO: the
/// next run does not hang, says which file it ignored, copies the new message once, and
/// leaves regular files behind that the run after trusts again.
#[test]
fn planted_own_files_are_ignored_with_a_warning_and_rebuilt() {
    let env = TestEnv::new();
    let src = maildir_source(&env, 3);
    settle(&src, 0);
    let s = format!("maildir:{}", src.display());
    env.sync(&s, "dst", &[]).expect_code(0);
    let dst = env.path("dst");
    assert!(dst.join("mailmover-state").is_file());
    link_to_dev_zero(&dst.join("mailmover-cache"));
    link_to_dev_zero(&dst.join("mailmover-source-cache"));
    mkfifo(&dst.join("mailmover-state"));
    mkfifo(&dst.join("mailmover-copied"));
    mkfifo(&dst.join("dovecot-keywords"));
    mkfifo(&dst.join(".Sent/mailmover-cache"));
    mkfifo(&dst.join("subscriptions"));
    std::fs::write(src.join("cur/1500000050.M50P1.src:2,S"), message("new")).unwrap();
    settle(&src, 1);
    // --delete: the run that reads the record of copies (and must not delete by a FIFO's word).
    let r = env.sync(&s, "dst", &["--delete"]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 1, "{}", r.stdout);
    let w = warnings(&r);
    let own = ["mailmover-cache", "mailmover-source-cache", "mailmover-state", "mailmover-copied", "dovecot-keywords"];
    for f in own.iter().chain(&["subscriptions"]) {
        assert!(w.contains(&format!("dst/{f}")), "no warning for {f}: {w}");
    }
    assert!(w.contains("symlink") && w.contains("not a regular file"), "{w}");
    for f in own.iter().chain(&["subscriptions"]) {
        assert!(std::fs::symlink_metadata(dst.join(f)).unwrap().is_file(), "{f} not rebuilt");
    }
    assert_eq!(read_maildir(&dst, Layout::MaildirPP).len(), 5, "each message once");
    let r = env.sync(&s, "dst", &[]);
    r.expect_code(0);
    assert_eq!((r.n("transferred"), warnings(&r).as_str()), (0, "[]"), "{}", r.stdout);
}

/// Point 2: the state beside an mbox file target made a FIFO: no hang, a warning, rewritten.
#[test]
fn fifo_state_beside_an_mbox_target_is_not_opened() {
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    env.sync(src.to_str().unwrap(), "mbox:out.mbox", &[]).expect_code(0);
    let state = env.path(".out.mbox.mailmover-state.lock");
    assert!(state.is_file());
    mkfifo(&state);
    let r = env.sync(src.to_str().unwrap(), "mbox:out.mbox", &[]);
    r.expect_code(0);
    assert!(warnings(&r).contains("mailmover-state"), "{}", r.stdout);
    assert!(std::fs::symlink_metadata(&state).unwrap().is_file());
}

/// Point 2: a folder's files copied, with its `mailmover-cache`, into another target whose
/// message files have the same names, sizes and dates but other bytes. The cache names the
/// folder it was written for, so the copy is not trusted: the source's messages are found
/// missing and copied, none taken for already there.
#[test]
fn a_cache_copied_from_another_folder_is_not_trusted() {
    let env = TestEnv::new();
    let src = maildir_source(&env, 4);
    let s = format!("maildir:{}", src.display());
    env.sync(&s, "a", &[]).expect_code(0);
    let st = std::process::Command::new("cp").arg("-a").arg(env.path("a")).arg(env.path("b")).status().unwrap();
    assert!(st.success());
    // Same names, sizes and mtimes; other bytes.
    for e in walkdir::WalkDir::new(env.path("b")).into_iter().filter_map(Result::ok) {
        let p = e.path();
        if p.parent().is_some_and(|d| d.ends_with("cur") || d.ends_with("new")) && e.file_type().is_file() {
            let md = std::fs::metadata(p).unwrap();
            let len = std::fs::read(p).unwrap().len();
            std::fs::write(p, vec![b'x'; len]).unwrap();
            let t = filetime::FileTime::from_last_modification_time(&md);
            filetime::set_file_mtime(p, t).unwrap();
        }
    }
    let r = env.sync(&s, "b", &[]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 5, "every message copied: {}", r.stdout);
    assert_eq!(r.n("skipped_existing"), 0, "{}", r.stdout);
    assert!(warnings(&r).contains("another folder"), "{}", r.stdout);
    let again = env.sync(&s, "b", &[]);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("skipped_existing")), (0, 5), "{}", again.stdout);
}

/// Point 5: temporary files of killed runs (their pid gone, or older than a day) are removed
/// by the next run; a live run's, and names that are not mailmover's, stay.
#[test]
fn leftovers_of_killed_runs_are_removed_from_a_maildir_target() {
    let env = TestEnv::new();
    let src = maildir_source(&env, 2);
    let s = format!("maildir:{}", src.display());
    env.sync(&s, "dst", &[]).expect_code(0);
    let dead = dead_pid();
    let alive = std::process::id();
    let gone = [
        format!("dst/.subscriptions.mailmover-{dead}.tmp.lock"),
        format!("dst/.mailmover-cache.{dead}"),
        format!("dst/.Sent/.dovecot-keywords.mailmover-{dead}"),
        format!("dst/.Sent/.mailmover-state.mailmover-{alive}.tmp.lock"),
    ];
    let kept = [format!("dst/.mailmover-copied.mailmover-{alive}.tmp.lock"), "dst/.notes.mailmover-x".to_string()];
    for f in gone.iter().chain(&kept) {
        env.write(f, b"partial");
    }
    // A day and more: its pid belongs to another process by now.
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_mtime(env.path(&gone[3]), old).unwrap();
    std::fs::write(src.join("cur/1500000050.M50P1.src:2,S"), message("new")).unwrap();
    std::fs::write(src.join(".Sent/cur/1500000150.M50P1.src:2,S"), message("new sent")).unwrap();
    env.sync(&s, "dst", &[]).expect_code(0);
    for f in &gone {
        assert!(!env.path(f).exists(), "{f} left behind");
    }
    for f in &kept {
        assert!(env.path(f).exists(), "{f} removed");
    }
}

/// Point 5: in an mbox-directory target, a killed run's temporary mbox (which starts like an
/// mbox) is not a folder for `inspect` or for a run that reads the tree, and the next sync
/// into it removes it.
#[test]
fn leftovers_in_an_mbox_directory_are_no_folders_and_are_removed() {
    let env = TestEnv::new();
    let src = maildir_source(&env, 2);
    let s = format!("maildir:{}", src.display());
    env.sync(&s, "mbox:out", &[]).expect_code(0);
    let dead = dead_pid();
    let planted = [
        format!("out/.Sent.mailmover-{dead}.tmp"),
        format!("out/.INBOX.mailmover-{dead}.tmp.lock"),
        format!("out/Archive/.2019.mailmover-{dead}.tmp"),
    ];
    let mbox = std::fs::read(env.path("out/Sent")).unwrap();
    for f in &planted {
        env.write(f, &mbox);
    }
    let folders = |r: &Run| -> Vec<String> {
        r.json()["folders"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect()
    };
    let r = env.run(["inspect", "--json", "mbox:out"]);
    r.expect_code(0);
    assert_eq!(folders(&r), vec!["INBOX", "Sent"], "{}", r.stdout);
    let r = env.sync("mbox:out", "back", &[]);
    r.expect_code(0);
    assert_eq!(r.n("folders"), 2, "{}", r.stdout);
    env.sync(&s, "mbox:out", &[]).expect_code(0);
    for f in &planted {
        assert!(!env.path(f).exists(), "{f} left behind");
    }
}

/// Everything below `root` that this run created (not in `before`), with its owner.
fn created(root: &Path, before: &[PathBuf]) -> Vec<(PathBuf, u32, u32)> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !before.contains(&e.path().to_path_buf()))
        .map(|e| {
            let md = e.path().symlink_metadata().unwrap();
            (e.path().to_path_buf(), md.uid(), md.gid())
        })
        .collect()
}

fn listing(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok).map(|e| e.path().to_path_buf()).collect()
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    for e in walkdir::WalkDir::new(p).into_iter().filter_map(Result::ok) {
        nix::unistd::chown(e.path(), Some(uid.into()), Some(gid.into())).unwrap();
    }
}

/// Point 4, as root: in an existing Maildir owned by a user, new messages, folder
/// directories, `dovecot-keywords`, `subscriptions`, `maildirfolder` and mailmover's own
/// files take the owner and group of the directory they are created in (a folder owned by
/// someone else gives its own); `--owner` wins over both.
#[test]
fn as_root_new_files_belong_to_their_directory_owner() {
    if !require(Need::Root) {
        return;
    }
    let env = TestEnv::new();
    let src = maildir_source(&env, 3);
    for d in [".Old/cur", ".Old/new", ".Old/tmp"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join(".Old/cur/1500000200.M1P1.src:2,S"), message("old")).unwrap();
    settle(&src, 0);
    let dst = env.path("dst");
    for d in ["cur", "new", "tmp", ".Old/cur", ".Old/new", ".Old/tmp"] {
        std::fs::create_dir_all(dst.join(d)).unwrap();
    }
    chown_tree(&dst, 4242, 4343);
    chown_tree(&dst.join(".Old"), 5151, 5252);
    let before = listing(&dst);
    let s = format!("maildir:{}", src.display());
    env.sync(&s, "dst", &[]).expect_code(0);
    let made = created(&dst, &before);
    for name in ["dovecot-keywords", "subscriptions", "mailmover-cache", "mailmover-state", "mailmover-copied"] {
        assert!(made.iter().any(|(p, ..)| p == &dst.join(name)), "{name} not written: {made:?}");
    }
    assert!(made.iter().any(|(p, ..)| p.ends_with(".Sent/maildirfolder")), "{made:?}");
    assert!(made.iter().filter(|(p, ..)| p.parent().is_some_and(|d| d.ends_with("cur"))).count() >= 5, "{made:?}");
    for (p, uid, gid) in &made {
        let want = if p.starts_with(dst.join(".Old")) { (5151, 5252) } else { (4242, 4343) };
        assert_eq!((*uid, *gid), want, "{}", p.display());
    }
    // --owner wins.
    let dst2 = env.path("dst2");
    std::fs::create_dir_all(&dst2).unwrap();
    chown_tree(&dst2, 4242, 4343);
    env.sync(&s, "dst2", &["--owner", "6161:6262"]).expect_code(0);
    for (p, uid, gid) in created(&dst2, &[]) {
        assert_eq!((uid, gid), (6161, 6262), "{}", p.display());
    }
}
