//! Time is passed in, not read: token expiry and throttling windows are tested
//! with a clock the test controls.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use time::OffsetDateTime;

use crate::db::Timestamp;

/// The source of "now" for everything that compares times.
#[derive(Clone, Debug)]
pub struct Clock(Source);

#[derive(Clone, Debug)]
enum Source {
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that stands still until the returned handle moves it.
    pub fn manual(start: OffsetDateTime) -> (Self, ManualClock) {
        let micros = Arc::new(AtomicI64::new(Timestamp::from(start).unix_micros()));
        (Self(Source::Manual(micros.clone())), ManualClock(micros))
    }

    pub fn now(&self) -> Timestamp {
        match &self.0 {
            #[allow(clippy::disallowed_methods)] // the one place that reads it
            Source::System => Timestamp::from(OffsetDateTime::now_utc()),
            Source::Manual(micros) => Timestamp::from_unix_micros(micros.load(Ordering::SeqCst)),
        }
    }
}

/// A monotonic instant, for bounds on elapsed time (timeouts, how often a
/// refresh may run) rather than times that are compared or stored.
#[allow(clippy::disallowed_methods)] // the one place that reads it
pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
}

/// Moves a manual [`Clock`].
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A [`Clock`] that shows this one's time (for a second service that
    /// must share it).
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(self.0.clone()))
    }

    /// The time the clock shows.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(self.0.load(Ordering::SeqCst))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(micros, Ordering::SeqCst);
    }
}
