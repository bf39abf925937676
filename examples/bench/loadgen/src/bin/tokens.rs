//! The token-stream case: `herald-tokens [--subscribers N] [--jobs J] [--rate R]
//! [--seconds S] [--rollup-ms M]`.
//!
//! A host process (this binary, `host` subcommand, Herald embedded through its Rust API)
//! streams J concurrent jobs, one per session, each at R `ai_delta`s a second for S
//! seconds; N WebSocket subscribers (blocking tungstenite, one thread each) are spread
//! evenly over the J sessions. Each delta's text is `<send time in µs>;`, so a client
//! measures every token's latency even when deltas were rolled up or merged (their texts
//! are concatenated). Reported: frames and tokens delivered per second, the host
//! process's CPU per frame and per token delivered (/proc/<pid>/stat), token latency
//! percentiles, and whether every client got every token once, in order.

use herald_bench::procstat;
use herald_bench::unix_micros;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

struct Args {
    subscribers: usize,
    jobs: usize,
    rate: u64,
    seconds: u64,
    rollup_ms: u64,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        subscribers: 1000,
        jobs: 50,
        rate: 100,
        seconds: 10,
        rollup_ms: 0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .parse::<u64>()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--subscribers" => parsed.subscribers = value as usize,
            "--jobs" => parsed.jobs = value as usize,
            "--rate" => parsed.rate = value,
            "--seconds" => parsed.seconds = value,
            "--rollup-ms" => parsed.rollup_ms = value,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let bounded = (1..=20_000).contains(&parsed.subscribers)
        && (1..=1000).contains(&parsed.jobs)
        && (1..=10_000).contains(&parsed.rate)
        && (1..=600).contains(&parsed.seconds)
        && parsed.rollup_ms <= 60_000;
    if !bounded {
        return Err("out of range: subscribers 1..20000, jobs 1..1000, rate 1..10000, seconds 1..600, rollup-ms 0..60000".into());
    }
    Ok(parsed)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("host") {
        return host(&args[1..]);
    }
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("herald-tokens: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("herald-tokens: {e}");
        std::process::exit(1);
    }
}

/// The host: prints `READY <port>`, then on `go <jobs> <rate> <seconds>` streams and
/// ends each job with `ai_complete`, printing `DONE <deltas>`; `quit` stops.
fn host(args: &[String]) {
    let rollup_ms: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
    let config = format!(
        r#"{{"port":0,"ai":{{"delta_rollup_ms":{rollup_ms}}},"rate_limit":{{"messages_per_second":0}},"max_connections":30000}}"#
    );
    let server =
        herald::Server::start(herald::Config::from_json(&config).expect("config")).expect("start");
    println!("READY {}", server.port());
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["go", jobs, rate, seconds] => {
                let (jobs, rate, seconds): (usize, u64, u64) = (
                    jobs.parse().unwrap_or(1),
                    rate.parse().unwrap_or(1),
                    seconds.parse().unwrap_or(1),
                );
                for j in 0..jobs {
                    server
                        .notify_ai_start(&format!("s{j}"), &format!(r#"{{"jobId":"j{j}"}}"#))
                        .expect("start");
                }
                let period = Duration::from_nanos(1_000_000_000 / rate);
                let ticks = rate * seconds;
                let begin = Instant::now();
                let mut sent = 0u64;
                for tick in 0..ticks {
                    let due = begin + period * tick as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    for j in 0..jobs {
                        let delta = format!(r#"{{"jobId":"j{j}","text":"{};"}}"#, unix_micros());
                        // A full publish queue is retried: every token must go out.
                        while server.notify_ai_delta(&format!("s{j}"), &delta).is_err() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        sent += 1;
                    }
                }
                for j in 0..jobs {
                    server
                        .notify_ai_complete(&format!("s{j}"), &format!(r#"{{"jobId":"j{j}"}}"#))
                        .expect("complete");
                }
                println!("DONE {sent}");
            }
            ["quit"] => break,
            _ => println!("ERR unknown command"),
        }
        let _ = std::io::stdout().flush();
    }
    let _ = server.stop(Duration::from_secs(5));
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    frames: u64,
    tokens: u64,
    /// Token latencies in µs.
    latencies: Vec<u32>,
    /// Every token once, in send order (times never go back within a job).
    in_order: bool,
}

fn subscriber(port: u16, session: String, ready: Arc<Barrier>) -> Result<Seen, String> {
    let url = format!("ws://127.0.0.1:{port}/ws?sessionId={session}");
    let connected = tungstenite::connect(url).map_err(|e| format!("connect: {e}"));
    // Waited for even after a failed connect, so the run never hangs on the barrier.
    ready.wait();
    let (mut ws, _) = connected?;
    let mut seen = Seen {
        in_order: true,
        ..Seen::default()
    };
    let mut last_t = 0u64;
    loop {
        let message = ws.read().map_err(|e| format!("read: {e}"))?;
        let Message::Text(text) = message else {
            continue;
        };
        let now = unix_micros();
        if text.contains(r#""type":"ai_complete""#) {
            break;
        }
        if !text.contains(r#""type":"ai_delta""#) {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("bad frame: {e}"))?;
        let tokens = value["delta"]["text"].as_str().unwrap_or("");
        seen.frames += 1;
        for token in tokens.split(';').filter(|t| !t.is_empty()) {
            let t: u64 = token.parse().map_err(|_| format!("bad token {token:?}"))?;
            seen.in_order &= t >= last_t;
            last_t = t;
            seen.tokens += 1;
            seen.latencies
                .push(now.saturating_sub(t).min(u32::MAX as u64) as u32);
        }
    }
    let _ = ws.close(None);
    Ok(seen)
}

fn run(args: &Args) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["host", &args.rollup_ms.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the host: {e}"))?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut stdin = child.stdin.take().expect("piped");
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    let port: u16 = ready
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("host said {ready:?}"))?;

    let barrier = Arc::new(Barrier::new(args.subscribers + 1));
    let results = Arc::new(Mutex::new(Vec::with_capacity(args.subscribers)));
    let mut threads = Vec::with_capacity(args.subscribers);
    for n in 0..args.subscribers {
        let (barrier, results) = (Arc::clone(&barrier), Arc::clone(&results));
        let session = format!("s{}", n % args.jobs);
        let thread = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let seen = subscriber(port, session, barrier);
                results.lock().unwrap().push(seen);
            })
            .map_err(|e| format!("thread: {e}"))?;
        threads.push(thread);
    }
    barrier.wait();
    let cpu_before = procstat::sample(pid).map(|s| s.cpu_ns).unwrap_or(0);
    let started = Instant::now();
    writeln!(stdin, "go {} {} {}", args.jobs, args.rate, args.seconds)
        .map_err(|e| e.to_string())?;
    let done = lines.next().and_then(Result::ok).unwrap_or_default();
    let deltas: u64 = done
        .strip_prefix("DONE ")
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("host said {done:?}"))?;
    for thread in threads {
        let _ = thread.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_ns = procstat::sample(pid)
        .map(|s| s.cpu_ns)
        .unwrap_or(0)
        .saturating_sub(cpu_before);
    let _ = writeln!(stdin, "quit");
    let _ = child.wait();

    let results = std::mem::take(&mut *results.lock().unwrap());
    let failed = results.iter().filter(|r| r.is_err()).count();
    let seen: Vec<Seen> = results.into_iter().filter_map(Result::ok).collect();
    let frames: u64 = seen.iter().map(|s| s.frames).sum();
    let tokens: u64 = seen.iter().map(|s| s.tokens).sum();
    let per_client = deltas / args.jobs as u64;
    let complete = seen.iter().all(|s| s.tokens == per_client && s.in_order);
    let mut latencies: Vec<u32> = seen
        .iter()
        .flat_map(|s| s.latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| herald_bench::stats::percentile_sorted(&latencies, p) as f64 / 1000.0;
    println!(
        "token stream: {} subscribers, {} jobs x {} deltas/s for {} s, rollup {} ms",
        args.subscribers, args.jobs, args.rate, args.seconds, args.rollup_ms
    );
    println!("  deltas sent {deltas}; frames delivered {frames} ({:.0}/s); tokens delivered {tokens} ({:.0}/s)",
        frames as f64 / elapsed, tokens as f64 / elapsed);
    println!(
        "  host CPU {:.2} s: {:.2} µs per frame, {:.2} µs per token delivered",
        cpu_ns as f64 / 1e9,
        cpu_ns as f64 / 1000.0 / frames.max(1) as f64,
        cpu_ns as f64 / 1000.0 / tokens.max(1) as f64
    );
    println!(
        "  token latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(50.0),
        pct(99.0),
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "  every client got every token once, in order: {complete} (failed clients: {failed})"
    );
    if !complete || failed > 0 {
        return Err("some client missed tokens".into());
    }
    Ok(())
}
