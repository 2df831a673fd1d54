//! cache-lookup / cache-store and the value cache through the real binary: hits, misses and
//! bypasses, `Age`, HEAD from a cached GET, the backend's directives, `Authorization`,
//! statuses, expiry, chunked bodies, and request coalescing (the origin counts its fetches).

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use ringway_tests::{Client, Origin, Ringway};

/// `examples/cache.yaml` with one worker in front of `origin`.
fn example(origin: &Origin) -> Ringway {
    Ringway::start_file(
        "examples/cache.yaml",
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "1"),
            ("RINGWAY_BACKEND", &origin.url()),
        ],
    )
}

fn custom(origin: &Origin, policies: &str) -> Ringway {
    Ringway::start(&format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - {{ name: b, targets: [{{ url: {} }}] }}\n\
         routes:\n  - {{ name: all, backend: b }}\n\
         policies:\n{policies}",
        origin.url()
    ))
}

#[test]
fn a_second_get_is_a_hit_with_age_and_no_backend_request() {
    let origin = Origin::start("o");
    let proxy = example(&origin);
    let mut c = Client::connect(proxy.addr());
    let first = c.get("/counter?x=1");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.text(), "n=1");
    thread::sleep(Duration::from_millis(1100));
    let second = c.get("/counter?x=1");
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.text(), "n=1");
    assert_eq!(
        second.header("x-origin"),
        Some("o"),
        "the origin's headers are kept"
    );
    let age: u64 = second.header("age").unwrap().parse().unwrap();
    assert!((1..=2).contains(&age), "Age {age}");
    assert_eq!(origin.requests(), 1);

    // The whole query is the key: another value is another entry; the order does not matter.
    assert_eq!(c.get("/counter?x=2").header("x-cache"), Some("MISS"));
    c.get("/counter?a=1&b=2");
    let r = c.get("/counter?b=2&a=1");
    assert_eq!(r.header("x-cache"), Some("HIT"));
    // Another client, another connection: the same entry.
    let mut other = Client::connect(proxy.addr());
    assert_eq!(other.get("/counter?x=1").text(), "n=1");
}

#[test]
fn head_is_served_from_a_cached_get_but_never_fills_it() {
    let origin = Origin::start("o");
    let proxy = example(&origin);
    let mut c = Client::connect(proxy.addr());
    let r = c.request("HEAD", "/counter", &[], b"");
    assert_eq!(r.header("x-cache"), Some("MISS"));
    let r = c.get("/counter");
    assert_eq!(
        r.header("x-cache"),
        Some("MISS"),
        "a HEAD answer has no body to store"
    );
    let body_len = r.body.len();
    let r = c.request("HEAD", "/counter", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(
        r.header("content-length"),
        Some(body_len.to_string().as_str())
    );
    assert!(r.body.is_empty());
    // The connection is still in step: the next answer is read correctly.
    assert_eq!(c.get("/counter").header("x-cache"), Some("HIT"));
    assert_eq!(origin.requests(), 2);
}

#[test]
fn the_backends_directives_are_honoured() {
    let origin = Origin::start("o");
    let proxy = example(&origin);
    let mut c = Client::connect(proxy.addr());
    for cc in ["no-store", "private", "no-cache", "max-age%3D0"] {
        let path = format!("/counter?cc={cc}");
        let a = c.get(&path);
        let b = c.get(&path);
        assert_eq!(a.header("x-cache"), Some("MISS"), "{cc}");
        assert_eq!(
            b.header("x-cache"),
            Some("MISS"),
            "{cc}: must not be stored"
        );
        assert_ne!(a.text(), b.text());
    }
    // max-age lowers the policy's 60 s.
    let path = "/counter?cc=max-age%3D1";
    let first = c.get(path);
    assert_eq!(c.get(path).header("x-cache"), Some("HIT"));
    thread::sleep(Duration::from_millis(1300));
    let later = c.get(path);
    assert_eq!(later.header("x-cache"), Some("MISS"));
    assert_ne!(first.text(), later.text());
    // `Vary: *` cannot be keyed.
    let path = "/counter?vary=*";
    c.get(path);
    assert_eq!(c.get(path).header("x-cache"), Some("MISS"));
}

#[test]
fn only_200_is_stored_unless_listed() {
    let origin = Origin::start("o");
    let proxy = custom(
        &origin,
        "  inbound:\n    - cache-lookup: { vary_by_query: [k] }\n\
         \x20 outbound:\n    - cache-store: { duration: 60s, statuses: [200, 404] }\n",
    );
    let mut c = Client::connect(proxy.addr());
    c.get("/counter?status=500&k=1");
    assert_eq!(
        c.get("/counter?status=500&k=1").header("x-cache"),
        Some("MISS")
    );
    c.get("/counter?status=404&k=2");
    let r = c.get("/counter?status=404&k=2");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    // Only `k` is in the key: other parameters do not split entries.
    c.get("/counter?k=3&noise=1");
    assert_eq!(c.get("/counter?k=3&noise=2").header("x-cache"), Some("HIT"));
}

#[test]
fn authorization_bypasses_the_cache_unless_allow_private() {
    let origin = Origin::start("o");
    let proxy = example(&origin);
    let mut c = Client::connect(proxy.addr());
    let auth = [("Authorization", "Bearer x")];
    let a = c.request("GET", "/counter", &auth, b"");
    assert_eq!(a.header("x-cache"), Some("BYPASS"));
    let b = c.request("GET", "/counter", &auth, b"");
    assert_eq!(b.header("x-cache"), Some("BYPASS"));
    assert_eq!(
        c.get("/counter").header("x-cache"),
        Some("MISS"),
        "nothing was stored"
    );
    // POST is never cached.
    let r = c.request("POST", "/counter", &[("Content-Length", "0")], b"");
    assert_eq!(r.header("x-cache"), Some("BYPASS"));

    let origin2 = Origin::start("p");
    let private = custom(
        &origin2,
        "  inbound:\n    - cache-lookup: { allow_private: true }\n\
         \x20 outbound:\n    - cache-store: { duration: 60s }\n",
    );
    let mut c = Client::connect(private.addr());
    c.request("GET", "/counter", &auth, b"");
    let r = c.request("GET", "/counter", &auth, b"");
    assert_eq!(r.header("x-cache"), Some("HIT"));
}

#[test]
fn vary_by_header_keys_on_the_header() {
    let origin = Origin::start("o");
    let proxy = custom(
        &origin,
        "  inbound:\n    - cache-lookup: { vary_by_header: [Accept-Language] }\n\
         \x20 outbound:\n    - cache-store: { duration: 60s }\n",
    );
    let mut c = Client::connect(proxy.addr());
    let en = [("Accept-Language", "en")];
    let fr = [("Accept-Language", "fr")];
    let a = c.request("GET", "/counter", &en, b"");
    let b = c.request("GET", "/counter", &fr, b"");
    assert_ne!(a.text(), b.text());
    assert_eq!(c.request("GET", "/counter", &en, b"").text(), a.text());
    assert_eq!(c.request("GET", "/counter", &fr, b"").text(), b.text());
}

#[test]
fn chunked_and_large_bodies_are_stored_byte_exact() {
    let origin = Origin::start("o");
    let proxy = example(&origin);
    let mut c = Client::connect(proxy.addr());
    let a = c.get("/chunked/70000");
    assert!(a.chunked);
    let b = c.get("/chunked/70000");
    assert_eq!(b.header("x-cache"), Some("HIT"));
    assert!(!b.chunked, "a hit is sent with its length");
    assert_eq!(a.body, b.body);
    let a = c.get("/bytes/200000");
    let b = c.get("/bytes/200000");
    assert_eq!(b.header("x-cache"), Some("HIT"));
    assert_eq!(a.body, b.body);
    assert_eq!(origin.requests(), 2);
}

/// Fifty concurrent misses on one key make one backend fetch; every client gets its answer.
#[test]
fn concurrent_misses_are_coalesced_into_one_fetch() {
    let origin = Origin::start("o");
    let proxy = example(&origin);
    let addr = proxy.addr();
    let barrier = Arc::new(Barrier::new(50));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                barrier.wait();
                let r = c.get("/counter?delay=400");
                (r.status, r.text())
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), (200, "n=1".to_string()));
    }
    assert_eq!(origin.requests(), 1, "one fetch for fifty misses");

    // When the answer cannot be stored, the waiters are forwarded, not failed.
    let barrier = Arc::new(Barrier::new(10));
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                barrier.wait();
                c.get("/counter?delay=300&cc=no-store").status
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), 200);
    }
    assert_eq!(origin.requests(), 1 + 10);
}

/// With two workers the fifty clients' connections land on both cores: the core that did not
/// fetch waits for the other's fetch and takes its answer, so the origin still sees one.
#[test]
fn concurrent_misses_on_two_workers_make_one_fetch() {
    let origin = Origin::start("o");
    let mut proxy = Ringway::start_file(
        "examples/cache.yaml",
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "2"),
            ("RINGWAY_BACKEND", &origin.url()),
        ],
    );
    let addr = proxy.addr();
    for round in 0..3 {
        let barrier = Arc::new(Barrier::new(50));
        let clients: Vec<_> = (0..50)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    barrier.wait();
                    let r = c.get(&format!("/counter?delay=400&round={round}"));
                    (r.status, r.text())
                })
            })
            .collect();
        let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        assert!(answers.iter().all(|(s, _)| *s == 200));
        assert!(
            answers.windows(2).all(|w| w[0].1 == w[1].1),
            "every client got the one fetch's answer"
        );
        assert_eq!(origin.requests(), round + 1, "one fetch per fifty misses");
    }
    proxy.sigterm();
    let (status, out) = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{out}");
    let counts = ringway_tests::parse_worker_counts(&out);
    assert!(
        counts.len() == 2 && counts.values().all(|&n| n > 0),
        "both workers served: {counts:?}"
    );
}

#[test]
fn the_value_cache_feeds_later_policies() {
    let origin = Origin::start("o");
    let proxy = custom(
        &origin,
        r#"  inbound:
    - cache-lookup-value: { key: "seen-{header:X-User}", variable_name: seen, default_value: "never" }
    - set-header: { name: X-Seen, value: "{var:seen}" }
    - cache-store-value: { key: "seen-{header:X-User}", value: "before", duration: 60s }
    - cache-remove-value: { key: "seen-{header:X-Forget}" }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    c.request("GET", "/x", &[("X-User", "ann")], b"");
    assert_eq!(
        origin.last_request().unwrap().header("x-seen"),
        Some("never")
    );
    c.request("GET", "/x", &[("X-User", "ann")], b"");
    assert_eq!(
        origin.last_request().unwrap().header("x-seen"),
        Some("before")
    );
    c.request("GET", "/x", &[("X-User", "bob"), ("X-Forget", "ann")], b"");
    assert_eq!(
        origin.last_request().unwrap().header("x-seen"),
        Some("never")
    );
    c.request("GET", "/x", &[("X-User", "ann")], b"");
    assert_eq!(
        origin.last_request().unwrap().header("x-seen"),
        Some("never"),
        "removed by the previous request"
    );
}
