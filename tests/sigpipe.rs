//! A host that keeps SIGPIPE's default action (a C or Go program) must survive clients
//! that vanish while Herald writes to them. Rust test binaries ignore SIGPIPE, so this
//! test restores the default first: a SIGPIPE raised by a write would kill the process.
mod common;
use common::*;
use std::time::Duration;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_stream_do_not_kill_a_host_that_keeps_sigpipe() {
    // SAFETY: resetting a signal's disposition; no handler runs Rust code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    const VANISHING: usize = 20;
    let server = start(r#"{"client_queue_size":100000}"#);
    let url = format!("ws://127.0.0.1:{}/ws?sessionId=gone", server.port());
    for _ in 0..VANISHING {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        // Closed at once with a reset, and nothing read: the server's writes fail.
        let tcp: &TcpStream = ws.get_ref().get_ref_tcp();
        tcp.set_zero_linger().unwrap();
        drop(ws);
    }
    let pad = "x".repeat(1024);
    for n in 0..3000 {
        let sent = server.notify_ai_progress("gone", &format!(r#"{{"n":{n},"pad":"{pad}"}}"#));
        if sent.is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await; // publish queue full
        }
    }
    wait_stats(&server, |s| s["activeConnections"] == 0).await;
    // Still alive and serving.
    let mut c = connect(&server, "?sessionId=after").await;
    server.notify_ai_progress("after", r#"{"n":1}"#).unwrap();
    assert_eq!(next_json(&mut c.ws).await["type"], "ai_progress");
}

trait TcpOf {
    fn get_ref_tcp(&self) -> &TcpStream;
}

impl TcpOf for tokio_tungstenite::MaybeTlsStream<TcpStream> {
    fn get_ref_tcp(&self) -> &TcpStream {
        match self {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!("plain ws:// only"),
        }
    }
}
