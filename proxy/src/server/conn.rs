//! The downstream connection loop: read a head, route it, answer it (locally or through an
//! upstream), and go round again for the next request on the connection.
//!
//! This is the hot path. Per request it parses in place, routes without allocating, and writes
//! each head in one piece with the first body bytes; the buffers, heads and deadlines it uses
//! are allocated once per connection. Pipelined requests are simply the bytes left in the read
//! buffer after a response, so responses go out in order by construction.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use ringway_core::http1::{parse_request, BodyFraming, CodecError, RequestHead, Version};
use ringway_core::timer::Deadline;

use super::head::upgrade_allowed;
use super::io::{write_out, RecvBuf};
use super::local::{self, Local};
use super::{Generation, Worker};
use crate::route::{Action, HeaderLookup, RouteRequest};
use crate::tls::{ClientIo, Io};
use crate::upstream::UpstreamConn;

/// How long, and how many bytes, a closing connection keeps reading what the client sends.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// The read buffer a connection waits in between requests: a request head that fits (most
/// do) is read and parsed without borrowing a large buffer from the worker's pool.
const IDLE_READ: usize = 1024;

/// Header slots a waiting connection keeps (24 bytes each).
const IDLE_HEADERS: usize = 32;

/// What the connection does after a request.
pub(super) enum Next {
    KeepAlive,
    Close,
    /// The upstream answered 101: tunnel bytes both ways.
    Upgrade(Box<UpstreamConn>),
}

/// Facts about the current request that outlive its head's bytes.
#[derive(Clone, Copy)]
pub(super) struct Facts {
    pub is_head: bool,
    pub idempotent: bool,
    pub keep_alive: bool,
    pub http10: bool,
    pub framing: BodyFraming,
    pub expect_continue: bool,
    pub upgrade: bool,
    /// The client came over TLS.
    pub tls: bool,
}

/// Counts a connection against its worker's and its listener's limits for as long as it lives.
pub(super) struct Counted {
    w: Rc<Worker>,
    listener: Rc<std::cell::Cell<usize>>,
}

impl Counted {
    /// For a connection already counted in both.
    pub fn new(w: Rc<Worker>, listener: Rc<std::cell::Cell<usize>>) -> Counted {
        Counted { w, listener }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.w.connections.set(self.w.connections.get() - 1);
        self.listener.set(self.listener.get() - 1);
    }
}

pub(super) struct Conn {
    pub w: Rc<Worker>,
    /// The configuration this connection's current request is served on: taken from the
    /// worker when a request begins, so that a reload never changes a request in flight.
    pub gen: Rc<Generation>,
    pub stream: ClientIo,
    pub fd: RawFd,
    pub rbuf: RecvBuf,
    pub wbuf: Vec<u8>,
    pub head: RequestHead,
    /// The client socket's deadline: dropped (disarmed) with the socket, as every deadline is.
    pub deadline: Deadline,
    client_ip: [u8; 46],
    client_ip_len: u8,
    /// The policy state of the request in flight, made on the first request with policies
    /// and reused.
    pub exchange: Option<Box<crate::policy::run::Exchange>>,
    /// What the request in flight is counted under.
    pub req: RequestMeta,
    /// Whether the connection has answered a request.
    pub served: bool,
    /// The request's access-log line and span, gathered as it is served (only when the
    /// worker logs or exports spans).
    pub log: Option<Box<super::access::LogScratch>>,
    _counted: Counted,
}

#[derive(Clone, Copy)]
pub(super) struct HeadView<'a> {
    pub head: &'a RequestHead,
    pub buf: &'a [u8],
}

impl HeaderLookup for HeadView<'_> {
    #[inline]
    fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }
}

/// The metric series of the request in flight, and what happened to it on the way.
#[derive(Clone, Copy, Default)]
pub(super) struct RequestMeta {
    pub route: u32,
    pub backend: u32,
    /// The request ran policies (its subscription, if any, is in the exchange).
    pub policies: bool,
    pub facts: ringway_core::metrics::RequestFacts,
}

enum HeadRead {
    Ready(usize),
    Closed,
    Bad(CodecError),
}

impl Conn {
    /// A connection on `stream`: plain, or TLS before its handshake (which `run` does first).
    pub fn new(w: Rc<Worker>, stream: ClientIo, peer: SocketAddr, counted: Counted) -> Conn {
        let mut client_ip = [0u8; 46];
        let mut cursor = std::io::Cursor::new(&mut client_ip[..]);
        let _ = write!(cursor, "{}", peer.ip());
        let client_ip_len = cursor.position() as u8;
        let fd = stream.as_raw_fd();
        let rbuf = RecvBuf::pooled(Rc::clone(&w.bufs), IDLE_READ);
        Conn {
            deadline: w.wheel.deadline(),
            gen: w.current(),
            w,
            stream,
            fd,
            rbuf,
            wbuf: Vec::new(),
            head: RequestHead::default(),
            client_ip,
            client_ip_len,
            exchange: None,
            req: RequestMeta::default(),
            served: false,
            log: None,
            _counted: counted,
        }
    }

    /// The client's address as text.
    pub fn client_ip(&self) -> &[u8] {
        &self.client_ip[..self.client_ip_len as usize]
    }

    /// The client's address as text (a copy, so that it can be used while `self` is borrowed).
    pub fn client_ip_raw(&self) -> ([u8; 46], usize) {
        (self.client_ip, self.client_ip_len as usize)
    }

    /// The verified client certificate of a TLS connection, if the client sent one.
    pub fn client_cert(&self) -> Option<&crate::tls::ClientCert> {
        match &self.stream {
            Io::Tls(t) => t.identity.as_deref(),
            Io::Plain(_) => None,
        }
    }

    /// Runs the TLS handshake of a TLS connection, under the header timeout. False: it failed
    /// (and the connection is done).
    async fn handshake(&mut self) -> bool {
        let Io::Tls(tls) = &mut self.stream else {
            return true;
        };
        self.deadline
            .arm(self.fd, self.gen.snapshot.config.timeouts.header);
        match tls.handshake().await {
            Ok(()) => {
                tls.identity = tls
                    .session()
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| crate::tls::ClientCert::from_der(leaf.as_ref()))
                    .map(Box::new);
                let resumed =
                    tls.session().handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                self.w.metrics.tls_handshake(resumed);
                true
            }
            Err(e) => {
                self.w.metrics.tls_handshake_failed();
                log::debug!(
                    "TLS handshake with {} failed: {e}",
                    String::from_utf8_lossy(self.client_ip())
                );
                false
            }
        }
    }

    /// Serves the connection to its end. The connection is held once, by this future; the
    /// loop borrows it (an `async fn` taking `self` would keep a second copy in its state).
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self) -> impl std::future::Future<Output = ()> {
        async move {
            if let Some(up) = self.serve().await {
                // Boxed: upgrades are rare, and the tunnel's two copy loops would otherwise
                // take room in every connection's task.
                Box::pin(tunnel(self, *up)).await;
            }
        }
    }

    /// The request loop. Returns the upstream connection to tunnel to after a 101.
    async fn serve(&mut self) -> Option<Box<UpstreamConn>> {
        if !self.handshake().await {
            self.deadline.disarm();
            return None;
        }
        loop {
            let head_len = match self.read_head().await {
                HeadRead::Ready(n) => n,
                HeadRead::Closed => break,
                HeadRead::Bad(e) => {
                    self.w.metrics.bad_request();
                    let status = e.status();
                    let message = e.to_string();
                    let answer = Local::Error {
                        status,
                        code: e.code(),
                        message: &message,
                    };
                    local::reject(self, answer).await;
                    self.w
                        .metrics
                        .record_request(status, std::time::Duration::ZERO);
                    break;
                }
            };
            let started = Instant::now();
            self.refresh_generation();
            self.lend_wbuf();
            self.req = RequestMeta {
                route: crate::control::labels::NO_ROUTE,
                backend: crate::control::labels::NO_BACKEND,
                ..RequestMeta::default()
            };
            self.begin_log();
            let (next, status) = self.handle(head_len).await;
            self.served = true;
            let elapsed = started.elapsed();
            self.w.metrics.record_request(status, elapsed);
            self.record_series(status, elapsed);
            if self.log.is_some() {
                self.log_request(status, elapsed);
            }
            match next {
                // Draining: a request the client has already pipelined is still answered (with
                // `Connection: close`); nothing new is waited for.
                Next::KeepAlive if !self.w.is_draining() || !self.rbuf.is_empty() => continue,
                Next::KeepAlive | Next::Close => break,
                Next::Upgrade(up) => return Some(up),
            }
        }
        self.linger().await;
        self.deadline.disarm();
        None
    }

    /// Before closing, stops sending and reads and drops what the client still sends for a
    /// moment (nginx's lingering close): closing with unread input makes the kernel send a
    /// reset, which can destroy the answer the client has not read yet (a 413, or a 404 to a
    /// large POST).
    async fn linger(&mut self) {
        // SAFETY: shutdown(2) has no memory effects; the socket is open and owned by `self`.
        unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
        self.deadline.arm(self.fd, LINGER_TIME);
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            let n = self.rbuf.len();
            self.rbuf.consume(n);
            match self.rbuf.fill(&mut self.stream, 64 * 1024).await {
                Ok(n) if n > 0 => dropped += n,
                _ => break,
            }
        }
    }

    /// Counts the request just answered in its series (API, operation, backend) and its
    /// subscription's.
    fn record_series(&self, status: u16, elapsed: std::time::Duration) {
        let mut facts = self.req.facts;
        let subscription = match (&self.exchange, self.req.policies) {
            (Some(ex), true) => {
                facts.rejected = ex.rejected;
                facts.cache = ex.cache.outcome;
                (!ex.subscription.is_empty())
                    .then(|| crate::control::labels::name_key(&ex.subscription))
            }
            _ => None,
        };
        let key = crate::control::labels::series_key(self.req.route, self.req.backend);
        self.w
            .metrics
            .record_series(key, subscription, status, elapsed, facts);
    }

    /// Moves to the worker's newest configuration, between requests.
    #[inline]
    fn refresh_generation(&mut self) {
        if self.gen.id != self.w.generation.get() {
            self.gen = self.w.current();
        }
    }

    /// Waits for a whole request head: idle between requests, then under the header timeout
    /// from its first byte.
    async fn read_head(&mut self) -> HeadRead {
        self.refresh_generation();
        let snap = &self.gen.snapshot;
        let limits = snap.config.limits;
        let timeouts = snap.config.timeouts;
        let mut header_clock_started = false;
        loop {
            if !self.rbuf.is_empty() {
                match parse_request(self.rbuf.data(), &limits, &mut self.head) {
                    Ok(Some(n)) => return HeadRead::Ready(n),
                    Ok(None) => {}
                    Err(e) => return HeadRead::Bad(e),
                }
                if !header_clock_started {
                    header_clock_started = true;
                    self.deadline.arm(self.fd, timeouts.header);
                }
            } else if !self.w.is_draining() {
                self.go_idle();
                self.deadline.arm_idle(self.fd, timeouts.idle);
            } else if self.served && !self.w.handing_off() {
                return HeadRead::Closed;
            } else if self.served {
                // After an upgrade's hand-over, a kept-alive connection is not closed while
                // idle (a request crossing the close would fail): its next request is answered
                // with `Connection: close`, and the client goes on with the new process.
                if !header_clock_started {
                    header_clock_started = true;
                    self.deadline.arm(self.fd, timeouts.idle);
                }
            } else if !header_clock_started {
                // A connection accepted as the drain began (an upgrade's hand-over takes
                // the last accepts) still gets its first request answered, within the header
                // timeout (not as an idle one, which the drain closes).
                header_clock_started = true;
                self.deadline.arm(self.fd, timeouts.header);
            }
            match self
                .rbuf
                .fill(&mut self.stream, limits.max_head_bytes + 1024)
                .await
            {
                Ok(n) if n > 0 => {}
                _ => return HeadRead::Closed,
            }
        }
    }

    /// Answers one request whose head is the first `head_len` bytes of the read buffer.
    /// Returns what to do next and the status sent.
    async fn handle(&mut self, head_len: usize) -> (Next, u16) {
        let g = Rc::clone(&self.gen);
        let snap = &*g.snapshot;
        let buf = self.rbuf.data();
        let head = &self.head;
        let facts = Facts {
            is_head: head.is_head(buf),
            idempotent: head.is_idempotent(buf),
            keep_alive: head.keep_alive(),
            http10: head.version() == Version::Http10,
            framing: head.framing(),
            expect_continue: head.expect_continue(),
            tls: matches!(self.stream, Io::Tls(_)),
            // Only the protocols the gateway tunnels are passed on (an `h2c` upgrade would
            // carry requests past routing); any other request is forwarded as plain HTTP.
            upgrade: head.connection().upgrade
                && head
                    .header(buf, b"upgrade")
                    .is_some_and(|p| upgrade_allowed(p, &snap.config.upgrades)),
        };
        // The client side waits under the idle timeout until the exchange's relays re-arm it;
        // the whole-request timeout bounds the upstream waits instead, so that it answers 504.
        self.deadline.arm(self.fd, snap.config.timeouts.idle);
        if head.method(buf) == b"CONNECT" {
            let answer = Local::Error {
                status: 501,
                code: "not_implemented",
                message: "CONNECT is not supported by this gateway",
            };
            return local::answer(self, head_len, facts, answer, None).await;
        }

        if let Some(path) = &self.w.panic_path {
            if head.path(buf) == &path[..] {
                panic!(
                    "injected by RINGWAY_TEST_PANIC_PATH for {}",
                    String::from_utf8_lossy(path)
                );
            }
        }
        let request = RouteRequest {
            host: head.host(buf).unwrap_or_default(),
            method: head.method(buf),
            path: head.path(buf),
            query: head.query(buf),
            headers: &HeadView { head, buf },
        };
        let Some(matched) = snap.router.find(&request) else {
            let message = format!(
                "no route matches {} {}",
                String::from_utf8_lossy(request.method),
                String::from_utf8_lossy(request.path)
            );
            let answer = Local::Error {
                status: 404,
                code: "no_route",
                message: &message,
            };
            return local::answer(self, head_len, facts, answer, None).await;
        };
        let route = matched.route;
        self.req.route = route.label;
        if let Some(s) = self.log.as_deref_mut() {
            s.note_route(route);
        }
        if let Some(pipeline) = route.pipeline {
            self.req.policies = true;
            // Boxed: the policy path's state would otherwise set the size of every
            // connection's task, idle ones included.
            return Box::pin(self.with_policies(
                head_len,
                facts,
                route,
                matched.prefix_len,
                pipeline,
            ))
            .await;
        }
        match &route.action {
            Action::Backend(backend) => {
                self.forward(head_len, &facts, route, matched.prefix_len, *backend, None)
                    .await
            }
            Action::Pipeline => {
                let answer = Local::Error {
                    status: 500,
                    code: "no_backend",
                    message: "this route has no backend",
                };
                local::answer(self, head_len, facts, answer, None).await
            }
            Action::Respond(response) => {
                let answer = Local::Direct(response, &route.response_headers);
                local::answer(self, head_len, facts, answer, None).await
            }
            Action::Redirect(redirect) => {
                let location = local::location(redirect, buf, head, facts.tls);
                let answer = Local::Redirect {
                    status: redirect.status,
                    location: &location,
                };
                local::answer(self, head_len, facts, answer, None).await
            }
        }
    }

    /// Gives the lent buffers back to the worker's pool while no request is in flight.
    #[inline]
    fn go_idle(&mut self) {
        self.rbuf.release();
        // Typical requests carry under 32 headers; a connection that once saw 100 does not
        // keep room for them while it waits.
        self.head.shrink_headers(IDLE_HEADERS);
        if self.wbuf.capacity() > 0 {
            self.w.bufs.give(std::mem::take(&mut self.wbuf));
        }
    }

    /// Borrows a write buffer for the request in flight, if the connection holds none.
    #[inline]
    pub fn lend_wbuf(&mut self) {
        if self.wbuf.capacity() == 0 {
            self.wbuf = self.w.bufs.take();
        }
    }

    /// A fresh request id, as hex text into `out`.
    pub fn next_request_id(&self, out: &mut [u8; 32]) {
        let id = self.w.ids.next();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, byte) in id.to_be_bytes().iter().enumerate() {
            out[2 * i] = HEX[(byte >> 4) as usize];
            out[2 * i + 1] = HEX[(byte & 15) as usize];
        }
    }
}

/// Copies bytes both ways between the client and the upstream after a 101, until both sides
/// are done. A side that ends has its peer's write half shut down, so a half-close passes
/// through and the other direction carries on. Traffic either way re-arms both sockets'
/// deadlines; a tunnel silent both ways for `timeouts.tunnel_idle` is cut.
async fn tunnel(conn: Conn, up: UpstreamConn) {
    let idle = conn.gen.snapshot.config.timeouts.tunnel_idle;
    let Conn {
        stream: client,
        rbuf,
        deadline: client_deadline,
        fd: client_fd,
        ..
    } = conn;
    let up_fd = up.fd();
    let UpstreamConn {
        stream: upstream,
        buf: up_buf,
        deadline: up_deadline,
        ..
    } = up;
    let touch = || {
        client_deadline.arm(client_fd, idle);
        up_deadline.arm(up_fd, idle);
    };
    touch();
    let touch = &touch;
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut up_rd, mut up_wr) = upstream.into_split();
    let to_upstream = async move {
        let _ = copy(&mut client_rd, &mut up_wr, rbuf, touch).await;
        let _ = up_wr.shutdown().await;
    };
    let to_client = async move {
        let _ = copy(&mut up_rd, &mut client_wr, up_buf, touch).await;
        let _ = client_wr.shutdown().await;
    };
    monoio::join!(to_upstream, to_client);
    // Both sockets closed with the last of their halves, just now: disarm before any other
    // task runs.
    client_deadline.disarm();
    up_deadline.disarm();
}

async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    dst: &mut W,
    pending: RecvBuf,
    touch: &impl Fn(),
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(16 * 1024);
    buf.extend_from_slice(pending.data());
    loop {
        if !buf.is_empty() {
            write_out(dst, &mut buf).await?;
        }
        let (res, b) = src.read(buf).await;
        buf = b;
        if res? == 0 {
            return Ok(());
        }
        touch();
    }
}
