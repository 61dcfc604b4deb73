//! A cluster lock service: a tiny DLM, as OCFS2 uses (the WIT
//! `cluster-lock` interface).
//!
//! Locks are named, taken shared (many holders) or exclusive (one). Every
//! hold belongs to a [`HolderId`]: each plugin instance is one holder, and a
//! simulated "other node" ([`ClusterNode`]) is another. Ownership is what
//! makes instances disposable: when the runtime discards an instance after a
//! trap, [`ClusterLockService::release_all`] drops whatever it held, so a
//! crashed instance never leaves a lock behind.
//!
//! A holder may take a lock it already holds (the holds nest and each
//! `unlock` releases one, exclusive before shared). Blocking waits are
//! bounded: `lock` gives up with `EAGAIN` after the service's timeout
//! instead of hanging the calling thread, because a blocked host import
//! cannot be interrupted by fuel.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::errno::Errno;

/// A DLM lock mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// Many holders at once (a protected read).
    Shared,
    /// One holder (a protected write).
    Exclusive,
}

/// Who holds a lock: one plugin instance or one simulated node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HolderId(u64);

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "holder#{}", self.0)
    }
}

/// The holds one holder has on one lock.
#[derive(Clone, Copy, Debug, Default)]
struct Holds {
    shared: u32,
    exclusive: u32,
}

/// Unlocking a lock the holder does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cluster lock {name:?} is not held by {holder} (held by {})", describe_holders(.held_by))]
pub struct LockNotHeld {
    pub name: String,
    pub holder: HolderId,
    /// Who does hold it, and how.
    pub held_by: Vec<(HolderId, LockMode)>,
}

/// "holder#2 exclusive, holder#5 shared" or "nobody".
fn describe_holders(holders: &[(HolderId, LockMode)]) -> String {
    if holders.is_empty() {
        return "nobody".to_owned();
    }
    let each: Vec<String> = holders
        .iter()
        .map(|(h, mode)| format!("{h} {mode:?}").to_lowercase())
        .collect();
    each.join(", ")
}

/// Counters for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterLockStats {
    /// Locks granted (blocking or try).
    pub granted: u64,
    /// `trylock` calls that found the lock busy.
    pub trylock_busy: u64,
    /// `lock` calls that had to wait.
    pub waits: u64,
    /// `lock` calls that gave up with EAGAIN.
    pub timeouts: u64,
    /// Holds dropped by `release_all` (discarded instances, dropped nodes).
    pub released_on_discard: u64,
}

/// The lock table: name -> holder -> holds.
#[derive(Default)]
struct Table {
    locks: HashMap<String, HashMap<HolderId, Holds>>,
}

impl Table {
    /// Whether `holder` may take `name` in `mode` now.
    fn grantable(&self, name: &str, holder: HolderId, mode: LockMode) -> bool {
        let Some(holders) = self.locks.get(name) else {
            return true;
        };
        holders
            .iter()
            .filter(|(h, _)| **h != holder)
            .all(|(_, holds)| match mode {
                LockMode::Exclusive => holds.shared == 0 && holds.exclusive == 0,
                LockMode::Shared => holds.exclusive == 0,
            })
    }

    /// Record a granted hold.
    fn grant(&mut self, name: &str, holder: HolderId, mode: LockMode) {
        let holds = self
            .locks
            .entry(name.to_owned())
            .or_default()
            .entry(holder)
            .or_default();
        match mode {
            LockMode::Shared => holds.shared += 1,
            LockMode::Exclusive => holds.exclusive += 1,
        }
    }
}

/// The holders of `name` in `table` and their strongest mode, sorted.
fn holders_of(table: &Table, name: &str) -> Vec<(HolderId, LockMode)> {
    let mut out: Vec<(HolderId, LockMode)> = table
        .locks
        .get(name)
        .map(|holders| {
            holders
                .iter()
                .map(|(h, holds)| {
                    (
                        *h,
                        if holds.exclusive > 0 {
                            LockMode::Exclusive
                        } else {
                            LockMode::Shared
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|(h, _)| *h);
    out
}

/// The DLM shared by every instance of a plugin and by simulated nodes.
pub struct ClusterLockService {
    table: Mutex<Table>,
    /// Signalled whenever a hold is released.
    released: Condvar,
    /// How long a blocking `lock` waits before failing with EAGAIN.
    timeout: Duration,
    next_holder: AtomicU64,
    granted: AtomicU64,
    trylock_busy: AtomicU64,
    waits: AtomicU64,
    timeouts: AtomicU64,
    released_on_discard: AtomicU64,
}

impl fmt::Debug for ClusterLockService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterLockService")
            .field("timeout", &self.timeout)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ClusterLockService {
    /// The default bound on a blocking `lock`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// A new, empty lock service whose blocking waits give up after
    /// `timeout`.
    pub fn new(timeout: Duration) -> Arc<ClusterLockService> {
        Arc::new(ClusterLockService {
            table: Mutex::new(Table::default()),
            released: Condvar::new(),
            timeout,
            next_holder: AtomicU64::new(1),
            granted: AtomicU64::new(0),
            trylock_busy: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            released_on_discard: AtomicU64::new(0),
        })
    }

    /// The bound on blocking waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new holder identity (one per plugin instance or node).
    pub fn new_holder(&self) -> HolderId {
        HolderId(self.next_holder.fetch_add(1, Ordering::Relaxed))
    }

    /// A handle that takes locks as another cluster node would, creating
    /// contention for the plugin. Its locks are released when it is dropped.
    pub fn node(self: &Arc<Self>) -> ClusterNode {
        ClusterNode {
            service: Arc::clone(self),
            holder: self.new_holder(),
        }
    }

    /// Take `name` in `mode` for `holder`, waiting at most the service's
    /// timeout; `EAGAIN` when it runs out.
    pub fn lock(&self, holder: HolderId, name: &str, mode: LockMode) -> Result<(), Errno> {
        self.lock_for(holder, name, mode, self.timeout)
    }

    /// Take `name` in `mode` for `holder`, waiting at most `timeout`.
    pub fn lock_for(
        &self,
        holder: HolderId,
        name: &str,
        mode: LockMode,
        timeout: Duration,
    ) -> Result<(), Errno> {
        let deadline = Instant::now() + timeout;
        let mut table = self.table.lock();
        let mut waited = false;
        while !table.grantable(name, holder, mode) {
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            if self.released.wait_until(&mut table, deadline).timed_out()
                && !table.grantable(name, holder, mode)
            {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(Errno::Eagain);
            }
        }
        table.grant(name, holder, mode);
        self.granted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Take `name` in `mode` for `holder` only if it is free now.
    pub fn trylock(&self, holder: HolderId, name: &str, mode: LockMode) -> bool {
        let mut table = self.table.lock();
        if table.grantable(name, holder, mode) {
            table.grant(name, holder, mode);
            self.granted.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.trylock_busy.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Release one hold of `name` by `holder` (an exclusive one first).
    pub fn unlock(&self, holder: HolderId, name: &str) -> Result<(), LockNotHeld> {
        let mut table = self.table.lock();
        let Some(holders) = table.locks.get_mut(name) else {
            return Err(LockNotHeld {
                name: name.to_owned(),
                holder,
                held_by: Vec::new(),
            });
        };
        let Some(holds) = holders.get_mut(&holder) else {
            let held_by = holders_of(&table, name);
            return Err(LockNotHeld {
                name: name.to_owned(),
                holder,
                held_by,
            });
        };
        if holds.exclusive > 0 {
            holds.exclusive -= 1;
        } else {
            assert!(holds.shared > 0, "an empty hold record is never kept");
            holds.shared -= 1;
        }
        if holds.exclusive == 0 && holds.shared == 0 {
            holders.remove(&holder);
            if holders.is_empty() {
                table.locks.remove(name);
            }
        }
        drop(table);
        self.released.notify_all();
        Ok(())
    }

    /// Drop every hold of `holder` (its instance was discarded, or its node
    /// dropped). Returns how many holds were released.
    pub fn release_all(&self, holder: HolderId) -> u64 {
        let mut table = self.table.lock();
        let mut released = 0u64;
        table.locks.retain(|_, holders| {
            if let Some(holds) = holders.remove(&holder) {
                released += u64::from(holds.shared) + u64::from(holds.exclusive);
            }
            !holders.is_empty()
        });
        drop(table);
        if released > 0 {
            self.released_on_discard
                .fetch_add(released, Ordering::Relaxed);
            self.released.notify_all();
        }
        released
    }

    /// The holders of `name` and their strongest mode, sorted by holder.
    pub fn holders(&self, name: &str) -> Vec<(HolderId, LockMode)> {
        let table = self.table.lock();
        let mut out: Vec<(HolderId, LockMode)> = table
            .locks
            .get(name)
            .map(|holders| {
                holders
                    .iter()
                    .map(|(h, holds)| {
                        (
                            *h,
                            if holds.exclusive > 0 {
                                LockMode::Exclusive
                            } else {
                                LockMode::Shared
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|(h, _)| *h);
        out
    }

    /// How many holds `holder` has across all locks.
    pub fn holds_of(&self, holder: HolderId) -> u64 {
        let table = self.table.lock();
        table
            .locks
            .values()
            .filter_map(|holders| holders.get(&holder))
            .map(|holds| u64::from(holds.shared) + u64::from(holds.exclusive))
            .sum()
    }

    /// The counters so far.
    pub fn stats(&self) -> ClusterLockStats {
        ClusterLockStats {
            granted: self.granted.load(Ordering::Relaxed),
            trylock_busy: self.trylock_busy.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            released_on_discard: self.released_on_discard.load(Ordering::Relaxed),
        }
    }
}

/// Another cluster node, simulated on the host: tests and workloads take
/// locks through it to contend with the plugin. Dropping it releases all of
/// its locks.
pub struct ClusterNode {
    service: Arc<ClusterLockService>,
    holder: HolderId,
}

impl ClusterNode {
    /// This node's holder identity.
    pub fn holder(&self) -> HolderId {
        self.holder
    }

    /// Take a lock, waiting at most the service's timeout.
    pub fn lock(&self, name: &str, mode: LockMode) -> Result<(), Errno> {
        self.service.lock(self.holder, name, mode)
    }

    /// Take a lock, waiting at most `timeout`.
    pub fn lock_for(&self, name: &str, mode: LockMode, timeout: Duration) -> Result<(), Errno> {
        self.service.lock_for(self.holder, name, mode, timeout)
    }

    /// Take a lock only if it is free now.
    pub fn trylock(&self, name: &str, mode: LockMode) -> bool {
        self.service.trylock(self.holder, name, mode)
    }

    /// Release one hold of a lock.
    pub fn unlock(&self, name: &str) -> Result<(), LockNotHeld> {
        self.service.unlock(self.holder, name)
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.service.release_all(self.holder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn shared_holders_coexist_and_exclusive_excludes() {
        let dlm = ClusterLockService::new(Duration::from_millis(50));
        let (a, b) = (dlm.new_holder(), dlm.new_holder());
        assert!(dlm.trylock(a, "inode:1", LockMode::Shared));
        assert!(dlm.trylock(b, "inode:1", LockMode::Shared));
        assert!(
            !dlm.trylock(b, "inode:1", LockMode::Exclusive),
            "a still holds it shared"
        );
        dlm.unlock(a, "inode:1").unwrap();
        assert!(
            dlm.trylock(b, "inode:1", LockMode::Exclusive),
            "b may upgrade once alone"
        );
        assert!(!dlm.trylock(a, "inode:1", LockMode::Shared));
        assert_eq!(dlm.holders("inode:1"), vec![(b, LockMode::Exclusive)]);
        let err = dlm.unlock(a, "inode:1").unwrap_err();
        assert_eq!((err.name.as_str(), err.holder), ("inode:1", a));
        assert_eq!(err.held_by, vec![(b, LockMode::Exclusive)]);
        assert!(
            err.to_string().contains("held by holder#2 exclusive"),
            "{err}"
        );
    }

    #[test]
    fn blocking_lock_times_out_with_eagain_instead_of_hanging() {
        let dlm = ClusterLockService::new(Duration::from_millis(30));
        let node = dlm.node();
        node.lock("x", LockMode::Exclusive).unwrap();
        let me = dlm.new_holder();
        let start = Instant::now();
        assert_eq!(dlm.lock(me, "x", LockMode::Shared), Err(Errno::Eagain));
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(dlm.stats().timeouts, 1);
    }

    #[test]
    fn blocking_lock_is_granted_when_the_holder_releases() {
        let dlm = ClusterLockService::new(Duration::from_secs(10));
        let node = dlm.node();
        node.lock("x", LockMode::Exclusive).unwrap();
        let dlm2 = Arc::clone(&dlm);
        let waiter = thread::spawn(move || {
            let me = dlm2.new_holder();
            dlm2.lock(me, "x", LockMode::Exclusive)
        });
        thread::sleep(Duration::from_millis(20));
        node.unlock("x").unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));
    }

    #[test]
    fn release_all_drops_a_discarded_holders_locks_and_wakes_waiters() {
        let dlm = ClusterLockService::new(Duration::from_secs(10));
        let crashed = dlm.new_holder();
        assert!(dlm.trylock(crashed, "a", LockMode::Exclusive));
        assert!(dlm.trylock(crashed, "b", LockMode::Shared));
        assert!(dlm.trylock(crashed, "b", LockMode::Shared));
        let dlm2 = Arc::clone(&dlm);
        let waiter = thread::spawn(move || dlm2.node().lock("a", LockMode::Exclusive));
        thread::sleep(Duration::from_millis(20));
        assert_eq!(dlm.release_all(crashed), 3);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert!(dlm.holders("b").is_empty());
        assert_eq!(dlm.holds_of(crashed), 0);
    }

    #[test]
    fn dropping_a_node_releases_its_locks() {
        let dlm = ClusterLockService::new(Duration::from_millis(10));
        let node = dlm.node();
        node.lock("x", LockMode::Exclusive).unwrap();
        drop(node);
        assert!(dlm.trylock(dlm.new_holder(), "x", LockMode::Exclusive));
    }
}
