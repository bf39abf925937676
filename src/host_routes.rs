//! HTTP routes a Rust host adds on the WebSocket port (the `herald` binary's publish API),
//! with the request body read and bounded by Herald. Herald's own routes, the WebSocket
//! path and static files come first.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::fmt;
use std::sync::{Arc, RwLock};

/// A request for a host route: the body is read in full first.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpRequest {
    /// The values of a header (name in any case).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a host route answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    /// Extra headers (e.g. `WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        HttpResponse {
            status,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Answers requests under a prefix. It runs on a network thread: it must not block (the
/// server's host calls only enqueue, so calling them is fine).
pub type HttpHandler = Arc<dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync>;

#[derive(Clone)]
pub(crate) struct HttpRoute {
    prefix: String,
    max_body: usize,
    handler: HttpHandler,
}

/// Host routes by path prefix. A cheap handle: clones share the routes, so a host may
/// add them after the server started (its handler can then reach the running server).
#[derive(Clone, Default)]
pub struct HttpRoutes {
    routes: Arc<RwLock<Vec<HttpRoute>>>,
}

impl HttpRoutes {
    /// Sends requests whose path starts with `prefix` (e.g. `/api/`) to `handler`, with
    /// bodies up to `max_body` bytes (larger get 413). Herald's own routes keep precedence.
    pub fn add(&self, prefix: &str, max_body: usize, handler: HttpHandler) -> crate::Result<&Self> {
        if !prefix.starts_with('/') || prefix.contains(['?', '#']) {
            return Err(crate::Error::new(
                crate::ErrorKind::InvalidArgument,
                "a route prefix starts with / and has no query",
            ));
        }
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(HttpRoute {
                prefix: prefix.to_string(),
                max_body,
                handler,
            });
        Ok(self)
    }

    pub(crate) fn find(&self, path: &str) -> Option<HttpRoute> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|r| path.starts_with(&r.prefix))
            .cloned()
    }
}

impl fmt::Debug for HttpRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let prefixes: Vec<&str> = routes.iter().map(|r| r.prefix.as_str()).collect();
        f.debug_struct("HttpRoutes")
            .field("prefixes", &prefixes)
            .finish()
    }
}

/// Equal when they route the same prefixes to the same handlers.
impl PartialEq for HttpRoutes {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.routes, &other.routes) {
            return true;
        }
        let (a, b) = (
            self.routes.read().unwrap_or_else(|p| p.into_inner()),
            other.routes.read().unwrap_or_else(|p| p.into_inner()),
        );
        a.len() == b.len()
            && a.iter().zip(b.iter()).all(|(x, y)| {
                x.prefix == y.prefix
                    && x.max_body == y.max_body
                    && Arc::ptr_eq(&x.handler, &y.handler)
            })
    }
}

/// Reads the body (bounded) and calls the route's handler; `blocking` when host calls
/// made by the handler may wait (for a shared broker's answer).
pub(crate) async fn serve(
    route: HttpRoute,
    req: Request<Incoming>,
    blocking: bool,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, route.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
        }
        Err(_) => return plain(StatusCode::BAD_REQUEST, "could not read the request body\n"),
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let request = HttpRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        headers,
        body,
    };
    // With a shared broker a host call waits for the broker's answer, which a task of
    // this runtime brings: this worker's other tasks (the one just spawned included) go
    // to another thread first, or it would wait for itself until the broker timeout.
    // Without one, host calls only queue, and the handler runs here.
    let answer = if blocking {
        tokio::task::block_in_place(|| (route.handler)(&request))
    } else {
        (route.handler)(&request)
    };
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&answer.content_type) {
        h.insert(header::CONTENT_TYPE, value);
    }
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.append(name, value);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_prefix_and_compare_by_handler() {
        let routes = HttpRoutes::default();
        assert_eq!(routes, HttpRoutes::default());
        let handler: HttpHandler = Arc::new(|_| HttpResponse::json(200, "{}"));
        routes.add("/api/", 16, Arc::clone(&handler)).unwrap();
        assert!(routes.find("/api/publish").is_some());
        assert!(routes.find("/apix").is_none());
        assert!(routes.add("api/", 16, Arc::clone(&handler)).is_err());
        assert!(routes.add("/a?b", 16, Arc::clone(&handler)).is_err());
        let same = HttpRoutes::default();
        same.add("/api/", 16, handler).unwrap();
        assert_eq!(routes, same);
        let other = HttpRoutes::default();
        other
            .add("/api/", 16, Arc::new(|_| HttpResponse::json(200, "{}")))
            .unwrap();
        assert_ne!(routes, other);
    }
}
