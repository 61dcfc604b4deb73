//! bad-loop: readpage never returns (a busy loop the optimiser cannot
//! remove). Everything else is ramfs. The host should stop it with fuel or
//! epoch interruption and report a timeout.

use std::hint::black_box;

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadLoop;

impl Aops for BadLoop {
    fn readpage(&mut self, _inode: Inode, _page: &Page, _index: u64) -> AopResult {
        let mut spins: u64 = 0;
        loop {
            spins = black_box(spins.wrapping_add(1));
        }
    }
}

aopsfs_plugin_sdk::export_plugin!(BadLoop);
