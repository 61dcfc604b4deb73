//! Models the active and inactive LRU lists (mm/swap.c, the LRU half of
//! mm/vmscan.c) and `mark_page_accessed`.
//!
//! Pages are appended at the head (the back of the deque) and scanned from
//! the tail (the front). A page moving between lists gets a new token; a
//! list entry whose token is stale is skipped and dropped when scanned, so
//! moving or deleting a page never has to search a list.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::mm::page::{Page, PageFlag, PageRef};

#[derive(Default)]
struct Lists {
    inactive: VecDeque<(u64, Arc<Page>)>,
    active: VecDeque<(u64, Arc<Page>)>,
    nr_inactive: usize,
    nr_active: usize,
}

/// The two LRU lists of the whole cache (one zone).
#[derive(Default)]
pub struct Lru {
    lists: Mutex<Lists>,
    next_token: AtomicU64,
}

impl Lru {
    /// Pages on the (inactive, active) lists.
    pub fn sizes(&self) -> (usize, usize) {
        let lists = self.lists.lock();
        (lists.nr_inactive, lists.nr_active)
    }

    /// Models lru_cache_add: put a new page at the head of the inactive list.
    pub fn lru_cache_add(&self, page: &PageRef) {
        let mut lists = self.lists.lock();
        assert!(
            !page.test(PageFlag::Lru),
            "lru_cache_add: page already on a list"
        );
        page.test_and_set(PageFlag::Lru);
        page.test_and_clear(PageFlag::Active);
        let token = self.new_token(page);
        lists.inactive.push_back((token, Arc::clone(page.arc())));
        lists.nr_inactive += 1;
    }

    /// Models activate_page: move an inactive page to the active list.
    /// Returns true if it moved.
    pub fn activate_page(&self, page: &Page, arc: &Arc<Page>) -> bool {
        let mut lists = self.lists.lock();
        if !page.test(PageFlag::Lru) || page.test(PageFlag::Active) {
            return false;
        }
        page.test_and_set(PageFlag::Active);
        let token = self.new_token(page);
        lists.nr_inactive -= 1;
        lists.nr_active += 1;
        lists.active.push_back((token, Arc::clone(arc)));
        Self::compact(&mut lists);
        true
    }

    /// Models del_page_from_lru: the page leaves the cache.
    pub fn del_page_from_lru(&self, page: &Page) {
        let mut lists = self.lists.lock();
        if page.test_and_clear(PageFlag::Lru) {
            if page.test_and_clear(PageFlag::Active) {
                lists.nr_active -= 1;
            } else {
                lists.nr_inactive -= 1;
            }
            self.new_token(page);
        }
        Self::compact(&mut lists);
    }

    /// Models isolate_lru_pages: take up to `nr` pages off the tail of a
    /// list, each with a reference, and clear PG_lru on them.
    pub fn isolate(&self, nr: usize, active: bool) -> Vec<PageRef> {
        let mut lists = self.lists.lock();
        let mut taken = Vec::with_capacity(nr);
        while taken.len() < nr {
            let entry = if active {
                lists.active.pop_front()
            } else {
                lists.inactive.pop_front()
            };
            let Some((token, page)) = entry else { break };
            let live = page.test(PageFlag::Lru)
                && page.test(PageFlag::Active) == active
                && page.lru_token.load(Ordering::Relaxed) == token;
            if !live {
                continue;
            }
            page.test_and_clear(PageFlag::Lru);
            if active {
                lists.nr_active -= 1;
            } else {
                lists.nr_inactive -= 1;
            }
            // A page with PG_lru set is in the page cache, so its count is at
            // least the cache's reference: get_page_unless_zero succeeds.
            taken.push(PageRef::get(&page));
        }
        taken
    }

    /// Models putback_lru_page: return an isolated page to the list its
    /// PG_active flag names, unless it has left the cache meanwhile.
    pub fn putback(&self, page: &PageRef) {
        let mut lists = self.lists.lock();
        if !page.is_mapped() || page.test(PageFlag::Lru) {
            return;
        }
        page.test_and_set(PageFlag::Lru);
        let token = self.new_token(page);
        if page.test(PageFlag::Active) {
            lists.nr_active += 1;
            lists.active.push_back((token, Arc::clone(page.arc())));
        } else {
            lists.nr_inactive += 1;
            lists.inactive.push_back((token, Arc::clone(page.arc())));
        }
    }

    fn new_token(&self, page: &Page) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        page.lru_token.store(token, Ordering::Relaxed);
        token
    }

    /// Drop stale entries once they outnumber the live ones.
    fn compact(lists: &mut Lists) {
        let retain = |list: &mut VecDeque<(u64, Arc<Page>)>, active: bool| {
            list.retain(|(token, p)| {
                p.test(PageFlag::Lru)
                    && p.test(PageFlag::Active) == active
                    && p.lru_token.load(Ordering::Relaxed) == *token
            });
        };
        if lists.inactive.len() > 2 * lists.nr_inactive + 64 {
            retain(&mut lists.inactive, false);
        }
        if lists.active.len() > 2 * lists.nr_active + 64 {
            retain(&mut lists.active, true);
        }
    }
}
