//! `db-read` and `db-page`'s server: tonic with no layers, whose GetDocument
//! and ListDocuments make document-service's own reads
//! (`document_service::baseline`) through a pool like its own on the same
//! database, and nothing else: no token, no policy, no page token. The
//! ceiling of framework plus driver for `get`, `list` and `me`.

use std::pin::Pin;

use shared::{
    db::Db,
    proto::document::v1::{self as pb, document_service_server::DocumentService},
};
use tonic::{Request, Response, Status, Streaming};

/// The page `list` asks for.
pub(crate) const PAGE: u32 = 50;

#[derive(Debug, Clone)]
pub(crate) struct BareDocuments {
    pub(crate) db: Db,
}

fn failed(e: shared::Error) -> Status {
    Status::internal(e.to_string())
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not a baseline"))
}

#[tonic::async_trait]
impl DocumentService for BareDocuments {
    type DownloadDocumentStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::DownloadDocumentResponse, Status>> + Send>,
    >;

    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::GetDocumentResponse>, Status> {
        let id = request
            .get_ref()
            .document_id
            .parse()
            .map_err(|_| Status::invalid_argument("document_id"))?;
        let document = document_service::baseline::read_one(&self.db, id)
            .await
            .map_err(failed)?
            .ok_or_else(|| Status::not_found("document"))?;
        Ok(Response::new(pb::GetDocumentResponse {
            document: Some(document),
        }))
    }

    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let owner = request
            .get_ref()
            .owner_id
            .parse()
            .map_err(|_| Status::invalid_argument("owner_id"))?;
        let documents = document_service::baseline::read_page(&self.db, owner, PAGE)
            .await
            .map_err(failed)?;
        Ok(Response::new(pb::ListDocumentsResponse {
            documents,
            next_page_token: String::new(),
        }))
    }

    async fn upload_document(
        &self,
        _request: Request<Streaming<pb::UploadDocumentRequest>>,
    ) -> Result<Response<pb::UploadDocumentResponse>, Status> {
        unimplemented()
    }

    async fn download_document(
        &self,
        _request: Request<pb::DownloadDocumentRequest>,
    ) -> Result<Response<Self::DownloadDocumentStream>, Status> {
        unimplemented()
    }

    async fn verify_document(
        &self,
        _request: Request<pb::VerifyDocumentRequest>,
    ) -> Result<Response<pb::VerifyDocumentResponse>, Status> {
        unimplemented()
    }

    async fn reject_document(
        &self,
        _request: Request<pb::RejectDocumentRequest>,
    ) -> Result<Response<pb::RejectDocumentResponse>, Status> {
        unimplemented()
    }

    async fn delete_document(
        &self,
        _request: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<pb::DeleteDocumentResponse>, Status> {
        unimplemented()
    }

    async fn get_receipt(
        &self,
        _request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::GetReceiptResponse>, Status> {
        unimplemented()
    }
}
