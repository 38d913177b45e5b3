//! Starts the real auth-service on port 0 with a fresh database and talks to
//! it through real tonic clients.

use std::{net::SocketAddr, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use clap::Parser;
use jsonwebtoken::{EncodingKey, jwk::{Jwk, ThumbprintHash}};
use shared::{
    clock::{Clock, ManualClock},
    proto::{
        audit::v1::{audit_service_client::AuditServiceClient, VerifyAuditChainRequest, ListAuditEventsRequest, AuditEvent},
        auth::v1::{
            self as pb, auth_service_client::AuthServiceClient,
            user_service_client::UserServiceClient,
        },
    },
    testkit::TestDb,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt;

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple admin";
pub const PASSWORD: &str = "quartz violin meadow lantern";

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: auth_service::Config,
}

/// A signing key the test knows, to craft tokens the service must judge.
pub struct TestKey {
    pub kid: String,
    pub key: EncodingKey,
    pub pem: String,
}

impl TestKey {
    pub fn generate() -> Self {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
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
        Self { kid, key, pem }
    }
}

pub struct TestApp {
    pub channel: Channel,
    pub db: TestDb,
    pub key: TestKey,
    pub clock: ManualClock,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<shared::Result<()>>>,
    _key_dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut auth_service::Config)) -> TestApp {
    let db = TestDb::fresh("auth").await;
    let key = TestKey::generate();
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("signing.pem");
    std::fs::write(&key_path, &key.pem).unwrap();

    let (clock, handle) = Clock::manual(time::OffsetDateTime::now_utc());
    let mut config = Args::parse_from(["auth-service"]).config;
    config.database_url = db.url.clone();
    config.signing_key_files = vec![key_path];
    config.bootstrap_admin_email = Some(ADMIN_EMAIL.to_owned());
    config.bootstrap_admin_password = Some(ADMIN_PASSWORD.to_owned());
    config.argon2_workers = Some(2);
    config.clock = clock;
    customize(&mut config);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(auth_service::serve(config, listener, async {
        let _ = stopped.await;
    }));
    let channel = connect(addr).await;
    TestApp {

        channel,
        db,
        key,
        clock: handle,
        stop: Some(stop),
        task: Some(task),
        _key_dir: key_dir,
    }
}

/// Connects and waits until the server answers (retrying, never sleeping
/// blindly).
pub async fn connect(addr: SocketAddr) -> Channel {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for _ in 0..200 {
        if health
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .is_ok()
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server at {addr} did not become ready");
}

impl TestApp {
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

    pub async fn verify_chain(&self, token: &str) -> shared::proto::audit::v1::VerifyAuditChainResponse {
        self.audit()
            .verify_audit_chain(bearer(VerifyAuditChainRequest {}, token))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn events(&self, token: &str, action: &str) -> Vec<AuditEvent> {
        self.audit()
            .list_audit_events(bearer(
                ListAuditEventsRequest {
                    action: action.to_owned(),
                    page_size: 500,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .events
    }

    /// Stops the server (gracefully) and waits for it; the database stays.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Asserts the code and the ErrorInfo reason of a failed call.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, reason: &str) -> Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("every error carries ErrorInfo");
    assert_eq!(info.reason, reason, "unexpected reason in {status:?}");
    assert_eq!(info.domain, "docverify");
    status
}

/// The fields named by a BadRequest detail.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Runs the futures at the same time (each on its own task) and returns their
/// outputs in order.
pub async fn concurrently<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}
