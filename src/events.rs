//! Events for the host: a bounded queue drained either by a registered handler on a
//! dedicated thread (so a slow host never stalls network I/O) or pulled by the host.

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
#[derive(Clone, Debug, Serialize)]
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
    /// A typed JSON object from a client that the protocol does not handle itself.
    ClientMessage {
        client_id: String,
        user_id: Option<String>,
        session_id: Option<String>,
        message: Box<RawValue>,
        timestamp: String,
    },
}

impl Event {
    /// The event's `type`: connected, disconnected, subscribed, unsubscribed or client_message.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Connected { .. } => "connected",
            Event::Disconnected { .. } => "disconnected",
            Event::Subscribed { .. } => "subscribed",
            Event::Unsubscribed { .. } => "unsubscribed",
            Event::ClientMessage { .. } => "client_message",
        }
    }

    pub fn client_id(&self) -> &str {
        match self {
            Event::Connected { client_id, .. }
            | Event::Disconnected { client_id, .. }
            | Event::Subscribed { client_id, .. }
            | Event::Unsubscribed { client_id, .. }
            | Event::ClientMessage { client_id, .. } => client_id,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
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

/// A host callback for events. It runs on Herald's event thread, one event at a time.
pub type EventHandler = Arc<dyn Fn(&Event) + Send + Sync>;

struct State {
    queue: VecDeque<Event>,
    handler: Option<EventHandler>,
    closed: bool,
}

impl State {
    fn pop(&mut self) -> Option<Event> {
        let event = self.queue.pop_front();
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            // A burst of events (thousands of clients connecting) does not keep its room.
            self.queue = VecDeque::new();
        }
        event
    }
}

pub(crate) struct EventQueue {
    state: Mutex<State>,
    changed: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    delivery: Mutex<Option<(JoinHandle<()>, ThreadId)>>,
}

impl EventQueue {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(EventQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                handler: None,
                closed: false,
            }),
            changed: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
            delivery: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler panic never happens under this lock, so poisoning is harmless.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event; never blocks. A full queue drops the event and counts it.
    pub fn push(&self, event: Event) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        if state.queue.len() >= self.capacity {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.queue.push_back(event);
        drop(state);
        self.changed.notify_all();
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Installs or clears the handler; the delivery thread starts on first use.
    pub fn set_handler(self: &Arc<Self>, handler: Option<EventHandler>) {
        let start = handler.is_some();
        self.lock().handler = handler;
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
                state.queue.clear();
            }
        }
        self.changed.notify_all();
        if let (Some((handle, _)), false) = (delivery, from_handler) {
            let _ = handle.join();
        }
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
        let q = EventQueue::new(2);
        for n in 0..5 {
            q.push(event(n));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.next(Duration::ZERO).unwrap().unwrap().client_id(), "0");
    }

    #[test]
    fn handler_sees_everything_before_close_returns() {
        let q = EventQueue::new(100);
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
        let q = EventQueue::new(100);
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
