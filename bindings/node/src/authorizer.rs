//! Authorization requests to the JS callback, never blocking the core's worker thread.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};

/// Authorization requests queued for the main thread at most; beyond it (the
/// JS thread is busy) a request is denied at once instead of blocking the
/// core's worker thread.
const AUTH_BACKLOG: usize = 4096;

/// The threadsafe function authorization requests travel through: the JS
/// callback receives the request's JSON; weak, so it never holds the loop open.
type AuthTsfn =
    ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true, AUTH_BACKLOG>;

/// Where the core's authorizer closure sends requests: owned by that closure,
/// so dropped when the core drops it (after its last call: replaced, removed,
/// or the server stopped), which releases the threadsafe function and the
/// server handle (needed to deny a request that cannot be queued).
pub(crate) struct AuthSink {
    tsfn: AuthTsfn,
    server: herald::Server,
}

impl AuthSink {
    /// A sink to `callback` (on the main thread) for `server`'s requests.
    pub(crate) fn new(
        callback: Function<'_, String, Unknown<'static>>,
        server: herald::Server,
    ) -> Result<AuthSink> {
        let tsfn = callback
            .build_threadsafe_function::<String>()
            .callee_handled::<false>()
            .weak::<true>()
            .max_queue_size::<AUTH_BACKLOG>()
            .build()?;
        Ok(AuthSink { tsfn, server })
    }

    /// The core's authorizer: called on a Herald worker thread; never blocks.
    pub(crate) fn ask(&self, request: &herald::AuthRequest) {
        let why = match self
            .tsfn
            .call(request.to_json(), ThreadsafeFunctionCallMode::NonBlocking)
        {
            Status::Ok => return,
            Status::QueueFull => {
                "the JavaScript thread is not keeping up with authorization requests"
            }
            _ => "the JavaScript environment is shutting down",
        };
        let _ = self
            .server
            .authorize_reply(request.id(), herald::AuthDecision::deny(why));
    }
}
