//! The real document-service binary as a child process (auth-service runs
//! in-process beside it): SIGTERM during an upload, TLS with a CA made here,
//! mutual TLS between the services.

use std::time::Duration;

use shared::proto::document::v1::{
    ListDocumentsRequest, document_service_client::DocumentServiceClient,
};
use testkit::{Process, TestDb};
use tonic::{
    Request,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_document-service");

/// The document-service binary on `db`, reaching `auth` at `auth_url` with
/// the service account auth-service bootstrapped.
async fn start_docs(
    db: &TestDb,
    auth: &AuthApp,
    auth_url: String,
    extra: &[(&str, String)],
) -> Process {
    let mut env = vec![
        ("DOCUMENT_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("DOCUMENT_DATABASE_URL", db.url.clone()),
        ("AUTH_SERVICE_URL", auth_url),
        (
            "DOCUMENT_CLIENT_CREDENTIALS_FILE",
            auth.credentials_file().display().to_string(),
        ),
        ("SHUTDOWN_DRAIN_TIMEOUT", "5s".to_owned()),
        ("HEALTH_CHECK_INTERVAL", "1s".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    Process::start(BIN.as_ref(), &[], &env, "document-service").await
}

/// SIGTERM while an upload is in flight: health turns NOT_SERVING at once
/// (seen on a Watch opened before), the listener closes (a new connection
/// is refused while the upload is still being sent), the upload completes
/// whole, and the process exits cleanly within the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_drains_it_and_refuses_new_connections() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let auth = auth::spawn_app().await;
    let token = auth.user("term@example.com").await.access_token;
    let db = TestDb::fresh("docbin").await;
    let mut docs = start_docs(&db, &auth, format!("http://{}", auth.addr), &[]).await;
    let channel = connect_when_ready(docs.addr).await;
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut client = DocumentServiceClient::new(channel.clone());
    let upload = tokio::spawn(async move { client.upload_document(request).await });
    tx.send(metadata("interrupted")).await.unwrap();
    let piece = vec![7u8; 256 * 1024];
    for _ in 0..8 {
        tx.send(chunk(&piece)).await.unwrap();
    }
    docs.terminate();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32,
        "health says NOT_SERVING before the process exits"
    );
    drop(watch);
    // The upload is still open (its sender is held); new connections are
    // refused meanwhile.
    let mut refused = false;
    for _ in 0..100 {
        if DocumentServiceClient::connect(format!("http://{}", docs.addr))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener closed during the drain");
    assert!(!upload.is_finished(), "the upload was still in flight");
    for _ in 0..8 {
        tx.send(chunk(&piece))
            .await
            .expect("the in-flight upload keeps streaming during the drain");
    }
    drop(tx);
    let doc = upload
        .await
        .unwrap()
        .expect("the in-flight upload completes")
        .into_inner()
        .document
        .unwrap();
    assert_eq!(doc.size_bytes, 16 * 256 * 1024, "completed whole");
    let status = docs
        .wait_for_exit(Duration::from_secs(15))
        .await
        .expect("exits within the drain timeout");
    assert!(status.success(), "{status}");
    assert_eq!(count(&db, "documents").await, 1);
    assert_eq!(count(&db, "document_chunks").await, 16);
}

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "docverify test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost");
    let (client_cert, client_key) = leaf("document-service");
    Pki {
        ca_pem: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
        .tls_config(tls)?
        .connect()
        .await
}

/// A channel to a document-service that serves TLS, trusting the test CA
/// and presenting its client certificate.
async fn docs_tls_channel(addr: std::net::SocketAddr, pki: &Pki) -> Channel {
    let tls = ClientTlsConfig::new()
        .domain_name("document-service")
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn both_services_over_tls_with_mutual_tls_between_them() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca = write("ca.pem", &pki.ca_pem);
    let server_cert = write("server.pem", &pki.server_cert);
    let server_key = write("server.key", &pki.server_key);
    let client_cert = write("client.pem", &pki.client_cert);
    let client_key = write("client.key", &pki.client_key);

    // auth-service requires client certificates from our CA.
    let auth = auth::spawn_app_with({
        let (cert, key, ca) = (server_cert.clone(), server_key.clone(), ca.clone());
        move |c| {
            c.server.tls_cert_file = Some(cert);
            c.server.tls_key_file = Some(key);
            c.server.tls_client_ca_file = Some(ca);
        }
    })
    .await;
    let mut auth_channel = None;
    for _ in 0..200 {
        if let Ok(channel) = tls_channel(
            auth.addr,
            &pki.ca_pem,
            Some((&pki.client_cert, &pki.client_key)),
        )
        .await
        {
            auth_channel = Some(channel);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut auth_client = shared::proto::auth::v1::auth_service_client::AuthServiceClient::new(
        auth_channel.expect("auth-service up over TLS"),
    );
    let without_cert = tls_channel(auth.addr, &pki.ca_pem, None).await;
    let refused = match without_cert {
        Err(_) => true,
        Ok(channel) => {
            shared::proto::auth::v1::auth_service_client::AuthServiceClient::new(channel)
                .list_signing_keys(shared::proto::auth::v1::ListSigningKeysRequest {})
                .await
                .is_err()
        }
    };
    assert!(refused, "mutual TLS: no client certificate, no service");
    // A certificate chain from another CA, either way round, is refused.
    let stranger = self::pki();
    let refused = |connected: Result<Channel, tonic::transport::Error>| async move {
        match connected {
            Err(_) => true,
            Ok(channel) => {
                shared::proto::auth::v1::auth_service_client::AuthServiceClient::new(channel)
                    .list_signing_keys(shared::proto::auth::v1::ListSigningKeysRequest {})
                    .await
                    .is_err()
            }
        }
    };
    for (trusted, (cert, key), why) in [
        (
            &stranger.ca_pem,
            (&pki.client_cert, &pki.client_key),
            "a client that trusts another CA does not accept the server",
        ),
        (
            &pki.ca_pem,
            (&stranger.client_cert, &stranger.client_key),
            "a client certificate from another CA is refused",
        ),
    ] {
        let connected = tls_channel(auth.addr, trusted, Some((cert, key))).await;
        assert!(refused(connected).await, "{why}");
    }
    auth_client
        .register(shared::proto::auth::v1::RegisterRequest {
            email: "tls@example.com".into(),
            password: PASSWORD.into(),
            display_name: "T".into(),
        })
        .await
        .unwrap();
    let token = auth_client
        .login(shared::proto::auth::v1::LoginRequest {
            email: "tls@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;

    // document-service serves TLS itself and reaches auth-service over
    // mutual TLS (its certificate is the client certificate).
    let db = TestDb::fresh("doctls").await;
    let tls_docs = async |db: &TestDb, ca: std::path::PathBuf| {
        start_docs(
            db,
            &auth,
            format!("https://localhost:{}", auth.addr.port()),
            &[
                ("AUTH_CA_FILE", ca.display().to_string()),
                ("TLS_CERT_FILE", client_cert.display().to_string()),
                ("TLS_KEY_FILE", client_key.display().to_string()),
            ],
        )
        .await
    };
    let docs = tls_docs(&db, ca.clone()).await;
    let mut documents = DocumentServiceClient::new(docs_tls_channel(docs.addr, &pki).await);
    let mut listed = Err(tonic::Status::unavailable("not yet"));
    for _ in 0..100 {
        listed = documents
            .list_documents(bearer(ListDocumentsRequest::default(), &token))
            .await;
        if listed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    listed.expect("document-service fetched the keys over mutual TLS and accepted the token");
    let plain = DocumentServiceClient::connect(format!("http://{}", docs.addr)).await;
    let plaintext_refused = match plain {
        Err(_) => true,
        Ok(mut client) => client
            .list_documents(ListDocumentsRequest::default())
            .await
            .is_err(),
    };
    assert!(plaintext_refused, "no plaintext on a TLS port");

    // A document-service told to trust another CA for auth-service cannot
    // fetch the keys: it fails closed (UNAVAILABLE), never open.
    let wrong_ca = write("stranger-ca.pem", &stranger.ca_pem);
    let db = TestDb::fresh("docwrongca").await;
    let misconfigured = tls_docs(&db, wrong_ca).await;
    let mut documents =
        DocumentServiceClient::new(docs_tls_channel(misconfigured.addr, &pki).await);
    for _ in 0..10 {
        let status = documents
            .list_documents(bearer(ListDocumentsRequest::default(), &token))
            .await
            .expect_err("no keys: no access");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// document-service's own log at trace level (JSON): the document's
/// content and the caller's token never appear, and each call's line names
/// the user, the status and the latency. gRPC-Web with CORS is served on
/// its port as on auth-service's.
#[tokio::test]
async fn the_trace_log_keeps_content_and_tokens_out_and_grpc_web_is_served() {
    let auth = auth::spawn_app().await;
    let login = auth.user("quiet@example.com").await;
    let (token, user_id) = (login.access_token, login.user.unwrap().id);
    let db = TestDb::fresh("doclog").await;
    let mut docs = start_docs(
        &db,
        &auth,
        format!("http://{}", auth.addr),
        &[
            ("RUST_LOG", "trace".into()),
            ("LOG_FORMAT", "json".into()),
            ("CORS_ALLOWED_ORIGINS", "https://app.example.com".into()),
        ],
    )
    .await;
    let channel = connect_when_ready(docs.addr).await;
    let marker = "CONFIDENTIAL-CONTENT-7f3a9c";
    let content = marker.repeat(1000).into_bytes();
    let mut documents = DocumentServiceClient::new(channel);
    let mut request = Request::new(tokio_stream::iter(vec![
        metadata("secret plans"),
        chunk(&content),
    ]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let doc = documents
        .upload_document(request)
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    let mut stream = documents
        .download_document(bearer(
            shared::proto::document::v1::DownloadDocumentRequest {
                document_id: doc.id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}
    documents
        .list_documents(bearer(ListDocumentsRequest::default(), &token))
        .await
        .unwrap();

    // gRPC-Web over HTTP/1.1 from an allowed origin: an empty
    // ListDocumentsRequest, framed (flag 0, length 0).
    let addr = docs.addr;
    let mut web = format!(
        "POST /docverify.document.v1.DocumentService/ListDocuments HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nOrigin: https://app.example.com\r\n\
         Authorization: Bearer {token}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    web.extend_from_slice(&[0, 0, 0, 0, 0]);
    // On a blocking thread: this runtime hosts auth-service, which
    // document-service calls if its revocation feed has gone stale.
    let response = testkit::http1(addr, web).await;
    let text = String::from_utf8_lossy(&response).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("access-control-allow-origin: https://app.example.com"),
        "{text}"
    );
    assert!(text.contains("grpc-status:0"), "{text}");
    assert!(
        text.contains("secret plans"),
        "the listing came back: {text}"
    );

    docs.terminate();
    docs.wait_for_exit(Duration::from_secs(10))
        .await
        .expect("exits after SIGTERM");
    let log = docs.output();
    assert!(log.len() > 10_000, "trace logs plenty: {} bytes", log.len());
    assert!(!log.contains(marker), "document content appears in the log");
    assert!(!log.contains(&token), "the access token appears in the log");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "the token's signature appears");
    let finished: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["fields"]["message"] == "rpc finished"
                && l["span"]["method"] == "/docverify.document.v1.DocumentService/ListDocuments"
        })
        .collect();
    assert!(!finished.is_empty(), "a line per call:\n{log}");
    for line in finished {
        let span = &line["span"];
        assert_eq!(span["user_id"], user_id.as_str(), "{line}");
        assert_eq!(line["fields"]["code"], "Ok", "{line}");
        assert!(line["fields"]["latency_us"].as_u64().is_some(), "{line}");
        assert!(span["request_id"].as_str().is_some(), "{line}");
    }
}

/// A bad setting stops document-service before it listens, naming the
/// setting as operators set it (the environment variable).
#[tokio::test]
async fn bad_settings_stop_the_service_naming_them() {
    let db = TestDb::fresh("badsettings").await;
    for (setting, value) in [
        ("MAX_DOCUMENT_BYTES", "lots"),
        ("TOKEN_VALIDATION", "sometimes"),
        ("SIGNING_KEYS_REFRESH", "0s"),
        ("AUTH_SERVICE_URL", "not a url"),
        ("DOCUMENT_DATABASE_URL", "mysql://somewhere/db"),
    ] {
        let env = [
            ("DOCUMENT_DATABASE_URL", db.url.clone()),
            (setting, value.to_owned()),
        ];
        let (status, text) = testkit::process::run_to_end(BIN.as_ref(), &[], &env);
        assert!(!status.success(), "{setting}={value}: {text}");
        assert!(text.contains(setting), "{setting}={value}: {text}");
        assert!(!text.contains("listening"), "{setting}={value}: {text}");
    }
}

/// One small upload through `channel`; whether it was answered OK.
async fn small_upload(channel: &Channel, token: &str, title: String) -> bool {
    let messages = vec![metadata(&title), chunk(b"small")];
    DocumentServiceClient::new(channel.clone())
        .upload_document(bearer(tokio_stream::iter(messages), token))
        .await
        .is_ok()
}

/// kill -9 of the replica that sequences, three times under load: another
/// replica takes sequencing over (the killed one's batch rolls back with
/// its connection, and its lock with it), and the log that results has
/// every committed event exactly once, gapless, its tree and checkpoints
/// intact. The eager replica looks every 5 ms, the one that survives every
/// 250 ms, so it is the eager one that is killed mid-batch, as a rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_sequencer_hands_sequencing_to_another_replica() {
    let auth = auth::spawn_app().await;
    let admin = auth.admin().await.access_token;
    let owner = auth.user("kill@example.com").await.access_token;
    let db = TestDb::fresh("dockill").await;
    let url = format!("http://{}", auth.addr);
    let interval = |i: &str| [("AUDIT_SEQUENCE_INTERVAL", i.to_owned())];
    let survivor = start_docs(&db, &auth, url.clone(), &interval("250ms")).await;
    let survivor_channel = connect_when_ready(survivor.addr).await;
    let mut handovers = Vec::new();
    for round in 0..3 {
        let mut eager = start_docs(&db, &auth, url.clone(), &interval("5ms")).await;
        let eager_channel = connect_when_ready(eager.addr).await;
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (channel, token) = if w % 2 == 0 {
                    (eager_channel.clone(), owner.clone())
                } else {
                    (survivor_channel.clone(), owner.clone())
                };
                tokio::spawn(async move {
                    for i in 0.. {
                        small_upload(&channel, &token, format!("k{round}.{w}.{i}")).await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(400)).await;
        eager.kill();
        let killed = shared::clock::monotonic();
        for writer in &writers {
            writer.abort();
        }
        // The first event written after the kill, and when it is a leaf.
        let title = format!("after kill {round}");
        assert!(small_upload(&survivor_channel, &owner, title.clone()).await);
        loop {
            let events =
                testkit::audit_events(&survivor_channel, &admin, "document.uploaded").await;
            if !events.is_empty() && events.iter().all(|e| !e.pending) {
                let sequenced = events.iter().any(|e| e.details_json.contains(&title));
                if sequenced {
                    break;
                }
            }
            assert!(
                killed.elapsed() < Duration::from_secs(10),
                "no handover: {}",
                survivor.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        handovers.push(killed.elapsed());
    }
    let report = verified_log(&survivor_channel, &admin).await;
    assert!(report.valid, "{report:?}");
    let leaves = count(&db, "audit_leaves").await;
    assert_eq!(leaves, count(&db, "audit_events").await, "every event once");
    assert_eq!(
        count(&db, "documents").await,
        count(&db, "audit_events WHERE action = 'document.uploaded'").await,
        "each committed upload has its event in the log"
    );
    assert_eq!(report.events_checked, leaves);
    let slowest = handovers.iter().max().copied().unwrap_or_default();
    testkit::measured(format_args!(
        "kill -9 of the sequencing replica: sequencing resumed after {handovers:?} ({leaves} events, {} checkpoints checked)",
        report.checkpoints_checked
    ));
    assert!(
        slowest < Duration::from_secs(5),
        "handover took {slowest:?}"
    );
}

/// Tokens naming a `kid` document-service does not know make it fetch the
/// keys from auth-service again (a key may just have rotated in), at most
/// once per 5 s however many arrive at once: junk tokens cannot become a
/// flood of calls to auth-service. Counted by
/// `docverify_signing_key_fetches_total`.
#[tokio::test]
async fn unknown_kids_refetch_the_keys_at_most_once_per_five_seconds() {
    const REFETCHES: &str =
        r#"docverify_signing_key_fetches_total{service="document-service",cause="unknown_kid"}"#;
    let mut auth = auth::spawn_app().await;
    let token = auth.user("known@example.com").await.access_token;
    let db = TestDb::fresh("docunknownkid").await;
    let docs = start_docs(
        &db,
        &auth,
        format!("http://{}", auth.addr),
        &[
            ("METRICS_ADDR", "127.0.0.1:0".into()),
            ("SIGNING_KEYS_REFRESH", "2s".into()),
        ],
    )
    .await;
    let channel = connect_when_ready(docs.addr).await;
    DocumentServiceClient::new(channel.clone())
        .list_documents(bearer(ListDocumentsRequest::default(), &token))
        .await
        .expect("the published key verifies");
    let stranger = || {
        let mut documents = DocumentServiceClient::new(channel.clone());
        let token = auth::TestKey::generate()
            .sign(&auth.claims(&uuid::Uuid::now_v7().to_string(), &["user"]));
        async move {
            documents
                .list_documents(bearer(ListDocumentsRequest::default(), &token))
                .await
                .expect_err("a key nobody published")
                .code()
        }
    };
    testkit::process::one_key_fetch_per_window(&docs, REFETCHES, stranger).await;

    // With auth-service gone, the keys it had are kept and asked for again
    // at the refresh interval (2 s), not at the 500 ms of start-up: no
    // retry storm against a service that is down. In 5 s, at most 4 tries
    // (the fast retry would make about 9).
    const REFRESHES: &str =
        r#"docverify_signing_key_fetches_total{service="document-service",cause="refresh"}"#;
    let refreshes = || async { testkit::process::sample(&docs.metrics().await, REFRESHES) };
    auth.stop().await;
    let before = refreshes().await.expect("refreshes counted");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tries = refreshes().await.expect("refreshes counted") - before;
    testkit::measured(format_args!(
        "{tries} key fetches in 5 s with auth-service down"
    ));
    assert!((1.0..=4.0).contains(&tries), "{tries} fetches in 5 s");
}

/// `docverify_audit_tree_size` follows the log: once two uploads are
/// leaves, the gauge reads the size of the newest checkpoint.
#[tokio::test]
async fn the_audit_logs_size_is_a_metric() {
    const SIZE: &str = r#"docverify_audit_tree_size{service="document-service"}"#;
    let auth = auth::spawn_app().await;
    let token = auth.user("counted@example.com").await.access_token;
    let db = TestDb::fresh("docauditsize").await;
    let docs = start_docs(
        &db,
        &auth,
        format!("http://{}", auth.addr),
        &[("METRICS_ADDR", "127.0.0.1:0".into())],
    )
    .await;
    let channel = connect_when_ready(docs.addr).await;
    for title in ["one", "two"] {
        assert!(small_upload(&channel, &token, title.into()).await);
    }
    let mut audit =
        shared::proto::audit::v1::audit_service_client::AuditServiceClient::new(channel.clone());
    let (mut size, mut gauge) = (0, None);
    for _ in 0..100 {
        size = audit
            .get_checkpoint(shared::proto::audit::v1::GetCheckpointRequest {})
            .await
            .unwrap()
            .into_inner()
            .checkpoint
            .unwrap()
            .tree_size;
        gauge = testkit::process::sample(&docs.metrics().await, SIZE);
        if size >= 2 && gauge == Some(size as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(size >= 2, "{size}");
    assert_eq!(gauge, Some(size as f64));
}
