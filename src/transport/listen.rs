//! The listening socket: binding it, and accepting connections (within the socket
//! limits, through TLS when configured) into the HTTP/WebSocket server.

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::Refusal;
use crate::shared::Shared;
use crate::stats::Counters;
use crate::transport::connection;
use crate::transport::http::serve_socket;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

pub(crate) fn bind(config: &Config) -> Result<TcpListener> {
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

pub(crate) async fn accept_loop(
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
            #[cfg(unix)]
            let socket = Some(std::os::fd::AsRawFd::as_raw_fd(&tcp));
            #[cfg(not(unix))]
            let socket = None;
            let http = serve_socket(shared, tcp, remote, socket, slot);
            tokio::spawn(connection::serve::<TcpStream>(http));
            continue;
        };
        let handshake = tls.accept(tcp);
        let http = async move {
            let timeout = Duration::from_millis(shared.config.handshake_timeout_ms);
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(stream)) => serve_socket(shared, stream, remote, None, slot).await,
                Ok(Err(e)) => {
                    Counters::add(&shared.counters.tls_failures, 1);
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    Counters::add(&shared.counters.handshake_timeouts, 1);
                    None
                }
            }
        };
        tokio::spawn(connection::serve::<TlsStream<TcpStream>>(http));
    }
}
