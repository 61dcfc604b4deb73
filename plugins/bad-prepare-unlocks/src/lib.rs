//! bad-prepare-unlocks: prepare_write does the ramfs work, then unlocks the
//! page and returns `ok`. Everything else is ramfs. Breaks the lock table:
//! after prepare_write's `ok` the page must still be locked.

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadPrepareUnlocks;

impl Aops for BadPrepareUnlocks {
    fn prepare_write(
        &mut self,
        _inode: Inode,
        page: &Page,
        _index: u64,
        from: u32,
        to: u32,
    ) -> AopResult {
        let result = simple_prepare_write(page, from, to);
        page.unlock();
        result
    }
}

aopsfs_plugin_sdk::export_plugin!(BadPrepareUnlocks);
