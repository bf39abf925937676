//! Brokers: where publications get their place in a channel (seq, epoch) and where
//! history is kept. The in-memory broker is the default: one node, no configuration.
//! The Redis broker lets many processes share channels: any node's publication reaches
//! the subscribers of every node, and recovery works on whichever node a client
//! reconnects to.

pub(crate) mod history;
pub(crate) mod memory;
