//! What every auth-service handler shares.

use std::{sync::Arc, time::Duration};

use shared::{
    Result,
    clock::Clock,
    db::Db,
    page::PageTokens,
    token::{AccessClaims, VerifiedTokens},
};

use crate::{config::Config, password::Hasher, token::keys::SigningKeys};

#[derive(Debug)]
pub(crate) struct State {
    pub db: Db,
    pub clock: Clock,
    pub keys: Arc<SigningKeys>,
    pub hasher: Hasher,
    pub page_tokens: PageTokens,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Failed logins per client address, across emails.
    pub address_policy: crate::throttle::Policy,
    /// Signature checks already made; the user's state is checked anew
    /// every time.
    pub verified_tokens: VerifiedTokens<AccessClaims>,
}

impl State {
    pub(crate) async fn build(config: &Config, db: Db) -> Result<Self> {
        let now = config.clock.now();
        let keys = Arc::new(SigningKeys::load(&config.signing_key_files, &db, now).await?);
        let workers = config
            .argon2_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let hasher = Hasher::new(workers, config.argon2_queue_limit).await?;
        let page_tokens = PageTokens::new(&db.secret("page_tokens", now).await?);
        Ok(Self {
            db,
            clock: config.clock.clone(),
            keys,
            hasher,
            page_tokens,
            access_ttl: config.access_token_ttl,
            refresh_ttl: config.refresh_token_ttl,
            address_policy: crate::throttle::address_policy(
                config.address_max_failures,
                config.address_max_lock,
            ),
            verified_tokens: VerifiedTokens::default(),
        })
    }
}
