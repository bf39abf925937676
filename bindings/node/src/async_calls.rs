//! The promise forms of the sending calls (`publishAsync`, ...): with the Redis broker a
//! sending call waits for Redis to confirm, so these wait on a thread of their own
//! instead of on the JS thread.

use std::sync::Mutex;

use napi::bindgen_prelude::*;
use napi::{Env, JsDeferred};

use crate::errors::thrown;
use crate::lock;

/// Calls of the promise-returning senders (`publishAsync`, ...) waiting for their thread at
/// most; beyond it a call is rejected at once with `HERALD_QUEUE_FULL`.
const ASYNC_BACKLOG: usize = 4096;

/// What settles the promise of an asynchronous call, on the JS thread.
type Settle = Box<dyn FnOnce(Env) -> Result<()>>;

/// One call of a promise-returning sender and its promise, which is always settled (an
/// unsettled deferred would hold the event loop open forever).
struct AsyncCall {
    call: Box<dyn FnOnce() -> herald::Result<()> + Send>,
    deferred: JsDeferred<(), Settle>,
}

impl AsyncCall {
    fn settle(self, outcome: herald::Result<()>) {
        settle(self.deferred, outcome);
    }

    fn run(self) {
        let AsyncCall { call, deferred } = self;
        // A panic must still settle the promise (and not end the thread of later calls).
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|_| {
                Err(herald::Error::new(
                    herald::ErrorKind::Panic,
                    "internal error (panic) in an asynchronous call",
                ))
            });
        settle(deferred, outcome);
    }
}

/// Resolves the promise, or rejects it with the core's error as a JS `Error` (on the JS thread).
fn settle(deferred: JsDeferred<(), Settle>, outcome: herald::Result<()>) {
    deferred.resolve(Box::new(move |env: Env| {
        outcome.map_err(|e| thrown(&env, e))
    }));
}

enum AsyncCallsState {
    /// No asynchronous call yet: no thread.
    Idle,
    Running(std::sync::mpsc::SyncSender<AsyncCall>),
    /// The server was closed: calls are refused; the thread ends once the queued ones ran.
    Closed,
}

/// The thread of a server's promise-returning senders under the Redis broker, where each
/// call waits for Redis to confirm (one round trip, at most `broker.redis.timeout_ms`):
/// the calls wait there instead of on the JS thread. One thread, so calls take effect
/// in the order they were made, as the synchronous ones do.
pub(crate) struct AsyncCalls {
    state: Mutex<AsyncCallsState>,
}

impl AsyncCalls {
    pub(crate) fn new() -> Self {
        AsyncCalls {
            state: Mutex::new(AsyncCallsState::Idle),
        }
    }

    /// Queues `call`; when it cannot be queued, settles it at once with the reason.
    fn submit(&self, call: AsyncCall) {
        let mut state = lock(&self.state);
        if let AsyncCallsState::Idle = *state {
            let (tx, rx) = std::sync::mpsc::sync_channel::<AsyncCall>(ASYNC_BACKLOG);
            let spawned = std::thread::Builder::new()
                .name("herald-node-calls".into())
                .spawn(move || {
                    for call in rx {
                        call.run();
                    }
                });
            if let Err(e) = spawned {
                drop(state);
                return call.settle(Err(herald::Error::new(
                    herald::ErrorKind::Io,
                    format!("cannot start the thread of asynchronous calls: {e}"),
                )));
            }
            *state = AsyncCallsState::Running(tx);
        }
        let stopped =
            || herald::Error::new(herald::ErrorKind::Stopped, "the server has been stopped");
        let refused = match &*state {
            AsyncCallsState::Running(tx) => match tx.try_send(call) {
                Ok(()) => None,
                Err(std::sync::mpsc::TrySendError::Full(call)) => Some((
                    call,
                    herald::Error::new(
                        herald::ErrorKind::QueueFull,
                        format!(
                            "{ASYNC_BACKLOG} asynchronous calls are already waiting for the broker; \
                             await some before making more"
                        ),
                    ),
                )),
                Err(std::sync::mpsc::TrySendError::Disconnected(call)) => Some((call, stopped())),
            },
            _ => Some((call, stopped())),
        };
        drop(state);
        if let Some((call, why)) = refused {
            call.settle(Err(why));
        }
    }

    /// Refuses further calls; the thread runs the queued ones (which fail fast once the
    /// core has stopped) and ends.
    pub(crate) fn close(&self) {
        *lock(&self.state) = AsyncCallsState::Closed;
    }
}

/// A promise for `call`: with a broker it runs on `calls`' thread, else at once (it only
/// enqueues). Rejects with the core's `HERALD_<KIND>` error.
pub(crate) fn call_async(
    env: &Env,
    calls: &AsyncCalls,
    through_broker: bool,
    call: impl FnOnce() -> herald::Result<()> + Send + 'static,
) -> Result<napi::sys::napi_value> {
    let (deferred, promise) = env.create_deferred::<(), Settle>()?;
    let raw = promise.raw();
    let call = AsyncCall {
        call: Box::new(call),
        deferred,
    };
    if through_broker {
        calls.submit(call);
    } else {
        call.run();
    }
    Ok(raw)
}
