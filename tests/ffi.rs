//! The C ABI as a C host sees it: statuses, messages, outputs only on success, stale
//! handles, callbacks, threads and several servers in one process.
mod common;
use common::*;
use herald::ffi::*;
use herald::AiEvent; // herald_ai_kind in C
use herald_status::*;
use serde_json::Value;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    // SAFETY: herald_last_error returns a NUL-terminated string valid until the next
    // failure on this thread.
    unsafe { CStr::from_ptr(herald_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

/// herald_start with a config: the handle, or the status and message of the failure.
fn try_start(config: &CStr) -> Result<*mut herald_server, (herald_status, String)> {
    let sentinel = 0x5a5a as *mut herald_server;
    let mut server = sentinel;
    // SAFETY: a NUL-terminated config and a writable out-parameter.
    let status = unsafe { herald_start(config.as_ptr(), &mut server) };
    if status == HERALD_OK {
        Ok(server)
    } else {
        assert_eq!(server, sentinel, "the handle is written only on success");
        Err((status, last_error()))
    }
}

fn start_c(config: &str) -> *mut herald_server {
    try_start(&cs(config)).unwrap_or_else(|(status, message)| panic!("{status:?}: {message}"))
}

fn port(server: *mut herald_server) -> u16 {
    let mut port = 0;
    // SAFETY: a writable out-parameter.
    let status = unsafe { herald_port(server, &mut port) };
    assert_eq!(status, HERALD_OK, "{}", last_error());
    port
}

fn take_string(p: *mut c_char) -> String {
    // SAFETY: a string Herald returned, freed once, right after it is copied.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    // SAFETY: as above.
    unsafe { herald_string_free(p) };
    s
}

fn stats(server: *mut herald_server) -> String {
    let mut out = ptr::null_mut();
    // SAFETY: a writable out-parameter.
    assert_eq!(unsafe { herald_stats(server, &mut out) }, HERALD_OK);
    take_string(out)
}

/// herald_notify_ai_progress etc. through `call`, with C strings made here.
fn notify(
    call: unsafe extern "C" fn(*mut herald_server, *const c_char, *const c_char) -> herald_status,
    server: *mut herald_server,
    session: &str,
    json: &str,
) -> herald_status {
    let (session, json) = (cs(session), cs(json));
    // SAFETY: NUL-terminated strings that outlive the call.
    unsafe { call(server, session.as_ptr(), json.as_ptr()) }
}

#[test]
fn start_failures_are_statuses_with_a_message() {
    for (config, status, needle) in [
        ("{", HERALD_ERR_INVALID_CONFIG, "invalid config"),
        (r#"{"bogus":1}"#, HERALD_ERR_INVALID_CONFIG, "bogus"),
        (
            r#"{"port":0,"path":"x"}"#,
            HERALD_ERR_INVALID_CONFIG,
            "path",
        ),
    ] {
        let (got, message) = try_start(&cs(config)).unwrap_err();
        assert_eq!(got, status, "{config}");
        assert!(message.contains(needle), "{config}: {message}");
    }
    let bad_utf8 = CStr::from_bytes_with_nul(&[b'{', 0xff, b'}', 0]).unwrap();
    let (status, message) = try_start(bad_utf8).unwrap_err();
    assert_eq!(status, HERALD_ERR_INVALID_UTF8);
    assert!(message.contains("UTF-8"), "{message}");
    // No place for the handle: refused before anything starts.
    // SAFETY: a NUL-terminated config; NULL is the case under test.
    let status = unsafe { herald_start(cs(r#"{"port":0}"#).as_ptr(), ptr::null_mut()) };
    assert_eq!(status, HERALD_ERR_NULL_ARGUMENT);
    assert!(last_error().contains("server_out"), "{}", last_error());
    // A port already taken.
    let a = start_c(r#"{"port":0}"#);
    let taken = format!(r#"{{"port":{}}}"#, port(a));
    let (status, message) = try_start(&cs(&taken)).unwrap_err();
    assert_eq!(status, HERALD_ERR_IO);
    assert!(message.contains("cannot listen"), "{message}");
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
        let (status, message) = try_start(&cs(config)).unwrap_err();
        assert_eq!(status, HERALD_ERR_INVALID_CONFIG, "{config}");
        assert!(message.contains(key), "{config}: {message}");
    }
}

#[test]
fn bad_arguments_get_statuses_not_crashes() {
    let server = start_c(r#"{"port":0}"#);
    let s = cs("session");
    let obj = cs("{}");
    // SAFETY (every unsafe block of this test): pointer arguments are NULL (the case
    // under test), NUL-terminated strings that outlive the call, or writable locals.
    unsafe {
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
        // A kind C made up is an argument error, never undefined behaviour.
        for kind in [-1, 6, 99] {
            assert_eq!(
                herald_notify_ai(server, kind, s.as_ptr(), obj.as_ptr()),
                HERALD_ERR_INVALID_ARGUMENT,
                "kind {kind}"
            );
            assert!(last_error().contains("herald_ai_kind"), "{}", last_error());
        }
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
    }

    // Outputs are written only on success.
    let sentinel = 0x5a5a as *mut c_char;
    let mut out = sentinel;
    let mut port_out = 7u16;
    // SAFETY: as above.
    unsafe {
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
        assert_eq!(
            herald_port(ptr::null(), &mut port_out),
            HERALD_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            herald_port(server, ptr::null_mut()),
            HERALD_ERR_NULL_ARGUMENT
        );
        assert_eq!(port_out, 7);
    }
    let stats: Value = serde_json::from_str(&stats(server)).unwrap();
    assert_eq!(stats["activeConnections"], 0);
    let mut out = sentinel;
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            herald_history(server, cs("session:nothing").as_ptr(), &mut out),
            HERALD_OK
        );
    }
    assert_eq!(take_string(out), "[]");
    let mut out = sentinel;
    let empty = cs("");
    let room = cs("room");
    for (channel, status) in [
        (ptr::null(), HERALD_ERR_NULL_ARGUMENT),
        (empty.as_ptr(), HERALD_ERR_INVALID_ARGUMENT),
    ] {
        // SAFETY: channel is NULL or a live NUL-terminated string; out is writable.
        assert_eq!(
            unsafe { herald_presence(server, channel, &mut out) },
            status
        );
        assert_eq!(out, sentinel);
    }
    // SAFETY: a live NUL-terminated channel; a NULL output is checked, a writable one written.
    unsafe {
        assert_eq!(
            herald_presence(server, room.as_ptr(), ptr::null_mut()),
            HERALD_ERR_NULL_ARGUMENT
        );
        assert_eq!(herald_presence(server, room.as_ptr(), &mut out), HERALD_OK);
    }
    let presence: Value = serde_json::from_str(&take_string(out)).unwrap();
    assert_eq!(
        presence,
        serde_json::json!({"channel": "room", "members": [], "total": 0, "truncated": false})
    );

    // SAFETY: NULL is ignored; herald_version returns a static NUL-terminated string.
    unsafe {
        herald_string_free(ptr::null_mut());
        assert_eq!(
            CStr::from_ptr(herald_version()).to_str().unwrap(),
            herald::version()
        );
    }

    // A stopped handle is refused, including a second stop.
    assert_eq!(herald_stop(server, 1000), HERALD_OK);
    assert_eq!(herald_stop(server, 1000), HERALD_ERR_INVALID_HANDLE);
    assert_eq!(
        notify(herald_notify_ai_start, server, "session", "{}"),
        HERALD_ERR_INVALID_HANDLE
    );
    assert!(
        last_error().contains("unknown or stopped"),
        "{}",
        last_error()
    );
    // SAFETY: a writable local.
    assert_eq!(
        unsafe { herald_port(server, &mut port_out) },
        HERALD_ERR_INVALID_HANDLE
    );
    assert_eq!(port_out, 7);
    assert_eq!(herald_stop(ptr::null_mut(), 0), HERALD_ERR_NULL_ARGUMENT);
}

#[tokio::test]
async fn herald_notify_ai_sends_each_kind_and_the_named_calls_are_the_same() {
    let server = start_c(r#"{"port":0}"#);
    let url = format!("ws://127.0.0.1:{}/ws?sessionId=kinds", port(server));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_json(&mut ws).await;
    while !stats(server).contains("\"subscriptions\":1") {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let session = cs("kinds");
    let kinds = [
        (AiEvent::Start, "ai_start", "task"),
        (AiEvent::Progress, "ai_progress", "progress"),
        (AiEvent::Complete, "ai_complete", "result"),
        (AiEvent::Error, "ai_error", "error"),
    ];
    for (kind, _, _) in kinds {
        let payload = cs(&format!(r#"{{"kind":{}}}"#, kind as i32));
        // SAFETY: NUL-terminated strings that outlive the call.
        let status =
            unsafe { herald_notify_ai(server, kind as i32, session.as_ptr(), payload.as_ptr()) };
        assert_eq!(status, HERALD_OK, "{}", last_error());
    }
    let named = [
        herald_notify_ai_start,
        herald_notify_ai_progress,
        herald_notify_ai_complete,
        herald_notify_ai_error,
    ];
    for (i, call) in named.into_iter().enumerate() {
        let payload = format!(r#"{{"kind":{i}}}"#);
        assert_eq!(notify(call, server, "kinds", &payload), HERALD_OK);
    }
    for round in 0..2 {
        for (kind, message_type, key) in kinds {
            let m = next_json(&mut ws).await;
            assert_eq!(m["type"], message_type, "round {round}: {m}");
            assert_eq!(m["sessionId"], "kinds");
            assert_eq!(m[key]["kind"], kind as i32, "round {round}: {m}");
        }
    }
    let handle = server as usize;
    assert_eq!(
        blocking(move || herald_stop(handle as *mut herald_server, 5000)).await,
        HERALD_OK
    );
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn on_event(user_data: *mut c_void, event_json: *const c_char) {
    // SAFETY: user_data is the leaked Mutex the test registered; event_json is valid
    // during the call.
    let (seen, json) = unsafe {
        (
            &*(user_data as *const std::sync::Mutex<Vec<String>>),
            CStr::from_ptr(event_json),
        )
    };
    seen.lock()
        .unwrap()
        .push(json.to_str().unwrap().to_string());
    CALLS.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test]
async fn event_callback_receives_user_data_and_stops_with_the_server() {
    let server = start_c(r#"{"port":0}"#);
    let seen: &'static std::sync::Mutex<Vec<String>> =
        Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
    let user_data = seen as *const _ as *mut c_void;
    // SAFETY: user_data outlives the server (leaked); no drop callback.
    let status = unsafe { herald_set_event_handler(server, Some(on_event), user_data, None) };
    assert_eq!(status, HERALD_OK);
    let url = format!("ws://127.0.0.1:{}/ws?sessionId=cb", port(server));
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

/// What a drop test's user data records: the callback's calls (and whether one was
/// running), and the drop's calls.
#[derive(Default)]
struct Owned {
    calls: AtomicUsize,
    in_call: std::sync::atomic::AtomicBool,
    drops: AtomicUsize,
    /// Set when the drop ran while a call of the callback was still under way.
    dropped_during_a_call: std::sync::atomic::AtomicBool,
    /// How long each authorizer call takes, in ms.
    call_ms: u64,
}

fn owned(call_ms: u64) -> &'static Owned {
    Box::leak(Box::new(Owned {
        call_ms,
        ..Owned::default()
    }))
}

fn as_user_data(owned: &'static Owned) -> *mut c_void {
    owned as *const Owned as *mut c_void
}

/// # Safety
/// `user_data` is an `Owned` from `owned`.
unsafe fn owned_from<'a>(user_data: *mut c_void) -> &'a Owned {
    // SAFETY: by this function's contract.
    unsafe { &*(user_data as *const Owned) }
}

unsafe extern "C" fn counting_event(user_data: *mut c_void, _event_json: *const c_char) {
    // SAFETY: the tests register an Owned.
    let owned = unsafe { owned_from(user_data) };
    owned.calls.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn slow_authorizer(user_data: *mut c_void, _id: u64, _json: *const c_char) {
    // SAFETY: the tests register an Owned.
    let owned = unsafe { owned_from(user_data) };
    owned.in_call.store(true, Ordering::SeqCst);
    owned.calls.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(owned.call_ms));
    owned.in_call.store(false, Ordering::SeqCst);
    // No reply: the core denies at its timeout.
}

unsafe extern "C" fn drop_owned(user_data: *mut c_void) {
    // SAFETY: the tests register an Owned.
    let owned = unsafe { owned_from(user_data) };
    if owned.in_call.load(Ordering::SeqCst) {
        owned.dropped_during_a_call.store(true, Ordering::SeqCst);
    }
    owned.drops.fetch_add(1, Ordering::SeqCst);
}

fn set_events(server: *mut herald_server, owned: &'static Owned) -> herald_status {
    // SAFETY: the Owned is leaked, so valid on any thread for ever.
    unsafe {
        herald_set_event_handler(
            server,
            Some(counting_event),
            as_user_data(owned),
            Some(drop_owned),
        )
    }
}

fn set_authorizer(server: *mut herald_server, owned: &'static Owned) -> herald_status {
    // SAFETY: the Owned is leaked, so valid on any thread for ever.
    unsafe {
        herald_set_authorizer(
            server,
            Some(slow_authorizer),
            as_user_data(owned),
            Some(drop_owned),
        )
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[test]
fn a_drop_callback_runs_once_when_its_handler_is_replaced_cleared_or_refused() {
    let server = start_c(r#"{"port":0}"#);
    let (first, second, refused, unused) = (owned(0), owned(0), owned(0), owned(0));
    assert_eq!(set_events(server, first), HERALD_OK);
    assert_eq!(first.drops.load(Ordering::SeqCst), 0);
    // Replaced: the first one's user data is released (no call is under way).
    assert_eq!(set_events(server, second), HERALD_OK);
    assert_eq!(first.drops.load(Ordering::SeqCst), 1);
    // Cleared: the second one's goes too. A NULL callback hands its own user data back
    // at once.
    // SAFETY: the Owned is leaked.
    let status =
        unsafe { herald_set_event_handler(server, None, as_user_data(unused), Some(drop_owned)) };
    assert_eq!(status, HERALD_OK);
    assert_eq!(second.drops.load(Ordering::SeqCst), 1);
    assert_eq!(unused.drops.load(Ordering::SeqCst), 1);
    // A failed call hands it back too (here: a stopped server).
    assert_eq!(herald_stop(server, 1000), HERALD_OK);
    assert_eq!(set_events(server, refused), HERALD_ERR_INVALID_HANDLE);
    assert_eq!(refused.drops.load(Ordering::SeqCst), 1);
    assert_eq!(set_authorizer(server, refused), HERALD_ERR_INVALID_HANDLE);
    assert_eq!(refused.drops.load(Ordering::SeqCst), 2);
    for owned in [first, second, unused] {
        assert_eq!(owned.drops.load(Ordering::SeqCst), 1, "exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_server_runs_the_drop_callbacks_after_the_last_calls() {
    let server = start_c(r#"{"port":0,"auth":{"authorizer_timeout_ms":2000}}"#);
    let (events, authorizer) = (owned(0), owned(300));
    assert_eq!(set_events(server, events), HERALD_OK);
    assert_eq!(set_authorizer(server, authorizer), HERALD_OK);
    // A client whose connect the authorizer is still deciding on when the stop begins.
    let url = format!("ws://127.0.0.1:{}/ws", port(server));
    let client = tokio::spawn(tokio_tungstenite::connect_async(url));
    wait_until("the authorizer is asked", || {
        authorizer.in_call.load(Ordering::SeqCst)
    })
    .await;
    let handle = server as usize;
    let status = blocking(move || herald_stop(handle as *mut herald_server, 5000)).await;
    assert_eq!(status, HERALD_OK);
    // herald_stop waited for the authorizer's call, then released both user data.
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 1);
    assert_eq!(authorizer.drops.load(Ordering::SeqCst), 1);
    assert!(!authorizer.dropped_during_a_call.load(Ordering::SeqCst));
    assert_eq!(events.drops.load(Ordering::SeqCst), 1);
    let _ = client.await;
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(authorizer.drops.load(Ordering::SeqCst), 1, "exactly once");
    assert_eq!(events.drops.load(Ordering::SeqCst), 1, "exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorizer_replaced_during_a_call_is_dropped_after_that_call() {
    let server = start_c(r#"{"port":0,"auth":{"authorizer_timeout_ms":2000}}"#);
    let (old, new) = (owned(300), owned(0));
    assert_eq!(set_authorizer(server, old), HERALD_OK);
    let url = format!("ws://127.0.0.1:{}/ws", port(server));
    let client = tokio::spawn(tokio_tungstenite::connect_async(url));
    wait_until("the authorizer is asked", || {
        old.in_call.load(Ordering::SeqCst)
    })
    .await;
    // Replaced while its call is under way: its user data outlives the call.
    assert_eq!(set_authorizer(server, new), HERALD_OK);
    assert_eq!(old.drops.load(Ordering::SeqCst), 0, "a call is under way");
    wait_until("the old authorizer's drop", || {
        old.drops.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(!old.dropped_during_a_call.load(Ordering::SeqCst));
    assert_eq!(old.calls.load(Ordering::SeqCst), 1);
    let handle = server as usize;
    assert_eq!(
        blocking(move || herald_stop(handle as *mut herald_server, 5000)).await,
        HERALD_OK
    );
    let _ = client.await;
    assert_eq!(new.drops.load(Ordering::SeqCst), 1);
    assert_eq!(old.drops.load(Ordering::SeqCst), 1, "exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_threads_notify_at_once_without_loss_or_reordering() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 500;
    let server = start_c(r#"{"port":0,"client_queue_size":8192}"#);
    let url = format!("ws://127.0.0.1:{}/ws?sessionId=mt", port(server));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_json(&mut ws).await;
    let handle = server as usize;
    while !stats(server).contains("\"subscriptions\":1") {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let payload = format!(r#"{{"thread":{t},"i":{i}}}"#);
                    let status = notify(
                        herald_notify_ai_progress,
                        handle as *mut herald_server,
                        "mt",
                        &payload,
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
    let ports: Vec<u16> = servers.iter().map(|&s| port(s)).collect();
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
        while !stats(server).contains("\"subscriptions\":1") {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let payload = format!(r#"{{"server":{i}}}"#);
        assert_eq!(
            notify(herald_notify_ai_start, server, "s", &payload),
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
        notify(herald_notify_ai_start, servers[1], "s", r#"{"still":true}"#),
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
