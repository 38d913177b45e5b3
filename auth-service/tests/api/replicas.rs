//! Replicas and restarts: several auth-service processes started at the same
//! moment on one empty PostgreSQL database, keys added by one replica, and a
//! bootstrap admin that must not promote an account someone registered
//! first.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use shared::{
    proto::auth::v1::{self as pb, auth_service_client::AuthServiceClient},
    token::{AUDIENCE, AccessClaims, ISSUER, TOKEN_TYPE},
};
use testkit::{Process, TestDb, connect_when_ready};
use tonic::transport::Channel;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_auth-service");

fn replica_env(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![
        ("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_DATABASE_URL", db.url.clone()),
        ("BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("AUTH_SIGNING_KEYS_RELOAD", "1s".to_owned()),
        ("ARGON2_WORKERS", "1".to_owned()),
    ]
}

async fn kids(channel: &Channel) -> Vec<String> {
    let mut kids: Vec<String> = AuthServiceClient::new(channel.clone())
        .list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    kids.sort();
    kids
}

/// Three replicas with a bootstrap admin and generated keys, started at the
/// same moment on an empty database, three rounds. Before the fix one
/// replica exited with "an account with this email already exists" in every
/// round, and without a bootstrap admin they often published different key
/// sets (each generated its own). The service account's credentials file
/// is written by one and read by the others, and the account is created
/// once. PostgreSQL only: SQLite is one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_agree_on_the_admin_and_the_keys() {
    for round in 0..3 {
        let db = TestDb::fresh("replicas").await;
        if db.skips_without_postgres("replicas started together") {
            return;
        }
        // And the service account's credentials file, which none has yet.
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("document-service.credentials");
        let mut env = replica_env(&db);
        env.push((
            "BOOTSTRAP_SERVICE_CREDENTIALS_FILE",
            credentials.display().to_string(),
        ));
        let replicas = Process::start_together(
            BIN.as_ref(),
            &[env.clone(), env.clone(), env],
            "auth-service",
        )
        .await;
        let mut channels = Vec::new();
        for replica in &replicas {
            channels.push(connect_when_ready(replica.addr).await);
        }
        let first = kids(&channels[0]).await;
        assert_eq!(first.len(), 1, "round {round}: one generated key");
        for channel in &channels[1..] {
            assert_eq!(kids(channel).await, first, "round {round}: same key set");
        }
        // A token from any replica is good at every other.
        let login = admin_login(&channels[2]).await;
        for channel in &channels[..2] {
            let valid = AuthServiceClient::new(channel.clone())
                .validate_token(pb::ValidateTokenRequest {
                    access_token: login.access_token.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(valid.active, "round {round}");
        }
        let users = users_in(&db).await;
        assert_eq!(users, 1, "round {round}: one admin account");
        // One service account, one secret: the one in the file, good everywhere.
        let text = std::fs::read_to_string(&credentials).unwrap();
        let (client_id, client_secret) = text.trim().split_once(':').unwrap();
        assert_eq!(
            db.bytes("SELECT secret_hash FROM service_account_secrets")
                .await
                .len(),
            1,
            "round {round}: one secret"
        );
        for channel in &channels {
            AuthServiceClient::new(channel.clone())
                .issue_service_token(pb::IssueServiceTokenRequest {
                    client_id: client_id.to_owned(),
                    client_secret: client_secret.to_owned(),
                })
                .await
                .unwrap();
        }
    }
}

/// A key another replica added (a rotation) is served and accepted by every
/// replica within the reload interval, and at once for a token naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_elsewhere_is_served_and_accepted_everywhere() {
    let db = TestDb::fresh("rotation").await;
    if db.skips_without_postgres("a key added by another replica") {
        return;
    }
    let env = replica_env(&db);
    let replicas = Process::start_together(BIN.as_ref(), &[env.clone(), env], "auth-service").await;
    let a = connect_when_ready(replicas[0].addr).await;
    let b = connect_when_ready(replicas[1].addr).await;
    let admin = admin_login(&a).await.user.unwrap();

    // The new key, as a replica that rotates would store it.
    let key = TestKey::generate();
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_key, created_at) VALUES ($1, $2, now() + interval '1 hour')",
    )
    .bind(&key.kid)
    .bind(&key.der)
    .execute(&mut c)
    .await
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(TOKEN_TYPE.to_owned());
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &AccessClaims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: admin.id.clone(),
            email: admin.email.clone(),
            roles: vec!["admin".to_owned()],
            iat: now,
            nbf: now,
            exp: now + 300,
            jti: uuid::Uuid::now_v7().to_string(),
            tgen: 0,
            sid: None,
        },
        &key.key,
    )
    .unwrap();
    // At once, for a token that names it.
    AuthServiceClient::new(b.clone())
        .get_current_user(bearer(pb::GetCurrentUserRequest {}, &token))
        .await
        .expect("a token signed with the new key is accepted");
    // Within the reload interval, in every key set.
    for channel in [&a, &b] {
        let mut served = false;
        for _ in 0..50 {
            if kids(channel).await.contains(&key.kid) {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served, "the new key is published");
    }
}

/// Someone registers the bootstrap email before the operator starts the
/// service with it. Before the fix bootstrap (and create-admin) promoted
/// that account, whose password the operator never chose. On both
/// databases.
#[tokio::test]
async fn bootstrap_and_create_admin_do_not_promote_an_existing_account() {
    let db = TestDb::fresh("squatter").await;
    let mut config = default_config();
    config.database_url = db.url.clone();
    config.argon2_workers = Some(1);
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(auth_service::serve(config.clone(), listener, async {
            let _ = stopped.await;
        }));
        let channel = connect_when_ready(addr).await;
        AuthServiceClient::new(channel)
            .register(pb::RegisterRequest {
                email: ADMIN_EMAIL.into(),
                password: PASSWORD.into(),
                display_name: "Squatter".into(),
            })
            .await
            .unwrap();
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
    let mut bootstrap = config.clone();
    bootstrap.bootstrap_admin_email = Some(ADMIN_EMAIL.to_owned());
    bootstrap.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        auth_service::serve(bootstrap.clone(), listener, std::future::pending()),
    )
    .await
    .expect("refuses at start");
    let message = format!("{:?}", refused.unwrap_err());
    assert!(
        message.contains("BOOTSTRAP_ADMIN_PROMOTE_EXISTING"),
        "names the setting: {message}"
    );
    let refused =
        auth_service::create_admin(&config, ADMIN_EMAIL, &ADMIN_PASSWORD.into(), false).await;
    let message = format!("{:?}", refused.unwrap_err());
    assert!(message.contains("--promote-existing"), "{message}");
    assert_eq!(roles_of(&db, ADMIN_EMAIL).await, r#"["user"]"#);

    // With the operator's explicit word: promoted, own password kept, audited.
    auth_service::create_admin(&config, ADMIN_EMAIL, &ADMIN_PASSWORD.into(), true)
        .await
        .unwrap();
    assert_eq!(roles_of(&db, ADMIN_EMAIL).await, r#"["admin","user"]"#);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = tokio::spawn(auth_service::serve(
        bootstrap,
        listener,
        std::future::pending(),
    ));
    let channel = connect_when_ready(addr).await;
    let mut auth = AuthServiceClient::new(channel.clone());
    let login = auth
        .login(pb::LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("the account keeps its own password")
        .into_inner();
    let events = shared::proto::audit::v1::audit_service_client::AuditServiceClient::new(channel)
        .list_audit_events(bearer(
            shared::proto::audit::v1::ListAuditEventsRequest {
                action: "user.roles_changed".into(),
                page_size: 10,
                ..Default::default()
            },
            &login.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert!(
        events[0]
            .details_json
            .contains("\"promoted_existing\":true")
    );
}

async fn users_in(db: &TestDb) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

/// The roles column as stored (JSON text), on either database.
async fn roles_of(db: &TestDb, email: &str) -> String {
    use sqlx::Connection;
    if db.is_postgres() {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT roles::text FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(&mut c)
            .await
            .map(|s: String| s.replace(' ', ""))
            .unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT roles FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}
