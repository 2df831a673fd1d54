//! `/metrics` checked with the real Prometheus tools: `promtool check metrics` on the body the
//! binary serves after real traffic, every family of the exporter's list with its type and
//! labels, a real `prometheus` server scraping the admin listener with the bearer token, and
//! the Grafana dashboard in `docs/grafana/`: valid PromQL (`promtool check rules`, and every
//! panel query run on that server) naming only families the binary exports.
//!
//! `promtool` and `prometheus` come from the Debian package `prometheus`, which `scripts/test`
//! installs; `$PROMTOOL` and `$PROMETHEUS` name the binaries, else they are looked up on
//! `PATH`. A missing tool fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringway_tests::{
    closed_port, refusing_port, workspace_dir, Client, Origin, Refusing, Ringway, TempDir,
};
use serde_json::Value;

const TOKEN: &str = "prometheus-scrape-token-0123456789";
const DASHBOARD: &str = "docs/grafana/ringway-dashboard.json";

/// The exporter's families: name, type and labels (a histogram's `le` aside).
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("ringway_build_info", "gauge", &["version"]),
    ("ringway_workers", "gauge", &[]),
    ("ringway_config_generation", "gauge", &[]),
    (
        "ringway_requests_total",
        "counter",
        &["api", "operation", "backend", "class"],
    ),
    (
        "ringway_request_duration_seconds",
        "histogram",
        &["api", "operation"],
    ),
    ("ringway_upstream_connects_total", "counter", &["backend"]),
    ("ringway_upstream_reuses_total", "counter", &["backend"]),
    (
        "ringway_upstream_connect_errors_total",
        "counter",
        &["backend"],
    ),
    ("ringway_upstream_timeouts_total", "counter", &["backend"]),
    ("ringway_breaker_state", "gauge", &["backend", "target"]),
    ("ringway_target_healthy", "gauge", &["backend", "target"]),
    (
        "ringway_policy_rejections_total",
        "counter",
        &["api", "kind"],
    ),
    ("ringway_cache_hits_total", "counter", &[]),
    ("ringway_cache_misses_total", "counter", &[]),
    ("ringway_cache_bytes", "gauge", &[]),
    ("ringway_cache_entries", "gauge", &[]),
    ("ringway_tls_handshakes_total", "counter", &["kind"]),
    ("ringway_bad_requests_total", "counter", &[]),
    ("ringway_connections_open", "gauge", &[]),
    ("ringway_reloads_total", "counter", &["result"]),
    ("ringway_reload_duration_seconds", "gauge", &[]),
    ("ringway_access_log_lines_total", "counter", &[]),
    ("ringway_access_log_dropped_total", "counter", &[]),
    ("ringway_spans_exported_total", "counter", &[]),
    ("ringway_spans_dropped_total", "counter", &[]),
];

/// The latency histogram's bucket bounds, `+Inf` last.
const BUCKETS: &[f64] = &[
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];

/// A series, labels its samples must carry, and what their sum must be.
type Check<'a> = (&'a str, &'a [(&'a str, &'a str)], Expect);

#[derive(Debug)]
enum Expect {
    Eq(f64),
    AtLeast(f64),
    Above(f64),
}

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: &[&str] = &["instance", "job"];

fn family_spec(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    FAMILIES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, labels)| (*kind, *labels))
}

// ---------------------------------------------------------------------------------------------
// The tools.

/// `$ENV`, else `name` on `PATH` (or in /usr/bin, /usr/local/bin).
fn tool(name: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env}={} does not exist: run scripts/test, which installs {name}",
            path.display()
        );
        return path;
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain(["/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run scripts/test, which installs it (the Debian \
                 package `prometheus` provides promtool and prometheus), or set {env}"
            )
        })
}

fn promtool() -> PathBuf {
    tool("promtool", "PROMTOOL")
}

/// Runs `promtool ARGS...` with `stdin` and returns (success, stdout and stderr together).
fn run_promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run promtool: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let body = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(body.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for promtool");
    writer.join().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// The text format.

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE NAME KIND");
                e.types.insert(name.to_string(), kind.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                e.helps.insert(name.to_string());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                e.samples.push(parse_sample(line));
            }
        }
        e
    }

    /// The samples of series `name` whose labels include every pair of `with`.
    fn series<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.series(name, with).map(|s| s.value).sum()
    }

    /// The family a sample named `name` belongs to.
    fn family_of(&self, name: &str) -> Option<String> {
        resolve(name, |n| self.types.get(n).map(String::as_str))
            .ok()
            .map(|(family, _)| family)
    }
}

fn parse_sample(line: &str) -> Sample {
    fn bad(line: &str) -> ! {
        panic!("not a sample line: {line:?}")
    }
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad(line));
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => break *i + 1,
                None => bad(line),
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                bad(line);
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => bad(line),
                    },
                    Some(c) => value.push(c),
                    None => bad(line),
                }
            }
            labels.insert(key.trim().to_string(), value);
        };
        rest = &inner[end..];
    }
    let value = rest.split_whitespace().next().unwrap_or_else(|| bad(line));
    let value = value
        .parse()
        .unwrap_or_else(|_| panic!("not a number in {line:?}"));
    Sample {
        name,
        labels,
        value,
    }
}

/// The family a series name belongs to, and its histogram suffix (`_bucket`, `_sum`,
/// `_count`) if any; `types` gives a family's type. A histogram's own name is not a series:
/// PromQL finds nothing under it.
fn resolve<'a>(
    name: &str,
    types: impl Fn(&str) -> Option<&'a str>,
) -> Result<(String, Option<&'static str>), String> {
    match types(name) {
        Some("histogram") => {
            return Err(format!(
                "{name} is a histogram: its series are {name}_bucket, {name}_sum and {name}_count"
            ))
        }
        Some(_) => return Ok((name.to_string(), None)),
        None => {}
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types(base) == Some("histogram") {
                return Ok((base.to_string(), Some(suffix)));
            }
        }
    }
    Err(format!("{name} is no family of the exporter"))
}

// ---------------------------------------------------------------------------------------------
// The gateway under test, with traffic that gives most families samples.

struct Gateway {
    _proxy: Ringway,
    admin: SocketAddr,
    /// `2xx` answers of the `orders` API's `get-order` operation (cache hits included).
    orders_2xx: u64,
    /// Every request of the API `orders`.
    orders_all: u64,
    _origin: Origin,
    _down: Refusing,
}

fn config(origin: &Origin, down: SocketAddr) -> String {
    format!(
        r#"workers: 2
admin:
  address: 127.0.0.1:0
  token: {TOKEN}
listeners:
  - name: main
    address: 127.0.0.1:0
timeouts:
  upstream_response: 1s
backends:
  - name: orders
    targets: [{{ url: {origin} }}]
    circuit_breaker:
      rules:
        - failure_condition: {{ count: 1000, interval: 10s, status_codes: ["5xx"] }}
          trip_duration: 1s
    health_check: {{ path: /hello, interval: 1s }}
  - name: down
    targets: [{{ url: "http://{down}" }}]
apis:
  - name: orders
    path: /orders
    backend: orders
    operations:
      - {{ id: get-order, method: GET, url_template: "/{{id}}" }}
    policies:
      inbound:
        - rate-limit-by-key: {{ calls: 3, renewal_period: 60s, counter_key: "{{header:X-Client}}" }}
        - cache-lookup: {{ vary_by_query: ["*"] }}
      outbound:
        - cache-store: {{ duration: 60s }}
routes:
  - name: slow
    matches: [{{ path: {{ type: prefix, value: /delay }} }}]
    backend: orders
  - name: down
    matches: [{{ path: {{ type: prefix, value: /down }} }}]
    backend: down
"#,
        origin = origin.url()
    )
}

/// `GET /metrics` with the token.
fn scrape(admin: SocketAddr) -> String {
    let auth = format!("Bearer {TOKEN}");
    let r = Client::connect(admin).request("GET", "/metrics", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

impl Gateway {
    /// Starts the gateway and sends: ten operation calls (cache misses), a cache hit, a client
    /// past its rate limit, an upstream timeout, a connect error, a request no route takes and
    /// a malformed one; then waits until the workers have published all of it.
    fn start() -> Gateway {
        let origin = Origin::start("orders");
        let down = refusing_port();
        let mut proxy = Ringway::start(&config(&origin, down.addr));
        let admin = proxy.admin_addr();
        let mut c = Client::connect(proxy.addr());
        let mut answered = 0;
        let (mut orders_2xx, mut orders_all) = (0, 0);
        let mut call = |c: &mut Client, path: &str, client: &str| {
            let r = c.request("GET", path, &[("X-Client", client)], b"");
            answered += 1;
            if path.starts_with("/orders/") {
                orders_all += 1;
                if (200..300).contains(&r.status) {
                    orders_2xx += 1;
                }
            }
            r
        };
        for i in 0..10 {
            let r = call(&mut c, &format!("/orders/{i}"), &format!("c{i}"));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("x-cache"), Some("MISS"));
        }
        let r = call(&mut c, "/orders/0", "c0");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cache"), Some("HIT"));
        // Three calls a minute per client: the fourth is refused.
        for expect in [200, 200, 200, 429] {
            assert_eq!(call(&mut c, "/orders/burst", "greedy").status, expect);
        }
        // The origin answers after 2 s, past `upstream_response`.
        assert_eq!(call(&mut c, "/delay/2000", "-").status, 504);
        let r = call(&mut c, "/down/x", "-");
        assert_eq!(r.status / 100, 5, "{}", r.text());
        assert_eq!(call(&mut c, "/elsewhere", "-").status, 404);
        let mut bad = Client::connect(proxy.addr());
        bad.send_raw(
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(bad.read_response().status, 400);

        // Workers publish once a second.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = scrape(admin);
            let counted = Exposition::parse(&text).sum("ringway_requests_total", &[]);
            if counted >= answered as f64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the metrics never counted the {answered} requests:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Gateway {
            _proxy: proxy,
            admin,
            orders_2xx,
            orders_all,
            _origin: origin,
            _down: down,
        }
    }

    fn metrics(&self) -> String {
        scrape(self.admin)
    }
}

// ---------------------------------------------------------------------------------------------
// promtool on the real output.

#[test]
fn promtool_finds_no_problem_in_the_metrics() {
    let gateway = Gateway::start();
    let body = gateway.metrics();
    let (ok, output) = run_promtool(&["check", "metrics"], &body);
    assert!(
        ok && output.trim().is_empty(),
        "promtool check metrics: {}\n{output}\n--- the body ---\n{body}",
        if ok { "lint problems" } else { "failed" }
    );
}

#[test]
fn metrics_has_every_family_with_its_type_and_labels() {
    let gateway = Gateway::start();
    let body = gateway.metrics();
    let e = Exposition::parse(&body);
    let mut problems = Vec::new();
    for (name, kind, _) in FAMILIES {
        match e.types.get(*name) {
            None => problems.push(format!("{name}: no `# TYPE` line (not exported)")),
            Some(t) if t != kind => problems.push(format!("{name}: type {t}, expected {kind}")),
            Some(_) if !e.helps.contains(*name) => problems.push(format!("{name}: no `# HELP`")),
            Some(_) => {}
        }
    }
    for s in &e.samples {
        let Some(family) = e.family_of(&s.name) else {
            problems.push(format!("{}: a sample of no declared family", s.name));
            continue;
        };
        let Some((_, labels)) = family_spec(&family) else {
            continue;
        };
        let mut expected: BTreeSet<&str> = labels.iter().copied().collect();
        if s.name.ends_with("_bucket") {
            expected.insert("le");
        }
        let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
        if got != expected {
            problems.push(format!(
                "{}{:?}: labels {got:?}, expected {expected:?}",
                s.name, s.labels
            ));
        }
    }

    // The values the traffic gives: (series, labels, expected). A series' value is the sum
    // over the samples carrying those labels; there must be at least one.
    let op = [("api", "orders"), ("operation", "get-order")];
    let (orders_2xx, orders_all) = (gateway.orders_2xx as f64, gateway.orders_all as f64);
    let checks: &[Check] = &[
        ("ringway_workers", &[], Expect::Eq(2.0)),
        ("ringway_build_info", &[], Expect::Eq(1.0)),
        ("ringway_config_generation", &[], Expect::AtLeast(0.0)),
        (
            "ringway_requests_total",
            &[op[0], op[1], ("class", "2xx")],
            Expect::Eq(orders_2xx),
        ),
        ("ringway_requests_total", &op, Expect::Eq(orders_all)),
        // The rate-limited call.
        (
            "ringway_requests_total",
            &[("api", "orders"), ("class", "4xx")],
            Expect::Eq(1.0),
        ),
        (
            "ringway_requests_total",
            &[("api", "slow"), ("operation", ""), ("class", "5xx")],
            Expect::Eq(1.0),
        ),
        (
            "ringway_requests_total",
            &[("api", "down"), ("operation", ""), ("class", "5xx")],
            Expect::Eq(1.0),
        ),
        (
            "ringway_requests_total",
            &[("api", "unmatched"), ("class", "4xx")],
            Expect::AtLeast(1.0),
        ),
        (
            "ringway_request_duration_seconds_count",
            &op,
            Expect::Eq(orders_all),
        ),
        (
            "ringway_request_duration_seconds_sum",
            &op,
            Expect::Above(0.0),
        ),
        (
            "ringway_policy_rejections_total",
            &[("api", "orders"), ("kind", "rate_limit")],
            Expect::Eq(1.0),
        ),
        (
            "ringway_upstream_connects_total",
            &[("backend", "orders")],
            Expect::AtLeast(1.0),
        ),
        (
            "ringway_upstream_reuses_total",
            &[("backend", "orders")],
            Expect::AtLeast(1.0),
        ),
        (
            "ringway_upstream_connect_errors_total",
            &[("backend", "down")],
            Expect::AtLeast(1.0),
        ),
        (
            "ringway_upstream_timeouts_total",
            &[("backend", "orders")],
            Expect::AtLeast(1.0),
        ),
        (
            "ringway_breaker_state",
            &[("backend", "orders")],
            Expect::Eq(0.0),
        ),
        (
            "ringway_target_healthy",
            &[("backend", "orders")],
            Expect::Eq(1.0),
        ),
        // Ten misses, then a hit; the client past its limit missed once and hit twice.
        ("ringway_cache_hits_total", &[], Expect::AtLeast(1.0)),
        ("ringway_cache_misses_total", &[], Expect::AtLeast(10.0)),
        ("ringway_cache_entries", &[], Expect::AtLeast(1.0)),
        ("ringway_cache_bytes", &[], Expect::Above(0.0)),
        ("ringway_bad_requests_total", &[], Expect::AtLeast(1.0)),
        ("ringway_connections_open", &[], Expect::AtLeast(0.0)),
        (
            "ringway_tls_handshakes_total",
            &[("kind", "full")],
            Expect::Eq(0.0),
        ),
        (
            "ringway_tls_handshakes_total",
            &[("kind", "resumed")],
            Expect::Eq(0.0),
        ),
        (
            "ringway_tls_handshakes_total",
            &[("kind", "failed")],
            Expect::Eq(0.0),
        ),
    ];
    for (name, with, expect) in checks {
        let found: Vec<f64> = e.series(name, with).map(|s| s.value).collect();
        let value: f64 = found.iter().sum();
        let ok = !found.is_empty()
            && match expect {
                Expect::Eq(v) => value == *v,
                Expect::AtLeast(v) => value >= *v,
                Expect::Above(v) => value > *v,
            };
        if !ok {
            problems.push(format!(
                "{name}{with:?}: {} ({} series), expected {expect:?}",
                value,
                found.len()
            ));
        }
    }

    // The operation's latency histogram: the fixed buckets, cumulative, `+Inf` = `_count`.
    let mut buckets: Vec<(f64, f64)> = e
        .series("ringway_request_duration_seconds_bucket", &op)
        .map(|s| (s.labels["le"].parse().expect("le is a number"), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bounds: Vec<f64> = buckets.iter().map(|b| b.0).collect();
    if bounds != BUCKETS {
        problems.push(format!("the buckets' bounds are {bounds:?}"));
    }
    if !buckets.windows(2).all(|w| w[0].1 <= w[1].1) {
        problems.push(format!("the buckets are not cumulative: {buckets:?}"));
    }
    if buckets.last().map(|b| b.1) != Some(orders_all) {
        problems.push(format!("+Inf is not the count {orders_all}: {buckets:?}"));
    }
    assert!(
        problems.is_empty(),
        "{}\n--- the body ---\n{body}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus server.

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Starts `prometheus` scraping `target`'s `/metrics` every second: job `ringway` with
    /// the token, job `no-token` without it.
    fn start(target: SocketAddr) -> Prometheus {
        let bin = tool("prometheus", "PROMETHEUS");
        let dir = TempDir::new();
        let config = dir.write(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: ringway\n    metrics_path: /metrics\n\
                 \x20   authorization: {{ type: Bearer, credentials: {TOKEN} }}\n\
                 \x20   static_configs:\n      - targets: [\"{target}\"]\n\
                 \x20 - job_name: no-token\n    metrics_path: /metrics\n\
                 \x20   static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        );
        let addr = closed_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Prometheus { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET target` on the server; `None` while it does not accept connections.
    fn get(&mut self, target: &str) -> Option<ringway_tests::Response> {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
        let mut c = Client::try_connect(self.addr).ok()?;
        c.send_request("GET", target, &[], b"");
        c.try_read_response().ok()
    }

    /// The JSON answer of an instant query.
    fn query(&mut self, promql: &str) -> Option<Value> {
        let r = self.get(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
        Some(
            serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("{promql}: not JSON ({e}): {} {}", r.status, r.text())),
        )
    }

    /// Waits until `promql` gives one sample equal to `expected`.
    fn wait_for(&mut self, promql: &str, expected: f64, deadline: Instant) {
        let mut last = None;
        loop {
            if let Some(answer) = self.query(promql) {
                let result = &answer["data"]["result"];
                let values: Vec<f64> = result
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                    .collect();
                if values == [expected] {
                    return;
                }
                last = Some(answer);
            }
            if Instant::now() >= deadline {
                let targets = self
                    .get("/api/v1/targets")
                    .map(|r| r.text())
                    .unwrap_or_default();
                panic!(
                    "prometheus never gave {promql} = {expected}; last answer {last:?}\n\
                     targets: {targets}\n--- prometheus log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_admin_listener_with_the_bearer_token() {
    let gateway = Gateway::start();
    let mut prometheus = Prometheus::start(gateway.admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    prometheus.wait_for("ringway_workers", 2.0, deadline);
    prometheus.wait_for(r#"up{job="ringway"}"#, 1.0, deadline);
    // Without the token the admin listener refuses the scrape.
    prometheus.wait_for(r#"up{job="no-token"}"#, 0.0, deadline);
    let targets = prometheus.get("/api/v1/targets").expect("the targets");
    assert!(
        targets.text().contains("401"),
        "the no-token job's error: {}",
        targets.text()
    );

    // Every dashboard query is valid PromQL to the server.
    for (panel, expr) in dashboard_queries(&dashboard()) {
        let query = concrete(&expr);
        let answer = prometheus
            .query(&query)
            .unwrap_or_else(|| panic!("prometheus stopped answering:\n{}", prometheus.log()));
        assert_eq!(
            answer["status"], "success",
            "panel {panel:?}: {query}\n{answer}"
        );
    }

    prometheus.wait_for(
        r#"sum(ringway_requests_total{api="orders",class="2xx"})"#,
        gateway.orders_2xx as f64,
        deadline,
    );
}

// ---------------------------------------------------------------------------------------------
// The Grafana dashboard.

fn dashboard() -> Value {
    let path = workspace_dir().join(DASHBOARD);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD}: not JSON: {e}"))
}

/// Every panel, those inside collapsed rows too.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// `(panel title, expr)` of every panel target.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            out.push((title.to_string(), expr.to_string()));
        }
    }
    out
}

/// `(metric, label)` of the query variables' `label_values(METRIC, LABEL)`.
fn variable_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap().to_string();
        let query = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name}: no query"));
        let args = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| {
                panic!("variable {name}: {query} is not label_values(METRIC, LABEL)")
            });
        let (metric, label) = args.split_once(',').expect("label_values(METRIC, LABEL)");
        out.push((name, metric.trim().to_string(), label.trim().to_string()));
    }
    out
}

/// A dashboard query as Prometheus runs it: the variables given values.
fn concrete(expr: &str) -> String {
    let mut out = expr.to_string();
    for (var, value) in [
        ("$__rate_interval", "1m"),
        ("${__rate_interval}", "1m"),
        ("$__interval", "1m"),
        ("${api}", ".*"),
        ("$api", ".*"),
        ("${backend}", ".*"),
        ("$backend", ".*"),
    ] {
        out = out.replace(var, value);
    }
    assert!(!out.contains('$'), "an unknown variable in {expr}");
    out
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Punct(char),
    Other,
}

/// A rough PromQL lexer: identifiers and punctuation, string literals, numbers, durations and
/// dashboard variables as `Other`.
fn lex(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Token::Other);
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Other);
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
            }
            out.push(Token::Other);
        } else if ident(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// A metric named in a query: the labels of its matchers, and whether it is the argument of
/// `rate`, `irate` or `increase`.
#[derive(Debug)]
struct MetricUse {
    name: String,
    matchers: BTreeSet<String>,
    in_rate: bool,
}

/// The metrics a query names and the labels of its `by (...)` clauses.
fn analyse(expr: &str) -> (Vec<MetricUse>, BTreeSet<String>) {
    let tokens = lex(expr);
    let mut uses = Vec::new();
    let mut by = BTreeSet::new();
    let idents_until = |from: usize, close: char| -> BTreeSet<String> {
        tokens[from..]
            .iter()
            .take_while(|t| **t != Token::Punct(close))
            .filter_map(|t| match t {
                Token::Ident(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    for (i, token) in tokens.iter().enumerate() {
        let Token::Ident(word) = token else { continue };
        let next_is = |c| tokens.get(i + 1) == Some(&Token::Punct(c));
        if word.starts_with("ringway_") {
            let matchers = if next_is('{') {
                idents_until(i + 2, '}')
            } else {
                BTreeSet::new()
            };
            let in_rate = i >= 2
                && tokens[i - 1] == Token::Punct('(')
                && matches!(&tokens[i - 2], Token::Ident(f) if ["rate", "irate", "increase"].contains(&f.as_str()));
            uses.push(MetricUse {
                name: word.clone(),
                matchers,
                in_rate,
            });
        } else if word == "by" && next_is('(') {
            by.extend(idents_until(i + 2, ')'));
        }
    }
    (uses, by)
}

/// Problems of one query against the exporter's families: `types` says which families exist
/// and their types. A metric must resolve to a family (a histogram through its `_bucket`,
/// `_sum` or `_count`); counters appear only inside `rate`/`irate`/`increase` and gauges never
/// do; every label matched or grouped by is one of the family's (or a target label).
fn query_problems<'a>(expr: &str, types: impl Fn(&str) -> Option<&'a str> + Copy) -> Vec<String> {
    let (uses, by) = analyse(expr);
    let mut problems = Vec::new();
    if uses.is_empty() {
        problems.push("names no ringway_ metric".to_string());
    }
    for u in &uses {
        let (family, suffix) = match resolve(&u.name, types) {
            Ok(found) => found,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let kind = types(&family).unwrap_or_default();
        let counter_like = kind == "counter" || suffix.is_some();
        if u.in_rate && !counter_like {
            problems.push(format!("{}: a {kind} inside rate/increase", u.name));
        }
        if !u.in_rate && counter_like {
            problems.push(format!("{}: a counter outside rate/increase", u.name));
        }
        let Some((_, labels)) = family_spec(&family) else {
            problems.push(format!("{family}: not in the exporter's family list"));
            continue;
        };
        for label in u.matchers.iter().chain(&by) {
            let known = labels.contains(&label.as_str())
                || TARGET_LABELS.contains(&label.as_str())
                || (label == "le" && suffix == Some("_bucket"));
            if !known {
                problems.push(format!("{}: no label {label:?}", u.name));
            }
        }
    }
    problems
}

/// The families of [`FAMILIES`] by name.
fn spec_type(name: &str) -> Option<&'static str> {
    family_spec(name).map(|(kind, _)| kind)
}

#[test]
fn the_dashboard_is_grafana_json_with_valid_promql() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 39,
        "schemaVersion"
    );
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["uid"].as_str().is_some_and(|t| !t.is_empty()));

    // The data source is a variable; api and backend come from label_values.
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let ds = var("DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let uses_ds = |v: &Value| v["datasource"]["uid"] == "${DS_PROMETHEUS}";
    for name in ["api", "backend"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert!(
            uses_ds(v),
            "variable {name}: datasource {}",
            v["datasource"]
        );
        assert_eq!(v["includeAll"], true, "{name}");
        assert_eq!(v["allValue"], ".*", "{name}");
    }
    let variables = variable_queries(&d);
    for (name, metric, label) in &variables {
        assert_eq!(label, name, "variable {name} lists the label {label}");
        let labels = family_spec(metric)
            .unwrap_or_else(|| panic!("variable {name}: {metric} is no family"))
            .1;
        assert!(
            labels.contains(&label.as_str()),
            "{metric} has no label {label}"
        );
    }

    // Panels: unique ids, on the 24-column grid, each query on the data source variable.
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for panel in panels(&d) {
        let title = panel["title"].as_str().unwrap_or_default();
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &panel["gridPos"];
        let (x, w, h) = (
            grid["x"].as_u64().expect("gridPos.x"),
            grid["w"].as_u64().expect("gridPos.w"),
            grid["h"].as_u64().expect("gridPos.h"),
        );
        assert!(
            grid["y"].is_u64() && w > 0 && h > 0 && x + w <= 24,
            "{title}: {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            ["timeseries", "table", "stat", "bargauge"].contains(&panel["type"].as_str().unwrap()),
            "{title}: type {}",
            panel["type"]
        );
        assert!(
            uses_ds(panel),
            "{title}: datasource {}",
            panel["datasource"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                uses_ds(t),
                "{title}: a target's datasource {}",
                t["datasource"]
            );
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title}: refId twice"
            );
            let expr = t["expr"].as_str().expect("expr");
            for p in query_problems(expr, spec_type) {
                problems.push(format!("{title}: {expr}: {p}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The panels the dashboard is for.
    let queries = dashboard_queries(&d);
    let named: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, expr)| analyse(expr).0)
        .map(|u| u.name)
        .collect();
    for metric in [
        "ringway_requests_total",
        "ringway_request_duration_seconds_bucket",
        "ringway_upstream_connect_errors_total",
        "ringway_upstream_timeouts_total",
        "ringway_upstream_reuses_total",
        "ringway_upstream_connects_total",
        "ringway_breaker_state",
        "ringway_target_healthy",
        "ringway_policy_rejections_total",
        "ringway_cache_hits_total",
        "ringway_cache_misses_total",
        "ringway_cache_bytes",
        "ringway_tls_handshakes_total",
        "ringway_reloads_total",
        "ringway_access_log_dropped_total",
    ] {
        assert!(named.contains(metric), "no panel shows {metric}");
    }
    for q in ["0.5", "0.95", "0.99"] {
        let call = format!("histogram_quantile({q}, ");
        assert!(
            queries.iter().any(|(_, e)| e.contains(&call)
                && e.contains("ringway_request_duration_seconds_bucket")
                && e.contains("by (api, le)")),
            "no p{} latency by API",
            &q[2..]
        );
    }

    // promtool parses every query (as a recording rule).
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let expr = serde_json::to_string(&concrete(expr)).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {expr}\n"
        ));
    }
    let dir = TempDir::new();
    let file = dir.write("dashboard-rules.yml", &rules);
    let (ok, output) = run_promtool(&["check", "rules", file.to_str().unwrap()], "");
    assert!(ok, "promtool check rules:\n{output}\n{rules}");
}

#[test]
fn the_dashboard_names_only_families_the_binary_exports() {
    let gateway = Gateway::start();
    let body = gateway.metrics();
    let exported = Exposition::parse(&body);
    let types = |name: &str| exported.types.get(name).map(String::as_str);
    let d = dashboard();
    let mut problems = Vec::new();
    for (panel, expr) in dashboard_queries(&d) {
        for p in query_problems(&expr, types) {
            problems.push(format!("panel {panel:?}: {expr}: {p}"));
        }
    }
    for (name, metric, _) in variable_queries(&d) {
        if let Err(e) = resolve(&metric, types) {
            problems.push(format!("variable {name}: {e}"));
        }
    }
    assert!(
        problems.is_empty(),
        "the dashboard names what /metrics does not export:\n{}\n--- /metrics ---\n{body}",
        problems.join("\n")
    );
}

#[test]
fn the_query_reader_finds_metrics_labels_and_histograms() {
    let (uses, by) = analyse(
        r#"histogram_quantile(0.99, sum by (api, le) (rate(ringway_request_duration_seconds_bucket{api=~"$api", job!="x"}[$__rate_interval])))"#,
    );
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].name, "ringway_request_duration_seconds_bucket");
    assert!(uses[0].in_rate);
    assert_eq!(
        uses[0].matchers,
        BTreeSet::from(["api".to_string(), "job".to_string()])
    );
    assert_eq!(by, BTreeSet::from(["api".to_string(), "le".to_string()]));
    // A string that looks like a metric is no metric.
    let (uses, _) = analyse(r#"sum(ringway_workers{job="ringway_fake"})"#);
    assert_eq!(uses.len(), 1);

    assert!(query_problems("sum(ringway_workers)", spec_type).is_empty());
    let problems = |q: &str| query_problems(q, spec_type).join("\n");
    assert!(problems("sum(rate(ringway_request_duration_seconds[1m]))").contains("is a histogram"));
    assert!(problems("sum(rate(ringway_workers[1m]))").contains("a gauge inside rate"));
    assert!(problems("sum(ringway_requests_total)").contains("outside rate"));
    assert!(problems("sum by (backend) (rate(ringway_cache_hits_total[1m]))").contains("no label"));
    assert!(problems("rate(ringway_nope_total[1m])").contains("no family"));
    // `_count` of a counter is no histogram series.
    assert!(problems("rate(ringway_cache_hits_total_count[1m])").contains("no family"));
    assert!(problems("sum(rate(ringway_request_duration_seconds_count[1m]))").is_empty());

    let s = parse_sample(r#"a_b{x="1",y="q\"uo\\te"} 2.5"#);
    assert_eq!(s.name, "a_b");
    assert_eq!(s.labels["y"], "q\"uo\\te");
    assert_eq!(s.value, 2.5);
    assert_eq!(parse_sample("z +Inf").value, f64::INFINITY);
    assert_eq!(
        percent_encode(r#"sum(a{b="c"})"#),
        "sum%28a%7Bb%3D%22c%22%7D%29"
    );
}
