//! The server a host embeds: its API. It owns a tokio runtime, the listener, a
//! dispatcher that performs host calls in order, and the periodic tasks
//! (`lifecycle`, `dispatch`, `maintenance`).

mod dispatch;
mod flow;
mod lifecycle;
mod maintenance;
mod sigpipe;

pub(crate) use flow::backpressure;

use crate::auth::{AuthDecision, Authorizer};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, EventHandler};
use crate::fanout::HostPublication;
use crate::jobs::JobUpdate;
use crate::protocol::{self, AiEvent, OpenObject};
use crate::stats::Counters;
use dispatch::Command;
use lifecycle::Inner;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A running Herald server. Cheap to clone; every clone refers to the same server.
/// Dropping the last clone without [`Server::stop`] stops it with a short timeout.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    /// The bound port (useful with `port: 0`).
    pub fn port(&self) -> u16 {
        self.inner.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.shared.is_stopping()
    }

    fn check_running(&self) -> Result<()> {
        if self.is_stopped() {
            Err(Error::stopped())
        } else {
            Ok(())
        }
    }

    fn submit(&self, command: Command) -> Result<()> {
        self.inner.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => self.queue_full(),
            mpsc::error::TrySendError::Closed(_) => Error::stopped(),
        })
    }

    fn queue_full(&self) -> Error {
        Counters::add(&self.inner.shared.counters.publish_queue_full, 1);
        Error::new(
            ErrorKind::QueueFull,
            format!(
                "publish queue is full ({} calls pending); the server cannot keep up",
                self.inner.shared.config.publish_queue_size
            ),
        )
    }

    fn notify(&self, event: AiEvent, session_id: &str, payload_json: &str) -> Result<()> {
        self.check_running()?;
        protocol::check_name("session id", session_id)?;
        let message = protocol::ai_notification(event, session_id, payload_json)?;
        let job = JobUpdate::parse(event, payload_json)?;
        self.submit_publish(
            protocol::session_channel(session_id),
            message,
            Some((session_id.to_string(), job)),
        )
    }

    /// Submits a publication holding its channel's place, so that a full channel table
    /// is an error here and never a publication dropped at dispatch.
    fn submit_publish(
        &self,
        channel: String,
        message: OpenObject,
        job: Option<(String, JobUpdate)>,
    ) -> Result<()> {
        if let Some(broker) = &self.inner.shared.broker {
            let broker = Arc::clone(broker);
            let job = job.map(|(_, update)| update);
            self.through_broker(async move {
                broker.publish(&channel, message.text(), job.as_ref()).await
            })?;
            Counters::add(&self.inner.shared.counters.publications, 1);
            return Ok(());
        }
        let fanout = &self.inner.shared.fanout;
        let hold = fanout.hold_channel(&channel)?;
        self.inner
            .commands
            .try_send(Command::Publish {
                channel,
                publication: HostPublication { message, hold, job },
            })
            .map_err(|e| {
                let (command, error) = match e {
                    mpsc::error::TrySendError::Full(c) => (c, self.queue_full()),
                    mpsc::error::TrySendError::Closed(c) => (c, Error::stopped()),
                };
                if let Command::Publish {
                    channel,
                    publication,
                } = command
                {
                    fanout.release_hold(&channel, publication.hold);
                }
                error
            })
    }

    /// Runs a broker call on the runtime and waits for it: the host learns whether Redis
    /// took it. Fails at once while the broker is disconnected, and after the broker
    /// timeout at most.
    fn through_broker<T: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let broker = self
            .inner
            .shared
            .broker
            .as_ref()
            .expect("a broker call needs a broker");
        let kind = broker.kind();
        if !broker.is_connected() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("{kind} broker: not connected (reconnecting)"),
            ));
        }
        let timeout = broker.timeout();
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{} broker: no answer within {} ms; the call may or may not have taken effect",
                        kind,
                        timeout.as_millis()
                    ),
                )),
            };
            let _ = done.send(result);
        });
        answer
            .recv_timeout(timeout + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(Error::stopped()))
    }

    /// An AI-task notification of `kind` to the subscribers of a session, with
    /// `payload_json` (a JSON object) under the kind's payload key (`task`, `progress`,
    /// `result`, `error`, `delta`, `cancelled`).
    pub fn notify_ai(&self, kind: AiEvent, session_id: &str, payload_json: &str) -> Result<()> {
        self.notify(kind, session_id, payload_json)
    }

    /// `ai_start` to the subscribers of a session; `task_json` is a JSON object.
    pub fn notify_ai_start(&self, session_id: &str, task_json: &str) -> Result<()> {
        self.notify(AiEvent::Start, session_id, task_json)
    }

    /// `ai_progress`; `progress_json` is a JSON object.
    pub fn notify_ai_progress(&self, session_id: &str, progress_json: &str) -> Result<()> {
        self.notify(AiEvent::Progress, session_id, progress_json)
    }

    /// `ai_complete`; `result_json` is a JSON object.
    pub fn notify_ai_complete(&self, session_id: &str, result_json: &str) -> Result<()> {
        self.notify(AiEvent::Complete, session_id, result_json)
    }

    /// `ai_error`; `error_json` is a JSON object.
    pub fn notify_ai_error(&self, session_id: &str, error_json: &str) -> Result<()> {
        self.notify(AiEvent::Error, session_id, error_json)
    }

    /// `ai_delta`: a piece of a job's token stream, `{"jobId":…,"text":"…"}` (`text`
    /// required). Subscribers that fall behind get a job's consecutive deltas merged.
    pub fn notify_ai_delta(&self, session_id: &str, delta_json: &str) -> Result<()> {
        self.notify(AiEvent::Delta, session_id, delta_json)
    }

    /// `ai_cancelled`: ends a job as cancelled (e.g. after a `cancel_requested` event).
    pub fn notify_ai_cancelled(&self, session_id: &str, cancelled_json: &str) -> Result<()> {
        self.notify(AiEvent::Cancelled, session_id, cancelled_json)
    }

    /// The state of a session's jobs, as `GET /api/jobs/{sessionId}` answers it:
    /// `{"sessionId","seq","epoch","jobs":[…]}`, the jobs as of `seq`.
    pub fn jobs_json(&self, session_id: &str) -> Result<String> {
        self.check_running()?;
        protocol::check_name("session id", session_id)?;
        if let Some(broker) = &self.inner.shared.broker {
            let (broker, session) = (Arc::clone(broker), session_id.to_string());
            return self.through_broker(async move { broker.jobs_json(&session).await });
        }
        Ok(self.inner.shared.fanout.jobs_json(session_id))
    }

    /// A JSON object to every connected client.
    pub fn broadcast(&self, message_json: &str) -> Result<()> {
        self.check_running()?;
        let message = protocol::host_message(message_json, None)?.close();
        if let Some(broker) = &self.inner.shared.broker {
            // Every node delivers it, this one included, when Redis hands it back.
            let broker = Arc::clone(broker);
            return self.through_broker(async move { broker.broadcast(message.as_str()).await });
        }
        self.submit(Command::Broadcast(message))
    }

    /// A JSON object to every client bound to `user_id` (channel `user:<id>`).
    pub fn broadcast_to_user(&self, user_id: &str, message_json: &str) -> Result<()> {
        self.check_running()?;
        protocol::check_name("user id", user_id)?;
        self.publish_checked(protocol::user_channel(user_id), message_json)
    }

    /// A JSON object to the subscribers of `channel`.
    pub fn publish(&self, channel: &str, message_json: &str) -> Result<()> {
        self.check_running()?;
        protocol::check_name("channel", channel)?;
        self.publish_checked(channel.to_string(), message_json)
    }

    fn publish_checked(&self, channel: String, message_json: &str) -> Result<()> {
        let message = protocol::host_message(message_json, Some(&channel))?;
        self.submit_publish(channel, message, None)
    }

    /// A JSON object to one client; fails with `UnknownClient` if it is not connected.
    pub fn send(&self, client_id: &str, message_json: &str) -> Result<()> {
        self.check_running()?;
        let message = protocol::host_message(message_json, None)?.close();
        let unknown = || {
            Error::new(
                ErrorKind::UnknownClient,
                format!("no connected client has id {client_id:?}"),
            )
        };
        if self.inner.shared.fanout.client(client_id).is_none() {
            let Some(broker) = &self.inner.shared.broker else {
                return Err(unknown());
            };
            // A client of another node: its id starts with that node's id.
            let Some((node, _)) = client_id.split_once('-') else {
                return Err(unknown());
            };
            if node == broker.node_id() {
                return Err(unknown());
            }
            let (broker, node, id) = (Arc::clone(broker), node.to_string(), client_id.to_string());
            let listened = self
                .through_broker(async move { broker.send(&node, &id, message.as_str()).await })?;
            return if listened { Ok(()) } else { Err(unknown()) };
        }
        self.submit(Command::Send {
            client_id: client_id.to_string(),
            message,
        })
    }

    /// Counters, clients and channels as a JSON object (the same as `/api/ws/stats`).
    pub fn stats_json(&self) -> Result<String> {
        self.check_running()?;
        Ok(self.inner.shared.stats_json())
    }

    /// The publications a channel still holds in history, oldest first, as a JSON array.
    pub fn history_json(&self, channel: &str) -> Result<String> {
        self.check_running()?;
        protocol::check_name("channel", channel)?;
        if let Some(broker) = &self.inner.shared.broker {
            let (broker, channel) = (Arc::clone(broker), channel.to_string());
            let frames = self.through_broker(async move { broker.history(&channel).await })?;
            let texts: Vec<&str> = frames.iter().map(|f| f.as_str()).collect();
            return Ok(format!("[{}]", texts.join(",")));
        }
        Ok(self.inner.shared.fanout.history_json(channel))
    }

    /// Who is in a channel, as a JSON object: `{"channel", "members": [{"clientId",
    /// "userId", "status"}], "total", "truncated"}`, at most `presence.max_members`
    /// listed. With the Redis broker, every node's members.
    pub fn presence_json(&self, channel: &str) -> Result<String> {
        self.check_running()?;
        protocol::check_name("channel", channel)?;
        let shared = Arc::clone(&self.inner.shared);
        let name = channel.to_string();
        let listing = if shared.broker.is_some() {
            self.through_broker(async move { crate::presence::list(&shared, &name).await })?
        } else {
            crate::presence::list_local(&shared, &name)?
        };
        Ok(listing.host_json(channel))
    }

    /// Installs (or with `None` removes) the event handler. It runs on a dedicated
    /// Herald thread, one event at a time, never on a network thread. The handler is
    /// dropped after its last call: when it is replaced or removed, or when the server
    /// stops (also if this call fails).
    pub fn set_event_handler(&self, handler: Option<EventHandler>) -> Result<()> {
        self.check_running()?;
        self.inner.shared.events.set_handler(handler);
        Ok(())
    }

    /// Installs (or with `None` removes) the host authorizer. It is asked on every
    /// connect and on subscribes the token and config do not already allow, on a Herald
    /// worker thread that is never an I/O thread; answer with [`Server::authorize_reply`]
    /// within `auth.authorizer_timeout_ms`, from the callback or later from any thread.
    /// The authorizer is dropped after its last call: when it is replaced or removed, or
    /// when the server stops (also if this call fails).
    pub fn set_authorizer(&self, authorizer: Option<Authorizer>) -> Result<()> {
        self.check_running()?;
        self.inner.shared.auth.set_authorizer(authorizer);
        Ok(())
    }

    /// Answers a pending authorization request.
    pub fn authorize_reply(&self, request_id: u64, decision: AuthDecision) -> Result<()> {
        self.check_running()?;
        self.inner.shared.auth.reply(request_id, decision)
    }

    /// Takes the next event, waiting up to `timeout`; `Ok(None)` if none came.
    pub fn next_event(&self, timeout: Duration) -> Result<Option<Event>> {
        self.inner
            .shared
            .events
            .next(timeout)
            .map_err(|()| Error::stopped())
    }

    /// Stops gracefully: host calls already made are dispatched, every client receives
    /// what was queued for it and then close code 1001. Connections still open at the
    /// timeout are dropped and `Timeout` is returned. A second call returns `Stopped`.
    pub fn stop(&self, timeout: Duration) -> Result<()> {
        let runtime = self
            .inner
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(runtime) = runtime else {
            return Err(Error::stopped());
        };
        self.inner.stop_runtime(runtime, timeout)
    }
}
