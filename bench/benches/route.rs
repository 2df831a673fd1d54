//! The router on the per-request path: `Router::find` over tables of 10 and 1,000 routes, for
//! an exact path (a hash lookup), the last template and the last prefix (the longest linear
//! scans to a hit) and a miss (a scan of everything, then 404).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ringway::route::{RouteRequest, Router};
use ringway_bench::fixtures::{route_paths, routes_config, HeadHeaders, BROWSER_REQUEST};
use ringway_core::http1::{parse_request, Limits, RequestHead};

mod common;

fn find(c: &mut Criterion) {
    let mut head = RequestHead::new();
    parse_request(BROWSER_REQUEST, &Limits::default(), &mut head).unwrap();
    let headers = HeadHeaders {
        head: &head,
        buf: BROWSER_REQUEST,
    };
    let mut group = c.benchmark_group("route/find");
    for n in [10, 1000] {
        let router = Router::build(&routes_config(n)).unwrap();
        for (what, path) in route_paths(n) {
            let req = RouteRequest {
                host: b"shop.example.com",
                method: b"GET",
                path: path.as_bytes(),
                query: b"expand=product&page=12",
                headers: &headers,
            };
            group.bench_with_input(
                BenchmarkId::new(format!("{n}_routes"), what),
                &req,
                |b, req| b.iter(|| router.find(black_box(req)).map(|m| m.prefix_len)),
            );
        }
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    // Not per request but per reload: how long compiling a large table holds the control
    // thread.
    let config = routes_config(1000);
    c.bench_function("route/build/1000_routes", |b| {
        b.iter(|| Router::build(black_box(&config)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = find, build
}
criterion_main!(benches);
