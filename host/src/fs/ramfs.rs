//! Models fs/ramfs with the simple_* helpers of fs/libfs.c, and tmpfs
//! without swap for writepage: pages live only in the page cache.
//!
//! readpage zero-fills (a page not in the cache was never written, or was
//! clean and so all zeros); writepage cannot write anywhere, so it re-dirties
//! the page and returns writepage-activate with the page still locked, as
//! shmem_writepage does when there is no swap.

use crate::fs::aops::{AddressSpaceOperations, AopResult, AopReturn, InodeInfo, WritebackControl};
use crate::mm::page::{PAGE_SIZE, Page};

/// The native ramfs address-space operations.
#[derive(Debug, Default)]
pub struct Ramfs;

impl AddressSpaceOperations for Ramfs {
    fn name(&self) -> &str {
        "ramfs"
    }

    /// Models simple_readpage: zero the page, mark it uptodate, unlock it.
    fn readpage(&self, _inode: InodeInfo, page: &Page) -> AopReturn {
        page.zero_range(0, PAGE_SIZE);
        page.set_uptodate();
        page.unlock();
        Ok(AopResult::Ok)
    }

    /// Models shmem_writepage with no swap: redirty, keep the page locked,
    /// return writepage-activate.
    fn writepage(&self, _inode: InodeInfo, page: &Page, _wbc: WritebackControl) -> AopReturn {
        page.set_dirty();
        Ok(AopResult::WritepageActivate)
    }

    /// Models simple_prepare_write: zero the parts of a not-uptodate page the
    /// write will not cover.
    fn prepare_write(&self, _inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn {
        if !page.is_uptodate() && (to - from) as usize != PAGE_SIZE {
            page.zero_range(0, from as usize);
            page.zero_range(to as usize, PAGE_SIZE - to as usize);
        }
        Ok(AopResult::Ok)
    }

    /// Models simple_commit_write: uptodate and dirty (the host extends
    /// i_size).
    fn commit_write(&self, _inode: InodeInfo, page: &Page, _from: u32, _to: u32) -> AopReturn {
        page.set_uptodate();
        page.set_dirty();
        Ok(AopResult::Ok)
    }
}
