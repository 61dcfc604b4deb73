//! The on-disk format: superblock, geometry, inode records, checksums.
//!
//! Every integer is little-endian. See the module documentation of
//! [`crate::blockmap`] for the picture.

use super::{Error, PAGE_SIZE};

/// The superblock's magic number (bytes 0..8 of block 0).
pub const MAGIC: [u8; 8] = *b"AOPSBMAP";
/// The on-disk format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Bytes per inode record in the inode table.
pub const RECORD_SIZE: usize = 64;
/// Direct block pointers per inode record.
pub const DIRECT: usize = 9;
/// Pointers in an inode record: the direct ones, then the single, double and
/// triple indirect roots.
pub const ROOTS: usize = DIRECT + 3;

/// Offset of the superblock checksum; it covers bytes 0..SB_CRC_OFFSET.
const SB_CRC_OFFSET: usize = 80;
/// Offset of a record's checksum; it covers the record's bytes before it.
const RECORD_CRC_OFFSET: usize = 60;
/// Record flag: the slot holds an inode.
const FLAG_USED: u32 = 1;
/// Smallest inode table, in slots.
const MIN_SLOTS: u64 = 64;
/// Smallest data area, in blocks, for mkfs to accept a device.
const MIN_DATA_BLOCKS: u64 = 8;

/// Where everything lives on the device. Derived from the block size and
/// the block count alone, so the superblock can be checked against a fresh
/// computation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per block: a power of two from 512 to the page size.
    pub block_size: u32,
    /// Blocks the filesystem uses (at most the device's, at most `u32::MAX`).
    pub block_count: u64,
    /// First block of the free-block bitmap (always 1).
    pub bitmap_start: u64,
    /// Blocks of bitmap: one bit per filesystem block.
    pub bitmap_blocks: u64,
    /// First block of the inode hash table.
    pub itable_start: u64,
    /// Blocks of inode hash table.
    pub itable_blocks: u64,
    /// Slots in the inode hash table.
    pub inode_slots: u64,
    /// First block that may hold file data or indirect blocks.
    pub data_start: u64,
}

/// Fail unless `block_size` is one blockmap supports.
pub fn check_block_size(block_size: u32) -> Result<(), Error> {
    if !block_size.is_power_of_two() || block_size < 512 || block_size as usize > PAGE_SIZE {
        return Err(Error::Unsupported(format!(
            "block size {block_size}: blockmap needs a power of two from 512 to {PAGE_SIZE}"
        )));
    }
    Ok(())
}

impl Geometry {
    /// The layout mkfs gives a device of `device_blocks` blocks.
    pub fn for_device(block_size: u32, device_blocks: u64) -> Result<Geometry, Error> {
        check_block_size(block_size)?;
        let block_count = device_blocks.min(u64::from(u32::MAX));
        let bitmap_blocks = block_count.div_ceil(u64::from(block_size) * 8);
        let records_per_block = u64::from(block_size) / RECORD_SIZE as u64;
        let itable_blocks = (block_count / 4).max(MIN_SLOTS).div_ceil(records_per_block);
        let bitmap_start = 1;
        let itable_start = bitmap_start + bitmap_blocks;
        let data_start = itable_start + itable_blocks;
        if block_count < data_start + MIN_DATA_BLOCKS {
            return Err(Error::Unsupported(format!(
                "a device of {device_blocks} blocks of {block_size} bytes is too small \
                 (metadata alone needs {data_start} blocks)"
            )));
        }
        Ok(Geometry {
            block_size,
            block_count,
            bitmap_start,
            bitmap_blocks,
            itable_start,
            itable_blocks,
            inode_slots: itable_blocks * records_per_block,
            data_start,
        })
    }

    /// Block pointers per indirect block.
    pub fn ptrs_per_block(&self) -> u64 {
        u64::from(self.block_size) / 4
    }

    /// Filesystem blocks per page.
    pub fn blocks_per_page(&self) -> u64 {
        (PAGE_SIZE / self.block_size as usize) as u64
    }

    /// Bits per bitmap block.
    pub(crate) fn bits_per_block(&self) -> u64 {
        u64::from(self.block_size) * 8
    }

    /// How many blocks one file can map: direct + single + double + triple
    /// indirect.
    pub fn max_file_blocks(&self) -> u64 {
        let p = self.ptrs_per_block();
        DIRECT as u64 + p + p * p + p * p * p
    }

    /// Whether `block` lies in the data area (where pointers may point).
    pub fn is_data_block(&self, block: u64) -> bool {
        (self.data_start..self.block_count).contains(&block)
    }

    /// Whether `block` is one of the bitmap's blocks.
    pub(crate) fn is_bitmap_block(&self, block: u64) -> bool {
        (self.bitmap_start..self.bitmap_start + self.bitmap_blocks).contains(&block)
    }

    /// The block and byte offset of inode table slot `slot`.
    pub(crate) fn slot_position(&self, slot: u64) -> (u64, usize) {
        let per_block = u64::from(self.block_size) / RECORD_SIZE as u64;
        (
            self.itable_start + slot / per_block,
            (slot % per_block) as usize * RECORD_SIZE,
        )
    }

    /// The slot where the probe for `ino` starts (a multiplicative hash,
    /// reduced to the table size without a division).
    pub(crate) fn home_slot(&self, ino: u64) -> u64 {
        let mut h = ino ^ (ino >> 31);
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
        ((u128::from(h) * u128::from(self.inode_slots)) >> 64) as u64
    }

    /// Where file block `fblock` hangs in an inode's tree, or `None` past the
    /// largest file.
    pub(crate) fn path(&self, fblock: u64) -> Option<Path> {
        let p = self.ptrs_per_block();
        if fblock < DIRECT as u64 {
            return Some(Path {
                root: fblock as usize,
                depth: 0,
                offsets: [0; 3],
            });
        }
        let mut rest = fblock - DIRECT as u64;
        let mut span = 1;
        for depth in 1..=3 {
            span *= p;
            if rest < span {
                let mut offsets = [0; 3];
                let mut below = span;
                for offset in offsets.iter_mut().take(depth) {
                    below /= p;
                    *offset = ((rest / below) % p) as usize;
                }
                return Some(Path {
                    root: DIRECT + depth - 1,
                    depth,
                    offsets,
                });
            }
            rest -= span;
        }
        None
    }

    /// The first file block that root pointer `root` maps, and how many
    /// indirect levels hang below it.
    pub(crate) fn root_range(&self, root: usize) -> (u64, usize) {
        let p = self.ptrs_per_block();
        match root {
            r if r < DIRECT => (r as u64, 0),
            r => {
                let depth = r - DIRECT + 1;
                let mut start = DIRECT as u64;
                let mut span = 1;
                for _ in 1..depth {
                    span *= p;
                    start += span;
                }
                (start, depth)
            }
        }
    }

    /// Write the superblock for this geometry into `buf` (one block).
    pub fn encode_superblock(&self, buf: &mut [u8]) {
        buf.fill(0);
        buf[0..8].copy_from_slice(&MAGIC);
        put_u32(buf, 8, VERSION);
        put_u32(buf, 12, self.block_size);
        put_u64(buf, 16, self.block_count);
        put_u64(buf, 24, self.bitmap_start);
        put_u64(buf, 32, self.bitmap_blocks);
        put_u64(buf, 40, self.itable_start);
        put_u64(buf, 48, self.itable_blocks);
        put_u64(buf, 56, self.inode_slots);
        put_u64(buf, 64, self.data_start);
        put_u32(buf, 72, PAGE_SIZE as u32);
        put_u32(buf, 76, 0); // feature flags: none defined in version 1
        let crc = crc32c(&buf[..SB_CRC_OFFSET]);
        put_u32(buf, SB_CRC_OFFSET, crc);
    }

    /// Parse and validate a superblock read from a device with the given
    /// block size and block count.
    pub fn decode_superblock(
        buf: &[u8],
        device_block_size: u32,
        device_blocks: u64,
    ) -> Result<Geometry, Error> {
        let corrupt = |what: String| Error::Corrupt { block: 0, what };
        if buf.len() < SB_CRC_OFFSET + 4 {
            return Err(corrupt(format!("superblock is only {} bytes", buf.len())));
        }
        if buf[0..8] != MAGIC {
            return Err(corrupt(format!(
                "bad magic {:02x?} (not a blockmap filesystem)",
                &buf[0..8]
            )));
        }
        let stored_crc = get_u32(buf, SB_CRC_OFFSET);
        let crc = crc32c(&buf[..SB_CRC_OFFSET]);
        if stored_crc != crc {
            return Err(corrupt(format!(
                "checksum {stored_crc:#010x}, computed {crc:#010x}"
            )));
        }
        let version = get_u32(buf, 8);
        if version != VERSION {
            return Err(Error::Unsupported(format!(
                "on-disk format version {version} (this code reads {VERSION})"
            )));
        }
        let page_size = get_u32(buf, 72);
        if page_size as usize != PAGE_SIZE {
            return Err(Error::Unsupported(format!(
                "made for page size {page_size}, this code uses {PAGE_SIZE}"
            )));
        }
        let features = get_u32(buf, 76);
        if features != 0 {
            return Err(Error::Unsupported(format!(
                "unknown feature flags {features:#x}"
            )));
        }
        let stored = Geometry {
            block_size: get_u32(buf, 12),
            block_count: get_u64(buf, 16),
            bitmap_start: get_u64(buf, 24),
            bitmap_blocks: get_u64(buf, 32),
            itable_start: get_u64(buf, 40),
            itable_blocks: get_u64(buf, 48),
            inode_slots: get_u64(buf, 56),
            data_start: get_u64(buf, 64),
        };
        if stored.block_size != device_block_size {
            return Err(corrupt(format!(
                "made with block size {}, the device has {device_block_size}",
                stored.block_size
            )));
        }
        if stored.block_count > device_blocks {
            return Err(corrupt(format!(
                "filesystem of {} blocks on a device of {device_blocks}",
                stored.block_count
            )));
        }
        let expected = Geometry::for_device(stored.block_size, stored.block_count)
            .map_err(|e| corrupt(format!("impossible geometry: {e}")))?;
        if expected != stored {
            return Err(corrupt(format!(
                "inconsistent geometry {stored:?}, expected {expected:?}"
            )));
        }
        Ok(stored)
    }
}

/// Where a file block's pointer lives: root pointer `root` of the inode
/// record, then `depth` indirect blocks indexed by `offsets[..depth]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Path {
    pub root: usize,
    pub depth: usize,
    pub offsets: [usize; 3],
}

/// An inode record: which inode owns the slot and its block tree's roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub slot: u64,
    pub ino: u64,
    pub ptrs: [u32; ROOTS],
}

/// What an inode table slot holds.
pub(crate) enum Slot {
    Empty,
    Used(Record),
    Bad(String),
}

/// Decode the 64-byte slot `slot` from `bytes`.
pub(crate) fn decode_slot(bytes: &[u8], slot: u64) -> Slot {
    let flags = get_u32(bytes, 8);
    if flags == 0 {
        return if bytes.iter().all(|&b| b == 0) {
            Slot::Empty
        } else {
            Slot::Bad("an empty slot holds nonzero bytes".into())
        };
    }
    if flags != FLAG_USED {
        return Slot::Bad(format!("unknown record flags {flags:#x}"));
    }
    let stored_crc = get_u32(bytes, RECORD_CRC_OFFSET);
    let crc = crc32c(&bytes[..RECORD_CRC_OFFSET]);
    if stored_crc != crc {
        return Slot::Bad(format!(
            "record checksum {stored_crc:#010x}, computed {crc:#010x}"
        ));
    }
    let mut ptrs = [0; ROOTS];
    for (i, p) in ptrs.iter_mut().enumerate() {
        *p = get_u32(bytes, 12 + 4 * i);
    }
    Slot::Used(Record {
        slot,
        ino: get_u64(bytes, 0),
        ptrs,
    })
}

/// Encode `rec` into its 64 bytes.
pub(crate) fn encode_record(rec: &Record, out: &mut [u8]) {
    out[..RECORD_SIZE].fill(0);
    put_u64(out, 0, rec.ino);
    put_u32(out, 8, FLAG_USED);
    for (i, p) in rec.ptrs.iter().enumerate() {
        put_u32(out, 12 + 4 * i, *p);
    }
    let crc = crc32c(&out[..RECORD_CRC_OFFSET]);
    put_u32(out, RECORD_CRC_OFFSET, crc);
}

pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// CRC-32C (Castagnoli), as used by ext4 and btrfs metadata checksums.
pub fn crc32c(data: &[u8]) -> u32 {
    // Slicing-by-8: eight bytes per step through eight tables (8 KiB), the
    // same CRC as a byte at a time. Every lockless readpage checks one
    // record, and WebAssembly has no CRC instruction, so the checksum is a
    // visible part of a plugin's readpage; this takes it from ~60 dependent
    // table lookups to ~8 steps of 8 independent ones.
    const TABLES: [[u32; 256]; 8] = {
        let mut tables = [[0u32; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
                k += 1;
            }
            tables[0][i] = c;
            i += 1;
        }
        let mut t = 1;
        while t < 8 {
            let mut i = 0;
            while i < 256 {
                let prev = tables[t - 1][i];
                tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
                i += 1;
            }
            t += 1;
        }
        tables
    };
    let t = &TABLES;
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The first clear bit of `bits` in `[from, to)` (bit `i` is bit `i % 8` of
/// byte `i / 8`).
pub(crate) fn find_zero_bit(bits: &[u8], from: usize, to: usize) -> Option<usize> {
    let mut i = from;
    while i < to {
        if i.is_multiple_of(64) && i + 64 <= to {
            let word = u64::from_le_bytes(bits[i / 8..i / 8 + 8].try_into().expect("8 bytes"));
            if word == u64::MAX {
                i += 64;
                continue;
            }
            return Some(i + (!word).trailing_zeros() as usize);
        }
        if bits[i / 8] & (1 << (i % 8)) == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

pub(crate) fn test_bit(bits: &[u8], i: usize) -> bool {
    bits[i / 8] & (1 << (i % 8)) != 0
}

pub(crate) fn set_bit(bits: &mut [u8], i: usize, value: bool) {
    if value {
        bits[i / 8] |= 1 << (i % 8);
    } else {
        bits[i / 8] &= !(1 << (i % 8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn crc32c_by_eight_bytes_matches_a_byte_at_a_time() {
        fn bytewise(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0x82f6_3b78
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let data: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..data.len() {
            for start in [0, 1, 3] {
                let slice = &data[start.min(len)..len];
                assert_eq!(crc32c(slice), bytewise(slice), "{} bytes", slice.len());
            }
        }
    }

    #[test]
    fn paths_cover_every_level_without_gaps() {
        let g = Geometry::for_device(512, 4096).unwrap();
        let p = g.ptrs_per_block();
        assert_eq!(
            g.path(0).unwrap(),
            Path {
                root: 0,
                depth: 0,
                offsets: [0; 3]
            }
        );
        assert_eq!(g.path(8).unwrap().root, 8);
        assert_eq!(
            g.path(9).unwrap(),
            Path {
                root: 9,
                depth: 1,
                offsets: [0, 0, 0]
            }
        );
        assert_eq!(
            g.path(9 + p - 1).unwrap(),
            Path {
                root: 9,
                depth: 1,
                offsets: [p as usize - 1, 0, 0]
            }
        );
        assert_eq!(
            g.path(9 + p).unwrap(),
            Path {
                root: 10,
                depth: 2,
                offsets: [0, 0, 0]
            }
        );
        assert_eq!(
            g.path(9 + p + p + 3).unwrap(),
            Path {
                root: 10,
                depth: 2,
                offsets: [1, 3, 0]
            }
        );
        assert_eq!(
            g.path(9 + p + p * p).unwrap(),
            Path {
                root: 11,
                depth: 3,
                offsets: [0, 0, 0]
            }
        );
        assert_eq!(
            g.path(g.max_file_blocks() - 1).unwrap().offsets,
            [p as usize - 1; 3]
        );
        assert!(g.path(g.max_file_blocks()).is_none());
        for root in 0..ROOTS {
            let (start, depth) = g.root_range(root);
            let path = g.path(start).unwrap();
            assert_eq!((path.root, path.depth), (root, depth));
        }
    }

    #[test]
    fn superblock_round_trips_and_rejects_damage() {
        let g = Geometry::for_device(4096, 1000).unwrap();
        let mut buf = vec![0; 4096];
        g.encode_superblock(&mut buf);
        assert_eq!(Geometry::decode_superblock(&buf, 4096, 1000).unwrap(), g);
        assert!(matches!(
            Geometry::decode_superblock(&buf, 512, 1000),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            Geometry::decode_superblock(&buf, 4096, 999),
            Err(Error::Corrupt { .. })
        ));
        for byte in [0, 9, 20, 70, 81] {
            let mut bad = buf.clone();
            bad[byte] ^= 0x40;
            assert!(
                Geometry::decode_superblock(&bad, 4096, 1000).is_err(),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn find_zero_bit_skips_full_words() {
        let mut bits = vec![0xff; 32];
        assert_eq!(find_zero_bit(&bits, 0, 256), None);
        set_bit(&mut bits, 200, false);
        assert_eq!(find_zero_bit(&bits, 0, 256), Some(200));
        assert_eq!(find_zero_bit(&bits, 3, 200), None);
        assert_eq!(find_zero_bit(&bits, 201, 256), None);
        set_bit(&mut bits, 5, false);
        assert_eq!(find_zero_bit(&bits, 0, 256), Some(5));
        assert!(!test_bit(&bits, 5));
    }
}
