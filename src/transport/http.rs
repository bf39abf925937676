//! HTTP on the WebSocket port: the upgrade itself, `/healthz`, `/api/ws/stats` and `/metrics`.

use crate::limits::SocketSlot;
use crate::protocol::{self, Since};
use crate::shared::Shared;
use crate::stats::Counters;
use crate::transport::connection::{self, Handshake, Upgrade};
use crate::transport::write_pass::RawFd;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Log target: the module's name before the transport folder, which hosts filter on.
const LOG_TARGET: &str = "herald::http";

type Body = Full<Bytes>;

/// Serves one accepted socket until it closes or is upgraded to a WebSocket; returns
/// the accepted upgrade, which the same task then serves. A socket still speaking plain
/// HTTP after the handshake timeout is dropped, so a client that opens TCP and never
/// upgrades holds nothing for long.
pub(crate) async fn serve_socket<I>(
    shared: Arc<Shared>,
    io: I,
    remote: SocketAddr,
    // The descriptor of a plain TCP socket, for write passes (`None` for TLS).
    socket: Option<RawFd>,
    slot: SocketSlot,
) -> Option<connection::Accepted>
where
    I: connection::Socket,
{
    let timeout = Duration::from_millis(shared.config.handshake_timeout_ms);
    // The slot moves into the accepted upgrade; until then this socket holds it.
    let slot = Arc::new(std::sync::Mutex::new(SocketCell {
        slot: Some(slot),
        accepted: None,
    }));
    let cell = Arc::clone(&slot);
    let service_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&service_shared);
        let slot = Arc::clone(&slot);
        async move {
            if req.method() == Method::GET && req.uri().path().starts_with(JOBS_PATH) {
                return Ok(jobs(&shared, &req, remote).await);
            }
            if let Some(host) = host_route(&shared, req.uri().path()) {
                // With a shared broker, a host call in the handler waits for it.
                let blocking = shared.broker.is_some();
                return Ok::<_, Infallible>(crate::host_routes::serve(host, req, blocking).await);
            }
            if let Some(channel) = req.uri().path().strip_prefix(PRESENCE_PREFIX) {
                let channel = channel.to_string();
                return Ok(presence(shared, req.method(), req.headers(), &channel).await);
            }
            Ok(route(shared, req, remote, socket, &slot))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    match tokio::time::timeout(timeout, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if !e.is_timeout() => {
            tracing::debug!(target: LOG_TARGET, %remote, error = %e, "http connection ended with an error")
        }
        Ok(Err(_)) | Err(_) => {
            Counters::add(&shared.counters.handshake_timeouts, 1);
            tracing::debug!(target: LOG_TARGET, %remote, "dropping a socket that did not upgrade in time");
        }
    }
    let accepted = cell
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .accepted
        .take();
    accepted
}

/// What the HTTP side of one socket shares with its requests: the socket's slot until
/// an upgrade takes it, then the accepted upgrade.
struct SocketCell {
    slot: Option<SocketSlot>,
    accepted: Option<connection::Accepted>,
}

type SlotCell = std::sync::Mutex<SocketCell>;

/// The host's route for `path`, unless one of Herald's own routes has it.
fn host_route(shared: &Shared, path: &str) -> Option<crate::host_routes::HttpRoute> {
    let own = path == shared.config.path
        || ENDPOINTS.iter().any(|e| e.path == path)
        || path.starts_with(PRESENCE_PREFIX);
    if own {
        return None;
    }
    shared.config.http_routes.find(path)
}

fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    remote: SocketAddr,
    socket: Option<RawFd>,
    slot: &SlotCell,
) -> Response<Body> {
    let path = req.uri().path();
    if path == shared.config.path {
        return upgrade(shared, req, remote, socket, slot);
    }
    let Some(endpoint) = ENDPOINTS
        .iter()
        .find(|e| e.method == req.method() && e.path == path)
    else {
        // The host's static files, if any; Herald's own routes take precedence.
        return crate::assets::serve(&shared.config.static_files, req.method(), path)
            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"));
    };
    if endpoint.access == Access::Admin && !admin_allowed(&shared, req.headers()) {
        return unauthorized();
    }
    (endpoint.serve)(&shared)
}

/// `GET /api/jobs/{sessionId}`: a session's jobs, for pages rendered on the server.
const JOBS_PATH: &str = "/api/jobs/";

/// A session's jobs snapshot over HTTP, under the rules of a subscribe to the session:
/// the same token (`?token=` or `Authorization: Bearer`), the same grants, the same
/// authorizer (asked on connect, then for the channel if need be).
async fn jobs(shared: &Shared, req: &Request<Incoming>, remote: SocketAddr) -> Response<Body> {
    let raw = &req.uri().path()[JOBS_PATH.len()..];
    let Some(session) = percent_decode(raw) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "bad percent-encoding",
        );
    };
    if let Err(e) = crate::protocol::check_name("session id", &session) {
        return json_error(StatusCode::BAD_REQUEST, "invalid_argument", e.message());
    }
    let mut handshake = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(handshake) => handshake,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, "invalid_argument", why.trim()),
    };
    let headers = req.headers();
    let creds = &mut handshake.credentials;
    creds.origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if creds.token.is_none() {
        creds.token = bearer_token(headers)
            .and_then(|t| std::str::from_utf8(t).ok())
            .map(|t| t.trim().to_string());
    }
    creds.headers = collect_headers(headers);
    let identity = match shared.auth.connect(creds, &remote.to_string()).await {
        Ok(identity) => identity,
        Err(_) => {
            Counters::add(&shared.counters.auth_failures, 1);
            let mut response = json_error(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    let channel = crate::protocol::session_channel(&session);
    let asker = format!("http:{remote}");
    let user = identity.user_id.as_deref();
    if !shared
        .auth
        .may_subscribe(&asker, user, &identity.grants, &channel)
        .await
    {
        Counters::add(&shared.counters.forbidden, 1);
        let why = format!("not allowed to read {channel:?}");
        return json_error(StatusCode::FORBIDDEN, "forbidden", &why);
    }
    let body = match &shared.broker {
        Some(broker) => broker.jobs_json(&session).await,
        None => Ok(shared.fanout.jobs_json(&session)),
    };
    match body {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            e.kind().as_str(),
            e.message(),
        ),
    }
}

/// Who may call an HTTP endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Anyone,
    /// See `admin_allowed`.
    Admin,
}

/// An HTTP endpoint on the WebSocket port, other than the upgrade itself.
struct Endpoint {
    method: Method,
    path: &'static str,
    access: Access,
    serve: fn(&Shared) -> Response<Body>,
}

/// Every HTTP endpoint. An admin endpoint added here is protected like stats.
const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: Method::GET,
        path: "/healthz",
        access: Access::Anyone,
        serve: |_| text(StatusCode::OK, "ok\n"),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/ws/stats",
        access: Access::Admin,
        serve: stats,
    },
    Endpoint {
        method: Method::GET,
        path: "/metrics",
        access: Access::Admin,
        serve: metrics,
    },
];

/// `GET /api/presence/{channel}` (the name percent-encoded): who is in a channel, as
/// `herald_presence` answers. It names clients, so it is an admin endpoint like stats.
const PRESENCE_PREFIX: &str = "/api/presence/";

async fn presence(
    shared: Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    encoded: &str,
) -> Response<Body> {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    if !admin_allowed(&shared, headers) {
        return unauthorized();
    }
    // In a path '+' is itself, not a space.
    let Some(channel) = percent_decode(&encoded.replace('+', "%2B")) else {
        return text(
            StatusCode::BAD_REQUEST,
            "the channel is not valid percent-encoded UTF-8\n",
        );
    };
    let listed = match protocol::check_name("channel", &channel) {
        Ok(()) => {
            let wait = Duration::from_millis(shared.config.redis().map_or(2000, |r| r.timeout_ms));
            tokio::time::timeout(wait, crate::presence::list(&shared, &channel))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::Error::new(
                        crate::ErrorKind::Unavailable,
                        "redis broker: no answer in time",
                    ))
                })
        }
        Err(e) => Err(e),
    };
    let response = match listed {
        Ok(listing) => json(StatusCode::OK, listing.host_json(&channel)),
        Err(e) => {
            let status = match e.kind() {
                crate::ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            json_error(status, e.kind().as_str(), e.message())
        }
    };
    not_kept(response)
}

fn metrics(shared: &Shared) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(crate::metrics::render(shared))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

fn stats(shared: &Shared) -> Response<Body> {
    not_kept(json(StatusCode::OK, shared.stats_json()))
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"ok":false,"error":{"code","message"}}`, as the HTTP APIs answer a failure.
fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"ok": false, "error": {"code": code, "message": message}});
    json(status, body.to_string())
}

/// For an answer that names clients (and their addresses): no proxy or browser should
/// keep a copy.
fn not_kept(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// With `admin_token` set, an admin request must carry `Authorization: Bearer <token>`.
/// Without it, admin endpoints are open in open mode and closed in secure mode: a
/// server that authenticates its clients does not hand their identities to anyone.
/// The peer's address is never a credential (behind a proxy every peer is loopback).
fn admin_allowed(shared: &Shared, headers: &HeaderMap) -> bool {
    match &shared.config.admin_token {
        Some(expected) => bearer_token(headers)
            .is_some_and(|given| !expected.is_empty() && constant_time_eq(expected, given)),
        None => !shared.auth.enforces_rules(),
    }
}

/// The token of the one `Authorization: Bearer` header; none when the header is
/// missing, repeated or of another scheme.
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.as_bytes();
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_at_checked(7)?;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// Compares in a time that depends on the expected token's length only, so the
/// response time tells an attacker nothing about how much of a guess was right.
fn constant_time_eq(expected: &str, given: &[u8]) -> bool {
    let expected = expected.as_bytes();
    let mut diff = u8::from(expected.len() != given.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

fn unauthorized() -> Response<Body> {
    let mut response = text(StatusCode::UNAUTHORIZED, "admin token required\n");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn upgrade(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    remote: SocketAddr,
    socket: Option<RawFd>,
    slot: &SlotCell,
) -> Response<Body> {
    let headers = req.headers();
    if req.method() != Method::GET
        || !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return text(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket\n",
        );
    }
    // RFC 6455 §4.1 allows each once; which of two would count is ambiguous.
    for name in [header::SEC_WEBSOCKET_KEY, header::SEC_WEBSOCKET_VERSION] {
        if headers.get_all(&name).iter().nth(1).is_some() {
            return text(
                StatusCode::BAD_REQUEST,
                "repeated Sec-WebSocket-Key or Sec-WebSocket-Version\n",
            );
        }
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version\n",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    if !is_websocket_key(key.as_bytes()) {
        return text(StatusCode::BAD_REQUEST, "invalid Sec-WebSocket-Key\n");
    }
    let accept = derive_accept_key(key.as_bytes());
    if shared.is_stopping() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "server is stopping\n");
    }
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(origin) = &origin {
        let allowed = &shared.config.allowed_origins;
        if !allowed.is_empty() && !allowed.iter().any(|a| a == origin) {
            Counters::add(&shared.counters.origin_rejected, 1);
            return text(StatusCode::FORBIDDEN, "origin not allowed\n");
        }
    }
    let mut handshake = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(handshake) => handshake,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let creds = &mut handshake.credentials;
    creds.origin = origin;
    if creds.token.is_none() {
        creds.token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_string());
    }
    creds.headers = collect_headers(headers);
    let mut cell = slot.lock().unwrap_or_else(|p| p.into_inner());
    let Some(slot) = cell.slot.take() else {
        return text(StatusCode::BAD_REQUEST, "already upgraded\n");
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let upgrade = Box::new(Upgrade {
        on_upgrade,
        max_message_size: shared.config.max_message_size,
        handshake,
        remote,
        socket,
    });
    // Served by this socket's task once hyper has written the response below.
    cell.accepted = Some(connection::Accepted {
        shared,
        upgrade,
        slot,
    });
    drop(cell);

    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}

/// A key is 16 bytes in base64 (RFC 6455 §4.1): 22 characters, then "==". This also
/// refuses two keys folded into one header ("k1, k2").
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Request headers for the host authorizer: names in lower case, repeats joined.
fn collect_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        map.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    map
}

/// `userId`, `sessionId`, `token`, and `since`/`epoch` for recovery on connect.
fn parse_query(query: &str) -> Result<Handshake, &'static str> {
    let mut params = Handshake::default();
    let mut since_seq = None;
    let mut epoch = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value =
            percent_decode(value).ok_or("query parameter is not valid percent-encoded UTF-8\n")?;
        if value.is_empty() {
            continue;
        }
        let key =
            percent_decode(key).ok_or("query parameter is not valid percent-encoded UTF-8\n")?;
        if params.credentials.query.len() < 64 {
            params.credentials.query.insert(key.clone(), value.clone());
        }
        match key.as_str() {
            "userId" => {
                protocol::check_name("userId", &value).map_err(|_| "invalid userId\n")?;
                params.credentials.query_user_id = Some(value);
            }
            "sessionId" => {
                protocol::check_name("sessionId", &value).map_err(|_| "invalid sessionId\n")?;
                params.session_id = Some(value);
            }
            "token" => params.credentials.token = Some(value),
            "since" => {
                since_seq = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| "since must be a non-negative integer\n")?,
                )
            }
            "epoch" => epoch = Some(value),
            _ => {}
        }
    }
    if let Some(seq) = since_seq {
        if params.session_id.is_none() {
            return Err("since needs sessionId\n");
        }
        params.since = Some(Since {
            seq,
            epoch: epoch.unwrap_or_default(),
        });
    }
    Ok(params)
}

fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_parameters() {
        let p = parse_query("userId=u%201&sessionId=s+1&token=t&since=41&epoch=e&other=x").unwrap();
        assert_eq!(p.credentials.query_user_id.as_deref(), Some("u 1"));
        assert_eq!(p.session_id.as_deref(), Some("s 1"));
        assert_eq!(p.credentials.token.as_deref(), Some("t"));
        assert_eq!(
            p.credentials.query.get("other").map(String::as_str),
            Some("x")
        );
        assert_eq!(
            p.since,
            Some(Since {
                seq: 41,
                epoch: "e".into()
            })
        );
        assert!(parse_query("since=1").is_err());
        assert!(parse_query("sessionId=%ff").is_err());
        assert!(parse_query("sessionId=%4").is_err());
        assert!(parse_query("sessionId=s&since=-1").is_err());
    }

    #[test]
    fn compares_tokens_by_content_and_length() {
        assert!(constant_time_eq(
            "s3cret-admin-token",
            b"s3cret-admin-token"
        ));
        for wrong in [
            &b""[..],
            b"s3cret-admin-toke",
            b"s3cret-admin-tokenX",
            b"S3cret-admin-token",
            b"s3cret-admin-token\0",
        ] {
            assert!(!constant_time_eq("s3cret-admin-token", wrong), "{wrong:?}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn reads_exactly_one_bearer_token() {
        let token = |pairs: &[(&str, &str)]| bearer_token(&headers(pairs)).map(<[u8]>::to_vec);
        assert_eq!(
            token(&[("authorization", "Bearer abc")]),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            token(&[("authorization", "bEaReR  abc ")]),
            Some(b"abc".to_vec())
        );
        assert_eq!(token(&[]), None);
        assert_eq!(token(&[("authorization", "Bearer")]), None);
        assert_eq!(token(&[("authorization", "Basic YWJjOmRlZg==")]), None);
        assert_eq!(
            token(&[
                ("authorization", "Bearer abc"),
                ("authorization", "Bearer abc")
            ]),
            None,
            "a repeated header is ambiguous"
        );
    }

    #[test]
    fn websocket_keys_are_sixteen_bytes_of_base64() {
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZQ===",
            b"dGhlIHNhbXBsZSBub25j*Q==",
            b"dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",
        ] {
            assert!(!is_websocket_key(bad), "{bad:?}");
        }
    }
}
