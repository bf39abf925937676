//! Events for the host: a queue bounded in count and in bytes, drained either by a
//! registered handler on a dedicated thread (so a slow host never stalls network I/O)
//! or pulled by the host.

use crate::time::now_iso;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

/// Something a client did, for the host.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    Connected {
        client_id: String,
        user_id: Option<String>,
        session_id: Option<String>,
        remote_addr: String,
        timestamp: String,
    },
    Disconnected {
        client_id: String,
        user_id: Option<String>,
        session_id: Option<String>,
        code: Option<u16>,
        reason: String,
        timestamp: String,
    },
    Subscribed {
        client_id: String,
        channel: String,
        timestamp: String,
    },
    Unsubscribed {
        client_id: String,
        channel: String,
        timestamp: String,
    },
    /// A client (allowed to, as for a subscribe) asks to cancel a job of a session; the
    /// host stops it and ends it with `ai_cancelled`. `jobId` is absent for the
    /// session's implicit job.
    CancelRequested {
        client_id: String,
        user_id: Option<String>,
        session_id: String,
        job_id: Option<String>,
        timestamp: String,
    },
    /// A typed JSON object from a client that the protocol does not handle itself.
    ClientMessage {
        client_id: String,
        user_id: Option<String>,
        session_id: Option<String>,
        #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
        message: Box<RawValue>,
        timestamp: String,
    },
}

impl Event {
    /// The event's `type`: connected, disconnected, subscribed, unsubscribed,
    /// cancel_requested or client_message.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Connected { .. } => "connected",
            Event::Disconnected { .. } => "disconnected",
            Event::Subscribed { .. } => "subscribed",
            Event::Unsubscribed { .. } => "unsubscribed",
            Event::CancelRequested { .. } => "cancel_requested",
            Event::ClientMessage { .. } => "client_message",
        }
    }

    pub fn client_id(&self) -> &str {
        match self {
            Event::Connected { client_id, .. }
            | Event::Disconnected { client_id, .. }
            | Event::Subscribed { client_id, .. }
            | Event::Unsubscribed { client_id, .. }
            | Event::CancelRequested { client_id, .. }
            | Event::ClientMessage { client_id, .. } => client_id,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }

    /// What the event holds in memory, roughly: its strings (a client message's raw JSON
    /// above all) plus a fixed overhead. Cheap, so every push can afford it.
    pub(crate) fn estimated_bytes(&self) -> usize {
        fn opt(s: &Option<String>) -> usize {
            s.as_ref().map_or(0, String::len)
        }
        let strings = match self {
            Event::Connected {
                client_id,
                user_id,
                session_id,
                remote_addr,
                timestamp,
            } => {
                client_id.len()
                    + opt(user_id)
                    + opt(session_id)
                    + remote_addr.len()
                    + timestamp.len()
            }
            Event::Disconnected {
                client_id,
                user_id,
                session_id,
                reason,
                timestamp,
                ..
            } => client_id.len() + opt(user_id) + opt(session_id) + reason.len() + timestamp.len(),
            Event::Subscribed {
                client_id,
                channel,
                timestamp,
            }
            | Event::Unsubscribed {
                client_id,
                channel,
                timestamp,
            } => client_id.len() + channel.len() + timestamp.len(),
            Event::CancelRequested {
                client_id,
                user_id,
                session_id,
                job_id,
                timestamp,
            } => client_id.len() + opt(user_id) + session_id.len() + opt(job_id) + timestamp.len(),
            Event::ClientMessage {
                client_id,
                user_id,
                session_id,
                message,
                timestamp,
            } => {
                client_id.len()
                    + opt(user_id)
                    + opt(session_id)
                    + message.get().len()
                    + timestamp.len()
            }
        };
        EVENT_OVERHEAD_BYTES + strings
    }

    pub(crate) fn subscribed(client_id: &str, channel: &str) -> Event {
        Event::Subscribed {
            client_id: client_id.into(),
            channel: channel.into(),
            timestamp: now_iso(),
        }
    }

    pub(crate) fn unsubscribed(client_id: &str, channel: &str) -> Event {
        Event::Unsubscribed {
            client_id: client_id.into(),
            channel: channel.into(),
            timestamp: now_iso(),
        }
    }
}

/// Bytes an event costs besides its strings: the enum, the queue slot and the
/// strings' allocation headers, rounded up.
const EVENT_OVERHEAD_BYTES: usize = 192;

/// A host callback for events. It runs on Herald's event thread, one event at a time.
pub type EventHandler = Arc<dyn Fn(&Event) + Send + Sync>;

struct State {
    /// Each event with its estimated bytes, so a pop subtracts what its push added.
    queue: VecDeque<(Event, usize)>,
    /// Sum of the estimated bytes of the queued events.
    bytes: usize,
    handler: Option<EventHandler>,
    closed: bool,
}

impl State {
    fn pop(&mut self) -> Option<Event> {
        let (event, bytes) = self.queue.pop_front()?;
        self.bytes -= bytes;
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            // A burst of events (thousands of clients connecting) does not keep its room.
            self.queue = VecDeque::new();
        }
        Some(event)
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

pub(crate) struct EventQueue {
    state: Mutex<State>,
    changed: Condvar,
    capacity: usize,
    max_bytes: usize,
    dropped: AtomicU64,
    delivery: Mutex<Option<(JoinHandle<()>, ThreadId)>>,
}

impl EventQueue {
    /// A queue of at most `capacity` events and `max_bytes` estimated bytes.
    pub fn new(capacity: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(EventQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                handler: None,
                closed: false,
            }),
            changed: Condvar::new(),
            capacity,
            max_bytes,
            dropped: AtomicU64::new(0),
            delivery: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler panic never happens under this lock, so poisoning is harmless.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event; never blocks. An event that would take the queue past its count
    /// or its bytes is dropped and counted (one larger than the byte bound always is).
    pub fn push(&self, event: Event) {
        let bytes = event.estimated_bytes();
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let full = state.queue.len() >= self.capacity
            || state.bytes.saturating_add(bytes) > self.max_bytes;
        if full {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.queue.push_back((event, bytes));
        state.bytes += bytes;
        drop(state);
        self.changed.notify_all();
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Estimated bytes of the queued events (stats' `eventsQueuedBytes`).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Installs or clears the handler; the delivery thread starts on first use. Once the
    /// queue is closed, a new handler is not installed. The handler replaced (or refused)
    /// is dropped here, outside the lock, or by the delivery thread after its last call:
    /// what it owns (a C host's user data) is released after the last call either way.
    pub fn set_handler(self: &Arc<Self>, handler: Option<EventHandler>) {
        let start = handler.is_some();
        let replaced = {
            let mut state = self.lock();
            if state.closed {
                handler
            } else {
                std::mem::replace(&mut state.handler, handler)
            }
        };
        drop(replaced);
        self.changed.notify_all();
        if start {
            let mut delivery = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
            if delivery.is_none() && !self.lock().closed {
                let queue = Arc::clone(self);
                let handle = thread::Builder::new()
                    .name("herald-events".into())
                    .spawn(move || queue.deliver())
                    .expect("spawning the event thread");
                let id = handle.thread().id();
                *delivery = Some((handle, id));
            }
        }
    }

    fn deliver(&self) {
        loop {
            let mut state = self.lock();
            let (event, handler) = loop {
                if let (Some(handler), false) = (&state.handler, state.queue.is_empty()) {
                    let handler = Arc::clone(handler);
                    break (state.pop().expect("queue is not empty"), handler);
                }
                if state.closed && (state.queue.is_empty() || state.handler.is_none()) {
                    return;
                }
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            };
            drop(state);
            if catch_unwind(AssertUnwindSafe(|| handler(&event))).is_err() {
                tracing::error!("an event handler panicked; the event was dropped");
            }
        }
    }

    /// Takes the next event, waiting up to `timeout`. `Err(())` once the queue is closed and empty.
    pub fn next(&self, timeout: Duration) -> Result<Option<Event>, ()> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(event) = state.pop() {
                return Ok(Some(event));
            }
            if state.closed {
                return Err(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops accepting events, lets the handler see what is queued, and waits for it.
    /// Called from the handler itself (a handler that stops its server), it cannot wait
    /// for itself: what is still queued is dropped instead, so no handler call follows.
    pub fn close(&self) {
        let delivery = self
            .delivery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let from_handler = delivery
            .as_ref()
            .is_some_and(|(_, id)| *id == thread::current().id());
        {
            let mut state = self.lock();
            state.closed = true;
            if from_handler {
                state.clear();
            }
        }
        self.changed.notify_all();
        if let (Some((handle, _)), false) = (delivery, from_handler) {
            let _ = handle.join();
        }
        // No call follows: the handler goes (called from the handler itself, the delivery
        // thread still holds it and drops it when that call returns).
        let handler = self.lock().handler.take();
        drop(handler);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> Event {
        Event::subscribed(&n.to_string(), "c")
    }

    #[test]
    fn bounded_and_counts_drops() {
        let q = EventQueue::new(2, usize::MAX);
        for n in 0..5 {
            q.push(event(n));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.next(Duration::ZERO).unwrap().unwrap().client_id(), "0");
    }

    fn client_message(client: &str, body_len: usize) -> Event {
        let json = format!(r#"{{"type":"x","body":"{}"}}"#, "a".repeat(body_len));
        Event::ClientMessage {
            client_id: client.into(),
            user_id: None,
            session_id: None,
            message: RawValue::from_string(json).unwrap(),
            timestamp: now_iso(),
        }
    }

    #[test]
    fn a_client_message_costs_its_json_length_plus_an_overhead() {
        let small = client_message("c", 10);
        let large = client_message("c", 10_010);
        assert_eq!(
            large.estimated_bytes() - small.estimated_bytes(),
            10_000,
            "the raw JSON is counted byte for byte"
        );
        assert!(small.estimated_bytes() >= EVENT_OVERHEAD_BYTES + 10);
        let subscribed = Event::subscribed("client", "channel");
        assert_eq!(
            subscribed.estimated_bytes(),
            EVENT_OVERHEAD_BYTES + "client".len() + "channel".len() + now_iso().len()
        );
    }

    #[test]
    fn bounded_in_bytes_and_counts_drops() {
        let one = client_message("0", 1000).estimated_bytes();
        // Room for two such events, not three, and plenty of room in count.
        let q = EventQueue::new(100, 2 * one + one / 2);
        for n in 0..5 {
            q.push(client_message(&n.to_string(), 1000));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.bytes(), 2 * one);
        assert_eq!(q.dropped(), 3);
        // Small events still fit in what is left.
        q.push(event(9));
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 3);

        // Taking an event gives its bytes back.
        assert_eq!(q.next(Duration::ZERO).unwrap().unwrap().client_id(), "0");
        assert_eq!(q.bytes(), one + event(9).estimated_bytes());
        q.push(client_message("5", 1000));
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 3);
        while q.next(Duration::ZERO).unwrap().is_some() {}
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn an_event_larger_than_the_byte_bound_is_dropped_even_when_the_queue_is_empty() {
        let q = EventQueue::new(100, 4096);
        q.push(client_message("big", 8192));
        assert_eq!((q.len(), q.bytes(), q.dropped()), (0, 0, 1));
        q.push(client_message("small", 100));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn the_count_bound_holds_when_bytes_are_plentiful() {
        let q = EventQueue::new(3, 1 << 30);
        for n in 0..10 {
            q.push(client_message(&n.to_string(), 10));
        }
        assert_eq!((q.len(), q.dropped()), (3, 7));
    }

    #[test]
    fn bytes_are_released_when_the_handler_closes_the_queue_from_inside() {
        let q = EventQueue::new(100, 1 << 20);
        let queue = Arc::clone(&q);
        let seen = Arc::new(AtomicU64::new(0));
        let sink = Arc::clone(&seen);
        // The first call closes the queue while events are still queued behind it.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let wait = Arc::clone(&gate);
        q.set_handler(Some(Arc::new(move |_: &Event| {
            let (open, cv) = &*wait;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            if sink.fetch_add(1, Ordering::SeqCst) == 0 {
                queue.close();
            }
        })));
        for n in 0..10 {
            q.push(client_message(&n.to_string(), 100));
        }
        assert!(q.bytes() > 0);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(50));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!((q.len(), q.bytes()), (0, 0));
    }

    #[test]
    fn handler_sees_everything_before_close_returns() {
        let q = EventQueue::new(100, usize::MAX);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        q.set_handler(Some(Arc::new(move |e: &Event| {
            sink.lock().unwrap().push(e.client_id().to_string())
        })));
        for n in 0..10 {
            q.push(event(n));
        }
        q.close();
        assert_eq!(seen.lock().unwrap().len(), 10);
        assert!(q.next(Duration::ZERO).is_err());
    }

    #[test]
    fn closing_from_the_handler_neither_waits_for_itself_nor_calls_again() {
        let q = EventQueue::new(100, usize::MAX);
        let calls = Arc::new(AtomicU64::new(0));
        let (queue, counter) = (Arc::clone(&q), Arc::clone(&calls));
        q.set_handler(Some(Arc::new(move |_: &Event| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                queue.close();
            }
        })));
        for n in 0..10 {
            q.push(event(n));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(100));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(q.next(Duration::ZERO).is_err(), "closed and empty");
    }

    #[test]
    fn serializes_with_camel_case_fields() {
        let json = Event::ClientMessage {
            client_id: "c".into(),
            user_id: None,
            session_id: Some("s".into()),
            message: RawValue::from_string(r#"{"type":"x"}"#.into()).unwrap(),
            timestamp: "t".into(),
        }
        .to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["type"], "client_message");
        assert_eq!(v["clientId"], "c");
        assert_eq!(v["sessionId"], "s");
        assert_eq!(v["message"]["type"], "x");
    }
}
