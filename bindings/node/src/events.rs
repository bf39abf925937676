//! Core events to the JS callback, through a bounded threadsafe function.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;

use crate::lock;

/// Events queued for the main thread at most; beyond it the core's event
/// thread waits (and the core's own queue absorbs, then drops and counts).
pub(crate) const EVENT_BACKLOG: usize = 1024;

/// The threadsafe function events travel through: the JS callback receives one
/// string argument (the event's JSON, or "" as the end-of-stream marker), its
/// return value is ignored, and an exception it throws is reported like any
/// uncaught exception (`callee_handled = false`).
pub(crate) type EventTsfn =
    ThreadsafeFunction<String, Unknown<'static>, String, Status, false, false, EVENT_BACKLOG>;

/// The sink the core's event handler writes into. `None` once the server has
/// been closed (the threadsafe function is released then).
pub(crate) struct EventSink {
    tsfn: Mutex<Option<Arc<EventTsfn>>>,
    /// The event types JS listens to, one bit each (`event_bit`): the others are not
    /// sent to the main thread at all, so a host that ignores an event type pays
    /// nothing for it (no JS string, no main-thread wake-up). All, until JS says.
    pub(crate) wanted: AtomicU32,
}

/// The core's event types, in the bit order of `EventSink::wanted`.
const EVENT_TYPES: [&str; 5] = [
    "connected",
    "disconnected",
    "subscribed",
    "unsubscribed",
    "client_message",
];

/// The bit of an event type; a type this binding does not know yet is always sent.
pub(crate) fn event_bit(kind: &str) -> u32 {
    EVENT_TYPES
        .iter()
        .position(|known| *known == kind)
        .map_or(u32::MAX, |i| 1 << i)
}

impl EventSink {
    pub(crate) fn new(tsfn: EventTsfn) -> Self {
        EventSink {
            tsfn: Mutex::new(Some(Arc::new(tsfn))),
            wanted: AtomicU32::new(u32::MAX),
        }
    }

    /// Called on the core's event thread for each event.
    pub(crate) fn on_event(&self, event: &herald::Event) {
        if self.wanted.load(Ordering::Relaxed) & event_bit(event.kind()) != 0 {
            self.deliver(event.to_json());
        }
    }

    fn current(&self) -> Option<Arc<EventTsfn>> {
        lock(&self.tsfn).clone()
    }

    /// Called on the core's event thread. Blocks while the queue is full; never
    /// holds the lock while doing so (the main thread takes it for ref/unref).
    fn deliver(&self, json: String) {
        if let Some(tsfn) = self.current() {
            // Fails only with "closing" (environment teardown): dropping the
            // event is then the right thing to do.
            let _ = tsfn.call(json, ThreadsafeFunctionCallMode::Blocking);
        }
    }

    /// Queues the end-of-stream marker and releases the threadsafe function
    /// (napi_tsfn_release: what is queued is still delivered, then it is finalized).
    pub(crate) fn finish(&self) {
        let taken = lock(&self.tsfn).take();
        if let Some(tsfn) = taken {
            let _ = tsfn.call(String::new(), ThreadsafeFunctionCallMode::Blocking);
        }
    }

    /// Releases the threadsafe function without a marker (failed start).
    pub(crate) fn discard(&self) {
        let taken = lock(&self.tsfn).take();
        drop(taken);
    }

    /// `napi_ref_threadsafe_function` / `napi_unref_threadsafe_function`; main thread only.
    pub(crate) fn set_ref(&self, env: &Env, referenced: bool) -> Result<()> {
        if let Some(tsfn) = self.current() {
            // `aborted` turns true when Node finalized the function (teardown);
            // finalization happens on this thread, so it cannot race with us.
            if !tsfn.aborted() {
                let status = unsafe {
                    if referenced {
                        napi::sys::napi_ref_threadsafe_function(env.raw(), tsfn.raw())
                    } else {
                        napi::sys::napi_unref_threadsafe_function(env.raw(), tsfn.raw())
                    }
                };
                if status != napi::sys::Status::napi_ok {
                    return Err(napi::Error::new(
                        Status::from(status),
                        "could not change the server's hold on the event loop",
                    ));
                }
            }
        }
        Ok(())
    }
}
