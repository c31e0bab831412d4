//! File-system primitives with the guarantees mailmover promises.
//!
//! Sources are opened read-only (and without touching atime where the kernel allows).
//! Targets are reached through directory descriptors opened with `O_NOFOLLOW`, so a symlink
//! planted anywhere in a target tree is refused instead of followed; new files are created
//! in `tmp/` (unnamed, `O_TMPFILE`, where the file system allows; else under an exclusive
//! temporary name), written, chowned, timestamped and synced through their descriptor, and only
//! then linked or renamed into place without replacing anything (`linkat`, `RENAME_NOREPLACE`).
//!
//! One concern a file: `source` reads source files, `mapped` maps the big ones (and `sigbus`
//! survives their truncation), `dir` is the guarded target tree, `temp` its temporary names,
//! `pieces` writes and hashes messages, `syncer` makes writes durable, `fd_budget` shares the
//! descriptors held open, `own_files` reads mailmover's own files in a target. Everything is
//! re-exported here: callers name `fsx::X`, not the file it lives in.

mod dir;
mod fd_budget;
mod mapped;
mod own_files;
mod pieces;
pub mod sigbus;
mod source;
mod syncer;
mod temp;

pub use dir::{Dir, Entries, Entry, FileKind, LinkVia, Owner, link_on_the_way, list_dir, process_umask, time_bounds};
#[cfg(test)]
pub use fd_budget::SLOT_COUNT_TEST;
pub use fd_budget::{FdSlot, held_fd_budget};
pub use mapped::{BIG_FILE, FileBytes, Mapped, MappedFile, WINDOW, release_read, release_through, windows};
pub use own_files::{folder_id, open_own_file, read_own_file};
pub use pieces::{bare_lf_count, sha256_pieces, write_pieces};
pub use source::{
    MessageFile, open_source, open_source_nofollow, open_source_nonblocking, read_message_file, source_is_cold,
};
pub use syncer::{Syncer, Ticket, start_writeback_range};
pub use temp::{pid_alive, temp_name, temp_pid};
