//! The Redis broker: channels shared by every node and emitter that use the same Redis
//! and key prefix.
//!
//! - **Sequencing** is one Lua script per publication, atomic in Redis: the channel's
//!   seq (`HINCRBY`), its epoch (created when missing, so a Redis that lost its data
//!   gives every channel a new epoch), the stream entry (`XADD` with id `seq-0`,
//!   `MAXLEN ~ history.size`, the stream expiring `history.ttl_ms` after the last
//!   publication) and the `PUBLISH` to the nodes, in that order.
//! - **Fan-out**: each node subscribes (PUB/SUB) only to the channels its local clients
//!   are in, and unsubscribes when the last one leaves; one Redis message per
//!   publication per node, framed once on that node.
//! - **Recovery** reads the stream (`XRANGE` from `since + 1`), on whichever node.
//! - **Host calls** wait for Redis to confirm, at most `timeout_ms`, or fail at once
//!   while the link is down: an error, never OK-and-lost.
//! - **The link** (one command connection, one PUB/SUB connection) reconnects with
//!   backoff and resubscribes; the clients of this node are then asked to reconnect
//!   and recover, since publications may have been missed meanwhile.
//! - **AUTH and TLS** come with the URL (`redis://user:password@…`, `rediss://…`),
//!   handled by redis-rs (TLS with rustls, Redis's certificate checked against the
//!   system's roots or `SSL_CERT_FILE`). Credentials Redis refuses fail the start as a
//!   configuration error.

use super::{
    BrokerFuture, Entries, Fetched, Health, MemberList, Publication, Refreshed, SharedBroker,
};
use crate::config::{HistoryConfig, JobsConfig, RedisConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::{Job, JobStatus, JobUpdate};
use crate::protocol::{OpenObject, Position, Since};
use crate::shared::Shared;
use crate::transport::wire::Frame;
use crate::transport::write_pass;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{MultiplexedConnection, PubSub, PubSubSink};
use redis::{AsyncConnectionConfig, Script, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Most PUB/SUB messages delivered in one write pass.
const RECEIVE_BATCH: usize = 256;
/// A channel's seq and epoch outlive its history by this much at least, so a client
/// that comes back within a day learns its position is gone (a new epoch) rather than
/// meeting a seq that restarted from 1.
const META_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// KEYS: meta, stream, jobs (hash), job ids (sorted set). ARGV: topic, body, history
/// size, ttl ms, meta ttl ms, epoch candidate, then the job update (see [`JOB_LUA`]):
/// kind ('' for none), job id, payload, delta text, max text bytes, max jobs per
/// session, jobs ttl ms, text key prefix. A new epoch drops any stream left from an
/// older one, so stream ids (`seq-0`) always grow. The job's state changes in the same
/// script as the seq, so a snapshot read with a seq is the state at exactly that seq.
const PUBLISH_LUA: &str = r"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[6]) == 1 then
  redis.call('DEL', KEYS[2])
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], string.format('%d-0', seq), 'b', ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if ARGV[7] ~= '' then
  update_job(KEYS[3], KEYS[4], ARGV[7], ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11]),
    tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[14], tonumber(ARGV[5]))
end
redis.call('PUBLISH', ARGV[1], string.format('%d:', seq) .. epoch .. ':' .. ARGV[2])
return {seq, epoch}
";

/// The job rules of `jobs.rs`, in Redis: a hash per session (`<jobId>\n<field>`: state,
/// task, progress, outcome, truncated, startedAt, endedAt; the implicit job's id is
/// ''), a sorted set of its job ids in creation order, and a string per job for its text
/// (APPEND, so a delta costs its own length). Jobs ended `ttl` ago are dropped here
/// and left out of snapshots; the keys expire `ttl` after the last job ended (a day
/// while one runs).
const JOB_LUA: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local FIELDS = {'state', 'task', 'progress', 'outcome', 'truncated', 'startedAt', 'endedAt'}
local function forget(hash, ids, textprefix, id)
  local f = id .. '\n'
  for _, name in ipairs(FIELDS) do redis.call('HDEL', hash, f .. name) end
  redis.call('ZREM', ids, id)
  redis.call('DEL', textprefix .. id)
end
-- The keys live `ttl` after the last job ended, and at least `longttl` while one runs.
local function refresh(hash, ids, textprefix, ttl, longttl)
  local running = false
  local all = redis.call('ZRANGE', ids, 0, -1)
  for _, job in ipairs(all) do
    if redis.call('HGET', hash, job .. '\nstate') == 'running' then running = true end
  end
  local keep = ttl
  if running then keep = math.max(ttl, longttl) end
  redis.call('PEXPIRE', hash, keep)
  redis.call('PEXPIRE', ids, keep)
  for _, job in ipairs(all) do redis.call('PEXPIRE', textprefix .. job, keep) end
end
-- Deltas and progress, the stream's bulk, cost a few commands; a job's start, its end
-- and a new job also drop expired jobs and refresh the keys' expiry.
local function update_job(hash, ids, kind, id, payload, text, maxtext, maxjobs, ttl, textprefix, longttl)
  local now = now_ms()
  local f = id .. '\n'
  local textkey = textprefix .. id
  local structural = kind ~= 'delta' and kind ~= 'progress'
  local exists = redis.call('ZSCORE', ids, id)
  if structural or not exists then
    for _, old in ipairs(redis.call('ZRANGE', ids, 0, -1)) do
      local ended = redis.call('HGET', hash, old .. '\nendedAt')
      if ended and tonumber(ended) + ttl <= now then forget(hash, ids, textprefix, old) end
    end
    exists = redis.call('ZSCORE', ids, id)
  end
  if not exists then
    structural = true
    if redis.call('ZCARD', ids) >= maxjobs then
      local victim, first = nil, nil
      for _, old in ipairs(redis.call('ZRANGE', ids, 0, -1)) do
        local ended = tonumber(redis.call('HGET', hash, old .. '\nendedAt') or '')
        if ended and (not first or ended < first) then victim, first = old, ended end
      end
      forget(hash, ids, textprefix, victim or redis.call('ZRANGE', ids, 0, 0)[1])
    end
    -- Scored by creation order (start times may tie within a millisecond).
    local top = redis.call('ZRANGE', ids, -1, -1, 'WITHSCORES')
    redis.call('ZADD', ids, (tonumber(top[2]) or 0) + 1, id)
    redis.call('HSET', hash, f .. 'state', 'running', f .. 'startedAt', now)
  end
  if kind == 'start' then
    for _, name in ipairs(FIELDS) do redis.call('HDEL', hash, f .. name) end
    redis.call('DEL', textkey)
    redis.call('HSET', hash, f .. 'state', 'running', f .. 'startedAt', now, f .. 'task', payload)
  elseif kind == 'progress' then
    redis.call('HSET', hash, f .. 'progress', payload)
  elseif kind == 'delta' then
    local have = redis.call('STRLEN', textkey)
    local room = maxtext - have
    if #text <= room then
      redis.call('APPEND', textkey, text)
    else
      local cut = math.max(room, 0)
      -- never split a UTF-8 sequence: back off over continuation bytes
      while cut > 0 do
        local b = string.byte(text, cut + 1)
        if b < 128 or b >= 192 then break end
        cut = cut - 1
      end
      if cut > 0 then redis.call('APPEND', textkey, string.sub(text, 1, cut)) end
      redis.call('HSET', hash, f .. 'truncated', '1')
    end
    if have == 0 and not structural then
      -- A text key made by this APPEND: it expires with the session's others.
      local pttl = redis.call('PTTL', hash)
      if pttl > 0 then redis.call('PEXPIRE', textkey, pttl) end
    end
  else
    redis.call('HSET', hash, f .. 'state', kind, f .. 'outcome', payload, f .. 'endedAt', now)
  end
  if structural then refresh(hash, ids, textprefix, ttl, longttl) end
end
";

/// KEYS: meta, stream, jobs, job ids. ARGV: since seq ('' for none), most entries to
/// replay, epoch candidate, meta ttl ms, text key prefix ('' for no jobs), jobs ttl ms.
/// Returns {seq, epoch, entries, jobs}: jobs as {id, fields…, text} lists, the state at
/// `seq`.
const RECOVER_LUA: &str = r"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[3]) == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local meta = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local seq = tonumber(meta[1] or '0')
local entries = {}
if ARGV[1] ~= '' then
  local since = tonumber(ARGV[1])
  if since < seq and seq - since <= tonumber(ARGV[2]) then
    entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', since + 1), '+', 'COUNT', seq - since)
  end
end
local jobs = {}
if ARGV[5] ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl = tonumber(ARGV[6])
  for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    local f = id .. '\n'
    local v = redis.call('HMGET', KEYS[3], f .. 'state', f .. 'task', f .. 'progress',
      f .. 'outcome', f .. 'truncated', f .. 'startedAt', f .. 'endedAt')
    if v[1] and not (v[7] and tonumber(v[7]) + ttl <= now) then
      local job = {id}
      for i = 1, 7 do job[i + 1] = v[i] or '' end
      job[9] = redis.call('GET', ARGV[5] .. id) or ''
      table.insert(jobs, job)
    end
  end
end
return {seq, meta[2], entries, jobs}
";

/// KEYS: meta, stream. ARGV: most entries. Returns {epoch or '', newest first}.
const HISTORY_LUA: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {'', {}} end
return {epoch, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[1])}
";

/// Redis's clock in ms, so every node's deadlines count on one clock.
const NOW_LUA: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Removes the members whose deadline passed; `gone` holds their JSON. Expects `now`.
const SWEEP_LUA: &str = "local gone = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
if #expired > 0 then
  gone = redis.call('HMGET', KEYS[1], unpack(expired))
  redis.call('HDEL', KEYS[1], unpack(expired))
  redis.call('ZREM', KEYS[2], unpack(expired))
end
";

/// KEYS: members, deadlines. ARGV: client id, member JSON, ttl ms, topic, announcement.
const PRESENCE_SET_LUA: &str = "
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// KEYS: members, deadlines. ARGV: client id, topic, announcement (sent only when the
/// member was there, so an expiry and a late leave do not both announce it).
const PRESENCE_REMOVE_LUA: &str = "
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed
";

/// KEYS: members, deadlines. ARGV: ttl ms, then client id and member JSON pairs.
/// Extends this node's members' deadlines first (so a node that was late does not
/// sweep its own), putting back any that were swept meanwhile; the caller sweeps after.
/// Expects `now`; leaves `rejoined` (the members put back).
const PRESENCE_REFRESH_LUA: &str = "
local ttl = tonumber(ARGV[1])
local rejoined = {}
for i = 2, #ARGV, 2 do
  if redis.call('ZADD', KEYS[2], now + ttl, ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    rejoined[#rejoined + 1] = ARGV[i + 1]
  end
end
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
";

/// KEYS: members, deadlines. ARGV: most members listed. Sweeps, then returns
/// {swept members, total, listed members}.
const PRESENCE_LIST_LUA: &str = "
local total = redis.call('ZCARD', KEYS[2])
local members = {}
local limit = tonumber(ARGV[1])
if limit > 0 and total > 0 then
  local ids = redis.call('ZRANGE', KEYS[2], 0, limit - 1)
  members = redis.call('HMGET', KEYS[1], unpack(ids))
end
return {gone, total, members}
";

/// A presence change on a channel's topic: `P:<node>:<frame>`, told apart from a
/// publication (`<seq>:…`) by its first byte.
const PRESENCE_TAG: &str = "P:";

enum Control {
    /// A local channel gained its first subscriber: subscribe to its topic.
    Watch(Arc<str>),
    /// It lost its last one.
    Unwatch(Arc<str>),
    /// Answered true once the topic's subscription is live (after every earlier Watch).
    Ready(Arc<str>, oneshot::Sender<bool>),
}

pub(crate) struct RedisBroker {
    client: redis::Client,
    prefix: String,
    node_id: String,
    timeout: Duration,
    history_size: usize,
    ttl_ms: u64,
    jobs: JobsConfig,
    /// Largest jobs snapshot sent to one client.
    max_snapshot_bytes: usize,
    command: RwLock<Option<MultiplexedConnection>>,
    control: mpsc::UnboundedSender<Control>,
    control_rx: Mutex<Option<mpsc::UnboundedReceiver<Control>>>,
    /// The PUB/SUB connection `connect` opened, until `run` takes it over.
    first_link: Mutex<Option<PubSub>>,
    /// Woken when a command found the connection broken, so the link reconnects now.
    link_lost: Notify,
    connected: AtomicBool,
    reconnects: AtomicU64,
    publish_rtt_us: AtomicU64,
    publish_errors: AtomicU64,
    epoch_seed: u64,
    epochs: AtomicU64,
    publish_script: Script,
    recover_script: Script,
    history_script: Script,
    presence_set_script: Script,
    presence_remove_script: Script,
    presence_refresh_script: Script,
    presence_list_script: Script,
}

fn unavailable(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("redis broker: {what}"))
}

/// A connection's failure: credentials Redis refused are a configuration error (trying
/// again cannot help); anything else leaves the broker unavailable for now.
fn link_error(e: redis::RedisError) -> Error {
    let refused = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    if refused {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("authentication failed ({e})"),
        )
    } else {
        unavailable(e)
    }
}

impl RedisBroker {
    /// Connects, or fails when Redis cannot be reached within the timeout: a node that
    /// starts without its broker would serve clients that hear nothing.
    pub async fn connect(
        config: &RedisConfig,
        history: &HistoryConfig,
        jobs: &JobsConfig,
        max_snapshot_bytes: usize,
        node_id: String,
        epoch_seed: u64,
    ) -> Result<Arc<RedisBroker>> {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("invalid config: broker.redis.url: {e}"),
            )
        })?;
        let (control, control_rx) = mpsc::unbounded_channel();
        let broker = RedisBroker {
            client,
            prefix: config.prefix.clone(),
            node_id,
            timeout: Duration::from_millis(config.timeout_ms),
            history_size: history.size,
            ttl_ms: history.ttl_ms.max(1),
            jobs: jobs.clone(),
            max_snapshot_bytes,
            command: RwLock::new(None),
            control,
            control_rx: Mutex::new(Some(control_rx)),
            first_link: Mutex::new(None),
            link_lost: Notify::new(),
            connected: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            publish_rtt_us: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            epoch_seed,
            epochs: AtomicU64::new(0),
            publish_script: Script::new(&format!("{JOB_LUA}{PUBLISH_LUA}")),
            recover_script: Script::new(RECOVER_LUA),
            history_script: Script::new(HISTORY_LUA),
            presence_set_script: Script::new(&format!("{NOW_LUA}{PRESENCE_SET_LUA}")),
            presence_remove_script: Script::new(PRESENCE_REMOVE_LUA),
            presence_refresh_script: Script::new(&format!(
                "{NOW_LUA}{PRESENCE_REFRESH_LUA}{SWEEP_LUA}return {{gone, rejoined}}"
            )),
            presence_list_script: Script::new(&format!("{NOW_LUA}{SWEEP_LUA}{PRESENCE_LIST_LUA}")),
        };
        let cannot_reach = |e: Error| {
            let url = redact(&config.url);
            let detail = e.message().trim_start_matches("redis broker: ");
            match e.kind() {
                ErrorKind::InvalidConfig => Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "redis broker: {url} refused the credentials of broker.redis.url: {detail}"
                    ),
                ),
                _ => unavailable(format!("cannot reach {url}: {detail}")),
            }
        };
        let (command, mut pubsub) = broker.open().await.map_err(cannot_reach)?;
        // Listening for broadcasts and sends before the host can make any, and connected
        // from the first call on: a worker that publishes right after starting is not
        // refused.
        let topics = [broker.broadcast_topic(), broker.node_topic(&broker.node_id)];
        tokio::time::timeout(broker.timeout, pubsub.subscribe(&topics))
            .await
            .map_err(|_| unavailable("SUBSCRIBE timed out"))
            .and_then(|done| done.map_err(link_error))
            .map_err(cannot_reach)?;
        *broker.command.write().unwrap_or_else(|p| p.into_inner()) = Some(command);
        *broker.first_link.lock().unwrap_or_else(|p| p.into_inner()) = Some(pubsub);
        broker.connected.store(true, Ordering::Release);
        Ok(Arc::new(broker))
    }

    async fn open(&self) -> Result<(MultiplexedConnection, PubSub)> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let command = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(link_error)?;
        let pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| unavailable("connection timed out"))?
            .map_err(link_error)?;
        Ok((command, pubsub))
    }

    fn meta_key(&self, channel: &str) -> String {
        format!("{}meta:{channel}", self.prefix)
    }

    fn stream_key(&self, channel: &str) -> String {
        format!("{}stream:{channel}", self.prefix)
    }

    fn jobs_key(&self, channel: &str) -> String {
        format!("{}jobs:{channel}", self.prefix)
    }

    fn job_ids_key(&self, channel: &str) -> String {
        format!("{}jobids:{channel}", self.prefix)
    }

    /// Followed by the job id: the key of a job's text.
    fn job_text_prefix(&self, channel: &str) -> String {
        format!("{}jobtext:{channel}\n", self.prefix)
    }

    fn channel_topic(&self, channel: &str) -> String {
        format!("{}ch:{channel}", self.prefix)
    }

    fn presence_keys(&self, channel: &str) -> (String, String) {
        (
            format!("{}presence:{channel}", self.prefix),
            format!("{}presence-deadlines:{channel}", self.prefix),
        )
    }

    fn presence_announcement(&self, frame: &str) -> String {
        format!("{PRESENCE_TAG}{}:{frame}", self.node_id)
    }

    fn broadcast_topic(&self) -> String {
        format!("{}broadcast", self.prefix)
    }

    fn node_topic(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    fn new_epoch(&self) -> String {
        let n = self.epochs.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", crate::shared::splitmix64(self.epoch_seed ^ n))
    }

    /// The command connection, or `Unavailable` at once while the link is down.
    fn connection(&self) -> Result<MultiplexedConnection> {
        if !self.is_connected() {
            return Err(unavailable("not connected to Redis"));
        }
        self.command
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| unavailable("not connected to Redis"))
    }

    /// A failed command: a broken connection wakes the link to reconnect.
    fn failed(&self, e: redis::RedisError) -> Error {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            self.link_lost.notify_one();
        }
        unavailable(e)
    }

    /// Sequences and publishes; Ok once Redis holds the publication.
    async fn sequence_and_publish(
        &self,
        channel: &str,
        body: &str,
        job: Option<&JobUpdate>,
    ) -> Result<Position> {
        let mut conn = self.connection()?;
        let started = Instant::now();
        let mut invocation = self.publish_script.prepare_invoke();
        invocation
            .key(self.meta_key(channel))
            .key(self.stream_key(channel))
            .key(self.jobs_key(channel))
            .key(self.job_ids_key(channel))
            .arg(self.channel_topic(channel))
            .arg(body)
            .arg(self.history_size)
            .arg(self.ttl_ms)
            .arg(META_TTL_MS.max(self.ttl_ms))
            .arg(self.new_epoch());
        match job {
            Some(job) => invocation
                .arg(job.kind())
                .arg(job.job_id.as_deref().unwrap_or(""))
                .arg(&job.payload)
                .arg(&job.text)
                .arg(self.jobs.max_text_bytes)
                .arg(self.jobs.max_per_session)
                .arg(self.jobs.ttl_ms)
                .arg(self.job_text_prefix(channel)),
            None => invocation
                .arg("")
                .arg("")
                .arg("")
                .arg("")
                .arg(0)
                .arg(0)
                .arg(0)
                .arg(""),
        };
        let result: redis::RedisResult<(u64, String)> = invocation.invoke_async(&mut conn).await;
        match result {
            Ok((seq, epoch)) => {
                let us = started.elapsed().as_micros() as u64;
                self.publish_rtt_us.store(us, Ordering::Relaxed);
                Ok(Position { seq, epoch })
            }
            Err(e) => {
                self.publish_errors.fetch_add(1, Ordering::Relaxed);
                Err(self.failed(e))
            }
        }
    }

    /// PUBLISH to every node: their local clients each get `text`.
    async fn publish_broadcast(&self, text: &str) -> Result<()> {
        let mut conn = self.connection()?;
        redis::cmd("PUBLISH")
            .arg(self.broadcast_topic())
            .arg(text)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    /// To a client of another node: false when that node is not listening.
    async fn publish_to_node(&self, node: &str, client_id: &str, text: &str) -> Result<bool> {
        let mut conn = self.connection()?;
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(self.node_topic(node))
            .arg(format!("{client_id}\n{text}"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(receivers > 0)
    }

    /// The channel's position and, with `since`, what came after it.
    async fn read_position(&self, channel: &str, since: Option<&Since>) -> Result<Fetched> {
        let mut conn = self.connection()?;
        let max_replay = self.history_size.max(1) * 2;
        let with_jobs = channel.starts_with("session:");
        let value: Value = self
            .recover_script
            .key(self.meta_key(channel))
            .key(self.stream_key(channel))
            .key(self.jobs_key(channel))
            .key(self.job_ids_key(channel))
            .arg(since.map(|s| s.seq.to_string()).unwrap_or_default())
            .arg(max_replay)
            .arg(self.new_epoch())
            .arg(META_TTL_MS.max(self.ttl_ms))
            .arg(if with_jobs {
                self.job_text_prefix(channel)
            } else {
                String::new()
            })
            .arg(self.jobs.ttl_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let (seq, epoch, entries, jobs) = parse_recover(value)?;
        let jobs = crate::jobs::jobs_json(jobs.iter(), self.max_snapshot_bytes);
        let replay = since.and_then(|since| {
            if since.epoch != epoch || since.seq > seq {
                return None;
            }
            let expected = (since.seq + 1..=seq).collect::<Vec<_>>();
            let seqs: Vec<u64> = entries.iter().map(|(s, _)| *s).collect();
            (seqs == expected).then_some(entries)
        });
        Ok(Fetched {
            position: Position { seq, epoch },
            replay,
            jobs,
        })
    }

    /// A session's jobs and the position they hold at, as `GET /api/jobs/…` answers.
    async fn read_jobs(&self, session: &str) -> Result<String> {
        let channel = crate::protocol::session_channel(session);
        let fetched = self.read_position(&channel, None).await?;
        Ok(crate::fanout::jobs_reply(
            session,
            &fetched.position,
            fetched.jobs.as_deref(),
        ))
    }

    /// The channel's history as closed JSON texts, oldest first.
    async fn read_history(&self, channel: &str) -> Result<Vec<Frame>> {
        let mut conn = self.connection()?;
        let value: Value = self
            .history_script
            .key(self.meta_key(channel))
            .key(self.stream_key(channel))
            .arg(self.history_size.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let Value::Array(mut parts) = value else {
            return Err(unavailable("unexpected reply to the history script"));
        };
        let entries = parts
            .pop()
            .map(parse_entries)
            .transpose()?
            .unwrap_or_default();
        let epoch = parts
            .pop()
            .map(bulk_string)
            .transpose()?
            .unwrap_or_default();
        Ok(entries
            .into_iter()
            .rev()
            .map(|(seq, body)| OpenObject::from_text(&body).close_with_position(seq, &epoch))
            .collect())
    }

    /// Writes a member (joined, or changed its status) with a deadline `ttl_ms` from
    /// now, and announces `frame` to the other nodes.
    async fn write_member(
        &self,
        channel: &str,
        client_id: &str,
        member_json: &str,
        ttl_ms: u64,
        frame: &str,
    ) -> Result<()> {
        let mut conn = self.connection()?;
        let (members, deadlines) = self.presence_keys(channel);
        self.presence_set_script
            .key(members)
            .key(deadlines)
            .arg(client_id)
            .arg(member_json)
            .arg(ttl_ms)
            .arg(self.channel_topic(channel))
            .arg(self.presence_announcement(frame))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    /// Removes a member and, if it was still there, announces `frame`.
    async fn remove_member(&self, channel: &str, client_id: &str, frame: &str) -> Result<()> {
        let mut conn = self.connection()?;
        let (members, deadlines) = self.presence_keys(channel);
        self.presence_remove_script
            .key(members)
            .key(deadlines)
            .arg(client_id)
            .arg(self.channel_topic(channel))
            .arg(self.presence_announcement(frame))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    /// Announces `frame` (a leave this node noticed) to the other nodes.
    async fn announce_presence(&self, channel: &str, frame: &str) -> Result<()> {
        let mut conn = self.connection()?;
        redis::cmd("PUBLISH")
            .arg(self.channel_topic(channel))
            .arg(self.presence_announcement(frame))
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    /// Extends the deadlines of this node's members (`(client id, member JSON)`),
    /// putting back those swept meanwhile, then removes every member of the channel
    /// whose deadline passed. Returns (the members removed, the members put back), as
    /// JSON.
    async fn refresh_members(
        &self,
        channel: &str,
        members: &[(String, String)],
        ttl_ms: u64,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let mut conn = self.connection()?;
        let (hash, deadlines) = self.presence_keys(channel);
        let (mut gone, mut rejoined) = (Vec::new(), Vec::new());
        // Bounded script arguments (Lua's unpack and the argument list stay small).
        for chunk in members.chunks(500) {
            let mut invocation = self.presence_refresh_script.key(&hash);
            invocation.key(&deadlines).arg(ttl_ms);
            for (id, json) in chunk {
                invocation.arg(id).arg(json);
            }
            let value: Value = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            let Value::Array(parts) = value else {
                return Err(unavailable("unexpected reply to the presence refresh"));
            };
            let mut parts = parts.into_iter();
            gone.extend(parts.next().map(strings).transpose()?.unwrap_or_default());
            rejoined.extend(parts.next().map(strings).transpose()?.unwrap_or_default());
        }
        Ok((gone, rejoined))
    }

    /// Sweeps expired members, then lists at most `limit`: (swept members' JSON, total,
    /// listed members' JSON).
    async fn list_members(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<(Vec<String>, u64, Vec<String>)> {
        let mut conn = self.connection()?;
        let (members, deadlines) = self.presence_keys(channel);
        let value: Value = self
            .presence_list_script
            .key(members)
            .key(deadlines)
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let Value::Array(parts) = value else {
            return Err(unavailable("unexpected reply to the presence script"));
        };
        let mut parts = parts.into_iter();
        let gone = parts.next().map(strings).transpose()?.unwrap_or_default();
        let total = match parts.next() {
            Some(Value::Int(total)) => total.max(0) as u64,
            _ => return Err(unavailable("the presence script returned no total")),
        };
        let listed = parts.next().map(strings).transpose()?.unwrap_or_default();
        Ok((gone, total, listed))
    }

    /// Waits until the channel's topic is subscribed on this node; false while the
    /// link is down.
    async fn subscription_ready(&self, channel: &Arc<str>) -> bool {
        let (tx, rx) = oneshot::channel();
        if self
            .control
            .send(Control::Ready(Arc::clone(channel), tx))
            .is_err()
        {
            return false;
        }
        matches!(tokio::time::timeout(self.timeout, rx).await, Ok(Ok(true)))
    }

    /// Keeps the link: PUB/SUB messages to the fan-out, subscriptions following the
    /// local channels, reconnection with backoff. Ends at shutdown.
    async fn keep_link(self: Arc<Self>, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        let Some(first) = self
            .first_link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let Some(mut control) = self
            .control_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let mut watched: HashMap<Arc<str>, usize> = HashMap::new();
        let mut first = Some(first);
        let mut to_write = Vec::new();
        let mut backoff = MIN_BACKOFF;
        let mut restored = false;
        loop {
            // The first link comes from `connect`, already listening to this node's topics.
            let reconnecting = first.is_none();
            let link = match first.take() {
                Some(pubsub) => Ok((None, pubsub)),
                None => self.open().await.map(|(c, p)| (Some(c), p)),
            };
            let (command, pubsub) = match link {
                Ok(link) => link,
                Err(e) => {
                    tracing::debug!(error = %e, "redis broker: reconnect failed");
                    let wait = jitter(backoff);
                    if !self
                        .idle(&mut control, &mut watched, wait, &mut shutdown)
                        .await
                    {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let (mut sink, mut stream) = pubsub.split();
            let mut topics = Vec::new();
            if reconnecting {
                topics.push(self.broadcast_topic());
                topics.push(self.node_topic(&self.node_id));
            }
            topics.extend(watched.keys().map(|c| self.channel_topic(c)));
            let subscribed = if topics.is_empty() {
                Ok(Ok(()))
            } else {
                tokio::time::timeout(self.timeout, sink.subscribe(&topics)).await
            };
            if !matches!(subscribed, Ok(Ok(()))) {
                if !self
                    .idle(&mut control, &mut watched, jitter(backoff), &mut shutdown)
                    .await
                {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            if let Some(command) = command {
                *self.command.write().unwrap_or_else(|p| p.into_inner()) = Some(command);
            }
            // A failure noticed before this link existed is not about it.
            let _ = self.link_lost.notified().now_or_never();
            self.connected.store(true, Ordering::Release);
            if restored {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!("redis broker: reconnected");
                // Publications made while the link was down never reached this node.
                shared.fanout.resync_all();
            }
            restored = true;
            backoff = MIN_BACKOFF;
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = self.link_lost.notified() => break,
                    message = stream.next() => match message {
                        Some(message) => {
                            // What has arrived already is delivered in one write pass:
                            // each socket written once for all of it.
                            let ended = write_pass::run(&shared, &mut to_write, || {
                                self.receive(&shared, &message);
                                for _ in 1..RECEIVE_BATCH {
                                    match stream.next().now_or_never() {
                                        Some(Some(message)) => self.receive(&shared, &message),
                                        Some(None) => return true,
                                        None => break,
                                    }
                                }
                                false
                            });
                            if ended {
                                break;
                            }
                            // Let the connections the pass woke run before the next one
                            // (they wait in this worker's LIFO slot, which is not stolen).
                            tokio::task::yield_now().await;
                        }
                        None => break,
                    },
                    command = control.recv() => match command {
                        Some(command) => {
                            if !self.apply(command, &mut watched, Some(&mut sink)).await {
                                break;
                            }
                        }
                        None => return,
                    },
                }
            }
            self.connected.store(false, Ordering::Release);
            *self.command.write().unwrap_or_else(|p| p.into_inner()) = None;
            tracing::warn!("redis broker: link lost; reconnecting");
        }
    }

    /// While disconnected: keeps the subscription counts for `wait`; false at shutdown.
    async fn idle(
        &self,
        control: &mut mpsc::UnboundedReceiver<Control>,
        watched: &mut HashMap<Arc<str>, usize>,
        wait: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return false,
                _ = &mut deadline => return true,
                command = control.recv() => match command {
                    Some(command) => {
                        self.apply(command, watched, None).await;
                    }
                    None => return false,
                },
            }
        }
    }

    /// Applies a subscription change; false when the link failed doing it.
    async fn apply(
        &self,
        command: Control,
        watched: &mut HashMap<Arc<str>, usize>,
        sink: Option<&mut PubSubSink>,
    ) -> bool {
        match command {
            Control::Watch(channel) => {
                let count = watched.entry(Arc::clone(&channel)).or_insert(0);
                *count += 1;
                if *count == 1 {
                    if let Some(sink) = sink {
                        let topic = self.channel_topic(&channel);
                        let done = tokio::time::timeout(self.timeout, sink.subscribe(topic)).await;
                        return matches!(done, Ok(Ok(())));
                    }
                }
            }
            Control::Unwatch(channel) => {
                let Some(count) = watched.get_mut(&channel) else {
                    return true;
                };
                *count -= 1;
                if *count == 0 {
                    watched.remove(&channel);
                    if let Some(sink) = sink {
                        let topic = self.channel_topic(&channel);
                        let done =
                            tokio::time::timeout(self.timeout, sink.unsubscribe(topic)).await;
                        return matches!(done, Ok(Ok(())));
                    }
                }
            }
            Control::Ready(channel, answer) => {
                let _ = answer.send(sink.is_some() && watched.contains_key(&channel));
            }
        }
        true
    }

    /// One PUB/SUB message to the fan-out.
    fn receive(&self, shared: &Shared, message: &redis::Msg) {
        let topic = message.get_channel_name();
        let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) else {
            return;
        };
        let Some(topic) = topic.strip_prefix(self.prefix.as_str()) else {
            return;
        };
        if let Some(channel) = topic.strip_prefix("ch:") {
            if let Some(announced) = payload.strip_prefix(PRESENCE_TAG) {
                // This node told its own watchers already.
                if let Some((node, frame)) = announced.split_once(':') {
                    if node != self.node_id {
                        crate::presence::deliver_remote(shared, channel, frame);
                    }
                }
                return;
            }
            match parse_publication(channel, payload) {
                Some(publication) => shared.fanout.deliver_remote(publication),
                None => tracing::warn!(channel, "redis broker: malformed publication"),
            }
        } else if topic == "broadcast" {
            shared.fanout.broadcast(&Frame::text(payload));
        } else if topic.strip_prefix("node:") == Some(self.node_id.as_str()) {
            if let Some((client_id, text)) = payload.split_once('\n') {
                shared.fanout.send(client_id, Frame::text(text));
            }
        }
    }
}

impl SharedBroker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn health(&self) -> Health {
        Health {
            kind: self.kind(),
            node: self.node_id.clone(),
            connected: self.is_connected(),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            publish_round_trip_us: self.publish_rtt_us.load(Ordering::Relaxed),
            publish_errors: self.publish_errors.load(Ordering::Relaxed),
        }
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
        job: Option<&'a JobUpdate>,
    ) -> BrokerFuture<'a, Result<Position>> {
        Box::pin(self.sequence_and_publish(channel, body, job))
    }

    fn jobs_json<'a>(&'a self, session: &'a str) -> BrokerFuture<'a, Result<String>> {
        Box::pin(self.read_jobs(session))
    }

    fn broadcast<'a>(&'a self, text: &'a str) -> BrokerFuture<'a, Result<()>> {
        Box::pin(self.publish_broadcast(text))
    }

    fn send<'a>(
        &'a self,
        node: &'a str,
        client_id: &'a str,
        text: &'a str,
    ) -> BrokerFuture<'a, Result<bool>> {
        Box::pin(self.publish_to_node(node, client_id, text))
    }

    fn fetch<'a>(
        &'a self,
        channel: &'a str,
        since: Option<&'a Since>,
    ) -> BrokerFuture<'a, Result<Fetched>> {
        Box::pin(self.read_position(channel, since))
    }

    fn history<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Result<Vec<Frame>>> {
        Box::pin(self.read_history(channel))
    }

    fn watch(&self, channel: &Arc<str>) {
        let _ = self.control.send(Control::Watch(Arc::clone(channel)));
    }

    fn unwatch(&self, channel: &Arc<str>) {
        let _ = self.control.send(Control::Unwatch(Arc::clone(channel)));
    }

    fn ready<'a>(&'a self, channel: &'a Arc<str>) -> BrokerFuture<'a, bool> {
        Box::pin(self.subscription_ready(channel))
    }

    fn presence_set<'a>(
        &'a self,
        channel: &'a str,
        client_id: &'a str,
        member_json: &'a str,
        ttl_ms: u64,
        frame: &'a str,
    ) -> BrokerFuture<'a, Result<()>> {
        Box::pin(self.write_member(channel, client_id, member_json, ttl_ms, frame))
    }

    fn presence_remove<'a>(
        &'a self,
        channel: &'a str,
        client_id: &'a str,
        frame: &'a str,
    ) -> BrokerFuture<'a, Result<()>> {
        Box::pin(self.remove_member(channel, client_id, frame))
    }

    fn presence_announce<'a>(
        &'a self,
        channel: &'a str,
        frame: &'a str,
    ) -> BrokerFuture<'a, Result<()>> {
        Box::pin(self.announce_presence(channel, frame))
    }

    fn presence_refresh<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [(String, String)],
        ttl_ms: u64,
    ) -> BrokerFuture<'a, Result<Refreshed>> {
        Box::pin(self.refresh_members(channel, members, ttl_ms))
    }

    fn presence_list<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BrokerFuture<'a, Result<MemberList>> {
        Box::pin(self.list_members(channel, limit))
    }

    fn run(
        self: Arc<Self>,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
    ) -> BrokerFuture<'static, ()> {
        Box::pin(self.keep_link(shared, shutdown))
    }
}

/// `seq:epoch:body` as the publish script sends it.
fn parse_publication(channel: &str, payload: &str) -> Option<Publication> {
    let (seq, rest) = payload.split_once(':')?;
    let (epoch, body) = rest.split_once(':')?;
    Some(Publication {
        channel: channel.into(),
        seq: seq.parse().ok()?,
        epoch: epoch.into(),
        body: OpenObject::from_text(body),
    })
}

fn bulk_string(value: Value) -> Result<String> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| unavailable("a reply was not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s),
        Value::Nil => Ok(String::new()),
        other => Err(unavailable(format!("unexpected reply {other:?}"))),
    }
}

/// An array of strings; missing entries (nil) are left out.
fn strings(value: Value) -> Result<Vec<String>> {
    let Value::Array(items) = value else {
        return Ok(Vec::new());
    };
    Ok(items
        .into_iter()
        .filter(|item| !matches!(item, Value::Nil))
        .map(bulk_string)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect())
}

fn parse_recover(value: Value) -> Result<(u64, String, Entries, Vec<Job>)> {
    let Value::Array(parts) = value else {
        return Err(unavailable("unexpected reply to the recover script"));
    };
    let mut parts = parts.into_iter();
    let seq = match parts.next() {
        Some(Value::Int(seq)) => seq.max(0) as u64,
        _ => return Err(unavailable("the recover script returned no seq")),
    };
    let epoch = parts
        .next()
        .map(bulk_string)
        .transpose()?
        .unwrap_or_default();
    let entries = parts
        .next()
        .map(parse_entries)
        .transpose()?
        .unwrap_or_default();
    let jobs = match parts.next() {
        Some(Value::Array(jobs)) => jobs.into_iter().map(parse_job).collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    Ok((seq, epoch, entries, jobs))
}

/// `{id, state, task, progress, outcome, truncated, startedAt, endedAt, text}` as the
/// recover script returns a job ('' for what is missing).
fn parse_job(value: Value) -> Result<Job> {
    let bad = || unavailable("malformed job in a snapshot");
    let Value::Array(fields) = value else {
        return Err(bad());
    };
    let mut fields = fields
        .into_iter()
        .map(bulk_string)
        .collect::<Result<Vec<String>>>()?
        .into_iter();
    let mut next = || fields.next().ok_or_else(bad);
    let (id, state, task, progress, outcome) = (next()?, next()?, next()?, next()?, next()?);
    let (truncated, started, ended, text) = (next()?, next()?, next()?, next()?);
    let some = |s: String| (!s.is_empty()).then_some(s);
    Ok(Job {
        id: some(id),
        status: JobStatus::parse(&state).ok_or_else(bad)?,
        task: some(task),
        progress: some(progress),
        text,
        truncated: !truncated.is_empty(),
        outcome: some(outcome),
        started_ms: started.parse().unwrap_or(0),
        ended_ms: ended.parse().ok(),
    })
}

/// Stream entries `[[id, [field, value]], …]` as (seq, body).
fn parse_entries(value: Value) -> Result<Entries> {
    let Value::Array(entries) = value else {
        return Ok(Vec::new());
    };
    let bad = || unavailable("malformed stream entry");
    entries
        .into_iter()
        .map(|entry| {
            let Value::Array(entry) = entry else {
                return Err(bad());
            };
            let mut entry = entry.into_iter();
            let id = bulk_string(entry.next().ok_or_else(bad)?)?;
            let seq = id
                .split_once('-')
                .and_then(|(seq, _)| seq.parse().ok())
                .ok_or_else(bad)?;
            let Some(Value::Array(fields)) = entry.next() else {
                return Err(bad());
            };
            let body = fields.into_iter().nth(1).ok_or_else(bad)?;
            Ok((seq, bulk_string(body)?))
        })
        .collect()
}

/// Up to a quarter more, so nodes that lost Redis together do not all knock at once.
fn jitter(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    backoff + backoff / 4 * (nanos % 1000) / 1000
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_parse_and_passwords_stay_out_of_messages() {
        let p = parse_publication("c", r#"7:abc:{"type":"x","a":"b:c""#).expect("parses");
        assert_eq!((p.seq, &*p.epoch), (7, "abc"));
        assert_eq!(p.body.text(), r#"{"type":"x","a":"b:c""#);
        assert!(parse_publication("c", "x:abc:{").is_none());
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
