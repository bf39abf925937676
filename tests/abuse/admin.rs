//! Finding 5: in secure mode the stats endpoint needs the admin token and discloses no
//! client without it.

use crate::child::Child;
use crate::outcome::Outcome;
use crate::raw;
use crate::ws;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Finding 5: secure-mode servers; their stats must not be open.
pub const JWT_SECRET: &str = "abuse-suite-hs256-secret-0123456789";
const ADMIN_TOKEN: &str = "abuse-admin-token-5f1c9e";

fn user_token(sub: &str) -> String {
    // jsonwebtoken signs through the provider Herald installs (ring); the server is
    // in a child process, so this one installs it itself.
    herald::install_jwt_crypto_provider();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "channels": ["session:*"]}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encoding a token")
}

pub async fn stats_protected() -> Outcome {
    let mut o = Outcome::default();
    let secure = json!({"auth": {"required": true, "jwt_secret": JWT_SECRET}});
    let mut with_admin = secure.clone();
    with_admin["admin_token"] = ADMIN_TOKEN.into();
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    // (config, label, Authorization header, expected status)
    let cases = [
        (&secure, "no_admin_token/no_credentials", String::new(), 401),
        (
            &secure,
            "no_admin_token/some_bearer",
            bearer(ADMIN_TOKEN),
            401,
        ),
        (
            &with_admin,
            "admin_token/no_credentials",
            String::new(),
            401,
        ),
        (
            &with_admin,
            "admin_token/wrong_bearer",
            bearer("not-the-admin-token"),
            401,
        ),
        (
            &with_admin,
            "admin_token/user_jwt",
            bearer(&user_token("mallory")),
            401,
        ),
        (
            &with_admin,
            "admin_token/right_bearer",
            bearer(ADMIN_TOKEN),
            200,
        ),
    ];
    // (config, host, connected client, its id, its address as the server sees it)
    let mut servers: Vec<(Value, Child, ws::Ws, String, String)> = Vec::new();
    for (config, label, header, expected) in cases {
        if !servers.iter().any(|(c, ..)| c == config) {
            let Some(child) = o.step(Child::serve(config.clone()).await) else {
                return o;
            };
            let query = format!("?token={}&sessionId=private-session", user_token("alice"));
            let Some((ws, id)) = o.step(ws::connect(child.port, &query).await) else {
                return o;
            };
            let local = match ws.get_ref() {
                tokio_tungstenite::MaybeTlsStream::Plain(s) => {
                    s.local_addr().map(|a| a.to_string()).unwrap_or_default()
                }
                _ => String::new(),
            };
            servers.push((config.clone(), child, ws, id, local));
        }
        let (_, child, _, client_id, remote) = servers.iter().find(|(c, ..)| c == config).unwrap();
        let Some((status, body)) =
            o.step(raw::http_get(child.port, "/api/ws/stats", &header).await)
        else {
            return o;
        };
        o.fig(label, status);
        o.expect(
            status == expected,
            format!("{label}: status {status}, expected {expected}"),
        );
        let leaked: Vec<&str> = [
            client_id.as_str(),
            "alice",
            "private-session",
            remote.as_str(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty() && body.contains(s))
        .collect();
        if expected == 200 {
            o.expect(
                body.contains(client_id.as_str()),
                format!("{label}: the admin's stats do not list the connected client"),
            );
        } else {
            o.expect(
                leaked.is_empty(),
                format!("{label}: the body discloses {leaked:?}"),
            );
        }
    }
    for (_, child, ws, ..) in servers {
        drop(ws);
        crate::child::finish(&mut o, child).await;
    }
    o
}
