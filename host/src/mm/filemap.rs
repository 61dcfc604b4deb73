//! Models mm/filemap.c: the read loop, single-page fill, the fault path, the
//! buffered write loop and read_cache_page, with the caller table of the
//! spec (aops-contract.md, "Callers and what each does") done exactly,
//! including the places where 2.6.16 itself got `truncated-page` wrong.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::engine::Engine;
use crate::errno::Errno;
use crate::error::VfsError;
use crate::fs::aops::{AopOp, AopResult};
use crate::mm::address_space::AddressSpace;
use crate::mm::page::{PAGE_SHIFT, PAGE_SIZE, PageFlag, PageRef};

const PAGE_MASK: u64 = PAGE_SIZE as u64 - 1;

/// The caller paths of the spec's table, by kernel name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    /// do_generic_mapping_read.
    ReadLoop,
    /// page_cache_read.
    PageCacheRead,
    /// filemap_nopage.
    Fault,
    /// generic_file_buffered_write.
    BufferedWrite,
    /// read_cache_page.
    ReadCachePage,
}

impl Caller {
    /// Every caller path, in report order.
    pub const ALL: [Caller; 5] = [
        Caller::ReadLoop,
        Caller::PageCacheRead,
        Caller::Fault,
        Caller::BufferedWrite,
        Caller::ReadCachePage,
    ];

    /// The kernel function this path models.
    pub fn name(self) -> &'static str {
        match self {
            Caller::ReadLoop => "do_generic_mapping_read",
            Caller::PageCacheRead => "page_cache_read",
            Caller::Fault => "filemap_nopage",
            Caller::BufferedWrite => "generic_file_buffered_write",
            Caller::ReadCachePage => "read_cache_page",
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a readpage step tells its loop.
enum Filled {
    /// The page is uptodate; go on.
    Uptodate,
    /// Drop the page and look it up again.
    Retry,
}

impl Engine {
    /// Read up to `buf.len()` bytes at `pos`; returns the bytes read (short
    /// at end of file). Models `generic_file_read`.
    pub fn read(&self, ino: u64, pos: u64, buf: &mut [u8]) -> Result<usize, VfsError> {
        let mapping = self.mapping(ino)?;
        self.do_generic_mapping_read(&mapping, pos, buf)
    }

    /// Models do_generic_mapping_read: the read loop.
    ///
    /// On an error it stops and returns the bytes read so far, or the error
    /// if nothing was read.
    pub fn do_generic_mapping_read(
        &self,
        mapping: &AddressSpace,
        pos: u64,
        buf: &mut [u8],
    ) -> Result<usize, VfsError> {
        let mut copied = 0usize;
        let mut index = pos >> PAGE_SHIFT;
        let mut offset = (pos & PAGE_MASK) as usize;
        let last_index = (pos + buf.len() as u64).div_ceil(PAGE_SIZE as u64);
        let mut budget = self.retry_budget(Caller::ReadLoop, mapping.ino());
        let mut error = None;
        while copied < buf.len() {
            budget.at(index);
            let Some(end_index) = mapping.end_index() else {
                break;
            };
            if index > end_index {
                break;
            }
            let (page, fresh) =
                match self.read_loop_find_page(mapping, index, last_index - index, &mut budget) {
                    Ok(Some(found)) => found,
                    Ok(None) => continue,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                };
            // page_ok: i_size may have changed while the page was read.
            // One snapshot of it serves both the end test and the byte
            // count: two reads could straddle a write or truncate and make
            // a length that no version of the file had.
            let isize = mapping.size();
            if isize == 0 {
                break;
            }
            let end_index = (isize - 1) >> PAGE_SHIFT;
            if index > end_index {
                break;
            }
            let mut nr = PAGE_SIZE;
            if index == end_index {
                nr = ((isize - 1) & PAGE_MASK) as usize + 1;
                if nr <= offset {
                    break;
                }
            }
            let nr = (nr - offset).min(buf.len() - copied);
            if !fresh {
                // The access that brought the page in was its first.
                self.mark_page_accessed(&page);
            }
            page.read_at(offset, &mut buf[copied..copied + nr]);
            drop(page);
            copied += nr;
            offset += nr;
            index += (offset >> PAGE_SHIFT) as u64;
            offset &= PAGE_MASK as usize;
        }
        match error {
            Some(e) if copied == 0 => Err(e),
            _ => Ok(copied),
        }
    }

    /// The find_page / page_not_up_to_date / no_cached_page part of the read
    /// loop: an uptodate page (and whether this call allocated it), or `None`
    /// to look up again.
    fn read_loop_find_page(
        &self,
        mapping: &AddressSpace,
        index: u64,
        req_pages: u64,
        budget: &mut crate::engine::RetryBudget<'_>,
    ) -> Result<Option<(PageRef, bool)>, VfsError> {
        let page = match mapping.find_get_page(index) {
            Some(page) => {
                if page.test(PageFlag::Readahead) {
                    self.page_cache_async_readahead(mapping, &page, index, req_pages);
                }
                page
            }
            None => {
                self.page_cache_sync_readahead(mapping, index, req_pages);
                match mapping.find_get_page(index) {
                    Some(page) => page,
                    None => return self.read_loop_no_cached_page(mapping, index, budget),
                }
            }
        };
        if page.is_uptodate() {
            self.count_hit();
            return Ok(Some((page, false)));
        }
        // page_not_up_to_date
        self.count_miss();
        page.lock();
        if !page.is_mapped() {
            // Truncated while we slept on the lock: look it up again.
            page.unlock();
            drop(page);
            budget.retry()?;
            return Ok(None);
        }
        if page.is_uptodate() {
            page.unlock();
            return Ok(Some((page, false)));
        }
        match self.read_loop_readpage(mapping, &page, budget)? {
            Filled::Uptodate => Ok(Some((page, false))),
            Filled::Retry => Ok(None),
        }
    }

    /// no_cached_page: allocate, insert (losing the race means look again),
    /// then readpage.
    fn read_loop_no_cached_page(
        &self,
        mapping: &AddressSpace,
        index: u64,
        budget: &mut crate::engine::RetryBudget<'_>,
    ) -> Result<Option<(PageRef, bool)>, VfsError> {
        self.count_miss();
        let page = self.page_cache_alloc(mapping, index);
        if self.add_to_page_cache_lru(mapping, &page).is_err() {
            return Ok(None);
        }
        match self.read_loop_readpage(mapping, &page, budget)? {
            Filled::Uptodate => Ok(Some((page, true))),
            Filled::Retry => Ok(None),
        }
    }

    /// The `readpage:` label of do_generic_mapping_read. The page is locked.
    fn read_loop_readpage(
        &self,
        mapping: &AddressSpace,
        page: &PageRef,
        budget: &mut crate::engine::RetryBudget<'_>,
    ) -> Result<Filled, VfsError> {
        match self.call_readpage(mapping, page)? {
            AopResult::TruncatedPage => {
                budget.retry()?;
                Ok(Filled::Retry)
            }
            AopResult::Error(e) => Err(e.into()),
            AopResult::WritepageActivate => {
                unreachable!("checker rejects writepage-activate from readpage")
            }
            AopResult::Ok => {
                if page.is_uptodate() {
                    return Ok(Filled::Uptodate);
                }
                page.lock();
                if page.is_uptodate() {
                    page.unlock();
                    return Ok(Filled::Uptodate);
                }
                if !page.is_mapped() {
                    // Truncated after the read completed: start over.
                    page.unlock();
                    budget.retry()?;
                    return Ok(Filled::Retry);
                }
                page.unlock();
                Err(Errno::Eio.into())
            }
        }
    }

    /// Models page_cache_read: read one page into the cache. Losing the
    /// insert race counts as success; retries while readpage returns
    /// `truncated-page`; always drops its own reference.
    pub fn page_cache_read(&self, mapping: &AddressSpace, index: u64) -> Result<(), VfsError> {
        let mut budget = self.retry_budget(Caller::PageCacheRead, mapping.ino());
        budget.at(index);
        loop {
            let page = self.page_cache_alloc(mapping, index);
            let result = match self.add_to_page_cache_lru(mapping, &page) {
                Ok(()) => self.call_readpage(mapping, &page)?,
                Err(_exists) => AopResult::Ok,
            };
            drop(page);
            match result {
                AopResult::TruncatedPage => budget.retry()?,
                AopResult::Error(e) => return Err(e.into()),
                _ => return Ok(()),
            }
        }
    }

    /// The fault path as a call: map page `pgoff` of the file and return its
    /// bytes (a whole page; bytes past i_size are zero). Models do_no_page
    /// around filemap_nopage: if a truncate ran while the page was being
    /// mapped (truncate_count moved), the page may be past the new end of
    /// file, so drop it and fault again.
    pub fn fault(&self, ino: u64, pgoff: u64) -> Result<Vec<u8>, VfsError> {
        let mapping = self.mapping(ino)?;
        let mut budget = self.retry_budget(Caller::Fault, ino);
        budget.at(pgoff);
        loop {
            let sequence = mapping.truncate_count();
            if sequence % 2 == 1 {
                // A truncate is running; it always finishes.
                std::thread::yield_now();
                continue;
            }
            let page = self.filemap_nopage(&mapping, pgoff)?;
            let mut data = page.snapshot();
            let size = mapping.size();
            if mapping.truncate_count() != sequence {
                drop(page);
                budget.retry()?;
                continue;
            }
            // What user space sees past EOF in the last page is zero.
            let page_start = pgoff << PAGE_SHIFT;
            if size < page_start + PAGE_SIZE as u64 {
                let valid = size.saturating_sub(page_start) as usize;
                data[valid..].fill(0);
            }
            return Ok(data);
        }
    }

    /// Models filemap_nopage: find or read the page for a fault, retrying on
    /// truncation, and on a read error clear PG_error and try readpage once
    /// more before failing with SIGBUS.
    pub fn filemap_nopage(&self, mapping: &AddressSpace, pgoff: u64) -> Result<PageRef, VfsError> {
        let mut budget = self.retry_budget(Caller::Fault, mapping.ino());
        budget.at(pgoff);
        'retry_all: loop {
            let size_pages = mapping.size().div_ceil(PAGE_SIZE as u64);
            if pgoff >= size_pages {
                return Err(VfsError::Sigbus {
                    ino: mapping.ino(),
                    pgoff,
                    reason: "fault past end of file",
                });
            }
            'retry_find: loop {
                let page = match mapping.find_get_page(pgoff) {
                    Some(page) => page,
                    None => {
                        self.page_cache_sync_readahead(mapping, pgoff, 1);
                        if mapping.find_get_page(pgoff).is_none() {
                            self.count_miss();
                            // no_cached_page
                            match self.page_cache_read(mapping, pgoff) {
                                Ok(()) => {}
                                Err(e) if e.errno() == Errno::Enomem => return Err(e),
                                Err(e) => return Err(sigbus_from(mapping, pgoff, e)),
                            }
                        }
                        continue 'retry_find;
                    }
                };
                if page.is_uptodate() {
                    self.count_hit();
                    self.mark_page_accessed(&page);
                    return Ok(page);
                }
                // page_not_uptodate: one readpage, then one more after
                // clearing the error bit.
                for attempt in 0..2 {
                    page.lock();
                    if !page.is_mapped() {
                        page.unlock();
                        drop(page);
                        budget.retry()?;
                        continue 'retry_all;
                    }
                    if page.is_uptodate() {
                        page.unlock();
                        self.mark_page_accessed(&page);
                        return Ok(page);
                    }
                    if attempt == 1 {
                        page.clear_error();
                    }
                    match self
                        .call_readpage(mapping, &page)
                        .map_err(|e| sigbus_from(mapping, pgoff, e))?
                    {
                        AopResult::Ok if page.is_uptodate() => {
                            self.mark_page_accessed(&page);
                            return Ok(page);
                        }
                        AopResult::TruncatedPage => {
                            drop(page);
                            budget.retry()?;
                            continue 'retry_find;
                        }
                        _ => {}
                    }
                }
                return Err(VfsError::Sigbus {
                    ino: mapping.ino(),
                    pgoff,
                    reason: "readpage failed twice",
                });
            }
        }
    }

    /// Models generic_file_buffered_write: copy `data` into the file at `pos`
    /// through prepare_write and commit_write, page by page. Returns the
    /// bytes written, or the error if none were.
    pub fn write(&self, ino: u64, pos: u64, data: &[u8]) -> Result<usize, VfsError> {
        let mapping = self.mapping(ino)?;
        let _i_mutex = mapping.lock_inode();
        // generic_write_checks: refuse to start past s_maxbytes, trim to it.
        let limit = self.config.max_file_size;
        if !data.is_empty() && pos >= limit {
            return Err(Errno::Efbig.into());
        }
        let len = data
            .len()
            .min((limit - pos).min(usize::MAX as u64) as usize);
        self.generic_file_buffered_write(&mapping, pos, &data[..len])
    }

    /// The write loop itself; the caller holds i_mutex.
    fn generic_file_buffered_write(
        &self,
        mapping: &Arc<AddressSpace>,
        pos: u64,
        data: &[u8],
    ) -> Result<usize, VfsError> {
        let mut written = 0usize;
        let mut budget = self.retry_budget(Caller::BufferedWrite, mapping.ino());
        let mut status = Ok(());
        while written < data.len() {
            let pos = pos + written as u64;
            let index = pos >> PAGE_SHIFT;
            let offset = (pos & PAGE_MASK) as usize;
            let bytes = (PAGE_SIZE - offset).min(data.len() - written);
            let (from, to) = (offset as u32, (offset + bytes) as u32);
            budget.at(index);
            let (page, fresh) = self.grab_cache_page(mapping, index);
            let prepared =
                self.call_page_aop(AopOp::PrepareWrite, mapping, &page, |aops, inode, page| {
                    aops.prepare_write(inode, page, from, to)
                });
            match prepared {
                Ok(AopResult::Ok) => {}
                Ok(AopResult::TruncatedPage) => {
                    // The callee unlocked it: do not unlock, just drop and
                    // start this page over.
                    drop(page);
                    if let Err(e) = budget.retry() {
                        status = Err(e);
                        break;
                    }
                    continue;
                }
                Ok(AopResult::Error(e)) => {
                    page.unlock();
                    drop(page);
                    status = Err(e.into());
                    self.trim_failed_write(mapping, pos + bytes as u64);
                    break;
                }
                Ok(AopResult::WritepageActivate) => {
                    unreachable!("checker rejects writepage-activate from prepare_write")
                }
                Err(e) => {
                    drop(page);
                    status = Err(e);
                    self.trim_failed_write(mapping, pos + bytes as u64);
                    break;
                }
            }
            // filemap_copy_from_user
            page.write_at(offset, &data[written..written + bytes]);
            let committed =
                self.call_page_aop(AopOp::CommitWrite, mapping, &page, |aops, inode, page| {
                    aops.commit_write(inode, page, from, to)
                });
            match committed {
                Ok(AopResult::Ok) => {}
                Ok(AopResult::TruncatedPage) => {
                    // The copy is lost with the page: copy again into the
                    // page a fresh lookup finds.
                    drop(page);
                    if let Err(e) = budget.retry() {
                        status = Err(e);
                        break;
                    }
                    continue;
                }
                Ok(AopResult::Error(e)) => {
                    page.unlock();
                    status = Err(e.into());
                    break;
                }
                Ok(AopResult::WritepageActivate) => {
                    unreachable!("checker rejects writepage-activate from commit_write")
                }
                Err(e) => {
                    status = Err(e);
                    break;
                }
            }
            // generic_commit_write's i_size update, with the page still
            // locked so readers see the data before the size.
            let end = pos + bytes as u64;
            if end > mapping.size() {
                mapping.set_size(end);
            }
            written += bytes;
            page.unlock();
            if !fresh {
                self.mark_page_accessed(&page);
            }
        }
        match status {
            Err(e) if written == 0 => Err(e),
            _ => Ok(written),
        }
    }

    /// After a failed prepare_write: blocks may have been instantiated past
    /// i_size, so truncate back to it (vmtruncate(inode, isize)).
    fn trim_failed_write(&self, mapping: &Arc<AddressSpace>, end: u64) {
        let isize = mapping.size();
        if end > isize {
            self.truncate_inode_pages(mapping, isize);
            if let Err(e) = self.call_truncate(mapping) {
                tracing::warn!("truncate after failed prepare_write: {e}");
            }
        }
    }

    /// Models read_cache_page (read_mapping_page): an uptodate page for
    /// internal use. Retries on `truncated-page` instead of handing back an
    /// unlocked, not-uptodate page as 2.6.16 did.
    pub fn read_cache_page(&self, ino: u64, index: u64) -> Result<PageRef, VfsError> {
        let mapping = self.mapping(ino)?;
        let mut budget = self.retry_budget(Caller::ReadCachePage, ino);
        budget.at(index);
        loop {
            let page = match mapping.find_get_page(index) {
                Some(page) => page,
                None => {
                    let page = self.page_cache_alloc(&mapping, index);
                    if self.add_to_page_cache_lru(&mapping, &page).is_err() {
                        continue;
                    }
                    self.count_miss();
                    match self.call_readpage(&mapping, &page)? {
                        AopResult::TruncatedPage => {
                            budget.retry()?;
                            continue;
                        }
                        AopResult::Error(e) => return Err(e.into()),
                        _ => page,
                    }
                }
            };
            if page.is_uptodate() {
                self.mark_page_accessed(&page);
                return Ok(page);
            }
            page.lock();
            if !page.is_mapped() {
                page.unlock();
                budget.retry()?;
                continue;
            }
            if page.is_uptodate() {
                page.unlock();
                self.mark_page_accessed(&page);
                return Ok(page);
            }
            match self.call_readpage(&mapping, &page)? {
                AopResult::TruncatedPage => budget.retry()?,
                AopResult::Error(e) => return Err(e.into()),
                _ if page.is_uptodate() => {
                    self.mark_page_accessed(&page);
                    return Ok(page);
                }
                // Not uptodate after ok: truncated meanwhile (the checker
                // rejects ok-but-not-uptodate on a mapped page); look again.
                _ => budget.retry()?,
            }
        }
    }

    fn count_hit(&self) {
        self.stats()
            .cache_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn count_miss(&self) {
        self.stats()
            .cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A read failure in the fault path becomes SIGBUS, keeping the cause.
fn sigbus_from(mapping: &AddressSpace, pgoff: u64, error: VfsError) -> VfsError {
    match error {
        // Violations and livelocks already say exactly what went wrong.
        VfsError::Contract(_) | VfsError::Livelock { .. } => error,
        _ => VfsError::Sigbus {
            ino: mapping.ino(),
            pgoff,
            reason: "readpage failed",
        },
    }
}
