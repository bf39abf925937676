//! The child host role: a real Herald host process, driven by one-line commands on stdin,
//! each answered with one line on stdout. The suite reads this process's memory from /proc.
//!
//! Commands (answers after `->`):
//! - `publish <channel> <json>` -> `ok` | `err <kind> <message>`
//! - `notify <start|progress|complete|error> <session> <json>` -> same
//! - `publish-paced <channel> <rate_per_s> <count> <payload_bytes>` -> `started`: a host
//!   thread publishes `{"n":i,"pad":"…"}`, i = 0..count, paced at the rate
//! - `paced-wait <timeout_ms>` -> `done ok=N err=M first_err=<kind>` | `running`
//! - `wait-event <type> <timeout_ms>` -> `event <json>` | `none` (other events are discarded)
//! - `stats` -> the stats JSON on one line | `err …`
//! - `stop <timeout_ms>` -> `ok` | `err …`
//! - `quit` -> exits

use herald::{Config, Error, Server};
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `start-err <kind> <message>` on stdout and exit 2, for a config the server refuses.
fn refuse(kind: &str, message: &str) -> ! {
    println!("start-err {kind} {}", one_line(message));
    std::process::exit(2);
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn answer(result: herald::Result<()>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => error_line(&e),
    }
}

fn error_line(e: &Error) -> String {
    format!("err {} {}", e.kind().as_str(), one_line(e.message()))
}

/// Starts a server, or exits with `start-err`. A panic is reported as kind `panic` (the
/// panic hook has already printed it on stderr, which the suite checks too).
fn start(config_json: &str) -> Server {
    let config =
        Config::from_json(config_json).unwrap_or_else(|e| refuse(e.kind().as_str(), e.message()));
    match std::panic::catch_unwind(|| Server::start(config)) {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => refuse(e.kind().as_str(), e.message()),
        Err(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            refuse("panic", &text)
        }
    }
}

pub fn serve(config_json: &str) -> ! {
    let server = start(config_json);
    println!("port {}", server.port());
    let mut paced: Option<Paced> = None;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let reply = command(&server, &mut paced, line.trim_end());
        println!("{reply}");
        let _ = std::io::stdout().flush();
    }
    // stdin closed or `quit`: the suite is done with this host.
    let _ = server.stop(Duration::from_secs(1));
    std::process::exit(0);
}

fn command(server: &Server, paced: &mut Option<Paced>, line: &str) -> String {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "publish" => match rest.split_once(' ') {
            Some((channel, json)) => answer(server.publish(channel, json)),
            None => "err usage publish <channel> <json>".into(),
        },
        "notify" => {
            let mut parts = rest.splitn(3, ' ');
            let (Some(kind), Some(session), Some(json)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return "err usage notify <kind> <session> <json>".into();
            };
            answer(match kind {
                "start" => server.notify_ai_start(session, json),
                "progress" => server.notify_ai_progress(session, json),
                "complete" => server.notify_ai_complete(session, json),
                "error" => server.notify_ai_error(session, json),
                _ => return format!("err usage unknown notify kind {kind}"),
            })
        }
        "publish-paced" => {
            let parts: Vec<&str> = rest.split(' ').collect();
            let parsed = match parts.as_slice() {
                [channel, rate, count, bytes] => rate
                    .parse::<u64>()
                    .ok()
                    .zip(count.parse::<u64>().ok())
                    .zip(bytes.parse::<usize>().ok())
                    .map(|((r, c), b)| (channel.to_string(), r, c, b)),
                _ => None,
            };
            let Some((channel, rate, count, bytes)) = parsed else {
                return "err usage publish-paced <channel> <rate> <count> <bytes>".into();
            };
            if paced.as_ref().is_some_and(|p| p.result.is_none()) {
                return "err busy a paced publication is running".into();
            }
            *paced = Some(Paced::spawn(server.clone(), channel, rate, count, bytes));
            "started".into()
        }
        "paced-wait" => {
            let timeout = Duration::from_millis(rest.parse().unwrap_or(0));
            match paced {
                Some(p) => p.wait(timeout),
                None => "err usage no paced publication".into(),
            }
        }
        "wait-event" => {
            let (kind, timeout) = rest.split_once(' ').unwrap_or((rest, "0"));
            wait_event(
                server,
                kind,
                Duration::from_millis(timeout.parse().unwrap_or(0)),
            )
        }
        "stats" => match server.stats_json() {
            Ok(json) => json,
            Err(e) => error_line(&e),
        },
        "stop" => answer(server.stop(Duration::from_millis(rest.parse().unwrap_or(1000)))),
        "quit" => std::process::exit(0),
        _ => format!("err usage unknown command {verb:?}"),
    }
}

fn wait_event(server: &Server, kind: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.next_event(left.min(Duration::from_millis(100))) {
            Ok(Some(event)) if event.kind() == kind => return format!("event {}", event.to_json()),
            Ok(_) if left.is_zero() => return "none".into(),
            Ok(_) => {}
            Err(e) => return error_line(&e),
        }
    }
}

/// Publications paced by a host thread, like a backend streaming tokens.
struct Paced {
    done: mpsc::Receiver<String>,
    thread: Option<JoinHandle<()>>,
    result: Option<String>,
}

impl Paced {
    fn spawn(server: Server, channel: String, rate: u64, count: u64, bytes: usize) -> Paced {
        let (tx, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let pad = "p".repeat(bytes);
            let (mut ok, mut err, mut first_err) = (0u64, 0u64, String::from("none"));
            let started = Instant::now();
            let mut n = 0u64;
            while n < count {
                // Publish what is due by now, then sleep a millisecond: an even pace.
                let due = (started.elapsed().as_micros() as u64 * rate / 1_000_000 + 1).min(count);
                while n < due {
                    let json = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
                    match server.publish(&channel, &json) {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            if err == 0 {
                                first_err = e.kind().as_str().to_string();
                            }
                            err += 1;
                        }
                    }
                    n += 1;
                }
                if n < count {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let secs = started.elapsed().as_secs_f64();
            let _ = tx.send(format!(
                "done ok={ok} err={err} first_err={first_err} secs={secs:.3}"
            ));
        });
        Paced {
            done,
            thread: Some(thread),
            result: None,
        }
    }

    fn wait(&mut self, timeout: Duration) -> String {
        if self.result.is_none() {
            if let Ok(line) = self.done.recv_timeout(timeout) {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                self.result = Some(line);
            }
        }
        self.result.clone().unwrap_or_else(|| "running".into())
    }
}

/// Exactly what examples/c/host.c does, as fast as possible: wait for a client to
/// subscribe to the session, stream a task (start, four progress, complete), read the
/// stats, stop with 5 s. Prints `port N` first and `stopped ok|err …` last.
pub fn stop_race(session: &str) -> ! {
    // On one CPU shared with the other runs' hosts: a busy host, where the race shows.
    pin_to_first_cpu();
    let server = start(r#"{"port":0}"#);
    println!("port {}", server.port());
    let channel = format!("session:{session}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let subscribed = loop {
        if Instant::now() >= deadline {
            break false;
        }
        match server.next_event(Duration::from_millis(100)) {
            Ok(Some(herald::Event::Subscribed { channel: c, .. })) if c == channel => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    if !subscribed {
        println!("stopped err no subscriber within 10 s");
        let _ = server.stop(Duration::from_secs(1));
        std::process::exit(1);
    }
    let mut results =
        vec![server.notify_ai_start(session, r#"{"taskId":"t1","model":"demo-llm"}"#)];
    for pct in [25, 50, 75, 100] {
        results.push(
            server.notify_ai_progress(session, &format!(r#"{{"taskId":"t1","percent":{pct}}}"#)),
        );
    }
    results.push(server.notify_ai_complete(session, r#"{"taskId":"t1","output":"hello"}"#));
    let _ = server.stats_json();
    let stopped = server.stop(Duration::from_secs(5));
    let failed = results.into_iter().chain([stopped]).find_map(|r| r.err());
    match failed {
        None => println!("stopped ok"),
        Some(e) => println!("stopped {}", error_line(&e)),
    }
    std::process::exit(0);
}

/// Restricts this process (and the threads it starts afterwards) to CPU 0.
fn pin_to_first_cpu() {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
