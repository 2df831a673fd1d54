//! One load connection: a task on its worker's runtime that connects, sends the precomputed
//! request bytes (a batch of `pipeline` copies in one write), reads the responses, records them
//! and sends again; it reconnects when the server closes, an error occurs or a request times
//! out.
//!
//! The hot path is [`exchange`]: per batch one `Instant::now()`, one deadline arm (two `Cell`
//! writes on the worker's timer wheel), one write of `&'static` bytes, reads into a reused
//! buffer, and per response one histogram record. Nothing on it allocates or touches another
//! core's memory.

mod response;
mod transport;

pub use response::{RecvBuf, ResponseReader};
pub use transport::{tls_targets, TlsTarget};

use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use ringway_core::timer::Deadline;

use crate::stats::ErrorKind;
use crate::target::Target;
use crate::worker::WorkerState;
use transport::Conn;

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
    let deadline = w.wheel.deadline();
    let mut recv = RecvBuf::with_capacity(16 * 1024);
    let mut reader = ResponseReader::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        let conn = transport::connect(target, tls.as_ref(), w.timeout).await;
        let ended = match conn {
            Ok((conn, fd)) => {
                backoff = BACKOFF_MIN;
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
        io.deadline.arm(io.fd, w.timeout);
        let (written, _) = stream.write_all(io.target.requests(grant.count)).await;
        if written.is_err() {
            return fail(io, ErrorKind::Reset, start, grant.count - 1);
        }
        for answered in 0..grant.count {
            let response = loop {
                match io.reader.advance(io.recv, io.target.is_head) {
                    Ok(Some(r)) => break r,
                    Ok(None) => {}
                    Err(_) => return fail(io, ErrorKind::Parse, start, grant.count - answered - 1),
                }
                match io.recv.fill(stream).await {
                    Ok(0) | Err(_) => match io.reader.at_eof() {
                        Some(r) => break r,
                        None => {
                            let unanswered = grant.count - answered - 1;
                            return fail(io, ErrorKind::Reset, start, unanswered);
                        }
                    },
                    Ok(n) => w.count_bytes(n),
                }
            };
            w.record(start, response.status);
            if response.close {
                io.deadline.disarm();
                w.plan.give_back(grant.count - answered - 1);
                return Ended::Reconnect;
            }
        }
        io.deadline.disarm();
    }
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
