//! DownloadDocument: the content streamed a chunk at a time from the
//! database, with backpressure.

use shared::{Error, Reason, proto::document::v1 as pb};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::{
    documents::{self, Document},
    state::State,
};

/// Chunks in flight between the database reader and a slow client.
const DOWNLOAD_BUFFER: usize = 2;

const CHANGED_DURING_DOWNLOAD: Error = Error::Aborted {
    reason: Reason::DocumentChanged,
    message: "the document was deleted during the download",
};

pub(super) type Chunks = ReceiverStream<Result<pb::DownloadDocumentResponse, Status>>;

/// Streams `doc`'s content (the caller may see it: checked before).
pub(super) fn download(state: &State, doc: Document) -> Chunks {
    let (tx, rx) = tokio::sync::mpsc::channel(DOWNLOAD_BUFFER);
    let db = state.db.clone();
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
                Ok(mut conn) => documents::chunk(conn.conn(), doc.id, seq).await,
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
    ReceiverStream::new(rx)
}
