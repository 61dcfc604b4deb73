//! Why a plugin could not be found, compiled, validated or started.
//!
//! Faults during an operation are not errors of this kind: they are
//! [`AopFault`](crate::fs::aops::AopFault)s, which fail one call and leave the
//! plugin serving the next.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use crate::services::BlockDeviceError;

/// Why loading a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin of that name in any search directory, or no file at the
    /// path given.
    #[error("{}", not_found_message(.spec, .searched))]
    NotFound {
        spec: String,
        searched: Vec<PathBuf>,
    },
    /// The component file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The file is not a valid WebAssembly component (or not one Wasmtime
    /// can compile).
    #[error("plugin {path} is not a valid WebAssembly component: {message}")]
    Compile { path: PathBuf, message: String },
    /// The component does not implement the `aops-plugin` world.
    #[error("plugin {path} does not implement the aopsfs:vfs/aops-plugin world: {}", .missing.join("; "))]
    WrongWorld { path: PathBuf, missing: Vec<String> },
    /// The component imports something the host does not provide.
    #[error(
        "plugin {path} imports {import}, which the aopsfs host does not provide (a plugin may import only aopsfs:vfs interfaces and WASI 0.2)"
    )]
    UnsupportedImport { path: PathBuf, import: String },
    /// The component's imports could not be linked or it failed to start.
    #[error("plugin {path} could not be instantiated: {message}")]
    Instantiate { path: PathBuf, message: String },
    /// The plugin's `mount` refused the configuration, trapped, or reported
    /// different features on different instances.
    #[error("plugin {plugin} failed to mount: {message}")]
    Mount { plugin: String, message: String },
    /// The Wasmtime engine could not be configured.
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    /// The plugin's block device could not be opened.
    #[error(transparent)]
    BlockDevice(#[from] BlockDeviceError),
    /// An option value is invalid.
    #[error("invalid plugin option: {0}")]
    Option(String),
}

/// The message for a plugin that was not found: where we looked and how to
/// build the bundled plugins.
fn not_found_message(spec: &str, searched: &[PathBuf]) -> String {
    let mut msg = format!("plugin {spec:?} not found; looked in:");
    for path in searched {
        let _ = write!(msg, "\n  {}", path.display());
    }
    msg.push_str("\nbuild the bundled plugins with `scripts/build-plugins`, or pass a path to a .wasm component");
    msg
}
