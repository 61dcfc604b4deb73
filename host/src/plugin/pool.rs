//! The instance pool: one instance per concurrent caller, reused while it
//! stays healthy, discarded after any fault.
//!
//! A caller takes an idle instance, or creates one if fewer than the bound
//! are alive, or waits for one to come back. Instances are interchangeable
//! (plugin state lives in the host services), so which one a caller gets
//! does not matter; the most recently returned one is preferred (its memory
//! is warm). A faulted instance is dropped, which releases its cluster
//! locks, and the next caller that needs one creates a fresh instance.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::fs::aops::AopFault;
use crate::fs::aops::Features;
use crate::plugin::instance::{CreateFailure, Instance, InstanceFactory};

/// Counters of instance churn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Instances created (instantiated and mounted).
    pub created: u64,
    /// Instances dropped after a fault.
    pub discarded: u64,
    /// Instantiations (or mounts) that failed.
    pub failed_creates: u64,
    /// Times a caller had to wait because every instance was busy.
    pub waits: u64,
    /// Instances alive now (idle or in use).
    pub live: u64,
}

struct PoolState {
    idle: Vec<Instance>,
    /// Instances alive: idle, in use, or being created.
    live: usize,
}

/// A bounded pool of instances of one plugin.
pub(crate) struct InstancePool {
    factory: InstanceFactory,
    max: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
    created: AtomicU64,
    discarded: AtomicU64,
    failed_creates: AtomicU64,
    waits: AtomicU64,
}

impl InstancePool {
    /// A pool of at most `max` instances made by `factory`.
    pub(crate) fn new(factory: InstanceFactory, max: usize) -> InstancePool {
        assert!(max > 0, "an instance pool needs room for one instance");
        InstancePool {
            factory,
            max,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                live: 0,
            }),
            returned: Condvar::new(),
            created: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            failed_creates: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        }
    }

    /// The factory (for the services and limits it holds).
    pub(crate) fn factory(&self) -> &InstanceFactory {
        &self.factory
    }

    /// An instance for one call: an idle one, a new one, or (at the bound)
    /// the next one returned. Fails only if a new instance cannot be made.
    pub(crate) fn take(&self) -> Result<Lease<'_>, AopFault> {
        let mut state = self.state.lock();
        let mut waited = false;
        loop {
            if let Some(instance) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    instance: Some(instance),
                });
            }
            if state.live < self.max {
                state.live += 1;
                drop(state);
                return match self.factory.create() {
                    Ok(instance) => {
                        self.created.fetch_add(1, Ordering::Relaxed);
                        Ok(Lease {
                            pool: self,
                            instance: Some(instance),
                        })
                    }
                    Err(failure) => {
                        self.failed_creates.fetch_add(1, Ordering::Relaxed);
                        self.state.lock().live -= 1;
                        self.returned.notify_one();
                        Err(failure.into_fault())
                    }
                };
            }
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            self.returned.wait(&mut state);
        }
    }

    /// Make the first instance and keep it idle: proves the plugin can be
    /// instantiated and mounted, and returns the features it reported.
    pub(crate) fn seed(&self) -> Result<Features, CreateFailure> {
        let instance = self.factory.create().inspect_err(|_| {
            self.failed_creates.fetch_add(1, Ordering::Relaxed);
        })?;
        self.created.fetch_add(1, Ordering::Relaxed);
        let features = instance.features();
        let mut state = self.state.lock();
        state.live += 1;
        state.idle.push(instance);
        Ok(features)
    }

    /// Put a healthy instance back.
    fn put_back(&self, instance: Instance) {
        self.state.lock().idle.push(instance);
        self.returned.notify_one();
    }

    /// Drop a faulted instance (outside the pool lock: dropping releases
    /// its cluster locks) and make room for a new one.
    fn discard(&self, instance: Instance) {
        drop(instance);
        self.discarded.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock();
        assert!(
            state.live > 0,
            "discarding an instance the pool does not count"
        );
        state.live -= 1;
        drop(state);
        self.returned.notify_one();
    }

    /// The churn counters.
    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            created: self.created.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            failed_creates: self.failed_creates.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            live: self.state.lock().live as u64,
        }
    }
}

/// One caller's use of one instance. Return it with [`Lease::finish`]; a
/// lease dropped without that (a panic unwinding) discards the instance.
pub(crate) struct Lease<'p> {
    pool: &'p InstancePool,
    instance: Option<Instance>,
}

impl Lease<'_> {
    /// The leased instance.
    pub(crate) fn instance(&mut self) -> &mut Instance {
        self.instance
            .as_mut()
            .expect("a lease holds its instance until finished")
    }

    /// Return the instance: to the idle list if `healthy`, else discard it.
    pub(crate) fn finish(mut self, healthy: bool) {
        if let Some(instance) = self.instance.take() {
            if healthy {
                self.pool.put_back(instance);
            } else {
                self.pool.discard(instance);
            }
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            self.pool.discard(instance);
        }
    }
}
