//! Starts the real auth-service on port 0 with a fresh database and talks to
//! it through real tonic clients (both test suites use it: document-service
//! needs an auth-service to issue its tokens).

use std::net::SocketAddr;

use base64::{Engine, engine::general_purpose::STANDARD};
use clap::Parser;
use jsonwebtoken::{
    EncodingKey,
    jwk::{Jwk, ThumbprintHash},
};
use shared::{
    clock::{Clock, ManualClock},
    proto::{
        audit::v1::{AuditEvent, audit_service_client::AuditServiceClient},
        auth::v1::{
            self as pb, auth_service_client::AuthServiceClient,
            user_service_client::UserServiceClient,
        },
    },
};
use tokio::net::TcpListener;
use tonic::{Status, transport::Channel};

use crate::{Served, TestDb, audit_events, bearer, connect_when_ready, verified_log};

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple admin";
pub const PASSWORD: &str = "quartz violin meadow lantern";

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: auth_service::Config,
}

/// auth-service's documented defaults (the environment ignored).
pub fn default_config() -> auth_service::Config {
    Args::parse_from(["auth-service"]).config
}

/// A signing key the test knows, to craft tokens the service must judge.
#[allow(missing_debug_implementations)] // holds a private key
pub struct TestKey {
    pub kid: String,
    pub key: EncodingKey,
    pub pem: String,
    /// PKCS#8 DER, as auth-service keeps generated keys.
    pub der: Vec<u8>,
}

impl TestKey {
    pub fn generate() -> Self {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        der.extend_from_slice(&seed);
        let key = EncodingKey::from_ed_der(&der);
        let jwk = Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::EdDSA).unwrap();
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(&der)
        );
        Self { kid, key, pem, der }
    }

    /// `claims` as an access token signed with this key, naming its `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

#[allow(missing_debug_implementations)] // a running server
pub struct TestApp {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub db: TestDb,
    pub key: TestKey,
    pub clock: ManualClock,
    served: Served,
    /// What it was started with, to start it again on the same database.
    config: auth_service::Config,
    _key_dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut auth_service::Config)) -> TestApp {
    spawn(TcpListener::bind("127.0.0.1:0").await.unwrap(), customize).await
}

/// auth-service on a chosen address (one that clients already point at).
pub async fn spawn_app_on(addr: SocketAddr) -> TestApp {
    spawn_app_on_with(addr, |_| {}).await
}

pub async fn spawn_app_on_with(
    addr: SocketAddr,
    customize: impl FnOnce(&mut auth_service::Config),
) -> TestApp {
    spawn(TcpListener::bind(addr).await.unwrap(), customize).await
}

async fn spawn(
    listener: TcpListener,
    customize: impl FnOnce(&mut auth_service::Config),
) -> TestApp {
    let db = TestDb::fresh("auth").await;
    let key = TestKey::generate();
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("signing.pem");
    std::fs::write(&key_path, &key.pem).unwrap();

    let (clock, handle) = Clock::manual(time::OffsetDateTime::now_utc());
    let mut config = default_config();
    config.database_url = db.url.clone();
    config.signing_key_files = vec![key_path];
    config.bootstrap_admin_email = Some(ADMIN_EMAIL.to_owned());
    config.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    config.argon2_workers = Some(2);
    config.clock = clock;
    // Tests call from one address far faster than any client should; the
    // limits' own tests turn them on.
    use shared::layer::limits::LimitSpec::Off;
    config.rate_limit_register = Off;
    config.rate_limit_login = Off;
    config.rate_limit_refresh_token = Off;
    config.rate_limit_logout = Off;
    config.rate_limit_validate_token = Off;
    config.address_max_failures = 1_000_000;
    customize(&mut config);
    // document-service's service account, as compose sets it up: one file
    // per database, so that replicas on one database share it.
    if config.bootstrap_service_credentials_file.is_none() {
        config.bootstrap_service_credentials_file = Some(credentials_path(&config.database_url));
    }
    let tls_configured = config.server.tls_cert_file.is_some();

    let addr = listener.local_addr().unwrap();
    let served = serve(config.clone(), listener);
    // A TLS server is waited for by its test, with its own client.
    let tls = tls_configured;
    let channel = if tls {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy()
    } else {
        connect_when_ready(addr).await
    };
    TestApp {
        addr,
        channel,
        db,
        key,
        clock: handle,
        served,
        config,
        _key_dir: key_dir,
    }
}

fn credentials_path(database_url: &str) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    database_url.hash(&mut hasher);
    std::env::temp_dir().join(format!(
        "docverify-test-credentials-{}-{:016x}",
        std::process::id(),
        hasher.finish()
    ))
}

fn serve(config: auth_service::Config, listener: TcpListener) -> Served {
    Served::spawn(|stopped| {
        auth_service::serve(config, listener, async {
            let _ = stopped.await;
        })
    })
}

impl TestApp {
    /// The claims of a valid access token for `user_id` with `roles`, timed
    /// by the service's clock.
    pub fn claims(&self, user_id: &str, roles: &[&str]) -> serde_json::Value {
        let now = self.clock.now().unix_seconds();
        serde_json::json!({
            "iss": "docverify-auth", "aud": "docverify", "sub": user_id,
            "email": "forged@example.com", "roles": roles, "iat": now, "nbf": now,
            "exp": now + 600, "jti": uuid::Uuid::now_v7().to_string(), "tgen": 0
        })
    }

    /// `claims` signed with the service's own key and `kid`, as it would
    /// sign them: a token no verifier has seen before.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.key.sign(claims)
    }

    /// The raw public key the service publishes first.
    pub async fn public_key(&self) -> Vec<u8> {
        self.auth()
            .list_signing_keys(pb::ListSigningKeysRequest {})
            .await
            .unwrap()
            .into_inner()
            .keys[0]
            .public_key
            .clone()
    }

    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }

    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }

    pub fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }

    pub async fn register(&self, email: &str) -> pb::User {
        self.auth()
            .register(pb::RegisterRequest {
                email: email.to_owned(),
                password: PASSWORD.to_owned(),
                display_name: "Test User".to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<pb::LoginResponse, Status> {
        self.auth()
            .login(pb::LoginRequest {
                email: email.to_owned(),
                password: password.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Registers `email` and logs in.
    pub async fn user(&self, email: &str) -> pb::LoginResponse {
        self.register(email).await;
        self.login(email, PASSWORD).await.unwrap()
    }

    pub async fn admin(&self) -> pb::LoginResponse {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap()
    }

    pub async fn me(&self, token: &str) -> Result<pb::User, Status> {
        self.auth()
            .get_current_user(bearer(pb::GetCurrentUserRequest {}, token))
            .await
            .map(|r| r.into_inner().user.unwrap())
    }

    pub async fn verify_chain(
        &self,
        token: &str,
    ) -> shared::proto::audit::v1::VerifyAuditChainResponse {
        verified_log(&self.channel, token).await
    }

    pub async fn events(&self, token: &str, action: &str) -> Vec<AuditEvent> {
        audit_events(&self.channel, token, action).await
    }

    /// Another replica: the same database, key files, credentials file and
    /// settings, serving on a port of its own.
    pub async fn spawn_replica(&self) -> TestApp {
        let config = self.config.clone();
        let mut replica = spawn_app_with(move |c| *c = config).await;
        replica.clock = self.clock.clone();
        replica
    }

    /// The `client_id:secret` file of document-service's service account.
    pub fn credentials_file(&self) -> std::path::PathBuf {
        self.config
            .bootstrap_service_credentials_file
            .clone()
            .unwrap()
    }

    /// The client id and secret of document-service's service account.
    pub fn service_credentials(&self) -> (String, String) {
        let text = std::fs::read_to_string(self.credentials_file()).unwrap();
        let (id, secret) = text.trim().split_once(':').unwrap();
        (id.to_owned(), secret.to_owned())
    }

    /// An access token of document-service's service account.
    pub async fn service_token(&self) -> String {
        let (client_id, client_secret) = self.service_credentials();
        self.auth()
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id,
                client_secret,
            })
            .await
            .unwrap()
            .into_inner()
            .access_token
    }

    /// Stops the server (gracefully) and waits for it; the database stays.
    pub async fn stop(&mut self) {
        self.served.stop().await;
    }

    /// The settings the next [`TestApp::restart`] uses.
    pub fn config_mut(&mut self) -> &mut auth_service::Config {
        &mut self.config
    }

    /// Stops the server and starts it again on the same database, key and
    /// clock (on a new port): what a restart or another replica sees.
    pub async fn restart(&mut self) {
        self.restart_on("127.0.0.1:0".parse().unwrap()).await;
    }

    /// [`TestApp::restart`] on `addr` (the port clients already know).
    pub async fn restart_on(&mut self, addr: SocketAddr) {
        self.stop().await;
        let listener = TcpListener::bind(addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        self.served = serve(self.config.clone(), listener);
        self.channel = connect_when_ready(self.addr).await;
    }
}

pub async fn refresh(app: &TestApp, token: &str) -> Result<pb::RefreshTokenResponse, Status> {
    app.auth()
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: token.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn set_roles(
    app: &TestApp,
    token: &str,
    user_id: &str,
    roles: &[&str],
) -> Result<pb::User, Status> {
    app.users()
        .set_user_roles(bearer(
            pb::SetUserRolesRequest {
                user_id: user_id.to_owned(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().user.unwrap())
}
