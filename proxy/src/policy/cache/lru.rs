//! The byte-bounded, expiring LRU table under both the response store and the value store.
//!
//! Entries live in a slab (`Vec` of slots, reused through a free list) threaded by an
//! intrusive doubly linked list of slot indices, most recently used first; an `AHashMap` maps
//! a key's hash to its slot. A lookup, an insert and an eviction are so O(1) and a lookup
//! allocates nothing. One slot per hash: the full key is stored and compared, and a second key
//! with the same hash replaces the first rather than sharing its slot.
//!
//! The invariant that matters: `bytes` is the sum of the costs of the entries present, and is
//! at most `max_bytes` after every insert. Expired entries are dropped lazily, when a lookup
//! finds one, and by [`LruTable::sweep`], which visits a bounded number of slots per call.
//! The slab never shrinks; it holds at most as many slots as were live at once.

use std::mem::size_of;
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// No slot: the end of the list, or of the free list.
const NIL: u32 = u32::MAX;

/// What the index costs per entry: a map bucket (`u64` hash, `u32` slot, padded to 16 bytes),
/// its control byte, and the slack of the map's 7/8 load factor.
const INDEX_BYTES: usize = 24;

pub(crate) struct Entry<V> {
    hash: u64,
    pub(crate) key: Box<[u8]>,
    pub(crate) value: V,
    pub(crate) stored_at: Instant,
    pub(crate) expires_at: Instant,
    cost: usize,
}

struct Slot<V> {
    prev: u32,
    next: u32,
    entry: Option<Entry<V>>,
}

pub(crate) struct LruTable<V> {
    slots: Vec<Slot<V>>,
    index: AHashMap<u64, u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to be evicted.
    tail: u32,
    /// First vacant slot; vacant slots chain through `next`.
    free: u32,
    len: usize,
    bytes: usize,
    max_bytes: usize,
    max_entry_bytes: usize,
    /// Where the next [`LruTable::sweep`] resumes.
    sweep_at: usize,
}

impl<V> LruTable<V> {
    /// What an entry costs beyond its key and value bytes: its slot and its index bucket.
    pub(crate) const ENTRY_OVERHEAD: usize = size_of::<Slot<V>>() + INDEX_BYTES;

    pub(crate) fn new(max_bytes: usize, max_entry_bytes: usize) -> Self {
        Self {
            slots: Vec::new(),
            index: AHashMap::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            len: 0,
            bytes: 0,
            max_bytes,
            max_entry_bytes,
            sweep_at: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The fresh entry for `key`, made most recently used; an expired one is dropped.
    pub(crate) fn get(&mut self, hash: u64, key: &[u8], now: Instant) -> Option<&Entry<V>> {
        let slot = self.find(hash, key)?;
        if now >= self.entry(slot).expires_at {
            self.remove_slot(slot);
            return None;
        }
        self.unlink(slot);
        self.push_front(slot);
        Some(self.entry(slot))
    }

    /// Stores `value` under `key` for `ttl`, evicting least recently used entries to make room.
    /// `value_bytes` is what the value holds on the heap. Refused (and any entry for `key` is
    /// dropped, since the newer answer supersedes it) when the entry would cost more than
    /// `max_entry_bytes` or `max_bytes`, or `ttl` is zero.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: &[u8],
        value: V,
        value_bytes: usize,
        ttl: Duration,
        now: Instant,
    ) -> bool {
        if let Some(&slot) = self.index.get(&hash) {
            // The same key, or one whose hash collides: either way the new entry takes over.
            self.remove_slot(slot);
        }
        let cost = key.len() + value_bytes + Self::ENTRY_OVERHEAD;
        let expires_at = match now.checked_add(ttl) {
            Some(at) if !ttl.is_zero() => at,
            _ => return false,
        };
        if cost > self.max_entry_bytes || cost > self.max_bytes {
            return false;
        }
        while self.bytes + cost > self.max_bytes && self.tail != NIL {
            self.remove_slot(self.tail);
        }
        let entry = Entry {
            hash,
            key: key.into(),
            value,
            stored_at: now,
            expires_at,
            cost,
        };
        let slot = match self.free {
            NIL => {
                self.slots.push(Slot {
                    prev: NIL,
                    next: NIL,
                    entry: Some(entry),
                });
                (self.slots.len() - 1) as u32
            }
            slot => {
                self.free = self.slots[slot as usize].next;
                self.slots[slot as usize].entry = Some(entry);
                slot
            }
        };
        self.push_front(slot);
        self.index.insert(hash, slot);
        self.len += 1;
        self.bytes += cost;
        true
    }

    /// Drops the entry for `key`; whether there was one.
    pub(crate) fn remove(&mut self, hash: u64, key: &[u8]) -> bool {
        match self.find(hash, key) {
            Some(slot) => {
                self.remove_slot(slot);
                true
            }
            None => false,
        }
    }

    /// Drops every entry whose key starts with `prefix`; how many. Visits every slot: a purge
    /// is an administrative act, not a per-request one.
    pub(crate) fn remove_prefix(&mut self, prefix: &[u8]) -> usize {
        let mut removed = 0;
        for slot in 0..self.slots.len() {
            let hit = matches!(&self.slots[slot].entry, Some(e) if e.key.starts_with(prefix));
            if hit {
                self.remove_slot(slot as u32);
                removed += 1;
            }
        }
        removed
    }

    /// Drops expired entries among the next `budget` slots, resuming where the last sweep
    /// stopped and wrapping round; how many it dropped.
    pub(crate) fn sweep(&mut self, now: Instant, budget: usize) -> usize {
        let mut removed = 0;
        for _ in 0..budget.min(self.slots.len()) {
            if self.sweep_at >= self.slots.len() {
                self.sweep_at = 0;
            }
            let slot = self.sweep_at;
            self.sweep_at += 1;
            let expired = matches!(&self.slots[slot].entry, Some(e) if now >= e.expires_at);
            if expired {
                self.remove_slot(slot as u32);
                removed += 1;
            }
        }
        removed
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.head = NIL;
        self.tail = NIL;
        self.free = NIL;
        self.len = 0;
        self.bytes = 0;
        self.sweep_at = 0;
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slot = *self.index.get(&hash)?;
        (*self.entry(slot).key == *key).then_some(slot)
    }

    fn entry(&self, slot: u32) -> &Entry<V> {
        self.slots[slot as usize]
            .entry
            .as_ref()
            .expect("a linked slot holds an entry")
    }

    fn remove_slot(&mut self, slot: u32) {
        self.unlink(slot);
        let s = &mut self.slots[slot as usize];
        let entry = s.entry.take().expect("a linked slot holds an entry");
        s.next = self.free;
        self.free = slot;
        self.index.remove(&entry.hash);
        self.len -= 1;
        self.bytes -= entry.cost;
    }

    fn unlink(&mut self, slot: u32) {
        let Slot { prev, next, .. } = self.slots[slot as usize];
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        let s = &mut self.slots[slot as usize];
        s.prev = NIL;
        s.next = old_head;
        match old_head {
            NIL => self.tail = slot,
            h => self.slots[h as usize].prev = slot,
        }
        self.head = slot;
    }

    /// Keys from most to least recently used, checking the list, the index and the byte count
    /// against each other on the way.
    #[cfg(test)]
    pub(crate) fn check(&self) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut bytes = 0;
        let mut prev = NIL;
        let mut slot = self.head;
        while slot != NIL {
            let s = &self.slots[slot as usize];
            assert_eq!(s.prev, prev);
            let e = s.entry.as_ref().unwrap();
            assert_eq!(self.index.get(&e.hash), Some(&slot));
            bytes += e.cost;
            keys.push(e.key.to_vec());
            prev = slot;
            slot = s.next;
        }
        assert_eq!(self.tail, prev);
        assert_eq!(keys.len(), self.len);
        assert_eq!(self.index.len(), self.len);
        assert_eq!(bytes, self.bytes);
        assert!(self.bytes <= self.max_bytes);
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::cache::key_hash;
    use proptest::prelude::*;

    type Table = LruTable<u32>;
    const SEC: Duration = Duration::from_secs(1);

    fn cost(key: &[u8], value_bytes: usize) -> usize {
        key.len() + value_bytes + Table::ENTRY_OVERHEAD
    }

    fn put(t: &mut Table, key: &[u8], size: usize, now: Instant) -> bool {
        t.insert(key_hash(key), key, 0, size, SEC * 60, now)
    }

    #[test]
    fn a_lookup_refreshes_recency() {
        let now = Instant::now();
        let mut t = Table::new(3 * cost(b"k1", 100), usize::MAX);
        for k in [b"k1", b"k2", b"k3"] {
            assert!(put(&mut t, k, 100, now));
        }
        assert_eq!(t.check(), [b"k3", b"k2", b"k1"]);
        assert!(t.get(key_hash(b"k1"), b"k1", now).is_some());
        assert_eq!(t.check(), [b"k1", b"k3", b"k2"]);
        // Full: the next insert evicts k2, the least recently used.
        assert!(put(&mut t, b"k4", 100, now));
        assert_eq!(t.check(), [b"k4", b"k1", b"k3"]);
    }

    #[test]
    fn one_large_entry_evicts_several_small_ones() {
        let now = Instant::now();
        let mut t = Table::new(4 * cost(b"k1", 100), usize::MAX);
        for k in [b"k1", b"k2", b"k3", b"k4"] {
            put(&mut t, k, 100, now);
        }
        // Worth more than two small ones: three go.
        assert!(put(&mut t, b"big", 2 * cost(b"k1", 100) + 10, now));
        assert_eq!(t.check(), [b"big".as_slice(), b"k4"]);
    }

    #[test]
    fn oversized_entries_are_refused_and_drop_the_old_one() {
        let now = Instant::now();
        let mut t = Table::new(10_000, cost(b"k", 500));
        assert!(put(&mut t, b"k", 500, now));
        assert!(!put(&mut t, b"k", 501, now));
        assert!(t.check().is_empty());
        let mut small = Table::new(cost(b"k", 10), usize::MAX);
        assert!(!put(&mut small, b"k", 11, now));
        assert!(!small.insert(key_hash(b"k"), b"k", 0, 1, Duration::ZERO, now));
        assert_eq!(small.len(), 0);
    }

    #[test]
    fn colliding_hashes_never_answer_for_each_other() {
        let now = Instant::now();
        let mut t = Table::new(10_000, usize::MAX);
        assert!(t.insert(7, b"first", 1, 0, SEC, now));
        assert!(t.get(7, b"second", now).is_none());
        assert!(!t.remove(7, b"second"));
        assert!(t.insert(7, b"second", 2, 0, SEC, now));
        assert!(t.get(7, b"first", now).is_none());
        assert_eq!(t.get(7, b"second", now).map(|e| e.value), Some(2));
        assert_eq!(t.check().len(), 1);
    }

    #[test]
    fn expired_entries_go_on_lookup_and_on_sweep() {
        let t0 = Instant::now();
        let mut t = Table::new(1 << 20, usize::MAX);
        for i in 0..10u32 {
            let key = format!("k{i}");
            let ttl = if i % 2 == 0 { SEC } else { SEC * 100 };
            t.insert(key_hash(key.as_bytes()), key.as_bytes(), i, 0, ttl, t0);
        }
        assert!(t.get(key_hash(b"k0"), b"k0", t0 + SEC).is_none());
        assert_eq!(t.len(), 9);
        // A bounded sweep visits at most `budget` slots per call, resuming where it stopped.
        let mut removed = 0;
        for _ in 0..4 {
            let r = t.sweep(t0 + SEC, 3);
            assert!(r <= 3);
            removed += r;
        }
        assert_eq!(removed, 4);
        assert_eq!(t.len(), 5);
        t.check();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u16),
        Get(u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..16, 0u16..400).prop_map(|(k, s)| Op::Put(k, s)),
            (0u8..16).prop_map(Op::Get),
            (0u8..16).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// The table against a plain list kept in recency order.
        #[test]
        fn matches_a_reference_lru(ops in proptest::collection::vec(op(), 1..200)) {
            let now = Instant::now();
            let max = 4 * cost(b"k00", 300);
            let mut t = Table::new(max, cost(b"k00", 350));
            let mut model: Vec<(Vec<u8>, usize)> = Vec::new();
            for op in ops {
                match op {
                    Op::Put(k, size) => {
                        let key = format!("k{k:02}").into_bytes();
                        model.retain(|(m, _)| *m != key);
                        let c = cost(&key, size as usize);
                        let stored = put(&mut t, &key, size as usize, now);
                        prop_assert_eq!(stored, c <= cost(b"k00", 350));
                        if stored {
                            while model.iter().map(|m| m.1).sum::<usize>() + c > max {
                                model.pop();
                            }
                            model.insert(0, (key, c));
                        }
                    }
                    Op::Get(k) => {
                        let key = format!("k{k:02}").into_bytes();
                        let found = t.get(key_hash(&key), &key, now).is_some();
                        let at = model.iter().position(|(m, _)| *m == key);
                        prop_assert_eq!(found, at.is_some());
                        if let Some(at) = at {
                            let m = model.remove(at);
                            model.insert(0, m);
                        }
                    }
                    Op::Remove(k) => {
                        let key = format!("k{k:02}").into_bytes();
                        let at = model.iter().position(|(m, _)| *m == key);
                        prop_assert_eq!(t.remove(key_hash(&key), &key), at.is_some());
                        if let Some(at) = at {
                            model.remove(at);
                        }
                    }
                }
                let keys: Vec<Vec<u8>> = model.iter().map(|m| m.0.clone()).collect();
                prop_assert_eq!(t.check(), keys);
            }
        }
    }
}
