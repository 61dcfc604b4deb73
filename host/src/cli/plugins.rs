//! `aopsfs plugins`: the bundled plugins (from `plugins/*/Cargo.toml` at
//! build time, see `host/build.rs`), whether each is built and where, and
//! the native implementations.

use clap::Args;

use crate::cli::EXIT_OK;
use crate::cli::error::CliError;
use crate::cli::target::{NATIVE, NATIVE_PREFIX};
use crate::plugin::{plugin_search_dirs, resolve_plugin};

include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

/// `aopsfs plugins` flags.
#[derive(Debug, Args)]
pub struct PluginsArgs {}

/// One line per bundled plugin: name, built or not (and where), and what
/// it is.
pub fn listing() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let width = BUNDLED_PLUGINS
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(5)
        .max(16);
    if BUNDLED_PLUGINS.is_empty() {
        out.push_str("no bundled plugins were found under plugins/ when aopsfs was built\n");
    } else {
        let _ = writeln!(
            out,
            "bundled plugins (build them with scripts/build-plugins):"
        );
    }
    let mut missing = false;
    for (name, description) in BUNDLED_PLUGINS {
        let place = match resolve_plugin(name) {
            Ok(path) => format!("built: {}", path.display()),
            Err(_) => {
                missing = true;
                "NOT BUILT".to_owned()
            }
        };
        let _ = writeln!(
            out,
            "  {name:<width$}  {description}\n  {:<width$}  ({place})",
            ""
        );
    }
    if missing {
        let dirs: Vec<String> = plugin_search_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let _ = writeln!(out, "plugins are looked for in: {}", dirs.join(", "));
    }
    let _ = writeln!(
        out,
        "native implementations (--plugin {NATIVE_PREFIX}NAME, no WebAssembly):"
    );
    for (name, description) in NATIVE {
        let _ = writeln!(
            out,
            "  {:<width$}  {description}",
            format!("{NATIVE_PREFIX}{name}")
        );
    }
    out
}

/// Print the listing.
pub fn execute(_args: &PluginsArgs) -> Result<u8, CliError> {
    print!("{}", listing());
    Ok(EXIT_OK)
}
