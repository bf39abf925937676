//! Raw WebSocket over a plain TCP socket: the handshake, a frame encoder (masked as a
//! client must, or not, to break the rules on purpose), and a reader of server frames.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TEXT: u8 = 0x1;
pub const PING: u8 = 0x9;
pub const CLOSE: u8 = 0x8;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame as a client writes it. `rsv` goes in bits 4..6 of the first byte.
pub fn frame(opcode: u8, payload: &[u8], masked: bool, rsv: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | (rsv & 0x7) << 4 | (opcode & 0x0f));
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A valid, masked text frame.
pub fn text(payload: &str) -> Vec<u8> {
    frame(TEXT, payload.as_bytes(), true, 0)
}

/// A client socket after a successful upgrade, with whatever was read past the headers.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// An HTTP response head (status and header lines) and the bytes read past it.
pub struct Head {
    pub status: u16,
    pub head: String,
    pub rest: Vec<u8>,
}

pub fn upgrade_request(port: u16, path_and_query: &str, extra_headers: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// Reads an HTTP response head, bounded in time and size.
pub async fn read_head(stream: &mut TcpStream, wait: Duration) -> Result<Head, String> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
            return Ok(Head {
                status,
                head,
                rest: buf[end + 4..].to_vec(),
            });
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| format!("no response head within {wait:?}"))?
            .map_err(|e| format!("reading the response head: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before a response head ({} bytes read)",
                buf.len()
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl RawWs {
    /// Connects and upgrades; fails unless the answer is 101.
    pub async fn connect(port: u16, path_and_query: &str) -> Result<RawWs, String> {
        let mut stream = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .map_err(|_| "TCP connect timed out".to_string())?
        .map_err(|e| format!("TCP connect: {e}"))?;
        stream
            .write_all(upgrade_request(port, path_and_query, "").as_bytes())
            .await
            .map_err(|e| format!("writing the upgrade: {e}"))?;
        let head = read_head(&mut stream, Duration::from_secs(10)).await?;
        if head.status != 101 {
            return Err(format!("upgrade answered {}: {:?}", head.status, head.head));
        }
        Ok(RawWs {
            stream,
            buf: head.rest,
        })
    }

    /// The next server frame (opcode, payload); servers never mask.
    pub async fn read_frame(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        self.fill(2).await?;
        let opcode = self.buf[0] & 0x0f;
        let (len, header) = match self.buf[1] & 0x7f {
            126 => {
                self.fill(4).await?;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10).await?;
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(header + len).await?;
        let payload = self.buf[header..header + len].to_vec();
        self.buf.drain(..header + len);
        Ok((opcode, payload))
    }

    async fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            let got = self.stream.read(&mut chunk).await?;
            if got == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    /// Reads until the server's close frame and describes how the connection ended:
    /// `close <code>`, `close without status (1005)`, `eof`, `reset` or `timeout`.
    pub async fn close_outcome(&mut self, wait: Duration) -> Closed {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.read_frame()).await {
                Err(_) => return Closed::Timeout,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Closed::Eof,
                Ok(Err(e)) => return Closed::Error(e.to_string()),
                Ok(Ok((CLOSE, payload))) if payload.len() >= 2 => {
                    return Closed::Code(u16::from_be_bytes([payload[0], payload[1]]))
                }
                Ok(Ok((CLOSE, _))) => return Closed::NoStatus,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16),
    NoStatus,
    Eof,
    Error(String),
    Timeout,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Code(c) => write!(f, "{c}"),
            Closed::NoStatus => f.write_str("1005(no status)"),
            Closed::Eof => f.write_str("eof(no close frame)"),
            Closed::Error(e) => write!(f, "error({e})"),
            Closed::Timeout => f.write_str("timeout(still open)"),
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`: the status and the body.
pub async fn http_get(port: u16, path: &str, extra_headers: &str) -> Result<(u16, String), String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra_headers}\r\n"
    );
    let (status, head, body) = http_raw(port, &request).await?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

/// Sends raw request bytes and reads the whole response (the server closes after it).
pub async fn http_raw(port: u16, request: &str) -> Result<(u16, String, Vec<u8>), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("TCP connect: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    let head = read_head(&mut stream, Duration::from_secs(10)).await?;
    if head.status == 101 {
        // Upgraded: what follows is WebSocket, not a body.
        return Ok((head.status, head.head, Vec::new()));
    }
    let mut body = head.rest;
    let length = head.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while length.is_none_or(|n| body.len() < n) {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => body.extend_from_slice(&chunk[..n]),
            Err(_) => return Err("response body not complete within 10 s".into()),
        }
    }
    Ok((head.status, head.head, body))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 || body.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[(end + 4 + size).min(body.len())..];
    }
    out
}
