//! Wire protocol v1: the one place that knows message names and shapes.
//!
//! Server messages are built as JSON text once per publication, straight into their
//! WebSocket frame (the writer leaves room for the header). A channel publication is
//! built "open" (without its closing brace) so the dispatcher can append the channel's
//! `seq` and `epoch` without serializing again.

use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Stamp;
use crate::transport::wire::{Frame, HEADER_ROOM};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// Longest channel, session, user or client id accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

// The C ABI's `herald_ai_kind` is generated from this enum (its numbers are the C
// values): a new kind is a variant here, its arms below and its entry in `AI_EVENTS`.
/// The AI-task notifications a host sends to a session (`herald_notify_ai`), each with
/// its payload under its own key.
///
/// cbindgen:rename-all=QualifiedScreamingSnakeCase
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AiEvent {
    /// `ai_start`, payload `task`.
    Start = 0,
    /// `ai_progress`, payload `progress`.
    Progress = 1,
    /// `ai_complete`, payload `result`.
    Complete = 2,
    /// `ai_error`, payload `error`.
    Error = 3,
    /// `ai_delta`, payload `delta`: a piece of a token stream, `{"jobId":…,"text":"…"}`.
    Delta = 4,
    /// `ai_cancelled`, payload `cancelled`: the job ended because it was cancelled.
    Cancelled = 5,
}

/// Every AI notification kind, in the order of their numbers.
pub const AI_EVENTS: [AiEvent; 6] = [
    AiEvent::Start,
    AiEvent::Progress,
    AiEvent::Complete,
    AiEvent::Error,
    AiEvent::Delta,
    AiEvent::Cancelled,
];

impl AiEvent {
    /// The kind with this number (its C value), if any.
    pub fn from_number(number: i64) -> Option<AiEvent> {
        AI_EVENTS.into_iter().find(|kind| *kind as i64 == number)
    }

    pub fn message_type(self) -> &'static str {
        match self {
            AiEvent::Start => "ai_start",
            AiEvent::Progress => "ai_progress",
            AiEvent::Complete => "ai_complete",
            AiEvent::Error => "ai_error",
            AiEvent::Delta => "ai_delta",
            AiEvent::Cancelled => "ai_cancelled",
        }
    }

    pub fn payload_key(self) -> &'static str {
        match self {
            AiEvent::Start => "task",
            AiEvent::Progress => "progress",
            AiEvent::Complete => "result",
            AiEvent::Error => "error",
            AiEvent::Delta => "delta",
            AiEvent::Cancelled => "cancelled",
        }
    }
}

/// Channel names for sessions and users.
pub fn session_channel(session_id: &str) -> String {
    format!("session:{session_id}")
}

pub fn user_channel(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Checks an id or channel name given by a host or a client.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} must not be empty"),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{what} is {} bytes long; the limit is {MAX_NAME_LEN}",
                name.len()
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} must not contain control characters"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Building JSON text
// ---------------------------------------------------------------------------

/// A JSON object under construction. Keys are trusted literals; values are escaped.
/// The text starts after [`HEADER_ROOM`] bytes reserved for its frame header.
pub(crate) struct ObjectWriter {
    buf: Vec<u8>,
}

/// Where the object's text starts in the writer's buffer.
const TEXT_START: usize = HEADER_ROOM;

impl ObjectWriter {
    pub fn with_type(message_type: &'static str) -> Self {
        Self::with_type_capacity(message_type, 128)
    }

    /// `capacity`: the expected length, so building never reallocates.
    pub fn with_type_capacity(message_type: &'static str, capacity: usize) -> Self {
        let mut w = ObjectWriter::with_capacity(capacity);
        w.buf.extend_from_slice(b"\"type\":\"");
        w.buf.extend_from_slice(message_type.as_bytes());
        w.buf.push(b'"');
        w
    }

    fn empty() -> Self {
        ObjectWriter::with_capacity(128)
    }

    fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(TEXT_START + capacity);
        buf.resize(TEXT_START, 0);
        buf.push(b'{');
        ObjectWriter { buf }
    }

    fn has_fields(&self) -> bool {
        self.buf.len() > TEXT_START + 1
    }

    /// A key from the host's JSON: escaped.
    fn key(&mut self, key: &str) {
        if self.has_fields() {
            self.buf.push(b',');
        }
        self.string(key);
        self.buf.push(b':');
    }

    /// A key of the protocol: a plain ASCII literal, written as is.
    fn lit(&mut self, key: &'static str) {
        if self.has_fields() {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn string(&mut self, value: &str) {
        // Plain strings (the usual ids) need no escaping; the rest go through serde_json.
        if value
            .bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
        {
            self.buf.push(b'"');
            self.buf.extend_from_slice(value.as_bytes());
            self.buf.push(b'"');
        } else {
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.buf, value);
        }
    }

    pub fn str(mut self, key: &'static str, value: &str) -> Self {
        self.lit(key);
        self.string(value);
        self
    }

    pub fn u64(mut self, key: &'static str, value: u64) -> Self {
        use std::io::Write;
        self.lit(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    pub fn bool(mut self, key: &'static str, value: bool) -> Self {
        self.lit(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// Inserts already-validated JSON text.
    pub fn raw(mut self, key: &'static str, json: &str) -> Self {
        self.lit(key);
        self.buf.extend_from_slice(json.as_bytes());
        self
    }

    /// Inserts another object.
    fn object(mut self, key: &'static str, mut inner: ObjectWriter) -> Self {
        self.lit(key);
        inner.buf.push(b'}');
        self.buf.extend_from_slice(&inner.buf[TEXT_START..]);
        self
    }

    pub fn timestamp(mut self) -> Self {
        let mut iso = [0u8; 24];
        crate::time::write_iso_millis(crate::time::unix_millis(), &mut iso);
        self.lit("timestamp");
        self.buf.push(b'"');
        self.buf.extend_from_slice(&iso);
        self.buf.push(b'"');
        self
    }

    /// Leaves the object open for `seq`/`epoch`.
    pub fn open(self) -> OpenObject {
        OpenObject {
            buf: self.buf,
            stamp: None,
        }
    }

    pub fn finish(self) -> Frame {
        self.open().close()
    }
}

/// A JSON object with at least one field and no closing brace yet.
#[derive(Debug)]
pub struct OpenObject {
    buf: Vec<u8>,
    /// Set on host messages: the start of their publish-to-write latency.
    stamp: Option<Stamp>,
}

impl OpenObject {
    /// The text so far (no closing brace), as a broker stores and forwards it.
    pub fn text(&self) -> &str {
        // Built by the writer from UTF-8 pieces, or copied from a `&str`.
        std::str::from_utf8(&self.buf[TEXT_START..]).expect("open objects hold UTF-8 text")
    }

    /// An open object received from a broker: `text` as [`OpenObject::text`] gave it.
    pub fn from_text(text: &str) -> OpenObject {
        let mut buf = Vec::with_capacity(TEXT_START + text.len() + 48);
        buf.resize(TEXT_START, 0);
        buf.extend_from_slice(text.as_bytes());
        // Not stamped: its publish-to-write latency began on another node.
        OpenObject { buf, stamp: None }
    }

    /// Marks this as a host message made now.
    fn stamped_now(mut self) -> Self {
        self.stamp = Some(Stamp::now());
        self
    }

    pub fn close(mut self) -> Frame {
        self.buf.push(b'}');
        Frame::from_room(self.buf).stamped(self.stamp)
    }

    /// Closes the object after appending the channel position of this publication.
    pub fn close_with_position(mut self, seq: u64, epoch: &str) -> Frame {
        use std::io::Write;
        self.buf.extend_from_slice(b",\"seq\":");
        let _ = write!(self.buf, "{seq}");
        self.buf.extend_from_slice(b",\"epoch\":");
        let _ = serde_json::to_writer(&mut self.buf, epoch);
        self.buf.push(b'}');
        Frame::from_room(self.buf).stamped(self.stamp)
    }
}

// ---------------------------------------------------------------------------
// Server -> client messages
// ---------------------------------------------------------------------------

pub(crate) fn connection(client_id: &str) -> Frame {
    ObjectWriter::with_type("connection")
        .str("status", "connected")
        .str("clientId", client_id)
        .timestamp()
        .finish()
}

pub(crate) fn pong() -> Frame {
    ObjectWriter::with_type("pong").timestamp().finish()
}

pub(crate) fn error(code: &str, message: &str) -> Frame {
    let body = ObjectWriter::empty()
        .str("code", code)
        .str("message", message);
    ObjectWriter::with_type("error")
        .object("error", body)
        .timestamp()
        .finish()
}

/// Where a subscription points, as the client named it (echoed in replies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Session(String),
    Channel(String),
}

impl Target {
    /// The channel name.
    pub fn channel(&self) -> String {
        match self {
            Target::Session(s) => session_channel(s),
            Target::Channel(c) => c.clone(),
        }
    }

    fn write(&self, w: ObjectWriter) -> ObjectWriter {
        match self {
            Target::Session(s) => w.str("sessionId", s),
            Target::Channel(c) => w.str("channel", c),
        }
    }
}

/// Where a channel stands: the last seq published and the epoch it counts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub epoch: String,
}

pub(crate) fn subscribed(target: &Target, position: &Position, recovered: Option<bool>) -> Frame {
    let w = target.write(ObjectWriter::with_type("subscribed"));
    let w = match recovered {
        Some(r) => w.bool("recovered", r),
        None => w,
    };
    w.u64("seq", position.seq)
        .str("epoch", &position.epoch)
        .timestamp()
        .finish()
}

pub(crate) fn unsubscribed(target: Option<&Target>) -> Frame {
    let w = ObjectWriter::with_type("unsubscribed");
    let w = match target {
        Some(t) => t.write(w),
        None => w.bool("all", true),
    };
    w.timestamp().finish()
}

/// The state of a session's jobs as of `position`: what a subscriber sees before the
/// live tail (publications after `position.seq`). `jobs_json` is a JSON array.
pub(crate) fn jobs_snapshot(session_id: &str, position: &Position, jobs_json: &str) -> Frame {
    ObjectWriter::with_type_capacity("jobs_snapshot", 128 + session_id.len() + jobs_json.len())
        .str("sessionId", session_id)
        .u64("seq", position.seq)
        .str("epoch", &position.epoch)
        .raw("jobs", jobs_json)
        .timestamp()
        .finish()
}

/// Longest presence status a client may set, in bytes.
pub const MAX_STATUS_LEN: usize = 32;

/// A status is 1 to [`MAX_STATUS_LEN`] bytes of printable text; `offline` is what a
/// leave says, so a client cannot claim it while present.
pub(crate) fn check_status(status: &str) -> std::result::Result<(), String> {
    if status.is_empty() || status.len() > MAX_STATUS_LEN {
        return Err(format!(
            "\"status\" must be 1 to {MAX_STATUS_LEN} bytes long"
        ));
    }
    if status.chars().any(char::is_control) {
        return Err("\"status\" must not contain control characters".into());
    }
    if status == "offline" {
        return Err("\"status\" cannot be \"offline\": that is what leaving says".into());
    }
    Ok(())
}

/// The answer to a presence query: `members` is a JSON array of member objects.
pub(crate) fn presence_members(
    target: &Target,
    members_json: &str,
    total: u64,
    truncated: bool,
) -> Frame {
    let capacity = 128 + members_json.len();
    target
        .write(ObjectWriter::with_type_capacity("presence", capacity))
        .raw("members", members_json)
        .u64("total", total)
        .bool("truncated", truncated)
        .timestamp()
        .finish()
}

/// Several `ai_delta`s of one job, consecutive in their channel, as one: the text
/// concatenated, the position of the last (`merged` says how many it stands for).
pub(crate) fn merged_delta(
    session_id: &str,
    job_id: Option<&str>,
    text: &str,
    merged: usize,
    position: &Position,
) -> Frame {
    let mut delta = ObjectWriter::empty();
    if let Some(job) = job_id {
        delta = delta.str("jobId", job);
    }
    let delta = delta.str("text", text);
    ObjectWriter::with_type_capacity("ai_delta", 128 + session_id.len() + text.len())
        .str("sessionId", session_id)
        .object("delta", delta)
        .u64("merged", merged as u64)
        .timestamp()
        .open()
        .close_with_position(position.seq, &position.epoch)
}

/// A member joined, left or changed its status (`action`), for the channel's
/// subscribers that asked for presence. `member_json` is the member's object.
pub(crate) fn user_presence(channel: &str, action: &'static str, member_json: &str) -> Frame {
    ObjectWriter::with_type_capacity("user_presence", 128 + member_json.len())
        .str("channel", channel)
        .str("action", action)
        .raw("data", member_json)
        .timestamp()
        .finish()
}

/// `ai_start` & co. for a session, left open for the channel position.
pub(crate) fn ai_notification(
    event: AiEvent,
    session_id: &str,
    payload_json: &str,
) -> Result<OpenObject> {
    let payload = validate_object(event.payload_key(), payload_json)?;
    // type, sessionId, payload, timestamp, and room for seq and epoch.
    let capacity = 96 + session_id.len() + payload.get().len() + 64;
    Ok(
        ObjectWriter::with_type_capacity(event.message_type(), capacity)
            .str("sessionId", session_id)
            .raw(event.payload_key(), payload.get())
            .timestamp()
            .open()
            .stamped_now(),
    )
}

/// A host's own message, as given, plus `timestamp` when it has none and `channel`
/// when it goes to a channel. Keys the channel position owns are replaced.
pub(crate) fn host_message(message_json: &str, channel: Option<&str>) -> Result<OpenObject> {
    let fields = parse_top_level("message", message_json)?;
    let mut w = ObjectWriter::empty();
    let mut has_timestamp = false;
    for (key, value) in &fields.0 {
        let owned_by_channel = matches!(key.as_str(), "seq" | "epoch" | "channel");
        if channel.is_some() && owned_by_channel {
            continue;
        }
        has_timestamp |= key == "timestamp";
        w.key(key);
        w.buf.extend_from_slice(value.get().as_bytes());
    }
    if !has_timestamp {
        w = w.timestamp();
    }
    if let Some(channel) = channel {
        w = w.str("channel", channel);
    }
    Ok(w.open().stamped_now())
}

fn validate_object<'a>(what: &str, json: &'a str) -> Result<&'a RawValue> {
    let raw: &RawValue = serde_json::from_str(json).map_err(|e| Error::invalid_json(what, e))?;
    if !raw.get().starts_with('{') {
        return Err(Error::new(
            ErrorKind::InvalidJson,
            format!("{what} must be a JSON object"),
        ));
    }
    Ok(raw)
}

/// The top-level fields of a JSON object, in order, values left as text.
struct TopLevel<'a>(Vec<(String, &'a RawValue)>);

fn parse_top_level<'a>(what: &str, json: &'a str) -> Result<TopLevel<'a>> {
    validate_object(what, json)?;
    serde_json::from_str(json).map_err(|e| Error::invalid_json(what, e))
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(TopLevel(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

// ---------------------------------------------------------------------------
// Client -> server messages
// ---------------------------------------------------------------------------

/// The last position a client has seen on a channel, for recovery.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Since {
    pub seq: u64,
    pub epoch: String,
}

#[derive(Debug)]
pub(crate) enum ClientMessage {
    Ping,
    Subscribe {
        target: Target,
        since: Option<Since>,
        /// Whether the client wants the channel's `user_presence` join, leave and status
        /// events; `None` (not said) keeps what an earlier subscribe asked, else no.
        presence: Option<bool>,
    },
    /// Asks who is in a channel; with `status`, first sets the client's own status there.
    Presence {
        target: Target,
        status: Option<String>,
    },
    /// `None` unsubscribes from everything.
    Unsubscribe {
        target: Option<Target>,
    },
    /// Asks the host to cancel a job of a session (`jobId` absent: its implicit job).
    Cancel {
        session_id: String,
        job_id: Option<String>,
    },
    /// Any other typed object: for the host.
    Custom(Box<RawValue>),
}

impl PartialEq for ClientMessage {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ClientMessage::Ping, ClientMessage::Ping) => true,
            (
                ClientMessage::Subscribe {
                    target: a,
                    since: x,
                    presence: p,
                },
                ClientMessage::Subscribe {
                    target: b,
                    since: y,
                    presence: q,
                },
            ) => a == b && x == y && p == q,
            (
                ClientMessage::Presence {
                    target: a,
                    status: x,
                },
                ClientMessage::Presence {
                    target: b,
                    status: y,
                },
            ) => a == b && x == y,
            (
                ClientMessage::Unsubscribe { target: a },
                ClientMessage::Unsubscribe { target: b },
            ) => a == b,
            (
                ClientMessage::Cancel {
                    session_id: a,
                    job_id: x,
                },
                ClientMessage::Cancel {
                    session_id: b,
                    job_id: y,
                },
            ) => a == b && x == y,
            (ClientMessage::Custom(a), ClientMessage::Custom(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

/// Why a client frame was refused; sent back as an `error` with code `invalid_message`.
#[derive(Debug, PartialEq)]
pub(crate) struct InvalidMessage(pub String);

/// Deepest nesting of arrays and objects accepted in a client message, counting the
/// message itself. The whole message is bounded, not only the fields Herald reads: the
/// rest goes to the host, whose JSON parser may give up far sooner than the text's size
/// suggests (a 2 KB message of 1000 brackets is a RecursionError in Python).
pub(crate) const MAX_NESTING: usize = 64;

/// Whether JSON text nests arrays and objects deeper than `max` (brackets inside strings
/// do not count). Only a bound: the text may still be invalid.
fn nests_deeper_than(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

pub(crate) fn parse_client_message(
    text: &str,
) -> std::result::Result<ClientMessage, InvalidMessage> {
    let bad = |m: &str| InvalidMessage(m.to_string());
    if nests_deeper_than(text, MAX_NESTING) {
        return Err(InvalidMessage(format!(
            "a message may nest at most {MAX_NESTING} arrays or objects"
        )));
    }
    let raw: Box<RawValue> =
        serde_json::from_str(text).map_err(|e| InvalidMessage(format!("not valid JSON: {e}")))?;
    if !raw.get().starts_with('{') {
        return Err(bad("a message must be a JSON object"));
    }

    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: Option<serde_json::Value>,
        #[serde(rename = "sessionId")]
        session_id: Option<serde_json::Value>,
        channel: Option<serde_json::Value>,
        since: Option<serde_json::Value>,
        #[serde(rename = "jobId")]
        job_id: Option<serde_json::Value>,
        presence: Option<serde_json::Value>,
        status: Option<serde_json::Value>,
    }
    let env: Envelope = serde_json::from_str(raw.get())
        .map_err(|e| InvalidMessage(format!("not valid JSON: {e}")))?;
    let kind = match env.kind {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(bad("\"type\" must be a string")),
        None => return Err(bad("a message needs a string \"type\"")),
    };
    match kind.as_str() {
        "ping" => Ok(ClientMessage::Ping),
        "subscribe" => {
            let target = parse_target(env.session_id, env.channel)?
                .ok_or_else(|| bad("subscribe needs a string \"sessionId\" or \"channel\""))?;
            let since = match env.since {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(serde_json::from_value::<Since>(v).map_err(|_| {
                    bad("\"since\" must be {\"seq\": <non-negative integer>, \"epoch\": <string>}")
                })?),
            };
            let presence = match env.presence {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::Bool(b)) => Some(b),
                Some(_) => return Err(bad("\"presence\" must be true or false")),
            };
            Ok(ClientMessage::Subscribe {
                target,
                since,
                presence,
            })
        }
        "presence" => {
            let target = parse_target(env.session_id, env.channel)?
                .ok_or_else(|| bad("presence needs a string \"sessionId\" or \"channel\""))?;
            let status = match env.status {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => {
                    check_status(&s).map_err(InvalidMessage)?;
                    Some(s)
                }
                Some(_) => return Err(bad("\"status\" must be a string")),
            };
            Ok(ClientMessage::Presence { target, status })
        }
        "unsubscribe" => Ok(ClientMessage::Unsubscribe {
            target: parse_target(env.session_id, env.channel)?,
        }),
        // Without a `sessionId`, a `cancel` stays the host's own message, as it was
        // before jobs had a protocol of their own.
        "cancel" if env.session_id.is_some() => {
            let Some(Target::Session(session_id)) = parse_target(env.session_id, None)? else {
                return Err(bad("cancel needs a string \"sessionId\""));
            };
            let job_id = match env.job_id {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(job)) => {
                    check_name("jobId", &job).map_err(|e| InvalidMessage(e.message().into()))?;
                    Some(job)
                }
                Some(_) => return Err(bad("\"jobId\" must be a string")),
            };
            Ok(ClientMessage::Cancel { session_id, job_id })
        }
        _ => Ok(ClientMessage::Custom(raw)),
    }
}

fn parse_target(
    session_id: Option<serde_json::Value>,
    channel: Option<serde_json::Value>,
) -> std::result::Result<Option<Target>, InvalidMessage> {
    let name = |what: &str, v: serde_json::Value| match v {
        serde_json::Value::String(s) => {
            check_name(what, &s).map_err(|e| InvalidMessage(e.message().to_string()))?;
            Ok(s)
        }
        _ => Err(InvalidMessage(format!("\"{what}\" must be a string"))),
    };
    match (session_id, channel) {
        (Some(_), Some(_)) => Err(InvalidMessage(
            "give \"sessionId\" or \"channel\", not both".into(),
        )),
        (Some(s), None) => Ok(Some(Target::Session(name("sessionId", s)?))),
        (None, Some(c)) => Ok(Some(Target::Channel(name("channel", c)?))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(frame: &Frame) -> serde_json::Value {
        serde_json::from_str(frame.as_str()).unwrap()
    }

    #[test]
    fn every_ai_kind_is_listed_once_by_its_number() {
        for (number, kind) in AI_EVENTS.into_iter().enumerate() {
            assert_eq!(kind as usize, number);
            assert_eq!(AiEvent::from_number(number as i64), Some(kind));
            assert!(kind.message_type().starts_with("ai_"));
        }
        assert_eq!(AiEvent::from_number(AI_EVENTS.len() as i64), None);
        assert_eq!(AiEvent::from_number(-1), None);
    }

    #[test]
    fn ai_notification_embeds_payload_and_position() {
        let open = ai_notification(AiEvent::Progress, "s\"1", r#" {"pct": 5} "#).unwrap();
        let v = json(&open.close_with_position(7, "e1"));
        assert_eq!(v["type"], "ai_progress");
        assert_eq!(v["sessionId"], "s\"1");
        assert_eq!(v["progress"]["pct"], 5);
        assert_eq!(v["seq"], 7);
        assert_eq!(v["epoch"], "e1");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(ai_notification(AiEvent::Start, "s", "[1]").is_err());
        assert_eq!(
            ai_notification(AiEvent::Start, "s", "{")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidJson
        );
    }

    #[test]
    fn host_message_keeps_fields_and_owns_channel_keys() {
        let v = json(
            &host_message(
                r#"{"type":"x","timestamp":"t","seq":99,"n":[1]}"#,
                Some("c"),
            )
            .unwrap()
            .close_with_position(1, "e"),
        );
        assert_eq!(v["timestamp"], "t");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["channel"], "c");
        assert_eq!(v["n"], serde_json::json!([1]));
        let v = json(&host_message(r#"{"seq":99}"#, None).unwrap().close());
        assert_eq!(v["seq"], 99);
        assert!(v["timestamp"].is_string());
        assert!(host_message("\"str\"", None).is_err());
    }

    #[test]
    fn parses_client_messages() {
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            parse_client_message(
                r#"{"type":"subscribe","sessionId":"a","since":{"seq":3,"epoch":"e"}}"#
            ),
            Ok(ClientMessage::Subscribe {
                target: Target::Session("a".into()),
                since: Some(Since {
                    seq: 3,
                    epoch: "e".into()
                }),
                presence: None,
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"subscribe","channel":"c","presence":true}"#),
            Ok(ClientMessage::Subscribe {
                target: Target::Channel("c".into()),
                since: None,
                presence: Some(true),
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"presence","channel":"c","status":"away"}"#),
            Ok(ClientMessage::Presence {
                target: Target::Channel("c".into()),
                status: Some("away".into()),
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"unsubscribe"}"#),
            Ok(ClientMessage::Unsubscribe { target: None })
        );
        assert!(matches!(
            parse_client_message(r#"{"type":"chat","x":1}"#),
            Ok(ClientMessage::Custom(_))
        ));
        for bad in [
            "nope",
            "[]",
            "{}",
            r#"{"type":1}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","channel":""}"#,
            r#"{"type":"subscribe","channel":"c","since":{"seq":-1,"epoch":"e"}}"#,
            r#"{"type":"subscribe","channel":"c","presence":1}"#,
            r#"{"type":"presence"}"#,
            r#"{"type":"presence","channel":"c","status":""}"#,
            r#"{"type":"presence","channel":"c","status":"offline"}"#,
            r#"{"type":"presence","channel":"c","status":"0123456789012345678901234567890123"}"#,
            r#"{"type":"presence","channel":"c","status":7}"#,
        ] {
            assert!(parse_client_message(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nesting_is_bounded_outside_strings_only() {
        let nested = |depth: usize| {
            format!(
                r#"{{"type":"x","a":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // The object itself is one level.
        assert!(parse_client_message(&nested(MAX_NESTING - 1)).is_ok());
        let refused = parse_client_message(&nested(MAX_NESTING)).unwrap_err();
        assert!(refused.0.contains("nest"), "{refused:?}");
        let in_string = format!(
            r#"{{"type":"x","a":"{}\\\"{}"}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(
            parse_client_message(&in_string).is_ok(),
            "brackets in a string"
        );
    }

    #[test]
    fn error_message_shape() {
        let v = json(&error("invalid_message", "bad \"thing\""));
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["code"], "invalid_message");
        assert_eq!(v["error"]["message"], "bad \"thing\"");
    }
}
