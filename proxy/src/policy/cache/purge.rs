//! Purging cached entries on every core: by key, or by key prefix.
//!
//! Stores are per core and never shared, so a purge cannot reach into them; it is posted
//! instead. A [`PurgeHub`], shared by all threads, holds one channel per worker; each worker
//! holds its [`PurgeInbox`] and applies what arrived on its tick ([`PurgeInbox::apply`],
//! which never blocks), so a purge takes effect on every core within one tick. The caller gets
//! a [`PurgeTicket`] that counts the cores done and can be waited on: once it is done, no core
//! answers from a purged entry.
//!
//! A message counts its core done when it is dropped, applied or not, so a worker that has
//! exited (its inbox dropped, its store gone with it) never holds a ticket open. The channels
//! are unbounded: purges are administrative and rare, and a caller must not block on a busy
//! worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::key::key_hash;
use super::store::CacheStore;
use super::value::ValueStore;

/// Which cache a purge is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Stored responses ([`CacheStore`]).
    Responses,
    /// Stored values ([`ValueStore`]).
    Values,
}

/// What to drop.
#[derive(Debug, Clone, Copy)]
pub enum Purge<'a> {
    /// The entry with this key (and its [`super::key_hash`]).
    Key { hash: u64, key: &'a [u8] },
    /// Every entry whose key starts with this (see [`super::build_prefix`]).
    Prefix(&'a [u8]),
}

/// A worker's stores, as a purge sees them.
pub trait PurgeTarget {
    /// Applies `purge` if it is for this `scope`; how many entries it dropped.
    fn purge(&mut self, scope: Scope, purge: Purge<'_>) -> usize;
}

impl PurgeTarget for CacheStore {
    fn purge(&mut self, scope: Scope, purge: Purge<'_>) -> usize {
        match (scope, purge) {
            (Scope::Responses, Purge::Key { hash, key }) => usize::from(self.remove(hash, key)),
            (Scope::Responses, Purge::Prefix(prefix)) => self.purge_prefix(prefix),
            (Scope::Values, _) => 0,
        }
    }
}

impl PurgeTarget for ValueStore {
    fn purge(&mut self, scope: Scope, purge: Purge<'_>) -> usize {
        match (scope, purge) {
            (Scope::Values, Purge::Key { key, .. }) => usize::from(self.remove(key)),
            (Scope::Values, Purge::Prefix(prefix)) => self.purge_prefix(prefix),
            (Scope::Responses, _) => 0,
        }
    }
}

impl<T: PurgeTarget + ?Sized> PurgeTarget for &mut T {
    fn purge(&mut self, scope: Scope, purge: Purge<'_>) -> usize {
        (**self).purge(scope, purge)
    }
}

/// Both of a worker's stores: `inbox.apply(&mut (&mut responses, &mut values))`.
impl<A: PurgeTarget, B: PurgeTarget> PurgeTarget for (A, B) {
    fn purge(&mut self, scope: Scope, purge: Purge<'_>) -> usize {
        self.0.purge(scope, purge) + self.1.purge(scope, purge)
    }
}

enum Kind {
    Key { hash: u64, key: Arc<[u8]> },
    Prefix(Arc<[u8]>),
}

struct Message {
    scope: Scope,
    kind: Kind,
    ticket: Arc<TicketState>,
}

impl Drop for Message {
    fn drop(&mut self) {
        self.ticket.core_done();
    }
}

struct TicketState {
    cores: usize,
    done: AtomicUsize,
    removed: AtomicUsize,
    lock: Mutex<()>,
    all_done: Condvar,
}

impl TicketState {
    fn core_done(&self) {
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.cores {
            // Taken so that a waiter between its check and its wait cannot miss the signal.
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.all_done.notify_all();
        }
    }
}

/// Posts purges to every worker's inbox; shared by all threads in an `Arc`.
pub struct PurgeHub {
    inboxes: Vec<Sender<Message>>,
}

impl PurgeHub {
    /// A hub for `workers` workers, and the inbox each must take to its core.
    pub fn new(workers: usize) -> (Arc<Self>, Vec<PurgeInbox>) {
        let (inboxes, receivers) = (0..workers)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::unbounded();
                (tx, PurgeInbox { rx })
            })
            .unzip();
        (Arc::new(Self { inboxes }), receivers)
    }

    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// Drops the stored response with this key on every core.
    pub fn purge_key(&self, key: &[u8]) -> PurgeTicket {
        self.post(Scope::Responses, key_kind(key))
    }

    /// Drops every stored response whose key starts with `prefix` on every core.
    pub fn purge_prefix(&self, prefix: &[u8]) -> PurgeTicket {
        self.post(Scope::Responses, Kind::Prefix(prefix.into()))
    }

    /// Drops the value stored under `key` on every core (`cache-remove-value`).
    pub fn remove_value(&self, key: &[u8]) -> PurgeTicket {
        self.post(Scope::Values, key_kind(key))
    }

    fn post(&self, scope: Scope, kind: Kind) -> PurgeTicket {
        let ticket = Arc::new(TicketState {
            cores: self.inboxes.len(),
            done: AtomicUsize::new(0),
            removed: AtomicUsize::new(0),
            lock: Mutex::new(()),
            all_done: Condvar::new(),
        });
        for inbox in &self.inboxes {
            let kind = match &kind {
                Kind::Key { hash, key } => Kind::Key {
                    hash: *hash,
                    key: Arc::clone(key),
                },
                Kind::Prefix(prefix) => Kind::Prefix(Arc::clone(prefix)),
            };
            // A send to an exited worker fails and drops the message, which counts it done.
            let _ = inbox.send(Message {
                scope,
                kind,
                ticket: Arc::clone(&ticket),
            });
        }
        PurgeTicket { state: ticket }
    }
}

fn key_kind(key: &[u8]) -> Kind {
    Kind::Key {
        hash: key_hash(key),
        key: key.into(),
    }
}

/// A purge in progress: how many cores have applied it, and a way to wait for all of them.
pub struct PurgeTicket {
    state: Arc<TicketState>,
}

impl PurgeTicket {
    /// Cores that have applied the purge (or exited).
    pub fn cores_done(&self) -> usize {
        self.state.done.load(Ordering::Acquire)
    }

    /// Whether every core has applied the purge.
    pub fn is_done(&self) -> bool {
        self.cores_done() >= self.state.cores
    }

    /// Entries dropped so far, all cores together; final once [`PurgeTicket::is_done`].
    pub fn removed(&self) -> usize {
        self.state.removed.load(Ordering::Acquire)
    }

    /// Blocks the calling thread until every core has applied the purge, or `timeout` has
    /// passed; whether they all did. Not for a worker thread: the worker is one of the cores
    /// it would wait for.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self
            .state
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !self.is_done() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self
                .state
                .all_done
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// One worker's end of the hub; applied to the worker's stores on its tick.
pub struct PurgeInbox {
    rx: Receiver<Message>,
}

impl PurgeInbox {
    /// An inbox no purge reaches (replaced before use).
    pub fn detached() -> PurgeInbox {
        PurgeInbox {
            rx: crossbeam_channel::never(),
        }
    }

    /// Applies every purge that has arrived to `target`, without blocking; how many entries
    /// it dropped. Pass `&mut store`, or `&mut (&mut responses, &mut values)` for both stores.
    pub fn apply<T: PurgeTarget + ?Sized>(&self, target: &mut T) -> usize {
        let mut removed = 0;
        while let Ok(message) = self.rx.try_recv() {
            let purge = match &message.kind {
                Kind::Key { hash, key } => Purge::Key { hash: *hash, key },
                Kind::Prefix(prefix) => Purge::Prefix(prefix),
            };
            let n = target.purge(message.scope, purge);
            // Counted before the message drops and marks this core done.
            message.ticket.removed.fetch_add(n, Ordering::AcqRel);
            removed += n;
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::thread;

    use bytes::Bytes;

    use super::*;
    use crate::policy::cache::{build_key, build_prefix, KeyParts};

    const SEC: Duration = Duration::from_secs(1);

    fn key(path: &str) -> Vec<u8> {
        let parts = KeyParts {
            method: b"GET",
            host: b"api.example.com",
            path: path.as_bytes(),
            ..KeyParts::default()
        };
        let mut out = Vec::new();
        build_key(&mut out, &parts, &[], &[], |_| None);
        out
    }

    fn fill(store: &mut CacheStore, now: Instant) {
        for path in ["/orders/1", "/orders/2", "/orders/3", "/users/1"] {
            let k = key(path);
            let body = Bytes::from_static(b"{}");
            assert!(store.insert(key_hash(&k), &k, 200, Bytes::new(), body, SEC * 60, now));
        }
    }

    /// Four worker threads, each with its own store, applying their inboxes on a 1 ms tick.
    /// Each reports, after every tick, whether its store still has `/orders/1`.
    #[test]
    fn a_purge_reaches_every_core() {
        let (hub, inboxes) = PurgeHub::new(4);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = inboxes
            .into_iter()
            .map(|inbox| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let now = Instant::now();
                    let mut store = CacheStore::new(1 << 20, 1 << 16);
                    fill(&mut store, now);
                    while !stop.load(Ordering::Acquire) {
                        inbox.apply(&mut store);
                        thread::sleep(Duration::from_millis(1));
                    }
                    let k = key("/orders/1");
                    (store.len(), store.get(key_hash(&k), &k, now).is_some())
                })
            })
            .collect();

        let mut prefix = Vec::new();
        build_prefix(&mut prefix, b"api.example.com", b"/orders/");
        let ticket = hub.purge_prefix(&prefix);
        assert!(ticket.wait(SEC * 10));
        assert!(ticket.is_done());
        assert_eq!(ticket.cores_done(), 4);
        assert_eq!(ticket.removed(), 12);

        let ticket = hub.purge_key(&key("/users/1"));
        assert!(ticket.wait(SEC * 10));
        assert_eq!(ticket.removed(), 4);

        stop.store(true, Ordering::Release);
        for worker in workers {
            assert_eq!(worker.join().unwrap(), (0, false));
        }
    }

    #[test]
    fn an_exited_worker_does_not_hold_a_ticket_open() {
        let (hub, mut inboxes) = PurgeHub::new(2);
        let live = inboxes.pop().unwrap();
        // Posted while the first inbox still exists, then it goes with its worker.
        let before = hub.purge_prefix(b"api.example.com/");
        drop(inboxes);
        let after = hub.purge_prefix(b"api.example.com/");
        assert_eq!(before.cores_done(), 1);
        assert_eq!(after.cores_done(), 1);
        assert!(!after.wait(Duration::from_millis(10)));

        let mut store = CacheStore::new(1 << 20, 1 << 16);
        fill(&mut store, Instant::now());
        assert_eq!(live.apply(&mut store), 4);
        assert!(before.is_done() && after.is_done());
        assert!(after.wait(Duration::ZERO));
    }

    #[test]
    fn values_and_responses_are_purged_apart() {
        let (hub, inboxes) = PurgeHub::new(1);
        let now = Instant::now();
        let mut responses = CacheStore::new(1 << 20, 1 << 16);
        fill(&mut responses, now);
        let mut values = ValueStore::new(1 << 20, 1 << 16);
        values.insert(b"token", Bytes::from_static(b"t"), SEC, now);

        let ticket = hub.remove_value(b"token");
        assert_eq!(inboxes[0].apply(&mut (&mut responses, &mut values)), 1);
        assert!(ticket.is_done());
        assert!(values.is_empty());
        assert_eq!(responses.len(), 4);

        // A response purge leaves values alone, even with a matching key.
        values.insert(b"api.example.com/x", Bytes::from_static(b"v"), SEC, now);
        hub.purge_prefix(b"api.example.com/");
        assert_eq!(inboxes[0].apply(&mut (&mut responses, &mut values)), 4);
        assert_eq!(values.len(), 1);
    }

    #[test]
    fn no_workers_means_done_at_once() {
        let (hub, inboxes) = PurgeHub::new(0);
        assert!(inboxes.is_empty());
        assert!(hub.purge_key(b"k").wait(Duration::ZERO));
    }
}
