//! Survives SIGBUS from mapped files that shrink while they are read (a mail client expunged
//! from a source mbox): a fault inside a registered mapping gets anonymous zero pages mapped
//! over the rest of that mapping, the mapping is flagged, and the read goes on; any other
//! SIGBUS keeps its previous disposition. The alternative, reading through bounded buffers,
//! would give up the borrowed slices every reader relies on.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use nix::sys::signal::SigSet;
use nix::unistd::{SysconfVar, sysconf};

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

/// More mappings than folders read at once by any run; past this a mapping is unguarded.
const SLOTS: usize = 1024;
static TABLE: [Slot; SLOTS] =
    [const { Slot { start: AtomicUsize::new(0), len: AtomicUsize::new(0), faulted: AtomicBool::new(false) } }; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
static PREVIOUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();

/// A registered mapping; unregistered when dropped.
#[derive(Debug)]
pub struct Guard(usize);

impl Guard {
    pub fn register(start: usize, len: usize) -> Option<Guard> {
        if start == 0 || len == 0 || !install() {
            return None;
        }
        for (i, s) in TABLE.iter().enumerate() {
            if s.start.load(SeqCst) == 0 && s.len.compare_exchange(0, len, SeqCst, SeqCst).is_ok() {
                s.faulted.store(false, SeqCst);
                s.start.store(start, SeqCst);
                return Some(Guard(i));
            }
        }
        None
    }

    pub fn faulted(&self) -> bool {
        TABLE[self.0].faulted.load(SeqCst)
    }
}

/// Whether `[start, start + len)` lies inside one registered mapping (all of them are
/// read-only, private mappings of files, or the zero pages put over a truncated end).
pub fn covers(start: usize, len: usize) -> bool {
    TABLE.iter().any(|s| {
        let (a, l) = (s.start.load(SeqCst), s.len.load(SeqCst));
        a != 0 && start >= a && start - a + len <= l
    })
}

impl Drop for Guard {
    fn drop(&mut self) {
        let s = &TABLE[self.0];
        s.start.store(0, SeqCst);
        s.len.store(0, SeqCst);
    }
}

fn install() -> bool {
    INSTALL.call_once(|| {
        if let Ok(Some(page)) = sysconf(SysconfVar::PAGE_SIZE)
            && page > 0
        {
            PAGE.store(page as usize, SeqCst);
        }
        let mut sa = no_action();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigbus;
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        sa.sa_mask = *SigSet::empty().as_ref();
        let mut old = no_action();
        // SAFETY: both structs are valid and outlive the call; the handler only uses
        // async-signal-safe calls (mmap, sigaction) and atomics. libc, not nix: nix's sigaction
        // is unsafe as well, and its SigAction::new (0.29) leaves `sa_restorer` uninitialised.
        if unsafe { libc::sigaction(libc::SIGBUS, &sa, &mut old) } == 0 {
            let _ = PREVIOUS.set(old);
        }
    });
    PREVIOUS.get().is_some()
}

/// A sigaction with no handler (SIG_DFL), no flags, an empty mask.
fn no_action() -> libc::sigaction {
    // SAFETY: its fields are integers, a signal set and an optional function pointer, all valid
    // as zeros.
    unsafe { std::mem::zeroed() }
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(SeqCst);
    for s in &TABLE {
        let start = s.start.load(SeqCst);
        let len = s.len.load(SeqCst);
        if start == 0 || addr < start || addr - start >= len {
            continue;
        }
        let from = addr & !(page - 1);
        let end = (start + len).div_ceil(page) * page;
        // SAFETY: [from, end) lies inside a live read-only mapping of ours (its guard is
        // dropped before it is unmapped); replacing its pages with zeros changes only
        // what this process reads there, and the flag says those bytes are not the file.
        // libc, not nix: nix's mmap is unsafe too, and a signal handler is best kept to the
        // bare system call.
        let p = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                end - from,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            s.faulted.store(true, SeqCst);
            return;
        }
    }
    // Not a guarded mapping: back to the previous disposition; the access faults again.
    if let Some(old) = PREVIOUS.get() {
        // SAFETY: restores the sigaction the kernel gave back when ours was installed.
        unsafe { libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut()) };
    }
}
