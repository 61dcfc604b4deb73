//! clusterfs under contention: worker threads read and write their files
//! through the WASM plugin (blockfs data on a real image) while another
//! thread takes and releases the files' cluster locks "as another node".
//! The plugin answers contention with the OCFS2 pattern (unlock the page,
//! wait for the lock, return truncated-page), so the engine's loops retry;
//! every read must still match a model, and nothing may deadlock: a
//! watchdog fails the test if the threads do not finish in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use aopsfs::mm::filemap::Caller;
use aopsfs::plugin::{PluginLimits, PluginOptions};
use aopsfs::services::{BlockDevice, ClusterLockService, LockMode};
use aopsfs::{AopOp, Engine, EngineConfig, FaultKind, PAGE_SIZE, ResultKind};
use aopsfs_tests::plugins::load_plugin;
use aopsfs_tests::{Model, pattern, read};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WORKERS: u64 = 4;
const OPS_PER_WORKER: usize = 250;
const FILE_PAGES: u64 = 12;
/// The watchdog's bound: far beyond what the test needs.
const WATCHDOG: Duration = Duration::from_secs(180);

/// One worker: random writes, reads (checked against its own model),
/// fsyncs, cache drops (so reads go back to readpage) and truncates on its
/// own file.
fn worker(engine: &Engine, ino: u64, seed: u64) -> Result<u64, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut checked = 0;
    engine.open(ino);
    for step in 0..OPS_PER_WORKER {
        let pos = rng.random_range(0..FILE_PAGES * PAGE_SIZE as u64);
        match rng.random_range(0..10) {
            0..=3 => {
                let data = pattern(rng.random(), rng.random_range(1..2 * PAGE_SIZE));
                let n = engine
                    .write(ino, pos, &data)
                    .map_err(|e| format!("ino {ino} step {step}: write: {e}"))?;
                model.write(ino, pos, &data[..n]);
            }
            4..=7 => {
                let len = rng.random_range(1..3 * PAGE_SIZE);
                let got = read(engine, ino, pos, len)
                    .map_err(|e| format!("ino {ino} step {step}: read: {e}"))?;
                let want = model.read(ino, pos, len);
                if got != want {
                    return Err(format!(
                        "ino {ino} step {step}: read of {len} at {pos} differs from the model at byte {:?}",
                        aopsfs_tests::first_difference(&want, &got)
                    ));
                }
                checked += 1;
            }
            8 => {
                engine
                    .fsync(ino)
                    .map_err(|e| format!("ino {ino} step {step}: fsync: {e}"))?;
                engine.drop_caches();
            }
            _ => {
                let size = rng.random_range(0..FILE_PAGES * PAGE_SIZE as u64);
                engine
                    .truncate(ino, size)
                    .map_err(|e| format!("ino {ino} step {step}: truncate: {e}"))?;
                model.truncate(ino, size);
            }
        }
    }
    // Everything written is on the device and reads back from it.
    engine
        .fsync(ino)
        .map_err(|e| format!("ino {ino}: final fsync: {e}"))?;
    engine.drop_caches();
    let size = model.file(ino).len();
    let got = read(engine, ino, 0, size + 10).map_err(|e| format!("ino {ino}: final read: {e}"))?;
    if got != model.file(ino) {
        return Err(format!(
            "ino {ino}: final contents differ at byte {:?}",
            aopsfs_tests::first_difference(model.file(ino), &got)
        ));
    }
    Ok(checked + 1)
}

/// Another node: take each file's lock exclusively, hold it a moment,
/// release it, until told to stop. Returns how many times it held a lock.
fn other_node(locks: &Arc<ClusterLockService>, stop: &AtomicBool) -> u64 {
    let node = locks.node();
    let mut held = 0;
    while !stop.load(Ordering::Relaxed) {
        for ino in 1..=WORKERS {
            let name = format!("inode.{ino}");
            if node
                .lock_for(&name, LockMode::Exclusive, Duration::from_millis(500))
                .is_ok()
            {
                held += 1;
                thread::sleep(Duration::from_micros(300));
                node.unlock(&name).expect("the node holds the lock it took");
            }
            thread::sleep(Duration::from_micros(100));
        }
    }
    held
}

#[test]
fn clusterfs_readers_and_writers_retry_under_another_nodes_locks_and_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let device = BlockDevice::create(dir.path().join("cluster.img"), 64 << 20).unwrap();
    let locks = ClusterLockService::new(Duration::from_secs(5));
    let plugin = load_plugin(
        "clusterfs",
        PluginOptions::default()
            .with_block_device(device)
            .with_cluster_locks(Arc::clone(&locks))
            .with_config("backend", "block"),
    );
    // Readahead off: every cache miss is a readpage the read loop itself
    // must retry when the plugin answers truncated-page.
    let engine = Engine::new(
        plugin.clone(),
        EngineConfig {
            ra_pages: 0,
            ..EngineConfig::default()
        },
    );

    let stop = Arc::new(AtomicBool::new(false));
    let node_holds = Arc::new(AtomicU64::new(0));
    let node = {
        let (locks, stop, node_holds) = (
            Arc::clone(&locks),
            Arc::clone(&stop),
            Arc::clone(&node_holds),
        );
        thread::spawn(move || node_holds.store(other_node(&locks, &stop), Ordering::Relaxed))
    };

    let (done_tx, done_rx) = mpsc::channel();
    for ino in 1..=WORKERS {
        let (engine, done_tx) = (Arc::clone(&engine), done_tx.clone());
        thread::spawn(move || {
            let result = worker(&engine, ino, 0xc1a5_7e00 + ino);
            let _ = done_tx.send((ino, result));
        });
    }
    drop(done_tx);

    // The watchdog: every worker reports within the bound, or the test fails
    // (instead of hanging).
    let mut checked_reads = 0;
    for _ in 0..WORKERS {
        match done_rx.recv_timeout(WATCHDOG) {
            Ok((_, Ok(checked))) => checked_reads += checked,
            Ok((ino, Err(e))) => {
                stop.store(true, Ordering::Relaxed);
                panic!("worker {ino}: {e}\nviolations: {:?}", engine.violations());
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!(
                    "deadlock: workers did not finish within {WATCHDOG:?}; stats {:?}",
                    engine.stats().snapshot()
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    node.join().expect("the other node's thread");

    let stats = engine.stats();
    let truncated_reads = stats.aop_calls(AopOp::Readpage, ResultKind::TruncatedPage);
    assert!(
        node_holds.load(Ordering::Relaxed) > 0,
        "the other node never got a lock"
    );
    assert!(
        stats.total_retries() > 0,
        "no loop retried: {:?}",
        stats.snapshot()
    );
    assert!(
        stats.retries(Caller::ReadLoop) > 0,
        "the read loop never retried: {:?}",
        stats.snapshot()
    );
    assert!(
        truncated_reads > 0,
        "readpage never returned truncated-page: {:?}",
        stats.snapshot()
    );
    assert_eq!(stats.snapshot().livelocks, 0);
    assert!(engine.violations().is_empty(), "{:?}", engine.violations());
    assert!(checked_reads > 0);
    aopsfs_tests::assert_all_pages_baseline(&engine);
    assert_eq!(
        plugin.stats().faults.iter().map(|(_, n)| n).sum::<u64>(),
        0,
        "{:?}",
        plugin.stats()
    );
    let dlm = locks.stats();
    assert!(
        dlm.trylock_busy > 0,
        "the plugin never found a lock busy: {dlm:?}"
    );
}

#[test]
fn an_instance_that_faults_while_holding_a_cluster_lock_has_the_lock_released() {
    let dir = tempfile::tempdir().unwrap();
    let device = BlockDevice::create(dir.path().join("faults.img"), 16 << 20).unwrap();
    let locks = ClusterLockService::new(Duration::from_secs(5));
    let options = || {
        PluginOptions::default()
            .with_block_device(Arc::clone(&device))
            .with_cluster_locks(Arc::clone(&locks))
            .with_config("backend", "block")
    };
    // A file with data on the device, so readpage does real work between
    // taking the inode lock and releasing it.
    {
        let engine = Engine::new(load_plugin("clusterfs", options()), EngineConfig::default());
        engine.open(1);
        engine.write(1, 0, &pattern(1, 2 * PAGE_SIZE)).unwrap();
        engine.fsync(1).unwrap();
    }
    let other = locks.node();
    // Fuel is deterministic: scan budgets until one runs out inside the
    // critical section. Whatever the budget, after the fault the lock must
    // be free for another node at once.
    let mut faults = 0;
    for fuel in (2_000..400_000).step_by(2_000) {
        let limits = PluginLimits {
            fuel_per_call: fuel,
            ..PluginLimits::default()
        };
        let plugin = load_plugin("clusterfs", options().with_limits(limits));
        let engine = Engine::new(
            plugin.clone(),
            EngineConfig {
                ra_pages: 0,
                ..EngineConfig::default()
            },
        );
        engine.open_with_size(1, 2 * PAGE_SIZE as u64);
        if read(&engine, 1, 0, 10).is_ok() {
            continue;
        }
        faults += 1;
        assert_eq!(
            plugin.stats().faults_of(FaultKind::Timeout),
            1,
            "fuel {fuel}: {:?}",
            engine.violations()
        );
        assert!(
            locks.holders("inode.1").is_empty(),
            "fuel {fuel}: {:?}",
            locks.holders("inode.1")
        );
        assert!(
            other.trylock("inode.1", LockMode::Exclusive),
            "fuel {fuel}: the lock is free for another node"
        );
        other.unlock("inode.1").unwrap();
        if locks.stats().released_on_discard > 0 {
            break;
        }
    }
    assert!(faults > 0, "no budget was small enough to fault");
    assert!(
        locks.stats().released_on_discard > 0,
        "no fault happened inside the critical section: {:?}",
        locks.stats()
    );
}
