//! End to end through the library: scanning a Maildir tree and syncing a generated mbox into a
//! Maildir (no fsync, as the peers run), on data made in a temporary directory.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailmover::events::Discard;
use mailmover::spec::{Kind, Store};
use mailmover::store::maildir::read as mdread;
use mailmover::sync::{SyncOptions, sync};

mod common;

fn end_to_end(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mbox = dir.path().join("in.mbox");
    let data = common::mbox_bytes(16);
    std::fs::write(&mbox, &data).expect("write mbox");
    let src = Store { kind: Kind::Mbox, path: mbox, explicit: true };
    let opts = SyncOptions { durable: false, use_cache: false, ..Default::default() };
    let mut g = c.benchmark_group("sync");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    let mut n = 0;
    g.bench_function("mbox->maildir 16 MiB", |b| {
        b.iter(|| {
            n += 1;
            let dst = Store { kind: Kind::Maildir, path: dir.path().join(format!("out{n}")), explicit: true };
            let s = sync(&src, &dst, &opts, &Discard).expect("sync");
            std::fs::remove_dir_all(&dst.path).ok();
            s.counts.transferred
        })
    });
    let dst = Store { kind: Kind::Maildir, path: dir.path().join("scan"), explicit: true };
    sync(&src, &dst, &opts, &Discard).expect("sync");
    g.bench_function("maildir folder scan", |b| {
        b.iter(|| {
            let mut p = Vec::new();
            let dir = mailmover::fsx::Dir::open_root(&dst.path).expect("open");
            let kw = mdread::keywords_in(&dir).unwrap_or_default();
            mdread::MessageDirs::open(&dir, &mut p).expect("open").stream(&kw).filter(Result::is_ok).count()
        })
    });
    g.finish();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
