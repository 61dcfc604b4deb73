//! bad-activate-readpage: readpage returns `writepage-activate` (the page
//! untouched and still locked). Everything else is ramfs. Breaks the
//! contract: that result is allowed from writepage only.

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadActivateReadpage;

impl Aops for BadActivateReadpage {
    fn readpage(&mut self, _inode: Inode, _page: &Page, _index: u64) -> AopResult {
        AopResult::WritepageActivate
    }
}

aopsfs_plugin_sdk::export_plugin!(BadActivateReadpage);
