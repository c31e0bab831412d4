//! What some tests need from outside the project: tools, root, the shared corpus. A test
//! asks with [`require`]; when the need is met the test runs, when it is not the test is
//! skipped with a notice on the terminal, or fails saying how to meet it when
//! `MAILMOVER_REQUIRE_<NAME>=1` or `MAILMOVER_REQUIRE_ALL=1` (CI) says nothing may be skipped.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Something a test needs that the project does not bring itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Doveadm,
    Python,
    Parallel,
    Corpus,
    Root,
    Tzdata,
    Useradd,
    Setpriv,
    Tmpfs,
    Strace,
    DovecotImap,
    Zsh,
    Fish,
}

impl Need {
    pub const ALL: [Need; 13] = [
        Need::Doveadm,
        Need::Python,
        Need::Parallel,
        Need::Corpus,
        Need::Root,
        Need::Tzdata,
        Need::Useradd,
        Need::Setpriv,
        Need::Tmpfs,
        Need::Strace,
        Need::DovecotImap,
        Need::Zsh,
        Need::Fish,
    ];

    /// The variable that makes this need a failure when unmet.
    pub fn var(self) -> String {
        let name = match self {
            Need::Doveadm => "DOVEADM",
            Need::Python => "PYTHON",
            Need::Parallel => "PARALLEL",
            Need::Corpus => "CORPUS",
            Need::Root => "ROOT",
            Need::Tzdata => "TZDATA",
            Need::Useradd => "USERADD",
            Need::Setpriv => "SETPRIV",
            Need::Tmpfs => "TMPFS",
            Need::Strace => "STRACE",
            Need::DovecotImap => "DOVECOT_IMAP",
            Need::Zsh => "ZSH",
            Need::Fish => "FISH",
        };
        format!("MAILMOVER_REQUIRE_{name}")
    }

    /// What is wrong when the need is unmet, as a clause.
    pub fn missing(self) -> String {
        match self {
            Need::Doveadm => "doveadm is not installed".into(),
            Need::Python => "python3 with its mailbox module is not installed".into(),
            Need::Parallel => "GNU parallel is not installed".into(),
            Need::Corpus => format!("the shared corpus is not at {}", super::corpus().display()),
            Need::Root => "not running as root".into(),
            Need::Tzdata => format!("there is no {TZ_PROBE}"),
            Need::Useradd => "useradd is not installed".into(),
            Need::Setpriv => "setpriv is not installed".into(),
            Need::Tmpfs => "a tmpfs cannot be mounted here".into(),
            Need::Strace => "strace is not installed".into(),
            Need::DovecotImap => format!("Dovecot's IMAP server is not at {DOVECOT_IMAP}"),
            Need::Zsh => "zsh is not installed".into(),
            Need::Fish => "fish is not installed".into(),
        }
    }

    /// How to meet the need on Debian, as CI does.
    pub fn how(self) -> &'static str {
        match self {
            Need::Doveadm => "apt-get install -y dovecot-core",
            Need::Python => "apt-get install -y python3",
            Need::Parallel => "apt-get install -y parallel",
            Need::Corpus => "put the project's shared folder beside the checkout, as ../shared",
            Need::Root => "run the tests as root",
            Need::Tzdata => "apt-get install -y tzdata",
            Need::Useradd => "apt-get install -y passwd",
            Need::Setpriv => "apt-get install -y util-linux",
            Need::Tmpfs => "run the tests as root where mount(8) may mount a tmpfs",
            Need::Strace => "apt-get install -y strace",
            Need::DovecotImap => "apt-get install -y dovecot-imapd",
            Need::Zsh => "apt-get install -y zsh",
            Need::Fish => "apt-get install -y fish",
        }
    }

    /// Whether the need is met on this machine now.
    pub fn met(self) -> bool {
        match self {
            Need::Doveadm => on_path("doveadm"),
            // The module, not just the interpreter: a minimal Python may lack parts of the stdlib.
            Need::Python => succeeds(Command::new("python3").args(["-c", "import mailbox"])),
            // moreutils has a `parallel` too, without --version.
            Need::Parallel => succeeds(Command::new("parallel").arg("--version")),
            Need::Corpus => super::corpus().join("MANIFEST.md").is_file(),
            Need::Root => nix::unistd::geteuid().is_root(),
            Need::Tzdata => Path::new(TZ_PROBE).is_file(),
            Need::Useradd => on_path("useradd"),
            Need::Setpriv => on_path("setpriv"),
            Need::Tmpfs => can_mount_tmpfs(),
            Need::Strace => succeeds(Command::new("strace").arg("-V")),
            Need::DovecotImap => Path::new(DOVECOT_IMAP).is_file(),
            Need::Zsh => on_path("zsh"),
            Need::Fish => on_path("fish"),
        }
    }
}

/// Dovecot's IMAP server, run by tests for one preauthenticated session on stdin.
pub const DOVECOT_IMAP: &str = "/usr/lib/dovecot/imap";

/// A zone the tests use; any zone file would show tzdata is there.
const TZ_PROBE: &str = "/usr/share/zoneinfo/America/New_York";

/// What to do about one need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip,
    /// Unmet but required; `by_all` when MAILMOVER_REQUIRE_ALL, not the need's own variable, says so.
    Fail {
        by_all: bool,
    },
}

/// The decision for a need that is `found` or not, given the values of its own variable and
/// of MAILMOVER_REQUIRE_ALL. `1` requires and `0` does not; the need's own `0` exempts it
/// from ALL. Any other value is an error, so that a misspelt CI setting cannot quietly skip.
pub fn decide(found: bool, own: Option<&str>, all: Option<&str>) -> Result<Decision, String> {
    let flag = |v: Option<&str>| match v.unwrap_or("") {
        "" => Ok(None),
        "1" => Ok(Some(true)),
        "0" => Ok(Some(false)),
        other => Err(format!("{other:?} (use 1 or 0)")),
    };
    let (own, all) = (flag(own)?, flag(all)?);
    Ok(match (found, own, all) {
        (true, ..) => Decision::Run,
        (false, Some(true), _) => Decision::Fail { by_all: false },
        (false, None, Some(true)) => Decision::Fail { by_all: true },
        (false, ..) => Decision::Skip,
    })
}

/// Whether the calling test may go on: true when `need` is met; false, after a notice on the
/// terminal, when it is not and may be skipped; a panic when it is required.
#[track_caller]
pub fn require(need: Need) -> bool {
    settle(need, &test_name())
}

/// [`require`] for a part of a test that the rest of the test does without.
#[track_caller]
pub fn require_for(need: Need, part: &str) -> bool {
    settle(need, &format!("{} ({part})", test_name()))
}

#[track_caller]
fn settle(need: Need, what: &str) -> bool {
    let var = need.var();
    let own = std::env::var(&var).ok();
    let all = std::env::var("MAILMOVER_REQUIRE_ALL").ok();
    let decision = decide(need.met(), own.as_deref(), all.as_deref())
        .unwrap_or_else(|e| panic!("{var} or MAILMOVER_REQUIRE_ALL is {e}"));
    match decision {
        Decision::Run => true,
        Decision::Skip => {
            notice(&format!("SKIPPED {what}: {} ({}; {var}=1 makes this a failure)", need.missing(), need.how()));
            false
        }
        Decision::Fail { by_all } => {
            let by = if by_all { "MAILMOVER_REQUIRE_ALL" } else { &var };
            panic!("{what}: {}, and {by}=1 requires it: {}", need.missing(), need.how())
        }
    }
}

/// libtest names each test's thread after the test.
fn test_name() -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => "a test".to_string(),
    }
}

/// Writes to the stderr handle itself: libtest captures `eprintln!` of passing tests, and a
/// skip that nobody sees is how a check rots unnoticed.
pub fn notice(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn on_path(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .any(|d| std::fs::metadata(d.join(cmd)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    })
}

fn succeeds(c: &mut Command) -> bool {
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Root alone is not enough: a container may forbid mounts.
fn can_mount_tmpfs() -> bool {
    if !nix::unistd::geteuid().is_root() || !on_path("mount") {
        return false;
    }
    let Ok(dir) = tempfile::Builder::new().prefix("mailmover-mount-probe.").tempdir() else { return false };
    let mounted = succeeds(Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(dir.path()));
    if mounted {
        let _ = succeeds(Command::new("umount").arg(dir.path()));
    }
    mounted
}
