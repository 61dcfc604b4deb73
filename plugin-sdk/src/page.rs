//! Helpers for the page handle: the usual bodies of operations, each in as
//! few host crossings as the contract allows.

use std::cell::Cell;

use crate::{AopResult, Errno, Page};

/// Bytes per page. The contract fixes it at 4096; the SDK checks the host
/// agrees on the first page each instance sees.
pub const PAGE_SIZE: u32 = crate::blockmap::PAGE_SIZE as u32;

/// How many bytes of page `index` lie below `size` (i_size): 0 for a page
/// wholly past end of file, [`PAGE_SIZE`] for one wholly inside.
pub fn bytes_below(size: u64, index: u64) -> u32 {
    crate::blockmap::valid_bytes(size, index) as u32
}

thread_local! {
    static PAGE_SIZE_CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// Check once per instance that the host's page size is [`PAGE_SIZE`]; a
/// different one would silently break every helper, so it traps.
pub(crate) fn check_page_size(page: &Page) {
    if !PAGE_SIZE_CHECKED.get() {
        let size = page.page_size();
        assert_eq!(
            size, PAGE_SIZE,
            "the host's page size is {size}, the aopsfs contract (and this SDK) say {PAGE_SIZE}"
        );
        PAGE_SIZE_CHECKED.set(true);
    }
}

/// Conveniences on the page handle. Each says how many host crossings it
/// makes (a crossing costs a few hundred nanoseconds).
pub trait PageExt {
    /// Byte offset of the page in its file (1 crossing: `index`).
    fn offset(&self) -> u64;
    /// How many bytes of this page lie below `size` (1 crossing: `index`).
    fn bytes_below(&self, size: u64) -> u32;
    /// A copy of the whole page (1 crossing).
    fn read_all(&self) -> Vec<u8>;
    /// Zero the whole page (1 crossing).
    fn zero_all(&self);
    /// Zero everything outside `[from, to)` (0 to 2 crossings).
    fn zero_outside(&self, from: u32, to: u32);
    /// End a successful readpage: `data` at the start of the page, zeros
    /// after it, uptodate, unlocked (1 crossing). Returns `Ok`.
    fn finish_read(&self, data: &[u8]) -> AopResult;
    /// End a failed readpage: error flag set, unlocked, not uptodate (2
    /// crossings). Returns `Error(errno)`.
    fn fail_read(&self, errno: Errno) -> AopResult;
    /// Decline a writepage: re-dirty and unlock (2 crossings). Returns `Ok`,
    /// as the contract asks of a writepage that chose not to write.
    fn redirty_and_unlock(&self) -> AopResult;
    /// Keep the page in memory: re-dirty it and leave it locked (1
    /// crossing). Returns `WritepageActivate` (writepage only).
    fn keep_dirty_locked(&self) -> AopResult;
    /// Unlock the page and ask the caller to look it up again (1 crossing).
    /// Returns `TruncatedPage` (readpage, prepare_write, commit_write only;
    /// make progress before using it, see [`crate::lock::lock_with_page`]).
    fn unlock_and_retry(&self) -> AopResult;
}

impl PageExt for Page {
    fn offset(&self) -> u64 {
        self.index() * u64::from(PAGE_SIZE)
    }

    fn bytes_below(&self, size: u64) -> u32 {
        bytes_below(size, self.index())
    }

    fn read_all(&self) -> Vec<u8> {
        self.read(0, PAGE_SIZE)
    }

    fn zero_all(&self) {
        self.zero(0, PAGE_SIZE);
    }

    fn zero_outside(&self, from: u32, to: u32) {
        let to = to.min(PAGE_SIZE);
        let from = from.min(to);
        if from > 0 {
            self.zero(0, from);
        }
        if to < PAGE_SIZE {
            self.zero(to, PAGE_SIZE - to);
        }
    }

    fn finish_read(&self, data: &[u8]) -> AopResult {
        self.end_read(data);
        AopResult::Ok
    }

    fn fail_read(&self, errno: Errno) -> AopResult {
        self.set_error();
        self.unlock();
        AopResult::Error(errno)
    }

    fn redirty_and_unlock(&self) -> AopResult {
        self.set_dirty();
        self.unlock();
        AopResult::Ok
    }

    fn keep_dirty_locked(&self) -> AopResult {
        self.set_dirty();
        AopResult::WritepageActivate
    }

    fn unlock_and_retry(&self) -> AopResult {
        self.unlock();
        AopResult::TruncatedPage
    }
}

/// readpage for a page with no stored data (simple_readpage): zero it, mark
/// it uptodate and unlock it, all in one `end-read` crossing.
pub fn zero_fill_readpage(page: &Page) -> AopResult {
    page.finish_read(&[])
}

/// writepage for a mapping with nowhere to write (ramfs; shmem without
/// swap): re-dirty the page, keep it locked, return `WritepageActivate` so
/// reclaim keeps it on the active list (1 crossing).
pub fn activate_writepage(page: &Page) -> AopResult {
    page.keep_dirty_locked()
}

/// writepage that declines to write now: re-dirty, unlock, `Ok` (2
/// crossings). Writeback will try again later.
pub fn decline_writepage(page: &Page) -> AopResult {
    page.redirty_and_unlock()
}

/// simple_prepare_write (fs/libfs.c): a page that is not uptodate and that
/// the write does not cover entirely gets the parts outside `[from, to)`
/// zeroed, since there is nothing to read them from. The page stays locked
/// (1 to 3 crossings).
pub fn simple_prepare_write(page: &Page, from: u32, to: u32) -> AopResult {
    if (from, to) != (0, PAGE_SIZE) && !page.is_uptodate() {
        page.zero_outside(from, to);
    }
    AopResult::Ok
}

/// simple_commit_write (fs/libfs.c): the copied bytes make the page
/// uptodate and dirty; the host extends i_size. The page stays locked (2
/// crossings).
pub fn simple_commit_write(page: &Page) -> AopResult {
    page.set_uptodate();
    page.set_dirty();
    AopResult::Ok
}
