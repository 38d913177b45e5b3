//! Receiving an upload with bounded memory.
//!
//! The stream is spooled while its size and SHA-256 are computed: in memory
//! up to one stored chunk (most documents, and no file system round trips
//! for them), past that to an anonymous temporary file (deleted by the OS
//! when dropped), so memory stays bounded at any size. Only then does one
//! short transaction store row, chunks and audit event. A failed, cancelled
//! or over-limit upload therefore leaves nothing behind, and a slow client
//! never holds a database transaction (on SQLite, the writer) open.

use serde_json::json;
use sha2::{Digest, Sha256};
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event},
    identity::{Identity, RequestContext},
    proto::document::v1 as pb,
    validate::AllFields,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::Streaming;
use uuid::Uuid;

use crate::{
    documents::{self, CHUNK_BYTES, Document, NewDocument},
    state::State,
};

const MAX_TITLE_CHARS: usize = 200;
const MAX_FILENAME_CHARS: usize = 255;
const MAX_CONTENT_TYPE_CHARS: usize = 127;

/// Validated metadata from the first message.
#[derive(Debug)]
pub(super) struct Metadata {
    pub title: String,
    pub filename: String,
    pub content_type: String,
}

impl TryFrom<&pb::DocumentMetadata> for Metadata {
    type Error = Error;

    fn try_from(m: &pb::DocumentMetadata) -> Result<Self> {
        let (title, filename, content_type) = (
            shared::validate::text("metadata.title", &m.title, true, MAX_TITLE_CHARS),
            filename(&m.filename),
            content_type(&m.content_type),
        )
            .all()?;
        Ok(Self {
            title,
            filename,
            content_type,
        })
    }
}

/// A file name without any path.
fn filename(raw: &str) -> Result<String> {
    let name = shared::validate::text("metadata.filename", raw, true, MAX_FILENAME_CHARS)?;
    if name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err(Error::invalid(
            "metadata.filename",
            "must be a file name, not a path",
        ));
    }
    Ok(name)
}

/// A media type such as `application/pdf`; empty means octet-stream.
fn content_type(raw: &str) -> Result<String> {
    let value = raw.trim().to_ascii_lowercase();
    if value.is_empty() {
        return Ok("application/octet-stream".to_owned());
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let valid = value.len() <= MAX_CONTENT_TYPE_CHARS
        && !value.chars().any(char::is_control)
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s));
    if !valid {
        return Err(Error::invalid(
            "metadata.content_type",
            "must be a media type such as application/pdf",
        ));
    }
    Ok(value)
}

/// A received upload, waiting to be stored.
#[derive(Debug)]
pub(super) struct Spooled {
    pub metadata: Metadata,
    pub size_bytes: i64,
    pub sha256: String,
    body: Body,
}

/// Where a received upload waits.
#[derive(Debug)]
enum Body {
    /// At most one chunk, handed out once.
    Memory(Option<Vec<u8>>),
    File(tokio::fs::File),
}

/// Spools to memory up to [`CHUNK_BYTES`], then to a temporary file.
#[derive(Debug, Default)]
struct Spool {
    head: Vec<u8>,
    file: Option<tokio::fs::File>,
}

impl Spool {
    async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if self.file.is_none() && self.head.len() + chunk.len() <= CHUNK_BYTES {
            self.head.extend_from_slice(chunk);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = tokio::task::spawn_blocking(tempfile::tempfile)
                    .await
                    .map_err(Error::internal)?
                    .map_err(Error::internal)?;
                let mut file = tokio::fs::File::from_std(file);
                file.write_all(&std::mem::take(&mut self.head))
                    .await
                    .map_err(Error::internal)?;
                self.file.insert(file)
            }
        };
        file.write_all(chunk).await.map_err(Error::internal)
    }

    async fn finish(self) -> Result<Body> {
        match self.file {
            None => Ok(Body::Memory(Some(self.head))),
            Some(mut file) => {
                file.flush().await.map_err(Error::internal)?;
                file.rewind().await.map_err(Error::internal)?;
                Ok(Body::File(file))
            }
        }
    }
}

fn too_large() -> Error {
    Error::ResourceExhausted {
        reason: Reason::DocumentTooLarge,
        message: "document exceeds the maximum size",
        retry_after: None,
    }
}

async fn receive(
    mut stream: Streaming<pb::UploadDocumentRequest>,
    max_bytes: u64,
) -> Result<Spooled> {
    use pb::upload_document_request::Payload;
    let first = stream
        .next()
        .await
        .ok_or_else(|| Error::invalid("metadata", "the first message must carry the metadata"))?
        .map_err(cancelled)?;
    let Some(Payload::Metadata(metadata)) = first.payload else {
        return Err(Error::invalid(
            "metadata",
            "the first message must carry the metadata",
        ));
    };
    let metadata = Metadata::try_from(&metadata)?;

    let mut spool = Spool::default();
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(message) = stream.next().await {
        let message = message.map_err(cancelled)?;
        match message.payload {
            Some(Payload::Chunk(chunk)) => {
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(too_large());
                }
                hasher.update(&chunk);
                spool.write(&chunk).await?;
            }
            Some(Payload::Metadata(_)) => {
                return Err(Error::invalid(
                    "metadata",
                    "only the first message may carry metadata",
                ));
            }
            None => return Err(Error::invalid("chunk", "a message must carry a chunk")),
        }
    }
    Ok(Spooled {
        metadata,
        size_bytes: i64::try_from(size).map_err(Error::internal)?,
        sha256: shared::audit::hex(&hasher.finalize()),
        body: spool.finish().await?,
    })
}

/// A client that went away or sent garbage mid-stream.
fn cancelled(status: tonic::Status) -> Error {
    tracing::debug!(code = ?status.code(), message = status.message(), "upload stream ended early");
    Error::invalid("chunk", "the upload stream failed before it completed")
}

impl Spooled {
    /// The next stored chunk (at most [`CHUNK_BYTES`]), `None` at the end.
    pub(super) async fn next_chunk(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        let file = match &mut self.body {
            Body::Memory(head) => {
                *buf = head.take().unwrap_or_default();
                return Ok(!buf.is_empty());
            }
            Body::File(file) => file,
        };
        buf.clear();
        buf.resize(CHUNK_BYTES, 0);
        let mut filled = 0;
        while filled < CHUNK_BYTES {
            let n = file
                .read(&mut buf[filled..])
                .await
                .map_err(Error::internal)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(filled > 0)
    }
}

/// UploadDocument: spools the stream, then stores row, chunks and audit
/// event in one short transaction.
pub(super) async fn upload(
    state: &State,
    ctx: &RequestContext,
    me: &Identity,
    stream: Streaming<pb::UploadDocumentRequest>,
) -> Result<Document> {
    let mut spooled = receive(stream, state.max_document_bytes).await?;
    let id = Uuid::now_v7();
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
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
        Event::new(Action::DocumentUploaded, Actor::from(me), "document", id).details(json!({
            "title": doc.title,
            "filename": doc.filename,
            "content_type": doc.content_type,
            "size_bytes": doc.size_bytes,
            "sha256": doc.sha256,
        }));
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    Ok(doc)
}
