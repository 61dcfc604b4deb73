//! bad-trap: readpage panics, so the instance traps (wasm `unreachable`
//! after the panic message goes to stderr). Everything else is ramfs.
//! The host should report a trap fault, fail that read with EIO, and throw
//! the instance away.

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadTrap;

impl Aops for BadTrap {
    fn readpage(&mut self, inode: Inode, _page: &Page, _index: u64) -> AopResult {
        panic!(
            "bad-trap: readpage of inode {} panics on purpose",
            inode.ino
        );
    }
}

aopsfs_plugin_sdk::export_plugin!(BadTrap);
