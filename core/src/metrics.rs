//! Per-core counters and latency histograms, and their merge.
//!
//! A worker owns its [`WorkerMetrics`] outright (`Cell`s and a `RefCell`'d histogram), so
//! counting a request is a few plain stores on memory no other core touches. Other threads see
//! the numbers only as [`MetricsSnapshot`]s that the worker hands out, which merge by addition.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use ahash::AHashMap;
use hdrhistogram::Histogram;

/// Upper bounds of the per-series latency buckets, in microseconds (the last bucket, past
/// these, is `+Inf`).
pub const SERIES_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Most series one worker keeps (of each kind); requests past them count in the overflow
/// series, whose key is [`OVERFLOW`].
pub const MAX_SERIES: usize = 4096;

/// The key of the series that takes what does not fit.
pub const OVERFLOW: u64 = u64::MAX;

/// What one series (one API, operation and backend; or one subscription) counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesCounts {
    /// Responses by status class, as `status_classes`.
    pub classes: [u64; 6],
    /// Latency: counts per bucket of [`SERIES_BUCKETS_US`], then the overflow bucket.
    pub buckets: [u64; 15],
    pub sum_us: u64,
    pub upstream_connects: u64,
    pub upstream_reuses: u64,
    pub upstream_connect_errors: u64,
    pub upstream_timeouts: u64,
    /// Refusals by rate limit, quota, and concurrency limit.
    pub rejected: [u64; 3],
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl SeriesCounts {
    pub fn requests(&self) -> u64 {
        self.classes.iter().sum()
    }

    pub fn merge(&mut self, o: &SeriesCounts) {
        for (a, b) in self.classes.iter_mut().zip(o.classes) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.sum_us += o.sum_us;
        self.upstream_connects += o.upstream_connects;
        self.upstream_reuses += o.upstream_reuses;
        self.upstream_connect_errors += o.upstream_connect_errors;
        self.upstream_timeouts += o.upstream_timeouts;
        for (a, b) in self.rejected.iter_mut().zip(o.rejected) {
            *a += b;
        }
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
    }

    /// `self - earlier`, counter by counter (for per-minute rows).
    pub fn since(&self, earlier: &SeriesCounts) -> SeriesCounts {
        let mut d = self.clone();
        for (a, b) in d.classes.iter_mut().zip(earlier.classes) {
            *a = a.saturating_sub(b);
        }
        for (a, b) in d.buckets.iter_mut().zip(earlier.buckets) {
            *a = a.saturating_sub(b);
        }
        d.sum_us = d.sum_us.saturating_sub(earlier.sum_us);
        d.upstream_connects = d
            .upstream_connects
            .saturating_sub(earlier.upstream_connects);
        d.upstream_reuses = d.upstream_reuses.saturating_sub(earlier.upstream_reuses);
        d.upstream_connect_errors = d
            .upstream_connect_errors
            .saturating_sub(earlier.upstream_connect_errors);
        d.upstream_timeouts = d
            .upstream_timeouts
            .saturating_sub(earlier.upstream_timeouts);
        for (a, b) in d.rejected.iter_mut().zip(earlier.rejected) {
            *a = a.saturating_sub(b);
        }
        d.cache_hits = d.cache_hits.saturating_sub(earlier.cache_hits);
        d.cache_misses = d.cache_misses.saturating_sub(earlier.cache_misses);
        d
    }

    /// The latency under which `quantile` of the requests fall, in microseconds, read from
    /// the buckets (linear within the bucket it falls in); None without requests.
    pub fn quantile_us(&self, quantile: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (quantile.clamp(0.0, 1.0) * total as f64).ceil().max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (seen + n) as f64 >= rank {
                let lo = if i == 0 { 0 } else { SERIES_BUCKETS_US[i - 1] };
                let Some(&hi) = SERIES_BUCKETS_US.get(i) else {
                    return Some(lo);
                };
                let within = (rank - seen as f64) / n as f64;
                return Some(lo + ((hi - lo) as f64 * within) as u64);
            }
            seen += n;
        }
        SERIES_BUCKETS_US.last().copied()
    }
}

/// One request's facts for its series, gathered as it is served.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestFacts {
    pub upstream_connects: u8,
    pub upstream_reuses: u8,
    pub upstream_connect_errors: u8,
    pub upstream_timeouts: u8,
    /// 0: none; 1..=3: refused by a rate limit, a quota, a concurrency limit.
    pub rejected: u8,
    /// 0: no cache; 1: hit; 2: miss.
    pub cache: u8,
}

/// Series by key, interned on first use (a map lookup per request, an allocation only the
/// first time a key is seen).
#[derive(Default)]
struct SeriesTable {
    index: AHashMap<u64, u32>,
    keys: Vec<u64>,
    counts: Vec<SeriesCounts>,
}

impl SeriesTable {
    fn slot(&mut self, key: u64) -> &mut SeriesCounts {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let key = if self.keys.len() >= MAX_SERIES - 1 && key != OVERFLOW {
                    OVERFLOW
                } else {
                    key
                };
                let next = self.keys.len() as u32;
                let i = *self.index.entry(key).or_insert(next);
                if i == next {
                    self.keys.push(key);
                    self.counts.push(SeriesCounts::default());
                }
                i
            }
        };
        &mut self.counts[i as usize]
    }

    fn copy_into(&self, out: &mut Vec<(u64, SeriesCounts)>) {
        out.truncate(self.keys.len());
        for (i, (key, counts)) in self.keys.iter().zip(&self.counts).enumerate() {
            match out.get_mut(i) {
                Some(slot) => {
                    slot.0 = *key;
                    slot.1.clone_from(counts);
                }
                None => out.push((*key, counts.clone())),
            }
        }
    }
}

fn bucket_of(us: u64) -> usize {
    SERIES_BUCKETS_US.partition_point(|&b| b < us)
}

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
    /// By API, operation and backend (the caller's key).
    series: RefCell<SeriesTable>,
    /// By subscription (the caller's key).
    subscriptions: RefCell<SeriesTable>,
    /// Gauges the worker sets on its tick.
    pub connections_open: Cell<u64>,
    pub cache_bytes: Cell<u64>,
    pub cache_entries: Cell<u64>,
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
            series: RefCell::default(),
            subscriptions: RefCell::default(),
            connections_open: Cell::new(0),
            cache_bytes: Cell::new(0),
            cache_entries: Cell::new(0),
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

    /// Counts one answered request in series `key` (and, when it had one, in its
    /// subscription's series `subscription`).
    #[inline]
    pub fn record_series(
        &self,
        key: u64,
        subscription: Option<u64>,
        status: u16,
        elapsed: Duration,
        facts: RequestFacts,
    ) {
        let class = (status / 100) as usize;
        let class = if class <= 5 { class } else { 0 };
        let us = elapsed.as_micros() as u64;
        let bucket = bucket_of(us);
        let record = |c: &mut SeriesCounts| {
            c.classes[class] += 1;
            c.buckets[bucket] += 1;
            c.sum_us += us;
            c.upstream_connects += u64::from(facts.upstream_connects);
            c.upstream_reuses += u64::from(facts.upstream_reuses);
            c.upstream_connect_errors += u64::from(facts.upstream_connect_errors);
            c.upstream_timeouts += u64::from(facts.upstream_timeouts);
            if let Some(r) = (facts.rejected as usize).checked_sub(1) {
                if let Some(n) = c.rejected.get_mut(r) {
                    *n += 1;
                }
            }
            match facts.cache {
                1 => c.cache_hits += 1,
                2 => c.cache_misses += 1,
                _ => {}
            }
        };
        record(self.series.borrow_mut().slot(key));
        if let Some(s) = subscription {
            record(self.subscriptions.borrow_mut().slot(s));
        }
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
        self.series.borrow().copy_into(&mut out.series);
        self.subscriptions
            .borrow()
            .copy_into(&mut out.subscriptions);
        out.connections_open = self.connections_open.get();
        out.cache_bytes = self.cache_bytes.get();
        out.cache_entries = self.cache_entries.get();
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
            series: {
                let mut v = Vec::new();
                self.series.borrow().copy_into(&mut v);
                v
            },
            subscriptions: {
                let mut v = Vec::new();
                self.subscriptions.borrow().copy_into(&mut v);
                v
            },
            connections_open: self.connections_open.get(),
            cache_bytes: self.cache_bytes.get(),
            cache_entries: self.cache_entries.get(),
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
    /// Per series key; after a merge, each key once.
    pub series: Vec<(u64, SeriesCounts)>,
    pub subscriptions: Vec<(u64, SeriesCounts)>,
    pub connections_open: u64,
    pub cache_bytes: u64,
    pub cache_entries: u64,
}

fn merge_series(into: &mut Vec<(u64, SeriesCounts)>, from: &[(u64, SeriesCounts)]) {
    if from.is_empty() {
        return;
    }
    let index: AHashMap<u64, usize> = into.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
    for (key, counts) in from {
        match index.get(key) {
            Some(&i) => into[i].1.merge(counts),
            None => into.push((*key, counts.clone())),
        }
    }
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
        merge_series(&mut self.series, &other.series);
        merge_series(&mut self.subscriptions, &other.subscriptions);
        self.connections_open += other.connections_open;
        self.cache_bytes += other.cache_bytes;
        self.cache_entries += other.cache_entries;
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
