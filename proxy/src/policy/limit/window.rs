//! `rate-limit-by-key`: at most `calls` admitted per key in any sliding window of `period`,
//! node-wide, with no lock and no shared write on the common path.
//!
//! The period is split into 15 sub-windows of `d = ceil(period / 15)` ms (at least 1 ms); the
//! sub-window of a time is its epoch, `now_ms / d`. A [`SharedWindow`] line holds 16 counters,
//! one per epoch modulo 16, each packing (epoch, count) in one `u64`. The window total at epoch
//! `e` is the sum of the counters of epochs `e - 15 ..= e`: sixteen sub-windows, so a call
//! counts for more than `15 d` and at most `16 d` ms after it was admitted: more than `period`,
//! and at most `period + d + 14` ms (the 14 from rounding `d` up). The window never forgets a
//! call early, so it never over-admits; it may free one up to `d + 14` ms late.
//!
//! A [`LocalWindow`] (one per core per policy) spends tokens it leased from the shared line:
//! a lease sums the 15 past counters with plain loads and takes tokens on the current one with
//! one compare-and-swap, checked against `calls` with the value the swap observed. Nothing adds
//! to a past counter (tokens are taken only in the sub-window they are spent in), so that sum
//! can only be too high by the time the swap lands, never too low: over-admission is zero. A
//! token leased in epoch `e` expires with `e`, so it may only be spent in `e`; what a core
//! still holds when `e` ends goes back to `e`'s counter at its next `acquire` for the key or its
//! next [`LocalWindow::tick`].
//!
//! Under-admission is bounded by what other cores hold unused: at any instant at most
//! `(workers - 1) * lease` tokens, `lease = clamp(calls / (20 * workers), 1, 1024)`, which is
//! at most 5 % of `calls` when `calls >= 20 * workers`; plus tokens of an ended sub-window not
//! yet returned, for as long as the holding core goes without a tick (the integrator ticks
//! every 10 ms to 1 s, within one sub-window for periods of a second or more).
//!
//! Memory: the shared table is `slots * 128` bytes, `slots = next_pow2(2 * max_keys)` and at
//! least 1,024 (128 KiB; 4 MiB for 10,000 keys). Each core's table is allocated up front at 26
//! bytes per key, `max_keys` keys (260 KB per core for 10,000 keys); a flood of distinct keys
//! evicts, it does not grow anything. An evicted key cannot get more than its limit back: the
//! tokens it used stay in the shared counters, only its unused lease is returned. With
//! `max_keys` keys active, about four keys in ten share a line with another key and so a
//! budget; a bigger `max_keys` makes that rarer.
//!
//! What it does not do: agree on time. The epoch comes from each caller's clock, and a core
//! whose clock lags by δ ms can admit into a sub-window the others have already summed as past,
//! so the bound above holds to within δ. Cores reading one monotonic clock keep δ far below
//! a sub-window.

use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::table::KeyTable;
use super::{lease_size, shared_lines};

/// Sub-windows a period is split into.
const SUBWINDOWS: u64 = 15;

/// Counters per line: one more than [`SUBWINDOWS`], so that the sub-window being filled never
/// shares a counter with one still in the window.
const COUNTERS: usize = 16;

/// A `rate-limit-by-key` policy's settings.
#[derive(Clone, Debug)]
pub struct RateSpec {
    /// Calls admitted per key per window; above `u32::MAX` it is treated as `u32::MAX`.
    pub calls: u64,
    pub period: Duration,
    /// Worker cores that will each hold a [`LocalWindow`]; sizes the leases.
    pub workers: usize,
    /// Keys each core keeps state for; also sizes the shared table.
    pub max_keys: usize,
}

/// One line: the 16 sub-window counters of the keys that hash to it, in 128 bytes of their
/// own so that cores leasing for other keys never contend for its cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Line([AtomicU64; COUNTERS]);

// SAFETY: a line is sixteen AtomicU64s; all zero is an empty line.
unsafe impl super::Zeroed for Line {}

/// The node-wide counters of one rate limit, shared by every worker core.
pub struct SharedWindow {
    lines: Box<[Line]>,
    mask: u64,
    /// `d`: milliseconds per sub-window.
    sub_ms: u64,
    calls: u32,
    workers: u64,
}

/// What one lease did.
struct Lease {
    /// Tokens taken: 0 when fewer than needed were left.
    granted: u32,
    /// The window total after the lease, including `granted`.
    total: u32,
    /// The epoch of the oldest non-empty sub-window, which frees tokens first.
    oldest: u32,
}

fn pack(epoch: u32, count: u32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(count)
}

fn unpack(value: u64) -> (u32, u32) {
    ((value >> 32) as u32, value as u32)
}

/// How many sub-windows `then` lies before `now`; negative when after. Epochs are `u32` and
/// wrap, and the difference stays right across the wrap.
fn age(now: u32, then: u32) -> i32 {
    now.wrapping_sub(then) as i32
}

impl SharedWindow {
    pub fn new(spec: &RateSpec) -> SharedWindow {
        let slots = shared_lines(spec.max_keys);
        let period_ms = u64::try_from(spec.period.as_millis()).unwrap_or(u64::MAX);
        SharedWindow {
            lines: super::zeroed_table(slots),
            mask: slots as u64 - 1,
            // Rounded up: 15 sub-windows must cover the whole period, or a call admitted late
            // in the oldest one would leave the window before `period` had passed.
            sub_ms: period_ms.div_ceil(SUBWINDOWS).max(1),
            calls: u32::try_from(spec.calls).unwrap_or(u32::MAX),
            workers: spec.workers.max(1) as u64,
        }
    }

    /// Lines in the table.
    pub fn slots(&self) -> usize {
        self.lines.len()
    }

    /// Milliseconds per sub-window (`d`).
    pub fn subwindow_ms(&self) -> u64 {
        self.sub_ms
    }

    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.lines.len() * size_of::<Line>()
    }

    fn epoch(&self, now_ms: u64) -> u32 {
        (now_ms / self.sub_ms) as u32
    }

    fn line(&self, key: u64) -> &[AtomicU64; COUNTERS] {
        &self.lines[(key & self.mask) as usize].0
    }

    /// Takes at least `need` tokens for `key` in `epoch`, or none. Takes more, up to the lease
    /// size, when that many are left. `need` may be 0: a lease then only refreshes the figures.
    ///
    /// Atomics here are `Relaxed`: each counter is its own ledger and no other memory is
    /// published through it; the bound needs only each counter's single modification order.
    /// What separates sub-windows is the clock, not memory order.
    fn lease(&self, key: u64, epoch: u32, need: u32) -> Lease {
        let line = self.line(key);
        // The past first. Nothing adds to a past counter, so by the time the swap below lands
        // this sum can only have fallen, never risen. Counters of a later epoch (written by a
        // core whose clock runs ahead) count as well: reading them costs only early refusals.
        let mut past = 0u64;
        let mut oldest_age = 0;
        for counter in line {
            let (then, count) = unpack(counter.load(Relaxed));
            let age = age(epoch, then);
            if count == 0 || age == 0 || age.unsigned_abs() >= COUNTERS as u32 {
                continue;
            }
            past += u64::from(count);
            oldest_age = oldest_age.max(age);
        }
        let oldest = epoch.wrapping_sub(oldest_age as u32);
        let calls = u64::from(self.calls);
        let current = &line[epoch as usize % COUNTERS];
        let mut seen = current.load(Relaxed);
        loop {
            let (then, count) = unpack(seen);
            // A counter holding an older epoch belongs to a sub-window that has left the
            // window: this one starts from zero.
            let count = if then == epoch { u64::from(count) } else { 0 };
            let total = past + count;
            let remaining = calls.saturating_sub(total);
            let take = lease_size(calls, self.workers, remaining)
                .max(u64::from(need))
                .min(remaining);
            if take < u64::from(need) || take == 0 {
                return Lease {
                    granted: 0,
                    total: total.min(u64::from(u32::MAX)) as u32,
                    oldest,
                };
            }
            // `take <= calls - past - count` with `count` the value this swap replaces, so the
            // window total stays within `calls`.
            let next = pack(epoch, (count + take) as u32);
            match current.compare_exchange_weak(seen, next, Relaxed, Relaxed) {
                Ok(_) => {
                    return Lease {
                        granted: take as u32,
                        total: (total + take) as u32,
                        oldest,
                    }
                }
                Err(actual) => seen = actual,
            }
        }
    }

    /// Returns `n` unused tokens taken in `epoch`, if its counter still holds that epoch; if
    /// not, the tokens have expired with their sub-window and there is nothing to return.
    fn give_back(&self, key: u64, epoch: u32, n: u32) {
        if n == 0 {
            return;
        }
        let counter = &self.line(key)[epoch as usize % COUNTERS];
        let mut seen = counter.load(Relaxed);
        loop {
            let (then, count) = unpack(seen);
            if then != epoch || count == 0 {
                return;
            }
            let next = pack(epoch, count.saturating_sub(n));
            match counter.compare_exchange_weak(seen, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => seen = actual,
            }
        }
    }

    /// The node-wide state of `key`'s line at `now_ms`, as a lease at that time would count
    /// it: the sixteen sub-windows of the window ending in `now_ms`'s, plus any a faster clock
    /// has already begun. For the admin API, from any thread; it only loads the counters
    /// (`Relaxed`, as everywhere here) and writes nothing, so it can be a few leases behind
    /// the cores and its counters need not agree with one another at one instant.
    ///
    /// Tokens leased by a core and not yet spent count as used: `remaining` is what cores
    /// could still lease, not what is left to be admitted, which is up to every core's unspent
    /// lease more. Tokens of an ended sub-window that a core has not yet returned count too,
    /// until its next `acquire` for the key or its next tick.
    pub fn peek(&self, key: u64, now_ms: u64) -> WindowView {
        let full_epoch = now_ms / self.sub_ms;
        let epoch = full_epoch as u32;
        let mut used = 0u64;
        let mut oldest_age = None;
        for counter in self.line(key) {
            let (then, count) = unpack(counter.load(Relaxed));
            let age = age(epoch, then);
            if count == 0 || age.unsigned_abs() >= COUNTERS as u32 {
                continue;
            }
            used += u64::from(count);
            oldest_age = oldest_age.max(Some(age));
        }
        let limit = u64::from(self.calls);
        // The tokens of sub-window `epoch - age` leave when sub-window `epoch - age + 16`
        // begins; `age` is within (-16, 16), so that is 1 to 31 sub-windows on from `epoch`.
        let resets_in_ms = oldest_age.map_or(0, |age| {
            let leaves = full_epoch.saturating_add((COUNTERS as i32 - age) as u64);
            leaves.saturating_mul(self.sub_ms).saturating_sub(now_ms)
        });
        WindowView {
            limit,
            used,
            remaining: limit.saturating_sub(used),
            resets_in_ms,
        }
    }

    /// Seconds, rounded up and at least 1, until the sub-window `oldest` leaves the window;
    /// `epoch` is `now_ms`'s, unwrapped.
    fn reset_secs(&self, oldest: u32, epoch: u64, now_ms: u64) -> u64 {
        let age = u64::from(age(epoch as u32, oldest).clamp(0, COUNTERS as i32) as u32);
        let leaves_ms = (epoch + COUNTERS as u64).saturating_sub(age) * self.sub_ms;
        leaves_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
    }
}

/// The answer to one `acquire`, with what the `RateLimit-*` and `Retry-After` headers report.
#[derive(Clone, Copy, Debug)]
pub struct RateDecision {
    pub admitted: bool,
    /// `calls`.
    pub limit: u64,
    /// Calls left in the window as this core last saw it: the total observed at its last lease,
    /// less what it has spent since.
    pub remaining: u64,
    /// Seconds until the oldest sub-window with calls in it leaves the window and frees them
    /// (`RateLimit-Reset`, and `Retry-After` when refused); at least 1.
    pub reset_secs: u64,
}

/// The node-wide state of one key's line in a rate window, from [`SharedWindow::peek`].
#[derive(Clone, Copy, Debug, Serialize)]
pub struct WindowView {
    /// `calls`.
    pub limit: u64,
    /// Tokens taken in the window for the key's line: spent by calls, or leased by a core and
    /// not yet spent, which count as used node-wide.
    pub used: u64,
    /// `limit - used`, or 0: tokens the cores could still lease.
    pub remaining: u64,
    /// Milliseconds until the oldest sub-window with tokens in it leaves the window and frees
    /// them; 0 when nothing is used.
    pub resets_in_ms: u64,
}

/// A core's leased tokens for one key.
#[derive(Clone, Copy, Default)]
struct Allowance {
    /// Leased and not yet spent; only spendable in `epoch`.
    tokens: u32,
    /// The sub-window `tokens` were leased in.
    epoch: u32,
    /// The window total observed at the last lease, for `remaining`.
    seen_total: u32,
    /// The oldest non-empty sub-window at the last lease, for `reset_secs`.
    oldest: u32,
}

/// One core's side of a rate limit: leased tokens per key. Not shared; no locks.
pub struct LocalWindow {
    shared: Arc<SharedWindow>,
    keys: KeyTable<Allowance>,
    /// The epoch of the last `tick` that swept the table.
    swept: u32,
    /// The last epoch computed, unwrapped, and the millisecond it began: while the clock stays
    /// in it, `acquire` needs no division.
    epoch: u64,
    epoch_start_ms: u64,
}

impl LocalWindow {
    /// Uses the shared table's `calls` and `period`; `spec.max_keys` bounds this core's table.
    pub fn new(shared: Arc<SharedWindow>, spec: &RateSpec) -> LocalWindow {
        LocalWindow {
            shared,
            keys: KeyTable::new(spec.max_keys),
            swept: u32::MAX,
            epoch: 0,
            epoch_start_ms: 0,
        }
    }

    /// Admits one call for `key` at `now_ms`, counting it, or refuses it.
    pub fn acquire(&mut self, key: u64, now_ms: u64) -> RateDecision {
        self.acquire_n(key, 1, now_ms)
    }

    /// Admits one request that counts as `n` calls (`increment-count`), or refuses it if fewer
    /// than `n` are left; `n == 0` is always admitted and counts nothing.
    ///
    /// The hot path: when this core holds `n` tokens leased in the current sub-window it is a
    /// table lookup and a subtraction. Otherwise it returns what it held from an ended
    /// sub-window and leases afresh, which reads one shared line and swaps one counter.
    pub fn acquire_n(&mut self, key: u64, n: u32, now_ms: u64) -> RateDecision {
        let shared = &*self.shared;
        if now_ms.wrapping_sub(self.epoch_start_ms) >= shared.sub_ms {
            self.epoch = now_ms / shared.sub_ms;
            self.epoch_start_ms = self.epoch * shared.sub_ms;
        }
        let full_epoch = self.epoch;
        let epoch = full_epoch as u32;
        // Evict an allowance of an ended sub-window first, then the one with fewest tokens.
        let (held, evicted) = self.keys.entry(key, |a| {
            if a.epoch != epoch {
                0
            } else {
                1 + u64::from(a.tokens)
            }
        });
        if let Some((old_key, old)) = evicted {
            shared.give_back(old_key, old.epoch, old.tokens);
        }
        let admitted = if held.epoch == epoch && held.tokens >= n {
            held.tokens -= n;
            true
        } else {
            refill(shared, key, held, epoch, n)
        };
        let held = *held;
        RateDecision {
            admitted,
            limit: u64::from(shared.calls),
            remaining: u64::from(shared.calls.saturating_sub(held.seen_total))
                + u64::from(held.tokens),
            reset_secs: shared.reset_secs(held.oldest, full_epoch, now_ms),
        }
    }

    /// Uncounts `n` calls admitted for `key` by an `acquire` at `acquired_ms` (a response that
    /// did not meet `increment-condition`). `acquired_ms` must be the `now_ms` that `acquire`
    /// was given: the tokens go back to the sub-window they were counted in, since putting them
    /// into a later one would let them expire early. While that sub-window lasts they rejoin
    /// this core's allowance; after it, they are subtracted from its shared counter if it is
    /// still there, and otherwise have already expired.
    pub fn give_back(&mut self, key: u64, n: u32, acquired_ms: u64) {
        let epoch = self.shared.epoch(acquired_ms);
        match self.keys.get_mut(key) {
            // Spendable only in `epoch`; if that has ended, the next acquire or tick returns
            // them to the shared counter together with the rest.
            Some(held) if held.epoch == epoch => held.tokens = held.tokens.saturating_add(n),
            _ => self.shared.give_back(key, epoch, n),
        }
    }

    /// Periodic upkeep, every 10 ms to 1 s: returns the tokens of sub-windows that have ended
    /// and drops their keys. Sweeps the table only when the sub-window has changed since the
    /// last sweep, since only then can anything have ended.
    pub fn tick(&mut self, now_ms: u64) {
        let shared = &*self.shared;
        let epoch = shared.epoch(now_ms);
        if epoch == self.swept || self.keys.len() == 0 {
            self.swept = epoch;
            return;
        }
        self.swept = epoch;
        self.keys.retain(|key, held| {
            if held.epoch == epoch {
                return true;
            }
            shared.give_back(key, held.epoch, held.tokens);
            false
        });
    }

    /// Keys this core holds state for; at most `max_keys`.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// Bytes this core's side holds: the key table, all allocated when it was built
    /// (`max_keys * 26` bytes), and the struct itself. The shared table is counted by
    /// [`SharedWindow::memory_bytes`].
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.keys.memory_bytes()
    }
}

/// The slow path of `acquire_n`: leases tokens for `key` in `epoch` so that `n` can be spent.
fn refill(shared: &SharedWindow, key: u64, held: &mut Allowance, epoch: u32, n: u32) -> bool {
    if held.epoch != epoch {
        // Leased in an ended sub-window: counted there and expiring with it, so spending them
        // now would free them too early.
        shared.give_back(key, held.epoch, held.tokens);
        *held = Allowance {
            epoch,
            ..Allowance::default()
        };
    }
    let need = n - held.tokens;
    let lease = shared.lease(key, epoch, need);
    held.seen_total = lease.total;
    held.oldest = lease.oldest;
    if lease.granted < need {
        return false;
    }
    held.tokens = held.tokens + lease.granted - n;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn spec(calls: u64, period_ms: u64, workers: usize) -> RateSpec {
        RateSpec {
            calls,
            period: Duration::from_millis(period_ms),
            workers,
            max_keys: 1000,
        }
    }

    fn cores(spec: &RateSpec, n: usize) -> (Arc<SharedWindow>, Vec<LocalWindow>) {
        let shared = Arc::new(SharedWindow::new(spec));
        let locals = (0..n)
            .map(|_| LocalWindow::new(shared.clone(), spec))
            .collect();
        (shared, locals)
    }

    /// xorshift64*: deterministic, so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Panics if some closed window `[t - period, t]` holds more than `calls` admissions.
    /// Entries are (time, calls); negative calls uncount earlier ones at the same time, and
    /// sort before them.
    fn assert_never_over(admissions: &[(u64, i64)], calls: u64, period_ms: u64) {
        let calls = calls as i64;
        let mut sorted = admissions.to_vec();
        sorted.sort_unstable();
        let (mut start, mut in_window) = (0, 0);
        for end in 0..sorted.len() {
            in_window += sorted[end].1;
            while sorted[start].0 + period_ms < sorted[end].0 {
                in_window -= sorted[start].1;
                start += 1;
            }
            assert!(
                in_window <= calls,
                "{in_window} admitted in the window ending at {} ms",
                sorted[end].0
            );
        }
    }

    #[test]
    fn admits_exactly_calls_then_refuses() {
        let (_, mut cores) = cores(&spec(100, 10_000, 1), 1);
        let core = &mut cores[0];
        for i in 0..100 {
            let d = core.acquire(7, 1000 + i);
            assert!(d.admitted, "call {i}");
            assert_eq!(d.limit, 100);
            assert_eq!(d.remaining, 99 - i, "call {i}");
        }
        let d = core.acquire(7, 1100);
        assert!(!d.admitted);
        assert_eq!(d.remaining, 0);
        assert!(
            core.acquire(8, 1100).admitted,
            "another key has its own budget"
        );
    }

    #[test]
    fn peek_counts_leased_tokens_and_slides_with_the_window() {
        // 100 per 15 s on 2 workers: d = 1 s, leases of 2.
        let (shared, mut cores) = cores(&spec(100, 15_000, 2), 2);
        let empty = shared.peek(7, 500);
        assert_eq!(
            (empty.limit, empty.used, empty.remaining, empty.resets_in_ms),
            (100, 0, 100, 0)
        );
        let core = &mut cores[0];
        assert!(core.acquire(7, 500).admitted);
        let v = shared.peek(7, 500);
        assert_eq!(v.used, 2, "the unspent half of the lease counts as used");
        assert_eq!(v.remaining, 98);
        assert_eq!(v.resets_in_ms, 16_000 - 500, "sub-window 0 leaves at 16 d");
        for _ in 0..3 {
            assert!(core.acquire(7, 500).admitted);
        }
        assert_eq!(shared.peek(7, 500).used, 4);
        // Sub-window 5: nine calls, five leases of 2; one token stays leased.
        for _ in 0..9 {
            assert!(core.acquire(7, 5000).admitted);
        }
        let v = shared.peek(7, 5000);
        assert_eq!((v.used, v.remaining, v.resets_in_ms), (14, 86, 11_000));
        assert_eq!(
            shared.peek(7 + shared.slots() as u64, 5000).used,
            14,
            "same line"
        );
        assert_eq!(shared.peek(8, 5000).used, 0, "another line");
        // The tick returns the unspent token to sub-window 5.
        core.tick(6000);
        assert_eq!(shared.peek(7, 6000).used, 13);
        let v = shared.peek(7, 15_999);
        assert_eq!(
            (v.used, v.resets_in_ms),
            (13, 1),
            "sub-window 0 is in until 16 s"
        );
        let v = shared.peek(7, 16_000);
        assert_eq!((v.used, v.remaining, v.resets_in_ms), (9, 91, 5000));
        let v = shared.peek(7, 21_000);
        assert_eq!((v.used, v.remaining, v.resets_in_ms), (0, 100, 0));
        // A peek whose clock lags a core's counts the core's sub-window too, and until it
        // leaves: sub-window 22 leaves at 38 s.
        assert!(cores[1].acquire(9, 22_000).admitted);
        let v = shared.peek(9, 21_500);
        assert_eq!((v.used, v.resets_in_ms), (2, 38_000 - 21_500));
    }

    #[test]
    fn peek_agrees_with_a_refusal() {
        // 10 per 1 s: d = 67 ms.
        let (shared, mut cores) = cores(&spec(10, 1000, 1), 1);
        let core = &mut cores[0];
        for _ in 0..4 {
            assert!(core.acquire(3, 100).admitted);
        }
        for _ in 0..6 {
            assert!(core.acquire(3, 300).admitted);
        }
        let refused = core.acquire(3, 400);
        assert!(!refused.admitted);
        let v = shared.peek(3, 400);
        assert_eq!((v.limit, v.used, v.remaining), (10, 10, 0));
        // The 4 of sub-window 1 (67..134 ms) leave at 17 d.
        assert_eq!(v.resets_in_ms, 17 * 67 - 400);
        assert_eq!(refused.reset_secs, v.resets_in_ms.div_ceil(1000));
        let v = shared.peek(3, 17 * 67);
        assert_eq!((v.used, v.remaining), (6, 4));
        assert!(core.acquire_n(3, 4, 17 * 67).admitted);
        assert_eq!(shared.peek(3, 17 * 67).remaining, 0);
    }

    #[test]
    fn tokens_come_back_after_period_plus_at_most_a_subwindow() {
        // period 15 s: d = 1 s exactly.
        let (shared, mut cores) = cores(&spec(10, 15_000, 1), 1);
        assert_eq!(shared.subwindow_ms(), 1000);
        let core = &mut cores[0];
        for _ in 0..10 {
            assert!(core.acquire(1, 500).admitted);
        }
        let refused = core.acquire(1, 15_500);
        assert!(!refused.admitted, "a call is held for at least the period");
        // Admitted at 500 ms in sub-window 0, it leaves at 16 d = 16 s: period + 0.5 s.
        assert_eq!(refused.reset_secs, 1);
        assert!(!core.acquire(1, 15_999).admitted);
        core.tick(16_000);
        for _ in 0..10 {
            assert!(core.acquire(1, 16_000).admitted);
        }
        assert!(!core.acquire(1, 16_000).admitted);
    }

    #[test]
    fn period_not_divisible_by_15_still_holds_each_call_a_full_period() {
        // period 1000 ms: d = 67 ms (rounded up), 15 d = 1005 ms.
        let (shared, mut cores) = cores(&spec(1, 1000, 1), 1);
        assert_eq!(shared.subwindow_ms(), 67);
        let core = &mut cores[0];
        // The last millisecond of sub-window 0: the latest a call can still count in it.
        assert!(core.acquire(1, 66).admitted);
        assert!(!core.acquire(1, 66 + 1000).admitted);
        assert!(core.acquire(1, 16 * 67).admitted);
    }

    #[test]
    fn window_slides_rather_than_resets() {
        // 100 per 10 s: d = 667 ms. 60 calls at 0 s and 40 at 5 s.
        let (shared, mut cores) = cores(&spec(100, 10_000, 1), 1);
        let d = shared.subwindow_ms();
        let core = &mut cores[0];
        for _ in 0..60 {
            assert!(core.acquire(3, 0).admitted);
        }
        for _ in 0..40 {
            assert!(core.acquire(3, 5000).admitted);
        }
        assert!(!core.acquire(3, 5000).admitted);
        let refused = core.acquire(3, 9_999);
        assert!(!refused.admitted);
        assert_eq!(refused.reset_secs, (16 * d - 9_999).div_ceil(1000));
        // The 60 leave at 16 d = 10.672 s; the 40 (epoch 7) stay until 23 d = 15.341 s.
        assert!(!core.acquire(3, 16 * d - 1).admitted);
        for i in 0..60 {
            assert!(core.acquire(3, 16 * d).admitted, "call {i}");
        }
        let refused = core.acquire(3, 16 * d);
        assert!(!refused.admitted, "the 40 of 5 s are still in the window");
        assert_eq!(refused.reset_secs, (23 * d - 16 * d).div_ceil(1000));
        assert!(!core.acquire(3, 23 * d - 1).admitted);
        for _ in 0..40 {
            assert!(core.acquire(3, 23 * d).admitted);
        }
        assert!(!core.acquire(3, 23 * d).admitted);
    }

    #[test]
    fn acquire_n_counts_n_calls() {
        let (_, mut cores) = cores(&spec(10, 15_000, 1), 1);
        let core = &mut cores[0];
        assert!(core.acquire_n(5, 4, 0).admitted);
        assert!(core.acquire_n(5, 4, 0).admitted);
        let d = core.acquire_n(5, 4, 0);
        assert!(!d.admitted, "8 used, 4 more do not fit");
        assert_eq!(d.remaining, 2);
        assert!(core.acquire_n(5, 0, 0).admitted, "zero counts nothing");
        assert!(core.acquire_n(5, 2, 0).admitted);
        assert!(!core.acquire(5, 0).admitted);
    }

    #[test]
    fn give_back_uncounts_in_the_subwindow_the_call_was_counted_in() {
        // 10 calls on 2 workers: leases of 1.
        let (_, mut cores) = cores(&spec(10, 15_000, 2), 2);
        let (a, b) = cores.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        for _ in 0..10 {
            assert!(a.acquire(9, 100).admitted);
        }
        assert!(!b.acquire(9, 100).admitted);
        // While the sub-window lasts: back into a's allowance.
        a.give_back(9, 1, 100);
        assert!(a.acquire(9, 200).admitted);
        assert!(!a.acquire(9, 200).admitted);
        // After it: a's allowance holds them, expired for spending, until a's tick returns them
        // to sub-window 0's counter.
        a.give_back(9, 3, 100);
        assert!(!b.acquire(9, 1500).admitted);
        a.tick(1500);
        for _ in 0..3 {
            assert!(b.acquire(9, 1500).admitted);
        }
        assert!(!b.acquire(9, 1500).admitted);
        // b's entry has moved on to sub-window 2: a give-back for sub-window 1 goes straight
        // to its counter.
        assert!(!b.acquire(9, 2500).admitted);
        b.give_back(9, 2, 1500);
        for _ in 0..2 {
            assert!(b.acquire(9, 2500).admitted);
        }
        assert!(!b.acquire(9, 2500).admitted);
        // Sub-window 16 has replaced sub-window 0 in its counter: a late give-back for
        // sub-window 0 finds nothing to subtract from. Window: 1 (sub-window 1) + 2 (sub-window 2).
        for _ in 0..7 {
            assert!(b.acquire(9, 16_100).admitted);
        }
        a.give_back(9, 5, 100);
        assert!(!b.acquire(9, 16_100).admitted);
    }

    #[test]
    fn tick_returns_ended_allowances_and_drops_their_keys() {
        // 2 workers, 400 calls: leases of 10.
        let (_, mut cores) = cores(&spec(400, 15_000, 2), 2);
        let (a, b) = cores.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        for key in 0..20 {
            assert!(a.acquire(key, 0).admitted);
        }
        assert_eq!(a.len(), 20);
        a.tick(500);
        assert_eq!(a.len(), 20, "the sub-window has not ended");
        a.tick(1000);
        assert!(a.is_empty());
        // Each key had 9 unused tokens; all are back, so b gets 399 of each.
        for key in 0..20 {
            let mut admitted = 0;
            while b.acquire(key, 1000).admitted {
                admitted += 1;
            }
            assert_eq!(admitted, 399, "key {key}");
        }
    }

    #[test]
    fn colliding_keys_share_a_budget() {
        let (shared, mut cores) = cores(&spec(10, 15_000, 1), 1);
        let core = &mut cores[0];
        let other = 5 + shared.slots() as u64;
        for _ in 0..6 {
            assert!(core.acquire(5, 0).admitted);
        }
        let mut admitted = 0;
        while core.acquire(other, 0).admitted {
            admitted += 1;
        }
        assert_eq!(admitted, 4, "one line, one budget: fewer, never more");
    }

    #[test]
    fn two_cores_interleaved_never_over_admit() {
        for (calls, period_ms, seed) in [(100, 10_000, 1), (37, 1000, 2), (1000, 3000, 3)] {
            let spec = spec(calls, period_ms, 2);
            let (shared, mut cores) = cores(&spec, 2);
            let d = shared.subwindow_ms();
            let mut rng = Rng(0x9E37_79B9 ^ seed);
            let mut now = 0;
            // (key, time, calls): a give-back is a negative entry at the time of the call.
            let mut admissions: Vec<(u64, u64, i64)> = Vec::new();
            let mut open: Vec<(usize, u64, u32, u64)> = Vec::new();
            for _ in 0..200_000 {
                now += rng.below(d / 4 + 1);
                let core = rng.below(2) as usize;
                let key = rng.below(3);
                match rng.below(100) {
                    0..=79 => {
                        let n = if rng.below(10) == 0 { 3 } else { 1 };
                        if cores[core].acquire_n(key, n, now).admitted {
                            admissions.push((key, now, i64::from(n)));
                            open.push((core, key, n, now));
                            if open.len() > 8 {
                                open.remove(0);
                            }
                        }
                    }
                    80..=89 if !open.is_empty() => {
                        // Uncount one recent call, on the core that admitted it.
                        let i = rng.below(open.len() as u64) as usize;
                        let (core, key, n, at) = open.swap_remove(i);
                        cores[core].give_back(key, n, at);
                        admissions.push((key, at, -i64::from(n)));
                    }
                    _ => cores[core].tick(now),
                }
            }
            for key in 0..3 {
                let of_key: Vec<(u64, i64)> = admissions
                    .iter()
                    .filter(|a| a.0 == key)
                    .map(|a| (a.1, a.2))
                    .collect();
                assert!(of_key.len() > 1000, "key {key} was exercised");
                assert_never_over(&of_key, calls, period_ms);
            }
        }
    }

    #[test]
    fn burst_on_two_cores_admits_at_least_calls_minus_the_bound() {
        for (calls, seed) in [(1000u64, 1u64), (100, 2), (25, 3), (100_000, 4)] {
            let spec = spec(calls, 60_000, 2);
            let (_, mut cores) = cores(&spec, 2);
            let lease = lease_size(calls, 2, calls);
            let mut rng = Rng(seed * 7919);
            let mut admitted = 0;
            let mut refused = [false; 2];
            while !(refused[0] && refused[1]) {
                let core = rng.below(2) as usize;
                if cores[core].acquire(1, 10).admitted {
                    admitted += 1;
                } else {
                    refused[core] = true;
                    // The other core holds at most one lease unused.
                    assert!(admitted + lease >= calls, "{admitted} of {calls}");
                }
                assert!(admitted <= calls);
            }
            assert_eq!(
                admitted, calls,
                "once both are refused, every token is spent"
            );
        }
    }

    #[test]
    fn flood_of_distinct_keys_stays_bounded_and_never_over_admits() {
        for max_keys in [4, 64] {
            let spec = RateSpec {
                max_keys,
                ..spec(50, 15_000, 1)
            };
            let (_, mut cores) = cores(&spec, 1);
            let core = &mut cores[0];
            let mut admitted_hot = 0;
            for i in 0..20_000u64 {
                if core.acquire(0xABCD, 100).admitted {
                    admitted_hot += 1;
                }
                // On shared line 1, away from the hot key's, but spread over the local sets.
                core.acquire((i << 10) | 1, 100);
                assert!(core.len() <= max_keys);
            }
            assert_eq!(
                admitted_hot, 50,
                "evicted again and again (max_keys {max_keys}), the hot key gets its 50"
            );
            assert_eq!(
                core.memory_bytes(),
                size_of::<LocalWindow>() + max_keys / 4 * 104
            );
        }
    }

    #[test]
    fn memory_is_26_bytes_per_key_per_core_and_128_per_shared_line() {
        let spec = RateSpec {
            max_keys: 10_000,
            ..spec(5, 15_000, 1)
        };
        let (shared, cores) = cores(&spec, 1);
        let table = cores[0].memory_bytes() - size_of::<LocalWindow>();
        assert_eq!(table, 10_000 * 26);
        assert_eq!(shared.slots(), 32_768);
        assert_eq!(
            shared.memory_bytes() - size_of::<SharedWindow>(),
            32_768 * 128
        );
    }

    #[test]
    fn epochs_wrap_without_losing_the_window() {
        let (shared, mut cores) = cores(&spec(3, 15, 1), 1);
        assert_eq!(shared.subwindow_ms(), 1);
        let core = &mut cores[0];
        let start = u64::from(u32::MAX) - 5;
        for _ in 0..3 {
            assert!(core.acquire(1, start).admitted);
        }
        for t in start..start + 16 {
            assert!(!core.acquire(1, t).admitted, "at {t}, across the u32 wrap");
        }
        assert!(core.acquire(1, start + 16).admitted);
    }

    #[test]
    fn four_threads_on_one_key_admit_exactly_calls() {
        for calls in [10_000u64, 1000, 50] {
            let spec = spec(calls, 60_000, 4);
            let shared = Arc::new(SharedWindow::new(&spec));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let shared = shared.clone();
                    let spec = spec.clone();
                    std::thread::spawn(move || {
                        let mut core = LocalWindow::new(shared, &spec);
                        let mut admitted = 0u64;
                        // Until refused: a refused core holds no tokens, so when every core
                        // has been refused every leased token was spent.
                        while core.acquire(42, 1000).admitted {
                            admitted += 1;
                        }
                        admitted
                    })
                })
                .collect();
            let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(total, calls);
        }
    }

    #[test]
    fn threads_across_subwindows_never_over_admit() {
        const THREADS: usize = 4;
        const STEPS: u64 = 300;
        let spec = spec(500, 1500, THREADS);
        let shared = Arc::new(SharedWindow::new(&spec));
        let step_ms = shared.subwindow_ms() / 3 + 1;
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (shared, spec, barrier) = (shared.clone(), spec.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut core = LocalWindow::new(shared, &spec);
                    let mut rng = Rng(0x1234_5678 + t as u64);
                    let mut admitted = vec![0u64; STEPS as usize];
                    for step in 0..STEPS {
                        // Every core is in the same step, so the clocks agree.
                        barrier.wait();
                        let now = step * step_ms;
                        core.tick(now);
                        for _ in 0..rng.below(120) {
                            admitted[step as usize] += u64::from(core.acquire(5, now).admitted);
                        }
                    }
                    admitted
                })
            })
            .collect();
        let per_thread: Vec<Vec<u64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let admissions: Vec<(u64, i64)> = (0..STEPS)
            .map(|s| {
                let sum: u64 = per_thread.iter().map(|a| a[s as usize]).sum();
                (s * step_ms, sum as i64)
            })
            .collect();
        assert_never_over(&admissions, 500, 1500);
        let total: i64 = admissions.iter().map(|a| a.1).sum();
        assert!(
            total > 500 * 5,
            "{total}: the limit was reached many times over"
        );
    }
}
