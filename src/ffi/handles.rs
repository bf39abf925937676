//! Server handles handed to C are registry tokens, not pointers to memory: a handle
//! used after `herald_stop`, or one that never existed, is detected and refused.

use super::herald_server;
use crate::error::{Error, ErrorKind, Result};
use crate::Server;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

static SERVERS: Lazy<RwLock<HashMap<usize, Server>>> = Lazy::new(RwLock::default);
/// Tokens are never reused, so a stale handle can't reach a newer server. They step by
/// 16 and start high so they look like no small integer or aligned heap address.
static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(0x4E52_0000);

pub(super) fn register(server: Server) -> *mut herald_server {
    let token = NEXT_TOKEN.fetch_add(16, Ordering::Relaxed) | 0x1;
    SERVERS
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(token, server);
    token as *mut herald_server
}

fn invalid(handle: *const herald_server) -> Error {
    if handle.is_null() {
        Error::new(ErrorKind::NullArgument, "server is NULL")
    } else {
        Error::new(ErrorKind::InvalidHandle, "unknown or stopped server handle")
    }
}

pub(super) fn lookup(handle: *const herald_server) -> Result<Server> {
    SERVERS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(handle as usize))
        .cloned()
        .ok_or_else(|| invalid(handle))
}

pub(super) fn unregister(handle: *mut herald_server) -> Result<Server> {
    SERVERS
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(handle as usize))
        .ok_or_else(|| invalid(handle))
}
