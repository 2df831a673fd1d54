//! Analytics on the admin API: requests, errors and latency percentiles per API and per
//! subscription, per minute over the last hour.
//!
//! Built from the same per-core series as `/metrics`: a control-side thread takes the
//! workers' published counters (merged) at each minute's start and keeps the last 61 samples;
//! a minute's row is the difference of the samples around it, and the minute in progress is
//! the difference from the last sample to now. Workers do nothing for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringway_core::metrics::SeriesCounts;
use serde_json::{json, Value};

use super::labels;
use super::plane::Plane;
use crate::server::Control;

/// Samples kept: one an hour ago, and one each minute since.
const SAMPLES: usize = 61;

/// Counters by name at one moment.
#[derive(Clone, Default)]
struct Sample {
    /// Unix seconds of the minute it starts.
    minute: u64,
    apis: BTreeMap<String, SeriesCounts>,
    subscriptions: BTreeMap<String, SeriesCounts>,
}

fn history() -> &'static Mutex<VecDeque<Sample>> {
    static HISTORY: OnceLock<Mutex<VecDeque<Sample>>> = OnceLock::new();
    HISTORY.get_or_init(Mutex::default)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn take(control: &Control) -> Sample {
    let (m, _) = control.metrics();
    let mut sample = Sample {
        minute: unix_now() / 60 * 60,
        ..Sample::default()
    };
    for (key, counts) in &m.series {
        let (api, _, _) = labels::resolve(*key);
        sample.apis.entry(api).or_default().merge(counts);
    }
    for (key, counts) in &m.subscriptions {
        sample
            .subscriptions
            .entry(labels::resolve_name(*key))
            .or_default()
            .merge(counts);
    }
    sample
}

/// Starts the thread that samples at each minute's start.
pub fn start(control: Arc<Control>) {
    let spawned = std::thread::Builder::new()
        .name("ringway-analytics".into())
        .spawn(move || {
            let mut last_minute = 0;
            loop {
                let minute = unix_now() / 60;
                if minute != last_minute {
                    last_minute = minute;
                    let sample = take(&control);
                    let mut h = history().lock().unwrap_or_else(|e| e.into_inner());
                    h.push_back(sample);
                    while h.len() > SAMPLES {
                        h.pop_front();
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
    if spawned.is_err() {
        log::error!("cannot start the analytics thread; /analytics will be empty");
    }
}

fn row(minute: u64, name: &str, c: &SeriesCounts) -> Value {
    let ms = |q: f64| c.quantile_us(q).map(|us| us as f64 / 1e3);
    json!({
        "minute": minute,
        "name": name,
        "requests": c.requests(),
        "errors": c.classes[4] + c.classes[5],
        "client_errors": c.classes[4],
        "server_errors": c.classes[5],
        "p50_ms": ms(0.50),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "mean_ms": (c.requests() > 0).then(|| c.sum_us as f64 / c.requests() as f64 / 1e3),
    })
}

/// `GET /analytics?by=api|subscription&minutes=N`: rows for the last `minutes` minutes, the
/// one in progress included (`partial: true`), oldest first. None for an unknown `by`.
pub fn view(plane: &Plane, by: &str, minutes: usize) -> Option<Value> {
    let pick = |s: &Sample| -> BTreeMap<String, SeriesCounts> {
        match by {
            "subscription" => s.subscriptions.clone(),
            _ => s.apis.clone(),
        }
    };
    if by != "api" && by != "subscription" {
        return None;
    }
    let now = take(&plane.control);
    let h = history().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut rows = Vec::new();
    // Whole minutes: each pair of neighbouring samples.
    let pairs: Vec<(&Sample, &Sample)> = h.iter().zip(h.iter().skip(1)).collect();
    for (a, b) in pairs.iter().rev().take(minutes.saturating_sub(1)).rev() {
        let (before, after) = (pick(a), pick(b));
        for (name, counts) in &after {
            let d = match before.get(name) {
                Some(earlier) => counts.since(earlier),
                None => counts.clone(),
            };
            if d.requests() > 0 {
                rows.push(row(a.minute, name, &d));
            }
        }
    }
    // The minute in progress.
    if let Some(last) = h.back() {
        let before = pick(last);
        for (name, counts) in &pick(&now) {
            let d = match before.get(name) {
                Some(earlier) => counts.since(earlier),
                None => counts.clone(),
            };
            if d.requests() > 0 {
                let mut r = row(last.minute.max(now.minute), name, &d);
                r["partial"] = json!(true);
                rows.push(r);
            }
        }
    }
    Some(json!({ "by": by, "minutes": minutes, "rows": rows }))
}
