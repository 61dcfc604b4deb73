//! The plugin runtime itself: finding, validating, compiling and caching
//! components, and the instance pool. Uses the real bundled `ramfs` and
//! `blockfs` components (`scripts/build-plugins`).

use std::sync::Arc;
use std::thread;

use aopsfs::plugin::{
    ArtifactCache, CacheOutcome, PluginError, PluginLimits, PluginOptions, PluginRuntime,
    resolve_plugin,
};
use aopsfs::{AddressSpaceOperations, Engine, EngineConfig, PAGE_SIZE};
use aopsfs_tests::plugins::{load_plugin, plugin_path};

/// The smallest valid component: the preamble alone (no imports, no
/// exports).
const EMPTY_COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

fn private_runtime(cache: &tempfile::TempDir) -> Arc<PluginRuntime> {
    PluginRuntime::new(ArtifactCache::new(Some(cache.path().to_owned()))).expect("runtime")
}

#[test]
fn a_missing_plugin_fails_saying_where_it_looked_and_to_run_build_plugins() {
    let err = resolve_plugin("no-such-plugin").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PluginError::NotFound { .. }), "{err:?}");
    assert!(
        msg.contains("no-such-plugin.wasm") && msg.contains("target/plugins"),
        "{msg}"
    );
    assert!(msg.contains("scripts/build-plugins"), "{msg}");
    let runtime = PluginRuntime::shared().unwrap();
    let err = runtime
        .load("./nowhere/x.wasm", PluginOptions::default())
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("./nowhere/x.wasm"), "{err}");
}

#[test]
fn a_component_of_another_world_is_a_typed_error_naming_the_missing_export() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.wasm");
    std::fs::write(&path, EMPTY_COMPONENT).unwrap();
    let err = private_runtime(&dir)
        .load_path(&path, PluginOptions::default())
        .err()
        .expect("must fail");
    match &err {
        PluginError::WrongWorld { path: p, missing } => {
            assert_eq!(p, &path);
            assert!(
                missing.iter().any(|m| m.contains("aopsfs:vfs/aops@0.1.0")),
                "{missing:?}"
            );
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("empty.wasm") && msg.contains("missing export"),
        "{msg}"
    );
}

#[test]
fn a_file_that_is_not_a_component_is_a_compile_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"this is not webassembly").unwrap();
    let err = private_runtime(&dir)
        .load_path(&path, PluginOptions::default())
        .err()
        .expect("must fail");
    assert!(matches!(err, PluginError::Compile { .. }), "{err:?}");
    assert!(err.to_string().contains("junk.wasm"), "{err}");
}

#[test]
fn compiled_components_are_cached_and_a_damaged_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let path = plugin_path("ramfs");
    let runtime = private_runtime(&cache);
    assert_eq!(runtime.compile(&path).unwrap().cache, CacheOutcome::Miss);
    assert_eq!(runtime.compile(&path).unwrap().cache, CacheOutcome::Hit);
    // A second runtime (same engine settings) finds the same entry.
    assert_eq!(
        private_runtime(&cache).compile(&path).unwrap().cache,
        CacheOutcome::Hit
    );

    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one entry, no temporary files left: {entries:?}"
    );
    let entry = &entries[0];
    let mut bytes = std::fs::read(entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(entry, &bytes).unwrap();
    assert_eq!(runtime.compile(&path).unwrap().cache, CacheOutcome::Corrupt);
    assert_eq!(
        runtime.compile(&path).unwrap().cache,
        CacheOutcome::Hit,
        "the entry was rewritten"
    );

    std::fs::write(entry, b"short").unwrap();
    let plugin = runtime
        .load_path(&path, PluginOptions::default())
        .expect("a truncated entry is not fatal");
    assert_eq!(plugin.name(), "wasm:ramfs");
}

#[test]
fn wasm_ramfs_is_named_after_the_plugin_and_serves_reads_and_writes() {
    let plugin = load_plugin("ramfs", PluginOptions::default());
    assert_eq!(plugin.name(), "wasm:ramfs");
    assert_eq!(plugin.plugin_name(), "ramfs");
    let engine = Engine::new(plugin.clone(), EngineConfig::default());
    engine.open(1);
    let data = aopsfs_tests::pattern(1, 3 * PAGE_SIZE + 17);
    assert_eq!(engine.write(1, 100, &data).unwrap(), data.len());
    assert_eq!(
        aopsfs_tests::read(&engine, 1, 100, data.len()).unwrap(),
        data
    );
    assert_eq!(
        aopsfs_tests::read(&engine, 1, 0, 100).unwrap(),
        vec![0; 100]
    );
    assert!(plugin.stats().calls > 0);
    assert_eq!(plugin.stats().faults.iter().map(|(_, n)| n).sum::<u64>(), 0);
}

#[test]
fn a_plugin_that_refuses_to_mount_is_a_mount_error() {
    // blockfs needs a block device; without one its mount must refuse.
    let err = PluginRuntime::shared()
        .unwrap()
        .load_path(&plugin_path("blockfs"), PluginOptions::default())
        .err()
        .expect("blockfs without a device must not mount");
    assert!(matches!(err, PluginError::Mount { .. }), "{err:?}");
    assert!(err.to_string().contains("blockfs"), "{err}");
}

#[test]
fn the_instance_pool_never_exceeds_its_bound() {
    for max in [1usize, 2] {
        let limits = PluginLimits {
            max_instances: max,
            ..PluginLimits::default()
        };
        let plugin = load_plugin("ramfs", PluginOptions::default().with_limits(limits));
        let engine = Engine::new(
            plugin.clone(),
            EngineConfig {
                ra_pages: 0,
                ..EngineConfig::default()
            },
        );
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let engine = Arc::clone(&engine);
                thread::spawn(move || {
                    let ino = 10 + t;
                    engine.open_with_size(ino, 300 * PAGE_SIZE as u64);
                    for index in 0..300u64 {
                        let page =
                            aopsfs_tests::read(&engine, ino, index * PAGE_SIZE as u64, 8).unwrap();
                        assert_eq!(page, vec![0; 8]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = plugin.stats();
        assert!(stats.pool.created <= max as u64, "max {max}: {stats:?}");
        assert!(stats.pool.live <= max as u64, "max {max}: {stats:?}");
        assert_eq!(stats.pool.discarded, 0);
    }
}

/// With one instance busy in a long call (bad-loop's readpage runs until
/// its fuel is gone), a second caller waits for it instead of creating a
/// second instance. (Counting waits among fast calls would depend on the
/// scheduler; a call that lasts ~10^8 instructions does not.)
#[test]
fn callers_wait_for_the_only_instance_while_it_is_busy() {
    let limits = PluginLimits {
        max_instances: 1,
        ..PluginLimits::default()
    };
    let plugin = load_plugin("bad-loop", PluginOptions::default().with_limits(limits));
    let engine = Engine::new(plugin.clone(), EngineConfig::default());
    engine.open_with_size(1, PAGE_SIZE as u64);
    engine.open_with_size(2, PAGE_SIZE as u64);
    let busy = {
        let engine = Arc::clone(&engine);
        thread::spawn(move || aopsfs_tests::read(&engine, 1, 0, 8))
    };
    // Wait until the first caller holds the instance.
    while plugin.stats().calls == 0 {
        thread::yield_now();
    }
    let second = aopsfs_tests::read(&engine, 2, 0, 8);
    assert!(
        busy.join().unwrap().is_err() && second.is_err(),
        "bad-loop times out"
    );
    let stats = plugin.stats();
    assert!(
        stats.pool.waits > 0,
        "the second caller must have waited: {stats:?}"
    );
    assert!(stats.pool.live <= 1, "{stats:?}");
}
