//! A channel's recent publications, bounded by count and age, for recovery.

use crate::transport::wire::Frame;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes charged per entry on top of its text, for the overall memory bound.
pub(crate) const ENTRY_OVERHEAD: usize = 48;

pub(crate) struct Entry {
    pub seq: u64,
    pub text: Frame,
    pub at: Instant,
}

impl Entry {
    pub fn cost(&self) -> usize {
        self.text.text_len() + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
pub(crate) struct History {
    entries: VecDeque<Entry>,
}

impl History {
    /// Appends and trims to `size`; returns the bytes released by trimming.
    pub fn push(&mut self, entry: Entry, size: usize) -> usize {
        self.entries.push_back(entry);
        let mut freed = 0;
        while self.entries.len() > size {
            freed += self.pop_oldest().map_or(0, |e| e.cost());
        }
        freed
    }

    pub fn pop_oldest(&mut self) -> Option<Entry> {
        self.entries.pop_front()
    }

    pub fn oldest_at(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.at)
    }

    /// Drops entries older than `ttl`; returns the bytes released.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let mut freed = 0;
        while self
            .entries
            .front()
            .is_some_and(|e| now.duration_since(e.at) > ttl)
        {
            freed += self.pop_oldest().map_or(0, |e| e.cost());
        }
        freed
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The publications after `since_seq`, if history still holds every one of them
    /// up to `current_seq`; `None` when there is a gap.
    pub fn after(&self, since_seq: u64, current_seq: u64) -> Option<impl Iterator<Item = &Entry>> {
        if since_seq > current_seq {
            return None;
        }
        if since_seq < current_seq {
            let oldest = self.entries.front()?.seq;
            if oldest > since_seq + 1 {
                return None;
            }
        }
        Some(self.entries.iter().filter(move |e| e.seq > since_seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            text: Frame::text(&format!("m{seq}")),
            at: Instant::now(),
        }
    }

    #[test]
    fn keeps_the_last_n_and_finds_gaps() {
        let mut h = History::default();
        for seq in 1..=10 {
            h.push(entry(seq), 4);
        }
        let seqs = |it: Option<std::vec::IntoIter<u64>>| it.map(|i| i.collect::<Vec<_>>());
        let after = |s| {
            seqs(
                h.after(s, 10)
                    .map(|i| i.map(|e| e.seq).collect::<Vec<_>>().into_iter()),
            )
        };
        assert_eq!(after(6), Some(vec![7, 8, 9, 10]));
        assert_eq!(after(8), Some(vec![9, 10]));
        assert_eq!(after(10), Some(vec![]));
        assert_eq!(after(5), None, "seq 6 is gone");
        assert_eq!(after(11), None, "a position from the future");
    }

    #[test]
    fn expires_by_age() {
        let mut h = History::default();
        h.push(entry(1), 10);
        let later = Instant::now() + Duration::from_secs(5);
        assert!(h.expire(later, Duration::from_secs(1)) > 0);
        assert!(h.is_empty());
        assert!(h.after(0, 1).is_none());
    }
}
