//! Workload files: the TOML types (serde, unknown keys rejected) and their
//! validation into a [`Workload`] the runner can execute.
//!
//! `examples/annotated.toml` documents every key. In brief:
//!
//! ```toml
//! seed = 1                  # default seed (--seed overrides)
//! threads = 2               # threads running [mix] (--threads overrides)
//! ops = 1000                # operations per thread (or: duration = "2s")
//! max_file_size = "256K"    # no operation goes past this offset
//! [files]                   # files 0..count, inodes 1..=count
//! count = 4
//! size = "16K"              # initial size (or sizes = [..] per file)
//! [read]                    # random read lengths and offset alignment
//! min = 1
//! max = "64K"
//! align = 1
//! [mix]                     # weights of randomly chosen operations
//! read = 40
//! write = 30
//! [[thread]]                # optional: threads with their own mix or script
//! script = [ { op = "cluster_lock", file = 0, hold = "50ms" } ]
//! repeat = true
//! ```
//!
//! Every error names the file, the line, the field and the reason
//! ([`WorkloadError`]).

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::mm::page::PAGE_SIZE;
use crate::workload::error::{WorkloadError, field_at, line_of};
use crate::workload::ops::{HoldMode, Op, OpKind};
use crate::workload::size::{ByteSize, HumanDuration};

/// The bundled workloads, embedded in the binary: (name, TOML).
pub const BUNDLED: [(&str, &str); 3] = [
    ("demo", include_str!("../../../examples/demo.toml")),
    (
        "concurrent",
        include_str!("../../../examples/concurrent.toml"),
    ),
    (
        "cluster-contention",
        include_str!("../../../examples/cluster-contention.toml"),
    ),
];

/// The workload `aopsfs run` runs when none is given.
pub const DEFAULT_WORKLOAD: &str = "demo";

/// The largest file size a workload may ask for (the engine's s_maxbytes
/// default).
pub const MAX_FILE_SIZE_LIMIT: u64 = 1 << 40;

/// Most threads a workload may run.
pub const MAX_THREADS: usize = 256;

/// Most files a workload may use.
pub const MAX_FILES: u32 = 4096;

/// The longest a sleep or a cluster lock hold may last.
const MAX_PAUSE: Duration = Duration::from_secs(60);

// ---- the TOML types ----------------------------------------------------------

/// A workload file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    description: Option<String>,
    seed: Option<u64>,
    threads: Option<Spanned<u32>>,
    ops: Option<Spanned<u64>>,
    duration: Option<Spanned<HumanDuration>>,
    max_file_size: Option<Spanned<ByteSize>>,
    files: Option<Spanned<RawFiles>>,
    read: Option<RawIoSize>,
    write: Option<RawIoSize>,
    truncate: Option<RawTruncate>,
    sleep: Option<RawSleep>,
    cluster_lock: Option<RawClusterLock>,
    reclaim: Option<RawReclaim>,
    mix: Option<Spanned<RawMix>>,
    #[serde(default)]
    thread: Vec<Spanned<RawThread>>,
}

/// `[files]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    count: Option<Spanned<u32>>,
    size: Option<Spanned<ByteSize>>,
    sizes: Option<Vec<Spanned<ByteSize>>>,
}

/// `[read]` and `[write]`: lengths and alignment of random operations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIoSize {
    min: Option<Spanned<ByteSize>>,
    max: Option<Spanned<ByteSize>>,
    align: Option<Spanned<ByteSize>>,
}

/// `[truncate]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTruncate {
    align: Option<Spanned<ByteSize>>,
}

/// `[sleep]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSleep {
    min: Option<Spanned<HumanDuration>>,
    max: Option<Spanned<HumanDuration>>,
}

/// `[cluster_lock]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterLock {
    hold: Option<Spanned<HumanDuration>>,
    mode: Option<HoldMode>,
    name: Option<Spanned<String>>,
}

/// `[reclaim]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReclaim {
    pages: Option<Spanned<u64>>,
}

/// `[mix]`: a weight per operation kind.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    read: Option<u32>,
    write: Option<u32>,
    truncate: Option<u32>,
    fault: Option<u32>,
    fsync: Option<u32>,
    writeback: Option<u32>,
    drop_caches: Option<u32>,
    reclaim: Option<u32>,
    sleep: Option<u32>,
    cluster_lock: Option<u32>,
}

/// `[[thread]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThread {
    name: Option<String>,
    count: Option<Spanned<u32>>,
    ops: Option<Spanned<u64>>,
    mix: Option<Spanned<RawMix>>,
    script: Option<Vec<Spanned<RawOp>>>,
    repeat: Option<bool>,
}

/// One scripted operation: `{ op = "write", file = 0, offset = 0, len = "4K" }`.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum RawOp {
    Read {
        file: u32,
        offset: ByteSize,
        len: ByteSize,
    },
    Write {
        file: u32,
        offset: ByteSize,
        len: ByteSize,
    },
    Truncate {
        file: u32,
        size: ByteSize,
    },
    Fault {
        file: u32,
        page: u64,
    },
    Fsync {
        file: u32,
    },
    Writeback {
        file: u32,
    },
    DropCaches,
    Reclaim {
        pages: Option<u64>,
    },
    Sleep {
        duration: HumanDuration,
    },
    ClusterLock {
        file: u32,
        hold: Option<HumanDuration>,
        mode: Option<HoldMode>,
    },
}

// ---- the validated workload ----------------------------------------------------

/// A range of lengths with an alignment (offsets and lengths are multiples
/// of `align`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoSize {
    pub min: u64,
    pub max: u64,
    pub align: u64,
}

/// Weights of randomly chosen operations, indexed like [`OpKind::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub weights: [u32; OpKind::ALL.len()],
}

impl Mix {
    /// The default mix: reads, writes, some truncates, faults, syncs and
    /// cache pressure.
    pub const DEFAULT: Mix = Mix {
        weights: [40, 30, 5, 10, 5, 2, 2, 2, 0, 0],
    };

    /// The weight of `kind`.
    pub fn weight(&self, kind: OpKind) -> u32 {
        self.weights[kind as usize]
    }

    /// The sum of the weights.
    pub fn total(&self) -> u64 {
        self.weights.iter().map(|&w| u64::from(w)).sum()
    }
}

/// What a thread does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadWork {
    /// Random operations drawn with these weights.
    Mix(Mix),
    /// These operations in order; with `repeat`, over and over until the
    /// other threads finish (or the duration ends).
    Script { ops: Vec<Op>, repeat: bool },
}

/// One thread of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadPlan {
    /// For logs and traces.
    pub name: String,
    pub work: ThreadWork,
    /// How many operations a mix thread runs (`None`: until the duration).
    pub ops: Option<u64>,
}

impl ThreadPlan {
    /// Whether the thread runs until told to stop.
    pub fn runs_until_stopped(&self) -> bool {
        match &self.work {
            ThreadWork::Mix(_) => self.ops.is_none(),
            ThreadWork::Script { repeat, .. } => *repeat,
        }
    }

    /// How many operations it will run, if that is known.
    pub fn op_count(&self) -> Option<u64> {
        match &self.work {
            ThreadWork::Mix(_) => self.ops,
            ThreadWork::Script { repeat: false, ops } => Some(ops.len() as u64),
            ThreadWork::Script { repeat: true, .. } => None,
        }
    }
}

/// The parameters random operations are drawn with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpParams {
    /// No operation touches an offset at or past this.
    pub max_file_size: u64,
    /// How many files.
    pub files: usize,
    pub read: IoSize,
    pub write: IoSize,
    /// Truncate sizes are multiples of this.
    pub truncate_align: u64,
    /// Sleeps last between these.
    pub sleep: (Duration, Duration),
    /// How long another node holds a lock, and in which mode.
    pub cluster_hold: Duration,
    pub cluster_mode: HoldMode,
    /// The DLM lock name of a file, with `{ino}` for its inode number.
    pub cluster_lock_name: String,
    /// Pages a `reclaim` asks for.
    pub reclaim_pages: u64,
}

impl OpParams {
    /// The DLM lock name of `file`.
    pub fn lock_name(&self, file: usize) -> String {
        self.cluster_lock_name
            .replace("{ino}", &ino_of(file).to_string())
    }
}

/// The inode number of workload file `file`.
pub fn ino_of(file: usize) -> u64 {
    file as u64 + 1
}

/// A validated workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Where it came from (a path, or `builtin:NAME`).
    pub source: String,
    pub description: Option<String>,
    /// The seed when `--seed` is not given.
    pub seed: u64,
    /// The initial size of each file.
    pub initial_sizes: Vec<u64>,
    pub params: OpParams,
    pub threads: Vec<ThreadPlan>,
    /// Run every thread for this long instead of an operation count.
    pub duration: Option<Duration>,
    /// Whether the threads came from `[[thread]]` tables (then `--threads`
    /// cannot change them).
    pub explicit_threads: bool,
}

impl Workload {
    /// Parse and validate a workload; `file` names it in errors.
    pub fn parse(file: &str, source: &str) -> Result<Workload, WorkloadError> {
        let raw: RawWorkload = toml::from_str(source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            WorkloadError {
                file: file.to_owned(),
                line: e.span().map(|s| line_of(source, s.start)),
                field: field_at(source, &span, e.message()),
                reason: e.message().trim().replace('\n', " "),
            }
        })?;
        Validator { file, source }.workload(raw)
    }

    /// Read and validate the workload file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Workload, WorkloadError> {
        let name = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| WorkloadError {
            file: name.clone(),
            line: None,
            field: "--workload".to_owned(),
            reason: format!("cannot read the workload file: {e}"),
        })?;
        Workload::parse(&name, &source)
    }

    /// A bundled workload by name (`demo`, `concurrent`,
    /// `cluster-contention`).
    pub fn bundled(name: &str) -> Option<Workload> {
        let (_, source) = BUNDLED.iter().find(|(n, _)| *n == name)?;
        Some(
            Workload::parse(&format!("builtin:{name}"), source)
                .expect("bundled workloads are valid"),
        )
    }

    /// Run `threads` threads of the workload's mix instead of its own
    /// count (`--threads`).
    pub fn set_threads(&mut self, threads: usize) -> Result<(), WorkloadError> {
        let error = |reason: String| WorkloadError {
            file: self.source.clone(),
            line: None,
            field: "--threads".into(),
            reason,
        };
        if self.explicit_threads {
            return Err(error(
                "this workload defines its threads in [[thread]] tables; change the file instead"
                    .into(),
            ));
        }
        if threads == 0 || threads > MAX_THREADS {
            return Err(error(format!(
                "must be between 1 and {MAX_THREADS} (got {threads})"
            )));
        }
        let template = self.threads[0].clone();
        self.threads = (0..threads)
            .map(|i| ThreadPlan {
                name: format!("mix-{i}"),
                ..template.clone()
            })
            .collect();
        Ok(())
    }

    /// The total operation count, when every thread has one.
    pub fn total_ops(&self) -> Option<u64> {
        self.threads.iter().map(ThreadPlan::op_count).sum()
    }
}

/// Turns a [`RawWorkload`] into a [`Workload`], naming the file in errors.
struct Validator<'a> {
    file: &'a str,
    source: &'a str,
}

impl Validator<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> WorkloadError {
        WorkloadError {
            file: self.file.to_owned(),
            line: span.map(|s| line_of(self.source, s.start)),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn workload(&self, raw: RawWorkload) -> Result<Workload, WorkloadError> {
        let max_file_size = match &raw.max_file_size {
            Some(s) => {
                let size = s.get_ref().bytes();
                if size == 0 || size > MAX_FILE_SIZE_LIMIT {
                    return Err(self.error(
                        Some(s.span()),
                        "max_file_size",
                        format!(
                            "must be between 1 and {} (got {size})",
                            ByteSize(MAX_FILE_SIZE_LIMIT)
                        ),
                    ));
                }
                size
            }
            None => 1 << 20,
        };
        let initial_sizes = self.files(raw.files.as_ref(), max_file_size)?;
        let read = self.io_size(
            "read",
            raw.read.as_ref(),
            IoSize {
                min: 1,
                max: 64 << 10,
                align: 1,
            },
            max_file_size,
        )?;
        let write = self.io_size(
            "write",
            raw.write.as_ref(),
            IoSize {
                min: 1,
                max: 16 << 10,
                align: 1,
            },
            max_file_size,
        )?;
        let truncate_align = match raw.truncate.as_ref().and_then(|t| t.align.as_ref()) {
            Some(a) => self.align("truncate.align", a, max_file_size)?,
            None => 1,
        };
        let sleep = self.sleep(raw.sleep.as_ref())?;
        let (cluster_hold, cluster_mode, cluster_lock_name) =
            self.cluster_lock(raw.cluster_lock.as_ref())?;
        let reclaim_pages = match raw.reclaim.as_ref().and_then(|r| r.pages.as_ref()) {
            Some(p) if *p.get_ref() == 0 || *p.get_ref() > 1 << 20 => {
                return Err(self.error(
                    Some(p.span()),
                    "reclaim.pages",
                    format!("must be between 1 and {} (got {})", 1 << 20, p.get_ref()),
                ));
            }
            Some(p) => *p.get_ref(),
            None => 32,
        };
        let params = OpParams {
            max_file_size,
            files: initial_sizes.len(),
            read,
            write,
            truncate_align,
            sleep,
            cluster_hold,
            cluster_mode,
            cluster_lock_name,
            reclaim_pages,
        };

        if let (Some(ops), Some(duration)) = (&raw.ops, &raw.duration) {
            let _ = ops;
            return Err(self.error(
                Some(duration.span()),
                "duration",
                "give either `ops` or `duration`, not both",
            ));
        }
        let duration = match &raw.duration {
            Some(d) if d.get_ref().0.is_zero() || d.get_ref().0 > Duration::from_secs(3600) => {
                return Err(self.error(
                    Some(d.span()),
                    "duration",
                    format!(
                        "must be more than 0 and at most 1 hour (got {})",
                        d.get_ref()
                    ),
                ));
            }
            Some(d) => Some(d.get_ref().0),
            None => None,
        };
        let default_ops = match &raw.ops {
            Some(ops) => Some(self.op_count("ops", ops)?),
            None if duration.is_some() => None,
            None => Some(1000),
        };
        let default_mix = match &raw.mix {
            Some(m) => self.mix("mix", m)?,
            None => Mix::DEFAULT,
        };

        let explicit_threads = !raw.thread.is_empty();
        let threads = if explicit_threads {
            if let Some(t) = &raw.threads {
                return Err(self.error(
                    Some(t.span()),
                    "threads",
                    "cannot be combined with [[thread]] tables: give each table a `count` instead",
                ));
            }
            let mut threads = Vec::new();
            for (i, t) in raw.thread.iter().enumerate() {
                self.thread_group(
                    i,
                    t,
                    &params,
                    default_mix,
                    default_ops,
                    duration,
                    &mut threads,
                )?;
            }
            threads
        } else {
            let count = match &raw.threads {
                Some(t) if *t.get_ref() == 0 || *t.get_ref() as usize > MAX_THREADS => {
                    return Err(self.error(
                        Some(t.span()),
                        "threads",
                        format!("must be between 1 and {MAX_THREADS} (got {})", t.get_ref()),
                    ));
                }
                Some(t) => *t.get_ref() as usize,
                None => 1,
            };
            (0..count)
                .map(|i| ThreadPlan {
                    name: format!("mix-{i}"),
                    work: ThreadWork::Mix(default_mix),
                    ops: default_ops,
                })
                .collect()
        };
        if threads.len() > MAX_THREADS {
            return Err(self.error(
                None,
                "thread",
                format!("{} threads in all; at most {MAX_THREADS}", threads.len()),
            ));
        }
        if duration.is_none() && threads.iter().all(ThreadPlan::runs_until_stopped) {
            return Err(self.error(None, "thread", "every thread repeats its script forever: set `duration`, or add a thread that runs a mix or a finite script"));
        }
        Ok(Workload {
            source: self.file.to_owned(),
            description: raw.description,
            seed: raw.seed.unwrap_or(1),
            initial_sizes,
            params,
            threads,
            duration,
            explicit_threads,
        })
    }

    fn files(
        &self,
        files: Option<&Spanned<RawFiles>>,
        max_file_size: u64,
    ) -> Result<Vec<u64>, WorkloadError> {
        let Some(files) = files else {
            return Ok(vec![0; 4]);
        };
        let raw = files.get_ref();
        let check_size = |s: &Spanned<ByteSize>, field: &str| {
            let size = s.get_ref().bytes();
            if size > max_file_size {
                Err(self.error(
                    Some(s.span()),
                    field,
                    format!(
                        "initial size {} is past max_file_size {}",
                        s.get_ref(),
                        ByteSize(max_file_size)
                    ),
                ))
            } else {
                Ok(size)
            }
        };
        match (&raw.count, &raw.size, &raw.sizes) {
            (_, Some(size), Some(_)) => Err(self.error(
                Some(size.span()),
                "files.size",
                "give either `size` (with `count`) or `sizes`, not both",
            )),
            (Some(count), _, Some(_)) => Err(self.error(
                Some(count.span()),
                "files.count",
                "give either `count` or `sizes` (one size per file), not both",
            )),
            (count, size, None) => {
                let n = match count {
                    Some(c) if *c.get_ref() == 0 || *c.get_ref() > MAX_FILES => {
                        return Err(self.error(
                            Some(c.span()),
                            "files.count",
                            format!("must be between 1 and {MAX_FILES} (got {})", c.get_ref()),
                        ));
                    }
                    Some(c) => *c.get_ref() as usize,
                    None => 4,
                };
                let size = match size {
                    Some(s) => check_size(s, "files.size")?,
                    None => 0,
                };
                Ok(vec![size; n])
            }
            (None, None, Some(sizes)) => {
                if sizes.is_empty() || sizes.len() > MAX_FILES as usize {
                    return Err(self.error(
                        Some(files.span()),
                        "files.sizes",
                        format!("must list between 1 and {MAX_FILES} sizes"),
                    ));
                }
                sizes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| check_size(s, &format!("files.sizes[{i}]")))
                    .collect()
            }
        }
    }

    fn align(
        &self,
        field: &str,
        align: &Spanned<ByteSize>,
        max_file_size: u64,
    ) -> Result<u64, WorkloadError> {
        let a = align.get_ref().bytes();
        if a == 0 || a > max_file_size {
            return Err(self.error(
                Some(align.span()),
                field,
                format!(
                    "must be between 1 and max_file_size {} (got {a})",
                    ByteSize(max_file_size)
                ),
            ));
        }
        Ok(a)
    }

    fn io_size(
        &self,
        table: &str,
        raw: Option<&RawIoSize>,
        default: IoSize,
        max_file_size: u64,
    ) -> Result<IoSize, WorkloadError> {
        let Some(raw) = raw else {
            return Ok(IoSize {
                max: default.max.min(max_file_size),
                ..default
            });
        };
        let align = match &raw.align {
            Some(a) => self.align(&format!("{table}.align"), a, max_file_size)?,
            None => default.align,
        };
        let min = raw
            .min
            .as_ref()
            .map_or(default.min, |m| m.get_ref().bytes());
        let max = match &raw.max {
            Some(m) if m.get_ref().bytes() > max_file_size => {
                return Err(self.error(
                    Some(m.span()),
                    format!("{table}.max"),
                    format!(
                        "{} is past max_file_size {}",
                        m.get_ref(),
                        ByteSize(max_file_size)
                    ),
                ));
            }
            Some(m) => m.get_ref().bytes(),
            None => default.max.min(max_file_size),
        };
        if min > max {
            let span = raw.min.as_ref().or(raw.max.as_ref()).map(|s| s.span());
            return Err(self.error(
                span,
                format!("{table}.min"),
                format!("min {} is larger than max {}", ByteSize(min), ByteSize(max)),
            ));
        }
        if max < align {
            let span = raw.max.as_ref().or(raw.align.as_ref()).map(|s| s.span());
            return Err(self.error(
                span,
                format!("{table}.max"),
                format!(
                    "max {} is smaller than align {}: no aligned length fits",
                    ByteSize(max),
                    ByteSize(align)
                ),
            ));
        }
        Ok(IoSize { min, max, align })
    }

    fn pause(&self, field: &str, d: &Spanned<HumanDuration>) -> Result<Duration, WorkloadError> {
        let value = d.get_ref().0;
        if value > MAX_PAUSE {
            return Err(self.error(
                Some(d.span()),
                field,
                format!("at most 60s (got {})", d.get_ref()),
            ));
        }
        Ok(value)
    }

    fn sleep(&self, raw: Option<&RawSleep>) -> Result<(Duration, Duration), WorkloadError> {
        let default = (Duration::from_millis(1), Duration::from_millis(5));
        let Some(raw) = raw else { return Ok(default) };
        let min = raw
            .min
            .as_ref()
            .map(|d| self.pause("sleep.min", d))
            .transpose()?
            .unwrap_or(default.0);
        let max = raw
            .max
            .as_ref()
            .map(|d| self.pause("sleep.max", d))
            .transpose()?
            .unwrap_or(min.max(default.1));
        if min > max {
            let span = raw.min.as_ref().map(|s| s.span());
            return Err(self.error(
                span,
                "sleep.min",
                format!(
                    "min {}ms is larger than max {}ms",
                    min.as_millis(),
                    max.as_millis()
                ),
            ));
        }
        Ok((min, max))
    }

    fn cluster_lock(
        &self,
        raw: Option<&RawClusterLock>,
    ) -> Result<(Duration, HoldMode, String), WorkloadError> {
        let default_name = "inode.{ino}".to_owned();
        let Some(raw) = raw else {
            return Ok((Duration::from_millis(20), HoldMode::Exclusive, default_name));
        };
        let hold = raw
            .hold
            .as_ref()
            .map(|d| self.pause("cluster_lock.hold", d))
            .transpose()?
            .unwrap_or(Duration::from_millis(20));
        let name = match &raw.name {
            Some(n) if n.get_ref().is_empty() => {
                return Err(self.error(Some(n.span()), "cluster_lock.name", "must not be empty"));
            }
            Some(n) => n.get_ref().clone(),
            None => default_name,
        };
        Ok((hold, raw.mode.unwrap_or_default(), name))
    }

    fn op_count(&self, field: &str, ops: &Spanned<u64>) -> Result<u64, WorkloadError> {
        let n = *ops.get_ref();
        if n == 0 || n > 1_000_000_000 {
            return Err(self.error(
                Some(ops.span()),
                field,
                format!("must be between 1 and 1000000000 (got {n})"),
            ));
        }
        Ok(n)
    }

    fn mix(&self, field: &str, raw: &Spanned<RawMix>) -> Result<Mix, WorkloadError> {
        let m = raw.get_ref();
        let weights = [
            m.read,
            m.write,
            m.truncate,
            m.fault,
            m.fsync,
            m.writeback,
            m.drop_caches,
            m.reclaim,
            m.sleep,
            m.cluster_lock,
        ]
        .map(|w| w.unwrap_or(0));
        let mix = Mix { weights };
        if mix.total() == 0 {
            return Err(self.error(
                Some(raw.span()),
                field,
                "every weight is 0: give at least one operation a positive weight",
            ));
        }
        Ok(mix)
    }

    #[allow(clippy::too_many_arguments)]
    fn thread_group(
        &self,
        index: usize,
        raw: &Spanned<RawThread>,
        params: &OpParams,
        default_mix: Mix,
        default_ops: Option<u64>,
        duration: Option<Duration>,
        threads: &mut Vec<ThreadPlan>,
    ) -> Result<(), WorkloadError> {
        let t = raw.get_ref();
        let field = |name: &str| format!("thread[{index}].{name}");
        let count = match &t.count {
            Some(c) if *c.get_ref() == 0 || *c.get_ref() as usize > MAX_THREADS => {
                return Err(self.error(
                    Some(c.span()),
                    field("count"),
                    format!("must be between 1 and {MAX_THREADS} (got {})", c.get_ref()),
                ));
            }
            Some(c) => *c.get_ref() as usize,
            None => 1,
        };
        let base_name = t.name.clone().unwrap_or_else(|| format!("thread{index}"));
        let (work, ops) = match (&t.mix, &t.script) {
            (Some(m), Some(_)) => {
                return Err(self.error(
                    Some(m.span()),
                    field("mix"),
                    "give either `mix` or `script`, not both",
                ));
            }
            (mix, None) => {
                if let Some(true) = t.repeat {
                    return Err(self.error(
                        Some(raw.span()),
                        field("repeat"),
                        "only a `script` can repeat",
                    ));
                }
                let mix = match mix {
                    Some(m) => self.mix(&field("mix"), m)?,
                    None => default_mix,
                };
                let ops = match &t.ops {
                    Some(_) if duration.is_some() => {
                        return Err(self.error(
                            t.ops.as_ref().map(|o| o.span()),
                            field("ops"),
                            "give either `ops` or the top-level `duration`, not both",
                        ));
                    }
                    Some(o) => Some(self.op_count(&field("ops"), o)?),
                    None => default_ops,
                };
                (ThreadWork::Mix(mix), ops)
            }
            (None, Some(script)) => {
                if let Some(o) = &t.ops {
                    return Err(self.error(
                        Some(o.span()),
                        field("ops"),
                        "a script runs its own operations: use `repeat` instead of `ops`",
                    ));
                }
                if script.is_empty() {
                    return Err(self.error(
                        Some(raw.span()),
                        field("script"),
                        "must list at least one operation",
                    ));
                }
                let ops = script
                    .iter()
                    .enumerate()
                    .map(|(i, op)| {
                        self.script_op(
                            &format!("thread[{index}].script[{i}]"),
                            op,
                            params,
                            index,
                            i,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (
                    ThreadWork::Script {
                        ops,
                        repeat: t.repeat.unwrap_or(false),
                    },
                    None,
                )
            }
        };
        for i in 0..count {
            let name = if count == 1 {
                base_name.clone()
            } else {
                format!("{base_name}-{i}")
            };
            threads.push(ThreadPlan {
                name,
                work: work.clone(),
                ops,
            });
        }
        Ok(())
    }

    fn script_op(
        &self,
        field: &str,
        raw: &Spanned<RawOp>,
        params: &OpParams,
        thread: usize,
        i: usize,
    ) -> Result<Op, WorkloadError> {
        let span = Some(raw.span());
        let file = |f: u32| -> Result<usize, WorkloadError> {
            if (f as usize) < params.files {
                Ok(f as usize)
            } else {
                Err(self.error(
                    span.clone(),
                    format!("{field}.file"),
                    format!(
                        "file {f} does not exist (the workload has files 0..{})",
                        params.files - 1
                    ),
                ))
            }
        };
        let pause = |d: HumanDuration, name: &str| -> Result<Duration, WorkloadError> {
            if d.0 > MAX_PAUSE {
                Err(self.error(
                    span.clone(),
                    format!("{field}.{name}"),
                    format!("at most 60s (got {d})"),
                ))
            } else {
                Ok(d.0)
            }
        };
        // Scripted writes get data derived from their place in the file.
        let data_seed = ((thread as u64) << 32) ^ i as u64;
        let op = match *raw.get_ref() {
            RawOp::Read {
                file: f,
                offset,
                len,
            } => Op::Read {
                file: file(f)?,
                offset: offset.0,
                len: len.0,
            },
            RawOp::Write {
                file: f,
                offset,
                len,
            } => Op::Write {
                file: file(f)?,
                offset: offset.0,
                len: len.0,
                data_seed,
            },
            RawOp::Truncate { file: f, size } => Op::Truncate {
                file: file(f)?,
                size: size.0,
            },
            RawOp::Fault { file: f, page } => Op::Fault {
                file: file(f)?,
                page,
            },
            RawOp::Fsync { file: f } => Op::Fsync { file: file(f)? },
            RawOp::Writeback { file: f } => Op::Writeback { file: file(f)? },
            RawOp::DropCaches => Op::DropCaches,
            RawOp::Reclaim { pages } => {
                let pages = pages.unwrap_or(params.reclaim_pages);
                if pages == 0 || pages > 1 << 20 {
                    return Err(self.error(
                        span,
                        format!("{field}.pages"),
                        format!("must be between 1 and {} (got {pages})", 1 << 20),
                    ));
                }
                Op::Reclaim { pages }
            }
            RawOp::Sleep { duration } => Op::Sleep {
                duration: pause(duration, "duration")?,
            },
            RawOp::ClusterLock {
                file: f,
                hold,
                mode,
            } => Op::ClusterLock {
                file: file(f)?,
                hold: match hold {
                    Some(h) => pause(h, "hold")?,
                    None => params.cluster_hold,
                },
                mode: mode.unwrap_or(params.cluster_mode),
            },
        };
        if op.end_offset() > params.max_file_size {
            let what = match op {
                Op::Truncate { size, .. } => format!("size {size}"),
                Op::Fault { page, .. } => {
                    format!("page {page} starts at {}", page * PAGE_SIZE as u64)
                }
                _ => format!("offset + len = {}", op.end_offset()),
            };
            return Err(self.error(
                span,
                field.to_owned(),
                format!(
                    "{} goes past max_file_size {} ({what})",
                    op.kind(),
                    ByteSize(params.max_file_size)
                ),
            ));
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> WorkloadError {
        Workload::parse("w.toml", src).unwrap_err()
    }

    #[test]
    fn bundled_workloads_are_valid() {
        for (name, _) in BUNDLED {
            let w = Workload::bundled(name).unwrap();
            assert!(!w.threads.is_empty(), "{name}");
        }
        assert_eq!(Workload::bundled("demo").unwrap().threads.len(), 1);
        assert_eq!(Workload::bundled("concurrent").unwrap().threads.len(), 4);
        let annotated = Workload::parse(
            "annotated.toml",
            include_str!("../../../examples/annotated.toml"),
        )
        .unwrap();
        assert_eq!(annotated.threads.len(), 3);
    }

    #[test]
    fn an_empty_file_is_the_default_workload() {
        let w = Workload::parse("w.toml", "").unwrap();
        assert_eq!(w.initial_sizes, vec![0; 4]);
        assert_eq!(w.threads.len(), 1);
        assert_eq!(w.threads[0].work, ThreadWork::Mix(Mix::DEFAULT));
        assert_eq!(w.total_ops(), Some(1000));
        assert_eq!(w.params.lock_name(0), "inode.1");
    }

    #[test]
    fn unknown_keys_are_rejected_with_file_line_and_field() {
        let e = err("seed = 1\n[read]\nmax = 10\nbogus = 3\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.field, "read.bogus", "{e}");
        assert!(e.reason.contains("unknown field"), "{e}");
    }

    #[test]
    fn negative_sizes_are_rejected() {
        let e = err("[files]\ncount = 2\nsize = -4096\n");
        assert_eq!((e.line, e.field.as_str()), (Some(3), "files.size"), "{e}");
        assert!(e.reason.contains("must not be negative"), "{e}");
    }

    #[test]
    fn operations_past_max_file_size_are_rejected() {
        let e = err(
            "max_file_size = \"64K\"\n[[thread]]\nscript = [\n  { op = \"read\", file = 0, offset = 0, len = 1 },\n  { op = \"write\", file = 0, offset = \"60K\", len = \"8K\" },\n]\n",
        );
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(5), "thread[0].script[1]"),
            "{e}"
        );
        assert!(e.reason.contains("past max_file_size 64K"), "{e}");
        let e = err("max_file_size = \"64K\"\n[write]\nmax = \"1M\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(3), "write.max"), "{e}");
    }

    #[test]
    fn script_ops_reject_unknown_fields_and_missing_files() {
        let e = err(
            "[[thread]]\nscript = [ { op = \"read\", file = 0, offset = 0, len = 1, colour = 2 } ]\n",
        );
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.reason.contains("unknown field `colour`"), "{e}");
        let e = err("[files]\ncount = 2\n[[thread]]\nscript = [ { op = \"fsync\", file = 2 } ]\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "thread[0].script[0].file"),
            "{e}"
        );
    }

    #[test]
    fn conflicting_and_endless_settings_are_rejected() {
        assert_eq!(err("ops = 5\nduration = \"1s\"\n").field, "duration");
        assert_eq!(err("threads = 2\n[[thread]]\n").field, "threads");
        let e =
            err("[[thread]]\nscript = [ { op = \"sleep\", duration = \"1ms\" } ]\nrepeat = true\n");
        assert!(e.reason.contains("repeats its script forever"), "{e}");
        assert_eq!(err("[mix]\nread = 0\n").field, "mix");
        assert_eq!(err("[read]\nmin = 10\nmax = 5\n").field, "read.min");
    }

    #[test]
    fn threads_can_be_overridden_only_for_mix_workloads() {
        let mut w = Workload::parse("w.toml", "threads = 2\n").unwrap();
        w.set_threads(5).unwrap();
        assert_eq!(w.threads.len(), 5);
        let mut w = Workload::bundled("cluster-contention").unwrap();
        assert_eq!(w.set_threads(2).unwrap_err().field, "--threads");
    }
}
