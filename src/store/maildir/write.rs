//! Writing messages into a Maildir tree.
//!
//! Each message is created in the folder's `tmp/` (unnamed, `O_TMPFILE`, where the file system
//! allows; else under an exclusive temporary name), written, chowned, timestamped and (in
//! durable mode) synced, then linked or renamed into `new/` (never seen by a client, no info
//! part) or `cur/` (`:2,` + flags) without replacing anything, so no reader ever sees a partial
//! file. An unnamed file also leaves nothing behind when a run dies, and naming it is cheaper
//! than a rename between two directories, which the kernel serialises per file system. Names are
//! `<date>.M<order>P<hash>.<host>,S=<size>,W=<crlf size>`: the same for the same source on
//! every run (order is the message's place in its source folder, hash the first 8 hex digits
//! of its SHA-256; a name taken already gets `Q<n>` after the hash); `,S=`/`,W=` are computed
//! from the bytes actually written because Dovecot trusts them.
//!
//! Owners: `--owner` when given; else, when running as root, what is created takes the owner
//! and group of the directory it is created in (a folder's directories, its messages, its
//! `dovecot-keywords`, `maildirfolder`, the root's `subscriptions`, mailmover's own files), as
//! Dovecot does in a user's mail directory (see [`Dir::owner_for_new`]).

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::sys::time::TimeSpec;

use super::keywords::KeywordMap;
use super::layout::{self, Layout};
use super::name;
use super::read::{self, MaildirEntry, Sub};
use crate::error::{At, Error, Problem, Result};
use crate::folder::FolderName;
use crate::fsx::{self, Dir, LinkVia, Owner};
use crate::message::Meta;
use crate::mutf7;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;
const TMP_PREFIX: &str = "mailmover.";

#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    pub durable: bool,
    pub owner: Option<Owner>,
    pub layout: Layout,
}

pub struct MaildirTarget {
    pub root: Dir,
    /// Why the root's own cur/, new/ or tmp/ could not be made, if it could not.
    pub root_problem: Option<Problem>,
    pub opts: WriteOptions,
    host: String,
    pid: u32,
    usec: u32,
    seq: AtomicU64,
    /// Durable mode: the background syncs shared by the folders written at once.
    syncer: Option<fsx::Syncer>,
}

/// A message written into `tmp/`, waiting to be put in place.
#[derive(Debug)]
pub struct Staged {
    pending: Pending,
    pub written: Written,
}

#[derive(Debug)]
enum Pending {
    /// A named file in `tmp/`, renamed at commit.
    Named(String),
    /// An unnamed file, held open until it is linked at commit.
    Unnamed(File, LinkVia, fsx::FdSlot),
    /// Already in place: without durability an unnamed file is linked at once.
    Placed,
}

/// One message as written.
#[derive(Debug, Clone)]
pub struct Written {
    pub sub: Sub,
    pub name: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// Where in `name` a `Q<n>` goes when the name is taken already.
    unique_end: usize,
    /// The `Q<n>` it has already (0: none).
    q: u32,
}

impl Written {
    /// The name with `Q<k>` in its unique part (in place of the one it had).
    fn with_q(&self, k: u32) -> String {
        let had = if self.q > 0 { format!("Q{}", self.q).len() } else { 0 };
        format!("{}Q{k}{}", &self.name[..self.unique_end], &self.name[self.unique_end + had..])
    }
}

/// The unique part of the name of a copy of a message with `date`, its `place` in the source
/// folder and hash `sha`, with `Q<q>` when `q` is not 0 (see [`FolderWriter::fill`]).
pub fn unique_part(date: i64, place: u64, sha: &[u8; 32], q: u32) -> String {
    let mut s = format!("{}.M{place}P{}", date.max(0), hex::encode(&sha[..4]));
    if q > 0 {
        s.push_str(&format!("Q{q}"));
    }
    s
}

/// A name is taken: the next one is tried.
fn taken(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EEXIST))
}

/// Names tried after the first when it is taken (a message copied again beside an old copy).
const MAX_Q: u32 = 1000;

impl MaildirTarget {
    pub fn create(path: &Path, opts: WriteOptions) -> Result<MaildirTarget> {
        MaildirTarget::create_in(Dir::create_root(path, DIR_MODE, opts.owner)?, opts)
    }

    /// [`MaildirTarget::create`] in a root already opened (not opened by its path again).
    pub fn create_in(root: Dir, opts: WriteOptions) -> Result<MaildirTarget> {
        // The root is INBOX: a problem with its cur/new/tmp (a planted symlink) is INBOX's
        // problem, reported for it; the other folders are still written.
        let root_problem =
            ["cur", "new", "tmp"].iter().find_map(|s| root.create(OsStr::new(s), DIR_MODE, opts.owner).err());
        // Temporary files of killed runs (subscriptions); each folder's are removed when it is written.
        root.remove_leftovers();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
        let syncer = if opts.durable { Some(fsx::Syncer::start(&root)?) } else { None };
        Ok(MaildirTarget {
            root,
            root_problem: root_problem.map(|e| e.problem()),
            opts,
            host: name::escape_host(&host),
            pid: std::process::id(),
            usec: now.subsec_micros(),
            seq: AtomicU64::new(0),
            syncer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root.path
    }

    /// Opens (creating as needed) the directories of folder `name`.
    pub fn folder(&self, name: &FolderName) -> Result<FolderWriter<'_>> {
        let (comps, _) = layout::components(name, self.opts.layout).map_err(|why| Error::bad(self.path(), why))?;
        // From the root opened at the start: its path may lead elsewhere by now.
        let mut dir = self.root.try_clone()?;
        for c in &comps {
            dir = dir.create(OsStr::new(c), DIR_MODE, self.opts.owner)?;
        }
        let mk = |s: &str| dir.create(OsStr::new(s), DIR_MODE, self.opts.owner);
        let (tmp, new, cur) = (mk("tmp")?, mk("new")?, mk("cur")?);
        let mut notes = Vec::new();
        if !comps.is_empty() {
            // A link or FIFO planted as the marker is replaced (never followed), and said.
            let marker = dir.stat_at(OsStr::new("maildirfolder"))?;
            if marker.as_ref().is_some_and(|e| e.kind != fsx::FileKind::File) {
                notes.push(Problem::new(
                    &dir.path.join("maildirfolder"),
                    "not a regular file; replaced by an empty one",
                ));
            }
            if marker.is_none_or(|e| e.kind != fsx::FileKind::File) {
                dir.write_atomic("maildirfolder", b"", FILE_MODE, self.opts.owner, false)?;
            }
        }
        // A refused keyword list is none: the letters are given anew, and the list rewritten.
        let keywords = read::keywords_in(&dir).unwrap_or_default();
        let unnamed = tmp.probe_unnamed(OsStr::new(&format!("{TMP_PREFIX}{}.probe", self.pid)));
        let message_owner = tmp.owner_for_new(self.opts.owner);
        Ok(FolderWriter {
            target: self,
            message_owner,
            dir,
            tmp,
            new,
            cur,
            keywords,
            keywords_changed: false,
            unnamed,
            linked: AtomicBool::new(false),
            notes,
        })
    }

    /// Where folder `name` lives, without creating anything.
    pub fn folder_path(path: &Path, name: &FolderName, layout: Layout) -> Result<PathBuf, String> {
        let (comps, _) = layout::components(name, layout)?;
        Ok(comps.iter().fold(path.to_path_buf(), |p, c| p.join(c)))
    }

    /// Adds `names` to the root's Dovecot `subscriptions` file (see [`subscribe_in`]).
    pub fn subscribe(&self, names: &[FolderName], warnings: &mut Vec<Problem>) -> Result<()> {
        subscribe_in(&self.root, "subscriptions", names, (self.opts.owner, self.opts.durable), warnings)
    }
}

/// Adds `names` to the Dovecot subscriptions file `file` in `root` (version 2 format: levels
/// separated by TAB, modified UTF-7), keeping what is there: `subscriptions` in a Maildir
/// root, `.subscriptions` in an mbox directory. One that is not a regular file of sane size (a
/// FIFO or link planted there) is not read: it is replaced, and `warnings` says so.
pub fn subscribe_in(
    root: &Dir,
    file: &str,
    names: &[FolderName],
    (owner, durable): (Option<Owner>, bool),
    warnings: &mut Vec<Problem>,
) -> Result<()> {
    const MAX_SUBSCRIPTIONS_BYTES: u64 = 16 << 20;
    let path = root.path.join(file);
    let mut have: Vec<String> = Vec::new();
    let mut found = false;
    match root.read_own_file(OsStr::new(file), MAX_SUBSCRIPTIONS_BYTES) {
        Ok(Some(text)) => {
            have = parse_subscriptions(&text);
            found = true;
        }
        Ok(None) => {}
        Err(e) => warnings.push(Problem::new(&path, format!("{}; written anew", e.problem().reason))),
    }
    let before = have.len();
    for n in names.iter().filter(|n| !n.is_inbox()) {
        let line = n.levels().map(mutf7::encode).collect::<Vec<_>>().join("\t");
        if !have.contains(&line) {
            have.push(line);
        }
    }
    if have.len() == before && found {
        return Ok(());
    }
    let mut text = String::from("V\t2\n\n");
    for l in &have {
        text.push_str(l);
        text.push('\n');
    }
    root.write_atomic(file, text.as_bytes(), FILE_MODE, owner, durable)
}

/// Subscription lines (levels separated by TAB, modified UTF-7) from a version 2 file or an old
/// plain list (levels separated by `.` or `/`).
pub fn parse_subscriptions(text: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(text);
    let mut lines = s.lines();
    let v2 = s.starts_with("V\t");
    if v2 {
        lines.next();
    }
    lines.filter(|l| !l.is_empty()).map(|l| if v2 { l.to_string() } else { l.replace(['.', '/'], "\t") }).collect()
}

pub struct FolderWriter<'t> {
    target: &'t MaildirTarget,
    /// Who the messages written into `tmp/` belong to (`None`: the running user).
    message_owner: Option<Owner>,
    pub dir: Dir,
    tmp: Dir,
    new: Dir,
    cur: Dir,
    keywords: KeywordMap,
    keywords_changed: bool,
    /// How unnamed files are linked here (`None`: named temporary files and renames).
    unnamed: Option<LinkVia>,
    /// Whether a file was linked since the last [`FolderWriter::sync_dirs`].
    linked: AtomicBool,
    /// What opening the folder found and repaired, for the run's warnings.
    pub notes: Vec<Problem>,
}

impl FolderWriter<'_> {
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    pub fn owner(&self) -> Option<Owner> {
        self.target.opts.owner
    }

    pub fn keyword_map(&self) -> &KeywordMap {
        &self.keywords
    }

    /// Gives letters to `names`; returns the keywords that did not fit (26 letters at most).
    /// Letters in `reserved` (letters without a name the messages keep) are given to no name.
    pub fn add_keywords<'k>(&mut self, names: impl IntoIterator<Item = &'k str>, reserved: u32) -> Vec<String> {
        let mut dropped = Vec::new();
        for n in names {
            if self.keywords.letter(n).is_some() {
                continue;
            }
            match self.keywords.ensure(n, reserved) {
                Some(_) => self.keywords_changed = true,
                None => dropped.push(n.to_string()),
            }
        }
        dropped
    }

    /// Writes `dovecot-keywords` if letters were added; before any message uses them.
    pub fn save_keywords(&mut self) -> Result<()> {
        if self.keywords_changed {
            let t = self.target;
            self.dir.write_atomic(
                "dovecot-keywords",
                self.keywords.render().as_bytes(),
                FILE_MODE,
                t.opts.owner,
                t.opts.durable,
            )?;
            self.keywords_changed = false;
        }
        Ok(())
    }

    /// A message's keyword letters here: its letters without a name as they were (see
    /// [`Meta::add_letter`]), its named keywords by this folder's list.
    fn letters(&self, meta: &Meta) -> u32 {
        let mut l = meta.stray_letters;
        for k in meta.named_keywords() {
            if let Some(i) = self.keywords.letter(k) {
                l |= 1 << i;
            }
        }
        l
    }

    /// Whether the folder has a `dovecot-uidlist` (Dovecot numbered it, or mailmover did).
    pub fn has_uidlist(&self) -> bool {
        !matches!(self.dir.stat_at(OsStr::new(super::uidlist::UIDLIST)), Ok(None))
    }

    /// The file name a message with `meta` gets, given its base.
    pub fn final_name(&self, base: &str, meta: &Meta) -> (Sub, String) {
        if meta.goes_to_new() {
            (Sub::New, base.to_string())
        } else {
            (
                Sub::Cur,
                format!("{base}:{}", name::info_with_tail(meta.flags, self.letters(meta), meta.info_tail.as_ref())),
            )
        }
    }

    fn sub_dir(&self, sub: Sub) -> &Dir {
        match sub {
            Sub::New => &self.new,
            Sub::Cur => &self.cur,
        }
    }

    /// Writes one message into `tmp/`, complete (bytes, owner, timestamps), not yet visible.
    /// A batch of staged messages is made durable with one [`FolderWriter::sync_staged`], then
    /// each is [`FolderWriter::commit`]ted.
    /// `order` is the message's place in its source folder, which names follow, and the `Q<n>`
    /// its name gets (0: none; see [`FolderWriter::fill`]).
    pub fn stage(&self, pieces: &[&[u8]], meta: &Meta, order: (u64, u32)) -> Result<Staged> {
        let durable = self.target.opts.durable;
        if let Some(via) = self.unnamed {
            // Durable: held open until the batch is synced, within the descriptor budget (past
            // it, the named way). Otherwise linked at once, as nothing is waited for.
            let slot = if durable { fsx::FdSlot::take() } else { None };
            if !durable || slot.is_some() {
                let mut f = self.tmp.create_unnamed(FILE_MODE)?;
                let mut written = self.fill(&mut f, pieces, meta, &self.tmp.path, order)?;
                let pending = match slot {
                    Some(slot) => Pending::Unnamed(f, via, slot),
                    None => {
                        self.place(&f, via, &mut written)?;
                        Pending::Placed
                    }
                };
                return Ok(Staged { pending, written });
            }
        }
        let q = self.target.seq.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!("{TMP_PREFIX}{}.{}.{q}", self.target.pid, self.target.usec);
        let tmp_os = OsStr::new(&tmp_name);
        let mut f = self.tmp.create_file(tmp_os, FILE_MODE)?;
        match self.fill(&mut f, pieces, meta, &self.tmp.path.join(&tmp_name), order) {
            Ok(written) => Ok(Staged { pending: Pending::Named(tmp_name), written }),
            Err(e) => {
                let _ = self.tmp.unlink(tmp_os);
                Err(e)
            }
        }
    }

    /// Writes the message into `f` with its owner and date, and names it. The name is the same
    /// on every run for the same source: `<date>.M<order>P<first 8 hex digits of its SHA-256>.<host>`
    /// with `,S=` and `,W=`. Dovecot gives new files UIDs sorted by the date, then the number
    /// after `M`: messages of one date keep their source order.
    /// The plan gives `Q<n>` (`order.1`) to a copy of a message whose name without it a copy
    /// in the folder has already (with any flags: one base name, two files, is not Maildir).
    fn fill(&self, f: &mut File, pieces: &[&[u8]], meta: &Meta, path: &Path, order: (u64, u32)) -> Result<Written> {
        let t = self.target;
        let (size, sha, lfs) = fsx::write_pieces(f, pieces, path)?;
        if let Some(o) = self.message_owner {
            o.apply(f.as_raw_fd(), path)?;
        }
        // Before it is put in place, so the file is never visible with another date.
        let ts = TimeSpec::new(meta.date, 0);
        nix::sys::stat::futimens(f.as_raw_fd(), &ts, &ts).at(path)?;
        let unique = unique_part(meta.date, order.0, &sha, 0);
        let unique_end = unique.len();
        let unique = unique_part(meta.date, order.0, &sha, order.1);
        let base = format!("{unique}.{},S={size},W={}", t.host, size + lfs);
        let (sub, name) = self.final_name(&base, meta);
        Ok(Written { sub, name, size, sha256: sha, unique_end, q: order.1 })
    }

    fn place(&self, f: &File, via: LinkVia, w: &mut Written) -> Result<()> {
        let mut r = self.sub_dir(w.sub).link_unnamed(f, via, OsStr::new(&w.name));
        let mut k = w.q + 1;
        while r.as_ref().is_err_and(taken) && k <= MAX_Q {
            let name = w.with_q(k);
            r = self.sub_dir(w.sub).link_unnamed(f, via, OsStr::new(&name));
            if r.is_ok() {
                w.name = name;
            }
            k += 1;
        }
        r?;
        self.linked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Makes every staged file of this run durable (one `syncfs`), when durability is asked for.
    pub fn sync_staged(&self) -> Result<()> {
        self.target.syncer.as_ref().map_or(Ok(()), |s| s.sync())
    }

    /// Asks for the files staged so far to be made durable, without waiting (`None`: nothing
    /// to wait for, durability was not asked for). [`FolderWriter::synced`] tells when.
    pub fn ask_sync(&self) -> Option<fsx::Ticket> {
        self.target.syncer.as_ref().map(|s| s.ask())
    }

    /// Whether the files staged before `t` was asked for are durable: `None` while not yet
    /// (never when `wait`).
    pub fn synced(&self, t: fsx::Ticket, wait: bool) -> Option<Result<()>> {
        match &self.target.syncer {
            None => Some(Ok(())),
            Some(s) if wait => Some(s.wait(t)),
            Some(s) => s.poll(t),
        }
    }

    /// Puts a staged message into `new/` or `cur/`, never replacing anything.
    pub fn commit(&self, s: Staged) -> Result<Written> {
        match s.pending {
            Pending::Named(tmp_name) => {
                let tmp_os = OsStr::new(&tmp_name);
                let mut w = s.written;
                let to = self.sub_dir(w.sub);
                let mut r = self.tmp.rename_noreplace(tmp_os, to, OsStr::new(&w.name));
                let mut k = 1;
                while r.as_ref().is_err_and(taken) && k <= MAX_Q {
                    let name = w.with_q(k);
                    r = self.tmp.rename_noreplace(tmp_os, to, OsStr::new(&name));
                    if r.is_ok() {
                        w.name = name;
                    }
                    k += 1;
                }
                if r.is_err() {
                    let _ = self.tmp.unlink(tmp_os);
                }
                r.map(|()| w)
            }
            Pending::Unnamed(f, via, _slot) => {
                let mut w = s.written;
                self.place(&f, via, &mut w).map(|()| w)
            }
            Pending::Placed => Ok(s.written),
        }
    }

    /// Removes a staged message that will not be committed.
    pub fn discard(&self, s: Staged) {
        match s.pending {
            Pending::Named(tmp_name) => {
                let _ = self.tmp.unlink(OsStr::new(&tmp_name));
            }
            // Never named: closing it frees it.
            Pending::Unnamed(..) => {}
            Pending::Placed => {
                let _ = self.sub_dir(s.written.sub).unlink(OsStr::new(&s.written.name));
            }
        }
    }

    /// Renames an existing message file to carry `meta`'s flags (moving it from new/ to cur/
    /// when it gains any). Returns the new name.
    pub fn set_flags(&self, e: &MaildirEntry, meta: &Meta) -> Result<(Sub, String)> {
        let base = String::from_utf8_lossy(e.base()).into_owned();
        let mut m = meta.clone();
        m.recent = m.recent && e.sub == Sub::New;
        let (sub, new_name) = self.final_name(&base, &m);
        if sub != e.sub || new_name.as_bytes() != e.name.as_slice() {
            self.sub_dir(e.sub).rename_noreplace(
                OsStr::from_bytes(&e.name),
                self.sub_dir(sub),
                OsStr::new(&new_name),
            )?;
        }
        if e.meta.date != meta.date {
            self.sub_dir(sub).set_times(OsStr::new(&new_name), meta.date)?;
        }
        Ok((sub, new_name))
    }

    pub fn delete(&self, e: &MaildirEntry) -> Result<()> {
        self.sub_dir(e.sub).unlink(OsStr::from_bytes(&e.name))
    }

    /// Removes temporary files that crashed runs of mailmover left in `tmp/` (never anybody
    /// else's deliveries in progress).
    pub fn clean_tmp(&self, problems: &mut Vec<Problem>) -> usize {
        let Ok(list) = self.tmp.list() else { return 0 };
        let mut n = 0;
        for (raw, _) in list {
            let Some(rest) = raw.strip_prefix(TMP_PREFIX.as_bytes()) else { continue };
            let pid =
                std::str::from_utf8(rest).ok().and_then(|s| s.split('.').next()).and_then(|p| p.parse::<i32>().ok());
            let Some(pid) = pid else { continue };
            if pid as u32 == self.target.pid || !fsx::pid_alive(pid) {
                match self.tmp.unlink(OsStr::from_bytes(&raw)) {
                    Ok(()) => n += 1,
                    Err(e) => problems.push(e.problem()),
                }
            }
        }
        n
    }

    /// Makes the renames and links of this folder durable. A linked file's inode changed too
    /// (its link count), which only a file-system sync covers.
    pub fn sync_dirs(&self) -> Result<()> {
        if self.target.opts.durable {
            if self.linked.swap(false, Ordering::Relaxed) {
                self.sync_staged()?;
            } else {
                self.new.fsync()?;
                self.cur.fsync()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DateSource;

    fn target(dir: &Path, durable: bool) -> MaildirTarget {
        let opts = WriteOptions { durable, owner: None, layout: Layout::MaildirPlusPlus };
        MaildirTarget::create(dir, opts).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    /// Issue 18: the folders and the root's files are reached from the root opened at the
    /// start. The root's path swapped for a link to another Maildir afterwards: the keywords
    /// read and the subscriptions kept are still the opened root's, and nothing of the other
    /// Maildir is read or changed.
    #[test]
    fn folders_are_reached_from_the_opened_root() {
        let t = tempfile::tempdir().unwrap();
        let (root, moved, other) = (t.path().join("root"), t.path().join("moved"), t.path().join("other"));
        for (d, kw) in [(&root, "$Mine"), (&other, "$Planted")] {
            std::fs::create_dir_all(d.join(".A/cur")).unwrap();
            std::fs::write(d.join(".A/dovecot-keywords"), format!("0 {kw}\n")).unwrap();
            std::fs::write(d.join("subscriptions"), format!("V\t2\n\n{kw}\n")).unwrap();
        }
        let t2 = target(&root, false);
        std::fs::rename(&root, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &root).unwrap();
        let w = t2.folder(&FolderName::parse("A").unwrap()).unwrap();
        assert_eq!(w.keyword_map().name(0), Some("$Mine"));
        assert_eq!(w.path(), root.join(".A"), "reports keep naming the target's path");
        drop(w);
        t2.subscribe(&[FolderName::parse("B").unwrap()], &mut Vec::new()).unwrap();
        assert_eq!(std::fs::read_to_string(moved.join("subscriptions")).unwrap(), "V\t2\n\n$Mine\nB\n");
        assert_eq!(std::fs::read_to_string(other.join("subscriptions")).unwrap(), "V\t2\n\n$Planted\n");
        assert!(!other.join(".A/tmp").exists(), "nothing made in the other Maildir");
    }

    /// Both ways of putting a message in place (unnamed file linked, named file renamed) give
    /// the same result, in both modes, and leave nothing in tmp/; a discarded message leaves
    /// nothing anywhere and gives its descriptor back.
    #[test]
    fn staged_messages_land_whole_either_way() {
        let meta = Meta::new(1_400_000_000, DateSource::FromLine);
        for durable in [false, true] {
            for unnamed in [true, false] {
                let _counting = fsx::SLOT_COUNT_TEST.lock().unwrap_or_else(|p| p.into_inner());
                let tmp = tempfile::tempdir().unwrap();
                let t = target(tmp.path(), durable);
                let mut w = t.folder(&FolderName::inbox()).unwrap();
                assert!(names(&tmp.path().join("tmp")).is_empty(), "the probe left a file");
                if !unnamed {
                    w.unnamed = None;
                }
                let s = w.stage(&[b"Subject: a\n\n", b"body\r\n"], &meta, (7, 0)).unwrap();
                assert_eq!(matches!(s.pending, Pending::Named(_)), w.unnamed.is_none());
                w.sync_staged().unwrap();
                let written = w.commit(s).unwrap();
                let path = tmp.path().join(written.sub.as_str()).join(&written.name);
                assert_eq!(std::fs::read(&path).unwrap(), b"Subject: a\n\nbody\r\n");
                // The same on every run: date, place in the source, hash, host, sizes.
                let hash = hex::encode(&written.sha256[..4]);
                assert!(
                    written.name.starts_with(&format!("1400000000.M7P{hash}.{},S=18,W=20", t.host)),
                    "{}",
                    written.name
                );
                let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
                assert_eq!(mtime, std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_400_000_000));
                let held = fsx::FdSlot::held();
                let s = w.stage(&[b"x\n"], &meta, (8, 0)).unwrap();
                w.discard(s);
                assert_eq!(fsx::FdSlot::held(), held);
                // The same message at the same place again (its old copy still there): the
                // next free name.
                let s = w.stage(&[b"Subject: a\n\n", b"body\r\n"], &meta, (7, 0)).unwrap();
                w.sync_staged().unwrap();
                let again = w.commit(s).unwrap();
                assert_eq!(again.name, written.name.replacen(&format!("P{hash}."), &format!("P{hash}Q1."), 1));
                w.sync_dirs().unwrap();
                assert!(names(&tmp.path().join("tmp")).is_empty());
                let mut want = vec![written.name.clone(), again.name.clone()];
                want.sort();
                assert_eq!(names(&tmp.path().join(written.sub.as_str())), want);
            }
        }
    }
}
