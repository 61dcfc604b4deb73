//! [`WasmAops`]: a WASM plugin as an [`AddressSpaceOperations`], so the
//! engine uses it exactly like the native ramfs.
//!
//! Every operation takes an instance from the pool, lends it the page(s)
//! for the call, and maps the WIT result to the engine's. A trap, fuel or
//! memory exhaustion, or a handle misuse fails that one call with an
//! [`AopFault`]; the instance is discarded (a trap poisons its store), its
//! cluster locks are released, and a fresh instance serves later calls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Store;
use wasmtime::component::Resource;

use crate::errno::Errno;
use crate::fs::aops::{
    AddressSpaceOperations, AopFault, AopOp, AopResult, AopReturn, FaultKind, Features, InodeInfo,
    SyncMode, WritebackControl,
};
use crate::mm::page::Page;
use crate::plugin::bindings::{
    AopsPlugin, WitAopResult, WitInode, WitSyncMode, WitWritebackControl,
};
use crate::plugin::error::PluginError;
use crate::plugin::imports::errno_from_wit;
use crate::plugin::instance::{InstanceFactory, InstanceState, PluginServices};
use crate::plugin::options::{PluginLimits, PluginOptions};
use crate::plugin::page_handle::PageHandle;
use crate::plugin::pool::{InstancePool, PoolStats};
use crate::plugin::runtime::{CompiledPlugin, PluginRuntime};
use crate::services::{BlockDevice, ClusterLockService};

/// Every fault kind, in report order.
const FAULT_KINDS: [FaultKind; 5] = [
    FaultKind::Trap,
    FaultKind::Timeout,
    FaultKind::OutOfMemory,
    FaultKind::HandleMisuse,
    FaultKind::Instantiate,
];

/// What a plugin has done so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmAopsStats {
    /// Operations called (faulted or not).
    pub calls: u64,
    /// Faults by kind.
    pub faults: Vec<(FaultKind, u64)>,
    /// Instance churn.
    pub pool: PoolStats,
}

impl WasmAopsStats {
    /// Faults of one kind.
    pub fn faults_of(&self, kind: FaultKind) -> u64 {
        self.faults
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

/// A WASM plugin's address-space operations.
pub struct WasmAops {
    /// `wasm:<plugin>`.
    name: String,
    path: PathBuf,
    features: Features,
    limits: PluginLimits,
    pool: InstancePool,
    calls: AtomicU64,
    faults: [AtomicU64; FAULT_KINDS.len()],
}

impl WasmAops {
    /// Start a compiled plugin: link it, create and mount the first
    /// instance (which fixes the features), and pool it.
    pub fn start(
        runtime: &PluginRuntime,
        plugin: &CompiledPlugin,
        options: PluginOptions,
    ) -> Result<Arc<WasmAops>, PluginError> {
        options.validate()?;
        let pre = runtime.prepare(plugin)?;
        let cluster_locks = options
            .cluster_locks
            .unwrap_or_else(|| ClusterLockService::new(options.lock_timeout));
        let services = Arc::new(PluginServices {
            plugin: plugin.name.clone(),
            block_device: options.block_device,
            cluster_locks,
            log_limit: crate::services::RateLimit::default(),
        });
        let factory = InstanceFactory::new(
            runtime.engine().clone(),
            pre,
            services,
            options.limits,
            options.config,
        );
        let pool = InstancePool::new(factory, options.limits.max_instances);
        let features = pool
            .seed()
            .map_err(|failure| failure.into_plugin_error(&plugin.name, &plugin.path))?;
        tracing::debug!(plugin = %plugin.name, ?features, cache = ?plugin.cache, "plugin started");
        Ok(Arc::new(WasmAops {
            name: format!("wasm:{}", plugin.name),
            path: plugin.path.clone(),
            features,
            limits: options.limits,
            pool,
            calls: AtomicU64::new(0),
            faults: Default::default(),
        }))
    }

    /// The plugin's name (without the `wasm:` prefix).
    pub fn plugin_name(&self) -> &str {
        &self.services().plugin
    }

    /// The component file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// The plugin's cluster lock service: take locks on it through
    /// [`ClusterLockService::node`] to act as another node.
    pub fn cluster_locks(&self) -> &Arc<ClusterLockService> {
        &self.services().cluster_locks
    }

    /// The plugin's block device, if it has one.
    pub fn block_device(&self) -> Option<&Arc<BlockDevice>> {
        self.services().block_device.as_ref()
    }

    /// Calls, faults and instance churn so far.
    pub fn stats(&self) -> WasmAopsStats {
        WasmAopsStats {
            calls: self.calls.load(Ordering::Relaxed),
            faults: FAULT_KINDS
                .iter()
                .zip(&self.faults)
                .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
                .collect(),
            pool: self.pool.stats(),
        }
    }

    fn services(&self) -> &PluginServices {
        &self.pool.factory().services
    }

    /// Run one operation on a pooled instance with `pages` lent to it.
    fn run<R>(
        &self,
        op: AopOp,
        pages: &[&Page],
        f: impl FnOnce(&AopsPlugin, &mut Store<InstanceState>) -> wasmtime::Result<R>,
    ) -> Result<R, AopFault> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let fuel = match op {
            AopOp::Truncate => self.limits.truncate_fuel,
            _ => self.limits.fuel_per_call,
        };
        let result = match self.pool.take() {
            Ok(mut lease) => {
                let result = lease.instance().call(op.name(), pages, fuel, f);
                lease.finish(result.is_ok());
                result
            }
            Err(fault) => Err(fault),
        };
        if let Err(fault) = &result {
            self.faults[fault.kind as usize].fetch_add(1, Ordering::Relaxed);
            tracing::warn!(plugin = %self.plugin_name(), op = op.name(), "plugin fault, instance discarded: {fault}");
        }
        result
    }
}

/// The engine's inode as the WIT record.
fn inode_to_wit(inode: InodeInfo) -> WitInode {
    WitInode {
        ino: inode.ino,
        size: inode.size,
    }
}

/// The WIT result as the engine's.
fn result_from_wit(result: WitAopResult) -> AopResult {
    match result {
        WitAopResult::Ok => AopResult::Ok,
        WitAopResult::Error(errno) => AopResult::Error(errno_from_wit(errno)),
        WitAopResult::TruncatedPage => AopResult::TruncatedPage,
        WitAopResult::WritepageActivate => AopResult::WritepageActivate,
    }
}

/// A borrow of the page a single-page operation lends (rep 0).
fn the_page() -> Resource<PageHandle> {
    Resource::new_borrow(0)
}

impl AddressSpaceOperations for WasmAops {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> Features {
        self.features
    }

    fn readpage(&self, inode: InodeInfo, page: &Page) -> AopReturn {
        self.run(AopOp::Readpage, &[page], |plugin, store| {
            plugin.aopsfs_vfs_aops().call_readpage(
                store,
                inode_to_wit(inode),
                the_page(),
                page.index(),
            )
        })
        .map(result_from_wit)
    }

    fn readpages(&self, inode: InodeInfo, pages: &[&Page]) -> Vec<AopReturn> {
        let results = self.run(AopOp::Readpages, pages, |plugin, store| {
            // The lent pages are reps 0..n, in order, each with its index.
            let borrows: Vec<(Resource<PageHandle>, u64)> = pages
                .iter()
                .enumerate()
                .map(|(rep, page)| (Resource::new_borrow(rep as u32), page.index()))
                .collect();
            plugin
                .aopsfs_vfs_aops()
                .call_readpages(store, inode_to_wit(inode), &borrows)
        });
        match results {
            Ok(results) if results.len() == pages.len() => results
                .into_iter()
                .map(|r| Ok(result_from_wit(r)))
                .collect(),
            Ok(results) => {
                let fault = AopFault {
                    kind: FaultKind::HandleMisuse,
                    message: format!(
                        "readpages returned {} results for {} pages",
                        results.len(),
                        pages.len()
                    ),
                };
                self.faults[fault.kind as usize].fetch_add(1, Ordering::Relaxed);
                vec![Err(fault); pages.len()]
            }
            Err(fault) => vec![Err(fault); pages.len()],
        }
    }

    fn writepage(&self, inode: InodeInfo, page: &Page, wbc: WritebackControl) -> AopReturn {
        let wbc = WitWritebackControl {
            sync_mode: match wbc.sync_mode {
                SyncMode::None => WitSyncMode::None,
                SyncMode::All => WitSyncMode::All,
            },
            for_reclaim: wbc.for_reclaim,
        };
        self.run(AopOp::Writepage, &[page], |plugin, store| {
            plugin.aopsfs_vfs_aops().call_writepage(
                store,
                inode_to_wit(inode),
                the_page(),
                page.index(),
                wbc,
            )
        })
        .map(result_from_wit)
    }

    fn prepare_write(&self, inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn {
        self.run(AopOp::PrepareWrite, &[page], |plugin, store| {
            plugin.aopsfs_vfs_aops().call_prepare_write(
                store,
                inode_to_wit(inode),
                the_page(),
                page.index(),
                from,
                to,
            )
        })
        .map(result_from_wit)
    }

    fn commit_write(&self, inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn {
        self.run(AopOp::CommitWrite, &[page], |plugin, store| {
            plugin.aopsfs_vfs_aops().call_commit_write(
                store,
                inode_to_wit(inode),
                the_page(),
                page.index(),
                from,
                to,
            )
        })
        .map(result_from_wit)
    }

    fn invalidatepage(&self, inode: InodeInfo, page: &Page, offset: u32) -> Result<(), AopFault> {
        self.run(AopOp::Invalidatepage, &[page], |plugin, store| {
            plugin.aopsfs_vfs_aops().call_invalidatepage(
                store,
                inode_to_wit(inode),
                the_page(),
                page.index(),
                offset,
            )
        })
    }

    fn releasepage(&self, inode: InodeInfo, page: &Page) -> Result<bool, AopFault> {
        self.run(AopOp::Releasepage, &[page], |plugin, store| {
            plugin.aopsfs_vfs_aops().call_releasepage(
                store,
                inode_to_wit(inode),
                the_page(),
                page.index(),
            )
        })
    }

    fn truncate(&self, inode: InodeInfo) -> Result<Result<(), Errno>, AopFault> {
        self.run(AopOp::Truncate, &[], |plugin, store| {
            plugin
                .aopsfs_vfs_aops()
                .call_truncate(store, inode_to_wit(inode))
        })
        .map(|r| r.map_err(errno_from_wit))
    }
}
