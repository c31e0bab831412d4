//! Parsing throughput: the mbox splitter (MB/s), a full mbox message parse, Maildir name
//! parsing and the planner's matching, on deterministic generated data.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailmover::flags::Flags;
use mailmover::message::{DateSource, Meta};
use mailmover::store::maildir::name;
use mailmover::store::mbox::date::Zone;
use mailmover::store::mbox::read::{ReadOptions, Variant, parse_message};
use mailmover::store::mbox::split::{ContentLength, Splitter};
use mailmover::sync::plan::Matcher;

mod common;
use common::mbox_bytes;

fn splitter(c: &mut Criterion) {
    let data = mbox_bytes(32);
    let mut g = c.benchmark_group("mbox");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("split 32 MiB", |b| b.iter(|| Splitter::new(black_box(&data), 0, ContentLength::Used).count()));
    let ro = ReadOptions { variant: Variant::Auto, zone: Zone::Utc, keep_internal_headers: false, as_target: false };
    g.bench_function("split+parse 32 MiB", |b| {
        b.iter(|| {
            Splitter::new(&data, 0, ContentLength::Used)
                .map(|e| parse_message(&data, &e, &ro, 0).pieces.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn names(c: &mut Criterion) {
    let names: Vec<String> = (0..10_000)
        .map(|i| {
            format!(
                "{}.M{}P{}Q{i}.host.example.com,S={},W={}:2,{}",
                1_600_000_000 + i,
                i * 13,
                4242,
                i * 7,
                i * 7 + 100,
                ["", "S", "RS", "FRS", "DSTab"][i % 5]
            )
        })
        .collect();
    c.bench_function("maildir name parse x10k", |b| {
        b.iter(|| names.iter().map(|n| name::parse(black_box(n.as_bytes())).flags.bits()).fold(0, |a, x| a ^ x))
    });
}

fn planner(c: &mut Criterion) {
    let metas: Vec<([u8; 32], Meta)> = (0..50_000u32)
        .map(|i| {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            let mut m = Meta::new(i as i64, DateSource::Mtime);
            m.flags = if i % 2 == 0 { Flags::SEEN } else { Flags::empty() };
            (h, m)
        })
        .collect();
    c.bench_function("plan 50k unchanged", |b| {
        b.iter(|| {
            let mut m = Matcher::new(metas.iter().cloned());
            metas.iter().filter(|(h, meta)| matches!(m.decide(h, meta), mailmover::sync::plan::Action::Skip(_))).count()
        })
    });
}

criterion_group!(benches, splitter, names, planner);
criterion_main!(benches);
