//! What a runner measured, and its renderings: a table for the terminal, JSON, markdown (for
//! `docs/benchmarks.md`) and an SVG chart ([`svg`]), written under `bench/results/`.
//!
//! Single runs are kept as they were; summaries are medians over rounds, because on a shared
//! VM one run in a few is off by far more than the differences being measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::load::Measured;
use super::Error;

mod svg;

pub use svg::{render_svg, Chart};

/// One measured run of one contender.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub round: usize,
    pub contender: String,
    pub workers: usize,
    pub body: String,
    /// `saturation` or `N/s`.
    pub mode: String,
    pub measured: Measured,
    /// The proxy's CPU (its process tree's utime+stime) per request, in microseconds.
    pub proxy_cpu_us: f64,
    /// The origin's, over the same window.
    pub origin_cpu_us: f64,
    /// How many CPUs the origin had to itself (0: shared with the others).
    pub origin_cpus: usize,
    /// The proxy's peak RSS in KiB (sum over its processes), at the end of its round.
    pub peak_rss_kib: u64,
}

impl Run {
    /// The proxy's CPU per request divided by the origin's: the figure that host drift cancels
    /// out of.
    pub fn normalised(&self) -> f64 {
        super::normalised(self.proxy_cpu_us, self.origin_cpu_us)
    }

    /// TLS runs with a connection per request: handshakes a second.
    pub fn handshakes_per_s(&self) -> Option<f64> {
        self.handshaking().map(|t| t.handshakes_per_s)
    }

    /// Resumed handshakes a second.
    pub fn resumed_per_s(&self) -> Option<f64> {
        self.handshaking().map(|t| t.resumed_per_s)
    }

    /// The proxy's CPU per handshake in microseconds: its CPU over the run ÷ handshakes.
    pub fn cpu_us_per_handshake(&self) -> Option<f64> {
        self.handshaking()
            .map(|t| self.proxy_cpu_us * self.measured.requests.max(1) as f64 / t.handshakes as f64)
    }

    /// The TLS figures of a run with a connection per request.
    fn handshaking(&self) -> Option<&super::load::TlsMeasured> {
        self.measured
            .tls
            .as_ref()
            .filter(|t| t.new_connection && t.handshakes > 0)
    }
}

/// Medians of the runs of one (contender, workers, body, mode).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub contender: String,
    pub workers: usize,
    pub body: String,
    pub mode: String,
    pub runs: usize,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: Option<f64>,
    /// Summed over the runs.
    pub errors: u64,
    pub proxy_cpu_us: f64,
    pub origin_cpu_us: f64,
    /// The largest of the runs' (0: shared).
    pub origin_cpus: usize,
    pub normalised: f64,
    /// The largest of the runs'.
    pub peak_rss_kib: u64,
    /// TLS runs with a connection per request (medians of those that made handshakes).
    pub handshakes_per_s: Option<f64>,
    pub resumed_per_s: Option<f64>,
    pub cpu_us_per_handshake: Option<f64>,
}

/// The median; the mean of the middle two for an even count.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Groups runs by (contender, workers, body, mode) in the order first seen.
pub fn summarize(runs: &[Run]) -> Vec<Row> {
    let mut keys: Vec<(String, usize, String, String)> = Vec::new();
    for r in runs {
        let key = (
            r.contender.clone(),
            r.workers,
            r.body.clone(),
            r.mode.clone(),
        );
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(contender, workers, body, mode)| {
            let group: Vec<&Run> = runs
                .iter()
                .filter(|r| {
                    r.contender == contender
                        && r.workers == workers
                        && r.body == body
                        && r.mode == mode
                })
                .collect();
            let med =
                |f: &dyn Fn(&Run) -> f64| median(&group.iter().map(|r| f(r)).collect::<Vec<_>>());
            let p999: Vec<f64> = group.iter().filter_map(|r| r.measured.p999_us).collect();
            let some_median = |f: &dyn Fn(&Run) -> Option<f64>| {
                let v: Vec<f64> = group.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| median(&v))
            };
            Row {
                handshakes_per_s: some_median(&Run::handshakes_per_s),
                resumed_per_s: some_median(&Run::resumed_per_s),
                cpu_us_per_handshake: some_median(&Run::cpu_us_per_handshake),
                runs: group.len(),
                rps: med(&|r| r.measured.rps),
                p50_us: med(&|r| r.measured.p50_us),
                p99_us: med(&|r| r.measured.p99_us),
                p999_us: (!p999.is_empty()).then(|| median(&p999)),
                errors: group.iter().map(|r| r.measured.errors).sum(),
                proxy_cpu_us: med(&|r| r.proxy_cpu_us),
                origin_cpu_us: med(&|r| r.origin_cpu_us),
                origin_cpus: group.iter().map(|r| r.origin_cpus).max().unwrap_or(0),
                normalised: med(&|r| r.normalised()),
                peak_rss_kib: group.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
                contender,
                workers,
                body,
                mode,
            }
        })
        .collect()
}

/// A table of text cells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Columns padded to their widest cell.
    pub fn text(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                std::iter::once(&self.headers[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.headers);
        out.push_str(&line(&vec!["---".to_string(); self.headers.len()]));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// `57,475`.
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `812 µs`, `3.40 ms`.
pub fn latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Everything a runner's invocation produced.
#[derive(Clone, Debug)]
pub struct Report {
    /// `peers` or `scaling`.
    pub kind: String,
    pub command: String,
    /// UTC, `2026-11-26 10:00`.
    pub date: String,
    pub machine: String,
    /// Lines saying how it was set up: versions, pinning, load.
    pub setup: Vec<String>,
    /// The contender the others are divided by (`nginx`), if it ran.
    pub baseline: Option<String>,
    /// The one the TLS contenders are divided by (`nginx-tls`), if it ran.
    pub tls_baseline: Option<String>,
    pub runs: Vec<Run>,
}

impl Report {
    pub fn summary_table(&self) -> Table {
        let scaling = self.kind == "scaling";
        let mut t = Table::new(&[
            "proxy",
            "workers",
            "body",
            "mode",
            "RPS",
            "p50",
            "p99",
            "p99.9",
            "errors",
            "CPU µs/req",
            "÷ origin's",
            "peak RSS",
        ]);
        let rows = summarize(&self.runs);
        let handshakes = rows.iter().any(|r| r.handshakes_per_s.is_some());
        if handshakes {
            t.headers
                .extend(["handshakes/s", "resumed/s", "CPU µs/handshake"].map(str::to_string));
        }
        for r in rows {
            let mut row = vec![
                r.contender.clone(),
                r.workers.to_string(),
                r.body.clone(),
                r.mode.clone(),
                thousands(r.rps),
                latency(r.p50_us),
                latency(r.p99_us),
                r.p999_us.map_or("-".into(), latency),
                r.errors.to_string(),
                format!("{:.2}", r.proxy_cpu_us),
                format!("{:.3}", r.normalised),
                mib(r.peak_rss_kib),
            ];
            if handshakes {
                row.push(r.handshakes_per_s.map_or("-".into(), thousands));
                row.push(r.resumed_per_s.map_or("-".into(), thousands));
                row.push(
                    r.cpu_us_per_handshake
                        .map_or("-".into(), |c| format!("{c:.2}")),
                );
            }
            t.rows.push(row);
        }
        if !scaling {
            // Every peer runs one worker: leave the column out.
            t.headers.remove(1);
            for row in &mut t.rows {
                row.remove(1);
            }
        }
        t
    }

    /// Each contender's medians divided by the baseline's, per body and mode.
    pub fn ratio_table(&self) -> Option<Table> {
        self.ratios(self.baseline.as_deref()?)
    }

    /// The same for the TLS contenders, divided by the TLS baseline's, with the handshake
    /// figures.
    pub fn tls_ratio_table(&self) -> Option<Table> {
        self.ratios(self.tls_baseline.as_deref()?)
    }

    fn ratios(&self, baseline: &str) -> Option<Table> {
        let rows = summarize(&self.runs);
        let baselines = [self.baseline.as_deref(), self.tls_baseline.as_deref()];
        let is_baseline = |c: &str| baselines.contains(&Some(c));
        let paired = |base: &Row, r: &Row| {
            !is_baseline(&r.contender) && r.body == base.body && r.mode == base.mode
        };
        let base_rows: Vec<&Row> = rows.iter().filter(|r| r.contender == baseline).collect();
        let handshakes = base_rows.iter().any(|b| {
            b.handshakes_per_s.is_some()
                || rows
                    .iter()
                    .any(|r| paired(b, r) && r.handshakes_per_s.is_some())
        });
        let mut t = Table::new(&[
            "body",
            "mode",
            "proxy",
            &format!("RPS ÷ {baseline}"),
            &format!("CPU/req ÷ {baseline}"),
            &format!("normalised CPU/req ÷ {baseline}"),
            &format!("p99 ÷ {baseline}"),
            &format!("peak RSS ÷ {baseline}"),
        ]);
        if handshakes {
            t.headers.extend([
                format!("handshakes/s ÷ {baseline}"),
                format!("CPU/handshake ÷ {baseline}"),
                format!("resumed/s ÷ {baseline}"),
            ]);
        }
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.3}", a / b)
            } else {
                "-".into()
            }
        };
        let some_ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "-".into(),
        };
        for base in base_rows {
            for r in rows.iter().filter(|r| paired(base, r)) {
                let mut row = vec![
                    r.body.clone(),
                    r.mode.clone(),
                    r.contender.clone(),
                    ratio(r.rps, base.rps),
                    ratio(r.proxy_cpu_us, base.proxy_cpu_us),
                    ratio(r.normalised, base.normalised),
                    ratio(r.p99_us, base.p99_us),
                    ratio(r.peak_rss_kib as f64, base.peak_rss_kib as f64),
                ];
                if handshakes {
                    row.push(some_ratio(r.handshakes_per_s, base.handshakes_per_s));
                    row.push(some_ratio(
                        r.cpu_us_per_handshake,
                        base.cpu_us_per_handshake,
                    ));
                    row.push(some_ratio(r.resumed_per_s, base.resumed_per_s));
                }
                t.rows.push(row);
            }
        }
        (!t.rows.is_empty()).then_some(t)
    }

    /// For scaling: RPS at each worker count against the one-worker figure, how many CPUs the
    /// proxy and the origin kept busy, and which of them set the rate.
    pub fn scaling_table(&self) -> Option<Table> {
        if self.kind != "scaling" {
            return None;
        }
        let rows = summarize(&self.runs);
        let one = rows.iter().find(|r| r.workers == 1).map(|r| r.rps);
        let mut t = Table::new(&[
            "workers",
            "RPS",
            "RPS per worker",
            "× one worker",
            "CPU µs/req",
            "÷ origin's",
            "proxy busy",
            "origin busy",
            "limited by",
        ]);
        for r in &rows {
            let busy = |us_per_req: f64| us_per_req * r.rps / 1e6;
            let (proxy_busy, origin_busy) = (busy(r.proxy_cpu_us), busy(r.origin_cpu_us));
            let full = |used: f64, of: usize| of > 0 && used >= 0.95 * of as f64;
            let limit = match (
                full(proxy_busy, r.workers),
                full(origin_busy, r.origin_cpus),
            ) {
                (true, true) => "proxy, origin",
                (true, false) => "proxy",
                (false, true) => "origin",
                (false, false) => "load or shared CPUs",
            };
            let of = |n: usize| {
                if n == 0 {
                    "shared".to_string()
                } else {
                    n.to_string()
                }
            };
            t.rows.push(vec![
                r.workers.to_string(),
                thousands(r.rps),
                thousands(r.rps / r.workers as f64),
                one.filter(|&o| o > 0.0)
                    .map_or("-".into(), |o| format!("{:.2}", r.rps / o)),
                format!("{:.2}", r.proxy_cpu_us),
                format!("{:.3}", r.normalised),
                format!("{proxy_busy:.2} of {}", r.workers),
                format!("{origin_busy:.2} of {}", of(r.origin_cpus)),
                limit.into(),
            ]);
        }
        Some(t)
    }

    pub fn runs_table(&self) -> Table {
        let mut t = Table::new(&[
            "round",
            "proxy",
            "workers",
            "body",
            "mode",
            "rps",
            "p99_us",
            "errors",
            "proxy_us_per_req",
            "origin_us_per_req",
            "ratio_to_origin",
        ]);
        let handshakes = self.runs.iter().any(|r| r.handshakes_per_s().is_some());
        if handshakes {
            t.headers.extend(
                [
                    "handshakes_per_s",
                    "resumed_per_s",
                    "proxy_us_per_handshake",
                ]
                .map(str::to_string),
            );
        }
        for r in &self.runs {
            let mut row = vec![
                r.round.to_string(),
                r.contender.clone(),
                r.workers.to_string(),
                r.body.clone(),
                // One word per column for tools that split on blanks.
                r.mode.replace(", ", ":").replace(' ', "-"),
                format!("{:.0}", r.measured.rps),
                format!("{:.0}", r.measured.p99_us),
                r.measured.errors.to_string(),
                format!("{:.2}", r.proxy_cpu_us),
                format!("{:.2}", r.origin_cpu_us),
                format!("{:.3}", r.normalised()),
            ];
            if handshakes {
                let cell = |v: Option<f64>, digits: usize| {
                    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
                };
                row.push(cell(r.handshakes_per_s(), 0));
                row.push(cell(r.resumed_per_s(), 0));
                row.push(cell(r.cpu_us_per_handshake(), 2));
            }
            t.rows.push(row);
        }
        t
    }

    /// What the terminal shows at the end.
    pub fn text(&self) -> String {
        let mut out = format!("\nmedians of {} run(s):\n", self.runs.len());
        out.push_str(&self.summary_table().text());
        if let Some(t) = self.scaling_table() {
            out.push_str("\nscaling:\n");
            out.push_str(&t.text());
        }
        if let Some(t) = self.ratio_table() {
            out.push_str(&format!(
                "\nratios to {}:\n",
                self.baseline.as_deref().unwrap_or("")
            ));
            out.push_str(&t.text());
        }
        if let Some(t) = self.tls_ratio_table() {
            out.push_str(&format!(
                "\nTLS, ratios to {}:\n",
                self.tls_baseline.as_deref().unwrap_or("")
            ));
            out.push_str(&t.text());
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Command:\n\n```sh\n{}\n```\n\nRun {} on {}.\n\n",
            self.command, self.date, self.machine
        );
        for line in &self.setup {
            let _ = writeln!(out, "- {line}");
        }
        out.push_str("\nMedians:\n\n");
        out.push_str(&self.summary_table().markdown());
        if let Some(t) = self.scaling_table() {
            out.push_str("\nScaling:\n\n");
            out.push_str(&t.markdown());
        }
        if let Some(t) = self.ratio_table() {
            let _ = write!(
                out,
                "\nRatios to {}:\n\n",
                self.baseline.as_deref().unwrap_or("")
            );
            out.push_str(&t.markdown());
        }
        if let Some(t) = self.tls_ratio_table() {
            let _ = write!(
                out,
                "\nTLS, ratios to {}:\n\n",
                self.tls_baseline.as_deref().unwrap_or("")
            );
            out.push_str(&t.markdown());
        }
        out.push_str("\nEvery run, in order:\n\n```\n");
        out.push_str(&self.runs_table().text());
        out.push_str("```\n");
        out
    }

    pub fn json(&self) -> Value {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "round": r.round,
                    "contender": r.contender,
                    "workers": r.workers,
                    "body": r.body,
                    "mode": r.mode,
                    "requests": r.measured.requests,
                    "duration_s": r.measured.duration_s,
                    "rps": r.measured.rps,
                    "latency_us": {
                        "p50": r.measured.p50_us,
                        "p99": r.measured.p99_us,
                        "p99_9": r.measured.p999_us,
                    },
                    "errors": r.measured.errors,
                    "proxy_cpu_us_per_request": r.proxy_cpu_us,
                    "origin_cpu_us_per_request": r.origin_cpu_us,
                    "origin_cpus": r.origin_cpus,
                    "cpu_ratio_to_origin": r.normalised(),
                    "peak_rss_kib": r.peak_rss_kib,
                    "tls": r.measured.tls.as_ref().map(|t| json!({
                        "handshakes": t.handshakes,
                        "resumed": t.resumed,
                        "handshakes_per_s": t.handshakes_per_s,
                        "resumed_per_s": t.resumed_per_s,
                        "proxy_cpu_us_per_handshake": r.cpu_us_per_handshake(),
                        "version": t.version,
                        "cipher_suite": t.cipher_suite,
                        "key_exchange": t.key_exchange,
                    })),
                })
            })
            .collect();
        let summary: Vec<Value> = summarize(&self.runs)
            .iter()
            .map(|r| {
                json!({
                    "contender": r.contender,
                    "workers": r.workers,
                    "body": r.body,
                    "mode": r.mode,
                    "runs": r.runs,
                    "rps": r.rps,
                    "latency_us": {"p50": r.p50_us, "p99": r.p99_us, "p99_9": r.p999_us},
                    "errors": r.errors,
                    "proxy_cpu_us_per_request": r.proxy_cpu_us,
                    "cpu_ratio_to_origin": r.normalised,
                    "peak_rss_kib": r.peak_rss_kib,
                    "handshakes_per_s": r.handshakes_per_s,
                    "resumed_per_s": r.resumed_per_s,
                    "proxy_cpu_us_per_handshake": r.cpu_us_per_handshake,
                })
            })
            .collect();
        let table = |t: Option<Table>| {
            t.map(|t| {
                let rows: Vec<Value> = t
                    .rows
                    .iter()
                    .map(|row| {
                        let m: BTreeMap<&str, &str> = t
                            .headers
                            .iter()
                            .map(String::as_str)
                            .zip(row.iter().map(String::as_str))
                            .collect();
                        json!(m)
                    })
                    .collect();
                Value::Array(rows)
            })
        };
        json!({
            "kind": self.kind,
            "command": self.command,
            "date": self.date,
            "machine": self.machine,
            "setup": self.setup,
            "baseline": self.baseline,
            "tls_baseline": self.tls_baseline,
            "runs": runs,
            "summary": summary,
            "ratios": table(self.ratio_table()),
            "tls_ratios": table(self.tls_ratio_table()),
            "scaling": table(self.scaling_table()),
        })
    }

    /// The charts: RPS, CPU per request and normalised CPU per request for each contender, body
    /// and mode (or worker count, for scaling).
    pub fn svg(&self) -> String {
        let rows = summarize(&self.runs);
        let scaling = self.kind == "scaling";
        let label = |r: &Row| {
            if scaling {
                format!("{} worker(s), {}", r.workers, r.body)
            } else {
                format!("{}, {}", r.body, r.mode)
            }
        };
        let mut groups: Vec<String> = Vec::new();
        let mut series: Vec<String> = Vec::new();
        for r in &rows {
            let g = label(r);
            if !groups.contains(&g) {
                groups.push(g);
            }
            if !series.contains(&r.contender) {
                series.push(r.contender.clone());
            }
        }
        let values = |f: &dyn Fn(&Row) -> f64| -> Vec<Vec<Option<f64>>> {
            groups
                .iter()
                .map(|g| {
                    series
                        .iter()
                        .map(|s| {
                            rows.iter()
                                .find(|r| &r.contender == s && &label(r) == g)
                                .map(f)
                        })
                        .collect()
                })
                .collect()
        };
        let mut charts = vec![
            Chart {
                title: "requests per second (median)".into(),
                groups: groups.clone(),
                series: series.clone(),
                values: values(&|r| r.rps),
            },
            Chart {
                title: "proxy CPU µs per request (median; lower is better)".into(),
                groups: groups.clone(),
                series: series.clone(),
                values: values(&|r| r.proxy_cpu_us),
            },
            Chart {
                title: "proxy CPU per request ÷ origin's (median; lower is better)".into(),
                groups: groups.clone(),
                series: series.clone(),
                values: values(&|r| r.normalised),
            },
        ];
        if rows.iter().any(|r| r.handshakes_per_s.is_some()) {
            let handshaking: Vec<usize> = (0..groups.len())
                .filter(|&g| {
                    rows.iter()
                        .any(|r| label(r) == groups[g] && r.handshakes_per_s.is_some())
                })
                .collect();
            let only = |v: Vec<Vec<Option<f64>>>| -> Vec<Vec<Option<f64>>> {
                handshaking.iter().map(|&g| v[g].clone()).collect()
            };
            let groups: Vec<String> = handshaking.iter().map(|&g| groups[g].clone()).collect();
            charts.push(Chart {
                title: "TLS handshakes per second (median)".into(),
                groups: groups.clone(),
                series: series.clone(),
                values: only(values(&|r| r.handshakes_per_s.unwrap_or(0.0))),
            });
            charts.push(Chart {
                title: "proxy CPU µs per TLS handshake (median; lower is better)".into(),
                groups,
                series: series.clone(),
                values: only(values(&|r| r.cpu_us_per_handshake.unwrap_or(0.0))),
            });
        }
        let title = format!(
            "Ringway bench {}: {}, {}",
            self.kind, self.date, self.machine
        );
        render_svg(&title, &charts)
    }

    /// Writes `<kind>-<stamp>.{json,md,svg}` into `dir`; returns the paths.
    pub fn write(&self, dir: &Path, stamp: &str) -> Result<Vec<PathBuf>, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Failed(format!("cannot create {}: {e}", dir.display())))?;
        let json = serde_json::to_string_pretty(&self.json()).expect("a Value serializes");
        let mut written = Vec::new();
        for (ext, contents) in [("json", json), ("md", self.markdown()), ("svg", self.svg())] {
            let path = dir.join(format!("{}-{stamp}.{ext}", self.kind));
            std::fs::write(&path, contents)
                .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// `(YYYY-MM-DD HH:MM, YYYYMMDD-HHMMSS)` in UTC for the current time.
pub fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// `(YYYY-MM-DD HH:MM, YYYYMMDD-HHMMSS)` for Unix time `secs` (Howard Hinnant's civil-from-days).
pub fn utc(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}"),
        format!("{year:04}{month:02}{day:02}-{h:02}{m:02}{s:02}"),
    )
}

#[cfg(test)]
mod tests;
