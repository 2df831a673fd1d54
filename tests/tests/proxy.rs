//! Proxying through the real binary: connection reuse, framing, large bodies, pooling,
//! balancing, upstream failures, forwarded and hop-by-hop headers, WebSocket.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringway_tests::websocket::{sha1, WsClient, OP_BINARY, OP_TEXT};
use ringway_tests::wire::encode_chunked;
use ringway_tests::{
    closed_port, forward_all_config, pattern_bytes, Client, Origin, Response, Ringway, HELLO,
};

fn proxy_to(origin: &Origin) -> Ringway {
    Ringway::start(&forward_all_config(1, &[&origin.url()], ""))
}

fn assert_hello(response: &Response) {
    assert_eq!(
        response.status,
        200,
        "{:?} {}",
        response.headers,
        response.text()
    );
    assert_eq!(response.body, HELLO, "body of /hello");
}

#[test]
fn smoke_get_hello() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response = Client::connect(proxy.addr()).get("/hello");
    assert_hello(&response);
    assert_eq!(response.header("x-origin"), Some("a"));
    assert_eq!(origin.requests(), 1);
}

#[test]
fn keep_alive_connection_serves_many_requests() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    for _ in 0..20 {
        let response = client.get("/hello");
        assert_hello(&response);
        assert!(!response.closes(), "a keep-alive response asked to close");
    }
    assert_eq!(origin.requests(), 20);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let mut batch = Vec::new();
    for n in 1..=10 {
        batch.extend_from_slice(
            format!("GET /bytes/{n} HTTP/1.1\r\nHost: ringway.test\r\n\r\n").as_bytes(),
        );
    }
    client.send_raw(&batch);
    for n in 1..=10 {
        let response = client.read_response();
        assert_eq!(response.status, 200, "pipelined response {n}");
        assert_eq!(
            response.body,
            pattern_bytes(n),
            "pipelined response {n} out of order?"
        );
    }
    // The connection is still usable afterwards.
    assert_hello(&client.get("/hello"));
}

#[test]
fn connection_close_ends_a_pipeline() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    client.send_raw(
        b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
          GET /bytes/5 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let response = client.read_response();
    assert_hello(&response);
    assert!(response.closes(), "{:?}", response.headers);
    // Nothing after the request that asked to close is answered.
    ringway_tests::expect_closed(&mut client);
    assert_eq!(origin.requests(), 1);
}

#[test]
fn pipelined_posts_with_bodies_are_answered_in_order() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let mut batch = Vec::new();
    for n in 0..8 {
        let body = format!("body number {n}");
        if n % 2 == 0 {
            batch.extend_from_slice(&ringway_tests::client::build_request(
                "POST",
                "/echo",
                &[],
                body.as_bytes(),
            ));
        } else {
            batch.extend_from_slice(&ringway_tests::client::build_request(
                "POST",
                "/echo",
                &[("Transfer-Encoding", "chunked")],
                &encode_chunked(body.as_bytes(), 4, &[]),
            ));
        }
    }
    client.send_raw(&batch);
    for n in 0..8 {
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), format!("body number {n}"));
    }
}

#[test]
fn expect_100_continue_is_handled() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    client.send_raw(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
    );
    // A client waits a little for 100 Continue, then sends the body anyway.
    std::thread::sleep(Duration::from_millis(200));
    client.send_raw(b"hello world");
    let response = client.read_response();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.body, b"hello world");
    assert_hello(&client.get("/hello"));
}

#[test]
fn chunked_request_reaches_the_origin_chunked() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let body = pattern_bytes(100_000);
    let mut client = Client::connect(proxy.addr());
    let response = client.request(
        "POST",
        "/echo",
        &[("Transfer-Encoding", "chunked")],
        &encode_chunked(&body, 7_000, &[]),
    );
    assert_eq!(response.status, 200);
    assert!(response.body == body, "echoed chunked body differs");
    let seen = origin.last_request().expect("the origin saw the request");
    assert!(seen.chunked, "origin got {:?}", seen.headers);
    assert_eq!(seen.header("content-length"), None);
    assert_eq!(seen.body_len, body.len());
    // The origin answered chunked, so the client gets it chunked too.
    assert!(response.chunked, "response headers {:?}", response.headers);
}

#[test]
fn chunked_response_reaches_the_client_chunked() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/chunked/50000");
    assert_eq!(response.status, 200);
    assert!(response.chunked, "response headers {:?}", response.headers);
    assert_eq!(response.header("content-length"), None);
    assert!(response.body == pattern_bytes(50_000));
    // And the connection stays usable after the last chunk.
    assert_hello(&client.get("/hello"));
}

#[test]
fn large_chunked_response_is_relayed_whole() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    // Fresh connections, so each relay starts with the proxy's buffers in a new alignment.
    for size in [1usize << 20, 4 << 20] {
        for attempt in 0..3 {
            let mut client = Client::connect(proxy.addr());
            client.send_request("GET", &format!("/chunked/{size}"), &[], b"");
            let response = client.try_read_response().unwrap_or_else(|e| {
                panic!("chunked response of {size} bytes (attempt {attempt}) was cut: {e}")
            });
            assert_eq!(response.status, 200);
            assert!(
                response.body == pattern_bytes(size),
                "{size}-byte body differs"
            );
        }
    }
}

#[test]
fn chunked_response_split_across_reads_is_relayed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/chunked-split");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello world");
    assert_hello(&client.get("/hello"));
}

#[test]
fn chunked_request_split_across_writes_is_relayed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    client.send_raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in ringway_tests::origin::SPLIT_CHUNKED_BODY {
        std::thread::sleep(Duration::from_millis(20));
        client.send_raw(piece);
    }
    let response = client.read_response();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "hello world");
    assert_hello(&client.get("/hello"));
}

#[test]
fn chunked_request_split_at_each_framing_point_is_relayed() {
    let origin = Origin::start("a");
    let body: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: done\r\n\r\n";
    // Inside a size line, between CR and LF, right after the size, inside data, between data
    // and its CRLF, after the last chunk's size, inside the trailer, between the final CRLFs.
    let splits = [1, 2, 11, 18, 21, 26, 28, 35, 48];
    let mut failures = Vec::new();
    for split in splits {
        // A proxy per split, so one failure cannot mask the next.
        let mut proxy = proxy_to(&origin);
        proxy.report_panics_myself();
        let mut client = Client::connect(proxy.addr());
        client.set_read_timeout(Duration::from_secs(2));
        client.send_raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        client.send_raw(&body[..split]);
        std::thread::sleep(Duration::from_millis(30));
        if client.wire().write_all(&body[split..]).is_err() {
            failures.push(format!("split at {split}: connection closed mid-body"));
            continue;
        }
        match client.try_read_response() {
            Ok(response) if response.status == 200 && response.body == b"hello world" => {}
            Ok(response) => failures.push(format!(
                "split at {split} ({:?} | {:?}): {} {:?}",
                String::from_utf8_lossy(&body[..split]),
                String::from_utf8_lossy(&body[split..]),
                response.status,
                response.text()
            )),
            Err(e) => failures.push(format!(
                "split at {split} ({:?} | {:?}): {e}",
                String::from_utf8_lossy(&body[..split]),
                String::from_utf8_lossy(&body[split..]),
            )),
        }
        let stderr = proxy.stderr_text();
        if let Some(panic) = stderr.lines().find(|l| l.contains("panicked")) {
            failures.push(format!("split at {split}: the proxy {panic}"));
        }
    }
    assert!(
        failures.is_empty(),
        "chunked framing split across reads:\n{}",
        failures.join("\n")
    );
}

#[test]
fn close_delimited_response_is_relayed_whole() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/close-delimited/300000");
    assert_eq!(response.status, 200);
    assert!(
        response.body == pattern_bytes(300_000),
        "body differs ({} bytes)",
        response.body.len()
    );
    // If the proxy re-framed it (chunked), the client connection is still usable.
    if response.chunked {
        assert_hello(&client.get("/hello"));
    }
}

#[test]
fn chunked_response_trailers_are_forwarded() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response =
        Client::connect(proxy.addr()).request("GET", "/chunked/100", &[("TE", "trailers")], b"");
    assert_eq!(response.status, 200);
    assert!(response.chunked);
    assert_eq!(
        response.trailer("x-trailer"),
        Some("done"),
        "trailers: {:?}",
        response.trailers
    );
}

/// 16 MiB that is not purely periodic.
fn big_body() -> Vec<u8> {
    pattern_bytes(16 << 20)
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ (i >> 16) as u8)
        .collect()
}

#[test]
fn sixteen_mebibyte_body_is_byte_exact_both_ways() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let body = big_body();
    let mut client = Client::connect(proxy.addr());
    let response = client.request("POST", "/echo", &[], &body);
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), body.len());
    assert_eq!(sha1(&response.body), sha1(&body), "echoed body differs");
    assert_eq!(origin.last_request().unwrap().body_len, body.len());

    let response = client.get(&format!("/bytes/{}", 16 << 20));
    assert_eq!(response.status, 200);
    assert_eq!(sha1(&response.body), sha1(&pattern_bytes(16 << 20)));
}

#[test]
fn sixteen_mebibyte_chunked_body_is_byte_exact_both_ways() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let body = big_body();
    let mut client = Client::connect(proxy.addr());
    let response = client.request(
        "POST",
        "/echo",
        &[("Transfer-Encoding", "chunked")],
        &encode_chunked(&body, 1 << 20, &[]),
    );
    assert_eq!(response.status, 200);
    assert!(response.chunked);
    assert_eq!(
        sha1(&response.body),
        sha1(&body),
        "echoed chunked body differs"
    );
    assert_eq!(origin.last_request().unwrap().body_len, body.len());
}

#[test]
fn head_204_and_304_have_no_body_and_keep_the_connection() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());

    let head = client.request("HEAD", "/bytes/1000", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert_hello(&client.get("/hello"));

    let no_content = client.get("/status/204");
    assert_eq!(no_content.status, 204);
    assert_hello(&client.get("/hello"));

    let not_modified = client.get("/status/304");
    assert_eq!(not_modified.status, 304);
    assert_hello(&client.get("/hello"));

    // HEAD of a resource the origin sends chunked: headers only, nothing to wait for.
    let head_chunked = client.request("HEAD", "/chunked/100", &[], b"");
    assert_eq!(head_chunked.status, 200);
    assert_hello(&client.get("/hello"));

    // Pipelined, so a stray body byte would corrupt the next response.
    client.send_request("HEAD", "/hello", &[], b"");
    client.send_request("GET", "/status/204", &[], b"");
    client.send_request("GET", "/status/304", &[], b"");
    client.send_request("GET", "/hello", &[], b"");
    assert_eq!(client.read_response().status, 200);
    assert_eq!(client.read_response().status, 204);
    assert_eq!(client.read_response().status, 304);
    assert_hello(&client.read_response());
}

#[test]
fn upstream_connections_are_pooled() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(2, &[&origin.url()], ""));
    for i in 0..200 {
        let response = Client::connect(proxy.addr()).get("/hello");
        assert_eq!(response.status, 200, "request {i}");
    }
    assert_eq!(origin.requests(), 200);
    assert!(
        origin.connections() < 20,
        "200 requests opened {} origin connections",
        origin.connections()
    );
}

#[test]
fn client_connection_close_does_not_close_the_upstream() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    for _ in 0..20 {
        let mut client = Client::connect(proxy.addr());
        let response = client.request("GET", "/hello", &[("Connection", "close")], b"");
        assert_hello(&response);
        assert!(
            response.closes(),
            "answer to Connection: close should close"
        );
        ringway_tests::expect_closed(&mut client);
    }
    assert!(
        origin.connections() < 5,
        "20 requests opened {} origin connections",
        origin.connections()
    );
}

fn count_names(proxy: &Ringway, requests: usize) -> HashMap<String, usize> {
    let mut client = Client::connect(proxy.addr());
    let mut counts = HashMap::new();
    for i in 0..requests {
        let response = client.get("/name");
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        *counts.entry(response.text()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn weighted_backend_splits_three_to_one() {
    let heavy = Origin::start("heavy");
    let light = Origin::start("light");
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: split\n    balance: weighted\n    targets:\n\
         \x20     - {{ url: {}, weight: 3 }}\n\
         \x20     - {{ url: {}, weight: 1 }}\n\
         routes:\n  - backend: split\n",
        heavy.url(),
        light.url()
    );
    let proxy = Ringway::start(&yaml);
    let counts = count_names(&proxy, 400);
    let heavy_count = counts.get("heavy").copied().unwrap_or(0);
    let light_count = counts.get("light").copied().unwrap_or(0);
    assert_eq!(heavy_count + light_count, 400, "{counts:?}");
    assert!(
        (270..=330).contains(&heavy_count),
        "weights 3:1 over 400 requests gave {counts:?}"
    );
}

#[test]
fn weighted_split_is_smooth() {
    let heavy = Origin::start("heavy");
    let light = Origin::start("light");
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: split\n    balance: weighted\n    targets:\n\
         \x20     - {{ url: {}, weight: 3 }}\n\
         \x20     - {{ url: {}, weight: 1 }}\n\
         routes:\n  - backend: split\n",
        heavy.url(),
        light.url()
    );
    let proxy = Ringway::start(&yaml);
    let mut client = Client::connect(proxy.addr());
    let names: Vec<String> = (0..40).map(|_| client.get("/name").text()).collect();
    // Smooth weighted round-robin: every window of sum-of-weights requests holds each target
    // exactly its weight times, wherever the window starts.
    for window in names.windows(4) {
        let light_count = window.iter().filter(|n| *n == "light").count();
        assert_eq!(light_count, 1, "window {window:?} in {names:?}");
    }
}

#[test]
fn priority_prefers_the_lowest_value() {
    let primary = Origin::start("primary");
    let backup = Origin::start("backup");
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: tiers\n    balance: priority\n    targets:\n\
         \x20     - {{ url: {}, priority: 1 }}\n\
         \x20     - {{ url: {}, priority: 0 }}\n\
         routes:\n  - backend: tiers\n",
        backup.url(),
        primary.url()
    );
    let proxy = Ringway::start(&yaml);
    let counts = count_names(&proxy, 20);
    assert_eq!(counts.get("primary"), Some(&20), "{counts:?}");
}

#[test]
fn round_robin_alternates_targets() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let proxy = Ringway::start(&forward_all_config(1, &[&a.url(), &b.url()], ""));
    let counts = count_names(&proxy, 100);
    assert_eq!(counts.get("a"), Some(&50), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&50), "{counts:?}");
}

#[test]
fn priority_fails_over_to_the_next_tier() {
    let backup = Origin::start("backup");
    let dead = closed_port();
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: tiers\n    balance: priority\n    unavailable_for: 5s\n    targets:\n\
         \x20     - {{ url: http://{dead}, priority: 0 }}\n\
         \x20     - {{ url: {}, priority: 1 }}\n\
         routes:\n  - backend: tiers\n",
        backup.url()
    );
    let proxy = Ringway::start(&yaml);
    let counts = count_names(&proxy, 30);
    assert_eq!(counts.get("backup"), Some(&30), "{counts:?}");
}

#[test]
fn dead_target_gives_502_json() {
    let dead = closed_port();
    let proxy = Ringway::start(&forward_all_config(1, &[&format!("http://{dead}")], ""));
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/hello");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.json_error().is_some(),
        "502 body is not a JSON error: {:?}",
        response.text()
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "content-type {:?}",
        response.header("content-type")
    );
    // A gateway error on a well-formed request does not cost the client its connection.
    if !response.closes() {
        assert_eq!(client.get("/hello").status, 502);
    }
}

#[test]
fn slow_origin_gives_504_after_upstream_response_timeout() {
    let origin = Origin::start("slow");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  upstream_response: 500ms\n",
    ));
    let started = Instant::now();
    let response = Client::connect(proxy.addr()).get("/delay/3000");
    let elapsed = started.elapsed();
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(response.json_error().is_some(), "{:?}", response.text());
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(2500),
        "504 came after {elapsed:?}"
    );
    // Fast requests still pass.
    assert_hello(&Client::connect(proxy.addr()).get("/hello"));
}

#[test]
fn forwarded_headers_are_added() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());

    assert_eq!(
        client
            .request("GET", "/plain", &[("Host", "shop.example:8080")], b"")
            .status,
        200
    );
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.header_joined("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("shop.example:8080"));
    assert_eq!(seen.header_joined("via").as_deref(), Some("1.1 ringway"));
    let generated = seen
        .header("x-request-id")
        .expect("X-Request-Id generated")
        .to_string();
    assert!(!generated.is_empty());

    client.request(
        "GET",
        "/appended",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("Via", "1.0 edge"),
            ("X-Request-Id", "req-abc-123"),
        ],
        b"",
    );
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.header_joined("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(
        seen.header_joined("via").as_deref(),
        Some("1.0 edge, 1.1 ringway")
    );
    assert_eq!(seen.header_all("x-request-id"), vec!["req-abc-123"]);

    client.get("/third");
    let third = origin.last_request().unwrap();
    let another = third
        .header("x-request-id")
        .expect("X-Request-Id generated");
    assert_ne!(another, generated, "request ids must differ per request");
}

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response = Client::connect(proxy.addr()).request(
        "GET",
        "/hop-request",
        &[
            ("Connection", "keep-alive, x-foo"),
            ("X-Foo", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("X-End-To-End", "kept"),
        ],
        b"",
    );
    assert_eq!(response.status, 200);
    let seen = origin.last_request().unwrap();
    for name in ["x-foo", "keep-alive", "proxy-connection", "te"] {
        assert_eq!(
            seen.header(name),
            None,
            "{name} reached the origin: {:?}",
            seen.headers
        );
    }
    // Connection itself may only carry the proxy's own options, never the client's list.
    for value in seen.header_all("connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-foo"),
            "Connection: {value} reached the origin"
        );
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
}

#[test]
fn upgrade_header_without_upgrade_connection_is_removed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response =
        Client::connect(proxy.addr()).request("GET", "/no-upgrade", &[("Upgrade", "foo/1")], b"");
    assert_eq!(response.status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("upgrade"), None, "{:?}", seen.headers);
}

#[test]
fn hop_by_hop_response_headers_are_removed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/hop");
    assert_eq!(response.status, 200);
    for name in ["x-bar", "keep-alive", "proxy-connection"] {
        assert_eq!(
            response.header(name),
            None,
            "{name} reached the client: {:?}",
            response.headers
        );
    }
    assert_eq!(response.header("x-kept"), Some("yes"));
    assert_hello(&client.get("/hello"));
}

#[test]
fn refused_upgrade_stays_http() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    // The origin answers an ordinary 200 (it only upgrades /ws).
    let response = client.request(
        "GET",
        "/hello",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    );
    assert_hello(&response);
    assert_hello(&client.get("/hello"));
}

#[test]
fn websocket_echo_through_the_proxy() {
    let origin = Origin::start("ws");
    let proxy = proxy_to(&origin);
    let mut ws = WsClient::connect(proxy.addr(), "/ws");
    assert!(ws
        .handshake
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    for i in 0..5 {
        let text = format!("message {i}");
        ws.send(OP_TEXT, text.as_bytes());
        let frame = ws.recv();
        assert_eq!(frame.opcode, OP_TEXT);
        assert_eq!(frame.payload, text.as_bytes());
    }
    let big = pattern_bytes(200_000);
    ws.send(OP_BINARY, &big);
    let frame = ws.recv();
    assert_eq!(frame.opcode, OP_BINARY);
    assert!(frame.payload == big, "binary frame differs");
    let seen = origin.last_request().unwrap();
    assert!(
        seen.header("upgrade").is_some(),
        "Upgrade was not forwarded: {:?}",
        seen.headers
    );
}

#[test]
fn request_target_and_method_are_forwarded_verbatim() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let cases = [
        ("GET", "/path%20with%2Fescapes?a=%2F&b=c+d&a=2"),
        ("DELETE", "/items/7"),
        ("OPTIONS", "/cors"),
        ("PURGE", "/cache/key"),
        ("GET", "/trailing/?"),
        ("GET", "/dots/./../x"),
    ];
    for (method, target) in cases {
        let response = client.request(method, target, &[], b"");
        assert_eq!(
            response.status,
            200,
            "{method} {target}: {}",
            response.text()
        );
        let seen = origin.last_request().unwrap();
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            (method, target)
        );
    }
    for method in ["PUT", "PATCH", "POST"] {
        let response = client.request(method, "/echo", &[], b"payload");
        assert_eq!(response.body, b"payload", "{method}");
        assert_eq!(origin.last_request().unwrap().method, method);
    }
    let empty = client.request("POST", "/echo", &[("Content-Length", "0")], b"");
    assert_eq!((empty.status, empty.body.len()), (200, 0));
    let get_with_body = client.request("GET", "/echo", &[], b"get body");
    assert_eq!(get_with_body.body, b"get body");
}

#[test]
fn large_request_header_is_forwarded_intact() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let value: String = (0..10_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let response =
        Client::connect(proxy.addr()).request("GET", "/big-header", &[("X-Big", &value)], b"");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        origin.last_request().unwrap().header("x-big"),
        Some(value.as_str())
    );
}

#[test]
fn many_concurrent_clients_are_all_served() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(2, &[&origin.url()], ""));
    let addr = proxy.addr();
    let clients: Vec<_> = (0..50)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..20 {
                    let n = (c * 20 + i) % 97 + 1;
                    let response = client.get(&format!("/bytes/{n}"));
                    assert_eq!(response.status, 200);
                    assert_eq!(response.body, pattern_bytes(n), "client {c} request {i}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    assert_eq!(origin.requests(), 1000);
}

#[test]
fn head_split_across_reads_is_parsed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let head = b"GET /hello HTTP/1.1\r\nHost: split.test\r\nX-A: 1\r\n\r\n";
    for split in [3, 17, 20, 21, 35, head.len() - 2, head.len() - 1] {
        client.send_raw(&head[..split]);
        std::thread::sleep(Duration::from_millis(20));
        client.send_raw(&head[split..]);
        let response = client
            .try_read_response()
            .unwrap_or_else(|e| panic!("head split at {split}: {e}"));
        assert_eq!(
            response.status,
            200,
            "head split at {split}: {}",
            response.text()
        );
        assert_eq!(response.body, HELLO);
    }
}

#[test]
fn repeated_response_headers_stay_separate() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response = Client::connect(proxy.addr()).get("/cookies");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header_all("set-cookie"),
        vec!["a=1; Path=/", "b=2, with comma; Path=/"]
    );
}
