//! `docverify.document.v1.DocumentService`: each RPC parses its request
//! into a command and calls the function named for it.

use std::sync::Arc;

use shared::{
    Error, Reason, Result, audit,
    identity::{Identity, current_user, request_context},
    policy::Permission,
    proto::document::v1::{self as pb, document_service_server::DocumentService},
};
use tonic::{Request, Response, Status, Streaming};

use super::{delete, download, list, review, upload};
use crate::{
    documents::{self, Document},
    fields::DocumentId,
    state::State,
};

#[derive(Debug, Clone)]
pub(crate) struct DocumentApi {
    state: Arc<State>,
}

impl DocumentApi {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// The document, if this caller may see it; otherwise NOT_FOUND, so
    /// that its existence is not revealed.
    async fn visible(&self, me: &Identity, DocumentId(id): DocumentId) -> Result<Document> {
        let doc = documents::by_id(self.state.db.read().await?.conn(), id).await?;
        visible_to(me, doc)
    }
}

/// `doc`, if it exists and this caller may see it; otherwise NOT_FOUND, so
/// that its existence is not revealed.
pub(super) fn visible_to(me: &Identity, doc: Option<Document>) -> Result<Document> {
    let doc = doc.ok_or(Error::not_found("document"))?;
    me.ensure_owner_or(
        doc.owner_id,
        Permission::DocumentsReadOwn,
        Permission::DocumentsReadAny,
        "document",
    )?;
    Ok(doc)
}

#[tonic::async_trait]
impl DocumentService for DocumentApi {
    #[tracing::instrument(skip_all)]
    async fn upload_document(
        &self,
        request: Request<Streaming<pb::UploadDocumentRequest>>,
    ) -> Result<Response<pb::UploadDocumentResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?.clone();
        let doc = upload::upload(&self.state, &ctx, &me, request.into_inner()).await?;
        Ok(Response::new(pb::UploadDocumentResponse {
            document: Some(doc.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::GetDocumentResponse>, Status> {
        let me = current_user(&request)?;
        let id = DocumentId::parse(&request.get_ref().document_id)?;
        let doc = self.visible(me, id).await?;
        Ok(Response::new(pb::GetDocumentResponse {
            document: Some(doc.to_proto()),
        }))
    }

    type DownloadDocumentStream = download::Chunks;

    #[tracing::instrument(skip_all)]
    async fn download_document(
        &self,
        request: Request<pb::DownloadDocumentRequest>,
    ) -> Result<Response<Self::DownloadDocumentStream>, Status> {
        let me = current_user(&request)?;
        let id = DocumentId::parse(&request.get_ref().document_id)?;
        let doc = self.visible(me, id).await?;
        Ok(Response::new(download::download(&self.state, doc)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let me = current_user(&request)?.clone();
        let cmd = request.into_inner().try_into()?;
        Ok(Response::new(list::list(&self.state, &me, cmd).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_document(
        &self,
        request: Request<pb::VerifyDocumentRequest>,
    ) -> Result<Response<pb::VerifyDocumentResponse>, Status> {
        let started = shared::clock::monotonic();
        let ctx = request_context(&request);
        let me = current_user(&request)?.clone();
        let deadline = grpc_timeout(request.metadata());
        let cmd = request.into_inner().try_into()?;
        let (doc, position) = review::review(&self.state, &ctx, &me, cmd).await?;
        let receipt = review::receipt(&self.state, position, started, deadline).await?;
        Ok(Response::new(pb::VerifyDocumentResponse {
            document: Some(doc.to_proto()),
            receipt,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn reject_document(
        &self,
        request: Request<pb::RejectDocumentRequest>,
    ) -> Result<Response<pb::RejectDocumentResponse>, Status> {
        let started = shared::clock::monotonic();
        let ctx = request_context(&request);
        let me = current_user(&request)?.clone();
        let deadline = grpc_timeout(request.metadata());
        let cmd = request.into_inner().try_into()?;
        let (doc, position) = review::review(&self.state, &ctx, &me, cmd).await?;
        let receipt = review::receipt(&self.state, position, started, deadline).await?;
        Ok(Response::new(pb::RejectDocumentResponse {
            document: Some(doc.to_proto()),
            receipt,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_document(
        &self,
        request: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<pb::DeleteDocumentResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let id = DocumentId::parse(&request.get_ref().document_id)?;
        delete::delete(&self.state, &ctx, me, id).await?;
        Ok(Response::new(pb::DeleteDocumentResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::GetReceiptResponse>, Status> {
        let started = shared::clock::monotonic();
        let me = current_user(&request)?;
        let id = DocumentId::parse(&request.get_ref().document_id)?;
        let doc = self.visible(me, id).await?;
        let mut conn = self.state.db.read().await?;
        let position = audit::latest_about(
            conn.conn(),
            "document",
            &doc.id.to_string(),
            &review::REVIEWS,
        )
        .await?
        .ok_or(Error::not_found("receipt"))?;
        drop(conn);
        let receipt = review::receipt(
            &self.state,
            position,
            started,
            grpc_timeout(request.metadata()),
        )
        .await?
        .ok_or(Error::FailedPrecondition {
            reason: Reason::ReceiptPending,
            message: "the review is not in the audit log yet; retry shortly",
        })?;
        Ok(Response::new(pb::GetReceiptResponse {
            receipt: Some(receipt),
        }))
    }
}

/// The caller's `grpc-timeout`, if it sent one.
fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    shared::layer::grpc_timeout(&metadata.clone().into_headers())
}
