//! What a plugin instance can reach: an empty, deterministic WASI context
//! and a memory cap.
//!
//! A Rust guest's standard library imports about a dozen WASI interfaces
//! even when it uses none of them, so the host links WASI 0.2 rather than
//! refusing such components. The context behind it is empty: no preopened
//! directories, no environment, no arguments, no network (TCP, UDP and name
//! lookup are all denied), stdin closed, stdout discarded. Clocks and
//! randomness are deterministic (a clock that starts at zero and advances
//! one microsecond per reading; a fixed random byte stream), so a seeded run
//! replays exactly. Stderr goes to a bounded in-memory buffer whose tail is
//! attached to a trap report (that is where a Rust guest's panic message
//! lands).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::{MemoryOutputPipe, SinkOutputStream};
use wasmtime_wasi::random::Deterministic;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// How many bytes of a guest's stderr are kept.
pub const STDERR_CAPACITY: usize = 64 * 1024;

/// A wall clock that starts at the epoch and advances one microsecond per
/// reading: deterministic, and still monotonic for code that measures.
#[derive(Default)]
struct SteppingWallClock(AtomicU64);

impl HostWallClock for SteppingWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn now(&self) -> Duration {
        Duration::from_micros(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

/// A monotonic clock that advances one microsecond (in nanoseconds) per
/// reading.
#[derive(Default)]
struct SteppingMonotonicClock(AtomicU64);

impl HostMonotonicClock for SteppingMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(1_000, Ordering::Relaxed)
    }
}

/// The WASI context of every plugin instance: nothing reachable, nothing
/// nondeterministic. `stderr` receives what the guest writes to stderr.
pub fn empty_wasi_ctx(stderr: MemoryOutputPipe) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(SinkOutputStream)
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(SteppingWallClock::default())
        .monotonic_clock(SteppingMonotonicClock::default())
        .secure_random(Deterministic::new(
            b"aopsfs-deterministic-secure-random".to_vec(),
        ))
        .insecure_random(Deterministic::new(
            b"aopsfs-deterministic-insecure-random".to_vec(),
        ))
        .insecure_random_seed(0x0a09_5f50_0000_0000_0000_0000_0000_0001)
        .max_random_size(64 * 1024);
    builder.build()
}

/// A fresh stderr buffer for one instance.
pub fn stderr_buffer() -> MemoryOutputPipe {
    MemoryOutputPipe::new(STDERR_CAPACITY)
}

/// The last `max` bytes the guest wrote to stderr, as one line of text (for
/// fault reports; an instance is discarded after its first fault, so this
/// is what it wrote last, typically a panic message).
pub fn stderr_tail(stderr: &MemoryOutputPipe, max: usize) -> String {
    let contents = stderr.contents();
    let start = contents.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&contents[start..]);
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The per-instance memory cap: Wasmtime's [`StoreLimits`] (which trap when
/// a grow would exceed the cap), plus a record that a grow was refused, so
/// the fault can be reported as out-of-memory rather than a generic trap.
pub struct MemoryLimiter {
    limits: StoreLimits,
    limit_bytes: usize,
    /// The size a refused grow asked for, if one was refused.
    refused: Option<usize>,
}

impl MemoryLimiter {
    /// A cap of `limit_bytes` per linear memory.
    pub fn new(limit_bytes: usize) -> MemoryLimiter {
        let limits = StoreLimitsBuilder::new()
            .memory_size(limit_bytes)
            .trap_on_grow_failure(true)
            .build();
        MemoryLimiter {
            limits,
            limit_bytes,
            refused: None,
        }
    }

    /// The cap in bytes.
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// The size of a grow refused since the last call, if any.
    pub fn take_refused(&mut self) -> Option<usize> {
        self.refused.take()
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = self.limits.memory_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.refused = Some(desired);
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused.get_or_insert(0);
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_are_deterministic() {
        let wall = SteppingWallClock::default();
        assert_eq!(wall.now(), Duration::ZERO);
        assert_eq!(wall.now(), Duration::from_micros(1));
        let mono = SteppingMonotonicClock::default();
        assert_eq!((mono.now(), mono.now()), (0, 1_000));
    }

    #[test]
    fn limiter_records_a_refused_grow() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(matches!(limiter.memory_growing(0, 1 << 16, None), Ok(true)));
        assert!(limiter.take_refused().is_none());
        assert!(
            limiter.memory_growing(1 << 16, 2 << 20, None).is_err(),
            "trap on grow failure"
        );
        assert_eq!(limiter.take_refused(), Some(2 << 20));
    }
}
