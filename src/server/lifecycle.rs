//! Starting a server (runtime, listener, broker, tasks) and stopping it.

use super::dispatch::{dispatch, Command};
use super::maintenance::{heartbeat, housekeeping, memory_guard};
use super::sigpipe::block_sigpipe;
use super::Server;
use crate::auth::AuthGate;
use crate::broker::SharedBroker;
use crate::client::CloseReason;
use crate::client::{ClientPolicy, QueueLimits};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::events::EventQueue;
use crate::fanout::{Fanout, FanoutLimits};
use crate::jobs::JobStore;
use crate::limits::SocketLimits;
use crate::memory::MemoryGauge;
use crate::shared::{random_seed, splitmix64, Shared};
use crate::stats::Counters;
use crate::transport::listen::{accept_loop, bind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot, watch, Notify};

pub(super) struct Inner {
    pub(super) shared: Arc<Shared>,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) runtime: Mutex<Option<Runtime>>,
    pub(super) shutdown: watch::Sender<bool>,
    /// 0.0.0.0:0 for an emitter (`listen: false`).
    pub(super) local_addr: SocketAddr,
    pub(super) handle: tokio::runtime::Handle,
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
        let node_id = format!("{:08x}", splitmix64(seed.rotate_left(17)) as u32);
        let connect = crate::broker::connect(
            config.broker.as_ref(),
            &config.history,
            &config.jobs,
            config.client_queue_bytes / 2,
            node_id,
            splitmix64(seed ^ 0x5eed),
        );
        // On a thread of its own: the host may call this from inside a runtime.
        let broker: Option<Arc<dyn SharedBroker>> = std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(connect))
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Panic,
                        "panic connecting to the broker",
                    ))
                })
        })?;
        let counters = Arc::new(Counters::default());
        let limits = FanoutLimits {
            history: config.history.clone(),
            max_channels: config.max_channels,
            max_subscriptions_per_client: config.max_subscriptions_per_client,
            pending_buffer: config.client_queue_size,
            max_snapshot_bytes: config.client_queue_bytes / 2,
        };
        let epoch_seed = format!("{:x}-", seed >> 32);
        let memory = Arc::new(MemoryGauge::new(config.max_memory));
        let backlog = Arc::<crate::backlog::BacklogGauge>::default();
        let client_policy = Arc::new(ClientPolicy {
            limits: QueueLimits {
                messages: config.client_queue_size,
                bytes: config.client_queue_bytes,
            },
            memory: Arc::clone(&memory),
            backlog: Arc::clone(&backlog),
        });
        let (commands, command_rx) = mpsc::channel::<Command>(config.publish_queue_size);
        let publish_queue = commands.downgrade();
        let shared = Arc::new(Shared {
            fanout: Fanout::new(
                limits,
                JobStore::new(config.jobs.clone()),
                epoch_seed,
                Arc::clone(&counters),
                Arc::clone(&memory),
                broker.clone(),
            ),
            memory,
            backlog,
            client_policy,
            broker: broker.clone(),
            presence: Default::default(),
            counters,
            events: EventQueue::new(config.event_queue_size, config.event_queue_bytes),
            auth,
            sockets: SocketLimits::new(config.max_connections, config.max_connections_per_ip),
            connection_closed: Notify::new(),
            latency: Default::default(),
            publish_queue_depth: Box::new(move || {
                publish_queue
                    .upgrade()
                    .map_or(0, |queue| queue.max_capacity() - queue.capacity())
            }),
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
        if let Some(broker) = broker {
            runtime.spawn(broker.run(Arc::clone(&shared), shutdown_rx.clone()));
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
        if shared.broker.is_none() {
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
}

impl Inner {
    /// Stops the tasks and the runtime, then the event thread. Blocking on the runtime
    /// is not allowed from inside any tokio runtime, so that part runs on a thread of its
    /// own; the events are closed on the caller's thread, which may be the event thread
    /// itself (a handler that stops its server).
    pub(super) fn stop_runtime(&self, runtime: Runtime, timeout: Duration) -> Result<()> {
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
        // The host's callbacks go now (the ones still running keep theirs until they
        // return), so what they own is released: a C host's drop callbacks run.
        self.shared.auth.close();
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
