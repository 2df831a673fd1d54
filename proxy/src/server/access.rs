//! The access log and span export on the worker: what a request's line and span need,
//! gathered as it is served into a per-connection scratch (allocated on the connection's
//! first request, reused after), and handed to the worker's logger and recorder once the
//! answer is out. Without an access log or span export nothing here runs.

use std::time::{Duration, Instant, SystemTime};

use super::conn::Conn;
use crate::control::access_log::{AccessRecord, CacheStatus};
use crate::control::otlp::{unix_nanos, SpanIds, SpanRecord};

/// A request's facts for its access-log line and span.
#[derive(Default)]
pub(super) struct LogScratch {
    pub method: Vec<u8>,
    pub host: Vec<u8>,
    pub path: Vec<u8>,
    pub user_agent: Seen,
    pub traceparent_in: Seen,
    /// Whether this request logs (its route's `access_log`; unmatched requests do).
    pub logged: bool,
    pub api: String,
    pub operation: String,
    /// The span's name: the operation's template or the route's name.
    pub route: String,
    pub backend: String,
    /// The upstream target's authority; empty when nothing was forwarded.
    pub target: String,
    pub request_id: Vec<u8>,
    /// The `traceparent` sent upstream, when the request was forwarded.
    pub traceparent: Option<[u8; super::trace::LEN]>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub upstream_sent: Option<Instant>,
    pub upstream: Option<Duration>,
}

fn set(v: &mut Vec<u8>, from: &[u8]) {
    v.clear();
    v.extend_from_slice(from);
}

/// A header's value, when the request had it (the buffer is kept for the next request).
#[derive(Default)]
pub(super) struct Seen {
    value: Vec<u8>,
    present: bool,
}

impl Seen {
    fn set(&mut self, from: Option<&[u8]>) {
        self.present = from.is_some();
        set(&mut self.value, from.unwrap_or_default());
    }

    pub fn get(&self) -> Option<&[u8]> {
        self.present.then_some(&self.value[..])
    }
}

impl LogScratch {
    /// Notes the route the request took.
    pub fn note_route(&mut self, route: &crate::route::Route) {
        self.logged = route.access_log;
        self.api.push_str(&route.api);
        self.operation.push_str(&route.operation);
        self.route.push_str(&route.name);
    }
}

impl Conn {
    /// Whether this worker logs or exports spans.
    #[inline]
    pub(super) fn observes(&self) -> bool {
        self.w.access.is_some() || self.w.spans.is_some()
    }

    /// Starts the scratch of the request whose head is in the read buffer.
    pub(super) fn begin_log(&mut self) {
        if !self.observes() {
            return;
        }
        let buf = self.rbuf.data();
        let head = &self.head;
        let s = self.log.get_or_insert_with(Box::default);
        set(&mut s.method, head.method(buf));
        set(&mut s.host, head.host(buf).unwrap_or_default());
        set(&mut s.path, head.target(buf));
        s.user_agent.set(head.header(buf, b"user-agent"));
        s.traceparent_in.set(head.header(buf, b"traceparent"));
        s.logged = true;
        s.api.clear();
        s.operation.clear();
        s.route.clear();
        s.backend.clear();
        s.target.clear();
        s.request_id.clear();
        s.traceparent = None;
        s.bytes_in = 0;
        s.bytes_out = 0;
        s.upstream_sent = None;
        s.upstream = None;
    }

    /// Writes the request's access-log line and span, when they are wanted.
    pub(super) fn log_request(&mut self, status: u16, elapsed: Duration) {
        let Some(s) = self.log.as_deref() else {
            return;
        };
        let (subscription, cache) = match (&self.exchange, self.req.policies) {
            (Some(ex), true) => (
                (!ex.subscription.is_empty())
                    .then(|| std::str::from_utf8(&ex.subscription).ok())
                    .flatten(),
                match ex.cache.outcome {
                    1 => Some(CacheStatus::Hit),
                    2 => Some(CacheStatus::Miss),
                    _ => None,
                },
            ),
            _ => (None, None),
        };
        if let (Some(logger), true) = (&self.w.access, s.logged) {
            let trace_id = s.traceparent.as_ref().map(|t| &t[3..35]);
            logger.record(&AccessRecord {
                request_id: &s.request_id,
                client: self.client_ip(),
                method: &s.method,
                host: &s.host,
                path: &s.path,
                status,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                duration: elapsed,
                upstream: s.upstream,
                api: &s.api,
                operation: &s.operation,
                backend: &s.backend,
                target: (!s.target.is_empty()).then_some(&s.target[..]),
                subscription,
                cache,
                trace_id,
                user_agent: s.user_agent.get(),
            });
        }
        if let (Some(recorder), Some(sent)) = (&self.w.spans, &s.traceparent) {
            if let Some(ids) = SpanIds::from_traceparent(sent, s.traceparent_in.get()) {
                if ids.sampled {
                    let end = unix_nanos(SystemTime::now());
                    let path = s.path.split(|&b| b == b'?').next().unwrap_or_default();
                    recorder.record(&SpanRecord {
                        ids,
                        route: &s.route,
                        start_unix_nanos: end.saturating_sub(elapsed.as_nanos() as u64),
                        end_unix_nanos: end,
                        status,
                        method: &s.method,
                        path,
                        host: &s.host,
                        client: self.client_ip(),
                        api: &s.api,
                        operation: &s.operation,
                        backend: &s.backend,
                        target: (!s.target.is_empty()).then_some(&s.target[..]),
                    });
                }
            }
        }
    }
}
