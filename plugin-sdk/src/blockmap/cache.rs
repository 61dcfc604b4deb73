//! The blocks one operation reads and changes.
//!
//! A `Blocks` lives for one operation only (nothing survives the call, so
//! instances never act on stale metadata). Under the exclusive lock it is
//! also the transaction buffer: changes stay in memory until the operation
//! flushes them in crash-safe order, and an operation that fails before its
//! flush leaves the device exactly as it was.

use std::collections::BTreeMap;

use super::layout::Geometry;
use super::{BlockIo, Error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// As on the device.
    Clean,
    /// An existing block changed in memory.
    Dirty,
    /// A block allocated by this operation, to be written before any block
    /// that points to it; the number orders allocations.
    Fresh(u32),
}

struct Entry {
    data: Box<[u8]>,
    state: State,
}

pub(crate) struct Blocks<'a, D: ?Sized> {
    dev: &'a D,
    geo: &'a Geometry,
    map: BTreeMap<u64, Entry>,
    next_fresh: u32,
}

impl<'a, D: BlockIo + ?Sized> Blocks<'a, D> {
    pub(crate) fn new(dev: &'a D, geo: &'a Geometry) -> Self {
        Blocks {
            dev,
            geo,
            map: BTreeMap::new(),
            next_fresh: 0,
        }
    }

    fn load(&mut self, block: u64) -> Result<&mut Entry, Error> {
        if !self.map.contains_key(&block) {
            let mut data = vec![0; self.geo.block_size as usize].into_boxed_slice();
            read_block(self.dev, block, &mut data)?;
            self.map.insert(
                block,
                Entry {
                    data,
                    state: State::Clean,
                },
            );
        }
        Ok(self.map.get_mut(&block).expect("just inserted"))
    }

    /// The contents of `block`, read on first use.
    pub(crate) fn get(&mut self, block: u64) -> Result<&[u8], Error> {
        Ok(&self.load(block)?.data)
    }

    /// The contents of `block` for changing; it will be written at flush.
    pub(crate) fn get_mut(&mut self, block: u64) -> Result<&mut [u8], Error> {
        let entry = self.load(block)?;
        if entry.state == State::Clean {
            entry.state = State::Dirty;
        }
        Ok(&mut entry.data)
    }

    /// A newly allocated metadata block, zero-filled without reading it.
    pub(crate) fn fresh(&mut self, block: u64) -> &mut [u8] {
        let seq = self.next_fresh;
        self.next_fresh += 1;
        let data = vec![0; self.geo.block_size as usize].into_boxed_slice();
        &mut self
            .map
            .entry(block)
            .insert_entry(Entry {
                data,
                state: State::Fresh(seq),
            })
            .into_mut()
            .data
    }

    /// Drop any cached copy of `block` (to re-read it, or because it was
    /// freed and must not be written).
    pub(crate) fn forget(&mut self, block: u64) {
        self.map.remove(&block);
    }

    /// Write the changed bitmap blocks.
    pub(crate) fn flush_bitmap(&mut self) -> Result<(), Error> {
        let geo = self.geo;
        self.flush_where(|block, state| geo.is_bitmap_block(block) && state != State::Clean)
    }

    /// Write the changed metadata other than the bitmap: fresh blocks first,
    /// newest first (children before the parents that point to them), then
    /// the existing blocks that now point to them. A reader that follows a
    /// pointer therefore always finds what it points to fully written.
    pub(crate) fn flush_metadata(&mut self) -> Result<(), Error> {
        let geo = self.geo;
        let mut fresh: Vec<(u32, u64)> = self
            .map
            .iter()
            .filter_map(|(&block, e)| match e.state {
                State::Fresh(seq) if !geo.is_bitmap_block(block) => Some((seq, block)),
                _ => None,
            })
            .collect();
        fresh.sort_unstable_by_key(|&(seq, _)| std::cmp::Reverse(seq));
        for (_, block) in fresh {
            let entry = self.map.get_mut(&block).expect("listed");
            write_block(self.dev, block, &entry.data)?;
            entry.state = State::Clean;
        }
        self.flush_where(|block, state| !geo.is_bitmap_block(block) && state == State::Dirty)
    }

    fn flush_where(&mut self, pick: impl Fn(u64, State) -> bool) -> Result<(), Error> {
        for (&block, entry) in self.map.iter_mut() {
            if pick(block, entry.state) {
                write_block(self.dev, block, &entry.data)?;
                entry.state = State::Clean;
            }
        }
        Ok(())
    }
}

/// Read `block` into `buf`, naming the block in the error.
pub(crate) fn read_block<D: BlockIo + ?Sized>(
    dev: &D,
    block: u64,
    buf: &mut [u8],
) -> Result<(), Error> {
    dev.read_block(block, buf).map_err(|errno| Error::Device {
        op: "read",
        block,
        errno,
    })
}

/// Write `block` from `data`, naming the block in the error.
pub(crate) fn write_block<D: BlockIo + ?Sized>(
    dev: &D,
    block: u64,
    data: &[u8],
) -> Result<(), Error> {
    dev.write_block(block, data).map_err(|errno| Error::Device {
        op: "write",
        block,
        errno,
    })
}
