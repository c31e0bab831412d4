//! The command line: clap definitions (their doc comments are the help text), turned into the
//! plain settings of [`crate::config`], which checks them and makes the library's
//! configuration; then the command runs and its outcome is printed. No other module knows clap.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::audit::{self, AuditLog, Check};
use crate::batch::{BatchOptions, ReportOptions};
use crate::config::{self, FolderSettings, ReadSettings, SyncSettings};
use crate::contract;
use crate::cpanel::CpanelOptions;
use crate::error::{Error, Result};
use crate::events::{Discard, Event, Recorder, Tee};
use crate::exit::Exit;
use crate::spec::{Kind, Store};
use crate::store::maildir::layout::Layout;
use crate::store::mbox::flavour::Flavour;
use crate::store::mbox::read::Variant;

const EXAMPLES: &str = "\
Examples:
  mailmover sync ~/mail/INBOX.mbox ~/Maildir          mbox file into a Maildir (INBOX)
  mailmover sync mbox:~/Mail maildir:/srv/mail/bob     directory of mbox files, folders kept
  mailmover sync maildir:/old/Maildir mbox:/tmp/export a Maildir tree to mbox files
  mailmover sync cpanel:/home/bob cpanel:/mnt/new/home/bob --source-etc /etc --target-etc /mnt/new/etc
                                                       a whole cPanel account (or cpmove-bob.tar.gz)
  mailmover sync SRC DST --dry-run                     show the plan, write nothing
  mailmover verify SRC DST --json                      prove every message arrived
  mailmover inspect --json ~/Maildir                   folders, counts, sizes, problems

Stores are KIND:PATH (mbox:, maildir:, cpanel:) or a bare PATH whose kind is detected; a
leading ~ is the home directory.
Exit status: 0 all done, 1 finished but something failed or differs, 2 usage error or
the target locked by another run (nothing written), 128+N stopped at a safe point by signal N
(SIGINT, SIGTERM, SIGHUP; a second signal ends the run at once).";

#[derive(Parser, Debug)]
#[command(name = "mailmover", version, about = "Move mail stores between mbox, Maildir and cPanel accounts, offline and byte-exact", after_help = EXAMPLES)]
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
    Batch(BatchArgs),
    /// Merge the JSON reports of batch runs into totals; exit 1 if a row failed or is missing.
    Report(ReportArgs),
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
    /// Subfolder layout: of a Maildir target, Maildir++ dot-folders or nested directories (fs);
    /// of an mbox directory, nested directories as Dovecot has them (fs, the default: a folder
    /// with mail cannot have subfolders there) or Thunderbird's NAME.sbd/ (thunderbird).
    #[arg(long, value_enum, default_value = "maildir++")]
    pub layout: Layout,
    /// How an mbox target is written (default: the flavour it was written in before; else
    /// dovecot for an mbox directory or a file that has X-IMAPbase, mboxrd for a new file).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub mbox_format: Option<Flavour>,
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
    /// Print the plan (each message to copy, re-flag or delete, then each folder) and the report;
    /// write nothing at all.
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
    /// Print one JSON object on stdout at the end: the counts (batch: the totals of its rows),
    /// or the error that stopped the run (docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Nothing on stderr when the run is complete and clean (for cron): no progress bar, no
    /// statistics; warnings and errors are still printed.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Append a timestamped plain-text log: a start line (version, host, user, command line,
    /// source, target), a line per copy, flag change, re-date, deletion, metadata file and
    /// error, and the summary (a regular file, never a symlink).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
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
    pub cpanel: CpanelArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub src: String,
    pub dst: String,
    /// Print one JSON object on stdout: the counts and differences, or the error that stopped
    /// the command (docs/json.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub cpanel: CpanelArgs,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub store: String,
    /// Print one JSON object on stdout: folders, counts and problems, or the error that
    /// stopped the command (docs/json.md).
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

/// Options that only cPanel stores use.
#[derive(Args, Debug, Clone)]
pub struct CpanelArgs {
    /// Rename a domain everywhere it occurs, OLD=NEW (repeatable).
    #[arg(long, value_name = "OLD=NEW")]
    pub map_domain: Vec<String>,
    /// Rename a user, OLD=NEW, as local parts or full addresses (repeatable).
    #[arg(long, value_name = "OLD=NEW")]
    pub map_user: Vec<String>,
    /// CSV file of `old,new` rows (addresses or domains).
    #[arg(long, value_name = "CSV")]
    pub map_file: Option<PathBuf>,
    /// Where the source's system-wide files (valiases/, vfilters/, vdomainaliases/) are read.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub source_etc: PathBuf,
    /// Where the target's system-wide files are written.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub target_etc: PathBuf,
    /// Move only this address's mailbox and its metadata lines.
    #[arg(long, value_name = "ADDR")]
    pub mailbox: Option<String>,
    /// Let the source's metadata lines win over the target's for the same key.
    #[arg(long)]
    pub overwrite_metadata: bool,
}

const BATCH_HELP: &str = "\
Batch file (CSV, one row per store or account; `#` comments and blank lines allowed; an
optional first row `source,target` is a header):

  source,target[,OPTION[=VALUE]]...
  # old server's accounts
  maildir:/srv/old/alice,maildir:/srv/new/alice
  cpanel:/old/home/bob,cpanel:/home/bob,map-domain=old.example=new.example,owner=bob
  \"/srv/old/with, comma.mbox\",/srv/new/carol,include=^INBOX,delete

Row options are sync's long options without the dashes: map-domain, map-user, map-folder,
include, exclude, folder (repeatable: added to the command line's), map-file, mailbox,
source-etc, target-etc, owner, layout, max-size, max-delete, min-age, max-age, audit-log
(replace the command line's), automap, delete, mirror, overwrite-metadata (flags: NAME,
NAME=yes, NAME=no). max-delete caps each row's deletions on its own.
Relative paths are relative to the current directory. A bad row stops the run before
anything is written, naming its line.

Shards: row goes to shard (first 8 bytes of SHA-256(source), big-endian) mod N + 1, whatever
the order of the file. --shards N takes K from JOB_COMPLETION_INDEX + 1 (Kubernetes Indexed
Job) or SLURM_ARRAY_TASK_ID (Slurm, --array=1-N).

Examples:
  mailmover batch accounts.csv --report-dir reports/
  parallel mailmover batch accounts.csv --shard {}/4 --report-dir reports/ ::: 1 2 3 4
  mailmover report reports/            totals, failed and missing rows; exit 1 if any

Exit status: 0 every row of the shard complete, 1 a row failed, 2 bad file or options.";

#[derive(Args, Debug)]
#[command(after_help = BATCH_HELP)]
pub struct BatchArgs {
    /// CSV file of `source,target[,OPTION…]` rows (format below).
    pub file: PathBuf,
    /// Run only shard K of N (1 <= K <= N), e.g. `--shard 3/8`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Number of shards, with K from JOB_COMPLETION_INDEX (Kubernetes) or SLURM_ARRAY_TASK_ID.
    #[arg(long, value_name = "N")]
    pub shards: Option<u64>,
    /// Write one JSON report per row here (created if missing); rows it says are complete
    /// are skipped.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Run rows again even when their report says complete.
    #[arg(long)]
    pub rerun: bool,
    /// Check the file and print this shard's rows, biggest first, without running them.
    #[arg(long)]
    pub list: bool,
    // Boxed: the sync flags are big and `Command` holds one of these inline.
    #[command(flatten)]
    pub sync: Box<SyncFlags>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Directory of batch reports (`--report-dir` of the batch runs).
    pub dir: PathBuf,
    /// Print one JSON object on stdout: totals, failed and missing rows, or the error that
    /// stopped the command (docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Expect the rows of this batch file (default: the file the last batch run recorded in DIR).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl ValueEnum for Layout {
    fn value_variants<'a>() -> &'a [Self] {
        &Layout::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Flavour {
    fn value_variants<'a>() -> &'a [Self] {
        &Flavour::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let v = PossibleValue::new(self.name());
        Some(match self {
            Flavour::Mboxrd => v.help("`>From ` quoting: mutt, Thunderbird, Python and most readers"),
            Flavour::Mboxcl2 => v.help("no quoting, Content-Length delimits each message"),
            Flavour::Dovecot => v.help("Dovecot's own: mboxcl2 with X-IMAPbase and X-UID, UIDs kept"),
        })
    }
}

impl ValueEnum for Variant {
    fn value_variants<'a>() -> &'a [Self] {
        &Variant::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let v = PossibleValue::new(self.name());
        Some(match self {
            Variant::Auto => v.help("Content-Length where it is consistent (then no unquoting), else mboxrd"),
            _ => v,
        })
    }
}

impl From<&ReadArgs> for ReadSettings {
    fn from(a: &ReadArgs) -> Self {
        ReadSettings {
            mbox_variant: a.mbox_variant,
            mbox_tz: a.mbox_tz.clone(),
            keep_mbox_headers: a.keep_mbox_headers,
            follow_symlinks: a.follow_symlinks,
            jobs: a.jobs,
        }
    }
}

impl From<&FolderArgs> for FolderSettings {
    fn from(a: &FolderArgs) -> Self {
        FolderSettings {
            include: a.include.clone(),
            exclude: a.exclude.clone(),
            folder: a.folder.clone(),
            map_folder: a.map_folder.clone(),
            automap: a.automap,
            layout: a.layout,
            mbox_format: a.mbox_format,
            merge_folders: a.merge_folders,
        }
    }
}

impl From<&CpanelArgs> for CpanelOptions {
    fn from(a: &CpanelArgs) -> Self {
        CpanelOptions {
            map_domain: a.map_domain.clone(),
            map_user: a.map_user.clone(),
            map_file: a.map_file.clone(),
            source_etc: a.source_etc.clone(),
            target_etc: a.target_etc.clone(),
            mailbox: a.mailbox.clone(),
            overwrite_metadata: a.overwrite_metadata,
        }
    }
}

impl From<&SyncFlags> for SyncSettings {
    fn from(a: &SyncFlags) -> Self {
        SyncSettings {
            dry_run: a.dry_run,
            delete: a.delete,
            mirror: a.mirror,
            max_delete: a.max_delete,
            owner: a.owner.clone(),
            durable: !a.no_fsync,
            use_cache: !a.no_cache,
            lock_wait: a.lock_wait.unwrap_or_default(),
            max_size: a.max_size,
            min_age: a.min_age,
            max_age: a.max_age,
            audit_log: a.audit_log.clone(),
            audit_key_file: a.audit_key_file.clone(),
            folders: (&a.folders).into(),
            read: (&a.read).into(),
            cpanel: (&a.cpanel).into(),
        }
    }
}

impl From<&BatchArgs> for BatchOptions {
    fn from(a: &BatchArgs) -> Self {
        BatchOptions {
            file: a.file.clone(),
            shard: a.shard.clone(),
            shards: a.shards,
            report_dir: a.report_dir.clone(),
            rerun: a.rerun,
            list: a.list,
            sync: a.sync.as_ref().into(),
            json: a.sync.json,
            quiet: a.sync.quiet,
        }
    }
}

impl From<&ReportArgs> for ReportOptions {
    fn from(a: &ReportArgs) -> Self {
        ReportOptions { dir: a.dir.clone(), json: a.json, file: a.file.clone() }
    }
}

impl Opts {
    /// `--json` was given: a fatal error is printed as JSON on stdout too (docs/json.md).
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Sync(a) => a.flags.json,
            Command::Verify(a) => a.json,
            Command::Inspect(a) => a.json,
            Command::Batch(a) => a.sync.json,
            Command::Report(a) => a.json,
            Command::AuditVerify(_) | Command::Completions { .. } => false,
        }
    }
}

/// The command line of this process; help, version and usage errors are printed here and
/// come back as the exit status.
pub fn parse() -> std::result::Result<Opts, Exit> {
    Opts::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() { Exit::Usage } else { Exit::Ok }
    })
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

fn lock_wait(s: &str) -> std::result::Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{s:?}: expected a number of seconds"))
}

/// Where a message is, as a plan line shows it: a file, or an mbox and the byte offset.
fn shown_origin(o: &crate::source::Origin) -> String {
    match o {
        crate::source::Origin::File(p) => p.display().to_string(),
        crate::source::Origin::Mbox { path, offset, .. } => format!("{} at byte {offset}", path.display()),
    }
}

/// Prints the dry-run plan: a line per folder, and one per message to copy, re-flag or delete.
struct PlanPrinter {
    to_stderr: bool,
}

impl Recorder for PlanPrinter {
    fn record(&self, e: Event) {
        let l = match e {
            Event::Plan(l) => l,
            Event::Copy { folder, origin, size, .. } => {
                format!("would copy into {}: {} ({size} bytes)", folder.as_str(), shown_origin(&origin))
            }
            Event::Flags { folder, target, meta, .. } => {
                let kw: Vec<&str> = meta.keywords.iter().collect();
                let kw = if kw.is_empty() { String::new() } else { format!(" {}", kw.join(" ")) };
                format!("would set flags in {}: {} to \"{}\"{kw}", folder.as_str(), target.display(), meta.flags)
            }
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

/// Runs the command; an error ends the run with its own exit status.
pub fn run(opts: Opts) -> Result<Exit> {
    match opts.command {
        Command::Sync(a) => run_sync(&a),
        Command::Verify(a) => {
            let (s, d) = config::stores(&a.src, &a.dst)?;
            let so = config::verify_options(&(&a.folders).into(), &(&a.read).into())?;
            let v = if s.kind == Kind::Cpanel || d.kind == Kind::Cpanel {
                crate::cpanel::verify(&s, &d, &so, &(&a.cpanel).into())?
            } else {
                crate::verify::verify(&s, &d, &so)?
            };
            if a.json {
                println!("{}", contract::line(contract::VERIFY, &v)?);
            } else {
                let mut o = std::io::stdout().lock();
                for d in &v.differences {
                    let _ = writeln!(
                        o,
                        "{}: {} {} {}",
                        crate::folder::sanitize(&d.folder),
                        d.what,
                        d.source.as_deref().unwrap_or(""),
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
            Ok(Exit::ok_if(v.ok))
        }
        Command::Inspect(a) => {
            let st = Store::parse(&a.store)?;
            if !st.path.exists() {
                return Err(Error::Usage(format!("{}: does not exist", st.path.display())));
            }
            let ro = config::read_options(&(&a.read).into())?;
            if st.kind == Kind::Cpanel {
                let ins = crate::cpanel::inspect(&st, &ro, a.read.follow_symlinks, a.read.jobs)?;
                if a.json {
                    println!("{}", contract::line(contract::INSPECT, &ins)?);
                } else {
                    let _ = ins.write_human(&mut std::io::stdout().lock());
                }
                return Ok(Exit::ok_if(ins.problems.is_empty()));
            }
            let ins = crate::inspect::inspect(&st, &ro, a.read.follow_symlinks, a.read.jobs)?;
            if a.json {
                println!("{}", contract::line(contract::INSPECT, &ins)?);
            } else {
                let _ = ins.write_human(&mut std::io::stdout().lock());
            }
            Ok(Exit::ok_if(ins.problems.is_empty()))
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
                    Ok(Exit::Ok)
                }
                Check::Bad { line, reason } => {
                    println!("line {line}: {reason}");
                    Ok(Exit::Failed)
                }
            }
        }
        Command::Batch(a) if a.sync.log_file.is_some() => Err(Error::Usage(
            "batch: --log-file is for one sync; a batch keeps a report per row in --report-dir (rows run at the same time)"
                .into(),
        )),
        Command::Batch(a) => crate::batch::run_batch(&(&a).into()),
        Command::Report(a) => crate::batch::run_report(&(&a).into()),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "mailmover", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
    }
}

fn run_sync(args: &SyncArgs) -> Result<Exit> {
    crate::interrupt::install();
    let started = crate::logfile::now();
    let (s, d) = config::stores(&args.src, &args.dst)?;
    let a = &args.flags;
    let settings = SyncSettings::from(a);
    let so = config::sync_options(&settings)?;
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
    let log = match &a.log_file {
        Some(p) => Some(crate::logfile::LogFile::open(p, &args.src, &args.dst, a.dry_run)?),
        None => None,
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
    if let Some(l) = &log {
        recs.push(l);
    }
    if let Some(p) = &progress {
        recs.push(p);
    }
    let tee = Tee(recs);
    let rec: &dyn Recorder = if tee.0.is_empty() { &Discard } else { &tee };
    let summary = crate::engine::sync(&s, &d, &so, &settings.cpanel, rec);
    if let Some(p) = &progress {
        p.bar.finish_and_clear();
    }
    let mut summary = summary?;
    summary.source = Some(args.src.clone());
    summary.target = Some(args.dst.clone());
    summary.started = Some(started);
    summary.finished = Some(crate::logfile::now());
    if let Some(l) = &log {
        l.finish(&summary);
    }
    if let Some(l) = &audit {
        l.finish(serde_json::to_value(&summary.counts).unwrap_or_default())?;
    }
    if a.json {
        println!("{}", contract::line(contract::SYNC, &summary)?);
    }
    let mut err = std::io::stderr().lock();
    // A rejected source is a usage error: its reason alone, no summary of a run that never was.
    if !a.quiet && !summary.rejected {
        let _ = summary.write_human(&mut err);
    } else {
        for w in &summary.warnings {
            let _ = writeln!(err, "warning: {}", crate::folder::sanitize(&w.to_string()));
        }
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

    /// Batch rows start from these settings when the command line gives no option.
    #[test]
    fn no_options_give_the_default_settings() {
        let Command::Sync(a) = Opts::parse_from(["mailmover", "sync", "a", "b"]).command else { panic!("not sync") };
        assert_eq!(SyncSettings::from(&a.flags), SyncSettings::default());
    }

    #[test]
    fn value_names_are_the_library_names() {
        let Command::Sync(a) =
            Opts::parse_from(["mailmover", "sync", "a", "b", "--layout", "fs", "--mbox-variant", "mboxcl2"]).command
        else {
            panic!("not sync")
        };
        assert_eq!((a.flags.folders.layout, a.flags.read.mbox_variant), (Layout::Fs, Variant::Mboxcl2));
    }
}
