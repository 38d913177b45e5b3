//! Audit events for refusals that arrive at network speed, bounded: one per
//! key (a caller and method for `authz.denied`, a client address and method
//! for `auth.rate_limited`) per window.
//!
//! Each refusal is evidence, but one audit row per refusal would let the
//! sender make every writer of the service queue behind audit writes. So the
//! first refusal of a key in a window is recorded at once, the following
//! ones are counted, and when the window ends one more event carries their
//! count and the first and last request ids. The counts live in this
//! replica's memory (a cost bound, not a security decision: with N replicas
//! a sender gets up to N windows' first events); a crash loses at most the
//! count of the current window, never the first event. Memory is bounded:
//! past `MAX_WINDOWS` keys in a window, refusals are recorded one by one.

use std::{collections::HashMap, hash::Hash, sync::Mutex, time::Duration};

use serde_json::json;

use crate::{
    audit::{Action, Actor, Event, Outcome},
    db::Timestamp,
};

/// The length of one aggregation window.
pub const WINDOW: Duration = Duration::from_secs(60);
const MAX_WINDOWS: usize = 10_000;

struct Window {
    opened: Timestamp,
    first: Event,
    suppressed: u64,
    first_request_id: String,
    last_request_id: String,
}

pub struct Windows<K> {
    windows: Mutex<HashMap<K, Window>>,
}

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
        }
    }
}

impl<K> std::fmt::Debug for Windows<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Windows")
    }
}

/// The event that stands for a window's counted refusals.
fn summary(window: Window) -> Event {
    let mut event = window.first;
    if let Some(details) = event.details.as_object_mut() {
        details.insert("suppressed".to_owned(), json!(window.suppressed));
        details.insert(
            "first_request_id".to_owned(),
            json!(window.first_request_id),
        );
        details.insert("last_request_id".to_owned(), json!(window.last_request_id));
        details.insert("window_seconds".to_owned(), json!(WINDOW.as_secs()));
    }
    event
}

/// A refusal's event: denied, by `actor`, on `target`.
pub fn refusal(action: Action, actor: Actor, method: &str, details: serde_json::Value) -> Event {
    Event::new(action, actor, "method", method)
        .outcome(Outcome::Denied)
        .details(details)
}

impl<K: Hash + Eq + Clone> Windows<K> {
    /// Notes one refusal whose event `event` builds; the events to write
    /// now (none while `key`'s window is open: it is counted, and no event
    /// is built).
    pub fn note(
        &self,
        key: K,
        event: impl FnOnce() -> Event,
        request_id: &str,
        now: Timestamp,
    ) -> Vec<Event> {
        let Ok(mut windows) = self.windows.lock() else {
            return vec![event()];
        };
        let mut events = Vec::new();
        if let Some(window) = windows.get_mut(&key) {
            if now < window.opened.plus(WINDOW) {
                window.suppressed += 1;
                if window.first_request_id.is_empty() {
                    window.first_request_id = request_id.to_owned();
                }
                window.last_request_id = request_id.to_owned();
                return events;
            }
            if let Some(ended) = windows.remove(&key).filter(|w| w.suppressed > 0) {
                events.push(summary(ended));
            }
        }
        let event = event();
        if windows.len() < MAX_WINDOWS {
            windows.insert(
                key,
                Window {
                    opened: now,
                    first: event.clone(),
                    suppressed: 0,
                    first_request_id: String::new(),
                    last_request_id: String::new(),
                },
            );
        }
        events.push(event);
        events
    }

    /// Ends the windows that are over: the summaries to write.
    pub fn expired(&self, now: Timestamp) -> Vec<Event> {
        let Ok(mut windows) = self.windows.lock() else {
            return Vec::new();
        };
        let over: Vec<K> = windows
            .iter()
            .filter(|(_, w)| now >= w.opened.plus(WINDOW))
            .map(|(key, _)| key.clone())
            .collect();
        over.into_iter()
            .filter_map(|key| windows.remove(&key))
            .filter(|w| w.suppressed > 0)
            .map(summary)
            .collect()
    }
}
