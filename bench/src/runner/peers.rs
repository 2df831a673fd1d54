//! `peers`: Ringway, nginx and HAProxy as keep-alive reverse proxies, one worker each, on one
//! machine, in one run.
//!
//! The origin (nginx, one worker) and the load generator share the first CPU; each contender
//! runs alone on the second. Rounds interleave the contenders (each round starts with the next
//! one), so that host drift over minutes spreads over all of them instead of landing on one.
//! Per contender and round: a warm-up, then for each body size a closed-loop run (saturation)
//! and an open-loop run at a fixed rate.
//!
//! The TLS contenders (`ringway-tls`, `nginx-tls`) are loaded over TLS 1.3 in each of the
//! [`TlsMode`]s chosen: keep-alive, a full handshake per request, a resumed handshake per
//! request; each mode closed loop and then at a fixed rate (`--rate` for keep-alive,
//! `--handshake-rate` for the others). A TLS client's handshake costs about what the server's
//! does, so where the machine has more than two CPUs the load of the TLS runs gets CPUs of its
//! own (the third and on, at most four).

use std::path::Path;
use std::time::Duration;

use super::contender::{self, Kind};
use super::load::{self, Driver, Load, TlsLoad};
use super::process::{self, WorkDir};
use super::report::{self, Report, Run};
use super::{machine, measure, prepare, probe, proc_stat, tls, Error, Options, TlsMode};

/// The TLS version the TLS runs use.
const TLS_VERSION: &str = "1.3";

/// One measured run of a contender, besides its body size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// `saturation`, `20000/s`; for TLS `keep-alive, saturation`, `full handshake, 1000/s`...
    pub mode: String,
    pub rate: Option<u64>,
    pub new_connection: bool,
    /// For the TLS contenders.
    pub tls: Option<TlsLoad>,
}

/// The runs of `kind` for each body size, in order.
pub fn scenarios(
    kind: Kind,
    rate: Option<u64>,
    tls_modes: &[TlsMode],
    handshake_rate: Option<u64>,
) -> Vec<Scenario> {
    let rates = |r: Option<u64>| std::iter::once(None).chain(r.map(Some));
    let name = |r: Option<u64>| r.map_or("saturation".to_string(), |r| format!("{r}/s"));
    if !kind.is_tls() {
        return rates(rate)
            .map(|r| Scenario {
                mode: name(r),
                rate: r,
                new_connection: false,
                tls: None,
            })
            .collect();
    }
    let mut out = Vec::new();
    for &m in tls_modes {
        let fixed = if m.new_connection() {
            handshake_rate
        } else {
            rate
        };
        for r in rates(fixed) {
            out.push(Scenario {
                mode: format!("{}, {}", m.label(), name(r)),
                rate: r,
                new_connection: m.new_connection(),
                tls: Some(TlsLoad {
                    resume: m.resume(),
                    version: TLS_VERSION,
                }),
            });
        }
    }
    out
}

pub fn run(opts: &Options) -> Result<Report, Error> {
    let (date, _) = report::now_utc();
    let cpus = ringway_core::runtime::allowed_cpus();
    if cpus.len() < 2 {
        return Err(Error::Failed(
            "peers needs two CPUs (origin and load on one, the proxy on the other)".into(),
        ));
    }
    let (origin_cpu, proxy_cpu) = (cpus[0], cpus[1]);
    let mut needed = vec![("nginx", "nginx")];
    if opts.contenders.contains(&Kind::Haproxy) {
        needed.push(("haproxy", "haproxy"));
    }
    contender::ensure_installed(&needed)?;
    let any_tls = opts.contenders.iter().any(|k| k.is_tls());
    if any_tls && opts.driver != super::DriverChoice::Ringload {
        return Err(Error::Usage(
            "the TLS contenders need ringload (leave out --driver wrk)".into(),
        ));
    }
    let (bins, driver) = prepare(opts)?;
    let rate = (opts.rate > 0 && driver.has_open_loop()).then_some(opts.rate);
    if opts.rate > 0 && rate.is_none() {
        eprintln!("note: wrk has no fixed-rate mode; only saturation runs");
    }
    let handshake_rate = (opts.handshake_rate > 0).then_some(opts.handshake_rate);
    let tls_load_cpus: Vec<usize> = if cpus.len() > 2 {
        cpus[2..].iter().take(4).copied().collect()
    } else {
        vec![origin_cpu]
    };

    let dir = WorkDir::new("ringway-bench")?;
    let probe_tls = if any_tls {
        Some(tls::client_config(&tls::certificate(&dir)?.ca)?)
    } else {
        None
    };
    let origin_port = probe::free_port()?;
    let mut origin = contender::start_nginx_origin(&dir, origin_port, &[origin_cpu], &opts.bodies)?;
    for b in &opts.bodies {
        probe::wait_ready(&mut origin.child, origin_port, &b.path, b.bytes)?;
    }
    let load_for = |kind: Kind, port: u16, path: &str, duration: Duration, s: &Scenario| {
        let cpus = if kind.is_tls() {
            tls_load_cpus.clone()
        } else {
            vec![origin_cpu]
        };
        Load {
            url: format!(
                "{}://127.0.0.1:{port}{path}",
                if kind.is_tls() { "https" } else { "http" }
            ),
            connections: opts.connections,
            duration,
            rate: s.rate,
            threads: cpus.len(),
            cpus,
            new_connection: s.new_connection,
            tls: s.tls.clone(),
        }
    };

    let mut runs: Vec<Run> = Vec::new();
    let n = opts.contenders.len();
    for round in 1..=opts.rounds {
        for i in 0..n {
            let kind = opts.contenders[(i + round - 1) % n];
            process::check_interrupt()?;
            let port = probe::free_port()?;
            let mut proxy =
                contender::start(kind, &dir, &bins, port, origin_port, 1, &[proxy_cpu])?;
            let probe_over = probe_tls.as_ref().filter(|_| kind.is_tls());
            for b in &opts.bodies {
                probe::wait_ready_over(&mut proxy.child, port, &b.path, b.bytes, probe_over)?;
            }
            let runs_of = scenarios(kind, rate, &opts.tls_modes, handshake_rate);
            if !opts.warmup.is_zero() {
                let warm = load_for(kind, port, &opts.bodies[0].path, opts.warmup, &runs_of[0]);
                load::run(&driver, &warm, &dir, "warmup")?;
            }
            let first = runs.len();
            for b in &opts.bodies {
                for scenario in &runs_of {
                    let load = load_for(kind, port, &b.path, opts.duration, scenario);
                    let tag = format!("{round}-{}-{}-{}", kind.name(), b.name, runs.len());
                    let w = measure(&driver, &load, &dir, &tag, &proxy, &origin)?;
                    let mode = scenario.mode.clone();
                    let handshakes = w.measured.tls.as_ref().map_or(String::new(), |t| {
                        if !t.new_connection || t.handshakes == 0 {
                            String::new()
                        } else {
                            format!(
                                "  {:.0} handshakes/s ({:.1} % resumed)",
                                t.handshakes_per_s,
                                100.0 * t.resumed as f64 / t.handshakes as f64
                            )
                        }
                    });
                    eprintln!(
                        "round {round} {:8} {:6} {:11} {:>9.0} rps  p99 {:>9}  {:>6.2} µs/req  \
                         ÷ origin {:.3}  errors {}{handshakes}",
                        kind.name(),
                        b.name,
                        mode,
                        w.measured.rps,
                        report::latency(w.measured.p99_us),
                        w.proxy_cpu_us,
                        w.normalised(),
                        w.measured.errors
                    );
                    runs.push(Run {
                        round,
                        contender: kind.name().into(),
                        workers: 1,
                        body: b.name.clone(),
                        mode,
                        measured: w.measured,
                        proxy_cpu_us: w.proxy_cpu_us,
                        origin_cpu_us: w.origin_cpu_us,
                        // The origin shares CPU 0 with the load generator.
                        origin_cpus: 0,
                        peak_rss_kib: 0,
                    });
                }
            }
            let rss = proc_stat::sample(proxy.pid()).peak_rss_kib;
            for r in &mut runs[first..] {
                r.peak_rss_kib = rss;
            }
            drop(proxy);
        }
    }
    drop(origin);

    let versions = [
        contender::version_of(&bins.ringway, "--version"),
        if any_tls {
            lock_version(&bins.repo, "rustls").map_or(String::new(), |v| format!("rustls {v}"))
        } else {
            String::new()
        },
        contender::version_of("nginx".as_ref(), "-v"),
        if any_tls {
            nginx_openssl()
        } else {
            String::new()
        },
        if opts.contenders.contains(&Kind::Haproxy) {
            contender::version_of("haproxy".as_ref(), "-v")
        } else {
            String::new()
        },
    ];
    let load_desc = match &driver {
        Driver::Ringload(_) => format!(
            "ringload -w1 -c{} for {:?} per run{}",
            opts.connections,
            opts.duration,
            rate.map_or(String::new(), |r| format!("; closed loop, then --rate {r}"))
        ),
        Driver::Wrk => format!(
            "wrk -t1 -c{} for {:?} per run (closed loop only)",
            opts.connections, opts.duration
        ),
    };
    let mut setup = vec![
        format!(
            "versions: {}",
            versions
                .iter()
                .filter(|v| !v.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ),
        format!(
            "origin: nginx, one worker, static files of {} on CPU {origin_cpu}",
            opts.bodies
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "contenders, one at a time on CPU {proxy_cpu}, one worker each: {}",
            opts.contenders
                .iter()
                .map(|&k| describe(k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        if opts.contenders.iter().all(|k| k.is_tls()) {
            format!("warm-up {:?} per contender and round", opts.warmup)
        } else {
            format!(
                "load from CPU {origin_cpu}: {load_desc}; warm-up {:?} per contender and round",
                opts.warmup
            )
        },
        format!(
            "{} round(s), contenders interleaved; CPU µs/req is utime+stime of the proxy's \
                 process tree over the run ÷ requests; \"÷ origin's\" divides that by the \
                 origin's CPU per request in the same window",
            opts.rounds
        ),
    ];
    if any_tls {
        setup.extend(tls_setup(opts, rate, handshake_rate, &tls_load_cpus, &runs));
    }
    Ok(Report {
        kind: "peers".into(),
        command: opts.command.clone(),
        date,
        machine: machine(),
        setup,
        baseline: opts
            .contenders
            .contains(&Kind::Nginx)
            .then(|| "nginx".into()),
        tls_baseline: opts
            .contenders
            .contains(&Kind::NginxTls)
            .then(|| "nginx-tls".into()),
        runs,
    })
}

/// A contender as the report's set-up names it.
fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Ringway => "Ringway (examples/basic-proxy.yaml)",
        Kind::RingwayApiMiss => "ringway-api-miss (bench/configs/api-policies.yaml, never stored)",
        Kind::RingwayApiHit => "ringway-api-hit (bench/configs/api-policies.yaml, cache hits)",
        Kind::Nginx => "nginx (upstream keepalive 128)",
        Kind::Haproxy => "HAProxy (nbthread 1, http-reuse always)",
        Kind::RingwayTls => "ringway-tls (TLS, below)",
        Kind::NginxTls => "nginx-tls (TLS, below)",
    }
}

/// The lines that say how the TLS runs were made, and what they negotiated.
fn tls_setup(
    opts: &Options,
    rate: Option<u64>,
    handshake_rate: Option<u64>,
    load_cpus: &[usize],
    runs: &[Run],
) -> Vec<String> {
    let fixed = |r: Option<u64>| r.map_or(String::new(), |r| format!(", then --rate {r}"));
    let modes: Vec<String> = opts
        .tls_modes
        .iter()
        .map(|m| match m {
            TlsMode::KeepAlive => format!("keep-alive (closed loop{})", fixed(rate)),
            TlsMode::Full => format!(
                "full handshake (--new-connection --tls-resume off: a new connection per \
                 request, no session offered; closed loop{})",
                fixed(handshake_rate)
            ),
            TlsMode::Resumed => format!(
                "resumed (--new-connection --tls-resume on: a new connection per request \
                 offering a TLS 1.3 ticket from an earlier one; closed loop{})",
                fixed(handshake_rate)
            ),
        })
        .collect();
    let mut negotiated: Vec<String> = Vec::new();
    for r in runs {
        if let Some(t) = r.measured.tls.as_ref().filter(|t| !t.version.is_empty()) {
            let line = format!(
                "{} {} {} {}",
                r.contender, t.version, t.cipher_suite, t.key_exchange
            );
            if !negotiated.contains(&line) {
                negotiated.push(line);
            }
        }
    }
    let mut lines = vec![
        "TLS contenders: nginx-tls (listen ssl, ssl_protocols TLSv1.2 TLSv1.3, \
         ssl_session_tickets on, ssl_session_cache shared:SSL:10m, then the nginx contender's \
         proxying) and ringway-tls (a listener with tls: certificates, session_tickets: true, \
         then the ringway contender's proxying), one worker each, the same ECDSA P-256 \
         certificate made for the run (signed by a throwaway CA; the chain sent is the leaf \
         alone)"
            .to_string(),
        format!(
            "TLS load from CPU {}: ringload -w{} -c{} -k --tls-version {TLS_VERSION}; modes: {}",
            process::cpu_list(load_cpus),
            load_cpus.len(),
            opts.connections,
            modes.join("; ")
        ),
        "handshakes/s and resumed/s: ringload's count of the connections it opened in the \
         window and of those whose handshake resumed (rustls's handshake kind); CPU µs per \
         handshake: the proxy's CPU over the run ÷ handshakes (one request per connection)"
            .to_string(),
    ];
    if !negotiated.is_empty() {
        lines.push(format!(
            "negotiated (resumption: TLS 1.3 session tickets, PSK with ECDHE): {}",
            negotiated.join("; ")
        ));
    }
    lines
}

/// The version of `package` in the workspace's Cargo.lock (the one the binaries were built
/// with).
fn lock_version(repo: &Path, package: &str) -> Option<String> {
    let lock = std::fs::read_to_string(repo.join("Cargo.lock")).ok()?;
    let at = lock.find(&format!("name = \"{package}\"\n"))?;
    let rest = &lock[at..];
    let line = rest.lines().nth(1)?;
    Some(
        line.strip_prefix("version = ")?
            .trim_matches('"')
            .to_string(),
    )
}

/// The OpenSSL nginx was built with and runs with (`nginx -V`).
fn nginx_openssl() -> String {
    std::process::Command::new("nginx")
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&[o.stdout, o.stderr].concat()).to_string();
            text.lines()
                .find(|l| l.contains("OpenSSL"))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_contenders_run_saturation_then_the_rate() {
        let s = scenarios(Kind::Nginx, Some(20_000), &TlsMode::ALL, Some(1000));
        let modes: Vec<&str> = s.iter().map(|s| s.mode.as_str()).collect();
        assert_eq!(modes, ["saturation", "20000/s"]);
        assert!(s.iter().all(|s| s.tls.is_none() && !s.new_connection));
        assert_eq!(scenarios(Kind::Ringway, None, &[], None).len(), 1);
    }

    #[test]
    fn tls_contenders_run_each_mode() {
        let s = scenarios(Kind::NginxTls, Some(20_000), &TlsMode::ALL, Some(1000));
        let modes: Vec<&str> = s.iter().map(|s| s.mode.as_str()).collect();
        assert_eq!(
            modes,
            [
                "keep-alive, saturation",
                "keep-alive, 20000/s",
                "full handshake, saturation",
                "full handshake, 1000/s",
                "resumed, saturation",
                "resumed, 1000/s"
            ]
        );
        let settings: Vec<(Option<u64>, bool, bool)> = s
            .iter()
            .map(|s| (s.rate, s.new_connection, s.tls.as_ref().unwrap().resume))
            .collect();
        assert_eq!(
            settings,
            [
                (None, false, true),
                (Some(20_000), false, true),
                (None, true, false),
                (Some(1000), true, false),
                (None, true, true),
                (Some(1000), true, true),
            ]
        );
        assert!(s.iter().all(|s| s.tls.as_ref().unwrap().version == "1.3"));
        // The same for both TLS contenders, so that their rows pair up.
        assert_eq!(
            scenarios(Kind::RingwayTls, Some(20_000), &TlsMode::ALL, Some(1000)),
            s
        );
        let only_full = scenarios(Kind::RingwayTls, Some(20_000), &[TlsMode::Full], None);
        assert_eq!(only_full.len(), 1);
        assert_eq!(only_full[0].mode, "full handshake, saturation");
    }

    #[test]
    fn the_rustls_version_comes_from_the_lock_file() {
        let v = lock_version(&super::super::repo_root(), "rustls").unwrap();
        assert!(v.starts_with("0.23."), "{v}");
        assert_eq!(
            lock_version(&super::super::repo_root(), "no-such-crate"),
            None
        );
    }
}
