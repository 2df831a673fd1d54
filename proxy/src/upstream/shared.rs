//! What every worker of the node shares about its backends, built once per snapshot: each
//! target's circuit breaker, each backend's count of open targets and consistent-hash ring,
//! and the workers' health inboxes.
//!
//! Everything else upstream is per core. What is here is either read-only (rings, rules), read
//! with one relaxed load per request (a backend's open count), or written only on failures and
//! state changes, which are rare: see `breaker` for the invariant.

use std::sync::atomic::AtomicU32;
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
}

impl SharedUpstreams {
    pub fn new(snapshot: &Snapshot, workers: usize) -> SharedUpstreams {
        let config = &snapshot.config;
        let backends = config
            .backends
            .iter()
            .map(|b| BackendShared {
                open: Padded(AtomicU32::new(0)),
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
            labels,
            epoch: Instant::now(),
            breakers,
            backends,
            inboxes: inboxes.into_boxed_slice(),
            receivers: receivers.into_boxed_slice(),
        }
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
