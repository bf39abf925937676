//! HTTP on the WebSocket port: the upgrade itself, `/healthz` and `/api/ws/stats`.

use crate::connection::{self, Handshake, Upgrade};
use crate::limits::SocketSlot;
use crate::protocol::{self, Since};
use crate::server::Shared;
use crate::stats::Counters;
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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Initial read buffer per connection. Clients send little; tungstenite's 128 KiB
/// default would dominate idle memory. Larger frames grow it on demand.
const READ_BUFFER_SIZE: usize = 128;

type Body = Full<Bytes>;

/// Serves one accepted socket until it closes or is upgraded to a WebSocket. A socket
/// still speaking plain HTTP after the handshake timeout is dropped, so a client that
/// opens TCP and never upgrades holds nothing for long.
pub(crate) async fn serve_socket<I>(
    shared: Arc<Shared>,
    io: I,
    remote: SocketAddr,
    slot: SocketSlot,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = Duration::from_millis(shared.config.handshake_timeout_ms);
    // The slot moves into the WebSocket task on upgrade; until then this socket holds it.
    let slot = Arc::new(std::sync::Mutex::new(Some(slot)));
    let service_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&service_shared);
        let slot = Arc::clone(&slot);
        async move { Ok::<_, Infallible>(route(shared, req, remote, &slot)) }
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
            tracing::debug!(%remote, error = %e, "http connection ended with an error")
        }
        Ok(Err(_)) | Err(_) => {
            Counters::add(&shared.counters.handshake_timeouts, 1);
            tracing::debug!(%remote, "dropping a socket that did not upgrade in time");
        }
    }
}

type SlotCell = std::sync::Mutex<Option<SocketSlot>>;

fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    remote: SocketAddr,
    slot: &SlotCell,
) -> Response<Body> {
    let path = req.uri().path();
    if path == shared.config.path {
        return upgrade(shared, req, remote, slot);
    }
    match (req.method(), path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/api/ws/stats") => {
            let mut response = Response::new(Full::new(Bytes::from(shared.stats_json())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        (method, _) => crate::assets::serve(&shared.config.static_files, method, path)
            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n")),
    }
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
    let Some(slot) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return text(StatusCode::BAD_REQUEST, "already upgraded\n");
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(Some(shared.config.max_message_size))
        .max_frame_size(Some(shared.config.max_message_size));
    let upgrade = Box::new(Upgrade {
        on_upgrade,
        config,
        handshake,
        remote,
    });
    tokio::spawn(connection::serve(shared, upgrade, slot));

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
}
