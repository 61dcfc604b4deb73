//! Models mm/truncate.c and vmtruncate: cutting a file's page cache back to
//! a new size, in two passes, zeroing the partial last page.

use std::sync::atomic::Ordering;

use crate::engine::Engine;
use crate::errno::Errno;
use crate::error::VfsError;
use crate::fs::aops::AopOp;
use crate::fs::contract::{ContractViolation, Rule};
use crate::mm::address_space::AddressSpace;
use crate::mm::page::{PAGE_SIZE, PageRef};
use crate::trace::TraceEvent;

const PAGEVEC_SIZE: usize = 14;

impl Engine {
    /// Models vmtruncate (do_truncate with i_mutex): set i_size, drop the
    /// cached pages past it, zero the partial last page, then tell the
    /// filesystem (i_op->truncate) so it frees storage.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<(), VfsError> {
        let mapping = self.mapping(ino)?;
        if size > self.config.max_file_size {
            return Err(Errno::Efbig.into());
        }
        let _i_mutex = mapping.lock_inode();
        let old = mapping.size();
        if size < old {
            // unmap_mapping_range's truncate_count bump, around the whole
            // shrink so a racing fault sees it whichever step it overlaps.
            mapping.bump_truncate_count();
            mapping.set_size(size);
            self.emit(TraceEvent::Truncate { ino, size });
            self.truncate_inode_pages(&mapping, size);
            mapping.bump_truncate_count();
        } else {
            mapping.set_size(size);
        }
        self.call_truncate(&mapping)
    }

    /// i_op->truncate through the engine's statistics; a fault is EIO.
    pub(crate) fn call_truncate(&self, mapping: &AddressSpace) -> Result<(), VfsError> {
        if !self.features.truncate {
            return Ok(());
        }
        let inode = mapping.info();
        let ret = self.aops.truncate(inode);
        let kind = match &ret {
            Ok(Ok(())) => Some(crate::fs::aops::ResultKind::Ok),
            Ok(Err(_)) => Some(crate::fs::aops::ResultKind::Error),
            Err(_) => None,
        };
        self.stats().count_aop(AopOp::Truncate, kind);
        match ret {
            Ok(Ok(())) => Ok(()),
            Ok(Err(errno)) => Err(errno.into()),
            Err(fault) => Err(self.record_violation(ContractViolation {
                op: AopOp::Truncate,
                ino: inode.ino,
                index: 0,
                returned: fault.kind.to_string(),
                rule: Rule::PluginFault,
                detail: fault.message,
            })),
        }
    }

    /// Models truncate_inode_pages: remove every page wholly past `lstart`
    /// and zero the tail of the partial page.
    ///
    /// Pass one skips pages that are locked or under writeback; pass two
    /// sleeps on each page lock and waits for writeback, and repeats until a
    /// lookup past the new end finds nothing.
    pub fn truncate_inode_pages(&self, mapping: &AddressSpace, lstart: u64) {
        let partial = (lstart & (PAGE_SIZE as u64 - 1)) as usize;
        let start = lstart.div_ceil(PAGE_SIZE as u64);

        // Pass one: the easy pages.
        mapping.for_each_page_from(start, |page| {
            if !page.trylock() {
                return;
            }
            if !page.is_writeback() {
                self.truncate_complete_page(mapping, &page);
            }
            page.unlock();
        });

        if partial > 0
            && let Some(page) = self.find_lock_page(mapping, start - 1)
        {
            page.wait_on_writeback();
            self.truncate_partial_page(mapping, &page, partial);
            page.unlock();
        }

        // Pass two: wait for everything else.
        loop {
            let pages = mapping.lookup_from(start, PAGEVEC_SIZE);
            if pages.is_empty() {
                break;
            }
            for page in pages {
                page.lock();
                page.wait_on_writeback();
                self.truncate_complete_page(mapping, &page);
                page.unlock();
            }
        }
        // No assertion that the range is now empty: as in the kernel, a
        // reader that sampled the old i_size (readahead, a fault) may add a
        // page past the new end as soon as the lookup above comes back
        // empty. Such a page is harmless: i_size is already the new one, so
        // its readpage fills it as a hole and the read loop returns none of
        // it; the next truncate or reclaim drops it.
    }

    /// Models truncate_complete_page: take a locked page out of the cache.
    /// The page leaves the tree before it loses PG_uptodate, so a reader
    /// never sees a mapped page that was uptodate turn not-uptodate.
    pub(crate) fn truncate_complete_page(&self, mapping: &AddressSpace, page: &PageRef) {
        if page.mapping_id() != mapping.id() {
            return;
        }
        if page.has_private() {
            self.do_invalidatepage(mapping, page, 0);
        }
        page.clear_dirty();
        if let Some(cache_ref) = mapping.remove_from_page_cache(page) {
            self.page_removed(cache_ref);
        }
        page.clear_uptodate();
    }

    /// Models truncate_partial_page: zero the page past the new end.
    fn truncate_partial_page(&self, mapping: &AddressSpace, page: &PageRef, partial: usize) {
        page.zero_range(partial, PAGE_SIZE - partial);
        if page.has_private() {
            self.do_invalidatepage(mapping, page, partial as u32);
        }
    }

    /// Models do_invalidatepage: ->invalidatepage, or the default (drop the
    /// private flag). The page is locked and stays locked.
    fn do_invalidatepage(&self, mapping: &AddressSpace, page: &PageRef, offset: u32) {
        if self.features.invalidatepage {
            self.call_locked_aop(AopOp::Invalidatepage, mapping, page, |aops, inode, page| {
                aops.invalidatepage(inode, page, offset)
            });
        }
        if offset == 0 {
            page.set_private(false);
        }
    }

    /// Models invalidate_mapping_pages (drop_caches): free every clean,
    /// unlocked, unreferenced page of every inode. Returns pages freed.
    pub fn drop_caches(&self) -> usize {
        let mut freed = 0;
        for ino in self.inos() {
            let Ok(mapping) = self.mapping(ino) else {
                continue;
            };
            mapping.for_each_page_from(0, |page| {
                if !page.trylock() {
                    return;
                }
                let releasable = !page.has_private() || self.try_to_release_page(&mapping, &page);
                // Expected references: the cache's and our lookup's.
                let removed = if releasable {
                    mapping.remove_mapping(&page, 2)
                } else {
                    None
                };
                if let Some(cache_ref) = removed {
                    self.page_removed(cache_ref);
                    page.clear_uptodate();
                    freed += 1;
                }
                page.unlock();
            });
        }
        self.stats()
            .reclaimed
            .fetch_add(freed as u64, Ordering::Relaxed);
        freed
    }
}
