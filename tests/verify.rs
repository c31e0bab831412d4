//! `mailmover verify`: a synced pair is ok; one deleted, re-flagged or re-dated target message
//! makes it exit 1 with exactly the matching counter at 1; verify never writes.

mod common;

use common::*;

/// A synced pair (example.mbox → Maildir) and the snapshot of both sides.
fn synced() -> (TestEnv, String) {
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    let s = src.to_str().unwrap().to_string();
    env.sync(&s, "out", &[]).expect_code(0);
    (env, s)
}

fn verify(env: &TestEnv, src: &str) -> Run {
    let snap_t = snapshot(&env.path("out"));
    let snap_s = snapshot(std::path::Path::new(src));
    let r = env.run(["verify", src, "out", "--json"]);
    assert_unchanged(&snap_t, &env.path("out"), "the target after verify");
    assert_unchanged(&snap_s, std::path::Path::new(src), "the source after verify");
    r
}

const COUNTERS: [&str; 4] = ["missing_in_target", "extra_in_target", "flag_mismatches", "date_mismatches"];

#[track_caller]
fn expect_only(r: &Run, counter: &str) {
    r.expect_code(1);
    let j = r.json();
    assert_eq!(j["ok"], serde_json::json!(false), "{j}");
    for c in COUNTERS {
        let want = u64::from(c == counter);
        assert_eq!(j[c].as_u64(), Some(want), "{c} in {j}");
    }
}

fn first_cur(env: &TestEnv) -> Msg {
    read_maildir(&env.path("out"), Layout::MaildirPP).into_iter().find(|m| m.sub == "cur").expect("a message in cur/")
}

#[test]
fn synced_pair_verifies_ok() {
    let (env, s) = synced();
    let r = verify(&env, &s);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["ok"], serde_json::json!(true));
    assert_eq!((j["source"].as_u64(), j["target"].as_u64()), (Some(5), Some(5)));
    for c in COUNTERS {
        assert_eq!(j[c].as_u64(), Some(0), "{c}");
    }
}

#[test]
fn deleted_target_message_is_missing() {
    let (env, s) = synced();
    let m = first_cur(&env);
    std::fs::remove_file(env.path("out").join("cur").join(&m.name)).unwrap();
    expect_only(&verify(&env, &s), "missing_in_target");
}

#[test]
fn reflagged_target_message_is_a_flag_mismatch() {
    let (env, s) = synced();
    let m = first_cur(&env);
    let (base, info) = split_info(&m.name);
    let new_flags = if info.unwrap_or("").contains('F') {
        info.unwrap().replace('F', "")
    } else {
        format!("F{}", info.unwrap_or(""))
    };
    let mut letters: Vec<char> = new_flags.chars().collect();
    letters.sort_unstable();
    let to = format!("{base}:2,{}", letters.into_iter().collect::<String>());
    std::fs::rename(env.path("out/cur").join(&m.name), env.path("out/cur").join(to)).unwrap();
    expect_only(&verify(&env, &s), "flag_mismatches");
}

#[test]
fn redated_target_message_is_a_date_mismatch() {
    let (env, s) = synced();
    let m = first_cur(&env);
    set_mtime(&env.path("out/cur").join(&m.name), m.mtime + 86_400 * 3);
    expect_only(&verify(&env, &s), "date_mismatches");
}

#[test]
fn extra_target_message_is_counted() {
    let (env, s) = synced();
    env.write("out/new/1600000000.M1P1.other", &message("extra", "x\n"));
    let r = verify(&env, &s);
    let j = r.json();
    assert_eq!(j["extra_in_target"].as_u64(), Some(1), "{j}");
    for c in ["missing_in_target", "flag_mismatches", "date_mismatches"] {
        assert_eq!(j[c].as_u64(), Some(0), "{c} in {j}");
    }
}

#[test]
fn verify_follows_the_same_folder_mapping() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/utf7-dir");
    let s = format!("mbox:{}", src.display());
    env.sync(&s, "out", &["--map-folder", "s/^Archive/Old/"]).expect_code(0);
    env.run(["verify", &s, "out", "--json", "--map-folder", "s/^Archive/Old/"]).expect_code(0);
    // Without options, the sync's recorded mapping is used.
    let recorded = env.run(["verify", &s, "out", "--json"]);
    recorded.expect_code(0);
    assert!(recorded.json()["options_from"].is_string(), "{}", recorded.stdout);
    // With options of its own (here one that selects every folder), verify uses those only.
    let r = env.run(["verify", &s, "out", "--json", "--include", "."]);
    r.expect_code(1);
    assert_eq!(r.json()["missing_in_target"].as_u64(), Some(2), "{}", r.stdout);
}

#[test]
fn verify_of_missing_target_writes_nothing() {
    let env = TestEnv::new();
    let src = env.fixture("example.mbox");
    let r = env.run(["verify", src.to_str().unwrap(), "absent", "--json"]);
    assert!(matches!(r.code, 1 | 2), "{r:?}");
    assert!(!env.path("absent").exists(), "verify created the target");
}

/// A target folder swapped for a link to a copy elsewhere is not read through: verify names
/// the link and fails, though the copy behind it holds every message.
#[test]
fn a_linked_target_folder_is_not_read_through() {
    let env = TestEnv::new();
    env.write("src/.Sent/cur/1600000000.M1P1.h:2,S", &message("sent", "body\n"));
    for d in ["src/.Sent/new", "src/.Sent/tmp", "src/cur", "src/new", "src/tmp"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    let s = format!("maildir:{}", env.path("src").display());
    env.sync(&s, "out", &[]).expect_code(0);
    env.run(["verify", &s, "out"]).expect_code(0);
    std::fs::rename(env.path("out/.Sent"), env.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere"), env.path("out/.Sent")).unwrap();
    let r = env.run(["verify", &s, "out", "--json"]);
    r.expect_code(1);
    assert!(r.errors().iter().any(|(p, why)| p.ends_with("out/.Sent") && why.contains("symlink")), "{}", r.stdout);
    assert_eq!(r.json()["missing_in_target"], 1, "{}", r.stdout);
}

/// After a sync with renames and a zone of its own, `verify SRC DST` alone compares what that
/// sync made (the target records its options), says so, and shows a table of the folders;
/// options given to verify win; messages only in the target are listed under their folder.
#[test]
fn verify_uses_the_options_the_sync_recorded() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.path("mb")).unwrap();
    env.write("mb/INBOX", b"From a@b Mon Jan  1 00:00:00 2024\nSubject: i\n\nx\n\n");
    env.write("mb/Archive", b"From a@b Tue Jan  2 00:00:00 2024\nSubject: a\n\ny\n\n");
    let opts = ["--map-folder", "s/^Archive$/Old/", "--mbox-tz", "+0200"];
    env.sync("mbox:mb", "maildir:md", &opts).expect_code(0);
    assert!(env.path("md/.Old/cur").is_dir());

    let v = env.run(["verify", "mbox:mb", "maildir:md"]);
    v.expect_code(0);
    assert!(
        v.stderr.contains("with the options of the last sync")
            && v.stderr.contains("--map-folder s/^Archive$/Old/ --mbox-tz +0200"),
        "{}",
        v.stderr
    );
    let table: Vec<&str> = v.stdout.lines().collect();
    assert!(
        table[0].starts_with("folder") && table[0].contains("missing") && table[0].contains("extra"),
        "{}",
        v.stdout
    );
    assert!(table.iter().any(|l| l.starts_with("Old ") && l.split_whitespace().nth(1) == Some("1")), "{}", v.stdout);
    assert!(
        v.stdout.trim_end().ends_with("OK: source 2 target 2 missing 0 extra 0 flag mismatches 0 date mismatches 0"),
        "{}",
        v.stdout
    );
    let j = env.run(["verify", "mbox:mb", "maildir:md", "--json"]).json();
    assert!(j["options_from"].as_str().is_some_and(|p| p.ends_with("md/mailmover-options.lock")), "{j}");
    assert_eq!(j["folders"].as_array().unwrap().len(), 2);

    // Given on the command line, verify's own options are used (and the dates then differ).
    let own = env.run(["verify", "mbox:mb", "maildir:md", "--map-folder", "s/^Archive$/Old/", "--json"]);
    own.expect_code(1);
    assert!(own.json()["options_from"].is_null() && own.json()["date_mismatches"] == 2, "{}", own.stdout);

    // A message only in the target is listed under its folder.
    env.write("md/.Old/cur/9.x:2,S", &message("stray", "s\n"));
    let extra = env.run(["verify", "mbox:mb", "maildir:md"]);
    extra.expect_code(0);
    let at = extra.stdout.find("\nOld:\n").expect("a heading per folder");
    assert!(extra.stdout[at..].contains("  only in target: md/.Old/cur/9.x:2,S"), "{}", extra.stdout);
}
