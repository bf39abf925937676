//! Fan-out, slow-client eviction, heartbeat reaping and graceful stop.
mod common;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reaches_every_subscriber_in_order() {
    every_subscriber_reads_every_message_in_order("", 200, 50).await;
}

/// The same with each socket written by its own `send` (what a kernel without io_uring
/// gets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_without_io_uring_reaches_every_subscriber_in_order() {
    every_subscriber_reads_every_message_in_order(r#"{"io_uring":false}"#, 200, 50).await;
}

/// `clients` subscribers of one session and `messages` progress notes published at once:
/// each subscriber reads every one, whole and in order, and nothing is dropped.
async fn every_subscriber_reads_every_message_in_order(
    config: &str,
    clients: usize,
    messages: u64,
) {
    let server = start(config);
    let mut connected = Vec::with_capacity(clients);
    while connected.len() < clients {
        let wave = (clients - connected.len()).min(100);
        let connecting = (0..wave).map(|_| connect(&server, "?sessionId=fan"));
        connected.extend(futures_util::future::join_all(connecting).await);
    }
    wait_stats(&server, |s| s["subscriptions"] == clients as u64).await;
    for n in 1..=messages {
        server
            .notify_ai_progress("fan", &format!(r#"{{"n":{n}}}"#))
            .unwrap();
    }
    let readers = connected.into_iter().map(|mut c| {
        tokio::spawn(async move {
            for n in 1..=messages {
                let m = next_json(&mut c.ws).await;
                assert_eq!(m["progress"]["n"], n, "in order, nothing missing");
                assert_eq!(m["seq"], n);
            }
        })
    });
    for reader in futures_util::future::join_all(readers).await {
        reader.unwrap();
    }
    let stats = wait_stats(&server, |s| {
        s["messagesSent"].as_u64().unwrap() >= clients as u64 * (messages + 1)
    })
    .await;
    assert_eq!(stats["messagesDropped"], 0);
    // What was written left the memory gauge: nothing counts as queued any more.
    wait_stats(&server, |s| s["queuedBytes"] == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_evicted_while_others_keep_receiving() {
    let server = start(r#"{"client_queue_size":8,"history":{"size":0}}"#);
    let mut slow = connect(&server, "?sessionId=s").await;
    let mut fast = connect(&server, "?sessionId=s").await;
    wait_stats(&server, |s| s["subscriptions"] == 2).await;
    // 16 KiB messages: the slow client's socket buffers fill, then its queue, then it is evicted.
    let pad = "x".repeat(16 * 1024);
    const MESSAGES: u64 = 2000;
    // The fast client reports its progress; the publisher stays within a window of it,
    // well inside its queue, so only the client that stops reading falls behind.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let fast_reader = tokio::spawn(async move {
        for n in 1..=MESSAGES {
            let m = next_json(&mut fast.ws).await;
            assert_eq!(m["progress"]["n"], n);
            progress_tx.send_replace(n);
        }
    });
    for n in 1..=MESSAGES {
        while n > *progress.borrow() + 4 {
            tokio::time::timeout(WAIT, progress.changed())
                .await
                .expect("fast client stalled")
                .unwrap();
        }
        server
            .notify_ai_progress("s", &format!(r#"{{"jobId":"j{n}","n":{n},"pad":"{pad}"}}"#))
            .unwrap();
    }
    fast_reader.await.unwrap();
    let stats = wait_stats(&server, |s| {
        s["evictions"] == 1 && s["activeConnections"] == 1
    })
    .await;
    assert!(stats["messagesDropped"].as_u64().unwrap() >= 1);
    // The evicted client sees its messages stop and the connection close with 1013.
    let mut received = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, slow.ws.next())
            .await
            .expect("slow client never closed")
        {
            Some(Ok(Message::Text(_))) => received += 1,
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(
        received < MESSAGES + 1,
        "the slow client did not get everything"
    );
    assert!(code.is_none() || code == Some(1013), "close code {code:?}");
}

#[tokio::test]
async fn heartbeat_pings_and_reaps_silent_clients() {
    let server = start(r#"{"heartbeat_interval_ms":100,"heartbeat_timeout_ms":400}"#);
    let mut responsive = connect(&server, "").await;
    let responsive_id = responsive.id.clone();
    let silent = connect(&server, "").await; // never reads, so never answers pings
                                             // The responsive client keeps reading (which answers pings) and counts them.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            tokio::select! {
                _ = &mut stop_rx => return pings,
                m = responsive.ws.next() => match m {
                    Some(Ok(Message::Ping(_))) => pings += 1,
                    Some(Ok(_)) => {}
                    _ => return pings,
                },
            }
        }
    });
    let stats = wait_stats(&server, |s| {
        s["heartbeatTimeouts"] == 1 && s["activeConnections"] == 1
    })
    .await;
    assert_eq!(
        stats["clients"][0]["id"],
        responsive_id.as_str(),
        "the responsive client stays"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(()).unwrap();
    let pings = reader.await.unwrap();
    assert!(pings >= 3, "pings seen: {pings}");
    assert_eq!(
        server
            .stats_json()
            .map(|s| s.contains("\"heartbeatTimeouts\":1")),
        Ok(true),
        "still only one reaped"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_flushes_queued_messages_then_closes_with_1001() {
    const MESSAGES: u64 = 2000;
    let server = start(r#"{"client_queue_size":4096}"#);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&server, "?sessionId=s").await);
    }
    wait_stats(&server, |s| s["subscriptions"] == 3).await;
    for n in 1..=MESSAGES {
        server
            .notify_ai_progress("s", &format!(r#"{{"n":{n}}}"#))
            .unwrap();
    }
    // Stop at once: nothing queued may be lost.
    let stopper = server.clone();
    let stopped = tokio::task::spawn_blocking(move || stopper.stop(Duration::from_secs(20)));
    for mut c in clients {
        let mut n = 0;
        let code = loop {
            match tokio::time::timeout(WAIT, c.ws.next())
                .await
                .expect("timed out")
            {
                Some(Ok(Message::Text(t))) => {
                    let m: Value = serde_json::from_str(&t).unwrap();
                    n += 1;
                    assert_eq!(m["progress"]["n"], n);
                }
                Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame after {n}: {other:?}"),
            }
        };
        assert_eq!(n, MESSAGES, "every queued message arrived before the close");
        assert_eq!(code, Some(1001));
    }
    stopped.await.unwrap().unwrap();
    assert_eq!(
        server.notify_ai_start("s", "{}").unwrap_err().kind(),
        herald::ErrorKind::Stopped
    );
    assert_eq!(
        server.stop(Duration::from_secs(1)).unwrap_err().kind(),
        herald::ErrorKind::Stopped
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .is_err(),
        "the port is closed"
    );
}

#[tokio::test]
async fn a_full_channel_table_is_an_error_for_the_host_and_clients_leave_it_room() {
    // 10 channels: clients may create 9, the last one is kept for the host.
    let server = start(r#"{"max_channels":10}"#);
    let mut c = connect(&server, "").await;
    for n in 0..9 {
        subscribe(&mut c.ws, "channel", &format!("c{n}")).await;
    }
    send(&mut c.ws, r#"{"type":"subscribe","channel":"c9"}"#).await;
    let refused = next_json(&mut c.ws).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("channel limit"),
        "{refused}"
    );
    // The host still reaches a new session, and then the table is full for it too.
    server.notify_ai_start("host-room", r#"{"n":1}"#).unwrap();
    let err = server
        .notify_ai_start("one-too-many", r#"{"n":1}"#)
        .unwrap_err();
    assert_eq!(err.kind(), herald::ErrorKind::Limit, "{err}");
    // Existing channels keep working, full table or not.
    server.publish("c3", r#"{"still":"here"}"#).unwrap();
    assert_eq!(next_json(&mut c.ws).await["still"], "here");
    let stats = wait_stats(&server, |s| s["channels"] == 10).await;
    assert_eq!(stats["channelsRejected"], 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_right_after_subscribed_delivers_what_was_published_before_it() {
    // A host that publishes as soon as it hears `subscribed` and stops at once: the
    // connection may still be opening when the stop begins (a0c4dc0 lost all of it
    // about one run in twenty on a busy machine).
    for run in 0..20 {
        let server = start("");
        let host = server.clone();
        let streamer = std::thread::spawn(move || {
            while host
                .next_event(WAIT)
                .unwrap()
                .is_some_and(|e| e.kind() != "subscribed")
            {}
            for n in 1..=6 {
                host.publish("session:s", &format!(r#"{{"n":{n}}}"#))
                    .unwrap();
            }
            host.stop(WAIT)
        });
        let mut c = connect(&server, "?sessionId=s").await;
        for n in 1..=6 {
            assert_eq!(next_json(&mut c.ws).await["n"], n, "run {run}");
        }
        assert_eq!(close_code(&mut c.ws).await, Some(1001), "run {run}");
        drop(c); // the server's close handshake ends when the socket does
        streamer.join().unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_memory_the_largest_queues_go_first() {
    // Three clients that never read and one that does; 2 MiB for everything. Each
    // client's own budget (1 MiB) would let the three hold 3 MiB: the server-wide bound
    // evicts them first, the largest first, and the reader keeps everything.
    const MESSAGES: u64 = 500;
    let server = start(
        r#"{"max_memory":2097152,"client_queue_bytes":1048576,"socket_send_buffer":4096,
            "history":{"size":0}}"#,
    );
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(connect(&server, "?sessionId=mem").await);
    }
    let mut reader = connect(&server, "?sessionId=mem").await;
    wait_stats(&server, |s| s["subscriptions"] == 4).await;
    let read = tokio::spawn(async move {
        for n in 1..=MESSAGES {
            let m = next_json(&mut reader.ws).await;
            assert_eq!(m["progress"]["n"], n, "the reader misses nothing");
        }
    });
    let pad = "m".repeat(8 * 1024);
    for n in 1..=MESSAGES {
        server
            .notify_ai_progress("mem", &format!(r#"{{"n":{n},"pad":"{pad}"}}"#))
            .unwrap();
        // Paced, so the guard's task runs between publications as it would in production.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    read.await.unwrap();
    let stats = wait_stats(&server, |s| s["memoryEvictions"].as_u64() >= Some(1)).await;
    assert!(
        stats["memoryBytes"].as_u64().unwrap() <= 2097152,
        "back under max_memory: {stats}"
    );
    assert_eq!(stats["writeStalls"], 0, "{stats}");
    drop(stalled);
}

/// Publications far larger than the socket's send buffer: writing them from the
/// dispatcher's write pass gets only a frame's start onto the socket, and the
/// connection writes the rest. Every message arrives whole and in order, to a reader
/// that keeps up and to one that reads only at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_larger_than_the_send_buffer_arrive_whole_and_in_order() {
    frames_larger_than_the_send_buffer_arrive_whole(
        r#"{"socket_send_buffer":4096,"client_queue_bytes":16777216}"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_larger_than_the_send_buffer_arrive_whole_and_in_order_without_io_uring() {
    frames_larger_than_the_send_buffer_arrive_whole(
        r#"{"socket_send_buffer":4096,"client_queue_bytes":16777216,"io_uring":false}"#,
    )
    .await;
}

async fn frames_larger_than_the_send_buffer_arrive_whole(config: &str) {
    const MESSAGES: u64 = 60;
    const PAD: usize = 96 * 1024;
    let server = start(config);
    let prompt = connect(&server, "?sessionId=big").await;
    let late = connect(&server, "?sessionId=big").await;
    wait_stats(&server, |s| s["subscriptions"] == 2).await;
    let read_all = |mut client: Client| async move {
        for n in 1..=MESSAGES {
            let m = next_json(&mut client.ws).await;
            assert_eq!(m["progress"]["n"], n, "in order, nothing missing");
            let pad = m["progress"]["pad"].as_str().unwrap();
            assert!(pad.len() == PAD && pad.bytes().all(|b| b == b'a' + (n % 26) as u8));
        }
    };
    let reader = tokio::spawn(read_all(prompt));
    for n in 1..=MESSAGES {
        let pad = ((b'a' + (n % 26) as u8) as char).to_string().repeat(PAD);
        server
            .notify_ai_progress("big", &format!(r#"{{"n":{n},"pad":"{pad}"}}"#))
            .unwrap();
        // One publication per dispatcher batch, so each meets a parked connection.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reader.await.unwrap();
    // The late reader's socket filled long ago; it reads everything now.
    tokio::time::timeout(WAIT, read_all(late))
        .await
        .expect("the late reader gets everything");
}

/// More subscribers than one thread writes in a pass (1024 per part): the pass is split
/// between the dispatcher's thread and another. Every subscriber still gets every
/// publication once, whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_written_in_parts_reaches_every_subscriber_in_order() {
    const CLIENTS: usize = 2100;
    // Each client is two descriptors in this process.
    raise_fd_limit(2 * CLIENTS + 256);
    every_subscriber_reads_every_message_in_order("", CLIENTS, 30).await;
}

/// A burst longer than the clients' queues, queued as one run per subscriber: each
/// client sees a gapless prefix, and one that was cut short is evicted with 1013 and
/// its messages counted as dropped, never more than it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_a_queue_is_a_prefix_and_the_rest_is_counted_dropped() {
    const CLIENTS: usize = 3;
    const MESSAGES: u64 = 40;
    let server = start(r#"{"client_queue_size":8,"history":{"size":0}}"#);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = connect(&server, "").await;
        subscribe(&mut client.ws, "channel", "run").await;
        clients.push(client);
    }
    wait_stats(&server, |s| s["subscriptions"] == CLIENTS as u64).await;
    for n in 1..=MESSAGES {
        // Plain publications: none supersedes another, so none is merged away.
        server.publish("run", &format!(r#"{{"n":{n}}}"#)).unwrap();
    }
    let mut missed = 0;
    let mut cut_short = 0;
    for mut client in clients {
        let mut received = 0;
        let code = loop {
            match tokio::time::timeout(WAIT, client.ws.next())
                .await
                .expect("a client neither got everything nor was closed")
            {
                Some(Ok(Message::Text(t))) => {
                    let m: Value = serde_json::from_str(&t).unwrap();
                    received += 1;
                    assert_eq!(m["n"], received, "a gapless prefix: {m}");
                    if received == MESSAGES {
                        break None;
                    }
                }
                Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break Some(0),
            }
        };
        if received < MESSAGES {
            assert_eq!(code, Some(1013), "cut short by eviction");
            cut_short += 1;
            missed += MESSAGES - received;
        }
    }
    let stats = wait_stats(&server, |s| s["evictions"] == cut_short).await;
    let dropped = stats["messagesDropped"].as_u64().unwrap();
    assert!(
        (cut_short..=missed).contains(&dropped),
        "{dropped} dropped for {cut_short} evicted clients missing {missed}"
    );
}

/// Clients that keep talking while a burst is fanned out: their connections run (and
/// park again) in the middle of a dispatcher batch, so one pass can collect a client
/// twice. Every client still reads every publication once, in order, and nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_talk_during_a_burst_read_every_publication_in_order() {
    use futures_util::SinkExt;
    const CLIENTS: usize = 60;
    const MESSAGES: u64 = 2000;
    let server = start(
        r#"{"rate_limit":{"messages_per_second":0},"client_queue_bytes":16777216,"history":{"size":0}}"#,
    );
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(connect(&server, "?sessionId=talk").await);
    }
    wait_stats(&server, |s| s["subscriptions"] == CLIENTS as u64).await;
    let talking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut talkers = Vec::with_capacity(CLIENTS);
    let mut readers = Vec::with_capacity(CLIENTS);
    for client in clients {
        let (mut sink, mut stream) = client.ws.split();
        let talking = talking.clone();
        talkers.push(tokio::spawn(async move {
            // Bounded: at most 5,000 pings, one per millisecond.
            for _ in 0..5000 {
                if !talking.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if sink
                    .send(Message::text(r#"{"type":"ping"}"#))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
        readers.push(tokio::spawn(async move {
            let mut expected = 1;
            while expected <= MESSAGES {
                let frame = tokio::time::timeout(WAIT, stream.next())
                    .await
                    .expect("a publication or a pong within the wait")
                    .expect("the connection stays open")
                    .unwrap();
                let Message::Text(text) = frame else { continue };
                let m: Value = serde_json::from_str(&text).unwrap();
                if m["type"] == "pong" {
                    continue;
                }
                assert_eq!(
                    m["progress"]["n"], expected,
                    "in order, nothing missing: {m}"
                );
                expected += 1;
            }
        }));
    }
    for burst in 0..(MESSAGES / 100) {
        for n in burst * 100 + 1..=(burst + 1) * 100 {
            server
                .notify_ai_progress("talk", &format!(r#"{{"n":{n}}}"#))
                .unwrap();
            // A call in between: each publication to "talk" is a fan-out of its own
            // within the dispatcher's batch, not one run of many.
            server
                .notify_ai_progress("elsewhere", &format!(r#"{{"n":{n}}}"#))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for reader in readers {
        reader.await.unwrap();
    }
    talking.store(false, std::sync::atomic::Ordering::Relaxed);
    for talker in talkers {
        talker.await.unwrap();
    }
    let stats = wait_stats(&server, |s| s["queuedBytes"] == 0).await;
    assert_eq!(stats["messagesDropped"], 0);
}
