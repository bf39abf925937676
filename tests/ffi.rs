//! The C ABI as a C host sees it: statuses, messages, outputs only on success, stale
//! handles, callbacks, threads and several servers in one process.
mod common;
use common::*;
use herald::ffi::*;
use herald_status::*;
use serde_json::Value;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(herald_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

fn start_c(config: &str) -> *mut herald_server {
    let server = herald_start(cs(config).as_ptr());
    assert!(!server.is_null(), "{}", last_error());
    server
}

fn take_string(p: *mut c_char) -> String {
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    unsafe { herald_string_free(p) };
    s
}

#[test]
fn start_failures_return_null_with_a_message() {
    for (config, needle) in [
        ("{", "invalid config"),
        (r#"{"bogus":1}"#, "bogus"),
        (r#"{"port":0,"path":"x"}"#, "path"),
    ] {
        assert!(herald_start(cs(config).as_ptr()).is_null(), "{config}");
        assert!(last_error().contains(needle), "{config}: {}", last_error());
    }
    let bad_utf8 = [b'{', 0xff, b'}', 0];
    assert!(herald_start(bad_utf8.as_ptr().cast()).is_null());
    assert!(last_error().contains("UTF-8"), "{}", last_error());
    // A port already taken.
    let a = start_c(r#"{"port":0}"#);
    let taken = format!(r#"{{"port":{}}}"#, herald_port(a));
    assert!(herald_start(cs(&taken).as_ptr()).is_null());
    assert!(last_error().contains("cannot listen"), "{}", last_error());
    assert_eq!(herald_last_status(), HERALD_ERR_IO);
    assert_eq!(herald_stop(a, 1000), HERALD_OK);
}

/// Finding 9 of issue 12: this number used to panic inside the runtime (HERALD_ERR_PANIC).
#[test]
fn an_out_of_range_number_is_an_invalid_config_naming_its_key() {
    for (config, key) in [
        (
            r#"{"port":0,"publish_queue_size":18446744073709551615}"#,
            "publish_queue_size",
        ),
        (
            r#"{"port":0,"heartbeat_interval_ms":18446744073709551615}"#,
            "heartbeat_interval_ms",
        ),
        (r#"{"port":0,"history":{"ttl_ms":-1}}"#, "history.ttl_ms"),
        (
            r#"{"port":0,"rate_limit":{"burst":1e30}}"#,
            "rate_limit.burst",
        ),
    ] {
        assert!(herald_start(cs(config).as_ptr()).is_null(), "{config}");
        assert_eq!(herald_last_status(), HERALD_ERR_INVALID_CONFIG, "{config}");
        assert!(last_error().contains(key), "{config}: {}", last_error());
    }
}

#[test]
fn bad_arguments_get_statuses_not_crashes() {
    let server = start_c(r#"{"port":0}"#);
    let s = cs("session");
    let obj = cs("{}");
    assert_eq!(
        herald_notify_ai_start(ptr::null_mut(), s.as_ptr(), obj.as_ptr()),
        HERALD_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        herald_notify_ai_start(server, ptr::null(), obj.as_ptr()),
        HERALD_ERR_NULL_ARGUMENT
    );
    assert!(last_error().contains("session_id"), "{}", last_error());
    assert_eq!(
        herald_notify_ai_progress(server, s.as_ptr(), ptr::null()),
        HERALD_ERR_NULL_ARGUMENT
    );
    let bad_utf8 = [0xc3u8, 0x28, 0];
    assert_eq!(
        herald_notify_ai_complete(server, bad_utf8.as_ptr().cast(), obj.as_ptr()),
        HERALD_ERR_INVALID_UTF8
    );
    assert_eq!(
        herald_notify_ai_error(server, s.as_ptr(), cs("{oops").as_ptr()),
        HERALD_ERR_INVALID_JSON
    );
    assert!(last_error().contains("not valid JSON"), "{}", last_error());
    assert_eq!(
        herald_broadcast(server, cs("[]").as_ptr()),
        HERALD_ERR_INVALID_JSON
    );
    assert_eq!(
        herald_publish(server, cs("").as_ptr(), obj.as_ptr()),
        HERALD_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        herald_broadcast_to_user(server, ptr::null(), obj.as_ptr()),
        HERALD_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        herald_send(server, cs("nobody").as_ptr(), obj.as_ptr()),
        HERALD_ERR_UNKNOWN_CLIENT
    );
    assert!(last_error().contains("nobody"));

    // Outputs are written only on success.
    let sentinel = 0x5a5a as *mut c_char;
    let mut out = sentinel;
    assert_eq!(
        herald_stats(server, ptr::null_mut()),
        HERALD_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        herald_stats(0x1234 as *mut herald_server, &mut out),
        HERALD_ERR_INVALID_HANDLE
    );
    assert_eq!(out, sentinel);
    assert_eq!(herald_next_event(server, 10, &mut out), HERALD_ERR_TIMEOUT);
    assert_eq!(out, sentinel);
    assert_eq!(herald_stats(server, &mut out), HERALD_OK);
    let stats: Value = serde_json::from_str(&take_string(out)).unwrap();
    assert_eq!(stats["activeConnections"], 0);
    let mut out = sentinel;
    assert_eq!(
        herald_history(server, cs("session:nothing").as_ptr(), &mut out),
        HERALD_OK
    );
    assert_eq!(take_string(out), "[]");
    let mut out = sentinel;
    for (channel, status) in [
        (ptr::null(), HERALD_ERR_NULL_ARGUMENT),
        (cs("").as_ptr(), HERALD_ERR_INVALID_ARGUMENT),
    ] {
        assert_eq!(herald_presence(server, channel, &mut out), status);
        assert_eq!(out, sentinel);
    }
    assert_eq!(
        herald_presence(server, cs("room").as_ptr(), ptr::null_mut()),
        HERALD_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        herald_presence(server, cs("room").as_ptr(), &mut out),
        HERALD_OK
    );
    let presence: Value = serde_json::from_str(&take_string(out)).unwrap();
    assert_eq!(
        presence,
        serde_json::json!({"channel": "room", "members": [], "total": 0, "truncated": false})
    );

    unsafe { herald_string_free(ptr::null_mut()) };
    assert_eq!(
        unsafe { CStr::from_ptr(herald_version()) }
            .to_str()
            .unwrap(),
        herald::version()
    );
    assert_eq!(herald_port(ptr::null()), 0);

    // A stopped handle is refused, including a second stop.
    assert_eq!(herald_stop(server, 1000), HERALD_OK);
    assert_eq!(herald_stop(server, 1000), HERALD_ERR_INVALID_HANDLE);
    assert_eq!(
        herald_notify_ai_start(server, s.as_ptr(), obj.as_ptr()),
        HERALD_ERR_INVALID_HANDLE
    );
    assert!(
        last_error().contains("unknown or stopped"),
        "{}",
        last_error()
    );
    assert_eq!(herald_port(server), 0);
    assert_eq!(herald_stop(ptr::null_mut(), 0), HERALD_ERR_NULL_ARGUMENT);
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn on_event(user_data: *mut c_void, event_json: *const c_char) {
    let seen = unsafe { &*(user_data as *const std::sync::Mutex<Vec<String>>) };
    let json = unsafe { CStr::from_ptr(event_json) }
        .to_str()
        .unwrap()
        .to_string();
    seen.lock().unwrap().push(json);
    CALLS.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test]
async fn event_callback_receives_user_data_and_stops_with_the_server() {
    let server = start_c(r#"{"port":0}"#);
    let seen: &'static std::sync::Mutex<Vec<String>> =
        Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
    let user_data = seen as *const _ as *mut c_void;
    assert_eq!(
        herald_set_event_handler(server, Some(on_event), user_data),
        HERALD_OK
    );
    let port = herald_port(server);
    let url = format!("ws://127.0.0.1:{port}/ws?sessionId=cb");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_json(&mut ws).await;
    send(&mut ws, r#"{"type":"note","text":"hi"}"#).await;
    let deadline = std::time::Instant::now() + WAIT;
    while seen.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let handle = server as usize;
    let status = blocking(move || herald_stop(handle as *mut herald_server, 5000)).await;
    assert_eq!(status, HERALD_OK);
    let events: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["connected", "subscribed", "client_message", "disconnected"]
    );
    assert_eq!(events[3]["code"], 1001);
    let calls = CALLS.load(Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        calls,
        "no callback after herald_stop returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_threads_notify_at_once_without_loss_or_reordering() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 500;
    let server = start_c(r#"{"port":0,"client_queue_size":8192}"#);
    let url = format!("ws://127.0.0.1:{}/ws?sessionId=mt", herald_port(server));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_json(&mut ws).await;
    let handle = server as usize;
    let mut stats = ptr::null_mut();
    loop {
        assert_eq!(herald_stats(server, &mut stats), HERALD_OK);
        if take_string(stats).contains("\"subscriptions\":1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let session = cs("mt");
                for i in 0..PER_THREAD {
                    let payload = cs(&format!(r#"{{"thread":{t},"i":{i}}}"#));
                    let status = herald_notify_ai_progress(
                        handle as *mut herald_server,
                        session.as_ptr(),
                        payload.as_ptr(),
                    );
                    assert_eq!(status, HERALD_OK, "{}", last_error());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut next = [0u64; THREADS];
    for seq in 1..=(THREADS * PER_THREAD) as u64 {
        let m = next_json(&mut ws).await;
        assert_eq!(m["seq"], seq, "seq has no gaps");
        let t = m["progress"]["thread"].as_u64().unwrap() as usize;
        assert_eq!(m["progress"]["i"], next[t], "thread {t} in order");
        next[t] += 1;
    }
    assert!(next.iter().all(|&n| n == PER_THREAD as u64));
    assert_eq!(
        blocking(move || herald_stop(handle as *mut herald_server, 5000)).await,
        HERALD_OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_servers_live_in_one_process() {
    let servers: Vec<_> = (0..3).map(|_| start_c(r#"{"port":0}"#)).collect();
    let ports: Vec<u16> = servers.iter().map(|&s| herald_port(s)).collect();
    assert!(ports[0] != ports[1] && ports[1] != ports[2]);
    let mut clients = Vec::new();
    for port in &ports {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?sessionId=s"))
                .await
                .unwrap();
        next_json(&mut ws).await;
        clients.push(ws);
    }
    for (i, &server) in servers.iter().enumerate() {
        let mut out = ptr::null_mut();
        while {
            assert_eq!(herald_stats(server, &mut out), HERALD_OK);
            !take_string(out).contains("\"subscriptions\":1")
        } {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let payload = cs(&format!(r#"{{"server":{i}}}"#));
        assert_eq!(
            herald_notify_ai_start(server, cs("s").as_ptr(), payload.as_ptr()),
            HERALD_OK
        );
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(
            next_json(ws).await["task"]["server"],
            i,
            "each server talks to its own clients"
        );
    }
    // Stopping one leaves the others running.
    let first = servers[0] as usize;
    assert_eq!(
        blocking(move || herald_stop(first as *mut herald_server, 5000)).await,
        HERALD_OK
    );
    assert_eq!(
        herald_notify_ai_start(
            servers[1],
            cs("s").as_ptr(),
            cs(r#"{"still":true}"#).as_ptr()
        ),
        HERALD_OK
    );
    assert_eq!(next_json(&mut clients[1]).await["task"]["still"], true);
    for &s in &servers[1..] {
        let h = s as usize;
        assert_eq!(
            blocking(move || herald_stop(h as *mut herald_server, 5000)).await,
            HERALD_OK
        );
    }
}
