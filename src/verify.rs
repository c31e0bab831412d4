//! `verify`: every source message must be in the mapped target folder with the same bytes
//! (SHA-256), flags, keywords and internal date. The same matching as sync, reported instead
//! of executed; nothing is written.

use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Problem, Result};
use crate::flags::Flags;
use crate::message::Meta;
use crate::plan::Hash;
use crate::source::Opened;
use crate::store::maildir::read::ScanOptions;
use crate::store::maildir::write::MaildirTarget;
use crate::store::mbox::read::{ReadOptions, Variant};
use crate::store::{Kind, Location, Store};
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
}

fn digest_opened(opened: &Opened, ropts: &ReadOptions, id: Identity, errors: &mut Vec<Problem>) -> Vec<Msg> {
    let mut out = Vec::new();
    for refs in opened.chunks(ropts) {
        let v: Vec<_> = refs
            .par_iter()
            .map(|r| {
                opened.load(r, ropts).map(|l| {
                    let place = match &l.origin {
                        crate::source::Origin::Mbox { path, offset, .. } => format!("{}@{offset}", path.display()),
                        crate::source::Origin::File(p) => p.display().to_string(),
                    };
                    (l.pseudo, Msg { hash: id.hash(&l.body.pieces()), meta: l.meta, place })
                })
            })
            .collect();
        for x in v {
            match x {
                Ok((false, m)) => out.push(m),
                Ok((true, _)) => {}
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
    match Opened::open(&loc, ScanOptions::default(), errors) {
        Ok(o) => digest_opened(&o, &ro, if dst.kind == Kind::Mbox { Identity::Mbox } else { Identity::Exact }, errors),
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
                compare(tn.as_str(), &smsgs, &tmsgs, dst.kind == Kind::Mbox, &mut fv);
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

fn comparable(m: &Meta, mbox_target: bool) -> (Flags, Vec<String>, u32) {
    let mut f = m.flags;
    let mut stray = m.stray_letters;
    if mbox_target {
        // mbox has no letter for P and no place for unnamed keyword letters.
        f.remove(Flags::PASSED);
        stray = 0;
    }
    (f, m.keywords.iter().map(str::to_string).collect(), stray)
}

fn compare(folder: &str, src: &[Msg], dst: &[Msg], mbox_target: bool, v: &mut Verification) {
    v.source += src.len() as u64;
    v.target += dst.len() as u64;
    let mut by_hash: std::collections::HashMap<Hash, Vec<usize>> = std::collections::HashMap::new();
    for (i, m) in dst.iter().enumerate() {
        by_hash.entry(m.hash).or_default().push(i);
    }
    let mut used = vec![false; dst.len()];
    let diff = |s: &Msg, t: Option<&Msg>, what: String| Difference {
        folder: folder.to_string(),
        source: s.place.clone(),
        target: t.map(|t| t.place.clone()),
        what,
    };
    for s in src {
        let cands: Vec<usize> =
            by_hash.get(&s.hash).map(|c| c.iter().copied().filter(|&i| !used[i]).collect()).unwrap_or_default();
        let sf = comparable(&s.meta, mbox_target);
        let exact = cands
            .iter()
            .copied()
            .find(|&i| comparable(&dst[i].meta, mbox_target) == sf && (dst[i].meta.date - s.meta.date).abs() <= 1);
        let Some(i) = exact.or_else(|| cands.first().copied()) else {
            v.missing_in_target += 1;
            v.differences.push(diff(s, None, "missing in target".into()));
            continue;
        };
        used[i] = true;
        let t = &dst[i];
        let tf = comparable(&t.meta, mbox_target);
        if tf != sf {
            v.flag_mismatches += 1;
            v.differences.push(diff(
                s,
                Some(t),
                format!("flags {}{:?} in source, {}{:?} in target", sf.0, sf.1, tf.0, tf.1),
            ));
        }
        if (t.meta.date - s.meta.date).abs() > 1 {
            v.date_mismatches += 1;
            v.differences.push(diff(
                s,
                Some(t),
                format!("internal date {} in source, {} in target", s.meta.date, t.meta.date),
            ));
        }
    }
    for (i, t) in dst.iter().enumerate() {
        if !used[i] {
            v.extra_in_target += 1;
            v.differences.push(Difference {
                folder: folder.to_string(),
                source: String::new(),
                target: Some(t.place.clone()),
                what: "only in target".into(),
            });
        }
    }
}
