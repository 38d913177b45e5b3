//! Starts real auth-service and document-service on port 0, each with a fresh
//! database, and talks to them through real tonic clients.

use clap::Parser;
use document_service::TokenValidation;
use shared::proto::{
    audit::v1::{AuditEvent, audit_service_client::AuditServiceClient},
    auth::v1 as auth_pb,
    document::v1::{self as pb, document_service_client::DocumentServiceClient},
};
use tokio::net::TcpListener;
use tonic::{Request, Status, transport::Channel};

pub(crate) use testkit::{
    Served, TestDb, assert_error, audit_events, auth,
    auth::{PASSWORD, TestApp as AuthApp},
    bearer, concurrently, connect_when_ready, verified_log, violated_fields,
};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: document_service::Config,
}

pub(crate) struct DocApp {
    pub addr: std::net::SocketAddr,
    pub channel: Channel,
    pub db: TestDb,
    served: Served,
}

/// document-service's defaults, pointed at `auth` and reading its
/// revocation feed with the service account auth-service bootstrapped.
pub(crate) fn doc_config(auth: &AuthApp, mode: TokenValidation) -> document_service::Config {
    doc_config_at(
        format!("http://{}", auth.addr),
        mode,
        Some(auth.credentials_file()),
    )
}

/// [`doc_config`] for an auth-service that may not be running yet.
pub(crate) fn doc_config_at(
    auth_url: String,
    mode: TokenValidation,
    credentials: Option<std::path::PathBuf>,
) -> document_service::Config {
    let mut config = Args::parse_from(["document-service"]).config;
    config.auth_service_url = auth_url;
    config.token_validation = mode;
    config.client_credentials_file = credentials;
    config
}

/// What ListDocuments with `token` answers: whether the token is accepted.
pub(crate) async fn list_code(docs: &DocApp, token: &str) -> tonic::Code {
    match docs
        .documents()
        .list_documents(bearer(pb::ListDocumentsRequest::default(), token))
        .await
    {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// Starts document-service and waits until it answers.
pub(crate) async fn spawn_docs(config: document_service::Config) -> DocApp {
    spawn_docs_on(config, TestDb::fresh("documents").await).await
}

/// Starts document-service on `db` (a fresh one, or another replica's).
pub(crate) async fn spawn_docs_on(mut config: document_service::Config, db: TestDb) -> DocApp {
    config.database_url = db.url.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Served::spawn(|stopped| {
        document_service::serve(config, listener, async {
            let _ = stopped.await;
        })
    });
    let channel = connect_when_ready(addr).await;
    DocApp {
        addr,
        channel,
        db,
        served,
    }
}

impl DocApp {
    /// Stops it gracefully: its background tasks (the sequencer among
    /// them) end with it.
    pub(crate) async fn stop(&mut self) {
        self.served.stop().await;
    }

    pub(crate) fn addr_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn documents(&self) -> DocumentServiceClient<Channel> {
        DocumentServiceClient::new(self.channel.clone())
    }

    pub(crate) fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }
}

/// Both services, wired together as in production.
pub(crate) struct Stack {
    pub auth: AuthApp,
    pub docs: DocApp,
}

pub(crate) async fn spawn_stack(mode: TokenValidation) -> Stack {
    spawn_stack_with(mode, |_| {}).await
}

pub(crate) async fn spawn_stack_with(
    mode: TokenValidation,
    customize: impl FnOnce(&mut document_service::Config),
) -> Stack {
    let auth = auth::spawn_app().await;
    let mut config = doc_config(&auth, mode);
    customize(&mut config);
    let docs = spawn_docs(config).await;
    Stack { auth, docs }
}

/// [`spawn_stack_with`] (local verification) for a test that needs
/// PostgreSQL: None on SQLite, where the test is SKIPPED and says so.
pub(crate) async fn spawn_postgres_stack(
    what: &str,
    customize: impl FnOnce(&mut document_service::Config),
) -> Option<Stack> {
    let stack = spawn_stack_with(TokenValidation::Local, customize).await;
    (!stack.docs.db.skips_without_postgres(what)).then_some(stack)
}

impl Stack {
    pub(crate) async fn admin(&self) -> String {
        self.auth.admin().await.access_token
    }

    /// Registers `email`, gives it `roles` and returns a fresh access token.
    pub(crate) async fn user_with_roles(&self, email: &str, roles: &[&str]) -> (String, String) {
        let user = self.auth.register(email).await;
        if roles != ["user"] {
            let admin = self.admin().await;
            self.auth
                .users()
                .set_user_roles(bearer(
                    auth_pb::SetUserRolesRequest {
                        user_id: user.id.clone(),
                        roles: roles.iter().map(|r| r.to_string()).collect(),
                    },
                    &admin,
                ))
                .await
                .unwrap();
        }
        let login = self.auth.login(email, PASSWORD).await.unwrap();
        (login.access_token, user.id)
    }

    pub(crate) async fn upload(
        &self,
        token: &str,
        title: &str,
        content: &[u8],
    ) -> Result<pb::Document, Status> {
        upload(&self.docs, token, title, content, 64 * 1024).await
    }

    pub(crate) async fn download(&self, token: &str, id: &str) -> Result<Vec<u8>, Status> {
        let mut stream = self
            .docs
            .documents()
            .download_document(bearer(
                pb::DownloadDocumentRequest {
                    document_id: id.to_owned(),
                },
                token,
            ))
            .await?
            .into_inner();
        let mut content = Vec::new();
        while let Some(message) = stream.message().await? {
            content.extend_from_slice(&message.chunk);
        }
        Ok(content)
    }

    pub(crate) async fn doc_events(&self, token: &str, action: &str) -> Vec<AuditEvent> {
        audit_events(&self.docs.channel, token, action).await
    }
}

pub(crate) fn metadata(title: &str) -> pb::UploadDocumentRequest {
    pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Metadata(
            pb::DocumentMetadata {
                title: title.to_owned(),
                filename: format!("{}.pdf", title.replace(' ', "-")),
                content_type: "application/pdf".to_owned(),
            },
        )),
    }
}

pub(crate) fn chunk(bytes: &[u8]) -> pb::UploadDocumentRequest {
    pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Chunk(bytes.to_vec())),
    }
}

pub(crate) async fn upload(
    docs: &DocApp,
    token: &str,
    title: &str,
    content: &[u8],
    chunk_size: usize,
) -> Result<pb::Document, Status> {
    let mut messages = vec![metadata(title)];
    messages.extend(content.chunks(chunk_size).map(chunk));
    let mut request = Request::new(tokio_stream::iter(messages));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    docs.documents()
        .upload_document(request)
        .await
        .map(|r| r.into_inner().document.unwrap())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    shared::audit::hex(&sha2::Sha256::digest(bytes))
}

/// Rows in a table of document-service's database, behind its back.
pub(crate) async fn count(db: &TestDb, table: &str) -> i64 {
    let db = shared::db::Db::connect(&db.url, &Default::default())
        .await
        .unwrap();
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let n = shared::on_dialect!(db.reader(), p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).fetch_one(p).await.unwrap());
    db.close().await;
    n
}

pub(crate) async fn verify(
    stack: &Stack,
    token: &str,
    id: &str,
) -> Result<pb::Document, tonic::Status> {
    stack
        .docs
        .documents()
        .verify_document(bearer(
            pb::VerifyDocumentRequest {
                document_id: id.into(),
                note: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().document.unwrap())
}

pub(crate) async fn reject(
    stack: &Stack,
    token: &str,
    id: &str,
    reason: &str,
) -> Result<pb::Document, tonic::Status> {
    stack
        .docs
        .documents()
        .reject_document(bearer(
            pb::RejectDocumentRequest {
                document_id: id.into(),
                reason: reason.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().document.unwrap())
}

pub(crate) async fn get(
    stack: &Stack,
    token: &str,
    id: &str,
) -> Result<pb::Document, tonic::Status> {
    stack
        .docs
        .documents()
        .get_document(bearer(
            pb::GetDocumentRequest {
                document_id: id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().document.unwrap())
}

pub(crate) async fn delete(stack: &Stack, token: &str, id: &str) -> Result<(), tonic::Status> {
    stack
        .docs
        .documents()
        .delete_document(bearer(
            pb::DeleteDocumentRequest {
                document_id: id.into(),
            },
            token,
        ))
        .await
        .map(|_| ())
}

pub(crate) const REVOCATION_FEED: &str = "docverify.auth.v1.RevocationService";
pub(crate) const SERVING: i32 =
    tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
pub(crate) const NOT_SERVING: i32 =
    tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// The health of `service` ("" for the whole server), -1 when unanswered.
pub(crate) async fn health(channel: &tonic::transport::Channel, service: &str) -> i32 {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// Whether `service` reaches `want` within 10 s; it is waited for, never
/// read once: on a loaded machine one probe may be slow.
pub(crate) async fn wait_health(
    channel: &tonic::transport::Channel,
    service: &str,
    want: i32,
) -> bool {
    for _ in 0..100 {
        if health(channel, service).await == want {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
