//! Native tests of blockmap over the in-memory device.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const P: usize = PAGE_SIZE;

fn page_of(byte: u8) -> Vec<u8> {
    (0..P).map(|i| byte.wrapping_add(i as u8)).collect()
}

fn read(map: &BlockMap<impl BlockIo, impl MetaLock>, ino: u64, index: u64, size: u64) -> Vec<u8> {
    let mut buf = vec![0xee; P];
    let n = map.read_page(ino, index, size, &mut buf).unwrap();
    assert!(
        buf[n..].iter().all(|&b| b == 0),
        "bytes past the returned length must be zero"
    );
    buf
}

fn fresh(block_size: u32, blocks: u64) -> BlockMap<MemDevice, NoLock> {
    BlockMap::open(MemDevice::new(block_size, blocks), NoLock).unwrap()
}

#[test]
fn a_zero_device_is_formatted_and_reads_zeros() {
    let map = fresh(4096, 256);
    let g = map.geometry().clone();
    assert_eq!((g.bitmap_start, g.bitmap_blocks, g.itable_start), (1, 1, 2));
    assert_eq!(read(&map, 7, 0, 10 * P as u64), vec![0; P]);
    let report = map.check().unwrap();
    assert_eq!(report.inodes, 0);
    assert_eq!(report.free_blocks, g.block_count - g.data_start);
    // Reopening finds the same filesystem instead of formatting again.
    let dev = map.device();
    let again = BlockMap::open(dev, NoLock).unwrap();
    assert_eq!(again.geometry(), &g);
}

#[test]
fn pages_round_trip_and_survive_a_remount() {
    let dev = MemDevice::new(4096, 512);
    {
        let map = BlockMap::open(&dev, NoLock).unwrap();
        for index in [0u64, 1, 8, 9, 10, 1100] {
            let out = map
                .write_page(3, index, 1 << 30, &page_of(index as u8), Wait::Block)
                .unwrap();
            assert_eq!(out, WriteOutcome::Written);
        }
        map.write_page(4, 0, 1 << 30, &page_of(99), Wait::Block)
            .unwrap();
    }
    let map = BlockMap::open(&dev, NoLock).unwrap();
    for index in [0u64, 1, 8, 9, 10, 1100] {
        assert_eq!(
            read(&map, 3, index, 1 << 30),
            page_of(index as u8),
            "page {index}"
        );
    }
    assert_eq!(read(&map, 3, 2, 1 << 30), vec![0; P], "a hole");
    assert_eq!(read(&map, 4, 0, 1 << 30), page_of(99));
    let report = map.check().unwrap();
    assert_eq!(report.inodes, 2);
    assert_eq!(report.data_blocks, 7);
    assert_eq!(
        report.indirect_blocks, 3,
        "the single indirect block, and two for page 1100"
    );
    assert!(report.leaked_blocks.is_empty());
}

#[test]
fn bytes_at_or_past_i_size_are_neither_stored_nor_read() {
    let map = fresh(1024, 512);
    let size = P as u64 + 1500; // page 1 has 1500 valid bytes: two 1 KiB blocks
    map.write_page(1, 1, size, &page_of(1), Wait::Block)
        .unwrap();
    assert_eq!(map.check().unwrap().data_blocks, 2);
    let got = read(&map, 1, 1, size);
    assert_eq!(&got[..1500], &page_of(1)[..1500]);
    assert!(got[1500..].iter().all(|&b| b == 0));
    // Even if i_size grows later without a write, the stored tail is zero.
    let got = read(&map, 1, 1, 1 << 20);
    assert!(got[1500..].iter().all(|&b| b == 0));
    assert_eq!(
        map.write_page(1, 5, size, &page_of(5), Wait::Block)
            .unwrap(),
        WriteOutcome::PastEof
    );
    assert_eq!(read(&map, 1, 5, size), vec![0; P]);
}

#[test]
fn every_indirect_level_maps_and_truncates() {
    // 512-byte blocks: 128 pointers per block, 8 blocks per page, so the
    // double indirect range starts at page 17 and the triple at page 2065.
    let map = fresh(512, 40_000);
    let size = 3000 * P as u64;
    let pages = [0u64, 1, 2, 16, 17, 18, 200, 2064, 2065, 2066, 2999];
    for &index in &pages {
        map.write_page(9, index, size, &page_of(index as u8), Wait::Block)
            .unwrap();
    }
    for &index in &pages {
        assert_eq!(
            read(&map, 9, index, size),
            page_of(index as u8),
            "page {index}"
        );
    }
    let full = map.check().unwrap();
    assert_eq!(full.data_blocks, pages.len() as u64 * 8);

    // Shrink into the double indirect range, mid-block.
    let size2 = 18 * P as u64 + 700;
    map.truncate(9, size2).unwrap();
    let report = map.check().unwrap();
    assert!(report.leaked_blocks.is_empty(), "{report:?}");
    assert_eq!(
        report.data_blocks,
        5 * 8 + 2,
        "pages 0,1,2,16,17 and two blocks of page 18"
    );
    // Grow again: the old tail must read back as zeros.
    let got = read(&map, 9, 18, size);
    assert_eq!(&got[..700], &page_of(18)[..700]);
    assert!(got[700..].iter().all(|&b| b == 0));
    assert_eq!(read(&map, 9, 2065, size), vec![0; P]);

    map.truncate(9, 0).unwrap();
    let report = map.check().unwrap();
    assert_eq!((report.data_blocks, report.indirect_blocks), (0, 0));
    assert_eq!(
        report.free_blocks,
        full.free_blocks + full.data_blocks + full.indirect_blocks
    );
    assert_eq!(report.inodes, 1, "records are kept");
}

#[test]
fn full_device_reports_enospc_and_truncate_gives_space_back() {
    let map = fresh(4096, 64);
    let free = map.check().unwrap().free_blocks;
    let mut written = 0u64;
    let err = loop {
        match map.write_page(1, written, u64::MAX, &page_of(1), Wait::Block) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written <= free);
    };
    assert_eq!(err, Error::NoSpace("no free block"));
    assert_eq!(err.errno(), Errno::NoSpc);
    let report = map.check().unwrap();
    assert_eq!(report.free_blocks, 0);
    assert!(
        report.leaked_blocks.is_empty(),
        "a failed allocation leaves nothing behind"
    );
    // The pages written before ENOSPC are intact.
    assert_eq!(read(&map, 1, 0, u64::MAX), page_of(1));
    map.truncate(1, 0).unwrap();
    assert_eq!(map.check().unwrap().free_blocks, free);
    map.write_page(2, 0, u64::MAX, &page_of(2), Wait::Block)
        .unwrap();
}

#[test]
fn a_full_inode_table_reports_enospc_until_a_file_is_emptied() {
    let map = fresh(4096, 256); // 64 inode slots, 253 data blocks
    let slots = map.geometry().inode_slots;
    assert_eq!(slots, 64);
    for ino in 0..slots {
        map.write_page(ino, 0, 1, &[ino as u8], Wait::Block)
            .unwrap();
    }
    assert_eq!(
        map.write_page(slots, 0, 1, &[1], Wait::Block),
        Err(Error::NoSpace("the inode table is full"))
    );
    // Every inode is still found through its probe sequence.
    for ino in 0..slots {
        assert_eq!(read(&map, ino, 0, 1)[0], ino as u8, "ino {ino}");
    }
    // An inode truncated to nothing gives its slot to the next new one.
    map.truncate(17, 0).unwrap();
    map.write_page(1000, 0, 1, &[99], Wait::Block).unwrap();
    assert_eq!(read(&map, 1000, 0, 1)[0], 99);
    assert_eq!(read(&map, 17, 0, 1), vec![0; P]);
    for ino in (0..slots).filter(|&i| i != 17) {
        assert_eq!(read(&map, ino, 0, 1)[0], ino as u8, "ino {ino}");
    }
    let report = map.check().unwrap();
    assert_eq!(report.inodes, slots);
    // Writing an existing inode never takes a second slot, even when an
    // emptied record sits earlier in its probe sequence.
    map.truncate(1000, 0).unwrap();
    for ino in 0..slots {
        map.write_page(ino, 1, 2 * P as u64, &page_of(1), Wait::Block)
            .ok();
    }
    map.check().unwrap();
}

#[test]
fn pages_past_the_largest_file_are_efbig() {
    let map = fresh(512, 1000);
    let max_pages = map.geometry().max_file_blocks() / 8;
    let err = map
        .write_page(1, max_pages, u64::MAX, &page_of(0), Wait::Block)
        .unwrap_err();
    assert_eq!(err.errno(), Errno::FBig);
    assert_eq!(read(&map, 1, max_pages + 5, u64::MAX), vec![0; P]);
}

#[test]
fn damaged_superblocks_are_errors_not_panics() {
    let dev = MemDevice::new(4096, 128);
    BlockMap::open(&dev, NoLock).unwrap();
    let image = dev.image();
    for (at, what) in [
        (0, "magic"),
        (8, "version"),
        (16, "geometry"),
        (40, "geometry"),
        (80, "checksum"),
    ] {
        let bad = MemDevice::from_image(4096, image.clone());
        bad.with_image(|img| img[at] ^= 0x10);
        let err = BlockMap::open(&bad, NoLock)
            .err()
            .unwrap_or_else(|| panic!("{what} damage accepted"));
        assert!(
            matches!(err, Error::Corrupt { block: 0, .. }),
            "{what}: {err}"
        );
        assert_eq!(err.errno(), Errno::Io);
    }
    // Garbage that is not zeros is not formatted over.
    let junk = MemDevice::new(4096, 128);
    junk.with_image(|img| img[100] = 1);
    assert!(BlockMap::open(&junk, NoLock).is_err());
    assert_eq!(junk.image()[100], 1);
    // Wrong block size for the image.
    let other = MemDevice::from_image(2048, image);
    assert!(BlockMap::open(&other, NoLock).is_err());
}

#[test]
fn unusable_devices_are_refused() {
    assert!(matches!(
        BlockMap::open(MemDevice::new(1536, 100), NoLock),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        BlockMap::open(MemDevice::new(8192, 100), NoLock),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        BlockMap::open(MemDevice::new(4096, 0), NoLock),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        BlockMap::open(MemDevice::new(4096, 4), NoLock),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn damaged_records_and_pointers_are_errors_not_panics() {
    let dev = MemDevice::new(4096, 128);
    let map = BlockMap::open(&dev, NoLock).unwrap();
    map.write_page(5, 0, u64::MAX, &page_of(5), Wait::Block)
        .unwrap();
    let (block, offset) = map.geometry().slot_position(map.geometry().home_slot(5));
    let at = block as usize * 4096 + offset;

    // A pointer into the metadata area (checksum fixed up so only the
    // pointer is wrong).
    let saved = dev.image();
    dev.with_image(|img| {
        img[at + 12..at + 16].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c(&img[at..at + 60]);
        img[at + 60..at + 64].copy_from_slice(&crc.to_le_bytes());
    });
    let mut buf = vec![0; P];
    let err = map.read_page(5, 0, u64::MAX, &mut buf).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(map.check().is_err());
    assert!(map.truncate(5, 0).is_err());

    // A flipped bit caught by the record checksum.
    dev.with_image(|img| img.copy_from_slice(&saved));
    dev.with_image(|img| img[at + 20] ^= 1);
    assert!(matches!(
        map.read_page(5, 0, u64::MAX, &mut buf),
        Err(Error::Corrupt { .. })
    ));
    assert!(
        map.write_page(5, 1, u64::MAX, &page_of(1), Wait::Block)
            .is_err()
    );
}

#[test]
fn device_errors_carry_their_errno_and_leave_no_half_allocation() {
    let dev = MemDevice::new(4096, 128);
    let map = BlockMap::open(&dev, NoLock).unwrap();
    let before = map.check().unwrap();
    dev.fail_writes_after(Some(0));
    let err = map
        .write_page(1, 20, u64::MAX, &page_of(1), Wait::Block)
        .unwrap_err();
    assert_eq!(err.errno(), Errno::Io);
    dev.fail_writes_after(None);
    assert_eq!(map.check().unwrap(), before, "nothing was allocated");
}

/// Cut the power after every possible number of block writes of an
/// allocating write and of a truncate: after a remount fsck must pass
/// (blocks may leak, nothing may be referenced and free, or twice), and the
/// page reads back as either its old or its new contents, never garbage.
#[test]
fn a_crash_at_any_write_leaves_a_consistent_filesystem() {
    let base = MemDevice::new(4096, 4096);
    {
        let map = BlockMap::open(&base, NoLock).unwrap();
        for index in 0..12 {
            map.write_page(1, index, u64::MAX, &page_of(index as u8), Wait::Block)
                .unwrap();
        }
    }
    let image = base.image();
    // Page 2000 needs a data block and two new indirect blocks (double
    // indirect range) besides the bitmap and the record.
    for cut in 0.. {
        let dev = MemDevice::from_image(4096, image.clone());
        let map = BlockMap::open(&dev, NoLock).unwrap();
        dev.fail_writes_after(Some(cut));
        let done = map
            .write_page(1, 2000, u64::MAX, &page_of(7), Wait::Block)
            .is_ok();
        dev.fail_writes_after(None);
        let map = BlockMap::open(&dev, NoLock).unwrap();
        map.check()
            .unwrap_or_else(|e| panic!("write cut after {cut} writes: {e}"));
        let got = read(&map, 1, 2000, u64::MAX);
        assert!(
            got == page_of(7) || got == vec![0; P],
            "write cut after {cut} writes: garbage"
        );
        if done {
            assert_eq!(got, page_of(7));
            break;
        }
    }
    for cut in 0.. {
        let dev = MemDevice::from_image(4096, image.clone());
        let map = BlockMap::open(&dev, NoLock).unwrap();
        dev.fail_writes_after(Some(cut));
        let done = map.truncate(1, 3 * P as u64 + 100).is_ok();
        dev.fail_writes_after(None);
        let map = BlockMap::open(&dev, NoLock).unwrap();
        let report = map
            .check()
            .unwrap_or_else(|e| panic!("truncate cut after {cut} writes: {e}"));
        for index in 0..3 {
            assert_eq!(read(&map, 1, index, u64::MAX), page_of(index as u8));
        }
        if done {
            assert!(report.leaked_blocks.is_empty());
            break;
        }
    }
}

#[test]
fn try_mode_never_waits_and_changes_nothing_when_busy() {
    let lock = LocalLock::new();
    let dev = MemDevice::new(4096, 128);
    let map = BlockMap::open(&dev, &lock).unwrap();
    lock.lock(LockMode::Exclusive).unwrap();
    let writes = dev.writes();
    assert_eq!(
        map.write_page(1, 0, u64::MAX, &page_of(1), Wait::Try)
            .unwrap(),
        WriteOutcome::WouldBlock
    );
    assert_eq!(dev.writes(), writes);
    lock.unlock(LockMode::Exclusive);
    assert_eq!(
        map.write_page(1, 0, u64::MAX, &page_of(1), Wait::Try)
            .unwrap(),
        WriteOutcome::Written
    );
    // A mapped page is overwritten under a shared hold, so other readers of
    // the lock do not stop it.
    lock.lock(LockMode::Shared).unwrap();
    assert_eq!(
        map.write_page(1, 0, u64::MAX, &page_of(2), Wait::Try)
            .unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(
        map.write_page(1, 1, u64::MAX, &page_of(2), Wait::Try)
            .unwrap(),
        WriteOutcome::WouldBlock
    );
    lock.unlock(LockMode::Shared);
    assert_eq!(read(&map, 1, 0, u64::MAX), page_of(2));
}

#[test]
fn instances_sharing_a_device_and_lock_stay_coherent() {
    let dev = Arc::new(MemDevice::new(1024, 8192));
    let lock = Arc::new(LocalLock::new());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (dev, lock) = (dev.clone(), lock.clone());
            std::thread::spawn(move || {
                // Each thread is an "instance": its own BlockMap.
                let map = BlockMap::open(dev, lock).unwrap();
                for round in 0..3u64 {
                    for index in 0..40u64 {
                        let ino = (index + t) % 6;
                        let page = page_of((t * 50 + index + round) as u8);
                        map.write_page(ino * 10 + t, index, u64::MAX, &page, Wait::Block)
                            .unwrap();
                    }
                    map.truncate(t, (20 - round) * P as u64 + 17).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let map = BlockMap::open(dev, lock).unwrap();
    let report = map.check().unwrap();
    assert!(report.leaked_blocks.is_empty());
    for t in 0..4u64 {
        for index in 0..40u64 {
            let ino = (index + t) % 6 * 10 + t;
            let expect = page_of((t * 50 + index + 2) as u8);
            let got = read(&map, ino, index, u64::MAX);
            if ino == t && index >= 18 {
                if index == 18 {
                    assert_eq!(&got[..17], &expect[..17]);
                    assert!(got[17..].iter().all(|&b| b == 0));
                } else {
                    assert_eq!(got, vec![0; P], "ino {ino} page {index}");
                }
            } else {
                assert_eq!(got, expect, "ino {ino} page {index}");
            }
        }
    }
}

/// What the host does, and what the model predicts.
#[derive(Clone, Debug)]
enum Op {
    /// write(2) of `len` bytes of `byte` at `offset`: the host writes back
    /// every page it touched.
    Write {
        ino: u64,
        offset: u64,
        len: usize,
        byte: u8,
    },
    /// truncate(2) to `size`.
    Truncate { ino: u64, size: u64 },
    /// Drop the BlockMap and open the device again.
    Remount,
}

fn op() -> impl Strategy<Value = Op> {
    let offset = prop_oneof![0u64..(24 * P as u64), (2060 * P as u64)..(2070 * P as u64)];
    let size = prop_oneof![0u64..(30 * P as u64), (2050 * P as u64)..(2070 * P as u64)];
    prop_oneof![
        6 => (0u64..3, offset, 1usize..(2 * P), any::<u8>())
            .prop_map(|(ino, offset, len, byte)| Op::Write { ino, offset, len, byte }),
        3 => (0u64..3, size).prop_map(|(ino, size)| Op::Truncate { ino, size }),
        1 => Just(Op::Remount),
    ]
}

/// A file as the page cache sees it: i_size and the pages ever written
/// (absent pages are zeros; bytes past i_size are kept zero).
#[derive(Default)]
struct ModelFile {
    size: u64,
    pages: BTreeMap<u64, Vec<u8>>,
}

impl ModelFile {
    /// Write `len` bytes of `byte` at `offset`; returns the pages touched.
    fn write(&mut self, offset: u64, len: usize, byte: u8) -> std::ops::RangeInclusive<u64> {
        let (p, end) = (P as u64, offset + len as u64);
        self.size = self.size.max(end);
        for index in offset / p..=(end - 1) / p {
            let page = self.pages.entry(index).or_insert_with(|| vec![0; P]);
            let lo = offset.max(index * p) - index * p;
            let hi = end.min((index + 1) * p) - index * p;
            page[lo as usize..hi as usize].fill(byte);
        }
        offset / p..=(end - 1) / p
    }

    fn truncate(&mut self, size: u64) {
        let p = P as u64;
        self.pages.retain(|&index, _| index * p < size);
        if let Some(page) = self.pages.get_mut(&(size / p)) {
            page[(size % p) as usize..].fill(0);
        }
        self.size = size;
    }

    /// The bytes of page `index` below i_size.
    fn page(&self, index: u64) -> Vec<u8> {
        let valid = valid_bytes(self.size, index);
        match self.pages.get(&index) {
            Some(page) => page[..valid].to_vec(),
            None => vec![0; valid],
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random writes, truncates and remounts against a model of the files;
    /// after every write the touched pages read back as the model says, and
    /// at the end every page that was ever written (and a sample of the
    /// holes) does, and fsck is clean with nothing leaked.
    #[test]
    fn random_writes_and_truncates_match_a_model(
        block_size in prop_oneof![Just(512u32), Just(4096u32)],
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let dev = MemDevice::new(block_size, 24_000 * 512 / u64::from(block_size) + 2000);
        let mut map = BlockMap::open(&dev, NoLock).unwrap();
        let mut model: BTreeMap<u64, ModelFile> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Write { ino, offset, len, byte } => {
                    let file = model.entry(ino).or_default();
                    for index in file.write(offset, len, byte) {
                        let want = file.page(index);
                        map.write_page(ino, index, file.size, &want, Wait::Block).unwrap();
                        let got = read(&map, ino, index, file.size);
                        prop_assert_eq!(&got[..want.len()], &want[..]);
                    }
                }
                Op::Truncate { ino, size } => {
                    model.entry(ino).or_default().truncate(size);
                    map.truncate(ino, size).unwrap();
                }
                Op::Remount => {
                    // Forget everything the old instance knew.
                    map = BlockMap::open(&dev, NoLock).unwrap();
                }
            }
        }
        for (&ino, file) in &model {
            let pages = file.size.div_ceil(P as u64);
            let sample = (0..pages).step_by(61);
            for index in file.pages.keys().copied().filter(|&i| i < pages).chain(sample) {
                let want = file.page(index);
                let got = read(&map, ino, index, file.size);
                prop_assert_eq!(&got[..want.len()], &want[..], "ino {} page {}", ino, index);
            }
        }
        let report = map.check().unwrap();
        prop_assert!(report.leaked_blocks.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Many inodes through a 64-slot inode table, each file one byte (so
    /// one block) or empty: a new inode is refused exactly when 64 other
    /// files hold blocks, every file reads back, fsck stays clean.
    #[test]
    fn inode_slots_are_reused_exactly_when_files_are_emptied(
        ops in proptest::collection::vec((0u64..100, any::<bool>(), any::<u8>()), 1..300)
    ) {
        let map = fresh(4096, 256);
        prop_assert_eq!(map.geometry().inode_slots, 64);
        let mut model: HashMap<u64, u8> = HashMap::new();
        for (ino, write, byte) in ops {
            if write {
                let full = !model.contains_key(&ino) && model.len() == 64;
                match map.write_page(ino, 0, 1, &[byte], Wait::Block) {
                    Ok(WriteOutcome::Written) => {
                        prop_assert!(!full, "ino {} got a slot in a full table", ino);
                        model.insert(ino, byte);
                    }
                    Err(Error::NoSpace(_)) => prop_assert!(full, "ino {} refused a slot", ino),
                    other => prop_assert!(false, "ino {}: {:?}", ino, other),
                }
            } else {
                map.truncate(ino, 0).unwrap();
                model.remove(&ino);
            }
        }
        for ino in 0..100 {
            let got = read(&map, ino, 0, 1);
            prop_assert_eq!(got[0], model.get(&ino).copied().unwrap_or(0), "ino {}", ino);
        }
        let report = map.check().unwrap();
        prop_assert_eq!(report.data_blocks, model.len() as u64);
        prop_assert!(report.leaked_blocks.is_empty());
    }
}

#[test]
fn map_page_names_the_run_of_blocks_a_page_is_or_none() {
    // 4 KiB blocks: a page with data is always one block.
    let map = fresh(4096, 256);
    let size = P as u64 + 904;
    map.write_page(3, 0, size, &page_of(1), Wait::Block)
        .unwrap();
    map.write_page(3, 1, size, &page_of(2), Wait::Block)
        .unwrap();
    let mut reader = map.reader(3);
    let first = reader.map_page(0, size).unwrap();
    let (block, len) = first.run().expect("one block");
    assert_eq!(len, P);
    assert_eq!(first.blocks(), [Some(block)]);
    let last = reader.map_page(1, size).unwrap();
    assert_eq!(last.run().map(|(_, len)| len), Some(904), "stops at i_size");
    let past = reader.map_page(2, size).unwrap();
    assert_eq!(
        (past.run(), past.data_len(), past.blocks()),
        (None, 0, &[][..])
    );
    let unknown = map.reader(99).map_page(0, size).unwrap();
    assert_eq!((unknown.run(), unknown.data_len()), (None, 0));

    // 512-byte blocks: a run, a run cut short by a hole, and scattered
    // blocks, which read_mapped still reads right.
    let map = fresh(512, 4096);
    let big = 1 << 20;
    map.write_page(3, 0, big, &page_of(3), Wait::Block).unwrap();
    let whole = map.reader(3).map_page(0, big).unwrap();
    let (start, len) = whole.run().expect("allocated in one run");
    assert_eq!(len, P);
    assert_eq!(
        whole.blocks(),
        (0..8).map(|i| Some(start + i)).collect::<Vec<_>>()
    );
    // Truncate to 1000 bytes, then grow: blocks 2.. are holes.
    map.truncate(3, 1000).unwrap();
    let short = map.reader(3).map_page(0, big).unwrap();
    assert_eq!(short.run(), Some((start, 1024)));
    assert_eq!(short.blocks()[2..], [None; 6]);
    // Ino 4 takes the blocks after ino 5's first two, so ino 5's page ends
    // up in two pieces.
    map.write_page(5, 0, 1024, &page_of(5), Wait::Block)
        .unwrap();
    map.write_page(4, 0, big, &page_of(4), Wait::Block).unwrap();
    map.write_page(5, 0, big, &page_of(6), Wait::Block).unwrap();
    let mut reader = map.reader(5);
    let scattered = reader.map_page(0, big).unwrap();
    assert_eq!((scattered.run(), scattered.data_len()), (None, P));
    let mut buf = vec![0xee; P];
    assert_eq!(reader.read_mapped(&scattered, &mut buf).unwrap(), P);
    assert_eq!(buf, page_of(6));
    assert_eq!(read(&map, 5, 0, big), page_of(6));
}
