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

pub use io::RecvBuf;

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use ringway_core::metrics::{MetricsSnapshot, WorkerMetrics};
use ringway_core::runtime::{self, Placement, WorkerContext};
use ringway_core::timer::TimerWheel;

use crate::snapshot::Snapshot;
use crate::upstream::Upstreams;

const TICK: Duration = Duration::from_millis(10);
/// Idle pooled connections are aged out every this many ticks (100 ms).
const POOL_SWEEP_TICKS: u64 = 10;

/// One worker's state, shared by its connection tasks (`Rc`: never leaves its thread).
pub(crate) struct Worker {
    pub snapshot: Arc<Snapshot>,
    pub upstreams: Upstreams,
    pub wheel: TimerWheel,
    pub metrics: WorkerMetrics,
    pub draining: Cell<bool>,
    pub connections: Cell<usize>,
    pub ids: RequestIds,
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
}

impl Control {
    /// Asks every worker to stop accepting, finish in-flight requests and exit.
    pub fn drain(&self) {
        self.drain.store(true, Ordering::Relaxed);
    }

    fn draining(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
    }
}

/// A running server.
pub struct Server {
    pub control: Arc<Control>,
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
        let snapshot = Arc::new(snapshot);
        let control = Arc::new(Control::default());
        let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();

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
        let workers = runtime::launch("ringway-worker", &placement, settings, move |ctx| {
            if let Some(hook) = &on_thread_start {
                hook(ctx.index);
            }
            let mine = std_listeners[ctx.index]
                .lock()
                .expect("listener hand-off")
                .take()
                .expect("each worker takes its listeners once");
            worker_main(ctx, Arc::clone(&snap), Arc::clone(&ctl), mine)
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
        Ok(Server {
            control,
            listeners,
            workers,
        })
    }

    /// Waits for the workers to exit (after [`Control::drain`]), at most `deadline`. Returns
    /// each worker's final metrics, or `None` if some worker did not finish in time.
    pub fn wait(self, deadline: Duration) -> Option<Vec<(usize, MetricsSnapshot)>> {
        let until = Instant::now() + deadline;
        for w in self.workers {
            while !w.thread.is_finished() {
                if Instant::now() >= until {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = w.thread.join();
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

fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = reuse_port_socket(addr)?;
    socket.set_nodelay(true)?;
    socket.listen(4096)?;
    // monoio's epoll driver expects non-blocking sockets (io_uring does not mind).
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn worker_main(
    ctx: WorkerContext,
    snapshot: Arc<Snapshot>,
    control: Arc<Control>,
    listeners: Vec<std::net::TcpListener>,
) {
    let worker = Rc::new(Worker {
        upstreams: Upstreams::new(&snapshot),
        snapshot,
        wheel: TimerWheel::new(TICK),
        metrics: WorkerMetrics::default(),
        draining: Cell::new(false),
        connections: Cell::new(0),
        ids: RequestIds::new(ctx.index),
    });
    let mut listener_fds = Vec::new();
    for std_listener in listeners {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                log::error!("worker {}: cannot adopt listener: {e}", ctx.index);
                continue;
            }
        };
        listener_fds.push(listener.as_raw_fd());
        monoio::spawn(accept_loop(Rc::clone(&worker), listener));
    }

    // The tick: advance the wheel, and watch for a drain.
    let mut drain_deadline = None;
    let mut ticks: u64 = 0;
    loop {
        monoio::time::sleep(TICK).await;
        let now = Instant::now();
        worker.wheel.advance_to(now);
        ticks += 1;
        if ticks.is_multiple_of(POOL_SWEEP_TICKS) {
            worker.upstreams.pool.sweep(now);
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
    control
        .finished
        .lock()
        .expect("metrics")
        .push((ctx.index, worker.metrics.snapshot()));
}

async fn accept_loop(worker: Rc<Worker>, listener: TcpListener) {
    loop {
        let accepted = listener.accept().await;
        if worker.draining.get() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let w = Rc::clone(&worker);
                monoio::spawn(async move {
                    w.connections.set(w.connections.get() + 1);
                    conn::Conn::new(Rc::clone(&w), stream, peer).run().await;
                    w.connections.set(w.connections.get() - 1);
                });
            }
            Err(e) => {
                // EMFILE and the like: back off briefly rather than spin.
                log::warn!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
