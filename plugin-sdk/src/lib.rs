//! Write aopsfs address-space operations plugins in Rust.
//!
//! aopsfs runs a Linux-style page cache on the host; a plugin supplies the
//! address-space operations (aops) that move pages between the cache and a
//! backing store, as a WebAssembly component of the `aops-plugin` world in
//! `wit/aops.wit`. This crate turns that world into a Rust trait:
//!
//! * [`Aops`]: one method per operation, every one with a default, so a
//!   plugin overrides only what differs from the kernel's generic behaviour;
//! * [`export_plugin!`]: exports a type implementing [`Aops`] as the
//!   component's `aopsfs:vfs/aops` interface;
//! * helpers for the common bodies of operations ([`zero_fill_readpage`],
//!   [`simple_prepare_write`], [`simple_commit_write`], [`activate_writepage`],
//!   [`PageExt`]), for the cluster lock ([`lock`]), the log ([`log`],
//!   [`info!`] and friends), and for block-mapped filesystems ([`blockfs`],
//!   [`device`]);
//! * [`blockmap`]: the on-disk format and logic of blockfs. It has no WASM
//!   dependency and builds natively with `default-features = false`, so the
//!   host can run the same code as a native baseline.
//!
//! # A complete plugin
//!
//! `Cargo.toml` (the crate is a `cdylib` built for `wasm32-wasip2`):
//!
//! ```toml
//! [package]
//! name = "tmpfs"
//! description = "In-memory files (the SDK defaults)"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! aopsfs-plugin-sdk = { path = "../../plugin-sdk" }
//! ```
//!
//! `src/lib.rs`: the defaults are the kernel's ramfs (zero-filled reads, no
//! writeback), so this is a working filesystem:
//!
//! ```ignore
//! use aopsfs_plugin_sdk::prelude::*;
//!
//! #[derive(Default)]
//! struct Tmpfs;
//!
//! impl Aops for Tmpfs {}
//!
//! aopsfs_plugin_sdk::export_plugin!(Tmpfs);
//! ```
//!
//! A persistent one stores pages on the host's block device through
//! [`blockmap`]:
//!
//! ```ignore
//! use aopsfs_plugin_sdk::blockfs::{self, HostBlockMap};
//! use aopsfs_plugin_sdk::prelude::*;
//!
//! #[derive(Default)]
//! struct Blockfs {
//!     map: Option<HostBlockMap>,
//! }
//!
//! impl Blockfs {
//!     fn map(&self) -> &HostBlockMap {
//!         self.map.as_ref().expect("mounted")
//!     }
//! }
//!
//! impl Aops for Blockfs {
//!     fn mount(&mut self, _config: &Config) -> Result<(), String> {
//!         self.map = Some(blockfs::open().map_err(|e| e.to_string())?);
//!         Ok(())
//!     }
//!     fn features(&self) -> Features {
//!         Features::TRUNCATE
//!     }
//!     fn readpage(&mut self, inode: Inode, page: &Page, index: u64) -> AopResult {
//!         blockfs::block_readpage(self.map(), inode, page, index)
//!     }
//!     fn writepage(
//!         &mut self,
//!         inode: Inode,
//!         page: &Page,
//!         index: u64,
//!         _wbc: WritebackControl,
//!     ) -> AopResult {
//!         blockfs::block_writepage(self.map(), inode, page, index)
//!     }
//!     fn prepare_write(
//!         &mut self,
//!         inode: Inode,
//!         page: &Page,
//!         index: u64,
//!         from: u32,
//!         to: u32,
//!     ) -> AopResult {
//!         blockfs::block_prepare_write(self.map(), inode, page, index, from, to)
//!     }
//!     fn truncate(&mut self, inode: Inode) -> Result<(), Errno> {
//!         blockfs::block_truncate(self.map(), inode)
//!     }
//! }
//!
//! aopsfs_plugin_sdk::export_plugin!(Blockfs);
//! ```
//!
//! Build with `scripts/build-plugins` (or `cargo build --release --target
//! wasm32-wasip2`).
//!
//! # Instances and state
//!
//! The host runs a pool of instances of a plugin, each in its own Store, and
//! calls any of them for any page; it may also throw one away and make a new
//! one after a fault. Each instance constructs its own value of the plugin
//! type (with `Default`, then [`Aops::mount`] with the mount configuration).
//! So a plugin's fields must hold only per-instance caches of immutable
//! facts (a parsed configuration, a superblock): anything shared between
//! calls that another instance could change lives in a host service (the
//! block device, cluster locks). Calls into one instance never overlap.
//!
//! # Features
//!
//! The optional operations (readpages, invalidatepage, releasepage,
//! truncate) are only called if [`Aops::features`] reports them; for the
//! others the host uses the kernel's generic default without crossing into
//! the plugin. A plugin that overrides an optional method must also report
//! it in `features()`.

pub mod blockmap;

#[cfg(feature = "guest")]
pub mod bindings {
    //! The bindings `wit_bindgen` generates for the `aops-plugin` world.
    //! Plugins normally use the re-exports at the crate root instead.
    wit_bindgen::generate!({
        path: "../wit",
        world: "aops-plugin",
        pub_export_macro: true,
        default_bindings_module: "aopsfs_plugin_sdk::bindings",
        // wit-bindgen 0.63 generates code that does not compile for an
        // export taking `list<borrow<T>>` of an imported resource (one
        // handle variable reused in a loop), so `readpages` is exported by
        // hand in `export_plugin!` (see `export::__private`). The component
        // type still comes from the full world, so it is exactly the
        // contract's.
        skip: ["readpages"],
    });
}

#[cfg(feature = "guest")]
mod aops;
#[cfg(feature = "guest")]
pub mod blockfs;
#[cfg(feature = "guest")]
pub mod device;
#[cfg(feature = "guest")]
mod export;
#[cfg(feature = "guest")]
pub mod lock;
#[cfg(feature = "guest")]
pub mod log;
#[cfg(feature = "guest")]
mod page;

#[cfg(feature = "guest")]
pub use aops::{Aops, Config};
#[cfg(feature = "guest")]
pub use bindings::aopsfs::vfs::types::{
    AopResult, Errno, Features, Inode, Page, SyncMode, WritebackControl,
};
#[cfg(feature = "guest")]
#[doc(hidden)]
pub use export::__private;
#[cfg(feature = "guest")]
pub use page::{
    PAGE_SIZE, PageExt, activate_writepage, bytes_below, decline_writepage, simple_commit_write,
    simple_prepare_write, zero_fill_readpage,
};

/// What most plugins need, in one `use`.
#[cfg(feature = "guest")]
pub mod prelude {
    pub use crate::lock::LockMode;
    pub use crate::{
        AopResult, Aops, Config, Errno, Features, Inode, PAGE_SIZE, Page, PageExt, SyncMode,
        WritebackControl, activate_writepage, decline_writepage, simple_commit_write,
        simple_prepare_write, zero_fill_readpage,
    };
}

#[cfg(feature = "guest")]
impl PartialEq for AopResult {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AopResult::Error(a), AopResult::Error(b)) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

#[cfg(feature = "guest")]
impl Eq for AopResult {}

#[cfg(feature = "guest")]
impl From<blockmap::Errno> for Errno {
    fn from(e: blockmap::Errno) -> Self {
        match e {
            blockmap::Errno::Io => Errno::Io,
            blockmap::Errno::NoSpc => Errno::Nospc,
            blockmap::Errno::NoMem => Errno::Nomem,
            blockmap::Errno::Again => Errno::Again,
            blockmap::Errno::FBig => Errno::Fbig,
            blockmap::Errno::Inval => Errno::Inval,
            blockmap::Errno::RoFs => Errno::Rofs,
            blockmap::Errno::Intr => Errno::Intr,
        }
    }
}

#[cfg(feature = "guest")]
impl From<Errno> for blockmap::Errno {
    fn from(e: Errno) -> Self {
        match e {
            Errno::Io => blockmap::Errno::Io,
            Errno::Nospc => blockmap::Errno::NoSpc,
            Errno::Nomem => blockmap::Errno::NoMem,
            Errno::Again => blockmap::Errno::Again,
            Errno::Fbig => blockmap::Errno::FBig,
            Errno::Inval => blockmap::Errno::Inval,
            Errno::Rofs => blockmap::Errno::RoFs,
            Errno::Intr => blockmap::Errno::Intr,
        }
    }
}

#[cfg(feature = "guest")]
impl From<&blockmap::Error> for Errno {
    fn from(e: &blockmap::Error) -> Self {
        e.errno().into()
    }
}
