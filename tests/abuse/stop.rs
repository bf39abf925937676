//! Finding 7: a stop right after a burst of notifications delivers all of them, then 1001.

use crate::child::{Child, Launch};
use crate::outcome::Outcome;
use crate::ws::{self, Next};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinSet;

const STOP_RUNS: usize = 50;
/// Runs at once, their hosts all on one CPU: keeps the total short, and a busy host is
/// where the race shows.
const STOP_PARALLEL: usize = 8;
const MESSAGE_WAIT: Duration = Duration::from_secs(10);

pub async fn stop_race() -> Outcome {
    let mut o = Outcome::default();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut ok = 0;
    let mut next = 0;
    let mut set = JoinSet::new();
    while next < STOP_RUNS || !set.is_empty() {
        while next < STOP_RUNS && set.len() < STOP_PARALLEL {
            set.spawn(one_run(next));
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(()))) => ok += 1,
            Some(Ok(Err(why))) => *failures.entry(why).or_default() += 1,
            Some(Err(e)) => *failures.entry(format!("run task: {e}")).or_default() += 1,
            None => break,
        }
    }
    o.fig("complete_runs", format!("{ok}/{STOP_RUNS}"));
    for (why, n) in &failures {
        o.fail(format!("{n}x {why}"));
    }
    o
}

/// One host (`--stop-race`) and one client on its session: `connection`, the six
/// notifications in order, then close 1001.
async fn one_run(i: usize) -> Result<(), String> {
    let session = format!("race{i}");
    let mut child = match Child::launch(&["--stop-race", &session]).await? {
        Launch::Serving(child) => *child,
        Launch::Refused {
            first_line, stderr, ..
        } => return Err(format!("host did not start: {first_line:?} {stderr:?}")),
    };
    let (mut client, _) = ws::connect(child.port, &format!("?sessionId={session}")).await?;
    let expected = [
        ("ai_start", None),
        ("ai_progress", Some(25)),
        ("ai_progress", Some(50)),
        ("ai_progress", Some(75)),
        ("ai_progress", Some(100)),
        ("ai_complete", None),
    ];
    for (k, (kind, percent)) in expected.iter().enumerate() {
        match ws::next(&mut client, MESSAGE_WAIT).await {
            Next::Json(m)
                if m["type"] == *kind && percent.is_none_or(|p| m["progress"]["percent"] == p) => {}
            Next::Json(m) => return Err(format!("message {} was {m}", k + 1)),
            Next::Closed(code) => return Err(format!("got {k} of 6, then close {code:?}")),
            Next::Timeout => return Err(format!("got {k} of 6, then nothing")),
        }
    }
    let close = ws::next(&mut client, MESSAGE_WAIT).await;
    let stopped = child.next_line(MESSAGE_WAIT).await;
    child.wait_exit(MESSAGE_WAIT).await;
    match (close, stopped.as_deref()) {
        (Next::Closed(Some(1001)), Some("stopped ok")) => Ok(()),
        (Next::Closed(Some(1001)), other) => Err(format!("host ended with {other:?}")),
        (other, _) => Err(format!("got 6 of 6, then {other:?} instead of close 1001")),
    }
}
