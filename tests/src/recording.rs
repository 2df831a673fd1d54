//! An origin that records exactly what reached it, for whole-path property tests.
//!
//! [`crate::Origin`] reads leniently, as a correct peer would be read. This one parses every
//! request with its own strict reader instead: one request line, CRLF-terminated header fields
//! without obs-fold or control bytes, and exactly one way to find the end of the body (one
//! plain `Content-Length`, or `Transfer-Encoding: chunked` alone with well-formed chunks and
//! trailers). A proxy that forwards something another server could frame differently is
//! smuggling-prone even when this origin happens to guess right, so such a message is recorded
//! as a [`Outcome::Violation`] and the connection is closed: nothing after it can be framed
//! with confidence.
//!
//! Each complete request is answered `200` with `Content-Length`, an `X-Echo` header and a body
//! that both carry [`Recorded::id`] (sequence number, method, body length and hash), so a
//! client can tell which request a response belongs to. HEAD gets the header without the body.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Header or trailer fields in arrival order: names as sent, values without surrounding
/// whitespace (values may hold obs-text, so they stay bytes).
pub type Fields = Vec<(String, Vec<u8>)>;

/// The longest line the origin reads; a proxy has no reason to send anything near it.
const MAX_LINE: usize = 64 << 10;
const MAX_FIELDS: usize = 256;
const MAX_BODY: u64 = 16 << 20;
/// How much of each message's raw bytes is kept for failure reports.
const MAX_RAW: usize = 16 << 10;
/// A forwarded request that stops arriving for this long is recorded as incomplete.
const STALL: Duration = Duration::from_secs(60);

/// How the body of a request was delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// How reading a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Read completely, exactly one way, and answered.
    Complete,
    /// The connection closed (or stalled) before the message was complete.
    Incomplete(String),
    /// The bytes could be read more than one way, or not at all.
    Violation(String),
}

/// One request as the origin read it (as far as it got, when not complete).
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Position in the origin's log, from 0, in the order reading ended.
    pub seq: usize,
    /// Which accepted connection (from 1) carried it.
    pub connection: usize,
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Fields,
    /// Unknown when reading stopped before the head was complete.
    pub framing: Option<Framing>,
    /// The body bytes after removing any chunked framing.
    pub body: Vec<u8>,
    pub trailers: Fields,
    pub outcome: Outcome,
    /// The bytes of the message as received (the first [`MAX_RAW`] of them).
    pub raw: Vec<u8>,
}

impl Recorded {
    fn new(connection: usize) -> Recorded {
        Recorded {
            seq: 0,
            connection,
            method: String::new(),
            target: String::new(),
            version: String::new(),
            headers: Fields::new(),
            framing: None,
            body: Vec::new(),
            trailers: Fields::new(),
            outcome: Outcome::Incomplete("nothing read yet".to_string()),
            raw: Vec::new(),
        }
    }

    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        field_all(&self.headers, name)
    }

    /// The single value of `name` as text, if there is exactly one.
    pub fn header_text(&self, name: &str) -> Option<String> {
        match self.header_all(name).as_slice() {
            [one] => Some(String::from_utf8_lossy(one).into_owned()),
            _ => None,
        }
    }

    /// What the origin answers with: enough to tell any two requests of a run apart.
    pub fn id(&self) -> String {
        format!(
            "seq={} {} len={} fnv={:016x}",
            self.seq,
            self.method,
            self.body.len(),
            fnv1a(&self.body)
        )
    }
}

/// Every value of `name` (case-insensitive) in `fields`, in order.
pub fn field_all<'a>(fields: &'a Fields, name: &str) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// 64-bit FNV-1a: a cheap hash that changes with any dropped, added or altered byte.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Default)]
struct Log {
    records: Vec<Recorded>,
    /// Requests whose first byte arrived and whose reading has not ended.
    reading: usize,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    changed: Condvar,
    connections: AtomicUsize,
    stopped: AtomicBool,
}

impl Shared {
    fn begin(&self) {
        self.log.lock().unwrap().reading += 1;
    }

    /// Appends `record` with the next sequence number and returns that number.
    fn end(&self, mut record: Recorded) -> Recorded {
        let mut log = self.log.lock().unwrap();
        log.reading -= 1;
        record.seq = log.records.len();
        log.records.push(record.clone());
        self.changed.notify_all();
        record
    }
}

/// A running recording origin; stops accepting when dropped.
pub struct RecordingOrigin {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl RecordingOrigin {
    /// Listens on an ephemeral loopback port.
    pub fn start() -> RecordingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recording origin");
        let addr = listener.local_addr().expect("recording origin address");
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("recording-origin".to_string())
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn the recording origin");
        RecordingOrigin { shared, addr }
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

    /// How many requests have been recorded so far.
    pub fn record_count(&self) -> usize {
        self.shared.log.lock().unwrap().records.len()
    }

    /// The records from position `start` on, in order.
    pub fn records_from(&self, start: usize) -> Vec<Recorded> {
        let log = self.shared.log.lock().unwrap();
        log.records.get(start..).unwrap_or_default().to_vec()
    }

    /// Waits until no request is partly read; whether that happened within `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut log = self.shared.log.lock().unwrap();
        while log.reading > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            log = self
                .shared
                .changed
                .wait_timeout(log, deadline - now)
                .unwrap()
                .0;
        }
        true
    }
}

impl Drop for RecordingOrigin {
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
        let conn_shared = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .name(format!("recording-origin-conn{id}"))
            .spawn(move || serve(stream, &conn_shared, id));
    }
}

/// Reads and answers requests until the peer closes or a request is not complete.
fn serve(stream: TcpStream, shared: &Shared, connection: usize) {
    if stream.set_read_timeout(Some(STALL)).is_err() || stream.set_nodelay(true).is_err() {
        return;
    }
    let mut reader = Reader::new(stream);
    while reader.next_message_starts() {
        shared.begin();
        let mut record = Recorded::new(connection);
        record.outcome = match read_request(&mut reader, &mut record) {
            Ok(()) => Outcome::Complete,
            Err(Stop::Cut(why)) => Outcome::Incomplete(why),
            Err(Stop::Ambiguous(why)) => Outcome::Violation(why),
        };
        record.raw = std::mem::take(&mut reader.raw);
        let record = shared.end(record);
        if record.outcome != Outcome::Complete || answer(&mut reader.stream, &record).is_err() {
            break;
        }
        if wants_close(&record) {
            break;
        }
    }
    let _ = reader.stream.shutdown(Shutdown::Both);
}

fn wants_close(record: &Recorded) -> bool {
    let has = |token: &str| {
        record
            .header_all("connection")
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    has("close") || (record.version == "HTTP/1.0" && !has("keep-alive"))
}

fn answer(stream: &mut TcpStream, record: &Recorded) -> io::Result<()> {
    let id = record.id();
    let body = if record.method == "HEAD" { "" } else { &id };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Echo: {id}\r\n\r\n{body}",
        id.len()
    );
    stream.write_all(response.as_bytes())
}

/// Why reading a request stopped before it was complete.
enum Stop {
    /// The peer closed or went quiet.
    Cut(String),
    /// The bytes cannot be read exactly one way.
    Ambiguous(String),
}

fn ambiguous<T>(why: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Ambiguous(why.into()))
}

/// A socket with a read buffer that keeps the raw bytes of the message being read.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    raw: Vec<u8>,
}

impl Reader {
    fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
            pos: 0,
            raw: Vec::new(),
        }
    }

    fn fill(&mut self) -> Result<(), Stop> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(Stop::Cut("the connection closed mid-message".to_string())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(Stop::Cut(format!("reading stopped mid-message: {e}"))),
        }
    }

    /// Waits for the first byte of another message; false when the peer closed first.
    fn next_message_starts(&mut self) -> bool {
        self.pos < self.buf.len() || self.fill().is_ok()
    }

    fn consume(&mut self, n: usize) -> &[u8] {
        let bytes = &self.buf[self.pos..self.pos + n];
        let room = MAX_RAW.saturating_sub(self.raw.len());
        self.raw.extend_from_slice(&bytes[..n.min(room)]);
        self.pos += n;
        &self.buf[self.pos - n..self.pos]
    }

    /// One line without its CRLF. A LF without CR before it, or a CR anywhere else, is the
    /// kind of line end two parsers disagree on.
    fn line(&mut self) -> Result<Vec<u8>, Stop> {
        let mut searched = 0;
        let lf = loop {
            if let Some(i) = self.buf[self.pos + searched..]
                .iter()
                .position(|&b| b == b'\n')
            {
                break searched + i;
            }
            searched = self.buf.len() - self.pos;
            if searched > MAX_LINE {
                return ambiguous(format!("a line longer than {MAX_LINE} bytes"));
            }
            self.fill()?;
        };
        let line = self.consume(lf + 1)[..lf].to_vec();
        let Some(line) = line.strip_suffix(b"\r") else {
            return ambiguous(format!("bare LF after {:?}", show(&line)));
        };
        if line.contains(&b'\r') {
            return ambiguous(format!("bare CR in {:?}", show(line)));
        }
        Ok(line.to_vec())
    }

    /// Appends exactly `n` more bytes to `out`, as they arrive.
    fn exact_into(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), Stop> {
        let mut left = n;
        while left > 0 {
            if self.pos == self.buf.len() {
                self.fill()?;
            }
            let take = (self.buf.len() - self.pos).min(left as usize);
            let bytes = self.consume(take).to_vec();
            out.extend_from_slice(&bytes);
            left -= take as u64;
        }
        Ok(())
    }
}

/// Printable form of bytes for messages.
fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn read_request(reader: &mut Reader, record: &mut Recorded) -> Result<(), Stop> {
    read_request_line(reader, record)?;
    read_fields(reader, &mut record.headers)?;
    let framing = framing_of(record)?;
    record.framing = Some(framing);
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => reader.exact_into(n, &mut record.body),
        Framing::Chunked => read_chunked(reader, record),
    }
}

fn read_request_line(reader: &mut Reader, record: &mut Recorded) -> Result<(), Stop> {
    let line = reader.line()?;
    if line.is_empty() {
        return ambiguous("an empty line where a request line should start");
    }
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return ambiguous(format!("request line {:?}", show(&line)));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return ambiguous(format!("method {:?}", show(method)));
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return ambiguous(format!("request target {:?}", show(target)));
    }
    if !matches!(*version, b"HTTP/1.1" | b"HTTP/1.0") {
        return ambiguous(format!("version {:?}", show(version)));
    }
    record.method = String::from_utf8_lossy(method).into_owned();
    record.target = String::from_utf8_lossy(target).into_owned();
    record.version = String::from_utf8_lossy(version).into_owned();
    Ok(())
}

/// Header or trailer fields up to the empty line.
fn read_fields(reader: &mut Reader, out: &mut Fields) -> Result<(), Stop> {
    loop {
        let line = reader.line()?;
        if line.is_empty() {
            return Ok(());
        }
        if out.len() == MAX_FIELDS {
            return ambiguous(format!("more than {MAX_FIELDS} fields"));
        }
        out.push(parse_field(&line)?);
    }
}

fn parse_field(line: &[u8]) -> Result<(String, Vec<u8>), Stop> {
    if matches!(line[0], b' ' | b'\t') {
        return ambiguous(format!("obs-fold line {:?}", show(line)));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return ambiguous(format!("field line without a colon {:?}", show(line)));
    };
    let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return ambiguous(format!("field name {:?}", show(name)));
    }
    if !value.iter().all(|&b| is_field_byte(b)) {
        return ambiguous(format!("control byte in field value {:?}", show(value)));
    }
    Ok((String::from_utf8_lossy(name).into_owned(), value.to_vec()))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte allowed inside a field value: HTAB, SP, VCHAR or obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80
}

/// The one way the body can be delimited, or why there is more than one (or none).
fn framing_of(record: &Recorded) -> Result<Framing, Stop> {
    let te = record.header_all("transfer-encoding");
    let cl = record.header_all("content-length");
    if !te.is_empty() && !cl.is_empty() {
        return ambiguous("both Content-Length and Transfer-Encoding");
    }
    if !te.is_empty() {
        if record.version != "HTTP/1.1" {
            return ambiguous("Transfer-Encoding in an HTTP/1.0 request");
        }
        if te.len() != 1 || !te[0].eq_ignore_ascii_case(b"chunked") {
            let all: Vec<String> = te.iter().map(|v| show(v)).collect();
            return ambiguous(format!(
                "Transfer-Encoding other than one `chunked`: {all:?}"
            ));
        }
        return Ok(Framing::Chunked);
    }
    match cl.as_slice() {
        [] => Ok(Framing::None),
        [one] => content_length(one).map(Framing::Length),
        many => ambiguous(format!("{} Content-Length fields", many.len())),
    }
}

fn content_length(value: &[u8]) -> Result<u64, Stop> {
    if value.contains(&b',') {
        return ambiguous(format!("Content-Length list {:?}", show(value)));
    }
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return ambiguous(format!("Content-Length {:?}", show(value)));
    }
    let n: u64 = std::str::from_utf8(value).unwrap().parse().unwrap();
    if n > MAX_BODY {
        return ambiguous(format!("Content-Length {n} over the origin's {MAX_BODY}"));
    }
    Ok(n)
}

fn read_chunked(reader: &mut Reader, record: &mut Recorded) -> Result<(), Stop> {
    loop {
        let size = chunk_size(&reader.line()?)?;
        if size == 0 {
            return read_fields(reader, &mut record.trailers);
        }
        if record.body.len() as u64 + size > MAX_BODY {
            return ambiguous(format!("chunked body over the origin's {MAX_BODY}"));
        }
        reader.exact_into(size, &mut record.body)?;
        let after = reader.line()?;
        if !after.is_empty() {
            return ambiguous(format!(
                "chunk data followed by {:?}, not CRLF",
                show(&after)
            ));
        }
    }
}

/// `1*HEXDIG [ chunk-ext ]`, extensions without whitespace (a proxy re-encoding chunks has
/// no reason to add any).
fn chunk_size(line: &[u8]) -> Result<u64, Stop> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (size, ext) = line.split_at(digits);
    if digits == 0 || digits > 15 {
        return ambiguous(format!("chunk size line {:?}", show(line)));
    }
    let ext_ok = ext.is_empty()
        || (ext[0] == b';' && ext.iter().all(|&b| b.is_ascii_graphic() || b >= 0x80));
    if !ext_ok {
        return ambiguous(format!("chunk size line {:?}", show(line)));
    }
    Ok(u64::from_str_radix(std::str::from_utf8(size).unwrap(), 16).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `bytes` on one connection, closes, and returns what the origin recorded.
    fn record(bytes: &[u8]) -> Vec<Recorded> {
        let origin = RecordingOrigin::start();
        let mut stream = TcpStream::connect(origin.addr()).unwrap();
        stream.write_all(bytes).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut answers = Vec::new();
        let _ = stream.read_to_end(&mut answers);
        assert!(origin.wait_idle(Duration::from_secs(5)));
        origin.records_from(0)
    }

    fn violation(bytes: &[u8]) -> String {
        let records = record(bytes);
        match &records.last().expect("a record").outcome {
            Outcome::Violation(why) => why.clone(),
            other => panic!("expected a violation for {:?}, got {other:?}", show(bytes)),
        }
    }

    #[test]
    fn reads_length_and_chunked_bodies_with_trailers() {
        let records = record(
            b"POST /a?b=c HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
              PUT /d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              2;x=y\r\nde\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n\
              HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        assert_eq!(records.len(), 3, "{records:?}");
        assert!(records.iter().all(|r| r.outcome == Outcome::Complete));
        assert_eq!(records[0].target, "/a?b=c");
        assert_eq!(records[0].body, b"abc");
        assert_eq!(records[1].framing, Some(Framing::Chunked));
        assert_eq!(records[1].body, b"de0123456789");
        assert_eq!(
            records[1].trailers,
            vec![("X-T".to_string(), b"1".to_vec())]
        );
        assert_eq!(records[2].method, "HEAD");
    }

    #[test]
    fn ambiguous_framing_is_a_violation() {
        let head = "POST / HTTP/1.1\r\nHost: t\r\n";
        for (fields, body) in [
            (
                "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            ("Content-Length: 1, 1\r\n", "a"),
            ("Content-Length: 1\r\nContent-Length: 1\r\n", "a"),
            ("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            ("Transfer-Encoding: chunked\r\n", "zz\r\n\r\n"),
            ("Transfer-Encoding: chunked\r\n", "1\r\nab\r\n0\r\n\r\n"),
            ("Content-Length: +1\r\n", "a"),
            ("X-A: a\r\n b\r\n", ""),
            ("X-A: a\0b\r\n", ""),
            ("Bad Name: v\r\n", ""),
            ("X-A: v\n", ""),
        ] {
            let raw = format!("{head}{fields}\r\n{body}");
            violation(raw.as_bytes());
        }
    }

    #[test]
    fn a_cut_body_is_incomplete() {
        let records = record(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab");
        assert!(matches!(records[0].outcome, Outcome::Incomplete(_)));
        assert_eq!(records[0].body, b"ab");
    }
}
