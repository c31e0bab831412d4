//! For cron jobs and the people who read their mail (issue 21, item 1): `-q` is silent when a
//! run is complete and clean and speaks of problems; `--log-file` keeps a timestamped line per
//! action; the summary names the run; a dry run says what it would do and that it wrote
//! nothing; a rejected command line prints its error alone.

mod common;

use common::*;

fn maildir_with(env: &TestEnv, n: usize) {
    for d in ["src/cur", "src/new", "src/tmp"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    for i in 0..n {
        let p = env.write(&format!("src/cur/{i}.m{i}:2,S"), &message(&format!("m{i}"), "x\n"));
        set_mtime(&p, 1_600_000_000 + i as i64);
    }
}

/// A line of the log: its time (RFC 3339 UTC), the process id, the rest.
fn parts(line: &str) -> (&str, &str, &str) {
    let (time, rest) = line.split_once(' ').unwrap();
    let (pid, text) = rest.split_once(' ').unwrap();
    (time, pid, text)
}

#[test]
fn quiet_is_silent_when_clean_and_speaks_of_problems() {
    let env = TestEnv::new();
    maildir_with(&env, 2);
    let clean = env.run(["sync", "maildir:src", "maildir:dst", "-q"]);
    clean.expect_code(0);
    assert_eq!((clean.stdout.as_str(), clean.stderr.as_str()), ("", ""), "a clean run prints nothing");
    let again = env.run(["sync", "maildir:src", "maildir:dst", "-q"]);
    assert_eq!((again.code, again.stdout.as_str(), again.stderr.as_str()), (0, "", ""));

    // A keyword letter without a name: a warning, printed even with -q.
    env.write("src/cur/9.m9:2,Sc", &message("letter", "x\n"));
    let warned = env.run(["sync", "maildir:src", "maildir:dst", "-q"]);
    warned.expect_code(0);
    assert!(warned.stderr.starts_with("warning: ") && !warned.stderr.contains("folders synced"), "{}", warned.stderr);

    // A FIFO where a message should be: an error, printed.
    nix::unistd::mkfifo(&env.path("src/cur/10.m10:2,S"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let failed = env.run(["sync", "maildir:src", "maildir:dst", "-q"]);
    failed.expect_code(1);
    assert!(failed.stderr.contains("error: ") && failed.stderr.contains("10.m10"), "{}", failed.stderr);
}

#[test]
fn the_log_file_has_a_timestamped_line_per_action() {
    let env = TestEnv::new();
    maildir_with(&env, 3);
    let log = env.path("logs/run.log");
    std::fs::create_dir_all(env.path("logs")).unwrap();
    let l = log.to_str().unwrap();
    env.run(["sync", "maildir:src", "maildir:dst", "-q", "--log-file", l]).expect_code(0);
    // A flag change, a re-date and a deletion in the second run, an error in the third.
    std::fs::rename(env.path("src/cur/0.m0:2,S"), env.path("src/cur/0.m0:2,FS")).unwrap();
    set_mtime(&env.path("src/cur/1.m1:2,S"), 1_500_000_000);
    std::fs::remove_file(env.path("src/cur/2.m2:2,S")).unwrap();
    env.run(["sync", "maildir:src", "maildir:dst", "-q", "--mirror", "--log-file", l]).expect_code(0);
    nix::unistd::mkfifo(&env.path("src/cur/7.m7:2,S"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    env.run(["sync", "maildir:src", "maildir:dst", "-q", "--log-file", l]).expect_code(1);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines {
        let (time, pid, _) = parts(line);
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'), "{line}");
        assert!(pid.starts_with('[') && pid.ends_with(']'), "{line}");
    }
    let texts: Vec<&str> = lines.iter().map(|l| parts(l).2).collect();
    let starts: Vec<&&str> = texts.iter().filter(|t| t.starts_with("start mailmover ")).collect();
    assert_eq!(starts.len(), 3, "one start line per run, appended:\n{text}");
    for field in ["host=", "user=", "source=maildir:src", "target=maildir:dst", "command: ", "--log-file"] {
        assert!(starts[0].contains(field), "{field} in {}", starts[0]);
    }
    let count = |p: &str| texts.iter().filter(|t| t.starts_with(p)).count();
    assert_eq!(count("copy INBOX: "), 3, "{text}");
    assert_eq!(count("set flags INBOX: "), 1, "{text}");
    assert_eq!(count("re-date INBOX: "), 1, "{text}");
    assert_eq!(count("delete INBOX: "), 1, "{text}");
    assert!(texts.iter().any(|t| t.starts_with("error ") && t.contains("7.m7")), "{text}");
    assert!(texts.iter().any(|t| t.starts_with("copy INBOX: src/cur/0.m0:2,S -> dst/cur/")), "{text}");
    let ends: Vec<&&str> = texts.iter().filter(|t| t.starts_with("end ")).collect();
    assert!(ends[0].starts_with("end complete; exit 0;") && ends[0].contains("transferred 3"), "{}", ends[0]);
    assert!(ends[1].starts_with("end complete; exit 0;") && ends[1].contains("deleted 1"), "{}", ends[1]);
    assert!(ends[2].starts_with("end NOT complete: 1 problem(s); exit 1;"), "{}", ends[2]);

    // Never through a symlink.
    std::os::unix::fs::symlink(&log, env.path("logs/link.log")).unwrap();
    let refused = env.run(["sync", "maildir:src", "maildir:dst", "--log-file", "logs/link.log"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("symlink"), "{}", refused.stderr);
}

#[test]
fn a_dry_run_says_what_it_would_do_and_that_it_wrote_nothing() {
    let env = TestEnv::new();
    maildir_with(&env, 2);
    let log = env.path("dry.log");
    let dry = env.run(["sync", "maildir:src", "maildir:dst", "--dry-run", "--log-file", log.to_str().unwrap()]);
    dry.expect_code(0);
    assert!(dry.stdout.contains("plan: would copy into INBOX: "), "{}", dry.stdout);
    assert!(dry.stderr.contains("  would copy ............ 2"), "{}", dry.stderr);
    assert!(dry.stderr.trim_end().ends_with("dry run: nothing was written"), "{}", dry.stderr);
    assert!(!dry.stderr.contains("The run is complete") && !dry.stderr.contains("transferred"), "{}", dry.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("] would copy INBOX: src/cur/0.m0:2,S (") && !text.contains("] copy "), "{text}");
    assert!(text.lines().last().unwrap().contains("] end dry run: nothing was written;"), "{text}");
    assert!(!env.path("dst").exists());
}

#[test]
fn the_summary_names_the_run() {
    let env = TestEnv::new();
    maildir_with(&env, 1);
    let r = env.run(["sync", "maildir:src", "maildir:dst"]);
    r.expect_code(0);
    for (label, value) in [("source", "maildir:src"), ("target", "maildir:dst")] {
        assert!(r.stderr.contains(&format!("  {label} {} {value}\n", ".".repeat(22 - label.len()))), "{}", r.stderr);
    }
    for label in ["started", "finished"] {
        let line = r.stderr.lines().find(|l| l.trim_start().starts_with(label)).unwrap();
        let time = line.rsplit(' ').next().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{line}");
    }
    let json = env.sync("maildir:src", "maildir:dst", &[]).json();
    assert_eq!((json["source"].as_str(), json["target"].as_str()), (Some("maildir:src"), Some("maildir:dst")));
    assert!(json["started"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
}

#[test]
fn a_rejected_command_line_prints_its_error_alone() {
    let env = TestEnv::new();
    env.write("notmail", b"garbage\n");
    for args in [
        &["sync", "notmail", "dst"][..],
        &["sync", "mbox:notmail", "dst"],
        &["sync", "missing", "dst"],
        &["sync", "maildir:x", "y", "--bogus"],
    ] {
        let r = env.run(args);
        r.expect_code(2);
        assert!(!r.stderr.contains("folders synced") && !r.stderr.contains("The run"), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{args:?}");
    }
}

/// Rows of a batch run at the same time: one `--log-file` for all of them is refused, with
/// the way to get one per row.
#[test]
fn a_batch_refuses_one_log_file_for_all_rows() {
    let env = TestEnv::new();
    env.write("rows.csv", b"source,target\nmaildir:a,maildir:b\n");
    let r = env.run(["batch", "rows.csv", "--log-file", "x.log"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("--log-file and --manifest are for one sync") && r.stderr.contains("--report-dir"),
        "{}",
        r.stderr
    );
    assert!(!env.path("x.log").exists());
}
