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

/// Tried targets of one request, so that a failed connect moves on to another.
#[derive(Default)]
pub struct Tried {
    bits: u128,
}

impl Tried {
    fn has(&self, local: usize) -> bool {
        local < 128 && self.bits & (1u128 << local) != 0
    }

    pub fn add(&mut self, local: usize) {
        if local < 128 {
            self.bits |= 1u128 << local;
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
