//! Models struct page and include/linux/page-flags.h: a page of the page
//! cache with its flags, reference count and sleeping page lock.
//!
//! The page lock is a bit in the flags plus a wait queue, as in the kernel:
//! `lock_page` sleeps on a condition variable until the bit is clear (no
//! spinning), `unlock_page` clears the bit and wakes the sleepers. Every
//! unlock bumps `lock_seq`, so the contract checker can tell "the callee
//! unlocked it" from "it is still locked by the caller" even when another
//! thread has taken the lock again in between.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::trace::{Observer, TraceEvent};

/// PAGE_CACHE_SIZE: bytes per page.
pub const PAGE_SIZE: usize = 4096;
/// PAGE_CACHE_SHIFT.
pub const PAGE_SHIFT: u32 = 12;

/// Page flag bits (enum pageflags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PageFlag {
    /// PG_locked: the page lock is held.
    Locked = 1 << 0,
    /// PG_error: the last I/O failed.
    Error = 1 << 1,
    /// PG_referenced: accessed since the last scan.
    Referenced = 1 << 2,
    /// PG_uptodate: the data is valid.
    Uptodate = 1 << 3,
    /// PG_dirty: newer than the backing store.
    Dirty = 1 << 4,
    /// PG_lru: on an LRU list.
    Lru = 1 << 5,
    /// PG_active: on the active list.
    Active = 1 << 6,
    /// PG_private: the filesystem attached private state.
    Private = 1 << 7,
    /// PG_writeback: write I/O in flight.
    Writeback = 1 << 8,
    /// PG_reclaim: reclaim asked for this page to be written.
    Reclaim = 1 << 9,
    /// PG_readahead: the async readahead marker (shares PG_reclaim's bit in
    /// the kernel; separate here so traces are unambiguous).
    Readahead = 1 << 10,
}

const ALL_FLAGS: [(PageFlag, &str); 11] = [
    (PageFlag::Locked, "locked"),
    (PageFlag::Error, "error"),
    (PageFlag::Referenced, "referenced"),
    (PageFlag::Uptodate, "uptodate"),
    (PageFlag::Dirty, "dirty"),
    (PageFlag::Lru, "lru"),
    (PageFlag::Active, "active"),
    (PageFlag::Private, "private"),
    (PageFlag::Writeback, "writeback"),
    (PageFlag::Reclaim, "reclaim"),
    (PageFlag::Readahead, "readahead"),
];

/// State every page of one engine shares: the trace observer and the global
/// dirty-page count (the kernel's NR_FILE_DIRTY).
#[derive(Default)]
pub struct PageShared {
    pub(crate) observer: Option<Arc<dyn Observer>>,
    pub(crate) nr_dirty: AtomicI64,
}

impl PageShared {
    pub(crate) fn emit(&self, event: TraceEvent) {
        if let Some(observer) = &self.observer {
            observer.event(&event);
        }
    }
}

/// A page of the page cache.
pub struct Page {
    ino: u64,
    index: u64,
    /// Distinguishes this page from any other page ever allocated for the
    /// same (ino, index): a handle naming an older generation is stale.
    generation: u64,
    flags: AtomicU32,
    /// _count: references held (the page cache's own, lookups, the scanner).
    count: AtomicU32,
    /// page->mapping: the id of the address space it belongs to, 0 if none.
    mapping: AtomicU64,
    /// How many times the page has been unlocked.
    lock_seq: AtomicU64,
    /// Which LRU list entry is current (see `mm::lru`).
    pub(crate) lru_token: AtomicU64,
    /// The wait queue sleepers on PG_locked and PG_writeback block on.
    wait_lock: Mutex<()>,
    wait: Condvar,
    data: RwLock<Box<[u8; PAGE_SIZE]>>,
    shared: Arc<PageShared>,
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl Page {
    /// Models page_cache_alloc: a new page, locked, not in any mapping, with
    /// one reference held by the caller. Data is zeroed.
    pub(crate) fn alloc_locked(ino: u64, index: u64, shared: Arc<PageShared>) -> PageRef {
        let page = Arc::new(Page {
            ino,
            index,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            flags: AtomicU32::new(PageFlag::Locked as u32),
            count: AtomicU32::new(1),
            mapping: AtomicU64::new(0),
            lock_seq: AtomicU64::new(0),
            lru_token: AtomicU64::new(0),
            wait_lock: Mutex::new(()),
            wait: Condvar::new(),
            data: RwLock::new(Box::new([0u8; PAGE_SIZE])),
            shared,
        });
        PageRef { page }
    }

    /// The inode this page caches data of.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// page->index: the page's offset in the file, in pages.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// A number unique to this page object.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The byte offset of the page's first byte in its file.
    pub fn offset(&self) -> u64 {
        self.index << PAGE_SHIFT
    }

    /// page_count: the references held right now.
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// How many times the page has been unlocked so far.
    pub fn lock_seq(&self) -> u64 {
        self.lock_seq.load(Ordering::Acquire)
    }

    /// Test one flag.
    pub fn test(&self, flag: PageFlag) -> bool {
        self.flags.load(Ordering::Acquire) & flag as u32 != 0
    }

    /// Set a flag; returns whether it was already set (TestSetPage*).
    pub(crate) fn test_and_set(&self, flag: PageFlag) -> bool {
        self.flags.fetch_or(flag as u32, Ordering::AcqRel) & flag as u32 != 0
    }

    /// Clear a flag; returns whether it was set (TestClearPage*).
    pub(crate) fn test_and_clear(&self, flag: PageFlag) -> bool {
        self.flags.fetch_and(!(flag as u32), Ordering::AcqRel) & flag as u32 != 0
    }

    /// The flags as names, for traces and error messages.
    pub fn flag_names(&self) -> Vec<&'static str> {
        let bits = self.flags.load(Ordering::Acquire);
        ALL_FLAGS
            .iter()
            .filter(|(flag, _)| bits & *flag as u32 != 0)
            .map(|(_, name)| *name)
            .collect()
    }

    // ---- the page lock -------------------------------------------------

    /// PageLocked.
    pub fn is_locked(&self) -> bool {
        self.test(PageFlag::Locked)
    }

    /// Models TestSetPageLocked: take the lock if it is free.
    pub fn trylock(&self) -> bool {
        let taken = !self.test_and_set(PageFlag::Locked);
        if taken {
            self.emit(|ino, index| TraceEvent::PageLock { ino, index });
        }
        taken
    }

    /// Models lock_page / __lock_page: sleep until the lock is ours.
    pub fn lock(&self) {
        while !self.trylock() {
            let mut guard = self.wait_lock.lock();
            // Re-check under the wait queue lock: unlock_page clears the bit
            // before taking this lock to wake us, so no wakeup is lost.
            if self.is_locked() {
                self.wait.wait(&mut guard);
            }
        }
    }

    /// Models unlock_page: release the lock and wake every sleeper.
    ///
    /// Unlocking a page that is not locked is a bug in the caller.
    pub fn unlock(&self) {
        let was_locked = self.test_and_clear(PageFlag::Locked);
        assert!(
            was_locked,
            "unlock_page on unlocked page {}:{}",
            self.ino, self.index
        );
        self.lock_seq.fetch_add(1, Ordering::AcqRel);
        self.emit(|ino, index| TraceEvent::PageUnlock { ino, index });
        self.wake_all();
    }

    /// Models wait_on_page_locked: sleep until nobody holds the lock.
    pub fn wait_on_locked(&self) {
        self.wait_while(PageFlag::Locked);
    }

    // ---- flags with meaning ---------------------------------------------

    /// PageUptodate.
    pub fn is_uptodate(&self) -> bool {
        self.test(PageFlag::Uptodate)
    }

    /// SetPageUptodate.
    pub fn set_uptodate(&self) {
        if !self.test_and_set(PageFlag::Uptodate) {
            self.emit(|ino, index| TraceEvent::SetUptodate { ino, index });
        }
    }

    /// ClearPageUptodate.
    pub fn clear_uptodate(&self) {
        self.test_and_clear(PageFlag::Uptodate);
    }

    /// PageDirty.
    pub fn is_dirty(&self) -> bool {
        self.test(PageFlag::Dirty)
    }

    /// Models __set_page_dirty_nobuffers: mark the page dirty; returns true
    /// if it was clean before.
    pub fn set_dirty(&self) -> bool {
        let newly = !self.test_and_set(PageFlag::Dirty);
        if newly {
            self.shared.nr_dirty.fetch_add(1, Ordering::Relaxed);
            self.emit(|ino, index| TraceEvent::SetDirty { ino, index });
        }
        newly
    }

    /// Models clear_page_dirty_for_io / cancel_dirty_page: returns true if
    /// the page was dirty.
    pub fn clear_dirty(&self) -> bool {
        let was = self.test_and_clear(PageFlag::Dirty);
        if was {
            self.shared.nr_dirty.fetch_sub(1, Ordering::Relaxed);
            self.emit(|ino, index| TraceEvent::ClearDirty { ino, index });
        }
        was
    }

    /// PageError.
    pub fn is_error(&self) -> bool {
        self.test(PageFlag::Error)
    }

    /// SetPageError.
    pub fn set_error(&self) {
        self.test_and_set(PageFlag::Error);
    }

    /// ClearPageError.
    pub fn clear_error(&self) {
        self.test_and_clear(PageFlag::Error);
    }

    /// PagePrivate.
    pub fn has_private(&self) -> bool {
        self.test(PageFlag::Private)
    }

    /// SetPagePrivate / ClearPagePrivate.
    pub fn set_private(&self, value: bool) {
        if value {
            self.test_and_set(PageFlag::Private);
        } else {
            self.test_and_clear(PageFlag::Private);
        }
    }

    /// PageWriteback.
    pub fn is_writeback(&self) -> bool {
        self.test(PageFlag::Writeback)
    }

    /// Models set_page_writeback: I/O has started.
    pub fn set_writeback(&self) {
        if !self.test_and_set(PageFlag::Writeback) {
            self.emit(|ino, index| TraceEvent::SetWriteback { ino, index });
        }
    }

    /// Models end_page_writeback: I/O completed; wake waiters.
    pub fn end_writeback(&self) {
        self.test_and_clear(PageFlag::Reclaim);
        if self.test_and_clear(PageFlag::Writeback) {
            self.emit(|ino, index| TraceEvent::EndWriteback { ino, index });
            self.wake_all();
        }
    }

    /// Models wait_on_page_writeback.
    pub fn wait_on_writeback(&self) {
        self.wait_while(PageFlag::Writeback);
    }

    // ---- page->mapping --------------------------------------------------

    /// The id of the address space holding this page, or 0.
    pub fn mapping_id(&self) -> u64 {
        self.mapping.load(Ordering::Acquire)
    }

    /// page->mapping != NULL: still in the page cache.
    pub fn is_mapped(&self) -> bool {
        self.mapping_id() != 0
    }

    pub(crate) fn set_mapping(&self, id: u64) {
        self.mapping.store(id, Ordering::Release);
    }

    // ---- data -----------------------------------------------------------

    /// Copy bytes out of the page (the caller bounds-checks).
    pub fn read_at(&self, offset: usize, out: &mut [u8]) {
        let data = self.data.read();
        out.copy_from_slice(&data[offset..offset + out.len()]);
    }

    /// Copy bytes into the page (the caller bounds-checks).
    pub fn write_at(&self, offset: usize, bytes: &[u8]) {
        let mut data = self.data.write();
        data[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// Zero a byte range of the page.
    pub fn zero_range(&self, offset: usize, len: usize) {
        let mut data = self.data.write();
        data[offset..offset + len].fill(0);
    }

    /// Run `f` over the whole page's bytes.
    pub fn with_data<R>(&self, f: impl FnOnce(&[u8; PAGE_SIZE]) -> R) -> R {
        f(&self.data.read())
    }

    /// Run `f` over the whole page's bytes, mutably: device I/O straight
    /// into the page (the caller holds the page lock).
    pub fn with_data_mut<R>(&self, f: impl FnOnce(&mut [u8; PAGE_SIZE]) -> R) -> R {
        f(&mut self.data.write())
    }

    /// A copy of the whole page.
    pub fn snapshot(&self) -> Vec<u8> {
        self.with_data(|d| d.to_vec())
    }

    // ---- internals ------------------------------------------------------

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &PageShared {
        &self.shared
    }

    fn emit(&self, make: impl FnOnce(u64, u64) -> TraceEvent) {
        if self.shared.observer.is_some() {
            self.shared.emit(make(self.ino, self.index));
        }
    }

    fn wake_all(&self) {
        let _guard = self.wait_lock.lock();
        self.wait.notify_all();
    }

    fn wait_while(&self, flag: PageFlag) {
        while self.test(flag) {
            let mut guard = self.wait_lock.lock();
            if self.test(flag) {
                self.wait.wait(&mut guard);
            }
        }
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("ino", &self.ino)
            .field("index", &self.index)
            .field("count", &self.count())
            .field("flags", &self.flag_names())
            .finish()
    }
}

/// A counted reference to a page: `clone` is page_cache_get, `drop` is
/// page_cache_release. The page cache holds one per cached page; every
/// lookup takes another.
pub struct PageRef {
    page: Arc<Page>,
}

impl PageRef {
    /// Models get_page on a page known to be live (its count is non-zero,
    /// e.g. because it is on an LRU list and so in the page cache).
    pub(crate) fn get(page: &Arc<Page>) -> PageRef {
        let before = page.count.fetch_add(1, Ordering::AcqRel);
        assert!(before > 0, "get_page on a page with no references");
        PageRef {
            page: Arc::clone(page),
        }
    }

    /// The underlying shared page (for handing to a plugin runtime).
    pub fn arc(&self) -> &Arc<Page> {
        &self.page
    }
}

impl Clone for PageRef {
    fn clone(&self) -> Self {
        let before = self.page.count.fetch_add(1, Ordering::AcqRel);
        assert!(before > 0, "page_cache_get on a freed page");
        PageRef {
            page: Arc::clone(&self.page),
        }
    }
}

impl Drop for PageRef {
    fn drop(&mut self) {
        let before = self.page.count.fetch_sub(1, Ordering::AcqRel);
        assert!(
            before > 0,
            "page_cache_release underflow on {:?}",
            self.page
        );
    }
}

impl std::ops::Deref for PageRef {
    type Target = Page;
    fn deref(&self) -> &Page {
        &self.page
    }
}

impl fmt::Debug for PageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.page.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    fn page() -> PageRef {
        Page::alloc_locked(1, 0, Arc::new(PageShared::default()))
    }

    #[test]
    fn new_page_is_locked_with_one_reference() {
        let p = page();
        assert!(p.is_locked());
        assert_eq!(p.count(), 1);
        let q = p.clone();
        assert_eq!(p.count(), 2);
        drop(q);
        assert_eq!(p.count(), 1);
    }

    #[test]
    fn lock_page_sleeps_until_unlock() {
        let p = page();
        let q = p.clone();
        let waiter = thread::spawn(move || {
            q.lock();
            let seq = q.lock_seq();
            q.unlock();
            seq
        });
        thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "lock_page must block while the page is locked"
        );
        p.unlock();
        assert_eq!(
            waiter.join().unwrap(),
            1,
            "waiter got the lock after one unlock"
        );
        assert_eq!(p.lock_seq(), 2);
        assert!(!p.is_locked());
    }

    #[test]
    fn dirty_accounting_counts_transitions_once() {
        let p = page();
        assert!(p.set_dirty());
        assert!(!p.set_dirty());
        assert_eq!(p.shared().nr_dirty.load(Ordering::Relaxed), 1);
        assert!(p.clear_dirty());
        assert!(!p.clear_dirty());
        assert_eq!(p.shared().nr_dirty.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn end_writeback_wakes_waiters() {
        let p = page();
        p.set_writeback();
        let q = p.clone();
        let waiter = thread::spawn(move || q.wait_on_writeback());
        thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        p.end_writeback();
        waiter.join().unwrap();
        assert!(!p.is_writeback());
    }
}
