//! Each developer's usage per day: the per-subscription request and error counts the workers
//! already publish (the series behind `/metrics` and `/analytics`), recorded in the database
//! every few seconds as differences, so that the totals survive restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::Portal;
use crate::control::labels;
use crate::server::Control;

const EVERY: Duration = Duration::from_secs(5);

/// The counts last recorded, and the counts seen since, by subscription id.
#[derive(Default)]
struct Counts {
    recorded: HashMap<String, (u64, u64)>,
    seen: HashMap<String, (u64, u64)>,
}

fn counts() -> &'static Mutex<Counts> {
    static COUNTS: OnceLock<Mutex<Counts>> = OnceLock::new();
    COUNTS.get_or_init(Mutex::default)
}

/// Requests and errors of `subs` seen but not yet recorded (today's rows add them).
pub fn unrecorded(subs: &[String]) -> (u64, u64) {
    let c = counts().lock().unwrap_or_else(|e| e.into_inner());
    subs.iter().fold((0, 0), |(r, e), s| {
        let seen = c.seen.get(s).copied().unwrap_or_default();
        let done = c.recorded.get(s).copied().unwrap_or_default();
        (
            r + seen.0.saturating_sub(done.0),
            e + seen.1.saturating_sub(done.1),
        )
    })
}

fn sample(control: &Control) -> HashMap<String, (u64, u64)> {
    let (m, _) = control.metrics();
    let mut out: HashMap<String, (u64, u64)> = HashMap::new();
    for (key, c) in &m.subscriptions {
        let e = out.entry(labels::resolve_name(*key)).or_default();
        e.0 += c.requests();
        e.1 += c.classes[4] + c.classes[5];
    }
    out
}

/// Takes a sample now (for the usage answer), without recording it.
fn refresh(control: &Control) {
    let now = sample(control);
    counts().lock().unwrap_or_else(|e| e.into_inner()).seen = now;
}

pub fn start(portal: Arc<Portal>, control: Arc<Control>) {
    // What was counted before the portal started belongs to no recorded day.
    {
        let first = sample(&control);
        let mut c = counts().lock().unwrap_or_else(|e| e.into_inner());
        c.recorded.clone_from(&first);
        c.seen = first;
    }
    let spawned = std::thread::Builder::new()
        .name("ringway-portal-usage".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            refresh(&control);
            let due = {
                static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
                let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
                let due = last.is_none_or(|t| t.elapsed() >= EVERY);
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            };
            if due {
                record(&portal);
            }
        });
    if spawned.is_err() {
        log::error!("portal: cannot start the usage thread; usage will not be recorded");
    }
}

fn record(portal: &Portal) {
    if let Err(e) = portal.store.expire_sessions(super::unix_now()) {
        log::error!("{e}");
    }
    let day = super::api::day_of(super::unix_now());
    let mut c = counts().lock().unwrap_or_else(|e| e.into_inner());
    let seen = c.seen.clone();
    for (sub, now) in seen {
        let before = c.recorded.get(&sub).copied().unwrap_or_default();
        // Counters restart from zero only with the process; a smaller count is a new start.
        let requests = now.0.checked_sub(before.0).unwrap_or(now.0);
        let errors = now.1.checked_sub(before.1).unwrap_or(now.1);
        if requests == 0 && errors == 0 {
            continue;
        }
        match portal.store.add_usage(&sub, &day, requests, errors) {
            Ok(()) => {
                if let Some(Err(e)) = portal
                    .shared
                    .get()
                    .map(|shared| shared.add_usage(&sub, &day, requests, errors))
                {
                    log::warn!("portal: usage of {sub} not counted in the cluster: {e}");
                }
                c.recorded.insert(sub, now);
            }
            Err(e) => log::error!("{e}"),
        }
    }
}
