//! Access tokens, everywhere they are handled. A map:
//!
//! | concept | where |
//! |---|---|
//! | the format (claims, `typ`, limits) and the checks every verifier makes | [`access`] |
//! | how a service turns a bearer token into an identity (local keys, remote `ValidateToken`) | [`verifier`] |
//! | signing keys: generated, stored, rotated, published | `auth-service/src/token/keys.rs` |
//! | minting an access token for a user | `auth-service/src/token/mint.rs` |
//! | auth-service's own verifier (signature, then the user's current state) | `auth-service/src/token/verifier.rs` |
//! | refresh tokens: families, rotation, reuse detection | `auth-service/src/token/refresh.rs` |

mod access;
mod verifier;

pub use access::{
    AUDIENCE, AccessClaims, INVALID_TOKEN, ISSUER, KeySet, LEEWAY, MAX_TOKEN_BYTES, TOKEN_TYPE,
    TokenError, VerifiedTokens, token_kid,
};
pub use verifier::{BoxFuture, JwksVerifier, RemoteVerifier, TokenVerifier};

/// RFC 8410 PKCS#8 prefix of an Ed25519 private key; the 32-byte seed
/// follows. Both services' key files are in this form.
pub const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
