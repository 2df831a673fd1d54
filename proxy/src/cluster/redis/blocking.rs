//! [`BlockingClient`]: the client of control-side threads (state files, purge fan-out,
//! configuration), over std sockets, with pub/sub ([`Subscription`]).
//!
//! It shares the settings, the codec, the Sentinel replies, the slot map and the redirect
//! rules with the async client; only the I/O differs. One command runs at a time per client
//! (a mutex guards its connections: these threads are not on the request path), on one
//! connection per node. Each step is bounded: a connect (with TLS and AUTH/SELECT) by the
//! connect timeout, a reply by the command timeout. A connection that fails is dropped and
//! made again by the next call; a Sentinel client looks its master up again after a
//! connection failure or `READONLY`, and a cluster client reloads its slot map on the call
//! after a `MOVED`, a connection failure or a retry.
//!
//! A [`Subscription`] has a connection of its own. It survives the loss of that connection:
//! [`Subscription::next_message`] connects again (to the new master after a fail-over, to
//! another node in a cluster, where every node sees every `PUBLISH`) and subscribes again.
//! Messages published while it was away are lost, as pub/sub promises no more;
//! [`Subscription::reconnects`] lets a caller notice the gap. An idle subscription pings the
//! server every 15 s, so a silent network failure is found too.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use super::error::RedisError;
use super::link::backoff;
use super::resp::{self, ErrorKind, ReplyReader, Value};
use super::script::Script;
use super::slots::{self, key_slot, Next, SlotMap};
use super::topology::{
    is_master, sentinel_master, Endpoint, Handshake, RedisSettings, Role, Setup, Target,
};

/// A pub/sub message: the channel and the payload.
pub type Message = (Vec<u8>, Vec<u8>);

/// How long a subscription may hear nothing before it pings.
const PING_IDLE: Duration = Duration::from_secs(15);

/// A Redis client for threads that may block. `Send + Sync`; clones share connections.
#[derive(Clone)]
pub struct BlockingClient {
    shared: Arc<Shared>,
}

struct Shared {
    setup: Setup,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    conns: HashMap<Endpoint, Conn>,
    /// Sentinel: the master, once found.
    master: Option<Endpoint>,
    next_sentinel: usize,
    /// Cluster: the slot map, and whether to reload it before the next command.
    map: Option<SlotMap>,
    map_stale: bool,
    next_any: usize,
}

impl BlockingClient {
    /// A client for `settings`. Connects nothing yet: the first call does.
    pub fn new(settings: &RedisSettings) -> BlockingClient {
        BlockingClient {
            shared: Arc::new(Shared {
                setup: Setup::new(settings),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Sends one command (name first) and returns its reply; an error reply is
    /// `Err(RedisError::Server)`.
    pub fn call(&self, args: &[&[u8]]) -> Result<Value, RedisError> {
        self.shared.run(slots::command_key(args), &[args])
    }

    /// Runs `script` by its SHA-1, sending it whole (`EVAL`) when the server answers
    /// `NOSCRIPT`.
    pub fn eval_sha(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        let mut digits = [0u8; 20];
        let numkeys = resp::fmt_u64(&mut digits, keys.len() as u64);
        let key = keys.first().copied();
        let head: [&[u8]; 3] = [b"EVALSHA", script.sha1(), numkeys];
        match self.shared.run(key, &[&head, keys, args]) {
            Err(e) if e.server_kind() == Some(ErrorKind::NoScript) => {
                let head: [&[u8]; 3] = [b"EVAL", script.source().as_bytes(), numkeys];
                self.shared.run(key, &[&head, keys, args])
            }
            other => other,
        }
    }

    /// Subscribes to `channels` on a connection of its own. Tries to connect now, so that
    /// messages published after this returns are seen; if that fails, the first
    /// [`Subscription::next_message`] tries again (and says why it cannot).
    pub fn subscribe<C: AsRef<[u8]>>(&self, channels: &[C]) -> Subscription {
        let mut sub = Subscription {
            client: Arc::clone(&self.shared),
            channels: channels.iter().map(|c| c.as_ref().to_vec()).collect(),
            conn: None,
            pending: VecDeque::new(),
            failures: 0,
            retry_at: None,
            subscribed_before: false,
            reconnects: 0,
            turn: 0,
            last_seen: Instant::now(),
            ping_sent: None,
        };
        if let Err(e) = sub.connect() {
            log::warn!("cluster.redis: cannot subscribe yet: {e}");
            sub.backed_off();
        }
        sub
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self, key: Option<&[u8]>, parts: &[&[&[u8]]]) -> Result<Value, RedisError> {
        let setup = &self.setup;
        let mut state = self.lock();
        let answer = match &setup.settings.target {
            Target::Single(endpoint) => state.send(endpoint, setup, parts, false),
            Target::Sentinel { sentinels, master } => {
                return state.run_on_master(setup, sentinels, master, parts)
            }
            Target::Cluster { seeds } => return state.run_on_cluster(setup, seeds, key, parts),
        };
        match answer? {
            Value::Error(message) => Err(RedisError::Server(message)),
            value => Ok(value),
        }
    }

    /// Where a subscription connects: the server, the master, or the `turn`-th cluster node.
    fn pubsub_node(&self, turn: usize) -> Result<Endpoint, RedisError> {
        let setup = &self.setup;
        let mut state = self.lock();
        match &setup.settings.target {
            Target::Single(endpoint) => Ok(endpoint.clone()),
            Target::Sentinel { sentinels, master } => state.master(setup, sentinels, master),
            Target::Cluster { seeds } => {
                let nodes = match &state.map {
                    Some(map) if !map.nodes().is_empty() => map.nodes(),
                    _ => seeds,
                };
                Ok(nodes[turn % nodes.len()].clone())
            }
        }
    }
}

impl State {
    /// Sends on the connection to `node` (made if needed); after `ASKING` when `asking`.
    /// Returns the answer as it came (an error reply is a value here). A connection that
    /// fails is dropped.
    fn send(
        &mut self,
        node: &Endpoint,
        setup: &Setup,
        parts: &[&[&[u8]]],
        asking: bool,
    ) -> Result<Value, RedisError> {
        if !self.conns.contains_key(node) {
            let conn = Conn::open(node, setup, Role::Data)?;
            self.conns.insert(node.clone(), conn);
        }
        let conn = self.conns.get_mut(node).expect("inserted above");
        let deadline = Instant::now() + setup.settings.command_timeout;
        let result = (|| {
            if asking {
                conn.send(&[&[b"ASKING"]])?;
            }
            conn.send(parts)?;
            if asking {
                conn.reply(deadline)?;
            }
            conn.reply(deadline)
        })();
        if result.is_err() {
            self.conns.remove(node);
        }
        result
    }

    fn run_on_master(
        &mut self,
        setup: &Setup,
        sentinels: &[Endpoint],
        name: &str,
        parts: &[&[&[u8]]],
    ) -> Result<Value, RedisError> {
        let mut retried = false;
        loop {
            let master = self.master(setup, sentinels, name)?;
            match self.send(&master, setup, parts, false) {
                Ok(Value::Error(message)) => {
                    if resp::error_kind(&message) != ErrorKind::ReadOnly || retried {
                        if resp::error_kind(&message) == ErrorKind::ReadOnly {
                            self.master = None;
                        }
                        return Err(RedisError::Server(message));
                    }
                    // A fail-over: the write did not run; find the new master and send again.
                    self.master = None;
                    self.conns.remove(&master);
                    retried = true;
                }
                Ok(value) => return Ok(value),
                Err(e) => {
                    self.master = None;
                    return Err(e);
                }
            }
        }
    }

    /// The master, asking the Sentinels (and the master, with `ROLE`) if it is not known.
    fn master(
        &mut self,
        setup: &Setup,
        sentinels: &[Endpoint],
        name: &str,
    ) -> Result<Endpoint, RedisError> {
        if let Some(master) = &self.master {
            return Ok(master.clone());
        }
        let mut last = RedisError::Unavailable("no Sentinel is configured");
        for i in 0..sentinels.len() {
            let at = (self.next_sentinel + i) % sentinels.len();
            let question: [&[u8]; 3] = [b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()];
            let master = match exchange(&sentinels[at], setup, Role::Sentinel, &question)
                .map(|reply| sentinel_master(&reply))
            {
                Ok(Ok(Some(master))) => master,
                Ok(Ok(None)) => {
                    last = RedisError::Unavailable("a Sentinel does not know the master name");
                    continue;
                }
                Ok(Err(e)) => {
                    last = RedisError::Protocol(resp::ProtocolError::Unexpected(e));
                    continue;
                }
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match self.send(&master, setup, &[&[b"ROLE"]], false) {
                Ok(role) if is_master(&role) => {
                    self.next_sentinel = at;
                    self.master = Some(master.clone());
                    return Ok(master);
                }
                Ok(_) => {
                    last =
                        RedisError::Unavailable("the node a Sentinel names is not a master (yet)")
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn run_on_cluster(
        &mut self,
        setup: &Setup,
        seeds: &[Endpoint],
        key: Option<&[u8]>,
        parts: &[&[&[u8]]],
    ) -> Result<Value, RedisError> {
        if self.map.is_none() || self.map_stale {
            match self.load_map(setup, seeds) {
                Ok(map) => {
                    self.map = Some(map);
                    self.map_stale = false;
                }
                Err(e) if self.map.is_none() => return Err(e),
                Err(_) => {}
            }
        }
        let slot = key.map(key_slot);
        let mut redirect: Option<(Endpoint, bool)> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (node, asking) = match redirect.take() {
                Some(to) => to,
                None => (self.node_for(slot)?, false),
            };
            let answer = self.send(&node, setup, parts, asking);
            if answer.as_ref().is_err_and(RedisError::is_connection) {
                self.map_stale = true;
            }
            match slots::next_step(answer, &node, attempt) {
                Next::Done(result) => return result,
                Next::Redirect {
                    endpoint,
                    slot,
                    ask,
                } => {
                    if !ask {
                        if let Some(map) = &mut self.map {
                            map.assign(slot, endpoint.clone());
                        }
                        self.map_stale = true;
                    }
                    redirect = Some((endpoint, ask));
                }
                Next::Pause(pause) => {
                    self.map_stale = true;
                    std::thread::sleep(pause);
                }
            }
        }
    }

    fn node_for(&mut self, slot: Option<u16>) -> Result<Endpoint, RedisError> {
        let map = self.map.as_ref().expect("loaded before routing");
        let node = match slot {
            Some(slot) => map.owner(slot),
            None if map.nodes().is_empty() => None,
            None => {
                self.next_any = self.next_any.wrapping_add(1);
                Some(self.next_any % map.nodes().len())
            }
        };
        match node {
            Some(i) => Ok(map.nodes()[i].clone()),
            None => {
                self.map_stale = true;
                Err(RedisError::Unavailable("no node owns the key's slot"))
            }
        }
    }

    /// `CLUSTER SLOTS` from the known masters, then the seeds; the first good answer wins.
    fn load_map(&mut self, setup: &Setup, seeds: &[Endpoint]) -> Result<SlotMap, RedisError> {
        let mut candidates: Vec<Endpoint> = self
            .map
            .as_ref()
            .map(|m| m.nodes().to_vec())
            .unwrap_or_default();
        for seed in seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut last = RedisError::Unavailable("no cluster node is configured");
        for node in &candidates {
            match self.send(node, setup, &[&[b"CLUSTER", b"SLOTS"]], false) {
                Ok(reply) => match SlotMap::from_cluster_slots(&reply, node) {
                    Ok(map) if map.unassigned() < usize::from(slots::SLOTS) => return Ok(map),
                    Ok(_) => last = RedisError::Unavailable("a node knows no slot owner"),
                    Err(e) => last = RedisError::Protocol(resp::ProtocolError::Unexpected(e)),
                },
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// One command on a connection of its own (a question to a Sentinel).
fn exchange(
    node: &Endpoint,
    setup: &Setup,
    role: Role,
    command: &[&[u8]],
) -> Result<Value, RedisError> {
    let mut conn = Conn::open(node, setup, role)?;
    conn.send(&[command])?;
    conn.reply(Instant::now() + setup.settings.command_timeout)
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A blocking connection: commands are written whole, replies read through a
/// [`ReplyReader`] with a deadline.
struct Conn {
    stream: Stream,
    replies: ReplyReader,
    out: Vec<u8>,
    command_timeout: Duration,
}

impl Conn {
    fn open(node: &Endpoint, setup: &Setup, role: Role) -> Result<Conn, RedisError> {
        let settings = &setup.settings;
        let deadline = Instant::now() + settings.connect_timeout;
        let mut tcp = Err(io::Error::other("no address"));
        for addr in node.resolve()? {
            let left = deadline.saturating_duration_since(Instant::now());
            tcp = TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1)));
            if tcp.is_ok() {
                break;
            }
        }
        let tcp = tcp?;
        tcp.set_nodelay(true)?;
        let stream = match setup.tls_for(&node.host)? {
            None => Stream::Plain(tcp),
            Some((config, name)) => {
                let mut session = ClientConnection::new(config, name)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let mut tcp = tcp;
                while session.is_handshaking() {
                    set_timeouts(&tcp, deadline)?;
                    session.complete_io(&mut tcp)?;
                }
                Stream::Tls(Box::new(StreamOwned::new(session, tcp)))
            }
        };
        let mut conn = Conn {
            stream,
            replies: ReplyReader::new(),
            out: Vec::new(),
            command_timeout: settings.command_timeout,
        };
        let handshake = setup.handshake(role);
        if handshake.replies > 0 {
            set_timeouts(conn.stream.tcp(), deadline)?;
            conn.stream.write_all(&handshake.bytes)?;
            let mut got = Vec::with_capacity(handshake.replies);
            for _ in 0..handshake.replies {
                got.push(conn.reply(deadline)?);
            }
            Handshake::check(&got)?;
        }
        Ok(conn)
    }

    fn send(&mut self, parts: &[&[&[u8]]]) -> Result<(), RedisError> {
        self.out.clear();
        resp::encode_parts(&mut self.out, parts);
        set_timeouts(self.stream.tcp(), Instant::now() + self.command_timeout)?;
        self.stream.write_all(&self.out)?;
        self.stream.flush()?;
        Ok(())
    }

    /// The next reply, or `Timeout` at `deadline`.
    fn reply(&mut self, deadline: Instant) -> Result<Value, RedisError> {
        self.reply_by(deadline)?.ok_or(RedisError::Timeout)
    }

    /// The next reply, or `None` at `deadline` (the connection stays usable: a partial reply
    /// waits in the reader).
    fn reply_by(&mut self, deadline: Instant) -> Result<Option<Value>, RedisError> {
        loop {
            if let Some(value) = self.replies.next_reply()? {
                return Ok(Some(value));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            set_timeouts(self.stream.tcp(), deadline)?;
            match self.replies.read_from(&mut self.stream) {
                Ok(0) => {
                    return Err(RedisError::io(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ))
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Socket timeouts that end at `deadline` (at least 1 ms: zero would mean none).
fn set_timeouts(tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    tcp.set_read_timeout(Some(left))?;
    tcp.set_write_timeout(Some(left))
}

/// A subscription to some channels, on a connection of its own that it keeps up.
pub struct Subscription {
    client: Arc<Shared>,
    channels: Vec<Vec<u8>>,
    conn: Option<Conn>,
    /// Messages that arrived while confirmations were awaited.
    pending: VecDeque<Message>,
    failures: u32,
    retry_at: Option<Instant>,
    subscribed_before: bool,
    reconnects: u64,
    /// Which cluster node to try next.
    turn: usize,
    last_seen: Instant,
    ping_sent: Option<Instant>,
}

impl Subscription {
    /// The next message, as `(channel, payload)`, or `None` when none came within `timeout`.
    /// Reconnects and subscribes again after a connection loss; an error says that it could
    /// not (the next call tries again, after a back-off).
    pub fn next_message(&mut self, timeout: Duration) -> Result<Option<Message>, RedisError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Ok(Some(message));
            }
            if self.conn.is_none() {
                let now = Instant::now();
                if let Some(at) = self.retry_at.filter(|&at| at > now) {
                    std::thread::sleep(at.min(deadline) - now);
                    if at > deadline {
                        return Ok(None);
                    }
                }
                if let Err(e) = self.connect() {
                    self.backed_off();
                    return Err(e);
                }
            }
            let ping_timeout = self
                .client
                .setup
                .settings
                .command_timeout
                .max(Duration::from_secs(1));
            let conn = self.conn.as_mut().expect("connected above");
            if self.ping_sent.is_none() && self.last_seen.elapsed() >= PING_IDLE {
                if conn.send(&[&[b"PING"]]).is_err() {
                    self.lost();
                    continue;
                }
                self.ping_sent = Some(Instant::now());
            }
            let wait = match self.ping_sent {
                Some(sent) => deadline.min(sent + ping_timeout),
                None => deadline,
            };
            match conn.reply_by(wait) {
                Ok(Some(value)) => {
                    self.last_seen = Instant::now();
                    self.ping_sent = None;
                    self.failures = 0;
                    if let Some(message) = as_message(value) {
                        return Ok(Some(message));
                    }
                }
                Ok(None) => {
                    if self
                        .ping_sent
                        .is_some_and(|sent| sent.elapsed() >= ping_timeout)
                    {
                        // No answer to a ping: the connection is dead without having said so.
                        self.lost();
                    } else if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Err(_) => self.lost(),
            }
        }
    }

    /// How many times the subscription was made again after losing its connection (messages
    /// published meanwhile were missed).
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    pub fn channels(&self) -> &[Vec<u8>] {
        &self.channels
    }

    fn connect(&mut self) -> Result<(), RedisError> {
        let node = self.client.pubsub_node(self.turn)?;
        let setup = &self.client.setup;
        let mut conn = Conn::open(&node, setup, Role::Data)?;
        let channels: Vec<&[u8]> = self.channels.iter().map(Vec::as_slice).collect();
        conn.send(&[&[b"SUBSCRIBE"], &channels])?;
        let deadline = Instant::now() + setup.settings.command_timeout;
        let mut confirmed = 0;
        while confirmed < self.channels.len() {
            let value = conn.reply(deadline)?;
            if let Value::Error(e) = value {
                return Err(RedisError::Server(e));
            }
            if kind_of(&value) == Some(&b"subscribe"[..]) {
                confirmed += 1;
            } else if let Some(message) = as_message(value) {
                self.pending.push_back(message);
            }
        }
        if self.subscribed_before {
            self.reconnects += 1;
        }
        self.subscribed_before = true;
        self.conn = Some(conn);
        self.retry_at = None;
        self.last_seen = Instant::now();
        self.ping_sent = None;
        Ok(())
    }

    /// The connection is gone: connect again on the next turn, after a short back-off.
    fn lost(&mut self) {
        self.conn = None;
        self.ping_sent = None;
        self.backed_off();
    }

    fn backed_off(&mut self) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(Instant::now() + backoff(self.failures));
        self.turn = self.turn.wrapping_add(1);
        if matches!(self.client.setup.settings.target, Target::Sentinel { .. }) {
            // The master may have moved.
            self.client.lock().master = None;
        }
    }
}

/// The first element of a pub/sub push (`message`, `subscribe`, `pong`, ...).
fn kind_of(value: &Value) -> Option<&[u8]> {
    value.as_array()?.first()?.as_bytes()
}

/// `(channel, payload)` of a `message` (or `pmessage`) push.
fn as_message(value: Value) -> Option<Message> {
    let mut items = value.into_array()?;
    let kind = items.first()?.as_bytes()?;
    match (kind, items.len()) {
        (b"message", 3) => {
            let payload = items.pop()?.into_bytes()?;
            let channel = items.pop()?.into_bytes()?;
            Some((channel, payload))
        }
        (b"pmessage", 4) => {
            let payload = items.pop()?.into_bytes()?;
            let channel = items.pop()?.into_bytes()?;
            Some((channel, payload))
        }
        _ => None,
    }
}
