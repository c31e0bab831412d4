//! `verify`: every source message must be in the mapped target folder with the same bytes
//! (SHA-256), flags, keywords and internal date. Maildir files are read by a plain loop that
//! shares nothing with the copy path; the decision is sync's own ([`Matcher::decide`]), so
//! verify reports exactly what `sync --dry-run` would act on. Nothing is written.

use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Problem, Result};
use crate::flags::Flags;
use crate::message::Meta;
use crate::source::Opened;
use crate::spec::{Kind, Store};
use crate::store::Location;
use crate::store::maildir::read::ScanOptions;
use crate::store::maildir::write::MaildirTarget;
use crate::store::mbox::read::{ReadOptions, Variant};
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
/// flat whatever the message size. Returns the hash (as `id` defines it) and the size.
fn hash_plain(path: &Path, id: Identity) -> std::result::Result<(Hash, u64), Problem> {
    use sha2::Digest;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Problem::new(path, crate::error::io_reason(&e)))?;
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
                        let (hash, size) = hash_plain(&path, id)?;
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

fn target_messages(dst: &Store, path: &Path, errors: &mut Vec<Problem>) -> Vec<Msg> {
    let ro =
        ReadOptions { variant: Variant::Auto, zone: crate::store::mbox::date::Zone::Utc, keep_internal_headers: false };
    let loc = if dst.kind == Kind::Mbox {
        Location::MboxFile(path.to_path_buf())
    } else {
        Location::Maildir(path.to_path_buf())
    };
    if !path.exists() {
        return Vec::new();
    }
    // As sync, nothing of a target folder reached through a link is read.
    if let Some(link) = crate::fsx::link_on_the_way(&dst.path, path) {
        errors.push(Problem::new(&link, "is a symlink in the target; not read"));
        return Vec::new();
    }
    match Opened::open(&loc, ScanOptions::default(), errors) {
        Ok(o) => {
            let id = if dst.kind == Kind::Mbox { Identity::Mbox } else { Identity::Exact };
            digest_opened(&o, &ro, id, errors).into_iter().filter(|m| m.not_mail.is_none()).collect()
        }
        Err(e) => {
            errors.push(e.problem());
            Vec::new()
        }
    }
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
                let tmsgs = target_messages(dst, &tpath, &mut errors);
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

    /// The plain loop's hash is the hash sync computes, for both identities.
    #[test]
    fn plain_hash_is_the_identity_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for data in [&b"Subject: a\n\nx\n"[..], b"Subject: a\n\nno newline", b"x", &big] {
            let p = tmp.path().join("m");
            std::fs::write(&p, data).unwrap();
            for id in [Identity::Exact, Identity::Mbox] {
                assert_eq!(hash_plain(&p, id).unwrap(), (id.hash(&[data]), data.len() as u64));
            }
        }
    }
}
