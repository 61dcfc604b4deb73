//! The host services as WIT imports: `block-device`, `cluster-lock` and
//! `log`, each a thin layer over `crate::services` (and `tracing`).

use crate::errno::Errno;
use crate::plugin::bindings::aopsfs::vfs::{block_device, cluster_lock, log, types};
use crate::plugin::instance::{CallState, InstanceState, PluginServices};
use crate::plugin::page_handle::{self, PageHandle, misuse};
use crate::services::Verdict;
use crate::services::{BLOCK_SIZE, BlockDevice, LockMode};
use wasmtime::component::Resource;

/// The longest log message kept; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// A host errno as the WIT enum. Errnos the WIT lacks become `io`.
pub(crate) fn errno_to_wit(errno: Errno) -> types::Errno {
    match errno {
        Errno::Eio => types::Errno::Io,
        Errno::Enospc => types::Errno::Nospc,
        Errno::Enomem => types::Errno::Nomem,
        Errno::Eagain => types::Errno::Again,
        Errno::Efbig => types::Errno::Fbig,
        Errno::Einval => types::Errno::Inval,
        Errno::Erofs => types::Errno::Rofs,
        Errno::Eintr => types::Errno::Intr,
        Errno::Enoent | Errno::Efault => types::Errno::Io,
    }
}

/// A WIT errno as the host's.
pub(crate) fn errno_from_wit(errno: types::Errno) -> Errno {
    match errno {
        types::Errno::Io => Errno::Eio,
        types::Errno::Nospc => Errno::Enospc,
        types::Errno::Nomem => Errno::Enomem,
        types::Errno::Again => Errno::Eagain,
        types::Errno::Fbig => Errno::Efbig,
        types::Errno::Inval => Errno::Einval,
        types::Errno::Rofs => Errno::Erofs,
        types::Errno::Intr => Errno::Eintr,
    }
}

impl types::Host for InstanceState {}

/// The device for a fast-path `block-device` import (`method`) that reads
/// bytes `[offset, offset + len)` counted from the start of `block`: a
/// range not on the device (or no device at all) is misuse, since a correct
/// plugin knows the geometry (see the WIT).
fn device_range<'a>(
    call: &mut CallState,
    services: &'a PluginServices,
    method: &str,
    block: u64,
    offset: u32,
    len: u64,
) -> wasmtime::Result<&'a BlockDevice> {
    match &services.block_device {
        Some(dev) if dev.contains(block, u64::from(offset), len) => Ok(dev),
        Some(dev) => Err(misuse(
            call,
            format!(
                "{method}: {len} bytes from byte {offset} of block {block} are past the device, which has {} blocks of {BLOCK_SIZE} bytes",
                dev.block_count()
            ),
        )),
        None => Err(misuse(
            call,
            format!("{method} of block {block}: the plugin has no block device (block-count is 0)"),
        )),
    }
}

impl block_device::Host for InstanceState {
    /// block-size: 4096.
    fn block_size(&mut self) -> wasmtime::Result<u32> {
        Ok(BLOCK_SIZE as u32)
    }

    /// block-count: 0 when the plugin was given no device.
    fn block_count(&mut self) -> wasmtime::Result<u64> {
        Ok(self
            .services
            .block_device
            .as_ref()
            .map_or(0, |dev| dev.block_count()))
    }

    /// read-block.
    fn read_block(&mut self, block: u64) -> wasmtime::Result<Result<Vec<u8>, types::Errno>> {
        let Some(dev) = &self.services.block_device else {
            return Ok(Err(types::Errno::Io));
        };
        Ok(dev.read_block_vec(block).map_err(errno_to_wit))
    }

    /// read-block-range: part of one block; a range past the block or the
    /// device is misuse.
    fn read_block_range(
        &mut self,
        block: u64,
        offset: u32,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, types::Errno>> {
        const METHOD: &str = "block-device.read-block-range";
        if u64::from(offset) + u64::from(len) > BLOCK_SIZE as u64 {
            return Err(misuse(
                &mut self.call,
                format!(
                    "{METHOD} of block {block}: offset {offset} + length {len} is past the block size {BLOCK_SIZE}"
                ),
            ));
        }
        let dev = device_range(
            &mut self.call,
            &self.services,
            METHOD,
            block,
            offset,
            u64::from(len),
        )?;
        let mut out = vec![0; len as usize];
        Ok(dev
            .read_at(block, offset as usize, &mut out)
            .map(|()| out)
            .map_err(errno_to_wit))
    }

    /// end-read-from-block: pread straight into the page, zero the rest,
    /// uptodate, unlock. The page must still be held by this call and the
    /// range must lie within the page and the device (else misuse); on a
    /// device error the page stays locked and not uptodate.
    fn end_read_from_block(
        &mut self,
        res: Resource<PageHandle>,
        block: u64,
        len: u32,
    ) -> wasmtime::Result<Result<(), types::Errno>> {
        const METHOD: &str = "block-device.end-read-from-block";
        let (i, page) = page_handle::page_to_fill(&mut self.call, &res, METHOD, len)?;
        let dev = device_range(
            &mut self.call,
            &self.services,
            METHOD,
            block,
            0,
            u64::from(len),
        )?;
        let len = len as usize;
        let read = page.with_data_mut(|data| {
            if len > 0 {
                dev.read_at(block, 0, &mut data[..len])?;
            }
            data[len..].fill(0);
            Ok(())
        });
        Ok(match read {
            Ok(()) => {
                page_handle::end_read(&mut self.call, i, page);
                Ok(())
            }
            Err(errno) => Err(errno_to_wit(errno)),
        })
    }

    /// write-block.
    fn write_block(
        &mut self,
        block: u64,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Errno>> {
        let Some(dev) = &self.services.block_device else {
            return Ok(Err(types::Errno::Io));
        };
        Ok(dev.write_block(block, &data).map_err(errno_to_wit))
    }

    /// flush: fdatasync of the image.
    fn flush(&mut self) -> wasmtime::Result<Result<(), types::Errno>> {
        let Some(dev) = &self.services.block_device else {
            return Ok(Ok(()));
        };
        Ok(dev.flush().map_err(errno_to_wit))
    }
}

/// The WIT lock mode as the service's.
fn mode(mode: cluster_lock::LockMode) -> LockMode {
    match mode {
        cluster_lock::LockMode::Shared => LockMode::Shared,
        cluster_lock::LockMode::Exclusive => LockMode::Exclusive,
    }
}

impl cluster_lock::Host for InstanceState {
    /// lock: blocking, bounded by the service's timeout (EAGAIN). Blocking
    /// while this call still holds a page lock is refused: the WIT forbids
    /// it because the lock's holder may need that page.
    fn lock(
        &mut self,
        name: String,
        lock_mode: cluster_lock::LockMode,
    ) -> wasmtime::Result<Result<(), types::Errno>> {
        if let Some((ino, index)) = self.call.pages.iter().find_map(|page| page.still_held()) {
            return Err(misuse(
                &mut self.call,
                format!(
                    "cluster-lock.lock({name:?}) would block while holding the page lock of inode {ino} page {index} \
                     (use trylock; on failure unlock the page, lock, unlock and return truncated-page)"
                ),
            ));
        }
        let locks = &self.services.cluster_locks;
        Ok(locks
            .lock(self.holder, &name, mode(lock_mode))
            .map_err(errno_to_wit))
    }

    /// trylock.
    fn trylock(
        &mut self,
        name: String,
        lock_mode: cluster_lock::LockMode,
    ) -> wasmtime::Result<bool> {
        Ok(self
            .services
            .cluster_locks
            .trylock(self.holder, &name, mode(lock_mode)))
    }

    /// unlock: releasing a lock this instance does not hold is misuse.
    fn unlock(&mut self, name: String) -> wasmtime::Result<()> {
        match self.services.cluster_locks.unlock(self.holder, &name) {
            Ok(()) => Ok(()),
            Err(not_held) => Err(misuse(
                &mut self.call,
                format!("cluster-lock.unlock: {not_held}"),
            )),
        }
    }
}

impl log::Host for InstanceState {
    /// log: into `tracing`, tagged with the plugin's name.
    fn log(&mut self, level: log::Level, mut message: String) -> wasmtime::Result<()> {
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        let plugin = self.services.plugin.as_str();
        if matches!(
            level,
            log::Level::Error | log::Level::Warn | log::Level::Info
        ) {
            match self.services.log_limit.check() {
                Verdict::Suppress => return Ok(()),
                Verdict::Emit { suppressed: 0 } => {}
                Verdict::Emit { suppressed } => tracing::warn!(
                    target: "aopsfs::plugin",
                    plugin,
                    "{suppressed} log messages suppressed (more than {} in {:?})",
                    self.services.log_limit.burst(),
                    self.services.log_limit.interval()
                ),
            }
        }
        match level {
            log::Level::Error => tracing::error!(target: "aopsfs::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "aopsfs::plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "aopsfs::plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "aopsfs::plugin", plugin, "{message}"),
            log::Level::Trace => tracing::trace!(target: "aopsfs::plugin", plugin, "{message}"),
        }
        Ok(())
    }
}
