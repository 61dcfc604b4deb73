//! Models mm/vmscan.c: direct reclaim under the page cache memory limit.
//!
//! try_to_free_pages ages the active list (refill_inactive) and scans the
//! tail of the inactive list (shrink_page_list): referenced pages are
//! activated, dirty pages are written through pageout(), clean unreferenced
//! pages nobody else holds are freed.

use std::sync::atomic::Ordering;

use crate::engine::Engine;
use crate::fs::aops::{AopOp, AopResult, SyncMode, WritebackControl};
use crate::mm::address_space::AddressSpace;
use crate::mm::page::{PageFlag, PageRef};
use crate::trace::TraceEvent;

/// What pageout() decided (enum pageout_t).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pageout {
    /// Could not write it now; leave it on the inactive list.
    Keep,
    /// writepage said writepage-activate: move it to the active list.
    Activate,
    /// writepage started (or finished) the write; the page is unlocked.
    Success,
    /// The page was clean after all.
    Clean,
}

/// What shrink_page_list does with one page.
enum Verdict {
    /// Freed; the page is unlocked and out of the cache.
    Freed,
    /// Keep it where it was (page unlocked).
    Keep,
    /// Move it to the active list (page unlocked).
    Activate,
}

impl Engine {
    /// Models try_to_free_pages: reclaim up to `nr_to_reclaim` pages.
    /// Returns the pages freed.
    pub fn try_to_free_pages(&self, nr_to_reclaim: usize) -> usize {
        let mut freed = 0;
        for _priority in 0..4 {
            self.refill_inactive_list(nr_to_reclaim);
            let (inactive, _) = self.lru.sizes();
            let batch = self.lru.isolate(nr_to_reclaim.min(inactive.max(1)), false);
            if batch.is_empty() {
                break;
            }
            freed += self.shrink_page_list(batch);
            if freed >= nr_to_reclaim {
                break;
            }
        }
        freed
    }

    /// Models refill_inactive_zone (shrink_active_list): keep the inactive
    /// list at least as long as the active one by deactivating the oldest
    /// unreferenced active pages; referenced ones get another round.
    fn refill_inactive_list(&self, nr: usize) {
        let (inactive, active) = self.lru.sizes();
        if inactive >= active {
            return;
        }
        for page in self.lru.isolate(nr.min(active), true) {
            if !page.test_and_clear(PageFlag::Referenced) {
                page.test_and_clear(PageFlag::Active);
            }
            self.lru.putback(&page);
        }
    }

    /// Models shrink_page_list over pages isolated from the inactive list.
    fn shrink_page_list(&self, pages: Vec<PageRef>) -> usize {
        let mut freed = 0;
        for page in pages {
            match self.shrink_one(&page) {
                Verdict::Freed => {
                    freed += 1;
                    self.stats().reclaimed.fetch_add(1, Ordering::Relaxed);
                    self.emit(TraceEvent::Reclaim {
                        ino: page.ino(),
                        index: page.index(),
                    });
                }
                Verdict::Keep => self.lru.putback(&page),
                Verdict::Activate => {
                    page.test_and_set(PageFlag::Active);
                    self.stats().activations.fetch_add(1, Ordering::Relaxed);
                    self.emit(TraceEvent::Activate {
                        ino: page.ino(),
                        index: page.index(),
                    });
                    self.lru.putback(&page);
                }
            }
        }
        freed
    }

    /// One page of shrink_page_list; returns with the page unlocked.
    fn shrink_one(&self, page: &PageRef) -> Verdict {
        if !page.trylock() {
            return Verdict::Keep;
        }
        let Some(mapping) = self.mapping_of(page) else {
            page.unlock();
            return Verdict::Keep;
        };
        if page.is_writeback() {
            page.unlock();
            return Verdict::Keep;
        }
        if page.test_and_clear(PageFlag::Referenced) {
            page.unlock();
            return Verdict::Activate;
        }
        if page.is_dirty() {
            match self.pageout(&mapping, page) {
                Pageout::Keep => {
                    page.unlock();
                    return Verdict::Keep;
                }
                Pageout::Activate => {
                    // pageout cleared PG_reclaim; the caller unlocks.
                    page.unlock();
                    return Verdict::Activate;
                }
                Pageout::Success => {
                    // writepage unlocked it; see whether it is clean now.
                    if !page.trylock() {
                        return Verdict::Keep;
                    }
                    if page.is_dirty() || page.is_writeback() || !page.is_mapped() {
                        page.unlock();
                        return Verdict::Keep;
                    }
                }
                Pageout::Clean => {}
            }
        }
        if page.has_private() && !self.try_to_release_page(&mapping, page) {
            page.unlock();
            return Verdict::Activate;
        }
        // The cache's reference and ours: nobody else may hold one.
        let verdict = match mapping.remove_mapping(page, 2) {
            Some(cache_ref) => {
                self.page_removed(cache_ref);
                page.clear_uptodate();
                Verdict::Freed
            }
            None => Verdict::Keep,
        };
        page.unlock();
        verdict
    }

    /// Models pageout: write a dirty, locked page for reclaim.
    ///
    /// On writepage-activate the page is still locked: clear PG_reclaim and
    /// report Activate; the caller unlocks.
    pub fn pageout(&self, mapping: &AddressSpace, page: &PageRef) -> Pageout {
        // is_page_cache_freeable: only the cache and the scanner hold it.
        if page.count() != 2 {
            return Pageout::Keep;
        }
        if !page.clear_dirty() {
            return Pageout::Clean;
        }
        page.test_and_set(PageFlag::Reclaim);
        let wbc = WritebackControl {
            sync_mode: SyncMode::None,
            for_reclaim: true,
        };
        match self.call_writepage(mapping, page, wbc) {
            Ok(AopResult::WritepageActivate) => {
                page.test_and_clear(PageFlag::Reclaim);
                Pageout::Activate
            }
            Ok(AopResult::Ok) => {
                if !page.is_writeback() {
                    page.test_and_clear(PageFlag::Reclaim);
                }
                Pageout::Success
            }
            Ok(AopResult::Error(e)) => {
                // handle_write_error: remember it for fsync.
                mapping.set_error(e);
                page.test_and_clear(PageFlag::Reclaim);
                Pageout::Success
            }
            Ok(AopResult::TruncatedPage) => {
                unreachable!("checker rejects truncated-page from writepage")
            }
            Err(e) => {
                // The checker unlocked the page and re-dirtied it.
                mapping.set_error(e.errno());
                page.test_and_clear(PageFlag::Reclaim);
                Pageout::Success
            }
        }
    }

    /// Models try_to_release_page: ->releasepage for a page with private
    /// state (default: yes). The page is locked and stays locked.
    pub(crate) fn try_to_release_page(&self, mapping: &AddressSpace, page: &PageRef) -> bool {
        let released = !self.features.releasepage
            || self
                .call_locked_aop(AopOp::Releasepage, mapping, page, |aops, inode, page| {
                    aops.releasepage(inode, page)
                })
                .unwrap_or(false);
        if released {
            page.set_private(false);
        }
        released
    }

    /// The mapping a page belongs to now, if any.
    fn mapping_of(&self, page: &PageRef) -> Option<std::sync::Arc<AddressSpace>> {
        let mapping = self.mapping(page.ino()).ok()?;
        (page.mapping_id() == mapping.id()).then_some(mapping)
    }
}
