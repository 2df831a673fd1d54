//! The arithmetic of retries: how long to wait before each one ([`delay`]) and whether this
//! core may retry at all ([`RetryBudget`]).
//!
//! Both are pure: nothing here sleeps, reads a clock or draws a random number. The caller
//! passes the time and the randomness, so the tests run on a fake clock. The retry loop itself
//! (which conditions retry, buffering the body, the deadline) belongs to the request pipeline.

use std::time::{Duration, Instant};

/// One `retry` policy as configured (APIM's `<retry>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySpec {
    /// Retries after the first try (so at most `count + 1` tries).
    pub count: u32,
    pub interval: Duration,
    /// With `interval` only: linear back-off, `interval + attempt * delta`.
    pub delta: Option<Duration>,
    /// With `delta`: exponential back-off, `interval + (2^attempt - 1) * delta`, jittered and
    /// capped at this.
    pub max_interval: Option<Duration>,
    /// The first retry goes at once; later ones wait as computed.
    pub first_fast_retry: bool,
    /// Retry when no connection could be made (nothing was sent: safe for any method).
    pub on_connect_failure: bool,
    /// Inclusive status ranges that are retried.
    pub statuses: Vec<(u16, u16)>,
    /// Wait for a response's `Retry-After` (seconds) instead, when it carries one.
    pub honor_retry_after: bool,
    /// A request body up to this size is buffered so that it can be sent again.
    pub max_buffered_body: u64,
    /// Retries in the last 10 s may be this share (percent) of requests ...
    pub budget_percent: u32,
    /// ... plus this many per second, so that a quiet core can still retry.
    pub budget_min_per_sec: u32,
}

/// Which back-off a spec describes (APIM's rules: which of the three settings are given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// `interval` only: every wait is `interval`.
    Fixed,
    /// `interval` and `delta`: `interval + attempt * delta`.
    Linear,
    /// `interval`, `delta` and `max_interval`: `interval + (2^attempt - 1) * delta`, jittered.
    Exponential,
}

impl RetrySpec {
    pub fn backoff(&self) -> Backoff {
        match (self.delta, self.max_interval) {
            (None, _) => Backoff::Fixed,
            (Some(_), None) => Backoff::Linear,
            (Some(_), Some(_)) => Backoff::Exponential,
        }
    }

    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        self.statuses
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// The wait before retry `attempt` (0 for the first retry, 1 for the second, ...).
///
/// - fixed: `interval`;
/// - linear: `interval + attempt * delta`;
/// - exponential: `interval + (2^attempt - 1) * delta`, capped at `max_interval`, then moved by
///   a jitter of ±20 % drawn from `rng` (uniform over the u64 range), then capped again, so at
///   the cap the waits spread over 80-100 % of `max_interval` and clients that failed together
///   do not retry together.
///
/// With `first_fast_retry` attempt 0 waits nothing; later attempts keep their own numbers.
pub fn delay(spec: &RetrySpec, attempt: u32, rng: u64) -> Duration {
    if spec.first_fast_retry && attempt == 0 {
        return Duration::ZERO;
    }
    let cap = |d: Duration| spec.max_interval.map_or(d, |max| d.min(max));
    match (spec.backoff(), spec.delta) {
        (Backoff::Linear, Some(delta)) => {
            cap(spec.interval.saturating_add(delta.saturating_mul(attempt)))
        }
        (Backoff::Exponential, Some(delta)) => {
            let factor = if attempt >= 32 {
                u32::MAX
            } else {
                (1u64 << attempt).saturating_sub(1).min(u64::from(u32::MAX)) as u32
            };
            let raw = cap(spec.interval.saturating_add(delta.saturating_mul(factor)));
            cap(jitter(raw, rng))
        }
        _ => cap(spec.interval),
    }
}

/// `d` moved by up to ±20 %: `rng` 0 gives 80 %, `u64::MAX` gives 120 %.
fn jitter(d: Duration, rng: u64) -> Duration {
    let nanos = d.as_nanos();
    let span = nanos / 5;
    // rng / 2^64 of the way through [nanos - span, nanos + span].
    let offset = (2 * span * u128::from(rng)) >> 64;
    let nanos = nanos - span + offset;
    Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
}

/// The retry budget of one core: retries are allowed while those made in the last 10 s stay
/// within `percent` of the requests seen in that time plus `min_per_sec * 10`.
///
/// Counted in ten one-second buckets, so the window slides by whole seconds. Per core, like
/// every other counter on the request path: with N workers the node allows N times
/// `min_per_sec`, and the share holds per core (and so for the node, with connections spread
/// evenly). Requests are first tries only; a retry does not raise its own budget.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    percent: u32,
    min_per_sec: u32,
    epoch: Instant,
    buckets: [Bucket; WINDOW_SECS],
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    second: u64,
    requests: u64,
    retries: u64,
}

const WINDOW_SECS: usize = 10;

impl RetryBudget {
    pub fn new(percent: u32, min_per_sec: u32, now: Instant) -> RetryBudget {
        RetryBudget {
            percent,
            min_per_sec,
            epoch: now,
            buckets: [Bucket::default(); WINDOW_SECS],
        }
    }

    pub fn for_spec(spec: &RetrySpec, now: Instant) -> RetryBudget {
        RetryBudget::new(spec.budget_percent, spec.budget_min_per_sec, now)
    }

    /// Counts a request (a first try).
    pub fn record_request(&mut self, now: Instant) {
        self.bucket(now).requests += 1;
    }

    /// Whether a retry may be made now; if so it is counted.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        let (requests, retries) = self.totals(now);
        let allowed = requests * u64::from(self.percent) / 100 + u64::from(self.min_per_sec) * 10;
        if retries >= allowed {
            return false;
        }
        self.bucket(now).retries += 1;
        true
    }

    /// Requests and retries in the last 10 s (this second and the nine before).
    pub fn totals(&self, now: Instant) -> (u64, u64) {
        let second = self.second(now);
        self.buckets
            .iter()
            .filter(|b| b.second <= second && second - b.second < WINDOW_SECS as u64)
            .fold((0, 0), |(q, r), b| (q + b.requests, r + b.retries))
    }

    fn second(&self, now: Instant) -> u64 {
        // Seconds since the epoch, offset by the window, so that a zeroed bucket (second 0)
        // is never inside it.
        now.saturating_duration_since(self.epoch).as_secs() + WINDOW_SECS as u64
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let second = self.second(now);
        let b = &mut self.buckets[second as usize % WINDOW_SECS];
        if b.second != second {
            *b = Bucket {
                second,
                ..Bucket::default()
            };
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn spec(interval: u64, delta: Option<u64>, max: Option<u64>) -> RetrySpec {
        RetrySpec {
            count: 5,
            interval: Duration::from_millis(interval),
            delta: delta.map(Duration::from_millis),
            max_interval: max.map(Duration::from_millis),
            first_fast_retry: false,
            on_connect_failure: true,
            statuses: vec![(502, 504)],
            honor_retry_after: true,
            max_buffered_body: 65536,
            budget_percent: 20,
            budget_min_per_sec: 3,
        }
    }

    fn delays(spec: &RetrySpec, rng: u64) -> Vec<u64> {
        (0..6)
            .map(|a| delay(spec, a, rng).as_millis() as u64)
            .collect()
    }

    #[test]
    fn fixed_interval() {
        let s = spec(100, None, None);
        assert_eq!(s.backoff(), Backoff::Fixed);
        assert_eq!(delays(&s, 0), vec![100; 6]);
        // A cap below the interval still caps.
        assert_eq!(delays(&spec(100, None, Some(50)), 7), vec![50; 6]);
    }

    #[test]
    fn linear_grows_by_delta() {
        let s = spec(100, Some(50), None);
        assert_eq!(s.backoff(), Backoff::Linear);
        assert_eq!(delays(&s, 12345), vec![100, 150, 200, 250, 300, 350]);
    }

    #[test]
    fn exponential_doubles_the_delta_jitters_and_caps() {
        let s = spec(100, Some(100), Some(2000));
        assert_eq!(s.backoff(), Backoff::Exponential);
        // The midpoint of the jitter range is the plain formula: 100 + (2^a - 1) * 100.
        let middle = 1u64 << 63;
        assert_eq!(delays(&s, middle), vec![100, 200, 400, 800, 1600, 2000]);
        // The ends of the jitter range: -20 % and (nearly) +20 %, never past the cap.
        assert_eq!(delays(&s, 0), vec![80, 160, 320, 640, 1280, 1600]);
        assert_eq!(delays(&s, u64::MAX), vec![119, 239, 479, 959, 1919, 2000]);
        // A huge attempt number saturates rather than overflows.
        assert_eq!(delay(&s, 1000, middle), 2000 * MS);
    }

    #[test]
    fn first_fast_retry_goes_at_once() {
        let mut s = spec(100, Some(50), None);
        s.first_fast_retry = true;
        assert_eq!(delays(&s, 0), vec![0, 150, 200, 250, 300, 350]);
    }

    #[test]
    fn status_conditions() {
        let s = spec(1, None, None);
        assert!(s.retries_status(503));
        assert!(!s.retries_status(500));
    }

    #[test]
    fn budget_allows_a_share_of_requests_plus_a_floor() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(20, 1, t0);
        // No traffic: the floor alone, 1 a second over 10 s.
        let granted = (0..20).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 10);
        // 100 requests raise it by 20.
        for _ in 0..100 {
            b.record_request(t0 + 2 * 1000 * MS);
        }
        let granted = (0..40).filter(|_| b.try_retry(t0 + 2000 * MS)).count();
        assert_eq!(granted, 20);
        assert_eq!(b.totals(t0 + 2000 * MS), (100, 30));
    }

    #[test]
    fn budget_window_slides_by_the_second() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut b = RetryBudget::new(0, 1, t0);
        assert_eq!((0..20).filter(|_| b.try_retry(at(0))).count(), 10);
        // Still within 10 s of the retries at second 0: nothing.
        assert!(!b.try_retry(at(9)));
        // At second 10 the retries of second 0 have left the window.
        assert_eq!((0..20).filter(|_| b.try_retry(at(10))).count(), 10);
        assert_eq!(b.totals(at(10)), (0, 10));
        // Long idle: everything expired.
        assert_eq!(b.totals(at(1000)), (0, 0));
    }
}
