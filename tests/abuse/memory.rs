//! Attacks on the host's memory (findings 1, 2 and 6): clients that never read, while the
//! host's RSS is watched from /proc.

use crate::attackers::{attack, connect_many, first_reaching, run_attackers, secs, Attacker, Pace};
use crate::child::{count, mib, stats_until, Child, Guard, Memory, MIB, RSS_ABORT};
use crate::outcome::Outcome;
use crate::raw;
use crate::ws::{self, Next};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Finding 1: flooding clients.
const PING_FLOOD_CLIENTS: usize = 10;
/// Longest flood; it ends sooner once the server has closed every flooder.
const PING_FLOOD_TIME: Duration = Duration::from_secs(6);
/// Once pings count against the rate limit, a flooder is closed after ~150 of them: what
/// remains is 10 connections' read buffers and the runtime's and allocator's slack.
const PING_FLOOD_GROWTH_MAX: u64 = 32 * MIB;
/// Pings of the largest control payload, to make each pong as big as possible.
const PING_PAYLOAD: usize = 125;

/// Finding 2: clients repeating a subscribe with `since` on a full history.
const REPLAY_CLIENTS: usize = 50;
const REPLAY_HISTORY: u64 = 256;
/// Pad of each history publication: a replay of 256 is about 90 KB.
const REPLAY_PAD: usize = 300;
/// Subscribes sent at once (the default burst is 100), then one every REPLAY_INTERVAL
/// (40/s, under the default 50/s): inside the rate limit throughout.
const REPLAY_BURST: usize = 90;
const REPLAY_INTERVAL: Duration = Duration::from_millis(25);
const REPLAY_TIME: Duration = Duration::from_secs(6);
/// 50 clients × 1 MiB `client_queue_bytes`, counting replayed frames (which share the
/// history's memory) at full size, plus slack.
const REPLAY_GROWTH_MAX: u64 = 64 * MIB;

/// Finding 6: clients sending large messages while the host pulls no events.
const EVENT_CLIENTS: usize = 100;
/// Per client: inside the default burst of 100, so none is rate limited.
const EVENT_MESSAGES: usize = 60;
/// Just under the default `max_message_size` of 64 KiB.
const EVENT_PAD: usize = 63 * 1000;
/// Default `event_queue_bytes` (16 MiB), plus 100 connections' read buffers and slack.
const EVENT_GROWTH_MAX: u64 = 96 * MIB;
/// Events the default 16 MiB `event_queue_bytes` can hold at most: 16 MiB of ~63 KB
/// messages, plus the small `connected` events.
const EVENT_QUEUED_MAX: u64 = 16 * MIB / EVENT_PAD as u64 + EVENT_CLIENTS as u64 + 10;

/// Reports memory and the guard, and checks growth against `max`.
fn memory_figures(o: &mut Outcome, child: &Child, base: Memory, guard: &Guard, max: u64) {
    let peak = child.memory().peak;
    let growth = peak.saturating_sub(base.rss);
    o.fig("base_rss", mib(base.rss));
    o.fig("peak_rss", mib(peak));
    o.fig("growth", mib(growth));
    o.expect(
        !guard.tripped(),
        format!("RSS passed {} (attack stopped early)", mib(RSS_ABORT)),
    );
    o.expect(
        growth <= max,
        format!("RSS grew by {} (bound {})", mib(growth), mib(max)),
    );
}

fn closed_figures(o: &mut Outcome, attackers: &[Attacker], what: &str) {
    let closed: Vec<Duration> = attackers.iter().filter_map(|a| a.closed_after).collect();
    o.fig("sent", mib(attackers.iter().map(|a| a.sent).sum()));
    o.fig("closed", format!("{}/{}", closed.len(), attackers.len()));
    o.fig("last_closed_after", secs(closed.iter().max().copied()));
    o.expect(
        closed.len() == attackers.len(),
        format!(
            "the server closed {} of {} {what} within the attack",
            closed.len(),
            attackers.len()
        ),
    );
}

/// Finding 1: clients that send masked Pings as fast as they can and never read.
/// Expected: control frames count against the rate limit, so the server closes them
/// (1008 after `max_violations`), and the pongs they never read stay within the budget.
pub async fn ping_flood() -> Outcome {
    let mut o = Outcome::default();
    let Some(mut child) = o.step(Child::serve(json!({})).await) else {
        return o;
    };
    let Some(sockets) = o.step(connect_many(child.port, "/ws", PING_FLOOD_CLIENTS).await) else {
        return o;
    };
    let base = child.memory();
    let guard = Guard::watch(child.pid, RSS_ABORT);
    let ping = raw::frame(raw::PING, &[b'p'; PING_PAYLOAD], true, 0);
    let burst = Arc::new(ping.repeat(64));
    let started = Instant::now();
    let until = tokio::time::Instant::now() + PING_FLOOD_TIME;
    let mut set = JoinSet::new();
    for socket in sockets {
        let (b, g) = (burst.clone(), guard.clone());
        set.spawn(attack(socket, b.clone(), b, Pace::Flood, started, until, g));
    }
    let Some((attackers, _)) = o.step(run_attackers(&mut child, set, started).await) else {
        return o;
    };
    o.fig(
        "flood_time",
        format!("{:.1}s", started.elapsed().as_secs_f64()),
    );
    memory_figures(&mut o, &child, base, &guard, PING_FLOOD_GROWTH_MAX);
    closed_figures(&mut o, &attackers, "ping flooders");
    if let Some(stats) = o.step(
        stats_until(&mut child, Duration::from_secs(3), |s| {
            count(s, "activeConnections") == 0
        })
        .await,
    ) {
        o.fig("rateLimitCloses", count(&stats, "rateLimitCloses"));
        o.fig("activeConnections", count(&stats, "activeConnections"));
        o.expect(
            count(&stats, "activeConnections") == 0,
            format!(
                "{} flooders still connected",
                count(&stats, "activeConnections")
            ),
        );
    }
    drop(attackers);
    crate::child::finish(&mut o, child).await;
    o
}

/// Finding 2: clients that never read repeat a subscribe with `since` seq 0 on a channel
/// with a full history. Expected: replays count in `client_queue_bytes`, so these
/// clients are evicted and memory stays bounded.
pub async fn replay_amplification() -> Outcome {
    let mut o = Outcome::default();
    let Some(mut child) = o.step(Child::serve(json!({})).await) else {
        return o;
    };
    let Some(epoch) = o.step(fill_history(&mut child).await) else {
        return o;
    };
    let Some(sockets) = o.step(connect_many(child.port, "/ws", REPLAY_CLIENTS).await) else {
        return o;
    };
    let Some(before) = o.step(child.stats().await) else {
        return o;
    };
    let evictions_before = count(&before, "evictions");
    let subscribe = raw::text(
        &json!({"type":"subscribe","sessionId":"h","since":{"seq":0,"epoch":epoch}}).to_string(),
    );
    let burst = Arc::new(subscribe.repeat(REPLAY_BURST));
    let each = Arc::new(subscribe);
    let base = child.memory();
    let guard = Guard::watch(child.pid, RSS_ABORT);
    let started = Instant::now();
    let until = tokio::time::Instant::now() + REPLAY_TIME;
    let mut set = JoinSet::new();
    for socket in sockets {
        let (b, e, g) = (burst.clone(), each.clone(), guard.clone());
        set.spawn(attack(
            socket,
            b,
            e,
            Pace::Every(REPLAY_INTERVAL),
            started,
            until,
            g,
        ));
    }
    let Some((attackers, samples)) = o.step(run_attackers(&mut child, set, started).await) else {
        return o;
    };
    memory_figures(&mut o, &child, base, &guard, REPLAY_GROWTH_MAX);
    let Some(stats) = o.step(
        stats_until(&mut child, Duration::from_secs(3), |s| {
            count(s, "activeConnections") == 0
        })
        .await,
    ) else {
        return o;
    };
    let evicted = count(&stats, "evictions").saturating_sub(evictions_before);
    o.fig("evictions", format!("{evicted}/{REPLAY_CLIENTS}"));
    o.fig(
        "first_eviction",
        secs(first_reaching(&samples, "evictions", evictions_before, 1)),
    );
    o.fig(
        "all_evicted",
        secs(first_reaching(
            &samples,
            "evictions",
            evictions_before,
            REPLAY_CLIENTS as u64,
        )),
    );
    o.fig("recoveries", count(&stats, "recoveries"));
    closed_figures(&mut o, &attackers, "replaying clients");
    o.expect(
        evicted >= REPLAY_CLIENTS as u64,
        format!("{evicted} of {REPLAY_CLIENTS} replaying clients evicted"),
    );
    drop(attackers);
    crate::child::finish(&mut o, child).await;
    o
}

/// Publishes REPLAY_HISTORY messages to session `h`, read by one client to be sure they
/// are in; returns the channel's epoch.
async fn fill_history(child: &mut Child) -> Result<Value, String> {
    let (mut reader, _) = ws::connect(child.port, "").await?;
    let reply = ws::subscribe(&mut reader, r#""sessionId":"h""#).await?;
    if reply["type"] != "subscribed" {
        return Err(format!("subscribe to session h: {reply}"));
    }
    let epoch = reply["epoch"].clone();
    paced(
        child,
        &format!("session:h 100000 {REPLAY_HISTORY} {REPLAY_PAD}"),
        REPLAY_HISTORY,
    )
    .await?;
    for i in 0..REPLAY_HISTORY {
        match ws::next(&mut reader, Duration::from_secs(10)).await {
            Next::Json(m) if m["n"] == i => {}
            other => return Err(format!("history publication {i}: got {other:?}")),
        }
    }
    Ok(epoch)
}

/// Runs a paced publication to its end (bounded) and checks every call returned ok.
async fn paced(child: &mut Child, args: &str, expected: u64) -> Result<String, String> {
    let started = child.cmd(&format!("publish-paced {args}")).await?;
    if started != "started" {
        return Err(format!("publish-paced: {started}"));
    }
    let done = child
        .cmd_within("paced-wait 30000", Duration::from_secs(35))
        .await?;
    if !done.starts_with(&format!("done ok={expected} err=0")) {
        return Err(format!("paced publication: {done}"));
    }
    Ok(done)
}

/// Finding 6: clients send large messages while the host pulls no events. Expected:
/// events are bounded in bytes (`event_queue_bytes`, 16 MiB by default) and the rest
/// dropped and counted.
pub async fn event_flood() -> Outcome {
    let mut o = Outcome::default();
    let Some(mut child) = o.step(Child::serve(json!({})).await) else {
        return o;
    };
    let Some(sockets) = o.step(connect_many(child.port, "/ws", EVENT_CLIENTS).await) else {
        return o;
    };
    let message = raw::text(&json!({"type":"x","pad":"e".repeat(EVENT_PAD)}).to_string());
    let all = Arc::new(message.repeat(EVENT_MESSAGES));
    let base = child.memory();
    let guard = Guard::watch(child.pid, RSS_ABORT);
    let started = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut set = JoinSet::new();
    for socket in sockets {
        let (a, g) = (all.clone(), guard.clone());
        set.spawn(attack(socket, a.clone(), a, Pace::Once, started, until, g));
    }
    let Some((attackers, _)) = o.step(run_attackers(&mut child, set, started).await) else {
        return o;
    };
    let sent = (EVENT_CLIENTS * EVENT_MESSAGES) as u64;
    // Until the server has read everything (or the guard tripped and it never will).
    let Some(stats) = o.step(
        stats_until(&mut child, Duration::from_secs(15), |s| {
            guard.tripped() || count(s, "messagesReceived") >= sent
        })
        .await,
    ) else {
        return o;
    };
    o.fig("sent", format!("{}x{}B", sent, EVENT_PAD));
    o.fig("received", count(&stats, "messagesReceived"));
    o.fig("eventsQueued", count(&stats, "eventsQueued"));
    o.fig("eventsDropped", count(&stats, "eventsDropped"));
    memory_figures(&mut o, &child, base, &guard, EVENT_GROWTH_MAX);
    o.expect(
        count(&stats, "eventsDropped") > 0,
        "eventsDropped is 0".to_string(),
    );
    o.expect(
        count(&stats, "eventsQueued") <= EVENT_QUEUED_MAX,
        format!(
            "{} events queued (at most {EVENT_QUEUED_MAX} fit in 16 MiB)",
            count(&stats, "eventsQueued")
        ),
    );
    drop(attackers);
    crate::child::finish(&mut o, child).await;
    o
}
