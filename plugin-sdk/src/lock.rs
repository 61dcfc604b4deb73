//! Cluster locks (the WIT `cluster-lock` import, a DLM as OCFS2 uses):
//! named locks shared by every instance of a plugin and by the other
//! "nodes" the host simulates.
//!
//! Guards release the lock when dropped. While holding a page lock never
//! block in [`lock`]: the holder may need that page. Use [`lock_with_page`],
//! which implements the OCFS2 pattern.

use crate::bindings::aopsfs::vfs::cluster_lock as host;
pub use crate::bindings::aopsfs::vfs::cluster_lock::LockMode;
use crate::blockmap::{self, MetaLock};
use crate::page::PageExt;
use crate::{AopResult, Errno, Page};

/// A held cluster lock; dropping it releases the lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ClusterGuard {
    name: String,
    mode: LockMode,
}

impl ClusterGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mode it is held in.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Release the lock now (same as dropping the guard).
    pub fn unlock(self) {}
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        host::unlock(&self.name);
    }
}

/// Take lock `name` in `mode`, blocking. Fails with `Again` when the host's
/// bound on waiting runs out. Never call it while holding a page lock.
pub fn lock(name: impl Into<String>, mode: LockMode) -> Result<ClusterGuard, Errno> {
    let name = name.into();
    host::lock(&name, mode)?;
    Ok(ClusterGuard { name, mode })
}

/// Take lock `name` in `mode` if it is free now.
pub fn try_lock(name: impl Into<String>, mode: LockMode) -> Option<ClusterGuard> {
    let name = name.into();
    // `then`, not `then_some`: a guard built eagerly would be dropped on
    // failure, releasing a lock this instance never took.
    host::trylock(&name, mode).then(|| ClusterGuard { name, mode })
}

/// Take cluster lock `name` while holding the page lock of `page`, the OCFS2
/// way (ocfs2_meta_lock_with_page): `trylock`; if that fails, unlock the
/// page, take the lock blocking and drop it at once (so the next attempt
/// will likely find it cached), and return `Err(TruncatedPage)` for the
/// operation to return, which makes the caller look the page up again.
///
/// On `Ok` the page is still locked and the guard holds the cluster lock; on
/// `Err` the page is unlocked. Usable from readpage, prepare_write and
/// commit_write (the operations allowed to return `truncated-page`), not
/// from writepage (which should decline instead: [`crate::decline_writepage`]).
pub fn lock_with_page(
    page: &Page,
    name: impl Into<String>,
    mode: LockMode,
) -> Result<ClusterGuard, AopResult> {
    let name = name.into();
    if host::trylock(&name, mode) {
        return Ok(ClusterGuard { name, mode });
    }
    let retry = page.unlock_and_retry();
    match host::lock(&name, mode) {
        Ok(()) => host::unlock(&name),
        // The page is already unlocked, so truncated-page is still the only
        // honest answer; the caller's retry loop is bounded and observable.
        Err(e) => crate::warn!(
            "cluster lock {name}: blocking wait failed ({e:?}); retrying the page anyway"
        ),
    }
    Err(retry)
}

/// The conventional name of the lock for inode `ino`: `inode.<ino>`.
pub fn inode_lock_name(ino: u64) -> String {
    format!("inode.{ino}")
}

/// A [`blockmap::MetaLock`] over a named cluster lock (by default
/// [`blockmap::META_LOCK`]), so blockmap metadata stays coherent across all
/// instances. The cluster lock service has no modes on unlock, so the mode
/// is ignored there.
#[derive(Clone, Debug)]
pub struct ClusterMetaLock {
    name: String,
}

impl ClusterMetaLock {
    /// The lock named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        ClusterMetaLock { name: name.into() }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for ClusterMetaLock {
    fn default() -> Self {
        ClusterMetaLock::new(blockmap::META_LOCK)
    }
}

fn wit_mode(mode: blockmap::LockMode) -> LockMode {
    match mode {
        blockmap::LockMode::Shared => LockMode::Shared,
        blockmap::LockMode::Exclusive => LockMode::Exclusive,
    }
}

impl MetaLock for ClusterMetaLock {
    fn lock(&self, mode: blockmap::LockMode) -> Result<(), blockmap::Errno> {
        host::lock(&self.name, wit_mode(mode)).map_err(Into::into)
    }

    fn try_lock(&self, mode: blockmap::LockMode) -> bool {
        host::trylock(&self.name, wit_mode(mode))
    }

    fn unlock(&self, _mode: blockmap::LockMode) {
        host::unlock(&self.name);
    }
}
