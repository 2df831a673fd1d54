//! A connection's read buffer for monoio's owned-buffer reads, and the per-core pool that lends
//! connections their large buffers only while they are busy.
//!
//! Unparsed bytes are `buf[pos..]`; consuming advances `pos`, and a fully consumed buffer is
//! reset in place, so that a connection reuses its allocations for its whole life. Heads are
//! parsed straight out of [`RecvBuf::data`]. monoio reads into a `Vec` from its start, so a
//! read is handed a `SliceMut` of the spare capacity: reads always append.
//!
//! A pooled [`RecvBuf`] waits for a request in a small buffer of its own; only when a head does
//! not fit, or a body streams through, does it borrow a large buffer from the worker's
//! [`BufPool`], and it gives that back once it is empty again ([`RecvBuf::release`]). An idle
//! keep-alive connection so holds a few hundred bytes instead of tens of kilobytes, and a busy
//! one allocates nothing: the pool hands the same buffers round.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

/// Smallest free space a read is given; below it the buffer is compacted or grown.
const MIN_READ: usize = 4 * 1024;

/// Buffers larger than this are not kept by a pool (they are freed instead).
const POOL_MAX_BUFFER: usize = 1 << 20;

/// One worker's free large buffers (`!Send`: a pool never leaves its thread).
///
/// It holds at most as many buffers as were lent at once recently: [`BufPool::trim`], run on
/// the worker's tick, frees half of those that went unused since the last trim.
pub struct BufPool {
    size: usize,
    free: RefCell<Vec<Vec<u8>>>,
    /// The fewest free buffers seen since the last trim.
    low: Cell<usize>,
}

impl BufPool {
    /// A pool whose new buffers have `size` bytes of capacity.
    pub fn new(size: usize) -> Rc<BufPool> {
        Rc::new(BufPool {
            size,
            free: RefCell::new(Vec::new()),
            low: Cell::new(0),
        })
    }

    /// An empty buffer of at least the pool's size.
    #[inline]
    pub fn take(&self) -> Vec<u8> {
        let mut free = self.free.borrow_mut();
        match free.pop() {
            Some(buf) => {
                if free.len() < self.low.get() {
                    self.low.set(free.len());
                }
                buf
            }
            None => {
                self.low.set(0);
                Vec::with_capacity(self.size)
            }
        }
    }

    /// Returns a buffer (emptied here); one that is too small or too large is freed.
    #[inline]
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < self.size || buf.capacity() > POOL_MAX_BUFFER {
            return;
        }
        buf.clear();
        self.free.borrow_mut().push(buf);
    }

    /// Frees half of the buffers that stayed unused since the last call.
    pub fn trim(&self) {
        let mut free = self.free.borrow_mut();
        let unused = self.low.get().min(free.len());
        let keep = free.len() - unused.div_ceil(2);
        free.truncate(keep);
        free.shrink_to(keep.max(16));
        self.low.set(free.len());
    }

    /// Free buffers held now.
    pub fn free_count(&self) -> usize {
        self.free.borrow().len()
    }
}

/// A connection's read buffer: unparsed bytes are `buf[pos..]`.
pub struct RecvBuf {
    buf: Vec<u8>,
    pos: usize,
    /// Pooled buffers only: where large buffers come from, and the connection's own small one
    /// while a large one is lent (empty capacity while the small one is in use as `buf`).
    pool: Option<Rc<BufPool>>,
    small: Vec<u8>,
}

impl RecvBuf {
    pub fn with_capacity(capacity: usize) -> RecvBuf {
        RecvBuf {
            buf: Vec::with_capacity(capacity),
            pos: 0,
            pool: None,
            small: Vec::new(),
        }
    }

    /// A buffer that waits in `idle_capacity` bytes of its own and borrows from `pool` when a
    /// message needs more.
    pub fn pooled(pool: Rc<BufPool>, idle_capacity: usize) -> RecvBuf {
        RecvBuf {
            buf: Vec::with_capacity(idle_capacity),
            pos: 0,
            pool: Some(pool),
            small: Vec::new(),
        }
    }

    /// Gives a lent large buffer back to the pool, if it is empty; the buffer continues in its
    /// own small one. Call when the connection goes idle.
    #[inline]
    pub fn release(&mut self) {
        if self.small.capacity() == 0 || !self.is_empty() {
            return;
        }
        if let Some(pool) = &self.pool {
            let lent = std::mem::replace(&mut self.buf, std::mem::take(&mut self.small));
            pool.give(lent);
            self.pos = 0;
        }
    }

    /// Bytes of capacity held now (for tests and accounting).
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.small.capacity()
    }

    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Appends bytes that arrived some other way (tests, or a hand-over between buffers).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Drops every unparsed byte (a connection that is being reopened).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Whether an empty pooled buffer is waiting for a message in its own small buffer.
    #[inline]
    fn waits_in_small(&self) -> bool {
        self.pool.is_some() && self.small.capacity() == 0 && self.buf.is_empty()
    }

    /// Reads once more from `src`, growing the buffer up to `max` bytes of unparsed data.
    /// Returns the number of bytes read, 0 at end of stream.
    pub async fn fill<S: AsyncReadRent>(&mut self, src: &mut S, max: usize) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            if self.pos > 0 {
                self.buf.copy_within(self.pos.., 0);
                self.buf.truncate(self.buf.len() - self.pos);
                self.pos = 0;
            }
            let on_small = self.small.capacity() == 0;
            match &self.pool {
                // Waiting for a new message: the small buffer will do.
                Some(_) if on_small && self.buf.is_empty() && self.buf.capacity() > 0 => {}
                // A message larger than the small buffer: borrow a large one.
                Some(pool) if on_small => {
                    let mut large = pool.take();
                    large.extend_from_slice(&self.buf);
                    self.buf.clear();
                    self.small = std::mem::replace(&mut self.buf, large);
                }
                _ => {}
            }
            if self.buf.capacity() - self.buf.len() < MIN_READ && !self.waits_in_small() {
                // Double, up to about `max`: the parser rejects a head past its limit long
                // before the buffer could grow without bound.
                let grow = self.buf.capacity().clamp(MIN_READ, max.max(MIN_READ));
                self.buf.reserve(grow);
            }
        }
        // monoio reads into the start of a Vec; a slice of its spare capacity appends instead.
        let (len, capacity) = (self.buf.len(), self.buf.capacity());
        let spare = std::mem::take(&mut self.buf).slice_mut(len..capacity);
        let (res, spare) = src.read(spare).await;
        self.buf = spare.into_inner();
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    /// Runs `f` against a monoio stream whose peer writes `pieces`, each as its own write.
    fn with_peer<F, Fut>(pieces: Vec<Vec<u8>>, f: F)
    where
        F: FnOnce(monoio::net::TcpStream) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            for piece in pieces {
                s.write_all(&piece).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        rt.block_on(async move {
            let listener = monoio::net::TcpListener::from_std(listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            f(stream).await;
        });
        writer.join().unwrap();
    }

    #[test]
    fn reads_append_to_unconsumed_bytes() {
        with_peer(
            vec![b"GET /a".to_vec(), b" HTTP/1.1\r\n".to_vec()],
            |mut s| async move {
                let mut buf = RecvBuf::with_capacity(64);
                let mut total = 0;
                while total < 17 {
                    total += buf.fill(&mut s, 1024).await.unwrap();
                }
                assert_eq!(buf.data(), b"GET /a HTTP/1.1\r\n");
                buf.consume(4);
                assert_eq!(buf.data(), b"/a HTTP/1.1\r\n");
            },
        );
    }

    #[test]
    fn a_pooled_buffer_waits_small_and_borrows_for_large_messages() {
        let big = vec![b'y'; 3000];
        with_peer(
            vec![b"GET /".to_vec(), big.clone()],
            move |mut s| async move {
                let pool = BufPool::new(16 * 1024);
                let mut buf = RecvBuf::pooled(Rc::clone(&pool), 512);
                assert_eq!(buf.capacity(), 512);
                // The first read goes into the small buffer.
                let n = buf.fill(&mut s, 1 << 20).await.unwrap();
                assert_eq!(&buf.data()[..n], b"GET /");
                assert_eq!(buf.capacity(), 512);
                // More of the same message: a large buffer is borrowed, the bytes kept.
                while buf.len() < 3005 {
                    assert!(buf.fill(&mut s, 1 << 20).await.unwrap() > 0);
                }
                assert!(buf.capacity() >= 16 * 1024 + 512);
                assert_eq!(&buf.data()[..5], b"GET /");
                assert_eq!(&buf.data()[5..], &big[..]);
                // Not empty: nothing is given back.
                buf.release();
                assert!(buf.capacity() > 512);
                let n = buf.len();
                buf.consume(n);
                buf.release();
                assert_eq!(buf.capacity(), 512);
                assert_eq!(pool.free_count(), 1);
                // The next borrow reuses the pooled buffer.
                let again = pool.take();
                assert!(again.capacity() >= 16 * 1024);
                assert_eq!(pool.free_count(), 0);
            },
        );
    }

    #[test]
    fn a_pool_trims_what_went_unused() {
        let pool = BufPool::new(64);
        let lent: Vec<Vec<u8>> = (0..8).map(|_| pool.take()).collect();
        lent.into_iter().for_each(|b| pool.give(b));
        assert_eq!(pool.free_count(), 8);
        pool.trim(); // all 8 were lent since the start: keep them
        assert_eq!(pool.free_count(), 8);
        pool.trim(); // none was needed since: half go
        assert_eq!(pool.free_count(), 4);
        pool.give(Vec::with_capacity(8)); // too small to keep
        assert_eq!(pool.free_count(), 4);
    }

    #[test]
    fn a_full_buffer_is_compacted_then_grown() {
        let big = vec![b'x'; 10_000];
        with_peer(
            vec![big.clone(), b"tail".to_vec()],
            move |mut s| async move {
                let mut buf = RecvBuf::with_capacity(MIN_READ);
                let mut got = Vec::new();
                while got.len() < 10_004 {
                    if buf.fill(&mut s, 1 << 20).await.unwrap() == 0 {
                        break;
                    }
                    // Consume all but the last byte, so compaction has something to keep.
                    let keep = 1.min(buf.len());
                    let n = buf.len() - keep;
                    got.extend_from_slice(&buf.data()[..n]);
                    buf.consume(n);
                }
                got.extend_from_slice(buf.data());
                let mut expected = big;
                expected.extend_from_slice(b"tail");
                assert_eq!(got, expected);
            },
        );
    }
}
