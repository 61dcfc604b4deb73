//! The log of recent operations, printed when a run fails: the last ones of
//! every thread in the order they completed.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// One completed operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    /// Completion order across all threads, from 1.
    pub seq: u64,
    /// The thread's index and name.
    pub thread: usize,
    pub thread_name: String,
    /// The operation and its arguments.
    pub op: String,
    /// What it returned.
    pub result: String,
    /// When it completed, since the run started.
    #[serde(serialize_with = "as_micros")]
    pub at: Duration,
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<6} {:>9.3}ms  t{} {:<12} {:<44} -> {}",
            self.seq,
            self.at.as_secs_f64() * 1000.0,
            self.thread,
            self.thread_name,
            self.op,
            self.result
        )
    }
}

/// A bounded log of the latest operations.
pub struct OpLog {
    entries: Mutex<(u64, VecDeque<LogEntry>)>,
    capacity: usize,
}

impl OpLog {
    /// A log keeping the last `capacity` operations.
    pub fn new(capacity: usize) -> OpLog {
        OpLog {
            entries: Mutex::new((0, VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// Record a completed operation.
    pub fn push(&self, thread: usize, thread_name: &str, op: String, result: String, at: Duration) {
        let mut guard = self.entries.lock();
        let (seq, entries) = &mut *guard;
        *seq += 1;
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(LogEntry {
            seq: *seq,
            thread,
            thread_name: thread_name.to_owned(),
            op,
            result,
            at,
        });
    }

    /// The last `n` entries, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogEntry> {
        let guard = self.entries.lock();
        let entries = &guard.1;
        entries
            .iter()
            .skip(entries.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_in_completion_order() {
        let log = OpLog::new(3);
        for i in 0..5 {
            log.push(i % 2, "t", format!("op{i}"), "ok".into(), Duration::ZERO);
        }
        let tail = log.tail(10);
        assert_eq!(
            tail.iter().map(|e| e.op.as_str()).collect::<Vec<_>>(),
            ["op2", "op3", "op4"]
        );
        assert_eq!(tail[2].seq, 5);
        assert_eq!(log.tail(1)[0].op, "op4");
    }
}
