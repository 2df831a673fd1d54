//! A worker's keep-alive pool of upstream connections: LIFO per target, bounded, aged out.
//!
//! LIFO keeps the hottest connections in use and lets the others age out, which is what makes
//! `idle_timeout` effective. A connection is checked before it is handed out (as Pingora does):
//! one that is readable while idle has either been closed by the origin or carries bytes nobody
//! asked for (a stray response, bytes after an unsolicited 101), and either way must never be
//! given a request. The origin can still close it between the check and the request; the caller
//! detects that on first use and retries idempotent requests once.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use ringway_core::http1::ResponseHead;
use ringway_core::timer::Deadline;

use crate::server::RecvBuf;
use crate::snapshot::Snapshot;
use crate::tls::{Io, OriginIo};

/// A connection to one target, with its own read buffer and its own deadline. The deadline
/// lives and dies with the socket, so it can never fire on a descriptor number that the kernel
/// has since given to another connection (it is disarmed when the connection is dropped).
pub struct UpstreamConn {
    pub stream: OriginIo,
    pub deadline: Deadline,
    pub buf: RecvBuf,
    /// The last response head read on this connection (its spans index `buf`); kept with the
    /// connection so that its header vector is reused.
    pub head: ResponseHead,
    pub target: usize,
    /// Whether it came out of the pool (so a failure before any response byte may be stale).
    pub reused: bool,
    idle_since: Instant,
}

impl UpstreamConn {
    /// Boxed once, at connect: it then moves between the pool and requests as a pointer, so
    /// that a request's task holds 8 bytes for it rather than the whole connection.
    pub fn new(stream: OriginIo, target: usize, deadline: Deadline) -> Box<UpstreamConn> {
        Box::new(UpstreamConn {
            stream,
            deadline,
            buf: RecvBuf::with_capacity(8 * 1024),
            head: ResponseHead::default(),
            target,
            reused: false,
            idle_since: Instant::now(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Whether an idle connection can take a request: nothing arrived while it waited, or, on
    /// TLS, only the protocol's own messages (session tickets), which are absorbed here.
    fn usable(&mut self) -> bool {
        match &mut self.stream {
            Io::Plain(_) => quiet(self.stream.as_raw_fd()),
            Io::Tls(tls) => tls.settle_idle(),
        }
    }
}

/// Whether an idle connection has nothing to read: not closed by its peer, no unsolicited
/// bytes. One non-blocking peek.
fn quiet(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv(2) into a one-byte buffer that outlives the call; MSG_PEEK leaves the data
    // (there should be none) in the socket, MSG_DONTWAIT makes it return at once.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && {
        let errno = std::io::Error::last_os_error().raw_os_error();
        errno == Some(libc::EAGAIN) || errno == Some(libc::EWOULDBLOCK)
    }
}

pub struct UpstreamPool {
    // Boxed: a connection leaves the pool as the pointer a request's task holds.
    #[allow(clippy::vec_box)]
    idle: RefCell<Vec<Vec<Box<UpstreamConn>>>>,
    limits: Vec<(usize, Duration)>,
}

impl UpstreamPool {
    pub fn new(snapshot: &Snapshot) -> UpstreamPool {
        let limits = snapshot
            .targets
            .iter()
            .map(|t| {
                let pool = &snapshot.config.backends[t.backend].pool;
                (pool.max_idle_per_target, pool.idle_timeout)
            })
            .collect::<Vec<_>>();
        UpstreamPool {
            idle: RefCell::new(
                limits
                    .iter()
                    .map(|&(max, _)| Vec::with_capacity(max.min(64)))
                    .collect(),
            ),
            limits,
        }
    }

    /// The most recently returned live connection to `target`, if any. Connections that have
    /// aged out, or that the check finds closed or carrying stray bytes, are closed.
    pub fn take(&self, target: usize, now: Instant) -> Option<Box<UpstreamConn>> {
        let mut idle = self.idle.borrow_mut();
        let conns = &mut idle[target];
        loop {
            let mut conn = conns.pop()?;
            if now.duration_since(conn.idle_since) >= self.limits[target].1 {
                // This one and every older one below it have aged out.
                conns.clear();
                return None;
            }
            if conn.usable() {
                conn.reused = true;
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose last exchange ended cleanly.
    pub fn put(&self, mut conn: Box<UpstreamConn>, now: Instant) {
        let (max, _) = self.limits[conn.target];
        if max == 0 || !conn.buf.is_empty() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let conns = &mut idle[conn.target];
        if conns.len() >= max {
            conns.remove(0); // the oldest
        }
        conn.idle_since = now;
        conns.push(conn);
    }

    /// Closes every idle connection older than its target's `idle_timeout`. Called from the
    /// worker's tick, so that origins see idle connections go away on time.
    pub fn sweep(&self, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        for (conns, &(_, timeout)) in idle.iter_mut().zip(&self.limits) {
            // Oldest first: stop at the first one still fresh.
            let expired = conns
                .iter()
                .take_while(|c| now.duration_since(c.idle_since) >= timeout)
                .count();
            if expired > 0 {
                conns.drain(..expired);
            }
        }
    }

    /// Moves `from`'s idle connections to its target `old` into this pool as target `target`.
    pub fn adopt(&self, target: usize, from: &UpstreamPool, old: usize) {
        let moved = std::mem::take(&mut from.idle.borrow_mut()[old]);
        let max = self.limits[target].0;
        let mut idle = self.idle.borrow_mut();
        for mut conn in moved.into_iter().rev().take(max).rev() {
            conn.target = target;
            idle[target].push(conn);
        }
    }

    pub fn idle_count(&self, target: usize) -> usize {
        self.idle.borrow()[target].len()
    }

    /// Closes every idle connection (drain).
    pub fn clear(&self) {
        self.idle.borrow_mut().iter_mut().for_each(Vec::clear);
    }
}
