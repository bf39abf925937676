//! Counters an operator reads from `/api/ws/stats`, `/metrics` and `herald_stats`.
//!
//! Each stats key is declared once, below: the macro makes the struct the stats JSON
//! serializes and the table `/metrics` reads, so a new key reaches both.

use crate::shared::Shared;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a value is exposed to Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only ever grows (exposed with the `_total` suffix).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One stats key as a metric: its field name (snake_case; the stats key is the same in
/// camelCase), its help text, and its kind.
#[derive(Debug)]
pub(crate) struct MetricInfo {
    pub field: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

/// A value that `/metrics` can read.
pub(crate) trait Reading {
    fn reading(&self) -> u64;
}

impl Reading for AtomicU64 {
    fn reading(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
}

impl Reading for u64 {
    fn reading(&self) -> u64 {
        *self
    }
}

/// Declares a struct of stats keys, each with a one-line doc (the metric's help) and
/// its kind, and `METRICS` / `for_each_metric` over them in declaration order.
macro_rules! stats_keys {
    (
        $(#[$meta:meta])*
        pub(crate) struct $name:ident: $ty:ty {
            $( #[doc = $help:literal] $kind:ident $field:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Default, Serialize, schemars::JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct $name {
            $( #[doc = $help] pub $field: $ty, )*
        }

        impl $name {
            pub const METRICS: &'static [MetricInfo] = &[
                $( MetricInfo { field: stringify!($field), help: $help, kind: Kind::$kind }, )*
            ];

            /// Calls `f` with each key's description and current value.
            pub fn for_each_metric(&self, mut f: impl FnMut(&'static MetricInfo, u64)) {
                let mut metrics = Self::METRICS.iter();
                $( f(metrics.next().expect("one entry per field"), self.$field.reading()); )*
            }
        }
    };
}

stats_keys! {
    /// Every counter is a stats key of the same name in camelCase.
    pub(crate) struct Counters: AtomicU64 {
        /// WebSocket clients ever connected.
        Counter total_connections,
        /// WebSocket clients connected now.
        Gauge active_connections,
        /// Sockets refused because max_connections sockets were open.
        Counter rejected_connections,
        /// Sockets refused by max_connections_per_ip.
        Counter rejected_per_ip,
        /// Sockets dropped before finishing their HTTP request or TLS handshake in time.
        Counter handshake_timeouts,
        /// Failed TLS handshakes.
        Counter tls_failures,
        /// Upgrades refused because of their Origin.
        Counter origin_rejected,
        /// Clients closed with 1008 at connect (bad or missing token, authorizer denial).
        Counter auth_failures,
        /// Subscribes refused.
        Counter forbidden,
        /// Client messages refused by the rate limit.
        Counter rate_limited,
        /// Clients closed for exceeding the rate limit.
        Counter rate_limit_closes,
        /// Messages written to clients.
        Counter messages_sent,
        /// Messages read from clients.
        Counter messages_received,
        /// Messages that could not be queued for a client (it was evicted or closing).
        Counter messages_dropped,
        /// Clients evicted with 1013, for any reason.
        Counter evictions,
        /// Clients closed for silence (1001).
        Counter heartbeat_timeouts,
        /// Client messages with bad JSON or shapes, answered with an error.
        Counter invalid_messages,
        /// Connections closed for breaking the framing rules (1002) or sending invalid UTF-8 (1007).
        Counter protocol_errors,
        /// Clients evicted because the server was over max_memory.
        Counter memory_evictions,
        /// Clients evicted because their socket took no byte for the heartbeat timeout.
        Counter write_stalls,
        /// Client frames over max_message_size (closed with 1009).
        Counter oversized_messages,
        /// Host publications dispatched.
        Counter publications,
        /// Host calls refused because the publish queue was full.
        Counter publish_queue_full,
        /// Channels not created because the channel table was full.
        Counter channels_rejected,
        /// Recoveries answered with recovered true.
        Counter recoveries,
        /// Recoveries answered with recovered false.
        Counter recoveries_failed,
    }
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

stats_keys! {
    /// What the server holds now, read when asked.
    pub(crate) struct Gauges: u64 {
        /// Sockets open now, HTTP included.
        Gauge open_sockets,
        /// Channels the hub holds.
        Gauge channels,
        /// Subscriptions over all channels.
        Gauge subscriptions,
        /// Bytes of history over all channels.
        Gauge history_bytes,
        /// Bytes waiting for clients, each subscriber's copy of a shared frame counted.
        Gauge queued_bytes,
        /// Queued bytes plus history: what max_memory bounds.
        Gauge memory_bytes,
        /// The max_memory bound.
        Gauge max_memory,
        /// Host calls waiting for the dispatcher (bounded by publish_queue_size).
        Gauge publish_queue_depth,
        /// Healthy clients over a quarter of their queue budget (what wait_drained waits for).
        Gauge backlogged_clients,
        /// Healthy clients holding more than half of their queue budget.
        Gauge congested_clients,
        /// Events waiting for the host.
        Gauge events_queued,
        /// Estimated bytes of the events waiting for the host.
        Gauge events_queued_bytes,
        /// Events dropped because the event queue was full.
        Counter events_dropped,
        /// Milliseconds since the server started.
        Gauge uptime_ms,
    }
}

impl Gauges {
    pub fn read(shared: &Shared) -> Gauges {
        let size = shared.fanout.size();
        Gauges {
            open_sockets: shared.sockets.open(),
            channels: size.channels as u64,
            subscriptions: size.subscriptions as u64,
            history_bytes: size.history_bytes as u64,
            queued_bytes: shared.memory.queued() as u64,
            memory_bytes: shared.memory.total() as u64,
            max_memory: shared.memory.limit() as u64,
            publish_queue_depth: shared.publish_queue_depth() as u64,
            backlogged_clients: shared.backlog.over_low() as u64,
            congested_clients: shared.backlog.over_high() as u64,
            events_queued: shared.events.len() as u64,
            events_queued_bytes: shared.events.bytes() as u64,
            events_dropped: shared.events.dropped(),
            uptime_ms: shared.now_ms(),
        }
    }
}

/// What `/api/ws/stats` and `herald_stats` answer: the counters plus what is held now.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Stats")]
pub(crate) struct Snapshot<'a> {
    #[serde(flatten)]
    pub counters: &'a Counters,
    #[serde(flatten)]
    pub gauges: Gauges,
    /// The host should slow down: a healthy client is over half of its queue budget,
    /// or the publish queue is over half full.
    pub backpressure: bool,
    pub clients: Vec<ClientSnapshot<'a>>,
    pub clients_listed: usize,
    pub port: u16,
    pub path: &'a str,
    pub version: &'static str,
    /// `{"kind":"memory"}`, or a shared broker's health.
    pub broker: BrokerStats,
}

/// Which broker, and for a shared one (Redis) its health.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum BrokerStats {
    Memory { kind: &'static str },
    Shared(crate::broker::Health),
}

/// One listed client.
#[derive(Serialize, schemars::JsonSchema)]
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

impl Shared {
    /// Counters, clients and channels as the stats JSON object.
    pub fn stats_json(&self) -> String {
        let now = self.now_ms();
        let mut clients = self.fanout.clients();
        clients.sort_by_key(|c| c.key);
        let listed: Vec<_> = clients
            .iter()
            .take(self.config.stats_client_limit)
            .map(|client| ClientSnapshot {
                id: &client.id,
                user_id: client.user_id.as_deref(),
                session_id: client.session_id.as_deref(),
                is_alive: client.is_alive(),
                state: client.state(),
                remote_addr: client.remote_addr.to_string(),
                subscriptions: client.subscription_count(),
                queued: client.queued(),
                queued_bytes: client.queued_bytes(),
                messages_sent: Counters::get(&client.messages_sent),
                idle_ms: now.saturating_sub(client.last_seen_ms()),
            })
            .collect();
        let snapshot = Snapshot {
            counters: &self.counters,
            gauges: Gauges::read(self),
            backpressure: crate::server::backpressure(self),
            clients_listed: listed.len(),
            clients: listed,
            port: self.port,
            path: &self.config.path,
            version: crate::version(),
            broker: match &self.broker {
                Some(broker) => BrokerStats::Shared(broker.health()),
                None => BrokerStats::Memory { kind: "memory" },
            },
        };
        serde_json::to_string(&snapshot).expect("stats always serialize")
    }
}
