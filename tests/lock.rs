//! One run per target (issue 17, point 3), end to end: a second run is refused at once naming
//! the lock file and the holder's pid, or waits with `--lock-wait`; two runs started together
//! copy every message once; a killed holder blocks nobody; a FIFO or symlink planted at the
//! lock's path is refused; batch rows and cPanel homes are locked; a dry run creates no lock
//! file, and no reader takes a lock file for a folder.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// An mbox of `n` messages with distinct subjects.
fn big_mbox(env: &TestEnv, name: &str, n: usize) -> (PathBuf, Vec<Vec<u8>>) {
    let msgs: Vec<Vec<u8>> =
        (0..n).map(|i| message(&format!("lock {i}"), &format!("body {i}\n{}\n", "x".repeat(200)))).collect();
    let entries: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    (env.write(name, &make_mbox(&entries)), msgs)
}

/// Waits until the run writing the Maildir `root` has put messages in place (it locked the
/// target before anything else).
fn wait_for_copies(root: &Path) {
    let t0 = Instant::now();
    let count = || -> usize {
        ["new", "cur"].iter().filter_map(|s| std::fs::read_dir(root.join(s)).ok()).map(|d| d.count()).sum()
    };
    while count() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no copies in {}", root.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every source message is in the target exactly once (and nothing else is).
#[track_caller]
fn exactly_once(root: &Path, msgs: &[Vec<u8>]) {
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for m in msgs {
        *want.entry(sha256(m)).or_default() += 1;
    }
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for m in read_maildir(root, Layout::MaildirPP) {
        *got.entry(sha256(&m.bytes)).or_default() += 1;
    }
    assert!(got == want, "{} messages in the target for {} in the source", got.values().sum::<usize>(), msgs.len());
}

fn hold(path: &Path) -> nix::fcntl::Flock<File> {
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e).unwrap()
}

/// A second run while the first holds the lock exits 2 at once, naming the lock file and the
/// first run's pid; one with `--lock-wait` waits and then finds nothing left to do; the
/// target holds every message once.
#[test]
fn second_run_refused_or_waits() {
    let env = TestEnv::new();
    let (src, msgs) = big_mbox(&env, "src.mbox", 6000);
    let s = format!("mbox:{}", src.display());
    let lock = env.path("dst/mailmover.lock");
    let a = spawn(&env, &["sync", &s, "maildir:dst", "-q", "--json"]);
    wait_for_copies(&env.path("dst"));
    let apid = Pid::from_raw(a.id() as i32);
    kill(apid, Signal::SIGSTOP).unwrap();

    let t0 = Instant::now();
    let b = env.sync(&s, "maildir:dst", &[]);
    b.expect_code(2);
    assert!(t0.elapsed() < Duration::from_secs(30), "the refusal was not at once");
    assert!(b.stderr.contains("dst/mailmover.lock"), "the lock file is not named: {}", b.stderr);
    assert!(b.stderr.contains(&format!("pid {}", a.id())), "the holder's pid is not named: {}", b.stderr);
    // With --json the refusal is one error object (docs/json.md).
    let e = b.json();
    assert_eq!(
        (e["schema"].as_str(), e["error"]["kind"].as_str(), e["exit"].as_u64()),
        (Some("mailmover.error/1"), Some("locked"), Some(2))
    );

    let c = env.sync(&s, "maildir:dst", &["--lock-wait", "0.3"]);
    c.expect_code(2);
    assert!(c.stderr.contains("after waiting 0.3 s"), "{}", c.stderr);

    let waiter = spawn(&env, &["sync", &s, "maildir:dst", "--json", "--lock-wait", "120"]);
    std::thread::sleep(Duration::from_millis(500));
    let mut waiter = waiter;
    assert!(waiter.try_wait().unwrap().is_none(), "--lock-wait did not wait");
    kill(apid, Signal::SIGCONT).unwrap();
    finish(a).expect_code(0);
    let w = finish(waiter);
    w.expect_code(0);
    assert_eq!(w.n("transferred"), 0, "the first run copied everything");
    exactly_once(&env.path("dst"), &msgs);
    assert_eq!(std::fs::read(&lock).unwrap(), b"", "the lock file is never written");
}

/// Two runs started together into a Maildir and into an mbox file: whoever loses exits 2 (or
/// finds the work done), a third run copies nothing, and every message is there once.
#[test]
fn two_runs_at_once_copy_each_message_once() {
    let env = TestEnv::new();
    let (src, msgs) = big_mbox(&env, "src.mbox", 4000);
    let s = format!("mbox:{}", src.display());
    for dst in ["maildir:md", "mbox:out.mbox"] {
        let runs: Vec<Child> = (0..2).map(|_| spawn(&env, &["sync", &s, dst, "--json", "-q"])).collect();
        let runs: Vec<Run> = runs.into_iter().map(finish).collect();
        for r in &runs {
            assert!(r.code == 0 || r.code == 2, "exit {}: {}", r.code, r.stderr);
            if r.code == 2 {
                assert!(r.stderr.contains("holds this target's lock"), "{}", r.stderr);
            }
        }
        assert!(runs.iter().any(|r| r.code == 0), "neither run did the work");
        let third = env.sync(&s, dst, &[]);
        third.expect_code(0);
        assert_eq!(third.n("transferred"), 0);
    }
    exactly_once(&env.path("md"), &msgs);
    let mbox = read_mbox(&std::fs::read(env.path("out.mbox")).unwrap(), Variant::Mboxrd);
    let mut got: Vec<String> = mbox.iter().map(|m| sha256(&m.bytes)).collect();
    let mut want: Vec<String> = msgs.iter().map(|m| sha256(m)).collect();
    got.sort();
    want.sort();
    assert!(got == want, "{} messages in the mbox for {}", got.len(), want.len());
    assert!(env.path(".out.mbox.mailmover.lock").is_file(), "the mbox file's lock is beside it");
}

/// A run killed with SIGKILL leaves its lock file (and its pid) behind, and the next run is not
/// blocked by it.
#[test]
fn killed_holder_does_not_block() {
    let env = TestEnv::new();
    let (src, msgs) = big_mbox(&env, "src.mbox", 3000);
    let s = format!("mbox:{}", src.display());
    let lock = env.path("dst/mailmover.lock");
    let mut a = spawn(&env, &["sync", &s, "maildir:dst", "-q"]);
    wait_for_copies(&env.path("dst"));
    kill(Pid::from_raw(a.id() as i32), Signal::SIGKILL).unwrap();
    let _ = a.wait();
    assert!(lock.is_file(), "the lock file stays");
    env.sync(&s, "maildir:dst", &[]).expect_code(0);
    exactly_once(&env.path("dst"), &msgs);
}

/// A FIFO or a symlink at the lock file's path is refused before anything is written: exit 2,
/// no hang on the FIFO, nothing written through the symlink.
#[test]
fn planted_fifo_or_symlink_refused() {
    let env = TestEnv::new();
    let (src, _) = big_mbox(&env, "src.mbox", 3);
    let s = format!("mbox:{}", src.display());
    let victim = env.write("victim", b"not yours\n");
    for d in ["fifo", "link"] {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(env.path(&format!("{d}/{sub}"))).unwrap();
        }
    }
    nix::unistd::mkfifo(&env.path("fifo/mailmover.lock"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, env.path("link/mailmover.lock")).unwrap();
    std::os::unix::fs::symlink(&victim, env.path(".out.mbox.mailmover.lock")).unwrap();
    for (dst, what) in [("maildir:fifo", "FIFO"), ("maildir:link", "symlink"), ("mbox:out.mbox", "symlink")] {
        let t0 = Instant::now();
        let r = env.sync(&s, dst, &[]);
        r.expect_code(2);
        assert!(t0.elapsed() < Duration::from_secs(30));
        assert!(r.stderr.contains("mailmover.lock") && r.stderr.contains(what), "{dst}: {}", r.stderr);
    }
    assert!(read_maildir(&env.path("fifo"), Layout::MaildirPP).is_empty());
    assert!(read_maildir(&env.path("link"), Layout::MaildirPP).is_empty());
    assert!(!env.path("out.mbox").exists());
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours\n");
}

/// A batch row whose target is locked by another run fails with the reason; the other rows
/// are done.
#[test]
fn batch_row_with_a_locked_target_fails_alone() {
    let env = TestEnv::new();
    let (src, msgs) = big_mbox(&env, "src.mbox", 5);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("busy/{sub}"))).unwrap();
    }
    let held = hold(&env.path("busy/mailmover.lock"));
    let file =
        env.write("rows.csv", format!("mbox:{0},maildir:busy\nmbox:{0},maildir:free\n", src.display()).as_bytes());
    let r = env.run(["batch", file.to_str().unwrap(), "--report-dir", "reports", "--json"]);
    r.expect_code(1);
    let j = r.json();
    assert_eq!(j.get("failed").and_then(|v| v.as_u64()), Some(1), "{j}");
    exactly_once(&env.path("free"), &msgs);
    assert!(read_maildir(&env.path("busy"), Layout::MaildirPP).is_empty());
    let reports: Vec<String> = std::fs::read_dir(env.path("reports"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let failed = reports.iter().find(|t| t.contains("\"complete\": false")).expect("a failed row's report");
    assert!(
        failed.contains("busy/mailmover.lock") && failed.contains(&format!("pid {}", std::process::id())),
        "{failed}"
    );
    drop(held);
}

/// A dry run creates no lock file (nor anything else), refuses a target a writer holds, and
/// no reader (`inspect`, a sync from the target) takes a lock file for a folder.
#[test]
fn dry_runs_and_readers_leave_lock_files_alone() {
    let env = TestEnv::new();
    let src = env.fixture("maildir/dovecot-keywords");
    let s = format!("maildir:{}", src.display());
    env.run(["sync", &s, "maildir:new-md", "--dry-run"]).expect_code(0);
    assert!(!env.path("new-md").exists());
    env.sync(&s, "maildir:md", &[]).expect_code(0);
    std::fs::remove_file(env.path("md/mailmover.lock")).unwrap();
    let before = snapshot(&env.path("md"));
    env.run(["sync", &s, "maildir:md", "--dry-run"]).expect_code(0);
    assert_unchanged(&before, &env.path("md"), "the target after a dry run");
    let held = hold(&env.path("md/mailmover.lock"));
    env.run(["sync", &s, "maildir:md", "--dry-run"]).expect_code(2);
    drop(held);

    // Every kind of target, then read back as a source: the same folders, no problems.
    let folders = |store: &str| -> Vec<String> {
        let r = env.run(["inspect", store, "--json"]);
        r.expect_code(0);
        let j = r.json();
        let mut v: Vec<String> = j["folders"].as_array().unwrap().iter().map(|f| f["name"].to_string()).collect();
        v.sort();
        v
    };
    let multi = env.fixture("mbox/utf7-dir");
    let m = format!("mbox:{}", multi.display());
    let want = folders(&m);
    for dst in ["maildir:t-md", "mbox:t-mbox-dir"] {
        env.sync(&m, dst, &[]).expect_code(0);
        assert_eq!(folders(dst), want, "{dst}");
        let again = format!("maildir:again-{}", &dst[..1]);
        env.sync(dst, &again, &[]).expect_code(0);
        assert_eq!(folders(&again), want, "{dst} as a source");
    }
    assert!(env.path("t-md/mailmover.lock").is_file() && env.path("t-mbox-dir/.mailmover.lock").is_file());
    std::fs::create_dir(env.path("box")).unwrap();
    env.sync(&s, "mbox:box/INBOX", &[]).expect_code(0);
    assert!(env.path("box/.INBOX.mailmover.lock").is_file());
    assert_eq!(folders("mbox:box"), vec!["\"INBOX\"".to_string()]);
}

/// A cPanel target is locked at its home.
#[test]
fn cpanel_home_is_locked() {
    let env = TestEnv::new();
    let st = Command::new("cp").arg("-a").arg(fixtures().join("cpanel")).arg(env.path("src")).status().unwrap();
    assert!(st.success());
    restore_maildir_dirs(&env.path("src"));
    let home = env.path("dst/home/newacct");
    std::fs::create_dir_all(&home).unwrap();
    let args = |extra: &'static [&'static str]| {
        let mut v: Vec<String> = ["sync", "cpanel:src/home/acct", "cpanel:dst/home/newacct", "--json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["--source-etc", "src/etc", "--target-etc", "dst/etc"].iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let held = hold(&home.join(".mailmover.lock"));
    let r = env.run(args(&[]));
    r.expect_code(2);
    assert!(r.stderr.contains("newacct/.mailmover.lock"), "{}", r.stderr);
    assert!(!home.join("mail").exists(), "nothing written");
    drop(held);
    env.run(args(&[])).expect_code(0);
    let r = env.run(["inspect", "cpanel:dst/home/newacct", "--json"]);
    r.expect_code(0);
    assert!(!r.stdout.contains("mailmover.lock"), "{}", r.stdout);
}

/// Dovecot does not take a lock file for a mailbox: `doveadm mailbox list` of a Maildir, an
/// mbox directory and a directory holding an mbox file target lists the source's folders only.
#[test]
fn dovecot_lists_no_lock_file() {
    if !require(Need::Doveadm) {
        return;
    }
    let env = TestEnv::new();
    let root = nix::unistd::geteuid().is_root();
    std::fs::set_permissions(env.root(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let src = env.fixture("mbox/utf7-dir");
    let s = format!("mbox:{}", src.display());
    env.sync(&s, "maildir:md", &[]).expect_code(0);
    env.sync(&s, "mbox:mb", &[]).expect_code(0);
    std::fs::create_dir(env.path("bx")).unwrap();
    env.fixture("example.mbox");
    env.sync("example.mbox", "mbox:bx/INBOX", &[]).expect_code(0);
    let conf = env.write("dc.conf", b"namespace inbox {\n  inbox = yes\n  separator = /\n}\n");
    std::fs::create_dir(env.path("home")).unwrap();
    if root {
        assert!(Command::new("chown").args(["-R", "65534:65534"]).arg(env.root()).status().unwrap().success());
    }
    let p = |r: &str| env.path(r).display().to_string();
    for loc in [
        format!("maildir:{}", p("md")),
        format!("mbox:{0}:INBOX={0}/INBOX", p("mb")),
        format!("mbox:{0}:INBOX={0}/INBOX", p("bx")),
    ] {
        let mut c = Command::new("doveadm");
        c.arg("-c").arg(&conf).args(["-o", &format!("mail_location={loc}"), "-o", &format!("mail_home={}", p("home"))]);
        c.args(["-o", "mailbox_list_index=no"]);
        if root {
            c.args(["-o", "mail_uid=65534", "-o", "mail_gid=65534"]).env("USER", "nobody");
        }
        let out = c.args(["mailbox", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{loc}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(list.contains("INBOX") && !list.contains("lock"), "{loc}: {list}");
    }
}

/// The lock file is created 0600 with the owner of the target's other files (`--owner`).
#[test]
fn lock_file_gets_the_targets_owner() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    let s = format!("mbox:{}", src.display());
    let owner = if nix::unistd::geteuid().is_root() {
        (65534, 65534)
    } else {
        (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
    };
    let spec = format!("{}:{}", owner.0, owner.1);
    env.sync(&s, "maildir:md", &["--owner", &spec]).expect_code(0);
    env.sync(&s, "mbox:box/INBOX", &["--owner", &spec]).expect_code(0);
    for l in ["md/mailmover.lock", "box/.INBOX.mailmover.lock"] {
        let m = std::fs::symlink_metadata(env.path(l)).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (owner.0, owner.1, 0o600), "{l}");
        let message = std::fs::symlink_metadata(env.path("md/mailmover-cache")).unwrap();
        assert_eq!((m.uid(), m.gid()), (message.uid(), message.gid()), "{l}: not the owner of the other files");
    }
}

/// The lock file is never written: an unchanged re-run leaves every target file as it was,
/// the lock file's times included.
#[test]
fn unchanged_rerun_leaves_the_lock_file_alone() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    let s = format!("mbox:{}", src.display());
    for (dst, lock) in [("maildir:md", "md/mailmover.lock"), ("mbox:box/INBOX", "box/.INBOX.mailmover.lock")] {
        env.sync(&s, dst, &[]).expect_code(0);
        let root = env.path(lock.split('/').next().unwrap());
        let before = snapshot(&root);
        let stamp = |m: std::fs::Metadata| (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec(), m.len());
        let lock_before = stamp(std::fs::metadata(env.path(lock)).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        let r = env.sync(&s, dst, &[]);
        r.expect_code(0);
        assert_eq!(r.n("transferred"), 0);
        assert_unchanged(&before, &root, "the target after an unchanged re-run");
        assert_eq!(stamp(std::fs::metadata(env.path(lock)).unwrap()), lock_before, "{lock} was written");
    }
}
