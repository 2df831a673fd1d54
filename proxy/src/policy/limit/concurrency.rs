//! `limit-concurrency`: at most `max_count` requests in flight per key, node-wide.
//!
//! A shared line counts the slots held by all cores for the keys that hash to it; a core takes
//! one with a compare-and-swap that refuses at `max_count`, so the node never has more in
//! flight than that. A core keeps up to `spare` slots it no longer uses while the key still
//! has requests in flight there, so that a key hovering around some concurrency does not swap
//! the shared counter on every request; `spare = clamp(max_count / (20 * workers), 0, 64)`,
//! which bounds the slots idle on other cores at `(workers - 1) * spare`, under 5 % of
//! `max_count`. When its last request for a key ends, a core returns every slot and forgets the
//! key, so idle keys hold nothing.
//!
//! Keys in flight are never evicted: the table only holds keys with requests in flight. When
//! a key's set is full of them, the key is served straight from the shared counter (one swap to
//! acquire, one to release) without a local entry; nothing is lost, it only costs the swaps.
//! Colliding keys share one line and so one `max_count`: early refusals, never excess.
//!
//! Memory: the shared table is `slots * 8` bytes, `slots = next_pow2(2 * max_keys)` and at
//! least 1,024; each core's table is 18 bytes per key, `max_keys` keys, allocated up front.

use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::Serialize;

use super::shared_lines;
use super::table::KeyTable;

/// Most slots a core keeps idle for one key.
const MAX_SPARE: u64 = 64;

/// A `limit-concurrency` policy's settings.
#[derive(Clone, Debug)]
pub struct ConcurrencySpec {
    /// Requests in flight per key; above `u32::MAX` it is treated as `u32::MAX`.
    pub max_count: u64,
    /// Worker cores that will each hold a [`LocalConcurrency`]; sizes the spare slots.
    pub workers: usize,
    /// Keys each core keeps state for; also sizes the shared table.
    pub max_keys: usize,
}

/// The node-wide slot counters of one concurrency limit, shared by every worker core.
pub struct SharedConcurrency {
    lines: Box<[AtomicU64]>,
    mask: u64,
    max_count: u64,
}

impl SharedConcurrency {
    pub fn new(spec: &ConcurrencySpec) -> SharedConcurrency {
        let slots = shared_lines(spec.max_keys);
        SharedConcurrency {
            lines: super::zeroed_table(slots),
            mask: slots as u64 - 1,
            max_count: spec.max_count.min(u64::from(u32::MAX)),
        }
    }

    /// Lines in the table.
    pub fn slots(&self) -> usize {
        self.lines.len()
    }

    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.lines.len() * size_of::<AtomicU64>()
    }

    /// Slots held node-wide on `key`'s line: requests in flight plus cores' spares.
    pub fn held(&self, key: u64) -> u64 {
        self.line(key).load(Relaxed)
    }

    /// The node-wide state of `key`'s line. For the admin API, from any thread; it only loads
    /// the counter (`Relaxed`) and writes nothing.
    ///
    /// Spare slots a core keeps for the key count as in use: `max - in_use` is what cores could
    /// still take, not what is left to be admitted, which is up to every core's spares more.
    pub fn peek(&self, key: u64) -> ConcurrencyView {
        ConcurrencyView {
            max: self.max_count,
            in_use: self.held(key),
        }
    }

    fn line(&self, key: u64) -> &AtomicU64 {
        &self.lines[(key & self.mask) as usize]
    }

    /// Takes one slot if fewer than `max_count` are held. `Relaxed`: the counter is its own
    /// ledger; the bound needs only its single modification order.
    fn take(&self, key: u64) -> bool {
        let max = self.max_count;
        self.line(key)
            .fetch_update(Relaxed, Relaxed, |held| (held < max).then_some(held + 1))
            .is_ok()
    }

    fn put(&self, key: u64, n: u64) {
        if n == 0 {
            return;
        }
        // Saturating: a release without its acquire must not wrap the count to "full".
        let _ = self
            .line(key)
            .fetch_update(Relaxed, Relaxed, |held| Some(held.saturating_sub(n)));
    }
}

/// The node-wide state of one key's line in a concurrency limit, from
/// [`SharedConcurrency::peek`].
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ConcurrencyView {
    /// `max_count`.
    pub max: u64,
    /// Slots held on the key's line: requests in flight, and spare slots cores keep for the
    /// key, which count as in use node-wide.
    pub in_use: u64,
}

/// A core's slots for one key.
#[derive(Clone, Copy, Default)]
struct Slots {
    held: u32,
    in_flight: u32,
}

/// One core's side of a concurrency limit. Not shared; no locks.
pub struct LocalConcurrency {
    shared: Arc<SharedConcurrency>,
    keys: KeyTable<Slots>,
    spare: u32,
}

impl LocalConcurrency {
    /// Uses the shared table's `max_count`; `spec.workers` sizes the spares and
    /// `spec.max_keys` bounds this core's table.
    pub fn new(shared: Arc<SharedConcurrency>, spec: &ConcurrencySpec) -> LocalConcurrency {
        let workers = spec.workers.max(1) as u64;
        LocalConcurrency {
            spare: (shared.max_count / (20 * workers)).min(MAX_SPARE) as u32,
            shared,
            keys: KeyTable::new(spec.max_keys),
        }
    }

    /// Admits one request for `key`, which must be paired with one `release(key)` on this
    /// core when it ends, or refuses it. Local when this core holds a spare slot for the key;
    /// one shared swap otherwise.
    pub fn acquire(&mut self, key: u64) -> bool {
        if let Some(slots) = self.keys.get_mut(key) {
            if slots.in_flight < slots.held {
                slots.in_flight += 1;
                return true;
            }
            if !self.shared.take(key) {
                return false;
            }
            slots.held += 1;
            slots.in_flight += 1;
            return true;
        }
        if !self.shared.take(key) {
            return false;
        }
        // With no free way, the slot is held untracked: `release` finds no entry and puts it
        // straight back.
        if let Some(slots) = self.keys.insert_if_room(key) {
            *slots = Slots {
                held: 1,
                in_flight: 1,
            };
        }
        true
    }

    /// Ends one request admitted by `acquire(key)` on this core.
    pub fn release(&mut self, key: u64) {
        let Some(slots) = self.keys.get_mut(key) else {
            self.shared.put(key, 1);
            return;
        };
        slots.in_flight = slots.in_flight.saturating_sub(1);
        if slots.in_flight == 0 {
            let held = slots.held;
            self.keys.remove(key);
            self.shared.put(key, u64::from(held));
            return;
        }
        let idle = slots.held - slots.in_flight;
        if idle > self.spare {
            slots.held -= idle - self.spare;
            self.shared.put(key, u64::from(idle - self.spare));
        }
    }

    /// Periodic upkeep: returns every spare slot, so that a key whose traffic has moved to
    /// other cores is not held back by this one.
    pub fn tick(&mut self) {
        let shared = &*self.shared;
        self.keys.retain(|key, slots| {
            shared.put(key, u64::from(slots.held - slots.in_flight));
            slots.held = slots.in_flight;
            true
        });
    }

    /// Keys with requests in flight on this core that it tracks; at most `max_keys`.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// Bytes this core's side holds, all allocated when it was built (`max_keys * 18`).
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.keys.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    fn spec(max_count: u64, workers: usize, max_keys: usize) -> ConcurrencySpec {
        ConcurrencySpec {
            max_count,
            workers,
            max_keys,
        }
    }

    fn cores(spec: &ConcurrencySpec, n: usize) -> (Arc<SharedConcurrency>, Vec<LocalConcurrency>) {
        let shared = Arc::new(SharedConcurrency::new(spec));
        let locals = (0..n)
            .map(|_| LocalConcurrency::new(shared.clone(), spec))
            .collect();
        (shared, locals)
    }

    #[test]
    fn max_count_holds_across_two_cores() {
        let (shared, mut cores) = cores(&spec(3, 2, 100), 2);
        assert!(cores[0].acquire(1));
        assert!(cores[1].acquire(1));
        assert!(cores[0].acquire(1));
        assert!(!cores[1].acquire(1));
        assert!(!cores[0].acquire(1));
        assert!(cores[0].acquire(2), "another key");
        cores[0].release(1);
        assert!(cores[1].acquire(1), "a released slot is free for any core");
        assert!(!cores[0].acquire(1));
        cores[0].release(1);
        cores[1].release(1);
        cores[1].release(1);
        assert_eq!(shared.held(1), 0);
        assert_eq!(
            (cores[0].len(), cores[1].len()),
            (1, 0),
            "only key 2 is in flight"
        );
        cores[0].release(2);
        assert!(cores[0].is_empty());
        assert_eq!(shared.held(2), 0);
    }

    #[test]
    fn spare_slots_stay_while_busy_and_go_at_idle_or_tick() {
        // 400 / (20 * 2): up to 10 spare.
        let (shared, mut cores) = cores(&spec(400, 2, 100), 2);
        let core = &mut cores[0];
        for _ in 0..20 {
            assert!(core.acquire(5));
        }
        for _ in 0..15 {
            core.release(5);
        }
        assert_eq!(shared.held(5), 15, "5 in flight, 10 spare");
        for _ in 0..10 {
            assert!(core.acquire(5));
        }
        assert_eq!(shared.held(5), 15, "the spares served them locally");
        core.tick();
        assert_eq!(shared.held(5), 15, "all in use: nothing to return");
        for _ in 0..3 {
            core.release(5);
        }
        core.tick();
        assert_eq!(shared.held(5), 12);
        for _ in 0..12 {
            core.release(5);
        }
        assert_eq!(shared.held(5), 0);
        assert!(core.is_empty());
    }

    #[test]
    fn peek_counts_requests_in_flight_and_spare_slots() {
        // 400 / (20 * 2): up to 10 spare.
        let (shared, mut cores) = cores(&spec(400, 2, 100), 2);
        let v = shared.peek(5);
        assert_eq!((v.max, v.in_use), (400, 0));
        for _ in 0..20 {
            assert!(cores[0].acquire(5));
        }
        for _ in 0..3 {
            assert!(cores[1].acquire(5));
        }
        assert_eq!(shared.peek(5).in_use, 23);
        for _ in 0..15 {
            cores[0].release(5);
        }
        assert_eq!(
            shared.peek(5).in_use,
            18,
            "8 in flight, and core 0's 10 spares"
        );
        assert_eq!(
            shared.peek(5 + shared.slots() as u64).in_use,
            18,
            "same line"
        );
        assert_eq!(shared.peek(6).in_use, 0, "another line");
        cores[0].tick();
        assert_eq!(shared.peek(5).in_use, 8);
        for _ in 0..5 {
            cores[0].release(5);
        }
        for _ in 0..3 {
            cores[1].release(5);
        }
        assert_eq!(shared.peek(5).in_use, 0);
        let huge = SharedConcurrency::new(&spec(u64::MAX, 1, 10));
        assert_eq!(huge.peek(1).max, u64::from(u32::MAX));
    }

    #[test]
    fn keys_past_the_table_are_served_from_the_shared_counter() {
        let (shared, mut cores) = cores(&spec(2, 1, 4), 1);
        let core = &mut cores[0];
        for key in 0..100u64 {
            assert!(core.acquire(key));
            assert!(core.len() <= 4);
        }
        for key in 0..100u64 {
            assert!(core.acquire(key));
            assert!(!core.acquire(key), "key {key}");
        }
        for key in 0..100u64 {
            core.release(key);
            core.release(key);
        }
        assert!(core.is_empty());
        assert!((0..100).all(|key| shared.held(key) == 0));
    }

    #[test]
    fn threads_never_exceed_max_count() {
        const MAX: u64 = 8;
        let spec = spec(MAX, 4, 16);
        let shared = Arc::new(SharedConcurrency::new(&spec));
        let in_flight = Arc::new(AtomicI64::new(0));
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let (shared, spec, in_flight) = (shared.clone(), spec.clone(), in_flight.clone());
                std::thread::spawn(move || {
                    let mut core = LocalConcurrency::new(shared, &spec);
                    let mut mine = 0;
                    let mut seed = t + 1;
                    let mut admitted = 0;
                    for _ in 0..200_000 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        if seed % 2 == 0 || mine == 0 {
                            if core.acquire(77) {
                                let now = in_flight.fetch_add(1, Relaxed) + 1;
                                assert!(now <= MAX as i64, "{now} in flight");
                                mine += 1;
                                admitted += 1;
                            }
                        } else {
                            in_flight.fetch_sub(1, Relaxed);
                            core.release(77);
                            mine -= 1;
                        }
                        if seed % 1000 == 0 {
                            core.tick();
                        }
                    }
                    for _ in 0..mine {
                        in_flight.fetch_sub(1, Relaxed);
                        core.release(77);
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(admitted > 10_000);
        assert_eq!(shared.held(77), 0);
    }

    #[test]
    fn memory_is_18_bytes_per_key_per_core() {
        let (shared, cores) = cores(&spec(10, 1, 10_000), 1);
        assert_eq!(
            cores[0].memory_bytes(),
            size_of::<LocalConcurrency>() + 10_000 * 18
        );
        assert_eq!(
            shared.memory_bytes(),
            size_of::<SharedConcurrency>() + 32_768 * 8
        );
    }
}
