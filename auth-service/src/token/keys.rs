//! The Ed25519 keys that sign access tokens.
//!
//! Configured PEM files take precedence (the first signs, the rest only
//! verify, so a key rotates by prepending the new one and dropping the old
//! one after a token lifetime). Without them a key is generated on first start
//! and kept in the database, so a restart, or another replica, keeps issued
//! tokens valid. Only public parts ever leave this module.
//!
//! Replicas that start together on an empty database must not each invent a
//! key: the first key is generated under the start-up lock (see
//! [`shared::db::Tx::lock_startup`]), so every replica reads back the same
//! one. Stored keys are read again periodically and when a token names a
//! `kid` this replica does not know, so a key that another replica (or an
//! operator) added is served and accepted by all within the reload interval.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};
use shared::{
    Error, Result,
    db::{Db, StartupLock, Timestamp},
    metrics::{KeyFetch, METRICS},
    on_dialect,
    proto::auth::v1::{ListSigningKeysResponse, SigningKey},
    token::{AccessClaims, KeySet, PKCS8_ED25519_PREFIX, TOKEN_TYPE, TokenError},
};

use crate::SERVICE;

struct Key {
    kid: String,
    private: EncodingKey,
    public: [u8; 32],
    jwk: Jwk,
}

/// One loaded generation of keys: the first signs, all verify.
struct Loaded {
    keys: Vec<Key>,
    verify: KeySet,
}

impl Loaded {
    fn new(keys: Vec<Key>) -> Self {
        let verify = KeySet::new(keys.iter().map(|k| (k.kid.clone(), &k.public[..])));
        Self { keys, verify }
    }

    fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }
}

pub(crate) struct SigningKeys {
    loaded: RwLock<Arc<Loaded>>,
    /// Keys from the database are reloaded; configured files are fixed.
    db: Option<Db>,
    /// When a token's unknown `kid` last made us reload.
    last_unknown_kid: Mutex<Option<Instant>>,
}

/// A token naming an unknown `kid` reloads the keys at most this often, so
/// junk tokens cannot turn into a flood of queries.
const UNKNOWN_KID_RELOAD: Duration = Duration::from_secs(5);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kids", &self.current().kids())
            .finish()
    }
}

impl SigningKeys {
    pub(crate) async fn load(files: &[PathBuf], db: &Db, now: Timestamp) -> Result<Self> {
        let (keys, db) = if files.is_empty() {
            (stored_keys(db, now).await?, Some(db.clone()))
        } else {
            let keys = files
                .iter()
                .map(|path| {
                    let pem = std::fs::read(path).map_err(|e| {
                        Error::internal(format!("AUTH_SIGNING_KEY_FILE {}: {e}", path.display()))
                    })?;
                    let key = EncodingKey::from_ed_pem(&pem).map_err(|e| {
                        Error::internal(format!(
                            "AUTH_SIGNING_KEY_FILE {}: not an Ed25519 PKCS#8 PEM key: {e}",
                            path.display()
                        ))
                    })?;
                    Key::new(key)
                })
                .collect::<Result<Vec<_>>>()?;
            (keys, None)
        };
        Ok(Self {
            loaded: RwLock::new(Arc::new(Loaded::new(keys))),
            db,
            last_unknown_kid: Mutex::new(None),
        })
    }

    fn current(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(loaded) => loaded.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the stored keys again (a no-op for configured files).
    pub(crate) async fn reload(&self) -> Result<()> {
        let Some(db) = &self.db else { return Ok(()) };
        let keys = read_keys(db).await?;
        if keys.is_empty() {
            return Err(Error::internal("the signing_keys table is empty"));
        }
        let fresh = Loaded::new(keys);
        if fresh.kids() != self.current().kids() {
            tracing::info!(kids = ?fresh.kids(), "signing keys reloaded");
            if let Ok(mut loaded) = self.loaded.write() {
                *loaded = Arc::new(fresh);
            }
        }
        Ok(())
    }

    /// Reloads every `every` until the task is aborted.
    pub(crate) fn spawn_reload(
        self: &Arc<Self>,
        every: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.db.as_ref()?;
        let keys = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(keys) = keys.upgrade() else { return };
                METRICS.key_fetch(SERVICE.name, KeyFetch::Refresh);
                if let Err(e) = keys.reload().await {
                    tracing::warn!(error = %e, "cannot reload signing keys; keeping the ones we have");
                }
            }
        }))
    }

    /// Verifies `token`; a `kid` this replica does not know reloads the keys
    /// first (rate-limited), in case another replica added it.
    pub(crate) async fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims> {
        let loaded = self.current();
        match loaded.verify.verify(token, now) {
            Err(TokenError::UnknownKey) if self.may_reload_for_unknown_kid() => {
                METRICS.key_fetch(SERVICE.name, KeyFetch::UnknownKid);
                if let Err(e) = self.reload().await {
                    tracing::warn!(error = %e, "reload for an unknown key id failed");
                }
                Ok(self.current().verify.verify(token, now)?)
            }
            other => Ok(other?),
        }
    }

    /// At most one reload per [`UNKNOWN_KID_RELOAD`] for unknown `kid`s.
    fn may_reload_for_unknown_kid(&self) -> bool {
        let Ok(mut last) = self.last_unknown_kid.lock() else {
            return false;
        };
        if self.db.is_none() || last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_RELOAD) {
            return false;
        }
        *last = Some(shared::clock::monotonic());
        true
    }

    pub(crate) fn sign(&self, claims: &AccessClaims) -> Result<String> {
        let loaded = self.current();
        let key = loaded
            .keys
            .first()
            .ok_or_else(|| Error::internal("no signing key"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.private).map_err(Error::internal)
    }

    pub(crate) fn to_proto(&self) -> Result<ListSigningKeysResponse> {
        let loaded = self.current();
        let set = JwkSet {
            keys: loaded.keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        Ok(ListSigningKeysResponse {
            keys: loaded
                .keys
                .iter()
                .map(|k| SigningKey {
                    kid: k.kid.clone(),
                    algorithm: "EdDSA".to_owned(),
                    public_key: k.public.to_vec(),
                })
                .collect(),
            jwks_json: serde_json::to_string(&set).map_err(Error::internal)?,
        })
    }
}

impl Key {
    fn new(private: EncodingKey) -> Result<Self> {
        let mut jwk =
            Jwk::from_encoding_key(&private, Algorithm::EdDSA).map_err(Error::internal)?;
        let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
            return Err(Error::internal("signing key is not Ed25519"));
        };
        let public: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&params.x)
            .map_err(Error::internal)?
            .try_into()
            .map_err(|_| Error::internal("Ed25519 public key is not 32 bytes"))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(Error::internal)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        Ok(Self {
            kid,
            private,
            public,
            jwk,
        })
    }
}

const SELECT_KEYS: &str = "SELECT private_key FROM signing_keys ORDER BY created_at, kid";

async fn read_keys(db: &Db) -> Result<Vec<Key>> {
    let rows: Vec<Vec<u8>> =
        on_dialect!(db.reader(), p => sqlx::query_scalar(SELECT_KEYS).fetch_all(p).await?);
    rows.iter()
        .map(|der| Key::new(EncodingKey::from_ed_der(der)))
        .collect()
}

/// The keys kept in the database, generating the first one when there is
/// none: under the start-up lock, so replicas starting together on an empty
/// database agree on one key.
async fn stored_keys(db: &Db, now: Timestamp) -> Result<Vec<Key>> {
    let mut tx = db.begin().await?;
    tx.lock_startup(StartupLock::SigningKeys).await?;
    let rows: Vec<Vec<u8>> =
        on_dialect!(tx.conn(), c => sqlx::query_scalar(SELECT_KEYS).fetch_all(c).await?);
    if !rows.is_empty() {
        tx.commit().await?;
        return rows
            .iter()
            .map(|der| Key::new(EncodingKey::from_ed_der(der)))
            .collect();
    }
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(Error::internal)?;
    der.extend_from_slice(&seed);
    let key = Key::new(EncodingKey::from_ed_der(&der))?;
    let insert = "INSERT INTO signing_keys (kid, private_key, created_at) VALUES ($1, $2, $3)";
    on_dialect!(tx.conn(), c => sqlx::query(insert)
        .bind(&key.kid)
        .bind(&der)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))?;
    tx.commit().await?;
    tracing::info!(kid = %key.kid, "generated a new token signing key");
    Ok(vec![key])
}
