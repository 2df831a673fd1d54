//! The results of a run, as text for people, as JSON for programs, and as an HdrHistogram
//! interval log.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::stats::{ErrorKind, Stats};

/// The percentiles reported, with their names.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// A finished run.
pub struct Summary {
    pub urls: Vec<String>,
    pub connections: usize,
    pub workers: usize,
    pub driver: String,
    pub pipeline: usize,
    /// `--new-connection`.
    pub new_connection: bool,
    /// `--tls-resume`, when some URL is `https://`.
    pub tls_resume: Option<bool>,
    pub target_rps: Option<f64>,
    pub duration: Duration,
    pub stats: Stats,
}

impl Summary {
    pub fn rps(&self) -> f64 {
        per_second(self.stats.responses, self.duration)
    }

    pub fn bytes_per_s(&self) -> f64 {
        per_second(self.stats.bytes, self.duration)
    }

    pub fn text(&self) -> String {
        let s = &self.stats;
        let h = &s.latency_us;
        let mode = match self.target_rps {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_string(),
        };
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        line(format!(
            "{}: {mode}, {} connections{}, {} worker{} ({}){}",
            self.urls.join(" "),
            self.connections,
            if self.new_connection {
                " (a new one per request)"
            } else {
                ""
            },
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            self.driver,
            if self.pipeline > 1 {
                format!(", pipeline {}", self.pipeline)
            } else {
                String::new()
            }
        ));
        line(format!(
            "  requests  {} in {:.2}s, {} read",
            s.responses,
            self.duration.as_secs_f64(),
            bytes(s.bytes as f64)
        ));
        let target = match self.target_rps {
            Some(r) => format!(
                "  (target {r:.1}, {:+.2} %)",
                (self.rps() / r - 1.0) * 100.0
            ),
            None => String::new(),
        };
        line(format!("  rate      {:.1} req/s{target}", self.rps()));
        line(format!("  transfer  {}/s", bytes(self.bytes_per_s())));
        let c = &s.connections;
        if c.opened > 0 || self.new_connection || self.tls_resume.is_some() {
            line(format!(
                "  connects  {} opened, {:.1}/s",
                c.opened,
                per_second(c.opened, self.duration)
            ));
        }
        if let Some(resume) = self.tls_resume {
            let mut negotiated: Vec<String> =
                c.versions.iter().map(|(v, n)| format!("{v} {n}")).collect();
            negotiated.extend(c.cipher_suite.map(str::to_string));
            negotiated.extend(c.key_exchange.map(str::to_string));
            line(format!(
                "  tls       {} handshakes, {:.1}/s: {} full, {} resumed ({:.1}/s); resumption {}{}",
                c.handshakes(),
                per_second(c.handshakes(), self.duration),
                c.full,
                c.resumed,
                per_second(c.resumed, self.duration),
                if resume { "on" } else { "off" },
                if negotiated.is_empty() {
                    String::new()
                } else {
                    format!("; {}", negotiated.join(", "))
                }
            ));
        }
        if s.responses > 0 {
            line(format!(
                "  latency   mean {}  stdev {}  min {}  max {}",
                micros(h.mean()),
                micros(h.stdev()),
                micros(h.min() as f64),
                micros(h.max() as f64)
            ));
            let pct: Vec<String> = PERCENTILES
                .iter()
                .map(|&(name, p)| format!("{name} {}", micros(h.value_at_percentile(p) as f64)))
                .collect();
            line(format!("            {}", pct.join("  ")));
        }
        let statuses: Vec<String> = s.statuses().map(|(c, n)| format!("{c}: {n}")).collect();
        if !statuses.is_empty() {
            line(format!("  status    {}", statuses.join("  ")));
        }
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|&k| format!("{} {}", k.name(), s.errors[k as usize]))
            .collect();
        line(format!(
            "  errors    {} ({})",
            s.total_errors(),
            errors.join(", ")
        ));
        out
    }

    pub fn json(&self) -> Value {
        let s = &self.stats;
        let h = &s.latency_us;
        let mut latency = Map::new();
        let has = s.responses > 0;
        let value = |v: u64| if has { json!(v) } else { Value::Null };
        latency.insert("min".into(), value(h.min()));
        latency.insert(
            "mean".into(),
            if has { json!(h.mean()) } else { Value::Null },
        );
        latency.insert(
            "stdev".into(),
            if has { json!(h.stdev()) } else { Value::Null },
        );
        for (name, p) in PERCENTILES {
            latency.insert(name.into(), value(h.value_at_percentile(p)));
        }
        latency.insert("max".into(), value(h.max()));
        let status: Map<String, Value> = s
            .statuses()
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect();
        let mut errors: Map<String, Value> = ErrorKind::ALL
            .iter()
            .map(|&k| (k.name().to_string(), json!(s.errors[k as usize])))
            .collect();
        errors.insert("total".into(), json!(s.total_errors()));
        let c = &s.connections;
        let tls = self.tls_resume.map(|resume| {
            let versions: Map<String, Value> = c
                .versions
                .iter()
                .map(|(v, n)| (v.to_string(), json!(n)))
                .collect();
            json!({
                "resumption": if resume { "on" } else { "off" },
                "handshakes": c.handshakes(),
                "handshakes_per_s": per_second(c.handshakes(), self.duration),
                "full": c.full,
                "resumed": c.resumed,
                "resumed_per_s": per_second(c.resumed, self.duration),
                "versions": versions,
                "cipher_suite": c.cipher_suite,
                "key_exchange": c.key_exchange,
            })
        });
        json!({
            "urls": self.urls,
            "mode": if self.target_rps.is_some() { "open" } else { "closed" },
            "connections": self.connections,
            "workers": self.workers,
            "driver": self.driver,
            "pipeline": self.pipeline,
            "new_connection": self.new_connection,
            "requests": s.responses,
            "duration_s": self.duration.as_secs_f64(),
            "rps": self.rps(),
            "target_rps": self.target_rps,
            "bytes": s.bytes,
            "bytes_per_s": self.bytes_per_s(),
            "latency_us": latency,
            "status": status,
            "errors": errors,
            "error_rate": s.error_rate(),
            "connections_opened": c.opened,
            "connections_opened_per_s": per_second(c.opened, self.duration),
            "tls": tls,
        })
    }
}

fn per_second(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.0}us")
    }
}

fn bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.2} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

/// Writes `content` to `path`, or to stdout for `-`.
pub fn write_file(path: &Path, content: &str) -> io::Result<()> {
    if path == Path::new("-") {
        let mut out = io::stdout().lock();
        out.write_all(content.as_bytes())?;
        out.flush()
    } else {
        std::fs::write(path, content)
    }
}

/// Writes an HdrHistogram interval log: one histogram (microseconds) per second of measurement,
/// stamped relative to `start`.
pub fn write_hdr_log(
    path: &Path,
    start: SystemTime,
    intervals: &[(u32, Histogram<u64>)],
    last_end: Duration,
) -> io::Result<()> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("ringload latency log, values in microseconds")
        .with_start_time(start)
        .with_base_time(start)
        .begin_log_with(&mut out, &mut serializer)?;
    for (second, h) in intervals {
        let from = Duration::from_secs(*second as u64);
        let length = (last_end.saturating_sub(from)).min(Duration::from_secs(1));
        log.write_histogram(h, from, length, None)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
    }
    drop(log);
    write_file(path, &String::from_utf8_lossy(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_promised_fields() {
        let mut stats = Stats::default();
        stats.response(200, Duration::from_micros(120));
        stats.response(503, Duration::from_micros(900));
        stats.error(ErrorKind::Reset);
        let summary = Summary {
            urls: vec!["http://x/".into()],
            connections: 2,
            workers: 1,
            driver: "epoll".into(),
            pipeline: 1,
            new_connection: false,
            tls_resume: None,
            target_rps: Some(10.0),
            duration: Duration::from_secs(1),
            stats,
        };
        let v = summary.json();
        for key in [
            "requests",
            "duration_s",
            "rps",
            "target_rps",
            "latency_us",
            "status",
            "errors",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["requests"], 2);
        assert_eq!(v["status"]["503"], 1);
        assert_eq!(v["errors"]["reset"], 1);
        assert!(v["latency_us"]["p99.99"].as_u64().unwrap() >= 899);
        assert!(summary.text().contains("p99.9 "));
        assert_eq!(v["tls"], Value::Null);
        assert_eq!(v["connections_opened"], 0);
        assert!(!summary.text().contains("tls "));
    }

    #[test]
    fn handshakes_are_reported() {
        let mut stats = Stats::default();
        let full = crate::client::Handshake {
            resumed: false,
            version: Some(rustls::ProtocolVersion::TLSv1_3),
            suite: Some("TLS13_AES_256_GCM_SHA384"),
            group: Some("X25519"),
        };
        for resumed in [false, true, true, true] {
            stats.response(200, Duration::from_micros(300));
            stats.opened(Some(crate::client::Handshake { resumed, ..full }));
        }
        let summary = Summary {
            urls: vec!["https://x/".into()],
            connections: 1,
            workers: 1,
            driver: "epoll".into(),
            pipeline: 1,
            new_connection: true,
            tls_resume: Some(true),
            target_rps: None,
            duration: Duration::from_secs(2),
            stats,
        };
        let v = summary.json();
        assert_eq!(v["new_connection"], true);
        assert_eq!(v["connections_opened"], 4);
        assert_eq!(v["connections_opened_per_s"], 2.0);
        let tls = &v["tls"];
        assert_eq!(tls["resumption"], "on");
        assert_eq!(tls["handshakes"], 4);
        assert_eq!(tls["full"], 1);
        assert_eq!(tls["resumed"], 3);
        assert_eq!(tls["resumed_per_s"], 1.5);
        assert_eq!(tls["handshakes_per_s"], 2.0);
        assert_eq!(tls["versions"]["TLSv1.3"], 4);
        assert_eq!(tls["cipher_suite"], "TLS13_AES_256_GCM_SHA384");
        assert_eq!(tls["key_exchange"], "X25519");
        let text = summary.text();
        assert!(text.contains("(a new one per request)"), "{text}");
        assert!(text.contains("connects  4 opened, 2.0/s"), "{text}");
        assert!(
            text.contains("tls       4 handshakes, 2.0/s: 1 full, 3 resumed (1.5/s)"),
            "{text}"
        );
    }
}
