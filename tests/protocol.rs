//! Every protocol message, over real sockets with a real WebSocket client.
mod common;
use common::*;
use futures_util::SinkExt;
use herald::ErrorKind;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn is_iso_millis(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 24 && s.ends_with('Z') && &s[10..11] == "T" && &s[19..20] == "."
}

#[tokio::test]
async fn connection_message_and_ping() {
    let server = start("");
    let mut c = connect(&server, "").await;
    assert_eq!(c.id.len(), 16);
    send(&mut c.ws, r#"{"type":"ping"}"#).await;
    let pong = next_json(&mut c.ws).await;
    assert_eq!(pong["type"], "pong");
    assert!(is_iso_millis(&pong["timestamp"]), "{pong}");
    let other = connect(&server, "").await;
    assert_ne!(c.id, other.id, "client ids are unique");
}

#[tokio::test]
async fn ai_notifications_have_the_documented_shapes() {
    let server = start("");
    let mut c = connect(&server, "?sessionId=job%201").await;
    server.notify_ai_start("job 1", r#"{"id":"t"}"#).unwrap();
    server
        .notify_ai_progress("job 1", r#"{"percent":50}"#)
        .unwrap();
    server
        .notify_ai_complete("job 1", r#"{"text":"done"}"#)
        .unwrap();
    server
        .notify_ai_error("job 1", r#"{"message":"boom"}"#)
        .unwrap();
    let expected = [
        ("ai_start", "task", "id"),
        ("ai_progress", "progress", "percent"),
        ("ai_complete", "result", "text"),
        ("ai_error", "error", "message"),
    ];
    for (i, (kind, key, field)) in expected.iter().enumerate() {
        let m = next_json(&mut c.ws).await;
        assert_eq!(m["type"], *kind, "{m}");
        assert_eq!(m["sessionId"], "job 1");
        assert!(
            m[key][field].is_string() || m[key][field].is_number(),
            "{m}"
        );
        assert!(is_iso_millis(&m["timestamp"]), "{m}");
        assert_eq!(m["seq"], (i + 1) as u64);
        assert!(m["epoch"].is_string());
    }
}

#[tokio::test]
async fn subscribe_and_unsubscribe_by_session_and_channel() {
    let server = start("");
    let mut c = connect(&server, "").await;
    let reply = subscribe(&mut c.ws, "sessionId", "s").await;
    assert_eq!(reply["sessionId"], "s");
    assert!(is_iso_millis(&reply["timestamp"]));
    let reply = subscribe(&mut c.ws, "channel", "news").await;
    assert_eq!(reply["channel"], "news");

    server.notify_ai_progress("s", r#"{"n":1}"#).unwrap();
    server
        .publish("news", r#"{"type":"headline","n":2}"#)
        .unwrap();
    assert_eq!(next_json(&mut c.ws).await["progress"]["n"], 1);
    let m = next_json(&mut c.ws).await;
    assert_eq!(
        (m["type"].as_str(), m["channel"].as_str(), m["n"].as_i64()),
        (Some("headline"), Some("news"), Some(2))
    );

    send(&mut c.ws, r#"{"type":"unsubscribe","sessionId":"s"}"#).await;
    let m = next_json(&mut c.ws).await;
    assert_eq!(
        (m["type"].as_str(), m["sessionId"].as_str()),
        (Some("unsubscribed"), Some("s"))
    );
    server.notify_ai_progress("s", r#"{"n":3}"#).unwrap();
    server.publish("news", r#"{"n":4}"#).unwrap();
    assert_eq!(
        next_json(&mut c.ws).await["n"],
        4,
        "the session message was not delivered after unsubscribe"
    );

    send(&mut c.ws, r#"{"type":"unsubscribe","channel":"news"}"#).await;
    assert_eq!(next_json(&mut c.ws).await["channel"], "news");
    subscribe(&mut c.ws, "channel", "a").await;
    subscribe(&mut c.ws, "channel", "b").await;
    send(&mut c.ws, r#"{"type":"unsubscribe"}"#).await;
    assert_eq!(next_json(&mut c.ws).await["type"], "unsubscribed");
    server.publish("a", r#"{"n":5}"#).unwrap();
    server.publish("b", r#"{"n":6}"#).unwrap();
    server.broadcast(r#"{"marker":true}"#).unwrap();
    assert_eq!(
        next_json(&mut c.ws).await["marker"],
        true,
        "nothing from a or b after unsubscribe-all"
    );
    wait_stats(&server, |s| s["subscriptions"] == 0).await;
}

#[tokio::test]
async fn broadcast_user_channel_and_send() {
    let server = start("");
    let mut alice = connect(&server, "?userId=alice").await;
    let mut bob = connect(&server, "?userId=bob").await;
    let mut anon = connect(&server, "").await;

    server
        .broadcast(r#"{"type":"notice","timestamp":"host-time"}"#)
        .unwrap();
    for c in [&mut alice, &mut bob, &mut anon] {
        let m = next_json(&mut c.ws).await;
        assert_eq!(m["type"], "notice");
        assert_eq!(m["timestamp"], "host-time", "a host timestamp is kept");
    }
    server.broadcast(r#"{"type":"notice2"}"#).unwrap();
    for c in [&mut alice, &mut bob, &mut anon] {
        assert!(
            is_iso_millis(&next_json(&mut c.ws).await["timestamp"]),
            "a missing timestamp is added"
        );
    }

    server
        .broadcast_to_user("alice", r#"{"type":"private","n":1}"#)
        .unwrap();
    server.send(&bob.id, r#"{"type":"direct","n":2}"#).unwrap();
    server.broadcast(r#"{"type":"marker"}"#).unwrap();
    let m = next_json(&mut alice.ws).await;
    assert_eq!(
        (m["type"].as_str(), m["channel"].as_str(), m["seq"].as_u64()),
        (Some("private"), Some("user:alice"), Some(1))
    );
    assert_eq!(next_json(&mut alice.ws).await["type"], "marker");
    assert_eq!(next_json(&mut bob.ws).await["type"], "direct");
    assert_eq!(next_json(&mut bob.ws).await["type"], "marker");
    assert_eq!(next_json(&mut anon.ws).await["type"], "marker");

    let err = server.send("no-such-client", r#"{"x":1}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownClient);
}

#[tokio::test]
async fn client_messages_go_to_the_host_and_are_not_echoed() {
    let server = start("");
    let mut c = connect(&server, "?userId=u&sessionId=s").await;
    send(&mut c.ws, r#"{"type":"cancel","taskId":"t1"}"#).await;
    send(&mut c.ws, r#"{"type":"ping"}"#).await;
    assert_eq!(
        next_json(&mut c.ws).await["type"],
        "pong",
        "the custom message was not echoed"
    );

    let mut kinds = Vec::new();
    while let Some(event) = server.next_event(Duration::from_secs(5)).unwrap() {
        let v: Value = serde_json::from_str(&event.to_json()).unwrap();
        kinds.push(v["type"].as_str().unwrap().to_string());
        if v["type"] == "client_message" {
            assert_eq!(v["clientId"], c.id.as_str());
            assert_eq!(v["userId"], "u");
            assert_eq!(v["message"]["taskId"], "t1");
            break;
        }
    }
    assert_eq!(
        kinds,
        ["connected", "subscribed", "subscribed", "client_message"]
    );
}

#[tokio::test]
async fn bad_client_input_gets_an_error_and_the_connection_stays() {
    let server = start(r#"{"max_message_size":1024}"#);
    let mut c = connect(&server, "").await;
    for bad in [
        "not json",
        "[1,2]",
        "{}",
        r#"{"type":42}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","sessionId":7}"#,
        "\"str\"",
    ] {
        send(&mut c.ws, bad).await;
        let m = next_json(&mut c.ws).await;
        assert_eq!(m["type"], "error", "{bad}: {m}");
        assert_eq!(m["error"]["code"], "invalid_message");
        assert!(!m["error"]["message"].as_str().unwrap().is_empty());
    }
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        next_json(&mut c.ws).await["error"]["code"],
        "invalid_message"
    );
    send(&mut c.ws, r#"{"type":"ping"}"#).await;
    assert_eq!(
        next_json(&mut c.ws).await["type"],
        "pong",
        "still open after bad input"
    );
    wait_stats(&server, |s| s["invalidMessages"] == 8).await;

    send(
        &mut c.ws,
        &format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(2000)),
    )
    .await;
    assert_eq!(close_code(&mut c.ws).await, Some(1009));
    wait_stats(&server, |s| {
        s["oversizedMessages"] == 1 && s["activeConnections"] == 0
    })
    .await;
}

#[tokio::test]
async fn bad_host_input_is_refused_with_clear_errors() {
    let server = start("");
    let cases: [(herald::Result<()>, ErrorKind); 8] = [
        (server.notify_ai_start("s", "{"), ErrorKind::InvalidJson),
        (
            server.notify_ai_progress("s", "[1]"),
            ErrorKind::InvalidJson,
        ),
        (
            server.notify_ai_complete("", "{}"),
            ErrorKind::InvalidArgument,
        ),
        (
            server.notify_ai_error(&"x".repeat(300), "{}"),
            ErrorKind::InvalidArgument,
        ),
        (server.broadcast("42"), ErrorKind::InvalidJson),
        (server.publish("c", "{\"a\":}"), ErrorKind::InvalidJson),
        (
            server.broadcast_to_user("", "{}"),
            ErrorKind::InvalidArgument,
        ),
        (server.send("nobody", "{}"), ErrorKind::UnknownClient),
    ];
    for (i, (result, kind)) in cases.into_iter().enumerate() {
        let err = result.expect_err(&format!("case {i} accepted"));
        assert_eq!(err.kind(), kind, "case {i}: {err}");
        assert!(!err.message().is_empty());
    }
}

async fn http_get(port: u16, path: &str) -> (u16, String) {
    let reply = http(port, "GET", path, "").await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn http_endpoints_share_the_port() {
    let server = start("");
    let mut c = connect(&server, "?userId=u1&sessionId=s1").await;
    send(&mut c.ws, r#"{"type":"ping"}"#).await;
    next_json(&mut c.ws).await;
    assert_eq!(http_get(server.port(), "/healthz").await.0, 200);
    assert_eq!(http_get(server.port(), "/nope").await.0, 404);
    assert_eq!(
        http_get(server.port(), "/ws").await.0,
        426,
        "plain GET on the WebSocket path"
    );
    let (status, body) = http_get(server.port(), "/api/ws/stats").await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["totalConnections"], 1);
    assert_eq!(stats["activeConnections"], 1);
    assert_eq!(stats["messagesReceived"], 1);
    assert!(stats["messagesSent"].as_u64().unwrap() >= 2);
    let client = &stats["clients"][0];
    assert_eq!(client["id"], c.id.as_str());
    assert_eq!(client["userId"], "u1");
    assert_eq!(client["sessionId"], "s1");
    assert_eq!(client["isAlive"], true);
    assert_eq!(client["state"], 1);
    for key in [
        "evictions",
        "heartbeatTimeouts",
        "messagesDropped",
        "subscriptions",
        "channels",
        "eventsDropped",
        "rejectedConnections",
    ] {
        assert!(stats[key].is_u64(), "stats lack {key}: {stats}");
    }
    assert_eq!(stats["subscriptions"], 2, "user and session channel");
}

#[tokio::test]
async fn events_reach_a_handler_on_its_own_thread() {
    let server = start("");
    let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
    let tx = std::sync::Mutex::new(tx);
    server
        .set_event_handler(Some(std::sync::Arc::new(move |e: &herald::Event| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            let _ = tx.lock().unwrap().send((e.kind().to_string(), thread));
        })))
        .unwrap();
    let mut c = connect(&server, "").await;
    subscribe(&mut c.ws, "channel", "x").await;
    send(&mut c.ws, r#"{"type":"unsubscribe","channel":"x"}"#).await;
    next_json(&mut c.ws).await;
    send(&mut c.ws, r#"{"type":"hello"}"#).await;
    c.ws.close(None).await.unwrap();
    let kinds: Vec<(String, String)> =
        blocking(move || (0..5).map(|_| rx.recv_timeout(WAIT).unwrap()).collect()).await;
    let names: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "connected",
            "subscribed",
            "unsubscribed",
            "client_message",
            "disconnected"
        ]
    );
    assert!(kinds.iter().all(|(_, t)| t == "herald-events"), "{kinds:?}");
}

#[tokio::test]
async fn a_handler_may_stop_its_own_server() {
    let server = start("");
    let stopper = server.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<herald::Result<()>>();
    let done_tx = std::sync::Mutex::new(done_tx);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&calls);
    server
        .set_event_handler(Some(std::sync::Arc::new(move |e: &herald::Event| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if e.kind() == "client_message" {
                let _ = done_tx
                    .lock()
                    .unwrap()
                    .send(stopper.stop(Duration::from_secs(5)));
            }
        })))
        .unwrap();
    let mut c = connect(&server, "").await;
    send(&mut c.ws, r#"{"type":"stop-please"}"#).await;
    let result = blocking(move || done_rx.recv_timeout(WAIT)).await;
    result
        .expect("stop from inside the handler returned")
        .unwrap();
    assert_eq!(close_code(&mut c.ws).await, Some(1001));
    let seen = calls.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        seen,
        "no handler call after stop returned"
    );
    assert!(server.is_stopped());
}
