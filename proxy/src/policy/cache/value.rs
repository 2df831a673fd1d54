//! One worker core's value cache: `cache-store-value`, `cache-lookup-value` and
//! `cache-remove-value`.
//!
//! Policies store small values under keys they choose (a token, a looked-up tenant), each for
//! a duration. Like the response store it is per core and bounded in bytes, least recently
//! used evicted first; a value stored on one core is not seen by the others, and a removal
//! that must reach every core goes through the [`super::PurgeHub`].

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::key::key_hash;
use super::lru::LruTable;

/// A worker core's cached values, keyed by the text a policy chose.
pub struct ValueStore {
    table: LruTable<Bytes>,
}

impl ValueStore {
    /// What a value costs on top of its key and value bytes.
    pub const ENTRY_OVERHEAD: usize = LruTable::<Bytes>::ENTRY_OVERHEAD;

    /// A store that holds at most `max_bytes` (keys, values and [`ValueStore::ENTRY_OVERHEAD`]
    /// per entry), and refuses any one entry over `max_entry_bytes`.
    pub fn new(max_bytes: usize, max_entry_bytes: usize) -> Self {
        Self {
            table: LruTable::new(max_bytes, max_entry_bytes),
        }
    }

    /// The value stored under `key`, if it has not expired.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Bytes> {
        self.table
            .get(key_hash(key), key, now)
            .map(|e| e.value.clone())
    }

    /// Stores `value` under `key` for `ttl`; whether it was stored (see
    /// [`super::CacheStore::insert`] for when it is not).
    pub fn insert(&mut self, key: &[u8], value: Bytes, ttl: Duration, now: Instant) -> bool {
        // Promote a `Vec`-backed value to shared now, so that lookups never allocate.
        drop(value.clone());
        let size = value.len();
        self.table.insert(key_hash(key), key, value, size, ttl, now)
    }

    /// Drops the value stored under `key`; whether there was one.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.table.remove(key_hash(key), key)
    }

    /// Drops every value whose key starts with `prefix`; how many.
    pub fn purge_prefix(&mut self, prefix: &[u8]) -> usize {
        self.table.remove_prefix(prefix)
    }

    /// Drops expired values among the next `budget` entries; how many.
    pub fn sweep(&mut self, now: Instant, budget: usize) -> usize {
        self.table.sweep(now, budget)
    }

    pub fn clear(&mut self) {
        self.table.clear();
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    pub fn bytes(&self) -> usize {
        self.table.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn store_lookup_remove() {
        let t0 = Instant::now();
        let mut v = ValueStore::new(4096, 1024);
        assert!(v.insert(b"tenant:42", Bytes::from_static(b"gold"), SEC * 30, t0));
        assert_eq!(
            v.get(b"tenant:42", t0 + SEC * 29).as_deref(),
            Some(&b"gold"[..])
        );
        assert_eq!(v.get(b"tenant:43", t0), None);
        assert!(v.remove(b"tenant:42"));
        assert_eq!(v.get(b"tenant:42", t0), None);
        assert_eq!(v.bytes(), 0);
    }

    #[test]
    fn values_expire_and_the_bound_holds() {
        let t0 = Instant::now();
        let mut v = ValueStore::new(3 * (4 + 100 + ValueStore::ENTRY_OVERHEAD), 1024);
        assert!(v.insert(b"k000", Bytes::from(vec![1; 100]), SEC, t0));
        assert_eq!(v.get(b"k000", t0 + SEC), None);
        for i in 0..10 {
            let key = format!("k{i:03}");
            assert!(v.insert(key.as_bytes(), Bytes::from(vec![1; 100]), SEC * 60, t0));
            assert!(v.bytes() <= 3 * (4 + 100 + ValueStore::ENTRY_OVERHEAD));
        }
        assert_eq!(v.len(), 3);
        assert!(v.get(b"k009", t0).is_some());
        assert!(v.get(b"k006", t0).is_none());
        assert!(!v.insert(b"big", Bytes::from(vec![1; 2000]), SEC, t0));
    }
}
