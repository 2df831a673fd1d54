//! Circuit breakers through the real binary: a target trips after its rule's failures, the
//! backend then answers 503 `circuit_open` with `Retry-After` without reaching the origin, and a
//! probe after `trip_duration` closes it (or re-opens it); `accept_retry_after`; connection
//! errors; priority failover when the top tier trips.

mod scripted;

use std::time::{Duration, Instant};

use ringway_tests::{closed_port, Client, Response, Ringway};
use scripted::Scripted;

fn backend_yaml(workers: usize, extra: &str, targets: &[String]) -> String {
    let mut yaml = format!(
        "workers: {workers}\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: app\n{extra}    targets:\n"
    );
    for t in targets {
        yaml.push_str(&format!("      - {t}\n"));
    }
    yaml.push_str("routes:\n  - backend: app\n");
    yaml
}

/// A GET on a new connection (so that, with several workers, requests spread over them).
fn get(proxy: &Ringway, path: &str) -> Response {
    Client::connect(proxy.addr()).get(path)
}

fn assert_circuit_open(response: &Response, max_retry_after: u64) {
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json_error().as_deref(), Some("circuit_open"));
    let retry_after: u64 = response
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=max_retry_after).contains(&retry_after),
        "Retry-After {retry_after}"
    );
}

const SERVER_ERRORS: &str =
    "    circuit_breaker:\n      rules:\n        - name: server-errors\n          \
     failure_condition: {count: 3, interval: 10s, status_codes: [\"500-599\"]}\n          \
     trip_duration: 600ms\n";

#[test]
fn breaker_trips_after_failures_answers_503_while_open_and_a_probe_closes_it() {
    let origin = Scripted::start("app");
    origin.set_status(500);
    let proxy = Ringway::start(&backend_yaml(
        2,
        SERVER_ERRORS,
        &[format!("url: {}", origin.url())],
    ));
    for i in 0..3 {
        assert_eq!(get(&proxy, "/x").status, 500, "failure {i} passes through");
    }
    let tripped = Instant::now();
    // Open, on every worker: nothing reaches the origin.
    for _ in 0..10 {
        assert_circuit_open(&get(&proxy, "/x"), 1);
    }
    assert_eq!(origin.requests(), 3);

    // Due for a probe, which still fails: open again for another trip_duration.
    std::thread::sleep(Duration::from_millis(650).saturating_sub(tripped.elapsed()));
    assert_eq!(get(&proxy, "/x").status, 500, "the probe's answer");
    assert_eq!(origin.requests(), 4);
    let reopened = Instant::now();
    assert_circuit_open(&get(&proxy, "/x"), 1);
    assert_eq!(origin.requests(), 4);

    // The origin recovers; the next probe closes the breaker.
    origin.set_status(200);
    std::thread::sleep(Duration::from_millis(650).saturating_sub(reopened.elapsed()));
    let probe = get(&proxy, "/x");
    assert_eq!(probe.status, 200, "{}", probe.text());
    for _ in 0..10 {
        assert_eq!(get(&proxy, "/x").status, 200);
    }
    assert_eq!(origin.requests(), 15);
    let log = proxy.stderr_text();
    assert!(
        log.contains("circuit breaker of backend app target"),
        "{log}"
    );
    assert!(log.contains("closed: the probe succeeded"), "{log}");
}

#[test]
fn accept_retry_after_holds_the_breaker_open_as_long_as_the_backend_asks() {
    let origin = Scripted::start("app");
    origin.set_status(429);
    origin.set_header("Retry-After", "2");
    let rule = "    circuit_breaker:\n      rules:\n        - failure_condition: \
                {count: 1, interval: 10s, status_codes: [429]}\n          \
                trip_duration: 1h\n          accept_retry_after: true\n";
    let proxy = Ringway::start(&backend_yaml(1, rule, &[format!("url: {}", origin.url())]));
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/x").status, 429);
    let tripped = Instant::now();
    // Open for the backend's 2 s, not the rule's hour.
    let open = client.get("/x");
    assert_circuit_open(&open, 2);
    assert!(!open.closes(), "a 503 circuit_open keeps the connection");
    origin.set_status(200);
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(tripped.elapsed()));
    assert_eq!(client.get("/x").status, 200);
    assert_eq!(origin.requests(), 2);
}

#[test]
fn connection_errors_trip_the_breaker() {
    let dead = closed_port();
    let rule = "    circuit_breaker:\n      rules:\n        - failure_condition: \
                {count: 1, interval: 10s, connection_errors: true}\n          trip_duration: 10s\n";
    let proxy = Ringway::start(&backend_yaml(1, rule, &[format!("url: http://{dead}")]));
    let mut client = Client::connect(proxy.addr());
    let first = client.get("/x");
    assert_eq!(first.status, 502, "{}", first.text());
    // Retry-After counts down from the 10 s trip.
    assert_circuit_open(&client.get("/x"), 10);
}

#[test]
fn priority_fails_over_when_the_top_tier_trips() {
    let primary = Scripted::start("primary");
    let backup = Scripted::start("backup");
    primary.set_status(503);
    let yaml = backend_yaml(
        1,
        &format!("    balance: priority\n{SERVER_ERRORS}")
            .replace("trip_duration: 600ms", "trip_duration: 10s"),
        &[
            format!("{{ url: {}, priority: 0 }}", primary.url()),
            format!("{{ url: {}, priority: 1 }}", backup.url()),
        ],
    );
    let proxy = Ringway::start(&yaml);
    let mut client = Client::connect(proxy.addr());
    let statuses: Vec<u16> = (0..10).map(|_| client.get("/name").status).collect();
    assert_eq!(statuses, [503, 503, 503, 200, 200, 200, 200, 200, 200, 200]);
    assert_eq!(primary.requests(), 3);
    assert_eq!(backup.requests(), 7);
    assert_eq!(client.get("/name").text(), "backup");
}
