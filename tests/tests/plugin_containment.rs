//! Every misbehaving plugin (`plugins/bad-*`) is contained: the operation it
//! breaks fails with EIO and a report (the engine's `ContractViolation`)
//! naming the broken rule or the fault; the page lock is released; other
//! files' data is intact; and the same engine keeps serving other files on
//! a fresh instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aopsfs::fs::contract::{ContractViolation, Rule};
use aopsfs::plugin::{PluginOptions, WasmAops};
use aopsfs::services::{BLOCK_SIZE, BlockDevice};
use aopsfs::{AopOp, Engine, Errno, FaultKind, PAGE_SIZE, VfsError};
use aopsfs_tests::plugins::plugin_engine;
use aopsfs_tests::{assert_page_baseline, pattern, read};

/// The file the bad operation is triggered on.
const VICTIM: u64 = 1;
/// A file written before the fault, checked after it.
const BYSTANDER: u64 = 2;
/// A file used only after the fault.
const LATER: u64 = 3;

/// Which operation makes the plugin misbehave.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// A read of a page that is not cached (readpage).
    Read,
    /// A write into a new page (prepare_write / commit_write).
    Write,
    /// fsync of a dirty page (writepage).
    Fsync,
}

/// What the report must say.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A broken lock-table rule.
    Rule(Rule),
    /// A fault of this kind whose detail mentions the text.
    Fault(FaultKind, &'static str),
}

/// An engine over `plugin`, with a bystander file cached: written, or (for
/// a plugin whose writes all fail) read as zeros.
fn setup(plugin: &str, how: Trigger) -> (Arc<WasmAops>, Arc<Engine>, Vec<u8>) {
    setup_with(plugin, PluginOptions::default(), how)
}

/// [`setup`] with the plugin started with `options`.
fn setup_with(
    plugin: &str,
    options: PluginOptions,
    how: Trigger,
) -> (Arc<WasmAops>, Arc<Engine>, Vec<u8>) {
    let (wasm, engine) = plugin_engine(plugin, options);
    let bystander = match how {
        Trigger::Write => {
            let zeros = vec![0; 2 * PAGE_SIZE + 5];
            engine.open_with_size(BYSTANDER, zeros.len() as u64);
            assert_eq!(read(&engine, BYSTANDER, 0, zeros.len()).unwrap(), zeros);
            zeros
        }
        Trigger::Read | Trigger::Fsync => {
            engine.open(BYSTANDER);
            let data = pattern(2, 2 * PAGE_SIZE + 5);
            assert_eq!(engine.write(BYSTANDER, 0, &data).unwrap(), data.len());
            data
        }
    };
    (wasm, engine, bystander)
}

/// An operation on another file that needs a working instance: readpage
/// for a plugin whose writes fail, else prepare_write + commit_write.
fn later_op_succeeds(plugin: &str, engine: &Engine, how: Trigger) {
    match how {
        Trigger::Write => {
            engine.open_with_size(LATER, 3 * PAGE_SIZE as u64);
            assert_eq!(
                read(engine, LATER, 0, 3 * PAGE_SIZE).unwrap(),
                vec![0; 3 * PAGE_SIZE],
                "{plugin}: a later read"
            );
        }
        Trigger::Read | Trigger::Fsync => {
            engine.open(LATER);
            let later = pattern(3, 3 * PAGE_SIZE);
            assert_eq!(
                engine.write(LATER, 0, &later).unwrap(),
                later.len(),
                "{plugin}: a later write"
            );
            assert_eq!(
                read(engine, LATER, 0, later.len()).unwrap(),
                later,
                "{plugin}: a later read"
            );
        }
    }
    assert!(
        engine.violations().iter().all(|v| v.ino == VICTIM),
        "{plugin}: only the victim is reported"
    );
}

/// Run the trigger on the victim file; return the error it must fail with.
fn trigger(engine: &Engine, trigger: Trigger) -> VfsError {
    match trigger {
        Trigger::Read => {
            engine.open_with_size(VICTIM, 2 * PAGE_SIZE as u64);
            read(engine, VICTIM, 0, 100).expect_err("the read must fail")
        }
        Trigger::Write => {
            engine.open(VICTIM);
            engine
                .write(VICTIM, 10, b"victim")
                .expect_err("the write must fail")
        }
        Trigger::Fsync => {
            engine.open(VICTIM);
            assert_eq!(engine.write(VICTIM, 10, b"victim").unwrap(), 6);
            engine.fsync(VICTIM).expect_err("the fsync must fail")
        }
    }
}

/// Find the engine's report for the victim and check it names `expect`.
fn check_report(plugin: &str, engine: &Engine, expect: Expect) -> ContractViolation {
    let violations = engine.violations();
    let report = violations
        .iter()
        .find(|v| v.ino == VICTIM)
        .unwrap_or_else(|| panic!("{plugin}: no report for the victim inode: {violations:?}"))
        .clone();
    match expect {
        Expect::Rule(rule) => assert_eq!(report.rule, rule, "{plugin}: {report}"),
        Expect::Fault(kind, text) => {
            assert_eq!(report.rule, Rule::PluginFault, "{plugin}: {report}");
            assert_eq!(report.returned, kind.to_string(), "{plugin}: {report}");
            assert!(
                report.detail.contains(text),
                "{plugin}: report should mention {text:?}: {report}"
            );
        }
    }
    report
}

/// The whole containment check for one misbehaving plugin.
fn contained(plugin: &str, how: Trigger, expect: Expect) -> (Arc<WasmAops>, Arc<Engine>) {
    contained_with(plugin, PluginOptions::default(), how, expect)
}

/// [`contained`] with the plugin started with `options`.
fn contained_with(
    plugin: &str,
    options: PluginOptions,
    how: Trigger,
    expect: Expect,
) -> (Arc<WasmAops>, Arc<Engine>) {
    let (wasm, engine, bystander) = setup_with(plugin, options, how);

    let err = trigger(&engine, how);
    assert_eq!(err.errno(), Errno::Eio, "{plugin}: {err}");
    let report = check_report(plugin, &engine, expect);
    // A read or write fails with the report itself; fsync reports the
    // writeback error recorded on the mapping (EIO), as the kernel does.
    if !matches!(how, Trigger::Fsync) {
        assert!(
            matches!(&err, VfsError::Contract(v) if *v == report),
            "{plugin}: the error is the report: {err:?}"
        );
    }

    // The page lock is released (or the page is gone), and so is every
    // other page's.
    let mapping = engine.mapping(VICTIM).unwrap();
    if let Some(page) = mapping.find_get_page(report.index) {
        assert!(
            !page.is_locked(),
            "{plugin}: page {} left locked: {page:?}",
            report.index
        );
    }
    assert_page_baseline(&engine, VICTIM, report.index);
    aopsfs_tests::assert_all_pages_baseline(&engine);

    // Other files' data is intact.
    assert_eq!(
        read(&engine, BYSTANDER, 0, bystander.len()).unwrap(),
        bystander,
        "{plugin}: bystander changed"
    );

    // The engine goes on serving another file through the plugin.
    later_op_succeeds(plugin, &engine, how);
    (wasm, engine)
}

#[test]
fn bad_trap_fails_the_read_with_eio_and_reports_the_panic() {
    let (wasm, _engine) = contained(
        "bad-trap",
        Trigger::Read,
        Expect::Fault(FaultKind::Trap, "panics on purpose"),
    );
    let stats = wasm.stats();
    assert_eq!(stats.faults_of(FaultKind::Trap), 1, "{stats:?}");
    assert!(
        stats.pool.discarded >= 1,
        "the trapped instance is discarded: {stats:?}"
    );
}

#[test]
fn bad_loop_is_stopped_by_fuel_within_a_bounded_time() {
    let start = Instant::now();
    let (wasm, _engine) = contained(
        "bad-loop",
        Trigger::Read,
        Expect::Fault(FaultKind::Timeout, "fuel"),
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(20),
        "an endless loop took {elapsed:?} to stop"
    );
    assert_eq!(wasm.stats().faults_of(FaultKind::Timeout), 1);
}

#[test]
fn bad_oom_hits_the_memory_limit_and_is_reported_as_out_of_memory() {
    let (wasm, _engine) = contained(
        "bad-oom",
        Trigger::Read,
        Expect::Fault(FaultKind::OutOfMemory, "memory limit"),
    );
    assert_eq!(wasm.stats().faults_of(FaultKind::OutOfMemory), 1);
}

#[test]
fn bad_double_unlock_is_handle_misuse() {
    contained(
        "bad-double-unlock",
        Trigger::Read,
        Expect::Fault(FaultKind::HandleMisuse, "double unlock"),
    );
}

#[test]
fn bad_write_after_unlock_is_handle_misuse_and_the_page_keeps_its_zeros() {
    let (_wasm, engine) = contained(
        "bad-write-after-unlock",
        Trigger::Read,
        Expect::Fault(FaultKind::HandleMisuse, "page.write"),
    );
    if let Some(page) = engine.mapping(VICTIM).unwrap().find_get_page(0) {
        assert!(
            page.snapshot().iter().all(|&b| b == 0),
            "the refused write must not reach the page"
        );
    }
}

/// `bad-device-read` with `misuse=<misuse>` over a fresh block device
/// (whose blocks hold 0xee), contained with a report mentioning `text`;
/// the refused request must not have reached the page.
fn device_misuse_contained(misuse: &str, text: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let device = BlockDevice::create(dir.path().join("disk.img"), 64 * BLOCK_SIZE as u64).unwrap();
    for block in 0..device.block_count() {
        device.write_block(block, &[0xee; BLOCK_SIZE]).unwrap();
    }
    let options = PluginOptions::default()
        .with_block_device(device)
        .with_config("misuse", misuse);
    let (_wasm, engine) = contained_with(
        "bad-device-read",
        options,
        Trigger::Read,
        Expect::Fault(FaultKind::HandleMisuse, text),
    );
    let report = engine
        .violations()
        .into_iter()
        .find(|v| v.ino == VICTIM)
        .unwrap();
    assert!(
        report.detail.contains("block-device."),
        "the report names the import: {report}"
    );
    // With `twice` the first request was allowed and completed the read
    // (uptodate, unlocked) before the second trapped: the page is then the
    // plugin's doing, as after any completed `end-read`.
    if misuse != "twice"
        && let Some(page) = engine.mapping(VICTIM).unwrap().find_get_page(0)
    {
        assert!(!page.is_uptodate(), "{page:?}");
        assert!(
            page.snapshot().iter().all(|&b| b == 0),
            "a refused request must not reach the page"
        );
    }
}

#[test]
fn end_read_from_block_after_unlock_is_handle_misuse() {
    device_misuse_contained(
        "after-unlock",
        "block-device.end-read-from-block on inode 1 page 0 after this call unlocked it",
    );
}

#[test]
fn end_read_from_block_twice_is_handle_misuse() {
    device_misuse_contained(
        "twice",
        "block-device.end-read-from-block on inode 1 page 0 after this call unlocked it",
    );
}

#[test]
fn end_read_from_block_past_the_device_is_handle_misuse() {
    device_misuse_contained("block-past-device", "past the device, which has 64 blocks");
}

#[test]
fn end_read_from_block_longer_than_a_page_is_handle_misuse() {
    device_misuse_contained("len-past-page", "length 4097 is past the page size 4096");
}

#[test]
fn read_block_range_past_its_block_is_handle_misuse() {
    device_misuse_contained(
        "range-past-block",
        "block-device.read-block-range of block 0: offset 4000 + length 200 is past the block size",
    );
}

#[test]
fn read_block_range_past_the_device_is_handle_misuse() {
    device_misuse_contained(
        "range-past-device",
        "64 bytes from byte 0 of block 64 are past the device",
    );
}

#[test]
fn end_read_from_block_without_a_device_is_handle_misuse() {
    contained_with(
        "bad-device-read",
        PluginOptions::default().with_config("misuse", "block-past-device"),
        Trigger::Read,
        Expect::Fault(FaultKind::HandleMisuse, "the plugin has no block device"),
    );
}

#[test]
fn bad_readpage_locked_breaks_readpage_ok_unlocks() {
    contained(
        "bad-readpage-locked",
        Trigger::Read,
        Expect::Rule(Rule::ReadpageOkUnlocks),
    );
}

#[test]
fn bad_truncated_locked_breaks_truncated_page_unlocks() {
    contained(
        "bad-truncated-locked",
        Trigger::Read,
        Expect::Rule(Rule::TruncatedPageUnlocks),
    );
}

#[test]
fn bad_activate_readpage_returns_a_result_readpage_may_not_return() {
    let (_, engine) = contained(
        "bad-activate-readpage",
        Trigger::Read,
        Expect::Rule(Rule::ResultAllowed),
    );
    let report = engine
        .violations()
        .into_iter()
        .find(|v| v.ino == VICTIM)
        .unwrap();
    assert_eq!(
        (report.op, report.returned.as_str()),
        (AopOp::Readpage, "writepage-activate")
    );
}

#[test]
fn bad_prepare_unlocks_breaks_prepare_write_keeps_the_lock() {
    contained(
        "bad-prepare-unlocks",
        Trigger::Write,
        Expect::Rule(Rule::PrepareWriteKeepsLock),
    );
}

#[test]
fn bad_writepage_truncated_returns_a_result_writepage_may_not_return_and_keeps_the_data() {
    let (_, engine) = contained(
        "bad-writepage-truncated",
        Trigger::Fsync,
        Expect::Rule(Rule::ResultAllowed),
    );
    // The failed writepage leaves the page dirty: the data is not lost.
    let page = engine
        .mapping(VICTIM)
        .unwrap()
        .find_get_page(0)
        .expect("the page stays cached");
    assert!(page.is_dirty(), "{page:?}");
    assert_eq!(read(&engine, VICTIM, 10, 6).unwrap(), b"victim");
}

#[test]
fn bad_truncated_forever_is_reported_as_a_livelock_not_a_hang() {
    let (_wasm, engine, bystander) = setup("bad-truncated-forever", Trigger::Read);
    let start = Instant::now();
    let err = trigger(&engine, Trigger::Read);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the livelock bound took {:?}",
        start.elapsed()
    );
    assert_eq!(err.errno(), Errno::Eio, "{err}");
    assert!(
        matches!(err, VfsError::Livelock { ino: VICTIM, .. }),
        "{err:?}"
    );
    assert!(engine.stats().snapshot().livelocks >= 1);
    aopsfs_tests::assert_all_pages_baseline(&engine);
    assert_eq!(
        read(&engine, BYSTANDER, 0, bystander.len()).unwrap(),
        bystander
    );
}

#[test]
fn bad_corrupt_keeps_every_lock_rule_but_the_data_check_catches_it() {
    let (_wasm, engine) = plugin_engine(
        "bad-corrupt",
        PluginOptions::default().with_config("corrupt-offset", "5000"),
    );
    engine.open(VICTIM);
    let data = pattern(7, 3 * PAGE_SIZE);
    assert_eq!(engine.write(VICTIM, 0, &data).unwrap(), data.len());
    let back = read(&engine, VICTIM, 0, data.len()).unwrap();
    assert_eq!(
        aopsfs_tests::first_difference(&data, &back),
        Some(5000),
        "only byte 5000 differs"
    );
    assert_eq!(back[5000], !data[5000]);
    assert!(
        engine.violations().is_empty(),
        "no lock rule is broken: {:?}",
        engine.violations()
    );
}

#[test]
fn a_faulting_plugin_does_not_disturb_another_engine() {
    let (_, good) = plugin_engine("ramfs", PluginOptions::default());
    good.open(BYSTANDER);
    let data = pattern(9, PAGE_SIZE + 1);
    assert_eq!(good.write(BYSTANDER, 0, &data).unwrap(), data.len());
    contained(
        "bad-trap",
        Trigger::Read,
        Expect::Fault(FaultKind::Trap, "panic"),
    );
    assert_eq!(read(&good, BYSTANDER, 0, data.len()).unwrap(), data);
    assert!(good.violations().is_empty());
}
