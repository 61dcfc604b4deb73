//! Models struct address_space_operations (include/linux/fs.h): the
//! boundary between the page cache and a filesystem's backing store.
//!
//! Native implementations (`fs::ramfs`, `fs::scripted`) and the WASM plugin
//! adapter (`plugin::adapter`) all implement [`AddressSpaceOperations`]; the
//! filemap loops call them only through `fs::contract`, which checks the lock
//! rules after every call.

use std::fmt;

use serde::Serialize;

use crate::errno::Errno;
use crate::mm::page::Page;

/// What an address-space operation returns.
///
/// The kernel returned an `int`: 0, a negative errno, or one of two positive
/// values chosen to be larger than any in-page byte count. Here they are
/// variants, so none of them can leak out as a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AopResult {
    /// 0: success.
    Ok,
    /// -errno.
    Error(Errno),
    /// AOP_TRUNCATED_PAGE (0x80001): the callee unlocked the page; drop it
    /// and retry with a fresh lookup.
    TruncatedPage,
    /// AOP_WRITEPAGE_ACTIVATE (0x80000): writepage kept the page locked and
    /// dirty; reclaim should activate it.
    WritepageActivate,
}

impl AopResult {
    /// The kernel's integer value for this result.
    pub fn kernel_value(self) -> i64 {
        match self {
            AopResult::Ok => 0,
            AopResult::Error(e) => -i64::from(e.raw()),
            AopResult::TruncatedPage => 0x80001,
            AopResult::WritepageActivate => 0x80000,
        }
    }

    /// The result's kind, for statistics.
    pub fn kind(self) -> ResultKind {
        match self {
            AopResult::Ok => ResultKind::Ok,
            AopResult::Error(_) => ResultKind::Error,
            AopResult::TruncatedPage => ResultKind::TruncatedPage,
            AopResult::WritepageActivate => ResultKind::WritepageActivate,
        }
    }
}

impl fmt::Display for AopResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AopResult::Ok => f.write_str("ok"),
            AopResult::Error(e) => write!(f, "error({})", e.name()),
            AopResult::TruncatedPage => f.write_str("truncated-page"),
            AopResult::WritepageActivate => f.write_str("writepage-activate"),
        }
    }
}

/// The four kinds of result, as named in reports and JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    Ok,
    Error,
    TruncatedPage,
    WritepageActivate,
}

impl ResultKind {
    /// Every kind, in report order.
    pub const ALL: [ResultKind; 4] = [
        ResultKind::Ok,
        ResultKind::Error,
        ResultKind::TruncatedPage,
        ResultKind::WritepageActivate,
    ];

    /// The report name, e.g. `truncated_page`.
    pub fn name(self) -> &'static str {
        match self {
            ResultKind::Ok => "ok",
            ResultKind::Error => "error",
            ResultKind::TruncatedPage => "truncated_page",
            ResultKind::WritepageActivate => "writepage_activate",
        }
    }
}

/// The address-space operations, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AopOp {
    Readpage,
    Readpages,
    Writepage,
    PrepareWrite,
    CommitWrite,
    Invalidatepage,
    Releasepage,
    Truncate,
}

impl AopOp {
    /// Every operation, in report order.
    pub const ALL: [AopOp; 8] = [
        AopOp::Readpage,
        AopOp::Readpages,
        AopOp::Writepage,
        AopOp::PrepareWrite,
        AopOp::CommitWrite,
        AopOp::Invalidatepage,
        AopOp::Releasepage,
        AopOp::Truncate,
    ];

    /// The kernel's name, e.g. `prepare_write`.
    pub fn name(self) -> &'static str {
        match self {
            AopOp::Readpage => "readpage",
            AopOp::Readpages => "readpages",
            AopOp::Writepage => "writepage",
            AopOp::PrepareWrite => "prepare_write",
            AopOp::CommitWrite => "commit_write",
            AopOp::Invalidatepage => "invalidatepage",
            AopOp::Releasepage => "releasepage",
            AopOp::Truncate => "truncate",
        }
    }

    /// Whether the spec allows `result` from this operation.
    pub fn allows(self, result: AopResult) -> bool {
        match result {
            AopResult::Ok | AopResult::Error(_) => true,
            AopResult::TruncatedPage => matches!(
                self,
                AopOp::Readpage | AopOp::Readpages | AopOp::PrepareWrite | AopOp::CommitWrite
            ),
            AopResult::WritepageActivate => self == AopOp::Writepage,
        }
    }
}

impl fmt::Display for AopOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The inode a page belongs to, as seen when the operation is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InodeInfo {
    /// Inode number.
    pub ino: u64,
    /// i_size in bytes.
    pub size: u64,
}

/// WB_SYNC_NONE or WB_SYNC_ALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Background or reclaim writeback.
    None,
    /// Data-integrity writeback (fsync).
    All,
}

/// Models struct writeback_control (the fields a writepage looks at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritebackControl {
    pub sync_mode: SyncMode,
    /// Set by reclaim's pageout.
    pub for_reclaim: bool,
}

/// Why an operation did not return at all: the plugin trapped, ran out of
/// time or memory, or misused a handle. Native implementations never fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct AopFault {
    pub kind: FaultKind,
    /// What the runtime said (the trap message, the handle misuse).
    pub message: String,
}

/// The kinds of plugin fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The guest trapped (unreachable, out-of-bounds, panic).
    Trap,
    /// The call ran past its CPU budget (fuel or deadline).
    Timeout,
    /// The guest hit its memory limit.
    OutOfMemory,
    /// The guest misused the page handle (stale handle, write after unlock,
    /// double unlock, out-of-range access).
    HandleMisuse,
    /// The plugin could not be instantiated.
    Instantiate,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Trap => "trap",
            FaultKind::Timeout => "timeout",
            FaultKind::OutOfMemory => "out of memory",
            FaultKind::HandleMisuse => "handle misuse",
            FaultKind::Instantiate => "instantiate failed",
        })
    }
}

/// What a call returns: a result, or a fault.
pub type AopReturn = Result<AopResult, AopFault>;

/// The optional operations an implementation provides (the WIT `features`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub readpages: bool,
    pub invalidatepage: bool,
    pub releasepage: bool,
    pub truncate: bool,
}

/// Models struct address_space_operations.
///
/// On entry to every operation that takes a page, the page is locked and the
/// caller holds a reference. Who unlocks is fixed per result by the spec's
/// table (see `fs::contract`). Optional operations have kernel defaults.
pub trait AddressSpaceOperations: Send + Sync {
    /// A short name for reports (`ramfs`, `wasm:blockfs`, ...).
    fn name(&self) -> &str;

    /// Which optional operations are implemented.
    fn features(&self) -> Features {
        Features::default()
    }

    /// ->readpage: fill a locked, not-uptodate page.
    fn readpage(&self, inode: InodeInfo, page: &Page) -> AopReturn;

    /// ->readpages: fill a batch of locked readahead pages; one result per
    /// page. The default reads them one by one.
    fn readpages(&self, inode: InodeInfo, pages: &[&Page]) -> Vec<AopReturn> {
        pages
            .iter()
            .map(|page| self.readpage(inode, page))
            .collect()
    }

    /// ->writepage: write a locked page whose dirty bit the caller cleared.
    fn writepage(&self, inode: InodeInfo, page: &Page, wbc: WritebackControl) -> AopReturn;

    /// ->prepare_write: make [from, to) of the locked page ready for a copy.
    fn prepare_write(&self, inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn;

    /// ->commit_write: the caller copied [from, to) into the locked page.
    fn commit_write(&self, inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn;

    /// ->invalidatepage: the page is truncated from `offset`. Default: no-op.
    fn invalidatepage(
        &self,
        _inode: InodeInfo,
        _page: &Page,
        _offset: u32,
    ) -> Result<(), AopFault> {
        Ok(())
    }

    /// ->releasepage: may private state be dropped? Default: yes.
    fn releasepage(&self, _inode: InodeInfo, _page: &Page) -> Result<bool, AopFault> {
        Ok(true)
    }

    /// i_op->truncate: storage past `inode.size` may be freed. Default: no-op.
    fn truncate(&self, _inode: InodeInfo) -> Result<Result<(), Errno>, AopFault> {
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_aop_values_exceed_any_in_page_byte_count() {
        use crate::mm::page::PAGE_SIZE;
        assert!(AopResult::TruncatedPage.kernel_value() > PAGE_SIZE as i64);
        assert!(AopResult::WritepageActivate.kernel_value() > PAGE_SIZE as i64);
        assert_eq!(AopResult::TruncatedPage.kernel_value(), 0x80001);
        assert_eq!(AopResult::Error(Errno::Eio).kernel_value(), -5);
    }

    #[test]
    fn only_writepage_may_activate_and_writepage_may_not_truncate() {
        for op in AopOp::ALL {
            assert_eq!(
                op.allows(AopResult::WritepageActivate),
                op == AopOp::Writepage,
                "{op}"
            );
        }
        assert!(!AopOp::Writepage.allows(AopResult::TruncatedPage));
        assert!(AopOp::Readpage.allows(AopResult::TruncatedPage));
        assert!(AopOp::PrepareWrite.allows(AopResult::TruncatedPage));
        assert!(AopOp::CommitWrite.allows(AopResult::TruncatedPage));
    }
}
