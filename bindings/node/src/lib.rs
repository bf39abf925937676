//! Node.js binding of the Herald core (napi-rs, N-API 5+).
//!
//! This is deliberately a thin native layer; `index.js` wraps it in the public
//! `HeraldServer extends EventEmitter` class. The split of work:
//!
//! * Rust: start/stop off the JS thread (`AsyncTask`s on the libuv pool), every
//!   other call forwarded synchronously (the core only enqueues), errors turned
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
//! authorizer never keeps a closed or unref'd server's process alive. It is
//! released by `setAuthorizer(null)`, after the core has stopped on `close()`,
//! and by the environment cleanup hook.

#![deny(clippy::all)]

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use napi_derive::napi;

/// Events queued for the main thread at most; beyond it the core's event
/// thread waits (and the core's own queue absorbs, then drops and counts).
const EVENT_BACKLOG: usize = 1024;

/// Authorization requests queued for the main thread at most; beyond it (the
/// JS thread is busy) a request is denied at once instead of blocking the
/// core's worker thread.
const AUTH_BACKLOG: usize = 4096;

/// How long the environment cleanup hook lets a server drain when the JS
/// environment goes away with the server still open.
const TEARDOWN_STOP_TIMEOUT: Duration = Duration::from_millis(1000);

/// The threadsafe function events travel through: the JS callback receives one
/// string argument (the event's JSON, or "" as the end-of-stream marker), its
/// return value is ignored, and an exception it throws is reported like any
/// uncaught exception (`callee_handled = false`).
type EventTsfn =
    ThreadsafeFunction<String, Unknown<'static>, String, Status, false, false, EVENT_BACKLOG>;

/// JS error code for a core error kind: `invalid_json` -> `HERALD_INVALID_JSON`.
fn code_of(kind: herald::ErrorKind) -> String {
    format!("HERALD_{}", kind.as_str().to_ascii_uppercase())
}

/// A core error as a napi error whose status string becomes the JS `code`.
fn herald_err(e: herald::Error) -> napi::Error<String> {
    napi::Error::new(code_of(e.kind()), e.message().to_string())
}

/// Builds a JS `Error` with a custom `code` for the async (promise) paths,
/// whose error type is fixed to `napi::Error<Status>`: the error object is
/// created here and carried by reference, so the promise rejects with it as is.
fn js_error(env: &Env, code: &str, message: &str) -> napi::Error {
    let made = (|| -> Result<napi::Error> {
        let mut err = env.create_error(napi::Error::new(Status::GenericFailure, message))?;
        err.set_named_property("code", code)?;
        Ok(napi::Error::from(err.into_unknown(env)?))
    })();
    made.unwrap_or_else(|e| e)
}

/// A core error as the JS `Error` (code `HERALD_<KIND>`) a function made with
/// `create_function_from_closure` throws: its error type carries no custom code, so the
/// error object is built here, as for the async paths.
fn thrown(env: &Env, e: herald::Error) -> napi::Error {
    js_error(env, &code_of(e.kind()), e.message())
}

/// A core call taking an id and a message's JSON text (`herald::Server::publish`, ...).
type SendFn = fn(&herald::Server, &str, &str) -> herald::Result<()>;

/// Bytes a string argument may take (UTF-8) and still be read without allocating: ids
/// are at most 256 bytes and most messages are well under this.
const INLINE_ARG_BYTES: usize = 2048;

/// A JS string argument read as UTF-8 into a stack buffer: one `napi_get_value_string_utf8`
/// call and no allocation when it fits; otherwise read into a `String` like napi-rs does.
struct Utf8Arg {
    inline: MaybeUninit<[u8; INLINE_ARG_BYTES]>,
    spilled: String,
}

impl Utf8Arg {
    fn new() -> Self {
        Self {
            inline: MaybeUninit::uninit(),
            spilled: String::new(),
        }
    }

    /// Argument `index` of the call, which must be a string.
    fn read(&mut self, ctx: &FunctionCallContext<'_>, index: usize) -> Result<&str> {
        let value = ctx.get::<Unknown<'_>>(index)?;
        let env = ctx.env.raw();
        let mut written = 0;
        // SAFETY: napi writes at most INLINE_ARG_BYTES bytes (the last one a NUL) and reports
        // how many it wrote before the NUL; only those are read.
        let status = unsafe {
            napi::sys::napi_get_value_string_utf8(
                env,
                value.raw(),
                self.inline.as_mut_ptr().cast(),
                INLINE_ARG_BYTES,
                &mut written,
            )
        };
        if status != napi::sys::Status::napi_ok {
            return Err(napi::Error::new(
                Status::StringExpected,
                format!("argument {index} must be a string"),
            ));
        }
        // V8 writes whole characters only (at most 4 bytes each): with 4 bytes to spare
        // (besides the NUL) nothing was cut off. Otherwise read the string at full length.
        let bytes = if INLINE_ARG_BYTES - 1 - written >= 4 {
            // SAFETY: the first `written` bytes were initialized by the call above.
            unsafe { std::slice::from_raw_parts(self.inline.as_ptr().cast::<u8>(), written) }
        } else {
            // SAFETY: `value` is a string value of the current call.
            self.spilled = unsafe { String::from_napi_value(env, value.raw())? };
            self.spilled.as_bytes()
        };
        std::str::from_utf8(bytes).map_err(|e| napi::Error::new(Status::InvalidArg, e.to_string()))
    }
}

/// The threadsafe function authorization requests travel through: the JS
/// callback receives the request's JSON; weak, so it never holds the loop open.
type AuthTsfn =
    ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true, AUTH_BACKLOG>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sink the core's event handler writes into. `None` once the server has
/// been closed (the threadsafe function is released then).
struct EventSink {
    tsfn: Mutex<Option<Arc<EventTsfn>>>,
    /// The event types JS listens to, one bit each (`event_bit`): the others are not
    /// sent to the main thread at all, so a host that ignores an event type pays
    /// nothing for it (no JS string, no main-thread wake-up). All, until JS says.
    wanted: AtomicU32,
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
fn event_bit(kind: &str) -> u32 {
    EVENT_TYPES
        .iter()
        .position(|known| *known == kind)
        .map_or(u32::MAX, |i| 1 << i)
}

impl EventSink {
    fn new(tsfn: EventTsfn) -> Self {
        EventSink {
            tsfn: Mutex::new(Some(Arc::new(tsfn))),
            wanted: AtomicU32::new(u32::MAX),
        }
    }

    /// Called on the core's event thread for each event.
    fn on_event(&self, event: &herald::Event) {
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
    fn finish(&self) {
        let taken = lock(&self.tsfn).take();
        if let Some(tsfn) = taken {
            let _ = tsfn.call(String::new(), ThreadsafeFunctionCallMode::Blocking);
        }
    }

    /// Releases the threadsafe function without a marker (failed start).
    fn discard(&self) {
        let taken = lock(&self.tsfn).take();
        drop(taken);
    }

    /// `napi_ref_threadsafe_function` / `napi_unref_threadsafe_function`; main thread only.
    fn set_ref(&self, env: &Env, referenced: bool) -> Result<()> {
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

/// Where the core's authorizer closure sends requests. One per server; the
/// closure installed in the core only holds an `Arc` of it.
///
/// `server` is a handle on the very server whose authorizer holds this sink (a
/// reference cycle), needed to deny a request that cannot be queued. The cycle
/// is broken once the core has stopped (`close()` or environment teardown):
/// `clear` drops both the handle and the threadsafe function.
#[derive(Default)]
struct AuthSink {
    tsfn: Mutex<Option<Arc<AuthTsfn>>>,
    server: Mutex<Option<herald::Server>>,
}

impl AuthSink {
    /// The core's authorizer: called on a Herald worker thread; never blocks.
    fn ask(&self, request: &herald::AuthRequest) {
        let tsfn = lock(&self.tsfn).clone();
        let why = match tsfn {
            Some(tsfn) => {
                match tsfn.call(request.to_json(), ThreadsafeFunctionCallMode::NonBlocking) {
                    Status::Ok => return,
                    Status::QueueFull => {
                        "the JavaScript thread is not keeping up with authorization requests"
                    }
                    _ => "the JavaScript environment is shutting down",
                }
            }
            // setAuthorizer(null) raced with this request.
            None => "the authorizer was removed",
        };
        let server = lock(&self.server).clone();
        if let Some(server) = server {
            let _ = server.authorize_reply(request.id(), herald::AuthDecision::deny(why));
        }
    }

    /// Drops the threadsafe function (released: queued requests still reach
    /// JS, whose late replies are then refused) and the server handle.
    fn clear(&self) {
        let tsfn = lock(&self.tsfn).take();
        let server = lock(&self.server).take();
        drop(tsfn);
        drop(server);
    }
}

/// What the environment cleanup hook stops: the server once started. Shared
/// by the hook, the start task and the native server.
#[derive(Default)]
struct Teardown {
    server: Option<herald::Server>,
    /// Set by the hook: a start still in flight must stop what it starts.
    torn_down: bool,
    /// The server's authorizer sink, cleared once the server is stopped.
    auth: Arc<AuthSink>,
}

type TeardownSlot = Arc<Mutex<Teardown>>;

/// The cleanup hook's handle. Only ever touched on the JS thread (created in
/// `start`, removed in `resolve`/`close`); it merely passes through the start
/// task, which must be `Send`.
struct HookHandle(napi::CleanupEnvHook<TeardownSlot>);
unsafe impl Send for HookHandle {}

fn run_teardown(slot: TeardownSlot) {
    let (server, auth) = {
        let mut t = lock(&slot);
        t.torn_down = true;
        (t.server.take(), Arc::clone(&t.auth))
    };
    if let Some(server) = server {
        if !server.is_stopped() {
            let _ = server.stop(TEARDOWN_STOP_TIMEOUT);
        }
    }
    auth.clear();
}

/// Version of the Herald core this addon was built against.
#[napi]
pub fn version() -> String {
    herald::version().to_string()
}

/// Log records queued for the main thread at most; beyond, records are dropped
/// (the core's log thread never waits for JS).
const LOG_BACKLOG: usize = 1024;

/// The threadsafe function log records travel through: one JSON string
/// `{"level","target","message"}`. Weak: it never keeps the process alive.
type LogTsfn =
    ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true, LOG_BACKLOG>;

/// The installed log callback, process-wide like the core's logging.
static LOG_TSFN: Mutex<Option<Arc<LogTsfn>>> = Mutex::new(None);

/// Routes the core's log records of `max_level` (1 error … 5 trace) and more
/// severe to `callback` on the main thread; `null` stops routing them.
#[napi(ts_args_type = "maxLevel: number, callback: ((record: string) => void) | null")]
pub fn set_log_handler(
    max_level: u32,
    callback: Option<Function<'_, String, Unknown<'static>>>,
) -> Result<(), String> {
    let level = herald::LogLevel::from_number(i64::from(max_level)).ok_or_else(|| {
        napi::Error::new(
            "HERALD_INVALID_ARGUMENT".to_string(),
            format!("maxLevel must be 1 (error) to 5 (trace), not {max_level}"),
        )
    })?;
    let Some(callback) = callback else {
        *lock(&LOG_TSFN) = None;
        herald::set_log_handler(level, None);
        return Ok(());
    };
    let tsfn: LogTsfn = callback
        .build_threadsafe_function::<String>()
        .callee_handled::<false>()
        .weak::<true>()
        .max_queue_size::<LOG_BACKLOG>()
        .build()
        .map_err(|e| napi::Error::new("HERALD_IO".to_string(), e.reason.clone()))?;
    *lock(&LOG_TSFN) = Some(Arc::new(tsfn));
    let handler: herald::LogHandler = Arc::new(|record: &herald::LogRecord| {
        let Some(tsfn) = lock(&LOG_TSFN).clone() else {
            return;
        };
        let level = match record.level {
            herald::LogLevel::Error => "error",
            herald::LogLevel::Warn => "warn",
            herald::LogLevel::Info => "info",
            herald::LogLevel::Debug => "debug",
            herald::LogLevel::Trace => "trace",
        };
        let json = format!(
            r#"{{"level":"{level}","target":{},"message":{}}}"#,
            json_string(&record.target),
            json_string(&record.message)
        );
        // A full queue or a closing environment drops the record.
        let _ = tsfn.call(json, ThreadsafeFunctionCallMode::NonBlocking);
    });
    if herald::set_log_handler(level, Some(handler)) {
        Ok(())
    } else {
        Err(napi::Error::new(
            "HERALD_IO".to_string(),
            "another tracing subscriber is installed in this process".to_string(),
        ))
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Starts a server. `config_json` is the core's JSON config (`null`/`undefined`
/// for all defaults); `on_event` receives each event's JSON text on the main
/// thread, and finally "" once the server is closed. Resolves to a
/// `NativeServer` once the socket is bound.
#[napi(ts_return_type = "Promise<NativeServer>")]
pub fn start(
    env: Env,
    config_json: Option<String>,
    on_event: Function<'_, String, Unknown<'static>>,
) -> Result<AsyncTask<StartTask>> {
    // First the hook, then the threadsafe function: see the module docs.
    let slot: TeardownSlot = Arc::default();
    let hook = env.add_env_cleanup_hook(Arc::clone(&slot), run_teardown)?;
    let tsfn = on_event
        .build_threadsafe_function::<String>()
        .callee_handled::<false>()
        .max_queue_size::<EVENT_BACKLOG>()
        .build();
    let tsfn: EventTsfn = match tsfn {
        Ok(tsfn) => tsfn,
        Err(e) => {
            let _ = env.remove_env_cleanup_hook(hook);
            return Err(e);
        }
    };
    Ok(AsyncTask::new(StartTask {
        config_json,
        sink: Arc::new(EventSink::new(tsfn)),
        slot,
        hook: Some(HookHandle(hook)),
    }))
}

pub struct StartTask {
    config_json: Option<String>,
    sink: Arc<EventSink>,
    slot: TeardownSlot,
    hook: Option<HookHandle>,
}

impl StartTask {
    fn start_server(&self) -> std::result::Result<herald::Server, herald::Error> {
        let config = match self.config_json.as_deref() {
            Some(json) => herald::Config::from_json(json)?,
            None => herald::Config::default(),
        };
        let server = herald::Server::start(config)?;
        let sink = Arc::clone(&self.sink);
        let handler: herald::EventHandler =
            Arc::new(move |event: &herald::Event| sink.on_event(event));
        let installed = server.set_event_handler(Some(handler));
        let torn_down = {
            let mut t = lock(&self.slot);
            if !t.torn_down {
                t.server = Some(server.clone());
            }
            t.torn_down
        };
        if let Err(e) = installed {
            let _ = server.stop(TEARDOWN_STOP_TIMEOUT);
            return Err(e);
        }
        if torn_down {
            // The JS environment went away while we were binding.
            let _ = server.stop(TEARDOWN_STOP_TIMEOUT);
            return Err(herald::Error::new(
                herald::ErrorKind::Stopped,
                "the JavaScript environment ended while the server was starting",
            ));
        }
        Ok(server)
    }
}

impl Task for StartTask {
    type Output = std::result::Result<herald::Server, herald::Error>;
    type JsValue = NativeServer;

    fn compute(&mut self) -> Result<Self::Output> {
        let outcome = self.start_server();
        if outcome.is_err() {
            // A failed start must never keep the process alive. No marker: the
            // JS side gets the rejection.
            self.sink.discard();
        }
        Ok(outcome)
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Self::JsValue> {
        match output {
            Ok(server) => Ok(NativeServer {
                port: u32::from(server.port()),
                server,
                sink: Arc::clone(&self.sink),
                auth: Arc::clone(&lock(&self.slot).auth),
                slot: Arc::clone(&self.slot),
                hook: Cell::new(self.hook.take()),
                closing: Cell::new(false),
            }),
            Err(e) => {
                if let Some(HookHandle(hook)) = self.hook.take() {
                    let _ = env.remove_env_cleanup_hook(hook);
                }
                Err(js_error(&env, &code_of(e.kind()), e.message()))
            }
        }
    }
}

/// Handle on a running core server. Not constructible from JS; obtained from
/// `start()`. All methods throw a JS `Error` with `code` `HERALD_<KIND>` on failure.
///
/// Methods take `&self` (interior mutability): napi-rs keeps the borrow of a
/// `&mut self` method that returns an `AsyncTask` active afterwards (observed:
/// a getter called after `close()` threw "cannot be borrowed mutably").
#[napi]
pub struct NativeServer {
    server: herald::Server,
    port: u32,
    sink: Arc<EventSink>,
    auth: Arc<AuthSink>,
    slot: TeardownSlot,
    hook: Cell<Option<HookHandle>>,
    closing: Cell<bool>,
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
    /// `{notifyAiStart, notifyAiProgress, notifyAiComplete, notifyAiError, broadcast,
    /// broadcastToUser, publish, send}`. Each takes the id (none for `broadcast`) and
    /// the message's JSON text, and throws `HERALD_<KIND>` errors.
    ///
    /// Plain functions rather than `#[napi]` methods because these are the per-message
    /// calls, and a method costs more per call than the core's own work: napi-rs unwraps
    /// the receiver and tracks the borrow (a global lock and hash map) on every call, and
    /// measures, allocates and copies each `String` argument. These functions hold their
    /// own handle on the server and read their arguments into stack buffers (`Utf8Arg`).
    #[napi(ts_return_type = "Record<string, (...args: string[]) => void>")]
    pub fn senders<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let mut senders = Object::new(env)?;
        let with_id: [(&str, SendFn); 7] = [
            ("notifyAiStart", herald::Server::notify_ai_start),
            ("notifyAiProgress", herald::Server::notify_ai_progress),
            ("notifyAiComplete", herald::Server::notify_ai_complete),
            ("notifyAiError", herald::Server::notify_ai_error),
            ("broadcastToUser", herald::Server::broadcast_to_user),
            ("publish", herald::Server::publish),
            ("send", herald::Server::send),
        ];
        for (name, call) in with_id {
            let server = self.server.clone();
            let sender: Function<'_, FnArgs<(String, String)>, ()> = env
                .create_function_from_closure(name, move |ctx| {
                    let (mut id, mut message) = (Utf8Arg::new(), Utf8Arg::new());
                    let id = id.read(&ctx, 0)?;
                    let message = message.read(&ctx, 1)?;
                    call(&server, id, message).map_err(|e| thrown(ctx.env, e))
                })?;
            senders.set_named_property(name, sender)?;
        }
        let server = self.server.clone();
        let broadcast: Function<'_, String, ()> =
            env.create_function_from_closure("broadcast", move |ctx| {
                let mut message = Utf8Arg::new();
                let message = message.read(&ctx, 0)?;
                server.broadcast(message).map_err(|e| thrown(ctx.env, e))
            })?;
        senders.set_named_property("broadcast", broadcast)?;
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
        let Some(callback) = callback else {
            self.server
                .set_authorizer(None)
                .map_err(|e| js_error(&env, &code_of(e.kind()), e.message()))?;
            // The core no longer calls the closure (bar one already under way,
            // which then denies): release the threadsafe function.
            let tsfn = lock(&self.auth.tsfn).take();
            drop(tsfn);
            return Ok(());
        };
        let tsfn: AuthTsfn = callback
            .build_threadsafe_function::<String>()
            .callee_handled::<false>()
            .weak::<true>()
            .max_queue_size::<AUTH_BACKLOG>()
            .build()?;
        let previous = lock(&self.auth.tsfn).replace(Arc::new(tsfn));
        *lock(&self.auth.server) = Some(self.server.clone());
        let auth = Arc::clone(&self.auth);
        let authorizer: herald::Authorizer =
            Arc::new(move |request: &herald::AuthRequest| auth.ask(request));
        if let Err(e) = self.server.set_authorizer(Some(authorizer)) {
            let ours = lock(&self.auth.tsfn).take();
            *lock(&self.auth.tsfn) = previous;
            drop(ours);
            return Err(js_error(&env, &code_of(e.kind()), e.message()));
        }
        drop(previous);
        Ok(())
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
        // From here on close() owns the stop; the teardown hook is not needed.
        if let Some(HookHandle(hook)) = self.hook.take() {
            let _ = env.remove_env_cleanup_hook(hook);
        }
        lock(&self.slot).server = None;
        Ok(AsyncTask::new(CloseTask {
            server: self.server.clone(),
            sink: Arc::clone(&self.sink),
            auth: Arc::clone(&self.auth),
            timeout: Duration::from_millis(u64::from(timeout_ms)),
        }))
    }
}

pub struct CloseTask {
    server: herald::Server,
    sink: Arc<EventSink>,
    auth: Arc<AuthSink>,
    timeout: Duration,
}

impl Task for CloseTask {
    type Output = std::result::Result<bool, herald::Error>;
    type JsValue = bool;

    fn compute(&mut self) -> Result<Self::Output> {
        let result = self.server.stop(self.timeout);
        // Stopped: no more authorizer calls. Break the server <-> sink cycle
        // and release the authorizer's threadsafe function.
        self.auth.clear();
        // The core makes no handler calls after stop returns, so the marker is
        // queued after every event; then the threadsafe function is released.
        self.sink.finish();
        Ok(match result {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == herald::ErrorKind::Timeout => Ok(true),
            Err(e) => Err(e),
        })
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<bool> {
        output.map_err(|e| js_error(&env, &code_of(e.kind()), e.message()))
    }
}
