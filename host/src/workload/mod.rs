//! Workloads: what `aopsfs run` drives through a plugin, verified and
//! traced.
//!
//! - [`spec`]: the TOML workload file and its validation into a
//!   [`Workload`] (errors name the file, line, field and reason).
//! - [`ops`]: the operations (read, write, truncate, fault, fsync,
//!   writeback, drop_caches, reclaim, sleep, cluster_lock).
//! - [`plan`]: each thread's operations, derived from (seed, thread index).
//! - [`oracle`]: the versioned model every byte read is checked against.
//! - [`contention`]: another cluster node holding DLM locks.
//! - [`runner`]: runs the threads on an engine.
//! - [`oplog`], [`hexdump`], [`report`]: what a run tells afterwards.
//! - [`size`]: `"16K"`-style sizes and `"500ms"`-style durations.

pub mod contention;
pub mod error;
pub mod hexdump;
pub mod oplog;
pub mod ops;
pub mod oracle;
pub mod plan;
pub mod report;
pub mod runner;
pub mod size;
pub mod spec;

pub use error::WorkloadError;
pub use ops::{Op, OpKind};
pub use oracle::{Contents, Mismatch, Oracle};
pub use report::Report;
pub use runner::{Progress, RunOptions, Target, run};
pub use spec::Workload;
