//! `verify` reports exactly what `sync --dry-run` would act on: verify is OK if and only if the
//! dry run plans nothing, and what verify finds only in the target is what `--mirror` would
//! delete. Random sources, synced, then changed on either side.

use std::path::Path;

use mailmover::deletion::Deletion;
use mailmover::events::Discard;
use mailmover::spec::Store;
use mailmover::sync::{self, SyncOptions};
use mailmover::verify;
use proptest::prelude::*;

const FLAGS: [&str; 4] = ["", "S", "RS", "F"];

fn put(dir: &Path, i: usize, body: u8, flags: usize, new: bool, mtime: i64) {
    let name = if new {
        format!("new/{}.M{i}P1.h", 1_600_000_000 + i)
    } else {
        format!("cur/{}.M{i}P1.h:2,{}", 1_600_000_000 + i, FLAGS[flags])
    };
    let p = dir.join(name);
    std::fs::write(&p, format!("Subject: m{body}\n\nbody {body}\n")).unwrap();
    let t = filetime::FileTime::from_unix_time(mtime, 0);
    filetime::set_file_times(&p, t, t).unwrap();
}

fn maildir(dir: &Path) {
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(s)).unwrap();
    }
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = ["new", "cur"]
        .iter()
        .flat_map(|s| std::fs::read_dir(dir.join(s)).unwrap().flatten().map(|e| e.path()))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    v.sort();
    v
}

/// One change to a Maildir folder: 0 delete a file, 1 re-flag, 2 re-date, 3 add a message,
/// 4 move a cur/ file back to new/.
fn change(dir: &Path, kind: u8, pick: usize, serial: usize) {
    let fs = files(dir);
    let target = fs.get(pick % fs.len().max(1));
    match (kind % 5, target) {
        (0, Some(p)) => std::fs::remove_file(p).unwrap(),
        (1, Some(p)) => {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let base = name.split(":2,").next().unwrap().to_string();
            std::fs::rename(p, dir.join("cur").join(format!("{base}:2,{}", FLAGS[(pick / 3) % 4]))).unwrap();
        }
        (2, Some(p)) => {
            let t = filetime::FileTime::from_unix_time(1_300_000_000 + pick as i64, 0);
            filetime::set_file_times(p, t, t).unwrap();
        }
        (3, _) => put(dir, 1000 + serial, (pick % 4) as u8, pick % 4, pick.is_multiple_of(2), 1_500_000_000),
        (4, Some(p)) => {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let base = name.split(":2,").next().unwrap().to_string();
            std::fs::rename(p, dir.join("new").join(base)).unwrap();
        }
        _ => {}
    }
}

/// `--max-delete` lets `--mirror` delete in a source folder left with no message too.
fn opts(dry: bool, deletion: Deletion) -> SyncOptions {
    SyncOptions { durable: false, dry_run: dry, deletion, max_delete: Some(1000), jobs: 1, ..SyncOptions::default() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn verify_ok_iff_the_dry_run_plans_nothing(
        msgs in proptest::collection::vec((0u8..4, 0usize..4, any::<bool>(), 1_400_000_000i64..1_400_000_100), 1..6),
        src_changes in proptest::collection::vec((0u8..5, 0usize..50), 0..3),
        dst_changes in proptest::collection::vec((0u8..5, 0usize..50), 0..3),
        mbox in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        maildir(&src);
        for (i, (body, flags, new, mtime)) in msgs.iter().enumerate() {
            put(&src, i, *body, *flags, *new, *mtime);
        }
        let s = Store::parse(&format!("maildir:{}", src.display())).unwrap();
        let dst_path = tmp.path().join(if mbox { "dst.mbox" } else { "dst" });
        let d = Store::parse(&format!("{}:{}", if mbox { "mbox" } else { "maildir" }, dst_path.display())).unwrap();
        sync::sync(&s, &d, &opts(false, Deletion::Off), &Discard).unwrap();
        for (i, (k, pick)) in src_changes.iter().enumerate() {
            change(&src, *k, *pick, i);
        }
        if !mbox {
            for (i, (k, pick)) in dst_changes.iter().enumerate() {
                change(&dst_path, *k, *pick, 100 + i);
            }
        }
        let v = verify::verify(&s, &d, &opts(false, Deletion::Off)).unwrap();
        let dry = sync::sync(&s, &d, &opts(true, Deletion::Mirror), &Discard).unwrap();
        let plans_nothing = dry.counts.transferred == 0 && dry.counts.flags_updated == 0;
        prop_assert_eq!(v.ok, plans_nothing, "verify {:?}\ndry run {:?}", v, dry.counts);
        prop_assert_eq!(v.counts.extra_in_target, dry.counts.deleted_target, "verify {:?}\ndry run {:?}", v, dry.counts);
        prop_assert_eq!(v.counts.missing_in_target, dry.counts.transferred);
        // And the real run leaves nothing for verify to find.
        sync::sync(&s, &d, &opts(false, Deletion::Mirror), &Discard).unwrap();
        let after = verify::verify(&s, &d, &opts(false, Deletion::Off)).unwrap();
        prop_assert!(after.ok && after.counts.extra_in_target == 0, "{:?}", after);
    }
}
