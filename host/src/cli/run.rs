//! `aopsfs run`: drive a workload through a plugin, verified and traced.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::cli::error::CliError;
use crate::cli::progress::TerminalProgress;
use crate::cli::target::{self, DeviceArgs, PluginArgs, TargetSpec};
use crate::cli::trace_file::TraceArgs;
use crate::cli::{EXIT_MISMATCH, EXIT_OK};
use crate::mm::page::PAGE_SIZE;
use crate::trace::Observer;
use crate::workload::spec::{BUNDLED, DEFAULT_WORKLOAD};
use crate::workload::{self, RunOptions, Workload};

/// The prefix that names a bundled workload.
const BUILTIN_PREFIX: &str = "builtin:";

/// `aopsfs run` flags.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: 0 when every read matched the model, 1 on a mismatch (the \
operation log tail and a hex dump of expected and actual bytes go to \
stderr), 2 for bad input (workload file, flags, plugin, image), with a \
one-line error.

Examples:
  aopsfs run
  aopsfs run --plugin clusterfs --workload examples/cluster-contention.toml --json
  aopsfs run --plugin blockfs --image /tmp/disk.img --image-size 64M --cache-mb 1
  aopsfs run --plugin native:ramfs --workload builtin:concurrent --trace run.json")]
pub struct RunArgs {
    #[command(flatten)]
    pub target: PluginArgs,

    /// The workload: a TOML file (see examples/annotated.toml) or
    /// `builtin:demo`, `builtin:concurrent`, `builtin:cluster-contention`
    /// (embedded in the binary). Default: builtin:demo.
    #[arg(long, value_name = "FILE")]
    pub workload: Option<String>,

    /// The block device image for plugins that use one (blockfs,
    /// clusterfs): opened if it exists, else created sparse with
    /// --image-size. Without it, a temporary image is created and deleted
    /// after the run.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// The page cache memory limit in MiB (reclaim starts when the cache
    /// is full). Default: unlimited.
    #[arg(long, value_name = "N")]
    pub cache_mb: Option<u64>,

    /// The seed every thread's operations derive from (default: the
    /// workload's `seed`). The same seed gives the same operations; a
    /// single-thread run gives the same report.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Run N threads of the workload's mix (only for workloads without
    /// [[thread]] tables).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub trace: TraceArgs,

    /// Print the report as one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Load the workload `--workload` names.
pub fn load_workload(spec: Option<&str>) -> Result<Workload, CliError> {
    let spec = spec.map_or_else(
        || format!("{BUILTIN_PREFIX}{DEFAULT_WORKLOAD}"),
        str::to_owned,
    );
    if let Some(name) = spec.strip_prefix(BUILTIN_PREFIX) {
        return Workload::bundled(name).ok_or_else(|| {
            let names: Vec<String> = BUNDLED
                .iter()
                .map(|(n, _)| format!("{BUILTIN_PREFIX}{n}"))
                .collect();
            CliError::Flag {
                flag: "--workload",
                reason: format!(
                    "no bundled workload {spec:?} (there are: {})",
                    names.join(", ")
                ),
            }
        });
    }
    Ok(Workload::load(std::path::Path::new(&spec))?)
}

/// Run the command; returns the exit code.
pub fn execute(args: &RunArgs) -> Result<u8, CliError> {
    let mut workload = load_workload(args.workload.as_deref())?;
    if let Some(threads) = args.threads {
        workload.set_threads(threads)?;
    }
    let cache_pages = match args.cache_mb {
        Some(0) => {
            return Err(CliError::Flag {
                flag: "--cache-mb",
                reason: "must be at least 1".into(),
            });
        }
        Some(mb) => Some(
            usize::try_from(mb.saturating_mul(1 << 20) / PAGE_SIZE as u64).unwrap_or(usize::MAX),
        ),
        None => None,
    };
    let trace = args.trace.start()?;
    let opened = target::open(&TargetSpec::from_args(
        &args.target,
        args.image.as_deref(),
        &args.device,
    ))?;
    let plugin_name = opened.target.name.clone();
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| Arc::new(TerminalProgress::new()) as Arc<dyn workload::Progress>);
    let options = RunOptions {
        seed: args.seed,
        cache_pages,
        observer: trace.clone().map(|t| t as Arc<dyn Observer>),
        progress,
    };
    let report = workload::run(&workload, opened.target.clone(), options);
    drop(opened);

    args.trace
        .finish(trace.as_deref(), &format!("aopsfs run {plugin_name}"))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    if let Some(m) = &report.mismatch {
        eprint!("{}", m.render());
    }
    if let Some(f) = &report.failure {
        eprintln!("aopsfs: run failed: {f}");
    }
    Ok(if report.passed() {
        EXIT_OK
    } else {
        EXIT_MISMATCH
    })
}
