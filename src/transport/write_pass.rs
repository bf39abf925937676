//! Writing a batch of publications from the thread that fans them out.
//!
//! A connection's task writes its client's queue: a publisher queues and wakes it. For
//! one publication to many idle subscribers that wake-up costs more than the write
//! itself (a cross-thread wake, a task poll, a second trip through the queue). So while
//! the dispatcher handles a batch of host calls, the subscribers whose queues go from
//! empty to non-empty and whose connections are parked on a plain TCP socket are
//! collected instead of woken; after the batch each gets one non-blocking send of
//! everything queued for it, under its queue lock (which keeps its own task from writing
//! meanwhile), many sockets' sends in one system call where io_uring allows
//! (`send_batch`), from this thread or, for a pass over thousands of sockets, from as
//! many threads as the runtime has workers. What a socket does not take stays queued and
//! its task is woken to finish it, so a slow reader is handled exactly as before.

use crate::client::Client;
use crate::metrics::LatencyTally;
use crate::shared::Shared;
use crate::stats::Counters;
use crate::transport::send_batch;
use std::cell::RefCell;
use std::sync::Arc;

#[cfg(unix)]
pub(crate) use std::os::fd::RawFd;
#[cfg(not(unix))]
pub(crate) type RawFd = i32;

thread_local! {
    /// The pass running on this thread, if one is.
    static PASS: RefCell<Option<Pass>> = const { RefCell::new(None) };
}

struct Pass {
    /// Clients to write after the batch.
    collected: Vec<Arc<Client>>,
}

/// Collected clients per part of a pass at least, before a part is handed to another
/// thread: below this one thread writes them all sooner than a hand-over pays off.
const CLIENTS_PER_PART: usize = 1024;

/// Runs `batch` under a pass, then writes each client it collected once: a large pass in
/// parts on as many threads as the runtime has workers, this thread taking the first.
/// Reuses `buffer`'s allocation from one batch to the next.
pub(crate) fn run<R>(
    shared: &Arc<Shared>,
    buffer: &mut Vec<Arc<Client>>,
    batch: impl FnOnce() -> R,
) -> R {
    let pass = Pass {
        collected: std::mem::take(buffer),
    };
    PASS.with(|p| *p.borrow_mut() = Some(pass));
    // If the batch panics, the collected clients are woken, so nothing stays unwritten.
    let guard = WakeOnUnwind;
    let result = batch();
    std::mem::forget(guard);
    let Some(mut pass) = PASS.with(|p| p.borrow_mut().take()) else {
        return result;
    };
    let parts = (pass.collected.len() / CLIENTS_PER_PART)
        .min(shared.config.worker_thread_count())
        .max(1);
    if parts > 1 {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let part_len = pass.collected.len().div_ceil(parts);
            while pass.collected.len() > part_len {
                let part = pass.collected.split_off(pass.collected.len() - part_len);
                let shared = Arc::clone(shared);
                // A part never blocks (every send is non-blocking); it needs a thread of
                // its own only for the while this one writes the first part.
                runtime.spawn_blocking(move || write(&shared, part));
            }
        }
    }
    *buffer = write(shared, pass.collected);
    result
}

/// Writes each of `clients` once; returns the emptied vector for reuse.
fn write(shared: &Shared, mut clients: Vec<Arc<Client>>) -> Vec<Arc<Client>> {
    let mut part = Part {
        shared,
        clients: &clients,
        finished: false,
        sent: 0,
        freed: 0,
        latency: LatencyTally::default(),
    };
    send_batch::write(&clients, shared.config.io_uring, |client, written| {
        part.freed += written.freed;
        if written.messages > 0 {
            part.sent += u64::from(written.messages);
            Counters::add(&client.messages_sent, u64::from(written.messages));
            if let Some(stamp) = written.oldest_stamp {
                part.latency.observe(stamp);
            }
        }
    });
    part.finished = true;
    drop(part);
    clients.clear();
    clients
}

/// Takes `client`, whose connection is parked, into the pass running on this thread;
/// false when none runs (the caller wakes the connection instead).
pub(crate) fn defer(client: &Arc<Client>) -> bool {
    PASS.with(|p| match p.borrow_mut().as_mut() {
        Some(pass) => {
            pass.collected.push(Arc::clone(client));
            true
        }
        None => false,
    })
}

struct WakeOnUnwind;

impl Drop for WakeOnUnwind {
    fn drop(&mut self) {
        let Some(pass) = PASS.with(|p| p.borrow_mut().take()) else {
            return;
        };
        hand_back(&pass.collected);
    }
}

/// A part being written. Dropped when it is done, or when writing it panics: either way
/// what it wrote is counted once for all its clients (sent, out of the memory gauge,
/// latency), and on a panic every client of the part is woken to write for itself (a
/// client already written finds nothing to write).
struct Part<'a> {
    shared: &'a Shared,
    clients: &'a [Arc<Client>],
    finished: bool,
    sent: u64,
    freed: usize,
    latency: LatencyTally,
}

impl Drop for Part<'_> {
    fn drop(&mut self) {
        if !self.finished {
            hand_back(self.clients);
        }
        self.shared.memory.sub_queued(self.freed);
        if self.sent > 0 {
            Counters::add(&self.shared.counters.messages_sent, self.sent);
            self.shared.latency.add(&mut self.latency);
        }
    }
}

/// Gives `clients` back to their connections, to write for themselves: what a pass
/// that failed part-way collected.
fn hand_back(clients: &[Arc<Client>]) {
    for client in clients {
        client.unpark_writer();
        client.wake();
    }
}
