//! One guarded path for every target write and read: for each kind of target
//! (Maildir++, Maildir `--layout fs`, an mbox file, an mbox directory, a cPanel home), a
//! symlink planted at each kind of component a run reads or writes — folder directories and
//! files, `cur/ new/ tmp/`, parent levels, mailmover's own files, Dovecot's files, the lock,
//! cPanel's account files — is never followed: what it points to (a directory or file of the
//! user's outside the target, or a root-only file) is neither changed nor read, nothing of it
//! lands in the target, the run names the path, and the other folders are still written. A
//! FIFO at each file component does not make a run hang.
//!
//! Each case: a first run fills the target, the tree is handed to an ordinary user (who then
//! plants), new mail arrives in every source folder, and two more runs follow.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The user who owns the target and plants the links.
const USER: u32 = 65534;
/// In every file the links point to: it must never turn up in the target.
const MARK: &str = "OUTSIDE-5e1f0c";
/// A run longer than this is taken for a hang on a FIFO.
const HANG: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    MaildirPP,
    MaildirFs,
    MboxFile,
    MboxDir,
    Cpanel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File,
}

/// What a run does about the planted component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Exit 1, an error names the path, the planted entry is left as it is.
    Refused,
    /// Exit 0, a warning names the path, and a regular file is written in its place (the issue:
    /// own files are "ignored with a warning and rebuilt").
    Rebuilt,
    /// Exit 2 naming the lock file; nothing at all is written.
    Locked,
}

/// What is planted, and who runs mailmover afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plant {
    /// A link to a root-only directory or file; root runs.
    LinkToRoots,
    /// A link to a directory or file of the user's own, outside the target; root runs.
    LinkToUsers,
    /// The same, run as the user.
    LinkToUsersAsUser,
    /// A FIFO (file components only); root runs.
    Fifo,
}

use Expect::*;
use Node::{Dir, File};

type Row = (&'static str, Node, Expect);

/// The components planted at, relative to the target tree (see [`Setup::tree`]).
fn table(kind: Kind) -> &'static [Row] {
    match kind {
        Kind::MaildirPP => &[
            (".Sent", Dir, Refused),
            (".A.B", Dir, Refused),
            ("cur", Dir, Refused),
            ("new", Dir, Refused),
            ("tmp", Dir, Refused),
            (".Sent/cur", Dir, Refused),
            ("subscriptions", File, Rebuilt),
            ("dovecot-keywords", File, Rebuilt),
            ("mailmover-cache", File, Rebuilt),
            (".Sent/dovecot-keywords", File, Rebuilt),
            (".Sent/mailmover-cache", File, Rebuilt),
            (".Sent/mailmover-source-cache", File, Rebuilt),
            (".Sent/mailmover-state", File, Rebuilt),
            (".Sent/mailmover-copied", File, Rebuilt),
            (".Sent/maildirfolder", File, Rebuilt),
            ("mailmover.lock", File, Locked),
        ],
        Kind::MaildirFs => &[
            ("Sent", Dir, Refused),
            ("A", Dir, Refused),
            ("A/B", Dir, Refused),
            ("A/B/cur", Dir, Refused),
            ("A/B/new", Dir, Refused),
            ("A/B/tmp", Dir, Refused),
            ("subscriptions", File, Rebuilt),
            ("A/B/dovecot-keywords", File, Rebuilt),
            ("A/B/mailmover-cache", File, Rebuilt),
            ("A/B/mailmover-source-cache", File, Rebuilt),
            ("A/B/mailmover-state", File, Rebuilt),
            ("A/B/mailmover-copied", File, Rebuilt),
            ("mailmover.lock", File, Locked),
        ],
        Kind::MboxFile => &[
            ("out.mbox", File, Refused),
            (".out.mbox.mailmover-state.lock", File, Rebuilt),
            (".out.mbox.mailmover.lock", File, Locked),
        ],
        Kind::MboxDir => &[
            ("INBOX", File, Refused),
            ("Sent", File, Refused),
            ("A", File, Refused),
            ("A.sbd", Dir, Refused),
            ("A.sbd/B", File, Refused),
            (".Sent.mailmover-state.lock", File, Rebuilt),
            ("A.sbd/.B.mailmover-state.lock", File, Rebuilt),
            (".subscriptions", File, Rebuilt),
            (".mailmover.lock", File, Locked),
        ],
        Kind::Cpanel => &[
            ("home/newacct/mail", Dir, Refused),
            ("home/newacct/mail/cur", Dir, Refused),
            ("home/newacct/mail/example.com", Dir, Refused),
            ("home/newacct/mail/example.com/info", Dir, Refused),
            ("home/newacct/mail/example.com/info/.Sent", Dir, Refused),
            ("home/newacct/mail/example.com/info/cur", Dir, Refused),
            ("home/newacct/mail/example.com/info/new", Dir, Refused),
            ("home/newacct/mail/example.com/info/tmp", Dir, Refused),
            ("home/newacct/mail/example.com/info/subscriptions", File, Rebuilt),
            ("home/newacct/mail/example.com/info/dovecot-keywords", File, Rebuilt),
            ("home/newacct/mail/example.com/info/mailmover-cache", File, Rebuilt),
            ("home/newacct/mail/example.com/info/mailmover-source-cache", File, Rebuilt),
            ("home/newacct/mail/example.com/info/mailmover-state", File, Rebuilt),
            ("home/newacct/mail/example.com/info/mailmover-copied", File, Rebuilt),
            ("home/newacct/mail/example.com/info/maildirsize", File, Refused),
            ("home/newacct/etc", Dir, Refused),
            ("home/newacct/etc/example.com", Dir, Refused),
            ("home/newacct/etc/example.com/passwd", File, Refused),
            ("home/newacct/etc/example.com/shadow", File, Refused),
            ("home/newacct/etc/example.com/quota", File, Refused),
            ("home/newacct/etc/example.com/info", Dir, Refused),
            ("home/newacct/etc/example.com/info/filter", File, Refused),
            ("home/newacct/.autorespond", Dir, Refused),
            ("home/newacct/.autorespond/info@example.com", File, Refused),
            ("home/newacct/.mailmover-metadata", File, Refused),
            ("home/newacct/.mailmover.lock", File, Locked),
        ],
    }
}

const LINKS: &[Plant] = &[Plant::LinkToRoots, Plant::LinkToUsers, Plant::LinkToUsersAsUser];
const ALL: &[Plant] = &[Plant::LinkToRoots, Plant::LinkToUsers, Plant::LinkToUsersAsUser, Plant::Fifo];

fn plants(node: Node) -> &'static [Plant] {
    match node {
        Dir => LINKS,
        File => ALL,
    }
}

/// Every case of `kind`.
fn check_kind(kind: Kind) {
    if !require(Need::Root) {
        return;
    }
    let as_user = require_for(Need::Setpriv, "the runs as an ordinary user");
    let outside = Outside::new();
    let mut bad = Vec::new();
    for &(rel, node, expect) in table(kind) {
        for &plant in plants(node) {
            if as_user || plant != Plant::LinkToUsersAsUser {
                bad.extend(check_case(kind, rel, node, expect, plant, &outside.path));
            }
        }
    }
    assert!(bad.is_empty(), "{} failures:\n{}", bad.len(), bad.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Sources and targets.

const FOLDERS: [&str; 5] = ["INBOX", "Sent", "A", "A/B", "Work"];

fn pp_dir(root: &Path, folder: &str) -> PathBuf {
    if folder == "INBOX" { root.to_path_buf() } else { root.join(format!(".{}", folder.replace('/', "."))) }
}

fn fs_dir(root: &Path, folder: &str) -> PathBuf {
    if folder == "INBOX" { root.to_path_buf() } else { root.join(folder) }
}

fn subject(round: u32, folder: &str) -> String {
    format!("r{round} {folder}")
}

fn mbox_of(rounds: u32) -> Vec<u8> {
    let msgs: Vec<Vec<u8>> = (1..=rounds).map(|r| message(&subject(r, "INBOX"), "body\n")).collect();
    let entries: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("Mon Jan  2 15:04:05 2006", m.as_slice())).collect();
    make_mbox(&entries)
}

/// The cPanel folders new mail goes to, with their directory below the account home.
const CP_FOLDERS: [(&str, &str); 4] = [
    ("default", "mail"),
    ("info", "mail/example.com/info"),
    ("info/Sent", "mail/example.com/info/.Sent"),
    ("bob", "mail/example.org/bob"),
];

struct Setup {
    env: TestEnv,
    kind: Kind,
    src: PathBuf,
    /// Everything the target holds is below this directory (for an mbox file, its directory).
    tree: PathBuf,
    args: Vec<String>,
}

impl Setup {
    fn new(kind: Kind) -> Setup {
        let env = scratch();
        let src = env.path("src");
        let tree = env.path("t");
        let p = |p: &Path| p.display().to_string();
        let mut args: Vec<String> = vec!["sync".into()];
        match kind {
            Kind::MaildirPP | Kind::MaildirFs | Kind::MboxDir => {
                for f in FOLDERS {
                    let d = pp_dir(&src, f);
                    for s in ["cur", "new", "tmp"] {
                        std::fs::create_dir_all(d.join(s)).unwrap();
                    }
                    if f != "INBOX" {
                        std::fs::write(d.join("maildirfolder"), b"").unwrap();
                    }
                    std::fs::write(d.join("dovecot-keywords"), b"0 $Junk\n").unwrap();
                    std::fs::write(d.join("cur/1500000001.M1P1.src:2,Sa"), message(&subject(1, f), "body\n")).unwrap();
                }
                args.push(format!("maildir:{}", p(&src)));
                args.push(if kind == Kind::MboxDir { format!("mbox:{}", p(&tree)) } else { p(&tree) });
                if kind == Kind::MaildirFs {
                    args.extend(["--layout".into(), "fs".into()]);
                }
                // A and A/B both hold mail: only Thunderbird's layout has a place for both.
                if kind == Kind::MboxDir {
                    args.extend(["--layout".into(), "thunderbird".into()]);
                }
            }
            Kind::MboxFile => {
                std::fs::create_dir(&src).unwrap();
                std::fs::write(src.join("in.mbox"), mbox_of(1)).unwrap();
                args.push(format!("mbox:{}", p(&src.join("in.mbox"))));
                args.push(format!("mbox:{}", p(&tree.join("out.mbox"))));
            }
            Kind::Cpanel => {
                let st = Command::new("cp").arg("-a").arg(fixtures().join("cpanel")).arg(&src).status().unwrap();
                assert!(st.success());
                restore_maildir_dirs(&src);
                args.push(format!("cpanel:{}", p(&src.join("home/acct"))));
                args.push(format!("cpanel:{}", p(&tree.join("home/newacct"))));
                args.extend(["--source-etc".into(), p(&src.join("etc"))]);
                args.extend(["--target-etc".into(), p(&tree.join("etc"))]);
                std::fs::create_dir_all(tree.join("home/newacct")).unwrap();
            }
        }
        // Durability is not what is tested here, and syncfs after each run would take minutes.
        args.extend(["--json".into(), "--no-fsync".into()]);
        let s = Setup { env, kind, src, tree, args };
        s.settle(0);
        s
    }

    /// Fixed past mtimes for the source's directories (and mbox file), so that its stamps count
    /// as settled and the runs read and write folder states.
    fn settle(&self, n: i64) {
        let t = filetime::FileTime::from_unix_time(1_600_000_000 + n, 0);
        for e in walkdir::WalkDir::new(&self.src).into_iter().filter_map(Result::ok) {
            let ft = e.file_type();
            let keep = ft.is_dir() || (ft.is_file() && e.path().parent().is_some_and(|d| !is_msg_dir(d)));
            if keep && !ft.is_symlink() {
                filetime::set_file_mtime(e.path(), t).unwrap();
            }
        }
    }

    /// New mail in every source folder.
    fn add_round(&self, round: u32) {
        match self.kind {
            Kind::MaildirPP | Kind::MaildirFs | Kind::MboxDir => {
                for f in FOLDERS {
                    let name = format!("cur/15000000{round:02}.M{round}P1.src:2,S");
                    std::fs::write(pp_dir(&self.src, f).join(name), message(&subject(round, f), "body\n")).unwrap();
                }
            }
            Kind::MboxFile => std::fs::write(self.src.join("in.mbox"), mbox_of(round)).unwrap(),
            Kind::Cpanel => {
                for (f, dir) in CP_FOLDERS {
                    let name = format!("cur/15464000{round:02}.M{round}P9.round:2,S");
                    let p = self.src.join("home/acct").join(dir).join(name);
                    std::fs::write(p, message(&subject(round, f), "body\n")).unwrap();
                }
                let prefs = self.src.join("home/acct/.spamassassin/user_prefs");
                let mut t = std::fs::read_to_string(&prefs).unwrap();
                t.push_str(&format!("whitelist_from round{round}@example.com\n"));
                std::fs::write(&prefs, t).unwrap();
            }
        }
        self.settle(i64::from(round));
    }

    /// The target folders, with where each is on disk.
    fn folders(&self) -> Vec<(&'static str, PathBuf)> {
        let t = &self.tree;
        match self.kind {
            Kind::MaildirPP => FOLDERS.iter().map(|f| (*f, pp_dir(t, f))).collect(),
            Kind::MaildirFs => FOLDERS.iter().map(|f| (*f, fs_dir(t, f))).collect(),
            Kind::MboxDir => {
                FOLDERS.iter().map(|f| (*f, if *f == "A/B" { t.join("A.sbd/B") } else { t.join(f) })).collect()
            }
            Kind::MboxFile => vec![("INBOX", t.join("out.mbox"))],
            Kind::Cpanel => CP_FOLDERS.iter().map(|(f, d)| (*f, t.join("home/newacct").join(d))).collect(),
        }
    }

    /// How many copies of the message with `subject` folder `at` holds (none when a link is on
    /// the way: what is behind it is not the target's).
    fn count(&self, at: &Path, subject: &str) -> usize {
        let needle = format!("Subject: {subject}\n");
        let n = |b: &[u8]| String::from_utf8_lossy(b).matches(&needle).count();
        let linked = at.ancestors().take_while(|a| a.starts_with(&self.tree)).any(|a| a.is_symlink());
        if linked {
            return 0;
        }
        match self.kind {
            Kind::MboxFile | Kind::MboxDir => match std::fs::symlink_metadata(at) {
                Ok(m) if m.is_file() => n(&std::fs::read(at).unwrap()),
                _ => 0,
            },
            _ => ["cur", "new"]
                .iter()
                .map(|s| at.join(s))
                .filter(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
                .flat_map(|d| std::fs::read_dir(d).unwrap().filter_map(Result::ok))
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| n(&std::fs::read(e.path()).unwrap()))
                .sum(),
        }
    }

    /// Whether the cPanel run took the account file the source changed after the first run
    /// ([`Setup::add_round`]): the metadata went on.
    fn meta_went_on(&self, round: u32) -> bool {
        let prefs = std::fs::read_to_string(self.tree.join("home/newacct/.spamassassin/user_prefs"));
        prefs.is_ok_and(|t| t.contains(&format!("round{round}@example.com")))
    }

    fn run(&self, extra: &[&str], as_user: bool) -> Run {
        let mut c = if as_user {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={USER}"), &format!("--regid={USER}"), "--clear-groups"]);
            c.arg(assert_cmd::cargo::cargo_bin("mailmover"));
            c
        } else {
            Command::new(assert_cmd::cargo::cargo_bin("mailmover"))
        };
        c.args(&self.args).args(extra).current_dir(self.env.root()).env("TZ", "UTC").env_remove("RUST_LOG");
        let mut child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Read the pipes meanwhile: a full pipe would look like a hang.
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let o = std::thread::spawn(move || std::io::read_to_string(&mut out).unwrap_or_default());
        let e = std::thread::spawn(move || std::io::read_to_string(&mut err).unwrap_or_default());
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > HANG {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{:?} {extra:?} did not finish within {HANG:?} (a hang)", self.args);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let r = Run {
            code: status.code().unwrap_or_else(|| panic!("killed by a signal: {status:?}")),
            stdout: o.join().unwrap(),
            stderr: e.join().unwrap(),
        };
        assert_ne!(r.code, 101, "mailmover panicked:\n{}", r.stderr);
        r
    }
}

/// A temporary directory the user may enter. In memory where there is a tmpfs: a case creates
/// and removes some hundred files, which costs tens of times more on a disk file system, and
/// nothing checked here depends on which file system it is.
fn scratch() -> TestEnv {
    let shm = Path::new("/dev/shm");
    let base = if nix::unistd::access(shm, nix::unistd::AccessFlags::W_OK).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new().prefix("mailmover-test.").tempdir_in(base).expect("temp dir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    TestEnv { dir }
}

fn is_msg_dir(d: &Path) -> bool {
    d.file_name().is_some_and(|n| n == "cur" || n == "new" || n == "tmp")
}

fn lchown_tree(root: &Path, uid: u32) {
    for e in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
        std::os::unix::fs::lchown(e.path(), Some(uid), Some(uid)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// What the links point to.

/// Names a run might look up in a linked directory: each is there, holding [`MARK`], so that a
/// read through the link shows to the [`Watch`] and a copy shows in the target.
const DECOYS: [&str; 24] = [
    "INBOX",
    "Sent",
    "A",
    "B",
    ".B.mailmover-state",
    ".Sent.mailmover-state",
    ".B.mailmover-state.lock",
    ".Sent.mailmover-state.lock",
    "dovecot-keywords",
    "subscriptions",
    ".subscriptions",
    "mailmover-state",
    "mailmover-cache",
    "mailmover-source-cache",
    "mailmover-copied",
    "mailmover.lock",
    ".mailmover.lock",
    "maildirfolder",
    "maildirsize",
    "passwd",
    "shadow",
    "quota",
    "filter",
    "info@example.com",
];

fn decoy() -> Vec<u8> {
    let m = message(MARK, &format!("{MARK}\n"));
    let mut v = format!("0 {MARK}\n{MARK}:x:0:0::/root:/bin/sh\n{MARK}:1\n").into_bytes();
    v.extend(make_mbox(&[("Mon Jan  2 15:04:05 2006", &m)]));
    v
}

/// Where a run that followed a link to a directory would look next: the levels below a linked
/// Maildir folder, mbox level or cPanel `mail/`, `etc/` or domain directory.
const DECOY_DIRS: [&str; 8] =
    ["", "B", ".Sent", "info", "info/.Sent", "example.com", "example.com/info", "example.org/bob"];

/// A directory that looks like whatever a run may expect there: a Maildir, an mbox directory,
/// a cPanel `mail/` or `etc/`.
fn decoy_dir(d: &Path) {
    for level in DECOY_DIRS {
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(d.join(level).join(s)).unwrap();
        }
    }
    for level in DECOY_DIRS {
        let d = d.join(level);
        std::fs::write(d.join("cur/1400000000.M1P1.decoy:2,S"), message(MARK, "x\n")).unwrap();
        std::fs::write(d.join("new/1400000001.M1P1.decoy"), message(MARK, "y\n")).unwrap();
        for n in DECOYS {
            // A level name is a directory already.
            if !d.join(n).exists() {
                std::fs::write(d.join(n), decoy()).unwrap();
            }
        }
    }
}

/// `{users,roots}/{dir,file}`: the user's own, and root-only (0700/0600). Made once for all
/// the cases of a kind (making it costs more than a case): a case that changes it fails.
struct Outside {
    _env: TestEnv,
    path: PathBuf,
}

impl Outside {
    fn new() -> Outside {
        let env = scratch();
        let path = env.path("outside");
        make_outside(&path);
        Outside { _env: env, path }
    }
}

fn make_outside(outside: &Path) {
    for who in ["users", "roots"] {
        let base = outside.join(who);
        decoy_dir(&base.join("dir"));
        std::fs::write(base.join("file"), decoy()).unwrap();
        if who == "users" {
            lchown_tree(&base, USER);
        } else {
            for e in walkdir::WalkDir::new(&base).into_iter().filter_map(Result::ok) {
                let mode = if e.file_type().is_dir() { 0o700 } else { 0o600 };
                std::fs::set_permissions(e.path(), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            }
        }
    }
}

/// Every open, read, write, create, delete or change of anything in the directories below a
/// root, as inotify reports them. Unlike access times these show reads with `O_NOATIME`,
/// which root may use on any file.
struct Watch {
    fd: std::os::fd::OwnedFd,
    dirs: std::collections::HashMap<i32, PathBuf>,
}

impl Watch {
    fn new(root: &Path) -> Watch {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain system calls; the descriptor is owned from here on.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(raw >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mask = libc::IN_OPEN
            | libc::IN_ACCESS
            | libc::IN_MODIFY
            | libc::IN_ATTRIB
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF;
        let mut dirs = std::collections::HashMap::new();
        for e in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_dir()) {
            let c = std::ffi::CString::new(e.path().as_os_str().as_bytes()).unwrap();
            let wd = unsafe { libc::inotify_add_watch(raw, c.as_ptr(), mask) };
            assert!(wd >= 0, "inotify_add_watch {}: {}", e.path().display(), std::io::Error::last_os_error());
            dirs.insert(wd, e.into_path());
        }
        let w = Watch { fd, dirs };
        // Walking the tree while watches were added shows up too.
        w.events();
        w
    }

    /// What happened since the last call, as "path: events".
    fn events(&self) -> Vec<String> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let head = std::mem::size_of::<libc::inotify_event>();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            let mut off = 0;
            while off + head <= n {
                // SAFETY: the kernel wrote a whole event here; read_unaligned copes with the buffer.
                let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let name = &buf[off + head..off + head + ev.len as usize];
                let name = name.split(|&b| b == 0).next().unwrap_or_default();
                off += head + ev.len as usize;
                if ev.mask & libc::IN_IGNORED != 0 {
                    continue;
                }
                let at = match self.dirs.get(&ev.wd) {
                    Some(d) if name.is_empty() => d.clone(),
                    Some(d) => d.join(std::ffi::OsStr::from_bytes(name)),
                    None => PathBuf::from("(events lost)"),
                };
                out.push(format!("{}: {:#x}", at.display(), ev.mask));
            }
        }
        out
    }
}

/// Regular files of the target holding [`MARK`]: something read through a link and copied.
fn leaked(tree: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(tree)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| std::fs::read(e.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(MARK)))
        .map(|e| e.into_path())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// One case.

/// Whether an entry of a report's `errors` or `warnings` is about `path` (or below it).
fn names(v: &serde_json::Value, path: &str) -> bool {
    v.as_array().is_some_and(|a| {
        a.iter().any(|e| {
            e["path"].as_str().is_some_and(|p| p == path || p.starts_with(&format!("{path}/")))
                || e["reason"].as_str().is_some_and(|r| r.contains(path))
        })
    })
}

/// Runs one case; what went wrong, all of it (not just the first thing), as lines.
fn check_case(kind: Kind, rel: &str, node: Node, expect: Expect, plant: Plant, outside: &Path) -> Vec<String> {
    let what = format!("{kind:?} {rel} {plant:?}");
    let s = Setup::new(kind);
    s.run(&[], false).expect_code(0);
    let planted = s.tree.join(rel);
    assert!(
        std::fs::symlink_metadata(&planted).is_ok_and(|m| if node == Dir { m.is_dir() } else { m.is_file() }),
        "{what}: the first run wrote no {node:?} to plant at"
    );
    lchown_tree(&s.tree, USER);
    lchown_tree(&s.src, USER);
    s.add_round(2);

    // The user plants.
    match node {
        Dir => std::fs::remove_dir_all(&planted).unwrap(),
        File => std::fs::remove_file(&planted).unwrap(),
    }
    let pointee = match (plant, node) {
        (Plant::LinkToRoots, Dir) => Some(outside.join("roots/dir")),
        (Plant::LinkToRoots, File) => Some(outside.join("roots/file")),
        (Plant::Fifo, _) => None,
        (_, Dir) => Some(outside.join("users/dir")),
        (_, File) => Some(outside.join("users/file")),
    };
    match &pointee {
        Some(to) => std::os::unix::fs::symlink(to, &planted).unwrap(),
        None => nix::unistd::mkfifo(&planted, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap(),
    }
    std::os::unix::fs::lchown(&planted, Some(USER), Some(USER)).unwrap();

    let as_user = plant == Plant::LinkToUsersAsUser;
    // Only the link's own target can be written through it (and the watch sees all of it).
    let pointee_before = pointee.as_ref().map(|p| snapshot(p));
    let source_before = snapshot(&s.src);
    let tree_before = snapshot(&s.tree);
    let watch = Watch::new(outside);
    let shown = planted.display().to_string();
    let mut bad = Vec::new();
    let mut check = |ok: bool, msg: String| {
        if !ok {
            bad.push(msg);
        }
    };

    // --delete: the run that reads the record of copies too.
    for pass in 1..=2 {
        // The checks after the run before read the outside themselves.
        watch.events();
        let r = s.run(&["--delete"], as_user);
        let at = format!("{what}, run {pass} after planting");
        let touched = watch.events();
        check(touched.is_empty(), format!("{at}: touched through the link: {touched:?}"));
        if pass == 2 {
            if let (Some(p), Some(before)) = (&pointee, &pointee_before) {
                let d = snapshot_diff(before, &snapshot(p));
                check(d.is_empty(), format!("{at}: changed what the link points to:\n{d}"));
            }
            let d = snapshot_diff(&source_before, &snapshot(&s.src));
            check(d.is_empty(), format!("{at}: changed the source:\n{d}"));
        }
        let l = leaked(&s.tree);
        check(l.is_empty(), format!("{at}: what the link points to was copied into {l:?}"));

        let md = std::fs::symlink_metadata(&planted).unwrap_or_else(|e| panic!("{at}: {shown}: {e}"));
        let left = match &pointee {
            Some(to) => md.file_type().is_symlink() && std::fs::read_link(&planted).unwrap() == *to,
            None => md.file_type().is_fifo(),
        };
        let (errors, warnings) = match serde_json::from_str::<serde_json::Value>(r.stdout.trim()) {
            Ok(j) => (j["errors"].clone(), j["warnings"].clone()),
            Err(_) => (serde_json::Value::Null, serde_json::Value::Null),
        };
        let want = match expect {
            Refused => 1,
            Rebuilt => 0,
            Locked => 2,
        };
        check(
            r.code == want,
            format!(
                "{at}: exit {} (expected {want}): errors {errors}, warnings {warnings}, stderr {}",
                r.code, r.stderr
            ),
        );
        match expect {
            Refused => {
                check(left, format!("{at}: {shown} was replaced"));
                check(names(&errors, &shown), format!("{at}: no error names {shown}: {errors}"));
            }
            Rebuilt if pass == 1 => {
                check(names(&warnings, &shown), format!("{at}: no warning names {shown}: {warnings}"));
                check(md.is_file(), format!("{at}: {shown} not rebuilt as a regular file"));
            }
            Rebuilt => {
                check(md.is_file(), format!("{at}: {shown} not a regular file"));
                check(!names(&warnings, &shown), format!("{at}: the rebuilt {shown} is not trusted: {warnings}"));
            }
            Locked => {
                check(left, format!("{at}: {shown} was replaced"));
                check(r.stderr.contains(&shown), format!("{at}: the lock file is not named: {}", r.stderr));
                let d = snapshot_diff(&tree_before, &snapshot(&s.tree));
                check(d.is_empty(), format!("{at}: a refused run changed the target:\n{d}"));
            }
        }
        if pass == 1 {
            for m in went_on(&s, rel, expect) {
                check(false, format!("{at}: {m}"));
            }
        }
    }
    bad
}

/// The rest of the run went on: every folder's new message once when only an own file was
/// planted; the folders away from the planted component otherwise. What is not so.
fn went_on(s: &Setup, rel: &str, expect: Expect) -> Vec<String> {
    let planted = s.tree.join(rel);
    // The planted component is the folder, a level above it (an mbox folder file's `.sbd` too),
    // or a part of it (`cur/`, `maildirsize`).
    let sbd = PathBuf::from(format!("{}.sbd", planted.display()));
    let hit = |dir: &Path| dir.starts_with(&planted) || dir.starts_with(&sbd) || planted.parent() == Some(dir);
    let mut bad = Vec::new();
    for (f, dir) in s.folders() {
        let n = s.count(&dir, &subject(2, f));
        match expect {
            Locked if n != 0 => bad.push(format!("folder {f} written though the run was refused")),
            Rebuilt if n != 1 => bad.push(format!("folder {f}: its new message copied {n} times")),
            Refused if n != 1 && !hit(&dir) && s.kind != Kind::MboxFile => {
                bad.push(format!("folder {f}, away from the link: its new message copied {n} times"))
            }
            _ => {}
        }
    }
    if s.kind == Kind::Cpanel && expect != Locked && !s.meta_went_on(2) {
        bad.push("the account's other metadata was not written".into());
    }
    bad
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn maildir_plus_plus_target() {
    check_kind(Kind::MaildirPP);
}

#[test]
fn maildir_fs_layout_target() {
    check_kind(Kind::MaildirFs);
}

#[test]
fn mbox_file_target() {
    check_kind(Kind::MboxFile);
}

#[test]
fn mbox_directory_target() {
    check_kind(Kind::MboxDir);
}

#[test]
fn cpanel_home_target() {
    check_kind(Kind::Cpanel);
}

/// The checks above are only as good as the watch: it sees a read and a write made through a
/// link, and a listing of the linked directory.
#[test]
fn the_watch_sees_what_goes_through_a_link() {
    let env = scratch();
    let outside = env.path("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("dir/file"), b"x").unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), env.path("link")).unwrap();
    let w = Watch::new(&outside);
    assert_eq!(w.events(), Vec::<String>::new());
    std::fs::read(env.path("link/file")).unwrap();
    assert!(w.events().iter().any(|e| e.contains("dir/file")), "a read");
    std::fs::read_dir(env.path("link")).unwrap().for_each(drop);
    assert!(!w.events().is_empty(), "a listing");
    std::fs::write(env.path("link/new"), b"y").unwrap();
    assert!(w.events().iter().any(|e| e.contains("dir/new")), "a write");
}
