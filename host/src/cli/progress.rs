//! The progress bar on stderr: shown only when stderr is a terminal, and
//! only once a run has gone on for a second.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;

use crate::workload::Progress;

/// How long a run goes before the bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// An indicatif bar, created on the first update after [`SHOW_AFTER`].
#[derive(Default)]
pub struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalProgress {
    /// A bar that is not shown yet.
    pub fn new() -> Self {
        TerminalProgress::default()
    }
}

impl Progress for TerminalProgress {
    fn update(&self, done: u64, total: Option<u64>, elapsed: Duration) {
        if elapsed < SHOW_AFTER {
            return;
        }
        let mut bar = self.bar.lock();
        let bar = bar.get_or_insert_with(|| {
            let (bar, template) = match total {
                Some(total) => (
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                    "{elapsed_precise} [{bar:40.cyan/blue}] {human_pos}/{human_len} ops (eta {eta})",
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    "{elapsed_precise} {spinner} {human_pos} ops",
                ),
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        bar.set_position(done);
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().take() {
            bar.finish_and_clear();
        }
    }
}
