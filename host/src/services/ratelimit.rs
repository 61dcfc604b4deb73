//! Models lib/ratelimit.c (`___ratelimit`, behind `printk_ratelimited`): at
//! most `burst` messages per `interval`; the rest are counted, and the count
//! is reported with the first message of the next interval ("N callbacks
//! suppressed"), so a plugin that logs once per failing page cannot flood
//! the host's stderr.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A shared message budget.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    burst: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When the current interval began (None before the first message).
    begin: Option<Instant>,
    /// Messages let through in this interval.
    printed: u32,
    /// Messages suppressed since the last one let through.
    missed: u64,
}

/// What to do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Emit it; `suppressed` messages were dropped before it.
    Emit { suppressed: u64 },
    /// Drop it (it is counted).
    Suppress,
}

impl RateLimit {
    /// The kernel's default is 10 per 5 s; plugin authors debugging get more.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_BURST: u32 = 100;

    pub fn new(interval: Duration, burst: u32) -> RateLimit {
        assert!(
            burst > 0 && !interval.is_zero(),
            "a rate limit lets something through"
        );
        RateLimit {
            interval,
            burst,
            state: Mutex::new(State {
                begin: None,
                printed: 0,
                missed: 0,
            }),
        }
    }

    /// Messages let through per interval.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The length of an interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Models ___ratelimit: may a message go out now?
    pub fn check(&self) -> Verdict {
        self.check_at(Instant::now())
    }

    /// `check` at a given time (for tests).
    pub fn check_at(&self, now: Instant) -> Verdict {
        let mut s = self.state.lock();
        let expired = s
            .begin
            .is_none_or(|begin| now.saturating_duration_since(begin) >= self.interval);
        if expired {
            s.begin = Some(now);
            s.printed = 0;
        }
        if s.printed < self.burst {
            s.printed += 1;
            let suppressed = std::mem::take(&mut s.missed);
            Verdict::Emit { suppressed }
        } else {
            s.missed += 1;
            Verdict::Suppress
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(Self::DEFAULT_INTERVAL, Self::DEFAULT_BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_the_rest_is_counted_and_reported_in_the_next_interval() {
        let limit = RateLimit::new(Duration::from_secs(5), 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check_at(t0), Verdict::Emit { suppressed: 0 });
        }
        for _ in 0..7 {
            assert_eq!(
                limit.check_at(t0 + Duration::from_secs(4)),
                Verdict::Suppress
            );
        }
        assert_eq!(
            limit.check_at(t0 + Duration::from_secs(5)),
            Verdict::Emit { suppressed: 7 }
        );
        assert_eq!(
            limit.check_at(t0 + Duration::from_secs(6)),
            Verdict::Emit { suppressed: 0 }
        );
    }
}
