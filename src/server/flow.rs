//! Flow control for the host: whether it should slow down, and a wait until the
//! clients have read what it published.

use super::dispatch::Command;
use super::Server;
use crate::error::{Error, ErrorKind, Result};
use crate::shared::Shared;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Longest pause between two looks at the backlog while waiting: bounds how late a
/// wait notices the clients have drained.
const MAX_POLL: Duration = Duration::from_millis(1);

impl Server {
    /// Whether the host should slow down: a healthy client holds more than half of its
    /// queue budget (count or bytes), or host calls fill more than half of the publish
    /// queue. Cheap (two counters): poll it after publishing, and call
    /// [`Server::wait_drained`] while it is true.
    pub fn backpressure(&self) -> bool {
        backpressure(&self.inner.shared)
    }

    /// Waits until every host call made before it has been fanned out and every healthy
    /// client's backlog (queued plus unwritten bytes and messages) is under a quarter of
    /// its budget. Fails with `Timeout` if that takes longer than `timeout`, and with
    /// `Stopped` if the server stops. A client being closed (evicted, or leaving)
    /// does not count; one that stopped reading counts until the write-stall rule
    /// evicts it (`heartbeat_timeout_ms`). Blocks the calling thread. A zero timeout
    /// only looks: `Ok` if no host call waits for the dispatcher and no healthy client
    /// is over its low watermark.
    pub fn wait_drained(&self, timeout: Duration) -> Result<()> {
        self.check_running()?;
        let deadline = Instant::now() + timeout;
        if timeout.is_zero() {
            if self.inner.shared.publish_queue_depth() > 0 {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "host calls are still waiting for the dispatcher",
                ));
            }
        } else {
            self.wait_dispatched(timeout)?;
        }
        let shared = &self.inner.shared;
        let mut pause = Duration::from_micros(50);
        loop {
            if shared.backlog.over_low() == 0 {
                return Ok(());
            }
            self.check_running()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} client(s) still over a quarter of their queue budget after {} ms",
                        shared.backlog.over_low(),
                        timeout.as_millis()
                    ),
                ));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Waits until the dispatcher has performed every host call made before this one.
    fn wait_dispatched(&self, timeout: Duration) -> Result<()> {
        let commands = self.inner.commands.clone();
        let (done, dispatched) = std::sync::mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let (barrier, passed) = oneshot::channel();
            let reached =
                commands.send(Command::Barrier(barrier)).await.is_ok() && passed.await.is_ok();
            let _ = done.send(reached);
        });
        match dispatched.recv_timeout(timeout) {
            Ok(true) => Ok(()),
            Ok(false) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::stopped())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "host calls still waiting for the dispatcher after {} ms",
                    timeout.as_millis()
                ),
            )),
        }
    }
}

/// See [`Server::backpressure`].
pub(crate) fn backpressure(shared: &Shared) -> bool {
    shared.backlog.over_high() > 0
        || shared.publish_queue_depth() * 2 > shared.config.publish_queue_size
}
