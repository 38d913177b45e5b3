//! `VerifyAuditChain`: the tree recomputed from the events themselves, a
//! batch at a time in one snapshot, and checked against every stored node
//! and every stored checkpoint (signature, size and root). Every checkpoint
//! is then the root of a prefix of one tree: they are consistent.

use super::{
    Log,
    merkle::{Frontier, Node},
    note::NoteVerifier,
    store::{self, EVENT_COLUMNS, Record, StoredCheckpoint},
};
use crate::{
    error::{Error, Result},
    on_dialect,
    proto::audit::v1::VerifyAuditChainResponse,
};

const BATCH: i64 = 1000;

struct Report {
    checked: i64,
    checkpoints: i64,
}

impl Report {
    fn invalid(&self, sequence: i64, problem: String) -> VerifyAuditChainResponse {
        VerifyAuditChainResponse {
            valid: false,
            events_checked: self.checked,
            first_invalid_sequence: sequence,
            checkpoints_checked: self.checkpoints,
            problem,
            pending: 0,
        }
    }
}

pub(super) async fn verify_log(log: &Log) -> Result<VerifyAuditChainResponse> {
    let verifier = NoteVerifier::parse(&log.verifier_key()).map_err(Error::internal)?;
    let mut snapshot = log.db().snapshot().await?;
    let Some(latest) = store::latest_checkpoint(snapshot.conn()).await? else {
        return Ok(VerifyAuditChainResponse {
            valid: true,
            ..Default::default()
        });
    };
    let size = latest.tree_size;
    let events_sql = format!(
        "SELECT {EVENT_COLUMNS} FROM audit_leaves l JOIN audit_events e ON e.position = l.position \
         WHERE l.sequence > $1 AND l.sequence <= $2 ORDER BY l.sequence LIMIT $3"
    );
    let checkpoints_sql = "SELECT tree_size, root_hash, note FROM audit_checkpoints \
                           WHERE tree_size > $1 AND tree_size <= $2 ORDER BY tree_size";
    let mut report = Report {
        checked: 0,
        checkpoints: 0,
    };
    let mut frontier = Frontier::default();
    let mut done = 0i64;
    loop {
        let events: Vec<Record> = on_dialect!(snapshot.conn(), c => sqlx::query_as(sqlx::AssertSqlSafe(events_sql.as_str()))
            .bind(done)
            .bind(size)
            .bind(BATCH)
            .fetch_all(c)
            .await?);
        let upto = events.last().and_then(|e| e.sequence).unwrap_or(done);
        let checkpoints: Vec<StoredCheckpoint> = on_dialect!(snapshot.conn(), c =>
            sqlx::query_as(checkpoints_sql).bind(done).bind(if events.is_empty() { size } else { upto })
                .fetch_all(c).await?);
        // `tree_size > done` leaves out the empty tree's checkpoint, which
        // has nothing to recompute.
        let mut checkpoints = checkpoints.into_iter().peekable();
        let leaves: Vec<Node> = (done..upto)
            .map(|idx| Node {
                level: 0,
                idx: idx as u64,
            })
            .collect();
        let stored_leaves = store::nodes(snapshot.conn(), &leaves).await?;
        let (events, hashes) = store::leaf_hashes(events, done + 1).await?;
        let mut completed = Vec::with_capacity(events.len() * 2);
        for (event, leaf) in events.iter().zip(hashes) {
            let expected = done + 1;
            if event.sequence != Some(expected) {
                return Ok(report.invalid(
                    expected,
                    format!("the event of sequence {expected} is missing"),
                ));
            }
            let node = Node {
                level: 0,
                idx: done as u64,
            };
            if stored_leaves.get(&node) != Some(&leaf) {
                return Ok(report.invalid(
                    expected,
                    format!("the event of sequence {expected} is not the one the log holds"),
                ));
            }
            frontier.push(leaf, &mut completed);
            done = expected;
            report.checked = done;
            while let Some(checkpoint) = checkpoints.next_if(|c| c.tree_size <= done) {
                if let Err(problem) = check_checkpoint(&verifier, &checkpoint, &frontier) {
                    return Ok(report.invalid(done + 1, problem));
                }
                report.checkpoints += 1;
            }
        }
        let wanted: Vec<Node> = completed.iter().map(|(n, _)| *n).collect();
        let stored = store::nodes(snapshot.conn(), &wanted).await?;
        if let Some((node, _)) = completed.iter().find(|(n, h)| stored.get(n) != Some(h)) {
            let first_leaf = (node.idx << node.level) as i64 + 1;
            return Ok(report.invalid(
                first_leaf,
                format!(
                    "the stored tree differs from the events from sequence {first_leaf} on \
                     (node {}/{})",
                    node.level, node.idx
                ),
            ));
        }
        if let Some(checkpoint) = checkpoints.next() {
            return Ok(report.invalid(
                done + 1,
                format!(
                    "checkpoint of size {} has no events to match",
                    checkpoint.tree_size
                ),
            ));
        }
        // Events missing at the end leave the latest checkpoint unmatched
        // above, on the pass that finds no more events.
        if events.is_empty() || done >= size {
            break;
        }
    }
    let (pending, lost): (i64, i64) = on_dialect!(snapshot.conn(), c => sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM audit_pending), \
                (SELECT COUNT(*) FROM audit_events e WHERE NOT EXISTS \
                   (SELECT 1 FROM audit_leaves l WHERE l.position = e.position) \
                 AND NOT EXISTS (SELECT 1 FROM audit_pending p WHERE p.position = e.position))",
    )
    .fetch_one(c)
    .await?);
    if lost > 0 {
        return Ok(report.invalid(
            done + 1,
            format!("{lost} event(s) are neither in the log nor queued for it"),
        ));
    }
    Ok(VerifyAuditChainResponse {
        valid: true,
        events_checked: done,
        first_invalid_sequence: 0,
        checkpoints_checked: report.checkpoints,
        problem: String::new(),
        pending,
    })
}

fn check_checkpoint(
    verifier: &NoteVerifier,
    stored: &StoredCheckpoint,
    frontier: &Frontier,
) -> std::result::Result<(), String> {
    let signed = verifier
        .open(&stored.note)
        .map_err(|e| format!("checkpoint of size {}: {e}", stored.tree_size))?;
    let root = frontier.root();
    if signed.size != frontier.size() || signed.root != root || stored.root_hash != root {
        return Err(format!(
            "checkpoint of size {} does not match the tree recomputed from the events",
            stored.tree_size
        ));
    }
    Ok(())
}
