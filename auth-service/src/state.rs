//! What every auth-service handler shares.

use std::{sync::Arc, time::Duration};

use shared::{
    Result,
    clock::Clock,
    db::Db,
    page::PageTokens,
    token::{AccessClaims, VerifiedTokens},
};

use shared::revocation::Revocations;
use tokio::sync::Notify;

use crate::{config::Config, password::Hasher, token::keys::SigningKeys, user_cache::UserCache};

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
    /// The revocation facts, kept up to date from the log.
    pub revocations: Arc<Revocations>,
    /// Wakes the log's poller after a change committed here.
    pub revocation_poke: Arc<Notify>,
    pub revocation_poll_interval: Duration,
    /// Beyond this, token checks read the database instead of `revocations`.
    pub revocation_max_staleness: Duration,
    pub users_cache: UserCache,
    /// Set when shutdown begins: the feed's streams end at once instead of
    /// holding the drain.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

impl State {
    pub(crate) async fn build(config: &Config, db: Db) -> Result<Self> {
        let now = config.clock.now();
        if config.revocation_retention < config.access_token_ttl + shared::token::LEEWAY {
            return Err(shared::Error::invalid(
                "REVOCATION_RETENTION",
                "must be at least ACCESS_TOKEN_TTL plus 30 s, or a revoked token could outlive its fact",
            ));
        }
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
            revocations: Arc::default(),
            revocation_poke: Arc::default(),
            revocation_poll_interval: config.revocation_poll_interval,
            revocation_max_staleness: config.revocation_max_staleness,
            users_cache: UserCache::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }
}
