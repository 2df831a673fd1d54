//! Malformed and over-large requests through a real socket: each gets its status and a JSON
//! error, is not forwarded, and the connection is closed afterwards.

use ringway_tests::{expect_closed, forward_all_config, Client, Origin, Ringway};

const LIMITS: &str =
    "limits:\n  max_uri_bytes: 1KiB\n  max_header_bytes: 4KiB\n  max_body_bytes: 1KiB\n";

struct Setup {
    origin: Origin,
    proxy: Ringway,
}

fn start() -> Setup {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], LIMITS));
    Setup { origin, proxy }
}

/// Sends `raw` on a fresh connection and checks the status, the JSON error body and that the
/// connection is closed. With `forwarded_ok` false, also checks that nothing reached the origin.
fn rejects(raw: &[u8], status: u16, forwarded_ok: bool) {
    let setup = start();
    let mut client = Client::connect(setup.proxy.addr());
    client.send_raw(raw);
    let response = client
        .try_read_response()
        .unwrap_or_else(|e| panic!("expected {status}, reading the response failed: {e}"));
    assert_eq!(
        response.status,
        status,
        "request {:?} answered {} {}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)]),
        response.status,
        response.text()
    );
    assert!(
        response.json_error().is_some(),
        "{status} body is not a JSON error: {:?}",
        response.text()
    );
    expect_closed(&mut client);
    if !forwarded_ok {
        assert_eq!(
            setup.origin.requests(),
            0,
            "a rejected request reached the origin"
        );
    }
    // The proxy itself is fine afterwards.
    assert_eq!(
        Client::connect(setup.proxy.addr()).get("/hello").status,
        200
    );
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn conflicting_content_lengths_are_400() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        false,
    );
}

#[test]
fn bad_chunk_size_is_400() {
    // The head is valid, so the proxy may have started forwarding before the body fails.
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
        true,
    );
}

#[test]
fn obs_fold_is_400() {
    rejects(
        b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Folded: first\r\n  second\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn missing_host_is_400() {
    rejects(b"GET /hello HTTP/1.1\r\n\r\n", 400, false);
}

#[test]
fn repeated_host_is_400() {
    rejects(
        b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn bare_cr_in_a_header_is_400() {
    rejects(
        b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn nul_in_a_header_is_400() {
    rejects(
        b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn long_uri_is_414() {
    let raw = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(2000));
    rejects(raw.as_bytes(), 414, false);
}

#[test]
fn large_headers_are_431() {
    let raw = format!(
        "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(6000)
    );
    rejects(raw.as_bytes(), 431, false);
}

#[test]
fn too_many_headers_are_431() {
    let mut raw = String::from("GET /hello HTTP/1.1\r\nHost: t\r\n");
    for i in 0..150 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    rejects(raw.as_bytes(), 431, false);
}

#[test]
fn declared_body_over_the_limit_is_413() {
    // Only the head is sent: the limit is checked up front from Content-Length.
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n\r\n",
        413,
        false,
    );
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let body = ringway_tests::wire::encode_chunked(&[b'x'; 3000], 500, &[]);
    let mut raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(&body);
    rejects(&raw, 413, true);
}

#[test]
fn unknown_transfer_coding_is_501() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
        false,
    );
}

#[test]
fn body_within_the_limit_passes() {
    let setup = start();
    let mut client = Client::connect(setup.proxy.addr());
    let response = client.request("POST", "/echo", &[], &[b'y'; 1024]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.body.len(), 1024);
    let uri = format!("/{}", "a".repeat(900));
    assert_eq!(client.get(&uri).status, 200);
}

#[test]
fn invalid_content_length_is_400() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn negative_content_length_is_400() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn transfer_encoding_in_http10_is_400() {
    rejects(
        b"POST /echo HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn repeated_chunked_coding_is_400() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn chunked_not_last_is_400() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
        false,
    );
}

#[test]
fn unknown_coding_before_chunked_is_501() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
        false,
    );
}

#[test]
fn malformed_request_line_is_400() {
    rejects(b"GET /hello\r\nHost: t\r\n\r\n", 400, false);
}

#[test]
fn space_in_a_header_name_is_400() {
    rejects(
        b"GET /hello HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n",
        400,
        false,
    );
}
