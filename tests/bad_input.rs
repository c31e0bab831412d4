//! Bad or odd input through `sync`: every defect is reported with its path, sound messages
//! still convert, nothing hangs, nothing panics (exit 101 is checked by `TestEnv::run`).

mod common;

use std::os::unix::fs::symlink;

use common::*;

#[test]
fn zero_byte_mbox_is_an_empty_folder() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/empty.mbox");
    let r = env.sync(src.to_str().unwrap(), "out", &[]);
    r.expect_code(0);
    assert_eq!((r.n("folders"), r.n("messages_source"), r.n("transferred")), (1, 0, 0));
    assert!(r.errors().is_empty());
    assert!(env.path("out/cur").is_dir());
}

#[test]
fn garbage_file_is_rejected_and_nothing_written() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/not-an-mbox.json");
    let snap = snapshot(&src);
    let r = env.sync(&format!("mbox:{}", src.display()), "out", &[]);
    assert!(matches!(r.code, 1 | 2), "{r:?}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("not-an-mbox.json"), "error does not name the file: {all}");
    assert!(read_maildir(&env.path("out"), Layout::MaildirPP).is_empty(), "messages written");
    assert!(!env.path("out").exists() || r.code == 1, "exit 2 promises nothing written");
    assert_unchanged(&snap, &src, "the source");
}

#[test]
fn gzip_bytes_are_rejected() {
    let env = TestEnv::new();
    let src = env.write("mail.mbox", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xf3\x48\xcd\xc9\xc9\x57\x00\x00");
    let r = env.sync(src.to_str().unwrap(), "out", &[]);
    assert!(matches!(r.code, 1 | 2), "{r:?}");
    assert!(read_maildir(&env.path("out"), Layout::MaildirPP).is_empty());
}

#[test]
fn truncated_last_message_is_reported_and_the_rest_converted() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/truncated-last.mbox");
    let r = env.sync(src.to_str().unwrap(), "out", &[]);
    r.expect_code(1);
    let errs = r.errors();
    assert!(errs.iter().any(|(p, _)| p.ends_with("truncated-last.mbox")), "{errs:?}");
    let msgs = read_maildir(&env.path("out"), Layout::MaildirPP);
    for s in ["whole", "whole too"] {
        assert!(msgs.iter().any(|m| header(&m.bytes, "Subject").as_deref() == Some(s)), "{s} not converted");
    }
}

#[test]
fn zero_byte_maildir_file_is_reported() {
    let env = TestEnv::new();
    let src = env.fixture("maildir/zero-byte-file");
    let r = env.sync(&format!("maildir:{}", src.display()), "out", &[]);
    r.expect_code(1);
    assert!(r.errors().iter().any(|(p, _)| p.contains("S=0:2,S")), "{:?}", r.errors());
    assert_eq!(r.n("transferred"), 1);
}

#[test]
fn directory_where_a_message_should_be_is_reported() {
    let env = TestEnv::new();
    let src = env.fixture("maildir/semicolon-info");
    std::fs::create_dir(src.join("cur/1551700009.M9P9.fixture:2,S")).unwrap();
    let r = env.sync(&format!("maildir:{}", src.display()), "out", &[]);
    r.expect_code(1);
    assert!(r.errors().iter().any(|(p, _)| p.ends_with("1551700009.M9P9.fixture:2,S")), "{:?}", r.errors());
    assert_eq!(r.n("transferred"), 3);
}

#[test]
fn fifo_in_cur_is_never_opened() {
    let env = TestEnv::new();
    let src = env.fixture("maildir/semicolon-info");
    let fifo = src.join("cur/1551700010.M10P9.fixture:2,S");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // TestEnv's command has a 120 s timeout: opening the FIFO would block until then.
    let mut c = env.cmd();
    c.timeout(std::time::Duration::from_secs(20));
    let out = c.args(["sync", &format!("maildir:{}", src.display()), "out", "--json"]).output().unwrap();
    let r = Run {
        code: out.status.code().expect("not killed by the timeout: the FIFO was opened"),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    r.expect_code(1);
    assert!(r.errors().iter().any(|(p, _)| p.ends_with("1551700010.M10P9.fixture:2,S")), "{:?}", r.errors());
    assert_eq!(r.n("transferred"), 3);
    // inspect and verify walk the same tree: they must not open it either.
    for args in [
        vec!["inspect".to_string(), format!("maildir:{}", src.display()), "--json".into()],
        vec!["verify".to_string(), format!("maildir:{}", src.display()), "out".into(), "--json".into()],
    ] {
        let mut c = env.cmd();
        c.timeout(std::time::Duration::from_secs(20));
        let o = c.args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn symlink_pointing_outside_is_reported_not_followed() {
    let env = TestEnv::new();
    let outside = env.write("outside/secret", &message("secret", "outside the source\n"));
    let src = env.fixture("maildir/semicolon-info");
    symlink(&outside, src.join("cur/1551700011.M11P9.fixture:2,S")).unwrap();
    let r = env.sync(&format!("maildir:{}", src.display()), "out", &[]);
    r.expect_code(1);
    assert!(r.errors().iter().any(|(p, _)| p.ends_with("1551700011.M11P9.fixture:2,S")), "{:?}", r.errors());
    // The report says what kind of trouble it is, for scripts that act on it.
    let errors = r.json()["errors"].as_array().cloned().unwrap_or_default();
    let link = errors.iter().find(|e| e["path"].as_str().is_some_and(|p| p.ends_with("M11P9.fixture:2,S")));
    assert_eq!(link.map(|e| e["kind"].clone()), Some(serde_json::json!("refused")), "{errors:?}");
    let msgs = read_maildir(&env.path("out"), Layout::MaildirPP);
    assert_eq!(msgs.len(), 3);
    assert!(!msgs.iter().any(|m| m.bytes == std::fs::read(&outside).unwrap()), "symlink followed");
}

/// --follow-symlinks reads a symlinked message file of a Maildir source.
#[test]

fn follow_symlinks_reads_symlinked_message_file() {
    let env = TestEnv::new();
    let outside = env.write("outside/secret", &message("secret", "outside the source\n"));
    let src = env.fixture("maildir/semicolon-info");
    symlink(&outside, src.join("cur/1551700011.M11P9.fixture:2,S")).unwrap();
    let r = env.sync(&format!("maildir:{}", src.display()), "out2", &["--follow-symlinks"]);
    r.expect_code(0);
    let msgs = read_maildir(&env.path("out2"), Layout::MaildirPP);
    assert_eq!(msgs.len(), 4);
    assert!(msgs.iter().any(|m| m.bytes == std::fs::read(&outside).unwrap()), "--follow-symlinks did not follow");
}

#[test]
fn symlinked_folder_in_mbox_dir_is_reported() {
    let env = TestEnv::new();
    let outside = env.write("outside/Other", &make_mbox(&[("Mon Jan  2 15:04:05 2006", &message("other", "x\n"))]));
    let src = env.fixture("mbox/utf7-dir");
    symlink(&outside, src.join("Linked")).unwrap();
    let r = env.sync(&format!("mbox:{}", src.display()), "out", &[]);
    r.expect_code(1);
    assert!(r.errors().iter().any(|(p, _)| p.ends_with("Linked")), "{:?}", r.errors());
    assert!(!env.path("out/.Linked").exists());
}

#[test]
fn nul_and_invalid_utf8_headers_convert_byte_exact() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/8bit-nul-headers.mbox");
    let data = std::fs::read(&src).unwrap();
    let r = env.sync(src.to_str().unwrap(), "out", &[]);
    r.expect_code(0);
    let want = read_mbox(&data, Variant::Mboxrd).remove(0).bytes;
    let msgs = read_maildir(&env.path("out"), Layout::MaildirPP);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].bytes, want);
}

#[test]
fn header_less_body_only_message_converts() {
    let env = TestEnv::new();
    let body = b"just a body line\nand another\n";
    env.write("b.mbox", &make_mbox(&[("Mon Jan  2 15:04:05 2006", body)]));
    let r = env.sync("b.mbox", "out", &[]);
    r.expect_code(0);
    assert_eq!(read_maildir(&env.path("out"), Layout::MaildirPP)[0].bytes, body);
}

#[test]
fn unreadable_noise_never_panics() {
    // A few hostile shapes: From_ lines without dates, a lone From_ line, huge header lines,
    // lines of only '>' and a file without any newline.
    let cases: Vec<Vec<u8>> = vec![
        b"From \n".to_vec(),
        b"From x\n\nFrom y\n".to_vec(),
        [b"From a@b Mon Jan  2 15:04:05 2006\nX: ".as_slice(), &vec![b'a'; 200_000], b"\n\nbody\n"].concat(),
        b"From a@b Mon Jan  2 15:04:05 2006\n>>>>>>>>\n>\n\n>From \n".to_vec(),
        b"From a@b Mon Jan  2 15:04:05 2006".to_vec(),
        b"From a@b Mon Jan 99 99:99:99 99999\nSubject: x\n\nbody\n".to_vec(),
    ];
    for (i, c) in cases.iter().enumerate() {
        let env = TestEnv::new();
        env.write("n.mbox", c);
        let r = env.sync("mbox:n.mbox", "out", &[]);
        assert!(matches!(r.code, 0..=2), "case {i}: {r:?}");
        let r = env.run(["inspect", "mbox:n.mbox", "--json"]);
        assert!(matches!(r.code, 0..=2), "case {i}: {r:?}");
    }
}

/// A target that does not exist yet but lies inside the source is refused before writing.
#[test]

fn target_inside_source_is_a_usage_error() {
    let env = TestEnv::new();
    let src = env.fixture("maildir/utf7-folders");
    let r = env.sync(&format!("maildir:{}", src.display()), &format!("maildir:{}/.Inner", src.display()), &[]);
    r.expect_code(2);
    assert!(!src.join(".Inner").exists());
}

#[test]
fn existing_target_inside_source_is_a_usage_error() {
    let env = TestEnv::new();
    let src = env.fixture("maildir/utf7-folders");
    let snap = snapshot(&src);
    let r = env.sync(&format!("maildir:{}", src.display()), &format!("maildir:{}/.Archive", src.display()), &[]);
    r.expect_code(2);
    assert_unchanged(&snap, &src, "the source");
}

#[test]
fn unknown_option_is_a_usage_error() {
    let env = TestEnv::new();
    let r = env.run(["sync", "a", "b", "--no-such-option"]);
    r.expect_code(2);
    let r = env.run(["sync", "does-not-exist", "out"]);
    r.expect_code(2);
    assert!(!env.path("out").exists());
}

/// FORMATS §5: a store that is not an mbox, given as the only source, is exit 2 and the
/// target is not created at all.
#[test]

fn lone_garbage_source_writes_no_target() {
    let env = TestEnv::new();
    let src = env.fixture("mbox/not-an-mbox.json");
    let r = env.sync(&format!("mbox:{}", src.display()), "out", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!env.path("out").exists(), "target created for a rejected source");
}

/// Empty files among messages, in every order of names, never crash the sort of a chunk.
#[test]
fn empty_files_in_any_name_order_do_not_crash() {
    for order in 0..8u32 {
        let env = TestEnv::new();
        for i in 0..3u32 {
            let empty = order & (1 << i) != 0;
            let name = format!("src/cur/{}.M{i}P1.h:2,S", 1_600_000_000 + i);
            env.write(&name, if empty { b"" } else { b"Subject: m\n\nbody\n" });
            env.write(
                &format!("src/new/{}.M{i}P2.h", 1_600_000_000 + (2 - i)),
                if empty { b"Subject: n\n\nx\n" } else { b"" },
            );
        }
        restore_maildir_dirs(&env.path("src"));
        let r = env.sync("maildir:src", "maildir:dst", &[]);
        assert_eq!(r.code, 1, "order {order}: {}", r.stderr);
        assert_eq!(r.n("transferred"), 3, "order {order}");
    }
}
