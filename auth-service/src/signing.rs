//! The Ed25519 keys that sign access tokens.
//!
//! Configured PEM files take precedence (the first signs, the rest only
//! verify, so a key rotates by prepending the new one and dropping the old
//! one after a token lifetime). Without them a key is generated on first start
//! and kept in the database, so a restart, or another replica, keeps issued
//! tokens valid. Only public parts ever leave this module.

use std::path::PathBuf;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};
use shared::{
    Error, Result,
    db::{Db, Timestamp},
    on_dialect,
    proto::auth::v1::{ListSigningKeysResponse, SigningKey},
    token::{AccessClaims, KeySet, TOKEN_TYPE},
};

/// RFC 8410 PKCS#8 prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

struct Key {
    kid: String,
    private: EncodingKey,
    public: [u8; 32],
    jwk: Jwk,
}

pub struct SigningKeys {
    keys: Vec<Key>,
    verify: KeySet,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SigningKeys {
    pub async fn load(files: &[PathBuf], db: &Db, now: Timestamp) -> Result<Self> {
        let keys = if files.is_empty() {
            stored_keys(db, now).await?
        } else {
            files
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
                .collect::<Result<Vec<_>>>()?
        };
        let verify = KeySet::new(keys.iter().map(|k| (k.kid.clone(), &k.public[..])));
        Ok(Self { keys, verify })
    }

    pub fn key_set(&self) -> &KeySet {
        &self.verify
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String> {
        let key = self
            .keys
            .first()
            .ok_or_else(|| Error::internal("no signing key"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.private).map_err(Error::internal)
    }

    pub fn to_proto(&self) -> Result<ListSigningKeysResponse> {
        let set = JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        Ok(ListSigningKeysResponse {
            keys: self
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

/// The keys kept in the database, generating the first one when there is
/// none. Replicas that start together may each add one; all are published
/// and the oldest signs, so they agree.
async fn stored_keys(db: &Db, now: Timestamp) -> Result<Vec<Key>> {
    let select = "SELECT private_key FROM signing_keys ORDER BY created_at, kid";
    let mut rows: Vec<Vec<u8>> =
        on_dialect!(db.reader(), p => sqlx::query_scalar(select).fetch_all(p).await?);
    if rows.is_empty() {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(Error::internal)?;
        der.extend_from_slice(&seed);
        let key = Key::new(EncodingKey::from_ed_der(&der))?;
        let insert = "INSERT INTO signing_keys (kid, private_key, created_at) VALUES ($1, $2, $3) \
                      ON CONFLICT (kid) DO NOTHING";
        on_dialect!(db.writer(), p => {
            sqlx::query(insert).bind(&key.kid).bind(&der).bind(now).execute(p).await?;
        });
        tracing::info!(kid = %key.kid, "generated a new token signing key");
        rows = on_dialect!(db.writer(), p => sqlx::query_scalar(select).fetch_all(p).await?);
    }
    rows.iter()
        .map(|der| Key::new(EncodingKey::from_ed_der(der)))
        .collect()
}
