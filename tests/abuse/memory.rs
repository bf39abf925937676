//! Attacks on the server's memory (findings 1, 2, 3 and 6): clients that never read,
//! while the host's RSS is watched from /proc.

use crate::child::{mib, Child, Guard, Memory};
use crate::outcome::Outcome;
use crate::raw::{self, RawWs};
use crate::ws::{self, Next};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

const MIB: u64 = 1024 * 1024;
/// An attack stops once the host's RSS passes this: the finding is shown by then, and the
/// machine is shared.
const RSS_ABORT: u64 = 1024 * MIB;

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

/// Finding 3: a thousand subscribers that never read, one that does.
const STALLED: usize = 1000;
const FANOUT_RATE: u64 = 5000;
/// 2.4 s of publications: each stalled socket pins at most ~1.3 MB in the kernel on the
/// old code, so 1000 of them stay under the machine's tcp_mem pressure threshold (1.5 GB).
const FANOUT_COUNT: u64 = 12_000;
/// No pad: publications of ~110 bytes, to keep that kernel memory low.
const FANOUT_PAD: usize = 0;
/// After the last publication, how long the healthy reader may take to read the rest
/// (generous: a debug build fanning out to 1001 sockets on a busy machine lags behind).
const FANOUT_DRAIN: Duration = Duration::from_secs(20);
/// Bytes a stalled socket may pin in the kernel send queue: the default
/// `socket_send_buffer` of 128 KiB, doubled by the kernel, with slack. The old code let
/// each grow to megabytes before its own queue counted anything.
const KERNEL_QUEUE_MAX: u64 = 512 * 1024;
/// After the reader is done, how long to keep watching for the stalled ones' eviction.
const FANOUT_EVICTION_WAIT: Duration = Duration::from_secs(3);
/// The healthy reader must come through every round; on the old code it was evicted in
/// most rounds but not all, so several rounds show it far more reliably.
const FANOUT_ROUNDS: usize = 3;

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

fn count(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or(0)
}

/// Polls the host's stats until `done` holds or `wait` passes; the last stats either way.
async fn stats_until(
    child: &mut Child,
    wait: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let deadline = Instant::now() + wait;
    loop {
        let stats = child.stats().await?;
        if done(&stats) || Instant::now() >= deadline {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects `n` raw clients to `path`, 50 at a time.
async fn connect_many(port: u16, path: &str, n: usize) -> Result<Vec<RawWs>, String> {
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (gate, path) = (gate.clone(), path.to_string());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            RawWs::connect(port, &path).await
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        out.push(joined.map_err(|e| format!("connect task: {e}"))??);
    }
    Ok(out)
}

/// How one attacking socket ended: when the server closed it (its write failed), if it did.
struct Attacker {
    closed_after: Option<Duration>,
    /// Bytes the socket took.
    sent: u64,
    /// Kept open until the server's view has been read.
    _socket: RawWs,
}

/// How an attacker writes after its first burst.
#[derive(Clone, Copy)]
enum Pace {
    /// The burst again and again, as fast as the socket takes it.
    Flood,
    /// `each` once per interval.
    Every(Duration),
    /// Nothing more (the socket stays open).
    Once,
}

/// Writes `burst`, then goes on as `pace` says, until a write fails (the server closed
/// the socket), `until` passes or the guard trips. Never reads.
async fn attack(
    mut socket: RawWs,
    burst: Arc<Vec<u8>>,
    each: Arc<Vec<u8>>,
    pace: Pace,
    started: Instant,
    until: tokio::time::Instant,
    guard: Guard,
) -> Attacker {
    let mut first = true;
    let mut sent = 0u64;
    let closed_after = loop {
        if guard.tripped() || tokio::time::Instant::now() >= until {
            break None;
        }
        let bytes = match pace {
            Pace::Every(_) if !first => &each,
            Pace::Once if !first => break None,
            _ => &burst,
        };
        first = false;
        // Bounded by `until`: a server that stops reading blocks the write.
        match tokio::time::timeout_at(until, socket.stream.write_all(bytes)).await {
            Err(_) => break None,
            Ok(Err(_)) => break Some(started.elapsed()),
            Ok(Ok(())) => sent += bytes.len() as u64,
        }
        if let Pace::Every(interval) = pace {
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + interval)).await;
        }
    };
    Attacker {
        closed_after,
        sent,
        _socket: socket,
    }
}

/// Runs attackers to their end while sampling the host's stats every 200 ms; returns the
/// attackers and the samples (time since `started`, stats).
async fn run_attackers(
    child: &mut Child,
    mut set: JoinSet<Attacker>,
    started: Instant,
) -> Result<(Vec<Attacker>, Vec<(Duration, Value)>), String> {
    let mut samples = Vec::new();
    let mut attackers = Vec::new();
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                Some(a) => attackers.push(a.map_err(|e| format!("attacker task: {e}"))?),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                samples.push((started.elapsed(), child.stats().await?));
            }
        }
    }
    Ok((attackers, samples))
}

/// The first sample at which `key` grew by at least `by` over `base`.
fn first_reaching(
    samples: &[(Duration, Value)],
    key: &str,
    base: u64,
    by: u64,
) -> Option<Duration> {
    samples
        .iter()
        .find(|(_, s)| count(s, key).saturating_sub(base) >= by)
        .map(|(t, _)| *t)
}

fn secs(t: Option<Duration>) -> String {
    t.map_or("never".into(), |t| format!("{:.2}s", t.as_secs_f64()))
}

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

/// Finding 3: a thousand subscribers that never read and one healthy reader on a channel
/// published at 5k msg/s, in FANOUT_ROUNDS rounds with a fresh host each. Expected: the
/// healthy reader gets every publication in order and is not evicted, in every round;
/// the stalled ones are evicted (reported: RSS, kernel memory, time to evict).
pub async fn stalled_subscribers() -> Outcome {
    let mut o = Outcome::default();
    for round in 1..=FANOUT_ROUNDS {
        let prefix = format!("r{round}_");
        if !fanout_round(&mut o, &prefix).await {
            break;
        }
    }
    o
}

/// One round of finding 3; false if the round could not run to its end.
async fn fanout_round(o: &mut Outcome, prefix: &str) -> bool {
    // Stats are polled during the round: listing 1001 clients each time would cost the
    // host more than the attack's own work.
    let config = json!({ "stats_client_limit": 1 });
    let Some(mut child) = o.step(Child::serve(config).await) else {
        return false;
    };
    let Some(stalled) = o.step(connect_many(child.port, "/ws?sessionId=fan", STALLED).await) else {
        return false;
    };
    let Some((mut reader, _)) = o.step(ws::connect(child.port, "?sessionId=fan").await) else {
        return false;
    };
    let subscribed = stats_until(&mut child, Duration::from_secs(10), |s| {
        count(s, "subscriptions") > STALLED as u64
    })
    .await;
    let Some(stats) = o.step(subscribed) else {
        return false;
    };
    if count(&stats, "subscriptions") <= STALLED as u64 {
        o.fail(format!(
            "{prefix}: only {} subscriptions registered",
            count(&stats, "subscriptions")
        ));
        return false;
    }
    let base = child.memory();
    let guard = Guard::watch(child.pid, RSS_ABORT);
    let started = Instant::now();
    let publish_time = Duration::from_millis(FANOUT_COUNT * 1000 / FANOUT_RATE);
    let healthy = tokio::spawn(async move {
        let deadline = publish_time + FANOUT_DRAIN;
        let mut got = 0u64;
        let mut last_seq: Option<u64> = None;
        loop {
            if got == FANOUT_COUNT {
                return (got, "all in order".to_string());
            }
            let left = deadline.saturating_sub(started.elapsed());
            match ws::next(&mut reader, left).await {
                Next::Json(m) if m["n"] == got => {
                    let seq = m["seq"].as_u64().unwrap_or(0);
                    if last_seq.is_some_and(|l| seq != l + 1) {
                        return (got, format!("seq jumped from {last_seq:?} to {seq}"));
                    }
                    last_seq = Some(seq);
                    got += 1;
                }
                Next::Json(m) => return (got, format!("expected n={got}, got {m}")),
                Next::Closed(code) => return (got, format!("closed with {code:?}")),
                Next::Timeout => return (got, format!("timed out at n={got}")),
            }
        }
    });
    let Some(answer) = o.step(
        child
            .cmd(&format!(
                "publish-paced session:fan {FANOUT_RATE} {FANOUT_COUNT} {FANOUT_PAD}"
            ))
            .await,
    ) else {
        return false;
    };
    o.expect(
        answer == "started",
        format!("{prefix}: publish-paced: {answer}"),
    );
    // Sampled until the reader is done, then a little longer for the stalled evictions.
    let mut samples = Vec::new();
    let mut publish_result = String::from("running");
    let mut tcp_peak = tcp_memory();
    let mut queue_peak = 0u64;
    let mut reader_done_at = None;
    while !guard.tripped() {
        let stats = child.stats().await.unwrap_or(Value::Null);
        let all_evicted = count(&stats, "evictions") >= STALLED as u64;
        samples.push((started.elapsed(), stats));
        tcp_peak = tcp_peak.max(tcp_memory());
        queue_peak = queue_peak.max(largest_send_queue(child.port));
        if publish_result == "running" {
            if let Some(r) = o.step(child.cmd("paced-wait 0").await) {
                publish_result = r;
            }
        }
        if healthy.is_finished() && reader_done_at.is_none() {
            reader_done_at = Some(Instant::now());
        }
        if reader_done_at.is_some_and(|t| all_evicted || t.elapsed() >= FANOUT_EVICTION_WAIT) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if guard.tripped() {
        healthy.abort();
    }
    let (got, how) = healthy.await.unwrap_or((0, "aborted (RSS guard)".into()));
    if publish_result == "running" {
        publish_result = o
            .step(
                child
                    .cmd_within("paced-wait 20000", Duration::from_secs(25))
                    .await,
            )
            .unwrap_or_default();
    }
    let Some(stats) = o.step(child.stats().await) else {
        return false;
    };
    let peak = child.memory().peak;
    let summary = [
        format!("healthy:{got}/{FANOUT_COUNT}({how})"),
        format!("evictions:{}", count(&stats, "evictions")),
        format!(
            "first_eviction:{}",
            secs(first_reaching(&samples, "evictions", 0, 1))
        ),
        format!(
            "stalled_all_evicted:{}",
            secs(first_reaching(&samples, "evictions", 0, STALLED as u64))
        ),
        format!("peak_rss:{}", mib(peak)),
        format!("growth:{}", mib(peak.saturating_sub(base.rss))),
        format!("tcp_mem_peak_machine_wide:{}", mib(tcp_peak)),
        format!("largest_kernel_send_queue:{}KiB", queue_peak / 1024),
    ];
    o.fig(&format!("{prefix}fanout"), summary.join(","));
    o.expect(
        !guard.tripped(),
        format!("{prefix}: RSS passed {}", mib(RSS_ABORT)),
    );
    o.expect(
        publish_result.starts_with(&format!("done ok={FANOUT_COUNT} err=0")),
        format!("{prefix}: host publication: {publish_result}"),
    );
    o.expect(
        got == FANOUT_COUNT,
        format!("{prefix}: healthy reader got {got} of {FANOUT_COUNT}: {how}"),
    );
    o.expect(
        queue_peak <= KERNEL_QUEUE_MAX,
        format!(
            "{prefix}: a stalled socket pinned {} KiB in the kernel send queue (bound {} KiB)",
            queue_peak / 1024,
            KERNEL_QUEUE_MAX / 1024
        ),
    );
    drop(stalled);
    crate::child::finish(o, child).await;
    true
}

/// Memory the kernel holds for TCP sockets, machine-wide (what stalled sockets pin), from
/// /proc/net/sockstat, in bytes.
fn tcp_memory() -> u64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The largest kernel send queue among the server's established sockets on `port`, in
/// bytes, from /proc/net/tcp (the host's side of each connection: local port = `port`).
fn largest_send_queue(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (address, _remote, state, queues) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            let established = state == "01";
            let tx = u64::from_str_radix(queues.split(':').next()?, 16).ok()?;
            (established && address.ends_with(&local)).then_some(tx)
        })
        .max()
        .unwrap_or(0)
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
