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

async fn start_docs(db: &TestDb, auth_url: String, extra: &[(&str, String)]) -> Process {
    let mut env = vec![
        ("DOCUMENT_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("DOCUMENT_DATABASE_URL", db.url.clone()),
        ("AUTH_SERVICE_URL", auth_url),
        ("SHUTDOWN_DRAIN_TIMEOUT", "5s".to_owned()),
        ("HEALTH_CHECK_INTERVAL", "1s".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    Process::start(BIN.as_ref(), &[], &env, "document-service").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_completes_it_or_leaves_nothing() {
    let auth = auth::spawn_app().await;
    let token = auth.user("term@example.com").await.access_token;
    let db = TestDb::fresh("docbin").await;
    let mut docs = start_docs(&db, format!("http://{}", auth.addr), &[]).await;
    let channel = connect_when_ready(docs.addr).await;

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
    // The in-flight upload may finish within the drain timeout.
    for _ in 0..8 {
        if tx.send(chunk(&piece)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let outcome = upload.await.unwrap();
    let status = docs
        .wait_for_exit(Duration::from_secs(15))
        .await
        .expect("exits within the drain timeout");
    assert!(status.success(), "{status}");

    let stored = count(&db, "documents").await;
    match outcome {
        Ok(response) => {
            let doc = response.into_inner().document.unwrap();
            assert_eq!(doc.size_bytes, 16 * 256 * 1024, "completed whole");
            assert_eq!(stored, 1);
        }
        Err(status) => {
            assert_eq!(stored, 0, "a failed upload leaves nothing: {status:?}");
            assert_eq!(count(&db, "document_chunks").await, 0);
        }
    }
    // New connections are refused once it stopped.
    assert!(
        DocumentServiceClient::connect(format!("http://{}", docs.addr))
            .await
            .is_err(),
        "the listener is closed"
    );
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
    let docs = start_docs(
        &db,
        format!("https://localhost:{}", auth.addr.port()),
        &[
            ("AUTH_CA_FILE", ca.display().to_string()),
            ("TLS_CERT_FILE", client_cert.display().to_string()),
            ("TLS_KEY_FILE", client_key.display().to_string()),
        ],
    )
    .await;
    let mut tls = ClientTlsConfig::new()
        .domain_name("document-service")
        .ca_certificate(Certificate::from_pem(&pki.ca_pem));
    tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    let docs_channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", docs.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut documents = DocumentServiceClient::new(docs_channel);
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
}
