//! The response cache on the per-request path: a hit and a miss in one core's store of 10,000
//! responses with 1 KiB bodies, building and hashing a key (host, path, two vary-by-query
//! parameters), and an insert into a store at its byte bound, which evicts the least recently
//! used entry each time.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringway::policy::cache::{build_key, key_hash, CacheStore, Hit, KeyParts};

mod common;

const ENTRIES: usize = 10_000;
const BODY: usize = 1024;
const HEADERS: &[u8] = b"content-type: application/json\r\ncache-control: max-age=300\r\n\
    etag: \"5f2b-17c\"\r\n";
const TTL: Duration = Duration::from_secs(3600);

fn vary() -> Vec<Box<[u8]>> {
    vec![b"page".as_slice().into(), b"sort".as_slice().into()]
}

/// Key text and hash of product `id`'s listing page.
fn key(id: usize) -> (u64, Vec<u8>) {
    let path = format!("/api/products/{id}");
    let parts = KeyParts {
        method: b"GET",
        host: b"shop.example.com",
        path: path.as_bytes(),
        query: b"page=2&sort=price&utm_source=newsletter",
        extra: b"",
    };
    let mut out = Vec::new();
    build_key(&mut out, &parts, &vary(), &[], |_| None);
    (key_hash(&out), out)
}

/// A stored response to copy from: the bench crate does not depend on `bytes`, and a hit
/// hands out the stored `Bytes`, which clone by reference count.
fn response(now: Instant) -> Hit {
    let mut store = CacheStore::new(1 << 20, 1 << 20);
    let (hash, key) = key(0);
    let body = vec![b'x'; BODY];
    store.insert(
        hash,
        &key,
        200,
        HEADERS.to_vec().into(),
        body.into(),
        TTL,
        now,
    );
    store.get(hash, &key, now).unwrap()
}

/// The bytes one entry of `key(id)`'s shape costs in a store.
fn entry_cost(key_len: usize) -> usize {
    key_len + HEADERS.len() + BODY + CacheStore::ENTRY_OVERHEAD
}

fn filled(now: Instant, max_bytes: usize, keys: &[(u64, Vec<u8>)]) -> CacheStore {
    let template = response(now);
    let mut store = CacheStore::new(max_bytes, 1 << 20);
    for (hash, key) in keys {
        let (headers, body) = (template.headers.clone(), template.body.clone());
        store.insert(*hash, key, 200, headers, body, TTL, now);
    }
    store
}

fn lookup(c: &mut Criterion) {
    let now = Instant::now();
    let keys: Vec<_> = (0..ENTRIES).map(key).collect();
    let mut store = filled(now, 64 << 20, &keys);
    assert_eq!(store.len(), ENTRIES);

    let mut i = 0;
    c.bench_function("cache/lookup_hit", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            let (hash, key) = &keys[i];
            store.get(black_box(*hash), black_box(key), now).unwrap()
        })
    });

    let misses: Vec<_> = (ENTRIES..2 * ENTRIES).map(key).collect();
    let mut i = 0;
    c.bench_function("cache/lookup_miss", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            let (hash, key) = &misses[i];
            store.get(black_box(*hash), black_box(key), now)
        })
    });
}

fn keys(c: &mut Criterion) {
    let vary = vary();
    let parts = KeyParts {
        method: b"GET",
        host: b"Shop.Example.com",
        path: b"/api/products/12345",
        query: b"page=2&sort=price&utm_source=newsletter&fields=id,name",
        extra: b"",
    };
    let mut out = Vec::with_capacity(256);
    c.bench_function("cache/build_key", |b| {
        b.iter(|| {
            build_key(&mut out, black_box(&parts), &vary, &[], |_| None);
            out.len()
        })
    });
    c.bench_function("cache/key_hash", |b| b.iter(|| key_hash(black_box(&out))));
}

fn insert(c: &mut Criterion) {
    let now = Instant::now();
    let keys: Vec<_> = (0..2 * ENTRIES).map(key).collect();
    // Room for half the keys: once warm, every insert evicts the least recently used entry.
    let max_bytes = ENTRIES * entry_cost(keys[0].1.len());
    let mut store = filled(now, max_bytes, &keys[..ENTRIES]);
    let template = response(now);
    let mut i = 0;
    c.bench_function("cache/insert_evict", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let (hash, key) = &keys[i];
            let (headers, body) = (template.headers.clone(), template.body.clone());
            store.insert(*hash, black_box(key), 200, headers, body, TTL, now)
        })
    });
    assert!(store.bytes() <= max_bytes);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = lookup, keys, insert
}
criterion_main!(benches);
