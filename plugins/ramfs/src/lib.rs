//! ramfs: files live only in the page cache.
//!
//! The same behaviour as the host's native `fs::ramfs` (fs/ramfs with the
//! fs/libfs.c `simple_*` helpers, and tmpfs without swap for writepage),
//! spelled out with the SDK helpers; they are also the [`Aops`] defaults.
//!
//! | aop | what it does | host crossings |
//! |---|---|---|
//! | readpage | `end-read([])`: zeros, uptodate, unlocked | 1 |
//! | writepage | re-dirty, keep locked, `writepage-activate` | 1 |
//! | prepare_write | zero around `[from, to)` of a page that is not uptodate | 0-3 |
//! | commit_write | uptodate + dirty | 2 |

use aopsfs_plugin_sdk::prelude::*;

#[derive(Default)]
struct Ramfs;

impl Aops for Ramfs {
    fn mount(&mut self, config: &Config) -> Result<(), String> {
        config.reject_unknown(&[])
    }

    /// simple_readpage: a page that is not in the cache was never written
    /// (or was clean, hence zeros).
    fn readpage(&mut self, _inode: Inode, page: &Page, _index: u64) -> AopResult {
        zero_fill_readpage(page)
    }

    /// shmem_writepage without swap: nowhere to write, keep the page.
    fn writepage(
        &mut self,
        _inode: Inode,
        page: &Page,
        _index: u64,
        _wbc: WritebackControl,
    ) -> AopResult {
        activate_writepage(page)
    }

    fn prepare_write(
        &mut self,
        _inode: Inode,
        page: &Page,
        _index: u64,
        from: u32,
        to: u32,
    ) -> AopResult {
        simple_prepare_write(page, from, to)
    }

    fn commit_write(
        &mut self,
        _inode: Inode,
        page: &Page,
        _index: u64,
        _from: u32,
        _to: u32,
    ) -> AopResult {
        simple_commit_write(page)
    }
}

aopsfs_plugin_sdk::export_plugin!(Ramfs);
