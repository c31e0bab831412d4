//! The command line: clap definitions (their doc comments are the help text), turned into the
//! plain settings of [`crate::config`], which checks them and makes the library's
//! configuration; then the command runs and its outcome is printed. No other module knows clap.

use std::io::Write;
use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::audit::{self, AuditLog, Check};
use crate::batch::{BatchOptions, ReportOptions};
use crate::config::{self, FolderSettings, ReadSettings, SyncSettings};
use crate::contract;
use crate::cpanel::CpanelOptions;
use crate::error::{Error, Problem, Result};
use crate::events::{Discard, Event, Recorder, Tee};
use crate::exit::Exit;
use crate::spec::{Kind, Store};
use crate::store::maildir::layout::Layout;
use crate::store::mbox::flavour::Flavour;
use crate::store::mbox::read::Variant;
use crate::sync::IdentityBy;

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
    /// Print a shell completion script; in bash, zsh and fish a store completes as mbox:,
    /// maildir: or cpanel: and then a path.
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
    /// What makes a target message a copy of a source message: the same bytes (content, the
    /// default), or else the same Message-ID, Date and body (headers), so that copies
    /// mb2md, imapsync or a run with the other --keep-mbox-headers made are not copied again.
    #[arg(long, value_enum, value_name = "BY")]
    pub identity: Option<IdentityBy>,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Source store: mbox:FILE, mbox:DIR, maildir:DIR, cpanel:HOME or a bare path.
    pub src: String,
    /// Target store (created if missing; a new bare path is a Maildir).
    pub dst: String,
    /// Make the target's folder tree only (imapsync's --justfolders): every mapped folder,
    /// empty, and subscribed; no message is copied, nothing deleted. A later sync fills the
    /// folders. With --dry-run, lists the folders it would make. Not for cPanel accounts.
    #[arg(long, conflicts_with_all = ["delete", "mirror"])]
    pub folders_only: bool,
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
    /// cPanel: also the account files' lines, rules and files an earlier run synced that the
    /// source removed since, where the target still has them as synced.
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
    /// Write a forensic manifest (a new file): a JSON line per source message with its source
    /// place, SHA-256 of the source bytes and of the message, target, flags and internal date
    /// with its origin; the source files' digests; every problem.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Sign the manifest and the audit log's runs with this Ed25519 private key (PEM, from
    /// `openssl genpkey -algorithm ed25519`; readable by its owner only); `audit-verify
    /// --public-key` checks them without any secret.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
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
    /// An audit log, or a manifest (`sync --manifest`).
    pub log: PathBuf,
    /// The key an audit log was written with.
    #[arg(long, value_name = "FILE", required_unless_present = "public_key")]
    pub audit_key_file: Option<PathBuf>,
    /// Check a signed manifest with this Ed25519 public key (PEM, `openssl pkey -pubout`).
    #[arg(long, value_name = "FILE", conflicts_with = "audit_key_file")]
    pub public_key: Option<PathBuf>,
    /// Print one JSON object on stdout: the verdict, or the error that stopped the command
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// What `audit-verify` found, as `--json` prints it (`mailmover.audit-verify/1`).
#[derive(serde::Serialize)]
struct AuditVerdict {
    ok: bool,
    /// `manifest` or `audit-log`.
    kind: &'static str,
    /// Records and runs checked (`null` when a line failed; a manifest has no runs).
    records: Option<u64>,
    runs: Option<u64>,
    /// The Ed25519 public key (hex) every run or the manifest is signed by; `null` with an
    /// HMAC key.
    signed_by: Option<String>,
    /// Lines where a run starts after one that never ended.
    after_unfinished: Vec<u64>,
    /// The first line that fails, and why.
    line: Option<u64>,
    reason: Option<String>,
}

impl AuditVerdict {
    fn new(kind: &'static str, signed_by: Option<String>) -> AuditVerdict {
        AuditVerdict {
            ok: false,
            kind,
            records: None,
            runs: None,
            signed_by,
            after_unfinished: Vec::new(),
            line: None,
            reason: None,
        }
    }

    /// Prints it, as JSON or as a line for people, and says how the command ends.
    fn print(self, json: bool) -> Result<Exit> {
        let exit = if self.ok { Exit::Ok } else { Exit::Failed };
        if json {
            println!("{}", contract::line(contract::AUDIT_VERIFY, &self)?);
            return Ok(exit);
        }
        match (&self.line, &self.reason) {
            (Some(line), Some(reason)) => println!("line {line}: {reason}"),
            _ => {
                let records = self.records.unwrap_or(0);
                match (self.kind, &self.signed_by, self.runs) {
                    ("manifest", Some(s), _) => println!("OK: manifest of {records} records, signed by {s}"),
                    (_, Some(s), Some(runs)) => {
                        println!("OK: {records} records of {runs} run(s), each run signed by {s}")
                    }
                    (_, _, runs) => println!("OK: {records} records of {} run(s), chain intact", runs.unwrap_or(0)),
                }
                for l in &self.after_unfinished {
                    println!(
                        "notice: the run that starts at line {l} follows a run that did not end (it was killed, or its last records were removed)"
                    );
                }
            }
        }
        Ok(exit)
    }

    fn checked(mut self, c: Check) -> AuditVerdict {
        match c {
            Check::Ok { records, runs, after_unfinished } => {
                (self.ok, self.records, self.runs, self.after_unfinished) =
                    (true, Some(records), Some(runs), after_unfinished);
            }
            Check::Bad { line, reason } => (self.line, self.reason) = (Some(line), Some(reason)),
        }
        self
    }
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
    /// Let the source's metadata lines win over the target's for the same key. On a catch-up
    /// run a line, filter rule or file changed on both sides since the last sync is a conflict
    /// (an error, exit 1, the target's kept) unless this takes the source's; one changed on one
    /// side only takes that side's either way.
    #[arg(long)]
    pub overwrite_metadata: bool,
    /// The home directory the account will have on its server when the target is staged
    /// elsewhere (e.g. synced to /mnt/new/home/bob, to be /home/bob): the account files
    /// (passwd, forwarders, filters) name this path.
    #[arg(long, value_name = "PATH")]
    pub target_home_path: Option<PathBuf>,
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

impl ValueEnum for IdentityBy {
    fn value_variants<'a>() -> &'a [Self] {
        &IdentityBy::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let v = PossibleValue::new(self.name());
        Some(match self {
            IdentityBy::Content => v.help("the same bytes, as the target keeps them"),
            IdentityBy::Headers => v.help("the same bytes, else the same Message-ID, Date and body"),
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
            identity: a.identity.unwrap_or_default(),
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
            target_home_path: a.target_home_path.clone(),
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
            folders_only: false,
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
            Command::AuditVerify(a) => a.json,
            Command::Completions { .. } => false,
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

/// The man page, generated from the clap definition: one page, each subcommand a section of
/// it (so the list of subcommands names those sections, not pages of their own), then exit
/// status, environment, files and JSON output.
pub fn man_page() -> Vec<u8> {
    let mut out = Vec::new();
    let cmd = command();
    let man = clap_mangen::Man::new(cmd.clone());
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    let _ = writeln!(out, ".SH SUBCOMMANDS");
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let section = format!("MAILMOVER {}", sub.get_name().to_uppercase());
        let _ = writeln!(
            out,
            ".TP\n\\fB{}\\fR\n{} (section {} below)",
            roff_text(sub.get_name()),
            roff_text(&about),
            roff_text(&section)
        );
    }
    let _ = man.render_extra_section(&mut out);
    let _ = man.render_version_section(&mut out);
    for sub in cmd.get_subcommands() {
        let name = format!("mailmover {}", sub.get_name());
        let _ = writeln!(out, ".SH \"{}\"", name.to_uppercase());
        let sub = sub.clone().name(name.clone()).bin_name(name);
        let man = clap_mangen::Man::new(sub);
        let _ = man.render_description_section(&mut out);
        let _ = man.render_synopsis_section(&mut out);
        let _ = man.render_options_section(&mut out);
    }
    out.extend_from_slice(MAN_TAIL.as_bytes());
    out
}

/// Text as roff prints it: backslashes and hyphens escaped, no control character at a line's start.
fn roff_text(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with(['.', '\'']) { format!("\\&{t}") } else { t }
}

/// The sections after the subcommands: what README.md says of exit statuses, the environment,
/// the files kept in targets and `--json`.
const MAN_TAIL: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
All done: every source message is in the target (\fBsync \-\-folders\-only\fR: every folder; \fBverify\fR: everything matches; \fBbatch\fR and \fBreport\fR: every row is complete).
.TP
\fB1\fR
The run finished, but something failed or differs; each is listed.
.TP
\fB2\fR
A usage or configuration error, or the target is locked by another run: nothing was written.
.TP
\fB128\fR+\fIN\fR
Stopped at a safe point by signal \fIN\fR (SIGINT, SIGTERM, SIGHUP; 130 for Ctrl\-C); the next run finishes the job. A second signal ends the run at once.
.SH ENVIRONMENT
.TP
\fBMAILMOVER_SORT_MEMORY\fR
Bytes of a sorted run (listings, target indexes, plans, caches) held in memory before it goes to a temporary file; 4 MiB by default.
.TP
\fBTMPDIR\fR
Where those temporary files go (unlinked at once): a disk, not a small tmpfs, for folders of millions of messages.
.TP
\fBHOME\fR
The directory a leading \fB~\fR of a store names (also after \fBmbox:\fR and the other kinds).
.TP
\fBTZ\fR
The local zone that From_ line dates without a zone are read in (\fB\-\-mbox\-tz local\fR, the default).
.TP
\fBJOB_COMPLETION_INDEX\fR, \fBSLURM_ARRAY_TASK_ID\fR
The shard \fBbatch \-\-shards\fR \fIN\fR runs: a Kubernetes Indexed Job's index (from 0), else a Slurm array task's id (from 1).
.SH FILES
What mailmover keeps in a target beside the mail, under names no mail reader takes for a folder:
.TP
\fBmailmover.lock\fR, \fB.mailmover.lock\fR, \fB.\fR\fINAME\fR\fB.mailmover.lock\fR
The lock a run holds on its target, in a Maildir root; in an mbox directory or a cPanel home; beside the mbox file \fINAME\fR. It is never written, and stays when the run ends.
.TP
\fBmailmover\-state\fR, \fB.\fR\fINAME\fR\fB.mailmover\-state.lock\fR
The stamps of a folder's last run, in a Maildir folder and beside the mbox \fINAME\fR: a folder nothing changed in is not read again.
.TP
\fBmailmover\-cache\fR, \fBmailmover\-source\-cache\fR
The hashes of a Maildir folder's files, and of its Maildir source folder's files by name, size and time.
.TP
\fBmailmover\-copied\fR
The record of the copies made into a Maildir folder from its source: what \fB\-\-delete\fR may remove.
.TP
\fBmailmover\-options.lock\fR, \fB.mailmover\-options.lock\fR, \fB.\fR\fINAME\fR\fB.mailmover\-options.lock\fR
The options of the last sync into the target that decide what goes where (folder mapping, layout, mbox zone, cPanel renames): \fBverify\fR given none uses them.
.TP
\fB.mailmover\-metadata\fR
In a cPanel home: the base of the next catch\-up run, a SHA\-256 of each line, filter rule and file of the account's files as the source had them at the last sync (mode 0600). A line changed at the source only is taken, one changed on both sides is a conflict (exit 1), one the source removed goes with \fB\-\-delete\fR. Without it, a difference is a warning and the target's stays.
.TP
\fB.\fR\fINAME\fR\fB.mailmover\-append.lock\fR, \fB.\fR\fINAME\fR\fB.mailmover\-append\-data.lock\fR
The journal of messages appended to the mbox \fINAME\fR, and the messages staged for it: the next run takes back what a killed run left half\-appended.
.TP
\fB.\fR\fINAME\fR\fB.mailmover\-\fR\fIPID\fR\fB.tmp.lock\fR
A file being written by the run \fIPID\fR; a later run removes those of runs that are gone.
.TP
\fBdovecot\-uidlist\fR, \fBdovecot\-keywords\fR, \fBmaildirfolder\fR, \fBsubscriptions\fR, \fB.subscriptions\fR, \fBmaildirsize\fR
Dovecot's files, written as Dovecot writes them: the UIDs and keywords of a Maildir folder, the marker of a Maildir++ folder, the subscribed folders (of a Maildir root; of an mbox directory), a cPanel mailbox's quota use.
.TP
\fIDIR\fR\fB/row\-\fR\fIID\fR\fB.json\fR, \fIDIR\fR\fB/batch.json\fR
A batch run's report of each row and the rows its file holds, in \fB\-\-report\-dir\fR \fIDIR\fR.
.SH "JSON OUTPUT"
With \fB\-\-json\fR, \fBsync\fR, \fBverify\fR, \fBinspect\fR, \fBbatch\fR, \fBreport\fR and \fBaudit\-verify\fR print one JSON object on standard output and nothing else there (the summary of \fBsync\fR and \fBbatch\fR, and the plan of a \fBsync \-\-dry\-run\fR, go to standard error). Its fields are described in \fIdocs/json.md\fR in mailmover's source.
.SH "SEE ALSO"
\fBdoveadm\fR(1), \fBdovecot\fR(1)
"#;

/// The subcommands whose positional arguments are stores (`KIND:PATH` or a path).
const STORE_COMMANDS: [&str; 3] = ["sync", "verify", "inspect"];

/// The completion script for `shell`: clap_complete's, with the stores of [`STORE_COMMANDS`]
/// completed as `mbox:`, `maildir:`, `cpanel:` and then a path (bash, zsh and fish; the other
/// shells complete paths only).
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    use clap_complete::Shell;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "mailmover", &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    let script = match shell {
        Shell::Bash => bash_stores(&script),
        Shell::Zsh => zsh_stores(&script),
        Shell::Fish => format!("{script}{FISH_STORES}"),
        _ => script,
    };
    script.into_bytes()
}

/// The options of the store commands that take a value: a word after one is not a store.
fn options_with_values() -> Vec<String> {
    let cmd = command();
    let mut v: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| STORE_COMMANDS.contains(&s.get_name()))
        .flat_map(|s| s.get_arguments().cloned().collect::<Vec<_>>())
        .filter(|a| !a.is_positional() && a.get_action().takes_values())
        .flat_map(|a| {
            let long = a.get_long().map(|l| format!("--{l}"));
            let short = a.get_short().map(|s| format!("-{s}"));
            long.into_iter().chain(short)
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Bash: a function before clap's that completes a store word itself. It reads the line up to
/// the cursor, since bash splits `mbox:PATH` into three words where COMP_WORDBREAKS has `:`.
fn bash_stores(script: &str) -> String {
    let commands = STORE_COMMANDS.join("|");
    let valued = options_with_values().join("|");
    let wrapper = format!(
        r#"
# Stores: the kinds (mbox:, maildir:, cpanel:), then a path after them.
_mailmover_store() {{
    local cur=$1 kind="" path=$1 c
    case "$cur" in
        mbox:*|maildir:*|cpanel:*) kind=${{cur%%:*}}: path=${{cur#*:}} ;;
    esac
    COMPREPLY=()
    if [[ -z $kind ]]; then
        COMPREPLY=($(compgen -W "mbox: maildir: cpanel:" -- "$cur"))
    fi
    local IFS=$'\n'
    for c in $(compgen -f -- "$path"); do
        [[ -d $c ]] && c+=/
        COMPREPLY+=("$kind$c")
    done
    # Bash replaces only what follows the word's last ':' when it splits words there.
    if [[ $COMP_WORDBREAKS == *:* && $cur == *:* ]]; then
        local done=${{cur%"${{cur##*:}}"}}
        COMPREPLY=("${{COMPREPLY[@]#"$done"}}")
    fi
    if [[ ${{#COMPREPLY[@]}} -eq 1 && ${{COMPREPLY[0]}} == *[:/] ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}}

_mailmover_stores() {{
    local line=${{COMP_LINE:0:COMP_POINT}} cur prev words
    read -ra words <<< "$line"
    if [[ $line == *[[:space:]] || ${{#words[@]}} -eq 0 ]]; then
        cur=""
    else
        cur=${{words[-1]}}
        unset 'words[-1]'
    fi
    prev=${{words[-1]}}
    if [[ ${{#words[@]}} -ge 2 && $cur != -* ]]; then
        case "${{words[1]}}" in
            {commands})
                case "$prev" in
                    {valued}) ;;
                    *) _mailmover_store "$cur"; return 0 ;;
                esac
                ;;
        esac
    fi
    _mailmover "$@"
}}
"#
    );
    // clap's registration names its function; ours goes first and hands the rest to it.
    let script = script.replace("complete -F _mailmover ", "complete -F _mailmover_stores ");
    let at = script.find("\nif [[ \"${BASH_VERSINFO[0]}\" -eq 4").map_or(script.len(), |i| i + 1);
    format!("{}{wrapper}\n{}", &script[..at], &script[at..])
}

/// Zsh: the store arguments' action (`_default`) becomes a function that offers the kinds and,
/// after one, the paths.
fn zsh_stores(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 512);
    for line in script.lines() {
        let store = ["':src", "':dst", "':store"]
            .iter()
            .any(|p| line.starts_with(&format!("{p}:")) || line.starts_with(&format!("{p} --")));
        match line.strip_suffix(":_default' \\").filter(|_| store) {
            Some(head) => out.push_str(&format!("{head}:_mailmover_store' \\")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    let func = r#"(( $+functions[_mailmover_store] )) ||
_mailmover_store() {
    local ret=1
    if compset -P '(mbox|maildir|cpanel):'; then
        _files && ret=0
    else
        compadd -S '' -- mbox: maildir: cpanel: && ret=0
        _files && ret=0
    fi
    return ret
}

"#;
    match out.rfind("if [ \"$funcstack[1]\" = \"_mailmover\" ]") {
        Some(at) => format!("{}{func}{}", &out[..at], &out[at..]),
        None => out,
    }
}

/// Fish: the kinds, and a path after one, wherever a store command takes a plain word.
const FISH_STORES: &str = r#"
# Stores: the kinds (mbox:, maildir:, cpanel:), then a path after them.
function __mailmover_store
    set -l tok (commandline -ct)
    if string match -qr '^(mbox|maildir|cpanel):' -- $tok
        set -l kind (string replace -r ':.*' ':' -- $tok)
        for p in (__fish_complete_path (string replace -r '^[^:]*:' '' -- $tok))
            echo $kind$p
        end
    else
        printf '%s\n' mbox: maildir: cpanel:
    end
end
complete -c mailmover -n "__fish_mailmover_using_subcommand sync verify inspect" -a "(__mailmover_store)"
"#;

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
            Event::Folder { folder, path } => format!("would make folder {}: {}", folder.as_str(), path.display()),
            Event::MetadataGone { path, what, removed: true } => {
                format!("would remove metadata {what} from {} (gone from the source)", path.display())
            }
            Event::MetadataGone { path, what, removed: false } => {
                format!(
                    "would keep metadata {what} in {}: gone from the source (--delete would remove it)",
                    path.display()
                )
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

/// Runs the command; an error ends the run with its own exit status.
pub fn run(opts: Opts) -> Result<Exit> {
    match opts.command {
        Command::Sync(a) => run_sync(&a),
        Command::Verify(mut a) => {
            let (s, d) = config::stores(&a.src, &a.dst)?;
            // Without options of its own, verify compares with the options the sync recorded.
            let mut from = None;
            if mapping_args(&a.folders, &a.read, &a.cpanel).is_empty()
                && let Some((path, args)) = crate::recorded::read(&d)?
                && !args.is_empty()
            {
                let argv = ["mailmover", "verify", &a.src, &a.dst].into_iter().map(String::from).chain(args.clone());
                let Command::Verify(r) = Opts::try_parse_from(argv)
                    .map_err(|e| Error::bad(&path, format!("the recorded options do not parse: {e}")))?
                    .command
                else {
                    return Err(Error::bad(&path, "the recorded options do not parse"));
                };
                (a.folders, a.read, a.cpanel) = (r.folders, r.read, r.cpanel);
                if !a.json {
                    eprintln!(
                        "verify: with the options of the last sync into this target ({}): {}",
                        path.display(),
                        crate::folder::sanitize(&args.join(" "))
                    );
                }
                from = Some(path);
            }
            let so = config::verify_options(&(&a.folders).into(), &(&a.read).into())?;
            crate::interrupt::install_ending();
            let progress = crate::progress::Progress::on_terminal("verified");
            let rec: &dyn Recorder = match &progress {
                Some(p) => p,
                None => &Discard,
            };
            let v = if s.kind == Kind::Cpanel || d.kind == Kind::Cpanel {
                crate::cpanel::verify(&s, &d, &so, &(&a.cpanel).into(), rec)
            } else {
                crate::verify::verify_with(&s, &d, &so, rec)
            };
            if let Some(p) = &progress {
                p.finish();
            }
            let mut v = v?;
            v.options_from = from.map(|p| p.display().to_string());
            if a.json {
                println!("{}", contract::line(contract::VERIFY, &v)?);
            } else {
                let _ = v.write_human(&mut std::io::stdout().lock());
            }
            Ok(Exit::ok_if(v.ok))
        }
        Command::Inspect(a) => {
            let st = Store::parse(&a.store)?;
            if !st.path.exists() {
                return Err(Error::Usage(format!("{}: does not exist", st.path.display())));
            }
            let ro = config::read_options(&(&a.read).into())?;
            crate::interrupt::install_ending();
            let progress = crate::progress::Progress::on_terminal("inspected");
            let rec: &dyn Recorder = match &progress {
                Some(p) => p,
                None => &Discard,
            };
            if st.kind == Kind::Cpanel {
                let ins = crate::cpanel::inspect(&st, &ro, (a.read.follow_symlinks, a.read.jobs), rec);
                if let Some(p) = &progress {
                    p.finish();
                }
                let ins = ins?;
                if a.json {
                    println!("{}", contract::line(contract::INSPECT, &ins)?);
                } else {
                    let _ = ins.write_human(&mut std::io::stdout().lock());
                }
                return Ok(Exit::ok_if(ins.problems.is_empty()));
            }
            let ins = crate::inspect::inspect_with(&st, &ro, a.read.follow_symlinks, a.read.jobs, rec);
            if let Some(p) = &progress {
                p.finish();
            }
            let ins = ins?;
            if a.json {
                println!("{}", contract::line(contract::INSPECT, &ins)?);
            } else {
                let _ = ins.write_human(&mut std::io::stdout().lock());
            }
            Ok(Exit::ok_if(ins.problems.is_empty()))
        }
        Command::AuditVerify(AuditVerifyArgs { log, public_key: Some(p), json, .. }) => {
            let key = crate::sign::read_public_key(&p)?;
            let signer = Some(hex::encode(key.to_bytes()));
            if crate::manifest::is_manifest(&log)? {
                let mut v = AuditVerdict::new("manifest", signer);
                match crate::manifest::verify(&log, &key)? {
                    crate::manifest::Check::Ok { records } => (v.ok, v.records) = (true, Some(records)),
                    crate::manifest::Check::Bad { line, reason } => (v.line, v.reason) = (Some(line), Some(reason)),
                }
                v.print(json)
            } else {
                let mut v = AuditVerdict::new("audit-log", signer).checked(audit::verify_signatures(&log, &key)?);
                // Each run is signed: whether the last one ended is the chain's question.
                v.after_unfinished.clear();
                v.print(json)
            }
        }
        Command::AuditVerify(a) => {
            let Some(key_file) = &a.audit_key_file else {
                return Err(Error::Usage("audit-verify needs --audit-key-file or --public-key".into()));
            };
            let key = audit::read_key(key_file)?;
            AuditVerdict::new("audit-log", None).checked(audit::verify_log(&a.log, &key)?).print(a.json)
        }
        Command::Batch(a) if a.sync.log_file.is_some() || a.sync.manifest.is_some() => Err(Error::Usage(
            "batch: --log-file and --manifest are for one sync; a batch keeps a report per row in --report-dir (rows run at the same time)"
                .into(),
        )),
        Command::Batch(a) => crate::batch::run_batch(&(&a).into()),
        Command::Report(a) => crate::batch::run_report(&(&a).into()),
        Command::Completions { shell } => {
            let _ = std::io::stdout().write_all(&completions(shell));
            Ok(Exit::Ok)
        }
    }
}

/// The options that decide which source folder goes where and how sources are read, as
/// command-line arguments (defaults left out): what a sync records for a later `verify`.
fn mapping_args(f: &FolderArgs, r: &ReadArgs, c: &CpanelArgs) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut put = |opt: &str, val: String| {
        v.push(opt.into());
        v.push(val);
    };
    for (opt, vals) in
        [("--include", &f.include), ("--exclude", &f.exclude), ("--folder", &f.folder), ("--map-folder", &f.map_folder)]
    {
        vals.iter().for_each(|x| put(opt, x.clone()));
    }
    let name = |p: Option<PossibleValue>| p.map(|p| p.get_name().to_string()).unwrap_or_default();
    if f.layout != Layout::MaildirPlusPlus {
        put("--layout", name(f.layout.to_possible_value()));
    }
    if let Some(fl) = f.mbox_format {
        put("--mbox-format", name(fl.to_possible_value()));
    }
    if let Some(i) = f.identity {
        put("--identity", name(i.to_possible_value()));
    }
    if r.mbox_variant != Variant::Auto {
        put("--mbox-variant", name(r.mbox_variant.to_possible_value()));
    }
    if r.mbox_tz != "local" {
        put("--mbox-tz", r.mbox_tz.clone());
    }
    let absolute =
        |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    c.map_domain.iter().for_each(|x| put("--map-domain", x.clone()));
    c.map_user.iter().for_each(|x| put("--map-user", x.clone()));
    if let Some(p) = &c.map_file {
        put("--map-file", absolute(p));
    }
    for (opt, p) in [("--source-etc", &c.source_etc), ("--target-etc", &c.target_etc)] {
        if p.as_path() != std::path::Path::new("/etc") {
            put(opt, absolute(p));
        }
    }
    if let Some(m) = &c.mailbox {
        put("--mailbox", m.clone());
    }
    if let Some(p) = &c.target_home_path {
        put("--target-home-path", p.display().to_string());
    }
    for (flag, on) in [
        ("--automap", f.automap),
        ("--merge-folders", f.merge_folders),
        ("--keep-mbox-headers", r.keep_mbox_headers),
        ("--follow-symlinks", r.follow_symlinks),
    ] {
        if on {
            v.push(flag.into());
        }
    }
    v
}

fn run_sync(args: &SyncArgs) -> Result<Exit> {
    crate::interrupt::install();
    let started = crate::logfile::now();
    let (s, d) = config::stores(&args.src, &args.dst)?;
    let a = &args.flags;
    let settings = SyncSettings { folders_only: args.folders_only, ..SyncSettings::from(a) };
    let mut so = config::sync_options(&settings)?;
    // A manifest accounts for every message as read now: no folder is skipped as unchanged,
    // no digest taken from a cache.
    so.use_cache &= a.manifest.is_none();
    let key = match (&a.audit_log, &a.audit_key_file) {
        (Some(_), Some(k)) => Some(audit::read_key(k)?),
        (None, Some(_)) => return Err(Error::Usage("--audit-key-file needs --audit-log".into())),
        _ => None,
    };
    if a.sign_key.is_some() && a.manifest.is_none() && a.audit_log.is_none() {
        return Err(Error::Usage("--sign-key signs a --manifest or an --audit-log; neither was given".into()));
    }
    let sign = a.sign_key.as_deref().map(crate::sign::read_signing_key).transpose()?;
    let audit = match (&a.audit_log, key) {
        (Some(p), Some(k)) => Some(
            AuditLog::create(
                p,
                k,
                serde_json::json!({
                    "argv": std::env::args().collect::<Vec<_>>(),
                    "source": args.src, "target": args.dst, "dry_run": a.dry_run, "delete": a.delete, "mirror": a.mirror,
                }),
            )?
            .signed_with(sign.clone()),
        ),
        _ => None,
    };
    let zone = so.read.zone.describe();
    let log = match &a.log_file {
        Some(p) => Some(crate::logfile::LogFile::open(p, &args.src, &args.dst, a.dry_run, &zone)?),
        None => None,
    };
    let manifest = match &a.manifest {
        Some(p) => Some(crate::manifest::Manifest::create(
            p,
            serde_json::json!({
                "type": "header", "schema": crate::manifest::SCHEMA, "tool": "mailmover",
                "version": env!("CARGO_PKG_VERSION"), "host": crate::store::mbox::lock::host(),
                "user": crate::logfile::user(), "argv": std::env::args().collect::<Vec<_>>(),
                "source": args.src, "target": args.dst, "dry_run": a.dry_run, "started": started,
                "mbox_tz": zone,
            }),
            a.dry_run,
            sign,
        )?),
        None => None,
    };
    let plan = PlanPrinter { to_stderr: a.json };
    let progress = if a.quiet { None } else { crate::progress::Progress::on_terminal("synced") };
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
    if let Some(m) = &manifest {
        recs.push(m);
    }
    if let Some(p) = &progress {
        recs.push(p);
    }
    let tee = Tee(recs);
    let rec: &dyn Recorder = if tee.0.is_empty() { &Discard } else { &tee };
    let summary = crate::engine::sync(&s, &d, &so, &settings.cpanel, rec);
    if let Some(p) = &progress {
        p.finish();
    }
    let mut summary = summary?;
    summary.source = Some(args.src.clone());
    summary.target = Some(args.dst.clone());
    summary.started = Some(started);
    summary.finished = Some(crate::logfile::now());
    summary.mbox_tz = Some(zone);
    if let Some(l) = &log {
        l.finish(&summary);
    }
    if let Some(m) = &manifest {
        m.finish(&summary)?;
    }
    if !a.dry_run && !summary.rejected {
        let mapping = mapping_args(&a.folders, &a.read, &a.cpanel);
        if let Err(e) = crate::recorded::write(&d, &args.src, &mapping, so.owner, so.durable) {
            summary
                .warnings
                .push(Problem::new(&d.path, format!("the sync's options were not recorded for verify: {e}")));
        }
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

    /// The man page has the sections a man page is read for; its FILES and ENVIRONMENT name
    /// what the code names; it refers to no page but Dovecot's (the subcommands are sections).
    #[test]
    fn man_page_has_its_sections() {
        let man = String::from_utf8(man_page()).unwrap();
        for s in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES", ".SH \"JSON OUTPUT\"", ".SH \"SEE ALSO\""] {
            assert!(man.contains(&format!("\n{s}\n")), "no {s}");
        }
        let plain = ["\\fB", "\\fR", "\\fI", "\\&"].iter().fold(man.replace("\\-", "-"), |t, f| t.replace(f, ""));
        let name = std::ffi::OsStr::new("NAME");
        let (journal, staged) = crate::store::mbox::grow::journal_names(name);
        let files = [
            crate::lock::MAILDIR.to_string(),
            crate::lock::HIDDEN.to_string(),
            ".NAME.mailmover.lock".to_string(),
            "mailmover-state".to_string(),
            ".NAME.mailmover-state.lock".to_string(),
            crate::target_index::CACHE_FILE.to_string(),
            crate::target_index::SOURCE_CACHE_FILE.to_string(),
            crate::deletion::COPIED_FILE.to_string(),
            journal.to_string_lossy().into_owned(),
            staged.to_string_lossy().into_owned(),
            crate::fsx::temp_name(name).to_string_lossy().replace(&std::process::id().to_string(), "PID"),
            crate::store::maildir::uidlist::UIDLIST.to_string(),
            "mailmover-options.lock".to_string(),
            ".NAME.mailmover-options.lock".to_string(),
        ];
        for f in files {
            assert!(plain.contains(&f), "FILES does not name {f}");
        }
        for v in [
            "MAILMOVER_SORT_MEMORY",
            "TMPDIR",
            "HOME",
            "TZ",
            crate::batch::shard::K8S_INDEX,
            crate::batch::shard::SLURM_INDEX,
        ] {
            let named = plain.contains(&format!("\n{v}\n")) || plain.contains(&format!(", {v}\n"));
            assert!(named || plain.contains(&format!("\n{v}, ")), "ENVIRONMENT does not name {v}");
        }
        for code in ["0", "1", "2", "128+N"] {
            assert!(plain.contains(&format!(".TP\n{code}\n")), "EXIT STATUS has no {code}");
        }
        assert!(plain.contains("docs/json.md"));
        let refs: Vec<&str> =
            regex::Regex::new(r"[a-z][a-z0-9-]*\([1-9]\)").unwrap().find_iter(&plain).map(|m| m.as_str()).collect();
        assert_eq!(refs, ["doveadm(1)", "dovecot(1)"], "pages referred to");
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
