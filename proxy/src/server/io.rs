//! Buffers and the byte-moving loops of a connection: the read buffer heads are parsed from,
//! whole-buffer writes, and the body relay that both directions of a proxied exchange share.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use ringway_core::http1::{encode_chunk, encode_last_chunk, ChunkedDecoder, CodecError};
use ringway_core::timer::Deadline;

/// Smallest free space a read is given; below it the buffer is compacted or grown.
const MIN_READ: usize = 4 * 1024;
/// Pending output is written out once it reaches this size.
const FLUSH_AT: usize = 64 * 1024;

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

/// Writes all of `out` and clears it (keeping its capacity).
pub async fn write_out<S: AsyncWriteRent>(dst: &mut S, out: &mut Vec<u8>) -> io::Result<()> {
    let buf = std::mem::take(out);
    let (res, mut buf) = dst.write_all(buf).await;
    buf.clear();
    *out = buf;
    res.map(|_| ())
}

/// Writes all of `out` and leaves it as it was (a request kept for a retry).
pub async fn write_keep<S: AsyncWriteRent>(dst: &mut S, out: &mut Vec<u8>) -> io::Result<()> {
    let buf = std::mem::take(out);
    let (res, buf) = dst.write_all(buf).await;
    *out = buf;
    res.map(|_| ())
}

/// How a body arrives and how it leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// Exactly this many more bytes, passed through.
    Length(u64),
    /// Chunked in; chunked out (`true`, re-framed canonically) or raw out (`false`).
    Chunked(bool),
    /// Until the source closes; chunked out (`true`) or raw out (`false`).
    UntilClose(bool),
}

/// One end of a relay: a stream, the deadline that guards it, for how long each operation
/// may take, and the instant the whole request must be done by (`timeouts.request`).
pub struct End<'a, S> {
    pub stream: &'a mut S,
    pub deadline: &'a Deadline,
    pub fd: RawFd,
    pub timeout: Duration,
    pub until: Option<Instant>,
}

impl<S> End<'_, S> {
    fn arm(&self) {
        self.deadline
            .arm(self.fd, bounded(self.timeout, self.until));
    }
}

/// `timeout`, cut short so as not to pass `until`.
#[inline]
pub fn bounded(timeout: Duration, until: Option<Instant>) -> Duration {
    match until {
        Some(until) => timeout.min(until.saturating_duration_since(Instant::now())),
        None => timeout,
    }
}

#[derive(Debug)]
pub enum RelayError {
    /// The source failed, closed early or timed out.
    Source { timed_out: bool },
    /// The destination failed or timed out.
    Destination,
    /// The source sent a malformed chunked body, or more than the decoder's limit.
    Codec(CodecError),
}

/// Moves one body from `src` (starting with what `src_buf` already holds) to `dst`, writing
/// whatever `out` already holds (a head) before or with the first body bytes. Returns the
/// number of payload bytes moved. A chunked body continues from `decoder`'s state (and its
/// limit), so a caller may have decoded its start already.
pub async fn relay_body<R: AsyncReadRent, W: AsyncWriteRent>(
    src: End<'_, R>,
    src_buf: &mut RecvBuf,
    dst: End<'_, W>,
    out: &mut Vec<u8>,
    mut mode: Relay,
    decoder: &mut ChunkedDecoder,
) -> Result<u64, RelayError> {
    let mut moved: u64 = 0;
    loop {
        // Move what has arrived into `out`, framed for the destination.
        let done = match &mut mode {
            Relay::Length(left) => {
                let take = (*left).min(src_buf.len() as u64) as usize;
                out.extend_from_slice(&src_buf.data()[..take]);
                src_buf.consume(take);
                *left -= take as u64;
                moved += take as u64;
                *left == 0
            }
            Relay::Chunked(reencode) => {
                let used = decoder
                    .decode(src_buf.data(), out, *reencode)
                    .map_err(RelayError::Codec)?;
                src_buf.consume(used);
                moved = decoder.payload_bytes();
                decoder.is_done()
            }
            Relay::UntilClose(chunk_out) => {
                let n = src_buf.len();
                if n > 0 {
                    if *chunk_out {
                        encode_chunk(n, out);
                        out.extend_from_slice(src_buf.data());
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(src_buf.data());
                    }
                    src_buf.consume(n);
                    moved += n as u64;
                }
                false
            }
        };
        if done || out.len() >= FLUSH_AT || (!out.is_empty() && src_buf.is_empty()) {
            dst.arm();
            write_out(dst.stream, out)
                .await
                .map_err(|_| RelayError::Destination)?;
        }
        if done {
            return Ok(moved);
        }
        src.arm();
        let n = src_buf.fill(src.stream, FLUSH_AT).await;
        match n {
            Ok(n) if n > 0 => {}
            _ if src.deadline.fired() => return Err(RelayError::Source { timed_out: true }),
            Ok(_) => {
                if let Relay::UntilClose(chunk_out) = mode {
                    if chunk_out {
                        encode_last_chunk(out);
                    }
                    if !out.is_empty() {
                        dst.arm();
                        write_out(dst.stream, out)
                            .await
                            .map_err(|_| RelayError::Destination)?;
                    }
                    return Ok(moved);
                }
                return Err(RelayError::Source { timed_out: false });
            }
            Err(_) => return Err(RelayError::Source { timed_out: false }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
