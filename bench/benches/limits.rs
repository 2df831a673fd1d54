//! The limit policies on the per-request path, one core's side of each: a rate-limit hit
//! (tokens already leased on this core), a rate-limit lease (what a core pays when its tokens
//! run out or their sub-window ends), a quota hit, and a concurrency acquire and release.
//!
//! Single-threaded: the shared lines stay in this core's cache, so the lease figures are the
//! floor of a lease, not what it costs when other cores are swapping the same line.

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringway::policy::limit::{
    ConcurrencySpec, LocalConcurrency, LocalQuota, LocalWindow, QuotaSpec, RateSpec,
    SharedConcurrency, SharedQuota, SharedWindow,
};

mod common;

const KEY: u64 = 0x2545_F491_4F6C_DD1D;
const WORKERS: usize = 16;

fn rate_spec() -> RateSpec {
    // Leases of 1,024 tokens: 1e9 / (20 * 16) is above the cap.
    RateSpec {
        calls: 1_000_000_000,
        period: Duration::from_secs(60),
        workers: WORKERS,
        max_keys: 10_000,
    }
}

fn rate(c: &mut Criterion) {
    let spec = rate_spec();
    let shared = Arc::new(SharedWindow::new(&spec));

    // The common path: this core holds tokens leased in the current sub-window. One call in
    // 1,024 leases; the clock moves 1 ms per 4,096 calls, so the window slides well before
    // 1e9 calls fill it and a new sub-window (4 s) begins every 16M calls.
    let mut core = LocalWindow::new(shared.clone(), &spec);
    let mut calls = 0u64;
    c.bench_function("limit/rate_hit", |b| {
        b.iter(|| {
            calls += 1;
            core.acquire(black_box(KEY), calls >> 12).admitted
        })
    });

    // Every call in a new sub-window: the core gives back the 1,023 tokens left from the last
    // one (one swap), sums the 15 past counters and leases 1,024 more (one swap).
    let mut core = LocalWindow::new(shared.clone(), &spec);
    let step = shared.subwindow_ms();
    let mut now = 0u64;
    c.bench_function("limit/rate_lease", |b| {
        b.iter(|| {
            now += step;
            core.acquire(black_box(KEY), now).admitted
        })
    });
}

fn quota(c: &mut Criterion) {
    let spec = QuotaSpec {
        calls: Some(1_000_000_000_000),
        bandwidth: None,
        period: Duration::from_secs(86_400),
        first_period_start_ms: 1_700_000_000_000,
        workers: WORKERS,
        max_keys: 10_000,
    };
    let mut core = LocalQuota::new(Arc::new(SharedQuota::new(&spec)), &spec);
    // Calls leased 1,024 at a time: one call in 1,024 swaps the shared counter.
    let now = 1_700_000_000_000 + 3_600_000;
    c.bench_function("limit/quota_hit", |b| {
        b.iter(|| core.acquire(black_box(KEY), now).admitted)
    });
}

fn concurrency(c: &mut Criterion) {
    let spec = ConcurrencySpec {
        max_count: 10_000,
        workers: WORKERS,
        max_keys: 10_000,
    };
    let shared = Arc::new(SharedConcurrency::new(&spec));
    let mut group = c.benchmark_group("limit/concurrency_acquire_release");

    // Nothing else in flight for the key: the acquire takes a slot from the shared counter and
    // the release gives it back, one swap each.
    let mut core = LocalConcurrency::new(shared.clone(), &spec);
    group.bench_function("idle_key", |b| {
        b.iter(|| {
            let admitted = core.acquire(black_box(KEY));
            core.release(black_box(KEY));
            admitted
        })
    });

    // Another request of the key in flight on this core: the released slot stays as a spare
    // and the next acquire takes it locally.
    let mut core = LocalConcurrency::new(shared, &spec);
    assert!(core.acquire(KEY));
    group.bench_function("busy_key", |b| {
        b.iter(|| {
            let admitted = core.acquire(black_box(KEY));
            core.release(black_box(KEY));
            admitted
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = rate, quota, concurrency
}
criterion_main!(benches);
