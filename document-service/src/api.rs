//! `docverify.document.v1.DocumentService`.

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event},
    clock::Clock,
    db::Db,
    identity::{Identity, current_user, request_context},
    page::{PageTokens, page_size},
    policy::Permission,
    proto::document::v1::{self as pb, document_service_server::DocumentService},
    validate,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::{
    documents::{self, DeleteRights, Document, NewDocument, Status as DocStatus},
    upload,
};

const MAX_NOTE_CHARS: usize = 2000;
/// Chunks in flight between the database reader and a slow client.
const DOWNLOAD_BUFFER: usize = 2;

#[derive(Debug, Clone)]
pub struct DocumentApi {
    db: Db,
    clock: Clock,
    page_tokens: PageTokens,
    max_document_bytes: u64,
}

impl DocumentApi {
    pub fn new(db: Db, clock: Clock, page_tokens: PageTokens, max_document_bytes: u64) -> Self {
        Self {
            db,
            clock,
            page_tokens,
            max_document_bytes,
        }
    }

    /// The document, if this caller may see it; otherwise NOT_FOUND, so
    /// that its existence is not revealed.
    async fn visible(&self, me: &Identity, id: Uuid) -> Result<Document> {
        let doc = documents::by_id(self.db.read().await?.conn(), id).await?;
        visible_to(me, doc)
    }

    async fn review(
        &self,
        request: Request<(String, String)>,
        status: DocStatus,
    ) -> Result<Document> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let (raw_id, raw_note) = request.get_ref();
        let mut v = validate::Violations::default();
        let id = v.check(validate::uuid("document_id", raw_id));
        let (field, required) = match status {
            DocStatus::Rejected => ("reason", true),
            _ => ("note", false),
        };
        let note = v.check(validate::text(field, raw_note, required, MAX_NOTE_CHARS));
        v.into_result()?;
        let (Some(id), Some(note)) = (id, note) else {
            return Err(Error::internal("validated fields missing"));
        };
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let Some(doc) = documents::review(tx.conn(), id, me.user_id, status, &note, now).await?
        else {
            let doc = documents::by_id(tx.conn(), id)
                .await?
                .ok_or(Error::not_found("document"))?;
            if doc.owner_id == me.user_id {
                return Err(Error::PermissionDenied {
                    reason: Reason::SelfReview,
                    message: "you cannot review your own document",
                });
            }
            return Err(Error::FailedPrecondition {
                reason: Reason::DocumentNotPending,
                message: "only a pending document can be reviewed",
            });
        };
        let (action, details) = match status {
            DocStatus::Rejected => (Action::DocumentRejected, json!({ "reason": note })),
            _ => (Action::DocumentVerified, json!({ "note": note })),
        };
        let event = Event::new(action, Actor::from(me), "document", id).details(details);
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
        Ok(doc)
    }
}

/// `doc`, if it exists and this caller may see it; otherwise NOT_FOUND, so
/// that its existence is not revealed.
fn visible_to(me: &Identity, doc: Option<Document>) -> Result<Document> {
    let doc = doc.ok_or(Error::not_found("document"))?;
    me.ensure_owner_or(
        doc.owner_id,
        Permission::DocumentsReadOwn,
        Permission::DocumentsReadAny,
        "document",
    )?;
    Ok(doc)
}

const CHANGED_DURING_DOWNLOAD: Error = Error::Aborted {
    reason: Reason::DocumentChanged,
    message: "the document was deleted during the download",
};

/// Binds a page token to the caller and the filters it was issued for.
fn list_scope(me: &Identity, owner: Option<Uuid>, status: Option<DocStatus>) -> String {
    format!(
        "documents|{}|{}|{}",
        me.user_id,
        owner.map(|o| o.to_string()).unwrap_or_default(),
        status.map(DocStatus::as_str).unwrap_or_default()
    )
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
        let mut spooled = upload::receive(request.into_inner(), self.max_document_bytes).await?;

        let id = Uuid::now_v7();
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let doc = documents::insert(
            tx.conn(),
            NewDocument {
                id,
                owner_id: me.user_id,
                title: &spooled.metadata.title,
                filename: &spooled.metadata.filename,
                content_type: &spooled.metadata.content_type,
                size_bytes: spooled.size_bytes,
                sha256: &spooled.sha256,
            },
            now,
        )
        .await?;
        let mut buf = Vec::new();
        let mut seq = 0;
        while spooled.next_chunk(&mut buf).await? {
            documents::insert_chunk(tx.conn(), id, seq, &buf).await?;
            seq += 1;
        }
        let event =
            Event::new(Action::DocumentUploaded, Actor::from(&me), "document", id).details(json!({
                "title": doc.title,
                "filename": doc.filename,
                "content_type": doc.content_type,
                "size_bytes": doc.size_bytes,
                "sha256": doc.sha256,
            }));
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
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
        let id = validate::uuid("document_id", &request.get_ref().document_id)?;
        let doc = self.visible(me, id).await?;
        Ok(Response::new(pb::GetDocumentResponse {
            document: Some(doc.to_proto()),
        }))
    }

    type DownloadDocumentStream = ReceiverStream<Result<pb::DownloadDocumentResponse, Status>>;

    #[tracing::instrument(skip_all)]
    async fn download_document(
        &self,
        request: Request<pb::DownloadDocumentRequest>,
    ) -> Result<Response<Self::DownloadDocumentStream>, Status> {
        let me = current_user(&request)?;
        let id = validate::uuid("document_id", &request.get_ref().document_id)?;
        let doc = self.visible(me, id).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(DOWNLOAD_BUFFER);
        let db = self.db.clone();
        let request_id = shared::identity::current_request_id().unwrap_or_default();
        tokio::spawn(shared::identity::REQUEST_ID.scope(request_id, async move {
            // One chunk in memory at a time; a client that stops reading
            // stops the reads (the channel is bounded). Chunks are read one
            // statement each, so the length is checked as it goes: a
            // document deleted mid-stream ends with ABORTED, never with OK
            // and a short body. (Content never changes in place: there is
            // no update, and ids are never reused.)
            let mut received: i64 = 0;
            for seq in 0.. {
                let chunk = match db.read().await {
                    Ok(mut conn) => documents::chunk(conn.conn(), id, seq).await,
                    Err(e) => Err(e),
                };
                let message = match chunk {
                    Ok(Some(chunk)) => {
                        received += chunk.len() as i64;
                        if received > doc.size_bytes {
                            Err(Status::from(CHANGED_DURING_DOWNLOAD))
                        } else {
                            Ok(pb::DownloadDocumentResponse { chunk })
                        }
                    }
                    Ok(None) if received == doc.size_bytes => return,
                    Ok(None) => Err(Status::from(CHANGED_DURING_DOWNLOAD)),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = message.is_err();
                if tx.send(message).await.is_err() || failed {
                    return;
                }
            }
        }));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let me = current_user(&request)?;
        let req = request.get_ref();
        let mut v = validate::Violations::default();
        let size = v.check(page_size(req.page_size));
        let status = v.check(
            pb::DocumentStatus::try_from(req.status)
                .map(DocStatus::from_proto)
                .map_err(|_| Error::invalid("status", "unknown document status")),
        );
        let owner = if req.owner_id.is_empty() {
            Some(None)
        } else {
            v.check(validate::uuid("owner_id", &req.owner_id).map(Some))
        };
        v.into_result()?;
        let (Some(size), Some(status), Some(owner)) = (size, status, owner) else {
            return Err(Error::internal("validated fields missing").into());
        };
        // Callers who may read only their own documents see only those,
        // whatever owner they ask for.
        let owner = if me.can(Permission::DocumentsReadAny) {
            owner
        } else if owner.is_none_or(|o| o == me.user_id) {
            Some(me.user_id)
        } else {
            return Ok(Response::new(pb::ListDocumentsResponse::default()));
        };
        let scope = list_scope(me, owner, status);
        let before = match self.page_tokens.open(&scope, &req.page_token)? {
            Some(cursor) => Some(
                Uuid::from_slice(&cursor).map_err(|_| Error::invalid("page_token", "malformed"))?,
            ),
            None => None,
        };
        let mut rows = documents::list(
            self.db.read().await?.conn(),
            owner,
            status,
            before,
            size + 1,
        )
        .await?;
        let next_page_token = if rows.len() > size as usize {
            rows.truncate(size as usize);
            rows.last()
                .map(|d| self.page_tokens.seal(&scope, d.id.as_bytes()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListDocumentsResponse {
            documents: rows.iter().map(Document::to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_document(
        &self,
        request: Request<pb::VerifyDocumentRequest>,
    ) -> Result<Response<pb::VerifyDocumentResponse>, Status> {
        let doc = self
            .review(
                request.map(|r| (r.document_id, r.note)),
                DocStatus::Verified,
            )
            .await?;
        Ok(Response::new(pb::VerifyDocumentResponse {
            document: Some(doc.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn reject_document(
        &self,
        request: Request<pb::RejectDocumentRequest>,
    ) -> Result<Response<pb::RejectDocumentResponse>, Status> {
        let doc = self
            .review(
                request.map(|r| (r.document_id, r.reason)),
                DocStatus::Rejected,
            )
            .await?;
        Ok(Response::new(pb::RejectDocumentResponse {
            document: Some(doc.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_document(
        &self,
        request: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<pb::DeleteDocumentResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let id = validate::uuid("document_id", &request.get_ref().document_id)?;
        let now = self.clock.now();
        let rights = DeleteRights {
            caller: me.user_id,
            any: me.can(Permission::DocumentsDeleteAny),
            own_pending: me.can(Permission::DocumentsDeleteOwn),
        };
        let mut tx = self.db.begin().await?;
        let Some(doc) = documents::delete(tx.conn(), id, rights).await? else {
            // Nothing deleted: say why, from the row as it is now.
            let doc = visible_to(me, documents::by_id(tx.conn(), id).await?)?;
            if !(doc.owner_id == me.user_id && rights.own_pending) {
                return Err(Error::PermissionDenied {
                    reason: Reason::PermissionDenied,
                    message: "you may not delete this document",
                }
                .into());
            }
            return Err(Error::FailedPrecondition {
                reason: Reason::DocumentNotPending,
                message: "a reviewed document can only be deleted by an administrator",
            }
            .into());
        };
        let event = Event::new(Action::DocumentDeleted, Actor::from(me), "document", id)
            .details(json!({ "status": doc.status, "sha256": doc.sha256 }));
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
        Ok(Response::new(pb::DeleteDocumentResponse {}))
    }
}
