//! bad-write-after-unlock: readpage completes normally (`end-read`, which
//! unlocks) and then writes a byte into the page it no longer holds.
//! Everything else is ramfs. The host should report handle misuse (and the
//! page must keep its zeros).

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadWriteAfterUnlock;

impl Aops for BadWriteAfterUnlock {
    fn readpage(&mut self, _inode: Inode, page: &Page, _index: u64) -> AopResult {
        page.end_read(&[]);
        page.write(0, &[0xaa]);
        AopResult::Ok
    }
}

aopsfs_plugin_sdk::export_plugin!(BadWriteAfterUnlock);
