//! The life of a mount: mount with fuser (pure Rust; as root no helper is
//! needed), serve requests on several threads, and end on Ctrl-C, SIGTERM
//! or an outside `umount`, then write back every dirty page and (on a
//! persistent image) a final namespace checkpoint. Models the
//! `do_mount` … `generic_shutdown_super` (sync_filesystem) arc.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::engine::Engine;
use crate::fuse::filesystem::{AopsFs, CacheMode, Capacity};
use crate::vfs::checkpoint::Checkpointer;
use crate::vfs::namei::Namespace;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    /// FUSE request threads (each blocks in our page locks independently).
    pub threads: usize,
    pub cache: CacheMode,
    /// What `mount` shows as the source, e.g. `aopsfs:blockfs`.
    pub fsname: String,
    /// How often a persistent mount writes back dirty pages and the
    /// namespace in the background (the kernel's dirty_writeback_centisecs);
    /// `None` for only at fsync and unmount.
    pub writeback_interval: Option<Duration>,
}

/// How a mount ended.
#[derive(Debug)]
pub struct MountSummary {
    /// "SIGINT", "SIGTERM" or "umount".
    pub ended_by: String,
    /// The final writeback's first error, if any.
    pub final_sync_error: Option<String>,
}

/// Why a mount could not start or failed while serving.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {path}: {reason}")]
    Mountpoint { path: PathBuf, reason: String },
    #[error("mounting at {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("FUSE session at {path} failed: {source}")]
    Session {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("installing signal handlers: {0}")]
    Signals(#[source] io::Error),
}

fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    let err = |reason: String| MountError::Mountpoint {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err("not a directory".into()));
    }
    Ok(())
}

/// Unmount `path`; if programs still use it, detach it lazily (the session
/// then ends when the last of them lets go).
fn unmount(unmounter: &mut fuser::SessionUnmounter, path: &Path) {
    match unmounter.unmount() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            tracing::warn!(
                "{} is busy; detaching it lazily, the mount ends when the last user closes it",
                path.display()
            );
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .expect("a path has no NUL");
            // SAFETY: umount2 only reads the NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                tracing::error!(
                    "lazy unmount of {}: {}",
                    path.display(),
                    io::Error::last_os_error()
                );
            }
        }
        Err(e) => tracing::error!("unmounting {}: {e}", path.display()),
    }
}

/// Mount, serve until unmounted, then write everything back.
pub fn serve(
    engine: Arc<Engine>,
    ns: Arc<Namespace>,
    checkpoint: Option<Arc<Checkpointer>>,
    capacity: Capacity,
    opts: &MountOptions,
) -> Result<MountSummary, MountError> {
    check_mountpoint(&opts.mountpoint)?;
    let path = opts
        .mountpoint
        .canonicalize()
        .map_err(|e| MountError::Mountpoint {
            path: opts.mountpoint.clone(),
            reason: e.to_string(),
        })?;
    let fs = AopsFs::new(
        Arc::clone(&engine),
        Arc::clone(&ns),
        checkpoint.clone(),
        opts.cache,
        capacity,
    );
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("aopsfs".into()),
        // The kernel checks permissions against our attributes, so every
        // user can use the mount with the usual Unix rules.
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
    ];
    config.acl = SessionACL::All;
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    let mut session = Session::new(fs, &path, &config).map_err(|source| MountError::Mount {
        path: path.clone(),
        source,
    })?;
    tracing::info!(
        "mounted {} at {} ({} threads, {})",
        opts.fsname,
        path.display(),
        opts.threads,
        if opts.cache.kernel_cache {
            "kernel page cache on"
        } else {
            "direct I/O: every read and write reaches the plugin"
        }
    );
    let mut unmounter = session.unmount_callable();
    let server = thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || session.run())
        .map_err(|source| MountError::Session {
            path: path.clone(),
            source,
        })?;

    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(MountError::Signals)?;
    let signal_handle = signals.handle();
    let (sig_tx, sig_rx) = mpsc::channel::<String>();
    let sig_path = path.clone();
    let signal_thread = thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            tracing::info!("{name}: unmounting {}", sig_path.display());
            let _ = sig_tx.send(name.to_owned());
            unmount(&mut unmounter, &sig_path);
        }
    });

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let flusher = match (&checkpoint, opts.writeback_interval) {
        (Some(ckpt), Some(every)) => {
            let (ckpt, ns) = (Arc::clone(ckpt), Arc::clone(&ns));
            Some(thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
                    if let Err(e) = ckpt.sync(&ns, false) {
                        tracing::error!("background writeback: {e}");
                    }
                }
            }))
        }
        _ => None,
    };

    let served = server
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the FUSE session thread panicked")));
    signal_handle.close();
    let _ = signal_thread.join();
    drop(stop_tx);
    if let Some(f) = flusher {
        let _ = f.join();
    }
    let ended_by = sig_rx.try_recv().unwrap_or_else(|_| "umount".to_owned());
    tracing::info!("{} unmounted ({ended_by}); writing back", path.display());

    let final_sync_error = final_sync(&engine, &ns, checkpoint.as_deref());
    served.map_err(|source| MountError::Session {
        path: path.clone(),
        source,
    })?;
    Ok(MountSummary {
        ended_by,
        final_sync_error,
    })
}

/// Models sync_filesystem at unmount: every dirty page, then the
/// namespace checkpoint.
fn final_sync(
    engine: &Engine,
    ns: &Namespace,
    checkpoint: Option<&Checkpointer>,
) -> Option<String> {
    let result = match checkpoint {
        Some(c) => c.sync(ns, true).map_err(|e| e.to_string()),
        None => engine.sync_all().map_err(|e| e.to_string()),
    };
    if let Err(e) = &result {
        tracing::error!("final writeback: {e}");
    }
    result.err()
}
