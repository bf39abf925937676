//! History and recovery: a reconnecting client misses nothing and sees nothing twice.
mod common;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The `subscribed` reply, which must come before any replayed publication.
async fn read_until_subscribed(ws: &mut Ws) -> Value {
    let m = next_json(ws).await;
    assert_eq!(
        m["type"], "subscribed",
        "publication before the subscribed reply: {m}"
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_forced_disconnects_lose_and_duplicate_nothing() {
    const TOTAL: u64 = 3000;
    const DISCONNECTS: usize = 100;
    let server = start(r#"{"history":{"size":4096}}"#);
    let mut first = Some(connect(&server, "?sessionId=rec").await);
    wait_stats(&server, |s| s["subscriptions"] == 1).await;
    let publisher = server.clone();
    let publishing = tokio::spawn(async move {
        for n in 1..=TOTAL {
            publisher
                .notify_ai_progress("rec", &format!(r#"{{"n":{n}}}"#))
                .unwrap();
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    let mut seen: Vec<u64> = Vec::new();
    let mut position: Option<(u64, String)> = None;
    let mut reconnects = 0;
    let mut url_recoveries = 0;
    while seen.last().copied() != Some(TOTAL) {
        let mut c = match &position {
            None => first
                .take()
                .expect("only the first connection has no position"),
            // Alternate between recovery in the URL and in a subscribe message.
            Some((seq, epoch)) if reconnects % 2 == 0 => {
                let mut c = connect(
                    &server,
                    &format!("?sessionId=rec&since={seq}&epoch={epoch}"),
                )
                .await;
                let reply = read_until_subscribed(&mut c.ws).await;
                assert_eq!(reply["recovered"], true, "{reply}");
                url_recoveries += 1;
                c
            }
            Some((seq, epoch)) => {
                let mut c = connect(&server, "").await;
                let request = serde_json::json!({"type":"subscribe","sessionId":"rec","since":{"seq":seq,"epoch":epoch}});
                send(&mut c.ws, &request.to_string()).await;
                let reply = read_until_subscribed(&mut c.ws).await;
                assert_eq!(reply["recovered"], true, "{reply}");
                assert_eq!(reply["epoch"].as_str(), Some(epoch.as_str()));
                c
            }
        };
        // Read a varying number of messages, then drop the connection without a close.
        let quota = if reconnects < DISCONNECTS {
            5 + (reconnects * 7) % 23
        } else {
            usize::MAX
        };
        let mut read = 0;
        while read < quota && seen.last().copied() != Some(TOTAL) {
            let m = next_json(&mut c.ws).await;
            assert_eq!(m["type"], "ai_progress", "{m}");
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(m["progress"]["n"], seq);
            seen.push(seq);
            position = Some((seq, m["epoch"].as_str().unwrap().to_string()));
            read += 1;
        }
        drop(c);
        reconnects += 1;
    }
    publishing.await.unwrap();
    assert!(reconnects > DISCONNECTS, "only {reconnects} reconnects");
    assert!(url_recoveries > 0);
    let expected: Vec<u64> = (1..=TOTAL).collect();
    assert!(
        seen == expected,
        "received {} messages; first mismatch at {:?}",
        seen.len(),
        seen.iter().zip(&expected).position(|(a, b)| a != b)
    );
    let stats = wait_stats(&server, |s| {
        s["recoveries"].as_u64().unwrap() >= DISCONNECTS as u64
    })
    .await;
    assert_eq!(stats["recoveriesFailed"], 0);
}

#[tokio::test]
async fn a_gap_older_than_history_or_another_epoch_is_not_recovered() {
    let server = start(r#"{"history":{"size":5}}"#);
    let mut c = connect(&server, "?sessionId=g").await;
    for n in 1..=20 {
        server
            .notify_ai_progress("g", &format!(r#"{{"n":{n}}}"#))
            .unwrap();
    }
    let mut epoch = String::new();
    for n in 1..=20 {
        let m = next_json(&mut c.ws).await;
        assert_eq!(m["seq"], n);
        epoch = m["epoch"].as_str().unwrap().to_string();
    }
    let mut late = connect(&server, "").await;
    let ask = |seq: u64, epoch: &str| {
        serde_json::json!({"type":"subscribe","sessionId":"g","since":{"seq":seq,"epoch":epoch}})
            .to_string()
    };

    send(&mut late.ws, &ask(2, &epoch)).await;
    let reply = next_json(&mut late.ws).await;
    assert_eq!(
        (reply["type"].as_str(), reply["recovered"].as_bool()),
        (Some("subscribed"), Some(false)),
        "{reply}"
    );
    assert_eq!(reply["seq"], 20, "the reply says where the channel stands");
    // Instead of what it missed, the session's jobs as of that seq.
    let snapshot = next_json(&mut late.ws).await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("jobs_snapshot"), Some(20))
    );

    send(&mut late.ws, &ask(15, "another-epoch")).await;
    assert_eq!(next_json(&mut late.ws).await["recovered"], false);
    assert_eq!(next_json(&mut late.ws).await["type"], "jobs_snapshot");

    send(&mut late.ws, &ask(15, &epoch)).await;
    let reply = next_json(&mut late.ws).await;
    assert_eq!(reply["recovered"], true, "seq 16..20 are still in history");
    for n in 16..=20 {
        assert_eq!(next_json(&mut late.ws).await["seq"], n);
    }
    send(&mut late.ws, &ask(20, &epoch)).await;
    assert_eq!(
        next_json(&mut late.ws).await["recovered"],
        true,
        "nothing missed is a recovery"
    );
    send(&mut late.ws, &ask(21, &epoch)).await;
    assert_eq!(
        next_json(&mut late.ws).await["recovered"],
        false,
        "a position from the future"
    );
    assert_eq!(next_json(&mut late.ws).await["type"], "jobs_snapshot");

    // Nothing is replayed after a failed recovery (only the jobs' state): the next
    // message is live.
    server.notify_ai_progress("g", r#"{"n":21}"#).unwrap();
    assert_eq!(next_json(&mut late.ws).await["seq"], 21);

    let history: Value = serde_json::from_str(&server.history_json("session:g").unwrap()).unwrap();
    let seqs: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [17, 18, 19, 20, 21]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_slow_subscriber_recovers_the_rest() {
    const TOTAL: u64 = 600;
    let server = start(
        r#"{"client_queue_size":8,"client_queue_bytes":67108864,"history":{"size":1000,"max_bytes":67108864}}"#,
    );
    let mut slow = connect(&server, "").await;
    // The reply carries the epoch, so recovery works even if eviction cut the very
    // first write and no publication arrived.
    let reply = subscribe(&mut slow.ws, "sessionId", "ev").await;
    let mut epoch = reply["epoch"].as_str().unwrap().to_string();
    let pad = "p".repeat(16 * 1024);
    for n in 1..=TOTAL {
        server
            // A job each: progress of one job would be merged rather than evict.
            .notify_ai_progress(
                "ev",
                &format!(r#"{{"jobId":"j{n}","n":{n},"pad":"{pad}"}}"#),
            )
            .unwrap();
    }
    wait_stats(&server, |s| s["evictions"] == 1).await;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, slow.ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Text(t))) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                seen.push(m["seq"].as_u64().unwrap());
                epoch = m["epoch"].as_str().unwrap().to_string();
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(
        (seen.len() as u64) < TOTAL,
        "the slow client was cut off early"
    );
    let last = seen.last().copied().unwrap_or(0);
    let mut again = connect(
        &server,
        &format!("?sessionId=ev&since={last}&epoch={epoch}"),
    )
    .await;
    assert_eq!(
        read_until_subscribed(&mut again.ws).await["recovered"],
        true
    );
    while seen.len() < TOTAL as usize {
        seen.push(next_json(&mut again.ws).await["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());
}

#[tokio::test]
async fn history_memory_stays_bounded_and_idle_channels_are_reclaimed() {
    const MAX_BYTES: u64 = 256 * 1024;
    let server = start(&format!(
        r#"{{"history":{{"size":64,"ttl_ms":300,"max_bytes":{MAX_BYTES}}}}}"#
    ));
    let pad = "h".repeat(200);
    for ch in 0..2000 {
        for n in 0..10 {
            loop {
                match server.publish(&format!("c{ch}"), &format!(r#"{{"n":{n},"pad":"{pad}"}}"#)) {
                    Ok(()) => break,
                    Err(e) if e.kind() == herald::ErrorKind::QueueFull => {
                        tokio::time::sleep(Duration::from_millis(1)).await
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    let stats = wait_stats(&server, |s| s["publications"] == 20_000).await;
    let bytes = stats["historyBytes"].as_u64().unwrap();
    assert!(
        bytes > 0 && bytes <= MAX_BYTES,
        "history holds {bytes} bytes"
    );
    // The newest publications survive; the oldest went first.
    let newest: Value = serde_json::from_str(&server.history_json("c1999").unwrap()).unwrap();
    assert_eq!(newest.as_array().unwrap().len(), 10);
    assert_eq!(server.history_json("c0").unwrap(), "[]");
    // After the TTL, history is empty and channels nobody listens to are gone.
    wait_stats(&server, |s| s["historyBytes"] == 0 && s["channels"] == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_behind_a_long_replay_to_a_backed_up_socket_still_arrives() {
    // The socket is backed up with large publications when a replay of many small
    // ones is queued behind them, then one more message: once the client reads, all of
    // it must arrive without waiting for anything else to wake the connection (the
    // heartbeat is far away).
    const BIG: u64 = 200;
    const SMALL: u64 = 300;
    let server = start(
        r#"{"client_queue_size":100000,"client_queue_bytes":67108864,"heartbeat_interval_ms":120000,"heartbeat_timeout_ms":240000,
            "rate_limit":{"messages_per_second":0},"history":{"size":1000,"max_bytes":67108864}}"#,
    );
    for n in 1..=SMALL {
        server.publish("small", &format!(r#"{{"n":{n}}}"#)).unwrap();
    }
    let mut c = connect(&server, "?sessionId=big").await;
    wait_stats(&server, |s| s["subscriptions"] == 1).await;
    let pad = "b".repeat(64 * 1024);
    for n in 1..=BIG {
        server
            .notify_ai_progress("big", &format!(r#"{{"n":{n},"pad":"{pad}"}}"#))
            .unwrap();
    }
    // Not reading yet: the big publications fill the socket.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let epoch: Value = serde_json::from_str(&server.history_json("small").unwrap()).unwrap();
    let epoch = epoch[0]["epoch"].as_str().unwrap().to_string();
    send(
        &mut c.ws,
        &format!(
            r#"{{"type":"subscribe","channel":"small","since":{{"seq":0,"epoch":"{epoch}"}}}}"#
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.publish("small", r#"{"n":"last"}"#).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (mut big, mut small) = (0, 0);
    loop {
        let m = next_json(&mut c.ws).await;
        match m["type"].as_str() {
            Some("ai_progress") => big += 1,
            Some("subscribed") => assert_eq!(m["recovered"], true, "{m}"),
            _ if m["channel"] == "small" => {
                small += 1;
                if m["n"] == "last" {
                    break;
                }
            }
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!((big, small), (BIG, SMALL + 1));
}

#[tokio::test]
async fn a_replay_larger_than_the_client_budget_is_refused() {
    let server = start(r#"{"client_queue_bytes":65536}"#);
    let pad = "r".repeat(1000);
    for n in 1..=100 {
        server
            .notify_ai_progress("big", &format!(r#"{{"n":{n},"pad":"{pad}"}}"#))
            .unwrap();
    }
    wait_stats(&server, |s| s["publications"] == 100).await;
    let history: Value =
        serde_json::from_str(&server.history_json("session:big").unwrap()).unwrap();
    let epoch = history[0]["epoch"].as_str().unwrap().to_string();
    let ask = |seq: u64, epoch: &str| {
        format!(
            r#"{{"type":"subscribe","sessionId":"big","since":{{"seq":{seq},"epoch":"{epoch}"}}}}"#
        )
    };
    let mut c = connect(&server, "").await;
    // 100 KB of history does not fit a 64 KiB budget: refused, not sent to evict it.
    send(&mut c.ws, &ask(0, &epoch)).await;
    let reply = next_json(&mut c.ws).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(next_json(&mut c.ws).await["type"], "jobs_snapshot");
    // The last 50 fit: recovered.
    send(&mut c.ws, &ask(50, &epoch)).await;
    assert_eq!(next_json(&mut c.ws).await["recovered"], true);
    for n in 51..=100 {
        assert_eq!(next_json(&mut c.ws).await["seq"], n);
    }
    let stats = wait_stats(&server, |s| s["recoveriesFailed"] == 1).await;
    assert_eq!(stats["evictions"], 0, "{stats}");
}
