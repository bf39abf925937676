//! The transport: the listening socket, HTTP routes and the WebSocket upgrade, one
//! task per connection, frames shared by every socket, and TLS.

pub(crate) mod connection;
pub(crate) mod http;
pub(crate) mod listen;
pub(crate) mod send_batch;
pub(crate) mod tls;
pub(crate) mod websocket;
pub(crate) mod wire;
pub(crate) mod write_pass;
