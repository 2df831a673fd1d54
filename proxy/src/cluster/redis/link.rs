//! One pipelined connection to one node, owned by one worker: [`Link`].
//!
//! Any number of tasks of the worker send commands on a link at once. A command is encoded
//! into the link's outbox and its slot joins the queue of commands waiting for replies; one
//! writer task writes whatever the outbox holds in one write, and one reader task matches
//! replies to the queue in order. Nothing is locked (the link never leaves its core), and a
//! call allocates nothing in the steady state: slots are reused, the outbox and the read
//! buffer keep their capacity, and only the reply's own value is new.
//!
//! Failure behaviour, the invariant that matters: **no call is left waiting on a connection
//! that is gone.** When the connection fails (connect or TLS error, a write or read error, the
//! server closing it, a reply that is not RESP, or a stall: a command that got no byte back
//! within the command timeout), every queued command is failed with that error at once, the
//! socket is shut down so that both tasks end, and the link is down. Connections are made
//! lazily, by the first command after the link went down; after a failed *connect* the link
//! refuses commands (`Unavailable`, without waiting) for a back-off that doubles from 50 ms to
//! 2 s, so a dead node costs each caller nothing. A connection that was up and broke may be
//! re-made by the very next command. The queue is bounded (`max_in_flight`): one command more
//! is refused rather than queued.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::ClientConnection;

use super::error::RedisError;
use super::resp::{self, ProtocolError, ReplyReader, Value};
use super::topology::{Endpoint, Handshake, Role, Setup};
use crate::tls::io::{ReadHalf, WriteHalf};
use crate::tls::stream::TlsStream;
use crate::tls::OriginIo;

/// Why commands fail on a link that was dropped.
const CLOSED: &str =
    "the connection was closed: its node left the topology, or the client was dropped";

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Back-off after `failures` connect failures in a row: doubling, capped, with ±20 % jitter so
/// that the cores of many nodes do not retry in step.
pub(crate) fn backoff(failures: u32) -> Duration {
    use std::hash::BuildHasher;
    let doubled = BACKOFF_FIRST.saturating_mul(1 << failures.clamp(1, 16).saturating_sub(1));
    let base = doubled.min(BACKOFF_MAX);
    // Random per call and per thread (the standard hasher's keys), allocation-free.
    let r = std::collections::hash_map::RandomState::new().hash_one(failures);
    // A factor in [0.8, 1.2).
    let factor = 0.8 + (r % 4096) as f64 / 4096.0 * 0.4;
    base.mul_f64(factor)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection and none being made; the next command connects.
    Idle,
    Connecting,
    Ready,
    /// The connection failed; commands are refused until `down_until`, then connect again.
    Down,
}

/// A command's place in the queue.
enum Slot {
    Free,
    Waiting {
        waker: Option<Waker>,
        sent: Instant,
    },
    Done(Result<Value, RedisError>),
    /// Its caller went away (a timeout); the reply is read and dropped.
    Abandoned {
        sent: Instant,
    },
}

struct Shared {
    endpoint: Endpoint,
    setup: Rc<Setup>,
    role: Role,
    state: Cell<State>,
    /// Counts connections: a task or a failure of an older one finds it changed and stops.
    epoch: Cell<u64>,
    /// Connect failures in a row.
    failures: Cell<u32>,
    down_until: Cell<Option<Instant>>,
    /// Encoded commands not yet written.
    outbox: RefCell<Vec<u8>>,
    /// Slots in the order their commands were encoded: replies come back in this order.
    queue: RefCell<VecDeque<u32>>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    writer: RefCell<Option<Waker>>,
    /// The open socket, to shut down on a failure found outside the reader. Cleared before
    /// the socket can be closed, so it never names a descriptor reused by another socket.
    fd: Cell<Option<RawFd>>,
    /// Why the socket was shut down from outside (a stall, the link dropped): the error the
    /// reader fails the queue with instead of the read error that the shutdown causes.
    cause: RefCell<Option<RedisError>>,
    /// The link was dropped: a connect that completes now is thrown away.
    closed: Cell<bool>,
    /// When the current connection came up, and when it last read anything.
    connected_at: Cell<Instant>,
    last_read: Cell<Instant>,
}

/// A pipelined connection to `endpoint` that (re)connects on demand. Dropping it fails what is
/// waiting on it and closes the socket.
pub(crate) struct Link(Rc<Shared>);

impl Link {
    pub fn new(endpoint: Endpoint, setup: Rc<Setup>, role: Role) -> Link {
        Link(Rc::new(Shared {
            endpoint,
            setup,
            role,
            state: Cell::new(State::Idle),
            epoch: Cell::new(0),
            failures: Cell::new(0),
            down_until: Cell::new(None),
            outbox: RefCell::new(Vec::new()),
            queue: RefCell::new(VecDeque::new()),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            writer: RefCell::new(None),
            fd: Cell::new(None),
            cause: RefCell::new(None),
            closed: Cell::new(false),
            connected_at: Cell::new(Instant::now()),
            last_read: Cell::new(Instant::now()),
        }))
    }

    /// False while the link refuses commands after a failed connect.
    pub fn is_available(&self) -> bool {
        if self.0.state.get() != State::Down {
            return true;
        }
        match self.0.down_until.get() {
            Some(until) => Instant::now() >= until,
            None => true,
        }
    }

    /// Lifts the back-off (the node was just seen answering).
    pub fn forgive(&self) {
        self.0.failures.set(0);
        self.0.down_until.set(None);
    }

    /// Queues the command made of `parts` and returns its reply, to be awaited. Commands sent
    /// one after the other without an await between them are adjacent on the wire (what
    /// `ASKING` needs). Fails at once when the link is backing off or its queue is full.
    pub fn send(&self, parts: &[&[&[u8]]]) -> Result<Reply, RedisError> {
        let s = &self.0;
        let now = Instant::now();
        match s.state.get() {
            State::Down => match s.down_until.get() {
                Some(until) if now < until => {
                    return Err(RedisError::Unavailable(
                        "backing off after a failed connection",
                    ))
                }
                _ => {}
            },
            // A connection stuck on its oldest command would only make this one wait for
            // nothing: replace it first. (This runs in a task, so waking the waiters is fine.)
            State::Ready if s.stalled(now) => s.fail(s.epoch.get(), RedisError::Timeout),
            State::Idle | State::Connecting | State::Ready => {}
        }
        let id = s.take_slot(now)?;
        if matches!(s.state.get(), State::Down | State::Idle) {
            s.state.set(State::Connecting);
            monoio::spawn(drive(Rc::clone(s), s.epoch.get()));
        }
        resp::encode_parts(&mut s.outbox.borrow_mut(), parts);
        s.queue.borrow_mut().push_back(id);
        if s.state.get() == State::Ready {
            s.wake_writer();
        }
        Ok(Reply {
            shared: Rc::clone(s),
            id,
            epoch: s.epoch.get(),
            done: false,
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The link's own tasks fail what is queued, once the runtime runs them: a destructor
        // may run outside the runtime, where no task may be woken.
        self.0.closed.set(true);
        self.0.interrupt(RedisError::Unavailable(CLOSED));
    }
}

impl Shared {
    fn take_slot(&self, sent: Instant) -> Result<u32, RedisError> {
        let mut slots = self.slots.borrow_mut();
        let id = match self.free.borrow_mut().pop() {
            Some(id) => id,
            None if slots.len() < self.setup.settings.max_in_flight => {
                slots.push(Slot::Free);
                (slots.len() - 1) as u32
            }
            None => {
                return Err(RedisError::Unavailable(
                    "too many commands waiting on the connection",
                ))
            }
        };
        slots[id as usize] = Slot::Waiting { waker: None, sent };
        Ok(id)
    }

    /// Whether the connection is stuck: its oldest command got not a byte back for a whole
    /// command timeout since it could be written (sent, or connected if later). Every command
    /// behind it would wait as long, so the connection is replaced rather than waited on.
    fn stalled(&self, now: Instant) -> bool {
        if self.state.get() != State::Ready {
            return false;
        }
        let Some(&oldest) = self.queue.borrow().front() else {
            return false;
        };
        let sent = match &self.slots.borrow()[oldest as usize] {
            Slot::Waiting { sent, .. } | Slot::Abandoned { sent } => *sent,
            Slot::Free | Slot::Done(_) => return false,
        };
        let since = sent.max(self.connected_at.get());
        self.last_read.get() <= since
            && now.saturating_duration_since(since) >= self.setup.settings.command_timeout
    }

    fn wake_writer(&self) {
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }

    /// Hands a reply to the oldest waiting command. False when none was waiting.
    fn deliver(&self, value: Value) -> bool {
        let Some(id) = self.queue.borrow_mut().pop_front() else {
            return false;
        };
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[id as usize];
        match std::mem::replace(slot, Slot::Free) {
            Slot::Waiting { waker, .. } => {
                *slot = Slot::Done(Ok(value));
                drop(slots);
                if let Some(w) = waker {
                    w.wake();
                }
            }
            Slot::Abandoned { .. } => self.free.borrow_mut().push(id),
            other => *slot = other,
        }
        true
    }

    /// Makes the reader of the open connection (if any) fail it with `why`, by shutting its
    /// socket down. Wakes nothing itself, so any destructor may call it.
    fn interrupt(&self, why: RedisError) {
        if let Some(fd) = self.fd.get() {
            *self.cause.borrow_mut() = Some(why);
            // SAFETY: `fd` is the open socket of the current connection: the reader task
            // holds it until `fail` has cleared `fd`, so it names no other descriptor.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }

    /// Ends connection `epoch` (a no-op when it already ended): every queued command gets
    /// `err`, the socket is shut down so both tasks stop, and the link is down. Called only
    /// from the link's own tasks, inside the runtime that wakes the waiters.
    fn fail(&self, epoch: u64, err: RedisError) {
        if self.epoch.get() != epoch {
            return;
        }
        self.epoch.set(epoch.wrapping_add(1));
        self.cause.borrow_mut().take();
        if let Some(fd) = self.fd.take() {
            // SAFETY: `fd` is the open socket of connection `epoch`: the reader task holds it
            // and cannot close it before this link's epoch changes (which happens only here),
            // and `fd` is cleared here, so a closed descriptor is never shut down.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        if self.state.get() == State::Ready {
            // It was up: the next command may reconnect at once.
            self.down_until.set(None);
        } else {
            let failures = self.failures.get().saturating_add(1);
            self.failures.set(failures);
            self.down_until
                .set(Some(Instant::now() + backoff(failures)));
        }
        self.state.set(State::Down);
        self.outbox.borrow_mut().clear();
        let mut queue = self.queue.borrow_mut();
        let mut slots = self.slots.borrow_mut();
        let mut free = self.free.borrow_mut();
        for id in queue.drain(..) {
            let slot = &mut slots[id as usize];
            match std::mem::replace(slot, Slot::Free) {
                Slot::Waiting { waker, .. } => {
                    *slot = Slot::Done(Err(err.clone()));
                    // Scheduling only: monoio runs the woken task later, not from here.
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                Slot::Abandoned { .. } => free.push(id),
                other => *slot = other,
            }
        }
        drop((queue, slots, free));
        self.wake_writer();
    }
}

/// The reply to one command. Dropping it before it completes abandons the command: its reply
/// is read and dropped when it comes.
pub(crate) struct Reply {
    shared: Rc<Shared>,
    id: u32,
    epoch: u64,
    done: bool,
}

impl Future for Reply {
    type Output = Result<Value, RedisError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut slots = this.shared.slots.borrow_mut();
        let slot = &mut slots[this.id as usize];
        match slot {
            Slot::Waiting { waker, .. } => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Slot::Done(_) => {
                let Slot::Done(result) = std::mem::replace(slot, Slot::Free) else {
                    unreachable!("matched Done")
                };
                drop(slots);
                this.shared.free.borrow_mut().push(this.id);
                this.done = true;
                Poll::Ready(result)
            }
            Slot::Free | Slot::Abandoned { .. } => {
                unreachable!("a reply polled after it was released")
            }
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let s = &self.shared;
        let mut slots = s.slots.borrow_mut();
        let slot = &mut slots[self.id as usize];
        match std::mem::replace(slot, Slot::Free) {
            Slot::Waiting { sent, .. } => {
                *slot = Slot::Abandoned { sent };
                drop(slots);
                if s.epoch.get() == self.epoch && s.stalled(Instant::now()) {
                    s.interrupt(RedisError::Timeout);
                }
            }
            Slot::Done(_) => {
                drop(slots);
                s.free.borrow_mut().push(self.id);
            }
            other => *slot = other,
        }
    }
}

/// Makes connection `epoch`: connects, then runs the reader; the writer is its own task.
async fn drive(s: Rc<Shared>, epoch: u64) {
    let opened = monoio::time::timeout(
        s.setup.settings.connect_timeout,
        open(&s.endpoint, &s.setup, s.role),
    )
    .await;
    let (io, replies) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return s.fail(epoch, e),
        Err(_) => return s.fail(epoch, RedisError::Timeout),
    };
    if s.closed.get() {
        return s.fail(epoch, RedisError::Unavailable(CLOSED));
    }
    s.fd.set(Some(io.as_raw_fd()));
    s.state.set(State::Ready);
    s.failures.set(0);
    let now = Instant::now();
    s.connected_at.set(now);
    s.last_read.set(now);
    let (rd, wr) = io.into_split();
    monoio::spawn(write_loop(Rc::clone(&s), epoch, wr));
    read_loop(s, epoch, rd, replies).await;
}

async fn write_loop(s: Rc<Shared>, epoch: u64, mut wr: WriteHalf<ClientConnection>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let go = std::future::poll_fn(|cx| {
            if s.epoch.get() != epoch {
                return Poll::Ready(false);
            }
            if !s.outbox.borrow().is_empty() {
                return Poll::Ready(true);
            }
            *s.writer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !go {
            return;
        }
        // Double buffering: commands queued while this write runs go to the other buffer.
        std::mem::swap(&mut *s.outbox.borrow_mut(), &mut buf);
        let (res, written) = wr.write_all(buf).await;
        buf = written;
        buf.clear();
        if let Err(e) = res {
            return s.fail(epoch, e.into());
        }
    }
}

async fn read_loop(
    s: Rc<Shared>,
    epoch: u64,
    mut rd: ReadHalf<ClientConnection>,
    mut replies: ReplyReader,
) {
    loop {
        loop {
            match replies.next_reply() {
                Ok(Some(value)) => {
                    if !s.deliver(value) {
                        let what = "a reply with no command waiting for it".to_string();
                        return s.fail(epoch, ProtocolError::Unexpected(what).into());
                    }
                }
                Ok(None) => break,
                Err(e) => return s.fail(epoch, e.into()),
            }
        }
        let res = read_more(&mut rd, &mut replies).await;
        if s.epoch.get() != epoch {
            return;
        }
        let cause = s.cause.borrow_mut().take();
        if let Some(cause) = cause {
            return s.fail(epoch, cause);
        }
        match res {
            Ok(0) => {
                let e = RedisError::io(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                );
                return s.fail(epoch, e);
            }
            Ok(_) => s.last_read.set(Instant::now()),
            Err(e) => return s.fail(epoch, e.into()),
        }
    }
}

/// One read into the reader's spare room.
async fn read_more<R: AsyncReadRent>(rd: &mut R, replies: &mut ReplyReader) -> io::Result<usize> {
    let buf = replies.take_buffer();
    let (len, capacity) = (buf.len(), buf.capacity());
    // monoio reads into the start of a Vec; a slice of its spare capacity appends instead.
    let (res, slice) = rd.read(buf.slice_mut(len..capacity)).await;
    replies.restore(slice.into_inner());
    res
}

/// The address of `endpoint`. A name is looked up on a thread of its own, polled from here,
/// so that a slow resolver never stalls the worker's other connections.
async fn resolve(endpoint: &Endpoint) -> io::Result<Vec<SocketAddr>> {
    if let Some(addr) = endpoint.ip_addr() {
        return Ok(vec![addr]);
    }
    let target = endpoint.clone();
    let lookup = std::thread::Builder::new()
        .name("redis-resolve".into())
        .spawn(move || target.resolve())?;
    while !lookup.is_finished() {
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
    lookup
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the name lookup failed")))
}

/// Connects to `endpoint` (TCP, TLS when set) and runs the handshake for `role`. Returns the
/// connection and the reader holding any bytes that came after the handshake's replies.
pub(crate) async fn open(
    endpoint: &Endpoint,
    setup: &Setup,
    role: Role,
) -> Result<(OriginIo, ReplyReader), RedisError> {
    let mut tcp = Err(io::Error::other("no address"));
    for addr in resolve(endpoint).await? {
        tcp = TcpStream::connect_addr(addr).await;
        if tcp.is_ok() {
            break;
        }
    }
    let tcp = tcp?;
    tcp.set_nodelay(true)?;
    let mut io = match setup.tls_for(&endpoint.host)? {
        None => OriginIo::Plain(tcp),
        Some((config, name)) => {
            let session = ClientConnection::new(config, name)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let mut stream = TlsStream::new(tcp, session);
            stream.handshake().await?;
            OriginIo::Tls(Box::new(stream))
        }
    };
    let mut replies = ReplyReader::new();
    let handshake = setup.handshake(role);
    if handshake.replies > 0 {
        let got = roundtrip(
            &mut io,
            &mut replies,
            handshake.bytes.clone(),
            handshake.replies,
        )
        .await?;
        Handshake::check(&got)?;
    }
    Ok((io, replies))
}

/// Writes `bytes` and reads `n` replies.
async fn roundtrip(
    io: &mut OriginIo,
    replies: &mut ReplyReader,
    bytes: Vec<u8>,
    n: usize,
) -> Result<Vec<Value>, RedisError> {
    let (res, _) = io.write_all(bytes).await;
    res?;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match replies.next_reply()? {
            Some(v) => got.push(v),
            None => {
                if read_more(io, replies).await? == 0 {
                    return Err(RedisError::io(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ));
                }
            }
        }
    }
    Ok(got)
}

/// A one-off exchange on a connection of its own (topology discovery: `SENTINEL ...`,
/// `ROLE`, `CLUSTER SLOTS`): connects, sends `commands`, returns their replies, closes.
/// Bounded by the connect timeout plus the command timeout.
pub(crate) async fn exchange(
    endpoint: &Endpoint,
    setup: &Setup,
    role: Role,
    commands: &[&[&[u8]]],
) -> Result<Vec<Value>, RedisError> {
    let limit = setup.settings.connect_timeout + setup.settings.command_timeout;
    let work = async {
        let (mut io, mut replies) = open(endpoint, setup, role).await?;
        let mut bytes = Vec::new();
        for command in commands {
            resp::encode_command(&mut bytes, command);
        }
        roundtrip(&mut io, &mut replies, bytes, commands.len()).await
    };
    match monoio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::Timeout),
    }
}
