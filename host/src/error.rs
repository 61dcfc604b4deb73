//! The engine's error type.

use crate::errno::Errno;
use crate::fs::contract::ContractViolation;
use crate::mm::filemap::Caller;

/// Why a page cache operation failed. Every variant maps to the errno a
/// system call would return ([`VfsError::errno`]); the variant says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VfsError {
    /// An address-space operation or the host returned this errno.
    #[error("{0}")]
    Errno(Errno),
    /// A plugin broke the lock contract or faulted; the operation fails
    /// with EIO.
    #[error(transparent)]
    Contract(#[from] ContractViolation),
    /// A retry loop gave up: the plugin returned `truncated-page` (or the
    /// page vanished) more times in a row than the configured bound.
    #[error(
        "livelock: {caller} retried inode {ino} page {index} {retries} times without progress (bound {bound})"
    )]
    Livelock {
        caller: Caller,
        ino: u64,
        index: u64,
        retries: u32,
        bound: u32,
    },
    /// A fault could not map the page (past EOF, or readpage failed twice):
    /// the kernel's NOPAGE_SIGBUS.
    #[error("SIGBUS: fault on inode {ino} page {pgoff}: {reason}")]
    Sigbus {
        ino: u64,
        pgoff: u64,
        reason: &'static str,
    },
    /// No inode with this number exists.
    #[error("no inode {0}")]
    NoInode(u64),
}

impl VfsError {
    /// The errno a system call would return for this error.
    pub fn errno(&self) -> Errno {
        match self {
            VfsError::Errno(e) => *e,
            VfsError::Contract(_) | VfsError::Livelock { .. } => Errno::Eio,
            VfsError::Sigbus { .. } => Errno::Eio,
            VfsError::NoInode(_) => Errno::Enoent,
        }
    }
}

impl From<Errno> for VfsError {
    fn from(e: Errno) -> Self {
        VfsError::Errno(e)
    }
}
