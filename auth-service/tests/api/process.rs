//! The real auth-service binary as a child process: log hygiene at trace
//! level, JSON logs, the healthcheck subcommand, graceful shutdown on
//! SIGTERM, gRPC-Web over HTTP/1.1, load shedding and message limits.

use std::time::Duration;

use shared::proto::auth::v1::{self as pb, auth_service_client::AuthServiceClient};
use testkit::{Process, TestDb, connect_when_ready, http1};
use tonic::{Code, transport::Channel};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_auth-service");

struct Running {
    process: Process,
    channel: Channel,
    _db: TestDb,
    _dir: tempfile::TempDir,
    key: TestKey,
}

async fn start(extra: &[(&str, String)]) -> Running {
    let db = TestDb::fresh("authbin").await;
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::generate();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, &key.pem).unwrap();
    let mut env = vec![
        ("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_DATABASE_URL", db.url.clone()),
        ("AUTH_SIGNING_KEY_FILE", key_path.display().to_string()),
        ("BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("SHUTDOWN_DRAIN_TIMEOUT", "5s".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    let process = Process::start(BIN.as_ref(), &[], &env, "auth-service").await;
    let channel = connect_when_ready(process.addr).await;
    Running {
        process,
        channel,
        _db: db,
        _dir: dir,
        key,
    }
}

fn healthcheck(running: &Running) -> bool {
    std::process::Command::new(BIN)
        .arg("healthcheck")
        .env("AUTH_LISTEN_ADDR", running.process.addr.to_string())
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn secrets_never_reach_the_log_even_at_trace_level() {
    let mut running = start(&[("RUST_LOG", "trace".into()), ("LOG_FORMAT", "json".into())]).await;
    let mut auth = AuthServiceClient::new(running.channel.clone());
    let email = "secretive@example.com";
    let new_password = "lighthouse pumpkin velvet tractor";
    auth.register(pb::RegisterRequest {
        email: email.into(),
        password: PASSWORD.into(),
        display_name: "S".into(),
    })
    .await
    .unwrap();
    let _ = auth
        .login(pb::LoginRequest {
            email: email.into(),
            password: "a wrong password guess".into(),
        })
        .await;
    let login = auth
        .login(pb::LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let refreshed = auth
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    auth.get_current_user(bearer(
        pb::GetCurrentUserRequest {},
        &refreshed.access_token,
    ))
    .await
    .unwrap();
    auth.validate_token(pb::ValidateTokenRequest {
        access_token: refreshed.access_token.clone(),
    })
    .await
    .unwrap();
    auth.change_password(bearer(
        pb::ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: new_password.into(),
        },
        &refreshed.access_token,
    ))
    .await
    .unwrap();
    let _ = auth
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await;
    auth.logout(pb::LogoutRequest {
        refresh_token: refreshed.refresh_token.clone(),
    })
    .await
    .unwrap();
    drop(auth);

    running.process.terminate();
    let status = running
        .process
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    let log = running.process.output();
    assert!(
        log.len() > 10_000,
        "trace level logs plenty: {} bytes",
        log.len()
    );
    let key_body: String = running
        .key
        .pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let secrets = [
        ("password", PASSWORD.to_owned()),
        ("wrong password", "a wrong password guess".to_owned()),
        ("new password", new_password.to_owned()),
        ("admin password", ADMIN_PASSWORD.to_owned()),
        ("access token", login.access_token.clone()),
        (
            "access token signature",
            login.access_token.rsplit('.').next().unwrap().to_owned(),
        ),
        ("refreshed access token", refreshed.access_token.clone()),
        ("refresh token", login.refresh_token.clone()),
        ("rotated refresh token", refreshed.refresh_token.clone()),
        ("signing key", key_body),
    ];
    for (what, secret) in secrets {
        assert!(!log.contains(&secret), "the {what} appears in the log");
    }
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "LOG_FORMAT=json: not JSON: {line}"
        );
    }
    assert!(log.contains("\"request_id\""), "spans carry the request id");
}

#[tokio::test]
async fn healthcheck_subcommand_and_graceful_shutdown() {
    let mut running = start(&[]).await;
    assert!(healthcheck(&running), "healthcheck exits 0 while serving");
    running.process.terminate();
    let status = running
        .process
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        !healthcheck(&running),
        "healthcheck exits 1 when nothing answers"
    );
}

#[tokio::test]
async fn grpc_web_over_http1_with_cors() {
    let running = start(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com".into())]).await;
    let addr = running.process.addr;
    // One empty ListSigningKeysRequest, framed: flag 0, length 0.
    let body = [0u8, 0, 0, 0, 0];
    let mut request = format!(
        "POST /docverify.auth.v1.AuthService/ListSigningKeys HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nOrigin: https://app.example.com\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let response = http1(addr, request).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_lowercase()
            .contains("content-type: application/grpc-web"),
        "{text}"
    );
    assert!(
        text.to_lowercase()
            .contains("access-control-allow-origin: https://app.example.com"),
        "{text}"
    );
    assert!(
        text.contains("grpc-status:0"),
        "the trailer frame carries the status: {text}"
    );
    assert!(
        text.contains(&running.key.kid),
        "the key set came back: {text}"
    );

    let preflight = format!(
        "OPTIONS /docverify.auth.v1.AuthService/Login HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://app.example.com\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web\r\nConnection: close\r\n\r\n"
    );
    let text =
        String::from_utf8_lossy(&http1(addr, preflight.clone().into_bytes()).await).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("access-control-allow-origin: https://app.example.com"),
        "{text}"
    );
    let stranger = preflight.replace("https://app.example.com", "https://evil.example.com");
    let text = String::from_utf8_lossy(&http1(addr, stranger.into_bytes()).await).to_lowercase();
    // An answer (not an empty or timed-out read) that grants nothing.
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        !text.contains("access-control-allow-origin"),
        "other origins get no CORS grant: {text}"
    );
}

#[tokio::test]
async fn load_is_shed_and_messages_are_bounded() {
    let running = start(&[
        ("MAX_CONCURRENT_REQUESTS", "1".into()),
        ("MAX_STREAMING_CALLS_PER_CONNECTION", "1".into()),
        ("RATE_LIMIT_REGISTER", "off".into()),
        ("MAX_MESSAGE_BYTES", "1024".into()),
    ])
    .await;
    // A reflection stream left open takes the connection's one streaming
    // slot, and no unary slot: unary calls still run.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    };
    let open_stream = || {
        let mut reflection = ServerReflectionClient::new(running.channel.clone());
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<ServerReflectionRequest>(1);
            let opened = reflection
                .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            (tx, opened)
        }
    };
    let (tx, open) = open_stream().await;
    let open = open.unwrap();
    let (_tx2, second) = open_stream().await;
    let status = assert_error(second, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    use tonic_types::StatusExt;
    assert!(status.get_error_details().retry_info().is_some());
    let mut auth = AuthServiceClient::new(running.channel.clone());
    auth.list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .expect("an open stream holds no unary slot");
    drop(tx);
    drop(open);
    // The streaming slot frees when the stream ends.
    let mut reopened = false;
    for _ in 0..100 {
        if open_stream().await.1.is_ok() {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened, "the streaming slot came back");

    // Unary calls beyond the one slot are shed at once: a burst of
    // registrations (each a strength check and a hash) overlaps.
    let burst = (0..16).map(|i| {
        let mut auth = auth.clone();
        async move {
            auth.register(pb::RegisterRequest {
                email: format!("burst{i}@example.com"),
                password: PASSWORD.into(),
                display_name: "B".into(),
            })
            .await
        }
    });
    let results = concurrently(burst).await;
    let shed: Vec<_> = results
        .into_iter()
        .filter_map(Result::err)
        .filter(|s| s.code() == Code::ResourceExhausted)
        .collect();
    assert!(!shed.is_empty(), "some of 16 overlapping calls were shed");
    for status in &shed {
        assert!(status.get_error_details().retry_info().is_some());
    }

    let big = auth
        .register(pb::RegisterRequest {
            email: "big@example.com".into(),
            password: PASSWORD.into(),
            display_name: "x".repeat(4096),
        })
        .await
        .expect_err("over MAX_MESSAGE_BYTES");
    assert!(
        matches!(big.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{big:?}"
    );

    // The caller's deadline is honoured by the server: `grpc-timeout` sent
    // by a plain HTTP/1.1 gRPC-Web request, so no client-side timer exists
    // (tonic's channel runs one on the same header, and answers CANCELLED
    // locally whatever the server did).
    let message = prost::Message::encode_to_vec(&pb::LoginRequest {
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.into(),
    });
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let addr = running.process.addr;
    let mut request = format!(
        "POST /docverify.auth.v1.AuthService/Login HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\ngrpc-timeout: 1u\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let text = String::from_utf8_lossy(&http1(addr, request).await).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("grpc-status: 4") || text.contains("grpc-status:4"),
        "DEADLINE_EXCEEDED (4) from the server: {text}"
    );
}

#[tokio::test]
async fn prometheus_metrics_on_their_own_listener() {
    let running = start(&[("METRICS_ADDR", "127.0.0.1:0".into())]).await;
    let mut auth = AuthServiceClient::new(running.channel.clone());
    auth.list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .unwrap();
    let _ = auth
        .login(pb::LoginRequest {
            email: "x@example.com".into(),
            password: "not the password".into(),
        })
        .await;
    // A stream the client walks away from is counted as CANCELLED, and
    // leaves the in-flight gauge.
    let mut health = tonic_health::pb::health_client::HealthClient::new(running.channel.clone());
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("the current status");
    drop(watch);
    const CANCELLED: &str = r#"docverify_grpc_requests_total{service="auth-service",method="/grpc.health.v1.Health/Watch",code="Cancelled"}"#;
    const IN_FLIGHT: &str = r#"docverify_grpc_in_flight_requests{service="auth-service"}"#;
    let mut text = running.process.metrics().await;
    for _ in 0..50 {
        if testkit::process::sample(&text, CANCELLED).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = running.process.metrics().await;
    }
    assert_eq!(
        testkit::process::sample(&text, CANCELLED),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        testkit::process::sample(&text, IN_FLIGHT),
        Some(0.0),
        "{text}"
    );
    for needle in [
        r#"docverify_grpc_requests_total{service="auth-service",method="/docverify.auth.v1.AuthService/ListSigningKeys",code="Ok"} 1"#,
        r#"method="/docverify.auth.v1.AuthService/Login",code="Unauthenticated"} 1"#,
        "docverify_grpc_request_duration_seconds_bucket",
        r#"docverify_grpc_in_flight_requests{service="auth-service"}"#,
        r#"docverify_db_pool_connections{service="auth-service",state="max"}"#,
        "docverify_argon2_queue_depth",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

/// The keys over plain HTTP for gateways and JWT libraries: the JWKS of
/// ListSigningKeys, cacheable for the key reload interval, revalidated by
/// its ETag with a 304 and no body; a token auth-service signed verifies
/// against it; any other path is 404.
#[tokio::test]
async fn the_signing_keys_are_published_over_http_for_gateways() {
    let running = start(&[
        ("AUTH_HTTP_ADDR", "127.0.0.1:0".into()),
        ("AUTH_SIGNING_KEYS_RELOAD", "45s".into()),
    ])
    .await;
    let addr: std::net::SocketAddr = running
        .process
        .output()
        .lines()
        .find(|l| l.contains("keys over HTTP"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("the keys' HTTP address is logged");
    let get = async |extra: &str| {
        let request = format!(
            "GET /.well-known/jwks.json HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
        );
        let response =
            String::from_utf8_lossy(&http1(addr, request.into_bytes()).await).to_string();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.to_ascii_lowercase(), body.to_owned())
    };
    let (head, body) = get("").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("cache-control: public, max-age=45"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag")
        .to_owned();

    let mut auth = AuthServiceClient::new(running.channel.clone());
    let published = auth
        .list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&body).unwrap();
    let over_grpc: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&published.jwks_json).unwrap();
    assert_eq!(jwks, over_grpc, "the same keys as ListSigningKeys");
    assert_eq!(jwks.keys.len(), 1);

    let token = admin_login(&running.channel).await.access_token;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).expect("the token's kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["docverify"]);
    validation.set_issuer(&["docverify-auth"]);
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("a third party verifies the token with the published key");

    let (head, body) = get(&format!("If-None-Match: {etag}\r\n")).await;
    assert!(head.starts_with("http/1.1 304"), "{head}");
    assert!(head.contains(&format!("etag: {etag}")), "{head}");
    assert!(body.is_empty(), "a 304 has no body: {body:?}");
    let (head, _) = get("If-None-Match: \"something-else\"\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    let request = format!("GET /keys HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = String::from_utf8_lossy(&http1(addr, request.into_bytes()).await).to_string();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

/// A log filter that does not parse stops the service with a message naming
/// RUST_LOG, like every other bad setting. Before, it fell back to `info`
/// silently.
#[tokio::test]
async fn a_bad_log_filter_stops_the_service() {
    let db = TestDb::fresh("badlog").await;
    let url = db.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .env("AUTH_LISTEN_ADDR", "127.0.0.1:0")
            .env("AUTH_DATABASE_URL", url)
            .env("RUST_LOG", "auth_service=loudest")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RUST_LOG"), "{stderr}");
}

/// The service starts before its database (as containers do): it waits,
/// retrying, and serves once the database comes up. Before, it exited at
/// the first refused connection. PostgreSQL only.
#[tokio::test]
async fn the_service_waits_for_a_database_that_comes_up_later() {
    let db = TestDb::fresh("late").await;
    if db.skips_without_postgres("a database server that comes up late") {
        return;
    }
    db.set_reachable(false).await;
    let url = db.url.clone();
    let started = tokio::spawn(async move {
        Process::start(
            BIN.as_ref(),
            &[],
            &[
                ("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
                ("AUTH_DATABASE_URL", url),
                ("ARGON2_WORKERS", "1".to_owned()),
            ],
            "auth-service",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!started.is_finished(), "not listening without its database");
    db.set_reachable(true).await;
    let process = started.await.unwrap();
    let output = process.output();
    assert!(output.contains("database not reachable yet"), "{output}");
    assert!(
        output.contains("AUTH_DATABASE_URL"),
        "the log names the setting"
    );
    connect_when_ready(process.addr).await;
}

fn run_to_end(args: &[&str], env: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    testkit::process::run_to_end(BIN.as_ref(), args, env)
}

/// A bad setting stops the service before it listens, with a message that
/// names the setting as operators set it (the environment variable).
#[tokio::test]
async fn bad_settings_stop_the_service_naming_them() {
    for (setting, value) in [
        ("ACCESS_TOKEN_TTL", "0s"),
        ("AUTH_DB_MAX_CONNECTIONS", "many"),
        ("RATE_LIMIT_LOGIN", "3 per second"),
        ("TRUSTED_PROXIES", "not-an-address"),
        ("AUTH_DATABASE_URL", "mysql://somewhere/db"),
    ] {
        let (status, text) = run_to_end(&[], &[(setting, value.to_owned())]);
        assert!(!status.success(), "{setting}={value} must stop it: {text}");
        assert!(text.contains(setting), "{setting}={value}: {text}");
        assert!(!text.contains("listening"), "{setting}={value}: {text}");
    }
}

/// `migrate` creates the schema and exits; `create-admin` makes an admin who
/// can log in, refuses to promote an existing account silently, and does
/// with `--promote-existing`.
#[tokio::test]
async fn migrate_and_create_admin_subcommands() {
    let db = TestDb::fresh("subcommands").await;
    let env = [("AUTH_DATABASE_URL", db.url.clone())];
    let (status, text) = run_to_end(&["migrate"], &env);
    assert!(status.success(), "migrate: {text}");
    let admin_password = "orchard kettle saffron glacier";
    let (status, text) = run_to_end(
        &[
            "create-admin",
            "--email",
            "ops@example.com",
            "--password",
            admin_password,
        ],
        &env,
    );
    assert!(status.success(), "create-admin: {text}");
    assert!(
        !text.contains(admin_password),
        "the password is not echoed: {text}"
    );

    let mut serve_env = env.to_vec();
    serve_env.push(("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()));
    serve_env.push(("RATE_LIMIT_REGISTER", "off".to_owned()));
    let process = Process::start(BIN.as_ref(), &[], &serve_env, "auth-service").await;
    let channel = connect_when_ready(process.addr).await;
    let mut auth = AuthServiceClient::new(channel);
    let login = auth
        .login(pb::LoginRequest {
            email: "ops@example.com".into(),
            password: admin_password.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.user.unwrap().roles, vec!["admin"]);
    auth.register(pb::RegisterRequest {
        email: "early-bird@example.com".into(),
        password: PASSWORD.into(),
        display_name: "E".into(),
    })
    .await
    .unwrap();

    let promote = [
        "create-admin",
        "--email",
        "early-bird@example.com",
        "--password",
        admin_password,
    ];
    let (status, text) = run_to_end(&promote, &env);
    assert!(
        !status.success(),
        "an existing account is not promoted silently: {text}"
    );
    assert!(text.contains("--promote-existing"), "{text}");
    let mut with_flag = promote.to_vec();
    with_flag.push("--promote-existing");
    let (status, text) = run_to_end(&with_flag, &env);
    assert!(status.success(), "promoted with the flag: {text}");
    let promoted = auth
        .login(pb::LoginRequest {
            email: "early-bird@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut roles = promoted.user.unwrap().roles;
    roles.sort();
    assert_eq!(roles, ["admin", "user"], "its own password stays");
}

/// Tokens naming a `kid` auth-service does not know make it reload its keys
/// from the database (another replica may just have added one), at most
/// once per 5 s however many arrive at once: junk tokens cannot become a
/// load on the database. Counted by `docverify_signing_key_fetches_total`.
#[tokio::test]
async fn unknown_kids_reload_the_keys_at_most_once_per_five_seconds() {
    const RELOADS: &str =
        r#"docverify_signing_key_fetches_total{service="auth-service",cause="unknown_kid"}"#;
    // Keys kept in the database (no AUTH_SIGNING_KEY_FILE): those are the
    // ones another replica can add to.
    let db = TestDb::fresh("authunknownkid").await;
    let env = [
        ("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_DATABASE_URL", db.url.clone()),
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
    ];
    let process = Process::start(BIN.as_ref(), &[], &env, "auth-service").await;
    let channel = connect_when_ready(process.addr).await;
    let stranger = || {
        let mut auth = AuthServiceClient::new(channel.clone());
        let token = TestKey::generate().sign(&serde_json::json!({"sub": "nobody"}));
        async move {
            auth.get_current_user(bearer(pb::GetCurrentUserRequest {}, &token))
                .await
                .expect_err("a key nobody published")
                .code()
        }
    };
    testkit::process::one_key_fetch_per_window(&process, RELOADS, stranger).await;
}
