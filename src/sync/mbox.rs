//! Writing a folder into an mbox target: the file is rewritten once, in order, under its
//! locks, and replaced whole or not at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::by_headers;
use super::choose_deletions;
use super::fate::{Fate, account, candidate, settled, tally};
use super::join::{Held, Outcome, Wanted, join};
use super::load::{Feed, Prepared, load_chunk};
use super::maildir::{duplicates, spill_error};
use super::plan::{Identity, IdentityBy};
use super::planned::{Decided, Place};
use super::{FolderJob, SyncOptions};
use crate::deletion;
use crate::error::{Error, Kind, Problem, Result};
use crate::events::Event;
use crate::interrupt;
use crate::message::Meta;
use crate::report::FolderOutcome;
use crate::source::{self, Opened, Ref};
use crate::spill::{Sorted, Sorter, Spill};
use crate::store::maildir::uidlist;
use crate::store::mbox::flavour::Flavour;
use crate::store::mbox::grow::{self, AppendPoint, append_point};
use crate::store::mbox::lock as mbox_lock;
use crate::store::mbox::read::MboxMessage;
use crate::store::mbox::read::{MboxFile, ReadOptions, Variant};
use crate::store::mbox::target as mbox_target;
use crate::store::mbox::write::{self as mbox_write, ImapBase, MboxWriter};
use crate::sync::plan::{Decision, Hash, Planner, Rules};
use crate::wire::{put_u64, take_u64};

pub(super) const CHANGED: &str = "the message changed while it was copied; not copied (the next run copies it)";

/// A mapped source file written into an mbox must not have changed meanwhile: the folder is
/// then not written (its temporary mbox is dropped) and the next run does it.
pub(super) fn still_the_same(l: &source::Loaded<'_>) -> Result<()> {
    if l.body.intact() { Ok(()) } else { Err(Error::of(Kind::Changed, l.origin.path(), CHANGED)) }
}

/// An existing target mbox as read: the file (read again, in order, when it is rewritten),
/// what the locked commit checks, and its messages' count (they went to the plan).
pub(super) struct TargetMbox {
    file: MboxFile,
    read: mbox_write::Read,
    count: u64,
    /// The flavour it is in, when known: how it is read.
    flavour: Option<Flavour>,
    /// Its UIDVALIDITY and last UID, kept when it is rewritten.
    imap: Option<ImapBase>,
    /// Where messages can be added without a rewrite (`None`: the file cannot grow in place).
    grow: Option<AppendPoint>,
}

/// How a target mbox is read: as the flavour it was written in when that is known, else
/// Content-Length where it is consistent and mboxrd elsewhere.
pub(crate) fn target_mbox_read_options(flavour: Option<Flavour>) -> ReadOptions {
    ReadOptions {
        variant: flavour.map_or(Variant::Auto, Flavour::variant),
        zone: crate::store::mbox::date::Zone::Utc,
        keep_internal_headers: false,
        as_target: true,
    }
}

/// The flavour of the existing mbox `file` in `place`, as far as it can be told: the one its
/// state recorded, else Dovecot's when its first message has X-IMAPbase and X-UID and a
/// Content-Length that delimits it (an mboxrd file Dovecot rewrote has the first two only
/// when its first body is short: read as of unknown make); `None` for mail of unknown make.
pub(crate) fn existing_flavour(place: &mbox_target::Place, file: &MboxFile) -> (Option<Flavour>, Option<ImapBase>) {
    let ro = target_mbox_read_options(None);
    let first = file.entries(&ro).next().map(|e| (e.by_length, file.message(&e, &ro)));
    let imap = first.as_ref().and_then(|(_, m)| m.imap_base);
    let recorded = crate::sync::state::recorded_mbox_format(&place.dir, &place.path);
    let seen =
        first.filter(|(by_length, m)| *by_length && m.imap_base.is_some() && m.uid.is_some()).map(|_| Flavour::Dovecot);
    (recorded.or(seen), imap)
}

/// Bytes of a mapped mbox read before its pages are let go: touching a message maps the
/// pages around it, so resident memory grows with the bytes passed, not the messages read.
const RELEASE_EVERY: usize = 4 << 20;

/// Each message of `file` that is mail, with its place among them; mapped pages are let go
/// behind.
fn each_message(
    file: &MboxFile,
    flavour: Option<Flavour>,
    mut f: impl FnMut(u64, MboxMessage<'_>) -> Result<()>,
) -> Result<()> {
    let ro = target_mbox_read_options(flavour);
    let (mut idx, mut released) = (0, 0);
    for e in file.entries(&ro) {
        let m = file.message(&e, &ro);
        if !m.pseudo {
            f(idx, m)?;
            idx += 1;
        }
        if e.msg.end - released >= RELEASE_EVERY {
            file.release_before(e.msg.end);
            released = e.msg.end;
        }
    }
    file.intact()
}

/// Reads an existing target mbox; its messages go to `held` (for the join). What a run killed
/// while it appended to the file left is taken back first ([`grow::recover`]), and said.
pub(super) fn read_target_mbox(
    place: &mbox_target::Place,
    held: &mut Sorter<Held>,
    opts: &SyncOptions,
    out: &mut FolderOutcome,
) -> Result<Option<TargetMbox>> {
    let dry_run = opts.dry_run;
    if let Some(said) = grow::recover(&place.dir, &place.name, mbox_lock::WRITE_WAIT, dry_run)? {
        out.warnings.push(Problem::new(&place.path, said));
    }
    let Some((file, read)) = mbox_target::read_existing(place)? else { return Ok(None) };
    if file.check().is_err() && !file.is_empty() {
        return Err(Error::of(Kind::Malformed, &place.path, "target exists and is not an mbox; not overwritten"));
    }
    let (flavour, imap) = existing_flavour(place, &file);
    let mut count = 0;
    let mut max_uid = 0;
    each_message(&file, flavour, |idx, m| {
        count += 1;
        max_uid = max_uid.max(m.uid.unwrap_or(0));
        let key = (opts.identity == IdentityBy::Headers).then(|| by_headers::key_of(&m.pieces)).flatten();
        let h = Held { hash: Identity::Mbox.hash(&m.pieces), idx, meta: m.meta, entry: Vec::new(), key };
        held.push(h).map_err(|e| spill_error(&place.path, e))
    })?;
    let first = file.entries(&target_mbox_read_options(flavour)).next().map(|e| e.msg.start);
    let grow = append_point(&file, first, max_uid);
    Ok(Some(TargetMbox { file, read, count, flavour, imap, grow }))
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
/// copies too (another copier, a second run, wrote meanwhile: keeping both would double it),
/// or a UID up to `last_uid`, the last one this run's file gives out (Dovecot delivered it with
/// a UID this run gave to another message: kept, it would be numbered twice).
pub(super) fn appended_is_new_mail(
    cur: &std::fs::File,
    from: u64,
    path: &Path,
    (ours, last_uid): (&Sorted<Hash>, u32),
) -> Result<()> {
    let f = MboxFile::from_file(cur.try_clone().map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?, path)?;
    // Mail of any make: what another program appended.
    let ro = target_mbox_read_options(None);
    let from = usize::try_from(from).map_err(|_| Error::bad(path, "file too large for this machine"))?;
    let mut appended = Sorter::new();
    let mut taken_uid = false;
    for e in f.entries_from(&ro, from) {
        let m = f.message(&e, &ro);
        if !m.pseudo {
            taken_uid |= m.uid.is_some_and(|u| u <= last_uid);
            appended.push(Identity::Mbox.hash(&m.pieces)).map_err(|e| spill_error(path, e))?;
        }
    }
    f.intact()?;
    if taken_uid {
        return Err(Error::bad(
            path,
            "mail delivered during the run has UIDs this run gives to other messages; not written, run again",
        ));
    }
    let appended = appended.sorted().map_err(|e| spill_error(path, e))?;
    if shared(&appended, ours).map_err(|e| spill_error(path, e))? {
        return Err(Error::bad(
            path,
            "another program appended copies of messages this run copies (a second run?); not written, run again",
        ));
    }
    Ok(())
}

/// Whether two sorted lists of hashes have one in common.
fn shared(a: &Sorted<Hash>, b: &Sorted<Hash>) -> std::io::Result<bool> {
    let mut counts = deletion::CountsOf::new(b.iter());
    for x in a.iter() {
        if counts.of(&x?)? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What committing an mbox checks: the mboxes read for it (source and old target) must be as
/// they were, the target as `was` found it, and mail appended meanwhile must hold none of
/// `ours` (the hash keys of this run's copies).
pub(super) struct Checks<'c> {
    read: &'c [&'c MboxFile],
    was: Option<&'c mbox_write::Read>,
    ours: &'c Sorted<Hash>,
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
    let last_uid = w.last_uid();
    let vet = |cur: &std::fs::File, from: u64| appended_is_new_mail(cur, from, &path, (ours, last_uid));
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
        let why = format!("{kept} bytes of mail another program appended during the run were kept");
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

/// Reads a source folder in order for an mbox target, each message loaded and hashed as an
/// mbox holds it: load errors and the source's counts are taken here, `each` gets the rest,
/// and mapped pages are released chunk by chunk.
fn read_for_mbox<'o>(
    opened: &'o Opened,
    job: FolderJob<'_>,
    out: &mut FolderOutcome,
    mut each: impl FnMut(Prepared<'o>, &mut FolderOutcome) -> Result<()> + Send,
) -> Result<()> {
    let opts = job.opts;
    let load = |refs: Vec<Ref>| {
        let prepared = load_chunk(opened, &refs, opts, Some(Identity::Mbox));
        (refs, prepared)
    };
    // Two chunks are in memory at a time here: each gets half the usual budget.
    let mut chunks = opened.chunks_of(&opts.read, source::CHUNK_BYTES / 2);
    let mut current = chunks.next().map(load);
    // The next chunk is read and hashed while this one is taken: `each` is sequential, and a
    // big folder would otherwise keep one core idle at every chunk.
    while let Some((refs, prepared)) = current.take() {
        if let Some(sig) = interrupt::requested() {
            return Err(Error::Interrupted(sig));
        }
        let following = chunks.next();
        let (done, next) = rayon::join(
            || -> Result<()> {
                for p in prepared {
                    match p {
                        Ok(p) => {
                            account(&p, out);
                            each(p, out)?;
                        }
                        Err(e) => out.errors.push(e),
                    }
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
    flavour: Flavour,
    out: &mut FolderOutcome,
) -> Result<()> {
    let (tn, rec, opts) = (job.tn, job.rec, job.opts);
    let path = &place.path;
    let before = out.counts.clone();
    let mut w = MboxWriter::create(&place.dir, &place.name, flavour, opts.owner, opts.durable)?;
    w.set_keywords(keywords.into_iter().collect());
    // A Maildir Dovecot numbered gives its UIDVALIDITY and UIDs (its listing is in UID order)
    // to a new Dovecot mbox; the messages it did not number get UIDs after its last one.
    let carry = flavour == Flavour::Dovecot;
    if let Some((validity, last_uid)) = uidlist::source_header(job.source_path).filter(|_| carry) {
        w.keep_imap_state(Some(ImapBase { validity, last_uid }));
    }
    let mut ours = Sorter::new();
    let mut planner: Planner = Planner::new([], rules(opts));
    let res = read_for_mbox(opened, job, out, |p, out| {
        let decision = planner.decide(candidate(&p));
        let fate = match settled(decision, &p) {
            Some(f) => f,
            None => {
                w.append(&p.loaded.body.pieces(), &p.loaded.meta, p.loaded.uid.filter(|_| carry))?;
                still_the_same(&p.loaded)?;
                let sha = p.hash.unwrap_or_default();
                ours.push(sha).map_err(|e| spill_error(path, e))?;
                Fate::Copied { sha, size: p.loaded.body.len(), name: String::new() }
            }
        };
        tally(&p, fate, tn, path, rec, out);
        Ok(())
    });
    out.counts.messages_target = out.counts.transferred;
    let ours = ours.sorted().map_err(|e| spill_error(path, e))?;
    out.counts.duplicates_source += duplicates(ours.iter()).map_err(|e| spill_error(path, e))?;
    // A file that appeared meanwhile (a delivery) is kept after the copies by the commit.
    commit_mbox(w, res, Checks { read: &[], was: None, ours: &ours }, job, &before, out)?;
    out.mbox_format = Some(flavour.name());
    Ok(())
}

/// Writes a source folder into an mbox target, in two passes over the source. The first
/// reads each message (its state and place, sorted by hash); the plan joins them with the
/// target's messages hash by hash ([`join`]); the second rewrites the file once, in order:
/// the target's messages it keeps (in their new states), then the copies, each read again.
/// Memory stays that of a chunk whatever the sizes of the folders.
pub(super) fn to_mbox(
    opened: &Opened,
    job: FolderJob<'_>,
    shown: PathBuf,
    place: Option<mbox_target::Place>,
    flavour: Flavour,
    out: &mut FolderOutcome,
) -> Result<()> {
    let (tn, opts) = (job.tn, job.opts);
    let mut held = Sorter::new();
    let existing = match &place {
        Some(p) => read_target_mbox(p, &mut held, opts, out)?,
        None => None,
    };
    if existing.is_none()
        && let (Some(place), Opened::Maildir { listed: Some(listing), .. }) = (&place, opened)
        && !opts.dry_run
    {
        // A new mbox from a listed Maildir: the keywords for X-IMAPbase are known from the
        // names, so every file is read once, hashed and written in the same pass.
        return new_mbox_from_maildir(opened, job, place, listing.keywords.clone(), flavour, out);
    }
    let path = place.as_ref().map_or(shown, |p| p.path.clone());
    let err = |e| spill_error(&path, e);
    let before = out.counts.clone();
    let rules = rules(opts);
    // Pass 1: what needs no target message is decided at once; the rest waits for the join.
    let mut planner: Planner = Planner::new([], rules.clone());
    let (mut wanted, mut decided) = (Sorter::new(), Sorter::new());
    let mut seq = 0;
    read_for_mbox(opened, job, out, |p, out| {
        let decision = planner.decide(candidate(&p));
        let Some(place) = p.place() else {
            out.errors.push(p.loaded.origin.problem("internal: no way to read this message again; not copied"));
            return Ok(());
        };
        let mut bytes = Vec::new();
        place.encode(&mut bytes);
        seq += 1;
        let key = match opts.identity {
            IdentityBy::Headers if !p.loaded.body.is_unread() => by_headers::key_of(&p.loaded.body.pieces()),
            _ => None,
        };
        let meta = p.loaded.meta;
        match (decision, p.hash) {
            (Decision::Copy, Some(hash)) => wanted.push(Wanted {
                hash,
                seq,
                meta,
                place: bytes,
                cached: false,
                key,
                content: None,
                by_headers: false,
            }),
            (decision, hash) => decided.push(Decided {
                seq,
                decision,
                hash,
                meta,
                place: bytes,
                held: None,
                cached: false,
                by_headers: false,
                q: 0,
            }),
        }
        .map_err(err)
    })?;
    let wanted = wanted.sorted().map_err(err)?;
    let held = held.sorted().map_err(err)?;
    // No record of copies beside an mbox (Dovecot would list it as a mailbox): --delete cannot
    // tell copies from other mail there and deletes nothing; --mirror works.
    let record = deletion::Record::default();
    // Counted before pairing: a message paired is joined under another hash.
    let duplicates = duplicates(wanted.iter().map(|w| w.map(|w| w.hash))).map_err(err)?;
    let wanted = match opts.identity {
        IdentityBy::Content => wanted,
        IdentityBy::Headers => {
            // Keys were taken as messages were read; a source message not read then is now.
            let mut source_key = |w: &Wanted| {
                let mut l = Feed::reload(opened, Place::decode(&w.place)?, w.meta.clone(), &opts.read).ok()?;
                Feed::read_body(opened, &mut l).ok()?;
                by_headers::key_of(&l.body.pieces())
            };
            // Counted as carried out, as the copies are.
            by_headers::pair(&wanted, held.iter(), &mut source_key, &mut |_| None).map_err(err)?.0
        }
    };
    let mut joined = Joined::new(&mut decided);
    join(wanted.iter(), held.iter(), std::iter::empty(), &rules, &mut joined).map_err(err)?;
    drop((wanted, held));
    let Joined { unmatched, restated, ours, mut keywords, copy_keywords, copies, updates, lone, .. } = joined;
    if let Some(w) = by_headers::suggestion(opts, copies, existing.as_ref().map_or(0, |t| t.count), lone, &path) {
        out.warnings.push(w);
    }
    out.counts.duplicates_source += duplicates;
    let unmatched = unmatched.sorted().map_err(err)?;
    let delete = choose_deletions(&unmatched, &record, &path, opened, opts, out).map_err(err)?;
    let mut chooser = delete.then(|| deletion::Chooser::new(opts.deletion, &record));
    let mut deletes = Sorter::new();
    for h in unmatched.iter() {
        let h = h.map_err(err)?;
        let chosen = match chooser.as_mut() {
            Some(c) => c.chosen(&h.hash).map_err(err)?,
            None => false,
        };
        if chosen {
            deletes.push(h.idx).map_err(err)?;
        } else {
            keywords.extend(h.meta.keywords.iter().map(str::to_string));
        }
    }
    drop(unmatched);
    let deletes = deletes.sorted().map_err(err)?;
    out.counts.deleted_target = deletes.len();
    let n_existing = existing.as_ref().map_or(0, |t| t.count);
    let decided = decided.sorted().map_err(err)?;
    // A file in another known flavour than the one asked for is written anew in it; mail of
    // unknown make is left as it is while nothing else changes.
    let other_flavour = existing.as_ref().is_some_and(|t| t.flavour.is_some_and(|f| f != flavour));
    let changed = copies > 0 || updates > 0 || !deletes.is_empty() || existing.is_none() || other_flavour;
    // Only adding to a file in the flavour asked for: it grows in place when it can.
    let grow = existing
        .as_ref()
        .filter(|t| updates == 0 && deletes.is_empty() && t.flavour == Some(flavour))
        .and_then(|t| t.grow.clone())
        .filter(|g| can_grow(g, flavour, &copy_keywords, place.as_ref()));
    if opts.dry_run || !changed {
        out.mbox_format = existing.as_ref().and_then(|t| t.flavour).map(Flavour::name);
        carry_out((None, false), &decided, opened, job, &path, out)?;
        out.counts.messages_target = n_existing + out.counts.transferred - out.counts.deleted_target;
        if opts.dry_run {
            out.plan_line = Some(format!(
                "{} -> {} (mbox {}): {copies} to copy, {updates} flag updates, {} to delete{}",
                job.source_name,
                tn.as_str(),
                path.display(),
                deletes.len(),
                match (&grow, changed && existing.is_some()) {
                    (Some(_), true) => ", appended in place",
                    (None, true) => ", file rewritten",
                    _ => "",
                }
            ));
        }
        return Ok(());
    }
    let Some(place) = &place else { return Err(Error::bad(&path, "internal: no place for the mbox")) };
    let restated = restated.sorted().map_err(err)?;
    let ours = ours.sorted().map_err(err)?;
    let mut w = MboxWriter::create(&place.dir, &place.name, flavour, opts.owner, opts.durable)?;
    keywords.extend(copy_keywords);
    w.set_keywords(keywords.into_iter().collect());
    // A new mbox from a Dovecot mbox keeps its UIDVALIDITY and UIDs; an existing one its own.
    // An empty file (made by --folders-only) has none: it takes the source's, from a Maildir
    // too, as a new one does.
    let blank = existing.as_ref().is_some_and(|t| t.count == 0 && t.file.is_empty());
    let source_imap = match (&existing, opened) {
        (None, Opened::Mbox(f)) => f.imap_base(),
        (Some(_), Opened::Mbox(f)) if blank => f.imap_base(),
        (Some(_), Opened::Maildir { .. }) if blank => {
            uidlist::source_header(job.source_path).map(|(validity, last_uid)| ImapBase { validity, last_uid })
        }
        _ => None,
    };
    let carry = source_imap.is_some() && flavour == Flavour::Dovecot;
    if let Some(t) = existing.as_ref().filter(|_| copies > 0 && flavour == Flavour::Dovecot) {
        uids_not_carried(job.source_path, t.imap, &path, out);
    }
    w.keep_imap_state(existing.as_ref().and_then(|t| t.imap).or(source_imap.filter(|_| carry)));
    let res = match (&existing, grow) {
        (Some(_), Some(g)) => {
            w.grow_from(g);
            Ok(())
        }
        (Some(t), None) => rewrite_kept(&mut w, t, &restated, &deletes, &path),
        (None, _) => Ok(()),
    };
    let res = match res {
        Ok(()) => carry_out((Some(&mut w), carry), &decided, opened, job, &path, out),
        Err(e) => carry_out((None, false), &decided, opened, job, &path, out).and(Err(e)),
    };
    out.counts.messages_target = n_existing + out.counts.transferred - out.counts.deleted_target;
    // The source and the target were read through mappings: both must be as they were, and
    // the target is checked again under its locks.
    let mut checks: Vec<&MboxFile> = existing.iter().map(|t| &t.file).collect();
    if let Opened::Mbox(f) = opened {
        checks.push(f);
    }
    let checks = Checks { read: &checks, was: existing.as_ref().map(|t| &t.read), ours: &ours };
    commit_mbox(w, res, checks, job, &before, out)?;
    out.mbox_format = Some(flavour.name());
    Ok(())
}

/// Says so when the source has IMAP UIDs that the copies into an existing mbox (which keeps
/// its own, `imap`) cannot keep: they get UIDs after the file's last one.
fn uids_not_carried(source: &Path, imap: Option<ImapBase>, path: &Path, out: &mut FolderOutcome) {
    let (Some(from), Some(own)) = (super::maildir::source_validity(source), imap.map(|b| b.validity)) else { return };
    if from != own {
        out.warnings.push(Problem::new(
            path,
            format!(
                "the source's IMAP UIDs were not carried to the copies: this mbox has its own UIDVALIDITY ({own}, the \
                 source's is {from}), which never changes; the copies get UIDs after its last one, so IMAP and POP3 \
                 clients fetch them as new mail"
            ),
        ));
    }
}

/// Whether new messages can go after the end of a file in the flavour asked for: Dovecot's
/// needs an X-IMAPbase whose last UID can be updated, every flavour needs the copies'
/// keywords listed there already (Dovecot honours no others), and the file must be writable.
fn can_grow(
    g: &AppendPoint,
    flavour: Flavour,
    copy_keywords: &BTreeSet<String>,
    place: Option<&mbox_target::Place>,
) -> bool {
    (flavour != Flavour::Dovecot || g.digits_at.is_some())
        && copy_keywords.iter().all(|k| g.keywords.contains(k))
        && place.is_some_and(|p| matches!(p.dir.open_file(&p.name, true), Ok(Some(_))))
}

/// A target message given a new state by the plan, by its place in the file.
#[derive(Debug, Clone)]
struct Restated {
    idx: u64,
    meta: Meta,
}

crate::ordered_by!(Restated, idx);

impl Spill for Restated {
    fn weight(&self) -> usize {
        self.meta.weight()
    }

    fn write(&self, out: &mut Vec<u8>) {
        put_u64(out, self.idx);
        self.meta.encode(out);
    }

    fn read(b: &[u8]) -> Option<Restated> {
        let (idx, b) = take_u64(b)?;
        let (meta, rest) = Meta::decode(b)?;
        rest.is_empty().then_some(Restated { idx, meta })
    }
}

/// What the join decides for an mbox target, kept for the writing pass.
struct Joined<'j> {
    decided: &'j mut Sorter<Decided>,
    unmatched: Sorter<Held>,
    restated: Sorter<Restated>,
    /// The hashes of the copies (mail appended meanwhile must hold none of them).
    ours: Sorter<Hash>,
    /// The keywords of the messages the file will hold, but for those left unmatched.
    keywords: BTreeSet<String>,
    /// Those of the copies alone.
    copy_keywords: BTreeSet<String>,
    copies: u64,
    updates: u64,
    /// Target messages no source message matched.
    lone: u64,
}

impl<'j> Joined<'j> {
    fn new(decided: &'j mut Sorter<Decided>) -> Joined<'j> {
        Joined {
            decided,
            unmatched: Sorter::new(),
            restated: Sorter::new(),
            ours: Sorter::new(),
            keywords: BTreeSet::new(),
            copy_keywords: BTreeSet::new(),
            copies: 0,
            updates: 0,
            lone: 0,
        }
    }
}

impl Outcome for Joined<'_> {
    fn decided(&mut self, w: Wanted, decision: Decision, held: Option<&Held>) -> std::io::Result<()> {
        match (decision, held) {
            (Decision::Copy, _) => {
                self.copies += 1;
                self.ours.push(w.hash)?;
                self.copy_keywords.extend(w.meta.mbox_view().keywords.iter().map(str::to_string));
            }
            (Decision::UpdateFlags(_) | Decision::UpdateDate(_), Some(h)) => {
                self.updates += 1;
                let meta = w.meta.mbox_view();
                self.keywords.extend(meta.keywords.iter().map(str::to_string));
                self.restated.push(Restated { idx: h.idx, meta })?;
            }
            (_, Some(h)) => self.keywords.extend(h.meta.keywords.iter().map(str::to_string)),
            (_, None) => {}
        }
        let Wanted { hash, seq, meta, place, cached, by_headers, .. } = w;
        self.decided.push(Decided {
            seq,
            decision,
            hash: Some(hash),
            meta,
            place,
            held: None,
            cached,
            by_headers,
            q: 0,
        })
    }

    fn unmatched(&mut self, held: Held) -> std::io::Result<()> {
        self.lone += 1;
        self.unmatched.push(held)
    }
}

/// The target's messages the plan keeps, each as it is or in its new state.
fn rewrite_kept(
    w: &mut MboxWriter<'_>,
    t: &TargetMbox,
    restated: &Sorted<Restated>,
    deletes: &Sorted<u64>,
    path: &Path,
) -> Result<()> {
    let mut restated = restated.iter().peekable();
    let mut deletes = deletes.iter().peekable();
    each_message(&t.file, t.flavour, |idx, m| {
        let mut meta = None;
        while let Some(r) = restated.next_if(|r| r.as_ref().map_or(true, |r| r.idx <= idx)) {
            let r = r.map_err(|e| spill_error(path, e))?;
            if r.idx == idx {
                meta = Some(r.meta);
            }
        }
        let mut deleted = false;
        while let Some(d) = deletes.next_if(|d| d.as_ref().map_or(true, |d| *d <= idx)) {
            deleted |= d.map_err(|e| spill_error(path, e))? == idx;
        }
        if deleted {
            return Ok(());
        }
        w.append(&m.pieces, meta.as_ref().unwrap_or(&m.meta), m.uid)
    })
}

/// The second pass over the source, in its order: each message is counted by its decision,
/// and with a writer each copy is read again (it must still be the message decided on) and
/// appended. After a failed write the rest is only counted (the commit then takes the copies
/// back as failed).
fn carry_out(
    (mut w, carry): (Option<&mut MboxWriter<'_>>, bool),
    decided: &Sorted<Decided>,
    opened: &Opened,
    job: FolderJob<'_>,
    path: &Path,
    out: &mut FolderOutcome,
) -> Result<()> {
    let (tn, rec, ropts) = (job.tn, job.rec, &job.opts.read);
    let mut res = Ok(());
    let mut released = 0;
    for (i, d) in decided.iter().enumerate() {
        let d = d.map_err(|e| spill_error(path, e))?;
        if i % 256 == 0
            && let Some(sig) = interrupt::requested()
        {
            return Err(Error::Interrupted(sig));
        }
        let place = Place::decode(&d.place)
            .ok_or_else(|| spill_error(path, std::io::Error::other("a planned source message does not read back")))?;
        let release = match &place {
            Place::Mbox(e) if e.msg.end.saturating_sub(released) >= RELEASE_EVERY => {
                released = e.msg.end;
                Some(place.clone())
            }
            _ => None,
        };
        let loaded = match opened.reload(place, d.meta, ropts) {
            Ok(l) => l,
            Err(e) => {
                rec.record(Event::Error { folder: tn.clone(), problem: e.clone() });
                out.errors.push(e);
                out.counts.failed += u64::from(d.decision == Decision::Copy);
                continue;
            }
        };
        let mut p = Prepared::new(loaded, d.hash);
        p.by_headers = d.by_headers;
        let sha = d.hash.unwrap_or_default();
        let fate = match settled(d.decision, &p) {
            Some(f) => f,
            None if d.decision != Decision::Copy => Fate::FlagsUpdated { sha, name: String::new() },
            None => match w.as_deref_mut().filter(|_| res.is_ok()) {
                // Counted only: a dry run, or after a failed write.
                None => Fate::Copied { sha, size: p.loaded.body.len(), name: String::new() },
                Some(w) => match copy_again(w, &mut p, opened, carry) {
                    Ok(true) => Fate::Copied { sha, size: p.loaded.body.len(), name: String::new() },
                    Ok(false) => {
                        // Deleted from the source between the two passes.
                        out.counts.vanished_source += 1;
                        out.counts.messages_source = out.counts.messages_source.saturating_sub(1);
                        Fate::NotMail
                    }
                    Err(Ok(problem)) => Fate::Failed(problem),
                    Err(Err(e)) => {
                        res = Err(e);
                        Fate::Copied { sha, size: p.loaded.body.len(), name: String::new() }
                    }
                },
            },
        };
        tally(&p, fate, tn, path, rec, out);
        if let Some(pl) = release {
            Feed::release(opened, &pl);
        }
    }
    res
}

/// Reads a copy again and appends it: `Ok(false)` when it is gone from the source,
/// `Err(Ok(_))` when it is not the message decided on (not written), `Err(Err(_))` when the
/// write failed.
/// With `carry`, the message keeps the UID it has in the source (a new mbox from a Dovecot mbox).
fn copy_again(
    w: &mut MboxWriter<'_>,
    p: &mut Prepared<'_>,
    opened: &Opened,
    carry: bool,
) -> std::result::Result<bool, std::result::Result<Problem, Error>> {
    opened.read_body(&mut p.loaded).map_err(Ok)?;
    if p.loaded.gone {
        return Ok(false);
    }
    if p.hash.is_some_and(|h| Identity::Mbox.hash(&p.loaded.body.pieces()) != h) {
        return Err(Ok(p
            .loaded
            .origin
            .problem("the message changed while the run read it; not copied (the next run does)")));
    }
    w.append(&p.loaded.body.pieces(), &p.loaded.meta, p.loaded.uid.filter(|_| carry)).map_err(Err)?;
    still_the_same(&p.loaded).map_err(Err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Two sorted lists share a hash exactly when their sets meet, however they spill.
        #[test]
        fn shared_is_set_intersection(
            a in proptest::collection::vec(0u8..40, 0..30),
            b in proptest::collection::vec(0u8..40, 0..30),
            budget in 1usize..200,
        ) {
            let sorted = |v: &[u8]| {
                let mut s = Sorter::with_budget(budget);
                for x in v {
                    s.push([*x; 32]).unwrap();
                }
                s.sorted().unwrap()
            };
            let want = a.iter().any(|x| b.contains(x));
            prop_assert_eq!(shared(&sorted(&a), &sorted(&b)).unwrap(), want);
            prop_assert_eq!(shared(&sorted(&b), &sorted(&a)).unwrap(), want);
        }

        #[test]
        fn restated_reads_back(idx in any::<u64>(), date in any::<i64>(), kw in any::<bool>()) {
            let mut meta = Meta::new(date, crate::message::DateSource::FromLine);
            if kw {
                meta.keywords.insert("$Label1");
            }
            let r = Restated { idx, meta };
            let mut b = Vec::new();
            r.write(&mut b);
            let back = Restated::read(&b).unwrap();
            prop_assert_eq!((back.idx, &back.meta), (idx, &r.meta));
            prop_assert!(Restated::read(&b[..b.len() - 1]).is_none());
        }
    }

    /// Mail another program appended during the run is kept, unless it holds a copy this run
    /// makes too (a second copier): then the folder is not written.
    #[test]
    fn appended_copies_of_ours_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("t.mbox");
        let old = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: old\n\nold\n\n".to_vec();
        let new = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: new\n\nnew\n\n".to_vec();
        std::fs::write(&path, [old.clone(), new].concat()).unwrap();
        let f = MboxFile::open(&path).unwrap();
        let ro = target_mbox_read_options(None);
        let hashes: Vec<Hash> = f.entries(&ro).map(|e| Identity::Mbox.hash(&f.message(&e, &ro).pieces)).collect();
        let sorted = |v: &[Hash]| {
            let mut s = Sorter::with_budget(1);
            v.iter().for_each(|h| s.push(*h).unwrap());
            s.sorted().unwrap()
        };
        let file = std::fs::File::open(&path).unwrap();
        let from = old.len() as u64;
        // Ours is the old message only: what was appended is someone else's mail.
        appended_is_new_mail(&file, from, &path, (&sorted(&hashes[..1]), 0)).unwrap();
        let e = appended_is_new_mail(&file, from, &path, (&sorted(&hashes), 0)).unwrap_err();
        assert!(e.to_string().contains("a second run"), "{e}");
        // Delivered by Dovecot with a UID this run gives out too: refused; above it, kept.
        let uid = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: new\nX-UID: 5\n\nnew\n\n".to_vec();
        std::fs::write(&path, [old.clone(), uid].concat()).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let e = appended_is_new_mail(&file, from, &path, (&sorted(&hashes[..1]), 5)).unwrap_err();
        assert!(e.to_string().contains("UIDs this run gives"), "{e}");
        appended_is_new_mail(&file, from, &path, (&sorted(&hashes[..1]), 4)).unwrap();
    }
}
