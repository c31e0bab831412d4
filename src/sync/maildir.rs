//! Writing a folder into a Maildir target: staged into tmp/, synced in batches, put in
//! place; flag updates, deletions, the record of copies and the caches.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::by_headers;
use super::choose_deletions;
use super::fate::Fate;
use super::fate::tally;
use super::fate::{account, candidate, settled};
use super::join::{Held, Outcome, Wanted, join};
use super::load::load_chunk;
use super::load::{Feed, InMemory, Prepared};
use super::mbox::CHANGED;
use super::plan::storable_date;
use super::plan::{Identity, IdentityBy};
use super::planned::{Decided, Place};
use super::{FolderJob, SyncOptions};
use crate::deletion::{self, Deleted, Deletion};
use crate::error::{Error, Problem, Result};
use crate::events::{Event, Recorder};
use crate::folder::FolderName;
use crate::fsx;
use crate::interrupt;
use crate::message::Meta;
use crate::report::FolderOutcome;
use crate::source::{self, Body, Loaded, Opened, Ref};
use crate::spill::{Sorted, Sorter};
use crate::store::maildir::layout::{self};
use crate::store::maildir::read::{self as mdread, MaildirEntry};
use crate::store::maildir::uidlist::{self, UidLines};
use crate::store::maildir::write::{FolderWriter, MaildirTarget, Staged};
use crate::sync::plan::{Decision, Hash, Planner, Rules};
use crate::target_index;

/// A cache that cannot be started is a warning: the run goes on without it.
pub(super) fn cache_writer(
    c: Result<target_index::CacheWriter>,
    warnings: &mut Vec<Problem>,
) -> Option<target_index::CacheWriter> {
    c.map_err(|e| warnings.push(e.problem())).ok()
}

/// Where a folder goes in a Maildir target.
pub(super) struct MaildirPlace<'t> {
    pub(super) root: &'t Path,
    /// The root opened at the start (`None`: a dry run's target that is not there): folders
    /// are reached from it, not from the root's path again.
    pub(super) root_dir: Option<&'t fsx::Dir>,
    pub(super) writer: Option<&'t MaildirTarget>,
    pub(super) bounds: Option<(i64, i64)>,
}

/// A date the target's file system cannot store becomes the nearest one it can, said per
pub(super) fn clamp_dates(prepared: &mut [Prepared<'_>], bounds: Option<(i64, i64)>, out: &mut FolderOutcome) {
    let show = |t: i64| chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.to_rfc3339());
    for p in prepared.iter_mut() {
        let d = p.loaded.meta.date;
        let c = storable_date(d, bounds);
        if c != d {
            out.warnings.push(p.loaded.origin.problem(format!(
                "internal date {} is outside what the target file system stores; stored as {}",
                show(d),
                show(c)
            )));
            p.loaded.meta.date = c;
        }
    }
}

/// A source folder into the Maildir target folder `folder`, opened by [`TargetFolder::open`].
pub(super) fn to_maildir(
    opened: &Opened,
    folder: TargetFolder,
    job: FolderJob<'_>,
    place: &MaildirPlace<'_>,
    out: &mut FolderOutcome,
) -> Result<()> {
    let opts = job.opts;
    folder.set_aside_torn(place, out);
    let planned = folder.index.count > 0;
    let need_hash = planned || opts.dry_run;
    let maildir_source = matches!(opened, Opened::Maildir { .. });
    // Hashes of source files seen by an earlier run: only new or changed files are read.
    let known = match &folder.dir {
        Some(d) if planned && opts.use_cache && maildir_source => target_index::SourceCache::load(d, &mut out.warnings),
        _ => None,
    };
    let mut run = FolderRun::start(folder, place, job, maildir_source, opened, out)?;
    if let Some(known) = known {
        feed_known(opened, known, &mut run, job, out)?;
        return run.finish(out);
    }
    let load = |refs: Vec<Ref>| {
        let loaded = load_chunk(opened, &refs, opts, need_hash.then_some(Identity::Exact));
        (refs, loaded)
    };
    // The next chunk is split, read and hashed while this one is written (see FolderRun); each
    // gets half the usual byte budget.
    let mut chunks = opened.chunks_of(&opts.read, source::CHUNK_BYTES / 2);
    let mut current = chunks.next().map(load);
    while let Some((refs, loaded)) = current.take() {
        // A signal: this chunk is dropped unwritten; the staged ones are put in place below.
        if interrupt::requested().is_some() {
            out.interrupted = true;
            break;
        }
        let (done, next) = rayon::join(
            || -> Result<()> {
                run.feed(loaded, out)?;
                opened.release(&refs);
                Ok(())
            },
            || chunks.next().map(load),
        );
        done?;
        current = next;
    }
    // The listing's set of files seen goes before the plan is carried out.
    drop(chunks);
    run.finish(out)
}

/// Feeds a planned run from a Maildir source whose earlier hashes are known: its listing,
/// sorted by name digest, is merged with the source cache (sorted the same way), so only the
/// files the cache does not know are read, and neither side is held in memory.
fn feed_known<'a>(
    opened: &'a Opened,
    known: target_index::SourceCache,
    run: &mut FolderRun<'_, 'a>,
    job: FolderJob<'_>,
    out: &mut FolderOutcome,
) -> Result<()> {
    let (opts, rec, tdir) = (job.opts, job.rec, run.tdir.clone());
    let err = |e| spill_error(&tdir, e);
    let mut listed = Sorter::new();
    let mut seq = 0u64;
    for refs in opened.chunks_of(&opts.read, source::CHUNK_BYTES / 2) {
        if interrupt::requested().is_some() {
            out.interrupted = true;
            return Ok(());
        }
        for r in refs {
            match r {
                Ref::Maildir(e) => listed.push(target_index::ByName::new(seq, *e)).map_err(err)?,
                Ref::Problem(p) => {
                    rec.record(Event::Error { folder: job.tn.clone(), problem: (*p).clone() });
                    out.errors.push(*p);
                }
                Ref::Mbox(_) => {}
            }
            seq += 1;
        }
    }
    let listed = listed.sorted().map_err(err)?;
    let (mut hits, mut misses): (Vec<Prepared<'a>>, Vec<(u64, Ref)>) = (Vec::new(), Vec::new());
    // Bytes of the files to read, as a chunk of the source bounds them.
    let mut unread = 0u64;
    let merged = target_index::merge_cached(
        &listed,
        Some(&known.lines),
        &mut |l, hash| {
            match hash {
                Some(h) => {
                    let mut p = Prepared::new(opened.unread(&l.entry), Some(h));
                    (p.seq, p.cached) = (Some(l.seq), true);
                    hits.push(p);
                }
                None => {
                    unread += l.entry.size;
                    misses.push((l.seq, Ref::Maildir(Box::new(l.entry))));
                }
            }
            if hits.len() + misses.len() >= source::CHUNK_MESSAGES || unread >= source::CHUNK_BYTES / 2 {
                if let Some(sig) = interrupt::requested() {
                    return Err(Error::Interrupted(sig));
                }
                unread = 0;
                feed_merged(opened, run, &mut hits, &mut misses, opts, out)?;
            }
            Ok(())
        },
        &err,
    );
    let distinct = match merged {
        Err(Error::Interrupted(_)) => {
            out.interrupted = true;
            return Ok(());
        }
        r => r?,
    };
    feed_merged(opened, run, &mut hits, &mut misses, opts, out)?;
    run.books.known_lines = Some(distinct);
    Ok(())
}

/// Reads the files the source cache did not know, and feeds them with those it knew.
fn feed_merged<'a>(
    opened: &'a Opened,
    run: &mut FolderRun<'_, 'a>,
    hits: &mut Vec<Prepared<'a>>,
    misses: &mut Vec<(u64, Ref)>,
    opts: &SyncOptions,
    out: &mut FolderOutcome,
) -> Result<()> {
    let (seqs, refs): (Vec<u64>, Vec<Ref>) = std::mem::take(misses).into_iter().unzip();
    let mut chunk: Vec<Result<Prepared<'a>, Problem>> = std::mem::take(hits).into_iter().map(Ok).collect();
    for (seq, p) in seqs.into_iter().zip(load_chunk(opened, &refs, opts, Some(Identity::Exact))) {
        chunk.push(p.map(|mut p| {
            p.seq = Some(seq);
            p
        }));
    }
    run.feed(chunk, out)
}

/// A target folder as a run finds it: its index, and the record of copies from this source.
pub(super) struct TargetFolder {
    pub(super) tdir: PathBuf,
    /// The folder, opened once (`None`: not there yet): everything of it is read through this.
    pub(super) dir: Option<fsx::Dir>,
    pub(super) index: target_index::Index,
    record: deletion::Record,
    record_path: PathBuf,
    source_id: String,
}

impl TargetFolder {
    /// Indexes target folder `tn` (torn copies set aside) and reads the record of what earlier
    /// runs copied there from `source`.
    pub(super) fn open(place: &MaildirPlace<'_>, job: FolderJob<'_>, out: &mut FolderOutcome) -> Result<TargetFolder> {
        let (root, tn, opts) = (place.root, job.tn, job.opts);
        let tdir = MaildirTarget::folder_path(root, tn, opts.layout).map_err(|e| Error::bad(root, e))?;
        // Names a link on the way; the reads below refuse one anyway (and one swapped in later).
        if let Some(link) = fsx::link_on_the_way(root, &tdir) {
            return Err(Error::refused(link, "is a symlink in the target; the folder is not read or written"));
        }
        let dir = match place.root_dir {
            Some(r) => r.find_below(&tdir)?,
            None => fsx::Dir::find_beneath(root, &tdir)?,
        };
        let use_cache = opts.use_cache && !opts.dry_run;
        let mut index = match dir.as_ref() {
            Some(d) => target_index::maildir(d, use_cache, &mut out.errors)?,
            None => target_index::Index::empty()?,
        };
        out.warnings.append(&mut index.warnings);
        let source_id = deletion::source_id(job.source_path);
        let record_path = tdir.join(deletion::COPIED_FILE);
        let record = dir.as_ref().map_or(Ok(deletion::Record::default()), |d| deletion::Record::load(d, &source_id));
        let record = record.unwrap_or_else(|p| {
            // Only --delete reads the record; other runs keep it quietly.
            if opts.deletion == Deletion::Copied {
                out.warnings.push(p);
            }
            deletion::Record::default()
        });
        Ok(TargetFolder { tdir, dir, index, record, record_path, source_id })
    }

    /// Sets aside the copies a crash left torn (not in a dry run), so their messages are
    /// copied again: the one thing opening a folder writes, done once the source is open too.
    pub(super) fn set_aside_torn(&self, place: &MaildirPlace<'_>, out: &mut FolderOutcome) {
        for t in &self.index.torn {
            if place.writer.is_none() {
                out.warnings
                    .push(Problem::new(t, "torn copy (shorter than its ,S=): would be set aside and copied again"));
                continue;
            }
            let Some(folder) = self.dir.as_ref() else { continue };
            match target_index::set_aside(folder, t) {
                Ok(a) => out.warnings.push(Problem::new(
                    t,
                    format!(
                        "torn copy (shorter than its ,S=) set aside as {}; its message is copied again",
                        a.display()
                    ),
                )),
                Err(e) => out.errors.push(e.problem()),
            }
        }
    }
}

/// One folder's run into a Maildir target, fed its source messages chunk by chunk.
///
/// Into an empty folder each chunk is decided and written as it comes. Into a folder with
/// messages the run is planned first: the source messages fed are kept on disk sorted by hash
/// (their place and state, not their bytes), joined with the target index hash by hash
/// ([`join`]), and the decisions, back in source order, are carried out chunk by chunk, the
/// bytes of each copy read again. Memory stays that of a chunk whatever the folder size.
///
/// Carrying out a chunk: written into tmp/ while the chunks before wait for the background
/// sync that makes them durable, then put in place (the CPU writes on while the disk works).
/// The bytes of a written chunk are let go before it waits. Nothing is written in a dry run.
pub(super) struct FolderRun<'t, 'a> {
    job: FolderJob<'t>,
    tdir: PathBuf,
    /// The target folder, opened (`None`: not there yet).
    dir: Option<fsx::Dir>,
    source: &'a dyn Feed,
    /// Decides what needs no target message (filters, what is not mail, an empty target).
    planner: Planner,
    index: target_index::Index,
    /// Source messages waiting for the join (a folder with messages), sorted by hash.
    wanted: Option<Sorter<Wanted>>,
    /// Decisions taken before the join (filters, not mail), with the joined ones once made.
    decided: Sorter<Decided>,
    seq: u64,
    record: deletion::Record,
    record_path: PathBuf,
    source_id: String,
    writer: Option<FolderWriter<'t>>,
    books: Books,
    pending: VecDeque<StagedChunk<'a>>,
    copies: u64,
    updates: u64,
    /// Keyword letters without a name already reported.
    unnamed_said: u32,
}

impl<'t, 'a> FolderRun<'t, 'a> {
    /// `source_cache`: keep one for the next run (a Maildir source).
    pub(super) fn start(
        folder: TargetFolder,
        place: &MaildirPlace<'t>,
        job: FolderJob<'t>,
        source_cache: bool,
        source: &'a dyn Feed,
        out: &mut FolderOutcome,
    ) -> Result<FolderRun<'t, 'a>> {
        let (tn, opts) = (job.tn, job.opts);
        let TargetFolder { tdir, dir, index, record, record_path, source_id } = folder;
        let rules = Rules { filters: opts.filters.clone(), bounds: place.bounds, mbox: false };
        let planner = Planner::new(Vec::<(Hash, Meta)>::new(), rules);
        let mut writer = match place.writer {
            Some(w) => Some(w.folder(tn)?),
            None => None,
        };
        if let Some(w) = &mut writer {
            out.warnings.append(&mut w.notes);
            w.clean_tmp(&mut out.errors);
            w.dir.remove_leftovers();
        }
        let (_, replaced) = layout::components(tn, opts.layout).unwrap_or_default();
        if replaced {
            out.warnings.push(Problem::new(
                &tdir,
                format!(
                    "'.' in folder name {:?} written as '{}' (Maildir++ uses '.' between levels)",
                    tn.as_str(),
                    layout::DOT_REPLACEMENT
                ),
            ));
        }
        let books = Books {
            known_lines: None,
            source_cache: match &writer {
                Some(w) if opts.use_cache && source_cache => {
                    cache_writer(target_index::CacheWriter::create_source(w), &mut out.warnings)
                }
                _ => None,
            },
            source_cache_same: 0,
            cache: match &writer {
                Some(w) if opts.use_cache => cache_writer(target_index::CacheWriter::create(w), &mut out.warnings),
                _ => None,
            },
            changed: false,
            seen: Sorter::new(),
            copied: Sorter::new(),
            uids: match &writer {
                // A Dovecot Maildir's or mbox's IMAP state goes with its messages.
                Some(w) if index.count == 0 && !w.has_uidlist() => {
                    let state = uidlist::read_source(job.source_path).or_else(|| mbox_imap_state(job.source_path));
                    UidLines::new(state).ok()
                }
                _ => None,
            },
            uids_not_carried: match &writer {
                Some(w) if index.count > 0 || w.has_uidlist() => not_carried(job.source_path, &w.dir),
                _ => None,
            },
        };
        Ok(FolderRun {
            job,
            tdir,
            dir,
            source,
            planner,
            wanted: (index.count > 0).then(Sorter::new),
            index,
            decided: Sorter::new(),
            seq: 0,
            record,
            record_path,
            source_id,
            writer,
            books,
            pending: VecDeque::new(),
            copies: 0,
            updates: 0,
            unnamed_said: 0,
        })
    }

    /// Takes a chunk of loaded source messages: written at once into an empty folder, else
    /// kept for the plan (see the type).
    pub(super) fn feed(&mut self, loaded: Vec<Result<Prepared<'a>, Problem>>, out: &mut FolderOutcome) -> Result<()> {
        let (tn, rec) = (self.job.tn, self.job.rec);
        let mut prepared = Vec::with_capacity(loaded.len());
        for p in loaded {
            match p {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    rec.record(Event::Error { folder: tn.clone(), problem: e.clone() });
                    out.errors.push(e);
                }
            }
        }
        clamp_dates(&mut prepared, self.planner.rules().bounds, out);
        for p in prepared.iter_mut() {
            account(p, out);
            p.decision = Some(self.planner.decide(candidate(p)));
            // Its place in the source: what its target name is made of, and the plan's order.
            let seq = p.seq.unwrap_or(self.seq);
            self.seq = self.seq.max(seq) + 1;
            p.seq = Some(seq);
        }
        let Some(wanted) = self.wanted.as_mut() else { return self.execute(prepared, out) };
        for p in prepared {
            let seq = p.seq.unwrap_or_default();
            let Some(place) = p.place() else {
                let e = p.loaded.origin.problem("internal: no way to read this message again; not copied");
                rec.record(Event::Error { folder: tn.clone(), problem: e.clone() });
                out.errors.push(e);
                continue;
            };
            let mut bytes = Vec::new();
            place.encode(&mut bytes);
            let key = match self.job.opts.identity {
                IdentityBy::Headers if !p.loaded.body.is_unread() => by_headers::key_of(&p.loaded.body.pieces()),
                _ => None,
            };
            let meta = p.loaded.meta;
            let r = match (p.decision, p.hash) {
                (Some(Decision::Copy), Some(hash)) => wanted.push(Wanted {
                    hash,
                    seq,
                    meta,
                    place: bytes,
                    cached: p.cached,
                    key,
                    content: None,
                    by_headers: false,
                }),
                (d, hash) => self.decided.push(Decided {
                    seq,
                    decision: d.unwrap_or(Decision::Copy),
                    hash,
                    meta,
                    place: bytes,
                    held: None,
                    cached: p.cached,
                    by_headers: false,
                    q: 0,
                }),
            };
            r.map_err(|e| spill_error(&self.tdir, e))?;
        }
        Ok(())
    }

    /// Joins what was fed with the target index, then carries out the decisions in source
    /// order, a chunk at a time; returns the target messages no source message matched.
    fn plan_and_execute(&mut self, wanted: Sorter<Wanted>, out: &mut FolderOutcome) -> Result<Sorted<Held>> {
        let tdir = self.tdir.clone();
        let err = |e| spill_error(&tdir, e);
        let wanted = wanted.sorted().map_err(err)?;
        // In a folder merged from several sources, the copies recorded for the others are
        // theirs: each source matches only its own (a message both have is there twice, and
        // neither re-flags the other's copy run after run).
        let reserved = if self.job.opts.merged { self.record.others_by_hash().map_err(err)? } else { Vec::new() };
        let targets = || self.index.sorted.iter().map(|r| r.map(held_of));
        let wanted = match self.job.opts.identity {
            IdentityBy::Content => wanted,
            IdentityBy::Headers => {
                let mut read = Vec::new();
                let subs = self.dir.as_ref().map(|d| mdread::MessageDirs::open(d, &mut read));
                let (ropts, source) = (&self.job.opts.read, self.source);
                let mut source_key = |w: &Wanted| {
                    let mut l = source.reload(Place::decode(&w.place)?, w.meta.clone(), ropts).ok()?;
                    source.read_body(&mut l).ok()?;
                    by_headers::key_of(&l.body.pieces())
                };
                let mut target_key = |h: &Held| {
                    let subs = subs.as_ref()?.as_ref().ok()?;
                    let (e, _) = MaildirEntry::decode(&h.entry)?;
                    let path = e.path(&tdir);
                    let data =
                        fsx::MessageFile::from_file(subs.open_message(&e).ok()?, &path).ok()?.read(&path).ok()?;
                    by_headers::key_of(&[&data])
                };
                // Counted as carried out (a pair whose copy is another source's is copied).
                by_headers::pair(&wanted, targets(), &mut source_key, &mut target_key).map_err(err)?.0
            }
        };
        let mut joined = Joined {
            decided: &mut self.decided,
            unmatched: Sorter::new(),
            cache: self.books.cache.as_mut(),
            bases: Vec::new(),
            copies: 0,
            lone: 0,
        };
        join(wanted.iter(), targets(), reserved.into_iter(), self.planner.rules(), &mut joined).map_err(err)?;
        if let Some(w) = by_headers::suggestion(self.job.opts, joined.copies, self.index.count, joined.lone, &tdir) {
            out.warnings.push(w);
        }
        let unmatched = joined.unmatched.sorted().map_err(err)?;
        drop(wanted);
        let decided = std::mem::take(&mut self.decided).sorted().map_err(err)?;
        let (ropts, source) = (&self.job.opts.read, self.source);
        let mut chunk: Vec<Prepared<'a>> = Vec::new();
        let mut bytes = 0u64;
        let mut decisions = decided.iter();
        for d in decisions.by_ref() {
            let d = d.map_err(err)?;
            let copy = d.decision == Decision::Copy;
            let held = match d.held.as_ref().map(|h| MaildirEntry::decode(&h.entry)) {
                Some(Some((e, _))) => Some(Box::new(e)),
                Some(None) => return Err(err(std::io::Error::other("a planned target message does not read back"))),
                None => None,
            };
            let place = Place::decode(&d.place)
                .ok_or_else(|| err(std::io::Error::other("a planned source message does not read back")))?;
            let released = matches!(place, Place::Mbox(_)).then(|| place.clone());
            match source.reload(place, d.meta, ropts) {
                Ok(loaded) => {
                    // Bytes held in memory (from memory, or read to be copied) count.
                    bytes += if copy || !loaded.body.is_unread() { loaded.body.len() } else { 0 };
                    let mut p = Prepared::new(loaded, d.hash);
                    (p.decision, p.held, p.cached, p.seq, p.q) = (Some(d.decision), held, d.cached, Some(d.seq), d.q);
                    (p.held_hash, p.by_headers) = (d.held.as_ref().map(|h| h.hash), d.by_headers);
                    chunk.push(p);
                }
                Err(e) => {
                    self.job.rec.record(Event::Error { folder: self.job.tn.clone(), problem: e.clone() });
                    out.errors.push(e);
                }
            }
            if chunk.len() >= source::CHUNK_MESSAGES || bytes >= source::CHUNK_BYTES / 2 {
                if interrupt::requested().is_some() {
                    break;
                }
                self.execute(std::mem::take(&mut chunk), out)?;
                // The mapped pages of an mbox source up to here are written.
                if let Some(p) = &released {
                    source.release(p);
                }
                bytes = 0;
            }
        }
        if interrupt::requested().is_none() {
            if !chunk.is_empty() {
                self.execute(chunk, out)?;
            }
            return Ok(unmatched);
        }
        // Stopped by a signal: what was not carried out keeps its lines in the caches, so the
        // next run does not read it again.
        out.interrupted = true;
        for p in &chunk {
            let held = p.held.as_deref().zip(p.held_hash.or(p.hash));
            self.books.unreached((p.decision, p.hash), held, p.loaded.key.as_ref().filter(|_| p.cached));
        }
        for d in decisions {
            let d = d.map_err(err)?;
            let held = d.held.as_ref().and_then(|h| MaildirEntry::decode(&h.entry)).map(|(e, _)| e);
            let key = match Place::decode(&d.place) {
                Some(Place::Maildir(e)) if d.cached => Some(crate::source::SourceKey {
                    base: e.base().to_vec(),
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    ino: e.ino,
                }),
                _ => None,
            };
            let held = held.as_ref().zip(d.held.as_ref().map(|h| h.hash));
            self.books.unreached((Some(d.decision), d.hash), held, key.as_ref());
        }
        Ok(unmatched)
    }

    /// Carries out the decisions taken on a chunk (see the type).
    fn execute(&mut self, mut prepared: Vec<Prepared<'a>>, out: &mut FolderOutcome) -> Result<()> {
        let FolderRun { job, tdir, source, writer, books, pending, copies, updates, unnamed_said, .. } = self;
        let (tn, rec, tdir, source) = (job.tn, job.rec, &*tdir, *source);
        let mut fates: Vec<Option<Fate>> = Vec::with_capacity(prepared.len());
        for p in &prepared {
            let decision = p.decision.unwrap_or(Decision::Copy);
            match decision {
                Decision::Copy => *copies += 1,
                d if d.updates() => *updates += 1,
                _ => {}
            }
            fates.push(settled(decision, p));
        }
        let Some(w) = writer.as_mut() else {
            for (p, f) in prepared.iter().zip(fates.iter_mut()) {
                if f.is_none() {
                    let sha = p.hash.unwrap_or_default();
                    *f = Some(match (p.decision, &p.held) {
                        (Some(d), Some(e)) if d.updates() => {
                            // The copy that would be renamed, for the plan.
                            let name = format!("{}/{}", e.sub.as_str(), String::from_utf8_lossy(&e.name));
                            Fate::FlagsUpdated { sha, name }
                        }
                        _ => Fate::Copied { sha, size: p.loaded.body.len(), name: String::new() },
                    });
                }
            }
            books.tally(tn, tdir, prepared, fates, rec, out);
            return Ok(());
        };
        // A message known from the source cache, or planned, is read now if it is copied.
        let unread: Vec<Option<Problem>> = prepared
            .par_iter_mut()
            .zip(fates.par_iter())
            .map(|(p, f)| match (f, p.decision) {
                (None, Some(Decision::Copy)) => source.read_body(&mut p.loaded).err(),
                _ => None,
            })
            .collect();
        for ((f, e), p) in fates.iter_mut().zip(unread).zip(prepared.iter()) {
            if let Some(e) = e {
                *f = Some(Fate::Failed(e));
            } else if f.is_none() && p.loaded.gone {
                // Deleted from the source since it was listed.
                out.counts.vanished_source += 1;
                out.counts.messages_source -= 1;
                *copies -= 1;
                *f = Some(Fate::NotMail);
            }
        }
        let mut unnamed = 0u32;
        let mut kws: Vec<&str> = Vec::new();
        for p in prepared.iter().filter(|p| p.decision.is_some_and(Decision::writes)) {
            unnamed |= p.loaded.meta.stray_letters;
            kws.extend(p.loaded.meta.named_keywords());
        }
        let new = unnamed & !*unnamed_said;
        if new != 0 {
            *unnamed_said |= new;
            let (letters, names): (Vec<String>, Vec<String>) = (0u8..26)
                .filter(|i| new & (1 << i) != 0)
                .map(|i| (char::from(b'a' + i).to_string(), crate::message::unnamed_letter(i)))
                .unzip();
            out.warnings.push(Problem::new(
                tdir,
                format!(
                    "keyword letters {} of source messages have no name in its dovecot-keywords: kept as letters without a name (Dovecot shows them as {})",
                    letters.join(", "),
                    names.join(", ")
                ),
            ));
        }
        kws.sort_unstable();
        kws.dedup();
        for k in w.add_keywords(kws, unnamed) {
            out.errors.push(Problem::new(
                w.path(),
                format!("keyword {k:?} not kept: a Maildir folder holds at most 26 keywords"),
            ));
        }
        let saved = w.save_keywords();
        let w = &*w;
        if let Err(e) = saved {
            for (prepared, fates) in place_synced(pending, w, 0, source) {
                books.tally(tn, tdir, prepared, fates, rec, out);
            }
            return Err(e);
        }
        // This chunk goes into tmp/ while the one before is synced and put in place.
        let (staged, finished) = rayon::join(
            || -> Vec<Option<Result<Staged, Problem>>> {
                prepared
                    .par_iter()
                    .zip(fates.par_iter())
                    .map(|(p, f)| match (f, p.decision) {
                        (None, Some(Decision::Copy)) if p.loaded.body.is_unread() => {
                            Some(Err(p.loaded.origin.problem("internal: message bytes not read; not copied")))
                        }
                        (None, Some(Decision::Copy)) => {
                            Some(
                                w.stage(&p.loaded.body.pieces(), &p.loaded.meta, (p.seq.unwrap_or(0), p.q))
                                    .map_err(|e| e.problem())
                                    .and_then(|st| {
                                        // What was written must be what was decided on.
                                        let same =
                                            p.hash.is_none_or(|h| h == st.written.sha256) && p.loaded.body.intact();
                                        if same {
                                            Ok(st)
                                        } else {
                                            w.discard(st);
                                            Err(p.loaded.origin.problem_of(crate::error::Kind::Changed, CHANGED))
                                        }
                                    }),
                            )
                        }
                        _ => None,
                    })
                    .collect()
            },
            || place_synced(pending, w, MAX_STAGED_CHUNKS, source),
        );
        for p in prepared.iter_mut() {
            p.loaded.body = Body::Unread(p.loaded.body.len());
        }
        for (prepared, fates) in finished {
            books.tally(tn, tdir, prepared, fates, rec, out);
        }
        let ticket = if staged.iter().any(|s| matches!(s, Some(Ok(_)))) { w.ask_sync() } else { None };
        pending.push_back(StagedChunk { prepared, fates, staged, ticket });
        Ok(())
    }

    /// Carries out the plan (a folder with messages), puts the last chunks in place, then
    /// deletes what the plan deletes and writes the record of copies and the caches; a dry run
    /// says what it would have done.
    pub(super) fn finish(mut self, out: &mut FolderOutcome) -> Result<()> {
        let unmatched = match self.wanted.take() {
            Some(w) if !out.interrupted => Some(self.plan_and_execute(w, out)?),
            Some(_) => {
                // Stopped before the plan: nothing was written, and the caches as they are
                // still hold for the next run.
                self.books.cache = None;
                self.books.source_cache = None;
                None
            }
            None => None,
        };
        let (tn, rec, opts) = (self.job.tn, self.job.rec, self.job.opts);
        let tdir = self.tdir.clone();
        if let Some(w) = &self.writer {
            for (prepared, fates) in place_synced(&mut self.pending, w, 0, self.source) {
                self.books.tally(tn, &tdir, prepared, fates, rec, out);
            }
        }
        let record = self.record;
        let mut deleted = 0;
        let err = |e| spill_error(&tdir, e);
        // Target messages deleted, by hash and place in the index.
        let mut gone = Sorter::new();
        if let Some(unmatched) = &unmatched {
            let delete = choose_deletions(unmatched, &record, &tdir, self.source, opts, out).map_err(err)?;
            let mut chooser = delete.then(|| deletion::Chooser::new(opts.deletion, &record));
            for h in unmatched.iter() {
                let h = h.map_err(err)?;
                let Some((e, _)) = MaildirEntry::decode(&h.entry) else { continue };
                let chosen = match chooser.as_mut() {
                    Some(c) => c.chosen(&h.hash).map_err(err)?,
                    None => false,
                };
                if !chosen {
                    if let Some(c) = self.books.cache.as_mut() {
                        c.add(e.base(), e.size, e.mtime_ns, &h.hash);
                    }
                    continue;
                }
                let path = e.path(&tdir);
                if let Some(w) = &self.writer
                    && let Err(err) = w.delete(&e)
                {
                    out.errors.push(err.problem());
                    if let Some(c) = self.books.cache.as_mut() {
                        c.add(e.base(), e.size, e.mtime_ns, &h.hash);
                    }
                    continue;
                }
                deleted += 1;
                gone.push(Deleted { hash: h.hash, idx: h.idx }).map_err(err)?;
                rec.record(Event::Delete { folder: tn.clone(), target: path, sha256: h.hash, size: e.size });
            }
        }
        let gone = gone.sorted().map_err(err)?;
        let Books {
            known_lines,
            source_cache,
            source_cache_same,
            cache,
            changed,
            seen,
            copied,
            uids,
            uids_not_carried,
            ..
        } = self.books;
        if let Some(why) = uids_not_carried.filter(|_| out.counts.transferred > 0) {
            out.warnings.push(Problem::new(&tdir.join(uidlist::UIDLIST), why));
        }
        if let (Some(w), Some(u)) = (&self.writer, uids.filter(|u| u.count() > 0)) {
            let validity = chrono::Utc::now().timestamp().clamp(1, i64::from(u32::MAX)) as u32;
            match u.write(&w.dir, validity, opts.owner, opts.durable) {
                Ok(true) => {}
                Ok(false) => out.warnings.push(Problem::new(
                    &tdir.join(uidlist::UIDLIST),
                    "Dovecot numbered this folder while it was written: its UIDs follow the names, not the source's order",
                )),
                Err(e) => out.warnings.push(e.problem()),
            }
        }
        out.counts.duplicates_source +=
            seen.sorted().and_then(|s| duplicates(s.iter())).map_err(|e| spill_error(&tdir, e))?;
        out.counts.deleted_target = deleted;
        out.counts.messages_target = (self.index.count + out.counts.transferred).saturating_sub(deleted);
        if let Some(w) = &self.writer {
            w.sync_dirs()?;
            let index = &self.index.sorted;
            let gone = &gone;
            let mut hashes = || -> (StayingHashes<'_>, StayingHashes<'_>) {
                let deleted = gone.iter().map(|d| d.map(|d| d.hash));
                let index = index.iter().map(|t| t.map(|t| (t.hash, t.idx)));
                (Box::new(without(index, gone.iter())), Box::new(deleted))
            };
            let at = (&w.dir, self.record_path.as_path(), self.source_id.as_str());
            save_record(&record, at, &mut hashes, copied, deleted, opts, out);
            if let Some(c) = source_cache {
                // Unchanged (every line as it was): the file is left alone, so a re-run writes
                // nothing.
                let unchanged = known_lines == Some(c.lines) && source_cache_same == c.lines;
                if unchanged {
                    c.discard();
                } else if let Err(e) = c.commit() {
                    out.warnings.push(e.problem());
                }
            }
            if let Some(c) = cache {
                if self.index.from_cache && !changed && deleted == 0 {
                    c.discard();
                } else if let Err(e) = c.commit() {
                    out.warnings.push(e.problem());
                }
            }
        }
        if opts.dry_run {
            out.plan_line = Some(format!(
                "{} -> {}: {} to copy, {} flag updates, {} to delete, {} already there",
                self.job.source_name,
                tn.as_str(),
                self.copies,
                self.updates,
                deleted,
                out.counts.skipped_existing
            ));
        }
        Ok(())
    }
}

/// Why the IMAP state of the source folder `source` cannot go with its messages into the
/// target folder `dir`, which has mail or a uidlist of its own (never renumbered): `None` when
/// the source has no UIDs, or the folder's uidlist has the source's UIDVALIDITY (an earlier
/// run numbered it from this source, or it was copied with it).
pub(super) fn not_carried(source: &Path, dir: &crate::fsx::Dir) -> Option<String> {
    let from = source_validity(source)?;
    let why = match uidlist::validity_in(dir) {
        Some(v) if v == from => return None,
        Some(v) => format!("this folder has its own dovecot-uidlist (UIDVALIDITY {v}, the source's is {from})"),
        None => "this folder had mail of its own before (delivered here first?)".into(),
    };
    Some(format!(
        "the source's IMAP UIDs were not carried to the copies: {why}, and a folder's UIDs are never renumbered; \
         Dovecot numbers the copies after its last UID, so IMAP and POP3 clients fetch them as new mail"
    ))
}

/// The UIDVALIDITY of the source folder `source`: its `dovecot-uidlist`'s, or a Dovecot
/// mbox's `X-IMAPbase`'s; `None` when it has no IMAP state.
pub(super) fn source_validity(source: &Path) -> Option<u32> {
    uidlist::source_header(source).map(|h| h.0).or_else(|| mbox_imap_state(source).map(|s| s.validity()))
}

/// The UIDVALIDITY and last UID a Dovecot mbox source keeps in its first message's
/// `X-IMAPbase` (or pseudo message's `X-IMAP`): its messages' `X-UID`s are then its UIDs.
fn mbox_imap_state(path: &Path) -> Option<uidlist::SourceUids> {
    if !path.is_file() {
        return None;
    }
    let b = crate::store::mbox::read::MboxFile::open(path).ok()?.imap_base()?;
    Some(uidlist::SourceUids::of_mbox(b.validity, b.last_uid))
}

/// A target message as the join takes it.
fn held_of(t: target_index::Indexed) -> Held {
    let mut entry = Vec::new();
    t.entry.encode(&mut entry);
    Held { hash: t.hash, idx: t.idx, meta: t.entry.meta, entry, key: None }
}

pub(super) fn spill_error(tdir: &Path, e: std::io::Error) -> Error {
    Error::bad(tdir, format!("the folder's plan could not be kept in temporary files: {}", crate::error::io_reason(&e)))
}

/// What the join decides, kept for the executing pass; a copy left as it is keeps its line in
/// the folder's cache.
struct Joined<'j> {
    decided: &'j mut Sorter<Decided>,
    unmatched: Sorter<Held>,
    cache: Option<&'j mut target_index::CacheWriter>,
    /// The base names of the target copies of the hash group being decided.
    bases: Vec<Vec<u8>>,
    /// Source messages to copy, target messages no source message matched.
    copies: u64,
    lone: u64,
}

impl Outcome for Joined<'_> {
    fn decided(&mut self, wanted: Wanted, decision: Decision, held: Option<&Held>) -> std::io::Result<()> {
        if let (Decision::Skip(_), Some(h), Some(c)) = (decision, held, self.cache.as_mut())
            && let Some((e, _)) = MaildirEntry::decode(&h.entry)
        {
            c.add(e.base(), e.size, e.mtime_ns, &h.hash);
        }
        // A copy left as it is is done with (its cache line is written): only a copy to
        // re-flag or re-date is needed again.
        let held = held.filter(|_| decision.updates());
        let q = if decision == Decision::Copy { free_q(&self.bases, &wanted) } else { 0 };
        self.copies += u64::from(decision == Decision::Copy);
        self.decided.push(Decided { q, ..Decided::joined(wanted, decision, held) })
    }

    fn unmatched(&mut self, held: Held) -> std::io::Result<()> {
        self.lone += 1;
        self.unmatched.push(held)
    }

    fn group(&mut self, held: &[Held]) {
        self.bases.clear();
        self.bases.extend(held.iter().filter_map(|h| MaildirEntry::decode(&h.entry)).map(|(e, _)| e.base().to_vec()));
    }
}

/// The `Q<n>` (0: none) that keeps a copy's base name apart from those of the target copies of
/// its message (`bases`): the same source message copied again beside its first copy (which
/// another source message of the same content kept) would get that copy's base name.
fn free_q(bases: &[Vec<u8>], w: &Wanted) -> u32 {
    let unique = crate::store::maildir::write::unique_part(w.meta.date, w.seq, &w.hash, 0);
    let taken = |q: u32| {
        let prefix = crate::store::maildir::write::unique_part(w.meta.date, w.seq, &w.hash, q);
        bases.iter().any(|b| b.strip_prefix(prefix.as_bytes()).is_some_and(|rest| rest.first() == Some(&b'.')))
    };
    if !bases.iter().any(|b| b.starts_with(unique.as_bytes())) {
        return 0;
    }
    (0..).find(|&q| !taken(q)).unwrap_or(0)
}

/// Hashes seen more than once, counted from their sorted list.
pub(super) fn duplicates(sorted: impl Iterator<Item = std::io::Result<Hash>>) -> std::io::Result<u64> {
    let mut n = 0;
    let mut last: Option<Hash> = None;
    for h in sorted {
        let h = h?;
        if last == Some(h) {
            n += 1;
        }
        last = Some(h);
    }
    Ok(n)
}

/// A Maildir target folder fed messages already in memory, one at a time (a cPanel archive's):
/// they are gathered into chunks and go through the same run as a folder read from disk.
pub struct FedFolder<'t> {
    /// `None` when the target folder could not be opened (said in `out`).
    run: Option<FolderRun<'t, 'static>>,
    chunk: Vec<Result<Prepared<'static>, Problem>>,
    bytes: u64,
    out: FolderOutcome,
}

impl<'t> FedFolder<'t> {
    /// Folder `tn` of the Maildir target at `root` (`writer`: none in a dry run; `bounds`: the
    /// file times its file system stores), fed from a source folder (its name for reports, its
    /// path for the record of copies).
    pub fn open(
        root: &'t Path,
        writer: Option<&'t MaildirTarget>,
        bounds: Option<(i64, i64)>,
        tn: &'t FolderName,
        (source_name, source_path): (&'t str, &'t Path),
        opts: &'t SyncOptions,
        rec: &'t dyn Recorder,
    ) -> FedFolder<'t> {
        let mut out = FolderOutcome::default();
        out.counts.folders = 1;
        let place = MaildirPlace { root, root_dir: writer.map(|w| &w.root), bounds, writer };
        let job = FolderJob { source_name, source_path, tn, opts, rec };
        let run = TargetFolder::open(&place, job, &mut out)
            .and_then(|f| {
                f.set_aside_torn(&place, &mut out);
                FolderRun::start(f, &place, job, false, &InMemory, &mut out)
            })
            .map_err(|e| out.errors.push(e.problem()))
            .ok();
        FedFolder { run, chunk: Vec::new(), bytes: 0, out }
    }

    /// One message: its bytes, its state and where it came from.
    pub fn add(&mut self, origin: PathBuf, data: Vec<u8>, meta: Meta) {
        if self.run.is_none() {
            return;
        }
        let size = data.len() as u64;
        let hash = fsx::sha256_pieces(&[&data]);
        let loaded = Loaded::from_memory(origin, data, meta);
        self.chunk.push(Ok(Prepared::new(loaded, Some(hash))));
        self.bytes += size;
        if self.bytes >= source::CHUNK_BYTES / 2 || self.chunk.len() >= source::CHUNK_MESSAGES {
            self.feed();
        }
    }

    fn feed(&mut self) {
        let chunk = std::mem::take(&mut self.chunk);
        self.bytes = 0;
        if let Some(run) = self.run.as_mut()
            && let Err(e) = run.feed(chunk, &mut self.out)
        {
            // The folder cannot be written on (its keywords could not be saved).
            self.out.errors.push(e.problem());
            self.run = None;
        }
    }

    /// The folder's outcome once what was fed is in place. After a signal the messages not
    /// yet written are dropped and nothing is deleted.
    pub fn finish(mut self, interrupted: bool) -> FolderOutcome {
        if interrupted {
            self.out.interrupted = true;
            self.chunk.clear();
        } else {
            self.feed();
        }
        if let Some(run) = self.run.take()
            && let Err(e) = run.finish(&mut self.out)
        {
            self.out.errors.push(e.problem());
        }
        self.out.counts.failed = self.out.counts.failed.max(self.out.errors.len() as u64);
        self.out
    }
}

/// Hashes in sorted order, read from sorted runs.
pub(super) type StayingHashes<'s> = Box<dyn Iterator<Item = std::io::Result<Hash>> + 's>;

/// The hashes of the target messages that stay and of those deleted, each sorted, as often as
/// asked for.
pub(super) type Hashes<'s> = dyn FnMut() -> (StayingHashes<'s>, StayingHashes<'s>) + 's;

/// The hashes of the indexed target messages (sorted by hash and place) less the deleted ones
/// (sorted the same way), merged as they are read.
fn without<'s>(
    index: impl Iterator<Item = std::io::Result<(Hash, u64)>> + 's,
    gone: impl Iterator<Item = std::io::Result<Deleted>> + 's,
) -> impl Iterator<Item = std::io::Result<Hash>> + 's {
    let mut gone = gone.peekable();
    index.filter_map(move |t| {
        let t = match t {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        loop {
            match gone.peek() {
                Some(Ok(d)) if (d.hash, d.idx) < t => {}
                Some(Ok(d)) => return ((d.hash, d.idx) != t).then_some(Ok(t.0)),
                Some(Err(_)) => return gone.next().and_then(|r| r.err()).map(Err),
                None => return Some(Ok(t.0)),
            }
            gone.next();
        }
    })
}

/// Writes a folder's record of copies when it changed (a re-run that did nothing writes nothing;
/// a target with no record and no new copy gets none, so `--delete` keeps saying it cannot tell).
/// `hashes`: those of the target messages the run leaves, and of those it deleted; `copied`:
/// those it wrote.
pub(super) fn save_record<'s>(
    record: &deletion::Record,
    (folder_dir, path, source_id): (&fsx::Dir, &Path, &str),
    hashes: &mut Hashes<'s>,
    copied: Sorter<Hash>,
    deleted: u64,
    opts: &SyncOptions,
    out: &mut FolderOutcome,
) {
    if opts.dry_run || (!record.found && copied.is_empty()) {
        return;
    }
    // The folder as opened, not whatever its path leads to now.
    let Some(folder) = folder_dir.folder_id() else {
        out.warnings.push(Problem::new(path, "its folder cannot be looked at; the record of copies is not written"));
        return;
    };
    let any_copied = !copied.is_empty();
    let copied = match copied.sorted() {
        Ok(c) => c,
        Err(e) => {
            out.warnings.push(Problem::new(
                path,
                format!("the record of copies is not written: {}", crate::error::io_reason(&e)),
            ));
            return;
        }
    };
    let (found, before) = (record.found, record.total());
    // Nothing copied or deleted: the record is rewritten only when some of its lines are for
    // copies gone from the folder (counted first, without writing).
    let (mut staying, mut gone) = hashes();
    if found && !any_copied && deleted == 0 && record.standing((&mut staying, &mut gone)).is_ok_and(|n| n == before) {
        return;
    }
    let r = deletion::Record::save_with(folder_dir, opts.owner, opts.durable, &mut |w| {
        let (mut staying, mut gone) = hashes();
        let ours = record.write_after(w, &folder, source_id, (&mut staying, &mut gone), &mut copied.iter())?;
        Ok(!(found && !any_copied && deleted == 0 && ours == before))
    });
    if let Err(p) = r {
        out.warnings.push(p);
    }
}

/// Staged chunks of one folder that may wait for their sync at once (each holds up to 1,024
/// descriptors of unnamed files); past this the oldest is waited for.
pub(super) const MAX_STAGED_CHUNKS: usize = 8;

/// The messages of a chunk put in place, with their fates.
pub(super) type Placed<'a> = (Vec<Prepared<'a>>, Vec<Option<Fate>>);

/// A chunk written into tmp/, waiting for its sync and for being put in place.
pub(super) struct StagedChunk<'a> {
    prepared: Vec<Prepared<'a>>,
    fates: Vec<Option<Fate>>,
    staged: Vec<Option<Result<Staged, Problem>>>,
    /// The sync that makes it durable (`None`: nothing to wait for).
    ticket: Option<fsx::Ticket>,
}

/// Puts in place, oldest first, the staged chunks whose sync has finished, waiting for the
/// oldest while more than `keep` wait (0: every chunk is waited for). Returns the messages
/// with their fates.
pub(super) fn place_synced<'a>(
    pending: &mut VecDeque<StagedChunk<'a>>,
    w: &FolderWriter<'_>,
    keep: usize,
    source: &dyn Feed,
) -> Vec<Placed<'a>> {
    let mut done = Vec::new();
    while let Some(c) = pending.front() {
        let synced = match c.ticket {
            None => Ok(()),
            Some(t) => match w.synced(t, pending.len() > keep) {
                Some(r) => r,
                None => break,
            },
        };
        if let Some(c) = pending.pop_front() {
            // Bytes read from a source mbox that shrank or changed since are not put in place.
            let synced = synced.map_err(|e| e.problem()).and_then(|()| source.intact());
            done.push(c.put_in_place(w, synced));
        }
    }
    done
}

impl<'a> StagedChunk<'a> {
    /// Links or renames each staged message of a synced chunk into place (or discards them
    /// when the sync failed) and renames the files whose flags change; returns the messages
    /// with their fates.
    fn put_in_place(self, w: &FolderWriter<'_>, synced: Result<(), Problem>) -> Placed<'a> {
        let StagedChunk { prepared, mut fates, staged, .. } = self;
        let done: Vec<Option<Fate>> = prepared
            .par_iter()
            .zip(fates.par_iter())
            .zip(staged.into_par_iter())
            .map(|((p, f), s)| {
                if f.is_some() {
                    return None;
                }
                Some(match (s, &synced) {
                    (Some(Ok(s)), Ok(())) => match w.commit(s) {
                        Ok(wr) => Fate::Copied {
                            sha: wr.sha256,
                            size: wr.size,
                            name: format!("{}/{}", wr.sub.as_str(), wr.name),
                        },
                        Err(e) => Fate::Failed(e.problem()),
                    },
                    (Some(Ok(s)), Err(e)) => {
                        w.discard(s);
                        Fate::Failed(e.clone())
                    }
                    (Some(Err(e)), _) => Fate::Failed(e),
                    (None, _) => update_flags(w, p),
                })
            })
            .collect();
        for (f, d) in fates.iter_mut().zip(done) {
            if d.is_some() {
                *f = d;
            }
        }
        (prepared, fates)
    }
}

/// What a folder's run keeps account of across chunks for its caches.
pub(super) struct Books {
    /// Lines of the source cache an earlier run left (`None`: it was not read).
    known_lines: Option<u64>,
    source_cache: Option<target_index::CacheWriter>,
    /// Source cache lines found as they were.
    source_cache_same: u64,
    cache: Option<target_index::CacheWriter>,
    /// A message was copied or a copy re-flagged: the folder's cache changes.
    changed: bool,
    /// Hashes of the messages written or found (duplicates are counted from them).
    seen: Sorter<Hash>,
    /// Hashes of the messages copied in this run (for the record of copies).
    copied: Sorter<Hash>,
    /// A folder this run fills from empty: its copies' names in source order, for the
    /// `dovecot-uidlist` that gives them UIDs in that order.
    uids: Option<UidLines>,
    /// Why the source's UIDs do not go with its copies, said when there are copies.
    uids_not_carried: Option<String>,
}

impl Books {
    /// A planned message a signal stopped before it was carried out: the target copy it names
    /// and its source file keep their cache lines as they were.
    fn unreached(
        &mut self,
        (decision, hash): (Option<Decision>, Option<Hash>),
        held: Option<(&MaildirEntry, Hash)>,
        cached: Option<&crate::source::SourceKey>,
    ) {
        // A copy left as it is got its line when the plan was joined.
        let held = held.filter(|_| !matches!(decision, Some(Decision::Skip(_))));
        if let (Some(c), Some((e, own))) = (self.cache.as_mut(), held) {
            c.add(e.base(), e.size, e.mtime_ns, &own);
        }
        let Some(hash) = hash else { return };
        if let (Some(c), Some(k)) = (self.source_cache.as_mut(), cached) {
            c.add(&k.base, k.size, k.mtime_ns, &hash);
            self.source_cache_same += 1;
        }
    }

    /// Records each message's fate (events, counts) and what the caches learn from it.
    fn tally(
        &mut self,
        tn: &FolderName,
        tdir: &Path,
        prepared: Vec<Prepared<'_>>,
        fates: Vec<Option<Fate>>,
        rec: &dyn Recorder,
        out: &mut FolderOutcome,
    ) {
        for (p, f) in prepared.iter().zip(fates) {
            if let (Some(u), Some(Fate::Copied { name, .. })) = (self.uids.as_mut(), &f) {
                let source = p.loaded.key.as_ref().map(|k| k.base.as_slice());
                if u.add(&target_index::base_of(name), (source, p.loaded.uid), p.seq.unwrap_or_default()).is_err() {
                    self.uids = None;
                }
            }
            let copied = match &f {
                Some(Fate::Copied { sha, .. }) => self.copied.push(*sha),
                Some(Fate::FlagsUpdated { .. }) => {
                    self.changed = true;
                    Ok(())
                }
                _ => Ok(()),
            };
            let seen = match &f {
                Some(Fate::Copied { sha, .. } | Fate::Skipped { sha, .. } | Fate::FlagsUpdated { sha, .. }) => {
                    self.seen.push(*sha)
                }
                _ => Ok(()),
            };
            if let Err(e) = copied.and(seen) {
                out.warnings.push(Problem::new(
                    tdir,
                    format!("the run's list of copies could not be kept: {}", crate::error::io_reason(&e)),
                ));
            }
            if let Some(c) = self.cache.as_mut() {
                match (&f, &p.held) {
                    (Some(Fate::Copied { sha, name, size }), _) => {
                        self.changed = true;
                        c.add(
                            &target_index::base_of(name),
                            *size,
                            p.loaded.meta.date.saturating_mul(1_000_000_000),
                            sha,
                        )
                    }
                    // A re-flagged copy keeps its base name and size; its date may be new.
                    (Some(Fate::FlagsUpdated { sha, .. }), Some(e)) => {
                        let mtime_ns = if p.loaded.meta.date != e.meta.date {
                            p.loaded.meta.date.saturating_mul(1_000_000_000)
                        } else {
                            e.mtime_ns
                        };
                        c.add(e.base(), e.size, mtime_ns, p.held_hash.as_ref().unwrap_or(sha));
                    }
                    // A copy that could not be re-flagged is as it was.
                    (Some(Fate::Failed(_)), Some(e)) => {
                        if let Some(h) = p.held_hash.or(p.hash) {
                            c.add(e.base(), e.size, e.mtime_ns, &h);
                        }
                    }
                    _ => {}
                }
            }
            if let (Some(c), Some(k)) = (self.source_cache.as_mut(), &p.loaded.key)
                && let Some(Fate::Copied { sha, .. } | Fate::Skipped { sha, .. } | Fate::FlagsUpdated { sha, .. }) = &f
            {
                c.add(&k.base, k.size, k.mtime_ns, sha);
                if p.cached && p.hash == Some(*sha) {
                    self.source_cache_same += 1;
                }
            }
            tally(p, f.unwrap_or(Fate::NotMail), tn, tdir, rec, out);
        }
    }
}

pub(super) fn update_flags(w: &FolderWriter<'_>, p: &Prepared<'_>) -> Fate {
    let (Some(d), Some(e)) = (p.decision.filter(|d| d.updates()), &p.held) else {
        return Fate::Failed(p.loaded.origin.problem("internal: no target message to re-flag"));
    };
    let _ = d;
    match w.set_flags(e, &p.loaded.meta) {
        Ok((sub, name)) => {
            Fate::FlagsUpdated { sha: p.hash.unwrap_or_default(), name: format!("{}/{name}", sub.as_str()) }
        }
        Err(err) => Fate::Failed(err.problem()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The staying messages are the indexed ones less those deleted, in order, whatever
        /// the hashes and places deleted (both sides sorted, through runs of any size).
        #[test]
        fn without_leaves_out_exactly_the_deleted(
            index in proptest::collection::btree_set((0u8..5, 0u64..40), 0..40),
            pick in proptest::collection::vec(any::<bool>(), 40),
            budget in 1usize..300,
        ) {
            let index: Vec<(Hash, u64)> = index.into_iter().map(|(h, i)| ([h; 32], i)).collect();
            let mut gone = Sorter::with_budget(budget);
            for (t, p) in index.iter().zip(&pick) {
                if *p {
                    gone.push(Deleted { hash: t.0, idx: t.1 }).unwrap();
                }
            }
            let gone = gone.sorted().unwrap();
            let got: Vec<Hash> = without(index.iter().map(|t| Ok(*t)), gone.iter()).map(Result::unwrap).collect();
            let want: Vec<Hash> = index.iter().zip(&pick).filter(|(_, p)| !**p).map(|(t, _)| t.0).collect();
            prop_assert_eq!(got, want);
        }
    }
}
