//! blockfs: persistent files on the host's block device.
//!
//! The layout and logic are the SDK's [`blockmap`] (superblock, free-block
//! bitmap, inode hash table, direct and indirect blocks; a fresh all-zero
//! image is formatted on first mount). This crate only connects the page
//! operations to it:
//!
//! * readpage / readpages: the stored bytes (zeros for holes and past
//!   i_size); no lock (see blockmap's concurrency notes). Two host
//!   crossings per page for a small file: `read-block-range` of the inode
//!   record, then `end-read-from-block`, which reads the data block straight
//!   into the page and ends the read;
//! * writepage: the bytes below i_size, allocating on first write, under the
//!   `blockfs.meta` cluster lock taken with trylock while the page is locked
//!   (if busy: set-writeback, unlock, then wait); a page wholly past i_size is
//!   being truncated and is just unlocked;
//! * prepare_write: fill a not-uptodate, partly overwritten page from the
//!   store; commit_write: uptodate + dirty (the SDK default);
//! * truncate: free blocks past i_size, zero the tail of the last block.
//!
//! Errors map to errno: ENOSPC (no free block or inode slot), EFBIG (past
//! the largest file), EIO (device error or corruption), EINVAL (unusable
//! device, at mount).
//!
//! Options: `flush-on-sync` (default off): flush the device after each
//! WB_SYNC_ALL writepage. The contract has no fsync operation, so a plugin
//! cannot tell where a sync ends; flushing per page makes an fsync of N
//! pages cost N device flushes, hence opt-in.
//!
//! [`blockmap`]: aopsfs_plugin_sdk::blockmap

use aopsfs_plugin_sdk::blockfs::{self, HostBlockMap};
use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct Blockfs {
    map: Option<HostBlockMap>,
    flush_on_sync: bool,
}

impl Blockfs {
    fn map(&self) -> &HostBlockMap {
        self.map.as_ref().expect("blockfs: called before mount")
    }
}

impl Aops for Blockfs {
    fn mount(&mut self, config: &Config) -> Result<(), String> {
        config.reject_unknown(&["flush-on-sync"])?;
        self.flush_on_sync = config.flag("flush-on-sync")?;
        let map =
            blockfs::open().map_err(|e| format!("blockfs: cannot mount the block device: {e}"))?;
        let g = map.geometry();
        aopsfs_plugin_sdk::debug!(
            "blockfs: {} blocks of {} bytes, {} inode slots, data from block {}",
            g.block_count,
            g.block_size,
            g.inode_slots,
            g.data_start
        );
        self.map = Some(map);
        Ok(())
    }

    fn features(&self) -> Features {
        Features::READPAGES | Features::TRUNCATE
    }

    fn readpage(&mut self, inode: Inode, page: &Page, index: u64) -> AopResult {
        blockfs::block_readpage(self.map(), inode, page, index)
    }

    fn readpages(&mut self, inode: Inode, pages: &[(&Page, u64)]) -> Vec<AopResult> {
        blockfs::block_readpages(self.map(), inode, pages)
    }

    fn writepage(
        &mut self,
        inode: Inode,
        page: &Page,
        index: u64,
        wbc: WritebackControl,
    ) -> AopResult {
        let result = blockfs::block_writepage(self.map(), inode, page, index);
        if self.flush_on_sync
            && wbc.sync_mode == SyncMode::All
            && result == AopResult::Ok
            && let Err(e) = self.map().flush()
        {
            aopsfs_plugin_sdk::warn!("blockfs: flush after writepage of ino {}: {e}", inode.ino);
            return AopResult::Error(e.errno().into());
        }
        result
    }

    fn prepare_write(
        &mut self,
        inode: Inode,
        page: &Page,
        index: u64,
        from: u32,
        to: u32,
    ) -> AopResult {
        blockfs::block_prepare_write(self.map(), inode, page, index, from, to)
    }

    fn truncate(&mut self, inode: Inode) -> Result<(), Errno> {
        blockfs::block_truncate(self.map(), inode)
    }
}

aopsfs_plugin_sdk::export_plugin!(Blockfs);
