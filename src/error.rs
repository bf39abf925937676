//! One error type for the whole core; the C boundary maps each kind to a status code.

use std::fmt;

/// What went wrong, in a form bindings can branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required pointer or value was missing.
    NullArgument,
    /// A string was not valid UTF-8.
    InvalidUtf8,
    /// A message or payload was not valid JSON, or not a JSON object.
    InvalidJson,
    /// An argument was well-formed but not acceptable (empty id, too long, ...).
    InvalidArgument,
    /// The configuration was rejected.
    InvalidConfig,
    /// The server handle is unknown, stopped or freed (C boundary only).
    InvalidHandle,
    /// `send` named a client that is not connected.
    UnknownClient,
    /// The bounded publish queue is full: the server cannot keep up.
    QueueFull,
    /// A configured bound is reached (the channel table is full, say): nothing was done.
    Limit,
    /// Binding the socket or building the runtime failed.
    Io,
    /// The operation did not finish in the time given.
    Timeout,
    /// The server has been stopped.
    Stopped,
    /// The broker (Redis) is unreachable or did not confirm in time: the publication
    /// was not made, or, after a timeout, may not have been.
    Unavailable,
    /// A panic was caught at the boundary.
    Panic,
}

impl ErrorKind {
    /// Every kind, in the order of their C status codes.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::NullArgument,
        ErrorKind::InvalidUtf8,
        ErrorKind::InvalidJson,
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidConfig,
        ErrorKind::InvalidHandle,
        ErrorKind::UnknownClient,
        ErrorKind::QueueFull,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::Stopped,
        ErrorKind::Panic,
        ErrorKind::Limit,
    ];

    /// A stable snake_case name, used as the error code in bindings.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NullArgument => "null_argument",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::InvalidHandle => "invalid_handle",
            ErrorKind::UnknownClient => "unknown_client",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::Limit => "limit",
            ErrorKind::Io => "io",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Stopped => "stopped",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Panic => "panic",
        }
    }
}

/// An error with a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn stopped() -> Self {
        Error::new(ErrorKind::Stopped, "the server has been stopped")
    }

    pub(crate) fn invalid_json(what: &str, err: impl fmt::Display) -> Self {
        Error::new(
            ErrorKind::InvalidJson,
            format!("{what} is not valid JSON: {err}"),
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
