//! The FUSE front end: `aopsfs mount` serves a real mount point whose
//! namespace is [`crate::vfs`] and whose file data goes through the engine
//! and the plugin. [`filesystem`] answers requests; [`session`] mounts,
//! waits for Ctrl-C, SIGTERM or an outside `umount`, and writes everything
//! back before it returns.

pub mod filesystem;
pub mod session;

pub use filesystem::{AopsFs, CacheMode, Capacity};
pub use session::{MountError, MountOptions, MountSummary, serve};
