//! One worker core's response cache: what `cache-lookup` answers from and `cache-store` fills.
//!
//! Shared-nothing: each core keeps its own store (a response cached on one core is a miss on
//! the others), so the hot path takes no lock and crosses no core. The store keeps what the
//! server needs to answer a hit without touching the origin's response again: the status, the
//! header block to send (the origin's header lines less hop-by-hop and framing headers, as
//! `name: value\r\n` lines, which the server builds) and the body. Both are `Bytes`, so a hit
//! hands out reference-counted views and copies nothing.
//!
//! The store does not decide what may be stored (see [`super::control`]) nor build keys (see
//! [`super::key`]); it bounds its memory, evicts the least recently used entry, and forgets
//! entries when their time is up.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::lru::LruTable;

/// A cached response, as handed to the server on a hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub status: u16,
    /// Header lines to send, each `name: value\r\n`, without the blank line that ends a head.
    pub headers: Bytes,
    pub body: Bytes,
    /// Whole seconds the response has spent in this store: the `Age` to send.
    pub age_secs: u64,
}

struct Response {
    status: u16,
    headers: Bytes,
    body: Bytes,
}

/// A worker core's cached responses, bounded in bytes, least recently used evicted first.
pub struct CacheStore {
    table: LruTable<Response>,
}

impl CacheStore {
    /// What an entry costs on top of its key, header and body bytes: its slot in the table
    /// (the entry's fields and list links) and its bucket in the index.
    pub const ENTRY_OVERHEAD: usize = LruTable::<Response>::ENTRY_OVERHEAD;

    /// A store that holds at most `max_bytes` (keys, header blocks, bodies and
    /// [`CacheStore::ENTRY_OVERHEAD`] per entry), and refuses any one entry over
    /// `max_entry_bytes`.
    pub fn new(max_bytes: usize, max_entry_bytes: usize) -> Self {
        Self {
            table: LruTable::new(max_bytes, max_entry_bytes),
        }
    }

    /// The fresh response stored under `key` (whose [`super::key_hash`] is `hash`), made most
    /// recently used. An expired entry is dropped and reads as a miss. Allocates nothing.
    #[inline]
    pub fn get(&mut self, hash: u64, key: &[u8], now: Instant) -> Option<Hit> {
        let entry = self.table.get(hash, key, now)?;
        Some(Hit {
            status: entry.value.status,
            headers: entry.value.headers.clone(),
            body: entry.value.body.clone(),
            age_secs: now.saturating_duration_since(entry.stored_at).as_secs(),
        })
    }

    /// Stores a response under `key` for `ttl`, evicting least recently used entries to make
    /// room; whether it was stored. Refused when the entry would cost more than
    /// `max_entry_bytes` (or the whole store), or `ttl` is zero; a refused insert also drops
    /// an older entry for `key`, since the origin's newer answer supersedes it.
    ///
    /// `headers` and `body` should own exactly their bytes (copied out of a receive buffer,
    /// not sliced from it): the bound counts their length, not a larger buffer they may pin.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        hash: u64,
        key: &[u8],
        status: u16,
        headers: Bytes,
        body: Bytes,
        ttl: Duration,
        now: Instant,
    ) -> bool {
        // A `Bytes` built from a `Vec` allocates its shared header on its first clone; clone
        // once here so that hits never do.
        drop((headers.clone(), body.clone()));
        let size = headers.len() + body.len();
        let response = Response {
            status,
            headers,
            body,
        };
        self.table.insert(hash, key, response, size, ttl, now)
    }

    /// Drops the response stored under `key`; whether there was one.
    pub fn remove(&mut self, hash: u64, key: &[u8]) -> bool {
        self.table.remove(hash, key)
    }

    /// Drops every response whose key starts with `prefix` (see [`super::build_prefix`]); how
    /// many. Visits every entry.
    pub fn purge_prefix(&mut self, prefix: &[u8]) -> usize {
        self.table.remove_prefix(prefix)
    }

    /// Drops expired responses among the next `budget` entries, resuming where the last sweep
    /// stopped; how many. Run on the worker's tick, so that entries nobody asks for again do
    /// not hold memory until they are evicted.
    pub fn sweep(&mut self, now: Instant, budget: usize) -> usize {
        self.table.sweep(now, budget)
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.table.clear();
    }

    /// Responses stored, fresh or not yet swept.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// Bytes accounted to the stored responses; never more than [`CacheStore::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.table.bytes()
    }

    pub fn max_bytes(&self) -> usize {
        self.table.max_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::cache::{build_key, build_prefix, key_hash, KeyParts};

    const SEC: Duration = Duration::from_secs(1);
    const HEADERS: &[u8] = b"content-type: application/json\r\ncache-control: max-age=60\r\n";

    fn key(method: &str, path: &str) -> Vec<u8> {
        let parts = KeyParts {
            method: method.as_bytes(),
            host: b"api.example.com",
            path: path.as_bytes(),
            ..KeyParts::default()
        };
        let mut out = Vec::new();
        build_key(&mut out, &parts, &[], &[], |_| None);
        out
    }

    fn store(s: &mut CacheStore, key: &[u8], body: &'static [u8], ttl: Duration, now: Instant) {
        let stored = s.insert(
            key_hash(key),
            key,
            200,
            Bytes::from_static(HEADERS),
            Bytes::from_static(body),
            ttl,
            now,
        );
        assert!(stored);
    }

    #[test]
    fn a_hit_shares_the_stored_bytes_and_reports_its_age() {
        let t0 = Instant::now();
        let mut s = CacheStore::new(1 << 20, 1 << 16);
        let k = key("GET", "/orders");
        let body = Bytes::from(vec![b'x'; 1024]);
        assert!(s.insert(
            key_hash(&k),
            &k,
            200,
            Bytes::copy_from_slice(HEADERS),
            body.clone(),
            SEC * 60,
            t0
        ));
        let hit = s.get(key_hash(&k), &k, t0 + SEC * 7 / 2).unwrap();
        assert_eq!(hit.status, 200);
        assert_eq!(hit.headers, HEADERS);
        assert_eq!(hit.body.as_ptr(), body.as_ptr(), "a hit copies no body");
        assert_eq!(hit.age_secs, 3);
        assert_eq!(
            s.bytes(),
            k.len() + HEADERS.len() + 1024 + CacheStore::ENTRY_OVERHEAD
        );
    }

    #[test]
    fn head_is_answered_from_the_get_entry() {
        let t0 = Instant::now();
        let mut s = CacheStore::new(1 << 20, 1 << 16);
        store(&mut s, &key("GET", "/a"), b"body", SEC, t0);
        let head = key("HEAD", "/a");
        assert!(s.get(key_hash(&head), &head, t0).is_some());
    }

    #[test]
    fn entries_expire_at_their_ttl() {
        let t0 = Instant::now();
        let mut s = CacheStore::new(1 << 20, 1 << 16);
        let k = key("GET", "/a");
        store(&mut s, &k, b"body", SEC * 10, t0);
        assert!(s
            .get(key_hash(&k), &k, t0 + SEC * 10 - Duration::from_millis(1))
            .is_some());
        assert!(s.get(key_hash(&k), &k, t0 + SEC * 10).is_none());
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn the_byte_bound_holds_and_evicts_least_recently_used() {
        let t0 = Instant::now();
        let one = key("GET", "/00").len() + HEADERS.len() + 100 + CacheStore::ENTRY_OVERHEAD;
        let mut s = CacheStore::new(10 * one, one);
        let keys: Vec<Vec<u8>> = (0..20).map(|i| key("GET", &format!("/{i:02}"))).collect();
        for (i, k) in keys.iter().enumerate() {
            store(&mut s, k, &[b'b'; 100], SEC * 60, t0);
            // Keep /00 in use: it must survive the churn.
            assert!(s.get(key_hash(&keys[0]), &keys[0], t0).is_some(), "{i}");
            assert!(s.bytes() <= s.max_bytes());
        }
        assert_eq!(s.len(), 10);
        assert!(s.get(key_hash(&keys[1]), &keys[1], t0).is_none());
        assert!(s.get(key_hash(&keys[19]), &keys[19], t0).is_some());
        // One byte over the per-entry bound is refused.
        assert!(!s.insert(
            key_hash(&keys[5]),
            &keys[5],
            200,
            Bytes::from_static(HEADERS),
            Bytes::from(vec![0; 101]),
            SEC,
            t0
        ));
    }

    #[test]
    fn purge_by_key_and_by_prefix() {
        let t0 = Instant::now();
        let mut s = CacheStore::new(1 << 20, 1 << 16);
        for path in [
            "/api/orders",
            "/api/orders/1",
            "/api/orders/2",
            "/api/users/1",
        ] {
            store(&mut s, &key("GET", path), b"b", SEC * 60, t0);
        }
        let one = key("GET", "/api/orders/1");
        assert!(s.remove(key_hash(&one), &one));
        assert!(!s.remove(key_hash(&one), &one));

        let mut prefix = Vec::new();
        build_prefix(&mut prefix, b"API.example.com", b"/api/orders");
        assert_eq!(s.purge_prefix(&prefix), 2);
        assert_eq!(s.len(), 1);
        let users = key("GET", "/api/users/1");
        assert!(s.get(key_hash(&users), &users, t0).is_some());
    }

    #[test]
    fn sweep_frees_what_nobody_asks_for() {
        let t0 = Instant::now();
        let mut s = CacheStore::new(1 << 20, 1 << 16);
        for i in 0..100 {
            let ttl = if i < 60 { SEC } else { SEC * 60 };
            store(&mut s, &key("GET", &format!("/{i}")), b"b", ttl, t0);
        }
        // 100 slots at 16 a call: seven calls visit every one.
        for _ in 0..7 {
            assert!(s.sweep(t0 + SEC * 2, 16) <= 16);
        }
        assert_eq!(s.len(), 40);
        s.table.check();
    }
}
