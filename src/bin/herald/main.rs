//! `herald`: Herald as a standalone server, for backends in languages without a binding.
//!
//! ```sh
//! herald --config herald.toml
//! ```
//!
//! The TOML file has the same keys as the JSON config, plus `api_key`, the Bearer token
//! of the HTTP publish API (`/api/…`, see `api.rs`); `HERALD_API_KEY` overrides it.
//! Without an API key the server refuses to start, unless it listens on loopback and
//! `--insecure-no-api-key` says so. Stats (`/api/ws/stats`) and `/metrics` answer to
//! `admin_token`, which defaults to the API key. SIGINT or SIGTERM stop it gracefully.

#![warn(clippy::undocumented_unsafe_blocks)]

mod api;
mod settings;

use herald::Server;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

/// The running server, reached by the API's handler (a static: the handler lives in
/// the server's own config, and a clone of the server there would keep it alive).
static SERVER: OnceLock<Server> = OnceLock::new();

/// How long a stop waits for clients to receive what was queued.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "usage: herald [--config FILE.toml] [--insecure-no-api-key]

  --config FILE          TOML config: the keys of Herald's JSON config, plus api_key
  --insecure-no-api-key  run the publish API without a key (loopback hosts only)
  --version, --help

Environment: HERALD_API_KEY (overrides api_key), HERALD_LOG (default herald=info),
HERALD_LOG_FORMAT=json.";

fn main() -> ExitCode {
    let args = match settings::Args::parse(std::env::args().skip(1)) {
        Ok(settings::Parsed::Run(args)) => args,
        Ok(settings::Parsed::Exit(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("herald: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let settings = match settings::Settings::load(&args) {
        Ok(settings) => settings,
        Err(why) => {
            eprintln!("herald: {why}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("HERALD_LOG").is_none() {
        // A daemon says what it does; set before any thread exists.
        std::env::set_var("HERALD_LOG", "herald=info");
    }
    // Blocked here, before the runtime's threads exist, so they inherit the mask and
    // the signals wait for `sigwait` below.
    let signals = stop_signals();
    let routes = settings.config.http_routes.clone();
    let server = match Server::start(settings.config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("herald: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let server = SERVER.get_or_init(|| server);
    let api = api::Api::new(settings.api_key, || SERVER.get());
    if let Err(e) = routes.add("/api/", api::MAX_BODY, api.into_handler()) {
        eprintln!("herald: {e}");
        return ExitCode::from(1);
    }
    // A line for scripts and tests that start it with port 0.
    println!("herald listening on {}", server.local_addr());
    let signal = wait_for(&signals);
    eprintln!("herald: signal {signal}, stopping");
    match server.stop(STOP_TIMEOUT) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::from(1)
        }
    }
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialized by sigemptyset before use; the mask
    // change affects this thread and the threads it starts afterwards.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for(signals: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `signals` is an initialized set blocked on every thread of the process.
    while unsafe { libc::sigwait(signals, &mut signal) } != 0 {}
    signal
}
