//! One WebSocket connection: a reader that handles the client's frames in place, and
//! a writer task that drains the client's queue, feeding many frames per flush.

use crate::auth::Credentials;
use crate::client::{Client, CloseReason, Outbound};
use crate::events::Event;
use crate::limits::{RateLimiter, SocketSlot, Verdict};
use crate::protocol::{self, ClientMessage, Since, Target};
use crate::server::Shared;
use crate::stats::Counters;
use crate::time::now_iso;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Most frames written per flush.
const MAX_BATCH: usize = 256;
/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the client's handshake carried.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    pub credentials: Credentials,
    pub session_id: Option<String>,
    pub since: Option<Since>,
}

pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    mut ws: WebSocketStream<S>,
    handshake: Handshake,
    remote: SocketAddr,
    slot: SocketSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The credentials (every request header, the token) are needed only for the
    // authorizer: drop them before the connection's long life starts, or every idle
    // connection keeps its upgrade request's headers (~0.7 KB) in its task.
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
            tracing::debug!(%remote, why, "unauthorized");
            let reason = Utf8Bytes::from_static("Unauthorized");
            let frame = CloseFrame {
                code: CloseCode::Policy,
                reason,
            };
            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(Some(frame))).await;
            return;
        }
    };
    let user_id = identity.user_id;
    let (client, queue) = shared.new_client(
        user_id.as_deref(),
        session_id.as_deref(),
        identity.grants,
        remote,
    );
    client.enqueue(protocol::connection(&client.id));
    shared.hub.register(Arc::clone(&client));
    Counters::add(&shared.counters.total_connections, 1);
    Counters::add(&shared.counters.active_connections, 1);
    // The URL's subscriptions exist before the host hears of the client, so a host that
    // notifies a session as soon as it sees `connected` cannot race them.
    let mut subscribed = Vec::new();
    if let Some(user) = &user_id {
        let own = Target::Channel(protocol::user_channel(user));
        subscribed.extend(subscribe(&shared, &client, &own, None, false).await);
    }
    if let Some(session) = &session_id {
        // A `since` in the URL is answered like a subscribe message with `since`.
        let reply = since.is_some();
        let target = Target::Session(session.clone());
        subscribed.extend(subscribe(&shared, &client, &target, since.as_ref(), reply).await);
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
    if shared.is_stopping() {
        client.request_close(CloseReason::Shutdown);
    }

    let (sink, stream) = ws.split();
    let writer = tokio::spawn(write_loop(
        Arc::clone(&shared),
        Arc::clone(&client),
        sink,
        queue,
    ));
    let peer_close = read_loop(&shared, &client, stream, writer).await;
    drop(slot);

    shared.hub.unregister(&client);
    client.mark_closed();
    Counters::add(&shared.counters.active_connections, u64::MAX); // wrapping -1
    let (code, reason) = match (client.close_requested(), peer_close) {
        (Some(r), _) if r != CloseReason::PeerGone => (Some(r.code()), r.text().to_string()),
        (_, Some(frame)) => (Some(u16::from(frame.code)), frame.reason.to_string()),
        _ => (None, "connection lost".to_string()),
    };
    shared.events.push(Event::Disconnected {
        client_id: client.id.to_string(),
        user_id,
        session_id,
        code,
        reason,
        timestamp: now_iso(),
    });
    shared.connection_closed.notify_waiters();
}

/// Reads until the peer leaves or the writer has closed the connection. Returns the
/// peer's close frame, if it sent one.
async fn read_loop<S>(
    shared: &Shared,
    client: &Arc<Client>,
    mut stream: SplitStream<WebSocketStream<S>>,
    mut writer: tokio::task::JoinHandle<()>,
) -> Option<CloseFrame>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut peer_close = None;
    let limits = &shared.config.rate_limit;
    let mut rate = RateLimiter::new(
        limits.messages_per_second,
        limits.burst,
        limits.max_violations,
    );
    let writer_finished = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(message)) => {
                    client.touch(shared.now_ms());
                    if matches!(message, Message::Text(_) | Message::Binary(_)) {
                        Counters::add(&shared.counters.messages_received, 1);
                        match rate.as_mut().map_or(Verdict::Accept, |r| r.check(std::time::Instant::now())) {
                            Verdict::Accept => {}
                            Verdict::Refuse => {
                                Counters::add(&shared.counters.rate_limited, 1);
                                client.enqueue(protocol::error("rate_limited", "too many messages; slow down"));
                                continue;
                            }
                            Verdict::Close => {
                                Counters::add(&shared.counters.rate_limit_closes, 1);
                                client.request_close(CloseReason::RateLimited);
                                break false;
                            }
                        }
                    }
                    match message {
                        Message::Text(text) => handle_text(shared, client, &text).await,
                        Message::Binary(_) => reject(shared, client, "binary frames are not supported; send JSON text"),
                        Message::Close(frame) => {
                            peer_close = frame;
                            break false;
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    Counters::add(&shared.counters.oversized_messages, 1);
                    tracing::debug!(client = %client.id, size, max_size, "closing: message too big");
                    client.request_close(CloseReason::MessageTooBig);
                    break false;
                }
                Some(Err(e)) => {
                    tracing::debug!(client = %client.id, error = %e, "read failed");
                    break false;
                }
                None => break false,
            },
            _ = &mut writer => break true,
        }
    };
    if !writer_finished {
        client.request_close(CloseReason::PeerGone);
        if tokio::time::timeout(CLOSE_GRACE * 2, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
    // Keep reading until the peer answers the close or goes: closing a socket with unread
    // input sends a TCP reset, which can destroy what the peer has not read yet (a
    // rate-limited client's errors and its close frame, say).
    if peer_close.is_none() {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(message)) = stream.next().await {
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

async fn handle_text(shared: &Shared, client: &Arc<Client>, text: &str) {
    match protocol::parse_client_message(text) {
        Ok(ClientMessage::Ping) => {
            client.enqueue(protocol::pong());
        }
        Ok(ClientMessage::Subscribe { target, since }) => {
            if let Some(event) = subscribe(shared, client, &target, since.as_ref(), true).await {
                shared.events.push(event);
            }
        }
        Ok(ClientMessage::Unsubscribe { target }) => {
            for channel in shared.hub.unsubscribe(client, target.as_ref()) {
                shared
                    .events
                    .push(Event::unsubscribed(&client.id, &channel));
            }
            client.enqueue(protocol::unsubscribed(target.as_ref()));
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
}

/// Subscribes if the client may; returns the event for a new subscription.
async fn subscribe(
    shared: &Shared,
    client: &Arc<Client>,
    target: &Target,
    since: Option<&Since>,
    reply: bool,
) -> Option<Event> {
    let channel = target.channel();
    let (user, grants) = (client.user_id.as_deref(), &client.grants);
    if !shared
        .auth
        .may_subscribe(&client.id, user, grants, &channel)
        .await
    {
        Counters::add(&shared.counters.forbidden, 1);
        let why = format!("not allowed to subscribe to {channel:?}");
        client.enqueue(protocol::error("forbidden", &why));
        return None;
    }
    match shared.hub.subscribe(client, target, since, reply) {
        Ok(sub) if sub.newly_subscribed => Some(Event::subscribed(&client.id, &sub.channel)),
        Ok(_) => None,
        Err(e) => {
            client.enqueue(protocol::error("subscribe_failed", e.message()));
            None
        }
    }
}

fn reject(shared: &Shared, client: &Client, why: &str) {
    Counters::add(&shared.counters.invalid_messages, 1);
    client.enqueue(protocol::error("invalid_message", why));
}

type Sink<S> = SplitSink<WebSocketStream<S>, Message>;

async fn write_loop<S>(
    shared: Arc<Shared>,
    client: Arc<Client>,
    mut sink: Sink<S>,
    mut queue: mpsc::Receiver<Outbound>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reason = loop {
        if let Some(reason) = client.close_requested() {
            break reason;
        }
        if client.take_ping_request() && sink.send(Message::Ping(Bytes::new())).await.is_err() {
            break CloseReason::PeerGone;
        }
        let mut batch = Vec::new();
        tokio::select! {
            biased;
            _ = client.control.notified() => continue,
            n = queue.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    break CloseReason::PeerGone;
                }
            }
        }
        // A close request other than shutdown cuts a write short: the client is being
        // evicted or is gone, and what it had not read is lost either way.
        let write = write_batch(&shared, &client, &mut sink, &mut batch);
        tokio::pin!(write);
        let written = loop {
            tokio::select! {
                biased;
                _ = client.control.notified() => match client.close_requested() {
                    Some(reason) if !reason.delivers_queue() => break Err(reason),
                    _ => continue,
                },
                result = &mut write => break result.map_err(|_| CloseReason::PeerGone),
            }
        };
        if let Err(reason) = written {
            break reason;
        }
    };
    finish(&shared, &client, sink, queue, reason).await;
}

async fn write_batch<S>(
    shared: &Shared,
    client: &Client,
    sink: &mut Sink<S>,
    batch: &mut Vec<Outbound>,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let n = batch.iter().map(Outbound::message_count).sum::<usize>() as u64;
    for entry in batch.drain(..) {
        match entry {
            Outbound::Message(text) => sink.feed(Message::Text(text)).await?,
            Outbound::Replay(texts) => {
                for text in texts {
                    sink.feed(Message::Text(text)).await?;
                }
            }
        }
    }
    sink.flush().await?;
    Counters::add(&shared.counters.messages_sent, n);
    Counters::add(&client.messages_sent, n);
    Ok(())
}

async fn finish<S>(
    shared: &Shared,
    client: &Client,
    mut sink: Sink<S>,
    mut queue: mpsc::Receiver<Outbound>,
    reason: CloseReason,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if reason.delivers_queue() {
        // What was queued goes out before the close frame. A stop's own deadline bounds
        // its drain; any other drain gets the close grace period.
        queue.close();
        let mut batch = Vec::new();
        while let Ok(text) = queue.try_recv() {
            batch.push(text);
        }
        let drain = write_batch(shared, client, &mut sink, &mut batch);
        let drained = if reason == CloseReason::Shutdown {
            drain.await.is_ok()
        } else {
            matches!(tokio::time::timeout(CLOSE_GRACE, drain).await, Ok(Ok(())))
        };
        if !drained {
            return;
        }
    }
    let frame = CloseFrame {
        code: CloseCode::from(reason.code()),
        reason: Utf8Bytes::from_static(reason.text()),
    };
    let close = async {
        if reason != CloseReason::PeerGone {
            sink.send(Message::Close(Some(frame))).await?;
        }
        sink.close().await
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, close).await;
}
