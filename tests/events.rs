//! Host events are bounded in bytes as well as in count, over real sockets: large client
//! messages that the host does not pull are dropped and counted, not held.
mod common;
use common::*;
use std::time::Duration;

#[tokio::test]
async fn large_client_messages_beyond_event_queue_bytes_are_dropped_and_counted() {
    const BODY: usize = 30_000;
    // Room for the connected event and two such messages, not three; plenty of room in count.
    let server = start(r#"{"event_queue_bytes":65536,"event_queue_size":10000}"#);
    let mut c = connect(&server, "").await;
    let message = format!(r#"{{"type":"upload","body":"{}"}}"#, "x".repeat(BODY));
    for _ in 0..10 {
        send(&mut c.ws, &message).await;
    }
    let stats = wait_stats(&server, |s| {
        s["eventsQueued"].as_u64().unwrap() + s["eventsDropped"].as_u64().unwrap() == 11
    })
    .await;
    assert_eq!(stats["eventsQueued"], 3, "{stats}");
    assert_eq!(stats["eventsDropped"], 8, "{stats}");

    // What was kept is the oldest, in order.
    let kinds: Vec<_> = std::iter::from_fn(|| server.next_event(Duration::ZERO).unwrap())
        .map(|e| e.kind())
        .collect();
    assert_eq!(kinds, ["connected", "client_message", "client_message"]);

    // Drained, the queue takes large messages again.
    send(&mut c.ws, &message).await;
    let event = blocking({
        let server = server.clone();
        move || server.next_event(WAIT).unwrap()
    })
    .await
    .expect("the message after draining is queued");
    assert_eq!(event.kind(), "client_message");
    assert!(event.to_json().len() > BODY);
}
