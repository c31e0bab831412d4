//! One message bigger than the memory the run may use: it is read through in windows, never
//! held whole. A 256 MiB message (the mapped path starts at 64 MiB) must convert every way with
//! a peak RSS under 100 MB, byte for byte.

use std::io::Write;
use std::path::Path;
use std::process::Command;

const SIZE: usize = 256 << 20;

fn write_message(path: &Path, from_line: bool) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    if from_line {
        f.write_all(b"From a@example.org Sat Jan  1 00:00:00 2022\n").unwrap();
    }
    f.write_all(b"From: a@example.org\nSubject: big\n\n").unwrap();
    let line = b"abcdefghijklmnopqrstuvwxyz0123456789 the quick brown fox jumps over the lazy dog\n";
    for _ in 0..SIZE / line.len() {
        f.write_all(line).unwrap();
    }
    if from_line {
        f.write_all(b"\n").unwrap();
    }
    f.flush().unwrap();
}

/// Runs the binary and returns its exit code and peak RSS in KiB.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its rusage
fn run_measured(dir: &Path, args: &[&str]) -> (i32, i64) {
    let child = Command::new(assert_cmd::cargo::cargo_bin("mailmover")).args(args).current_dir(dir).spawn().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid, and wait4 writes only into the two out-parameters.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32);
    (libc::WEXITSTATUS(status), ru.ru_maxrss)
}

/// The first MiB of a file and its size (the test process holds nothing big: a child forked
/// from it would count the parent's pages in its peak RSS until it execs).
fn head_and_len(path: &Path) -> (Vec<u8>, u64) {
    use std::io::Read;
    let mut head = vec![0u8; 1 << 20];
    let mut f = std::fs::File::open(path).unwrap();
    f.read_exact(&mut head).unwrap();
    (head, f.metadata().unwrap().len())
}

fn body_start(head: &[u8]) -> usize {
    head.windows(2).position(|w| w == b"\n\n").unwrap() + 2
}

#[test]
fn a_huge_message_converts_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_message(&d.join("big.mbox"), true);
    for s in ["md/cur", "md/new", "md/tmp"] {
        std::fs::create_dir_all(d.join(s)).unwrap();
    }
    write_message(&d.join("md/cur/1600000000.M1P1.h:2,S"), false);
    let (want, want_len) = head_and_len(&d.join("md/cur/1600000000.M1P1.h:2,S"));
    let want_body = want_len - body_start(&want) as u64;
    for (src, dst) in [
        ("mbox:big.mbox", "maildir:o1"),
        ("maildir:md", "maildir:o2"),
        ("maildir:md", "mbox:o3.mbox"),
        ("mbox:big.mbox", "mbox:o4.mbox"),
    ] {
        let (code, rss) = run_measured(d, &["sync", src, dst, "-q"]);
        assert_eq!(code, 0, "{src} -> {dst}");
        assert!(rss < 100_000, "{src} -> {dst}: peak RSS {rss} KiB");
        let (code, rss) = run_measured(d, &["verify", src, dst]);
        assert_eq!(code, 0, "verify {src} {dst}");
        assert!(rss < 100_000, "verify {src} {dst}: peak RSS {rss} KiB");
        let out = dst.split_once(':').unwrap().1;
        let path = if dst.starts_with("maildir:") {
            ["new", "cur"]
                .iter()
                .flat_map(|sub| std::fs::read_dir(d.join(out).join(sub)).unwrap().flatten())
                .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .unwrap()
                .path()
        } else {
            d.join(out)
        };
        let (got, got_len) = head_and_len(&path);
        let (gb, wb) = (body_start(&got), body_start(&want));
        assert_eq!(got[gb..gb + 4096], want[wb..wb + 4096], "{src} -> {dst}");
        // An mbox adds the From_ line and headers before, and the separator line after.
        let extra = if dst.starts_with("mbox:") { 1 } else { 0 };
        assert_eq!(got_len - gb as u64, want_body + extra, "{src} -> {dst}: the body, whole");
        let _ = std::fs::remove_file(d.join(out)).or_else(|_| std::fs::remove_dir_all(d.join(out)));
    }
}

/// Many messages, 200 MiB in all, as an mbox: the file is read through (mapped), never held.
#[test]
fn big_mboxes_are_read_through_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let write = |name: &str, n: usize| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(d.join(name)).unwrap());
        let line = [b'x'; 99];
        for i in 0..n {
            write!(f, "From a@example.org Sat Jan  1 00:00:00 2022\nFrom: a@example.org\nSubject: {i}\n\n").unwrap();
            for _ in 0..1000 {
                f.write_all(&line).unwrap();
                f.write_all(b"\n").unwrap();
            }
            f.write_all(b"\n").unwrap();
        }
        f.flush().unwrap();
    };
    write("many.mbox", 2000);
    let (code, _) = run_measured(d, &["sync", "mbox:many.mbox", "mbox:out.mbox", "-q"]);
    assert_eq!(code, 0);
    write("many.mbox", 2001);
    // The one new message: verify finds it missing, then the sync appends it.
    for (args, missing) in [
        (&["sync", "--dry-run", "mbox:many.mbox", "mbox:out.mbox", "-q"][..], false),
        (&["verify", "mbox:many.mbox", "mbox:out.mbox"][..], true),
        (&["sync", "mbox:many.mbox", "mbox:out.mbox", "-q"][..], false),
        (&["verify", "mbox:many.mbox", "mbox:out.mbox"][..], false),
    ] {
        let (code, rss) = run_measured(d, args);
        assert_eq!(code != 0, missing, "{args:?}: exit code {code}");
        assert!(rss < 64_000, "{args:?}: peak RSS {rss} KiB");
    }
}
