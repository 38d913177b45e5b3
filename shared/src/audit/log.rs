//! The sequencer: every replica looks for queued events every
//! AUDIT_SEQUENCE_INTERVAL; whichever takes the sequencer lock first (a
//! PostgreSQL advisory lock held for one transaction; SQLite's one writer)
//! makes a batch of them leaves of the tree, stores the subtrees they
//! complete and signs a checkpoint of the new size, all in that one
//! transaction. A replica that dies mid-batch takes nothing with it: its
//! transaction rolls back, the lock is free, and the next replica to look
//! sequences the same events. Sequence numbers are gapless because only the
//! lock holder assigns them, each batch after the previous one's commit.
//! The lock saves wasted work; what keeps two sequencers from forking the
//! log are the primary keys of leaves, nodes and checkpoints: of two
//! batches that read the same size, the second fails on them and rolls
//! back (tried: with the lock disabled, the three-replica and kill -9 tests
//! still pass).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use super::{
    merkle::{Frontier, Hash},
    note::{Checkpoint, NoteSigner},
    store::{self, EVENT_COLUMNS, Record, StoredCheckpoint},
};
use crate::{
    clock::Clock,
    config::ServerConfig,
    db::{Db, StartupLock, Timestamp},
    error::{Error, Result},
    metrics::{METRICS, ServiceLabels},
    on_dialect,
};

/// Most events one batch integrates.
const BATCH: i64 = 1000;
/// The pause after a batch that found events: enough for the next to
/// gather a few, short enough to keep the lag near one batch's time.
const BUSY_PAUSE: Duration = Duration::from_millis(10);

/// One service's audit log: its signer and what this replica knows of it.
pub struct Log {
    db: Db,
    clock: Clock,
    signer: NoteSigner,
    interval: Duration,
    max_lag: Duration,
    labels: ServiceLabels,
    /// The size of the newest checkpoint this replica has seen.
    size: watch::Sender<i64>,
    /// When this replica last saw the queue empty or the log grow (µs).
    progress: AtomicI64,
    stopping: watch::Sender<bool>,
    /// Wakes this replica's sequencer before its interval is up.
    poke: tokio::sync::Notify,
    /// Sequences this replica gave lately, by position, so that a review
    /// waiting for its receipt is told without a query per batch.
    recent: std::sync::Mutex<Recent>,
}

/// The newest batches this replica sequenced, and what it saw of the others'.
#[derive(Debug, Default)]
struct Recent {
    sequences: std::collections::HashMap<i64, i64>,
    /// The largest size this replica has seen, its own batches' or not.
    size: i64,
    /// How many times an event missing from `sequences` may since have
    /// become a leaf this replica cannot tell from memory: another replica
    /// grew the log, or this one forgot its oldest sequences. A waiter asks
    /// the database again each time.
    stale: u64,
}

impl Recent {
    /// `size` was read from the database: if it is beyond what this replica
    /// knew, another replica grew the log.
    fn saw(&mut self, size: i64) {
        if size > self.size {
            self.stale += 1;
            self.size = size;
        }
    }

    /// This replica made `positions` the leaves after `size`, forgetting
    /// the oldest half of what it kept once that is more than [`RECENT`].
    fn sequenced(&mut self, size: i64, positions: impl IntoIterator<Item = i64>) {
        self.saw(size);
        if self.sequences.len() > RECENT {
            let keep_from = size - (RECENT / 2) as i64;
            self.sequences.retain(|_, sequence| *sequence > keep_from);
            self.stale += 1;
        }
        // Numbered from the size the batch was made on, as in the database.
        let mut sequence = size;
        for position in positions {
            sequence += 1;
            self.sequences.insert(position, sequence);
        }
        self.size = self.size.max(sequence);
    }
}

/// Positions kept in [`Recent`].
const RECENT: usize = 8192;

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("origin", &self.signer.name())
            .field("size", &*self.size.borrow())
            .finish_non_exhaustive()
    }
}

/// Checks an AUDIT_LOG_NAME: a key name may hold no space or `+`.
pub fn log_name(name: &str) -> std::result::Result<String, String> {
    if super::note::valid_name(name) {
        Ok(name.to_owned())
    } else {
        Err("must be non-empty, with no spaces and no '+'".to_owned())
    }
}

/// The Ed25519 seed of a PKCS#8 PEM key file.
fn seed_from_pem(path: &Path) -> Result<[u8; 32]> {
    let bad =
        |why: String| Error::internal(format!("AUDIT_SIGNING_KEY_FILE {}: {why}", path.display()));
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let pem = pem::parse(text).map_err(|e| bad(e.to_string()))?;
    let der = pem.contents();
    match der.strip_prefix(&crate::token::PKCS8_ED25519_PREFIX[..]) {
        Some(seed) if pem.tag() == "PRIVATE KEY" => seed
            .try_into()
            .map_err(|_| bad("not an Ed25519 PKCS#8 key".to_owned())),
        _ => Err(bad("not an Ed25519 PKCS#8 PEM private key".to_owned())),
    }
}

impl Log {
    /// The log of `service` on `db`, signed with AUDIT_SIGNING_KEY_FILE or
    /// with a key kept in the database (created by whichever replica is
    /// first; every other reads the same one back).
    pub async fn open(
        db: &Db,
        service: &str,
        config: &ServerConfig,
        clock: Clock,
    ) -> Result<Arc<Self>> {
        let seed: [u8; 32] = match &config.audit_signing_key_file {
            Some(path) => seed_from_pem(path)?,
            None => db
                .secret("audit_signing_key", clock.now())
                .await?
                .try_into()
                .map_err(|_| Error::internal("the stored audit signing key is not 32 bytes"))?,
        };
        let origin = format!("{}/{service}", config.audit_log_name);
        let now = clock.now().unix_micros();
        Ok(Arc::new(Self {
            db: db.clone(),
            clock,
            signer: NoteSigner::new(&origin, &seed),
            interval: config.audit_sequence_interval,
            max_lag: config.audit_max_lag,
            labels: ServiceLabels {
                service: service.to_owned(),
            },
            size: watch::Sender::new(0),
            progress: AtomicI64::new(now),
            stopping: watch::Sender::new(false),
            poke: tokio::sync::Notify::new(),
            recent: std::sync::Mutex::new(Recent::default()),
        }))
    }

    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The key that checks this log's checkpoints, in note verifier format.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// Follows the size of the newest checkpoint this replica has seen.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.size.subscribe()
    }

    pub fn size(&self) -> i64 {
        *self.size.borrow()
    }

    /// Set when the service begins to shut down: streams end.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    /// False while events wait and the log has not grown for AUDIT_MAX_LAG.
    pub fn is_keeping_up(&self) -> bool {
        let since = self.clock.now().unix_micros() - self.progress.load(Ordering::Relaxed);
        since < self.max_lag.as_micros() as i64
    }

    /// Sequences until the task is aborted, every AUDIT_SEQUENCE_INTERVAL
    /// and at once again after a full batch.
    pub fn spawn(self: &Arc<Self>) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            loop {
                // Under load, batches follow each other closely (the lag
                // stays near one batch's time); idle, it looks every interval.
                let pause = match log.tick().await {
                    Ok(sequenced) if sequenced >= BATCH => Duration::ZERO,
                    Ok(sequenced) if sequenced > 0 => BUSY_PAUSE.min(log.interval),
                    Ok(_) => log.interval,
                    Err(e) => {
                        tracing::warn!(error = %e, "audit sequencer: cannot sequence now; retrying");
                        log.interval
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = log.poke.notified() => {}
                }
            }
        })
    }

    /// One look: sequences a batch when events wait and this replica gets
    /// the lock, then publishes the newest checkpoint's size. Returns how
    /// many events it sequenced.
    pub(super) async fn tick(&self) -> Result<i64> {
        // One round trip: whether events wait, and the signed size.
        let look = "SELECT EXISTS (SELECT 1 FROM audit_pending), \
                    (SELECT MAX(tree_size) FROM audit_checkpoints)";
        let (waiting, latest): (bool, Option<i64>) =
            on_dialect!(self.db.reader(), p => sqlx::query_as(look).fetch_one(p).await?);
        let mut sequenced = 0;
        let mut size = latest.unwrap_or(0);
        if let Ok(mut recent) = self.recent.lock() {
            recent.saw(size);
        }
        if (waiting || latest.is_none())
            && let Some((count, new_size)) = self.sequence_batch().await?
        {
            sequenced = count;
            size = new_size;
        }
        let grew = self.size.send_if_modified(|known| {
            let grew = size > *known;
            *known = (*known).max(size);
            grew
        });
        if grew || !waiting {
            self.progress
                .store(self.clock.now().unix_micros(), Ordering::Relaxed);
        }
        METRICS
            .audit_tree_size
            .get_or_create(&self.labels)
            .set(self.size());
        Ok(sequenced)
    }

    /// One batch in one transaction, under the sequencer lock; None when
    /// another replica holds it.
    async fn sequence_batch(&self) -> Result<Option<(i64, i64)>> {
        let mut tx = self.db.begin().await?;
        if !tx.try_lock(StartupLock::AuditSequencer).await? {
            return Ok(None);
        }
        // Read after the lock: the previous holder's batch is committed.
        let latest = store::latest_checkpoint(tx.conn()).await?;
        let size = latest.as_ref().map_or(0, |c| c.tree_size);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_pending p JOIN audit_events e ON e.position = p.position \
             LEFT JOIN audit_leaves l ON l.position = p.position ORDER BY p.position LIMIT $1"
        );
        let events: Vec<Record> = on_dialect!(tx.conn(), c => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(BATCH).fetch_all(c).await?);
        if events.is_empty() && latest.is_some() {
            return Ok(Some((0, size)));
        }
        if let Some(event) = events.iter().find(|e| e.sequence.is_some()) {
            return Err(Error::internal(format!(
                "audit event at position {} is queued and already a leaf",
                event.position
            )));
        }
        let mut frontier = frontier(&mut tx, size as u64).await?;
        let (events, hashes) = store::leaf_hashes(events, size + 1).await?;
        let now = self.clock.now();
        let mut completed = Vec::with_capacity(events.len() * 2);
        for hash in hashes {
            frontier.push(hash, &mut completed);
        }
        store::insert_nodes(&mut tx, &completed).await?;
        insert_leaves(&mut tx, &events, size, now).await?;
        let new_size = frontier.size() as i64;
        let checkpoint = Checkpoint {
            origin: self.origin().to_owned(),
            size: frontier.size(),
            root: frontier.root(),
        };
        let note = self.signer.sign(&checkpoint);
        let insert = "INSERT INTO audit_checkpoints (tree_size, root_hash, note, signed_at) \
                      VALUES ($1, $2, $3, $4)";
        on_dialect!(&mut tx, t => sqlx::query(insert)
            .bind(new_size)
            .bind(&checkpoint.root[..])
            .bind(&note)
            .bind(now)
            .execute(&mut **t)
            .await
            .map(|_| ())?);
        tx.commit().await?;
        if let Ok(mut recent) = self.recent.lock() {
            recent.sequenced(size, events.iter().map(|e| e.position));
        }
        let lag = METRICS.audit_lag.get_or_create(&self.labels);
        for event in &events {
            lag.observe(event.occurred_at.until(now).as_secs_f64());
        }
        drop(lag);
        tracing::debug!(
            size = new_size,
            events = events.len(),
            "audit log checkpoint signed"
        );
        Ok(Some((events.len() as i64, new_size)))
    }

    /// Waits until the event at `position` is a leaf under a checkpoint,
    /// or `deadline` passes; its sequence if it is. It asks the database
    /// once, then again only when another replica grew the log (even if
    /// this one grew it further in the same look) or this one forgot old
    /// sequences: what this replica sequences it learns from memory.
    pub async fn sequenced(&self, position: i64, deadline: Duration) -> Result<Option<i64>> {
        let mut size = self.subscribe();
        self.poke.notify_one();
        let wait = async {
            let mut asked = None;
            loop {
                let stale = match self.recent.lock() {
                    Ok(recent) => {
                        if let Some(&sequence) = recent.sequences.get(&position) {
                            return Ok(Some(sequence));
                        }
                        Some(recent.stale)
                    }
                    Err(_) => None,
                };
                if stale.is_none() || asked != stale {
                    let mut conn = self.db.read().await?;
                    if let Some(sequence) = store::sequence_of(conn.conn(), position).await? {
                        return Ok(Some(sequence));
                    }
                    asked = stale;
                }
                if size.changed().await.is_err() {
                    return Ok(None);
                }
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(found) => found,
            Err(_) => Ok(None),
        }
    }

    /// The newest checkpoint, signing the empty tree's first if there is none.
    pub(super) async fn latest(&self) -> Result<StoredCheckpoint> {
        let mut conn = self.db.read().await?;
        if let Some(latest) = store::latest_checkpoint(conn.conn()).await? {
            return Ok(latest);
        }
        drop(conn);
        self.tick().await?;
        let mut conn = self.db.read().await?;
        store::latest_checkpoint(conn.conn())
            .await?
            .ok_or_else(|| Error::unavailable("the audit log has no checkpoint yet"))
    }
}

/// The right edge of the tree of `size` leaves, from the stored nodes.
async fn frontier(tx: &mut crate::db::Tx, size: u64) -> Result<Frontier> {
    let nodes = Frontier::nodes_of(size);
    let found = store::nodes(tx.conn(), &nodes).await?;
    let hashes = nodes
        .iter()
        .map(|n| found.get(n).copied())
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| Error::internal("the audit tree's right edge is missing nodes"))?;
    Frontier::new(size, hashes).ok_or_else(|| Error::internal("audit frontier of the wrong shape"))
}

/// Leaves `size + 1 ..` for `events`, and their queue entries removed.
async fn insert_leaves(
    tx: &mut crate::db::Tx,
    events: &[Record],
    size: i64,
    now: Timestamp,
) -> Result<()> {
    const PER_QUERY: usize = 300;
    for (n, chunk) in events.chunks(PER_QUERY).enumerate() {
        let first = size + 1 + (n * PER_QUERY) as i64;
        let insert = format!(
            "INSERT INTO audit_leaves (sequence, position, sequenced_at) VALUES {}",
            store::placeholders(chunk.len(), 3, 1)
        );
        let dequeue = format!(
            "DELETE FROM audit_pending WHERE position IN ({})",
            store::placeholders(chunk.len(), 1, 1)
        );
        on_dialect!(&mut *tx, t => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.as_str()));
            for (i, event) in chunk.iter().enumerate() {
                q = q.bind(first + i as i64).bind(event.position).bind(now);
            }
            q.execute(&mut **t).await?;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(dequeue.as_str()));
            for event in chunk {
                q = q.bind(event.position);
            }
            q.execute(&mut **t).await?;
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_keys_are_read_from_ed25519_pkcs8_pem_only() {
        let dir =
            std::env::temp_dir().join(format!("docverify-audit-key-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir(&dir).unwrap();
        let seed = [9u8; 32];
        let der = [&crate::token::PKCS8_ED25519_PREFIX[..], &seed].concat();
        let write = |name: &str, tag: &str, contents: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, pem::encode(&pem::Pem::new(tag, contents.to_vec()))).unwrap();
            path
        };
        assert_eq!(
            seed_from_pem(&write("good.pem", "PRIVATE KEY", &der)).unwrap(),
            seed
        );
        for (name, tag, contents) in [
            ("public.pem", "PUBLIC KEY", der.clone()),
            ("short.pem", "PRIVATE KEY", der[..40].to_vec()),
            (
                "other.pem",
                "PRIVATE KEY",
                vec![0x30, 0x03, 0x02, 0x01, 0x00],
            ),
        ] {
            assert!(
                seed_from_pem(&write(name, tag, &contents)).is_err(),
                "{name}"
            );
        }
        assert!(seed_from_pem(&dir.join("missing.pem")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A replica's memory of the sequences it gave is bounded, and what it
    /// forgets, or learns another replica may have given, sends waiters to
    /// the database.
    #[test]
    fn recent_sequences_are_bounded_and_forgetting_sends_waiters_to_the_database() {
        const BATCH: i64 = 1024;
        let mut recent = Recent::default();
        let batch = |recent: &mut Recent, n: i64| {
            let size = n * BATCH;
            // Positions are not sequences: offset them.
            recent.sequenced(size, (size + 1..=size + BATCH).map(|s| s + 7));
        };
        // Exactly RECENT (8192) after eight batches, then one more: kept.
        for n in 0..9 {
            batch(&mut recent, n);
        }
        assert_eq!(recent.stale, 0, "this replica alone");
        assert_eq!(recent.sequences.len(), 9 * BATCH as usize);
        assert_eq!(recent.sequences.get(&8), Some(&1));
        assert_eq!(recent.size, 9 * BATCH);
        // Past RECENT the oldest are forgotten: the newest half stays, and
        // this batch is added.
        batch(&mut recent, 9);
        assert_eq!(recent.stale, 1);
        assert_eq!(recent.sequences.len(), RECENT / 2 + BATCH as usize);
        let keep_from = 9 * BATCH - (RECENT / 2) as i64;
        assert_eq!(recent.sequences.get(&(keep_from + 7)), None);
        assert_eq!(
            recent.sequences.get(&(keep_from + 8)),
            Some(&(keep_from + 1))
        );
        assert_eq!(recent.sequences.get(&(10 * BATCH + 7)), Some(&(10 * BATCH)));
        assert_eq!(recent.size, 10 * BATCH);
        // What this replica knew already is nothing new; a larger size is.
        recent.saw(10 * BATCH);
        assert_eq!(recent.stale, 1);
        recent.saw(10 * BATCH + 3);
        assert_eq!((recent.stale, recent.size), (2, 10 * BATCH + 3));
    }

    #[test]
    fn log_names_hold_no_space_or_plus() {
        assert_eq!(
            log_name("docverify.example/audit"),
            Ok("docverify.example/audit".to_owned())
        );
        for bad in ["", "a b", "a+b"] {
            assert!(log_name(bad).is_err(), "{bad:?}");
        }
    }
}
