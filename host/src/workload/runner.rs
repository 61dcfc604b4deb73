//! Running a workload: set up the files, start one OS thread per
//! [`ThreadPlan`], execute every operation on the engine, check every byte
//! read against the [`Oracle`], and stop at the first mismatch.
//!
//! Writes and truncates of one file are serialised by the oracle's
//! [`Mutation`](crate::workload::oracle::Mutation) (the engine serialises
//! them by i_mutex anyway); reads and faults race freely with them, with
//! reclaim and with each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::engine::{Engine, EngineConfig};
use crate::error::VfsError;
use crate::fs::aops::{AddressSpaceOperations, AopOp, ResultKind, SyncMode};
use crate::mm::page::PAGE_SIZE;
use crate::services::ClusterLockService;
use crate::trace::Observer;
use crate::workload::contention::OtherNode;
use crate::workload::oplog::OpLog;
use crate::workload::ops::{Op, OpKind};
use crate::workload::oracle::{Contents, Mismatch, Oracle};
use crate::workload::plan::{OpStream, initial_data, write_data};
use crate::workload::report::{MismatchReport, OpCounts, Report};
use crate::workload::spec::{Workload, ino_of};

/// How many operations the mismatch report shows.
pub const LOG_TAIL: usize = 20;

/// The reason the engine gives for a fault past EOF (the only SIGBUS the
/// model predicts; the others mean readpage failed).
const SIGBUS_PAST_EOF: &str = "fault past end of file";

/// How many error messages and violation messages a report keeps.
const FIRST_MESSAGES: usize = 5;

/// What the workload runs on.
#[derive(Clone)]
pub struct Target {
    /// The name for the report (`wasm:ramfs`, `native:ramfs`).
    pub name: String,
    /// The address-space operations.
    pub aops: Arc<dyn AddressSpaceOperations>,
    /// The plugin's cluster lock service; `cluster_lock` operations take
    /// locks on it as another node.
    pub cluster_locks: Arc<ClusterLockService>,
}

/// Told how the run is going, from the thread that started it.
pub trait Progress: Send + Sync {
    /// About every 100 ms: operations done so far and time since start;
    /// `total` is the operation count when it is known.
    fn update(&self, done: u64, total: Option<u64>, elapsed: Duration);
    /// The run is over.
    fn finish(&self);
}

/// How to run.
#[derive(Default, Clone)]
pub struct RunOptions {
    /// Overrides the workload's seed.
    pub seed: Option<u64>,
    /// The page cache memory limit in pages.
    pub cache_pages: Option<usize>,
    /// Receives trace events.
    pub observer: Option<Arc<dyn Observer>>,
    /// Told how the run is going.
    pub progress: Option<Arc<dyn Progress>>,
}

/// The outcome of one operation.
enum Outcome {
    /// Done; `bytes` moved; `verified` when its result was checked.
    Ok {
        bytes: u64,
        verified: bool,
        note: String,
    },
    /// The engine returned an error.
    Error(VfsError),
    /// A read stopped early because an aop failed while it ran; the bytes it
    /// returned were verified.
    Short { bytes: u64, requested: u64 },
    /// The result matched no version of the file.
    Mismatch(Box<Mismatch>),
}

/// Counters of the workload side, shared by the threads.
#[derive(Default)]
struct Counters {
    count: [AtomicU64; OpKind::ALL.len()],
    bytes: [AtomicU64; OpKind::ALL.len()],
    errors: [AtomicU64; OpKind::ALL.len()],
    verified_reads: AtomicU64,
    verified_bytes: AtomicU64,
    done: AtomicU64,
}

/// Everything the threads share.
struct Run<'w> {
    workload: &'w Workload,
    seed: u64,
    engine: Arc<Engine>,
    oracle: Oracle,
    node: OtherNode,
    log: OpLog,
    counters: Counters,
    first_errors: Mutex<(u64, Vec<String>)>,
    /// Set to stop every thread (a mismatch, the end of the finite threads).
    stop: AtomicBool,
    deadline: Option<Instant>,
    start: Instant,
    mismatch: Mutex<Option<MismatchReport>>,
}

/// Run `workload` on `target`. Returns the report; a mismatch or failure is
/// in it (`Report::passed`), not an error.
pub fn run(workload: &Workload, target: Target, options: RunOptions) -> Report {
    let seed = options.seed.unwrap_or(workload.seed);
    let config = EngineConfig {
        memory_limit_pages: options.cache_pages,
        observer: options.observer.clone(),
        ..EngineConfig::default()
    };
    let engine = Engine::new(Arc::clone(&target.aops), config);
    let nthreads = workload.threads.len();
    // The final read-back uses one more reader slot.
    let initial: Vec<Contents> = workload
        .initial_sizes
        .iter()
        .map(|_| Contents::default())
        .collect();
    let run = Run {
        workload,
        seed,
        engine,
        oracle: Oracle::new(initial, nthreads + 1),
        node: OtherNode::start(Arc::clone(&target.cluster_locks)),
        log: OpLog::new(LOG_TAIL),
        counters: Counters::default(),
        first_errors: Mutex::new((0, Vec::new())),
        stop: AtomicBool::new(false),
        deadline: None,
        start: Instant::now(),
        mismatch: Mutex::new(None),
    };
    run.setup();
    let run = Run {
        start: Instant::now(),
        deadline: workload.duration.map(|d| Instant::now() + d),
        ..run
    };

    let failure = run.run_threads(options.progress.as_deref());
    if failure.is_none() && run.mismatch.lock().is_none() {
        run.final_check();
    }
    let wall = run.start.elapsed();
    let mut run = run;
    run.node.stop();
    run.report(&target.name, seed, options.cache_pages, wall, failure)
}

impl Run<'_> {
    /// Give each file its initial contents (through the engine and the
    /// oracle, like any write), write them back and drop the cache, so the
    /// run starts cold.
    fn setup(&self) {
        let setup_thread = self.workload.threads.len();
        for (file, &size) in self.workload.initial_sizes.iter().enumerate() {
            let ino = ino_of(file);
            self.engine.open(ino);
            // A persistent store may hold an older file under this inode.
            if let Outcome::Error(e) = self.truncate(file, 0) {
                self.note_error(
                    setup_thread,
                    &format!("setup: truncate file={file} size=0"),
                    &e,
                );
            }
            if size > 0 {
                let data = initial_data(self.seed, file, size as usize);
                if let Outcome::Error(e) = self.write(file, 0, &data) {
                    self.note_error(
                        setup_thread,
                        &format!("setup: write file={file} len={size}"),
                        &e,
                    );
                }
            }
            if let Err(e) = self.engine.fsync(ino) {
                self.note_error(setup_thread, &format!("setup: fsync file={file}"), &e);
            }
        }
        self.engine.drop_caches();
    }

    /// Start the threads, watch them, and return a failure message if one
    /// panicked.
    fn run_threads(&self, progress: Option<&dyn Progress>) -> Option<String> {
        let total = self.workload.total_ops();
        let mut failure = None;
        thread::scope(|scope| {
            let handles: Vec<_> = self
                .workload
                .threads
                .iter()
                .enumerate()
                .map(|(t, plan)| {
                    let handle = thread::Builder::new()
                        .name(plan.name.clone())
                        .spawn_scoped(scope, move || self.worker(t))
                        .expect("spawn a workload thread");
                    (handle, plan.runs_until_stopped())
                })
                .collect();
            loop {
                let finite_done = handles
                    .iter()
                    .filter(|(_, endless)| !endless)
                    .all(|(h, _)| h.is_finished());
                let all_done = handles.iter().all(|(h, _)| h.is_finished());
                if all_done {
                    break;
                }
                if finite_done && self.workload.duration.is_none() {
                    // Repeating scripts (the other node) stop with the rest.
                    self.stop.store(true, Ordering::SeqCst);
                }
                if let Some(p) = progress {
                    p.update(
                        self.counters.done.load(Ordering::Relaxed),
                        total,
                        self.start.elapsed(),
                    );
                }
                thread::sleep(Duration::from_millis(20));
            }
            for (t, (handle, _)) in handles.into_iter().enumerate() {
                if let Err(panic) = handle.join() {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    failure.get_or_insert(format!(
                        "thread {t} ({}) panicked: {message}",
                        self.workload.threads[t].name
                    ));
                }
            }
        });
        if let Some(p) = progress {
            p.update(
                self.counters.done.load(Ordering::Relaxed),
                total,
                self.start.elapsed(),
            );
            p.finish();
        }
        failure
    }

    /// One thread: run its operations until they end or the run stops.
    fn worker(&self, t: usize) {
        let plan = &self.workload.threads[t];
        let mut stream = OpStream::new(self.seed, t, plan, &self.workload.params);
        while !self.stop.load(Ordering::Relaxed) {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let Some(op) = stream.next_op() else { break };
            let outcome = self.execute(t, &op);
            let kind = op.kind() as usize;
            let c = &self.counters;
            c.count[kind].fetch_add(1, Ordering::Relaxed);
            c.done.fetch_add(1, Ordering::Relaxed);
            let result = match &outcome {
                Outcome::Ok {
                    bytes,
                    verified,
                    note,
                } => {
                    c.bytes[kind].fetch_add(*bytes, Ordering::Relaxed);
                    if *verified {
                        c.verified_reads.fetch_add(1, Ordering::Relaxed);
                        c.verified_bytes.fetch_add(*bytes, Ordering::Relaxed);
                    }
                    note.clone()
                }
                Outcome::Error(e) => {
                    c.errors[kind].fetch_add(1, Ordering::Relaxed);
                    self.note_error(t, &op.to_string(), e);
                    format!("error: {e}")
                }
                Outcome::Short { bytes, requested } => {
                    c.bytes[kind].fetch_add(*bytes, Ordering::Relaxed);
                    c.errors[kind].fetch_add(1, Ordering::Relaxed);
                    c.verified_reads.fetch_add(1, Ordering::Relaxed);
                    c.verified_bytes.fetch_add(*bytes, Ordering::Relaxed);
                    let note = format!(
                        "short read: {bytes} of {requested} bytes after an aop failure (verified)"
                    );
                    self.note_message(t, &op.to_string(), &note);
                    note
                }
                Outcome::Mismatch(m) => format!("MISMATCH: {}", m.reason),
            };
            self.log
                .push(t, &plan.name, op.to_string(), result, self.start.elapsed());
            if let Outcome::Mismatch(m) = outcome {
                self.fail(t, &op.to_string(), &m);
                break;
            }
        }
    }

    /// Record the first mismatch and stop every thread.
    fn fail(&self, t: usize, op: &str, m: &Mismatch) {
        let mut slot = self.mismatch.lock();
        if slot.is_none() {
            let name = self
                .workload
                .threads
                .get(t)
                .map_or("final-check", |p| p.name.as_str());
            *slot = Some(MismatchReport::new(
                t,
                name,
                op.to_owned(),
                ino_of(m.file),
                m,
                self.log.tail(LOG_TAIL),
            ));
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn note_error(&self, t: usize, op: &str, e: &VfsError) {
        self.note_message(t, op, &e.to_string());
    }

    /// Count an operation error and keep its message if it is one of the
    /// first.
    fn note_message(&self, t: usize, op: &str, message: &str) {
        let mut errors = self.first_errors.lock();
        errors.0 += 1;
        if errors.1.len() < FIRST_MESSAGES {
            errors.1.push(format!("thread {t}: {op}: {message}"));
        }
    }

    /// Execute one operation as thread `t`.
    fn execute(&self, t: usize, op: &Op) -> Outcome {
        let engine = &self.engine;
        let ok = |bytes: u64, note: String| Outcome::Ok {
            bytes,
            verified: false,
            note,
        };
        match *op {
            Op::Read { file, offset, len } => self.read(t, file, offset, len as usize),
            Op::Write {
                file,
                offset,
                len,
                data_seed,
            } => {
                let data = write_data(self.seed, data_seed, len as usize);
                self.write(file, offset, &data)
            }
            Op::Truncate { file, size } => self.truncate(file, size),
            Op::Fault { file, page } => self.fault(t, file, page),
            Op::Fsync { file } => match engine.fsync(ino_of(file)) {
                Ok(()) => ok(0, "ok".into()),
                Err(e) => Outcome::Error(e),
            },
            Op::Writeback { file } => match engine.writeback(ino_of(file), SyncMode::None) {
                Ok(()) => ok(0, "ok".into()),
                Err(e) => Outcome::Error(e),
            },
            Op::DropCaches => ok(0, format!("{} pages dropped", engine.drop_caches())),
            Op::Reclaim { pages } => ok(
                0,
                format!("{} pages freed", engine.try_to_free_pages(pages as usize)),
            ),
            Op::Sleep { duration } => {
                thread::sleep(duration);
                ok(0, "ok".into())
            }
            Op::ClusterLock { file, hold, mode } => {
                let name = self.workload.params.lock_name(file);
                match self.node.hold(name.clone(), mode.lock_mode(), hold) {
                    Ok(()) => ok(0, format!("other node holds {name}")),
                    Err(errno) => Outcome::Error(VfsError::Errno(errno)),
                }
            }
        }
    }

    /// Aop failures so far (error results, faults, contract violations,
    /// livelocks): a read that saw one may legitimately stop early.
    fn aop_failures(&self) -> u64 {
        let stats = self.engine.stats();
        AopOp::ALL
            .iter()
            .map(|op| stats.aop_calls(*op, ResultKind::Error))
            .sum::<u64>()
            + stats.contract_violations.load(Ordering::Relaxed)
            + stats.livelocks.load(Ordering::Relaxed)
    }

    fn read(&self, t: usize, file: usize, offset: u64, len: usize) -> Outcome {
        let failures = self.aop_failures();
        let ticket = self.oracle.begin_read(t, file);
        let mut buf = vec![0u8; len];
        match self.engine.read(ino_of(file), offset, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                let checked = if n < len && self.aop_failures() != failures {
                    self.oracle
                        .check_read_allowing_short(ticket, offset, len, &buf)
                } else {
                    self.oracle
                        .check_read(ticket, offset, len, &buf)
                        .map(|()| false)
                };
                match checked {
                    Ok(false) => Outcome::Ok {
                        bytes: n as u64,
                        verified: true,
                        note: format!("{n} bytes, verified"),
                    },
                    Ok(true) => Outcome::Short {
                        bytes: n as u64,
                        requested: len as u64,
                    },
                    Err(m) => Outcome::Mismatch(m),
                }
            }
            Err(e) => {
                self.oracle.abandon_read(ticket);
                Outcome::Error(e)
            }
        }
    }

    fn fault(&self, t: usize, file: usize, page: u64) -> Outcome {
        let ticket = self.oracle.begin_read(t, file);
        let got = self.engine.fault(ino_of(file), page);
        let mapped = match &got {
            Ok(bytes) => Some(bytes.as_slice()),
            Err(VfsError::Sigbus { reason, .. }) if *reason == SIGBUS_PAST_EOF => None,
            // SIGBUS because readpage failed: an error, not a verdict.
            Err(e) => {
                self.oracle.abandon_read(ticket);
                return Outcome::Error(e.clone());
            }
        };
        match self.oracle.check_fault(ticket, page, mapped) {
            Ok(()) if mapped.is_some() => Outcome::Ok {
                bytes: PAGE_SIZE as u64,
                verified: true,
                note: "mapped, verified".into(),
            },
            Ok(()) => Outcome::Ok {
                bytes: 0,
                verified: true,
                note: "SIGBUS (past EOF), verified".into(),
            },
            Err(m) => Outcome::Mismatch(m),
        }
    }

    /// Write through the engine with the oracle's version published first;
    /// a short or failed write publishes what may really be there.
    fn write(&self, file: usize, offset: u64, data: &[u8]) -> Outcome {
        let mut mutation = self.oracle.mutate(file);
        let before = mutation.current().clone();
        let mut next = before.clone();
        next.write(offset, data);
        mutation.publish(next);
        let len = data.len() as u64;
        match self.engine.write(ino_of(file), offset, data) {
            Ok(n) if n as u64 == len => Outcome::Ok {
                bytes: len,
                verified: false,
                note: format!("{n} bytes"),
            },
            Ok(n) => {
                let mut actual = before;
                actual.write(offset, &data[..n]);
                actual.mark_unknown(offset + n as u64..offset + len);
                mutation.publish(actual);
                Outcome::Ok {
                    bytes: n as u64,
                    verified: false,
                    note: format!("short write: {n} of {len} bytes"),
                }
            }
            Err(e) => {
                let mut actual = before;
                actual.mark_unknown(offset..offset + len);
                mutation.publish(actual);
                Outcome::Error(e)
            }
        }
    }

    fn truncate(&self, file: usize, size: u64) -> Outcome {
        let mut mutation = self.oracle.mutate(file);
        let old_len = mutation.current().len() as u64;
        let mut next = mutation.current().clone();
        next.truncate(size);
        mutation.publish(next.clone());
        match self.engine.truncate(ino_of(file), size) {
            Ok(()) => Outcome::Ok {
                bytes: 0,
                verified: false,
                note: "ok".into(),
            },
            Err(e) => {
                // The storage past the new size may not have been freed.
                next.mark_unknown(size..old_len.max(size));
                mutation.publish(next);
                Outcome::Error(e)
            }
        }
    }

    /// With every thread stopped, each file must read back as its latest
    /// version, exactly.
    fn final_check(&self) {
        let reader = self.workload.threads.len();
        for file in 0..self.oracle.files() {
            let len = self.oracle.latest(file).len().max(1);
            match self.read(reader, file, 0, len) {
                Outcome::Ok { bytes, .. } => {
                    self.counters.verified_reads.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .verified_bytes
                        .fetch_add(bytes, Ordering::Relaxed);
                }
                Outcome::Short { bytes, requested } => {
                    self.counters.verified_reads.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .verified_bytes
                        .fetch_add(bytes, Ordering::Relaxed);
                    let note = format!(
                        "short read: {bytes} of {requested} bytes after an aop failure (verified)"
                    );
                    self.note_message(reader, &format!("final read-back of file {file}"), &note);
                }
                Outcome::Error(e) => {
                    self.note_error(reader, &format!("final read-back of file {file}"), &e)
                }
                Outcome::Mismatch(m) => {
                    self.fail(
                        reader,
                        &format!("final read-back: read file={file} offset=0 len={len}"),
                        &m,
                    );
                    return;
                }
            }
        }
    }

    fn report(
        &self,
        plugin: &str,
        seed: u64,
        cache_pages: Option<usize>,
        wall: Duration,
        failure: Option<String>,
    ) -> Report {
        let node = &self.node;
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ops_by_kind = OpKind::ALL
            .iter()
            .map(|k| {
                let i = *k as usize;
                (
                    k.name().to_owned(),
                    OpCounts {
                        count: load(&c.count[i]),
                        bytes: load(&c.bytes[i]),
                        errors: load(&c.errors[i]),
                    },
                )
            })
            .collect();
        let (op_errors, first_errors) = self.first_errors.lock().clone();
        let mismatch = self.mismatch.lock().clone();
        let engine = self.engine.stats().snapshot();
        let violation_messages = self
            .engine
            .violations()
            .iter()
            .take(FIRST_MESSAGES)
            .map(|v| v.to_string())
            .collect();
        let completed = mismatch.is_none() && failure.is_none();
        Report {
            plugin: plugin.to_owned(),
            workload: self.workload.source.clone(),
            description: self.workload.description.clone(),
            seed,
            threads: self.workload.threads.len(),
            files: self.workload.initial_sizes.len(),
            cache_limit_pages: cache_pages,
            completed,
            ops: load(&c.done),
            ops_by_kind,
            op_errors,
            first_errors,
            verified_reads: load(&c.verified_reads),
            verified_bytes: load(&c.verified_bytes),
            mismatches: u64::from(mismatch.is_some()),
            engine,
            violation_messages,
            cluster_holds: node.granted(),
            cluster_hold_timeouts: node.timed_out(),
            cached_pages: self.engine.nr_pages(),
            dirty_pages: self.engine.nr_dirty(),
            wall_time_ms: wall.as_secs_f64() * 1000.0,
            mismatch,
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::memstore::{MemStore, MemStoreAops};
    use crate::fs::ramfs::Ramfs;

    fn native(aops: Arc<dyn AddressSpaceOperations>) -> Target {
        Target {
            name: format!("native:{}", aops.name()),
            aops,
            cluster_locks: ClusterLockService::new(Duration::from_secs(2)),
        }
    }

    fn without_time(mut r: Report) -> Report {
        r.wall_time_ms = 0.0;
        r
    }

    #[test]
    fn the_demo_passes_on_native_ramfs_and_is_reproducible() {
        let w = Workload::bundled("demo").unwrap();
        let a = run(&w, native(Arc::new(Ramfs)), RunOptions::default());
        assert!(a.passed(), "{}", a.render());
        assert_eq!(a.mismatches, 0);
        assert_eq!(a.ops, 2000);
        assert!(a.verified_reads > 500, "{}", a.render());
        let b = run(&w, native(Arc::new(Ramfs)), RunOptions::default());
        assert_eq!(without_time(a), without_time(b), "same seed, same report");
    }

    #[test]
    fn concurrent_threads_on_a_persistent_store_under_memory_pressure_pass() {
        let w = Workload::bundled("concurrent").unwrap();
        let aops = Arc::new(MemStoreAops::new(MemStore::new()));
        let r = run(
            &w,
            native(aops),
            RunOptions {
                cache_pages: Some(16),
                ..RunOptions::default()
            },
        );
        assert!(r.passed(), "{}", r.render());
        assert!(r.engine.reclaimed > 0, "{}", r.render());
        assert_eq!(r.ops, 4 * 1500);
    }

    /// A store that flips one byte of every page it reads back.
    struct Corrupting(MemStoreAops);

    impl AddressSpaceOperations for Corrupting {
        fn name(&self) -> &str {
            "corrupting"
        }
        fn readpage(
            &self,
            inode: crate::fs::aops::InodeInfo,
            page: &crate::mm::page::Page,
        ) -> crate::fs::aops::AopReturn {
            let result = self.0.readpage(inode, page);
            if inode.size > page.offset() + 100 {
                let mut b = [0u8; 1];
                page.read_at(100, &mut b);
                page.write_at(100, &[b[0] ^ 0xff]);
            }
            result
        }
        fn writepage(
            &self,
            inode: crate::fs::aops::InodeInfo,
            page: &crate::mm::page::Page,
            wbc: crate::fs::aops::WritebackControl,
        ) -> crate::fs::aops::AopReturn {
            self.0.writepage(inode, page, wbc)
        }
        fn prepare_write(
            &self,
            inode: crate::fs::aops::InodeInfo,
            page: &crate::mm::page::Page,
            from: u32,
            to: u32,
        ) -> crate::fs::aops::AopReturn {
            self.0.prepare_write(inode, page, from, to)
        }
        fn commit_write(
            &self,
            inode: crate::fs::aops::InodeInfo,
            page: &crate::mm::page::Page,
            from: u32,
            to: u32,
        ) -> crate::fs::aops::AopReturn {
            self.0.commit_write(inode, page, from, to)
        }
    }

    #[test]
    fn a_corrupted_byte_stops_the_run_with_a_mismatch_report() {
        let w = Workload::bundled("demo").unwrap();
        let aops = Arc::new(Corrupting(MemStoreAops::new(MemStore::new())));
        let r = run(&w, native(aops), RunOptions::default());
        assert!(!r.passed());
        assert_eq!(r.mismatches, 1);
        let m = r.mismatch.as_ref().unwrap();
        assert!(m.first_difference.is_some(), "{}", m.render());
        assert!(!m.log_tail.is_empty() && m.log_tail.len() <= LOG_TAIL);
        assert!(m.render().contains("MISMATCH"), "{}", m.render());
        assert!(r.ops < 2000, "the run stopped early");
    }
}
