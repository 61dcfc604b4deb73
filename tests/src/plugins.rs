//! Helpers for tests of WASM plugins: finding the built plugins (failing
//! loudly when they are missing), loading them, and engines over them.

use std::path::PathBuf;
use std::sync::Arc;

use aopsfs::plugin::{PluginOptions, PluginRuntime, WasmAops, resolve_plugin};
use aopsfs::{AddressSpaceOperations, Engine};

/// The component file of a bundled plugin. Panics with instructions when it
/// has not been built: a plugin test must fail, never skip silently.
pub fn plugin_path(name: &str) -> PathBuf {
    match resolve_plugin(name) {
        Ok(path) => path,
        Err(e) => panic!("plugin {name:?} is not built: run scripts/build-plugins first\n{e}"),
    }
}

/// Load a bundled plugin with `options`. Panics (naming the plugin and the
/// error) if it cannot be loaded.
pub fn load_plugin(name: &str, options: PluginOptions) -> Arc<WasmAops> {
    let path = plugin_path(name);
    let runtime = PluginRuntime::shared().unwrap_or_else(|e| panic!("plugin runtime: {e}"));
    runtime
        .load_path(&path, options)
        .unwrap_or_else(|e| panic!("loading plugin {name:?} from {}: {e}", path.display()))
}

/// The `ramfs` plugin as address-space operations: the WASM twin of
/// [`crate::native_ramfs`].
pub fn wasm_ramfs() -> Arc<dyn AddressSpaceOperations> {
    load_plugin("ramfs", PluginOptions::default())
}

/// An engine (readahead off) over a bundled plugin.
pub fn plugin_engine(name: &str, options: PluginOptions) -> (Arc<WasmAops>, Arc<Engine>) {
    let plugin = load_plugin(name, options);
    let engine = crate::engine_no_ra(plugin.clone());
    (plugin, engine)
}
