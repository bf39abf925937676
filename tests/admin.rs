//! Admin endpoints (`/api/ws/stats`) and the `admin_token`, over real sockets: in secure
//! mode no client identity leaves the server without the token, and loopback is no
//! credential (every request here comes from 127.0.0.1).
mod common;
use common::*;
use herald::AuthDecision;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "test-secret-of-at-least-16-bytes";
const ADMIN: &str = "admin-token-7f3c9a1e5b";

/// One GET with extra header lines ("Name: value\r\n" each).
async fn get(port: u16, path: &str, extra_headers: &str) -> HttpReply {
    http(port, "GET", path, extra_headers).await
}

fn stats_path() -> &'static str {
    "/api/ws/stats"
}

fn assert_refused(reply: &HttpReply, client_id: &str, case: &str) {
    assert_eq!(reply.status, 401, "{case}: {}", reply.body);
    assert!(
        reply.headers.contains("\r\nwww-authenticate: bearer"),
        "{case}: {}",
        reply.headers
    );
    assert!(
        !reply.body.contains(client_id),
        "{case}: a refusal names a client"
    );
}

fn user_jwt(sub: &str) -> String {
    // jsonwebtoken signs through the provider Herald installs (ring).
    herald::install_jwt_crypto_provider();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    encode(
        &Header::default(),
        &json!({"sub": sub, "exp": exp, "channels": ["*"]}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn secure_mode_without_an_admin_token_never_serves_stats() {
    let jwt = user_jwt("alice");
    for config in [
        json!({"auth": {"required": true, "jwt_secret": SECRET}}),
        json!({"auth": {"jwt_secret": SECRET}}),
        // No key: nobody can connect, yet stats stay closed all the same.
        json!({"auth": {"required": true}}),
    ] {
        let server = start(&config.to_string());
        let port = server.port();
        let client_id = if config["auth"]["jwt_secret"].is_string() {
            connect(&server, &format!("?token={jwt}")).await.id
        } else {
            "no client".to_string()
        };
        for (case, headers) in [
            ("no credentials", String::new()),
            ("a guess", "Authorization: Bearer admin\r\n".to_string()),
            ("an empty token", "Authorization: Bearer \r\n".to_string()),
            (
                "a client's valid JWT",
                format!("Authorization: Bearer {jwt}\r\n"),
            ),
            (
                "a proxy's loopback claim",
                "X-Forwarded-For: 127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\n".to_string(),
            ),
        ] {
            let reply = get(port, stats_path(), &headers).await;
            assert_refused(&reply, &client_id, &format!("{config}: {case}"));
        }
        assert_eq!(get(port, "/healthz", "").await.status, 200, "{config}");
    }
}

#[tokio::test]
async fn installing_an_authorizer_closes_stats_without_a_token() {
    let server = start("");
    let port = server.port();
    let c = connect(&server, "?userId=u1").await;
    let open = get(port, stats_path(), "").await;
    assert_eq!(open.status, 200, "open mode with no admin_token is open");
    assert!(open.body.contains(&c.id));

    server
        .set_authorizer(Some(Arc::new(|_: &herald::AuthRequest| {})))
        .unwrap();
    assert_refused(
        &get(port, stats_path(), "").await,
        &c.id,
        "with an authorizer",
    );

    server.set_authorizer(None).unwrap();
    assert_eq!(get(port, stats_path(), "").await.status, 200);
}

#[tokio::test]
async fn the_admin_token_is_required_and_compared_exactly() {
    // Open mode with a token: the token is required all the same.
    let server = start(&json!({ "admin_token": ADMIN }).to_string());
    let port = server.port();
    let c = connect(&server, "?userId=u1&sessionId=s1").await;
    let query = format!("{}?token={ADMIN}", stats_path());
    let header = |value: String| format!("Authorization: {value}\r\n");
    let wrong = [
        ("no credentials", stats_path(), String::new()),
        ("in the query", &query, String::new()),
        (
            "a prefix",
            stats_path(),
            header(format!("Bearer {}", &ADMIN[..ADMIN.len() - 1])),
        ),
        (
            "a longer token",
            stats_path(),
            header(format!("Bearer {ADMIN}x")),
        ),
        (
            "another case",
            stats_path(),
            header(format!("Bearer {}", ADMIN.to_uppercase())),
        ),
        (
            "another scheme",
            stats_path(),
            header(format!("Basic {ADMIN}")),
        ),
        ("no scheme", stats_path(), header(ADMIN.to_string())),
        (
            "the header twice",
            stats_path(),
            header(format!("Bearer {ADMIN}")).repeat(2),
        ),
    ];
    for (case, path, headers) in wrong {
        assert_refused(&get(port, path, &headers).await, &c.id, case);
    }
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let reply = get(
            port,
            stats_path(),
            &format!("Authorization: {scheme} {ADMIN}\r\n"),
        )
        .await;
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.body);
        assert!(reply.headers.contains("\r\ncache-control: no-store"));
        let stats: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(stats["clients"][0]["id"], c.id.as_str());
        assert_eq!(stats["clients"][0]["userId"], "u1");
    }
    assert_eq!(get(port, "/healthz", "").await.status, 200);
}

#[tokio::test]
async fn secure_mode_serves_stats_to_the_admin_token_only() {
    let config = json!({
        "admin_token": ADMIN,
        "auth": {"required": true, "jwt_secret": SECRET},
    });
    let server = start(&config.to_string());
    let port = server.port();
    let jwt = user_jwt("alice");
    let c = connect(&server, &format!("?token={jwt}")).await;
    assert_refused(&get(port, stats_path(), "").await, &c.id, "no credentials");
    assert_refused(
        &get(
            port,
            stats_path(),
            &format!("Authorization: Bearer {jwt}\r\n"),
        )
        .await,
        &c.id,
        "a client's valid JWT",
    );
    let reply = get(
        port,
        stats_path(),
        &format!("Authorization: Bearer {ADMIN}\r\n"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let stats: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(stats["clients"][0]["userId"], "alice");

    // The host's own call needs no token: it is in-process.
    let own: Value = serde_json::from_str(&server.stats_json().unwrap()).unwrap();
    assert_eq!(own["clients"][0]["id"], c.id.as_str());
}

#[tokio::test]
async fn an_authorizer_answer_does_not_open_stats() {
    // A client the authorizer admits is still no admin.
    let server = start(&json!({ "admin_token": ADMIN }).to_string());
    let replier = server.clone();
    server
        .set_authorizer(Some(Arc::new(move |req: &herald::AuthRequest| {
            let _ = replier.authorize_reply(req.id(), AuthDecision::allow());
        })))
        .unwrap();
    let c = connect(&server, &format!("?token={ADMIN}")).await;
    assert_refused(
        &get(server.port(), stats_path(), "").await,
        &c.id,
        "no credentials",
    );
    assert_eq!(
        get(
            server.port(),
            stats_path(),
            &format!("Authorization: Bearer {ADMIN}\r\n")
        )
        .await
        .status,
        200
    );
}
