//! Several Herald nodes and an emitter sharing one real Redis (a `redis-server` this
//! test starts on a free loopback port, without persistence, and kills at the end),
//! with real WebSocket clients on every node.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use common::{close_code, connect, next_json, send, subscribe, Client, WAIT};
use herald::{Config, ErrorKind, Server};
use redis_server::Redis;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn node(redis: &Redis, prefix: &str, extra: &str) -> Server {
    let mut json: Value = serde_json::from_str(extra).unwrap();
    json["port"] = 0.into();
    json["broker"] =
        serde_json::json!({"redis": {"url": redis.url(), "prefix": prefix, "timeout_ms": 1000}});
    Server::start(Config::from_json(&json.to_string()).unwrap()).unwrap()
}

fn emitter(redis: &Redis, prefix: &str) -> Server {
    node(redis, prefix, r#"{"listen":false}"#)
}

fn stats(server: &Server) -> Value {
    serde_json::from_str(&server.stats_json().unwrap()).unwrap()
}

/// Reads messages until `n` publications of `channel` arrived; returns their (seq, i).
async fn read_publications(client: &mut Client, n: usize) -> Vec<(u64, u64)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = next_json(&mut client.ws).await;
        if m["type"] == "note" {
            got.push((m["seq"].as_u64().unwrap(), m["i"].as_u64().unwrap()));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_from_any_node_reach_every_node_once_in_order() {
    let redis = Redis::start();
    let prefix = "fanout:";
    let nodes: Vec<Server> = (0..3).map(|_| node(&redis, prefix, "{}")).collect();
    let emitter = emitter(&redis, prefix);
    assert_eq!(emitter.port(), 0, "an emitter has no socket");
    // A worker publishes right after it starts.
    emitter.publish("warmup", r#"{"type":"w"}"#).unwrap();
    let mut clients = Vec::new();
    for server in &nodes {
        for _ in 0..2 {
            let mut client = connect(server, "").await;
            let reply = subscribe(&mut client.ws, "channel", "news").await;
            assert_eq!(reply["seq"], 0, "{reply}");
            clients.push(client);
        }
    }
    // Every node listens to the channel in Redis once, whatever its subscriber count.
    assert_eq!(
        redis.query(&["PUBSUB", "NUMSUB", "fanout:ch:news"]),
        redis::Value::Array(vec![
            redis::Value::BulkString(b"fanout:ch:news".to_vec()),
            redis::Value::Int(3)
        ])
    );
    let publishers: Vec<Server> = std::iter::once(emitter.clone())
        .chain(nodes.iter().cloned())
        .collect();
    let total = 200u64;
    common::blocking(move || {
        for i in 1..=total {
            let publisher = &publishers[i as usize % publishers.len()];
            publisher
                .publish("news", &format!(r#"{{"type":"note","i":{i}}}"#))
                .expect("publish through Redis");
        }
    })
    .await;
    let expected: Vec<(u64, u64)> = (1..=total).map(|i| (i, i)).collect();
    for client in &mut clients {
        assert_eq!(read_publications(client, total as usize).await, expected);
    }
    // Broadcast from one node reaches every client of every node, once.
    nodes[1].broadcast(r#"{"type":"all","n":1}"#).unwrap();
    for client in &mut clients {
        let m = next_json(&mut client.ws).await;
        assert_eq!(
            (m["type"].as_str(), m["n"].as_u64()),
            (Some("all"), Some(1))
        );
    }
    // So does the emitter's, and a user's clients hear what is sent to the user.
    emitter.broadcast(r#"{"type":"all","n":2}"#).unwrap();
    for client in &mut clients {
        assert_eq!(next_json(&mut client.ws).await["n"], 2);
    }
    let mut user_a = connect(&nodes[0], "?userId=ada").await;
    let mut user_b = connect(&nodes[2], "?userId=ada").await;
    // The user channel is subscribed once Redis answered the node.
    for server in [&nodes[0], &nodes[2]] {
        common::wait_stats(server, |s| s["subscriptions"] == 3).await;
    }
    emitter
        .broadcast_to_user("ada", r#"{"type":"for_ada"}"#)
        .unwrap();
    for user in [&mut user_a, &mut user_b] {
        let m = next_json(&mut user.ws).await;
        assert_eq!(
            (m["type"].as_str(), m["seq"].as_u64()),
            (Some("for_ada"), Some(1))
        );
    }
    // `send` from the emitter reaches one client on another node; unknown ids fail.
    let target = clients[5].id.clone();
    emitter.send(&target, r#"{"type":"direct"}"#).unwrap();
    assert_eq!(next_json(&mut clients[5].ws).await["type"], "direct");
    let err = emitter.send("00000000-0000000000000000", "{}").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownClient);
    // History is Redis's, read from any process.
    let history: Value = serde_json::from_str(&emitter.history_json("news").unwrap()).unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 200, "default history.size is 256");
    assert_eq!(history.last().unwrap()["seq"], 200);
    // Nothing else arrived anywhere: exactly once.
    nodes[0].broadcast(r#"{"type":"end"}"#).unwrap();
    for client in &mut clients {
        assert_eq!(next_json(&mut client.ws).await["type"], "end");
    }
    // The last subscriber of a node leaving unsubscribes that node in Redis.
    for client in clients.drain(4..) {
        drop(client);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let numsub = redis.query(&["PUBSUB", "NUMSUB", "fanout:ch:news"]);
        if numsub
            == redis::Value::Array(vec![
                redis::Value::BulkString(b"fanout:ch:news".to_vec()),
                redis::Value::Int(2),
            ])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never unsubscribed: {numsub:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = &stats(&nodes[0])["broker"];
    assert_eq!(health["kind"], "redis");
    assert_eq!(health["connected"], true);
    assert!(
        health["publishRoundTripUs"].as_u64().unwrap() > 0,
        "{health}"
    );
}

/// Position the client last processed.
struct Cursor {
    seq: u64,
    epoch: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_moves_between_nodes_lose_and_repeat_nothing() {
    let redis = Redis::start();
    let prefix = "moves:";
    let nodes: Vec<Server> = (0..3).map(|_| node(&redis, prefix, "{}")).collect();
    let emitter = emitter(&redis, prefix);
    let mut first = connect(&nodes[0], "").await;
    let reply = subscribe(&mut first.ws, "sessionId", "job").await;
    let mut cursor = Cursor {
        seq: reply["seq"].as_u64().unwrap(),
        epoch: reply["epoch"].as_str().unwrap().to_string(),
    };
    drop(first);
    // One client per node stays all along: subscribes landing on its node mid-stream
    // must not cost it a publication.
    let mut stayers = Vec::new();
    for server in &nodes {
        let mut stayer = connect(server, "").await;
        subscribe(&mut stayer.ws, "sessionId", "job").await;
        stayers.push(stayer);
    }
    // Publishes all along, one every half millisecond or so, at most 20000.
    let running = Arc::new(AtomicBool::new(true));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (running, published) = (Arc::clone(&running), Arc::clone(&published));
        std::thread::spawn(move || {
            for i in 1..=20_000u64 {
                if !running.load(Ordering::Relaxed) {
                    break;
                }
                emitter
                    .notify_ai_progress("job", &format!(r#"{{"i":{i}}}"#))
                    .expect("publish");
                published.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let mut seen = Vec::new();
    for hop in 0..100 {
        let server = &nodes[hop % nodes.len()];
        let query = format!("?sessionId=job&since={}&epoch={}", cursor.seq, cursor.epoch);
        let mut client = connect(server, &query).await;
        let reply = next_json(&mut client.ws).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        assert_eq!(reply["recovered"], true, "hop {hop}: {reply}");
        // Read a few (replayed, then live), then leave without a word.
        let want = 1 + hop % 5;
        for _ in 0..want {
            let m = next_json(&mut client.ws).await;
            assert_eq!(m["type"], "ai_progress", "{m}");
            assert_eq!(m["epoch"], cursor.epoch.as_str());
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(seq, cursor.seq + 1, "hop {hop}: a gap or a duplicate");
            assert_eq!(m["progress"]["i"].as_u64(), Some(seq));
            cursor.seq = seq;
            seen.push(seq);
        }
    }
    running.store(false, Ordering::Relaxed);
    publisher.join().unwrap();
    let last = published.load(Ordering::Relaxed);
    for stayer in &mut stayers {
        let mut expected = 1;
        loop {
            let m = next_json(&mut stayer.ws).await;
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(seq, expected, "a stayer missed or repeated a publication");
            expected = seq + 1;
            if seq == last {
                break;
            }
        }
    }
    assert!(seen.len() >= 100 && published.load(Ordering::Relaxed) >= seen.len() as u64);
    let recoveries: u64 = nodes
        .iter()
        .map(|n| stats(n)["recoveries"].as_u64().unwrap())
        .sum();
    assert_eq!(recoveries, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_stream_every_loss_is_visible() {
    let mut redis = Redis::start();
    let prefix = "kill:";
    let a = node(&redis, prefix, "{}");
    let b = node(&redis, prefix, "{}");
    let mut client = connect(&b, "").await;
    let reply = subscribe(&mut client.ws, "channel", "feed").await;
    let epoch = reply["epoch"].as_str().unwrap().to_string();
    for i in 1..=20 {
        a.publish("feed", &format!(r#"{{"type":"note","i":{i}}}"#))
            .unwrap();
    }
    let got = read_publications(&mut client, 20).await;
    assert_eq!(got.last(), Some(&(20, 20)));

    redis.kill();
    // Until the nodes notice, a publication may wait for its timeout; either way the
    // host is told: never OK-and-lost.
    let mut refused = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let a = a.clone();
        let result = common::blocking(move || a.publish("feed", r#"{"type":"note","i":0}"#)).await;
        let err = result.expect_err("Redis is down: the publish must fail");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
        refused += 1;
    }
    assert!(refused > 0);
    let down = stats(&a);
    assert_eq!(down["broker"]["connected"], false, "{down}");
    assert!(down["broker"]["publishErrors"].as_u64().is_some());

    redis.spawn();
    // Both nodes reconnect with backoff and resubscribe.
    for server in [&a, &b] {
        common::wait_stats(server, |s| {
            s["broker"]["connected"] == true && s["broker"]["reconnects"].as_u64() >= Some(1)
        })
        .await;
    }
    // B's clients are asked to come back: publications may have been missed.
    assert_eq!(close_code(&mut client.ws).await, Some(1012));
    // Redis lost everything: the channel has a new epoch, so recovery says so.
    let mut again = connect(&b, "").await;
    send(
        &mut again.ws,
        &format!(
            r#"{{"type":"subscribe","channel":"feed","since":{{"seq":20,"epoch":"{epoch}"}}}}"#
        ),
    )
    .await;
    let reply = next_json(&mut again.ws).await;
    assert_eq!(reply["type"], "subscribed");
    assert_eq!(reply["recovered"], false, "{reply}");
    let new_epoch = reply["epoch"].as_str().unwrap().to_string();
    assert_ne!(new_epoch, epoch, "the lost history shows as a new epoch");
    // And publications flow again, from seq 1 of the new epoch.
    a.publish("feed", r#"{"type":"note","i":1}"#).unwrap();
    let m = next_json(&mut again.ws).await;
    assert_eq!(
        (m["seq"].as_u64(), m["epoch"].as_str()),
        (Some(1), Some(new_epoch.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_link_is_restored_and_clients_recover_what_redis_kept() {
    let redis = Redis::start();
    let prefix = "link:";
    let a = node(&redis, prefix, "{}");
    let b = node(&redis, prefix, "{}");
    let mut client = connect(&b, "").await;
    let reply = subscribe(&mut client.ws, "channel", "feed").await;
    let epoch = reply["epoch"].as_str().unwrap().to_string();
    for i in 1..=5 {
        a.publish("feed", &format!(r#"{{"type":"note","i":{i}}}"#))
            .unwrap();
    }
    assert_eq!(
        read_publications(&mut client, 5).await.last(),
        Some(&(5, 5))
    );
    // Redis drops every node's PUB/SUB connection; its data stays.
    redis.query(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    for server in [&a, &b] {
        common::wait_stats(server, |s| {
            s["broker"]["connected"] == true && s["broker"]["reconnects"] == 1
        })
        .await;
    }
    // B may have missed publications while its link was down: its client is told.
    assert_eq!(close_code(&mut client.ws).await, Some(1012));
    for i in 6..=10 {
        a.publish("feed", &format!(r#"{{"type":"note","i":{i}}}"#))
            .unwrap();
    }
    let mut back = connect(&b, "").await;
    send(
        &mut back.ws,
        &format!(
            r#"{{"type":"subscribe","channel":"feed","since":{{"seq":5,"epoch":"{epoch}"}}}}"#
        ),
    )
    .await;
    let reply = next_json(&mut back.ws).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let got = read_publications(&mut back, 5).await;
    assert_eq!(got, (6..=10).map(|i| (i, i)).collect::<Vec<_>>());
}

#[test]
fn a_node_without_its_redis_does_not_start_and_an_emitter_needs_a_broker() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    drop(redis);
    let config = format!(r#"{{"port":0,"broker":{{"redis":{{"url":"{url}","timeout_ms":500}}}}}}"#);
    let Err(err) = Server::start(Config::from_json(&config).unwrap()) else {
        panic!("a node started without its Redis");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(err.message().contains("cannot reach"), "{}", err.message());
    let err = Config::from_json(r#"{"listen":false}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    for url in ["http://x", "redis:/x"] {
        let json = format!(r#"{{"broker":{{"redis":{{"url":"{url}"}}}}}}"#);
        let err = Config::from_json(&json).unwrap_err();
        assert!(
            err.message().contains("broker.redis.url"),
            "{}",
            err.message()
        );
    }
    let err = Config::from_json(r#"{"broker":{}}"#).unwrap_err();
    assert!(err.message().contains("broker"), "{}", err.message());
}

/// The jobs of a session as a node reads them from Redis: `(seq, jobs)`.
fn jobs_of(server: &Server, session: &str) -> (u64, Value) {
    let reply: Value = serde_json::from_str(&server.jobs_json(session).unwrap()).unwrap();
    (reply["seq"].as_u64().unwrap(), reply["jobs"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_state_is_the_same_on_every_node_and_a_late_subscriber_continues_from_it() {
    let redis = Redis::start();
    let prefix = "jobs:";
    let extra = r#"{"jobs":{"ttl_ms":800}}"#;
    let (a, b) = (node(&redis, prefix, extra), node(&redis, prefix, extra));
    let emitter = node(&redis, prefix, r#"{"listen":false,"jobs":{"ttl_ms":800}}"#);
    emitter
        .notify_ai_start("s", r#"{"jobId":"j","prompt":"p"}"#)
        .unwrap();
    emitter.notify_ai_start("s", r#"{}"#).unwrap();
    let words: Vec<String> = (0..60).map(|n| format!("t{n}·")).collect();
    for word in &words[..30] {
        let delta = serde_json::json!({"jobId": "j", "text": word}).to_string();
        emitter.notify_ai_delta("s", &delta).unwrap();
    }
    emitter
        .notify_ai_progress("s", r#"{"jobId":"j","pct":50}"#)
        .unwrap();
    // Host calls with Redis return once Redis holds them: both nodes read the same.
    let (seq_a, jobs_a) = jobs_of(&a, "s");
    let (seq_b, jobs_b) = jobs_of(&b, "s");
    assert_eq!((seq_a, &jobs_a), (seq_b, &jobs_b));
    assert_eq!(seq_a, 33);
    assert_eq!(jobs_a[0]["jobId"], "j");
    assert_eq!(jobs_a[0]["text"], words[..30].concat());
    assert_eq!(jobs_a[0]["progress"]["pct"], 50);
    assert_eq!(jobs_a[0]["task"]["prompt"], "p");
    assert_eq!(jobs_a[1]["jobId"], Value::Null);
    assert_eq!(jobs_a[1]["state"], "running");
    // The text lives in a key of its own, which expires like the session's others.
    let text_key = "jobs:jobtext:session:s\nj";
    assert_eq!(redis.query(&["EXISTS", text_key]), redis::Value::Int(1));
    let redis::Value::Int(pttl) = redis.query(&["PTTL", text_key]) else {
        panic!("PTTL")
    };
    assert!(pttl > 0, "the text key expires ({pttl})");

    // A subscriber on node b: the snapshot at the reply's seq, then the tail.
    let mut late = connect(&b, "").await;
    let reply = subscribe(&mut late.ws, "sessionId", "s").await;
    let snapshot = next_json(&mut late.ws).await;
    assert_eq!(snapshot["type"], "jobs_snapshot", "{snapshot}");
    assert_eq!(snapshot["seq"], reply["seq"]);
    assert_eq!(snapshot["jobs"], jobs_a);
    let mut text = snapshot["jobs"][0]["text"].as_str().unwrap().to_string();
    let mut last = snapshot["seq"].as_u64().unwrap();
    for word in &words[30..] {
        let delta = serde_json::json!({"jobId": "j", "text": word}).to_string();
        a.notify_ai_delta("s", &delta).unwrap();
    }
    a.notify_ai_complete("s", r#"{"jobId":"j"}"#).unwrap();
    a.notify_ai_cancelled("s", r#"{"why":"stop"}"#).unwrap();
    loop {
        let m = next_json(&mut late.ws).await;
        assert_eq!(
            m["seq"].as_u64().unwrap(),
            last + 1,
            "no gap, no duplicate: {m}"
        );
        last += 1;
        match m["type"].as_str().unwrap() {
            "ai_delta" => text.push_str(m["delta"]["text"].as_str().unwrap()),
            "ai_complete" => {}
            "ai_cancelled" => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(text, words.concat());
    let (_, jobs) = jobs_of(&b, "s");
    assert_eq!(jobs[0]["state"], "complete");
    assert_eq!(jobs[0]["text"], words.concat());
    assert_eq!(jobs[1]["state"], "cancelled");
    assert_eq!(jobs[1]["cancelled"]["why"], "stop");
    // A recovery that fails (another epoch) gets the snapshot instead of nothing.
    let mut back = connect(&a, "?sessionId=s&since=3&epoch=gone").await;
    let reply = next_json(&mut back.ws).await;
    assert_eq!(
        (reply["type"].as_str(), reply["recovered"].as_bool()),
        (Some("subscribed"), Some(false))
    );
    let snapshot = next_json(&mut back.ws).await;
    assert_eq!(snapshot["type"], "jobs_snapshot");
    assert_eq!(snapshot["seq"], reply["seq"]);
    assert_eq!(snapshot["jobs"], jobs);
    // Ended jobs leave every node's snapshot after jobs.ttl_ms.
    let deadline = Instant::now() + WAIT;
    while jobs_of(&a, "s").1 != serde_json::json!([]) {
        assert!(Instant::now() < deadline, "jobs never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(jobs_of(&b, "s").1, serde_json::json!([]));
    // And Redis forgets them: every job key of the session expires.
    let keys = [
        "jobs:jobs:session:s",
        "jobs:jobids:session:s",
        "jobs:jobtext:session:s\nj",
    ];
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<_> = keys
            .iter()
            .filter(|k| redis.query(&["EXISTS", k]) != redis::Value::Int(0))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{left:?} never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
