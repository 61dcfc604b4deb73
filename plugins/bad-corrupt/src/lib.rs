//! bad-corrupt: ramfs that silently corrupts one byte of file data, for the
//! host's data oracle (model checker) to catch.
//!
//! commit_write inverts (XOR 0xff) the byte at file offset `corrupt-offset`
//! (default 0) whenever the write just copied covers it, then marks the
//! page uptodate and dirty as usual. The rule depends only on the data's
//! position, not on call counts, so it is deterministic however the host
//! spreads calls over its pool of instances and however often it retries:
//! any workload that writes that byte and reads it back sees the complement
//! of what it wrote (and a byte can never equal its own complement). Every
//! lock rule is kept, so only a data check can tell.
//!
//! Options: `corrupt-offset=N` (byte offset in the file), `corrupt-ino=N`
//! (only this inode; default every inode).

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct BadCorrupt {
    offset: u64,
    ino: Option<u64>,
}

impl Aops for BadCorrupt {
    fn mount(&mut self, config: &Config) -> Result<(), String> {
        config.reject_unknown(&["corrupt-offset", "corrupt-ino"])?;
        self.offset = config.parse_or("corrupt-offset", 0)?;
        self.ino = config.parse("corrupt-ino")?;
        Ok(())
    }

    fn commit_write(
        &mut self,
        inode: Inode,
        page: &Page,
        index: u64,
        from: u32,
        to: u32,
    ) -> AopResult {
        let page_size = u64::from(PAGE_SIZE);
        if self.ino.is_none_or(|ino| ino == inode.ino) && self.offset / page_size == index {
            let at = (self.offset % page_size) as u32;
            if (from..to).contains(&at) {
                let byte = page.read(at, 1)[0];
                page.write(at, &[!byte]);
            }
        }
        simple_commit_write(page)
    }
}

aopsfs_plugin_sdk::export_plugin!(BadCorrupt);
