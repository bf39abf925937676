//! Node.js binding of the Herald core (napi-rs, N-API 4+).
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
//! event thread; the handler queues the event's JSON on a (non-weak, so by
//! default ref'd) threadsafe function, which runs the JS callback on the main
//! thread. While that threadsafe function is alive and ref'd it keeps the event
//! loop alive, exactly like a listening `http.Server`. On close, after the core's
//! `stop` has returned (so no more handler calls), a final empty string is
//! queued as an end-of-stream marker and the threadsafe function is released:
//! every event queued before the marker is still delivered, then the function
//! is finalized and no longer holds the loop open.

#![deny(clippy::all)]

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use napi_derive::napi;

/// The threadsafe function events travel through: the JS callback receives one
/// string argument (the event's JSON, or "" as the end-of-stream marker), its
/// return value is ignored, and an exception it throws is reported like any
/// uncaught exception (`callee_handled = false`).
type EventTsfn = ThreadsafeFunction<String, Unknown<'static>, String, Status, false>;

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

/// The sink the core's event handler writes into. `None` once the server has
/// been closed (the threadsafe function is released then).
struct EventSink {
    tsfn: Mutex<Option<EventTsfn>>,
}

impl EventSink {
    fn deliver(&self, json: String) {
        if let Ok(guard) = self.tsfn.lock() {
            if let Some(tsfn) = guard.as_ref() {
                // NonBlocking with an unbounded queue never waits; the only
                // failure is "closing" (environment teardown), where dropping
                // the event is the right thing to do.
                let _ = tsfn.call(json, ThreadsafeFunctionCallMode::NonBlocking);
            }
        }
    }

    /// Queues the end-of-stream marker and releases the threadsafe function.
    fn finish(&self) {
        let taken = match self.tsfn.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(tsfn) = taken {
            let _ = tsfn.call(String::new(), ThreadsafeFunctionCallMode::NonBlocking);
            drop(tsfn); // napi_release_threadsafe_function(release): drains, then finalizes
        }
    }
}

/// Version of the Herald core this addon was built against.
#[napi]
pub fn version() -> String {
    herald::version().to_string()
}

/// Starts a server. `config_json` is the core's JSON config (`null`/`undefined`
/// for all defaults); `on_event` receives each event's JSON text on the main
/// thread, and finally "" once the server is closed. Resolves to a
/// `NativeServer` once the socket is bound.
#[napi(ts_return_type = "Promise<NativeServer>")]
pub fn start(
    config_json: Option<String>,
    on_event: Function<'_, String, Unknown<'static>>,
) -> Result<AsyncTask<StartTask>> {
    let tsfn: EventTsfn = on_event
        .build_threadsafe_function::<String>()
        .callee_handled::<false>()
        .build()?;
    Ok(AsyncTask::new(StartTask {
        config_json,
        sink: Some(Arc::new(EventSink {
            tsfn: Mutex::new(Some(tsfn)),
        })),
    }))
}

pub struct StartTask {
    config_json: Option<String>,
    sink: Option<Arc<EventSink>>,
}

pub struct Started {
    server: herald::Server,
    sink: Arc<EventSink>,
}

impl Task for StartTask {
    type Output = std::result::Result<Started, herald::Error>;
    type JsValue = NativeServer;

    fn compute(&mut self) -> Result<Self::Output> {
        let sink = self.sink.take().expect("StartTask computed twice");
        let outcome = (|| {
            let config = match self.config_json.as_deref() {
                Some(json) => herald::Config::from_json(json)?,
                None => herald::Config::default(),
            };
            let server = herald::Server::start(config)?;
            let handler_sink = Arc::clone(&sink);
            let handler: herald::EventHandler =
                Arc::new(move |event: &herald::Event| handler_sink.deliver(event.to_json()));
            if let Err(e) = server.set_event_handler(Some(handler)) {
                let _ = server.stop(Duration::from_millis(1000));
                return Err(e);
            }
            Ok(server)
        })();
        match outcome {
            Ok(server) => Ok(Ok(Started { server, sink })),
            Err(e) => {
                // Release the threadsafe function so a failed start never keeps
                // the process alive. No marker: the JS side gets the rejection.
                let taken = sink.tsfn.lock().ok().and_then(|mut g| g.take());
                drop(taken);
                Ok(Err(e))
            }
        }
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Self::JsValue> {
        match output {
            Ok(Started { server, sink }) => {
                // If the JS environment goes away with the server still open
                // (worker thread exit, process exit after `unref()`), stop it so
                // it does not outlive its host.
                let hook_server = server.clone();
                let cleanup = env
                    .add_env_cleanup_hook((), move |_| {
                        if !hook_server.is_stopped() {
                            let _ = hook_server.stop(Duration::from_millis(1000));
                        }
                    })
                    .ok();
                Ok(NativeServer {
                    port: u32::from(server.port()),
                    server,
                    sink,
                    cleanup: RefCell::new(cleanup),
                    closing: Cell::new(false),
                })
            }
            Err(e) => Err(js_error(&env, &code_of(e.kind()), e.message())),
        }
    }
}

/// Handle on a running core server. Not constructible from JS; obtained from
/// `start()`. All methods throw a JS `Error` with `code` `HERALD_<KIND>` on failure.
#[napi]
pub struct NativeServer {
    server: herald::Server,
    port: u32,
    sink: Arc<EventSink>,
    // Interior mutability: `close` must take `&self`, since napi-rs keeps the
    // borrow of a `&mut self` method returning an `AsyncTask` active afterwards
    // (observed: the `closed` getter then threw "cannot be borrowed mutably").
    cleanup: RefCell<Option<napi::CleanupEnvHook<()>>>,
    closing: Cell<bool>,
}

#[napi]
impl NativeServer {
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

    #[napi]
    pub fn notify_ai_start(&self, session_id: String, task_json: String) -> Result<(), String> {
        self.server
            .notify_ai_start(&session_id, &task_json)
            .map_err(herald_err)
    }

    #[napi]
    pub fn notify_ai_progress(
        &self,
        session_id: String,
        progress_json: String,
    ) -> Result<(), String> {
        self.server
            .notify_ai_progress(&session_id, &progress_json)
            .map_err(herald_err)
    }

    #[napi]
    pub fn notify_ai_complete(
        &self,
        session_id: String,
        result_json: String,
    ) -> Result<(), String> {
        self.server
            .notify_ai_complete(&session_id, &result_json)
            .map_err(herald_err)
    }

    #[napi]
    pub fn notify_ai_error(&self, session_id: String, error_json: String) -> Result<(), String> {
        self.server
            .notify_ai_error(&session_id, &error_json)
            .map_err(herald_err)
    }

    #[napi]
    pub fn broadcast(&self, message_json: String) -> Result<(), String> {
        self.server.broadcast(&message_json).map_err(herald_err)
    }

    #[napi]
    pub fn broadcast_to_user(&self, user_id: String, message_json: String) -> Result<(), String> {
        self.server
            .broadcast_to_user(&user_id, &message_json)
            .map_err(herald_err)
    }

    #[napi]
    pub fn publish(&self, channel: String, message_json: String) -> Result<(), String> {
        self.server
            .publish(&channel, &message_json)
            .map_err(herald_err)
    }

    #[napi]
    pub fn send(&self, client_id: String, message_json: String) -> Result<(), String> {
        self.server
            .send(&client_id, &message_json)
            .map_err(herald_err)
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

    /// Keep the event loop alive while the server is open (the default).
    #[napi(js_name = "ref")]
    #[allow(deprecated)]
    pub fn ref_(&self, env: Env) -> Result<()> {
        if let Ok(mut guard) = self.sink.tsfn.lock() {
            if let Some(tsfn) = guard.as_mut() {
                tsfn.refer(&env)?;
            }
        }
        Ok(())
    }

    /// Let the process exit even though the server is open.
    #[napi]
    #[allow(deprecated)]
    pub fn unref(&self, env: Env) -> Result<()> {
        if let Ok(mut guard) = self.sink.tsfn.lock() {
            if let Some(tsfn) = guard.as_mut() {
                tsfn.unref(&env)?;
            }
        }
        Ok(())
    }

    /// Gracefully stops the server (waits at most `timeout_ms` before forcing).
    /// Resolves to `true` if the stop had to be forced, `false` if graceful.
    /// After the core has stopped, the event callback receives "" (end of
    /// stream) after every earlier event. Rejects with `HERALD_STOPPED` if the
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
        if let Some(hook) = self.cleanup.borrow_mut().take() {
            let _ = env.remove_env_cleanup_hook(hook);
        }
        Ok(AsyncTask::new(CloseTask {
            server: self.server.clone(),
            sink: Arc::clone(&self.sink),
            timeout: Duration::from_millis(u64::from(timeout_ms)),
        }))
    }
}

pub struct CloseTask {
    server: herald::Server,
    sink: Arc<EventSink>,
    timeout: Duration,
}

impl Task for CloseTask {
    type Output = std::result::Result<bool, herald::Error>;
    type JsValue = bool;

    fn compute(&mut self) -> Result<Self::Output> {
        let result = self.server.stop(self.timeout);
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
