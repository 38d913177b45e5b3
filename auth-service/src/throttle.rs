//! Login throttling, per email (known or not), kept in the database so that
//! it holds across restarts and replicas.
//!
//! An attempt must *claim* a slot before its password reaches the hash check;
//! the claim is a compare-and-swap on the row's version, so parallel guesses
//! cannot all slip through. The claim that makes the 5th consecutive failure
//! possible also sets the lock (1 minute, doubling per further failure, at
//! most 15 minutes), before its own hash is checked: the 6th guess is refused
//! even while the 5th is still being verified, and a crash mid-check still
//! leaves a lock that expires. Success resets the row; refused attempts change
//! nothing, so they do not extend the delay.

use std::time::Duration;

use shared::{
    Result,
    db::{Conn, Db, Timestamp},
    on_dialect,
};

/// Consecutive failures allowed before the lock.
pub const MAX_FAILURES: i64 = 5;
const BASE_DELAY: Duration = Duration::from_secs(60);
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// A claim that loses this many races in a row is told to retry shortly.
const MAX_RACES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Allowed,
    Throttled { retry_after: Duration },
}

/// The lock after `failures` consecutive failures, if any.
pub fn delay(failures: i64) -> Option<Duration> {
    let over = failures - MAX_FAILURES;
    (over >= 0).then(|| {
        let factor = 1u32.checked_shl(over.min(16) as u32).unwrap_or(u32::MAX);
        BASE_DELAY.saturating_mul(factor).min(MAX_DELAY)
    })
}

#[derive(sqlx::FromRow)]
struct Row {
    failures: i64,
    locked_until: Option<Timestamp>,
    version: i64,
}

pub async fn claim(db: &Db, email: &str, now: Timestamp) -> Result<Claim> {
    let ensure = "INSERT INTO login_throttle (email, failures, locked_until, version) \
                  VALUES ($1, 0, NULL, 0) ON CONFLICT (email) DO NOTHING";
    let select = "SELECT failures, locked_until, version FROM login_throttle WHERE email = $1";
    let swap = "UPDATE login_throttle SET failures = $2, locked_until = $3, version = version + 1 \
                WHERE email = $1 AND version = $4";
    on_dialect!(db.writer(), p => {
        for _ in 0..MAX_RACES {
            let Some(row) = sqlx::query_as::<_, Row>(select).bind(email).fetch_optional(p).await? else {
                // First attempt for this email, or a reset raced us.
                sqlx::query(ensure).bind(email).execute(p).await?;
                continue;
            };
            if let Some(until) = row.locked_until.filter(|until| *until > now) {
                return Ok(Claim::Throttled { retry_after: now.until(until).max(Duration::from_secs(1)) });
            }
            let failures = row.failures + 1;
            let lock = delay(failures).map(|d| now.plus(d));
            let swapped = sqlx::query(swap)
                .bind(email)
                .bind(failures)
                .bind(lock)
                .bind(row.version)
                .execute(p)
                .await?
                .rows_affected();
            if swapped == 1 {
                return Ok(Claim::Allowed);
            }
        }
        Ok(Claim::Throttled { retry_after: Duration::from_secs(1) })
    })
}

/// After a successful login: the failures were not consecutive after all.
pub async fn reset(c: Conn<'_>, email: &str) -> Result<()> {
    let sql = "DELETE FROM login_throttle WHERE email = $1";
    on_dialect!(c, c => sqlx::query(sql).bind(email).execute(c).await.map(|_| ()))?;
    Ok(())
}
