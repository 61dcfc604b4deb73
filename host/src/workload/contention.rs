//! Another cluster node, for `cluster_lock` operations: it takes a file's
//! DLM lock and keeps it for a while *in the background*, so the workload
//! goes on and meets the contention (a readpage that finds the lock taken
//! returns truncated-page, OCFS2-style).
//!
//! One helper thread owns a [`ClusterNode`] of the plugin's lock service.
//! A `cluster_lock` operation asks it to take a lock and waits until the
//! lock is held; the helper releases each hold when its time is up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::errno::Errno;
use crate::services::{ClusterLockService, LockMode};

/// A request to hold `name` in `mode` for `hold`; the reply says whether
/// the node got the lock.
struct HoldRequest {
    name: String,
    mode: LockMode,
    hold: Duration,
    reply: Sender<Result<(), Errno>>,
}

/// Counters of the other node's holds.
#[derive(Default)]
struct NodeStats {
    granted: AtomicU64,
    timed_out: AtomicU64,
}

/// The simulated other node.
pub struct OtherNode {
    requests: Option<Sender<HoldRequest>>,
    helper: Option<JoinHandle<()>>,
    stats: Arc<NodeStats>,
}

impl OtherNode {
    /// Start the node's helper thread on `locks`.
    pub fn start(locks: Arc<ClusterLockService>) -> OtherNode {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(NodeStats::default());
        let helper_stats = Arc::clone(&stats);
        let helper = std::thread::Builder::new()
            .name("other-node".into())
            .spawn(move || serve(&locks, &rx, &helper_stats))
            .expect("spawn the other-node thread");
        OtherNode {
            requests: Some(tx),
            helper: Some(helper),
            stats,
        }
    }

    /// Take `name` in `mode` as the other node and keep it for `hold`.
    /// Returns once the lock is held (or the service's wait bound ran out:
    /// `EAGAIN`).
    pub fn hold(&self, name: String, mode: LockMode, hold: Duration) -> Result<(), Errno> {
        let (reply, answer) = mpsc::channel();
        let request = HoldRequest {
            name,
            mode,
            hold,
            reply,
        };
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|tx| tx.send(request).is_ok());
        if !sent {
            return Err(Errno::Eio);
        }
        answer.recv().unwrap_or(Err(Errno::Eio))
    }

    /// Holds granted so far.
    pub fn granted(&self) -> u64 {
        self.stats.granted.load(Ordering::Relaxed)
    }

    /// Holds that could not be taken within the service's wait bound.
    pub fn timed_out(&self) -> u64 {
        self.stats.timed_out.load(Ordering::Relaxed)
    }

    /// Release every hold now and stop the helper.
    pub fn stop(&mut self) {
        self.requests.take();
        if let Some(helper) = self.helper.take() {
            let _ = helper.join();
        }
    }
}

impl Drop for OtherNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The helper: take locks on request, release them when due; on shutdown
/// release everything (dropping the node does). A hold of a lock the node
/// already holds extends that hold instead of nesting a second one.
fn serve(locks: &Arc<ClusterLockService>, requests: &Receiver<HoldRequest>, stats: &NodeStats) {
    let node = locks.node();
    let mut held: HashMap<String, Instant> = HashMap::new();
    loop {
        let now = Instant::now();
        held.retain(|name, until| {
            let keep = *until > now;
            if !keep {
                let _ = node.unlock(name);
            }
            keep
        });
        let request = match held.values().min() {
            Some(until) => match requests.recv_timeout(until.saturating_duration_since(now)) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match requests.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let result = match held.get_mut(&request.name) {
            Some(until) => {
                *until = (*until).max(Instant::now() + request.hold);
                Ok(())
            }
            None => node.lock(&request.name, request.mode).map(|()| {
                held.insert(request.name.clone(), Instant::now() + request.hold);
            }),
        };
        match result {
            Ok(()) => stats.granted.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.timed_out.fetch_add(1, Ordering::Relaxed),
        };
        let _ = request.reply.send(result);
    }
    drop(node);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_last_their_time_then_release() {
        let locks = ClusterLockService::new(Duration::from_secs(5));
        let mut node = OtherNode::start(Arc::clone(&locks));
        node.hold(
            "inode.1".into(),
            LockMode::Exclusive,
            Duration::from_millis(50),
        )
        .unwrap();
        let me = locks.new_holder();
        assert!(
            !locks.trylock(me, "inode.1", LockMode::Shared),
            "held by the other node"
        );
        let start = Instant::now();
        locks.lock(me, "inode.1", LockMode::Shared).unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "waited for the hold to end"
        );
        locks.unlock(me, "inode.1").unwrap();
        assert_eq!(node.granted(), 1);
        node.hold(
            "inode.2".into(),
            LockMode::Exclusive,
            Duration::from_secs(30),
        )
        .unwrap();
        node.stop();
        assert!(
            locks.trylock(me, "inode.2", LockMode::Exclusive),
            "stop releases every hold"
        );
    }
}
