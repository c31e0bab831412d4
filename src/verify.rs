//! `verify`: every source message must be in the mapped target folder with the same bytes
//! (SHA-256), flags, keywords and internal date. Maildir files are read by a plain loop that
//! shares nothing with the copy path; the decision is sync's own ([`Matcher::decide`]), so
//! verify reports exactly what `sync --dry-run` would act on. Nothing is written.

use std::collections::HashSet;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Problem, Result};
use crate::flags::Flags;
use crate::folder::FolderName;
use crate::fsx::Dir;
use crate::message::Meta;
use crate::source::Opened;
use crate::spec::{Kind, Store};
use crate::store::maildir::read::{self as mdread, MaildirEntry, ScanOptions, Sub};
use crate::store::maildir::write::MaildirTarget;
use crate::store::mbox::read::{MboxFile, ReadOptions, Variant};
use crate::store::mbox::target as mbox_target;
use crate::sync::plan::{Candidate, Decision, Hash, NotMail, Planner, Rules};
use crate::sync::{Identity, SyncOptions, mapped_folders, mbox_folder_path};

#[derive(Debug, Serialize, Clone)]
pub struct Difference {
    pub folder: String,
    pub source: String,
    pub target: Option<String>,
    pub what: String,
}

#[derive(Debug, Serialize, Default)]
pub struct Verification {
    pub ok: bool,
    pub source: u64,
    pub target: u64,
    pub missing_in_target: u64,
    pub extra_in_target: u64,
    pub flag_mismatches: u64,
    pub date_mismatches: u64,
    pub differences: Vec<Difference>,
    pub errors: Vec<Problem>,
}

impl Verification {
    /// Adds another comparison's counts and differences to this one.
    pub fn absorb(&mut self, o: Verification) {
        self.source += o.source;
        self.target += o.target;
        self.missing_in_target += o.missing_in_target;
        self.extra_in_target += o.extra_in_target;
        self.flag_mismatches += o.flag_mismatches;
        self.date_mismatches += o.date_mismatches;
        self.differences.extend(o.differences);
        self.errors.extend(o.errors);
    }

    /// Settles `ok`: nothing missing, no flag or date difference, no error, no metadata difference.
    pub fn settle(&mut self) {
        self.errors.sort();
        self.errors.dedup();
        let meta = self.differences.iter().any(|d| d.folder == "metadata");
        self.ok = self.missing_in_target == 0
            && self.flag_mismatches == 0
            && self.date_mismatches == 0
            && self.errors.is_empty()
            && !meta;
    }
}

struct Msg {
    hash: Hash,
    meta: Meta,
    place: String,
    size: u64,
    not_mail: Option<NotMail>,
}

/// Hashes a Maildir message file read by a plain loop of its own (no cache probe, no
/// read-ahead, nothing shared with the copy path it checks), a block at a time: memory stays
/// flat whatever the message size. Returns the hash (as `id` defines it) and the size. `f` is
/// open already: a source's by its path, a target's through its directory's descriptor.
fn hash_plain(mut f: std::fs::File, path: &Path, id: Identity) -> std::result::Result<(Hash, u64), Problem> {
    use sha2::Digest;
    use std::io::Read;
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Err(Problem::new(path, "not a regular file"));
    }
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut size, mut last) = (0u64, None);
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Problem::new(path, crate::error::io_reason(&e))),
        };
        h.update(&buf[..n]);
        size += n as u64;
        last = Some(buf[n - 1]);
    }
    // As Identity::hash: an mbox holds a message with a final newline.
    if id == Identity::Mbox && last.is_some_and(|b| b != b'\n') {
        h.update(b"\n");
    }
    Ok((h.finalize().into(), size))
}

fn digest_opened(opened: &Opened, ropts: &ReadOptions, id: Identity, errors: &mut Vec<Problem>) -> Vec<Msg> {
    let mut out = Vec::new();
    for refs in opened.chunks(ropts) {
        let v: Vec<_> = refs
            .par_iter()
            .map(|r| -> std::result::Result<Msg, Problem> {
                let (hash, meta, place, pseudo, size) = match (opened.entry(r), opened.origin(r)) {
                    (Some(e), crate::source::Origin::File(path)) => {
                        let (hash, size) = hash_plain(open_source(&path)?, &path, id)?;
                        if size == 0 {
                            return Err(Problem::new(&path, "empty file (0 bytes) is not a message; skipped"));
                        }
                        (hash, e.meta.clone(), path.display().to_string(), false, size)
                    }
                    _ => {
                        let l = opened.load(r, ropts)?;
                        let place = match &l.origin {
                            crate::source::Origin::Mbox { path, offset, .. } => format!("{}@{offset}", path.display()),
                            crate::source::Origin::File(p) => p.display().to_string(),
                        };
                        (id.hash(&l.body.pieces()), l.meta, place, l.pseudo, l.body.len())
                    }
                };
                let not_mail = pseudo.then_some(NotMail::Pseudo);
                Ok(Msg { hash, meta, place, size, not_mail })
            })
            .collect();
        for x in v {
            match x {
                Ok(m) => out.push(m),
                Err(p) => errors.push(p),
            }
        }
    }
    out
}

/// A source message file, opened by its path: never through a link at its own name, never
/// waiting on a FIFO.
fn open_source(path: &Path) -> std::result::Result<std::fs::File, Problem> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Problem::new(path, crate::error::io_reason(&e)))
}

/// The messages of target folder `tn` at `path`. Everything of it is read through descriptors:
/// a Maildir folder opened from the target root, its `cur/` and `new/` and their files relative
/// to it; an mbox file opened in its directory, reached from the root level by level. Nothing
/// is read through a link, not even one swapped in during the run.
fn target_messages(
    dst: &Store,
    tn: &FolderName,
    path: &Path,
    single_mbox: bool,
    errors: &mut Vec<Problem>,
) -> Vec<Msg> {
    // As sync, nothing of a target folder reached through a link is read (this names the link;
    // the reads below refuse one by themselves).
    if let Some(link) = crate::fsx::link_on_the_way(&dst.path, path) {
        errors.push(Problem::new(&link, "is a symlink in the target; not read"));
        return Vec::new();
    }
    let read = if dst.kind == Kind::Mbox {
        mbox_messages(dst, tn, path, single_mbox, errors)
    } else {
        Dir::find_beneath(&dst.path, path).and_then(|d| d.map_or(Ok(Vec::new()), |d| maildir_messages(&d, errors)))
    };
    read.unwrap_or_else(|e| {
        errors.push(e.problem());
        Vec::new()
    })
}

/// A Maildir target folder's messages, as [`Opened::open`] lists a source's (a file listed
/// under two names once, one renamed meanwhile not an error), in name order.
fn maildir_messages(dir: &Dir, errors: &mut Vec<Problem>) -> Result<Vec<Msg>> {
    const CHUNK: usize = 1024;
    // A refused keyword list is none, as for a source.
    let kw = mdread::keywords_in(dir).unwrap_or_default();
    let subs = mdread::MessageDirs::open(dir, errors)?;
    let hash = |e: MaildirEntry| -> std::result::Result<((Sub, Vec<u8>), Msg), Problem> {
        let path = e.path(&dir.path);
        let (hash, size) = hash_plain(subs.open_message(&e).map_err(|err| err.problem())?, &path, Identity::Exact)?;
        if size == 0 {
            return Err(Problem::new(&path, "empty file (0 bytes) is not a message; skipped"));
        }
        let place = path.display().to_string();
        Ok(((e.sub, e.name), Msg { hash, meta: e.meta, place, size, not_mail: None }))
    };
    let mut once = HashSet::new();
    let (mut msgs, mut chunk) = (Vec::new(), Vec::with_capacity(CHUNK));
    let mut stream = subs.stream(&kw);
    loop {
        let next = stream.next();
        let done = next.is_none();
        match next {
            Some(Ok(e)) if e.ino == 0 || once.insert((e.ino, e.size, e.mtime_ns)) => chunk.push(e),
            Some(Err(p)) if p.reason != mdread::VANISHED => errors.push(p),
            _ => {}
        }
        if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
            let hashed: Vec<_> = std::mem::take(&mut chunk).into_par_iter().map(hash).collect();
            for r in hashed {
                match r {
                    Ok(m) => msgs.push(m),
                    Err(p) => errors.push(p),
                }
            }
        }
        if done {
            break;
        }
    }
    msgs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(msgs.into_iter().map(|(_, m)| m).collect())
}

/// An mbox target folder's messages: its file opened in its directory (reached from the root
/// level by level as sync reaches it; a single mbox file's directory is the admin's), under a
/// shared lock.
fn mbox_messages(
    dst: &Store,
    tn: &FolderName,
    path: &Path,
    single: bool,
    errors: &mut Vec<Problem>,
) -> Result<Vec<Msg>> {
    let place = if single {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let (Some(name), Some(dir)) = (path.file_name(), Dir::find_beneath(parent, parent)?) else {
            return Ok(Vec::new());
        };
        mbox_target::Place { dir, name: name.to_os_string(), path: path.to_path_buf() }
    } else {
        let Some(root) = Dir::find_beneath(&dst.path, &dst.path)? else { return Ok(Vec::new()) };
        match mbox_target::place(&root, tn, &|_| false, None)? {
            Some(p) => p,
            None => return Ok(Vec::new()),
        }
    };
    let Some(file) = place.dir.open_file(&place.name, false)? else { return Ok(Vec::new()) };
    let f = MboxFile::from_file_locked(file, &place.path)?;
    f.check()?;
    let ro =
        ReadOptions { variant: Variant::Auto, zone: crate::store::mbox::date::Zone::Utc, keep_internal_headers: false };
    let o = Opened::Mbox(std::sync::Arc::new(f));
    Ok(digest_opened(&o, &ro, Identity::Mbox, errors).into_iter().filter(|m| m.not_mail.is_none()).collect())
}

pub fn verify(src: &Store, dst: &Store, opts: &SyncOptions) -> Result<Verification> {
    let (pairs, problems) = mapped_folders(src, dst, opts)?;
    let mut v = Verification { errors: problems, ..Default::default() };
    let single_mbox = dst.kind == Kind::Mbox && !dst.path.is_dir();
    let bounds = if dst.kind == Kind::Maildir { crate::fsx::time_bounds(&dst.path) } else { None };
    let pool = crate::sync::pool(opts.jobs)?;
    let per_folder: Vec<(Verification, Vec<Problem>)> = pool.install(|| {
        pairs
            .par_iter()
            .map(|(sf, tn)| {
                let mut errors = Vec::new();
                let mut fv = Verification::default();
                let smsgs =
                    match Opened::open(&sf.loc, ScanOptions { follow_symlinks: opts.follow_symlinks }, &mut errors) {
                        Ok(o) => digest_opened(
                            &o,
                            &opts.read,
                            if dst.kind == Kind::Mbox { Identity::Mbox } else { Identity::Exact },
                            &mut errors,
                        ),
                        Err(e) => {
                            errors.push(e.problem());
                            return (fv, errors);
                        }
                    };
                let tpath = match dst.kind {
                    Kind::Mbox if single_mbox => dst.path.clone(),
                    Kind::Mbox => mbox_folder_path(&dst.path, tn),
                    _ => match MaildirTarget::folder_path(&dst.path, tn, opts.layout) {
                        Ok(p) => p,
                        Err(e) => {
                            errors.push(Problem::new(&dst.path, e));
                            return (fv, errors);
                        }
                    },
                };
                let tmsgs = target_messages(dst, tn, &tpath, single_mbox, &mut errors);
                let rules = Rules { filters: opts.filters.clone(), bounds, mbox: dst.kind == Kind::Mbox };
                compare(tn.as_str(), &smsgs, &tmsgs, rules, &mut fv);
                (fv, errors)
            })
            .collect()
    });
    for (fv, errs) in per_folder {
        v.absorb(fv);
        v.errors.extend(errs);
    }
    v.settle();
    Ok(v)
}

fn comparable(m: &Meta) -> (Flags, Vec<String>, u32) {
    (m.flags, m.keywords.iter().map(str::to_string).collect(), m.stray_letters)
}

/// Reports the plan sync would make ([`Planner::decide`]): a message sync would copy is
/// missing, one it would re-flag or re-date differs, one it would leave alone matches, one it
/// leaves out is not expected; target messages no source message matched are what `--mirror`
/// would delete.
fn compare(folder: &str, src: &[Msg], dst: &[Msg], rules: Rules, v: &mut Verification) {
    v.target += dst.len() as u64;
    let mbox = rules.mbox;
    let view = |m: &Meta| if mbox { m.mbox_view() } else { m.clone() };
    let mut planner = Planner::new(dst.iter().map(|t| (t.hash, view(&t.meta))), rules);
    let diff = |s: &Msg, t: Option<&Msg>, what: String| Difference {
        folder: folder.to_string(),
        source: s.place.clone(),
        target: t.map(|t| t.place.clone()),
        what,
    };
    for s in src {
        let c = Candidate { hash: Some(&s.hash), meta: &s.meta, size: s.size, not_mail: s.not_mail };
        let decision = planner.decide(c);
        let i = match decision {
            Decision::Filtered(_) | Decision::NotMail(_) => continue,
            Decision::Skip(_) => {
                v.source += 1;
                continue;
            }
            Decision::Copy => {
                v.source += 1;
                v.missing_in_target += 1;
                v.differences.push(diff(s, None, "missing in target".into()));
                continue;
            }
            Decision::UpdateFlags(i) | Decision::UpdateDate(i) => i,
        };
        v.source += 1;
        let t = &dst[i];
        let (sm, tm) = (planner.rules().as_stored(&s.meta), view(&t.meta));
        if let Decision::UpdateFlags(_) = decision {
            let (sf, tf) = (comparable(&sm), comparable(&tm));
            v.flag_mismatches += 1;
            let place = |m: &Meta| if m.goes_to_new() { " (new/)" } else { "" };
            v.differences.push(diff(
                s,
                Some(t),
                format!("flags {}{:?}{} in source, {}{:?}{} in target", sf.0, sf.1, place(&sm), tf.0, tf.1, place(&tm)),
            ));
        }
        if sm.date != tm.date {
            v.date_mismatches += 1;
            v.differences.push(diff(s, Some(t), format!("internal date {} in source, {} in target", sm.date, tm.date)));
        }
    }
    for (i, _) in planner.unmatched() {
        v.extra_in_target += 1;
        v.differences.push(Difference {
            folder: folder.to_string(),
            source: String::new(),
            target: Some(dst[i].place.clone()),
            what: "only in target".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: verify reads a target folder through the folder opened once. The folder
    /// swapped for a link to another folder after it was opened: the messages read are the
    /// opened folder's, under its path, and a file swapped for a link is refused.
    #[test]
    fn target_folders_are_read_through_the_opened_folder() {
        let t = tempfile::tempdir().unwrap();
        let (f, moved, other) = (t.path().join("f"), t.path().join("moved"), t.path().join("other"));
        for (d, name, body) in [(&f, "1.M1P1.h:2,S", "hello"), (&other, "2.M1P1.h:2,S", "planted")] {
            std::fs::create_dir_all(d.join("cur")).unwrap();
            std::fs::create_dir_all(d.join("new")).unwrap();
            std::fs::write(d.join("cur").join(name), body).unwrap();
        }
        std::fs::write(f.join("new/0.M1P1.h"), "first").unwrap();
        let dir = Dir::open_root(&f).unwrap();
        std::fs::rename(&f, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &f).unwrap();
        let mut errors = Vec::new();
        let msgs = maildir_messages(&dir, &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let got: Vec<(&str, Hash)> = msgs.iter().map(|m| (m.place.as_str(), m.hash)).collect();
        let (a, b) = (f.join("new/0.M1P1.h"), f.join("cur/1.M1P1.h:2,S"));
        let want = [
            (a.to_str().unwrap(), Identity::Exact.hash(&[b"first"])),
            (b.to_str().unwrap(), Identity::Exact.hash(&[b"hello"])),
        ];
        assert_eq!(got, want, "new/ then cur/, the opened folder's bytes");
        std::fs::remove_file(moved.join("cur/1.M1P1.h:2,S")).unwrap();
        std::os::unix::fs::symlink(other.join("cur/2.M1P1.h:2,S"), moved.join("cur/1.M1P1.h:2,S")).unwrap();
        let mut errors = Vec::new();
        assert_eq!(maildir_messages(&dir, &mut errors).unwrap().len(), 1);
        assert!(errors.iter().any(|p| p.reason.contains("symlink")), "{errors:?}");
    }

    /// The plain loop's hash is the hash sync computes, for both identities.
    #[test]
    fn plain_hash_is_the_identity_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for data in [&b"Subject: a\n\nx\n"[..], b"Subject: a\n\nno newline", b"x", &big] {
            let p = tmp.path().join("m");
            std::fs::write(&p, data).unwrap();
            for id in [Identity::Exact, Identity::Mbox] {
                assert_eq!(
                    hash_plain(open_source(&p).unwrap(), &p, id).unwrap(),
                    (id.hash(&[data]), data.len() as u64)
                );
            }
        }
    }
}
