//! A whole run: from [`Options`] to a [`Summary`].
//!
//! Everything that can be wrong with the input (a URL, a name that does not resolve, the body
//! file, TLS roots) is found here before any worker starts, and comes back as `Err` with one
//! line of text. Connections are spread evenly over the workers and interleaved over the URLs
//! by weight; `-n` and `--rate` are split between workers in proportion to their connections,
//! exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use ringway_core::runtime::{self, Placement, RuntimeSettings};

use crate::cli::{Options, Stop};
use crate::pacer;
use crate::plan::Cadence;
use crate::report::Summary;
use crate::stats::{Live, Stats};
use crate::target::{self, RequestTemplate};
use crate::worker::{self, Assignment, Message, PlanSpec};

/// Connections are opened during this lead time before load starts.
const CONNECT_LEAD: Duration = Duration::from_millis(100);

/// A finished run, and the wall-clock time its measurement started (for the interval log).
pub struct Finished {
    pub summary: Summary,
    pub started: SystemTime,
    pub intervals: Vec<(u32, Histogram<u64>)>,
}

/// Checks the input and runs the load. `Err` is bad input (exit 2).
pub fn run(o: &Options) -> Result<Finished, String> {
    let body = match &o.body_file {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("--body-file {}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let template = RequestTemplate {
        method: &o.method,
        headers: &o.headers,
        body: &body,
        pipeline: o.pipeline,
        close: o.new_connection,
    };
    let targets = target::prepare(&o.urls, &template)?;
    let tls_options = crate::client::TlsOptions {
        insecure: o.insecure,
        sni: o.sni.clone(),
        version: o.tls_version,
        resume: o.tls_resume,
    };
    let tls = crate::client::tls_targets(&targets, &tls_options)?;
    let uses_tls = tls.iter().any(Option::is_some);
    // The targets live as long as the run, which is the life of the process.
    let targets: &'static [target::Target] = Box::leak(targets.into_boxed_slice());

    let cpus = runtime::allowed_cpus();
    let workers = o.workers.unwrap_or(cpus.len()).min(o.connections).max(1);
    let per_worker: Vec<usize> = target::split(o.connections as u64, &vec![1; workers])
        .into_iter()
        .map(|n| n as usize)
        .collect();
    let weights = o.weights.clone().unwrap_or_else(|| vec![1; targets.len()]);
    let slots = target::assign(o.connections, &weights);
    let counts = match o.stop {
        Stop::Requests(n) => target::split(n, &per_worker)
            .into_iter()
            .map(Some)
            .collect(),
        Stop::After(_) => vec![None; workers],
    };

    let load_from = Instant::now() + CONNECT_LEAD;
    let measure_from = load_from + o.warmup;
    let until = match o.stop {
        Stop::After(d) => Some(measure_from + d),
        Stop::Requests(_) => None,
    };
    let started = SystemTime::now() + (measure_from - Instant::now());

    let (tx, rx) = mpsc::channel();
    let lives: Vec<Arc<Live>> = (0..workers).map(|_| Arc::new(Live::default())).collect();
    let mut paced = Vec::new();
    let mut assignments = Vec::with_capacity(workers);
    for (w, &conns) in per_worker.iter().enumerate() {
        let plan = match o.rate {
            None => PlanSpec::Closed(counts[w]),
            Some(rate) => {
                let share = rate * conns as f64 / o.connections as f64;
                let cadence = Cadence::new(load_from, share, measure_from, counts[w]);
                let (ours, theirs) = pacer::pair().map_err(|e| format!("pacer socket: {e}"))?;
                paced.push(pacer::Paced {
                    cadence,
                    signal: ours,
                });
                PlanSpec::Open(cadence, theirs)
            }
        };
        assignments.push(Some(Assignment {
            connections: (0..conns).map(|k| slots[k * workers + w]).collect(),
            targets,
            tls: crate::client::for_worker(&tls),
            plan,
            pipeline: o.pipeline,
            new_connection: o.new_connection,
            timeout: o.timeout,
            load_from,
            measure_from,
            until,
            live: Arc::clone(&lives[w]),
            results: tx.clone(),
            intervals: o.hdr_log.is_some(),
        }));
    }
    drop(tx);

    let done = Arc::new(AtomicBool::new(false));
    let pacer = if paced.is_empty() {
        None
    } else {
        Some(pacer::spawn(paced, Arc::clone(&done)).map_err(|e| format!("pacer thread: {e}"))?)
    };
    let assignments = Arc::new(Mutex::new(assignments));
    let settings = RuntimeSettings {
        driver: o.driver,
        ring_flags: o.ring_flags,
        ..RuntimeSettings::default()
    };
    let started_workers = runtime::launch(
        "ringload",
        &Placement::new(Some(workers), Some(&cpus)),
        settings,
        move |ctx| {
            let a = assignments.lock().expect("not poisoned")[ctx.index]
                .take()
                .expect("one assignment per worker");
            worker::run(a)
        },
    )
    .map_err(|e| format!("cannot start workers: {e}"))?;
    let mut drivers: Vec<String> = started_workers
        .iter()
        .map(|w| w.context.driver.to_string())
        .collect();
    drivers.dedup();
    let progress = crate::progress::spawn(lives, measure_from, Arc::clone(&done));

    let mut stats = Stats::default();
    let mut intervals: BTreeMap<u32, Histogram<u64>> = BTreeMap::new();
    let mut finished = measure_from;
    let mut remaining = workers;
    while remaining > 0 {
        match rx.recv() {
            Ok(Message::Interval { second, latency_us }) => {
                let slot = intervals
                    .entry(second)
                    .or_insert_with(crate::stats::new_histogram);
                slot.add(&latency_us).expect("histograms share bounds");
            }
            Ok(Message::Done {
                stats: s,
                finished: f,
            }) => {
                stats.merge(&s);
                finished = finished.max(f);
                remaining -= 1;
            }
            Err(_) => return Err("a worker stopped without reporting".into()),
        }
    }
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.join();
    }
    if let Some(p) = pacer {
        let _ = p.join();
    }
    Ok(Finished {
        summary: Summary {
            urls: o.urls.clone(),
            connections: o.connections,
            workers,
            driver: drivers.join(", "),
            pipeline: o.pipeline,
            new_connection: o.new_connection,
            tls_resume: uses_tls.then_some(o.tls_resume),
            target_rps: o.rate,
            duration: finished.saturating_duration_since(measure_from),
            stats,
        },
        started,
        intervals: intervals.into_iter().collect(),
    })
}
