//! Driving load with `ringload` (or, for testing the runner without it, `wrk`) and reading what
//! it measured.
//!
//! ringload's contract: `--json FILE` writes `requests`, `duration_s`, `rps`, `target_rps`,
//! `latency_us` (p50, p90, p99, p99.9 written `p99_9` or `"p99.9"`, p99.99, max), `status`
//! (counts by code) and `errors` (counts by kind); over TLS also `tls` {`handshakes`,
//! `full`, `resumed`, `versions`, `cipher_suite`, `key_exchange`}. wrk has no fixed-rate mode,
//! no p99.9 and no connection per request; its runs leave those out.

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
    /// One connection per request (`--new-connection`).
    pub new_connection: bool,
    /// For `https://` URLs: the client's TLS settings.
    pub tls: Option<TlsLoad>,
}

/// How the load generator speaks TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsLoad {
    /// Offer sessions from earlier connections (`--tls-resume on`).
    pub resume: bool,
    /// `1.2` or `1.3`.
    pub version: &'static str,
}

impl Load {
    /// ringload's arguments for this load.
    pub fn ringload_args(&self, json: &Path) -> Vec<String> {
        let mut args = vec![
            "-c".to_string(),
            self.connections.to_string(),
            "-d".to_string(),
            format!("{}ms", self.duration.as_millis()),
            "-w".to_string(),
            self.threads.to_string(),
            "--json".to_string(),
            json.display().to_string(),
        ];
        if let Some(rate) = self.rate {
            args.extend(["--rate".to_string(), rate.to_string()]);
        }
        if self.new_connection {
            args.push("--new-connection".to_string());
        }
        if let Some(tls) = &self.tls {
            // The run's own certificate: the chain is not checked, every handshake
            // signature is.
            args.push("-k".to_string());
            args.extend(["--tls-version".to_string(), tls.version.to_string()]);
            let resume = if tls.resume { "on" } else { "off" };
            args.extend(["--tls-resume".to_string(), resume.to_string()]);
        }
        args.push(self.url.clone());
        args
    }
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
    /// Over TLS: the handshakes of the run.
    pub tls: Option<TlsMeasured>,
}

/// The TLS handshakes a run made (connections opened during it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsMeasured {
    /// The run opened a connection per request (its handshakes are the point of it; a
    /// keep-alive run's are the few whose connections opened late).
    pub new_connection: bool,
    pub handshakes: u64,
    pub resumed: u64,
    pub handshakes_per_s: f64,
    pub resumed_per_s: f64,
    /// `TLSv1.3`, or several with their counts.
    pub version: String,
    pub cipher_suite: String,
    pub key_exchange: String,
}

/// Runs `load` to completion (interrupts stop it) and returns what it measured.
pub fn run(driver: &Driver, load: &Load, dir: &WorkDir, tag: &str) -> Result<Measured, Error> {
    let log = dir.file(&format!("load-{tag}.log"));
    let secs = load.duration.as_secs_f64();
    let (spec, json) = match driver {
        Driver::Ringload(path) => {
            let json = dir.file(&format!("load-{tag}.json"));
            let args = load.ringload_args(&json);
            (Spec::new("ringload", path, &log).args(args), Some(json))
        }
        Driver::Wrk => {
            if load.rate.is_some() {
                return Err(Error::Failed("wrk has no fixed-rate mode".into()));
            }
            if load.new_connection || load.tls.is_some() {
                return Err(Error::Failed(
                    "the TLS runs need ringload (--driver ringload)".into(),
                ));
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
        tls: doc.get("tls").filter(|t| t.is_object()).map(|t| {
            let count = |key: &str| t.get(key).and_then(Value::as_u64).unwrap_or(0);
            let text = |key: &str| {
                t.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let versions: Vec<(String, u64)> = t
                .get("versions")
                .and_then(Value::as_object)
                .map(|v| {
                    v.iter()
                        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            let version = match versions.as_slice() {
                [(only, _)] => only.clone(),
                several => several
                    .iter()
                    .map(|(v, n)| format!("{v} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            TlsMeasured {
                new_connection: doc.get("new_connection").and_then(Value::as_bool) == Some(true),
                handshakes: count("handshakes"),
                resumed: count("resumed"),
                handshakes_per_s: num(t, "handshakes_per_s").unwrap_or(0.0),
                resumed_per_s: num(t, "resumed_per_s").unwrap_or(0.0),
                version,
                cipher_suite: text("cipher_suite"),
                key_exchange: text("key_exchange"),
            }
        }),
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
        assert_eq!(m.tls, None);
        let plain = doc.replace("\"errors\"", "\"tls\": null, \"errors\"");
        assert_eq!(parse_ringload_json(&plain).unwrap().tls, None);
    }

    #[test]
    fn ringload_json_gives_the_handshakes() {
        let doc = r#"{"requests": 30000, "duration_s": 10.0, "rps": 3000.0,
            "latency_us": {"p50": 800, "p99": 3400, "p99.9": 7000},
            "status": {"200": 30000}, "errors": {"total": 0},
            "connections_opened": 30000, "new_connection": true,
            "tls": {"resumption": "on", "handshakes": 30000, "handshakes_per_s": 3000.0,
                    "full": 64, "resumed": 29936, "resumed_per_s": 2993.6,
                    "versions": {"TLSv1.3": 30000}, "cipher_suite": "TLS13_AES_256_GCM_SHA384",
                    "key_exchange": "X25519"}}"#;
        let tls = parse_ringload_json(doc).unwrap().tls.unwrap();
        assert!(tls.new_connection);
        assert_eq!((tls.handshakes, tls.resumed), (30000, 29936));
        assert_eq!(tls.handshakes_per_s, 3000.0);
        assert_eq!(tls.resumed_per_s, 2993.6);
        assert_eq!(tls.version, "TLSv1.3");
        assert_eq!(tls.cipher_suite, "TLS13_AES_256_GCM_SHA384");
        assert_eq!(tls.key_exchange, "X25519");
        let keep_alive = doc.replace("\"new_connection\": true", "\"new_connection\": false");
        assert!(
            !parse_ringload_json(&keep_alive)
                .unwrap()
                .tls
                .unwrap()
                .new_connection
        );
    }

    #[test]
    fn ringload_arguments_for_each_tls_mode() {
        let json = Path::new("/tmp/l.json");
        let mut load = Load {
            url: "https://127.0.0.1:8443/1k".into(),
            connections: 64,
            duration: Duration::from_secs(10),
            rate: None,
            threads: 1,
            cpus: vec![0],
            new_connection: false,
            tls: Some(TlsLoad {
                resume: true,
                version: "1.3",
            }),
        };
        let line = |l: &Load| l.ringload_args(json).join(" ");
        assert_eq!(
            line(&load),
            "-c 64 -d 10000ms -w 1 --json /tmp/l.json -k --tls-version 1.3 --tls-resume on \
             https://127.0.0.1:8443/1k"
        );
        load.new_connection = true;
        load.rate = Some(1000);
        load.tls.as_mut().unwrap().resume = false;
        assert_eq!(
            line(&load),
            "-c 64 -d 10000ms -w 1 --json /tmp/l.json --rate 1000 --new-connection -k \
             --tls-version 1.3 --tls-resume off https://127.0.0.1:8443/1k"
        );
        load.tls = None;
        load.new_connection = false;
        load.rate = None;
        load.url = "http://127.0.0.1:8080/16".into();
        assert_eq!(
            line(&load),
            "-c 64 -d 10000ms -w 1 --json /tmp/l.json http://127.0.0.1:8080/16"
        );
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
        assert_eq!(m.tls, None);
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
