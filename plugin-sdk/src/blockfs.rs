//! Page-level operations of a block-mapped filesystem: the glue between a
//! page handle and [`crate::blockmap`], shared by the `blockfs`
//! and `clusterfs` plugins (the kernel's `block_read_full_page`,
//! `block_write_full_page`, `block_prepare_write` and `vmtruncate`, with
//! blockmap as `get_block`).
//!
//! They work over any [`PageIo`] (a [`BlockIo`] that can end a readpage
//! from the device) and [`MetaLock`]; a plugin normally uses
//! [`HostBlockMap`] from [`open`], whose readpage moves the data block
//! straight from the device into the page (`end-read-from-block`).

use crate::blockmap::{self, BlockIo, BlockMap, FileReader, MetaLock, Wait, WriteOutcome};
use crate::device::{HostBlockDevice, PageIo};
use crate::lock::ClusterMetaLock;
use crate::page::{PAGE_SIZE, PageExt, bytes_below};
use crate::{AopResult, Errno, Inode, Page};

/// A blockmap over the host's block device, with its metadata guarded by
/// the cluster lock [`blockmap::META_LOCK`].
pub type HostBlockMap = BlockMap<HostBlockDevice, ClusterMetaLock>;

/// Mount the host's block device (formatting it if it is all zeros).
pub fn open() -> Result<HostBlockMap, blockmap::Error> {
    BlockMap::open(HostBlockDevice::new(), ClusterMetaLock::default())
}

fn report(op: &str, inode: Inode, index: Option<u64>, err: &blockmap::Error) -> Errno {
    match index {
        Some(index) => crate::warn!("{op} ino {} page {index}: {err}", inode.ino),
        None => crate::warn!("{op} ino {}: {err}", inode.ino),
    }
    err.into()
}

fn read_one<D: PageIo, L: MetaLock>(
    reader: &mut FileReader<'_, D, L>,
    inode: Inode,
    page: &Page,
    index: u64,
) -> AopResult {
    let fail = |e: blockmap::Error| page.fail_read(report("readpage", inode, Some(index), &e));
    let map = match reader.map_page(index, inode.size) {
        Ok(map) => map,
        Err(e) => return fail(e),
    };
    match map.run() {
        // The common case: one run of blocks, read straight into the page.
        Some((block, len)) => match reader.device().end_read_from_block(page, block, len as u32) {
            Ok(()) => AopResult::Ok,
            Err(errno) => fail(blockmap::Error::Device {
                op: "read",
                block,
                errno,
            }),
        },
        // Nothing stored: zeros.
        None if map.data_len() == 0 => page.finish_read(&[]),
        // Holes between blocks, or blocks out of order (small blocks only).
        None => {
            let mut buf = [0u8; PAGE_SIZE as usize];
            match reader.read_mapped(&map, &mut buf) {
                Ok(n) => page.finish_read(&buf[..n]),
                Err(e) => fail(e),
            }
        }
    }
}

/// readpage of page `index`: the stored data (zeros for holes and past
/// i_size), uptodate and unlocked. Takes no lock. Crossings with 4 KiB
/// blocks: one `read-block-range` for the inode record, one `read-block`
/// per indirect block on the path, and one `end-read-from-block` that reads
/// the data block into the page and ends the read (`end-read` alone for a
/// hole): two for a file of up to 9 pages.
pub fn block_readpage<D: PageIo, L: MetaLock>(
    map: &BlockMap<D, L>,
    inode: Inode,
    page: &Page,
    index: u64,
) -> AopResult {
    read_one(&mut map.reader(inode.ino), inode, page, index)
}

/// readpages: like [`block_readpage`] for each page, looking the inode and
/// its indirect blocks up once for the batch.
pub fn block_readpages<D: PageIo, L: MetaLock>(
    map: &BlockMap<D, L>,
    inode: Inode,
    pages: &[(&Page, u64)],
) -> Vec<AopResult> {
    let mut reader = map.reader(inode.ino);
    pages
        .iter()
        .map(|&(page, index)| read_one(&mut reader, inode, page, index))
        .collect()
}

/// writepage of page `index`: store its bytes below i_size, allocating blocks on
/// first write; a page wholly past i_size is being truncated and is just
/// unlocked.
///
/// The meta lock is first tried while the page is locked (the common case:
/// no crossing beyond the lock calls and the block writes). If it is busy,
/// the page is put under writeback and unlocked before waiting for the lock
/// (never block on a cluster lock while holding a page lock), and writeback
/// is ended once the data is stored. Errors (ENOSPC, EIO, ...) mark the page
/// in error and are returned for the host to record on the mapping.
pub fn block_writepage<D: BlockIo, L: MetaLock>(
    map: &BlockMap<D, L>,
    inode: Inode,
    page: &Page,
    index: u64,
) -> AopResult {
    let valid = bytes_below(inode.size, index);
    if valid == 0 {
        page.unlock();
        return AopResult::Ok;
    }
    let data = page.read(0, valid);
    match map.write_page(inode.ino, index, inode.size, &data, Wait::Try) {
        Ok(WriteOutcome::WouldBlock) => {
            page.set_writeback();
            page.unlock();
            let result = map.write_page(inode.ino, index, inode.size, &data, Wait::Block);
            page.end_writeback();
            match result {
                Ok(_) => AopResult::Ok,
                Err(e) => AopResult::Error(report("writepage", inode, Some(index), &e)),
            }
        }
        Ok(WriteOutcome::Written | WriteOutcome::PastEof) => {
            page.unlock();
            AopResult::Ok
        }
        Err(e) => {
            let errno = report("writepage", inode, Some(index), &e);
            page.set_error();
            page.unlock();
            AopResult::Error(errno)
        }
    }
}

/// prepare_write (block_prepare_write) of page `index`: a page that is not uptodate and
/// that the write does not cover entirely is filled from the store first
/// (zeros for holes and past i_size), so the bytes around `[from, to)`
/// survive. Blocks are allocated later, by writepage (delayed allocation),
/// so ENOSPC shows at writeback. The page stays locked.
pub fn block_prepare_write<D: BlockIo, L: MetaLock>(
    map: &BlockMap<D, L>,
    inode: Inode,
    page: &Page,
    index: u64,
    from: u32,
    to: u32,
) -> AopResult {
    if from == 0 && to >= PAGE_SIZE || page.is_uptodate() {
        return AopResult::Ok;
    }
    let mut buf = [0u8; PAGE_SIZE as usize];
    match map.read_page(inode.ino, index, inode.size, &mut buf) {
        Ok(0) => page.zero_outside(from, to),
        Ok(_) => page.write(0, &buf),
        Err(e) => return AopResult::Error(report("prepare_write", inode, Some(index), &e)),
    }
    AopResult::Ok
}

/// truncate: free the blocks past `inode.size` and zero the stored tail of
/// the partial last block. Blocks on the meta lock (no page is locked).
pub fn block_truncate<D: BlockIo, L: MetaLock>(
    map: &BlockMap<D, L>,
    inode: Inode,
) -> Result<(), Errno> {
    map.truncate(inode.ino, inode.size)
        .map_err(|e| report("truncate", inode, None, &e))
}
