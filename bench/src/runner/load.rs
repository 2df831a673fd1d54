//! Driving load with `ringload` (or, for testing the runner without it, `wrk`) and reading what
//! it measured.
//!
//! ringload's contract: `--json FILE` writes `requests`, `duration_s`, `rps`, `target_rps`,
//! `latency_us` (p50, p90, p99, p99.9 written `p99_9` or `"p99.9"`, p99.99, max), `status`
//! (counts by code) and `errors` (counts by kind). wrk has no fixed-rate mode and no p99.9;
//! its runs leave those out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::process::{Spec, WorkDir};
use super::Error;

/// Which load generator drives the runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Driver {
    Ringload(PathBuf),
    Wrk,
}

impl Driver {
    /// Whether it can hold a fixed request rate (open loop).
    pub fn has_open_loop(&self) -> bool {
        matches!(self, Driver::Ringload(_))
    }
}

/// One run of load.
#[derive(Clone, Debug)]
pub struct Load {
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    /// None: closed loop (each connection sends as soon as it has its answer).
    pub rate: Option<u64>,
    /// Load generator threads.
    pub threads: usize,
    pub cpus: Vec<usize>,
}

/// What a run measured. Latencies in microseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: Option<f64>,
    /// Transport errors and timeouts, plus answers other than 2xx.
    pub errors: u64,
}

/// Runs `load` to completion (interrupts stop it) and returns what it measured.
pub fn run(driver: &Driver, load: &Load, dir: &WorkDir, tag: &str) -> Result<Measured, Error> {
    let log = dir.file(&format!("load-{tag}.log"));
    let secs = load.duration.as_secs_f64();
    let (spec, json) = match driver {
        Driver::Ringload(path) => {
            let json = dir.file(&format!("load-{tag}.json"));
            let mut args = vec![
                "-c".to_string(),
                load.connections.to_string(),
                "-d".to_string(),
                format!("{}ms", load.duration.as_millis()),
                "-w".to_string(),
                load.threads.to_string(),
                "--json".to_string(),
                json.display().to_string(),
            ];
            if let Some(rate) = load.rate {
                args.extend(["--rate".to_string(), rate.to_string()]);
            }
            args.push(load.url.clone());
            (Spec::new("ringload", path, &log).args(args), Some(json))
        }
        Driver::Wrk => {
            if load.rate.is_some() {
                return Err(Error::Failed("wrk has no fixed-rate mode".into()));
            }
            let args = [
                format!("-t{}", load.threads),
                format!("-c{}", load.connections.max(load.threads)),
                format!("-d{}s", secs.ceil().max(1.0)),
                "--latency".to_string(),
                load.url.clone(),
            ];
            (Spec::new("wrk", "wrk", &log).args(args), None)
        }
    };
    let name = spec.name.clone();
    let mut child = spec.cpus(&load.cpus).start()?;
    let status = child.wait(load.duration + Duration::from_secs(30))?;
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        return Err(Error::Failed(format!(
            "{name} exited with {status}:\n{}",
            child.log_tail()
        )));
    }
    match json {
        Some(json) => read_ringload_json(&json),
        None => parse_wrk(&output)
            .ok_or_else(|| Error::Failed(format!("cannot read wrk's output:\n{output}"))),
    }
}

fn read_ringload_json(path: &Path) -> Result<Measured, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Failed(format!("ringload wrote no {}: {e}", path.display())))?;
    parse_ringload_json(&text).map_err(|e| Error::Failed(format!("{}: {e}", path.display())))
}

/// Reads ringload's `--json` document.
pub fn parse_ringload_json(text: &str) -> Result<Measured, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let num = |v: &Value, key: &str| v.get(key).and_then(Value::as_f64);
    let need = |v: &Value, key: &str| num(v, key).ok_or_else(|| format!("no number `{key}`"));
    let latency = doc.get("latency_us").ok_or("no `latency_us`")?;
    let count_where = |key: &str, pred: &dyn Fn(&str) -> bool| -> u64 {
        doc.get(key).and_then(Value::as_object).map_or(0, |counts| {
            counts
                .iter()
                .filter(|(k, _)| pred(k))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
    };
    let not_2xx = count_where("status", &|code| !code.starts_with('2'));
    // By kind, perhaps with their sum as `total`.
    let failed = doc
        .get("errors")
        .and_then(|e| e.get("total"))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| count_where("errors", &|_| true));
    Ok(Measured {
        requests: need(&doc, "requests")? as u64,
        duration_s: need(&doc, "duration_s")?,
        rps: need(&doc, "rps")?,
        p50_us: need(latency, "p50")?,
        p99_us: need(latency, "p99")?,
        p999_us: num(latency, "p99_9").or_else(|| num(latency, "p99.9")),
        errors: not_2xx + failed,
    })
}

/// Reads `wrk --latency` output.
pub fn parse_wrk(text: &str) -> Option<Measured> {
    let mut m = Measured::default();
    let mut have = (false, false, false);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => m.p50_us = wrk_duration_us(v)?,
            ["99%", v] => {
                m.p99_us = wrk_duration_us(v)?;
                have.0 = true;
            }
            ["Requests/sec:", v] => {
                m.rps = v.parse().ok()?;
                have.1 = true;
            }
            // "  123456 requests in 10.00s, 15.00MB read"
            [n, "requests", "in", secs, ..] => {
                m.requests = n.parse().ok()?;
                m.duration_s = wrk_duration_us(secs.trim_end_matches(','))? / 1e6;
                have.2 = true;
            }
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                m.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => m.errors += n.parse::<u64>().ok()?,
            _ => {}
        }
    }
    (have.0 && have.1 && have.2).then_some(m)
}

/// `812.00us`, `3.40ms`, `1.02s`, `10.00s` in microseconds.
fn wrk_duration_us(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringload_json_reads_either_spelling_of_p99_9() {
        let doc = r#"{"requests": 600000, "duration_s": 10.0, "rps": 60000.0, "target_rps": null,
            "latency_us": {"p50": 800, "p90": 1500, "p99": 3400, "p99_9": 7000, "p99.99": 9000,
                           "max": 12000},
            "status": {"200": 599990, "502": 4}, "errors": {"connect": 1, "timeout": 5}}"#;
        let m = parse_ringload_json(doc).unwrap();
        assert_eq!(m.requests, 600000);
        assert_eq!(m.rps, 60000.0);
        assert_eq!(
            (m.p50_us, m.p99_us, m.p999_us),
            (800.0, 3400.0, Some(7000.0))
        );
        assert_eq!(m.errors, 10);
        let with_total = doc.replace("\"timeout\": 5}", "\"timeout\": 5, \"total\": 6}");
        assert_eq!(parse_ringload_json(&with_total).unwrap().errors, 10);
        let dotted = doc.replace("\"p99_9\"", "\"p99.9\"");
        assert_eq!(parse_ringload_json(&dotted).unwrap().p999_us, Some(7000.0));
        let without = doc.replace("\"p99_9\": 7000,", "");
        assert_eq!(parse_ringload_json(&without).unwrap().p999_us, None);
        assert!(parse_ringload_json(r#"{"requests": 1}"#).is_err());
        assert!(parse_ringload_json("not json").is_err());
    }

    #[test]
    fn wrk_output_is_read() {
        let out = "Running 10s test @ http://127.0.0.1:19001/16
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.11ms  297.39us   9.88ms   83.17%
    Req/Sec    57.80k     3.04k   61.55k    84.00%
  Latency Distribution
     50%    1.05ms
     75%    1.21ms
     90%    1.42ms
     99%  812.00us
  575264 requests in 10.00s, 82.29MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  57526.40
Transfer/sec:      8.23MB
";
        let m = parse_wrk(out).unwrap();
        assert_eq!(m.requests, 575264);
        assert_eq!(m.duration_s, 10.0);
        assert_eq!(m.rps, 57526.40);
        assert_eq!(m.p50_us, 1050.0);
        assert_eq!(m.p99_us, 812.0);
        assert_eq!(m.p999_us, None);
        assert_eq!(m.errors, 12);
        assert_eq!(parse_wrk("unable to connect"), None);
    }
}
