//! The documents table and its content chunks.

use shared::{
    Result,
    db::{Conn, Timestamp},
    on_dialect,
    proto::document::v1 as pb,
};
use uuid::Uuid;

/// Content is stored in chunks of this size (the last one shorter).
pub(crate) const CHUNK_BYTES: usize = 256 * 1024;

/// The columns of [`Document`], for `concat!` (sqlx takes only static SQL).
macro_rules! columns {
    () => {
        "id, owner_id, title, filename, content_type, size_bytes, sha256, status, created_at, \
         reviewed_by, reviewed_at, review_note"
    };
}

/// A document's review state (the `status` column's CHECK lists the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Verified,
    Rejected,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Verified => "verified",
            Status::Rejected => "rejected",
        }
    }

    fn to_proto(self) -> pb::DocumentStatus {
        match self {
            Status::Pending => pb::DocumentStatus::Pending,
            Status::Verified => pb::DocumentStatus::Verified,
            Status::Rejected => pb::DocumentStatus::Rejected,
        }
    }

    pub(crate) fn from_proto(s: pb::DocumentStatus) -> Option<Self> {
        match s {
            pb::DocumentStatus::Unspecified => None,
            pb::DocumentStatus::Pending => Some(Status::Pending),
            pb::DocumentStatus::Verified => Some(Status::Verified),
            pb::DocumentStatus::Rejected => Some(Status::Rejected),
        }
    }
}

impl TryFrom<String> for Status {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "pending" => Ok(Status::Pending),
            "verified" => Ok(Status::Verified),
            "rejected" => Ok(Status::Rejected),
            _ => Err(format!("unknown document status {s:?}")),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Document {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub created_at: Timestamp,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<Timestamp>,
    pub review_note: String,
}

impl Document {
    pub(crate) fn to_proto(&self) -> pb::Document {
        pb::Document {
            id: self.id.to_string(),
            owner_id: self.owner_id.to_string(),
            title: self.title.clone(),
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            size_bytes: self.size_bytes,
            sha256: self.sha256.clone(),
            status: self.status.to_proto() as i32,
            created_at: Some(self.created_at.to_proto()),
            reviewed_by: self.reviewed_by.map(|u| u.to_string()).unwrap_or_default(),
            reviewed_at: self.reviewed_at.map(Timestamp::to_proto),
            review_note: self.review_note.clone(),
        }
    }
}

pub(crate) struct NewDocument<'a> {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
}

#[tracing::instrument(level = "debug", skip(c, doc))]
pub(crate) async fn insert(c: Conn<'_>, doc: NewDocument<'_>, now: Timestamp) -> Result<Document> {
    let sql = concat!(
        "INSERT INTO documents (id, owner_id, title, filename, content_type, size_bytes, sha256, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) RETURNING ",
        columns!()
    );
    Ok(on_dialect!(c, c => sqlx::query_as(sql)
        .bind(doc.id)
        .bind(doc.owner_id)
        .bind(doc.title)
        .bind(doc.filename)
        .bind(doc.content_type)
        .bind(doc.size_bytes)
        .bind(doc.sha256)
        .bind(now)
        .fetch_one(c)
        .await?))
}

#[tracing::instrument(level = "debug", skip(c, data))]
pub(crate) async fn insert_chunk(c: Conn<'_>, id: Uuid, seq: i32, data: &[u8]) -> Result<()> {
    let sql = "INSERT INTO document_chunks (document_id, seq, data) VALUES ($1, $2, $3)";
    on_dialect!(c, c => sqlx::query(sql).bind(id).bind(seq).bind(data).execute(c).await.map(|_| ()))?;
    Ok(())
}

/// One chunk of content, `None` past the end.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn chunk(c: Conn<'_>, id: Uuid, seq: i32) -> Result<Option<Vec<u8>>> {
    let sql = "SELECT data FROM document_chunks WHERE document_id = $1 AND seq = $2";
    Ok(on_dialect!(c, c => sqlx::query_scalar(sql).bind(id).bind(seq).fetch_optional(c).await?))
}

#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn by_id(c: Conn<'_>, id: Uuid) -> Result<Option<Document>> {
    let sql = concat!("SELECT ", columns!(), " FROM documents WHERE id = $1");
    Ok(on_dialect!(c, c => sqlx::query_as(sql).bind(id).fetch_optional(c).await?))
}

/// Newest first (ids are UUIDv7), strictly before the `before` cursor.
/// One statement per filter combination: an `($1 IS NULL OR owner_id = $1)`
/// form would keep SQLite from using the owner and status indexes, and a
/// user with few documents among many would scan them all.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn list(
    c: Conn<'_>,
    owner: Option<Uuid>,
    status: Option<Status>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Document>> {
    macro_rules! page {
        ($filter:literal) => {
            concat!(
                "SELECT ",
                columns!(),
                " FROM documents WHERE ",
                $filter,
                " id < $3 ORDER BY id DESC LIMIT $4"
            )
        };
    }
    let sql = match (owner.is_some(), status.is_some()) {
        (true, true) => page!("owner_id = $1 AND status = $2 AND"),
        (true, false) => page!("owner_id = $1 AND ($2 IS NULL) AND"),
        (false, true) => page!("($1 IS NULL) AND status = $2 AND"),
        (false, false) => page!("($1 IS NULL) AND ($2 IS NULL) AND"),
    };
    // The largest possible UUID stands for "no cursor".
    let before = before.unwrap_or(Uuid::max());
    Ok(on_dialect!(c, c => sqlx::query_as(sql)
        .bind(owner)
        .bind(status.map(Status::as_str))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(c)
        .await?))
}

/// Moves a PENDING document not owned by `reviewer` to `status`; `None` when
/// it is not there, not pending, or the reviewer's own. The WHERE clause
/// makes concurrent reviews race for one row: exactly one wins.
#[tracing::instrument(level = "debug", skip(c, note))]
pub(crate) async fn review(
    c: Conn<'_>,
    id: Uuid,
    reviewer: Uuid,
    status: Status,
    note: &str,
    now: Timestamp,
) -> Result<Option<Document>> {
    let sql = concat!(
        "UPDATE documents SET status = $3, reviewed_by = $2, reviewed_at = $4, review_note = $5 \
         WHERE id = $1 AND status = 'pending' AND owner_id <> $2 RETURNING ",
        columns!()
    );
    Ok(on_dialect!(c, c => sqlx::query_as(sql)
        .bind(id)
        .bind(reviewer)
        .bind(status.as_str())
        .bind(now)
        .bind(note)
        .fetch_optional(c)
        .await?))
}

/// Who may delete what: anybody's document in any state, or one's own
/// while it is pending.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeleteRights {
    pub caller: Uuid,
    pub any: bool,
    pub own_pending: bool,
}

/// Deletes the document (its chunks go with it, `ON DELETE CASCADE`) if the
/// rights allow it now: the condition is in the statement, so a review that
/// commits first (the document is no longer pending) or another delete wins
/// cleanly, and exactly one delete reports the row.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn delete(
    c: Conn<'_>,
    id: Uuid,
    rights: DeleteRights,
) -> Result<Option<Document>> {
    let sql = concat!(
        "DELETE FROM documents WHERE id = $1 \
         AND ($2 OR ($3 AND owner_id = $4 AND status = 'pending')) RETURNING ",
        columns!()
    );
    Ok(on_dialect!(c, c => sqlx::query_as(sql)
        .bind(id)
        .bind(rights.any)
        .bind(rights.own_pending)
        .bind(rights.caller)
        .fetch_optional(c)
        .await?))
}
