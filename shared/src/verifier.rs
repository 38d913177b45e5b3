//! How the layer turns a bearer token into an [`Identity`]. Each service
//! plugs in the verifier that suits it: auth-service checks its own keys and
//! the user's current state; document-service verifies locally with the
//! published keys or asks auth-service.

use std::{future::Future, pin::Pin};

use crate::{error::Result, identity::Identity};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait TokenVerifier: Send + Sync + 'static {
    /// The identity `token` stands for, or UNAUTHENTICATED (UNAVAILABLE when
    /// the verifier cannot decide yet, for example before it has keys).
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity>>;
}
