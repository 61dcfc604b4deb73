//! The native twin of the `blockfs` plugin: the same on-disk layout (the
//! SDK's `blockmap`) over the same host block device, called directly
//! instead of through WebAssembly. It is the baseline the WASM plugin is
//! measured against, and a second implementation to compare it with.
//!
//! Readpage reads the page's blocks without a lock (the blockmap's readers
//! never need one) and completes the page in one step. Writepage stores the
//! page's bytes below i_size; when the metadata lock is busy it marks the
//! page under writeback, unlocks it, and then waits, as the plugin does
//! (the contract forbids blocking on that lock with the page locked).
//! Truncate frees the blocks past the new size.

use std::sync::Arc;

use aopsfs_plugin_sdk::blockmap::{
    self, BlockIo, BlockMap, FileReader, LocalLock, Wait, WriteOutcome,
};

use crate::errno::Errno;
use crate::fs::aops::{
    AddressSpaceOperations, AopFault, AopResult, AopReturn, Features, InodeInfo, SyncMode,
    WritebackControl,
};
use crate::mm::page::{PAGE_SIZE, Page};
use crate::services::BlockDevice;

/// The host's block device as the blockmap's `BlockIo`.
#[derive(Clone, Debug)]
pub struct DeviceIo(pub Arc<BlockDevice>);

/// A host errno as the blockmap's.
fn to_sdk(errno: Errno) -> blockmap::Errno {
    match errno {
        Errno::Eio | Errno::Enoent | Errno::Efault => blockmap::Errno::Io,
        Errno::Enospc => blockmap::Errno::NoSpc,
        Errno::Enomem => blockmap::Errno::NoMem,
        Errno::Eagain => blockmap::Errno::Again,
        Errno::Efbig => blockmap::Errno::FBig,
        Errno::Einval => blockmap::Errno::Inval,
        Errno::Erofs => blockmap::Errno::RoFs,
        Errno::Eintr => blockmap::Errno::Intr,
    }
}

/// The blockmap's errno as the host's.
fn from_sdk(errno: blockmap::Errno) -> Errno {
    match errno {
        blockmap::Errno::Io => Errno::Eio,
        blockmap::Errno::NoSpc => Errno::Enospc,
        blockmap::Errno::NoMem => Errno::Enomem,
        blockmap::Errno::Again => Errno::Eagain,
        blockmap::Errno::FBig => Errno::Efbig,
        blockmap::Errno::Inval => Errno::Einval,
        blockmap::Errno::RoFs => Errno::Erofs,
        blockmap::Errno::Intr => Errno::Eintr,
    }
}

impl BlockIo for DeviceIo {
    fn block_size(&self) -> u32 {
        self.0.block_size()
    }
    fn block_count(&self) -> u64 {
        self.0.block_count()
    }
    fn read_block(&self, block: u64, buf: &mut [u8]) -> Result<(), blockmap::Errno> {
        self.0.read_block(block, buf).map_err(to_sdk)
    }
    fn write_block(&self, block: u64, data: &[u8]) -> Result<(), blockmap::Errno> {
        self.0.write_block(block, data).map_err(to_sdk)
    }
    fn flush(&self) -> Result<(), blockmap::Errno> {
        self.0.flush().map_err(to_sdk)
    }
    /// One `pread` of just the range, as the plugin's `read-block-range`.
    fn read_range(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), blockmap::Errno> {
        self.0.read_at(block, offset, buf).map_err(to_sdk)
    }
}

/// Why the native blockfs could not mount.
#[derive(Debug, thiserror::Error)]
#[error("blockfs on {image}: {error}")]
pub struct BlockfsMountError {
    pub image: String,
    pub error: blockmap::Error,
}

/// The native blockfs address-space operations.
pub struct NativeBlockfs {
    map: BlockMap<DeviceIo, LocalLock>,
    /// Flush the device after each data-integrity (fsync) writepage, like
    /// the plugin's `flush-on-sync` option.
    flush_on_sync: bool,
}

impl NativeBlockfs {
    /// Mount the blockfs on `device`, formatting it if it is blank.
    pub fn mount(device: Arc<BlockDevice>) -> Result<NativeBlockfs, BlockfsMountError> {
        let image = device.path().display().to_string();
        let map = BlockMap::open(DeviceIo(device), LocalLock::new())
            .map_err(|error| BlockfsMountError { image, error })?;
        Ok(NativeBlockfs {
            map,
            flush_on_sync: false,
        })
    }

    /// Flush the device after each fsync writepage (off by default, as in
    /// the plugin: the contract has no "sync done" call, so this costs one
    /// device flush per page).
    pub fn with_flush_on_sync(mut self, flush_on_sync: bool) -> Self {
        self.flush_on_sync = flush_on_sync;
        self
    }

    /// The device.
    pub fn device(&self) -> &Arc<BlockDevice> {
        &self.map.device().0
    }

    /// Check the on-disk structures (fsck).
    pub fn check(&self) -> Result<blockmap::CheckReport, blockmap::Error> {
        self.map.check()
    }
}

/// Fill `page` from the device through `reader`: as the plugin does, a
/// page whose data is one run of blocks is read straight into the page in
/// one `pread` (the plugin's `end-read-from-block`); anything else through
/// a buffer.
fn fill(
    reader: &mut FileReader<'_, DeviceIo, LocalLock>,
    inode: InodeInfo,
    page: &Page,
) -> Result<(), Errno> {
    let sdk = |e: blockmap::Error| from_sdk(e.errno());
    let map = reader.map_page(page.index(), inode.size).map_err(sdk)?;
    if let Some((block, len)) = map.run() {
        let device = &reader.device().0;
        return page.with_data_mut(|data| {
            device.read_at(block, 0, &mut data[..len])?;
            data[len..].fill(0);
            Ok(())
        });
    }
    let mut buf = [0u8; PAGE_SIZE];
    let n = reader.read_mapped(&map, &mut buf).map_err(sdk)?;
    page.with_data_mut(|data| {
        data[..n].copy_from_slice(&buf[..n]);
        data[n..].fill(0);
    });
    Ok(())
}

/// End a readpage: uptodate on success, error flag on failure; unlocked.
fn complete_read(page: &Page, filled: Result<(), Errno>) -> AopResult {
    let result = match filled {
        Ok(()) => {
            page.set_uptodate();
            AopResult::Ok
        }
        Err(errno) => {
            page.set_error();
            AopResult::Error(errno)
        }
    };
    page.unlock();
    result
}

impl AddressSpaceOperations for NativeBlockfs {
    fn name(&self) -> &str {
        "blockfs"
    }

    fn features(&self) -> Features {
        Features {
            readpages: true,
            truncate: true,
            ..Features::default()
        }
    }

    /// Read the page's blocks (holes and bytes past i_size are zeros).
    fn readpage(&self, inode: InodeInfo, page: &Page) -> AopReturn {
        let mut reader = self.map.reader(inode.ino);
        Ok(complete_read(page, fill(&mut reader, inode, page)))
    }

    /// Read a readahead batch, looking the inode and its indirect blocks up
    /// once (as the plugin does).
    fn readpages(&self, inode: InodeInfo, pages: &[&Page]) -> Vec<AopReturn> {
        let mut reader = self.map.reader(inode.ino);
        pages
            .iter()
            .map(|page| Ok(complete_read(page, fill(&mut reader, inode, page))))
            .collect()
    }

    /// Store the page's bytes below i_size.
    /// With `flush_on_sync`, data-integrity writeback (fsync) also flushes
    /// the device.
    fn writepage(&self, inode: InodeInfo, page: &Page, wbc: WritebackControl) -> AopReturn {
        let data = page.snapshot();
        let (ino, index, size) = (inode.ino, page.index(), inode.size);
        let mut outcome = self.map.write_page(ino, index, size, &data, Wait::Try);
        if matches!(outcome, Ok(WriteOutcome::WouldBlock)) {
            // Never wait for the metadata lock holding the page lock.
            page.set_writeback();
            page.unlock();
            outcome = self.map.write_page(ino, index, size, &data, Wait::Block);
        } else {
            page.unlock();
        }
        if self.flush_on_sync
            && wbc.sync_mode == SyncMode::All
            && matches!(outcome, Ok(WriteOutcome::Written))
        {
            outcome = self.map.flush().map(|()| WriteOutcome::Written);
        }
        Ok(match outcome {
            Ok(_) => AopResult::Ok,
            Err(error) => {
                page.set_error();
                AopResult::Error(from_sdk(error.errno()))
            }
        })
    }

    /// Read the parts of a not-uptodate page the write will not cover.
    fn prepare_write(&self, inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn {
        if !page.is_uptodate()
            && (to - from) as usize != PAGE_SIZE
            && let Err(errno) = fill(&mut self.map.reader(inode.ino), inode, page)
        {
            return Ok(AopResult::Error(errno));
        }
        Ok(AopResult::Ok)
    }

    /// Uptodate and dirty; writeback stores it.
    fn commit_write(&self, _inode: InodeInfo, page: &Page, _from: u32, _to: u32) -> AopReturn {
        page.set_uptodate();
        page.set_dirty();
        Ok(AopResult::Ok)
    }

    /// Free the blocks past the new size.
    fn truncate(&self, inode: InodeInfo) -> Result<Result<(), Errno>, AopFault> {
        Ok(self
            .map
            .truncate(inode.ino, inode.size)
            .map_err(|e| from_sdk(e.errno())))
    }
}
