//! Flow control for the host: how many healthy clients hold a backlog past the low
//! and high watermarks of their queue budget. Each client keeps its own level and
//! changes these counts only when it crosses a watermark, so a publication costs a
//! few comparisons, never a scan of all clients.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A quarter of a client's budget: under it a client counts as drained.
const LOW_FRACTION: usize = 4;
/// Half of a client's budget: over it the host should slow down.
const HIGH_FRACTION: usize = 2;

/// Where a client's backlog stands against its budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Under the low watermark, or not healthy (being closed): holds nobody back.
    #[default]
    Drained,
    /// Over the low watermark.
    Backlogged,
    /// Over the high watermark.
    Congested,
}

impl Level {
    /// The level of `messages` and `bytes` waiting against a budget of
    /// `message_budget` and `byte_budget`: whichever of the two is fuller.
    pub fn of(messages: usize, bytes: usize, message_budget: usize, byte_budget: usize) -> Level {
        let over = |fraction: usize| {
            messages * fraction > message_budget || bytes * fraction > byte_budget
        };
        if over(HIGH_FRACTION) {
            Level::Congested
        } else if over(LOW_FRACTION) {
            Level::Backlogged
        } else {
            Level::Drained
        }
    }
}

/// Server-wide counts of clients by level.
#[derive(Default)]
pub(crate) struct BacklogGauge {
    /// Healthy clients over the low watermark (congested ones included).
    over_low: AtomicUsize,
    /// Healthy clients over the high watermark.
    over_high: AtomicUsize,
}

impl BacklogGauge {
    /// A client moved from `before` to `after`.
    pub fn shift(&self, before: Level, after: Level) {
        if before == after {
            return;
        }
        let low = |level: Level| level >= Level::Backlogged;
        let high = |level: Level| level == Level::Congested;
        Self::follow(&self.over_low, low(before), low(after));
        Self::follow(&self.over_high, high(before), high(after));
    }

    fn follow(count: &AtomicUsize, was: bool, is: bool) {
        match (was, is) {
            (false, true) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                count.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Healthy clients whose backlog is over a quarter of their budget.
    pub fn over_low(&self) -> usize {
        self.over_low.load(Ordering::Relaxed)
    }

    /// Healthy clients whose backlog is over half of their budget.
    pub fn over_high(&self) -> usize {
        self.over_high.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuller_of_count_and_bytes_decides() {
        assert_eq!(Level::of(0, 0, 100, 1000), Level::Drained);
        assert_eq!(Level::of(25, 0, 100, 1000), Level::Drained);
        assert_eq!(Level::of(26, 0, 100, 1000), Level::Backlogged);
        assert_eq!(Level::of(0, 251, 100, 1000), Level::Backlogged);
        assert_eq!(Level::of(51, 0, 100, 1000), Level::Congested);
        assert_eq!(Level::of(1, 501, 100, 1000), Level::Congested);
    }

    #[test]
    fn counts_follow_crossings_only() {
        let gauge = BacklogGauge::default();
        gauge.shift(Level::Drained, Level::Congested);
        assert_eq!((gauge.over_low(), gauge.over_high()), (1, 1));
        gauge.shift(Level::Congested, Level::Backlogged);
        assert_eq!((gauge.over_low(), gauge.over_high()), (1, 0));
        gauge.shift(Level::Backlogged, Level::Backlogged);
        assert_eq!((gauge.over_low(), gauge.over_high()), (1, 0));
        gauge.shift(Level::Backlogged, Level::Drained);
        assert_eq!((gauge.over_low(), gauge.over_high()), (0, 0));
    }
}
