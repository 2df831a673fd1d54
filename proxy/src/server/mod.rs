//! The proxy server: one worker per core, each with its own listeners, connections, upstream
//! pools and metrics, all driven from its own monoio runtime.
//!
//! The control side (the thread that called [`Server::start`]) talks to workers only through
//! [`Control`]: a drain flag that each worker polls on its timer tick, and the metrics each
//! worker leaves behind when it exits. Nothing on a worker's request path touches it.

mod access;
mod conn;
mod forward;
pub mod head;
mod io;
mod local;
mod policies;
mod reload;
mod state;
mod trace;
pub mod upgrade;

pub use io::RecvBuf;
pub use local::reason;
pub(crate) use reload::Generation;
use reload::{ListenerSlot, Pending, Reply, ToWorker};
pub use reload::{ReloadError, Reloaded, Reloader};

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// One worker's state, shared by its connection tasks (`Rc`: never leaves its thread).
pub(crate) struct Worker {
    pub index: usize,
    /// The configuration new requests are served on, and its id. A connection compares the
    /// id with its own generation's before each request.
    pub current: RefCell<Rc<Generation>>,
    pub generation: Cell<u64>,
    /// A reload prepared and waiting for its commit.
    pending: RefCell<Option<Pending>>,
    /// Generations a reload replaced, while requests still hold them: their idle upstream
    /// connections are closed on the tick.
    retired: RefCell<Vec<Weak<Generation>>>,
    /// This worker's listeners.
    listeners: RefCell<Vec<Rc<ListenerSlot>>>,
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
    /// This worker's end of the access log and the span export, when configured.
    pub access: Option<crate::control::access_log::AccessLogger>,
    pub spans: Option<crate::control::otlp::SpanRecorder>,
}

impl Worker {
    /// Whether the drain under way follows an upgrade's hand-over.
    pub fn handing_off(&self) -> bool {
        self.control.handoff.load(Ordering::Relaxed)
    }

    /// The configuration new requests are served on.
    #[inline]
    pub fn current(&self) -> Rc<Generation> {
        Rc::clone(&self.current.borrow())
    }

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
pub struct Control {
    drain: AtomicBool,
    /// Set before a drain that follows an upgrade's hand-over of the listening sockets.
    pub handoff: AtomicBool,
    /// Each worker's inbox of reload messages, and the channel of their answers.
    inboxes: Vec<crossbeam_channel::Sender<ToWorker>>,
    replies: (
        crossbeam_channel::Sender<Reply>,
        crossbeam_channel::Receiver<Reply>,
    ),
    /// The configuration generation every worker has switched to.
    pub generation: AtomicU64,
    /// The node-wide policy state of the configuration served (limit tables, purge hub).
    pub node: Mutex<Arc<crate::policy::run::NodePolicies>>,
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

    fn for_workers(
        workers: usize,
        node: Arc<crate::policy::run::NodePolicies>,
    ) -> (Control, Vec<crossbeam_channel::Receiver<ToWorker>>) {
        let (inboxes, receivers) = (0..workers)
            .map(|_| crossbeam_channel::unbounded())
            .unzip::<_, _, Vec<_>, Vec<_>>();
        let control = Control {
            drain: AtomicBool::new(false),
            handoff: AtomicBool::new(false),
            inboxes,
            replies: crossbeam_channel::unbounded(),
            generation: AtomicU64::new(1),
            node: Mutex::new(node),
            finished: Mutex::default(),
            published: (0..workers).map(|_| Mutex::new(None)).collect(),
            started: Default::default(),
        };
        (control, receivers)
    }

    /// Sends each worker the message `make` makes.
    fn send_all(&self, make: impl Fn() -> ToWorker) {
        for inbox in &self.inboxes {
            let _ = inbox.send(make());
        }
    }

    /// Drops answers left from an earlier reload that timed out.
    fn drain_replies(&self) {
        while self.replies.1.try_recv().is_ok() {}
    }

    /// Waits for every worker's answer to phase `id`: Err with the failures (a worker that
    /// did not answer in time is one).
    fn collect(&self, id: u64, timeout: Duration) -> Result<(), Vec<String>> {
        let until = Instant::now() + timeout;
        let mut answered = vec![false; self.inboxes.len()];
        let mut errors = Vec::new();
        while answered.iter().any(|a| !a) {
            let left = until.saturating_duration_since(Instant::now());
            match self.replies.1.recv_timeout(left) {
                Ok((worker, reply_id, result)) if reply_id == id && worker < answered.len() => {
                    answered[worker] = true;
                    if let Err(e) = result {
                        errors.push(format!("worker {worker}: {e}"));
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    for (worker, _) in answered.iter().enumerate().filter(|(_, a)| !**a) {
                        errors.push(format!("worker {worker}: no answer within {timeout:?}"));
                    }
                    break;
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
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
    /// Switches the workers to a new configuration.
    pub reloader: Arc<Mutex<Reloader>>,
    /// What an upgrade handed over and this configuration did not take, and the stream to
    /// say `ready` on (call [`upgrade::Inherited::ready`] once serving).
    pub inherited: Option<upgrade::Inherited>,
    /// The access log's writer and the span exporter, when configured.
    pub access_log: Option<Arc<crate::control::access_log::AccessLog>>,
    pub spans: Option<Arc<crate::control::otlp::SpanExport>>,
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
        Self::start_with(snapshot, on_thread_start, None)
    }

    /// Starts the workers on the sockets an upgrade handed over (`inherited`) where the
    /// configuration names their addresses, binding the rest.
    pub fn start_with(
        snapshot: Snapshot,
        on_thread_start: Option<ThreadHook>,
        mut inherited: Option<upgrade::Inherited>,
    ) -> std::io::Result<Server> {
        let config = &snapshot.config;
        let mut listeners = Vec::new();
        let mut holders = Vec::new();
        let mut handed: Vec<Option<Vec<std::net::TcpListener>>> = Vec::new();
        for l in &config.listeners {
            if let Some(h) = inherited.as_mut().and_then(|i| i.take(l.address)) {
                listeners.push((l.name.clone(), h.bound));
                handed.push(Some(h.sockets));
                continue;
            }
            handed.push(None);
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
        host_warnings(config, placement.workers, &limits);
        // The access log opens its file here, so that a path it cannot write fails the start.
        let access_log = match &snapshot.config.access_log {
            Some(settings) => Some(crate::control::access_log::AccessLog::start(
                settings,
                placement.workers,
            )?),
            None => None,
        };
        let spans = match &snapshot.config.tracing {
            Some(settings) => Some(crate::control::otlp::SpanExport::start(
                settings,
                placement.workers,
            )?),
            None => None,
        };
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
        let (control, control_inboxes) =
            Control::for_workers(placement.workers, Arc::clone(&policies));
        let control = Arc::new(control);
        let control_inboxes: Arc<Vec<Mutex<Option<_>>>> = Arc::new(
            control_inboxes
                .into_iter()
                .map(|i| Mutex::new(Some(i)))
                .collect(),
        );
        let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();

        // SO_REUSEPORT would let this process share a port with another one that already
        // serves it (a second instance started by mistake would take part of the traffic):
        // probe each configured port with a socket that does not share it.
        for ((l, (_, addr)), handed) in snapshot
            .config
            .listeners
            .iter()
            .zip(&listeners)
            .zip(&handed)
        {
            if l.address.port() != 0 && handed.is_none() {
                ensure_unused(*addr)?;
            }
        }
        // Bind every worker's listeners on this thread first, so that a bad address fails the
        // start with a clear error instead of a worker dying quietly. Sockets handed over by
        // an upgrade go to the workers first (more of them than workers: some workers take
        // two, so that none is left with connections queued and nobody accepting).
        let mut per_worker: Vec<Vec<(usize, std::net::TcpListener)>> =
            (0..placement.workers).map(|_| Vec::new()).collect();
        let mut fds: Vec<Vec<std::os::fd::RawFd>> = Vec::new();
        for (i, (addr, handed)) in addrs.iter().zip(handed).enumerate() {
            let mut sockets = handed.unwrap_or_default();
            while sockets.len() < placement.workers {
                sockets.push(
                    bind_std(*addr, snapshot.config.accept_backlog).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                    })?,
                );
            }
            for socket in &sockets {
                socket.set_nonblocking(true)?;
            }
            fds.push(
                sockets
                    .iter()
                    .map(std::os::fd::AsRawFd::as_raw_fd)
                    .collect(),
            );
            for (k, socket) in sockets.into_iter().enumerate() {
                per_worker[k % placement.workers].push((i, socket));
            }
        }
        let std_listeners: Vec<_> = per_worker
            .into_iter()
            .map(|m| Mutex::new(Some(m)))
            .collect();
        drop(holders);
        let std_listeners = Arc::new(std_listeners);

        let ctl = Arc::clone(&control);
        let snap = Arc::clone(&snapshot);
        // Breakers, hash rings and health inboxes: shared by every worker of this snapshot.
        let shared_upstreams = Arc::new(SharedUpstreams::new(&snapshot, placement.workers));
        let shared_for_workers = Arc::clone(&shared_upstreams);
        let node = Arc::clone(&policies);
        let panic_path: Option<Box<[u8]>> = std::env::var("RINGWAY_TEST_PANIC_PATH")
            .ok()
            .map(|p| p.into_bytes().into());
        let (log_for_workers, spans_for_workers) = (access_log.clone(), spans.clone());
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
            let control_inbox = control_inboxes[ctx.index]
                .lock()
                .expect("inbox hand-off")
                .take()
                .expect("each worker takes its inbox once");
            let policies = crate::policy::run::WorkerPolicies::new(&node, &snap.config, inbox);
            let gen = Generation {
                id: 1,
                upstreams: Upstreams::new(&snap, &shared_for_workers, ctx.index),
                snapshot: Arc::clone(&snap),
                shared: Arc::clone(&shared_for_workers),
                policies,
            };
            let observers = (
                log_for_workers.as_ref().map(|l| l.worker(ctx.index)),
                spans_for_workers.as_ref().map(|s| s.worker(ctx.index)),
            );
            worker_main(
                ctx,
                gen,
                Arc::clone(&ctl),
                control_inbox,
                mine,
                limits.clone(),
                panic_path.clone(),
                observers,
            )
        })?;
        // Ready means serving: wait (briefly) until every worker has its listeners.
        let until = Instant::now() + Duration::from_secs(5);
        while control.started.load(Ordering::Relaxed) < workers.len()
            && Instant::now() < until
            && !workers.iter().any(|w| w.thread.is_finished())
        {
            std::thread::sleep(Duration::from_millis(1));
        }
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
                Arc::clone(&control),
                snapshot.config.state.persist_interval,
            )
        });
        let reloader = Reloader {
            control: Arc::clone(&control),
            snapshot: Arc::clone(&snapshot),
            shared: Arc::clone(&shared_upstreams),
            node: Arc::clone(&policies),
            listeners: snapshot
                .config
                .listeners
                .iter()
                .zip(&listeners)
                .map(|(l, (_, bound))| (l.address, *bound))
                .collect(),
            workers: placement.workers,
            generation: 1,
            fds,
        };
        Ok(Server {
            control,
            policies,
            keeper,
            listeners,
            workers,
            reloader: Arc::new(Mutex::new(reloader)),
            access_log,
            spans,
            inherited,
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

/// The quick host checks (`ringway-tune doctor` has them all): the kernel's accept backlog
/// cap, and descriptors for the connections the configuration allows.
fn host_warnings(config: &crate::config::Config, workers: usize, limits: &ConnectionLimits) {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    if let Some(max) = read("/proc/sys/net/core/somaxconn") {
        if max < u64::from(config.accept_backlog) {
            log::warn!(
                "net.core.somaxconn is {max}, below limits.accept_backlog {}: the kernel queues \
                 at most {max} connections per listener; raise it with `sysctl -w \
                 net.core.somaxconn={}` (ringway-tune doctor checks the host in full)",
                config.accept_backlog,
                config.accept_backlog
            );
        }
    }
    if limits.derived_from.is_none() {
        let need = (workers * limits.per_worker * 2 + 64) as u64;
        let have = nofile_limit();
        if have < need {
            log::warn!(
                "RLIMIT_NOFILE is {have}, below the {need} descriptors that \
                 limits.max_connections_per_worker {} on {workers} workers can use (a client and \
                 an upstream connection each): raise it (`ulimit -n {need}`, or LimitNOFILE={need} \
                 in the systemd unit)",
                limits.per_worker
            );
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

/// Binds `addr` (a port of 0 gets one chosen) once per worker, as a reload that adds a
/// listener does: the address bound and each worker's socket.
fn bind_for_workers(
    addr: SocketAddr,
    workers: usize,
    backlog: u32,
) -> std::io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let (bound, holder) = resolve_port(addr)?;
    if addr.port() != 0 {
        ensure_unused(bound)?;
    }
    let sockets = (0..workers)
        .map(|_| {
            bind_std(bound, backlog).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {bound}: {e}"))
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(holder);
    Ok((bound, sockets))
}

/// Whether `addr` could be listened on now (nothing else listens there).
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return resolve_port(addr).map(drop);
    }
    ensure_unused(addr)?;
    reuse_port_socket(addr)
        .map(drop)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

fn bind_std(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    let socket = reuse_port_socket(addr)?;
    socket.set_nodelay(true)?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    // monoio's epoll driver expects non-blocking sockets (io_uring does not mind).
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

// One argument per thing handed to a worker thread; a struct of them would only be unpacked.
#[allow(clippy::too_many_arguments)]
async fn worker_main(
    ctx: WorkerContext,
    gen: Generation,
    control: Arc<Control>,
    inbox: crossbeam_channel::Receiver<ToWorker>,
    listeners: Vec<(usize, std::net::TcpListener)>,
    limits: ConnectionLimits,
    panic_path: Option<Box<[u8]>>,
    (access, spans): (
        Option<crate::control::access_log::AccessLogger>,
        Option<crate::control::otlp::SpanRecorder>,
    ),
) {
    let gen = Rc::new(gen);
    let worker = Rc::new(Worker {
        index: ctx.index,
        generation: Cell::new(gen.id),
        current: RefCell::new(Rc::clone(&gen)),
        pending: RefCell::new(None),
        retired: RefCell::new(Vec::new()),
        listeners: RefCell::new(Vec::new()),
        wheel: TimerWheel::new(TICK),
        metrics: WorkerMetrics::default(),
        bufs: BufPool::new(gen.snapshot.config.buffer_size),
        draining: Cell::new(false),
        connections: Cell::new(0),
        max_connections: limits.per_worker,
        ids: RequestIds::new(ctx.index),
        accept_log: LogLimit::default(),
        connect_log: LogLimit::default(),
        panic_path,
        control: Arc::clone(&control),
        access,
        spans,
    });
    if ctx.index == 0 {
        // Worker 0 alone checks health, and tells every worker (itself included).
        crate::upstream::health::spawn_checks(&gen.snapshot, &gen.shared, |_| true);
    }
    for (i, std_listener) in listeners {
        let share = limits.per_listener[i];
        let l = &gen.snapshot.config.listeners[i];
        let tls = l.tls.as_ref().map(|t| Arc::clone(&t.config));
        let addr = std_listener.local_addr().unwrap_or(l.address);
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                log::error!("worker {}: cannot adopt listener: {e}", ctx.index);
                continue;
            }
        };
        let slot = ListenerSlot::new(&listener, addr, tls, share);
        worker.listeners.borrow_mut().push(Rc::clone(&slot));
        monoio::spawn(accept_loop(Rc::clone(&worker), listener, slot));
    }
    drop(gen);

    control.started.fetch_add(1, Ordering::Relaxed);
    let replies = control.replies.0.clone();
    // The tick: advance the wheel, take reload messages, publish metrics, and watch for a
    // drain.
    let mut drain_deadline = None;
    let mut ticks: u64 = 0;
    loop {
        monoio::time::sleep(TICK).await;
        let now = Instant::now();
        worker.wheel.advance_to(now);
        worker.on_control(&inbox, &replies);
        if let Some(log) = &worker.access {
            log.flush();
        }
        if let Some(spans) = &worker.spans {
            spans.flush();
        }
        let gen = worker.current();
        gen.upstreams.on_tick(now);
        ticks += 1;
        if ticks.is_multiple_of(POOL_SWEEP_TICKS) {
            gen.upstreams.pool.sweep(now);
            gen.policies.tick(now);
            worker.sweep_retired(&gen);
        }
        if ticks.is_multiple_of(BUF_TRIM_TICKS) {
            worker.bufs.trim();
            worker
                .metrics
                .connections_open
                .set(worker.connections.get() as u64);
            {
                let cache = gen.policies.cache.borrow();
                worker.metrics.cache_bytes.set(cache.bytes() as u64);
                worker.metrics.cache_entries.set(cache.len() as u64);
            }
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
            for slot in worker.listeners.borrow().iter() {
                if control.handoff.load(Ordering::Relaxed) {
                    // The sockets now serve the new process too: stop this one's accepts
                    // without touching them.
                    slot.stop_accepting();
                } else {
                    slot.shut();
                }
            }
            // After an upgrade's hand-over, idle connections are left to their next request
            // (answered with `Connection: close`): closing them could cross a request.
            if !worker.handing_off() {
                worker.wheel.fire_idle();
            }
            gen.upstreams.pool.clear();
            drain_deadline = Some(Instant::now() + gen.snapshot.config.timeouts.drain);
        }
        if let Some(deadline) = drain_deadline {
            // Connections that became idle since are closed by their own loop (they check
            // `draining` before waiting); this catches any that were mid-arm.
            if !worker.handing_off() {
                worker.wheel.fire_idle();
            }
            if worker.connections.get() == 0 || Instant::now() >= deadline {
                break;
            }
        }
    }
    // Publish what this core counted but has not handed on yet (quota bytes, leases).
    worker.current().policies.tick(Instant::now());
    control
        .finished
        .lock()
        .expect("metrics")
        .push((ctx.index, worker.metrics.snapshot()));
}

impl Worker {
    /// Closes the idle upstream connections that requests gave back to a generation a reload
    /// replaced, and forgets the generations no request holds any more.
    fn sweep_retired(&self, current: &Rc<Generation>) {
        let mut retired = self.retired.borrow_mut();
        retired.retain(|weak| match weak.upgrade() {
            Some(old) if !Rc::ptr_eq(&old, current) => {
                old.upstreams.pool.clear();
                true
            }
            _ => false,
        });
    }

    /// Keeps a replaced generation in view until no request holds it.
    pub(crate) fn retire(&self, old: &Rc<Generation>) {
        self.retired.borrow_mut().push(Rc::downgrade(old));
    }
}

/// The shortest and longest pause of an accept loop that is at a limit or failing.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(500);

/// Accepts connections while this worker, and its share of the listener, are under their
/// limits. At a limit it stops accepting (the kernel's backlog holds new clients) and looks
/// again after a pause that doubles while the limit holds; accept errors (EMFILE, ENFILE,
/// ENOBUFS) pause the same way, and are logged at most once a second.
async fn accept_loop(worker: Rc<Worker>, listener: TcpListener, slot: Rc<ListenerSlot>) {
    let mut pause = ACCEPT_PAUSE_MIN;
    loop {
        if slot.closed.get() || worker.draining.get() {
            return;
        }
        if worker.connections.get() >= worker.max_connections || slot.open.get() >= slot.share.get()
        {
            monoio::time::sleep(pause).await;
            pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
            continue;
        }
        let Some(handle) = slot.canceller.borrow().as_ref().map(|c| c.handle()) else {
            return;
        };
        let accepted = listener.cancelable_accept(handle).await;
        // Stopping: a connection the accept took before it was cancelled is still served.
        let stopping = slot.closed.get() || worker.draining.get();
        if stopping && accepted.is_err() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                pause = ACCEPT_PAUSE_MIN;
                let _ = stream.set_nodelay(true);
                worker.connections.set(worker.connections.get() + 1);
                slot.open.set(slot.open.get() + 1);
                let counted = conn::Counted::new(Rc::clone(&worker), Rc::clone(&slot.open));
                let tls = slot.tls.borrow().clone();
                let stream = match tls {
                    None => Io::Plain(stream),
                    Some(config) => match rustls::ServerConnection::new(config) {
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
                if stopping {
                    return;
                }
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
