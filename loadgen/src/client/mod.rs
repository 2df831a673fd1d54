//! One load connection: a task on its worker's runtime that connects, sends the precomputed
//! request bytes (a batch of `pipeline` copies in one write), reads the responses, records them
//! and sends again; it reconnects when the server closes, an error occurs or a request times
//! out. With `--new-connection` each request has a connection of its own: the request is taken
//! first, then the connection opened (its latency includes the connect and the TLS handshake)
//! and closed after the response.
//!
//! The hot path is [`exchange`]: per batch one `Instant::now()`, one deadline arm (two `Cell`
//! writes on the worker's timer wheel), one write of `&'static` bytes, reads into a reused
//! buffer, and per response one histogram record. Nothing on it allocates or touches another
//! core's memory.

mod response;
mod transport;

pub use response::{RecvBuf, ResponseReader};
pub use transport::{for_worker, tls_targets, Handshake, TlsOptions, TlsTarget, TlsVersion};

use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use ringway_core::timer::Deadline;

use crate::stats::ErrorKind;
use crate::target::Target;
use crate::worker::WorkerState;
use transport::{Conn, Opened};

const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Why an exchange loop ended.
enum Ended {
    /// Open a new connection and go on.
    Reconnect,
    /// Nothing more to send on this worker.
    Finished,
}

/// Runs one connection to `target` until the worker's plan is over.
pub async fn connection(w: Rc<WorkerState>, target: &'static Target, tls: Option<TlsTarget>) {
    if w.new_connection {
        return one_per_request(w, target, tls).await;
    }
    let deadline = w.wheel.deadline();
    let mut recv = RecvBuf::with_capacity(16 * 1024);
    let mut reader = ResponseReader::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        let conn = transport::connect(target, tls.as_ref(), w.timeout).await;
        let ended = match conn {
            Ok(Opened {
                conn,
                fd,
                handshake,
            }) => {
                backoff = BACKOFF_MIN;
                w.record_open(Instant::now(), handshake);
                recv.clear();
                reader.reset();
                let mut io = Io {
                    w: &w,
                    target,
                    fd,
                    deadline: &deadline,
                    recv: &mut recv,
                    reader: &mut reader,
                };
                match conn {
                    Conn::Plain(mut s) => exchange(&mut io, &mut s).await,
                    Conn::Tls(mut s) => exchange(&mut io, &mut *s).await,
                }
            }
            Err(_) => {
                let now = Instant::now();
                match w.plan.charge_failure(now) {
                    None => return,
                    Some(true) => w.record_error(now, ErrorKind::Connect),
                    Some(false) => {}
                }
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                Ended::Reconnect
            }
        };
        if matches!(ended, Ended::Finished) {
            return;
        }
    }
}

/// `--new-connection`: for each request the plan grants, a new connection that carries it
/// alone and is closed after its response.
async fn one_per_request(w: Rc<WorkerState>, target: &'static Target, tls: Option<TlsTarget>) {
    let deadline = w.wheel.deadline();
    let mut recv = RecvBuf::with_capacity(16 * 1024);
    let mut reader = ResponseReader::new();
    let mut backoff = BACKOFF_MIN;
    if Instant::now() < w.load_from {
        monoio::time::sleep_until(monoio::time::Instant::from_std(w.load_from)).await;
    }
    while let Some(grant) = w.plan.next(1).await {
        let start = grant.intended.unwrap_or_else(Instant::now);
        let in_flight = InFlight::new(&w, 1);
        match transport::connect(target, tls.as_ref(), w.timeout).await {
            Ok(Opened {
                conn,
                fd,
                handshake,
            }) => {
                backoff = BACKOFF_MIN;
                w.record_open(start, handshake);
                recv.clear();
                reader.reset();
                let mut io = Io {
                    w: &w,
                    target,
                    fd,
                    deadline: &deadline,
                    recv: &mut recv,
                    reader: &mut reader,
                };
                // Whatever it ends with, the connection is dropped (closed) here.
                let _ = match conn {
                    Conn::Plain(mut s) => send_and_read(&mut io, &mut s, 1, start).await,
                    Conn::Tls(mut s) => send_and_read(&mut io, &mut *s, 1, start).await,
                };
            }
            Err(_) => {
                w.record_error(start, ErrorKind::Connect);
                drop(in_flight);
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// What an exchange loop works with, besides the stream.
struct Io<'a> {
    w: &'a WorkerState,
    target: &'static Target,
    fd: RawFd,
    deadline: &'a Deadline,
    recv: &'a mut RecvBuf,
    reader: &'a mut ResponseReader,
}

/// Sends and reads on one open connection until it must be reopened or the work is done.
async fn exchange<S: AsyncReadRent + AsyncWriteRent>(io: &mut Io<'_>, stream: &mut S) -> Ended {
    let w = io.w;
    if Instant::now() < w.load_from {
        monoio::time::sleep_until(monoio::time::Instant::from_std(w.load_from)).await;
    }
    loop {
        let Some(grant) = w.plan.next(w.pipeline).await else {
            return Ended::Finished;
        };
        let start = grant.intended.unwrap_or_else(Instant::now);
        let _in_flight = InFlight::new(w, grant.count);
        if let Some(ended) = send_and_read(io, stream, grant.count, start).await {
            return ended;
        }
    }
}

/// Sends `count` requests (intended at `start`) in one write and reads their responses. `Some`
/// when the connection cannot carry more: the requests it left unanswered are given back to
/// the plan.
async fn send_and_read<S: AsyncReadRent + AsyncWriteRent>(
    io: &mut Io<'_>,
    stream: &mut S,
    count: usize,
    start: Instant,
) -> Option<Ended> {
    let w = io.w;
    io.deadline.arm(io.fd, w.timeout);
    let (written, _) = stream.write_all(io.target.requests(count)).await;
    if written.is_err() {
        return Some(fail(io, ErrorKind::Reset, start, count - 1));
    }
    for answered in 0..count {
        let response = loop {
            match io.reader.advance(io.recv, io.target.is_head) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(_) => return Some(fail(io, ErrorKind::Parse, start, count - answered - 1)),
            }
            match io.recv.fill(stream, 64 * 1024).await {
                Ok(0) | Err(_) => match io.reader.at_eof() {
                    Some(r) => break r,
                    None => {
                        let unanswered = count - answered - 1;
                        return Some(fail(io, ErrorKind::Reset, start, unanswered));
                    }
                },
                Ok(n) => w.count_bytes(n),
            }
        };
        w.record(start, response.status);
        if response.close {
            io.deadline.disarm();
            w.plan.give_back(count - answered - 1);
            return Some(Ended::Reconnect);
        }
    }
    io.deadline.disarm();
    None
}

/// Counts a failed request (a timeout if the deadline fired) and returns the requests behind
/// it to the plan.
fn fail(io: &Io<'_>, kind: ErrorKind, start: Instant, unanswered: usize) -> Ended {
    let kind = if io.deadline.fired() {
        ErrorKind::Timeout
    } else {
        kind
    };
    io.deadline.disarm();
    io.w.record_error(start, kind);
    io.w.plan.give_back(unanswered);
    Ended::Reconnect
}

/// Counts a batch as in flight for as long as it lives (the end of an open-loop run waits for
/// it).
struct InFlight<'a> {
    w: &'a WorkerState,
    count: usize,
}

impl<'a> InFlight<'a> {
    fn new(w: &'a WorkerState, count: usize) -> Self {
        w.in_flight.set(w.in_flight.get() + count);
        InFlight { w, count }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.w.in_flight.set(self.w.in_flight.get() - self.count);
    }
}
