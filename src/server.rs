//! The server a host embeds: it owns a tokio runtime, the listener, a dispatcher
//! that performs host calls in order, and the heartbeat and history housekeeping.

use crate::auth::{AuthDecision, AuthGate, Authorizer};
use crate::broker::redis::RedisBroker;
use crate::broker::Watcher;
use crate::client::{Client, CloseReason, QueueLimits};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, EventHandler, EventQueue};
use crate::fanout::{ChannelHold, Fanout, FanoutLimits};
use crate::limits::{Refusal, SocketLimits};
use crate::memory::MemoryGauge;
use crate::protocol::{self, AiEvent, OpenObject};
use crate::stats::{BrokerStats, ClientSnapshot, Counters, Gauges, Snapshot};
use crate::transport::wire::Frame;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot, watch, Notify};

/// How often expired history is dropped and idle channels reclaimed.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Host calls handled per dispatcher wake-up.
const DISPATCH_BATCH: usize = 256;

/// A host call, performed by the dispatcher in the order the host made it.
enum Command {
    Publish {
        channel: String,
        message: OpenObject,
        hold: ChannelHold,
    },
    Broadcast(Frame),
    Send {
        client_id: String,
        message: Frame,
    },
    /// Answered once everything queued before it has been dispatched.
    Barrier(oneshot::Sender<()>),
}

/// State shared by every task of one server.
pub(crate) struct Shared {
    pub config: Config,
    pub fanout: Fanout,
    pub counters: Arc<Counters>,
    pub events: Arc<EventQueue>,
    pub auth: AuthGate,
    pub sockets: Arc<SocketLimits>,
    pub connection_closed: Notify,
    pub memory: Arc<MemoryGauge>,
    /// The Redis broker; `None` with the in-memory one.
    pub broker: Option<Arc<RedisBroker>>,
    /// Who is in each channel on this node.
    pub presence: crate::presence::Presence,
    pub latency: crate::metrics::LatencyHistogram,
    /// The host calls' queue, to read its depth (weak: it does not keep it open).
    publish_queue: mpsc::WeakSender<Command>,
    started: Instant,
    stopping: AtomicBool,
    /// Set by a stop once the host calls made before it are dispatched: from then on
    /// every client, new ones included, is closed after its queue is written.
    closing_clients: AtomicBool,
    next_client: AtomicU64,
    id_seed: u64,
    port: u16,
}

impl Shared {
    /// Milliseconds since the server started: a cheap monotonic clock for liveness.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Host calls waiting for the dispatcher.
    pub fn publish_queue_depth(&self) -> usize {
        self.publish_queue
            .upgrade()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn is_closing_clients(&self) -> bool {
        self.closing_clients.load(Ordering::SeqCst)
    }

    pub fn new_client(
        &self,
        user_id: Option<&str>,
        session_id: Option<&str>,
        grants: Vec<String>,
        remote: SocketAddr,
    ) -> Arc<Client> {
        let key = self.next_client.fetch_add(1, Ordering::Relaxed);
        // A bijective mix of a random seed and a counter: unique and hard to guess.
        let id = match &self.broker {
            // Prefixed with the node, so a host on any node can route a `send` to it.
            Some(broker) => format!(
                "{}-{:016x}",
                broker.node_id(),
                splitmix64(self.id_seed ^ key)
            ),
            None => format!("{:016x}", splitmix64(self.id_seed ^ key)),
        };
        Client::new(
            key,
            id.into(),
            user_id.map(Arc::from),
            session_id.map(Arc::from),
            grants,
            remote,
            QueueLimits {
                messages: self.config.client_queue_size,
                bytes: self.config.client_queue_bytes,
            },
            Arc::clone(&self.memory),
            self.now_ms(),
        )
    }

    pub fn stats_json(&self) -> String {
        let now = self.now_ms();
        let mut clients = self.fanout.clients();
        clients.sort_by_key(|c| c.key);
        let listed: Vec<_> = clients
            .iter()
            .take(self.config.stats_client_limit)
            .map(|client| ClientSnapshot {
                id: &client.id,
                user_id: client.user_id.as_deref(),
                session_id: client.session_id.as_deref(),
                is_alive: client.is_alive(),
                state: client.state(),
                remote_addr: client.remote_addr.to_string(),
                subscriptions: client.subscription_count(),
                queued: client.queued(),
                queued_bytes: client.queued_bytes(),
                messages_sent: Counters::get(&client.messages_sent),
                idle_ms: now.saturating_sub(client.last_seen_ms()),
            })
            .collect();
        let snapshot = Snapshot {
            counters: &self.counters,
            gauges: Gauges::read(self),
            clients_listed: listed.len(),
            clients: listed,
            port: self.port,
            path: &self.config.path,
            version: crate::version(),
            broker: match &self.broker {
                Some(broker) => BrokerStats::Redis(broker.health()),
                None => BrokerStats::Memory { kind: "memory" },
            },
        };
        serde_json::to_string(&snapshot).expect("stats always serialize")
    }
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// Herald's threads write to sockets whose peer may be gone, and such a write raises
/// SIGPIPE, whose default action ends the process. Rust programs ignore it, but a C host
/// may not, and Go ignores it only on its own threads. Blocked on Herald's threads, the
/// signal stays pending there and the write fails with EPIPE, as it already reports;
/// the host's own signal handling is left alone.
fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: changes the calling thread's signal mask only; `set` is initialized by
    // sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A running Herald server. Cheap to clone; every clone refers to the same server.
/// Dropping the last clone without [`Server::stop`] stops it with a short timeout.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    runtime: Mutex<Option<Runtime>>,
    shutdown: watch::Sender<bool>,
    /// 0.0.0.0:0 for an emitter (`listen: false`).
    local_addr: SocketAddr,
    handle: tokio::runtime::Handle,
}

impl Server {
    /// Starts a server; returns once its socket is bound and accepting.
    pub fn start(config: Config) -> Result<Server> {
        crate::logging::init();
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_thread_count())
            .thread_name("herald-rt")
            .on_thread_start(block_sigpipe)
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the runtime: {e}")))?;
        let auth = AuthGate::new(&config.auth)?;
        let tls = config
            .tls
            .as_ref()
            .map(crate::transport::tls::acceptor)
            .transpose()?;
        let listener = if config.listen {
            let _guard = runtime.enter();
            Some(bind(&config)?)
        } else {
            None
        };
        let local_addr = match &listener {
            Some(listener) => listener
                .local_addr()
                .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let seed = random_seed();
        let broker = match config.redis() {
            Some(redis) => {
                let node_id = format!("{:08x}", splitmix64(seed.rotate_left(17)) as u32);
                let connect = RedisBroker::connect(
                    redis,
                    &config.history,
                    node_id,
                    splitmix64(seed ^ 0x5eed),
                );
                // On a thread of its own: the host may call this from inside a runtime.
                let connected = std::thread::scope(|scope| {
                    scope
                        .spawn(|| runtime.block_on(connect))
                        .join()
                        .unwrap_or_else(|_| {
                            Err(Error::new(ErrorKind::Panic, "panic connecting to Redis"))
                        })
                });
                Some(connected?)
            }
            None => None,
        };
        let counters = Arc::new(Counters::default());
        let limits = FanoutLimits {
            history: config.history.clone(),
            max_channels: config.max_channels,
            max_subscriptions_per_client: config.max_subscriptions_per_client,
            pending_buffer: config.client_queue_size,
        };
        let epoch_seed = format!("{:x}-", seed >> 32);
        let memory = Arc::new(MemoryGauge::new(config.max_memory));
        let (commands, command_rx) = mpsc::channel(config.publish_queue_size);
        let shared = Arc::new(Shared {
            fanout: Fanout::new(
                limits,
                epoch_seed,
                Arc::clone(&counters),
                Arc::clone(&memory),
                broker
                    .as_ref()
                    .map(|(b, _)| Arc::clone(b) as Arc<dyn Watcher>),
            ),
            memory,
            broker: broker.as_ref().map(|(b, _)| Arc::clone(b)),
            presence: Default::default(),
            counters,
            events: EventQueue::new(config.event_queue_size, config.event_queue_bytes),
            auth,
            sockets: SocketLimits::new(config.max_connections, config.max_connections_per_ip),
            connection_closed: Notify::new(),
            latency: Default::default(),
            publish_queue: commands.downgrade(),
            started: Instant::now(),
            stopping: AtomicBool::new(false),
            closing_clients: AtomicBool::new(false),
            next_client: AtomicU64::new(1),
            id_seed: seed,
            port: local_addr.port(),
            config,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        if let Some(listener) = listener {
            runtime.spawn(accept_loop(
                Arc::clone(&shared),
                listener,
                tls,
                shutdown_rx.clone(),
            ));
        }
        if let Some((broker, pubsub)) = broker {
            runtime.spawn(broker.run(Arc::clone(&shared), pubsub, shutdown_rx.clone()));
            if shared.config.listen && shared.config.presence.enabled {
                runtime.spawn(crate::presence::keeper(
                    Arc::clone(&shared),
                    shutdown_rx.clone(),
                ));
            }
        }
        runtime.spawn(dispatch(Arc::clone(&shared), command_rx));
        runtime.spawn(heartbeat(Arc::clone(&shared), shutdown_rx.clone()));
        runtime.spawn(memory_guard(Arc::clone(&shared), shutdown_rx.clone()));
        if shared.config.history.size > 0 && shared.broker.is_none() {
            runtime.spawn(housekeeping(Arc::clone(&shared), shutdown_rx));
        }
        tracing::info!(%local_addr, path = %shared.config.path, "herald started");
        let handle = runtime.handle().clone();
        Ok(Server {
            inner: Arc::new(Inner {
                shared,
                handle,
                commands,
                runtime: Mutex::new(Some(runtime)),
                shutdown,
                local_addr,
            }),
        })
    }

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
        self.submit_publish(protocol::session_channel(session_id), message)
    }

    /// Submits a publication holding its channel's place, so that a full channel table
    /// is an error here and never a publication dropped at dispatch.
    fn submit_publish(&self, channel: String, message: OpenObject) -> Result<()> {
        if let Some(broker) = &self.inner.shared.broker {
            let broker = Arc::clone(broker);
            self.through_broker(async move { broker.publish(&channel, message.text()).await })?;
            Counters::add(&self.inner.shared.counters.publications, 1);
            return Ok(());
        }
        let fanout = &self.inner.shared.fanout;
        let hold = fanout.hold_channel(&channel)?;
        self.inner
            .commands
            .try_send(Command::Publish {
                channel,
                message,
                hold,
            })
            .map_err(|e| {
                let (command, error) = match e {
                    mpsc::error::TrySendError::Full(c) => (c, self.queue_full()),
                    mpsc::error::TrySendError::Closed(c) => (c, Error::stopped()),
                };
                if let Command::Publish { channel, hold, .. } = command {
                    fanout.release_hold(&channel, hold);
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
        if !broker.is_connected() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "redis broker: not connected to Redis (reconnecting)",
            ));
        }
        let timeout = Duration::from_millis(
            self.inner
                .shared
                .config
                .redis()
                .map_or(2000, |r| r.timeout_ms),
        );
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "redis broker: no answer within {} ms; the call may or may not have taken effect",
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
        self.submit_publish(channel, message)
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
    /// Herald thread, one event at a time, never on a network thread.
    pub fn set_event_handler(&self, handler: Option<EventHandler>) -> Result<()> {
        self.check_running()?;
        self.inner.shared.events.set_handler(handler);
        Ok(())
    }

    /// Installs (or with `None` removes) the host authorizer. It is asked on every
    /// connect and on subscribes the token and config do not already allow, on a Herald
    /// worker thread that is never an I/O thread; answer with [`Server::authorize_reply`]
    /// within `auth.authorizer_timeout_ms`, from the callback or later from any thread.
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

impl Inner {
    /// Stops the tasks and the runtime, then the event thread. Blocking on the runtime
    /// is not allowed from inside any tokio runtime, so that part runs on a thread of its
    /// own; the events are closed on the caller's thread, which may be the event thread
    /// itself (a handler that stops its server).
    fn stop_runtime(&self, runtime: Runtime, timeout: Duration) -> Result<()> {
        let from_authorizer = crate::auth::on_authorizer_thread();
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| self.shutdown(runtime, timeout, from_authorizer))
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Panic,
                        "panic while stopping the server",
                    ))
                })
        });
        self.shared.events.close();
        result
    }

    fn shutdown(&self, runtime: Runtime, timeout: Duration, from_authorizer: bool) -> Result<()> {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        let graceful = runtime.block_on(async {
            tokio::time::timeout(timeout, async {
                let (done, dispatched) = oneshot::channel();
                if self.commands.send(Command::Barrier(done)).await.is_ok() {
                    let _ = dispatched.await;
                }
                shared.closing_clients.store(true, Ordering::SeqCst);
                for client in shared.fanout.clients() {
                    client.request_close(CloseReason::Shutdown);
                }
                loop {
                    let closed = shared.connection_closed.notified();
                    if Counters::get(&shared.counters.active_connections) == 0 {
                        break;
                    }
                    closed.await;
                }
                // Host authorizer calls still running get to return, except the one
                // that is making this very stop.
                shared
                    .auth
                    .in_flight
                    .settle(usize::from(from_authorizer))
                    .await;
            })
            .await
            .is_ok()
        });
        if from_authorizer {
            // This thread belongs to the runtime's blocking pool: it cannot wait for it.
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(Duration::from_millis(100));
        }
        tracing::info!(graceful, "herald stopped");
        if graceful {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Timeout,
                "stop timed out; remaining connections were dropped",
            ))
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let runtime = self
            .runtime
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(runtime) = runtime {
            let _ = self.stop_runtime(runtime, Duration::from_secs(1));
        }
    }
}

fn bind(config: &Config) -> Result<TcpListener> {
    let host = if config.host == "localhost" {
        "127.0.0.1"
    } else {
        &config.host
    };
    let addr: SocketAddr = format!("{host}:{}", config.port)
        .parse()
        .or_else(|_| format!("[{host}]:{}", config.port).parse())
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("invalid host {host:?}: {e}"),
            )
        })?;
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("cannot listen on {addr}: {e}"));
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    socket.set_reuseaddr(true).map_err(io)?;
    socket.bind(addr).map_err(io)?;
    socket.listen(4096).map_err(io)
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match shared.sockets.acquire(remote.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                let c = &shared.counters;
                let counter = match refusal {
                    Refusal::PerIp => &c.rejected_per_ip,
                    Refusal::Total => &c.rejected_connections,
                };
                Counters::add(counter, 1);
                tracing::debug!(%remote, ?refusal, "refusing connection: limit reached");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        if shared.config.socket_send_buffer > 0 {
            let _ =
                socket2::SockRef::from(&tcp).set_send_buffer_size(shared.config.socket_send_buffer);
        }
        let shared = Arc::clone(&shared);
        let Some(tls) = &tls else {
            tokio::spawn(crate::transport::http::serve_socket(
                shared, tcp, remote, slot,
            ));
            continue;
        };
        let handshake = tls.accept(tcp);
        tokio::spawn(async move {
            let timeout = Duration::from_millis(shared.config.handshake_timeout_ms);
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(stream)) => {
                    crate::transport::http::serve_socket(shared, stream, remote, slot).await
                }
                Ok(Err(e)) => {
                    Counters::add(&shared.counters.tls_failures, 1);
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                }
                Err(_) => Counters::add(&shared.counters.handshake_timeouts, 1),
            }
        });
    }
}

async fn dispatch(shared: Arc<Shared>, mut commands: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(DISPATCH_BATCH);
    while commands.recv_many(&mut batch, DISPATCH_BATCH).await > 0 {
        for command in batch.drain(..) {
            match command {
                Command::Publish {
                    channel,
                    message,
                    hold,
                } => shared.fanout.publish(&channel, message, hold),
                Command::Broadcast(message) => shared.fanout.broadcast(&message),
                Command::Send { client_id, message } => {
                    shared.fanout.send(&client_id, message);
                }
                Command::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}

async fn heartbeat(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
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

async fn housekeeping(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
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
async fn memory_guard(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
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
