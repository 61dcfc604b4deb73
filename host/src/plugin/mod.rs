//! The WASM plugin runtime: address-space operations as sandboxed
//! WebAssembly components of the `aops-plugin` world (`wit/aops.wit`).
//!
//! - [`runtime`]: the Wasmtime engine (fuel on, concurrency support off),
//!   the linker with the host imports, compilation.
//! - [`artifact_cache`]: compiled components on disk, keyed by content hash
//!   and engine fingerprint.
//! - [`validate`]: a wrong component is a typed error naming what is missing.
//! - [`sandbox`]: an empty, deterministic WASI context and the memory cap.
//! - [`instance`] and [`pool`]: one `Store` per instance, a bounded pool,
//!   discard-on-fault.
//! - [`page_handle`]: the host side of the `page` resource and its lock
//!   rules.
//! - [`imports`]: block device, cluster lock and log imports.
//! - [`fault`]: what a failed call becomes.
//! - [`adapter`]: [`WasmAops`], the plugin as an `AddressSpaceOperations`.
//! - [`lookup`]: `--plugin NAME|PATH`.
//! - [`options`]: configuration, limits and services given to a plugin.

pub mod adapter;
pub mod artifact_cache;
pub mod bindings;
pub mod error;
pub mod fault;
pub mod imports;
pub mod instance;
pub mod lookup;
pub mod options;
pub mod page_handle;
pub mod pool;
pub mod runtime;
pub mod sandbox;
pub mod validate;

pub use adapter::{WasmAops, WasmAopsStats};
pub use artifact_cache::{ArtifactCache, CacheOutcome};
pub use error::PluginError;
pub use lookup::{plugin_search_dirs, resolve_plugin};
pub use options::{PluginLimits, PluginOptions, parse_plugin_opt};
pub use pool::PoolStats;
pub use runtime::{CompiledPlugin, PluginRuntime, load_plugin};
