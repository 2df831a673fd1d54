//! `examples/observability.yaml` as operators run it, and the analytics view: requests, errors
//! and latency per API and per subscription, per minute.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringway_tests::{run_ringway, workspace_dir, Client, Origin, Ringway, TempDir};

const TOKEN: &str = "observability-token-0123456789";

fn admin_get(addr: SocketAddr, path: &str, token: Option<&str>) -> ringway_tests::Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    Client::connect(addr).request("GET", path, &headers, b"")
}

/// Polls `path` until `done` accepts its body (workers publish once a second).
fn poll(addr: SocketAddr, path: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = admin_get(addr, path, Some(TOKEN));
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{path} never showed it:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_observability_example_serves_metrics_and_logs_every_request() {
    let origin = Origin::start("app");
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let example = workspace_dir().join("examples/observability.yaml");
    let backend = origin.url();
    let log_path = log.display().to_string();
    let mut rw = Ringway::start_file(
        example.to_str().unwrap(),
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "2"),
            ("RINGWAY_BACKEND", &backend),
            ("RINGWAY_ADMIN_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_ADMIN_TOKEN", TOKEN),
            ("RINGWAY_ACCESS_LOG", &log_path),
        ],
    );
    let admin = rw.admin_addr();
    let mut c = Client::connect(rw.addr());
    for _ in 0..12 {
        assert_eq!(c.get("/hello").status, 200);
    }
    assert_eq!(c.get("/status/503").status, 503);

    // The token is required; the series carry the route and backend.
    assert_eq!(admin_get(admin, "/metrics", None).status, 401);
    poll(admin, "/metrics", |t| {
        t.contains(
            "ringway_requests_total{api=\"all\",operation=\"\",backend=\"backend\",class=\"2xx\"} 12\n",
        ) && t.contains("class=\"5xx\"} 1\n")
    });

    // One JSON line per request.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 13 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let parsed: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(parsed.len(), 13, "{lines}");
    assert!(parsed
        .iter()
        .all(|l| l["api"] == "all" && l["backend"] == "backend"));
    assert_eq!(parsed.iter().filter(|l| l["status"] == 503).count(), 1);
    assert_eq!(
        parsed[0]["request_id"].as_str().map(str::len),
        Some(32),
        "{}",
        parsed[0]
    );

    // Analytics: this minute's row for the route.
    let text = poll(admin, "/analytics?by=api&minutes=5", |t| {
        t.contains("\"requests\":13")
    });
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "all")
        .unwrap();
    assert_eq!(row["errors"], 1, "{row}");
    assert_eq!(row["server_errors"], 1, "{row}");
    assert!(row["p50_ms"].as_f64().unwrap() > 0.0, "{row}");
    assert!(row["p99_ms"].as_f64().unwrap() >= row["p50_ms"].as_f64().unwrap());
    assert_eq!(
        admin_get(admin, "/analytics?by=nothing", Some(TOKEN)).status,
        400
    );

    // The example needs its token.
    let out = run_ringway(
        &["check", example.to_str().unwrap()],
        &[("RINGWAY_BACKEND", &backend)],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RINGWAY_ADMIN_TOKEN"));
}

#[test]
fn analytics_count_each_subscription() {
    let origin = Origin::start("app");
    let key = "analytics-key-0123456789abcdef";
    let out = run_ringway(&["key", "hash", key], &[], Duration::from_secs(10));
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = TempDir::new();
    let file = dir.write(
        "gateway.yaml",
        &format!(
            "workers: 2\nadmin: {{address: 127.0.0.1:0, token: {TOKEN}}}\nlisteners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: [{{url: {}}}]}}]\nproducts: [{{name: starter, apis: [orders]}}]\nsubscriptions: [{{id: team-a, scope: {{product: starter}}, primary_key: \"{hash}\"}}]\napis:\n  - name: orders\n    path: /orders\n    backend: b\n    operations: [{{id: list, method: GET, url_template: /}}]\n",
            origin.url()
        ),
    );
    let mut rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    let admin = rw.admin_addr();
    let mut c = Client::connect(rw.addr());
    for _ in 0..5 {
        let r = c.request(
            "GET",
            "/orders/",
            &[("Ocp-Apim-Subscription-Key", key)],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(c.get("/orders/").status, 401);
    let text = poll(admin, "/analytics?by=subscription", |t| {
        t.contains("\"name\":\"team-a\"")
    });
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "team-a")
        .unwrap();
    assert_eq!(row["requests"], 5, "{row}");
    let by_api = poll(admin, "/analytics?by=api", |t| {
        t.contains("\"name\":\"orders\"")
    });
    assert!(by_api.contains("\"requests\":6"), "{by_api}");
    let status = admin_get(admin, "/status", Some(TOKEN)).text();
    assert!(status.contains("\"generation\":1"), "{status}");
}
