//! Other software reads what mailmover writes: Dovecot's `doveadm` (run without a server, on a
//! copy, as acceptance/README.md "doveadm without a server" describes) sees the same messages,
//! flags, keywords and received dates in Maildir (Maildir++ and fs layouts) and mbox targets;
//! CPython's `mailbox` module reads the same counts and bytes.
//!
//! No pre-1970 dates here: doveadm prints them as unsigned 64-bit numbers.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The temp dir must be traversable by nobody (tempfile makes it 0700).
fn open_up(env: &TestEnv) {
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn give_to_nobody(p: &Path) {
    if is_root() {
        let st = Command::new("chown").args(["-R", "65534:65534"]).arg(p).status().unwrap();
        assert!(st.success());
    }
}

/// `doveadm` without a server for the mail at `location`: a throw-away config and home, run
/// as nobody when the tests run as root.
fn doveadm(env: &TestEnv, location: &str) -> Command {
    let conf = env.write("dc.conf", b"namespace inbox {\n  inbox = yes\n  separator = /\n}\n");
    let home = env.path("dovehome");
    std::fs::create_dir_all(&home).unwrap();
    give_to_nobody(&home);
    let mut c = Command::new("doveadm");
    c.arg("-c")
        .arg(&conf)
        .args(["-o", &format!("mail_location={location}")])
        .arg("-o")
        .arg(format!("mail_home={}", home.display()));
    c.args(["-o", "mailbox_list_index=no"]);
    if is_root() {
        c.args(["-o", "mail_uid=65534", "-o", "mail_gid=65534"]).env("USER", "nobody");
    }
    c
}

/// `doveadm fetch` of every message: (mailbox, flags sorted, date.received.unixtime, size).
fn doveadm_fetch(env: &TestEnv, location: &str) -> Vec<(String, Vec<String>, i64, u64)> {
    let mut c = doveadm(env, location);
    c.args(["-f", "json", "fetch", "mailbox flags date.received.unixtime size.physical", "all"]);
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("Error"), "doveadm failed ({:?}):\n{stderr}", out.status);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doveadm output ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let mut rows: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut flags: Vec<String> = r["flags"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .filter(|f| *f != "\\Recent")
                .map(String::from)
                .collect();
            flags.sort();
            (
                r["mailbox"].as_str().unwrap().to_string(),
                flags,
                r["date.received.unixtime"].as_str().unwrap().parse().unwrap(),
                r["size.physical"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// IMAP flags and keywords of a Maildir message, as Dovecot names them.
fn imap_flags(m: &Msg) -> Vec<String> {
    let mut v: Vec<String> = m
        .flags
        .chars()
        .filter_map(|c| match c {
            'D' => Some("\\Draft"),
            'F' => Some("\\Flagged"),
            'R' => Some("\\Answered"),
            'S' => Some("\\Seen"),
            'T' => Some("\\Deleted"),
            _ => None,
        })
        .map(String::from)
        .chain(m.keywords.iter().cloned())
        .collect();
    v.sort();
    v
}

/// A source with flags, keywords and several folders: the Thunderbird tree plus the UTF-7 dir.
fn synced_maildir(env: &TestEnv, layout: &str) -> Vec<Msg> {
    let tb = env.fixture("mbox/thunderbird-dir");
    env.sync(&format!("mbox:{}", tb.display()), "out", &["--layout", layout]).expect_code(0);
    let u = env.fixture("mbox/utf7-dir");
    env.sync(&format!("mbox:{}", u.display()), "out", &["--layout", layout, "--exclude", "^INBOX$"]).expect_code(0);
    let cl2 = env.fixture("mbox/status-flags.mbox");
    env.sync(cl2.to_str().unwrap(), "out", &["--layout", layout, "--map-folder", "s/^INBOX$/Flags/"]).expect_code(0);
    read_maildir(&env.path("out"), if layout == "fs" { Layout::Fs } else { Layout::MaildirPP })
}

fn check_doveadm_maildir(layout: &str) {
    if !require(Need::Doveadm) {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    let msgs = synced_maildir(&env, layout);
    assert!(msgs.len() >= 15);
    let copy = env.path("copy");
    copy_store(&env.path("out"), &copy);
    give_to_nobody(&copy);
    let loc = if layout == "fs" {
        format!("maildir:{}:LAYOUT=fs", copy.display())
    } else {
        format!("maildir:{}", copy.display())
    };
    let got = doveadm_fetch(&env, &loc);
    let mut want: Vec<_> =
        msgs.iter().map(|m| (m.folder.clone(), imap_flags(m), m.mtime, m.bytes.len() as u64)).collect();
    want.sort();
    assert_same_set(&want, &got, &format!("doveadm on a {layout} Maildir (mailbox, flags, received date, size)"));
}

#[test]
fn doveadm_reads_maildirpp_target() {
    check_doveadm_maildir("maildir++");
}

#[test]
fn doveadm_reads_fs_layout_target() {
    check_doveadm_maildir("fs");
}

fn mbox_target(env: &TestEnv) -> (Vec<Msg>, std::path::PathBuf) {
    let src = env.fixture("maildir/dovecot-keywords");
    for (i, e) in
        walkdir::WalkDir::new(&src).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).enumerate()
    {
        set_mtime(e.path(), 1_400_000_000 + i as i64 * 7_777);
    }
    let msgs = read_maildir(&src, Layout::MaildirPP);
    std::fs::create_dir_all(env.path("mb")).unwrap();
    env.sync(&format!("maildir:{}", src.display()), "mbox:mb/INBOX", &[]).expect_code(0);
    (msgs, env.path("mb"))
}

fn doveadm_mbox_rows(env: &TestEnv, dir: &Path) -> Vec<(String, Vec<String>, i64, u64)> {
    let copy = env.path("mbcopy");
    copy_store(dir, &copy);
    give_to_nobody(&copy);
    doveadm_fetch(env, &format!("mbox:{}:INBOX={}/INBOX", copy.display(), copy.display()))
}

#[test]
fn doveadm_reads_mbox_target_flags_and_dates() {
    if !require(Need::Doveadm) {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    let (msgs, dir) = mbox_target(&env);
    let strip_kw = |v: Vec<String>| v.into_iter().filter(|f| f.starts_with('\\')).collect::<Vec<_>>();
    let got: Vec<_> = doveadm_mbox_rows(&env, &dir).into_iter().map(|(_, f, d, _)| (strip_kw(f), d)).collect();
    let want: Vec<_> = msgs.iter().map(|m| (strip_kw(imap_flags(m)), m.mtime)).collect();
    assert_same_set(&want, &got, "doveadm on the mbox target (system flags, received date)");
}

#[test]
fn doveadm_sees_keywords_in_mbox_target() {
    if !require(Need::Doveadm) {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    let (msgs, dir) = mbox_target(&env);
    let got: Vec<_> = doveadm_mbox_rows(&env, &dir).into_iter().map(|(_, f, d, _)| (f, d)).collect();
    let want: Vec<_> = msgs.iter().map(|m| (imap_flags(m), m.mtime)).collect();
    assert_same_set(&want, &got, "doveadm on the mbox target (flags and keywords)");
}

/// What `doveadm ARGS` prints, a line each, for the mail at `location` (a copy at `copy`,
/// given to nobody when run as root).
fn doveadm_lines(env: &TestEnv, copy: &Path, location: &str, args: &[&str]) -> Vec<String> {
    give_to_nobody(copy);
    let mut c = doveadm(env, location);
    let out = c.args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("Error"), "doveadm failed ({:?}):\n{stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// An mbox directory target carries its folders' subscriptions where Dovecot keeps them
/// (`.subscriptions` at its root): IMAP clients that show subscribed folders only see them.
#[test]
fn doveadm_sees_the_subscriptions_of_an_mbox_directory() {
    if !require(Need::Doveadm) {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    for f in ["src/cur", "src/new", "src/tmp", "src/.Sent/cur", "src/.Sent/new", "src/.Sent/tmp", "src/.Drafts/cur"] {
        std::fs::create_dir_all(env.path(f)).unwrap();
    }
    env.write("src/cur/1.a:2,S", &message("in", "i\n"));
    env.write("src/.Sent/cur/2.b:2,S", &message("sent", "s\n"));
    restore_maildir_dirs(&env.path("src/.Drafts"));
    std::fs::create_dir_all(env.path("mbdir")).unwrap();
    env.sync("maildir:src", "mbox:mbdir", &[]).expect_code(0);
    let copy = env.path("subcopy");
    copy_store(&env.path("mbdir"), &copy);
    let location = format!("mbox:{}:INBOX={}/INBOX", copy.display(), copy.display());
    let mut subscribed = doveadm_lines(&env, &copy, &location, &["mailbox", "list", "-s"]);
    subscribed.sort();
    assert_eq!(subscribed, vec!["Drafts".to_string(), "Sent".to_string()]);
    let mut listed = doveadm_lines(&env, &copy, &location, &["mailbox", "list"]);
    listed.sort();
    assert_eq!(listed, vec!["Drafts".to_string(), "INBOX".to_string(), "Sent".to_string()], "nothing else listed");
}

/// Dovecot lists the mailboxes of an mbox directory mailmover wrote, and nothing else: the
/// state beside each mbox ends in `.lock`, which its lister skips (any other file there is a
/// mailbox to it). A state an older version left under its old name is read, then removed.
#[test]
fn doveadm_lists_no_file_of_ours_as_a_mailbox() {
    if !require(Need::Doveadm) {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    let (_, dir) = mbox_target(&env);
    // A source changed in the last seconds gets no state (it may still change unseen).
    let src = env.path("dovecot-keywords");
    for d in ["", "cur", "new", "tmp"] {
        set_mtime(&src.join(d), 1_500_000_000);
    }
    env.sync(&format!("maildir:{}", src.display()), "mbox:mb/INBOX", &[]).expect_code(0);
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| n == "INBOX" || n.ends_with(".lock")), "{names:?}");
    assert!(names.contains(&".INBOX.mailmover-state.lock".to_string()), "{names:?}");
    // An older version's state name: taken as the state (the re-run is the unchanged one),
    // then replaced by the new name.
    let new = dir.join(".INBOX.mailmover-state.lock");
    std::fs::rename(&new, dir.join(".INBOX.mailmover-state")).unwrap();
    let again = env.sync(&format!("maildir:{}", src.display()), "mbox:mb/INBOX", &[]);
    again.expect_code(0);
    assert_eq!(again.n("transferred"), 0);
    assert!(new.is_file() && !dir.join(".INBOX.mailmover-state").exists());

    let copy = env.path("listcopy");
    copy_store(&dir, &copy);
    let location = format!("mbox:{}:INBOX={}/INBOX", copy.display(), copy.display());
    let listed = doveadm_lines(&env, &copy, &location, &["mailbox", "list"]);
    assert_eq!(listed, vec!["INBOX".to_string()], "doveadm mailbox list");
}

/// Dovecot's server `program` (`imap`, `pop3`) for one preauthenticated session on stdin, on
/// the mail at `location` (as nobody when the tests run as root), its answers piped back.
fn dovecot_server(env: &TestEnv, program: &str, location: &str) -> std::process::Child {
    let conf = env.write("dc.conf", b"namespace inbox {\n  inbox = yes\n  separator = /\n}\n");
    let home = env.path("dovehome");
    std::fs::create_dir_all(&home).unwrap();
    give_to_nobody(&home);
    let bin = DOVECOT_IMAP.replace("/imap", &format!("/{program}"));
    let mut c = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", &bin]);
        c
    } else {
        Command::new(&bin)
    };
    c.arg("-c").arg(&conf).args(["-o", &format!("mail_location={location}")]);
    c.arg("-o").arg(format!("mail_home={}", home.display())).args(["-o", "mailbox_list_index=no"]);
    c.env("USER", "nobody").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    c.stderr(std::process::Stdio::piped());
    c.spawn().unwrap()
}

/// Whether Dovecot's servers can be run here (and as nobody, when the tests run as root).
fn dovecot_servers() -> bool {
    require(Need::Doveadm) && require(Need::DovecotImap) && (!is_root() || require(Need::Setpriv))
}

/// One preauthenticated IMAP session of Dovecot's server on the mail at `location`: the
/// `commands`, then LOGOUT; what it answered. Dovecot must have found nothing broken in the
/// mail (its log says when it had to re-read an mbox it took for corrupted).
fn imap_session(env: &TestEnv, location: &str, commands: &[&str]) -> String {
    use std::io::Write;
    let mut child = dovecot_server(env, "imap", location);
    let mut script: String = commands.iter().enumerate().map(|(i, c)| format!("t{i} {c}\r\n")).collect();
    script.push_str("z LOGOUT\r\n");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for (i, command) in commands.iter().enumerate() {
        assert!(text.contains(&format!("t{i} OK")), "IMAP command {command} failed:\n{text}");
    }
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("corrupted") && !log.contains("Error:"), "Dovecot's log:\n{log}");
    text
}

/// One preauthenticated POP3 session of Dovecot's server: `UIDL`; the `N UIDL` lines.
fn pop3_uidl(env: &TestEnv, location: &str) -> Vec<String> {
    use std::io::Write;
    let mut child = dovecot_server(env, "pop3", location);
    child.stdin.take().unwrap().write_all(b"UIDL\r\nQUIT\r\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| l.split(' ').count() == 2 && l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert!(!lines.is_empty(), "no UIDL answer:\n{text}");
    lines
}

/// UIDVALIDITY and the UIDs a session's `SELECT` and `FETCH 1:* (UID)` showed.
fn uids(session: &str) -> (u64, Vec<u64>) {
    let num = |s: &str| s.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u64>().unwrap();
    let validity = session.split("[UIDVALIDITY ").nth(1).map(num).expect("no UIDVALIDITY");
    let uids = session.split("(UID ").skip(1).map(num).collect();
    (validity, uids)
}

/// Size, mtime (ns) and inode: what tells a file was rewritten.
fn file_stamp(p: &Path) -> (u64, i128, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    (m.size(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()), m.ino())
}

/// Dovecot serves an mbox directory mailmover wrote as its own: a client's session (SELECT,
/// FETCH), `doveadm force-resync` and `index` leave the file as it was (bytes, mtime, inode);
/// a re-run changes nothing; a re-sync that adds mail keeps UIDVALIDITY and every old UID.
/// The source holds what trips writers: Status lines of its own (as mb2md leaves them), a
/// message without a header block, body lines starting with `From ` and `>From `, new mail.
#[test]
fn dovecot_serves_an_mbox_directory_as_written() {
    if !dovecot_servers() {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    for d in ["src/cur", "src/new", "src/tmp", "mb"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    env.write("src/cur/1.a:2,S", b"Subject: a\nStatus: RO\nX-Status: F\n\nFrom here\n>From there\n");
    env.write("src/cur/2.b:2,RS", b"just text, no header block\nsecond line\n");
    env.write("src/new/3.c", &message("new mail", "n\n"));
    for (i, f) in ["src/cur/1.a:2,S", "src/cur/2.b:2,RS", "src/new/3.c"].iter().enumerate() {
        set_mtime(&env.path(f), 1_500_000_000 + i as i64 * 60);
    }
    env.sync("maildir:src", "mbox:mb", &[]).expect_code(0);
    let mb = env.path("mb");
    give_to_nobody(&mb);
    let inbox = mb.join("INBOX");
    let written = file_stamp(&inbox);
    let location = format!("mbox:{}:INBOX={}", mb.display(), inbox.display());
    let first = imap_session(&env, &location, &["SELECT INBOX", "FETCH 1:* (UID FLAGS BODY.PEEK[TEXT])"]);
    assert!(first.contains("From here\r\n>From there"), "the body is shown as it was:\n{first}");
    let (validity, old) = uids(&first);
    assert_eq!(old, [1, 2, 3]);
    doveadm_lines(&env, &mb, &location, &["force-resync", "INBOX"]);
    doveadm_lines(&env, &mb, &location, &["index", "INBOX"]);
    assert_eq!(file_stamp(&inbox), written, "Dovecot rewrote or touched the mbox");

    let again = env.sync("maildir:src", "mbox:mb", &["--no-cache"]);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("flags_updated")), (0, 0));
    assert_eq!(file_stamp(&inbox), written, "the re-run rewrote the mbox");

    env.write("src/cur/4.d:2,S", &message("later", "l\n"));
    set_mtime(&env.path("src/cur/4.d:2,S"), 1_500_001_000);
    let more = env.sync("maildir:src", "mbox:mb", &[]);
    more.expect_code(0);
    assert_eq!(more.n("transferred"), 1);
    assert_eq!(file_stamp(&inbox).2, written.2, "the new message was appended, the file not replaced");
    let after = imap_session(&env, &location, &["SELECT INBOX", "FETCH 1:* (UID)"]);
    assert_eq!(uids(&after), (validity, vec![1, 2, 3, 4]), "UIDVALIDITY and the old UIDs are kept:\n{after}");
}

/// An mbox file written in mboxrd (quoted `>From ` lines), then opened by Dovecot, which adds
/// X-UID, X-IMAPbase and (to bodies of 1 KiB or more) Content-Length: the next run still reads
/// it as mboxrd (its state says so), so nothing is copied twice and nothing quoted again.
#[test]
fn an_mboxrd_file_dovecot_added_its_headers_to_is_read_as_written() {
    if !require(Need::Doveadm) {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    for d in ["src/cur", "src/new", "src/tmp", "mb"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    let body = format!("From here\n>From there\n{}", "a line of text to pass 1 KiB\n".repeat(60));
    env.write("src/cur/1.a:2,S", &message("quoted", &body));
    env.write("src/cur/2.b:2,S", &message("plain", "x\n"));
    set_mtime(&env.path("src/cur/1.a:2,S"), 1_500_000_000);
    set_mtime(&env.path("src/cur/2.b:2,S"), 1_500_000_060);
    env.sync("maildir:src", "mbox:mb/INBOX", &[]).expect_code(0);
    let inbox = env.path("mb/INBOX");
    assert!(std::fs::read(&inbox).unwrap().windows(11).any(|w| w == b"\n>From here"), "written as mboxrd");
    let mb = env.path("mb");
    let location = format!("mbox:{}:INBOX={}", mb.display(), inbox.display());
    doveadm_lines(&env, &mb, &location, &["force-resync", "INBOX"]);
    let text = std::fs::read(&inbox).unwrap();
    assert!(text.windows(16).any(|w| w == b"\nContent-Length:"), "Dovecot added its headers");
    let again = env.sync("maildir:src", "mbox:mb/INBOX", &["--no-cache"]);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("flags_updated")), (0, 0));
    assert_eq!(std::fs::read(&inbox).unwrap(), text, "the re-run rewrote the mbox");
    env.run(vec!["verify", "maildir:src", "mbox:mb/INBOX"]).expect_code(0);
}

/// The Subject lines of a session's `FETCH (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])`, in UID
/// order.
fn subjects_by_uid(session: &str) -> Vec<String> {
    session.lines().filter_map(|l| l.strip_prefix("Subject: ")).map(|s| s.trim().to_string()).collect()
}

/// Messages converted into a new Maildir folder get UIDs in their source's order, whatever
/// their dates (mailmover writes the folder's `dovecot-uidlist` before Dovecot first sees
/// it), and the same source gives the same file names on every run. A folder Dovecot numbered
/// already keeps its uidlist as it is.
#[test]
fn dovecot_numbers_a_new_maildir_folder_in_source_order() {
    if !dovecot_servers() {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    // Dates out of order, two of them equal.
    let dates = [
        "Tue Jan  3 10:00:00 2017",
        "Sun Jan  1 10:00:00 2017",
        "Mon Jan  2 10:00:00 2017",
        "Mon Jan  2 10:00:00 2017",
    ];
    let mut mbox = Vec::new();
    for (i, d) in dates.iter().enumerate() {
        mbox.extend_from_slice(format!("From a@b {d}\n").as_bytes());
        mbox.extend_from_slice(&message(&format!("m{i}"), "x\n"));
        mbox.push(b'\n');
    }
    env.write("src.mbox", &mbox);
    env.sync("mbox:src.mbox", "maildir:md", &[]).expect_code(0);
    env.sync("mbox:src.mbox", "maildir:md2", &[]).expect_code(0);
    let names = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(env.path(d).join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("md"), names("md2"), "the same names on every run");
    let md = env.path("md");
    give_to_nobody(&md);
    let location = format!("maildir:{}", md.display());
    let s = imap_session(&env, &location, &["SELECT INBOX", "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"]);
    assert_eq!(subjects_by_uid(&s), ["m0", "m1", "m2", "m3"], "UIDs follow the source:\n{s}");
    assert_eq!(uids(&s).1, [1, 2, 3, 4]);

    // Numbered by Dovecot already: new mail does not renumber it.
    let uidlist = std::fs::read(md.join("dovecot-uidlist")).unwrap();
    let mut more = mbox.clone();
    more.extend_from_slice(b"From a@b Sat Dec 31 10:00:00 2016\n");
    more.extend_from_slice(&message("m4", "x\n"));
    env.write("src.mbox", &more);
    env.sync("mbox:src.mbox", "maildir:md", &[]).expect_code(0);
    assert_eq!(std::fs::read(md.join("dovecot-uidlist")).unwrap(), uidlist, "mailmover touched Dovecot's uidlist");
    let s = imap_session(&env, &location, &["SELECT INBOX", "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"]);
    assert_eq!(subjects_by_uid(&s), ["m0", "m1", "m2", "m3", "m4"], "{s}");
    assert_eq!(uids(&s).1, [1, 2, 3, 4, 5]);
}

/// Keyword letters with no name in the source's `dovecot-keywords` stay letters without a name
/// (with a warning); Dovecot shows them as `unknown-N` and writes that name into the list, and
/// a re-run compares them by that name: nothing is re-flagged, verify agrees.
#[test]
fn keyword_letters_without_a_name_compare_by_the_name_dovecot_gives_them() {
    if !dovecot_servers() {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    for d in ["src/cur", "src/new", "src/tmp"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    env.write("src/dovecot-keywords", b"0 $Junk\n");
    env.write("src/cur/1.a:2,Sal", &message("one", "x\n"));
    set_mtime(&env.path("src/cur/1.a:2,Sal"), 1_500_000_000);
    let first = env.sync("maildir:src", "maildir:md", &[]);
    first.expect_code(0);
    assert!(first.stdout.contains("unknown-11"), "said: {}", first.stdout);
    let md = env.path("md");
    let keywords = std::fs::read_to_string(md.join("dovecot-keywords")).unwrap();
    assert!(!keywords.contains("unknown"), "{keywords}");
    let names: Vec<String> =
        std::fs::read_dir(md.join("cur")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.len() == 1 && names[0].ends_with(":2,Sal"), "{names:?}");
    give_to_nobody(&md);
    let location = format!("maildir:{}", md.display());
    let s = imap_session(&env, &location, &["SELECT INBOX", "FETCH 1 (FLAGS)"]);
    assert!(s.contains("$Junk unknown-11"), "{s}");
    let again = env.sync("maildir:src", "maildir:md", &["--no-cache"]);
    again.expect_code(0);
    assert_eq!((again.n("transferred"), again.n("flags_updated")), (0, 0));
    env.run(vec!["verify", "maildir:src", "maildir:md"]).expect_code(0);
}

/// An mbox directory nests subfolders as Dovecot does (`Archive/2019` is the file `2019` in the
/// directory `Archive`): Dovecot lists them under their names, not as `Archive.sbd/…`.
#[test]
fn doveadm_lists_nested_folders_of_an_mbox_directory_by_their_names() {
    if !require(Need::Doveadm) {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    for f in
        ["src/cur", "src/new", "src/tmp", "src/.Archive.2019/cur", "src/.Archive.2019/new", "src/.Archive.2019/tmp"]
    {
        std::fs::create_dir_all(env.path(f)).unwrap();
    }
    env.write("src/cur/1.a:2,S", &message("in", "i\n"));
    env.write("src/.Archive.2019/cur/2.b:2,S", &message("old", "o\n"));
    std::fs::create_dir_all(env.path("mbdir")).unwrap();
    env.sync("maildir:src", "mbox:mbdir", &[]).expect_code(0);
    assert!(env.path("mbdir/Archive/2019").is_file());
    let copy = env.path("nestcopy");
    copy_store(&env.path("mbdir"), &copy);
    let location = format!("mbox:{}:INBOX={}/INBOX", copy.display(), copy.display());
    let listed = doveadm_lines(&env, &copy, &location, &["mailbox", "list"]);
    assert!(listed.contains(&"Archive/2019".to_string()), "{listed:?}");
    assert!(!listed.iter().any(|l| l.contains(".sbd")), "{listed:?}");
    let rows = doveadm_fetch(&env, &location);
    assert_eq!(rows.iter().filter(|r| r.0 == "Archive/2019").count(), 1, "{rows:?}");
}

/// A Maildir `rel` Dovecot numbered in delivery order, newest name first (UID order is not
/// name order), then the first expunged: `{tag}1` and `{tag}2` left with UIDs 2 and 3. Its
/// Dovecot location.
fn maildir_dovecot_numbered(env: &TestEnv, rel: &str, tag: &str) -> String {
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("{rel}/{d}"))).unwrap();
    }
    let dir = env.path(rel);
    let location = format!("maildir:{}", dir.display());
    for (i, name) in ["1500000300.M1P1.old", "1500000200.M1P1.old", "1500000100.M1P1.old"].iter().enumerate() {
        env.write(&format!("{rel}/new/{name}"), &message(&format!("{tag}{i}"), "x\n"));
        give_to_nobody(&dir);
        imap_session(env, &location, &["SELECT INBOX"]);
    }
    imap_session(env, &location, &["SELECT INBOX", "STORE 1 +FLAGS (\\Deleted)", "EXPUNGE"]);
    location
}

/// An mbox `rel/INBOX` of three messages Dovecot numbered, then the first expunged: `{tag}1`
/// and `{tag}2` left with UIDs 2 and 3. Its Dovecot location.
fn mbox_dovecot_numbered(env: &TestEnv, rel: &str, tag: &str) -> String {
    let mut mbox = Vec::new();
    for i in 0..3 {
        mbox.extend_from_slice(format!("From a@b Mon Jan  {} 10:00:00 2017\n", i + 1).as_bytes());
        mbox.extend_from_slice(&message(&format!("{tag}{i}"), "x\n"));
        mbox.push(b'\n');
    }
    env.write(&format!("{rel}/INBOX"), &mbox);
    let dir = env.path(rel);
    give_to_nobody(&dir);
    let location = format!("mbox:{}:INBOX={}/INBOX", dir.display(), dir.display());
    imap_session(env, &location, &["SELECT INBOX", "STORE 1 +FLAGS (\\Deleted)", "EXPUNGE"]);
    location
}

/// A server move that clients do not notice: a Maildir Dovecot served (UIDs 2, 3, 4 after an
/// expunge, its own UIDVALIDITY) converted into a new Maildir keeps UIDVALIDITY, every UID with
/// its message, and so every POP3 UIDL; a message the source's uidlist does not list yet gets
/// a UID after the source's next one.
#[test]
fn imap_uids_and_pop3_uidls_survive_a_maildir_move() {
    if !dovecot_servers() {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    for d in ["src/cur", "src/new", "src/tmp"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    for (i, name) in ["1500000000.M1P1.old", "1500000100.M1P1.old", "1500000200.M1P1.old"].iter().enumerate() {
        env.write(&format!("src/new/{name}"), &message(&format!("m{i}"), "x\n"));
    }
    let src = env.path("src");
    give_to_nobody(&src);
    let location = format!("maildir:{}", src.display());
    imap_session(&env, &location, &["SELECT INBOX", "STORE 1 +FLAGS (\\Deleted)", "EXPUNGE"]);
    env.write("src/new/1500000300.M1P1.old", &message("m3", "x\n"));
    give_to_nobody(&src);
    let fetch = ["SELECT INBOX", "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"];
    let before = imap_session(&env, &location, &fetch);
    assert_eq!(uids(&before).1, [2, 3, 4], "{before}");
    let uidl_before = pop3_uidl(&env, &location);
    // Mail delivered after the server last looked: no UID in the source yet.
    env.write("src/new/1500000400.M1P1.old", &message("m4", "x\n"));

    env.sync("maildir:src", "maildir:md", &[]).expect_code(0);
    let md = env.path("md");
    give_to_nobody(&md);
    let target = format!("maildir:{}", md.display());
    let after = imap_session(&env, &target, &fetch);
    assert_eq!(uids(&after).0, uids(&before).0, "UIDVALIDITY kept");
    assert_eq!(uids(&after).1, [2, 3, 4, 5], "{after}");
    assert_eq!(subjects_by_uid(&after), ["m1", "m2", "m3", "m4"]);
    let uidl_after = pop3_uidl(&env, &target);
    assert_eq!(uidl_after[..3], uidl_before[..], "POP3 UIDLs kept");

    // A re-sync after the switch: the straggler gets the next UID, nothing is renumbered.
    env.write("src/new/1500000500.M1P1.old", &message("m5", "x\n"));
    env.sync("maildir:src", "maildir:md", &[]).expect_code(0);
    give_to_nobody(&md);
    let again = imap_session(&env, &target, &fetch);
    assert_eq!(uids(&again), (uids(&before).0, vec![2, 3, 4, 5, 6]), "{again}");
    assert_eq!(subjects_by_uid(&again), ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(pop3_uidl(&env, &target)[..4], uidl_after[..], "POP3 UIDLs kept by the re-sync");
}

/// A Maildir Dovecot served into a new Dovecot-flavour mbox: the mbox is written in the order
/// of the source's UIDs (not its names), with its UIDVALIDITY in X-IMAPbase and each message's
/// UID in X-UID, so UIDs and POP3 UIDLs are the ones clients know; mail the source did not
/// number yet gets UIDs after its next one. A re-sync appends new mail after them.
#[test]
fn imap_uids_and_pop3_uidls_survive_a_maildir_move_into_a_dovecot_mbox() {
    if !dovecot_servers() {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    std::fs::create_dir_all(env.path("mb")).unwrap();
    let location = maildir_dovecot_numbered(&env, "src", "m");
    let fetch = ["SELECT INBOX", "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"];
    let before = imap_session(&env, &location, &fetch);
    assert_eq!((uids(&before).1, subjects_by_uid(&before)), (vec![2, 3], vec!["m1".into(), "m2".into()]));
    let uidl_before = pop3_uidl(&env, &location);
    env.write("src/new/1500000000.M1P1.old", &message("m3", "x\n"));

    env.sync("maildir:src", "mbox:mb", &[]).expect_code(0);
    let mb = env.path("mb");
    give_to_nobody(&mb);
    let target = format!("mbox:{}:INBOX={}/INBOX", mb.display(), mb.display());
    let after = imap_session(&env, &target, &fetch);
    assert_eq!(uids(&after), (uids(&before).0, vec![2, 3, 4]), "{before}\n{after}");
    assert_eq!(subjects_by_uid(&after), ["m1", "m2", "m3"]);
    assert_eq!(pop3_uidl(&env, &target)[..2], uidl_before[..], "POP3 UIDLs kept");

    env.write("src/new/1500000500.M1P1.old", &message("m4", "x\n"));
    let inode = file_stamp(&mb.join("INBOX")).2;
    env.sync("maildir:src", "mbox:mb", &[]).expect_code(0);
    assert_eq!(file_stamp(&mb.join("INBOX")).2, inode, "appended in place");
    let again = imap_session(&env, &target, &fetch);
    assert_eq!(uids(&again), (uids(&before).0, vec![2, 3, 4, 5]), "{again}");
    assert_eq!(subjects_by_uid(&again), ["m1", "m2", "m3", "m4"]);
}

/// The same for an mbox Dovecot served: its X-IMAPbase UIDVALIDITY and each message's X-UID
/// become the new Maildir folder's, so UIDs and POP3 UIDLs are the ones clients know; mail
/// appended since Dovecot last looked gets the next UID.
#[test]
fn imap_uids_and_pop3_uidls_survive_a_dovecot_mbox_move() {
    if !dovecot_servers() {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    std::fs::create_dir_all(env.path("mb")).unwrap();
    let location = mbox_dovecot_numbered(&env, "mb", "m");
    let fetch = ["SELECT INBOX", "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"];
    let before = imap_session(&env, &location, &fetch);
    assert_eq!(uids(&before).1, [2, 3], "{before}");
    let uidl_before = pop3_uidl(&env, &location);
    let mut more = std::fs::read(env.path("mb/INBOX")).unwrap();
    more.extend_from_slice(b"From a@b Fri Jan  6 10:00:00 2017\n");
    more.extend_from_slice(&message("m3", "x\n"));
    std::fs::write(env.path("mb/INBOX"), more).unwrap();

    env.sync("mbox:mb/INBOX", "maildir:md", &[]).expect_code(0);
    let md = env.path("md");
    give_to_nobody(&md);
    let target = format!("maildir:{}", md.display());
    let after = imap_session(&env, &target, &fetch);
    assert_eq!(uids(&after).0, uids(&before).0, "UIDVALIDITY kept:\n{before}\n{after}");
    assert_eq!(uids(&after).1, [2, 3, 4], "{after}");
    assert_eq!(subjects_by_uid(&after), ["m1", "m2", "m3"]);
    let uidl_after = pop3_uidl(&env, &target);
    assert_eq!(uidl_after[..2], uidl_before[..], "POP3 UIDLs kept");

    // A re-sync after the switch: the straggler gets the next UID, nothing is renumbered.
    let mut more = std::fs::read(env.path("mb/INBOX")).unwrap();
    more.extend_from_slice(b"\nFrom a@b Sat Jan  7 10:00:00 2017\n");
    more.extend_from_slice(&message("m4", "x\n"));
    std::fs::write(env.path("mb/INBOX"), more).unwrap();
    env.sync("mbox:mb/INBOX", "maildir:md", &[]).expect_code(0);
    give_to_nobody(&md);
    let again = imap_session(&env, &target, &fetch);
    assert_eq!(uids(&again), (uids(&before).0, vec![2, 3, 4, 5]), "{again}");
    assert_eq!(subjects_by_uid(&again), ["m1", "m2", "m3", "m4"]);
    assert_eq!(pop3_uidl(&env, &target)[..3], uidl_after[..], "POP3 UIDLs kept by the re-sync");

    // Into a new Dovecot mbox directory the same: X-IMAPbase and the X-UIDs are carried.
    std::fs::create_dir_all(env.path("mb2")).unwrap();
    env.sync("mbox:mb/INBOX", "mbox:mb2", &[]).expect_code(0);
    let mb2 = env.path("mb2");
    give_to_nobody(&mb2);
    let target = format!("mbox:{}:INBOX={}/INBOX", mb2.display(), mb2.display());
    let after = imap_session(&env, &target, &fetch);
    assert_eq!(uids(&after), (uids(&before).0, vec![2, 3, 4, 5]), "{after}");
    assert_eq!(subjects_by_uid(&after), ["m1", "m2", "m3", "m4"]);
    assert_eq!(pop3_uidl(&env, &target)[..2], uidl_before[..], "POP3 UIDLs kept");
}

/// What IMAP and POP3 clients see of each mail location: Dovecot's master process serving
/// them on 127.0.0.1 (a throw-away config, `tests/dovecot_clients.py`), read with Python's
/// `imaplib` and `poplib`. Per user: UIDVALIDITY, UID → Message-ID, POP3 UIDL → Message-ID.
fn clients_view(env: &TestEnv, phase: &str, users: &[(&str, String)]) -> Value {
    let spec: serde_json::Map<String, Value> =
        users.iter().map(|(u, loc)| (u.to_string(), Value::String(loc.clone()))).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dovecot_clients.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(env.path(&format!("dovecot-{phase}")))
        .arg(Value::Object(spec).to_string())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(env.path(&format!("dovecot-{phase}/dovecot.log"))).unwrap_or_default();
    assert!(out.status.success(), "{}\nDovecot's log:\n{log}", String::from_utf8_lossy(&out.stderr));
    assert!(!log.contains("corrupted") && !log.contains("Error:"), "Dovecot's log:\n{log}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every UID and UIDL a client knew (`before`) names the same message in `after`, under the
/// same UIDVALIDITY; `after` may hold more.
fn clients_notice_nothing(before: &Value, after: &Value, what: &str) {
    assert_eq!(before["validity"], after["validity"], "{what}: UIDVALIDITY");
    for key in ["imap", "pop3"] {
        for (id, msg) in before[key].as_object().unwrap() {
            assert_eq!(&after[key][id], msg, "{what}: {key} {id} names another message\n{before}\n{after}");
        }
    }
}

/// A server move checked as clients see it: Dovecot serves the old stores and the converted
/// ones on 127.0.0.1, Python's `imaplib` and `poplib` read them. Before the move, after it and
/// after a re-sync that brings stragglers, every UID and UIDL names the same message under the
/// same UIDVALIDITY: Maildir → Maildir, Dovecot mbox → Maildir, Maildir → Dovecot mbox.
#[test]
fn imap_and_pop3_clients_notice_nothing_of_a_move() {
    if !(require(Need::Root) && require(Need::Python) && dovecot_servers()) {
        return;
    }
    let env = TestEnv::new();
    open_up(&env);
    for d in ["mb", "to-md/x", "from-mb/x", "to-mb"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    // A Maildir and an mbox Dovecot numbered, each with an expunged gap.
    let md_loc = maildir_dovecot_numbered(&env, "md", "a");
    let mb_loc = mbox_dovecot_numbered(&env, "mb", "b");

    let before = clients_view(&env, "before", &[("md", md_loc.clone()), ("mb", mb_loc.clone())]);
    let (to_md, from_mb, to_mb) = (env.path("to-md/x"), env.path("from-mb/x"), env.path("to-mb"));
    let targets = [
        ("to_md", format!("maildir:{}", to_md.display()), "md"),
        ("from_mb", format!("maildir:{}", from_mb.display()), "mb"),
        ("to_mb", format!("mbox:{}:INBOX={}/INBOX", to_mb.display(), to_mb.display()), "md"),
    ];
    let moves = |phase: &str| {
        env.sync("maildir:md", "maildir:to-md/x", &[]).expect_code(0);
        env.sync("mbox:mb/INBOX", "maildir:from-mb/x", &[]).expect_code(0);
        env.sync("maildir:md", "mbox:to-mb", &[]).expect_code(0);
        for d in ["md", "mb", "to-md", "from-mb", "to-mb"] {
            give_to_nobody(&env.path(d));
        }
        let users: Vec<(&str, String)> = targets.iter().map(|(u, l, _)| (*u, l.clone())).collect();
        clients_view(&env, phase, &users)
    };
    let after = moves("after");
    for (user, _, from) in &targets {
        clients_notice_nothing(&before[from], &after[user], &format!("{user} after the move"));
    }
    // Stragglers on the old server, then the re-sync after the switch.
    env.write("md/new/1500000400.M1P1.old", &message("a3", "x\n"));
    let mut more = std::fs::read(env.path("mb/INBOX")).unwrap();
    // Dovecot left the file ending with an empty line: the next From_ line follows it.
    assert!(more.ends_with(b"\n\n"));
    more.extend_from_slice(b"From a@b Fri Jan  6 10:00:00 2017\n");
    more.extend_from_slice(&message("b3", "x\n\n"));
    std::fs::write(env.path("mb/INBOX"), more).unwrap();
    let again = moves("again");
    for (user, _, _) in &targets {
        clients_notice_nothing(&after[user], &again[user], &format!("{user} after the re-sync"));
        let n = |v: &Value| v[user]["imap"].as_object().unwrap().len();
        assert_eq!(n(&again), n(&after) + 1, "{user}: the straggler arrived\n{again}");
    }
}

const PY: &str = r#"
import hashlib, json, mailbox, sys
kind, path = sys.argv[1], sys.argv[2]
out = {}
if kind == "maildir":
    md = mailbox.Maildir(path, factory=None, create=False)
    out["INBOX"] = sorted(hashlib.sha256(md.get_bytes(k)).hexdigest() for k in md.iterkeys())
    for f in md.list_folders():
        sub = md.get_folder(f)
        out[f] = sorted(hashlib.sha256(sub.get_bytes(k)).hexdigest() for k in sub.iterkeys())
else:
    mb = mailbox.mbox(path, create=False)
    out["INBOX"] = [mb.get_bytes(k).hex() for k in mb.iterkeys()]
print(json.dumps(out))
"#;

fn python(kind: &str, path: &Path) -> BTreeMap<String, Vec<String>> {
    let out = Command::new("python3").args(["-c", PY, kind]).arg(path).output().unwrap();
    assert!(out.status.success(), "python3 mailbox failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn python_mailbox_reads_maildir_target() {
    if !require(Need::Python) {
        return;
    }
    let env = TestEnv::new();
    let msgs = synced_maildir(&env, "maildir++");
    let py = python("maildir", &env.path("out"));
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, dir) in maildir_folders(&env.path("out"), Layout::MaildirPP) {
        let key =
            if name == "INBOX" { name.clone() } else { dir.file_name().unwrap().to_string_lossy()[1..].to_string() };
        let mut v: Vec<String> = msgs.iter().filter(|m| m.folder == name).map(|m| sha256(&m.bytes)).collect();
        v.sort();
        want.insert(key, v);
    }
    assert_eq!(py, want);
}

#[test]
fn python_mailbox_reads_mbox_target() {
    if !require(Need::Python) {
        return;
    }
    let env = TestEnv::new();
    let (msgs, dir) = mbox_target(&env);
    let py = python("mbox", &dir.join("INBOX"));
    let got: Vec<String> = py["INBOX"]
        .iter()
        .map(|h| sha256(&strip_internal(&unquote(&hex::decode(h).unwrap(), Variant::Mboxrd))))
        .collect();
    let want: Vec<String> = msgs.iter().map(|m| sha256(&m.bytes)).collect();
    assert_same_set(&want, &got, "python mailbox.mbox of the mbox target (mboxrd-unquoted, internal headers removed)");
}
