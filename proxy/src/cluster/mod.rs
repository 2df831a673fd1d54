//! Cluster mode: nodes that share limit budgets, quotas, cache purges, an optional cache tier
//! and the configuration through Redis.

pub mod cache;
pub mod limits;
pub mod portal;
pub mod redis;
pub mod sync;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::cluster::{ClusterSettings, WhenUnavailable};

/// The node's view of the cluster: its settings, whether Redis answers, and counters.
pub struct Node {
    pub settings: ClusterSettings,
    available: AtomicBool,
    pub counters: Counters,
}

/// What `/metrics` shows of the cluster.
#[derive(Default)]
pub struct Counters {
    /// Lease calls to Redis, and those that failed (timeout, connection, server error).
    pub leases: AtomicU64,
    pub lease_errors: AtomicU64,
    /// Requests a cluster-wide limit decided by itself because Redis could not be reached.
    pub fallbacks: AtomicU64,
    /// Times Redis went away, and came back.
    pub unavailable: AtomicU64,
    pub recovered: AtomicU64,
    /// Local cache misses the shared tier answered.
    pub tier_hits: AtomicU64,
}

/// Whether a call was refused by this core's own connection without being tried (it backs
/// off after failures of its own). That says nothing of Redis now: another core may have
/// just reached it, so the node is not marked unavailable for it; the request falls back,
/// and the core's connection tries again when its back-off ends.
fn backing_off<T>(reply: &Result<T, redis::RedisError>) -> bool {
    matches!(reply, Err(redis::RedisError::Unavailable(_)))
}

impl Node {
    pub fn new(settings: ClusterSettings) -> Arc<Node> {
        Arc::new(Node {
            settings,
            available: AtomicBool::new(true),
            counters: Counters::default(),
        })
    }

    /// Whether Redis answered the last time it was asked.
    #[inline]
    pub fn available(&self) -> bool {
        self.available.load(Relaxed)
    }

    /// Redis failed `why`: the node falls back until a probe succeeds (logged once).
    pub fn went_away(&self, why: &str) {
        if self.available.swap(false, Relaxed) {
            self.counters.unavailable.fetch_add(1, Relaxed);
            let fallback = match self.settings.when_unavailable {
                WhenUnavailable::NodeLimits => "each node applies cluster-wide limits by itself",
                WhenUnavailable::Reject => "requests under cluster-wide limits are refused (503)",
            };
            log::warn!(
                "cluster {}: Redis at {} is unavailable ({why}); {fallback} until it answers",
                self.settings.name,
                crate::config::cluster::redact_url(&self.settings.redis)
            );
        }
    }

    /// Redis answered again.
    pub fn came_back(&self) {
        if !self.available.swap(true, Relaxed) {
            self.counters.recovered.fetch_add(1, Relaxed);
            log::info!(
                "cluster {}: Redis answers again; cluster-wide limits resume",
                self.settings.name
            );
        }
    }

    /// The Redis key of a cached response (by its cache key's hash).
    pub fn cache_key(&self, hash: u64, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.clear();
        let _ = write!(out, "{}:c:{{{hash:016x}}}", self.settings.name);
    }

    /// The Redis key of `key` in the quota `table`.
    pub fn quota_key(&self, table: u64, key: u64, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.clear();
        let _ = write!(out, "{}:q:{table:016x}:{{{key:016x}}}", self.settings.name);
    }

    /// The Redis key of `key` in the limit table `table` (hash-tagged, so one key stays in
    /// one slot of a Redis Cluster).
    pub fn rate_key(&self, table: u64, key: u64, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.clear();
        let _ = write!(out, "{}:rl:{table:016x}:{{{key:016x}}}", self.settings.name);
    }
}

/// A cluster-wide quota's node-wide state and definition.
pub struct QuotaTable {
    pub rates: limits::NodeRates,
    pub id: u64,
    pub calls: Option<u64>,
    pub bytes: Option<u64>,
    pub period_ms: u64,
    pub start_ms: u64,
}

impl QuotaTable {
    pub fn new(d: &crate::config::QuotaDef, workers: usize) -> QuotaTable {
        let period_ms = d.period.as_millis().max(1) as u64;
        // Without a calls limit, leases still batch calls (bandwidth is checked per lease).
        let calls = d.calls.unwrap_or(20_000);
        QuotaTable {
            rates: limits::NodeRates::new(calls, period_ms, workers, d.max_keys),
            id: table_id(&d.id, d.calls.unwrap_or(0), d.period),
            calls: d.calls,
            bytes: d.bandwidth,
            period_ms,
            start_ms: d.first_period_start_ms,
        }
    }

    /// The period `now_unix_ms` falls in, and the ms until it ends.
    pub fn period(&self, now_unix_ms: u64) -> (i64, u64) {
        let since = i128::from(now_unix_ms) - i128::from(self.start_ms);
        let p = since.div_euclid(i128::from(self.period_ms));
        let ends = i128::from(self.start_ms) + (p + 1) * i128::from(self.period_ms);
        (p as i64, (ends - i128::from(now_unix_ms)).max(1) as u64)
    }
}

/// A cluster-wide limit's id in Redis: the same on every node for the same definition.
pub fn table_id(origin: &str, calls: u64, period: Duration) -> u64 {
    crate::control::labels::name_key(format!("{origin}|{calls}|{}", period.as_millis()).as_bytes())
}

/// One core's end of the cluster: its own Redis connection (driven by its runtime) and
/// scratch for key names.
pub struct Core {
    pub node: Arc<Node>,
    pub client: redis::RedisClient,
    key_buf: std::cell::RefCell<Vec<u8>>,
    /// When this core last probed an unavailable Redis, and whether a probe is out.
    probed: Cell<Option<Instant>>,
    probing: Rc<Cell<bool>>,
    /// When this core last gave back idle grants.
    swept: Cell<Option<Instant>>,
}

impl Core {
    pub fn new(node: &Arc<Node>) -> Rc<Core> {
        Rc::new(Core {
            client: redis::RedisClient::new(&node.settings.client),
            node: Arc::clone(node),
            key_buf: Default::default(),
            probed: Cell::new(None),
            probing: Rc::default(),
            swept: Cell::new(None),
        })
    }

    /// The worker's tick: while Redis is unavailable, probe it once a second.
    pub fn tick(self: &Rc<Core>, now: Instant) {
        if self.node.available() || self.probing.get() {
            return;
        }
        if self
            .probed
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < PROBE_EVERY)
        {
            return;
        }
        self.probed.set(Some(now));
        self.probing.set(true);
        let core = Rc::clone(self);
        monoio::spawn(async move {
            core.probe().await;
            core.probing.set(false);
        });
    }

    /// Leases `want` tokens of `key` in the cluster-wide limit `table` from Redis, and records
    /// the answer in the node's line. False when Redis could not be asked (the caller falls
    /// back).
    pub async fn lease(&self, rates: &limits::NodeRates, table: u64, key: u64, want: u64) -> bool {
        let counters = &self.node.counters;
        counters.leases.fetch_add(1, Relaxed);
        let mut name = std::mem::take(&mut *self.key_buf.borrow_mut());
        self.node.rate_key(table, key, &mut name);
        let (limit, period, want_s) = (
            rates.limit.to_string(),
            rates.period_ms.to_string(),
            want.to_string(),
        );
        let reply = self
            .client
            .eval_sha(
                &LEASE,
                &[&name[..]],
                &[limit.as_bytes(), period.as_bytes(), want_s.as_bytes()],
            )
            .await;
        *self.key_buf.borrow_mut() = name;
        let now = crate::policy::run::mono_ms(Instant::now());
        let backing_off = backing_off(&reply);
        let parsed = reply.ok().and_then(|v| {
            let a = v.as_array()?;
            Some((
                a.first()?.as_int()?,
                a.get(2)?.as_int()?,
                a.get(3)?.as_int()?,
                a.get(4).and_then(redis::Value::as_int).unwrap_or(0),
            ))
        });
        match parsed {
            Some((granted, spend_within, frees_in, window)) => {
                self.node.came_back();
                let granted = granted.max(0) as u64;
                rates.granted(
                    key,
                    granted,
                    now + spend_within.max(0) as u64,
                    now + frees_in.max(1) as u64,
                    now,
                    window.max(0) as u64,
                );
                true
            }
            None => {
                counters.lease_errors.fetch_add(1, Relaxed);
                rates.lease_failed(key);
                if !backing_off {
                    self.node.went_away("a lease call failed or timed out");
                }
                false
            }
        }
    }

    /// Leases `want` calls of `key` in the cluster-wide quota `q` from Redis, and records the
    /// answer in the node's line. False when Redis could not be asked.
    pub async fn lease_quota(&self, q: &QuotaTable, key: u64, want: u64) -> bool {
        let counters = &self.node.counters;
        counters.leases.fetch_add(1, Relaxed);
        let now_unix = crate::policy::run::unix_ms();
        let (period, ends_in) = q.period(now_unix);
        let mut name = std::mem::take(&mut *self.key_buf.borrow_mut());
        self.node.quota_key(q.id, key, &mut name);
        let args = [
            q.calls.unwrap_or(0).to_string(),
            q.bytes.unwrap_or(0).to_string(),
            period.to_string(),
            want.to_string(),
            (ends_in + q.period_ms).to_string(),
        ];
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply = self.client.eval_sha(&QUOTA, &[&name[..]], &args).await;
        *self.key_buf.borrow_mut() = name;
        let now = crate::policy::run::mono_ms(Instant::now());
        let backing_off = backing_off(&reply);
        let granted = reply.ok().and_then(|v| v.as_array()?.first()?.as_int());
        match granted {
            Some(granted) => {
                self.node.came_back();
                let until = now + ends_in;
                q.rates
                    .granted(key, granted.max(0) as u64, until, until, now, 0);
                true
            }
            None => {
                counters.lease_errors.fetch_add(1, Relaxed);
                q.rates.lease_failed(key);
                if !backing_off {
                    self.node
                        .went_away("a quota lease call failed or timed out");
                }
                false
            }
        }
    }

    /// Counts `bytes` of responses against `key` in the cluster-wide quota `q`.
    pub async fn add_quota_bytes(&self, q: &QuotaTable, key: u64, bytes: u64) {
        let now_unix = crate::policy::run::unix_ms();
        let (period, ends_in) = q.period(now_unix);
        let mut name = Vec::new();
        self.node.quota_key(q.id, key, &mut name);
        let args = [
            period.to_string(),
            bytes.to_string(),
            (ends_in + q.period_ms).to_string(),
        ];
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply = self
            .client
            .eval_sha(&QUOTA_BYTES, &[&name[..]], &args)
            .await;
        if reply.is_err() {
            self.node.counters.lease_errors.fetch_add(1, Relaxed);
            if !backing_off(&reply) {
                self.node.went_away("counting quota bytes failed");
            }
        }
    }

    /// The shared cache tier's entry for `key` (whose hash is `hash`), if Redis holds one.
    pub async fn cache_get(&self, hash: u64, key: &[u8]) -> Option<cache::Entry> {
        let mut name = Vec::new();
        self.node.cache_key(hash, &mut name);
        match self.client.call(&[b"GET", &name]).await {
            Ok(v) => {
                self.node.came_back();
                let bytes = v.as_bytes()?;
                let entry = cache::decode(bytes, key, crate::policy::run::unix_ms());
                self.node
                    .counters
                    .tier_hits
                    .fetch_add(u64::from(entry.is_some()), Relaxed);
                entry
            }
            Err(e) => {
                log::debug!("cluster cache tier: GET failed: {e}");
                None
            }
        }
    }

    /// Stores a response in the shared cache tier too (in the background), unless its body is
    /// over the tier's size.
    pub fn cache_put(
        self: &Rc<Core>,
        hash: u64,
        key: &[u8],
        status: u16,
        headers: &[u8],
        body: &[u8],
        ttl: Duration,
    ) {
        let Some(max) = self.node.settings.cache else {
            return;
        };
        if body.len() > max || !self.node.available() || ttl.is_zero() {
            return;
        }
        let value = cache::encode(
            key,
            status,
            headers,
            body,
            ttl,
            crate::policy::run::unix_ms(),
        );
        let mut name = Vec::new();
        self.node.cache_key(hash, &mut name);
        let core = Rc::clone(self);
        monoio::spawn(async move {
            let ms = ttl.as_millis().max(1).to_string();
            if let Err(e) = core
                .client
                .call(&[b"SET", &name, &value, b"PX", ms.as_bytes()])
                .await
            {
                log::debug!("cluster cache tier: SET failed: {e}");
            }
        });
    }

    /// Gives back to Redis the credit of keys that went quiet (see
    /// [`limits::NodeRates::reclaim`]), so that other nodes may lease it.
    pub fn give_back_idle(
        self: &Rc<Core>,
        rates: &Arc<limits::NodeRates>,
        table: u64,
        now_ms: u64,
    ) {
        let mut idle = Vec::new();
        // Two sub-windows without a lease.
        rates.reclaim(now_ms, (rates.period_ms / 8).max(1), &mut idle);
        if idle.is_empty() || !self.node.available() {
            return;
        }
        let core = Rc::clone(self);
        monoio::spawn(async move {
            let mut name = Vec::new();
            for (key, tokens, window) in idle {
                core.node.rate_key(table, key, &mut name);
                let (w, n) = (window.to_string(), tokens.to_string());
                if core
                    .client
                    .eval_sha(&RETURN, &[&name[..]], &[w.as_bytes(), n.as_bytes()])
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }

    /// Whether this core's once-a-second sweep of idle grants is due.
    pub fn sweep_due(&self, now: Instant) -> bool {
        if self
            .swept
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < PROBE_EVERY)
        {
            return false;
        }
        self.swept.set(Some(now));
        true
    }

    /// Checks whether Redis answers (the worker's probe while it is unavailable).
    pub async fn probe(&self) {
        match self.client.call(&[b"PING"]).await {
            Ok(_) => self.node.came_back(),
            Err(e) => log::debug!(
                "cluster {}: Redis probe failed: {e}",
                self.node.settings.name
            ),
        }
    }
}

/// How often a core probes an unavailable Redis.
const PROBE_EVERY: Duration = Duration::from_secs(1);

static LEASE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(limits::LEASE_SCRIPT));
static RETURN: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(limits::RETURN_SCRIPT));
static QUOTA: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(limits::QUOTA_SCRIPT));
static QUOTA_BYTES: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(limits::QUOTA_BYTES_SCRIPT));
