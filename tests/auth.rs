//! Auth, channel permissions, limits and TLS, with real tokens and real clients.
mod common;
use common::*;
use futures_util::StreamExt;
use herald::{AuthDecision, AuthRequest};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret-of-at-least-16-bytes";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A private key fixture (PKCS#8 PEM) for signing test tokens.
fn private_key(alg: Algorithm, name: &str) -> EncodingKey {
    use rustls_pki_types::pem::PemObject;
    let pem = fixture(name);
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_der(der.secret_pkcs8_der()),
        _ => EncodingKey::from_ec_der(der.secret_pkcs8_der()),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    // jsonwebtoken signs through the provider Herald installs (ring).
    herald::install_jwt_crypto_provider();
    encode(&Header::new(alg), &claims, key).unwrap()
}

fn hs256(sub: &str, channels: &[&str]) -> String {
    token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        json!({"sub": sub, "exp": now() + 600, "channels": channels}),
    )
}

fn secured(extra: &str) -> herald::Server {
    let mut config: Value = json!({"auth": {"required": true, "jwt_secret": SECRET}});
    let extra: Value = serde_json::from_str(if extra.is_empty() { "{}" } else { extra }).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    start(&config.to_string())
}

/// Connects and expects the server to close at once with 1008 "Unauthorized".
async fn expect_unauthorized(server: &herald::Server, query: &str) {
    let url = format!("ws://127.0.0.1:{}/ws{query}", server.port());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the handshake itself succeeds");
    match tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no close")
    {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(frame.reason.as_str(), "Unauthorized");
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
}

#[tokio::test]
async fn every_bad_token_is_closed_with_1008_and_counted() {
    let server = secured(&json!({"auth": {"required": true, "jwt_secret": SECRET, "jwt_public_key": fixture("ec_public.pem")}}).to_string());
    let forged = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-16-bytes!"),
        json!({"sub": "a", "exp": now() + 600}),
    );
    let expired = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        json!({"sub": "a", "exp": now() - 3600}),
    );
    let not_yet = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        json!({"sub": "a", "exp": now() + 7200, "nbf": now() + 3600}),
    );
    let no_exp = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        json!({"sub": "a"}),
    );
    let wrong_alg = token(
        Algorithm::RS256,
        &private_key(Algorithm::RS256, "rsa_private.pem"),
        json!({"sub": "a", "exp": now() + 600}),
    );
    // Algorithm confusion: an HS256 token keyed with the (public) EC key's PEM text.
    let confused = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(fixture("ec_public.pem").as_bytes()),
        json!({"sub": "a", "exp": now() + 600}),
    );
    // A valid token's signature over another payload (a different user's).
    let tampered = {
        let (alice, bob) = (hs256("alice", &[]), hs256("bob", &[]));
        let (a, b): (Vec<&str>, Vec<&str>) = (alice.split('.').collect(), bob.split('.').collect());
        format!("{}.{}.{}", a[0], b[1], a[2])
    };
    // {"alg":"none","typ":"JWT"} over a valid payload, without a signature.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        hs256("alice", &[]).split('.').nth(1).unwrap()
    );
    let cases = [
        "".to_string(),
        "?token=garbage".into(),
        format!("?token={tampered}"),
        format!("?token={unsigned}"),
        format!("?token={forged}"),
        format!("?token={expired}"),
        format!("?token={not_yet}"),
        format!("?token={no_exp}"),
        format!("?token={wrong_alg}"),
        format!("?token={confused}"),
        "?userId=alice".into(),
    ];
    for query in &cases {
        expect_unauthorized(&server, query).await;
    }
    let stats = wait_stats(&server, |s| s["authFailures"] == cases.len() as u64).await;
    assert_eq!(
        stats["totalConnections"], 0,
        "no rejected client was ever registered"
    );
    // A valid one gets in.
    let c = connect(&server, &format!("?token={}", hs256("alice", &[]))).await;
    assert_eq!(c.id.len(), 16);
}

#[tokio::test]
async fn rs256_es256_and_the_bearer_header_are_accepted() {
    for (alg, private, public) in [
        (Algorithm::RS256, "rsa_private.pem", "rsa_public.pem"),
        (Algorithm::ES256, "ec_private.pem", "ec_public.pem"),
    ] {
        let server = secured(
            &json!({"auth": {"required": true, "jwt_public_key": fixture(public)}}).to_string(),
        );
        let key = private_key(alg, private);
        let jwt = token(alg, &key, json!({"sub": "bob", "exp": now() + 600}));
        let mut request = format!("ws://127.0.0.1:{}/ws", server.port())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {jwt}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "connection", "{alg:?}");
        server.broadcast_to_user("bob", r#"{"type":"hi"}"#).unwrap();
        assert_eq!(
            next_json(&mut ws).await["channel"],
            "user:bob",
            "{alg:?}: sub became the user id"
        );
    }
}

#[tokio::test]
async fn a_user_sees_only_its_own_channels() {
    let server = secured(
        r#"{"auth":{"required":true,"jwt_secret":"test-secret-of-at-least-16-bytes","public_channels":["news"]}}"#,
    );
    let mut a = connect(
        &server,
        &format!(
            "?token={}&userId=bob&sessionId=a-1",
            hs256("alice", &["session:a-*"])
        ),
    )
    .await;
    // ?userId is ignored once auth is on: the token says who this is.
    server
        .broadcast_to_user("bob", r#"{"type":"for-bob"}"#)
        .unwrap();
    server
        .broadcast_to_user("alice", r#"{"type":"for-alice"}"#)
        .unwrap();
    server.notify_ai_start("a-1", "{}").unwrap();
    assert_eq!(next_json(&mut a.ws).await["type"], "for-alice");
    assert_eq!(
        next_json(&mut a.ws).await["type"],
        "ai_start",
        "its own session from the URL"
    );

    for (key, name) in [
        ("sessionId", "b-1"),
        ("channel", "user:bob"),
        ("channel", "session:b-1"),
        ("channel", "secret"),
    ] {
        send(
            &mut a.ws,
            &json!({"type": "subscribe", key: name}).to_string(),
        )
        .await;
        let m = next_json(&mut a.ws).await;
        assert_eq!(
            (m["type"].as_str(), m["error"]["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{name}: {m}"
        );
    }
    subscribe(&mut a.ws, "sessionId", "a-2").await;
    subscribe(&mut a.ws, "channel", "user:alice").await;
    subscribe(&mut a.ws, "channel", "news").await;
    server.notify_ai_start("b-1", r#"{"leak":true}"#).unwrap();
    server.publish("news", r#"{"type":"headline"}"#).unwrap();
    assert_eq!(
        next_json(&mut a.ws).await["type"],
        "headline",
        "nothing of b-1 arrived"
    );
    // The same rules for ?sessionId=: a session the token does not grant is refused,
    // and the client stays connected.
    let mut e = connect(
        &server,
        &format!("?token={}&sessionId=b-1", hs256("eve", &["session:e-*"])),
    )
    .await;
    let m = next_json(&mut e.ws).await;
    assert_eq!(m["error"]["code"], "forbidden", "{m}");
    send(&mut e.ws, r#"{"type":"ping"}"#).await;
    assert_eq!(next_json(&mut e.ws).await["type"], "pong");
    wait_stats(&server, |s| s["forbidden"] == 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_authorizer_decides_connects_and_subscribes() {
    let server = start(r#"{"auth":{"authorizer_timeout_ms":1000}}"#);
    let replier = server.clone();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let log = Arc::clone(&seen);
    server
        .set_authorizer(Some(Arc::new(move |request: &AuthRequest| {
            let v: Value = serde_json::from_str(&request.to_json()).unwrap();
            log.lock().unwrap().push(v.clone());
            let decision = match (
                v["type"].as_str().unwrap(),
                v["token"].as_str(),
                v["channel"].as_str(),
            ) {
                ("connect", Some("good"), _) => Some(AuthDecision {
                    allow: true,
                    user_id: Some("carol".into()),
                    channels: vec!["team:*".into()],
                    reason: None,
                }),
                ("connect", Some("slow"), _) => None, // never answered: times out
                ("connect", Some("later"), _) => {
                    // Answered from another thread, after the callback returned.
                    let (server, id) = (replier.clone(), request.id());
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(50));
                        server
                            .authorize_reply(
                                id,
                                AuthDecision {
                                    allow: true,
                                    user_id: Some("dave".into()),
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                    });
                    None
                }
                ("connect", _, _) => Some(AuthDecision::deny("who are you?")),
                ("subscribe", _, Some("room:ok")) => Some(AuthDecision::allow()),
                ("subscribe", _, _) => Some(AuthDecision::deny("no")),
                _ => unreachable!(),
            };
            if let Some(decision) = decision {
                replier.authorize_reply(request.id(), decision).unwrap();
            }
        })))
        .unwrap();

    expect_unauthorized(&server, "?token=bad").await;
    expect_unauthorized(&server, "?token=slow").await;
    let mut later = connect(&server, "?token=later").await;
    server
        .broadcast_to_user("dave", r#"{"type":"hello-dave"}"#)
        .unwrap();
    assert_eq!(next_json(&mut later.ws).await["type"], "hello-dave");

    let mut c = connect(&server, "?token=good&userId=mallory").await;
    server
        .broadcast_to_user("carol", r#"{"type":"hello-carol"}"#)
        .unwrap();
    assert_eq!(
        next_json(&mut c.ws).await["type"],
        "hello-carol",
        "the authorizer named the user"
    );
    subscribe(&mut c.ws, "channel", "team:7").await; // granted pattern, no question asked
    subscribe(&mut c.ws, "channel", "room:ok").await; // asked, allowed
    send(&mut c.ws, r#"{"type":"subscribe","channel":"room:no"}"#).await;
    let m = next_json(&mut c.ws).await;
    assert_eq!(
        m["error"]["code"], "forbidden",
        "a denial is an error, not a disconnect: {m}"
    );
    send(&mut c.ws, r#"{"type":"ping"}"#).await;
    assert_eq!(next_json(&mut c.ws).await["type"], "pong");

    let log = seen.lock().unwrap().clone();
    let connect = log.iter().find(|v| v["token"] == "good").unwrap();
    assert_eq!(connect["query"]["userId"], "mallory");
    assert!(connect["headers"]["sec-websocket-key"].is_string());
    assert!(connect["remoteAddr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let asked: Vec<&str> = log
        .iter()
        .filter(|v| v["type"] == "subscribe")
        .map(|v| v["channel"].as_str().unwrap())
        .collect();
    assert_eq!(asked, ["room:ok", "room:no"]);
    assert_eq!(
        server
            .authorize_reply(999_999, AuthDecision::allow())
            .unwrap_err()
            .kind(),
        herald::ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn a_slow_authorizer_never_blocks_other_clients() {
    let server = start(r#"{"auth":{"authorizer_timeout_ms":3000},"worker_threads":1}"#);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let replier = server.clone();
    let mut existing = None;
    // The first client is let in at once; the second one's callback blocks its thread.
    server
        .set_authorizer(Some(Arc::new(move |r: &AuthRequest| {
            if r.to_json().contains("\"token\":\"blocker\"") {
                let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
            }
            replier
                .authorize_reply(
                    r.id(),
                    AuthDecision {
                        allow: true,
                        user_id: Some("u".into()),
                        ..Default::default()
                    },
                )
                .unwrap();
        })))
        .unwrap();
    existing.get_or_insert(connect(&server, "?token=first").await);
    let url = format!("ws://127.0.0.1:{}/ws?token=blocker", server.port());
    let blocked = tokio::spawn(async move {
        tokio_tungstenite::connect_async(url)
            .await
            .map(|(mut ws, _)| async move { next_json(&mut ws).await })
    });
    let c = existing.as_mut().unwrap();
    for _ in 0..5 {
        send(&mut c.ws, r#"{"type":"ping"}"#).await;
        assert_eq!(
            next_json(&mut c.ws).await["type"],
            "pong",
            "served while the authorizer blocks"
        );
    }
    release_tx.send(()).unwrap();
    let hello = blocked.await.unwrap().unwrap().await;
    assert_eq!(hello["type"], "connection");
}

#[tokio::test]
async fn a_subscribe_waiting_for_the_authorizer_holds_up_reading_but_not_writing() {
    let server = start(r#"{"auth":{"authorizer_timeout_ms":5000}}"#);
    let replier = server.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<u64>();
    let held_tx = std::sync::Mutex::new(held_tx);
    server
        .set_authorizer(Some(Arc::new(move |request: &AuthRequest| {
            if request.to_json().contains("\"channel\":\"room:held\"") {
                let _ = held_tx.lock().unwrap().send(request.id()); // answered by the test
            } else {
                replier
                    .authorize_reply(request.id(), AuthDecision::allow())
                    .unwrap();
            }
        })))
        .unwrap();
    let mut c = connect(&server, "?sessionId=s1").await;
    send(&mut c.ws, r#"{"type":"subscribe","channel":"room:held"}"#).await;
    send(&mut c.ws, r#"{"type":"ping"}"#).await;
    let held = blocking(move || held_rx.recv_timeout(WAIT).unwrap()).await;

    // While the authorizer thinks, the session's messages still reach the client...
    server
        .notify_ai_progress("s1", r#"{"percent":10}"#)
        .unwrap();
    let m = next_json(&mut c.ws).await;
    assert_eq!(m["type"], "ai_progress", "{m}");
    // ...and its later ping waits: the client's messages are answered in order.
    server.authorize_reply(held, AuthDecision::allow()).unwrap();
    let m = next_json(&mut c.ws).await;
    assert_eq!(
        (m["type"].as_str(), m["channel"].as_str()),
        (Some("subscribed"), Some("room:held")),
        "{m}"
    );
    assert_eq!(next_json(&mut c.ws).await["type"], "pong");
}

async fn handshake_status(port: u16, extra_headers: &str) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn origins_outside_the_list_are_refused() {
    let server = start(r#"{"allowed_origins":["https://app.example.com"]}"#);
    assert_eq!(
        handshake_status(server.port(), "Origin: https://evil.example.com\r\n").await,
        403
    );
    assert_eq!(
        handshake_status(server.port(), "Origin: https://app.example.com\r\n").await,
        101
    );
    assert_eq!(
        handshake_status(server.port(), "").await,
        101,
        "non-browser clients send no Origin"
    );
    wait_stats(&server, |s| s["originRejected"] == 1).await;
}

#[tokio::test]
async fn connection_floods_are_refused_while_others_are_served() {
    let server = start(r#"{"max_connections_per_ip":4,"max_connections":100}"#);
    let mut kept = Vec::new();
    for _ in 0..4 {
        kept.push(connect(&server, "").await);
    }
    let url = format!("ws://127.0.0.1:{}/ws", server.port());
    let mut refused = 0;
    for _ in 0..50 {
        if tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .unwrap()
            .is_err()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 50);
    for c in &mut kept {
        send(&mut c.ws, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut c.ws).await["type"], "pong");
    }
    let stats = wait_stats(&server, |s| s["rejectedPerIp"] == 50).await;
    assert_eq!(stats["activeConnections"], 4);
    // A freed slot can be used again.
    drop(kept.pop());
    wait_stats(&server, |s| s["openSockets"] == 3).await;
    connect(&server, "").await;
}

/// Sends `count` pings without reading (stops early if the server closes).
async fn flood(ws: &mut Ws, count: usize) {
    for _ in 0..count {
        if futures_util::SinkExt::send(ws, Message::text(r#"{"type":"ping"}"#))
            .await
            .is_err()
        {
            break;
        }
    }
}

/// Reads until the close frame: (pongs, rate_limited errors, close code). A reset
/// instead of a close frame fails the test.
async fn read_until_close(ws: &mut Ws) -> (usize, usize, Option<u16>) {
    let (mut pongs, mut limited) = (0, 0);
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Text(t))) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                match m["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") => {
                        assert_eq!(m["error"]["code"], "rate_limited");
                        limited += 1
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Some(Ok(Message::Close(f))) => return (pongs, limited, f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_message_flood_is_rate_limited_then_closed() {
    let server = start(r#"{"rate_limit":{"messages_per_second":5,"burst":5,"max_violations":10}}"#);
    let mut flooder = connect(&server, "").await;
    let mut bystander = connect(&server, "").await;
    flood(&mut flooder.ws, 100).await;
    let (pongs, limited, code) = read_until_close(&mut flooder.ws).await;
    assert_eq!(code, Some(1008));
    assert!((5..20).contains(&pongs), "pongs: {pongs}");
    assert_eq!(limited, 10);
    send(&mut bystander.ws, r#"{"type":"ping"}"#).await;
    assert_eq!(next_json(&mut bystander.ws).await["type"], "pong");
    wait_stats(&server, |s| {
        s["rateLimitCloses"] == 1 && s["rateLimited"] == 10
    })
    .await;
}

#[tokio::test]
async fn a_socket_that_never_upgrades_is_dropped() {
    let server = start(r#"{"handshake_timeout_ms":300}"#);
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, idle.read(&mut buf))
        .await
        .expect("never dropped")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    wait_stats(&server, |s| {
        s["handshakeTimeouts"].as_u64() >= Some(1) && s["openSockets"] == 0
    })
    .await;
}

#[tokio::test]
async fn subscriptions_per_client_are_bounded() {
    let server = start(r#"{"max_subscriptions_per_client":2}"#);
    let mut c = connect(&server, "").await;
    subscribe(&mut c.ws, "channel", "a").await;
    subscribe(&mut c.ws, "channel", "b").await;
    send(&mut c.ws, r#"{"type":"subscribe","channel":"c"}"#).await;
    let m = next_json(&mut c.ws).await;
    assert_eq!(m["error"]["code"], "subscribe_failed");
    assert!(m["error"]["message"].as_str().unwrap().contains("limit"));
}

#[tokio::test]
async fn wss_verifies_against_the_test_ca() {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let server = start(&json!({"tls": {"cert": format!("{dir}/server_cert.pem"), "key": format!("{dir}/server_key.pem")}}).to_string());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(format!("{dir}/ca_cert.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("the certificate verifies against the test CA");
    let url = format!("wss://localhost:{}/ws?sessionId=secure", server.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection");
    wait_stats(&server, |s| s["subscriptions"] == 1).await;
    server
        .notify_ai_complete("secure", r#"{"ok":true}"#)
        .unwrap();
    assert_eq!(next_json(&mut ws).await["result"]["ok"], true);

    // A client that trusts only the system roots refuses the test certificate.
    let untrusting = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    assert!(tokio_rustls::TlsConnector::from(Arc::new(untrusting))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .is_err());
    wait_stats(&server, |s| s["tlsFailures"] == 1).await;
}

#[tokio::test]
async fn a_configured_issuer_and_audience_must_be_in_the_token() {
    let server = secured(
        r#"{"auth":{"required":true,"jwt_secret":"test-secret-of-at-least-16-bytes","jwt_issuer":"https://login.example","jwt_audience":"herald"}}"#,
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let exp = now() + 600;
    for claims in [
        json!({"sub": "a", "exp": exp}),
        json!({"sub": "a", "exp": exp, "iss": "https://login.example"}),
        json!({"sub": "a", "exp": exp, "aud": "herald"}),
        json!({"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "herald"}),
        json!({"sub": "a", "exp": exp, "iss": "https://login.example", "aud": "other"}),
    ] {
        expect_unauthorized(
            &server,
            &format!("?token={}", token(Algorithm::HS256, &key, claims)),
        )
        .await;
    }
    let good = token(
        Algorithm::HS256,
        &key,
        json!({"sub": "a", "exp": exp, "iss": "https://login.example", "aud": "herald"}),
    );
    connect(&server, &format!("?token={good}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_may_stop_its_own_server() {
    let server = start(r#"{"auth":{"authorizer_timeout_ms":30000}}"#);
    let stopper = server.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<herald::Result<()>>();
    let done_tx = std::sync::Mutex::new(done_tx);
    server
        .set_authorizer(Some(Arc::new(move |_: &AuthRequest| {
            // A long timeout: the stop must not wait for the thread it runs on.
            let _ = done_tx
                .lock()
                .unwrap()
                .send(stopper.stop(Duration::from_secs(60)));
        })))
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/ws", server.port());
    let client = tokio::spawn(async move { tokio_tungstenite::connect_async(url).await });
    let result = blocking(move || done_rx.recv_timeout(WAIT)).await;
    result
        .expect("the stop returned well before its own timeout")
        .unwrap();
    assert!(server.is_stopped());
    let _ = client.await;
}

#[tokio::test]
async fn a_flooder_that_never_reads_still_gets_its_errors_and_the_close() {
    let server = start(r#"{"rate_limit":{"messages_per_second":1,"burst":5,"max_violations":5}}"#);
    let mut flooder = connect(&server, "").await;
    flood(&mut flooder.ws, 300).await;
    wait_stats(&server, |s| s["rateLimitCloses"] == 1).await;
    assert_eq!(read_until_close(&mut flooder.ws).await, (5, 5, Some(1008)));
}
