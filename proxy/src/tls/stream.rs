//! A TLS stream over a monoio `TcpStream`, for both sides (a `rustls::ServerConnection` for
//! clients, a `ClientConnection` for upstreams).
//!
//! rustls does the protocol; this type only moves bytes. Ciphertext is read into an owned
//! inbox and handed to rustls; what rustls has to send is collected into an owned outbox and
//! written whole. Every await is a plain socket read or write, so a TLS read future is hardly
//! larger than a TCP one, and the session is never borrowed across an await (which is what
//! lets [`TlsStream::into_split`] share it between a tunnel's two directions).
//!
//! A write encrypts and sends everything it accepted before returning: nothing is left
//! buffered, so `flush` has nothing to do. `writev` hands all its slices to rustls at once,
//! which packs them into full records (a head and its body go out as one record when they fit).

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ConnectionCommon, SideData};

/// Ciphertext read per socket read: one full TLS record and its header.
const INBOX: usize = 16 * 1024 + 512;

/// The most slices one `writev` hands to rustls (more are written by the next call).
const MAX_SLICES: usize = 8;

/// Received ciphertext that rustls has not taken yet.
#[derive(Default)]
struct Inbox {
    buf: Vec<u8>,
    pos: usize,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads once from the socket into the (empty) inbox. Returns the bytes read, 0 at end.
    async fn fill<R: AsyncReadRent>(&mut self, tcp: &mut R) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if buf.capacity() < INBOX {
            buf.reserve(INBOX);
        }
        self.pos = 0;
        let (res, buf) = tcp.read(buf).await;
        self.buf = buf;
        res
    }

    /// Gives rustls what it will take and decrypts it. An error is a protocol error (rustls has
    /// queued the alert to send).
    fn feed<S: SideData>(&mut self, session: &mut ConnectionCommon<S>) -> io::Result<()> {
        while !self.is_empty() && session.wants_read() {
            let mut rest = &self.buf[self.pos..];
            let n = session.read_tls(&mut rest)?;
            self.pos += n;
            session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if n == 0 {
                break;
            }
        }
        Ok(())
    }
}

/// Tells rustls the peer closed its side.
fn see_eof<S: SideData>(session: &mut ConnectionCommon<S>) -> io::Result<()> {
    session.read_tls(&mut &[][..])?;
    session
        .process_new_packets()
        .map(|_| ())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Moves what rustls has to send into `out` (cleared first).
fn collect<S: SideData>(session: &mut ConnectionCommon<S>, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    while session.wants_write() {
        session.write_tls(out)?;
    }
    Ok(())
}

/// Writes all of `out` to the socket.
async fn send_all<W: AsyncWriteRent>(tcp: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    let mut pos = 0;
    while pos < out.len() {
        let (res, slice) = tcp.write(std::mem::take(out).slice(pos..)).await;
        *out = slice.into_inner();
        match res {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => pos += n,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads decrypted bytes into `buf`: `Ok(Some(n))` when there were any (0: the peer's
/// `close_notify`), `Ok(None)` when rustls needs more ciphertext.
fn take_plaintext<S: SideData, T: IoBufMut>(
    session: &mut ConnectionCommon<S>,
    buf: &mut T,
) -> io::Result<Option<usize>> {
    // SAFETY: the slice covers the buffer's capacity, which `IoBufMut` guarantees is writable;
    // `set_init` then records only what was written.
    let slice = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
    match session.reader().read(slice) {
        Ok(n) => {
            unsafe { buf.set_init(n) };
            Ok(Some(n))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Hands up to [`MAX_SLICES`] of `bufs`' slices to rustls. Returns the bytes it accepted.
fn give_plaintext<S: SideData, T: IoVecBuf>(
    session: &mut ConnectionCommon<S>,
    bufs: &T,
) -> io::Result<usize> {
    let ptr = bufs.read_iovec_ptr();
    let len = bufs.read_iovec_len().min(MAX_SLICES);
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    for (i, slot) in slices.iter_mut().enumerate().take(len) {
        // SAFETY: `IoVecBuf` guarantees `len` valid iovecs, each naming initialized bytes.
        let iov = unsafe { &*ptr.add(i) };
        *slot = IoSlice::new(unsafe {
            std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len)
        });
    }
    session.writer().write_vectored(&slices[..len])
}

/// A TLS connection over TCP, after or during its handshake.
pub struct TlsStream<C> {
    tcp: TcpStream,
    session: C,
    inbox: Inbox,
    outbox: Vec<u8>,
    /// A client's verified certificate, read once after the handshake.
    pub identity: Option<Box<super::ClientCert>>,
}

impl<C> TlsStream<C> {
    pub fn session(&self) -> &C {
        &self.session
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl<C, S> TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    pub fn new(tcp: TcpStream, session: C) -> TlsStream<C> {
        TlsStream {
            tcp,
            session,
            inbox: Inbox::default(),
            outbox: Vec::new(),
            identity: None,
        }
    }

    /// Runs the handshake to its end, including what the server sends right after it (TLS 1.3
    /// session tickets). A protocol error sends its alert before returning.
    pub async fn handshake(&mut self) -> io::Result<()> {
        loop {
            if self.session.wants_write() {
                self.send_pending().await?;
            }
            if !self.session.is_handshaking() {
                return Ok(());
            }
            if self.inbox.is_empty() && self.inbox.fill(&mut self.tcp).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
            if let Err(e) = self.inbox.feed(&mut self.session) {
                let _ = self.send_pending().await;
                return Err(e);
            }
        }
    }

    async fn send_pending(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            collect(&mut self.session, &mut self.outbox)?;
            send_all(&mut self.tcp, &mut self.outbox).await?;
        }
        Ok(())
    }

    /// For an idle pooled connection: takes, without waiting, what arrived while it was idle.
    /// True when that was nothing, or only the protocol's own messages (TLS 1.3 session
    /// tickets); false when the peer closed, sent a `close_notify` or an alert, or sent data
    /// nobody asked for.
    pub fn settle_idle(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        if !self.inbox.is_empty() {
            return false;
        }
        let fd = self.tcp.as_raw_fd();
        loop {
            self.inbox.buf.clear();
            self.inbox.pos = 0;
            if self.inbox.buf.capacity() < INBOX {
                self.inbox.buf.reserve(INBOX);
            }
            let spare = self.inbox.buf.spare_capacity_mut();
            // SAFETY: recv(2) writes at most `spare.len()` bytes into the Vec's spare capacity.
            let n = unsafe {
                libc::recv(
                    fd,
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                return std::io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
            }
            if n == 0 {
                return false;
            }
            // SAFETY: recv(2) initialized the first `n` bytes.
            unsafe { self.inbox.buf.set_len(n as usize) };
            while !self.inbox.is_empty() {
                let mut rest = &self.inbox.buf[self.inbox.pos..];
                match self.session.read_tls(&mut rest) {
                    Ok(0) | Err(_) => return false,
                    Ok(taken) => self.inbox.pos += taken,
                }
                match self.session.process_new_packets() {
                    Ok(state)
                        if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
                    _ => return false,
                }
            }
        }
    }

    /// Splits the stream for a tunnel: the halves share the session, each with its own half of
    /// the socket. What the read half makes rustls want to send (a key update's answer) goes
    /// out with the write half's next write.
    pub fn into_split(self) -> (TlsReadHalf<C>, TlsWriteHalf<C>) {
        let (rd, wr) = self.tcp.into_split();
        let session = Rc::new(RefCell::new(self.session));
        (
            TlsReadHalf {
                tcp: rd,
                session: Rc::clone(&session),
                inbox: self.inbox,
            },
            TlsWriteHalf {
                tcp: wr,
                session,
                outbox: self.outbox,
            },
        )
    }
}

/// Sends the outbox and whatever rustls queues meanwhile, then returns `Ok(n)` with `buf`.
/// Written as a macro so that the socket write is awaited directly in the caller's future:
/// a nested async fn would add its own state to every connection's task.
macro_rules! send_then_return {
    ($self:ident, $buf:ident, $n:expr) => {{
        let mut pos = 0;
        loop {
            if pos >= $self.outbox.len() {
                if !$self.session.wants_write() {
                    return (Ok($n), $buf);
                }
                if let Err(e) = collect(&mut $self.session, &mut $self.outbox) {
                    return (Err(e), $buf);
                }
                pos = 0;
                continue;
            }
            let (res, slice) = $self
                .tcp
                .write(std::mem::take(&mut $self.outbox).slice(pos..))
                .await;
            $self.outbox = slice.into_inner();
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), $buf),
                Ok(k) => pos += k,
                Err(e) => return (Err(e), $buf),
            }
        }
    }};
}

impl<C, S> AsyncReadRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            match take_plaintext(&mut self.session, &mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            if self.session.wants_write() {
                // Rare (a key update's answer): boxed, to keep the common read small.
                if let Err(e) = Box::pin(self.send_pending()).await {
                    return (Err(e), buf);
                }
            }
            if self.inbox.is_empty() {
                let mut raw = std::mem::take(&mut self.inbox.buf);
                raw.clear();
                if raw.capacity() < INBOX {
                    raw.reserve(INBOX);
                }
                self.inbox.pos = 0;
                let (res, raw) = self.tcp.read(raw).await;
                self.inbox.buf = raw;
                match res {
                    Ok(0) => {
                        if let Err(e) = see_eof(&mut self.session) {
                            return (Err(e), buf);
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            if let Err(e) = self.inbox.feed(&mut self.session) {
                let _ = Box::pin(self.send_pending()).await;
                return (Err(e), buf);
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // Into the first slice only, as a short read is allowed.
        let n = match unsafe { monoio::buf::RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl<C, S> AsyncWriteRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `IoBuf` guarantees `bytes_init` readable bytes at `read_ptr`.
        let slice = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = match self.session.writer().write(slice) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        self.outbox.clear();
        send_then_return!(self, buf, n)
    }

    async fn writev<T: IoVecBuf>(&mut self, bufs: T) -> BufResult<usize, T> {
        let n = match give_plaintext(&mut self.session, &bufs) {
            Ok(n) => n,
            Err(e) => return (Err(e), bufs),
        };
        self.outbox.clear();
        send_then_return!(self, bufs, n)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_pending().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.send_close_notify();
        let _ = self.send_pending().await;
        self.tcp.shutdown().await
    }
}

/// The read half of a split [`TlsStream`].
pub struct TlsReadHalf<C> {
    tcp: OwnedReadHalf<TcpStream>,
    session: Rc<RefCell<C>>,
    inbox: Inbox,
}

/// The write half of a split [`TlsStream`].
pub struct TlsWriteHalf<C> {
    tcp: OwnedWriteHalf<TcpStream>,
    session: Rc<RefCell<C>>,
    outbox: Vec<u8>,
}

impl<C, S> AsyncReadRent for TlsReadHalf<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            match take_plaintext(&mut self.session.borrow_mut(), &mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            if self.inbox.is_empty() {
                match self.inbox.fill(&mut self.tcp).await {
                    Ok(0) => {
                        if let Err(e) = see_eof(&mut self.session.borrow_mut()) {
                            return (Err(e), buf);
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            if let Err(e) = self.inbox.feed(&mut self.session.borrow_mut()) {
                return (Err(e), buf);
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let n = match unsafe { monoio::buf::RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl<C, S> TlsWriteHalf<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    async fn send_pending(&mut self) -> io::Result<()> {
        loop {
            collect(&mut self.session.borrow_mut(), &mut self.outbox)?;
            if self.outbox.is_empty() {
                return Ok(());
            }
            send_all(&mut self.tcp, &mut self.outbox).await?;
        }
    }
}

impl<C, S> AsyncWriteRent for TlsWriteHalf<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let slice = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = match self.session.borrow_mut().writer().write(slice) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.send_pending().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, bufs: T) -> BufResult<usize, T> {
        let n = match give_plaintext(&mut self.session.borrow_mut(), &bufs) {
            Ok(n) => n,
            Err(e) => return (Err(e), bufs),
        };
        match self.send_pending().await {
            Ok(()) => (Ok(n), bufs),
            Err(e) => (Err(e), bufs),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_pending().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        let _ = self.send_pending().await;
        self.tcp.shutdown().await
    }
}
