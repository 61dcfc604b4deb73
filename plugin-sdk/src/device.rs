//! The host's block device (the WIT `block-device` import) as a
//! [`blockmap::BlockIo`].

use crate::bindings::aopsfs::vfs::block_device as host;
use crate::blockmap::{self, BlockIo};

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
        let data = host::read_block(block)?;
        if data.len() != buf.len() {
            crate::error!(
                "block-device read of block {block} returned {} bytes, not {}",
                data.len(),
                buf.len()
            );
            return Err(blockmap::Errno::Io);
        }
        buf.copy_from_slice(&data);
        Ok(())
    }

    fn write_block(&self, block: u64, data: &[u8]) -> Result<(), blockmap::Errno> {
        Ok(host::write_block(block, data)?)
    }

    fn flush(&self) -> Result<(), blockmap::Errno> {
        Ok(host::flush()?)
    }
}
