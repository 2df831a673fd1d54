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

/// Renders `m` (merged over `workers` workers).
pub fn render(m: &MetricsSnapshot, workers: usize) -> String {
    let mut out = String::with_capacity(4096);
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
        "ringway_requests_total",
        "counter",
        "Requests answered, by status class.",
    );
    for (i, class) in ["other", "1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            out,
            "ringway_requests_total{{class=\"{class}\"}} {}",
            m.status_classes[i]
        );
    }

    header(
        &mut out,
        "ringway_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to its answer's last.",
    );
    let h = &m.latency_us;
    for le in BUCKETS {
        let us = (le * 1e6) as u64;
        let count = if h.is_empty() {
            0
        } else {
            h.count_between(0, us)
        };
        let _ = writeln!(
            out,
            "ringway_request_duration_seconds_bucket{{le=\"{le}\"}} {count}"
        );
    }
    let total = h.len();
    let _ = writeln!(
        out,
        "ringway_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let sum_us: f64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum();
    let _ = writeln!(out, "ringway_request_duration_seconds_sum {}", sum_us / 1e6);
    let _ = writeln!(out, "ringway_request_duration_seconds_count {total}");

    let counters: [(&str, &str, u64); 4] = [
        (
            "ringway_upstream_connects_total",
            "Connections opened to upstream targets.",
            m.upstream_connects,
        ),
        (
            "ringway_upstream_reuses_total",
            "Requests sent on a pooled upstream connection.",
            m.upstream_reuses,
        ),
        (
            "ringway_upstream_connect_errors_total",
            "Upstream connects that failed.",
            m.upstream_connect_errors,
        ),
        (
            "ringway_bad_requests_total",
            "Requests refused as malformed before routing.",
            m.bad_requests,
        ),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, "counter", help);
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringway_core::metrics::WorkerMetrics;
    use std::time::Duration;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let w = WorkerMetrics::default();
        w.record_request(200, Duration::from_micros(300));
        w.record_request(200, Duration::from_millis(3));
        w.record_request(503, Duration::from_millis(30));
        w.tls_handshake(true);
        let text = render(&w.snapshot(), 2);
        assert!(
            text.contains("ringway_requests_total{class=\"2xx\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ringway_requests_total{class=\"5xx\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ringway_request_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("ringway_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("ringway_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("ringway_request_duration_seconds_count 3\n"));
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
