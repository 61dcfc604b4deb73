//! An [`Observer`] that records the engine's events and writes them as a
//! Chrome trace-event JSON file (opens in the Perfetto UI and in
//! chrome://tracing).
//!
//! - every aop call is a span (`B`/`E` pair) on the calling thread, named
//!   after the operation, with the inode and page index, and the result on
//!   the end event;
//! - page flag changes, lock/unlock, activation, reclaim, truncate and
//!   retries are instant events (`i`), category `page` (`retry`, `truncate`
//!   have their own categories);
//! - cached and dirty page counts are a counter track (`C`, `pages`).
//!
//! Threads get small ids (1, 2, ...) in the order they first emit an event,
//! and are named after the OS thread (`mix-0`, `other-node`, ...).
//!
//! Events are buffered in memory and written at the end. At most `limit`
//! are kept; past it, new events are dropped (except the ends of spans
//! already begun, so every span stays closed) and the file says how many
//! were dropped in `otherData`.

use std::cell::Cell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::fs::aops::{AopOp, AopResult};
use crate::trace::{Observer, TraceEvent};

/// The default cap on buffered events (about 100 bytes each in the file).
pub const DEFAULT_EVENT_LIMIT: usize = 2_000_000;

static NEXT_TID: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// This thread's small trace id (0: not assigned yet).
    static TID: Cell<u32> = const { Cell::new(0) };
}

/// This thread's small id, assigned on first use.
fn current_tid() -> u32 {
    TID.with(|tid| {
        if tid.get() == 0 {
            tid.set(NEXT_TID.fetch_add(1, Ordering::Relaxed));
        }
        tid.get()
    })
}

/// One recorded event.
struct Recorded {
    ns: u64,
    tid: u32,
    event: TraceEvent,
}

/// The buffer, behind one lock.
#[derive(Default)]
struct Buffer {
    events: Vec<Recorded>,
    /// Names of the threads seen, by tid.
    threads: Vec<(u32, String)>,
    /// Spans begun and not yet ended, by tid (to keep spans closed when
    /// events are dropped).
    open: Vec<u32>,
    dropped: u64,
}

impl Buffer {
    fn open_mut(&mut self, tid: u32) -> &mut u32 {
        let i = tid as usize;
        if self.open.len() <= i {
            self.open.resize(i + 1, 0);
        }
        &mut self.open[i]
    }
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    /// Trace events written (not counting metadata).
    pub events: usize,
    /// Events dropped because of the limit.
    pub dropped: u64,
}

/// Records engine events for a Chrome trace file.
pub struct ChromeTrace {
    start: Instant,
    limit: usize,
    buffer: Mutex<Buffer>,
}

impl ChromeTrace {
    /// A recorder keeping at most `limit` events.
    pub fn new(limit: usize) -> ChromeTrace {
        ChromeTrace {
            start: Instant::now(),
            limit,
            buffer: Mutex::new(Buffer::default()),
        }
    }

    /// Events dropped so far because of the limit.
    pub fn dropped(&self) -> u64 {
        self.buffer.lock().dropped
    }

    /// Events recorded so far.
    pub fn len(&self) -> usize {
        self.buffer.lock().events.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the trace as JSON; `process` names the process track.
    pub fn write_json(&self, out: &mut dyn Write, process: &str) -> io::Result<TraceSummary> {
        let buffer = self.buffer.lock();
        let mut other = json!({
            "generator": "aopsfs run --trace",
            "events": buffer.events.len(),
            "dropped_events": buffer.dropped,
        });
        if buffer.dropped > 0 {
            other["note"] = Value::from(format!(
                "trace truncated: the event limit of {} was reached and {} later events were dropped (only span ends were kept)",
                self.limit, buffer.dropped
            ));
        }
        write!(
            out,
            "{{\"displayTimeUnit\":\"ms\",\"otherData\":{other},\"traceEvents\":["
        )?;
        let meta = json!({"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": process}});
        write!(out, "\n{meta}")?;
        for (tid, name) in &buffer.threads {
            let meta = json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}});
            write!(out, ",\n{meta}")?;
        }
        for r in &buffer.events {
            write!(out, ",\n{}", to_json(r))?;
        }
        writeln!(out, "\n]}}")?;
        Ok(TraceSummary {
            events: buffer.events.len(),
            dropped: buffer.dropped,
        })
    }

    /// Write the trace to the file at `path`.
    pub fn write_file(&self, path: &std::path::Path, process: &str) -> io::Result<TraceSummary> {
        let mut out = io::BufWriter::new(std::fs::File::create(path)?);
        let summary = self.write_json(&mut out, process)?;
        out.flush()?;
        Ok(summary)
    }
}

impl Observer for ChromeTrace {
    fn event(&self, event: &TraceEvent) {
        let tid = current_tid();
        let mut buffer = self.buffer.lock();
        let ns = self.start.elapsed().as_nanos() as u64;
        if !buffer.threads.iter().any(|(t, _)| *t == tid) {
            let name = std::thread::current()
                .name()
                .map_or_else(|| format!("thread-{tid}"), str::to_owned);
            buffer.threads.push((tid, name));
        }
        let full = buffer.events.len() >= self.limit;
        match event {
            TraceEvent::AopBegin { .. } => {
                if full {
                    buffer.dropped += 1;
                    return;
                }
                *buffer.open_mut(tid) += 1;
            }
            TraceEvent::AopEnd { .. } => {
                let open = buffer.open_mut(tid);
                if *open == 0 {
                    // Its begin was dropped.
                    buffer.dropped += 1;
                    return;
                }
                *open -= 1;
            }
            _ if full => {
                buffer.dropped += 1;
                return;
            }
            _ => {}
        }
        buffer.events.push(Recorded {
            ns,
            tid,
            event: *event,
        });
    }
}

fn result_name(result: &Option<AopResult>) -> String {
    match result {
        Some(r) => r.to_string(),
        None => "fault".to_owned(),
    }
}

fn op_name(op: &AopOp) -> &'static str {
    op.name()
}

/// One event as a trace-event JSON object.
fn to_json(r: &Recorded) -> Value {
    let ts = r.ns as f64 / 1000.0;
    let instant = |name: &str, cat: &str, args: Value| json!({"name": name, "cat": cat, "ph": "i", "s": "t", "ts": ts, "pid": 1, "tid": r.tid, "args": args});
    let page = |name: &str, ino: &u64, index: &u64| {
        instant(name, "page", json!({"ino": ino, "index": index}))
    };
    match &r.event {
        TraceEvent::AopBegin { op, ino, index } => {
            json!({"name": op_name(op), "cat": "aop", "ph": "B", "ts": ts, "pid": 1, "tid": r.tid, "args": {"ino": ino, "index": index}})
        }
        TraceEvent::AopEnd { op, result, .. } => {
            json!({"name": op_name(op), "cat": "aop", "ph": "E", "ts": ts, "pid": 1, "tid": r.tid, "args": {"result": result_name(result)}})
        }
        TraceEvent::PageLock { ino, index } => page("lock", ino, index),
        TraceEvent::PageUnlock { ino, index } => page("unlock", ino, index),
        TraceEvent::SetUptodate { ino, index } => page("uptodate", ino, index),
        TraceEvent::SetDirty { ino, index } => page("dirty", ino, index),
        TraceEvent::ClearDirty { ino, index } => page("clean", ino, index),
        TraceEvent::SetWriteback { ino, index } => page("writeback", ino, index),
        TraceEvent::EndWriteback { ino, index } => page("end_writeback", ino, index),
        TraceEvent::Activate { ino, index } => page("activate", ino, index),
        TraceEvent::Reclaim { ino, index } => page("reclaim", ino, index),
        TraceEvent::Truncate { ino, size } => {
            instant("truncate", "truncate", json!({"ino": ino, "size": size}))
        }
        TraceEvent::Retry { caller, ino, index } => instant(
            "retry",
            "retry",
            json!({"caller": caller.name(), "ino": ino, "index": index}),
        ),
        TraceEvent::Counters { cached, dirty } => {
            json!({"name": "pages", "ph": "C", "ts": ts, "pid": 1, "tid": r.tid, "args": {"cached": cached, "dirty": dirty}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::aops::AopResult;

    fn parse(trace: &ChromeTrace) -> Value {
        let mut out = Vec::new();
        trace.write_json(&mut out, "test").unwrap();
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn spans_instants_and_counters_are_trace_events() {
        let trace = ChromeTrace::new(100);
        trace.event(&TraceEvent::AopBegin {
            op: AopOp::Readpage,
            ino: 1,
            index: 2,
        });
        trace.event(&TraceEvent::PageUnlock { ino: 1, index: 2 });
        trace.event(&TraceEvent::AopEnd {
            op: AopOp::Readpage,
            ino: 1,
            index: 2,
            result: Some(AopResult::TruncatedPage),
        });
        trace.event(&TraceEvent::Counters {
            cached: 3,
            dirty: 1,
        });
        let v = parse(&trace);
        let events = v["traceEvents"].as_array().unwrap();
        let phases: Vec<&str> = events.iter().map(|e| e["ph"].as_str().unwrap()).collect();
        assert_eq!(phases, ["M", "M", "B", "i", "E", "C"]);
        assert_eq!(events[2]["name"], "readpage");
        assert_eq!(events[4]["args"]["result"], "truncated-page");
        assert_eq!(events[5]["args"]["cached"], 3);
        assert_eq!(
            events[1]["args"]["name"].as_str().unwrap(),
            std::thread::current().name().unwrap()
        );
        assert_eq!(v["otherData"]["dropped_events"], 0);
    }

    #[test]
    fn past_the_limit_events_are_dropped_but_spans_stay_closed() {
        let trace = ChromeTrace::new(2);
        trace.event(&TraceEvent::AopBegin {
            op: AopOp::Writepage,
            ino: 1,
            index: 0,
        });
        trace.event(&TraceEvent::PageLock { ino: 1, index: 0 });
        trace.event(&TraceEvent::PageUnlock { ino: 1, index: 0 });
        trace.event(&TraceEvent::AopBegin {
            op: AopOp::Writepage,
            ino: 1,
            index: 1,
        });
        trace.event(&TraceEvent::AopEnd {
            op: AopOp::Writepage,
            ino: 1,
            index: 1,
            result: Some(AopResult::Ok),
        });
        trace.event(&TraceEvent::AopEnd {
            op: AopOp::Writepage,
            ino: 1,
            index: 0,
            result: Some(AopResult::Ok),
        });
        assert_eq!(trace.dropped(), 3);
        let v = parse(&trace);
        let phases: Vec<&str> = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ph"].as_str().unwrap())
            .collect();
        assert_eq!(phases, ["M", "M", "B", "i", "E"]);
        assert!(
            v["otherData"]["note"]
                .as_str()
                .unwrap()
                .contains("3 later events were dropped")
        );
    }

    #[test]
    fn threads_get_small_distinct_ids() {
        let trace = std::sync::Arc::new(ChromeTrace::new(100));
        let t2 = std::sync::Arc::clone(&trace);
        std::thread::Builder::new()
            .name("worker-x".into())
            .spawn(move || t2.event(&TraceEvent::PageLock { ino: 1, index: 0 }))
            .unwrap()
            .join()
            .unwrap();
        trace.event(&TraceEvent::PageLock { ino: 1, index: 0 });
        let v = parse(&trace);
        let events = v["traceEvents"].as_array().unwrap();
        let names: Vec<&str> = events
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"worker-x"), "{names:?}");
        let tids: std::collections::BTreeSet<u64> = events
            .iter()
            .filter(|e| e["ph"] == "i")
            .map(|e| e["tid"].as_u64().unwrap())
            .collect();
        assert_eq!(tids.len(), 2);
    }
}
