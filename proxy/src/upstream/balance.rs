//! Choosing a target of a backend: round-robin, smooth weighted round-robin, priority tiers,
//! least request, consistent hash.
//!
//! Each worker keeps its own [`Balancer`] per backend, so choosing takes no lock and shares no
//! cache line; the spread is exact per core and, with SO_REUSEPORT spreading connections, close
//! to exact across the node. Least request counts this core's requests in flight only; the
//! consistent-hash ring is the one shared, read-only, structure.

use std::sync::Arc;

use super::ring::Ring;
use crate::config::Balance;

pub struct Balancer {
    kind: Balance,
    weights: Vec<i64>,
    priorities: Vec<u32>,
    /// Smooth weighted round-robin state (nginx's `current_weight`).
    current: Vec<i64>,
    next: usize,
    /// `consistent_hash` only.
    ring: Option<Arc<Ring>>,
}

impl Balancer {
    /// `targets` as `(weight, priority)` pairs, in declaration order; `ring` for
    /// `consistent_hash`.
    pub fn new(
        kind: Balance,
        targets: impl IntoIterator<Item = (u32, u32)>,
        ring: Option<Arc<Ring>>,
    ) -> Balancer {
        let (weights, priorities): (Vec<i64>, Vec<u32>) = targets
            .into_iter()
            .map(|(w, p)| (i64::from(w.max(1)), p))
            .unzip();
        Balancer {
            kind,
            current: vec![0; weights.len()],
            weights,
            priorities,
            next: 0,
            ring,
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Picks a target among those `usable` accepts; `None` when it accepts none. `in_flight`
    /// gives this core's requests in flight per target (`least_request`), `hash` the request's
    /// key (`consistent_hash`; without one the request is spread round-robin).
    pub fn pick(
        &mut self,
        usable: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u32,
        hash: Option<u64>,
    ) -> Option<usize> {
        match self.kind {
            Balance::RoundRobin => self.round_robin(usable),
            Balance::Weighted => self.smooth_weighted(usable),
            Balance::LeastRequest => self.least_request(usable, in_flight),
            Balance::ConsistentHash => match (&self.ring, hash) {
                (Some(ring), Some(hash)) => ring.pick(hash, usable),
                _ => self.round_robin(usable),
            },
            Balance::Priority => {
                let tier = (0..self.len())
                    .filter(|&i| usable(i))
                    .map(|i| self.priorities[i])
                    .min()?;
                let priorities = std::mem::take(&mut self.priorities);
                let picked = self.smooth_weighted(|i| priorities[i] == tier && usable(i));
                self.priorities = priorities;
                picked
            }
        }
    }

    /// The usable targets with the fewest requests in flight on this core; among those, smooth
    /// weighted round-robin (so weights split sequential traffic, and equal weights alternate).
    fn least_request(
        &mut self,
        usable: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let fewest = (0..self.len())
            .filter(|&i| usable(i))
            .map(&in_flight)
            .min()?;
        self.smooth_weighted(|i| usable(i) && in_flight(i) == fewest)
    }

    fn round_robin(&mut self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.len();
        for step in 0..n {
            let i = (self.next + step) % n;
            if usable(i) {
                self.next = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }

    /// nginx's smooth weighted round-robin: every usable target gains its weight, the richest
    /// is chosen and pays the total. Over any Σweights picks each target gets exactly its
    /// weight, interleaved rather than in runs.
    fn smooth_weighted(&mut self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.len() {
            if !usable(i) {
                continue;
            }
            self.current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Balancer {
        /// A pick with nothing in flight and no key.
        fn any(&mut self, usable: impl Fn(usize) -> bool) -> Option<usize> {
            self.pick(usable, |_| 0, None)
        }
    }

    fn counts(b: &mut Balancer, n: usize, usable: impl Fn(usize) -> bool + Copy) -> Vec<usize> {
        let mut c = vec![0; b.len()];
        for _ in 0..n {
            c[b.any(usable).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn smooth_weighted_is_exact_and_interleaved() {
        let mut b = Balancer::new(Balance::Weighted, [(5, 0), (1, 0), (1, 0)], None);
        let seq: Vec<usize> = (0..7).map(|_| b.any(|_| true).unwrap()).collect();
        // nginx's documented sequence for weights 5,1,1: a a b a c a a
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        let c = counts(&mut b, 7000, |_| true);
        assert_eq!(c, vec![5000, 1000, 1000]);
    }

    #[test]
    fn weighted_skips_unusable_targets() {
        let mut b = Balancer::new(Balance::Weighted, [(3, 0), (1, 0)], None);
        let c = counts(&mut b, 100, |i| i == 1);
        assert_eq!(c, vec![0, 100]);
        assert_eq!(b.any(|_| false), None);
    }

    #[test]
    fn round_robin_ignores_weights() {
        let mut b = Balancer::new(Balance::RoundRobin, [(9, 0), (1, 0), (1, 0)], None);
        assert_eq!(counts(&mut b, 300, |_| true), vec![100, 100, 100]);
        assert_eq!(counts(&mut b, 300, |i| i != 1), vec![150, 0, 150]);
    }

    #[test]
    fn priority_uses_lower_tiers_only_when_higher_are_unavailable() {
        let mut b = Balancer::new(Balance::Priority, [(1, 1), (3, 0), (1, 0), (1, 2)], None);
        assert_eq!(counts(&mut b, 400, |_| true), vec![0, 300, 100, 0]);
        assert_eq!(counts(&mut b, 100, |i| i != 1), vec![0, 0, 100, 0]);
        assert_eq!(
            counts(&mut b, 100, |i| i == 0 || i == 3),
            vec![100, 0, 0, 0]
        );
        assert_eq!(counts(&mut b, 100, |i| i == 3), vec![0, 0, 0, 100]);
    }

    #[test]
    fn least_request_prefers_the_idle_target() {
        let mut b = Balancer::new(Balance::LeastRequest, [(1, 0), (1, 0), (1, 0)], None);
        let loads = [3, 0, 1];
        assert_eq!(b.pick(|_| true, |i| loads[i], None), Some(1));
        assert_eq!(b.pick(|i| i != 1, |i| loads[i], None), Some(2));
        // Ties alternate.
        let seq: Vec<usize> = (0..6)
            .map(|_| b.pick(|_| true, |_| 0, None).unwrap())
            .collect();
        assert_eq!(counts_of(&seq, 3), vec![2, 2, 2]);
        assert_eq!(b.pick(|_| false, |_| 0, None), None);
    }

    #[test]
    fn least_request_weights_split_ties() {
        let mut b = Balancer::new(Balance::LeastRequest, [(3, 0), (1, 0)], None);
        assert_eq!(counts(&mut b, 400, |_| true), vec![300, 100]);
        // Load wins over weight.
        assert_eq!(b.pick(|_| true, |i| [1, 0][i], None), Some(1));
    }

    #[test]
    fn consistent_hash_follows_the_key_and_walks_past_unusable_targets() {
        let urls = ["http://a:1", "http://b:1", "http://c:1"];
        let ring = Arc::new(Ring::new(urls.iter().map(|u| (*u, 1))));
        let mut b = Balancer::new(Balance::ConsistentHash, [(1, 0); 3], Some(ring));
        let key = crate::upstream::ring::hash_key(b"user-42");
        let owner = b.pick(|_| true, |_| 0, Some(key)).unwrap();
        for _ in 0..10 {
            assert_eq!(b.pick(|_| true, |_| 0, Some(key)), Some(owner));
        }
        let next = b.pick(|i| i != owner, |_| 0, Some(key)).unwrap();
        assert_ne!(next, owner);
        assert_eq!(b.pick(|i| i != owner, |_| 0, Some(key)), Some(next));
        // No key: round-robin.
        assert_eq!(counts(&mut b, 30, |_| true), vec![10, 10, 10]);
    }

    fn counts_of(seq: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        seq.iter().for_each(|&i| c[i] += 1);
        c
    }
}
