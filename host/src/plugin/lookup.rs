//! Finding a plugin by name or path: the `--plugin NAME|PATH` semantics.
//!
//! A spec containing `/` or ending in `.wasm` is a path. Anything else is
//! the name of a bundled plugin, looked up as `NAME.wasm` in, in order:
//! `$AOPSFS_PLUGIN_DIR`, the repository's `target/plugins` (where
//! `scripts/build-plugins` puts them), `<dir of the executable>/plugins`
//! and `<dir of the executable>/../plugins`.

use std::path::{Path, PathBuf};

use crate::plugin::error::PluginError;

/// The environment variable naming an extra plugin directory, searched first.
pub const PLUGIN_DIR_ENV: &str = "AOPSFS_PLUGIN_DIR";

/// Whether `spec` names a file rather than a bundled plugin.
pub fn is_path_spec(spec: &str) -> bool {
    spec.contains('/') || spec.ends_with(".wasm")
}

/// The directories searched for bundled plugins, in order.
pub fn plugin_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(PLUGIN_DIR_ENV).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(repo_plugin_dir());
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("plugins"));
        if let Some(parent) = exe_dir.parent() {
            dirs.push(parent.join("plugins"));
        }
    }
    dirs
}

/// `<repo>/target/plugins`, where `scripts/build-plugins` copies the
/// bundled plugins.
pub fn repo_plugin_dir() -> PathBuf {
    // host/ is one level below the repository root.
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent().unwrap_or(host).join("target").join("plugins")
}

/// Resolve a `--plugin` argument to a component file.
pub fn resolve_plugin(spec: &str) -> Result<PathBuf, PluginError> {
    if is_path_spec(spec) {
        let path = PathBuf::from(spec);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(PluginError::NotFound {
                spec: spec.to_owned(),
                searched: vec![path],
            })
        };
    }
    let file = format!("{spec}.wasm");
    let searched: Vec<PathBuf> = plugin_search_dirs()
        .into_iter()
        .map(|dir| dir.join(&file))
        .collect();
    match searched.iter().find(|path| path.is_file()) {
        Some(path) => Ok(path.clone()),
        None => Err(PluginError::NotFound {
            spec: spec.to_owned(),
            searched,
        }),
    }
}

/// The plugin's name for reports: the file stem of its path.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_are_told_apart() {
        assert!(is_path_spec("./x"));
        assert!(is_path_spec("plugins/ramfs"));
        assert!(is_path_spec("ramfs.wasm"));
        assert!(!is_path_spec("ramfs"));
    }

    #[test]
    fn a_missing_plugin_lists_where_it_looked_and_how_to_build() {
        let err = resolve_plugin("no-such-plugin-xyz").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no-such-plugin-xyz.wasm"), "{msg}");
        assert!(msg.contains("target/plugins"), "{msg}");
        assert!(msg.contains("scripts/build-plugins"), "{msg}");
        let err = resolve_plugin("/nonexistent/dir/p.wasm").unwrap_err();
        assert!(
            matches!(err, PluginError::NotFound { ref searched, .. } if searched.len() == 1),
            "{err}"
        );
    }

    #[test]
    fn plugin_name_is_the_file_stem() {
        assert_eq!(plugin_name(Path::new("/a/b/blockfs.wasm")), "blockfs");
    }
}
