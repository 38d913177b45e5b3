//! The trail's store: appending in the caller's transaction, the
//! append-only triggers' check, and reading events, tree nodes and
//! checkpoints back.

use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use super::{
    Outcome,
    merkle::{self, Hash, Node},
};
use crate::{
    db::{Conn, Db, Dialect, Timestamp, Tx},
    error::{Error, Result},
    identity::RequestContext,
    on_dialect,
    proto::audit::v1 as pb,
};

/// The columns of an event with its sequence (NULL while pending).
pub(super) const EVENT_COLUMNS: &str = "e.position, l.sequence, e.id, e.occurred_at, e.actor_id, \
     e.actor_email, e.action, e.target_type, e.target_id, e.outcome, e.request_id, e.client_addr, \
     e.details";

/// A stored audit row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Record {
    pub position: i64,
    pub sequence: Option<i64>,
    pub id: Uuid,
    pub occurred_at: Timestamp,
    pub actor_id: Option<Uuid>,
    pub actor_email: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub outcome: String,
    pub request_id: String,
    pub client_addr: String,
    pub details: Json<Value>,
}

impl Record {
    /// The leaf of this event as leaf `sequence - 1`: its fields in RFC 8785
    /// canonical JSON, which any client can parse and hash.
    pub(super) fn leaf(&self, sequence: i64) -> Result<Vec<u8>> {
        let occurred_at = self
            .occurred_at
            .to_offset_date_time()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(Error::internal)?;
        let leaf = json!({
            "sequence": sequence,
            "id": self.id.to_string(),
            "occurred_at": occurred_at,
            "actor_id": self.actor_id.map(|u| u.to_string()).unwrap_or_default(),
            "actor_email": self.actor_email,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "client_addr": self.client_addr,
            "details": self.details.0,
        });
        serde_json_canonicalizer::to_vec(&leaf).map_err(Error::internal)
    }

    pub(super) fn to_proto(&self) -> Result<pb::AuditEvent> {
        let leaf = match self.sequence {
            Some(sequence) => self.leaf(sequence)?,
            None => Vec::new(),
        };
        Ok(pb::AuditEvent {
            sequence: self.sequence.unwrap_or(0),
            id: self.id.to_string(),
            occurred_at: Some(self.occurred_at.to_proto()),
            actor_id: self.actor_id.map(|u| u.to_string()).unwrap_or_default(),
            actor_email: self.actor_email.clone(),
            action: self.action.clone(),
            target_type: self.target_type.clone(),
            target_id: self.target_id.clone(),
            outcome: Outcome::to_proto(&self.outcome) as i32,
            request_id: self.request_id.clone(),
            client_addr: self.client_addr.clone(),
            details_json: self.details.0.to_string(),
            pending: self.sequence.is_none(),
            leaf,
        })
    }
}

/// The leaf hashes of `events` as leaves `first, first + 1, ...`: canonical
/// JSON and SHA-256 of each, several µs an event, so a batch of a thousand
/// is hashed off the async runtime. The events come back with them.
pub(super) async fn leaf_hashes(
    events: Vec<Record>,
    first: i64,
) -> Result<(Vec<Record>, Vec<Hash>)> {
    tokio::task::spawn_blocking(move || {
        let hashes = events
            .iter()
            .zip(first..)
            .map(|(event, sequence)| Ok(merkle::leaf_hash(&event.leaf(sequence)?)))
            .collect::<Result<Vec<Hash>>>()?;
        Ok((events, hashes))
    })
    .await
    .map_err(Error::internal)?
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Appends `event` inside `tx`; it commits or rolls back with the change.
/// The insert touches no row that another writer touches: the sequencer
/// gives it its place in the log after commit. Returns its position.
#[tracing::instrument(level = "debug", skip(tx, ctx, event), fields(action = %event.action))]
pub async fn append(
    tx: &mut Tx,
    ctx: &RequestContext,
    now: Timestamp,
    event: super::Event,
) -> Result<i64> {
    let insert = "INSERT INTO audit_events (id, occurred_at, actor_id, actor_email, action, \
                  target_type, target_id, outcome, request_id, client_addr, details) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING position";
    let client_addr = ctx.client_addr_string();
    let mut details = event.details;
    if let (Some(trace_id), Some(fields)) = (&ctx.trace_id, details.as_object_mut()) {
        fields.insert("trace_id".to_owned(), trace_id.clone().into());
    }
    let details = Json(details);
    let position: i64 = on_dialect!(tx, t => sqlx::query_scalar(insert)
        .bind(Uuid::now_v7())
        .bind(now)
        .bind(event.actor.id)
        .bind(&event.actor.email)
        .bind(event.action.as_str())
        .bind(event.target_type)
        .bind(&event.target_id)
        .bind(event.outcome.as_str())
        .bind(&ctx.request_id)
        .bind(&client_addr)
        .bind(&details)
        .fetch_one(&mut **t)
        .await?);
    Ok(position)
}

/// Appends an event that stands alone (a denial, a failed login) in its own
/// transaction.
#[tracing::instrument(level = "debug", skip(db, ctx, event), fields(action = %event.action))]
pub async fn record(
    db: &Db,
    ctx: &RequestContext,
    now: Timestamp,
    event: super::Event,
) -> Result<()> {
    let mut tx = db.begin().await?;
    append(&mut tx, ctx, now, event).await?;
    tx.commit().await
}

/// The tables of the log and the triggers that keep each append-only (and
/// queue each new event); the service refuses to start without them.
const TRIGGERS: &[&str] = &[
    "audit_events_no_update",
    "audit_events_no_delete",
    "audit_events_enqueue",
    "audit_leaves_no_update",
    "audit_leaves_no_delete",
    "audit_nodes_no_update",
    "audit_nodes_no_delete",
    "audit_checkpoints_no_update",
    "audit_checkpoints_no_delete",
];
/// TRUNCATE skips row triggers: PostgreSQL has statement triggers for it.
const PG_TRIGGERS: &[&str] = &[
    "audit_events_no_truncate",
    "audit_leaves_no_truncate",
    "audit_nodes_no_truncate",
    "audit_checkpoints_no_truncate",
];

/// Refuses to serve when the append-only triggers were dropped.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn check_triggers(db: &Db) -> Result<()> {
    let (expected, found): (Vec<&str>, Vec<String>) = match db.reader() {
        Dialect::Sqlite(p) => (
            TRIGGERS.to_vec(),
            sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'audit\\_%' ESCAPE '\\'",
            )
            .fetch_all(p)
            .await?,
        ),
        Dialect::Postgres(p) => (
            TRIGGERS.iter().chain(PG_TRIGGERS).copied().collect(),
            sqlx::query_scalar(
                "SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN \
                 ('audit_events'::regclass, 'audit_leaves'::regclass, 'audit_nodes'::regclass, \
                  'audit_checkpoints'::regclass)",
            )
            .fetch_all(p)
            .await?,
        ),
    };
    let missing: Vec<&str> = expected
        .into_iter()
        .filter(|t| !found.iter().any(|f| f == t))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "the audit log is not append-only: trigger(s) {} missing; refusing to serve",
            missing.join(", ")
        )))
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct StoredCheckpoint {
    pub tree_size: i64,
    pub root_hash: Vec<u8>,
    pub note: String,
}

impl StoredCheckpoint {
    pub(super) fn to_proto(&self, origin: &str) -> pb::Checkpoint {
        pb::Checkpoint {
            note: self.note.clone(),
            origin: origin.to_owned(),
            tree_size: self.tree_size,
            root_hash: self.root_hash.clone(),
        }
    }
}

const CHECKPOINT_COLUMNS: &str = "tree_size, root_hash, note";

/// The newest checkpoint: the tree as far as it is signed.
pub(super) async fn latest_checkpoint(mut conn: Conn<'_>) -> Result<Option<StoredCheckpoint>> {
    let sql = format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
    );
    Ok(
        on_dialect!(conn.reborrow(), c => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_optional(c).await?),
    )
}

/// The checkpoint of exactly `size` leaves, or the latest for 0.
pub(super) async fn checkpoint(mut conn: Conn<'_>, size: i64) -> Result<StoredCheckpoint> {
    let found = if size == 0 {
        latest_checkpoint(conn).await?
    } else {
        let sql =
            format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE tree_size = $1");
        on_dialect!(conn.reborrow(), c => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(size).fetch_optional(c).await?)
    };
    found.ok_or(Error::not_found("checkpoint"))
}

/// The sequenced event `sequence`.
pub(super) async fn by_sequence(mut conn: Conn<'_>, sequence: i64) -> Result<Option<Record>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM audit_leaves l JOIN audit_events e ON e.position = l.position \
         WHERE l.sequence = $1"
    );
    Ok(
        on_dialect!(conn.reborrow(), c => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(sequence).fetch_optional(c).await?),
    )
}

/// The sequence of the event at `position`, once it is a leaf.
pub(super) async fn sequence_of(mut conn: Conn<'_>, position: i64) -> Result<Option<i64>> {
    let sql = "SELECT sequence FROM audit_leaves WHERE position = $1";
    Ok(
        on_dialect!(conn.reborrow(), c => sqlx::query_scalar(sql).bind(position).fetch_optional(c).await?),
    )
}

/// Most node lookups of one statement (two binds each).
const NODES_PER_QUERY: usize = 400;

/// `($1, $2), ($3, $4), ...`: `rows` tuples of `columns` numbered binds
/// from `$first` (a tuple of one is a bare `$n`).
pub(super) fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    (0..rows)
        .map(|row| {
            let binds: Vec<String> = (0..columns)
                .map(|c| format!("${}", first + row * columns + c))
                .collect();
            if columns == 1 {
                binds.concat()
            } else {
                format!("({})", binds.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hashes of stored complete subtrees, by node.
pub(super) async fn nodes(mut conn: Conn<'_>, wanted: &[Node]) -> Result<HashMap<Node, Hash>> {
    let mut found = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(NODES_PER_QUERY) {
        let sql = format!(
            "SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) IN (VALUES {})",
            placeholders(chunk.len(), 2, 1)
        );
        let rows: Vec<(i32, i64, Vec<u8>)> = on_dialect!(conn.reborrow(), c => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            for node in chunk {
                q = q.bind(node.level as i32).bind(node.idx as i64);
            }
            q.fetch_all(c).await?
        });
        for (level, idx, hash) in rows {
            let hash = Hash::try_from(hash)
                .map_err(|_| Error::internal("an audit node is not 32 bytes"))?;
            found.insert(
                Node {
                    level: level as u32,
                    idx: idx as u64,
                },
                hash,
            );
        }
    }
    Ok(found)
}

/// The hash of each range of leaves, from the stored subtrees: one query
/// for every node of every range.
pub(super) async fn range_hashes(conn: Conn<'_>, ranges: &[(u64, u64)]) -> Result<Vec<Hash>> {
    let decomposed: Vec<Vec<Node>> = ranges
        .iter()
        .map(|&(a, b)| merkle::decompose(a, b))
        .collect();
    let mut wanted: Vec<Node> = decomposed.iter().flatten().copied().collect();
    wanted.sort();
    wanted.dedup();
    let found = nodes(conn, &wanted).await?;
    decomposed
        .iter()
        .map(|range| {
            let hashes = range
                .iter()
                .map(|n| found.get(n).copied())
                .collect::<Option<Vec<Hash>>>()
                .ok_or_else(|| Error::internal("an audit node the tree needs is missing"))?;
            merkle::fold(&hashes).ok_or_else(|| Error::internal("an empty range of leaves"))
        })
        .collect()
}

/// Inserts completed subtrees, a few hundred rows per statement.
pub(super) async fn insert_nodes(tx: &mut Tx, completed: &[(Node, Hash)]) -> Result<()> {
    for chunk in completed.chunks(NODES_PER_QUERY) {
        let sql = format!(
            "INSERT INTO audit_nodes (level, idx, hash) VALUES {}",
            placeholders(chunk.len(), 3, 1)
        );
        on_dialect!(tx, t => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (node, hash) in chunk {
                q = q.bind(node.level as i32).bind(node.idx as i64).bind(&hash[..]);
            }
            q.execute(&mut **t).await?;
        });
    }
    Ok(())
}

/// The position of the newest event of `actions` about `target_type`
/// `target_id` (a document's latest review, say).
pub async fn latest_about(
    mut conn: Conn<'_>,
    target_type: &str,
    target_id: &str,
    actions: &[super::Action],
) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT position FROM audit_events WHERE target_id = $1 AND target_type = $2 \
         AND action IN ({}) ORDER BY position DESC LIMIT 1",
        placeholders(actions.len(), 1, 3)
    );
    Ok(on_dialect!(conn.reborrow(), c => {
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(target_id).bind(target_type);
        for action in actions {
            q = q.bind(action.as_str());
        }
        q.fetch_optional(c).await?
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_every_bind_once() {
        assert_eq!(super::placeholders(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::placeholders(3, 1, 3), "$3, $4, $5");
    }
}
