//! bad-double-unlock: readpage completes normally (`end-read`, which
//! unlocks) and then unlocks the page a second time. Everything else is
//! ramfs. The host should report handle misuse.

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadDoubleUnlock;

impl Aops for BadDoubleUnlock {
    fn readpage(&mut self, _inode: Inode, page: &Page, _index: u64) -> AopResult {
        page.end_read(&[]);
        page.unlock();
        AopResult::Ok
    }
}

aopsfs_plugin_sdk::export_plugin!(BadDoubleUnlock);
