//! Counters the engine keeps for the end-of-run report.
//!
//! All counters are relaxed atomics bumped on the hot path; a
//! [`StatsSnapshot`] is a consistent-enough copy for reporting.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::fs::aops::{AopOp, ResultKind};
use crate::mm::filemap::Caller;

const OPS: usize = AopOp::ALL.len();
const KINDS: usize = ResultKind::ALL.len();
const CALLERS: usize = Caller::ALL.len();

/// Live counters.
#[derive(Default)]
pub struct Stats {
    /// Page lookups that found an uptodate page.
    pub cache_hits: AtomicU64,
    /// Page lookups that had to read (or allocate) the page.
    pub cache_misses: AtomicU64,
    aop_calls: [[AtomicU64; KINDS]; OPS],
    aop_faults: [AtomicU64; OPS],
    retries: [AtomicU64; CALLERS],
    /// Pages moved to the active list (mark_page_accessed, reclaim).
    pub activations: AtomicU64,
    /// writepage-activate results seen by reclaim and writeback.
    pub writepage_activations: AtomicU64,
    /// Pages freed by reclaim.
    pub reclaimed: AtomicU64,
    /// Pages written by writepage with an ok result.
    pub written_back: AtomicU64,
    /// Pages read ahead (allocated and submitted by readahead).
    pub readahead_pages: AtomicU64,
    /// Contract violations and plugin faults.
    pub contract_violations: AtomicU64,
    /// Retry loops that hit the livelock bound.
    pub livelocks: AtomicU64,
    /// Page allocations that had to exceed the memory limit because reclaim
    /// found nothing it could free.
    pub over_limit_allocs: AtomicU64,
}

impl Stats {
    pub(crate) fn count_aop(&self, op: AopOp, kind: Option<ResultKind>) {
        let op = op as usize;
        match kind {
            Some(kind) => self.aop_calls[op][kind as usize].fetch_add(1, Ordering::Relaxed),
            None => self.aop_faults[op].fetch_add(1, Ordering::Relaxed),
        };
    }

    pub(crate) fn count_retry(&self, caller: Caller) {
        self.retries[caller as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `op` that returned `kind`.
    pub fn aop_calls(&self, op: AopOp, kind: ResultKind) -> u64 {
        self.aop_calls[op as usize][kind as usize].load(Ordering::Relaxed)
    }

    /// Retries made by one caller path.
    pub fn retries(&self, caller: Caller) -> u64 {
        self.retries[caller as usize].load(Ordering::Relaxed)
    }

    /// Retries made by all caller paths.
    pub fn total_retries(&self) -> u64 {
        Caller::ALL.iter().map(|c| self.retries(*c)).sum()
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut aop_calls = BTreeMap::new();
        let mut aop_faults = BTreeMap::new();
        for op in AopOp::ALL {
            let by_kind = ResultKind::ALL
                .iter()
                .map(|k| (k.name().to_owned(), self.aop_calls(op, *k)))
                .collect();
            aop_calls.insert(op.name().to_owned(), by_kind);
            aop_faults.insert(op.name().to_owned(), load(&self.aop_faults[op as usize]));
        }
        let retries = Caller::ALL
            .iter()
            .map(|c| (c.name().to_owned(), self.retries(*c)))
            .collect();
        StatsSnapshot {
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            aop_calls,
            aop_faults,
            retries,
            activations: load(&self.activations),
            writepage_activations: load(&self.writepage_activations),
            reclaimed: load(&self.reclaimed),
            written_back: load(&self.written_back),
            readahead_pages: load(&self.readahead_pages),
            contract_violations: load(&self.contract_violations),
            livelocks: load(&self.livelocks),
            over_limit_allocs: load(&self.over_limit_allocs),
        }
    }
}

/// A point-in-time copy of [`Stats`], serialisable for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// operation name -> result name -> calls.
    pub aop_calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// operation name -> calls that faulted (trap, timeout, ...).
    pub aop_faults: BTreeMap<String, u64>,
    /// caller path name -> retries.
    pub retries: BTreeMap<String, u64>,
    pub activations: u64,
    pub writepage_activations: u64,
    pub reclaimed: u64,
    pub written_back: u64,
    pub readahead_pages: u64,
    pub contract_violations: u64,
    pub livelocks: u64,
    pub over_limit_allocs: u64,
}

impl StatsSnapshot {
    /// Calls of `op` that returned `kind` (by report names).
    pub fn calls(&self, op: AopOp, kind: ResultKind) -> u64 {
        self.aop_calls
            .get(op.name())
            .and_then(|m| m.get(kind.name()))
            .copied()
            .unwrap_or(0)
    }
}
