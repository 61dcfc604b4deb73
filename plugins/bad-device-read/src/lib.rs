//! bad-device-read: readpage breaks one rule of the block device's fast
//! path (`end-read-from-block`, `read-block-range`), chosen by the option
//! `misuse`. Everything else is ramfs. The host should trap the call as
//! handle misuse naming the rule, fail the read with EIO and never touch
//! the page for the refused request.
//!
//! `misuse=`:
//!
//! * `after-unlock` (default): unlock the page, then `end-read-from-block`
//!   into it (a data race: the page is no longer ours);
//! * `twice`: `end-read-from-block` (which unlocks), then again;
//! * `block-past-device`: `end-read-from-block` from block `block-count`;
//! * `len-past-page`: `end-read-from-block` of page-size + 1 bytes;
//! * `range-past-block`: `read-block-range` of 200 bytes from byte 4000;
//! * `range-past-device`: `read-block-range` of block `block-count`.

use aopsfs_plugin_sdk::bindings::aopsfs::vfs::block_device;
use aopsfs_plugin_sdk::prelude::*;

/// The rules this plugin can break.
const MISUSES: [&str; 6] = [
    "after-unlock",
    "twice",
    "block-past-device",
    "len-past-page",
    "range-past-block",
    "range-past-device",
];

#[derive(Default)]
struct BadDeviceRead {
    misuse: String,
}

impl Aops for BadDeviceRead {
    fn mount(&mut self, config: &Config) -> Result<(), String> {
        config.reject_unknown(&["misuse"])?;
        let misuse = config.get("misuse").unwrap_or("after-unlock");
        if !MISUSES.contains(&misuse) {
            return Err(format!("misuse={misuse}: expected one of {MISUSES:?}"));
        }
        self.misuse = misuse.to_owned();
        Ok(())
    }

    fn readpage(&mut self, _inode: Inode, page: &Page, _index: u64) -> AopResult {
        let blocks = block_device::block_count();
        // Each call below either traps or, if the host let it through,
        // returns an error the plugin then reports.
        let result = match self.misuse.as_str() {
            "after-unlock" => {
                page.unlock();
                block_device::end_read_from_block(page, 0, PAGE_SIZE)
            }
            "twice" => block_device::end_read_from_block(page, 0, PAGE_SIZE)
                .and_then(|()| block_device::end_read_from_block(page, 0, PAGE_SIZE)),
            "block-past-device" => block_device::end_read_from_block(page, blocks, PAGE_SIZE),
            "len-past-page" => block_device::end_read_from_block(page, 0, PAGE_SIZE + 1),
            "range-past-block" => block_device::read_block_range(0, 4000, 200).map(drop),
            "range-past-device" => block_device::read_block_range(blocks, 0, 64).map(drop),
            other => unreachable!("misuse {other} was checked at mount"),
        };
        match result {
            Ok(()) => AopResult::Ok,
            Err(errno) => AopResult::Error(errno),
        }
    }
}

aopsfs_plugin_sdk::export_plugin!(BadDeviceRead);
