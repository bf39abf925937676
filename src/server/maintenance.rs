//! The server's periodic tasks: heartbeats, history housekeeping, the memory guard.

use crate::client::{Client, CloseReason};
use crate::shared::Shared;
use crate::stats::Counters;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often expired history is dropped and idle channels reclaimed.
pub(super) const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

pub(super) async fn heartbeat(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(shared.config.heartbeat_interval_ms);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticks.tick() => {}
        }
        let now = shared.now_ms();
        let timeout = shared.config.heartbeat_timeout_ms;
        for client in shared.fanout.clients() {
            // Pings keep a client "alive" even if it never reads: a socket that took no
            // byte for as long is evicted all the same.
            if client.write_stalled_for(now) > timeout {
                if client.request_close(CloseReason::SlowConsumer) {
                    Counters::add(&shared.counters.write_stalls, 1);
                    Counters::add(&shared.counters.evictions, 1);
                    tracing::info!(client = %client.id, "evicting a client whose socket takes nothing");
                }
            } else if now.saturating_sub(client.last_seen_ms()) > timeout {
                if client.request_close(CloseReason::HeartbeatTimeout) {
                    Counters::add(&shared.counters.heartbeat_timeouts, 1);
                    tracing::debug!(client = %client.id, "heartbeat timeout");
                }
            } else {
                client.request_ping();
            }
        }
    }
}

pub(super) async fn housekeeping(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticks.tick() => shared.fanout.expire_history(Instant::now()),
        }
    }
}

/// Keeps client queues and history under `max_memory`: woken when the gauge crosses it,
/// evicts the clients holding the most until below nine tenths, then trims history.
pub(super) async fn memory_guard(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let memory = &shared.memory;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = memory.over_limit.notified() => {}
        }
        memory.clear_alarm();
        let target = memory.limit() / 10 * 9;
        let mut total = memory.total();
        if total <= memory.limit() {
            continue;
        }
        let mut clients: Vec<(usize, Arc<Client>)> = shared
            .fanout
            .clients()
            .into_iter()
            .map(|client| (client.queued_bytes(), client))
            .filter(|(bytes, _)| *bytes > 0)
            .collect();
        clients.sort_unstable_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
        for (bytes, client) in clients {
            if total <= target {
                break;
            }
            if client.request_close(CloseReason::SlowConsumer) {
                client.close_queue();
                Counters::add(&shared.counters.memory_evictions, 1);
                Counters::add(&shared.counters.evictions, 1);
                tracing::info!(client = %client.id, bytes, "evicting: server over max_memory");
            }
            total = total.saturating_sub(bytes);
        }
        if total > target {
            let history_target = target.saturating_sub(memory.queued());
            shared.fanout.trim_history(history_target);
        }
    }
}
