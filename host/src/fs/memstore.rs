//! A native backing store in memory, with the block-filesystem behaviour of
//! fs/buffer.c (block_read_full_page, block_prepare_write,
//! block_write_full_page) but one "block" per page.
//!
//! The store is shared through an `Arc`, so it outlives an engine: dropping
//! the engine and building a new one over the same store is a remount. It is
//! the baseline the scriptable test aops wraps.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::errno::Errno;
use crate::fs::aops::{
    AddressSpaceOperations, AopFault, AopResult, AopReturn, Features, InodeInfo, WritebackControl,
};
use crate::mm::page::{PAGE_SHIFT, PAGE_SIZE, Page};

type Block = Box<[u8; PAGE_SIZE]>;

/// Pages of every file, by (ino, index). Absent pages read as zeros.
#[derive(Default)]
pub struct MemStore {
    blocks: Mutex<HashMap<(u64, u64), Block>>,
}

impl MemStore {
    /// A new, empty store.
    pub fn new() -> Arc<MemStore> {
        Arc::new(MemStore::default())
    }

    /// The stored bytes of a file's page (zeros if never written).
    pub fn page(&self, ino: u64, index: u64) -> Vec<u8> {
        self.blocks
            .lock()
            .get(&(ino, index))
            .map_or_else(|| vec![0; PAGE_SIZE], |b| b.to_vec())
    }

    /// How many pages are stored.
    pub fn len(&self) -> usize {
        self.blocks.lock().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy a stored page into `page`, zeroing bytes at or past `size`.
    fn fill(&self, inode: InodeInfo, page: &Page) {
        let valid = valid_bytes(inode.size, page.index());
        match self.blocks.lock().get(&(inode.ino, page.index())) {
            Some(block) => {
                page.write_at(0, &block[..valid]);
                page.zero_range(valid, PAGE_SIZE - valid);
            }
            None => page.zero_range(0, PAGE_SIZE),
        }
    }
}

/// How many bytes of page `index` lie below `size`.
fn valid_bytes(size: u64, index: u64) -> usize {
    size.saturating_sub(index << PAGE_SHIFT)
        .min(PAGE_SIZE as u64) as usize
}

/// Address-space operations over a [`MemStore`]: a well-behaved
/// persistent filesystem.
#[derive(Clone)]
pub struct MemStoreAops {
    store: Arc<MemStore>,
}

impl MemStoreAops {
    /// Operations over `store`.
    pub fn new(store: Arc<MemStore>) -> Self {
        MemStoreAops { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<MemStore> {
        &self.store
    }
}

impl AddressSpaceOperations for MemStoreAops {
    fn name(&self) -> &str {
        "memstore"
    }

    fn features(&self) -> Features {
        Features {
            truncate: true,
            ..Features::default()
        }
    }

    /// Models block_read_full_page: read the stored page, zero past EOF.
    fn readpage(&self, inode: InodeInfo, page: &Page) -> AopReturn {
        self.store.fill(inode, page);
        page.set_uptodate();
        page.unlock();
        Ok(AopResult::Ok)
    }

    /// Models block_write_full_page: store the page (a page wholly past EOF
    /// is being truncated: drop it; the tail past EOF is stored as zeros).
    fn writepage(&self, inode: InodeInfo, page: &Page, _wbc: WritebackControl) -> AopReturn {
        let valid = valid_bytes(inode.size, page.index());
        if valid > 0 {
            let mut block: Block = Box::new([0; PAGE_SIZE]);
            page.read_at(0, &mut block[..valid]);
            page.set_writeback();
            self.store
                .blocks
                .lock()
                .insert((inode.ino, page.index()), block);
        }
        page.unlock();
        page.end_writeback();
        Ok(AopResult::Ok)
    }

    /// Models block_prepare_write: a not-uptodate page gets the stored bytes
    /// the write will not cover.
    fn prepare_write(&self, inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn {
        if !page.is_uptodate() && (to - from) as usize != PAGE_SIZE {
            self.store.fill(inode, page);
        }
        Ok(AopResult::Ok)
    }

    /// Models generic_commit_write: uptodate and dirty.
    fn commit_write(&self, _inode: InodeInfo, page: &Page, _from: u32, _to: u32) -> AopReturn {
        page.set_uptodate();
        page.set_dirty();
        Ok(AopResult::Ok)
    }

    /// Free pages past the new size and zero the tail of the last one.
    fn truncate(&self, inode: InodeInfo) -> Result<Result<(), Errno>, AopFault> {
        let first_gone = inode.size.div_ceil(PAGE_SIZE as u64);
        let mut blocks = self.store.blocks.lock();
        blocks.retain(|&(ino, index), _| ino != inode.ino || index < first_gone);
        let partial = (inode.size % PAGE_SIZE as u64) as usize;
        if partial > 0
            && let Some(block) = blocks.get_mut(&(inode.ino, first_gone - 1))
        {
            block[partial..].fill(0);
        }
        Ok(Ok(()))
    }
}
