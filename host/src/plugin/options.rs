//! How a plugin is run: its configuration, its limits, and the host
//! services it is given.

use std::sync::Arc;
use std::time::Duration;

use crate::plugin::error::PluginError;
use crate::services::{BlockDevice, ClusterLockService};

/// Per-instance and per-call resource limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginLimits {
    /// Fuel (roughly, WebAssembly instructions) one operation may use
    /// before it fails with a timeout. Fuel is deterministic: the same call
    /// on the same state always uses the same amount.
    pub fuel_per_call: u64,
    /// Fuel for one `truncate` (i_op->truncate), whose work grows with the
    /// file: freeing the blocks of a large file takes far more than a page
    /// operation, and running out would leak them.
    pub truncate_fuel: u64,
    /// Fuel for instantiating an instance and running its `mount`.
    pub mount_fuel: u64,
    /// The largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// The most instances alive at once; callers beyond it wait for one.
    pub max_instances: usize,
}

impl Default for PluginLimits {
    /// 100 M fuel per call (well under a second of guest code), 10 G for
    /// truncate (blockfs frees a 2 GiB file in well under that), 1 G for
    /// mount, 64 MiB of memory per instance, and up to max(4, 2 x cores)
    /// instances.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PluginLimits {
            fuel_per_call: 100_000_000,
            truncate_fuel: 10_000_000_000,
            mount_fuel: 1_000_000_000,
            memory_bytes: 64 << 20,
            max_instances: (2 * cores).max(4),
        }
    }
}

/// Everything needed to start a plugin besides its component.
#[derive(Clone)]
pub struct PluginOptions {
    /// Key/value pairs passed to the plugin's `mount` (`--plugin-opt`).
    pub config: Vec<(String, String)>,
    /// Resource limits.
    pub limits: PluginLimits,
    /// The block device the plugin's `block-device` import uses; `None`
    /// gives a device with no blocks.
    pub block_device: Option<Arc<BlockDevice>>,
    /// The cluster lock service shared with other nodes; `None` creates a
    /// private one with `lock_timeout`.
    pub cluster_locks: Option<Arc<ClusterLockService>>,
    /// The bound on a blocking cluster `lock` when the service is created
    /// here.
    pub lock_timeout: Duration,
}

impl Default for PluginOptions {
    fn default() -> Self {
        PluginOptions {
            config: Vec::new(),
            limits: PluginLimits::default(),
            block_device: None,
            cluster_locks: None,
            lock_timeout: ClusterLockService::DEFAULT_TIMEOUT,
        }
    }
}

impl PluginOptions {
    /// Add one `key=value` pair to the mount configuration.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// Use `device` as the plugin's block device.
    pub fn with_block_device(mut self, device: Arc<BlockDevice>) -> Self {
        self.block_device = Some(device);
        self
    }

    /// Share `locks` with the plugin (and with whoever else holds it).
    pub fn with_cluster_locks(mut self, locks: Arc<ClusterLockService>) -> Self {
        self.cluster_locks = Some(locks);
        self
    }

    /// Replace the limits.
    pub fn with_limits(mut self, limits: PluginLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Check the limits make sense.
    pub(crate) fn validate(&self) -> Result<(), PluginError> {
        let limits = &self.limits;
        if limits.max_instances == 0 {
            return Err(PluginError::Option(
                "max_instances must be at least 1".into(),
            ));
        }
        if limits.fuel_per_call == 0 || limits.truncate_fuel == 0 || limits.mount_fuel == 0 {
            return Err(PluginError::Option("fuel budgets must be positive".into()));
        }
        if limits.memory_bytes < 64 * 1024 {
            return Err(PluginError::Option(format!(
                "memory limit {} bytes is below one WebAssembly page (65536)",
                limits.memory_bytes
            )));
        }
        Ok(())
    }
}

/// Parse one `--plugin-opt key=value` argument.
pub fn parse_plugin_opt(arg: &str) -> Result<(String, String), PluginError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(PluginError::Option(format!(
            "{arg:?} is not of the form key=value"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_opts_are_key_value_pairs() {
        assert_eq!(
            parse_plugin_opt("trigger=3").unwrap(),
            ("trigger".into(), "3".into())
        );
        assert_eq!(
            parse_plugin_opt("k=a=b").unwrap(),
            ("k".into(), "a=b".into())
        );
        assert!(parse_plugin_opt("novalue").is_err());
        assert!(parse_plugin_opt("=v").is_err());
    }

    #[test]
    fn zero_instances_is_rejected() {
        let options = PluginOptions::default().with_limits(PluginLimits {
            max_instances: 0,
            ..PluginLimits::default()
        });
        assert!(options.validate().is_err());
    }
}
