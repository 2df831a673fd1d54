//! The thread-per-core launcher.
//!
//! [`launch`] starts one OS thread per worker, pins it to its CPU, builds that thread's own
//! monoio runtime (io_uring with the configured ring size and setup flags, or epoll) and runs the
//! worker's future on it. Workers share nothing through this module: each gets a
//! [`WorkerContext`] naming its index, CPU and driver, and builds its own state on its own
//! thread. The launcher reports which driver each worker got, because monoio's own fallback to
//! epoll is silent and costs a large share of throughput.
//!
//! Cross-core wake-ups are not supported (monoio's `sync` feature is off): control reaches a
//! worker through state it polls on its own timer tick.

mod affinity;

pub use affinity::{allowed_cpus, parse_cpu_list, pin_current_thread};

use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

/// Which I/O driver a worker's runtime uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Driver {
    /// io_uring, falling back to epoll where io_uring is refused.
    #[default]
    Auto,
    /// io_uring or refuse to start.
    IoUring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// io_uring setup flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RingFlags {
    None,
    /// IORING_SETUP_COOP_TASKRUN.
    CoopTaskrun,
    /// IORING_SETUP_DEFER_TASKRUN with IORING_SETUP_SINGLE_ISSUER (Linux 6.1+): completions are
    /// processed only when the worker asks for them, which measured 5-10 % less CPU per
    /// proxied request than COOP_TASKRUN here.
    #[default]
    DeferTaskrun,
    /// IORING_SETUP_SQPOLL: a kernel thread per ring polls the submission queue (idle after
    /// [`SQPOLL_IDLE_MS`]), so submitting needs no system call while it runs; it costs that
    /// thread's CPU.
    Sqpoll,
}

/// How each worker's runtime is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeSettings {
    pub driver: Driver,
    pub ring_entries: u32,
    pub ring_flags: RingFlags,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            driver: Driver::Auto,
            ring_entries: 1024,
            ring_flags: RingFlags::DeferTaskrun,
        }
    }
}

/// The driver a worker actually runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    IoUring(RingFlags),
    Epoll,
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverKind::IoUring(RingFlags::None) => f.write_str("io_uring"),
            DriverKind::IoUring(RingFlags::CoopTaskrun) => f.write_str("io_uring (coop_taskrun)"),
            DriverKind::IoUring(RingFlags::DeferTaskrun) => {
                f.write_str("io_uring (defer_taskrun, single_issuer)")
            }
            DriverKind::IoUring(RingFlags::Sqpoll) => f.write_str("io_uring (sqpoll)"),
            DriverKind::Epoll => f.write_str("epoll"),
        }
    }
}

/// How long an SQPOLL ring's kernel thread spins without work before it sleeps.
pub const SQPOLL_IDLE_MS: u32 = 50;

/// What a worker knows about itself.
#[derive(Clone, Copy, Debug)]
pub struct WorkerContext {
    pub index: usize,
    pub cpu: Option<usize>,
    pub driver: DriverKind,
}

/// A started worker thread.
pub struct Worker {
    pub context: WorkerContext,
    pub thread: JoinHandle<()>,
}

/// How many workers, and where they run.
#[derive(Clone, Debug)]
pub struct Placement {
    pub workers: usize,
    /// CPUs to pin to, worker `i` on `cpus[i % len]`; empty = do not pin.
    pub cpus: Vec<usize>,
}

impl Placement {
    /// `workers` (None = one per CPU) over `cpus` (None = every CPU this process may use).
    pub fn new(workers: Option<usize>, cpus: Option<&[usize]>) -> Placement {
        let cpus = match cpus {
            Some(list) => list.to_vec(),
            None => allowed_cpus(),
        };
        let workers = workers.unwrap_or(cpus.len().max(1));
        Placement { workers, cpus }
    }

    fn cpu_of(&self, index: usize) -> Option<usize> {
        (!self.cpus.is_empty()).then(|| self.cpus[index % self.cpus.len()])
    }
}

enum WorkerRuntime {
    IoUring(monoio::Runtime<TimeDriver<IoUringDriver>>),
    Epoll(monoio::Runtime<TimeDriver<LegacyDriver>>),
}

impl WorkerRuntime {
    fn build(settings: &RuntimeSettings) -> io::Result<(WorkerRuntime, DriverKind)> {
        let want_uring = match settings.driver {
            Driver::Epoll => false,
            Driver::IoUring => {
                if !monoio::utils::detect_uring() {
                    return Err(io::Error::other(
                        "runtime.driver is io_uring, but io_uring is not available here \
                         (kernel.io_uring_disabled, a seccomp profile, an old kernel, or \
                         MONOIO_FORCE_LEGACY_DRIVER); use driver: auto or epoll",
                    ));
                }
                true
            }
            Driver::Auto => monoio::utils::detect_uring(),
        };
        if want_uring {
            // Older kernels refuse newer setup flags: step down through the older ones before
            // giving up on io_uring.
            let fallbacks: &[RingFlags] = match settings.ring_flags {
                RingFlags::DeferTaskrun => &[
                    RingFlags::DeferTaskrun,
                    RingFlags::CoopTaskrun,
                    RingFlags::None,
                ],
                RingFlags::CoopTaskrun => &[RingFlags::CoopTaskrun, RingFlags::None],
                RingFlags::Sqpoll => &[RingFlags::Sqpoll, RingFlags::CoopTaskrun, RingFlags::None],
                RingFlags::None => &[RingFlags::None],
            };
            let mut last_error = None;
            for &flags in fallbacks {
                match Self::build_uring(settings.ring_entries, flags) {
                    Ok(rt) => {
                        if flags != settings.ring_flags {
                            log::warn!(
                                "io_uring refused {:?} ({}); using {flags:?}",
                                settings.ring_flags,
                                last_error
                                    .as_ref()
                                    .map_or(String::new(), |e: &io::Error| e.to_string())
                            );
                        }
                        return Ok((rt, DriverKind::IoUring(flags)));
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            let e = last_error.expect("at least one attempt");
            if settings.driver == Driver::IoUring {
                return Err(io::Error::other(format!(
                    "io_uring setup with {} entries failed: {e}",
                    settings.ring_entries
                )));
            }
            log::warn!("io_uring setup failed ({e}); falling back to epoll");
        }
        let rt = RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()?;
        Ok((WorkerRuntime::Epoll(rt), DriverKind::Epoll))
    }

    fn build_uring(entries: u32, flags: RingFlags) -> io::Result<WorkerRuntime> {
        let mut urb = io_uring::IoUring::builder();
        match flags {
            RingFlags::None => {}
            RingFlags::CoopTaskrun => {
                urb.setup_coop_taskrun();
            }
            RingFlags::DeferTaskrun => {
                urb.setup_defer_taskrun();
                urb.setup_single_issuer();
            }
            RingFlags::Sqpoll => {
                urb.setup_sqpoll(SQPOLL_IDLE_MS);
            }
        }
        let rt = RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(entries)
            .uring_builder(urb)
            .enable_timer()
            .build()?;
        Ok(WorkerRuntime::IoUring(rt))
    }

    fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        match self {
            WorkerRuntime::IoUring(rt) => rt.block_on(future),
            WorkerRuntime::Epoll(rt) => rt.block_on(future),
        }
    }
}

/// Starts `placement.workers` pinned worker threads named `{name}-{index}`, each running
/// `body(context)` on its own runtime until the future completes. Returns once every worker has
/// built its runtime, or the first error if any could not.
pub fn launch<F, Fut>(
    name: &str,
    placement: &Placement,
    settings: RuntimeSettings,
    body: F,
) -> io::Result<Vec<Worker>>
where
    F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let body = Arc::new(body);
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, io::Result<WorkerContext>)>();
    let mut threads = Vec::with_capacity(placement.workers);
    for index in 0..placement.workers {
        let cpu = placement.cpu_of(index);
        let body = Arc::clone(&body);
        let ready_tx = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = pin_current_thread(cpu) {
                        log::warn!("worker {index}: could not pin to CPU {cpu}: {e}");
                    }
                }
                let (mut rt, driver) = match WorkerRuntime::build(&settings) {
                    Ok(built) => built,
                    Err(e) => {
                        let _ = ready_tx.send((index, Err(e)));
                        return;
                    }
                };
                let context = WorkerContext { index, cpu, driver };
                let _ = ready_tx.send((index, Ok(context)));
                drop(ready_tx);
                rt.block_on(body(context));
            })
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start worker thread {index} of {}: {e} (the process may be at \
                         its thread limit, RLIMIT_NPROC or the cgroup's pids.max, or out of \
                         memory for thread stacks)",
                        placement.workers
                    ),
                )
            })?;
        threads.push(thread);
    }
    drop(ready_tx);
    let mut contexts: Vec<Option<WorkerContext>> = vec![None; placement.workers];
    let mut first_error = None;
    for (index, result) in ready_rx.iter() {
        match result {
            Ok(context) => contexts[index] = Some(context),
            Err(e) => {
                first_error.get_or_insert(io::Error::new(e.kind(), format!("worker {index}: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(threads
        .into_iter()
        .zip(contexts)
        .map(|(thread, context)| Worker {
            context: context.expect("every worker reported"),
            thread,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn workers_run_on_their_own_runtimes() {
        let ran = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&ran);
        let placement = Placement::new(Some(2), None);
        let workers = launch("test", &placement, RuntimeSettings::default(), move |ctx| {
            let seen = Arc::clone(&seen);
            async move {
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                seen.fetch_add(ctx.index + 1, Ordering::Relaxed);
            }
        })
        .unwrap();
        assert_eq!(workers.len(), 2);
        for w in workers {
            w.thread.join().unwrap();
        }
        assert_eq!(ran.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn epoll_is_honoured() {
        let settings = RuntimeSettings {
            driver: Driver::Epoll,
            ..RuntimeSettings::default()
        };
        let workers = launch(
            "test",
            &Placement::new(Some(1), None),
            settings,
            |_| async {},
        )
        .unwrap();
        assert_eq!(workers[0].context.driver, DriverKind::Epoll);
        workers.into_iter().for_each(|w| w.thread.join().unwrap());
    }

    #[test]
    fn every_ring_flag_setting_builds_or_falls_back() {
        for flags in [
            RingFlags::None,
            RingFlags::CoopTaskrun,
            RingFlags::DeferTaskrun,
        ] {
            let settings = RuntimeSettings {
                ring_flags: flags,
                ..RuntimeSettings::default()
            };
            let workers = launch(
                "test",
                &Placement::new(Some(1), None),
                settings,
                |_| async {
                    let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    let addr = l.local_addr().unwrap();
                    let accept = monoio::spawn(async move { l.accept().await.map(|_| ()) });
                    monoio::net::TcpStream::connect(addr).await.unwrap();
                    accept.await.unwrap();
                },
            )
            .unwrap();
            let driver = workers[0].context.driver;
            assert!(
                driver == DriverKind::IoUring(flags) || driver == DriverKind::Epoll,
                "{driver}"
            );
            workers.into_iter().for_each(|w| w.thread.join().unwrap());
        }
    }
}
