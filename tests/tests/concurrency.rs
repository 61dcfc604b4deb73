//! Concurrency tests with real threads: readers, writers, truncaters and
//! faulters share files under a memory limit small enough to force reclaim,
//! and every byte read is checked against a versioned model: the library's
//! oracle (`aopsfs::workload::oracle`), the one `aopsfs run` uses.
//!
//! Writers and truncaters of one file are serialised by the oracle's
//! mutation guard (the engine serialises them by i_mutex anyway). Each
//! publishes the file's next version before it starts (`started`) and marks
//! it applied when it returns (`completed`). Readers and faulters take no
//! lock at all: they race with writes, truncates, reclaim and each other, and
//! a read is correct when each page-sized chunk of it equals that chunk in
//! some version from the last one completed when the read began to the last
//! one started when it ended (a page is copied atomically; a read spanning
//! pages is not atomic, as in the kernel).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use aopsfs::fs::aops::{AopOp, AopResult};
use aopsfs::fs::scripted::{Action, Hook, ScriptRule, ScriptedAops};
use aopsfs::workload::oracle::{Contents, Oracle};
use aopsfs::{AddressSpaceOperations, Engine, EngineConfig, PAGE_SIZE, VfsError};
use aopsfs_tests::*;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FILES: u64 = 3;
const MAX_PAGES: u64 = 12;
const MAX_SIZE: u64 = MAX_PAGES * PAGE_SIZE as u64;

/// Run `threads` workers for `ops` operations each on `aops` and check
/// every read; returns the engine for further assertions.
fn run_model_threads(
    aops: Arc<dyn AddressSpaceOperations>,
    threads: usize,
    ops: usize,
    seed: u64,
) -> Arc<Engine> {
    let engine = Engine::new(
        aops,
        EngineConfig {
            memory_limit_pages: Some(16),
            ra_pages: 8,
            ..EngineConfig::default()
        },
    );
    // File `ino` of the engine is file `ino` of the oracle; every thread is
    // a reader.
    let oracle = Arc::new(Oracle::new(
        (0..FILES).map(|_| Contents::default()).collect(),
        threads,
    ));
    for ino in 0..FILES {
        engine.open(ino);
    }
    let failed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (engine, oracle, failed, done) =
                (engine.clone(), oracle.clone(), failed.clone(), done.clone());
            thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(seed * 1000 + t as u64);
                for op in 0..ops {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let ino = rng.random_range(0..FILES);
                    let file = ino as usize;
                    match rng.random_range(0..100) {
                        0..=29 => {
                            let pos = rng.random_range(0..MAX_SIZE - 1);
                            let len = rng
                                .random_range(1..=(3 * PAGE_SIZE).min((MAX_SIZE - pos) as usize));
                            let data = pattern(seed ^ (t * 1_000_000 + op) as u64, len);
                            let mut mutation = oracle.mutate(file);
                            let mut next = mutation.current().clone();
                            next.write(pos, &data);
                            mutation.publish(next);
                            assert_eq!(engine.write(ino, pos, &data).expect("write"), len);
                            // Dropping the guard marks the version applied.
                            drop(mutation);
                        }
                        30..=37 => {
                            let size = rng.random_range(0..=MAX_SIZE);
                            let mut mutation = oracle.mutate(file);
                            let mut next = mutation.current().clone();
                            next.truncate(size);
                            mutation.publish(next);
                            engine.truncate(ino, size).expect("truncate");
                            drop(mutation);
                        }
                        38..=44 => {
                            let pgoff = rng.random_range(0..MAX_PAGES);
                            let ticket = oracle.begin_read(t, file);
                            let got = engine.fault(ino, pgoff);
                            let mapped = match &got {
                                Ok(page) => Some(page.as_slice()),
                                Err(VfsError::Sigbus { .. }) => None,
                                Err(e) => panic!("fault failed: {e}"),
                            };
                            let result = oracle.check_fault(ticket, pgoff, mapped);
                            if let Err(msg) = result {
                                failed.store(true, Ordering::Relaxed);
                                panic!("thread {t} op {op} ino {ino}: {msg}");
                            }
                        }
                        45..=47 => {
                            engine.fsync(ino).expect("fsync");
                        }
                        48 => {
                            engine.drop_caches();
                        }
                        _ => {
                            let pos = rng.random_range(0..MAX_SIZE);
                            let len = rng.random_range(1..=4 * PAGE_SIZE);
                            let ticket = oracle.begin_read(t, file);
                            let got = read(&engine, ino, pos, len).expect("read");
                            let result = oracle.check_read(ticket, pos, len, &got);
                            if let Err(msg) = result {
                                failed.store(true, Ordering::Relaxed);
                                panic!("thread {t} op {op} ino {ino}: {msg}");
                            }
                        }
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // Watchdog: a deadlock fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(240);
    while done.load(Ordering::SeqCst) < threads as u64 && !handles.iter().all(|h| h.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "threads did not finish: deadlock? {:?}",
            engine.stats().snapshot()
        );
        thread::sleep(Duration::from_millis(20));
    }
    for handle in handles {
        handle.join().expect("worker panicked");
    }
    // Quiescent now: every file equals its latest version exactly.
    for ino in 0..FILES {
        let latest = oracle.latest(ino as usize);
        assert_eq!(
            read(&engine, ino, 0, MAX_SIZE as usize).unwrap(),
            latest.bytes(),
            "final contents of inode {ino}"
        );
    }
    assert_all_pages_baseline(&engine);
    engine
}

#[test]
fn four_threads_on_ramfs_match_the_model_under_memory_pressure() {
    let engine = run_model_threads(native_ramfs(), 4, 1500, 1);
    let stats = engine.stats().snapshot();
    assert!(
        stats.writepage_activations > 0,
        "reclaim met ramfs's writepage-activate: {stats:?}"
    );
}

#[test]
fn four_threads_on_wasm_ramfs_match_the_model_under_memory_pressure() {
    let engine = run_model_threads(aopsfs_tests::plugins::wasm_ramfs(), 4, 600, 4);
    let stats = engine.stats().snapshot();
    assert!(
        stats.writepage_activations > 0,
        "reclaim met the plugin's writepage-activate: {stats:?}"
    );
    assert_eq!(stats.contract_violations, 0);
}

#[test]
fn four_threads_on_a_persistent_store_match_the_model_with_reclaim() {
    let (_store, aops) = native_memstore();
    let engine = run_model_threads(aops, 4, 1500, 2);
    let stats = engine.stats().snapshot();
    assert!(
        stats.reclaimed > 0,
        "the memory limit forced reclaim: {stats:?}"
    );
    assert!(stats.calls(AopOp::Writepage, aopsfs::ResultKind::Ok) > 0);
}

#[test]
fn six_threads_with_random_truncated_page_results_match_the_model() {
    // Every readpage, prepare_write and commit_write returns truncated-page
    // (after unlocking) one time in eight: the loops must retry and lose
    // nothing.
    let scripted = ScriptedAops::new();
    let counter = Arc::new(AtomicU64::new(0));
    for op in [AopOp::Readpage, AopOp::PrepareWrite, AopOp::CommitWrite] {
        let counter = counter.clone();
        let hook: Hook = Arc::new(move |inner, inode, page| {
            if counter.fetch_add(1, Ordering::Relaxed) % 8 == 7 {
                page.unlock();
                return Ok(AopResult::TruncatedPage);
            }
            match op {
                AopOp::Readpage => inner.readpage(inode, page),
                AopOp::PrepareWrite | AopOp::CommitWrite => {
                    // The hook does not know from/to; a full-page prepare
                    // that reads the page in is always correct.
                    if op == AopOp::PrepareWrite {
                        inner.prepare_write(inode, page, 0, 1)
                    } else {
                        inner.commit_write(inode, page, 0, 1)
                    }
                }
                _ => unreachable!(),
            }
        });
        scripted.push(ScriptRule::always(op, Action::Call(hook)));
    }
    let engine = run_model_threads(scripted, 6, 1000, 3);
    assert!(engine.stats().total_retries() > 0);
    assert_eq!(
        engine.stats().contract_violations.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn truncate_during_readpage_race() {
    // readpage blocks (page locked) until truncate has started and is
    // waiting in its second pass; then it completes. Truncate must wait for
    // the page lock, remove the page, and the reader must see either the
    // old data or nothing, never stale bytes past the new EOF.
    let scripted = ScriptedAops::new();
    let engine = engine_no_ra(scripted.clone());
    let data = pattern(40, 2 * PAGE_SIZE);
    write_sync_and_evict(&engine, 1, 0, &data);
    let (in_readpage_tx, in_readpage_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let in_readpage_tx = Mutex::new(in_readpage_tx);
    let hook: Hook = Arc::new(move |inner, inode, page| {
        in_readpage_tx.lock().send(()).unwrap();
        release_rx
            .lock()
            .recv_timeout(Duration::from_secs(30))
            .expect("released");
        inner.readpage(inode, page)
    });
    scripted.push(ScriptRule::times(AopOp::Readpage, 1, Action::Call(hook)).on(1, 1));

    let reader = {
        let engine = engine.clone();
        thread::spawn(move || read(&engine, 1, PAGE_SIZE as u64, PAGE_SIZE))
    };
    in_readpage_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("reader entered readpage");
    let truncater = {
        let engine = engine.clone();
        thread::spawn(move || engine.truncate(1, 100))
    };
    thread::sleep(Duration::from_millis(100));
    assert!(
        !truncater.is_finished(),
        "truncate must wait for the locked page in its second pass"
    );
    release_tx.send(()).unwrap();
    truncater.join().unwrap().expect("truncate");
    let got = reader.join().unwrap().expect("read");
    assert!(
        got.is_empty() || got == data[PAGE_SIZE..],
        "read returned {} bytes of neither old data nor nothing",
        got.len()
    );
    assert!(
        engine.mapping(1).unwrap().find_get_page(1).is_none(),
        "the page past EOF is gone"
    );
    assert_eq!(engine.size(1).unwrap(), 100);
    assert_eq!(read(&engine, 1, 0, 2 * PAGE_SIZE).unwrap(), data[..100]);
    // Extending again shows zeros, not the old bytes.
    engine.truncate(1, 2 * PAGE_SIZE as u64).unwrap();
    let after = read(&engine, 1, 0, 2 * PAGE_SIZE).unwrap();
    assert_eq!(&after[..100], &data[..100]);
    assert!(
        after[100..].iter().all(|&b| b == 0),
        "bytes past the old EOF read as zero"
    );
    assert_all_pages_baseline(&engine);
}

#[test]
fn concurrent_readers_of_one_uncached_page_call_readpage_once() {
    // Page lock contention: many threads miss on the same page at once;
    // one reads it, the others sleep on the page lock and find it uptodate.
    let (store, aops) = native_memstore();
    let scripted = ScriptedAops::wrapping(aops);
    let engine = engine_no_ra(scripted.clone());
    let data = pattern(41, PAGE_SIZE);
    write_sync_and_evict(&engine, 1, 0, &data);
    drop(store);
    let slow: Hook = Arc::new(|inner, inode, page| {
        thread::sleep(Duration::from_millis(50));
        inner.readpage(inode, page)
    });
    scripted.push(ScriptRule::always(AopOp::Readpage, Action::Call(slow)));
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (engine, barrier) = (engine.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                read(&engine, 1, 0, PAGE_SIZE).unwrap()
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), data);
    }
    assert_eq!(
        scripted.count(AopOp::Readpage, AopResult::Ok),
        1,
        "only one thread read the page"
    );
    assert_all_pages_baseline(&engine);
}
