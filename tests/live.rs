//! Sources that a live server changes while the run reads them.

mod common;

use common::*;

/// The server moves every message from new/ to cur/ (a client opened the folder) while the run
/// reads it: each message arrives once, and the next run only carries the new flags.
#[test]
fn messages_moved_to_cur_during_the_run_arrive_once() {
    let env = TestEnv::new();
    let n = 6000;
    for i in 0..n {
        env.write(
            &format!("src/new/{}.M{i}P7.host", 1_600_000_000 + i),
            &message(&format!("m {i}"), &"line\n".repeat(20)),
        );
    }
    restore_maildir_dirs(&env.path("src"));
    let src = env.path("src");
    let child = spawn(&env, &["sync", "maildir:src", "maildir:dst", "--json", "--jobs", "2"]);
    let mover = std::thread::spawn(move || {
        let mut moved = 0;
        for e in std::fs::read_dir(src.join("new")).unwrap().flatten() {
            let name = e.file_name().into_string().unwrap();
            if std::fs::rename(e.path(), src.join("cur").join(format!("{name}:2,S"))).is_ok() {
                moved += 1;
            }
        }
        moved
    });
    let out = child.wait_with_output().unwrap();
    assert!(mover.join().unwrap() > 0);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{text}");
    let count = |env: &TestEnv| read_maildir(&env.path("dst"), Layout::MaildirPP).len();
    assert_eq!(count(&env), n, "each message once: {text}");
    let again = env.sync("maildir:src", "maildir:dst", &[]);
    again.expect_code(0);
    assert_eq!(again.n("transferred"), 0);
    assert_eq!(count(&env), n);
    env.run(["verify", "maildir:src", "maildir:dst"]).expect_code(0);
}

/// Messages deleted from the source during the run are counted as gone, not as errors.
#[test]
fn messages_deleted_during_the_run_are_gone_not_failed() {
    let env = TestEnv::new();
    let n = 4000;
    for i in 0..n {
        env.write(
            &format!("src/cur/{}.M{i}P7.host:2,S", 1_600_000_000 + i),
            &message(&format!("m {i}"), &"line\n".repeat(20)),
        );
    }
    restore_maildir_dirs(&env.path("src"));
    let src = env.path("src");
    let child = spawn(&env, &["sync", "maildir:src", "maildir:dst", "--json", "--jobs", "2"]);
    let deleter = std::thread::spawn(move || {
        let mut names: Vec<_> = std::fs::read_dir(src.join("cur")).unwrap().flatten().map(|e| e.path()).collect();
        names.sort();
        names.iter().rev().step_by(2).filter(|p| std::fs::remove_file(p).is_ok()).count()
    });
    let out = child.wait_with_output().unwrap();
    let deleted = deleter.join().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (t, gone) = (j["transferred"].as_u64().unwrap(), j["vanished_source"].as_u64().unwrap());
    assert_eq!(j["failed"].as_u64(), Some(0));
    assert!(t >= (n - deleted) as u64, "every message left in the source is copied: {j}");
    assert!(t + gone <= n as u64 && gone <= deleted as u64, "{j}");
    assert_eq!(read_maildir(&env.path("dst"), Layout::MaildirPP).len() as u64, t);
}
