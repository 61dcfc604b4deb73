//! One plugin instance: its own `Store` (a trap poisons a whole store, so
//! instances never share one), the state host imports see, and the call
//! protocol that lends pages to it for one operation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::fs::aops::{AopFault, FaultKind, Features};
use crate::mm::page::Page;
use crate::plugin::bindings::{AopsPlugin, AopsPluginPre, WitFeatures};
use crate::plugin::error::PluginError;
use crate::plugin::fault::classify;
use crate::plugin::options::PluginLimits;
use crate::plugin::page_handle::{LentPage, PageHandle};
use crate::plugin::sandbox::{MemoryLimiter, empty_wasi_ctx, stderr_buffer};
use crate::services::{BlockDevice, ClusterLockService, HolderId};

/// The host services one plugin's instances share.
pub struct PluginServices {
    /// The plugin's name (the component's file stem), for logs.
    pub plugin: String,
    /// The device behind the `block-device` import, if any.
    pub block_device: Option<Arc<BlockDevice>>,
    /// The DLM behind the `cluster-lock` import.
    pub cluster_locks: Arc<ClusterLockService>,
}

/// What the host tracks about the operation in progress.
#[derive(Default)]
pub(crate) struct CallState {
    /// Increases with every operation; a page handle names the call it was
    /// lent to.
    pub(crate) id: u64,
    /// The operation's name, for messages.
    pub(crate) op: &'static str,
    /// The pages lent to this call.
    pub(crate) lent: Vec<LentPage>,
    /// A misuse the host detected (and trapped on) during this call.
    pub(crate) misuse: Option<String>,
    /// How much stderr the guest had written when the call began.
    pub(crate) stderr_mark: usize,
}

/// The data of an instance's `Store`: what host imports can reach.
pub struct InstanceState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) services: Arc<PluginServices>,
    /// This instance's identity in the cluster lock service.
    pub(crate) holder: HolderId,
    pub(crate) call: CallState,
    pub(crate) stderr: MemoryOutputPipe,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A live instance: its store, its exports, and the features its `mount`
/// reported.
pub(crate) struct Instance {
    store: Store<InstanceState>,
    plugin: AopsPlugin,
    features: Features,
    serial: u64,
}

impl Drop for Instance {
    /// A discarded (or shut down) instance gives back every cluster lock it
    /// still holds.
    fn drop(&mut self) {
        let state = self.store.data();
        let released = state.services.cluster_locks.release_all(state.holder);
        if released > 0 {
            tracing::debug!(plugin = %state.services.plugin, instance = self.serial, released, "released cluster locks of a dropped instance");
        }
    }
}

impl Instance {
    /// The features this instance's `mount` reported.
    pub(crate) fn features(&self) -> Features {
        self.features
    }

    /// Run one operation: lend `pages` for the duration of the call, give
    /// the call `fuel`, run `f`, take the pages back. On `Err` the store is
    /// poisoned and the instance must be discarded.
    pub(crate) fn call<R>(
        &mut self,
        op: &'static str,
        pages: &[&Page],
        fuel: u64,
        f: impl FnOnce(
            &AopsPlugin,
            &mut Store<InstanceState>,
            &[Resource<PageHandle>],
        ) -> wasmtime::Result<R>,
    ) -> Result<R, AopFault> {
        let handles = match self.begin_call(op, pages, fuel) {
            Ok(handles) => handles,
            Err(e) => return Err(self.end_call_with_fault(Vec::new(), e, fuel)),
        };
        let borrows: Vec<Resource<PageHandle>> = handles
            .iter()
            .map(|h| Resource::new_borrow(h.rep()))
            .collect();
        match f(&self.plugin, &mut self.store, &borrows) {
            Ok(value) => {
                self.end_call(handles);
                Ok(value)
            }
            Err(e) => Err(self.end_call_with_fault(handles, e, fuel)),
        }
    }

    /// Start a call: a new call id, fuel, and one table entry per page.
    fn begin_call(
        &mut self,
        op: &'static str,
        pages: &[&Page],
        fuel: u64,
    ) -> wasmtime::Result<Vec<Resource<PageHandle>>> {
        self.store.set_fuel(fuel)?;
        let state = self.store.data_mut();
        state.call.id += 1;
        state.call.op = op;
        state.call.misuse = None;
        state.call.stderr_mark = state.stderr.contents().len();
        let mut handles = Vec::with_capacity(pages.len());
        for page in pages {
            let (handle, lent) = PageHandle::lend(page, state.call.id);
            state.call.lent.push(lent);
            match state.table.push(handle) {
                Ok(res) => handles.push(res),
                Err(e) => {
                    Self::reclaim(state, handles);
                    return Err(wasmtime::Error::new(e));
                }
            }
        }
        Ok(handles)
    }

    /// Take the lent pages back out of the table. After this no handle of
    /// the call can reach its page: that is what makes lending a `&Page`
    /// for the duration of the call sound (see `page_handle`).
    fn reclaim(state: &mut InstanceState, handles: Vec<Resource<PageHandle>>) {
        for handle in handles {
            let _ = state.table.delete(handle);
        }
        state.call.lent.clear();
    }

    /// Finish a call that returned normally.
    fn end_call(&mut self, handles: Vec<Resource<PageHandle>>) {
        Self::reclaim(self.store.data_mut(), handles);
    }

    /// Finish a call that failed: take the pages back and say what
    /// happened. The caller discards the instance.
    fn end_call_with_fault(
        &mut self,
        handles: Vec<Resource<PageHandle>>,
        error: wasmtime::Error,
        fuel: u64,
    ) -> AopFault {
        let state = self.store.data_mut();
        Self::reclaim(state, handles);
        classify(error, state, fuel)
    }
}

/// Which step of making an instance failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CreateStage {
    /// Instantiating the component (its start functions).
    Instantiate,
    /// Its `mount`: trapped, refused, or reported other features.
    Mount,
}

/// Why an instance could not be made.
#[derive(Clone, Debug)]
pub(crate) struct CreateFailure {
    pub(crate) stage: CreateStage,
    pub(crate) message: String,
}

impl CreateFailure {
    /// The failure as the fault of the operation that needed the instance.
    pub(crate) fn into_fault(self) -> AopFault {
        let stage = match self.stage {
            CreateStage::Instantiate => "instantiation failed",
            CreateStage::Mount => "mount failed",
        };
        AopFault {
            kind: FaultKind::Instantiate,
            message: format!("{stage}: {}", self.message),
        }
    }

    /// The failure as a load error (for the first instance).
    pub(crate) fn into_plugin_error(self, plugin: &str, path: &std::path::Path) -> PluginError {
        match self.stage {
            CreateStage::Instantiate => PluginError::Instantiate {
                path: path.to_owned(),
                message: self.message,
            },
            CreateStage::Mount => PluginError::Mount {
                plugin: plugin.to_owned(),
                message: self.message,
            },
        }
    }
}

/// Makes instances: a new store from the shared `InstancePre`, then
/// `mount` with the plugin's configuration.
pub(crate) struct InstanceFactory {
    pub(crate) engine: Engine,
    pub(crate) pre: AopsPluginPre<InstanceState>,
    pub(crate) services: Arc<PluginServices>,
    pub(crate) limits: PluginLimits,
    pub(crate) mount_config: Vec<(String, String)>,
    /// The features the first instance reported; every later one must
    /// report the same (instances are interchangeable).
    features: OnceLock<Features>,
    serial: AtomicU64,
}

impl InstanceFactory {
    /// A factory for one plugin.
    pub(crate) fn new(
        engine: Engine,
        pre: AopsPluginPre<InstanceState>,
        services: Arc<PluginServices>,
        limits: PluginLimits,
        mount_config: Vec<(String, String)>,
    ) -> InstanceFactory {
        InstanceFactory {
            engine,
            pre,
            services,
            limits,
            mount_config,
            features: OnceLock::new(),
            serial: AtomicU64::new(0),
        }
    }

    /// Instantiate and mount a new instance.
    pub(crate) fn create(&self) -> Result<Instance, CreateFailure> {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let stderr = stderr_buffer();
        let state = InstanceState {
            wasi: empty_wasi_ctx(stderr.clone()),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(self.limits.memory_bytes),
            services: Arc::clone(&self.services),
            holder: self.services.cluster_locks.new_holder(),
            call: CallState {
                op: "instantiate",
                ..CallState::default()
            },
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let fuel = self.limits.mount_fuel;
        let failed = |store: &mut Store<InstanceState>, stage: CreateStage, e: wasmtime::Error| {
            let fault = classify(e, store.data_mut(), fuel);
            CreateFailure {
                stage,
                message: format!("{}: {}", fault.kind, fault.message),
            }
        };
        if let Err(e) = store.set_fuel(fuel) {
            return Err(failed(&mut store, CreateStage::Instantiate, e));
        }
        let plugin = match self.pre.instantiate(&mut store) {
            Ok(plugin) => plugin,
            Err(e) => return Err(failed(&mut store, CreateStage::Instantiate, e)),
        };
        store.data_mut().call.op = "mount";
        let features = match plugin
            .aopsfs_vfs_aops()
            .call_mount(&mut store, &self.mount_config)
        {
            Ok(Ok(flags)) => features_from_wit(flags),
            Ok(Err(message)) => {
                return Err(CreateFailure {
                    stage: CreateStage::Mount,
                    message: format!("mount refused: {message}"),
                });
            }
            Err(e) => return Err(failed(&mut store, CreateStage::Mount, e)),
        };
        let expected = *self.features.get_or_init(|| features);
        if features != expected {
            return Err(CreateFailure {
                stage: CreateStage::Mount,
                message: format!(
                    "mount reported features {features:?}, but the first instance reported {expected:?}"
                ),
            });
        }
        Ok(Instance {
            store,
            plugin,
            features,
            serial,
        })
    }
}

/// The WIT feature flags as the engine's `Features`.
pub(crate) fn features_from_wit(flags: WitFeatures) -> Features {
    Features {
        readpages: flags.contains(WitFeatures::READPAGES),
        invalidatepage: flags.contains(WitFeatures::INVALIDATEPAGE),
        releasepage: flags.contains(WitFeatures::RELEASEPAGE),
        truncate: flags.contains(WitFeatures::TRUNCATE),
    }
}
