//! Brokers: where publications get their place in a channel (seq, epoch) and where
//! history is kept. The in-memory broker is the default: one node, no configuration.
//! A shared broker (Redis) lets many processes share channels: any node's publication
//! reaches the subscribers of every node, and recovery works on whichever node a client
//! reconnects to.
//!
//! **Two shapes, on purpose.** A shared broker is a [`SharedBroker`] trait object: the
//! fan-out and the server know only the trait, so another engine (NATS, Postgres …) is
//! one new file here, plus its table in `BrokerConfig` and its arm in [`connect`].
//!
//! The in-memory broker is not behind that trait: its log ([`memory::ChannelLog`])
//! lives inside the fan-out's channel entry, so sequencing a publication, keeping it in
//! history and queueing it for the local subscribers happen under one lock, with no
//! future, no box and no second map. That one lock is what keeps a subscriber's replay
//! and its live messages from overlapping or leaving a gap, at single-node speed. A
//! shared broker cannot offer it (the order is decided elsewhere and answers come back
//! asynchronously), so for one the fan-out reconciles positions instead (pending
//! subscribes, gap checks).

pub(crate) mod history;
pub(crate) mod memory;
pub(crate) mod redis;

use crate::config::{BrokerConfig, HistoryConfig, JobsConfig};
use crate::error::Result;
use crate::jobs::JobUpdate;
use crate::protocol::{OpenObject, Position, Since};
use crate::shared::Shared;
use crate::transport::wire::Frame;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A publication as it travels from a broker to a node's fan-out, neutral of any
/// broker; framed once per node when it is delivered.
pub(crate) struct Publication {
    pub channel: Arc<str>,
    pub seq: u64,
    pub epoch: Arc<str>,
    /// The message without its position (an object left open for `seq` and `epoch`).
    pub body: OpenObject,
}

/// Stream entries as (seq, body without its position), oldest first.
pub(crate) type Entries = Vec<(u64, String)>;

/// What a subscribe with or without `since` reads from a shared broker.
pub(crate) struct Fetched {
    pub position: Position,
    /// Every publication after `since`, in order, when the broker still holds all of them.
    pub replay: Option<Entries>,
    /// For a session: its jobs as a JSON array (none when it has no job).
    pub jobs: Option<String>,
}

/// Broker health, for stats.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Health {
    pub kind: &'static str,
    pub node: String,
    pub connected: bool,
    pub reconnects: u64,
    pub publish_round_trip_us: u64,
    pub publish_errors: u64,
}

/// A shared broker's answer, some time later. Boxed: these calls cost a network round
/// trip, next to which one allocation is nothing; the per-message delivery path
/// ([`SharedBroker::run`] into the fan-out) makes no such call.
/// Presence members' JSON: (expired ones, total, at most the limit listed).
pub(crate) type MemberList = (Vec<String>, u64, Vec<String>);

/// Presence members' JSON after a refresh: (expired ones, this node's put back).
pub(crate) type Refreshed = (Vec<String>, Vec<String>);

pub(crate) type BrokerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A broker shared between nodes: what the fan-out and the server need of it.
pub(crate) trait SharedBroker: Send + Sync {
    /// Its name in stats and messages (`"redis"`).
    fn kind(&self) -> &'static str;

    /// This node's id in the broker; every client id of this node starts with it, so a
    /// host on any node can route a `send`.
    fn node_id(&self) -> &str;

    /// False while the node knows its link is down: host calls then fail at once.
    fn is_connected(&self) -> bool;

    /// The longest a host call waits for the broker to confirm it.
    fn timeout(&self) -> Duration;

    fn health(&self) -> Health;

    /// Sequences and publishes; Ok (with the publication's position) once the broker
    /// holds it, so a confirmed publication survives this node.
    /// With `job`, the session's job state changes in the same atomic step.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
        job: Option<&'a JobUpdate>,
    ) -> BrokerFuture<'a, Result<Position>>;

    /// A session's jobs and the position they hold at, as `GET /api/jobs/…` answers.
    fn jobs_json<'a>(&'a self, session: &'a str) -> BrokerFuture<'a, Result<String>>;

    /// `text` to every client of every node.
    fn broadcast<'a>(&'a self, text: &'a str) -> BrokerFuture<'a, Result<()>>;

    /// `text` to one client of node `node`; false when that node is not listening.
    fn send<'a>(
        &'a self,
        node: &'a str,
        client_id: &'a str,
        text: &'a str,
    ) -> BrokerFuture<'a, Result<bool>>;

    /// The channel's position and, with `since`, every publication after it (recovery).
    fn fetch<'a>(
        &'a self,
        channel: &'a str,
        since: Option<&'a Since>,
    ) -> BrokerFuture<'a, Result<Fetched>>;

    /// The channel's history as closed JSON texts, oldest first.
    fn history<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Result<Vec<Frame>>>;

    /// Told by the fan-out, in order, when a channel gains its first local subscriber:
    /// from then on the broker sends this node the channel's publications.
    fn watch(&self, channel: &Arc<str>);

    /// … and when it loses its last one.
    fn unwatch(&self, channel: &Arc<str>);

    /// Resolves true once publications of a watched channel reach this node (every
    /// earlier watch applied); false while the link is down.
    fn ready<'a>(&'a self, channel: &'a Arc<str>) -> BrokerFuture<'a, bool>;

    /// Presence: writes a member (joined, or changed its status) with a deadline
    /// `ttl_ms` from now, and announces `frame` to the other nodes.
    fn presence_set<'a>(
        &'a self,
        channel: &'a str,
        client_id: &'a str,
        member_json: &'a str,
        ttl_ms: u64,
        frame: &'a str,
    ) -> BrokerFuture<'a, Result<()>>;

    /// Presence: removes a member; announces `frame` only if it was still there.
    fn presence_remove<'a>(
        &'a self,
        channel: &'a str,
        client_id: &'a str,
        frame: &'a str,
    ) -> BrokerFuture<'a, Result<()>>;

    /// Presence: announces `frame` (a change with no member written) to the other nodes.
    fn presence_announce<'a>(
        &'a self,
        channel: &'a str,
        frame: &'a str,
    ) -> BrokerFuture<'a, Result<()>>;

    /// Presence: extends this node's `members` (client id, member JSON) and expires
    /// others' lapsed ones; returns (expired members' JSON, members put back).
    fn presence_refresh<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [(String, String)],
        ttl_ms: u64,
    ) -> BrokerFuture<'a, Result<Refreshed>>;

    /// Presence: (expired members' JSON, total, at most `limit` members' JSON).
    fn presence_list<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BrokerFuture<'a, Result<MemberList>>;

    /// Keeps the link until `shutdown`: hands every publication, broadcast and send to
    /// `shared.fanout`, follows watches, reconnects with backoff, and asks this node's
    /// clients to recover (`Fanout::resync_all`) when publications may have been missed.
    fn run(
        self: Arc<Self>,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
    ) -> BrokerFuture<'static, ()>;
}

/// Connects the configured shared broker, or `None` for the in-memory one. Fails when
/// the broker cannot be reached within its timeout: a node that started without its
/// broker would serve clients that hear nothing.
pub(crate) async fn connect(
    config: Option<&BrokerConfig>,
    history: &HistoryConfig,
    jobs: &JobsConfig,
    max_snapshot_bytes: usize,
    node_id: String,
    epoch_seed: u64,
) -> Result<Option<Arc<dyn SharedBroker>>> {
    let Some(redis) = config.and_then(|c| c.redis.as_ref()) else {
        return Ok(None);
    };
    let broker = redis::RedisBroker::connect(
        redis,
        history,
        jobs,
        max_snapshot_bytes,
        node_id,
        epoch_seed,
    )
    .await?;
    Ok(Some(broker))
}
