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

/// Counts its drops: captured by a handler, it tells when the core let go of the handler.
struct DropCount(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn handlers_are_dropped_when_replaced_and_when_the_server_stops() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = start("");
    let drops = Arc::new(AtomicUsize::new(0));
    let handler = |drops: &Arc<AtomicUsize>| -> herald::EventHandler {
        let guard = DropCount(Arc::clone(drops));
        Arc::new(move |_: &herald::Event| {
            let _ = &guard;
        })
    };
    let authorizer = |drops: &Arc<AtomicUsize>| -> herald::Authorizer {
        let guard = DropCount(Arc::clone(drops));
        Arc::new(move |_: &herald::AuthRequest| {
            let _ = &guard;
        })
    };
    server.set_event_handler(Some(handler(&drops))).unwrap();
    server.set_authorizer(Some(authorizer(&drops))).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    // Replaced: the previous ones go.
    server.set_event_handler(Some(handler(&drops))).unwrap();
    server.set_authorizer(Some(authorizer(&drops))).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    // Stopped: the installed ones go, though this clone of the server lives on.
    server.stop(Duration::from_secs(5)).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    // Refused after the stop: dropped at once, never installed.
    assert!(server.set_event_handler(Some(handler(&drops))).is_err());
    assert!(server.set_authorizer(Some(authorizer(&drops))).is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 6);
}
