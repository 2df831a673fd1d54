//! The proxy server: one worker per core, each with its own listeners, connections, upstream
//! pools and metrics, all driven from its own monoio runtime.
//!
//! The control side (the thread that called [`Server::start`]) talks to workers only through
//! [`Control`]: a drain flag that each worker polls on its timer tick, and the metrics each
//! worker leaves behind when it exits. Nothing on a worker's request path touches it.

mod conn;
mod forward;
pub mod head;
mod io;
mod local;
mod policies;
mod state;
mod trace;

pub use io::RecvBuf;
pub use local::reason;

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use ringway_core::buf::BufPool;
use ringway_core::metrics::{MetricsSnapshot, WorkerMetrics};
use ringway_core::runtime::{self, Placement, WorkerContext};
use ringway_core::timer::TimerWheel;

use crate::snapshot::Snapshot;
use crate::tls::stream::TlsStream;
use crate::tls::Io;
use crate::upstream::{SharedUpstreams, Upstreams};

const TICK: Duration = Duration::from_millis(10);
/// Idle pooled connections are aged out every this many ticks (100 ms).
const POOL_SWEEP_TICKS: u64 = 10;
/// Unused lent buffers are freed every this many ticks (1 s).
const BUF_TRIM_TICKS: u64 = 100;
/// The size of the buffers a worker lends its connections (read and write).
const LENT_BUFFER: usize = 16 * 1024;

/// One worker's state, shared by its connection tasks (`Rc`: never leaves its thread).
pub(crate) struct Worker {
    pub snapshot: Arc<Snapshot>,
    pub upstreams: Upstreams,
    pub wheel: TimerWheel,
    pub metrics: WorkerMetrics,
    /// Large buffers, lent to connections only while a request is in flight.
    pub bufs: Rc<BufPool>,
    pub draining: Cell<bool>,
    /// Open client connections on this worker, and the most it takes.
    pub connections: Cell<usize>,
    pub max_connections: usize,
    pub ids: RequestIds,
    /// Warnings that can come in floods (accept and connect failures at a descriptor limit)
    /// are logged at most once a second each, with a count of the ones held back.
    pub accept_log: LogLimit,
    pub connect_log: LogLimit,
    /// Test-only (`RINGWAY_TEST_PANIC_PATH`): a request for this path panics the worker.
    pub panic_path: Option<Box<[u8]>>,
    /// The control thread's flags: read (never written) here, so the line stays shared.
    pub control: Arc<Control>,
    /// This core's limit shards, caches and cache flights.
    pub policies: crate::policy::run::WorkerPolicies,
}

impl Worker {
    /// Whether a drain has begun: the worker's own flag (set on its tick), or the control
    /// thread's, so that a response written between the signal and the next tick already says
    /// `Connection: close`.
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.draining.get() || self.control.draining()
    }
}

/// At most one log line a second; the lines held back are counted into the next one.
#[derive(Default)]
pub(crate) struct LogLimit {
    last: Cell<Option<Instant>>,
    held: Cell<u64>,
}

impl LogLimit {
    const EVERY: Duration = Duration::from_secs(1);

    /// Logs `message` unless a line was logged within the last second.
    pub fn warn(&self, now: Instant, message: std::fmt::Arguments<'_>) {
        if self
            .last
            .get()
            .is_some_and(|last| now.saturating_duration_since(last) < Self::EVERY)
        {
            self.held.set(self.held.get() + 1);
            return;
        }
        let held = self.held.replace(0);
        self.last.set(Some(now));
        if held > 0 {
            log::warn!("{message} (and {held} more like it since the last report)");
        } else {
            log::warn!("{message}");
        }
    }
}

/// Request ids: a per-worker random prefix and a counter, unique across workers and restarts.
pub(crate) struct RequestIds {
    prefix: u64,
    next: Cell<u64>,
}

impl RequestIds {
    fn new(worker: usize) -> RequestIds {
        let prefix = ahash::RandomState::new().hash_one((worker, std::process::id()));
        RequestIds {
            prefix: (prefix & !0xff) | worker as u64 & 0xff,
            next: Cell::new(1),
        }
    }

    #[inline]
    pub fn next(&self) -> u128 {
        let n = self.next.get();
        self.next.set(n + 1);
        (u128::from(self.prefix) << 64) | u128::from(n)
    }
}

/// What the control thread shares with the workers.
#[derive(Default)]
pub struct Control {
    drain: AtomicBool,
    finished: Mutex<Vec<(usize, MetricsSnapshot)>>,
    /// Each worker's latest metrics, published by the worker once a second with `try_lock`
    /// (a worker never waits: when the control thread is reading its slot, it skips a
    /// second). Index: the worker.
    published: Vec<Mutex<Option<MetricsSnapshot>>>,
    /// Workers that have started serving.
    started: std::sync::atomic::AtomicUsize,
}

impl Control {
    /// Asks every worker to stop accepting, finish in-flight requests and exit.
    pub fn drain(&self) {
        self.drain.store(true, Ordering::Relaxed);
    }

    fn draining(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
    }

    fn for_workers(workers: usize) -> Control {
        Control {
            published: (0..workers).map(|_| Mutex::new(None)).collect(),
            ..Control::default()
        }
    }

    /// The workers' latest published metrics, merged; and how many workers published.
    pub fn metrics(&self) -> (MetricsSnapshot, usize) {
        let mut total = MetricsSnapshot::default();
        let mut seen = 0;
        for slot in &self.published {
            if let Some(m) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                total.merge(m);
                seen += 1;
            }
        }
        (total, seen)
    }

    /// Whether every worker has started serving and no drain has begun.
    pub fn ready(&self) -> bool {
        !self.draining() && self.started.load(Ordering::Relaxed) == self.published.len()
    }

    pub fn workers(&self) -> usize {
        self.published.len()
    }
}

/// A running server.
pub struct Server {
    pub control: Arc<Control>,
    /// The node-wide policy state: limit tables and the cache purge hub.
    pub policies: Arc<crate::policy::run::NodePolicies>,
    /// Saves quota counters while the server runs, and when it stops.
    keeper: Option<state::Keeper>,
    pub listeners: Vec<(String, SocketAddr)>,
    pub workers: Vec<runtime::Worker>,
}

/// Hook run on each worker thread before it serves (tests use it to mark threads).
pub type ThreadHook = Arc<dyn Fn(usize) + Send + Sync>;

impl Server {
    /// Starts the workers. Listener addresses with port 0 get one port chosen here, which every
    /// worker then shares through SO_REUSEPORT.
    pub fn start(
        snapshot: Snapshot,
        on_thread_start: Option<ThreadHook>,
    ) -> std::io::Result<Server> {
        let config = &snapshot.config;
        let mut listeners = Vec::new();
        let mut holders = Vec::new();
        for l in &config.listeners {
            // Two port-0 listeners must not be given the same port.
            let (addr, holder) = loop {
                let (addr, holder) = resolve_port(l.address)?;
                if !listeners.iter().any(|(_, a)| *a == addr) {
                    break (addr, holder);
                }
                holders.extend(holder);
            };
            holders.extend(holder);
            listeners.push((l.name.clone(), addr));
        }
        let placement = Placement::new(config.workers, config.cpus.as_deref());
        let settings = config.runtime;
        let limits = ConnectionLimits::new(config, placement.workers);
        log::info!(
            "each worker takes at most {} connections{}",
            limits.per_worker,
            match limits.derived_from {
                Some(nofile) => format!(
                    " (from RLIMIT_NOFILE {nofile}; set limits.max_connections_per_worker to change)"
                ),
                None => String::new(),
            }
        );
        let (policies, inboxes) =
            crate::policy::run::NodePolicies::new(&snapshot.config, placement.workers);
        // `validate-jwt` keys from URLs are fetched before anything is served.
        policies.jwks.start().map_err(std::io::Error::other)?;
        let inboxes: Arc<Vec<Mutex<Option<_>>>> =
            Arc::new(inboxes.into_iter().map(|i| Mutex::new(Some(i))).collect());
        let state_path = state::state_path(&snapshot.config);
        if let Some(path) = &state_path {
            state::restore(path, &policies);
        }
        let snapshot = Arc::new(snapshot);
        let control = Arc::new(Control::for_workers(placement.workers));
        let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();

        // SO_REUSEPORT would let this process share a port with another one that already
        // serves it (a second instance started by mistake would take part of the traffic):
        // probe each configured port with a socket that does not share it.
        for (l, (_, addr)) in snapshot.config.listeners.iter().zip(&listeners) {
            if l.address.port() != 0 {
                ensure_unused(*addr)?;
            }
        }
        // Bind every worker's listeners on this thread first, so that a bad address fails the
        // start with a clear error instead of a worker dying quietly.
        let mut std_listeners = Vec::new();
        for _ in 0..placement.workers {
            let mut mine = Vec::new();
            for addr in &addrs {
                let l = bind_std(*addr).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                })?;
                mine.push(l);
            }
            std_listeners.push(Mutex::new(Some(mine)));
        }
        drop(holders);
        let std_listeners = Arc::new(std_listeners);

        let ctl = Arc::clone(&control);
        let snap = Arc::clone(&snapshot);
        // Breakers, hash rings and health inboxes: shared by every worker of this snapshot.
        let shared_upstreams = Arc::new(SharedUpstreams::new(&snapshot, placement.workers));
        let node = Arc::clone(&policies);
        let panic_path: Option<Box<[u8]>> = std::env::var("RINGWAY_TEST_PANIC_PATH")
            .ok()
            .map(|p| p.into_bytes().into());
        let workers = runtime::launch("ringway-worker", &placement, settings, move |ctx| {
            if let Some(hook) = &on_thread_start {
                hook(ctx.index);
            }
            let mine = std_listeners[ctx.index]
                .lock()
                .expect("listener hand-off")
                .take()
                .expect("each worker takes its listeners once");
            let inbox = inboxes[ctx.index]
                .lock()
                .expect("inbox hand-off")
                .take()
                .expect("each worker takes its inbox once");
            let policies = crate::policy::run::WorkerPolicies::new(&node, &snap.config, inbox);
            worker_main(
                ctx,
                Arc::clone(&snap),
                Arc::clone(&ctl),
                mine,
                limits.clone(),
                panic_path.clone(),
                policies,
                Arc::clone(&shared_upstreams),
            )
        })?;
        // Logged here, in order and before the caller reports ready: monoio's own fallback to
        // epoll is silent, and the driver decides much of the throughput.
        for w in &workers {
            let c = w.context;
            let cpu = c
                .cpu
                .map_or("any CPU".to_string(), |cpu| format!("CPU {cpu}"));
            log::info!("worker {} on {cpu} uses {}", c.index, c.driver);
        }
        let keeper = state_path.map(|path| {
            state::Keeper::start(
                path,
                Arc::clone(&policies),
                snapshot.config.state.persist_interval,
            )
        });
        Ok(Server {
            control,
            policies,
            keeper,
            listeners,
            workers,
        })
    }

    /// Waits for the workers to exit (after [`Control::drain`]), at most `deadline`. Returns
    /// each worker's final metrics, or `None` if some worker did not finish in time.
    pub fn wait(mut self, deadline: Duration) -> Option<Vec<(usize, MetricsSnapshot)>> {
        let until = Instant::now() + deadline;
        for w in std::mem::take(&mut self.workers) {
            while !w.thread.is_finished() {
                if Instant::now() >= until {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = w.thread.join();
        }
        if let Some(keeper) = self.keeper.take() {
            keeper.finish();
        }
        let mut done = std::mem::take(&mut *self.control.finished.lock().expect("metrics"));
        done.sort_by_key(|(i, _)| *i);
        Some(done)
    }
}

/// A listener address with port 0 gets a concrete port: bound (not listening) here to reserve it
/// until the workers have bound theirs.
fn resolve_port(addr: SocketAddr) -> std::io::Result<(SocketAddr, Option<socket2::Socket>)> {
    if addr.port() != 0 {
        return Ok((addr, None));
    }
    let socket = reuse_port_socket(addr)?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound address is not an IP socket"))?;
    Ok((bound, Some(socket)))
}

/// A TCP socket bound to `addr` with SO_REUSEPORT, so that every worker can bind the same port.
fn reuse_port_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Fails with "address in use" when another socket listens on `addr`: a socket without
/// SO_REUSEPORT cannot bind a port that any other socket holds in LISTEN.
fn ensure_unused(addr: SocketAddr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {addr}: address in use (another process, perhaps another \
                     ringway, listens there)"
                ),
            )
        } else {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
        }
    })
}

/// How many connections each worker, and each worker's share of each listener, may hold.
#[derive(Clone, Debug)]
struct ConnectionLimits {
    per_worker: usize,
    /// Per listener (by index): this worker's share of the listener's `max_connections`.
    per_listener: Vec<usize>,
    /// The RLIMIT_NOFILE the default was derived from, if it was.
    derived_from: Option<u64>,
}

impl ConnectionLimits {
    fn new(config: &crate::config::Config, workers: usize) -> ConnectionLimits {
        let workers = workers.max(1);
        let (per_worker, derived_from) = match config.max_connections_per_worker {
            Some(n) => (n, None),
            None => {
                // Each client connection may hold an upstream connection too; keep a reserve
                // for pooled idle connections, listeners and the process's own files.
                let nofile = nofile_limit();
                let pooled: usize = config
                    .backends
                    .iter()
                    .map(|b| b.pool.max_idle_per_target * b.targets.len())
                    .sum::<usize>()
                    .saturating_mul(workers);
                let usable = (nofile as usize).saturating_sub(64 + pooled.min(nofile as usize / 2));
                ((usable / 2 / workers).max(1), Some(nofile))
            }
        };
        let per_listener = config
            .listeners
            .iter()
            .map(|l| {
                l.max_connections
                    .map_or(usize::MAX, |n| n.div_ceil(workers))
            })
            .collect();
        ConnectionLimits {
            per_worker,
            per_listener,
            derived_from,
        }
    }
}

/// The soft limit on open descriptors, raised to the hard limit first (as most servers do:
/// the soft default of 1024 is far too low for a proxy, and raising it needs no privilege).
fn nofile_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a struct owned by this frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    rl.rlim_cur
}

fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = reuse_port_socket(addr)?;
    socket.set_nodelay(true)?;
    socket.listen(4096)?;
    // monoio's epoll driver expects non-blocking sockets (io_uring does not mind).
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

// One argument per thing handed to a worker thread; a struct of them would only be unpacked.
#[allow(clippy::too_many_arguments)]
async fn worker_main(
    ctx: WorkerContext,
    snapshot: Arc<Snapshot>,
    control: Arc<Control>,
    listeners: Vec<std::net::TcpListener>,
    limits: ConnectionLimits,
    panic_path: Option<Box<[u8]>>,
    policies: crate::policy::run::WorkerPolicies,
    shared_upstreams: Arc<SharedUpstreams>,
) {
    let worker = Rc::new(Worker {
        upstreams: Upstreams::new(&snapshot, &shared_upstreams, ctx.index),
        snapshot,
        wheel: TimerWheel::new(TICK),
        metrics: WorkerMetrics::default(),
        bufs: BufPool::new(LENT_BUFFER),
        draining: Cell::new(false),
        connections: Cell::new(0),
        max_connections: limits.per_worker,
        ids: RequestIds::new(ctx.index),
        accept_log: LogLimit::default(),
        connect_log: LogLimit::default(),
        panic_path,
        control: Arc::clone(&control),
        policies,
    });
    if ctx.index == 0 {
        // Worker 0 alone checks health, and tells every worker (itself included).
        crate::upstream::health::spawn_checks(&worker.snapshot, &shared_upstreams);
    }
    let mut listener_fds = Vec::new();
    for (i, (std_listener, &share)) in listeners.into_iter().zip(&limits.per_listener).enumerate() {
        let tls = worker.snapshot.config.listeners[i]
            .tls
            .as_ref()
            .map(|t| Arc::clone(&t.config));
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                log::error!("worker {}: cannot adopt listener: {e}", ctx.index);
                continue;
            }
        };
        listener_fds.push(listener.as_raw_fd());
        monoio::spawn(accept_loop(Rc::clone(&worker), listener, share, tls));
    }

    control.started.fetch_add(1, Ordering::Relaxed);
    // The tick: advance the wheel, publish metrics, and watch for a drain.
    let mut drain_deadline = None;
    let mut ticks: u64 = 0;
    loop {
        monoio::time::sleep(TICK).await;
        let now = Instant::now();
        worker.wheel.advance_to(now);
        worker.upstreams.on_tick(now);
        ticks += 1;
        if ticks.is_multiple_of(POOL_SWEEP_TICKS) {
            worker.upstreams.pool.sweep(now);
            worker.policies.tick(now);
        }
        if ticks.is_multiple_of(BUF_TRIM_TICKS) {
            worker.bufs.trim();
            // Never waits: a slot the control thread is reading is skipped this second.
            if let Ok(mut slot) = control.published[ctx.index].try_lock() {
                match slot.as_mut() {
                    Some(published) => worker.metrics.snapshot_into(published),
                    None => *slot = Some(worker.metrics.snapshot()),
                }
            }
        }
        if drain_deadline.is_none() && control.draining() {
            worker.draining.set(true);
            for fd in &listener_fds {
                // SAFETY: shutdown(2) has no memory effects; it wakes the pending accept, after
                // which the accept loop sees the drain and drops (closes) the listener.
                unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
            }
            worker.wheel.fire_idle();
            worker.upstreams.pool.clear();
            drain_deadline = Some(Instant::now() + worker.snapshot.config.timeouts.drain);
        }
        if let Some(deadline) = drain_deadline {
            // Connections that became idle since are closed by their own loop (they check
            // `draining` before waiting); this catches any that were mid-arm.
            worker.wheel.fire_idle();
            if worker.connections.get() == 0 || Instant::now() >= deadline {
                break;
            }
        }
    }
    // Publish what this core counted but has not handed on yet (quota bytes, leases).
    worker.policies.tick(Instant::now());
    control
        .finished
        .lock()
        .expect("metrics")
        .push((ctx.index, worker.metrics.snapshot()));
}

/// The shortest and longest pause of an accept loop that is at a limit or failing.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(500);

/// Accepts connections while this worker, and its share of the listener, are under their
/// limits. At a limit it stops accepting (the kernel's backlog holds new clients) and looks
/// again after a pause that doubles while the limit holds; accept errors (EMFILE, ENFILE,
/// ENOBUFS) pause the same way, and are logged at most once a second.
async fn accept_loop(
    worker: Rc<Worker>,
    listener: TcpListener,
    share: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let open = Rc::new(Cell::new(0usize));
    let mut pause = ACCEPT_PAUSE_MIN;
    loop {
        if worker.connections.get() >= worker.max_connections || open.get() >= share {
            monoio::time::sleep(pause).await;
            pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
            if worker.draining.get() {
                return;
            }
            continue;
        }
        let accepted = listener.accept().await;
        if worker.draining.get() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                pause = ACCEPT_PAUSE_MIN;
                let _ = stream.set_nodelay(true);
                worker.connections.set(worker.connections.get() + 1);
                open.set(open.get() + 1);
                let counted = conn::Counted::new(Rc::clone(&worker), Rc::clone(&open));
                let stream = match &tls {
                    None => Io::Plain(stream),
                    Some(config) => match rustls::ServerConnection::new(Arc::clone(config)) {
                        Ok(session) => Io::Tls(Box::new(TlsStream::new(stream, session))),
                        Err(e) => {
                            log::error!("cannot start a TLS session: {e}");
                            continue;
                        }
                    },
                };
                // The connection's task is its `run` future alone (nothing wrapped round it),
                // which keeps it within one allocation size class. A TLS connection's handshake
                // is the first thing it runs, on this core.
                monoio::spawn(conn::Conn::new(Rc::clone(&worker), stream, peer, counted).run());
            }
            Err(e) => {
                worker.accept_log.warn(
                    Instant::now(),
                    format_args!("accept failed: {e}; pausing accepts for {pause:?}"),
                );
                monoio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
            }
        }
    }
}
