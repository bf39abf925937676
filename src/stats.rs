//! Counters an operator reads from `/api/ws/stats` and `herald_stats`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(crate) struct Counters {
    pub total_connections: AtomicU64,
    pub active_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub rejected_per_ip: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub tls_failures: AtomicU64,
    pub origin_rejected: AtomicU64,
    pub auth_failures: AtomicU64,
    pub forbidden: AtomicU64,
    pub rate_limited: AtomicU64,
    pub rate_limit_closes: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    /// Messages that could not be queued for a client (it was evicted or closing).
    pub messages_dropped: AtomicU64,
    pub evictions: AtomicU64,
    pub heartbeat_timeouts: AtomicU64,
    pub invalid_messages: AtomicU64,
    /// Connections closed for breaking the framing rules (1002) or sending invalid UTF-8 (1007).
    pub protocol_errors: AtomicU64,
    /// Clients evicted because the server was over `max_memory`.
    pub memory_evictions: AtomicU64,
    /// Clients evicted because their socket took no byte for the heartbeat timeout.
    pub write_stalls: AtomicU64,
    pub oversized_messages: AtomicU64,
    pub publications: AtomicU64,
    pub publish_queue_full: AtomicU64,
    pub channels_rejected: AtomicU64,
    pub recoveries: AtomicU64,
    pub recoveries_failed: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
