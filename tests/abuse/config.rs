//! Finding 9: config numbers out of range are refused with `invalid_config` naming the
//! key, never a panic.

use crate::admin::JWT_SECRET;
use crate::child::{Child, Launch};
use crate::outcome::Outcome;
use crate::ws::{self, Next};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinSet;

/// Finding 9: every number the config takes, at 2^64-1 (or another value its type
/// cannot hold).
const HUGE: u64 = u64::MAX;

/// Keys that must be refused with `invalid_config` naming the key. Each is a size the
/// server allocates or bounds a queue by, or a value its type cannot hold.
fn must_refuse() -> Vec<(&'static str, Value)> {
    vec![
        ("publish_queue_size", json!({"publish_queue_size": HUGE})),
        ("client_queue_size", json!({"client_queue_size": HUGE})),
        ("event_queue_size", json!({"event_queue_size": HUGE})),
        ("max_channels", json!({"max_channels": HUGE})),
        ("burst", json!({"rate_limit": {"burst": HUGE}})),
        ("port", json!({"port": 70000})),
    ]
}

/// Keys that may either be refused the same way or accepted, if the server then works.
fn refuse_or_work() -> Vec<(&'static str, Value)> {
    let mut v = vec![
        ("size", json!({"history": {"size": HUGE}})),
        ("max_bytes", json!({"history": {"max_bytes": HUGE}})),
        ("ttl_ms", json!({"history": {"ttl_ms": HUGE}})),
        (
            "jwt_leeway_s",
            json!({"auth": {"jwt_secret": JWT_SECRET, "public_channels": ["session:*"], "jwt_leeway_s": HUGE}}),
        ),
        (
            "authorizer_timeout_ms",
            json!({"auth": {"jwt_secret": JWT_SECRET, "public_channels": ["session:*"], "authorizer_timeout_ms": HUGE}}),
        ),
        (
            "messages_per_second",
            json!({"rate_limit": {"messages_per_second": u32::MAX}}),
        ),
        (
            "heartbeat_timeout_ms",
            json!({"heartbeat_timeout_ms": HUGE}),
        ),
        (
            "heartbeat_interval_ms",
            json!({"heartbeat_interval_ms": HUGE, "heartbeat_timeout_ms": HUGE}),
        ),
    ];
    for key in [
        "max_message_size",
        "max_connections",
        "worker_threads",
        "handshake_timeout_ms",
        "stats_client_limit",
        "max_connections_per_ip",
        "max_subscriptions_per_client",
        "client_queue_bytes",
        "socket_send_buffer",
        "max_memory",
        "event_queue_bytes",
    ] {
        v.push((key, json!({ key: HUGE })));
    }
    v
}

/// At most this many hosts start at once.
const CONFIG_PARALLEL: usize = 4;

pub async fn config_overflow() -> Outcome {
    let mut o = Outcome::default();
    let cases: Vec<(&str, Value, bool)> = must_refuse()
        .into_iter()
        .map(|(k, v)| (k, v, true))
        .chain(refuse_or_work().into_iter().map(|(k, v)| (k, v, false)))
        .collect();
    let mut results = Vec::new();
    for chunk in cases.chunks(CONFIG_PARALLEL) {
        let mut set = JoinSet::new();
        for (i, (key, config, strict)) in chunk.iter().cloned().enumerate() {
            set.spawn(async move { (i, key, strict, try_config(key, config).await) });
        }
        let mut batch = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => batch.push(r),
                Err(e) => o.fail(format!("config task: {e}")),
            }
        }
        batch.sort_by_key(|r| r.0);
        results.extend(batch);
    }
    let mut summary = Vec::new();
    for (_, key, strict, result) in results {
        summary.push(format!("{key}:{}", result.short()));
        match (&result, strict) {
            (
                ConfigResult::Refused {
                    key_named: true, ..
                },
                _,
            ) => {}
            (ConfigResult::Works, false) => {}
            (r, true) => o.fail(format!("{key}: {r}; expected invalid_config naming {key}")),
            (r, false) => o.fail(format!(
                "{key}: {r}; expected invalid_config naming {key}, or a working server"
            )),
        }
    }
    o.fig("outcomes", summary.join(","));
    o
}

enum ConfigResult {
    /// `start-err invalid_config …`; whether the message names the key.
    Refused { key_named: bool, message: String },
    /// Refused with another kind (the whole answer line).
    OtherError(String),
    /// A panic, an abort, or a backtrace on stderr.
    Crashed(String),
    /// Started and served a client, then stopped cleanly.
    Works,
    /// Started but did not serve or stop properly.
    Broken(String),
}

impl std::fmt::Display for ConfigResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResult::Refused { message, .. } => write!(f, "refused with {message:?}"),
            ConfigResult::OtherError(line) => write!(f, "refused as {line:?}"),
            ConfigResult::Crashed(why) => write!(f, "crashed: {why}"),
            ConfigResult::Works => f.write_str("accepted, and the server works"),
            ConfigResult::Broken(why) => write!(f, "accepted, but the server is broken: {why}"),
        }
    }
}

impl ConfigResult {
    fn short(&self) -> &'static str {
        match self {
            ConfigResult::Refused {
                key_named: true, ..
            } => "refused",
            ConfigResult::Refused {
                key_named: false, ..
            } => "refused-unnamed",
            ConfigResult::OtherError(_) => "other-error",
            ConfigResult::Crashed(_) => "PANIC",
            ConfigResult::Works => "accepted",
            ConfigResult::Broken(_) => "broken",
        }
    }
}

fn crashed(stderr: &str) -> bool {
    stderr.contains("panicked")
        || stderr.contains("backtrace")
        || stderr.contains("memory allocation")
}

async fn try_config(key: &str, mut config: Value) -> ConfigResult {
    config["port"] = config.get("port").cloned().unwrap_or(0.into());
    let launched = match Child::launch(&["--serve", &config.to_string()]).await {
        Ok(l) => l,
        Err(e) => return ConfigResult::Broken(e),
    };
    match launched {
        Launch::Refused {
            first_line,
            stderr,
            status,
        } => {
            let line = first_line.unwrap_or_default();
            if crashed(&stderr)
                || line.starts_with("start-err panic")
                || status.is_some_and(|s| s.code().is_none())
            {
                let why = stderr
                    .lines()
                    .find(|l| l.contains("panicked") || l.contains("memory"))
                    .unwrap_or(&line);
                return ConfigResult::Crashed(why.to_string());
            }
            match line.strip_prefix("start-err invalid_config ") {
                Some(message) => ConfigResult::Refused {
                    key_named: message.contains(key),
                    message: message.to_string(),
                },
                None => ConfigResult::OtherError(line),
            }
        }
        Launch::Serving(mut child) => {
            let served = serve_one(&mut child).await;
            let stopped = child.cmd("stop 2000").await;
            let (status, stderr) = child.finish().await;
            if crashed(&stderr) {
                let why = stderr
                    .lines()
                    .find(|l| l.contains("panicked"))
                    .unwrap_or(&stderr);
                return ConfigResult::Crashed(why.to_string());
            }
            match (served, stopped, status) {
                (Err(e), ..) => ConfigResult::Broken(e),
                (Ok(()), Ok(s), Some(st)) if s == "ok" && st.success() => ConfigResult::Works,
                (Ok(()), s, st) => ConfigResult::Broken(format!("stop {s:?}, exit {st:?}")),
            }
        }
    }
}

/// A client connects to a session and receives one notification.
async fn serve_one(child: &mut Child) -> Result<(), String> {
    let (mut ws, _) = ws::connect(child.port, "?sessionId=cfg").await?;
    // The subscription made on connect is done once the host sees it.
    let seen = child.cmd("wait-event subscribed 5000").await?;
    if !seen.starts_with("event ") {
        return Err(format!("no subscribed event: {seen}"));
    }
    let answer = child.cmd(r#"notify progress cfg {"percent":1}"#).await?;
    if answer != "ok" {
        return Err(format!("notify: {answer}"));
    }
    match ws::next(&mut ws, Duration::from_secs(5)).await {
        Next::Json(m) if m["type"] == "ai_progress" => Ok(()),
        other => Err(format!(
            "client got {other:?}; stderr {:?}",
            child.stderr_tail()
        )),
    }
}
