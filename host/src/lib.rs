//! aopsfs: a Linux-style page cache whose address-space operations are
//! pluggable, natively or as sandboxed WASM components.
//!
//! Start at [`engine::Engine`]. The filemap loops live in [`mm`], in files
//! named after the kernel files they model; the aops boundary and its
//! contract checker in [`fs`]. See ARCHITECTURE.md for the map.

pub mod cli;
pub mod engine;
pub mod errno;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod mm;
pub mod plugin;
pub mod services;
pub mod stats;
pub mod trace;
pub mod vfs;
pub mod workload;

pub use engine::{Engine, EngineConfig};
pub use errno::Errno;
pub use error::VfsError;
pub use fs::aops::{
    AddressSpaceOperations, AopFault, AopOp, AopResult, AopReturn, FaultKind, Features, InodeInfo,
    ResultKind, SyncMode, WritebackControl,
};
pub use mm::page::{PAGE_SIZE, Page, PageRef};
