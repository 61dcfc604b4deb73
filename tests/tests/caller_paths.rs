//! One test per caller path and result of the spec's caller table
//! (aops-contract.md, "Callers and what each does"), each asserting the
//! observable outcome: data, retry counts, the page lock released, page
//! reference counts back at baseline, no positive AOP value leaking out.

use std::sync::Arc;

use aopsfs::fs::aops::{AopOp, AopResult, ResultKind};
use aopsfs::fs::contract::Rule;
use aopsfs::fs::scripted::{Action, ScriptRule};
use aopsfs::mm::filemap::Caller;
use aopsfs::mm::vmscan::Pageout;
use aopsfs::{Engine, EngineConfig, Errno, PAGE_SIZE, VfsError};
use aopsfs_tests::*;

const INO: u64 = 1;

fn truncated() -> Action {
    Action::Return(AopResult::TruncatedPage)
}

fn error(e: Errno) -> Action {
    Action::Return(AopResult::Error(e))
}

/// Run a ramfs test on the native ramfs and on the WASM ramfs plugin: both
/// must pass the same assertions and end with identical aop statistics.
fn on_native_and_wasm_ramfs(
    test: impl Fn(Arc<dyn aopsfs::AddressSpaceOperations>) -> aopsfs::stats::StatsSnapshot,
) {
    let native = test(native_ramfs());
    let wasm = test(aopsfs_tests::plugins::wasm_ramfs());
    assert_eq!(
        native.aop_calls, wasm.aop_calls,
        "native and WASM ramfs made different aop calls"
    );
    assert_eq!(
        native, wasm,
        "native and WASM ramfs ended with different statistics"
    );
}

// ---- do_generic_mapping_read ---------------------------------------------

#[test]
fn read_loop_retries_on_truncated_page() {
    let (script, engine) = scripted_engine();
    let data = pattern(1, 3000);
    write_sync_and_evict(&engine, INO, 0, &data);
    script.push(ScriptRule::times(AopOp::Readpage, 2, truncated()).on(INO, 0));

    assert_eq!(read(&engine, INO, 0, 3000).unwrap(), data);
    assert_eq!(engine.stats().retries(Caller::ReadLoop), 2);
    assert_eq!(script.count(AopOp::Readpage, AopResult::TruncatedPage), 2);
    assert_eq!(script.count(AopOp::Readpage, AopResult::Ok), 1);
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn read_loop_stops_on_error_returning_bytes_read_so_far() {
    let (script, engine) = scripted_engine();
    let data = pattern(2, 2 * PAGE_SIZE);
    write_sync_and_evict(&engine, INO, 0, &data);
    script.push(ScriptRule::always(AopOp::Readpage, error(Errno::Eio)).on(INO, 1));

    // Page 0 reads fine, page 1 fails: a short read of what was read.
    assert_eq!(
        read(&engine, INO, 0, 2 * PAGE_SIZE).unwrap(),
        data[..PAGE_SIZE]
    );
    // Starting at the failing page: the error itself.
    let err = read(&engine, INO, PAGE_SIZE as u64, PAGE_SIZE).unwrap_err();
    assert_eq!(err, VfsError::Errno(Errno::Eio));
    let page = engine
        .mapping(INO)
        .unwrap()
        .find_get_page(1)
        .expect("page 1 stays cached");
    assert!(!page.is_uptodate() && !page.is_locked());
    drop(page);
    assert_page_baseline(&engine, INO, 1);
}

#[test]
fn read_loop_relocks_and_retries_when_truncate_wins_after_readpage() {
    let (script, engine) = scripted_engine();
    let old = pattern(3, 100);
    write_sync_and_evict(&engine, INO, 0, &old);
    let new = pattern(4, 100);
    // readpage completes, then (before the reader looks at the page) a
    // truncate removes it and a writer puts new data there.
    let weak = Arc::downgrade(&engine);
    let new_data = new.clone();
    let hook: aopsfs::fs::scripted::Hook = Arc::new(move |inner, inode, page| {
        let result = inner.readpage(inode, page);
        let engine = weak.upgrade().unwrap();
        engine.truncate(INO, 0).unwrap();
        engine.write(INO, 0, &new_data).unwrap();
        result
    });
    script.push(ScriptRule::times(AopOp::Readpage, 1, Action::Call(hook)).on(INO, 0));

    assert_eq!(read(&engine, INO, 0, 100).unwrap(), new);
    assert_eq!(
        engine.stats().retries(Caller::ReadLoop),
        1,
        "the reader must notice the truncation and look up again"
    );
    assert_eq!(
        engine
            .stats()
            .contract_violations
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn read_loop_livelock_is_reported_after_the_bound() {
    let scripted = aopsfs::fs::scripted::ScriptedAops::new();
    let engine = Engine::new(
        scripted.clone(),
        EngineConfig {
            ra_pages: 0,
            max_retries: 25,
            ..EngineConfig::default()
        },
    );
    write_sync_and_evict(&engine, INO, 0, &pattern(5, 10));
    scripted.push(ScriptRule::always(AopOp::Readpage, truncated()));

    let err = read(&engine, INO, 0, 10).unwrap_err();
    assert!(
        matches!(
            err,
            VfsError::Livelock {
                caller: Caller::ReadLoop,
                ino: INO,
                index: 0,
                retries: 25,
                bound: 25
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.errno(), Errno::Eio);
    assert_eq!(
        engine
            .stats()
            .livelocks
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_page_baseline(&engine, INO, 0);
}

// ---- page_cache_read ---------------------------------------------------------

/// A readpage that unlocks the page and removes it from the cache (as
/// truncate or an OCFS2 downconvert would) before returning truncated-page.
fn truncate_away(engine: &Arc<Engine>) -> Action {
    let weak = Arc::downgrade(engine);
    Action::Call(Arc::new(move |_inner, inode, page| {
        page.unlock();
        let engine = weak.upgrade().unwrap();
        engine.truncate_inode_pages(&engine.mapping(inode.ino).unwrap(), 0);
        Ok(AopResult::TruncatedPage)
    }))
}

#[test]
fn page_cache_read_retries_on_truncated_page() {
    let (script, engine) = scripted_engine();
    let data = pattern(6, PAGE_SIZE);
    write_sync_and_evict(&engine, INO, 0, &data);
    script.push(ScriptRule::times(
        AopOp::Readpage,
        2,
        truncate_away(&engine),
    ));
    let mapping = engine.mapping(INO).unwrap();

    engine.page_cache_read(&mapping, 0).unwrap();
    assert_eq!(
        engine.stats().retries(Caller::PageCacheRead),
        2,
        "allocate, insert, readpage again each time"
    );
    let page = mapping.find_get_page(0).expect("page cached");
    assert!(page.is_uptodate());
    assert_eq!(page.snapshot(), data);
    drop(page);
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn page_cache_read_retry_that_finds_the_page_cached_leaves_it_to_the_fault_path() {
    // truncated-page without removal: the retry loses the insert race,
    // which counts as success; filemap_nopage then reads the page itself.
    let (script, engine) = scripted_engine();
    let data = pattern(61, PAGE_SIZE);
    write_sync_and_evict(&engine, INO, 0, &data);
    script.push(ScriptRule::times(AopOp::Readpage, 1, truncated()));

    assert_eq!(engine.fault(INO, 0).unwrap(), data);
    assert_eq!(engine.stats().retries(Caller::PageCacheRead), 1);
    assert_eq!(
        script.count(AopOp::Readpage, AopResult::Ok),
        1,
        "the fault path read the not-uptodate page"
    );
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn page_cache_read_losing_the_insert_race_counts_as_success() {
    let (script, engine) = scripted_engine();
    write_sync_and_evict(&engine, INO, 0, &pattern(7, 10));
    read(&engine, INO, 0, 10).unwrap();
    let calls = script.calls().len();
    engine
        .page_cache_read(&engine.mapping(INO).unwrap(), 0)
        .unwrap();
    assert_eq!(
        script.calls().len(),
        calls,
        "a page already cached is not read again"
    );
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn page_cache_read_returns_other_errors() {
    let (script, engine) = scripted_engine();
    write_sync_and_evict(&engine, INO, 0, &pattern(8, 10));
    script.push(ScriptRule::always(AopOp::Readpage, error(Errno::Enomem)));
    let err = engine
        .page_cache_read(&engine.mapping(INO).unwrap(), 0)
        .unwrap_err();
    assert_eq!(err, VfsError::Errno(Errno::Enomem));
    assert_page_baseline(&engine, INO, 0);
}

// ---- filemap_nopage ------------------------------------------------------------

/// Leave page 0 cached but not uptodate (a failed read), with `data` on store.
fn not_uptodate_page(data: &[u8]) -> (Arc<aopsfs::fs::scripted::ScriptedAops>, Arc<Engine>) {
    let (script, engine) = scripted_engine();
    write_sync_and_evict(&engine, INO, 0, data);
    script.push(ScriptRule::times(AopOp::Readpage, 1, error(Errno::Eio)));
    assert!(read(&engine, INO, 0, 1).is_err());
    let page = engine.mapping(INO).unwrap().find_get_page(0).unwrap();
    assert!(!page.is_uptodate() && page.is_error());
    (script, engine)
}

#[test]
fn fault_retries_on_truncated_page() {
    let data = pattern(9, 500);
    let (script, engine) = not_uptodate_page(&data);
    script.push(ScriptRule::times(AopOp::Readpage, 1, truncated()));

    let page = engine.fault(INO, 0).unwrap();
    assert_eq!(&page[..500], &data[..]);
    assert!(
        page[500..].iter().all(|&b| b == 0),
        "bytes past EOF map as zero"
    );
    assert_eq!(engine.stats().retries(Caller::Fault), 1);
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn fault_clears_error_and_retries_readpage_once_then_succeeds() {
    let data = pattern(10, PAGE_SIZE);
    let (script, engine) = not_uptodate_page(&data);
    script.push(ScriptRule::times(AopOp::Readpage, 1, error(Errno::Eio)));
    let saw_error_bit = Arc::new(parking_lot::Mutex::new(None));
    let seen = saw_error_bit.clone();
    let hook: aopsfs::fs::scripted::Hook = Arc::new(move |inner, inode, page| {
        *seen.lock() = Some(page.is_error());
        inner.readpage(inode, page)
    });
    script.push(ScriptRule::times(AopOp::Readpage, 1, Action::Call(hook)));

    assert_eq!(engine.fault(INO, 0).unwrap(), data);
    assert_eq!(
        *saw_error_bit.lock(),
        Some(false),
        "PG_error is cleared before the second readpage"
    );
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn fault_gives_sigbus_after_two_failed_readpages() {
    let (script, engine) = not_uptodate_page(&pattern(11, 10));
    let before = script.calls().len();
    script.push(ScriptRule::always(AopOp::Readpage, error(Errno::Eio)));

    let err = engine.fault(INO, 0).unwrap_err();
    assert!(
        matches!(
            err,
            VfsError::Sigbus {
                ino: INO,
                pgoff: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        script.calls().len() - before,
        2,
        "exactly one retry of readpage"
    );
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn fault_past_end_of_file_is_sigbus() {
    let (_script, engine) = scripted_engine();
    write_sync_and_evict(&engine, INO, 0, &pattern(12, PAGE_SIZE));
    assert!(matches!(
        engine.fault(INO, 1),
        Err(VfsError::Sigbus { pgoff: 1, .. })
    ));
}

// ---- generic_file_buffered_write ---------------------------------------------

#[test]
fn buffered_write_retries_on_prepare_truncated_page() {
    let (script, engine) = scripted_engine();
    engine.open(INO);
    script.push(ScriptRule::times(AopOp::PrepareWrite, 2, truncated()).on(INO, 0));
    let data = pattern(13, 1000);

    assert_eq!(engine.write(INO, 0, &data).unwrap(), 1000);
    assert_eq!(engine.stats().retries(Caller::BufferedWrite), 2);
    assert_eq!(script.count(AopOp::PrepareWrite, AopResult::Ok), 1);
    assert_eq!(read(&engine, INO, 0, 1000).unwrap(), data);
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn buffered_write_recopies_after_commit_truncated() {
    let (script, engine) = scripted_engine();
    engine.open(INO);
    // commit_write drops the page lock, and the page is invalidated (as
    // after an OCFS2 downconvert) before it returns truncated-page.
    let weak = Arc::downgrade(&engine);
    let generations = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = generations.clone();
    let hook: aopsfs::fs::scripted::Hook = Arc::new(move |_inner, _inode, page| {
        seen.lock().push(page.generation());
        page.unlock();
        let engine = weak.upgrade().unwrap();
        engine.truncate_inode_pages(&engine.mapping(INO).unwrap(), 0);
        Ok(AopResult::TruncatedPage)
    });
    script.push(ScriptRule::times(AopOp::CommitWrite, 1, Action::Call(hook)));
    let data = pattern(14, 300);

    assert_eq!(engine.write(INO, 10, &data).unwrap(), 300);
    let page = engine.mapping(INO).unwrap().find_get_page(0).unwrap();
    assert_ne!(
        page.generation(),
        generations.lock()[0],
        "the data was copied again into a new page"
    );
    drop(page);
    assert_eq!(engine.stats().retries(Caller::BufferedWrite), 1);
    assert_eq!(script.count(AopOp::CommitWrite, AopResult::Ok), 1);
    let mut expected = vec![0u8; 10];
    expected.extend_from_slice(&data);
    assert_eq!(read(&engine, INO, 0, 400).unwrap(), expected);
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn buffered_write_prepare_error_unlocks_and_trims_past_isize() {
    let (script, engine) = scripted_engine();
    engine.open(INO);
    script.push(ScriptRule::always(AopOp::PrepareWrite, error(Errno::Enospc)).on(INO, 2));
    let data = pattern(15, 3 * PAGE_SIZE);

    // Pages 0 and 1 are written; page 2 fails: a short write.
    assert_eq!(engine.write(INO, 0, &data).unwrap(), 2 * PAGE_SIZE);
    assert_eq!(engine.size(INO).unwrap(), 2 * PAGE_SIZE as u64);
    assert!(
        engine.mapping(INO).unwrap().find_get_page(2).is_none(),
        "the page instantiated past i_size is truncated away"
    );
    // The failing page alone: the error.
    assert_eq!(
        engine
            .write(INO, 2 * PAGE_SIZE as u64, &data[..10])
            .unwrap_err(),
        VfsError::Errno(Errno::Enospc)
    );
    assert_eq!(
        read(&engine, INO, 0, 3 * PAGE_SIZE).unwrap(),
        data[..2 * PAGE_SIZE]
    );
    assert_all_pages_baseline(&engine);
}

#[test]
fn buffered_write_commit_error_stops_with_the_error() {
    let (script, engine) = scripted_engine();
    engine.open(INO);
    script.push(ScriptRule::always(AopOp::CommitWrite, error(Errno::Eio)).on(INO, 1));
    let data = pattern(16, 2 * PAGE_SIZE);
    assert_eq!(engine.write(INO, 0, &data).unwrap(), PAGE_SIZE);
    assert_eq!(
        engine.write(INO, PAGE_SIZE as u64, &data[..5]).unwrap_err(),
        VfsError::Errno(Errno::Eio)
    );
    assert_eq!(
        engine.size(INO).unwrap(),
        PAGE_SIZE as u64,
        "a failed commit does not extend i_size"
    );
    assert_all_pages_baseline(&engine);
}

#[test]
fn buffered_write_livelock_is_reported_after_the_bound() {
    let scripted = aopsfs::fs::scripted::ScriptedAops::new();
    let engine = Engine::new(
        scripted.clone(),
        EngineConfig {
            ra_pages: 0,
            max_retries: 10,
            ..EngineConfig::default()
        },
    );
    engine.open(INO);
    scripted.push(ScriptRule::always(AopOp::CommitWrite, truncated()));
    let err = engine.write(INO, 0, b"x").unwrap_err();
    assert!(
        matches!(
            err,
            VfsError::Livelock {
                caller: Caller::BufferedWrite,
                retries: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_all_pages_baseline(&engine);
}

// ---- pageout (reclaim) ---------------------------------------------------------

#[test]
fn pageout_activates_on_writepage_activate() {
    on_native_and_wasm_ramfs(|ramfs| {
        let engine = engine_no_ra(ramfs.clone());
        engine.open(INO);
        engine.write(INO, 0, &pattern(17, PAGE_SIZE)).unwrap();
        let mapping = engine.mapping(INO).unwrap();
        let page = mapping.find_get_page(0).unwrap();
        assert!(page.trylock());

        assert_eq!(engine.pageout(&mapping, &page), Pageout::Activate);
        assert!(
            page.is_locked(),
            "writepage-activate returns with the page still locked"
        );
        assert!(page.is_dirty(), "and dirty again");
        assert!(
            !page.test(aopsfs::mm::page::PageFlag::Reclaim),
            "pageout clears PG_reclaim"
        );
        page.unlock();
        drop(page);
        assert_page_baseline(&engine, INO, 0);
        engine.stats().snapshot()
    });
}

#[test]
fn reclaim_activates_pages_whose_writepage_activates() {
    on_native_and_wasm_ramfs(|ramfs| {
        let engine = Engine::new(
            ramfs.clone(),
            EngineConfig {
                ra_pages: 0,
                ..EngineConfig::default()
            },
        );
        engine.open(INO);
        let data = pattern(18, 8 * PAGE_SIZE);
        engine.write(INO, 0, &data).unwrap();
        assert_eq!(
            engine.try_to_free_pages(8),
            0,
            "ramfs pages cannot be freed"
        );
        let activated = engine
            .stats()
            .aop_calls(AopOp::Writepage, ResultKind::WritepageActivate);
        assert!(
            activated >= 8 && activated.is_multiple_of(8),
            "every page went through pageout: {activated}"
        );
        let (inactive, active) = engine.lru_sizes();
        assert_eq!(
            (inactive, active),
            (0, 8),
            "every page moved to the active list"
        );
        assert_eq!(read(&engine, INO, 0, 8 * PAGE_SIZE).unwrap(), data);
        assert_all_pages_baseline(&engine);
        engine.stats().snapshot()
    });
}

#[test]
fn reclaim_writes_dirty_pages_and_frees_clean_unreferenced_ones() {
    let (store, aops) = native_memstore();
    let engine = engine_no_ra(aops);
    engine.open(INO);
    let data = pattern(19, 4 * PAGE_SIZE);
    engine.write(INO, 0, &data).unwrap();
    // Pin page 3 with an extra reference: reclaim must leave it alone.
    let pinned = engine.mapping(INO).unwrap().find_get_page(3).unwrap();
    let mut freed = 0;
    for _ in 0..4 {
        freed += engine.try_to_free_pages(4);
    }
    assert_eq!(freed, 3);
    assert_eq!(engine.nr_pages(), 1);
    assert_eq!(
        store.page(INO, 0),
        data[..PAGE_SIZE],
        "pageout wrote the dirty page before freeing it"
    );
    drop(pinned);
    assert_eq!(read(&engine, INO, 0, 4 * PAGE_SIZE).unwrap(), data);
}

#[test]
fn pageout_error_is_reported_by_the_next_fsync() {
    let (script, engine) = scripted_engine();
    engine.open(INO);
    engine.write(INO, 0, &pattern(20, PAGE_SIZE)).unwrap();
    script.push(ScriptRule::times(AopOp::Writepage, 1, error(Errno::Enospc)));
    let mapping = engine.mapping(INO).unwrap();
    let page = mapping.find_get_page(0).unwrap();
    assert!(page.trylock());
    assert_eq!(engine.pageout(&mapping, &page), Pageout::Success);
    assert!(!page.is_locked());
    drop(page);
    assert_eq!(
        engine.fsync(INO).unwrap_err(),
        VfsError::Errno(Errno::Enospc)
    );
    assert_eq!(engine.fsync(INO), Ok(()), "the error is reported once");
}

// ---- write_cache_pages ---------------------------------------------------------

#[test]
fn mapping_writeback_treats_activate_as_not_an_error() {
    on_native_and_wasm_ramfs(|ramfs| {
        let engine = engine_no_ra(ramfs.clone());
        engine.open(INO);
        engine.write(INO, 0, &pattern(21, 5 * PAGE_SIZE)).unwrap();

        assert_eq!(engine.writeback(INO, aopsfs::SyncMode::None), Ok(()));
        assert_eq!(
            engine
                .stats()
                .aop_calls(AopOp::Writepage, ResultKind::WritepageActivate),
            5,
            "went on with every page"
        );
        assert_eq!(engine.fsync(INO), Ok(()), "no error was recorded for fsync");
        for index in 0..5 {
            let page = engine.mapping(INO).unwrap().find_get_page(index).unwrap();
            assert!(page.is_dirty(), "the page stays dirty");
            drop(page);
            assert_page_baseline(&engine, INO, index);
        }
        engine.stats().snapshot()
    });
}

#[test]
fn mapping_writeback_records_errors_and_continues() {
    let (script, engine) = scripted_engine();
    let store_engine = engine.clone();
    store_engine.open(INO);
    let data = pattern(22, 3 * PAGE_SIZE);
    engine.write(INO, 0, &data).unwrap();
    script.push(ScriptRule::always(AopOp::Writepage, error(Errno::Eio)).on(INO, 1));

    assert_eq!(
        engine.writeback(INO, aopsfs::SyncMode::All).unwrap_err(),
        VfsError::Errno(Errno::Eio)
    );
    assert_eq!(
        script.count(AopOp::Writepage, AopResult::Ok),
        2,
        "pages 0 and 2 were written anyway"
    );
    assert_eq!(
        engine.fsync(INO).unwrap_err(),
        VfsError::Errno(Errno::Eio),
        "recorded for the next fsync"
    );
    assert_all_pages_baseline(&engine);
}

// ---- write_one_page --------------------------------------------------------------

#[test]
fn write_one_page_unlocks_on_activate() {
    on_native_and_wasm_ramfs(|ramfs| {
        let engine = engine_no_ra(ramfs.clone());
        engine.open(INO);
        engine.write(INO, 0, &pattern(23, 10)).unwrap();
        let mapping = engine.mapping(INO).unwrap();
        let page = engine.find_lock_page(&mapping, 0).unwrap();

        assert_eq!(
            engine.write_one_page(&mapping, &page, true),
            Ok(()),
            "activate is not an error and not a positive value"
        );
        assert!(!page.is_locked(), "the page lock must not leak");
        assert!(page.is_dirty());
        drop(page);
        assert_page_baseline(&engine, INO, 0);
        engine.stats().snapshot()
    });
}

#[test]
fn write_one_page_returns_writepage_errors() {
    let (script, engine) = scripted_engine();
    engine.open(INO);
    engine.write(INO, 0, &pattern(24, 10)).unwrap();
    script.push(ScriptRule::times(AopOp::Writepage, 1, error(Errno::Enospc)));
    assert_eq!(
        engine.write_page(INO, 0).unwrap_err(),
        VfsError::Errno(Errno::Enospc)
    );
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn write_one_page_writes_a_dirty_page() {
    let (store, aops) = native_memstore();
    let engine = engine_no_ra(aops);
    engine.open(INO);
    let data = pattern(25, PAGE_SIZE);
    engine.write(INO, 0, &data).unwrap();
    assert_eq!(engine.write_page(INO, 0), Ok(()));
    assert_eq!(store.page(INO, 0), data);
    assert!(
        !engine
            .mapping(INO)
            .unwrap()
            .find_get_page(0)
            .unwrap()
            .is_dirty()
    );
    assert_page_baseline(&engine, INO, 0);
}

// ---- read_cache_page -------------------------------------------------------------

#[test]
fn read_cache_page_retries() {
    let (script, engine) = scripted_engine();
    let data = pattern(26, PAGE_SIZE);
    write_sync_and_evict(&engine, INO, 0, &data);
    script.push(ScriptRule::times(AopOp::Readpage, 2, truncated()));

    let page = engine.read_cache_page(INO, 0).unwrap();
    assert!(page.is_uptodate(), "never hands back a not-uptodate page");
    assert!(!page.is_locked());
    assert_eq!(page.snapshot(), data);
    drop(page);
    assert_eq!(engine.stats().retries(Caller::ReadCachePage), 2);
    assert_page_baseline(&engine, INO, 0);
}

#[test]
fn read_cache_page_returns_errors() {
    let (script, engine) = scripted_engine();
    write_sync_and_evict(&engine, INO, 0, &pattern(27, 10));
    script.push(ScriptRule::always(AopOp::Readpage, error(Errno::Eio)));
    assert_eq!(
        engine.read_cache_page(INO, 0).unwrap_err(),
        VfsError::Errno(Errno::Eio)
    );
    assert_page_baseline(&engine, INO, 0);
}

// ---- the contract checker through the engine ----------------------------------------

/// Run `op` through the engine with the script returning `raw` (without the
/// callee's lock handling) and return the recorded violation.
fn violation_of(op: AopOp, raw: Action) -> (aopsfs::fs::contract::ContractViolation, Arc<Engine>) {
    let (script, engine) = scripted_engine();
    write_sync_and_evict(&engine, INO, 0, &pattern(28, 100));
    script.push(ScriptRule::times(op, 1, raw));
    let result = match op {
        AopOp::Readpage => read(&engine, INO, 0, 100).map(|_| ()),
        AopOp::PrepareWrite | AopOp::CommitWrite => engine.write(INO, 0, b"abc").map(|_| ()),
        AopOp::Writepage => {
            engine.write(INO, 0, b"abc").unwrap();
            engine.fsync(INO)
        }
        _ => unreachable!(),
    };
    let err = result.expect_err("a violation fails the operation");
    assert_eq!(err.errno(), Errno::Eio, "{err}");
    let violations = engine.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_all_pages_baseline(&engine);
    (violations[0].clone(), engine)
}

fn raw(result: AopResult) -> Action {
    Action::ReturnRaw(result)
}

#[test]
fn rule_readpage_ok_unlocks() {
    let (v, _) = violation_of(AopOp::Readpage, raw(AopResult::Ok));
    assert_eq!(
        (v.rule, v.op, v.ino, v.index),
        (Rule::ReadpageOkUnlocks, AopOp::Readpage, INO, 0)
    );
}

#[test]
fn rule_readpage_ok_uptodate() {
    let hook: aopsfs::fs::scripted::Hook = Arc::new(|_, _, page| {
        page.unlock();
        Ok(AopResult::Ok)
    });
    let (v, _) = violation_of(AopOp::Readpage, Action::Call(hook));
    assert_eq!(v.rule, Rule::ReadpageOkUptodate);
}

#[test]
fn rule_readpage_error_unlocks() {
    let (v, _) = violation_of(AopOp::Readpage, raw(AopResult::Error(Errno::Eio)));
    assert_eq!(v.rule, Rule::ReadpageErrorUnlocks);
}

#[test]
fn rule_readpage_error_not_uptodate() {
    let hook: aopsfs::fs::scripted::Hook = Arc::new(|_, _, page| {
        page.set_uptodate();
        page.unlock();
        Ok(AopResult::Error(Errno::Eio))
    });
    let (v, _) = violation_of(AopOp::Readpage, Action::Call(hook));
    assert_eq!(v.rule, Rule::ReadpageErrorNotUptodate);
}

#[test]
fn rule_truncated_page_unlocks() {
    let (v, _) = violation_of(AopOp::Readpage, raw(AopResult::TruncatedPage));
    assert_eq!(v.rule, Rule::TruncatedPageUnlocks);
    let (v, _) = violation_of(AopOp::PrepareWrite, raw(AopResult::TruncatedPage));
    assert_eq!(v.rule, Rule::TruncatedPageUnlocks);
}

#[test]
fn rule_result_allowed() {
    let (v, _) = violation_of(AopOp::Readpage, raw(AopResult::WritepageActivate));
    assert_eq!(v.rule, Rule::ResultAllowed);
    assert!(
        v.to_string().contains("readpage") && v.to_string().contains("writepage-activate"),
        "{v}"
    );
    let (v, _) = violation_of(AopOp::Writepage, Action::Return(AopResult::TruncatedPage));
    assert_eq!(v.rule, Rule::ResultAllowed);
}

#[test]
fn rule_prepare_write_keeps_lock() {
    let hook: aopsfs::fs::scripted::Hook = Arc::new(|_, _, page| {
        page.unlock();
        Ok(AopResult::Ok)
    });
    let (v, _) = violation_of(AopOp::PrepareWrite, Action::Call(hook));
    assert_eq!(v.rule, Rule::PrepareWriteKeepsLock);
}

#[test]
fn rule_commit_write_keeps_lock() {
    let hook: aopsfs::fs::scripted::Hook = Arc::new(|_, _, page| {
        page.unlock();
        Ok(AopResult::Ok)
    });
    let (v, _) = violation_of(AopOp::CommitWrite, Action::Call(hook));
    assert_eq!(v.rule, Rule::CommitWriteKeepsLock);
}

#[test]
fn rule_writepage_unlocks_and_failed_writepage_loses_no_data() {
    let (v, engine) = violation_of(AopOp::Writepage, raw(AopResult::Ok));
    assert_eq!(v.rule, Rule::WritepageUnlocks);
    let page = engine.mapping(INO).unwrap().find_get_page(0).unwrap();
    assert!(
        page.is_dirty(),
        "the page is dirty again so its data is not lost"
    );
    drop(page);
    assert_eq!(engine.fsync(INO), Ok(()), "the next writeback writes it");
    engine.drop_caches();
    assert_eq!(&read(&engine, INO, 0, 3).unwrap(), b"abc");
}

#[test]
fn rule_writepage_activate_keeps_lock() {
    let hook: aopsfs::fs::scripted::Hook = Arc::new(|_, _, page| {
        page.set_dirty();
        page.unlock();
        Ok(AopResult::WritepageActivate)
    });
    let (v, _) = violation_of(AopOp::Writepage, Action::Call(hook));
    assert_eq!(v.rule, Rule::WritepageActivateKeepsLock);
}

#[test]
fn rule_writepage_activate_redirties() {
    let (v, _) = violation_of(AopOp::Writepage, raw(AopResult::WritepageActivate));
    assert_eq!(v.rule, Rule::WritepageActivateRedirties);
}

#[test]
fn rule_plugin_fault() {
    let fault = aopsfs::AopFault {
        kind: aopsfs::FaultKind::Trap,
        message: "wasm trap: unreachable".into(),
    };
    let (v, _) = violation_of(AopOp::Readpage, Action::Fault(fault));
    assert_eq!(v.rule, Rule::PluginFault);
    assert!(v.to_string().contains("unreachable"), "{v}");
}

// ---- truncate_inode_pages ----------------------------------------------------------

#[test]
fn truncate_zeroes_the_partial_page_and_drops_pages_past_eof() {
    on_native_and_wasm_ramfs(|ramfs| {
        let engine = engine_no_ra(ramfs.clone());
        engine.open(INO);
        let data = pattern(29, 3 * PAGE_SIZE);
        engine.write(INO, 0, &data).unwrap();

        engine.truncate(INO, PAGE_SIZE as u64 + 100).unwrap();
        let mapping = engine.mapping(INO).unwrap();
        assert!(
            mapping.find_get_page(2).is_none(),
            "the page wholly past EOF is gone"
        );
        let partial = mapping.find_get_page(1).unwrap();
        assert!(
            partial.snapshot()[100..].iter().all(|&b| b == 0),
            "the partial page is zeroed past EOF"
        );
        drop(partial);
        engine.truncate(INO, 3 * PAGE_SIZE as u64).unwrap();
        let mut expected = data[..PAGE_SIZE + 100].to_vec();
        expected.resize(3 * PAGE_SIZE, 0);
        assert_eq!(read(&engine, INO, 0, 3 * PAGE_SIZE).unwrap(), expected);
        assert_all_pages_baseline(&engine);
        engine.stats().snapshot()
    });
}

#[test]
fn truncate_waits_for_a_locked_page_in_its_second_pass() {
    on_native_and_wasm_ramfs(|ramfs| {
        let engine = engine_no_ra(ramfs.clone());
        engine.open(INO);
        engine.write(INO, 0, &pattern(30, 2 * PAGE_SIZE)).unwrap();
        let mapping = engine.mapping(INO).unwrap();
        let held = engine.find_lock_page(&mapping, 1).unwrap();
        let truncater = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.truncate(INO, 0))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!truncater.is_finished(), "pass two sleeps on the page lock");
        assert!(
            mapping.find_get_page(0).is_none(),
            "pass one already removed the unlocked page"
        );
        held.unlock();
        truncater.join().unwrap().unwrap();
        assert!(
            !held.is_mapped(),
            "the page was removed once its lock was free"
        );
        assert_eq!(engine.nr_pages(), 0);
        engine.stats().snapshot()
    });
}

// ---- readahead ------------------------------------------------------------------------

#[test]
fn readahead_reads_a_window_on_a_miss_and_the_marker_starts_the_next() {
    let (store, aops) = native_memstore();
    let engine = Engine::new(
        aops,
        EngineConfig {
            ra_pages: 32,
            ..EngineConfig::default()
        },
    );
    write_sync_and_evict(&engine, INO, 0, &pattern(31, 64 * PAGE_SIZE));
    drop(store);
    let mapping = engine.mapping(INO).unwrap();

    read(&engine, INO, 0, PAGE_SIZE).unwrap();
    // First window for a one-page request: 4 pages, marker at page 1.
    assert_eq!(mapping.nrpages(), 4);
    assert!(
        mapping
            .find_get_page(1)
            .unwrap()
            .test(aopsfs::mm::page::PageFlag::Readahead)
    );
    read(&engine, INO, PAGE_SIZE as u64, PAGE_SIZE).unwrap();
    // Hitting the marker submitted the next window (8 pages from page 4).
    assert_eq!(mapping.nrpages(), 12);
    assert_eq!(engine.stats().snapshot().readahead_pages, 12);
}

#[test]
fn readahead_failure_is_not_fatal() {
    let (script, engine) = {
        let scripted = aopsfs::fs::scripted::ScriptedAops::new();
        let engine = Engine::new(
            scripted.clone(),
            EngineConfig {
                ra_pages: 32,
                ..EngineConfig::default()
            },
        );
        (scripted, engine)
    };
    let data = pattern(32, 8 * PAGE_SIZE);
    write_sync_and_evict(&engine, INO, 0, &data);
    // Readahead's readpage of page 2 fails once; the reader reads it later.
    script.push(ScriptRule::times(AopOp::Readpage, 1, error(Errno::Eio)).on(INO, 2));
    assert_eq!(read(&engine, INO, 0, 8 * PAGE_SIZE).unwrap(), data);
    assert_eq!(
        script.count(AopOp::Readpage, AopResult::Error(Errno::Eio)),
        1
    );
    assert_all_pages_baseline(&engine);
}
