//! Herald: an embeddable real-time notification core.
//!
//! A host process starts a [`Server`], which owns its own tokio runtime and serves
//! WebSocket clients (and a few HTTP endpoints) on one port. The host pushes AI-task
//! notifications, broadcasts and channel publications; clients subscribe to sessions
//! and channels. The C ABI lives in the `ffi` module, hidden from the Rust API (its
//! functions are for C and are `unsafe` to call); the core knows nothing of it.

#![warn(clippy::undocumented_unsafe_blocks)]

mod assets;
mod auth;
mod backlog;
mod broker;
mod client;
mod config;
mod contract;
mod error;
mod events;
mod fanout;
mod host_routes;
mod jobs;
mod limits;
mod logging;
mod memory;
mod merge;
mod metrics;
mod presence;
mod protocol;
mod rollup;
mod server;
mod shared;
mod stats;
mod time;
mod transport;

#[cfg(test)]
mod fuzz_tests;

#[doc(hidden)]
pub mod ffi;

pub use assets::StaticFiles;
pub use auth::jwt::install_jwt_crypto_provider;
pub use auth::{AuthAction, AuthDecision, AuthRequest, Authorizer};
pub use config::{
    AiConfig, AuthConfig, BrokerConfig, Config, HistoryConfig, JobsConfig, PresenceConfig,
    RateLimitConfig, RedisConfig, TlsConfig,
};
pub use contract::contract_schema;
pub use error::{Error, ErrorKind, Result};
pub use events::{Event, EventHandler};
pub use host_routes::{HttpHandler, HttpRequest, HttpResponse, HttpRoutes};
pub use logging::{dropped_log_records, set_log_handler, LogHandler, LogLevel, LogRecord};
pub use protocol::AiEvent;
pub use server::Server;

/// The library version.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
