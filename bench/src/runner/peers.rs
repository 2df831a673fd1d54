//! `peers`: Ringway, nginx and HAProxy as keep-alive reverse proxies, one worker each, on one
//! machine, in one run.
//!
//! The origin (nginx, one worker) and the load generator share the first CPU; each contender
//! runs alone on the second. Rounds interleave the contenders (each round starts with the next
//! one), so that host drift over minutes spreads over all of them instead of landing on one.
//! Per contender and round: a warm-up, then for each body size a closed-loop run (saturation)
//! and an open-loop run at a fixed rate.

use std::time::Duration;

use super::contender::{self, Kind};
use super::load::{self, Driver, Load};
use super::process::{self, WorkDir};
use super::report::{self, Report, Run};
use super::{machine, measure, prepare, probe, proc_stat, Error, Options};

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
    let (bins, driver) = prepare(opts)?;
    let rate = (opts.rate > 0 && driver.has_open_loop()).then_some(opts.rate);
    if opts.rate > 0 && rate.is_none() {
        eprintln!("note: wrk has no fixed-rate mode; only saturation runs");
    }

    let dir = WorkDir::new("ringway-bench")?;
    let origin_port = probe::free_port()?;
    let mut origin = contender::start_nginx_origin(&dir, origin_port, &[origin_cpu], &opts.bodies)?;
    for b in &opts.bodies {
        probe::wait_ready(&mut origin.child, origin_port, &b.path, b.bytes)?;
    }
    let load_for = |port: u16, path: &str, duration: Duration, rate: Option<u64>| Load {
        url: format!("http://127.0.0.1:{port}{path}"),
        connections: opts.connections,
        duration,
        rate,
        threads: 1,
        cpus: vec![origin_cpu],
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
            for b in &opts.bodies {
                probe::wait_ready(&mut proxy.child, port, &b.path, b.bytes)?;
            }
            if !opts.warmup.is_zero() {
                let warm = load_for(port, &opts.bodies[0].path, opts.warmup, None);
                load::run(&driver, &warm, &dir, "warmup")?;
            }
            let first = runs.len();
            for b in &opts.bodies {
                let modes = std::iter::once(None).chain(rate.map(Some));
                for mode in modes {
                    let load = load_for(port, &b.path, opts.duration, mode);
                    let tag = format!("{round}-{}-{}", kind.name(), b.name);
                    let w = measure(&driver, &load, &dir, &tag, &proxy, &origin)?;
                    let mode = mode.map_or("saturation".to_string(), |r| format!("{r}/s"));
                    eprintln!(
                        "round {round} {:8} {:6} {:11} {:>9.0} rps  p99 {:>9}  {:>6.2} µs/req  \
                         ÷ origin {:.3}  errors {}",
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
        contender::version_of("nginx".as_ref(), "-v"),
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
    Ok(Report {
        kind: "peers".into(),
        command: opts.command.clone(),
        date,
        machine: machine(),
        setup: vec![
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
                "contenders, one at a time on CPU {proxy_cpu}, one worker each: Ringway \
                 (examples/basic-proxy.yaml), nginx (upstream keepalive 128), HAProxy \
                 (nbthread 1, http-reuse always)"
            ),
            format!(
                "load from CPU {origin_cpu}: {load_desc}; warm-up {:?} per contender and round",
                opts.warmup
            ),
            format!(
                "{} round(s), contenders interleaved; CPU µs/req is utime+stime of the proxy's \
                 process tree over the run ÷ requests; \"÷ origin's\" divides that by the \
                 origin's CPU per request in the same window",
                opts.rounds
            ),
        ],
        baseline: opts
            .contenders
            .contains(&Kind::Nginx)
            .then(|| "nginx".into()),
        runs,
    })
}
