//! One connected client as the rest of the core sees it: a bounded outbound queue,
//! liveness, and a way to ask its connection to close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// WebSocket readyState numbers, as browsers and `ws` report them.
pub(crate) const STATE_OPEN: u8 = 1;
pub(crate) const STATE_CLOSING: u8 = 2;
pub(crate) const STATE_CLOSED: u8 = 3;

/// Why the server closes a connection; decides the close code and whether queued
/// messages are written first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client's queue overflowed: it cannot keep up.
    SlowConsumer,
    /// Nothing arrived within the heartbeat timeout.
    HeartbeatTimeout,
    /// A frame over the size limit arrived.
    MessageTooBig,
    /// The client kept exceeding its message rate.
    RateLimited,
    /// The server is stopping: queued messages go out first.
    Shutdown,
    /// The peer closed or the socket failed: only flush what is pending.
    PeerGone,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::SlowConsumer => 1013,
            CloseReason::HeartbeatTimeout => 1001,
            CloseReason::MessageTooBig => 1009,
            CloseReason::RateLimited => 1008,
            CloseReason::Shutdown => 1001,
            CloseReason::PeerGone => 1000,
        }
    }

    /// Whether queued messages are written before the close frame: on a stop nothing
    /// queued may be lost, and a rate-limited client should read why it is cut off.
    /// An evicted or dead client gets nothing more.
    pub fn delivers_queue(self) -> bool {
        matches!(self, CloseReason::Shutdown | CloseReason::RateLimited)
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow consumer: outbound queue full",
            CloseReason::HeartbeatTimeout => "heartbeat timeout",
            CloseReason::MessageTooBig => "message too big",
            CloseReason::RateLimited => "rate limit exceeded",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::PeerGone => "closed by client",
        }
    }
}

/// One entry of a client's queue.
pub(crate) enum Outbound {
    Message(Utf8Bytes),
    /// What a recovering client missed, as one entry: a replay is bounded by history,
    /// and counting it message by message against the queue would evict the very
    /// client it is meant to catch up.
    Replay(Vec<Utf8Bytes>),
}

impl Outbound {
    pub fn message_count(&self) -> usize {
        match self {
            Outbound::Message(_) => 1,
            Outbound::Replay(messages) => messages.len(),
        }
    }
}

impl From<Utf8Bytes> for Outbound {
    fn from(message: Utf8Bytes) -> Self {
        Outbound::Message(message)
    }
}

/// What happened to a message handed to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Queued,
    /// The queue was full; the client is now being evicted.
    Evicted,
    /// The client is already closing.
    Closed,
}

pub(crate) struct Client {
    /// Internal key in channel subscriber maps.
    pub key: u64,
    pub id: Arc<str>,
    pub user_id: Option<Arc<str>>,
    pub session_id: Option<Arc<str>>,
    /// Channel patterns its token or the authorizer granted.
    pub grants: Vec<String>,
    pub remote_addr: SocketAddr,
    queue: mpsc::Sender<Outbound>,
    queue_capacity: usize,
    /// Wakes the writer for a ping or a close request.
    pub control: Notify,
    close_request: Mutex<Option<CloseReason>>,
    ping_requested: AtomicBool,
    last_seen_ms: AtomicU64,
    alive: AtomicBool,
    state: AtomicU8,
    /// Channels this client is in; changed only under the hub's channel lock.
    pub subscriptions: Mutex<Vec<Arc<str>>>,
    pub messages_sent: AtomicU64,
}

impl Client {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: u64,
        id: Arc<str>,
        user_id: Option<Arc<str>>,
        session_id: Option<Arc<str>>,
        grants: Vec<String>,
        remote_addr: SocketAddr,
        queue_capacity: usize,
        now_ms: u64,
    ) -> (Arc<Client>, mpsc::Receiver<Outbound>) {
        let (queue, receiver) = mpsc::channel(queue_capacity);
        let client = Arc::new(Client {
            key,
            id,
            user_id,
            session_id,
            grants,
            remote_addr,
            queue,
            queue_capacity,
            control: Notify::new(),
            close_request: Mutex::new(None),
            ping_requested: AtomicBool::new(false),
            last_seen_ms: AtomicU64::new(now_ms),
            alive: AtomicBool::new(true),
            state: AtomicU8::new(STATE_OPEN),
            subscriptions: Mutex::new(Vec::new()),
            messages_sent: AtomicU64::new(0),
        });
        (client, receiver)
    }

    /// Queues a message without waiting. A full queue evicts the client: one slow
    /// reader must never hold up the others.
    pub fn enqueue(&self, message: impl Into<Outbound>) -> Delivery {
        match self.queue.try_send(message.into()) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.request_close(CloseReason::SlowConsumer) {
                    Delivery::Evicted
                } else {
                    Delivery::Closed
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    /// Asks the connection to close; the first reason wins. True if this call set it.
    pub fn request_close(&self, reason: CloseReason) -> bool {
        let mut request = self.close_request.lock().unwrap_or_else(|p| p.into_inner());
        if request.is_some() {
            return false;
        }
        *request = Some(reason);
        drop(request);
        self.state.store(STATE_CLOSING, Ordering::Relaxed);
        self.control.notify_one();
        true
    }

    pub fn close_requested(&self) -> Option<CloseReason> {
        *self.close_request.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn request_ping(&self) {
        self.alive.store(false, Ordering::Relaxed);
        self.ping_requested.store(true, Ordering::Relaxed);
        self.control.notify_one();
    }

    pub fn take_ping_request(&self) -> bool {
        self.ping_requested.swap(false, Ordering::Relaxed)
    }

    /// Records that something arrived from the client.
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
        self.alive.store(true, Ordering::Relaxed);
    }

    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    pub fn mark_closed(&self) {
        self.state.store(STATE_CLOSED, Ordering::Relaxed);
    }

    pub fn queued(&self) -> usize {
        self.queue_capacity - self.queue.capacity()
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}
