//! The local fan-out: who is connected to this node, which channels its clients listen
//! to, and handing each publication, framed once, to every local subscriber's queue.
//! With the in-memory broker each channel entry also holds the channel's log
//! ([`ChannelLog`]), so publishing and subscribing take the same lock and a
//! subscriber's replay and its live messages never overlap or leave a gap.

use crate::broker::memory::ChannelLog;
use crate::broker::{Fetched, Publication, SharedBroker};
use crate::client::{Client, CloseReason, Delivery, Outbound};
use crate::config::HistoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::{JobStore, JobUpdate};
use crate::memory::MemoryGauge;
use crate::protocol::{self, OpenObject, Position, Since, Target};
use crate::stats::Counters;
use crate::transport::wire::Frame;
use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

pub(crate) struct FanoutLimits {
    pub history: HistoryConfig,
    /// Publications kept for one subscribe in flight (the client's queue size).
    pub pending_buffer: usize,
    pub max_channels: usize,
    pub max_subscriptions_per_client: usize,
    /// Largest jobs snapshot sent to one client (what its budget can take).
    pub max_snapshot_bytes: usize,
}

pub(crate) struct Fanout {
    clients: RwLock<HashSet<ById>>,
    channels: Mutex<Channels>,
    /// The sessions' job state (memory broker); locked only under `channels`, so a
    /// snapshot and the channel's position always agree.
    jobs: Mutex<JobStore>,
    room: ChannelRoom,
    limits: FanoutLimits,
    epoch_seed: String,
    counters: Arc<Counters>,
    memory: Arc<MemoryGauge>,
    /// A shared broker, told when a channel gains its first local subscriber and loses
    /// its last. `None` with the in-memory broker (the channels' own logs).
    shared_broker: Option<Arc<dyn SharedBroker>>,
}

/// A client in the set of connected clients, found by its id: the set holds one
/// pointer per client, not a copy of the id's handle beside it (idle clients are most
/// of a server's memory).
struct ById(Arc<Client>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the `str` it borrows as hashes, so lookups by id find it.
        (*self.0.id).hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

/// A client among a channel's subscribers, found by its key: one pointer per
/// subscriber, like [`ById`].
struct ByKey(Arc<Client>);

impl Borrow<u64> for ByKey {
    fn borrow(&self) -> &u64 {
        &self.0.key
    }
}

impl Hash for ByKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the `u64` it borrows as hashes, so lookups by key find it.
        self.0.key.hash(state);
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ByKey {}

/// A channel's subscribers, as clients.
// `ById` and `ByKey` hash a client's id and key, which never change: the client's
// interior mutability does not touch them.
#[allow(clippy::mutable_key_type)]
fn subscribers(set: &HashSet<ByKey>) -> impl ExactSizeIterator<Item = &Arc<Client>> {
    set.iter().map(|found| &found.0)
}

/// Free places in the channel table. Every channel is created with a place taken
/// here; clients may not take the last tenth, so they can never lock the host out, and
/// a host publication takes its place when it is submitted, so a full table is an error
/// the host sees, never a publication dropped later.
struct ChannelRoom {
    free: AtomicUsize,
    kept_for_host: usize,
}

impl ChannelRoom {
    fn new(max_channels: usize) -> ChannelRoom {
        ChannelRoom {
            free: AtomicUsize::new(max_channels),
            kept_for_host: max_channels / 10,
        }
    }

    fn take_above(&self, floor: usize) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                (free > floor).then(|| free - 1)
            })
            .is_ok()
    }

    fn take_for_host(&self) -> bool {
        self.take_above(0)
    }

    fn take_for_client(&self) -> bool {
        self.take_above(self.kept_for_host)
    }

    fn give_back(&self) {
        self.free.fetch_add(1, Ordering::AcqRel);
    }
}

/// A host publication as the dispatcher hands it over.
pub(crate) struct HostPublication {
    pub message: OpenObject,
    pub hold: ChannelHold,
    /// For a session's `ai_*`: the session and what it does to its job.
    pub job: Option<(String, JobUpdate)>,
}

/// What a host publication holds from its submission to its dispatch, so that it
/// cannot fail in between.
#[derive(Debug)]
pub(crate) enum ChannelHold {
    /// A free place in the table, used if the channel must be created.
    Place,
    /// The channel exists and is kept from being reclaimed.
    Pinned,
}

#[derive(Default)]
struct Channels {
    map: HashMap<Arc<str>, Channel>,
    history_bytes: usize,
    epochs_issued: u64,
    subscriptions: usize,
}

struct Channel {
    /// The map's key, shared with every subscriber's list of channels.
    name: Arc<str>,
    subscribers: HashSet<ByKey>,
    log: ChannelLog,
    /// Host publications submitted to it and not yet dispatched ([`ChannelHold::Pinned`]).
    pinned: usize,
    /// With a remote broker: clients whose subscribe is reading the channel's position
    /// (and replay) from the broker, and what was published meanwhile.
    pending: Vec<Pending>,
}

/// A subscribe in flight with a remote broker: live publications are kept until its
/// replay is known, then delivered after it without duplicates.
struct Pending {
    key: u64,
    client: Arc<Client>,
    buffered: Vec<(u64, Arc<str>, Frame)>,
    /// More arrived than the client's queue could ever hold.
    overflowed: bool,
    /// Set once the subscribe finished with the client already past this node's live
    /// stream (it read a position whose publications are still on their way here):
    /// it joins the live subscribers once a publication after this seq arrives.
    after: Option<u64>,
}

impl Channel {
    fn is_idle(&self) -> bool {
        self.subscribers.is_empty()
            && self.log.history.is_empty()
            && self.pinned == 0
            && self.pending.is_empty()
    }
}

/// The outcome of a subscribe, for the caller's event.
pub(crate) struct Subscription {
    pub channel: Arc<str>,
    pub newly_subscribed: bool,
}

/// Counts of what the hub holds, for stats.
pub(crate) struct HubSize {
    pub channels: usize,
    pub subscriptions: usize,
    pub history_bytes: usize,
}

impl Fanout {
    pub fn new(
        limits: FanoutLimits,
        jobs: JobStore,
        epoch_seed: String,
        counters: Arc<Counters>,
        memory: Arc<MemoryGauge>,
        shared_broker: Option<Arc<dyn SharedBroker>>,
    ) -> Fanout {
        Fanout {
            clients: RwLock::default(),
            channels: Mutex::default(),
            jobs: Mutex::new(jobs),
            room: ChannelRoom::new(limits.max_channels),
            limits,
            epoch_seed,
            counters,
            memory,
            shared_broker,
        }
    }

    fn channels(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Under the channel lock only.
    fn jobs(&self) -> MutexGuard<'_, JobStore> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the session's jobs snapshot at `position` when it has any job.
    fn deliver_snapshot(
        &self,
        client: &Arc<Client>,
        target: &Target,
        position: &Position,
        jobs: Option<String>,
    ) {
        if let (Target::Session(session), Some(jobs)) = (target, jobs) {
            self.deliver(client, protocol::jobs_snapshot(session, position, &jobs));
        }
    }

    /// A session's jobs and the position they are the state at (memory broker), as
    /// `{"sessionId","seq","epoch","jobs":[…]}`.
    pub fn jobs_json(&self, session: &str) -> String {
        let channels = self.channels();
        let position = channels
            .map
            .get(&*protocol::session_channel(session))
            .map(|ch| ch.log.position())
            .unwrap_or(Position {
                seq: 0,
                epoch: String::new(),
            });
        let jobs = self.jobs().snapshot_json(session, usize::MAX);
        drop(channels);
        jobs_reply(session, &position, jobs.as_deref())
    }

    fn deliver(&self, client: &Arc<Client>, message: impl Into<Outbound>) {
        self.count_delivery(client, client.enqueue(message));
    }

    /// Queues one frame for many clients, with one update of the memory gauge: counted
    /// for all before any connection can take it, then given back for those not queued.
    pub(crate) fn fan_out<'a>(
        &self,
        clients: impl ExactSizeIterator<Item = &'a Arc<Client>>,
        frame: &Frame,
    ) {
        self.fan_out_run(clients, std::slice::from_ref(frame));
    }

    /// [`Fanout::fan_out`] for consecutive publications, queued subscriber by
    /// subscriber: each subscriber is touched (locked, counted, woken) once per run.
    fn fan_out_run<'a>(
        &self,
        clients: impl ExactSizeIterator<Item = &'a Arc<Client>>,
        frames: &[Frame],
    ) {
        let cost = |frame: &Frame| frame.wire_len() + crate::client::QUEUED_MESSAGE_OVERHEAD;
        let run_bytes: usize = frames.iter().map(cost).sum();
        self.memory.add_queued(clients.len() * run_bytes);
        let mut not_queued_bytes = 0;
        for client in clients {
            let pushed = client.enqueue_for_fanout(frames);
            if pushed.queued < frames.len() {
                let rest = &frames[pushed.queued..];
                not_queued_bytes += rest.iter().map(cost).sum::<usize>();
                self.count_delivery(client, pushed.first_not_queued);
                let closed = rest.len() - 1;
                Counters::add(&self.counters.messages_dropped, closed as u64);
            }
        }
        self.memory.sub_queued(not_queued_bytes);
    }

    fn count_delivery(&self, client: &Client, delivery: Delivery) {
        match delivery {
            Delivery::Queued => {}
            Delivery::Evicted => {
                Counters::add(&self.counters.evictions, 1);
                Counters::add(&self.counters.messages_dropped, 1);
                tracing::info!(client = %client.id, "evicting slow client");
            }
            Delivery::Closed => Counters::add(&self.counters.messages_dropped, 1),
        }
    }

    // -- clients ----------------------------------------------------------

    pub fn register(&self, client: Arc<Client>) {
        self.clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(ById(client));
    }

    /// Removes a client and all its subscriptions.
    pub fn unregister(&self, client: &Client) {
        self.clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&*client.id);
        let mut channels = self.channels();
        let subscribed = std::mem::take(
            &mut *client
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for name in subscribed {
            channels.remove_subscriber(&name, client.key, self);
        }
    }

    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|found| Arc::clone(&found.0))
    }

    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|found| Arc::clone(&found.0))
            .collect()
    }

    // -- subscriptions ----------------------------------------------------

    /// Subscribes a client, replying `subscribed` and, when `since` is given, replaying
    /// what it missed, all before any later publication reaches it.
    pub fn subscribe(
        &self,
        client: &Arc<Client>,
        target: &Target,
        since: Option<&Since>,
        reply: bool,
    ) -> Result<Subscription> {
        let name = target.channel();
        let mut channels = self.channels();
        let already = client.is_subscribed(&name);
        if !already && client.subscription_count() >= self.limits.max_subscriptions_per_client {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "subscription limit reached ({} per client)",
                    self.limits.max_subscriptions_per_client
                ),
            ));
        }
        let channels = &mut *channels;
        let channel = channels.get_or_create_for_client(&name, self)?;
        let name = Arc::clone(&channel.name);
        let position = channel.log.position();
        let recovered = since.map(|since| {
            // A replay that could never fit the client's byte budget is refused, not
            // sent to evict it: the client refetches instead.
            let replay = channel
                .log
                .replay(since)
                .map(Outbound::Replay)
                .filter(|missed| client.fits_budget(missed.byte_len()));
            match replay {
                Some(missed) => {
                    if reply {
                        client.enqueue(protocol::subscribed(target, &position, Some(true)));
                    }
                    if missed.message_count() > 0 {
                        self.deliver(client, missed);
                    }
                    Counters::add(&self.counters.recoveries, 1);
                    true
                }
                None => {
                    Counters::add(&self.counters.recoveries_failed, 1);
                    false
                }
            }
        });
        if reply && recovered != Some(true) {
            client.enqueue(protocol::subscribed(target, &position, recovered));
        }
        if recovered != Some(true) {
            if let Target::Session(session) = target {
                let jobs = self
                    .jobs()
                    .snapshot_json(session, self.limits.max_snapshot_bytes);
                self.deliver_snapshot(client, target, &position, jobs);
            }
        }
        let newly_subscribed = channel.subscribers.insert(ByKey(Arc::clone(client)));
        if newly_subscribed {
            channels.subscriptions += 1;
            client.add_subscription(Arc::clone(&name));
        }
        Ok(Subscription {
            channel: name,
            newly_subscribed,
        })
    }

    /// Unsubscribes from one channel or, with `None`, from all but the client's own
    /// user channel. Returns the channels actually left.
    pub fn unsubscribe(&self, client: &Client, target: Option<&Target>) -> Vec<Arc<str>> {
        let own_user_channel = client.user_id.as_deref().map(protocol::user_channel);
        let mut channels = self.channels();
        let mut subscriptions = client
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let wanted = target.map(Target::channel);
        let mut left = Vec::new();
        subscriptions.retain(|name| {
            let leave = match &wanted {
                Some(w) => **name == **w,
                None => own_user_channel.as_deref() != Some(&**name),
            };
            if leave {
                left.push(Arc::clone(name));
            }
            !leave
        });
        drop(subscriptions);
        for name in &left {
            channels.remove_subscriber(name, client.key, self);
        }
        left
    }

    // -- with a remote broker -----------------------------------------------

    /// Subscribes through a remote broker. The client waits as pending while the
    /// channel's position (and, with `since`, its replay) is read from the broker;
    /// publications arriving meanwhile are kept, and after the reply and replay only
    /// those past the last one replayed are delivered: no gap, no duplicate.
    pub async fn subscribe_remote(
        &self,
        broker: &dyn SharedBroker,
        client: &Arc<Client>,
        target: &Target,
        since: Option<&Since>,
        reply: bool,
    ) -> Result<Subscription> {
        let name: Arc<str> = {
            let mut channels = self.channels();
            let requested = target.channel();
            let already = client.is_subscribed(&requested);
            if already {
                // Nothing to recover: it has been receiving all along.
                let channel = channels.get_or_create_for_client(&requested, self)?;
                if reply {
                    let recovered = since.map(|_| true);
                    client.enqueue(protocol::subscribed(
                        target,
                        &channel.log.position(),
                        recovered,
                    ));
                }
                return Ok(Subscription {
                    channel: Arc::clone(&channel.name),
                    newly_subscribed: false,
                });
            }
            if client.subscription_count() >= self.limits.max_subscriptions_per_client {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "subscription limit reached ({} per client)",
                        self.limits.max_subscriptions_per_client
                    ),
                ));
            }
            let channel = channels.get_or_create_for_client(&requested, self)?;
            channel.pending.push(Pending {
                key: client.key,
                client: Arc::clone(client),
                buffered: Vec::new(),
                overflowed: false,
                after: None,
            });
            Arc::clone(&channel.name)
        };
        let mut guard = PendingGuard {
            fanout: self,
            channel: Arc::clone(&name),
            key: client.key,
            armed: true,
        };
        let fetched = if broker.ready(&name).await {
            broker.fetch(&name, since).await
        } else {
            Err(Error::new(ErrorKind::Unavailable, "broker: not connected"))
        };
        guard.armed = false;
        self.finish_remote_subscribe(client, target, since, reply, &name, fetched)
    }

    fn finish_remote_subscribe(
        &self,
        client: &Arc<Client>,
        target: &Target,
        since: Option<&Since>,
        reply: bool,
        name: &Arc<str>,
        fetched: Result<Fetched>,
    ) -> Result<Subscription> {
        let mut channels = self.channels();
        let channels = &mut *channels;
        let ch = channels
            .map
            .get_mut(name)
            .expect("a pending subscribe keeps its channel");
        let at = ch
            .pending
            .iter()
            .position(|p| p.key == client.key && p.after.is_none())
            .expect("a pending subscribe is finished once");
        let pending = ch.pending.swap_remove(at);
        if client.close_requested().is_some() {
            // Gone meanwhile: unregistering did not know of this subscribe.
            if ch.is_idle() {
                channels.reclaim(name, self);
            }
            return Err(Error::new(ErrorKind::Stopped, "client closed"));
        }
        let (position, replay, jobs) = match fetched {
            Ok(fetched) => {
                if ch.log.epoch.is_empty() {
                    // The first position this node learns: the live stream goes on
                    // from here.
                    ch.log.seq = fetched.position.seq;
                    ch.log.epoch = fetched.position.epoch.as_str().into();
                }
                (fetched.position, fetched.replay, fetched.jobs)
            }
            Err(e) => {
                tracing::debug!(error = %e, channel = %name, "subscribe without the broker");
                (ch.log.position(), None, None)
            }
        };
        let epoch = &position.epoch;
        let mut frames: Vec<Frame> = Vec::new();
        let mut last = position.seq;
        let recovered = since.map(|_| {
            let Some(entries) = &replay else {
                return false;
            };
            frames = entries
                .iter()
                .map(|(seq, body)| OpenObject::from_text(body).close_with_position(*seq, epoch))
                .collect();
            client.fits_budget(frames.iter().map(Frame::wire_len).sum::<usize>())
        });
        if recovered == Some(false) {
            frames.clear();
        }
        match recovered {
            Some(true) => Counters::add(&self.counters.recoveries, 1),
            Some(false) => Counters::add(&self.counters.recoveries_failed, 1),
            None => {}
        }
        if let Some(true) = recovered {
            last = replay
                .as_ref()
                .and_then(|r| r.last().map(|(seq, _)| *seq))
                .unwrap_or(last)
                .max(since.map_or(0, |s| s.seq));
        }
        if reply {
            client.enqueue(protocol::subscribed(target, &position, recovered));
        }
        if !frames.is_empty() {
            self.deliver(client, Outbound::Replay(frames));
        }
        if recovered != Some(true) {
            // The state as of `position.seq`; what was buffered after it follows.
            self.deliver_snapshot(client, target, &position, jobs);
        }
        let mut out_of_epoch = pending.overflowed;
        for (seq, pub_epoch, frame) in pending.buffered {
            if *pub_epoch != **epoch && !epoch.is_empty() {
                out_of_epoch = true;
            } else if seq > last {
                self.deliver(client, frame);
                last = seq;
            }
        }
        if out_of_epoch && client.request_close(CloseReason::Resync) {
            client.close_queue();
        }
        let ahead = *ch.log.epoch == **epoch && last > ch.log.seq;
        let newly_subscribed = if ahead {
            // Publications up to `last` are still on their way to this node: the
            // client has them already, the live subscribers not yet.
            ch.pending.push(Pending {
                key: client.key,
                client: Arc::clone(client),
                buffered: Vec::new(),
                overflowed: false,
                after: Some(last),
            });
            true
        } else {
            ch.subscribers.insert(ByKey(Arc::clone(client)))
        };
        if newly_subscribed {
            channels.subscriptions += 1;
            client.add_subscription(Arc::clone(name));
        }
        Ok(Subscription {
            channel: Arc::clone(name),
            newly_subscribed,
        })
    }

    /// A publication from a remote broker: framed once, queued for every local
    /// subscriber. A gap in seq or a new epoch means this node missed something: the
    /// channel's clients are asked to reconnect and recover, never left silently short.
    pub fn deliver_remote(&self, publication: Publication) {
        let mut channels = self.channels();
        let Some(ch) = channels.map.get_mut(&*publication.channel) else {
            return; // no local subscriber any more
        };
        let known = !ch.log.epoch.is_empty();
        let same_epoch = *ch.log.epoch == *publication.epoch;
        if known && same_epoch && publication.seq <= ch.log.seq {
            return; // already delivered
        }
        let gap = known && !(same_epoch && publication.seq == ch.log.seq + 1);
        if gap {
            let waiting = ch.pending.iter().filter(|p| p.after.is_some());
            for client in subscribers(&ch.subscribers).chain(waiting.map(|p| &p.client)) {
                if client.request_close(CloseReason::Resync) {
                    client.close_queue();
                }
            }
        }
        ch.log.seq = publication.seq;
        if !same_epoch {
            ch.log.epoch = Arc::clone(&publication.epoch);
        }
        let frame = publication
            .body
            .close_with_position(publication.seq, &publication.epoch);
        self.fan_out(subscribers(&ch.subscribers), &frame);
        if ch.pending.is_empty() {
            return;
        }
        #[allow(clippy::mutable_key_type)] // see `subscribers`
        let live = &mut ch.subscribers;
        ch.pending.retain_mut(|pending| match pending.after {
            Some(after) if !gap && publication.seq > after => {
                self.deliver(&pending.client, frame.clone());
                live.insert(ByKey(Arc::clone(&pending.client)));
                false
            }
            Some(_) => true,
            None => {
                if pending.buffered.len() >= self.limits.pending_buffer {
                    pending.overflowed = true;
                } else if !pending.overflowed {
                    let epoch = Arc::clone(&publication.epoch);
                    pending
                        .buffered
                        .push((publication.seq, epoch, frame.clone()));
                }
                true
            }
        });
    }

    /// The link to the broker was restored: what was published meanwhile never came
    /// here, so every subscriber on this node reconnects and recovers with `since`.
    pub fn resync_all(&self) {
        let mut channels = self.channels();
        for ch in channels.map.values_mut() {
            ch.log.epoch = "".into();
            ch.log.seq = 0;
            let waiting = ch.pending.iter().filter(|p| p.after.is_some());
            for client in subscribers(&ch.subscribers).chain(waiting.map(|p| &p.client)) {
                if client.request_close(CloseReason::Resync) {
                    client.close_queue();
                }
            }
        }
    }

    // -- publishing -------------------------------------------------------

    /// Takes what a host publication to `channel` needs to be sure to succeed at
    /// dispatch; a `Limit` error when the channel table is full.
    pub fn hold_channel(&self, channel: &str) -> Result<ChannelHold> {
        if self.room.take_for_host() {
            return Ok(ChannelHold::Place);
        }
        let mut channels = self.channels();
        if let Some(ch) = channels.map.get_mut(channel) {
            ch.pinned += 1;
            return Ok(ChannelHold::Pinned);
        }
        drop(channels);
        Counters::add(&self.counters.channels_rejected, 1);
        Err(Error::new(
            ErrorKind::Limit,
            format!(
                "channel limit reached ({} channels): cannot publish to the new channel {channel:?}",
                self.limits.max_channels
            ),
        ))
    }

    /// Gives back what [`Fanout::hold_channel`] took, for a publication never dispatched.
    pub fn release_hold(&self, channel: &str, hold: ChannelHold) {
        let mut channels = self.channels();
        channels.release(channel, hold, &self.room);
    }

    /// Publishes to a channel: assigns the next seq, keeps it in history, and queues
    /// the one serialized text for every subscriber.
    pub fn publish(
        &self,
        channel: &str,
        message: OpenObject,
        hold: ChannelHold,
        job: Option<(String, JobUpdate)>,
    ) {
        self.publish_run(
            channel,
            std::iter::once(HostPublication { message, hold, job }),
        );
    }

    /// [`Fanout::publish`] for consecutive host publications to one channel, under one
    /// lock, fanned out together (see [`Fanout::fan_out_run`]).
    pub fn publish_run(&self, channel: &str, run: impl ExactSizeIterator<Item = HostPublication>) {
        Counters::add(&self.counters.publications, run.len() as u64);
        let mut channels = self.channels();
        let channels = &mut *channels;
        let keep_history = self.limits.history.size > 0;
        let mut frames = Vec::with_capacity(run.len());
        for HostPublication { message, hold, job } in run {
            if let Some((session, update)) = job {
                self.jobs()
                    .apply(&session, &update, crate::time::unix_millis());
            }
            let exists = channels.map.contains_key(channel);
            if let ChannelHold::Place = hold {
                if exists || !keep_history {
                    self.room.give_back();
                }
            }
            if !exists && !keep_history {
                continue; // nobody listens and nothing is kept
            }
            let ch = if exists {
                channels.map.get_mut(channel).expect("exists")
            } else {
                // Created with the place the publication holds.
                channels.create(channel, self)
            };
            if let ChannelHold::Pinned = hold {
                ch.pinned -= 1;
            }
            let text = ch.log.append(message);
            if keep_history {
                let (added, freed) = ch.log.keep(text.clone(), self.limits.history.size);
                channels.history_bytes = channels.history_bytes + added - freed;
            }
            frames.push(text);
        }
        let Some(ch) = channels.map.get_mut(channel) else {
            return;
        };
        if !frames.is_empty() {
            self.fan_out_run(subscribers(&ch.subscribers), &frames);
        }
        if !keep_history {
            if ch.is_idle() {
                channels.map.remove(channel);
                self.room.give_back();
            }
            return;
        }
        if channels.history_bytes > self.limits.history.max_bytes {
            channels.trim_history(self.limits.history.max_bytes / 10 * 9, &self.room);
        }
        self.memory.set_history(channels.history_bytes);
    }

    /// Trims history to `target` bytes, oldest first (the memory guard's last resort).
    pub fn trim_history(&self, target: usize) {
        let mut channels = self.channels();
        channels.trim_history(target, &self.room);
        self.memory.set_history(channels.history_bytes);
    }

    pub fn broadcast(&self, text: &Frame) {
        let clients = self.clients.read().unwrap_or_else(|p| p.into_inner());
        self.fan_out(clients.iter().map(|found| &found.0), text);
    }

    /// Queues for one client; false when it is not connected.
    pub fn send(&self, client_id: &str, text: Frame) -> bool {
        match self.client(client_id) {
            Some(client) => {
                self.deliver(&client, text);
                true
            }
            None => false,
        }
    }

    /// A channel's history as a JSON array text.
    pub fn history_json(&self, channel: &str) -> String {
        let channels = self.channels();
        let mut out = String::from("[");
        if let Some(ch) = channels.map.get(channel) {
            for (i, entry) in ch.log.history.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(entry.text.as_str());
            }
        }
        out.push(']');
        out
    }

    /// Drops expired history and jobs, and reclaims idle channels.
    pub fn expire_history(&self, now: Instant) {
        let ttl = Duration::from_millis(self.limits.history.ttl_ms);
        let mut channels = self.channels();
        self.jobs().expire(crate::time::unix_millis());
        let channels = &mut *channels;
        let mut freed = 0;
        let mut removed = 0;
        channels.map.retain(|_, ch| {
            freed += ch.log.history.expire(now, ttl);
            let keep = !ch.is_idle();
            removed += usize::from(!keep);
            keep
        });
        for _ in 0..removed {
            self.room.give_back();
        }
        channels.history_bytes -= freed;
        self.memory.set_history(channels.history_bytes);
    }

    pub fn size(&self) -> HubSize {
        let channels = self.channels();
        HubSize {
            channels: channels.map.len(),
            subscriptions: channels.subscriptions,
            history_bytes: channels.history_bytes,
        }
    }
}

/// The reply of `GET /api/jobs/{sessionId}`.
pub(crate) fn jobs_reply(session: &str, position: &Position, jobs: Option<&str>) -> String {
    format!(
        "{{\"sessionId\":{},\"seq\":{},\"epoch\":{},\"jobs\":{}}}",
        serde_json::to_string(session).expect("strings serialize"),
        position.seq,
        serde_json::to_string(&position.epoch).expect("strings serialize"),
        jobs.unwrap_or("[]")
    )
}

impl Channels {
    /// The channel for a client's subscribe, created if there is room above the part
    /// of the table kept for the host.
    fn get_or_create_for_client(&mut self, name: &str, hub: &Fanout) -> Result<&mut Channel> {
        if !self.map.contains_key(name) {
            if !hub.room.take_for_client() {
                Counters::add(&hub.counters.channels_rejected, 1);
                return Err(Error::new(
                    ErrorKind::Limit,
                    format!(
                        "channel limit reached ({} channels, the last tenth kept for the host)",
                        hub.limits.max_channels
                    ),
                ));
            }
            return Ok(self.create(name, hub));
        }
        Ok(self.map.get_mut(name).expect("just checked"))
    }

    /// Creates a channel; its place in the table was taken by the caller.
    fn create(&mut self, name: &str, hub: &Fanout) -> &mut Channel {
        let key: Arc<str> = name.into();
        // With a remote broker the position is the broker's, learnt when the first
        // subscribe reads it or the first publication arrives.
        let epoch: Arc<str> = match &hub.shared_broker {
            Some(broker) => {
                broker.watch(&key);
                "".into()
            }
            None => {
                self.epochs_issued += 1;
                format!("{}{}", hub.epoch_seed, self.epochs_issued).into()
            }
        };
        let channel = Channel {
            name: Arc::clone(&key),
            subscribers: HashSet::new(),
            log: ChannelLog::new(epoch),
            pinned: 0,
            pending: Vec::new(),
        };
        self.map.entry(key).or_insert(channel)
    }

    /// Gives back a publication's hold: a place to the room, or a pin to its channel.
    fn release(&mut self, name: &str, hold: ChannelHold, room: &ChannelRoom) {
        match hold {
            ChannelHold::Place => room.give_back(),
            ChannelHold::Pinned => {
                if let Some(ch) = self.map.get_mut(name) {
                    ch.pinned -= 1;
                    if ch.is_idle() {
                        self.map.remove(name);
                        room.give_back();
                    }
                }
            }
        }
    }

    fn remove_subscriber(&mut self, name: &str, key: u64, hub: &Fanout) {
        if let Some(ch) = self.map.get_mut(name) {
            let before = ch.pending.len();
            ch.pending.retain(|p| p.key != key || p.after.is_none());
            if ch.subscribers.remove(&key) || ch.pending.len() < before {
                self.subscriptions -= 1;
            }
            if ch.is_idle() {
                self.reclaim(name, hub);
            }
        }
    }

    /// Removes an idle channel: its place goes back to the table, and a remote broker
    /// stops sending it here.
    fn reclaim(&mut self, name: &str, hub: &Fanout) {
        if let Some((key, _)) = self.map.remove_entry(name) {
            hub.room.give_back();
            if let Some(broker) = &hub.shared_broker {
                broker.unwatch(&key);
            }
        }
    }

    /// Drops the oldest entries across all channels until history fits in `target` bytes.
    fn trim_history(&mut self, target: usize, room: &ChannelRoom) {
        let mut oldest: BinaryHeap<Reverse<(Instant, Arc<str>)>> = self
            .map
            .iter()
            .filter_map(|(name, ch)| {
                ch.log
                    .history
                    .oldest_at()
                    .map(|at| Reverse((at, Arc::clone(name))))
            })
            .collect();
        while self.history_bytes > target {
            let Some(Reverse((_, name))) = oldest.pop() else {
                break;
            };
            let Some(ch) = self.map.get_mut(&name) else {
                continue;
            };
            if let Some(entry) = ch.log.history.pop_oldest() {
                self.history_bytes -= entry.cost();
            }
            match ch.log.history.oldest_at() {
                Some(at) => oldest.push(Reverse((at, name))),
                None if ch.is_idle() => {
                    self.map.remove(&name);
                    room.give_back();
                }
                None => {}
            }
        }
    }
}

/// Drops a pending subscribe whose future was dropped (its connection closed) before
/// it finished, so the channel can be reclaimed.
struct PendingGuard<'a> {
    fanout: &'a Fanout,
    channel: Arc<str>,
    key: u64,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut channels = self.fanout.channels();
        if let Some(ch) = channels.map.get_mut(&self.channel) {
            ch.pending.retain(|p| p.key != self.key);
            if ch.is_idle() {
                channels.reclaim(&self.channel, self.fanout);
            }
        }
    }
}
