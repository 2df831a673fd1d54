//! Active health checks through the real binary: worker 0 checks every target, and when one
//! fails its checks every worker stops sending to it; when it passes again they all resume.

mod scripted;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringway_tests::{parse_worker_counts, Client, Ringway};
use scripted::Scripted;

fn yaml(workers: usize, check: &str, origins: &[&Scripted]) -> String {
    let mut yaml = format!(
        "workers: {workers}\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: app\n    health_check: {check}\n    targets:\n"
    );
    for o in origins {
        yaml.push_str(&format!("      - url: {}\n", o.url()));
    }
    yaml.push_str("routes:\n  - backend: app\n");
    yaml
}

const FAST_CHECKS: &str =
    "{path: /healthz, interval: 50ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2}";

/// `n` requests, each on a new connection (so that they spread over the workers); the
/// origin names that answered, counted.
fn spread(proxy: &Ringway, n: usize) -> HashMap<String, usize> {
    let mut names = HashMap::new();
    for i in 0..n {
        let response = Client::connect(proxy.addr()).get("/name");
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        *names.entry(response.text()).or_insert(0) += 1;
    }
    names
}

/// Waits until `origin` has answered `n` more health checks than `from`.
fn wait_checks(origin: &Scripted, from: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while origin.health_checks() < from + n {
        assert!(
            Instant::now() < deadline,
            "{} was not checked",
            origin.name()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_failing_target_is_taken_out_on_every_worker_and_comes_back_when_it_passes() {
    let a = Scripted::start("a");
    let b = Scripted::start("b");
    let mut proxy = Ringway::start(&yaml(2, FAST_CHECKS, &[&a, &b]));
    let before = spread(&proxy, 20);
    assert!(
        before.contains_key("a") && before.contains_key("b"),
        "{before:?}"
    );

    a.set_health(503);
    wait_checks(&a, a.health_checks(), 3);
    // Two failed checks, then a tick (10 ms) for each worker to apply the change.
    std::thread::sleep(Duration::from_millis(30));
    let a_before = a.requests();
    let during = spread(&proxy, 40);
    assert_eq!(during.get("b"), Some(&40), "{during:?}");
    assert_eq!(a.requests(), a_before, "a failing target got requests");

    a.set_health(200);
    wait_checks(&a, a.health_checks(), 3);
    std::thread::sleep(Duration::from_millis(30));
    let after = spread(&proxy, 20);
    assert!(after.get("a").is_some_and(|&n| n >= 5), "{after:?}");

    let log = proxy.stderr_text();
    assert!(log.contains("failed 2 health checks in a row"), "{log}");
    assert!(log.contains("is healthy again"), "{log}");
    // Both workers served: the 40 requests while `a` was out did not all land on one.
    proxy.sigterm();
    let (_, output) = proxy.wait_exit(Duration::from_secs(5));
    let counts = parse_worker_counts(&output);
    assert!(
        counts.get(&0).is_some_and(|&n| n > 0) && counts.get(&1).is_some_and(|&n| n > 0),
        "{counts:?}"
    );
}

#[test]
fn a_check_that_times_out_fails() {
    let a = Scripted::start("a");
    let b = Scripted::start("b");
    let check = "{path: /slow-health, interval: 50ms, timeout: 50ms, unhealthy_threshold: 1}";
    // `/slow-health` is an ordinary path to the scripted origin: it answers after the delay.
    a.set_delay(Duration::from_millis(500));
    let proxy = Ringway::start(&yaml(1, check, &[&a, &b]));
    let deadline = Instant::now() + Duration::from_secs(3);
    while !proxy
        .stderr_text()
        .contains("failed 1 health checks in a row")
    {
        assert!(Instant::now() < deadline, "{}", proxy.stderr_text());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(proxy.stderr_text().contains("no answer within"));
    // The change is logged as it is sent; the worker applies it on its next tick (10 ms).
    std::thread::sleep(Duration::from_millis(30));
    // While `a` is out, its slowness costs nothing.
    let started = Instant::now();
    let names = spread(&proxy, 10);
    assert_eq!(names.get("b"), Some(&10), "{names:?}");
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[test]
fn when_every_target_fails_its_checks_requests_still_go_to_them() {
    let a = Scripted::start("a");
    a.set_health(500);
    let proxy = Ringway::start(&yaml(1, FAST_CHECKS, &[&a]));
    wait_checks(&a, 0, 3);
    std::thread::sleep(Duration::from_millis(30));
    // A check can be wrong; a try is better than a certain 503.
    assert_eq!(spread(&proxy, 3).get("a"), Some(&3));
}
