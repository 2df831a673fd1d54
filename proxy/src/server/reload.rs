//! Hot reload: a new configuration, compiled once on the control side, switched on every
//! worker in two phases.
//!
//! 1. The control side validates and compiles the document into a [`Snapshot`], builds the
//!    node-wide state for it (limit tables, breakers, health inboxes; each carrying over what
//!    the old one held under the same name) and binds the listeners the reload adds. Any
//!    failure here refuses the reload before a worker hears of it.
//! 2. *Prepare*: each worker builds its own state for the plan (upstream pools, balancers,
//!    policy shards) beside the one it serves from, adopts its new listener sockets, and
//!    answers. Nothing it serves changes.
//! 3. *Commit* when every worker prepared, *abort* otherwise (or after [`PHASE_TIMEOUT`]).
//!    On commit a worker makes the new [`Generation`] current, moves idle upstream
//!    connections and health marks across, starts and stops accept loops, and answers again:
//!    the reload is done when all have.
//!
//! Workers read their messages on their tick (every 10 ms) with `try_recv`: none ever waits on
//! the control side. A request in flight keeps the generation it started on (its connection
//! holds an `Rc` of it); the connection's next request takes the current one.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use monoio::net::TcpListener;

use super::{accept_loop, Control, Worker};
use crate::config::{Config, ConfigError};
use crate::policy::run::{NodePolicies, WorkerPolicies};
use crate::snapshot::Snapshot;
use crate::upstream::{SharedUpstreams, Upstreams};

/// How long the control side waits for every worker to answer a phase.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one worker serves from: one configuration and this core's state for it.
pub(crate) struct Generation {
    pub id: u64,
    pub snapshot: Arc<Snapshot>,
    pub shared: Arc<SharedUpstreams>,
    pub upstreams: Upstreams,
    pub policies: WorkerPolicies,
}

/// A message from the control side to one worker.
pub(crate) enum ToWorker {
    Prepare(Arc<Plan>),
    Commit(u64),
    Abort(u64),
}

/// A worker's answer to a phase: its index, the plan's id, and an error when it failed.
pub(crate) type Reply = (usize, u64, Result<(), String>);

/// Everything a worker needs to switch to a new configuration.
pub(crate) struct Plan {
    pub id: u64,
    pub snapshot: Arc<Snapshot>,
    pub shared: Arc<SharedUpstreams>,
    pub node: Arc<NodePolicies>,
    /// The node state the workers serve from now (their policy shards are matched to it).
    pub old_node: Arc<NodePolicies>,
    /// Per target of the new snapshot: its index in the old one, when it had it.
    pub from_old: Vec<Option<usize>>,
    pub listeners: Vec<ListenerPlan>,
}

/// One listener of the new configuration.
pub(crate) struct ListenerPlan {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// This worker's share of the listener's `max_connections`.
    pub share: usize,
    /// For a listener the reload adds: each worker's socket, taken once.
    pub fresh: Option<Vec<Mutex<Option<std::net::TcpListener>>>>,
}

/// One listener on one worker: what its accept loop reads on each accept.
pub(crate) struct ListenerSlot {
    pub addr: SocketAddr,
    pub fd: RawFd,
    pub tls: RefCell<Option<Arc<rustls::ServerConfig>>>,
    pub share: Cell<usize>,
    /// Set when a reload removed the listener: its loop returns.
    pub closed: Cell<bool>,
    /// Cancels the pending accept (an upgrade's drain, which must not touch the socket).
    pub canceller: RefCell<Option<monoio::io::Canceller>>,
    /// Connections open on this listener on this worker.
    pub open: Rc<Cell<usize>>,
}

impl ListenerSlot {
    pub fn new(
        listener: &TcpListener,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        share: usize,
    ) -> Rc<ListenerSlot> {
        Rc::new(ListenerSlot {
            addr,
            fd: listener.as_raw_fd(),
            tls: RefCell::new(tls),
            share: Cell::new(share),
            closed: Cell::new(false),
            canceller: RefCell::new(Some(monoio::io::Canceller::new())),
            open: Rc::new(Cell::new(0)),
        })
    }

    /// Stops accepting without touching the socket (which another process may share): the
    /// pending accept is cancelled (a connection it already took is still served).
    pub fn stop_accepting(&self) {
        self.closed.set(true);
        if let Some(c) = self.canceller.borrow_mut().take() {
            let _ = c.cancel();
        }
    }

    /// Wakes the pending accept, after which the loop sees `closed` or the drain and drops
    /// (closes) the listener.
    pub fn shut(&self) {
        // SAFETY: shutdown(2) has no memory effects; the descriptor is open while the accept
        // loop owns the listener (and a stale one only gets ENOTSOCK or EBADF).
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }
}

/// A worker's prepared, not yet committed, switch.
pub(crate) struct Pending {
    plan: Arc<Plan>,
    gen: Generation,
    /// New listeners' sockets, by index into `plan.listeners`.
    fresh: Vec<(usize, TcpListener)>,
}

impl Worker {
    /// Handles the control side's messages; called on the worker's tick.
    pub(crate) fn on_control(
        self: &Rc<Worker>,
        inbox: &Receiver<ToWorker>,
        replies: &Sender<Reply>,
    ) {
        while let Ok(message) = inbox.try_recv() {
            match message {
                ToWorker::Prepare(plan) => {
                    let id = plan.id;
                    let result = self.prepare(plan);
                    let _ = replies.send((self.index, id, result));
                }
                ToWorker::Commit(id) => {
                    let result = self.commit(id);
                    let _ = replies.send((self.index, id, result));
                }
                ToWorker::Abort(id) => {
                    // Dropping it closes the sockets it adopted.
                    if self
                        .pending
                        .borrow()
                        .as_ref()
                        .is_some_and(|p| p.plan.id == id)
                    {
                        self.pending.borrow_mut().take();
                    }
                }
            }
        }
    }

    fn prepare(&self, plan: Arc<Plan>) -> Result<(), String> {
        let current = self.current();
        let gen = Generation {
            id: plan.id,
            upstreams: Upstreams::new(&plan.snapshot, &plan.shared, self.index),
            policies: current
                .policies
                .next(&plan.old_node, &plan.node, &plan.snapshot.config),
            snapshot: Arc::clone(&plan.snapshot),
            shared: Arc::clone(&plan.shared),
        };
        let mut fresh = Vec::new();
        for (i, l) in plan.listeners.iter().enumerate() {
            let Some(sockets) = &l.fresh else { continue };
            let socket = sockets[self.index]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| format!("listener {} was handed out twice", l.addr))?;
            let listener = TcpListener::from_std(socket)
                .map_err(|e| format!("cannot adopt the listener on {}: {e}", l.addr))?;
            fresh.push((i, listener));
        }
        *self.pending.borrow_mut() = Some(Pending { plan, gen, fresh });
        Ok(())
    }

    fn commit(self: &Rc<Worker>, id: u64) -> Result<(), String> {
        let Some(Pending { plan, gen, fresh }) = self.pending.borrow_mut().take() else {
            return Err(format!("no prepared configuration {id}"));
        };
        if plan.id != id {
            return Err(format!(
                "prepared configuration {} but asked to commit {id}",
                plan.id
            ));
        }
        let old = self.current();
        gen.upstreams.carry_from(&old.upstreams, &plan.from_old);
        let gen = Rc::new(gen);
        *self.current.borrow_mut() = Rc::clone(&gen);
        self.generation.set(id);
        self.retire(&old);
        drop(old);

        // Listeners: keep those still configured (with their new settings), close the rest,
        // and start the new ones.
        let mut slots = self.listeners.borrow_mut();
        slots.retain(|slot| {
            match plan
                .listeners
                .iter()
                .find(|l| l.addr == slot.addr && l.fresh.is_none())
            {
                Some(l) => {
                    *slot.tls.borrow_mut() = l.tls.clone();
                    slot.share.set(l.share);
                    true
                }
                None => {
                    slot.closed.set(true);
                    slot.shut();
                    false
                }
            }
        });
        for (i, listener) in fresh {
            let l = &plan.listeners[i];
            let slot = ListenerSlot::new(&listener, l.addr, l.tls.clone(), l.share);
            slots.push(Rc::clone(&slot));
            monoio::spawn(accept_loop(Rc::clone(self), listener, slot));
        }
        drop(slots);
        if self.index == 0 {
            crate::upstream::health::spawn_checks(&gen.snapshot, &gen.shared, |t| {
                gen.upstreams.is_healthy(t)
            });
        }
        Ok(())
    }
}

/// Why a reload was refused. Nothing changed.
#[derive(Debug)]
pub struct ReloadError {
    /// Every error, each naming where it is (`file: path.to.field: what`).
    pub errors: Vec<String>,
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.errors.join("\n"))
    }
}

impl From<ConfigError> for ReloadError {
    fn from(e: ConfigError) -> Self {
        ReloadError { errors: e.errors }
    }
}

/// A reload that took effect.
#[derive(Clone, Debug)]
pub struct Reloaded {
    pub generation: u64,
    /// From the start of the switch (the configuration compiled) to every worker switched.
    pub switch: Duration,
    /// From the call (the signal, the file change, the request) to every worker switched.
    pub total: Duration,
    /// Settings that changed but apply only at the next start.
    pub warnings: Vec<String>,
}

/// The control side of reloads. One at a time: callers share it behind a mutex.
pub struct Reloader {
    pub(super) control: Arc<Control>,
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) shared: Arc<SharedUpstreams>,
    pub(super) node: Arc<NodePolicies>,
    /// Each listener: the address configured, and the one bound (they differ for port 0).
    pub(super) listeners: Vec<(SocketAddr, SocketAddr)>,
    pub(super) workers: usize,
    pub(super) generation: u64,
    /// Each listener's sockets (every worker's), for an upgrade's hand-over.
    pub(super) fds: Vec<Vec<RawFd>>,
}

impl Reloader {
    /// The configuration being served.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The node-wide policy state being served (limit tables, purge hub).
    pub fn node(&self) -> &Arc<NodePolicies> {
        &self.node
    }

    pub fn shared_upstreams(&self) -> &Arc<SharedUpstreams> {
        &self.shared
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every listener's addresses (configured, bound) and sockets, for an upgrade.
    pub fn handoff(&self) -> Vec<(SocketAddr, SocketAddr, Vec<RawFd>)> {
        self.listeners
            .iter()
            .zip(&self.fds)
            .map(|(&(configured, bound), fds)| (configured, bound, fds.clone()))
            .collect()
    }

    /// The addresses every listener is bound to, by name.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.snapshot
            .config
            .listeners
            .iter()
            .zip(&self.listeners)
            .map(|(l, (_, bound))| (l.name.clone(), *bound))
            .collect()
    }

    /// Checks `config` as a reload would (compiles it, and sees that its new listeners can
    /// bind), without switching anything.
    pub fn check(&self, config: Config) -> Result<Vec<String>, ReloadError> {
        let snapshot = Snapshot::build(config)?;
        let warnings = self.restart_only(&snapshot.config);
        for l in &snapshot.config.listeners {
            if !self
                .listeners
                .iter()
                .any(|(configured, _)| *configured == l.address)
            {
                super::probe_bind(l.address).map_err(|e| ReloadError {
                    errors: vec![format!("listener {}: {e}", l.name)],
                })?;
            }
        }
        Ok(warnings)
    }

    /// Switches every worker to `config`, or to nothing new at all. `asked` is when the reload
    /// was asked for (for the reported latency).
    pub fn apply(&mut self, config: Config, asked: Instant) -> Result<Reloaded, ReloadError> {
        let snapshot = Arc::new(Snapshot::build(config)?);
        let started = Instant::now();
        let warnings = self.restart_only(&snapshot.config);
        let id = self.generation + 1;

        // Targets kept by name: backend name and target URL.
        let from_old: Vec<Option<usize>> = snapshot
            .targets
            .iter()
            .map(|t| {
                let name = &snapshot.config.backends[t.backend].name;
                self.snapshot.targets.iter().position(|o| {
                    self.snapshot.config.backends[o.backend].name == *name
                        && o.addr == t.addr
                        && o.authority == t.authority
                        && o.tls.is_some() == t.tls.is_some()
                })
            })
            .collect();
        let shared = Arc::new(SharedUpstreams::next(
            &self.shared,
            &snapshot,
            self.workers,
            &from_old,
        ));
        let (node, fetch_keys) = NodePolicies::next(&self.node, &snapshot.config);
        if fetch_keys {
            node.jwks
                .start()
                .map_err(|e| ReloadError { errors: vec![e] })?;
        }

        // Listeners: the ones whose configured address is kept stay bound; new ones are bound
        // here, for every worker, so that an address that cannot be had refuses the reload.
        let limits = super::ConnectionLimits::new(&snapshot.config, self.workers);
        let mut bound = Vec::new();
        let mut fds = Vec::new();
        let mut plans = Vec::new();
        for (i, l) in snapshot.config.listeners.iter().enumerate() {
            let tls = l.tls.as_ref().map(|t| Arc::clone(&t.config));
            let share = limits.per_listener[i];
            if let Some(k) = self.listeners.iter().position(|(c, _)| *c == l.address) {
                let addr = self.listeners[k].1;
                fds.push(self.fds[k].clone());
                bound.push((l.address, addr));
                plans.push(ListenerPlan {
                    addr,
                    tls,
                    share,
                    fresh: None,
                });
                continue;
            }
            let (addr, sockets) =
                super::bind_for_workers(l.address, self.workers, snapshot.config.accept_backlog)
                    .map_err(|e| ReloadError {
                        errors: vec![format!("listener {}: {e}", l.name)],
                    })?;
            bound.push((l.address, addr));
            fds.push(sockets.iter().map(AsRawFd::as_raw_fd).collect());
            plans.push(ListenerPlan {
                addr,
                tls,
                share,
                fresh: Some(sockets.into_iter().map(|s| Mutex::new(Some(s))).collect()),
            });
        }

        let plan = Arc::new(Plan {
            id,
            snapshot: Arc::clone(&snapshot),
            shared: Arc::clone(&shared),
            node: Arc::clone(&node),
            old_node: Arc::clone(&self.node),
            from_old,
            listeners: plans,
        });
        let control = &self.control;
        control.drain_replies();
        control.send_all(|| ToWorker::Prepare(Arc::clone(&plan)));
        if let Err(errors) = control.collect(id, PHASE_TIMEOUT) {
            control.send_all(|| ToWorker::Abort(id));
            return Err(ReloadError {
                errors: errors
                    .into_iter()
                    .map(|e| format!("the workers could not prepare it: {e}"))
                    .collect(),
            });
        }
        control.send_all(|| ToWorker::Commit(id));
        if let Err(errors) = control.collect(id, PHASE_TIMEOUT) {
            // Workers that committed serve the new configuration; one that did not is stuck
            // or gone, which the process's supervision of its workers handles.
            log::error!(
                "reload {id}: not every worker switched: {}",
                errors.join("; ")
            );
        }
        let switch = started.elapsed();
        self.shared.retire();
        self.snapshot = snapshot;
        self.shared = shared;
        self.node = Arc::clone(&node);
        *control.node.lock().unwrap_or_else(|e| e.into_inner()) = node;
        self.listeners = bound;
        self.fds = fds;
        self.generation = id;
        control
            .generation
            .store(id, std::sync::atomic::Ordering::Relaxed);
        Ok(Reloaded {
            generation: id,
            switch,
            total: asked.elapsed(),
            warnings,
        })
    }

    /// Settings a running process cannot change, named when the new configuration changes
    /// them: they apply at the next start.
    fn restart_only(&self, new: &Config) -> Vec<String> {
        let old = &self.snapshot.config;
        let mut changed = Vec::new();
        if old.workers != new.workers {
            changed.push("workers");
        }
        if old.cpus != new.cpus {
            changed.push("cpus");
        }
        if format!("{:?}", old.runtime) != format!("{:?}", new.runtime) {
            changed.push("runtime");
        }
        if old.max_connections_per_worker != new.max_connections_per_worker {
            changed.push("limits.max_connections_per_worker");
        }
        if old.admin.as_ref().map(|a| a.address) != new.admin.as_ref().map(|a| a.address) {
            changed.push("admin.address");
        }
        if old.state.path != new.state.path {
            changed.push("state.path");
        }
        if old.buffer_size != new.buffer_size {
            changed.push("runtime.buffer_size");
        }
        if old.accept_backlog != new.accept_backlog {
            changed.push("limits.accept_backlog (for the listeners kept)");
        }
        if format!("{:?}", old.access_log) != format!("{:?}", new.access_log) {
            changed.push("access_log");
        }
        if format!("{:?}", old.tracing) != format!("{:?}", new.tracing) {
            changed.push("tracing");
        }
        let portal = |c: &Config| {
            c.portal.as_ref().map(|p| {
                let mut p = p.clone();
                p.tls = None;
                format!("{p:?}")
            })
        };
        if portal(old) != portal(new) {
            changed.push("portal");
        }
        let admin_tls = |c: &Config| c.admin.as_ref().map(|a| a.tls.is_some());
        if admin_tls(old) != admin_tls(new) {
            changed.push("admin.tls");
        }
        changed
            .into_iter()
            .map(|what| format!("{what} changed: it applies when the process next starts"))
            .collect()
    }
}
