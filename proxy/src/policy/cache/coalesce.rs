//! Request coalescing on one worker core: concurrent misses on one key make one origin fetch.
//!
//! The first miss on a key becomes the [`Leader`]: it fetches, stores what it may, and
//! finishes (explicitly or by dropping its guard, so an error or a cancelled task still
//! releases the others). Misses that arrive meanwhile become followers: each gets a
//! [`Waiter`], a future that completes when the leader finishes, and then looks in the store
//! again. A follower that still finds nothing (the response was not storable, or the fetch
//! failed) forwards to the origin itself; it never becomes a second leader for others to
//! wait on, so one failing key costs each request at most one wait.
//!
//! Everything here is single-threaded: flights are `Rc<RefCell<..>>` and a waker is only ever
//! woken by the task that finishes the flight on the same core. A waiter has no deadline of
//! its own: the integrator races it with a timer (`monoio::select!` against
//! `monoio::time::sleep`) and forwards when the timer wins; dropping a waiter withdraws it.
//! Flights are keyed by the key's hash alone: two keys that collide share a flight, which
//! costs the second a wait and a store lookup, never a wrong answer.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use ahash::AHashMap;

/// Followers allowed to wait on one flight by default; later misses forward at once.
pub const DEFAULT_MAX_WAITERS: usize = 1024;

#[derive(Default)]
struct Flight {
    done: bool,
    /// One slot per waiter that has been polled; `None` once it is withdrawn. Slots are not
    /// reused, but a flight lasts one fetch and admits at most `max_waiters` at a time.
    wakers: Vec<Option<Waker>>,
    /// Waiters handed out and not yet dropped.
    waiting: usize,
}

struct Flights {
    by_hash: AHashMap<u64, Rc<RefCell<Flight>>>,
    max_waiters: usize,
}

/// One core's flights in progress (`!Send`: a flight never leaves its core). Cloning gives
/// another handle to the same flights.
#[derive(Clone)]
pub struct Coalescer {
    flights: Rc<RefCell<Flights>>,
}

/// What a miss should do.
pub enum Role {
    /// Fetch from the origin, store, then finish (dropping the guard finishes too).
    Leader(Leader),
    /// Wait for the leader, then look in the store again.
    Follower(Waiter),
    /// Too many already wait on this key: forward to the origin without waiting.
    Forward,
}

impl Coalescer {
    /// A coalescer that lets at most `max_waiters` followers wait on one key.
    pub fn new(max_waiters: usize) -> Self {
        Self {
            flights: Rc::new(RefCell::new(Flights {
                by_hash: AHashMap::new(),
                max_waiters,
            })),
        }
    }

    /// Joins the flight for `hash`, or starts one. Call after a store miss.
    pub fn begin(&self, hash: u64) -> Role {
        let mut flights = self.flights.borrow_mut();
        let max_waiters = flights.max_waiters;
        if let Some(flight) = flights.by_hash.get(&hash) {
            let mut f = flight.borrow_mut();
            if f.waiting >= max_waiters {
                return Role::Forward;
            }
            f.waiting += 1;
            return Role::Follower(Waiter {
                flight: Rc::clone(flight),
                slot: None,
            });
        }
        let flight = Rc::new(RefCell::new(Flight::default()));
        flights.by_hash.insert(hash, Rc::clone(&flight));
        Role::Leader(Leader {
            flights: Rc::clone(&self.flights),
            hash,
            flight,
        })
    }

    /// Keys with a fetch in flight.
    pub fn in_flight(&self) -> usize {
        self.flights.borrow().by_hash.len()
    }
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_WAITERS)
    }
}

/// The fetching request's hold on its key; finishing (or dropping) releases the followers.
pub struct Leader {
    flights: Rc<RefCell<Flights>>,
    hash: u64,
    flight: Rc<RefCell<Flight>>,
}

impl Leader {
    /// Releases the followers: call once the response is stored, or is known not to be.
    pub fn finish(self) {
        // `Drop` does the work, so that every way out of the fetch releases them.
        drop(self);
    }

    /// Followers waiting now.
    pub fn waiting(&self) -> usize {
        self.flight.borrow().waiting
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        {
            let mut flights = self.flights.borrow_mut();
            if flights
                .by_hash
                .get(&self.hash)
                .is_some_and(|f| Rc::ptr_eq(f, &self.flight))
            {
                flights.by_hash.remove(&self.hash);
            }
        }
        let wakers = {
            let mut flight = self.flight.borrow_mut();
            flight.done = true;
            std::mem::take(&mut flight.wakers)
        };
        // Woken outside the borrows: a waker may run code that touches the flights.
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

/// A follower's wait for its leader; completes when the leader finishes. Dropping it
/// withdraws the follower.
pub struct Waiter {
    flight: Rc<RefCell<Flight>>,
    /// This waiter's slot in the flight's wakers, once polled.
    slot: Option<usize>,
}

impl Future for Waiter {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut flight = this.flight.borrow_mut();
        if flight.done {
            return Poll::Ready(());
        }
        match this.slot {
            Some(slot) => match &mut flight.wakers[slot] {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            None => {
                this.slot = Some(flight.wakers.len());
                flight.wakers.push(Some(cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut flight = self.flight.borrow_mut();
        flight.waiting -= 1;
        if let Some(slot) = self.slot {
            if let Some(waker) = flight.wakers.get_mut(slot) {
                *waker = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;
    use crate::policy::cache::CacheStore;

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    fn leader(role: Role) -> Leader {
        match role {
            Role::Leader(l) => l,
            _ => panic!("expected the leader"),
        }
    }

    fn follower(role: Role) -> Waiter {
        match role {
            Role::Follower(w) => w,
            _ => panic!("expected a follower"),
        }
    }

    #[test]
    fn fifty_followers_wake_after_one_fetch() {
        runtime().block_on(async {
            let coalescer = Coalescer::default();
            let store = Rc::new(RefCell::new(CacheStore::new(1 << 20, 1 << 16)));
            let fetches = Rc::new(Cell::new(0));
            let hits = Rc::new(Cell::new(0));
            let key = b"h/p\0GET\0\0\0";
            let hash = crate::policy::cache::key_hash(key);

            let mut tasks = Vec::new();
            for _ in 0..51 {
                let (coalescer, store) = (coalescer.clone(), Rc::clone(&store));
                let (fetches, hits) = (Rc::clone(&fetches), Rc::clone(&hits));
                tasks.push(monoio::spawn(async move {
                    if store.borrow_mut().get(hash, key, Instant::now()).is_some() {
                        hits.set(hits.get() + 1);
                        return;
                    }
                    match coalescer.begin(hash) {
                        Role::Leader(lead) => {
                            fetches.set(fetches.get() + 1);
                            monoio::time::sleep(Duration::from_millis(20)).await;
                            store.borrow_mut().insert(
                                hash,
                                key,
                                200,
                                Bytes::new(),
                                Bytes::from_static(b"fetched"),
                                Duration::from_secs(60),
                                Instant::now(),
                            );
                            lead.finish();
                        }
                        Role::Follower(wait) => {
                            wait.await;
                            let hit = store.borrow_mut().get(hash, key, Instant::now());
                            assert_eq!(hit.unwrap().body, "fetched");
                            hits.set(hits.get() + 1);
                        }
                        Role::Forward => panic!("under the waiter bound"),
                    }
                }));
            }
            for task in tasks {
                task.await;
            }
            assert_eq!(fetches.get(), 1);
            assert_eq!(hits.get(), 50);
            assert_eq!(coalescer.in_flight(), 0);
        });
    }

    #[test]
    fn a_dropped_leader_releases_its_followers() {
        runtime().block_on(async {
            let coalescer = Coalescer::new(8);
            let lead = leader(coalescer.begin(1));
            let followers: Vec<_> = (0..3)
                .map(|_| monoio::spawn(follower(coalescer.begin(1))))
                .collect();
            monoio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(lead.waiting(), 3);
            // The fetch failed: the guard goes without a word.
            drop(lead);
            for f in followers {
                f.await;
            }
            // A new miss starts a new flight.
            assert_eq!(coalescer.in_flight(), 0);
            let _next = leader(coalescer.begin(1));
            assert_eq!(coalescer.in_flight(), 1);
        });
    }

    #[test]
    fn waiters_beyond_the_bound_forward() {
        let coalescer = Coalescer::new(2);
        let _lead = leader(coalescer.begin(9));
        let a = follower(coalescer.begin(9));
        let _b = follower(coalescer.begin(9));
        assert!(matches!(coalescer.begin(9), Role::Forward));
        // A withdrawn waiter frees its place.
        drop(a);
        assert!(matches!(coalescer.begin(9), Role::Follower(_)));
        // Other keys fly on their own.
        assert!(matches!(coalescer.begin(10), Role::Leader(_)));
    }

    #[test]
    fn a_timer_bounds_the_wait() {
        runtime().block_on(async {
            let coalescer = Coalescer::default();
            let lead = leader(coalescer.begin(5));
            let wait = follower(coalescer.begin(5));
            let timed_out = monoio::select! {
                _ = wait => false,
                _ = monoio::time::sleep(Duration::from_millis(10)) => true,
            };
            assert!(timed_out);
            // The timed-out waiter withdrew; finishing wakes nobody stale.
            assert_eq!(lead.waiting(), 0);
            lead.finish();
        });
    }

    #[test]
    fn a_waiter_after_finish_is_ready_at_once() {
        runtime().block_on(async {
            let coalescer = Coalescer::default();
            let lead = leader(coalescer.begin(3));
            let wait = follower(coalescer.begin(3));
            lead.finish();
            wait.await;
        });
    }
}
