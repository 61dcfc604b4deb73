//! The WASM blockfs plugin and the native twin are the same filesystem: the
//! same seeded operation sequence gives identical results, identical
//! aop-call statistics, the same device requests and byte-identical images
//! (the twin runs the same blockmap code natively), and both match a byte
//! model.

use std::path::Path;
use std::sync::Arc;

use aopsfs::fs::blockfs::NativeBlockfs;
use aopsfs::plugin::PluginOptions;
use aopsfs::services::BlockDevice;
use aopsfs::{AddressSpaceOperations, Engine, EngineConfig, PAGE_SIZE, SyncMode, VfsError};
use aopsfs_tests::plugins::load_plugin;
use aopsfs_tests::{Model, pattern};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const INODES: u64 = 3;
const MAX_SIZE: u64 = 40 * PAGE_SIZE as u64;
const IMAGE_BYTES: u64 = 8 << 20;

#[derive(Clone, Copy, Debug)]
enum Op {
    Write {
        ino: u64,
        pos: u64,
        len: usize,
        seed: u64,
    },
    Read {
        ino: u64,
        pos: u64,
        len: usize,
    },
    Truncate {
        ino: u64,
        size: u64,
    },
    Fsync {
        ino: u64,
    },
    Writeback {
        ino: u64,
    },
    DropCaches,
    Reclaim {
        pages: usize,
    },
}

fn random_op(rng: &mut ChaCha8Rng) -> Op {
    let ino = rng.random_range(1..=INODES);
    let pos = rng.random_range(0..MAX_SIZE);
    match rng.random_range(0..20) {
        0..=6 => Op::Write {
            ino,
            pos,
            len: rng.random_range(1..3 * PAGE_SIZE),
            seed: rng.random(),
        },
        7..=12 => Op::Read {
            ino,
            pos,
            len: rng.random_range(1..8 * PAGE_SIZE),
        },
        13 => Op::Truncate {
            ino,
            size: rng.random_range(0..=MAX_SIZE),
        },
        14..=15 => Op::Fsync { ino },
        16 => Op::Writeback { ino },
        17..=18 => Op::DropCaches,
        _ => Op::Reclaim {
            pages: rng.random_range(1..32),
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Bytes(Vec<u8>),
    Count(usize),
    Done,
    Failed(String),
}

fn failed(e: VfsError) -> Outcome {
    Outcome::Failed(format!("{:?} {e}", e.errno()))
}

fn apply(engine: &Engine, op: Op) -> Outcome {
    match op {
        Op::Write {
            ino,
            pos,
            len,
            seed,
        } => engine
            .write(ino, pos, &pattern(seed, len))
            .map_or_else(failed, Outcome::Count),
        Op::Read { ino, pos, len } => {
            aopsfs_tests::read(engine, ino, pos, len).map_or_else(failed, Outcome::Bytes)
        }
        Op::Truncate { ino, size } => engine
            .truncate(ino, size)
            .map_or_else(failed, |()| Outcome::Done),
        Op::Fsync { ino } => engine.fsync(ino).map_or_else(failed, |()| Outcome::Done),
        Op::Writeback { ino } => engine
            .writeback(ino, SyncMode::None)
            .map_or_else(failed, |()| Outcome::Done),
        Op::DropCaches => Outcome::Count(engine.drop_caches()),
        Op::Reclaim { pages } => Outcome::Count(engine.try_to_free_pages(pages)),
    }
}

fn engine(aops: Arc<dyn AddressSpaceOperations>) -> Arc<Engine> {
    let engine = Engine::new(
        aops,
        EngineConfig {
            memory_limit_pages: Some(48),
            ..EngineConfig::default()
        },
    );
    for ino in 1..=INODES {
        engine.open(ino);
    }
    engine
}

fn device(path: &Path) -> Arc<BlockDevice> {
    BlockDevice::create(path, IMAGE_BYTES).expect("image")
}

#[test]
fn wasm_blockfs_and_the_native_twin_give_the_same_results_statistics_and_images() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 0..3u64 {
        let native_image = dir.path().join(format!("native-{seed}.img"));
        let wasm_image = dir.path().join(format!("wasm-{seed}.img"));
        let (native_dev, wasm_dev) = (device(&native_image), device(&wasm_image));
        let native = engine(Arc::new(
            NativeBlockfs::mount(Arc::clone(&native_dev)).expect("mount"),
        ));
        let wasm = engine(load_plugin(
            "blockfs",
            PluginOptions::default().with_block_device(Arc::clone(&wasm_dev)),
        ));
        let mut model = Model::default();
        let mut rng = ChaCha8Rng::seed_from_u64(0xb10c_f500 + seed);
        for step in 0..300 {
            let op = random_op(&mut rng);
            let expected = apply(&native, op);
            let actual = apply(&wasm, op);
            assert_eq!(
                actual, expected,
                "seed {seed} step {step}: {op:?} differs between WASM and native blockfs"
            );
            match op {
                Op::Write {
                    ino,
                    pos,
                    len,
                    seed,
                } => {
                    if let Outcome::Count(n) = expected {
                        model.write(ino, pos, &pattern(seed, len)[..n]);
                    }
                }
                Op::Truncate { ino, size } => model.truncate(ino, size),
                Op::Read { ino, pos, len } => {
                    assert_eq!(
                        expected,
                        Outcome::Bytes(model.read(ino, pos, len)),
                        "seed {seed} step {step}: {op:?} vs model"
                    );
                }
                _ => {}
            }
        }
        for ino in 1..=INODES {
            native.fsync(ino).unwrap();
            wasm.fsync(ino).unwrap();
        }
        assert_eq!(
            wasm.stats().snapshot(),
            native.stats().snapshot(),
            "seed {seed}: statistics differ"
        );
        assert!(
            wasm.violations().is_empty(),
            "seed {seed}: {:?}",
            wasm.violations()
        );
        // The same device requests, one for one (the twin runs the same
        // blockmap code and moves data the way the plugin's imports do).
        assert_eq!(
            wasm_dev.stats(),
            native_dev.stats(),
            "seed {seed}: device I/O differs"
        );
        drop((native, wasm));
        let (native_bytes, wasm_bytes) = (
            std::fs::read(&native_image).unwrap(),
            std::fs::read(&wasm_image).unwrap(),
        );
        let first_block = native_bytes
            .chunks(4096)
            .zip(wasm_bytes.chunks(4096))
            .position(|(a, b)| a != b);
        assert_eq!(
            first_block, None,
            "seed {seed}: the images differ (first at block {first_block:?})"
        );
    }
}

/// The fast path is taken, natively and in WASM alike: a readpage of a
/// stored page reads the device exactly twice (the 64-byte inode record,
/// then the data block straight into the page), and the bytes are right,
/// including the zeros past i_size in the last page.
#[test]
fn a_readpage_reads_the_inode_record_and_the_data_block_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    for wasm in [false, true] {
        let dev = device(&dir.path().join(format!("reads-{wasm}.img")));
        let aops: Arc<dyn AddressSpaceOperations> = if wasm {
            load_plugin(
                "blockfs",
                PluginOptions::default().with_block_device(Arc::clone(&dev)),
            )
        } else {
            Arc::new(NativeBlockfs::mount(Arc::clone(&dev)).expect("mount"))
        };
        let engine = aopsfs_tests::engine_no_ra(aops);
        engine.open(1);
        let data = pattern(5, 3 * PAGE_SIZE + 100);
        assert_eq!(engine.write(1, 0, &data).unwrap(), data.len());
        engine.fsync(1).unwrap();
        engine.drop_caches();
        let before = dev.stats().reads;
        assert_eq!(aopsfs_tests::read(&engine, 1, 0, data.len()).unwrap(), data);
        assert_eq!(
            dev.stats().reads - before,
            2 * 4,
            "wasm={wasm}: 4 readpages, each one record read and one data read"
        );
        let last = engine.mapping(1).unwrap().find_get_page(3).unwrap();
        assert!(last.snapshot()[100..].iter().all(|&b| b == 0));
        assert!(engine.violations().is_empty(), "{:?}", engine.violations());
    }
}
