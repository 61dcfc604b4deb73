//! The filesystem side: the aops boundary, its contract checker, and native
//! implementations.

pub mod aops;
pub mod blockfs;
pub mod contract;
pub mod memstore;
pub mod ramfs;
pub mod scripted;
