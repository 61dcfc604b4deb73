//! blockfs keeps its data in a real image file: it survives dropping the
//! engine, the plugin and the device, and the WASM plugin and the native
//! twin read each other's images (one on-disk format, the SDK's blockmap).

use std::path::Path;
use std::sync::Arc;

use aopsfs::fs::blockfs::NativeBlockfs;
use aopsfs::plugin::PluginOptions;
use aopsfs::services::BlockDevice;
use aopsfs::{AddressSpaceOperations, Engine, EngineConfig, PAGE_SIZE};
use aopsfs_tests::plugins::load_plugin;
use aopsfs_tests::{Model, pattern};

const IMAGE_BYTES: u64 = 16 << 20;

/// Files written by `fill`: (ino, offset, length, seed).
const WRITES: [(u64, u64, usize, u64); 6] = [
    (1, 0, 3 * PAGE_SIZE, 11),
    (1, 5 * PAGE_SIZE as u64 + 100, 9000, 12),
    (2, 17, 100, 13),
    (3, 40 * PAGE_SIZE as u64, PAGE_SIZE, 14),
    (2, 4000, 300, 15),
    (4, 0, 1, 16),
];

fn wasm_blockfs(image: &Path) -> Arc<dyn AddressSpaceOperations> {
    let device = BlockDevice::open_or_create(image, IMAGE_BYTES).expect("image");
    load_plugin(
        "blockfs",
        PluginOptions::default().with_block_device(device),
    )
}

fn native_blockfs(image: &Path) -> Arc<dyn AddressSpaceOperations> {
    let device = BlockDevice::open_or_create(image, IMAGE_BYTES).expect("image");
    Arc::new(NativeBlockfs::mount(device).expect("mount native blockfs"))
}

/// Write every file, fsync it, and return the model of what was written.
fn fill(aops: Arc<dyn AddressSpaceOperations>) -> Model {
    let engine = Engine::new(aops, EngineConfig::default());
    let mut model = Model::default();
    for (ino, pos, len, seed) in WRITES {
        engine.open(ino);
        let data = pattern(seed, len);
        assert_eq!(engine.write(ino, pos, &data).unwrap(), len);
        model.write(ino, pos, &data);
    }
    // Shrink one file so truncate's freeing is persisted too.
    engine.truncate(1, 5 * PAGE_SIZE as u64 + 1000).unwrap();
    model.truncate(1, 5 * PAGE_SIZE as u64 + 1000);
    for ino in engine.inos() {
        engine.fsync(ino).unwrap();
    }
    assert!(engine.violations().is_empty(), "{:?}", engine.violations());
    model
}

/// Read every file back through a fresh engine (the file sizes come from
/// the model: blockfs stores no i_size) and compare with the model.
fn check(aops: Arc<dyn AddressSpaceOperations>, model: &Model, label: &str) {
    let engine = Engine::new(aops, EngineConfig::default());
    for ino in 1..=4u64 {
        let expected = model.file(ino);
        engine.open_with_size(ino, expected.len() as u64);
        let actual = aopsfs_tests::read(&engine, ino, 0, expected.len() + PAGE_SIZE).unwrap();
        assert!(
            actual == expected,
            "{label}: inode {ino} differs at byte {:?} ({} vs {} bytes)",
            aopsfs_tests::first_difference(expected, &actual),
            actual.len(),
            expected.len()
        );
    }
    assert!(
        engine.violations().is_empty(),
        "{label}: {:?}",
        engine.violations()
    );
}

#[test]
fn wasm_blockfs_data_survives_dropping_everything_and_reopening_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("blockfs.img");
    let model = fill(wasm_blockfs(&image));
    // Everything from the first mount is gone: engine, plugin, instances,
    // device (the file is closed). Reopen the image from its path.
    check(wasm_blockfs(&image), &model, "wasm after reopen");
}

#[test]
fn native_blockfs_data_survives_dropping_everything_and_reopening_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("native.img");
    let model = fill(native_blockfs(&image));
    check(native_blockfs(&image), &model, "native after reopen");
}

#[test]
fn wasm_and_native_blockfs_read_each_others_images() {
    let dir = tempfile::tempdir().unwrap();
    let by_wasm = dir.path().join("by-wasm.img");
    let model = fill(wasm_blockfs(&by_wasm));
    check(
        native_blockfs(&by_wasm),
        &model,
        "native reading the WASM plugin's image",
    );

    let by_native = dir.path().join("by-native.img");
    let model = fill(native_blockfs(&by_native));
    check(
        wasm_blockfs(&by_native),
        &model,
        "WASM plugin reading the native twin's image",
    );

    for image in [&by_wasm, &by_native] {
        let device = BlockDevice::open(image).unwrap();
        let report = NativeBlockfs::mount(device)
            .unwrap()
            .check()
            .expect("fsck finds no inconsistency");
        assert!(report.inodes >= 4, "{report:?}");
    }
}

/// i_op->truncate of a large file frees every block: it runs on the
/// truncate fuel budget, not the (here deliberately small) per-page one, so
/// it finishes and a second file as large fits on an image that cannot
/// hold both.
#[test]
fn truncating_a_large_file_frees_all_its_blocks_within_the_truncate_budget() {
    use aopsfs::plugin::PluginLimits;
    let dir = tempfile::tempdir().unwrap();
    let device = BlockDevice::open_or_create(dir.path().join("disk.img"), 40 << 20).expect("image");
    let limits = PluginLimits {
        // Plenty for one page; too little to free 6144 blocks in one call.
        fuel_per_call: 1_000_000,
        ..PluginLimits::default()
    };
    let aops = load_plugin(
        "blockfs",
        PluginOptions::default()
            .with_block_device(device)
            .with_limits(limits),
    );
    let engine = Engine::new(aops, EngineConfig::default());
    let chunk = pattern(21, 1 << 20);
    let file_bytes = 24u64 << 20;
    for ino in [1, 2] {
        engine.open(ino);
        let mut pos = 0;
        while pos < file_bytes {
            assert_eq!(engine.write(ino, pos, &chunk).expect("write"), chunk.len());
            pos += chunk.len() as u64;
        }
        engine.fsync(ino).unwrap_or_else(|e| {
            panic!("fsync of file {ino} (the first file's blocks were not freed?): {e}")
        });
        engine.truncate(ino, 0).expect("truncate of a 24 MiB file");
    }
    let stats = engine.stats().snapshot();
    assert_eq!(stats.contract_violations, 0, "{stats:?}");
}
