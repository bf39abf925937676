//! The server-wide memory bound (`max_memory`): bytes waiting in client queues and
//! socket writers, plus history. Crossing it wakes the guard task, which evicts the
//! clients holding the most, then trims history.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

pub(crate) struct MemoryGauge {
    limit: usize,
    /// Bytes queued for clients. A frame shared by many subscribers counts once per
    /// subscriber that holds it: an upper bound of what is really held.
    queued: AtomicUsize,
    history: AtomicUsize,
    /// Set when the guard has been woken and has not run yet, so a flood of enqueues
    /// past the limit wakes it once.
    alarm: AtomicBool,
    pub over_limit: Notify,
}

impl MemoryGauge {
    pub fn new(limit: usize) -> MemoryGauge {
        MemoryGauge {
            limit,
            queued: AtomicUsize::new(0),
            history: AtomicUsize::new(0),
            alarm: AtomicBool::new(false),
            over_limit: Notify::new(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> usize {
        self.queued() + self.history.load(Ordering::Relaxed)
    }

    pub fn add_queued(&self, bytes: usize) {
        let queued = self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if queued + self.history.load(Ordering::Relaxed) > self.limit {
            self.raise_alarm();
        }
    }

    pub fn sub_queued(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// History keeps its own count under the fan-out's lock; this mirrors it.
    pub fn set_history(&self, bytes: usize) {
        self.history.store(bytes, Ordering::Relaxed);
        if self.total() > self.limit {
            self.raise_alarm();
        }
    }

    fn raise_alarm(&self) {
        if !self.alarm.swap(true, Ordering::AcqRel) {
            self.over_limit.notify_one();
        }
    }

    /// Called by the guard before it looks, so a new crossing wakes it again.
    pub fn clear_alarm(&self) {
        self.alarm.store(false, Ordering::Release);
    }
}
