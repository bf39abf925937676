//! Presence over real sockets: members, statuses, join and leave events on one node;
//! across two nodes sharing a real Redis; and a node killed with SIGKILL (a separate
//! `herald` process) whose clients leave presence once their ttl passes.

mod common;

use common::{connect, next_json, send, start, Client, Ws, WAIT};
use herald::{AuthDecision, AuthRequest, Config, Server};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads until a message of `kind` arrives (others are skipped).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let m = next_json(ws).await;
        if m["type"] == kind {
            return m;
        }
    }
}

/// Reads until a `user_presence` event with `action` about `client_id` arrives.
async fn presence_event(ws: &mut Ws, action: &str, client_id: &str) -> Value {
    loop {
        let m = next_of(ws, "user_presence").await;
        if m["action"] == action && m["data"]["clientId"] == client_id {
            return m;
        }
    }
}

async fn subscribe_with_presence(client: &mut Client, channel: &str) -> Value {
    let message = json!({"type":"subscribe","channel":channel,"presence":true});
    send(&mut client.ws, &message.to_string()).await;
    next_of(&mut client.ws, "subscribed").await
}

async fn query(client: &mut Client, channel: &str) -> Value {
    send(
        &mut client.ws,
        &json!({"type":"presence","channel":channel}).to_string(),
    )
    .await;
    next_of(&mut client.ws, "presence").await
}

fn member_ids(listing: &Value) -> Vec<String> {
    let mut ids: Vec<String> = listing["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["clientId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn host_presence(server: &Server, channel: &str) -> Value {
    serde_json::from_str(&server.presence_json(channel).unwrap()).unwrap()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_statuses_joins_and_leaves_on_one_node() {
    let server = start("{}");
    let mut watcher = connect(&server, "?userId=ann").await;
    subscribe_with_presence(&mut watcher, "room").await;
    // Its own join comes first.
    let own = presence_event(&mut watcher.ws, "join", &watcher.id).await;
    assert_eq!(own["channel"], "room");
    assert_eq!(own["data"]["userId"], "ann");
    assert_eq!(own["data"]["status"], "online");

    let mut other = connect(&server, "?userId=bob").await;
    common::subscribe(&mut other.ws, "channel", "room").await;
    let join = presence_event(&mut watcher.ws, "join", &other.id).await;
    assert_eq!(join["data"]["userId"], "bob");
    assert!(join["timestamp"].is_string());

    // A status of its own, seen by the watcher; the setter gets the member list.
    send(
        &mut other.ws,
        r#"{"type":"presence","channel":"room","status":"away"}"#,
    )
    .await;
    let listing = next_of(&mut other.ws, "presence").await;
    assert_eq!(listing["channel"], "room");
    assert_eq!(listing["total"], 2);
    assert_eq!(listing["truncated"], false);
    let update = presence_event(&mut watcher.ws, "update", &other.id).await;
    assert_eq!(update["data"]["status"], "away");

    let listing = query(&mut watcher, "room").await;
    assert_eq!(
        member_ids(&listing),
        sorted(vec![watcher.id.clone(), other.id.clone()])
    );
    let bob = listing["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["clientId"] == other.id.as_str())
        .unwrap();
    assert_eq!(bob["status"], "away");
    assert_eq!(bob["userId"], "bob");
    // The host sees the same.
    let host = host_presence(&server, "room");
    assert_eq!(host["channel"], "room");
    assert_eq!(host["total"], 2);
    assert_eq!(member_ids(&host), member_ids(&listing));

    // A session is the channel session:S; queries echo the session id.
    send(
        &mut watcher.ws,
        r#"{"type":"presence","sessionId":"nobody-here"}"#,
    )
    .await;
    let empty = next_of(&mut watcher.ws, "presence").await;
    assert_eq!(empty["sessionId"], "nobody-here");
    assert_eq!(empty["total"], 0);

    // Bad statuses and statuses outside one's channels are refused, the socket stays.
    for (bad, code) in [
        (
            r#"{"type":"presence","channel":"room","status":"offline"}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"presence","channel":"room","status":"a-status-much-longer-than-32-bytes"}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"presence","channel":"elsewhere","status":"busy"}"#,
            "not_subscribed",
        ),
    ] {
        send(&mut other.ws, bad).await;
        let error = next_of(&mut other.ws, "error").await;
        assert_eq!(error["error"]["code"], code, "{bad}: {error}");
    }

    // Unsubscribing leaves; so does disconnecting.
    send(&mut other.ws, r#"{"type":"unsubscribe","channel":"room"}"#).await;
    let leave = presence_event(&mut watcher.ws, "leave", &other.id).await;
    assert_eq!(leave["data"]["status"], "offline");
    let mut third = connect(&server, "").await;
    common::subscribe(&mut third.ws, "channel", "room").await;
    presence_event(&mut watcher.ws, "join", &third.id).await;
    third.ws.close(None).await.unwrap();
    presence_event(&mut watcher.ws, "leave", &third.id).await;
    assert_eq!(
        member_ids(&query(&mut watcher, "room").await),
        vec![watcher.id.clone()]
    );

    // A subscriber that did not ask for presence gets no presence events.
    let mut quiet = connect(&server, "").await;
    common::subscribe(&mut quiet.ws, "channel", "room").await;
    presence_event(&mut watcher.ws, "join", &quiet.id).await;
    send(&mut quiet.ws, r#"{"type":"ping"}"#).await;
    let next = next_json(&mut quiet.ws).await;
    assert_eq!(next["type"], "pong", "{next}");

    // Subscribing again without the key (a recovery) keeps the wish; false drops it.
    common::subscribe(&mut watcher.ws, "channel", "room").await;
    let mut fourth = connect(&server, "").await;
    common::subscribe(&mut fourth.ws, "channel", "room").await;
    presence_event(&mut watcher.ws, "join", &fourth.id).await;
    send(
        &mut watcher.ws,
        r#"{"type":"subscribe","channel":"room","presence":false}"#,
    )
    .await;
    next_of(&mut watcher.ws, "subscribed").await;
    fourth.ws.close(None).await.unwrap();
    // Its leave is done once the host no longer lists it; no event came meanwhile.
    let deadline = Instant::now() + WAIT;
    while member_ids(&host_presence(&server, "room")).contains(&fourth.id) {
        assert!(Instant::now() < deadline, "the fourth client never left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send(&mut watcher.ws, r#"{"type":"ping"}"#).await;
    let next = next_json(&mut watcher.ws).await;
    assert_eq!(
        next["type"], "pong",
        "no presence event after presence: false: {next}"
    );

    server.stop(WAIT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_bounded_and_presence_can_be_off() {
    let server = start(r#"{"presence":{"max_members":2}}"#);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = connect(&server, "").await;
        common::subscribe(&mut c.ws, "channel", "crowd").await;
        clients.push(c);
    }
    let listing = query(&mut clients[0], "crowd").await;
    assert_eq!(listing["members"].as_array().unwrap().len(), 2);
    assert_eq!(listing["total"], 4);
    assert_eq!(listing["truncated"], true);
    let host = host_presence(&server, "crowd");
    assert_eq!(
        (host["total"].as_u64(), host["truncated"].as_bool()),
        (Some(4), Some(true))
    );
    server.stop(WAIT).unwrap();

    let off = start(r#"{"presence":{"enabled":false}}"#);
    let mut c = connect(&off, "").await;
    common::subscribe(&mut c.ws, "channel", "room").await;
    send(&mut c.ws, r#"{"type":"presence","channel":"room"}"#).await;
    let error = next_of(&mut c.ws, "error").await;
    assert_eq!(error["error"]["code"], "presence_disabled");
    let refused = off.presence_json("room").unwrap_err();
    assert_eq!(refused.kind(), herald::ErrorKind::InvalidArgument);
    assert!(Config::from_json(r#"{"presence":{"ttl_ms":5}}"#).is_err());
    assert!(Config::from_json(r#"{"presence":{"max_members":0}}"#).is_err());
    off.stop(WAIT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_presence_is_authorized_like_a_subscribe() {
    let server = start(r#"{"auth":{"required":true}}"#);
    let actions = Arc::new(Mutex::new(Vec::new()));
    let (seen, replier) = (Arc::clone(&actions), server.clone());
    server
        .set_authorizer(Some(Arc::new(move |request: &AuthRequest| {
            let v: Value = serde_json::from_str(&request.to_json()).unwrap();
            let decision = match v["type"].as_str().unwrap() {
                "connect" => AuthDecision {
                    allow: true,
                    user_id: Some("carol".into()),
                    ..Default::default()
                },
                _ => {
                    let action = v["action"].as_str().unwrap().to_string();
                    seen.lock()
                        .unwrap()
                        .push((v["channel"].as_str().unwrap().to_string(), action.clone()));
                    // May look into "lobby" without joining it; nothing else.
                    if v["channel"] == "lobby" && action == "presence" {
                        AuthDecision::allow()
                    } else {
                        AuthDecision::deny("no")
                    }
                }
            };
            replier.authorize_reply(request.id(), decision).unwrap();
        })))
        .unwrap();
    let mut carol = connect(&server, "?token=t").await;
    let listing = query(&mut carol, "lobby").await;
    assert_eq!(listing["total"], 0);
    send(&mut carol.ws, r#"{"type":"presence","channel":"vault"}"#).await;
    let error = next_of(&mut carol.ws, "error").await;
    assert_eq!(error["error"]["code"], "forbidden");
    send(&mut carol.ws, r#"{"type":"subscribe","channel":"lobby"}"#).await;
    let error = next_of(&mut carol.ws, "error").await;
    assert_eq!(error["error"]["code"], "forbidden");
    // Its own user channel needs no question, and it is a member there.
    let own = query(&mut carol, "user:carol").await;
    assert_eq!(member_ids(&own), vec![carol.id.clone()]);
    assert_eq!(own["members"][0]["userId"], "carol");
    assert_eq!(
        *actions.lock().unwrap(),
        vec![
            ("lobby".to_string(), "presence".to_string()),
            ("vault".to_string(), "presence".to_string()),
            ("lobby".to_string(), "subscribe".to_string()),
        ]
    );
    server.stop(WAIT).unwrap();
}

// ---------------------------------------------------------------------------
// With Redis
// ---------------------------------------------------------------------------

/// A redis-server of this test's own on a free loopback port, killed when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("these tests need redis-server (apt-get install -y redis-server)");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node(redis: &Redis, ttl_ms: u64) -> Server {
    let config = json!({
        "port": 0,
        "broker": {"redis": {"url": redis.url(), "prefix": "presence:", "timeout_ms": 1000}},
        "presence": {"ttl_ms": ttl_ms},
    });
    Server::start(Config::from_json(&config.to_string()).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_one_node_are_seen_from_another_through_redis() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, 30_000), node(&redis, 30_000));
    let mut watcher = connect(&a, "?userId=ann").await;
    subscribe_with_presence(&mut watcher, "room").await;
    presence_event(&mut watcher.ws, "join", &watcher.id).await;

    let mut remote = connect(&b, "?userId=bob").await;
    common::subscribe(&mut remote.ws, "channel", "room").await;
    let join = presence_event(&mut watcher.ws, "join", &remote.id).await;
    assert_eq!(join["data"]["userId"], "bob");

    send(
        &mut remote.ws,
        r#"{"type":"presence","channel":"room","status":"busy"}"#,
    )
    .await;
    let listing = next_of(&mut remote.ws, "presence").await;
    assert_eq!(listing["total"], 2, "{listing}");
    let update = presence_event(&mut watcher.ws, "update", &remote.id).await;
    assert_eq!(update["data"]["status"], "busy");

    // Both nodes list both members, from the clients and from the hosts; so does an
    // emitter (a worker that serves no socket).
    let both = sorted(vec![watcher.id.clone(), remote.id.clone()]);
    assert_eq!(member_ids(&query(&mut watcher, "room").await), both);
    let emitter = {
        let config = json!({
            "listen": false,
            "broker": {"redis": {"url": redis.url(), "prefix": "presence:", "timeout_ms": 1000}},
        });
        Server::start(Config::from_json(&config.to_string()).unwrap()).unwrap()
    };
    for server in [a.clone(), b.clone(), emitter.clone()] {
        let host = common::blocking(move || host_presence(&server, "room")).await;
        assert_eq!(member_ids(&host), both);
    }

    // A watcher on the other node sees the first node's clients come and go.
    let mut far_watcher = connect(&b, "").await;
    subscribe_with_presence(&mut far_watcher, "room").await;
    let mut late = connect(&a, "").await;
    common::subscribe(&mut late.ws, "channel", "room").await;
    presence_event(&mut far_watcher.ws, "join", &late.id).await;
    late.ws.close(None).await.unwrap();
    let leave = presence_event(&mut far_watcher.ws, "leave", &late.id).await;
    assert_eq!(leave["data"]["status"], "offline");
    presence_event(&mut watcher.ws, "leave", &late.id).await;

    remote.ws.close(None).await.unwrap();
    presence_event(&mut watcher.ws, "leave", &remote.id).await;
    let host_a = a.clone();
    let host = common::blocking(move || host_presence(&host_a, "room")).await;
    assert_eq!(
        member_ids(&host),
        sorted(vec![watcher.id.clone(), far_watcher.id.clone()])
    );
    common::blocking(move || {
        a.stop(WAIT).unwrap();
        b.stop(WAIT).unwrap();
        emitter.stop(WAIT).unwrap();
    })
    .await;
}

/// A `herald` process on the same Redis, to be killed.
struct Doomed {
    child: Child,
    port: u16,
    config: std::path::PathBuf,
}

impl Doomed {
    fn start(redis: &Redis, ttl_ms: u64) -> Doomed {
        let config = std::env::temp_dir().join(format!(
            "herald-presence-{}-{}.toml",
            std::process::id(),
            free_port()
        ));
        let toml = format!(
            "port = 0\n[broker.redis]\nurl = \"{}\"\nprefix = \"presence:\"\n\
             [presence]\nttl_ms = {ttl_ms}\n",
            redis.url()
        );
        std::fs::write(&config, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(&config)
            .arg("--insecure-no-api-key")
            .env_remove("HERALD_API_KEY")
            .env("HERALD_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port = common::herald_listening_port(child.stdout.take().unwrap())
            .expect("herald printed no listening address");
        Doomed {
            child,
            port,
            config,
        }
    }

    fn kill(&mut self) {
        // SIGKILL: no goodbye to Redis, no leave written.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_leave_presence_after_the_ttl() {
    const TTL_MS: u64 = 1500;
    let redis = Redis::start();
    let survivor = node(&redis, TTL_MS);
    let mut doomed = Doomed::start(&redis, TTL_MS);

    let mut watcher = connect(&survivor, "").await;
    subscribe_with_presence(&mut watcher, "room").await;
    let url = format!("ws://127.0.0.1:{}/ws", doomed.port);
    let mut victims = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let hello = next_json(&mut ws).await;
        let id = hello["clientId"].as_str().unwrap().to_string();
        send(&mut ws, r#"{"type":"subscribe","channel":"room"}"#).await;
        next_of(&mut ws, "subscribed").await;
        presence_event(&mut watcher.ws, "join", &id).await;
        victims.push((ws, id));
    }
    // Refreshed past several ttls while the node lives: nobody expires.
    tokio::time::sleep(Duration::from_millis(TTL_MS * 2)).await;
    assert_eq!(query(&mut watcher, "room").await["total"], 4);

    doomed.kill();
    let killed = Instant::now();
    // Their leaves come in Redis's order, not the order they joined.
    let mut left = Vec::new();
    while left.len() < victims.len() {
        let event = next_of(&mut watcher.ws, "user_presence").await;
        assert_eq!(event["action"], "leave", "{event}");
        assert_eq!(event["data"]["status"], "offline");
        left.push(event["data"]["clientId"].as_str().unwrap().to_string());
    }
    let ids = victims.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(sorted(left), sorted(ids), "each victim leaves once");
    let took = killed.elapsed();
    // Gone no sooner than the deadline its last refresh set (a third of the ttl before
    // the kill at most), and soon after it (the survivor sweeps every third of it).
    assert!(
        took >= Duration::from_millis(TTL_MS * 2 / 3 - 50)
            && took < Duration::from_millis(TTL_MS * 3),
        "left after {took:?}"
    );
    eprintln!("a killed node's clients left presence {took:?} after the kill (ttl {TTL_MS} ms)");
    let host = common::blocking({
        let survivor = survivor.clone();
        move || host_presence(&survivor, "room")
    })
    .await;
    assert_eq!(member_ids(&host), vec![watcher.id.clone()]);
    common::blocking(move || survivor.stop(WAIT).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_presence_endpoint_answers_admins_only() {
    let token = "an-admin-token-of-some-length";
    let server = start(&json!({ "admin_token": token }).to_string());
    let mut client = connect(&server, "?userId=ann").await;
    common::subscribe(&mut client.ws, "channel", "room 1/a+b").await;
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let path = "/api/presence/room%201%2Fa+b";

    let denied = common::http(server.port(), "GET", path, "").await;
    assert_eq!(denied.status, 401);
    let reply = common::http(server.port(), "GET", path, &bearer).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.headers.contains("application/json") && reply.headers.contains("no-store"));
    let listing: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(listing["channel"], "room 1/a+b");
    assert_eq!(member_ids(&listing), vec![client.id.clone()]);
    assert_eq!(listing["members"][0]["userId"], "ann");

    let bad = common::http(server.port(), "GET", "/api/presence/%ff", &bearer).await;
    assert_eq!(bad.status, 400);
    let empty = common::http(server.port(), "GET", "/api/presence/", &bearer).await;
    assert_eq!(empty.status, 400);
    let error: Value = serde_json::from_str(&empty.body).unwrap();
    assert_eq!(error["error"]["code"], "invalid_argument");
    let posted = common::http(server.port(), "POST", path, &bearer).await;
    assert_eq!(posted.status, 405);
    // Secure mode without an admin token: closed, like stats.
    let secure = start(r#"{"auth":{"jwt_secret":"0123456789abcdef0123"}}"#);
    let closed = common::http(secure.port(), "GET", "/api/presence/room", "").await;
    assert_eq!(closed.status, 401);
    secure.stop(WAIT).unwrap();
    server.stop(WAIT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_redis_lost_are_put_back_by_their_nodes_refresh() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, 900), node(&redis, 900));
    let mut watcher = connect(&a, "").await;
    subscribe_with_presence(&mut watcher, "room").await;
    let mut member = connect(&b, "?userId=bob").await;
    common::subscribe(&mut member.ws, "channel", "room").await;
    presence_event(&mut watcher.ws, "join", &member.id).await;

    // Redis loses the channel's members (a flush, a failover without the keys).
    let conn = redis::Client::open(redis.url()).unwrap();
    let mut conn = conn.get_connection().unwrap();
    let deleted: i64 = redis::cmd("DEL")
        .arg("presence:presence:room")
        .arg("presence:presence-deadlines:room")
        .query(&mut conn)
        .unwrap();
    assert_eq!(deleted, 2);
    // Each node puts its own back within a refresh period and says so.
    let rejoined = presence_event(&mut watcher.ws, "join", &member.id).await;
    assert_eq!(rejoined["data"]["userId"], "bob");
    let deadline = Instant::now() + WAIT;
    let listed = loop {
        let host_a = a.clone();
        let listing = common::blocking(move || host_presence(&host_a, "room")).await;
        if listing["total"] == 2 {
            break listing;
        }
        assert!(
            Instant::now() < deadline,
            "never listed both again: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        member_ids(&listed),
        sorted(vec![watcher.id.clone(), member.id.clone()])
    );
    common::blocking(move || {
        a.stop(WAIT).unwrap();
        b.stop(WAIT).unwrap();
    })
    .await;
}
