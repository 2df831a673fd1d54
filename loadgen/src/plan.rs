//! When a connection may send its next request: a worker's [`Plan`].
//!
//! Closed loop, a connection sends again as soon as its last response is in, so the plan is only
//! a count (`-n`, split exactly between workers). Open loop, requests are due on a fixed
//! [`Cadence`] (the worker's share of `--rate`) whether or not connections are free: a due
//! request is taken by the first idle connection, and its latency counts from its intended time,
//! not from when it could be sent (wrk2's correction of coordinated omission). Requests that
//! fall due while every connection is busy wait, and show up as latency, never as a lower rate
//! silently.
//!
//! Requests sent during warm-up take nothing from the `-n` budget. Everything here belongs to one
//! worker (`Cell`s, no atomics); the only cross-thread part of open loop is the pacer thread's
//! wake-up ([`crate::pacer`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// A fixed schedule: request `i` is due at `start + i * period`, for `i < limit`.
#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    pub start: Instant,
    pub period_ns: f64,
    pub limit: u64,
}

impl Cadence {
    /// `rate` requests a second from `start`; with `count`, that many after `counted_from` (and
    /// whatever falls due before it, in warm-up).
    pub fn new(start: Instant, rate: f64, counted_from: Instant, count: Option<u64>) -> Cadence {
        let mut c = Cadence {
            start,
            period_ns: 1e9 / rate,
            limit: u64::MAX,
        };
        if let Some(n) = count {
            c.limit = c.first_at_or_after(counted_from).saturating_add(n);
        }
        c
    }

    /// The intended send time of request `i`.
    #[inline]
    pub fn intended(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * self.period_ns) as u64)
    }

    /// How many requests are due at `now` (at most `limit`).
    #[inline]
    pub fn due(&self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        let elapsed = now.duration_since(self.start).as_nanos() as f64;
        ((elapsed / self.period_ns) as u64 + 1).min(self.limit)
    }

    /// The index of the first request intended at or after `t`.
    fn first_at_or_after(&self, t: Instant) -> u64 {
        let mut i = (t.saturating_duration_since(self.start).as_nanos() as f64 / self.period_ns)
            .floor() as u64;
        while self.intended(i) < t {
            i += 1;
        }
        i
    }
}

/// What a connection is allowed to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// How many requests (pipelined together).
    pub count: usize,
    /// Open loop: the intended send time, latency counts from here.
    pub intended: Option<Instant>,
}

pub enum Plan {
    Closed {
        /// Requests left to send after warm-up; `None` = until stopped.
        budget: Option<Cell<u64>>,
        counted_from: Instant,
        stopped: Cell<bool>,
    },
    Open(Schedule),
}

impl Plan {
    pub fn closed(count: Option<u64>, counted_from: Instant) -> Plan {
        Plan::Closed {
            budget: count.map(Cell::new),
            counted_from,
            stopped: Cell::new(false),
        }
    }

    pub fn open(cadence: Cadence) -> Plan {
        Plan::Open(Schedule {
            cadence,
            taken: Cell::new(0),
            stopped: Cell::new(false),
            waiters: RefCell::new(VecDeque::new()),
        })
    }

    /// The next requests to send, at most `want`; `None` when the run is over for this worker.
    #[inline]
    pub async fn next(&self, want: usize) -> Option<Grant> {
        match self {
            Plan::Closed {
                budget,
                counted_from,
                stopped,
            } => {
                if stopped.get() {
                    return None;
                }
                let count = match budget {
                    Some(left) if Instant::now() >= *counted_from => {
                        let n = left.get().min(want as u64);
                        left.set(left.get() - n);
                        n as usize
                    }
                    _ => want,
                };
                (count > 0).then_some(Grant {
                    count,
                    intended: None,
                })
            }
            Plan::Open(s) => s.next().await.map(|t| Grant {
                count: 1,
                intended: Some(t),
            }),
        }
    }

    /// Returns requests that were granted but not sent or not answered (a connection closed
    /// with pipelined requests outstanding): another connection sends them.
    pub fn give_back(&self, n: usize) {
        if let Plan::Closed {
            budget: Some(left),
            counted_from,
            ..
        } = self
        {
            if n > 0 && Instant::now() >= *counted_from {
                left.set(left.get() + n as u64);
            }
        }
    }

    /// Charges a failed connection attempt to the `-n` budget, so that a run against a dead
    /// origin ends. `None` when nothing is left to send (nothing charged); otherwise whether the
    /// failure stands for a request and is to be counted (open loop with `-n`, only when one
    /// was due).
    pub fn charge_failure(&self, now: Instant) -> Option<bool> {
        match self {
            Plan::Closed {
                budget,
                counted_from,
                stopped,
            } => {
                if stopped.get() {
                    return None;
                }
                match budget {
                    Some(left) if now >= *counted_from => {
                        if left.get() == 0 {
                            return None;
                        }
                        left.set(left.get() - 1);
                        Some(true)
                    }
                    _ => Some(true),
                }
            }
            Plan::Open(s) => {
                if s.is_over() {
                    return None;
                }
                if s.cadence.limit == u64::MAX {
                    return Some(true);
                }
                let due = s.cadence.due(now) > s.taken.get();
                if due {
                    s.take();
                }
                Some(due)
            }
        }
    }

    /// Ends the run: every waiting connection gets `None`.
    pub fn stop(&self) {
        match self {
            Plan::Closed { stopped, .. } => stopped.set(true),
            Plan::Open(s) => {
                s.stopped.set(true);
                for w in s.waiters.borrow_mut().drain(..) {
                    w.wake();
                }
            }
        }
    }

    pub fn schedule(&self) -> Option<&Schedule> {
        match self {
            Plan::Open(s) => Some(s),
            Plan::Closed { .. } => None,
        }
    }
}

/// Open loop: due requests, handed to idle connections in order.
pub struct Schedule {
    cadence: Cadence,
    /// Requests handed out so far (the next one's index).
    taken: Cell<u64>,
    stopped: Cell<bool>,
    /// Idle connections waiting for a request to fall due, oldest first.
    waiters: RefCell<VecDeque<Waker>>,
}

impl Schedule {
    async fn next(&self) -> Option<Instant> {
        poll_fn(|cx| {
            let taken = self.taken.get();
            if self.stopped.get() || taken >= self.cadence.limit {
                return Poll::Ready(None);
            }
            if self.cadence.due(Instant::now()) > taken {
                self.take();
                return Poll::Ready(Some(self.cadence.intended(taken)));
            }
            self.waiters.borrow_mut().push_back(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Hands out the next request; after the last one, every waiting connection is woken to
    /// see that the run is over.
    fn take(&self) {
        let taken = self.taken.get() + 1;
        self.taken.set(taken);
        if taken == self.cadence.limit {
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Wakes as many idle connections as requests have fallen due (called on the pacer's
    /// signal). A woken connection that finds the request already taken waits again.
    pub fn wake_due(&self) {
        let due = self.cadence.due(Instant::now());
        let mut ready = due.saturating_sub(self.taken.get());
        if self.taken.get() >= self.cadence.limit {
            ready = u64::MAX; // over: let everybody see it
        }
        let mut waiters = self.waiters.borrow_mut();
        while ready > 0 {
            match waiters.pop_front() {
                Some(w) => w.wake(),
                None => break,
            }
            ready -= 1;
        }
    }

    pub fn is_over(&self) -> bool {
        self.stopped.get() || self.taken.get() >= self.cadence.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadence_counts_and_limits() {
        let t0 = Instant::now();
        let c = Cadence::new(t0, 1000.0, t0, None);
        assert_eq!(c.due(t0), 1);
        assert_eq!(c.due(t0 + Duration::from_micros(999)), 1);
        assert_eq!(c.due(t0 + Duration::from_millis(1)), 2);
        assert_eq!(c.due(t0 + Duration::from_secs(1)), 1001);
        assert_eq!(c.intended(3), t0 + Duration::from_millis(3));
        // Counting 10 from 5.5 ms on: requests 6..16.
        let c = Cadence::new(t0, 1000.0, t0 + Duration::from_micros(5500), Some(10));
        assert_eq!(c.limit, 16);
        assert_eq!(c.due(t0 + Duration::from_secs(9)), 16);
    }

    #[test]
    fn closed_budget_is_exact_with_pipelining() {
        let plan = Plan::closed(Some(10), Instant::now());
        let mut sent = 0;
        let rt = &mut monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            while let Some(g) = plan.next(4).await {
                sent += g.count;
                if sent == 8 {
                    plan.give_back(2); // a connection closed with two unanswered
                    sent -= 2;
                }
            }
        });
        assert_eq!(sent, 10);
    }

    #[test]
    fn open_hands_out_due_requests_in_order() {
        let t0 = Instant::now() - Duration::from_millis(10);
        let plan = Plan::open(Cadence::new(t0, 1000.0, t0, Some(5)));
        let rt = &mut monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        let got: Vec<Instant> = rt.block_on(async {
            let mut v = Vec::new();
            while let Some(g) = plan.next(1).await {
                v.push(g.intended.unwrap());
            }
            v
        });
        assert_eq!(got.len(), 5);
        assert_eq!(got[4], t0 + Duration::from_millis(4));
    }
}
