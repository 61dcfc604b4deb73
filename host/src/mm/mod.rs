//! The page cache: models of the kernel's mm/ files.

pub mod address_space;
pub mod filemap;
pub mod lru;
pub mod page;
pub mod page_writeback;
pub mod readahead;
pub mod truncate;
pub mod vmscan;
