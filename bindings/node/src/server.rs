//! `NativeServer`: the handle JS holds on a running core server.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use crate::args::Utf8Arg;
use crate::async_calls::{call_async, AsyncCalls};
use crate::authorizer::AuthSink;
use crate::drain::DrainTask;
use crate::errors::{code_of, herald_err, js_error, thrown};
use crate::events::{event_bit, EventSink};
use crate::lifecycle::{CloseTask, HookHandle, TeardownSlot};
use crate::lock;

/// A core call taking an id and a message's JSON text (`herald::Server::publish`, ...).
type SendFn = fn(&herald::Server, &str, &str) -> herald::Result<()>;

/// Handle on a running core server. Not constructible from JS; obtained from
/// `start()`. All methods throw a JS `Error` with `code` `HERALD_<KIND>` on failure.
///
/// Methods take `&self` (interior mutability): napi-rs keeps the borrow of a
/// `&mut self` method that returns an `AsyncTask` active afterwards (observed:
/// a getter called after `close()` threw "cannot be borrowed mutably").
#[napi]
pub struct NativeServer {
    server: herald::Server,
    /// With a broker, sending calls wait for it; their promise forms then run on `calls`.
    through_broker: bool,
    calls: Arc<AsyncCalls>,
    port: u32,
    sink: Arc<EventSink>,
    slot: TeardownSlot,
    hook: Cell<Option<HookHandle>>,
    closing: Cell<bool>,
}

impl NativeServer {
    /// The handle on a server `start` started.
    pub(crate) fn new(
        server: herald::Server,
        through_broker: bool,
        sink: Arc<EventSink>,
        slot: TeardownSlot,
        hook: Option<HookHandle>,
    ) -> Self {
        NativeServer {
            port: u32::from(server.port()),
            server,
            through_broker,
            calls: Arc::new(AsyncCalls::new()),
            sink,
            slot,
            hook: Cell::new(hook),
            closing: Cell::new(false),
        }
    }

    /// Adds `{name}`, `call` with an id and a message, and `{name}Async`, the same as a
    /// promise (`call_async`).
    fn add_senders(
        &self,
        env: &Env,
        senders: &mut Object<'_>,
        name: &str,
        call: impl Fn(&herald::Server, &str, &str) -> herald::Result<()> + Copy + Send + 'static,
    ) -> Result<()> {
        let server = self.server.clone();
        let sender: Function<'_, FnArgs<(String, String)>, ()> =
            env.create_function_from_closure(name, move |ctx| {
                let (mut id, mut message) = (Utf8Arg::new(), Utf8Arg::new());
                let id = id.read(&ctx, 0)?;
                let message = message.read(&ctx, 1)?;
                call(&server, id, message).map_err(|e| thrown(ctx.env, e))
            })?;
        senders.set_named_property(name, sender)?;
        let server = self.server.clone();
        let (calls, through_broker) = (Arc::clone(&self.calls), self.through_broker);
        let async_name = format!("{name}Async");
        let sender: Function<'_, FnArgs<(String, String)>, napi::sys::napi_value> = env
            .create_function_from_closure(&async_name, move |ctx| {
                let (mut id, mut message) = (Utf8Arg::new(), Utf8Arg::new());
                let id = id.read(&ctx, 0)?.to_owned();
                let message = message.read(&ctx, 1)?.to_owned();
                let server = server.clone();
                call_async(ctx.env, &calls, through_broker, move || {
                    call(&server, &id, &message)
                })
            })?;
        senders.set_named_property(&async_name, sender)
    }
}

#[napi]
impl NativeServer {
    /// Sends JS only the events of these core types (`connected`, `disconnected`,
    /// `subscribed`, `unsubscribed`, `client_message`); index.js keeps it in step with
    /// the server's listeners.
    #[napi]
    pub fn set_wanted_events(&self, types: Vec<String>) {
        let wanted = types.iter().fold(0, |bits, kind| bits | event_bit(kind));
        self.sink.wanted.store(wanted, Ordering::Relaxed);
    }

    /// The bound port (stays readable after close).
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.port
    }

    /// True once `close()` has been called (or the core reports it stopped).
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.closing.get() || self.server.is_stopped()
    }

    /// The calls that send a message, as plain functions bound to this server:
    /// `{notifyAiStart, notifyAiProgress, notifyAiComplete, notifyAiError, notifyAiDelta,
    /// notifyAiCancelled, broadcast,
    /// broadcastToUser, publish, send}`. Each takes the id (none for `broadcast`) and
    /// the message's JSON text, and throws `HERALD_<KIND>` errors. Each also has a form
    /// named `…Async` returning a promise, rejected with those errors: with a broker it
    /// waits for Redis off the JS thread (`AsyncCalls`), else it settles at once.
    ///
    /// Plain functions rather than `#[napi]` methods because these are the per-message
    /// calls, and a method costs more per call than the core's own work: napi-rs unwraps
    /// the receiver and tracks the borrow (a global lock and hash map) on every call, and
    /// measures, allocates and copies each `String` argument. These functions hold their
    /// own handle on the server and read their arguments into stack buffers (`Utf8Arg`).
    #[napi(ts_return_type = "Record<string, (...args: string[]) => void | Promise<void>>")]
    pub fn senders<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let mut senders = Object::new(env)?;
        let with_id: [(&str, SendFn); 3] = [
            ("broadcastToUser", herald::Server::broadcast_to_user),
            ("publish", herald::Server::publish),
            ("send", herald::Server::send),
        ];
        for (name, call) in with_id {
            self.add_senders(env, &mut senders, name, call)?;
        }
        // The AI notifications: one core call (notify_ai), one sender per kind.
        let ai_kinds = [
            ("notifyAiStart", herald::AiEvent::Start),
            ("notifyAiProgress", herald::AiEvent::Progress),
            ("notifyAiComplete", herald::AiEvent::Complete),
            ("notifyAiError", herald::AiEvent::Error),
            ("notifyAiDelta", herald::AiEvent::Delta),
            ("notifyAiCancelled", herald::AiEvent::Cancelled),
        ];
        for (name, kind) in ai_kinds {
            self.add_senders(env, &mut senders, name, move |server, id, message| {
                server.notify_ai(kind, id, message)
            })?;
        }
        let server = self.server.clone();
        let broadcast: Function<'_, String, ()> =
            env.create_function_from_closure("broadcast", move |ctx| {
                let mut message = Utf8Arg::new();
                let message = message.read(&ctx, 0)?;
                server.broadcast(message).map_err(|e| thrown(ctx.env, e))
            })?;
        senders.set_named_property("broadcast", broadcast)?;
        let server = self.server.clone();
        let (calls, through_broker) = (Arc::clone(&self.calls), self.through_broker);
        let broadcast_async: Function<'_, String, napi::sys::napi_value> = env
            .create_function_from_closure("broadcastAsync", move |ctx| {
                let mut message = Utf8Arg::new();
                let message = message.read(&ctx, 0)?.to_owned();
                let server = server.clone();
                call_async(ctx.env, &calls, through_broker, move || {
                    server.broadcast(&message)
                })
            })?;
        senders.set_named_property("broadcastAsync", broadcast_async)?;
        Ok(senders)
    }

    /// Stats as JSON text.
    #[napi]
    pub fn stats(&self) -> Result<String, String> {
        self.server.stats_json().map_err(herald_err)
    }

    /// Channel history as JSON text (an array).
    #[napi]
    pub fn history(&self, channel: String) -> Result<String, String> {
        self.server.history_json(&channel).map_err(herald_err)
    }

    /// A session's jobs as JSON text (`{"sessionId","seq","epoch","jobs":[…]}`).
    #[napi]
    pub fn jobs(&self, session_id: String) -> Result<String, String> {
        self.server.jobs_json(&session_id).map_err(herald_err)
    }

    /// Who is in a channel as JSON text (`{channel, members, total, truncated}`).
    #[napi]
    pub fn presence(&self, channel: String) -> Result<String, String> {
        self.server.presence_json(&channel).map_err(herald_err)
    }

    /// Installs (`callback` given) or removes (`null`) the host authorizer.
    /// `callback` receives each request's JSON on the main thread and must
    /// eventually answer with `authorizeReply(request.id, decisionJson)`.
    /// Installing again replaces the callback. Throws `HERALD_STOPPED` once
    /// `close()` has been called.
    #[napi(ts_args_type = "callback: ((requestJson: string) => void) | null")]
    pub fn set_authorizer(
        &self,
        env: Env,
        callback: Option<Function<'_, String, Unknown<'static>>>,
    ) -> Result<()> {
        if self.closing.get() {
            return Err(js_error(
                &env,
                "HERALD_STOPPED",
                "the server has been stopped",
            ));
        }
        // The core drops the closure it replaces (or, on failure, this one) after
        // its last call, and with it that closure's threadsafe function.
        let authorizer = match callback {
            None => None,
            Some(callback) => {
                let sink = AuthSink::new(callback, self.server.clone())?;
                Some(
                    Arc::new(move |request: &herald::AuthRequest| sink.ask(request))
                        as herald::Authorizer,
                )
            }
        };
        self.server
            .set_authorizer(authorizer)
            .map_err(|e| js_error(&env, &code_of(e.kind()), e.message()))
    }

    /// Answers authorization request `id` with the core's decision JSON
    /// (`{"allow":bool,"userId"?,"channels"?,"reason"?}`). Throws
    /// `HERALD_INVALID_JSON` for a malformed decision (the request stays
    /// pending), `HERALD_INVALID_ARGUMENT` if the request was already answered
    /// or timed out, `HERALD_STOPPED` once the server has stopped.
    #[napi]
    pub fn authorize_reply(&self, id: i64, decision_json: String) -> Result<(), String> {
        let id = u64::try_from(id).map_err(|_| {
            napi::Error::new(
                code_of(herald::ErrorKind::InvalidArgument),
                format!("invalid authorization request id {id}"),
            )
        })?;
        let decision = herald::AuthDecision::from_json(&decision_json).map_err(herald_err)?;
        self.server
            .authorize_reply(id, decision)
            .map_err(herald_err)
    }

    /// Keep the event loop alive while the server is open (the default).
    #[napi(js_name = "ref")]
    pub fn ref_(&self, env: Env) -> Result<()> {
        self.sink.set_ref(&env, true)
    }

    /// Let the process exit even though the server is open.
    #[napi]
    pub fn unref(&self, env: Env) -> Result<()> {
        self.sink.set_ref(&env, false)
    }

    /// True while the host should slow down (cheap: two counters in the core).
    #[napi(getter)]
    pub fn backpressure(&self) -> bool {
        self.server.backpressure()
    }

    /// Resolves once every call made before it is fanned out and every healthy
    /// client's backlog is under a quarter of its queue budget; rejects with
    /// `HERALD_TIMEOUT` after `timeout_ms`, `HERALD_STOPPED` if the server stops.
    /// Waits on the libuv pool, never on the JS thread.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn wait_drained(&self, timeout_ms: u32) -> AsyncTask<DrainTask> {
        AsyncTask::new(DrainTask::new(
            self.server.clone(),
            Duration::from_millis(u64::from(timeout_ms)),
        ))
    }

    /// Gracefully stops the server (waits at most `timeout_ms` before forcing).
    /// Resolves to `true` if the stop had to be forced, `false` if graceful.
    /// After the core has stopped, the event callback receives "" (end of
    /// stream) after every earlier event. Throws `HERALD_STOPPED` if the
    /// server was already closed.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn close(&self, env: Env, timeout_ms: u32) -> Result<AsyncTask<CloseTask>> {
        if self.closing.replace(true) {
            return Err(js_error(
                &env,
                "HERALD_STOPPED",
                "the server has been stopped",
            ));
        }
        // Asynchronous calls made from now on are refused; queued ones still run.
        self.calls.close();
        // From here on close() owns the stop; the teardown hook is not needed.
        if let Some(HookHandle(hook)) = self.hook.take() {
            let _ = env.remove_env_cleanup_hook(hook);
        }
        lock(&self.slot).server = None;
        Ok(AsyncTask::new(CloseTask::new(
            self.server.clone(),
            Arc::clone(&self.sink),
            Duration::from_millis(u64::from(timeout_ms)),
        )))
    }
}
