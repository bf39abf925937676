//! AI job state: snapshots then the live tail, token streams, the HTTP read, expiry,
//! cancel requests; over real sockets against a real server.
mod common;
use common::*;
use herald::Event;
use serde_json::Value;
use std::time::Duration;

/// Reads messages until one of `kind`.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let m = next_json(ws).await;
        if m["type"] == kind {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_the_snapshot_then_the_tail_without_gap_or_duplicate() {
    let server = start("");
    let mut early = connect(&server, "?sessionId=s").await;
    wait_stats(&server, |s| s["subscriptions"] == 1).await;
    server
        .notify_ai_start("s", r#"{"jobId":"j","prompt":"hi"}"#)
        .unwrap();
    let words: Vec<String> = (0..40).map(|n| format!("w{n} ")).collect();
    for word in &words[..20] {
        let delta = serde_json::json!({"jobId": "j", "text": word}).to_string();
        server.notify_ai_delta("s", &delta).unwrap();
    }
    // The early client has seen 21 publications; a late one arrives now.
    for _ in 0..21 {
        next_json(&mut early.ws).await;
    }
    let mut late = connect(&server, "").await;
    let reply = subscribe(&mut late.ws, "sessionId", "s").await;
    let snapshot = next_json(&mut late.ws).await;
    assert_eq!(snapshot["type"], "jobs_snapshot", "{snapshot}");
    assert_eq!(snapshot["sessionId"], "s");
    assert_eq!(snapshot["seq"], reply["seq"]);
    assert_eq!(snapshot["epoch"], reply["epoch"]);
    let job = &snapshot["jobs"][0];
    assert_eq!(job["jobId"], "j");
    assert_eq!(job["state"], "running");
    assert_eq!(job["task"]["prompt"], "hi");
    let mut text = job["text"].as_str().unwrap().to_string();
    let mut last = snapshot["seq"].as_u64().unwrap();
    for word in &words[20..] {
        let delta = serde_json::json!({"jobId": "j", "text": word}).to_string();
        server.notify_ai_delta("s", &delta).unwrap();
    }
    server
        .notify_ai_complete("s", r#"{"jobId":"j","tokens":40}"#)
        .unwrap();
    loop {
        let m = next_json(&mut late.ws).await;
        assert_eq!(m["seq"].as_u64().unwrap(), last + 1, "no gap, no duplicate");
        last += 1;
        match m["type"].as_str().unwrap() {
            "ai_delta" => text.push_str(m["delta"]["text"].as_str().unwrap()),
            "ai_complete" => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        text,
        words.concat(),
        "snapshot text + tail = everything sent"
    );
    // A snapshot now says complete, with the whole text.
    let jobs: Value = serde_json::from_str(&server.jobs_json("s").unwrap()).unwrap();
    assert_eq!(jobs["jobs"][0]["state"], "complete");
    assert_eq!(jobs["jobs"][0]["result"]["tokens"], 40);
    assert_eq!(jobs["jobs"][0]["text"], words.concat());
    assert_eq!(jobs["seq"].as_u64().unwrap(), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_past_history_gets_a_snapshot_instead_of_nothing() {
    let server = start(r#"{"history":{"size":4}}"#);
    let mut client = connect(&server, "?sessionId=r").await;
    wait_stats(&server, |s| s["subscriptions"] == 1).await;
    server.notify_ai_start("r", r#"{}"#).unwrap();
    let first = next_json(&mut client.ws).await;
    drop(client);
    for n in 0..10 {
        let delta = serde_json::json!({"text": format!("{n},")}).to_string();
        server.notify_ai_delta("r", &delta).unwrap();
    }
    // Publishing only enqueues: the recovery must come after all ten are dispatched.
    wait_stats(&server, |s| s["publications"] == 11).await;
    let query = format!(
        "?sessionId=r&since={}&epoch={}",
        first["seq"],
        first["epoch"].as_str().unwrap()
    );
    let mut back = connect(&server, &query).await;
    let reply = next_json(&mut back.ws).await;
    assert_eq!(reply["type"], "subscribed");
    assert_eq!(reply["recovered"], false);
    let snapshot = next_json(&mut back.ws).await;
    assert_eq!(snapshot["type"], "jobs_snapshot");
    assert_eq!(snapshot["seq"], 11);
    assert_eq!(
        snapshot["jobs"][0]["jobId"],
        Value::Null,
        "the implicit job"
    );
    assert_eq!(snapshot["jobs"][0]["text"], "0,1,2,3,4,5,6,7,8,9,");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_over_http_follow_the_subscribe_rules_and_expire_after_their_ttl() {
    let secret = "0123456789abcdef0123456789abcdef";
    let server = start(&format!(
        r#"{{"auth":{{"jwt_secret":"{secret}"}},"jobs":{{"ttl_ms":300}}}}"#
    ));
    server.notify_ai_start("h", r#"{"jobId":"a"}"#).unwrap();
    server
        .notify_ai_delta("h", r#"{"jobId":"a","text":"héllo"}"#)
        .unwrap();
    let port = server.port();
    let allowed = common_jwt(secret, "u", &["session:h"]);
    let other = common_jwt(secret, "u", &["session:x"]);
    // Publishing only enqueues: wait until the state is there.
    let deadline = tokio::time::Instant::now() + WAIT;
    let reply = loop {
        let reply = http(
            port,
            "GET",
            "/api/jobs/h",
            &format!("Authorization: Bearer {allowed}\r\n"),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        if body["jobs"][0]["text"] == "héllo" {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(reply["sessionId"], "h");
    assert_eq!(reply["seq"], 2);
    let anonymous = http(port, "GET", "/api/jobs/h", "").await;
    assert_eq!(
        anonymous.status, 403,
        "an anonymous client may not subscribe to it either"
    );
    let forbidden = http(
        port,
        "GET",
        "/api/jobs/h",
        &format!("Authorization: Bearer {other}\r\n"),
    )
    .await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    let forged = http(port, "GET", "/api/jobs/h?token=nope", "").await;
    assert_eq!(forged.status, 401);
    // Ended, then gone after jobs.ttl_ms.
    server
        .notify_ai_error("h", r#"{"jobId":"a","message":"x"}"#)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ended: Value = serde_json::from_str(&server.jobs_json("h").unwrap()).unwrap();
    assert_eq!(ended["jobs"][0]["state"], "error");
    assert_eq!(ended["jobs"][0]["error"]["message"], "x");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now: Value = serde_json::from_str(&server.jobs_json("h").unwrap()).unwrap();
        if now["jobs"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never expired: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn common_jwt(secret: &str, sub: &str, channels: &[&str]) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    // jsonwebtoken signs through the provider Herald installs (ring).
    herald::install_jwt_crypto_provider();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"sub": sub, "exp": exp, "channels": channels});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deltas_are_the_hosts_error() {
    let server = start("");
    let e = server.notify_ai_delta("s", r#"{"jobId":"a"}"#).unwrap_err();
    assert_eq!(e.kind(), herald::ErrorKind::InvalidArgument, "{e}");
    let e = server
        .notify_ai_delta("s", r#"{"jobId":5,"text":"x"}"#)
        .unwrap_err();
    assert_eq!(e.kind(), herald::ErrorKind::InvalidArgument, "{e}");
    assert!(server.notify_ai_delta("s", "[1]").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_host_as_an_event() {
    let server = start("");
    let mut client = connect(&server, "?userId=u").await;
    send(
        &mut client.ws,
        r#"{"type":"cancel","sessionId":"s","jobId":"j"}"#,
    )
    .await;
    send(&mut client.ws, r#"{"type":"cancel","sessionId":"s"}"#).await;
    send(
        &mut client.ws,
        r#"{"type":"cancel","sessionId":"s","jobId":7}"#,
    )
    .await;
    let error = next_of(&mut client.ws, "error").await;
    assert_eq!(error["error"]["code"], "invalid_message");
    // Without a session it is the host's own message, as before.
    send(&mut client.ws, r#"{"type":"cancel","taskId":"t"}"#).await;
    let mut cancels = Vec::new();
    let mut custom = None;
    while cancels.len() < 2 || custom.is_none() {
        let event = server.next_event(WAIT).unwrap().expect("an event in time");
        match event {
            Event::CancelRequested { .. } => {
                cancels.push(serde_json::from_str::<Value>(&event.to_json()).unwrap())
            }
            Event::ClientMessage { .. } => custom = Some(event.to_json()),
            _ => {}
        }
    }
    assert!(custom.unwrap().contains("\"taskId\":\"t\""));
    assert_eq!(cancels[0]["type"], "cancel_requested");
    assert_eq!(cancels[0]["sessionId"], "s");
    assert_eq!(cancels[0]["jobId"], "j");
    assert_eq!(cancels[0]["userId"], "u");
    assert_eq!(cancels[0]["clientId"], client.id.as_str());
    assert_eq!(cancels[1]["jobId"], Value::Null);
}

/// A WebSocket client whose socket takes little at a time (a slow phone): a small
/// receive buffer, and it reads nothing until told to.
async fn slow_client(server: &herald::Server, query: &str) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket
        .connect(([127, 0, 0, 1], server.port()).into())
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/ws{query}", server.port());
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_a_token_stream_is_merged_not_evicted() {
    // The budget holds the writer's batch (256 frames) and some backlog, not 10 s of it.
    let server = start(r#"{"client_queue_bytes":98304,"socket_send_buffer":4096}"#);
    let mut merged = slow_client(&server, "?sessionId=stream").await;
    // The same bytes as plain channel messages, which cannot be merged: evicted.
    let mut plain = slow_client(&server, "").await;
    send(&mut plain, r#"{"type":"subscribe","channel":"plain"}"#).await;
    assert_eq!(next_json(&mut plain).await["type"], "subscribed");
    wait_stats(&server, |s| s["subscriptions"] == 2).await;

    // 100 deltas a second for 10 s while neither client reads.
    const DELTAS: usize = 1000;
    let mut full = String::new();
    server
        .notify_ai_start("stream", r#"{"jobId":"j"}"#)
        .unwrap();
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    for n in 0..DELTAS {
        ticks.tick().await;
        let text = format!("tok{n:04} ");
        full.push_str(&text);
        let delta = serde_json::json!({"jobId": "j", "text": text}).to_string();
        server.notify_ai_delta("stream", &delta).unwrap();
        let note = serde_json::json!({"type": "note", "jobId": "j", "text": text}).to_string();
        server.publish("plain", &note).unwrap();
    }
    server
        .notify_ai_complete("stream", r#"{"jobId":"j"}"#)
        .unwrap();
    // Only the unmergeable one goes.
    let code = close_code(&mut plain).await;
    assert!(code.is_none() || code == Some(1013), "{code:?}");
    wait_stats(&server, |s| {
        s["evictions"] == 1 && s["activeConnections"] == 1
    })
    .await;

    // Now the slow client reads: everything, in order, merged.
    let (mut text, mut last_seq, mut frames, mut largest_merge) = (String::new(), 0, 0, 0);
    let mut stood_for = 0;
    loop {
        let m = next_json(&mut merged).await;
        let seq = m["seq"].as_u64().unwrap();
        assert!(
            seq > last_seq,
            "in order, no duplicate: {seq} after {last_seq}"
        );
        last_seq = seq;
        frames += 1;
        match m["type"].as_str().unwrap() {
            "ai_start" => {}
            "ai_delta" => {
                text.push_str(m["delta"]["text"].as_str().unwrap());
                let merged = m["merged"].as_u64().unwrap_or(1);
                largest_merge = largest_merge.max(merged);
                stood_for += merged as usize;
            }
            "ai_complete" => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(last_seq as usize, DELTAS + 2);
    assert_eq!(text, full, "the concatenation is the whole text");
    assert!(largest_merge > 1, "deltas were merged");
    assert_eq!(
        stood_for, DELTAS,
        "the merged counts add up to the deltas sent"
    );
    assert!(frames < DELTAS, "fewer frames than deltas: {frames}");
    eprintln!(
        "slow reader: {DELTAS} deltas arrived as {frames} frames (largest merge {largest_merge})"
    );
    let stats = wait_stats(&server, |_| true).await;
    assert_eq!(stats["evictions"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_decides_cancels_seeing_the_action() {
    use herald::{AuthDecision, AuthRequest};
    use std::sync::{Arc, Mutex};
    let server = start(r#"{"auth":{"required":true}}"#);
    let asked = Arc::new(Mutex::new(Vec::<Value>::new()));
    let (replier, log) = (server.clone(), Arc::clone(&asked));
    server
        .set_authorizer(Some(Arc::new(move |request: &AuthRequest| {
            let v: Value = serde_json::from_str(&request.to_json()).unwrap();
            log.lock().unwrap().push(v.clone());
            let allow = match v["type"].as_str().unwrap() {
                "connect" => true,
                // Subscribing to any session is fine; cancelling only in "mine".
                _ => v["action"] == "subscribe" || v["channel"] == "session:mine",
            };
            let decision = AuthDecision {
                allow,
                user_id: Some("u".into()),
                ..Default::default()
            };
            replier.authorize_reply(request.id(), decision).unwrap();
        })))
        .unwrap();
    let mut client = connect(&server, "?token=t").await;
    send(
        &mut client.ws,
        r#"{"type":"cancel","sessionId":"theirs","jobId":"j"}"#,
    )
    .await;
    let refused = next_json(&mut client.ws).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    send(
        &mut client.ws,
        r#"{"type":"cancel","sessionId":"mine","jobId":"j"}"#,
    )
    .await;
    let event = loop {
        match server.next_event(WAIT).unwrap().expect("an event") {
            event @ Event::CancelRequested { .. } => break event,
            _ => continue,
        }
    };
    let event: Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(
        (event["sessionId"].as_str(), event["userId"].as_str()),
        (Some("mine"), Some("u"))
    );
    let asked = asked.lock().unwrap();
    let cancels: Vec<_> = asked.iter().filter(|v| v["action"] == "cancel").collect();
    assert_eq!(cancels.len(), 2, "{asked:?}");
    assert_eq!(cancels[0]["channel"], "session:theirs");
    assert_eq!(cancels[0]["clientId"], client.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_sends_a_token_stream_in_fewer_frames_in_order() {
    let server = start(r#"{"ai":{"delta_rollup_ms":40}}"#);
    let mut client = connect(&server, "?sessionId=roll").await;
    wait_stats(&server, |s| s["subscriptions"] == 1).await;
    server.notify_ai_start("roll", r#"{"jobId":"j"}"#).unwrap();
    const DELTAS: usize = 100;
    let mut full = String::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    for n in 0..DELTAS {
        ticks.tick().await;
        let text = format!("r{n} ");
        full.push_str(&text);
        let delta = serde_json::json!({"jobId": "j", "text": text}).to_string();
        server.notify_ai_delta("roll", &delta).unwrap();
    }
    // Sent at once, after what the session holds.
    server
        .notify_ai_complete("roll", r#"{"jobId":"j"}"#)
        .unwrap();
    assert_eq!(next_json(&mut client.ws).await["type"], "ai_start");
    let (mut text, mut frames, mut last) = (String::new(), 0, 1);
    loop {
        let m = next_json(&mut client.ws).await;
        assert_eq!(m["seq"], last + 1, "consecutive seqs: {m}");
        last += 1;
        match m["type"].as_str().unwrap() {
            "ai_delta" => {
                frames += 1;
                text.push_str(m["delta"]["text"].as_str().unwrap());
            }
            "ai_complete" => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(text, full);
    assert!(frames < DELTAS / 3, "{frames} frames for {DELTAS} deltas");
    eprintln!("rollup 40 ms: {DELTAS} deltas at 200/s arrived as {frames} frames");
    let jobs: Value = serde_json::from_str(&server.jobs_json("roll").unwrap()).unwrap();
    assert_eq!(jobs["jobs"][0]["text"], full.as_str());
    assert_eq!(jobs["seq"], last);
    // Not with Redis: a host call there returns once Redis holds the publication.
    let refused = herald::Config::from_json(
        r#"{"ai":{"delta_rollup_ms":40},"broker":{"redis":{"url":"redis://127.0.0.1:1"}}}"#,
    )
    .unwrap_err();
    assert!(
        refused.message().contains("ai.delta_rollup_ms"),
        "{refused}"
    );
}
