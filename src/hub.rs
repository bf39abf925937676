//! The hub: who is connected, which channels exist, who listens to each, and what
//! each channel published recently. Publishing and subscribing take the same lock,
//! so a subscriber's replay and its live messages never overlap or leave a gap.

use crate::client::{Client, Delivery, Outbound};
use crate::config::HistoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::history::{Entry, History};
use crate::protocol::{self, OpenObject, Position, Since, Target};
use crate::stats::Counters;
use crate::wire::Frame;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

pub(crate) struct HubLimits {
    pub history: HistoryConfig,
    pub max_channels: usize,
    pub max_subscriptions_per_client: usize,
}

pub(crate) struct Hub {
    clients: RwLock<HashMap<Arc<str>, Arc<Client>>>,
    channels: Mutex<Channels>,
    limits: HubLimits,
    epoch_seed: String,
    counters: Arc<Counters>,
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
    subscribers: HashMap<u64, Arc<Client>>,
    seq: u64,
    epoch: Arc<str>,
    history: History,
}

impl Channel {
    fn position(&self) -> Position {
        Position {
            seq: self.seq,
            epoch: self.epoch.to_string(),
        }
    }

    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.history.is_empty()
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

impl Hub {
    pub fn new(limits: HubLimits, epoch_seed: String, counters: Arc<Counters>) -> Hub {
        Hub {
            clients: RwLock::default(),
            channels: Mutex::default(),
            limits,
            epoch_seed,
            counters,
        }
    }

    fn channels(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, client: &Client, message: impl Into<Outbound>) {
        match client.enqueue(message) {
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
            .insert(Arc::clone(&client.id), client);
    }

    /// Removes a client and all its subscriptions.
    pub fn unregister(&self, client: &Client) {
        self.clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&client.id);
        let mut channels = self.channels();
        let subscribed = std::mem::take(
            &mut *client
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for name in subscribed {
            channels.remove_subscriber(&name, client.key);
        }
    }

    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
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
        let already = client
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|subscribed| **subscribed == *name);
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
        let channel = channels.get_or_create(&name, self, true)?;
        let name = Arc::clone(&channel.name);
        let position = channel.position();
        let recovered = since.map(|since| {
            let replay = if *since.epoch == *channel.epoch {
                channel.history.after(since.seq, channel.seq)
            } else {
                None
            };
            match replay {
                Some(entries) => {
                    if reply {
                        client.enqueue(protocol::subscribed(target, &position, Some(true)));
                    }
                    let missed: Vec<Frame> = entries.map(|entry| entry.text.clone()).collect();
                    if !missed.is_empty() {
                        self.deliver(client, Outbound::Replay(missed));
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
        let newly_subscribed = channel
            .subscribers
            .insert(client.key, Arc::clone(client))
            .is_none();
        if newly_subscribed {
            channels.subscriptions += 1;
            client
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Arc::clone(&name));
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
            channels.remove_subscriber(name, client.key);
        }
        left
    }

    // -- publishing -------------------------------------------------------

    /// Publishes to a channel: assigns the next seq, keeps it in history, and queues
    /// the one serialized text for every subscriber.
    pub fn publish(&self, channel: &str, message: OpenObject) {
        Counters::add(&self.counters.publications, 1);
        let mut channels = self.channels();
        let keep_history = self.limits.history.size > 0;
        let channels = &mut *channels;
        let exists = channels.map.contains_key(channel);
        if !exists && !keep_history {
            return; // nobody listens and nothing is kept
        }
        let ch = match channels.get_or_create(channel, self, false) {
            Ok(ch) => ch,
            Err(_) => {
                Counters::add(&self.counters.channels_rejected, 1);
                return;
            }
        };
        ch.seq += 1;
        let text = message.close_with_position(ch.seq, &ch.epoch);
        for client in ch.subscribers.values() {
            self.deliver(client, text.clone());
        }
        if keep_history {
            let entry = Entry {
                seq: ch.seq,
                text,
                at: Instant::now(),
            };
            let added = entry.cost();
            let freed = ch.history.push(entry, self.limits.history.size);
            channels.history_bytes = channels.history_bytes + added - freed;
            if channels.history_bytes > self.limits.history.max_bytes {
                channels.trim_history(self.limits.history.max_bytes / 10 * 9);
            }
        }
    }

    pub fn broadcast(&self, text: &Frame) {
        for client in self
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            self.deliver(client, text.clone());
        }
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
            for (i, entry) in ch.history.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(entry.text.as_str());
            }
        }
        out.push(']');
        out
    }

    /// Drops expired history and reclaims idle channels.
    pub fn expire_history(&self, now: Instant) {
        let ttl = Duration::from_millis(self.limits.history.ttl_ms);
        let mut channels = self.channels();
        let channels = &mut *channels;
        let mut freed = 0;
        channels.map.retain(|_, ch| {
            freed += ch.history.expire(now, ttl);
            !ch.is_idle()
        });
        channels.history_bytes -= freed;
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

impl Channels {
    fn get_or_create(
        &mut self,
        name: &str,
        hub: &Hub,
        counted_rejection: bool,
    ) -> Result<&mut Channel> {
        if !self.map.contains_key(name) {
            if self.map.len() >= hub.limits.max_channels {
                if counted_rejection {
                    Counters::add(&hub.counters.channels_rejected, 1);
                }
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "channel limit reached ({} channels)",
                        hub.limits.max_channels
                    ),
                ));
            }
            self.epochs_issued += 1;
            let epoch: Arc<str> = format!("{}{}", hub.epoch_seed, self.epochs_issued).into();
            let key: Arc<str> = name.into();
            let channel = Channel {
                name: Arc::clone(&key),
                subscribers: HashMap::new(),
                seq: 0,
                epoch,
                history: History::default(),
            };
            self.map.insert(key, channel);
        }
        Ok(self.map.get_mut(name).expect("just ensured"))
    }

    fn remove_subscriber(&mut self, name: &str, key: u64) {
        if let Some(ch) = self.map.get_mut(name) {
            if ch.subscribers.remove(&key).is_some() {
                self.subscriptions -= 1;
            }
            if ch.is_idle() {
                self.map.remove(name);
            }
        }
    }

    /// Drops the oldest entries across all channels until history fits in `target` bytes.
    fn trim_history(&mut self, target: usize) {
        let mut oldest: BinaryHeap<Reverse<(Instant, Arc<str>)>> = self
            .map
            .iter()
            .filter_map(|(name, ch)| {
                ch.history
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
            if let Some(entry) = ch.history.pop_oldest() {
                self.history_bytes -= entry.cost();
            }
            match ch.history.oldest_at() {
                Some(at) => oldest.push(Reverse((at, name))),
                None if ch.is_idle() => {
                    self.map.remove(&name);
                }
                None => {}
            }
        }
    }
}
