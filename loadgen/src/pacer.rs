//! The open-loop pacer: one thread that wakes each worker when its next request falls due.
//!
//! monoio's timers have millisecond ticks and wake up to two ticks late; a request scheduled on
//! them would carry that lateness into its latency (it is measured from the intended time). So
//! the schedule is kept by this thread instead, sleeping with nanosecond timer slack, which
//! writes a byte to a worker's socket pair whenever more of that worker's requests are due; the
//! worker's reader task then wakes that many idle connections ([`crate::plan::Schedule`]). The
//! thread never sleeps less than [`MIN_GAP`], so at high rates it wakes a worker for several
//! requests at once instead of once per request; their intended times stay exact.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::plan::Cadence;

/// The shortest sleep between two wake-ups.
const MIN_GAP: Duration = Duration::from_micros(50);
/// The longest, so that a stop is seen promptly at low rates.
const MAX_GAP: Duration = Duration::from_millis(50);

/// One worker's end of the pacer: its cadence and the socket to poke.
pub struct Paced {
    pub cadence: Cadence,
    pub signal: UnixStream,
}

/// A socket pair: the pacer's end (blocking writes that never block: it is non-blocking and a
/// full buffer means a wake-up is already pending) and the worker's end.
pub fn pair() -> std::io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    // The worker's end must be non-blocking before monoio adopts it (the epoll driver relies
    // on it).
    b.set_nonblocking(true)?;
    Ok((a, b))
}

pub fn spawn(workers: Vec<Paced>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringload-pacer".into())
        .spawn(move || run(workers, &stop))
}

fn run(mut workers: Vec<Paced>, stop: &AtomicBool) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack; it reads no
    // memory of ours. The default slack (50 us) would add up to that much to every sleep.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    let mut signalled = vec![0u64; workers.len()];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (w, sent) in workers.iter_mut().zip(signalled.iter_mut()) {
            let due = w.cadence.due(now);
            if due > *sent {
                // WouldBlock: the worker has not read earlier bytes yet; it will see these too.
                let _ = w.signal.write(&[1]);
                *sent = due;
            }
            if due < w.cadence.limit {
                let t = w.cadence.intended(due);
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        // All scheduled: keep the sockets open (a closed one would end the workers' wait for
        // the requests still due) until the run is over.
        let now = Instant::now();
        let wake = next.map_or(now + MAX_GAP, |n| n.clamp(now + MIN_GAP, now + MAX_GAP));
        std::thread::sleep(wake - now);
    }
}
