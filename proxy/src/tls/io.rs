//! [`Io`]: a connection that is plain TCP or TLS, chosen per listener or per backend.
//!
//! The proxy's loops are written once against `AsyncReadRent`/`AsyncWriteRent`; this enum
//! picks the transport with one branch per call. The TLS side is boxed, so a plain
//! connection's state stays as small as it was.

use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection, SideData};

use super::stream::{TlsReadHalf, TlsStream, TlsWriteHalf};

/// A plain or TLS connection.
pub enum Io<C> {
    Plain(TcpStream),
    Tls(Box<TlsStream<C>>),
}

/// A client's connection to a listener.
pub type ClientIo = Io<ServerConnection>;
/// A connection to an upstream target.
pub type OriginIo = Io<ClientConnection>;

impl<C> Io<C> {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.tcp(),
        }
    }
}

impl<C> AsRawFd for Io<C> {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl<C, S> Io<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    /// Splits the connection into halves that can be driven at once (a tunnel's directions).
    pub fn into_split(self) -> (ReadHalf<C>, WriteHalf<C>) {
        match self {
            Io::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Io::Tls(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

impl<C, S> AsyncReadRent for Io<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    #[inline]
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        }
    }

    #[inline]
    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Io::Plain(s) => s.readv(buf).await,
            Io::Tls(s) => s.readv(buf).await,
        }
    }
}

impl<C, S> AsyncWriteRent for Io<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    #[inline]
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Io::Plain(s) => s.write(buf).await,
            Io::Tls(s) => s.write(buf).await,
        }
    }

    #[inline]
    async fn writev<T: IoVecBuf>(&mut self, bufs: T) -> BufResult<usize, T> {
        match self {
            Io::Plain(s) => s.writev(bufs).await,
            Io::Tls(s) => s.writev(bufs).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.flush().await,
            Io::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(s) => s.shutdown().await,
        }
    }
}

pub enum ReadHalf<C> {
    Plain(OwnedReadHalf<TcpStream>),
    Tls(TlsReadHalf<C>),
}

pub enum WriteHalf<C> {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls(TlsWriteHalf<C>),
}

impl<C, S> AsyncReadRent for ReadHalf<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ReadHalf::Plain(s) => s.read(buf).await,
            ReadHalf::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ReadHalf::Plain(s) => s.readv(buf).await,
            ReadHalf::Tls(s) => s.readv(buf).await,
        }
    }
}

impl<C, S> AsyncWriteRent for WriteHalf<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            WriteHalf::Plain(s) => s.write(buf).await,
            WriteHalf::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, bufs: T) -> BufResult<usize, T> {
        match self {
            WriteHalf::Plain(s) => s.writev(bufs).await,
            WriteHalf::Tls(s) => s.writev(bufs).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(s) => s.flush().await,
            WriteHalf::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(s) => s.shutdown().await,
            WriteHalf::Tls(s) => s.shutdown().await,
        }
    }
}
