//! The contract checker wrapped around every address-space operation.
//!
//! After each call it checks the spec's lock table (aops-contract.md, "Who
//! holds the page lock") for the result returned, and that the result is
//! allowed from that operation. A broken rule becomes a typed
//! [`ContractViolation`] naming the operation, inode, page index and rule.
//!
//! Invariant on every error path (violation or fault): when the checker
//! returns `Err`, the caller no longer holds the page lock. If the callee left
//! it locked, the checker unlocks it; if the callee unlocked it (or someone
//! else has taken it since), the checker leaves it alone. So nothing
//! deadlocks and no lock leaks, whatever the plugin did.

use std::fmt;

use serde::Serialize;

use crate::fs::aops::{AopFault, AopOp, AopResult, AopReturn, InodeInfo};
use crate::mm::page::Page;

/// A rule of the spec's lock table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A result the operation may not return (writepage-activate from
    /// readpage, truncated-page from writepage).
    ResultAllowed,
    /// readpage ok: the callee unlocked the page.
    ReadpageOkUnlocks,
    /// readpage ok: the page is uptodate (unless truncate already removed it).
    ReadpageOkUptodate,
    /// readpage error: the callee unlocked the page.
    ReadpageErrorUnlocks,
    /// readpage error: the page is not uptodate.
    ReadpageErrorNotUptodate,
    /// truncated-page: the callee already unlocked the page.
    TruncatedPageUnlocks,
    /// prepare_write ok/error: the page is still locked.
    PrepareWriteKeepsLock,
    /// commit_write ok/error: the page is still locked.
    CommitWriteKeepsLock,
    /// writepage ok/error: the callee unlocked the page.
    WritepageUnlocks,
    /// writepage-activate: the page is still locked.
    WritepageActivateKeepsLock,
    /// writepage-activate: the page is dirty again.
    WritepageActivateRedirties,
    /// invalidatepage/releasepage: the page stays locked.
    PageStaysLocked,
    /// The call did not return: trap, timeout, out of memory, handle misuse.
    PluginFault,
}

impl Rule {
    /// The rule as the spec states it.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::ResultAllowed => "the result is allowed from this operation",
            Rule::ReadpageOkUnlocks => "readpage ok: the callee unlocks the page",
            Rule::ReadpageOkUptodate => "readpage ok: the page is uptodate",
            Rule::ReadpageErrorUnlocks => "readpage error: the callee unlocks the page",
            Rule::ReadpageErrorNotUptodate => "readpage error: the page is not uptodate",
            Rule::TruncatedPageUnlocks => {
                "truncated-page: the callee has already unlocked the page"
            }
            Rule::PrepareWriteKeepsLock => "prepare_write ok/error: the page is still locked",
            Rule::CommitWriteKeepsLock => "commit_write ok/error: the page is still locked",
            Rule::WritepageUnlocks => "writepage ok/error: the callee unlocks the page",
            Rule::WritepageActivateKeepsLock => "writepage-activate: the page is still locked",
            Rule::WritepageActivateRedirties => "writepage-activate: the page is dirty again",
            Rule::PageStaysLocked => "invalidatepage/releasepage: the page stays locked",
            Rule::PluginFault => "the operation returns",
        }
    }

    /// A short stable id, e.g. `readpage-ok-unlocks`.
    pub fn id(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A broken rule: which operation, on which page, what it returned, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("contract violation: {op} on inode {ino} page {index} returned {returned}: broke \"{rule}\"{}", detail_suffix(.detail))]
pub struct ContractViolation {
    pub op: AopOp,
    pub ino: u64,
    pub index: u64,
    /// The result as text (`ok`, `truncated-page`, `trap`, ...).
    pub returned: String,
    pub rule: Rule,
    /// What the runtime said, for faults.
    pub detail: String,
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// The lock state the host observed after the call.
struct After {
    /// The callee (or someone after it) unlocked the page since the call began.
    unlocked_by_callee: bool,
    uptodate: bool,
    dirty: bool,
    mapped: bool,
}

/// Check one completed call against the lock table.
///
/// `seq_before` is the page's lock sequence taken just before the call, with
/// the page locked by the caller.
pub fn check(
    op: AopOp,
    inode: InodeInfo,
    page: &Page,
    seq_before: u64,
    ret: AopReturn,
) -> Result<AopResult, ContractViolation> {
    let violation = |returned: String, rule: Rule, detail: String| ContractViolation {
        op,
        ino: inode.ino,
        index: page.index(),
        returned,
        rule,
        detail,
    };
    let result = match ret {
        Ok(result) => result,
        Err(AopFault { kind, message }) => {
            return Err(violation(kind.to_string(), Rule::PluginFault, message));
        }
    };
    if !op.allows(result) {
        return Err(violation(
            result.to_string(),
            Rule::ResultAllowed,
            String::new(),
        ));
    }
    let after = After {
        unlocked_by_callee: page.lock_seq() != seq_before,
        uptodate: page.is_uptodate(),
        dirty: page.is_dirty(),
        mapped: page.is_mapped(),
    };
    match rule_broken(op, result, &after) {
        None => Ok(result),
        Some(rule) => Err(violation(result.to_string(), rule, String::new())),
    }
}

/// The first rule of the table the observed state breaks, if any.
fn rule_broken(op: AopOp, result: AopResult, after: &After) -> Option<Rule> {
    use AopOp::*;
    use AopResult::*;
    let unlocked = after.unlocked_by_callee;
    match (op, result) {
        (_, TruncatedPage) if !unlocked => Some(Rule::TruncatedPageUnlocks),
        (_, TruncatedPage) => None,
        (Readpage | Readpages, Ok) if !unlocked => Some(Rule::ReadpageOkUnlocks),
        // A page truncate removed after the callee unlocked it has lost its
        // uptodate bit legitimately; the read loop notices and retries.
        (Readpage | Readpages, Ok) if !after.uptodate && after.mapped => {
            Some(Rule::ReadpageOkUptodate)
        }
        (Readpage | Readpages, Error(_)) if !unlocked => Some(Rule::ReadpageErrorUnlocks),
        (Readpage | Readpages, Error(_)) if after.uptodate => Some(Rule::ReadpageErrorNotUptodate),
        (PrepareWrite, Ok | Error(_)) if unlocked => Some(Rule::PrepareWriteKeepsLock),
        (CommitWrite, Ok | Error(_)) if unlocked => Some(Rule::CommitWriteKeepsLock),
        (Writepage, Ok | Error(_)) if !unlocked => Some(Rule::WritepageUnlocks),
        (Writepage, WritepageActivate) if unlocked => Some(Rule::WritepageActivateKeepsLock),
        (Writepage, WritepageActivate) if !after.dirty => Some(Rule::WritepageActivateRedirties),
        (Invalidatepage | Releasepage, _) if unlocked => Some(Rule::PageStaysLocked),
        _ => None,
    }
}

/// Restore the error-path invariant after a violation or fault: the caller
/// no longer holds the lock, a page that failed to read is not uptodate, and
/// a page that failed to write is dirty again so its data is not lost.
pub fn repair_after_violation(op: AopOp, page: &Page, seq_before: u64) {
    let still_ours = page.lock_seq() == seq_before && page.is_locked();
    match op {
        AopOp::Writepage => {
            page.set_dirty();
            if page.is_writeback() && still_ours {
                page.end_writeback();
            }
        }
        AopOp::Readpage | AopOp::Readpages if still_ours => {
            page.clear_uptodate();
            page.set_error();
        }
        _ => {}
    }
    if still_ours {
        page.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::fs::aops::FaultKind;
    use crate::mm::page::{PageRef, PageShared};
    use std::sync::Arc;

    const INODE: InodeInfo = InodeInfo { ino: 7, size: 8192 };

    fn locked_page() -> PageRef {
        let page = crate::mm::page::Page::alloc_locked(7, 1, Arc::new(PageShared::default()));
        page.set_mapping(1);
        page
    }

    #[test]
    fn readpage_ok_requires_unlock_and_uptodate() {
        let p = locked_page();
        let seq = p.lock_seq();
        let v = check(AopOp::Readpage, INODE, &p, seq, Ok(AopResult::Ok)).unwrap_err();
        assert_eq!(v.rule, Rule::ReadpageOkUnlocks);
        assert_eq!((v.ino, v.index), (7, 1));
        p.unlock();
        let v = check(AopOp::Readpage, INODE, &p, seq, Ok(AopResult::Ok)).unwrap_err();
        assert_eq!(v.rule, Rule::ReadpageOkUptodate);
        p.set_uptodate();
        assert_eq!(
            check(AopOp::Readpage, INODE, &p, seq, Ok(AopResult::Ok)),
            Ok(AopResult::Ok)
        );
    }

    #[test]
    fn readpage_ok_on_a_truncated_page_is_not_a_violation() {
        let p = locked_page();
        let seq = p.lock_seq();
        p.unlock();
        p.set_mapping(0);
        assert_eq!(
            check(AopOp::Readpage, INODE, &p, seq, Ok(AopResult::Ok)),
            Ok(AopResult::Ok)
        );
    }

    #[test]
    fn prepare_write_must_keep_the_lock() {
        let p = locked_page();
        let seq = p.lock_seq();
        assert!(
            check(
                AopOp::PrepareWrite,
                INODE,
                &p,
                seq,
                Ok(AopResult::Error(Errno::Enospc))
            )
            .is_ok()
        );
        p.unlock();
        let v = check(AopOp::PrepareWrite, INODE, &p, seq, Ok(AopResult::Ok)).unwrap_err();
        assert_eq!(v.rule, Rule::PrepareWriteKeepsLock);
    }

    #[test]
    fn writepage_activate_from_readpage_is_not_allowed() {
        let p = locked_page();
        let seq = p.lock_seq();
        let v = check(
            AopOp::Readpage,
            INODE,
            &p,
            seq,
            Ok(AopResult::WritepageActivate),
        )
        .unwrap_err();
        assert_eq!(v.rule, Rule::ResultAllowed);
        assert!(v.to_string().contains("writepage-activate"), "{v}");
    }

    #[test]
    fn writepage_activate_must_redirty_and_keep_lock() {
        let p = locked_page();
        let seq = p.lock_seq();
        let v = check(
            AopOp::Writepage,
            INODE,
            &p,
            seq,
            Ok(AopResult::WritepageActivate),
        )
        .unwrap_err();
        assert_eq!(v.rule, Rule::WritepageActivateRedirties);
        p.set_dirty();
        assert!(
            check(
                AopOp::Writepage,
                INODE,
                &p,
                seq,
                Ok(AopResult::WritepageActivate)
            )
            .is_ok()
        );
    }

    #[test]
    fn repair_unlocks_only_a_lock_the_caller_still_holds() {
        let p = locked_page();
        let seq = p.lock_seq();
        repair_after_violation(AopOp::Readpage, &p, seq);
        assert!(!p.is_locked());
        assert!(p.is_error());
        // Someone else locks it now; a late repair must not steal their lock.
        p.lock();
        repair_after_violation(AopOp::Readpage, &p, seq);
        assert!(
            p.is_locked(),
            "repair must not unlock another holder's lock"
        );
    }

    #[test]
    fn fault_is_reported_as_plugin_fault_rule() {
        let p = locked_page();
        let seq = p.lock_seq();
        let fault = AopFault {
            kind: FaultKind::Trap,
            message: "unreachable".into(),
        };
        let v = check(AopOp::Readpage, INODE, &p, seq, Err(fault)).unwrap_err();
        assert_eq!(v.rule, Rule::PluginFault);
        assert!(v.to_string().contains("trap"), "{v}");
        assert_eq!(Rule::ReadpageOkUnlocks.id(), "readpage-ok-unlocks");
    }
}
