//! Dates a target cannot store: stored as the nearest it can, reported per message, and sync
//! and verify agree on them (no re-dating on every run, no mismatch forever).

mod common;

use common::*;

#[test]
fn dates_outside_the_file_systems_range_are_stored_at_its_ends() {
    let env = TestEnv::new();
    let mut mbox = Vec::new();
    for (i, year) in ["0001", "1900", "9999", "2001"].iter().enumerate() {
        mbox.extend_from_slice(format!("From a@example.org Mon Jan  1 00:00:00 {year}\n").as_bytes());
        mbox.extend_from_slice(&message(&format!("year {year} {i}"), "x\n"));
        mbox.extend_from_slice(b"\n");
    }
    env.write("in.mbox", &mbox);
    let r = env.sync("mbox:in.mbox", "maildir:dst", &["--mbox-tz", "UTC"]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 4);
    let warned = r.json()["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["reason"].as_str().is_some_and(|s| s.contains("outside what the target file system stores")))
        .count();
    // ext4, xfs, btrfs: years 1 and 1900 are before 1901-12-13; 9999 is past ext4's 2446 and
    // xfs's 2486 (btrfs stores it: then two warnings).
    assert!(warned >= 2, "{}", r.stdout);
    env.run(["verify", "mbox:in.mbox", "maildir:dst", "--mbox-tz", "UTC"]).expect_code(0);
    let again = env.sync("mbox:in.mbox", "maildir:dst", &["--mbox-tz", "UTC", "--no-cache"]);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("flags_updated")), (0, 0), "{}", again.stdout);
    let dry = env.run(["sync", "mbox:in.mbox", "maildir:dst", "--mbox-tz", "UTC", "--dry-run", "--no-cache"]);
    assert!(dry.stdout.contains("0 to copy, 0 flag updates"), "{}", dry.stdout);
}
