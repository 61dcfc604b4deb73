//! Trace events: what the engine tells an observer as it happens.
//!
//! The engine emits an event for every page lock and unlock, flag change,
//! aop call, retry, activation and truncate. With no observer installed each
//! emit point costs one branch on an `Option` (tracing off costs nearly
//! nothing); `aopsfs run --trace` installs an observer that writes a Chrome
//! trace-event file.

pub mod chrome;

use crate::fs::aops::{AopOp, AopResult};
use crate::mm::filemap::Caller;

/// One thing that happened in the page cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// lock_page / TestSetPageLocked succeeded.
    PageLock { ino: u64, index: u64 },
    /// unlock_page.
    PageUnlock { ino: u64, index: u64 },
    /// SetPageUptodate.
    SetUptodate { ino: u64, index: u64 },
    /// set_page_dirty (clean to dirty).
    SetDirty { ino: u64, index: u64 },
    /// clear_page_dirty_for_io / cancel_dirty_page (dirty to clean).
    ClearDirty { ino: u64, index: u64 },
    /// set_page_writeback.
    SetWriteback { ino: u64, index: u64 },
    /// end_page_writeback.
    EndWriteback { ino: u64, index: u64 },
    /// A page moved to the active LRU list.
    Activate { ino: u64, index: u64 },
    /// Reclaim freed a page.
    Reclaim { ino: u64, index: u64 },
    /// truncate_inode_pages began: i_size is now `size`.
    Truncate { ino: u64, size: u64 },
    /// A caller is starting over after `truncated-page` or a vanished page.
    Retry {
        caller: Caller,
        ino: u64,
        index: u64,
    },
    /// An address-space operation is about to be called.
    AopBegin { op: AopOp, ino: u64, index: u64 },
    /// An address-space operation returned (`None`: it faulted).
    AopEnd {
        op: AopOp,
        ino: u64,
        index: u64,
        result: Option<AopResult>,
    },
    /// Page counts after a change: cached pages and dirty pages.
    Counters { cached: u64, dirty: u64 },
}

/// Receives trace events. Implementations must be cheap and must not call
/// back into the engine.
pub trait Observer: Send + Sync {
    /// Called synchronously on the thread where the event happened.
    fn event(&self, event: &TraceEvent);
}
