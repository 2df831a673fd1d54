//! Cluster-wide purges and configuration distribution through a real Redis, between real
//! Ringway nodes: a purge on one node empties the others' caches within the stated delay; a
//! change applied on one node is served by the others and by a node started later; an invalid
//! change is refused everywhere; a node that cannot validate a pushed document keeps its own
//! and says so; without Redis a node purges and changes locally, and pushes its change when
//! Redis returns.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ringway_tests::redis::RedisServer;
use ringway_tests::{run_ringway, Client, Origin, Ringway, TempDir};
use serde_json::Value;

const TOKEN: &str = "cluster-sync-token-0123456789";

/// Caching on every route: GET answers are kept 60 s, keyed by host, path and query.
const CACHING: &str = "policies:\n  inbound:\n    - cache-lookup: {vary_by_query: [\"*\"]}\n  \
                       outbound:\n    - cache-store: {duration: 60s}\n";

/// A node's configuration: one worker, an admin listener, one backend `b` on `origin`.
fn config(origin: &str, redis: &RedisServer, extra: &str) -> String {
    config_with(origin, redis, extra, "")
}

/// As [`config`], with more `cluster:` settings.
fn config_with(origin: &str, redis: &RedisServer, extra: &str, cluster: &str) -> String {
    format!(
        "workers: 1\nadmin: {{address: 127.0.0.1:0, token: {TOKEN}}}\n\
         listeners: [{{address: 127.0.0.1:0}}]\n\
         backends:\n  - {{name: b, targets: [{{url: {origin}}}]}}\n\
         routes: [{{name: all, backend: b}}]\n{extra}\
         cluster:\n  name: sync\n  redis: {}\n{cluster}",
        redis.url()
    )
}

/// A started node and its admin address.
struct Node {
    rw: Ringway,
    admin: SocketAddr,
    _dir: Option<TempDir>,
}

impl Node {
    fn start(yaml: &str) -> Node {
        let mut rw = Ringway::start(yaml);
        let admin = rw.admin_addr();
        Node {
            rw,
            admin,
            _dir: None,
        }
    }

    /// Runs with its configuration file in `dir` (where relative paths in applied and
    /// pushed documents resolve), from `dir`.
    fn start_in(yaml: &str, dir: &Path) -> Node {
        let file = dir.join("ringway.yaml");
        std::fs::write(&file, yaml).unwrap();
        let mut rw = Ringway::spawn(
            &["run".as_ref(), "--config".as_ref(), file.as_os_str()],
            &[],
            Some(dir),
        );
        rw.wait_ready(Duration::from_secs(10));
        let admin = rw.admin_addr();
        Node {
            rw,
            admin,
            _dir: None,
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> ringway_tests::Response {
        let auth = format!("Bearer {TOKEN}");
        Client::connect(self.admin).request(
            method,
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/yaml"),
            ],
            body.as_bytes(),
        )
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let r = self.call(method, path, body);
        let value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.text()));
        (r.status, value)
    }

    fn status(&self) -> Value {
        self.json("GET", "/status", "").1
    }

    fn metrics(&self) -> String {
        self.call("GET", "/metrics", "").text()
    }

    /// The origin that answers a GET of /hello.
    fn served_by(&self) -> String {
        let r = Client::connect(self.rw.addr()).get("/hello");
        assert_eq!(r.status, 200, "{}", r.text());
        r.header("x-origin").unwrap_or_default().to_string()
    }

    /// Waits until /hello is answered by `origin`; how long that took.
    fn wait_served_by(&self, origin: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.served_by() == origin {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "not served by {origin} after {within:?}: {}\n{}",
                self.status(),
                self.rw.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The value of an unlabelled sample.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

fn stored_version(redis: &RedisServer) -> String {
    redis
        .cli(&["HGET", "sync:config", "version"])
        .trim()
        .to_string()
}

fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stated delay: the workers apply purges on their 100 ms tick; Redis delivers in well
/// under a millisecond on loopback. The bound allows for a loaded test machine.
const PURGE_BOUND: Duration = Duration::from_millis(400);

#[test]
fn a_purge_on_one_node_empties_the_others_cache_within_the_stated_delay() {
    let origin = Origin::start("o");
    let redis = RedisServer::start();
    let a = Node::start(&config(&origin.url(), &redis, CACHING));
    let b = Node::start(&config(&origin.url(), &redis, CACHING));
    let mut on_b = Client::connect(b.rw.addr());
    let mut delays = Vec::new();
    for round in 0..10 {
        let path = format!("/counter?round={round}");
        assert_eq!(on_b.get(&path).header("x-cache"), Some("MISS"));
        assert_eq!(on_b.get(&path).header("x-cache"), Some("HIT"));
        // Purges at different points of the workers' 100 ms purge tick.
        std::thread::sleep(Duration::from_millis(round * 37 % 100));
        let purge = {
            let a_admin = a.admin;
            std::thread::spawn(move || {
                let auth = format!("Bearer {TOKEN}");
                Client::connect(a_admin).request(
                    "POST",
                    "/cache/purge",
                    &[("Authorization", &auth)],
                    br#"{"prefix": "ringway.test/counter"}"#,
                )
            })
        };
        let sent = Instant::now();
        loop {
            let r = on_b.get(&path);
            if r.header("x-cache") == Some("MISS") {
                delays.push(sent.elapsed());
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "round {round}: node B still answers from its cache 5 s after the purge on \
                 node A:\n{}\n{}",
                b.metrics(),
                b.rw.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let answer = purge.join().unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["cluster"], "published", "{body}");
    }
    delays.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    println!(
        "purge on node A -> entry gone on node B (10 rounds): min {:.1} ms, median {:.1} ms, \
         max {:.1} ms",
        ms(&delays[0]),
        ms(&delays[5]),
        ms(&delays[9])
    );
    assert!(
        delays[9] <= PURGE_BOUND,
        "a purge took {:?} to reach node B: {delays:?}",
        delays[9]
    );
    let (b_metrics, a_metrics) = (b.metrics(), a.metrics());
    assert_eq!(
        sample(&b_metrics, "ringway_cluster_purges_received_total"),
        Some(10.0),
        "{b_metrics}"
    );
    assert_eq!(
        sample(&a_metrics, "ringway_cluster_purges_published_total"),
        Some(10.0)
    );
    // A node skips its own messages.
    assert_eq!(
        sample(&a_metrics, "ringway_cluster_purges_received_total"),
        Some(0.0)
    );
    // `ringway ctl purge` goes the same way.
    let admin_url = format!("http://{}", a.admin);
    let out = run_ringway(
        &[
            "ctl",
            "--admin",
            &admin_url,
            "--token",
            TOKEN,
            "purge",
            "--prefix",
            "ringway.test/",
        ],
        &[],
        Duration::from_secs(10),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("other nodes: published"), "{stdout}");
    wait_until(Duration::from_secs(2), "the ctl purge on node B", || {
        sample(&b.metrics(), "ringway_cluster_purges_received_total") == Some(11.0)
    });
}

#[test]
fn a_change_on_one_node_is_served_by_every_node_and_by_one_started_later() {
    let (o1, o2, o3) = (
        Origin::start("o1"),
        Origin::start("o2"),
        Origin::start("o3"),
    );
    let redis = RedisServer::start();
    let a = Node::start(&config(&o1.url(), &redis, ""));
    let b = Node::start(&config(&o1.url(), &redis, ""));
    assert_eq!(b.served_by(), "o1");
    assert_eq!(b.status()["cluster"]["config_version"], 0);

    // PUT /config on A: the whole document, another origin.
    let (status, body) = a.json("PUT", "/config", &config(&o2.url(), &redis, ""));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cluster"], "published", "{body}");
    assert_eq!(body["cluster_version"], 1, "{body}");
    assert_eq!(a.served_by(), "o2");
    let took = b.wait_served_by("o2", Duration::from_secs(5));
    println!(
        "PUT /config on node A answered -> node B serves it: {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(stored_version(&redis), "1");
    let status = b.status();
    assert_eq!(status["cluster"]["config_version"], 1, "{status}");
    assert_eq!(status["cluster"]["last_push"]["applied"], true, "{status}");
    assert_eq!(
        status["cluster"]["last_push"]["node"],
        a.status()["cluster"]["node"]
    );
    assert_eq!(
        status["last_reload"]["trigger"], "cluster push v1",
        "{status}"
    );
    assert_eq!(status["config"]["source"], "cluster push v1", "{status}");
    assert_eq!(
        sample(&b.metrics(), "ringway_cluster_config_version"),
        Some(1.0)
    );

    // An item edit is a push too.
    let edit = format!("{{\"targets\": [{{\"url\": \"{}\"}}]}}", o3.url());
    let r = a.call("PUT", "/backends/b", &edit);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("ringway-cluster"), Some("published v2"));
    b.wait_served_by("o3", Duration::from_secs(5));

    // A node started later, with the first document in its file, comes up with the stored one.
    let c = Node::start(&config(&o1.url(), &redis, ""));
    assert_eq!(c.served_by(), "o3", "{}", c.rw.stderr_text());
    assert_eq!(c.status()["cluster"]["config_version"], 2);
    assert!(
        c.rw.stderr_text()
            .contains("serving version 2 of the shared configuration"),
        "{}",
        c.rw.stderr_text()
    );

    // `ringway ctl push FILE`: from C, back to o1; every node follows.
    let dir = TempDir::new();
    let file = dir.write("next.yaml", &config(&o1.url(), &redis, ""));
    let admin_url = format!("http://{}", c.admin);
    let out = run_ringway(
        &[
            "ctl",
            "--admin",
            &admin_url,
            "--token",
            TOKEN,
            "push",
            file.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(10),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pushed as version 3"), "{stdout}");
    for node in [&a, &b, &c] {
        node.wait_served_by("o1", Duration::from_secs(5));
    }
    wait_until(Duration::from_secs(5), "version 3 everywhere", || {
        [&a, &b, &c]
            .iter()
            .all(|n| n.status()["cluster"]["config_version"] == 3)
    });
}

#[test]
fn an_invalid_change_is_refused_and_changes_nothing_on_any_node() {
    let (o1, o2) = (Origin::start("o1"), Origin::start("o2"));
    let redis = RedisServer::start();
    let a = Node::start(&config(&o1.url(), &redis, ""));
    let b = Node::start(&config(&o1.url(), &redis, ""));
    let (status, _) = a.json("PUT", "/config", &config(&o2.url(), &redis, ""));
    assert_eq!(status, 200);
    b.wait_served_by("o2", Duration::from_secs(5));

    // A route naming a backend that does not exist.
    let broken = config(&o1.url(), &redis, "").replace("backend: b}", "backend: nowhere}");
    let (status, body) = a.json("PUT", "/config", &broken);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid_config");
    assert!(
        body["message"].as_str().unwrap().contains("nowhere"),
        "{body}"
    );

    // A document without `cluster:` would cut the node off: refused, with the reason.
    let alone = config(&o1.url(), &redis, "");
    let alone = &alone[..alone.find("cluster:").unwrap()];
    let (status, body) = a.json("PUT", "/config", alone);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "cluster", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("cut it off"),
        "{body}"
    );
    // Another cluster name: refused too.
    let renamed = config(&o1.url(), &redis, "").replace("name: sync", "name: other");
    let (status, body) = a.json("PUT", "/config", &renamed);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "cluster.name", "{body}");

    // Nothing was stored, and both nodes serve what they served.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stored_version(&redis), "1");
    for node in [&a, &b] {
        assert_eq!(node.served_by(), "o2");
        assert_eq!(node.status()["cluster"]["config_version"], 1);
    }
    assert_eq!(b.status()["reloads"]["failure"], 0, "node B saw none of it");
}

#[test]
fn a_node_that_cannot_validate_a_pushed_document_keeps_its_own_and_reports_it() {
    let (o1, o2) = (Origin::start("o1"), Origin::start("o2"));
    let redis = RedisServer::start();
    // A runs where ca.crt is; B somewhere it is not. Relative paths in a document applied
    // through the admin API (or pushed) resolve against the node's configuration directory.
    let with_ca = TempDir::new();
    ringway_tests::tls::Ca::new("sync-test").write(with_ca.path(), "ca");
    let without_ca = TempDir::new();
    let a = Node::start_in(&config(&o1.url(), &redis, ""), with_ca.path());
    let b = Node::start_in(&config(&o1.url(), &redis, ""), without_ca.path());

    let secure = "  - {name: secure, targets: [{url: https://127.0.0.1:1}], tls: {ca: ca.crt}}\n";
    let pushed = config(&o2.url(), &redis, "").replace("routes:", &format!("{secure}routes:"));
    let (status, body) = a.json("PUT", "/config", &pushed);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cluster_version"], 1, "{body}");
    assert_eq!(a.served_by(), "o2");

    wait_until(Duration::from_secs(5), "node B's refusal", || {
        !b.status()["cluster"]["last_push"].is_null()
    });
    let status = b.status();
    let push = &status["cluster"]["last_push"];
    assert_eq!(push["version"], 1, "{status}");
    assert_eq!(push["applied"], false, "{status}");
    assert!(
        push["error"].as_str().unwrap().contains("ca.crt"),
        "{status}"
    );
    assert_eq!(status["cluster"]["config_version"], 0, "{status}");
    assert_eq!(status["last_reload"]["result"], "failure", "{status}");
    assert_eq!(status["last_reload"]["trigger"], "cluster push v1");
    // It keeps serving its own configuration.
    assert_eq!(b.served_by(), "o1");
    let metrics = b.metrics();
    assert_eq!(
        sample(&metrics, "ringway_cluster_config_rejected_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "ringway_cluster_config_version"),
        Some(0.0)
    );
    assert!(
        b.rw.stderr_text()
            .contains("configuration refused (cluster push v1)"),
        "{}",
        b.rw.stderr_text()
    );
    // It does not try the refused version again; the next one applies.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sample(&b.metrics(), "ringway_cluster_config_rejected_total"),
        Some(1.0)
    );
    let (status, _) = a.json("PUT", "/config", &config(&o2.url(), &redis, ""));
    assert_eq!(status, 200);
    b.wait_served_by("o2", Duration::from_secs(5));
    assert_eq!(b.status()["cluster"]["config_version"], 2);
}

#[test]
fn without_redis_a_node_purges_and_changes_locally_and_pushes_when_redis_returns() {
    let (o1, o2) = (Origin::start("o1"), Origin::start("o2"));
    let mut redis = RedisServer::start();
    let port = redis.port;
    let yaml = |origin: &str, redis: &RedisServer| {
        config_with(
            origin,
            redis,
            "",
            "  connect_timeout: 200ms\n  command_timeout: 200ms\n",
        )
    };
    let a = Node::start(&yaml(&o1.url(), &redis));
    let b = Node::start(&yaml(&o1.url(), &redis));
    redis.stop();

    let (status, body) = a.json("POST", "/cache/purge", r#"{"prefix": "ringway.test/"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["complete"], true);
    assert!(
        body["cluster"]
            .as_str()
            .unwrap()
            .starts_with("not published: "),
        "{body}"
    );
    let (status, body) = a.json("PUT", "/config", &yaml(&o2.url(), &redis));
    assert_eq!(status, 200, "{body}");
    assert!(
        body["cluster"]
            .as_str()
            .unwrap()
            .starts_with("not published: "),
        "{body}"
    );
    assert_eq!(a.served_by(), "o2", "applied on this node");
    assert_eq!(b.served_by(), "o1");
    let status = a.status();
    assert!(!status["cluster"]["unpublished"].is_null(), "{status}");
    assert!(
        status["cluster"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{status}"
    );
    let warnings =
        a.rw.stderr_text()
            .matches("Redis cannot be reached")
            .count();
    assert_eq!(warnings, 1, "logged once: {}", a.rw.stderr_text());

    // Redis returns (empty): A stores its change, B applies it.
    let redis = RedisServer::start_on(port);
    let took = b.wait_served_by("o2", Duration::from_secs(15));
    println!(
        "Redis back -> node B serves the change made on A meanwhile: {:.1} s",
        took.as_secs_f64()
    );
    assert_eq!(stored_version(&redis), "1");
    let status = a.status();
    assert!(status["cluster"]["unpublished"].is_null(), "{status}");
    assert_eq!(status["cluster"]["redis"], "reachable", "{status}");
    assert!(a.rw.stderr_text().contains("Redis answers again"));
}
