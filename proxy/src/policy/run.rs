//! Running a pipeline for one request: the per-core policy state, the per-request
//! [`Exchange`], and the sections as functions the connection loop calls.
//!
//! The inbound section runs synchronously to an [`Inbound`] outcome (go on, answer now, serve
//! from the cache, or wait for a fetch of the same key on this core). The outbound section runs
//! when the response head is in, before it is written; `on_error` runs on any answer the
//! gateway makes because something failed (a limit, the backend). [`Exchange::settle`] runs
//! once the answer is out: it gives back calls that did not count (`increment_condition`),
//! counts bandwidth, and releases concurrency slots and cache flights.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::cache::{
    self, CacheStore, Coalescer, Hit, Leader, PurgeHub, PurgeInbox, Role, ValueStore, Waiter,
};
use super::limit::{
    ConcurrencySpec, LocalConcurrency, LocalQuota, LocalWindow, QuotaSpec, RateDecision, RateSpec,
    SharedConcurrency, SharedQuota, SharedWindow,
};
use super::template::Request;
use super::{auth, Edits, Pipeline, Policy, Respond, StatusRanges};
use crate::config::Config;
use crate::route::{HeaderLookup, Route};

/// Node-wide policy state, shared by every worker: the limit tables and the purge hub.
pub struct NodePolicies {
    pub rate: Vec<(Arc<SharedWindow>, RateSpec)>,
    pub quota: Vec<(Arc<SharedQuota>, QuotaSpec, String)>,
    pub concurrency: Vec<(Arc<SharedConcurrency>, ConcurrencySpec)>,
    pub purge: Arc<PurgeHub>,
    /// Cache fetches in progress on any core, so that a miss on one core waits for another's
    /// (none with one worker).
    pub flights: Option<Arc<cache::NodeFlights>>,
    /// `validate-jwt` keys fetched from URLs.
    pub jwks: Arc<auth::jwks::JwksHub>,
    /// Cluster mode: the node's view of Redis, and each cluster-wide rate limit's node lines
    /// and Redis id (by rate table; None for node-wide ones).
    pub cluster: Option<Arc<crate::cluster::Node>>,
    pub cluster_rate: Vec<Option<(Arc<crate::cluster::limits::NodeRates>, u64)>>,
    /// Each cluster-wide quota's node lines and definition (by quota table).
    pub cluster_quota: Vec<Option<Arc<crate::cluster::QuotaTable>>>,
    /// What the tables were built from, to match them on a reload.
    identity: Identity,
}

/// The definitions the tables were built from: a reload keeps a table (and its counters)
/// whose definition is the same, at the same worker count.
#[derive(Default)]
struct Identity {
    workers: usize,
    rate: Vec<String>,
    quota: Vec<String>,
    concurrency: Vec<String>,
    jwks: String,
}

impl Identity {
    fn of(config: &Config, workers: usize) -> Identity {
        let t = &config.policy_tables;
        Identity {
            workers,
            rate: t
                .rate
                .iter()
                .map(|d| {
                    format!(
                        "{}|{}|{:?}|{}|{}",
                        d.origin, d.calls, d.period, d.max_keys, d.cluster
                    )
                })
                .collect(),
            quota: t
                .quota
                .iter()
                .map(|d| {
                    format!(
                        "{}|{:?}|{:?}|{:?}|{}|{}|{}",
                        d.id,
                        d.calls,
                        d.bandwidth,
                        d.period,
                        d.first_period_start_ms,
                        d.max_keys,
                        d.cluster
                    )
                })
                .collect(),
            concurrency: t
                .concurrency
                .iter()
                .map(|d| format!("{}|{}|{}", d.origin, d.max_count, d.max_keys))
                .collect(),
            jwks: format!("{:?}", t.jwks),
        }
    }
}

impl NodePolicies {
    /// The tables for `config`, sized for `workers` cores, and each core's purge inbox.
    pub fn new(config: &Config, workers: usize) -> (Arc<NodePolicies>, Vec<PurgeInbox>) {
        let t = &config.policy_tables;
        let rate = t
            .rate
            .iter()
            .map(|d| {
                let spec = RateSpec {
                    calls: d.calls,
                    period: d.period,
                    workers,
                    max_keys: d.max_keys,
                };
                (Arc::new(SharedWindow::new(&spec)), spec)
            })
            .collect();
        let quota = t
            .quota
            .iter()
            .map(|d| {
                let spec = QuotaSpec {
                    calls: d.calls,
                    bandwidth: d.bandwidth,
                    period: d.period,
                    first_period_start_ms: d.first_period_start_ms,
                    workers,
                    max_keys: d.max_keys,
                };
                (Arc::new(SharedQuota::new(&spec)), spec, d.id.clone())
            })
            .collect();
        let concurrency = t
            .concurrency
            .iter()
            .map(|d| {
                let spec = ConcurrencySpec {
                    max_count: d.max_count,
                    workers,
                    max_keys: d.max_keys,
                };
                (Arc::new(SharedConcurrency::new(&spec)), spec)
            })
            .collect();
        let (purge, inboxes) = PurgeHub::new(workers);
        (
            Arc::new(NodePolicies {
                rate,
                quota,
                concurrency,
                purge,
                flights: (workers > 1).then(Arc::default),
                jwks: auth::jwks::JwksHub::new(&t.jwks),
                cluster: config.cluster.clone().map(crate::cluster::Node::new),
                cluster_rate: t
                    .rate
                    .iter()
                    .map(|d| {
                        d.cluster.then(|| {
                            (
                                Arc::new(crate::cluster::limits::NodeRates::new(
                                    d.calls,
                                    d.period.as_millis() as u64,
                                    workers,
                                    d.max_keys,
                                )),
                                crate::cluster::table_id(&d.origin, d.calls, d.period),
                            )
                        })
                    })
                    .collect(),
                cluster_quota: t
                    .quota
                    .iter()
                    .map(|d| {
                        d.cluster
                            .then(|| Arc::new(crate::cluster::QuotaTable::new(d, workers)))
                    })
                    .collect(),
                identity: Identity::of(config, workers),
            }),
            inboxes,
        )
    }

    /// The tables for a reloaded `config`: each table whose definition is unchanged is the
    /// old one, counters and all; the purge hub and cache flights are the node's, kept.
    /// Fetched `validate-jwt` keys are kept while their sources are the same; new sources are
    /// fetched (call [`auth::jwks::JwksHub::start`]; `true` here says it is needed).
    pub fn next(old: &NodePolicies, config: &Config) -> (Arc<NodePolicies>, bool) {
        let workers = old.identity.workers;
        let (fresh, _) = NodePolicies::new(config, workers);
        let mut fresh = Arc::into_inner(fresh).expect("not shared yet");
        let identity = std::mem::take(&mut fresh.identity);
        let keep = |mine: &str, theirs: &[String]| theirs.iter().position(|t| t == mine);
        for (i, id) in identity.rate.iter().enumerate() {
            if let Some(o) = keep(id, &old.identity.rate) {
                fresh.rate[i].0 = Arc::clone(&old.rate[o].0);
                fresh.cluster_rate[i].clone_from(&old.cluster_rate[o]);
            }
        }
        for (i, id) in identity.quota.iter().enumerate() {
            if let Some(o) = keep(id, &old.identity.quota) {
                fresh.quota[i].0 = Arc::clone(&old.quota[o].0);
                fresh.cluster_quota[i].clone_from(&old.cluster_quota[o]);
            }
        }
        for (i, id) in identity.concurrency.iter().enumerate() {
            if let Some(o) = keep(id, &old.identity.concurrency) {
                fresh.concurrency[i].0 = Arc::clone(&old.concurrency[o].0);
            }
        }
        let same_keys = identity.jwks == old.identity.jwks;
        if same_keys {
            fresh.jwks = Arc::clone(&old.jwks);
        }
        fresh.purge = Arc::clone(&old.purge);
        // The same Redis: keep its availability state and counters.
        if let (Some(new), Some(old)) = (&fresh.cluster, &old.cluster) {
            if format!("{:?}", new.settings) == format!("{:?}", old.settings) {
                fresh.cluster = Some(Arc::clone(old));
            }
        }
        fresh.flights = old.flights.clone();
        fresh.identity = identity;
        (Arc::new(fresh), !same_keys)
    }
}

/// One core's policy state.
pub struct WorkerPolicies {
    // Shared (`Rc`) with the next configuration's state when a reload keeps them.
    rate: Vec<Rc<RefCell<LocalWindow>>>,
    quota: Vec<Rc<RefCell<LocalQuota>>>,
    concurrency: Vec<Rc<RefCell<LocalConcurrency>>>,
    pub cache: Rc<RefCell<CacheStore>>,
    pub values: Rc<RefCell<ValueStore>>,
    pub flights: Rc<Coalescer>,
    node_flights: Option<Arc<cache::NodeFlights>>,
    /// Tokens `validate-jwt` verified on this core.
    pub tokens: RefCell<auth::jwt::TokenCache>,
    /// This core's copy of the fetched `validate-jwt` keys.
    pub jwks: auth::jwks::LocalKeys,
    /// Spare iovec arrays for writing a cached head and body in one `writev`.
    pub iovecs: RefCell<Vec<Vec<libc::iovec>>>,
    /// Each `retry` policy's budget on this core.
    pub retry_budgets: Vec<RefCell<crate::upstream::RetryBudget>>,
    /// Cluster mode: this core's Redis connection, and its tokens of each cluster-wide rate
    /// limit (by rate table).
    pub cluster: Option<Rc<crate::cluster::Core>>,
    cluster_quota: Vec<
        Option<(
            Rc<crate::cluster::limits::CoreTokens>,
            Arc<crate::cluster::QuotaTable>,
        )>,
    >,
    /// Response bytes counted against cluster-wide quotas, not yet sent to Redis: (quota
    /// table, key, bytes).
    cluster_bytes: RefCell<Vec<(usize, u64, u64)>>,
    #[allow(clippy::type_complexity)]
    cluster_tokens: Vec<
        Option<(
            Rc<crate::cluster::limits::CoreTokens>,
            Arc<crate::cluster::limits::NodeRates>,
            u64,
        )>,
    >,
    purge: Rc<PurgeInbox>,
    /// The cache sizes the stores were made with.
    cache_sizes: crate::config::CacheSettings,
    /// Shadow-mode refusals and other policy events are logged at most once a second each.
    pub(crate) shadow_log: crate::server::LogLimit,
}

/// Verified tokens each core keeps.
const TOKEN_CACHE_ENTRIES: usize = 4096;

/// Sweep work per tick, in entries.
const SWEEP_BUDGET: usize = 256;

impl WorkerPolicies {
    pub fn new(node: &NodePolicies, config: &Config, purge: PurgeInbox) -> WorkerPolicies {
        WorkerPolicies {
            rate: node
                .rate
                .iter()
                .map(|(s, spec)| Rc::new(RefCell::new(LocalWindow::new(Arc::clone(s), spec))))
                .collect(),
            quota: node
                .quota
                .iter()
                .map(|(s, spec, _)| Rc::new(RefCell::new(LocalQuota::new(Arc::clone(s), spec))))
                .collect(),
            concurrency: node
                .concurrency
                .iter()
                .map(|(s, spec)| Rc::new(RefCell::new(LocalConcurrency::new(Arc::clone(s), spec))))
                .collect(),
            cache: Rc::new(RefCell::new(CacheStore::new(
                config.cache.max_bytes,
                config.cache.max_entry_bytes,
            ))),
            values: Rc::new(RefCell::new(ValueStore::new(
                config.cache.max_value_bytes,
                config.cache.max_value_bytes,
            ))),
            flights: Rc::default(),
            node_flights: node.flights.clone(),
            iovecs: RefCell::new(Vec::new()),
            tokens: RefCell::new(auth::jwt::TokenCache::new(TOKEN_CACHE_ENTRIES)),
            jwks: auth::jwks::LocalKeys::new(&node.jwks),
            retry_budgets: config
                .policy_tables
                .retry
                .iter()
                .map(|spec| {
                    RefCell::new(crate::upstream::RetryBudget::for_spec(spec, Instant::now()))
                })
                .collect(),
            purge: Rc::new(purge),
            cluster: node.cluster.as_ref().map(crate::cluster::Core::new),
            cluster_quota: node
                .cluster_quota
                .iter()
                .map(|c| c.as_ref().map(|q| (Rc::default(), Arc::clone(q))))
                .collect(),
            cluster_bytes: RefCell::default(),
            cluster_tokens: node
                .cluster_rate
                .iter()
                .map(|c| {
                    c.as_ref()
                        .map(|(rates, id)| (Rc::default(), Arc::clone(rates), *id))
                })
                .collect(),
            cache_sizes: config.cache,
            shadow_log: crate::server::LogLimit::default(),
        }
    }

    /// This core's state for a reloaded configuration (`node` from [`NodePolicies::next`]):
    /// the local shard of every table the reload kept, the caches (when their sizes are the
    /// same), the cache flights and the purge inbox carry over. Verified tokens do not: the
    /// keys they were verified with may have changed.
    pub fn next(&self, old_node: &NodePolicies, node: &NodePolicies, config: &Config) -> Self {
        let mut next = WorkerPolicies {
            rate: Vec::new(),
            quota: Vec::new(),
            concurrency: Vec::new(),
            ..WorkerPolicies::new(node, config, PurgeInbox::detached())
        };
        let find = |shared: *const u8, olds: &[*const u8]| olds.iter().position(|&o| o == shared);
        let old_rate: Vec<*const u8> = old_node
            .rate
            .iter()
            .map(|(s, _)| Arc::as_ptr(s).cast())
            .collect();
        next.rate = node
            .rate
            .iter()
            .map(|(s, spec)| match find(Arc::as_ptr(s).cast(), &old_rate) {
                Some(o) => Rc::clone(&self.rate[o]),
                None => Rc::new(RefCell::new(LocalWindow::new(Arc::clone(s), spec))),
            })
            .collect();
        for (i, q) in node.cluster_quota.iter().enumerate() {
            let Some(q) = q else { continue };
            let kept = self
                .cluster_quota
                .iter()
                .flatten()
                .find(|(_, old)| Arc::ptr_eq(old, q));
            if let Some((tokens, _)) = kept {
                next.cluster_quota[i] = Some((Rc::clone(tokens), Arc::clone(q)));
            }
        }
        for (i, (s, _)) in node.rate.iter().enumerate() {
            if let Some(o) = find(Arc::as_ptr(s).cast(), &old_rate) {
                if next.cluster_tokens[i].is_some() {
                    next.cluster_tokens[i].clone_from(&self.cluster_tokens[o]);
                }
            }
        }
        if let (Some(new), Some(old)) = (&node.cluster, &self.cluster) {
            if Arc::ptr_eq(new, &old.node) {
                next.cluster = Some(Rc::clone(old));
            }
        }
        let old_quota: Vec<*const u8> = old_node
            .quota
            .iter()
            .map(|(s, ..)| Arc::as_ptr(s).cast())
            .collect();
        next.quota = node
            .quota
            .iter()
            .map(
                |(s, spec, _)| match find(Arc::as_ptr(s).cast(), &old_quota) {
                    Some(o) => Rc::clone(&self.quota[o]),
                    None => Rc::new(RefCell::new(LocalQuota::new(Arc::clone(s), spec))),
                },
            )
            .collect();
        let old_concurrency: Vec<*const u8> = old_node
            .concurrency
            .iter()
            .map(|(s, _)| Arc::as_ptr(s).cast())
            .collect();
        next.concurrency = node
            .concurrency
            .iter()
            .map(
                |(s, spec)| match find(Arc::as_ptr(s).cast(), &old_concurrency) {
                    Some(o) => Rc::clone(&self.concurrency[o]),
                    None => Rc::new(RefCell::new(LocalConcurrency::new(Arc::clone(s), spec))),
                },
            )
            .collect();
        if self.cache_sizes == config.cache {
            next.cache = Rc::clone(&self.cache);
            next.values = Rc::clone(&self.values);
        }
        next.flights = Rc::clone(&self.flights);
        next.purge = Rc::clone(&self.purge);
        next
    }

    /// The worker's periodic upkeep: returns unused leases, applies purges, sweeps caches.
    pub fn tick(&self, now: Instant) {
        let ms = mono_ms(now);
        for r in &self.rate {
            r.borrow_mut().tick(ms);
        }
        if !self.quota.is_empty() {
            let unix = unix_ms();
            for q in &self.quota {
                q.borrow_mut().tick(unix);
            }
        }
        for c in &self.concurrency {
            c.borrow_mut().tick();
        }
        if let Some(core) = &self.cluster {
            core.tick(now);
            if core.sweep_due(now) {
                let ms = mono_ms(now);
                for (_, rates, id) in self.cluster_tokens.iter().flatten() {
                    core.give_back_idle(rates, *id, ms);
                }
            }
            let pending = std::mem::take(&mut *self.cluster_bytes.borrow_mut());
            if !pending.is_empty() {
                let sends: Vec<_> = pending
                    .into_iter()
                    .filter_map(|(table, key, bytes)| {
                        let (_, q) = self.cluster_quota.get(table)?.as_ref()?;
                        Some((Arc::clone(q), key, bytes))
                    })
                    .collect();
                let core = Rc::clone(core);
                monoio::spawn(async move {
                    for (q, key, bytes) in sends {
                        core.add_quota_bytes(&q, key, bytes).await;
                    }
                });
            }
        }
        let mut cache = self.cache.borrow_mut();
        let mut values = self.values.borrow_mut();
        self.purge.apply(&mut (&mut *cache, &mut *values));
        cache.sweep(now, SWEEP_BUDGET);
        values.sweep(now, SWEEP_BUDGET);
    }
}

/// Milliseconds on the monotonic clock, from a process-wide origin.
pub fn mono_ms(now: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| now - Duration::from_secs(1));
    now.saturating_duration_since(origin).as_millis() as u64
}

/// Milliseconds since the Unix epoch (quota periods are aligned to calendar time).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Something a request holds until its answer is out.
#[derive(Clone, Copy, Debug)]
enum Held {
    Rate {
        index: usize,
        key: u64,
        n: u32,
        /// The policy's position in the inbound section.
        pos: usize,
        /// When the call was admitted: a call given back returns to the sub-window it was
        /// counted in.
        at_ms: u64,
    },
    Quota {
        index: usize,
        key: u64,
        /// The policy's position in the inbound section.
        pos: usize,
        at_unix_ms: u64,
    },
    Concurrency {
        index: usize,
        key: u64,
    },
}

/// What the cache did for this request.
#[derive(Default)]
pub struct CacheState {
    /// `X-Cache` to send, if a lookup ran.
    pub x_cache: Option<cache::XCache>,
    /// What the lookup found, for metrics (kept after `X-Cache` is written): 0 no lookup,
    /// 1 a hit, 2 a miss.
    pub outcome: u8,
    /// The cluster's shared cache tier was looked in for this request.
    pub tier_checked: bool,
    /// The key looked up and missed, for `cache-store`.
    pub key: Vec<u8>,
    pub hash: u64,
    pub missed: bool,
    /// Where the lookup stands in the inbound section (its `vary_by_header` decides which
    /// responses' `Vary` the key covers).
    pub lookup_pos: usize,
    /// This request fetches for the waiters on its key.
    pub leader: Option<Leader>,
    /// ... and for the other cores' waiters.
    pub node_leader: Option<cache::NodeLeader>,
    /// This request waited for another's fetch: on a second miss it goes to the backend
    /// itself, without a new flight.
    pub waited: bool,
    /// Set by `cache-store` when the response may be stored, for this long.
    pub store_for: Option<Duration>,
}

/// The per-request state of a pipeline run, kept by the connection and reused.
#[derive(Default)]
pub struct Exchange {
    /// Header edits of the request to the backend.
    pub request: Edits,
    /// Header edits of the answer to the client.
    pub response: Edits,
    /// The new request target (path and query), when a policy changed it.
    pub target: Vec<u8>,
    pub target_set: bool,
    /// The backend a policy chose.
    pub backend: Option<usize>,
    /// `set-status`: the status and reason the client gets instead.
    pub status: Option<u16>,
    pub reason: Vec<u8>,
    pub vars: Vec<Option<Bytes>>,
    /// Spans of the operation's path parameters in the request path.
    pub params: Vec<(u32, u32)>,
    pub cache: CacheState,
    /// The most restrictive rate limit seen, for the `RateLimit-*` headers.
    rate: Option<RateDecision>,
    held: Vec<Held>,
    scratch: Vec<u8>,
    tmp: Vec<u8>,
    /// The request failed in a policy or at the backend: `on_error` ran.
    pub failed: bool,
    /// Body bytes the exchange moved both ways (for bandwidth quotas).
    pub bytes: u64,
    /// `request-size-limit`: the largest request body this request may send.
    pub max_body: Option<u64>,
    /// The claims of the token `validate-jwt` verified.
    pub claims: Option<std::rc::Rc<auth::jwt::Verified>>,
    /// `WWW-Authenticate` for a refused token.
    pub www_authenticate: Option<&'static str>,
    /// The id of the subscription the request's key belongs to; empty without one. Copied
    /// here (into a buffer the exchange keeps) by the subscription check, so templates read it
    /// without reaching back into the configuration.
    pub subscription: Vec<u8>,
    /// The name of the product the request was admitted under; empty without one.
    pub product: Vec<u8>,
    /// The request waited once for fetched keys (its token's kid was unknown).
    pub jwt_waited: bool,
    /// Why a limit refused the request, for metrics: 0 none, 1 rate, 2 quota, 3 concurrency.
    pub rejected: u8,
    /// Waits this request made for cluster leases.
    pub cluster_waits: u16,
}

/// What the inbound section decided.
pub enum Inbound<'p> {
    /// Forward to the backend.
    Continue,
    /// `return-response` / `mock-response`.
    Respond(&'p Respond),
    /// A limit refused the request.
    Refuse(Refusal),
    /// The cache has the answer.
    Hit(Hit),
    /// Another request on this core is fetching this key: wait, then run again from
    /// policy `resume` (the lookup itself).
    Wait(Waiter, usize),
    /// Another core is fetching this key: wait for its flight, take what it stored, then run
    /// again from policy `resume`.
    WaitNode(Arc<cache::NodeFlight>, usize),
    /// The token names a key that `validate-jwt`'s fetched keys lack, and a refresh was asked
    /// for: wait for it (at most `auth::jwks::KID_WAIT`), then run again from policy `resume`.
    WaitKeys(auth::jwks::KeyWait, usize),
    /// A cluster-wide rate limit needs tokens from Redis: lease them (or wait for another
    /// core's lease), then run again from policy `resume`.
    WaitCluster(ClusterWait, usize),
}

/// A cluster-wide limit's answer for one request.
enum Cluster<D> {
    Decided(D),
    /// Decide with the node's own window.
    Local,
    Wait(ClusterWait),
    /// Redis is unavailable and the cluster refuses meanwhile.
    Unavailable,
}

/// How long a request waits before looking again at a key another core is leasing.
const CLUSTER_POLL: Duration = Duration::from_millis(1);

/// Waits one request makes for cluster leases before its limits decide by themselves (the
/// leases time out well before: this bounds a pathological loop).
const MAX_CLUSTER_WAITS: u16 = 2_000;

/// What a request waits for under a cluster-wide rate limit.
#[derive(Debug)]
pub enum ClusterWait {
    /// This core leases for the key of rate table `table`.
    Lease { table: usize, key: u64, want: u64 },
    /// This core leases for the key of quota table `table`.
    LeaseQuota { table: usize, key: u64, want: u64 },
    /// A local cache miss looks in the cluster's shared tier.
    CacheGet,
    /// Another core is leasing for the key: look again shortly.
    Poll,
}

/// A policy's refusal: status, APIM's message, `Retry-After` seconds.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub retry_after: Option<u64>,
}

/// What the policies read from the request.
pub struct Ctx<'a, H: HeaderLookup> {
    pub ip: &'a [u8],
    pub method: &'a [u8],
    pub host: &'a [u8],
    pub path: &'a [u8],
    pub query: &'a [u8],
    /// The request target as sent (path and query).
    pub target: &'a [u8],
    pub headers: H,
    pub route: &'a Route,
    pub now: Instant,
    /// The connection's verified TLS client certificate, if any.
    pub client_cert: Option<&'a crate::tls::ClientCert>,
}

/// The request's headers once they have gone to the backend (outbound and `on_error`
/// templates read none).
#[derive(Clone, Copy)]
pub struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn get(&self, _: &[u8]) -> Option<&[u8]> {
        None
    }
}

impl<'a> Ctx<'a, NoHeaders> {
    /// What outbound policies and `on_error` see: the route and the client, not the request.
    pub fn after_forward(ip: &'a [u8], route: &'a Route, now: Instant) -> Self {
        Ctx {
            ip,
            method: b"",
            host: b"",
            path: b"",
            query: b"",
            target: b"",
            headers: NoHeaders,
            route,
            now,
            client_cert: None,
        }
    }
}

impl Exchange {
    /// Readies the exchange for a new request of `route`.
    pub fn begin<H: HeaderLookup>(&mut self, vars: usize, ctx: &Ctx<'_, H>) {
        self.request.clear();
        self.response.clear();
        self.target.clear();
        self.target_set = false;
        self.backend = None;
        self.rejected = 0;
        self.cluster_waits = 0;
        self.status = None;
        self.reason.clear();
        self.vars.clear();
        self.vars.resize(vars, None);
        self.params.clear();
        if let Some(t) = &ctx.route.params {
            t.capture(ctx.path, &mut self.params);
        }
        self.cache.x_cache = None;
        self.cache.outcome = 0;
        self.cache.tier_checked = false;
        self.cache.missed = false;
        self.cache.leader = None;
        self.cache.node_leader = None;
        self.cache.waited = false;
        self.cache.store_for = None;
        self.bytes = 0;
        self.max_body = None;
        self.claims = None;
        self.subscription.clear();
        self.product.clear();
        self.jwt_waited = false;
        self.jwt_waited = false;
        self.subscription.clear();
        self.product.clear();
        self.rate = None;
        self.held.clear();
        self.failed = false;
    }

    fn render<H: HeaderLookup>(&self, t: &super::Template, ctx: &Ctx<'_, H>, out: &mut Vec<u8>) {
        let req = Request {
            ip: ctx.ip,
            query: self.current_query(ctx),
            headers: &ctx.headers,
            api: &ctx.route.api,
            operation: &ctx.route.operation,
            vars: &self.vars,
            path: ctx.path,
            path_params: &self.params,
            claims: self.claims.as_deref(),
            subscription: &self.subscription,
            product: &self.product,
            client_cert: ctx.client_cert,
        };
        t.render(&req, out);
    }

    fn current_query<'s, H: HeaderLookup>(&'s self, ctx: &Ctx<'s, H>) -> &'s [u8] {
        if self.target_set {
            match self.target.iter().position(|&b| b == b'?') {
                Some(q) => &self.target[q + 1..],
                None => b"",
            }
        } else {
            ctx.query
        }
    }

    /// Renders `t` and hashes it, for a limit's counter key.
    fn key_of<H: HeaderLookup>(&mut self, t: &super::Template, ctx: &Ctx<'_, H>) -> u64 {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        self.render(t, ctx, &mut out);
        let h = cache::key_hash(&out);
        self.scratch = out;
        h
    }

    /// Runs the inbound section from policy `from`.
    pub fn inbound<'p, H: HeaderLookup>(
        &mut self,
        pipe: &'p Pipeline,
        from: usize,
        w: &WorkerPolicies,
        ctx: &Ctx<'_, H>,
    ) -> Inbound<'p> {
        for (i, policy) in pipe.inbound.iter().enumerate().skip(from) {
            match policy {
                Policy::SetHeader(s) => {
                    let original = ctx.headers.get(&s.lower).is_some();
                    self.set_header(s, false, original, ctx);
                }
                Policy::SetQuery(s) => self.set_query(s, ctx),
                Policy::RewriteUri(r) => self.rewrite_uri(r, ctx),
                Policy::Respond(r) => {
                    self.respond_headers(r, ctx);
                    return Inbound::Respond(r);
                }
                Policy::SetBackend(b) => self.backend = Some(*b),
                Policy::SetStatus { .. } | Policy::CacheStore(_) | Policy::Retry(_) => {}
                Policy::RateLimit(l) => {
                    let key = self.key_of(&l.key, ctx);
                    let (n, at) = (l.increment_count, (i, ctx.now));
                    if let Some(stop) = self.rate_limit(l.index, key, n, at, l.shadow, &l.origin, w)
                    {
                        return stop;
                    }
                }
                Policy::SubscriptionRateLimit(r) => {
                    // A request without a subscription is not limited by `rate-limit`.
                    if self.subscription.is_empty() {
                        continue;
                    }
                    let key = cache::key_hash(&self.subscription);
                    for limit in r.limits.iter() {
                        if !limit.applies(&ctx.route.api, &ctx.route.operation) {
                            continue;
                        }
                        let at = (i, ctx.now);
                        if let Some(stop) =
                            self.rate_limit(limit.index, key, 1, at, r.shadow, &r.origin, w)
                        {
                            return stop;
                        }
                    }
                }
                Policy::Quota(l) => {
                    let key = self.key_of(&l.key, ctx);
                    let now_unix = unix_ms();
                    let d = match self.cluster_quota(l.index, key, ctx.now, w) {
                        Cluster::Decided(d) => d,
                        Cluster::Local => w.quota[l.index].borrow_mut().acquire(key, now_unix),
                        Cluster::Wait(wait) => return Inbound::WaitCluster(wait, i),
                        Cluster::Unavailable => {
                            self.rejected = 2;
                            return Inbound::Refuse(Refusal {
                                status: 503,
                                message: "The quota service is unavailable.".to_string(),
                                retry_after: Some(1),
                            });
                        }
                    };
                    if d.admitted {
                        self.held.push(Held::Quota {
                            index: l.index,
                            key,
                            pos: i,
                            at_unix_ms: now_unix,
                        });
                    } else if l.shadow {
                        w.shadow_log.warn(
                            ctx.now,
                            format_args!("{}: would refuse with 403 (shadow mode)", l.origin),
                        );
                    } else {
                        let s = d.retry_after_secs.max(1);
                        let what = if d.calls_remaining == Some(0) {
                            "call volume"
                        } else {
                            "bandwidth"
                        };
                        self.rejected = 2;
                        return Inbound::Refuse(Refusal {
                            status: 403,
                            message: format!(
                                "Out of {what} quota. Quota will be replenished in {:02}:{:02}:{:02}.",
                                s / 3600,
                                s / 60 % 60,
                                s % 60
                            ),
                            retry_after: Some(s),
                        });
                    }
                }
                Policy::Concurrency(l) => {
                    let key = self.key_of(&l.key, ctx);
                    if w.concurrency[l.index].borrow_mut().acquire(key) {
                        self.held.push(Held::Concurrency {
                            index: l.index,
                            key,
                        });
                    } else if l.shadow {
                        w.shadow_log.warn(
                            ctx.now,
                            format_args!("{}: would refuse with 429 (shadow mode)", l.origin),
                        );
                    } else {
                        self.rejected = 3;
                        return Inbound::Refuse(Refusal {
                            status: 429,
                            message: "Too many concurrent requests.".to_string(),
                            retry_after: Some(1),
                        });
                    }
                }
                Policy::CacheLookup(c) => {
                    if let Some(outcome) = self.cache_lookup(c, i, w, ctx) {
                        return outcome;
                    }
                }
                Policy::LookupValue(l) => self.lookup_value(l, w, ctx),
                Policy::StoreValue(s) => self.store_value(s, w, ctx),
                Policy::RemoveValue(k) => self.remove_value(k, w, ctx),
                Policy::IpFilter(f) => {
                    let peer = std::str::from_utf8(ctx.ip)
                        .ok()
                        .and_then(|t| t.parse::<std::net::IpAddr>().ok());
                    let admitted = peer.is_some_and(|peer| {
                        let xff = ctx.headers.get(b"x-forwarded-for");
                        f.admits(auth::access::client_address(peer, xff, &f.trusted_proxies))
                    });
                    if !admitted {
                        return Inbound::Refuse(Refusal {
                            status: 403,
                            message: "Forbidden".to_string(),
                            retry_after: None,
                        });
                    }
                }
                Policy::CheckHeader(c) => {
                    if !c.passes(ctx.headers.get(&c.name)) {
                        return Inbound::Refuse(Refusal {
                            status: c.status,
                            message: c.message.to_string(),
                            retry_after: None,
                        });
                    }
                }
                Policy::Cors(c) => {
                    if let Some(answer) = self.cors(c, ctx) {
                        return answer;
                    }
                }
                Policy::ValidateJwt(v) => {
                    if let Some(stop) = self.validate_jwt(v, i, w, ctx) {
                        return stop;
                    }
                }
                Policy::ValidateClientCert(v) => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    if !v.passes(ctx.client_cert, now) {
                        return Inbound::Refuse(Refusal {
                            status: v.status,
                            message: v.message.to_string(),
                            retry_after: None,
                        });
                    }
                }
                Policy::RequestSizeLimit(max) => {
                    let declared = ctx
                        .headers
                        .get(b"content-length")
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    if declared.is_some_and(|n| n > *max) {
                        return Inbound::Refuse(Refusal {
                            status: 413,
                            message: format!(
                                "Request body is larger than the {max} bytes this API accepts."
                            ),
                            retry_after: None,
                        });
                    }
                    // A chunked body is held to the limit as it streams.
                    self.max_body = Some(self.max_body.map_or(*max, |m| m.min(*max)));
                }
            }
        }
        self.write_rate_headers();
        Inbound::Continue
    }

    /// Takes `n` calls for `key` from rate table `index` (the policy at inbound position
    /// `at.0`, at time `at.1`); the refusal when over the limit and not in shadow mode.
    #[allow(clippy::too_many_arguments)]
    fn rate_limit<'p>(
        &mut self,
        index: usize,
        key: u64,
        n: u32,
        at: (usize, Instant),
        shadow: bool,
        origin: &str,
        w: &WorkerPolicies,
    ) -> Option<Inbound<'p>> {
        let (pos, now) = at;
        let decision = match self.cluster_rate(index, key, n, now, w) {
            Cluster::Decided(d) => d,
            Cluster::Local => w.rate[index].borrow_mut().acquire_n(key, n, mono_ms(now)),
            Cluster::Wait(wait) => return Some(Inbound::WaitCluster(wait, pos)),
            Cluster::Unavailable => {
                self.rejected = 1;
                return Some(Inbound::Refuse(Refusal {
                    status: 503,
                    message: "The rate limit service is unavailable.".to_string(),
                    retry_after: Some(1),
                }));
            }
        };
        if self.rate.is_none_or(|r| decision.remaining < r.remaining) {
            self.rate = Some(decision);
        }
        if decision.admitted {
            self.held.push(Held::Rate {
                index,
                key,
                n,
                pos,
                at_ms: mono_ms(now),
            });
        } else if shadow {
            w.shadow_log.warn(
                now,
                format_args!("{origin}: would refuse with 429 (shadow mode)"),
            );
        } else {
            self.write_rate_headers();
            let secs = decision.reset_secs.max(1);
            self.rejected = 1;
            return Some(Inbound::Refuse(Refusal {
                status: 429,
                message: format!("Rate limit is exceeded. Try again in {secs} seconds."),
                retry_after: Some(secs),
            }));
        }
        None
    }

    /// A cluster-wide rate limit's decision: from this core's tokens, the node's line, or
    /// (by waiting) Redis; `Local` when the table is node-wide, or Redis is unavailable and
    /// nodes fall back to their own limits.
    fn cluster_rate(
        &mut self,
        index: usize,
        key: u64,
        n: u32,
        now: Instant,
        w: &WorkerPolicies,
    ) -> Cluster<super::limit::RateDecision> {
        let Some((tokens, rates, _)) = w.cluster_tokens.get(index).and_then(Option::as_ref) else {
            return Cluster::Local;
        };
        let lease = |want| ClusterWait::Lease {
            table: index,
            key,
            want,
        };
        let decide = |admitted, remaining, reset_ms: u64| super::limit::RateDecision {
            admitted,
            limit: rates.limit,
            remaining,
            reset_secs: reset_ms.div_ceil(1000).max(1),
        };
        self.cluster_take(
            w,
            tokens,
            rates,
            key,
            u64::from(n),
            now,
            rates.period_ms,
            lease,
            decide,
        )
    }

    /// A cluster-wide quota's decision, as [`Exchange::cluster_rate`] for rate limits.
    fn cluster_quota(
        &mut self,
        index: usize,
        key: u64,
        now: Instant,
        w: &WorkerPolicies,
    ) -> Cluster<super::limit::QuotaDecision> {
        let Some((tokens, q)) = w.cluster_quota.get(index).and_then(Option::as_ref) else {
            return Cluster::Local;
        };
        let (_, ends_in) = q.period(unix_ms());
        let lease = |want| ClusterWait::LeaseQuota {
            table: index,
            key,
            want,
        };
        let decide = |admitted, left, reset_ms: u64| super::limit::QuotaDecision {
            admitted,
            retry_after_secs: reset_ms.div_ceil(1000).max(1),
            calls_remaining: q.calls.map(|_| left),
        };
        self.cluster_take(w, tokens, &q.rates, key, 1, now, ends_in, lease, decide)
    }

    /// The three levels of a cluster-wide limit for `n` calls of `key`: this core's tokens,
    /// the node's line, then a lease from Redis (`lease` names it). `decide(admitted, tokens
    /// left, ms until reset)` makes the decision; `reset_ms` is the reset of an admission.
    #[allow(clippy::too_many_arguments)]
    fn cluster_take<D>(
        &mut self,
        w: &WorkerPolicies,
        tokens: &crate::cluster::limits::CoreTokens,
        rates: &crate::cluster::limits::NodeRates,
        key: u64,
        n: u64,
        now: Instant,
        reset_ms: u64,
        lease: impl FnOnce(u64) -> ClusterWait,
        decide: impl Fn(bool, u64, u64) -> D,
    ) -> Cluster<D> {
        use crate::cluster::limits::Take;
        let Some(core) = &w.cluster else {
            return Cluster::Local;
        };
        let node = &core.node;
        if !node.available() || self.cluster_waits > MAX_CLUSTER_WAITS {
            node.counters
                .fallbacks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return match node.settings.when_unavailable {
                crate::config::cluster::WhenUnavailable::NodeLimits => Cluster::Local,
                crate::config::cluster::WhenUnavailable::Reject => Cluster::Unavailable,
            };
        }
        let now_ms = mono_ms(now);
        if let Some(left) = tokens.spend(key, n, now_ms) {
            return Cluster::Decided(decide(true, left, reset_ms));
        }
        match rates.take(key, n, now_ms) {
            Take::Tokens {
                tokens: t,
                until_ms,
            } => {
                let left = tokens.add_and_spend(key, t, n, until_ms, now_ms);
                Cluster::Decided(decide(true, left, reset_ms))
            }
            Take::Refused { until_ms } => {
                Cluster::Decided(decide(false, 0, until_ms.saturating_sub(now_ms)))
            }
            Take::Lease { want } => {
                self.cluster_waits += 1;
                Cluster::Wait(lease(want))
            }
            Take::Wait => {
                self.cluster_waits += 1;
                Cluster::Wait(ClusterWait::Poll)
            }
        }
    }

    /// Leases for a cluster-wide rate limit (after `Inbound::WaitCluster`), or waits a moment
    /// for another core's lease.
    pub async fn cluster_wait(&mut self, wait: ClusterWait, w: &WorkerPolicies) {
        match wait {
            ClusterWait::Lease { table, key, want } => {
                let (Some(core), Some(Some((_, rates, id)))) =
                    (&w.cluster, w.cluster_tokens.get(table))
                else {
                    return;
                };
                core.lease(rates, *id, key, want).await;
            }
            ClusterWait::LeaseQuota { table, key, want } => {
                let (Some(core), Some(Some((_, q)))) = (&w.cluster, w.cluster_quota.get(table))
                else {
                    return;
                };
                core.lease_quota(q, key, want).await;
            }
            ClusterWait::Poll => monoio::time::sleep(CLUSTER_POLL).await,
            ClusterWait::CacheGet => {
                let Some(core) = &w.cluster else { return };
                if let Some(entry) = core.cache_get(self.cache.hash, &self.cache.key).await {
                    let now = Instant::now();
                    let stored = now.checked_sub(entry.age).unwrap_or(now);
                    w.cache.borrow_mut().insert(
                        self.cache.hash,
                        &self.cache.key,
                        entry.status,
                        entry.headers,
                        entry.body,
                        entry.ttl,
                        stored,
                    );
                }
            }
        }
    }

    /// `validate-jwt` (at inbound position `pos`): verifies the token and keeps its claims,
    /// or refuses (401 with `WWW-Authenticate`, RFC 6750), or waits once for fetched keys when
    /// the token's kid is unknown.
    fn validate_jwt<'p, H: HeaderLookup>(
        &mut self,
        v: &super::ValidateJwt,
        pos: usize,
        w: &WorkerPolicies,
        ctx: &Ctx<'_, H>,
    ) -> Option<Inbound<'p>> {
        let token: Option<&[u8]> = match &v.source {
            super::TokenSource::Bearer(h) => ctx
                .headers
                .get(h)
                .and_then(auth::jwt::token_from_authorization),
            super::TokenSource::Header(h) => ctx.headers.get(h).map(<[u8]>::trim_ascii),
            super::TokenSource::Query(q) => crate::route::query_param(ctx.query, q),
            super::TokenSource::Cookie(c) => ctx.headers.get(b"cookie").and_then(|all| {
                all.split(|&b| b == b';').find_map(|pair| {
                    let pair = pair.trim_ascii();
                    let (name, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
                    (name == &c[..]).then_some(&value[1..])
                })
            }),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let policy = v as *const super::ValidateJwt as usize;
        let verified = match (token.filter(|t| !t.is_empty()), v.remote) {
            (None, _) => Err(auth::jwt::JwtError::Missing),
            (Some(t), None) => {
                w.tokens
                    .borrow_mut()
                    .verify(policy, &v.spec, &v.spec.keys, 0, t, now)
            }
            (Some(t), Some(g)) => {
                let keys = w.jwks.current(g);
                w.tokens
                    .borrow_mut()
                    .verify(policy, &v.spec, &keys.keys, keys.version, t, now)
            }
        };
        let error = match verified {
            Ok(verified) => {
                self.claims = Some(verified);
                return None;
            }
            Err(e) => e,
        };
        if let (auth::jwt::JwtError::UnknownKid(_), Some(group), false) =
            (&error, v.remote, self.jwt_waited)
        {
            // The keys may have been rotated: one refresh, waited for once.
            if let Some(wait) = w.jwks.request_refresh(group, ctx.now) {
                self.jwt_waited = true;
                return Some(Inbound::WaitKeys(wait, pos));
            }
        }
        let challenge = match error {
            auth::jwt::JwtError::Missing => "Bearer",
            _ => error.www_authenticate(),
        };
        self.response.add(b"WWW-Authenticate", challenge.as_bytes());
        Some(Inbound::Refuse(Refusal {
            status: v.status,
            message: v.message.to_string(),
            retry_after: None,
        }))
    }

    /// CORS: answers a preflight at the gateway, or marks an actual request's answer.
    fn cors<'p, H: HeaderLookup>(
        &mut self,
        c: &auth::access::Cors,
        ctx: &Ctx<'_, H>,
    ) -> Option<Inbound<'p>> {
        let origin = ctx.headers.get(b"origin")?;
        let preflight_method = (ctx.method == b"OPTIONS")
            .then(|| ctx.headers.get(b"access-control-request-method"))
            .flatten();
        let allowed = c.origin_allowed(origin);
        if let Some(method) = preflight_method {
            let requested = ctx
                .headers
                .get(b"access-control-request-headers")
                .unwrap_or_default();
            if !(allowed && c.method_allowed(method) && c.headers_allowed(requested)) {
                // Not a request this policy allows: no CORS headers, and the browser stops.
                return c
                    .terminate_unmatched
                    .then_some(Inbound::Respond(&PREFLIGHT));
            }
            let r = &mut self.response;
            r.add(b"Access-Control-Allow-Origin", c.allow_origin_value(origin));
            if c.credentials {
                r.add(b"Access-Control-Allow-Credentials", b"true");
            }
            r.add(
                b"Access-Control-Allow-Methods",
                if c.any_method {
                    method
                } else {
                    &c.methods_text
                },
            );
            if !requested.is_empty() {
                r.add(
                    b"Access-Control-Allow-Headers",
                    if c.any_header {
                        requested
                    } else {
                        &c.headers_text
                    },
                );
            }
            if let Some(age) = c.max_age {
                r.add_with(b"Access-Control-Max-Age", |o| push_u64(o, age));
            }
            r.add(b"Vary", b"Origin");
            return Some(Inbound::Respond(&PREFLIGHT));
        }
        if allowed {
            let r = &mut self.response;
            r.add(b"Access-Control-Allow-Origin", c.allow_origin_value(origin));
            if c.credentials {
                r.add(b"Access-Control-Allow-Credentials", b"true");
            }
            if !c.expose.is_empty() {
                r.add(b"Access-Control-Expose-Headers", &c.expose);
            }
        }
        self.response.add(b"Vary", b"Origin");
        None
    }

    fn write_rate_headers(&mut self) {
        if let Some(r) = self.rate {
            self.response
                .add_with(b"RateLimit-Limit", |o| push_u64(o, r.limit));
            self.response
                .add_with(b"RateLimit-Remaining", |o| push_u64(o, r.remaining));
            self.response
                .add_with(b"RateLimit-Reset", |o| push_u64(o, r.reset_secs));
            self.rate = None;
        }
    }

    fn respond_headers<H: HeaderLookup>(&mut self, r: &Respond, ctx: &Ctx<'_, H>) {
        for (name, value) in &r.headers {
            let mut v = std::mem::take(&mut self.tmp);
            v.clear();
            self.render(value, ctx, &mut v);
            self.response
                .apply(super::ExistsAction::Override, name, &v, false);
            self.tmp = v;
        }
        self.write_rate_headers();
    }

    /// `set-header` on the request (`on_response` false) or the answer; `original` says
    /// whether the message as received has the header.
    fn set_header<H: HeaderLookup>(
        &mut self,
        s: &super::SetHeader,
        on_response: bool,
        original: bool,
        ctx: &Ctx<'_, H>,
    ) {
        let mut v = std::mem::take(&mut self.tmp);
        v.clear();
        self.render(&s.value, ctx, &mut v);
        let edits = if on_response {
            &mut self.response
        } else {
            &mut self.request
        };
        edits.apply(s.action, &s.name, &v, original);
        self.tmp = v;
    }

    fn set_status(&mut self, code: u16, reason: &str) {
        self.status = Some(code);
        self.reason.clear();
        self.reason.extend_from_slice(reason.as_bytes());
    }

    fn lookup_value<H: HeaderLookup>(
        &mut self,
        l: &super::LookupValue,
        w: &WorkerPolicies,
        ctx: &Ctx<'_, H>,
    ) {
        let mut k = std::mem::take(&mut self.scratch);
        k.clear();
        self.render(&l.key, ctx, &mut k);
        let v = w.values.borrow_mut().get(&k, ctx.now);
        self.vars[l.var as usize] = v.or_else(|| l.default.clone());
        self.scratch = k;
    }

    fn store_value<H: HeaderLookup>(
        &mut self,
        s: &super::StoreValue,
        w: &WorkerPolicies,
        ctx: &Ctx<'_, H>,
    ) {
        let mut k = std::mem::take(&mut self.scratch);
        let mut v = std::mem::take(&mut self.tmp);
        k.clear();
        v.clear();
        self.render(&s.key, ctx, &mut k);
        self.render(&s.value, ctx, &mut v);
        w.values
            .borrow_mut()
            .insert(&k, Bytes::copy_from_slice(&v), s.duration, ctx.now);
        self.scratch = k;
        self.tmp = v;
    }

    fn remove_value<H: HeaderLookup>(
        &mut self,
        key: &super::Template,
        w: &WorkerPolicies,
        ctx: &Ctx<'_, H>,
    ) {
        let mut k = std::mem::take(&mut self.scratch);
        k.clear();
        self.render(key, ctx, &mut k);
        w.values.borrow_mut().remove(&k);
        self.scratch = k;
    }

    fn cache_lookup<'p, H: HeaderLookup>(
        &mut self,
        c: &super::CacheLookup,
        index: usize,
        w: &WorkerPolicies,
        ctx: &Ctx<'_, H>,
    ) -> Option<Inbound<'p>> {
        let private = !c.allow_private && ctx.headers.get(b"authorization").is_some();
        if !cache::cacheable_method(ctx.method) || private {
            self.cache.x_cache = Some(cache::XCache::Bypass);
            return None;
        }
        let mut key = std::mem::take(&mut self.cache.key);
        let parts = cache::KeyParts {
            method: b"GET",
            host: ctx.host,
            path: ctx.path,
            query: self.current_query(ctx),
            extra: if c.vary_by_subscription {
                &self.subscription
            } else {
                b""
            },
        };
        let headers = &ctx.headers;
        cache::build_key(
            &mut key,
            &parts,
            &c.vary_by_query,
            &c.vary_by_header,
            |name| headers.get(name),
        );
        let hash = cache::key_hash(&key);
        self.cache.key = key;
        self.cache.hash = hash;
        self.cache.lookup_pos = index;
        if let Some(hit) = w.cache.borrow_mut().get(hash, &self.cache.key, ctx.now) {
            self.cache.x_cache = Some(cache::XCache::Hit);
            self.cache.outcome = 1;
            self.write_rate_headers();
            return Some(Inbound::Hit(hit));
        }
        self.cache.x_cache = Some(cache::XCache::Miss);
        self.cache.outcome = 2;
        self.cache.missed = true;
        if self.cache.waited {
            // Back from waiting, still a miss (the answer was not cacheable): fetch without
            // starting a flight of its own.
            return None;
        }
        // The cluster's shared tier, once, before the backend.
        if let Some(core) = &w.cluster {
            if !self.cache.tier_checked
                && core.node.settings.cache.is_some()
                && core.node.available()
            {
                self.cache.tier_checked = true;
                return Some(Inbound::WaitCluster(ClusterWait::CacheGet, index));
            }
        }
        match w.flights.begin(hash) {
            Role::Leader(l) => {
                self.cache.leader = Some(l);
                let node = w.node_flights.as_ref();
                match node.map(|n| n.begin(hash, &self.cache.key)) {
                    Some(cache::NodeRole::Leader(n)) => self.cache.node_leader = Some(n),
                    Some(cache::NodeRole::Follower(flight)) => {
                        self.cache.waited = true;
                        return Some(Inbound::WaitNode(flight, index));
                    }
                    Some(cache::NodeRole::Alone) | None => {}
                }
            }
            Role::Follower(waiter) => {
                self.cache.waited = true;
                return Some(Inbound::Wait(waiter, index));
            }
            Role::Forward => {}
        }
        None
    }

    fn set_query<H: HeaderLookup>(&mut self, s: &super::SetHeader, ctx: &Ctx<'_, H>) {
        let mut value = std::mem::take(&mut self.tmp);
        value.clear();
        self.render(&s.value, ctx, &mut value);
        let current: &[u8] = if self.target_set {
            &self.target
        } else {
            ctx.target
        };
        let (path, query) = match current.iter().position(|&b| b == b'?') {
            Some(q) => (&current[..q], &current[q + 1..]),
            None => (current, &b""[..]),
        };
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        out.extend_from_slice(path);
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            out.push(if first { b'?' } else { b'&' });
            first = false;
        };
        let exists = query
            .split(|&b| b == b'&')
            .any(|p| param_name(p) == &s.name[..]);
        for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let named = param_name(pair) == &s.name[..];
            if named
                && matches!(
                    s.action,
                    super::ExistsAction::Override | super::ExistsAction::Delete
                )
            {
                continue;
            }
            sep(&mut out);
            out.extend_from_slice(pair);
        }
        let add = match s.action {
            super::ExistsAction::Delete => false,
            super::ExistsAction::Skip => !exists,
            super::ExistsAction::Override | super::ExistsAction::Append => true,
        };
        if add {
            sep(&mut out);
            out.extend_from_slice(&s.name);
            out.push(b'=');
            out.extend_from_slice(&value);
        }
        self.scratch = std::mem::replace(&mut self.target, out);
        self.target_set = true;
        self.tmp = value;
    }

    fn rewrite_uri<H: HeaderLookup>(&mut self, r: &super::RewriteUri, ctx: &Ctx<'_, H>) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        // The template is relative to the API (as APIM's is to the backend's URL): it goes
        // behind the API's path, which the route's rewrite then replaces.
        let base = ctx.route.strip.unwrap_or(0).min(ctx.path.len());
        out.extend_from_slice(&ctx.path[..base]);
        self.render(&r.template, ctx, &mut out);
        if r.copy_unmatched_params {
            // The template's own parameters end where the copied ones begin.
            let set_end = out.len();
            let set_start = out
                .iter()
                .position(|&b| b == b'?')
                .map_or(set_end, |q| q + 1);
            let query = self.current_query(ctx);
            for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
                let name = param_name(pair);
                let taken = out[set_start..set_end]
                    .split(|&b| b == b'&')
                    .any(|p| param_name(p) == name);
                if taken {
                    continue;
                }
                let sep = if out.contains(&b'?') { b'&' } else { b'?' };
                out.push(sep);
                out.extend_from_slice(pair);
            }
        }
        self.scratch = std::mem::replace(&mut self.target, out);
        self.target_set = true;
    }

    /// Runs the outbound section on a response with `status`; `has` says whether the response
    /// carries a header (lower-case name).
    pub fn outbound<H: HeaderLookup>(
        &mut self,
        pipe: &Pipeline,
        status: u16,
        response: &impl Fn(&[u8]) -> bool,
        w: &WorkerPolicies,
        ctx: &Ctx<'_, H>,
    ) {
        for policy in pipe.outbound.iter() {
            match policy {
                Policy::SetHeader(s) => self.set_header(s, true, response(&s.lower), ctx),
                Policy::SetStatus { code, reason } => self.set_status(*code, reason),
                Policy::CacheStore(c) if self.cache.missed && c.statuses.contains(status) => {
                    self.cache.store_for = Some(c.duration);
                }
                Policy::LookupValue(l) => self.lookup_value(l, w, ctx),
                Policy::StoreValue(s) => self.store_value(s, w, ctx),
                Policy::RemoveValue(k) => self.remove_value(k, w, ctx),
                _ => {}
            }
        }
        self.write_x_cache();
    }

    /// Adds `X-Cache`, once the outcome of the lookup is known.
    pub fn write_x_cache(&mut self) {
        if let Some(x) = self.cache.x_cache.take() {
            self.response.add(b"X-Cache", x.as_bytes());
        }
    }

    /// Runs `on_error` for an answer the gateway makes because something failed. Returns a
    /// `return-response` / `mock-response` that replaces the answer, if one ran.
    pub fn on_error<'p, H: HeaderLookup>(
        &mut self,
        pipe: &'p Pipeline,
        ctx: &Ctx<'_, H>,
    ) -> Option<&'p Respond> {
        self.failed = true;
        self.write_x_cache();
        for policy in pipe.on_error.iter() {
            match policy {
                Policy::SetHeader(s) => self.set_header(s, true, false, ctx),
                Policy::SetStatus { code, reason } => self.set_status(*code, reason),
                Policy::Respond(r) => {
                    self.respond_headers(r, ctx);
                    return Some(r);
                }
                _ => {}
            }
        }
        None
    }

    /// Whether a response may go into the cache: `cache-store` allowed it, the backend's
    /// directives allow it (for how long), and its `Vary` is covered by the key.
    pub fn store_ttl(
        &self,
        pipe: &Pipeline,
        cache_control: &mut dyn Iterator<Item = &[u8]>,
        pragma: Option<&[u8]>,
        vary: Option<&[u8]>,
    ) -> Option<Duration> {
        let duration = self.cache.store_for?;
        let mut control = cache::ResponseControl::default();
        for v in cache_control {
            control.add_cache_control(v);
        }
        if let Some(p) = pragma {
            control.add_pragma(p);
        }
        if let Some(v) = vary {
            control.add_vary(v);
            let keyed: &[Box<[u8]>] = match pipe.inbound.get(self.cache.lookup_pos) {
                Some(Policy::CacheLookup(c)) => &c.vary_by_header,
                _ => &[],
            };
            if !cache::vary_covered(v, keyed) {
                return None;
            }
        }
        control.ttl(duration)
    }

    /// Stores a response taken in whole.
    pub fn store(
        &mut self,
        w: &WorkerPolicies,
        status: u16,
        headers: Bytes,
        body: Bytes,
        ttl: Duration,
        now: Instant,
    ) {
        if let Some(node) = &self.cache.node_leader {
            node.fill(cache::Filled {
                status,
                headers: headers.clone(),
                body: body.clone(),
                stored_at: now,
                ttl,
            });
        }
        if let Some(core) = &w.cluster {
            core.cache_put(
                self.cache.hash,
                &self.cache.key,
                status,
                &headers,
                &body,
                ttl,
            );
        }
        w.cache.borrow_mut().insert(
            self.cache.hash,
            &self.cache.key,
            status,
            headers,
            body,
            ttl,
            now,
        );
    }

    /// Takes into this core's store what another core's flight stored for this request's key.
    pub fn take_filled(&self, w: &WorkerPolicies, flight: &cache::NodeFlight, now: Instant) {
        let Some(f) = flight.filled() else {
            return;
        };
        let left = f
            .ttl
            .saturating_sub(now.saturating_duration_since(f.stored_at));
        if !left.is_zero() && flight.key() == &self.cache.key[..] {
            w.cache.borrow_mut().insert(
                self.cache.hash,
                &self.cache.key,
                f.status,
                f.headers,
                f.body,
                left,
                now,
            );
        }
    }

    /// Settles what the request held, once its answer (with `status`) is out. `bytes` is what
    /// the exchange moved both ways, for bandwidth quotas.
    pub fn settle(
        &mut self,
        pipe: &Pipeline,
        w: &WorkerPolicies,
        status: u16,
        bytes: u64,
        _now: Instant,
    ) {
        self.cache.leader = None;
        if self.held.is_empty() {
            return;
        }
        let mut unix = None;
        for held in self.held.drain(..) {
            match held {
                Held::Rate {
                    index,
                    key,
                    n,
                    pos,
                    at_ms,
                } => {
                    let Some(Policy::RateLimit(policy)) = pipe.inbound.get(pos) else {
                        continue;
                    };
                    if let Some(cond) = &policy.increment_condition {
                        if !counts(cond, status) {
                            match w.cluster_tokens.get(index).and_then(Option::as_ref) {
                                Some((tokens, ..)) => tokens.give_back(key, u64::from(n)),
                                None => w.rate[index].borrow_mut().give_back(key, n, at_ms),
                            }
                        }
                    }
                }
                Held::Quota {
                    index,
                    key,
                    pos,
                    at_unix_ms,
                } => {
                    let counted = match pipe.inbound.get(pos) {
                        Some(Policy::Quota(policy)) => policy
                            .increment_condition
                            .as_ref()
                            .is_none_or(|cond| counts(cond, status)),
                        _ => true,
                    };
                    if let Some(Some((tokens, _))) = w.cluster_quota.get(index) {
                        if !counted {
                            tokens.give_back(key, 1);
                        } else if bytes > 0 {
                            w.cluster_bytes.borrow_mut().push((index, key, bytes));
                        }
                    } else if !counted {
                        // Neither the call nor its bytes count.
                        w.quota[index].borrow_mut().give_back(key, at_unix_ms);
                    } else if bytes > 0 {
                        let now_unix = *unix.get_or_insert_with(unix_ms);
                        w.quota[index].borrow_mut().add_bytes(key, bytes, now_unix);
                    }
                }
                Held::Concurrency { index, key } => {
                    w.concurrency[index].borrow_mut().release(key);
                }
            }
        }
    }
}

/// The answer to a CORS preflight: 200, no body; the headers are the exchange's.
static PREFLIGHT: Respond = Respond {
    status: 200,
    reason: None,
    headers: Vec::new(),
    body: Bytes::new(),
};

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn counts(cond: &StatusRanges, status: u16) -> bool {
    cond.contains(status)
}

fn param_name(pair: &[u8]) -> &[u8] {
    match pair.iter().position(|&b| b == b'=') {
        Some(eq) => &pair[..eq],
        None => pair,
    }
}
