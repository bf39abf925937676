//! The C ABI: a thin boundary over [`crate::Server`].
//!
//! Conventions (after rustls-ffi): one `herald_` prefix; opaque handles; every fallible
//! call returns a [`herald_status`] and writes its outputs only on success; the message
//! of the last failure on a thread is read with `herald_last_error`; no panic crosses
//! into C. Server handles are tokens checked against a registry on every call, so a
//! stopped or freed handle yields `HERALD_ERR_INVALID_HANDLE`, never undefined behaviour.
//! A host's `user_data` comes with a drop callback (hyper's model), called once when
//! Herald is done with it. Functions that read or write through a pointer argument are
//! `unsafe`: only C (and this crate's C ABI tests) call them.

#![allow(non_camel_case_types)]

mod boundary;
mod handles;

use crate::error::{Error, ErrorKind};
use crate::protocol::AiEvent;
use crate::{Config, Server};
use boundary::{c_str, guard, optional_c_str, require_out, write_out, write_string, UserData};
use handles::{lookup, register, unregister};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

/// An opaque server handle, from `herald_start` until `herald_stop`.
pub struct herald_server {
    _private: [u8; 0],
}

/// The result of every call that can fail. `herald_last_error` gives the message.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum herald_status {
    HERALD_OK = 0,
    /// A required pointer argument was NULL.
    HERALD_ERR_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    HERALD_ERR_INVALID_UTF8 = 2,
    /// A JSON argument was not valid JSON, or not a JSON object.
    HERALD_ERR_INVALID_JSON = 3,
    /// An argument was empty, too long or otherwise unacceptable.
    HERALD_ERR_INVALID_ARGUMENT = 4,
    /// The configuration was rejected.
    HERALD_ERR_INVALID_CONFIG = 5,
    /// The server handle is unknown, stopped or freed.
    HERALD_ERR_INVALID_HANDLE = 6,
    /// `herald_send` named a client that is not connected.
    HERALD_ERR_UNKNOWN_CLIENT = 7,
    /// The publish queue is full: the server cannot keep up. Nothing was queued.
    HERALD_ERR_QUEUE_FULL = 8,
    /// A socket or runtime could not be set up.
    HERALD_ERR_IO = 9,
    /// Nothing happened within the timeout (`herald_next_event`), or a stop had to force.
    HERALD_ERR_TIMEOUT = 10,
    /// The server is stopping or stopped.
    HERALD_ERR_STOPPED = 11,
    /// A panic was caught inside Herald; the call had no effect.
    HERALD_ERR_PANIC = 12,
    /// A configured bound is reached (the channel table is full, say). Nothing was queued.
    HERALD_ERR_LIMIT = 13,
    /// The broker (Redis) is unreachable or did not confirm the publication in time.
    /// Nothing was published, or after a timeout, possibly was: never OK-and-lost.
    HERALD_ERR_UNAVAILABLE = 14,
}

impl From<ErrorKind> for herald_status {
    fn from(kind: ErrorKind) -> Self {
        use herald_status::*;
        match kind {
            ErrorKind::NullArgument => HERALD_ERR_NULL_ARGUMENT,
            ErrorKind::InvalidUtf8 => HERALD_ERR_INVALID_UTF8,
            ErrorKind::InvalidJson => HERALD_ERR_INVALID_JSON,
            ErrorKind::InvalidArgument => HERALD_ERR_INVALID_ARGUMENT,
            ErrorKind::InvalidConfig => HERALD_ERR_INVALID_CONFIG,
            ErrorKind::InvalidHandle => HERALD_ERR_INVALID_HANDLE,
            ErrorKind::UnknownClient => HERALD_ERR_UNKNOWN_CLIENT,
            ErrorKind::QueueFull => HERALD_ERR_QUEUE_FULL,
            ErrorKind::Io => HERALD_ERR_IO,
            ErrorKind::Timeout => HERALD_ERR_TIMEOUT,
            ErrorKind::Stopped => HERALD_ERR_STOPPED,
            ErrorKind::Panic => HERALD_ERR_PANIC,
            ErrorKind::Limit => HERALD_ERR_LIMIT,
            ErrorKind::Unavailable => HERALD_ERR_UNAVAILABLE,
        }
    }
}

/// Called once with a host's `user_data` when Herald no longer uses it: after the last
/// call of the callback it came with, once that callback is replaced or removed or the
/// server is stopped. It may run on any thread, Herald's or the one making that change.
pub type herald_drop_callback = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Receives events as JSON objects (`type`: connected, disconnected, subscribed,
/// unsubscribed, cancel_requested, client_message). `event_json` is valid only during
/// the call.
pub type herald_event_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event_json: *const c_char)>;

/// Starts a server and returns once its socket is bound (and, with the Redis broker,
/// once Redis answered), writing its handle to `*server_out`. `config_json` is a JSON
/// object (every key optional; NULL means all defaults). `HERALD_ERR_INVALID_CONFIG`
/// (or `HERALD_ERR_INVALID_JSON`) for a rejected config, `HERALD_ERR_IO` when the port
/// cannot be bound, `HERALD_ERR_UNAVAILABLE` when Redis does not answer.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `server_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn herald_start(
    config_json: *const c_char,
    server_out: *mut *mut herald_server,
) -> herald_status {
    guard(|| {
        require_out(server_out, "server_out")?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let config = match unsafe { optional_c_str(config_json, "config_json") }? {
            Some(json) => Config::from_json(json)?,
            None => Config::default(),
        };
        let server = Server::start(config)?;
        let handle = register(server);
        // SAFETY: the caller passes a writable pointer (checked not NULL above).
        unsafe { write_out(server_out, "server_out", handle) }
    })
}

/// Writes the server's bound port to `*port_out` (0 for an emitter, which listens on
/// no socket).
///
/// # Safety
/// `port_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn herald_port(
    server: *const herald_server,
    port_out: *mut u16,
) -> herald_status {
    guard(|| {
        let port = lookup(server)?.port();
        // SAFETY: the caller passes NULL or a writable pointer.
        unsafe { write_out(port_out, "port_out", port) }
    })
}

/// Sends an AI-task notification of `kind` (a `herald_ai_kind`) to the subscribers of a
/// session: `{"type":"ai_start","sessionId":…,"task":…}` with `payload_json` (a JSON
/// object) under the kind's key (`task`, `progress`, `result`, `error`, `delta`, `cancelled`).
/// `HERALD_ERR_INVALID_ARGUMENT` for a kind this library does not know.
///
/// # Safety
/// `session_id` and `payload_json` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn herald_notify_ai(
    server: *mut herald_server,
    kind: i32,
    session_id: *const c_char,
    payload_json: *const c_char,
) -> herald_status {
    guard(|| {
        let kind = AiEvent::from_number(i64::from(kind)).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("kind {kind} is not a herald_ai_kind"),
            )
        })?;
        // SAFETY: the caller passes NULL or NUL-terminated strings.
        let (session_id, payload_json) = unsafe {
            (
                c_str(session_id, "session_id")?,
                c_str(payload_json, "payload_json")?,
            )
        };
        lookup(server)?.notify_ai(kind, session_id, payload_json)
    })
}

/// `herald_notify_ai` with `HERALD_AI_KIND_START`: `ai_start` with `task_json`.
///
/// # Safety
/// As for `herald_notify_ai`.
#[no_mangle]
pub unsafe extern "C" fn herald_notify_ai_start(
    server: *mut herald_server,
    session_id: *const c_char,
    task_json: *const c_char,
) -> herald_status {
    // SAFETY: the same contract.
    unsafe { herald_notify_ai(server, AiEvent::Start as i32, session_id, task_json) }
}

/// `herald_notify_ai` with `HERALD_AI_KIND_PROGRESS`: `ai_progress` with `progress_json`.
///
/// # Safety
/// As for `herald_notify_ai`.
#[no_mangle]
pub unsafe extern "C" fn herald_notify_ai_progress(
    server: *mut herald_server,
    session_id: *const c_char,
    progress_json: *const c_char,
) -> herald_status {
    // SAFETY: the same contract.
    unsafe { herald_notify_ai(server, AiEvent::Progress as i32, session_id, progress_json) }
}

/// `herald_notify_ai` with `HERALD_AI_KIND_COMPLETE`: `ai_complete` with `result_json`.
///
/// # Safety
/// As for `herald_notify_ai`.
#[no_mangle]
pub unsafe extern "C" fn herald_notify_ai_complete(
    server: *mut herald_server,
    session_id: *const c_char,
    result_json: *const c_char,
) -> herald_status {
    // SAFETY: the same contract.
    unsafe { herald_notify_ai(server, AiEvent::Complete as i32, session_id, result_json) }
}

/// `herald_notify_ai` with `HERALD_AI_KIND_ERROR`: `ai_error` with `error_json`.
///
/// # Safety
/// As for `herald_notify_ai`.
#[no_mangle]
pub unsafe extern "C" fn herald_notify_ai_error(
    server: *mut herald_server,
    session_id: *const c_char,
    error_json: *const c_char,
) -> herald_status {
    // SAFETY: the same contract.
    unsafe { herald_notify_ai(server, AiEvent::Error as i32, session_id, error_json) }
}

/// `herald_notify_ai` with `HERALD_AI_KIND_DELTA`: `ai_delta` with `delta_json`
/// (`{"jobId":…,"text":"…"}`, `text` required), a piece of a job's token stream,
/// appended to the job's text. A subscriber that falls behind gets a job's consecutive
/// deltas merged into one.
///
/// # Safety
/// As for `herald_notify_ai`.
#[no_mangle]
pub unsafe extern "C" fn herald_notify_ai_delta(
    server: *mut herald_server,
    session_id: *const c_char,
    delta_json: *const c_char,
) -> herald_status {
    // SAFETY: the same contract.
    unsafe { herald_notify_ai(server, AiEvent::Delta as i32, session_id, delta_json) }
}

/// `herald_notify_ai` with `HERALD_AI_KIND_CANCELLED`: `ai_cancelled` with
/// `cancelled_json` (a JSON object, e.g. `{"jobId":…}`): the job ended because it was
/// cancelled (see the `cancel_requested` event).
///
/// # Safety
/// As for `herald_notify_ai`.
#[no_mangle]
pub unsafe extern "C" fn herald_notify_ai_cancelled(
    server: *mut herald_server,
    session_id: *const c_char,
    cancelled_json: *const c_char,
) -> herald_status {
    // SAFETY: the same contract.
    unsafe {
        herald_notify_ai(
            server,
            AiEvent::Cancelled as i32,
            session_id,
            cancelled_json,
        )
    }
}

/// Sends a JSON object to every connected client.
///
/// # Safety
/// `message_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn herald_broadcast(
    server: *mut herald_server,
    message_json: *const c_char,
) -> herald_status {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let message_json = unsafe { c_str(message_json, "message_json") }?;
        lookup(server)?.broadcast(message_json)
    })
}

/// Sends a JSON object to every client bound to a user (`?userId=`).
///
/// # Safety
/// `user_id` and `message_json` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn herald_broadcast_to_user(
    server: *mut herald_server,
    user_id: *const c_char,
    message_json: *const c_char,
) -> herald_status {
    // SAFETY: the caller passes NULL or NUL-terminated strings.
    unsafe {
        keyed_call(
            server,
            user_id,
            "user_id",
            message_json,
            Server::broadcast_to_user,
        )
    }
}

/// Publishes a JSON object to the subscribers of a channel. A channel that does not
/// exist yet while `max_channels` channels do is `HERALD_ERR_LIMIT` (as for notify and
/// broadcast to a user).
///
/// # Safety
/// `channel` and `message_json` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn herald_publish(
    server: *mut herald_server,
    channel: *const c_char,
    message_json: *const c_char,
) -> herald_status {
    // SAFETY: the caller passes NULL or NUL-terminated strings.
    unsafe { keyed_call(server, channel, "channel", message_json, Server::publish) }
}

/// Sends a JSON object to one client; `HERALD_ERR_UNKNOWN_CLIENT` if it is not connected.
///
/// # Safety
/// `client_id` and `message_json` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn herald_send(
    server: *mut herald_server,
    client_id: *const c_char,
    message_json: *const c_char,
) -> herald_status {
    // SAFETY: the caller passes NULL or NUL-terminated strings.
    unsafe { keyed_call(server, client_id, "client_id", message_json, Server::send) }
}

/// A call taking an id (user, channel, client) and a message.
///
/// # Safety
/// `key` and `message_json` are NULL or NUL-terminated strings.
unsafe fn keyed_call(
    server: *mut herald_server,
    key: *const c_char,
    key_name: &str,
    message_json: *const c_char,
    call: fn(&Server, &str, &str) -> crate::Result<()>,
) -> herald_status {
    guard(|| {
        // SAFETY: passed on from this function's own contract.
        let (key, message_json) =
            unsafe { (c_str(key, key_name)?, c_str(message_json, "message_json")?) };
        call(&lookup(server)?, key, message_json)
    })
}

/// Writes the server's statistics as a JSON object to `*stats_json_out`, to be freed
/// with `herald_string_free`.
///
/// # Safety
/// `stats_json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn herald_stats(
    server: *mut herald_server,
    stats_json_out: *mut *mut c_char,
) -> herald_status {
    guard(|| {
        require_out(stats_json_out, "stats_json_out")?;
        let stats = lookup(server)?.stats_json()?;
        // SAFETY: the caller passes a writable pointer (checked not NULL above).
        unsafe { write_string(stats_json_out, "stats_json_out", stats) }
    })
}

/// Writes a channel's retained publications, oldest first, as a JSON array to
/// `*history_json_out`, to be freed with `herald_string_free`. Publishing only
/// enqueues, so a publication made just before may not be in it yet.
///
/// # Safety
/// `channel` is NULL or a NUL-terminated string; `history_json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn herald_history(
    server: *mut herald_server,
    channel: *const c_char,
    history_json_out: *mut *mut c_char,
) -> herald_status {
    guard(|| {
        require_out(history_json_out, "history_json_out")?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let channel = unsafe { c_str(channel, "channel") }?;
        let history = lookup(server)?.history_json(channel)?;
        // SAFETY: the caller passes a writable pointer (checked not NULL above).
        unsafe { write_string(history_json_out, "history_json_out", history) }
    })
}

/// Writes who is in a channel to `*presence_json_out` as a JSON object, to be freed
/// with `herald_string_free`: `{"channel": …, "members": [{"clientId": …, "userId": …
/// or null, "status": …}], "total": n, "truncated": bool}`, at most
/// `presence.max_members` members listed (`total` counts them all). Every subscriber
/// of the channel is a member; with the Redis broker, every node's (this call then
/// waits for Redis, like a publication). `HERALD_ERR_INVALID_ARGUMENT` when
/// `presence.enabled` is false.
///
/// # Safety
/// `channel` is NULL or a NUL-terminated string; `presence_json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn herald_presence(
    server: *mut herald_server,
    channel: *const c_char,
    presence_json_out: *mut *mut c_char,
) -> herald_status {
    guard(|| {
        require_out(presence_json_out, "presence_json_out")?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let channel = unsafe { c_str(channel, "channel") }?;
        let presence = lookup(server)?.presence_json(channel)?;
        // SAFETY: the caller passes a writable pointer (checked not NULL above).
        unsafe { write_string(presence_json_out, "presence_json_out", presence) }
    })
}

/// Writes a session's jobs as `{"sessionId","seq","epoch","jobs":[…]}` (the state as of
/// `seq`) to `*jobs_json_out`, to be freed with `herald_string_free`. Publishing only
/// enqueues, so a notification made just before may not be in it yet.
///
/// # Safety
/// `session_id` is NULL or a NUL-terminated string; `jobs_json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn herald_jobs(
    server: *mut herald_server,
    session_id: *const c_char,
    jobs_json_out: *mut *mut c_char,
) -> herald_status {
    guard(|| {
        require_out(jobs_json_out, "jobs_json_out")?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let session_id = unsafe { c_str(session_id, "session_id") }?;
        let jobs = lookup(server)?.jobs_json(session_id)?;
        // SAFETY: the caller passes a writable pointer (checked not NULL above).
        unsafe { write_string(jobs_json_out, "jobs_json_out", jobs) }
    })
}

/// Frees a string returned by Herald. NULL is ignored.
///
/// # Safety
/// `string` must be NULL or a string returned by Herald and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn herald_string_free(string: *mut c_char) {
    if !string.is_null() {
        // SAFETY: the caller passes a pointer that came from CString::into_raw.
        drop(unsafe { std::ffi::CString::from_raw(string) });
    }
}

/// Installs (or, with a NULL callback, removes) the event callback. It is called on a
/// dedicated Herald thread, one event at a time, never after `herald_stop` returns.
/// `user_data` is passed to it untouched. From this call on Herald owns `user_data`: if
/// `drop` is not NULL, it is called with `user_data` exactly once, after the last call of
/// `callback`, when the callback is replaced or removed or the server is stopped, and
/// right away if `callback` is NULL or this call fails.
///
/// # Safety
/// `callback` and `drop` may be called with `user_data` on Herald's threads until then.
#[no_mangle]
pub unsafe extern "C" fn herald_set_event_handler(
    server: *mut herald_server,
    callback: herald_event_callback,
    user_data: *mut c_void,
    drop: herald_drop_callback,
) -> herald_status {
    // Owned from here: dropped (and `drop` called) on every path out of this call that
    // does not hand it to the server.
    let user_data = UserData::new(user_data, drop);
    guard(move || {
        let server = lookup(server)?;
        let handler = callback.map(|callback| {
            Arc::new(move |event: &crate::Event| {
                let json = CString::new(event.to_json()).expect("JSON text has no NUL bytes");
                // SAFETY: the host registered this callback for exactly this use; the
                // string outlives the call.
                unsafe { callback(user_data.get(), json.as_ptr()) };
            }) as crate::EventHandler
        });
        server.set_event_handler(handler)
    })
}

/// Log levels, most severe first: a handler installed for a level receives that level
/// and every more severe one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum herald_log_level {
    HERALD_LOG_ERROR = 1,
    HERALD_LOG_WARN = 2,
    HERALD_LOG_INFO = 3,
    HERALD_LOG_DEBUG = 4,
    HERALD_LOG_TRACE = 5,
}

impl From<crate::LogLevel> for herald_log_level {
    fn from(level: crate::LogLevel) -> Self {
        use crate::LogLevel::*;
        match level {
            Error => herald_log_level::HERALD_LOG_ERROR,
            Warn => herald_log_level::HERALD_LOG_WARN,
            Info => herald_log_level::HERALD_LOG_INFO,
            Debug => herald_log_level::HERALD_LOG_DEBUG,
            Trace => herald_log_level::HERALD_LOG_TRACE,
        }
    }
}

/// Receives one log record: its level, its target (the module
/// that logged, e.g. `herald::connection`) and its message (text, then ` key=value`
/// fields). The strings are valid only during the call.
pub type herald_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: herald_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// Installs (or, with a NULL callback, removes) the process-wide log handler, for records
/// of `max_level` (a `herald_log_level`) and more severe. It is called on a dedicated
/// Herald thread, one record at a time, never on an I/O thread; past 4096 records
/// waiting, records are dropped. `user_data` and `drop` as for `herald_set_event_handler`
/// (`drop` runs after the last call, once the handler is replaced or removed).
/// Independent of `HERALD_LOG`, which logs to stderr. `HERALD_ERR_INVALID_ARGUMENT` for a
/// level out of range; `HERALD_ERR_IO` if the process already has another tracing
/// subscriber (a Rust host's own), which then receives Herald's records instead.
///
/// # Safety
/// `callback` and `drop` may be called with `user_data` on Herald's threads until then.
#[no_mangle]
pub unsafe extern "C" fn herald_set_log_handler(
    max_level: i32,
    callback: herald_log_callback,
    user_data: *mut c_void,
    drop: herald_drop_callback,
) -> herald_status {
    let user_data = UserData::new(user_data, drop);
    guard(move || {
        let level = crate::LogLevel::from_number(i64::from(max_level)).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("max_level must be 1 (error) to 5 (trace), not {max_level}"),
            )
        })?;
        let handler = callback.map(|callback| {
            Arc::new(move |record: &crate::LogRecord| {
                let target = c_text(&record.target);
                let message = c_text(&record.message);
                // SAFETY: the host registered this callback for exactly this use; the
                // strings outlive the call.
                unsafe {
                    callback(
                        user_data.get(),
                        herald_log_level::from(record.level),
                        target.as_ptr(),
                        message.as_ptr(),
                    )
                };
            }) as crate::LogHandler
        });
        if crate::set_log_handler(level, handler) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Io,
                "another tracing subscriber is installed in this process; Herald logs there",
            ))
        }
    })
}

/// A C string of `text`, NULs escaped (a client's input may end up in a log line).
fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).expect("NULs were escaped")
}

/// Receives an authorization request as JSON: `{"type":"connect","id",…,"token",
/// "tokenUserId","query","headers","origin","remoteAddr","timeoutMs"}` or
/// `{"type":"subscribe","id","clientId","userId","channel","action","timeoutMs"}`. Answer
/// with `herald_authorize_reply`, from inside the callback or later from any thread, within
/// `timeoutMs` (else the core denies). `request_json` is valid only during the call.
pub type herald_authorize_callback = Option<
    unsafe extern "C" fn(user_data: *mut c_void, request_id: u64, request_json: *const c_char),
>;

/// Installs (or, with a NULL callback, removes) the host authorizer. It is asked on
/// every connect, and on subscribes that neither the client's token nor the config's
/// `auth.public_channels` allow. It runs on a Herald worker thread that is never an I/O
/// thread; requests not answered within `auth.authorizer_timeout_ms` are denied.
/// `user_data` and `drop` as for `herald_set_event_handler`: `drop` is called once, after
/// the last call of `callback` (a call already under way when the authorizer is replaced,
/// or when a stop times out, finishes first). `herald_stop` waits for running calls
/// (within its timeout).
///
/// # Safety
/// `callback` and `drop` may be called with `user_data` on Herald's threads until then.
#[no_mangle]
pub unsafe extern "C" fn herald_set_authorizer(
    server: *mut herald_server,
    callback: herald_authorize_callback,
    user_data: *mut c_void,
    drop: herald_drop_callback,
) -> herald_status {
    let user_data = UserData::new(user_data, drop);
    guard(move || {
        let server = lookup(server)?;
        let authorizer = callback.map(|callback| {
            Arc::new(move |request: &crate::AuthRequest| {
                let json = CString::new(request.to_json()).expect("JSON text has no NUL bytes");
                // SAFETY: the host registered this callback for exactly this use; the
                // string outlives the call.
                unsafe { callback(user_data.get(), request.id(), json.as_ptr()) };
            }) as crate::Authorizer
        });
        server.set_authorizer(authorizer)
    })
}

/// Answers an authorization request. `decision_json` is `{"allow":true,"userId":"u",
/// "channels":["session:*"]}` (userId and channels optional) or `{"allow":false,
/// "reason":"…"}`. `HERALD_ERR_INVALID_ARGUMENT` if the request was already answered
/// or timed out.
///
/// # Safety
/// `decision_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn herald_authorize_reply(
    server: *mut herald_server,
    request_id: u64,
    decision_json: *const c_char,
) -> herald_status {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let decision_json = unsafe { c_str(decision_json, "decision_json") }?;
        let decision = crate::AuthDecision::from_json(decision_json)?;
        lookup(server)?.authorize_reply(request_id, decision)
    })
}

/// Pull alternative to the callback: waits up to `timeout_ms` for the next event and
/// writes it as JSON to `*event_json_out` (free with `herald_string_free`).
/// `HERALD_ERR_TIMEOUT` if none came; `HERALD_ERR_STOPPED` if the server stops meanwhile.
///
/// # Safety
/// `event_json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn herald_next_event(
    server: *mut herald_server,
    timeout_ms: u32,
    event_json_out: *mut *mut c_char,
) -> herald_status {
    guard(|| {
        require_out(event_json_out, "event_json_out")?;
        let server = lookup(server)?;
        match server.next_event(Duration::from_millis(timeout_ms.into()))? {
            // SAFETY: the caller passes a writable pointer (checked not NULL above).
            Some(event) => unsafe {
                write_string(event_json_out, "event_json_out", event.to_json())
            },
            None => Err(Error::new(
                ErrorKind::Timeout,
                format!("no event within {timeout_ms} ms"),
            )),
        }
    })
}

/// Flow control: waits up to `timeout_ms` until every host call made before this one
/// has been fanned out and every healthy client's backlog is under a quarter of its
/// queue budget (`client_queue_size`, `client_queue_bytes`). `HERALD_OK` when drained,
/// `HERALD_ERR_TIMEOUT` if not within the time, `HERALD_ERR_STOPPED` if the server stops.
/// A client being closed does not count; one that stopped reading counts until the
/// write-stall rule evicts it. With `timeout_ms` 0 it only looks, without blocking.
/// Call it when the stats' `backpressure` is true, or between batches of a burst.
#[no_mangle]
pub extern "C" fn herald_wait_drained(
    server: *mut herald_server,
    timeout_ms: u32,
) -> herald_status {
    guard(|| lookup(server)?.wait_drained(Duration::from_millis(timeout_ms.into())))
}

/// Writes 1 to `*backpressure_out` while the host should slow down (a healthy client is
/// over half of its queue budget, or the publish queue is over half full), else 0. Cheap
/// (two counters): poll it after publishing and call `herald_wait_drained` while it is 1.
///
/// # Safety
/// `backpressure_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn herald_backpressure(
    server: *const herald_server,
    backpressure_out: *mut std::ffi::c_int,
) -> herald_status {
    guard(|| {
        let on = lookup(server)?.backpressure();
        // SAFETY: the caller passes NULL or a writable pointer.
        unsafe {
            write_out(
                backpressure_out,
                "backpressure_out",
                std::ffi::c_int::from(on),
            )
        }
    })
}

/// Stops the server gracefully and frees the handle, whatever the result: queued
/// messages are delivered, then every client gets close code 1001. The drop callbacks
/// of the event handler and the authorizer run (after their callbacks' last calls).
/// Returns `HERALD_ERR_TIMEOUT` if connections had to be dropped at `timeout_ms`.
#[no_mangle]
pub extern "C" fn herald_stop(server: *mut herald_server, timeout_ms: u32) -> herald_status {
    guard(|| {
        // The handle stays valid while stopping, so a thread pulling events with
        // herald_next_event still sees the disconnections the stop causes.
        let running = lookup(server)?;
        let result = running.stop(Duration::from_millis(timeout_ms.into()));
        unregister(server)?;
        result
    })
}

/// The message of the last failed call on this thread ("" if none): the detail behind
/// the status it returned. The pointer stays valid until the next failed Herald call on
/// this thread.
#[no_mangle]
pub extern "C" fn herald_last_error() -> *const c_char {
    boundary::last_error()
}

/// The library version, e.g. "0.1.0" (`HERALD_VERSION_STRING` is the header's). Static;
/// never free it.
#[no_mangle]
pub extern "C" fn herald_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}
