//! The reference ("ceiling") server: the same wire protocol as Herald for what the
//! benchmark exercises (connection message, subscribe/subscribed by sessionId,
//! ping/pong, ai_progress fan-out), built to be as cheap as this machine allows:
//! each message is serialized and framed exactly once, appended to the pending bytes
//! of every subscribed socket, and every socket's pending bytes go out with one write.
//! mio event loops, one per core; no per-connection tasks, no per-message allocation
//! per subscriber. It speaks the host command protocol of `herald_bench::host`.

use herald_bench::{iso_millis, progress_payload, unix_micros, ws};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io::{BufRead, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAKE: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);
const HEARTBEAT: Duration = Duration::from_secs(30);
const MAX_PENDING: usize = 8 * 1024 * 1024;

struct Msg {
    session: Arc<str>,
    frame: Vec<u8>,
}

struct ShardHandle {
    tx: Sender<ShardInput>,
    waker: Waker,
    wake_pending: Arc<AtomicBool>,
}

enum ShardInput {
    Conn(TcpStream),
    Msg(Arc<Msg>),
}

struct Shared {
    seq: AtomicU64,
    epoch: String,
    next_id: AtomicU64,
    active: AtomicU64,
    total: AtomicU64,
    sent: AtomicU64,
}

enum State {
    Handshake,
    Open,
}

/// Bytes waiting to go out on one socket: shared message frames (never copied per
/// socket) and the socket's own small replies, in order.
enum Chunk {
    Shared(Arc<Msg>),
    Own(Box<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(m) => &m.frame,
            Chunk::Own(b) => b,
        }
    }
}

struct Conn {
    stream: TcpStream,
    state: State,
    inbuf: Vec<u8>,
    /// Pending output; `off` bytes of the front chunk are already written.
    pending: VecDeque<Chunk>,
    off: usize,
    pending_bytes: usize,
    session: Option<Arc<str>>,
    close_after_flush: bool,
}

impl Conn {
    fn push_own(&mut self, bytes: Vec<u8>) {
        self.pending_bytes += bytes.len();
        self.pending.push_back(Chunk::Own(bytes.into_boxed_slice()));
    }

    fn push_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut b = Vec::with_capacity(payload.len() + 4);
        ws::server_frame(opcode, payload, &mut b);
        self.push_own(b);
    }

    fn push_shared(&mut self, m: &Arc<Msg>) {
        self.pending_bytes += m.frame.len();
        self.pending.push_back(Chunk::Shared(Arc::clone(m)));
    }
}

impl ShardHandle {
    fn push(&self, input: ShardInput) {
        let _ = self.tx.send(input);
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

fn main() {
    let threads: usize = std::env::var("BENCH_CEILING_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
    let port: u16 = std::env::var("BENCH_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let session: Arc<str> = std::env::var("BENCH_SESSION")
        .unwrap_or_else(|_| "bench".into())
        .into();
    let shared = Arc::new(Shared {
        seq: AtomicU64::new(0),
        epoch: format!("{:x}-1", unix_micros() & 0xffff_ffff),
        next_id: AtomicU64::new(1),
        active: AtomicU64::new(0),
        total: AtomicU64::new(0),
        sent: AtomicU64::new(0),
    });
    let mut listener =
        TcpListener::bind(format!("127.0.0.1:{port}").parse().unwrap()).expect("bind");
    let port = listener.local_addr().unwrap().port();

    let mut shards = Vec::new();
    for i in 0..threads.max(1) {
        let poll = Poll::new().expect("poll");
        let waker = Waker::new(poll.registry(), WAKE).expect("waker");
        let (tx, rx) = mpsc::channel();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&shared);
        let wp = Arc::clone(&wake_pending);
        std::thread::Builder::new()
            .name(format!("ceiling-{i}"))
            .spawn(move || shard(poll, rx, wp, s))
            .expect("spawn");
        shards.push(ShardHandle {
            tx,
            waker,
            wake_pending,
        });
    }
    let shards = Arc::new(shards);

    // Acceptor: hands each socket to a shard, round robin.
    {
        let shards = Arc::clone(&shards);
        std::thread::Builder::new()
            .name("ceiling-accept".into())
            .spawn(move || {
                let mut poll = Poll::new().expect("poll");
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)
                    .expect("register");
                let mut events = Events::with_capacity(64);
                let mut next = 0usize;
                loop {
                    if poll.poll(&mut events, None).is_err() {
                        continue;
                    }
                    loop {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                let _ = stream.set_nodelay(true);
                                shards[next % shards.len()].push(ShardInput::Conn(stream));
                                next += 1;
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(10));
                                break;
                            }
                        }
                    }
                }
            })
            .expect("spawn");
    }

    println!("READY {port}");
    let _ = std::io::stdout().flush();

    let stdin = std::io::stdin();
    let mut payload = String::new();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["push", m, rate, size] => {
                let m: u64 = m.parse().unwrap_or(0);
                let rate: f64 = rate.parse().unwrap_or(0.0);
                let size: usize = size.parse().unwrap_or(200);
                let start = Instant::now();
                for i in 0..m {
                    if rate > 0.0 {
                        let target = start + Duration::from_secs_f64(i as f64 / rate);
                        let now = Instant::now();
                        if target > now {
                            std::thread::sleep(target - now);
                        }
                    }
                    let t = unix_micros();
                    progress_payload(t, i, size, &mut payload);
                    publish(&shards, &shared, &session, &payload, t / 1000);
                }
                println!("PUSHED {m} {} 0", start.elapsed().as_nanos());
                let _ = std::io::stdout().flush();
            }
            ["cost", k, size] => {
                let k: u64 = k.parse().unwrap_or(0);
                let size: usize = size.parse().unwrap_or(200);
                progress_payload(unix_micros(), 0, size, &mut payload);
                let start = Instant::now();
                for _ in 0..k {
                    publish(&shards, &shared, &session, &payload, unix_micros() / 1000);
                }
                println!("COST {k} {} 0", start.elapsed().as_nanos());
                let _ = std::io::stdout().flush();
            }
            ["stats"] => {
                println!(
                    "STATS active={} total={} sent={}",
                    shared.active.load(Ordering::Relaxed),
                    shared.total.load(Ordering::Relaxed),
                    shared.sent.load(Ordering::Relaxed)
                );
                let _ = std::io::stdout().flush();
            }
            ["quit"] => break,
            _ => {}
        }
    }
}

/// Serializes and frames one ai_progress message once and hands it to every shard.
fn publish(shards: &[ShardHandle], shared: &Shared, session: &Arc<str>, payload: &str, ms: u64) {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let mut text = String::with_capacity(payload.len() + 128);
    text.push_str("{\"type\":\"ai_progress\",\"sessionId\":");
    text.push_str(&serde_json::to_string(&**session).unwrap());
    text.push_str(",\"progress\":");
    text.push_str(payload);
    text.push_str(",\"timestamp\":\"");
    text.push_str(&iso_millis(ms));
    text.push_str("\",\"seq\":");
    text.push_str(&seq.to_string());
    text.push_str(",\"epoch\":\"");
    text.push_str(&shared.epoch);
    text.push_str("\"}");
    let mut frame = Vec::with_capacity(text.len() + 4);
    ws::server_frame(ws::OP_TEXT, text.as_bytes(), &mut frame);
    let msg = Arc::new(Msg {
        session: Arc::clone(session),
        frame,
    });
    for s in shards {
        s.push(ShardInput::Msg(Arc::clone(&msg)));
    }
}

fn shard(
    mut poll: Poll,
    rx: Receiver<ShardInput>,
    wake_pending: Arc<AtomicBool>,
    shared: Arc<Shared>,
) {
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut last_ping = Instant::now();
    let mut msgs: Vec<Arc<Msg>> = Vec::new();
    let mut dirty: Vec<usize> = Vec::new();
    loop {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKE {
                continue;
            }
            let idx = token.0;
            let mut drop_it = false;
            if let Some(c) = conns[idx].as_mut() {
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    drop_it |= !read_conn(c, &mut scratch, &shared);
                }
                if !drop_it && !c.pending.is_empty() && (ev.is_writable() || c.close_after_flush) {
                    drop_it |= !flush(c);
                }
                if c.close_after_flush && c.pending.is_empty() {
                    drop_it = true;
                }
            }
            if drop_it {
                close(&mut poll, &mut conns, &mut free, idx, &shared);
            }
        }
        // New sockets and messages from the pusher.
        wake_pending.store(false, Ordering::Release);
        while let Ok(input) = rx.try_recv() {
            match input {
                ShardInput::Conn(mut stream) => {
                    let idx = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    if poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(idx),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        conns[idx] = Some(Conn {
                            stream,
                            state: State::Handshake,
                            inbuf: Vec::new(),
                            pending: VecDeque::new(),
                            off: 0,
                            pending_bytes: 0,
                            session: None,
                            close_after_flush: false,
                        });
                    } else {
                        free.push(idx);
                    }
                }
                ShardInput::Msg(m) => msgs.push(m),
            }
        }
        let ping_due = last_ping.elapsed() >= HEARTBEAT;
        if !msgs.is_empty() || ping_due {
            if ping_due {
                last_ping = Instant::now();
            }
            for (idx, slot) in conns.iter_mut().enumerate() {
                let Some(c) = slot.as_mut() else { continue };
                if !matches!(c.state, State::Open) {
                    continue;
                }
                let mut n = 0u64;
                if let Some(sess) = c.session.clone() {
                    for m in &msgs {
                        if m.session == sess {
                            c.push_shared(m);
                            n += 1;
                        }
                    }
                }
                if ping_due {
                    c.push_frame(ws::OP_PING, b"");
                }
                if n > 0 || ping_due {
                    shared.sent.fetch_add(n, Ordering::Relaxed);
                    dirty.push(idx);
                }
            }
            msgs.clear();
            for idx in dirty.drain(..) {
                let ok = match conns[idx].as_mut() {
                    Some(c) if c.pending_bytes > MAX_PENDING => false, // slow consumer: evict
                    Some(c) => flush(c),
                    None => true,
                };
                if !ok {
                    close(&mut poll, &mut conns, &mut free, idx, &shared);
                }
            }
        }
    }
}

fn close(
    poll: &mut Poll,
    conns: &mut [Option<Conn>],
    free: &mut Vec<usize>,
    idx: usize,
    shared: &Shared,
) {
    if let Some(mut c) = conns[idx].take() {
        let _ = poll.registry().deregister(&mut c.stream);
        if matches!(c.state, State::Open) {
            shared.active.fetch_sub(1, Ordering::Relaxed);
        }
        free.push(idx);
    }
}

/// One writev of everything pending (up to IOV_MAX chunks). False when the socket is dead.
fn flush(c: &mut Conn) -> bool {
    const IOV_MAX: usize = 1024;
    if c.pending.is_empty() {
        return true;
    }
    let mut iov: [libc::iovec; IOV_MAX] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; IOV_MAX];
    let mut count = 0;
    for (i, chunk) in c.pending.iter().take(IOV_MAX).enumerate() {
        let bytes = if i == 0 {
            &chunk.bytes()[c.off..]
        } else {
            chunk.bytes()
        };
        iov[i] = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        count = i + 1;
    }
    // SAFETY: the iovecs point into chunks owned by `c.pending`, alive for the call.
    let n = unsafe { libc::writev(c.stream.as_raw_fd(), iov.as_ptr(), count as libc::c_int) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted;
    }
    let mut n = n as usize;
    c.pending_bytes -= n;
    while n > 0 {
        let left = c.pending[0].bytes().len() - c.off;
        if n >= left {
            n -= left;
            c.off = 0;
            c.pending.pop_front();
        } else {
            c.off += n;
            n = 0;
        }
    }
    if c.pending.is_empty() && c.pending.capacity() > 64 {
        c.pending = VecDeque::new();
    }
    true
}

/// Reads everything available. False when the connection should be dropped.
fn read_conn(c: &mut Conn, scratch: &mut [u8], shared: &Shared) -> bool {
    loop {
        match c.stream.read(scratch) {
            Ok(0) => return false,
            Ok(n) => {
                c.inbuf.extend_from_slice(&scratch[..n]);
                if c.inbuf.len() > 1024 * 1024 {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    if matches!(c.state, State::Handshake) {
        let Some(end) = ws::find(&c.inbuf, b"\r\n\r\n") else {
            return c.inbuf.len() < 16 * 1024;
        };
        let head = String::from_utf8_lossy(&c.inbuf[..end]).to_string();
        c.inbuf.drain(..end + 4);
        let path = head.split_whitespace().nth(1).unwrap_or("");
        let key = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        });
        if path.starts_with("/ws") {
            let Some(key) = key else { return false };
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            c.push_own(resp.into_bytes());
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "{{\"type\":\"connection\",\"status\":\"connected\",\"clientId\":\"{id:016x}\",\"timestamp\":\"{}\"}}",
                iso_millis(unix_micros() / 1000)
            );
            c.push_frame(ws::OP_TEXT, msg.as_bytes());
            c.state = State::Open;
            shared.active.fetch_add(1, Ordering::Relaxed);
            shared.total.fetch_add(1, Ordering::Relaxed);
        } else {
            let (status, body) = if path.starts_with("/api/ws/stats") {
                (
                    "200 OK",
                    format!(
                        "{{\"totalConnections\":{},\"activeConnections\":{},\"messagesSent\":{}}}",
                        shared.total.load(Ordering::Relaxed),
                        shared.active.load(Ordering::Relaxed),
                        shared.sent.load(Ordering::Relaxed)
                    ),
                )
            } else if path == "/healthz" {
                ("200 OK", "ok\n".to_string())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            c.push_own(resp.into_bytes());
            c.close_after_flush = true;
            return flush(c);
        }
    }
    // Client frames.
    let mut at = 0;
    loop {
        let f = match ws::parse(&c.inbuf[at..], 64 * 1024) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return false,
        };
        let mut payload = c.inbuf[at + f.payload_start..at + f.end()].to_vec();
        if let Some(mask) = f.mask {
            ws::unmask(&mut payload, mask);
        }
        at += f.end();
        match f.opcode {
            ws::OP_TEXT => handle_text(c, &payload, shared),
            ws::OP_PING => c.push_frame(ws::OP_PONG, &payload),
            ws::OP_CLOSE => {
                c.push_frame(ws::OP_CLOSE, &payload[..payload.len().min(2)]);
                c.close_after_flush = true;
                break;
            }
            _ => {}
        }
    }
    c.inbuf.drain(..at);
    if c.inbuf.is_empty() {
        c.inbuf = Vec::new();
    }
    flush(c)
}

fn handle_text(c: &mut Conn, payload: &[u8], shared: &Shared) {
    let now = iso_millis(unix_micros() / 1000);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        let m = format!("{{\"type\":\"error\",\"error\":{{\"code\":\"invalid_message\",\"message\":\"not valid JSON\"}},\"timestamp\":\"{now}\"}}");
        c.push_frame(ws::OP_TEXT, m.as_bytes());
        return;
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("ping") => {
            let m = format!("{{\"type\":\"pong\",\"timestamp\":\"{now}\"}}");
            c.push_frame(ws::OP_TEXT, m.as_bytes());
        }
        Some("subscribe") => {
            if let Some(s) = v.get("sessionId").and_then(|s| s.as_str()) {
                c.session = Some(s.into());
                let m = format!(
                    "{{\"type\":\"subscribed\",\"sessionId\":{},\"seq\":{},\"epoch\":\"{}\",\"timestamp\":\"{now}\"}}",
                    serde_json::to_string(s).unwrap(),
                    shared.seq.load(Ordering::Relaxed),
                    shared.epoch
                );
                c.push_frame(ws::OP_TEXT, m.as_bytes());
            }
        }
        Some("unsubscribe") => {
            c.session = None;
            let m = format!("{{\"type\":\"unsubscribed\",\"timestamp\":\"{now}\"}}");
            c.push_frame(ws::OP_TEXT, m.as_bytes());
        }
        _ => {}
    }
}
