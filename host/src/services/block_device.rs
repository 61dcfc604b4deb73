//! A block device backed by an image file on the host (the WIT
//! `block-device` interface, and the native blockfs's disk).
//!
//! Blocks are `BLOCK_SIZE` bytes, numbered from 0, read and written with
//! positioned I/O (`pread`/`pwrite` through [`FileExt`]), so concurrent
//! callers never share a file offset and need no lock. A new image is
//! created sparse: never-written blocks read as zeros and take no disk
//! space. `flush` is `fdatasync`.
//!
//! By default the image's blocks pass through the host's page cache, so a
//! block read soon after it was written costs a memory copy. After
//! [`BlockDevice::enable_direct_io`] every read and write goes to the disk
//! under the image (O_DIRECT, through block-aligned bounce buffers): the
//! costs of a real device, for benchmarks and realistic runs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::errno::Errno;

/// Bytes per block.
pub const BLOCK_SIZE: usize = 4096;

/// Why an image file could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum BlockDeviceError {
    /// The file system refused (missing directory, permissions, ...).
    #[error("block device image {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The image's size is not a whole number of blocks.
    #[error(
        "block device image {path} is {size} bytes, which is not a multiple of the block size {BLOCK_SIZE}"
    )]
    Misaligned { path: PathBuf, size: u64 },
    /// A size asked for at creation is zero or not a whole number of blocks.
    #[error(
        "cannot create block device image {path} of {size} bytes: the size must be a positive multiple of the block size {BLOCK_SIZE}"
    )]
    BadCreateSize { path: PathBuf, size: u64 },
    /// The image exists but is empty.
    #[error("block device image {path} is empty")]
    Empty { path: PathBuf },
    /// Another process (or another open of it here) holds the image.
    #[error(
        "block device image {path} is in use: another aopsfs has it open (two users of one image would overwrite each other's blocks)"
    )]
    InUse { path: PathBuf },
    /// The file system holding the image refused O_DIRECT.
    #[error("block device image {path}: cannot open it for direct I/O (O_DIRECT): {source}")]
    DirectIo { path: PathBuf, source: io::Error },
}

/// Counters of the I/O a device has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockDeviceStats {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
}

/// A block device over an image file.
#[derive(Debug)]
pub struct BlockDevice {
    file: File,
    /// The image opened with O_DIRECT, once direct I/O is enabled.
    direct: OnceLock<File>,
    path: PathBuf,
    blocks: u64,
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
}

impl BlockDevice {
    /// Open an existing image; its size must be a positive multiple of the
    /// block size.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<BlockDevice>, BlockDeviceError> {
        let path = path.as_ref();
        let io_err = |source| BlockDeviceError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        Self::from_file(file, path, size)
    }

    /// Open the image at `path`, creating it sparse with `size` bytes if it
    /// does not exist. An existing image keeps its own size.
    pub fn open_or_create(
        path: impl AsRef<Path>,
        size: u64,
    ) -> Result<Arc<BlockDevice>, BlockDeviceError> {
        let path = path.as_ref();
        if size == 0 || !size.is_multiple_of(BLOCK_SIZE as u64) {
            return Err(BlockDeviceError::BadCreateSize {
                path: path.to_owned(),
                size,
            });
        }
        let io_err = |source| BlockDeviceError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        let mut len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            // New (or empty) image: make it sparse at the requested size.
            file.set_len(size).map_err(io_err)?;
            len = size;
        }
        Self::from_file(file, path, len)
    }

    /// Create a new sparse image of `size` bytes, replacing any file there.
    pub fn create(path: impl AsRef<Path>, size: u64) -> Result<Arc<BlockDevice>, BlockDeviceError> {
        let path = path.as_ref();
        if size == 0 || !size.is_multiple_of(BLOCK_SIZE as u64) {
            return Err(BlockDeviceError::BadCreateSize {
                path: path.to_owned(),
                size,
            });
        }
        let io_err = |source| BlockDeviceError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io_err)?;
        file.set_len(size).map_err(io_err)?;
        Self::from_file(file, path, size)
    }

    /// Validate the size and wrap the file.
    fn from_file(file: File, path: &Path, size: u64) -> Result<Arc<BlockDevice>, BlockDeviceError> {
        if size == 0 {
            return Err(BlockDeviceError::Empty {
                path: path.to_owned(),
            });
        }
        if !size.is_multiple_of(BLOCK_SIZE as u64) {
            return Err(BlockDeviceError::Misaligned {
                path: path.to_owned(),
                size,
            });
        }
        Ok(Arc::new(BlockDevice {
            file,
            direct: OnceLock::new(),
            path: path.to_owned(),
            blocks: size / BLOCK_SIZE as u64,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }))
    }

    /// From now on read and write the image with O_DIRECT, bypassing the
    /// host's page cache. Writes made before are made durable first, so the
    /// disk holds them. Enabling it twice is harmless.
    pub fn enable_direct_io(&self) -> Result<(), BlockDeviceError> {
        let io_err = |source| BlockDeviceError::DirectIo {
            path: self.path.clone(),
            source,
        };
        if self.direct.get().is_some() {
            return Ok(());
        }
        self.file.sync_data().map_err(io_err)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&self.path)
            .map_err(io_err)?;
        // Some file systems accept the flag at open and refuse the I/O:
        // find out now, not at the first readpage.
        let mut probe = AlignedBuf::new(BLOCK_SIZE);
        file.read_exact_at(probe.as_mut_slice(), 0)
            .map_err(io_err)?;
        let _ = self.direct.set(file);
        Ok(())
    }

    /// Take the image for this device alone: an exclusive `flock` held
    /// until the device is dropped, so a second mount or run of the same
    /// image is refused instead of silently interleaving two block
    /// allocators.
    pub fn lock_exclusive(&self) -> Result<(), BlockDeviceError> {
        match self.file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(BlockDeviceError::InUse {
                path: self.path.clone(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(BlockDeviceError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Whether reads and writes bypass the host's page cache.
    pub fn is_direct_io(&self) -> bool {
        self.direct.get().is_some()
    }

    /// The image file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes per block.
    pub fn block_size(&self) -> u32 {
        BLOCK_SIZE as u32
    }

    /// Blocks on the device.
    pub fn block_count(&self) -> u64 {
        self.blocks
    }

    /// The device size in bytes.
    pub fn size(&self) -> u64 {
        self.blocks * BLOCK_SIZE as u64
    }

    /// Read block `block` into `out` (exactly one block). `EINVAL` for a
    /// block past the end or a wrong-sized buffer, `EIO` if the file fails.
    pub fn read_block(&self, block: u64, out: &mut [u8]) -> Result<(), Errno> {
        if block >= self.blocks || out.len() != BLOCK_SIZE {
            return Err(Errno::Einval);
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.pread(out, block * BLOCK_SIZE as u64)
            .map_err(|e| self.io_error("read", block, e))
    }

    /// Whether bytes `[offset, offset + len)` counted from the start of
    /// block `block` lie on the device (the range may run on into the
    /// following blocks).
    pub fn contains(&self, block: u64, offset: u64, len: u64) -> bool {
        block < self.blocks
            && (block * BLOCK_SIZE as u64)
                .checked_add(offset)
                .and_then(|start| start.checked_add(len))
                .is_some_and(|end| end <= self.size())
    }

    /// Read `out.len()` bytes starting `offset` bytes into block `block`,
    /// in one `pread` (a record within a block, or a page's run of
    /// consecutive blocks). `EINVAL` for a range not on the device (see
    /// [`BlockDevice::contains`]), `EIO` if the file fails.
    pub fn read_at(&self, block: u64, offset: usize, out: &mut [u8]) -> Result<(), Errno> {
        if !self.contains(block, offset as u64, out.len() as u64) {
            return Err(Errno::Einval);
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.pread(out, block * BLOCK_SIZE as u64 + offset as u64)
            .map_err(|e| self.io_error("read", block, e))
    }

    /// Read block `block` into a new buffer.
    pub fn read_block_vec(&self, block: u64) -> Result<Vec<u8>, Errno> {
        let mut out = vec![0; BLOCK_SIZE];
        self.read_block(block, &mut out)?;
        Ok(out)
    }

    /// Write `data` (exactly one block) to block `block`.
    pub fn write_block(&self, block: u64, data: &[u8]) -> Result<(), Errno> {
        if block >= self.blocks || data.len() != BLOCK_SIZE {
            return Err(Errno::Einval);
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.pwrite(data, block * BLOCK_SIZE as u64)
            .map_err(|e| self.io_error("write", block, e))
    }

    /// Fill `out` from byte `pos` of the image: one `pread`, or with direct
    /// I/O one of the aligned range around it into a bounce buffer.
    fn pread(&self, out: &mut [u8], pos: u64) -> io::Result<()> {
        let Some(direct) = self.direct.get() else {
            return self.file.read_exact_at(out, pos);
        };
        let start = pos - pos % BLOCK_SIZE as u64;
        let end = (pos + out.len() as u64).next_multiple_of(BLOCK_SIZE as u64);
        assert!(
            end <= self.size(),
            "callers check the range is on the device"
        );
        let mut bounce = AlignedBuf::new((end - start) as usize);
        direct.read_exact_at(bounce.as_mut_slice(), start)?;
        let skip = (pos - start) as usize;
        out.copy_from_slice(&bounce.as_mut_slice()[skip..skip + out.len()]);
        Ok(())
    }

    /// Write `data` (whole blocks) at byte `pos`: one `pwrite`, through an
    /// aligned bounce buffer with direct I/O.
    fn pwrite(&self, data: &[u8], pos: u64) -> io::Result<()> {
        let Some(direct) = self.direct.get() else {
            return self.file.write_all_at(data, pos);
        };
        assert!(
            pos.is_multiple_of(BLOCK_SIZE as u64) && data.len().is_multiple_of(BLOCK_SIZE),
            "direct writes are whole blocks"
        );
        let mut bounce = AlignedBuf::new(data.len());
        bounce.as_mut_slice().copy_from_slice(data);
        direct.write_all_at(bounce.as_mut_slice(), pos)
    }

    /// Make every completed write durable (fdatasync).
    pub fn flush(&self) -> Result<(), Errno> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.direct
            .get()
            .unwrap_or(&self.file)
            .sync_data()
            .map_err(|e| self.io_error("flush", 0, e))
    }

    /// The I/O done so far.
    pub fn stats(&self) -> BlockDeviceStats {
        BlockDeviceStats {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
        }
    }

    /// Log a failed file operation and turn it into EIO (ENOSPC if the host
    /// file system is full).
    fn io_error(&self, what: &str, block: u64, error: io::Error) -> Errno {
        tracing::warn!(image = %self.path.display(), block, "block device {what} failed: {error}");
        if error.raw_os_error() == Some(28) {
            Errno::Enospc
        } else {
            Errno::Eio
        }
    }
}

/// A zeroed buffer whose start is aligned to the block size, as O_DIRECT
/// requires: a block-aligned window into a slightly larger vector.
struct AlignedBuf {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        assert!(len > 0 && len.is_multiple_of(BLOCK_SIZE));
        let buf = vec![0u8; len + BLOCK_SIZE];
        let start = buf.as_ptr().align_offset(BLOCK_SIZE);
        assert!(start < BLOCK_SIZE, "a byte buffer can always be aligned");
        AlignedBuf { buf, start, len }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch image path in a directory removed when the guard drops.
    fn temp_image(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("aopsfs-bdev-{name}-"))
            .tempdir()
            .unwrap();
        let path = dir.path().join("disk.img");
        (dir, path)
    }

    #[test]
    fn new_image_is_sparse_and_reads_zeros() {
        let (_dir, path) = temp_image("sparse");
        let _ = std::fs::remove_file(&path);
        let dev = BlockDevice::open_or_create(&path, 64 * BLOCK_SIZE as u64).unwrap();
        assert_eq!(dev.block_count(), 64);
        assert_eq!(dev.read_block_vec(63).unwrap(), vec![0; BLOCK_SIZE]);
        assert_eq!(dev.read_block_vec(64), Err(Errno::Einval));
        let block = vec![0xab; BLOCK_SIZE];
        dev.write_block(5, &block).unwrap();
        dev.flush().unwrap();
        drop(dev);
        let dev = BlockDevice::open(&path).unwrap();
        assert_eq!(dev.read_block_vec(5).unwrap(), block);
        assert_eq!(dev.write_block(1, &[0; 10]), Err(Errno::Einval));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn read_at_reads_a_range_within_or_across_blocks_but_not_past_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let dev = BlockDevice::open_or_create(dir.path().join("disk.img"), 4 * BLOCK_SIZE as u64)
            .unwrap();
        let block: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
        dev.write_block(2, &block).unwrap();
        let mut record = [0u8; 64];
        dev.read_at(2, 128, &mut record).unwrap();
        assert_eq!(record[..], block[128..192]);
        // A range running into the next block, up to the end of the device.
        let mut run = vec![0xff; BLOCK_SIZE + 100];
        dev.read_at(2, 0, &mut run).unwrap();
        assert_eq!(run[..BLOCK_SIZE], block[..]);
        assert!(run[BLOCK_SIZE..].iter().all(|&b| b == 0));
        let mut tail = vec![0; BLOCK_SIZE];
        dev.read_at(3, 0, &mut tail).unwrap();
        assert!(dev.contains(3, 0, BLOCK_SIZE as u64));
        assert!(!dev.contains(3, 1, BLOCK_SIZE as u64));
        assert!(!dev.contains(4, 0, 0));
        assert!(!dev.contains(0, u64::MAX, 1));
        assert_eq!(dev.read_at(3, 1, &mut tail), Err(Errno::Einval));
        assert_eq!(dev.read_at(4, 0, &mut record), Err(Errno::Einval));
    }

    #[test]
    fn misaligned_image_is_a_clear_error() {
        let (_dir, path) = temp_image("misaligned");
        std::fs::write(&path, vec![0u8; 5000]).unwrap();
        let err = BlockDevice::open(&path).unwrap_err();
        assert!(
            matches!(err, BlockDeviceError::Misaligned { size: 5000, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("not a multiple of the block size 4096"),
            "{err}"
        );
        let err = BlockDevice::open_or_create(&path, 1000).unwrap_err();
        assert!(
            matches!(err, BlockDeviceError::BadCreateSize { .. }),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn direct_io_sees_buffered_writes_and_round_trips_unaligned_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let dev = BlockDevice::open_or_create(&path, 8 * BLOCK_SIZE as u64).unwrap();
        let before: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i % 253) as u8).collect();
        dev.write_block(1, &before).unwrap();
        assert!(!dev.is_direct_io());
        dev.enable_direct_io().unwrap();
        dev.enable_direct_io().unwrap();
        assert!(dev.is_direct_io());
        // The buffered write is on the disk the direct reads see.
        assert_eq!(dev.read_block_vec(1).unwrap(), before);
        let after: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i % 7) as u8).collect();
        dev.write_block(2, &after).unwrap();
        // A range starting inside block 1 and ending inside block 2: the
        // bounce buffer covers both and only the range comes back.
        let mut range = vec![0u8; 100];
        dev.read_at(1, BLOCK_SIZE - 40, &mut range).unwrap();
        assert_eq!(&range[..40], &before[BLOCK_SIZE - 40..]);
        assert_eq!(&range[40..], &after[..60]);
        let mut past = [0u8; 8];
        assert_eq!(
            dev.read_at(7, BLOCK_SIZE - 4, &mut past),
            Err(Errno::Einval)
        );
        dev.flush().unwrap();
        drop(dev);
        // Another, buffered, open of the image reads what was written
        // directly.
        let dev = BlockDevice::open(&path).unwrap();
        assert_eq!(dev.read_block_vec(2).unwrap(), after);
    }

    #[test]
    fn direct_io_that_cannot_open_the_image_is_an_error_naming_it() {
        // The image was removed after the device opened it: reopening it
        // with O_DIRECT fails, the device keeps working buffered.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let dev = BlockDevice::open_or_create(&path, 4 * BLOCK_SIZE as u64).unwrap();
        std::fs::remove_file(&path).unwrap();
        let text = dev.enable_direct_io().unwrap_err().to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("O_DIRECT"), "{text}");
        assert!(!dev.is_direct_io());
        assert_eq!(dev.read_block_vec(0).unwrap(), vec![0; BLOCK_SIZE]);
    }

    #[test]
    fn a_locked_image_is_refused_to_a_second_device_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let first = BlockDevice::open_or_create(&path, 4 * BLOCK_SIZE as u64).unwrap();
        first.lock_exclusive().unwrap();
        let second = BlockDevice::open(&path).unwrap();
        let text = second.lock_exclusive().unwrap_err().to_string();
        assert!(text.contains("in use"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        drop(first);
        second.lock_exclusive().unwrap();
    }
}
