//! The budget of streaming calls, apart from the unary one.
//!
//! Threat: a stream stays open as long as its client likes. Health `Watch`
//! and reflection are public, and a download whose reader never opens its
//! flow-control window never ends. If streams held slots of the unary budget,
//! a thousand idle streams over a few connections would make every other RPC
//! (health `Check` included, so container health checks fail) answer
//! RESOURCE_EXHAUSTED. So streaming calls take a slot of their own budget:
//! one per service for public streams, one for authenticated streams (an
//! anonymous caller cannot starve downloads), and a count per connection.
//! Over either, the call is refused at once. A streamed response also has a
//! stall timeout and a total lifetime (see `body::Watched`), which free its
//! slot whatever the client does.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Reason};

/// How long a caller refused for a full streaming budget is told to wait.
const STREAMS_RETRY: Duration = Duration::from_secs(1);

/// The limits, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    pub per_service: usize,
    pub per_connection: usize,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
}

/// Streaming calls in flight per client connection (a peer address is one
/// connection).
type Connections = Arc<Mutex<HashMap<SocketAddr, usize>>>;

#[derive(Debug)]
pub struct StreamBudget {
    public: Arc<Semaphore>,
    authenticated: Arc<Semaphore>,
    per_connection: usize,
    connections: Connections,
    pub config: StreamConfig,
}

/// One streaming call's place in the budget; given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    connection: Option<(SocketAddr, Connections)>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let Some((peer, connections)) = &self.connection else {
            return;
        };
        if let Ok(mut connections) = connections.lock()
            && let Some(count) = connections.get_mut(peer)
        {
            *count -= 1;
            if *count == 0 {
                connections.remove(peer);
            }
        }
    }
}

const TOO_MANY_STREAMS: Error = Error::ResourceExhausted {
    reason: Reason::TooManyStreams,
    message: "too many streaming calls in progress on this service or connection; retry shortly",
    retry_after: Some(STREAMS_RETRY),
};

impl StreamBudget {
    pub fn new(config: StreamConfig) -> Self {
        let per_service = config.per_service.max(1);
        Self {
            public: Arc::new(Semaphore::new(per_service)),
            authenticated: Arc::new(Semaphore::new(per_service)),
            per_connection: config.per_connection.max(1),
            connections: Arc::default(),
            config,
        }
    }

    /// A slot for a streaming call of a public method or not, from `peer`'s
    /// connection (a peer address is one connection).
    pub fn admit(&self, public: bool, peer: Option<SocketAddr>) -> Result<StreamSlot, Error> {
        let pool = if public {
            &self.public
        } else {
            &self.authenticated
        };
        let permit = pool
            .clone()
            .try_acquire_owned()
            .map_err(|_| TOO_MANY_STREAMS)?;
        let Some(peer) = peer else {
            return Ok(StreamSlot {
                _permit: permit,
                connection: None,
            });
        };
        let mut connections = self
            .connections
            .lock()
            .map_err(|_| Error::internal("stream budget lock poisoned"))?;
        let count = connections.entry(peer).or_insert(0);
        if *count >= self.per_connection {
            return Err(TOO_MANY_STREAMS);
        }
        *count += 1;
        Ok(StreamSlot {
            _permit: permit,
            connection: Some((peer, self.connections.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_service: usize, per_connection: usize) -> StreamBudget {
        StreamBudget::new(StreamConfig {
            per_service,
            per_connection,
            idle_timeout: Duration::from_secs(1),
            max_lifetime: Duration::from_secs(1),
        })
    }

    #[test]
    fn a_connection_holds_at_most_its_share_and_gets_slots_back() {
        let budget = budget(10, 2);
        let (one, two): (SocketAddr, SocketAddr) = (
            "10.0.0.1:1000".parse().unwrap(),
            "10.0.0.2:1000".parse().unwrap(),
        );
        let first = budget.admit(true, Some(one)).unwrap();
        let _second = budget.admit(false, Some(one)).unwrap();
        assert!(
            budget.admit(true, Some(one)).is_err(),
            "a third on one connection"
        );
        let _other = budget.admit(true, Some(two)).expect("another connection");
        drop(first);
        let _again = budget.admit(true, Some(one)).expect("a slot given back");
        assert!(budget.admit(true, Some(one)).is_err());
        drop((_second, _again));
        assert!(
            budget.connections.lock().unwrap().get(&one).is_none(),
            "a connection with no stream is forgotten"
        );
    }

    #[test]
    fn public_and_authenticated_streams_have_budgets_of_their_own() {
        let budget = budget(2, 100);
        let public: Vec<_> = (0..2).map(|_| budget.admit(true, None).unwrap()).collect();
        assert!(
            budget.admit(true, None).is_err(),
            "the public budget is full"
        );
        let _download = budget
            .admit(false, None)
            .expect("authenticated streams still open");
        drop(public);
        assert!(budget.admit(true, None).is_ok());
    }
}
