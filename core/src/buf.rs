//! A connection's read buffer for monoio's owned-buffer reads.
//!
//! Unparsed bytes are `buf[pos..]`; consuming advances `pos`, and a fully consumed buffer is
//! reset in place, so that a connection reuses one allocation for its whole life. Heads are
//! parsed straight out of [`RecvBuf::data`]. monoio reads into a `Vec` from its start, so a
//! read is handed a `SliceMut` of the spare capacity: reads always append.

use std::io;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

/// Smallest free space a read is given; below it the buffer is compacted or grown.
const MIN_READ: usize = 4 * 1024;

/// A connection's read buffer: unparsed bytes are `buf[pos..]`.
pub struct RecvBuf {
    buf: Vec<u8>,
    pos: usize,
}

impl RecvBuf {
    pub fn with_capacity(capacity: usize) -> RecvBuf {
        RecvBuf {
            buf: Vec::with_capacity(capacity),
            pos: 0,
        }
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

    /// Reads once more from `src`, growing the buffer up to `max` bytes of unparsed data.
    /// Returns the number of bytes read, 0 at end of stream.
    pub async fn fill<S: AsyncReadRent>(&mut self, src: &mut S, max: usize) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            if self.pos > 0 {
                self.buf.copy_within(self.pos.., 0);
                self.buf.truncate(self.buf.len() - self.pos);
                self.pos = 0;
            }
            if self.buf.capacity() - self.buf.len() < MIN_READ {
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
