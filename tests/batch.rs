//! `mailmover batch` and `mailmover report` through the binary (issue 8): the file's format and
//! its errors, shards that partition the file, reports, re-runs, failures that do not stop the
//! other rows, and the GNU parallel recipe of docs/scale-out.md against an unsharded run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Need, require};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailmover")
}

/// The binary with no scheduler index in its environment (a CI runner may be a Slurm task).
fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir).env("TZ", "UTC").env_remove("JOB_COMPLETION_INDEX").env_remove("SLURM_ARRAY_TASK_ID");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).output().expect("mailmover runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n--- stderr\n{}", text(&o.stdout), text(&o.stderr)))
}

fn show(o: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// A small Maildir account: `1 + i % 5` messages in INBOX of varying size, and for every third
/// account a Sent folder, so rows differ in size and in folders.
fn make_account(root: &Path, i: usize) -> PathBuf {
    let acct = root.join(format!("user{i:03}"));
    let mut folders = vec![(acct.clone(), 1 + i % 5)];
    if i.is_multiple_of(3) {
        folders.push((acct.join(".Sent"), 2));
    }
    for (dir, n) in folders {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for m in 0..n {
            let body = format!("message {m} of user{i}\n").repeat(1 + i * 7 % 50);
            let msg = format!(
                "From: user{i}@old.example\nTo: someone@example.org\nSubject: test {m}\nMessage-ID: <{i}.{m}@old.example>\nDate: Mon, 1 Jan 2024 00:00:{m:02} +0000\n\n{body}"
            );
            let flags = if m % 2 == 0 { "S" } else { "RS" };
            std::fs::write(dir.join("cur").join(format!("17000000{i:02}.M{m}P1.old:2,{flags}")), msg).unwrap();
        }
    }
    acct
}

/// `n` accounts under `dir/src` and a batch file sending them to `dir/<target_root>`.
fn make_batch(dir: &Path, n: usize, target_root: &str, name: &str) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
    let mut csv = String::from("# generated accounts\nsource,target\n");
    for i in 0..n {
        let a = make_account(&src, i);
        csv.push_str(&format!(
            "maildir:{},maildir:{}\n",
            a.display(),
            dir.join(target_root).join(format!("user{i:03}")).display()
        ));
    }
    let file = dir.join(name);
    std::fs::write(&file, csv).unwrap();
    file
}

/// SHA-256 of every file under `root` (relative name without the Maildir info part and the
/// unique part of the base name: only folder, content and flags matter).
fn contents(root: &Path) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.parent().and_then(Path::file_name).is_some_and(|n| n == "cur" || n == "new") {
                let folder = p.parent().unwrap().parent().unwrap().strip_prefix(root).unwrap().display().to_string();
                let name = e.file_name().to_string_lossy().into_owned();
                let flags = name.rsplit_once(":2,").map(|(_, f)| f.to_string()).unwrap_or_default();
                let hash = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
                out.insert((format!("{folder} {flags}"), hash));
            }
        }
    }
    out
}

/// `batch --list`: the lines of the file in each shard.
fn listed(dir: &Path, file: &Path, shard: &str) -> Vec<usize> {
    let o = run(dir, &["batch", file.to_str().unwrap(), "--list", "--shard", shard]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    text(&o.stdout).lines().map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect()
}

/// Issue 8, item 5: every row in exactly one shard, for N = 1, 2, 7, 64.
#[test]
fn shards_partition_the_file_exactly() {
    let t = tempfile::tempdir().unwrap();
    let mut csv = String::from("# 100 rows, sources that need not exist for --list\n");
    for i in 0..100 {
        csv.push_str(&format!("/srv/old/user{i},/srv/new/user{i}\n"));
    }
    let file = t.path().join("rows.csv");
    std::fs::write(&file, &csv).unwrap();
    let all: Vec<usize> = (2..=101).collect();
    for n in [1usize, 2, 7, 64] {
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        for k in 1..=n {
            for line in listed(t.path(), &file, &format!("{k}/{n}")) {
                if let Some(first) = seen.insert(line, k) {
                    panic!("N={n}: line {line} in shards {first} and {k}");
                }
            }
        }
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), all, "N={n}: some row is in no shard");
        if n > 1 {
            let used: BTreeSet<usize> = seen.values().copied().collect();
            assert!(used.len() > 1, "N={n}: every row in one shard");
        }
    }
}

/// The shard of a row depends on its source only, not on where it is in the file.
#[test]
fn shards_do_not_depend_on_the_order_of_the_file() {
    let t = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (0..30).map(|i| format!("/srv/old/u{i},/srv/new/u{i}")).collect();
    let fwd = t.path().join("fwd.csv");
    let rev = t.path().join("rev.csv");
    std::fs::write(&fwd, rows.join("\n")).unwrap();
    let mut r = rows.clone();
    r.reverse();
    std::fs::write(&rev, format!("# reversed\n\n{}", r.join("\n"))).unwrap();
    let sources = |file: &Path, shard: &str| -> BTreeSet<String> {
        let o = run(t.path(), &["batch", file.to_str().unwrap(), "--list", "--shard", shard]);
        text(&o.stdout).lines().map(|l| l.split('\t').nth(4).unwrap().to_string()).collect()
    };
    for k in 1..=3 {
        assert_eq!(sources(&fwd, &format!("{k}/3")), sources(&rev, &format!("{k}/3")));
    }
}

#[test]
fn shard_index_from_kubernetes_and_slurm() {
    let t = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (0..20).map(|i| format!("/srv/old/u{i},/srv/new/u{i}")).collect();
    let file = t.path().join("rows.csv");
    std::fs::write(&file, rows.join("\n")).unwrap();
    let f = file.to_str().unwrap();
    let with = |var: &str, val: &str| {
        let o = cmd(t.path()).args(["batch", f, "--list", "--shards", "4"]).env(var, val).output().unwrap();
        assert_eq!(code(&o), 0, "{}", show(&o));
        text(&o.stdout)
    };
    let explicit = |s: &str| text(&run(t.path(), &["batch", f, "--list", "--shard", s]).stdout);
    // Kubernetes numbers pods from 0, shards from 1.
    assert_eq!(with("JOB_COMPLETION_INDEX", "1"), explicit("2/4"));
    assert_eq!(with("SLURM_ARRAY_TASK_ID", "2"), explicit("2/4"));
    for bad in [
        &["--shard", "0/4"][..],
        &["--shard", "5/4"],
        &["--shard", "two/4"],
        &["--shard", "1/0"],
        &["--shards", "4"],
        &["--shard", "1/2", "--shards", "2"],
    ] {
        let mut args = vec!["batch", f, "--list"];
        args.extend_from_slice(bad);
        let o = run(t.path(), &args);
        assert_eq!(code(&o), 2, "{bad:?}: {}", show(&o));
    }
    let o =
        cmd(t.path()).args(["batch", f, "--list", "--shards", "4"]).env("SLURM_ARRAY_TASK_ID", "0").output().unwrap();
    assert_eq!(code(&o), 2, "{}", show(&o));
    assert!(text(&o.stderr).contains("--array=1-N"), "{}", show(&o));
}

/// A bad row anywhere in the file stops the run before anything is written, naming its line.
#[test]
fn a_bad_row_is_a_usage_error_naming_its_line() {
    let t = tempfile::tempdir().unwrap();
    let a = make_account(&t.path().join("src"), 1);
    let cases = [
        ("only-source", format!("{}\n", a.display())),
        ("unknown-option", format!("{},out/a,colour=blue\n", a.display())),
        ("bad-regex", format!("{},out/a,include=(\n", a.display())),
        ("bad-layout", format!("{},out/a,layout=flat\n", a.display())),
        ("unclosed-quote", format!("\"{},out/a\n", a.display())),
        ("duplicate", format!("{0},out/a\n{0},out/a\n", a.display())),
        ("no-such-owner", format!("{},out/a,owner=no-such-user-mailmover\n", a.display())),
    ];
    for (name, bad) in cases {
        let good = format!("# good first\n{},out/good\n\n", a.display());
        let file = t.path().join(format!("{name}.csv"));
        std::fs::write(&file, format!("{good}{bad}")).unwrap();
        let o = run(t.path(), &["batch", file.to_str().unwrap(), "--report-dir", "reports"]);
        assert_eq!(code(&o), 2, "{name}: {}", show(&o));
        let bad_line = if name == "duplicate" { 5 } else { 4 };
        assert!(text(&o.stderr).contains(&format!("{name}.csv:{bad_line}:")), "{name}: {}", show(&o));
        assert!(!t.path().join("out").exists(), "{name}: a row ran");
        assert!(!t.path().join("reports").exists(), "{name}: reports written");
    }
    std::fs::write(t.path().join("empty.csv"), "# nothing yet\n\n").unwrap();
    let o = run(t.path(), &["batch", "empty.csv"]);
    assert_eq!(code(&o), 2, "{}", show(&o));
    assert!(text(&o.stderr).contains("no rows"), "{}", show(&o));
}

/// Items 2 and 3: a failing row does not stop the others; `report` lists it and exits 1; a
/// re-run skips the complete rows and `--rerun` does not.
#[test]
fn failed_rows_reports_and_reruns() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let file = make_batch(d, 6, "out", "b.csv");
    let mut csv = std::fs::read_to_string(&file).unwrap();
    csv.push_str(&format!("maildir:{},maildir:{}\n", d.join("src/nobody").display(), d.join("out/nobody").display()));
    std::fs::write(&file, csv).unwrap();
    let f = file.to_str().unwrap();

    let o = run(d, &["batch", f, "--report-dir", "reports", "--json", "--jobs", "3"]);
    assert_eq!(code(&o), 1, "{}", show(&o));
    let j = json(&o);
    assert_eq!((j["rows"].as_u64(), j["complete"].as_u64(), j["failed"].as_u64()), (Some(7), Some(6), Some(1)), "{j}");
    assert_eq!(j["failed_rows"][0]["line"], 9, "{j}");
    assert!(d.join("out/user005/cur").is_dir(), "the rows after the failing one ran");
    let reports: Vec<PathBuf> = std::fs::read_dir(d.join("reports")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(reports.len(), 8, "7 row reports and batch.json: {reports:?}");
    let one: Value = serde_json::from_slice(
        &std::fs::read(reports.iter().find(|p| p.to_string_lossy().contains("row-")).unwrap()).unwrap(),
    )
    .unwrap();
    for key in [
        "source",
        "target",
        "shard",
        "host",
        "start",
        "end",
        "complete",
        "transferred",
        "messages_source",
        "errors",
        "seconds",
    ] {
        assert!(one.get(key).is_some(), "row report lacks {key}: {one}");
    }

    let r = run(d, &["report", "reports", "--json"]);
    assert_eq!(code(&r), 1, "{}", show(&r));
    let m = json(&r);
    assert_eq!(m["failed"], 1);
    assert_eq!(m["failed_rows"][0]["source"].as_str().unwrap(), format!("maildir:{}", d.join("src/nobody").display()));
    assert!(m["failed_rows"][0]["errors"][0]["reason"].as_str().unwrap().contains("does not exist"), "{m}");
    let human = run(d, &["report", "reports"]);
    assert!(text(&human.stdout).contains("FAILED line 9"), "{}", show(&human));

    // Fix the failing row; the re-run runs only it.
    make_account(&d.join("src"), 999);
    std::fs::rename(d.join("src/user999"), d.join("src/nobody")).unwrap();
    let o = run(d, &["batch", f, "--report-dir", "reports", "--json"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let j = json(&o);
    assert_eq!((j["skipped"].as_u64(), j["complete"].as_u64()), (Some(6), Some(7)), "{j}");
    assert!(text(&o.stderr).contains("6 rows skipped"), "{}", show(&o));
    let r = run(d, &["report", "reports", "--json"]);
    assert_eq!(code(&r), 0, "{}", show(&r));
    assert_eq!(json(&r)["totals"]["transferred"], json(&r)["totals"]["messages_source"]);

    let o = run(d, &["batch", f, "--report-dir", "reports", "--json", "--rerun"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let j = json(&o);
    assert_eq!(
        (j["skipped"].as_u64(), j["totals"]["transferred"].as_u64()),
        (Some(0), Some(0)),
        "a second sync copies nothing: {j}"
    );
}

/// A shard that never ran leaves its rows missing, and `report` says so.
#[test]
fn rows_of_a_shard_that_never_ran_are_missing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let file = make_batch(d, 10, "out", "b.csv");
    let f = file.to_str().unwrap();
    let o = run(d, &["batch", f, "--shard", "1/2", "--report-dir", "reports", "-q"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let r = run(d, &["report", "reports", "--json"]);
    assert_eq!(code(&r), 1, "{}", show(&r));
    let m = json(&r);
    let in_two = listed(d, &file, "2/2");
    assert_eq!(m["missing"].as_u64(), Some(in_two.len() as u64), "{m}");
    let missing: BTreeSet<u64> =
        m["missing_rows"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(missing, in_two.iter().map(|&l| l as u64).collect());
    let o = run(d, &["batch", f, "--shard", "2/2", "--report-dir", "reports", "-q"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(code(&run(d, &["report", "reports"])), 0);
    // Also with the rows given by the file, and nothing at all reported: not ok.
    assert_eq!(code(&run(d, &["report", "reports", "--file", f])), 0);
    std::fs::create_dir(d.join("empty")).unwrap();
    assert_eq!(code(&run(d, &["report", "empty"])), 1);
    assert_eq!(code(&run(d, &["report", "no-such-dir"])), 2);
}

/// Per-row options reach the row's sync; a dry run writes no target and does not count as
/// complete for the next real run.
#[test]
fn row_options_and_dry_runs() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let a = make_account(&d.join("src"), 3); // has a Sent folder
    let b = make_account(&d.join("src"), 6); // has a Sent folder
    let csv = format!(
        "source,target\n\"maildir:{}\",maildir:out/a,exclude=^Sent$\n maildir:{} , maildir:out/b , layout=fs, \n",
        a.display(),
        b.display()
    );
    std::fs::write(d.join("b.csv"), csv).unwrap();
    let o = run(d, &["batch", "b.csv", "--report-dir", "reports", "--dry-run", "-q"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(!d.join("out").exists(), "a dry run wrote a target");
    let o = run(d, &["batch", "b.csv", "--report-dir", "reports", "--json"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(json(&o)["skipped"], 0, "dry-run reports do not make rows complete");
    assert!(d.join("out/a/cur").is_dir() && !d.join("out/a/.Sent").exists(), "exclude=^Sent$ ignored");
    assert!(d.join("out/b/Sent/cur").is_dir(), "layout=fs ignored");
}

/// The shell or YAML block of docs/scale-out.md that follows `<!-- recipe: NAME -->`.
fn recipe(name: &str) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scale-out.md")).unwrap();
    let marker = format!("<!-- recipe: {name} -->");
    let (_, after) = doc.split_once(&marker).unwrap_or_else(|| panic!("docs/scale-out.md has no {marker}"));
    let (_, fenced) = after.split_once("```").unwrap();
    let (_, body) = fenced.split_once('\n').unwrap();
    body.split_once("\n```").unwrap().0.to_string()
}

/// The docs' paths under /srv/migrate moved into the test's directory.
fn localize(text: &str, dir: &Path) -> String {
    text.replace("/srv/migrate", dir.to_str().unwrap())
}

/// PATH with the binary under test first, as `mailmover` in the recipes.
fn path_with_bin() -> String {
    let dir = Path::new(bin()).parent().unwrap().display().to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

fn bash(dir: &Path, script: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("bash");
    c.current_dir(dir).arg("-c").arg(script).env("PATH", path_with_bin()).env("TZ", "UTC");
    c.env_remove("JOB_COMPLETION_INDEX").env_remove("SLURM_ARRAY_TASK_ID");
    c.envs(env.iter().copied());
    c.output().unwrap()
}

/// `report DIR --json` of a recipe's run: every row complete, all mail copied.
fn assert_all_complete(dir: &Path, rows: u64) -> Value {
    let r = run(dir, &["report", "reports", "--json"]);
    assert_eq!(code(&r), 0, "{}", show(&r));
    let m = json(&r);
    assert_eq!((m["rows"].as_u64(), m["complete"].as_u64()), (Some(rows), Some(rows)), "{m}");
    assert_eq!(m["totals"]["transferred"], m["totals"]["messages_source"], "{m}");
    m
}

/// Issue 8, item 4: the GNU parallel recipe of docs/scale-out.md, 4 shards of 40 accounts,
/// merges into the same report (and the same mail) as one unsharded run.
#[test]
fn gnu_parallel_four_shards_equal_one_unsharded_run() {
    if !require(Need::Parallel) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let one = make_batch(d, 40, "one/t", "one/accounts.csv");
    make_batch(d, 40, "four/t", "four/accounts.csv");

    let o = run(d, &["batch", one.to_str().unwrap(), "--report-dir", "one/reports", "-q"]);
    assert_eq!(code(&o), 0, "{}", show(&o));

    let script = recipe("parallel-local");
    assert!(script.contains("N=4") && script.contains("--shard {}/$N"), "the recipe changed:\n{script}");
    let o = bash(d, &localize(&script, &d.join("four")), &[]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(text(&o.stdout).contains("All 40 rows are complete."), "{}", show(&o));

    let m1 = assert_all_complete(&d.join("one"), 40);
    let m4 = assert_all_complete(&d.join("four"), 40);
    for key in ["ok", "rows", "complete", "failed", "missing", "totals", "failed_rows", "missing_rows"] {
        assert_eq!(m1[key], m4[key], "{key} differs:\n1 shard: {m1}\n4 shards: {m4}");
    }
    assert!(m4["totals"]["transferred"].as_u64().unwrap() > 100, "{m4}");
    let shards: BTreeSet<String> = std::fs::read_dir(d.join("four/reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("row-"))
        .map(|p| {
            serde_json::from_slice::<Value>(&std::fs::read(p).unwrap()).unwrap()["shard"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(shards, ["1/4", "2/4", "3/4", "4/4"].map(String::from).into(), "every shard ran rows");
    for i in 0..40 {
        let u = format!("user{i:03}");
        assert_eq!(contents(&d.join("one/t").join(&u)), contents(&d.join("four/t").join(&u)), "{u} differs");
    }
}

/// The `--sshlogin` recipe, with the hosts replaced by the local host (`:` to GNU parallel).
#[test]
fn gnu_parallel_sshlogin_recipe() {
    if !require(Need::Parallel) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_batch(d, 20, "t", "accounts.csv");
    let script = recipe("parallel-ssh");
    let hosts = script.lines().find(|l| l.starts_with("HOSTS=")).expect("a HOSTS= line");
    let o = bash(d, &localize(&script.replace(hosts, "HOSTS=2/:"), d), &[]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_all_complete(d, 20);
    assert!(d.join("shards.log").is_file(), "no joblog");
}

/// The Kubernetes manifest: its args run once per completion index, as the Job's pods would.
#[test]
fn kubernetes_indexed_job_recipe() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_batch(d, 20, "t", "accounts.csv");
    let yaml = recipe("kubernetes");
    let field = |name: &str| -> String {
        let l = yaml
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name}"));
        l.split_once(':').unwrap().1.split('#').next().unwrap().trim().to_string()
    };
    assert_eq!(field("completionMode"), "Indexed");
    assert_eq!(field("command"), r#"["mailmover"]"#);
    let completions: u64 = field("completions").parse().unwrap();
    let args: Vec<String> = serde_json::from_str(&localize(&field("args"), d)).expect("args is a flow list of strings");
    let shards = args.iter().position(|a| a == "--shards").map(|i| args[i + 1].clone());
    assert_eq!(shards, Some(completions.to_string()), "completions and --shards differ");
    for index in 0..completions {
        let o = cmd(d).args(&args).env("JOB_COMPLETION_INDEX", index.to_string()).output().unwrap();
        assert_eq!(code(&o), 0, "index {index}: {}", show(&o));
    }
    assert_all_complete(d, 20);
    // One index too many is an error, not an empty shard.
    let o = cmd(d).args(&args).env("JOB_COMPLETION_INDEX", completions.to_string()).output().unwrap();
    assert_eq!(code(&o), 2, "{}", show(&o));
}

/// The Slurm script: run by bash once per array task, as sbatch would.
#[test]
fn slurm_array_recipe() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_batch(d, 20, "t", "accounts.csv");
    let script = localize(&recipe("slurm"), d);
    let array = script.lines().find_map(|l| l.strip_prefix("#SBATCH --array=1-")).expect("#SBATCH --array=1-N");
    let n: u64 = array.trim().parse().unwrap();
    assert!(script.contains(&format!("N={n}\n")), "N and --array differ:\n{script}");
    for task in 1..=n {
        let o = bash(d, &script, &[("SLURM_ARRAY_TASK_ID", &task.to_string()), ("SLURM_CPUS_PER_TASK", "2")]);
        assert_eq!(code(&o), 0, "task {task}: {}", show(&o));
    }
    assert_all_complete(d, 20);
}

/// Rows run biggest first: `--list` shows the order, by the estimated size of the source.
#[test]
fn rows_are_ordered_biggest_first() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let file = make_batch(d, 12, "t", "b.csv");
    let o = run(d, &["batch", file.to_str().unwrap(), "--list"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let rows: Vec<(u64, String)> = text(&o.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[3].parse().unwrap(), f[4].to_string())
        })
        .collect();
    assert_eq!(rows.len(), 12);
    assert!(rows.windows(2).all(|w| w[0].0 >= w[1].0), "not biggest first: {rows:?}");
    let biggest = (0..12).map(|i| d.join(format!("src/user{i:03}"))).max_by_key(|p| walk_size(p)).unwrap();
    assert_eq!(rows[0], (walk_size(&biggest), format!("maildir:{}", biggest.display())));
}

fn walk_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { walk_size(&e.path()) } else { m.len() };
    }
    total
}

/// A cPanel row with its own domain mapping.
#[test]
fn cpanel_row_with_map_domain() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cpanel");
    let home = fixture.join("home/acct");
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let row = format!(
        "cpanel:{},cpanel:{},source-etc={},target-etc={},map-domain=example.com=renamed.example\n",
        home.display(),
        d.join("new/acct").display(),
        fixture.join("etc").display(),
        d.join("etc").display()
    );
    std::fs::write(d.join("c.csv"), row).unwrap();
    let o = run(d, &["batch", "c.csv", "--report-dir", "reports", "--json"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(json(&o)["totals"]["transferred"].as_u64().unwrap() > 0);
    assert!(d.join("new/acct/mail/renamed.example").is_dir() && !d.join("new/acct/mail/example.com").exists());
}
