//! `scaling`: Ringway alone at 1, 2, 4, ... workers, to see how throughput and CPU per request
//! follow the worker count. It needs only our own binaries: the origin is Ringway answering by
//! itself (`return_response`), so it runs on a many-core machine without system packages.
//!
//! With W proxy workers on the first W CPUs, the rest are split between the origin and the
//! load generator. Where fewer than two CPUs are left, the three share the machine and the
//! figure that matters is CPU per request, not RPS.

use super::contender::{self, Kind};
use super::load::{self, Driver, Load};
use super::process::{self, WorkDir};
use super::report::{self, Report, Run};
use super::{machine, measure, prepare, probe, Error, Options};

/// Where everything runs at one worker count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub proxy: Vec<usize>,
    pub origin: Vec<usize>,
    pub load: Vec<usize>,
}

impl Layout {
    /// The origin's CPU count where it has them to itself, 0 where it shares them.
    pub fn origin_to_itself(&self) -> usize {
        let shared = self
            .origin
            .iter()
            .any(|c| self.proxy.contains(c) || self.load.contains(c));
        if shared {
            0
        } else {
            self.origin.len()
        }
    }
}

/// Splits `cpus` for `workers` proxy workers.
pub fn layout(cpus: &[usize], workers: usize) -> Layout {
    let w = workers.min(cpus.len()).max(1);
    let proxy = cpus[..w].to_vec();
    let rest = &cpus[w..];
    match rest.len() {
        0 => {
            // Everything shares everything.
            let half = (cpus.len() / 2).max(1);
            Layout {
                proxy,
                origin: cpus[..half].to_vec(),
                load: cpus[cpus.len() - half..].to_vec(),
            }
        }
        1 => Layout {
            proxy,
            origin: rest.to_vec(),
            load: rest.to_vec(),
        },
        n => Layout {
            proxy,
            origin: rest[..n / 2].to_vec(),
            load: rest[n / 2..].to_vec(),
        },
    }
}

/// 1, 2, 4, ... up to `cpus`, and `cpus` itself.
pub fn default_levels(cpus: usize) -> Vec<usize> {
    let mut levels: Vec<usize> = std::iter::successors(Some(1usize), |n| n.checked_mul(2))
        .take_while(|&n| n <= cpus)
        .collect();
    if levels.last() != Some(&cpus) && cpus > 0 {
        levels.push(cpus);
    }
    levels
}

pub fn run(opts: &Options) -> Result<Report, Error> {
    let (date, _) = report::now_utc();
    let cpus = ringway_core::runtime::allowed_cpus();
    let levels = if opts.workers.is_empty() {
        default_levels(cpus.len())
    } else {
        opts.workers.clone()
    };
    if let Some(&too_many) = levels.iter().find(|&&w| w == 0 || w > cpus.len()) {
        return Err(Error::Usage(format!(
            "--workers {too_many}: between 1 and the {} CPUs this process may use",
            cpus.len()
        )));
    }
    let (bins, driver) = prepare(opts)?;
    let body = &opts.bodies[0];
    let dir = WorkDir::new("ringway-bench")?;
    let mut runs = Vec::new();
    for round in 1..=opts.rounds {
        // Alternate the direction of the sweep, so that drift does not favour one end.
        let order: Vec<usize> = if round % 2 == 1 {
            levels.clone()
        } else {
            levels.iter().rev().copied().collect()
        };
        for workers in order {
            process::check_interrupt()?;
            let at = layout(&cpus, workers);
            let origin_port = probe::free_port()?;
            let mut origin = contender::start_ringway_origin(
                &dir,
                &bins,
                origin_port,
                at.origin.len(),
                &at.origin,
                &opts.bodies,
            )?;
            probe::wait_ready(&mut origin.child, origin_port, &body.path, body.bytes)?;
            let port = probe::free_port()?;
            let mut proxy = contender::start(
                Kind::Ringway,
                &dir,
                &bins,
                port,
                origin_port,
                workers,
                &at.proxy,
            )?;
            probe::wait_ready(&mut proxy.child, port, &body.path, body.bytes)?;
            let load_for = |duration| Load {
                url: format!("http://127.0.0.1:{port}{}", body.path),
                connections: opts.connections * workers,
                duration,
                rate: None,
                threads: at.load.len(),
                cpus: at.load.clone(),
                new_connection: false,
                tls: None,
            };
            if !opts.warmup.is_zero() {
                load::run(&driver, &load_for(opts.warmup), &dir, "warmup")?;
            }
            let tag = format!("{round}-w{workers}");
            let w = measure(
                &driver,
                &load_for(opts.duration),
                &dir,
                &tag,
                &proxy,
                &origin,
            )?;
            eprintln!(
                "round {round} workers {workers:3} {:>10.0} rps  p99 {:>9}  {:>6.2} µs/req  \
                 ÷ origin {:.3}  errors {}",
                w.measured.rps,
                report::latency(w.measured.p99_us),
                w.proxy_cpu_us,
                w.normalised(),
                w.measured.errors
            );
            let rss = super::proc_stat::sample(proxy.pid()).peak_rss_kib;
            runs.push(Run {
                round,
                contender: "ringway".into(),
                workers,
                body: body.name.clone(),
                mode: "saturation".into(),
                measured: w.measured,
                proxy_cpu_us: w.proxy_cpu_us,
                origin_cpu_us: w.origin_cpu_us,
                origin_cpus: at.origin_to_itself(),
                peak_rss_kib: rss,
            });
            drop(proxy);
            drop(origin);
        }
    }
    // Present the levels in ascending order whatever order they ran in.
    runs.sort_by_key(|r| (r.workers, r.round));
    let driver_name = match &driver {
        Driver::Ringload(_) => "ringload",
        Driver::Wrk => "wrk",
    };
    let example = layout(&cpus, levels[0]);
    Ok(Report {
        kind: "scaling".into(),
        command: opts.command.clone(),
        date,
        machine: machine(),
        setup: vec![
            contender::version_of(&bins.ringway, "--version"),
            format!(
                "proxy: Ringway (examples/basic-proxy.yaml) with W workers on the first W CPUs; \
                 origin: Ringway with return_response routes; load: {driver_name} with \
                 {} connections per proxy worker, {:?} per run after a {:?} warm-up",
                opts.connections, opts.duration, opts.warmup
            ),
            format!(
                "the CPUs left over are split between origin and load (at {} worker(s): \
                 origin on {:?}, load on {:?}); with none left, all three share the machine",
                levels[0], example.origin, example.load
            ),
            format!("{} round(s), sweeping up and down in turn", opts.rounds),
        ],
        baseline: None,
        tls_baseline: None,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_double_up_to_the_cpu_count() {
        assert_eq!(default_levels(1), [1]);
        assert_eq!(default_levels(2), [1, 2]);
        assert_eq!(default_levels(8), [1, 2, 4, 8]);
        assert_eq!(default_levels(12), [1, 2, 4, 8, 12]);
    }

    #[test]
    fn spare_cpus_go_to_origin_and_load() {
        let cpus: Vec<usize> = (0..8).collect();
        assert_eq!(
            layout(&cpus, 2),
            Layout {
                proxy: vec![0, 1],
                origin: vec![2, 3, 4],
                load: vec![5, 6, 7]
            }
        );
        let two = [0, 1];
        assert_eq!(
            layout(&two, 1),
            Layout {
                proxy: vec![0],
                origin: vec![1],
                load: vec![1]
            }
        );
        assert_eq!(
            layout(&two, 2),
            Layout {
                proxy: vec![0, 1],
                origin: vec![0],
                load: vec![1]
            }
        );
        assert_eq!(layout(&cpus, 2).origin_to_itself(), 3);
        assert_eq!(layout(&two, 1).origin_to_itself(), 0);
        assert_eq!(layout(&two, 2).origin_to_itself(), 0);
    }
}
