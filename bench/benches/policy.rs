//! The policy pipeline on the per-request path: rendering a key template, and the whole
//! inbound section of an API with `rate-limit-by-key`, `quota-by-key` and `cache-lookup`
//! (ending in a cache hit), as a worker runs it.

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringway::policy::run::{Ctx, Exchange, Inbound, NodePolicies, WorkerPolicies};
use ringway::policy::template::{Request, Scope};
use ringway::policy::Template;
use ringway::route::RouteRequest;
use ringway_bench::fixtures::{HeadHeaders, BROWSER_REQUEST};
use ringway_core::http1::{parse_request, Limits, RequestHead};

mod common;

fn template(c: &mut Criterion) {
    let mut head = RequestHead::new();
    parse_request(BROWSER_REQUEST, &Limits::default(), &mut head).unwrap();
    let headers = HeadHeaders {
        head: &head,
        buf: BROWSER_REQUEST,
    };
    let t = Template::parse(
        "{api}:{ip}:{header:Accept-Language}:{query:page}",
        &Scope::default(),
    )
    .unwrap();
    let req = Request {
        ip: b"203.0.113.7",
        query: head.query(BROWSER_REQUEST),
        headers: &headers,
        api: "orders",
        operation: "get-items",
        vars: &[],
        path: head.path(BROWSER_REQUEST),
        path_params: &[],
        claims: None,
        subscription: b"",
        product: b"",
        client_cert: None,
    };
    let mut out = Vec::with_capacity(128);
    c.bench_function("policy/template_render", |b| {
        b.iter(|| {
            out.clear();
            t.render(black_box(&req), &mut out);
            black_box(out.len())
        })
    });
}

fn inbound(c: &mut Criterion) {
    let yaml = "listeners: [{ address: 127.0.0.1:0 }]\n\
        backends: [{ name: b, targets: [{ url: \"http://127.0.0.1:9\" }] }]\n\
        apis:\n  - name: orders\n    path: /api\n    backend: b\n    policies:\n      inbound:\n\
        \x20       - rate-limit-by-key: { calls: 1000000000, renewal_period: 1h, counter_key: \"{ip}\" }\n\
        \x20       - quota-by-key: { calls: 1000000000, renewal_period: 1h, counter_key: \"{ip}\" }\n\
        \x20       - cache-lookup: {}\n";
    let config = ringway::config::load_str(yaml, "bench.yaml", &|_| None).unwrap();
    let snapshot = ringway::snapshot::Snapshot::build(config).unwrap();
    let (node, mut inboxes) = NodePolicies::new(&snapshot.config, 1);
    let worker = WorkerPolicies::new(&node, &snapshot.config, inboxes.remove(0));

    let mut head = RequestHead::new();
    parse_request(BROWSER_REQUEST, &Limits::default(), &mut head).unwrap();
    let buf = BROWSER_REQUEST;
    let headers = HeadHeaders { head: &head, buf };
    let request = RouteRequest {
        host: head.host(buf).unwrap(),
        method: head.method(buf),
        path: head.path(buf),
        query: head.query(buf),
        headers: &headers,
    };
    let route = snapshot.router.find(&request).unwrap().route;
    let pipe = &snapshot.config.pipelines[route.pipeline.unwrap()];
    let ctx = |now| Ctx {
        ip: b"203.0.113.7",
        method: head.method(buf),
        host: head.host(buf).unwrap(),
        path: head.path(buf),
        query: head.query(buf),
        target: head.target(buf),
        headers: HeadHeaders { head: &head, buf },
        route,
        now,
        client_cert: None,
    };
    // Put the answer in the cache once, as a first request would.
    let mut ex = Exchange::default();
    let now = Instant::now();
    ex.begin(0, &ctx(now));
    assert!(matches!(
        ex.inbound(pipe, 0, &worker, &ctx(now)),
        Inbound::Continue
    ));
    ex.cache.store_for = Some(std::time::Duration::from_secs(3600));
    ex.store(
        &worker,
        200,
        bytes::Bytes::from_static(b"content-type: text/plain\r\n"),
        bytes::Bytes::from_static(b"0123456789abcdef"),
        std::time::Duration::from_secs(3600),
        now,
    );
    ex.settle(pipe, &worker, 200, 0, now);
    drop(ex.cache.leader.take());
    ex.begin(0, &ctx(now));
    assert!(matches!(
        ex.inbound(pipe, 0, &worker, &ctx(now)),
        Inbound::Hit(_)
    ));
    ex.settle(pipe, &worker, 200, 0, now);

    c.bench_function("policy/inbound_rate_quota_cache_hit", |b| {
        b.iter(|| {
            let now = Instant::now();
            let ctx = ctx(now);
            ex.begin(0, &ctx);
            let hit = matches!(ex.inbound(pipe, 0, &worker, &ctx), Inbound::Hit(_));
            ex.settle(pipe, &worker, 200, 16, now);
            black_box(hit)
        })
    });
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = template, inbound
}
criterion_main!(benches);
