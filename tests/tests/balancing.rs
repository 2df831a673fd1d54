//! Upstream pooling and balancing through the real binary: connection reuse, round-robin,
//! weighted (smooth) and priority tiers.

use std::collections::HashMap;

use ringway_tests::{
    assert_hello, closed_port, forward_all_config, proxy_to, Client, Origin, Ringway,
};

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
