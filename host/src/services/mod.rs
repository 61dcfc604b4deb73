//! Host services a plugin may import: a block device over an image file and
//! a cluster lock service (a DLM).
//!
//! Plugin state that must be shared lives here, not in instance memory:
//! every instance of a plugin sees the same device and the same locks, so
//! instances are interchangeable and one can be discarded at any time.
//! Native filesystems (`fs::blockfs`) use the same services, which keeps the
//! native baseline and the WASM plugins comparable.

pub mod block_device;
pub mod cluster_lock;
pub mod ratelimit;

pub use block_device::{BLOCK_SIZE, BlockDevice, BlockDeviceError, BlockDeviceStats};
pub use cluster_lock::{ClusterLockService, ClusterNode, HolderId, LockMode};
pub use ratelimit::{RateLimit, Verdict};
