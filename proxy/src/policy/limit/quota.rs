//! `quota-by-key`: at most `calls` calls and `bandwidth` bytes per key in each fixed period,
//! node-wide; periods are aligned to `first_period_start` and survive restarts through
//! [`super::state`].
//!
//! Periods tile the time line both ways from `first_period_start`: period `p` is
//! `[start + p * period, start + (p + 1) * period)`, so a time before the start falls in a
//! negative period that ends where the next one begins, and `Retry-After` never points past
//! the start for a whole period. Each shared line holds two `u64`s, calls and bytes, each
//! packing a 20-bit period tag with a 44-bit count; a count tagged with another period reads as
//! zero and is reset by the next write. Calls are leased as rate-limit tokens are (one
//! compare-and-swap per lease, checked against `calls` with the value swapped), so calls are
//! never over-admitted; under-admission is the tokens other cores hold, at most
//! `(workers - 1) * clamp(calls / (20 * workers), 1, 1024)`, and a core returns a key's unused
//! tokens at the first `tick` it finds the key idle since the previous one.
//!
//! Bandwidth is known only after an exchange, so it is counted after it and refused only once
//! already reached: the node can go over by the exchanges in flight when it runs out, plus what
//! other cores have counted but not yet published, at most
//! `clamp(bandwidth / (20 * workers), 1, 1 MiB)` bytes each or one tick's worth.
//!
//! A core whose clock runs behind may find a line already tagged with the next period; it
//! then takes nothing from it rather than overwrite the newer count (a refusal for the few
//! milliseconds its clock lags). A line untouched for a multiple of 2^20 periods reads its old
//! count as current: a rare early refusal, never an over-admission.
//!
//! Memory: the shared table is `slots * 16` bytes, `slots = next_pow2(2 * max_keys)` and at
//! least 1,024; each core's table is 50 bytes per key, `max_keys` keys, allocated up front.

use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::table::KeyTable;
use super::{lease_size, shared_lines};

const TAG_BITS: u32 = 20;
const COUNT_BITS: u32 = 64 - TAG_BITS;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// The largest count a line holds (about 1.7e13): limits above it are treated as it.
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// Largest batch of bytes a core counts before publishing them.
const MAX_BYTE_BATCH: u64 = 1 << 20;

/// A `quota-by-key` policy's settings.
#[derive(Clone, Debug)]
pub struct QuotaSpec {
    /// Calls per key per period; `None`: not limited.
    pub calls: Option<u64>,
    /// Request and response bytes per key per period; `None`: not limited.
    pub bandwidth: Option<u64>,
    pub period: Duration,
    /// Unix milliseconds at which a period begins; the others follow and precede it.
    pub first_period_start_ms: u64,
    /// Worker cores that will each hold a [`LocalQuota`]; sizes the leases.
    pub workers: usize,
    /// Keys each core keeps state for; also sizes the shared table.
    pub max_keys: usize,
}

/// A line's usage in one period, as saved across restarts. `slot` is the line index: a record
/// only means something to a table of the same size, fed keys hashed the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRecord {
    pub slot: u64,
    pub period: i64,
    pub calls: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct QuotaLine {
    calls: AtomicU64,
    bytes: AtomicU64,
}

// SAFETY: two AtomicU64s; all zero is an unused line.
unsafe impl super::Zeroed for QuotaLine {}

/// The node-wide counters of one quota, shared by every worker core.
pub struct SharedQuota {
    lines: Box<[QuotaLine]>,
    mask: u64,
    period_ms: u64,
    start_ms: u64,
    calls: Option<u64>,
    bandwidth: Option<u64>,
    workers: u64,
}

fn tag(period: i64) -> u64 {
    period as u64 & TAG_MASK
}

fn pack(tag: u64, count: u64) -> u64 {
    (tag << COUNT_BITS) | count.min(COUNT_MAX)
}

/// The count `value` holds for the period tagged `tag`: its own if tagged so, zero if tagged
/// with an earlier period, `None` if a core with a faster clock has begun the next period on
/// it (overwriting that would lose the newer count).
fn read(value: u64, tag: u64) -> Option<u64> {
    let (stored, count) = (value >> COUNT_BITS, value & COUNT_MAX);
    if stored == tag {
        Some(count)
    } else if stored == (tag + 1) & TAG_MASK && count > 0 {
        None
    } else {
        Some(0)
    }
}

impl SharedQuota {
    pub fn new(spec: &QuotaSpec) -> SharedQuota {
        let slots = shared_lines(spec.max_keys);
        SharedQuota {
            lines: super::zeroed_table(slots),
            mask: slots as u64 - 1,
            period_ms: u64::try_from(spec.period.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            start_ms: spec.first_period_start_ms,
            calls: spec.calls.map(|c| c.min(COUNT_MAX)),
            bandwidth: spec.bandwidth,
            workers: spec.workers.max(1) as u64,
        }
    }

    /// Lines in the table.
    pub fn slots(&self) -> usize {
        self.lines.len()
    }

    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    pub fn first_period_start_ms(&self) -> u64 {
        self.start_ms
    }

    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.lines.len() * size_of::<QuotaLine>()
    }

    /// The period `now_unix_ms` falls in; negative before `first_period_start`.
    pub fn period_index(&self, now_unix_ms: u64) -> i64 {
        if let Some(since) = now_unix_ms.checked_sub(self.start_ms) {
            // The usual case, in a plain `u64` division rather than a slow `i128` one.
            return (since / self.period_ms) as i64;
        }
        let since = i128::from(now_unix_ms) - i128::from(self.start_ms);
        since.div_euclid(i128::from(self.period_ms)) as i64
    }

    /// The unix milliseconds at which period `period` begins, clamped to `u64`.
    fn period_start_ms(&self, period: i64) -> u64 {
        let start = i128::from(self.start_ms) + i128::from(period) * i128::from(self.period_ms);
        start.clamp(0, i128::from(u64::MAX)) as u64
    }

    fn line(&self, key: u64) -> &QuotaLine {
        &self.lines[(key & self.mask) as usize]
    }

    /// Takes up to a lease of calls for `key` in `period`: (taken, calls used after it).
    /// `Relaxed`, as in the rate window: each counter is its own ledger.
    fn lease_calls(&self, key: u64, period: i64, limit: u64) -> (u32, u64) {
        let (counter, t) = (&self.line(key).calls, tag(period));
        let mut seen = counter.load(Relaxed);
        loop {
            let Some(used) = read(seen, t) else {
                return (0, limit);
            };
            let remaining = limit.saturating_sub(used);
            let take = lease_size(limit, self.workers, remaining).min(remaining);
            if take == 0 {
                return (0, used);
            }
            match counter.compare_exchange_weak(seen, pack(t, used + take), Relaxed, Relaxed) {
                Ok(_) => return (take as u32, used + take),
                Err(actual) => seen = actual,
            }
        }
    }

    /// Returns `n` unused calls of `period`, if the line still counts that period.
    fn return_calls(&self, key: u64, period: i64, n: u32) {
        if n == 0 {
            return;
        }
        let (counter, t) = (&self.line(key).calls, tag(period));
        let mut seen = counter.load(Relaxed);
        while seen >> COUNT_BITS == t && seen & COUNT_MAX > 0 {
            let next = pack(t, (seen & COUNT_MAX).saturating_sub(u64::from(n)));
            match counter.compare_exchange_weak(seen, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => seen = actual,
            }
        }
    }

    /// Adds `n` bytes to `key`'s count for `period`; returns the new count.
    fn add_bytes(&self, key: u64, period: i64, n: u64) -> u64 {
        let (counter, t) = (&self.line(key).bytes, tag(period));
        let mut seen = counter.load(Relaxed);
        loop {
            let Some(used) = read(seen, t) else {
                return 0;
            };
            let total = used.saturating_add(n).min(COUNT_MAX);
            match counter.compare_exchange_weak(seen, pack(t, total), Relaxed, Relaxed) {
                Ok(_) => return total,
                Err(actual) => seen = actual,
            }
        }
    }

    fn bytes(&self, key: u64, period: i64) -> u64 {
        read(self.line(key).bytes.load(Relaxed), tag(period)).unwrap_or(0)
    }

    /// Raises a counter to at least `value` for `period`.
    fn raise(counter: &AtomicU64, period: i64, value: u64) {
        let t = tag(period);
        let mut seen = counter.load(Relaxed);
        loop {
            match read(seen, t) {
                Some(current) if current < value => {}
                _ => return,
            }
            match counter.compare_exchange_weak(seen, pack(t, value), Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => seen = actual,
            }
        }
    }

    /// The node-wide usage of `key`'s line in the period of `now_unix_ms`. For the admin API,
    /// from any thread; it only loads the two counters (`Relaxed`) and writes nothing.
    ///
    /// Calls leased by a core and not yet spent count as used: `calls_limit - calls_used` is
    /// what cores could still lease, not what is left to be admitted, which is up to every
    /// core's unspent lease more (idle keys' leases come back at the tick). Bytes a core has
    /// counted and not yet published are missing, at most one batch per core until its next
    /// tick. A line already counting the next period (a core's clock runs ahead of
    /// `now_unix_ms`) reads as its calls used up, as a lease at `now_unix_ms` would take none,
    /// and as no bytes, as the bandwidth check would read it.
    pub fn peek(&self, key: u64, now_unix_ms: u64) -> QuotaView {
        let period = self.period_index(now_unix_ms);
        let t = tag(period);
        let line = self.line(key);
        let calls_used = match read(line.calls.load(Relaxed), t) {
            Some(used) => used,
            None => self.calls.unwrap_or(0),
        };
        QuotaView {
            calls_limit: self.calls,
            calls_used,
            bytes_limit: self.bandwidth,
            bytes_used: read(line.bytes.load(Relaxed), t).unwrap_or(0),
            period_ends_unix_ms: self.period_start_ms(period.saturating_add(1)),
        }
    }

    /// The current period's non-zero lines, for saving. Calls leased by a core and not yet
    /// spent count as used, and bytes a core has not yet published are missing (at most one
    /// batch per core and key); tick every core before exporting to publish them.
    pub fn export(&self, now_unix_ms: u64) -> Vec<QuotaRecord> {
        let period = self.period_index(now_unix_ms);
        let t = tag(period);
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(slot, line)| {
                let calls = read(line.calls.load(Relaxed), t).unwrap_or(0);
                let bytes = read(line.bytes.load(Relaxed), t).unwrap_or(0);
                (calls | bytes != 0).then_some(QuotaRecord {
                    slot: slot as u64,
                    period,
                    calls,
                    bytes,
                })
            })
            .collect()
    }

    /// Loads saved usage: records of the current period raise their line to at least the saved
    /// count; records of other periods, and slots past the table, are ignored. Raising rather
    /// than adding makes a second import of the same records a no-op; import before traffic
    /// starts, or calls counted since are merged by the larger count, not the sum.
    pub fn import(&self, records: &[QuotaRecord], now_unix_ms: u64) {
        let period = self.period_index(now_unix_ms);
        for record in records.iter().filter(|r| r.period == period) {
            let Some(line) = self.lines.get(record.slot as usize) else {
                continue;
            };
            Self::raise(&line.calls, period, record.calls.min(COUNT_MAX));
            Self::raise(&line.bytes, period, record.bytes.min(COUNT_MAX));
        }
    }
}

/// The node-wide usage of one key's line in a quota's current period, from
/// [`SharedQuota::peek`].
#[derive(Clone, Copy, Debug, Serialize)]
pub struct QuotaView {
    /// `calls` per period; `None`: not limited.
    pub calls_limit: Option<u64>,
    /// Calls taken in the period: admitted, or leased by a core and not yet spent, which count
    /// as used node-wide.
    pub calls_used: u64,
    /// `bandwidth` per period; `None`: not limited.
    pub bytes_limit: Option<u64>,
    /// Request and response bytes published in the period.
    pub bytes_used: u64,
    /// Unix milliseconds at which the period ends and the next begins.
    pub period_ends_unix_ms: u64,
}

/// The answer to one `acquire`.
#[derive(Clone, Copy, Debug)]
pub struct QuotaDecision {
    pub admitted: bool,
    /// Seconds until the current period ends, rounded up, at least 1: `Retry-After` when
    /// refused.
    pub retry_after_secs: u64,
    /// Calls left in the period as this core last saw it; `None` when calls are not limited.
    pub calls_remaining: Option<u64>,
}

/// A core's state for one key in one period.
#[derive(Clone, Copy)]
struct Usage {
    period: i64,
    /// Calls used node-wide after this core's last lease, including its unspent `tokens`.
    seen_calls: u64,
    /// Bytes used node-wide as of the last publish or refresh.
    seen_bytes: u64,
    /// Bytes counted here and not yet published.
    pending_bytes: u64,
    /// Calls leased and not yet spent.
    tokens: u32,
    /// Used since the last tick.
    touched: bool,
}

impl Default for Usage {
    fn default() -> Usage {
        Usage {
            // No period yet: the first use loads the key's current figures.
            period: i64::MIN,
            seen_calls: 0,
            seen_bytes: 0,
            pending_bytes: 0,
            tokens: 0,
            touched: false,
        }
    }
}

/// One core's side of a quota: leased calls and unpublished bytes per key.
pub struct LocalQuota {
    shared: Arc<SharedQuota>,
    keys: KeyTable<Usage>,
    /// Bytes counted before they are published.
    byte_batch: u64,
    /// The last period computed and its bounds: while the clock stays in it, `acquire` needs
    /// no division.
    period: i64,
    period_start_ms: u64,
    period_end_ms: u64,
}

impl LocalQuota {
    /// Uses the shared table's limits and periods; `spec.max_keys` bounds this core's table.
    pub fn new(shared: Arc<SharedQuota>, spec: &QuotaSpec) -> LocalQuota {
        let workers = shared.workers;
        let byte_batch = shared.bandwidth.map_or(u64::MAX, |limit| {
            (limit / (20 * workers)).clamp(1, MAX_BYTE_BATCH)
        });
        LocalQuota {
            shared,
            keys: KeyTable::new(spec.max_keys),
            byte_batch,
            period: 0,
            period_start_ms: u64::MAX,
            period_end_ms: u64::MAX,
        }
    }

    /// The period of `now_unix_ms`.
    fn period_at(&mut self, now_unix_ms: u64) -> i64 {
        if !(self.period_start_ms..self.period_end_ms).contains(&now_unix_ms) {
            let shared = &*self.shared;
            self.period = shared.period_index(now_unix_ms);
            self.period_start_ms = shared.period_start_ms(self.period);
            self.period_end_ms = shared.period_start_ms(self.period.saturating_add(1));
        }
        self.period
    }

    /// Admits one call for `key`, counting it, or refuses it: refused when the period's calls
    /// are used up or its bandwidth is already reached.
    ///
    /// The hot path: a lookup and a decrement while this core holds calls leased for the
    /// period; a lease (one shared compare-and-swap) otherwise.
    pub fn acquire(&mut self, key: u64, now_unix_ms: u64) -> QuotaDecision {
        let period = self.period_at(now_unix_ms);
        let shared = &*self.shared;
        let usage = usage_of(&mut self.keys, shared, key, period);
        usage.touched = true;
        let over_bandwidth = shared
            .bandwidth
            .is_some_and(|limit| usage.seen_bytes.saturating_add(usage.pending_bytes) >= limit);
        let admitted = match shared.calls {
            _ if over_bandwidth => false,
            None => true,
            Some(_) if usage.tokens > 0 => {
                usage.tokens -= 1;
                true
            }
            Some(limit) => {
                let (granted, used) = shared.lease_calls(key, period, limit);
                usage.seen_calls = used;
                if shared.bandwidth.is_some() {
                    usage.seen_bytes = shared.bytes(key, period);
                }
                usage.tokens = granted.saturating_sub(1);
                granted > 0
            }
        };
        let usage = *usage;
        QuotaDecision {
            admitted,
            retry_after_secs: self
                .period_end_ms
                .saturating_sub(now_unix_ms)
                .div_ceil(1000)
                .max(1),
            calls_remaining: shared
                .calls
                .map(|limit| limit.saturating_sub(usage.seen_calls) + u64::from(usage.tokens)),
        }
    }

    /// Uncounts one call of `key` admitted at `acquired_unix_ms` that is not to count (its
    /// answer did not meet `increment_condition`). Back into this core's lease while the
    /// period lasts; once it has ended there is nothing to give back.
    pub fn give_back(&mut self, key: u64, acquired_unix_ms: u64) {
        if self.shared.calls.is_none() {
            return;
        }
        let period = self.shared.period_index(acquired_unix_ms);
        if self.period_at(crate::policy::run::unix_ms()) != period {
            return;
        }
        let shared = &*self.shared;
        let usage = usage_of(&mut self.keys, shared, key, period);
        usage.touched = true;
        usage.tokens = usage.tokens.saturating_add(1);
    }

    /// Counts `bytes` of an exchange for `key`, after it. Published to the shared line once
    /// the batch is full, and at every tick.
    pub fn add_bytes(&mut self, key: u64, bytes: u64, now_unix_ms: u64) {
        if self.shared.bandwidth.is_none() || bytes == 0 {
            return;
        }
        let period = self.period_at(now_unix_ms);
        let shared = &*self.shared;
        let usage = usage_of(&mut self.keys, shared, key, period);
        usage.touched = true;
        usage.pending_bytes = usage.pending_bytes.saturating_add(bytes);
        if usage.pending_bytes >= self.byte_batch {
            usage.seen_bytes = shared.add_bytes(key, period, usage.pending_bytes);
            usage.pending_bytes = 0;
        }
    }

    /// Periodic upkeep, about every second: publishes pending bytes and refreshes what other
    /// cores have used; returns the calls held for keys idle since the last tick and drops
    /// them, and drops keys of ended periods. Visits the whole table.
    pub fn tick(&mut self, now_unix_ms: u64) {
        if self.keys.len() == 0 {
            return;
        }
        let shared = &*self.shared;
        let period = shared.period_index(now_unix_ms);
        self.keys.retain(|key, usage| {
            if usage.period != period {
                // Whatever it held belongs to a period that is over.
                return false;
            }
            if usage.pending_bytes > 0 {
                usage.seen_bytes = shared.add_bytes(key, period, usage.pending_bytes);
                usage.pending_bytes = 0;
            } else if shared.bandwidth.is_some() {
                usage.seen_bytes = shared.bytes(key, period);
            }
            if usage.touched {
                usage.touched = false;
                return true;
            }
            shared.return_calls(key, period, usage.tokens);
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

    /// Bytes this core's side holds, all allocated when it was built (`max_keys * 50`).
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.keys.memory_bytes()
    }
}

/// `key`'s state for `period`, made room for and reset to the period as needed.
fn usage_of<'a>(
    keys: &'a mut KeyTable<Usage>,
    shared: &SharedQuota,
    key: u64,
    period: i64,
) -> &'a mut Usage {
    // Evict a key of an ended period first, then the one holding least.
    let (usage, evicted) = keys.entry(key, |u| {
        if u.period != period {
            0
        } else {
            1 + u64::from(u.tokens) + u.pending_bytes
        }
    });
    if let Some((old_key, old)) = evicted {
        if old.period == period {
            shared.return_calls(old_key, period, old.tokens);
            if old.pending_bytes > 0 {
                shared.add_bytes(old_key, period, old.pending_bytes);
            }
        }
    }
    if usage.period != period {
        *usage = Usage {
            period,
            seen_bytes: if shared.bandwidth.is_some() {
                shared.bytes(key, period)
            } else {
                0
            },
            ..Usage::default()
        };
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    /// 2024-01-01T00:00:00Z.
    const START: u64 = 1_704_067_200_000;

    fn spec(calls: Option<u64>, bandwidth: Option<u64>, workers: usize) -> QuotaSpec {
        QuotaSpec {
            calls,
            bandwidth,
            period: Duration::from_millis(HOUR),
            first_period_start_ms: START,
            workers,
            max_keys: 1000,
        }
    }

    fn cores(spec: &QuotaSpec, n: usize) -> (Arc<SharedQuota>, Vec<LocalQuota>) {
        let shared = Arc::new(SharedQuota::new(spec));
        let locals = (0..n)
            .map(|_| LocalQuota::new(shared.clone(), spec))
            .collect();
        (shared, locals)
    }

    #[test]
    fn periods_align_to_first_period_start_and_retry_after_runs_to_the_end() {
        let (shared, mut cores) = cores(&spec(Some(5), None, 1), 1);
        let core = &mut cores[0];
        let now = START + HOUR + HOUR / 2;
        assert_eq!(shared.period_index(now), 1);
        for i in 0..5 {
            let d = core.acquire(1, now);
            assert!(d.admitted);
            assert_eq!(d.calls_remaining, Some(4 - i));
        }
        let d = core.acquire(1, now);
        assert!(!d.admitted);
        assert_eq!(d.retry_after_secs, 1800);
        assert_eq!(d.calls_remaining, Some(0));
        let d = core.acquire(1, START + 2 * HOUR - 1);
        assert!(!d.admitted);
        assert_eq!(d.retry_after_secs, 1, "rounded up");
        assert!(core.acquire(1, START + 2 * HOUR).admitted, "a new period");
    }

    #[test]
    fn before_first_period_start_periods_extend_backwards() {
        let (shared, mut cores) = cores(&spec(Some(1), None, 1), 1);
        let core = &mut cores[0];
        assert_eq!(shared.period_index(START - 1), -1);
        assert_eq!(shared.period_index(START - HOUR), -1);
        assert_eq!(shared.period_index(START - HOUR - 1), -2);
        assert_eq!(shared.period_index(0), -(START.div_ceil(HOUR) as i64));
        assert!(core.acquire(1, START - 10_000).admitted);
        let d = core.acquire(1, START - 10_000);
        assert!(!d.admitted);
        assert_eq!(d.retry_after_secs, 10, "period -1 ends at the start");
        assert!(core.acquire(1, START).admitted);
    }

    #[test]
    fn two_cores_never_exceed_calls_and_spend_them_all() {
        for (calls, workers) in [(1000u64, 2usize), (7, 2), (100_000, 2)] {
            let (_, mut cores) = cores(&spec(Some(calls), None, workers), 2);
            let mut seed = calls;
            let mut admitted = 0;
            let mut refused = [false; 2];
            let lease = lease_size(calls, workers as u64, calls);
            while !(refused[0] && refused[1]) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let core = (seed >> 33) as usize % 2;
                if cores[core].acquire(9, START + 5).admitted {
                    admitted += 1;
                } else {
                    refused[core] = true;
                    assert!(admitted + lease >= calls);
                }
                assert!(admitted <= calls);
            }
            assert_eq!(admitted, calls);
        }
    }

    #[test]
    fn bandwidth_refuses_once_reached_and_other_cores_see_it() {
        // 2 workers, 1 MB: batches of 25,000 bytes.
        let (_, mut cores) = cores(&spec(None, Some(1_000_000), 2), 2);
        let (a, b) = cores.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        let now = START + 1000;
        assert!(a.acquire(4, now).admitted);
        a.add_bytes(4, 600_000, now);
        assert!(a.acquire(4, now).admitted, "600 kB of 1 MB");
        assert_eq!(a.acquire(4, now).calls_remaining, None);
        a.add_bytes(4, 400_000, now);
        assert!(!a.acquire(4, now).admitted, "reached: refused");
        assert!(!b.acquire(4, now).admitted, "published, so b sees it");
        assert!(b.acquire(5, now).admitted, "another key");
        assert!(a.acquire(4, START + HOUR).admitted, "a new period");
    }

    #[test]
    fn small_byte_counts_reach_other_cores_at_the_tick() {
        let (_, mut cores) = cores(&spec(Some(1000), Some(100_000), 2), 2);
        let (a, b) = cores.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        let now = START;
        assert!(b.acquire(4, now).admitted);
        for _ in 0..10 {
            assert!(a.acquire(4, now).admitted);
            a.add_bytes(4, 1000, now);
        }
        assert!(a.acquire(4, now).admitted, "10 kB of 100 kB");
        a.add_bytes(4, 95_000, now);
        assert!(!a.acquire(4, now).admitted);
        assert!(
            b.acquire(4, now).admitted,
            "b looks again only at its tick or next lease"
        );
        a.tick(now + 500);
        b.tick(now + 500);
        let d = b.acquire(4, now + 600);
        assert!(!d.admitted);
        assert_eq!(d.retry_after_secs, 3600);
    }

    #[test]
    fn idle_keys_return_their_calls_at_the_tick() {
        // 2 workers, 400 calls: leases of 10.
        let (_, mut cores) = cores(&spec(Some(400), None, 2), 2);
        let (a, b) = cores.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        assert!(a.acquire(3, START).admitted);
        a.tick(START + 1000);
        assert_eq!(a.len(), 1, "used since the last tick: kept");
        a.tick(START + 2000);
        assert!(a.is_empty(), "idle for a tick: returned and dropped");
        let mut admitted = 0;
        while b.acquire(3, START + 3000).admitted {
            admitted += 1;
        }
        assert_eq!(admitted, 399);
    }

    #[test]
    fn export_import_round_trip() {
        let spec = spec(Some(100), Some(1_000_000), 2);
        let (before, mut cores) = cores(&spec, 2);
        let now = START + 10 * HOUR + 5;
        for key in 0..3u64 {
            for _ in 0..(10 * (key + 1)) {
                assert!(cores[(key % 2) as usize].acquire(key, now).admitted);
            }
            cores[0].add_bytes(key, 100_000 * (key + 1), now);
        }
        for core in &mut cores {
            core.tick(now + 1);
        }
        let records = before.export(now + 2);
        assert_eq!(records.len(), 3);
        let key1 = records.iter().find(|r| r.slot == 1).unwrap();
        assert_eq!(key1.period, 10);
        assert!(key1.calls >= 20, "leased and unspent calls count as used");
        assert_eq!(key1.bytes, 200_000);

        let after = Arc::new(SharedQuota::new(&spec));
        after.import(&records, now + 3);
        after.import(&records, now + 3);
        assert_eq!(
            after.export(now + 4),
            records,
            "importing twice does not double"
        );
        let mut core = LocalQuota::new(after.clone(), &spec);
        let mut admitted = 0;
        while core.acquire(1, now + 5).admitted {
            admitted += 1;
        }
        assert_eq!(admitted, 100 - key1.calls);

        let next_period = Arc::new(SharedQuota::new(&spec));
        next_period.import(&records, now + HOUR);
        assert!(
            next_period.export(now + HOUR).is_empty(),
            "old records are ignored"
        );
    }

    #[test]
    fn peek_shows_leased_calls_and_published_bytes_of_the_period() {
        // 2 workers, 400 calls: leases of 10; 1 MB: batches of 25,000 bytes.
        let (shared, mut cores) = cores(&spec(Some(400), Some(1_000_000), 2), 2);
        let now = START + HOUR + 1000;
        let v = shared.peek(4, now);
        assert_eq!(v.calls_limit, Some(400));
        assert_eq!(v.bytes_limit, Some(1_000_000));
        assert_eq!((v.calls_used, v.bytes_used), (0, 0));
        assert_eq!(v.period_ends_unix_ms, START + 2 * HOUR);
        let (a, b) = cores.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        assert!(a.acquire(4, now).admitted);
        assert_eq!(
            shared.peek(4, now).calls_used,
            10,
            "the lease counts, spent or not"
        );
        a.add_bytes(4, 10_000, now);
        assert_eq!(shared.peek(4, now).bytes_used, 0, "not published yet");
        a.add_bytes(4, 20_000, now);
        assert_eq!(shared.peek(4, now).bytes_used, 30_000, "a full batch");
        for _ in 0..15 {
            assert!(b.acquire(4, now).admitted);
        }
        b.add_bytes(4, 100, now);
        assert_eq!(shared.peek(4, now).calls_used, 30);
        a.tick(now + 500);
        b.tick(now + 500);
        let v = shared.peek(4, now + 500);
        assert_eq!(
            (v.calls_used, v.bytes_used),
            (30, 30_100),
            "the tick publishes"
        );
        a.tick(now + 1500);
        assert_eq!(
            shared.peek(4, now + 1500).calls_used,
            21,
            "a was idle: its 9 unspent calls are back"
        );
        assert_eq!(shared.peek(5, now).calls_used, 0, "another line");
        let v = shared.peek(4, START + 2 * HOUR);
        assert_eq!((v.calls_used, v.bytes_used), (0, 0), "a new period");
        assert_eq!(v.period_ends_unix_ms, START + 3 * HOUR);
        assert_eq!(shared.peek(4, START - 1).period_ends_unix_ms, START);
        // A core already in the next period: a peek still in this one finds no calls left.
        assert!(a.acquire(4, START + 2 * HOUR).admitted);
        let v = shared.peek(4, START + 2 * HOUR - 1);
        assert_eq!((v.calls_used, v.bytes_used), (400, 30_100));
        assert_eq!(shared.peek(4, START + 2 * HOUR).calls_used, 10);
    }

    #[test]
    fn peek_without_limits_reports_none() {
        let (shared, mut cores) = cores(&spec(None, None, 1), 1);
        assert!(cores[0].acquire(1, START).admitted);
        cores[0].add_bytes(1, 5000, START);
        let v = shared.peek(1, START);
        assert_eq!((v.calls_limit, v.bytes_limit), (None, None));
        assert_eq!((v.calls_used, v.bytes_used), (0, 0));
        assert_eq!(v.period_ends_unix_ms, START + HOUR);
    }

    #[test]
    fn a_lagging_clock_does_not_overwrite_the_next_period() {
        let (_, mut cores) = cores(&spec(Some(100), None, 1), 2);
        let (ahead, behind) = cores.split_at_mut(1);
        let (ahead, behind) = (&mut ahead[0], &mut behind[0]);
        for _ in 0..100 {
            assert!(ahead.acquire(2, START + HOUR).admitted);
        }
        assert!(!behind.acquire(2, START + HOUR - 1).admitted);
        assert!(
            !ahead.acquire(2, START + HOUR).admitted,
            "the new period kept its count"
        );
    }

    #[test]
    fn flood_of_distinct_keys_stays_bounded() {
        let spec = QuotaSpec {
            max_keys: 40,
            ..spec(Some(3), None, 1)
        };
        let (_, mut cores) = cores(&spec, 1);
        let core = &mut cores[0];
        let mut hot = 0;
        for i in 0..10_000u64 {
            hot += u32::from(core.acquire(0x77, START).admitted);
            core.acquire((i << 12) | 1, START);
            assert!(core.len() <= 40);
        }
        assert_eq!(hot, 3);
        assert_eq!(core.memory_bytes(), size_of::<LocalQuota>() + 40 * 50);
    }

    #[test]
    fn four_threads_on_one_key_admit_exactly_calls() {
        let spec = spec(Some(5000), None, 4);
        let shared = Arc::new(SharedQuota::new(&spec));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (shared, spec) = (shared.clone(), spec.clone());
                std::thread::spawn(move || {
                    let mut core = LocalQuota::new(shared, &spec);
                    let mut admitted = 0u64;
                    while core.acquire(11, START + 1).admitted {
                        admitted += 1;
                    }
                    admitted
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 5000);
    }
}
