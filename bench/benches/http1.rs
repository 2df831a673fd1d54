//! The HTTP/1.1 codec on the per-request path: request and response head parsing, and the
//! chunked decoder (bare payload, and re-encoded as the proxy forwards it).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringway_bench::fixtures::{chunked_body, BROWSER_REQUEST, ORIGIN_RESPONSE};
use ringway_core::http1::{
    parse_request, parse_response, ChunkedDecoder, Limits, RequestHead, ResponseHead,
};

mod common;

fn heads(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("http1");
    group.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    // The head is reused as a connection reuses it: its header vector has grown already.
    let mut request = RequestHead::new();
    group.bench_function("parse_request/browser_400B", |b| {
        b.iter(|| parse_request(black_box(BROWSER_REQUEST), &limits, &mut request).unwrap())
    });
    group.throughput(Throughput::Bytes(ORIGIN_RESPONSE.len() as u64));
    let mut response = ResponseHead::new();
    group.bench_function("parse_response/origin_json", |b| {
        b.iter(|| parse_response(black_box(ORIGIN_RESPONSE), &limits, &mut response).unwrap())
    });
    group.finish();
}

fn chunked(c: &mut Criterion) {
    let mut group = c.benchmark_group("http1/chunked_decode");
    for (total, chunk) in [(16 * 1024, 1024), (16 * 1024, 16), (1024 * 1024, 16 * 1024)] {
        let body = chunked_body(total, chunk);
        let mut out = Vec::with_capacity(body.len() * 2);
        group.throughput(Throughput::Bytes(total as u64));
        for (mode, reencode) in [("payload", false), ("reencode", true)] {
            let id = BenchmarkId::new(mode, format!("{total}B_in_{chunk}B_chunks"));
            group.bench_with_input(id, &body, |b, body| {
                b.iter(|| {
                    out.clear();
                    let mut decoder = ChunkedDecoder::new();
                    let used = decoder.decode(black_box(body), &mut out, reencode).unwrap();
                    debug_assert!(decoder.is_done());
                    used
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = heads, chunked
}
criterion_main!(benches);
