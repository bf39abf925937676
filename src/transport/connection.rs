//! One WebSocket connection, served by one task: it reads and answers the client's
//! frames and writes the client's queue, many pre-encoded frames per `writev`.

use crate::auth::Credentials;
use crate::client::{Client, CloseReason, Outbound};
use crate::events::Event;
use crate::limits::{RateLimiter, SocketSlot, Verdict};
use crate::metrics::Stamp;
use crate::protocol::{self, ClientMessage, Since, Target};
use crate::shared::Shared;
use crate::stats::Counters;
use crate::time::now_iso;
use crate::transport::websocket::WebSocket;
use crate::transport::wire::{WireIo, PING};
use crate::transport::write_pass::RawFd;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Log target: the module's name before the transport folder, which hosts filter on.
const LOG_TARGET: &str = "herald::connection";

/// Most queue entries moved to the socket at a time.
const MAX_BATCH: usize = 256;
/// Most client frames handled per poll before the task yields to others.
const READS_PER_POLL: usize = 32;
/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the client's handshake carried.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    pub credentials: Credentials,
    pub session_id: Option<String>,
    pub since: Option<Since>,
}

/// An accepted WebSocket upgrade, waiting for hyper to hand over the socket.
pub(crate) struct Upgrade {
    pub on_upgrade: OnUpgrade,
    pub max_message_size: usize,
    pub handshake: Handshake,
    pub remote: SocketAddr,
    /// The plain TCP socket under the upgrade, which write passes may write to.
    pub socket: Option<RawFd>,
}

/// The socket a connection serves: the stream hyper upgraded (TCP or TLS), held
/// directly rather than behind hyper's boxed, type-erased `Upgraded`.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Socket for S {}

/// What the HTTP side hands over once it has accepted a WebSocket upgrade.
pub(crate) struct Accepted {
    pub shared: Arc<Shared>,
    pub upgrade: Box<Upgrade>,
    pub slot: SocketSlot,
}

/// Serves one socket of type `S` in one task, from its first byte to its close:
/// `http` speaks HTTP (and TLS, if any) until the client upgrades or goes, then the
/// connection is served. One task, not one for HTTP and one for the WebSocket: every
/// task costs the runtime an allocation aligned to 128 bytes, and the allocator leaves
/// a gap beside each one.
pub(crate) fn serve<S: Socket>(
    http: impl Future<Output = Option<Accepted>> + Send + 'static,
) -> impl Future<Output = ()> + Send {
    Serve::<S>::Step(Box::pin(async move {
        let Accepted {
            shared,
            upgrade,
            slot,
        } = http.await?;
        open::<S>(shared, upgrade, slot).await
    }))
}

/// A step that runs once (the upgrade, the authorizer, the URL's subscriptions, or the
/// close); it yields the open connection, or nothing once the connection is over.
type Step<S> = Pin<Box<dyn Future<Output = Option<Box<Connection<S>>>> + Send>>;

/// The task of one connection. Idle connections are most of a server's memory, and a
/// task's memory is its future, rounded up to 128 bytes with the runtime's bookkeeping:
/// so the task holds one pointer (16 bytes with its vtable). What runs once runs in a
/// boxed future freed when done; the open connection is boxed too, at its own size.
enum Serve<S> {
    Step(Step<S>),
    Open(Box<Connection<S>>),
}

/// A step for a task that is over: it allocates nothing (a zero-sized future), and
/// keeps the task's future small (no third state).
fn over<S: Socket>() -> Step<S> {
    Box::pin(poll_fn(|_| Poll::Ready(None)))
}

impl<S: Socket> Future for Serve<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Serve::Step(step) => match ready!(step.as_mut().poll(cx)) {
                    Some(connection) => *this = Serve::Open(connection),
                    None => {
                        *this = Serve::Step(over());
                        return Poll::Ready(());
                    }
                },
                Serve::Open(connection) => {
                    let ending = ready!(connection.poll_open(cx));
                    let Serve::Open(connection) = std::mem::replace(this, Serve::Step(over()))
                    else {
                        unreachable!("matched as open above");
                    };
                    *this = Serve::Step(Box::pin(async move {
                        connection.close(ending).await;
                        None
                    }));
                }
            }
        }
    }
}

/// Completes the upgrade, authenticates the client, registers it and makes the URL's
/// subscriptions; `None` when the upgrade fails or the client is refused.
async fn open<S: Socket>(
    shared: Arc<Shared>,
    upgrade: Box<Upgrade>,
    slot: SocketSlot,
) -> Option<Box<Connection<S>>> {
    let Upgrade {
        on_upgrade,
        max_message_size,
        handshake,
        remote,
        socket,
    } = *upgrade;
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(target: LOG_TARGET, %remote, error = %e, "upgrade failed");
            return None;
        }
    };
    // hyper holds the socket boxed behind a trait object (48 bytes in the connection,
    // and a heap block of its own): taken back out, the connection holds it directly.
    let parts = match upgraded.downcast::<TokioIo<S>>() {
        Ok(parts) => parts,
        Err(_) => {
            tracing::error!(target: LOG_TARGET, %remote, "upgraded socket of an unexpected type");
            return None;
        }
    };
    let io = WireIo::new(parts.io.into_inner());
    let mut ws = WebSocket::server(io, max_message_size);
    // What the client sent right after its upgrade request, which hyper read already,
    // comes first.
    ws.push_input(&parts.read_buf);
    // The credentials (every request header, the token) are needed only for the
    // authorizer: dropped as soon as it has answered.
    let Handshake {
        credentials,
        session_id,
        since,
    } = handshake;
    let identity = shared.auth.connect(&credentials, &remote.to_string()).await;
    drop(credentials);
    let identity = match identity {
        Ok(identity) => identity,
        Err(why) => {
            // Closing right after the handshake is what a browser can observe (1008).
            Counters::add(&shared.counters.auth_failures, 1);
            tracing::debug!(target: LOG_TARGET, %remote, why, "unauthorized");
            let reason = Utf8Bytes::from_static("Unauthorized");
            let frame = CloseFrame {
                code: CloseCode::Policy,
                reason,
            };
            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(Some(frame))).await;
            return None;
        }
    };
    let user_id = identity.user_id;
    let client = shared.new_client(
        user_id.as_deref(),
        session_id.as_deref(),
        identity.grants,
        remote,
    );
    if let Some(socket) = socket {
        client.allow_direct_writes(socket);
    }
    client.enqueue(protocol::connection(&client.id));
    shared.fanout.register(Arc::clone(&client));
    Counters::add(&shared.counters.total_connections, 1);
    Counters::add(&shared.counters.active_connections, 1);
    tracing::debug!(target: LOG_TARGET,
        client = %client.id,
        user = user_id.as_deref().unwrap_or("-"),
        session = session_id.as_deref().unwrap_or("-"),
        %remote,
        "client connected"
    );
    // The URL's subscriptions exist before the host hears of the client, so a host that
    // notifies a session as soon as it sees `connected` cannot race them.
    let mut subscribed = Vec::new();
    if let Some(user) = &user_id {
        let own = Target::Channel(protocol::user_channel(user));
        subscribed.extend(subscribe(&shared, &client, &own, None, false, None).await);
    }
    if let Some(session) = &session_id {
        // A `since` in the URL is answered like a subscribe message with `since`.
        let reply = since.is_some();
        let target = Target::Session(session.clone());
        subscribed.extend(subscribe(&shared, &client, &target, since.as_ref(), reply, None).await);
    }
    shared.events.push(Event::Connected {
        client_id: client.id.to_string(),
        user_id: user_id.clone(),
        session_id: session_id.clone(),
        remote_addr: remote.to_string(),
        timestamp: now_iso(),
    });
    for event in subscribed {
        shared.events.push(event);
    }
    // Not `is_stopping`: a stop first dispatches the host calls made before it, and a
    // client closed before that would miss them.
    if shared.is_closing_clients() {
        client.request_close(CloseReason::Shutdown);
    }

    let rate = RateLimiter::new(&shared.config.rate_limit, shared.now_ms());
    // The connection releases the slot itself, from the client's address.
    let slot_ip = slot.detach();
    debug_assert_eq!(slot_ip, client.remote_addr.ip());
    Some(Box::new(Connection {
        shared,
        client,
        ws,
        rate,
        in_flight: None,
        unsent: 0,
        oldest_unsent: None,
        holds_slot: true,
    }))
}

/// Why an open connection ends, with the close frame the peer sent if it sent one
/// (handed to the close, not kept by every open connection).
struct Ending {
    reason: CloseReason,
    peer_close: Option<CloseFrame>,
}

impl From<CloseReason> for Ending {
    fn from(reason: CloseReason) -> Self {
        Ending {
            reason,
            peer_close: None,
        }
    }
}

/// A subscribe waiting for the host's authorizer.
type InFlight = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An open connection, served by one task: it reads the client's frames, answers them,
/// and writes the client's queue, many frames per write.
struct Connection<S> {
    shared: Arc<Shared>,
    client: Arc<Client>,
    ws: WebSocket<S>,
    rate: RateLimiter,
    /// While a subscribe waits for the authorizer, reading pauses (the client's
    /// messages are answered in order) but writing goes on.
    in_flight: Option<InFlight>,
    /// Messages handed to the socket and not yet written.
    unsent: u32,
    /// The stamp of the oldest host message among them, observed once they are written.
    oldest_unsent: Option<Stamp>,
    /// The socket still counts against the connection limits (global and per IP).
    holds_slot: bool,
}

impl<S> Drop for Connection<S> {
    /// However the task ends (a runtime dropping it too), no write pass may use the
    /// socket once it is closed: forgotten before the fields (the socket) drop.
    fn drop(&mut self) {
        self.client.forget_socket();
        self.release_slot();
    }
}

impl<S> Connection<S> {
    /// Stops counting the socket against the connection limits (once).
    fn release_slot(&mut self) {
        if std::mem::take(&mut self.holds_slot) {
            self.shared.sockets.release(self.client.remote_addr.ip());
        }
    }
}

impl<S: Socket> Connection<S> {
    /// Serves the connection until it must close, and says why.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        self.client.register_waker(cx.waker());
        // Write passes stay off the socket while this task may write to it.
        self.client.unpark_writer();
        if let Some(reason) = self.client.close_requested() {
            return Poll::Ready(reason.into());
        }
        if self.client.take_ping_request() {
            self.ws.get_mut().push_control(PING);
        }
        // Reading first: the replies it queues go out with this poll's write.
        if let Poll::Ready(reason) = self.poll_read(cx) {
            return Poll::Ready(reason);
        }
        let written = self.poll_write(cx);
        self.account_writer();
        match written {
            Poll::Ready(Err(e)) => {
                tracing::debug!(target: LOG_TARGET, client = %self.client.id, error = %e, "write failed");
                Poll::Ready(CloseReason::PeerGone.into())
            }
            Poll::Ready(Ok(())) => {
                // Nothing left to write: a write pass may write for it until it runs again.
                self.client.park_writer();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Tells the client what its writer holds (its byte budget and the server's memory
    /// bound count it) and whether the socket is taking bytes (a socket that takes none
    /// for the heartbeat timeout is evicted).
    fn account_writer(&mut self) {
        let wire = self.ws.get_mut();
        let (pending, progressed) = (wire.queued_bytes(), wire.take_progress());
        self.client.set_wire_bytes(pending);
        if pending == 0 {
            self.client.clear_write_stall();
        } else {
            self.client.note_write(self.shared.now_ms(), progressed);
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        for _ in 0..READS_PER_POLL {
            if let Some(in_flight) = &mut self.in_flight {
                if in_flight.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.in_flight = None;
            }
            let message = match ready!(self.ws.poll_next(cx)) {
                Some(Ok(message)) => message,
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    Counters::add(&self.shared.counters.oversized_messages, 1);
                    tracing::debug!(target: LOG_TARGET, client = %self.client.id, size, max_size, "closing: message too big");
                    return Poll::Ready(CloseReason::MessageTooBig.into());
                }
                Some(Err(WsError::Utf8(_))) => {
                    Counters::add(&self.shared.counters.protocol_errors, 1);
                    tracing::debug!(target: LOG_TARGET, client = %self.client.id, "closing: invalid UTF-8");
                    return Poll::Ready(CloseReason::InvalidPayload.into());
                }
                Some(Err(WsError::Protocol(e)))
                    if !matches!(e, ProtocolError::ResetWithoutClosingHandshake) =>
                {
                    Counters::add(&self.shared.counters.protocol_errors, 1);
                    tracing::debug!(target: LOG_TARGET, client = %self.client.id, error = %e, "closing: protocol error");
                    return Poll::Ready(CloseReason::ProtocolError.into());
                }
                Some(Err(e)) => {
                    tracing::debug!(target: LOG_TARGET, client = %self.client.id, error = %e, "read failed");
                    return Poll::Ready(CloseReason::PeerGone.into());
                }
                None => return Poll::Ready(CloseReason::PeerGone.into()),
            };
            if let Some(ending) = self.on_message(message) {
                return Poll::Ready(ending);
            }
        }
        // A client that keeps sending yields to the others; it is polled again soon.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Moves the client's queue to the socket and writes it, until the queue is empty
    /// or the socket is full. The queue is taken in batches so that a client that does
    /// not read keeps its backlog in the queue, where its bound evicts it.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let wire = self.ws.get_mut();
            if wire.queued() < MAX_BATCH {
                self.client.take_queued(MAX_BATCH, |entries| {
                    wire.reserve(entries.len());
                    for entry in entries {
                        self.unsent = self.unsent.saturating_add(push_entry(
                            wire,
                            entry,
                            &mut self.oldest_unsent,
                        ));
                    }
                });
            }
            // Done only once a take finds the queue empty (nothing was moved, so nothing is
            // on the socket): the queue wakes this task only when it goes from empty to
            // non-empty, so what it still holds must be taken now, not on a later wake.
            if wire.queued() == 0 {
                return Poll::Ready(Ok(()));
            }
            ready!(self.ws.get_mut().poll_send(cx))?;
            self.credit_sent();
        }
    }

    fn credit_sent(&mut self) {
        if self.unsent > 0 {
            let unsent = u64::from(self.unsent);
            Counters::add(&self.shared.counters.messages_sent, unsent);
            Counters::add(&self.client.messages_sent, unsent);
            self.unsent = 0;
        }
        if let Some(stamp) = self.oldest_unsent.take() {
            self.shared.latency.observe(stamp);
        }
    }

    /// Handles one frame from the client; a reason to close ends the connection.
    fn on_message(&mut self, message: Message) -> Option<Ending> {
        let (shared, client) = (&self.shared, &self.client);
        let now_ms = shared.now_ms();
        client.touch(now_ms);
        let data = matches!(message, Message::Text(_) | Message::Binary(_));
        if data {
            Counters::add(&shared.counters.messages_received, 1);
        }
        // Control frames are traffic too: a ping flood costs the server a pong each.
        if !matches!(message, Message::Close(_)) {
            match self.rate.check(now_ms, &shared.config.rate_limit) {
                Verdict::Accept => {}
                Verdict::Refuse => {
                    Counters::add(&shared.counters.rate_limited, 1);
                    // A refused ping gets no error reply: the reply would be the cost.
                    if data {
                        client.enqueue(protocol::error(
                            "rate_limited",
                            "too many messages; slow down",
                        ));
                    }
                    return None;
                }
                Verdict::Close => {
                    Counters::add(&shared.counters.rate_limit_closes, 1);
                    return Some(CloseReason::RateLimited.into());
                }
            }
        }
        match message {
            Message::Text(text) => self.in_flight = handle_text(shared, client, &text),
            Message::Binary(_) => reject(
                shared,
                client,
                "binary frames are not supported; send JSON text",
            ),
            Message::Close(peer_close) => {
                return Some(Ending {
                    reason: CloseReason::PeerGone,
                    peer_close,
                });
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        None
    }

    /// Closes the connection for `reason` (unless an earlier close request wins), then
    /// forgets the client and tells the host.
    async fn close(mut self: Box<Self>, ending: Ending) {
        let peer_close = self.close_handshake(ending).await;
        self.release_slot();
        let (shared, client) = (&self.shared, &self.client);
        let channels = client
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        shared.fanout.unregister(client);
        // Before the connection stops counting as active, so a stop waits for it.
        crate::presence::left(shared, client, &channels).await;
        client.set_wire_bytes(0);
        client.mark_closed();
        Counters::add(&shared.counters.active_connections, u64::MAX); // wrapping -1
        let (code, reason) = match (client.close_requested(), peer_close) {
            (Some(r), _) if r != CloseReason::PeerGone => (Some(r.code()), r.text().to_string()),
            (_, Some(frame)) => (Some(u16::from(frame.code)), frame.reason.to_string()),
            _ => (None, "connection lost".to_string()),
        };
        let shown_code = code.map_or_else(|| "none".to_string(), |c| c.to_string());
        tracing::debug!(target: LOG_TARGET, client = %client.id, code = %shown_code, %reason, "client closed");
        shared.events.push(Event::Disconnected {
            client_id: client.id.to_string(),
            user_id: client.user_id.as_deref().map(str::to_string),
            session_id: client.session_id.as_deref().map(str::to_string),
            code,
            reason,
            timestamp: now_iso(),
        });
        shared.connection_closed.notify_waiters();
    }

    /// Drains or drops the queue as `reason` says, sends the close frame and waits a
    /// moment for the peer's; returns the peer's close frame, if it sent one.
    async fn close_handshake(&mut self, ending: Ending) -> Option<CloseFrame> {
        let Ending {
            reason,
            mut peer_close,
        } = ending;
        self.client.request_close(reason);
        let reason = self.client.close_requested().unwrap_or(reason);
        let left = self.client.close_queue();
        if reason.delivers_queue() {
            // What was queued goes out before the close frame. A stop's own deadline
            // bounds its drain; any other drain gets the close grace period.
            let wire = self.ws.get_mut();
            for entry in left {
                self.unsent =
                    self.unsent
                        .saturating_add(push_entry(wire, entry, &mut self.oldest_unsent));
            }
            self.client.set_wire_bytes(wire.queued_bytes());
            let drain = poll_fn(|cx| self.ws.get_mut().poll_send(cx));
            let drained = if reason == CloseReason::Shutdown {
                drain.await.is_ok()
            } else {
                matches!(tokio::time::timeout(CLOSE_GRACE, drain).await, Ok(Ok(())))
            };
            if !drained {
                return peer_close;
            }
            self.credit_sent();
        } else {
            // An evicted or vanished client gets nothing more, and what it held is
            // released now, not after the close handshake's grace period; only the rest
            // of a frame already started goes out, to keep the stream well-formed.
            let wire = self.ws.get_mut();
            wire.discard_unstarted_messages();
            for entry in left {
                if let Outbound::Rest(rest) = entry {
                    wire.push_rest(&rest);
                }
            }
            self.client.set_wire_bytes(self.ws.get_ref().queued_bytes());
        }
        let frame = (reason != CloseReason::PeerGone).then(|| CloseFrame {
            code: CloseCode::from(reason.code()),
            reason: Utf8Bytes::from_static(reason.text()),
        });
        let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.close(frame)).await;
        // Keep reading until the peer answers the close or goes: closing a socket with
        // unread input sends a TCP reset, which can destroy what the peer has not read
        // yet (a rate-limited client's errors and its close frame, say).
        if peer_close.is_none() {
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while let Some(Ok(message)) = poll_fn(|cx| self.ws.poll_next(cx)).await {
                    if let Message::Close(frame) = message {
                        peer_close = frame;
                        break;
                    }
                }
            })
            .await;
        }
        peer_close
    }
}

/// Queues an entry's frames on the socket; returns how many messages it held. A live
/// host message's stamp is kept in `oldest` unless an older one is there (replays are
/// history, not latency).
fn push_entry<S>(wire: &mut WireIo<S>, entry: Outbound, oldest: &mut Option<Stamp>) -> u32 {
    // A queue entry holds at most a queue's or a history's worth of messages.
    let messages = u32::try_from(entry.message_count()).unwrap_or(u32::MAX);
    match entry {
        Outbound::Message(frame) => {
            if oldest.is_none() {
                *oldest = frame.stamp();
            }
            wire.push_message(&frame)
        }
        Outbound::Replay(frames) => frames.iter().for_each(|frame| wire.push_message(frame)),
        Outbound::Rest(rest) => wire.push_rest(&rest),
    }
    messages
}

/// Answers a client's text message; a subscribe that must wait for the authorizer is
/// returned as a future.
fn handle_text(shared: &Arc<Shared>, client: &Arc<Client>, text: &str) -> Option<InFlight> {
    match protocol::parse_client_message(text) {
        Ok(ClientMessage::Ping) => {
            client.enqueue(protocol::pong());
        }
        Ok(ClientMessage::Subscribe {
            target,
            since,
            presence,
        }) => {
            let (shared, client) = (Arc::clone(shared), Arc::clone(client));
            return Some(Box::pin(async move {
                if let Some(event) =
                    subscribe(&shared, &client, &target, since.as_ref(), true, presence).await
                {
                    shared.events.push(event);
                }
            }));
        }
        Ok(ClientMessage::Presence { target, status }) => {
            let (shared, client) = (Arc::clone(shared), Arc::clone(client));
            return Some(Box::pin(async move {
                let answer =
                    crate::presence::client_request(&shared, &client, &target, status.as_deref())
                        .await;
                match answer {
                    Ok(frame) => client.enqueue(frame),
                    Err(refusal) => {
                        if refusal.code == "forbidden" {
                            Counters::add(&shared.counters.forbidden, 1);
                        }
                        client.enqueue(protocol::error(refusal.code, &refusal.message))
                    }
                };
            }));
        }
        Ok(ClientMessage::Unsubscribe { target }) => {
            let left = shared.fanout.unsubscribe(client, target.as_ref());
            for channel in &left {
                tracing::debug!(target: LOG_TARGET, client = %client.id, %channel, "unsubscribed");
                shared.events.push(Event::unsubscribed(&client.id, channel));
            }
            client.enqueue(protocol::unsubscribed(target.as_ref()));
            if !left.is_empty() && shared.config.presence.enabled {
                let (shared, client) = (Arc::clone(shared), Arc::clone(client));
                return Some(Box::pin(async move {
                    crate::presence::left(&shared, &client, &left).await;
                }));
            }
        }
        Ok(ClientMessage::Cancel { session_id, job_id }) => {
            let (shared, client) = (Arc::clone(shared), Arc::clone(client));
            return Some(Box::pin(async move {
                cancel(&shared, &client, session_id, job_id).await;
            }));
        }
        Ok(ClientMessage::Custom(message)) => shared.events.push(Event::ClientMessage {
            client_id: client.id.to_string(),
            user_id: client.user_id.as_deref().map(str::to_string),
            session_id: client.session_id.as_deref().map(str::to_string),
            message,
            timestamp: now_iso(),
        }),
        Err(invalid) => reject(shared, client, &invalid.0),
    }
    None
}

/// Subscribes if the client may; returns the event for a new subscription.
async fn subscribe(
    shared: &Shared,
    client: &Arc<Client>,
    target: &Target,
    since: Option<&Since>,
    reply: bool,
    presence_events: Option<bool>,
) -> Option<Event> {
    let channel = target.channel();
    let (user, grants) = (client.user_id.as_deref(), &client.grants);
    if !shared
        .auth
        .may_subscribe(&client.id, user, grants, &channel)
        .await
    {
        Counters::add(&shared.counters.forbidden, 1);
        tracing::debug!(target: LOG_TARGET, client = %client.id, %channel, "subscribe refused");
        let why = format!("not allowed to subscribe to {channel:?}");
        client.enqueue(protocol::error("forbidden", &why));
        return None;
    }
    let subscribed = match &shared.broker {
        Some(broker) => {
            shared
                .fanout
                .subscribe_remote(broker.as_ref(), client, target, since, reply)
                .await
        }
        None => shared.fanout.subscribe(client, target, since, reply),
    };
    if let Ok(sub) = &subscribed {
        crate::presence::joined(shared, client, &sub.channel, presence_events).await;
    }
    match subscribed {
        Ok(sub) if sub.newly_subscribed => {
            tracing::debug!(target: LOG_TARGET, client = %client.id, channel = %sub.channel, "subscribed");
            Some(Event::subscribed(&client.id, &sub.channel))
        }
        Ok(_) => None,
        Err(e) => {
            client.enqueue(protocol::error("subscribe_failed", e.message()));
            None
        }
    }
}

/// A client's request to cancel a job: allowed as a subscribe to the session would be
/// (the authorizer sees `action: "cancel"`), then the host hears of it. Nothing is
/// echoed: the job's end (`ai_cancelled`) is the host's to publish.
async fn cancel(shared: &Shared, client: &Arc<Client>, session_id: String, job_id: Option<String>) {
    let channel = protocol::session_channel(&session_id);
    let (user, grants) = (client.user_id.as_deref(), &client.grants);
    let action = crate::auth::AuthAction::Cancel;
    if !shared
        .auth
        .may(action, &client.id, user, grants, &channel)
        .await
    {
        Counters::add(&shared.counters.forbidden, 1);
        let why = format!("not allowed to cancel jobs of {channel:?}");
        client.enqueue(protocol::error("forbidden", &why));
        return;
    }
    shared.events.push(Event::CancelRequested {
        client_id: client.id.to_string(),
        user_id: client.user_id.as_deref().map(str::to_string),
        session_id,
        job_id,
        timestamp: now_iso(),
    });
}

fn reject(shared: &Shared, client: &Arc<Client>, why: &str) {
    Counters::add(&shared.counters.invalid_messages, 1);
    client.enqueue(protocol::error("invalid_message", why));
}

#[cfg(test)]
mod size_tests {
    use std::mem::size_of;
    use tokio::net::TcpStream;

    /// Idle connections are most of a server's memory: these bounds keep what each one
    /// holds from growing back unnoticed (measured on 64-bit Linux).
    #[test]
    fn an_idle_connection_stays_small() {
        // One pointer and its vtable: the runtime's task cell stays at 128 bytes.
        assert!(size_of::<super::Serve<TcpStream>>() <= 16);
        // Boxed: 152 bytes is a 160-byte malloc chunk.
        assert!(size_of::<super::Connection<TcpStream>>() <= 152);
        // In an Arc: 264 bytes and the counts are a 288-byte malloc chunk.
        assert!(size_of::<crate::client::Client>() <= 264);
        assert!(size_of::<crate::limits::RateLimiter>() <= 24);
    }
}
