//! `sync --folders-only` (imapsync's --justfolders): the target's folder tree, empty, and its
//! subscriptions; no message copied, nothing deleted; a later sync fills the folders as it
//! fills new ones (UIDs carried included).

mod common;

use std::path::Path;

use common::*;

/// A Maildir source: INBOX, Archive and Archive/2019 with a message each, Empty with none, and
/// a `dovecot-uidlist` (UIDVALIDITY 111) in Archive/2019.
fn source(env: &TestEnv) {
    for (dir, msg) in [
        ("src", Some("inbox")),
        ("src/.Archive", Some("archive")),
        ("src/.Archive.2019", Some("old")),
        ("src/.Empty", None),
    ] {
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(env.path(&format!("{dir}/{s}"))).unwrap();
        }
        if let Some(m) = msg {
            env.write(&format!("{dir}/cur/1.{m}:2,S"), &message(m, "body\n"));
        }
    }
    env.write("src/.Archive.2019/dovecot-uidlist", b"3 V111 N8\n7 :1.old\n");
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn subscriptions(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(p).unwrap().lines().skip(1).map(str::to_string).collect();
    v.retain(|l| !l.is_empty());
    v.sort();
    v
}

/// Into a Maildir, in both layouts: every folder with `cur/ new/ tmp/`, no message, no state
/// (the next sync reads each folder as new), the subscriptions; mail already in the target is
/// left alone. Then a plain sync fills every folder and carries the source's UIDs.
#[test]
fn a_maildir_target_gets_its_folders_then_a_sync_fills_them() {
    for (layout, dirs) in
        [("maildir++", ["", ".Archive", ".Archive.2019", ".Empty"]), ("fs", ["", "Archive", "Archive/2019", "Empty"])]
    {
        let env = TestEnv::new();
        source(&env);
        env.write("dst/cur/5.mine:2,S", &message("delivered here", "x\n"));
        for s in ["dst/new", "dst/tmp"] {
            std::fs::create_dir_all(env.path(s)).unwrap();
        }
        let r = env.sync("maildir:src", "maildir:dst", &["--folders-only", "--layout", layout]);
        r.expect_code(0);
        let j = r.json();
        assert_eq!(
            (j["folders_only"].as_bool(), j["folders_created"].as_u64()),
            (Some(true), Some(3)),
            "{layout}: {j}"
        );
        assert_eq!((r.n("folders"), r.n("transferred"), r.n("deleted_target")), (4, 0, 0), "{layout}");
        assert_eq!(j["complete"], false, "no message is in the target yet");
        for d in dirs {
            let folder = env.path("dst").join(d);
            for s in ["cur", "new", "tmp"] {
                assert!(folder.join(s).is_dir(), "{layout}: {}/{s}", folder.display());
            }
            let files: Vec<String> = names(&folder)
                .into_iter()
                .filter(|n| n.starts_with("mailmover-") || n.starts_with("dovecot-"))
                .collect();
            assert!(files.is_empty() || d.is_empty(), "{layout} {d}: {files:?}");
            if !d.is_empty() {
                assert!(names(&folder.join("cur")).is_empty(), "{layout} {d}: a message copied");
            }
        }
        assert_eq!(names(&env.path("dst/cur")), ["5.mine:2,S"], "{layout}: mail in the target is kept, none added");
        assert_eq!(subscriptions(&env.path("dst/subscriptions")), ["Archive", "Archive\t2019", "Empty"]);

        let r = env.sync("maildir:src", "maildir:dst", &["--layout", layout]);
        r.expect_code(0);
        assert_eq!(r.n("transferred"), 3, "{layout}");
        let mut got: Vec<(String, String)> =
            read_maildir(&env.path("dst"), if layout == "fs" { Layout::Fs } else { Layout::MaildirPP })
                .into_iter()
                .map(|m| {
                    (
                        m.folder,
                        String::from_utf8_lossy(&m.bytes)
                            .lines()
                            .find(|l| l.starts_with("Subject"))
                            .unwrap()
                            .to_string(),
                    )
                })
                .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("Archive".to_string(), "Subject: archive".to_string()),
                ("Archive/2019".into(), "Subject: old".into()),
                ("INBOX".into(), "Subject: delivered here".into()),
                ("INBOX".into(), "Subject: inbox".into())
            ],
            "{layout}"
        );
        let uids = std::fs::read_to_string(env.path("dst").join(dirs[2]).join("dovecot-uidlist")).unwrap();
        assert!(uids.starts_with("3 V111 N8") && uids.contains("\n7 :"), "{layout}: the source's UIDs: {uids}");
    }
}

/// Into an mbox directory: an empty mbox file per folder, where the layout puts it (a folder
/// of subfolders only is a directory), and `.subscriptions`. The sync after it fills the
/// files, and the source's UIDVALIDITY goes into the one that had none yet, as into a new one.
#[test]
fn an_mbox_directory_gets_empty_files_then_a_sync_fills_them() {
    let env = TestEnv::new();
    source(&env);
    let r = env.sync("maildir:src", "mbox:dst", &["--folders-only", "--exclude", "^Archive$"]);
    r.expect_code(0);
    assert_eq!(r.json()["folders_created"].as_u64(), Some(3), "{}", r.stdout);
    for f in ["INBOX", "Archive/2019", "Empty"] {
        let p = env.path("dst").join(f);
        assert!(p.is_file() && std::fs::metadata(&p).unwrap().len() == 0, "{f}: an empty mbox file");
    }
    assert!(env.path("dst/Archive").is_dir());
    assert_eq!(names(&env.path("dst/Archive")), ["2019"], "no state beside the new files");
    assert_eq!(subscriptions(&env.path("dst/.subscriptions")), ["Archive\t2019", "Empty"]);

    let r = env.sync("maildir:src", "mbox:dst", &["--exclude", "^Archive$"]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 2);
    let old = std::fs::read_to_string(env.path("dst/Archive/2019")).unwrap();
    assert!(old.contains("Subject: old") && old.contains("X-IMAPbase: 111 "), "{old}");
    assert!(old.contains("X-UID: 7\n"), "{old}");
    assert!(std::fs::read_to_string(env.path("dst/INBOX")).unwrap().contains("Subject: inbox"));

    // From a Dovecot mbox the same.
    env.write(
        "mb/Work",
        b"From x@y Mon Jan  1 00:00:00 2024\nX-IMAPbase: 333 0000000004\nX-UID: 4\nStatus: RO\nContent-Length: 2\n\nx\n\n",
    );
    env.sync("mbox:mb", "mbox:from-mbox", &["--folders-only"]).expect_code(0);
    assert_eq!(std::fs::metadata(env.path("from-mbox/Work")).unwrap().len(), 0);
    env.sync("mbox:mb", "mbox:from-mbox", &[]).expect_code(0);
    let work = std::fs::read_to_string(env.path("from-mbox/Work")).unwrap();
    assert!(work.contains("X-IMAPbase: 333 0000000004") && work.contains("X-UID: 4\n"), "{work}");
}

/// A dry run lists the folders it would make and writes nothing; once they are there it says
/// so. The summary on stderr says what the run was.
#[test]
fn a_dry_run_lists_the_folders_it_would_make() {
    let env = TestEnv::new();
    source(&env);
    let dry = env.run(["sync", "maildir:src", "maildir:dst", "--folders-only", "--dry-run"]);
    dry.expect_code(0);
    for (name, path) in
        [("INBOX", "dst"), ("Archive", "dst/.Archive"), ("Archive/2019", "dst/.Archive.2019"), ("Empty", "dst/.Empty")]
    {
        assert!(dry.stdout.contains(&format!("plan: would make folder {name}: {path}\n")), "{}", dry.stdout);
    }
    assert!(dry.stderr.contains("  would make ............ 4\n"), "{}", dry.stderr);
    assert!(dry.stderr.trim_end().ends_with("dry run: nothing was written"), "{}", dry.stderr);
    assert!(!env.path("dst").exists());

    let made = env.run(["sync", "maildir:src", "maildir:dst", "--folders-only"]);
    made.expect_code(0);
    assert!(
        made.stderr.starts_with("Folders only: the target's folder tree is made; no message is copied"),
        "{}",
        made.stderr
    );
    assert!(made.stderr.contains("  made .................. 4\n"), "{}", made.stderr);
    let again = env.run(["sync", "maildir:src", "maildir:dst", "--folders-only", "--dry-run"]);
    assert!(!again.stdout.contains("would make folder"), "{}", again.stdout);
    assert!(
        again.stdout.contains("plan: Archive/2019 -> Archive/2019: dst/.Archive.2019 is there already"),
        "{}",
        again.stdout
    );
    assert!(again.stderr.contains("  there already ......... 4\n"), "{}", again.stderr);
}

/// The folders made are in the log file (and the end line says how many) and in the audit log.
#[test]
fn the_folders_made_are_logged() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    source(&env);
    let key = env.write("key", "ab".repeat(32).as_bytes());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = ["--folders-only", "--log-file", "run.log", "--audit-log", "audit.log", "--audit-key-file", "key"];
    env.sync("maildir:src", "maildir:dst", &args).expect_code(0);
    let log = std::fs::read_to_string(env.path("run.log")).unwrap();
    assert!(log.contains("] make folder Archive/2019: dst/.Archive.2019\n"), "{log}");
    assert!(log.lines().last().unwrap().contains("] end folders only: 4 made; exit 0;"), "{log}");
    let audit = std::fs::read_to_string(env.path("audit.log")).unwrap();
    assert!(audit.contains(r#""type":"folder""#) && audit.contains(r#""path":"dst/.Archive.2019""#), "{audit}");
    env.run(["audit-verify", "audit.log", "--audit-key-file", "key"]).expect_code(0);
}

/// It deletes nothing, so it takes no deletion option; and a cPanel account's mailboxes are
/// made with their mail.
#[test]
fn deletion_and_cpanel_accounts_are_refused() {
    let env = TestEnv::new();
    source(&env);
    for extra in ["--delete", "--mirror"] {
        let r = env.run(["sync", "maildir:src", "maildir:dst", "--folders-only", extra]);
        r.expect_code(2);
        assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
    }
    let r = env.run(["sync", "maildir:src", "cpanel:home", "--folders-only"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--folders-only is for mbox and Maildir stores"), "{}", r.stderr);
    assert!(!env.path("dst").exists() && !env.path("home").exists());
}
