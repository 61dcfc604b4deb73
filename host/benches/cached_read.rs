//! Read-path throughput of the engine with native aops.
//!
//! `cached_read`: 128 KiB reads of a fully cached 4 MiB file (the read loop
//! copying from uptodate pages). `uncached_read`: the same reads after
//! dropping the cache each time, so every page goes through readahead and
//! the native ramfs readpage. Run with `cargo bench --bench cached_read`;
//! criterion prints the throughput of each.

use std::sync::Arc;

use aopsfs::fs::ramfs::Ramfs;
use aopsfs::{Engine, EngineConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const FILE_SIZE: u64 = 4 << 20;
const READ_SIZE: usize = 128 << 10;

fn engine_with_file(written: bool) -> Arc<Engine> {
    let engine = Engine::new(Arc::new(Ramfs), EngineConfig::default());
    engine.open(1);
    if written {
        let data: Vec<u8> = (0..FILE_SIZE).map(|i| (i % 251) as u8).collect();
        engine.write(1, 0, &data).unwrap();
    } else {
        // A sparse ramfs file: its pages are clean zeros, so drop_caches can
        // free them and the next read must call readpage.
        engine.truncate(1, FILE_SIZE).unwrap();
    }
    engine
}

fn cached_read(c: &mut Criterion) {
    let engine = engine_with_file(true);
    let mut buf = vec![0u8; READ_SIZE];
    let mut pos = 0u64;
    let mut group = c.benchmark_group("read_128k");
    group.throughput(Throughput::Bytes(READ_SIZE as u64));
    group.bench_function("cached_read", |b| {
        b.iter(|| {
            let n = engine.read(1, pos, &mut buf).unwrap();
            assert_eq!(n, READ_SIZE);
            pos = (pos + READ_SIZE as u64) % FILE_SIZE;
        })
    });
    group.finish();
}

fn uncached_read(c: &mut Criterion) {
    let engine = engine_with_file(false);
    let mut buf = vec![0u8; READ_SIZE];
    let mut group = c.benchmark_group("read_128k");
    group.throughput(Throughput::Bytes(READ_SIZE as u64));
    group.bench_function("uncached_read", |b| {
        b.iter(|| {
            engine.drop_caches();
            let n = engine.read(1, 0, &mut buf).unwrap();
            assert_eq!(n, READ_SIZE);
        })
    });
    group.finish();
}

criterion_group!(benches, cached_read, uncached_read);
criterion_main!(benches);
