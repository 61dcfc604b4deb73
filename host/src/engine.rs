//! The engine: one page cache (one zone, one set of LRU lists, one memory
//! limit) over the inodes of one filesystem whose address-space operations
//! are an [`AddressSpaceOperations`] implementation.
//!
//! The filemap loops themselves live in the `mm` modules named after the
//! kernel files they model; each adds an `impl Engine` block. This file holds
//! the shared plumbing: configuration, the inode table, page allocation with
//! direct reclaim, the checked aop calls, and the retry budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::VfsError;
use crate::fs::aops::{
    AddressSpaceOperations, AopFault, AopOp, AopResult, AopReturn, Features, InodeInfo, SyncMode,
    WritebackControl,
};
use crate::fs::contract::{self, ContractViolation};
use crate::mm::address_space::{AddressSpace, PageExists};
use crate::mm::filemap::Caller;
use crate::mm::lru::Lru;
use crate::mm::page::{Page, PageRef, PageShared};
use crate::stats::Stats;
use crate::trace::{Observer, TraceEvent};

/// How an engine behaves. `Default` gives an unlimited cache with 128 KiB
/// readahead and a livelock bound of 1000 retries.
#[derive(Clone)]
pub struct EngineConfig {
    /// The page cache memory limit in pages; `None` for no limit.
    pub memory_limit_pages: Option<usize>,
    /// The maximum readahead window in pages (ra_pages; 32 = 128 KiB).
    pub ra_pages: u64,
    /// How many consecutive retries of one page a caller makes before it
    /// reports a livelock.
    pub max_retries: u32,
    /// Pages reclaim scans per batch (SWAP_CLUSTER_MAX).
    pub reclaim_batch: usize,
    /// s_maxbytes: the largest file size.
    pub max_file_size: u64,
    /// Receives trace events; `None` turns tracing off.
    pub observer: Option<Arc<dyn Observer>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            memory_limit_pages: None,
            ra_pages: 32,
            max_retries: 1000,
            reclaim_batch: 32,
            max_file_size: 1 << 40,
            observer: None,
        }
    }
}

/// How many violations the engine keeps for reports (the count is exact).
const VIOLATION_LOG_CAP: usize = 1000;

/// A page cache over one set of address-space operations.
pub struct Engine {
    pub(crate) aops: Arc<dyn AddressSpaceOperations>,
    pub(crate) features: Features,
    pub(crate) config: EngineConfig,
    inodes: RwLock<HashMap<u64, Arc<AddressSpace>>>,
    pub(crate) lru: Lru,
    pub(crate) nr_pages: AtomicUsize,
    pub(crate) shared: Arc<PageShared>,
    stats: Stats,
    violations: Mutex<Vec<ContractViolation>>,
}

impl Engine {
    /// A new engine over `aops`.
    pub fn new(aops: Arc<dyn AddressSpaceOperations>, config: EngineConfig) -> Arc<Engine> {
        assert!(config.max_retries > 0, "max_retries must be positive");
        assert!(config.reclaim_batch > 0, "reclaim_batch must be positive");
        let shared = Arc::new(PageShared {
            observer: config.observer.clone(),
            ..Default::default()
        });
        Arc::new(Engine {
            features: aops.features(),
            aops,
            config,
            inodes: RwLock::new(HashMap::new()),
            lru: Lru::default(),
            nr_pages: AtomicUsize::new(0),
            shared,
            stats: Stats::default(),
            violations: Mutex::new(Vec::new()),
        })
    }

    /// The address-space operations in use.
    pub fn aops(&self) -> &Arc<dyn AddressSpaceOperations> {
        &self.aops
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The contract violations and faults seen so far (the first 1000).
    pub fn violations(&self) -> Vec<ContractViolation> {
        self.violations.lock().clone()
    }

    /// Pages in the page cache now.
    pub fn nr_pages(&self) -> usize {
        self.nr_pages.load(Ordering::Relaxed)
    }

    /// Pages on the (inactive, active) LRU lists.
    pub fn lru_sizes(&self) -> (usize, usize) {
        self.lru.sizes()
    }

    /// Dirty pages in the page cache now (NR_FILE_DIRTY).
    pub fn nr_dirty(&self) -> u64 {
        self.shared.nr_dirty.load(Ordering::Relaxed).max(0) as u64
    }

    // ---- inodes ------------------------------------------------------------

    /// Models iget: the inode's mapping, creating an empty inode if new.
    pub fn open(&self, ino: u64) -> Arc<AddressSpace> {
        if let Some(mapping) = self.inodes.read().get(&ino) {
            return Arc::clone(mapping);
        }
        let mut inodes = self.inodes.write();
        Arc::clone(
            inodes
                .entry(ino)
                .or_insert_with(|| Arc::new(AddressSpace::new(ino, 0))),
        )
    }

    /// Make an inode known with a given size (a file that already exists in
    /// the backing store, e.g. after remount).
    pub fn open_with_size(&self, ino: u64, size: u64) -> Arc<AddressSpace> {
        let mut inodes = self.inodes.write();
        Arc::clone(
            inodes
                .entry(ino)
                .or_insert_with(|| Arc::new(AddressSpace::new(ino, size))),
        )
    }

    /// The mapping of an existing inode.
    pub fn mapping(&self, ino: u64) -> Result<Arc<AddressSpace>, VfsError> {
        self.inodes
            .read()
            .get(&ino)
            .cloned()
            .ok_or(VfsError::NoInode(ino))
    }

    /// Every inode number, sorted.
    pub fn inos(&self) -> Vec<u64> {
        let mut inos: Vec<u64> = self.inodes.read().keys().copied().collect();
        inos.sort_unstable();
        inos
    }

    /// i_size of an inode.
    pub fn size(&self, ino: u64) -> Result<u64, VfsError> {
        Ok(self.mapping(ino)?.size())
    }

    /// Models evict (after the last unlink): truncate to zero and forget the
    /// inode.
    pub fn forget(&self, ino: u64) -> Result<(), VfsError> {
        self.truncate(ino, 0)?;
        self.inodes.write().remove(&ino);
        Ok(())
    }

    // ---- pages -------------------------------------------------------------

    /// Models page_cache_alloc with direct reclaim: a new locked page, after
    /// reclaiming if the cache is at its memory limit. When reclaim can free
    /// nothing (every page dirty and pinned, as on ramfs) the allocation
    /// exceeds the limit and is counted in `over_limit_allocs`.
    pub(crate) fn page_cache_alloc(&self, mapping: &AddressSpace, index: u64) -> PageRef {
        if let Some(limit) = self.config.memory_limit_pages {
            let mut attempts = 0;
            while self.nr_pages() >= limit {
                let freed = self.try_to_free_pages(self.config.reclaim_batch);
                attempts += 1;
                if freed == 0 || attempts > 8 {
                    if self.nr_pages() >= limit {
                        self.stats.over_limit_allocs.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
        }
        Page::alloc_locked(mapping.ino(), index, Arc::clone(&self.shared))
    }

    /// Models add_to_page_cache_lru: insert a new locked page and put it on
    /// the inactive list.
    pub(crate) fn add_to_page_cache_lru(
        &self,
        mapping: &AddressSpace,
        page: &PageRef,
    ) -> Result<(), PageExists> {
        mapping.add_to_page_cache(page)?;
        self.nr_pages.fetch_add(1, Ordering::Relaxed);
        self.lru.lru_cache_add(page);
        self.emit_counters();
        Ok(())
    }

    /// Drop the page cache's reference to a page that `remove` took out of
    /// the tree, and take it off the LRU.
    pub(crate) fn page_removed(&self, cache_ref: PageRef) {
        self.lru.del_page_from_lru(&cache_ref);
        if cache_ref.is_dirty() {
            cache_ref.clear_dirty();
        }
        let before = self.nr_pages.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "nr_pages underflow");
        drop(cache_ref);
        self.emit_counters();
    }

    /// Models find_lock_page: look up and lock a page still in the mapping.
    pub fn find_lock_page(&self, mapping: &AddressSpace, index: u64) -> Option<PageRef> {
        loop {
            let page = mapping.find_get_page(index)?;
            page.lock();
            if page.mapping_id() == mapping.id() {
                return Some(page);
            }
            page.unlock();
        }
    }

    /// Models __grab_cache_page: the locked page at `index`, allocated and
    /// inserted if it is not cached (then the flag is true).
    pub(crate) fn grab_cache_page(&self, mapping: &AddressSpace, index: u64) -> (PageRef, bool) {
        loop {
            if let Some(page) = self.find_lock_page(mapping, index) {
                return (page, false);
            }
            let page = self.page_cache_alloc(mapping, index);
            if self.add_to_page_cache_lru(mapping, &page).is_ok() {
                return (page, true);
            }
        }
    }

    /// Models mark_page_accessed: inactive,unreferenced -> referenced;
    /// inactive,referenced -> active.
    pub(crate) fn mark_page_accessed(&self, page: &PageRef) {
        use crate::mm::page::PageFlag::{Active, Lru, Referenced};
        if !page.test(Active) && page.test(Referenced) && page.test(Lru) {
            if self.lru.activate_page(page, page.arc()) {
                self.stats.activations.fetch_add(1, Ordering::Relaxed);
                self.emit(TraceEvent::Activate {
                    ino: page.ino(),
                    index: page.index(),
                });
            }
            page.test_and_clear(Referenced);
        } else if !page.test(Referenced) {
            page.test_and_set(Referenced);
        }
    }

    // ---- checked aop calls -------------------------------------------------

    /// Call one page operation through the contract checker. On `Ok` the
    /// lock table held for the result returned; on `Err` the page is no
    /// longer locked by the caller (see `fs::contract`).
    pub(crate) fn call_page_aop(
        &self,
        op: AopOp,
        mapping: &AddressSpace,
        page: &Page,
        call: impl FnOnce(&dyn AddressSpaceOperations, InodeInfo, &Page) -> AopReturn,
    ) -> Result<AopResult, VfsError> {
        assert!(
            page.is_locked(),
            "{op} called on an unlocked page {}:{}",
            page.ino(),
            page.index()
        );
        let inode = mapping.info();
        let seq = page.lock_seq();
        self.emit(TraceEvent::AopBegin {
            op,
            ino: inode.ino,
            index: page.index(),
        });
        let ret = call(self.aops.as_ref(), inode, page);
        let result = ret.as_ref().ok().copied();
        self.emit(TraceEvent::AopEnd {
            op,
            ino: inode.ino,
            index: page.index(),
            result,
        });
        self.stats.count_aop(op, result.map(AopResult::kind));
        match contract::check(op, inode, page, seq, ret) {
            Ok(result) => {
                if op == AopOp::Writepage
                    && matches!(result, AopResult::Ok | AopResult::Error(_))
                    && page.is_writeback()
                {
                    // Synchronous plugins: the I/O is complete when writepage
                    // returns; end the writeback the callee started.
                    page.end_writeback();
                }
                Ok(result)
            }
            Err(violation) => {
                contract::repair_after_violation(op, page, seq);
                Err(self.record_violation(violation))
            }
        }
    }

    /// Call an operation that must return with the page still locked
    /// (invalidatepage, releasepage). A fault or an unlock is recorded as a
    /// violation and the caller gets the lock back, since it goes on as if
    /// it held it; returns `None` then.
    pub(crate) fn call_locked_aop<T>(
        &self,
        op: AopOp,
        mapping: &AddressSpace,
        page: &Page,
        call: impl FnOnce(&dyn AddressSpaceOperations, InodeInfo, &Page) -> Result<T, AopFault>,
    ) -> Option<T> {
        assert!(page.is_locked(), "{op} called on an unlocked page");
        let inode = mapping.info();
        let seq = page.lock_seq();
        let ret = call(self.aops.as_ref(), inode, page);
        self.stats.count_aop(
            op,
            ret.as_ref().ok().map(|_| crate::fs::aops::ResultKind::Ok),
        );
        let (returned, rule, detail) = match ret {
            Ok(value) if page.lock_seq() == seq => return Some(value),
            Ok(_) => (
                "ok".to_owned(),
                contract::Rule::PageStaysLocked,
                String::new(),
            ),
            Err(fault) => (
                fault.kind.to_string(),
                contract::Rule::PluginFault,
                fault.message,
            ),
        };
        self.record_violation(ContractViolation {
            op,
            ino: inode.ino,
            index: page.index(),
            returned,
            rule,
            detail,
        });
        if !page.is_locked() || page.lock_seq() != seq {
            page.lock();
        }
        None
    }

    /// ->readpage through the checker.
    pub(crate) fn call_readpage(
        &self,
        mapping: &AddressSpace,
        page: &Page,
    ) -> Result<AopResult, VfsError> {
        self.call_page_aop(AopOp::Readpage, mapping, page, |aops, inode, page| {
            aops.readpage(inode, page)
        })
    }

    /// ->writepage through the checker, with `clear_page_dirty_for_io`
    /// already done by the caller.
    pub(crate) fn call_writepage(
        &self,
        mapping: &AddressSpace,
        page: &Page,
        wbc: WritebackControl,
    ) -> Result<AopResult, VfsError> {
        let result = self.call_page_aop(AopOp::Writepage, mapping, page, |aops, inode, page| {
            aops.writepage(inode, page, wbc)
        })?;
        match result {
            AopResult::Ok => {
                self.stats.written_back.fetch_add(1, Ordering::Relaxed);
            }
            AopResult::WritepageActivate => {
                self.stats
                    .writepage_activations
                    .fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Ok(result)
    }

    /// Record a violation: count it, keep it for the report, log it.
    pub(crate) fn record_violation(&self, violation: ContractViolation) -> VfsError {
        self.stats
            .contract_violations
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = self.aops.name(), "{violation}");
        let mut log = self.violations.lock();
        if log.len() < VIOLATION_LOG_CAP {
            log.push(violation.clone());
        }
        VfsError::Contract(violation)
    }

    /// A default writeback control for data-integrity writeback.
    pub(crate) fn wbc_sync_all() -> WritebackControl {
        WritebackControl {
            sync_mode: SyncMode::All,
            for_reclaim: false,
        }
    }

    // ---- tracing -------------------------------------------------------------

    pub(crate) fn emit(&self, event: TraceEvent) {
        self.shared.emit(event);
    }

    fn emit_counters(&self) {
        if self.shared.observer.is_some() {
            self.emit(TraceEvent::Counters {
                cached: self.nr_pages() as u64,
                dirty: self.nr_dirty(),
            });
        }
    }

    /// A retry budget for one caller on one page.
    pub(crate) fn retry_budget(&self, caller: Caller, ino: u64) -> RetryBudget<'_> {
        RetryBudget {
            engine: self,
            caller,
            ino,
            index: u64::MAX,
            retries: 0,
        }
    }
}

/// Counts a caller's consecutive retries of one page and turns too many into
/// a livelock error (spec: retry loops must be bounded and observable).
pub(crate) struct RetryBudget<'e> {
    engine: &'e Engine,
    caller: Caller,
    ino: u64,
    index: u64,
    retries: u32,
}

impl RetryBudget<'_> {
    /// The caller is (still) working on page `index`; moving to another page
    /// is progress and resets the count.
    pub(crate) fn at(&mut self, index: u64) {
        if index != self.index {
            self.index = index;
            self.retries = 0;
        }
    }

    /// The caller starts over on the current page. Errors with `Livelock`
    /// once the bound is exceeded.
    pub(crate) fn retry(&mut self) -> Result<(), VfsError> {
        self.retries += 1;
        let engine = self.engine;
        engine.stats.count_retry(self.caller);
        engine.emit(TraceEvent::Retry {
            caller: self.caller,
            ino: self.ino,
            index: self.index,
        });
        if self.retries > engine.config.max_retries {
            engine.stats.livelocks.fetch_add(1, Ordering::Relaxed);
            let error = VfsError::Livelock {
                caller: self.caller,
                ino: self.ino,
                index: self.index,
                retries: self.retries - 1,
                bound: engine.config.max_retries,
            };
            tracing::warn!(plugin = engine.aops.name(), "{error}");
            return Err(error);
        }
        // Give the thread that made us retry (truncate, the cluster lock
        // holder) a chance to run before looking again.
        std::thread::yield_now();
        Ok(())
    }
}
