//! Coalescing across cores: while one core fetches a key, a miss on another core waits for
//! that fetch instead of making its own, and takes the response into its own store.
//!
//! Each core's [`super::Coalescer`] already makes one fetch per key per core; this adds one
//! registry per node, touched only on misses (a lock here costs nothing next to the backend
//! fetch a miss makes). The fetching core publishes what it stored (`Bytes`, shared, not
//! copied) in the flight; a waiting core polls the flight on its own timer (a monoio task
//! cannot be woken from another thread), then copies the entry into its store and answers
//! from it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;

/// The response a flight stored, as every core's store takes it.
#[derive(Clone, Debug)]
pub struct Filled {
    pub status: u16,
    pub headers: Bytes,
    pub body: Bytes,
    /// When it was stored, and for how long it stays fresh from then.
    pub stored_at: Instant,
    pub ttl: Duration,
}

/// One key being fetched somewhere on the node.
pub struct NodeFlight {
    key: Box<[u8]>,
    done: AtomicBool,
    filled: Mutex<Option<Filled>>,
}

impl NodeFlight {
    /// Whether the fetch has ended (stored or not).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// What the fetch stored, if it has ended with something stored.
    pub fn filled(&self) -> Option<Filled> {
        self.filled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

/// The node's flights in progress, by key hash.
#[derive(Default)]
pub struct NodeFlights {
    by_hash: Mutex<AHashMap<u64, Arc<NodeFlight>>>,
}

/// What a miss does on the node.
pub enum NodeRole {
    /// Fetch; publish what is stored with [`NodeLeader::fill`]. Dropping the guard ends the
    /// flight.
    Leader(NodeLeader),
    /// Another core fetches this key: wait for its flight.
    Follower(Arc<NodeFlight>),
    /// Another key with the same hash is in flight: fetch without coalescing.
    Alone,
}

impl NodeFlights {
    pub fn begin(self: &Arc<Self>, hash: u64, key: &[u8]) -> NodeRole {
        let mut flights = self.by_hash.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = flights.get(&hash) {
            return if *flight.key == *key {
                NodeRole::Follower(Arc::clone(flight))
            } else {
                NodeRole::Alone
            };
        }
        let flight = Arc::new(NodeFlight {
            key: key.into(),
            done: AtomicBool::new(false),
            filled: Mutex::new(None),
        });
        flights.insert(hash, Arc::clone(&flight));
        NodeRole::Leader(NodeLeader {
            flights: Arc::clone(self),
            hash,
            flight,
        })
    }

    /// Flights in progress.
    pub fn in_flight(&self) -> usize {
        self.by_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The fetching core's hold on a key's flight.
pub struct NodeLeader {
    flights: Arc<NodeFlights>,
    hash: u64,
    flight: Arc<NodeFlight>,
}

impl NodeLeader {
    /// Publishes the stored response to the cores waiting for it.
    pub fn fill(&self, filled: Filled) {
        *self
            .flight
            .filled
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(filled);
    }
}

impl Drop for NodeLeader {
    fn drop(&mut self) {
        self.flight.done.store(true, Ordering::Release);
        let mut flights = self
            .flights
            .by_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if flights
            .get(&self.hash)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            flights.remove(&self.hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_core_follows_the_first_and_gets_what_it_stored() {
        let flights = Arc::new(NodeFlights::default());
        let NodeRole::Leader(leader) = flights.begin(7, b"k") else {
            panic!("the first miss leads");
        };
        let NodeRole::Follower(flight) = flights.begin(7, b"k") else {
            panic!("the second follows");
        };
        assert!(matches!(flights.begin(7, b"other"), NodeRole::Alone));
        assert!(!flight.is_done());
        leader.fill(Filled {
            status: 200,
            headers: Bytes::from_static(b"a: b\r\n"),
            body: Bytes::from_static(b"body"),
            stored_at: Instant::now(),
            ttl: Duration::from_secs(1),
        });
        drop(leader);
        assert!(flight.is_done());
        assert_eq!(flight.filled().unwrap().body, Bytes::from_static(b"body"));
        assert_eq!(flights.in_flight(), 0);
        assert!(matches!(flights.begin(7, b"k"), NodeRole::Leader(_)));
    }

    #[test]
    fn a_flight_that_stores_nothing_ends_empty_across_threads() {
        let flights = Arc::new(NodeFlights::default());
        let NodeRole::Leader(leader) = flights.begin(1, b"k") else {
            panic!()
        };
        let follower = {
            let flights = Arc::clone(&flights);
            std::thread::spawn(move || {
                let NodeRole::Follower(flight) = flights.begin(1, b"k") else {
                    panic!()
                };
                while !flight.is_done() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                flight.filled().is_none()
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(leader);
        assert!(follower.join().unwrap());
    }
}
