//! A scriptable test aops: wraps real operations (a [`MemStoreAops`] by
//! default) and, at chosen calls, returns chosen results instead.
//!
//! A rule matches an operation, optionally an inode and a page index, lets
//! `skip` matching calls through, then fires `times` times (or forever). Its
//! action either behaves like a well-mannered callee returning that result
//! (unlocking exactly where the lock table says the callee unlocks), returns
//! the result raw without touching the page (to break the contract on
//! purpose), faults, or runs a closure. Every call is logged.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::errno::Errno;
use crate::fs::aops::{
    AddressSpaceOperations, AopFault, AopOp, AopResult, AopReturn, Features, InodeInfo,
    WritebackControl,
};
use crate::fs::memstore::{MemStore, MemStoreAops};
use crate::mm::page::Page;

/// A closure standing in for an operation. It gets the wrapped operations so
/// it can do the real work before or after its own.
pub type Hook =
    Arc<dyn Fn(&dyn AddressSpaceOperations, InodeInfo, &Page) -> AopReturn + Send + Sync>;

/// What a rule does when it fires.
#[derive(Clone)]
pub enum Action {
    /// Return this result as a correct callee would: unlock the page where
    /// the lock table says the callee unlocks; re-dirty it for
    /// writepage-activate.
    Return(AopResult),
    /// Return this result and do nothing to the page.
    ReturnRaw(AopResult),
    /// Fail the call as a plugin fault.
    Fault(AopFault),
    /// Run a closure instead of the operation.
    Call(Hook),
}

/// When and how a rule fires.
#[derive(Clone)]
pub struct ScriptRule {
    pub op: AopOp,
    pub ino: Option<u64>,
    pub index: Option<u64>,
    /// Matching calls to let through before firing.
    pub skip: u32,
    /// How many times to fire; `None` for every matching call after `skip`.
    pub times: Option<u32>,
    pub action: Action,
}

impl ScriptRule {
    /// Fire `action` on every call of `op`.
    pub fn always(op: AopOp, action: Action) -> Self {
        ScriptRule {
            op,
            ino: None,
            index: None,
            skip: 0,
            times: None,
            action,
        }
    }

    /// Fire `action` on the next `times` calls of `op`.
    pub fn times(op: AopOp, times: u32, action: Action) -> Self {
        ScriptRule {
            op,
            ino: None,
            index: None,
            skip: 0,
            times: Some(times),
            action,
        }
    }

    /// Only for page `index` of inode `ino`.
    pub fn on(mut self, ino: u64, index: u64) -> Self {
        self.ino = Some(ino);
        self.index = Some(index);
        self
    }

    /// Let the first `skip` matching calls through.
    pub fn after(mut self, skip: u32) -> Self {
        self.skip = skip;
        self
    }

    fn matches(&self, op: AopOp, ino: u64, index: u64) -> bool {
        self.op == op && self.ino.is_none_or(|i| i == ino) && self.index.is_none_or(|i| i == index)
    }
}

/// One logged call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    pub op: AopOp,
    pub ino: u64,
    pub index: u64,
    /// What the call returned (`None`: it faulted).
    pub result: Option<AopResult>,
    /// Whether a rule fired for it.
    pub scripted: bool,
}

struct Armed {
    rule: ScriptRule,
    seen: u32,
    fired: u32,
}

/// The scriptable aops.
pub struct ScriptedAops {
    inner: Arc<dyn AddressSpaceOperations>,
    rules: Mutex<Vec<Armed>>,
    log: Mutex<Vec<CallRecord>>,
}

impl ScriptedAops {
    /// Scripted operations over a fresh in-memory store.
    pub fn new() -> Arc<ScriptedAops> {
        Self::wrapping(Arc::new(MemStoreAops::new(MemStore::new())))
    }

    /// Scripted operations over `inner`.
    pub fn wrapping(inner: Arc<dyn AddressSpaceOperations>) -> Arc<ScriptedAops> {
        Arc::new(ScriptedAops {
            inner,
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        })
    }

    /// Add a rule; rules are tried in the order added.
    pub fn push(&self, rule: ScriptRule) {
        self.rules.lock().push(Armed {
            rule,
            seen: 0,
            fired: 0,
        });
    }

    /// Remove every rule.
    pub fn clear(&self) {
        self.rules.lock().clear();
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.log.lock().clone()
    }

    /// How many calls of `op` returned `result`.
    pub fn count(&self, op: AopOp, result: AopResult) -> usize {
        self.log
            .lock()
            .iter()
            .filter(|c| c.op == op && c.result == Some(result))
            .count()
    }

    /// The action of the first rule that fires for this call, if any.
    fn fire(&self, op: AopOp, ino: u64, index: u64) -> Option<Action> {
        let mut rules = self.rules.lock();
        for armed in rules.iter_mut().filter(|a| a.rule.matches(op, ino, index)) {
            if armed.rule.times.is_some_and(|t| armed.fired >= t) {
                continue;
            }
            armed.seen += 1;
            if armed.seen <= armed.rule.skip {
                continue;
            }
            armed.fired += 1;
            return Some(armed.rule.action.clone());
        }
        None
    }

    fn dispatch(
        &self,
        op: AopOp,
        inode: InodeInfo,
        page: &Page,
        real: impl FnOnce() -> AopReturn,
    ) -> AopReturn {
        let action = self.fire(op, inode.ino, page.index());
        let scripted = action.is_some();
        let ret = match action {
            None => real(),
            Some(Action::Return(result)) => Ok(behave(op, page, result)),
            Some(Action::ReturnRaw(result)) => Ok(result),
            Some(Action::Fault(fault)) => Err(fault),
            Some(Action::Call(hook)) => hook(self.inner.as_ref(), inode, page),
        };
        self.log.lock().push(CallRecord {
            op,
            ino: inode.ino,
            index: page.index(),
            result: ret.as_ref().ok().copied(),
            scripted,
        });
        ret
    }
}

/// Do to the page what a correct callee returning `result` from `op` does.
fn behave(op: AopOp, page: &Page, result: AopResult) -> AopResult {
    let callee_unlocks = match (op, result) {
        (_, AopResult::TruncatedPage) => true,
        (
            AopOp::Readpage | AopOp::Readpages | AopOp::Writepage,
            AopResult::Ok | AopResult::Error(_),
        ) => true,
        (AopOp::Writepage, AopResult::WritepageActivate) => {
            page.set_dirty();
            false
        }
        _ => false,
    };
    if matches!(
        (op, result),
        (AopOp::Readpage | AopOp::Readpages, AopResult::Ok)
    ) {
        page.set_uptodate();
    }
    if matches!(
        (op, result),
        (AopOp::Readpage | AopOp::Readpages, AopResult::Error(_))
    ) {
        page.set_error();
    }
    if callee_unlocks && page.is_locked() {
        page.unlock();
    }
    result
}

impl AddressSpaceOperations for ScriptedAops {
    fn name(&self) -> &str {
        "scripted"
    }

    fn features(&self) -> Features {
        self.inner.features()
    }

    fn readpage(&self, inode: InodeInfo, page: &Page) -> AopReturn {
        self.dispatch(AopOp::Readpage, inode, page, || {
            self.inner.readpage(inode, page)
        })
    }

    fn writepage(&self, inode: InodeInfo, page: &Page, wbc: WritebackControl) -> AopReturn {
        self.dispatch(AopOp::Writepage, inode, page, || {
            self.inner.writepage(inode, page, wbc)
        })
    }

    fn prepare_write(&self, inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn {
        self.dispatch(AopOp::PrepareWrite, inode, page, || {
            self.inner.prepare_write(inode, page, from, to)
        })
    }

    fn commit_write(&self, inode: InodeInfo, page: &Page, from: u32, to: u32) -> AopReturn {
        self.dispatch(AopOp::CommitWrite, inode, page, || {
            self.inner.commit_write(inode, page, from, to)
        })
    }

    fn invalidatepage(&self, inode: InodeInfo, page: &Page, offset: u32) -> Result<(), AopFault> {
        self.inner.invalidatepage(inode, page, offset)
    }

    fn releasepage(&self, inode: InodeInfo, page: &Page) -> Result<bool, AopFault> {
        self.inner.releasepage(inode, page)
    }

    fn truncate(&self, inode: InodeInfo) -> Result<Result<(), Errno>, AopFault> {
        self.inner.truncate(inode)
    }
}
