//! The circuit breaker of one target, shared by every worker of the node, with APIM's rule
//! semantics: responses matching a rule (statuses, connection errors) reaching its threshold
//! within its interval trip the target open for `trip_duration` (or the response's
//! `Retry-After`); once that has passed, exactly one request in the node is let through as a
//! probe, whose success closes the breaker and whose failure re-opens it.
//!
//! The invariant that matters: a request that succeeds writes nothing shared. Its worker reads
//! the backend's open count (one relaxed load) and, only when some target is open, the state
//! words; failures, which are rare, count in shared atomic windows; the successes that a
//! percentage rule needs are counted per core and published on the tick.
//!
//! Times are milliseconds on the node's clock (see `SharedUpstreams::ms`), passed in, so the
//! state machine runs on a fake clock in its tests. It does not decide which targets to try;
//! `Upstreams::choose` asks it through [`TargetBreaker::gate`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::{BreakerRule, TripThreshold};

/// A window is counted in this many buckets, so it slides by a tenth of its interval.
const BUCKETS: u64 = 10;
/// A bucket packs its slot number (the high 40 bits) and its count (the low 24).
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// Set in the state word while a probe is out.
const PROBING: u64 = 1 << 63;
/// The longest a `Retry-After` may hold a breaker open (as `trip_duration`'s own maximum).
const MAX_RETRY_AFTER_SECS: u64 = 24 * 3600;

/// What an exchange with a target came to, as the breaker's rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response head with this status arrived.
    Status(u16),
    /// No usable response: the connect failed or timed out, the connection was reset or closed
    /// without an answer, the answer was late or malformed.
    ConnectionError,
}

/// The rules an outcome matches, as a bit set (bit `r` for `rules[r]`).
pub fn hits(rules: &[BreakerRule], outcome: Outcome) -> u32 {
    let mut set = 0;
    for (r, rule) in rules.iter().enumerate() {
        let hit = match outcome {
            Outcome::Status(s) => rule.statuses.iter().any(|&(lo, hi)| (lo..=hi).contains(&s)),
            Outcome::ConnectionError => rule.connection_errors,
        };
        if hit {
            set |= 1 << r;
        }
    }
    set
}

/// `Retry-After` as delta-seconds (an HTTP-date is not used), at most a day.
pub fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)))
}

/// Whether `choose` may send a request to a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    Closed,
    /// Open, and due for its probe: it may be sent one request, claimed with
    /// [`TargetBreaker::claim_probe`] and this state word.
    HalfOpen(u64),
    /// Open, or half-open with its probe out.
    Open,
}

/// How a breaker came to be (re)opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip {
    /// The rule that tripped it (the one holding it open longest, when several did).
    pub rule: usize,
    pub open_for: Duration,
}

/// What a probe's outcome did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Closed,
    Reopened(Trip),
}

/// A sliding count over a rule's interval: ten buckets of a tenth each, so what it sums covers
/// the last 90-100 % of the interval. Buckets are atomics shared by every core.
pub struct Window {
    width_ms: u64,
    buckets: [AtomicU64; BUCKETS as usize],
}

impl Window {
    pub fn new(interval: Duration) -> Window {
        Window {
            width_ms: (interval.as_millis() as u64 / BUCKETS).max(1),
            buckets: Default::default(),
        }
    }

    pub fn add(&self, now_ms: u64, n: u64) {
        let slot = now_ms / self.width_ms;
        let bucket = &self.buckets[(slot % BUCKETS) as usize];
        let mut current = bucket.load(Relaxed);
        loop {
            let (s, count) = (current >> COUNT_BITS, current & COUNT_MAX);
            // A bucket already on a later slot (another core's clock ran ahead) keeps it.
            let next = if s >= slot {
                (s << COUNT_BITS) | (count + n).min(COUNT_MAX)
            } else {
                (slot << COUNT_BITS) | n.min(COUNT_MAX)
            };
            match bucket.compare_exchange_weak(current, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    pub fn sum(&self, now_ms: u64) -> u64 {
        let slot = now_ms / self.width_ms;
        self.buckets
            .iter()
            .map(|b| b.load(Relaxed))
            .filter(|v| (v >> COUNT_BITS) + BUCKETS > slot)
            .map(|v| v & COUNT_MAX)
            .sum()
    }

    fn clear(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
    }
}

/// One target's breaker: its state word and, per rule, its failure window and (for percentage
/// rules) the window its workers publish successes into.
pub struct TargetBreaker {
    /// 0: closed. Otherwise the node-clock millisecond it stays open until (at least 1), with
    /// [`PROBING`] set while the probe is out.
    state: AtomicU64,
    failures: Box<[Window]>,
    successes: Box<[Window]>,
}

impl TargetBreaker {
    pub fn new(rules: &[BreakerRule]) -> TargetBreaker {
        TargetBreaker {
            state: AtomicU64::new(0),
            failures: rules.iter().map(|r| Window::new(r.interval)).collect(),
            successes: rules.iter().map(|r| Window::new(r.interval)).collect(),
        }
    }

    /// Takes `old`'s state (not its windows) for a reloaded table; a probe in flight on `old`
    /// settles there, so this one may send its own. Returns whether it is not closed.
    pub fn carry_state(&self, old: &TargetBreaker) -> bool {
        let state = old.state.load(Relaxed) & !PROBING;
        self.state.store(state, Relaxed);
        state != 0
    }

    #[inline]
    pub fn gate(&self, now_ms: u64) -> Gate {
        let state = self.state.load(Relaxed);
        if state == 0 {
            Gate::Closed
        } else if state & PROBING != 0 || now_ms < state {
            Gate::Open
        } else {
            Gate::HalfOpen(state)
        }
    }

    /// Takes the probe of a half-open breaker; false when another request (on any core) took
    /// it first.
    pub fn claim_probe(&self, seen: u64) -> bool {
        self.state
            .compare_exchange(seen, seen | PROBING, Relaxed, Relaxed)
            .is_ok()
    }

    /// While open: milliseconds until it is due for its probe (0 when due, or when its probe
    /// is out). None while closed.
    pub fn opens_in(&self, now_ms: u64) -> Option<u64> {
        match self.state.load(Relaxed) {
            0 => None,
            s if s & PROBING != 0 => Some(0),
            until => Some(until.saturating_sub(now_ms)),
        }
    }

    /// Counts a failure outside a probe (`hits` from [`hits`], not empty) and trips the
    /// breaker when a rule's threshold is reached; `unpublished(r)` is this core's successes
    /// for rule `r` not yet published. `open` is the backend's count of open targets. Returns
    /// the trip when this call opened the breaker.
    pub fn record_failure(
        &self,
        rules: &[BreakerRule],
        hits: u32,
        retry_after: Option<Duration>,
        now_ms: u64,
        unpublished: impl Fn(usize) -> u64,
        open: &AtomicU32,
    ) -> Option<Trip> {
        if self.state.load(Relaxed) != 0 {
            // Open already: a late failure of a request sent before it tripped.
            return None;
        }
        let mut trip: Option<Trip> = None;
        for (r, rule) in rules.iter().enumerate() {
            if hits & (1 << r) == 0 {
                continue;
            }
            self.failures[r].add(now_ms, 1);
            let failures = self.failures[r].sum(now_ms);
            let tripped = match rule.threshold {
                TripThreshold::Count(n) => failures >= u64::from(n),
                TripThreshold::Percentage {
                    percent,
                    min_requests,
                } => {
                    let total = failures + self.successes[r].sum(now_ms) + unpublished(r);
                    total >= u64::from(min_requests) && failures * 100 >= u64::from(percent) * total
                }
            };
            if tripped {
                trip = longer(trip, r, open_for(rule, retry_after));
            }
        }
        let trip = trip?;
        // Counted before the state changes, so that the count is never below the number of
        // open targets (a reader that sees 0 may skip the state words).
        open.fetch_add(1, Relaxed);
        let until = now_ms
            .saturating_add(trip.open_for.as_millis() as u64)
            .max(1);
        if self
            .state
            .compare_exchange(0, until, Relaxed, Relaxed)
            .is_err()
        {
            open.fetch_sub(1, Relaxed);
            return None;
        }
        Some(trip)
    }

    /// Settles the probe claimed from state `claimed`: no rule hit closes the breaker (and
    /// starts its windows afresh), any hit re-opens it.
    pub fn settle_probe(
        &self,
        claimed: u64,
        rules: &[BreakerRule],
        hits: u32,
        retry_after: Option<Duration>,
        now_ms: u64,
        open: &AtomicU32,
    ) -> Option<Settled> {
        let probing = claimed | PROBING;
        if hits == 0 {
            for w in self.failures.iter().chain(self.successes.iter()) {
                w.clear();
            }
            let closed = self
                .state
                .compare_exchange(probing, 0, Relaxed, Relaxed)
                .is_ok();
            if closed {
                open.fetch_sub(1, Relaxed);
            }
            return closed.then_some(Settled::Closed);
        }
        let mut trip = None;
        for (r, rule) in rules.iter().enumerate() {
            if hits & (1 << r) != 0 {
                trip = longer(trip, r, open_for(rule, retry_after));
            }
        }
        let trip = trip?;
        let until = now_ms
            .saturating_add(trip.open_for.as_millis() as u64)
            .max(1);
        self.state
            .compare_exchange(probing, until, Relaxed, Relaxed)
            .ok()
            .map(|_| Settled::Reopened(trip))
    }

    /// Gives back a probe that ended without an outcome (the client went away): the breaker is
    /// due again, for the next request.
    pub fn abandon_probe(&self, claimed: u64) {
        let _ = self
            .state
            .compare_exchange(claimed | PROBING, claimed, Relaxed, Relaxed);
    }

    /// Adds a worker's successes for rule `r` (published on its tick).
    pub fn add_successes(&self, r: usize, n: u64, now_ms: u64) {
        self.successes[r].add(now_ms, n);
    }
}

fn open_for(rule: &BreakerRule, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(d) if rule.accept_retry_after => d,
        _ => rule.trip_duration,
    }
}

fn longer(trip: Option<Trip>, rule: usize, open_for: Duration) -> Option<Trip> {
    match trip {
        Some(t) if t.open_for >= open_for => Some(t),
        _ => Some(Trip { rule, open_for }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(threshold: TripThreshold, trip_ms: u64) -> BreakerRule {
        BreakerRule {
            name: "r".into(),
            threshold,
            interval: Duration::from_millis(1000),
            statuses: vec![(500, 599), (429, 429)],
            connection_errors: true,
            trip_duration: Duration::from_millis(trip_ms),
            accept_retry_after: false,
        }
    }

    const NONE: fn(usize) -> u64 = |_| 0;

    /// Fails `n` times at `now`; the trip of the last one, if it tripped.
    fn fail(
        b: &TargetBreaker,
        rules: &[BreakerRule],
        n: u32,
        now: u64,
        open: &AtomicU32,
    ) -> Option<Trip> {
        let mut trip = None;
        for _ in 0..n {
            trip = b.record_failure(rules, 1, None, now, NONE, open);
        }
        trip
    }

    #[test]
    fn outcomes_match_rules_by_status_and_connection_errors() {
        let mut statuses_only = rule(TripThreshold::Count(1), 1);
        statuses_only.connection_errors = false;
        statuses_only.statuses = vec![(503, 503)];
        let rules = [rule(TripThreshold::Count(1), 1), statuses_only];
        assert_eq!(hits(&rules, Outcome::Status(503)), 0b11);
        assert_eq!(hits(&rules, Outcome::Status(429)), 0b01);
        assert_eq!(hits(&rules, Outcome::Status(200)), 0);
        assert_eq!(hits(&rules, Outcome::ConnectionError), 0b01);
    }

    #[test]
    fn closed_open_half_open_closed() {
        let rules = [rule(TripThreshold::Count(3), 500)];
        let b = TargetBreaker::new(&rules);
        let open = AtomicU32::new(0);
        assert_eq!(fail(&b, &rules, 2, 100, &open), None);
        assert_eq!(b.gate(100), Gate::Closed);
        let trip = fail(&b, &rules, 1, 110, &open).expect("the third failure trips it");
        assert_eq!(trip.open_for, Duration::from_millis(500));
        assert_eq!(open.load(Relaxed), 1);
        assert_eq!(b.gate(111), Gate::Open);
        assert_eq!(b.opens_in(111), Some(499));
        // Late failures while open change nothing.
        assert_eq!(fail(&b, &rules, 5, 200, &open), None);
        assert_eq!(b.gate(609), Gate::Open);
        // Due: exactly one claim wins.
        let Gate::HalfOpen(seen) = b.gate(610) else {
            panic!("due at 610")
        };
        assert!(b.claim_probe(seen));
        assert!(!b.claim_probe(seen));
        assert_eq!(b.gate(700), Gate::Open, "the probe is out");
        assert_eq!(b.opens_in(700), Some(0));
        assert_eq!(
            b.settle_probe(seen, &rules, 0, None, 720, &open),
            Some(Settled::Closed)
        );
        assert_eq!(b.gate(720), Gate::Closed);
        assert_eq!(open.load(Relaxed), 0);
        // The windows start afresh: two failures do not trip it again.
        assert_eq!(fail(&b, &rules, 2, 730, &open), None);
    }

    #[test]
    fn a_failed_probe_reopens_for_trip_duration() {
        let rules = [rule(TripThreshold::Count(1), 300)];
        let b = TargetBreaker::new(&rules);
        let open = AtomicU32::new(0);
        fail(&b, &rules, 1, 0, &open).unwrap();
        let Gate::HalfOpen(seen) = b.gate(300) else {
            panic!()
        };
        assert!(b.claim_probe(seen));
        let settled = b.settle_probe(seen, &rules, 1, None, 350, &open);
        assert_eq!(
            settled,
            Some(Settled::Reopened(Trip {
                rule: 0,
                open_for: Duration::from_millis(300)
            }))
        );
        assert_eq!(b.gate(649), Gate::Open);
        assert!(matches!(b.gate(650), Gate::HalfOpen(_)));
        assert_eq!(
            open.load(Relaxed),
            1,
            "re-opening is not a second open target"
        );
    }

    #[test]
    fn an_abandoned_probe_is_due_again() {
        let rules = [rule(TripThreshold::Count(1), 10)];
        let b = TargetBreaker::new(&rules);
        let open = AtomicU32::new(0);
        fail(&b, &rules, 1, 0, &open).unwrap();
        let Gate::HalfOpen(seen) = b.gate(20) else {
            panic!()
        };
        assert!(b.claim_probe(seen));
        b.abandon_probe(seen);
        assert_eq!(b.gate(21), Gate::HalfOpen(seen));
    }

    #[test]
    fn failures_outside_the_interval_do_not_count() {
        let rules = [rule(TripThreshold::Count(3), 100)];
        let b = TargetBreaker::new(&rules);
        let open = AtomicU32::new(0);
        fail(&b, &rules, 2, 0, &open);
        // 1.1 s later the first two have left the 1 s window.
        assert_eq!(fail(&b, &rules, 2, 1100, &open), None);
        assert!(fail(&b, &rules, 1, 1150, &open).is_some());
    }

    #[test]
    fn accept_retry_after_holds_it_open_as_the_backend_asked() {
        let mut r = rule(TripThreshold::Count(1), 30_000);
        r.accept_retry_after = true;
        let rules = [r];
        let b = TargetBreaker::new(&rules);
        let open = AtomicU32::new(0);
        let retry_after = parse_retry_after(b" 2 ");
        assert_eq!(retry_after, Some(Duration::from_secs(2)));
        let trip = b
            .record_failure(&rules, 1, retry_after, 1000, NONE, &open)
            .unwrap();
        assert_eq!(trip.open_for, Duration::from_secs(2));
        assert!(matches!(b.gate(3000), Gate::HalfOpen(_)));
        // Without the header the rule's own duration applies; and it is ignored unless accepted.
        let mut r = rules[0].clone();
        assert_eq!(open_for(&r, None), Duration::from_secs(30));
        r.accept_retry_after = false;
        assert_eq!(open_for(&r, retry_after), Duration::from_secs(30));
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(
            parse_retry_after(b"999999999"),
            Some(Duration::from_secs(24 * 3600))
        );
    }

    #[test]
    fn percentage_needs_min_requests_and_counts_successes() {
        let rules = [rule(
            TripThreshold::Percentage {
                percent: 50,
                min_requests: 10,
            },
            100,
        )];
        let b = TargetBreaker::new(&rules);
        let open = AtomicU32::new(0);
        // 4 failures, no successes: 100 %, but under 10 requests.
        assert_eq!(fail(&b, &rules, 4, 0, &open), None);
        // 6 published successes: 4 of 10 fail, under 50 %.
        b.add_successes(0, 6, 10);
        assert_eq!(fail(&b, &rules, 1, 20, &open), None); // 5 of 11
        assert!(fail(&b, &rules, 1, 20, &open).is_some()); // 6 of 12
    }

    #[test]
    fn unpublished_successes_of_this_core_count_too() {
        let rules = [rule(
            TripThreshold::Percentage {
                percent: 50,
                min_requests: 1,
            },
            100,
        )];
        let b = TargetBreaker::new(&rules);
        let open = AtomicU32::new(0);
        assert_eq!(b.record_failure(&rules, 1, None, 0, |_| 2, &open), None);
        assert!(b.record_failure(&rules, 1, None, 0, |_| 2, &open).is_some());
    }

    #[test]
    fn the_longest_tripping_rule_sets_the_duration() {
        let rules = [
            rule(TripThreshold::Count(1), 100),
            rule(TripThreshold::Count(1), 900),
        ];
        let b = TargetBreaker::new(&rules);
        let open = AtomicU32::new(0);
        let trip = b
            .record_failure(&rules, 0b11, None, 0, NONE, &open)
            .unwrap();
        assert_eq!(
            trip,
            Trip {
                rule: 1,
                open_for: Duration::from_millis(900)
            }
        );
    }

    #[test]
    fn windows_count_across_threads() {
        let w = std::sync::Arc::new(Window::new(Duration::from_secs(10)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = std::sync::Arc::clone(&w);
                std::thread::spawn(move || (0..1000).for_each(|_| w.add(5, 1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(w.sum(5), 4000);
        assert_eq!(w.sum(10_000), 0);
    }
}
