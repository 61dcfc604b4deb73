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
//! race), unlocking twice, byte ranges past the page, a handle that names no
//! page of the current call. On a fault the host never touches the lock
//! itself: the contract checker (`fs::contract::repair_after_violation`)
//! unlocks a page the caller still holds and leaves alone a page the guest
//! already unlocked, so a page is neither left locked nor unlocked twice.
//!
//! # Where handles live
//!
//! The handles of a call are a small vector in the instance's call state
//! ([`CallState::pages`]); a handle's resource `rep` is its index there.
//! That costs no allocation and no type-erased table lookup per call (the
//! crossing cost is what a plugin pays on every page-cache miss). Wasmtime
//! itself checks the resource type and ends every borrow when the export
//! returns; the host checks the call id and the page identity on each use.
//!
//! # Why a raw pointer
//!
//! The aops trait lends a `&Page` for the duration of one call, while store
//! data must be `'static`. A handle therefore holds a pointer to the page,
//! and the runtime keeps one invariant: the call's handles are cleared from
//! the call state before the call's `&Page` borrow ends (`Instance::call`
//! clears them on every return path; on a panic the whole store is dropped
//! unused). A handle is only dereferenced by host methods running inside
//! that call.

use std::ptr::NonNull;

use wasmtime::component::Resource;

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
    /// clears the call's handles).
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

impl PageHandle {
    /// A handle for `page`, lent to call `call`.
    pub(crate) fn lend(page: &Page, call: u64) -> PageHandle {
        PageHandle {
            page: PagePtr(NonNull::from(page)),
            ino: page.ino(),
            index: page.index(),
            generation: page.generation(),
            call,
            seq_at_entry: page.lock_seq(),
            unlocked: false,
        }
    }

    /// Whether this call still holds the page lock.
    fn holds(&self, page: &Page) -> bool {
        !self.unlocked && page.is_locked() && page.lock_seq() == self.seq_at_entry
    }

    /// Whether this call still holds the page lock, for checks made from
    /// other host imports during the call (the cluster lock's "never block
    /// holding a page"). Returns the page's inode and index if so.
    pub(crate) fn still_held(&self) -> Option<(u64, u64)> {
        // SAFETY: handles exist in the call state only during their call.
        let page = unsafe { self.page.get() };
        self.holds(page).then_some((self.ino, self.index))
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

/// Find the handle `res` names among the current call's pages.
fn slot(call: &mut CallState, res: &Resource<PageHandle>, method: &str) -> wasmtime::Result<usize> {
    let rep = res.rep() as usize;
    let Some(handle) = call.pages.get(rep) else {
        return Err(misuse(
            call,
            format!("{method} on handle {rep}, which names no page of this call"),
        ));
    };
    if handle.call != call.id {
        let (ino, index) = (handle.ino, handle.index);
        return Err(misuse(
            call,
            format!("{method} on a stale handle for inode {ino} page {index}"),
        ));
    }
    // SAFETY: the handle is in the current call's list (module docs).
    let page = unsafe { handle.page.get() };
    assert!(
        page.ino() == handle.ino
            && page.index() == handle.index
            && page.generation() == handle.generation,
        "a page handle's identity never changes while it is lent"
    );
    Ok(rep)
}

/// The page of a handle of the current call (any method may look).
fn page_of<'a>(
    call: &mut CallState,
    res: &Resource<PageHandle>,
    method: &str,
) -> wasmtime::Result<&'a Page> {
    let i = slot(call, res, method)?;
    // SAFETY: `slot` found the handle among the current call's pages.
    Ok(unsafe { call.pages[i].page.get() })
}

/// The page of a handle whose lock this call must still hold (methods that
/// change the page).
fn locked_page<'a>(
    call: &mut CallState,
    res: &Resource<PageHandle>,
    method: &str,
) -> wasmtime::Result<(usize, &'a Page)> {
    let i = slot(call, res, method)?;
    let handle = &call.pages[i];
    // SAFETY: `slot` found the handle among the current call's pages.
    let page = unsafe { handle.page.get() };
    if !handle.holds(page) {
        let why = if handle.unlocked {
            "after this call unlocked it"
        } else {
            "while this call does not hold its lock"
        };
        let (ino, index) = (handle.ino, handle.index);
        return Err(misuse(
            call,
            format!("{method} on inode {ino} page {index} {why} (a data race)"),
        ));
    }
    Ok((i, page))
}

/// Check `offset + len` lies within the page.
fn check_range(
    call: &mut CallState,
    i: usize,
    method: &str,
    offset: u32,
    len: u64,
) -> wasmtime::Result<()> {
    if u64::from(offset) + len > PAGE_SIZE as u64 {
        let (ino, index) = (call.pages[i].ino, call.pages[i].index);
        return Err(misuse(
            call,
            format!(
                "{method} on inode {ino} page {index}: offset {offset} + length {len} is past the page size {PAGE_SIZE}"
            ),
        ));
    }
    Ok(())
}

/// For host imports outside the `page` resource that fill a page and end
/// its read (`block-device.end-read-from-block`): the page of a handle this
/// call must still hold, whose first `len` bytes must lie within it.
pub(crate) fn page_to_fill<'a>(
    call: &mut CallState,
    res: &Resource<PageHandle>,
    method: &str,
    len: u32,
) -> wasmtime::Result<(usize, &'a Page)> {
    let (i, page) = locked_page(call, res, method)?;
    check_range(call, i, method, 0, u64::from(len))?;
    Ok((i, page))
}

/// The end of a read, once handle `i`'s page holds its data: mark it
/// uptodate and unlock it (this call's one unlock).
pub(crate) fn end_read(call: &mut CallState, i: usize, page: &Page) {
    call.pages[i].unlocked = true;
    page.set_uptodate();
    page.unlock();
}

impl HostPage for InstanceState {
    /// page.index.
    fn index(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<u64> {
        Ok(page_of(&mut self.call, &res, "page.index")?.index())
    }

    /// page.page-size.
    fn page_size(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<u32> {
        page_of(&mut self.call, &res, "page.page-size")?;
        Ok(PAGE_SIZE as u32)
    }

    /// page.read: bytes out of the page (allowed whether or not locked).
    fn read(
        &mut self,
        res: Resource<PageHandle>,
        offset: u32,
        len: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let i = slot(&mut self.call, &res, "page.read")?;
        check_range(&mut self.call, i, "page.read", offset, u64::from(len))?;
        // SAFETY: `slot` found the handle among the current call's pages.
        let page = unsafe { self.call.pages[i].page.get() };
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
        let (i, page) = locked_page(&mut self.call, &res, "page.write")?;
        check_range(&mut self.call, i, "page.write", offset, data.len() as u64)?;
        page.write_at(offset as usize, &data);
        Ok(())
    }

    /// page.zero: only while this call holds the lock.
    fn zero(&mut self, res: Resource<PageHandle>, offset: u32, len: u32) -> wasmtime::Result<()> {
        let (i, page) = locked_page(&mut self.call, &res, "page.zero")?;
        check_range(&mut self.call, i, "page.zero", offset, u64::from(len))?;
        page.zero_range(offset as usize, len as usize);
        Ok(())
    }

    /// page.is-locked: whether this call still holds the lock.
    fn is_locked(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        let page = page_of(&mut self.call, &res, "page.is-locked")?;
        Ok(self.call.pages[res.rep() as usize].holds(page))
    }

    /// page.unlock: exactly once, and only while held.
    fn unlock(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        let i = slot(&mut self.call, &res, "page.unlock")?;
        let handle = &mut self.call.pages[i];
        // SAFETY: `slot` found the handle among the current call's pages.
        let page = unsafe { handle.page.get() };
        if !handle.holds(page) {
            let why = if handle.unlocked {
                "a second time (double unlock)"
            } else {
                "while this call does not hold its lock"
            };
            let (ino, index) = (handle.ino, handle.index);
            return Err(misuse(
                &mut self.call,
                format!("page.unlock of inode {ino} page {index} {why}"),
            ));
        }
        handle.unlocked = true;
        page.unlock();
        Ok(())
    }

    /// page.is-uptodate.
    fn is_uptodate(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(page_of(&mut self.call, &res, "page.is-uptodate")?.is_uptodate())
    }

    /// page.set-uptodate: only while held.
    fn set_uptodate(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        locked_page(&mut self.call, &res, "page.set-uptodate")?
            .1
            .set_uptodate();
        Ok(())
    }

    /// page.is-dirty.
    fn is_dirty(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(page_of(&mut self.call, &res, "page.is-dirty")?.is_dirty())
    }

    /// page.set-dirty: only while held (a page dirtied after truncate
    /// removed it would never be cleaned).
    fn set_dirty(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        locked_page(&mut self.call, &res, "page.set-dirty")?
            .1
            .set_dirty();
        Ok(())
    }

    /// page.is-error.
    fn is_error(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(page_of(&mut self.call, &res, "page.is-error")?.is_error())
    }

    /// page.set-error.
    fn set_error(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        page_of(&mut self.call, &res, "page.set-error")?.set_error();
        Ok(())
    }

    /// page.clear-error.
    fn clear_error(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        page_of(&mut self.call, &res, "page.clear-error")?.clear_error();
        Ok(())
    }

    /// page.set-writeback: before unlocking, so only while held.
    fn set_writeback(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        locked_page(&mut self.call, &res, "page.set-writeback")?
            .1
            .set_writeback();
        Ok(())
    }

    /// page.end-writeback: I/O completion, allowed after unlock.
    fn end_writeback(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<()> {
        page_of(&mut self.call, &res, "page.end-writeback")?.end_writeback();
        Ok(())
    }

    /// page.has-private.
    fn has_private(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(page_of(&mut self.call, &res, "page.has-private")?.has_private())
    }

    /// page.set-private: only while held.
    fn set_private(&mut self, res: Resource<PageHandle>, value: bool) -> wasmtime::Result<()> {
        locked_page(&mut self.call, &res, "page.set-private")?
            .1
            .set_private(value);
        Ok(())
    }

    /// page.is-mapped.
    fn is_mapped(&mut self, res: Resource<PageHandle>) -> wasmtime::Result<bool> {
        Ok(page_of(&mut self.call, &res, "page.is-mapped")?.is_mapped())
    }

    /// page.end-read: copy `data` to the start of the page, zero the rest,
    /// mark it uptodate and unlock it, in one crossing.
    fn end_read(&mut self, res: Resource<PageHandle>, data: Vec<u8>) -> wasmtime::Result<()> {
        let (i, page) = locked_page(&mut self.call, &res, "page.end-read")?;
        check_range(&mut self.call, i, "page.end-read", 0, data.len() as u64)?;
        page.with_data_mut(|bytes| {
            bytes[..data.len()].copy_from_slice(&data);
            bytes[data.len()..].fill(0);
        });
        end_read(&mut self.call, i, page);
        Ok(())
    }

    /// Dropping a handle: the host owns every page handle (the guest only
    /// ever gets borrows, which Wasmtime ends itself), so there is nothing
    /// to do.
    fn drop(&mut self, _res: Resource<PageHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
