//! The command line: clap definitions (their doc comments are the help text) and the one place
//! where options become a validated configuration for the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use regex::Regex;

use crate::audit::{self, AuditLog, Check};
use crate::deletion::Deletion;
use crate::error::{Error, Problem, Result};
use crate::events::{Discard, Event, Recorder, Tee};
use crate::folder::FolderName;
use crate::folder_map::{FolderMap, Rename};
use crate::fsx::Owner;
use crate::store::maildir::layout::Layout;
use crate::store::mbox::date::Zone;
use crate::store::mbox::read::{ReadOptions, Variant};
use crate::store::{Kind, Store};
use crate::sync::{Filters, SyncOptions};

const EXAMPLES: &str = "\
Examples:
  mailmover sync ~/mail/INBOX.mbox ~/Maildir          mbox file into a Maildir (INBOX)
  mailmover sync mbox:~/Mail maildir:/srv/mail/bob     directory of mbox files, folders kept
  mailmover sync maildir:/old/Maildir mbox:/tmp/export a Maildir tree to mbox files
  mailmover sync SRC DST --dry-run                     show the plan, write nothing
  mailmover verify SRC DST --json                      prove every message arrived
  mailmover inspect --json ~/Maildir                   folders, counts, sizes, problems

Stores are KIND:PATH (mbox:, maildir:) or a bare PATH whose kind is detected.
Exit status: 0 all done, 1 finished but something failed or differs, 2 usage error or
the target locked by another run (nothing written), 128+N stopped at a safe point by signal N
(SIGINT, SIGTERM, SIGHUP; a second signal ends the run at once).";

#[derive(Parser, Debug)]
#[command(name = "mailmover", version, about = "Move mail stores between mbox and Maildir formats, offline and byte-exact", after_help = EXAMPLES)]
pub struct Opts {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy every folder and message of SRC into DST; incremental and idempotent.
    #[command(after_help = EXAMPLES)]
    Sync(Box<SyncArgs>),
    /// Check, without writing, that every message of SRC is in DST with the same bytes, flags,
    /// keywords and internal date.
    Verify(Box<VerifyArgs>),
    /// Show the folders, message counts, sizes, flags, dates and problems of a store.
    Inspect(InspectArgs),
    /// Check the HMAC chain of an audit log and name the first bad line.
    AuditVerify(AuditVerifyArgs),
    /// Run many syncs from a CSV file of `source,target` rows, optionally one shard of it.
    Batch(crate::batch::BatchArgs),
    /// Merge the JSON reports of batch runs into totals; exit 1 if a row failed or is missing.
    Report(crate::batch::ReportArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// How `>From ` lines in mbox sources were quoted; auto trusts a consistent Content-Length
    /// (Dovecot) and otherwise undoes mboxrd quoting.
    #[arg(long, value_enum, default_value = "auto", value_name = "VARIANT")]
    pub mbox_variant: Variant,
    /// Zone for From_ line dates without one: local (as Dovecot), UTC, or +HHMM/-HHMM.
    #[arg(long, default_value = "local", value_name = "ZONE")]
    pub mbox_tz: String,
    /// Keep Status, X-Status, X-Keywords, X-UID and other mbox-internal headers in the messages.
    #[arg(long)]
    pub keep_mbox_headers: bool,
    /// Follow symlinks inside the source (by default they are reported and not followed).
    #[arg(long)]
    pub follow_symlinks: bool,
    /// Worker threads (default: all cores).
    #[arg(long, short = 'j', value_name = "N", default_value_t = 0)]
    pub jobs: usize,
}

#[derive(Args, Debug, Clone)]
pub struct FolderArgs {
    /// Only folders whose name matches this regex (repeatable).
    #[arg(long, value_name = "RE")]
    pub include: Vec<String>,
    /// Skip folders whose name matches this regex (repeatable).
    #[arg(long, value_name = "RE")]
    pub exclude: Vec<String>,
    /// Only this folder (repeatable), e.g. `--folder INBOX --folder Archive/2019`.
    #[arg(long, value_name = "NAME")]
    pub folder: Vec<String>,
    /// Rename folders on the way, 's/RE/REPL/' (repeatable, applied in order; `\/` is a `/`).
    #[arg(long, value_name = "s/RE/REPL/")]
    pub map_folder: Vec<String>,
    /// Map Sent/Sent Items/Sent Messages, Trash/Deleted Items, Junk/Spam, Drafts to the names
    /// the target already uses.
    #[arg(long)]
    pub automap: bool,
    /// Subfolder layout of a Maildir target: Maildir++ dot-folders or nested directories.
    #[arg(long, value_enum, default_value = "maildir++")]
    pub layout: Layout,
    /// Source folders that map to one target folder (`v1.0` and `v1_0` in Maildir++, or by
    /// --map-folder) are merged into it, one after another; without it they are reported and
    /// none of them is synced. --mirror acts as --delete in a merged folder.
    #[arg(long)]
    pub merge_folders: bool,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Source store: mbox:FILE, mbox:DIR, maildir:DIR, cpanel:HOME or a bare path.
    pub src: String,
    /// Target store (created if missing; a new bare path is a Maildir).
    pub dst: String,
    #[command(flatten)]
    pub flags: SyncFlags,
}

/// Everything `sync` takes besides SRC and DST (batch runs take the same).
#[derive(Args, Debug, Clone)]
pub struct SyncFlags {
    /// Plan and report only; write nothing at all.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Remove from the target the copies an earlier run made from this source whose source
    /// message is gone (per mapped folder); mail that reached the target otherwise is kept.
    #[arg(long)]
    pub delete: bool,
    /// Strict sync: remove from the target every message the source does not have (per mapped
    /// folder), mail delivered to the target by others included.
    #[arg(long, conflicts_with = "delete")]
    pub mirror: bool,
    /// A run that would delete more than N messages deletes none and exits 1; also allows
    /// deleting in a folder whose source has no messages.
    #[arg(long, value_name = "N")]
    pub max_delete: Option<u64>,
    /// Print one JSON object with the counts on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// No progress bar and no statistics on stderr (errors are still printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Owner of everything written, USER[:GROUP] (root only).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
    /// Do not fsync: faster, but a power cut may lose messages reported as copied.
    #[arg(long)]
    pub no_fsync: bool,
    /// Do not read or write the hash caches and folder states kept in the target (every file is read).
    #[arg(long)]
    pub no_cache: bool,
    /// Wait up to this many seconds for another run that holds the target's lock (default: exit
    /// 2 at once, naming the lock file and the other run's pid).
    #[arg(long, value_name = "SECS", value_parser = lock_wait)]
    pub lock_wait: Option<std::time::Duration>,
    /// Skip messages bigger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<u64>,
    /// Skip messages younger than this many days.
    #[arg(long, value_name = "DAYS")]
    pub min_age: Option<f64>,
    /// Skip messages older than this many days.
    #[arg(long, value_name = "DAYS")]
    pub max_age: Option<f64>,
    /// Append a JSON Lines audit log of every action, HMAC-SHA256 chained across runs (a
    /// regular file, never a symlink; never truncated).
    #[arg(long, value_name = "FILE", requires = "audit_key_file")]
    pub audit_log: Option<PathBuf>,
    /// Key for the audit log's HMACs: at least 64 hex digits in a file only its owner may read.
    #[arg(long, value_name = "FILE")]
    pub audit_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub cpanel: crate::cpanel::CpanelArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub src: String,
    pub dst: String,
    /// Print one JSON object with the counts and differences on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub cpanel: crate::cpanel::CpanelArgs,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub store: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Args, Debug)]
pub struct AuditVerifyArgs {
    pub log: PathBuf,
    /// The key the log was written with.
    #[arg(long, value_name = "FILE")]
    pub audit_key_file: PathBuf,
}

pub fn command() -> clap::Command {
    Opts::command()
}

/// The man page, generated from the clap definition.
pub fn man_page() -> Vec<u8> {
    let mut out = Vec::new();
    let cmd = command();
    let _ = clap_mangen::Man::new(cmd.clone()).render(&mut out);
    for sub in cmd.get_subcommands() {
        let name = format!("mailmover {}", sub.get_name());
        let _ = writeln!(out, ".SH \"{}\"", name.to_uppercase());
        let sub = sub.clone().name(name.clone()).bin_name(name);
        let man = clap_mangen::Man::new(sub);
        let _ = man.render_description_section(&mut out);
        let _ = man.render_synopsis_section(&mut out);
        let _ = man.render_options_section(&mut out);
    }
    out
}

fn read_options(a: &ReadArgs) -> Result<ReadOptions> {
    let zone = Zone::parse(&a.mbox_tz)
        .ok_or_else(|| Error::Usage(format!("--mbox-tz {:?}: expected local, UTC or +HHMM", a.mbox_tz)))?;
    Ok(ReadOptions { variant: a.mbox_variant, zone, keep_internal_headers: a.keep_mbox_headers })
}

fn regexes(v: &[String], what: &str) -> Result<Vec<Regex>> {
    v.iter().map(|r| Regex::new(r).map_err(|e| Error::Usage(format!("{what} {r:?}: {e}")))).collect()
}

fn folder_map(a: &FolderArgs) -> Result<FolderMap> {
    Ok(FolderMap {
        folders: a
            .folder
            .iter()
            .map(|f| FolderName::parse(f).map_err(|e| Error::Usage(format!("--folder {f:?}: {e}"))))
            .collect::<Result<_>>()?,
        include: regexes(&a.include, "--include")?,
        exclude: regexes(&a.exclude, "--exclude")?,
        renames: a
            .map_folder
            .iter()
            .map(|s| Rename::parse(s).map_err(|e| Error::Usage(format!("--map-folder {e}"))))
            .collect::<Result<_>>()?,
        automap: a.automap,
    })
}

pub fn parse_owner(spec: &str) -> Result<Owner> {
    use nix::unistd::{Group, User};
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = match u.parse::<u32>() {
        Ok(uid) => User::from_uid(uid.into()).ok().flatten(),
        Err(_) => User::from_name(u).ok().flatten(),
    };
    let uid = match (&user, u.parse::<u32>()) {
        (Some(us), _) => us.uid.as_raw(),
        (None, Ok(n)) => n,
        (None, Err(_)) => return Err(Error::Usage(format!("--owner: no such user {u:?}"))),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .map(|gr| gr.gid.as_raw())
                .ok_or_else(|| Error::Usage(format!("--owner: no such group {g:?}")))?,
        },
        None => user
            .map(|us| us.gid.as_raw())
            .ok_or_else(|| Error::Usage(format!("--owner {spec:?}: give the group too (USER:GROUP)")))?,
    };
    if !nix::unistd::geteuid().is_root()
        && (uid != nix::unistd::geteuid().as_raw() || gid != nix::unistd::getegid().as_raw())
    {
        return Err(Error::Usage("--owner: only root can give files to another user".into()));
    }
    Ok(Owner { uid, gid })
}

fn sync_options(a: &SyncFlags) -> Result<SyncOptions> {
    let owner = a.owner.as_deref().map(parse_owner).transpose()?;
    Ok(SyncOptions {
        read: read_options(&a.read)?,
        layout: a.folders.layout,
        owner,
        durable: !a.no_fsync,
        dry_run: a.dry_run,
        deletion: if a.mirror {
            Deletion::Mirror
        } else if a.delete {
            Deletion::Copied
        } else {
            Deletion::Off
        },
        max_delete: a.max_delete,
        delete_budget: None,
        jobs: a.read.jobs,
        map: folder_map(&a.folders)?,
        filters: Filters {
            max_size: a.max_size,
            min_age_days: a.min_age,
            max_age_days: a.max_age,
            now: chrono::Utc::now().timestamp(),
        },
        follow_symlinks: a.read.follow_symlinks,
        use_cache: !a.no_cache,
        merge_folders: a.folders.merge_folders,
        lock_wait: a.lock_wait.unwrap_or_default(),
        merged: false,
    })
}

fn lock_wait(s: &str) -> std::result::Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{s:?}: expected a number of seconds"))
}

fn stores(src: &str, dst: &str) -> Result<(Store, Store)> {
    let s = Store::parse(src)?;
    let d = Store::parse(dst)?;
    if !s.path.exists() {
        return Err(Error::Usage(format!("{}: source does not exist", s.path.display())));
    }
    if let (Ok(a), Some(b)) = (s.path.canonicalize(), canonical_target(&d.path))
        && (a == b || b.starts_with(&a))
    {
        return Err(Error::Usage("the target is inside the source (or the same store); nothing written".into()));
    }
    Ok((s, d))
}

/// The canonical form of a path that may not exist yet: its nearest existing ancestor
/// canonicalized, the rest appended.
fn canonical_target(p: &std::path::Path) -> Option<PathBuf> {
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().ok()?.join(p) };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return Some(rest.iter().rev().fold(c, |acc, x| acc.join(x)));
        }
        rest.push(cur.file_name()?.to_os_string());
        cur = cur.parent()?;
    }
}

/// Prints the dry-run plan lines.
struct PlanPrinter {
    to_stderr: bool,
}

impl Recorder for PlanPrinter {
    fn record(&self, e: Event) {
        let l = match e {
            Event::Plan(l) => l,
            Event::Delete { folder, target, size, .. } => {
                format!("would delete from {}: {} ({size} bytes)", folder.as_str(), target.display())
            }
            _ => return,
        };
        {
            let l = crate::folder::sanitize(&l);
            if self.to_stderr {
                eprintln!("plan: {l}");
            } else {
                println!("plan: {l}");
            }
        }
    }
}

/// A progress bar on stderr (messages and bytes done, rate, ETA), only on a terminal.
struct Progress {
    bar: indicatif::ProgressBar,
    messages: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} messages  {bytes}/{total_bytes}  {binary_bytes_per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress { bar, messages: std::sync::atomic::AtomicU64::new(0) }
    }
}

impl Recorder for Progress {
    fn record(&self, e: Event) {
        match e {
            Event::Discovered { bytes } => self.bar.inc_length(bytes),
            Event::Progress { bytes } => {
                let n = self.messages.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                self.bar.inc(bytes);
                if n.is_multiple_of(256) {
                    self.bar.set_message(n.to_string());
                }
            }
            _ => {}
        }
    }
}

/// Runs the command; returns the exit code (0, 1) or an error (usage: 2).
pub fn run(opts: Opts) -> Result<i32> {
    match opts.command {
        Command::Sync(a) => run_sync(&a),
        Command::Verify(a) => {
            let (s, d) = stores(&a.src, &a.dst)?;
            let so = SyncOptions {
                read: read_options(&a.read)?,
                layout: a.folders.layout,
                jobs: a.read.jobs,
                map: folder_map(&a.folders)?,
                follow_symlinks: a.read.follow_symlinks,
                merge_folders: a.folders.merge_folders,
                ..Default::default()
            };
            let v = if s.kind == Kind::Cpanel || d.kind == Kind::Cpanel {
                crate::cpanel::verify(&s, &d, &so, &a.cpanel)?
            } else {
                crate::verify::verify(&s, &d, &so)?
            };
            if a.json {
                println!("{}", serde_json::to_string(&v).unwrap_or_default());
            } else {
                let mut o = std::io::stdout().lock();
                for d in &v.differences {
                    let _ = writeln!(
                        o,
                        "{}: {} {} {}",
                        crate::folder::sanitize(&d.folder),
                        d.what,
                        d.source,
                        d.target.as_deref().unwrap_or("")
                    );
                }
                for e in &v.errors {
                    let _ = writeln!(o, "error: {}", crate::folder::sanitize(&e.to_string()));
                }
                let _ = writeln!(
                    o,
                    "{}: source {} target {} missing {} extra {} flag mismatches {} date mismatches {}",
                    if v.ok { "OK" } else { "DIFFERENT" },
                    v.source,
                    v.target,
                    v.missing_in_target,
                    v.extra_in_target,
                    v.flag_mismatches,
                    v.date_mismatches
                );
            }
            Ok(if v.ok { 0 } else { 1 })
        }
        Command::Inspect(a) => {
            let st = Store::parse(&a.store)?;
            if !st.path.exists() {
                return Err(Error::Usage(format!("{}: does not exist", st.path.display())));
            }
            if st.kind == Kind::Cpanel {
                let ins = crate::cpanel::inspect(&st, &read_options(&a.read)?, a.read.follow_symlinks, a.read.jobs)?;
                if a.json {
                    println!("{}", serde_json::to_string(&ins).unwrap_or_default());
                } else {
                    let _ = ins.write_human(&mut std::io::stdout().lock());
                }
                return Ok(if ins.problems.is_empty() { 0 } else { 1 });
            }
            let ins = crate::inspect::inspect(&st, &read_options(&a.read)?, a.read.follow_symlinks, a.read.jobs)?;
            if a.json {
                println!("{}", serde_json::to_string(&ins).unwrap_or_default());
            } else {
                let _ = ins.write_human(&mut std::io::stdout().lock());
            }
            Ok(if ins.problems.is_empty() { 0 } else { 1 })
        }
        Command::AuditVerify(a) => {
            let key = audit::read_key(&a.audit_key_file)?;
            match audit::verify_log(&a.log, &key)? {
                Check::Ok { records, runs, after_unfinished } => {
                    println!("OK: {records} records of {runs} run(s), chain intact");
                    for l in after_unfinished {
                        println!(
                            "notice: the run that starts at line {l} follows a run that did not end (it was killed, or its last records were removed)"
                        );
                    }
                    Ok(0)
                }
                Check::Bad { line, reason } => {
                    println!("line {line}: {reason}");
                    Ok(1)
                }
            }
        }
        Command::Batch(a) => crate::batch::run_batch(&a),
        Command::Report(a) => crate::batch::run_report(&a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "mailmover", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// One sync of any two stores: cPanel accounts go through the cpanel module, the rest
/// through the plain store sync. Batch runs call this per row.
pub fn sync_stores(
    s: &Store,
    d: &Store,
    so: &SyncOptions,
    cp: &crate::cpanel::CpanelArgs,
    rec: &dyn Recorder,
) -> Result<crate::report::Summary> {
    let run = |so: &SyncOptions, rec: &dyn Recorder| {
        if s.kind == Kind::Cpanel || d.kind == Kind::Cpanel {
            crate::cpanel::sync(s, d, so, cp, rec)
        } else {
            crate::sync::sync(s, d, so, rec)
        }
    };
    let Some(max) = so.max_delete.filter(|_| so.deletion != Deletion::Off) else { return run(so, rec) };
    let over = |n: u64, summary: &mut crate::report::Summary, done: &str| {
        summary.errors.push(Problem::new(
            &d.path,
            format!("this run would delete {n} messages, more than --max-delete {max}: {done}"),
        ));
        summary.counts.failed += 1;
        summary.complete = false;
    };
    if so.dry_run {
        let mut summary = run(so, rec)?;
        if summary.counts.deleted_target > max {
            over(summary.counts.deleted_target, &mut summary, "a real run deletes none");
        }
        return Ok(summary);
    }
    // The whole run's deletions are counted first (a dry run), so that "none" means none; the
    // budget still holds if the source changes between the two passes.
    let planned = run(&SyncOptions { dry_run: true, ..so.clone() }, &crate::events::Discard)?;
    if planned.counts.deleted_target > max {
        let mut summary = run(&SyncOptions { deletion: Deletion::Off, ..so.clone() }, rec)?;
        over(planned.counts.deleted_target, &mut summary, "deleted none");
        return Ok(summary);
    }
    run(&SyncOptions { delete_budget: Some(crate::deletion::Budget::new(max)), ..so.clone() }, rec)
}

pub fn stores_checked(src: &str, dst: &str) -> Result<(Store, Store)> {
    stores(src, dst)
}

pub fn sync_options_of(a: &SyncFlags) -> Result<SyncOptions> {
    sync_options(a)
}

fn run_sync(args: &SyncArgs) -> Result<i32> {
    crate::interrupt::install();
    let (s, d) = stores(&args.src, &args.dst)?;
    let a = &args.flags;
    let so = sync_options(a)?;
    let key = match (&a.audit_log, &a.audit_key_file) {
        (Some(_), Some(k)) => Some(audit::read_key(k)?),
        (None, Some(_)) => return Err(Error::Usage("--audit-key-file needs --audit-log".into())),
        _ => None,
    };
    let audit = match (&a.audit_log, key) {
        (Some(p), Some(k)) => Some(AuditLog::create(
            p,
            k,
            serde_json::json!({
                "argv": std::env::args().collect::<Vec<_>>(),
                "source": args.src, "target": args.dst, "dry_run": a.dry_run, "delete": a.delete, "mirror": a.mirror,
            }),
        )?),
        _ => None,
    };
    let plan = PlanPrinter { to_stderr: a.json };
    let progress = (!a.quiet && std::io::stderr().is_terminal()).then(Progress::new);
    let mut recs: Vec<&dyn Recorder> = Vec::new();
    if a.dry_run {
        recs.push(&plan);
    }
    if let Some(l) = &audit {
        recs.push(l);
    }
    if let Some(p) = &progress {
        recs.push(p);
    }
    let tee = Tee(recs);
    let rec: &dyn Recorder = if tee.0.is_empty() { &Discard } else { &tee };
    let summary = sync_stores(&s, &d, &so, &a.cpanel, rec);
    if let Some(p) = &progress {
        p.bar.finish_and_clear();
    }
    let summary = summary?;
    if let Some(l) = &audit {
        l.finish(serde_json::to_value(&summary.counts).unwrap_or_default())?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    }
    let mut err = std::io::stderr().lock();
    if !a.quiet {
        let _ = summary.write_human(&mut err);
    } else {
        for e in &summary.errors {
            let _ = writeln!(err, "error: {}", crate::folder::sanitize(&e.to_string()));
        }
        if let Some(sig) = summary.signal {
            let _ = writeln!(err, "interrupted by {}; run it again to finish", crate::interrupt::name(sig));
        }
    }
    Ok(summary.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// man/mailmover.1 is generated from these definitions; regenerate it with
    /// `UPDATE_MAN=1 cargo test --lib man_page`.
    #[test]
    fn man_page_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man/mailmover.1");
        let want = man_page();
        if std::env::var_os("UPDATE_MAN").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read(&path).unwrap_or_default();
        assert!(have == want, "man/mailmover.1 is stale: run UPDATE_MAN=1 cargo test --lib man_page");
    }

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn owner_needs_root_for_others() {
        if nix::unistd::geteuid().is_root() {
            assert!(parse_owner("root:root").is_ok());
            assert!(parse_owner("no-such-user-xyz").is_err());
        } else {
            assert!(parse_owner("0:0").is_err());
        }
    }
}
