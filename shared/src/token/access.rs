//! Access tokens: EdDSA-signed JWTs (`typ: at+jwt`, RFC 9068 profile).
//!
//! Threat model: anyone can hand us a token. Verification therefore pins the
//! algorithm to EdDSA (no `none`, no HS256 key confusion, no RS/ES), looks the
//! key up only by `kid` among keys we were given (never `jku`, `x5u` or an
//! embedded `jwk`: a token carrying those is refused outright, as is any
//! `crit`), requires `exp`, `iss`, `aud` and `sub`, allows 30 s of clock skew,
//! refuses an `iat` in the future and a token over 8 KiB before decoding it.
//! Times are checked against the injected clock, not the system's.

use std::{collections::HashMap, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    db::Timestamp,
    error::{Error, Reason},
    identity::Identity,
    policy::Role,
};

pub const ISSUER: &str = "docverify-auth";
pub const AUDIENCE: &str = "docverify";
pub const TOKEN_TYPE: &str = "at+jwt";
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub email: String,
    pub roles: Vec<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// The user's token generation when the token was issued; revoking a
    /// user's tokens bumps it (see `ValidateToken`).
    pub tgen: i64,
    /// The session (refresh-token family) the token belongs to; absent for
    /// a service token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AccessClaims {
    /// The identity these (verified) claims stand for.
    pub fn identity(&self) -> Result<Identity, TokenError> {
        let user_id = Uuid::parse_str(&self.sub).map_err(|_| TokenError::Claims)?;
        let roles = self
            .roles
            .iter()
            .map(|r| r.parse::<Role>().map_err(|_| TokenError::Claims))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Identity::new(user_id, self.email.clone(), roles)
            .in_session(self.session_id()?)
            .of_generation(self.tgen))
    }

    /// The session (`sid`) the token belongs to, if any.
    pub fn session_id(&self) -> Result<Option<Uuid>, TokenError> {
        self.sid
            .as_deref()
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| TokenError::Claims)
    }
}

/// Why a token was refused. Never sent to the client in detail: every
/// variant answers the same UNAUTHENTICATED message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("header not allowed")]
    Header,
    #[error("unknown key id")]
    UnknownKey,
    #[error("bad signature or claims")]
    Signature,
    #[error("bad claims")]
    Claims,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    /// Its user, session or generation was revoked.
    #[error("token revoked")]
    Revoked,
}

/// The one answer to any refused access token, whatever the reason.
pub const INVALID_TOKEN: Error = Error::Unauthenticated {
    reason: Reason::InvalidToken,
    message: "invalid or expired access token",
};

impl From<TokenError> for Error {
    fn from(_: TokenError) -> Self {
        INVALID_TOKEN
    }
}

/// The header fields we accept; anything else is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

/// Public keys that verify tokens, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Arc<HashMap<String, DecodingKey>>,
    validation: Arc<Validation>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// From `(kid, raw 32-byte Ed25519 public key)` pairs.
    pub fn new<'a>(keys: impl IntoIterator<Item = (String, &'a [u8])>) -> Self {
        let keys = keys
            .into_iter()
            .filter(|(_, raw)| raw.len() == 32)
            .map(|(kid, raw)| (kid, DecodingKey::from_ed_der(raw)))
            .collect();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // Times are checked below against our clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Self {
            keys: Arc::new(keys),
            validation: Arc::new(validation),
        }
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` at time `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        let kid = token_kid(token)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|_| TokenError::Signature)?
            .claims;
        let now = now.unix_seconds();
        let leeway = LEEWAY.as_secs() as i64;
        if claims.exp <= now - leeway {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + leeway || claims.iat > now + leeway {
            return Err(TokenError::NotYetValid);
        }
        Uuid::parse_str(&claims.sub).map_err(|_| TokenError::Claims)?;
        Ok(claims)
    }
}

/// Checks the header (size, algorithm, type, no key-fetching fields) and
/// returns the `kid`, without looking at the signature.
pub fn token_kid(token: &str) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let header = token.split('.').next().ok_or(TokenError::Malformed)?;
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    // deny_unknown_fields refuses crit, jku, x5u, jwk, x5c and the rest.
    let header: Header = serde_json::from_slice(&header).map_err(|_| TokenError::Header)?;
    if header.alg != "EdDSA" {
        return Err(TokenError::Header);
    }
    if !header.typ.is_some_and(|t| {
        t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
    }) {
        return Err(TokenError::Header);
    }
    header.kid.ok_or(TokenError::Header)
}

/// Tokens already verified, with what their verification produced, until
/// they expire: a client sends the same token many times, and an Ed25519
/// check costs far more than a lookup. Bounded: emptied when full.
#[derive(Debug)]
pub struct VerifiedTokens<T> {
    map: std::sync::RwLock<HashMap<String, (T, i64)>>,
}

const VERIFIED_CAPACITY: usize = 10_000;

impl<T: Clone> Default for VerifiedTokens<T> {
    fn default() -> Self {
        Self {
            map: std::sync::RwLock::new(HashMap::new()),
        }
    }
}

impl<T: Clone> VerifiedTokens<T> {
    /// What `token` verified to, if it did and has not expired since.
    pub fn get(&self, token: &str, now: Timestamp) -> Option<T> {
        let map = self.map.read().ok()?;
        let (value, exp) = map.get(token)?;
        (*exp > now.unix_seconds() - LEEWAY.as_secs() as i64).then(|| value.clone())
    }

    pub fn put(&self, token: &str, value: T, exp: i64) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
            map.insert(token.to_owned(), (value, exp));
        }
    }
}
