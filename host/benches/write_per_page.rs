//! Buffered write per 4 KiB page, native vs WASM ramfs: the cost the mount's
//! sequential-write job pays per page, without FUSE.
//!
//! Each iteration writes `CHUNK` whole pages to an empty file with one
//! `Engine::write` (the generic_file_buffered_write loop: grab_cache_page,
//! prepare_write, copy, commit_write per page; for the WASM plugin that is
//! two export calls and two imports per page), then truncates the file back
//! to zero so the next write allocates fresh pages again. The summary prints
//! nanoseconds per page for each and the difference and ratio.
//!
//! Needs the plugins: run `scripts/build-plugins` first.

use std::sync::Arc;
use std::time::Duration;

use aopsfs::fs::ramfs::Ramfs;
use aopsfs::plugin::{PluginOptions, load_plugin};
use aopsfs::{AddressSpaceOperations, Engine, EngineConfig, PAGE_SIZE};
use criterion::{Criterion, criterion_group, criterion_main};

mod common;

/// The inode every write goes to.
const INO: u64 = 3;
/// Pages per write call: 128 KiB, the size of one FUSE write request.
const CHUNK: usize = 32;

/// An engine over one implementation, with a chunk of data to write.
struct Subject {
    label: &'static str,
    engine: Arc<Engine>,
    data: Vec<u8>,
}

impl Subject {
    fn new(label: &'static str, aops: Arc<dyn AddressSpaceOperations>) -> Subject {
        let engine = Engine::new(aops, EngineConfig::default());
        engine.open(INO);
        let data = (0..CHUNK * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
        Subject {
            label,
            engine,
            data,
        }
    }

    /// Write the chunk to the empty file, then empty it again.
    fn write_chunk(&self) {
        let n = self.engine.write(INO, 0, &self.data).expect("write");
        assert_eq!(n, self.data.len(), "{}: short write", self.label);
        self.engine.truncate(INO, 0).expect("truncate");
    }

    /// Nanoseconds per page written (truncate included): the best mean of
    /// several timed runs.
    fn ns_per_page(&self) -> f64 {
        common::best_mean_ns(20_000 / CHUNK, CHUNK, || self.write_chunk())
    }
}

fn write_per_page(c: &mut Criterion) {
    let wasm_ramfs = load_plugin("ramfs", PluginOptions::default())
        .unwrap_or_else(|e| panic!("run scripts/build-plugins first: {e}"));
    let subjects = [
        Subject::new("ramfs/native", Arc::new(Ramfs)),
        Subject::new("ramfs/wasm", wasm_ramfs),
    ];
    let mut group = c.benchmark_group("write_128k_chunk");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for subject in &subjects {
        group.bench_function(subject.label, |b| b.iter(|| subject.write_chunk()));
    }
    group.finish();

    let ns: Vec<f64> = subjects.iter().map(Subject::ns_per_page).collect();
    println!(
        "\nbuffered write of a 4 KiB page, {CHUNK} pages per write, truncate included (best mean of 7 runs):"
    );
    for (subject, ns) in subjects.iter().zip(&ns) {
        println!("  {:<14} {:>9.1} ns", subject.label, ns);
    }
    println!("  WASM - native = {:>7.1} ns per page", ns[1] - ns[0]);
    println!(
        "  native / WASM = {:>7.2} x (the mount's write throughput ratio if nothing else differed)",
        ns[0] / ns[1]
    );
}

criterion_group!(benches, write_per_page);
criterion_main!(benches);
