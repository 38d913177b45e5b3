use std::time::Duration;

use document_service::TokenValidation;
use shared::proto::auth::v1 as auth_pb;
use tonic::Code;

use crate::helpers::*;

/// A service account's credentials file in `dir`, for an auth-service that
/// reads it at start (or for none at all).
fn credentials_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!("{}:dvs_{}", uuid::Uuid::now_v7(), "k".repeat(43)),
    )
    .unwrap();
    credentials
}

/// Fails closed until auth-service's keys and revocation feed arrive; with
/// auth-service gone, tokens verify locally for REVOCATION_MAX_STALENESS
/// (the feed's last heartbeat vouches for them), then fail safe: each would
/// need ValidateToken, which cannot answer, so UNAVAILABLE, never a token
/// accepted on stale revocation state.
#[tokio::test]
async fn fails_closed_until_keys_arrive_then_fails_safe_when_auth_is_gone() {
    const BOUND: Duration = Duration::from_secs(3);
    // An address where nothing listens yet, and the credentials both sides
    // will share (auth-service reads an existing file).
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_in(&dir);
    let mut config = doc_config_at(
        format!("http://{auth_addr}"),
        TokenValidation::Local,
        Some(credentials.clone()),
    );
    config.revocation_max_staleness = BOUND;
    let docs = spawn_docs(config).await;
    let junk = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6IngifQ.e30.AA";
    assert_eq!(
        list_code(&docs, junk).await,
        Code::Unavailable,
        "no keys yet: fail closed"
    );

    // auth-service comes up on that address; keys and feed arrive by themselves.
    let mut auth = auth::spawn_app_on_with(auth_addr, |c| {
        c.bootstrap_service_credentials_file = Some(credentials.clone());
    })
    .await;
    let token = auth.user("keys@example.com").await.access_token;
    assert!(
        wait_health(&docs.channel, REVOCATION_FEED, SERVING).await,
        "the feed became fresh"
    );
    let mut code = Code::Unavailable;
    for _ in 0..100 {
        code = list_code(&docs, &token).await;
        if code == Code::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, Code::Ok, "and the keys");

    // auth-service goes away: within the bound, tokens still verify locally.
    // Timed from the stop's start: its heartbeats end there, and a graceful
    // stop on a loaded machine can take a good part of a second.
    let gone = std::time::Instant::now();
    auth.stop().await;
    let stopping = gone.elapsed();
    assert_eq!(list_code(&docs, &token).await, Code::Ok);
    // A token naming an unknown kid makes the verifier fetch the keys
    // again, which fails now; it is refused, and the keys it had stay.
    assert_eq!(list_code(&docs, junk).await, Code::Unauthenticated);
    // A token this verifier has never seen (so not in its cache of checked
    // signatures), signed with the known key: verified with the kept keys.
    let user_id = uuid::Uuid::now_v7().to_string();
    let unseen = auth.sign(&auth.claims(&user_id, &["user"]));
    assert_eq!(list_code(&docs, &unseen).await, Code::Ok);
    // And a forged one (another key, the same kid) still is not.
    let mut forged = auth::TestKey::generate();
    forged.kid = auth.key.kid.clone();
    let other = forged.sign(&auth.claims(&user_id, &["user"]));
    assert_eq!(list_code(&docs, &other).await, Code::Unauthenticated);
    assert!(
        gone.elapsed() < BOUND,
        "the checks above ran within the bound (slow machine?)"
    );

    // Past the bound: fail safe, and health says why.
    let mut code = Code::Ok;
    while gone.elapsed() < BOUND * 3 {
        code = list_code(&docs, &token).await;
        if code != Code::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fell_back = gone.elapsed();
    testkit::measured(format_args!(
        "auth-service gone: local verification ended after {fell_back:?} (bound {BOUND:?}; the stop took {stopping:?})"
    ));
    assert_eq!(code, Code::Unavailable);
    // The last heartbeat came one interval (500 ms) before the stop, or
    // more: auth-service withholds heartbeats while its poll of the log lags,
    // as on a loaded machine (2.2 s was seen in CI). Half the bound still
    // tells a verifier that honours it from one that ignores it.
    assert!(fell_back >= BOUND / 2, "{fell_back:?}");
    assert_eq!(list_code(&docs, &unseen).await, Code::Unavailable);
    assert!(wait_health(&docs.channel, REVOCATION_FEED, NOT_SERVING).await);
}

#[tokio::test]
async fn remote_validation_needs_auth_service() {
    let mut stack = spawn_stack(TokenValidation::Remote).await;
    let login = stack.auth.user("remote@example.com").await;
    assert_eq!(list_code(&stack.docs, &login.access_token).await, Code::Ok);
    // Remote mode sees a disabled user at once.
    let admin = stack.admin().await;
    stack
        .auth
        .users()
        .disable_user(bearer(
            shared::proto::auth::v1::DisableUserRequest {
                user_id: login.user.unwrap().id,
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(
        list_code(&stack.docs, &login.access_token).await,
        Code::Unauthenticated
    );
    stack.auth.stop().await;
    assert_eq!(list_code(&stack.docs, &admin).await, Code::Unavailable);
}

#[tokio::test]
async fn health_follows_auth_service_and_the_database() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let (serving, not_serving) = (
        ServingStatus::Serving as i32,
        ServingStatus::NotServing as i32,
    );
    let mut stack = spawn_stack_with(TokenValidation::Local, |c| {
        c.server.health_check_interval = Duration::from_millis(200);
    })
    .await;
    let channel = stack.docs.channel.clone();
    // Each state is waited for, never read once: on a loaded machine one
    // probe may be slow (this test failed once on a cold run when the
    // probes' timeout was the 200 ms interval itself and a single check read
    // a spurious NOT_SERVING).
    assert!(wait_health(&channel, "docverify.auth.v1.AuthService", serving).await);
    assert!(wait_health(&channel, "docverify.document.v1.DocumentService", serving).await);
    stack.auth.stop().await;
    assert!(
        wait_health(&channel, "docverify.auth.v1.AuthService", not_serving).await,
        "auth-service down is reported"
    );
    assert!(
        wait_health(&channel, "", serving).await,
        "document-service itself still serves"
    );

    if stack
        .docs
        .db
        .skips_without_postgres("verification during a database outage")
    {
        return;
    }
    // Take the database away: refuse new connections and cut the open ones.
    let name = stack.docs.db.url.rsplit('/').next().unwrap().to_owned();
    let server = std::env::var(testkit::POSTGRES_ENV).unwrap();
    let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let set = |allow: bool| format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allow}");
    sqlx::query(sqlx::AssertSqlSafe(set(false)))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();
    assert!(
        wait_health(&channel, "", not_serving).await,
        "NOT_SERVING while the database is gone"
    );
    assert!(
        wait_health(
            &channel,
            "docverify.document.v1.DocumentService",
            not_serving
        )
        .await
    );
    sqlx::query(sqlx::AssertSqlSafe(set(true)))
        .execute(&admin)
        .await
        .unwrap();
    assert!(
        wait_health(&channel, "", serving).await,
        "SERVING again once it is back"
    );
    admin.close().await;
}

/// The token attacks auth-service's own tests make, against
/// document-service's local verifier (it checks signatures itself, with the
/// published keys): each is UNAUTHENTICATED, and the same construction
/// done right passes, so each case fails for its own flaw.
#[tokio::test]
async fn token_attacks_fail_against_the_local_verifier() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    let stack = spawn_stack(TokenValidation::Local).await;
    let (token, user_id) = stack.user_with_roles("target@example.com", &["user"]).await;
    assert_eq!(list_code(&stack.docs, &token).await, Code::Ok);
    let auth = &stack.auth;
    let good = auth.claims(&user_id, &["user"]);
    let now = good["iat"].as_i64().unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        auth.sign(&c)
    };
    let segment = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let kid = auth.key.kid.clone();
    let header = |extra: Value| {
        let mut h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        h
    };
    // Signed correctly with the service's key, whatever the header says.
    let signed_raw = |h: Value, c: &Value| {
        let message = format!("{}.{}", segment(&h), segment(c));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &auth.key.key, Algorithm::EdDSA)
                .unwrap();
        format!("{message}.{signature}")
    };
    assert_eq!(
        list_code(&stack.docs, &signed_raw(header(json!({})), &good)).await,
        Code::Ok,
        "the control token passes"
    );
    let public = stack.auth.public_key().await;
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    let tampered = {
        let real = auth.sign(&good);
        let parts: Vec<&str> = real.split('.').collect();
        let mut admin = good.clone();
        admin["roles"] = json!(["admin"]);
        format!("{}.{}.{}", parts[0], segment(&admin), parts[2])
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                segment(&header(json!({"alg": "none"}))),
                segment(&good)
            ),
        ),
        (
            "HS256 with the public key",
            jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(&public)).unwrap(),
        ),
        ("tampered roles", tampered),
        ("other key, same kid", {
            let mut other = auth::TestKey::generate();
            other.kid = kid.clone();
            other.sign(&good)
        }),
        ("expired", with(&|c| c["exp"] = json!(now - 120))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now + 300))),
        ("wrong audience", with(&|c| c["aud"] = json!("elsewhere"))),
        ("wrong issuer", with(&|c| c["iss"] = json!("evil"))),
        (
            "no expiry",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        ("unknown role", with(&|c| c["roles"] = json!(["root"]))),
        (
            "jku header",
            signed_raw(header(json!({"jku": "https://evil.example/jwks"})), &good),
        ),
        (
            "crit header",
            signed_raw(header(json!({"crit": ["exp"]})), &good),
        ),
        ("typ JWT", signed_raw(header(json!({"typ": "JWT"})), &good)),
        ("over 8 KiB", with(&|c| c["pad"] = json!("p".repeat(9000)))),
    ];
    for (why, token) in cases {
        assert_eq!(
            list_code(&stack.docs, &token).await,
            Code::Unauthenticated,
            "{why}"
        );
    }
}

/// Key rotation as the README describes it: AUTH_SIGNING_KEY_FILE lists the
/// new key first and the old one after it. auth-service signs with the new
/// key and still accepts the old one's tokens; document-service fetches
/// the keys again when a token names a kid it does not know; and with the
/// old key retired, SIGNING_KEYS_REFRESH drops it from document-service
/// without any unknown kid to prompt it.
#[tokio::test]
async fn keys_rotate_through_the_key_file_and_reach_document_service() {
    let mut auth = auth::spawn_app().await;
    let mut config = doc_config(&auth, TokenValidation::Local);
    config.signing_keys_refresh = Duration::from_secs(1);
    let old = auth::TestKey::generate();
    let old_token = |auth: &AuthApp, user_id: &str| old.sign(&auth.claims(user_id, &["user"]));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, key: &auth::TestKey| {
        let path = dir.path().join(name);
        std::fs::write(&path, &key.pem).unwrap();
        path
    };
    // Start with the old key only.
    let old_path = write("old.pem", &old);
    auth.config_mut().signing_key_files = vec![old_path.clone()];
    auth.restart().await;
    config.auth_service_url = format!("http://{}", auth.addr);
    let docs = spawn_docs(config).await;
    let user = auth.register("rotate@example.com").await;
    let before = auth.login("rotate@example.com", PASSWORD).await.unwrap();
    assert_eq!(list_code(&docs, &before.access_token).await, Code::Ok);

    // Rotate: the new key first, the old one still listed. The restart
    // keeps the port document-service knows.
    let new = auth::TestKey::generate();
    let new_path = write("new.pem", &new);
    auth.config_mut().signing_key_files = vec![new_path.clone(), old_path];
    let addr = auth.addr;
    auth.restart_on(addr).await;
    let after = auth.login("rotate@example.com", PASSWORD).await.unwrap();
    let header = jsonwebtoken::decode_header(&after.access_token).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(new.kid.as_str()),
        "signed with the first key"
    );
    assert_eq!(
        list_code(&docs, &after.access_token).await,
        Code::Ok,
        "document-service fetched the unknown kid"
    );
    assert!(
        auth.me(&old_token(&auth, &user.id)).await.is_ok(),
        "old tokens still verify"
    );
    assert_eq!(
        list_code(&docs, &old_token(&auth, &user.id)).await,
        Code::Ok
    );

    // Retire the old key: within a few refresh intervals document-service
    // refuses its tokens too.
    auth.config_mut().signing_key_files = vec![new_path];
    auth.restart_on(addr).await;
    assert!(auth.me(&old_token(&auth, &user.id)).await.is_err());
    let mut refused = false;
    for _ in 0..100 {
        if list_code(&docs, &old_token(&auth, &user.id)).await == Code::Unauthenticated {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "SIGNING_KEYS_REFRESH dropped the retired key");
    assert_eq!(list_code(&docs, &after.access_token).await, Code::Ok);
}

/// An issuer that publishes no key document-service can use (none is
/// EdDSA) leaves every token undecided, UNAVAILABLE as before any key
/// arrived, never UNAUTHENTICATED: the caller's token is not at fault, and
/// a client told UNAUTHENTICATED would drop a good session.
#[tokio::test]
async fn an_issuer_without_a_usable_key_leaves_tokens_undecided() {
    let key = auth::TestKey::generate();
    let published = vec![shared::proto::auth::v1::SigningKey {
        kid: key.kid.clone(),
        algorithm: "RS256".into(),
        public_key: vec![7; 32],
    }];
    let issuer = PublishesOnly::serve(published).await;
    let docs = spawn_docs(doc_config_at(
        format!("http://{}", issuer.addr),
        TokenValidation::Local,
        None,
    ))
    .await;
    let now = shared::clock::Clock::system().now().unix_seconds();
    let token = key.sign(&serde_json::json!({
        "iss": "docverify-auth", "aud": "docverify", "sub": uuid::Uuid::now_v7().to_string(),
        "email": "a@example.com", "roles": ["user"], "iat": now, "nbf": now,
        "exp": now + 600, "jti": uuid::Uuid::now_v7().to_string(), "tgen": 0
    }));
    // Two answered fetches: the key set has been seen and judged.
    for _ in 0..100 {
        if issuer.answered() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        issuer.answered() >= 2,
        "document-service asked for the keys"
    );
    assert_eq!(list_code(&docs, &token).await, Code::Unavailable);
}

/// A stand-in for auth-service that answers `ListSigningKeys` with fixed
/// keys and every other method UNIMPLEMENTED.
#[derive(Clone)]
struct PublishesOnly {
    keys: Vec<shared::proto::auth::v1::SigningKey>,
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

struct Issuer {
    addr: std::net::SocketAddr,
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Issuer {
    fn answered(&self) -> usize {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PublishesOnly {
    async fn serve(keys: Vec<shared::proto::auth::v1::SigningKey>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = Self {
            keys,
            answered: Default::default(),
        };
        let answered = service.answered.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Issuer { addr, answered }
    }
}

impl tonic::server::NamedService for PublishesOnly {
    const NAME: &'static str = "docverify.auth.v1.AuthService";
}

impl tower::Service<http::Request<tonic::body::Body>> for PublishesOnly {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if request.uri().path() != "/docverify.auth.v1.AuthService/ListSigningKeys" {
                return Ok(tonic::Status::unimplemented("a stand-in").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(this, request).await)
        })
    }
}

impl tonic::server::UnaryService<shared::proto::auth::v1::ListSigningKeysRequest>
    for PublishesOnly
{
    type Response = shared::proto::auth::v1::ListSigningKeysResponse;
    type Future = std::future::Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(
        &mut self,
        _: tonic::Request<shared::proto::auth::v1::ListSigningKeysRequest>,
    ) -> Self::Future {
        self.answered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::ready(Ok(tonic::Response::new(
            shared::proto::auth::v1::ListSigningKeysResponse {
                keys: self.keys.clone(),
                ..Default::default()
            },
        )))
    }
}

/// auth-service moves away (a new port) so that the feed is cut off, and
/// comes back where it was after `advance` on its clock: the feed must be
/// stale in between and fresh again after, by itself.
async fn cut_off_then_back(stack: &mut Stack, advance: Duration, during: impl AsyncFnOnce(&Stack)) {
    let home = stack.auth.addr;
    stack.auth.restart().await;
    assert!(
        wait_health(&stack.docs.channel, REVOCATION_FEED, NOT_SERVING).await,
        "cut off: stale"
    );
    during(stack).await;
    stack.auth.clock.advance(advance);
    stack.auth.restart_on(home).await;
    assert!(
        wait_health(&stack.docs.channel, REVOCATION_FEED, SERVING).await,
        "back: fresh again"
    );
}

/// The feed recovers from what an outage leaves behind: a cursor that
/// auth-service no longer keeps (facts committed and pruned while
/// document-service was cut off) makes it load a snapshot; a service token
/// that expired meanwhile makes it ask for a new one. Tried, and the feed
/// stayed stale for good: the refused cursor taken for a passing failure
/// (retried as it was), the snapshot not loaded, the token not forgotten.
#[tokio::test]
async fn the_feed_resyncs_a_pruned_cursor_and_renews_an_expired_token() {
    let auth = auth::spawn_app_with(|c| {
        // The feed's first token outlives the first outage...
        c.access_token_ttl = Duration::from_secs(3600);
        c.revocation_retention = Duration::from_secs(3630);
    })
    .await;
    let mut config = doc_config(&auth, TokenValidation::Local);
    config.server.health_check_interval = Duration::from_millis(200);
    let docs = spawn_docs(config).await;
    let mut stack = Stack { auth, docs };
    assert!(wait_health(&stack.docs.channel, REVOCATION_FEED, SERVING).await);
    // ...whose facts are pruned before it ends.
    let ttl = stack.auth.config_mut();
    ttl.access_token_ttl = Duration::from_secs(60);
    ttl.revocation_retention = Duration::from_secs(90);
    cut_off_then_back(
        &mut stack,
        Duration::from_secs(91),
        async |stack: &Stack| {
            let admin = stack.admin().await;
            let bo = stack.auth.register("bo@example.com").await.id;
            let mut users = stack.auth.users();
            let request = auth_pb::DisableUserRequest {
                user_id: bo.clone(),
            };
            users.disable_user(bearer(request, &admin)).await.unwrap();
            let request = auth_pb::EnableUserRequest { user_id: bo };
            users.enable_user(bearer(request, &admin)).await.unwrap();
        },
    )
    .await;
    // Every token the feed was given has expired when it is back.
    cut_off_then_back(&mut stack, Duration::from_secs(3601), async |_: &Stack| {}).await;
}

/// With auth-service unreachable, the feed (and the key refresh beside it)
/// retries with backoff, 100 ms doubling to 500 ms, not in a storm. A
/// listener that accepts each connection and drops it counts the attempts.
/// Tried: the backoff halved instead of doubled (a busy loop) and reset
/// after every failed attempt (ten a second).
#[tokio::test]
async fn an_unreachable_auth_service_is_retried_with_backoff() {
    // Cut for good: each connection is accepted and closed at once.
    let proxy = testkit::Proxy::to("127.0.0.1:9".parse().unwrap()).await;
    proxy.cut();
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_in(&dir);
    let config = doc_config_at(
        format!("http://{}", proxy.addr),
        TokenValidation::Local,
        Some(credentials),
    );
    let _docs = spawn_docs(config).await;
    let before = shared::clock::monotonic();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = proxy.connections_after(before).len();
    testkit::measured(format_args!(
        "auth-service unreachable: {attempts} connection attempts in 3 s"
    ));
    assert!(attempts >= 3, "it retries: {attempts}");
    assert!(attempts <= 25, "with backoff: {attempts}");
}

/// document-service reaching `auth` through `proxy`, probing it every
/// `probe`.
fn behind(proxy: &testkit::Proxy, auth: &AuthApp, probe: Duration) -> document_service::Config {
    let mut config = doc_config_at(
        format!("http://{}", proxy.addr),
        TokenValidation::Local,
        Some(auth.credentials_file()),
    );
    config.server.health_check_interval = probe;
    config
}

/// A stream cut off abruptly (the connection dropped, no end from the
/// server) says nothing against the feed's service token: the feed
/// reconnects with it, and asks for no new one. When auth-service then
/// refuses it (here its clock passed the token's expiry during a second
/// cut), the feed asks for exactly one new token. Tried: with the two
/// branches swapped (the token forgotten after a failure, kept after a
/// refusal), each cut cost a token, and the count of issued tokens (read
/// off auth-service's trail) failed the test; with the refused token kept,
/// the feed stayed stale until the token's own renewal time (48 minutes).
#[tokio::test]
async fn a_cut_connection_keeps_the_token_and_a_refused_one_is_renewed() {
    let auth = auth::spawn_app_with(|c| {
        c.access_token_ttl = Duration::from_secs(3600);
        c.revocation_retention = Duration::from_secs(7200);
    })
    .await;
    let proxy = testkit::Proxy::to(auth.addr).await;
    let docs = spawn_docs(behind(&proxy, &auth, Duration::from_millis(200))).await;
    let issued = async || {
        let admin = auth.admin().await.access_token;
        audit_events(&auth.channel, &admin, "service_account.token_issued")
            .await
            .len()
    };
    let cut_and_mend = async |meanwhile: Duration| {
        proxy.cut();
        assert!(
            wait_health(&docs.channel, REVOCATION_FEED, NOT_SERVING).await,
            "cut off: stale"
        );
        auth.clock.advance(meanwhile);
        proxy.mend();
        assert!(
            wait_health(&docs.channel, REVOCATION_FEED, SERVING).await,
            "back: fresh again"
        );
    };
    assert!(wait_health(&docs.channel, REVOCATION_FEED, SERVING).await);
    let first = issued().await;
    assert_eq!(first, 1);
    cut_and_mend(Duration::ZERO).await;
    assert_eq!(issued().await, first, "reconnected with the token it had");
    // Past the token's expiry and the verifiers' leeway (30 s).
    cut_and_mend(Duration::from_secs(3700)).await;
    assert_eq!(issued().await, first + 1, "refused, it asked for one more");
}

/// After a subscription that lasted, a failure is retried within 100 ms,
/// whatever the backoff had grown to in the failures before it (500 ms):
/// an auth-service that is back at once is found again at once. Measured
/// from a cut to the feed's next connection, the least of three cuts (a
/// loaded machine may delay one). Tried: with the backoff kept, every
/// reconnection waited its 500 ms.
#[tokio::test]
async fn after_a_lasting_subscription_the_backoff_starts_again() {
    let auth = auth::spawn_app().await;
    let proxy = testkit::Proxy::to(auth.addr).await;
    proxy.cut();
    // The feed alone connects in the test's time: no health probe, and no
    // key refresh once the keys are in.
    let docs = spawn_docs(behind(&proxy, &auth, Duration::from_secs(3600))).await;
    // Long enough for the failures to take the backoff to its most.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.mend();
    assert!(wait_health(&docs.channel, REVOCATION_FEED, SERVING).await);
    let mut waits = vec![];
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cut = shared::clock::monotonic();
        proxy.cut();
        proxy.mend();
        let mut again = None;
        for _ in 0..500 {
            again = proxy.connections_after(cut).first().copied();
            if again.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waits.push(again.expect("the feed reconnects") - cut);
    }
    let least = *waits.iter().min().unwrap();
    testkit::measured(format_args!(
        "the feed reconnected {waits:?} after each cut of a lasting subscription"
    ));
    assert!(least < Duration::from_millis(400), "{waits:?}");
}
