//! Server configuration: JSON with a default for every key; unknown keys are rejected
//! so a typo never silently falls back to a default.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

/// Everything a host can tune. Field names are the JSON keys.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one (read it back with `Server::port`).
    pub port: u16,
    /// WebSocket endpoint path.
    pub path: String,
    /// A protocol Ping is sent to every client this often.
    pub heartbeat_interval_ms: u64,
    /// A client from which nothing arrived for this long is closed.
    pub heartbeat_timeout_ms: u64,
    /// Largest accepted client message (and frame), in bytes; larger closes with 1009.
    pub max_message_size: usize,
    /// Messages queued per client before it is evicted as too slow.
    pub client_queue_size: usize,
    /// Open sockets (WebSocket and HTTP) at most; more are refused.
    pub max_connections: usize,
    /// Tokio worker threads; 0 = one per core, at most 4.
    pub worker_threads: usize,
    /// Host calls queued for the dispatcher at most; beyond it calls fail with `queue_full`.
    pub publish_queue_size: usize,
    /// Events queued for the host at most; beyond it events are dropped and counted.
    pub event_queue_size: usize,
    /// A socket that has not completed its HTTP request in this time is dropped.
    pub handshake_timeout_ms: u64,
    /// Distinct channels at most (sessions, users and plain channels).
    pub max_channels: usize,
    /// Clients listed individually in stats at most.
    pub stats_client_limit: usize,
    /// Per-channel history for recovery after reconnects.
    pub history: HistoryConfig,
    /// The state of AI jobs per session (snapshots for subscribers), and its bounds.
    pub jobs: JobsConfig,
    /// AI notifications: batching of token streams.
    pub ai: AiConfig,
    /// Who may connect and what they may subscribe to.
    pub auth: AuthConfig,
    /// Browser origins allowed to connect (exact match, e.g. "https://app.example.com");
    /// empty allows any. Clients that send no Origin header (non-browsers) are allowed.
    pub allowed_origins: Vec<String>,
    /// Open sockets per remote IP at most; 0 = no per-IP limit.
    pub max_connections_per_ip: usize,
    /// Channels one client may be subscribed to at once.
    pub max_subscriptions_per_client: usize,
    /// Per-client message rate limit.
    pub rate_limit: RateLimitConfig,
    /// Serve `wss://` with these PEM files.
    pub tls: Option<TlsConfig>,
    /// Bytes queued for one client at most, counting every way bytes wait for it (its
    /// queue, replays, pongs and error replies, the socket writer's buffer); over it the
    /// client is evicted with 1013. A replay larger than this is refused (`recovered:false`).
    pub client_queue_bytes: usize,
    /// SO_SNDBUF for client sockets, in bytes (the kernel doubles it); 0 keeps the
    /// system's autotuning. Bounds what a stalled client pins in the kernel, which is
    /// not counted in `client_queue_bytes`.
    pub socket_send_buffer: usize,
    /// Linux: a write pass sends to many client sockets with one io_uring system call
    /// (fewer system calls, and readers woken on this machine do not preempt the pass
    /// after every socket). Where the kernel refuses a ring, or with `false`, each socket
    /// gets its own `send`.
    pub io_uring: bool,
    /// Bytes for all client queues and history together; over it the clients with the
    /// largest queues are evicted first, then history is trimmed.
    pub max_memory: usize,
    /// Bearer token for `/api/ws/stats` (and every admin endpoint): when set, a request
    /// without `Authorization: Bearer <token>` gets 401. Unset, the endpoints are open in
    /// open mode and always answer 401 in secure mode.
    pub admin_token: Option<String>,
    /// Bytes of events queued for the host at most (with `event_queue_size`); beyond it
    /// events are dropped and counted.
    pub event_queue_bytes: usize,
    /// Files served over HTTP on the same port (not JSON: set by Rust hosts).
    #[serde(skip)]
    pub static_files: crate::assets::StaticFiles,
    /// Host HTTP routes on the same port (not JSON: set by Rust hosts).
    #[serde(skip)]
    pub http_routes: crate::host_routes::HttpRoutes,
    /// Serve WebSocket clients (the default). `false` starts an emitter: no socket, only
    /// a broker, for processes that publish and serve nobody (workers, jobs, scripts).
    pub listen: bool,
    /// Where publications are sequenced and kept: in this process (the default) or in
    /// Redis, shared by every node and emitter that names the same Redis and prefix.
    pub broker: Option<BrokerConfig>,
    /// Who is in each channel, with a status each client sets.
    pub presence: PresenceConfig,
}

/// Presence: every subscriber of a channel is a member, with a short status of its own.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Track members and answer presence queries; `false` turns presence off (queries
    /// and status changes get an error, no join or leave is sent).
    pub enabled: bool,
    /// With the Redis broker: a member whose node stopped refreshing it for this long
    /// (the node was killed or lost Redis) leaves. Nodes refresh every third of it.
    pub ttl_ms: u64,
    /// Members listed in one answer at most (the `total` counts them all).
    pub max_members: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            enabled: true,
            ttl_ms: 30_000,
            max_members: 1000,
        }
    }
}

/// The broker: `{"redis": {"url": "redis://127.0.0.1:6379", "prefix": "herald:"}}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    pub redis: Option<RedisConfig>,
}

/// A Redis broker.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS (the server's
    /// certificate checked against the system's roots, or `SSL_CERT_FILE`).
    pub url: String,
    /// Prefix of every key and PUB/SUB channel, so several apps can share one Redis.
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    /// How long a host call waits for Redis to confirm a publication (and how long a
    /// connection attempt may take); past it the call fails.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_redis_prefix() -> String {
    "herald:".into()
}

fn default_redis_timeout_ms() -> u64 {
    2000
}

/// Authentication and channel permissions. When any of `required`, a JWT key or a
/// host authorizer is in place, channel rules apply: `user:U` only for U itself, other
/// channels only as the token's `channels` claim, the authorizer, or `public_channels` allow.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Close clients that do not authenticate with 1008 right after the handshake.
    pub required: bool,
    /// HS256 secret.
    pub jwt_secret: Option<String>,
    /// RS256 or ES256 public key, PEM.
    pub jwt_public_key: Option<String>,
    /// Expected `iss`, when set.
    pub jwt_issuer: Option<String>,
    /// Expected `aud`, when set.
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub jwt_leeway_s: u64,
    /// Channel patterns any authenticated client may subscribe to ("news", "public:*").
    pub public_channels: Vec<String>,
    /// How long the host authorizer may take before the request is denied.
    pub authorizer_timeout_ms: u64,
}

/// A token bucket per client.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained client messages per second; 0 turns the limit off.
    pub messages_per_second: u32,
    /// Messages allowed in a burst.
    pub burst: u32,
    /// Refused messages within 10 seconds before the client is closed with 1008.
    pub max_violations: u32,
}

/// PEM files for `wss://`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: String,
    pub key: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: false,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_s: 30,
            public_channels: Vec::new(),
            authorizer_timeout_ms: 5000,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            messages_per_second: 50,
            burst: 100,
            max_violations: 50,
        }
    }
}

/// Bounded per-channel history.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Publications kept per channel; 0 turns history off.
    pub size: usize,
    /// Publications older than this are dropped.
    pub ttl_ms: u64,
    /// Bytes of history kept across all channels; the oldest go first.
    pub max_bytes: usize,
}

/// What is kept of each session's AI jobs (state, progress, streamed text, outcome).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// A job is kept this long after it ends (complete, error, cancelled).
    pub ttl_ms: u64,
    /// Jobs kept per session; beyond it the oldest ended (else oldest) goes.
    pub max_per_session: usize,
    /// Bytes of streamed text kept per job; beyond it the text stops growing and the
    /// job is marked `truncated`.
    pub max_text_bytes: usize,
    /// Bytes of job state across all sessions on this node (with the memory broker);
    /// beyond it the oldest ended jobs go first.
    pub max_bytes: usize,
}

/// How AI notifications are sent.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AiConfig {
    /// A job's `ai_delta`s made within this many ms go out as one (text concatenated),
    /// for every subscriber; 0 (the default) sends each at once. Memory broker only.
    pub delta_rollup_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            ttl_ms: 60 * 60 * 1000,
            max_per_session: 16,
            max_text_bytes: 256 * 1024,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 3001,
            path: "/ws".into(),
            heartbeat_interval_ms: 30_000,
            heartbeat_timeout_ms: 60_000,
            max_message_size: 64 * 1024,
            client_queue_size: 8192,
            max_connections: 100_000,
            worker_threads: 0,
            publish_queue_size: 65_536,
            event_queue_size: 10_000,
            handshake_timeout_ms: 10_000,
            max_channels: 100_000,
            stats_client_limit: 1000,
            history: HistoryConfig::default(),
            jobs: JobsConfig::default(),
            ai: AiConfig::default(),
            auth: AuthConfig::default(),
            allowed_origins: Vec::new(),
            max_connections_per_ip: 0,
            max_subscriptions_per_client: 1024,
            rate_limit: RateLimitConfig::default(),
            tls: None,
            client_queue_bytes: 1024 * 1024,
            socket_send_buffer: 128 * 1024,
            io_uring: true,
            max_memory: 1024 * 1024 * 1024,
            admin_token: None,
            event_queue_bytes: 16 * 1024 * 1024,
            static_files: Default::default(),
            listen: true,
            broker: None,
            http_routes: Default::default(),
            presence: PresenceConfig::default(),
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            size: 256,
            ttl_ms: 10 * 60 * 1000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;
const HOUR_MS: u64 = 60 * 60 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// Queue lengths and counts: 2^24, far beyond any real deployment of one process and far
/// below what tokio's channels (usize::MAX >> 3) or an allocation would refuse.
const MAX_COUNT: u64 = 1 << 24;
/// Messages per second (and burst, violations) of one client.
const MAX_RATE: u64 = 1_000_000;

/// One numeric key and its accepted range, inclusive.
struct Bound {
    key: &'static str,
    value: u64,
    min: u64,
    max: u64,
}

impl Bound {
    fn new(key: &'static str, value: impl TryInto<u64>, min: u64, max: u64) -> Bound {
        // A usize beyond u64 cannot happen on any supported target; saturate regardless.
        let value = value.try_into().unwrap_or(u64::MAX);
        Bound {
            key,
            value,
            min,
            max,
        }
    }

    fn check(&self) -> Result<()> {
        if (self.min..=self.max).contains(&self.value) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "invalid config: {} must be between {} and {}, got {}",
                self.key, self.min, self.max, self.value
            ),
        ))
    }
}

impl Config {
    /// Parses a JSON object; missing keys take their defaults. Empty text means all defaults.
    pub fn from_json(json: &str) -> Result<Config> {
        if json.trim().is_empty() {
            return Ok(Config::default());
        }
        let invalid = |message: String| Error::new(ErrorKind::InvalidConfig, message);
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let config: Config = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            // Name the key whose value serde refused ("." is the top level).
            match e.path().to_string().as_str() {
                "." => invalid(format!("invalid config: {}", e.inner())),
                key => invalid(format!("invalid config: {key}: {}", e.inner())),
            }
        })?;
        deserializer
            .end()
            .map_err(|e| invalid(format!("invalid config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that serde cannot: every number within its range, and the
    /// relations between keys.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::new(ErrorKind::InvalidConfig, msg));
        if self.host.parse::<std::net::IpAddr>().is_err() && self.host != "localhost" {
            return fail(format!(
                "invalid config: host {:?} is not an IP address or \"localhost\"",
                self.host
            ));
        }
        if !self.path.starts_with('/') || self.path.contains(['?', '#']) {
            return fail(format!(
                "invalid config: path {:?} must start with '/' and have no query",
                self.path
            ));
        }
        if self.path == "/healthz"
            || self.path == "/api/ws/stats"
            || self.path.starts_with("/api/presence/")
        {
            return fail(format!(
                "invalid config: path {:?} is taken by an HTTP endpoint",
                self.path
            ));
        }
        for bound in self.numeric_bounds() {
            bound.check()?;
        }
        if self.heartbeat_timeout_ms < self.heartbeat_interval_ms {
            return fail(
                "invalid config: heartbeat_timeout_ms must be >= heartbeat_interval_ms".into(),
            );
        }
        if self.rate_limit.messages_per_second > 0 && self.rate_limit.burst == 0 {
            return fail(
                "invalid config: rate_limit.burst must be > 0 when the limit is on".into(),
            );
        }
        if self.history.size > 0 && self.history.ttl_ms == 0 {
            return fail("invalid config: history.ttl_ms must be > 0 when history is on".into());
        }
        if self.max_memory < self.client_queue_bytes {
            return fail("invalid config: max_memory must be >= client_queue_bytes".into());
        }
        if let Some(redis) = self.redis() {
            if !redis.url.starts_with("redis://") && !redis.url.starts_with("rediss://") {
                return fail(
                    "invalid config: broker.redis.url must start with redis:// or rediss:// (TLS)"
                        .into(),
                );
            }
            if redis.prefix.len() > 64 || redis.prefix.chars().any(char::is_control) {
                return fail("invalid config: broker.redis.prefix must be at most 64 characters, none a control character".into());
            }
            if !(1..=60_000).contains(&redis.timeout_ms) {
                return fail(format!(
                    "invalid config: broker.redis.timeout_ms must be between 1 and 60000, got {}",
                    redis.timeout_ms
                ));
            }
        } else if self.broker.is_some() {
            return fail("invalid config: broker must name a broker (\"redis\")".into());
        }
        if self.ai.delta_rollup_ms > 0 && self.redis().is_some() {
            // With Redis a host call returns once Redis holds the publication; a delta
            // held back for a window could not keep that promise.
            return fail(
                "invalid config: ai.delta_rollup_ms is not supported with broker.redis in this version"
                    .into(),
            );
        }
        if !self.listen && self.redis().is_none() {
            // An emitter without a broker would publish to nobody.
            return fail("invalid config: listen: false needs a broker (broker.redis)".into());
        }
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            // An empty or short token is a typo or a guessable secret, never intended.
            return fail("invalid config: admin_token must be at least 16 characters".into());
        }
        Ok(())
    }

    /// Every numeric key with its accepted range. The upper bounds keep each value far
    /// from what would overflow a timer, an allocation or a channel's capacity.
    fn numeric_bounds(&self) -> [Bound; 32] {
        let auth = &self.auth;
        let rate = &self.rate_limit;
        let history = &self.history;
        let jobs = &self.jobs;
        [
            Bound::new(
                "heartbeat_interval_ms",
                self.heartbeat_interval_ms,
                1,
                DAY_MS,
            ),
            Bound::new("heartbeat_timeout_ms", self.heartbeat_timeout_ms, 1, DAY_MS),
            Bound::new("max_message_size", self.max_message_size, 1, 64 * MIB),
            Bound::new("client_queue_size", self.client_queue_size, 1, MAX_COUNT),
            Bound::new("max_connections", self.max_connections, 1, MAX_COUNT),
            Bound::new("worker_threads", self.worker_threads, 0, 256),
            Bound::new("publish_queue_size", self.publish_queue_size, 1, MAX_COUNT),
            Bound::new("event_queue_size", self.event_queue_size, 1, MAX_COUNT),
            Bound::new(
                "handshake_timeout_ms",
                self.handshake_timeout_ms,
                1,
                HOUR_MS,
            ),
            Bound::new("max_channels", self.max_channels, 1, MAX_COUNT),
            Bound::new("stats_client_limit", self.stats_client_limit, 0, MAX_COUNT),
            Bound::new("history.size", history.size, 0, MAX_COUNT),
            Bound::new("history.ttl_ms", history.ttl_ms, 0, 7 * DAY_MS),
            Bound::new("history.max_bytes", history.max_bytes, 0, TIB),
            Bound::new("jobs.ttl_ms", jobs.ttl_ms, 1, 7 * DAY_MS),
            Bound::new("jobs.max_per_session", jobs.max_per_session, 1, 4096),
            Bound::new("jobs.max_text_bytes", jobs.max_text_bytes, 0, 64 * MIB),
            Bound::new("jobs.max_bytes", jobs.max_bytes, 0, TIB),
            Bound::new("ai.delta_rollup_ms", self.ai.delta_rollup_ms, 0, 60_000),
            Bound::new("auth.jwt_leeway_s", auth.jwt_leeway_s, 0, DAY_MS / 1000),
            Bound::new(
                "auth.authorizer_timeout_ms",
                auth.authorizer_timeout_ms,
                1,
                HOUR_MS,
            ),
            Bound::new(
                "max_connections_per_ip",
                self.max_connections_per_ip,
                0,
                MAX_COUNT,
            ),
            Bound::new(
                "max_subscriptions_per_client",
                self.max_subscriptions_per_client,
                1,
                MAX_COUNT,
            ),
            Bound::new(
                "rate_limit.messages_per_second",
                rate.messages_per_second,
                0,
                MAX_RATE,
            ),
            Bound::new("rate_limit.burst", rate.burst, 0, MAX_RATE),
            Bound::new(
                "rate_limit.max_violations",
                rate.max_violations,
                0,
                MAX_RATE,
            ),
            Bound::new("client_queue_bytes", self.client_queue_bytes, KIB, 4 * GIB),
            // SO_SNDBUF is a C int that the kernel doubles.
            Bound::new("socket_send_buffer", self.socket_send_buffer, 0, 64 * MIB),
            Bound::new("max_memory", self.max_memory, MIB, TIB),
            Bound::new("event_queue_bytes", self.event_queue_bytes, KIB, 4 * GIB),
            Bound::new("presence.ttl_ms", self.presence.ttl_ms, 100, DAY_MS),
            Bound::new(
                "presence.max_members",
                self.presence.max_members,
                1,
                100_000,
            ),
        ]
    }

    /// The Redis broker's settings, when one is configured.
    pub fn redis(&self) -> Option<&RedisConfig> {
        self.broker.as_ref().and_then(|b| b.redis.as_ref())
    }

    pub(crate) fn worker_thread_count(&self) -> usize {
        if self.worker_threads > 0 {
            self.worker_threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_partial_configs_take_defaults() {
        assert_eq!(Config::from_json("").unwrap(), Config::default());
        let c = Config::from_json(r#"{"port":0,"history":{"size":4}}"#).unwrap();
        assert_eq!(c.port, 0);
        assert_eq!(c.history.size, 4);
        assert_eq!(c.history.ttl_ms, HistoryConfig::default().ttl_ms);
        assert_eq!(c.host, "127.0.0.1");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let err = Config::from_json(r#"{"prot":1}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("prot"), "{}", err.message());
        for bad in [
            r#"{"path":"ws"}"#,
            r#"{"host":"not a host"}"#,
            r#"{"heartbeat_interval_ms":0}"#,
            r#"{"heartbeat_interval_ms":10,"heartbeat_timeout_ms":5}"#,
            r#"{"client_queue_size":0}"#,
            r#"{"port":70000}"#,
            r#"[1]"#,
        ] {
            assert!(Config::from_json(bad).is_err(), "{bad} accepted");
        }
    }

    /// Sets `key` (dotted for nested objects) to a raw JSON number in an empty config.
    fn with_number(key: &str, number: &str) -> String {
        match key.split_once('.') {
            Some((outer, inner)) => format!(r#"{{"{outer}":{{"{inner}":{number}}}}}"#),
            None => format!(r#"{{"{key}":{number}}}"#),
        }
    }

    fn invalid_config_message(json: &str) -> String {
        let err = Config::from_json(json).expect_err(json);
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
        err.message().to_string()
    }

    #[test]
    fn every_numeric_key_has_a_range_that_names_it() {
        let bounds = Config::default().numeric_bounds();
        for bound in &bounds {
            let key = bound.key;
            // The defaults are in range, and so are both ends.
            assert!(bound.check().is_ok(), "default of {key} out of range");
            for ok in [bound.min, bound.max] {
                let json = with_number(key, &ok.to_string());
                let config = Config::from_json(&json);
                // An end may still fail a relation with a default (e.g. max_memory >=
                // client_queue_bytes); it must not fail its own range.
                if let Err(e) = config {
                    assert!(!e.message().contains("must be between"), "{json}: {e}");
                }
            }
            let mut outside = vec![bound.max + 1, u64::MAX];
            if bound.min > 0 {
                outside.push(bound.min - 1);
            }
            for value in outside {
                let json = with_number(key, &value.to_string());
                let message = invalid_config_message(&json);
                assert!(message.contains(key), "{json}: {message}");
            }
            // Negative, fractional and overlong numbers are refused by the type, by name.
            let leaf = key.rsplit('.').next().unwrap();
            for bad in [
                "-1",
                "1.5",
                "1e400",
                "18446744073709551616",
                "\"7\"",
                "null",
            ] {
                let json = with_number(key, bad);
                let message = invalid_config_message(&json);
                assert!(message.contains(leaf), "{json}: {message}");
            }
        }
    }

    #[test]
    fn every_numeric_key_is_in_the_table() {
        // Serializing the defaults lists every key; each number must have a bound.
        let value = serde_json::to_value(Config::default()).unwrap();
        let mut numeric = Vec::new();
        for (key, v) in value.as_object().unwrap() {
            match v {
                serde_json::Value::Number(_) if key != "port" => numeric.push(key.clone()),
                serde_json::Value::Object(inner) => numeric.extend(
                    inner
                        .iter()
                        .filter(|(_, v)| v.is_number())
                        .map(|(k, _)| format!("{key}.{k}")),
                ),
                _ => {}
            }
        }
        let bounded: Vec<&str> = Config::default()
            .numeric_bounds()
            .iter()
            .map(|b| b.key)
            .collect();
        for key in &numeric {
            assert!(bounded.contains(&key.as_str()), "{key} has no range");
        }
        assert_eq!(numeric.len(), bounded.len());
    }

    #[test]
    fn the_overflow_of_finding_9_is_an_invalid_config() {
        let message = invalid_config_message(r#"{"publish_queue_size":18446744073709551615}"#);
        assert_eq!(
            message,
            "invalid config: publish_queue_size must be between 1 and 16777216, \
             got 18446744073709551615"
        );
        let message = invalid_config_message(r#"{"port":70000}"#);
        assert!(message.starts_with("invalid config: port: "), "{message}");
        let message = invalid_config_message(r#"{"rate_limit":{"burst":4294967296}}"#);
        assert!(
            message.starts_with("invalid config: rate_limit.burst: "),
            "{message}"
        );
    }

    #[test]
    fn relations_between_keys() {
        for (json, key) in [
            (
                r#"{"heartbeat_interval_ms":10,"heartbeat_timeout_ms":5}"#,
                "heartbeat_timeout_ms",
            ),
            (r#"{"rate_limit":{"burst":0}}"#, "rate_limit.burst"),
            (r#"{"history":{"ttl_ms":0}}"#, "history.ttl_ms"),
            (
                r#"{"max_memory":1048576,"client_queue_bytes":2097152}"#,
                "max_memory",
            ),
            (r#"{"admin_token":""}"#, "admin_token"),
            (r#"{"admin_token":"short"}"#, "admin_token"),
        ] {
            let message = invalid_config_message(json);
            assert!(message.contains(key), "{json}: {message}");
        }
        // Off switches make their partners free.
        for ok in [
            r#"{"rate_limit":{"messages_per_second":0,"burst":0}}"#,
            r#"{"history":{"size":0,"ttl_ms":0}}"#,
            r#"{"worker_threads":0,"max_connections_per_ip":0,"socket_send_buffer":0}"#,
        ] {
            Config::from_json(ok).expect(ok);
        }
    }

    #[test]
    fn trailing_text_and_unknown_nested_keys_are_refused() {
        assert!(invalid_config_message(r#"{"port":0} x"#).contains("trailing"));
        let message = invalid_config_message(r#"{"history":{"sise":1}}"#);
        assert!(message.contains("sise"), "{message}");
    }
}
