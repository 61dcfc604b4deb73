//! The [`Aops`] trait a plugin implements, and its mount [`Config`].

use std::str::FromStr;

use crate::page::{
    activate_writepage, simple_commit_write, simple_prepare_write, zero_fill_readpage,
};
use crate::{AopResult, Errno, Features, Inode, Page, WritebackControl};

/// The address-space operations of a plugin, one method per export of the
/// WIT `aops` interface.
///
/// On entry to every method that takes a page, the page is locked; who
/// unlocks it depends on the result (see the table in `wit/aops.wit`, which
/// the host checks after every call). Every method has a default:
///
/// | method | default | kernel counterpart |
/// |---|---|---|
/// | [`readpage`](Aops::readpage) | [`zero_fill_readpage`]: all zeros, uptodate, unlocked in one `end-read` crossing | `simple_readpage` (ramfs) |
/// | [`writepage`](Aops::writepage) | [`activate_writepage`]: keep the page dirty and locked, return `writepage-activate` | a mapping with no backing store (ramfs, shmem without swap) |
/// | [`prepare_write`](Aops::prepare_write) | [`simple_prepare_write`] | `simple_prepare_write` (fs/libfs.c) |
/// | [`commit_write`](Aops::commit_write) | [`simple_commit_write`] | `simple_commit_write` (fs/libfs.c) |
/// | [`readpages`](Aops::readpages) | `readpage` for each page | `read_pages` without `->readpages` |
/// | [`invalidatepage`](Aops::invalidatepage) | nothing | `block_invalidatepage` with no buffers |
/// | [`releasepage`](Aops::releasepage) | `true` | `try_to_free_buffers` with no buffers |
/// | [`truncate`](Aops::truncate) | `Ok(())` | no `i_op->truncate` |
///
/// So the empty implementation is the kernel's ramfs: data lives only in the
/// page cache. That is deliberate: the four required operations of the
/// contract had generic kernel versions, a minimal plugin is a few lines,
/// and a plugin that changes one behaviour (a test plugin, say) overrides
/// one method. A filesystem with a backing store overrides at least
/// `readpage`, `writepage` and `prepare_write`.
///
/// The optional operations (readpages, invalidatepage, releasepage,
/// truncate) are called only if [`features`](Aops::features) reports them:
/// override `features` whenever you override one of them.
///
/// # State
///
/// The host builds one value per instance with `Default`, then calls
/// [`mount`](Aops::mount) once, before anything else. Methods take `&mut
/// self` because calls into one instance never overlap, but instances are
/// interchangeable and short-lived: keep in `self` only what no other
/// instance can change (configuration, an immutable superblock); shared
/// state belongs in the host's block device or behind its cluster locks.
pub trait Aops: Default + 'static {
    /// Configure a new instance from the `--plugin-opt key=value` pairs. An
    /// `Err` message makes the mount fail. Default: accept anything.
    fn mount(&mut self, config: &Config) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// The optional operations this plugin implements (asked right after
    /// `mount`). Default: none, so the host uses the kernel defaults.
    fn features(&self) -> Features {
        Features::empty()
    }

    /// readpage: fill a locked, not-uptodate page. On `Ok` the page must be
    /// uptodate and unlocked; on `Error` unlocked and not uptodate; on
    /// `TruncatedPage` unlocked. Bytes at or past `inode.size` must read as
    /// zero. `index` is the page's index in the file (`page.index()`,
    /// without the host crossing); every page operation gets it.
    fn readpage(&mut self, inode: Inode, page: &Page, index: u64) -> AopResult {
        let _ = (inode, index);
        zero_fill_readpage(page)
    }

    /// readpages: a batch of readahead pages, one result per page in order,
    /// each following the readpage rules. Each page comes with its index.
    /// Needs [`Features::READPAGES`].
    fn readpages(&mut self, inode: Inode, pages: &[(&Page, u64)]) -> Vec<AopResult> {
        pages
            .iter()
            .map(|&(page, index)| self.readpage(inode, page, index))
            .collect()
    }

    /// writepage: store a locked page whose dirty bit the host cleared.
    /// Unlock it on `Ok` and `Error`; return `WritepageActivate` with the
    /// page still locked and re-dirtied to keep it. `TruncatedPage` is not
    /// allowed.
    fn writepage(
        &mut self,
        inode: Inode,
        page: &Page,
        index: u64,
        wbc: WritebackControl,
    ) -> AopResult {
        let _ = (inode, index, wbc);
        activate_writepage(page)
    }

    /// prepare_write: make bytes `[from, to)` of the locked page ready to be
    /// overwritten. Leave it locked, except to return `TruncatedPage`.
    fn prepare_write(
        &mut self,
        inode: Inode,
        page: &Page,
        index: u64,
        from: u32,
        to: u32,
    ) -> AopResult {
        let _ = (inode, index);
        simple_prepare_write(page, from, to)
    }

    /// commit_write: the host copied bytes `[from, to)` into the page. Mark
    /// it uptodate and dirty. Leave it locked, except to return
    /// `TruncatedPage`.
    fn commit_write(
        &mut self,
        inode: Inode,
        page: &Page,
        index: u64,
        from: u32,
        to: u32,
    ) -> AopResult {
        let _ = (inode, index, from, to);
        simple_commit_write(page)
    }

    /// invalidatepage: the page is truncated from `offset` on; drop private
    /// state for that range. The page stays locked. Needs
    /// [`Features::INVALIDATEPAGE`].
    fn invalidatepage(&mut self, inode: Inode, page: &Page, index: u64, offset: u32) {
        let _ = (inode, page, index, offset);
    }

    /// releasepage: may the page's private state go so reclaim can free it?
    /// The page stays locked. Needs [`Features::RELEASEPAGE`].
    fn releasepage(&mut self, inode: Inode, page: &Page, index: u64) -> bool {
        let _ = (inode, page, index);
        true
    }

    /// truncate (i_op->truncate): i_size became `inode.size`; free storage
    /// past it and make the rest of the last page read as zeros. No page is
    /// locked. Needs [`Features::TRUNCATE`].
    fn truncate(&mut self, inode: Inode) -> Result<(), Errno> {
        let _ = inode;
        Ok(())
    }
}

/// Keys the SDK itself understands in every plugin's configuration.
pub const SDK_KEYS: &[&str] = &["log-level"];

/// The mount configuration: `--plugin-opt key=value` pairs, in order.
///
/// The SDK reads `log-level` (`off`, `error`, `warn`, `info` (default),
/// `debug`, `trace`) before [`Aops::mount`] runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// A configuration of these pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config { pairs }
    }

    /// Every pair, in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of `key` (the last one if given twice).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as a `T`; `Ok(None)` when absent.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| v.parse().map_err(|e| format!("option {key}={v}: {e}")))
            .transpose()
    }

    /// The value of `key` parsed as a `T`, or `default` when absent.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// A boolean option: absent is `false`; present with an empty value,
    /// `1`, `true`, `yes` or `on` is `true`; `0`, `false`, `no`, `off` is
    /// `false`.
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(format!("option {key}={v}: expected a boolean")),
        }
    }

    /// Fail on any key other than `known` and the SDK's own keys, naming it
    /// (typos in options should not pass silently).
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()) && !SDK_KEYS.contains(&k.as_str()))
        {
            Some((k, _)) => {
                let mut all: Vec<&str> = known.iter().chain(SDK_KEYS).copied().collect();
                all.sort_unstable();
                Err(format!("unknown option {k:?} (known: {})", all.join(", ")))
            }
            None => Ok(()),
        }
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Config::new(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn config_values_parse_and_the_last_one_wins() {
        let c = config(&[
            ("n", "3"),
            ("flag", ""),
            ("n", "4"),
            ("off", "no"),
            ("bad", "x"),
        ]);
        assert_eq!(c.get("n"), Some("4"));
        assert_eq!(c.parse::<u32>("n"), Ok(Some(4)));
        assert_eq!(c.parse::<u32>("missing"), Ok(None));
        assert_eq!(c.parse_or::<u32>("missing", 9), Ok(9));
        assert!(c.parse::<u32>("bad").unwrap_err().contains("bad=x"));
        assert_eq!(c.flag("flag"), Ok(true));
        assert_eq!(c.flag("off"), Ok(false));
        assert_eq!(c.flag("missing"), Ok(false));
        assert!(c.flag("bad").is_err());
    }

    #[test]
    fn unknown_keys_are_named() {
        let c = config(&[("log-level", "debug"), ("size", "1")]);
        assert_eq!(c.reject_unknown(&["size"]), Ok(()));
        let err = c.reject_unknown(&["other"]).unwrap_err();
        assert!(err.contains("\"size\""), "{err}");
    }
}
