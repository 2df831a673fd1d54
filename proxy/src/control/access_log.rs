//! The access log: one JSON object per answered request, written by one thread of its own so
//! that a slow disk or a blocked stdout never stalls a worker.
//!
//! Each worker holds an [`AccessLogger`]. [`AccessLogger::record`] formats the line straight
//! into the worker's batch buffer (no serde, no allocation once the buffers exist); a batch is
//! handed to the writer thread when it passes [`BATCH_BYTES`] or on [`AccessLogger::flush`],
//! which the worker calls on its tick. The hand-off never waits: when the writer is behind and
//! the worker already has `buffer_lines` lines waiting (or the channel is full), the batch's
//! lines are counted as dropped and its buffer is reused. Emptied buffers come back to the
//! workers through a second channel, so in the steady state nothing is allocated.
//!
//! The writer appends to a file (created when missing, mode 0640), or writes to stdout or
//! stderr. [`AccessLog::reopen`] makes it open the path again before its next write, so that
//! logrotate can rename the file and signal (SIGUSR1).
//!
//! What is not here: choosing which requests to log per API (the route's `access_log`, which
//! the worker reads), and any retry of lines that could not be written (they are counted).

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::{AccessLogSettings, LogDestination};

/// A worker hands its batch to the writer once it holds this many bytes.
pub const BATCH_BYTES: usize = 32 * 1024;

/// Room for a full batch and the line that tipped it over.
const BATCH_CAPACITY: usize = BATCH_BYTES + 4 * 1024;

/// A buffer that grew past this (a line with a megabyte of path) is freed rather than reused.
const MAX_KEPT_CAPACITY: usize = 4 * BATCH_BYTES;

/// Batches one worker may have queued, at most: the channel's slots are allocated up front.
const MAX_BATCHES_PER_WORKER: usize = 1024;

/// How often, at most, a failing write is reported.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The `cache` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Bypass,
}

impl CacheStatus {
    fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// One answered request, every field borrowed from the worker's own state. Empty `host`,
/// `api`, `operation`, `backend` and absent options are written as `null`.
#[derive(Clone, Copy, Debug)]
pub struct AccessRecord<'a> {
    /// The request id as sent upstream (`X-Request-Id`).
    pub request_id: &'a [u8],
    /// The client's IP address, as text.
    pub client: &'a [u8],
    pub method: &'a [u8],
    pub host: &'a [u8],
    /// The request target as received (path and query).
    pub path: &'a [u8],
    pub status: u16,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response bytes written to the client, head included.
    pub bytes_out: u64,
    /// From the request's first byte to the answer's last.
    pub duration: Duration,
    /// From writing the request upstream to the upstream's response head (the upstream's
    /// time to answer); None when nothing was forwarded.
    pub upstream: Option<Duration>,
    pub api: &'a str,
    pub operation: &'a str,
    pub backend: &'a str,
    /// The upstream address the request went to.
    pub target: Option<&'a str>,
    /// The subscription whose key the request carried.
    pub subscription: Option<&'a str>,
    pub cache: Option<CacheStatus>,
    /// The trace id (32 hex digits) of the `traceparent` sent upstream.
    pub trace_id: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

/// A batch of whole lines on its way to the writer.
struct Batch {
    buf: Vec<u8>,
    lines: usize,
    worker: usize,
}

/// What the writer thread and the loggers share.
struct Shared {
    lines_written: AtomicU64,
    lines_dropped: AtomicU64,
    /// Lines each worker has handed over and the writer has not written yet.
    waiting: Box<[AtomicUsize]>,
    /// Batches handed over, and batches the writer is done with (for [`AccessLog::drain`]).
    sent: AtomicU64,
    done: AtomicU64,
    reopen: AtomicBool,
}

/// Which requests are logged.
#[derive(Clone, Copy, Debug)]
enum Sampling {
    All,
    None,
    /// A request is logged when a uniform 64-bit draw falls below this.
    Below(u64),
}

impl Sampling {
    fn new(fraction: f64) -> Sampling {
        if fraction >= 1.0 {
            Sampling::All
        } else if fraction <= 0.0 || fraction.is_nan() {
            Sampling::None
        } else {
            // `as` saturates; the fraction is below 1, so this is below 2^64.
            Sampling::Below((fraction * 18_446_744_073_709_551_616.0) as u64)
        }
    }
}

/// The process's access log: the writer thread's handle, shared by the workers.
pub struct AccessLog {
    shared: Arc<Shared>,
    batches: Sender<Batch>,
    recycled: Receiver<Vec<u8>>,
    sampling: Sampling,
    errors_always: bool,
    /// Lines a worker may have waiting for the writer.
    budget: usize,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (written, dropped) = self.counters();
        f.debug_struct("AccessLog")
            .field("lines_written", &written)
            .field("lines_dropped", &dropped)
            .finish_non_exhaustive()
    }
}

/// The writer's ends of the channels.
struct WriterEnds {
    batches: Receiver<Batch>,
    recycle: Sender<Vec<u8>>,
}

impl AccessLog {
    /// Opens the destination (so that a path that cannot be written stops the start with an
    /// error naming it) and starts the writer thread, `ringway-access-log`.
    pub fn start(settings: &AccessLogSettings, workers: usize) -> io::Result<Arc<AccessLog>> {
        let output = Output::open(&settings.destination).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "access_log.path: cannot open {} for appending: {e}",
                    settings.destination
                ),
            )
        })?;
        let capacity = workers.max(1) * settings.buffer_lines.clamp(1, MAX_BATCHES_PER_WORKER);
        let (log, ends) = AccessLog::new(settings, workers, capacity);
        let shared = Arc::clone(&log.shared);
        let destination = settings.destination.clone();
        std::thread::Builder::new()
            .name("ringway-access-log".into())
            .spawn(move || write_batches(ends, &shared, &destination, output))?;
        Ok(Arc::new(log))
    }

    /// The log's state without a writer: `start` gives the ends to the writer thread.
    fn new(
        settings: &AccessLogSettings,
        workers: usize,
        capacity: usize,
    ) -> (AccessLog, WriterEnds) {
        let workers = workers.max(1);
        let (batches, batches_rx) = crossbeam_channel::bounded(capacity);
        // Every buffer in flight, plus one per worker, can come back.
        let (recycle, recycled) = crossbeam_channel::bounded(capacity + workers);
        let shared = Arc::new(Shared {
            lines_written: AtomicU64::new(0),
            lines_dropped: AtomicU64::new(0),
            waiting: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
        });
        let log = AccessLog {
            shared,
            batches,
            recycled,
            sampling: Sampling::new(settings.sample),
            errors_always: settings.errors_always,
            budget: settings.buffer_lines.max(1),
        };
        let ends = WriterEnds {
            batches: batches_rx,
            recycle,
        };
        (log, ends)
    }

    /// The logger of worker `index` (`0..workers`), to be kept on that worker's thread.
    pub fn worker(self: &Arc<Self>, index: usize) -> AccessLogger {
        assert!(
            index < self.shared.waiting.len(),
            "access log worker {index} of {}",
            self.shared.waiting.len()
        );
        AccessLogger {
            log: Arc::clone(self),
            index,
            batch: RefCell::new(Vec::with_capacity(BATCH_CAPACITY)),
            lines: Cell::new(0),
            rng: Cell::new(seed(index)),
            clock: Cell::new((u64::MAX, [0; 19])),
        }
    }

    /// Makes the writer open the path again before its next write (after logrotate renamed
    /// the file). Does nothing for stdout and stderr.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
        // Wake the writer, so that the new file exists even before the next line. A full
        // channel wakes it anyway.
        let wake = Batch {
            buf: Vec::new(),
            lines: 0,
            worker: 0,
        };
        self.shared.sent.fetch_add(1, Ordering::AcqRel);
        if self.batches.try_send(wake).is_err() {
            self.shared.sent.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Lines written, and lines dropped (the writer was behind, or the write failed).
    pub fn counters(&self) -> (u64, u64) {
        (
            self.shared.lines_written.load(Ordering::Relaxed),
            self.shared.lines_dropped.load(Ordering::Relaxed),
        )
    }

    /// Waits, up to `timeout`, until the writer has written every batch handed to it: for the
    /// control thread at exit, once the workers have flushed (dropping a logger flushes it).
    /// Returns whether everything was written.
    pub fn drain(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            let sent = self.shared.sent.load(Ordering::Acquire);
            if self.shared.done.load(Ordering::Acquire) >= sent {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A worker's access logger: formats lines into a local batch and hands batches to the
/// writer. Lives on its worker's thread (it is not `Sync`).
pub struct AccessLogger {
    log: Arc<AccessLog>,
    index: usize,
    batch: RefCell<Vec<u8>>,
    /// Lines in `batch`.
    lines: Cell<usize>,
    /// xorshift64 state for sampling.
    rng: Cell<u64>,
    /// The second last formatted, and its `YYYY-MM-DDTHH:MM:SS`.
    clock: Cell<(u64, [u8; 19])>,
}

impl std::fmt::Debug for AccessLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogger")
            .field("worker", &self.index)
            .field("lines", &self.lines.get())
            .finish_non_exhaustive()
    }
}

/// A nonzero xorshift seed that differs between workers and between runs.
fn seed(index: usize) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix(nanos ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl AccessLogger {
    /// Logs `r` if sampling keeps it (answers of 400 and above always, with `errors_always`).
    /// Never blocks: at most it hands a full batch to the writer with `try_send`.
    pub fn record(&self, r: &AccessRecord<'_>) {
        if !self.keeps(r.status) {
            return;
        }
        let full = {
            let mut batch = self.batch.borrow_mut();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.format(&mut batch, now, r);
            batch.len() >= BATCH_BYTES
        };
        self.lines.set(self.lines.get() + 1);
        if full || self.lines.get() >= self.log.budget {
            self.flush();
        }
    }

    /// Hands the lines formatted so far to the writer. For the worker's tick.
    pub fn flush(&self) {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return;
        }
        let log = &*self.log;
        let shared = &*log.shared;
        let mut batch = self.batch.borrow_mut();
        let waiting = &shared.waiting[self.index];
        // Counted before the send, so the writer's decrement can never come first.
        if waiting.fetch_add(lines, Ordering::Relaxed) + lines > log.budget {
            waiting.fetch_sub(lines, Ordering::Relaxed);
            shared
                .lines_dropped
                .fetch_add(lines as u64, Ordering::Relaxed);
            batch.clear();
            return;
        }
        let buf = std::mem::take(&mut *batch);
        let sent = Batch {
            buf,
            lines,
            worker: self.index,
        };
        // Counted before it is sent, so that `done` can never run ahead of `sent`.
        shared.sent.fetch_add(1, Ordering::AcqRel);
        match log.batches.try_send(sent) {
            Ok(()) => {
                // A buffer the writer emptied; a new one only while the writer is behind.
                *batch = log
                    .recycled
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BATCH_CAPACITY));
            }
            Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                shared.sent.fetch_sub(1, Ordering::AcqRel);
                waiting.fetch_sub(lines, Ordering::Relaxed);
                shared
                    .lines_dropped
                    .fetch_add(lines as u64, Ordering::Relaxed);
                let mut buf = back.buf;
                buf.clear();
                *batch = buf;
            }
        }
    }

    fn keeps(&self, status: u16) -> bool {
        if self.log.errors_always && status >= 400 {
            return true;
        }
        match self.log.sampling {
            Sampling::All => true,
            Sampling::None => false,
            Sampling::Below(threshold) => {
                let mut x = self.rng.get();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.rng.set(x);
                x < threshold
            }
        }
    }

    /// Appends `r`'s line, stamped `now` (since the epoch), to `out`.
    fn format(&self, out: &mut Vec<u8>, now: Duration, r: &AccessRecord<'_>) {
        out.extend_from_slice(b"{\"time\":\"");
        self.put_time(out, now);
        out.extend_from_slice(b"\",\"request_id\":");
        put_str(out, r.request_id);
        out.extend_from_slice(b",\"client\":");
        put_str(out, r.client);
        out.extend_from_slice(b",\"method\":");
        put_str(out, r.method);
        out.extend_from_slice(b",\"host\":");
        put_nonempty(out, r.host);
        out.extend_from_slice(b",\"path\":");
        put_str(out, r.path);
        out.extend_from_slice(b",\"status\":");
        put_u64(out, u64::from(r.status));
        out.extend_from_slice(b",\"bytes_in\":");
        put_u64(out, r.bytes_in);
        out.extend_from_slice(b",\"bytes_out\":");
        put_u64(out, r.bytes_out);
        out.extend_from_slice(b",\"duration_ms\":");
        put_ms(out, r.duration);
        out.extend_from_slice(b",\"upstream_ms\":");
        match r.upstream {
            Some(d) => put_ms(out, d),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"api\":");
        put_nonempty(out, r.api.as_bytes());
        out.extend_from_slice(b",\"operation\":");
        put_nonempty(out, r.operation.as_bytes());
        out.extend_from_slice(b",\"backend\":");
        put_nonempty(out, r.backend.as_bytes());
        out.extend_from_slice(b",\"target\":");
        put_opt(out, r.target.map(str::as_bytes));
        out.extend_from_slice(b",\"subscription\":");
        put_opt(out, r.subscription.map(str::as_bytes));
        out.extend_from_slice(b",\"cache\":");
        put_opt(out, r.cache.map(|c| c.as_str().as_bytes()));
        out.extend_from_slice(b",\"trace_id\":");
        put_opt(out, r.trace_id);
        out.extend_from_slice(b",\"user_agent\":");
        put_opt(out, r.user_agent);
        out.extend_from_slice(b"}\n");
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`; the part up to the second is formatted once a second.
    fn put_time(&self, out: &mut Vec<u8>, now: Duration) {
        let secs = now.as_secs();
        let (last, mut text) = self.clock.get();
        if last != secs {
            text = civil_time(secs);
            self.clock.set((secs, text));
        }
        out.extend_from_slice(&text);
        let ms = now.subsec_millis();
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }
}

impl Drop for AccessLogger {
    /// A worker that stops hands over what it still holds.
    fn drop(&mut self) {
        self.flush();
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for `secs` since the epoch (Howard Hinnant's
/// `civil_from_days`).
fn civil_time(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rest / 3600);
    put(14, 2, rest / 60 % 60);
    put(17, 2, rest % 60);
    text
}

pub(super) fn put_u64(out: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Milliseconds with three decimals (microsecond resolution).
fn put_ms(out: &mut Vec<u8>, d: Duration) {
    let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
    put_u64(out, us / 1000);
    let frac = us % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

fn put_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => put_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn put_nonempty(out: &mut Vec<u8>, v: &[u8]) {
    put_opt(out, (!v.is_empty()).then_some(v));
}

/// `v` as a JSON string: quotes, backslashes and control characters escaped, and every
/// sequence that is not UTF-8 replaced by U+FFFD.
pub(super) fn put_str(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'"');
    put_escaped(out, v);
    out.push(b'"');
}

/// `v` escaped for the inside of a JSON string.
pub(super) fn put_escaped(out: &mut Vec<u8>, v: &[u8]) {
    for chunk in v.utf8_chunks() {
        escape_valid(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// Escapes valid UTF-8: only ASCII needs it, so multi-byte characters are copied whole.
fn escape_valid(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in v.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&v[start..i]);
        if escaped.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(escaped);
        }
        start = i + 1;
    }
    out.extend_from_slice(&v[start..]);
}

/// Where the writer writes.
enum Output {
    Stdout,
    Stderr,
    File(File),
}

impl Output {
    fn open(destination: &LogDestination) -> io::Result<Output> {
        use std::os::unix::fs::OpenOptionsExt;
        Ok(match destination {
            LogDestination::Stdout => Output::Stdout,
            LogDestination::Stderr => Output::Stderr,
            LogDestination::File(path) => Output::File(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .open(path)?,
            ),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Output::Stderr => io::stderr().lock().write_all(bytes),
            Output::File(f) => f.write_all(bytes),
        }
    }
}

/// The writer thread: writes each batch whole, gives its buffer back, and reopens the file
/// when asked. Ends when every sender is gone.
fn write_batches(
    ends: WriterEnds,
    shared: &Shared,
    destination: &LogDestination,
    mut output: Output,
) {
    let mut reported: Option<Instant> = None;
    let mut report = |what: std::fmt::Arguments<'_>| {
        if reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            reported = Some(Instant::now());
            log::warn!("access log {destination}: {what}");
        }
    };
    for batch in ends.batches.iter() {
        if shared.reopen.swap(false, Ordering::AcqRel) {
            if let LogDestination::File(_) = destination {
                match Output::open(destination) {
                    Ok(reopened) => output = reopened,
                    Err(e) => report(format_args!(
                        "cannot reopen, writing on to the file already open: {e}"
                    )),
                }
            }
        }
        let Batch {
            mut buf,
            lines,
            worker,
        } = batch;
        if lines > 0 {
            match output.write_all(&buf) {
                Ok(()) => shared
                    .lines_written
                    .fetch_add(lines as u64, Ordering::Relaxed),
                Err(e) => {
                    report(format_args!("lines dropped: {e}"));
                    shared
                        .lines_dropped
                        .fetch_add(lines as u64, Ordering::Relaxed)
                }
            };
            shared.waiting[worker].fetch_sub(lines, Ordering::Relaxed);
        }
        shared.done.fetch_add(1, Ordering::AcqRel);
        if buf.capacity() > 0 && buf.capacity() <= MAX_KEPT_CAPACITY {
            buf.clear();
            let _ = ends.recycle.try_send(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(sample: f64, buffer_lines: usize) -> AccessLogSettings {
        AccessLogSettings {
            destination: LogDestination::Stdout,
            sample,
            buffer_lines,
            errors_always: true,
        }
    }

    fn record(status: u16) -> AccessRecord<'static> {
        AccessRecord {
            request_id: b"0123456789abcdef0123456789abcdef",
            client: b"192.0.2.7",
            method: b"GET",
            host: b"api.example.com",
            path: b"/orders/7?x=1",
            status,
            bytes_in: 12,
            bytes_out: 345,
            duration: Duration::from_micros(1_234_567),
            upstream: Some(Duration::from_micros(999)),
            api: "orders",
            operation: "get-order",
            backend: "orders",
            target: Some("10.0.0.5:8080"),
            subscription: Some("sub-1"),
            cache: Some(CacheStatus::Miss),
            trace_id: Some(b"4bf92f3577b34da6a3ce929d0e0e4736"),
            user_agent: Some(b"curl/8.5.0"),
        }
    }

    /// Every line the writer would have received so far.
    fn lines(ends: &WriterEnds) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for batch in ends.batches.try_iter() {
            for line in batch.buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                out.push(
                    serde_json::from_slice(line)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line))),
                );
            }
        }
        out
    }

    fn escaped(v: &[u8]) -> String {
        let mut out = Vec::new();
        put_str(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_has_every_field() {
        let (log, ends) = AccessLog::new(&settings(1.0, 100), 1, 8);
        let logger = Arc::new(log).worker(0);
        logger.record(&record(200));
        let bare = AccessRecord {
            host: b"",
            upstream: None,
            api: "",
            operation: "",
            backend: "",
            target: None,
            subscription: None,
            cache: None,
            trace_id: None,
            user_agent: None,
            duration: Duration::from_micros(5),
            ..record(404)
        };
        logger.record(&bare);
        logger.flush();
        let lines = lines(&ends);
        assert_eq!(lines.len(), 2);
        let l = &lines[0];
        let time = l["time"].as_str().unwrap();
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        assert_eq!(l["request_id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(l["client"], "192.0.2.7");
        assert_eq!(l["method"], "GET");
        assert_eq!(l["host"], "api.example.com");
        assert_eq!(l["path"], "/orders/7?x=1");
        assert_eq!(l["status"], 200);
        assert_eq!(l["bytes_in"], 12);
        assert_eq!(l["bytes_out"], 345);
        assert_eq!(l["duration_ms"].as_f64(), Some(1234.567));
        assert_eq!(l["upstream_ms"].as_f64(), Some(0.999));
        assert_eq!(l["api"], "orders");
        assert_eq!(l["operation"], "get-order");
        assert_eq!(l["backend"], "orders");
        assert_eq!(l["target"], "10.0.0.5:8080");
        assert_eq!(l["subscription"], "sub-1");
        assert_eq!(l["cache"], "MISS");
        assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(l["user_agent"], "curl/8.5.0");
        assert_eq!(l.as_object().unwrap().len(), 19);
        let b = &lines[1];
        assert_eq!(b["status"], 404);
        assert_eq!(b["duration_ms"].as_f64(), Some(0.005));
        for field in [
            "host",
            "upstream_ms",
            "api",
            "operation",
            "backend",
            "target",
            "subscription",
            "cache",
            "trace_id",
            "user_agent",
        ] {
            assert!(b[field].is_null(), "{field}: {}", b[field]);
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(escaped(b"plain /a?b=c"), r#""plain /a?b=c""#);
        assert_eq!(escaped(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            escaped(b"\n\r\t\x00\x1f\x7f"),
            r#""\n\r\t\u0000\u001f\u007f""#
        );
        assert_eq!(escaped("café ✓".as_bytes()), "\"café ✓\"");
        // Invalid UTF-8 (a lone continuation byte, a truncated sequence) becomes U+FFFD.
        assert_eq!(escaped(b"a\x80b\xe2\x9c"), "\"a\u{fffd}b\u{fffd}\"");
        for input in [&b"\xff\"\\\x01 x"[..], b"\xc3\x28", b"ok"] {
            let text = escaped(input);
            let back: String = serde_json::from_str(&text).unwrap();
            assert_eq!(back, String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(&civil_time(0), b"1970-01-01T00:00:00");
        assert_eq!(&civil_time(951_782_400), b"2000-02-29T00:00:00");
        assert_eq!(&civil_time(1_709_251_199), b"2024-02-29T23:59:59");
        assert_eq!(&civil_time(4_102_444_800), b"2100-01-01T00:00:00");
        let (log, _ends) = AccessLog::new(&settings(1.0, 10), 1, 4);
        let logger = Arc::new(log).worker(0);
        let mut out = Vec::new();
        logger.put_time(&mut out, Duration::from_millis(1_709_251_199_007));
        assert_eq!(out, b"2024-02-29T23:59:59.007Z");
        out.clear();
        logger.put_time(&mut out, Duration::from_millis(1_709_251_200_120));
        assert_eq!(out, b"2024-03-01T00:00:00.120Z");
    }

    #[test]
    fn sampling_keeps_a_fraction_and_every_error() {
        let count = |sample: f64, errors_always: bool, status: u16| {
            let s = AccessLogSettings {
                errors_always,
                ..settings(sample, 1 << 20)
            };
            let (log, ends) = AccessLog::new(&s, 1, 1 << 12);
            let logger = Arc::new(log).worker(0);
            for _ in 0..10_000 {
                logger.record(&record(status));
            }
            logger.flush();
            lines(&ends).len()
        };
        assert_eq!(count(0.0, true, 200), 0);
        assert_eq!(count(0.0, true, 503), 10_000);
        assert_eq!(count(0.0, true, 404), 10_000);
        assert_eq!(count(0.0, false, 503), 0);
        assert_eq!(count(1.0, false, 200), 10_000);
        let half = count(0.5, true, 200);
        assert!((4_500..=5_500).contains(&half), "{half}");
        let tenth = count(0.1, false, 500);
        assert!((800..=1_200).contains(&tenth), "{tenth}");
    }

    #[test]
    fn a_stalled_writer_costs_lines_not_time() {
        // A channel of one batch, and no writer draining it.
        let (log, ends) = AccessLog::new(&settings(1.0, 1000), 1, 1);
        let log = Arc::new(log);
        let logger = log.worker(0);
        for _ in 0..3 {
            logger.record(&record(200));
        }
        logger.flush();
        for _ in 0..5 {
            logger.record(&record(200));
            logger.flush();
        }
        assert_eq!(log.counters(), (0, 5));
        // The dropped batches' buffer is reused, and the first batch is still queued whole.
        assert_eq!(lines(&ends).len(), 3);
        assert!(!log.drain(Duration::from_millis(10)));
    }

    #[test]
    fn a_worker_never_has_more_than_buffer_lines_waiting() {
        let (log, ends) = AccessLog::new(&settings(1.0, 4), 2, 64);
        let log = Arc::new(log);
        let (a, b) = (log.worker(0), log.worker(1));
        // Reaching the budget hands the batch over by itself.
        for _ in 0..4 {
            a.record(&record(200));
        }
        a.record(&record(200));
        a.flush();
        b.record(&record(200));
        b.flush();
        assert_eq!(log.counters(), (0, 1));
        assert_eq!(lines(&ends).len(), 5);
    }

    #[test]
    fn the_writer_appends_and_reopens_after_a_rename() {
        let dir = std::env::temp_dir().join(format!(
            "ringway-access-log-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let _ = std::fs::remove_file(&path);
        let s = AccessLogSettings {
            destination: LogDestination::File(path.clone()),
            ..settings(1.0, 100)
        };
        let log = AccessLog::start(&s, 1).unwrap();
        let logger = log.worker(0);
        logger.record(&record(200));
        logger.record(&record(201));
        logger.flush();
        assert!(log.drain(Duration::from_secs(5)));
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        // The writer reopens when woken, before any new line.
        let until = Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(Instant::now() < until, "the log was not reopened");
            std::thread::sleep(Duration::from_millis(5));
        }
        logger.record(&record(202));
        drop(logger);
        assert!(log.drain(Duration::from_secs(5)));
        assert_eq!(log.counters(), (3, 0));
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 2, "{old}");
        assert!(old.contains("\"status\":201"));
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("\"status\":202"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077 & !0o040, 0, "{mode:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn start_names_a_path_it_cannot_open() {
        let s = AccessLogSettings {
            destination: LogDestination::File("/nonexistent-ringway-dir/access.log".into()),
            ..settings(1.0, 100)
        };
        let e = AccessLog::start(&s, 1).unwrap_err().to_string();
        assert!(
            e.contains("access_log.path") && e.contains("/nonexistent-ringway-dir/access.log"),
            "{e}"
        );
    }
}
