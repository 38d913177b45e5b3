//! The write path's yardstick and the audit log's lag, both measured in the
//! `upload` run: `free-write` runs an upload's own statements (the document
//! row, its chunk, its audit event) in one transaction through a pool sized
//! as document-service's, with no gRPC, no layer and nothing waiting on the
//! sequencer; the lag watcher follows WatchAuditEvents during `upload` and
//! times, per document, from the upload's answer to its event arriving as a
//! sequenced leaf.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use shared::{
    audit::{self, Action, Actor, Event},
    db::{Db, Timestamp},
    identity::RequestContext,
    on_dialect,
    proto::audit::v1::{
        GetCheckpointRequest, WatchAuditEventsRequest, audit_service_client::AuditServiceClient,
        watch_audit_events_response::Message,
    },
};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    load::{self, Failure, Measured},
    scenarios::{Bearer, Ctx, SMALL_DOCUMENT, authed},
};

/// `free-write`: an upload's statements, straight to the database.
pub(crate) async fn free_write(ctx: &Ctx, db: Db) -> Result<Measured, String> {
    let owner = Uuid::now_v7();
    let chunk: Arc<[u8]> = vec![7u8; SMALL_DOCUMENT].into();
    load::run(ctx.plan, ctx.concurrency, move |worker, n| {
        let (db, chunk) = (db.clone(), chunk.clone());
        async move {
            write_once(&db, owner, &chunk, format!("free {worker}-{n}"))
                .await
                .map_err(|e| Failure::Wrong(e.to_string()))
        }
    })
    .await
}

/// Waits (up to `limit`) until the sequencer has integrated every queued
/// event; how long that took.
pub(crate) async fn drained(db: &Db, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let waiting: bool = on_dialect!(db.reader(), p => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM audit_pending)")
            .fetch_one(p)
            .await
            .map_err(|e| format!("audit queue: {e}"))?);
        if !waiting {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "the audit sequencer did not drain its queue in {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What UploadDocument writes (document-service/src/documents.rs and
/// api/upload.rs), in one transaction.
async fn write_once(db: &Db, owner: Uuid, chunk: &[u8], title: String) -> shared::Result<()> {
    let id = Uuid::now_v7();
    let now = Timestamp::from(time::OffsetDateTime::now_utc());
    let mut tx = db.begin().await?;
    let insert = "INSERT INTO documents (id, owner_id, title, filename, content_type, size_bytes, \
                  sha256, status, created_at) VALUES ($1, $2, $3, 'f.bin', 'application/octet-stream', \
                  $4, $5, 'pending', $6)";
    let insert_chunk = "INSERT INTO document_chunks (document_id, seq, data) VALUES ($1, 0, $2)";
    on_dialect!(&mut tx, t => {
        sqlx::query(insert)
            .bind(id)
            .bind(owner)
            .bind(&title)
            .bind(chunk.len() as i64)
            .bind("0".repeat(64))
            .bind(now)
            .execute(&mut **t)
            .await?;
        sqlx::query(insert_chunk).bind(id).bind(chunk).execute(&mut **t).await?;
    });
    let ctx = RequestContext {
        request_id: Uuid::now_v7().to_string(),
        ..RequestContext::default()
    };
    let event = Event::new(Action::DocumentUploaded, Actor::default(), "document", id)
        .details(serde_json::json!({ "title": title, "size_bytes": chunk.len() }));
    audit::append(&mut tx, &ctx, now, event).await?;
    tx.commit().await
}

/// Answers of uploads and arrivals of their events, by document id.
#[derive(Debug, Default)]
pub(crate) struct Times {
    answered: HashMap<String, Instant>,
    sequenced: HashMap<String, Instant>,
}

/// Follows the sequenced `document.uploaded` events from the log's size now.
pub(crate) struct LagWatch {
    pub times: Arc<Mutex<Times>>,
    task: JoinHandle<()>,
}

/// The lag's quantiles, over the uploads whose event arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lag {
    pub p50: Duration,
    pub p99: Duration,
    pub samples: u64,
    /// Uploads answered whose event did not arrive in time.
    pub missing: usize,
}

impl LagWatch {
    pub(crate) async fn start(channel: Channel, auditor: &Bearer) -> Result<Self, String> {
        let mut client = AuditServiceClient::new(channel);
        let size = client
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .map_err(|s| format!("GetCheckpoint: {s}"))?
            .into_inner()
            .checkpoint
            .map_or(0, |c| c.tree_size);
        let request = WatchAuditEventsRequest {
            after_sequence: size,
            action: "document.uploaded".to_owned(),
            ..Default::default()
        };
        let mut stream = client
            .watch_audit_events(authed(request, auditor))
            .await
            .map_err(|s| format!("WatchAuditEvents: {s}"))?
            .into_inner();
        let times = Arc::new(Mutex::new(Times::default()));
        let seen = times.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                if let Some(Message::Event(event)) = message.message
                    && let Ok(mut times) = seen.lock()
                {
                    times.sequenced.insert(event.target_id, Instant::now());
                }
            }
        });
        Ok(Self { times, task })
    }

    pub(crate) fn answered(times: &Mutex<Times>, id: String) {
        if let Ok(mut times) = times.lock() {
            times.answered.insert(id, Instant::now());
        }
    }

    /// Waits up to `grace` for the last events, then the lag of each upload.
    pub(crate) async fn finish(self, grace: Duration) -> Result<Lag, String> {
        let deadline = Instant::now() + grace;
        loop {
            let missing = {
                let times = self.times.lock().map_err(|_| "lag times poisoned")?;
                times
                    .answered
                    .keys()
                    .filter(|id| !times.sequenced.contains_key(*id))
                    .count()
            };
            if missing == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.task.abort();
        let times = self.times.lock().map_err(|_| "lag times poisoned")?;
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        let mut missing = 0;
        for (id, answered) in &times.answered {
            match times.sequenced.get(id) {
                Some(sequenced) => {
                    let lag = sequenced.saturating_duration_since(*answered);
                    histogram
                        .record((lag.as_micros() as u64).max(1))
                        .map_err(|e| e.to_string())?;
                }
                None => missing += 1,
            }
        }
        Ok(Lag {
            p50: Duration::from_micros(histogram.value_at_quantile(0.5)),
            p99: Duration::from_micros(histogram.value_at_quantile(0.99)),
            samples: histogram.len(),
            missing,
        })
    }
}
