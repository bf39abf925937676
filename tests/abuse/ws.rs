//! A well-behaved client (tokio-tungstenite), as users would connect.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the next read gave.
#[derive(Debug)]
pub enum Next {
    Json(Value),
    Closed(Option<u16>),
    Timeout,
}

/// Connects with a query string and reads the `connection` message; returns the client id.
pub async fn connect(port: u16, query: &str) -> Result<(Ws, String), String> {
    let url = format!("ws://127.0.0.1:{port}/ws{query}");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "WebSocket connect timed out".to_string())?
    .map_err(|e| format!("WebSocket connect: {e}"))?;
    match next(&mut ws, Duration::from_secs(10)).await {
        Next::Json(hello) if hello["type"] == "connection" => {
            let id = hello["clientId"].as_str().unwrap_or_default().to_string();
            Ok((ws, id))
        }
        other => Err(format!("expected the connection message, got {other:?}")),
    }
}

pub async fn send(ws: &mut Ws, json: &str) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(10), ws.send(Message::text(json)))
        .await
        .map_err(|_| "send timed out".to_string())?
        .map_err(|e| format!("send: {e}"))
}

/// The next text message as JSON, skipping pings and pongs.
pub async fn next(ws: &mut Ws, wait: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Next::Timeout,
            Ok(Some(Ok(Message::Text(t)))) => {
                return Next::Json(serde_json::from_str(&t).unwrap_or(Value::String(t.to_string())))
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Next::Closed(frame.map(|f| u16::from(f.code)))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return Next::Closed(None),
        }
    }
}

/// Sends a subscribe and returns the reply (`subscribed` or `error`).
pub async fn subscribe(ws: &mut Ws, target: &str) -> Result<Value, String> {
    send(ws, &format!(r#"{{"type":"subscribe",{target}}}"#)).await?;
    match next(ws, Duration::from_secs(10)).await {
        Next::Json(reply) => Ok(reply),
        other => Err(format!("no reply to subscribe {target}: {other:?}")),
    }
}
