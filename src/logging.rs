//! Herald's logs go two ways, both off by default:
//!
//! - to stderr when `HERALD_LOG` is set (`target=level` directives, e.g. `herald=debug`):
//!   plain text, coloured only when stderr is a terminal, or one JSON object a line with
//!   `HERALD_LOG_FORMAT=json`;
//! - to the host's logger through [`set_log_handler`] (`herald_set_log_handler` in C),
//!   which each binding routes into Python `logging`, Go `slog` or a Node callback.
//!
//! The handler runs on a dedicated thread fed by a bounded queue, never on an I/O
//! thread: a slow host logger delays no client, and past the bound records are dropped
//! and counted ([`dropped_log_records`]).
//!
//! A Rust host that installed its own tracing subscriber keeps it: Herald's logs then
//! go there, and neither of the above is installed.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Once, OnceLock};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Records waiting for the host's handler at most.
const HOST_QUEUE: usize = 4096;

/// One log record for the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    /// The module that logged, e.g. `herald::connection`.
    pub target: String,
    /// The message, then its fields as ` key=value`.
    pub message: String,
}

/// Severity, most severe first; the numbers are the C ABI's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl LogLevel {
    pub fn from_number(n: i64) -> Option<LogLevel> {
        Some(match n {
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => return None,
        })
    }

    fn of(level: &Level) -> LogLevel {
        match *level {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        }
    }
}

/// Receives Herald's log records, on Herald's log thread, one at a time.
pub type LogHandler = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// Installs (or with `None` removes) the process-wide log handler, for records at
/// `max_level` or more severe. A call already under way may finish after this returns;
/// the handler replaced is dropped after its last call. Returns false (and drops
/// `handler`) when a tracing subscriber of the host's own was installed first, in which
/// case Herald's records go to that subscriber instead.
pub fn set_log_handler(max_level: LogLevel, handler: Option<LogHandler>) -> bool {
    if !install() {
        return false;
    }
    let host = host();
    let installed = handler.is_some();
    let replaced = std::mem::replace(
        &mut *host.handler.lock().unwrap_or_else(|p| p.into_inner()),
        handler,
    );
    // 0 turns the layer off: records are not even formatted.
    let level = if installed { max_level as u8 } else { 0 };
    host.max_level.store(level, Ordering::Relaxed);
    // Outside the lock: the log thread takes it for every record.
    drop(replaced);
    true
}

/// Records dropped because the host's handler did not keep up.
pub fn dropped_log_records() -> u64 {
    host().dropped.load(Ordering::Relaxed)
}

/// Called when a server starts: logs to stderr if `HERALD_LOG` asks for it.
pub(crate) fn init() {
    if std::env::var_os("HERALD_LOG").is_some() {
        install();
    }
}

/// Installs Herald's subscriber once: the stderr layer (if `HERALD_LOG` is set) and the
/// host handler's layer. False if another subscriber was there first.
fn install() -> bool {
    static INSTALL: Once = Once::new();
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    INSTALL.call_once(|| {
        let ok = tracing_subscriber::registry()
            .with(stderr_layer())
            .with(HostLayer)
            .try_init()
            .is_ok();
        let _ = INSTALLED.set(ok);
    });
    INSTALLED.get().copied().unwrap_or(false)
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn stderr_layer() -> Option<BoxedLayer> {
    let filter = stderr_filter(&std::env::var("HERALD_LOG").ok()?);
    let format = std::env::var("HERALD_LOG_FORMAT").unwrap_or_default();
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    Some(match format.as_str() {
        "json" => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed(),
        other => {
            if !other.is_empty() && other != "text" {
                eprintln!("herald: unknown HERALD_LOG_FORMAT {other:?}; using text (or: json)");
            }
            // Colour codes only for a person at a terminal, never in a file or a pipe.
            layer
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter)
                .boxed()
        }
    })
}

/// `HERALD_LOG`: comma-separated `target=level` directives and bare levels (`info`,
/// `herald=debug`, `info,herald::transport=trace`, `off`), read as tracing's EnvFilter
/// reads them, without its span and field filters (which need regex-automata, the largest
/// crate the logging would build). Empty means errors only, as for EnvFilter.
fn stderr_filter(spec: &str) -> Targets {
    let directives: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Targets::new().with_default(LevelFilter::ERROR);
    }
    directives.join(",").parse().unwrap_or_else(|e| {
        eprintln!("herald: ignoring invalid HERALD_LOG {spec:?}: {e}");
        // No directive: nothing is logged.
        Targets::new()
    })
}

/// The host handler, its level and the queue to its thread.
struct Host {
    handler: Mutex<Option<LogHandler>>,
    /// The least severe level delivered (a [`LogLevel`] number); 0 delivers nothing.
    max_level: AtomicU8,
    queue: SyncSender<LogRecord>,
    dropped: AtomicU64,
}

thread_local! {
    static ON_LOG_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let (queue, records) = sync_channel::<LogRecord>(HOST_QUEUE);
        std::thread::Builder::new()
            .name("herald-log".into())
            .spawn(move || {
                ON_LOG_THREAD.with(|on| on.set(true));
                for record in records {
                    let handler = host()
                        .handler
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    if let Some(handler) = handler {
                        // A panicking handler loses its record, not the log thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            handler(&record)
                        }));
                    }
                }
            })
            .expect("cannot start Herald's log thread");
        Host {
            handler: Mutex::new(None),
            max_level: AtomicU8::new(0),
            queue,
            dropped: AtomicU64::new(0),
        }
    })
}

/// Forwards Herald's own records (target `herald…`) to the host's handler.
struct HostLayer;

impl<S: Subscriber> Layer<S> for HostLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let host = host();
        let level = LogLevel::of(meta.level());
        if level as u8 > host.max_level.load(Ordering::Relaxed)
            || !meta.target().starts_with("herald")
            // What the handler itself makes Herald log would loop back to it.
            || ON_LOG_THREAD.with(|on| on.get())
        {
            return;
        }
        let mut message = Message::default();
        event.record(&mut message);
        let record = LogRecord {
            level,
            target: meta.target().to_string(),
            message: message.finish(),
        };
        if let Err(TrySendError::Full(_)) = host.queue.try_send(record) {
            host.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The `message` field first, then the others as ` key=value`.
#[derive(Default)]
struct Message {
    text: String,
    fields: String,
}

impl Message {
    fn finish(mut self) -> String {
        if self.text.is_empty() {
            self.fields.trim_start().to_string()
        } else {
            self.text.push_str(&self.fields);
            self.text
        }
    }
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stderr_filter;
    use tracing::Level;

    #[test]
    fn herald_log_reads_targets_levels_and_nonsense() {
        let debug = stderr_filter("herald=debug");
        assert!(debug.would_enable("herald::transport::connection", &Level::DEBUG));
        assert!(!debug.would_enable("herald", &Level::TRACE));
        assert!(!debug.would_enable("hyper", &Level::ERROR));
        let mixed = stderr_filter(" info, herald::transport=trace ");
        assert!(mixed.would_enable("hyper", &Level::INFO));
        assert!(!mixed.would_enable("hyper", &Level::DEBUG));
        assert!(mixed.would_enable("herald::transport::wire", &Level::TRACE));
        assert!(!mixed.would_enable("herald::server", &Level::DEBUG));
        let bare_target = stderr_filter("herald");
        assert!(bare_target.would_enable("herald::fanout", &Level::TRACE));
        assert!(!stderr_filter("off").would_enable("herald", &Level::ERROR));
        let empty = stderr_filter("");
        assert!(empty.would_enable("herald", &Level::ERROR));
        assert!(!empty.would_enable("herald", &Level::WARN));
        // Invalid: nothing at all rather than a guess.
        assert!(!stderr_filter("herald=loud").would_enable("herald", &Level::ERROR));
    }
}
