//! A real HTTP/1.1 origin on loopback for the proxy to forward to.
//!
//! One thread accepts, one thread serves each connection, keep-alive by default. It counts
//! connections and requests and records every request head, so tests can assert what the
//! proxy forwarded. Endpoints:
//!
//! - `/hello`: a 16-byte body.
//! - `/echo`: the request body back; chunked if the request was chunked (with the request's
//!   trailers), else with Content-Length.
//! - `/chunked/{n}`: `n` pattern bytes as a chunked body with the trailer `X-Trailer: done`.
//! - `/bytes/{n}`: `n` pattern bytes with Content-Length (see [`crate::pattern_bytes`]).
//! - `/delay/{ms}`: answers after sleeping.
//! - `/status/{code}`: that status; 204 and 304 without a body (the 304 with the
//!   `Content-Length: 12` a 200 would have had).
//! - `/name`: the origin's name.
//! - `/cookies`: two `Set-Cookie` headers (which must never be joined).
//! - `/hop`: a response carrying hop-by-hop headers the proxy must remove.
//! - `/ws`: a WebSocket echo (RFC 6455 handshake, then frames echoed unmasked).
//! - `/drop-after`: a normal response, then the connection is closed without warning (as an
//!   origin whose idle timeout fires), so a pooled connection goes stale.
//! - `/hangup`: the connection is closed without any response.
//! - `/garbage`: bytes that are not HTTP, then close.
//! - `/chunked-split`: `hello world` as a chunked body whose framing (size lines, CRLFs,
//!   trailer) is cut into separate writes 20 ms apart, so the proxy reads it in pieces.
//! - `/close-delimited/{n}`: `n` pattern bytes with neither Content-Length nor chunked: the
//!   body ends when the origin closes the connection.
//! - `/head-split`: a response whose head arrives in pieces 20 ms apart (inside the status
//!   line, a header name, between CR and LF, and the final blank line).
//! - `/stall-body`: a head promising 1000 bytes, 10 of them, then silence for 3 s.
//! - `/counter?...`: `200` with the body `n=N` (N: the requests this origin has served,
//!   this one included), so a test can tell a fresh answer from a cached one. Query
//!   parameters shape it: `cc=` a `Cache-Control` value, `vary=` a `Vary` value,
//!   `status=` the status, `delay=` milliseconds to wait first, `chunked=1` a chunked body,
//!   `retry_after=` a `Retry-After` value (values percent-decoded).
//! - anything else: `200` with the body `METHOD TARGET`.
//!
//! Every response carries `X-Origin: NAME` and `Server: ringway-test-origin`; HEAD gets GET's
//! headers without the body.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::websocket;
use crate::wire::{self, Headers, Wire};

/// The body of `/hello`: 16 bytes.
pub const HELLO: &[u8; 16] = b"Hello, Ringway!\n";

const MAX_BODY: usize = 64 << 20;

/// `hello world` chunked, cut at every awkward place: inside a size line, between CR and LF,
/// after chunk data before its CRLF, inside the trailer section.
pub const SPLIT_CHUNKED_BODY: &[&[u8]] = &[
    b"5",
    b"\r",
    b"\nhel",
    b"lo",
    b"\r",
    b"\n",
    b"6;ext=1\r\n wor",
    b"ld\r\n",
    b"0\r",
    b"\nX-Trailer: done\r",
    b"\n\r",
    b"\n",
];

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Headers,
    /// Whether the body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    pub body_len: usize,
    pub trailers: Headers,
    /// Which accepted connection (1-based) carried it.
    pub connection: usize,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        wire::header_all(&self.headers, name)
    }

    /// All values of `name` joined with ", ".
    pub fn header_joined(&self, name: &str) -> Option<String> {
        wire::header_joined(&self.headers, name)
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

struct Shared {
    name: String,
    connections: AtomicUsize,
    open: AtomicUsize,
    requests: AtomicUsize,
    heads: Mutex<Vec<RequestHead>>,
    stopped: AtomicBool,
}

/// A running origin; stops accepting when dropped.
pub struct Origin {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Origin {
    pub fn start(name: &str) -> Origin {
        Origin::start_at(name, "127.0.0.1:0".parse().unwrap())
    }

    /// An origin on a given address (for a target that comes back on a port it had before).
    pub fn start_at(name: &str, addr: SocketAddr) -> Origin {
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind the origin on {addr}: {e}"));
        let addr = listener.local_addr().expect("origin address");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            heads: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name(format!("origin-{name}"))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn the origin");
        Origin { shared, addr }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a backend target.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections currently open (accepted and not yet closed by either side).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Waits until at most `n` connections are open; panics after `timeout`.
    pub fn wait_open_at_most(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.open_connections() > n {
            assert!(
                Instant::now() < deadline,
                "origin {} still has {} open connections, expected at most {n} within {timeout:?}",
                self.name(),
                self.open_connections()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Request heads received so far (counted as soon as a head is read, before its body).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The most recent request whose body was read completely.
    pub fn last_request(&self) -> Option<RequestHead> {
        self.shared.heads.lock().unwrap().last().cloned()
    }

    /// Every request whose body was read completely, in order.
    pub fn request_log(&self) -> Vec<RequestHead> {
        self.shared.heads.lock().unwrap().clone()
    }

    /// Waits until at least `n` request heads arrived; panics after `timeout`.
    pub fn wait_requests(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.requests() < n {
            assert!(
                Instant::now() < deadline,
                "origin {} saw {} requests, expected {n} within {timeout:?}",
                self.name(),
                self.requests()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and releases the port.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        shared.open.fetch_add(1, Ordering::SeqCst);
        let conn_shared = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .name(format!("origin-{}-conn{id}", shared.name))
            .spawn(move || {
                // Shown with a failing test's output: says whether the origin saw bad input.
                if let Err(e) = serve_connection(stream, &conn_shared, id) {
                    eprintln!("origin {}: connection {id}: {e}", conn_shared.name);
                }
                conn_shared.open.fetch_sub(1, Ordering::SeqCst);
            });
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared, id: usize) -> io::Result<()> {
    // Idle connections are kept long enough for any test, but never forever.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let mut wire = Wire::new(stream);
    loop {
        let Some(head) = wire.read_head(1 << 20)? else {
            return Ok(());
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let (start, headers) = wire::parse_head(&head)?;
        let mut parts = start.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            wire.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        };
        let mut request = RequestHead {
            method: method.to_string(),
            target: target.to_string(),
            version: version.to_string(),
            headers,
            chunked: false,
            body_len: 0,
            trailers: Headers::new(),
            connection: id,
        };
        let body = if wire::header_has_token(&request.headers, "transfer-encoding", "chunked") {
            request.chunked = true;
            let (body, trailers) = wire.read_chunked(MAX_BODY)?;
            request.trailers = trailers;
            body
        } else if let Some(len) = request.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| wire::invalid("bad Content-Length"))?;
            if len > MAX_BODY {
                return Err(wire::invalid("request body too large for the origin"));
            }
            wire.read_exact_vec(len)?
        } else {
            Vec::new()
        };
        request.body_len = body.len();
        shared.heads.lock().unwrap().push(request.clone());

        let keep_alive = request.version == "HTTP/1.1"
            && !wire::header_has_token(&request.headers, "connection", "close");
        match respond(&mut wire, shared, &request, body)? {
            After::KeepAlive if keep_alive => {}
            _ => return Ok(()),
        }
    }
}

enum After {
    KeepAlive,
    Close,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
    trailers: Headers,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            chunked: false,
            trailers: Headers::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// `%XX` escapes and `+` (a space) decoded; anything malformed is kept as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(
    wire: &mut Wire,
    shared: &Shared,
    request: &RequestHead,
    body: Vec<u8>,
) -> io::Result<After> {
    let path = request.path();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or("");
    let arg = segments.next().unwrap_or("");
    let number = || arg.parse::<usize>().ok();

    let reply = match (first, number()) {
        ("hello", _) if arg.is_empty() => {
            Reply::new(200, HELLO.to_vec()).header("Content-Type", "text/plain")
        }
        ("echo", _) => {
            let mut reply = Reply::new(200, body);
            reply.chunked = request.chunked;
            reply.trailers = request.trailers.clone();
            reply.header("Content-Type", "application/octet-stream")
        }
        ("chunked", Some(n)) => {
            let mut reply = Reply::new(200, crate::pattern_bytes(n));
            reply.chunked = true;
            reply
                .trailers
                .push(("X-Trailer".to_string(), "done".to_string()));
            reply.header("Trailer", "X-Trailer")
        }
        ("bytes", Some(n)) => Reply::new(200, crate::pattern_bytes(n)),
        ("delay", Some(ms)) => {
            thread::sleep(Duration::from_millis(ms as u64));
            Reply::new(200, format!("delayed {ms}ms\n"))
        }
        ("status", Some(code)) => {
            if code == 304 {
                // RFC 9110 lets a 304 carry the Content-Length a 200 would have; no body follows.
                Reply::new(304, Vec::new()).header("Content-Length", "12")
            } else if code == 204 {
                Reply::new(204, Vec::new())
            } else {
                Reply::new(code as u16, format!("status {code}\n"))
            }
        }
        ("name", _) => Reply::new(200, shared.name.clone()),
        ("counter", _) => {
            let n = shared.requests.load(Ordering::SeqCst);
            let query = request.target.split_once('?').map_or("", |(_, q)| q);
            let param = |name: &str| {
                query
                    .split('&')
                    .filter_map(|p| p.split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| percent_decode(v))
            };
            if let Some(ms) = param("delay").and_then(|d| d.parse::<u64>().ok()) {
                thread::sleep(Duration::from_millis(ms));
            }
            let status = param("status").and_then(|s| s.parse().ok()).unwrap_or(200);
            let mut reply = Reply::new(status, format!("n={n}"));
            if let Some(cc) = param("cc") {
                reply = reply.header("Cache-Control", &cc);
            }
            if let Some(v) = param("vary") {
                reply = reply.header("Vary", &v);
            }
            if let Some(v) = param("retry_after") {
                reply = reply.header("Retry-After", &v);
            }
            reply.chunked = param("chunked").as_deref() == Some("1");
            reply
        }
        ("cookies", _) => Reply::new(200, "cookies\n")
            .header("Set-Cookie", "a=1; Path=/")
            .header("Set-Cookie", "b=2, with comma; Path=/"),
        ("hop", _) => Reply::new(200, "hop\n")
            .header("Connection", "keep-alive, x-bar")
            .header("X-Bar", "secret")
            .header("Keep-Alive", "timeout=5")
            .header("Proxy-Connection", "keep-alive")
            .header("X-Kept", "yes"),
        ("ws", _) if wire::header_has_token(&request.headers, "upgrade", "websocket") => {
            return websocket_echo(wire, shared, request);
        }
        ("drop-after", _) => {
            write_reply(wire, shared, request, Reply::new(200, "dropping\n"))?;
            return Ok(After::Close);
        }
        ("hangup", _) => return Ok(After::Close),
        ("close-delimited", Some(n)) => {
            let mut bytes = format!(
                "HTTP/1.1 200 OK\r\nX-Origin: {}\r\nConnection: close\r\n\r\n",
                shared.name
            )
            .into_bytes();
            bytes.extend_from_slice(&crate::pattern_bytes(n));
            wire.write_all(&bytes)?;
            return Ok(After::Close);
        }
        ("head-split", _) => {
            let response = format!(
                "HTTP/1.1 200 OK\r\nX-Origin: {}\r\nContent-Length: 5\r\nX-Split: yes\r\n\r\nsplit",
                shared.name
            );
            let bytes = response.as_bytes();
            let x_split = crate::wire::find(bytes, b"X-Split").expect("X-Split in the head");
            let blank = crate::wire::find(bytes, b"\r\n\r\n").expect("blank line");
            let mut cuts = vec![0, 6, 11, x_split + 3, blank + 1, blank + 3, bytes.len()];
            cuts.dedup();
            for pair in cuts.windows(2) {
                wire.write_all(&bytes[pair[0]..pair[1]])?;
                thread::sleep(Duration::from_millis(20));
            }
            return Ok(After::KeepAlive);
        }
        ("chunked-split", _) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Origin: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                shared.name
            );
            wire.write_all(head.as_bytes())?;
            for piece in SPLIT_CHUNKED_BODY {
                thread::sleep(Duration::from_millis(20));
                wire.write_all(piece)?;
            }
            return Ok(After::KeepAlive);
        }
        ("garbage", _) => {
            wire.write_all(b"THIS IS NOT HTTP\r\n\r\n")?;
            return Ok(After::Close);
        }
        ("stall-body", _) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Origin: {}\r\nContent-Length: 1000\r\n\r\n0123456789",
                shared.name
            );
            wire.write_all(head.as_bytes())?;
            thread::sleep(Duration::from_secs(3));
            return Ok(After::Close);
        }
        _ => Reply::new(200, format!("{} {}", request.method, request.target)),
    };
    write_reply(wire, shared, request, reply)?;
    Ok(After::KeepAlive)
}

fn write_reply(
    wire: &mut Wire,
    shared: &Shared,
    request: &RequestHead,
    reply: Reply,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    head.push_str("Server: ringway-test-origin\r\n");
    head.push_str(&format!("X-Origin: {}\r\n", shared.name));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let bodyless = reply.status == 204 || reply.status == 304;
    if !bodyless {
        if reply.chunked {
            head.push_str("Transfer-Encoding: chunked\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !bodyless && request.method != "HEAD" {
        if reply.chunked {
            let trailers: Vec<(&str, &str)> = reply
                .trailers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            bytes.extend_from_slice(&wire::encode_chunked(&reply.body, 4096, &trailers));
        } else {
            bytes.extend_from_slice(&reply.body);
        }
    }
    wire.write_all(&bytes)
}

fn websocket_echo(wire: &mut Wire, shared: &Shared, request: &RequestHead) -> io::Result<After> {
    let key = request.header("sec-websocket-key").unwrap_or_default();
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nX-Origin: {}\r\n\r\n",
        websocket::accept_key(key),
        shared.name
    );
    wire.write_all(head.as_bytes())?;
    loop {
        let frame = websocket::read_frame(wire)?;
        match frame.opcode {
            websocket::OP_CLOSE => {
                wire.write_all(&websocket::encode_frame(
                    websocket::OP_CLOSE,
                    &frame.payload,
                    None,
                ))?;
                return Ok(After::Close);
            }
            websocket::OP_PING => {
                wire.write_all(&websocket::encode_frame(
                    websocket::OP_PONG,
                    &frame.payload,
                    None,
                ))?;
            }
            opcode => {
                wire.write_all(&websocket::encode_frame(opcode, &frame.payload, None))?;
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        418 => "I'm a teapot",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    //! The origin and the client checked against each other, without a proxy, so a failure in
    //! a black-box test points at the proxy rather than the harness.

    use super::*;
    use crate::client::Client;
    use crate::websocket::{WsClient, OP_TEXT};

    #[test]
    fn serves_every_endpoint_with_keep_alive_and_pipelining() {
        let origin = Origin::start("self");
        let mut client = Client::connect(origin.addr());
        let hello = client.get("/hello");
        assert_eq!((hello.status, hello.body.as_slice()), (200, &HELLO[..]));
        assert_eq!(hello.header("x-origin"), Some("self"));

        for n in 1..=5 {
            client.send_request("GET", &format!("/bytes/{n}"), &[], b"");
        }
        for n in 1..=5 {
            assert_eq!(client.read_response().body, crate::pattern_bytes(n));
        }

        let chunked = client.get("/chunked/10000");
        assert!(chunked.chunked);
        assert_eq!(chunked.body, crate::pattern_bytes(10000));
        assert_eq!(chunked.trailer("x-trailer"), Some("done"));

        let body = wire::encode_chunked(b"hello chunked world", 5, &[("x-t", "1")]);
        let echo = client.request("POST", "/echo", &[("Transfer-Encoding", "chunked")], &body);
        assert!(echo.chunked);
        assert_eq!(echo.body, b"hello chunked world");
        assert!(origin.last_request().unwrap().chunked);

        let head = client.request("HEAD", "/bytes/100", &[], b"");
        assert_eq!(head.header("content-length"), Some("100"));
        assert!(head.body.is_empty());
        assert_eq!(client.get("/status/204").status, 204);
        assert_eq!(client.get("/status/304").status, 304);
        assert_eq!(client.get("/status/503").status, 503);
        assert_eq!(client.get("/name").text(), "self");
        let head_split = client.get("/head-split");
        assert_eq!(
            (head_split.header("x-split"), head_split.text().as_str()),
            (Some("yes"), "split")
        );
        let split = client.get("/chunked-split");
        assert_eq!(split.text(), "hello world");
        assert_eq!(split.trailer("x-trailer"), Some("done"));
        assert_eq!(client.get("/other?x=1").text(), "GET /other?x=1");
        assert_eq!(origin.connections(), 1);
        assert_eq!(origin.requests(), 16);
    }

    #[test]
    fn echoes_sixteen_mebibytes() {
        let origin = Origin::start("big");
        let body = crate::pattern_bytes(16 << 20);
        let mut client = Client::connect(origin.addr());
        let echo = client.request("POST", "/echo", &[], &body);
        assert_eq!(echo.body.len(), body.len());
        assert!(echo.body == body);
    }

    #[test]
    fn echoes_websocket_frames() {
        let origin = Origin::start("ws");
        let mut ws = WsClient::connect(origin.addr(), "/ws");
        ws.send(OP_TEXT, b"ping over websocket");
        let frame = ws.recv();
        assert_eq!(
            (frame.opcode, frame.payload.as_slice()),
            (OP_TEXT, &b"ping over websocket"[..])
        );
    }
}
