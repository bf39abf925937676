//! Finding 3: a thousand subscribers that never read must not hurt a healthy reader of the
//! same channel, nor pin megabytes each in the kernel.

use crate::attackers::{connect_many, first_reaching, secs};
use crate::child::{count, mib, stats_until, Child, Guard, RSS_ABORT};
use crate::outcome::Outcome;
use crate::ws::{self, Next};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

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
        format!("memory_evictions:{}", count(&stats, "memoryEvictions")),
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
