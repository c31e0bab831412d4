//! Shared test support: a `TestEnv` (temp dir, fixture copies, the binary with `TZ=UTC`,
//! `--json` parsing), a reader that turns a Maildir tree back into plain records, an independent
//! mbox splitter (the rules of the corpus' `expected.py`), tree snapshots for "wrote nothing" and
//! "source unchanged" checks, diffs that say which message differs and how, and `require` for
//! the tests that need a tool, root or the shared corpus (require.rs).
//!
//! Every helper here is written from FORMATS.md, not from mailmover's code, so a test that
//! agrees with the binary checks it against a second reading of the spec.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest, Sha256};

mod require;
// Each test crate compiles its own copy of this module and uses only some of it.
#[allow(unused_imports)]
pub use require::{DOVECOT_IMAP, Decision, Need, decide, notice, require, require_for};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

pub fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` object on stdout (panics with the whole output when there is none).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON object ({e}):\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
        })
    }

    pub fn n(&self, key: &str) -> u64 {
        let j = self.json();
        j.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("no number {key:?} in {j}"))
    }

    /// Asserts the exit code, printing everything when it is not the expected one.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// The error entries of a `--json` report.
    pub fn errors(&self) -> Vec<(String, String)> {
        self.json()
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e.get("path").and_then(Value::as_str).unwrap_or("").to_string(),
                            e.get("reason").and_then(Value::as_str).unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv { dir: tempfile::Builder::new().prefix("mailmover-test.").tempdir().expect("temp dir") }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Copies `fixtures/REL` into the temp dir (under its own file name) and returns the copy.
    pub fn fixture(&self, rel: &str) -> PathBuf {
        let src = fixtures().join(rel);
        let name = src.file_name().expect("fixture has a name").to_os_string();
        let dst = self.dir.path().join(name);
        copy_store(&src, &dst);
        dst
    }

    /// Writes `bytes` to REL (parents created) and returns the path.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p, bytes).expect("write");
        p
    }

    /// The binary, run in the temp dir with `TZ=UTC` and umask-independent checks in mind.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("mailmover").expect("the mailmover binary");
        c.current_dir(self.dir.path()).env("TZ", "UTC").env_remove("RUST_LOG");
        c.timeout(std::time::Duration::from_secs(120));
        c
    }

    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.cmd().args(args).output().expect("run mailmover");
        let code = out.status.code().unwrap_or_else(|| panic!("mailmover was killed by a signal: {:?}", out.status));
        let r = Run {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_ne!(r.code, 101, "mailmover panicked:\n{}", r.stderr);
        r
    }

    /// `mailmover sync SRC DST --json ARGS…`
    pub fn sync(&self, src: &str, dst: &str, args: &[&str]) -> Run {
        let mut v: Vec<&str> = vec!["sync", src, dst, "--json"];
        v.extend_from_slice(args);
        self.run(v)
    }
}

/// The binary started in the background in `env`'s directory (`TZ=UTC`), output captured.
pub fn spawn(env: &TestEnv, args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("mailmover"))
        .args(args)
        .current_dir(env.root())
        .env("TZ", "UTC")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mailmover")
}

/// Waits for a [`spawn`]ed run; a run killed by a signal fails the test.
pub fn finish(c: std::process::Child) -> Run {
    let out = c.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or_else(|| panic!("killed by a signal: {:?}", out.status)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Copies a store (file or tree, mtimes kept). `.keep` placeholders are not copied, and every directory
/// holding `cur/` or `new/` gets all of `cur/ new/ tmp/` (git does not keep empty dirs).
pub fn copy_store(src: &Path, dst: &Path) {
    let md = std::fs::symlink_metadata(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    if md.is_file() {
        std::fs::copy(src, dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        // Maildir dates are mtimes: a copy keeps them.
        let t = filetime::FileTime::from_last_modification_time(&md);
        filetime::set_file_times(dst, t, t).expect("set mtime");
        return;
    }
    std::fs::create_dir_all(dst).expect("mkdir");
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("dir entry");
        if e.file_name() == ".keep" {
            continue;
        }
        copy_store(&e.path(), &dst.join(e.file_name()));
    }
    restore_maildir_dirs(dst);
}

/// Creates the missing ones of `cur/ new/ tmp/` next to any `cur/` or `new/` below `root`.
pub fn restore_maildir_dirs(root: &Path) {
    for e in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
        if e.file_type().is_dir() && matches!(e.file_name().to_str(), Some("cur" | "new")) {
            let parent = e.path().parent().expect("parent");
            for s in ["cur", "new", "tmp"] {
                let _ = std::fs::create_dir(parent.join(s));
            }
        }
    }
}

/// One message of a Maildir tree, as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Msg {
    pub folder: String,
    pub sub: String,
    pub name: String,
    pub flags: String,
    pub keywords: Vec<String>,
    pub bytes: Vec<u8>,
    pub mtime: i64,
    pub mode: u32,
}

impl Msg {
    pub fn base(&self) -> &str {
        split_info(&self.name).0
    }

    /// What identifies the message regardless of where it lies: folder, bytes, flags, keywords.
    pub fn key(&self) -> (String, String, String, Vec<String>) {
        (self.folder.clone(), sha256(&self.bytes), self.flags.clone(), self.keywords.clone())
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {}/{} flags={:?} kw={:?} mtime={} {} bytes {:?}",
            self.folder,
            self.sub,
            self.name,
            self.flags,
            self.keywords,
            self.mtime,
            self.bytes.len(),
            String::from_utf8_lossy(&self.bytes[..self.bytes.len().min(60)])
        )
    }
}

/// (base, info) of a Maildir file name; the info separator may be `:`, `;` or `!`.
pub fn split_info(name: &str) -> (&str, Option<&str>) {
    for sep in [":2,", ";2,", "!2,"] {
        if let Some(i) = name.find(sep) {
            return (&name[..i], Some(&name[i + 3..]));
        }
    }
    (name, None)
}

/// `dovecot-keywords` of a folder directory: letter → name.
pub fn keyword_map(dir: &Path) -> BTreeMap<char, String> {
    let mut m = BTreeMap::new();
    if let Ok(t) = std::fs::read_to_string(dir.join("dovecot-keywords")) {
        for l in t.lines() {
            if let Some((i, n)) = l.split_once(' ')
                && let Ok(i) = i.parse::<u8>()
                && i < 26
            {
                m.insert((b'a' + i) as char, n.to_string());
            }
        }
    }
    m
}

/// Decodes an IMAP modified UTF-7 name (RFC 3501 §5.1.3).
pub fn mutf7_decode(s: &str) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after.find('-').unwrap_or_else(|| panic!("bad mUTF-7 {s:?}"));
        let b64 = &after[..j];
        if b64.is_empty() {
            out.push('&');
        } else {
            let (mut bits, mut nbits, mut units) = (0u32, 0u32, Vec::new());
            let mut bytes = Vec::new();
            for c in b64.bytes() {
                let v = ALPHA.iter().position(|&a| a == c).unwrap_or_else(|| panic!("bad mUTF-7 {s:?}")) as u32;
                bits = (bits << 6) | v;
                nbits += 6;
                if nbits >= 8 {
                    nbits -= 8;
                    bytes.push((bits >> nbits) as u8);
                    bits &= (1 << nbits) - 1;
                }
            }
            for p in bytes.chunks(2) {
                if p.len() == 2 {
                    units.push(u16::from_be_bytes([p[0], p[1]]));
                }
            }
            out.push_str(&String::from_utf16(&units).unwrap_or_else(|_| panic!("bad UTF-16 in {s:?}")));
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// Subfolder layouts of a Maildir tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    MaildirPP,
    Fs,
}

/// Every message of the Maildir tree at `root`, sorted (folder, sub, name).
pub fn read_maildir(root: &Path, layout: Layout) -> Vec<Msg> {
    let mut out = Vec::new();
    for (folder, dir) in maildir_folders(root, layout) {
        let kw = keyword_map(&dir);
        for sub in ["new", "cur"] {
            let Ok(rd) = std::fs::read_dir(dir.join(sub)) else { continue };
            for e in rd {
                let e = e.expect("dir entry");
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let md = std::fs::symlink_metadata(e.path()).expect("stat");
                if !md.is_file() {
                    continue;
                }
                let (_, info) = split_info(&name);
                let letters = info.unwrap_or("");
                let mut flags: Vec<char> = letters.chars().filter(|c| c.is_ascii_uppercase()).collect();
                flags.sort_unstable();
                flags.dedup();
                let mut keywords: Vec<String> = letters
                    .chars()
                    .filter(|c| c.is_ascii_lowercase())
                    .map(|c| kw.get(&c).cloned().unwrap_or_else(|| format!("?{c}")))
                    .collect();
                keywords.sort();
                keywords.dedup();
                out.push(Msg {
                    folder: folder.clone(),
                    sub: sub.to_string(),
                    name,
                    flags: flags.into_iter().collect(),
                    keywords,
                    bytes: std::fs::read(e.path()).expect("read message"),
                    mtime: md.mtime(),
                    mode: md.mode() & 0o7777,
                });
            }
        }
    }
    out.sort();
    out
}

/// (IMAP name, directory) of every folder of a Maildir tree.
pub fn maildir_folders(root: &Path, layout: Layout) -> Vec<(String, PathBuf)> {
    let is_md = |d: &Path| d.join("cur").is_dir() || d.join("new").is_dir();
    let mut out = Vec::new();
    if is_md(root) {
        out.push(("INBOX".to_string(), root.to_path_buf()));
    }
    match layout {
        Layout::MaildirPP => {
            let Ok(rd) = std::fs::read_dir(root) else { return out };
            for e in rd.filter_map(Result::ok) {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(rest) = n.strip_prefix('.')
                    && e.path().is_dir()
                    && is_md(&e.path())
                {
                    let name = rest.split('.').map(mutf7_decode).collect::<Vec<_>>().join("/");
                    out.push((name, e.path()));
                }
            }
        }
        Layout::Fs => {
            fn walk(d: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>, is_md: &dyn Fn(&Path) -> bool) {
                let Ok(rd) = std::fs::read_dir(d) else { return };
                for e in rd.filter_map(Result::ok) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with('.') || matches!(n.as_str(), "cur" | "new" | "tmp") || !e.path().is_dir() {
                        continue;
                    }
                    let name = format!("{prefix}{}", mutf7_decode(&n));
                    if is_md(&e.path()) {
                        out.push((name.clone(), e.path()));
                    }
                    walk(&e.path(), &format!("{name}/"), out, is_md);
                }
            }
            walk(root, "", &mut out, &is_md);
        }
    }
    out.sort();
    out
}

/// File tree snapshot: relative path → (kind, sha256 or link target, mode, mtime).
pub type Snapshot = BTreeMap<PathBuf, (char, String, u32, i64)>;

pub fn snapshot(root: &Path) -> Snapshot {
    let mut m = BTreeMap::new();
    if std::fs::symlink_metadata(root).is_err() {
        return m;
    }
    for e in walkdir::WalkDir::new(root).follow_links(false).into_iter().filter_map(Result::ok) {
        let md = std::fs::symlink_metadata(e.path()).expect("stat");
        let rel = e.path().strip_prefix(root).expect("under root").to_path_buf();
        let ft = md.file_type();
        let (kind, content) = if ft.is_symlink() {
            ('l', std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default())
        } else if ft.is_file() {
            ('f', sha256(&std::fs::read(e.path()).expect("read")))
        } else if ft.is_dir() {
            ('d', String::new())
        } else {
            ('o', String::new())
        };
        // Directory mtimes are left out: reading a directory does not change them, but
        // the checks here are about content.
        let mtime = if kind == 'd' { 0 } else { md.mtime() };
        m.insert(rel, (kind, content, md.mode() & 0o7777, mtime));
    }
    m
}

/// Readable difference of two snapshots ("" when equal).
pub fn snapshot_diff(before: &Snapshot, after: &Snapshot) -> String {
    let mut s = String::new();
    for (k, v) in before {
        match after.get(k) {
            None => writeln!(s, "  removed: {}", k.display()).unwrap(),
            Some(w) if w != v => writeln!(s, "  changed: {} {v:?} -> {w:?}", k.display()).unwrap(),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        writeln!(s, "  added: {}", k.display()).unwrap();
    }
    s
}

#[track_caller]
pub fn assert_unchanged(before: &Snapshot, root: &Path, what: &str) {
    let d = snapshot_diff(before, &snapshot(root));
    assert!(d.is_empty(), "{what} changed:\n{d}");
}

/// Asserts two multisets of items are equal, listing what is only on either side.
#[track_caller]
pub fn assert_same_set<T: Ord + std::fmt::Debug + Clone>(expected: &[T], got: &[T], what: &str) {
    let mut e = expected.to_vec();
    let mut g = got.to_vec();
    e.sort();
    g.sort();
    if e == g {
        return;
    }
    let mut s = format!("{what}: expected {} items, got {}\n", e.len(), g.len());
    let mut gi = g.clone();
    for x in &e {
        if let Some(p) = gi.iter().position(|y| y == x) {
            gi.remove(p);
        } else {
            writeln!(s, "  missing: {x:?}").unwrap();
        }
    }
    let mut ei = e.clone();
    for y in &g {
        if let Some(p) = ei.iter().position(|x| x == y) {
            ei.remove(p);
        } else {
            writeln!(s, "  unexpected: {y:?}").unwrap();
        }
    }
    panic!("{s}");
}

// ---------------------------------------------------------------------------------------------
// An independent mbox reader (the rules of the corpus' expected.py / FORMATS.md §1).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    None,
    Mboxo,
    Mboxrd,
    Cl2,
}

/// One message: the From_ line (without line end) and the bytes, un-quoted per variant.
#[derive(Debug, Clone)]
pub struct MboxMsg {
    pub from_line: Vec<u8>,
    pub raw: Vec<u8>,
    pub bytes: Vec<u8>,
}

fn lines_keepends(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            out.push(&data[start..=i]);
            start = i + 1;
        }
    }
    if start < data.len() {
        out.push(&data[start..]);
    }
    out
}

fn strip_eol(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\n").unwrap_or(l);
    l.strip_suffix(b"\r").unwrap_or(l)
}

pub fn unquote(b: &[u8], v: Variant) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for l in lines_keepends(b) {
        let drop = match v {
            Variant::Mboxrd => {
                l.first() == Some(&b'>') && {
                    let rest = &l[l.iter().position(|&c| c != b'>').unwrap_or(l.len())..];
                    rest.starts_with(b"From ")
                }
            }
            Variant::Mboxo => l.starts_with(b">From "),
            _ => false,
        };
        out.extend_from_slice(if drop { &l[1..] } else { l });
    }
    out
}

/// From_ lines at the start or after an empty line; the empty line before the next is dropped.
pub fn split_strict(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut cur: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut prev_blank = true;
    for l in lines_keepends(data) {
        if l.starts_with(b"From ") && prev_blank {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            cur = Some((strip_eol(l).to_vec(), Vec::new()));
        } else if let Some(c) = cur.as_mut() {
            c.1.extend_from_slice(l);
        }
        prev_blank = l == b"\n" || l == b"\r\n";
    }
    if let Some(c) = cur {
        out.push(c);
    }
    for (_, b) in out.iter_mut() {
        if b.ends_with(b"\r\n\r\n") {
            b.truncate(b.len() - 2);
        } else if b.ends_with(b"\n\n") {
            b.truncate(b.len() - 1);
        }
    }
    out
}

fn find(h: &[u8], n: &[u8], from: usize) -> Option<usize> {
    h.get(from..)?.windows(n.len()).position(|w| w == n).map(|p| p + from)
}

/// Header block of a message (up to the first empty line).
pub fn header_block(m: &[u8]) -> &[u8] {
    let a = find(m, b"\n\n", 0);
    let b = find(m, b"\r\n\r\n", 0);
    match (a, b) {
        (Some(x), Some(y)) => &m[..x.min(y)],
        (Some(x), None) | (None, Some(x)) => &m[..x],
        _ => m,
    }
}

/// The unfolded value of the first header field `name` (case-insensitive).
pub fn header(m: &[u8], name: &str) -> Option<String> {
    let block = header_block(m);
    let ls = lines_keepends(block);
    for (i, l) in ls.iter().enumerate() {
        let Some(c) = l.iter().position(|&b| b == b':') else { continue };
        if l[..c].eq_ignore_ascii_case(name.as_bytes()) {
            let mut v = String::from_utf8_lossy(strip_eol(&l[c + 1..])).into_owned();
            for cont in ls.iter().skip(i + 1).take_while(|x| x.first().is_some_and(|&b| b == b' ' || b == b'\t')) {
                v.push_str(&String::from_utf8_lossy(strip_eol(cont)));
            }
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Content-Length aware splitting (Dovecot, mboxcl2), falling back to the strict rule.
pub fn split_cl2(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let (mut pos, n) = (0usize, data.len());
    while pos < n {
        if !data[pos..].starts_with(b"From ") {
            match find(data, b"\n", pos) {
                Some(nl) => {
                    pos = nl + 1;
                    continue;
                }
                None => break,
            }
        }
        let Some(nl) = find(data, b"\n", pos) else {
            out.push((data[pos..].to_vec(), Vec::new()));
            break;
        };
        let (from_line, start) = (data[pos..nl].to_vec(), nl + 1);
        let hdr_end = find(data, b"\n\n", start);
        let cl =
            hdr_end.and_then(|h| header(&data[start..h + 2], "Content-Length")).and_then(|v| v.parse::<usize>().ok());
        if let (Some(cl), Some(h)) = (cl, hdr_end) {
            let end = h + 2 + cl;
            if end <= n
                && (end == n
                    || &data[end..] == b"\n"
                    || data[end..].starts_with(b"\nFrom ")
                    || data[end..].starts_with(b"From "))
            {
                out.push((from_line, data[start..end].to_vec()));
                pos = if data[end..].starts_with(b"\n") { end + 1 } else { end };
                continue;
            }
        }
        match find(data, b"\n\nFrom ", start - 1) {
            Some(m) => {
                out.push((from_line, data[start..m + 1].to_vec()));
                pos = m + 2;
            }
            None => {
                out.push((from_line, data[start..].to_vec()));
                pos = n;
            }
        }
    }
    out
}

pub fn read_mbox(data: &[u8], v: Variant) -> Vec<MboxMsg> {
    let pairs = if v == Variant::Cl2 { split_cl2(data) } else { split_strict(data) };
    pairs.into_iter().map(|(from_line, raw)| MboxMsg { bytes: unquote(&raw, v), from_line, raw }).collect()
}

/// The mbox-internal headers mailmover may strip (MANIFEST "Normalisation", FORMATS §1.3/1.4).
pub const INTERNAL_HEADERS: &[&str] = &[
    "status",
    "x-status",
    "x-keywords",
    "x-mozilla-status",
    "x-mozilla-status2",
    "x-mozilla-keys",
    "x-uid",
    "x-imap",
    "x-imapbase",
    "content-length",
];

/// The message without the internal header fields (and their continuation lines).
pub fn strip_internal(m: &[u8]) -> Vec<u8> {
    // The header block with the line end of its last line.
    let mut hb = header_block(m).len();
    if m.get(hb..).is_some_and(|r| r.starts_with(b"\r\n")) {
        hb += 2;
    } else if m.get(hb..).is_some_and(|r| r.starts_with(b"\n")) {
        hb += 1;
    }
    let mut out = Vec::with_capacity(m.len());
    let mut skipping = false;
    let ls = lines_keepends(&m[..hb]);
    for l in ls {
        let cont = l.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if cont {
            if !skipping {
                out.extend_from_slice(l);
            }
            continue;
        }
        skipping = l.iter().position(|&b| b == b':').is_some_and(|c| {
            let name = String::from_utf8_lossy(&l[..c]).trim().to_ascii_lowercase();
            INTERNAL_HEADERS.contains(&name.as_str())
        });
        if !skipping {
            out.extend_from_slice(l);
        }
    }
    out.extend_from_slice(&m[hb..]);
    out
}

/// Flags (sorted Maildir letters) and keywords of an mbox message (FORMATS §1.3, §1.4).
pub fn mbox_flags(m: &[u8]) -> (String, Vec<String>) {
    let mut f: Vec<char> = Vec::new();
    let st = header(m, "Status").unwrap_or_default();
    let xs = header(m, "X-Status").unwrap_or_default();
    if st.contains('R') {
        f.push('S');
    }
    for (c, l) in [('A', 'R'), ('F', 'F'), ('D', 'T'), ('T', 'D')] {
        if xs.contains(c) {
            f.push(l);
        }
    }
    if let Some(v) = header(m, "X-Mozilla-Status")
        .and_then(|v| u32::from_str_radix(v.split_whitespace().next().unwrap_or(""), 16).ok())
    {
        for (bit, l) in [(1, 'S'), (2, 'R'), (4, 'F'), (8, 'T'), (0x1000, 'P')] {
            if v & bit != 0 {
                f.push(l);
            }
        }
    }
    f.sort_unstable();
    f.dedup();
    let mut kws: Vec<String> = Vec::new();
    for h in ["X-Keywords", "X-Mozilla-Keys"] {
        if let Some(v) = header(m, h) {
            kws.extend(v.split(|c: char| c.is_whitespace() || c == ',').filter(|k| !k.is_empty()).map(String::from));
        }
    }
    kws.sort();
    kws.dedup();
    (f.into_iter().collect(), kws)
}

/// Unix seconds (UTC) of an asctime From_ line date `Www Mmm dd hh:mm[:ss] [zone] yyyy`.
pub fn from_line_date(line: &[u8]) -> Option<i64> {
    let s = String::from_utf8_lossy(line);
    let toks: Vec<&str> = s.split_whitespace().collect();
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const DAY: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let i = toks.iter().position(|t| DAY.contains(t))?;
    let mon = MON.iter().position(|m| Some(m) == toks.get(i + 1))? as u32 + 1;
    let day: u32 = toks.get(i + 2)?.parse().ok()?;
    let hms: Vec<u32> = toks.get(i + 3)?.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let year: i32 = toks.get(i + 4..)?.iter().find_map(|t| if t.len() == 4 { t.parse().ok() } else { None })?;
    let d = chrono::NaiveDate::from_ymd_opt(year, mon, day)?;
    let t = d.and_hms_opt(*hms.first()?, *hms.get(1)?, hms.get(2).copied().unwrap_or(0))?;
    Some(t.and_utc().timestamp())
}

/// Sets a file's mtime (and atime).
pub fn set_mtime(p: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_file_times(p, t, t).expect("set mtime");
}

/// A simple well-formed message with `body`.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: t@example.com\nTo: u@example.com\nSubject: {subject}\nMessage-ID: <{}@example.com>\n\n{body}",
        sha256(subject.as_bytes()).get(..16).unwrap_or("")
    )
    .into_bytes()
}

/// An mbox (mboxrd quoting) of `(from_line_date, extra headers, message)` entries.
pub fn make_mbox(msgs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (date, m) in msgs {
        out.extend_from_slice(format!("From sender@example.com {date}\n").as_bytes());
        for l in lines_keepends(m) {
            let rest = &l[l.iter().position(|&c| c != b'>').unwrap_or(l.len())..];
            if rest.starts_with(b"From ") {
                out.push(b'>');
            }
            out.extend_from_slice(l);
        }
        if !m.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

/// The INBOX messages of a Maildir tree.
pub fn inbox(root: &Path) -> Vec<Msg> {
    read_maildir(root, Layout::MaildirPP).into_iter().filter(|m| m.folder == "INBOX").collect()
}

/// An Ed25519 key pair as OpenSSL writes them (PKCS#8 and SPKI PEM), the private key readable
/// by its owner only: the paths of `k{seed}.pem` and `k{seed}.pub`.
pub fn ed25519_keys(env: &TestEnv, seed: u8) -> (String, String) {
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::ed25519::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
    let k = SigningKey::from_bytes(&[seed; 32]);
    let private = env.write(&format!("k{seed}.pem"), k.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes());
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public =
        env.write(&format!("k{seed}.pub"), k.verifying_key().to_public_key_pem(LineEnding::LF).unwrap().as_bytes());
    (private.to_str().unwrap().to_string(), public.to_str().unwrap().to_string())
}

/// A Maildir `src` with one message, and an audit key `hmac.key` readable by its owner only:
/// the key's path.
pub fn audited_source(env: &TestEnv) -> String {
    for d in ["src/cur", "src/new", "src/tmp"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    env.write("src/cur/1.a:2,S", &message("a", "x\n"));
    let hmac = env.write("hmac.key", "ab".repeat(32).as_bytes());
    std::fs::set_permissions(&hmac, std::fs::Permissions::from_mode(0o600)).unwrap();
    hmac.to_str().unwrap().to_string()
}
