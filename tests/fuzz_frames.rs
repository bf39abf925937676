//! Fuzzing of the frame path over a real socket: a real server on loopback is fed
//! arbitrary and mutated WebSocket frames after a real handshake (raw TCP: masked and
//! unmasked, fragmented, lying lengths, control frames, reserved bits, garbage), then the
//! client half-closes, resets or drops the socket. Every case must end with the server
//! closing (a hang fails); whatever it sent must be well-formed server frames; `/healthz`
//! answers after every case, a normal client is served every few cases, and no connection
//! is left behind at the end. The corpus (`tests/fuzz/corpus/frames`) is replayed first.
//! `PROPTEST_CASES=N` sets the case count for a long run.

#[path = "fuzz/support.rs"]
mod support;

use herald::{Config, Server};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TARGET: &str = "frames";
const MAX_MESSAGE_SIZE: usize = 16 * 1024;
/// A server that neither answers nor closes within this is hung.
const CASE_DEADLINE: Duration = Duration::from_secs(10);
/// A normal client checks the server every so many cases.
const CLIENT_CHECK_EVERY: usize = 32;

fn start_server() -> Server {
    let config = Config::from_json(&format!(
        r#"{{"port":0,"max_message_size":{MAX_MESSAGE_SIZE},"heartbeat_interval_ms":30000}}"#
    ))
    .unwrap();
    Server::start(config).unwrap()
}

// ---------------------------------------------------------------------------
// What the client writes
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Length {
    /// The shortest encoding of the payload's length.
    Natural,
    /// The 16-bit or 64-bit form for a length that fits a shorter one.
    NonMinimal16,
    NonMinimal64,
    /// A declared length that is not the payload's.
    Lie(u64),
}

#[derive(Clone, Debug)]
struct FrameSpec {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
    length: Length,
}

impl FrameSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | (self.rsv & 7) << 4 | (self.opcode & 15));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let (declared, form) = match self.length {
            Length::Natural => (self.payload.len() as u64, 0),
            Length::NonMinimal16 => (self.payload.len() as u64, 16),
            Length::NonMinimal64 => (self.payload.len() as u64, 64),
            Length::Lie(n) => (n, 0),
        };
        if form == 64 || declared > 65535 {
            out.push(mask_bit | 127);
            out.extend_from_slice(&declared.to_be_bytes());
        } else if form == 16 || declared > 125 {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(declared as u16).to_be_bytes());
        } else {
            out.push(mask_bit | declared as u8);
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
    }
}

fn client_message_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            r#"{"type":"ping"}"#,
            r#"{"type":"subscribe","sessionId":"fuzz"}"#,
            r#"{"type":"subscribe","channel":"c","since":{"seq":0,"epoch":"e"}}"#,
            r#"{"type":"unsubscribe"}"#,
            r#"{"type":"chat","text":"hello"}"#,
            "not json",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        support::json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => client_message_text(),
        2 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (any::<u16>(), "[a-z]{0,20}").prop_map(|(code, reason)| {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(reason.as_bytes());
            p
        }),
        1 => (MAX_MESSAGE_SIZE - 64..MAX_MESSAGE_SIZE + 64).prop_map(|n| {
            format!(r#"{{"type":"x","p":"{}"}}"#, "a".repeat(n.saturating_sub(20))).into_bytes()
        }),
    ]
}

fn length() -> impl Strategy<Value = Length> {
    prop_oneof![
        12 => Just(Length::Natural),
        1 => Just(Length::NonMinimal16),
        1 => Just(Length::NonMinimal64),
        1 => prop_oneof![0u64..300, Just(u64::MAX), Just(1 << 63), Just(MAX_MESSAGE_SIZE as u64 + 1)]
            .prop_map(Length::Lie),
    ]
}

fn mask() -> impl Strategy<Value = Option<[u8; 4]>> {
    prop_oneof![9 => any::<[u8; 4]>().prop_map(Some), 1 => Just(None)]
}

fn opcode() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]),
        1 => 0u8..16,
    ]
}

fn rsv() -> impl Strategy<Value = u8> {
    prop_oneof![12 => Just(0u8), 1 => 0u8..8]
}

/// One frame of any shape.
fn frame() -> impl Strategy<Value = FrameSpec> {
    (
        prop::bool::weighted(0.85),
        rsv(),
        opcode(),
        mask(),
        payload(),
        length(),
    )
        .prop_map(|(fin, rsv, opcode, mask, payload, length)| FrameSpec {
            fin,
            rsv,
            opcode,
            mask,
            payload,
            length,
        })
}

/// A well-formed message split into fragments, control frames possibly in between.
fn fragmented_message() -> impl Strategy<Value = Vec<FrameSpec>> {
    (
        client_message_text(),
        prop::collection::vec(any::<Index>(), 1..5),
        prop::collection::vec(
            (any::<Index>(), prop::sample::select(vec![9u8, 10, 8])),
            0..3,
        ),
        any::<[u8; 4]>(),
    )
        .prop_map(|(text, cuts, controls, key)| {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(text.len() + 1)).collect();
            points.push(0);
            points.push(text.len());
            points.sort_unstable();
            points.dedup();
            let pieces: Vec<&[u8]> = points.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            let last = pieces.len() - 1;
            let mut frames: Vec<FrameSpec> = pieces
                .iter()
                .enumerate()
                .map(|(i, piece)| FrameSpec {
                    fin: i == last,
                    rsv: 0,
                    opcode: if i == 0 { 1 } else { 0 },
                    mask: Some(key),
                    payload: piece.to_vec(),
                    length: Length::Natural,
                })
                .collect();
            for (at, opcode) in controls {
                let payload = if opcode == 8 {
                    1000u16.to_be_bytes().to_vec()
                } else {
                    b"c".to_vec()
                };
                let control = FrameSpec {
                    fin: true,
                    rsv: 0,
                    opcode,
                    mask: Some(key),
                    payload,
                    length: Length::Natural,
                };
                frames.insert(at.index(frames.len() + 1), control);
            }
            frames
        })
}

fn frame_stream() -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<Vec<u8>> = support::corpus(TARGET)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let segment = prop_oneof![
        6 => frame().prop_map(|f| vec![f]),
        4 => fragmented_message(),
        // A burst of one frame (pings, pongs, small messages), bounded.
        1 => (frame(), 2usize..200).prop_map(|(f, n)| vec![f; n]),
    ];
    let frames = prop::collection::vec(segment, 1..6).prop_map(|segments| {
        let mut bytes = Vec::new();
        for frame in segments.iter().flatten() {
            frame.encode(&mut bytes);
        }
        bytes
    });
    prop_oneof![
        4 => frames,
        3 => support::mutated_seed(seeds),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// How the client leaves.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Half-closes and reads until the server closes: the server must close.
    HalfCloseAndRead,
    /// Resets the connection (SO_LINGER 0) without reading.
    Reset,
    /// Closes without reading what the server sent.
    Drop,
}

#[derive(Clone)]
struct Case {
    /// The request, mutated in a few cases: hostile HTTP before the frames.
    handshake_edits: Vec<support::Mutation>,
    stream: Vec<u8>,
    /// Where the stream is cut into separate writes, with a short pause between them.
    cuts: Vec<Index>,
    /// Host notifications to the client's session, one before each write: the server
    /// writes to the socket while it reads the garbage.
    publications: usize,
    ending: Ending,
}

/// The stream in hex, so a failing case can be replayed with `xxd -r -p` or saved to the
/// corpus as is.
impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let hex: String = self.stream.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("Case")
            .field("handshake_edits", &self.handshake_edits)
            .field("stream_hex", &hex)
            .field("cuts", &self.cuts)
            .field("publications", &self.publications)
            .field("ending", &self.ending)
            .finish()
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![9 => Just(Vec::new()), 1 => support::mutations()],
        frame_stream(),
        prop::collection::vec(any::<Index>(), 0..4),
        prop_oneof![2 => Just(0usize), 1 => 1usize..4],
        prop_oneof![
            6 => Just(Ending::HalfCloseAndRead),
            1 => Just(Ending::Reset),
            1 => Just(Ending::Drop),
        ],
    )
        .prop_map(
            |(handshake_edits, stream, cuts, publications, ending)| Case {
                handshake_edits,
                stream,
                cuts,
                publications,
                ending,
            },
        )
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// The fuzz clients' session, which the host publishes to during a case.
const SESSION: &str = "fuzz";
const REQUEST: &[u8] = b"GET /ws?sessionId=fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// SO_LINGER 0: closing the socket sends a reset instead of a FIN.
fn reset_on_close(socket: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Reads until the end of the response head; returns the head and what followed it.
fn read_head(socket: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 4);
    let rest = buf.split_off(end);
    (String::from_utf8_lossy(&buf).into_owned(), rest)
}

/// Checks that `bytes` are whole, well-formed server frames (RFC 6455: unmasked, no RSV,
/// control frames short and whole, text frames UTF-8 JSON, a valid close code).
fn check_server_frames(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut seen = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes.get(at..at + 2).ok_or("a cut frame header")?;
        let (fin, rsv, opcode) = (header[0] & 0x80 != 0, header[0] & 0x70, header[0] & 0x0f);
        if header[1] & 0x80 != 0 {
            return Err("a masked server frame".into());
        }
        if rsv != 0 {
            return Err("RSV bits in a server frame".into());
        }
        let (len, skip) = match header[1] & 0x7f {
            126 => (
                u16::from_be_bytes(bytes.get(at + 2..at + 4).ok_or("cut")?.try_into().unwrap())
                    as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(bytes.get(at + 2..at + 10).ok_or("cut")?.try_into().unwrap())
                    as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let payload = bytes.get(at + skip..at + skip + len).ok_or_else(|| {
            format!(
                "a frame cut short ({} of {len} bytes)",
                bytes.len() - at - skip
            )
        })?;
        at += skip + len;
        match opcode {
            1 => {
                if !fin {
                    return Err("a fragmented server message".into());
                }
                let text = std::str::from_utf8(payload).map_err(|_| "a text frame not UTF-8")?;
                let json: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| format!("a text frame not JSON: {e}"))?;
                let kind = json["type"].as_str().ok_or("a message without type")?;
                seen.push(kind.to_string());
            }
            8..=10 => {
                if !fin || len > 125 {
                    return Err("a bad server control frame".into());
                }
                if opcode == 8 {
                    if len == 1 {
                        return Err("a close frame with a one-byte payload".into());
                    }
                    if len >= 2 {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
                        if !valid {
                            return Err(format!("close code {code}"));
                        }
                        std::str::from_utf8(&payload[2..])
                            .map_err(|_| "a close reason not UTF-8")?;
                        seen.push(format!("close {code}"));
                    } else {
                        seen.push("close".into());
                    }
                    if at != bytes.len() {
                        return Err("frames after the close frame".into());
                    }
                }
            }
            other => return Err(format!("server opcode {other}")),
        }
    }
    Ok(seen)
}

/// What a case ended with, for the run's summary.
#[derive(Default)]
struct Tally {
    upgraded: AtomicUsize,
    refused_handshakes: AtomicUsize,
    close_frames: AtomicUsize,
    closed_without_close_frame: AtomicUsize,
    resets: AtomicUsize,
    not_read: AtomicUsize,
}

/// A mangled request, the stream and a FIN: the server answers as it likes, in time.
fn run_mangled_handshake(mut socket: TcpStream, case: &Case, tally: &Tally) -> Result<(), String> {
    let mut bytes = support::mutated(REQUEST, &case.handshake_edits);
    bytes.extend_from_slice(&case.stream);
    let _ = socket.write_all(&bytes);
    let _ = socket.shutdown(Shutdown::Write);
    let mut response = Vec::new();
    match socket.read_to_end(&mut response) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err("a mangled handshake was neither answered nor closed in time".into())
        }
        _ => {
            if response.starts_with(b"HTTP/1.1 101") {
                tally.upgraded.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.refused_handshakes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    }
}

fn run_case(server: &Server, case: &Case, tally: &Tally) -> Result<(), String> {
    let mut socket =
        TcpStream::connect(("127.0.0.1", server.port())).map_err(|e| format!("connect: {e}"))?;
    socket.set_read_timeout(Some(CASE_DEADLINE)).unwrap();
    socket.set_write_timeout(Some(CASE_DEADLINE)).unwrap();
    socket.set_nodelay(true).unwrap();
    if !case.handshake_edits.is_empty() {
        return run_mangled_handshake(socket, case, tally);
    }
    socket
        .write_all(REQUEST)
        .map_err(|e| format!("request: {e}"))?;
    let (head, mut received) = read_head(&mut socket);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("a valid handshake was refused: {head:?}"));
    }
    tally.upgraded.fetch_add(1, Ordering::Relaxed);

    let mut points: Vec<usize> = case
        .cuts
        .iter()
        .map(|c| c.index(case.stream.len() + 1))
        .collect();
    points.push(0);
    points.push(case.stream.len());
    points.sort_unstable();
    points.dedup();
    for (i, piece) in points.windows(2).enumerate() {
        if i < case.publications {
            let progress = format!(r#"{{"write":{i}}}"#);
            server
                .notify_ai_progress(SESSION, &progress)
                .map_err(|e| format!("notify: {e}"))?;
        }
        if socket.write_all(&case.stream[piece[0]..piece[1]]).is_err() {
            break; // the server closed already; what it sent is still read below
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    match case.ending {
        Ending::Reset => {
            reset_on_close(&socket);
            tally.not_read.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Ending::Drop => {
            tally.not_read.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Ending::HalfCloseAndRead => {}
    }
    let _ = socket.shutdown(Shutdown::Write);
    let started = Instant::now();
    let mut chunk = [0u8; 16384];
    loop {
        match socket.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "the server neither closed nor finished within {:?} after the client's FIN; \
                     it sent {:?}",
                    started.elapsed(),
                    check_server_frames(&received)
                ));
            }
            Err(_) => {
                // A reset after the server closed: what arrived before it still counts.
                tally.resets.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    let seen = check_server_frames(&received)?;
    // A client whose first frame is already bad may be closed before its greeting.
    let messages: Vec<&String> = seen.iter().filter(|s| !s.starts_with("close")).collect();
    if messages.first().is_some_and(|first| *first != "connection") {
        return Err(format!("the first message was not `connection`: {seen:?}"));
    }
    if seen.last().is_some_and(|s| s.starts_with("close")) {
        tally.close_frames.fetch_add(1, Ordering::Relaxed);
    } else {
        tally
            .closed_without_close_frame
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The server is still well
// ---------------------------------------------------------------------------

fn healthz(port: u16) -> Result<(), String> {
    let mut socket =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("healthz: {e}"))?;
    socket.set_read_timeout(Some(CASE_DEADLINE)).unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("healthz: {e}"))?;
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    if response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("healthz answered {response:?}"))
    }
}

/// A real client (tungstenite) subscribes and receives a notification the host sends.
fn normal_client_is_served(server: &Server, round: usize) -> Result<(), String> {
    use tokio_tungstenite::tungstenite::{client, Message};
    let session = format!("healthy-{round}");
    let socket = TcpStream::connect(("127.0.0.1", server.port())).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(CASE_DEADLINE)).unwrap();
    let url = format!("ws://127.0.0.1:{}/ws?sessionId={session}", server.port());
    let (mut ws, _) = client(url.as_str(), socket).map_err(|e| format!("handshake: {e}"))?;
    let mut next_type = || -> Result<serde_json::Value, String> {
        loop {
            match ws.read().map_err(|e| format!("read: {e}"))? {
                Message::Text(t) => return serde_json::from_str(&t).map_err(|e| e.to_string()),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return Err(format!("unexpected {other:?}")),
            }
        }
    };
    let hello = next_type()?;
    if hello["type"] != "connection" {
        return Err(format!("first message {hello}"));
    }
    // ?sessionId= subscribes at once; the notification follows the connection message.
    server
        .notify_ai_start(&session, r#"{"step":1}"#)
        .map_err(|e| format!("notify: {e}"))?;
    let mut message = next_type()?;
    // A session an earlier case notified shows its jobs first.
    if message["type"] == "jobs_snapshot" {
        message = next_type()?;
    }
    if message["type"] != "ai_start" || message["task"]["step"] != 1 {
        return Err(format!("expected ai_start, got {message}"));
    }
    ws.close(None).ok();
    let _ = ws.flush();
    Ok(())
}

fn active_connections(server: &Server) -> u64 {
    let stats: serde_json::Value = serde_json::from_str(&server.stats_json().unwrap()).unwrap();
    stats["activeConnections"].as_u64().unwrap()
}

/// Every fuzz connection is gone once the clients are: no task is left hanging.
fn connections_drain(server: &Server) -> Result<(), String> {
    let deadline = Instant::now() + CASE_DEADLINE;
    loop {
        let active = active_connections(server);
        if active == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{active} connections still active after every client left"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn case_with_health(
    server: &Server,
    case: &Case,
    tally: &Tally,
    round: usize,
) -> Result<(), String> {
    let started = Instant::now();
    let panics = support::panics();
    run_case(server, case, tally)?;
    if started.elapsed() > Duration::from_secs(1) {
        eprintln!("slow case ({:.1?}): {case:?}", started.elapsed());
    }
    healthz(server.port())?;
    if round.is_multiple_of(CLIENT_CHECK_EVERY) {
        normal_client_is_served(server, round)?;
    }
    // A panic in a connection task after its socket closed shows up here.
    if support::panics() != panics {
        return Err("a panic in the server (its message is above)".into());
    }
    Ok(())
}

#[test]
fn corpus_replays() {
    let server = start_server();
    let tally = Tally::default();
    for (round, (name, stream)) in support::corpus(TARGET).into_iter().enumerate() {
        for ending in [Ending::HalfCloseAndRead, Ending::Reset] {
            let case = Case {
                handshake_edits: Vec::new(),
                stream: stream.clone(),
                cuts: Vec::new(),
                publications: 1,
                ending,
            };
            if let Err(e) = case_with_health(&server, &case, &tally, round) {
                panic!("corpus seed {name} ({ending:?}): {e}");
            }
        }
    }
    normal_client_is_served(&server, usize::MAX).unwrap();
    connections_drain(&server).unwrap();
    server.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_frame_path_survives_anything_a_client_sends() {
    let server = start_server();
    let tally = Tally::default();
    let round = AtomicUsize::new(0);
    let mut runner = TestRunner::new(support::config(TARGET, 300));
    let started = Instant::now();
    let result = runner.run(&case(), |case| {
        let n = round.fetch_add(1, Ordering::Relaxed);
        case_with_health(&server, &case, &tally, n).map_err(TestCaseError::fail)
    });
    eprintln!(
        "fuzz {TARGET}: {} cases in {:.1?}: {} upgraded, {} mangled handshakes refused, \
         {} ended with a close frame, {} closed without one, {} resets, {} not read",
        round.load(Ordering::Relaxed),
        started.elapsed(),
        tally.upgraded.load(Ordering::Relaxed),
        tally.refused_handshakes.load(Ordering::Relaxed),
        tally.close_frames.load(Ordering::Relaxed),
        tally.closed_without_close_frame.load(Ordering::Relaxed),
        tally.resets.load(Ordering::Relaxed),
        tally.not_read.load(Ordering::Relaxed),
    );
    result.unwrap();
    normal_client_is_served(&server, usize::MAX).unwrap();
    connections_drain(&server).unwrap();
    server.stop(Duration::from_secs(5)).unwrap();
}
