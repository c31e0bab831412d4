//! Writing a folder into an mbox target: the file is rewritten once, in order, under its
//! locks, and replaced whole or not at all.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::choose_deletions;
use super::fate::Fate;
use super::fate::hash_key;
use super::fate::tally;
use super::fate::{account, candidate, settled};
use super::load::Prepared;
use super::load::load_chunk;
use super::plan::Identity;
use super::{FolderJob, SyncOptions};
use crate::deletion::{self};
use crate::error::{Error, Problem, Result};
use crate::events::Event;
use crate::interrupt;
use crate::message::Meta;
use crate::report::FolderOutcome;
use crate::source::{self, Opened, Ref};
use crate::store::mbox::lock as mbox_lock;
use crate::store::mbox::read::{MboxFile, ReadOptions};
use crate::store::mbox::target as mbox_target;
use crate::store::mbox::write::{self as mbox_write, MboxWriter};
use crate::sync::plan::{Decision, Hash, Planner, Rules, TargetMetas};

pub(super) const CHANGED: &str = "the message changed while it was copied; not copied (the next run copies it)";

/// A mapped source file written into an mbox must not have changed meanwhile: the folder is
/// then not written (its temporary mbox is dropped) and the next run does it.
pub(super) fn still_the_same(l: &source::Loaded<'_>) -> Result<()> {
    if l.body.intact() { Ok(()) } else { Err(Error::bad(l.origin.path(), CHANGED)) }
}

/// An existing target mbox as read: its messages, and what the locked commit checks.
pub(super) struct TargetMbox {
    file: MboxFile,
    read: mbox_write::Read,
    entries: Vec<(crate::store::mbox::split::Entry, Hash, Meta)>,
}

pub(super) fn target_mbox_read_options() -> ReadOptions {
    ReadOptions {
        variant: crate::store::mbox::read::Variant::Auto,
        zone: crate::store::mbox::date::Zone::Utc,
        keep_internal_headers: false,
    }
}

pub(super) fn read_target_mbox(place: &mbox_target::Place) -> Result<Option<TargetMbox>> {
    let Some((file, read)) = mbox_target::read_existing(place)? else { return Ok(None) };
    if file.check().is_err() && !file.is_empty() {
        return Err(Error::bad(&place.path, "target exists and is not an mbox; not overwritten"));
    }
    let ro = target_mbox_read_options();
    let mut entries = Vec::new();
    for (i, e) in file.entries(&ro).enumerate() {
        let m = file.message(&e, &ro);
        if !m.pseudo {
            entries.push((e.clone(), Identity::Mbox.hash(&m.pieces), m.meta));
        }
        if i % 1024 == 1023 {
            file.release_before(e.msg.end);
        }
    }
    file.intact()?;
    Ok(Some(TargetMbox { file, read, entries }))
}

/// Takes back the counts of messages a failed mbox commit did not write (counted from
/// `before`): they are failed, not transferred, and the folder says so.
pub(super) fn uncount_failed_commit(before: &crate::report::Counts, out: &mut FolderOutcome) {
    let c = &mut out.counts;
    let copied = c.transferred.saturating_sub(before.transferred);
    let flagged = c.flags_updated.saturating_sub(before.flags_updated);
    c.transferred = before.transferred;
    c.bytes_transferred = before.bytes_transferred;
    c.flags_updated = before.flags_updated;
    c.skipped_existing = c.skipped_existing.saturating_sub(flagged);
    c.deleted_target = before.deleted_target;
    c.messages_target = before.messages_target;
    c.failed += copied + flagged;
}

/// Mail appended to a target mbox during the run is kept, unless it holds a message this run
/// copies too: then another copier (a second run) wrote meanwhile, and keeping both would
/// double it.
pub(super) fn appended_is_new_mail(cur: &std::fs::File, from: u64, path: &Path, ours: &HashSet<[u8; 8]>) -> Result<()> {
    let f = MboxFile::from_file(cur.try_clone().map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?, path)?;
    let ro = target_mbox_read_options();
    let from = usize::try_from(from).map_err(|_| Error::bad(path, "file too large for this machine"))?;
    for e in f.entries_from(&ro, from) {
        let m = f.message(&e, &ro);
        if !m.pseudo && ours.contains(&hash_key(&Identity::Mbox.hash(&m.pieces))) {
            return Err(Error::bad(
                path,
                "another program appended copies of messages this run copies (a second run?); not written, run again",
            ));
        }
    }
    f.intact()
}

/// What committing an mbox checks: the mboxes read for it (source and old target) must be as
/// they were, the target as `was` found it, and mail appended meanwhile must hold none of
/// `ours` (the hash keys of this run's copies).
pub(super) struct Checks<'c> {
    read: &'c [&'c MboxFile],
    was: Option<&'c mbox_write::Read>,
    ours: &'c HashSet<[u8; 8]>,
}

/// Commits an mbox written for a folder, or gives it up: the sources read must still be as
/// they were, then [`MboxWriter::commit`] checks the target under its locks. On failure the
/// folder's counts say that nothing was written.
pub(super) fn commit_mbox(
    w: MboxWriter<'_>,
    res: Result<()>,
    checks: Checks<'_>,
    job: FolderJob<'_>,
    before: &crate::report::Counts,
    out: &mut FolderOutcome,
) -> Result<()> {
    let Checks { read: checks, was, ours } = checks;
    let path = w.path().to_path_buf();
    let vet = |cur: &std::fs::File, from: u64| appended_is_new_mail(cur, from, &path, ours);
    // Checked before the wait for the locks and again, last, under them.
    let ready = || checks.iter().try_for_each(|f| f.intact());
    let res = match res.and_then(|()| ready()) {
        Ok(()) => w.commit(was, mbox_lock::WRITE_WAIT, &vet, &ready),
        Err(e) => {
            w.abort();
            Err(e)
        }
    };
    if let Ok(kept) = res
        && kept > 0
    {
        let why = format!("{kept} bytes of mail another program appended during the run were kept after the copies");
        out.warnings.push(Problem::new(&path, why));
    }
    if let Err(e) = &res {
        uncount_failed_commit(before, out);
        let p = e.problem();
        job.rec.record(Event::Error {
            folder: job.tn.clone(),
            problem: Problem { reason: format!("{}; none of this folder's copies were written", p.reason), ..p },
        });
    }
    res.map(|_| ())
}

/// Reads a source folder in order for an mbox target: each message, once loaded (hashed as an
/// mbox holds it), is decided by `planner`, and `act` carries out the decisions that write;
/// load errors, counts and events are handled here, and mapped pages are released chunk by
/// chunk.
pub(super) fn for_mbox_target<T: TargetMetas + Send>(
    opened: &Opened,
    job: FolderJob<'_>,
    path: &Path,
    out: &mut FolderOutcome,
    planner: &mut Planner<T>,
    mut act: impl FnMut(&Ref, &Prepared<'_>, Decision) -> Result<Fate> + Send,
) -> Result<()> {
    let (tn, opts, rec) = (job.tn, job.opts, job.rec);
    let mut seen = HashSet::new();
    let load = |refs: Vec<Ref>| {
        let prepared = load_chunk(opened, &refs, opts, Some(Identity::Mbox));
        (refs, prepared)
    };
    // Two chunks are in memory at a time here: each gets half the usual budget.
    let mut chunks = opened.chunks_of(&opts.read, source::CHUNK_BYTES / 2);
    let mut current = chunks.next().map(load);
    // The next chunk is read and hashed while this one is written: the writer is sequential,
    // and a big folder would otherwise keep one core idle at every chunk.
    while let Some((refs, prepared)) = current.take() {
        if let Some(sig) = interrupt::requested() {
            return Err(Error::Interrupted(sig));
        }
        let following = chunks.next();
        let (done, next) = rayon::join(
            || -> Result<()> {
                for (r, p) in refs.iter().zip(prepared) {
                    let p = match p {
                        Ok(p) => p,
                        Err(e) => {
                            out.errors.push(e);
                            continue;
                        }
                    };
                    account(&p, out);
                    let decision = planner.decide(candidate(&p));
                    let fate = match settled(decision, &p) {
                        Some(f) => f,
                        None => act(r, &p, decision)?,
                    };
                    if let Fate::Copied { sha, .. } | Fate::Skipped { sha } | Fate::FlagsUpdated { sha, .. } = &fate
                        && !seen.insert(hash_key(sha))
                    {
                        out.counts.duplicates_source += 1;
                    }
                    tally(&p, fate, tn, path, rec, out);
                }
                Ok(())
            },
            || following.map(load),
        );
        done?;
        opened.release(&refs);
        current = next;
    }
    Ok(())
}

/// The plan's rules for an mbox target: flags as an mbox holds them, no date bound.
fn rules(opts: &SyncOptions) -> Rules {
    Rules { filters: opts.filters.clone(), bounds: None, mbox: true }
}

/// Writes a new mbox from a Maildir folder in one pass (see [`to_mbox`]).
pub(super) fn new_mbox_from_maildir(
    opened: &Opened,
    job: FolderJob<'_>,
    place: &mbox_target::Place,
    keywords: std::collections::BTreeSet<String>,
    out: &mut FolderOutcome,
) -> Result<()> {
    let opts = job.opts;
    let before = out.counts.clone();
    let mut w = MboxWriter::create(&place.dir, &place.name, opts.owner, opts.durable)?;
    w.set_keywords(keywords.into_iter().collect());
    let mut ours = HashSet::new();
    let mut planner: Planner = Planner::new([], rules(opts));
    let res = for_mbox_target(opened, job, &place.path, out, &mut planner, |_, p, _| {
        w.append(&p.loaded.body.pieces(), &p.loaded.meta)?;
        still_the_same(&p.loaded)?;
        let sha = p.hash.unwrap_or_default();
        ours.insert(hash_key(&sha));
        Ok(Fate::Copied { sha, size: p.loaded.body.len(), name: String::new() })
    });
    out.counts.messages_target = out.counts.transferred;
    // A file that appeared meanwhile (a delivery) is kept after the copies by the commit.
    commit_mbox(w, res, Checks { read: &[], was: None, ours: &ours }, job, &before, out)
}

pub(super) fn to_mbox(
    opened: &Opened,
    job: FolderJob<'_>,
    shown: PathBuf,
    place: Option<mbox_target::Place>,
    out: &mut FolderOutcome,
) -> Result<()> {
    let (tn, opts) = (job.tn, job.opts);
    let existing = match &place {
        Some(p) => read_target_mbox(p)?,
        None => None,
    };
    if existing.is_none()
        && let (Some(place), Opened::Maildir { listed: Some(listing), .. }) = (&place, opened)
        && !opts.dry_run
    {
        // A new mbox from a listed Maildir: the keywords for X-IMAPbase are known from the
        // names, so every file is read once, hashed and written in the same pass.
        return new_mbox_from_maildir(opened, job, place, listing.keywords.clone(), out);
    }
    // No record of copies beside an mbox (Dovecot would list it as a mailbox): --delete cannot
    // tell copies from other mail there and deletes nothing; --mirror works.
    let mut record = deletion::Record::default();
    let path = place.as_ref().map_or(shown, |p| p.path.clone());
    let before = out.counts.clone();
    let targets = existing.iter().flat_map(|t| t.entries.iter().map(|(_, h, m)| (*h, m)));
    let mut planner = Planner::new(targets, rules(opts));
    let mut updates: Vec<Option<Meta>> = vec![None; existing.as_ref().map_or(0, |t| t.entries.len())];
    // Phase 1: decide for every message (the file is rewritten once, in order).
    let mut copies: Vec<(Ref, Hash)> = Vec::new();
    let mut ours = HashSet::new();
    let mut keywords: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for_mbox_target(opened, job, &path, out, &mut planner, |r, p, decision| {
        let h = p.hash.unwrap_or_default();
        Ok(match decision {
            Decision::Copy => {
                ours.insert(hash_key(&h));
                keywords.extend(p.loaded.meta.keywords.iter().map(str::to_string));
                copies.push((r.clone(), h));
                Fate::Copied { sha: h, size: p.loaded.body.len(), name: String::new() }
            }
            Decision::UpdateFlags(i) | Decision::UpdateDate(i) => {
                if let Some(u) = updates.get_mut(i) {
                    *u = Some(p.loaded.meta.mbox_view());
                }
                Fate::FlagsUpdated { sha: h, name: String::new() }
            }
            _ => return Err(Error::bad(p.loaded.origin.path(), "internal: a decision that writes nothing")),
        })
    })?;
    let unmatched = planner.unmatched();
    let deletes: HashSet<usize> =
        choose_deletions(&unmatched, &mut record, &path, opened, opts, out).into_iter().collect();
    out.counts.deleted_target = deletes.len() as u64;
    if let Some(t) = &existing {
        for (i, (_, _, meta)) in t.entries.iter().enumerate().filter(|(i, _)| !deletes.contains(i)) {
            let meta = updates.get(i).and_then(Option::as_ref).unwrap_or(meta);
            keywords.extend(meta.keywords.iter().map(str::to_string));
        }
    }
    let n_existing = existing.as_ref().map_or(0, |t| t.entries.len()) as u64;
    out.counts.messages_target = n_existing + out.counts.transferred - out.counts.deleted_target;
    let changed =
        !copies.is_empty() || updates.iter().any(Option::is_some) || !deletes.is_empty() || existing.is_none();
    if opts.dry_run {
        out.plan_line = Some(format!(
            "{} -> {} (mbox {}): {} to copy, {} flag updates, {} to delete",
            job.source_name,
            tn.as_str(),
            path.display(),
            copies.len(),
            updates.iter().filter(|u| u.is_some()).count(),
            deletes.len()
        ));
        return Ok(());
    }
    if !changed {
        return Ok(());
    }
    let Some(place) = &place else { return Err(Error::bad(&path, "internal: no place for the mbox")) };
    let mut w = MboxWriter::create(&place.dir, &place.name, opts.owner, opts.durable)?;
    w.set_keywords(keywords.into_iter().collect());
    let planned = Planned { copies: &copies, updates: &updates, deletes: &deletes };
    let res = write_planned(&mut w, existing.as_ref(), planned, opened, opts, out);
    // The source and the target were read through mappings: both must be as they were, and
    // the target is checked again under its locks.
    let mut checks: Vec<&MboxFile> = existing.iter().map(|t| &t.file).collect();
    if let Opened::Mbox(f) = opened {
        checks.push(f);
    }
    let checks = Checks { read: &checks, was: existing.as_ref().map(|t| &t.read), ours: &ours };
    commit_mbox(w, res, checks, job, &before, out)
}

/// What the first pass decided for an existing mbox target: the source messages to append, the
/// existing messages' new states (by index) and the ones to leave out.
#[derive(Clone, Copy)]
struct Planned<'p> {
    copies: &'p [(Ref, Hash)],
    updates: &'p [Option<Meta>],
    deletes: &'p HashSet<usize>,
}

/// The second pass: the kept messages of the old target as they are or with their new state,
/// then each copy read again (it must still be the message decided on).
fn write_planned(
    w: &mut MboxWriter<'_>,
    existing: Option<&TargetMbox>,
    planned: Planned<'_>,
    opened: &Opened,
    opts: &SyncOptions,
    out: &mut FolderOutcome,
) -> Result<()> {
    let Planned { copies, updates, deletes } = planned;
    if let Some(t) = existing {
        let ro = target_mbox_read_options();
        for (i, (e, _, meta)) in t.entries.iter().enumerate() {
            if deletes.contains(&i) {
                continue;
            }
            let m = t.file.message(e, &ro);
            let meta = updates.get(i).and_then(Option::as_ref).unwrap_or(meta);
            w.append(&m.pieces, meta)?;
        }
    }
    for (r, planned) in copies {
        if let Some(sig) = interrupt::requested() {
            return Err(Error::Interrupted(sig));
        }
        let again = opened.load(r, &opts.read).and_then(|l| {
            if l.gone || Identity::Mbox.hash(&l.body.pieces()) == *planned {
                Ok(l)
            } else {
                Err(l.origin.problem("the message changed while the run read it; not copied (the next run does)"))
            }
        });
        match again {
            Ok(l) if l.gone => {
                // Deleted from the source between the two passes.
                out.counts.transferred = out.counts.transferred.saturating_sub(1);
                out.counts.messages_target = out.counts.messages_target.saturating_sub(1);
                out.counts.vanished_source += 1;
            }
            Ok(l) => {
                w.append(&l.body.pieces(), &l.meta)?;
                still_the_same(&l)?;
            }
            Err(p) => {
                // Counted as copied when it was decided; it is not in the file.
                out.counts.transferred = out.counts.transferred.saturating_sub(1);
                out.counts.messages_target = out.counts.messages_target.saturating_sub(1);
                out.counts.failed += 1;
                out.errors.push(p);
            }
        }
    }
    Ok(())
}
