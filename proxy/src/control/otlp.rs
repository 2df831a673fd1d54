//! Span export over OTLP/HTTP with the JSON encoding: each sampled request becomes one SERVER
//! span, sent to a collector by one exporter thread so that no worker ever waits on the
//! network.
//!
//! The shape is the access log's: each worker holds a [`SpanRecorder`] that formats spans
//! straight into a local batch and hands batches over a bounded channel with `try_send` (a
//! full channel costs the spans, counted, never a wait). The exporter gathers them into one
//! `ExportTraceServiceRequest` and POSTs it every `interval`, or sooner once `batch` spans
//! wait, over a plain `std::net::TcpStream` with `timeout` on the whole exchange. An export
//! that fails is not retried: its spans are counted as dropped and the failure is logged at
//! most once a minute.
//!
//! Deliberately not here: TLS to the collector (a local agent or sidecar forwards over TLS),
//! protobuf, and the sampling of incoming traces, which their `traceparent` flag decides.

use std::cell::{Cell, RefCell};
use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::access_log::{put_escaped, put_str, put_u64};
use crate::config::{OtlpEndpoint, TracingSettings};

/// A worker hands its spans over at this many (or `batch`, when smaller), or this many bytes.
const LOCAL_SPANS: usize = 64;
const LOCAL_BYTES: usize = 64 * 1024;

/// Batches each worker may have queued for the exporter.
const BATCHES_PER_WORKER: usize = 16;

/// A buffer that grew past this is freed rather than reused.
const MAX_KEPT_CAPACITY: usize = 4 * LOCAL_BYTES;

/// How often, at most, a failing export is reported.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The most of a collector's answer that is read (its status line is what matters).
const MAX_ANSWER: usize = 64 * 1024;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A span's ids, read from the `traceparent` the gateway sent upstream and the one it
/// received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    /// The gateway's span (the parent id of the `traceparent` sent upstream).
    pub span_id: [u8; 8],
    /// The caller's span, when the request continued a trace.
    pub parent_span_id: Option<[u8; 8]>,
    /// The sampled flag sent upstream: only sampled spans are recorded.
    pub sampled: bool,
}

impl SpanIds {
    /// From `sent`, the `traceparent` value the gateway wrote upstream (55 bytes, lowercase),
    /// and `incoming`, the one the request carried: the caller's span is the parent when the
    /// incoming value carries the same trace id. None when `sent` is not a `traceparent`.
    pub fn from_traceparent(sent: &[u8], incoming: Option<&[u8]>) -> Option<SpanIds> {
        if sent.len() < 55 || sent[2] != b'-' || sent[35] != b'-' || sent[52] != b'-' {
            return None;
        }
        let trace_id = unhex::<16>(&sent[3..35])?;
        let span_id = unhex::<8>(&sent[36..52])?;
        let flags = unhex::<1>(&sent[53..55])?;
        let parent_span_id = incoming
            .map(<[u8]>::trim_ascii)
            .filter(|v| v.len() >= 55 && v[2] == b'-' && v[35] == b'-' && v[3..35] == sent[3..35])
            .and_then(|v| unhex::<8>(&v[36..52]))
            .filter(|p| *p != [0; 8]);
        Some(SpanIds {
            trace_id,
            span_id,
            parent_span_id,
            sampled: flags[0] & 1 == 1,
        })
    }
}

/// `N` bytes from `2N` lowercase hex digits.
fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

/// One answered request as a span, every field borrowed from the worker's own state.
#[derive(Clone, Copy, Debug)]
pub struct SpanRecord<'a> {
    pub ids: SpanIds,
    /// A low-cardinality name for what was called (the operation's template, the API's or the
    /// route's name): the span is named `METHOD ROUTE`, or `METHOD` when it is empty.
    pub route: &'a str,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub status: u16,
    pub method: &'a [u8],
    /// The request's path; a query, when present, is left out.
    pub path: &'a [u8],
    /// The Host the client asked for.
    pub host: &'a [u8],
    /// The client's IP address, as text.
    pub client: &'a [u8],
    pub api: &'a str,
    pub operation: &'a str,
    pub backend: &'a str,
    /// The upstream address the request went to.
    pub target: Option<&'a str>,
}

/// Spans on their way to the exporter: JSON span objects separated by commas.
struct Batch {
    buf: Vec<u8>,
    spans: usize,
}

struct Shared {
    spans_exported: AtomicU64,
    spans_dropped: AtomicU64,
    /// Batches handed over, and batches the exporter is done with (for [`SpanExport::drain`]).
    sent: AtomicU64,
    done: AtomicU64,
    /// Export what is gathered at once (for `drain`).
    export_now: AtomicBool,
}

/// The process's span export: the exporter thread's handle, shared by the workers.
pub struct SpanExport {
    shared: Arc<Shared>,
    batches: Sender<Batch>,
    recycled: Receiver<Vec<u8>>,
    /// A new trace is sampled when a uniform 64-bit draw falls below this (`u64::MAX`: all).
    threshold: u64,
    /// Spans a worker gathers before handing them over.
    local_spans: usize,
}

impl std::fmt::Debug for SpanExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (exported, dropped) = self.counters();
        f.debug_struct("SpanExport")
            .field("spans_exported", &exported)
            .field("spans_dropped", &dropped)
            .finish_non_exhaustive()
    }
}

/// The exporter's ends of the channels.
struct ExporterEnds {
    batches: Receiver<Batch>,
    recycle: Sender<Vec<u8>>,
}

impl SpanExport {
    /// Starts the exporter thread, `ringway-otlp`. The collector is not contacted until the
    /// first export: one that is down costs spans, not the start.
    pub fn start(settings: &TracingSettings, workers: usize) -> io::Result<Arc<SpanExport>> {
        let (export, ends) = SpanExport::new(settings, workers);
        let shared = Arc::clone(&export.shared);
        let settings = settings.clone();
        std::thread::Builder::new()
            .name("ringway-otlp".into())
            .spawn(move || export_batches(ends, &shared, &settings))?;
        Ok(Arc::new(export))
    }

    fn new(settings: &TracingSettings, workers: usize) -> (SpanExport, ExporterEnds) {
        let capacity = workers.max(1) * BATCHES_PER_WORKER;
        let (batches, batches_rx) = crossbeam_channel::bounded(capacity);
        let (recycle, recycled) = crossbeam_channel::bounded(capacity + workers.max(1));
        let threshold = if settings.sample >= 1.0 {
            u64::MAX
        } else {
            // `as` saturates, and maps NaN to 0.
            (settings.sample.max(0.0) * 18_446_744_073_709_551_616.0) as u64
        };
        let export = SpanExport {
            shared: Arc::new(Shared {
                spans_exported: AtomicU64::new(0),
                spans_dropped: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                done: AtomicU64::new(0),
                export_now: AtomicBool::new(false),
            }),
            batches,
            recycled,
            threshold,
            local_spans: settings.batch.clamp(1, LOCAL_SPANS),
        };
        let ends = ExporterEnds {
            batches: batches_rx,
            recycle,
        };
        (export, ends)
    }

    /// The recorder of worker `index`, to be kept on that worker's thread.
    pub fn worker(self: &Arc<Self>, index: usize) -> SpanRecorder {
        let nanos = unix_nanos(SystemTime::now());
        SpanRecorder {
            export: Arc::clone(self),
            batch: RefCell::new(Vec::with_capacity(LOCAL_BYTES)),
            spans: Cell::new(0),
            rng: Cell::new(mix(nanos ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1),
        }
    }

    /// Spans exported (the collector answered 2xx), and spans dropped (the exporter was
    /// behind, or an export failed).
    pub fn counters(&self) -> (u64, u64) {
        (
            self.shared.spans_exported.load(Ordering::Relaxed),
            self.shared.spans_dropped.load(Ordering::Relaxed),
        )
    }

    /// Exports what has been handed over without waiting for the interval, and waits up to
    /// `timeout` for it: for the control thread at exit, once the workers have flushed
    /// (dropping a recorder flushes it). Returns whether every span was dealt with.
    pub fn drain(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        self.shared.export_now.store(true, Ordering::Release);
        let wake = Batch {
            buf: Vec::new(),
            spans: 0,
        };
        // Counted before it is sent, so that `done` can never run ahead of `sent`.
        self.shared.sent.fetch_add(1, Ordering::AcqRel);
        if self.batches.send_timeout(wake, timeout).is_err() {
            self.shared.sent.fetch_sub(1, Ordering::AcqRel);
        }
        loop {
            if self.shared.done.load(Ordering::Acquire) >= self.shared.sent.load(Ordering::Acquire)
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A worker's span recorder: formats spans into a local batch and hands batches to the
/// exporter. Lives on its worker's thread (it is not `Sync`).
pub struct SpanRecorder {
    export: Arc<SpanExport>,
    batch: RefCell<Vec<u8>>,
    /// Spans in `batch`.
    spans: Cell<usize>,
    /// xorshift64 state for sampling.
    rng: Cell<u64>,
}

impl std::fmt::Debug for SpanRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanRecorder")
            .field("spans", &self.spans.get())
            .finish_non_exhaustive()
    }
}

impl SpanRecorder {
    /// Whether a trace the gateway starts (no valid incoming `traceparent`) is sampled: true
    /// for the configured fraction of calls. Its answer is the flag to send upstream.
    pub fn sample_new_trace(&self) -> bool {
        let threshold = self.export.threshold;
        if threshold == u64::MAX {
            return true;
        }
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x < threshold
    }

    /// Adds `s` to the batch (whatever its sampled flag says: the caller records sampled
    /// spans only). Never blocks: at most it hands a batch over with `try_send`.
    pub fn record(&self, s: &SpanRecord<'_>) {
        let full = {
            let mut batch = self.batch.borrow_mut();
            if !batch.is_empty() {
                batch.push(b',');
            }
            format_span(&mut batch, s);
            batch.len() >= LOCAL_BYTES
        };
        self.spans.set(self.spans.get() + 1);
        if full || self.spans.get() >= self.export.local_spans {
            self.flush();
        }
    }

    /// Hands the spans gathered so far to the exporter. For the worker's tick.
    pub fn flush(&self) {
        let spans = self.spans.replace(0);
        if spans == 0 {
            return;
        }
        let export = &*self.export;
        let mut batch = self.batch.borrow_mut();
        let buf = std::mem::take(&mut *batch);
        // Counted before it is sent, so that `done` can never run ahead of `sent`.
        export.shared.sent.fetch_add(1, Ordering::AcqRel);
        match export.batches.try_send(Batch { buf, spans }) {
            Ok(()) => {
                *batch = export
                    .recycled
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(LOCAL_BYTES));
            }
            Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                export.shared.sent.fetch_sub(1, Ordering::AcqRel);
                export
                    .shared
                    .spans_dropped
                    .fetch_add(spans as u64, Ordering::Relaxed);
                let mut buf = back.buf;
                buf.clear();
                *batch = buf;
            }
        }
    }
}

impl Drop for SpanRecorder {
    /// A worker that stops hands over what it still holds.
    fn drop(&mut self) {
        self.flush();
    }
}

fn put_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
    out.push(b'"');
}

/// A string attribute; left out when empty.
fn put_attr(out: &mut Vec<u8>, first: &mut bool, key: &str, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"key\":\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\",\"value\":{\"stringValue\":");
    put_str(out, value);
    out.extend_from_slice(b"}}");
}

/// One OTLP JSON span object. 64-bit integers are strings, as the protobuf JSON mapping
/// writes them; ids are lowercase hex, as OTLP/JSON requires.
fn format_span(out: &mut Vec<u8>, s: &SpanRecord<'_>) {
    out.extend_from_slice(b"{\"traceId\":");
    put_hex(out, &s.ids.trace_id);
    out.extend_from_slice(b",\"spanId\":");
    put_hex(out, &s.ids.span_id);
    if let Some(parent) = &s.ids.parent_span_id {
        out.extend_from_slice(b",\"parentSpanId\":");
        put_hex(out, parent);
    }
    out.extend_from_slice(b",\"name\":\"");
    put_escaped(out, s.method);
    if !s.route.is_empty() {
        out.push(b' ');
        put_escaped(out, s.route.as_bytes());
    }
    out.extend_from_slice(b"\",\"kind\":2,\"startTimeUnixNano\":\"");
    put_u64(out, s.start_unix_nanos);
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    put_u64(out, s.end_unix_nanos.max(s.start_unix_nanos));
    out.extend_from_slice(b"\",\"attributes\":[");
    let mut first = true;
    let path = match s.path.iter().position(|&b| b == b'?') {
        Some(q) => &s.path[..q],
        None => s.path,
    };
    put_attr(out, &mut first, "http.request.method", s.method);
    put_attr(out, &mut first, "url.path", path);
    if !std::mem::take(&mut first) {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"key\":\"http.response.status_code\",\"value\":{\"intValue\":\"");
    put_u64(out, u64::from(s.status));
    out.extend_from_slice(b"\"}}");
    put_attr(out, &mut first, "server.address", s.host);
    put_attr(out, &mut first, "client.address", s.client);
    put_attr(out, &mut first, "ringway.api", s.api.as_bytes());
    put_attr(out, &mut first, "ringway.operation", s.operation.as_bytes());
    put_attr(out, &mut first, "ringway.backend", s.backend.as_bytes());
    put_attr(
        out,
        &mut first,
        "ringway.target",
        s.target.unwrap_or("").as_bytes(),
    );
    out.extend_from_slice(b"]");
    // A server span is an error for 5xx only: a 4xx is the client's (OpenTelemetry's HTTP
    // conventions).
    if s.status >= 500 {
        out.extend_from_slice(b",\"status\":{\"code\":2}");
    }
    out.push(b'}');
}

/// The exporter thread: gathers batches into one request body and posts it every interval,
/// or once `batch` spans wait. Ends when every sender is gone, after a last export.
fn export_batches(ends: ExporterEnds, shared: &Shared, settings: &TracingSettings) {
    let mut head = Vec::new();
    head.extend_from_slice(
        b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\
          \"value\":{\"stringValue\":",
    );
    put_str(&mut head, settings.service_name.as_bytes());
    head.extend_from_slice(b"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"ringway\",\"version\":\"");
    head.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    head.extend_from_slice(b"\"},\"spans\":[");
    const TAIL: &[u8] = b"]}]}]}";
    let mut exporter = Exporter {
        body: head.clone(),
        head_len: head.len(),
        spans: 0,
        absorbed: 0,
        reported: None,
    };
    let mut due = Instant::now() + settings.interval;
    loop {
        let wait = due.saturating_duration_since(Instant::now());
        match ends.batches.recv_timeout(wait) {
            Ok(batch) => {
                exporter.absorbed += 1;
                let Batch { mut buf, spans } = batch;
                if spans > 0 {
                    if exporter.spans > 0 {
                        exporter.body.push(b',');
                    }
                    exporter.body.extend_from_slice(&buf);
                    exporter.spans += spans;
                }
                if buf.capacity() > 0 && buf.capacity() <= MAX_KEPT_CAPACITY {
                    buf.clear();
                    let _ = ends.recycle.try_send(buf);
                }
                let now = shared.export_now.swap(false, Ordering::AcqRel);
                if now || exporter.spans >= settings.batch {
                    exporter.export(shared, settings, TAIL);
                    due = Instant::now() + settings.interval;
                } else if exporter.spans == 0 {
                    exporter.settle(shared);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                exporter.export(shared, settings, TAIL);
                due = Instant::now() + settings.interval;
            }
            Err(RecvTimeoutError::Disconnected) => {
                exporter.export(shared, settings, TAIL);
                return;
            }
        }
    }
}

/// The request body being gathered.
struct Exporter {
    body: Vec<u8>,
    head_len: usize,
    spans: usize,
    /// Batches taken in since the last export.
    absorbed: u64,
    reported: Option<Instant>,
}

impl Exporter {
    /// Marks the batches taken in as dealt with.
    fn settle(&mut self, shared: &Shared) {
        shared.done.fetch_add(self.absorbed, Ordering::AcqRel);
        self.absorbed = 0;
    }

    fn export(&mut self, shared: &Shared, settings: &TracingSettings, tail: &[u8]) {
        if self.spans > 0 {
            self.body.extend_from_slice(tail);
            let spans = self.spans as u64;
            match post(&settings.endpoint, &self.body, settings.timeout) {
                Ok(()) => {
                    shared.spans_exported.fetch_add(spans, Ordering::Relaxed);
                }
                Err(e) => {
                    shared.spans_dropped.fetch_add(spans, Ordering::Relaxed);
                    if self.reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                        self.reported = Some(Instant::now());
                        log::warn!(
                            "span export to {}: {spans} spans dropped: {e}",
                            settings.endpoint.url
                        );
                    }
                }
            }
            self.body.truncate(self.head_len);
            if self.body.capacity() > 16 * MAX_KEPT_CAPACITY {
                self.body.shrink_to(MAX_KEPT_CAPACITY);
            }
            self.spans = 0;
        }
        self.settle(shared);
    }
}

/// POSTs `body` to the collector with HTTP/1.1 and `Connection: close`, within `timeout`.
/// Ok when it answers 2xx.
fn post(endpoint: &OtlpEndpoint, body: &[u8], timeout: Duration) -> Result<(), String> {
    let until = Instant::now() + timeout;
    let left = || {
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {timeout:?}"))
    };
    let addrs = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", endpoint.host))?;
    let mut last = format!("{} resolved to no address", endpoint.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let io = |e: io::Error| e.to_string();
    stream.set_nodelay(true).map_err(io)?;
    let mut request = Vec::with_capacity(256 + body.len());
    write!(
        request,
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nUser-Agent: ringway/{}\r\nConnection: close\r\n\r\n",
        endpoint.path,
        endpoint.authority,
        body.len(),
        env!("CARGO_PKG_VERSION")
    )
    .map_err(io)?;
    request.extend_from_slice(body);
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    stream.write_all(&request).map_err(io)?;
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let status = loop {
        if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&answer[..end]).into_owned();
            let code = line
                .strip_prefix("HTTP/1.")
                .and_then(|rest| rest.get(2..5))
                .and_then(|c| c.parse::<u16>().ok());
            break code.ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
        }
        if answer.len() > MAX_ANSWER {
            return Err("the answer's status line is too long".into());
        }
        stream.set_read_timeout(Some(left()?)).map_err(io)?;
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err("the collector closed the connection without an answer".into());
        }
        answer.extend_from_slice(&chunk[..n]);
    };
    // The rest of the answer is read (briefly) so that closing does not reset the exchange.
    while answer.len() <= MAX_ANSWER {
        let Ok(wait) = left() else { break };
        if stream.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    const SENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-a1b2c3d4e5f60718-01";
    const INCOMING: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn settings(url: &str, batch: usize, interval: Duration) -> TracingSettings {
        let authority = url
            .strip_prefix("http://")
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let (host, port) = authority.rsplit_once(':').unwrap();
        TracingSettings {
            endpoint: OtlpEndpoint {
                url: url.to_string(),
                authority: authority.to_string(),
                host: host.to_string(),
                port: port.parse().unwrap(),
                path: "/v1/traces".to_string(),
            },
            sample: 1.0,
            service_name: "edge-\"1\"".to_string(),
            batch,
            interval,
            timeout: Duration::from_secs(2),
        }
    }

    fn span(status: u16) -> SpanRecord<'static> {
        SpanRecord {
            ids: SpanIds::from_traceparent(SENT, Some(INCOMING)).unwrap(),
            route: "/orders/{id}",
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_002_500_000,
            status,
            method: b"GET",
            path: b"/orders/7?expand=1",
            host: b"api.example.com",
            client: b"192.0.2.7",
            api: "orders",
            operation: "get-order",
            backend: "orders",
            target: Some("127.0.0.1:9000"),
        }
    }

    /// A collector on loopback: answers each POST with `status` and passes its target and
    /// body on.
    fn collector(status: u16) -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut data = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = stream.read(&mut chunk).unwrap();
                    assert!(n > 0, "the exporter closed early");
                    data.extend_from_slice(&chunk[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse::<usize>().unwrap())
                            .unwrap();
                        break (end + 4, length);
                    }
                };
                while data.len() < head_end + length {
                    let n = stream.read(&mut chunk).unwrap();
                    assert!(n > 0);
                    data.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: 2\r\n\r\n{{}}"
                );
                stream.write_all(answer.as_bytes()).unwrap();
                if tx.send((head, data[head_end..].to_vec())).is_err() {
                    return;
                }
            }
        });
        (url, rx)
    }

    #[test]
    fn ids_come_from_the_traceparents() {
        let ids = SpanIds::from_traceparent(SENT, Some(INCOMING)).unwrap();
        assert_eq!(
            ids.trace_id,
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(
            ids.span_id,
            [0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18]
        );
        assert_eq!(
            ids.parent_span_id,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert!(ids.sampled);
        // A started trace (no incoming value, or another trace's) has no parent.
        let other = b"00-11111111111111111111111111111111-00f067aa0ba902b7-01";
        for incoming in [None, Some(&other[..]), Some(b"garbage")] {
            let ids = SpanIds::from_traceparent(SENT, incoming).unwrap();
            assert_eq!(ids.parent_span_id, None);
        }
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-a1b2c3d4e5f60718-00";
        assert!(!SpanIds::from_traceparent(unsampled, None).unwrap().sampled);
        assert_eq!(SpanIds::from_traceparent(b"00-short", None), None);
    }

    #[test]
    fn new_traces_are_sampled_at_the_configured_rate() {
        let count = |sample: f64| {
            let mut s = settings("http://127.0.0.1:9/v1/traces", 10, Duration::from_secs(1));
            s.sample = sample;
            let (export, _ends) = SpanExport::new(&s, 1);
            let recorder = Arc::new(export).worker(0);
            (0..10_000).filter(|_| recorder.sample_new_trace()).count()
        };
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 10_000);
        let hundredth = count(0.01);
        assert!((50..=150).contains(&hundredth), "{hundredth}");
    }

    #[test]
    fn spans_reach_the_collector_as_otlp_json() {
        let (url, bodies) = collector(200);
        let export = SpanExport::start(&settings(&url, 512, Duration::from_millis(50)), 2).unwrap();
        let (a, b) = (export.worker(0), export.worker(1));
        a.record(&span(200));
        b.record(&SpanRecord {
            ids: SpanIds::from_traceparent(SENT, None).unwrap(),
            route: "",
            target: None,
            api: "",
            ..span(503)
        });
        a.flush();
        b.flush();
        // Exported on the interval, with no drain asked for.
        let (head, body) = bodies.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        let json: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        let resource = &json["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0],
            serde_json::json!({"key": "service.name", "value": {"stringValue": "edge-\"1\""}})
        );
        let scope = &resource["scopeSpans"][0];
        assert_eq!(scope["scope"]["name"], "ringway");
        let spans = scope["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);
        let ok = spans
            .iter()
            .find(|s| s["name"] == "GET /orders/{id}")
            .unwrap();
        assert_eq!(ok["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ok["spanId"], "a1b2c3d4e5f60718");
        assert_eq!(ok["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(ok["kind"], 2);
        assert_eq!(ok["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(ok["endTimeUnixNano"], "1700000000002500000");
        assert!(ok.get("status").is_none());
        let attrs: std::collections::HashMap<String, serde_json::Value> = ok["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
            .collect();
        let string = |k: &str| attrs[k]["stringValue"].as_str().unwrap().to_string();
        assert_eq!(string("http.request.method"), "GET");
        assert_eq!(string("url.path"), "/orders/7");
        assert_eq!(attrs["http.response.status_code"]["intValue"], "200");
        assert_eq!(string("server.address"), "api.example.com");
        assert_eq!(string("client.address"), "192.0.2.7");
        assert_eq!(string("ringway.api"), "orders");
        assert_eq!(string("ringway.operation"), "get-order");
        assert_eq!(string("ringway.backend"), "orders");
        assert_eq!(string("ringway.target"), "127.0.0.1:9000");
        let failed = spans.iter().find(|s| s["name"] == "GET").unwrap();
        assert!(failed.get("parentSpanId").is_none());
        assert_eq!(failed["status"]["code"], 2);
        let keys: Vec<&str> = failed["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap())
            .collect();
        assert!(!keys.contains(&"ringway.api") && !keys.contains(&"ringway.target"));
        let until = Instant::now() + Duration::from_secs(5);
        while export.counters() != (2, 0) {
            assert!(Instant::now() < until, "{:?}", export.counters());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_full_batch_goes_at_once_and_drain_sends_the_rest() {
        let (url, bodies) = collector(200);
        let export = SpanExport::start(&settings(&url, 3, Duration::from_secs(3600)), 1).unwrap();
        let recorder = export.worker(0);
        for _ in 0..4 {
            recorder.record(&span(200));
        }
        let (_, body) = bodies.recv_timeout(Duration::from_secs(5)).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        drop(recorder);
        assert!(export.drain(Duration::from_secs(5)));
        let (_, body) = bodies.recv_timeout(Duration::from_secs(5)).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(export.counters(), (4, 0));
    }

    #[test]
    fn failed_exports_count_their_spans() {
        let (url, _bodies) = collector(503);
        let export = SpanExport::start(&settings(&url, 512, Duration::from_secs(3600)), 1).unwrap();
        let recorder = export.worker(0);
        recorder.record(&span(200));
        recorder.record(&span(200));
        recorder.flush();
        assert!(export.drain(Duration::from_secs(5)));
        assert_eq!(export.counters(), (0, 2));

        // Nothing listening.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let s = settings(
            &format!("http://{closed}/v1/traces"),
            512,
            Duration::from_secs(3600),
        );
        let export = SpanExport::start(&s, 1).unwrap();
        let recorder = export.worker(0);
        recorder.record(&span(200));
        recorder.flush();
        assert!(export.drain(Duration::from_secs(5)));
        assert_eq!(export.counters(), (0, 1));
    }

    #[test]
    fn a_stalled_exporter_costs_spans_not_time() {
        let s = settings("http://127.0.0.1:9/v1/traces", 1, Duration::from_secs(1));
        // No exporter thread: the channel fills and stays full.
        let (export, _ends) = SpanExport::new(&s, 1);
        let export = Arc::new(export);
        let recorder = export.worker(0);
        for _ in 0..BATCHES_PER_WORKER + 5 {
            recorder.record(&span(200));
        }
        assert_eq!(export.counters(), (0, 5));
    }
}
