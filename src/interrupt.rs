//! SIGINT, SIGTERM and SIGHUP ask a `sync` or `batch` run to stop at its next safe point.
//!
//! The handler only records the signal in an atomic; the sync loops look at it between chunks
//! of messages, finish what is staged, commit the caches of what was done and skip deletions,
//! so the target holds only whole messages and the next run picks up the rest. A second
//! signal takes the default action at once: a run killed at any point is recoverable anyway
//! (unnamed temporary files vanish with the process, named ones are cleaned by the next run),
//! so an impatient user is never stuck waiting for a slow disk. Other commands (`verify`,
//! `inspect`) write nothing and keep the default actions.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{SigHandler, Signal, raise, signal};

/// The first signal received, 0 while none was.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// A progress line is on the terminal: a signal that ends the run at once clears it first.
static CLEAR_LINE: AtomicBool = AtomicBool::new(false);

/// Says whether a progress line is shown (see [`CLEAR_LINE`]).
pub fn clear_line_at_exit(on: bool) {
    CLEAR_LINE.store(on, Ordering::SeqCst);
}

/// Clears the terminal line on stderr if a progress line is there (async-signal-safe).
fn clear_line() {
    if CLEAR_LINE.load(Ordering::SeqCst) {
        let s = b"\r\x1b[2K";
        // SAFETY: write(2) is async-signal-safe; the buffer is a static byte string.
        let _ = unsafe { libc::write(2, s.as_ptr().cast(), s.len()) };
    }
}

extern "C" fn clear_and_end(sig: libc::c_int) {
    clear_line();
    if let Ok(s) = Signal::try_from(sig) {
        // SAFETY: the default action runs no code of ours; signal() is async-signal-safe.
        let _ = unsafe { signal(s, SigHandler::SigDfl) };
        let _ = raise(s);
    }
}

/// For commands that write nothing (`verify`, `inspect`): a signal ends them at once, as by
/// default, but clears the progress line first.
pub fn install_ending() {
    use nix::sys::signal::{SaFlags, SigAction, SigSet, sigaction};
    let action = SigAction::new(SigHandler::Handler(clear_and_end), SaFlags::empty(), SigSet::empty());
    for s in SIGNALS {
        // SAFETY: the handler only calls async-signal-safe functions.
        let _ = unsafe { sigaction(s, &action) };
    }
}

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

extern "C" fn note(sig: libc::c_int) {
    // Only async-signal-safe calls here: an atomic swap, and for a second signal its default
    // action, delivered as soon as this handler returns.
    if SIGNAL.swap(sig, Ordering::SeqCst) != 0
        && let Ok(s) = Signal::try_from(sig)
    {
        clear_line();
        // SAFETY: the default action runs no code of ours; signal() is async-signal-safe.
        let _ = unsafe { signal(s, SigHandler::SigDfl) };
        let _ = raise(s);
    }
}

/// Catches SIGINT, SIGTERM and SIGHUP for the rest of the process.
pub fn install() {
    use nix::sys::signal::{SaFlags, SigAction, SigSet, sigaction};
    // SA_RESTART: reads, writes and waits in progress go on instead of failing with EINTR.
    let action = SigAction::new(SigHandler::Handler(note), SaFlags::SA_RESTART, SigSet::empty());
    for s in SIGNALS {
        // SAFETY: the handler only touches an atomic and calls async-signal-safe functions.
        let _ = unsafe { sigaction(s, &action) };
    }
}

/// The signal that asked the run to stop, if one did.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// `SIGTERM` for 15, and so on.
pub fn name(sig: i32) -> String {
    Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGHUP), "SIGHUP");
    }
}
