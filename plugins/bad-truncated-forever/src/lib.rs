//! bad-truncated-forever: readpage always unlocks the page and returns
//! `truncated-page` without making progress: a livelock. Everything else is
//! ramfs. Each call is legal on its own; the host's retry loops must bound
//! or interrupt the retries and report the livelock.

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadTruncatedForever;

impl Aops for BadTruncatedForever {
    fn readpage(&mut self, _inode: Inode, page: &Page, _index: u64) -> AopResult {
        page.unlock_and_retry()
    }
}

aopsfs_plugin_sdk::export_plugin!(BadTruncatedForever);
