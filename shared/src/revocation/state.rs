//! What one process knows of the revocation facts: the newest fact of every
//! principal that has one and every revoked session, up to a cursor, and
//! when that knowledge was last confirmed complete. Checking a token is a
//! hash lookup under a read lock, no database read.
//!
//! Applying a fact is idempotent and order-free per key (the higher cursor
//! wins), so a snapshot and the stream after it may overlap.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use uuid::Uuid;

use super::Fact;
use crate::token::TokenError;

#[derive(Debug, Clone, Copy)]
struct Principal {
    seq: i64,
    generation: i64,
    disabled: bool,
}

#[derive(Debug, Default)]
struct Known {
    principals: HashMap<Uuid, Principal>,
    /// Revoked sessions, with the cursor of their fact.
    sessions: HashMap<Uuid, i64>,
    /// Every fact up to here has been applied.
    cursor: i64,
    /// The oldest cursor the log still keeps.
    oldest: i64,
    /// When `cursor` was last confirmed to be the newest.
    fresh_at: Option<Instant>,
}

impl Known {
    fn apply(&mut self, fact: &Fact) {
        if let Some(session) = fact.session_id {
            let seq = self.sessions.entry(session).or_insert(fact.seq);
            *seq = (*seq).max(fact.seq);
            return;
        }
        let newer = self
            .principals
            .get(&fact.principal_id)
            .is_none_or(|p| p.seq < fact.seq);
        if newer {
            self.principals.insert(
                fact.principal_id,
                Principal {
                    seq: fact.seq,
                    generation: fact.token_generation,
                    disabled: fact.disabled,
                },
            );
        }
    }
}

/// What one process knows of the revocation facts.
#[derive(Debug)]
pub struct Revocations {
    known: RwLock<Known>,
    /// The cursor, for streams waiting on new facts.
    changed: tokio::sync::watch::Sender<i64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            known: RwLock::new(Known::default()),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Revocations {
    /// Applies one fact ahead of the cursor, which does not move: the change's
    /// own replica, at once; [`Self::extend`] moves the cursor when the log is
    /// read.
    pub fn apply(&self, fact: &Fact) {
        if let Ok(mut known) = self.known.write() {
            known.apply(fact);
        }
    }

    /// Applies `facts`, the next ones after the cursor in order, and moves
    /// the cursor to the last. A gap (a fact missing) is refused: the caller
    /// resyncs.
    pub fn extend(&self, facts: &[Fact]) -> Result<(), Gap> {
        let Ok(mut known) = self.known.write() else {
            return Err(Gap);
        };
        for fact in facts {
            if fact.seq != known.cursor + 1 {
                return Err(Gap);
            }
            known.apply(fact);
            known.cursor = fact.seq;
        }
        let cursor = known.cursor;
        drop(known);
        self.changed
            .send_if_modified(|c| std::mem::replace(c, cursor) != cursor);
        Ok(())
    }

    /// Confirms that every fact up to `cursor` is applied, as of now, and
    /// forgets facts before `oldest` (no longer kept: their tokens expired).
    pub fn confirm(&self, cursor: i64, oldest: i64) -> Result<(), Gap> {
        let Ok(mut known) = self.known.write() else {
            return Err(Gap);
        };
        if cursor != known.cursor {
            return Err(Gap);
        }
        known.fresh_at = Some(crate::clock::monotonic());
        known.oldest = oldest;
        known.principals.retain(|_, p| p.seq >= oldest);
        known.sessions.retain(|_, seq| *seq >= oldest);
        Ok(())
    }

    /// Replaces everything with a snapshot complete up to `cursor`.
    pub fn replace(&self, facts: &[Fact], cursor: i64) {
        let mut fresh = Known {
            cursor,
            ..Known::default()
        };
        for fact in facts {
            fresh.apply(fact);
        }
        if let Ok(mut known) = self.known.write() {
            *known = fresh;
        }
        self.changed.send_replace(cursor);
    }

    pub fn cursor(&self) -> i64 {
        self.known.read().map_or(0, |k| k.cursor)
    }

    /// The oldest cursor the log keeps, as last confirmed.
    pub fn oldest(&self) -> i64 {
        self.known.read().map_or(0, |k| k.oldest)
    }

    /// Whether the facts were confirmed complete within `bound`; never when
    /// `bound` is zero.
    pub fn is_fresh(&self, bound: Duration) -> bool {
        self.staleness().is_some_and(|age| age < bound)
    }

    /// How long ago the facts were last confirmed complete.
    pub fn staleness(&self) -> Option<Duration> {
        self.known
            .read()
            .ok()
            .and_then(|k| k.fresh_at)
            .map(|at| at.elapsed())
    }

    /// A stream of the cursor, for whoever serves the facts onwards.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.changed.subscribe()
    }

    /// Whether a token of `principal` with generation `generation` (and
    /// session `session`) is revoked by a known fact.
    pub fn check(
        &self,
        principal: Uuid,
        generation: i64,
        session: Option<Uuid>,
    ) -> Result<(), TokenError> {
        let known = self.known.read().map_err(|_| TokenError::Revoked)?;
        if let Some(p) = known.principals.get(&principal)
            && (p.disabled || generation < p.generation)
        {
            return Err(TokenError::Revoked);
        }
        if session.is_some_and(|s| known.sessions.contains_key(&s)) {
            return Err(TokenError::Revoked);
        }
        Ok(())
    }

    /// How many principals and sessions are held (for the log line at resync).
    pub fn len(&self) -> (usize, usize) {
        self.known
            .read()
            .map_or((0, 0), |k| (k.principals.len(), k.sessions.len()))
    }
}

/// Facts arrived out of order, or a confirmation did not match the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("revocation facts out of order")]
pub struct Gap;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{db::Timestamp, revocation::Kind};

    fn fact(seq: i64, principal: Uuid, generation: i64, disabled: bool) -> Fact {
        Fact {
            seq,
            kind: if disabled {
                Kind::UserDisabled
            } else {
                Kind::UserEnabled
            },
            principal_id: principal,
            token_generation: generation,
            disabled,
            session_id: None,
            occurred_at: Timestamp::from_unix_micros(0),
        }
    }

    #[test]
    fn the_newest_fact_of_a_principal_decides() {
        let state = Revocations::default();
        let ann = Uuid::now_v7();
        state
            .extend(&[fact(1, ann, 1, true), fact(2, ann, 1, false)])
            .unwrap();
        assert_eq!(state.check(ann, 0, None), Err(TokenError::Revoked));
        assert_eq!(state.check(ann, 1, None), Ok(()));
        // An older fact applied late (a snapshot overlapping the stream)
        // changes nothing.
        state.apply(&fact(1, ann, 1, true));
        assert_eq!(state.check(ann, 1, None), Ok(()));
        assert_eq!(state.check(Uuid::now_v7(), 0, None), Ok(()));
        assert_eq!(state.extend(&[fact(4, ann, 2, false)]), Err(Gap));
        assert_eq!(state.cursor(), 2);
    }

    #[test]
    fn a_revoked_session_is_refused_and_forgotten_when_pruned() {
        let state = Revocations::default();
        let (ann, session) = (Uuid::now_v7(), Uuid::now_v7());
        let mut revoked = fact(1, ann, 0, false);
        revoked.kind = Kind::SessionRevoked;
        revoked.session_id = Some(session);
        state.extend(&[revoked]).unwrap();
        assert_eq!(state.check(ann, 0, Some(session)), Err(TokenError::Revoked));
        assert_eq!(state.check(ann, 0, Some(Uuid::now_v7())), Ok(()));
        assert!(!state.is_fresh(Duration::from_secs(60)));
        assert_eq!(state.confirm(2, 1), Err(Gap));
        state.confirm(1, 2).unwrap();
        assert!(state.is_fresh(Duration::from_secs(60)));
        assert!(!state.is_fresh(Duration::ZERO));
        assert_eq!(state.check(ann, 0, Some(session)), Ok(()));
    }

    #[test]
    fn streams_waiting_on_the_cursor_are_woken_only_when_it_moves() {
        let state = Revocations::default();
        let mut moved = state.subscribe();
        state.extend(&[]).unwrap();
        assert!(!moved.has_changed().unwrap(), "no new fact, no wake-up");
        state.extend(&[fact(1, Uuid::now_v7(), 1, true)]).unwrap();
        assert!(moved.has_changed().unwrap());
        assert_eq!(*moved.borrow_and_update(), 1);
    }

    #[test]
    fn a_snapshot_replaces_everything_and_sets_the_cursor() {
        let state = Revocations::default();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        state.extend(&[fact(1, bob, 1, true)]).unwrap();
        state.replace(&[fact(5, ann, 2, true)], 7);
        assert_eq!(state.cursor(), 7);
        assert_eq!(state.check(ann, 2, None), Err(TokenError::Revoked));
        assert_eq!(state.check(bob, 0, None), Ok(()), "what was before is gone");
        assert!(
            !state.is_fresh(Duration::from_secs(60)),
            "fresh only once confirmed"
        );
        assert_eq!(state.extend(&[fact(7, ann, 3, false)]), Err(Gap));
        state.extend(&[fact(8, ann, 3, false)]).unwrap();
    }

    #[test]
    fn pruning_keeps_the_facts_from_the_oldest_cursor_on() {
        let state = Revocations::default();
        let (old, kept) = (Uuid::now_v7(), Uuid::now_v7());
        state
            .extend(&[fact(1, old, 1, true), fact(2, kept, 1, true)])
            .unwrap();
        state.confirm(2, 2).unwrap();
        assert_eq!(state.oldest(), 2);
        assert_eq!(
            state.check(old, 0, None),
            Ok(()),
            "pruned: its tokens expired"
        );
        assert_eq!(state.check(kept, 0, None), Err(TokenError::Revoked));
    }
}
