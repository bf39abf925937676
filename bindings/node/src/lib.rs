//! Node.js binding of the Herald core (napi-rs, N-API 5+).
//!
//! This is deliberately a thin native layer; `index.js` wraps it in the public
//! `HeraldServer extends EventEmitter` class. The split of work:
//!
//! * Rust: start/stop off the JS thread (`AsyncTask`s on the libuv pool), every
//!   other call forwarded synchronously (the core only enqueues; with the Redis
//!   broker a sending call waits for Redis, so each also has a promise form that
//!   waits on a thread of its own, see `async_calls.rs`), errors turned
//!   into JS `Error`s whose `code` is `HERALD_<KIND>` (from `ErrorKind::as_str`),
//!   and core events forwarded to a JS callback through a `ThreadsafeFunction`.
//! * JS: option key conversion, `JSON.stringify` of message objects, argument
//!   type checks, `JSON.parse` of events/stats, and the `EventEmitter`.
//!
//! Event delivery and process lifetime: the core calls our handler on its own
//! event thread, one event at a time; the handler queues the event's JSON on a
//! (non-weak, so by default ref'd) threadsafe function, which runs the JS
//! callback on the main thread. While that threadsafe function is alive and
//! ref'd it keeps the event loop alive, exactly like a listening `http.Server`.
//! Its queue is bounded and the handler blocks when it is full, so a JS side
//! that falls behind pushes back on the core's own bounded event queue (which
//! drops and counts, see `event_queue_size` and `eventsDropped`) instead of
//! growing memory here.
//!
//! On close, after the core's `stop` has returned (so no more handler calls), an
//! empty string is queued as an end-of-stream marker and the threadsafe function
//! is released: every event queued before the marker is still delivered, then
//! the function is finalized and no longer holds the loop open.
//!
//! If the JS environment is torn down with the server open (process exit after
//! `unref()`, a worker thread ending), an environment cleanup hook stops the
//! server. That hook is registered *before* the threadsafe function is created:
//! cleanup hooks run last-in first-out, so Node closes the threadsafe function
//! first, which wakes an event thread blocked on its full queue; only then does
//! the hook wait for the core to stop (and for its event thread to finish).
//!
//! Host authorizer: the core calls our closure on one of its worker threads
//! (never an I/O thread) for every authorization request. The closure must not
//! block, so it only queues the request's JSON on a second threadsafe function
//! (non-blocking call) and returns; the JS callback runs the host's function
//! and answers through `authorizeReply(id, decisionJson)` whenever it settles.
//! If the request cannot be queued (the queue of `AUTH_BACKLOG` requests is
//! full because the JS thread is busy, or the environment is going away) it is
//! denied at once; a request queued but not answered in time is denied by the
//! core (`auth.authorizer_timeout_ms`). That threadsafe function is *weak*
//! (unref'd): whether the process stays alive is decided by the event
//! threadsafe function alone (and thus by `ref()`/`unref()`/`close()`), so an
//! authorizer never keeps a closed or unref'd server's process alive. The
//! closure owns it (and the server handle it denies through): the core drops
//! the closure after its last call, once it is replaced or removed or the
//! server stops, which releases both.
//!
//! Files: `lifecycle.rs` (start, close, environment teardown), `server.rs`
//! (`NativeServer`), `async_calls.rs`, `events.rs`, `authorizer.rs`, `logs.rs`, `errors.rs`,
//! `args.rs`.

#![deny(clippy::all)]

mod args;
mod async_calls;
mod authorizer;
mod drain;
mod errors;
mod events;
mod lifecycle;
mod logs;
mod server;

use std::sync::{Mutex, MutexGuard};

use napi_derive::napi;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Version of the Herald core this addon was built against.
#[napi]
pub fn version() -> String {
    herald::version().to_string()
}
