//! auth-service's side of tokens (the format and the verifiers every
//! service uses are in `shared::token`, whose map lists all of them):
//!
//! - [`keys`]: the Ed25519 signing keys: loaded, generated, reloaded, published.
//! - [`mint`]: the session a login or refresh hands out (access token and
//!   refresh token).
//! - [`verifier`]: the signature check, then the user's current state.
//! - [`refresh`]: refresh token families: rotation, reuse detection, revocation.

pub(crate) mod keys;
pub(crate) mod mint;
pub(crate) mod refresh;
pub(crate) mod verifier;
