//! Cluster mode through a real Redis: two real Ringway nodes share one rate limit; Redis goes
//! away and comes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringway_tests::redis::RedisServer;
use ringway_tests::{workspace_dir, Client, Origin, Ringway, TempDir};

const TOKEN: &str = "cluster-admin-token-0123456789";

fn node(origin: &Origin, redis: &RedisServer, cluster: &str, calls: u64, extra: &str) -> Ringway {
    Ringway::start(&format!(
        "workers: 2\nadmin: {{address: 127.0.0.1:0, token: {TOKEN}}}\nlisteners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: [{{url: {}}}]}}]\nroutes:\n  - name: all\n    backend: b\n    policies:\n      inbound:\n        - rate-limit-by-key: {{calls: {calls}, renewal_period: 10s, counter_key: everyone}}\ncluster:\n  name: {cluster}\n  redis: {}\n{extra}",
        origin.url(),
        redis.url()
    ))
}

fn metrics(addr: SocketAddr) -> String {
    let auth = format!("Bearer {TOKEN}");
    Client::connect(addr)
        .request("GET", "/metrics", &[("Authorization", &auth)], b"")
        .text()
}

/// Sends `n` requests spread over `nodes` (several connections each): (admitted, refused).
fn spread(nodes: &[SocketAddr], n: usize) -> (usize, usize) {
    let mut clients: Vec<Client> = nodes
        .iter()
        .flat_map(|a| (0..3).map(|_| Client::connect(*a)))
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for i in 0..n {
        let k = i % clients.len();
        let r = clients[k].get("/hello");
        match r.status {
            200 => ok += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}: {}", r.text()),
        }
        if r.closes() {
            clients[k] = Client::connect(nodes[k / 3]);
        }
    }
    (ok, refused)
}

#[test]
fn two_nodes_share_one_limit_within_the_stated_bound() {
    let origin = Origin::start("app");
    let redis = RedisServer::start();
    let a = node(&origin, &redis, "bound", 200, "");
    let b = node(&origin, &redis, "bound", 200, "");
    let (ok, refused) = spread(&[a.addr(), b.addr()], 320);
    println!("cluster limit 200 over two nodes: {ok} admitted, {refused} refused");
    // Never more than the limit; at least the limit less what two nodes may hold unspent
    // (a grant is at most limit / 20: 10 tokens a node).
    assert!(ok <= 200, "admitted {ok} over a cluster limit of 200");
    assert!(
        ok >= 180,
        "admitted only {ok} of 200 (bound: 2 nodes x 10 tokens)"
    );
    assert_eq!(ok + refused, 320);
    // Both nodes served part of it.
    assert!(a.stderr_text().contains("ready") && b.stderr_text().contains("ready"));
    let keys = redis.cli(&["KEYS", "bound:rl:*"]);
    assert_eq!(
        keys.lines().count(),
        1,
        "one Redis key for the one limit key: {keys}"
    );
}

#[test]
fn a_node_falls_back_while_redis_is_away_and_resumes_when_it_returns() {
    let origin = Origin::start("app");
    let mut redis = RedisServer::start();
    let port = redis.port;
    let mut rw = node(
        &origin,
        &redis,
        "fallback",
        1_000,
        "  command_timeout: 200ms\n",
    );
    let admin = rw.admin_addr();
    let mut c = Client::connect(rw.addr());
    for _ in 0..20 {
        assert_eq!(c.get("/hello").status, 200);
    }
    redis.stop();
    // Requests keep being served (node-wide limits meanwhile), none fails.
    for _ in 0..50 {
        let r = c.get("/hello");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    rw.wait_for_output(Duration::from_secs(10), "the fallback warning", |s| {
        s.contains("is unavailable")
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metrics(admin).contains("ringway_cluster_redis_up 0\n") {
        assert!(Instant::now() < deadline, "{}", metrics(admin));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Redis returns on the same port: the node resumes cluster-wide limits.
    let redis = RedisServer::start_on(port);
    rw.wait_for_output(Duration::from_secs(10), "the recovery line", |s| {
        s.contains("Redis answers again")
    });
    for _ in 0..20 {
        assert_eq!(c.get("/hello").status, 200);
    }
    let text = metrics(admin);
    assert!(text.contains("ringway_cluster_redis_up 1\n"), "{text}");
    assert!(
        text.contains("ringway_cluster_redis_unavailable_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("ringway_cluster_redis_recovered_total 1\n"),
        "{text}"
    );
    assert!(
        !text.contains("ringway_cluster_fallbacks_total 0\n"),
        "{text}"
    );
    assert!(
        redis.cli(&["KEYS", "fallback:rl:*"]).lines().count() == 1,
        "leases resumed"
    );
}

#[test]
fn the_cluster_example_limits_every_client_across_nodes() {
    let origin = Origin::start("app");
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let example = workspace_dir().join("examples/cluster.yaml");
    let backend = origin.url();
    let url = redis.url();
    let env = [
        ("RINGWAY_LISTEN", "127.0.0.1:0"),
        ("RINGWAY_WORKERS", "2"),
        ("RINGWAY_BACKEND", backend.as_str()),
        ("RINGWAY_RATE_CALLS", "40"),
        ("RINGWAY_RATE_PERIOD", "10s"),
        ("RINGWAY_REDIS", url.as_str()),
        ("RINGWAY_CLUSTER", "example"),
    ];
    let a = Ringway::start_file(example.to_str().unwrap(), &env);
    let b = Ringway::start_file(example.to_str().unwrap(), &env);
    let (ok, refused) = spread(&[a.addr(), b.addr()], 60);
    assert!(ok <= 40, "admitted {ok}");
    assert!(ok >= 36, "admitted only {ok}");
    assert_eq!(ok + refused, 60);
    drop(dir);
}

#[test]
fn a_quota_lives_in_redis_and_survives_restarting_every_node() {
    let origin = Origin::start("app");
    let redis = RedisServer::start();
    let config = format!(
        "workers: 2\nlisteners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: [{{url: {}}}]}}]\nroutes:\n  - name: all\n    backend: b\n    policies:\n      inbound:\n        - quota-by-key: {{calls: 10, renewal_period: 1h, counter_key: everyone}}\ncluster:\n  name: quota\n  redis: {}\n",
        origin.url(),
        redis.url()
    );
    let count = |nodes: &[&Ringway], n: usize| {
        let mut ok = 0;
        for i in 0..n {
            let mut c = Client::connect(nodes[i % nodes.len()].addr());
            match c.get("/hello").status {
                200 => ok += 1,
                403 => {}
                other => panic!("unexpected {other}"),
            }
        }
        ok
    };
    let a = Ringway::start(&config);
    let b = Ringway::start(&config);
    assert_eq!(count(&[&a, &b], 7), 7);
    drop(a);
    drop(b);
    // Both nodes restarted: the 3 calls left are all that is left.
    let a = Ringway::start(&config);
    let b = Ringway::start(&config);
    assert_eq!(
        count(&[&a, &b], 8),
        3,
        "the quota kept its count across restarts"
    );
    let used = redis.cli(&[
        "EVAL",
        "local k = redis.call('KEYS', 'quota:q:*')[1]; return redis.call('HGET', k, 'calls')",
        "0",
    ]);
    assert_eq!(used.trim(), "10", "{used}");
}

fn limited_node(origin: &Origin, redis_url: &str, cluster: &str, calls: u64, key: &str) -> Ringway {
    Ringway::start(&format!(
        "workers: 2\nlisteners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: [{{url: {}}}]}}]\nroutes:\n  - name: all\n    backend: b\n    policies:\n      inbound:\n        - rate-limit-by-key: {{calls: {calls}, renewal_period: 60s, counter_key: \"{key}\"}}\ncluster:\n  name: {cluster}\n  redis: {redis_url}\n  command_timeout: 300ms\n",
        origin.url()
    ))
}

#[test]
fn limits_keep_working_after_a_sentinel_fail_over() {
    use ringway_tests::redis::{wait_until, SentinelGroup};
    let origin = Origin::start("app");
    let mut group = SentinelGroup::start();
    let rw = limited_node(&origin, &group.url(), "sentinel", 60, "everyone");
    let mut c = Client::connect(rw.addr());
    for _ in 0..20 {
        assert_eq!(c.get("/hello").status, 200);
    }
    let old = group.master.port;
    wait_until(
        Duration::from_secs(10),
        "the count to reach the replica",
        || {
            group
                .replica
                .cli(&["KEYS", "sentinel:rl:*"])
                .lines()
                .count()
                == 1
        },
    );
    group.master.stop();
    wait_until(Duration::from_secs(30), "the fail-over", || {
        let now = group.master_port();
        now != 0 && now != old
    });
    // The node notices on its next lease, falls back meanwhile, and finds the new master.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rw.stderr_text().contains("Redis answers again") {
        assert!(Instant::now() < deadline, "{}", rw.stderr_text());
        let _ = c.get("/hello");
        std::thread::sleep(Duration::from_millis(200));
    }
    let fallback: usize = rw.stderr_text().matches("is unavailable").count();
    assert_eq!(fallback, 1, "one warning per state change");
    // Cluster-wide counting resumes on the new master: what is left of the 60 (less what the
    // fall-back admitted meanwhile is not counted there), then refusals.
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..80 {
        match c.get("/hello").status {
            200 => ok += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        ok <= 40,
        "admitted {ok} after the fail-over, of the 40 left"
    );
    assert!(refused >= 40, "refused only {refused}");
    drop(rw);
    drop(group);
}

#[test]
fn a_limit_keyed_across_many_keys_holds_its_bound_on_a_redis_cluster() {
    use ringway_tests::redis::RedisCluster;
    let origin = Origin::start("app");
    let redis = RedisCluster::start(3);
    let a = limited_node(&origin, &redis.url(), "sharded", 20, "{header:x-client}");
    let b = limited_node(&origin, &redis.url(), "sharded", 20, "{header:x-client}");
    let nodes = [a.addr(), b.addr()];
    let mut clients: Vec<Client> = nodes.iter().map(|n| Client::connect(*n)).collect();
    for k in 0..30 {
        let client_id = format!("client-{k}");
        let mut ok = 0;
        for i in 0..26 {
            let c = &mut clients[i % 2];
            let r = c.request("GET", "/hello", &[("X-Client", &client_id)], b"");
            match r.status {
                200 => ok += 1,
                429 => {}
                other => panic!("unexpected {other}"),
            }
        }
        // A grant is at most 20 / 20 = 1 token: two nodes hold at most 2 unspent.
        assert!(ok <= 20, "{client_id}: admitted {ok} of 20");
        assert!(ok >= 18, "{client_id}: admitted only {ok} of 20");
    }
    // The keys are spread over the three masters.
    for node in &redis.nodes {
        let n: usize = node.cli(&["DBSIZE"]).trim().parse().unwrap_or(0);
        assert!(n > 0, "a master with no limit keys");
    }
}

#[test]
fn the_shared_cache_tier_answers_another_nodes_miss() {
    let origin = Origin::start("app");
    let redis = RedisServer::start();
    let config = format!(
        "workers: 2\nlisteners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: [{{url: {}}}]}}]\nroutes:\n  - name: all\n    backend: b\n    policies:\n      inbound:\n        - cache-lookup: {{}}\n      outbound:\n        - cache-store: {{duration: 60s}}\ncluster:\n  name: tier\n  redis: {}\n  cache: {{enabled: true, max_body: 1KiB}}\n",
        origin.url(),
        redis.url()
    );
    let a = Ringway::start(&config);
    let b = Ringway::start(&config);
    let first = Client::connect(a.addr()).get("/hello");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let fetched = origin.requests();
    // Stored in Redis in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cli(&["KEYS", "tier:c:*"]).lines().count() == 0 {
        assert!(Instant::now() < deadline, "nothing stored in the tier");
        std::thread::sleep(Duration::from_millis(20));
    }
    let from_b = Client::connect(b.addr()).get("/hello");
    assert_eq!(from_b.status, 200);
    assert_eq!(from_b.text(), first.text());
    assert_eq!(origin.requests(), fetched, "node B answered from the tier");
    assert_eq!(from_b.header("x-cache"), Some("HIT"));
    // A body over the tier's size stays local: node B fetches it itself.
    let big = Client::connect(a.addr()).get("/bytes/4096");
    assert_eq!(big.status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let before = origin.requests();
    assert_eq!(Client::connect(b.addr()).get("/bytes/4096").status, 200);
    assert_eq!(origin.requests(), before + 1, "over max_body: not shared");
}

#[test]
fn a_node_gives_back_what_a_quiet_key_did_not_use() {
    let origin = Origin::start("app");
    let redis = RedisServer::start();
    let rw = Ringway::start(&format!(
        "workers: 1\nlisteners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: [{{url: {}}}]}}]\nroutes:\n  - name: all\n    backend: b\n    policies:\n      inbound:\n        - rate-limit-by-key: {{calls: 1000, renewal_period: 8s, counter_key: everyone}}\ncluster:\n  name: giveback\n  redis: {}\n",
        origin.url(),
        redis.url()
    ));
    let mut c = Client::connect(rw.addr());
    for _ in 0..30 {
        assert_eq!(c.get("/hello").status, 200);
    }
    let counted = || -> u64 {
        let key = redis.cli(&["KEYS", "giveback:rl:*"]);
        let fields = redis.cli(&["HVALS", key.trim()]);
        fields
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .sum()
    };
    let leased = counted();
    assert!(leased >= 30, "Redis counted {leased} for 30 admitted");
    // Quiet for two sub-windows (1 s) and the once-a-second sweep: the node's unspent credit
    // goes back; what this core took for itself (one batch at most) stays out.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let now = counted();
        if now < leased || now <= 32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing given back: Redis still counts {now} for 30 admitted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = counted();
    println!("Redis counted {leased} for 30 admitted; {after} after the key went quiet");
    assert!(after >= 30, "never below what was admitted");
}
