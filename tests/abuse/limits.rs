//! Limits that must fail loudly (findings 4, 5 and 9): a full channel table, the stats
//! endpoint in secure mode, and config numbers out of range.

use crate::child::{Child, Launch};
use crate::outcome::Outcome;
use crate::raw;
use crate::ws::{self, Next};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

/// Finding 4: a small channel table, so that filling it is quick.
const MAX_CHANNELS: u64 = 100;
/// Clients may create channels up to 90% of `max_channels`; the rest is the host's.
const CLIENT_CHANNELS_MAX: u64 = MAX_CHANNELS * 9 / 10;
/// Clients trying to fill the table, each up to CHANNELS_PER_CLIENT new channels
/// (inside the default rate-limit burst of 100).
const FILLING_CLIENTS: usize = 3;
const CHANNELS_PER_CLIENT: usize = 50;
/// New channels the host tries once clients are refused: more than the table can hold.
const HOST_FILL_ATTEMPTS: usize = 150;

pub async fn channel_table_full() -> Outcome {
    let mut o = Outcome::default();
    let Some(mut child) = o.step(Child::serve(json!({ "max_channels": MAX_CHANNELS })).await)
    else {
        return o;
    };
    // Clients subscribe to new channels until refused; they stay connected so their
    // channels stay in the table.
    let mut fillers = Vec::new();
    let (mut created, mut refusal) = (0u64, None::<Value>);
    for c in 0..FILLING_CLIENTS {
        let Some((mut client, _)) = o.step(ws::connect(child.port, "").await) else {
            return o;
        };
        for i in 0..CHANNELS_PER_CLIENT {
            let Some(reply) =
                o.step(ws::subscribe(&mut client, &format!(r#""channel":"c{c}-{i}""#)).await)
            else {
                return o;
            };
            if reply["type"] == "subscribed" {
                created += 1;
            } else {
                refusal = Some(reply["error"]["code"].clone());
                break;
            }
        }
        fillers.push(client);
    }
    let Some(stats) = o.step(child.stats().await) else {
        return o;
    };
    let table_after_clients = stats["channels"].as_u64().unwrap_or(0);
    o.fig("client_channels", created);
    o.fig(
        "client_refusal",
        refusal.map_or("none".into(), |c| c.to_string()),
    );
    o.fig(
        "table_after_clients",
        format!("{table_after_clients}/{MAX_CHANNELS}"),
    );
    o.expect(
        created <= CLIENT_CHANNELS_MAX,
        format!(
            "clients created {created} channels (at most {CLIENT_CHANNELS_MAX} of {MAX_CHANNELS})"
        ),
    );

    // The host can still reach a new session, and its subscriber gets the notification.
    let Some(first) = o.step(child.cmd(r#"notify start reserved {"taskId":"r"}"#).await) else {
        return o;
    };
    o.fig(
        "host_notify_new_session",
        first.split(' ').take(2).collect::<Vec<_>>().join(" "),
    );
    o.expect(
        first == "ok",
        format!("host notify to a new session: {first}"),
    );
    let Some((mut subscriber, _)) = o.step(ws::connect(child.port, "").await) else {
        return o;
    };
    let Some(reply) = o.step(ws::subscribe(&mut subscriber, r#""sessionId":"reserved""#).await)
    else {
        return o;
    };
    o.expect(
        reply["type"] == "subscribed",
        format!("subscribe to the host's session: {reply}"),
    );
    let Some(second) = o.step(
        child
            .cmd(r#"notify progress reserved {"taskId":"r","percent":50}"#)
            .await,
    ) else {
        return o;
    };
    let delivered = match ws::next(&mut subscriber, Duration::from_secs(3)).await {
        Next::Json(m) => m["type"] == "ai_progress",
        _ => false,
    };
    o.fig("subscriber_got_notify", delivered);
    o.expect(
        second == "ok" && delivered,
        format!("second notify {second:?}, delivered to its subscriber: {delivered}"),
    );

    // The host fills the rest: the publish that finds the table full fails with `limit`.
    let (mut accepted, mut first_error) = (0usize, None::<String>);
    for i in 0..HOST_FILL_ATTEMPTS {
        let Some(answer) = o.step(child.cmd(&format!(r#"publish fill-{i} {{"i":{i}}}"#)).await)
        else {
            return o;
        };
        if answer == "ok" {
            accepted += 1;
        } else {
            first_error = Some(answer);
            break;
        }
    }
    let Some(stats) = o.step(child.stats().await) else {
        return o;
    };
    let table = stats["channels"].as_u64().unwrap_or(0);
    o.fig("host_fill_accepted", accepted);
    o.fig("table_after_host", format!("{table}/{MAX_CHANNELS}"));
    o.fig(
        "channelsRejected",
        stats["channelsRejected"].as_u64().unwrap_or(0),
    );
    match &first_error {
        Some(e) => o.expect(
            e.starts_with("err limit "),
            format!("publish to a new channel on a full table: {e:?} (expected err limit …)"),
        ),
        None => o.fail(format!(
            "{HOST_FILL_ATTEMPTS} publishes to new channels all returned ok with a table of \
             {MAX_CHANNELS} ({table} channels, the rest dropped)"
        )),
    }
    // Room the host had: the table less the clients' channels and its own session.
    let room = MAX_CHANNELS.saturating_sub(table_after_clients + 1);
    o.expect(
        accepted as u64 <= room,
        format!("the host's publishes to new channels were accepted {accepted} times with room for {room}"),
    );
    let Some(last) = o.step(child.cmd(r#"notify start another {"taskId":"a"}"#).await) else {
        return o;
    };
    o.fig(
        "notify_on_full_table",
        last.split(' ').take(2).collect::<Vec<_>>().join(" "),
    );
    o.expect(
        last.starts_with("err limit "),
        format!("notify to a new session on a full table: {last:?} (expected err limit …)"),
    );
    drop(fillers);
    crate::child::finish(&mut o, child).await;
    o
}

/// Finding 5: secure-mode servers; their stats must not be open.
const JWT_SECRET: &str = "abuse-suite-hs256-secret-0123456789";
const ADMIN_TOKEN: &str = "abuse-admin-token-5f1c9e";

fn user_token(sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "channels": ["session:*"]}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encoding a token")
}

pub async fn stats_protected() -> Outcome {
    let mut o = Outcome::default();
    let secure = json!({"auth": {"required": true, "jwt_secret": JWT_SECRET}});
    let mut with_admin = secure.clone();
    with_admin["admin_token"] = ADMIN_TOKEN.into();
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    // (config, label, Authorization header, expected status)
    let cases = [
        (&secure, "no_admin_token/no_credentials", String::new(), 401),
        (
            &secure,
            "no_admin_token/some_bearer",
            bearer(ADMIN_TOKEN),
            401,
        ),
        (
            &with_admin,
            "admin_token/no_credentials",
            String::new(),
            401,
        ),
        (
            &with_admin,
            "admin_token/wrong_bearer",
            bearer("not-the-admin-token"),
            401,
        ),
        (
            &with_admin,
            "admin_token/user_jwt",
            bearer(&user_token("mallory")),
            401,
        ),
        (
            &with_admin,
            "admin_token/right_bearer",
            bearer(ADMIN_TOKEN),
            200,
        ),
    ];
    // (config, host, connected client, its id, its address as the server sees it)
    let mut servers: Vec<(Value, Child, ws::Ws, String, String)> = Vec::new();
    for (config, label, header, expected) in cases {
        if !servers.iter().any(|(c, ..)| c == config) {
            let Some(child) = o.step(Child::serve(config.clone()).await) else {
                return o;
            };
            let query = format!("?token={}&sessionId=private-session", user_token("alice"));
            let Some((ws, id)) = o.step(ws::connect(child.port, &query).await) else {
                return o;
            };
            let local = match ws.get_ref() {
                tokio_tungstenite::MaybeTlsStream::Plain(s) => {
                    s.local_addr().map(|a| a.to_string()).unwrap_or_default()
                }
                _ => String::new(),
            };
            servers.push((config.clone(), child, ws, id, local));
        }
        let (_, child, _, client_id, remote) = servers.iter().find(|(c, ..)| c == config).unwrap();
        let Some((status, body)) =
            o.step(raw::http_get(child.port, "/api/ws/stats", &header).await)
        else {
            return o;
        };
        o.fig(label, status);
        o.expect(
            status == expected,
            format!("{label}: status {status}, expected {expected}"),
        );
        let leaked: Vec<&str> = [
            client_id.as_str(),
            "alice",
            "private-session",
            remote.as_str(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty() && body.contains(s))
        .collect();
        if expected == 200 {
            o.expect(
                body.contains(client_id.as_str()),
                format!("{label}: the admin's stats do not list the connected client"),
            );
        } else {
            o.expect(
                leaked.is_empty(),
                format!("{label}: the body discloses {leaked:?}"),
            );
        }
    }
    for (_, child, ws, ..) in servers {
        drop(ws);
        crate::child::finish(&mut o, child).await;
    }
    o
}

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
