//! bad-oom: readpage allocates 1 MiB chunks and keeps them until memory
//! runs out (`memory.grow` fails, the allocator aborts: a trap, or the
//! host's grow-failure trap). Everything else is ramfs. The host should
//! report out-of-memory and recycle the instance.

use std::hint::black_box;

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadOom;

impl Aops for BadOom {
    fn readpage(&mut self, _inode: Inode, _page: &Page, _index: u64) -> AopResult {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            // Touch every page of the chunk so nothing can be elided.
            for byte in chunk.iter_mut().step_by(4096) {
                *byte = 1;
            }
            hoard.push(black_box(chunk));
        }
    }
}

aopsfs_plugin_sdk::export_plugin!(BadOom);
