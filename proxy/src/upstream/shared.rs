//! What every worker of the node shares about its backends, built once per snapshot: each
//! target's circuit breaker, each backend's count of open targets and consistent-hash ring,
//! and the workers' health inboxes.
//!
//! Everything else upstream is per core. What is here is either read-only (rings, rules), read
//! with one relaxed load per request (a backend's open count), or written only on failures and
//! state changes, which are rare: see `breaker` for the invariant.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::breaker::TargetBreaker;
use super::health::HealthChange;
use super::ring::Ring;
use crate::config::{Balance, BreakerRule};
use crate::snapshot::Snapshot;

/// A backend's shared part.
pub(super) struct BackendShared {
    /// How many of its targets' breakers are not closed (never fewer: it is raised before a
    /// breaker opens and lowered after it closes). Zero, the common case, lets `choose` skip
    /// the breakers. Alone on its cache line, so that failures counted on neighbouring data
    /// do not slow the reads.
    pub open: Padded<AtomicU32>,
    /// How many of its targets are drained: zero lets `choose` skip the flags.
    pub drained: AtomicU32,
    pub rules: Box<[BreakerRule]>,
    pub ring: Option<Arc<Ring>>,
}

#[repr(align(64))]
pub(super) struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

pub struct SharedUpstreams {
    /// The node clock's zero: breaker times are milliseconds since it.
    epoch: Instant,
    /// Per flattened target.
    pub(super) breakers: Box<[Padded<TargetBreaker>]>,
    pub(super) backends: Box<[BackendShared]>,
    /// Each worker's health inbox, by worker index.
    inboxes: Box<[Sender<HealthChange>]>,
    receivers: Box<[Receiver<HealthChange>]>,
    /// Per target, `backend NAME target AUTHORITY`, for log lines.
    labels: Box<[String]>,
    /// Per target: taken out of rotation by an operator (`drain`); requests in flight finish.
    pub(super) drained: Box<[AtomicBool]>,
    /// Set when a reload has replaced this table: its health checks stop.
    retired: AtomicBool,
    /// Per target: the health checks' verdict (true without checks), for the admin API.
    healthy: Box<[AtomicBool]>,
    /// Per target: its backend's index.
    target_backend: Box<[u32]>,
}

impl SharedUpstreams {
    pub fn new(snapshot: &Snapshot, workers: usize) -> SharedUpstreams {
        let config = &snapshot.config;
        let backends = config
            .backends
            .iter()
            .map(|b| BackendShared {
                open: Padded(AtomicU32::new(0)),
                drained: AtomicU32::new(0),
                rules: b.circuit_breaker.clone().into_boxed_slice(),
                ring: (b.balance == Balance::ConsistentHash).then(|| {
                    Arc::new(Ring::new(
                        b.targets.iter().map(|t| (t.url.as_str(), t.weight)),
                    ))
                }),
            })
            .collect();
        let breakers = snapshot
            .targets
            .iter()
            .map(|t| {
                Padded(TargetBreaker::new(
                    &config.backends[t.backend].circuit_breaker,
                ))
            })
            .collect();
        let (inboxes, receivers) = (0..workers.max(1))
            .map(|_| crossbeam_channel::unbounded())
            .unzip::<_, _, Vec<_>, Vec<_>>();
        let labels = snapshot
            .targets
            .iter()
            .map(|t| {
                format!(
                    "backend {} target {}",
                    config.backends[t.backend].name, t.authority
                )
            })
            .collect();
        SharedUpstreams {
            drained: snapshot
                .targets
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            retired: AtomicBool::new(false),
            healthy: snapshot
                .targets
                .iter()
                .map(|_| AtomicBool::new(true))
                .collect(),
            target_backend: snapshot.targets.iter().map(|t| t.backend as u32).collect(),
            labels,
            epoch: Instant::now(),
            breakers,
            backends,
            inboxes: inboxes.into_boxed_slice(),
            receivers: receivers.into_boxed_slice(),
        }
    }

    /// The table for a reloaded `snapshot`, carrying over from `old` what a target keeps
    /// across a reload: its breaker's state (when its rules are unchanged) and its drain mark.
    /// `from_old[t]` is target `t`'s index in `old`, when `old` had it.
    pub fn next(
        old: &SharedUpstreams,
        snapshot: &Snapshot,
        workers: usize,
        from_old: &[Option<usize>],
    ) -> SharedUpstreams {
        let mut next = SharedUpstreams::new(snapshot, workers);
        // One clock for both, so that breaker times carry over as they are.
        next.epoch = old.epoch;
        for (t, from) in from_old.iter().enumerate() {
            let Some(o) = *from else { continue };
            let backend = snapshot.targets[t].backend;
            let old_backend = old.backend_of(o);
            if old.backends[old_backend].rules == next.backends[backend].rules
                && next.breakers[t].carry_state(&old.breakers[o])
            {
                next.backends[backend].open.fetch_add(1, Relaxed);
            }
            next.healthy[t].store(old.healthy[o].load(Relaxed), Relaxed);
            if old.drained[o].load(Relaxed) {
                next.set_drained(t, backend, true);
            }
        }
        next
    }

    fn backend_of(&self, target: usize) -> usize {
        self.target_backend[target] as usize
    }

    /// Takes a target out of rotation, or puts it back. Returns whether it changed.
    pub fn set_drained(&self, target: usize, backend: usize, drained: bool) -> bool {
        let was = self.drained[target].swap(drained, Relaxed);
        if was != drained {
            if drained {
                self.backends[backend].drained.fetch_add(1, Relaxed);
            } else {
                self.backends[backend].drained.fetch_sub(1, Relaxed);
            }
        }
        was != drained
    }

    /// Whether the health checks pass (always, for a backend without them).
    pub fn is_healthy(&self, target: usize) -> bool {
        self.healthy[target].load(Relaxed)
    }

    pub fn is_drained(&self, target: usize) -> bool {
        self.drained[target].load(Relaxed)
    }

    /// Marks this table replaced by a reload.
    pub fn retire(&self) {
        self.retired.store(true, Relaxed);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Relaxed)
    }

    /// Target `target`'s breaker: closed, open (until when, on the node clock) or probing.
    pub fn breaker_state(&self, target: usize, now: Instant) -> super::breaker::Gate {
        self.breakers[target].gate(self.ms(now))
    }

    /// The node clock: milliseconds since the epoch, from 1.
    #[inline]
    pub(super) fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    pub(super) fn label(&self, target: usize) -> &str {
        &self.labels[target]
    }

    /// Sends a health change to every worker, this one included.
    pub(super) fn broadcast(&self, change: HealthChange) {
        if let Some(h) = self.healthy.get(change.target) {
            h.store(change.healthy, Relaxed);
        }
        for inbox in self.inboxes.iter() {
            // A worker that has exited has no use for it.
            let _ = inbox.send(change);
        }
    }

    /// Worker `index`'s inbox (a worker that is not in the table gets a closed one).
    pub(super) fn inbox(&self, index: usize) -> Receiver<HealthChange> {
        self.receivers
            .get(index)
            .cloned()
            .unwrap_or_else(crossbeam_channel::never)
    }
}
