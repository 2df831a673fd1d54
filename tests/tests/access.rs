//! ip-filter (through trusted proxies, and not fooled by a spoofed `X-Forwarded-For`),
//! check-header, cors (preflights answered at the gateway, actual requests marked) and
//! request-size-limit, through the real binary.

use ringway_tests::{json_string_field, Client, Origin, Ringway};

fn gateway(origin: &Origin, inbound: &str) -> Ringway {
    Ringway::start(&format!(
        "workers: 1\n\
         listeners: [{{ address: 127.0.0.1:0 }}]\n\
         backends: [{{ name: b, targets: [{{ url: {} }}] }}]\n\
         routes: [{{ name: all, backend: b }}]\n\
         policies:\n  inbound:\n{inbound}",
        origin.url()
    ))
}

#[test]
fn ip_filter_allows_listed_clients_and_trusts_forwarded_for_only_from_proxies() {
    let origin = Origin::start("o");
    // The test client connects from 127.0.0.1, which is the "trusted proxy" here.
    let proxy = gateway(
        &origin,
        "    - ip-filter: { action: allow, addresses: [\"203.0.113.0/24\", \"2001:db8::/32\"], trusted_proxies: [127.0.0.1] }\n",
    );
    let mut c = Client::connect(proxy.addr());
    let r = c.request("GET", "/x", &[("X-Forwarded-For", "203.0.113.5")], b"");
    assert_eq!(r.status, 200, "a listed client behind a trusted proxy");
    let r = c.request(
        "GET",
        "/x",
        &[("X-Forwarded-For", "203.0.113.5, 198.51.100.9")],
        b"",
    );
    assert_eq!(r.status, 403, "the right-most untrusted hop is the client");
    assert_eq!(
        json_string_field(&r.body, "message").as_deref(),
        Some("Forbidden")
    );
    assert_eq!(c.get("/x").status, 403, "the proxy itself is not listed");
    let before = origin.requests();
    assert_eq!(
        c.request("GET", "/x", &[("X-Forwarded-For", "198.51.100.9")], b"")
            .status,
        403
    );
    assert_eq!(origin.requests(), before);

    // Without trusted proxies, X-Forwarded-For is the client's word and counts for nothing.
    let untrusting = gateway(
        &origin,
        "    - ip-filter: { action: allow, addresses: [\"203.0.113.0/24\"] }\n",
    );
    let mut c = Client::connect(untrusting.addr());
    let r = c.request("GET", "/x", &[("X-Forwarded-For", "203.0.113.5")], b"");
    assert_eq!(
        r.status, 403,
        "a spoofed X-Forwarded-For from an untrusted peer"
    );

    let forbid = gateway(
        &origin,
        "    - ip-filter: { action: forbid, addresses: [127.0.0.0/8] }\n",
    );
    assert_eq!(Client::connect(forbid.addr()).get("/x").status, 403);
}

#[test]
fn check_header_refuses_missing_or_unlisted_values() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        "    - check-header: { name: X-Api-Version, values: [\"1\", \"2\"], failed_check_httpcode: 400, failed_check_error_message: \"Unsupported API version\" }\n",
    );
    let mut c = Client::connect(proxy.addr());
    assert_eq!(
        c.request("GET", "/x", &[("X-Api-Version", "2")], b"")
            .status,
        200
    );
    let r = c.request("GET", "/x", &[("X-Api-Version", "3")], b"");
    assert_eq!(r.status, 400);
    assert_eq!(
        json_string_field(&r.body, "message").as_deref(),
        Some("Unsupported API version")
    );
    assert_eq!(c.get("/x").status, 400);
}

#[test]
fn cors_preflights_are_answered_at_the_gateway() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        "    - cors:\n        allowed_origins: [\"https://app.example.com\"]\n        allowed_methods: [GET, PUT]\n        allowed_headers: [Content-Type, X-Token]\n        expose_headers: [X-Request-Id]\n        allow_credentials: true\n        preflight_result_max_age: 600\n",
    );
    let mut c = Client::connect(proxy.addr());
    let preflight = [
        ("Origin", "https://app.example.com"),
        ("Access-Control-Request-Method", "PUT"),
        ("Access-Control-Request-Headers", "content-type, x-token"),
    ];
    let before = origin.requests();
    let r = c.request("OPTIONS", "/items/1", &preflight, b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        origin.requests(),
        before,
        "the backend never sees a preflight"
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Content-Type, X-Token")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("vary"), Some("Origin"));

    // A preflight for an origin or a method that is not allowed gets no CORS headers.
    let r = c.request(
        "OPTIONS",
        "/items/1",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "PUT"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = c.request(
        "OPTIONS",
        "/items/1",
        &[
            ("Origin", "https://app.example.com"),
            ("Access-Control-Request-Method", "DELETE"),
        ],
        b"",
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(origin.requests(), before);

    // The actual request goes to the backend and its answer is marked.
    let r = c.request(
        "PUT",
        "/items/1",
        &[("Origin", "https://app.example.com")],
        b"{}",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("X-Request-Id")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = c.request(
        "GET",
        "/items/1",
        &[("Origin", "https://evil.example")],
        b"",
    );
    assert_eq!(
        r.status, 200,
        "CORS is for browsers: the request itself is not refused"
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Without Origin there is nothing to say.
    assert_eq!(c.get("/items/1").header("vary"), None);
}

#[test]
fn cors_for_any_origin_answers_star() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        "    - cors: { allowed_origins: [\"*\"], allowed_headers: [\"*\"] }\n",
    );
    let mut c = Client::connect(proxy.addr());
    let r = c.request(
        "OPTIONS",
        "/x",
        &[
            ("Origin", "https://anyone.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "x-anything"),
        ],
        b"",
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-anything"));
}

#[test]
fn request_size_limit_refuses_large_bodies_before_forwarding() {
    let origin = Origin::start("o");
    let proxy = gateway(&origin, "    - request-size-limit: { max_bytes: 1KiB }\n");
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.request("POST", "/echo", &[], &[b'a'; 1024]).status, 200);
    let before = origin.requests();
    let r = c.request("POST", "/echo", &[], &[b'a'; 1025]);
    assert_eq!(r.status, 413);
    assert_eq!(origin.requests(), before, "refused before forwarding");
    // A chunked body is held to the limit as it streams.
    let mut c = Client::connect(proxy.addr());
    let mut chunked = b"800\r\n".to_vec();
    chunked.extend_from_slice(&[b'a'; 0x800]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = c.request(
        "POST",
        "/echo",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_eq!(r.status, 413, "{}", r.text());
}
