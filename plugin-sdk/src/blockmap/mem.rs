//! Native implementations of [`BlockIo`] and [`MetaLock`]: an in-memory
//! device and a reader-writer lock, for tests and native users.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::{BlockIo, Errno, LockMode, MetaLock};

/// A block device in memory. Never-written blocks read as zeros. Counts
/// reads and writes, and can be told to fail writes (fault injection).
pub struct MemDevice {
    block_size: u32,
    block_count: u64,
    data: Mutex<Vec<u8>>,
    reads: AtomicU64,
    writes: AtomicU64,
    /// Writes still allowed before every write fails with EIO (`u64::MAX`:
    /// never fail).
    writes_left: AtomicU64,
}

impl MemDevice {
    /// A zero-filled device of `block_count` blocks of `block_size` bytes.
    pub fn new(block_size: u32, block_count: u64) -> Self {
        let len =
            usize::try_from(u64::from(block_size) * block_count).expect("device fits in memory");
        Self::from_image(block_size, vec![0; len])
    }

    /// A device holding `image` (its length a multiple of `block_size`).
    pub fn from_image(block_size: u32, image: Vec<u8>) -> Self {
        assert!(
            block_size > 0 && image.len().is_multiple_of(block_size as usize),
            "image is not whole blocks"
        );
        MemDevice {
            block_size,
            block_count: (image.len() / block_size as usize) as u64,
            data: Mutex::new(image),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            writes_left: AtomicU64::new(u64::MAX),
        }
    }

    fn data(&self) -> MutexGuard<'_, Vec<u8>> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the whole image.
    pub fn image(&self) -> Vec<u8> {
        self.data().clone()
    }

    /// Change the image directly (to corrupt it in a test).
    pub fn with_image<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self.data())
    }

    /// Block reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Block writes so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Let `n` more writes succeed, then fail every write with EIO
    /// (`None`: never fail).
    pub fn fail_writes_after(&self, n: Option<u64>) {
        self.writes_left
            .store(n.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn range(&self, block: u64, len: usize) -> Result<std::ops::Range<usize>, Errno> {
        if block >= self.block_count || len != self.block_size as usize {
            return Err(Errno::Inval);
        }
        let start = block as usize * self.block_size as usize;
        Ok(start..start + len)
    }
}

impl BlockIo for MemDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read_block(&self, block: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let range = self.range(block, buf.len())?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        buf.copy_from_slice(&self.data()[range]);
        Ok(())
    }

    fn write_block(&self, block: u64, data: &[u8]) -> Result<(), Errno> {
        let range = self.range(block, data.len())?;
        let left = self.writes_left.load(Ordering::Relaxed);
        if left == 0 {
            return Err(Errno::Io);
        }
        if left != u64::MAX {
            self.writes_left.store(left - 1, Ordering::Relaxed);
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.data()[range].copy_from_slice(data);
        Ok(())
    }

    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }
}

/// No locking at all: for a device only one thread uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLock;

impl MetaLock for NoLock {
    fn lock(&self, _mode: LockMode) -> Result<(), Errno> {
        Ok(())
    }
    fn try_lock(&self, _mode: LockMode) -> bool {
        true
    }
    fn unlock(&self, _mode: LockMode) {}
}

/// A reader-writer lock for threads of one process (writers are not
/// starved: a waiting writer stops new readers).
#[derive(Debug, Default)]
pub struct LocalLock {
    state: Mutex<LockState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct LockState {
    readers: usize,
    writer: bool,
    writers_waiting: usize,
}

impl LocalLock {
    /// A free lock.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, LockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn can_take(state: &LockState, mode: LockMode) -> bool {
        match mode {
            LockMode::Shared => !state.writer && state.writers_waiting == 0,
            LockMode::Exclusive => !state.writer && state.readers == 0,
        }
    }

    fn take(state: &mut LockState, mode: LockMode) {
        match mode {
            LockMode::Shared => state.readers += 1,
            LockMode::Exclusive => state.writer = true,
        }
    }
}

impl MetaLock for LocalLock {
    fn lock(&self, mode: LockMode) -> Result<(), Errno> {
        let mut state = self.state();
        if mode == LockMode::Exclusive {
            state.writers_waiting += 1;
        }
        while !Self::can_take(&state, mode) {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if mode == LockMode::Exclusive {
            state.writers_waiting -= 1;
        }
        Self::take(&mut state, mode);
        Ok(())
    }

    fn try_lock(&self, mode: LockMode) -> bool {
        let mut state = self.state();
        let free = Self::can_take(&state, mode);
        if free {
            Self::take(&mut state, mode);
        }
        free
    }

    fn unlock(&self, mode: LockMode) {
        let mut state = self.state();
        match mode {
            LockMode::Shared => {
                assert!(
                    state.readers > 0,
                    "shared unlock of a lock nobody holds shared"
                );
                state.readers -= 1;
            }
            LockMode::Exclusive => {
                assert!(
                    state.writer,
                    "exclusive unlock of a lock nobody holds exclusively"
                );
                state.writer = false;
            }
        }
        drop(state);
        self.changed.notify_all();
    }
}
