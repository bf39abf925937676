//! Flow control for the host: a burst larger than a client's queue budget reaches
//! every reading subscriber when the host waits for the clients to drain between
//! batches, and evicts them when it does not.
mod common;
use common::*;
use futures_util::StreamExt;
use herald::{ErrorKind, Server};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const SUBSCRIBERS: usize = 10;
const MESSAGES: u64 = 10_000;
const BATCH: u64 = 500;
/// About 200 bytes on the wire, as in the burst case reported: 10,000 of them are
/// several times the default 1 MiB client budget.
fn message(n: u64) -> String {
    format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(180))
}

async fn subscribers(server: &Server) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut client = connect(server, "").await;
        subscribe(&mut client.ws, "channel", "burst").await;
        clients.push(client);
    }
    wait_stats(server, |s| s["subscriptions"] == SUBSCRIBERS as u64).await;
    clients
}

/// Reads until `MESSAGES` arrived or the connection closed; checks the order and
/// returns how many arrived.
fn read_all(mut client: Client) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut received = 0;
        while received < MESSAGES {
            match tokio::time::timeout(WAIT, client.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let m: Value = serde_json::from_str(&text).unwrap();
                    received += 1;
                    assert_eq!(m["n"], received, "in order, nothing missing");
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break,
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!("no message for {WAIT:?} after {received}"),
            }
        }
        received
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_every_reader_when_the_host_waits_for_drain() {
    let server = start("");
    let readers: Vec<_> = subscribers(&server)
        .await
        .into_iter()
        .map(read_all)
        .collect();
    let host = server.clone();
    let (elapsed, waits) = blocking(move || {
        let started = Instant::now();
        let mut waits = 0;
        for n in 1..=MESSAGES {
            host.publish("burst", &message(n)).unwrap();
            if n % BATCH == 0 {
                host.wait_drained(Duration::from_secs(5)).unwrap();
                waits += 1;
            }
        }
        (started.elapsed(), waits)
    })
    .await;
    for reader in readers {
        assert_eq!(reader.await.unwrap(), MESSAGES);
    }
    let stats = wait_stats(&server, |s| s["backloggedClients"] == 0).await;
    assert_eq!(stats["evictions"], 0, "{stats}");
    assert_eq!(stats["backpressure"], false, "{stats}");
    eprintln!(
        "burst with drain: {SUBSCRIBERS} x {MESSAGES} delivered in {elapsed:?} ({waits} waits)"
    );
    blocking(move || server.stop(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_burst_without_waiting_evicts() {
    let server = start("");
    let readers: Vec<_> = subscribers(&server)
        .await
        .into_iter()
        .map(read_all)
        .collect();
    let host = server.clone();
    blocking(move || {
        for n in 1..=MESSAGES {
            host.publish("burst", &message(n)).unwrap();
        }
    })
    .await;
    let (mut complete, mut delivered) = (0, 0);
    for reader in readers {
        let received = reader.await.unwrap();
        complete += usize::from(received == MESSAGES);
        delivered += received;
    }
    let stats = wait_stats(&server, |s| s["evictions"].as_u64() > Some(0)).await;
    assert!(complete < SUBSCRIBERS, "every reader kept up: {stats}");
    eprintln!(
        "burst without drain: {} of {SUBSCRIBERS} evicted, {complete} got everything, {delivered} delivered in all",
        stats["evictions"]
    );
    blocking(move || server.stop(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_raises_backpressure_and_times_the_wait_out() {
    let server = start(r#"{"client_queue_size":64}"#);
    let mut idle = connect(&server, "").await;
    subscribe(&mut idle.ws, "channel", "burst").await;
    wait_stats(&server, |s| s["subscriptions"] == 1).await;
    // Drained with nobody behind: a look answers at once.
    server.wait_drained(Duration::ZERO).unwrap();
    // 16 KiB messages, paced, until the socket buffers are full and the queue passes
    // half of its budget: the host sees backpressure before the client is evicted.
    let pad = "x".repeat(16 * 1024);
    let mut published = 0;
    while !server.backpressure() {
        assert!(
            published < 2000,
            "no backpressure after {published} messages"
        );
        published += 1;
        server
            .publish("burst", &format!(r#"{{"n":{published},"pad":"{pad}"}}"#))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let host = server.clone();
    let error = blocking(move || host.wait_drained(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let stats: Value = serde_json::from_str(&server.stats_json().unwrap()).unwrap();
    assert_eq!(stats["backpressure"], true, "{stats}");
    assert_eq!(stats["backloggedClients"], 1, "{stats}");
    assert_eq!(stats["evictions"], 0, "{stats}");
    // Once it reads, the wait succeeds and it has everything.
    let reader = read_all(idle);
    let host = server.clone();
    blocking(move || host.wait_drained(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(!server.backpressure());
    reader.abort();
    blocking(move || server.stop(Duration::from_secs(5)))
        .await
        .unwrap();
}

/// The C ABI: `herald_wait_drained` answers OK, a timeout while a client does not read,
/// and statuses for bad handles, never a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_wait_drained_reports_timeout_and_bad_handles_as_statuses() {
    use herald::ffi::herald_status::*;
    use herald::ffi::*;
    use std::ffi::CString;
    let config = CString::new(r#"{"port":0,"client_queue_size":64}"#).unwrap();
    let mut handle: *mut herald_server = std::ptr::null_mut();
    // SAFETY: a NUL-terminated config and a writable out pointer.
    assert_eq!(
        unsafe { herald_start(config.as_ptr(), &mut handle) },
        HERALD_OK
    );
    let address = handle as usize;
    let server_port = {
        let mut port = 0u16;
        // SAFETY: a live handle and a writable out pointer.
        assert_eq!(unsafe { herald_port(handle, &mut port) }, HERALD_OK);
        port
    };
    let url = format!("ws://127.0.0.1:{server_port}/ws");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut idle = Client {
        ws,
        id: String::new(),
    };
    next_json(&mut idle.ws).await; // the connection message
    subscribe(&mut idle.ws, "channel", "burst").await;
    assert_eq!(
        herald_wait_drained(address as *mut herald_server, 0),
        HERALD_OK
    );
    let channel = CString::new("burst").unwrap();
    let pad = "x".repeat(16 * 1024);
    let flag = || {
        let mut on = -1;
        // SAFETY: a live handle and a writable out pointer.
        assert_eq!(
            unsafe { herald_backpressure(address as *mut _, &mut on) },
            HERALD_OK
        );
        on
    };
    assert_eq!(flag(), 0);
    let backpressure = || {
        let mut out = std::ptr::null_mut();
        // SAFETY: a live handle and a writable out pointer; the string is freed below.
        assert_eq!(
            unsafe { herald_stats(address as *mut _, &mut out) },
            HERALD_OK
        );
        // SAFETY: herald_stats wrote a NUL-terminated string.
        let stats: Value =
            serde_json::from_str(unsafe { std::ffi::CStr::from_ptr(out) }.to_str().unwrap())
                .unwrap();
        // SAFETY: a string from herald_stats, freed once.
        unsafe { herald_string_free(out) };
        stats["backpressure"] == true
    };
    let mut published = 0;
    while !backpressure() {
        assert!(
            published < 2000,
            "no backpressure after {published} messages"
        );
        published += 1;
        let message = CString::new(format!(r#"{{"n":{published},"pad":"{pad}"}}"#)).unwrap();
        // SAFETY: a live handle and NUL-terminated strings that outlive the call.
        let status =
            unsafe { herald_publish(address as *mut _, channel.as_ptr(), message.as_ptr()) };
        assert_eq!(status, HERALD_OK);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(flag(), 1);
    let status = blocking(move || herald_wait_drained(address as *mut _, 200)).await;
    assert_eq!(status, HERALD_ERR_TIMEOUT);
    let reader = read_all(idle);
    let status = blocking(move || herald_wait_drained(address as *mut _, 5000)).await;
    assert_eq!(status, HERALD_OK);
    assert_eq!(flag(), 0);
    reader.abort();
    // SAFETY: NULL is the case under test.
    let status = unsafe { herald_backpressure(address as *mut _, std::ptr::null_mut()) };
    assert_eq!(status, HERALD_ERR_NULL_ARGUMENT);
    assert_eq!(
        herald_wait_drained(std::ptr::null_mut(), 10),
        HERALD_ERR_NULL_ARGUMENT
    );
    let stopped = blocking(move || herald_stop(address as *mut _, 5000)).await;
    assert_eq!(stopped, HERALD_OK);
    assert_eq!(
        herald_wait_drained(address as *mut _, 10),
        HERALD_ERR_INVALID_HANDLE
    );
}
