//! The VFS layer the host owns for a mount: the namespace (fs/namei.c's
//! directories, names and links), inode attributes, and the checkpoint that
//! keeps them on a persistent plugin's image. File data never lives here:
//! it is the engine's page cache and the plugin's aops.

pub mod checkpoint;
pub mod inode;
pub mod namei;

pub use checkpoint::{CKPT_INOS, CheckpointError, Checkpointer, NS_INO_LIMIT};
pub use inode::{FileKind, Inode, ROOT_INO, Timespec};
pub use namei::{Cred, Namespace, NsError};
