//! Brokers: where publications get their place in a channel (seq, epoch) and where
//! history is kept. The in-memory broker is the default: one node, no configuration.
//! The Redis broker lets many processes share channels: any node's publication reaches
//! the subscribers of every node, and recovery works on whichever node a client
//! reconnects to.

pub(crate) mod history;
pub(crate) mod memory;
pub(crate) mod redis;

use crate::protocol::OpenObject;
use std::sync::Arc;

/// A publication as it travels from a broker to a node's fan-out, neutral of any
/// broker; framed once per node when it is delivered.
pub(crate) struct Publication {
    pub channel: Arc<str>,
    pub seq: u64,
    pub epoch: Arc<str>,
    /// The message without its position (an object left open for `seq` and `epoch`).
    pub body: OpenObject,
}

/// Told by the fan-out when a channel gains its first local subscriber and loses its
/// last, in the order it happens, so a remote broker listens only to what this node
/// needs.
pub(crate) trait Watcher: Send + Sync {
    fn watch(&self, channel: &Arc<str>);
    fn unwatch(&self, channel: &Arc<str>);
}
