//! Raw clients that attack and never read: connected in bulk, each writing a burst and
//! then at a pace until the server closes its socket, while the host's stats are sampled.

use crate::child::{Child, Guard};
use crate::raw::RawWs;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

/// Connects `n` raw clients to `path`, 50 at a time.
pub async fn connect_many(port: u16, path: &str, n: usize) -> Result<Vec<RawWs>, String> {
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
pub struct Attacker {
    pub closed_after: Option<Duration>,
    /// Bytes the socket took.
    pub sent: u64,
    /// Kept open until the server's view has been read.
    _socket: RawWs,
}

/// How an attacker writes after its first burst.
#[derive(Clone, Copy)]
pub enum Pace {
    /// The burst again and again, as fast as the socket takes it.
    Flood,
    /// `each` once per interval.
    Every(Duration),
    /// Nothing more (the socket stays open).
    Once,
}

/// Writes `burst`, then goes on as `pace` says, until a write fails (the server closed
/// the socket), `until` passes or the guard trips. Never reads.
pub async fn attack(
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
pub async fn run_attackers(
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
pub fn first_reaching(
    samples: &[(Duration, Value)],
    key: &str,
    base: u64,
    by: u64,
) -> Option<Duration> {
    samples
        .iter()
        .find(|(_, s)| crate::child::count(s, key).saturating_sub(base) >= by)
        .map(|(t, _)| *t)
}

pub fn secs(t: Option<Duration>) -> String {
    t.map_or("never".into(), |t| format!("{:.2}s", t.as_secs_f64()))
}
