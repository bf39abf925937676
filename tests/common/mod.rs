//! Shared helpers for integration tests: real servers on port 0, real WebSocket clients.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use herald::{Config, Server};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single wait in a test; generous because CI machines are noisy.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn start(extra: &str) -> Server {
    let mut json: Value = serde_json::from_str(r#"{"port":0}"#).unwrap();
    let extra: Value = serde_json::from_str(if extra.is_empty() { "{}" } else { extra }).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        json[k] = v.clone();
    }
    Server::start(Config::from_json(&json.to_string()).unwrap()).unwrap()
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub id: String,
}

/// Connects with a query string and reads the `connection` message.
pub async fn connect(server: &Server, query: &str) -> Client {
    let url = format!("ws://127.0.0.1:{}/ws{}", server.port(), query);
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "connection", "{hello}");
    assert_eq!(hello["status"], "connected");
    let id = hello["clientId"].as_str().unwrap().to_string();
    Client { ws, id }
}

pub async fn send(ws: &mut Ws, json: &str) {
    ws.send(Message::text(json)).await.unwrap();
}

/// The next text frame as JSON; fails on close or timeout.
pub async fn next_json<S>(ws: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a message");
        match msg {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Reads until the connection closes; returns the close code (None if no close frame).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for close")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Subscribes and waits for the reply.
pub async fn subscribe(ws: &mut Ws, key: &str, name: &str) -> Value {
    send(
        ws,
        &serde_json::json!({"type":"subscribe", key: name}).to_string(),
    )
    .await;
    let reply = next_json(ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    reply
}

/// Polls stats until `pred` holds.
pub async fn wait_stats(server: &Server, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats: Value = serde_json::from_str(&server.stats_json().unwrap()).unwrap();
        if pred(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats never matched: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a blocking server call off the async test's thread (stop blocks).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// One HTTP/1.1 request over a raw socket, with extra header lines ("Name: value\r\n"
/// each); the whole reply as it came.
pub async fn http_raw(port: u16, method: &str, path: &str, extra_headers: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra_headers}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut raw))
        .await
        .expect("no reply in time")
        .unwrap();
    raw
}

pub struct HttpReply {
    pub status: u16,
    /// Status and header lines, lower-cased.
    pub headers: String,
    pub body: String,
}

/// [`http_raw`], split into status, headers and body.
pub async fn http(port: u16, method: &str, path: &str, extra_headers: &str) -> HttpReply {
    let raw = http_raw(port, method, path, extra_headers).await;
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full HTTP reply");
    HttpReply {
        status: head[9..12].parse().unwrap(),
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// The port in the `herald` binary's first stdout line (`listening on ADDR:PORT`), if it
/// printed one before exiting.
pub fn herald_listening_port(stdout: std::process::ChildStdout) -> Option<u16> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).ok()?;
    line.trim().rsplit(':').next().and_then(|p| p.parse().ok())
}

/// Raises this process's open-file limit to at least `needed` (within the hard limit);
/// fails the test with the limits when the hard limit is lower.
pub fn raise_fd_limit(needed: usize) {
    // SAFETY: getrlimit/setrlimit with a valid, initialized struct.
    let limit = unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if (limit.rlim_cur as usize) < needed {
            limit.rlim_cur = limit.rlim_max.min(needed as libc::rlim_t);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        limit
    };
    assert!(
        limit.rlim_cur as usize >= needed,
        "this test needs {needed} open files; the hard limit is {}",
        limit.rlim_max
    );
}
