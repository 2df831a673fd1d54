//! The byte-moving loops of a connection: whole-buffer writes, and the body relay that both
//! directions of a proxied exchange share.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
pub use ringway_core::buf::RecvBuf;
use ringway_core::http1::{encode_chunk, encode_last_chunk, ChunkedDecoder, CodecError};
use ringway_core::timer::Deadline;

/// Pending output is written out once it reaches this size.
const FLUSH_AT: usize = 64 * 1024;

/// Writes all of `out` and clears it (keeping its capacity).
pub async fn write_out<S: AsyncWriteRent>(dst: &mut S, out: &mut Vec<u8>) -> io::Result<()> {
    let buf = std::mem::take(out);
    let (res, mut buf) = dst.write_all(buf).await;
    buf.clear();
    *out = buf;
    res.map(|_| ())
}

/// Answers `Expect: 100-continue`. A client that went away is noticed by the next read or
/// write on its connection, so a failure here is not reported.
pub async fn send_continue<S: AsyncWriteRent>(dst: &mut S) {
    let (_, _) = dst.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
}

/// Writes all of `out` and leaves it as it was (a request kept for a retry).
pub async fn write_keep<S: AsyncWriteRent>(dst: &mut S, out: &mut Vec<u8>) -> io::Result<()> {
    let buf = std::mem::take(out);
    let (res, buf) = dst.write_all(buf).await;
    *out = buf;
    res.map(|_| ())
}

/// A head and a shared body, written with one `writev`: the body goes out of the buffer it is
/// stored in, never copied. The iovec array lives on the heap (its own vector, reused), so it
/// stays put while the runtime owns the value.
struct HeadAndBody {
    head: Vec<u8>,
    body: bytes::Bytes,
    iov: Vec<libc::iovec>,
}

impl HeadAndBody {
    /// Points the iovecs at what is left after the first `sent` bytes.
    fn aim(&mut self, sent: usize) {
        self.iov.clear();
        let (head, body) = (&self.head[..], &self.body[..]);
        let (h, b) = if sent < head.len() {
            (&head[sent..], body)
        } else {
            (&head[head.len()..], &body[sent - head.len()..])
        };
        for part in [h, b] {
            if !part.is_empty() {
                self.iov.push(libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: part.len(),
                });
            }
        }
    }
}

// SAFETY: the iovecs point into `head` and `body`, whose heap buffers do not move while the
// value does; `iov` is itself a heap buffer, so its pointer is stable too.
unsafe impl monoio::buf::IoVecBuf for HeadAndBody {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len()
    }
}

/// Writes `head` and then `body` in one `writev` (more only if the socket takes less), and
/// clears `head`. `iov` is a reusable vector for the iovecs, given back with the result.
pub async fn write_head_and_body<S: AsyncWriteRent>(
    dst: &mut S,
    head: &mut Vec<u8>,
    body: &bytes::Bytes,
    iov: Vec<libc::iovec>,
) -> (io::Result<()>, Vec<libc::iovec>) {
    let total = head.len() + body.len();
    let mut out = HeadAndBody {
        head: std::mem::take(head),
        body: body.clone(),
        iov,
    };
    let mut sent = 0;
    let result = loop {
        if sent == total {
            break Ok(());
        }
        out.aim(sent);
        let (res, back) = dst.writev(out).await;
        out = back;
        match res {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    out.head.clear();
    *head = out.head;
    (result, out.iov)
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

impl<'a, S> End<'a, S> {
    pub fn new(
        stream: &'a mut S,
        deadline: &'a Deadline,
        fd: RawFd,
        timeout: Duration,
        until: Option<Instant>,
    ) -> Self {
        End {
            stream,
            deadline,
            fd,
            timeout,
            until,
        }
    }

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

/// A copy of a body's payload kept while it is relayed (a response going into the cache), up
/// to `cap` bytes; past that the copy is abandoned and only `overflow` says so.
#[derive(Default)]
pub struct Tee {
    pub body: Vec<u8>,
    pub cap: usize,
    pub overflow: bool,
    /// Decoded chunked payload on its way out.
    stage: Vec<u8>,
}

impl Tee {
    pub fn new(cap: usize, expected: usize) -> Tee {
        Tee {
            body: Vec::with_capacity(expected.min(cap)),
            cap,
            ..Tee::default()
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.body.len() + bytes.len() > self.cap {
            self.overflow = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(bytes);
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
    mut tee: Option<&mut Tee>,
) -> Result<u64, RelayError> {
    let mut moved: u64 = 0;
    loop {
        // Move what has arrived into `out`, framed for the destination.
        let done = match &mut mode {
            Relay::Length(left) => {
                let take = (*left).min(src_buf.len() as u64) as usize;
                if let Some(t) = tee.as_deref_mut() {
                    t.push(&src_buf.data()[..take]);
                }
                out.extend_from_slice(&src_buf.data()[..take]);
                src_buf.consume(take);
                *left -= take as u64;
                moved += take as u64;
                *left == 0
            }
            Relay::Chunked(reencode) => match tee.as_deref_mut() {
                None => {
                    let used = decoder
                        .decode(src_buf.data(), out, *reencode)
                        .map_err(RelayError::Codec)?;
                    src_buf.consume(used);
                    moved = decoder.payload_bytes();
                    decoder.is_done()
                }
                Some(t) => {
                    // Decoded into the stage, kept, and framed again for the destination
                    // (trailers are not kept: a stored response is sent with a length).
                    let mut stage = std::mem::take(&mut t.stage);
                    stage.clear();
                    let used = decoder
                        .decode(src_buf.data(), &mut stage, false)
                        .map_err(RelayError::Codec)?;
                    src_buf.consume(used);
                    t.push(&stage);
                    if *reencode && !stage.is_empty() {
                        encode_chunk(stage.len(), out);
                        out.extend_from_slice(&stage);
                        out.extend_from_slice(b"\r\n");
                    } else if !*reencode {
                        out.extend_from_slice(&stage);
                    }
                    t.stage = stage;
                    moved = decoder.payload_bytes();
                    let done = decoder.is_done();
                    if done && *reencode {
                        encode_last_chunk(out);
                    }
                    done
                }
            },
            Relay::UntilClose(chunk_out) => {
                let n = src_buf.len();
                if n > 0 {
                    if let Some(t) = tee.as_deref_mut() {
                        t.push(src_buf.data());
                    }
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
