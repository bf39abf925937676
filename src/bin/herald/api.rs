//! The HTTP publish API, under `/api/` on the WebSocket port:
//!
//! | request | body | does |
//! | --- | --- | --- |
//! | `POST /api/publish` | `{"channel", "data": {…}}` | `data` to the channel's subscribers |
//! | `POST /api/notify/{start,progress,delta,complete,error,cancelled}` | `{"sessionId", …payload}` | `ai_start` & co. to a session, the other keys as the payload |
//! | `POST /api/broadcast` | `{"data": {…}, "userId"?}` | to every client, or to one user's |
//! | `POST /api/send` | `{"clientId", "data": {…}}` | to one client |
//! | `POST /api/batch` | `[{"op": "publish" \| "notify/progress" \| …, …the op's body}]` | each in order |
//!
//! `Authorization: Bearer <api_key>`, compared in constant time. A call is accepted
//! (202) once queued; errors are `{"ok":false,"error":{"code","message"}}` with a status
//! per kind (see `status_of`).

use herald::{Error, ErrorKind, HttpHandler, HttpRequest, HttpResponse, Server};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use std::sync::Arc;

/// Largest request body (a batch included).
pub const MAX_BODY: usize = 1024 * 1024;
/// Most operations in one batch.
const MAX_BATCH: usize = 1000;

pub struct Api {
    key: Option<String>,
    server: fn() -> Option<&'static Server>,
}

impl Api {
    pub fn new(key: Option<String>, server: fn() -> Option<&'static Server>) -> Api {
        Api { key, server }
    }

    pub fn into_handler(self) -> HttpHandler {
        Arc::new(move |request: &HttpRequest| self.handle(request))
    }

    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        if !self.authorized(request) {
            return failure(
                401,
                "unauthorized",
                "an API key is required: Authorization: Bearer <api_key>",
            )
            .with_header("WWW-Authenticate", "Bearer");
        }
        let Some(op) = request.path.strip_prefix("/api/") else {
            return not_found();
        };
        if !is_known(op) && op != "batch" {
            return not_found();
        }
        if request.method != "POST" {
            return failure(405, "method_not_allowed", "use POST").with_header("Allow", "POST");
        }
        let Some(server) = (self.server)() else {
            return failure(503, "starting", "the server is starting");
        };
        let Ok(body) = std::str::from_utf8(&request.body) else {
            return failure(400, "invalid_utf8", "the body is not UTF-8");
        };
        if op == "batch" {
            return batch(server, body);
        }
        match perform(server, op, body, &["sessionId"]) {
            Ok(()) => HttpResponse::json(202, r#"{"ok":true}"#),
            Err(e) => error_response(&e),
        }
    }

    fn authorized(&self, request: &HttpRequest) -> bool {
        let Some(expected) = &self.key else {
            return true;
        };
        let mut values = request.header_values("authorization");
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some((scheme, token)) = value.split_at_checked(7) else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer ") && constant_time_eq(expected, token.trim())
    }
}

fn is_known(op: &str) -> bool {
    matches!(
        op,
        "publish"
            | "broadcast"
            | "send"
            | "notify/start"
            | "notify/progress"
            | "notify/complete"
            | "notify/error"
            | "notify/delta"
            | "notify/cancelled"
    )
}

/// Compares in a time that depends on the expected key's length only.
fn constant_time_eq(expected: &str, given: &str) -> bool {
    let (expected, given) = (expected.as_bytes(), given.as_bytes());
    let mut diff = u8::from(expected.len() != given.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// One operation; `body` is its JSON object. A notification's payload is the body's
/// other keys, less `not_payload`.
fn perform(server: &Server, op: &str, body: &str, not_payload: &[&str]) -> Result<(), Error> {
    let fields = Fields::parse(body)?;
    match op {
        "publish" => server.publish(&fields.string("channel")?, fields.object("data")?),
        "broadcast" => match fields.optional_string("userId")? {
            Some(user) => server.broadcast_to_user(&user, fields.object("data")?),
            None => server.broadcast(fields.object("data")?),
        },
        "send" => server.send(&fields.string("clientId")?, fields.object("data")?),
        notify => {
            let session = fields.string("sessionId")?;
            let payload = fields.rest(not_payload);
            match notify {
                "notify/start" => server.notify_ai_start(&session, &payload),
                "notify/progress" => server.notify_ai_progress(&session, &payload),
                "notify/complete" => server.notify_ai_complete(&session, &payload),
                "notify/error" => server.notify_ai_error(&session, &payload),
                "notify/delta" => server.notify_ai_delta(&session, &payload),
                "notify/cancelled" => server.notify_ai_cancelled(&session, &payload),
                other => Err(invalid(format!("unknown operation {other:?}"))),
            }
        }
    }
}

/// Every item in order; the answer lists each item's outcome.
fn batch(server: &Server, body: &str) -> HttpResponse {
    let items: Vec<&RawValue> = match serde_json::from_str(body) {
        Ok(items) => items,
        Err(e) => {
            return error_response(&Error::new(
                ErrorKind::InvalidJson,
                format!("a batch is a JSON array of objects: {e}"),
            ))
        }
    };
    if items.len() > MAX_BATCH {
        return failure(
            413,
            "batch_too_large",
            &format!("at most {MAX_BATCH} operations per batch"),
        );
    }
    let mut results = Vec::with_capacity(items.len());
    let mut accepted = 0;
    for item in items {
        let outcome = Fields::parse(item.get()).and_then(|fields| {
            let op = fields.string("op")?;
            if !is_known(&op) {
                return Err(invalid(format!("unknown op {op:?}")));
            }
            perform(server, &op, item.get(), &["sessionId", "op"])
        });
        results.push(match outcome {
            Ok(()) => {
                accepted += 1;
                serde_json::json!({"ok": true})
            }
            Err(e) => serde_json::json!({
                "ok": false,
                "status": status_of(e.kind()),
                "error": {"code": e.kind().as_str(), "message": e.message()},
            }),
        });
    }
    let body = serde_json::json!({"ok": accepted == results.len(), "accepted": accepted, "results": results});
    HttpResponse::json(200, body.to_string())
}

/// The HTTP status for an error of the core.
fn status_of(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidJson
        | ErrorKind::InvalidArgument
        | ErrorKind::InvalidUtf8
        | ErrorKind::NullArgument => 400,
        ErrorKind::UnknownClient => 404,
        // The channel table is full: the server is out of room, not the caller out of line.
        ErrorKind::Limit => 507,
        // Try again later: the queue drains, the broker (Redis) comes back.
        ErrorKind::QueueFull | ErrorKind::Stopped | ErrorKind::Unavailable => 503,
        _ => 500,
    }
}

fn error_response(e: &Error) -> HttpResponse {
    let response = failure(status_of(e.kind()), e.kind().as_str(), e.message());
    if e.kind() == ErrorKind::QueueFull {
        response.with_header("Retry-After", "1")
    } else {
        response
    }
}

fn failure(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({"ok": false, "error": {"code": code, "message": message}});
    HttpResponse::json(status, body.to_string())
}

fn not_found() -> HttpResponse {
    failure(
        404,
        "not_found",
        "no such endpoint; see the README's HTTP publish API",
    )
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// A JSON object's members in their order, values as written.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'a> Fields<'a> {
    fn parse(json: &'a str) -> Result<Fields<'a>, Error> {
        let mut de = serde_json::Deserializer::from_str(json);
        let fields = de
            .deserialize_map(FieldsVisitor)
            .and_then(|f| de.end().map(|()| f))
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidJson,
                    format!("the body must be a JSON object: {e}"),
                )
            })?;
        Ok(fields)
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn optional_string(&self, key: &str) -> Result<Option<String>, Error> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        serde_json::from_str::<String>(raw.get())
            .map(Some)
            .map_err(|_| invalid(format!("{key} must be a string")))
    }

    fn string(&self, key: &str) -> Result<String, Error> {
        self.optional_string(key)?
            .ok_or_else(|| invalid(format!("{key} is required")))
    }

    fn object(&self, key: &str) -> Result<&'a str, Error> {
        let raw = self
            .get(key)
            .ok_or_else(|| invalid(format!("{key} is required")))?;
        if !raw.get().starts_with('{') {
            return Err(Error::new(
                ErrorKind::InvalidJson,
                format!("{key} must be a JSON object"),
            ));
        }
        Ok(raw.get())
    }

    /// The other members, as a JSON object.
    fn rest(&self, without: &[&str]) -> String {
        let mut out = String::from("{");
        for (key, value) in self
            .0
            .iter()
            .filter(|(k, _)| !without.contains(&k.as_str()))
        {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).expect("a string serializes"));
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        out
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<(String, &'de RawValue)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            fields.push((key, value));
        }
        Ok(Fields(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_keeps_order_and_values_as_written() {
        let fields =
            Fields::parse(r#"{"z":1,"sessionId":"s","a":{"b":[1,2]},"n":"x\"y"}"#).unwrap();
        assert_eq!(fields.string("sessionId").unwrap(), "s");
        assert_eq!(
            fields.rest(&["sessionId"]),
            r#"{"z":1,"a":{"b":[1,2]},"n":"x\"y"}"#
        );
        assert!(Fields::parse("[1]").is_err());
        assert!(Fields::parse(r#"{"a":1,"a":2}"#).is_err());
        assert!(Fields::parse(r#"{"a":1} x"#).is_err());
    }

    #[test]
    fn keys_compare_by_content_and_length() {
        assert!(constant_time_eq("0123456789abcdef", "0123456789abcdef"));
        assert!(!constant_time_eq("0123456789abcdef", "0123456789abcde"));
        assert!(!constant_time_eq("0123456789abcdef", "0123456789abcdeF"));
        assert!(!constant_time_eq("0123456789abcdef", ""));
    }
}
