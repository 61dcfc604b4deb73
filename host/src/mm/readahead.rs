//! Models mm/readahead.c, on-demand readahead (ondemand_readahead): a
//! per-file window {start, size, async_size}, a PG_readahead marker on the
//! page at start + size - async_size, synchronous readahead on a miss and
//! asynchronous readahead when a read hits the marker.
//!
//! Readahead is an optimisation: a page it fails to fill is read by readpage
//! on demand, and its failures are never reported to the reader.

use crate::engine::Engine;
use crate::fs::aops::AopResult;
use crate::mm::address_space::AddressSpace;
use crate::mm::page::{PageFlag, PageRef};

/// Models struct file_ra_state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileRaState {
    /// First page of the current window.
    pub start: u64,
    /// Pages in the current window.
    pub size: u64,
    /// Pages left in the window when the next one should start (the
    /// marker sits at start + size - async_size).
    pub async_size: u64,
    /// The last page index a read asked for.
    pub prev_index: Option<u64>,
}

/// Models get_init_ra_size: the request rounded up to a power of two, then
/// x4 when small, x2 when medium, capped at `max`.
pub fn get_init_ra_size(req: u64, max: u64) -> u64 {
    let newsize = req.max(1).next_power_of_two();
    let size = if newsize <= max / 32 {
        newsize * 4
    } else if newsize <= max / 4 {
        newsize * 2
    } else {
        max
    };
    size.min(max)
}

/// Models get_next_ra_size: x4 below max/16, x2 below max/2, then max.
pub fn get_next_ra_size(cur: u64, max: u64) -> u64 {
    let next = if cur < max / 16 {
        4 * cur
    } else if cur <= max / 2 {
        2 * cur
    } else {
        max
    };
    next.clamp(1, max)
}

/// Models ondemand_readahead's window decision: the window to submit, or
/// `None` for "just read what was asked" (a random read).
pub fn ondemand_window(
    ra: &mut FileRaState,
    max: u64,
    hit_marker: bool,
    index: u64,
    req: u64,
) -> Option<(u64, u64, u64)> {
    let req = req.max(1);
    let sequential_continuation =
        ra.size > 0 && (index == ra.start + ra.size - ra.async_size || index == ra.start + ra.size);
    let window = if index == 0 || req > max {
        initial_window(ra, max, index, req)
    } else if sequential_continuation || hit_marker {
        // Ramp up: the next window starts where the current one ends.
        ra.start += ra.size;
        if ra.start <= index {
            ra.start = index;
        }
        ra.size = get_next_ra_size(ra.size.max(1), max);
        ra.async_size = ra.size;
        (ra.start, ra.size, ra.async_size)
    } else if ra
        .prev_index
        .is_some_and(|prev| index.saturating_sub(prev) <= 1 && index >= prev)
    {
        initial_window(ra, max, index, req)
    } else {
        ra.prev_index = Some(index + req - 1);
        return None;
    };
    ra.prev_index = Some(index + req - 1);
    Some(window)
}

fn initial_window(ra: &mut FileRaState, max: u64, index: u64, req: u64) -> (u64, u64, u64) {
    ra.start = index;
    ra.size = get_init_ra_size(req, max);
    ra.async_size = if ra.size > req {
        ra.size - req
    } else {
        ra.size
    };
    (ra.start, ra.size, ra.async_size)
}

impl Engine {
    /// Models page_cache_sync_readahead: a read missed at `index`.
    pub(crate) fn page_cache_sync_readahead(&self, mapping: &AddressSpace, index: u64, req: u64) {
        self.ondemand_readahead(mapping, false, index, req);
    }

    /// Models page_cache_async_readahead: a read hit the PG_readahead marker.
    pub(crate) fn page_cache_async_readahead(
        &self,
        mapping: &AddressSpace,
        page: &PageRef,
        index: u64,
        req: u64,
    ) {
        if !page.test_and_clear(PageFlag::Readahead) || page.is_writeback() {
            return;
        }
        self.ondemand_readahead(mapping, true, index, req);
    }

    fn ondemand_readahead(&self, mapping: &AddressSpace, hit_marker: bool, index: u64, req: u64) {
        let max = self.config.ra_pages;
        if max == 0 {
            return;
        }
        let window = ondemand_window(&mut mapping.ra.lock(), max, hit_marker, index, req);
        match window {
            Some((start, size, async_size)) => {
                self.do_page_cache_readahead(mapping, start, size, async_size)
            }
            // A random read: read just the pages asked for.
            None => self.do_page_cache_readahead(mapping, index, req.min(max), 0),
        }
    }

    /// Models __do_page_cache_readahead + read_pages: allocate the missing
    /// pages of [start, start + nr) below EOF, mark the one at
    /// nr - lookahead, insert them and read them (readpages when the
    /// implementation has it). Results are not reported to the reader.
    fn do_page_cache_readahead(&self, mapping: &AddressSpace, start: u64, nr: u64, lookahead: u64) {
        let Some(end_index) = mapping.end_index() else {
            return;
        };
        let mut pages = Vec::new();
        for i in 0..nr {
            let index = start + i;
            if index > end_index {
                break;
            }
            if mapping.is_cached(index) {
                continue;
            }
            let page = self.page_cache_alloc(mapping, index);
            if lookahead > 0 && i == nr - lookahead {
                page.test_and_set(PageFlag::Readahead);
            }
            if self.add_to_page_cache_lru(mapping, &page).is_ok() {
                pages.push(page);
            }
        }
        if pages.is_empty() {
            return;
        }
        self.stats()
            .readahead_pages
            .fetch_add(pages.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if self.features.readpages && pages.len() > 1 {
            self.read_pages_batch(mapping, &pages);
        } else {
            for page in &pages {
                // Errors, truncated-page and violations are all non-fatal
                // here: the reader will readpage on demand.
                let _ = self.call_readpage(mapping, page);
            }
        }
    }

    /// ->readpages for a batch of locked pages, each checked on its own.
    fn read_pages_batch(&self, mapping: &AddressSpace, pages: &[PageRef]) {
        use crate::fs::aops::AopOp;
        use crate::fs::contract;
        let inode = mapping.info();
        let seqs: Vec<u64> = pages.iter().map(|p| p.lock_seq()).collect();
        let refs: Vec<&crate::mm::page::Page> = pages.iter().map(|p| &**p).collect();
        let mut results = self.aops.readpages(inode, &refs);
        // A plugin that returned the wrong number of results: treat the
        // missing ones as faults so every page is checked and unlocked.
        results.resize_with(pages.len(), || {
            Err(crate::fs::aops::AopFault {
                kind: crate::fs::aops::FaultKind::HandleMisuse,
                message: "readpages returned fewer results than pages".into(),
            })
        });
        for ((page, seq), ret) in pages.iter().zip(seqs).zip(results) {
            self.stats().count_aop(
                AopOp::Readpages,
                ret.as_ref().ok().map(|r: &AopResult| r.kind()),
            );
            if let Err(violation) = contract::check(AopOp::Readpages, inode, page, seq, ret) {
                contract::repair_after_violation(AopOp::Readpages, page, seq);
                self.record_violation(violation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_window_scales_small_requests_by_four_and_medium_by_two() {
        assert_eq!(get_init_ra_size(1, 32), 4);
        assert_eq!(get_init_ra_size(3, 32), 8);
        assert_eq!(get_init_ra_size(4, 32), 8);
        assert_eq!(get_init_ra_size(8, 32), 16);
        assert_eq!(get_init_ra_size(16, 32), 32);
        assert_eq!(get_init_ra_size(100, 32), 32);
    }

    #[test]
    fn next_window_grows_x4_then_x2_then_max() {
        assert_eq!(get_next_ra_size(1, 64), 4);
        assert_eq!(get_next_ra_size(4, 64), 8);
        assert_eq!(get_next_ra_size(16, 64), 32);
        assert_eq!(get_next_ra_size(32, 64), 64);
        assert_eq!(get_next_ra_size(64, 64), 64);
    }

    #[test]
    fn sequential_reads_ramp_the_window_and_random_reads_do_not() {
        let mut ra = FileRaState::default();
        let w = ondemand_window(&mut ra, 32, false, 0, 1).unwrap();
        assert_eq!(w, (0, 4, 3));
        // The reader hits the marker at start + size - async_size = 1.
        let w = ondemand_window(&mut ra, 32, true, 1, 1).unwrap();
        assert_eq!(w, (4, 8, 8));
        let mut ra = FileRaState {
            prev_index: Some(100),
            ..Default::default()
        };
        assert_eq!(ondemand_window(&mut ra, 32, false, 500, 2), None);
    }
}
