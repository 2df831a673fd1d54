//! The coarse per-core timer wheel.
//!
//! A runtime timer per I/O operation costs a timer insertion and removal (and on io_uring an
//! extra SQE) for every read: too much at hundreds of thousands of reads a second. Instead each
//! connection owns one or two [`Deadline`]s, re-armed per phase (idle, reading a head, waiting
//! on the upstream), and one task per core advances a hashed wheel every tick (10 ms by default).
//!
//! An expired deadline does not wake anybody: it shuts the armed socket down
//! (`shutdown(SHUT_RDWR)`), which completes whatever read or write is pending on it on either
//! driver, and the connection then asks [`Deadline::fired`] to tell a timeout from a peer's
//! close. Arming is a couple of `Cell` writes; an entry that is re-armed for a later time stays
//! where it is and is moved when its old slot comes round, so the common case (a deadline pushed
//! out on every request) touches no vector at all.
//!
//! Everything here is `!Send`: a wheel and its deadlines belong to one worker.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

const SLOTS: usize = 1024;

struct Entry {
    /// Tick at or after which the deadline fires; meaningful while `armed`.
    due: Cell<u64>,
    /// Tick of the slot whose reference to this entry is the live one (u64::MAX: none).
    slot_tick: Cell<u64>,
    armed: Cell<bool>,
    fired: Cell<bool>,
    /// Idle deadlines are fired early when the worker drains.
    idle: Cell<bool>,
    fd: Cell<RawFd>,
}

/// One worker's wheel. Cheap to clone (an `Rc`).
#[derive(Clone)]
pub struct TimerWheel {
    inner: Rc<Wheel>,
}

struct Wheel {
    tick: Duration,
    start: Instant,
    now: Cell<u64>,
    /// The instant of the last advance: a clock for code that needs no better than a tick.
    now_instant: Cell<Instant>,
    slots: RefCell<Vec<Vec<Rc<Entry>>>>,
    /// Scratch for the slot being processed, kept to reuse its capacity.
    scratch: RefCell<Vec<Rc<Entry>>>,
}

impl TimerWheel {
    pub fn new(tick: Duration) -> TimerWheel {
        assert!(!tick.is_zero(), "timer tick must be positive");
        TimerWheel {
            inner: Rc::new(Wheel {
                tick,
                start: Instant::now(),
                now: Cell::new(0),
                now_instant: Cell::new(Instant::now()),
                slots: RefCell::new((0..SLOTS).map(|_| Vec::new()).collect()),
                scratch: RefCell::new(Vec::new()),
            }),
        }
    }

    pub fn tick_duration(&self) -> Duration {
        self.inner.tick
    }

    /// The time of the last tick: at most one tick old, and free to read.
    #[inline]
    pub fn now(&self) -> Instant {
        self.inner.now_instant.get()
    }

    /// A new, unarmed deadline on this wheel.
    pub fn deadline(&self) -> Deadline {
        Deadline {
            wheel: self.clone(),
            entry: Rc::new(Entry {
                due: Cell::new(0),
                slot_tick: Cell::new(u64::MAX),
                armed: Cell::new(false),
                fired: Cell::new(false),
                idle: Cell::new(false),
                fd: Cell::new(-1),
            }),
        }
    }

    /// Advances the wheel to the present, firing every deadline that is due. Called by the
    /// worker's ticker task; `now` is passed in so that tests can drive time by hand.
    pub fn advance_to(&self, now: Instant) {
        let w = &*self.inner;
        w.now_instant.set(now);
        let target = (now.saturating_duration_since(w.start).as_nanos() / w.tick.as_nanos()) as u64;
        while w.now.get() < target {
            let tick = w.now.get() + 1;
            w.now.set(tick);
            self.process_slot(tick);
        }
    }

    fn process_slot(&self, tick: u64) {
        let w = &*self.inner;
        let mut scratch = w.scratch.borrow_mut();
        std::mem::swap(
            &mut *scratch,
            &mut w.slots.borrow_mut()[tick as usize % SLOTS],
        );
        for entry in scratch.drain(..) {
            if entry.slot_tick.get() != tick {
                continue; // a stale reference; the entry was re-inserted earlier elsewhere
            }
            entry.slot_tick.set(u64::MAX);
            if !entry.armed.get() {
                continue;
            }
            if entry.due.get() <= tick {
                fire(&entry);
            } else {
                let due = entry.due.get();
                self.insert(entry, due);
            }
        }
    }

    fn insert(&self, entry: Rc<Entry>, due: u64) {
        let w = &*self.inner;
        // The slot must be in the future (or it would wait a whole rotation) and at most one
        // rotation ahead (or the slot would be visited first at an earlier tick).
        let now = w.now.get();
        let at = due.clamp(now + 1, now + SLOTS as u64);
        entry.slot_tick.set(at);
        w.slots.borrow_mut()[at as usize % SLOTS].push(entry);
    }

    /// Fires every armed idle deadline now (graceful drain: idle keep-alive connections close).
    pub fn fire_idle(&self) {
        let w = &*self.inner;
        for slot in w.slots.borrow().iter() {
            for entry in slot {
                if entry.armed.get() && entry.idle.get() && entry.slot_tick.get() != u64::MAX {
                    fire(entry);
                }
            }
        }
    }

    fn ticks_for(&self, d: Duration) -> u64 {
        // Round up, plus one: a deadline never fires early, and fires at most a tick late.
        d.as_nanos().div_ceil(self.inner.tick.as_nanos()) as u64 + 1
    }

    /// Runs the wheel on the current monoio runtime until `stop()` says so.
    pub async fn run(&self, stop: impl Fn() -> bool) {
        while !stop() {
            monoio::time::sleep(self.inner.tick).await;
            self.advance_to(Instant::now());
        }
    }
}

fn fire(entry: &Entry) {
    entry.armed.set(false);
    entry.fired.set(true);
    let fd = entry.fd.get();
    if fd >= 0 {
        // SAFETY: shutdown(2) on a descriptor has no memory effects. The owner of the deadline
        // disarms it before it closes the socket, so `fd` is still the armed socket.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

/// A connection's deadline: armed for one socket at a time.
pub struct Deadline {
    wheel: TimerWheel,
    entry: Rc<Entry>,
}

impl Deadline {
    /// Arms (or re-arms) the deadline: `fd` is shut down if still armed after `after`.
    pub fn arm(&self, fd: RawFd, after: Duration) {
        self.arm_inner(fd, after, false)
    }

    /// As [`arm`](Self::arm), for a connection waiting idle between requests: a drain fires it
    /// at once.
    pub fn arm_idle(&self, fd: RawFd, after: Duration) {
        self.arm_inner(fd, after, true)
    }

    fn arm_inner(&self, fd: RawFd, after: Duration, idle: bool) {
        let e = &*self.entry;
        let due = self.wheel.inner.now.get() + self.wheel.ticks_for(after);
        e.due.set(due);
        e.fd.set(fd);
        e.idle.set(idle);
        e.fired.set(false);
        e.armed.set(true);
        // Already queued at or before `due`: it will be moved on when its slot comes round.
        if e.slot_tick.get() > due {
            self.wheel.insert(Rc::clone(&self.entry), due);
        }
    }

    /// Disarms; the socket is safe to close or reuse afterwards.
    pub fn disarm(&self) {
        self.entry.armed.set(false);
        self.entry.fd.set(-1);
    }

    /// Whether the deadline expired since it was last armed.
    pub fn fired(&self) -> bool {
        self.entry.fired.get()
    }

    pub fn is_armed(&self) -> bool {
        self.entry.armed.get()
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn fires_after_its_time_and_not_before() {
        let wheel = TimerWheel::new(Duration::from_millis(10));
        let t0 = wheel.inner.start;
        let (mut a, _b) = pair();
        let d = wheel.deadline();
        d.arm(a.as_raw_fd(), Duration::from_millis(100));
        wheel.advance_to(t0 + Duration::from_millis(95));
        assert!(!d.fired());
        wheel.advance_to(t0 + Duration::from_millis(130));
        assert!(d.fired());
        let mut buf = [0u8; 1];
        assert_eq!(a.read(&mut buf).unwrap(), 0, "the socket was shut down");
    }

    #[test]
    fn rearming_later_postpones_and_earlier_advances() {
        let wheel = TimerWheel::new(Duration::from_millis(10));
        let t0 = wheel.inner.start;
        let d = wheel.deadline();
        d.arm(-1, Duration::from_millis(50));
        wheel.advance_to(t0 + Duration::from_millis(40));
        d.arm(-1, Duration::from_millis(50)); // pushed out to ~100 ms
        wheel.advance_to(t0 + Duration::from_millis(80));
        assert!(!d.fired());
        wheel.advance_to(t0 + Duration::from_millis(110));
        assert!(d.fired());

        // Long, then short: the short one must not wait for the long one's slot.
        let d = wheel.deadline();
        d.arm(-1, Duration::from_secs(60));
        d.arm(-1, Duration::from_millis(20));
        wheel.advance_to(t0 + Duration::from_millis(150));
        assert!(d.fired());
    }

    #[test]
    fn disarmed_and_dropped_deadlines_never_fire() {
        let wheel = TimerWheel::new(Duration::from_millis(10));
        let t0 = wheel.inner.start;
        let d = wheel.deadline();
        d.arm(-1, Duration::from_millis(20));
        d.disarm();
        let e = Rc::clone(&d.entry);
        drop(d);
        wheel.advance_to(t0 + Duration::from_secs(1));
        assert!(!e.fired.get());
    }

    #[test]
    fn deadlines_beyond_one_rotation() {
        let wheel = TimerWheel::new(Duration::from_millis(1));
        let t0 = wheel.inner.start;
        let d = wheel.deadline();
        d.arm(-1, Duration::from_millis(SLOTS as u64 * 3 + 5));
        wheel.advance_to(t0 + Duration::from_millis(SLOTS as u64 * 3));
        assert!(!d.fired());
        wheel.advance_to(t0 + Duration::from_millis(SLOTS as u64 * 3 + 10));
        assert!(d.fired());
    }

    #[test]
    fn drain_fires_only_idle_deadlines() {
        let wheel = TimerWheel::new(Duration::from_millis(10));
        let idle = wheel.deadline();
        let busy = wheel.deadline();
        idle.arm_idle(-1, Duration::from_secs(60));
        busy.arm(-1, Duration::from_secs(60));
        wheel.fire_idle();
        assert!(idle.fired());
        assert!(!busy.fired());
    }
}
