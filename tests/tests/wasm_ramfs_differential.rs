//! The WASM ramfs plugin behaves exactly like the native ramfs: the same
//! seeded random operation sequence on two engines gives identical results
//! for every operation and identical aop-call statistics, and both match a
//! byte model of the files.

use std::sync::Arc;

use aopsfs::{AddressSpaceOperations, Engine, EngineConfig, PAGE_SIZE, SyncMode, VfsError};
use aopsfs_tests::{Model, native_ramfs, pattern, wasm_ramfs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const INODES: u64 = 3;
const MAX_SIZE: u64 = 12 * PAGE_SIZE as u64;

/// One operation of the sequence.
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
    Fault {
        ino: u64,
        pgoff: u64,
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
            len: rng.random_range(1..2 * PAGE_SIZE),
            seed: rng.random(),
        },
        7..=12 => Op::Read {
            ino,
            pos,
            len: rng.random_range(1..3 * PAGE_SIZE),
        },
        13..=14 => Op::Truncate {
            ino,
            size: rng.random_range(0..=MAX_SIZE),
        },
        15..=16 => Op::Fault {
            ino,
            pgoff: rng.random_range(0..14),
        },
        17 => Op::Fsync { ino },
        18 => Op::Writeback { ino },
        _ => {
            if rng.random_bool(0.5) {
                Op::DropCaches
            } else {
                Op::Reclaim {
                    pages: rng.random_range(1..16),
                }
            }
        }
    }
}

/// What an operation returned, comparable across engines.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Bytes(Vec<u8>),
    Count(usize),
    Done,
    Failed(String),
}

fn failed(e: VfsError) -> Outcome {
    Outcome::Failed(format!("{:?} {}", e.errno(), e))
}

fn apply(engine: &Engine, op: Op) -> Outcome {
    match op {
        Op::Write {
            ino,
            pos,
            len,
            seed,
        } => {
            let data = pattern(seed, len);
            engine
                .write(ino, pos, &data)
                .map_or_else(failed, Outcome::Count)
        }
        Op::Read { ino, pos, len } => {
            aopsfs_tests::read(engine, ino, pos, len).map_or_else(failed, Outcome::Bytes)
        }
        Op::Truncate { ino, size } => engine
            .truncate(ino, size)
            .map_or_else(failed, |()| Outcome::Done),
        Op::Fault { ino, pgoff } => engine.fault(ino, pgoff).map_or_else(failed, Outcome::Bytes),
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
            memory_limit_pages: Some(24),
            ..EngineConfig::default()
        },
    );
    for ino in 1..=INODES {
        engine.open(ino);
    }
    engine
}

#[test]
fn wasm_ramfs_gives_the_same_results_and_aop_statistics_as_native_ramfs() {
    for seed in 0..4u64 {
        let native = engine(native_ramfs());
        let wasm = engine(wasm_ramfs());
        let mut model = Model::default();
        let mut rng = ChaCha8Rng::seed_from_u64(0xa095_f500 + seed);
        for step in 0..400 {
            let op = random_op(&mut rng);
            let expected = apply(&native, op);
            let actual = apply(&wasm, op);
            assert_eq!(
                actual, expected,
                "seed {seed} step {step}: {op:?} differs between WASM and native ramfs"
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
        let (native_stats, wasm_stats) = (native.stats().snapshot(), wasm.stats().snapshot());
        assert_eq!(
            wasm_stats.aop_calls, native_stats.aop_calls,
            "seed {seed}: aop calls differ"
        );
        assert_eq!(wasm_stats, native_stats, "seed {seed}: statistics differ");
        assert!(
            wasm.violations().is_empty(),
            "seed {seed}: {:?}",
            wasm.violations()
        );
        aopsfs_tests::assert_all_pages_baseline(&wasm);
    }
}
