//! `/metrics`: the workers' published counters, merged, in the Prometheus text format
//! (version 0.0.4).

use std::fmt::Write as _;

use ringway_core::metrics::MetricsSnapshot;

/// Upper bounds of the latency histogram's buckets, in seconds.
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escaped for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// What `/metrics` shows besides the workers' counters.
#[derive(Default)]
pub struct Extras {
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_seconds: f64,
    /// Per target: backend, target, breaker state (0 closed, 1 open, 2 half-open), healthy.
    pub targets: Vec<(String, String, u8, bool)>,
    /// Access-log lines written and dropped; spans exported and dropped.
    pub access_log: (u64, u64),
    pub spans: (u64, u64),
    /// Cluster mode: Redis answering; leases, failed leases, fallbacks, times it went away
    /// and came back.
    pub cluster: Option<(bool, [u64; 5])>,
    /// Cluster mode: the shared configuration's version served, pushed versions refused,
    /// purges published and received.
    pub cluster_sync: Option<[u64; 4]>,
}

/// Renders the node's metrics: the workers' latest published counters, merged, and what the
/// control side knows.
pub fn render_plane(plane: &super::plane::Plane) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let (metrics, _) = plane.control.metrics();
    let mut extras = Extras {
        generation: plane.control.generation.load(Relaxed),
        reloads_ok: plane.reloads_ok.load(Relaxed),
        reloads_failed: plane.reloads_failed.load(Relaxed),
        last_reload_seconds: plane.last_reload_us.load(Relaxed) as f64 / 1e6,
        access_log: plane.access_log.get().map_or((0, 0), |l| l.counters()),
        spans: plane.spans.get().map_or((0, 0), |s| s.counters()),
        ..Extras::default()
    };
    if let Some(node) = &plane
        .control
        .node
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .cluster
    {
        let c = &node.counters;
        extras.cluster = Some((
            node.available(),
            [
                c.leases.load(Relaxed),
                c.lease_errors.load(Relaxed),
                c.fallbacks.load(Relaxed),
                c.unavailable.load(Relaxed),
                c.recovered.load(Relaxed),
            ],
        ));
    }
    if let Some(sync) = plane.cluster.get() {
        extras.cluster_sync = Some([
            sync.applied_version(),
            sync.rejected.load(Relaxed),
            sync.purges_published.load(Relaxed),
            sync.purges_received.load(Relaxed),
        ]);
    }
    {
        let reloader = plane.reloader.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = reloader.snapshot();
        let shared = reloader.shared_upstreams();
        let now = std::time::Instant::now();
        for (t, info) in snapshot.targets.iter().enumerate() {
            let state = match shared.breaker_state(t, now) {
                crate::upstream::Gate::Closed => 0,
                crate::upstream::Gate::Open => 1,
                crate::upstream::Gate::HalfOpen(_) => 2,
            };
            extras.targets.push((
                snapshot.config.backends[info.backend].name.clone(),
                info.authority.clone(),
                state,
                shared.is_healthy(t),
            ));
        }
    }
    render(&metrics, plane.control.workers(), &extras)
}

/// Renders `m` (merged over `workers` workers) and `extras`.
pub fn render(m: &MetricsSnapshot, workers: usize, extras: &Extras) -> String {
    let mut out = String::with_capacity(4096 + m.series.len() * 2048);
    header(
        &mut out,
        "ringway_build_info",
        "gauge",
        "The running build.",
    );
    let _ = writeln!(
        out,
        "ringway_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    header(
        &mut out,
        "ringway_workers",
        "gauge",
        "Worker cores serving.",
    );
    let _ = writeln!(out, "ringway_workers {workers}");
    header(
        &mut out,
        "ringway_config_generation",
        "gauge",
        "The configuration in force: 1 at start, one more per reload.",
    );
    let _ = writeln!(out, "ringway_config_generation {}", extras.generation);

    // Series, by name (sorted, for a stable output).
    let mut series: Vec<(
        (String, String, String),
        &ringway_core::metrics::SeriesCounts,
    )> = m
        .series
        .iter()
        .map(|(k, c)| (super::labels::resolve(*k), c))
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));

    header(
        &mut out,
        "ringway_requests_total",
        "counter",
        "Requests answered, by API (or route), operation, backend and status class.",
    );
    for ((api, op, backend), c) in &series {
        for (i, class) in CLASSES.iter().enumerate() {
            if c.classes[i] > 0 || i == 2 {
                let _ = writeln!(
                    out,
                    "ringway_requests_total{{api=\"{}\",operation=\"{}\",backend=\"{}\",class=\"{class}\"}} {}",
                    esc(api),
                    esc(op),
                    esc(backend),
                    c.classes[i]
                );
            }
        }
    }

    // Latency by API and operation (backends merged).
    let mut by_op: Vec<((String, String), ringway_core::metrics::SeriesCounts)> = Vec::new();
    for ((api, op, _), c) in &series {
        match by_op.iter_mut().find(|((a, o), _)| a == api && o == op) {
            Some((_, total)) => total.merge(c),
            None => by_op.push(((api.clone(), op.clone()), (*c).clone())),
        }
    }
    header(
        &mut out,
        "ringway_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to its answer's last, by API and operation.",
    );
    for ((api, op), c) in &by_op {
        let labels = format!("api=\"{}\",operation=\"{}\"", esc(api), esc(op));
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += c.buckets[i];
            let _ = writeln!(
                out,
                "ringway_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let total: u64 = c.buckets.iter().sum();
        let _ = writeln!(
            out,
            "ringway_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "ringway_request_duration_seconds_sum{{{labels}}} {}",
            c.sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "ringway_request_duration_seconds_count{{{labels}}} {total}"
        );
    }

    // Upstream counters by backend.
    let mut by_backend: Vec<(String, ringway_core::metrics::SeriesCounts)> = Vec::new();
    for ((_, _, backend), c) in &series {
        if backend.is_empty() {
            continue;
        }
        match by_backend.iter_mut().find(|(b, _)| b == backend) {
            Some((_, total)) => total.merge(c),
            None => by_backend.push((backend.clone(), (*c).clone())),
        }
    }
    type Pick = fn(&ringway_core::metrics::SeriesCounts) -> u64;
    let upstream: [(&str, &str, Pick); 4] = [
        (
            "ringway_upstream_connects_total",
            "Connections opened to upstream targets, by backend.",
            |c| c.upstream_connects,
        ),
        (
            "ringway_upstream_reuses_total",
            "Requests sent on a pooled upstream connection, by backend.",
            |c| c.upstream_reuses,
        ),
        (
            "ringway_upstream_connect_errors_total",
            "Upstream connects that failed, by backend.",
            |c| c.upstream_connect_errors,
        ),
        (
            "ringway_upstream_timeouts_total",
            "Upstream connects and responses that timed out, by backend.",
            |c| c.upstream_timeouts,
        ),
    ];
    for (name, help, pick) in upstream {
        header(&mut out, name, "counter", help);
        for (backend, c) in &by_backend {
            let _ = writeln!(out, "{name}{{backend=\"{}\"}} {}", esc(backend), pick(c));
        }
    }

    header(
        &mut out,
        "ringway_breaker_state",
        "gauge",
        "Each target's circuit breaker: 0 closed, 1 open, 2 half-open.",
    );
    for (backend, target, state, _) in &extras.targets {
        let _ = writeln!(
            out,
            "ringway_breaker_state{{backend=\"{}\",target=\"{}\"}} {state}",
            esc(backend),
            esc(target)
        );
    }
    header(
        &mut out,
        "ringway_target_healthy",
        "gauge",
        "Whether each target passes its health checks (1 without checks).",
    );
    for (backend, target, _, healthy) in &extras.targets {
        let _ = writeln!(
            out,
            "ringway_target_healthy{{backend=\"{}\",target=\"{}\"}} {}",
            esc(backend),
            esc(target),
            u8::from(*healthy)
        );
    }

    header(
        &mut out,
        "ringway_policy_rejections_total",
        "counter",
        "Requests refused by a rate limit, a quota or a concurrency limit, by API.",
    );
    let mut by_api: Vec<(String, [u64; 3])> = Vec::new();
    for ((api, _, _), c) in &series {
        match by_api.iter_mut().find(|(a, _)| a == api) {
            Some((_, r)) => {
                for (x, y) in r.iter_mut().zip(c.rejected) {
                    *x += y;
                }
            }
            None => by_api.push((api.clone(), c.rejected)),
        }
    }
    for (api, rejected) in &by_api {
        for (kind, n) in ["rate_limit", "quota", "concurrency"].iter().zip(rejected) {
            if *n > 0 {
                let _ = writeln!(
                    out,
                    "ringway_policy_rejections_total{{api=\"{}\",kind=\"{kind}\"}} {n}",
                    esc(api)
                );
            }
        }
    }

    let hits: u64 = series.iter().map(|(_, c)| c.cache_hits).sum();
    let misses: u64 = series.iter().map(|(_, c)| c.cache_misses).sum();
    let plain: [(&str, &str, &str, String); 10] = [
        (
            "ringway_cache_hits_total",
            "counter",
            "Requests answered from the response cache.",
            hits.to_string(),
        ),
        (
            "ringway_cache_misses_total",
            "counter",
            "Cache lookups that found nothing.",
            misses.to_string(),
        ),
        (
            "ringway_cache_bytes",
            "gauge",
            "Bytes held by the response caches of all cores.",
            m.cache_bytes.to_string(),
        ),
        (
            "ringway_cache_entries",
            "gauge",
            "Entries in the response caches of all cores.",
            m.cache_entries.to_string(),
        ),
        (
            "ringway_bad_requests_total",
            "counter",
            "Requests refused as malformed before routing.",
            m.bad_requests.to_string(),
        ),
        (
            "ringway_connections_open",
            "gauge",
            "Client connections open.",
            m.connections_open.to_string(),
        ),
        (
            "ringway_access_log_lines_total",
            "counter",
            "Access-log lines written.",
            extras.access_log.0.to_string(),
        ),
        (
            "ringway_access_log_dropped_total",
            "counter",
            "Access-log lines dropped because the writer fell behind.",
            extras.access_log.1.to_string(),
        ),
        (
            "ringway_spans_exported_total",
            "counter",
            "Spans sent to the OTLP collector.",
            extras.spans.0.to_string(),
        ),
        (
            "ringway_spans_dropped_total",
            "counter",
            "Spans dropped (queue full or export failed).",
            extras.spans.1.to_string(),
        ),
    ];
    for (name, kind, help, value) in plain {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }

    header(
        &mut out,
        "ringway_tls_handshakes_total",
        "counter",
        "TLS handshakes on the listeners, by outcome.",
    );
    for (kind, value) in [
        ("full", m.tls_full),
        ("resumed", m.tls_resumed),
        ("failed", m.tls_failed),
    ] {
        let _ = writeln!(
            out,
            "ringway_tls_handshakes_total{{kind=\"{kind}\"}} {value}"
        );
    }

    header(
        &mut out,
        "ringway_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    let _ = writeln!(
        out,
        "ringway_reloads_total{{result=\"success\"}} {}",
        extras.reloads_ok
    );
    let _ = writeln!(
        out,
        "ringway_reloads_total{{result=\"failure\"}} {}",
        extras.reloads_failed
    );
    header(
        &mut out,
        "ringway_reload_duration_seconds",
        "gauge",
        "The last successful reload: from its trigger to every worker switched.",
    );
    let _ = writeln!(
        out,
        "ringway_reload_duration_seconds {}",
        extras.last_reload_seconds
    );
    if let Some((up, [leases, errors, fallbacks, down, back])) = extras.cluster {
        header(
            &mut out,
            "ringway_cluster_redis_up",
            "gauge",
            "Whether the cluster's Redis answers (0: cluster-wide limits fall back).",
        );
        let _ = writeln!(out, "ringway_cluster_redis_up {}", u8::from(up));
        let counters: [(&str, &str, u64); 5] = [
            (
                "ringway_cluster_leases_total",
                "Lease calls to Redis for cluster-wide limits.",
                leases,
            ),
            (
                "ringway_cluster_lease_errors_total",
                "Lease calls that failed or timed out.",
                errors,
            ),
            (
                "ringway_cluster_fallbacks_total",
                "Requests a cluster-wide limit decided by itself while Redis was unavailable.",
                fallbacks,
            ),
            (
                "ringway_cluster_redis_unavailable_total",
                "Times Redis became unavailable.",
                down,
            ),
            (
                "ringway_cluster_redis_recovered_total",
                "Times Redis answered again after being unavailable.",
                back,
            ),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    if let Some([version, rejected, published, received]) = extras.cluster_sync {
        header(
            &mut out,
            "ringway_cluster_config_version",
            "gauge",
            "The version of the cluster's shared configuration this node serves (0: none).",
        );
        let _ = writeln!(out, "ringway_cluster_config_version {version}");
        let counters: [(&str, &str, u64); 3] = [
            (
                "ringway_cluster_config_rejected_total",
                "Configurations pushed by other nodes that did not validate here (the one in force kept serving).",
                rejected,
            ),
            (
                "ringway_cluster_purges_published_total",
                "Cache purges made on this node and published to the others.",
                published,
            ),
            (
                "ringway_cluster_purges_received_total",
                "Cache purges received from other nodes and applied here.",
                received,
            ),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringway_core::metrics::WorkerMetrics;
    use std::time::Duration;

    #[test]
    fn renders_series_and_cumulative_histograms() {
        let w = WorkerMetrics::default();
        let key = crate::control::labels::series_key(
            crate::control::labels::route("orders", "get-order"),
            crate::control::labels::backend("orders-backend"),
        );
        for (status, us) in [(200, 300), (200, 3_000), (503, 30_000)] {
            w.record_request(status, Duration::from_micros(us));
            w.record_series(
                key,
                None,
                status,
                Duration::from_micros(us),
                Default::default(),
            );
        }
        w.tls_handshake(true);
        let text = render(&w.snapshot(), 2, &Extras::default());
        let labels = "api=\"orders\",operation=\"get-order\"";
        assert!(
            text.contains(&format!(
                "ringway_requests_total{{{labels},backend=\"orders-backend\",class=\"2xx\"}} 2\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "ringway_request_duration_seconds_bucket{{{labels},le=\"0.0005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "ringway_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "ringway_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "ringway_request_duration_seconds_count{{{labels}}} 3\n"
        )));
        assert!(text.contains("ringway_tls_handshakes_total{kind=\"resumed\"} 1\n"));
        assert!(text.contains("ringway_workers 2\n"));
        // Every sample line belongs to a declared metric.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {base} ")), "{line}");
        }
    }
}
