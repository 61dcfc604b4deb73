//! Models struct address_space (include/linux/fs.h) together with the part
//! of struct inode the page cache uses (i_size, i_mutex).
//!
//! The page index is a `BTreeMap` under one mutex (the kernel's radix tree
//! under `tree_lock`): lookups take a page reference while holding it, so a
//! page whose count is checked under the same lock cannot gain a new user.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::errno::Errno;
use crate::fs::aops::InodeInfo;
use crate::mm::page::{PAGE_SHIFT, PageRef};
use crate::mm::readahead::FileRaState;

static NEXT_MAPPING_ID: AtomicU64 = AtomicU64::new(1);

/// The page cache of one inode.
pub struct AddressSpace {
    /// Unique id stored in page->mapping of every page it holds (never 0).
    id: u64,
    ino: u64,
    /// The radix tree: index -> page, holding the page cache's reference.
    tree: Mutex<BTreeMap<u64, PageRef>>,
    /// i_size. Changed only with `i_mutex` held.
    i_size: AtomicU64,
    /// inode->i_mutex: serialises writes and truncates of this inode.
    i_mutex: Mutex<()>,
    /// AS_EIO / AS_ENOSPC: the first writeback error not yet reported to
    /// fsync.
    wb_error: Mutex<Option<Errno>>,
    /// truncate_count: bumped when a truncate begins and again when it ends
    /// (odd while one runs), so the fault path can tell that it raced with
    /// one, as do_no_page does.
    truncate_count: AtomicU64,
    /// The readahead window (one per inode: every caller shares it, as if
    /// all used one open file).
    pub(crate) ra: Mutex<FileRaState>,
}

/// Why a page could not be inserted.
#[derive(Debug, PartialEq, Eq)]
pub struct PageExists;

impl AddressSpace {
    pub(crate) fn new(ino: u64, size: u64) -> Self {
        AddressSpace {
            id: NEXT_MAPPING_ID.fetch_add(1, Ordering::Relaxed),
            ino,
            tree: Mutex::new(BTreeMap::new()),
            i_size: AtomicU64::new(size),
            i_mutex: Mutex::new(()),
            wb_error: Mutex::new(None),
            truncate_count: AtomicU64::new(0),
            ra: Mutex::new(FileRaState::default()),
        }
    }

    /// The mapping's id (what page->mapping holds).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// i_size_read.
    pub fn size(&self) -> u64 {
        self.i_size.load(Ordering::Acquire)
    }

    /// i_size_write; the caller holds `i_mutex`.
    pub(crate) fn set_size(&self, size: u64) {
        self.i_size.store(size, Ordering::Release);
    }

    /// The inode as an aop sees it now.
    pub fn info(&self) -> InodeInfo {
        InodeInfo {
            ino: self.ino,
            size: self.size(),
        }
    }

    /// mapping->truncate_count: odd while a truncate runs.
    pub fn truncate_count(&self) -> u64 {
        self.truncate_count.load(Ordering::Acquire)
    }

    /// A truncate of this mapping begins (odd) or ends (even); the caller
    /// holds `i_mutex`.
    pub(crate) fn bump_truncate_count(&self) {
        self.truncate_count.fetch_add(1, Ordering::AcqRel);
    }

    /// Take inode->i_mutex.
    pub(crate) fn lock_inode(&self) -> MutexGuard<'_, ()> {
        self.i_mutex.lock()
    }

    /// mapping->nrpages.
    pub fn nrpages(&self) -> usize {
        self.tree.lock().len()
    }

    /// Models find_get_page: look the page up and take a reference.
    pub fn find_get_page(&self, index: u64) -> Option<PageRef> {
        self.tree.lock().get(&index).cloned()
    }

    /// Models add_to_page_cache: insert a locked page; the cache takes its own
    /// reference. Fails if a page is already cached at that index.
    pub(crate) fn add_to_page_cache(&self, page: &PageRef) -> Result<(), PageExists> {
        assert!(page.is_locked(), "add_to_page_cache: page must be locked");
        assert!(
            !page.is_mapped(),
            "add_to_page_cache: page already in a mapping"
        );
        let mut tree = self.tree.lock();
        if tree.contains_key(&page.index()) {
            return Err(PageExists);
        }
        page.set_mapping(self.id);
        tree.insert(page.index(), page.clone());
        Ok(())
    }

    /// Models remove_from_page_cache: take the page out of the tree and
    /// clear page->mapping. The caller holds the page lock. Returns the
    /// cache's reference, or `None` if the page was no longer here.
    pub(crate) fn remove_from_page_cache(&self, page: &PageRef) -> Option<PageRef> {
        assert!(
            page.is_locked(),
            "remove_from_page_cache: page must be locked"
        );
        let mut tree = self.tree.lock();
        let same = tree
            .get(&page.index())
            .is_some_and(|p| p.generation() == page.generation());
        if !same {
            return None;
        }
        page.set_mapping(0);
        tree.remove(&page.index())
    }

    /// Models remove_mapping: remove a locked, clean page only if nobody but
    /// the cache and the caller (`expected_count`) holds a reference; the
    /// count is checked under the tree lock, so no lookup can race with it.
    pub(crate) fn remove_mapping(&self, page: &PageRef, expected_count: u32) -> Option<PageRef> {
        assert!(page.is_locked(), "remove_mapping: page must be locked");
        let mut tree = self.tree.lock();
        let same = tree
            .get(&page.index())
            .is_some_and(|p| p.generation() == page.generation());
        if !same || page.count() != expected_count || page.is_dirty() || page.is_writeback() {
            return None;
        }
        page.set_mapping(0);
        tree.remove(&page.index())
    }

    /// Models pagevec_lookup: up to `max` pages with index >= `start`, in
    /// index order, each with a reference taken.
    pub fn lookup_from(&self, start: u64, max: usize) -> Vec<PageRef> {
        self.tree
            .lock()
            .range(start..)
            .take(max)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Walk the cached pages with index >= `start` a pagevec at a time (so
    /// the tree lock is never held while `f` runs), each with a reference
    /// held while `f` runs.
    pub fn for_each_page_from(&self, start: u64, mut f: impl FnMut(PageRef)) {
        const PAGEVEC_SIZE: usize = 14;
        let mut next = start;
        loop {
            let pages = self.lookup_from(next, PAGEVEC_SIZE);
            let Some(last) = pages.last() else { break };
            next = last.index() + 1;
            pages.into_iter().for_each(&mut f);
        }
    }

    /// Models pagevec_lookup_tag(PAGECACHE_TAG_DIRTY): dirty pages with
    /// index >= `start`.
    pub fn lookup_dirty_from(&self, start: u64, max: usize) -> Vec<PageRef> {
        self.tree
            .lock()
            .range(start..)
            .filter(|(_, p)| p.is_dirty())
            .take(max)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Whether a page is cached at `index` (radix_tree_lookup without a
    /// reference), for readahead.
    pub(crate) fn is_cached(&self, index: u64) -> bool {
        self.tree.lock().contains_key(&index)
    }

    /// Models mapping_set_error: remember the first writeback error for the
    /// next fsync.
    pub(crate) fn set_error(&self, errno: Errno) {
        let mut error = self.wb_error.lock();
        let errno = if errno == Errno::Enospc {
            Errno::Enospc
        } else {
            Errno::Eio
        };
        error.get_or_insert(errno);
    }

    /// Test-and-clear AS_EIO/AS_ENOSPC, as filemap_fdatawait does.
    pub(crate) fn take_error(&self) -> Option<Errno> {
        self.wb_error.lock().take()
    }

    /// The index of the last page holding data below i_size, if any.
    pub fn end_index(&self) -> Option<u64> {
        let size = self.size();
        (size > 0).then(|| (size - 1) >> PAGE_SHIFT)
    }
}
