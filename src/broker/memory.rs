//! The in-memory broker: each channel's log (seq, epoch, recent publications) kept on
//! this node. It lives inside the fan-out's channel entry, so sequencing a publication
//! and handing it to the local subscribers take one lock, as they always did: a
//! subscriber's replay and its live messages never overlap or leave a gap.

use super::history::{Entry, History};
use crate::protocol::{OpenObject, Position, Since};
use crate::transport::wire::Frame;
use std::sync::Arc;
use std::time::Instant;

/// Where a channel stands on this node and, with the memory broker, what it published
/// recently. With a remote broker it is the position of the last publication this node
/// delivered, and its history stays empty (the broker keeps it).
pub(crate) struct ChannelLog {
    pub seq: u64,
    pub epoch: Arc<str>,
    pub history: History,
}

impl ChannelLog {
    pub fn new(epoch: Arc<str>) -> ChannelLog {
        ChannelLog {
            seq: 0,
            epoch,
            history: History::default(),
        }
    }

    pub fn position(&self) -> Position {
        Position {
            seq: self.seq,
            epoch: self.epoch.to_string(),
        }
    }

    /// Sequences a publication: the next seq in this epoch, framed once with it.
    pub fn append(&mut self, body: OpenObject) -> Frame {
        self.seq += 1;
        body.close_with_position(self.seq, &self.epoch)
    }

    /// Keeps a publication for recovery; returns (bytes added, bytes freed by trimming).
    pub fn keep(&mut self, text: Frame, size: usize) -> (usize, usize) {
        let entry = Entry {
            seq: self.seq,
            text,
            at: Instant::now(),
        };
        let added = entry.cost();
        (added, self.history.push(entry, size))
    }

    /// What a client at `since` missed, if history still holds all of it.
    pub fn replay(&self, since: &Since) -> Option<Vec<Frame>> {
        if *since.epoch != *self.epoch {
            return None;
        }
        self.history
            .after(since.seq, self.seq)
            .map(|entries| entries.map(|entry| entry.text.clone()).collect())
    }
}
