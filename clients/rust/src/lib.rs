//! Typed gRPC clients for docverify: auth-service (sign-in, sessions, users,
//! service accounts, revocations, its audit log) and document-service
//! (documents, reviews, receipts, its audit log).
//!
//! A [`Session`] holds the caller's access token and renews it shortly
//! before it expires, one renewal shared by every concurrent call; the
//! [`AuthLayer`] puts it on each call and, when a call is refused with
//! UNAUTHENTICATED, renews it and sends the call once more.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use docverify_client::{Clients, proto::document::v1::ListDocumentsRequest};
//!
//! let auth = docverify_client::channel("http://127.0.0.1:50051")?;
//! let documents = docverify_client::channel("http://127.0.0.1:50052")?;
//! let session = docverify_client::Session::login(auth.clone(), "ann@example.com", "…").await?;
//! let mut clients = Clients::new(&session, auth, documents);
//! let page = clients.documents.list_documents(ListDocumentsRequest::default()).await?;
//! # Ok(()) }
//! ```

mod layer;
pub mod proto;
mod session;

use tonic::transport::{Channel, Endpoint};
use tower::Layer as _;

pub use layer::{AuthLayer, Authenticated, REPLAY_LIMIT};
pub use session::Session;

use proto::{
    audit::v1::audit_service_client::AuditServiceClient,
    auth::v1::{
        auth_service_client::AuthServiceClient, revocation_service_client::RevocationServiceClient,
        service_account_service_client::ServiceAccountServiceClient,
        user_service_client::UserServiceClient,
    },
    document::v1::document_service_client::DocumentServiceClient,
};

/// A lazily connected channel to `url` (`http://` or `https://` with the
/// public web roots): it connects on first use and reconnects by itself.
pub fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())?;
    let endpoint = if url.starts_with("https://") {
        endpoint.tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())?
    } else {
        endpoint
    };
    Ok(endpoint.connect_lazy())
}

/// Every service of both docverify services, each call authenticated by
/// one session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Clients {
    pub auth: AuthServiceClient<Authenticated>,
    pub users: UserServiceClient<Authenticated>,
    pub service_accounts: ServiceAccountServiceClient<Authenticated>,
    pub revocations: RevocationServiceClient<Authenticated>,
    /// auth-service's audit log.
    pub auth_audit: AuditServiceClient<Authenticated>,
    pub documents: DocumentServiceClient<Authenticated>,
    /// document-service's audit log.
    pub document_audit: AuditServiceClient<Authenticated>,
}

impl Clients {
    /// The clients of auth-service on `auth` and document-service on
    /// `documents`, authenticated by `session`.
    pub fn new(session: &Session, auth: Channel, documents: Channel) -> Self {
        let layer = AuthLayer::new(session.clone());
        let auth = layer.layer(auth);
        let documents = layer.layer(documents);
        Self {
            auth: AuthServiceClient::new(auth.clone()),
            users: UserServiceClient::new(auth.clone()),
            service_accounts: ServiceAccountServiceClient::new(auth.clone()),
            revocations: RevocationServiceClient::new(auth.clone()),
            auth_audit: AuditServiceClient::new(auth),
            documents: DocumentServiceClient::new(documents.clone()),
            document_audit: AuditServiceClient::new(documents),
        }
    }
}
