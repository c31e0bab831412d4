//! The descriptor budget: descriptors held open across calls (source files opened ahead of
//! their read, unnamed files waiting for their sync) share half the open-file limit.

use std::sync::atomic::Ordering;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// How many descriptors may be held across calls at once ([`FdSlot`]): half the soft limit,
/// after raising it towards the hard limit (the usual soft limit of 1,024 would be one batch).
pub fn held_fd_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 0 };
        let want = hard.min(65_536);
        if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
            soft = want;
        }
        (soft / 2) as usize
    })
}

/// Descriptors held open across calls (unnamed files waiting for their sync, source files
/// opened ahead of their read), across all folders.
static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One descriptor of the budget [`held_fd_budget`], given back when dropped.
#[derive(Debug)]
pub struct FdSlot;

impl FdSlot {
    pub fn take() -> Option<FdSlot> {
        let budget = held_fd_budget();
        HELD.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < budget).then_some(n + 1)).ok().map(|_| FdSlot)
    }

    /// Descriptors held now.
    pub fn held() -> usize {
        HELD.load(Ordering::Acquire)
    }
}

/// Serialises the unit tests that count [`FdSlot`]s, so one's slots do not show in another's count.
#[cfg(test)]
pub static SLOT_COUNT_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for FdSlot {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::AcqRel);
    }
}
