//! bad-readpage-locked: readpage zero-fills the page and marks it uptodate
//! but returns `ok` without unlocking it. Everything else is ramfs. Breaks
//! the lock table: readpage's `ok` means the callee unlocked.

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadReadpageLocked;

impl Aops for BadReadpageLocked {
    fn readpage(&mut self, _inode: Inode, page: &Page, _index: u64) -> AopResult {
        page.zero_all();
        page.set_uptodate();
        AopResult::Ok
    }
}

aopsfs_plugin_sdk::export_plugin!(BadReadpageLocked);
