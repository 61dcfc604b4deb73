//! Models mm/page-writeback.c and the writeback half of mm/filemap.c:
//! writing back a mapping (write_cache_pages), one page (write_one_page),
//! fsync, and set_page_dirty.
//!
//! Both places where 2.6.16 mishandled AOP_WRITEPAGE_ACTIVATE are done
//! right: mapping writeback unlocks the page and treats it as not an error;
//! write_one_page unlocks the page instead of leaking the lock and the
//! positive value.

use crate::engine::Engine;
use crate::error::VfsError;
use crate::fs::aops::{AopResult, SyncMode, WritebackControl};
use crate::mm::address_space::AddressSpace;
use crate::mm::page::PageRef;

const PAGEVEC_SIZE: usize = 14;

impl Engine {
    /// Models write_cache_pages (mpage_writepages): write every dirty page
    /// of the mapping through ->writepage. Errors are recorded on the
    /// mapping for the next fsync and writeback goes on with the next page;
    /// returns the first error.
    pub fn write_cache_pages(
        &self,
        mapping: &AddressSpace,
        wbc: WritebackControl,
    ) -> Result<(), VfsError> {
        let mut first_error = None;
        let mut next = 0;
        loop {
            let pages = mapping.lookup_dirty_from(next, PAGEVEC_SIZE);
            let Some(last) = pages.last() else { break };
            next = last.index() + 1;
            for page in pages {
                if let Err(e) = self.writeback_one(mapping, &page, wbc) {
                    mapping.set_error(e.errno());
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One page of write_cache_pages.
    fn writeback_one(
        &self,
        mapping: &AddressSpace,
        page: &PageRef,
        wbc: WritebackControl,
    ) -> Result<(), VfsError> {
        page.lock();
        if page.mapping_id() != mapping.id() {
            // Truncated while we waited for the lock.
            page.unlock();
            return Ok(());
        }
        if wbc.sync_mode == SyncMode::All {
            page.wait_on_writeback();
        }
        if page.is_writeback() || !page.clear_dirty() {
            page.unlock();
            return Ok(());
        }
        match self.call_writepage(mapping, page, wbc)? {
            AopResult::Ok => Ok(()),
            AopResult::WritepageActivate => {
                // Kept dirty on purpose: not an error; the lock is ours to drop.
                page.unlock();
                Ok(())
            }
            AopResult::Error(e) => Err(e.into()),
            AopResult::TruncatedPage => {
                unreachable!("checker rejects truncated-page from writepage")
            }
        }
    }

    /// Models filemap_fdatawrite: start writeback of an inode's dirty pages.
    pub fn writeback(&self, ino: u64, sync_mode: SyncMode) -> Result<(), VfsError> {
        let mapping = self.mapping(ino)?;
        self.write_cache_pages(
            &mapping,
            WritebackControl {
                sync_mode,
                for_reclaim: false,
            },
        )
    }

    /// Models do_fsync (filemap_write_and_wait + filemap_fdatawait): write
    /// every dirty page, wait for it, and report the first writeback error
    /// since the last fsync (then clear it).
    pub fn fsync(&self, ino: u64) -> Result<(), VfsError> {
        let mapping = self.mapping(ino)?;
        let written = self.write_cache_pages(&mapping, Engine::wbc_sync_all());
        for page in mapping.lookup_from(0, usize::MAX) {
            page.wait_on_writeback();
        }
        match mapping.take_error() {
            Some(errno) => Err(errno.into()),
            None => written,
        }
    }

    /// Models sys_sync: fsync every inode; returns the first error.
    pub fn sync_all(&self) -> Result<(), VfsError> {
        let mut first = Ok(());
        for ino in self.inos() {
            if let Err(e) = self.fsync(ino)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Write one cached page synchronously if it is dirty (looks it up and
    /// locks it, then [`Engine::write_one_page`]).
    pub fn write_page(&self, ino: u64, index: u64) -> Result<(), VfsError> {
        let mapping = self.mapping(ino)?;
        match self.find_lock_page(&mapping, index) {
            Some(page) => self.write_one_page(&mapping, &page, true),
            None => Ok(()),
        }
    }

    /// Models write_one_page: the page is locked on entry and unlocked on
    /// return, whatever writepage says. writepage-activate is not an error
    /// and its lock does not leak.
    pub fn write_one_page(
        &self,
        mapping: &AddressSpace,
        page: &PageRef,
        wait: bool,
    ) -> Result<(), VfsError> {
        assert!(page.is_locked(), "write_one_page: page must be locked");
        if wait {
            page.wait_on_writeback();
        }
        if !page.clear_dirty() {
            page.unlock();
            return Ok(());
        }
        match self.call_writepage(mapping, page, Engine::wbc_sync_all())? {
            AopResult::Ok => {
                if wait {
                    page.wait_on_writeback();
                    if page.test_and_clear(crate::mm::page::PageFlag::Error) {
                        return Err(crate::errno::Errno::Eio.into());
                    }
                }
                Ok(())
            }
            AopResult::WritepageActivate => {
                page.unlock();
                Ok(())
            }
            AopResult::Error(e) => Err(e.into()),
            AopResult::TruncatedPage => {
                unreachable!("checker rejects truncated-page from writepage")
            }
        }
    }
}
