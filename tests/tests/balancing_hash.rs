//! Consistent hashing and least-request balancing through the real binary.

mod scripted;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ringway_tests::{closed_port, Client, Ringway};
use scripted::Scripted;

fn yaml(workers: usize, balance: &str, origins: &[&Scripted]) -> String {
    let mut yaml = format!(
        "workers: {workers}\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: app\n{balance}    targets:\n"
    );
    for o in origins {
        yaml.push_str(&format!("      - url: {}\n", o.url()));
    }
    yaml.push_str("routes:\n  - backend: app\n");
    yaml
}

/// The origin that answers `headers`, on a new connection (so requests spread over workers).
fn owner(proxy: &Ringway, headers: &[(&str, &str)]) -> String {
    let response = Client::connect(proxy.addr()).request("GET", "/name", headers, b"");
    assert_eq!(response.status, 200, "{}", response.text());
    response.text()
}

#[test]
fn consistent_hash_by_header_sends_each_value_to_one_target_on_every_worker() {
    let origins = [
        Scripted::start("a"),
        Scripted::start("b"),
        Scripted::start("c"),
    ];
    let refs: Vec<&Scripted> = origins.iter().collect();
    let balance = "    balance: consistent_hash\n    hash_on: {header: X-User}\n";
    let proxy = Ringway::start(&yaml(2, balance, &refs));
    let mut owners = HashMap::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let first = owner(&proxy, &[("X-User", &user)]);
        for _ in 0..4 {
            assert_eq!(owner(&proxy, &[("X-User", &user)]), first, "{user} moved");
        }
        owners.insert(user, first);
    }
    let used: HashSet<&String> = owners.values().collect();
    assert!(used.len() >= 2, "30 users all hashed to {used:?}");
    // Without the header, requests are spread.
    let spread: HashSet<String> = (0..9).map(|_| owner(&proxy, &[])).collect();
    assert!(spread.len() >= 2, "{spread:?}");
}

#[test]
fn consistent_hash_by_cookie_keeps_sessions_and_walks_past_a_dead_target() {
    let a = Scripted::start("a");
    let b = Scripted::start("b");
    let dead = closed_port();
    let balance = "    balance: consistent_hash\n    hash_on: {cookie: session}\n";
    let mut config = yaml(1, balance, &[&a, &b]);
    config = config.replace("routes:", &format!("      - url: http://{dead}\nroutes:"));
    let proxy = Ringway::start(&config);
    let mut owners = HashSet::new();
    for i in 0..40 {
        let cookie = format!("theme=dark; session=s{i}");
        // The sessions the dead target owns move on along the ring, and stay where they land.
        let first = owner(&proxy, &[("Cookie", &cookie)]);
        for _ in 0..3 {
            assert_eq!(
                owner(&proxy, &[("Cookie", &cookie)]),
                first,
                "session s{i} moved"
            );
        }
        owners.insert(first);
    }
    assert_eq!(owners.len(), 2, "{owners:?}");
}

#[test]
fn least_request_sends_to_the_idle_target_while_the_other_is_slow() {
    let slow = Scripted::start("slow");
    let fast = Scripted::start("fast");
    slow.set_delay(Duration::from_millis(800));
    let proxy = Ringway::start(&yaml(1, "    balance: least_request\n", &[&slow, &fast]));
    // With nothing in flight the first target is picked: `slow`, which then holds the request.
    let mut held = Client::connect(proxy.addr());
    held.send_request("GET", "/name", &[], b"");
    let deadline = Instant::now() + Duration::from_secs(2);
    while slow.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the first request did not reach slow"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut client = Client::connect(proxy.addr());
    let started = Instant::now();
    let names: Vec<String> = (0..10).map(|_| client.get("/name").text()).collect();
    assert!(names.iter().all(|n| n == "fast"), "{names:?}");
    assert!(started.elapsed() < Duration::from_millis(700));
    assert_eq!(held.read_response().text(), "slow");
    assert_eq!(slow.requests(), 1);
}
