//! Property-based fuzzing of the config parser: `Config::from_json` never panics, on any
//! JSON and on mutations of valid configs; what it accepts round-trips and validates; and
//! `Server::start` takes whatever it accepts without a panic on any thread (a sample of
//! real servers on loopback, each started, probed over HTTP and WebSocket, and stopped).
//! `PROPTEST_CASES=N` sets every target's case count for a long run.

#[path = "fuzz/support.rs"]
mod support;

use herald::{Config, ErrorKind, Server};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TARGET: &str = "config";

/// Parses `text` and checks what comes back: an accepted config validates and survives a
/// round trip; a refusal is an `InvalidConfig` that says so.
fn check_parse(text: &str) -> Option<Config> {
    match Config::from_json(text) {
        Ok(config) => {
            config.validate().expect("an accepted config validates");
            let again = Config::from_json(&serde_json::to_string(&config).unwrap())
                .expect("an accepted config, written back, is accepted");
            assert_eq!(again, config);
            Some(config)
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
            assert!(e.message().starts_with("invalid config: "), "{e}");
            None
        }
    }
}

/// Every key with the values that sit on, inside and past its range.
fn key_and_value() -> impl Strategy<Value = (String, Value)> {
    let number = prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(1),
            json!(2),
            json!(-1),
            json!(1023),
            json!(1024),
            json!(65535),
            json!(65536),
            json!(1_048_576),
            json!(16_777_216),
            json!(16_777_217),
            json!(86_400_000),
            json!(86_400_001),
            json!(4_294_967_295u64),
            json!(4_294_967_296u64),
            json!(1_099_511_627_776u64),
            json!(u64::MAX),
            json!(1.5),
            json!(1e300),
            json!("7"),
            json!(null),
            json!(true),
            json!([]),
            json!({}),
        ]),
        (0u64..100_000).prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
    ];
    let keys = vec![
        "port",
        "heartbeat_interval_ms",
        "heartbeat_timeout_ms",
        "max_message_size",
        "client_queue_size",
        "max_connections",
        "worker_threads",
        "publish_queue_size",
        "event_queue_size",
        "handshake_timeout_ms",
        "max_channels",
        "stats_client_limit",
        "max_connections_per_ip",
        "max_subscriptions_per_client",
        "client_queue_bytes",
        "socket_send_buffer",
        "max_memory",
        "event_queue_bytes",
        "history.size",
        "history.ttl_ms",
        "history.max_bytes",
        "auth.jwt_leeway_s",
        "auth.authorizer_timeout_ms",
        "rate_limit.messages_per_second",
        "rate_limit.burst",
        "rate_limit.max_violations",
    ];
    let string_value = prop_oneof![
        prop::sample::select(vec![
            json!("127.0.0.1"),
            json!("localhost"),
            json!("/ws"),
            json!("ws"),
            json!("/healthz"),
            json!("/a?b"),
            json!(""),
            json!("x".repeat(300)),
            json!(["news", "public:*"]),
            json!(false),
            json!(true),
            json!({"cert": "a", "key": "b"}),
        ]),
        support::json_value(),
    ];
    let others = vec![
        "host",
        "path",
        "allowed_origins",
        "admin_token",
        "tls",
        "auth.required",
        "auth.jwt_secret",
        "auth.jwt_issuer",
        "auth.public_channels",
        "history",
        "auth",
        "rate_limit",
        "unknown_key",
    ];
    prop_oneof![
        3 => (prop::sample::select(keys), number).prop_map(|(k, v)| (k.to_string(), v)),
        1 => (prop::sample::select(others), string_value).prop_map(|(k, v)| (k.to_string(), v)),
    ]
}

/// A config object from a few keys; dotted keys go into their nested object.
fn structured_config() -> impl Strategy<Value = Value> {
    prop::collection::vec(key_and_value(), 0..8).prop_map(|pairs| {
        let mut config = json!({});
        for (key, value) in pairs {
            match key.split_once('.') {
                Some((outer, inner)) => {
                    if !config[outer].is_object() {
                        config[outer] = json!({});
                    }
                    config[outer][inner] = value;
                }
                None => config[key.as_str()] = value,
            }
        }
        config
    })
}

fn any_config_text() -> impl Strategy<Value = String> {
    let seeds: Vec<String> = support::corpus_text(TARGET)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    prop_oneof![
        3 => structured_config().prop_map(|v| v.to_string()),
        3 => support::mutated_text(seeds),
        1 => support::json_value().prop_map(|v| v.to_string()),
        1 => any::<String>(),
        1 => support::deep_nesting(),
    ]
}

#[test]
fn corpus_replays() {
    for (name, text) in support::corpus_text(TARGET) {
        let outcome = std::panic::catch_unwind(|| check_parse(&text));
        assert!(outcome.is_ok(), "corpus seed {name}");
    }
    // The seeds that pin down the ranges.
    let refused = |name: &str| {
        let text = std::fs::read_to_string(format!(
            "{}/tests/fuzz/corpus/config/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        Config::from_json(&text).unwrap_err().message().to_string()
    };
    assert!(refused("05-finding-9-overflow.json").contains("publish_queue_size"));
    assert!(refused("06-huge-heartbeat.json").contains("heartbeat_interval_ms"));
    assert!(refused("10-negative-port.json").contains("port"));
}

#[test]
fn the_config_parser_never_panics() {
    support::run_counted(TARGET, 1500, any_config_text(), |text| {
        check_parse(&text);
    });
}

/// Asks for `/healthz` over a raw socket; the status line.
fn healthz(port: u16) -> String {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap_or("").to_string()
}

/// A real WebSocket client (tungstenite): connects, reads one message or the close.
fn websocket_probe(port: u16, path: &str) {
    use tokio_tungstenite::tungstenite::{client, Message};
    let socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}{path}?sessionId=fuzz");
    // Refusals (auth.required, a connection limit of 1) are fine; a hang is not.
    if let Ok((mut ws, _)) = client(url.as_str(), socket) {
        match ws.read() {
            Ok(Message::Text(text)) => assert!(text.contains("\"connection\""), "{text}"),
            Ok(Message::Close(_)) | Err(_) => {}
            Ok(other) => panic!("unexpected first message {other:?}"),
        }
    }
}

/// Configs that pass the parser, placed on loopback so a sample of them can really run.
fn accepted_config() -> impl Strategy<Value = Config> {
    let seeds: Vec<String> = support::corpus_text(TARGET)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    prop_oneof![
        structured_config().prop_map(|v| v.to_string()),
        support::mutated_text(seeds),
    ]
    .prop_filter_map("refused by the parser", |text| {
        let mut config = Config::from_json(&text).ok()?;
        config.host = "127.0.0.1".into();
        config.port = 0;
        Some(config)
    })
}

#[test]
fn whatever_the_parser_accepts_starts_without_a_panic() {
    let cases = support::cases(24).min(2000);
    let mut config = support::config("config_start", cases);
    config.max_global_rejects = 100_000;
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let (ran, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = runner.run(&accepted_config(), |config| {
        let before = support::panics();
        match Server::start(config.clone()) {
            Ok(server) => {
                ran.fetch_add(1, Ordering::Relaxed);
                let port = server.port();
                assert!(healthz(port).contains(" 200 "), "healthz with {config:?}");
                websocket_probe(port, &config.path);
                server.stop(Duration::from_secs(5)).expect("stop");
            }
            // A start may fail (missing TLS files, a bad key); it must say why.
            Err(e) => {
                refused.fetch_add(1, Ordering::Relaxed);
                assert_ne!(e.kind(), ErrorKind::Panic, "{e}");
            }
        }
        assert_eq!(support::panics(), before, "a panic with {config:?}");
        Ok(())
    });
    eprintln!(
        "fuzz config_start: {} servers started and stopped, {} refused at start, in {:.1?}",
        ran.into_inner(),
        refused.into_inner(),
        started.elapsed()
    );
    result.unwrap();
}
