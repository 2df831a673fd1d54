//! The header rewrite on the per-request path: writing the request head for the upstream
//! (hop-by-hop headers dropped, X-Forwarded-*, Via and X-Request-Id added) and the response
//! head for the client, from the parsed heads of the fixtures.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringway::route::{HeaderEdits, Rewrite};
use ringway::server::head::{
    write_request_head, write_response_head, ClientFraming, Forwarded, ResponseShape,
};
use ringway_bench::fixtures::{BROWSER_REQUEST, ORIGIN_RESPONSE};
use ringway_core::http1::{parse_request, parse_response, Limits, RequestHead, ResponseHead};

mod common;

fn request_head(c: &mut Criterion) {
    let mut head = RequestHead::new();
    parse_request(BROWSER_REQUEST, &Limits::default(), &mut head).unwrap();
    let plain = HeaderEdits::default();
    let edited = HeaderEdits {
        set: vec![(b"x-api-version".as_slice().into(), b"2".as_slice().into())],
        add: vec![(b"x-gateway".as_slice().into(), b"ringway".as_slice().into())],
        remove: vec![b"cookie".as_slice().into()],
    };
    let rewrite = Rewrite::Prefix(b"/v2".as_slice().into());
    let forwarded = |edits, rewrite| Forwarded {
        client_ip: b"192.0.2.17",
        request_id: b"0f3c9a4e8b7d6c5a4f3e2d1c0b9a8f7e",
        had_request_id: false,
        rewrite,
        prefix_len: "/api/v1".len(),
        edits,
        chunked: false,
        upgrade: false,
        upgrades: &[],
        default_host: b"192.0.2.1:8080",
        extra: None,
        target: None,
        https: false,
        traceparent: b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    let mut out = Vec::with_capacity(1024);
    let mut group = c.benchmark_group("rewrite");
    group.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    for (name, f) in [
        ("request_head/as_is", forwarded(&plain, None)),
        (
            "request_head/prefix_rewrite_and_edits",
            forwarded(&edited, Some(&rewrite)),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_request_head(&mut out, black_box(BROWSER_REQUEST), &head, &f);
                out.len()
            })
        });
    }
    group.finish();
}

fn response_head(c: &mut Criterion) {
    let mut head = ResponseHead::new();
    parse_response(ORIGIN_RESPONSE, &Limits::default(), &mut head).unwrap();
    let shape = ResponseShape {
        framing: ClientFraming::AsIs,
        keep_alive: true,
        client_http10: false,
        upgrade: false,
        extra: None,
        status: None,
    };
    let edits = HeaderEdits::default();
    let mut out = Vec::with_capacity(1024);
    let mut group = c.benchmark_group("rewrite");
    group.throughput(Throughput::Bytes(ORIGIN_RESPONSE.len() as u64));
    group.bench_function("response_head/as_is", |b| {
        b.iter(|| {
            out.clear();
            write_response_head(&mut out, black_box(ORIGIN_RESPONSE), &head, &shape, &edits);
            out.len()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = request_head, response_head
}
criterion_main!(benches);
