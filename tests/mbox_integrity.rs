//! mbox targets and sources on a live server (issues 17 and 18), end to end through the binary:
//! links planted in mbox-directory targets, owners and modes, temporary files, the locks
//! delivery agents honour, mail appended while a sync writes, a source truncated while it is
//! read, and write errors.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A Maildir with INBOX and the given subfolders (Maildir++), one message each.
fn maildir_src(root: &Path, folders: &[&str]) {
    for (i, f) in std::iter::once(&"").chain(folders).enumerate() {
        let d = if f.is_empty() { root.to_path_buf() } else { root.join(format!(".{}", f.replace('/', "."))) };
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(d.join(s)).unwrap();
        }
        if !f.is_empty() {
            std::fs::write(d.join("maildirfolder"), b"").unwrap();
        }
        std::fs::write(d.join(format!("cur/17000000{i:02}.M1P1.h:2,S")), message(&format!("msg in {f:?}"), "body\n"))
            .unwrap();
    }
}

#[track_caller]
fn assert_no_temporary_file(dir: &Path) {
    let names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    // The options a sync records for verify are no temporary file.
    let temporary = |n: &String| n.contains("mailmover-") && !n.ends_with(".mailmover-options.lock");
    assert!(!names.iter().any(temporary), "temporary file left: {names:?}");
}

fn mbox_count(path: &Path) -> usize {
    read_mbox(&std::fs::read(path).unwrap(), Variant::Mboxrd).len()
}

/// A whole-file fcntl write lock as a classic (process-owned) POSIX lock, as procmail and
/// Dovecot take it.
fn fcntl_write_lock(f: &File) {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) }, 0, "test lock");
}

/// Issue 18: links planted at each kind of level of an mbox-directory target (`A`, `A.sbd`,
/// `INBOX`, a folder's mbox file) are refused, reported by path, and nothing is written
/// through them; the other folders are written.
#[test]
fn mbox_dir_target_links_are_refused() {
    let env = TestEnv::new();
    let src = env.path("src");
    maildir_src(&src, &["A/B", "Thing/Sub", "Work", "Sent"]);
    let dst = env.path("dst");
    std::fs::create_dir(&dst).unwrap();
    std::fs::create_dir(env.path("victim-dir")).unwrap();
    let victim_mbox = env.write("victim.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("v", "secret\n"))]));
    std::fs::write(dst.join("Thing"), b"").unwrap();
    for (link, to) in
        [("A", "victim-dir"), ("Thing.sbd", "victim-dir"), ("INBOX", "victim.mbox"), ("Work", "victim.mbox")]
    {
        std::os::unix::fs::symlink(env.path(to), dst.join(link)).unwrap();
    }
    let victim_before = std::fs::read(&victim_mbox).unwrap();
    let r = env.sync(&format!("maildir:{}", src.display()), &format!("mbox:{}", dst.display()), &[]);
    r.expect_code(1);
    let errors = r.errors();
    for link in ["A", "Thing.sbd", "INBOX", "Work"] {
        let p = dst.join(link).display().to_string();
        assert!(
            errors.iter().any(|(path, why)| path == &p && why.contains("symlink")),
            "{link} not reported: {errors:?}"
        );
    }
    assert_eq!(std::fs::read_dir(env.path("victim-dir")).unwrap().count(), 0, "written through a link");
    assert_eq!(std::fs::read(&victim_mbox).unwrap(), victim_before, "the linked mbox is untouched");
    assert_eq!(mbox_count(&dst.join("Sent")), 1, "the other folders are written");
}

/// Issue 18: `--owner` reaches every directory and file of an mbox-directory target, 0700 and
/// 0600 (root only: chown).
#[test]
fn owner_reaches_every_level_of_an_mbox_dir_target() {
    if !require(Need::Root) {
        return;
    }
    let env = TestEnv::new();
    let src = env.path("src");
    maildir_src(&src, &["A/B/C", "Work"]);
    let dst = env.path("dst");
    let r = env.sync(
        &format!("maildir:{}", src.display()),
        &format!("mbox:{}", dst.display()),
        &["--owner", "65534:65534"],
    );
    r.expect_code(0);
    for e in walkdir::WalkDir::new(&dst) {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        let want = if m.is_dir() { 0o700 } else { 0o600 };
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (65534, 65534, want), "{}", e.path().display());
    }
    assert!(dst.join("A/B/C").is_file());
}

/// Issue 18: an existing target mbox that is rewritten keeps its mode, and as root its owner
/// and group; without a target, a new file is 0600.
#[test]
fn rewritten_mbox_keeps_owner_group_and_mode() {
    let env = TestEnv::new();
    let src = env.write("src.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("new", "n\n"))]));
    let dst = env.write("dst.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("old", "o\n"))]));
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o660)).unwrap();
    let root = require_for(Need::Root, "the owner half");
    if root {
        std::os::unix::fs::chown(&dst, Some(65534), Some(8)).unwrap();
    }
    let before = std::fs::metadata(&dst).unwrap();
    env.sync(src.to_str().unwrap(), &format!("mbox:{}", dst.display()), &[]).expect_code(0);
    let after = std::fs::metadata(&dst).unwrap();
    assert_ne!(after.ino(), before.ino(), "rewritten");
    assert_eq!(mbox_count(&dst), 2);
    assert_eq!((after.uid(), after.gid(), after.mode() & 0o7777), (before.uid(), before.gid(), 0o660));
    if root {
        env.sync(src.to_str().unwrap(), "mbox:owned.mbox", &["--owner", "65534:65534"]).expect_code(0);
        let m = std::fs::metadata(env.path("owned.mbox")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (65534, 65534, 0o600));
    }
}

/// Issue 18: the file an mbox is rewritten through is named so no reader takes it for a folder,
/// and the next run removes those killed runs left.
#[test]
fn temporary_files_are_not_folders_and_leftovers_go() {
    let env = TestEnv::new();
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let src = env.path("src");
    maildir_src(&src, &["Sent"]);
    let dst = env.path("dst");
    let mbox = make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("half", "h\n"))]);
    let old = env.write(&format!("dst/.Sent.mailmover-{dead}.tmp"), &mbox);
    let new = env.write(&format!("dst/.Sent.mailmover-{dead}.tmp.lock"), &mbox);
    let live = env.write(&format!("dst/.Sent.mailmover-{}.tmp.lock", std::process::id()), &mbox);
    let r = env.sync(&format!("maildir:{}", src.display()), &format!("mbox:{}", dst.display()), &[]);
    r.expect_code(0);
    assert!(!old.exists() && !new.exists(), "leftovers of a dead run removed");
    assert!(live.exists(), "a live process's file is not touched");
    let folders: Vec<String> = env.run(["inspect", dst.to_str().unwrap(), "--json"]).json()["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(folders, ["INBOX", "Sent"], "a temporary file is no folder");
}

/// Spawns `mailmover sync SRC mbox:DST --json`, returning the child.
fn spawn_sync(src: &str, dst: &Path) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("mailmover"))
        .args(["sync", src, &format!("mbox:{}", dst.display()), "--json"])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until mailmover's temporary file for `name` exists in `dir`: it has read the target
/// and written its new contents, and is about to lock.
fn wait_for_tmp(dir: &Path, name: &str) {
    let t0 = Instant::now();
    loop {
        let found = std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(&format!(".{name}.mailmover-")) && n.ends_with(".tmp.lock")
        });
        if found {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "mailmover never wrote its temporary file");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The locks a delivery agent takes on `mbox`: the dotlock, then fcntl.
fn lock_like_procmail(mbox: &Path) -> (File, std::path::PathBuf) {
    let dotlock = mbox.with_file_name(format!("{}.lock", mbox.file_name().unwrap().to_string_lossy()));
    let mut d = std::fs::OpenOptions::new().write(true).create_new(true).open(&dotlock).unwrap();
    write!(d, "{}:{}", std::process::id(), nix::unistd::gethostname().unwrap().to_string_lossy()).unwrap();
    let f = std::fs::OpenOptions::new().read(true).append(true).open(mbox).unwrap();
    fcntl_write_lock(&f);
    (f, dotlock)
}

/// Issue 17: mail a delivery agent appends to the target mbox, under the dotlock and fcntl,
/// while mailmover is between reading and replacing it: mailmover waits for the locks and the
/// appended message survives, after the copies.
#[test]
fn mbox_target_waits_for_the_locks_and_keeps_appended_mail() {
    let env = TestEnv::new();
    let src: Vec<Vec<u8>> = (0..50).map(|i| message(&format!("src {i}"), "s\n")).collect();
    let src_mbox: Vec<(&str, &[u8])> = src.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    let src_path = env.write("src.mbox", &make_mbox(&src_mbox));
    let dst = env.write("dst.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("old", "o\n"))]));
    let (f, dotlock) = lock_like_procmail(&dst);
    let child = spawn_sync(src_path.to_str().unwrap(), &dst);
    let t0 = Instant::now();
    wait_for_tmp(env.root(), "dst.mbox");
    std::thread::sleep(Duration::from_millis(500));
    let delivered = make_mbox(&[("Tue Jan  3 10:00:00 2006", &message("delivered meanwhile", "d\n"))]);
    (&f).write_all(&delivered).unwrap();
    drop(f);
    std::fs::remove_file(&dotlock).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let msgs = read_mbox(&std::fs::read(&dst).unwrap(), Variant::Mboxrd);
    assert_eq!(msgs.len(), 52, "the old message, 50 copies and the delivery");
    let last = msgs.last().unwrap();
    assert!(String::from_utf8_lossy(&last.raw).contains("delivered meanwhile"), "the delivery is last and whole");
    assert!(!dotlock.exists());
    let again = env.sync(src_path.to_str().unwrap(), &format!("mbox:{}", dst.display()), &[]);
    again.expect_code(0);
    assert_eq!(again.n("transferred"), 0);
}

/// Issue 17: a target mbox rewritten by another program after mailmover read it (not just
/// appended to) is reported and left as that program wrote it.
#[test]
fn mbox_target_changed_before_the_lock_is_not_replaced() {
    let env = TestEnv::new();
    let src = env.write("src.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("new", "n\n"))]));
    let dst = env.write(
        "dst.mbox",
        &make_mbox(&[
            ("Mon Jan  2 15:04:05 2006", &message("one", "1\n")),
            ("Mon Jan  2 15:04:05 2006", &message("two", "2\n")),
        ]),
    );
    let (f, dotlock) = lock_like_procmail(&dst);
    let child = spawn_sync(src.to_str().unwrap(), &dst);
    wait_for_tmp(env.root(), "dst.mbox");
    // An expunge as a mail client does it: the first message goes, in place (while mailmover
    // writes its new file or waits for the locks: refused either way).
    let rewritten = make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("two", "2\n"))]);
    f.set_len(0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &rewritten, 0).unwrap();
    drop(f);
    std::fs::remove_file(&dotlock).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = json["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["path"] == dst.display().to_string() && e["reason"].as_str().unwrap().contains("run again")),
        "{errors:?}"
    );
    assert_eq!(json["transferred"], 0, "nothing counts as copied");
    assert_eq!(std::fs::read(&dst).unwrap(), rewritten, "the other program's file is left as it is");
    assert_no_temporary_file(env.root());
}

/// Issue 17: a source mbox truncated while mailmover reads it: no SIGBUS, the folder is
/// reported by the source's path (exit 1), and the other folders complete.
#[test]
fn source_truncated_while_read_is_reported() {
    let env = TestEnv::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let body = "x".repeat(4000) + "\n";
    let big: Vec<Vec<u8>> = (0..20_000).map(|i| message(&format!("big {i}"), &body)).collect();
    let big_mbox: Vec<(&str, &[u8])> = big.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    let big_path = env.write("src/Big", &make_mbox(&big_mbox));
    drop(big);
    for f in ["Small", "Other"] {
        env.write(&format!("src/{f}"), &make_mbox(&[("Mon Jan  2 15:04:05 2006", &message(f, "s\n"))]));
    }
    let big_file = File::open(&big_path).unwrap();
    let child = Command::new(assert_cmd::cargo::cargo_bin("mailmover"))
        .args(["sync", &format!("mbox:{}", src.display()), &format!("maildir:{}", env.path("dst").display()), "--json"])
        .args(["--no-fsync", "--jobs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // mailmover holds a shared lock on the big source while it reads it: truncate then.
    let t0 = Instant::now();
    loop {
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        assert_eq!(unsafe { libc::fcntl(big_file.as_raw_fd(), libc::F_GETLK, &mut fl) }, 0);
        if fl.l_type != libc::F_UNLCK as libc::c_short {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "mailmover never locked the source");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    std::fs::OpenOptions::new().write(true).open(&big_path).unwrap().set_len(100_000).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "no signal death, exit 1: {:?} {stderr}", out.status);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = json["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["path"] == big_path.display().to_string()), "{errors:?}");
    for f in ["Small", "Other"] {
        let n = read_maildir(&env.path("dst"), Layout::MaildirPP).into_iter().filter(|m| m.folder == f).count();
        assert_eq!(n, 1, "folder {f} completes");
    }
}

/// Issue 17: write errors on the mbox path (here a file size limit, as a full disk would)
/// fail the folder: its messages count as failed, none as transferred, and nothing is left.
#[test]
fn mbox_write_errors_count_messages_as_failed() {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new();
    let body = "y".repeat(2000) + "\n";
    let msgs: Vec<Vec<u8>> = (0..200).map(|i| message(&format!("m {i}"), &body)).collect();
    let mb: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    let src = env.write("src.mbox", &make_mbox(&mb));
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("mailmover"));
    cmd.args(["sync", src.to_str().unwrap(), &format!("mbox:{}", env.path("dst.mbox").display()), "--json"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 64 << 10, rlim_max: 64 << 10 };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["transferred"], 0, "{json}");
    assert_eq!(json["failed"], 200, "every message of the folder failed: {json}");
    assert!(!env.path("dst.mbox").exists());
    assert_no_temporary_file(env.root());
}

/// Issue 17: a source mbox that shrinks after it was read, while mailmover waits for the
/// target's locks: nothing read from it is written, and the source is named.
#[test]
fn source_shrunk_before_the_commit_writes_nothing() {
    let env = TestEnv::new();
    let msgs: Vec<Vec<u8>> = (0..20).map(|i| message(&format!("s {i}"), "s\n")).collect();
    let mb: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    let src = env.write("src.mbox", &make_mbox(&mb));
    let dst = env.write("dst.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("old", "o\n"))]));
    let before = std::fs::read(&dst).unwrap();
    let (f, dotlock) = lock_like_procmail(&dst);
    let child = spawn_sync(src.to_str().unwrap(), &dst);
    wait_for_tmp(env.root(), "dst.mbox");
    let len = std::fs::metadata(&src).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&src).unwrap().set_len(len / 2).unwrap();
    drop(f);
    std::fs::remove_file(&dotlock).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = json["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["path"] == src.display().to_string()), "{errors:?}");
    assert_eq!(json["transferred"], 0);
    assert_eq!(std::fs::read(&dst).unwrap(), before, "the target is left as it was");
}
