//! A signal that stops a planned folder before its executing pass: nothing was written, and
//! the caches the run found must still be there for the next run (a folder that keeps being
//! interrupted while it is hashed would otherwise never get ahead). Its own test binary: the
//! signal is process-wide.
use std::path::Path;

const N: usize = 3000;

/// Raises SIGTERM at the first chunk of a streamed source (pass 1 of a planned folder).
struct SignalAtChunk(std::sync::atomic::AtomicU32);
impl mailmover::events::Recorder for SignalAtChunk {
    fn record(&self, e: mailmover::events::Event) {
        if let mailmover::events::Event::Discovered { bytes, .. } = e
            && bytes > 0
            && self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
        }
    }
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map(|t| t.lines().count()).unwrap_or(0)
}

fn msg(i: usize) -> Vec<u8> {
    format!("From: a@b\nSubject: m{i}\nMessage-ID: <{i}@x>\n\nbody {i}\n").into_bytes()
}

#[test]
fn interrupted_before_pass_two_keeps_caches() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(src.join(s)).unwrap();
    }
    for i in 0..N {
        std::fs::write(src.join(format!("cur/{i}.M{i}P1.h:2,S")), msg(i)).unwrap();
    }
    let s = mailmover::spec::Store::parse(&format!("maildir:{}", src.display())).unwrap();
    let d = mailmover::spec::Store::parse(&format!("maildir:{}", dst.display())).unwrap();
    let opts = mailmover::sync::SyncOptions { durable: false, ..Default::default() };
    let rec = mailmover::events::Discard;
    let r = mailmover::sync::sync(&s, &d, &opts, &rec).unwrap();
    assert_eq!(r.counts.transferred, N as u64);
    // A second run fills the source cache (the first run into an empty folder hashes nothing).
    let r = mailmover::sync::sync(&s, &d, &opts, &rec).unwrap();
    assert_eq!(r.counts.skipped_existing, N as u64);
    let cache = dst.join("mailmover-cache");
    let scache = dst.join("mailmover-source-cache");
    // Mail delivered to the target since: its cache is no longer complete.
    std::fs::write(dst.join("new/999.M1P9.other"), msg(999)).unwrap();
    mailmover::interrupt::install();
    let r = mailmover::sync::sync(&s, &d, &opts, &SignalAtChunk(Default::default())).unwrap();
    assert_eq!(r.counts.transferred, 0);
    assert!(lines(&cache) > N, "the target cache lost its lines: {}", lines(&cache));
    assert!(lines(&scache) > N, "the source cache lost its lines: {}", lines(&scache));
}
