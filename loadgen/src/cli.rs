//! The command line: flags in the wrk/oha tradition, parsed by hand into [`Options`].
//!
//! Every mistake becomes one line of text for the user (the caller prints it and exits 2).
//! Short flags take their value attached or separate (`-c64`, `-c 64`), long ones with `=` or
//! separate (`--rate=100`, `--rate 100`). Only syntax is checked here; URLs are parsed by
//! [`crate::target`].

use std::path::PathBuf;
use std::time::Duration;

use crate::client::TlsVersion;

pub const USAGE: &str = "\
usage: ringload [options] URL...

  -c, --connections N    connections to keep open, over all workers (default 50)
  -d, --duration DUR     how long to run after warm-up (default 10s); e.g. 500ms, 10s, 1m
  -n, --requests N       send exactly N requests instead of running for a duration
  -w, --workers N        worker threads, one pinned per CPU (default: CPUs, at most -c)
  -R, --rate RPS         open loop: send RPS requests a second in total, latency measured
                         from each request's intended send time (default: closed loop)
      --warmup DUR       run load for DUR first and discard what it measured (default 0)
  -p, --pipeline N       requests in flight per connection, written together (default 1)
  -m, --method M         request method (default GET)
  -H, --header 'N: v'    add a request header (repeatable)
      --body-file F      send the contents of F as the request body
      --weights W,W...   relative share of connections for each URL (default equal)
      --timeout DUR      per request; past it the request is a timeout error and its
                         connection is reopened (default 10s)
      --new-connection   one request per connection: send `Connection: close` and open a
                         new connection (TCP, and TLS for https) for every request; latency
                         includes the connect and the handshake
  -k, --insecure         do not verify TLS certificates
      --sni NAME         TLS server name to send (default: the URL's host)
      --tls-version V    1.2 or 1.3: offer only that version (default both)
      --tls-resume on|off
                         on: a new connection offers a session an earlier one of its worker
                         was given (TLS 1.3 ticket, TLS 1.2 session id or ticket); off: no
                         session is kept or offered, every handshake is full (default on)
      --json FILE        also write the results as JSON to FILE ('-' for stdout)
      --hdr-log FILE     write an HdrHistogram interval log (1 s intervals) to FILE
      --max-error-rate F exit 1 when errors / (responses + errors) exceeds F (0..1)
      --driver D         auto, io_uring or epoll (default auto)
      --ring-flags F     io_uring setup: defer, coop or none (default defer)
  -h, --help             this text
  -V, --version          the version
";

/// Everything the command line asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub connections: usize,
    pub stop: Stop,
    pub workers: Option<usize>,
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub pipeline: usize,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body_file: Option<PathBuf>,
    pub weights: Option<Vec<u32>>,
    pub timeout: Duration,
    pub new_connection: bool,
    pub insecure: bool,
    pub sni: Option<String>,
    pub tls_version: TlsVersion,
    pub tls_resume: bool,
    pub json: Option<PathBuf>,
    pub hdr_log: Option<PathBuf>,
    pub max_error_rate: Option<f64>,
    pub driver: ringway_core::runtime::Driver,
    pub ring_flags: ringway_core::runtime::RingFlags,
    pub urls: Vec<String>,
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// What the command line asks for besides a run.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Options>),
    Help,
    Version,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connections: 50,
            stop: Stop::After(Duration::from_secs(10)),
            workers: None,
            rate: None,
            warmup: Duration::ZERO,
            pipeline: 1,
            method: "GET".into(),
            headers: Vec::new(),
            body_file: None,
            weights: None,
            timeout: Duration::from_secs(10),
            new_connection: false,
            insecure: false,
            sni: None,
            tls_version: TlsVersion::Any,
            tls_resume: true,
            json: None,
            hdr_log: None,
            max_error_rate: None,
            driver: ringway_core::runtime::Driver::Auto,
            ring_flags: ringway_core::runtime::RingFlags::DeferTaskrun,
            urls: Vec::new(),
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut o = Options::default();
    let mut duration = None;
    let mut requests = None;
    let mut args = args.into_iter();
    let mut only_urls = false;
    while let Some(arg) = args.next() {
        if only_urls || !arg.starts_with('-') || arg == "-" {
            o.urls.push(arg);
            continue;
        }
        if arg == "--" {
            only_urls = true;
            continue;
        }
        // Split "--name=value" and "-cVALUE" into the flag and its attached value.
        let (flag, attached) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => (format!("--{name}"), Some(value.to_string())),
                None => (arg.clone(), None),
            }
        } else {
            let mut chars = arg.chars();
            chars.next();
            let first = chars.next().map(|c| format!("-{c}")).unwrap_or_default();
            let rest: String = chars.collect();
            let rest = rest.strip_prefix('=').unwrap_or(&rest).to_string();
            (first, (!rest.is_empty()).then_some(rest))
        };
        let mut value = |what: &str| -> Result<String, String> {
            match attached.clone().or_else(|| args.next()) {
                Some(v) => Ok(v),
                None => Err(format!("{flag} needs {what}")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--connections" => {
                o.connections = positive(&flag, &value("a number of connections")?)?
            }
            "-d" | "--duration" => duration = Some(parse_duration(&value("a duration")?)?),
            "-n" | "--requests" => {
                requests = Some(positive(&flag, &value("a number of requests")?)? as u64)
            }
            "-w" | "--workers" => o.workers = Some(positive(&flag, &value("a number")?)?),
            "-R" | "--rate" => {
                let v = value("requests per second")?;
                match v.parse::<f64>() {
                    Ok(r) if r.is_finite() && r > 0.0 => o.rate = Some(r),
                    _ => return Err(format!("{flag} {v:?}: expected a positive number")),
                }
            }
            "--warmup" => o.warmup = parse_duration(&value("a duration")?)?,
            "-p" | "--pipeline" => o.pipeline = positive(&flag, &value("a depth")?)?,
            "-m" | "--method" => {
                let m = value("a method")?;
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(format!("{flag} {m:?}: not an HTTP method"));
                }
                o.method = m;
            }
            "-H" | "--header" => {
                let h = value("'Name: value'")?;
                o.headers.push(parse_header(&h)?);
            }
            "--body-file" => o.body_file = Some(value("a file")?.into()),
            "--weights" => {
                let v = value("a list of weights")?;
                let weights: Result<Vec<u32>, _> =
                    v.split(',').map(|w| w.trim().parse::<u32>()).collect();
                match weights {
                    Ok(w) if w.iter().any(|&x| x > 0) => o.weights = Some(w),
                    _ => {
                        return Err(format!(
                            "{flag} {v:?}: expected whole numbers like 3,1 (not all zero)"
                        ))
                    }
                }
            }
            "--timeout" => {
                o.timeout = parse_duration(&value("a duration")?)?;
                if o.timeout.is_zero() {
                    return Err(format!("{flag} must be above zero"));
                }
            }
            "--new-connection" => o.new_connection = true,
            "-k" | "--insecure" => o.insecure = true,
            "--sni" => o.sni = Some(value("a server name")?),
            "--tls-version" => {
                let v = value("1.2 or 1.3")?;
                o.tls_version = match v.trim_start_matches("TLSv").trim_start_matches('v') {
                    "1.2" => TlsVersion::Tls12,
                    "1.3" => TlsVersion::Tls13,
                    _ => return Err(format!("{flag} {v:?}: expected 1.2 or 1.3")),
                };
            }
            "--tls-resume" => {
                let v = value("on or off")?;
                o.tls_resume = match v.as_str() {
                    "on" | "yes" | "true" => true,
                    "off" | "no" | "false" => false,
                    _ => return Err(format!("{flag} {v:?}: expected on or off")),
                };
            }
            "--json" => o.json = Some(value("a file")?.into()),
            "--hdr-log" => o.hdr_log = Some(value("a file")?.into()),
            "--max-error-rate" => {
                let v = value("a fraction")?;
                match v.parse::<f64>() {
                    Ok(f) if (0.0..=1.0).contains(&f) => o.max_error_rate = Some(f),
                    _ => return Err(format!("{flag} {v:?}: expected a fraction from 0 to 1")),
                }
            }
            "--driver" => {
                use ringway_core::runtime::Driver;
                let v = value("auto, io_uring or epoll")?;
                o.driver = match v.as_str() {
                    "auto" => Driver::Auto,
                    "io_uring" | "iouring" | "uring" => Driver::IoUring,
                    "epoll" => Driver::Epoll,
                    _ => return Err(format!("{flag} {v:?}: expected auto, io_uring or epoll")),
                };
            }
            "--ring-flags" => {
                use ringway_core::runtime::RingFlags;
                let v = value("defer, coop or none")?;
                o.ring_flags = match v.as_str() {
                    "defer" => RingFlags::DeferTaskrun,
                    "coop" => RingFlags::CoopTaskrun,
                    "none" => RingFlags::None,
                    _ => return Err(format!("{flag} {v:?}: expected defer, coop or none")),
                };
            }
            _ => return Err(format!("unknown flag {arg:?} (see ringload --help)")),
        }
    }
    o.stop = match (duration, requests) {
        (Some(_), Some(_)) => return Err("-d and -n exclude each other: give one".into()),
        (_, Some(n)) => Stop::Requests(n),
        (Some(d), None) if d.is_zero() => return Err("-d must be above zero".into()),
        (Some(d), None) => Stop::After(d),
        (None, None) => o.stop,
    };
    if o.urls.is_empty() {
        return Err("no URL given (see ringload --help)".into());
    }
    if let Some(w) = &o.weights {
        if w.len() != o.urls.len() {
            return Err(format!(
                "--weights has {} entries for {} URLs",
                w.len(),
                o.urls.len()
            ));
        }
    }
    if o.new_connection && o.pipeline > 1 {
        return Err(
            "--pipeline cannot be combined with --new-connection (one request per \
                    connection)"
                .into(),
        );
    }
    if o.rate.is_some() && o.pipeline > 1 {
        return Err(
            "--pipeline cannot be combined with --rate (open loop sends one request \
                    per connection at a time)"
                .into(),
        );
    }
    Ok(Command::Run(Box::new(o)))
}

fn positive(flag: &str, v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} {v:?}: expected a whole number above zero")),
    }
}

/// `Name: value`, name a token.
fn parse_header(h: &str) -> Result<(String, String), String> {
    let Some((name, value)) = h.split_once(':') else {
        return Err(format!("header {h:?}: expected 'Name: value'"));
    };
    let name = name.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("header {h:?}: {name:?} is not a header name"));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header {h:?}: the value holds a line break"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// `10s`, `500ms`, `250us`, `1m`, `2h`, `1.5s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "duration {text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * scale < 1e9 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!(
            "duration {text:?}: expected a number and a unit, e.g. 10s or 500ms"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(o) => Ok(*o),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn defaults_and_flags() {
        let o = run(&["http://a/"]).unwrap();
        assert_eq!(o.connections, 50);
        assert_eq!(o.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(o.method, "GET");
        let o = run(&[
            "-c64",
            "-d",
            "2s",
            "-w=1",
            "--rate=1000",
            "-H",
            "X-A: b",
            "--json",
            "out.json",
            "http://a/",
            "http://b/",
            "--weights",
            "3,1",
            "-k",
        ]);
        let o = o.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.connections, 64);
        assert_eq!(o.stop, Stop::After(Duration::from_secs(2)));
        assert_eq!(o.workers, Some(1));
        assert_eq!(o.rate, Some(1000.0));
        assert_eq!(o.headers, vec![("X-A".into(), "b".into())]);
        assert_eq!(o.urls.len(), 2);
        assert_eq!(o.weights, Some(vec![3, 1]));
        assert!(o.insecure);
        let o = run(&["-n", "100", "--pipeline", "8", "http://a/"]).unwrap();
        assert_eq!(o.stop, Stop::Requests(100));
        assert_eq!(o.pipeline, 8);
    }

    #[test]
    fn connection_and_tls_flags() {
        let o = run(&["https://a/"]).unwrap();
        assert!(!o.new_connection);
        assert_eq!(o.tls_version, TlsVersion::Any);
        assert!(o.tls_resume);
        let o = run(&[
            "--new-connection",
            "--tls-resume",
            "off",
            "--tls-version=1.3",
            "https://a/",
        ])
        .unwrap();
        assert!(o.new_connection);
        assert!(!o.tls_resume);
        assert_eq!(o.tls_version, TlsVersion::Tls13);
        let o = run(&["--tls-resume=on", "--tls-version", "1.2", "https://a/"]).unwrap();
        assert!(o.tls_resume);
        assert_eq!(o.tls_version, TlsVersion::Tls12);
        assert_eq!(
            run(&["--tls-version", "TLSv1.3", "https://a/"])
                .unwrap()
                .tls_version,
            TlsVersion::Tls13
        );
        // Open loop takes a new connection per request too.
        let o = run(&["--new-connection", "--rate", "100", "http://a/"]).unwrap();
        assert!(o.new_connection);
    }

    #[test]
    fn mistakes_are_one_line() {
        for bad in [
            &["--frobnicate", "http://a/"][..],
            &["-c", "0", "http://a/"],
            &["-c"],
            &[],
            &["-d", "1s", "-n", "5", "http://a/"],
            &["--rate", "100", "-p", "4", "http://a/"],
            &["--weights", "1,2", "http://a/"],
            &["-H", "nocolon", "http://a/"],
            &["--max-error-rate", "2", "http://a/"],
            &["--tls-version", "1.1", "https://a/"],
            &["--tls-version"],
            &["--tls-resume", "maybe", "https://a/"],
            &["--new-connection", "-p", "2", "http://a/"],
        ] {
            let e = run(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        assert_eq!(parse(["-h".to_string()]).unwrap(), Command::Help);
    }
}
