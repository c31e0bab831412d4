//! Interrupted runs (issue 17, point 10), end to end: SIGTERM, SIGINT and SIGHUP sent while a
//! sync is copying stop it at a safe point with exit 128 + the signal and a summary that says
//! so; the target holds only whole messages, nothing is left in any tmp/, and the next run
//! finishes the job with every source message exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn messages(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| message(&format!("{tag} {i}"), &format!("body {i}\n{}\n", "lorem ipsum ".repeat(30)))).collect()
}

/// Message files of a Maildir tree (new/ and cur/ of every folder).
fn count_files(root: &Path) -> usize {
    ["new", "cur"].iter().filter_map(|s| std::fs::read_dir(root.join(s)).ok()).map(|d| d.count()).sum()
}

/// Every file under a `tmp/` of `root`.
fn tmp_files(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().parent().is_some_and(|p| p.ends_with("tmp")))
        .map(|e| e.path().display().to_string())
        .collect()
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn multiset<'a>(it: impl IntoIterator<Item = &'a [u8]>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for b in it {
        *m.entry(sha256(b)).or_default() += 1;
    }
    m
}

/// The run's summary says it was interrupted by `sig`, and its exit code is 128 + `sig`.
#[track_caller]
fn stopped_by(r: &Run, sig: Signal) {
    r.expect_code(128 + sig as i32);
    assert!(r.stderr.contains("interrupted by") && r.stderr.contains(sig.as_str()), "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["interrupted"], true, "{j}");
    assert_eq!(j["signal"], sig as i32, "{j}");
    assert_eq!(j["complete"], false, "{j}");
}

#[test]
fn signals_stop_a_maildir_sync_at_a_safe_point() {
    let env = TestEnv::new();
    let n = 12_000;
    let msgs = messages("sig", n);
    let entries: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    let src = env.write("src.mbox", &make_mbox(&entries));
    let s = format!("mbox:{}", src.display());
    let want = multiset(msgs.iter().map(Vec::as_slice));
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let dst = env.path(sig.as_str());
        let d = format!("maildir:{}", dst.display());
        let child = spawn(&env, &["sync", &s, &d, "--json"]);
        until("the first copies", || count_files(&dst) > 0);
        kill(Pid::from_raw(child.id() as i32), sig).unwrap();
        let r = finish(child);
        stopped_by(&r, sig);
        assert!(tmp_files(&dst).is_empty(), "{sig}: left in tmp/: {:?}", tmp_files(&dst));
        assert!(!dst.join("mailmover-state").exists(), "{sig}: a cut-short folder saved its state");
        let got = read_maildir(&dst, Layout::MaildirPP);
        assert!(got.len() < n, "{sig}: the run was not stopped early ({} of {n})", got.len());
        assert_eq!(got.len() as u64, r.n("transferred"), "{sig}: the summary counts what is there");
        for (h, k) in multiset(got.iter().map(|m| m.bytes.as_slice())) {
            assert!(k == 1 && want.contains_key(&h), "{sig}: a target message is not one whole source message");
        }
        let again = env.sync(&s, &d, &[]);
        again.expect_code(0);
        assert_eq!(again.n("transferred") as usize, n - got.len(), "{sig}");
        let all = read_maildir(&dst, Layout::MaildirPP);
        assert!(multiset(all.iter().map(|m| m.bytes.as_slice())) == want, "{sig}: not every message exactly once");
    }
}

/// An mbox target being written when the signal comes is left as it was (here: not created),
/// without its temporary file or a folder state; the next run writes it whole.
#[test]
fn signal_leaves_an_mbox_target_as_it_was() {
    let env = TestEnv::new();
    let n = 15_000;
    let msgs = messages("mbox", n);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("src/{sub}"))).unwrap();
    }
    for (i, m) in msgs.iter().enumerate() {
        env.write(&format!("src/cur/{}.M{i}P1Q{i}.host:2,S", 1_500_000_000 + i), m);
    }
    let others = || -> BTreeSet<String> {
        std::fs::read_dir(env.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.contains("out.mbox") && f != ".out.mbox.mailmover.lock")
            .collect()
    };
    let child = spawn(&env, &["sync", "maildir:src", "mbox:out.mbox", "--json"]);
    // The new mbox is being written (under a temporary name).
    until("the temporary mbox", || !others().is_empty());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let r = finish(child);
    stopped_by(&r, Signal::SIGTERM);
    assert_eq!(others(), BTreeSet::new(), "half-written files left");
    assert_eq!((r.n("transferred"), r.n("bytes_transferred")), (0, 0), "counted as copied, but not written");
    env.sync("maildir:src", "mbox:out.mbox", &[]).expect_code(0);
    let got = read_mbox(&std::fs::read(env.path("out.mbox")).unwrap(), Variant::Mboxrd);
    let stripped: Vec<Vec<u8>> = got.iter().map(|m| strip_internal(&m.bytes)).collect();
    assert!(
        multiset(stripped.iter().map(Vec::as_slice)) == multiset(msgs.iter().map(Vec::as_slice)),
        "{} messages in the mbox for {n}",
        got.len()
    );
}

/// A batch stops starting rows after a signal and exits 128 + the signal; the row it cut short
/// reports so, and a re-run finishes every row.
#[test]
fn signal_stops_a_batch() {
    let env = TestEnv::new();
    let msgs = messages("batch", 8000);
    let entries: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    let src = env.write("src.mbox", &make_mbox(&entries));
    let rows = format!("mbox:{0},maildir:a\nmbox:{0},maildir:b\n", src.display());
    let file = env.write("rows.csv", rows.as_bytes());
    let f = file.to_str().unwrap();
    let child = spawn(&env, &["batch", f, "--report-dir", "reports", "--json", "--jobs", "1"]);
    until("the first copies", || count_files(&env.path("a")) + count_files(&env.path("b")) > 0);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let r = finish(child);
    r.expect_code(128 + Signal::SIGTERM as i32);
    assert_eq!(r.json()["interrupted"], true);
    assert!(r.stderr.contains("interrupted by SIGTERM"), "{}", r.stderr);
    assert!(count_files(&env.path("a")) == 0 || count_files(&env.path("b")) == 0, "a second row was started");
    env.run(["batch", f, "--report-dir", "reports", "--jobs", "1"]).expect_code(0);
    let want = multiset(msgs.iter().map(Vec::as_slice));
    for d in ["a", "b"] {
        let got = read_maildir(&env.path(d), Layout::MaildirPP);
        assert!(multiset(got.iter().map(|m| m.bytes.as_slice())) == want, "{d}: not every message exactly once");
    }
}

/// A second signal ends the run at once (its default action); the next run still finishes
/// the job exactly.
#[test]
fn a_second_signal_ends_the_run_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let env = TestEnv::new();
    let n = 8000;
    let msgs = messages("twice", n);
    let entries: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    let src = env.write("src.mbox", &make_mbox(&entries));
    let s = format!("mbox:{}", src.display());
    let mut child = spawn(&env, &["sync", &s, "maildir:dst", "-q"]);
    until("the first copies", || count_files(&env.path("dst")) > 0);
    // Both signals are pending when the run goes on: each reaches the handler, the second
    // finds the first recorded.
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    kill(pid, Signal::SIGTERM).unwrap();
    kill(pid, Signal::SIGINT).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    let st = child.wait().unwrap();
    assert!(matches!(st.signal(), Some(libc::SIGTERM | libc::SIGINT)), "not killed by the second signal: {st:?}");
    env.sync(&s, "maildir:dst", &[]).expect_code(0);
    let got = read_maildir(&env.path("dst"), Layout::MaildirPP);
    assert!(multiset(got.iter().map(|m| m.bytes.as_slice())) == multiset(msgs.iter().map(Vec::as_slice)));
}

/// A cPanel account (a home directory, then a pkgacct archive of it) stops between messages
/// too: exit 128 + the signal, no metadata written after the cut, nothing in any tmp/, and
/// the next run completes every mailbox and the metadata.
#[test]
fn signal_stops_a_cpanel_account() {
    let env = TestEnv::new();
    let st = Command::new("cp").arg("-a").arg(fixtures().join("cpanel")).arg(env.path("src")).status().unwrap();
    assert!(st.success());
    restore_maildir_dirs(&env.path("src"));
    let info = "home/acct/mail/example.com/info";
    let msgs = messages("cpanel", 6000);
    for (i, m) in msgs.iter().enumerate() {
        env.write(&format!("src/{info}/cur/{}.M{i}P7Q{i}.host:2,S", 1_500_000_000 + i), m);
    }
    let want =
        multiset(read_maildir(&env.path(&format!("src/{info}")), Layout::MaildirPP).iter().map(|m| m.bytes.as_slice()));
    // The archive: cpmove-acct/homedir/… plus the system files, as pkgacct writes it.
    std::fs::create_dir_all(env.path("stage/cpmove-acct")).unwrap();
    for (from, to) in [("src/home/acct", "homedir"), ("src/etc/valiases", "va"), ("src/etc/vfilters", "vf")] {
        let st =
            Command::new("cp").arg("-a").arg(env.path(from)).arg(env.path(&format!("stage/cpmove-acct/{to}"))).status();
        assert!(st.unwrap().success());
    }
    let st = Command::new("tar")
        .arg("-C")
        .arg(env.path("stage"))
        .arg("-czf")
        .arg(env.path("cpmove-acct.tar.gz"))
        .arg("cpmove-acct")
        .status();
    assert!(st.unwrap().success());
    for (n, src) in [(1, "cpanel:src/home/acct"), (2, "cpanel:cpmove-acct.tar.gz")] {
        let home = format!("dst{n}/home/newacct");
        let etc = format!("dst{n}/etc");
        std::fs::create_dir_all(env.path(&home)).unwrap();
        let d = format!("cpanel:{home}");
        let args = ["sync", src, &d, "--json", "--no-fsync", "--source-etc", "src/etc", "--target-etc", &etc];
        let mut child = spawn(&env, &args);
        let target_box = env.path(&format!("{home}/mail/example.com/info"));
        until("the first copies", || count_files(&target_box) > 0 || child.try_wait().unwrap().is_some());
        assert!(child.try_wait().unwrap().is_none(), "{src}: finished before the signal: {:?}", finish(child));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let r = finish(child);
        stopped_by(&r, Signal::SIGTERM);
        assert!(count_files(&target_box) < msgs.len(), "{src}: not stopped early");
        assert!(tmp_files(&env.path(&home)).is_empty(), "{src}: left in tmp/");
        assert!(
            !env.path(&format!("{home}/etc")).exists() && !env.path(&etc).exists(),
            "{src}: metadata written after the signal"
        );
        for m in read_maildir(&target_box, Layout::MaildirPP) {
            assert!(want.contains_key(&sha256(&m.bytes)), "{src}: a message that is no source message");
        }
        let again = env.run(&args[..args.len()]);
        again.expect_code(0);
        let got = read_maildir(&target_box, Layout::MaildirPP);
        assert!(multiset(got.iter().map(|m| m.bytes.as_slice())) == want, "{src}: not every message exactly once");
        assert!(env.path(&format!("{home}/etc/example.com/passwd")).is_file(), "{src}: no metadata after the re-run");
    }
}

/// A signal while the run waits for another program's write lock on its mbox source: the run
/// stops there, at once, without reading the source unlocked and without writing anything.
#[test]
fn a_signal_during_a_source_lock_wait_stops_before_reading() {
    use std::os::fd::AsRawFd;
    let env = TestEnv::new();
    let msgs = messages("locked", 20);
    let entries: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    let src = env.write("src.mbox", &make_mbox(&entries));
    // A classic POSIX write lock, as procmail and Dovecot take it, held by this process.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&src).unwrap();
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) }, 0, "test lock");
    let child = spawn(&env, &["sync", "src.mbox", "maildir:dst", "--json"]);
    // The run is waiting (it waits up to 10 s for a writer).
    std::thread::sleep(Duration::from_millis(1000));
    let t0 = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let r = finish(child);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?} after the signal", t0.elapsed());
    stopped_by(&r, Signal::SIGINT);
    assert_eq!(count_files(&env.path("dst")), 0, "nothing written: {}", r.stdout);
    assert!(!r.stdout.contains("without a lock"), "{}", r.stdout);
    drop(f);
}
