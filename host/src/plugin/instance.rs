//! One plugin instance: its own `Store` (a trap poisons a whole store, so
//! instances never share one), the state host imports see, and the call
//! protocol that lends pages to it for one operation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::fs::aops::{AopFault, FaultKind, Features};
use crate::mm::page::Page;
use crate::plugin::bindings::{AopsPlugin, AopsPluginPre, WitFeatures};
use crate::plugin::error::PluginError;
use crate::plugin::fault::classify;
use crate::plugin::options::PluginLimits;
use crate::plugin::page_handle::PageHandle;
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
    /// The budget of `log` messages at info and above, shared by every
    /// instance (debug and trace, which the plugin's own log level gates,
    /// are not limited).
    pub log_limit: crate::services::RateLimit,
}

/// What the host tracks about the operation in progress.
#[derive(Default)]
pub(crate) struct CallState {
    /// Increases with every operation; a page handle names the call it was
    /// lent to.
    pub(crate) id: u64,
    /// The operation's name, for messages.
    pub(crate) op: &'static str,
    /// The pages lent to this call; a `page` resource's rep is its index
    /// here. Cleared when the call ends (see `page_handle`).
    pub(crate) pages: Vec<PageHandle>,
    /// A misuse the host detected (and trapped on) during this call.
    pub(crate) misuse: Option<String>,
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

    /// Run one operation: lend `pages` for the duration of the call (the
    /// `page` resource with rep `i` is `pages[i]`), give the call `fuel`, run
    /// `f`, take the pages back. On `Err` the store is poisoned and the
    /// instance must be discarded.
    pub(crate) fn call<R>(
        &mut self,
        op: &'static str,
        pages: &[&Page],
        fuel: u64,
        f: impl FnOnce(&AopsPlugin, &mut Store<InstanceState>) -> wasmtime::Result<R>,
    ) -> Result<R, AopFault> {
        if let Err(e) = self.store.set_fuel(fuel) {
            return Err(classify(e, self.store.data_mut(), fuel));
        }
        let call = &mut self.store.data_mut().call;
        call.id += 1;
        call.op = op;
        call.misuse = None;
        assert!(call.pages.is_empty(), "no page is lent between calls");
        let id = call.id;
        call.pages
            .extend(pages.iter().map(|page| PageHandle::lend(page, id)));
        let result = f(&self.plugin, &mut self.store);
        // Take the pages back on every path: after this no handle of the
        // call can reach its page, which is what makes lending a `&Page`
        // for the duration of the call sound.
        let state = self.store.data_mut();
        state.call.pages.clear();
        result.map_err(|e| classify(e, state, fuel))
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
