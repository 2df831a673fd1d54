//! One load worker: its share of the connections, its plan, its stats, all on one pinned
//! monoio runtime.
//!
//! The worker's root task starts the connection tasks, the timer wheel's ticker and (open loop)
//! the pacer reader, waits out warm-up, then either the duration or (with `-n`) every
//! connection, and hands its stats to the main thread. Connections still waiting on a response
//! when a timed run ends are abandoned with the runtime: their requests were sent after the
//! window closed or will be answered after it, and count nowhere (as in wrk).

use std::cell::{Cell, RefCell};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use monoio::io::AsyncReadRent;
use ringway_core::timer::TimerWheel;

use crate::client::{self, Handshake, TlsTarget};
use crate::plan::Plan;
use crate::stats::{ErrorKind, Live, Stats};
use crate::target::Target;

/// The timer wheel's tick: request timeouts fire at most this late.
const WHEEL_TICK: Duration = Duration::from_millis(10);

/// How long an open-loop run waits for the answers to requests sent inside its window.
const OPEN_LOOP_GRACE: Duration = Duration::from_secs(2);

/// What a worker is told to do.
pub struct Assignment {
    /// One entry per connection: the target it loads.
    pub connections: Vec<usize>,
    pub targets: &'static [Target],
    pub tls: Vec<Option<TlsTarget>>,
    pub plan: PlanSpec,
    pub pipeline: usize,
    /// `--new-connection`: one connection per request.
    pub new_connection: bool,
    pub timeout: Duration,
    /// Load starts here (connections open before it).
    pub load_from: Instant,
    /// Measurement starts here (after warm-up).
    pub measure_from: Instant,
    /// A timed run ends here; `None` = when the `-n` budget is spent.
    pub until: Option<Instant>,
    pub live: Arc<Live>,
    pub results: Sender<Message>,
    /// With `--hdr-log`: send each second's histogram.
    pub intervals: bool,
}

pub enum PlanSpec {
    Closed(Option<u64>),
    Open(crate::plan::Cadence, StdUnixStream),
}

/// What workers tell the main thread.
pub enum Message {
    /// Latencies of one interval of `--hdr-log`, numbered from 0 at the start of measurement.
    Interval {
        second: u32,
        latency_us: Histogram<u64>,
    },
    /// The worker is done: its stats and when it finished.
    Done {
        stats: Box<Stats>,
        finished: Instant,
    },
}

/// A worker's state, shared by its tasks (all on one thread).
pub struct WorkerState {
    pub plan: Plan,
    pub stats: RefCell<Stats>,
    pub wheel: TimerWheel,
    pub pipeline: usize,
    pub new_connection: bool,
    pub timeout: Duration,
    pub load_from: Instant,
    pub measure_from: Instant,
    measuring: Cell<bool>,
    live: Arc<Live>,
    /// The latency histogram as of the last `--hdr-log` interval boundary.
    interval_base: RefCell<Option<Histogram<u64>>>,
    /// The number of the next interval to send.
    interval_next: Cell<u32>,
    /// Requests granted and not yet answered or failed.
    pub in_flight: Cell<usize>,
}

impl WorkerState {
    /// Records a response to a request sent (or intended) at `start`.
    #[inline]
    pub fn record(&self, start: Instant, status: u16) {
        if start >= self.measure_from {
            let mut stats = self.stats.borrow_mut();
            stats.response(status, start.elapsed());
            self.live.publish(&stats);
        }
    }

    pub fn record_error(&self, start: Instant, kind: ErrorKind) {
        if start >= self.measure_from {
            let mut stats = self.stats.borrow_mut();
            stats.error(kind);
            self.live.publish(&stats);
        }
    }

    /// Counts a connection opened for a request sent (or intended) at `start`, or at `start`
    /// itself, and its TLS handshake.
    pub fn record_open(&self, start: Instant, handshake: Option<Handshake>) {
        if start >= self.measure_from {
            self.stats.borrow_mut().opened(handshake);
        }
    }

    #[inline]
    pub fn count_bytes(&self, n: usize) {
        if self.measuring.get() {
            self.stats.borrow_mut().bytes += n as u64;
        }
    }

    /// The latencies recorded since the last interval boundary; moves the boundary here.
    fn take_interval(&self) -> Histogram<u64> {
        let now = self.stats.borrow().latency_us.clone();
        let mut base = self.interval_base.borrow_mut();
        let mut interval = now.clone();
        if let Some(prev) = base.as_ref() {
            interval
                .subtract(prev)
                .expect("the total only grows and shares bounds");
        }
        *base = Some(now);
        interval
    }
}

/// The worker's root task.
pub async fn run(a: Assignment) {
    let (plan, signal) = match a.plan {
        PlanSpec::Closed(count) => (Plan::closed(count, a.measure_from), None),
        PlanSpec::Open(cadence, signal) => (Plan::open(cadence), Some(signal)),
    };
    let w = Rc::new(WorkerState {
        plan,
        stats: RefCell::new(Stats::default()),
        wheel: TimerWheel::new(WHEEL_TICK),
        pipeline: a.pipeline,
        new_connection: a.new_connection,
        timeout: a.timeout,
        load_from: a.load_from,
        measure_from: a.measure_from,
        measuring: Cell::new(false),
        live: a.live,
        interval_base: RefCell::new(None),
        interval_next: Cell::new(0),
        in_flight: Cell::new(0),
    });
    let stopped = Rc::new(Cell::new(false));
    {
        let (wheel, stopped) = (w.wheel.clone(), Rc::clone(&stopped));
        monoio::spawn(async move { wheel.run(|| stopped.get()).await });
    }
    if let Some(signal) = signal {
        let w = Rc::clone(&w);
        monoio::spawn(async move { pace(&w, signal).await });
    }
    let mut handles = Vec::with_capacity(a.connections.len());
    for &t in &a.connections {
        let task = client::connection(Rc::clone(&w), &a.targets[t], a.tls[t].clone());
        handles.push(monoio::spawn(task));
    }

    sleep_until(a.measure_from).await;
    w.measuring.set(true);
    if a.intervals {
        let (w, results, stopped) = (Rc::clone(&w), a.results.clone(), Rc::clone(&stopped));
        monoio::spawn(async move { intervals(&w, &results, &stopped).await });
    }
    let finished = match a.until {
        Some(until) if w.plan.schedule().is_some() => {
            // Open loop counts every request sent inside the window: nothing new is sent, and
            // those in flight get a grace period to be answered.
            sleep_until(until).await;
            w.plan.stop();
            let grace = until + w.timeout.min(OPEN_LOOP_GRACE);
            while w.in_flight.get() > 0 && Instant::now() < grace {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            until
        }
        Some(until) => {
            sleep_until(until).await;
            Instant::now()
        }
        None => {
            for h in handles {
                h.await;
            }
            Instant::now()
        }
    };
    w.measuring.set(false);
    stopped.set(true);
    w.plan.stop();
    let stats = w.stats.borrow().clone();
    if a.intervals {
        let _ = a.results.send(Message::Interval {
            second: w.interval_next.get(),
            latency_us: w.take_interval(),
        });
    }
    let _ = a.results.send(Message::Done {
        stats: Box::new(stats),
        finished,
    });
}

async fn sleep_until(t: Instant) {
    if Instant::now() < t {
        monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
    }
}

/// Open loop: wakes idle connections each time the pacer thread says requests fell due.
async fn pace(w: &WorkerState, signal: StdUnixStream) {
    let Some(schedule) = w.plan.schedule() else {
        return;
    };
    let mut signal = match monoio::net::UnixStream::from_std(signal) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringload: pacer socket: {e}");
            std::process::exit(1);
        }
    };
    let mut buf = vec![0u8; 256];
    while !schedule.is_over() {
        let (res, b) = signal.read(buf).await;
        buf = b;
        match res {
            // The pacer is gone: the run is over and the root task stops the plan.
            Ok(0) | Err(_) => return,
            Ok(_) => schedule.wake_due(),
        }
    }
}

/// `--hdr-log`: hands the main thread each second's latencies.
async fn intervals(w: &WorkerState, results: &Sender<Message>, stopped: &Cell<bool>) {
    loop {
        let second = w.interval_next.get();
        sleep_until(w.measure_from + Duration::from_secs(second as u64 + 1)).await;
        if stopped.get() {
            return; // the root task sends what is left as this interval
        }
        let interval = w.take_interval();
        let _ = results.send(Message::Interval {
            second,
            latency_us: interval,
        });
        w.interval_next.set(second + 1);
    }
}
