//! clusterfs: the OCFS2 locking pattern over blockfs data.
//!
//! Every inode has a cluster lock, `inode.<ino>` (the prefix is the
//! `lock-prefix` option), shared with the other instances and with the
//! "nodes" the host simulates. The data handling is blockfs's (through the
//! SDK's `blockfs` helpers), so a page read under contention has real bytes
//! to get right and a declined writeback has real data to lose; without a
//! block device (or with `backend=memory`) the data stays in the page cache
//! as in ramfs.
//!
//! | aop | cluster lock | on contention |
//! |---|---|---|
//! | readpage | `trylock` shared while the page is locked | unlock the page, `lock` + `unlock` (wait it out, cache it), return `truncated-page` |
//! | prepare_write | `trylock` exclusive while the page is locked | the same |
//! | commit_write | none (prepare_write's lock covered the copy) | - |
//! | writepage | `trylock` exclusive | decline: set-dirty, unlock, `ok` (never block holding a page) |
//! | truncate | `lock` exclusive, blocking (no page is locked) | wait |
//!
//! Each operation drops the cluster lock before it returns.

use aopsfs_plugin_sdk::blockfs::{self, HostBlockMap};
use aopsfs_plugin_sdk::device::HostBlockDevice;
use aopsfs_plugin_sdk::lock::{self, ClusterGuard};
use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
enum Store {
    /// No backing store: pages live in the cache (ramfs).
    #[default]
    Memory,
    /// blockfs on the host's block device.
    Block(HostBlockMap),
}

#[derive(Default)]
struct Clusterfs {
    store: Store,
    lock_prefix: String,
}

impl Clusterfs {
    fn lock_name(&self, ino: u64) -> String {
        format!("{}{ino}", self.lock_prefix)
    }

    /// Take the inode's lock the OCFS2 way; `Err` is the result to return
    /// (the page is already unlocked).
    fn lock_with_page(
        &self,
        inode: Inode,
        page: &Page,
        mode: LockMode,
    ) -> Result<ClusterGuard, AopResult> {
        lock::lock_with_page(page, self.lock_name(inode.ino), mode)
    }
}

impl Aops for Clusterfs {
    fn mount(&mut self, config: &Config) -> Result<(), String> {
        config.reject_unknown(&["backend", "lock-prefix"])?;
        self.lock_prefix = config.get("lock-prefix").unwrap_or("inode.").to_string();
        let use_device = match config.get("backend").unwrap_or("auto") {
            "auto" => HostBlockDevice::new().is_present(),
            "block" => true,
            "memory" => false,
            other => {
                return Err(format!(
                    "option backend={other}: expected auto, block or memory"
                ));
            }
        };
        if use_device {
            let map = blockfs::open()
                .map_err(|e| format!("clusterfs: cannot mount the block device: {e}"))?;
            self.store = Store::Block(map);
        }
        Ok(())
    }

    fn features(&self) -> Features {
        match self.store {
            Store::Memory => Features::empty(),
            Store::Block(_) => Features::TRUNCATE,
        }
    }

    fn readpage(&mut self, inode: Inode, page: &Page, index: u64) -> AopResult {
        let _guard = match self.lock_with_page(inode, page, LockMode::Shared) {
            Ok(guard) => guard,
            Err(retry) => return retry,
        };
        match &self.store {
            Store::Memory => zero_fill_readpage(page),
            Store::Block(map) => blockfs::block_readpage(map, inode, page, index),
        }
    }

    fn prepare_write(
        &mut self,
        inode: Inode,
        page: &Page,
        index: u64,
        from: u32,
        to: u32,
    ) -> AopResult {
        let _guard = match self.lock_with_page(inode, page, LockMode::Exclusive) {
            Ok(guard) => guard,
            Err(retry) => return retry,
        };
        match &self.store {
            Store::Memory => simple_prepare_write(page, from, to),
            Store::Block(map) => blockfs::block_prepare_write(map, inode, page, index, from, to),
        }
    }

    fn writepage(
        &mut self,
        inode: Inode,
        page: &Page,
        index: u64,
        _wbc: WritebackControl,
    ) -> AopResult {
        let Some(_guard) = lock::try_lock(self.lock_name(inode.ino), LockMode::Exclusive) else {
            return decline_writepage(page);
        };
        match &self.store {
            Store::Memory => activate_writepage(page),
            Store::Block(map) => blockfs::block_writepage(map, inode, page, index),
        }
    }

    fn truncate(&mut self, inode: Inode) -> Result<(), Errno> {
        let Store::Block(map) = &self.store else {
            return Ok(());
        };
        let _guard = lock::lock(self.lock_name(inode.ino), LockMode::Exclusive)?;
        blockfs::block_truncate(map, inode)
    }
}

aopsfs_plugin_sdk::export_plugin!(Clusterfs);
