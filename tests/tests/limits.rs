//! rate-limit-by-key, quota-by-key and limit-concurrency through the real binary: statuses,
//! headers and messages as APIM gives them, node-wide accuracy across two workers, shadow
//! mode, increment conditions, the bounded key table under a flood of keys, and quota
//! counters that survive a restart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ringway_tests::{json_string_field, parse_worker_counts, Client, Origin, Ringway, TempDir};

fn one_backend(origin: &Origin, workers: usize, policies: &str) -> String {
    format!(
        "workers: {workers}\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - {{ name: b, targets: [{{ url: {} }}] }}\n\
         routes:\n  - {{ name: all, backend: b }}\n\
         policies:\n{policies}",
        origin.url()
    )
}

fn header_num(r: &ringway_tests::Response, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

#[test]
fn rate_limit_refuses_with_429_retry_after_and_ratelimit_headers() {
    let origin = Origin::start("o");
    let proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - rate-limit-by-key: { calls: 3, renewal_period: 10s, counter_key: \"{header:X-Key}\" }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    for left in [2, 1, 0] {
        let r = c.request("GET", "/hello", &[("X-Key", "a")], b"");
        assert_eq!(r.status, 200);
        assert_eq!(header_num(&r, "ratelimit-limit"), 3);
        assert_eq!(header_num(&r, "ratelimit-remaining"), left);
        let reset = header_num(&r, "ratelimit-reset");
        assert!((1..=11).contains(&reset), "reset {reset}");
    }
    let before = origin.requests();
    let r = c.request("GET", "/hello", &[("X-Key", "a")], b"");
    assert_eq!(r.status, 429);
    assert_eq!(r.reason, "Too Many Requests");
    let retry = header_num(&r, "retry-after");
    assert!((1..=11).contains(&retry), "Retry-After {retry}");
    assert_eq!(header_num(&r, "ratelimit-remaining"), 0);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let message = json_string_field(&r.body, "message").unwrap();
    assert_eq!(
        message,
        format!("Rate limit is exceeded. Try again in {retry} seconds.")
    );
    assert!(r.text().contains("\"statusCode\": 429"), "{}", r.text());
    assert_eq!(
        origin.requests(),
        before,
        "a refused request never reaches the backend"
    );
    // Another key has its own counter.
    assert_eq!(
        c.request("GET", "/hello", &[("X-Key", "b")], b"").status,
        200
    );
}

#[test]
fn the_window_slides() {
    let origin = Origin::start("o");
    let proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - rate-limit-by-key: { calls: 4, renewal_period: 3s, counter_key: \"{ip}\" }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    let start = Instant::now();
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 200);
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 429);
    // At 3.5 s the first two have left the window (they count for at most 3 s + 3s/15);
    // the last two have not: exactly two more fit.
    let wait = Duration::from_millis(3500).saturating_sub(start.elapsed());
    thread::sleep(wait);
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 429);
}

/// `examples/rate-limit.yaml` with two workers: 100 calls per 10 s per client address, hit by
/// 300 requests on 30 connections that both cores serve. Between 100 minus the documented
/// bound ((workers - 1) x lease = 1 x 2) and 100 are admitted, never more.
#[test]
fn node_wide_limit_is_exact_within_the_lease_bound_across_two_workers() {
    let origin = Origin::start("o");
    let backend = origin.url();
    let mut proxy = Ringway::start_file(
        "examples/rate-limit.yaml",
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "2"),
            ("RINGWAY_BACKEND", &backend),
        ],
    );
    let addr = proxy.addr();
    let admitted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..30)
        .map(|_| {
            let (admitted, refused) = (Arc::clone(&admitted), Arc::clone(&refused));
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..10 {
                    match c.get("/hello").status {
                        200 => admitted.fetch_add(1, Ordering::SeqCst),
                        429 => refused.fetch_add(1, Ordering::SeqCst),
                        s => panic!("unexpected status {s}"),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let admitted = admitted.load(Ordering::SeqCst);
    assert_eq!(admitted + refused.load(Ordering::SeqCst), 300);
    assert!(
        (98..=100).contains(&admitted),
        "admitted {admitted} of a limit of 100"
    );
    assert_eq!(origin.requests(), admitted);
    proxy.sigterm();
    let (status, out) = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{out}");
    let counts = parse_worker_counts(&out);
    assert!(
        counts.len() == 2 && counts.values().all(|&n| n > 0),
        "both workers must have served: {counts:?}"
    );
}

#[test]
fn increment_condition_counts_only_matching_answers() {
    let origin = Origin::start("o");
    let proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - rate-limit-by-key: { calls: 2, renewal_period: 30s, counter_key: \"{ip}\", increment_condition: \"200-299\" }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    for _ in 0..5 {
        assert_eq!(c.get("/status/500").status, 500, "failures do not count");
    }
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 429);
}

#[test]
fn shadow_mode_counts_and_logs_but_never_refuses() {
    let origin = Origin::start("o");
    let mut proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - rate-limit-by-key: { calls: 2, renewal_period: 30s, counter_key: \"{ip}\", shadow: true }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    for i in 0..5 {
        let r = c.get("/hello");
        assert_eq!(r.status, 200);
        let remaining = header_num(&r, "ratelimit-remaining");
        assert_eq!(remaining, 1u64.saturating_sub(i), "request {i}");
    }
    proxy.wait_for_output(Duration::from_secs(5), "a shadow-mode log line", |out| {
        out.contains("would refuse with 429 (shadow mode)")
    });
}

#[test]
fn quota_by_calls_answers_403_until_the_period_ends() {
    let origin = Origin::start("o");
    let proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - quota-by-key: { calls: 3, renewal_period: 1h, counter_key: \"{ip}\" }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    for _ in 0..3 {
        assert_eq!(c.get("/hello").status, 200);
    }
    let r = c.get("/hello");
    assert_eq!(r.status, 403);
    let retry = header_num(&r, "retry-after");
    assert!((1..=3600).contains(&retry));
    let message = json_string_field(&r.body, "message").unwrap();
    assert!(
        message.starts_with("Out of call volume quota. Quota will be replenished in "),
        "{message}"
    );
}

#[test]
fn quota_increment_condition_counts_only_matching_answers() {
    let origin = Origin::start("o");
    let proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - quota-by-key: { calls: 2, renewal_period: 1h, counter_key: \"{ip}\", increment_condition: [\"200-299\"] }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    for _ in 0..4 {
        assert_eq!(c.get("/status/503").status, 503, "failures do not count");
    }
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 403);
}

#[test]
fn quota_periods_align_to_first_period_start() {
    let origin = Origin::start("o");
    // Periods of 5 s starting at the epoch: the period ends at the next multiple of 5 s.
    let proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - quota-by-key: { calls: 1, renewal_period: 5s, counter_key: \"{ip}\", first_period_start: \"1970-01-01T00:00:00Z\" }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    // The first call of a period is admitted (if a period ended just now, the next is).
    if c.get("/hello").status == 403 {
        assert_eq!(c.get("/hello").status, 200);
    }
    let r = c.get("/hello");
    if r.status == 200 {
        // A period boundary passed between the two requests; the next one must be refused.
        assert_eq!(c.get("/hello").status, 403);
        return;
    }
    assert_eq!(r.status, 403);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let to_boundary = 5.0 - now % 5.0;
    let retry = header_num(&r, "retry-after") as f64;
    assert!(
        (retry - to_boundary).abs() <= 1.5,
        "Retry-After {retry} but the period ends in {to_boundary:.1}s"
    );
    thread::sleep(Duration::from_secs_f64(to_boundary + 0.3));
    assert_eq!(c.get("/hello").status, 200);
}

#[test]
fn bandwidth_quota_counts_bytes_after_the_exchange() {
    let origin = Origin::start("o");
    let proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - quota-by-key: { bandwidth: 4KiB, renewal_period: 1h, counter_key: \"{ip}\" }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/bytes/3000").status, 200);
    assert_eq!(
        c.get("/bytes/3000").status,
        200,
        "under 4 KiB when it started"
    );
    thread::sleep(Duration::from_millis(300));
    let r = c.get("/bytes/10");
    assert_eq!(r.status, 403);
    let message = json_string_field(&r.body, "message").unwrap();
    assert!(message.starts_with("Out of bandwidth quota."), "{message}");
}

/// Quota counters survive a restart: saved on drain, and every `persist_interval` (a crash
/// loses at most that much).
#[test]
fn quota_counters_survive_restarts() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let state = dir.path().join("quota.state");
    let yaml = one_backend(
        &origin,
        2,
        "  inbound:\n    - quota-by-key: { name: daily, calls: 6, renewal_period: 24h, counter_key: \"{ip}\" }\n",
    ) + &format!(
        "state:\n  path: {}\n  persist_interval: 200ms\n",
        state.display()
    );
    let config = dir.write("gateway.yaml", &yaml);
    let start = || {
        let mut p = Ringway::spawn(
            &["run".as_ref(), "--config".as_ref(), config.as_os_str()],
            &[],
            None,
        );
        p.wait_ready(Duration::from_secs(10));
        p
    };

    // Two calls, then a clean stop.
    let mut proxy = start();
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 200);
    drop(c);
    proxy.sigterm();
    let (status, out) = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{out}");
    assert!(state.exists(), "the state file is written on drain");

    // Two more, then a crash after the persist interval.
    let mut proxy = start();
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 200);
    thread::sleep(Duration::from_millis(800));
    proxy.signal(libc::SIGKILL);
    let _ = proxy.wait_exit(Duration::from_secs(10));

    // Two left of six.
    let proxy = start();
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/hello").status, 403);
}

#[test]
fn limit_concurrency_refuses_at_once_when_max_count_are_in_flight() {
    let origin = Origin::start("o");
    let proxy = Ringway::start(&one_backend(
        &origin,
        2,
        "  inbound:\n    - limit-concurrency: { key: \"{ip}\", max_count: 2 }\n",
    ));
    let addr = proxy.addr();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.get("/delay/1500").status
            })
        })
        .collect();
    origin.wait_requests(2, Duration::from_secs(5));
    let mut c = Client::connect(addr);
    let t = Instant::now();
    let r = c.get("/hello");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "refused at once, not queued"
    );
    for s in slow {
        assert_eq!(s.join().unwrap(), 200);
    }
    assert_eq!(
        c.get("/hello").status,
        200,
        "slots come back when requests end"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One new key per request: the per-core key table stays bounded (idle keys evicted), and a
/// key pushed out of it still cannot pass its limit (its calls stay counted node-wide).
#[test]
fn a_flood_of_keys_costs_bounded_memory_and_evicted_keys_keep_their_limit() {
    let origin = Origin::start("o");
    let proxy = Ringway::start(&one_backend(
        &origin,
        1,
        "  inbound:\n    - rate-limit-by-key: { calls: 5, renewal_period: 60s, counter_key: \"{header:X-Key}\", max_keys: 1024 }\n",
    ));
    let mut c = Client::connect(proxy.addr());
    for _ in 0..5 {
        assert_eq!(
            c.request("GET", "/x", &[("X-Key", "victim")], b"").status,
            200
        );
    }
    assert_eq!(
        c.request("GET", "/x", &[("X-Key", "victim")], b"").status,
        429
    );

    // Keys that land on one line of the node-wide table share its budget (never more than
    // the limit, sometimes less), so a flood this dense may see some 429s: only the
    // statuses' kind is checked here.
    let flood = |c: &mut Client, from: usize, n: usize| {
        for i in from..from + n {
            let key = format!("flood-{i}");
            let r = c.request("GET", "/x", &[("X-Key", &key)], b"");
            assert!(r.status == 200 || r.status == 429, "status {}", r.status);
        }
    };
    flood(&mut c, 0, 3_000);
    let warm = rss_kib(proxy.pid());
    flood(&mut c, 3_000, 30_000);
    let after = rss_kib(proxy.pid());
    // 1,024 entries of a few dozen bytes: the table cannot grow past its bound however many
    // keys come. (Allow for allocator noise.)
    assert!(
        after <= warm + 1024,
        "RSS grew from {warm} KiB to {after} KiB over 30,000 new keys"
    );
    assert_eq!(
        c.request("GET", "/x", &[("X-Key", "victim")], b"").status,
        429,
        "an evicted key must not be admitted past its limit"
    );
}
