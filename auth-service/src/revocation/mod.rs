//! auth-service's side of the revocation feed. A map:
//!
//! | concept | where |
//! |---|---|
//! | the log table: append, read, snapshot, prune | [`log`] |
//! | `WatchRevocations` and `ListRevocationState` | [`api`] |
//! | the state in memory every token check reads | `shared::revocation::state`, fed here |
//!
//! Each replica polls the log every REVOCATION_POLL_INTERVAL (100 ms by
//! default) and at once after a change it committed itself: a fact written
//! through any replica reaches the others within one interval, on either
//! database, without LISTEN/NOTIFY (which loses messages while a connection
//! is down and would still need the poll to catch up). The change's own
//! replica applies its fact the moment it commits.

pub(crate) mod api;
pub(crate) mod log;

use std::{sync::Arc, time::Duration};

use shared::revocation::Fact;

use crate::state::State;

const BATCH: u32 = 1000;
/// How often old facts are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl State {
    /// Makes a committed fact take effect here at once, and wakes the
    /// poller so that the streams of this replica carry it within
    /// milliseconds.
    pub(crate) fn published(&self, fact: &Fact) {
        self.revocations.apply(fact);
        self.users_cache.forget(fact.principal_id);
        self.revocation_poke.notify_one();
    }
}

/// Reads the facts committed since the last poll (by any replica) into the
/// state in memory and confirms it fresh.
async fn poll(state: &State) -> shared::Result<()> {
    loop {
        let mut conn = state.db.read().await?;
        let (head, oldest) = log::head(conn.conn()).await?;
        let cursor = state.revocations.cursor();
        if cursor + 1 < oldest {
            // Facts we never saw were pruned (a replica cut off for longer
            // than the retention, or a first start): start from a snapshot.
            let facts = log::snapshot(conn.conn(), 0, head, u32::MAX).await?;
            state.revocations.replace(&facts, head);
            state.users_cache.clear();
            continue;
        }
        let facts = log::after(conn.conn(), cursor, BATCH).await?;
        drop(conn);
        for fact in &facts {
            state.users_cache.forget(fact.principal_id);
        }
        if state.revocations.extend(&facts).is_err() {
            // Cannot happen with a gapless log; start over from a snapshot.
            state.revocations.replace(&[], 0);
            continue;
        }
        if facts.len() < BATCH as usize {
            let cursor = state.revocations.cursor();
            // Cannot fail: nobody else moves this cursor.
            let _ = state.revocations.confirm(cursor, oldest);
            return Ok(());
        }
    }
}

/// Keeps the state in memory up to date until the task is aborted.
pub(crate) fn spawn_poller(state: &Arc<State>, every: Duration) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(state);
    let poke = state.revocation_poke.clone();
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            let Some(state) = weak.upgrade() else {
                return;
            };
            match poll(&state).await {
                Ok(()) if failing => {
                    tracing::info!("revocation log readable again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot read the revocation log; token checks read the database once the state is stale");
                    }
                }
            }
            drop(state);
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = poke.notified() => {}
            }
        }
    })
}

/// Deletes the facts older than the retention; how many.
pub(crate) async fn prune(state: &State, retention: Duration) -> shared::Result<u64> {
    let pruned = log::prune(&state.db, state.clock.now().minus(retention)).await?;
    if pruned > 0 {
        tracing::info!(pruned, "revocation facts past their retention pruned");
    }
    Ok(pruned)
}

/// [`prune`] once a minute (start-up ran it once already).
pub(crate) fn spawn_pruner(state: &Arc<State>, retention: Duration) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PRUNE_EVERY).await;
            let Some(state) = weak.upgrade() else {
                return;
            };
            if let Err(e) = prune(&state, retention).await {
                tracing::warn!(error = %e, "cannot prune the revocation log");
            }
        }
    })
}
