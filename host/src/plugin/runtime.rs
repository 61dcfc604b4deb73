//! The plugin runtime: one Wasmtime engine with the sandbox's settings, the
//! linker that provides the host imports, and compilation through the
//! artifact cache.
//!
//! Engine settings, all fixed: fuel metering on (`consume_fuel`: the
//! per-call CPU limit, deterministic unlike a wall-clock deadline), the
//! component model on, and concurrency support off (no plugin uses
//! component-model async, and without it every host/guest crossing costs
//! about half as much). Precompiled artifacts are only valid for an engine
//! with the same settings, which is why they are part of the cache key.

use std::hash::Hasher;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::plugin::adapter::WasmAops;
use crate::plugin::artifact_cache::{ArtifactCache, CacheOutcome};
use crate::plugin::bindings::{AopsPlugin, AopsPluginPre};
use crate::plugin::error::PluginError;
use crate::plugin::instance::InstanceState;
use crate::plugin::lookup::{plugin_name, resolve_plugin};
use crate::plugin::options::PluginOptions;
use crate::plugin::validate::check_world;

/// The engine settings, as text: part of the artifact cache key.
const ENGINE_SETTINGS: &str =
    "aopsfs-engine-v1: consume_fuel=on component_model=on concurrency_support=off";

/// A compiled, validated plugin component.
#[derive(Clone)]
pub struct CompiledPlugin {
    /// The plugin's name (the file stem).
    pub name: String,
    /// Where it was loaded from.
    pub path: std::path::PathBuf,
    /// Whether compiling was avoided.
    pub cache: CacheOutcome,
    pub(crate) component: Component,
}

/// The Wasmtime engine and linker every plugin runs on.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<InstanceState>,
    cache: ArtifactCache,
    fingerprint: [u8; 32],
}

impl PluginRuntime {
    /// A runtime that caches compiled components in `cache`.
    pub fn new(cache: ArtifactCache) -> Result<Arc<PluginRuntime>, PluginError> {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.wasm_component_model(true);
        config.concurrency_support(false);
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Engine(format!("linking WASI: {e}")))?;
        AopsPlugin::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |state| {
            state
        })
        .map_err(|e| PluginError::Engine(format!("linking the host interfaces: {e}")))?;
        let fingerprint = engine_fingerprint(&engine);
        Ok(Arc::new(PluginRuntime {
            engine,
            linker,
            cache,
            fingerprint,
        }))
    }

    /// The process-wide runtime, caching in the default directory.
    pub fn shared() -> Result<Arc<PluginRuntime>, PluginError> {
        static SHARED: Mutex<Option<Arc<PluginRuntime>>> = Mutex::new(None);
        let mut shared = SHARED.lock();
        if let Some(runtime) = shared.as_ref() {
            return Ok(Arc::clone(runtime));
        }
        let runtime = PluginRuntime::new(ArtifactCache::in_default_dir())?;
        *shared = Some(Arc::clone(&runtime));
        Ok(runtime)
    }

    /// The Wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The artifact cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// The fingerprint of the engine's settings and Wasmtime version.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Read, compile (or load from the cache) and validate the component at
    /// `path`.
    pub fn compile(&self, path: &Path) -> Result<CompiledPlugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Say plainly what a stray file is, before the parser's byte dump.
        if !bytes.starts_with(b"\0asm") {
            return Err(PluginError::Compile {
                path: path.to_owned(),
                message: "not a WebAssembly file (it does not start with the \\0asm magic)".into(),
            });
        }
        let key = ArtifactCache::key(&bytes, &self.fingerprint);
        let (component, cache) = self.cache.load_or_compile(&self.engine, &key, || {
            Component::new(&self.engine, &bytes).map_err(|e| PluginError::Compile {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })
        })?;
        check_world(&self.engine, &component, path)?;
        Ok(CompiledPlugin {
            name: plugin_name(path),
            path: path.to_owned(),
            cache,
            component,
        })
    }

    /// Link a compiled plugin against the host imports.
    pub(crate) fn prepare(
        &self,
        plugin: &CompiledPlugin,
    ) -> Result<AopsPluginPre<InstanceState>, PluginError> {
        let path = &plugin.path;
        let instance_pre = self
            .linker
            .instantiate_pre(&plugin.component)
            .map_err(|e| PluginError::Instantiate {
                path: path.clone(),
                message: format!("{e:#}"),
            })?;
        AopsPluginPre::new(instance_pre).map_err(|e| PluginError::WrongWorld {
            path: path.clone(),
            missing: vec![format!("{e:#}")],
        })
    }

    /// Find the plugin `spec` (a name or a path, see `plugin::lookup`),
    /// compile it and start it.
    pub fn load(
        self: &Arc<Self>,
        spec: &str,
        options: PluginOptions,
    ) -> Result<Arc<WasmAops>, PluginError> {
        let path = resolve_plugin(spec)?;
        self.load_path(&path, options)
    }

    /// Compile the component at `path` and start it.
    pub fn load_path(
        self: &Arc<Self>,
        path: &Path,
        options: PluginOptions,
    ) -> Result<Arc<WasmAops>, PluginError> {
        let plugin = self.compile(path)?;
        WasmAops::start(self, &plugin, options)
    }
}

/// Feeds `Hash` output into SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

/// SHA-256 over the engine's precompile-compatibility hash (Wasmtime's own
/// summary of its version and code-affecting settings) and our settings.
fn engine_fingerprint(engine: &Engine) -> [u8; 32] {
    use std::hash::Hash;
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.write(ENGINE_SETTINGS.as_bytes());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().into()
}

/// Load the plugin `spec` with the shared runtime: the one call a command
/// line needs.
pub fn load_plugin(spec: &str, options: PluginOptions) -> Result<Arc<WasmAops>, PluginError> {
    PluginRuntime::shared()?.load(spec, options)
}
