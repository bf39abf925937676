//! One connected client as the rest of the core sees it: a bounded outbound queue,
//! liveness, and a way to ask its connection to close.

use crate::backlog::{BacklogGauge, Level};
use crate::memory::MemoryGauge;
use crate::metrics::Stamp;
use crate::transport::wire::{Frame, MAX_IOV};
use crate::transport::write_pass::{self, RawFd};
use futures_util::task::AtomicWaker;
use std::collections::{vec_deque, VecDeque};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

/// WebSocket readyState numbers, as browsers and `ws` report them.
pub(crate) const STATE_OPEN: u8 = 1;
pub(crate) const STATE_CLOSING: u8 = 2;
pub(crate) const STATE_CLOSED: u8 = 3;

/// Why the server closes a connection; decides the close code and whether queued
/// messages are written first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CloseReason {
    /// The client's queue overflowed its count or byte budget, its socket took no byte
    /// for the heartbeat timeout, or the server is over `max_memory`: it cannot keep up.
    SlowConsumer,
    /// The client broke the WebSocket framing rules (RFC 6455 §7.4.1: 1002).
    ProtocolError,
    /// A text frame was not valid UTF-8 (1007).
    InvalidPayload,
    /// Nothing arrived within the heartbeat timeout.
    HeartbeatTimeout,
    /// A frame over the size limit arrived.
    MessageTooBig,
    /// The client kept exceeding its message rate.
    RateLimited,
    /// The server is stopping: queued messages go out first.
    Shutdown,
    /// This node may have missed publications of a channel the client is in (its
    /// broker link dropped, or a gap showed): the client reconnects and recovers with
    /// `since`, which tells it whether anything was lost.
    Resync,
    /// The peer closed or the socket failed: only flush what is pending.
    PeerGone,
}

impl CloseReason {
    /// Every reason, in declaration order: `ALL[reason as usize] == reason`.
    const ALL: [CloseReason; 9] = [
        CloseReason::SlowConsumer,
        CloseReason::ProtocolError,
        CloseReason::InvalidPayload,
        CloseReason::HeartbeatTimeout,
        CloseReason::MessageTooBig,
        CloseReason::RateLimited,
        CloseReason::Shutdown,
        CloseReason::Resync,
        CloseReason::PeerGone,
    ];

    /// One byte for an atomic: 0 for no reason, else the reason's index plus one.
    fn to_byte(reason: Option<CloseReason>) -> u8 {
        reason.map_or(0, |reason| reason as u8 + 1)
    }

    fn from_byte(byte: u8) -> Option<CloseReason> {
        byte.checked_sub(1)
            .and_then(|index| Self::ALL.get(usize::from(index)).copied())
    }

    pub fn code(self) -> u16 {
        match self {
            CloseReason::SlowConsumer => 1013,
            CloseReason::ProtocolError => 1002,
            CloseReason::InvalidPayload => 1007,
            CloseReason::HeartbeatTimeout => 1001,
            CloseReason::MessageTooBig => 1009,
            CloseReason::RateLimited => 1008,
            CloseReason::Shutdown => 1001,
            CloseReason::Resync => 1012,
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
            CloseReason::ProtocolError => "protocol error",
            CloseReason::InvalidPayload => "invalid UTF-8 in a text frame",
            CloseReason::HeartbeatTimeout => "heartbeat timeout",
            CloseReason::MessageTooBig => "message too big",
            CloseReason::RateLimited => "rate limit exceeded",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::Resync => "missed publications: reconnect and recover",
            CloseReason::PeerGone => "closed by client",
        }
    }
}

/// Bytes charged per queued message on top of its frame: its queue slot and the
/// frame's handle (the frame's bytes are shared between subscribers).
pub(crate) const QUEUED_MESSAGE_OVERHEAD: usize = std::mem::size_of::<Outbound>();

/// One entry of a client's queue.
pub(crate) enum Outbound {
    Message(Frame),
    /// What a recovering client missed, as one entry: a replay is bounded by history,
    /// and counting it message by message against the queue would evict the very
    /// client it is meant to catch up.
    Replay(Vec<Frame>),
    /// The unwritten end of a frame whose start a publisher wrote to the socket (see
    /// `transport::write_pass`): it must follow on the wire before anything else.
    Rest(Frame),
}

impl Outbound {
    pub fn message_count(&self) -> usize {
        match self {
            Outbound::Message(_) | Outbound::Rest(_) => 1,
            Outbound::Replay(messages) => messages.len(),
        }
    }

    /// What it costs to hold: its bytes on the wire, frame headers included, plus the
    /// queue's own memory per message, which dominates for small messages.
    pub fn byte_len(&self) -> usize {
        match self {
            Outbound::Message(frame) | Outbound::Rest(frame) => {
                frame.wire_len() + QUEUED_MESSAGE_OVERHEAD
            }
            Outbound::Replay(frames) => frames
                .iter()
                .map(|frame| frame.wire_len() + QUEUED_MESSAGE_OVERHEAD)
                .sum(),
        }
    }
}

impl From<Frame> for Outbound {
    fn from(message: Frame) -> Self {
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

/// What became of a run of messages handed to a client: the first `queued` were queued;
/// the rest were not, the first of them for `first_not_queued` (`Queued` when all were).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pushed {
    pub queued: usize,
    pub first_not_queued: Delivery,
}

/// A plain deque under a mutex rather than a channel: it allocates only while it holds
/// something, and the publisher wakes the connection only when it goes from empty to
/// non-empty, so a burst costs one wake-up per connection, not one per message.
struct OutQueue {
    entries: VecDeque<Outbound>,
    /// Bytes of `entries`.
    bytes: usize,
    closed: bool,
    /// Where this client's backlog stands, as last counted in the backlog gauge.
    level: Level,
    /// The connection's plain TCP socket, which a write pass may write to while the
    /// connection is parked; [`NO_SOCKET`] for TLS (a bare descriptor, not an
    /// `Option`: every client is 8 bytes smaller).
    socket: RawFd,
    /// The connection's task is parked with nothing of its own to write: whoever holds
    /// this lock may write the queue to `socket` (the task unparks under it before it
    /// writes anything, and parks again only with an empty writer).
    writer_parked: bool,
}

/// No descriptor: a socket write passes may not write to.
const NO_SOCKET: RawFd = -1;

impl Default for OutQueue {
    fn default() -> Self {
        OutQueue {
            entries: VecDeque::new(),
            bytes: 0,
            closed: false,
            level: Level::default(),
            socket: NO_SOCKET,
            writer_parked: false,
        }
    }
}

impl OutQueue {
    fn socket(&self) -> Option<RawFd> {
        (self.socket != NO_SOCKET).then_some(self.socket)
    }
}

/// The bytes a write pass may write for an entry: a replay is the connection's to
/// write (it is rare: a recovery).
fn pass_bytes(entry: &Outbound) -> Option<&[u8]> {
    match entry {
        Outbound::Message(frame) | Outbound::Rest(frame) => Some(frame.wire_bytes()),
        Outbound::Replay(_) => None,
    }
}

/// What a write pass wrote for one client.
#[derive(Default)]
pub(crate) struct Written {
    pub messages: u32,
    /// When the host made the oldest of them, for the latency histogram.
    pub oldest_stamp: Option<Stamp>,
    /// Bytes that left the queue: the pass takes them out of the memory gauge, once for
    /// all the clients it writes.
    pub freed: usize,
}

/// A parked connection's queue, locked by a write pass: whoever holds it is the only
/// writer of the socket (the connection unparks under this lock before it writes). The
/// pass sends [`ParkedWrite::slices`] and reports what the socket took with
/// [`ParkedWrite::finish`]. What the socket does not take stays queued (a frame cut
/// short as its rest, first), and the connection is unparked and woken to write it.
/// An emptied queue keeps its buffer for the next pass (one allocation and free less per
/// message while publications keep coming); the connection frees it the next time it
/// runs.
pub(crate) struct ParkedWrite<'a> {
    client: &'a Client,
    queue: std::sync::MutexGuard<'a, OutQueue>,
    pub socket: RawFd,
}

impl ParkedWrite<'_> {
    /// The bytes to send when exactly one message is queued, the usual case.
    pub fn only(&self) -> Option<&[u8]> {
        match self.queue.entries.len() {
            1 => self.queue.entries.front().and_then(pass_bytes),
            _ => None,
        }
    }

    /// Fills `slices` with the queued bytes, in order, as many as fit; returns how many.
    pub fn slices<'s>(&'s self, slices: &mut [IoSlice<'s>]) -> usize {
        let mut count = 0;
        for (slot, bytes) in slices
            .iter_mut()
            .zip(self.queue.entries.iter().map_while(pass_bytes))
        {
            *slot = IoSlice::new(bytes);
            count += 1;
        }
        count
    }

    /// The socket took the first `sent` bytes of [`ParkedWrite::slices`].
    pub fn finish(mut self, sent: usize) -> Written {
        let mut written = Written::default();
        let queue = &mut *self.queue;
        let mut left = sent;
        let mut freed = 0;
        while left > 0 {
            let Some(front) = queue.entries.front_mut() else {
                break;
            };
            let (Outbound::Message(frame) | Outbound::Rest(frame)) = front else {
                break;
            };
            if left < frame.wire_len() {
                let rest = frame.rest_after(left);
                freed += left;
                *front = Outbound::Rest(rest);
                break;
            }
            left -= frame.wire_len();
            if let Outbound::Message(frame) = front {
                written.oldest_stamp = written.oldest_stamp.or(frame.stamp());
            }
            written.messages += 1;
            freed += front.byte_len();
            queue.entries.pop_front();
        }
        queue.bytes -= freed;
        written.freed = freed;
        let waiting = !queue.entries.is_empty();
        if waiting {
            queue.writer_parked = false;
        }
        self.client.relevel(queue);
        drop(self.queue);
        if waiting {
            self.client.waker.wake();
        }
        written
    }
}

/// A queue was locked when a pass tried it.
pub(crate) struct Busy;

/// How much may wait for one client.
#[derive(Clone, Copy)]
pub(crate) struct QueueLimits {
    pub messages: usize,
    pub bytes: usize,
}

/// What every client of one server shares, held once rather than in each client: its
/// queue limits and the server-wide gauges its backlog counts in.
pub(crate) struct ClientPolicy {
    pub limits: QueueLimits,
    pub memory: Arc<MemoryGauge>,
    pub backlog: Arc<BacklogGauge>,
}

pub(crate) struct Client {
    /// Internal key in channel subscriber maps.
    pub key: u64,
    pub id: Arc<str>,
    pub user_id: Option<Arc<str>>,
    pub session_id: Option<Arc<str>>,
    /// Channel patterns its token or the authorizer granted.
    pub grants: Box<[String]>,
    pub remote_addr: SocketAddr,
    queue: Mutex<OutQueue>,
    /// Its queue limits (the byte budget counts its queue plus its connection's
    /// writer) and the gauges it counts in.
    policy: Arc<ClientPolicy>,
    /// Bytes the connection has taken from the queue and not yet written, control
    /// frames included; set by the connection.
    wire_bytes: AtomicUsize,
    /// Since when (server ms) bytes have waited for a socket that takes none; 0 if not.
    stalled_since_ms: AtomicU64,
    /// Wakes the connection's task: queued messages, a ping or a close request.
    waker: AtomicWaker,
    /// Why the connection must close, as [`CloseReason::to_byte`]; the first reason
    /// set wins.
    close_request: AtomicU8,
    ping_requested: AtomicBool,
    last_seen_ms: AtomicU64,
    alive: AtomicBool,
    state: AtomicU8,
    /// Channels this client is in; changed only under the fan-out's channel lock.
    pub subscriptions: Mutex<Vec<Arc<str>>>,
    pub messages_sent: AtomicU64,
}

impl Drop for Client {
    /// A client dropped on a path that never closed it must not hold the host back.
    fn drop(&mut self) {
        let queue = self.queue.get_mut().unwrap_or_else(|p| p.into_inner());
        self.policy.backlog.shift(queue.level, Level::Drained);
    }
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
        policy: Arc<ClientPolicy>,
        now_ms: u64,
    ) -> Arc<Client> {
        Arc::new(Client {
            key,
            id,
            user_id,
            session_id,
            grants: grants.into_boxed_slice(),
            remote_addr,
            queue: Mutex::new(OutQueue::default()),
            policy,
            wire_bytes: AtomicUsize::new(0),
            stalled_since_ms: AtomicU64::new(0),
            waker: AtomicWaker::new(),
            close_request: AtomicU8::new(0),
            ping_requested: AtomicBool::new(false),
            last_seen_ms: AtomicU64::new(now_ms),
            alive: AtomicBool::new(true),
            state: AtomicU8::new(STATE_OPEN),
            subscriptions: Mutex::new(Vec::new()),
            messages_sent: AtomicU64::new(0),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, OutQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message without waiting. A full queue (by count or by bytes) evicts the
    /// client: one slow reader must never hold up the others.
    pub fn enqueue(self: &Arc<Self>, message: impl Into<Outbound>) -> Delivery {
        self.push(message.into(), true)
    }

    /// [`Client::enqueue`] for one subscriber of a fan-out of `frames` (consecutive
    /// publications): the caller has added their bytes to the server-wide gauge once for
    /// all subscribers, and takes back those of the messages not queued.
    pub fn enqueue_for_fanout(self: &Arc<Self>, frames: &[Frame]) -> Pushed {
        self.push_each(frames.iter().cloned().map(Outbound::Message), false)
    }

    fn push(self: &Arc<Self>, message: Outbound, count_in_gauge: bool) -> Delivery {
        self.push_each(std::iter::once(message), count_in_gauge)
            .first_not_queued
    }

    /// Queues `messages` in order under one lock, with one wake-up (or one place in the
    /// running write pass) at most: a run of publications touches each subscriber once.
    fn push_each(
        self: &Arc<Self>,
        messages: impl ExactSizeIterator<Item = Outbound>,
        count_in_gauge: bool,
    ) -> Pushed {
        let mut queue = self.queue();
        if queue.closed {
            return Pushed {
                queued: 0,
                first_not_queued: Delivery::Closed,
            };
        }
        let was_empty = queue.entries.is_empty();
        // One allocation for the run, not one per doubling.
        queue.entries.reserve(messages.len());
        let mut queued = 0;
        let mut overflowed = false;
        for message in messages {
            let bytes = message.byte_len();
            if self.over_budget(&queue, bytes) && !self.merge_backlog(&mut queue, bytes) {
                overflowed = true;
                break;
            }
            // Counted before the connection can take it, so the gauge never goes below zero.
            if count_in_gauge {
                self.policy.memory.add_queued(bytes);
            }
            queue.entries.push_back(message);
            queue.bytes += bytes;
            queued += 1;
        }
        if overflowed {
            // Closed at once, so nothing queued later can follow the message dropped
            // here: a client sees a prefix of its messages and recovers from its last
            // seq, never a gap (the connection keeps taking from this queue until it
            // notices the close).
            queue.closed = true;
            self.relevel(&mut queue);
            drop(queue);
            if was_empty && queued > 0 {
                self.waker.wake();
            }
            let first_not_queued = if self.request_close(CloseReason::SlowConsumer) {
                Delivery::Evicted
            } else {
                Delivery::Closed
            };
            return Pushed {
                queued,
                first_not_queued,
            };
        }
        // Woken only when the queue goes from empty to non-empty; a parked connection is
        // written by the write pass running on this thread, if one is.
        let wake = was_empty && queued > 0 && !(queue.writer_parked && write_pass::defer(self));
        self.relevel(&mut queue);
        drop(queue);
        if wake {
            self.waker.wake();
        }
        Pushed {
            queued,
            first_not_queued: Delivery::Queued,
        }
    }

    /// Counts this client's backlog level in the server's gauge; under the queue lock,
    /// so the level always matches the queue. A client being closed holds nobody back.
    fn relevel(&self, queue: &mut OutQueue) {
        let healthy = !queue.closed && self.state() == STATE_OPEN;
        let level = if healthy {
            Level::of(
                queue.entries.len(),
                queue.bytes + self.wire_bytes.load(Ordering::Relaxed),
                self.policy.limits.messages,
                self.policy.limits.bytes,
            )
        } else {
            Level::Drained
        };
        self.policy.backlog.shift(queue.level, level);
        queue.level = level;
    }

    fn over_budget(&self, queue: &OutQueue, bytes: usize) -> bool {
        let waiting = queue.bytes + self.wire_bytes.load(Ordering::Relaxed);
        queue.entries.len() >= self.policy.limits.messages
            || waiting + bytes > self.policy.limits.bytes
    }

    /// Makes room for `bytes` by merging the backlog (see `merge`); false when what
    /// cannot be merged still exceeds the budget, or merging freed so little (under a
    /// 32nd of the budget and of the queue) that the client is hopelessly behind: then
    /// it is evicted rather than merged again on every message.
    fn merge_backlog(&self, queue: &mut OutQueue, bytes: usize) -> bool {
        let entries = queue.entries.len();
        let freed = crate::merge::compact(&mut queue.entries);
        queue.bytes -= freed;
        self.policy.memory.sub_queued(freed);
        let merged_entries = entries - queue.entries.len();
        let worthwhile = freed >= self.policy.limits.bytes / 32
            || merged_entries >= self.policy.limits.messages.max(32) / 32;
        worthwhile && !self.over_budget(queue, bytes)
    }

    /// Whether `bytes` could ever be queued for this client.
    pub fn fits_budget(&self, bytes: usize) -> bool {
        bytes <= self.policy.limits.bytes
    }

    /// Hands up to `max` queued entries to `take`, in order. Their bytes move from the
    /// queue to the writer's account.
    pub fn take_queued(&self, max: usize, take: impl FnOnce(vec_deque::Drain<'_, Outbound>)) {
        let mut queue = self.queue();
        let n = queue.entries.len().min(max);
        let moved: usize = queue.entries.range(..n).map(Outbound::byte_len).sum();
        queue.bytes -= moved;
        self.wire_bytes.fetch_add(moved, Ordering::Relaxed);
        take(queue.entries.drain(..n));
        if queue.entries.is_empty() {
            // An idle client keeps no queue memory; a burst allocates again.
            queue.entries = VecDeque::new();
        }
        self.relevel(&mut queue);
    }

    /// Refuses every further message; returns what was still queued.
    pub fn close_queue(&self) -> VecDeque<Outbound> {
        let mut queue = self.queue();
        queue.closed = true;
        // Out of the queue's account and the gauge's: the caller drops the entries or
        // hands them to the writer, whose account the connection sets. (Not moved into
        // `wire_bytes`: the memory guard calls this from another thread, and the
        // connection's `set_wire_bytes` would overwrite the move.)
        self.policy
            .memory
            .sub_queued(std::mem::take(&mut queue.bytes));
        self.relevel(&mut queue);
        std::mem::take(&mut queue.entries)
    }

    /// The connection's writer now holds `bytes`; the server-wide gauge follows.
    pub fn set_wire_bytes(&self, bytes: usize) {
        let before = self.wire_bytes.swap(bytes, Ordering::Relaxed);
        if bytes > before {
            self.policy.memory.add_queued(bytes - before);
        } else if before > bytes {
            self.policy.memory.sub_queued(before - bytes);
        }
        if bytes != before {
            self.relevel(&mut self.queue());
        }
    }

    /// Bytes waiting for this client, queued or in its writer.
    pub fn queued_bytes(&self) -> usize {
        self.queue().bytes + self.wire_bytes.load(Ordering::Relaxed)
    }

    /// Nothing waits for the socket: no stall.
    pub fn clear_write_stall(&self) {
        self.stalled_since_ms.store(0, Ordering::Relaxed);
    }

    /// Bytes wait for the socket: the stall clock restarts if it took some since the
    /// last look, and otherwise keeps running (or starts).
    pub fn note_write(&self, now_ms: u64, progressed: bool) {
        let now = now_ms.max(1);
        if progressed {
            self.stalled_since_ms.store(now, Ordering::Relaxed);
        } else {
            let _ = self.stalled_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// How long bytes have waited for a socket that takes none.
    pub fn write_stalled_for(&self, now_ms: u64) -> u64 {
        match self.stalled_since_ms.load(Ordering::Relaxed) {
            0 => 0,
            since => now_ms.saturating_sub(since),
        }
    }

    /// Lets write passes write to the connection's plain TCP socket while it is parked.
    pub fn allow_direct_writes(&self, socket: RawFd) {
        self.queue().socket = socket;
    }

    /// The connection's socket is closing: no write pass may use it again.
    pub fn forget_socket(&self) {
        let mut queue = self.queue();
        queue.writer_parked = false;
        queue.socket = NO_SOCKET;
    }

    /// The connection is about to run: from now on only it writes to the socket.
    pub fn unpark_writer(&self) {
        self.queue().writer_parked = false;
    }

    /// The connection parks with nothing left to write: if nothing is queued either, a
    /// write pass may write for it until it unparks.
    pub fn park_writer(&self) {
        let mut queue = self.queue();
        queue.writer_parked = queue.socket().is_some() && !queue.closed && queue.entries.is_empty();
    }

    /// For a parked connection: writes what is queued to its socket with one `send`,
    /// under the queue lock, so the connection cannot start writing meanwhile (see
    /// [`ParkedWrite`]).
    pub fn write_parked(
        &self,
        send: impl FnOnce(RawFd, &[IoSlice<'_>]) -> io::Result<usize>,
    ) -> Written {
        let Some(write) = self.lock_parked() else {
            return Written::default();
        };
        // An error is left to the connection, whose own write meets it.
        let sent = if let Some(bytes) = write.only() {
            // The usual case, one publication: no room for many slices to fill.
            send(write.socket, &[IoSlice::new(bytes)]).unwrap_or(0)
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            match write.slices(&mut slices) {
                0 => 0,
                count => send(write.socket, &slices[..count]).unwrap_or(0),
            }
        };
        write.finish(sent)
    }

    /// Locks the queue of a parked connection for a write pass; `None` when the
    /// connection is not parked on a plain socket (then it is woken if anything waits,
    /// and writes for itself).
    pub fn lock_parked(&self) -> Option<ParkedWrite<'_>> {
        self.parked_write(self.queue())
    }

    /// [`Client::lock_parked`] without waiting: `Err(Busy)` when the queue is locked,
    /// by another thread or by this one (a client a pass took twice).
    pub fn try_lock_parked(&self) -> Result<Option<ParkedWrite<'_>>, Busy> {
        match self.queue.try_lock() {
            Ok(queue) => Ok(self.parked_write(queue)),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                Ok(self.parked_write(poisoned.into_inner()))
            }
            Err(std::sync::TryLockError::WouldBlock) => Err(Busy),
        }
    }

    fn parked_write<'a>(
        &'a self,
        queue: std::sync::MutexGuard<'a, OutQueue>,
    ) -> Option<ParkedWrite<'a>> {
        match (queue.writer_parked, queue.socket(), queue.closed) {
            (true, Some(socket), false) => Some(ParkedWrite {
                client: self,
                queue,
                socket,
            }),
            _ => {
                let waiting = !queue.entries.is_empty();
                drop(queue);
                if waiting {
                    self.waker.wake();
                }
                None
            }
        }
    }

    /// Wakes the connection's task.
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Registers the connection task to be woken by [`Client::enqueue`] and requests.
    pub fn register_waker(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    /// Asks the connection to close; the first reason wins. True if this call set it.
    pub fn request_close(&self, reason: CloseReason) -> bool {
        let set = self.close_request.compare_exchange(
            0,
            CloseReason::to_byte(Some(reason)),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if set.is_err() {
            return false;
        }
        self.state.store(STATE_CLOSING, Ordering::Relaxed);
        self.relevel(&mut self.queue());
        self.waker.wake();
        true
    }

    pub fn close_requested(&self) -> Option<CloseReason> {
        CloseReason::from_byte(self.close_request.load(Ordering::Acquire))
    }

    pub fn request_ping(&self) {
        self.alive.store(false, Ordering::Relaxed);
        self.ping_requested.store(true, Ordering::Relaxed);
        self.waker.wake();
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
        self.relevel(&mut self.queue());
    }

    pub fn queued(&self) -> usize {
        self.queue().entries.len()
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Records a channel it joined; under the fan-out's channel lock.
    pub fn add_subscription(&self, channel: Arc<str>) {
        let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        // Most clients are in one channel: room for exactly that one, not the four
        // slots a first push reserves; more grow as usual.
        if subscriptions.capacity() == 0 {
            subscriptions.reserve_exact(1);
        }
        subscriptions.push(channel);
    }

    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|subscribed| **subscribed == *channel)
    }
}

#[cfg(test)]
mod tests {
    use super::CloseReason;

    #[test]
    fn close_reasons_survive_their_byte() {
        assert_eq!(CloseReason::from_byte(CloseReason::to_byte(None)), None);
        for reason in CloseReason::ALL {
            assert_eq!(CloseReason::ALL[reason as usize], reason);
            let byte = CloseReason::to_byte(Some(reason));
            assert_eq!(CloseReason::from_byte(byte), Some(reason));
        }
    }
}
