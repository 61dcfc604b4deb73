//! `aopsfs mount`: serve a plugin's filesystem at a real mount point.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::cli::error::CliError;
use crate::cli::target::{self, DeviceArgs, PluginArgs, TargetSpec};
use crate::cli::trace_file::TraceArgs;
use crate::cli::{EXIT_MISMATCH, EXIT_OK};
use crate::engine::{Engine, EngineConfig};
use crate::errno::Errno;
use crate::fuse::{CacheMode, Capacity, MountOptions};
use crate::mm::page::PAGE_SIZE;
use crate::trace::Observer;
use crate::vfs::checkpoint::{CheckpointError, Checkpointer, NS_INO_LIMIT, RESERVE};
use crate::vfs::namei::{Cred, Namespace};

/// `aopsfs mount` flags.
#[derive(Debug, Args)]
#[command(after_help = "\
The mount stays in the foreground and logs to stderr (set AOPSFS_LOG, e.g. \
AOPSFS_LOG=debug, for more). Ctrl-C, SIGTERM or `umount MOUNTPOINT` end it: \
every dirty page is written back (and, with --image, the namespace is \
checkpointed on the image) before it exits. Needs root (or CAP_SYS_ADMIN) \
and /dev/fuse.

By default every open file uses FUSE direct I/O, so each read() and write() \
goes through aopsfs's page cache and the plugin's aops, never answered by the \
kernel's own page cache; --kernel-cache trades that for speed.

Exit status: 0 after a clean unmount, 1 when the final writeback failed, 2 for \
bad input (flags, plugin, image, mount point).

Examples:
  aopsfs mount --plugin ramfs /mnt/aops
  aopsfs mount --plugin blockfs --image disk.img --image-size 256M /mnt/aops
  aopsfs mount --plugin clusterfs --threads 8 /mnt/aops
  aopsfs mount --plugin native:ramfs /mnt/aops     # the same without WebAssembly")]
pub struct MountArgs {
    #[command(flatten)]
    pub target: PluginArgs,

    /// The block device image: opened if it exists, else created sparse
    /// with --image-size. With an image the mount is persistent: the
    /// directory tree and attributes are checkpointed on it, so a later
    /// mount of the same image shows the same files. Without one a
    /// temporary image is used and deleted at unmount.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// The page cache memory limit in MiB; reclaim writes back and frees
    /// pages past it.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub cache_mb: u64,

    /// FUSE request threads: concurrent programs contend on the page
    /// locks (and the cluster lock) from this many threads.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub threads: usize,

    /// Let the kernel cache file pages too (faster; repeated reads are then
    /// answered by the kernel, not the plugin).
    #[arg(long)]
    pub kernel_cache: bool,

    /// With --image: write back dirty pages and checkpoint the namespace
    /// every N seconds (0: only at fsync and unmount).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub writeback_secs: u64,

    /// At unmount, write the page cache and aop statistics (cache hits and
    /// misses, aop calls by result, retries, violations) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,

    #[command(flatten)]
    pub trace: TraceArgs,

    /// Where to mount: an existing directory.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
}

/// The largest `--cache-mb`: 1 TiB of page cache.
const MAX_CACHE_MB: u64 = 1 << 20;

/// Run `aopsfs mount`.
pub fn execute(args: &MountArgs) -> Result<u8, CliError> {
    if args.threads == 0 || args.threads > 64 {
        return Err(CliError::Flag {
            flag: "--threads",
            reason: format!("{} is not between 1 and 64", args.threads),
        });
    }
    if args.cache_mb == 0 || args.cache_mb > MAX_CACHE_MB {
        return Err(CliError::Flag {
            flag: "--cache-mb",
            reason: format!("{} is not between 1 and {MAX_CACHE_MB}", args.cache_mb),
        });
    }
    // Fail on unwritable output paths now, not at unmount.
    let trace = args.trace.start()?;
    if let Some(path) = &args.stats {
        std::fs::File::create(path).map_err(|e| CliError::Flag {
            flag: "--stats",
            reason: format!("{}: {e}", path.display()),
        })?;
    }
    let opened = target::open(&TargetSpec::from_args(
        &args.target,
        args.image.as_deref(),
        &args.device,
    ))?;
    let cache_bytes = args.cache_mb << 20;
    let engine = Engine::new(
        Arc::clone(&opened.target.aops),
        EngineConfig {
            memory_limit_pages: Some((cache_bytes / PAGE_SIZE as u64) as usize),
            observer: trace.clone().map(|t| t as Arc<dyn Observer>),
            ..EngineConfig::default()
        },
    );
    let root = Cred {
        // SAFETY: getuid/getgid cannot fail.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
    };
    let (checkpoint, ns, capacity) = match (&args.image, &opened.device) {
        (Some(image), Some(device)) => {
            let writes_before = device.stats().writes;
            let (ckpt, loaded) = Checkpointer::load(&engine).map_err(|e| {
                opened.remove_new_image();
                let reason = match &e {
                    CheckpointError::Io { source, .. } if source.errno() == Errno::Enospc => {
                        format!(
                            "too small: the plugin could not store the namespace checkpoint's two {} KiB slots on it ({e}); use a larger --image-size",
                            RESERVE >> 10
                        )
                    }
                    _ => e.to_string(),
                };
                CliError::Image {
                    path: image.clone(),
                    reason,
                }
            })?;
            // A fresh image gets its checkpoint slots written through the
            // plugin's writepage. A plugin that wrote nothing to the device
            // keeps its data in memory (ramfs): the mount would claim a
            // persistence it does not have.
            if loaded.is_none() && device.stats().writes == writes_before {
                opened.remove_new_image();
                return Err(CliError::Image {
                    path: image.clone(),
                    reason: format!(
                        "plugin {} stored nothing on the image when asked to write back (it keeps its data in memory), so a mount with --image would not persist; use a persistent plugin such as blockfs, or drop --image",
                        args.target.plugin
                    ),
                });
            }
            let ns = match loaded {
                Some(img) => {
                    let n = img.inodes.len();
                    let ns = Namespace::from_image(img, NS_INO_LIMIT).map_err(|reason| {
                        CliError::Image {
                            path: image.clone(),
                            reason: format!("namespace checkpoint: {reason}"),
                        }
                    })?;
                    tracing::info!("{}: loaded {n} inodes", image.display());
                    ns
                }
                None => Namespace::new(root, 0o755, NS_INO_LIMIT),
            };
            (Some(Arc::new(ckpt)), ns, device.size())
        }
        _ => (None, Namespace::new(root, 0o755, NS_INO_LIMIT), cache_bytes),
    };
    let opts = MountOptions {
        mountpoint: args.mountpoint.clone(),
        threads: args.threads,
        cache: CacheMode {
            kernel_cache: args.kernel_cache,
        },
        fsname: format!("aopsfs:{}", opened.target.name),
        writeback_interval: (args.writeback_secs > 0)
            .then(|| Duration::from_secs(args.writeback_secs)),
    };
    let summary = crate::fuse::serve(
        Arc::clone(&engine),
        Arc::new(ns),
        checkpoint,
        Capacity { bytes: capacity },
        &opts,
    )
    .map_err(|e| CliError::Mount {
        path: args.mountpoint.clone(),
        reason: e.to_string(),
    })?;
    report(&engine, &summary);
    args.trace.finish(
        trace.as_deref(),
        &format!("aopsfs mount {}", opened.target.name),
    )?;
    if let Some(path) = &args.stats {
        let json = serde_json::json!({
            "ended_by": summary.ended_by,
            "final_sync_error": summary.final_sync_error,
            "stats": engine.stats().snapshot(),
            "violations": engine.violations().iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        });
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&json).expect("stats serialize"),
        )
        .map_err(|e| CliError::Flag {
            flag: "--stats",
            reason: format!("{}: {e}", path.display()),
        })?;
    }
    Ok(if summary.final_sync_error.is_some() {
        EXIT_MISMATCH
    } else {
        EXIT_OK
    })
}

/// One line of what happened, plus any contract violations by name.
fn report(engine: &Engine, summary: &crate::fuse::MountSummary) {
    let stats = engine.stats().snapshot();
    let calls: u64 = stats.aop_calls.values().flat_map(|m| m.values()).sum();
    let violations = engine.violations();
    eprintln!(
        "aopsfs: unmounted ({}): {calls} aop calls, {} retries, {} contract violations{}",
        summary.ended_by,
        engine.stats().total_retries(),
        stats.contract_violations,
        match &summary.final_sync_error {
            Some(e) => format!("; final writeback FAILED: {e}"),
            None => "; everything written back".into(),
        }
    );
    for v in violations.iter().take(10) {
        eprintln!("aopsfs:   {v}");
    }
}
