//! `verify`: every source message must be in the mapped target folder with the same bytes
//! (SHA-256), flags, keywords and internal date. Maildir files are read by a plain loop that
//! shares nothing with the copy path; the decision is sync's own (the same join of the same
//! planner, [`join`]), so verify reports exactly what `sync --dry-run` would act on. Both sides
//! are sorted by hash through [`crate::spill`], so memory does not grow with the folders.
//! Nothing is written.

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
use crate::spill::Sorter;
use crate::store::maildir::read::{self as mdread, MaildirEntry, ScanOptions};
use crate::store::maildir::write::MaildirTarget;
use crate::store::mbox::read::{MboxFile, ReadOptions};
use crate::store::mbox::target as mbox_target;
use crate::sync::join::{Held, Outcome, Wanted, join};
use crate::sync::plan::{Candidate, Decision, Hash, NotMail, Planner, Rules};
use crate::sync::{Identity, SyncOptions, mapped_folders, mbox_folder_path};

#[derive(Debug, Serialize, Clone)]
pub struct Difference {
    pub folder: String,
    /// The source message or file; None for a message only in the target.
    pub source: Option<String>,
    pub target: Option<String>,
    pub what: String,
}

/// What a comparison counted: of a whole run, or of one folder.
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub source: u64,
    pub target: u64,
    pub missing_in_target: u64,
    pub extra_in_target: u64,
    pub flag_mismatches: u64,
    pub date_mismatches: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.source += o.source;
        self.target += o.target;
        self.missing_in_target += o.missing_in_target;
        self.extra_in_target += o.extra_in_target;
        self.flag_mismatches += o.flag_mismatches;
        self.date_mismatches += o.date_mismatches;
    }
}

/// One folder's counts, for the per-folder table.
#[derive(Debug, Serialize, Default, Clone, PartialEq, Eq)]
pub struct FolderCounts {
    pub folder: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Serialize, Default)]
pub struct Verification {
    pub ok: bool,
    #[serde(flatten)]
    pub counts: Counts,
    pub differences: Vec<Difference>,
    pub errors: Vec<Problem>,
    /// Each folder compared, by target folder name.
    pub folders: Vec<FolderCounts>,
    /// The options file of the sync whose options were used (verify was given none).
    pub options_from: Option<String>,
}

impl Verification {
    /// Adds another comparison's counts and differences to this one.
    pub fn absorb(&mut self, o: Verification) {
        self.counts.add(&o.counts);
        self.differences.extend(o.differences);
        self.errors.extend(o.errors);
        self.folders.extend(o.folders);
    }

    /// Records `self`'s counts as those of `folder` (a comparison of one folder pair).
    pub fn name_folder(&mut self, folder: &str) {
        self.folders = vec![FolderCounts { folder: folder.to_string(), counts: self.counts }];
    }

    /// The human report: a table of the folders, then the differences folder by folder, the
    /// errors, and the verdict.
    pub fn write_human(&self, o: &mut impl std::io::Write) -> std::io::Result<()> {
        use crate::folder::sanitize;
        let mut folders = self.folders.clone();
        folders.sort_by(|a, b| a.folder.cmp(&b.folder));
        let width = folders.iter().map(|f| sanitize(&f.folder).chars().count()).max().unwrap_or(6).max(6);
        if !folders.is_empty() {
            writeln!(
                o,
                "{:<width$}  {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}",
                "folder", "source", "target", "missing", "extra", "flags", "dates"
            )?;
            for f in &folders {
                let c = &f.counts;
                writeln!(
                    o,
                    "{:<width$}  {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}",
                    sanitize(&f.folder),
                    c.source,
                    c.target,
                    c.missing_in_target,
                    c.extra_in_target,
                    c.flag_mismatches,
                    c.date_mismatches
                )?;
            }
        }
        let mut diffs: Vec<&Difference> = self.differences.iter().collect();
        diffs.sort_by(|a, b| a.folder.cmp(&b.folder));
        let mut last: Option<&str> = None;
        for d in diffs {
            if last != Some(d.folder.as_str()) {
                writeln!(o, "{}:", sanitize(&d.folder))?;
                last = Some(d.folder.as_str());
            }
            match (&d.source, &d.target) {
                (Some(s), Some(t)) => writeln!(o, "  {}: {} -> {}", d.what, sanitize(s), sanitize(t))?,
                (Some(p), None) | (None, Some(p)) => writeln!(o, "  {}: {}", d.what, sanitize(p))?,
                (None, None) => writeln!(o, "  {}", d.what)?,
            }
        }
        for e in &self.errors {
            writeln!(o, "error: {}", sanitize(&e.to_string()))?;
        }
        let c = &self.counts;
        writeln!(
            o,
            "{}: source {} target {} missing {} extra {} flag mismatches {} date mismatches {}",
            if self.ok { "OK" } else { "DIFFERENT" },
            c.source,
            c.target,
            c.missing_in_target,
            c.extra_in_target,
            c.flag_mismatches,
            c.date_mismatches
        )
    }

    /// Settles `ok`: nothing missing, no flag or date difference, no error, no metadata difference.
    pub fn settle(&mut self) {
        self.errors.sort();
        self.errors.dedup();
        let meta = self.differences.iter().any(|d| d.folder == "metadata");
        self.ok = self.counts.missing_in_target == 0
            && self.counts.flag_mismatches == 0
            && self.counts.date_mismatches == 0
            && self.errors.is_empty()
            && !meta;
    }
}

struct Msg {
    hash: Hash,
    /// Its header key (`--identity headers`).
    key: Option<Hash>,
    meta: Meta,
    place: String,
    size: u64,
    not_mail: Option<NotMail>,
}

/// Hashes a Maildir message file read by a plain loop of its own (no cache probe, no
/// read-ahead, nothing shared with the copy path it checks), a block at a time: memory stays
/// flat whatever the message size. Returns the hash (as `id` defines it), the size and, when
/// `keyed`, the header key. `f` is open already: a source's by its path, a target's through its
/// directory's descriptor.
fn hash_plain(mut f: std::fs::File, path: &Path, id: Identity, keyed: bool) -> std::result::Result<Digested, Problem> {
    use sha2::Digest;
    use std::io::Read;
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Err(Problem::refused(path, "not a regular file"));
    }
    let mut h = sha2::Sha256::new();
    let (mut cut, mut mh) = (crate::store::mbox::flavour::Cut::default(), crate::sync::MboxHasher::default());
    let mut keyer = keyed.then(crate::sync::Keyer::default);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Problem::io(path, &e)),
        };
        match id {
            Identity::Exact => h.update(&buf[..n]),
            // As Identity::hash: without the mbox's own fields, with a final newline.
            Identity::Mbox => cut.feed(&buf[..n], &mut |_, s| mh.update(s)),
        }
        if let Some(k) = keyer.as_mut() {
            k.feed(&buf[..n]);
        }
        size += n as u64;
    }
    let hash = match id {
        Identity::Exact => h.finalize().into(),
        Identity::Mbox => {
            cut.finish(&mut |_, s| mh.update(s));
            mh.finish()
        }
    };
    Ok((hash, size, keyer.and_then(crate::sync::Keyer::finish)))
}

/// A message's hash, size and header key.
type Digested = (Hash, u64, Option<Hash>);

/// Reads and hashes every message of `opened`, a chunk at a time, handing each to `take`.
fn digest_opened(
    opened: &Opened,
    ropts: &ReadOptions,
    (id, keyed): (Identity, bool),
    errors: &mut Vec<Problem>,
    take: &mut dyn FnMut(Msg) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for refs in opened.chunks(ropts) {
        let v: Vec<_> = refs
            .par_iter()
            .map(|r| -> std::result::Result<Msg, Problem> {
                let (hash, meta, place, pseudo, size, key) = match (opened.entry(r), opened.origin(r)) {
                    (Some(e), crate::source::Origin::File(path)) => {
                        let (hash, size, key) = hash_plain(open_source(&path)?, &path, id, keyed)?;
                        if size == 0 {
                            return Err(Problem::of(
                                crate::error::Kind::Malformed,
                                &path,
                                "empty file (0 bytes) is not a message; skipped",
                            ));
                        }
                        (hash, e.meta.clone(), path.display().to_string(), false, size, key)
                    }
                    _ => {
                        let l = opened.load(r, ropts)?;
                        let place = match &l.origin {
                            crate::source::Origin::Mbox { path, offset, .. } => format!("{}@{offset}", path.display()),
                            crate::source::Origin::File(p) => p.display().to_string(),
                        };
                        let pieces = l.body.pieces();
                        let key = keyed.then(|| crate::sync::key_of(&pieces)).flatten();
                        (id.hash(&pieces), l.meta, place, l.pseudo, l.body.len(), key)
                    }
                };
                let not_mail = pseudo.then_some(NotMail::Pseudo);
                Ok(Msg { hash, key, meta, place, size, not_mail })
            })
            .collect();
        for x in v {
            match x {
                Ok(m) => take(m)?,
                Err(p) => errors.push(p),
            }
        }
        // The mapped pages of an mbox up to here are read.
        opened.release(&refs);
    }
    Ok(())
}

/// A source message file, opened by its path: never through a link at its own name, never
/// waiting on a FIFO.
fn open_source(path: &Path) -> std::result::Result<std::fs::File, Problem> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Problem::io(path, &e))
}

/// The messages of target folder `tn` at `path`. Everything of it is read through descriptors:
/// a Maildir folder opened from the target root, its `cur/` and `new/` and their files relative
/// to it; an mbox file opened in its directory, reached from the root level by level. Nothing
/// is read through a link, not even one swapped in during the run.
fn target_messages(
    (dst, root): (&Store, Option<&Dir>),
    tn: &FolderName,
    path: &Path,
    (single_mbox, flavour, layout, keyed): (
        bool,
        Option<crate::store::mbox::flavour::Flavour>,
        crate::store::maildir::layout::Layout,
        bool,
    ),
    errors: &mut Vec<Problem>,
    take: &mut dyn FnMut(Msg) -> std::io::Result<()>,
) {
    // As sync, nothing of a target folder reached through a link is read (this names the link;
    // the reads below refuse one by themselves).
    if let Some(link) = crate::fsx::link_on_the_way(&dst.path, path) {
        errors.push(Problem::refused(&link, "is a symlink in the target; not read"));
        return;
    }
    let read = match root {
        _ if single_mbox => mbox_messages(None, tn, path, (flavour, layout, keyed), errors, take),
        None => Ok(()),
        Some(root) if dst.kind == Kind::Mbox => {
            mbox_messages(Some(root), tn, path, (flavour, layout, keyed), errors, take)
        }
        Some(root) => {
            root.find_below(path).and_then(|d| d.map_or(Ok(()), |d| maildir_messages(&d, keyed, errors, take)))
        }
    };
    if let Err(e) = read {
        errors.push(e.problem());
    }
}

/// A Maildir target folder's messages, in the order its directories yield them (as sync
/// indexes a target), each handed to `take`.
fn maildir_messages(
    dir: &Dir,
    keyed: bool,
    errors: &mut Vec<Problem>,
    take: &mut dyn FnMut(Msg) -> std::io::Result<()>,
) -> Result<()> {
    const CHUNK: usize = 1024;
    // A refused keyword list is none, as for a source.
    let kw = mdread::keywords_in(dir).unwrap_or_default();
    let subs = mdread::MessageDirs::open(dir, errors)?;
    let hash = |e: MaildirEntry| -> std::result::Result<Msg, Problem> {
        let path = e.path(&dir.path);
        let opened = subs.open_message(&e).map_err(|err| err.problem())?;
        let (hash, size, key) = hash_plain(opened, &path, Identity::Exact, keyed)?;
        if size == 0 {
            return Err(Problem::of(
                crate::error::Kind::Malformed,
                &path,
                "empty file (0 bytes) is not a message; skipped",
            ));
        }
        let place = path.display().to_string();
        Ok(Msg { hash, key, meta: e.meta, place, size, not_mail: None })
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut stream = subs.stream(&kw);
    loop {
        let next = stream.next();
        let done = next.is_none();
        match next {
            Some(Ok(e)) => chunk.push(e),
            Some(Err(p)) if p.kind != crate::error::Kind::Vanished => errors.push(p),
            _ => {}
        }
        if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
            let hashed: Vec<_> = std::mem::take(&mut chunk).into_par_iter().map(hash).collect();
            for r in hashed {
                match r {
                    Ok(m) => take(m).map_err(|e| crate::error::Error::Io { path: dir.path.clone(), source: e })?,
                    Err(p) => errors.push(p),
                }
            }
        }
        if done {
            return Ok(());
        }
    }
}

/// An mbox target folder's messages: its file opened in its directory (reached from the opened
/// root level by level as sync reaches it; `None`: a single mbox file, whose directory is the
/// admin's), under a shared lock.
fn mbox_messages(
    root: Option<&Dir>,
    tn: &FolderName,
    path: &Path,
    (explicit, layout, keyed): (
        Option<crate::store::mbox::flavour::Flavour>,
        crate::store::maildir::layout::Layout,
        bool,
    ),
    errors: &mut Vec<Problem>,
    take: &mut dyn FnMut(Msg) -> std::io::Result<()>,
) -> Result<()> {
    let place = if let Some(root) = root {
        match mbox_target::place(root, tn, (mbox_target::MboxLayout::of(layout), &|_| false), None)? {
            Some(p) => p,
            None => return Ok(()),
        }
    } else {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let (Some(name), Some(dir)) = (path.file_name(), Dir::find_beneath(parent, parent)?) else {
            return Ok(());
        };
        mbox_target::Place { dir, name: name.to_os_string(), path: path.to_path_buf(), fallback: None }
    };
    let Some(file) = place.dir.open_file(&place.name, false)? else { return Ok(()) };
    let f = MboxFile::from_file_locked(file, &place.path)?;
    f.check()?;
    // Read as sync reads it: in the flavour it was written in (the one named when that is
    // not known).
    let flavour = crate::sync::existing_flavour(&place, &f).0.or(explicit);
    let ro = crate::sync::target_mbox_read_options(flavour);
    let o = Opened::Mbox(std::sync::Arc::new(f));
    let mut keep = |m: Msg| if m.not_mail.is_none() { take(m) } else { Ok(()) };
    digest_opened(&o, &ro, (Identity::Mbox, keyed), errors, &mut keep)
        .map_err(|e| crate::error::Error::Io { path: place.path.clone(), source: e })
}

pub fn verify(src: &Store, dst: &Store, opts: &SyncOptions) -> Result<Verification> {
    verify_with(src, dst, opts, &crate::events::Discard)
}

/// [`verify`], telling `rec` how far it is (folders, and each source message read).
pub fn verify_with(
    src: &Store,
    dst: &Store,
    opts: &SyncOptions,
    rec: &dyn crate::events::Recorder,
) -> Result<Verification> {
    use crate::events::Event;
    let (pairs, problems) = mapped_folders(src, dst, opts)?;
    rec.record(Event::Folders { total: pairs.len() as u64 });
    let mut v = Verification { errors: problems, ..Default::default() };
    let single_mbox = dst.kind == Kind::Mbox && !dst.path.is_dir();
    let bounds = if dst.kind == Kind::Maildir { crate::fsx::time_bounds(&dst.path) } else { None };
    // The target root opened once: every folder is reached from it, not from its path again.
    let root = match single_mbox {
        true => None,
        false => Dir::find_beneath(&dst.path, &dst.path).unwrap_or_else(|e| {
            v.errors.push(e.problem());
            None
        }),
    };
    let pool = crate::sync::pool(opts.jobs)?;
    let per_folder: Vec<(Verification, Vec<Problem>)> = pool.install(|| {
        pairs
            .par_iter()
            .map(|(sf, tn)| {
                let mut errors = Vec::new();
                let mut fv = Verification::default();
                let rules = Rules { filters: opts.filters.clone(), bounds, mbox: dst.kind == Kind::Mbox };
                let headers = opts.identity == crate::sync::IdentityBy::Headers;
                let mut sources = Sources::new(rules.clone());
                let read =
                    match Opened::open(&sf.loc, ScanOptions { follow_symlinks: opts.follow_symlinks }, &mut errors) {
                        Ok(o) => {
                            let (bytes, messages) = match &o {
                                Opened::Mbox(f) => (f.len(), None),
                                Opened::Maildir { listed, .. } => {
                                    listed.as_ref().map_or((0, None), |l| (l.bytes, Some(l.count)))
                                }
                            };
                            rec.record(Event::Discovered { folder: tn.clone(), bytes, messages });
                            let id = if dst.kind == Kind::Mbox { Identity::Mbox } else { Identity::Exact };
                            digest_opened(&o, &opts.read, (id, headers), &mut errors, &mut |m| {
                                rec.record(Event::Progress { bytes: m.size });
                                sources.take(m)
                            })
                        }
                        Err(e) => {
                            errors.push(e.problem());
                            return (fv, errors);
                        }
                    };
                if let Err(e) = read {
                    errors.push(Problem::new(sf.loc.path(), spilled(&e)));
                    return (fv, errors);
                }
                let tpath = match dst.kind {
                    Kind::Mbox if single_mbox => dst.path.clone(),
                    Kind::Mbox => mbox_folder_path(&dst.path, tn, opts.layout),
                    _ => match MaildirTarget::folder_path(&dst.path, tn, opts.layout) {
                        Ok(p) => p,
                        Err(e) => {
                            errors.push(Problem::new(&dst.path, e));
                            return (fv, errors);
                        }
                    },
                };
                let mbox = rules.mbox;
                let mut targets = Sorter::new();
                let mut target_error = None;
                target_messages(
                    (dst, root.as_ref()),
                    tn,
                    &tpath,
                    (single_mbox, opts.mbox_format, opts.layout, headers),
                    &mut errors,
                    &mut |m| {
                        let meta = if mbox { m.meta.mbox_view() } else { m.meta };
                        let idx = fv.counts.target;
                        fv.counts.target += 1;
                        let entry = m.place.into_bytes();
                        targets.push(Held { hash: m.hash, idx, meta, entry, key: m.key }).inspect_err(|e| {
                            target_error.get_or_insert_with(|| spilled(e));
                        })
                    },
                );
                if let Some(why) = target_error {
                    errors.push(Problem::new(&tpath, why));
                    return (fv, errors);
                }
                if let Err(e) = compare(tn.as_str(), sources, targets, (rules, headers), &mut fv) {
                    errors.push(Problem::new(&tpath, spilled(&e)));
                }
                fv.name_folder(tn.as_str());
                rec.record(Event::FolderDone { folder: tn.clone() });
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

fn spilled(e: &std::io::Error) -> String {
    format!("the comparison could not be kept in temporary files: {}", crate::error::io_reason(e))
}

/// A source folder's messages as verify compares them: those sync leaves out (filters, not
/// mail) set aside, the others sorted by hash for the join, with their place.
struct Sources {
    planner: Planner,
    sorted: Sorter<Wanted>,
    seq: u64,
}

impl Sources {
    fn new(rules: Rules) -> Sources {
        Sources { planner: Planner::new(Vec::<(Hash, Meta)>::new(), rules), sorted: Sorter::new(), seq: 0 }
    }

    fn take(&mut self, m: Msg) -> std::io::Result<()> {
        let c = Candidate { hash: Some(&m.hash), meta: &m.meta, size: m.size, not_mail: m.not_mail };
        if !matches!(self.planner.decide(c), Decision::Copy) {
            return Ok(());
        }
        self.seq += 1;
        self.sorted.push(Wanted {
            hash: m.hash,
            seq: self.seq,
            meta: m.meta,
            place: m.place.into_bytes(),
            cached: false,
            key: m.key,
            content: None,
            by_headers: false,
        })
    }
}

fn comparable(m: &Meta) -> (Flags, Vec<String>) {
    (m.flags, m.keywords.iter().map(str::to_string).collect())
}

/// What verify makes of each decision of the join.
struct Report<'r> {
    folder: &'r str,
    rules: &'r Rules,
    v: &'r mut Verification,
    /// Differences with the source message's place in the folder, put back in order after.
    found: Vec<(u64, Difference)>,
    extra: Vec<(u64, Difference)>,
}

impl Outcome for Report<'_> {
    fn decided(&mut self, s: Wanted, decision: Decision, t: Option<&Held>) -> std::io::Result<()> {
        self.v.counts.source += 1;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let diff = |t: Option<&Held>, what: String| Difference {
            folder: self.folder.to_string(),
            source: Some(text(&s.place)),
            target: t.map(|t| text(&t.entry)),
            what,
        };
        let t = match (decision, t) {
            (Decision::Copy, _) => {
                self.v.counts.missing_in_target += 1;
                self.found.push((s.seq, diff(None, "missing in target".into())));
                return Ok(());
            }
            (Decision::UpdateFlags(_) | Decision::UpdateDate(_), Some(t)) => t,
            _ => return Ok(()),
        };
        let (sm, tm) = (self.rules.as_stored(&s.meta), &t.meta);
        if let Decision::UpdateFlags(_) = decision {
            let (sf, tf) = (comparable(&sm), comparable(tm));
            self.v.counts.flag_mismatches += 1;
            let place = |m: &Meta| if m.goes_to_new() { " (new/)" } else { "" };
            let what =
                format!("flags {}{:?}{} in source, {}{:?}{} in target", sf.0, sf.1, place(&sm), tf.0, tf.1, place(tm));
            self.found.push((s.seq, diff(Some(t), what)));
        }
        if sm.date != tm.date {
            self.v.counts.date_mismatches += 1;
            let what = format!("internal date {} in source, {} in target", sm.date, tm.date);
            self.found.push((s.seq, diff(Some(t), what)));
        }
        Ok(())
    }

    fn unmatched(&mut self, t: Held) -> std::io::Result<()> {
        self.v.counts.extra_in_target += 1;
        self.extra.push((
            t.idx,
            Difference {
                folder: self.folder.to_string(),
                source: None,
                target: Some(String::from_utf8_lossy(&t.entry).into_owned()),
                what: "only in target".into(),
            },
        ));
        Ok(())
    }
}

/// Reports the plan sync would make (the same join of the same planner): a message sync would
/// copy is missing, one it would re-flag or re-date differs, one it would leave alone matches,
/// one it leaves out is not expected; target messages no source message matched are what
/// `--mirror` would delete.
fn compare(
    folder: &str,
    src: Sources,
    dst: Sorter<Held>,
    (rules, headers): (Rules, bool),
    v: &mut Verification,
) -> std::io::Result<()> {
    let (src, dst) = (src.sorted.sorted()?, dst.sorted()?);
    // As sync pairs them (every key was taken as the messages were read).
    let src =
        if headers { crate::sync::pair_by_headers(&src, dst.iter(), &mut |_| None, &mut |_| None)?.0 } else { src };
    let mut r = Report { folder, rules: &rules, v, found: Vec::new(), extra: Vec::new() };
    join(src.iter(), dst.iter(), std::iter::empty(), &rules, &mut r)?;
    let Report { mut found, mut extra, v, .. } = r;
    found.sort_by_key(|(seq, _)| *seq);
    extra.sort_by_key(|(idx, _)| *idx);
    v.differences.extend(found.into_iter().chain(extra).map(|(_, d)| d));
    Ok(())
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
        let mut msgs = Vec::new();
        maildir_messages(&dir, false, &mut errors, &mut |m| {
            msgs.push(m);
            Ok(())
        })
        .unwrap();
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
        let mut n = 0;
        maildir_messages(&dir, false, &mut errors, &mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
        assert!(errors.iter().any(|p| p.reason.contains("symlink")), "{errors:?}");
    }

    /// The plain loop's hash and header key are those sync computes, for both identities.
    #[test]
    fn plain_hash_is_the_identity_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let mut big: Vec<u8> = b"Message-ID: <big@x>\nDate: Mon, 2 Jan 2006 15:04:05 +0000\n\n".to_vec();
        big.extend((0..3_000_000u32).map(|i| (i % 251) as u8));
        for data in [&b"Subject: a\n\nx\n"[..], b"Subject: a\n\nno newline", b"x", &big] {
            let p = tmp.path().join("m");
            std::fs::write(&p, data).unwrap();
            for id in [Identity::Exact, Identity::Mbox] {
                assert_eq!(
                    hash_plain(open_source(&p).unwrap(), &p, id, true).unwrap(),
                    (id.hash(&[data]), data.len() as u64, crate::sync::key_of(&[data]))
                );
                assert_eq!(hash_plain(open_source(&p).unwrap(), &p, id, false).unwrap().2, None);
            }
        }
        assert!(crate::sync::key_of(&[&big]).is_some());
    }
}
