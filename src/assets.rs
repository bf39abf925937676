//! Static files served on the WebSocket port (a dashboard page and its scripts), from
//! bytes the host owns, typically embedded with `include_bytes!`: no file system access.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// Files served at fixed paths with `GET` and `HEAD`. A cheap handle: clones share the
/// same files, so a host may keep one and add files after the server started. The
/// server's own routes (the WebSocket path, `/healthz`, `/api/ws/stats`) take precedence.
#[derive(Clone, Default)]
pub struct StaticFiles {
    files: Arc<RwLock<HashMap<String, StaticFile>>>,
}

#[derive(Clone, PartialEq)]
struct StaticFile {
    content_type: HeaderValue,
    body: Bytes,
}

impl StaticFiles {
    /// Serves `body` at `path` (e.g. `/` or `/app.js`) with the given `Content-Type`.
    /// Replaces a file already at that path.
    pub fn add(&self, path: &str, content_type: &str, body: &'static [u8]) -> crate::Result<&Self> {
        let invalid = |why: &str| crate::Error::new(crate::ErrorKind::InvalidArgument, why);
        if !path.starts_with('/') || path.contains(['?', '#']) {
            return Err(invalid("a static file path starts with / and has no query"));
        }
        let content_type = HeaderValue::from_str(content_type)
            .map_err(|_| invalid("the content type is not a valid header value"))?;
        let file = StaticFile {
            content_type,
            body: Bytes::from_static(body),
        };
        self.write().insert(path.to_string(), file);
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, StaticFile>> {
        self.files.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, StaticFile>> {
        self.files.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The response for `path`, if a file is there.
pub(crate) fn serve(
    files: &StaticFiles,
    method: &Method,
    path: &str,
) -> Option<Response<Full<Bytes>>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let file = files.read().get(path)?.clone();
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        file.body.clone()
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, file.content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(file.body.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

impl fmt::Debug for StaticFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut paths: Vec<String> = self.read().keys().cloned().collect();
        paths.sort();
        f.debug_struct("StaticFiles")
            .field("paths", &paths)
            .finish()
    }
}

impl PartialEq for StaticFiles {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.files, &other.files) || *self.read() == *other.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_added_files_and_refuses_bad_paths() {
        let files = StaticFiles::default();
        files
            .add("/", "text/html; charset=utf-8", b"<p>hi</p>")
            .unwrap();
        let response = serve(&files, &Method::GET, "/").unwrap();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "9");
        assert!(serve(&files, &Method::GET, "/other").is_none());
        assert!(serve(&files, &Method::POST, "/").is_none());
        assert!(files.add("x", "text/plain", b"").is_err());
        assert!(files.add("/a?b", "text/plain", b"").is_err());
        assert!(files.add("/a", "text/plain\n", b"").is_err());
        let shared = files.clone();
        shared.add("/late.js", "text/javascript", b"1").unwrap();
        assert!(serve(&files, &Method::HEAD, "/late.js").is_some());
        assert_eq!(files, shared);
        assert_ne!(files, StaticFiles::default());
    }
}
