//! The state every task of one server shares: configuration, clients and channels,
//! counters, the host's events and authorizer, limits; and the ids it hands out.

use crate::auth::AuthGate;
use crate::broker::SharedBroker;
use crate::client::{Client, ClientPolicy};
use crate::config::Config;
use crate::events::EventQueue;
use crate::fanout::Fanout;
use crate::limits::SocketLimits;
use crate::memory::MemoryGauge;
use crate::stats::Counters;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// State shared by every task of one server.
pub(crate) struct Shared {
    pub config: Config,
    pub fanout: Fanout,
    pub counters: Arc<Counters>,
    pub events: Arc<EventQueue>,
    pub auth: AuthGate,
    pub sockets: Arc<SocketLimits>,
    pub connection_closed: Notify,
    pub memory: Arc<MemoryGauge>,
    /// Healthy clients over their backlog watermarks: what flow control reads.
    pub backlog: Arc<crate::backlog::BacklogGauge>,
    /// Every client's queue limits and gauges, shared by all of them.
    pub client_policy: Arc<ClientPolicy>,
    /// The Redis broker; `None` with the in-memory one.
    pub broker: Option<Arc<dyn SharedBroker>>,
    /// Who is in each channel on this node.
    pub presence: crate::presence::Presence,
    pub latency: crate::metrics::LatencyHistogram,
    /// The depth of the host calls' queue (it holds the queue weakly, so it does not
    /// keep it open).
    pub(crate) publish_queue_depth: Box<dyn Fn() -> usize + Send + Sync>,
    pub(crate) started: Instant,
    pub(crate) stopping: AtomicBool,
    /// Set by a stop once the host calls made before it are dispatched: from then on
    /// every client, new ones included, is closed after its queue is written.
    pub(crate) closing_clients: AtomicBool,
    pub(crate) next_client: AtomicU64,
    pub(crate) id_seed: u64,
    pub(crate) port: u16,
}

impl Shared {
    /// Milliseconds since the server started: a cheap monotonic clock for liveness.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Host calls waiting for the dispatcher.
    pub fn publish_queue_depth(&self) -> usize {
        (self.publish_queue_depth)()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn is_closing_clients(&self) -> bool {
        self.closing_clients.load(Ordering::SeqCst)
    }

    pub fn new_client(
        &self,
        user_id: Option<&str>,
        session_id: Option<&str>,
        grants: Vec<String>,
        remote: SocketAddr,
    ) -> Arc<Client> {
        let key = self.next_client.fetch_add(1, Ordering::Relaxed);
        // A bijective mix of a random seed and a counter: unique and hard to guess.
        let id = match &self.broker {
            // Prefixed with the node, so a host on any node can route a `send` to it.
            Some(broker) => format!(
                "{}-{:016x}",
                broker.node_id(),
                splitmix64(self.id_seed ^ key)
            ),
            None => format!("{:016x}", splitmix64(self.id_seed ^ key)),
        };
        Client::new(
            key,
            id.into(),
            user_id.map(Arc::from),
            session_id.map(Arc::from),
            grants,
            remote,
            Arc::clone(&self.client_policy),
            self.now_ms(),
        )
    }
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(crate) fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
