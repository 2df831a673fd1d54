//! Upstream failures through the real binary: stale pooled connections, dead targets,
//! origins that break the protocol or stall mid-response.

use std::thread;
use std::time::{Duration, Instant};

use ringway_tests::{closed_port, forward_all_config, Client, Origin, Ringway, HELLO};

#[test]
fn stale_pooled_connection_is_retried_for_idempotent_requests() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let mut client = Client::connect(proxy.addr());
    for round in 0..10 {
        // The origin closes the connection right after answering, so the proxy's pooled
        // connection is dead by the time (or just as) the next request is sent on it.
        let dropped = client.get("/drop-after");
        assert_eq!(dropped.status, 200, "round {round}: {}", dropped.text());
        if round % 2 == 1 {
            thread::sleep(Duration::from_millis(50));
        }
        let next = client.get("/hello");
        assert_eq!(
            next.status,
            200,
            "round {round}: GET on a stale pooled connection was not retried: {}",
            next.text()
        );
        assert_eq!(next.body, HELLO);
    }
}

#[test]
fn round_robin_skips_a_dead_target() {
    let alive = Origin::start("alive");
    let dead = closed_port();
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&format!("http://{dead}"), &alive.url()],
        "",
    ));
    let mut client = Client::connect(proxy.addr());
    for i in 0..20 {
        let response = client.get("/name");
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        assert_eq!(response.text(), "alive");
    }
}

#[test]
fn every_target_dead_gives_502() {
    let dead: Vec<String> = (0..2)
        .map(|_| format!("http://{}", closed_port()))
        .collect();
    let proxy = Ringway::start(&forward_all_config(1, &[&dead[0], &dead[1]], ""));
    for _ in 0..3 {
        let response = Client::connect(proxy.addr()).get("/hello");
        assert_eq!(response.status, 502, "{}", response.text());
        assert!(response.json_error().is_some(), "{:?}", response.text());
    }
}

#[test]
fn origin_protocol_error_gives_502() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let response = Client::connect(proxy.addr()).get("/garbage");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(response.json_error().is_some(), "{:?}", response.text());
    // The broken connection is not pooled: the next request works.
    assert_eq!(Client::connect(proxy.addr()).get("/hello").body, HELLO);
}

#[test]
fn origin_hanging_up_without_a_response_gives_502() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let response = Client::connect(proxy.addr()).get("/hangup");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(response.json_error().is_some(), "{:?}", response.text());
    assert_eq!(Client::connect(proxy.addr()).get("/hello").body, HELLO);
}

#[test]
fn response_stalled_mid_body_is_cut_after_the_upstream_timeout() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  upstream_response: 500ms\n",
    ));
    let mut client = Client::connect(proxy.addr());
    let started = Instant::now();
    client.send_request("GET", "/stall-body", &[], b"");
    let result = client.try_read_response();
    let elapsed = started.elapsed();
    assert!(
        result.is_err(),
        "a response cut short by the origin arrived whole: {result:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "the stalled response was cut only after {elapsed:?}"
    );
}

#[test]
fn post_is_forwarded_once() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let mut client = Client::connect(proxy.addr());
    let response = client.request("POST", "/echo", &[], b"once");
    assert_eq!(response.body, b"once");
    assert_eq!(origin.requests(), 1);
}
