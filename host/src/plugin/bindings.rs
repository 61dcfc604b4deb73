//! Host bindings generated from `wit/aops.wit`, world `aops-plugin`.
//!
//! The `page` resource is the host's
//! [`PageHandle`](crate::plugin::page_handle::PageHandle); every import is
//! trappable, so a host method returning `Err` traps the guest (that is how
//! handle misuse stops a plugin).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "aops-plugin",
    with: {
        "aopsfs:vfs/types.page": crate::plugin::page_handle::PageHandle,
    },
    imports: { default: trappable },
});

pub use self::aopsfs::vfs::types::{
    AopResult as WitAopResult, Errno as WitErrno, Features as WitFeatures, Inode as WitInode,
};
pub use self::aopsfs::vfs::types::{
    SyncMode as WitSyncMode, WritebackControl as WitWritebackControl,
};
pub use self::exports::aopsfs::vfs::aops::Guest as AopsGuest;

/// The name of the interface every plugin must export.
pub const AOPS_EXPORT: &str = "aopsfs:vfs/aops@0.1.0";

/// The functions of the `aops` interface, in WIT order.
pub const AOPS_FUNCTIONS: [&str; 9] = [
    "mount",
    "readpage",
    "readpages",
    "writepage",
    "prepare-write",
    "commit-write",
    "invalidatepage",
    "releasepage",
    "truncate",
];

/// The interfaces a plugin may import from the host, besides WASI.
pub const HOST_INTERFACES: [&str; 4] = [
    "aopsfs:vfs/types@0.1.0",
    "aopsfs:vfs/block-device@0.1.0",
    "aopsfs:vfs/cluster-lock@0.1.0",
    "aopsfs:vfs/log@0.1.0",
];
