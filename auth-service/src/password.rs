//! Password hashing (argon2id, m = 19456 KiB, t = 2, p = 1: the OWASP
//! minimum) on a bounded pool off the async runtime.
//!
//! Each hash is ~15 ms of pure CPU. On a runtime worker it would stall every
//! other RPC on that worker; so each one runs in `spawn_blocking`, and a
//! semaphore with one permit per core keeps a login storm from occupying more
//! threads than there are cores (the rest wait their turn, asynchronously).
//! Unknown emails are verified against a dummy hash so that their timing
//! matches a wrong password.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use shared::{Error, Result};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::fields::{Email, NewPassword};

/// zxcvbn score below which a password counts as commonly used or guessable
/// (3 = "safely unguessable": about 10^8 guesses and up).
const MIN_STRENGTH: u8 = 3;

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    dummy: Arc<str>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

impl Hasher {
    pub async fn new(workers: usize) -> Result<Self> {
        let permits = Arc::new(Semaphore::new(workers.max(1)));
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(Error::internal)?;
        let dummy = tokio::task::spawn_blocking(move || hash_blocking(&random))
            .await
            .map_err(Error::internal)??;
        Ok(Self {
            permits,
            dummy: dummy.into(),
        })
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let queue = &shared::metrics::METRICS.argon2_queue;
        queue.inc();
        let permit = self.permits.clone().acquire_owned().await;
        queue.dec();
        let permit = permit.map_err(Error::internal)?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .in_current_span()
        .await
        .map_err(Error::internal)
    }

    pub async fn hash(&self, password: &NewPassword) -> Result<String> {
        let password = password.expose().to_owned();
        self.run(move || hash_blocking(password.as_bytes())).await?
    }

    /// Whether `password` matches `phc`; with no stored hash (unknown email)
    /// the dummy hash is checked instead and the answer is always false.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        let matched = self
            .run(move || {
                Argon2::default()
                    .verify_password(password.as_bytes(), phc.as_str())
                    .is_ok()
            })
            .await?;
        Ok(known && matched)
    }

    /// Refuses commonly used or easily guessed passwords (zxcvbn's
    /// dictionaries of common passwords, names and words, plus the user's
    /// own email and name).
    pub async fn check_strength(
        &self,
        field: &'static str,
        password: &NewPassword,
        email: &Email,
        display_name: &str,
    ) -> Result<()> {
        let password = password.expose().to_owned();
        let inputs = [
            email.as_str().to_owned(),
            email
                .as_str()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned(),
            display_name.to_owned(),
        ];
        let score = self
            .run(move || {
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                u8::from(zxcvbn::zxcvbn(&password, &inputs).score())
            })
            .await?;
        if score < MIN_STRENGTH {
            return Err(Error::invalid(
                field,
                "is too common or too easy to guess; a longer passphrase of unrelated words works well",
            ));
        }
        Ok(())
    }
}

fn hash_blocking(password: &[u8]) -> Result<String> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(e.to_string()))
}
