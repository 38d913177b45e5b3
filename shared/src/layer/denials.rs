//! `authz.denied` events, bounded: one per caller and method per window.
//!
//! Threat: a caller with a valid token calls a method their roles do not
//! allow, at network speed. Each refusal is evidence, but one audit row per
//! refusal would let that caller make every writer of the service queue
//! behind audit writes. So the first denial of a (caller, method) in a window
//! is recorded at once, the following ones are counted, and when the window
//! ends one more event carries their count and the first and last request
//! ids. The counts live in this replica's memory (a cost bound, not a
//! security decision: with N replicas a caller gets up to N windows' first
//! events); a crash loses at most the count of the current window, never the
//! first event. Memory is bounded: past `MAX_WINDOWS` callers in a window,
//! denials are recorded one by one again.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::{Actor, Event, Outcome},
    db::Timestamp,
    identity::Identity,
};

/// The length of one aggregation window.
pub const DENIAL_WINDOW: Duration = Duration::from_secs(60);
const MAX_WINDOWS: usize = 10_000;

struct Window {
    opened: Timestamp,
    actor: Actor,
    suppressed: u64,
    first_request_id: String,
    last_request_id: String,
}

#[derive(Default)]
pub struct Denials {
    windows: Mutex<HashMap<(Uuid, &'static str), Window>>,
}

impl std::fmt::Debug for Denials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Denials")
    }
}

/// The event for a single denial.
pub fn denied(identity: &Identity, method: &str) -> Event {
    Event::new("authz.denied", Actor::from(identity), "method", method)
        .outcome(Outcome::Denied)
        .details(json!({ "method": method }))
}

fn summary(method: &str, window: Window) -> Event {
    Event::new("authz.denied", window.actor, "method", method)
        .outcome(Outcome::Denied)
        .details(json!({
            "method": method,
            "suppressed_denials": window.suppressed,
            "first_request_id": window.first_request_id,
            "last_request_id": window.last_request_id,
            "window_seconds": DENIAL_WINDOW.as_secs(),
        }))
}

impl Denials {
    /// Notes one denial; the events to write now (none while the caller's
    /// window for this method is open: it is counted instead).
    pub fn note(
        &self,
        identity: &Identity,
        method: &'static str,
        request_id: &str,
        now: Timestamp,
    ) -> Vec<Event> {
        let Ok(mut windows) = self.windows.lock() else {
            return vec![denied(identity, method)];
        };
        let key = (identity.user_id, method);
        let mut events = Vec::new();
        if let Some(window) = windows.get_mut(&key) {
            if now < window.opened.plus(DENIAL_WINDOW) {
                window.suppressed += 1;
                if window.first_request_id.is_empty() {
                    window.first_request_id = request_id.to_owned();
                }
                window.last_request_id = request_id.to_owned();
                return events;
            }
            if let Some(ended) = windows.remove(&key).filter(|w| w.suppressed > 0) {
                events.push(summary(method, ended));
            }
        }
        if windows.len() < MAX_WINDOWS {
            windows.insert(
                key,
                Window {
                    opened: now,
                    actor: Actor::from(identity),
                    suppressed: 0,
                    first_request_id: String::new(),
                    last_request_id: String::new(),
                },
            );
        }
        events.push(denied(identity, method));
        events
    }

    /// Ends the windows that are over: the summaries to write.
    pub fn expired(&self, now: Timestamp) -> Vec<Event> {
        let Ok(mut windows) = self.windows.lock() else {
            return Vec::new();
        };
        let over: Vec<_> = windows
            .iter()
            .filter(|(_, w)| now >= w.opened.plus(DENIAL_WINDOW))
            .map(|(key, _)| *key)
            .collect();
        over.into_iter()
            .filter_map(|key| windows.remove(&key).map(|w| (key.1, w)))
            .filter(|(_, w)| w.suppressed > 0)
            .map(|(method, w)| summary(method, w))
            .collect()
    }
}
