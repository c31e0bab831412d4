//! cPanel account stores end to end (issue 5): `sync cpanel:SRC cpanel:DST` on the fixture
//! account in fixtures/cpanel (two domains, the default mailbox, forwarders, filters, an
//! autoresponder, quotas), with and without identity mappings, one mailbox, merges, re-runs,
//! ownership, `verify`, `inspect`, the refusals (mdbox, target symlinks, bad mapping files),
//! and Dovecot's `doveadm` reading every target mailbox.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The fixture copied into the test's temp dir (symlinks kept, as `cp -a` does): the account
/// home and the source system `etc`.
struct Account {
    env: TestEnv,
    src: PathBuf,
    src_etc: PathBuf,
}

const BOXES: [&str; 4] = ["", "info@example.com", "sales@example.com", "bob@example.org"];

impl Account {
    fn new() -> Account {
        let env = TestEnv::new();
        std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let st = Command::new("cp").arg("-a").arg(fixtures().join("cpanel")).arg(env.path("src")).status().unwrap();
        assert!(st.success());
        restore_maildir_dirs(&env.path("src"));
        // Deterministic internal dates (git checkouts set mtime to "now").
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(env.path("src/home"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_type().is_file() && e.path().parent().is_some_and(|p| p.ends_with("cur") || p.ends_with("new"))
            })
            .map(|e| e.into_path())
            .collect();
        files.sort();
        for (i, f) in files.iter().enumerate() {
            set_mtime(f, 1_546_300_800 + i as i64 * 86_400);
        }
        let src = env.path("src/home/acct");
        let src_etc = env.path("src/etc");
        Account { env, src, src_etc }
    }

    fn dst(&self, name: &str) -> (PathBuf, PathBuf) {
        let home = self.env.path(&format!("{name}/home/newacct"));
        std::fs::create_dir_all(&home).unwrap();
        (home, self.env.path(&format!("{name}/etc")))
    }

    fn sync(&self, home: &Path, etc: &Path, extra: &[&str]) -> Run {
        let s = format!("cpanel:{}", self.src.display());
        let d = format!("cpanel:{}", home.display());
        let mut args = vec!["--source-etc", self.src_etc.to_str().unwrap(), "--target-etc", etc.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.env.sync(&s, &d, &args)
    }
}

fn mailbox(home: &Path, addr: &str) -> PathBuf {
    match addr.split_once('@') {
        Some((l, d)) => home.join("mail").join(d).join(l),
        None => home.join("mail"),
    }
}

/// (folder, flags, keywords, sha256, mtime) of every message of one mailbox; the
/// compatibility symlinks (`.LOCAL@DOMAIN`) are not folders.
fn box_msgs(root: &Path) -> Vec<(String, String, Vec<String>, String, i64)> {
    let mut v: Vec<_> = read_maildir(root, Layout::MaildirPP)
        .into_iter()
        .filter(|m| !m.folder.contains('@'))
        .map(|m| (m.folder.clone(), m.flags.clone(), m.keywords.clone(), sha256(&m.bytes), m.mtime))
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = read(p).lines().map(str::to_string).collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn plain_move_copies_every_mailbox_and_the_metadata() {
    let a = Account::new();
    let (home, etc) = a.dst("plain");
    let before = snapshot(&a.env.path("src"));
    let r = a.sync(&home, &etc, &[]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 12);
    assert_eq!(r.n("failed"), 0);
    for b in BOXES {
        let want = box_msgs(&mailbox(&a.src, b));
        assert!(!want.is_empty(), "{b}");
        assert_eq!(want, box_msgs(&mailbox(&home, b)), "mailbox {b:?}");
    }
    // The default box has no domain folders and no symlink folder.
    let folders: Vec<String> =
        maildir_folders(&home.join("mail"), Layout::MaildirPP).into_iter().map(|f| f.0).collect();
    assert_eq!(folders, vec!["INBOX", "Sent"]);
    let h = home.display().to_string();
    assert_eq!(
        lines(&home.join("etc/example.com/passwd")),
        vec![
            format!("info:x:1500:1500::{h}/mail/example.com/info:{h}"),
            format!("sales:x:1500:1500::{h}/mail/example.com/sales:{h}")
        ]
    );
    assert_eq!(read(&home.join("etc/example.org/shadow")), read(&a.src.join("etc/example.org/shadow")));
    assert_eq!(read(&home.join("etc/example.com/quota")), read(&a.src.join("etc/example.com/quota")));
    let va = read(&etc.join("valiases/example.com"));
    assert!(va.contains(&format!("\"|/usr/local/cpanel/bin/autorespond info@example.com {h}/.autorespond\"")), "{va}");
    assert!(va.contains(&format!("tickets@example.com: |{h}/bin/ticket.php")), "{va}");
    assert!(va.contains("old@example.com: :fail: No such person at this address\n"), "{va}");
    assert!(va.contains("spam@example.com: :blackhole:\n"), "{va}");
    assert!(va.contains("this line has no colon\n"), "an unparseable line is kept verbatim: {va}");
    assert!(va.contains("*: newacct\n"), "the bare cPanel user follows the account: {va}");
    assert!(r.json()["warnings"].to_string().contains("this line"), "the unparseable line is reported: {}", r.stdout);
    assert_eq!(read(&etc.join("vfilters/example.com")), read(&a.src_etc.join("vfilters/example.com")));
    assert_eq!(read(&etc.join("vdomainaliases/example.net")), "example.net: example.com\n");
    assert!(!etc.join("valiases/stranger.example").exists());
    assert_eq!(read(&home.join(".autorespond/info@example.com")), read(&a.src.join(".autorespond/info@example.com")));
    assert!(home.join(".autorespond/info@example.com.json").is_file());
    assert_eq!(read(&home.join(".spamassassin/user_prefs")), read(&a.src.join(".spamassassin/user_prefs")));
    assert!(home.join("etc/example.com/info/filter").is_file());
    // maildirsize recomputed (the fixture's is stale on purpose), quota line kept.
    let info = mailbox(&home, "info@example.com");
    let count = box_msgs(&info).len() as u64;
    let real: u64 = read_maildir(&info, Layout::MaildirPP).iter().map(|m| m.bytes.len() as u64).sum();
    let mds = read(&info.join("maildirsize"));
    let mut it = mds.lines();
    assert_eq!(it.next(), Some("262144000S"));
    let totals: Vec<u64> = it.next().unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(totals, vec![real, count]);
    // bob has no maildirsize in the source: one is written from etc/example.org/quota.
    assert!(read(&mailbox(&home, "bob@example.org").join("maildirsize")).starts_with("104857600S\n"));
    // Modes (FORMATS.md §3.3).
    assert_eq!(mode(&home.join("mail")), 0o751);
    assert_eq!(mode(&home.join("mail/example.com")), 0o751);
    assert_eq!(mode(&home.join("mail/example.com/info")), 0o751);
    assert_eq!(mode(&home.join("etc")), 0o750);
    assert_eq!(mode(&home.join("etc/example.com")), 0o750);
    assert_eq!(mode(&home.join("etc/example.com/shadow")), 0o640);
    assert_eq!(mode(&etc.join("valiases/example.com")), 0o640);
    assert_eq!(mode(&etc.join("valiases")), 0o751);
    let world_writable: Vec<PathBuf> = walkdir::WalkDir::new(&home)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.path_is_symlink() && e.metadata().is_ok_and(|m| m.mode() & 0o002 != 0))
        .map(|e| e.into_path())
        .collect();
    assert!(world_writable.is_empty(), "{world_writable:?}");
    assert_unchanged(&before, &a.env.path("src"), "the source");
}

#[test]
fn rerun_is_idempotent_and_verify_agrees() {
    let a = Account::new();
    let (home, etc) = a.dst("rerun");
    a.sync(&home, &etc, &[]).expect_code(0);
    let keep = |s: Snapshot| -> Snapshot {
        s.into_iter().filter(|(k, _)| !k.to_string_lossy().contains("mailmover-cache")).collect()
    };
    let before = keep(snapshot(a.env.root().join("rerun").as_path()));
    let r = a.sync(&home, &etc, &[]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 0);
    assert_eq!(r.n("skipped_existing"), 12);
    let after = keep(snapshot(a.env.root().join("rerun").as_path()));
    assert_eq!(snapshot_diff(&before, &after), "", "a second run changed the target");
    let v = a.env.run([
        "verify",
        &format!("cpanel:{}", a.src.display()),
        &format!("cpanel:{}", home.display()),
        "--source-etc",
        a.src_etc.to_str().unwrap(),
        "--target-etc",
        etc.to_str().unwrap(),
        "--json",
    ]);
    v.expect_code(0);
    assert_eq!(v.json()["ok"], true);
    // A metadata difference is found and named: a quota the source changed since (one the
    // target changed on its own is the new server's business, as for the sync).
    edit(&a.src.join("etc/example.com/quota"), "info:104857600", "info:1");
    let v = a.env.run([
        "verify",
        &format!("cpanel:{}", a.src.display()),
        &format!("cpanel:{}", home.display()),
        "--source-etc",
        a.src_etc.to_str().unwrap(),
        "--target-etc",
        etc.to_str().unwrap(),
        "--json",
    ]);
    v.expect_code(1);
    assert!(v.stdout.contains("\\\"info:1\\\" expected"), "{}", v.stdout);
}

#[test]
fn domain_rename_applies_everywhere() {
    let a = Account::new();
    let (home, etc) = a.dst("dom");
    let r = a.sync(&home, &etc, &["--map-domain", "example.com=example.info"]);
    r.expect_code(0);
    assert_eq!(box_msgs(&mailbox(&a.src, "info@example.com")), box_msgs(&mailbox(&home, "info@example.info")));
    assert!(!home.join("mail/example.com").exists() && !home.join("etc/example.com").exists());
    assert_eq!(
        box_msgs(&mailbox(&a.src, "bob@example.org")),
        box_msgs(&mailbox(&home, "bob@example.org")),
        "other domains untouched"
    );
    let h = home.display().to_string();
    assert!(
        lines(&home.join("etc/example.info/passwd"))
            .contains(&format!("info:x:1500:1500::{h}/mail/example.info/info:{h}"))
    );
    let va = read(&etc.join("valiases/example.info"));
    assert!(va.contains("team@example.info: info@example.info, bob@example.org, far@elsewhere.example"), "{va}");
    assert!(va.contains("autorespond info@example.info "), "{va}");
    assert!(!etc.join("valiases/example.com").exists());
    assert!(read(&etc.join("valiases/example.org")).contains("bob@example.org: bob@example.org, info@example.info"));
    assert!(read(&etc.join("vfilters/example.info")).contains("deliver \"sales@example.info\""));
    assert_eq!(read(&etc.join("vdomainaliases/example.net")), "example.net: example.info\n");
    let ar = read(&home.join(".autorespond/info@example.info"));
    assert!(ar.starts_with("From: \"Info Desk\" <info@example.info>") && ar.contains("sales@example.info"), "{ar}");
    assert!(!home.join(".autorespond/info@example.com").exists());
    assert!(read(&home.join("etc/example.info/info/filter")).contains("sales@example.info"));
}

#[test]
fn user_rename_and_dry_run_listing() {
    let a = Account::new();
    let (home, etc) = a.dst("user");
    let dry = a.sync(&home, &etc, &["--map-user", "info@example.com=contact@example.com", "--dry-run"]);
    dry.expect_code(0);
    assert!(dry.stderr.contains("team@example.com: info@example.com, bob@example.org, far@elsewhere.example -> team@example.com: contact@example.com, bob@example.org, far@elsewhere.example"), "{}", dry.stderr);
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0, "a dry run wrote into the target");
    assert!(!etc.exists());
    let r = a.sync(&home, &etc, &["--map-user", "info@example.com=contact@example.com"]);
    r.expect_code(0);
    assert_eq!(box_msgs(&mailbox(&a.src, "info@example.com")), box_msgs(&mailbox(&home, "contact@example.com")));
    assert!(!mailbox(&home, "info@example.com").exists());
    assert_eq!(box_msgs(&mailbox(&a.src, "sales@example.com")), box_msgs(&mailbox(&home, "sales@example.com")));
    let pw = lines(&home.join("etc/example.com/passwd"));
    assert!(
        pw.iter().any(|l| l.starts_with("contact:x:1500:1500::") && l.contains("/mail/example.com/contact:")),
        "{pw:?}"
    );
    assert!(pw.iter().any(|l| l.starts_with("sales:")));
    assert!(read(&home.join("etc/example.com/shadow")).contains("contact:$6$fixsalt$hashinfo:"));
    assert!(read(&etc.join("valiases/example.org")).contains("bob@example.org, contact@example.com"));
    assert!(home.join(".autorespond/contact@example.com").is_file());
}

#[test]
fn csv_mapping_and_bad_rows() {
    let a = Account::new();
    let (home, etc) = a.dst("csv");
    let bad = a.env.write("bad.csv", b"old,new\nexample.org,example.biz\nnot a row\n");
    let r = a.sync(&home, &etc, &["--map-file", bad.to_str().unwrap()]);
    r.expect_code(2);
    assert!(r.stderr.contains("line 3"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0, "a usage error wrote something");
    let csv = a.env.write("map.csv", b"example.org,example.biz\nsales@example.com,shop@example.com\n");
    a.sync(&home, &etc, &["--map-file", csv.to_str().unwrap()]).expect_code(0);
    assert_eq!(box_msgs(&mailbox(&a.src, "bob@example.org")), box_msgs(&mailbox(&home, "bob@example.biz")));
    assert_eq!(box_msgs(&mailbox(&a.src, "sales@example.com")), box_msgs(&mailbox(&home, "shop@example.com")));
    assert_eq!(box_msgs(&mailbox(&a.src, "info@example.com")), box_msgs(&mailbox(&home, "info@example.com")));
    assert!(read(&etc.join("valiases/example.biz")).contains("*: :fail: No Such User Here"));
    assert!(read(&home.join("etc/example.com/quota")).contains("shop:"));
}

#[test]
fn one_mailbox_with_its_lines_only() {
    let a = Account::new();
    let (home, etc) = a.dst("one");
    let r = a.sync(&home, &etc, &["--mailbox", "bob@example.org"]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 3);
    assert_eq!(box_msgs(&mailbox(&a.src, "bob@example.org")), box_msgs(&mailbox(&home, "bob@example.org")));
    assert!(!home.join("mail/example.com").exists() && !home.join("mail/cur").exists());
    assert!(!home.join("etc/example.com").exists());
    assert_eq!(lines(&home.join("etc/example.org/quota")), vec!["bob:104857600".to_string()]);
    assert_eq!(read(&etc.join("valiases/example.org")), "bob@example.org: bob@example.org, info@example.com\n");
    assert!(!home.join(".autorespond").exists());
    let r = a.sync(&home, &etc, &["--mailbox", "nobody@example.org"]);
    r.expect_code(2);
}

#[test]
fn merge_keeps_target_mail_and_lines() {
    let a = Account::new();
    let (home, etc) = a.dst("merge");
    let info = mailbox(&home, "info@example.com");
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(info.join(s)).unwrap();
    }
    let mine = info.join("cur/1700000000.M1P1.dst,S=19:2,S");
    std::fs::write(&mine, b"Subject: x\n\ntarget\n").unwrap();
    a.env.write(
        "merge/home/newacct/etc/example.com/passwd",
        b"t:x:1:1::/x/mail/example.com/t:/x\ninfo:x:9:9::/elsewhere:/x\n",
    );
    a.env.write(
        "merge/etc/vfilters/example.com",
        b"# Exim filter - auto-generated by cPanel.\nheaders charset \"UTF-8\"\n\n#target rule\nif $header_subject: contains \"x\"\nthen\n save \"/dev/null\" 660\nendif\n",
    );
    let r = a.sync(&home, &etc, &[]);
    r.expect_code(0);
    assert!(mine.is_file(), "target mail kept");
    let vf = read(&etc.join("vfilters/example.com"));
    assert!(vf.contains("#target rule") && vf.contains("#invoices\nif $header_subject: contains \"invoice\""), "{vf}");
    let pw = read(&home.join("etc/example.com/passwd"));
    assert!(pw.starts_with("t:x:1:1::") && pw.contains("info:x:9:9::/elsewhere:/x") && pw.contains("\nsales:"), "{pw}");
    assert!(r.json()["warnings"].to_string().contains("conflict"), "{}", r.stdout);
    let src = box_msgs(&mailbox(&a.src, "info@example.com"));
    let dst = box_msgs(&info);
    assert_eq!(dst.len(), src.len() + 1);
    assert!(src.iter().all(|m| dst.contains(m)));
    let real: u64 = read_maildir(&info, Layout::MaildirPP).iter().map(|m| m.bytes.len() as u64).sum();
    assert!(read(&info.join("maildirsize")).contains(&format!("{real} ")));
    a.sync(&home, &etc, &["--overwrite-metadata"]).expect_code(0);
    assert!(read(&home.join("etc/example.com/passwd")).contains("info:x:1500:1500::"));
    assert!(read(&home.join("etc/example.com/passwd")).starts_with("t:x:1:1::"));
}

#[test]
fn inspect_lists_domains_mailboxes_and_metadata() {
    let a = Account::new();
    let r = a.env.run(["inspect", "--json", &format!("cpanel:{}", a.src.display())]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["kind"], "cpanel");
    assert_eq!(j["domains"], serde_json::json!(["example.com", "example.org"]));
    let folders: Vec<(String, u64)> = j["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["messages"].as_u64().unwrap()))
        .collect();
    let want: Vec<(String, u64)> = [
        ("INBOX", 2),
        ("Sent", 1),
        ("bob@example.org/INBOX", 2),
        ("bob@example.org/Été", 1),
        ("info@example.com/Archive/2019", 1),
        ("info@example.com/INBOX", 3),
        ("info@example.com/Sent", 1),
        ("sales@example.com/INBOX", 1),
    ]
    .iter()
    .map(|(n, c)| (n.to_string(), *c))
    .collect();
    assert_same_set(&want, &folders, "inspect folders");
    let boxes = j["mailboxes"].as_array().unwrap();
    let info = boxes.iter().find(|b| b["address"] == "info@example.com").unwrap();
    assert_eq!(info["quota"], 104857600);
    assert!(j["metadata"].to_string().contains("etc/example.com/passwd"));
}

#[test]
fn mdbox_account_is_refused_before_writing() {
    let a = Account::new();
    let m = a.src.join("mail/example.com/old");
    std::fs::create_dir_all(m.join("storage")).unwrap();
    std::fs::write(m.join("mailbox_format.cpanel"), "mdbox").unwrap();
    let (home, etc) = a.dst("mdbox");
    let r = a.sync(&home, &etc, &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("mdbox") && r.stderr.contains("old@example.com") && r.stderr.contains("doveadm"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0);
    // The other mailboxes can still be moved one by one.
    a.sync(&home, &etc, &["--mailbox", "bob@example.org"]).expect_code(0);
}

#[test]
fn target_symlink_is_refused_and_reported() {
    let a = Account::new();
    let (home, etc) = a.dst("sym");
    let victim = a.env.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::create_dir_all(home.join("mail")).unwrap();
    std::os::unix::fs::symlink(&victim, home.join("mail/example.org")).unwrap();
    let r = a.sync(&home, &etc, &[]);
    r.expect_code(1);
    assert!(r.errors().iter().any(|(p, why)| p.contains("example.org") && why.contains("symlink")), "{:?}", r.errors());
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert_eq!(
        box_msgs(&mailbox(&a.src, "info@example.com")),
        box_msgs(&mailbox(&home, "info@example.com")),
        "the other mailboxes still move"
    );
}

#[test]
fn legacy_mbox_mailbox_converts() {
    let a = Account::new();
    let m = a.src.join("mail/example.org/old");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(
        m.join("inbox"),
        make_mbox(&[
            ("Tue Jan  1 10:00:00 2008", &message("one", "1\n")),
            ("Tue Jan  1 11:00:00 2008", &message("two", "2\n")),
        ]),
    )
    .unwrap();
    std::fs::write(m.join("Sent"), make_mbox(&[("Tue Jan  1 12:00:00 2008", &message("sent", "3\n"))])).unwrap();
    let (home, etc) = a.dst("legacy");
    a.sync(&home, &etc, &[]).expect_code(0);
    let got = box_msgs(&mailbox(&home, "old@example.org"));
    let folders: Vec<&str> = got.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(folders, vec!["INBOX", "INBOX", "Sent"]);
}

fn doveadm_count(copy: &Path, work: &Path) -> Vec<(String, String)> {
    let conf = work.join("dc.conf");
    std::fs::write(&conf, "namespace inbox {\n  inbox = yes\n  separator = /\n}\n").unwrap();
    let dhome = work.join("dovehome");
    std::fs::create_dir_all(&dhome).unwrap();
    let root = nix::unistd::geteuid().is_root();
    if root {
        assert!(Command::new("chown").args(["-R", "65534:65534"]).arg(copy).arg(&dhome).status().unwrap().success());
    }
    let mut c = Command::new("doveadm");
    c.arg("-c")
        .arg(&conf)
        .arg("-o")
        .arg(format!("mail_location=maildir:{}", copy.display()))
        .arg("-o")
        .arg(format!("mail_home={}", dhome.display()));
    c.args(["-o", "mailbox_list_index=no"]);
    if root {
        c.args(["-o", "mail_uid=65534", "-o", "mail_gid=65534"]).env("USER", "nobody");
    }
    c.args(["-f", "json", "fetch", "mailbox flags", "all"]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("Error"), "doveadm: {err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut f: Vec<&str> =
                r["flags"].as_str().unwrap().split_whitespace().filter(|f| *f != "\\Recent").collect();
            f.sort();
            (r["mailbox"].as_str().unwrap().to_string(), f.join(" "))
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn doveadm_reads_every_target_mailbox() {
    if !require(Need::Doveadm) {
        return;
    }
    let a = Account::new();
    let (home, etc) = a.dst("dove");
    a.sync(&home, &etc, &[]).expect_code(0);
    for b in BOXES {
        let want: Vec<(String, String)> = {
            let mut v: Vec<(String, String)> = read_maildir(&mailbox(&a.src, b), Layout::MaildirPP)
                .into_iter()
                .filter(|m| !m.folder.contains('@'))
                .map(|m| {
                    let mut f: Vec<String> = m
                        .flags
                        .chars()
                        .filter_map(|c| match c {
                            'D' => Some("\\Draft".to_string()),
                            'F' => Some("\\Flagged".to_string()),
                            'R' => Some("\\Answered".to_string()),
                            'S' => Some("\\Seen".to_string()),
                            'T' => Some("\\Deleted".to_string()),
                            _ => None,
                        })
                        .chain(m.keywords.iter().cloned())
                        .collect();
                    f.sort();
                    (m.folder, f.join(" "))
                })
                .collect();
            v.sort();
            v
        };
        // doveadm writes its indexes: give it a copy of the mailbox alone.
        let copy = a.env.path(&format!("dovecopy-{}", if b.is_empty() { "default" } else { b }));
        let st = Command::new("cp").arg("-a").arg(mailbox(&home, b)).arg(&copy).status().unwrap();
        assert!(st.success());
        if b.is_empty() {
            for d in ["example.com", "example.org"] {
                std::fs::remove_dir_all(copy.join(d)).unwrap();
            }
        }
        assert_eq!(doveadm_count(&copy, a.env.root()), want, "doveadm on mailbox {b:?}");
    }
}

#[test]
fn ownership_as_root_with_a_test_user() {
    if !require(Need::Root) || !require(Need::Useradd) {
        return;
    }
    let name = format!("mmcp{}", std::process::id() % 100_000);
    let out = Command::new("useradd").args(["-M", "-N", "-s", "/usr/sbin/nologin", &name]).output().unwrap();
    assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
    let uid = nix::unistd::User::from_name(&name).unwrap().unwrap().uid.as_raw();
    let result = std::panic::catch_unwind(|| {
        let a = Account::new();
        let (home, etc) = a.dst("own");
        a.sync(&home, &etc, &["--owner", &name]).expect_code(0);
        for e in walkdir::WalkDir::new(&home).min_depth(1).into_iter().filter_map(Result::ok) {
            assert_eq!(e.metadata().unwrap().uid(), uid, "{} not owned by the test user", e.path().display());
        }
        for f in ["valiases/example.com", "vfilters/example.com", "vdomainaliases/example.net"] {
            assert_eq!(std::fs::metadata(etc.join(f)).unwrap().uid(), uid, "{f}");
        }
        if let Ok(Some(g)) = nix::unistd::Group::from_name("mail") {
            assert_eq!(std::fs::metadata(home.join("etc/example.com/shadow")).unwrap().gid(), g.gid.as_raw());
        }
        // Without --owner, the target home's owner is taken.
        let (home2, etc2) = a.dst("own2");
        nix::unistd::chown(&home2, Some(uid.into()), None).unwrap();
        a.sync(&home2, &etc2, &[]).expect_code(0);
        for e in walkdir::WalkDir::new(&home2).into_iter().filter_map(Result::ok) {
            assert_eq!(e.metadata().unwrap().uid(), uid, "{} not owned by the home's owner", e.path().display());
        }
    });
    let _ = Command::new("userdel").arg(&name).output();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Issue 18, point 4: as root without `--owner`, a cPanel target's new files and directories
/// (messages, folders, `dovecot-keywords`, `subscriptions`, `maildirsize`, mailmover's caches,
/// state and record) belong to the owner and group of the target home, the same as a Maildir
/// target's belong to the directory they are created in. A second run (everything there)
/// keeps them so.
#[test]
fn as_root_every_new_file_of_the_mail_tree_belongs_to_the_home_owner() {
    if !require(Need::Root) {
        return;
    }
    let a = Account::new();
    let (home, etc) = a.dst("owned");
    nix::unistd::chown(&home, Some(4242.into()), Some(4343.into())).unwrap();
    a.sync(&home, &etc, &[]).expect_code(0);
    // New mail in one mailbox, so the second run writes too.
    let inbox = mailbox(&a.src, "info@example.com").join("new/1700000000.M1P1.fixture,S=42");
    std::fs::write(&inbox, b"From: x@example.com\nSubject: again\n\nmore\n").unwrap();
    a.sync(&home, &etc, &[]).expect_code(0);
    let mut seen = std::collections::BTreeSet::new();
    for e in walkdir::WalkDir::new(home.join("mail")).into_iter().filter_map(Result::ok) {
        let md = e.metadata().unwrap();
        assert_eq!((md.uid(), md.gid()), (4242, 4343), "{}", e.path().display());
        seen.insert(e.file_name().to_string_lossy().into_owned());
    }
    for f in ["mailmover-cache", "mailmover-state", "mailmover-copied", "mailmover-source-cache", "subscriptions"] {
        assert!(seen.contains(f), "{f} not among the files checked");
    }
    for e in walkdir::WalkDir::new(&home).into_iter().filter_map(Result::ok) {
        assert_eq!(e.metadata().unwrap().uid(), 4242, "{}", e.path().display());
    }
}

/// A pkgacct-style archive of the fixture account: `cpmove-acct/homedir/…` (or a nested
/// `homedir.tar`), `va/`, `vf/`, `vad/`.
fn make_archive(a: &Account, nested: bool) -> PathBuf {
    let stage = a.env.path("stage/cpmove-acct");
    std::fs::create_dir_all(&stage).unwrap();
    let cp =
        |from: &Path, to: &Path| assert!(Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success());
    if nested {
        let st = Command::new("tar")
            .arg("-C")
            .arg(&a.src)
            .arg("-cf")
            .arg(stage.join("homedir.tar"))
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
    } else {
        cp(&a.src, &stage.join("homedir"));
    }
    cp(&a.src_etc.join("valiases"), &stage.join("va"));
    cp(&a.src_etc.join("vfilters"), &stage.join("vf"));
    cp(&a.src_etc.join("vdomainaliases"), &stage.join("vad"));
    let out = a.env.path(if nested { "cpmove-nested.tar.gz" } else { "cpmove-acct.tar.gz" });
    let st = Command::new("tar")
        .arg("-C")
        .arg(a.env.path("stage"))
        .arg("-czf")
        .arg(&out)
        .arg("cpmove-acct")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(a.env.path("stage")).unwrap();
    out
}

fn check_archive_source(nested: bool) {
    let a = Account::new();
    // Dovecot copies a message to another folder with link(2); tar keeps the second name as a
    // hard link without data.
    let info = mailbox(&a.src, "info@example.com");
    let first = std::fs::read_dir(info.join("cur")).unwrap().next().unwrap().unwrap().path();
    std::fs::hard_link(&first, info.join(".Sent/cur/1546300000.M99P99.fixture,S=203:2,S")).unwrap();
    let tgz = make_archive(&a, nested);
    let (home, etc) = a.dst(if nested { "arch-nested" } else { "arch" });
    let s = format!("cpanel:{}", tgz.display());
    let d = format!("cpanel:{}", home.display());
    let r = a.env.sync(&s, &d, &["--target-etc", etc.to_str().unwrap()]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 13);
    for b in BOXES {
        assert_eq!(box_msgs(&mailbox(&a.src, b)), box_msgs(&mailbox(&home, b)), "mailbox {b:?} from the archive");
    }
    // The same metadata as from the unpacked account.
    let v = a.env.run([
        "verify",
        &format!("cpanel:{}", a.src.display()),
        &d,
        "--source-etc",
        a.src_etc.to_str().unwrap(),
        "--target-etc",
        etc.to_str().unwrap(),
        "--json",
    ]);
    v.expect_code(0);
    a.env.run(["verify", &s, &d, "--target-etc", etc.to_str().unwrap()]).expect_code(0);
    // The archive carries the system files too, with the fixture's unparseable valiases line.
    let ins = a.env.run(["inspect", "--json", &s]);
    ins.expect_code(1);
    assert_eq!(ins.json()["messages"], 13);
    assert!(ins.json()["problems"].to_string().contains("this line has no colon"));
    let r = a.env.sync(&s, &d, &["--target-etc", etc.to_str().unwrap()]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 0);
    // Nothing was unpacked next to the archive.
    let names: Vec<String> = std::fs::read_dir(a.env.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("cpmove-acct") || n.ends_with(".tar.gz")), "{names:?}");
}

#[test]
fn pkgacct_archive_is_read_directly() {
    check_archive_source(false);
}

#[test]
fn pkgacct_archive_with_nested_homedir_tar() {
    check_archive_source(true);
}

#[test]
fn archive_members_escaping_are_refused() {
    let a = Account::new();
    let bad = a.env.path("evil.tar");
    {
        let f = std::fs::File::create(&bad).unwrap();
        let mut b = tar::Builder::new(f);
        let data = b"Subject: x\n\nevil\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        // tar::Builder refuses `..` through set_path, so the name is written raw.
        let name = b"cpmove-x/homedir/mail/../../../escaped/cur/1:2,S";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_path("cpmove-x/homedir/mail/cur/2:2,S").unwrap();
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        b.finish().unwrap();
    }
    let (home, etc) = a.dst("evil");
    let r = a.env.sync(
        &format!("cpanel:{}", bad.display()),
        &format!("cpanel:{}", home.display()),
        &["--target-etc", etc.to_str().unwrap()],
    );
    r.expect_code(1);
    assert!(r.errors().iter().any(|(p, _)| p.contains("escaped")), "{:?}", r.errors());
    assert_eq!(r.n("transferred"), 1);
    assert!(!a.env.path("escaped").exists() && !a.env.path("evil/escaped").exists());
}

#[test]
fn utf8mailbox_folder_names_are_read() {
    // cPanel's UTF8MAILBOX=1 stores folder names as raw UTF-8 instead of modified UTF-7.
    let a = Account::new();
    let f = mailbox(&a.src, "sales@example.com").join(".Entwürfe");
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(f.join(s)).unwrap();
    }
    std::fs::write(f.join("cur/1546300800.M1P1.utf8,S=18:2,S"), b"Subject: d\n\ndraft\n").unwrap();
    let ins = a.env.run(["inspect", "--json", &format!("cpanel:{}", a.src.display())]);
    ins.expect_code(0);
    assert!(ins.stdout.contains("sales@example.com/Entwürfe"), "{}", ins.stdout);
    let (home, etc) = a.dst("utf8");
    a.sync(&home, &etc, &[]).expect_code(0);
    let got: Vec<String> =
        maildir_folders(&mailbox(&home, "sales@example.com"), Layout::MaildirPP).into_iter().map(|x| x.0).collect();
    assert!(got.contains(&"Entwürfe".to_string()), "{got:?}");
}

/// Account files in the target that a mailbox owner replaced with a link or a FIFO are not
/// read through (nor waited on): the run reports them and leaves what they point to alone.
#[test]
fn planted_links_and_fifos_among_target_account_files_are_refused() {
    let a = Account::new();
    let (home, etc) = a.dst("planted");
    let r = a.sync(&home, &etc, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let victim = a.env.write("victim", b"secret:x:0:0::/root:/bin/sh\n");
    let mut planted = Vec::new();
    for e in walkdir::WalkDir::new(home.join("etc")).into_iter().filter_map(Result::ok) {
        if e.file_type().is_file() && planted.len() < 2 {
            planted.push(e.into_path());
        }
    }
    assert_eq!(planted.len(), 2, "account files to plant at");
    std::fs::remove_file(&planted[0]).unwrap();
    std::os::unix::fs::symlink(&victim, &planted[0]).unwrap();
    std::fs::remove_file(&planted[1]).unwrap();
    nix::unistd::mkfifo(&planted[1], nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let r = a.sync(&home, &etc, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for p in &planted {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(r.stderr.contains(&name) || r.stdout.contains(&name), "{name} not reported: {}", r.stderr);
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"secret:x:0:0::/root:/bin/sh\n");
    assert!(std::fs::symlink_metadata(&planted[0]).unwrap().file_type().is_symlink());
}

/// `sync cpanel:ARCHIVE cpanel:HOME --json` run under `wrapper` (a command that runs the
/// rest of its arguments); it must exit 0. Returns the report.
fn sync_archive_under(wrapper: &[&str], tgz: &Path, home: &Path, etc: &Path) -> serde_json::Value {
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(assert_cmd::cargo::cargo_bin("mailmover"))
        .arg("sync")
        .arg(format!("cpanel:{}", tgz.display()))
        .arg(format!("cpanel:{}", home.display()))
        .arg("--target-etc")
        .arg(etc)
        .arg("--json")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Messages from an archive go through sync's Maildir run: a folder's messages are made
/// durable a batch at a time, not with one file-system sync each.
#[test]
fn archive_messages_are_synced_in_batches() {
    if !require(Need::Strace) {
        return;
    }
    let a = Account::new();
    let cur = mailbox(&a.src, "info@example.com").join(".Archive/cur");
    std::fs::create_dir_all(&cur).unwrap();
    for d in ["new", "tmp"] {
        std::fs::create_dir_all(cur.with_file_name(d)).unwrap();
    }
    for i in 0..200 {
        std::fs::write(cur.join(format!("1600000{i:03}.M{i}P1.fixture:2,S")), message(&format!("m{i}"), "body\n"))
            .unwrap();
    }
    let tgz = make_archive(&a, false);
    let (home, etc) = a.dst("batched");
    let trace = a.env.path("syncfs.trace");
    let trace_arg = trace.to_str().unwrap();
    let report = sync_archive_under(&["strace", "-f", "-qq", "-e", "trace=syncfs", "-o", trace_arg], &tgz, &home, &etc);
    assert_eq!(report["transferred"], 212, "{report}");
    let syncs = std::fs::read_to_string(&trace).unwrap().lines().filter(|l| l.contains("syncfs(")).count();
    // One or two per folder (a batch, then the renames), not one per message.
    assert!((1..=40).contains(&syncs), "{syncs} syncfs calls for 212 messages");
    let archived = box_msgs(&mailbox(&home, "info@example.com"));
    assert_eq!(archived.iter().filter(|m| m.0 == "Archive").count(), 200);
}

/// An archive with many folders is fed one folder at a time: memory and open descriptors stay
/// those of one folder, whatever the number of folders (a low descriptor limit, 120 folders of
/// 600 KB each).
#[test]
fn archive_with_many_folders_runs_in_bounded_memory_and_descriptors() {
    let a = Account::new();
    let info = mailbox(&a.src, "info@example.com");
    let body = "x".repeat(600 << 10);
    for f in 0..120 {
        let dir = info.join(format!(".F{f:03}"));
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("maildirfolder"), b"").unwrap();
        std::fs::write(dir.join(format!("cur/1600000000.M{f}P1.fixture:2,S")), message(&format!("f{f}"), &body))
            .unwrap();
    }
    let tgz = make_archive(&a, false);
    let (home, etc) = a.dst("many");
    let report = sync_archive_under(&["sh", "-c", "ulimit -Sn 128 && exec \"$@\"", "sh"], &tgz, &home, &etc);
    assert_eq!(report["transferred"], 132, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    // 72 MB of mail; one folder's worth is held at a time.
    let rss = report["peak_rss_kib"].as_u64().unwrap();
    assert!(rss < 48 << 10, "peak {rss} KiB");
}

/// Two mailboxes mapped onto one: their folders are written one after the other, each reading
/// the keyword table the other left, so no keyword letter is given two meanings.
#[test]
fn archive_mailboxes_merged_into_one_keep_their_keywords() {
    let a = Account::new();
    let sales = mailbox(&a.src, "sales@example.com");
    std::fs::write(sales.join("dovecot-keywords"), b"0 Urgent\n").unwrap();
    let first = std::fs::read_dir(sales.join("cur")).unwrap().next().unwrap().unwrap().path();
    let named = first.to_string_lossy().replace(":2,S", ":2,Sa");
    std::fs::rename(&first, &named).unwrap();
    let tgz = make_archive(&a, false);
    let (home, etc) = a.dst("merged");
    let s = format!("cpanel:{}", tgz.display());
    let d = format!("cpanel:{}", home.display());
    let r = a.env.sync(
        &s,
        &d,
        &["--target-etc", etc.to_str().unwrap(), "--map-user", "info@example.com=sales@example.com"],
    );
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    let msgs = box_msgs(&mailbox(&home, "sales@example.com"));
    let inbox: Vec<&Vec<String>> = msgs.iter().filter(|m| m.0 == "INBOX").map(|m| &m.2).collect();
    assert!(inbox.iter().any(|k| k.iter().any(|k| k == "Urgent")), "{inbox:?}");
    assert!(inbox.iter().any(|k| k.iter().any(|k| k == "$Forwarded")), "{inbox:?}");
    assert!(
        !inbox.iter().any(|k| k.contains(&"Urgent".to_string()) && k.contains(&"$Forwarded".to_string())),
        "{inbox:?}"
    );
}

/// A re-run of an archive whose messages are all in the target already: the plan carries the
/// skipped messages' bytes (they came from the archive, not from a file to read again), so
/// they count towards each chunk's byte budget and memory stays that of one chunk.
#[test]
fn rerun_of_an_archive_of_big_messages_stays_bounded() {
    let a = Account::new();
    let info = mailbox(&a.src, "info@example.com");
    let body = "x".repeat(300 << 10);
    let dir = info.join(".Big");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("maildirfolder"), b"").unwrap();
    for i in 0..500 {
        std::fs::write(dir.join(format!("cur/1600000{i:03}.M{i}P1.fixture:2,S")), message(&format!("b{i}"), &body))
            .unwrap();
    }
    let tgz = make_archive(&a, false);
    let (home, etc) = a.dst("big");
    let first = sync_archive_under(&["env"], &tgz, &home, &etc);
    assert_eq!(first["transferred"], 512, "{first}");
    let second = sync_archive_under(&["env"], &tgz, &home, &etc);
    assert_eq!((second["transferred"].as_u64(), second["skipped_existing"].as_u64()), (Some(0), Some(512)), "{second}");
    let rss = second["peak_rss_kib"].as_u64().unwrap();
    assert!(rss < 64 << 10, "peak {rss} KiB");
}

/// `mailmover ARGS` with a short timeout: a run that waits on a FIFO fails the test instead of
/// hanging it.
fn run_briefly(env: &TestEnv, args: &[&str]) -> Run {
    let out = env.cmd().timeout(std::time::Duration::from_secs(30)).args(args).output().unwrap();
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("mailmover {args:?}: no exit within 30 s (waiting on a FIFO, reading a huge file?)"));
    let r = Run {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_ne!(r.code, 101, "mailmover panicked:\n{}", r.stderr);
    r
}

fn plant_fifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// The source account is its user's too (root reads it in their home): a FIFO at a mailbox's
/// `maildirsize` or `mailbox_format.cpanel`, or at an `etc/DOMAIN` file, is refused and named,
/// not waited on, by `inspect` and by `sync`.
#[test]
fn fifos_planted_in_a_source_account_are_named_not_waited_on() {
    let a = Account::new();
    let planted = [
        mailbox(&a.src, "info@example.com").join("maildirsize"),
        mailbox(&a.src, "bob@example.org").join("mailbox_format.cpanel"),
        a.src.join("etc/example.com/passwd"),
    ];
    for p in &planted {
        plant_fifo(p);
    }
    let ins = run_briefly(&a.env, &["inspect", "--json", &format!("cpanel:{}", a.src.display())]);
    let (home, etc) = a.dst("fifos");
    let (s, d) = (format!("cpanel:{}", a.src.display()), format!("cpanel:{}", home.display()));
    let args = ["sync", &s, &d, "--source-etc", a.src_etc.to_str().unwrap(), "--target-etc", etc.to_str().unwrap()];
    let sync = run_briefly(&a.env, &[&args[..], &["--json"]].concat());
    for r in [&ins, &sync] {
        for p in &planted {
            let named = format!("\"{}\"", p.display());
            assert!(r.stdout.contains(&named), "{} not reported:\n{}", p.display(), r.stdout);
        }
        assert!(r.stdout.contains("not a regular file"), "{}", r.stdout);
    }
    assert_eq!(sync.code, 1, "{}", sync.stdout);
    assert_eq!(
        box_msgs(&mailbox(&a.src, "bob@example.org")),
        box_msgs(&mailbox(&home, "bob@example.org")),
        "the mailbox with the planted marker is still moved"
    );
}

/// A link planted in the source account, below its home, is not followed by the metadata
/// copy: `etc/DOMAIN` or `.spamassassin` pointing at root's files copies none of them (as
/// root, they would land in a home the user owns), and says so. A huge file there is not read.
#[test]
fn links_and_huge_files_planted_in_a_source_account_are_not_read() {
    let a = Account::new();
    let victim = a.env.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let secret = "root:$6$SECRETHASH:19000:0:99999:7:::\n";
    for f in ["shadow", "passwd", "quota", "user_prefs", "bayes_toks"] {
        std::fs::write(victim.join(f), secret).unwrap();
    }
    for d in ["etc/example.org", ".spamassassin"] {
        std::fs::remove_dir_all(a.src.join(d)).unwrap();
        std::os::unix::fs::symlink(&victim, a.src.join(d)).unwrap();
    }
    let huge = a.src.join("etc/example.com/quota");
    std::fs::OpenOptions::new().write(true).open(&huge).unwrap().set_len(64 << 20).unwrap();
    let (home, etc) = a.dst("links");
    let (s, d) = (format!("cpanel:{}", a.src.display()), format!("cpanel:{}", home.display()));
    let r = run_briefly(
        &a.env,
        &["sync", &s, &d, "--source-etc", a.src_etc.to_str().unwrap(), "--target-etc", etc.to_str().unwrap(), "--json"],
    );
    for e in walkdir::WalkDir::new(a.env.path("links")).into_iter().filter_map(Result::ok) {
        if e.file_type().is_file() {
            let text = std::fs::read(e.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains("SECRETHASH"),
                "{} holds the victim's",
                e.path().display()
            );
        }
    }
    for (p, why) in [
        (a.src.join("etc/example.org"), "symlink not followed"),
        (a.src.join(".spamassassin"), "symlink not followed"),
        (huge.clone(), "more than the"),
    ] {
        let named = format!("\"{}\"", p.display());
        assert!(
            r.stdout.contains(&named) && r.stdout.contains(why),
            "{} ({why}) not reported:\n{}",
            p.display(),
            r.stdout
        );
    }
    assert!(r.stdout.len() < 1 << 20, "a report of {} bytes", r.stdout.len());
    assert_eq!(
        box_msgs(&mailbox(&a.src, "info@example.com")),
        box_msgs(&mailbox(&home, "info@example.com")),
        "the mail still moves"
    );
    let ins = run_briefly(&a.env, &["inspect", "--json", &s]);
    assert!(!ins.stdout.contains("SECRETHASH"), "{}", ins.stdout);
}

/// A dry run from an archive writes nothing, `maildirsize` included (it was rewritten in the
/// target mailboxes that already existed).
#[test]
fn archive_dry_run_leaves_maildirsize_alone() {
    let a = Account::new();
    let tgz = make_archive(&a, false);
    let (home, etc) = a.dst("arch-dry");
    let (s, d) = (format!("cpanel:{}", tgz.display()), format!("cpanel:{}", home.display()));
    a.env.sync(&s, &d, &["--target-etc", etc.to_str().unwrap()]).expect_code(0);
    let mds = mailbox(&home, "info@example.com").join("maildirsize");
    let before = std::fs::read(&mds).expect("a maildirsize written");
    // The quota line kept (the target's wins), the usage wrong.
    let quota = String::from_utf8_lossy(&before).lines().next().unwrap().to_string();
    let old = format!("{quota}\n1 1\n").into_bytes();
    std::fs::write(&mds, &old).unwrap();
    a.env.sync(&s, &d, &["--target-etc", etc.to_str().unwrap(), "--dry-run"]).expect_code(0);
    assert_eq!(std::fs::read(&mds).unwrap(), old, "written by a dry run");
    a.env.sync(&s, &d, &["--target-etc", etc.to_str().unwrap()]).expect_code(0);
    assert_eq!(std::fs::read(&mds).unwrap(), before);
}

/// `--log-file` has a line for every account file written (forwarders, filters, passwords…).
#[test]
fn the_log_file_lists_metadata_written() {
    let a = Account::new();
    let (home, etc) = a.dst("dst");
    let log = a.env.path("run.log");
    a.sync(&home, &etc, &["--log-file", log.to_str().unwrap()]).expect_code(0);
    let text = std::fs::read_to_string(&log).unwrap();
    let written: Vec<&str> = text.lines().filter(|l| l.contains("] write metadata ")).collect();
    assert!(written.iter().any(|l| l.contains("valiases")), "{text}");
    assert!(written.iter().any(|l| l.contains("/etc/") && l.contains("passwd")), "{text}");
    assert!(text.lines().last().unwrap().contains("] end complete; exit 0"), "{text}");
}

/// A cPanel backup given as a bare path is a cPanel account, as it is with `cpanel:`.
#[test]
fn a_bare_cpmove_archive_is_a_cpanel_account() {
    let a = Account::new();
    let tgz = make_archive(&a, false);
    let (home, etc) = a.dst("bare");
    let d = format!("cpanel:{}", home.display());
    let r = a.env.sync(tgz.to_str().unwrap(), &d, &["--target-etc", etc.to_str().unwrap()]);
    r.expect_code(0);
    assert_eq!(r.n("transferred"), 12);
    for b in BOXES {
        assert_eq!(box_msgs(&mailbox(&a.src, b)), box_msgs(&mailbox(&home, b)), "mailbox {b:?}");
    }
}

/// A dry run with a user renamed shows the shadow line's rewrite without its password hash
/// (only its scheme and length).
#[test]
fn the_dry_run_plan_shows_no_password_hash() {
    let a = Account::new();
    let (home, etc) = a.dst("dry");
    let r = a.sync(&home, &etc, &["--dry-run", "--map-user", "bob@example.org=robert@example.org"]);
    r.expect_code(0);
    let plan = format!("{}{}", r.stdout, r.stderr);
    assert!(plan.contains("shadow: bob:$6$…, ") && plan.contains("-> robert:$6$…, "), "{plan}");
    assert!(!plan.contains("hashbob") && !plan.contains("fixsalt"), "a hash in the plan: {plan}");
}

/// An account staged elsewhere (synced to .../staged/home/newacct, to live at /home/newacct):
/// its account files name the home it will have, not the staging path; verify, given no
/// option, uses the recorded one and agrees; a relative path is refused.
#[test]
fn target_home_path_names_the_home_the_account_will_have() {
    let a = Account::new();
    let (home, etc) = a.dst("staged");
    let r = a.sync(&home, &etc, &["--target-home-path", "/home/newacct"]);
    r.expect_code(0);
    let passwd = std::fs::read_to_string(home.join("etc/example.com/passwd")).unwrap();
    assert!(passwd.contains(":/home/newacct/mail/example.com/") && !passwd.contains("staged"), "{passwd}");
    let v =
        a.env.run(["verify", &format!("cpanel:{}", a.src.display()), &format!("cpanel:{}", home.display()), "--json"]);
    v.expect_code(0);
    assert!(v.json()["options_from"].is_string(), "{}", v.stdout);
    let bad = a.sync(&home, &etc, &["--target-home-path", "home/newacct"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("must be an absolute path"), "{}", bad.stderr);
}

/// passwd lines get the target account's uid and gid (its home's owner), as restorepkg
/// rewrites them, and a dry run shows the rewrite.
#[test]
fn passwd_lines_get_the_target_accounts_ids() {
    if !require(Need::Root) {
        return;
    }
    let a = Account::new();
    let (home, etc) = a.dst("ids");
    std::os::unix::fs::chown(&home, Some(4321), Some(4322)).unwrap();
    passwd_ids_are_4321_4322(&a, &home, &etc, &[]);
}

/// A dry run says the passwd lines get uid 4321 and gid 4322, the sync writes them so, and
/// verify agrees at once.
fn passwd_ids_are_4321_4322(a: &Account, home: &Path, etc: &Path, extra: &[&str]) {
    let dry = a.sync(home, etc, &[extra, &["--dry-run"]].concat());
    dry.expect_code(0);
    assert!(dry.stdout.contains(":4321:4322:") || dry.stderr.contains(":4321:4322:"), "{}{}", dry.stdout, dry.stderr);
    a.sync(home, etc, extra).expect_code(0);
    let passwd = std::fs::read_to_string(home.join("etc/example.com/passwd")).unwrap();
    for line in passwd.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(':').collect();
        assert_eq!((f[2], f[3]), ("4321", "4322"), "{line}");
    }
    let v = a.env.run(["verify", &format!("cpanel:{}", a.src.display()), &format!("cpanel:{}", home.display())]);
    v.expect_code(0);
}

/// A home the sync makes gets its ids the moment it is made: the passwd lines name them (as
/// the dry run said they would), and verify agrees at once.
#[test]
fn passwd_lines_get_the_ids_of_a_home_the_sync_makes() {
    if !require(Need::Root) {
        return;
    }
    let a = Account::new();
    let (home, etc) = a.dst("made");
    std::fs::remove_dir(&home).unwrap();
    passwd_ids_are_4321_4322(&a, &home, &etc, &["--owner", "4321:4322"]);
}

/// Replaces `from` by `to` in the file at `p` (which must hold it).
fn edit(p: &Path, from: &str, to: &str) {
    let t = read(p);
    assert!(t.contains(from), "{}: no {from:?} in {t}", p.display());
    std::fs::write(p, t.replacen(from, to, 1)).unwrap();
}

/// The problems of a `--json` report's `key` (`errors`, `warnings`) whose kind is `conflict`,
/// as `path: reason`.
fn conflicts(r: &Run, key: &str) -> Vec<String> {
    let j = r.json();
    j[key]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "conflict")
        .map(|p| format!("{}: {}", p["path"].as_str().unwrap(), p["reason"].as_str().unwrap()))
        .collect()
}

const TEAM: &str = "team@example.com: info@example.com, bob@example.org, far@elsewhere.example";
const INVOICES: &str = "deliver \"sales@example.com\"";

/// Issue 21, item 6: on a catch-up run, a forwarder, filter rule or file changed on one side
/// only since the last sync takes that side's, quietly; the base the sync keeps is the
/// target's own (mode 0600, no password hash in it) and `verify` does not see it, and agrees
/// with what the sync kept: the target's own changes are no differences.
#[test]
fn catch_up_takes_what_changed_on_one_side_issue_21() {
    let a = Account::new();
    let (home, etc) = a.dst("catch");
    a.sync(&home, &etc, &[]).expect_code(0);
    let base = home.join(".mailmover-metadata");
    let md = std::fs::symlink_metadata(&base).unwrap();
    assert!(md.is_file() && md.mode() & 0o777 == 0o600, "{:o}", md.mode());
    assert!(!read(&base).contains("$6$") && !read(&base).contains(":x:1500"), "the base holds text: {}", read(&base));
    // The old server changes a forwarder, a filter rule and an autoresponder's settings; the new
    // one another forwarder and its passwd.
    edit(&a.src_etc.join("valiases/example.com"), TEAM, "team@example.com: info@example.com");
    edit(&a.src_etc.join("vfilters/example.com"), INVOICES, "deliver \"info@example.com\"");
    edit(&a.src.join(".autorespond/info@example.com.json"), "24", "48");
    edit(&etc.join("valiases/example.com"), "spam@example.com: :blackhole:", "spam@example.com: :fail: no");
    let pw = home.join("etc/example.com/passwd");
    edit(&pw, &format!(":{}\n", home.display()), &format!(":{}/x\n", home.display()));
    let r = a.sync(&home, &etc, &[]);
    r.expect_code(0);
    assert!(conflicts(&r, "warnings").is_empty() && conflicts(&r, "errors").is_empty(), "{}", r.stdout);
    let va = read(&etc.join("valiases/example.com"));
    assert!(va.contains("team@example.com: info@example.com\n") && !va.contains("far@elsewhere"), "{va}");
    assert!(va.contains("spam@example.com: :fail: no\n"), "the target's change kept: {va}");
    assert!(read(&etc.join("vfilters/example.com")).contains("deliver \"info@example.com\""));
    assert!(read(&home.join(".autorespond/info@example.com.json")).contains("48"));
    assert!(read(&pw).contains(&format!(":{}/x\n", home.display())), "{}", read(&pw));
    // A target line removed since, the source's unchanged: not put back.
    edit(&etc.join("valiases/example.com"), "old@example.com: :fail: No such person at this address\n", "");
    a.sync(&home, &etc, &[]).expect_code(0);
    assert!(!read(&etc.join("valiases/example.com")).contains("old@example.com"));
    let s = format!("cpanel:{}", a.src.display());
    let d = format!("cpanel:{}", home.display());
    let v = a.env.run([
        "verify",
        &s,
        &d,
        "--json",
        "--source-etc",
        a.src_etc.to_str().unwrap(),
        "--target-etc",
        etc.to_str().unwrap(),
    ]);
    assert!(!v.stdout.contains(".mailmover-metadata"), "{}", v.stdout);
    v.expect_code(0);
    assert_eq!(v.json()["ok"], true, "{}", v.stdout);
}

/// What verify makes of account files: a line changed on both sides since the last sync is a
/// difference (the sync reports it as a conflict); without a base every difference is one; a
/// shadow line is shown without its password hash.
#[test]
fn verify_of_account_files_follows_the_base() {
    let a = Account::new();
    let (home, etc) = a.dst("vbase");
    a.sync(&home, &etc, &[]).expect_code(0);
    let verify = || {
        a.env.run([
            "verify",
            &format!("cpanel:{}", a.src.display()),
            &format!("cpanel:{}", home.display()),
            "--json",
            "--source-etc",
            a.src_etc.to_str().unwrap(),
            "--target-etc",
            etc.to_str().unwrap(),
        ])
    };
    verify().expect_code(0);
    let shadow = home.join("etc/example.com/shadow");
    let line = read(&shadow).lines().find(|l| l.starts_with("info:")).unwrap().to_string();
    let hash = line.split(':').nth(1).unwrap().to_string();
    assert!(hash.starts_with("$6$"), "{line}");
    // The target changes the password on its own: the sync keeps it, verify agrees.
    edit(&shadow, &hash, "$6$new$target");
    verify().expect_code(0);
    // Without a base, nobody knows which side changed it: a difference, the hash not shown.
    std::fs::remove_file(home.join(".mailmover-metadata")).unwrap();
    let v = verify();
    v.expect_code(1);
    let diffs = v.json()["differences"].to_string();
    assert!(diffs.contains("shadow") && !diffs.contains(&hash) && !diffs.contains("$6$new$target"), "{diffs}");
    // Both sides change a forwarder since the last sync: a difference.
    a.sync(&home, &etc, &[]).expect_code(0);
    edit(&a.src_etc.join("valiases/example.com"), TEAM, "team@example.com: source@example.com");
    edit(&etc.join("valiases/example.com"), TEAM, "team@example.com: target@example.com");
    let v = verify();
    v.expect_code(1);
    assert!(v.json()["differences"].to_string().contains("team@example.com"), "{}", v.stdout);
}

/// Issue 21, item 6: a forwarder, a filter rule and a file changed on both sides since the
/// last sync are conflicts that make the run incomplete (exit 1, each an error of kind
/// `conflict`, in the log too), the target's kept, and again on the next run, until
/// `--overwrite-metadata` takes the source's (warnings, exit 0).
#[test]
fn catch_up_conflicts_fail_the_run_until_overwrite_issue_21() {
    let a = Account::new();
    let (home, etc) = a.dst("both");
    a.sync(&home, &etc, &[]).expect_code(0);
    let (va, vf, ar) = (
        etc.join("valiases/example.com"),
        etc.join("vfilters/example.com"),
        home.join(".autorespond/info@example.com.json"),
    );
    edit(&a.src_etc.join("valiases/example.com"), TEAM, "team@example.com: source@example.com");
    edit(&va, TEAM, "team@example.com: target@example.com");
    edit(&a.src_etc.join("vfilters/example.com"), INVOICES, "deliver \"source@example.com\"");
    edit(&vf, INVOICES, "deliver \"target@example.com\"");
    edit(&a.src.join(".autorespond/info@example.com.json"), "24", "48");
    edit(&ar, "24", "12");
    let log = a.env.path("both.log");
    for _ in 0..2 {
        let r = a.sync(&home, &etc, &["--log-file", log.to_str().unwrap()]);
        r.expect_code(1);
        let errors = conflicts(&r, "errors");
        assert_eq!(errors.len(), 3, "{errors:#?}");
        let named = |path: &Path, what: &str| {
            errors.iter().any(|e| e.starts_with(&format!("{}: conflict: ", path.display())) && e.contains(what))
        };
        assert!(named(&va, "team@example.com: changed on both sides since the last sync"), "{errors:#?}");
        assert!(named(&vf, "rule #invoices: changed on both sides"), "{errors:#?}");
        assert!(named(&ar, "changed on both sides"), "{errors:#?}");
        assert!(errors.iter().all(|e| e.contains("kept the target's")), "{errors:#?}");
        assert!(read(&va).contains("team@example.com: target@example.com\n"));
        assert!(read(&vf).contains("target@example.com") && read(&ar).contains("12"));
        assert_eq!(r.json()["complete"], false);
    }
    let text = read(&log);
    assert!(
        text.contains("changed on both sides") && text.contains("end NOT complete: 3 problem(s); exit 1"),
        "{text}"
    );
    let r = a.sync(&home, &etc, &["--overwrite-metadata"]);
    r.expect_code(0);
    assert_eq!(conflicts(&r, "warnings").len(), 3, "{}", r.stdout);
    assert!(read(&va).contains("team@example.com: source@example.com\n"));
    assert!(read(&vf).contains("source@example.com") && read(&ar).contains("48"));
    let r = a.sync(&home, &etc, &[]);
    r.expect_code(0);
    assert!(conflicts(&r, "warnings").is_empty(), "{}", r.stdout);
}

/// Issue 21, item 6: a forwarder and a file removed at the source since the last sync stay
/// without `--delete` (the dry run and the log say `--delete` would remove them) and go with
/// it; a forwarder the target changed meanwhile is a conflict instead.
#[test]
fn removed_at_the_source_goes_with_delete_issue_21() {
    let a = Account::new();
    let (home, etc) = a.dst("gone");
    a.sync(&home, &etc, &[]).expect_code(0);
    let va = etc.join("valiases/example.com");
    let json = home.join(".autorespond/info@example.com.json");
    edit(&a.src_etc.join("valiases/example.com"), "old@example.com: :fail: No such person at this address\n", "");
    edit(&a.src_etc.join("valiases/example.com"), "spam@example.com: :blackhole:\n", "");
    edit(&va, "spam@example.com: :blackhole:", "spam@example.com: :fail: kept");
    std::fs::remove_file(a.src.join(".autorespond/info@example.com.json")).unwrap();
    let log = a.env.path("gone.log");
    let r = a.sync(&home, &etc, &["--log-file", log.to_str().unwrap()]);
    r.expect_code(0);
    assert!(read(&va).contains("old@example.com:") && json.is_file());
    let text = read(&log);
    assert!(
        text.contains(&format!(
            "keep metadata line \"old@example.com\" in {}: gone from the source (--delete would remove it)",
            va.display()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("keep metadata file in {}", json.display())), "{text}");
    let r = a.sync(&home, &etc, &["--delete", "--dry-run"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains(&format!(
            "would remove metadata line \"old@example.com\" from {} (gone from the source)",
            va.display()
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&format!("would remove metadata file from {}", json.display())), "{}", r.stderr);
    assert!(read(&va).contains("old@example.com:") && json.is_file(), "a dry run removed");
    let r = a.sync(&home, &etc, &["--delete"]);
    r.expect_code(1);
    let errors = conflicts(&r, "errors");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("spam@example.com: removed at the source and changed in the target"), "{errors:#?}");
    assert!(!read(&va).contains("old@example.com:") && !json.exists());
    assert!(read(&va).contains("spam@example.com: :fail: kept") && read(&va).contains("team@example.com:"));
    a.sync(&home, &etc, &["--delete", "--overwrite-metadata"]).expect_code(0);
    assert!(!read(&va).contains("spam@example.com"));
}

/// A dry run reads the base but writes none, first run or catch-up.
#[test]
fn a_dry_run_writes_no_base_issue_21() {
    let a = Account::new();
    let (home, etc) = a.dst("dry");
    let base = home.join(".mailmover-metadata");
    a.sync(&home, &etc, &["--dry-run"]).expect_code(0);
    assert!(!base.exists());
    a.sync(&home, &etc, &[]).expect_code(0);
    let before = std::fs::read(&base).unwrap();
    edit(&a.src_etc.join("valiases/example.com"), TEAM, "team@example.com: info@example.com");
    let r = a.sync(&home, &etc, &["--dry-run"]);
    r.expect_code(0);
    assert!(r.stderr.contains("valiases/example.com: write"), "{}", r.stderr);
    assert_eq!(std::fs::read(&base).unwrap(), before);
    assert!(read(&etc.join("valiases/example.com")).contains(TEAM));
}

/// A link planted where the base goes is refused (an error naming it), neither followed nor
/// replaced; the account files are still written, merged as on a first run.
#[test]
fn a_link_planted_at_the_base_is_refused_issue_21() {
    let a = Account::new();
    let (home, etc) = a.dst("link");
    let elsewhere = a.env.write("elsewhere/base", b"{\"schema\":\"mailmover.metadata-base/1\",\"files\":{}}");
    let base = home.join(".mailmover-metadata");
    std::os::unix::fs::symlink(&elsewhere, &base).unwrap();
    let r = a.sync(&home, &etc, &[]);
    r.expect_code(1);
    let j = r.json();
    let refused = j["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "refused" && e["path"].as_str() == Some(base.to_str().unwrap()));
    assert!(refused, "{}", r.stdout);
    assert!(std::fs::symlink_metadata(&base).unwrap().file_type().is_symlink());
    assert_eq!(read(&elsewhere), "{\"schema\":\"mailmover.metadata-base/1\",\"files\":{}}");
    assert!(home.join("etc/example.com/passwd").is_file() && etc.join("valiases/example.com").is_file());
}

/// A source directory of account files that is there but cannot be listed (an ordinary user's
/// run, the directory mode 000) is not an empty one: with `--delete`, what the last sync wrote
/// from it stays in the target, and the run says why it copied nothing from there.
#[test]
fn an_unlistable_source_directory_is_not_taken_for_empty() {
    if !(require(Need::Root) && require(Need::Setpriv)) {
        return;
    }
    let a = Account::new();
    let (home, etc) = a.dst("unlisted");
    std::fs::create_dir_all(&etc).unwrap();
    let st = Command::new("chown").args(["-R", "4321:4321"]).arg(a.env.root()).status().unwrap();
    assert!(st.success());
    let run = |extra: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=4321", "--regid=4321", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin("mailmover"))
            .args(["sync", &format!("cpanel:{}", a.src.display()), &format!("cpanel:{}", home.display()), "--json"])
            .args(["--source-etc", a.src_etc.to_str().unwrap(), "--target-etc", etc.to_str().unwrap()])
            .args(extra)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    let auto = home.join(".autorespond/info@example.com");
    assert!(auto.is_file(), "{out}");
    std::fs::set_permissions(a.src.join(".autorespond"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let (_, out) = run(&["--delete"]);
    std::fs::set_permissions(a.src.join(".autorespond"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(auto.is_file() && home.join(".autorespond/info@example.com.json").is_file(), "{out}");
    assert!(out.contains(".autorespond") && out.contains("not copied"), "{out}");
}
