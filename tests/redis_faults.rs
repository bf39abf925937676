//! Faults of the Redis broker with nodes in processes of their own (the `herald` binary,
//! a real host of Herald, publishing through its HTTP API): a node killed with SIGKILL,
//! a node frozen with SIGSTOP; and Redis behind AUTH and TLS. Every redis-server is the
//! test's own, on a free loopback port.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use common::{next_json, send, Ws, WAIT};
use futures_util::StreamExt;
use herald::{Config, ErrorKind, Server};
use redis_server::Redis;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const API_KEY: &str = "faults-api-key-0123456789";
/// A client's byte budget on the nodes here: the replay after the SIGSTOP test's freeze
/// is a few MB, and a replay that could never fit the budget is refused
/// (`recovered: false`, the client refetches) rather than sent to evict the client.
const REPLAY_BUDGET: usize = 16 << 20;

/// A Herald node in a process of its own: the `herald` binary with the Redis broker.
/// Killed (SIGKILL) when dropped.
struct NodeProcess {
    child: Child,
    port: u16,
}

impl NodeProcess {
    fn start(url: &str, prefix: &str) -> NodeProcess {
        NodeProcess::try_start(url, prefix, &[]).unwrap_or_else(|stderr| {
            panic!("the herald node did not start: {stderr}");
        })
    }

    /// Starts the binary with `env` added; Err(its stderr) when it exits instead.
    fn try_start(url: &str, prefix: &str, env: &[(&str, &str)]) -> Result<NodeProcess, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file =
            std::env::temp_dir().join(format!("herald-faults-{}-{n}.toml", std::process::id()));
        let toml = format!(
            "host = \"127.0.0.1\"\nport = 0\napi_key = \"{API_KEY}\"\n\
             client_queue_bytes = {REPLAY_BUDGET}\n\
             [history]\nsize = 4096\n\
             [broker.redis]\nurl = \"{url}\"\nprefix = \"{prefix}\"\ntimeout_ms = 1000\n"
        );
        std::fs::write(&file, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(&file)
            .env_remove("HERALD_API_KEY")
            .env("HERALD_LOG", "off")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let drained = {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                stderr.lock().unwrap().push_str(&text);
            })
        };
        let port = common::herald_listening_port(child.stdout.take().unwrap());
        let _ = std::fs::remove_file(file);
        match port {
            Some(port) => Ok(NodeProcess { child, port }),
            None => {
                // It exited: the reason is on stderr.
                let status = child.wait().unwrap();
                drained.join().unwrap();
                let text = stderr.lock().unwrap().clone();
                Err(format!("{status}: {text}"))
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signals a child process this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// SIGKILL, and reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One HTTP/1.1 request to the node's API; (status, body).
    fn http(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(WAIT))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {reply:?}")))?;
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, body.to_string()))
    }

    /// A publication through the node's HTTP API: Ok once the node answered 202, which
    /// with the Redis broker means Redis holds it.
    fn publish(&self, channel: &str, data: &Value) -> Result<(), String> {
        NodeProcess::publish_to(self.port, channel, data)
    }

    fn stats(&self) -> Value {
        let (status, body) = self.http("GET", "/api/ws/stats", "").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An in-process node on the same Redis (a host embedding Herald).
fn node(url: &str, prefix: &str) -> Server {
    let json = serde_json::json!({
        "port": 0,
        "history": {"size": 4096},
        "broker": {"redis": {"url": url, "prefix": prefix, "timeout_ms": 1000}},
    });
    Server::start(Config::from_json(&json.to_string()).unwrap()).unwrap()
}

/// A WebSocket client of the node on `port`, subscribed to `channel` (from `since` when
/// given); returns it and the `subscribed` reply.
async fn subscriber(port: u16, channel: &str, since: Option<(u64, &str)>) -> (Ws, Value) {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect");
    assert_eq!(next_json(&mut ws).await["type"], "connection");
    let mut subscribe = serde_json::json!({"type": "subscribe", "channel": channel});
    if let Some((seq, epoch)) = since {
        subscribe["since"] = serde_json::json!({"seq": seq, "epoch": epoch});
    }
    send(&mut ws, &subscribe.to_string()).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    (ws, reply)
}

/// What one client received of a channel: (seq, i) in arrival order.
#[derive(Default)]
struct Received {
    notes: Vec<(u64, u64)>,
}

impl Received {
    fn last_seq(&self) -> u64 {
        self.notes.last().map_or(0, |(seq, _)| *seq)
    }

    /// Reads notes until the connection ends (closed, reset, or its node killed);
    /// returns the close code, if a close frame came.
    async fn read_until_closed(&mut self, ws: &mut Ws) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("neither a message nor the end of the connection came");
            match next {
                Some(Ok(Message::Text(text))) => self.note(&serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Reads notes until the one with seq `last`.
    async fn read_through(&mut self, ws: &mut Ws, last: u64) {
        while self.last_seq() < last {
            let m = next_json(ws).await;
            self.note(&m);
        }
    }

    fn note(&mut self, m: &Value) {
        if m["type"] == "note" {
            self.notes
                .push((m["seq"].as_u64().unwrap(), m["i"].as_u64().unwrap()));
        }
    }

    /// Every seq from 1 to `last` once, in order: no gap, no duplicate.
    fn assert_complete(&self, who: &str, last: u64) {
        let seqs: Vec<u64> = self.notes.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "{who}: a gap or a duplicate"
        );
    }

    fn ids(&self) -> BTreeSet<u64> {
        self.notes.iter().map(|(_, i)| *i).collect()
    }
}

fn note(i: u64) -> Value {
    serde_json::json!({"type": "note", "i": i})
}

fn channel_seq(redis: &Redis, prefix: &str, channel: &str) -> u64 {
    let seq: Option<u64> = redis.query_as(&["HGET", &format!("{prefix}meta:{channel}"), "seq"]);
    seq.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_loses_nothing_that_reached_redis() {
    let mut redis = Redis::start();
    let prefix = "sigkill:";
    let mut a = NodeProcess::start(&redis.url(), prefix);
    let b = NodeProcess::start(&redis.url(), prefix);
    let c = node(&redis.url(), prefix);

    // Three clients on A; bystanders on B and on C, which must be served throughout.
    let mut on_a = Vec::new();
    let mut epoch = String::new();
    for _ in 0..3 {
        let (ws, reply) = subscriber(a.port, "jobs", None).await;
        epoch = reply["epoch"].as_str().unwrap().to_string();
        on_a.push(ws);
    }
    let (mut on_b, _) = subscriber(b.port, "jobs", None).await;
    let (mut on_c, _) = subscriber(c.port(), "jobs", None).await;

    // A's host publishes without pause, each publication confirmed (202) or not.
    let confirmed = Arc::new(Mutex::new(Vec::new()));
    let publisher = {
        let (port, confirmed) = (a.port, Arc::clone(&confirmed));
        std::thread::spawn(move || {
            for i in 1..=5000u64 {
                match NodeProcess::publish_to(port, "jobs", &note(i)) {
                    Ok(()) => confirmed.lock().unwrap().push(i),
                    Err(e) => return Some(e),
                }
            }
            None
        })
    };
    // Two of A's clients read as it goes; the third reads nothing until A is dead, so
    // publications are queued on A (or in flight) when it dies.
    let mut received: Vec<Received> = (0..3).map(|_| Received::default()).collect();
    let mut readers = Vec::new();
    for mut ws in on_a.drain(1..) {
        readers.push(tokio::spawn(async move {
            let mut got = Received::default();
            got.read_until_closed(&mut ws).await;
            got
        }));
    }
    let deadline = Instant::now() + WAIT;
    while confirmed.lock().unwrap().len() < 200 {
        if publisher.is_finished() {
            panic!("A's host failed early: {:?}", publisher.join().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "A confirmed too few publications"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL mid-stream, while a publication is probably in flight.
    a.kill();
    let failure = common::blocking(move || publisher.join().unwrap()).await;
    assert!(failure.is_some(), "A's host must notice that A is gone");
    let confirmed_on_a = confirmed.lock().unwrap().clone();

    // The other nodes go on: B's and C's hosts publish, their clients hear it.
    for i in 10_001..=10_020 {
        b.publish("jobs", &note(i))
            .expect("B publishes while A is dead");
    }
    let c2 = c.clone();
    common::blocking(move || {
        for i in 20_001..=20_010 {
            c2.publish("jobs", &note(i).to_string())
                .expect("C publishes while A is dead");
        }
    })
    .await;
    let last = channel_seq(&redis, prefix, "jobs");
    assert!(
        last as usize >= confirmed_on_a.len() + 30,
        "Redis has {last}"
    );

    received[0].read_until_closed(&mut on_a[0]).await;
    for (k, reader) in readers.into_iter().enumerate() {
        received[k + 1] = reader.await.unwrap();
    }
    // A's clients come back on B with `since`: every publication Redis holds, the
    // ones A confirmed and any that reached Redis unconfirmed, each once and in order.
    let mut sinces = Vec::new();
    for (k, got) in received.iter_mut().enumerate() {
        let since = got.last_seq();
        sinces.push(since);
        let (mut ws, reply) = subscriber(b.port, "jobs", Some((since, &epoch))).await;
        assert_eq!(reply["recovered"], true, "client {k} at {since}: {reply}");
        got.read_through(&mut ws, last).await;
        got.assert_complete(&format!("A's client {k}"), last);
        let ids = got.ids();
        let lost: Vec<_> = confirmed_on_a.iter().filter(|i| !ids.contains(i)).collect();
        assert!(lost.is_empty(), "A's client {k} lost confirmed {lost:?}");
    }
    for (who, ws) in [("B's client", &mut on_b), ("C's client", &mut on_c)] {
        let mut got = Received::default();
        got.read_through(ws, last).await;
        got.assert_complete(who, last);
    }
    assert_eq!(b.stats()["broker"]["connected"], true);
    // And with Redis gone too, B's host is told its publication was not taken.
    redis.kill();
    let refused = b.publish("jobs", &note(30_001)).unwrap_err();
    assert!(
        refused.contains("503") && refused.contains(r#""code":"unavailable""#),
        "{refused}"
    );
    eprintln!(
        "sigkill: A confirmed {} publications before SIGKILL; Redis held {last}; \
         A's clients, at seq {sinces:?} when A died, recovered all on B",
        confirmed_on_a.len()
    );
}

impl NodeProcess {
    /// [`NodeProcess::publish`] by port, for a thread that does not own the node; an
    /// answer other than 202 or a broken connection is an error.
    fn publish_to(port: u16, channel: &str, data: &Value) -> Result<(), String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        let _ = stream.set_read_timeout(Some(WAIT));
        let body = serde_json::json!({"channel": channel, "data": data}).to_string();
        let request = format!(
            "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .map_err(|e| e.to_string())?;
        if reply.starts_with("HTTP/1.1 202") {
            Ok(())
        } else {
            Err(format!("answered {reply}"))
        }
    }
}

/// How many nodes listen to `channel` in Redis.
fn listeners(redis: &Redis, prefix: &str, channel: &str) -> i64 {
    let topic = format!("{prefix}ch:{channel}");
    let (_, count): (String, i64) = redis.query_as(&["PUBSUB", "NUMSUB", &topic]);
    count
}

/// A note of `size` bytes of padding, published by an in-process node's host.
async fn publish(from: &Server, i: u64, size: usize) -> herald::Result<()> {
    let from = from.clone();
    let text = serde_json::json!({"type": "note", "i": i, "pad": "x".repeat(size)});
    common::blocking(move || from.publish("feed", &text.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_delays_no_other_and_its_clients_recover_when_it_resumes() {
    // Redis's default for PUB/SUB connections is `pubsub 32mb 8mb 60`; lowered here so
    // the stopped node reaches it after a few megabytes.
    let redis = Redis::start_with(&["--client-output-buffer-limit", "pubsub 1mb 256kb 1"]);
    let prefix = "sigstop:";
    let slow = NodeProcess::start(&redis.url(), prefix);
    let healthy = node(&redis.url(), prefix);
    let (mut on_slow, reply) = subscriber(slow.port, "feed", None).await;
    let epoch = reply["epoch"].as_str().unwrap().to_string();
    let (mut on_healthy, _) = subscriber(healthy.port(), "feed", None).await;
    assert_eq!(listeners(&redis, prefix, "feed"), 2);
    for i in 1..=5 {
        publish(&healthy, i, 10).await.unwrap();
    }
    let mut slow_got = Received::default();
    slow_got.read_through(&mut on_slow, 5).await;

    slow.signal(libc::SIGSTOP);
    // The healthy node's host keeps publishing (4 KiB each) and its client keeps
    // receiving, while Redis buffers for the frozen node until its limit, then drops it.
    let mut healthy_got = Received::default();
    healthy_got.read_through(&mut on_healthy, 5).await;
    let mut slowest = Duration::ZERO;
    let mut i = 5;
    let dropped = loop {
        if listeners(&redis, prefix, "feed") == 1 {
            break true;
        }
        if i >= 3000 {
            break false;
        }
        for _ in 0..50 {
            i += 1;
            let started = Instant::now();
            publish(&healthy, i, 4096)
                .await
                .expect("the healthy node publishes while the other is stopped");
            slowest = slowest.max(started.elapsed());
            let m = next_json(&mut on_healthy).await;
            healthy_got.note(&m);
        }
    };
    assert!(
        dropped,
        "Redis never dropped the stopped node ({i} publications)"
    );
    let last = i;
    healthy_got.assert_complete("the healthy node's client", last);
    // A call costs a Redis round trip; the bound is the broker timeout, past which the
    // call would have failed.
    assert!(
        slowest < Duration::from_secs(1),
        "slowest publish {slowest:?}"
    );

    slow.signal(libc::SIGCONT);
    // The slow node finds its link dropped, reconnects, and asks its clients to come
    // back: what Redis published meanwhile never reached it.
    let code = slow_got.read_until_closed(&mut on_slow).await;
    assert_eq!(
        code,
        Some(1012),
        "the slow node's client is told to reconnect"
    );
    let since = slow_got.last_seq();
    assert!(
        since < last,
        "the stopped node delivered everything: {since}"
    );
    let (mut back, reply) = subscriber(slow.port, "feed", Some((since, &epoch))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    slow_got.read_through(&mut back, last).await;
    slow_got.assert_complete("the slow node's client", last);
    let health = &slow.stats()["broker"];
    assert_eq!(health["connected"], true, "{health}");
    assert!(health["reconnects"].as_u64() >= Some(1), "{health}");
    // It listens again, and hears live publications.
    assert_eq!(listeners(&redis, prefix, "feed"), 2);
    publish(&healthy, last + 1, 10).await.unwrap();
    slow_got.read_through(&mut back, last + 1).await;
    eprintln!(
        "sigstop: Redis dropped the stopped node after {} publications of 4 KiB; the healthy \
         node's slowest publish took {slowest:?}; the stopped node had delivered {since}, its \
         client recovered the rest",
        last - 5
    );
}

fn try_node(url: &str, prefix: &str) -> herald::Result<Server> {
    let json = serde_json::json!({
        "port": 0,
        "broker": {"redis": {"url": url, "prefix": prefix, "timeout_ms": 1000}},
    });
    Server::start(Config::from_json(&json.to_string())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_through_the_url_and_a_clear_error_for_wrong_credentials() {
    let password = "s3cret-default-pw";
    let redis = Redis::start_with(&["--requirepass", password]);
    // An ACL user who may touch only the app's prefix: keys and PUB/SUB channels.
    let acl: String = redis.query_as(&[
        "ACL",
        "SETUSER",
        "herald-app",
        "on",
        ">user-pw-123",
        "~auth:*",
        "&auth:*",
        "+@all",
    ]);
    assert_eq!(acl, "OK");
    let port = redis.port;
    for (url, why) in [
        (
            format!("redis://:wrong-pw@127.0.0.1:{port}"),
            "a wrong password",
        ),
        (
            format!("redis://herald-app:wrong-pw@127.0.0.1:{port}"),
            "a wrong user password",
        ),
        (format!("redis://127.0.0.1:{port}"), "no password"),
    ] {
        let url2 = url.clone();
        let Err(err) = common::blocking(move || try_node(&url2, "auth:")).await else {
            panic!("a node started with {why}");
        };
        let message = err.message().to_string();
        eprintln!("auth: {why}: {message}");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{why}: {err:?}");
        assert!(message.contains("authentication"), "{why}: {message}");
        assert!(
            !message.contains("wrong-pw"),
            "the password leaked: {message}"
        );
    }
    // The default user's password, and the ACL user: both nodes share the channels.
    let with_password = redis.url();
    let default_user = common::blocking(move || try_node(&with_password, "auth:"))
        .await
        .expect("the default user's password");
    let acl_url = format!("redis://herald-app:user-pw-123@127.0.0.1:{port}");
    let acl_user = common::blocking(move || try_node(&acl_url, "auth:"))
        .await
        .expect("the ACL user");
    let (mut ws, _) = subscriber(acl_user.port(), "news", None).await;
    publish_note(&default_user, "news", 1).await;
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["i"].as_u64(), m["seq"].as_u64()),
        (Some(1), Some(1)),
        "{m}"
    );
    let history = acl_user.clone();
    let history = common::blocking(move || history.history_json("news"))
        .await
        .unwrap();
    assert!(history.contains(r#""i":1"#), "{history}");
}

async fn publish_note(from: &Server, channel: &str, i: u64) {
    let (from, channel) = (from.clone(), channel.to_string());
    common::blocking(move || from.publish(&channel, &note(i).to_string()))
        .await
        .expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_reaches_a_tls_redis_whose_certificate_the_node_trusts() {
    assert!(Config::from_json(r#"{"broker":{"redis":{"url":"rediss://h:6380"}}}"#).is_ok());
    let redis = Redis::start_tls();
    let tls_url = format!("rediss://localhost:{}", redis.tls_port.unwrap());
    let prefix = "tls:";
    // The test CA is in no system store: the node refuses the certificate at start.
    let refused = NodeProcess::try_start(&tls_url, prefix, &[])
        .err()
        .expect("a node trusted a certificate of an unknown CA");
    assert!(
        refused.contains("cannot reach rediss://localhost") && refused.contains("certificate"),
        "{refused}"
    );
    eprintln!("tls: untrusted: {}", refused.trim());
    // Trusting the CA (SSL_CERT_FILE, read by the system-roots loader), it connects
    // over TLS and shares channels with a node on the plain port of the same Redis.
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca_cert.pem");
    let over_tls = NodeProcess::try_start(&tls_url, prefix, &[("SSL_CERT_FILE", ca)])
        .unwrap_or_else(|stderr| panic!("the TLS node did not start: {stderr}"));
    let plain = node(&redis.url(), prefix);
    let (mut on_tls, _) = subscriber(over_tls.port, "news", None).await;
    let (mut on_plain, _) = subscriber(plain.port(), "news", None).await;
    publish_note(&plain, "news", 1).await;
    over_tls.publish("news", &note(2)).unwrap();
    for ws in [&mut on_tls, &mut on_plain] {
        let mut got = Received::default();
        got.read_through(ws, 2).await;
        assert_eq!(got.notes, vec![(1, 1), (2, 2)]);
    }
    assert_eq!(over_tls.stats()["broker"]["connected"], true);
}
