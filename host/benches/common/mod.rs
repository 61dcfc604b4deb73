//! What the summary benches share.

use std::time::Instant;

/// Timed runs per figure; the best one is kept (on a shared machine it is
/// the one least disturbed by other processes).
pub const RUNS: usize = 7;

/// Nanoseconds per item: `step` is called `calls` times per run and moves
/// `items_per_call` items (pages); the best mean of [`RUNS`] runs.
pub fn best_mean_ns(calls: usize, items_per_call: usize, mut step: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        let start = Instant::now();
        for _ in 0..calls {
            step();
        }
        best = best.min(start.elapsed().as_nanos() as f64 / (calls * items_per_call) as f64);
    }
    best
}
