//! JWT verification: HS256 with a secret, RS256 or ES256 with a PEM public key.
//! The token's algorithm must match a configured key: no algorithm confusion.
//! jsonwebtoken checks the token; its signatures are computed by ring (`jwt_ring.rs`).

use super::{jwt_ring, public_key};
use crate::config::AuthConfig;
use crate::error::{Error, ErrorKind, Result};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grant {
    pub user_id: String,
    pub channels: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    channels: Vec<String>,
}

/// Makes ring jsonwebtoken's process-wide crypto provider, unless another provider was
/// installed first (that one then checks Herald's tokens too). A server with a JWT key
/// does this when it starts; call it before that only to sign tokens with jsonwebtoken in
/// the same process. True when ring's provider is the one in use.
pub fn install_jwt_crypto_provider() -> bool {
    match jwt_ring::PROVIDER.install_default() {
        Ok(()) => true,
        Err(installed) => std::ptr::eq(installed, &jwt_ring::PROVIDER),
    }
}

pub(crate) struct JwtVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    validation: Validation,
}

impl JwtVerifier {
    /// Builds a verifier from the config; `None` when no key is configured.
    pub fn from_config(auth: &AuthConfig) -> Result<Option<JwtVerifier>> {
        let invalid =
            |m: String| Error::new(ErrorKind::InvalidConfig, format!("invalid config: {m}"));
        let mut keys = Vec::new();
        if let Some(secret) = &auth.jwt_secret {
            if secret.len() < 16 {
                return Err(invalid("auth.jwt_secret must be at least 16 bytes".into()));
            }
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            ));
        }
        if let Some(pem) = &auth.jwt_public_key {
            let key = public_key::from_pem(pem)
                .map_err(|e| invalid(format!("auth.jwt_public_key: {e}")))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Ok(None);
        }
        install_jwt_crypto_provider();
        let mut validation = Validation::new(keys[0].0);
        validation.algorithms = keys.iter().map(|(alg, _)| *alg).collect();
        // A configured issuer or audience must be present in the token, not merely
        // right when present.
        let mut required = vec!["sub", "exp"];
        if auth.jwt_issuer.is_some() {
            required.push("iss");
        }
        if auth.jwt_audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = auth.jwt_leeway_s;
        validation.validate_nbf = true;
        if let Some(iss) = &auth.jwt_issuer {
            validation.set_issuer(&[iss]);
        }
        match &auth.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Some(JwtVerifier { keys, validation }))
    }

    /// Verifies signature, algorithm, `exp`, `nbf` (and `iss`/`aud` when configured).
    pub fn verify(&self, token: &str) -> std::result::Result<Grant, String> {
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let (alg, key) = self
            .keys
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .ok_or_else(|| format!("token algorithm {:?} is not accepted", header.alg))?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![*alg];
        // jsonwebtoken panics when it has no provider: only if its placeholder was fixed as
        // the default before any provider was installed. A client's token never crashes
        // its connection task.
        let decoded = std::panic::catch_unwind(|| decode::<Claims>(token, key, &validation))
            .map_err(|_| "token verification failed: jsonwebtoken has no crypto provider")?;
        let data = decoded.map_err(|e| format!("invalid token: {e}"))?;
        if data.claims.sub.is_empty() {
            return Err("token has an empty sub".into());
        }
        Ok(Grant {
            user_id: data.claims.sub,
            channels: data.claims.channels,
        })
    }
}
