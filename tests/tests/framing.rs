//! Message framing through the real binary: keep-alive, pipelining, heads and chunked bodies
//! split across reads, trailers, close-delimited and 16 MiB bodies, HEAD/204/304, Expect.

use std::time::Duration;

use ringway_tests::websocket::sha1;
use ringway_tests::wire::encode_chunked;
use ringway_tests::{assert_hello, pattern_bytes, proxy_to, Client, Origin, HELLO};

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
fn response_head_split_across_reads_is_parsed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/head-split");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-split"), Some("yes"));
    assert_eq!(response.body, b"split");
    assert_hello(&client.get("/hello"));
}

#[test]
fn request_body_is_streamed_not_buffered_whole() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let body = pattern_bytes(8 << 20);
    client.send_raw(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send_raw(&body[..1 << 20]);
    // The origin gets the head while most of the body has not even been sent.
    origin.wait_requests(1, Duration::from_secs(3));
    client.send_raw(&body[1 << 20..]);
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(response.body == body, "echoed body differs");
}

#[test]
fn response_head_is_streamed_before_the_body_completes() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    client.set_read_timeout(Duration::from_secs(2));
    client.send_request("GET", "/stall-body", &[], b"");
    // The origin sends the head and 10 bytes, then nothing for 3 s: the head must get through
    // long before that.
    let head = client
        .wire()
        .read_head(1 << 20)
        .unwrap_or_else(|e| panic!("the response head was held back: {e}"))
        .expect("a response head");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
}

#[test]
fn chunked_request_trailers_reach_the_origin() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let response = client.request(
        "POST",
        "/echo",
        &[("Transfer-Encoding", "chunked"), ("TE", "trailers")],
        &encode_chunked(b"with trailers", 4, &[("X-Checksum", "abc123")]),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"with trailers");
    let seen = origin.last_request().unwrap();
    assert_eq!(
        ringway_tests::wire::header(&seen.trailers, "x-checksum"),
        Some("abc123"),
        "trailers at the origin: {:?}",
        seen.trailers
    );
}

#[test]
fn tiny_chunks_are_relayed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let body = pattern_bytes(20_000);
    let response = Client::connect(proxy.addr()).request(
        "POST",
        "/echo",
        &[("Transfer-Encoding", "chunked")],
        &encode_chunked(&body, 1, &[]),
    );
    assert_eq!(response.status, 200);
    assert!(
        response.body == body,
        "body of 20000 one-byte chunks differs"
    );
}

#[test]
fn pipelined_large_responses_with_a_slow_reader() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let mut batch = Vec::new();
    for _ in 0..40 {
        batch.extend_from_slice(b"GET /bytes/200000 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    // A big POST in the middle, its body followed at once by the next head.
    batch.extend_from_slice(&ringway_tests::client::build_request(
        "POST",
        "/echo",
        &[],
        &pattern_bytes(100_000),
    ));
    batch.extend_from_slice(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    client.send_raw(&batch);
    // 8 MB of responses are waiting; read them slowly at first.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..40 {
        let response = client.read_response();
        assert_eq!(response.status, 200, "response {i}");
        assert_eq!(response.body.len(), 200_000, "response {i}");
    }
    assert!(client.read_response().body == pattern_bytes(100_000));
    assert_hello(&client.read_response());
}
