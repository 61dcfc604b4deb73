//! The WIT `page` resource, implemented by the host: one locked page lent
//! to a plugin for one call.
//!
//! A handle carries the page, the page's identity (inode, index,
//! generation), the call it was lent to, and the page's lock sequence at
//! entry. "This call still holds the lock" means: this handle has not
//! unlocked it, the page is locked, and its lock sequence has not moved
//! since entry (every unlock bumps it, so a lock someone else took after
//! our unlock does not count as ours).
//!
//! Misuse traps the guest with a message naming the rule, and the fault is
//! reported as `HandleMisuse`: writing, zeroing, completing a read or
//! setting state-changing flags on a page this call no longer holds (a data
//! race), unlocking twice, byte ranges past the page, a handle used outside
//! its call. On a fault the host never touches the lock itself: the contract
//! checker (`fs::contract::repair_after_violation`) unlocks a page the
//! caller still holds and leaves alone a page the guest already unlocked, so
//! a page is neither left locked nor unlocked twice.
//!
//! # Why a raw pointer
//!
//! The aops trait lends a `&Page` for the duration of one call, while the
//! resource table needs `'static` entries. A handle therefore holds a
//! pointer to the page, and the runtime keeps one invariant: every handle
//! (and every [`LentPage`]) of a call is deleted from the instance before
//! the call's `&Page` borrow ends (`Instance::call` reclaims them on every
//! return path; on a panic the whole store is dropped unused). A handle is
//! only dereferenced by host methods running inside that call, after
//! checking it names the current call.

use std::ptr::NonNull;

use wasmtime::component::{Resource, ResourceTable};

use crate::mm::page::{PAGE_SIZE, Page};
use crate::plugin::bindings::aopsfs::vfs::types::HostPage;
use crate::plugin::instance::{CallState, InstanceState};

/// A page lent for one call. Not dereferenced outside that call.
#[derive(Clone, Copy)]
pub(crate) struct PagePtr(NonNull<Page>);

// SAFETY: `Page` is `Sync` (atomics and locks only), so sharing a reference
// to it with whichever thread runs the call is sound; the pointer's validity
// is the lending invariant in the module documentation.
unsafe impl Send for PagePtr {}

impl PagePtr {
    /// The page.
    ///
    /// # Safety
    /// Only during the call the page was lent to (before `Instance::call`
    /// reclaims the handles).
    unsafe fn get<'a>(self) -> &'a Page {
        // SAFETY: the caller guarantees the lending call is still running,
        // so the `&Page` it was made from is live.
        unsafe { self.0.as_ref() }
    }
}

/// The host side of a `page` handle.
pub struct PageHandle {
    page: PagePtr,
    ino: u64,
    index: u64,
    generation: u64,
    /// The call it was lent to.
    call: u64,
    /// The page's lock sequence when the call began.
    seq_at_entry: u64,
    /// This call has unlocked the page.
    unlocked: bool,
}

/// What the call state remembers about each lent page (to check that the
/// guest does not block on a cluster lock while holding a page lock).
#[derive(Clone, Copy)]
pub(crate) struct LentPage {
    page: PagePtr,
    seq_at_entry: u64,
}

impl LentPage {
    /// Whether the call still holds this page's lock (checked from a host
    /// import during the call).
    pub(crate) fn still_held(&self) -> Option<(u64, u64)> {
        // SAFETY: `CallState::lent` is cleared when the call's handles are
        // reclaimed, so an entry exists only during its call.
        let page = unsafe { self.page.get() };
        (page.is_locked() && page.lock_seq() == self.seq_at_entry)
            .then(|| (page.ino(), page.index()))
    }
}

impl PageHandle {
    /// A handle for `page`, lent to call `call`.
    pub(crate) fn lend(page: &Page, call: u64) -> (PageHandle, LentPage) {
        let ptr = PagePtr(NonNull::from(page));
        let seq = page.lock_seq();
        let handle = PageHandle {
            page: ptr,
            ino: page.ino(),
            index: page.index(),
            generation: page.generation(),
            call,
            seq_at_entry: seq,
            unlocked: false,
        };
        (
            handle,
            LentPage {
                page: ptr,
                seq_at_entry: seq,
            },
        )
    }

    /// Whether this call still holds the page lock.
    fn holds(&self, page: &Page) -> bool {
        !self.unlocked && page.is_locked() && page.lock_seq() == self.seq_at_entry
    }

    /// "inode 3 page 7", for messages.
    fn describe(&self) -> String {
        format!("inode {} page {}", self.ino, self.index)
    }
}

/// The error a misuse traps with.
#[derive(Debug, thiserror::Error)]
#[error("page handle misuse: {0}")]
pub struct HandleMisuse(pub String);

/// Record a misuse for the fault report and make the trap.
pub(crate) fn misuse(call: &mut CallState, message: String) -> wasmtime::Error {
    let message = format!("{}: {message}", call.op);
    call.misuse.get_or_insert_with(|| message.clone());
    wasmtime::Error::new(HandleMisuse(message))
}

/// Look a handle up and check it names a live page of the current call.
fn lookup<'t>(
    table: &'t mut ResourceTable,
    call: &mut CallState,
    res: &Resource<PageHandle>,
    method: &str,
) -> wasmtime::Result<(&'t mut PageHandle, PagePtr)> {
    let handle = match table.get_mut(res) {
        Ok(handle) => handle,
        Err(e) => {
            return Err(misuse(
                call,
                format!("page.{method} on an unknown page handle ({e})"),
            ));
        }
    };
    if handle.call != call.id {
        let what = handle.describe();
        return Err(misuse(
            call,
            format!("page.{method} on a stale handle for {what}, lent to an earlier call"),
        ));
    }
    let ptr = handle.page;
    // SAFETY: the handle is in the table and names the current call, so the
    // call that lent the page is running (module documentation).
    let page = unsafe { ptr.get() };
    assert!(
        page.ino() == handle.ino
            && page.index() == handle.index
            && page.generation() == handle.generation,
        "a page handle's identity never changes while it is lent"
    );
    Ok((handle, ptr))
}

/// Check `offset + len` lies within the page.
fn check_range(
    call: &mut CallState,
    method: &str,
    what: &str,
    offset: u32,
    len: u64,
) -> wasmtime::Result<()> {
    if u64::from(offset) + len > PAGE_SIZE as u64 {
        return Err(misuse(
            call,
            format!(
                "page.{method} on {what}: range offset {offset} + length {len} is past the page size {PAGE_SIZE}"
            ),
        ));
    }
    Ok(())
}

/// Look up a handle and require that this call still holds the page lock
/// (for methods that change the page).
fn locked<'t>(
    table: &'t mut ResourceTable,
    call: &mut CallState,
    res: &Resource<PageHandle>,
    method: &str,
) -> wasmtime::Result<(&'t mut PageHandle, PagePtr)> {
    let (handle, ptr) = lookup(table, call, res, method)?;
    // SAFETY: `lookup` checked the handle belongs to the running call.
    let page = unsafe { ptr.get() };
    if !handle.holds(page) {
        let why = if handle.unlocked {
            "after this call unlocked it"
        } else {
            "while this call does not hold its lock"
        };
        let what = handle.describe();
        return Err(misuse(
            call,
            format!("page.{method} on {what} {why} (a data race)"),
        ));
    }
    Ok((handle, ptr))
}

impl InstanceState {
    /// Look up a handle whose page this call must still hold locked.
    fn locked_page(
        &mut self,
        res: &Resource<PageHandle>,
        method: &str,
    ) -> wasmtime::Result<(&mut PageHandle, PagePtr)> {
        locked(&mut self.table, &mut self.call, res, method)
    }

    /// Look up a handle for a read-only method.
    fn any_page(&mut self, res: &Resource<PageHandle>, method: &str) -> wasmtime::Result<&Page> {
        let (_, ptr) = lookup(&mut self.table, &mut self.call, res, method)?;
        // SAFETY: `lookup` checked the handle belongs to the running call.
        Ok(unsafe { ptr.get() })
    }
}

impl HostPage for InstanceState {
    /// page.index.
    fn index(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<u64> {
        Ok(self.any_page(&res, "index")?.index())
    }

    /// page.page-size.
    fn page_size(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<u32> {
        self.any_page(&res, "page-size")?;
        Ok(PAGE_SIZE as u32)
    }

    /// page.read: bytes out of the page (allowed whether or not locked).
    fn read(
        &mut self,
        res: Resource<PageHandle>,
        offset: u32,
        len: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let (handle, ptr) = lookup(&mut self.table, &mut self.call, &res, "read")?;
        let what = handle.describe();
        check_range(&mut self.call, "read", &what, offset, u64::from(len))?;
        // SAFETY: `lookup` checked the handle belongs to the running call.
        let page = unsafe { ptr.get() };
        let mut out = vec![0; len as usize];
        page.read_at(offset as usize, &mut out);
        Ok(out)
    }

    /// page.write: only while this call holds the lock.
    fn write(
        &mut self,
        res: Resource<PageHandle>,
        offset: u32,
        data: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let (handle, ptr) = locked(&mut self.table, &mut self.call, &res, "write")?;
        let what = handle.describe();
        check_range(&mut self.call, "write", &what, offset, data.len() as u64)?;
        // SAFETY: `locked_page` checked the handle belongs to the running call.
        unsafe { ptr.get() }.write_at(offset as usize, &data);
        Ok(())
    }

    /// page.zero: only while this call holds the lock.
    fn zero(&mut self, res: Resource<PageHandle>, offset: u32, len: u32) -> wasmtime::Result<()> {
        let (handle, ptr) = locked(&mut self.table, &mut self.call, &res, "zero")?;
        let what = handle.describe();
        check_range(&mut self.call, "zero", &what, offset, u64::from(len))?;
        // SAFETY: `locked_page` checked the handle belongs to the running call.
        unsafe { ptr.get() }.zero_range(offset as usize, len as usize);
        Ok(())
    }

    /// page.is-locked: whether this call still holds the lock.
    fn is_locked(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        let (handle, ptr) = lookup(&mut self.table, &mut self.call, &res, "is-locked")?;
        // SAFETY: `lookup` checked the handle belongs to the running call.
        Ok(handle.holds(unsafe { ptr.get() }))
    }

    /// page.unlock: exactly once, and only while held.
    fn unlock(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        let (handle, ptr) = lookup(&mut self.table, &mut self.call, &res, "unlock")?;
        // SAFETY: `lookup` checked the handle belongs to the running call.
        let page = unsafe { ptr.get() };
        if !handle.holds(page) {
            let why = if handle.unlocked {
                "a second time (double unlock)"
            } else {
                "while this call does not hold its lock"
            };
            let what = handle.describe();
            return Err(misuse(
                &mut self.call,
                format!("page.unlock of {what} {why}"),
            ));
        }
        handle.unlocked = true;
        page.unlock();
        Ok(())
    }

    /// page.is-uptodate.
    fn is_uptodate(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(self.any_page(&res, "is-uptodate")?.is_uptodate())
    }

    /// page.set-uptodate: only while held.
    fn set_uptodate(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        let (_, ptr) = self.locked_page(&res, "set-uptodate")?;
        // SAFETY: `locked_page` checked the handle belongs to the running call.
        unsafe { ptr.get() }.set_uptodate();
        Ok(())
    }

    /// page.is-dirty.
    fn is_dirty(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(self.any_page(&res, "is-dirty")?.is_dirty())
    }

    /// page.set-dirty: only while held (a page dirtied after truncate
    /// removed it would never be cleaned).
    fn set_dirty(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        let (_, ptr) = self.locked_page(&res, "set-dirty")?;
        // SAFETY: `locked_page` checked the handle belongs to the running call.
        unsafe { ptr.get() }.set_dirty();
        Ok(())
    }

    /// page.is-error.
    fn is_error(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(self.any_page(&res, "is-error")?.is_error())
    }

    /// page.set-error.
    fn set_error(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        self.any_page(&res, "set-error")?.set_error();
        Ok(())
    }

    /// page.clear-error.
    fn clear_error(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        self.any_page(&res, "clear-error")?.clear_error();
        Ok(())
    }

    /// page.set-writeback: before unlocking, so only while held.
    fn set_writeback(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        let (_, ptr) = self.locked_page(&res, "set-writeback")?;
        // SAFETY: `locked_page` checked the handle belongs to the running call.
        unsafe { ptr.get() }.set_writeback();
        Ok(())
    }

    /// page.end-writeback: I/O completion, allowed after unlock.
    fn end_writeback(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        self.any_page(&res, "end-writeback")?.end_writeback();
        Ok(())
    }

    /// page.has-private.
    fn has_private(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(self.any_page(&res, "has-private")?.has_private())
    }

    /// page.set-private: only while held.
    fn set_private(&mut self, res: Resource<PageHandle>, value: bool) -> wasmtime::Result<()> {
        let (_, ptr) = self.locked_page(&res, "set-private")?;
        // SAFETY: `locked_page` checked the handle belongs to the running call.
        unsafe { ptr.get() }.set_private(value);
        Ok(())
    }

    /// page.is-mapped.
    fn is_mapped(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(self.any_page(&res, "is-mapped")?.is_mapped())
    }

    /// page.end-read: copy `data` to the start of the page, zero the rest,
    /// mark it uptodate and unlock it, in one crossing.
    fn end_read(&mut self, res: Resource<PageHandle>, data: Vec<u8>) -> wasmtime::Result<()> {
        let (handle, ptr) = locked(&mut self.table, &mut self.call, &res, "end-read")?;
        let what = handle.describe();
        if data.len() > PAGE_SIZE {
            return Err(misuse(
                &mut self.call,
                format!(
                    "page.end-read on {what} with {} bytes, more than the page size {PAGE_SIZE}",
                    data.len()
                ),
            ));
        }
        handle.unlocked = true;
        // SAFETY: `locked_page` checked the handle belongs to the running call.
        let page = unsafe { ptr.get() };
        page.write_at(0, &data);
        page.zero_range(data.len(), PAGE_SIZE - data.len());
        page.set_uptodate();
        page.unlock();
        Ok(())
    }

    /// Dropping a handle: the host owns every page handle (the guest only
    /// ever gets borrows), so there is nothing to do beyond forgetting it.
    fn drop(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        if res.owned() {
            let _ = self.table.delete(res);
        }
        Ok(())
    }
}
