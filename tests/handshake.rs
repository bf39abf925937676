//! The WebSocket handshake refuses ambiguous requests, over a real socket: a header that
//! RFC 6455 allows once, sent twice, is a 400, never an upgrade.
mod common;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const OTHER_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEC==";

/// The status of a raw upgrade request made of these header lines.
async fn handshake_status(port: u16, header_lines: &[String]) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut request =
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".to_string();
    for line in header_lines {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut status_line = [0u8; 12];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut status_line))
        .await
        .expect("no reply in time")
        .unwrap();
    std::str::from_utf8(&status_line[9..12])
        .unwrap()
        .parse()
        .unwrap()
}

fn key(value: &str) -> String {
    format!("Sec-WebSocket-Key: {value}")
}

fn version(value: &str) -> String {
    format!("Sec-WebSocket-Version: {value}")
}

#[tokio::test]
async fn repeated_key_or_version_headers_are_refused_with_400() {
    let server = start("");
    let port = server.port();
    assert_eq!(
        handshake_status(port, &[version("13"), key(KEY)]).await,
        101,
        "the well-formed request upgrades"
    );
    let refused = [
        ("two keys", vec![version("13"), key(KEY), key(OTHER_KEY)]),
        (
            "the same key twice",
            vec![version("13"), key(KEY), key(KEY)],
        ),
        (
            "two keys in one header",
            vec![version("13"), key(&format!("{KEY}, {OTHER_KEY}"))],
        ),
        ("two versions", vec![version("13"), version("13"), key(KEY)]),
        (
            "versions 13 and 8",
            vec![version("13"), version("8"), key(KEY)],
        ),
        (
            "versions 8 and 13",
            vec![version("8"), version("13"), key(KEY)],
        ),
        (
            "a key that is not 16 bytes",
            vec![version("13"), key("c2hvcnQ=")],
        ),
    ];
    for (case, lines) in refused {
        assert_eq!(handshake_status(port, &lines).await, 400, "{case}");
    }
    assert_eq!(
        handshake_status(port, &[version("13")]).await,
        400,
        "a missing key"
    );
    // Refusals left nothing behind: no client was registered.
    wait_stats(&server, |s| s["totalConnections"] == 1).await;
}

/// A client frame, masked as clients must.
fn masked_text(text: &str) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    assert!(text.len() < 126, "a short frame");
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_answered() {
    let server = start("");
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    // The request and two frames in one write: the server reads them with the request,
    // before the WebSocket exists, and must still answer both (one cut across the
    // second write, to start a frame in the early bytes and finish it from the socket).
    let mut bytes = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         {}\r\n{}\r\n\r\n",
        version("13"),
        key(KEY)
    )
    .into_bytes();
    bytes.extend(masked_text(r#"{"type":"ping"}"#));
    let second = masked_text(r#"{"type":"ping"}"#);
    bytes.extend_from_slice(&second[..5]);
    tcp.write_all(&bytes).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    tcp.write_all(&second[5..]).await.unwrap();
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        while String::from_utf8_lossy(&seen)
            .matches(r#""type":"pong""#)
            .count()
            < 2
        {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(
        answered.is_ok(),
        "two pongs expected, got: {}",
        String::from_utf8_lossy(&seen)
    );
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
}
