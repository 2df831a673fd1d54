//! The coarse per-core timer wheel.
//!
//! A runtime timer per I/O operation costs a timer insertion and removal (and on io_uring an
//! extra SQE) for every read: too much at hundreds of thousands of reads a second. Instead each
//! socket owns one [`Deadline`], re-armed per phase (idle, reading a head, waiting on the
//! upstream) and dropped with the socket, and one task per core advances a hashed wheel every
//! tick (10 ms by default).
//!
//! An expired deadline does not wake anybody: it shuts the armed socket down
//! (`shutdown(SHUT_RDWR)`), which completes whatever read or write is pending on it on either
//! driver, and the connection then asks [`Deadline::fired`] to tell a timeout from a peer's
//! close. Arming is a few writes to the deadline's entry; an entry that is re-armed for a later
//! time stays where it is and is moved when its old slot comes round, so the common case (a
//! deadline pushed out on every request) touches no vector at all. Entries live in a slab and
//! are reused as soon as their deadline is dropped; the slot references a dropped deadline
//! leaves behind carry an older generation and are skipped.
//!
//! Everything here is `!Send`: a wheel and its deadlines belong to one worker.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

const SLOTS: usize = 1024;

/// One deadline's state, kept in the wheel's slab and reused by the next deadline once its
/// owner drops it.
#[derive(Clone, Copy)]
struct Entry {
    /// Tick at or after which the deadline fires; meaningful while `armed`.
    due: u64,
    /// Tick of the slot whose reference to this entry is the live one (u64::MAX: none).
    slot_tick: u64,
    /// Bumped each time the entry is freed: slot references carry the generation they were
    /// made for, so one left behind by a dropped deadline is recognised and skipped.
    generation: u32,
    armed: bool,
    fired: bool,
    /// Idle deadlines are fired early when the worker drains.
    idle: bool,
    fd: RawFd,
}

impl Entry {
    const FREE: Entry = Entry {
        due: 0,
        slot_tick: u64::MAX,
        generation: 0,
        armed: false,
        fired: false,
        idle: false,
        fd: -1,
    };
}

/// Entries in chunks of a few kilobytes: growing never copies them, and never asks the
/// allocator for one large block (which it would serve from fresh, mostly unused pages).
#[derive(Default)]
struct Slab {
    chunks: Vec<Box<[Entry; CHUNK]>>,
    len: usize,
}

const CHUNK: usize = 256;

impl Slab {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, e: Entry) {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push(Box::new([Entry::FREE; CHUNK]));
        }
        self.chunks[self.len / CHUNK][self.len % CHUNK] = e;
        self.len += 1;
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        let len = self.len;
        self.chunks.iter_mut().flat_map(|c| c.iter_mut()).take(len)
    }
}

impl std::ops::Index<usize> for Slab {
    type Output = Entry;

    #[inline]
    fn index(&self, i: usize) -> &Entry {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// A slot's reference to an entry: its index in the slab and the generation it was made for.
#[derive(Clone, Copy)]
struct Ref {
    index: u32,
    generation: u32,
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
    /// Every deadline's entry; a dropped deadline's index goes on `free` and is reused, so
    /// connection churn allocates nothing here once the slab has grown to the peak.
    entries: RefCell<Slab>,
    free: RefCell<Vec<u32>>,
    slots: RefCell<Vec<Vec<Ref>>>,
    /// Scratch for the slot being processed, kept to reuse its capacity.
    scratch: RefCell<Vec<Ref>>,
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
                entries: RefCell::new(Slab::default()),
                free: RefCell::new(Vec::new()),
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
        let w = &*self.inner;
        let mut entries = w.entries.borrow_mut();
        let index = match w.free.borrow_mut().pop() {
            Some(index) => index,
            None => {
                entries.push(Entry::FREE);
                u32::try_from(entries.len() - 1).expect("fewer than 2^32 deadlines")
            }
        };
        let e = &mut entries[index as usize];
        *e = Entry {
            generation: e.generation,
            ..Entry::FREE
        };
        Deadline {
            wheel: self.clone(),
            index,
        }
    }

    /// Deadlines in use, and entries kept for reuse (for tests and accounting).
    pub fn entry_counts(&self) -> (usize, usize) {
        let total = self.inner.entries.borrow().len();
        let free = self.inner.free.borrow().len();
        (total - free, free)
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
        let mut entries = w.entries.borrow_mut();
        for r in scratch.drain(..) {
            let e = &mut entries[r.index as usize];
            if e.generation != r.generation || e.slot_tick != tick {
                continue; // left behind by a dropped deadline, or re-inserted elsewhere since
            }
            e.slot_tick = u64::MAX;
            if !e.armed {
                continue;
            }
            if e.due <= tick {
                fire(e);
            } else {
                let due = e.due;
                self.insert(e, r, due);
            }
        }
    }

    fn insert(&self, e: &mut Entry, r: Ref, due: u64) {
        let w = &*self.inner;
        // The slot must be in the future (or it would wait a whole rotation) and at most one
        // rotation ahead (or the slot would be visited first at an earlier tick).
        let now = w.now.get();
        let at = due.clamp(now + 1, now + SLOTS as u64);
        e.slot_tick = at;
        w.slots.borrow_mut()[at as usize % SLOTS].push(r);
    }

    /// Fires every armed idle deadline now (graceful drain: idle keep-alive connections close).
    pub fn fire_idle(&self) {
        let w = &*self.inner;
        for e in w.entries.borrow_mut().iter_mut() {
            if e.armed && e.idle {
                fire(e);
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

fn fire(e: &mut Entry) {
    e.armed = false;
    e.fired = true;
    if e.fd >= 0 {
        // SAFETY: shutdown(2) on a descriptor has no memory effects. A deadline lives with its
        // socket and is disarmed (its fd forgotten) before the socket is closed, so `fd` is
        // still the armed socket.
        unsafe { libc::shutdown(e.fd, libc::SHUT_RDWR) };
    }
}

/// A connection's deadline: armed for one socket at a time. Dropping it disarms it and gives
/// its entry back to the wheel at once.
pub struct Deadline {
    wheel: TimerWheel,
    index: u32,
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
        let w = &*self.wheel.inner;
        let due = w.now.get() + self.wheel.ticks_for(after);
        let mut entries = w.entries.borrow_mut();
        let e = &mut entries[self.index as usize];
        e.due = due;
        e.fd = fd;
        e.idle = idle;
        e.fired = false;
        e.armed = true;
        // Already queued at or before `due`: it will be moved on when its slot comes round.
        if e.slot_tick > due {
            let r = Ref {
                index: self.index,
                generation: e.generation,
            };
            self.wheel.insert(e, r, due);
        }
    }

    /// Disarms; the socket is safe to close or reuse afterwards.
    pub fn disarm(&self) {
        let mut entries = self.wheel.inner.entries.borrow_mut();
        let e = &mut entries[self.index as usize];
        e.armed = false;
        e.fd = -1;
    }

    /// Whether the deadline expired since it was last armed.
    pub fn fired(&self) -> bool {
        self.wheel.inner.entries.borrow()[self.index as usize].fired
    }

    pub fn is_armed(&self) -> bool {
        self.wheel.inner.entries.borrow()[self.index as usize].armed
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let w = &*self.wheel.inner;
        let mut entries = w.entries.borrow_mut();
        let e = &mut entries[self.index as usize];
        // A new generation: any slot reference to the old one is now stale.
        *e = Entry {
            generation: e.generation.wrapping_add(1),
            ..Entry::FREE
        };
        w.free.borrow_mut().push(self.index);
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
        wheel.advance_to(t0 + Duration::from_millis(100));
        assert!(!d.fired());
        drop(d);
        // Dropped while armed: never fires, and its entry is reused by the next deadline,
        // which the old slot reference must not touch.
        let (mut a, _b) = pair();
        let d = wheel.deadline();
        d.arm(a.as_raw_fd(), Duration::from_millis(200));
        drop(d);
        assert_eq!(wheel.entry_counts(), (0, 1));
        let reused = wheel.deadline();
        assert_eq!(wheel.entry_counts(), (1, 0));
        reused.arm(a.as_raw_fd(), Duration::from_secs(60));
        wheel.advance_to(t0 + Duration::from_secs(1));
        assert!(
            !reused.fired(),
            "a stale reference fired the entry's next owner"
        );
        a.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        assert!(a.read(&mut buf).is_err(), "the socket was not shut down");
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
