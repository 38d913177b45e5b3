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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Event {
        let actor = Actor {
            id: None,
            email: String::new(),
        };
        refusal(Action::AccessDenied, actor, "m", json!({ "n": n }))
    }

    fn at(seconds: u64) -> Timestamp {
        Timestamp::from_unix_micros(1_000_000_000_000).plus(Duration::from_secs(seconds))
    }

    #[test]
    fn the_first_refusal_is_written_the_rest_counted_into_a_summary() {
        let windows = Windows::default();
        assert_eq!(windows.note("k", || event(0), "r0", at(0)).len(), 1);
        for i in 1..=3 {
            let request = format!("r{i}");
            assert!(windows.note("k", || event(i), &request, at(59)).is_empty());
        }
        // Another key has its own window.
        assert_eq!(windows.note("j", || event(9), "j0", at(30)).len(), 1);
        // At the window's end exactly, a new one opens: the summary of the
        // old one, then the refusal itself.
        let events = windows.note("k", || event(4), "r4", at(60));
        assert_eq!(events.len(), 2, "{events:?}");
        let summary = &events[0].details;
        assert_eq!(summary["n"], 0, "the window's first event, summarised");
        assert_eq!(summary["suppressed"], 3);
        assert_eq!(summary["first_request_id"], "r1");
        assert_eq!(summary["last_request_id"], "r3");
        assert_eq!(summary["window_seconds"], 60);
        assert_eq!(events[1].details["n"], 4);
        // A window with nothing counted ends without a summary.
        assert_eq!(windows.note("k", || event(5), "r5", at(120)).len(), 1);
    }

    #[test]
    fn windows_that_are_over_are_summarised_when_counted_and_dropped_all_the_same() {
        let windows = Windows::default();
        windows.note("counted", || event(0), "a", at(0));
        windows.note("counted", || event(1), "b", at(10));
        windows.note("alone", || event(2), "c", at(0));
        windows.note("later", || event(3), "d", at(30));
        windows.note("later", || event(4), "e", at(31));
        assert!(windows.expired(at(59)).is_empty());
        let ended = windows.expired(at(60));
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0].details["suppressed"], 1);
        // Both windows that ended are gone: their next refusal is a first.
        assert_eq!(windows.note("counted", || event(5), "f", at(61)).len(), 1);
        assert_eq!(windows.note("alone", || event(6), "g", at(61)).len(), 1);
        assert_eq!(windows.expired(at(90)).len(), 1, "later's window");
    }

    #[test]
    fn past_the_key_limit_refusals_are_written_one_by_one() {
        let windows = Windows::default();
        for key in 0..MAX_WINDOWS {
            windows.note(key, || event(0), "r", at(0));
        }
        let beyond = MAX_WINDOWS;
        assert_eq!(windows.note(beyond, || event(1), "r", at(1)).len(), 1);
        assert_eq!(
            windows.note(beyond, || event(2), "r", at(2)).len(),
            1,
            "not counted"
        );
        assert!(
            windows.note(0, || event(3), "r", at(3)).is_empty(),
            "a kept key is"
        );
    }
}
