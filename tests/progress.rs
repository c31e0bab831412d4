//! The progress line (issue 21, item 3), on a real terminal (`script` gives the run a pty):
//! folders, the current folder, messages of all, bytes, rate; `verify` and `inspect` have one
//! too; without a terminal there is none; it never stays on screen, not even when a second
//! Ctrl-C ends the run at once.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn script_available() -> bool {
    Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn maildir(env: &TestEnv, n: usize) {
    for d in ["src/new", "src/tmp"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    for i in 0..n {
        env.write(&format!("src/cur/{i}.m{i}:2,S"), &message(&format!("m{i}"), &"x".repeat(400)));
    }
}

/// Runs mailmover with `args` on a pseudo-terminal; what the terminal showed.
fn on_a_terminal(env: &TestEnv, args: &str) -> String {
    let bin = assert_cmd::cargo::cargo_bin("mailmover");
    let out = Command::new("script")
        .args(["-qfec", &format!("{} {args}", bin.display()), "/dev/null"])
        .current_dir(env.root())
        .env("TZ", "UTC")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// After the last progress line drawn, the line was cleared.
fn cleared_after_the_last_line(screen: &str, verb: &str) -> bool {
    screen.rfind(&format!("{verb} folders")).is_some_and(|at| screen[at..].contains("\x1b[2K"))
}

#[test]
fn on_a_terminal_the_progress_line_says_where_the_run_is_then_goes() {
    if !script_available() {
        return;
    }
    let env = TestEnv::new();
    maildir(&env, 500);
    let screen = on_a_terminal(&env, "sync maildir:src maildir:dst");
    // A folder begun is drawn at once: folders done of all, the folder, messages of all.
    assert!(screen.contains("synced folders 0/1 (INBOX) | 0/500 messages | 0 B/"), "{screen:?}");
    assert!(cleared_after_the_last_line(&screen, "synced"), "{screen:?}");
    assert!(screen.contains("The run is complete"), "{screen:?}");
    let screen = on_a_terminal(&env, "verify maildir:src maildir:dst");
    assert!(screen.contains("verified folders 0/1 (INBOX) | 0/500 messages | 0 B/"), "{screen:?}");
    assert!(cleared_after_the_last_line(&screen, "verified"), "{screen:?}");
    let screen = on_a_terminal(&env, "inspect maildir:src");
    assert!(screen.contains("inspected folders 0/1 (INBOX) | 0/500 messages | 0 B/"), "{screen:?}");
    assert!(cleared_after_the_last_line(&screen, "inspected"), "{screen:?}");
    // Not on a terminal: no progress line at all.
    let piped = env.run(["sync", "maildir:src", "maildir:dst2"]);
    assert!(!piped.stderr.contains("folders 0/") && !piped.stderr.contains("synced folders"), "{}", piped.stderr);
}

/// A run of `sync maildir:src mbox:out.mbox` on a terminal, waiting for the target's dotlock
/// (held by this live process) with its progress line on screen: the `script` child, the
/// run's pid and the file the terminal is written to.
fn waiting_at_a_dotlock(env: &TestEnv) -> (std::process::Child, nix::unistd::Pid, std::path::PathBuf) {
    maildir(env, 50);
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    env.write("out.mbox.lock", format!("{}:{host}", std::process::id()).as_bytes());
    let log = env.path("screen");
    let bin = assert_cmd::cargo::cargo_bin("mailmover");
    let child = Command::new("script")
        .args(["-qfec", &format!("{} sync maildir:src mbox:out.mbox", bin.display()), log.to_str().unwrap()])
        .current_dir(env.root())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let shown =
        || std::fs::read_to_string(&log).unwrap_or_default().contains("synced folders 0/1 (INBOX) | 50/50 messages");
    while !shown() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(shown(), "no progress line was drawn: {:?}", std::fs::read_to_string(&log));
    // The run: the binary's process (not `script`'s), in this test's directory.
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.starts_with(bin.as_os_str().as_encoded_bytes())
                && String::from_utf8_lossy(&cmd).contains("mbox:out.mbox")
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|d| d == env.root())
        })
        .expect("the run's pid");
    (child, nix::unistd::Pid::from_raw(pid), log)
}

/// The first Ctrl-C ends a wait for a lock at once (not when the wait would have given up):
/// the run stops, says so, leaves the lock and writes nothing.
#[test]
fn a_first_ctrl_c_ends_a_lock_wait() {
    if !script_available() {
        return;
    }
    let env = TestEnv::new();
    let (mut child, pid, log) = waiting_at_a_dotlock(&env);
    let t0 = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    child.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "ended {:?} after the Ctrl-C", t0.elapsed());
    let screen = std::fs::read_to_string(&log).unwrap();
    assert!(screen.contains("Sync interrupted by SIGINT"), "{screen:?}");
    assert!(cleared_after_the_last_line(&screen, "synced"), "the progress line stayed: {screen:?}");
    assert!(env.path("out.mbox.lock").is_file() && !env.path("out.mbox").exists());
}

/// A second signal ends the run at once, the progress line cleared first. Both arrive before
/// the run can stop by itself: it is stopped while they are sent.
#[test]
fn a_second_signal_ends_the_run_with_the_line_cleared() {
    if !script_available() {
        return;
    }
    use nix::sys::signal::{Signal, kill};
    let env = TestEnv::new();
    let (mut child, pid, log) = waiting_at_a_dotlock(&env);
    kill(pid, Signal::SIGSTOP).unwrap();
    kill(pid, Signal::SIGINT).unwrap();
    kill(pid, Signal::SIGTERM).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    child.wait().unwrap();
    let screen = std::fs::read_to_string(&log).unwrap();
    assert!(!screen.contains("Sync interrupted"), "the second signal ended it at once: {screen:?}");
    assert!(
        cleared_after_the_last_line(&screen, "synced"),
        "the progress line stayed: {:?}",
        &screen[screen.len().saturating_sub(400)..]
    );
}

/// A cPanel account's `verify` and `inspect` draw the line too (every mailbox's folders).
#[test]
fn cpanel_verify_and_inspect_show_progress() {
    if !script_available() {
        return;
    }
    let env = TestEnv::new();
    copy_store(&fixtures().join("cpanel"), &env.path("cp"));
    restore_maildir_dirs(&env.path("cp"));
    let etc = "--source-etc cp/etc --target-etc new-etc";
    let r = env.run(format!("sync cpanel:cp/home/acct cpanel:new/acct {etc} --json").split(' ').collect::<Vec<_>>());
    r.expect_code(0);
    let screen = on_a_terminal(&env, &format!("verify cpanel:cp/home/acct cpanel:new/acct {etc}"));
    // Each mailbox adds its folders to the count, drawn as they come.
    assert!(screen.contains("verified folders ") && screen.contains(" messages | "), "{screen:?}");
    assert!(cleared_after_the_last_line(&screen, "verified"), "{screen:?}");
    let screen = on_a_terminal(&env, "inspect cpanel:cp/home/acct");
    assert!(screen.contains("inspected folders ") && screen.contains(" messages | "), "{screen:?}");
    assert!(cleared_after_the_last_line(&screen, "inspected"), "{screen:?}");
}
