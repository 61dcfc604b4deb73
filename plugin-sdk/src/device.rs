//! The host's block device (the WIT `block-device` import) as a
//! [`blockmap::BlockIo`], and [`PageIo`]: ending a readpage straight from
//! the device.

use crate::bindings::aopsfs::vfs::block_device as host;
use crate::blockmap::{self, BlockIo};
use crate::page::PAGE_SIZE;
use crate::{Page, PageExt};

/// The block device the host attached to this plugin. Its geometry is read
/// once, when the value is made (it cannot change while mounted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostBlockDevice {
    block_size: u32,
    block_count: u64,
}

impl HostBlockDevice {
    /// Ask the host for its device's geometry (2 crossings).
    pub fn new() -> Self {
        HostBlockDevice {
            block_size: host::block_size(),
            block_count: host::block_count(),
        }
    }

    /// Whether the host attached a device at all.
    pub fn is_present(&self) -> bool {
        self.block_count > 0
    }
}

impl Default for HostBlockDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockIo for HostBlockDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read_block(&self, block: u64, buf: &mut [u8]) -> Result<(), blockmap::Errno> {
        copy_exact(block, &host::read_block(block)?, buf)
    }

    fn write_block(&self, block: u64, data: &[u8]) -> Result<(), blockmap::Errno> {
        Ok(host::write_block(block, data)?)
    }

    fn flush(&self) -> Result<(), blockmap::Errno> {
        Ok(host::flush()?)
    }

    /// One `read-block-range` crossing; only `buf.len()` bytes are copied
    /// into plugin memory.
    fn read_range(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), blockmap::Errno> {
        let data = host::read_block_range(block, offset as u32, buf.len() as u32)?;
        copy_exact(block, &data, buf)
    }
}

/// Copy what the host returned for `block` into `buf`, which it must fill
/// exactly: a host that returns another length is a broken host, EIO.
fn copy_exact(block: u64, data: &[u8], buf: &mut [u8]) -> Result<(), blockmap::Errno> {
    if data.len() != buf.len() {
        crate::error!(
            "block-device read of {} bytes of block {block} returned {}",
            buf.len(),
            data.len()
        );
        return Err(blockmap::Errno::Io);
    }
    buf.copy_from_slice(data);
    Ok(())
}

/// A [`BlockIo`] that can end a readpage with data read from the device.
/// The default reads the blocks into plugin memory and ends the read with
/// `end-read` (2 crossings per block plus one); [`HostBlockDevice`]
/// overrides it with the host's `end-read-from-block`, one crossing in all,
/// the bytes never entering the plugin.
pub trait PageIo: BlockIo {
    /// Fill the start of `page` with `len` bytes read from block `block` on
    /// (consecutive blocks if `len` is more than a block), zero the rest,
    /// mark it uptodate and unlock it. `len` <= [`PAGE_SIZE`], and the
    /// page must still be locked by this call. On an error the page is
    /// still locked and not uptodate: end the readpage as an error (e.g.
    /// [`PageExt::fail_read`]).
    fn end_read_from_block(
        &self,
        page: &Page,
        block: u64,
        len: u32,
    ) -> Result<(), blockmap::Errno> {
        let bs = self.block_size() as usize;
        let len = (len as usize).min(PAGE_SIZE as usize);
        let mut buf = vec![0; len.div_ceil(bs) * bs];
        for (i, chunk) in buf.chunks_mut(bs).enumerate() {
            self.read_block(block + i as u64, chunk)?;
        }
        page.finish_read(&buf[..len]);
        Ok(())
    }
}

impl PageIo for HostBlockDevice {
    fn end_read_from_block(
        &self,
        page: &Page,
        block: u64,
        len: u32,
    ) -> Result<(), blockmap::Errno> {
        Ok(host::end_read_from_block(page, block, len)?)
    }
}
