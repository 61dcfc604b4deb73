//! `--trace FILE` and `--trace-limit N`, shared by `run` and `mount`: check
//! them before any work starts, record while it runs, write the file when
//! it ends.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::error::CliError;
use crate::trace::chrome::{ChromeTrace, DEFAULT_EVENT_LIMIT};

/// The trace flags.
#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Write a Chrome trace-event JSON file when the run or mount ends
    /// (open it in the Perfetto UI): a span per aop call on each thread,
    /// page lock, flag and retry events, page counters.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// The most events the trace keeps; later ones are dropped and the
    /// file says so.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_EVENT_LIMIT)]
    pub trace_limit: usize,
}

impl TraceArgs {
    /// Check the flags (an unwritable path fails now, not after the work)
    /// and make the recorder, if a trace was asked for.
    pub fn start(&self) -> Result<Option<Arc<ChromeTrace>>, CliError> {
        if self.trace_limit == 0 {
            return Err(CliError::Flag {
                flag: "--trace-limit",
                reason: "must be at least 1".into(),
            });
        }
        let Some(path) = &self.trace else {
            return Ok(None);
        };
        std::fs::File::create(path).map_err(|e| CliError::Trace {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some(Arc::new(ChromeTrace::new(self.trace_limit))))
    }

    /// Write what `trace` recorded to the file, titled `title`; warn on
    /// stderr if events were dropped.
    pub fn finish(&self, trace: Option<&ChromeTrace>, title: &str) -> Result<(), CliError> {
        let (Some(path), Some(trace)) = (&self.trace, trace) else {
            return Ok(());
        };
        let written = trace.write_file(path, title).map_err(|e| CliError::Trace {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if written.dropped > 0 {
            eprintln!(
                "aopsfs: warning: trace {} is truncated: {} events dropped after the --trace-limit of {} (see otherData.note in the file)",
                path.display(),
                written.dropped,
                self.trace_limit
            );
        }
        Ok(())
    }
}
