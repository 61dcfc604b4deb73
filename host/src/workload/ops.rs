//! The operations a workload performs, as the runner executes them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mm::page::PAGE_SIZE;
use crate::services::LockMode;

/// The kinds of operation, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// `read(2)` through the read loop.
    Read,
    /// `write(2)` through the buffered write loop.
    Write,
    /// `truncate(2)` (shrink or extend).
    Truncate,
    /// A page fault on a mapping of the file (filemap_nopage).
    Fault,
    /// `fsync(2)`: data-integrity writeback of one file.
    Fsync,
    /// Background (WB_SYNC_NONE) writeback of one file.
    Writeback,
    /// `echo 1 > /proc/sys/vm/drop_caches`.
    DropCaches,
    /// Direct reclaim of some pages (try_to_free_pages).
    Reclaim,
    /// The thread sleeps.
    Sleep,
    /// Another cluster node takes the file's DLM lock for a while.
    ClusterLock,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 10] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::Truncate,
        OpKind::Fault,
        OpKind::Fsync,
        OpKind::Writeback,
        OpKind::DropCaches,
        OpKind::Reclaim,
        OpKind::Sleep,
        OpKind::ClusterLock,
    ];

    /// The name used in workload files, reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Truncate => "truncate",
            OpKind::Fault => "fault",
            OpKind::Fsync => "fsync",
            OpKind::Writeback => "writeback",
            OpKind::DropCaches => "drop_caches",
            OpKind::Reclaim => "reclaim",
            OpKind::Sleep => "sleep",
            OpKind::ClusterLock => "cluster_lock",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The DLM mode another node takes a lock in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldMode {
    /// A protected read: blocks exclusive takers (writers).
    Shared,
    /// A protected write: blocks everyone.
    #[default]
    Exclusive,
}

impl HoldMode {
    /// The cluster lock service's mode.
    pub fn lock_mode(self) -> LockMode {
        match self {
            HoldMode::Shared => LockMode::Shared,
            HoldMode::Exclusive => LockMode::Exclusive,
        }
    }
}

/// One operation with its arguments. `file` is the workload's file index
/// (inode `file + 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Read {
        file: usize,
        offset: u64,
        len: u64,
    },
    /// The bytes written are derived from `data_seed`.
    Write {
        file: usize,
        offset: u64,
        len: u64,
        data_seed: u64,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    Fault {
        file: usize,
        page: u64,
    },
    Fsync {
        file: usize,
    },
    Writeback {
        file: usize,
    },
    DropCaches,
    Reclaim {
        pages: u64,
    },
    Sleep {
        duration: Duration,
    },
    ClusterLock {
        file: usize,
        hold: Duration,
        mode: HoldMode,
    },
}

impl Op {
    /// The operation's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Read { .. } => OpKind::Read,
            Op::Write { .. } => OpKind::Write,
            Op::Truncate { .. } => OpKind::Truncate,
            Op::Fault { .. } => OpKind::Fault,
            Op::Fsync { .. } => OpKind::Fsync,
            Op::Writeback { .. } => OpKind::Writeback,
            Op::DropCaches => OpKind::DropCaches,
            Op::Reclaim { .. } => OpKind::Reclaim,
            Op::Sleep { .. } => OpKind::Sleep,
            Op::ClusterLock { .. } => OpKind::ClusterLock,
        }
    }

    /// The file it works on, if any.
    pub fn file(&self) -> Option<usize> {
        match *self {
            Op::Read { file, .. }
            | Op::Write { file, .. }
            | Op::Truncate { file, .. }
            | Op::Fault { file, .. }
            | Op::Fsync { file }
            | Op::Writeback { file }
            | Op::ClusterLock { file, .. } => Some(file),
            Op::DropCaches | Op::Reclaim { .. } | Op::Sleep { .. } => None,
        }
    }

    /// The largest file offset it touches (exclusive), for the
    /// `max_file_size` check.
    pub fn end_offset(&self) -> u64 {
        match *self {
            Op::Read { offset, len, .. } | Op::Write { offset, len, .. } => {
                offset.saturating_add(len)
            }
            Op::Truncate { size, .. } => size,
            Op::Fault { page, .. } => page.saturating_mul(PAGE_SIZE as u64).saturating_add(1),
            _ => 0,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Read { file, offset, len } => {
                write!(f, "read file={file} offset={offset} len={len}")
            }
            Op::Write {
                file, offset, len, ..
            } => write!(f, "write file={file} offset={offset} len={len}"),
            Op::Truncate { file, size } => write!(f, "truncate file={file} size={size}"),
            Op::Fault { file, page } => write!(f, "fault file={file} page={page}"),
            Op::Fsync { file } => write!(f, "fsync file={file}"),
            Op::Writeback { file } => write!(f, "writeback file={file}"),
            Op::DropCaches => f.write_str("drop_caches"),
            Op::Reclaim { pages } => write!(f, "reclaim pages={pages}"),
            Op::Sleep { duration } => write!(f, "sleep {}ms", duration.as_millis()),
            Op::ClusterLock { file, hold, mode } => {
                write!(
                    f,
                    "cluster_lock file={file} hold={}ms mode={mode:?}",
                    hold.as_millis()
                )
            }
        }
    }
}
