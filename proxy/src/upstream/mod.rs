//! Backends as a worker sees them: its balancers, its idea of which targets are down, and its
//! keep-alive pool of upstream connections.
//!
//! All of it is per core. A worker never borrows another worker's connection or counter; the
//! price is that each core keeps its own idle connections per target (`max_idle_per_target`).

mod balance;
mod pool;

pub use balance::Balancer;
pub use pool::{UpstreamConn, UpstreamPool};

use std::cell::{Cell, RefCell};
use std::time::Instant;

use crate::snapshot::Snapshot;

/// One worker's upstream state for one snapshot.
pub struct Upstreams {
    balancers: Vec<RefCell<Balancer>>,
    /// Per target (flattened index): skipped until this instant after a failed connect.
    down_until: Vec<Cell<Option<Instant>>>,
    pub pool: UpstreamPool,
}

/// Tried targets of one request, so that a failed connect moves on to another and the retry
/// loop ends once every target has been tried. The first 128 targets of a backend fit in a
/// bit set; a larger backend spills the rest into a vector (allocated only on that path).
#[derive(Default)]
pub struct Tried {
    bits: u128,
    more: Vec<usize>,
}

impl Tried {
    fn has(&self, local: usize) -> bool {
        if local < 128 {
            self.bits & (1u128 << local) != 0
        } else {
            self.more.contains(&local)
        }
    }

    pub fn add(&mut self, local: usize) {
        if local < 128 {
            self.bits |= 1u128 << local;
        } else if !self.more.contains(&local) {
            self.more.push(local);
        }
    }
}

impl Upstreams {
    pub fn new(snapshot: &Snapshot) -> Upstreams {
        let balancers = snapshot
            .config
            .backends
            .iter()
            .map(|b| {
                RefCell::new(Balancer::new(
                    b.balance,
                    b.targets.iter().map(|t| (t.weight, t.priority)),
                ))
            })
            .collect();
        let n = snapshot.targets.len();
        Upstreams {
            balancers,
            down_until: (0..n).map(|_| Cell::new(None)).collect(),
            pool: UpstreamPool::new(snapshot),
        }
    }

    /// Chooses a target of `backend` not yet tried, preferring targets that are not down; when
    /// every untried target is down it picks among them anyway (a down mark is a guess, and a
    /// try is better than a certain 503). Returns the flattened target index.
    pub fn choose(
        &self,
        snapshot: &Snapshot,
        backend: usize,
        tried: &Tried,
        now: Instant,
    ) -> Option<usize> {
        let first = snapshot.backend_targets[backend].start;
        let up = |local: usize| {
            self.down_until[first + local]
                .get()
                .is_none_or(|until| now >= until)
        };
        let mut balancer = self.balancers[backend].borrow_mut();
        balancer
            .pick(|i| !tried.has(i) && up(i))
            .or_else(|| balancer.pick(|i| !tried.has(i)))
            .map(|local| first + local)
    }

    pub fn mark_down(&self, snapshot: &Snapshot, target: usize, now: Instant) {
        let backend = &snapshot.config.backends[snapshot.targets[target].backend];
        self.down_until[target].set(Some(now + backend.unavailable_for));
    }

    pub fn mark_up(&self, target: usize) {
        if self.down_until[target].get().is_some() {
            self.down_until[target].set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tried;

    #[test]
    fn tried_holds_every_target_of_a_large_backend() {
        let mut tried = Tried::default();
        for local in 0..300 {
            assert!(!tried.has(local));
            tried.add(local);
            assert!(tried.has(local));
        }
        tried.add(200);
        assert_eq!(tried.more.len(), 300 - 128);
        assert!(!tried.has(300));
    }
}
