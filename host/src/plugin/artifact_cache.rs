//! The on-disk cache of compiled plugin components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds (seconds
//! for big guests); loading a precompiled artifact takes well under one. An
//! entry is keyed by a SHA-256 over the component's bytes and the engine
//! fingerprint (which covers the Wasmtime version and every setting that
//! affects generated code), so a changed plugin, a new Wasmtime or another
//! engine configuration never picks up a stale artifact.
//!
//! Entry layout: a magic header, the serialized artifact, then the SHA-256
//! of the artifact. The checksum is verified before the artifact is handed
//! to Wasmtime, so a truncated or corrupted entry is detected, removed and
//! recompiled instead of being loaded. Entries are written to a temporary
//! file and renamed into place, so a reader never sees half an entry.
//!
//! The directory is `$AOPSFS_CACHE_DIR`, else `$XDG_CACHE_HOME/aopsfs`,
//! else `~/.cache/aopsfs`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The environment variable that overrides the cache directory.
pub const CACHE_DIR_ENV: &str = "AOPSFS_CACHE_DIR";

const MAGIC: &[u8; 16] = b"AOPSFS-ARTIFACT\x01";
const CHECKSUM_LEN: usize = 32;

/// What the cache did for one load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid entry was loaded; nothing was compiled.
    Hit,
    /// No entry: the component was compiled and stored.
    Miss,
    /// An entry existed but was damaged: it was removed, and the component
    /// recompiled and stored again.
    Corrupt,
    /// Caching is off (no directory could be determined).
    Disabled,
}

/// A directory of compiled artifacts.
#[derive(Clone, Debug)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

impl ArtifactCache {
    /// A cache in `dir`; `None` disables caching.
    pub fn new(dir: Option<PathBuf>) -> ArtifactCache {
        ArtifactCache { dir }
    }

    /// A cache in the default directory (see the module documentation).
    pub fn in_default_dir() -> ArtifactCache {
        ArtifactCache::new(default_cache_dir())
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The key of a component compiled by an engine with `fingerprint`.
    pub fn key(component_bytes: &[u8], fingerprint: &[u8; 32]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"aopsfs-artifact-key\0");
        hasher.update(fingerprint);
        hasher.update((component_bytes.len() as u64).to_le_bytes());
        hasher.update(component_bytes);
        hex(&hasher.finalize())
    }

    /// The file an entry lives in.
    pub fn entry_path(&self, key: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{key}.cwasm")))
    }

    /// The compiled component for `key`: from the cache if a valid entry
    /// exists, else by calling `compile` and storing the result. Failing to
    /// store is logged, never fatal.
    pub fn load_or_compile<E>(
        &self,
        engine: &Engine,
        key: &str,
        compile: impl FnOnce() -> Result<Component, E>,
    ) -> Result<(Component, CacheOutcome), E> {
        let Some(path) = self.entry_path(key) else {
            return compile().map(|c| (c, CacheOutcome::Disabled));
        };
        let outcome = match fs::read(&path) {
            Ok(bytes) => match load_entry(engine, &bytes) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(why) => {
                    tracing::warn!(entry = %path.display(), "discarding damaged compiled-plugin cache entry: {why}");
                    let _ = fs::remove_file(&path);
                    CacheOutcome::Corrupt
                }
            },
            Err(_) => CacheOutcome::Miss,
        };
        let component = compile()?;
        if let Err(why) = store_entry(&path, &component) {
            tracing::warn!(entry = %path.display(), "cannot store compiled plugin in the cache: {why}");
        }
        Ok((component, outcome))
    }
}

/// `$AOPSFS_CACHE_DIR`, else `$XDG_CACHE_HOME/aopsfs`, else
/// `~/.cache/aopsfs`; `None` if none of them is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(CACHE_DIR_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("aopsfs")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("aopsfs")))
}

/// Verify an entry's framing and checksum, then deserialize it.
fn load_entry(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("bad magic header")?;
    if body.len() < CHECKSUM_LEN {
        return Err("truncated".into());
    }
    let (artifact, checksum) = body.split_at(body.len() - CHECKSUM_LEN);
    if Sha256::digest(artifact).as_slice() != checksum {
        return Err("checksum mismatch".into());
    }
    // SAFETY: `Component::deserialize` requires bytes produced by
    // `Component::serialize` on a compatible engine. The entry was written
    // by `store_entry` below from `serialize`, its checksum matches (so it
    // is byte for byte what was written), and its key includes the engine
    // fingerprint; Wasmtime itself also checks the version and configuration
    // recorded in the artifact. The cache directory is as trusted as the
    // aopsfs binary (same user).
    unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| format!("wasmtime rejected it: {e}"))
}

/// Write an entry atomically: a temporary file in the same directory,
/// fsynced, then renamed over the final name.
fn store_entry(path: &Path, component: &Component) -> Result<(), String> {
    static TEMP_SERIAL: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().ok_or("entry path has no directory")?;
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let artifact = component
        .serialize()
        .map_err(|e| format!("serialize: {e}"))?;
    let checksum = Sha256::digest(&artifact);
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        std::process::id(),
        TEMP_SERIAL.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(MAGIC)?;
        file.write_all(&artifact)?;
        file.write_all(&checksum)?;
        file.sync_data()?;
        fs::rename(&temp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!("write {}: {e}", path.display())
    })
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_bytes_and_fingerprint() {
        let a = ArtifactCache::key(b"component", &[0; 32]);
        assert_eq!(a.len(), 64);
        assert_ne!(a, ArtifactCache::key(b"component2", &[0; 32]));
        assert_ne!(a, ArtifactCache::key(b"component", &[1; 32]));
        assert_eq!(a, ArtifactCache::key(b"component", &[0; 32]));
    }

    #[test]
    fn damaged_entries_are_rejected_before_wasmtime_sees_them() {
        let engine = Engine::default();
        assert!(
            load_entry(&engine, b"garbage")
                .unwrap_err()
                .contains("magic")
        );
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&[1, 2, 3]);
        assert!(
            load_entry(&engine, &entry)
                .unwrap_err()
                .contains("truncated")
        );
        entry.extend_from_slice(&[0; CHECKSUM_LEN]);
        assert!(
            load_entry(&engine, &entry)
                .unwrap_err()
                .contains("checksum")
        );
    }
}
