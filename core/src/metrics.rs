//! Per-core counters and latency histograms, and their merge.
//!
//! A worker owns its [`WorkerMetrics`] outright (`Cell`s and a `RefCell`'d histogram), so
//! counting a request is a few plain stores on memory no other core touches. Other threads see
//! the numbers only as [`MetricsSnapshot`]s that the worker hands out, which merge by addition.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histograms track exactly, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

pub struct WorkerMetrics {
    requests: Cell<u64>,
    /// Responses by status class: index 1..=5 for 1xx..5xx, 0 for anything else.
    status_classes: [Cell<u64>; 6],
    upstream_connects: Cell<u64>,
    upstream_reuses: Cell<u64>,
    upstream_connect_errors: Cell<u64>,
    bad_requests: Cell<u64>,
    tls_full: Cell<u64>,
    tls_resumed: Cell<u64>,
    tls_failed: Cell<u64>,
    latency_us: RefCell<Histogram<u64>>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics {
            requests: Cell::new(0),
            status_classes: Default::default(),
            upstream_connects: Cell::new(0),
            upstream_reuses: Cell::new(0),
            upstream_connect_errors: Cell::new(0),
            bad_requests: Cell::new(0),
            tls_full: Cell::new(0),
            tls_resumed: Cell::new(0),
            tls_failed: Cell::new(0),
            latency_us: RefCell::new(new_histogram()),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

#[inline]
fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl WorkerMetrics {
    /// Counts one answered request with its status and its time from first byte to last.
    #[inline]
    pub fn record_request(&self, status: u16, elapsed: Duration) {
        bump(&self.requests);
        let class = (status / 100) as usize;
        bump(&self.status_classes[if class <= 5 { class } else { 0 }]);
        let us = (elapsed.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency_us.borrow_mut().saturating_record(us);
    }

    #[inline]
    pub fn upstream_connected(&self) {
        bump(&self.upstream_connects);
    }

    #[inline]
    pub fn upstream_reused(&self) {
        bump(&self.upstream_reuses);
    }

    #[inline]
    pub fn upstream_connect_failed(&self) {
        bump(&self.upstream_connect_errors);
    }

    #[inline]
    pub fn bad_request(&self) {
        bump(&self.bad_requests);
    }

    /// Counts a completed TLS handshake, full or resumed.
    #[inline]
    pub fn tls_handshake(&self, resumed: bool) {
        bump(if resumed {
            &self.tls_resumed
        } else {
            &self.tls_full
        });
    }

    #[inline]
    pub fn tls_handshake_failed(&self) {
        bump(&self.tls_failed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Copies the counters into `out`, reusing its histogram's memory (a worker publishes
    /// once a second: a fresh histogram each time would churn the allocator).
    pub fn snapshot_into(&self, out: &mut MetricsSnapshot) {
        out.requests = self.requests.get();
        out.status_classes = std::array::from_fn(|i| self.status_classes[i].get());
        out.upstream_connects = self.upstream_connects.get();
        out.upstream_reuses = self.upstream_reuses.get();
        out.upstream_connect_errors = self.upstream_connect_errors.get();
        out.bad_requests = self.bad_requests.get();
        out.tls_full = self.tls_full.get();
        out.tls_resumed = self.tls_resumed.get();
        out.tls_failed = self.tls_failed.get();
        out.latency_us
            .set_to(&*self.latency_us.borrow())
            .expect("histograms share bounds");
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            requests: self.requests.get(),
            status_classes: std::array::from_fn(|i| self.status_classes[i].get()),
            upstream_connects: self.upstream_connects.get(),
            upstream_reuses: self.upstream_reuses.get(),
            upstream_connect_errors: self.upstream_connect_errors.get(),
            bad_requests: self.bad_requests.get(),
            tls_full: self.tls_full.get(),
            tls_resumed: self.tls_resumed.get(),
            tls_failed: self.tls_failed.get(),
            latency_us: self.latency_us.borrow().clone(),
        }
    }
}

/// A point-in-time copy of one or more workers' metrics.
#[derive(Clone, Debug)]
pub struct MetricsSnapshot {
    pub requests: u64,
    pub status_classes: [u64; 6],
    pub upstream_connects: u64,
    pub upstream_reuses: u64,
    pub upstream_connect_errors: u64,
    pub bad_requests: u64,
    /// TLS handshakes completed in full, resumed, and failed.
    pub tls_full: u64,
    pub tls_resumed: u64,
    pub tls_failed: u64,
    pub latency_us: Histogram<u64>,
}

impl Default for MetricsSnapshot {
    fn default() -> Self {
        WorkerMetrics::default().snapshot()
    }
}

impl MetricsSnapshot {
    pub fn merge(&mut self, other: &MetricsSnapshot) {
        self.requests += other.requests;
        for (a, b) in self.status_classes.iter_mut().zip(other.status_classes) {
            *a += b;
        }
        self.upstream_connects += other.upstream_connects;
        self.upstream_reuses += other.upstream_reuses;
        self.upstream_connect_errors += other.upstream_connect_errors;
        self.bad_requests += other.bad_requests;
        self.tls_full += other.tls_full;
        self.tls_resumed += other.tls_resumed;
        self.tls_failed += other.tls_failed;
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
    }

    /// Latency at `quantile` (0.0..=1.0), in microseconds.
    pub fn latency_quantile_us(&self, quantile: f64) -> u64 {
        self.latency_us.value_at_quantile(quantile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges() {
        let a = WorkerMetrics::default();
        let b = WorkerMetrics::default();
        for i in 0..100 {
            a.record_request(200, Duration::from_micros(100 + i));
        }
        b.record_request(502, Duration::from_millis(5));
        b.upstream_connected();
        b.upstream_reused();
        let mut all = a.snapshot();
        all.merge(&b.snapshot());
        assert_eq!(all.requests, 101);
        assert_eq!(all.status_classes[2], 100);
        assert_eq!(all.status_classes[5], 1);
        assert_eq!(all.upstream_connects, 1);
        assert_eq!(all.upstream_reuses, 1);
        assert!(all.latency_quantile_us(0.5) >= 100 && all.latency_quantile_us(0.5) < 200);
        assert!(all.latency_quantile_us(1.0) >= 4_990);
    }
}
