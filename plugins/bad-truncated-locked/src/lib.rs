//! bad-truncated-locked: readpage returns `truncated-page` without
//! unlocking the page. Everything else is ramfs. Breaks the lock table:
//! `truncated-page` means the callee already unlocked.

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadTruncatedLocked;

impl Aops for BadTruncatedLocked {
    fn readpage(&mut self, _inode: Inode, _page: &Page, _index: u64) -> AopResult {
        AopResult::TruncatedPage
    }
}

aopsfs_plugin_sdk::export_plugin!(BadTruncatedLocked);
