//! bad-writepage-truncated: writepage re-dirties and unlocks the page (so
//! no data is lost and the lock is not leaked) but returns
//! `truncated-page`. Everything else is ramfs. Breaks the contract: that
//! result is not allowed from writepage.

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadWritepageTruncated;

impl Aops for BadWritepageTruncated {
    fn writepage(
        &mut self,
        _inode: Inode,
        page: &Page,
        _index: u64,
        _wbc: WritebackControl,
    ) -> AopResult {
        page.set_dirty();
        page.unlock();
        AopResult::TruncatedPage
    }
}

aopsfs_plugin_sdk::export_plugin!(BadWritepageTruncated);
