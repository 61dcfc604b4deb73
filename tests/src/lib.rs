//! Shared helpers for the aopsfs integration tests: engines over the native
//! implementations, a byte-vector model of file contents (like fsx), and
//! checks that a page is back at its baseline (unlocked, only the page
//! cache's reference).

pub mod plugins;
pub use plugins::wasm_ramfs;

use std::collections::HashMap;
use std::sync::Arc;

use aopsfs::fs::memstore::{MemStore, MemStoreAops};
use aopsfs::fs::ramfs::Ramfs;
use aopsfs::fs::scripted::ScriptedAops;
use aopsfs::{AddressSpaceOperations, Engine, EngineConfig, PAGE_SIZE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// An engine with readahead off, so each test sees exactly the aop calls of
/// the caller path it exercises.
pub fn engine_no_ra(aops: Arc<dyn AddressSpaceOperations>) -> Arc<Engine> {
    Engine::new(
        aops,
        EngineConfig {
            ra_pages: 0,
            ..EngineConfig::default()
        },
    )
}

/// A scripted aops over an in-memory store, and an engine (readahead off)
/// using it.
pub fn scripted_engine() -> (Arc<ScriptedAops>, Arc<Engine>) {
    let scripted = ScriptedAops::new();
    let engine = engine_no_ra(scripted.clone());
    (scripted, engine)
}

/// The native ramfs.
pub fn native_ramfs() -> Arc<dyn AddressSpaceOperations> {
    Arc::new(Ramfs)
}

/// A native persistent store and its operations.
pub fn native_memstore() -> (Arc<MemStore>, Arc<dyn AddressSpaceOperations>) {
    let store = MemStore::new();
    (store.clone(), Arc::new(MemStoreAops::new(store)))
}

/// Deterministic bytes for a write: `len` bytes from `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(1..=255u8)).collect()
}

/// Write `data` at `pos` and make it persistent (fsync), then drop every
/// clean page so the next access must call readpage.
pub fn write_sync_and_evict(engine: &Engine, ino: u64, pos: u64, data: &[u8]) {
    engine.open(ino);
    assert_eq!(
        engine.write(ino, pos, data).expect("setup write"),
        data.len()
    );
    engine.fsync(ino).expect("setup fsync");
    engine.drop_caches();
    assert_eq!(
        engine.mapping(ino).unwrap().nrpages(),
        0,
        "setup: cache should be empty after drop_caches"
    );
}

/// Read `len` bytes at `pos`.
pub fn read(engine: &Engine, ino: u64, pos: u64, len: usize) -> Result<Vec<u8>, aopsfs::VfsError> {
    let mut buf = vec![0u8; len];
    let n = engine.read(ino, pos, &mut buf)?;
    assert!(
        n <= len,
        "read returned {n} bytes for a {len}-byte buffer: a positive AOP value leaked?"
    );
    buf.truncate(n);
    Ok(buf)
}

/// Assert the page at `index` is unlocked and held only by the page cache
/// (or not cached at all).
pub fn assert_page_baseline(engine: &Engine, ino: u64, index: u64) {
    let mapping = engine.mapping(ino).unwrap();
    if let Some(page) = mapping.find_get_page(index) {
        assert!(
            !page.is_locked(),
            "page {ino}:{index} left locked: {page:?}"
        );
        // Our lookup holds one reference, the page cache the other.
        assert_eq!(
            page.count(),
            2,
            "page {ino}:{index} reference count not at baseline: {page:?}"
        );
    }
}

/// Assert every cached page of every inode is at its baseline.
pub fn assert_all_pages_baseline(engine: &Engine) {
    for ino in engine.inos() {
        let mapping = engine.mapping(ino).unwrap();
        for page in mapping.lookup_from(0, usize::MAX) {
            assert!(!page.is_locked(), "page left locked: {page:?}");
            assert_eq!(page.count(), 2, "reference count not at baseline: {page:?}");
        }
    }
}

/// A byte-vector model of every file's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    files: HashMap<u64, Vec<u8>>,
}

impl Model {
    /// The file's bytes.
    pub fn file(&self, ino: u64) -> &[u8] {
        self.files.get(&ino).map_or(&[], |v| v.as_slice())
    }

    /// Apply a write.
    pub fn write(&mut self, ino: u64, pos: u64, data: &[u8]) {
        let file = self.files.entry(ino).or_default();
        let end = pos as usize + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[pos as usize..end].copy_from_slice(data);
    }

    /// Apply a truncate (shrink or extend with zeros).
    pub fn truncate(&mut self, ino: u64, size: u64) {
        self.files.entry(ino).or_default().resize(size as usize, 0);
    }

    /// What a read of `len` bytes at `pos` returns.
    pub fn read(&self, ino: u64, pos: u64, len: usize) -> Vec<u8> {
        let file = self.file(ino);
        let start = (pos as usize).min(file.len());
        let end = (pos as usize + len).min(file.len());
        file[start..end].to_vec()
    }

    /// What a fault on page `pgoff` maps: the page, zero past EOF; `None`
    /// when the page is past EOF (SIGBUS).
    pub fn fault(&self, ino: u64, pgoff: u64) -> Option<Vec<u8>> {
        let file = self.file(ino);
        let start = pgoff as usize * PAGE_SIZE;
        if start >= file.len() {
            return None;
        }
        let mut page = vec![0u8; PAGE_SIZE];
        let end = (start + PAGE_SIZE).min(file.len());
        page[..end - start].copy_from_slice(&file[start..end]);
        Some(page)
    }
}

/// Where the first difference between two byte strings is, for messages.
pub fn first_difference(expected: &[u8], actual: &[u8]) -> Option<usize> {
    expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .or_else(|| (expected.len() != actual.len()).then(|| expected.len().min(actual.len())))
}
