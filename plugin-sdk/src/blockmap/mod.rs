//! blockmap: the on-disk layout and logic of blockfs, independent of WASM.
//!
//! The same code serves the `blockfs` and `clusterfs` plugins (over the
//! host's `block-device` and `cluster-lock` imports) and native Rust users
//! such as a benchmark twin in the host (over any [`BlockIo`] and
//! [`MetaLock`]). It maps `(inode, page index)` to device blocks, allocates
//! blocks on first write, frees them on truncate, and formats a fresh
//! (all-zero) device on first open.
//!
//! # On-disk layout (format version 1, little-endian)
//!
//! ```text
//! block 0                  superblock
//! blocks 1 ..              free-block bitmap: bit b (bit b%8 of byte b/8) set
//!                          = block b in use; metadata blocks and the bits past
//!                          the last block are always set
//! next itable_blocks       inode hash table: 64-byte records, open addressing
//!                          with linear probing from hash(ino)
//! data_start ..            data blocks and indirect blocks
//! ```
//!
//! Superblock (block 0):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `"AOPSBMAP"` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | block size (a power of two, 512 ..= 4096) |
//! | 16 | 8 | block count (≤ the device's, ≤ `u32::MAX`) |
//! | 24 | 8 | bitmap start (1) |
//! | 32 | 8 | bitmap blocks |
//! | 40 | 8 | inode table start |
//! | 48 | 8 | inode table blocks |
//! | 56 | 8 | inode slots |
//! | 64 | 8 | data start |
//! | 72 | 4 | page size (4096) |
//! | 76 | 4 | feature flags (0) |
//! | 80 | 4 | CRC-32C of bytes 0..80 |
//!
//! The geometry is a pure function of the block size and block count (see
//! [`Geometry::for_device`]: the inode table has one slot per four blocks, at
//! least 64), so opening recomputes it and rejects a superblock that
//! disagrees. The superblock never changes after mkfs, which is why an
//! instance may keep it in memory.
//!
//! Inode record (64 bytes; an all-zero record is an empty slot):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | inode number |
//! | 8 | 4 | flags (1 = in use) |
//! | 12 | 36 | 9 direct block pointers (u32) |
//! | 48 | 4 | single indirect block |
//! | 52 | 4 | double indirect block |
//! | 56 | 4 | triple indirect block |
//! | 60 | 4 | CRC-32C of bytes 0..60 |
//!
//! An indirect block is an array of `block_size / 4` u32 pointers. Pointer 0
//! is a hole (block 0 is the superblock, never data); any other pointer must
//! lie in the data area or the filesystem is reported corrupt. File block
//! `f` covers bytes `f * block_size ..`; a page is `4096 / block_size`
//! consecutive file blocks. With 4 KiB blocks a file maps
//! `9 + 1024 + 1024² + 1024³` blocks (just over 4 TiB); past that a write
//! fails with EFBIG. Records are never moved and slots never become empty
//! again, which is what lets readers probe without a lock; a record whose
//! file has no blocks left (truncated to zero) is taken over by the next
//! new inode whose probe sequence passes it.
//!
//! # Concurrency: instances, locks and what readers may assume
//!
//! Several instances (each with its own memory) share one device. All
//! metadata changes (allocation, record creation, truncate, mkfs) happen
//! under the exclusive [`META_LOCK`] and go through a per-operation buffer
//! flushed in this order: bitmap first (a crash can leak a block, never hand
//! one out twice), then newly allocated blocks (children before parents),
//! then the existing blocks that point to them. Truncate writes the cleared
//! pointers before it frees the blocks in the bitmap.
//!
//! Readers ([`BlockMap::read_page`]) take no lock: every pointer they can
//! follow points to fully written content, records never move, and the page
//! lock the caller holds keeps the page's own blocks from being freed
//! (truncate drops a page from the cache, which waits for its lock, before it
//! frees the page's blocks). This relies on a block write being atomic with
//! respect to a concurrent read of the same block at least per aligned 4-byte
//! pointer; records carry a checksum, and a record that fails it is re-read a
//! few times before it is called corrupt.
//!
//! Overwriting an already mapped block ([`BlockMap::write_page`]) takes the
//! lock shared, only to exclude truncate's read-modify-write of the partial
//! last block. Nothing read from the device is kept past the call that read
//! it, except the immutable superblock and an allocation hint (which is
//! validated against the bitmap like any guess).
//!
//! The meta lock is a leaf: its holders never wait for a page lock. Callers
//! holding a page lock should still take it with [`Wait::Try`] first (the
//! contract says never to block in a cluster lock while holding a page); see
//! the guest helpers in `crate::blockfs` for the set-writeback-then-wait
//! fallback.

mod cache;
mod layout;
mod mem;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use cache::{Blocks, read_block, write_block};
pub use layout::{DIRECT, Geometry, MAGIC, RECORD_SIZE, ROOTS, VERSION, check_block_size, crc32c};
use layout::{
    Record, Slot, decode_slot, encode_record, find_zero_bit, get_u32, put_u32, set_bit, test_bit,
};
pub use mem::{LocalLock, MemDevice, NoLock};

/// Bytes per page. The WIT contract fixes it at 4096.
pub const PAGE_SIZE: usize = 4096;

/// The name of the cluster lock that guards blockmap metadata.
pub const META_LOCK: &str = "blockfs.meta";

/// How many times a lockless reader re-reads a record that fails its
/// checksum (it may have raced with a writer) before calling it corrupt.
const RECORD_RETRIES: usize = 3;

/// The errors a device or lock reports (a native mirror of the WIT `errno`,
/// so this module builds without the bindings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// EIO
    Io,
    /// ENOSPC
    NoSpc,
    /// ENOMEM
    NoMem,
    /// EAGAIN
    Again,
    /// EFBIG
    FBig,
    /// EINVAL
    Inval,
    /// EROFS
    RoFs,
    /// EINTR
    Intr,
}

impl Errno {
    /// The kernel's name, e.g. `ENOSPC`.
    pub fn name(self) -> &'static str {
        match self {
            Errno::Io => "EIO",
            Errno::NoSpc => "ENOSPC",
            Errno::NoMem => "ENOMEM",
            Errno::Again => "EAGAIN",
            Errno::FBig => "EFBIG",
            Errno::Inval => "EINVAL",
            Errno::RoFs => "EROFS",
            Errno::Intr => "EINTR",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong, with enough detail to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The device failed a request.
    Device {
        op: &'static str,
        block: u64,
        errno: Errno,
    },
    /// No free block, or no free inode slot.
    NoSpace(&'static str),
    /// The page lies past the largest file the block tree can map.
    FileTooBig { ino: u64, index: u64 },
    /// The on-disk structures are damaged.
    Corrupt { block: u64, what: String },
    /// The device or image is one this code cannot use.
    Unsupported(String),
    /// The meta lock could not be taken.
    Lock(Errno),
}

impl Error {
    /// The errno an address-space operation should report for this error.
    pub fn errno(&self) -> Errno {
        match self {
            Error::Device { errno, .. } => *errno,
            Error::NoSpace(_) => Errno::NoSpc,
            Error::FileTooBig { .. } => Errno::FBig,
            Error::Corrupt { .. } => Errno::Io,
            Error::Unsupported(_) => Errno::Inval,
            Error::Lock(errno) => *errno,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Device { op, block, errno } => {
                write!(f, "device {op} of block {block} failed: {errno}")
            }
            Error::NoSpace(what) => write!(f, "no space: {what}"),
            Error::FileTooBig { ino, index } => {
                write!(f, "inode {ino} page {index} is past the largest file")
            }
            Error::Corrupt { block, what } => {
                write!(f, "corrupt filesystem at block {block}: {what}")
            }
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
            Error::Lock(errno) => write!(f, "cannot take the {META_LOCK} lock: {errno}"),
        }
    }
}

impl std::error::Error for Error {}

/// A block device: fixed-size blocks numbered from 0; never-written blocks
/// read as zeros. Methods take `&self` so one device can serve many threads.
pub trait BlockIo {
    /// Bytes per block.
    fn block_size(&self) -> u32;
    /// Number of blocks (0: no device).
    fn block_count(&self) -> u64;
    /// Read block `block` into `buf` (exactly `block_size` bytes).
    fn read_block(&self, block: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Write `data` (exactly `block_size` bytes) to block `block`.
    fn write_block(&self, block: u64, data: &[u8]) -> Result<(), Errno>;
    /// Make every completed write durable.
    fn flush(&self) -> Result<(), Errno>;
    /// Read `buf.len()` bytes of block `block` from byte `offset` on (the
    /// range lies within the block): an inode record without the rest of
    /// its block. The default reads the whole block and copies the range.
    fn read_range(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Errno> {
        let mut whole = vec![0; self.block_size() as usize];
        self.read_block(block, &mut whole)?;
        let range = whole.get(offset..offset + buf.len()).ok_or(Errno::Inval)?;
        buf.copy_from_slice(range);
        Ok(())
    }
}

impl<T: BlockIo + ?Sized> BlockIo for &T {
    fn block_size(&self) -> u32 {
        (**self).block_size()
    }
    fn block_count(&self) -> u64 {
        (**self).block_count()
    }
    fn read_block(&self, block: u64, buf: &mut [u8]) -> Result<(), Errno> {
        (**self).read_block(block, buf)
    }
    fn write_block(&self, block: u64, data: &[u8]) -> Result<(), Errno> {
        (**self).write_block(block, data)
    }
    fn flush(&self) -> Result<(), Errno> {
        (**self).flush()
    }
    fn read_range(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Errno> {
        (**self).read_range(block, offset, buf)
    }
}

impl<T: BlockIo + ?Sized> BlockIo for std::sync::Arc<T> {
    fn block_size(&self) -> u32 {
        (**self).block_size()
    }
    fn block_count(&self) -> u64 {
        (**self).block_count()
    }
    fn read_block(&self, block: u64, buf: &mut [u8]) -> Result<(), Errno> {
        (**self).read_block(block, buf)
    }
    fn write_block(&self, block: u64, data: &[u8]) -> Result<(), Errno> {
        (**self).write_block(block, data)
    }
    fn flush(&self) -> Result<(), Errno> {
        (**self).flush()
    }
    fn read_range(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Errno> {
        (**self).read_range(block, offset, buf)
    }
}

/// Lock modes: many shared holders or one exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// The lock that serialises metadata changes across every user of a device
/// (the cluster lock [`META_LOCK`] in a plugin, a reader-writer lock
/// natively).
pub trait MetaLock {
    /// Take the lock, blocking (an error such as `Again` when the wait is
    /// bounded and ran out).
    fn lock(&self, mode: LockMode) -> Result<(), Errno>;
    /// Take the lock only if that needs no wait.
    fn try_lock(&self, mode: LockMode) -> bool;
    /// Release a hold taken in `mode`.
    fn unlock(&self, mode: LockMode);
}

impl<T: MetaLock + ?Sized> MetaLock for &T {
    fn lock(&self, mode: LockMode) -> Result<(), Errno> {
        (**self).lock(mode)
    }
    fn try_lock(&self, mode: LockMode) -> bool {
        (**self).try_lock(mode)
    }
    fn unlock(&self, mode: LockMode) {
        (**self).unlock(mode)
    }
}

impl<T: MetaLock + ?Sized> MetaLock for std::sync::Arc<T> {
    fn lock(&self, mode: LockMode) -> Result<(), Errno> {
        (**self).lock(mode)
    }
    fn try_lock(&self, mode: LockMode) -> bool {
        (**self).try_lock(mode)
    }
    fn unlock(&self, mode: LockMode) {
        (**self).unlock(mode)
    }
}

/// Whether an operation may wait for the meta lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Wait for it.
    Block,
    /// Only take it if it is free now; otherwise report
    /// [`WriteOutcome::WouldBlock`] without having changed anything.
    Try,
}

/// What [`BlockMap::write_page`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The page's bytes below i_size are stored.
    Written,
    /// The page lies wholly at or past i_size: nothing to store (it is being
    /// truncated).
    PastEof,
    /// [`Wait::Try`] and the lock was busy: nothing was written.
    WouldBlock,
}

/// What [`BlockMap::check`] found on a consistent filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Inode records in use.
    pub inodes: u64,
    /// Blocks holding file data.
    pub data_blocks: u64,
    /// Indirect blocks.
    pub indirect_blocks: u64,
    /// Free blocks in the data area.
    pub free_blocks: u64,
    /// Blocks marked in use that nothing references (left by a crash
    /// between the bitmap write and the pointer write; harmless).
    pub leaked_blocks: Vec<u64>,
}

/// How many bytes of page `index` lie below `size`.
pub fn valid_bytes(size: u64, index: u64) -> usize {
    let start = index.saturating_mul(PAGE_SIZE as u64);
    size.saturating_sub(start).min(PAGE_SIZE as u64) as usize
}

/// A held meta lock, released on drop.
struct Held<'a, L: MetaLock + ?Sized> {
    lock: &'a L,
    mode: LockMode,
}

impl<L: MetaLock + ?Sized> Drop for Held<'_, L> {
    fn drop(&mut self) {
        self.lock.unlock(self.mode);
    }
}

fn acquire<L: MetaLock + ?Sized>(
    lock: &L,
    mode: LockMode,
    wait: Wait,
) -> Result<Option<Held<'_, L>>, Error> {
    match wait {
        Wait::Block => {
            lock.lock(mode).map_err(Error::Lock)?;
            Ok(Some(Held { lock, mode }))
        }
        // `then`, not `then_some`: a guard built eagerly would unlock on failure.
        Wait::Try => Ok(lock.try_lock(mode).then(|| Held { lock, mode })),
    }
}

/// A mounted blockmap filesystem over a device `D` and meta lock `L`.
///
/// Every method takes `&self`; with `D` and `L` `Sync` it may be shared by
/// threads. Several `BlockMap`s (one per instance) may share a device as
/// long as they share the lock.
pub struct BlockMap<D, L> {
    dev: D,
    lock: L,
    geo: Geometry,
    /// Where the next allocation starts looking (a guess, checked against
    /// the bitmap).
    hint: AtomicU64,
}

impl<D: BlockIo, L: MetaLock> BlockMap<D, L> {
    /// Mount the filesystem on `dev`, formatting it first if its superblock
    /// is all zeros (a fresh image). A damaged superblock is an error.
    pub fn open(dev: D, lock: L) -> Result<Self, Error> {
        let block_size = dev.block_size();
        let device_blocks = dev.block_count();
        if device_blocks == 0 {
            return Err(Error::Unsupported(
                "there is no block device (0 blocks)".into(),
            ));
        }
        check_block_size(block_size)?;
        let mut sb = vec![0; block_size as usize];
        read_block(&dev, 0, &mut sb)?;
        let geo = if sb.iter().all(|&b| b == 0) {
            // Fresh device: format it, unless another instance beat us to it.
            let held = acquire(&lock, LockMode::Exclusive, Wait::Block)?;
            read_block(&dev, 0, &mut sb)?;
            let geo = if sb.iter().all(|&b| b == 0) {
                let geo = Geometry::for_device(block_size, device_blocks)?;
                mkfs(&dev, &geo)?;
                geo
            } else {
                Geometry::decode_superblock(&sb, block_size, device_blocks)?
            };
            drop(held);
            geo
        } else {
            Geometry::decode_superblock(&sb, block_size, device_blocks)?
        };
        let hint = AtomicU64::new(geo.data_start);
        Ok(BlockMap {
            dev,
            lock,
            geo,
            hint,
        })
    }

    /// Format `dev` unconditionally (destroying what it held) and mount it.
    pub fn format(dev: D, lock: L) -> Result<Self, Error> {
        let geo = Geometry::for_device(dev.block_size(), dev.block_count())?;
        {
            let _held = acquire(&lock, LockMode::Exclusive, Wait::Block)?;
            mkfs(&dev, &geo)?;
        }
        let hint = AtomicU64::new(geo.data_start);
        Ok(BlockMap {
            dev,
            lock,
            geo,
            hint,
        })
    }

    /// The layout.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The meta lock.
    pub fn meta_lock(&self) -> &L {
        &self.lock
    }

    /// Make every completed write durable.
    pub fn flush(&self) -> Result<(), Error> {
        self.dev.flush().map_err(|errno| Error::Device {
            op: "flush",
            block: 0,
            errno,
        })
    }

    /// Read page `index` of inode `ino` (whose i_size is `size`) into
    /// `buf[..PAGE_SIZE]`. Holes and bytes at or past `size` read as zeros.
    /// Returns how many leading bytes may be nonzero: `buf[n..]` is all zero,
    /// so a caller may hand just `&buf[..n]` to `end-read`. Takes no lock.
    pub fn read_page(
        &self,
        ino: u64,
        index: u64,
        size: u64,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        self.reader(ino).read_page(index, size, buf)
    }

    /// A reader for several pages of one inode (readahead): it looks the
    /// inode up once and keeps the indirect blocks it read. Drop it before
    /// the operation returns.
    pub fn reader(&self, ino: u64) -> FileReader<'_, D, L> {
        FileReader {
            map: self,
            ino,
            blocks: Blocks::new(&self.dev, &self.geo),
            record: None,
        }
    }

    /// Store the bytes of page `index` of inode `ino` that lie below `size`
    /// (`data` is the page from offset 0; missing bytes count as zeros, and
    /// the rest of the last block is stored as zeros). Allocates blocks on
    /// first write. With [`Wait::Try`] nothing is written if the meta lock is
    /// busy.
    pub fn write_page(
        &self,
        ino: u64,
        index: u64,
        size: u64,
        data: &[u8],
        wait: Wait,
    ) -> Result<WriteOutcome, Error> {
        let valid = valid_bytes(size, index);
        if valid == 0 {
            return Ok(WriteOutcome::PastEof);
        }
        let bs = self.geo.block_size as usize;
        let nblocks = valid.div_ceil(bs);
        let first = index
            .checked_mul(self.geo.blocks_per_page())
            .filter(|f| f.saturating_add(nblocks as u64) <= self.geo.max_file_blocks())
            .ok_or(Error::FileTooBig { ino, index })?;
        let mut image = vec![0; nblocks * bs];
        let n = valid.min(data.len());
        image[..n].copy_from_slice(&data[..n]);

        // Overwrite in place when every block is mapped: shared lock.
        {
            let Some(_held) = acquire(&self.lock, LockMode::Shared, wait)? else {
                return Ok(WriteOutcome::WouldBlock);
            };
            let mut blocks = Blocks::new(&self.dev, &self.geo);
            if let Some(rec) = self.find_record(&mut blocks, ino, true)? {
                let mut targets = Vec::with_capacity(nblocks);
                for i in 0..nblocks as u64 {
                    match self.lookup(&mut blocks, &rec, first + i)? {
                        Some(b) => targets.push(b),
                        None => break,
                    }
                }
                if targets.len() == nblocks {
                    for (chunk, &b) in image.chunks(bs).zip(&targets) {
                        write_block(&self.dev, b, chunk)?;
                    }
                    return Ok(WriteOutcome::Written);
                }
            }
        }

        // Something must be allocated: exclusive lock, look everything up
        // again (another instance may have allocated meanwhile).
        let Some(_held) = acquire(&self.lock, LockMode::Exclusive, wait)? else {
            return Ok(WriteOutcome::WouldBlock);
        };
        let mut blocks = Blocks::new(&self.dev, &self.geo);
        let (mut rec, created) = self.find_or_create_record(&mut blocks, ino)?;
        let mut rec_dirty = created;
        let mut goal = self.hint.load(Ordering::Relaxed);
        if first > 0
            && let Some(prev) = self.lookup(&mut blocks, &rec, first - 1)?
        {
            goal = prev + 1;
        }
        let mut targets = Vec::with_capacity(nblocks);
        for i in 0..nblocks as u64 {
            targets.push(self.map_or_alloc(
                &mut blocks,
                &mut rec,
                &mut rec_dirty,
                first + i,
                &mut goal,
            )?);
        }
        // Data first: nothing points to a new block until the metadata flush.
        for (chunk, &b) in image.chunks(bs).zip(&targets) {
            write_block(&self.dev, b, chunk)?;
        }
        if rec_dirty {
            self.put_record(&mut blocks, &rec)?;
        }
        blocks.flush_bitmap()?;
        blocks.flush_metadata()?;
        self.hint.store(goal, Ordering::Relaxed);
        Ok(WriteOutcome::Written)
    }

    /// i_op->truncate: i_size of `ino` became `size`. Frees every block past
    /// it and zeroes the tail of the partial last block, so the bytes past
    /// `size` read as zeros if the file grows again. Blocks on the meta lock:
    /// call it without holding a page lock.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<(), Error> {
        let _held = acquire(&self.lock, LockMode::Exclusive, Wait::Block)?;
        let mut blocks = Blocks::new(&self.dev, &self.geo);
        let Some(mut rec) = self.find_record(&mut blocks, ino, false)? else {
            return Ok(());
        };
        let bs = u64::from(self.geo.block_size);
        let keep = size.div_ceil(bs);
        let mut freed = Vec::new();
        let mut rec_dirty = false;
        for root in 0..ROOTS {
            let ptr = u64::from(rec.ptrs[root]);
            if ptr == 0 {
                continue;
            }
            self.check_ptr(ptr, rec_block(&self.geo, &rec))?;
            let (start, depth) = self.geo.root_range(root);
            let span = self.geo.ptrs_per_block().pow(depth as u32);
            let drop_root = if keep <= start {
                self.collect_tree(&mut blocks, ptr, depth, &mut freed)?;
                true
            } else if keep < start + span {
                let empty = self.truncate_tree(&mut blocks, ptr, depth, start, keep, &mut freed)?;
                if empty {
                    freed.push(ptr);
                }
                empty
            } else {
                false
            };
            if drop_root {
                rec.ptrs[root] = 0;
                rec_dirty = true;
            }
        }
        if !size.is_multiple_of(bs)
            && let Some(b) = self.lookup(&mut blocks, &rec, size / bs)?
        {
            let mut tail = vec![0; bs as usize];
            read_block(&self.dev, b, &mut tail)?;
            tail[(size % bs) as usize..].fill(0);
            write_block(&self.dev, b, &tail)?;
        }
        if rec_dirty {
            self.put_record(&mut blocks, &rec)?;
        }
        for &b in &freed {
            blocks.forget(b);
        }
        // Pointers cleared on disk before the blocks become allocatable.
        blocks.flush_metadata()?;
        for &b in &freed {
            self.free(&mut blocks, b)?;
        }
        blocks.flush_bitmap()?;
        Ok(())
    }

    /// Walk every structure and check it (fsck). Takes the meta lock
    /// shared. Reports an error for anything inconsistent: bad records,
    /// pointers out of range, blocks referenced twice, referenced blocks
    /// marked free, metadata marked free. Blocks marked in use but not
    /// referenced are listed as leaked (a crash can leave them).
    pub fn check(&self) -> Result<CheckReport, Error> {
        let _held = acquire(&self.lock, LockMode::Shared, Wait::Block)?;
        let geo = &self.geo;
        let mut blocks = Blocks::new(&self.dev, geo);
        let mut report = CheckReport::default();
        let mut seen = HashSet::new();
        let mut inos = HashSet::new();
        for slot in 0..geo.inode_slots {
            let (block, offset) = geo.slot_position(slot);
            let rec = match decode_slot(&blocks.get(block)?[offset..offset + RECORD_SIZE], slot) {
                Slot::Empty => continue,
                Slot::Bad(what) => {
                    return Err(Error::Corrupt {
                        block,
                        what: format!("slot {slot}: {what}"),
                    });
                }
                Slot::Used(rec) => rec,
            };
            if !inos.insert(rec.ino) {
                return Err(Error::Corrupt {
                    block,
                    what: format!("inode {} has two records", rec.ino),
                });
            }
            // Linear probing: every slot from home to here must be in use.
            let mut probe = geo.home_slot(rec.ino);
            while probe != slot {
                let (pb, po) = geo.slot_position(probe);
                if matches!(
                    decode_slot(&blocks.get(pb)?[po..po + RECORD_SIZE], probe),
                    Slot::Empty
                ) {
                    return Err(Error::Corrupt {
                        block,
                        what: format!("inode {} unreachable from its home slot", rec.ino),
                    });
                }
                probe = (probe + 1) % geo.inode_slots;
            }
            report.inodes += 1;
            for root in 0..ROOTS {
                let ptr = u64::from(rec.ptrs[root]);
                if ptr != 0 {
                    let (_, depth) = geo.root_range(root);
                    self.check_tree(&mut blocks, ptr, depth, block, &mut seen, &mut report)?;
                }
            }
        }
        let bits = geo.bits_per_block();
        for b in 0..geo.block_count {
            let bm = blocks.get(geo.bitmap_start + b / bits)?;
            let used = test_bit(bm, (b % bits) as usize);
            let referenced = b < geo.data_start || seen.contains(&b);
            match (used, referenced) {
                (false, true) => {
                    return Err(Error::Corrupt {
                        block: geo.bitmap_start + b / bits,
                        what: format!("block {b} is in use but marked free"),
                    });
                }
                (true, false) => report.leaked_blocks.push(b),
                (false, false) => report.free_blocks += 1,
                (true, true) => {}
            }
        }
        Ok(report)
    }

    fn check_tree(
        &self,
        blocks: &mut Blocks<'_, D>,
        ptr: u64,
        depth: usize,
        from: u64,
        seen: &mut HashSet<u64>,
        report: &mut CheckReport,
    ) -> Result<(), Error> {
        self.check_ptr(ptr, from)?;
        if !seen.insert(ptr) {
            return Err(Error::Corrupt {
                block: from,
                what: format!("block {ptr} is referenced twice"),
            });
        }
        if depth == 0 {
            report.data_blocks += 1;
            return Ok(());
        }
        report.indirect_blocks += 1;
        let children: Vec<u64> = pointers(blocks.get(ptr)?).filter(|&p| p != 0).collect();
        for child in children {
            self.check_tree(blocks, child, depth - 1, ptr, seen, report)?;
        }
        Ok(())
    }

    fn check_ptr(&self, ptr: u64, from: u64) -> Result<(), Error> {
        if self.geo.is_data_block(ptr) {
            Ok(())
        } else {
            Err(Error::Corrupt {
                block: from,
                what: format!("pointer {ptr} outside the data area"),
            })
        }
    }

    /// Find the record of `ino`. `lockless` readers re-read records that
    /// fail their checksum, since they may have raced with a writer.
    fn find_record(
        &self,
        blocks: &mut Blocks<'_, D>,
        ino: u64,
        lockless: bool,
    ) -> Result<Option<Record>, Error> {
        let geo = &self.geo;
        let mut slot = geo.home_slot(ino);
        for _ in 0..geo.inode_slots {
            let (block, offset) = geo.slot_position(slot);
            let mut tries = 0;
            let found = loop {
                // A lockless reader reads just the record, afresh on each
                // try (one may be torn by a racing writer); under the lock
                // the whole block is read once, into the operation's buffer.
                let mut record = [0u8; RECORD_SIZE];
                let bytes = if lockless {
                    self.dev
                        .read_range(block, offset, &mut record)
                        .map_err(|errno| Error::Device {
                            op: "read",
                            block,
                            errno,
                        })?;
                    &record[..]
                } else {
                    &blocks.get(block)?[offset..offset + RECORD_SIZE]
                };
                match decode_slot(bytes, slot) {
                    Slot::Bad(_) if lockless && tries < RECORD_RETRIES => {
                        tries += 1;
                    }
                    Slot::Bad(what) => {
                        return Err(Error::Corrupt {
                            block,
                            what: format!("slot {slot}: {what}"),
                        });
                    }
                    Slot::Empty => return Ok(None),
                    Slot::Used(rec) => break rec,
                }
            };
            if found.ino == ino {
                return Ok(Some(found));
            }
            slot = (slot + 1) % geo.inode_slots;
        }
        Ok(None)
    }

    /// Find the record of `ino`, or claim a slot of its probe sequence for
    /// it (exclusive lock held): the first record whose file has no blocks
    /// left (any reader of that file finds no record or an empty one, zeros
    /// either way, and the slot stays occupied, so no probe sequence breaks),
    /// else the first empty slot. The whole sequence up to an empty slot is
    /// searched first, so an inode never gets two records. Returns whether
    /// the record is new.
    fn find_or_create_record(
        &self,
        blocks: &mut Blocks<'_, D>,
        ino: u64,
    ) -> Result<(Record, bool), Error> {
        let geo = &self.geo;
        let mut slot = geo.home_slot(ino);
        let mut reusable = None;
        let mut empty = None;
        for _ in 0..geo.inode_slots {
            let (block, offset) = geo.slot_position(slot);
            match decode_slot(&blocks.get(block)?[offset..offset + RECORD_SIZE], slot) {
                Slot::Bad(what) => {
                    return Err(Error::Corrupt {
                        block,
                        what: format!("slot {slot}: {what}"),
                    });
                }
                Slot::Empty => {
                    empty = Some(slot);
                    break;
                }
                Slot::Used(rec) if rec.ino == ino => return Ok((rec, false)),
                Slot::Used(rec) => {
                    if reusable.is_none() && rec.ptrs.iter().all(|&p| p == 0) {
                        reusable = Some(slot);
                    }
                }
            }
            slot = (slot + 1) % geo.inode_slots;
        }
        match reusable.or(empty) {
            Some(slot) => Ok((
                Record {
                    slot,
                    ino,
                    ptrs: [0; ROOTS],
                },
                true,
            )),
            None => Err(Error::NoSpace("the inode table is full")),
        }
    }

    fn put_record(&self, blocks: &mut Blocks<'_, D>, rec: &Record) -> Result<(), Error> {
        let (block, offset) = self.geo.slot_position(rec.slot);
        encode_record(
            rec,
            &mut blocks.get_mut(block)?[offset..offset + RECORD_SIZE],
        );
        Ok(())
    }

    /// The block mapped at file block `fblock`, if any.
    fn lookup(
        &self,
        blocks: &mut Blocks<'_, D>,
        rec: &Record,
        fblock: u64,
    ) -> Result<Option<u64>, Error> {
        let Some(path) = self.geo.path(fblock) else {
            return Ok(None);
        };
        let mut from = rec_block(&self.geo, rec);
        let mut ptr = u64::from(rec.ptrs[path.root]);
        for &offset in &path.offsets[..path.depth] {
            if ptr == 0 {
                return Ok(None);
            }
            self.check_ptr(ptr, from)?;
            from = ptr;
            ptr = u64::from(get_u32(blocks.get(ptr)?, offset * 4));
        }
        if ptr == 0 {
            return Ok(None);
        }
        self.check_ptr(ptr, from)?;
        Ok(Some(ptr))
    }

    /// The block mapped at `fblock`, allocating it and any missing indirect
    /// blocks on the way (exclusive lock held; changes stay in `blocks`).
    fn map_or_alloc(
        &self,
        blocks: &mut Blocks<'_, D>,
        rec: &mut Record,
        rec_dirty: &mut bool,
        fblock: u64,
        goal: &mut u64,
    ) -> Result<u64, Error> {
        let path = self.geo.path(fblock).ok_or(Error::FileTooBig {
            ino: rec.ino,
            index: fblock / self.geo.blocks_per_page(),
        })?;
        let mut ptr = u64::from(rec.ptrs[path.root]);
        if ptr == 0 {
            ptr = self.alloc(blocks, goal)?;
            if path.depth > 0 {
                blocks.fresh(ptr);
            }
            rec.ptrs[path.root] = ptr as u32;
            *rec_dirty = true;
        } else {
            self.check_ptr(ptr, rec_block(&self.geo, rec))?;
        }
        for (level, &offset) in path.offsets[..path.depth].iter().enumerate() {
            let last = level + 1 == path.depth;
            let entry = u64::from(get_u32(blocks.get(ptr)?, offset * 4));
            let child = if entry == 0 {
                let new = self.alloc(blocks, goal)?;
                if !last {
                    blocks.fresh(new);
                }
                put_u32(blocks.get_mut(ptr)?, offset * 4, new as u32);
                new
            } else {
                self.check_ptr(entry, ptr)?;
                entry
            };
            ptr = child;
        }
        Ok(ptr)
    }

    /// Allocate a free data-area block, searching from `goal` (next-fit).
    fn alloc(&self, blocks: &mut Blocks<'_, D>, goal: &mut u64) -> Result<u64, Error> {
        let geo = &self.geo;
        let bits = geo.bits_per_block();
        let start = if geo.is_data_block(*goal) {
            *goal
        } else {
            geo.data_start
        };
        for (lo, hi) in [(start, geo.block_count), (geo.data_start, start)] {
            let mut b = lo;
            while b < hi {
                let index = b / bits;
                let base = index * bits;
                let end = (base + bits).min(hi);
                let bm = geo.bitmap_start + index;
                if let Some(bit) =
                    find_zero_bit(blocks.get(bm)?, (b - base) as usize, (end - base) as usize)
                {
                    set_bit(blocks.get_mut(bm)?, bit, true);
                    let found = base + bit as u64;
                    *goal = found + 1;
                    return Ok(found);
                }
                b = end;
            }
        }
        Err(Error::NoSpace("no free block"))
    }

    fn free(&self, blocks: &mut Blocks<'_, D>, block: u64) -> Result<(), Error> {
        let geo = &self.geo;
        self.check_ptr(block, 0)?;
        let bits = geo.bits_per_block();
        let bm = geo.bitmap_start + block / bits;
        let bit = (block % bits) as usize;
        if !test_bit(blocks.get(bm)?, bit) {
            return Err(Error::Corrupt {
                block: bm,
                what: format!("block {block} freed but already free"),
            });
        }
        set_bit(blocks.get_mut(bm)?, bit, false);
        Ok(())
    }

    /// Add `ptr` and everything below it (`depth` indirect levels) to `out`.
    fn collect_tree(
        &self,
        blocks: &mut Blocks<'_, D>,
        ptr: u64,
        depth: usize,
        out: &mut Vec<u64>,
    ) -> Result<(), Error> {
        out.push(ptr);
        if depth == 0 {
            return Ok(());
        }
        let children: Vec<u64> = pointers(blocks.get(ptr)?).filter(|&p| p != 0).collect();
        for child in children {
            self.check_ptr(child, ptr)?;
            self.collect_tree(blocks, child, depth - 1, out)?;
        }
        Ok(())
    }

    /// Clear the entries of indirect block `ptr` (mapping file blocks from
    /// `start`, `depth` levels above the data) that map file blocks at or
    /// past `keep`, collecting what they pointed to. Returns whether `ptr`
    /// is now empty.
    fn truncate_tree(
        &self,
        blocks: &mut Blocks<'_, D>,
        ptr: u64,
        depth: usize,
        start: u64,
        keep: u64,
        freed: &mut Vec<u64>,
    ) -> Result<bool, Error> {
        let p = self.geo.ptrs_per_block();
        let child_span = p.pow(depth as u32 - 1);
        let first = (keep.saturating_sub(start)) / child_span;
        for i in first..p {
            let child = u64::from(get_u32(blocks.get(ptr)?, i as usize * 4));
            if child == 0 {
                continue;
            }
            self.check_ptr(child, ptr)?;
            let child_start = start + i * child_span;
            let clear = if keep <= child_start {
                self.collect_tree(blocks, child, depth - 1, freed)?;
                true
            } else if depth > 1 {
                let empty =
                    self.truncate_tree(blocks, child, depth - 1, child_start, keep, freed)?;
                if empty {
                    freed.push(child);
                }
                empty
            } else {
                false
            };
            if clear {
                put_u32(blocks.get_mut(ptr)?, i as usize * 4, 0);
            }
        }
        Ok(pointers(blocks.get(ptr)?).all(|c| c == 0))
    }
}

/// A reader of one inode's pages, for one operation. See
/// [`BlockMap::reader`].
pub struct FileReader<'m, D, L> {
    map: &'m BlockMap<D, L>,
    ino: u64,
    blocks: Blocks<'m, D>,
    /// `None` until looked up; then whether the inode has a record.
    record: Option<Option<Record>>,
}

/// Where the bytes of one page are on the device: see
/// [`FileReader::map_page`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageMap {
    /// Bytes of the page below i_size.
    valid: usize,
    /// Bytes per block.
    block_size: usize,
    /// The device block behind each of the page's blocks that holds bytes
    /// below i_size (`None`: a hole), in order.
    blocks: [Option<u64>; PAGE_SIZE / 512],
    /// How many entries of `blocks` count.
    nblocks: usize,
}

impl PageMap {
    /// A page with no stored bytes (past i_size, or no record).
    fn empty(valid: usize, block_size: usize) -> PageMap {
        PageMap {
            valid,
            block_size,
            blocks: [None; PAGE_SIZE / 512],
            nblocks: 0,
        }
    }

    /// The device block behind each of the page's blocks below i_size, in
    /// order (`None`: a hole, which reads as zeros).
    pub fn blocks(&self) -> &[Option<u64>] {
        &self.blocks[..self.nblocks]
    }

    /// How many leading bytes of the page may be nonzero: up to the end of
    /// its last mapped block, and not past i_size. Everything after reads
    /// as zeros.
    pub fn data_len(&self) -> usize {
        let mapped = self.blocks().iter().rposition(Option::is_some);
        mapped.map_or(0, |last| ((last + 1) * self.block_size).min(self.valid))
    }

    /// The page's data as one run of consecutive device blocks: `Some((first
    /// block, data_len))` when the page's first [`PageMap::data_len`] bytes
    /// are the blocks `first, first + 1, ...` with no hole, so one device
    /// read fills the page (always, with 4 KiB blocks, for a page with
    /// data). `None` when there is no data or it is scattered.
    pub fn run(&self) -> Option<(u64, usize)> {
        let len = self.data_len();
        let last = len.checked_sub(1)? / self.block_size;
        let first = self.blocks[0]?;
        let contiguous = self.blocks[..=last]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == Some(first + i as u64));
        contiguous.then_some((first, len))
    }
}

impl<D: BlockIo, L: MetaLock> FileReader<'_, D, L> {
    /// The device (to move a mapped page's data itself).
    pub fn device(&self) -> &D {
        &self.map.dev
    }

    /// Like [`BlockMap::read_page`], reusing what earlier calls read.
    pub fn read_page(&mut self, index: u64, size: u64, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.len() < PAGE_SIZE {
            return Err(Error::Unsupported(format!(
                "page buffer of {} bytes",
                buf.len()
            )));
        }
        let map = self.map_page(index, size)?;
        self.read_mapped(&map, buf)
    }

    /// Where page `index` of the file (whose i_size is `size`) is on the
    /// device, without reading its data: so a caller can move the data
    /// itself (one device read straight into the page, see
    /// [`PageMap::run`]). Reads the inode record and any indirect blocks on
    /// the way (lockless, like [`BlockMap::read_page`]).
    pub fn map_page(&mut self, index: u64, size: u64) -> Result<PageMap, Error> {
        let geo = &self.map.geo;
        let bs = geo.block_size as usize;
        let valid = valid_bytes(size, index);
        if valid == 0 {
            return Ok(PageMap::empty(0, bs));
        }
        if self.record.is_none() {
            self.record = Some(self.map.find_record(&mut self.blocks, self.ino, true)?);
        }
        let Some(rec) = self.record.as_ref().expect("looked up") else {
            return Ok(PageMap::empty(valid, bs));
        };
        let Some(first) = index.checked_mul(geo.blocks_per_page()) else {
            return Ok(PageMap::empty(valid, bs));
        };
        let mut map = PageMap::empty(valid, bs);
        map.nblocks = valid.div_ceil(bs);
        for i in 0..map.nblocks {
            map.blocks[i] = self.map.lookup(&mut self.blocks, rec, first + i as u64)?;
        }
        Ok(map)
    }

    /// Read the blocks `map` (from [`FileReader::map_page`]) names into
    /// `buf[..PAGE_SIZE]`, zeros for holes and past i_size. Returns
    /// [`PageMap::data_len`]: `buf[n..]` is all zero.
    pub fn read_mapped(&self, map: &PageMap, buf: &mut [u8]) -> Result<usize, Error> {
        let len = buf.len();
        let buf = buf
            .get_mut(..PAGE_SIZE)
            .ok_or_else(|| Error::Unsupported(format!("page buffer of {len} bytes")))?;
        let end = map.data_len();
        for (chunk, block) in buf.chunks_mut(map.block_size).zip(map.blocks()) {
            match block {
                Some(b) => read_block(&self.map.dev, *b, chunk)?,
                None => chunk.fill(0),
            }
        }
        buf[end..].fill(0);
        Ok(end)
    }
}

/// The block that holds `rec` (for error messages).
fn rec_block(geo: &Geometry, rec: &Record) -> u64 {
    geo.slot_position(rec.slot).0
}

/// The pointers of an indirect block.
fn pointers(block: &[u8]) -> impl Iterator<Item = u64> + '_ {
    block
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))))
}

/// Write a fresh filesystem for `geo` (exclusive lock held): bitmap, empty
/// inode table, then the superblock last, so a crash leaves either no
/// filesystem or a complete one.
fn mkfs<D: BlockIo + ?Sized>(dev: &D, geo: &Geometry) -> Result<(), Error> {
    let bs = geo.block_size as usize;
    let bits = geo.bits_per_block();
    let mut buf = vec![0; bs];
    for i in 0..geo.bitmap_blocks {
        buf.fill(0);
        let base = i * bits;
        for bit in 0..bits {
            let b = base + bit;
            if b < geo.data_start || b >= geo.block_count {
                set_bit(&mut buf, bit as usize, true);
            }
        }
        write_block(dev, geo.bitmap_start + i, &buf)?;
    }
    buf.fill(0);
    for i in 0..geo.itable_blocks {
        write_block(dev, geo.itable_start + i, &buf)?;
    }
    dev.flush().map_err(|errno| Error::Device {
        op: "flush",
        block: 0,
        errno,
    })?;
    geo.encode_superblock(&mut buf);
    write_block(dev, 0, &buf)?;
    dev.flush().map_err(|errno| Error::Device {
        op: "flush",
        block: 0,
        errno,
    })
}
