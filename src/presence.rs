//! Presence: who is in each channel. Every subscriber of a channel is a member, with a
//! short status it sets itself (`online` until it says otherwise). Subscribers that
//! asked for it (`"presence": true` on their subscribe) receive `user_presence` events
//! when a member joins, leaves or changes its status.
//!
//! With the Redis broker each node writes its own members into Redis (a hash of members
//! and a sorted set of deadlines per channel), refreshes their deadlines every third of
//! `presence.ttl_ms`, and announces changes on the channel's PUB/SUB topic; a member
//! whose node stopped refreshing it (the node was killed) is removed once its deadline
//! passes, and its leave is announced by the node that noticed.

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{self, Target};
use crate::shared::Shared;
use crate::transport::wire::Frame;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// A member's status until it sets one.
pub(crate) const DEFAULT_STATUS: &str = "online";
/// The status a leave announces.
const OFFLINE: &str = "offline";

/// One member as clients, hosts and Redis see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Member {
    pub client_id: String,
    pub user_id: Option<String>,
    pub status: String,
}

impl Member {
    fn of(client: &Client, status: &str) -> Member {
        Member {
            client_id: client.id.to_string(),
            user_id: client.user_id.as_deref().map(str::to_string),
            status: status.to_string(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("members always serialize")
    }

    fn gone(mut self) -> Member {
        self.status = OFFLINE.to_string();
        self
    }
}

/// What happened to a member, as `user_presence` events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Join,
    Leave,
    Update,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Join => "join",
            Action::Leave => "leave",
            Action::Update => "update",
        }
    }
}

/// A local member: its client, status, and whether it wants the channel's events.
struct Local {
    client: Arc<Client>,
    status: Arc<str>,
    events: bool,
}

/// Members listed for a query, and how many there are in all.
pub(crate) struct Listing {
    pub members: Vec<Member>,
    pub total: u64,
}

impl Listing {
    pub fn truncated(&self) -> bool {
        (self.members.len() as u64) < self.total
    }

    pub fn members_json(&self) -> String {
        let texts: Vec<String> = self.members.iter().map(Member::to_json).collect();
        format!("[{}]", texts.join(","))
    }

    /// The host's view: `{"channel","members","total","truncated"}`.
    pub fn host_json(&self, channel: &str) -> String {
        format!(
            "{{\"channel\":{},\"members\":{},\"total\":{},\"truncated\":{}}}",
            serde_json::to_string(channel).expect("strings serialize"),
            self.members_json(),
            self.total,
            self.truncated()
        )
    }
}

/// A member's client id and its JSON, as Redis keeps it.
type IdAndJson = (String, String);

/// One channel's local members, by client key.
#[derive(Default)]
struct Members {
    locals: HashMap<u64, Local>,
    /// How many of them want the channel's events: none (the usual case) spares a
    /// join or leave the walk over every member.
    watchers: usize,
}

impl Members {
    fn set_events(&mut self, key: u64, events: bool) {
        if let Some(local) = self.locals.get_mut(&key) {
            if local.events != events {
                local.events = events;
                if events {
                    self.watchers += 1;
                } else {
                    self.watchers -= 1;
                }
            }
        }
    }
}

/// The members on this node, per channel. Bounded by the subscriptions it holds.
#[derive(Default)]
pub(crate) struct Presence {
    channels: Mutex<HashMap<Arc<str>, Members>>,
}

impl Presence {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Members>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member; `Some` when it is new. A member already there only takes the
    /// new wish for events, if the subscribe said one (a recovery's subscribe need not
    /// repeat it).
    fn join(
        &self,
        channel: &Arc<str>,
        client: &Arc<Client>,
        events: Option<bool>,
    ) -> Option<Member> {
        let mut channels = self.lock();
        let members = channels.entry(Arc::clone(channel)).or_default();
        if members.locals.contains_key(&client.key) {
            if let Some(events) = events {
                members.set_events(client.key, events);
            }
            return None;
        }
        let events = events.unwrap_or(false);
        members.watchers += usize::from(events);
        members.locals.insert(
            client.key,
            Local {
                client: Arc::clone(client),
                status: DEFAULT_STATUS.into(),
                events,
            },
        );
        Some(Member::of(client, DEFAULT_STATUS))
    }

    fn leave(&self, channel: &str, client: &Client) -> Option<Member> {
        let mut channels = self.lock();
        let members = channels.get_mut(channel)?;
        let local = members.locals.remove(&client.key)?;
        members.watchers -= usize::from(local.events);
        if members.locals.is_empty() {
            channels.remove(channel);
        }
        Some(Member::of(client, &local.status))
    }

    /// Sets a member's status; `None` when the client is not a member.
    fn set_status(&self, channel: &str, client: &Client, status: &str) -> Option<Member> {
        let mut channels = self.lock();
        let local = channels.get_mut(channel)?.locals.get_mut(&client.key)?;
        local.status = status.into();
        Some(Member::of(client, status))
    }

    /// The local members that asked for the channel's events.
    fn watchers(&self, channel: &str) -> Vec<Arc<Client>> {
        let channels = self.lock();
        let Some(members) = channels.get(channel).filter(|m| m.watchers > 0) else {
            return Vec::new();
        };
        members
            .locals
            .values()
            .filter(|m| m.events)
            .map(|m| Arc::clone(&m.client))
            .collect()
    }

    /// At most `limit` local members, in the order they joined.
    fn list(&self, channel: &str, limit: usize) -> Listing {
        let channels = self.lock();
        let Some(members) = channels.get(channel) else {
            return Listing {
                members: Vec::new(),
                total: 0,
            };
        };
        let members = &members.locals;
        let mut keys: Vec<&u64> = members.keys().collect();
        keys.sort_unstable();
        Listing {
            members: keys
                .into_iter()
                .take(limit)
                .map(|key| {
                    let local = &members[key];
                    Member::of(&local.client, &local.status)
                })
                .collect(),
            total: members.len() as u64,
        }
    }

    /// Every local member's client id and JSON, per channel, for a refresh in Redis.
    fn snapshot(&self) -> Vec<(Arc<str>, Vec<IdAndJson>)> {
        self.lock()
            .iter()
            .map(|(channel, members)| {
                let listed = members
                    .locals
                    .values()
                    .map(|m| {
                        let member = Member::of(&m.client, &m.status);
                        (member.client_id.clone(), member.to_json())
                    })
                    .collect();
                (Arc::clone(channel), listed)
            })
            .collect()
    }
}

fn enabled(shared: &Shared) -> bool {
    shared.config.presence.enabled
}

/// Tells this node's watchers of `channel`, and with Redis every other node's.
/// `through_redis`: also write the change (false when the caller wrote it already).
async fn announce(shared: &Shared, channel: &str, action: Action, member: &Member) {
    let watchers = shared.presence.watchers(channel);
    if watchers.is_empty() && shared.broker.is_none() {
        return; // nobody to tell
    }
    let frame = protocol::user_presence(channel, action.as_str(), &member.to_json());
    if !watchers.is_empty() {
        shared.fanout.fan_out(watchers.iter(), &frame);
    }
    let Some(broker) = &shared.broker else {
        return;
    };
    let ttl = shared.config.presence.ttl_ms;
    let written = match action {
        Action::Join | Action::Update => {
            broker
                .presence_set(
                    channel,
                    &member.client_id,
                    &member.to_json(),
                    ttl,
                    frame.as_str(),
                )
                .await
        }
        Action::Leave => {
            broker
                .presence_remove(channel, &member.client_id, frame.as_str())
                .await
        }
    };
    if let Err(e) = written {
        // The next refresh or the member's expiry puts Redis right.
        tracing::debug!(channel, error = %e, "presence: redis write failed");
    }
}

/// A client joined `channel` (or subscribed again, possibly changing its wish for
/// events).
pub(crate) async fn joined(
    shared: &Shared,
    client: &Arc<Client>,
    channel: &Arc<str>,
    events: Option<bool>,
) {
    if !enabled(shared) {
        return;
    }
    if let Some(member) = shared.presence.join(channel, client, events) {
        announce(shared, channel, Action::Join, &member).await;
    }
}

/// A client left these channels (unsubscribed or disconnected).
pub(crate) async fn left(shared: &Shared, client: &Client, channels: &[Arc<str>]) {
    if !enabled(shared) {
        return;
    }
    for channel in channels {
        if let Some(member) = shared.presence.leave(channel, client) {
            announce(shared, channel, Action::Leave, &member.gone()).await;
        }
    }
}

/// Why a client's presence message was refused: an `error` code and message.
pub(crate) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// A client's `presence` message: sets its status when given (it must be a member),
/// then answers with the members. Asking is authorized like a subscribe: a member may,
/// anyone else only if it may subscribe (the authorizer sees `action: "presence"`).
pub(crate) async fn client_request(
    shared: &Shared,
    client: &Arc<Client>,
    target: &Target,
    status: Option<&str>,
) -> std::result::Result<Frame, Refusal> {
    if !enabled(shared) {
        return Err(Refusal::new(
            "presence_disabled",
            "presence is turned off on this server",
        ));
    }
    let channel = target.channel();
    if let Some(status) = status {
        let Some(member) = shared.presence.set_status(&channel, client, status) else {
            return Err(Refusal::new(
                "not_subscribed",
                format!("subscribe to {channel:?} before setting a status there"),
            ));
        };
        announce(shared, &channel, Action::Update, &member).await;
    } else if !client.is_subscribed(&channel)
        && !shared
            .auth
            .may(
                crate::auth::AuthAction::Presence,
                &client.id,
                client.user_id.as_deref(),
                &client.grants,
                &channel,
            )
            .await
    {
        return Err(Refusal::new(
            "forbidden",
            format!("not allowed to see who is in {channel:?}"),
        ));
    }
    let listing = list(shared, &channel)
        .await
        .map_err(|e| Refusal::new(e.kind().as_str(), e.message()))?;
    Ok(protocol::presence_members(
        target,
        &listing.members_json(),
        listing.total,
        listing.truncated(),
    ))
}

fn check_enabled(shared: &Shared) -> Result<()> {
    if enabled(shared) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            "presence is turned off (presence.enabled is false)",
        ))
    }
}

/// Who is in `channel` on this node (all of it with the in-memory broker).
pub(crate) fn list_local(shared: &Shared, channel: &str) -> Result<Listing> {
    check_enabled(shared)?;
    Ok(shared
        .presence
        .list(channel, shared.config.presence.max_members))
}

/// Who is in `channel`: this node's members, or with Redis every node's.
pub(crate) async fn list(shared: &Shared, channel: &str) -> Result<Listing> {
    let Some(broker) = &shared.broker else {
        return list_local(shared, channel);
    };
    check_enabled(shared)?;
    let limit = shared.config.presence.max_members;
    let (gone, total, members) = broker.presence_list(channel, limit).await?;
    announce_expired(shared, channel, gone).await;
    Ok(Listing {
        members: members.iter().filter_map(|m| parse_member(m)).collect(),
        total,
    })
}

fn parse_member(json: &str) -> Option<Member> {
    serde_json::from_str(json).ok()
}

/// Members Redis expired (their node stopped refreshing them): their leave, to this
/// node's watchers and every other node's.
async fn announce_expired(shared: &Shared, channel: &str, gone: Vec<String>) {
    let members = gone
        .iter()
        .filter_map(|m| parse_member(m))
        .map(Member::gone);
    announce_noticed(shared, channel, Action::Leave, members).await;
}

/// Changes this node noticed in Redis (which holds them already): to this node's
/// watchers and every other node's.
async fn announce_noticed(
    shared: &Shared,
    channel: &str,
    action: Action,
    members: impl Iterator<Item = Member>,
) {
    let Some(broker) = &shared.broker else {
        return;
    };
    for member in members {
        let frame = protocol::user_presence(channel, action.as_str(), &member.to_json());
        let watchers = shared.presence.watchers(channel);
        if !watchers.is_empty() {
            shared.fanout.fan_out(watchers.iter(), &frame);
        }
        if let Err(e) = broker.presence_announce(channel, frame.as_str()).await {
            tracing::debug!(channel, error = %e, "presence: cannot announce a change");
        }
    }
}

/// A change another node announced on the channel's topic: to this node's watchers.
pub(crate) fn deliver_remote(shared: &Shared, channel: &str, frame_text: &str) {
    let watchers = shared.presence.watchers(channel);
    if !watchers.is_empty() {
        let frame = Frame::text(frame_text);
        shared.fanout.fan_out(watchers.iter(), &frame);
    }
}

/// With Redis: every third of the ttl, extends this node's members' deadlines (putting
/// back, with a join, any that another node swept while this one was late) and removes
/// (announcing their leave) the members of its channels whose deadline passed.
pub(crate) async fn keeper(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Some(broker) = shared.broker.clone() else {
        return;
    };
    let ttl = shared.config.presence.ttl_ms;
    let period = Duration::from_millis((ttl / 3).max(30));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticks.tick() => {}
        }
        if !broker.is_connected() {
            continue;
        }
        for (channel, members) in shared.presence.snapshot() {
            match broker.presence_refresh(&channel, &members, ttl).await {
                Ok((gone, rejoined)) => {
                    announce_expired(&shared, &channel, gone).await;
                    let rejoined = rejoined.iter().filter_map(|m| parse_member(m));
                    announce_noticed(&shared, &channel, Action::Join, rejoined).await;
                }
                Err(e) => {
                    tracing::debug!(channel = %channel, error = %e, "presence: refresh failed");
                    break;
                }
            }
        }
    }
}
