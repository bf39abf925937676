//! Counters an operator reads from `/api/ws/stats` and `herald_stats`.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter is a stats key of the same name in camelCase.
#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
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

/// What `/api/ws/stats` and `herald_stats` answer: the counters plus what is held now.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot<'a> {
    #[serde(flatten)]
    pub counters: &'a Counters,
    pub clients: Vec<ClientSnapshot<'a>>,
    pub clients_listed: usize,
    pub open_sockets: u64,
    pub channels: usize,
    pub subscriptions: usize,
    pub history_bytes: usize,
    /// Bytes waiting for clients, each subscriber's copy of a shared frame counted.
    pub queued_bytes: usize,
    /// `queuedBytes` plus history: what `max_memory` bounds.
    pub memory_bytes: usize,
    pub max_memory: usize,
    pub events_queued: usize,
    pub events_queued_bytes: usize,
    pub events_dropped: u64,
    pub uptime_ms: u64,
    pub port: u16,
    pub path: &'a str,
    pub version: &'static str,
    /// `{"kind":"memory"}`, or the Redis broker's health.
    pub broker: BrokerStats,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum BrokerStats {
    Memory { kind: &'static str },
    Redis(crate::broker::redis::Health),
}

/// One listed client.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientSnapshot<'a> {
    pub id: &'a str,
    pub user_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub is_alive: bool,
    /// WebSocket readyState.
    pub state: u8,
    pub remote_addr: String,
    pub subscriptions: usize,
    pub queued: usize,
    pub queued_bytes: usize,
    pub messages_sent: u64,
    pub idle_ms: u64,
}
