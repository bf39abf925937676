//! The core's log records to a JS callback (process-wide).

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::lock;

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
