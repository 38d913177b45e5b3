//! Login throttling, per email (known or not), kept in the database so that
//! it holds across restarts and replicas.
//!
//! An attempt must *claim* a slot before its password reaches the hash check;
//! the claim is a compare-and-swap on the row's version, so parallel guesses
//! cannot all slip through. The claim that makes the 5th consecutive failure
//! possible also sets the lock (1 minute, doubling per further failure, at
//! most 15 minutes), before its own hash is checked: the 6th guess is refused
//! even while the 5th is still being verified, and a crash mid-check still
//! leaves a lock that expires. Success resets the row; refused attempts do not
//! extend the delay.
//!
//! Refused attempts arrive at network speed, so they are not audited one by
//! one (every audit write serialises the service's writers): the row counts
//! them with the first and last request ids, and one `auth.login_throttled`
//! event per lock window carries the count. It is written when the window is
//! closed: by the next claim after the lock expired, by a reset (success,
//! unlock, password change), or by a periodic sweep for windows nobody
//! returned to, each in one transaction with the row change.

use std::time::Duration;

use serde_json::json;
use shared::{
    Result,
    audit::{self, Action, Actor, Event, Outcome},
    clock::Clock,
    db::{Db, Timestamp, Tx},
    identity::RequestContext,
    on_dialect,
};

/// How many consecutive failures a key is allowed, and how long it then
/// waits (`base`, doubling per further failure, at most `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub max_failures: i64,
    pub base: Duration,
    pub max: Duration,
}

/// Per email: 5 failures, then 1 minute doubling up to 15 minutes.
pub(crate) const EMAIL: Policy = Policy {
    max_failures: 5,
    base: Duration::from_secs(60),
    max: Duration::from_secs(15 * 60),
};

/// Per client address, across any emails: against password spraying. The
/// cap is short, so that a user behind the same address who types the right
/// password once (which resets the address) is not locked out for long.
pub(crate) fn address_policy(max_failures: i64, max: Duration) -> Policy {
    Policy {
        max_failures: max_failures.max(1),
        base: Duration::from_secs(30).min(max),
        max,
    }
}

/// The throttle key of a client address (IPv6 by /64). Emails cannot hold a
/// space, so the two kinds of key never collide in one table.
pub(crate) fn address_key(ip: std::net::IpAddr) -> String {
    format!("address {}", shared::client::limit_key(ip))
}
/// A claim that loses this many races in a row is told to retry shortly.
const MAX_RACES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    Allowed,
    Throttled { retry_after: Duration },
}

/// The lock after `failures` consecutive failures, if any.
pub(crate) fn delay(policy: Policy, failures: i64) -> Option<Duration> {
    let over = failures - policy.max_failures;
    (over >= 0).then(|| {
        let factor = 1u32.checked_shl(over.min(16) as u32).unwrap_or(u32::MAX);
        policy.base.saturating_mul(factor).min(policy.max)
    })
}

#[derive(sqlx::FromRow)]
struct Row {
    failures: i64,
    locked_until: Option<Timestamp>,
    version: i64,
    refused: i64,
    refused_first_request: Option<String>,
    refused_last_request: Option<String>,
}

impl Row {
    /// The one audit event that stands for every attempt refused in the
    /// lock window that ended, if any was.
    fn window_event(&self, key: &str) -> Option<Event> {
        (self.refused > 0).then(|| {
            let (action, actor, target_type, target) = match key.strip_prefix("address ") {
                Some(address) => (
                    Action::AddressThrottled,
                    String::new(),
                    "client_address",
                    address,
                ),
                None => (Action::LoginThrottled, key.to_owned(), "user", key),
            };
            Event::new(
                action,
                Actor {
                    id: None,
                    email: actor,
                },
                target_type,
                target,
            )
            .outcome(Outcome::Denied)
            .details(json!({
                "refused_attempts": self.refused,
                "first_request_id": self.refused_first_request,
                "last_request_id": self.refused_last_request,
                "locked_until_unix": self.locked_until.map(Timestamp::unix_seconds),
            }))
        })
    }
}

const SELECT: &str = "SELECT failures, locked_until, version, refused, refused_first_request, \
                      refused_last_request FROM login_throttle WHERE email = $1";

/// Claims one password check for `email`, or says how long to wait. A
/// refused attempt costs one single-row UPDATE (counted for the window's
/// audit event), never a hash or an audit row of its own.
#[tracing::instrument(level = "debug", skip(db, ctx))]
pub(crate) async fn claim(
    db: &Db,
    ctx: &RequestContext,
    email: &str,
    policy: Policy,
    now: Timestamp,
) -> Result<Claim> {
    let ensure = "INSERT INTO login_throttle (email, failures, locked_until, version) \
                  VALUES ($1, 0, NULL, 0) ON CONFLICT (email) DO NOTHING";
    // The refused count is part of the comparison: a refusal that lands
    // late is flushed by the next claim instead of being wiped.
    let swap = "UPDATE login_throttle SET failures = $2, locked_until = $3, version = version + 1, \
                refused = 0, refused_first_request = NULL, refused_last_request = NULL \
                WHERE email = $1 AND version = $4 AND refused = $5";
    for _ in 0..MAX_RACES {
        let row: Option<Row> = on_dialect!(db.writer(), p => sqlx::query_as(SELECT).bind(email).fetch_optional(p).await?);
        let Some(row) = row else {
            // First attempt for this email, or a reset raced us.
            on_dialect!(db.writer(), p => sqlx::query(ensure).bind(email).execute(p).await.map(|_| ())?);
            continue;
        };
        if row.locked_until.is_some_and(|until| until > now) {
            // Counted by the statement that also rechecks the lock.
            if let Some(throttled) = count_refusal(db, ctx, email, now).await? {
                return Ok(throttled);
            }
            continue;
        }
        let failures = row.failures + 1;
        let lock = delay(policy, failures).map(|d| now.plus(d));
        // The window that ended is closed out with its audit event, atomically.
        let mut tx = db.begin().await?;
        let swapped = on_dialect!(tx.conn(), c => sqlx::query(swap)
            .bind(email)
            .bind(failures)
            .bind(lock)
            .bind(row.version)
            .bind(row.refused)
            .execute(c)
            .await?
            .rows_affected());
        if swapped == 1 {
            if let Some(event) = row.window_event(email) {
                audit::append(&mut tx, ctx, now, event).await?;
            }
            tx.commit().await?;
            return Ok(Claim::Allowed);
        }
    }
    Ok(Claim::Throttled {
        retry_after: Duration::from_secs(1),
    })
}

/// Refuses (counting the refusal for the window's event) while `key` is
/// locked, without claiming anything: an attempt that goes on to be
/// refused elsewhere is then not a failure of `key`'s.
#[tracing::instrument(level = "debug", skip(db, ctx))]
pub(crate) async fn refuse_if_locked(
    db: &Db,
    ctx: &RequestContext,
    key: &str,
    now: Timestamp,
) -> Result<Claim> {
    Ok(count_refusal(db, ctx, key, now)
        .await?
        .unwrap_or(Claim::Allowed))
}

/// Counts one refused attempt if `key` is locked at `now` (one statement:
/// the check and the count together); the refusal, or `None` when unlocked.
async fn count_refusal(
    db: &Db,
    ctx: &RequestContext,
    key: &str,
    now: Timestamp,
) -> Result<Option<Claim>> {
    let refuse = "UPDATE login_throttle SET refused = refused + 1, \
                  refused_first_request = COALESCE(refused_first_request, $2), \
                  refused_last_request = $2 WHERE email = $1 AND locked_until > $3 \
                  RETURNING locked_until";
    let until: Option<Timestamp> = on_dialect!(db.writer(), p => sqlx::query_scalar(refuse)
        .bind(key)
        .bind(&ctx.request_id)
        .bind(now)
        .fetch_optional(p)
        .await?);
    Ok(until.map(|until| Claim::Throttled {
        retry_after: now.until(until).max(Duration::from_secs(1)),
    }))
}

/// After a successful login, a password change or an unlock: the failures
/// were not consecutive after all. Closes the lock window's audit record.
#[tracing::instrument(level = "debug", skip(tx, ctx))]
pub(crate) async fn reset(
    tx: &mut Tx,
    ctx: &RequestContext,
    email: &str,
    now: Timestamp,
) -> Result<()> {
    let sql = "DELETE FROM login_throttle WHERE email = $1 RETURNING failures, locked_until, \
               version, refused, refused_first_request, refused_last_request";
    let row: Option<Row> =
        on_dialect!(tx.conn(), c => sqlx::query_as(sql).bind(email).fetch_optional(c).await?);
    if let Some(event) = row.and_then(|r| r.window_event(email)) {
        audit::append(tx, ctx, now, event).await?;
    }
    Ok(())
}

/// Closes the audit record of lock windows that ended with nobody trying
/// again (the next claim or a reset closes the others); run periodically.
#[tracing::instrument(level = "debug", skip(db))]
pub(crate) async fn close_expired_windows(db: &Db, now: Timestamp) -> Result<()> {
    let expired =
        "SELECT email FROM login_throttle WHERE refused > 0 AND locked_until <= $1 LIMIT 100";
    let close = "UPDATE login_throttle SET refused = 0, refused_first_request = NULL, \
                 refused_last_request = NULL WHERE email = $1 AND version = $2 AND refused = $3";
    // Found on a reader (SQLite's one writer stays free); each is then
    // closed with a compare-and-swap in its own transaction.
    let emails: Vec<String> =
        on_dialect!(db.reader(), p => sqlx::query_scalar(expired).bind(now).fetch_all(p).await?);
    let ctx = RequestContext {
        request_id: "throttle-windows".to_owned(),
        ..RequestContext::default()
    };
    for email in emails {
        let mut tx = db.begin().await?;
        let row: Option<Row> = on_dialect!(tx.conn(), c => sqlx::query_as(SELECT).bind(&email).fetch_optional(c).await?);
        let Some(row) = row.filter(|r| r.locked_until.is_some_and(|u| u <= now)) else {
            continue;
        };
        let swapped = on_dialect!(tx.conn(), c => sqlx::query(close)
            .bind(&email)
            .bind(row.version)
            .bind(row.refused)
            .execute(c)
            .await?
            .rows_affected());
        if let (1, Some(event)) = (swapped, row.window_event(&email)) {
            audit::append(&mut tx, &ctx, now, event).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// How often lock windows that nobody returned to are closed out.
const WINDOW_SWEEP: Duration = Duration::from_secs(2);

/// Runs [`close_expired_windows`] every [`WINDOW_SWEEP`] until aborted.
pub(crate) fn spawn_window_sweep(db: Db, clock: Clock) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(WINDOW_SWEEP).await;
            if let Err(e) = close_expired_windows(&db, clock.now()).await {
                tracing::warn!(error = %e, "cannot close expired login throttle windows");
            }
        }
    })
}
