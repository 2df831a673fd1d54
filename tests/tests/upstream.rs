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

fn pooled_config(origin: &Origin, pool: &str) -> String {
    format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: origin\n    targets:\n      - url: {}\n    pool: {pool}\n\
         routes:\n  - backend: origin\n",
        origin.url()
    )
}

#[test]
fn pool_keeps_at_most_max_idle_per_target() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&pooled_config(&origin, "{ max_idle_per_target: 2 }"));
    let addr = proxy.addr();
    let clients: Vec<_> = (0..10)
        .map(|_| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                client.get("/delay/300").status
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), 200);
    }
    assert!(
        origin.connections() >= 5,
        "10 concurrent requests used only {} origin connections",
        origin.connections()
    );
    // Only two of them may stay in the pool.
    origin.wait_open_at_most(2, Duration::from_secs(3));
    // And the pooled ones are still used.
    let before = origin.connections();
    for _ in 0..5 {
        assert_eq!(Client::connect(addr).get("/hello").body, HELLO);
    }
    assert_eq!(
        origin.connections(),
        before,
        "pooled connections were not reused"
    );
}

#[test]
fn pool_closes_connections_idle_past_idle_timeout() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&pooled_config(&origin, "{ idle_timeout: 500ms }"));
    assert_eq!(Client::connect(proxy.addr()).get("/hello").body, HELLO);
    let started = Instant::now();
    assert_eq!(origin.open_connections(), 1);
    origin.wait_open_at_most(0, Duration::from_secs(4));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "pooled connection closed after only {:?}",
        started.elapsed()
    );
    // A new request after that opens a fresh connection and works.
    assert_eq!(Client::connect(proxy.addr()).get("/hello").body, HELLO);
    assert_eq!(origin.connections(), 2);
}

#[test]
fn unavailable_target_is_used_again_after_unavailable_for() {
    let back_later = closed_port();
    let steady = Origin::start("steady");
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: pair\n    unavailable_for: 1s\n    targets:\n\
         \x20     - url: http://{back_later}\n\
         \x20     - url: {}\n\
         routes:\n  - backend: pair\n",
        steady.url()
    );
    let proxy = Ringway::start(&yaml);
    let mut client = Client::connect(proxy.addr());
    for i in 0..10 {
        let response = client.get("/name");
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        assert_eq!(response.text(), "steady");
    }
    let returned = Origin::start_at("returned", back_later);
    thread::sleep(Duration::from_millis(1500));
    let names: Vec<String> = (0..20).map(|_| client.get("/name").text()).collect();
    let returned_count = names.iter().filter(|n| *n == "returned").count();
    assert!(
        returned_count >= 5,
        "the target that came back got {returned_count} of 20 requests: {names:?}"
    );
    assert!(returned.requests() >= 5);
}

#[test]
fn unanswered_connect_gives_504_after_upstream_connect_timeout() {
    let hole = ringway_tests::blackhole();
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&format!("http://{}", hole.addr)],
        "timeouts:\n  upstream_connect: 500ms\n",
    ));
    let started = Instant::now();
    let response = Client::connect(proxy.addr()).get("/hello");
    let elapsed = started.elapsed();
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(response.json_error().is_some(), "{:?}", response.text());
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(2500),
        "504 after {elapsed:?}"
    );
}
