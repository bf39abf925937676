//! Starting and closing a server off the JS thread, and stopping it when the JS
//! environment goes away with the server open.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use crate::errors::{code_of, js_error};
use crate::events::{EventSink, EventTsfn, EVENT_BACKLOG};
use crate::lock;
use crate::server::NativeServer;

/// How long the environment cleanup hook lets a server drain when the JS
/// environment goes away with the server still open.
pub(crate) const TEARDOWN_STOP_TIMEOUT: Duration = Duration::from_millis(1000);

/// What the environment cleanup hook stops: the server once started. Shared
/// by the hook, the start task and the native server.
#[derive(Default)]
pub(crate) struct Teardown {
    pub(crate) server: Option<herald::Server>,
    /// Set by the hook: a start still in flight must stop what it starts.
    torn_down: bool,
}

pub(crate) type TeardownSlot = Arc<Mutex<Teardown>>;

/// The cleanup hook's handle. Only ever touched on the JS thread (created in
/// `start`, removed in `resolve`/`close`); it merely passes through the start
/// task, which must be `Send`.
pub(crate) struct HookHandle(pub(crate) napi::CleanupEnvHook<TeardownSlot>);
unsafe impl Send for HookHandle {}

fn run_teardown(slot: TeardownSlot) {
    let server = {
        let mut t = lock(&slot);
        t.torn_down = true;
        t.server.take()
    };
    if let Some(server) = server {
        if !server.is_stopped() {
            // Also drops the authorizer's closure (the core does on stop).
            let _ = server.stop(TEARDOWN_STOP_TIMEOUT);
        }
    }
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
    /// The server, and whether its calls go through a broker (and so wait for it).
    fn start_server(&self) -> std::result::Result<(herald::Server, bool), herald::Error> {
        let config = match self.config_json.as_deref() {
            Some(json) => herald::Config::from_json(json)?,
            None => herald::Config::default(),
        };
        let through_broker = config.redis().is_some();
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
        Ok((server, through_broker))
    }
}

impl Task for StartTask {
    type Output = std::result::Result<(herald::Server, bool), herald::Error>;
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
            Ok((server, through_broker)) => Ok(NativeServer::new(
                server,
                through_broker,
                Arc::clone(&self.sink),
                Arc::clone(&self.slot),
                self.hook.take(),
            )),
            Err(e) => {
                if let Some(HookHandle(hook)) = self.hook.take() {
                    let _ = env.remove_env_cleanup_hook(hook);
                }
                Err(js_error(&env, &code_of(e.kind()), e.message()))
            }
        }
    }
}

pub struct CloseTask {
    server: herald::Server,
    sink: Arc<EventSink>,
    timeout: Duration,
}

impl CloseTask {
    pub(crate) fn new(server: herald::Server, sink: Arc<EventSink>, timeout: Duration) -> Self {
        CloseTask {
            server,
            sink,
            timeout,
        }
    }
}

impl Task for CloseTask {
    type Output = std::result::Result<bool, herald::Error>;
    type JsValue = bool;

    fn compute(&mut self) -> Result<Self::Output> {
        // Stopping also drops the authorizer's closure (after its last call),
        // which releases its threadsafe function and its server handle.
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
