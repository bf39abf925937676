//! The load client: N WebSocket connections on loopback, each subscribed to one
//! session, read by a few mio event-loop threads that count deliveries, per-connection
//! order (by the payload's `i`) and end-to-end latency (receipt time minus the
//! payload's `t`, both CLOCK_REALTIME microseconds on the same machine).

use crate::unix_micros;
use crate::ws::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAKE: Token = Token(usize::MAX);
const SCRATCH: usize = 256 * 1024;
const MAX_FRAME: usize = 16 * 1024 * 1024;
const BENCH_PREFIX: &[u8] = b"{\"type\":\"ai_progress\"";
/// `,"seq":N,"epoch":"…"}` fits in this many bytes at the end of a message.
const SEQ_TAIL: usize = 96;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Server ports on 127.0.0.1; connection k goes to `ports[k % ports.len()]`, so the
    /// subscribers of a multi-node case are spread evenly over its nodes.
    pub ports: Vec<u16>,
    pub path: String,
    pub connections: usize,
    pub session: String,
    /// Event-loop threads reading the connections.
    pub threads: usize,
    /// Threads opening connections (handshake + subscribe) in parallel.
    pub setup_threads: usize,
    pub setup_timeout: Duration,
}

/// What the workers saw since the last reset.
#[derive(Debug, Default)]
pub struct Collected {
    pub received: u64,
    /// Messages whose `i` was not greater than the previous one on that connection.
    pub out_of_order: u64,
    /// Sum over connections of (expected - received), never negative.
    pub missing: u64,
    /// Connections the server closed (or that failed).
    pub closed: u64,
    /// Latency samples in microseconds, unsorted.
    pub latencies_us: Vec<u32>,
    pub first_recv_us: u64,
    pub last_recv_us: u64,
    /// Non-benchmark text frames (pongs, errors...).
    pub other_frames: u64,
}

enum Cmd {
    Reset(u64, mpsc::Sender<()>),
    Collect(mpsc::Sender<Collected>),
    Stop,
}

struct WorkerShared {
    received: AtomicU64,
    last_recv_us: AtomicU64,
    closed: AtomicU64,
    cmds: Mutex<Vec<Cmd>>,
    waker: Waker,
}

pub struct Pool {
    workers: Vec<(Arc<WorkerShared>, JoinHandle<()>)>,
    pub connections: usize,
}

struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    next_i: u64,
    count: u64,
    out_of_order: u64,
    open: bool,
}

/// A connected, subscribed socket before it joins a worker, with any bytes read past
/// the `subscribed` reply.
struct Ready {
    stream: StdStream,
    leftover: Vec<u8>,
}

fn handshake_request(port: u16, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads text frames until one contains `marker`; returns the bytes after it.
fn read_until_text(stream: &mut StdStream, buf: &mut Vec<u8>, marker: &[u8]) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(f) = ws::parse(buf, MAX_FRAME).map_err(|e| e.to_string())? {
            let payload = buf[f.payload_start..f.end()].to_vec();
            buf.drain(..f.end());
            match f.opcode {
                OP_TEXT if ws::find(&payload, marker).is_some() => return Ok(()),
                OP_PING => {
                    let mut pong = Vec::new();
                    ws::client_frame(OP_PONG, &payload, &mut pong);
                    stream.write_all(&pong).map_err(|e| e.to_string())?;
                }
                OP_CLOSE => return Err("server closed during setup".into()),
                _ => {}
            }
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed during setup".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn open_one(cfg: &ClientConfig, port: u16) -> Result<Ready, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = StdStream::connect_timeout(&addr, cfg.setup_timeout)
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(cfg.setup_timeout)).ok();
    stream
        .write_all(handshake_request(port, &cfg.path).as_bytes())
        .map_err(|e| format!("handshake write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("handshake read: {e}"))?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = ws::find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err("handshake response too long".into());
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&buf[..header_end.min(200)]).to_string();
        return Err(format!("upgrade refused: {head}"));
    }
    buf.drain(..header_end);
    read_until_text(&mut stream, &mut buf, b"\"connection\"")?;
    let sub = format!(
        "{{\"type\":\"subscribe\",\"sessionId\":\"{}\"}}",
        cfg.session
    );
    let mut frame = Vec::new();
    ws::client_frame(OP_TEXT, sub.as_bytes(), &mut frame);
    stream
        .write_all(&frame)
        .map_err(|e| format!("subscribe write: {e}"))?;
    read_until_text(&mut stream, &mut buf, b"\"subscribed\"")?;
    stream.set_read_timeout(None).ok();
    Ok(Ready {
        stream,
        leftover: buf,
    })
}

impl Pool {
    /// Opens and subscribes `cfg.connections` sockets, then starts the readers.
    pub fn connect(cfg: &ClientConfig) -> Result<Pool, String> {
        if cfg.ports.is_empty() {
            return Err("no server port to connect to".into());
        }
        let n = cfg.connections;
        let setup_threads = cfg.setup_threads.clamp(1, n.max(1));
        let mut handles = Vec::new();
        for t in 0..setup_threads {
            let cfg = cfg.clone();
            handles.push(std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut k = t;
                while k < cfg.connections {
                    let mut tries = 0;
                    loop {
                        match open_one(&cfg, cfg.ports[k % cfg.ports.len()]) {
                            Ok(r) => {
                                out.push(r);
                                break;
                            }
                            // A burst of connects can overflow the accept backlog;
                            // retry a few times before giving up.
                            Err(e) if tries < 3 => {
                                tries += 1;
                                eprintln!("  connection {k}: {e}; retrying");
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            Err(e) => return Err(format!("connection {k}: {e}")),
                        }
                    }
                    k += cfg.setup_threads.clamp(1, cfg.connections.max(1));
                }
                Ok(out)
            }));
        }
        let mut ready = Vec::with_capacity(n);
        let mut first_err = None;
        for h in handles {
            match h.join().expect("setup thread panicked") {
                Ok(mut v) => ready.append(&mut v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let threads = cfg.threads.max(1);
        let mut per_worker: Vec<Vec<Ready>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, r) in ready.into_iter().enumerate() {
            per_worker[i % threads].push(r);
        }
        let mut workers = Vec::new();
        for (w, conns) in per_worker.into_iter().enumerate() {
            let poll = Poll::new().map_err(|e| e.to_string())?;
            let waker = Waker::new(poll.registry(), WAKE).map_err(|e| e.to_string())?;
            let shared = Arc::new(WorkerShared {
                received: AtomicU64::new(0),
                last_recv_us: AtomicU64::new(0),
                closed: AtomicU64::new(0),
                cmds: Mutex::new(Vec::new()),
                waker,
            });
            let s = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("loadgen-{w}"))
                .spawn(move || worker(poll, s, conns))
                .map_err(|e| e.to_string())?;
            workers.push((shared, handle));
        }
        Ok(Pool {
            workers,
            connections: n,
        })
    }

    fn send(&self, make: impl Fn() -> Cmd) {
        for (s, _) in &self.workers {
            s.cmds.lock().unwrap().push(make());
            let _ = s.waker.wake();
        }
    }

    /// Starts a new measurement expecting `per_conn` benchmark messages per connection.
    pub fn reset(&self, per_conn: u64) {
        let (tx, rx) = mpsc::channel();
        for (s, _) in &self.workers {
            s.cmds
                .lock()
                .unwrap()
                .push(Cmd::Reset(per_conn, tx.clone()));
            let _ = s.waker.wake();
        }
        for _ in &self.workers {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
    }

    pub fn received(&self) -> u64 {
        self.workers
            .iter()
            .map(|(s, _)| s.received.load(Ordering::Relaxed))
            .sum()
    }

    pub fn closed(&self) -> u64 {
        self.workers
            .iter()
            .map(|(s, _)| s.closed.load(Ordering::Relaxed))
            .sum()
    }

    pub fn last_recv_us(&self) -> u64 {
        self.workers
            .iter()
            .map(|(s, _)| s.last_recv_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    pub fn collect(&self) -> Collected {
        let (tx, rx) = mpsc::channel();
        for (s, _) in &self.workers {
            s.cmds.lock().unwrap().push(Cmd::Collect(tx.clone()));
            let _ = s.waker.wake();
        }
        let mut all = Collected {
            first_recv_us: u64::MAX,
            ..Collected::default()
        };
        for _ in &self.workers {
            if let Ok(mut c) = rx.recv_timeout(Duration::from_secs(30)) {
                all.received += c.received;
                all.out_of_order += c.out_of_order;
                all.missing += c.missing;
                all.closed += c.closed;
                all.other_frames += c.other_frames;
                all.latencies_us.append(&mut c.latencies_us);
                if c.received > 0 {
                    all.first_recv_us = all.first_recv_us.min(c.first_recv_us);
                }
                all.last_recv_us = all.last_recv_us.max(c.last_recv_us);
            }
        }
        if all.first_recv_us == u64::MAX {
            all.first_recv_us = 0;
        }
        all
    }

    /// Closes every connection and joins the readers.
    pub fn close(self) {
        self.send(|| Cmd::Stop);
        for (_, h) in self.workers {
            let _ = h.join();
        }
    }
}

#[derive(Default)]
struct Local {
    received: u64,
    out_of_order: u64,
    other: u64,
    lat: Vec<u32>,
    first_us: u64,
    last_us: u64,
}

fn worker(mut poll: Poll, shared: Arc<WorkerShared>, ready: Vec<Ready>) {
    let mut conns: Vec<Conn> = Vec::with_capacity(ready.len());
    for (i, r) in ready.into_iter().enumerate() {
        r.stream.set_nonblocking(true).expect("nonblocking");
        let mut stream = TcpStream::from_std(r.stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .expect("register");
        conns.push(Conn {
            stream,
            pending: r.leftover,
            next_i: 0,
            count: 0,
            out_of_order: 0,
            open: true,
        });
    }
    let mut scratch = vec![0u8; SCRATCH];
    let mut events = Events::with_capacity(1024);
    let mut local = Local::default();
    let mut expected: u64 = 0;
    let mut closed: u64 = 0;
    // Bytes read before the workers started (past `subscribed`) are processed first.
    for c in conns.iter_mut() {
        let leftover = std::mem::take(&mut c.pending);
        process(c, &leftover, unix_micros(), &mut local);
    }
    loop {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(200))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("poll: {e}");
            return;
        }
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKE {
                continue;
            }
            let c = &mut conns[token.0];
            if !c.open {
                continue;
            }
            loop {
                match c.stream.read(&mut scratch) {
                    Ok(0) => {
                        c.open = false;
                        closed += 1;
                        let _ = poll.registry().deregister(&mut c.stream);
                        break;
                    }
                    Ok(n) => {
                        let now = unix_micros();
                        process(c, &scratch[..n], now, &mut local);
                        if n < scratch.len() {
                            // A short read drained the socket's receive queue; data that
                            // arrives later raises a new edge (Linux wakes epoll on every
                            // enqueue), so skip the read that would only say WouldBlock.
                            // Tokio makes the same assumption.
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.open = false;
                        closed += 1;
                        let _ = poll.registry().deregister(&mut c.stream);
                        break;
                    }
                }
            }
        }
        shared.received.store(local.received, Ordering::Relaxed);
        shared.last_recv_us.store(local.last_us, Ordering::Relaxed);
        shared.closed.store(closed, Ordering::Relaxed);
        let cmds: Vec<Cmd> = std::mem::take(&mut *shared.cmds.lock().unwrap());
        for cmd in cmds {
            match cmd {
                Cmd::Reset(m, ack) => {
                    expected = m;
                    local = Local::default();
                    for c in conns.iter_mut() {
                        c.next_i = 0;
                        c.count = 0;
                        c.out_of_order = 0;
                    }
                    shared.received.store(0, Ordering::Relaxed);
                    shared.last_recv_us.store(0, Ordering::Relaxed);
                    let _ = ack.send(());
                }
                Cmd::Collect(reply) => {
                    let missing = conns.iter().map(|c| expected.saturating_sub(c.count)).sum();
                    let _ = reply.send(Collected {
                        received: local.received,
                        out_of_order: local.out_of_order,
                        missing,
                        closed,
                        latencies_us: std::mem::take(&mut local.lat),
                        first_recv_us: local.first_us,
                        last_recv_us: local.last_us,
                        other_frames: local.other,
                    });
                }
                Cmd::Stop => return,
            }
        }
    }
}

fn process(c: &mut Conn, data: &[u8], now_us: u64, local: &mut Local) {
    if c.pending.is_empty() {
        let used = frames(c, data, now_us, local);
        if used < data.len() {
            c.pending.extend_from_slice(&data[used..]);
        }
    } else {
        let mut buf = std::mem::take(&mut c.pending);
        buf.extend_from_slice(data);
        let used = frames(c, &buf, now_us, local);
        buf.drain(..used);
        if buf.capacity() > 64 * 1024 && buf.len() < 16 * 1024 {
            buf.shrink_to(16 * 1024);
        }
        c.pending = buf;
    }
}

/// Handles every complete frame at the start of `buf`; returns the bytes consumed.
fn frames(c: &mut Conn, buf: &[u8], now_us: u64, local: &mut Local) -> usize {
    let mut at = 0;
    loop {
        let f = match ws::parse(&buf[at..], MAX_FRAME) {
            Ok(Some(f)) => f,
            Ok(None) => return at,
            Err(_) => {
                c.open = false;
                return buf.len();
            }
        };
        let payload = &buf[at + f.payload_start..at + f.end()];
        match f.opcode {
            OP_TEXT => {
                if payload.starts_with(BENCH_PREFIX) {
                    on_message(c, payload, now_us, local);
                } else {
                    local.other += 1;
                }
            }
            OP_PING => {
                let mut pong = Vec::with_capacity(payload.len() + 6);
                ws::client_frame(OP_PONG, payload, &mut pong);
                let _ = c.stream.write(&pong);
            }
            OP_CLOSE => c.open = false,
            _ => {}
        }
        at += f.end();
    }
}

fn on_message(c: &mut Conn, payload: &[u8], now_us: u64, local: &mut Local) {
    // `"progress":{"t":..,"i":..}`: t first, then i, both unsigned.
    let t = ws::number_after(payload, b"{\"t\":").unwrap_or(0);
    let i = order_key(payload);
    if i != u64::MAX {
        if i < c.next_i {
            c.out_of_order += 1;
            local.out_of_order += 1;
        } else {
            c.next_i = i + 1;
        }
    }
    c.count += 1;
    local.received += 1;
    let lat = now_us.saturating_sub(t).min(u32::MAX as u64) as u32;
    local.lat.push(lat);
    if local.first_us == 0 {
        local.first_us = now_us;
    }
    local.last_us = now_us;
}

/// What a connection's messages must increase by: the channel's `seq` (near the end of the
/// message; every server here sends it), else the payload's index `i` (`u64::MAX` when
/// neither is there). With several publishing threads `i` is not the publication order;
/// `seq` is.
fn order_key(payload: &[u8]) -> u64 {
    let tail = &payload[payload.len().saturating_sub(SEQ_TAIL)..];
    ws::number_after(tail, b",\"seq\":")
        .or_else(|| ws::number_after(payload, b",\"i\":"))
        .unwrap_or(u64::MAX)
}

/// Waits until `pool` has received `expected` messages, nothing arrived for `idle`, or
/// `deadline` passed. Returns true when everything arrived.
pub fn wait_for(pool: &Pool, expected: u64, idle: Duration, deadline: Duration) -> bool {
    let start = Instant::now();
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let r = pool.received();
        if r >= expected {
            return true;
        }
        if r != last {
            last = r;
            last_change = Instant::now();
        } else if last_change.elapsed() > idle {
            return false;
        }
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_the_seq_else_the_index() {
        let herald = br#"{"type":"ai_progress","sessionId":"bench","progress":{"t":1790000000000000,"i":7,"pad":"xxxx"},"timestamp":"2026-11-30T15:00:00.000Z","seq":1234,"epoch":"0123456789abcdef"}"#;
        assert_eq!(order_key(herald), 1234);
        let no_seq =
            br#"{"type":"ai_progress","sessionId":"bench","progress":{"t":1,"i":7,"pad":"xx"}}"#;
        assert_eq!(order_key(no_seq), 7);
        assert_eq!(order_key(br#"{"type":"ai_progress"}"#), u64::MAX);
    }
}
