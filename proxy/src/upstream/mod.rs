//! Backends as a worker sees them: its balancers, its idea of which targets are down or
//! unhealthy, its requests in flight, and its keep-alive pool of upstream connections; plus the
//! node-wide part ([`SharedUpstreams`]): circuit breakers, hash rings, health inboxes.
//!
//! All of the first part is per core. A worker never borrows another worker's connection or
//! counter; the price is that each core keeps its own idle connections per target
//! (`max_idle_per_target`) and balances on its own in-flight counts. The request path touches
//! the shared part with one relaxed load per request ([`Upstreams::choose`]) unless a breaker is
//! open or the request failed.

mod balance;
mod breaker;
pub mod health;
mod pool;
pub mod retry;
mod ring;
mod shared;

pub use balance::Balancer;
pub use breaker::{parse_retry_after, Gate, Outcome};
pub use health::HealthChange;
pub use pool::{UpstreamConn, UpstreamPool};
pub use retry::{delay, Backoff, RetryBudget, RetrySpec};
pub use ring::{hash_input, hash_key, Ring};
pub use shared::SharedUpstreams;

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::config::TripThreshold;
use crate::snapshot::{Snapshot, TargetInfo};
use crate::tls::{Io, OriginIo};
use breaker::{Settled, Trip};

/// One worker's upstream state for one snapshot.
pub struct Upstreams {
    shared: Arc<SharedUpstreams>,
    balancers: Vec<RefCell<Balancer>>,
    /// Per target (flattened index): skipped until this instant after a failed connect.
    down_until: Vec<Cell<Option<Instant>>>,
    /// Per target: false while its health checks fail (from worker 0, applied on the tick).
    healthy: Vec<Cell<bool>>,
    /// Per target: this core's requests chosen for it and not yet finished.
    in_flight: Vec<Cell<u32>>,
    /// Per target, per breaker rule: this core's responses that did not match the rule, not
    /// yet published (percentage rules only; published on the tick).
    successes: Vec<Box<[Cell<u32>]>>,
    /// Targets whose backend has a percentage rule: the ones the tick publishes.
    counted: Vec<usize>,
    inbox: Receiver<HealthChange>,
    pub pool: UpstreamPool,
}

/// Why [`Upstreams::choose`] found no target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoTarget {
    /// Every target has been tried (or the backend has none).
    Exhausted,
    /// The untried targets left all have their circuit breaker open: answer 503 with
    /// `Retry-After` (whole seconds, at least 1) until the earliest is due for its probe.
    Open { retry_after: Duration },
}

/// Tried targets of one request, so that a failed connect moves on to another and the retry
/// loop ends once every target has been tried. The first 128 targets of a backend fit in a
/// bit set; a larger backend spills the rest into a vector (allocated only on that path).
#[derive(Default)]
pub struct Tried {
    bits: u128,
    more: Vec<usize>,
}

impl Tried {
    fn has(&self, local: usize) -> bool {
        if local < 128 {
            self.bits & (1u128 << local) != 0
        } else {
            self.more.contains(&local)
        }
    }

    pub fn add(&mut self, local: usize) {
        if local < 128 {
            self.bits |= 1u128 << local;
        } else if !self.more.contains(&local) {
            self.more.push(local);
        }
    }
}

impl Upstreams {
    /// Worker `worker`'s state; `shared` is built from the same snapshot.
    pub fn new(snapshot: &Snapshot, shared: &Arc<SharedUpstreams>, worker: usize) -> Upstreams {
        let backends = &snapshot.config.backends;
        let balancers = backends
            .iter()
            .zip(shared.backends.iter())
            .map(|(b, s)| {
                RefCell::new(Balancer::new(
                    b.balance,
                    b.targets.iter().map(|t| (t.weight, t.priority)),
                    s.ring.clone(),
                ))
            })
            .collect();
        let n = snapshot.targets.len();
        let rules = |t: usize| &backends[snapshot.targets[t].backend].circuit_breaker;
        Upstreams {
            shared: Arc::clone(shared),
            balancers,
            down_until: (0..n).map(|_| Cell::new(None)).collect(),
            healthy: (0..n).map(|_| Cell::new(true)).collect(),
            in_flight: (0..n).map(|_| Cell::new(0)).collect(),
            successes: (0..n)
                .map(|t| rules(t).iter().map(|_| Cell::new(0)).collect())
                .collect(),
            counted: (0..n)
                .filter(|&t| {
                    rules(t)
                        .iter()
                        .any(|r| matches!(r.threshold, TripThreshold::Percentage { .. }))
                })
                .collect(),
            inbox: shared.inbox(worker),
            pool: UpstreamPool::new(snapshot),
        }
    }

    /// Chooses a target of `backend` not yet tried, and starts an [`Attempt`] on it.
    ///
    /// A target whose breaker is open is never chosen; one that is due for its probe is
    /// chosen only by the request that claims the probe. Among the rest, targets that are
    /// neither down nor unhealthy are preferred; when every one left is, it picks among them
    /// anyway (a down mark or a failed check is a guess, and a try is better than a certain
    /// 503). `hash` is the request's key for `consistent_hash` (see [`hash_input`]).
    pub fn choose(
        &self,
        snapshot: &Snapshot,
        backend: usize,
        tried: &Tried,
        now: Instant,
        hash: Option<u64>,
    ) -> Result<Attempt<'_>, NoTarget> {
        let targets = snapshot.backend_targets[backend].clone();
        let first = targets.start;
        // The one read of shared memory on the common path: while no breaker of the backend is
        // open, the breakers themselves are not looked at.
        let any_open = self.shared.backends[backend].open.load(Relaxed) != 0;
        let any_drained = self.shared.backends[backend].drained.load(Relaxed) != 0;
        let drained = |local: usize| any_drained && self.shared.is_drained(first + local);
        let now_ms = self.shared.ms(now);
        let gate = |local: usize| {
            if any_open {
                self.shared.breakers[first + local].gate(now_ms)
            } else {
                Gate::Closed
            }
        };
        let preferred = |local: usize| {
            self.healthy[first + local].get()
                && self.down_until[first + local]
                    .get()
                    .is_none_or(|until| now >= until)
        };
        let in_flight = |local: usize| self.in_flight[first + local].get();
        // Probes another core claimed between the look and the claim.
        let mut lost = Tried::default();
        loop {
            let allowed =
                |i: usize| !tried.has(i) && !lost.has(i) && !drained(i) && gate(i) != Gate::Open;
            let picked = {
                let mut balancer = self.balancers[backend].borrow_mut();
                balancer
                    .pick(|i| allowed(i) && preferred(i), in_flight, hash)
                    .or_else(|| balancer.pick(allowed, in_flight, hash))
            };
            let Some(local) = picked else {
                break;
            };
            let probe = match gate(local) {
                Gate::HalfOpen(seen) => {
                    if !self.shared.breakers[first + local].claim_probe(seen) {
                        lost.add(local);
                        continue;
                    }
                    Some(seen)
                }
                _ => None,
            };
            return Ok(Attempt::new(self, backend, first + local, probe));
        }
        let untried_open =
            any_open && (0..targets.len()).any(|i| !tried.has(i) && gate(i) == Gate::Open);
        if !untried_open {
            return Err(NoTarget::Exhausted);
        }
        let wait_ms = targets
            .filter_map(|t| self.shared.breakers[t].opens_in(now_ms))
            .min()
            .unwrap_or(0);
        Err(NoTarget::Open {
            retry_after: Duration::from_secs(wait_ms.div_ceil(1000).max(1)),
        })
    }

    pub fn mark_down(&self, snapshot: &Snapshot, target: usize, now: Instant) {
        let backend = &snapshot.config.backends[snapshot.targets[target].backend];
        self.down_until[target].set(Some(now + backend.unavailable_for));
    }

    pub fn mark_up(&self, target: usize) {
        if self.down_until[target].get().is_some() {
            self.down_until[target].set(None);
        }
    }

    /// The worker's tick: applies the health changes worker 0 sent, and publishes this core's
    /// successes for percentage rules (so a percentage sees other cores' successes up to a
    /// tick late).
    pub fn on_tick(&self, now: Instant) {
        while let Ok(change) = self.inbox.try_recv() {
            if let Some(healthy) = self.healthy.get(change.target) {
                healthy.set(change.healthy);
            }
        }
        if self.counted.is_empty() {
            return;
        }
        let now_ms = self.shared.ms(now);
        for &t in &self.counted {
            for (r, count) in self.successes[t].iter().enumerate() {
                let n = count.replace(0);
                if n > 0 {
                    self.shared.breakers[t].add_successes(r, u64::from(n), now_ms);
                }
            }
        }
    }

    /// Takes over what this core knew of the targets a reload kept (`from_old[t]`: target
    /// `t`'s index in `old`): health, down marks and idle pooled connections.
    pub fn carry_from(&self, old: &Upstreams, from_old: &[Option<usize>]) {
        for (t, from) in from_old.iter().enumerate() {
            let Some(o) = *from else { continue };
            self.healthy[t].set(old.healthy[o].get());
            self.down_until[t].set(old.down_until[o].get());
            self.pool.adopt(t, &old.pool, o);
        }
    }

    /// Whether this worker takes `target` to be passing its health checks.
    pub fn is_healthy(&self, target: usize) -> bool {
        self.healthy[target].get()
    }

    /// This worker's requests in flight to `target`.
    pub fn in_flight(&self, target: usize) -> u32 {
        self.in_flight[target].get()
    }
}

/// One try of a request on one target, from [`Upstreams::choose`] until its response has
/// ended or it failed: it counts as in flight on this core meanwhile (for `least_request`),
/// and it carries the breaker's probe when it is one. Its outcome is recorded once, with
/// [`Attempt::responded`] or [`Attempt::connection_failed`]; dropping it ends it, and a probe
/// dropped without an outcome (the client went away) is given back for the next request.
///
/// It lives in the request's task across every await of the exchange, so it is kept to 24
/// bytes: 32-bit indexes, and the probe's state word with 0 for none (an open state is never 0).
pub struct Attempt<'a> {
    up: &'a Upstreams,
    /// The backend's index; [`RECORDED`] once the outcome is in.
    backend: u32,
    target: u32,
    /// The breaker state the probe was claimed from; 0: not a probe.
    probe: u64,
}

/// `Attempt::backend` once its outcome has been recorded.
const RECORDED: u32 = u32::MAX;

impl<'a> Attempt<'a> {
    fn new(up: &'a Upstreams, backend: usize, target: usize, probe: Option<u64>) -> Attempt<'a> {
        let n = &up.in_flight[target];
        n.set(n.get() + 1);
        Attempt {
            up,
            // Snapshots hold far fewer than 2^32 backends and targets.
            backend: backend as u32,
            target: target as u32,
            probe: probe.unwrap_or(0),
        }
    }

    /// The flattened target index.
    #[inline]
    pub fn target(&self) -> usize {
        self.target as usize
    }

    /// Whether this is the probe of a half-open breaker.
    pub fn is_probe(&self) -> bool {
        self.probe != 0
    }

    /// No usable response: the connect was refused or timed out, the connection was reset or
    /// closed without an answer (not a stale pooled one), the answer was late or malformed.
    pub fn connection_failed(&mut self, now: Instant) {
        self.record(Outcome::ConnectionError, None, now);
    }

    /// A response head arrived; `retry_after` is its `Retry-After` value, if any.
    pub fn responded(&mut self, status: u16, retry_after: Option<&[u8]>, now: Instant) {
        self.record(Outcome::Status(status), retry_after, now);
    }

    fn record(&mut self, outcome: Outcome, retry_after: Option<&[u8]>, now: Instant) {
        let b = std::mem::replace(&mut self.backend, RECORDED);
        if b == RECORDED {
            return;
        }
        let (b, target) = (b as usize, self.target as usize);
        let shared = &*self.up.shared;
        let backend = &shared.backends[b];
        let rules = &backend.rules[..];
        if rules.is_empty() {
            return;
        }
        let hits = breaker::hits(rules, outcome);
        let breaker = &shared.breakers[target];
        let successes = &self.up.successes[target];
        let retry_after = if hits != 0 {
            retry_after.and_then(parse_retry_after)
        } else {
            None
        };
        let claimed = std::mem::take(&mut self.probe);
        if claimed != 0 {
            let now_ms = shared.ms(now);
            let settled =
                breaker.settle_probe(claimed, rules, hits, retry_after, now_ms, &backend.open);
            match settled {
                Some(Settled::Closed) => log::info!(
                    "circuit breaker of {} closed: the probe succeeded",
                    shared.label(target)
                ),
                Some(Settled::Reopened(trip)) => {
                    log_trip(shared, b, target, "re-opened: the probe failed", trip)
                }
                None => {}
            }
            return;
        }
        // The common case ends here for a success: per-core counts only.
        for (r, rule) in rules.iter().enumerate() {
            if hits & (1 << r) == 0 && matches!(rule.threshold, TripThreshold::Percentage { .. }) {
                successes[r].set(successes[r].get() + 1);
            }
        }
        if hits != 0 {
            let now_ms = shared.ms(now);
            let unpublished = |r: usize| u64::from(successes[r].get());
            if let Some(trip) =
                breaker.record_failure(rules, hits, retry_after, now_ms, unpublished, &backend.open)
            {
                log_trip(shared, b, target, "opened", trip);
            }
        }
    }
}

fn log_trip(shared: &SharedUpstreams, backend: usize, target: usize, what: &str, trip: Trip) {
    log::warn!(
        "circuit breaker of {} {what} (rule {:?}); open for {:?}",
        shared.label(target),
        shared.backends[backend].rules[trip.rule].name,
        trip.open_for
    );
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let target = self.target as usize;
        let n = &self.up.in_flight[target];
        n.set(n.get().saturating_sub(1));
        if self.probe != 0 {
            self.up.shared.breakers[target].abandon_probe(self.probe);
        }
    }
}

/// Opens a connection to a target: TCP without Nagle, then the TLS handshake for an
/// `https://` target (verified as its backend's `tls:` says).
pub async fn open(target: &TargetInfo) -> std::io::Result<OriginIo> {
    open_addr(target.addr, target.tls.as_ref()).await
}

pub async fn open_addr(
    addr: std::net::SocketAddr,
    tls: Option<&crate::snapshot::TargetTls>,
) -> std::io::Result<OriginIo> {
    let tcp = monoio::net::TcpStream::connect_addr(addr).await?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Io::Plain(tcp)),
        Some(tls) => {
            let stream = tls.client.connect(tcp, tls.name.clone()).await?;
            Ok(Io::Tls(Box::new(stream)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot with one backend `app` of `targets` closed ports (never connected to here),
    /// with `extra` backend keys; one worker's upstreams and the shared part.
    fn setup(targets: usize, extra: &str) -> (Snapshot, Arc<SharedUpstreams>) {
        let mut yaml = format!(
            "listeners: [{{address: 127.0.0.1:0}}]\nbackends:\n  - name: app\n{extra}    targets:\n"
        );
        for i in 0..targets {
            yaml.push_str(&format!("      - url: http://127.0.0.1:{}\n", 1 + i));
        }
        yaml.push_str("routes:\n  - backend: app\n");
        let config = crate::config::load_str(&yaml, "test.yaml", &|_| None).unwrap();
        let snapshot = Snapshot::build(config).unwrap();
        let shared = Arc::new(SharedUpstreams::new(&snapshot, 1));
        (snapshot, shared)
    }

    const BREAKER: &str = "    circuit_breaker:\n      rules:\n        - failure_condition: \
        {count: 1, interval: 10s, status_codes: [500]}\n          trip_duration: 5s\n";

    fn pick(up: &Upstreams, snap: &Snapshot, now: Instant) -> Result<usize, NoTarget> {
        up.choose(snap, 0, &Tried::default(), now, None)
            .map(|a| a.target())
    }

    #[test]
    fn open_targets_are_skipped_then_probed_once_then_closed() {
        let (snap, shared) = setup(2, BREAKER);
        let up = Upstreams::new(&snap, &shared, 0);
        let t0 = Instant::now();
        let mut a = up.choose(&snap, 0, &Tried::default(), t0, None).unwrap();
        assert_eq!(a.target(), 0);
        a.responded(500, None, t0);
        drop(a);
        // Target 0 is open: only 1 is chosen, and it keeps working.
        for _ in 0..4 {
            let mut a = up.choose(&snap, 0, &Tried::default(), t0, None).unwrap();
            assert_eq!(a.target(), 1);
            a.responded(200, None, t0);
        }
        let mut a = up.choose(&snap, 0, &Tried::default(), t0, None).unwrap();
        a.responded(503, None, t0); // 503 is not in the rule
        drop(a);
        let mut a = up.choose(&snap, 0, &Tried::default(), t0, None).unwrap();
        a.responded(500, None, t0 + Duration::from_millis(1500));
        drop(a);
        // Both open: 503 with the time until the earliest (target 0, at 5 s) is due.
        assert_eq!(
            pick(&up, &snap, t0 + Duration::from_millis(1000)),
            Err(NoTarget::Open {
                retry_after: Duration::from_secs(4)
            })
        );
        // At 5 s target 0 is due: one request claims the probe; while it is out, nothing else
        // goes (target 1 is due only at 6.5 s).
        let at = t0 + Duration::from_millis(5100);
        let mut probe = up.choose(&snap, 0, &Tried::default(), at, None).unwrap();
        assert_eq!((probe.target(), probe.is_probe()), (0, true));
        assert_eq!(
            pick(&up, &snap, at),
            Err(NoTarget::Open {
                retry_after: Duration::from_secs(1)
            })
        );
        probe.responded(200, None, at);
        drop(probe);
        assert_eq!(pick(&up, &snap, at), Ok(0));
        assert_eq!(shared.backends[0].open.load(Relaxed), 1);
    }

    #[test]
    fn a_probe_dropped_without_an_outcome_is_given_back() {
        let (snap, shared) = setup(1, BREAKER);
        let up = Upstreams::new(&snap, &shared, 0);
        let t0 = Instant::now();
        up.choose(&snap, 0, &Tried::default(), t0, None)
            .unwrap()
            .responded(500, None, t0);
        let due = t0 + Duration::from_secs(6);
        let probe = up.choose(&snap, 0, &Tried::default(), due, None).unwrap();
        assert!(probe.is_probe());
        assert!(matches!(pick(&up, &snap, due), Err(NoTarget::Open { .. })));
        drop(probe);
        let again = up.choose(&snap, 0, &Tried::default(), due, None).unwrap();
        assert!(again.is_probe());
    }

    #[test]
    fn least_request_counts_attempts_in_flight() {
        let (snap, shared) = setup(3, "    balance: least_request\n");
        let up = Upstreams::new(&snap, &shared, 0);
        let now = Instant::now();
        let a = up.choose(&snap, 0, &Tried::default(), now, None).unwrap();
        let b = up.choose(&snap, 0, &Tried::default(), now, None).unwrap();
        let c = up.choose(&snap, 0, &Tried::default(), now, None).unwrap();
        let mut held = [a.target(), b.target(), c.target()];
        held.sort();
        assert_eq!(held, [0, 1, 2]);
        let b_target = b.target();
        drop(b);
        assert_eq!(up.in_flight(b_target), 0);
        assert_eq!(pick(&up, &snap, now), Ok(b_target));
        drop((a, c));
        assert!((0..3).all(|t| up.in_flight(t) == 0));
    }

    #[test]
    fn health_messages_apply_on_the_tick() {
        let (snap, shared) = setup(2, "");
        let up = Upstreams::new(&snap, &shared, 0);
        let now = Instant::now();
        shared.broadcast(HealthChange {
            target: 0,
            healthy: false,
        });
        assert!(up.is_healthy(0), "not before the tick");
        up.on_tick(now);
        assert!(!up.is_healthy(0));
        assert!((0..4).all(|_| pick(&up, &snap, now) == Ok(1)));
        // Every target unhealthy: chosen anyway.
        shared.broadcast(HealthChange {
            target: 1,
            healthy: false,
        });
        up.on_tick(now);
        assert!(pick(&up, &snap, now).is_ok());
    }

    #[test]
    fn percentage_rules_publish_this_cores_successes_on_the_tick() {
        let rule = "    circuit_breaker:\n      rules:\n        - failure_condition: \
            {percentage: 50, min_requests: 4, interval: 10s, status_codes: [500]}\n          \
            trip_duration: 5s\n";
        let (snap, shared) = setup(1, rule);
        let up = Upstreams::new(&snap, &shared, 0);
        let other = Upstreams::new(&snap, &shared, 0);
        let now = Instant::now();
        let respond = |up: &Upstreams, status| {
            up.choose(&snap, 0, &Tried::default(), now, None)
                .unwrap()
                .responded(status, None, now)
        };
        // Three successes on another core, published by its tick.
        (0..3).for_each(|_| respond(&other, 200));
        other.on_tick(now);
        respond(&up, 500);
        respond(&up, 500); // 2 of 5
        assert!(pick(&up, &snap, now).is_ok());
        respond(&up, 500); // 3 of 6
        assert!(matches!(pick(&up, &snap, now), Err(NoTarget::Open { .. })));
    }

    #[test]
    fn an_attempt_takes_24_bytes_of_a_request_task() {
        assert_eq!(std::mem::size_of::<super::Attempt<'_>>(), 24);
    }

    #[test]
    fn tried_holds_every_target_of_a_large_backend() {
        let mut tried = Tried::default();
        for local in 0..300 {
            assert!(!tried.has(local));
            tried.add(local);
            assert!(tried.has(local));
        }
        tried.add(200);
        assert_eq!(tried.more.len(), 300 - 128);
        assert!(!tried.has(300));
    }
}
