//! Who a client is and what it may subscribe to: JWTs verified in the core, or a host
//! authorizer that is asked on connect and on subscribe, off the I/O threads, with a
//! timeout. Replies are matched by request id, so a host may answer at once from the
//! callback or later from any thread (a JS main thread, a Go goroutine).

pub(crate) mod jwt;
mod jwt_ring;
pub(crate) mod patterns;
mod public_key;

use crate::config::AuthConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol;
use jwt::JwtVerifier;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// A question for the host authorizer. Answer it with `Server::authorize_reply(id, …)`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum AuthRequest {
    /// A client completed the WebSocket handshake.
    Connect {
        id: u64,
        /// From `?token=` or `Authorization: Bearer`.
        token: Option<String>,
        /// The `sub` of the token, when Herald verified it as a JWT.
        token_user_id: Option<String>,
        query: BTreeMap<String, String>,
        /// Request headers, names in lower case.
        headers: BTreeMap<String, String>,
        origin: Option<String>,
        remote_addr: String,
        /// The core denies the request if it is not answered within this many ms
        /// (`auth.authorizer_timeout_ms`), so a binding need not know the default.
        timeout_ms: u64,
    },
    /// A client asked for a channel that neither its token nor the config allows, to
    /// subscribe to it or (for a session) to cancel one of its jobs.
    Subscribe {
        id: u64,
        client_id: String,
        user_id: Option<String>,
        channel: String,
        /// What it asked: `subscribe`, `presence` (to see who is in the channel,
        /// without subscribing: allowing it does not subscribe the client), or `cancel`
        /// (a client's request to cancel a job).
        action: AuthAction,
        /// As for `connect`: the core denies it if not answered within this many ms.
        timeout_ms: u64,
    },
}

impl AuthRequest {
    pub fn id(&self) -> u64 {
        match self {
            AuthRequest::Connect { id, .. } | AuthRequest::Subscribe { id, .. } => *id,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("requests always serialize")
    }
}

/// What a client wants to do with a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthAction {
    Subscribe,
    Presence,
    Cancel,
}

/// The host's answer. On connect, `userId` names the user (channel `user:<id>`) and
/// `channels` lists patterns the client may subscribe to without asking again.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthDecision {
    pub allow: bool,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl AuthDecision {
    pub fn allow() -> Self {
        AuthDecision {
            allow: true,
            ..Default::default()
        }
    }

    pub fn deny(reason: impl Into<String>) -> Self {
        AuthDecision {
            allow: false,
            reason: Some(reason.into()),
            ..Default::default()
        }
    }

    /// Parses `{"allow":bool,"userId"?:string,"channels"?:[string],"reason"?:string}`.
    pub fn from_json(json: &str) -> Result<Self> {
        let invalid =
            |why: String| Error::new(ErrorKind::InvalidJson, format!("invalid decision: {why}"));
        if !json.trim_start().starts_with('{') {
            return Err(invalid("must be a JSON object".into()));
        }
        let decision: AuthDecision =
            serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        if let Some(user) = &decision.user_id {
            protocol::check_name("userId", user).map_err(|e| invalid(e.message().to_string()))?;
        }
        Ok(decision)
    }
}

/// Called with each request on a Herald worker thread that is never an I/O thread.
pub type Authorizer = Arc<dyn Fn(&AuthRequest) + Send + Sync>;

/// What the handshake carried, for authentication.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    pub token: Option<String>,
    pub query_user_id: Option<String>,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub origin: Option<String>,
}

/// Who a connected client is.
#[derive(Debug, Default, Clone)]
pub(crate) struct Identity {
    pub user_id: Option<String>,
    /// Channel patterns granted by the token or the authorizer.
    pub grants: Vec<String>,
}

thread_local! {
    /// Set while this thread runs the host authorizer, so a stop called from inside it
    /// does not wait for itself.
    static IN_AUTHORIZER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on a thread that is running the host authorizer right now.
pub(crate) fn on_authorizer_thread() -> bool {
    IN_AUTHORIZER.with(std::cell::Cell::get)
}

/// Authorizer calls under way, so a stop can wait for them.
#[derive(Default)]
pub(crate) struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    finished: tokio::sync::Notify,
}

impl InFlight {
    /// Waits until at most `allowed` calls are running.
    pub async fn settle(&self, allowed: usize) {
        loop {
            let finished = self.finished.notified();
            if self.count.load(Ordering::SeqCst) <= allowed {
                return;
            }
            finished.await;
        }
    }
}

/// Marks one authorizer call, even if the host's callback panics.
struct Running(Arc<InFlight>);

impl Drop for Running {
    fn drop(&mut self) {
        IN_AUTHORIZER.with(|flag| flag.set(false));
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.finished.notify_waiters();
    }
}

pub(crate) struct AuthGate {
    pub in_flight: Arc<InFlight>,
    config: AuthConfig,
    jwt: Option<JwtVerifier>,
    authorizer: RwLock<Option<Authorizer>>,
    /// Set under the authorizer's write lock once the server stopped.
    closed: AtomicBool,
    pending: Mutex<HashMap<u64, oneshot::Sender<AuthDecision>>>,
    next_id: AtomicU64,
}

impl AuthGate {
    pub fn new(config: &AuthConfig) -> Result<AuthGate> {
        Ok(AuthGate {
            jwt: JwtVerifier::from_config(config)?,
            config: config.clone(),
            authorizer: RwLock::new(None),
            closed: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            in_flight: Arc::default(),
        })
    }

    fn authorizer(&self) -> Option<Authorizer> {
        self.authorizer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs or clears the authorizer. The one replaced goes outside the lock: calls
    /// under way hold their own reference, so what it owns is released after its last call.
    pub fn set_authorizer(&self, authorizer: Option<Authorizer>) {
        let replaced = {
            let mut slot = self.authorizer.write().unwrap_or_else(|p| p.into_inner());
            if self.closed.load(Ordering::SeqCst) {
                authorizer
            } else {
                std::mem::replace(&mut *slot, authorizer)
            }
        };
        drop(replaced);
    }

    /// Drops the authorizer for good (the server stopped); later installs are refused.
    pub fn close(&self) {
        let replaced = {
            let mut slot = self.authorizer.write().unwrap_or_else(|p| p.into_inner());
            self.closed.store(true, Ordering::SeqCst);
            slot.take()
        };
        drop(replaced);
    }

    /// Channel rules apply as soon as any way to authenticate is configured.
    pub fn enforces_rules(&self) -> bool {
        self.config.required || self.jwt.is_some() || self.authorizer().is_some()
    }

    /// Establishes who the client is, or why it may not connect.
    pub async fn connect(
        &self,
        creds: &Credentials,
        remote: &str,
    ) -> std::result::Result<Identity, String> {
        if !self.enforces_rules() {
            // Open mode (development): the client says who it is.
            return Ok(Identity {
                user_id: creds.query_user_id.clone(),
                grants: Vec::new(),
            });
        }
        let mut identity = None;
        if let (Some(token), Some(jwt)) = (&creds.token, &self.jwt) {
            let grant = jwt.verify(token)?;
            identity = Some(Identity {
                user_id: Some(grant.user_id),
                grants: grant.channels,
            });
        }
        if let Some(authorizer) = self.authorizer() {
            let token_user_id = identity.as_ref().and_then(|i| i.user_id.clone());
            let decision = self
                .ask(authorizer, |id| AuthRequest::Connect {
                    id,
                    token: creds.token.clone(),
                    token_user_id,
                    query: creds.query.clone(),
                    headers: creds.headers.clone(),
                    origin: creds.origin.clone(),
                    remote_addr: remote.to_string(),
                    timeout_ms: self.config.authorizer_timeout_ms,
                })
                .await;
            if !decision.allow {
                return Err(decision
                    .reason
                    .unwrap_or_else(|| "denied by the authorizer".into()));
            }
            let mut granted = identity.take().unwrap_or_default();
            if decision.user_id.is_some() {
                granted.user_id = decision.user_id;
            }
            granted.grants.extend(decision.channels);
            identity = Some(granted);
        }
        match identity {
            Some(identity) => Ok(identity),
            None if self.config.required => Err(if creds.token.is_some() {
                "token given but no JWT key is configured".into()
            } else {
                "no token".into()
            }),
            None => Ok(Identity::default()),
        }
    }

    /// Whether a client may subscribe to `channel`; asks the authorizer as a last resort.
    pub async fn may_subscribe(
        &self,
        client_id: &str,
        user_id: Option<&str>,
        grants: &[String],
        channel: &str,
    ) -> bool {
        self.may(AuthAction::Subscribe, client_id, user_id, grants, channel)
            .await
    }

    /// Whether a client may do `action` with `channel`: the rules of a subscribe, the
    /// authorizer told which action it is deciding.
    pub async fn may(
        &self,
        action: AuthAction,
        client_id: &str,
        user_id: Option<&str>,
        grants: &[String],
        channel: &str,
    ) -> bool {
        if !self.enforces_rules() {
            return true;
        }
        if let Some(user) = user_id {
            if channel == protocol::user_channel(user) {
                return true;
            }
        }
        if channel.starts_with("user:") {
            return false; // another user's channel: never
        }
        if patterns::any_match(grants, channel)
            || patterns::any_match(&self.config.public_channels, channel)
        {
            return true;
        }
        match self.authorizer() {
            Some(authorizer) => {
                self.ask(authorizer, |id| AuthRequest::Subscribe {
                    id,
                    client_id: client_id.to_string(),
                    user_id: user_id.map(str::to_string),
                    channel: channel.to_string(),
                    action,
                    timeout_ms: self.config.authorizer_timeout_ms,
                })
                .await
                .allow
            }
            None => false,
        }
    }

    async fn ask(
        &self,
        authorizer: Authorizer,
        request: impl FnOnce(u64) -> AuthRequest,
    ) -> AuthDecision {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, decision) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, reply);
        let request = request(id);
        // A host callback may block or panic; neither may touch an I/O thread.
        self.in_flight.count.fetch_add(1, Ordering::SeqCst);
        let running = Running(Arc::clone(&self.in_flight));
        tokio::task::spawn_blocking(move || {
            IN_AUTHORIZER.with(|flag| flag.set(true));
            authorizer(&request);
            // This call's reference goes before the call counts as finished, so a stop
            // that waited for it has also seen what the authorizer owns released.
            drop(authorizer);
            drop(running);
        });
        let timeout = Duration::from_millis(self.config.authorizer_timeout_ms);
        let decision = match tokio::time::timeout(timeout, decision).await {
            Ok(Ok(decision)) => decision,
            Ok(Err(_)) => AuthDecision::deny("the authorizer dropped the request"),
            Err(_) => AuthDecision::deny("the authorizer did not answer in time"),
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        decision
    }

    /// Delivers the host's answer to a pending request.
    pub fn reply(&self, id: u64, decision: AuthDecision) -> Result<()> {
        let waiting = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match waiting {
            Some(reply) => {
                let _ = reply.send(decision);
                Ok(())
            }
            None => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("no pending authorization request {id} (answered or timed out)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_must_be_well_formed_objects() {
        let d = AuthDecision::from_json(r#"{"allow":true,"userId":"u","channels":["session:*"]}"#)
            .unwrap();
        assert_eq!(
            (d.allow, d.user_id.as_deref(), d.channels.len()),
            (true, Some("u"), 1)
        );
        for bad in [
            r#"[true,null,[],null]"#,
            r#"{"allow":true,"userId":""}"#,
            "{\"allow\":true,\"userId\":\"a\\nb\"}",
            r#"{"allow":1}"#,
            r#"{"allow":true,"extra":1}"#,
        ] {
            assert_eq!(
                AuthDecision::from_json(bad).unwrap_err().kind(),
                ErrorKind::InvalidJson,
                "{bad}"
            );
        }
    }
}
