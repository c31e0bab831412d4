//! mbox targets grow in place (issue 20, item 6): a re-sync that only adds messages appends
//! them after the file's last byte, leaves what is there as it is (but for X-IMAPbase's last
//! UID), and puts the file back as it was when the append fails. Flag changes, deletions and
//! keywords the file does not list yet still rewrite it.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use common::*;

/// A Maildir source with `n` messages from `from` on, each with a `From ` body line (quoted in
/// mboxrd) and `pad` bytes of text.
fn add_messages(env: &TestEnv, from: usize, n: usize, pad: usize) {
    for i in from..from + n {
        let body = format!("From here, number {i}\n{}\n", "x".repeat(pad));
        let p = env.write(&format!("src/cur/{i:04}.m{i}:2,S"), &message(&format!("message {i}"), &body));
        set_mtime(&p, 1_600_000_000 + i as i64 * 60);
    }
    for d in ["src/new", "src/tmp", "dir"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

/// The X-IMAPbase last UID of a Dovecot-flavour mbox, as written.
fn base_last_uid(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let line = text.lines().find(|l| l.starts_with("X-IMAPbase: ")).expect("an X-IMAPbase line");
    line.split(' ').nth(2).unwrap().to_string()
}

fn x_uids(data: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.strip_prefix("X-UID: "))
        .map(|u| u.parse().unwrap())
        .collect()
}

/// In each flavour's usual place (a single file: mboxrd; a directory: Dovecot's), added mail
/// goes after the old bytes, which stay as they were: same inode, same prefix, new UIDs above
/// the old last one, and the dry run says so. The result verifies and a re-run is a no-op.
#[test]
fn a_resync_that_only_adds_grows_the_mbox_in_place() {
    for (target, file, dovecot) in [("mbox:one.mbox", "one.mbox", false), ("mbox:dir", "dir/INBOX", true)] {
        let env = TestEnv::new();
        add_messages(&env, 0, 3, 10);
        env.sync("maildir:src", target, &[]).expect_code(0);
        let path = env.path(file);
        let (before, ino) = (std::fs::read(&path).unwrap(), inode(&path));

        add_messages(&env, 3, 2, 10);
        let dry = env.run(["sync", "maildir:src", target, "--dry-run"]);
        dry.expect_code(0);
        assert!(dry.stdout.contains("2 to copy, 0 flag updates, 0 to delete, appended in place"), "{}", dry.stdout);
        let more = env.sync("maildir:src", target, &[]);
        more.expect_code(0);
        assert_eq!((more.n("transferred"), more.n("skipped_existing")), (2, 3), "{target}");
        let after = std::fs::read(&path).unwrap();
        assert_eq!(inode(&path), ino, "{target}: the file was replaced, not grown");
        let mut kept = before.clone();
        if dovecot {
            assert_eq!((base_last_uid(&before), base_last_uid(&after)), ("0000000003".into(), "0000000005".into()));
            let at = String::from_utf8_lossy(&before).find("0000000003").unwrap();
            kept[at..at + 10].copy_from_slice(b"0000000005");
            assert_eq!(x_uids(&after), [1, 2, 3, 4, 5]);
        } else {
            assert!(after.windows(23).any(|w| w == b"\n>From here, number 4\nx"), "new mail quoted as mboxrd");
            assert_eq!(split_strict(&after).len(), 5);
        }
        assert_eq!(&after[..kept.len()], &kept[..], "{target}: the old bytes changed");

        env.run(["verify", "maildir:src", target]).expect_code(0);
        let again = env.sync("maildir:src", target, &[]);
        assert_eq!((again.n("transferred"), again.n("flags_updated")), (0, 0));
        assert_eq!(std::fs::read(&path).unwrap(), after, "{target}: a re-run changed the file");
    }
}

/// What is not only an addition rewrites the file: a flag change (and then the dry run says
/// so), and a keyword the file's X-IMAPbase does not list yet (Dovecot honours X-Keywords only
/// for listed ones), which the rewrite lists.
#[test]
fn flag_changes_and_new_keywords_rewrite_the_mbox() {
    let env = TestEnv::new();
    add_messages(&env, 0, 3, 10);
    env.sync("maildir:src", "mbox:dir", &[]).expect_code(0);
    let path = env.path("dir/INBOX");
    let ino = inode(&path);

    std::fs::rename(env.path("src/cur/0001.m1:2,S"), env.path("src/cur/0001.m1:2,FS")).unwrap();
    let dry = env.run(["sync", "maildir:src", "mbox:dir", "--dry-run"]);
    assert!(dry.stdout.contains("0 to copy, 1 flag updates, 0 to delete, file rewritten"), "{}", dry.stdout);
    let flagged = env.sync("maildir:src", "mbox:dir", &[]);
    assert_eq!(flagged.n("flags_updated"), 1);
    assert_ne!(inode(&path), ino, "a flag change rewrites the file");

    let ino = inode(&path);
    env.write("src/dovecot-keywords", b"0 Project\n");
    let p = env.write("src/cur/0009.m9:2,Sa", &message("with a keyword", "k\n"));
    set_mtime(&p, 1_600_009_000);
    let more = env.sync("maildir:src", "mbox:dir", &[]);
    more.expect_code(0);
    assert_eq!(more.n("transferred"), 1);
    assert_ne!(inode(&path), ino, "a keyword not listed yet rewrites the file");
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    let base = text.lines().find(|l| l.starts_with("X-IMAPbase: ")).unwrap().to_string();
    assert!(base.ends_with(" Project"), "{base}");
    assert!(text.contains("X-Keywords: Project"));

    // Listed now: the next message with it is appended.
    let ino = inode(&path);
    let p = env.write("src/cur/0010.m10:2,Sa", &message("again a keyword", "k\n"));
    set_mtime(&p, 1_600_010_000);
    env.sync("maildir:src", "mbox:dir", &[]).expect_code(0);
    assert_eq!(inode(&path), ino, "a listed keyword is appended");
    env.run(["verify", "maildir:src", "mbox:dir"]).expect_code(0);
}

/// A target of 20 messages of 10 KB and 10 more in the source, and a sync of them run under a
/// file-size limit that the staged copies fit under but the grown target does not; with
/// `ignore`, the limit's signal is ignored (writes fail), else it kills the run. The mbox's
/// bytes before, and the run's output.
fn sync_past_a_size_limit(env: &TestEnv, ignore: bool) -> (Vec<u8>, std::process::Output) {
    add_messages(env, 0, 20, 10_000);
    env.sync("maildir:src", "mbox:dir", &[]).expect_code(0);
    let before = std::fs::read(env.path("dir/INBOX")).unwrap();
    add_messages(env, 20, 10, 10_000);
    let limit = before.len() as u64 + 50_000;
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("mailmover"));
    c.args(["sync", "maildir:src", "mbox:dir", "--json"]).current_dir(env.root()).env("TZ", "UTC");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if ignore {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            let l = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (before, c.output().unwrap())
}

/// A write that fails half-way (the file-size limit is hit while the new messages are copied
/// into the target) leaves the mbox exactly as it was; the error names it, and the next run
/// appends everything once.
#[test]
fn a_failed_append_leaves_the_mbox_as_it_was() {
    let env = TestEnv::new();
    let path = env.path("dir/INBOX");
    let (before, out) = sync_past_a_size_limit(&env, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(r#""path":"dir/INBOX""#), "{stdout}");
    assert!(stdout.contains("File too large; the mbox is as it was"), "{stdout}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the mbox is as it was");
    let left: Vec<_> = std::fs::read_dir(env.path("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("mailmover-") && n.contains(".tmp") || n == "INBOX.lock")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    let again = env.sync("maildir:src", "mbox:dir", &[]);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("skipped_existing")), (10, 20));
    assert_eq!(x_uids(&std::fs::read(&path).unwrap()), (1..=30).collect::<Vec<_>>());
    env.run(["verify", "maildir:src", "mbox:dir"]).expect_code(0);
}

/// A run killed in the middle of an append (the file-size limit's signal kills it while the
/// new messages are copied into the target) leaves a journal; the next run cuts the
/// unfinished bytes off, says so, and appends every message once.
#[test]
fn an_append_killed_half_way_is_taken_back_by_the_next_run() {
    let env = TestEnv::new();
    let path = env.path("dir/INBOX");
    let (before, out) = sync_past_a_size_limit(&env, false);
    let limit = before.len() as u64 + 50_000;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGXFSZ), "{out:?}");
    let torn = std::fs::read(&path).unwrap();
    assert_eq!(torn.len() as u64, limit, "killed half-way through the append");
    assert!(env.path("dir/.INBOX.mailmover-append.lock").exists(), "the journal is left");

    let again = env.sync("maildir:src", "mbox:dir", &[]);
    again.expect_code(0);
    let warned = again.json()["warnings"].to_string();
    assert!(
        warned.contains("an interrupted run left 50000 bytes of an unfinished append at the end; taken back"),
        "{warned}"
    );
    assert_eq!((again.n("transferred"), again.n("skipped_existing")), (10, 20));
    let after = std::fs::read(&path).unwrap();
    assert_eq!(x_uids(&after), (1..=30).collect::<Vec<_>>());
    let at = String::from_utf8_lossy(&before).find("0000000020").unwrap();
    let mut kept = before.clone();
    kept[at..at + 10].copy_from_slice(b"0000000030");
    assert_eq!(&after[..kept.len()], &kept[..]);
    assert!(!env.path("dir/.INBOX.mailmover-append.lock").exists());
    assert!(!env.path("dir/.INBOX.mailmover-append-data.lock").exists());
    env.run(["verify", "maildir:src", "mbox:dir"]).expect_code(0);
}
