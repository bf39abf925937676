//! The abuse suite: one attack per finding of issue 12, each against a real Herald host
//! in a child process (this same binary, run with `--serve '<config json>'`), so the
//! host's memory can be read from /proc while real sockets attack it.
//!
//! `cargo test --test abuse` runs every attack; `cargo test --test abuse -- f3 f7` runs
//! some. Each prints one line with its figures and PASS or FAIL; the last line is
//! `N passed, N failed`, and any failure makes the exit status non-zero.

mod admin;
mod attackers;
mod child;
mod config;
mod fanout;
mod host;
mod limits;
mod memory;
mod outcome;
mod protocol;
mod raw;
mod stop;
mod ws;

use outcome::Outcome;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

type Attack = fn() -> Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Every attack, by finding: (id, name, attack).
fn attacks() -> Vec<(&'static str, &'static str, Attack)> {
    vec![
        ("f1", "ping flood", || Box::pin(memory::ping_flood())),
        ("f2", "replay amplification", || {
            Box::pin(memory::replay_amplification())
        }),
        ("f3", "stalled subscribers vs a healthy reader", || {
            Box::pin(fanout::stalled_subscribers())
        }),
        ("f4", "channel table full", || {
            Box::pin(limits::channel_table_full())
        }),
        ("f5", "stats in secure mode", || {
            Box::pin(admin::stats_protected())
        }),
        ("f6", "host events bounded in bytes", || {
            Box::pin(memory::event_flood())
        }),
        ("f7", "stop delivers what was queued", || {
            Box::pin(stop::stop_race())
        }),
        ("f8", "protocol errors get RFC close codes", || {
            Box::pin(protocol::protocol_errors())
        }),
        ("f9", "config numbers out of range", || {
            Box::pin(config::config_overflow())
        }),
    ]
}

/// Longest any one attack may take, harness included, before it is failed.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    raise_fd_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("--serve"), Some(config)) => host::serve(config),
        (Some("--stop-race"), Some(session)) => host::stop_race(session),
        _ => {}
    }
    if args.iter().any(|a| a == "--list") {
        for (id, name, _) in attacks() {
            println!("{id}: test ({name})");
        }
        return;
    }
    // Arguments that are not options select attacks by id (f1 … f9).
    let selected: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the suite's runtime");
    let (mut passed, mut failed) = (0, 0);
    for (id, name, attack) in attacks() {
        if !selected.is_empty() && !selected.iter().any(|s| s.as_str() == id) {
            continue;
        }
        let started = Instant::now();
        let outcome = runtime.block_on(async {
            let task = tokio::spawn(attack());
            let abort = task.abort_handle();
            match tokio::time::timeout(ATTACK_TIMEOUT, task).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(panic)) => Outcome::broken(format!("the attack panicked: {panic}")),
                Err(_) => {
                    // Its sockets, tasks and child processes go with it.
                    abort.abort();
                    Outcome::broken(format!("the attack took over {ATTACK_TIMEOUT:?}"))
                }
            }
        });
        let line = outcome.line(id, name, started.elapsed());
        println!("{line}");
        if outcome.passed() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    // Children are killed when dropped; the runtime's leftovers (stalled sockets) go too.
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// A thousand sockets (and their server ends in the child) need more than the usual 1024.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialized struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
