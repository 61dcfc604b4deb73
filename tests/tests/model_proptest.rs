//! Property tests: random single-threaded operation sequences (like fsx)
//! against a byte-vector model, on every native aops, with a memory limit
//! small enough that reclaim runs throughout. After every operation the
//! result is compared with the model; at the end every page is back at its
//! baseline, and for persistent stores a "remount" (a new engine over the
//! same store) reads back exactly the model.

use std::sync::Arc;

use aopsfs::fs::aops::{AopOp, AopResult};
use aopsfs::fs::memstore::{MemStore, MemStoreAops};
use aopsfs::fs::scripted::{Action, Hook, ScriptRule, ScriptedAops};
use aopsfs::{AddressSpaceOperations, Engine, EngineConfig, PAGE_SIZE, SyncMode, VfsError};
use aopsfs_tests::*;
use proptest::prelude::*;

const FILES: u64 = 2;
const MAX_SIZE: u64 = 10 * PAGE_SIZE as u64;

#[derive(Clone, Debug)]
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
    WritePage {
        ino: u64,
        index: u64,
    },
    ReadCachePage {
        ino: u64,
        index: u64,
    },
    DropCaches,
    Reclaim {
        pages: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let ino = 0..FILES;
    let pos = 0..MAX_SIZE;
    prop_oneof![
        6 => (ino.clone(), pos.clone(), 1..3 * PAGE_SIZE, any::<u64>()).prop_map(|(ino, pos, len, seed)| {
            let len = len.min((MAX_SIZE - pos) as usize).max(1);
            Op::Write { ino, pos, len, seed }
        }),
        6 => (ino.clone(), pos.clone(), 1..3 * PAGE_SIZE).prop_map(|(ino, pos, len)| Op::Read { ino, pos, len }),
        2 => (ino.clone(), 0..=MAX_SIZE).prop_map(|(ino, size)| Op::Truncate { ino, size }),
        2 => (ino.clone(), 0..10u64).prop_map(|(ino, pgoff)| Op::Fault { ino, pgoff }),
        1 => ino.clone().prop_map(|ino| Op::Fsync { ino }),
        1 => ino.clone().prop_map(|ino| Op::Writeback { ino }),
        1 => (ino.clone(), 0..10u64).prop_map(|(ino, index)| Op::WritePage { ino, index }),
        1 => (ino.clone(), 0..10u64).prop_map(|(ino, index)| Op::ReadCachePage { ino, index }),
        1 => Just(Op::DropCaches),
        1 => (1..8usize).prop_map(|pages| Op::Reclaim { pages }),
    ]
}

/// Apply `ops` to `engine` and the model, comparing as we go.
fn run(engine: &Engine, model: &mut Model, ops: &[Op]) -> Result<(), TestCaseError> {
    for ino in 0..FILES {
        engine.open(ino);
    }
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Write {
                ino,
                pos,
                len,
                seed,
            } => {
                let data = pattern(seed, len);
                prop_assert_eq!(engine.write(ino, pos, &data), Ok(len), "op {}: {:?}", i, op);
                model.write(ino, pos, &data);
            }
            Op::Read { ino, pos, len } => {
                let got = read(engine, ino, pos, len)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: {op:?}: {e}")))?;
                let want = model.read(ino, pos, len);
                prop_assert!(
                    got == want,
                    "op {}: {:?}: first difference at {:?}",
                    i,
                    op,
                    first_difference(&want, &got)
                );
            }
            Op::Truncate { ino, size } => {
                prop_assert_eq!(engine.truncate(ino, size), Ok(()));
                model.truncate(ino, size);
            }
            Op::Fault { ino, pgoff } => match (engine.fault(ino, pgoff), model.fault(ino, pgoff)) {
                (Ok(got), Some(want)) => prop_assert!(got == want, "op {}: {:?}", i, op),
                (Err(VfsError::Sigbus { .. }), None) => {}
                (got, want) => prop_assert!(
                    false,
                    "op {}: {:?}: got {:?}, model {:?}",
                    i,
                    op,
                    got.map(|_| ()),
                    want.map(|_| ())
                ),
            },
            Op::Fsync { ino } => prop_assert_eq!(engine.fsync(ino), Ok(())),
            Op::Writeback { ino } => prop_assert_eq!(engine.writeback(ino, SyncMode::None), Ok(())),
            Op::WritePage { ino, index } => prop_assert_eq!(engine.write_page(ino, index), Ok(())),
            Op::ReadCachePage { ino, index } => {
                let page = engine
                    .read_cache_page(ino, index)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: {e}")))?;
                // Internal users see the whole page; below EOF it is the model's.
                let want = model.read(ino, index * PAGE_SIZE as u64, PAGE_SIZE);
                prop_assert!(
                    page.snapshot()[..want.len()] == want[..],
                    "op {}: {:?}",
                    i,
                    op
                );
            }
            Op::DropCaches => {
                engine.drop_caches();
            }
            Op::Reclaim { pages } => {
                engine.try_to_free_pages(pages);
            }
        }
        if let Some(limit) = engine.config().memory_limit_pages {
            // Clean pages are always reclaimable, so the cache only overshoots
            // its limit by pages reclaim could not free (dirty ramfs pages).
            let stats = engine.stats().snapshot();
            prop_assert!(engine.nr_pages() <= limit || stats.over_limit_allocs > 0);
        }
    }
    for ino in 0..FILES {
        let got = read(engine, ino, 0, MAX_SIZE as usize).unwrap();
        prop_assert!(got == model.file(ino), "final contents of {}", ino);
    }
    assert_all_pages_baseline(engine);
    prop_assert_eq!(
        engine
            .stats()
            .contract_violations
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    Ok(())
}

fn limited(aops: Arc<dyn AddressSpaceOperations>, ra_pages: u64) -> Arc<Engine> {
    Engine::new(
        aops,
        EngineConfig {
            memory_limit_pages: Some(6),
            ra_pages,
            reclaim_batch: 4,
            ..EngineConfig::default()
        },
    )
}

/// Remount: a new engine over the same store sees exactly the model.
fn check_remount(
    store: Arc<MemStore>,
    engine: Arc<Engine>,
    model: &Model,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(engine.sync_all(), Ok(()));
    let sizes: Vec<u64> = (0..FILES).map(|ino| engine.size(ino).unwrap()).collect();
    drop(engine);
    let remounted = Engine::new(Arc::new(MemStoreAops::new(store)), EngineConfig::default());
    for ino in 0..FILES {
        remounted.open_with_size(ino, sizes[ino as usize]);
        let got = read(&remounted, ino, 0, MAX_SIZE as usize).unwrap();
        prop_assert!(
            got == model.file(ino),
            "after remount, inode {} differs at {:?}",
            ino,
            first_difference(model.file(ino), &got)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/model_proptest.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn ramfs_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..120), ra in prop_oneof![Just(0u64), Just(4), Just(32)]) {
        let engine = limited(native_ramfs(), ra);
        run(&engine, &mut Model::default(), &ops)?;
    }

    #[test]
    fn wasm_ramfs_matches_the_model_exactly_like_native_ramfs(
        ops in prop::collection::vec(op_strategy(), 1..80),
        ra in prop_oneof![Just(0u64), Just(4), Just(32)],
    ) {
        // The same sequence on both: each matches the model, and the engine
        // made exactly the same aop calls with the same results.
        let native = limited(native_ramfs(), ra);
        run(&native, &mut Model::default(), &ops)?;
        let wasm = limited(aopsfs_tests::plugins::wasm_ramfs(), ra);
        run(&wasm, &mut Model::default(), &ops)?;
        prop_assert_eq!(native.stats().snapshot(), wasm.stats().snapshot());
    }

    #[test]
    fn persistent_store_matches_the_model_and_survives_remount(ops in prop::collection::vec(op_strategy(), 1..120), ra in prop_oneof![Just(0u64), Just(4), Just(32)]) {
        let (store, aops) = native_memstore();
        let engine = limited(aops, ra);
        let mut model = Model::default();
        run(&engine, &mut model, &ops)?;
        check_remount(store, engine, &model)?;
    }

    #[test]
    fn truncated_page_injection_changes_nothing_visible(ops in prop::collection::vec(op_strategy(), 1..100), every in 2..6u64) {
        // Every `every`-th readpage / prepare_write / commit_write (counted
        // per operation, so the plugin still makes progress) returns
        // truncated-page after unlocking: retries must be invisible.
        let scripted = ScriptedAops::new();
        for op in [AopOp::Readpage, AopOp::PrepareWrite, AopOp::CommitWrite] {
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let hook: Hook = Arc::new(move |inner, inode, page| {
                if counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed).is_multiple_of(every) {
                    page.unlock();
                    return Ok(AopResult::TruncatedPage);
                }
                match op {
                    AopOp::Readpage => inner.readpage(inode, page),
                    AopOp::PrepareWrite => inner.prepare_write(inode, page, 0, 1),
                    _ => inner.commit_write(inode, page, 0, 1),
                }
            });
            scripted.push(ScriptRule::always(op, Action::Call(hook)));
        }
        let engine = limited(scripted, 4);
        run(&engine, &mut Model::default(), &ops)?;
    }
}
