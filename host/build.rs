//! Generates the list of bundled plugins for `aopsfs plugins`: the name and
//! `description` of every `plugins/*/Cargo.toml`, read at build time.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // The manifest dir of this run, not of the build that compiled the
    // script (`env!`): worktrees sharing one target dir share the compiled
    // build script, and a baked-in path may name another (or a deleted)
    // checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set");
    let plugins = Path::new(&manifest_dir).join("..").join("plugins");
    println!("cargo::rerun-if-changed={}", plugins.display());
    let mut found: Vec<(String, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&plugins) {
        for entry in entries.flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            println!("cargo::rerun-if-changed={}", manifest.display());
            let dir = entry.file_name().to_string_lossy().into_owned();
            let (name, description) = package_fields(&text);
            found.push((name.unwrap_or(dir), description.unwrap_or_default()));
        }
    }
    found.sort();
    let mut out = String::from(
        "/// Bundled plugins: (name, description), from plugins/*/Cargo.toml.\npub const BUNDLED_PLUGINS: &[(&str, &str)] = &[\n",
    );
    for (name, description) in &found {
        let _ = writeln!(out, "    ({name:?}, {description:?}),");
    }
    out.push_str("];\n");
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR is set")).join("bundled_plugins.rs");
    std::fs::write(dest, out).expect("write bundled_plugins.rs");
}

/// `name` and `description` of the `[package]` table, read line by line
/// (enough for the plugins' simple manifests, and no build dependency).
fn package_fields(text: &str) -> (Option<String>, Option<String>) {
    let mut in_package = false;
    let (mut name, mut description) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let Some(value) = value
            .strip_prefix('"')
            .and_then(|v| v.rsplit_once('"'))
            .map(|(v, _)| v.replace("\\\"", "\""))
        else {
            continue;
        };
        match key.trim() {
            "name" => name = Some(value),
            "description" => description = Some(value),
            _ => {}
        }
    }
    (name, description)
}
