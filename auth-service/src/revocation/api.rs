//! `docverify.auth.v1.RevocationService`: the feed that local verifiers
//! subscribe to (the layer checked `revocations:read`).

use std::{pin::Pin, sync::Arc, time::Duration};

use shared::{
    Error, Reason, Result,
    identity::current_user,
    page::PageSize,
    proto::auth::v1::{
        self as pb, revocation_service_server::RevocationService,
        watch_revocations_response::Message,
    },
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::log;
use crate::state::State;

/// Heartbeats are this frequent ("at least every second").
const HEARTBEAT: Duration = Duration::from_millis(500);
/// A heartbeat vouches for the state only when the log was read this
/// recently (five poll intervals, at least this).
const VOUCH: Duration = Duration::from_millis(500);
const BATCH: u32 = 500;

#[derive(Debug, Clone)]
pub(crate) struct RevocationApi {
    state: Arc<State>,
}

impl RevocationApi {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

const CURSOR_EXPIRED: Error = Error::FailedPrecondition {
    reason: Reason::RevocationCursorExpired,
    message: "this cursor is not kept (or was never issued): resync from ListRevocationState",
};

type Events = Pin<Box<dyn Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>>;

fn event(fact: &shared::revocation::Fact) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        message: Some(Message::Event(fact.to_proto())),
    }
}

/// Sends the facts after `sent` to `tx` until it is closed: what the log
/// holds up to this replica's cursor, then a heartbeat when the replica's
/// state is fresh, then waits for the cursor to move or the next beat.
///
/// The caller's token was checked when the stream opened, so the stream
/// lives no longer than a token does (ACCESS_TOKEN_TTL), and ends at once
/// when a fact revokes the subscriber itself: it must reconnect with a
/// token that is still good. It ends at shutdown too, so as not to hold
/// the drain. Each ends the stream with OK, which says "reconnect from
/// your cursor".
async fn serve(
    state: Arc<State>,
    subscriber: Uuid,
    mut sent: i64,
    tx: mpsc::Sender<Result<pb::WatchRevocationsResponse, Status>>,
) {
    let mut moved = state.revocations.subscribe();
    let mut stopping = state.stopping.subscribe();
    let lifetime = tokio::time::sleep(state.access_ttl);
    tokio::pin!(lifetime);
    let vouch = VOUCH.max(state.revocation_poll_interval * 5);
    loop {
        let known = state.revocations.cursor();
        while sent < known {
            let facts = match state.db.read().await {
                Ok(mut conn) => log::after(conn.conn(), sent, BATCH).await,
                Err(e) => Err(e),
            };
            let facts = match facts {
                Ok(facts) if !facts.is_empty() => facts,
                Ok(_) => break,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            for fact in &facts {
                if fact.seq != sent + 1 {
                    // Pruned under our feet: the subscriber must resync.
                    let _ = tx.send(Err(CURSOR_EXPIRED.into())).await;
                    return;
                }
                if tx.send(Ok(event(fact))).await.is_err() {
                    return;
                }
                sent = fact.seq;
                if fact.principal_id == subscriber && fact.session_id.is_none() {
                    return;
                }
            }
        }
        if sent >= known && state.revocations.is_fresh(vouch) {
            let beat = pb::RevocationHeartbeat {
                cursor: sent as u64,
                oldest_cursor: state.revocations.oldest() as u64,
            };
            let beat = pb::WatchRevocationsResponse {
                message: Some(Message::Heartbeat(beat)),
            };
            if tx.send(Ok(beat)).await.is_err() {
                return;
            }
        }
        let stop = tokio::select! {
            _ = moved.changed() => false,
            () = tokio::time::sleep(HEARTBEAT) => false,
            () = tx.closed() => return,
            _ = stopping.wait_for(|stopping| *stopping) => true,
            () = &mut lifetime => true,
        };
        if stop {
            return;
        }
    }
}

#[tonic::async_trait]
impl RevocationService for RevocationApi {
    type WatchRevocationsStream = Events;

    #[tracing::instrument(skip_all)]
    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let subscriber = current_user(&request)?.user_id;
        let after = i64::try_from(request.get_ref().after_cursor)
            .map_err(|_| Error::invalid("after_cursor", "out of range"))?;
        let (head, oldest) = log::head(self.state.db.read().await?.conn()).await?;
        if after > head || after + 1 < oldest {
            return Err(CURSOR_EXPIRED.into());
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(serve(self.state.clone(), subscriber, after, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all)]
    async fn list_revocation_state(
        &self,
        request: Request<pb::ListRevocationStateRequest>,
    ) -> Result<Response<pb::ListRevocationStateResponse>, Status> {
        let me = current_user(&request)?;
        let req = request.get_ref();
        let size = if req.page_size == 0 {
            PageSize::parse(BATCH as i32)?
        } else {
            PageSize::parse(req.page_size)?
        };
        let scope = format!("revocations|{}", me.user_id);
        let tokens = &self.state.page_tokens;
        let mut conn = self.state.db.read().await?;
        let (upto, after) = match tokens.open(&scope, &req.page_token)? {
            Some(cursor) => {
                let cursor: [u8; 16] = cursor
                    .try_into()
                    .map_err(|_| Error::invalid("page_token", "malformed"))?;
                let (upto, after) = cursor.split_at(8);
                (
                    i64::from_be_bytes(upto.try_into().map_err(Error::internal)?),
                    i64::from_be_bytes(after.try_into().map_err(Error::internal)?),
                )
            }
            None => (log::head(conn.conn()).await?.0, 0),
        };
        let mut facts = log::snapshot(conn.conn(), after, upto, size.fetch()).await?;
        let next_page_token = tokens.next_page(&scope, &mut facts, size, |f| {
            let mut cursor = upto.to_be_bytes().to_vec();
            cursor.extend_from_slice(&f.seq.to_be_bytes());
            cursor
        });
        Ok(Response::new(pb::ListRevocationStateResponse {
            events: facts
                .iter()
                .map(shared::revocation::Fact::to_proto)
                .collect(),
            cursor: upto as u64,
            next_page_token,
        }))
    }
}
