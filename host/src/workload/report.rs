//! The end-of-run report: what the workload did, what the page cache and the
//! plugin did, and whether every read was right. Rendered as a table for
//! people or as one JSON object (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::fs::aops::{AopOp, ResultKind};
use crate::stats::StatsSnapshot;
use crate::workload::hexdump::diff_dump;
use crate::workload::oplog::LogEntry;
use crate::workload::ops::OpKind;
use crate::workload::oracle::Mismatch;

/// Operations of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    /// Operations run.
    pub count: u64,
    /// Bytes they moved (reads: returned; writes: written; faults: pages
    /// mapped).
    pub bytes: u64,
    /// Operations that returned an error.
    pub errors: u64,
}

/// A read that matched no version, with everything needed to debug it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MismatchReport {
    /// The thread that saw it (index and name).
    pub thread: usize,
    pub thread_name: String,
    /// The operation, with its arguments.
    pub op: String,
    /// The file (workload index) and its inode.
    pub file: usize,
    pub ino: u64,
    /// Why the oracle rejected it.
    pub reason: String,
    pub pos: u64,
    pub first_difference: Option<u64>,
    pub candidates: usize,
    #[serde(skip)]
    pub expected: Vec<u8>,
    #[serde(skip)]
    pub actual: Vec<u8>,
    #[serde(skip)]
    pub expected_unknown: Vec<std::ops::Range<usize>>,
    /// The last operations of every thread, oldest first.
    pub log_tail: Vec<LogEntry>,
}

impl MismatchReport {
    /// Build from the oracle's verdict.
    pub fn new(
        thread: usize,
        thread_name: &str,
        op: String,
        ino: u64,
        m: &Mismatch,
        log_tail: Vec<LogEntry>,
    ) -> Self {
        MismatchReport {
            thread,
            thread_name: thread_name.to_owned(),
            op,
            file: m.file,
            ino,
            reason: m.reason.clone(),
            pos: m.pos,
            first_difference: m.first_difference,
            candidates: m.candidates,
            expected: m.expected.clone(),
            actual: m.actual.clone(),
            expected_unknown: m.expected_unknown.clone(),
            log_tail,
        }
    }

    /// The multi-line explanation printed on stderr.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "MISMATCH: thread {} ({}): {}",
            self.thread, self.thread_name, self.op
        );
        let _ = writeln!(
            out,
            "  file {} (inode {}): {}",
            self.file, self.ino, self.reason
        );
        let at = self.first_difference.unwrap_or(self.pos);
        let versions = if self.candidates == 1 {
            "the model".to_owned()
        } else {
            format!(
                "the closest of {} versions the read could see",
                self.candidates
            )
        };
        let _ = writeln!(
            out,
            "  expected ({versions}, {} bytes) and actual ({} bytes) from offset {}; first difference at offset {at} ({at:#x}):",
            self.expected.len(),
            self.actual.len(),
            self.pos
        );
        out.push_str(&diff_dump(
            self.pos,
            &self.expected,
            &self.expected_unknown,
            &self.actual,
            at,
        ));
        let _ = writeln!(
            out,
            "  last {} operations (all threads, in completion order):",
            self.log_tail.len()
        );
        for entry in &self.log_tail {
            let _ = writeln!(out, "    {entry}");
        }
        out
    }
}

/// Everything a run did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The plugin (`wasm:ramfs`, `native:ramfs`, ...).
    pub plugin: String,
    /// The workload file (or `builtin:NAME`) and its description.
    pub workload: String,
    pub description: Option<String>,
    pub seed: u64,
    pub threads: usize,
    pub files: usize,
    /// The page cache limit in pages (`None`: unlimited).
    pub cache_limit_pages: Option<usize>,
    /// Whether every thread ran to its end (false after a mismatch or a
    /// failure stopped the run).
    pub completed: bool,
    /// Operations run, in all.
    pub ops: u64,
    /// Operations by kind.
    pub ops_by_kind: BTreeMap<String, OpCounts>,
    /// Operations that returned an error, in all, and the first few
    /// messages.
    pub op_errors: u64,
    pub first_errors: Vec<String>,
    /// Reads and faults checked against the model (including the final
    /// read-back of every file), and the bytes they returned.
    pub verified_reads: u64,
    pub verified_bytes: u64,
    /// Reads or faults that matched no version of the file.
    pub mismatches: u64,
    /// Page cache and aop counters from the engine (cache hits and misses,
    /// aop calls by operation and result, retries, reclaim, writeback,
    /// contract violations).
    #[serde(flatten)]
    pub engine: StatsSnapshot,
    /// The first few contract violations, as messages.
    pub violation_messages: Vec<String>,
    /// Locks the simulated other node held, and holds it could not get.
    pub cluster_holds: u64,
    pub cluster_hold_timeouts: u64,
    /// Pages cached and dirty at the end.
    pub cached_pages: usize,
    pub dirty_pages: u64,
    /// Wall-clock time of the run (not of loading the plugin), in ms.
    pub wall_time_ms: f64,
    /// The mismatch that stopped the run.
    pub mismatch: Option<MismatchReport>,
    /// A failure that stopped the run (a worker panicked).
    pub failure: Option<String>,
}

impl Report {
    /// Whether the run passed: no mismatch, no failure.
    pub fn passed(&self) -> bool {
        self.mismatch.is_none() && self.failure.is_none()
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let cache = match self.cache_limit_pages {
            Some(pages) => format!(
                "{} pages ({:.1} MiB)",
                pages,
                pages as f64 * 4096.0 / (1 << 20) as f64
            ),
            None => "unlimited".to_owned(),
        };
        let _ = writeln!(
            out,
            "aopsfs run: plugin {}, workload {}",
            self.plugin, self.workload
        );
        if let Some(d) = &self.description {
            let _ = writeln!(out, "  {d}");
        }
        let _ = writeln!(
            out,
            "  seed {}, {} thread{}, {} files, page cache {cache}",
            self.seed,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.files
        );
        out.push('\n');

        let _ = writeln!(
            out,
            "{:<14}{:>10}{:>14}{:>10}",
            "operation", "count", "bytes", "errors"
        );
        for kind in OpKind::ALL {
            let c = self
                .ops_by_kind
                .get(kind.name())
                .copied()
                .unwrap_or_default();
            if c.count == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "  {:<12}{:>10}{:>14}{:>10}",
                kind.name(),
                c.count,
                human_bytes(c.bytes),
                c.errors
            );
        }
        let total_bytes: u64 = self.ops_by_kind.values().map(|c| c.bytes).sum();
        let _ = writeln!(
            out,
            "  {:<12}{:>10}{:>14}{:>10}",
            "total",
            self.ops,
            human_bytes(total_bytes),
            self.op_errors
        );
        for e in &self.first_errors {
            let _ = writeln!(out, "    error: {e}");
        }
        out.push('\n');

        let verdict = if self.mismatches == 0 { "ok" } else { "FAILED" };
        let _ = writeln!(
            out,
            "verification: {} reads verified ({}), {} mismatches: {verdict}",
            self.verified_reads,
            human_bytes(self.verified_bytes),
            self.mismatches
        );
        let e = &self.engine;
        let lookups = e.cache_hits + e.cache_misses;
        let ratio = if lookups == 0 {
            0.0
        } else {
            100.0 * e.cache_hits as f64 / lookups as f64
        };
        let _ = writeln!(
            out,
            "page cache:   {} hits, {} misses ({ratio:.1}% hits)",
            e.cache_hits, e.cache_misses
        );
        let _ = writeln!(
            out,
            "pages:        {} reclaimed, {} written back, {} read ahead, {} activated, {} over-limit allocations",
            e.reclaimed, e.written_back, e.readahead_pages, e.activations, e.over_limit_allocs
        );
        let _ = writeln!(
            out,
            "at the end:   {} pages cached, {} dirty",
            self.cached_pages, self.dirty_pages
        );
        out.push('\n');

        let _ = write!(out, "{:<16}", "aop calls");
        for kind in ResultKind::ALL {
            let _ = write!(out, "{:>20}", kind.name());
        }
        let _ = writeln!(out, "{:>8}", "fault");
        for op in AopOp::ALL {
            let total: u64 = ResultKind::ALL.iter().map(|k| e.calls(op, *k)).sum::<u64>()
                + e.aop_faults.get(op.name()).copied().unwrap_or(0);
            if total == 0 {
                continue;
            }
            let _ = write!(out, "  {:<14}", op.name());
            for kind in ResultKind::ALL {
                let _ = write!(out, "{:>20}", e.calls(op, kind));
            }
            let _ = writeln!(
                out,
                "{:>8}",
                e.aop_faults.get(op.name()).copied().unwrap_or(0)
            );
        }
        let retries: Vec<String> = e
            .retries
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "retries:      {}",
            if retries.is_empty() {
                "none".to_owned()
            } else {
                retries.join(", ")
            }
        );
        if e.livelocks > 0 {
            let _ = writeln!(out, "livelocks:    {}", e.livelocks);
        }
        if self.cluster_holds + self.cluster_hold_timeouts > 0 {
            let _ = writeln!(
                out,
                "cluster:      other node held {} locks ({} could not be taken in time)",
                self.cluster_holds, self.cluster_hold_timeouts
            );
        }
        let _ = writeln!(out, "contract violations: {}", e.contract_violations);
        for v in &self.violation_messages {
            let _ = writeln!(out, "  {v}");
        }
        if let Some(f) = &self.failure {
            let _ = writeln!(out, "FAILURE: {f}");
        }
        let secs = self.wall_time_ms / 1000.0;
        let rate = if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        };
        let _ = writeln!(out, "wall time: {secs:.3} s ({rate:.0} ops/s)");
        out
    }
}

/// `1.5 MiB`, `12.0 KiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit {
            return format!("{:.1} {name}", n as f64 / unit as f64);
        }
    }
    format!("{n} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
