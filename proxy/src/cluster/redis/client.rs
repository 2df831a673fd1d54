//! [`RedisClient`]: the async client a worker uses, one per core, on the request path.
//!
//! A client holds a pool of pipelined connections per node (`link`; `pool_size` of them,
//! default one) and sends each command to the node it belongs to: the one server; the master
//! that the Sentinels name (checked with `ROLE`); or, in a cluster, the master of the
//! command's key slot, following `MOVED` (and correcting its slot map) and `ASK` (`ASKING`
//! then the command), and retrying `TRYAGAIN`/`CLUSTERDOWN` a few times. Every call is bounded
//! by the command timeout, whatever it waits on (a connect, a redirect, a lookup).
//!
//! Topology lookups (asking the Sentinels, `CLUSTER SLOTS`) run as tasks of their own on short
//! connections, one at a time per client; calls that need the result wait for it (within their
//! timeout), and a lookup that fails is not tried again for a back-off. A Sentinel client looks
//! its master up again after a connection failure or a `READONLY` reply (a fail-over: the
//! command is sent again once, to the new master, since a refused write did not run); while
//! the Sentinels cannot say, it keeps the master it knew. A cluster client refreshes its slot
//! map in the background after a `MOVED`, a connection failure or a `CLUSTERDOWN`, at most
//! every 100 ms, and keeps routing by the map it has meanwhile.
//!
//! What this client does not do: transactions and blocking commands (they would hold up the
//! pipeline every other caller shares), pub/sub (see the blocking client), reads from
//! replicas.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::error::RedisError;
use super::link::{self, backoff, Link};
use super::resp::{self, ErrorKind, Value};
use super::script::Script;
use super::slots::{self, key_slot, Next, SlotMap, MAX_ATTEMPTS};
use super::topology::{is_master, sentinel_master, Endpoint, RedisSettings, Role, Setup, Target};

/// The least time between two slot map refreshes.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// A Redis client for one worker. Cheap to clone (the clones share connections); not `Send`:
/// make one per core from the same settings. A client belongs to the runtime it is first used
/// on, where its connections' tasks run.
#[derive(Clone)]
pub struct RedisClient {
    inner: Rc<Inner>,
}

struct Inner {
    setup: Rc<Setup>,
    mode: Mode,
}

enum Mode {
    Single(NodePool),
    Sentinel(SentinelMode),
    Cluster(ClusterMode),
}

impl RedisClient {
    /// A client for `settings`. Connects nothing yet: the first call does.
    pub fn new(settings: &RedisSettings) -> RedisClient {
        let setup = Rc::new(Setup::new(settings));
        let mode = match &settings.target {
            Target::Single(endpoint) => Mode::Single(NodePool::new(endpoint.clone(), &setup)),
            Target::Sentinel { sentinels, master } => Mode::Sentinel(SentinelMode {
                sentinels: sentinels.clone(),
                name: master.clone(),
                master: RefCell::new(None),
                stale: Cell::new(true),
                lookup: Lookup::default(),
                next_sentinel: Cell::new(0),
            }),
            Target::Cluster { seeds } => Mode::Cluster(ClusterMode {
                seeds: seeds.clone(),
                routes: RefCell::new(None),
                lookup: Lookup::default(),
                last_refresh: Cell::new(None),
                next_any: Cell::new(0),
            }),
        };
        RedisClient {
            inner: Rc::new(Inner { setup, mode }),
        }
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.inner.setup.settings
    }

    /// Sends one command (name first) and returns its reply. An error reply is
    /// `Err(RedisError::Server)`; errors inside an array reply stay values.
    pub async fn call(&self, args: &[&[u8]]) -> Result<Value, RedisError> {
        let key = slots::command_key(args);
        self.bounded(self.route(key, &[args])).await
    }

    /// Runs `script` by its SHA-1, and sends it whole (`EVAL`, which also caches it) when the
    /// server answers `NOSCRIPT`. In a cluster the first key picks the node.
    pub async fn eval_sha(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        let mut digits = [0u8; 20];
        let numkeys = resp::fmt_u64(&mut digits, keys.len() as u64);
        let key = keys.first().copied();
        self.bounded(async {
            let head: [&[u8]; 3] = [b"EVALSHA", script.sha1(), numkeys];
            match self.route(key, &[&head, keys, args]).await {
                Err(e) if e.server_kind() == Some(ErrorKind::NoScript) => {
                    let head: [&[u8]; 3] = [b"EVAL", script.source().as_bytes(), numkeys];
                    self.route(key, &[&head, keys, args]).await
                }
                other => other,
            }
        })
        .await
    }

    /// True unless a call now would be refused at once: the node (for a cluster, the slot map
    /// lookup; for Sentinel, the master lookup and the master) is backing off after failures.
    /// Reads a few cells; makes no I/O.
    pub fn is_available(&self) -> bool {
        match &self.inner.mode {
            Mode::Single(pool) => pool.is_available(),
            Mode::Sentinel(m) => {
                m.lookup.is_available()
                    && m.master.borrow().as_ref().is_none_or(|p| p.is_available())
            }
            Mode::Cluster(c) => match &*c.routes.borrow() {
                Some(routes) => routes.pools.iter().any(|p| p.is_available()),
                None => c.lookup.is_available(),
            },
        }
    }

    async fn bounded<F>(&self, work: F) -> Result<Value, RedisError>
    where
        F: Future<Output = Result<Value, RedisError>>,
    {
        match monoio::time::timeout(self.inner.setup.settings.command_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::Timeout),
        }
    }

    async fn route(&self, key: Option<&[u8]>, parts: &[&[&[u8]]]) -> Result<Value, RedisError> {
        match &self.inner.mode {
            Mode::Single(pool) => match pool.pick().send(parts)?.await? {
                Value::Error(message) => Err(RedisError::Server(message)),
                value => Ok(value),
            },
            Mode::Sentinel(m) => m.route(&self.inner, parts).await,
            Mode::Cluster(c) => c.route(&self.inner, key.map(key_slot), parts).await,
        }
    }
}

/// The links to one node.
struct NodePool {
    endpoint: Endpoint,
    links: Box<[Link]>,
    next: Cell<usize>,
}

impl NodePool {
    fn new(endpoint: Endpoint, setup: &Rc<Setup>) -> NodePool {
        let links = (0..setup.settings.pool_size.max(1))
            .map(|_| Link::new(endpoint.clone(), Rc::clone(setup), Role::Data))
            .collect();
        NodePool {
            endpoint,
            links,
            next: Cell::new(0),
        }
    }

    /// The next link in turn, skipping links that are backing off while another is not.
    fn pick(&self) -> &Link {
        let n = self.links.len();
        let start = self.next.get();
        self.next.set((start + 1) % n);
        (0..n)
            .map(|i| &self.links[(start + i) % n])
            .find(|l| l.is_available())
            .unwrap_or(&self.links[start % n])
    }

    fn is_available(&self) -> bool {
        self.links.iter().any(Link::is_available)
    }

    fn forgive(&self) {
        self.links.iter().for_each(Link::forgive);
    }
}

/// One topology lookup at a time, the calls waiting for it, and its back-off after failures.
#[derive(Default)]
struct Lookup {
    running: Cell<bool>,
    /// Counts finished lookups: a waiter is done when it changes.
    round: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    failures: Cell<u32>,
    down_until: Cell<Option<Instant>>,
}

impl Lookup {
    fn is_available(&self) -> bool {
        match self.down_until.get() {
            Some(until) => Instant::now() >= until,
            None => true,
        }
    }

    /// Claims the next lookup: false when one runs or the back-off forbids it.
    fn begin(&self) -> bool {
        if self.running.get() || !self.is_available() {
            return false;
        }
        self.running.set(true);
        true
    }

    fn finish(&self, ok: bool) {
        if ok {
            self.failures.set(0);
            self.down_until.set(None);
        } else {
            let failures = self.failures.get().saturating_add(1);
            self.failures.set(failures);
            self.down_until
                .set(Some(Instant::now() + backoff(failures)));
        }
        self.running.set(false);
        self.round.set(self.round.get().wrapping_add(1));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits for the running lookup (if any) to finish.
    async fn wait(&self) {
        if !self.running.get() {
            return;
        }
        let round = self.round.get();
        std::future::poll_fn(|cx| {
            if self.round.get() != round {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

struct SentinelMode {
    sentinels: Vec<Endpoint>,
    name: String,
    master: RefCell<Option<Rc<NodePool>>>,
    /// The master must be looked up before the next command.
    stale: Cell<bool>,
    lookup: Lookup,
    /// The Sentinel asked first: the one that answered last time.
    next_sentinel: Cell<usize>,
}

impl SentinelMode {
    async fn route(&self, inner: &Rc<Inner>, parts: &[&[&[u8]]]) -> Result<Value, RedisError> {
        let mut retried = false;
        loop {
            let pool = self.master(inner).await?;
            let link = pool.pick();
            let answer = match link.send(parts) {
                Ok(reply) => reply.await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(Value::Error(message)) => {
                    if resp::error_kind(&message) != ErrorKind::ReadOnly {
                        return Err(RedisError::Server(message));
                    }
                    // The master became a replica: a fail-over. The write did not run.
                    self.stale.set(true);
                    if retried {
                        return Err(RedisError::Server(message));
                    }
                    retried = true;
                }
                Err(e) => {
                    if e.is_connection() || !pool.is_available() {
                        self.stale.set(true);
                    }
                    return Err(e);
                }
                Ok(value) => return Ok(value),
            }
        }
    }

    /// The current master's pool, looking it up first when it is unknown or stale. While the
    /// Sentinels cannot say (they are down, or the lookup backs off), the master known last
    /// is kept: losing the Sentinels alone must not cut a working master off.
    async fn master(&self, inner: &Rc<Inner>) -> Result<Rc<NodePool>, RedisError> {
        if self.stale.get() || self.master.borrow().is_none() {
            if self.lookup.begin() {
                monoio::spawn(find_master(Rc::clone(inner)));
            }
            self.lookup.wait().await;
        }
        match &*self.master.borrow() {
            Some(pool) => Ok(Rc::clone(pool)),
            None => Err(RedisError::Unavailable(
                "no master known: the Sentinels named none that answers as master",
            )),
        }
    }

    /// Asks each Sentinel in turn for the master's address, and the master whether it is one.
    async fn ask_sentinels(&self, setup: &Setup) -> Result<Endpoint, RedisError> {
        let n = self.sentinels.len();
        let first = self.next_sentinel.get();
        let mut last = RedisError::Unavailable("no Sentinel is configured");
        for i in 0..n {
            let at = (first + i) % n;
            let question: [&[u8]; 3] = [
                b"SENTINEL",
                b"get-master-addr-by-name",
                self.name.as_bytes(),
            ];
            let answer =
                link::exchange(&self.sentinels[at], setup, Role::Sentinel, &[&question]).await;
            let master = match answer.map(|mut r| r.remove(0)) {
                Ok(reply) => match sentinel_master(&reply) {
                    Ok(Some(master)) => master,
                    Ok(None) => {
                        last = RedisError::Unavailable("a Sentinel does not know the master name");
                        continue;
                    }
                    Err(e) => {
                        last = RedisError::Protocol(resp::ProtocolError::Unexpected(e));
                        continue;
                    }
                },
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match link::exchange(&master, setup, Role::Data, &[&[b"ROLE"]]).await {
                Ok(role) if is_master(&role[0]) => {
                    self.next_sentinel.set(at);
                    return Ok(master);
                }
                Ok(_) => {
                    last =
                        RedisError::Unavailable("the node a Sentinel names is not a master (yet)")
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The lookup task of a Sentinel client.
async fn find_master(inner: Rc<Inner>) {
    let Mode::Sentinel(m) = &inner.mode else {
        return;
    };
    let found = m.ask_sentinels(&inner.setup).await;
    let ok = found.is_ok();
    match found {
        Ok(endpoint) => {
            let mut master = m.master.borrow_mut();
            match &*master {
                Some(pool) if pool.endpoint == endpoint => pool.forgive(),
                _ => {
                    if master.is_some() {
                        log::warn!("cluster.redis: master {:?} is now at {endpoint}", m.name);
                    }
                    *master = Some(Rc::new(NodePool::new(endpoint, &inner.setup)));
                }
            }
            m.stale.set(false);
        }
        Err(e) => log::warn!("cluster.redis: cannot find master {:?}: {e}", m.name),
    }
    m.lookup.finish(ok);
}

struct ClusterMode {
    seeds: Vec<Endpoint>,
    /// None until the first slot map arrives.
    routes: RefCell<Option<Routes>>,
    lookup: Lookup,
    last_refresh: Cell<Option<Instant>>,
    /// Rotates keyless commands over the masters.
    next_any: Cell<usize>,
}

/// The slot map and a pool per node it names (same indexes).
struct Routes {
    map: SlotMap,
    pools: Vec<Rc<NodePool>>,
}

impl ClusterMode {
    async fn route(
        &self,
        inner: &Rc<Inner>,
        slot: Option<u16>,
        parts: &[&[&[u8]]],
    ) -> Result<Value, RedisError> {
        let mut redirect: Option<(Rc<NodePool>, bool)> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (pool, asking) = match redirect.take() {
                Some(to) => to,
                None => (self.pool_for(inner, slot).await?, false),
            };
            let link = pool.pick();
            let sent = if asking {
                // Adjacent on the wire; the ASKING reply (+OK) is dropped unread.
                link.send(&[&[b"ASKING"]]).and_then(|_| link.send(parts))
            } else {
                link.send(parts)
            };
            let answer = match sent {
                Ok(reply) => reply.await,
                Err(e) => Err(e),
            };
            if let Err(e) = &answer {
                if e.is_connection() || !pool.is_available() {
                    self.want_refresh(inner);
                }
            }
            match slots::next_step(answer, &pool.endpoint, attempt) {
                Next::Done(result) => return result,
                Next::Redirect {
                    endpoint,
                    slot,
                    ask,
                } => {
                    let to = if ask {
                        self.pool_at(inner, endpoint)
                    } else {
                        let to = self.assign(inner, slot, endpoint);
                        self.want_refresh(inner);
                        to
                    };
                    redirect = Some((to, ask));
                }
                Next::Pause(pause) => {
                    self.want_refresh(inner);
                    monoio::time::sleep(pause).await;
                }
            }
            debug_assert!(attempt <= MAX_ATTEMPTS);
        }
    }

    /// The pool of `slot`'s master (any master's for a keyless command), loading the slot map
    /// first if there is none yet.
    async fn pool_for(
        &self,
        inner: &Rc<Inner>,
        slot: Option<u16>,
    ) -> Result<Rc<NodePool>, RedisError> {
        if self.routes.borrow().is_none() {
            if self.lookup.begin() {
                monoio::spawn(refresh(Rc::clone(inner)));
            }
            self.lookup.wait().await;
        }
        let guard = self.routes.borrow();
        let Some(routes) = guard.as_ref() else {
            return Err(RedisError::Unavailable(
                "the cluster's slot map is unknown: no node answered CLUSTER SLOTS",
            ));
        };
        let node = match slot {
            Some(slot) => routes.map.owner(slot),
            None if routes.pools.is_empty() => None,
            None => {
                let i = self.next_any.get() % routes.pools.len();
                self.next_any.set(i + 1);
                Some(i)
            }
        };
        match node {
            Some(i) => Ok(Rc::clone(&routes.pools[i])),
            None => {
                drop(guard);
                self.want_refresh(inner);
                Err(RedisError::Unavailable("no node owns the key's slot"))
            }
        }
    }

    /// The pool for `endpoint`, made if the map does not name it (an `ASK` target).
    fn pool_at(&self, inner: &Rc<Inner>, endpoint: Endpoint) -> Rc<NodePool> {
        let routes = self.routes.borrow();
        if let Some(pool) = routes
            .as_ref()
            .and_then(|r| r.pools.iter().find(|p| p.endpoint == endpoint))
        {
            return Rc::clone(pool);
        }
        Rc::new(NodePool::new(endpoint, &inner.setup))
    }

    /// `MOVED`: `slot` is `endpoint`'s now.
    fn assign(&self, inner: &Rc<Inner>, slot: u16, endpoint: Endpoint) -> Rc<NodePool> {
        let mut routes = self.routes.borrow_mut();
        let routes = routes.get_or_insert_with(|| Routes {
            map: SlotMap::new(),
            pools: Vec::new(),
        });
        let i = routes.map.assign(slot, endpoint.clone());
        if i == routes.pools.len() {
            routes
                .pools
                .push(Rc::new(NodePool::new(endpoint, &inner.setup)));
        }
        Rc::clone(&routes.pools[i])
    }

    /// Starts a background refresh of the slot map, unless one runs, one ran within
    /// [`REFRESH_EVERY`], or refreshes are backing off.
    fn want_refresh(&self, inner: &Rc<Inner>) {
        let recent = self
            .last_refresh
            .get()
            .is_some_and(|t| t.elapsed() < REFRESH_EVERY);
        if !recent && self.lookup.begin() {
            monoio::spawn(refresh(Rc::clone(inner)));
        }
    }

    /// Asks the known masters, then the seeds, for `CLUSTER SLOTS`; the first good answer wins.
    async fn load_map(&self, setup: &Setup) -> Result<SlotMap, RedisError> {
        let mut candidates: Vec<Endpoint> = match &*self.routes.borrow() {
            Some(routes) => routes.map.nodes().to_vec(),
            None => Vec::new(),
        };
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut last = RedisError::Unavailable("no cluster node is configured");
        for node in &candidates {
            match link::exchange(node, setup, Role::Data, &[&[b"CLUSTER", b"SLOTS"]]).await {
                Ok(mut replies) => match SlotMap::from_cluster_slots(&replies.remove(0), node) {
                    Ok(map) if map.unassigned() < usize::from(slots::SLOTS) => return Ok(map),
                    Ok(_) => last = RedisError::Unavailable("a node knows no slot owner"),
                    Err(e) => last = RedisError::Protocol(resp::ProtocolError::Unexpected(e)),
                },
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The slot map refresh task of a cluster client.
async fn refresh(inner: Rc<Inner>) {
    let Mode::Cluster(c) = &inner.mode else {
        return;
    };
    c.last_refresh.set(Some(Instant::now()));
    let loaded = c.load_map(&inner.setup).await;
    let ok = loaded.is_ok();
    match loaded {
        Ok(map) => {
            let mut routes = c.routes.borrow_mut();
            let old = routes.take();
            // Keep the connections to nodes that are still masters.
            let pools = map
                .nodes()
                .iter()
                .map(|node| {
                    old.as_ref()
                        .and_then(|r| r.pools.iter().find(|p| p.endpoint == *node))
                        .map(Rc::clone)
                        .unwrap_or_else(|| Rc::new(NodePool::new(node.clone(), &inner.setup)))
                })
                .collect();
            *routes = Some(Routes { map, pools });
        }
        Err(e) => log::warn!("cluster.redis: cannot load the cluster's slot map: {e}"),
    }
    c.last_refresh.set(Some(Instant::now()));
    c.lookup.finish(ok);
}

#[cfg(test)]
impl RedisClient {
    /// Where a cluster client's slot map sends `slot` now.
    pub(crate) fn slot_owner(&self, slot: u16) -> Option<Endpoint> {
        let Mode::Cluster(c) = &self.inner.mode else {
            return None;
        };
        let routes = c.routes.borrow();
        let routes = routes.as_ref()?;
        routes
            .map
            .owner(slot)
            .map(|i| routes.map.nodes()[i].clone())
    }

    /// The master a Sentinel client sends to now.
    pub(crate) fn current_master(&self) -> Option<Endpoint> {
        let Mode::Sentinel(m) = &self.inner.mode else {
            return None;
        };
        let master = m.master.borrow();
        master.as_ref().map(|p| p.endpoint.clone())
    }
}
