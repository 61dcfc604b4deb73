//! Opening what `--plugin` names: a bundled WASM plugin, a component file,
//! or a native implementation (`native:ramfs`, `native:memstore`), with its
//! block device image and cluster lock service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cli::error::CliError;
use crate::fs::memstore::{MemStore, MemStoreAops};
use crate::fs::ramfs::Ramfs;
use crate::plugin::lookup::is_path_spec;
use crate::plugin::{PluginOptions, PluginRuntime, parse_plugin_opt};
use crate::services::{BlockDevice, ClusterLockService};
use crate::workload::Target;
use crate::workload::size::ByteSize;

/// The prefix that selects a native implementation.
pub const NATIVE_PREFIX: &str = "native:";

/// The native implementations `--plugin native:NAME` accepts, with a line
/// each.
pub const NATIVE: [(&str, &str); 2] = [
    (
        "ramfs",
        "the host's ramfs: pages live only in the page cache (the WASM ramfs's twin)",
    ),
    (
        "memstore",
        "a persistent in-memory store: readpage and writepage really move data",
    ),
];

/// An opened target, and the temporary image to delete afterwards.
pub struct Opened {
    pub target: Target,
    /// The block device handed to a WASM plugin (none for native ones).
    pub device: Option<Arc<BlockDevice>>,
    temp_image: Option<PathBuf>,
    /// The `--image` file, if this open created it.
    new_image: Option<PathBuf>,
}

impl Opened {
    /// After a failure that ends the command: delete the `--image` file if
    /// this open created it, so a refused mount leaves nothing behind.
    pub fn remove_new_image(&self) {
        if let Some(path) = &self.new_image {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(path) = self.temp_image.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `--plugin` and `--plugin-opt`, shared by `run` and `mount`.
#[derive(clap::Args, Debug)]
pub struct PluginArgs {
    /// The plugin serving file data: a bundled plugin's name (`ramfs`,
    /// `blockfs`, `clusterfs`, ...; see `aopsfs plugins`), the path of a
    /// .wasm component, or `native:ramfs` / `native:memstore` for the
    /// host's native implementations (a baseline without WebAssembly).
    #[arg(long, value_name = "NAME|PATH", default_value = "ramfs")]
    pub plugin: String,

    /// A `key=value` pair passed to the plugin's mount; repeat for more.
    #[arg(long = "plugin-opt", value_name = "KEY=VALUE")]
    pub plugin_opts: Vec<String>,
}

/// How a new image is made and how it is read, shared by `run` and
/// `mount` (each documents `--image` itself).
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    /// The size of a new image: bytes or with a unit (`64M`, `1G`); a
    /// multiple of 4096. An existing image keeps its size.
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    pub image_size: ByteSize,

    /// Read and write the image with O_DIRECT, bypassing the host's page
    /// cache: every block I/O reaches the disk, as on a real device
    /// (slower, realistic costs). The image's file system must support it.
    #[arg(long)]
    pub direct_io: bool,
}

/// What to open.
pub struct TargetSpec<'a> {
    pub plugin: &'a str,
    pub plugin_opts: &'a [String],
    pub image: Option<&'a Path>,
    pub image_size: u64,
    /// Open the image with O_DIRECT (`--direct-io`).
    pub direct_io: bool,
}

impl<'a> TargetSpec<'a> {
    /// The spec the shared flags describe, with the command's `--image`.
    pub fn from_args(
        plugin: &'a PluginArgs,
        image: Option<&'a Path>,
        device: &DeviceArgs,
    ) -> TargetSpec<'a> {
        TargetSpec {
            plugin: &plugin.plugin,
            plugin_opts: &plugin.plugin_opts,
            image,
            image_size: device.image_size.bytes(),
            direct_io: device.direct_io,
        }
    }
}

/// Open the target `spec` names.
pub fn open(spec: &TargetSpec<'_>) -> Result<Opened, CliError> {
    let cluster_locks = ClusterLockService::new(ClusterLockService::DEFAULT_TIMEOUT);
    if let Some(name) = spec.plugin.strip_prefix(NATIVE_PREFIX) {
        return open_native(spec, name, cluster_locks);
    }
    let plugin_error = |file: String, e: &dyn std::fmt::Display| CliError::Plugin {
        file,
        reason: e.to_string(),
    };
    let mut options = PluginOptions::default().with_cluster_locks(Arc::clone(&cluster_locks));
    for opt in spec.plugin_opts {
        let (key, value) = parse_plugin_opt(opt).map_err(|e| CliError::Flag {
            flag: "--plugin-opt",
            reason: e.to_string(),
        })?;
        options = options.with_config(key, value);
    }
    let path = crate::plugin::resolve_plugin(spec.plugin).map_err(|e| {
        let file = if is_path_spec(spec.plugin) {
            spec.plugin.to_owned()
        } else {
            format!("plugin {}", spec.plugin)
        };
        plugin_error(file, &e)
    })?;
    let image = open_image(spec)?;
    options = options.with_block_device(Arc::clone(&image.device));
    let opened_file = path.display().to_string();
    let aops = PluginRuntime::shared()
        .and_then(|runtime| runtime.load_path(&path, options))
        .map_err(|e| {
            image.remove_if_created();
            plugin_error(opened_file, &e)
        })?;
    let name = format!("wasm:{}", aops.plugin_name());
    let (temp_image, new_image) = match (image.temp, image.created) {
        (true, _) => (Some(image.path), None),
        (false, true) => (None, Some(image.path)),
        (false, false) => (None, None),
    };
    Ok(Opened {
        target: Target {
            name,
            aops,
            cluster_locks,
        },
        device: Some(image.device),
        temp_image,
        new_image,
    })
}

fn open_native(
    spec: &TargetSpec<'_>,
    name: &str,
    cluster_locks: Arc<ClusterLockService>,
) -> Result<Opened, CliError> {
    if !spec.plugin_opts.is_empty() {
        return Err(CliError::Flag {
            flag: "--plugin-opt",
            reason: format!(
                "native implementations take no options (plugin {})",
                spec.plugin
            ),
        });
    }
    // Native implementations keep their data in memory: an image flag
    // would be silently ignored, so refuse it.
    for (given, flag) in [
        (spec.image.is_some(), "--image"),
        (spec.direct_io, "--direct-io"),
    ] {
        if given {
            return Err(CliError::Flag {
                flag,
                reason: format!(
                    "native implementations use no block device image (plugin {})",
                    spec.plugin
                ),
            });
        }
    }
    let aops: Arc<dyn crate::AddressSpaceOperations> = match name {
        "ramfs" => Arc::new(Ramfs),
        "memstore" => Arc::new(MemStoreAops::new(MemStore::new())),
        _ => {
            let known: Vec<String> = NATIVE
                .iter()
                .map(|(n, _)| format!("{NATIVE_PREFIX}{n}"))
                .collect();
            return Err(CliError::Plugin {
                file: spec.plugin.to_owned(),
                reason: format!(
                    "no such native implementation (there are: {})",
                    known.join(", ")
                ),
            });
        }
    };
    Ok(Opened {
        target: Target {
            name: format!("{NATIVE_PREFIX}{name}"),
            aops,
            cluster_locks,
        },
        device: None,
        temp_image: None,
        new_image: None,
    })
}

/// An opened image file.
struct ImageFile {
    device: Arc<BlockDevice>,
    path: PathBuf,
    /// A temporary image, deleted after the run.
    temp: bool,
    /// This open created the file (always so for a temporary one).
    created: bool,
}

impl ImageFile {
    /// Leave no image behind that a failed open created.
    fn remove_if_created(&self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The block device: `--image` (created when missing), or a temporary
/// sparse image deleted after the run.
fn open_image(spec: &TargetSpec<'_>) -> Result<ImageFile, CliError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (path, temp) = match spec.image {
        Some(path) => (path.to_owned(), false),
        None => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            (
                std::env::temp_dir().join(format!("aopsfs-run-{}-{n}.img", std::process::id())),
                true,
            )
        }
    };
    let existed = path.exists();
    let device = if temp {
        BlockDevice::create(&path, spec.image_size)
    } else {
        BlockDevice::open_or_create(&path, spec.image_size)
    };
    let device = device.and_then(|device| {
        device.lock_exclusive()?;
        if spec.direct_io {
            device.enable_direct_io()?;
        }
        Ok(device)
    });
    match device {
        Ok(device) => Ok(ImageFile {
            device,
            path,
            temp,
            created: temp || !existed,
        }),
        Err(e) => {
            if temp || !existed {
                let _ = std::fs::remove_file(&path);
            }
            Err(CliError::Image {
                path,
                reason: strip_path(&e.to_string(), spec.image),
            })
        }
    }
}

/// The reason without the leading "block device image PATH" the error
/// repeats.
fn strip_path(message: &str, path: Option<&Path>) -> String {
    match path {
        Some(p) => message
            .replace(&format!("block device image {}: ", p.display()), "")
            .replace(&format!("block device image {} ", p.display()), "image "),
        None => message.to_owned(),
    }
}
