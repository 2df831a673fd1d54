//! Process lifecycle through the real binary: graceful drain on SIGTERM, several workers,
//! the epoll fallback, environment substitution and the shipped example config.

use std::thread;
use std::time::{Duration, Instant};

use ringway_tests::{forward_all_config, parse_worker_counts, Client, Origin, Ringway, HELLO};

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let origin = Origin::start("slow");
    let mut proxy = Ringway::start(&forward_all_config(
        2,
        &[&origin.url()],
        "timeouts:\n  drain: 5s\n",
    ));
    let addr = proxy.addr();
    let clients: Vec<_> = (0..20)
        .map(|_| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                client.send_request("GET", "/delay/500", &[], b"");
                client.try_read_response()
            })
        })
        .collect();
    // All 20 are at the origin, so all 20 are in flight in the proxy.
    origin.wait_requests(20, Duration::from_secs(5));
    let signalled = Instant::now();
    proxy.sigterm();
    for (i, client) in clients.into_iter().enumerate() {
        let response = client
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("in-flight request {i} failed during drain: {e}"));
        assert_eq!(
            response.status,
            200,
            "in-flight request {i}: {}",
            response.text()
        );
        assert_eq!(response.text(), "delayed 500ms\n");
    }
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit status {status}:\n{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "drain took {:?}",
        signalled.elapsed()
    );
    assert!(stderr.contains("ringway: stopped"), "{stderr}");
}

#[test]
fn sigterm_on_an_idle_proxy_exits_promptly() {
    let origin = Origin::start("a");
    let mut proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    // An idle keep-alive client must not hold the drain open.
    let mut idle = Client::connect(proxy.addr());
    assert_eq!(idle.get("/hello").status, 200);
    let signalled = Instant::now();
    proxy.sigterm();
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit status {status}:\n{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "an idle proxy took {:?} to stop",
        signalled.elapsed()
    );
    assert!(
        stderr.contains("ringway: worker 0 served 1 requests"),
        "{stderr}"
    );
    assert!(stderr.contains("ringway: stopped"), "{stderr}");
}

#[test]
fn two_workers_both_serve_connections() {
    let origin = Origin::start("a");
    let mut proxy = Ringway::start(&forward_all_config(2, &[&origin.url()], ""));
    assert!(
        proxy.stderr_text().contains("ringway: ready (2 workers)"),
        "{}",
        proxy.stderr_text()
    );
    for i in 0..100 {
        let response = Client::connect(proxy.addr()).get("/hello");
        assert_eq!(response.status, 200, "request {i}");
    }
    proxy.sigterm();
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit status {status}:\n{stderr}");
    let counts = parse_worker_counts(&stderr);
    let w0 = counts.get(&0).copied().unwrap_or(0);
    let w1 = counts.get(&1).copied().unwrap_or(0);
    assert!(
        w0 > 0 && w1 > 0,
        "requests per worker {counts:?}:\n{stderr}"
    );
    assert_eq!(w0 + w1, 100, "requests per worker {counts:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    let last_worker_line = lines
        .iter()
        .rposition(|l| l.starts_with("ringway: worker "))
        .unwrap();
    let stopped_line = lines.iter().position(|l| *l == "ringway: stopped");
    assert!(
        stopped_line.is_some_and(|s| s > last_worker_line),
        "`ringway: stopped` must come last:\n{stderr}"
    );
}

#[test]
fn workers_are_pinned_to_the_configured_cpus() {
    let origin = Origin::start("a");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let last = cpus - 1;
    let proxy = Ringway::start(&forward_all_config(
        3,
        &[&origin.url()],
        &format!("cpus: \"{last}\"\n"),
    ));
    assert_eq!(Client::connect(proxy.addr()).get("/hello").status, 200);
    let stderr = proxy.stderr_text();
    for worker in 0..3 {
        assert!(
            stderr.contains(&format!("worker {worker} on CPU {last} uses ")),
            "worker {worker} not reported on CPU {last}:\n{stderr}"
        );
    }
}

#[test]
fn smoke_with_the_legacy_driver() {
    let origin = Origin::start("a");
    let proxy = Ringway::start_with_env(
        &forward_all_config(1, &[&origin.url()], ""),
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
    );
    let mut client = Client::connect(proxy.addr());
    for _ in 0..5 {
        let response = client.get("/hello");
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.body, HELLO);
    }
    let big = client.get("/bytes/1000000");
    assert_eq!(big.body.len(), 1_000_000);
    // The driver each worker got is logged; none may claim io_uring under the override.
    let stderr = proxy.stderr_text();
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("worker") && l.contains("io_uring")),
        "a worker used io_uring despite MONOIO_FORCE_LEGACY_DRIVER=1:\n{stderr}"
    );
}

#[test]
fn forced_legacy_driver_with_required_io_uring_refuses_to_start() {
    let origin = Origin::start("a");
    let dir = ringway_tests::TempDir::new();
    let config = dir.write(
        "uring.yaml",
        &forward_all_config(1, &[&origin.url()], "runtime:\n  driver: io_uring\n"),
    );
    let output = ringway_tests::run_ringway(
        &["run", "--config", config.to_str().unwrap()],
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "driver: io_uring started under MONOIO_FORCE_LEGACY_DRIVER=1:\n{stderr}"
    );
    assert!(!stderr.contains("ringway: ready"), "{stderr}");
}

#[test]
fn epoll_driver_from_config_serves() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "runtime:\n  driver: epoll\n",
    ));
    assert_eq!(Client::connect(proxy.addr()).get("/hello").body, HELLO);
}

#[test]
fn environment_substitution_through_the_binary() {
    let origin = Origin::start("env");
    let yaml = "workers: ${RW_TEST_WORKERS:-1}\n\
                listeners:\n  - name: ${RW_TEST_LISTENER_NAME:-from-default}\n    address: ${RW_TEST_LISTEN}\n\
                backends:\n  - name: origin\n    targets:\n      - url: ${RW_TEST_BACKEND}\n\
                routes:\n\
                \x20 - matches: [{ path: { type: exact, value: /literal } }]\n\
                \x20   return_response: { status: 200, body: \"$${NOT_SUBSTITUTED}\" }\n\
                \x20 - matches: [{ path: { type: exact, value: /default } }]\n\
                \x20   return_response: { status: 200, body: \"${RW_TEST_UNSET_BODY:-fallback body}\" }\n\
                \x20 - matches: [{ path: { type: exact, value: /empty } }]\n\
                \x20   return_response: { status: 200, body: \"${RW_TEST_EMPTY:-empty means default}\" }\n\
                \x20 - backend: origin\n";
    let url = origin.url();
    let proxy = Ringway::start_with_env(
        yaml,
        &[
            ("RW_TEST_LISTEN", "127.0.0.1:0"),
            ("RW_TEST_BACKEND", &url),
            ("RW_TEST_EMPTY", ""),
        ],
    );
    // The default applied to the listener name.
    let addr = proxy.addr_of("from-default");
    let mut client = Client::connect(addr);
    assert_eq!(client.get("/hello").body, HELLO);
    assert_eq!(client.get("/literal").text(), "${NOT_SUBSTITUTED}");
    assert_eq!(client.get("/default").text(), "fallback body");
    assert_eq!(client.get("/empty").text(), "empty means default");
}

#[test]
fn example_basic_proxy_serves() {
    let origin = Origin::start("example");
    let url = origin.url();
    let proxy = Ringway::start_file(
        "examples/basic-proxy.yaml",
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "1"),
            ("RINGWAY_BACKEND", &url),
        ],
    );
    let response = Client::connect(proxy.addr()).get("/hello");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.body, HELLO);
    assert_eq!(origin.requests(), 1);
}

#[test]
fn two_listeners_each_report_their_address() {
    let origin = Origin::start("a");
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - name: first\n    address: 127.0.0.1:0\n  - name: second\n    address: 127.0.0.1:0\n\
         backends:\n  - name: origin\n    targets:\n      - url: {}\n\
         routes:\n  - backend: origin\n",
        origin.url()
    );
    let proxy = Ringway::start(&yaml);
    let first = proxy.addr_of("first");
    let second = proxy.addr_of("second");
    assert_ne!(first, second);
    assert_eq!(Client::connect(first).get("/hello").body, HELLO);
    assert_eq!(Client::connect(second).get("/hello").body, HELLO);
}

#[test]
fn runtime_settings_all_serve() {
    let origin = Origin::start("a");
    let settings = [
        "runtime:\n  ring_flags: none\n",
        "runtime:\n  ring_flags: defer_taskrun\n",
        "runtime:\n  ring_flags: coop_taskrun\n  ring_entries: 2\n",
        "runtime:\n  driver: auto\n  ring_entries: 32768\n",
        "cpus: \"0\"\n",
    ];
    for extra in settings {
        let proxy = Ringway::start(&forward_all_config(2, &[&origin.url()], extra));
        let mut client = Client::connect(proxy.addr());
        for _ in 0..3 {
            let response = client.get("/hello");
            assert_eq!(response.status, 200, "with {extra:?}: {}", response.text());
            assert_eq!(response.body, HELLO, "with {extra:?}");
        }
    }
}

#[test]
fn ipv6_loopback_listener_serves() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let origin = Origin::start("a");
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - name: v6\n    address: \"[::1]:0\"\n\
         backends:\n  - name: origin\n    targets:\n      - url: {}\n\
         routes:\n  - backend: origin\n",
        origin.url()
    );
    let proxy = Ringway::start(&yaml);
    let addr = proxy.addr_of("v6");
    assert!(addr.is_ipv6(), "{addr}");
    let response = Client::connect(addr).get("/hello");
    assert_eq!(response.body, HELLO);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("::1"));
}

#[test]
fn unnamed_listeners_get_default_names() {
    let origin = Origin::start("a");
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: origin\n    targets:\n      - url: {}\n\
         routes:\n  - backend: origin\n",
        origin.url()
    );
    let proxy = Ringway::start(&yaml);
    let names: Vec<&str> = proxy.listeners().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_ne!(names[0], names[1]);
    for name in &names {
        let number = name.strip_prefix("listener-");
        assert!(
            number.is_some_and(|n| n.parse::<usize>().is_ok()),
            "default listener name {name:?} is not listener-N"
        );
    }
    for (_, addr) in proxy.listeners() {
        assert_eq!(Client::connect(*addr).get("/hello").body, HELLO);
    }
}
