//! Forwarding one request to a backend and its response back to the client.
//!
//! The request head (and as much of the body as has arrived) is written to the upstream in one
//! write and kept until the response's first byte: if a pooled connection turns out to have been
//! closed by the origin before answering, an idempotent request whose body was sent whole is
//! sent again, once, on a fresh connection. A target that refuses connections is marked down
//! and the next one is tried; nothing was sent, so this is safe for any method. The loop ends
//! when every target has been tried or the whole-request deadline has passed; a connect that
//! fails for want of local resources (descriptors, ports, memory) says nothing about the target
//! and does not mark it down.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use ringway_core::http1::{parse_response, BodyFraming, ChunkedDecoder, CodecError, Limits};

use super::conn::{Conn, Facts, Next};
use super::head::{
    cacheable_headers, upgrade_allowed, write_interim_head, write_request_head,
    write_response_head, ClientFraming, Forwarded, ResponseShape,
};
use super::io::{
    bounded, relay_body, send_continue, write_keep, write_out, End, Relay, RelayError, Tee,
};
use super::local::{self, Local};
use crate::policy::run::{Ctx, Exchange};
use crate::policy::Pipeline;
use crate::route::Route;
use crate::upstream::{hash_input, parse_retry_after, NoTarget, Tried, UpstreamConn};

/// The policies of a request that has them: its pipeline and its exchange.
pub(super) struct PolicyRun<'a> {
    pub pipe: &'a Pipeline,
    pub ex: &'a mut Exchange,
}

/// One pointer, so that a request without policies pays 8 bytes of task for them.
pub(super) type Policies<'a, 'b> = Option<&'a mut PolicyRun<'b>>;

/// A response being kept for the cache as it streams to the client.
struct CacheTee {
    body: Tee,
    headers: Vec<u8>,
    ttl: std::time::Duration,
    status: u16,
}

/// Why an attempt on one upstream connection failed.
enum Failure {
    /// Nothing came back; a stale pooled connection looks like this.
    NoResponse,
    TimedOut,
    /// The response head was malformed.
    Protocol,
}

/// Why a connect failed.
enum ConnectError {
    TimedOut,
    /// Refused, unreachable, reset: the target's fault.
    Target,
    /// Out of descriptors, ports or memory here: nobody's fault but ours.
    Local(io::Error),
}

/// Why the last attempt on a target failed, for the answer when no target is left. (An enum
/// rather than the answer's strings: it stays in the request's task across every await.)
#[derive(Clone, Copy)]
enum LastFailure {
    NoTarget,
    ConnectTimeout,
    ConnectRefused,
    LocalShortage,
    ClosedWithoutAnswer,
}

impl LastFailure {
    fn answer(self) -> (u16, &'static str, &'static str) {
        match self {
            LastFailure::NoTarget => (502, "bad_gateway", "could not connect to any target"),
            LastFailure::ConnectTimeout => (
                504,
                "upstream_timeout",
                "connecting to the upstream timed out",
            ),
            LastFailure::ConnectRefused => {
                (502, "bad_gateway", "could not connect to the upstream")
            }
            LastFailure::LocalShortage => (
                503,
                "gateway_overloaded",
                "the gateway is out of local resources (descriptors, ports or memory) to \
                 connect to the upstream",
            ),
            LastFailure::ClosedWithoutAnswer => (
                502,
                "bad_gateway",
                "the upstream closed the connection without answering",
            ),
        }
    }
}

/// More interim responses than this before the final one is a broken (or hostile) origin.
const MAX_INTERIM: usize = 16;

impl Conn {
    pub(super) async fn forward(
        &mut self,
        head_len: usize,
        facts: &Facts,
        route: &Route,
        prefix_len: usize,
        backend: usize,
        mut ex: Policies<'_, '_>,
    ) -> (Next, u16) {
        let w = Rc::clone(&self.w);
        let g = Rc::clone(&self.gen);
        let snap = &*g.snapshot;
        self.req.backend = snap.backend_labels[backend];
        let timeouts = &snap.config.timeouts;
        let limits = &snap.config.limits;
        let until = timeouts.request.map(|d| Instant::now() + d);

        // The request's key for `consistent_hash`, read before the head is consumed.
        let hash = snap.config.backends[backend]
            .hash_on
            .as_ref()
            .and_then(|on| {
                let (ip, ip_len) = self.client_ip_raw();
                let buf = self.rbuf.data();
                hash_input(on, |name| self.head.header(buf, name), &ip[..ip_len])
            });

        // 1. The upstream request head, then whatever body bytes have arrived with it. (In a
        // block, so that its scratch arrays take no room in the task across the awaits below.)
        {
            let mut id = [0u8; 32];
            let buf = self.rbuf.data();
            let had_request_id = self.head.header(buf, b"x-request-id").is_some();
            if !had_request_id {
                self.next_request_id(&mut id);
            }
            let mut host = [0u8; 64];
            let host_len = if self.head.host(buf).is_none() {
                local_authority(self.fd, &mut host)
            } else {
                0
            };
            self.wbuf.clear();
            let (ip, ip_len) = self.client_ip_raw();
            let mut traceparent = [0u8; super::trace::LEN];
            let incoming = self.head.header(buf, b"traceparent");
            // A new trace is sampled as the span export says (always, without one).
            let sample_new =
                incoming.is_some() || self.w.spans.as_ref().is_none_or(|s| s.sample_new_trace());
            super::trace::next(incoming, self.w.ids.next(), sample_new, &mut traceparent);
            if let Some(s) = self.log.as_deref_mut() {
                s.traceparent = Some(traceparent);
                match self
                    .head
                    .header(buf, b"x-request-id")
                    .filter(|_| had_request_id)
                {
                    Some(given) => s.request_id.extend_from_slice(given),
                    None => s.request_id.extend_from_slice(&id),
                }
                s.backend.push_str(&snap.config.backends[backend].name);
                if let BodyFraming::Length(n) = facts.framing {
                    s.bytes_in = n;
                }
            }
            let forwarded = Forwarded {
                client_ip: &ip[..ip_len],
                request_id: &id,
                had_request_id,
                rewrite: route.rewrite.as_ref(),
                prefix_len,
                edits: &route.request_headers,
                chunked: facts.framing == BodyFraming::Chunked,
                upgrade: facts.upgrade,
                upgrades: &snap.config.upgrades,
                default_host: &host[..host_len],
                extra: ex.as_ref().map(|r| &r.ex.request),
                target: ex
                    .as_ref()
                    .and_then(|r| r.ex.target_set.then_some(&r.ex.target[..])),
                https: facts.tls,
                traceparent: &traceparent,
            };
            write_request_head(&mut self.wbuf, buf, &self.head, &forwarded);
        }
        self.rbuf.consume(head_len);

        let mut body = match facts.framing {
            BodyFraming::None => None,
            BodyFraming::Length(n) => Some(Relay::Length(n)),
            BodyFraming::Chunked => Some(Relay::Chunked(true)),
            BodyFraming::Close => None,
        };
        // Take what is buffered now, so a small request goes out in the first write.
        let body_limit = match (
            limits.max_body_bytes,
            ex.as_ref().and_then(|r| r.ex.max_body),
        ) {
            (global, None) => global,
            // 0 is "no limit" for the global setting.
            (0, Some(policy)) => policy,
            (global, Some(policy)) => global.min(policy),
        };
        let mut decoder = ChunkedDecoder::with_limit(body_limit);
        match &mut body {
            Some(Relay::Length(left)) => {
                let take = (*left).min(self.rbuf.len() as u64) as usize;
                self.wbuf.extend_from_slice(&self.rbuf.data()[..take]);
                self.rbuf.consume(take);
                *left -= take as u64;
                if *left == 0 {
                    body = None;
                }
            }
            Some(Relay::Chunked(_)) => {
                match decoder.decode(self.rbuf.data(), &mut self.wbuf, true) {
                    // The relay below continues from where the decoder stopped.
                    Ok(used) => self.rbuf.consume(used),
                    Err(e) => return self.refuse(*facts, &e, route, &mut ex).await,
                }
                if decoder.is_done() {
                    body = None;
                }
            }
            _ => {}
        }
        let sent_continue = body.is_some() && facts.expect_continue;
        if sent_continue {
            send_continue(&mut self.stream).await;
        }
        // A request that a `retry` may send again keeps its body, up to the policy's limit.
        if let (Some(mode), Some(retry)) = (&mut body, ex.as_ref().and_then(|r| r.pipe.retry())) {
            match Box::pin(self.buffer_body(mode, &mut decoder, retry.spec.max_buffered_body)).await
            {
                Ok(done) => {
                    if done {
                        body = None;
                    }
                }
                Err(RelayError::Codec(e)) => return self.refuse(*facts, &e, route, &mut ex).await,
                Err(RelayError::Source { timed_out }) => {
                    return (Next::Close, if timed_out { 408 } else { 400 });
                }
                Err(RelayError::Destination) => return (Next::Close, 400),
            }
        }
        let whole = body.is_none();
        if let Some(retry) = ex.as_ref().and_then(|r| r.pipe.retry()) {
            g.policies.retry_budgets[retry.index]
                .borrow_mut()
                .record_request(Instant::now());
        }
        let mut retries: u32 = 0;

        // 2. A connection, the request, and the response head.
        let mut tried = Tried::default();
        let mut fresh_only = false;
        let mut first_attempt = true;
        let mut last_status = LastFailure::NoTarget;
        // The attempt that got the response lives until the response has been relayed: it
        // counts as in flight meanwhile.
        let (mut up, resp_len, _attempt) = loop {
            if !first_attempt && until.is_some_and(|u| Instant::now() >= u) {
                return self
                    .upstream_failed(
                        route,
                        &mut ex,
                        *facts,
                        504,
                        "upstream_timeout",
                        "the request deadline passed before any target answered",
                        whole,
                    )
                    .await;
            }
            first_attempt = false;
            let now = w.wheel.now();
            let mut attempt = match g.upstreams.choose(snap, backend, &tried, now, hash) {
                Ok(attempt) => attempt,
                Err(NoTarget::Open { retry_after }) if ex.is_none() => {
                    return local::circuit_open(self, *facts, retry_after.as_secs(), whole).await;
                }
                Err(NoTarget::Open { retry_after }) => {
                    if let Some(run) = ex.as_mut() {
                        run.ex.response.add_with(b"Retry-After", |o| {
                            crate::policy::run::push_u64(o, retry_after.as_secs().max(1))
                        });
                    }
                    let (s, c, m) = (503, "circuit_open", "every target has its circuit open");
                    return self
                        .upstream_failed(route, &mut ex, *facts, s, c, m, whole)
                        .await;
                }
                Err(NoTarget::Exhausted) => {
                    let connect = !matches!(last_status, LastFailure::ClosedWithoutAnswer);
                    if let Some(wait) =
                        retry_wait(&g, ex.as_deref(), &mut retries, connect, None, until)
                    {
                        // Every target refused: after the policy's pause, all of them again.
                        Box::pin(self.pause(wait)).await;
                        tried = Tried::default();
                        continue;
                    }
                    let (s, c, m) = last_status.answer();
                    return self
                        .upstream_failed(route, &mut ex, *facts, s, c, m, whole)
                        .await;
                }
            };
            let target = attempt.target();
            let pooled = if fresh_only {
                None
            } else {
                g.upstreams.pool.take(target, now)
            };
            let mut up = match pooled {
                Some(up) => {
                    w.metrics.upstream_reused();
                    self.req.facts.upstream_reuses =
                        self.req.facts.upstream_reuses.saturating_add(1);
                    up
                }
                // Boxed: a connect is rare with pooling, and its future (with a runtime timer,
                // aligned to 128 bytes) would otherwise set the size of every connection's task.
                None => match Box::pin(connect(&w, snap, target)).await {
                    Ok(up) => {
                        let f = &mut self.req.facts;
                        f.upstream_connects = f.upstream_connects.saturating_add(1);
                        up
                    }
                    Err(e) => {
                        w.metrics.upstream_connect_failed();
                        let f = &mut self.req.facts;
                        f.upstream_connect_errors = f.upstream_connect_errors.saturating_add(1);
                        tried.add(target - snap.backend_targets[backend].start);
                        fresh_only = false;
                        last_status = match e {
                            ConnectError::TimedOut => {
                                f.upstream_timeouts = f.upstream_timeouts.saturating_add(1);
                                g.upstreams.mark_down(snap, target, w.wheel.now());
                                attempt.connection_failed(w.wheel.now());
                                LastFailure::ConnectTimeout
                            }
                            ConnectError::Target => {
                                g.upstreams.mark_down(snap, target, w.wheel.now());
                                attempt.connection_failed(w.wheel.now());
                                LastFailure::ConnectRefused
                            }
                            ConnectError::Local(e) => {
                                w.connect_log.warn(
                                    Instant::now(),
                                    format_args!(
                                        "cannot connect to {}: {e} (a local shortage; the \
                                         target is not marked down)",
                                        snap.targets[target].authority
                                    ),
                                );
                                LastFailure::LocalShortage
                            }
                        };
                        continue;
                    }
                },
            };
            let up_fd = up.fd();
            up.deadline
                .arm(up_fd, bounded(timeouts.upstream_response, until));
            let sent = write_keep(&mut up.stream, &mut self.wbuf).await.is_ok();
            let mut failed = if sent {
                None
            } else {
                Some(Failure::NoResponse)
            };
            if sent && !whole {
                // Stream the rest of the request body.
                self.wbuf.clear();
                let mode = body.expect("a body remains");
                let client = End::new(
                    &mut self.stream,
                    &self.deadline,
                    self.fd,
                    timeouts.idle,
                    until,
                );
                let upstream = End::new(
                    &mut up.stream,
                    &up.deadline,
                    up_fd,
                    timeouts.upstream_response,
                    until,
                );
                let relayed = relay_body(
                    client,
                    &mut self.rbuf,
                    upstream,
                    &mut self.wbuf,
                    mode,
                    &mut decoder,
                    None,
                )
                .await;
                match relayed {
                    Ok(_) => {}
                    Err(RelayError::Destination) => failed = Some(Failure::NoResponse),
                    Err(RelayError::Codec(e)) => {
                        return self.refuse(*facts, &e, route, &mut ex).await
                    }
                    Err(RelayError::Source { timed_out }) => {
                        // The client went away, or stalled, mid-body.
                        return (Next::Close, if timed_out { 408 } else { 400 });
                    }
                }
            }
            let result = match failed {
                Some(failure) => Err(failure),
                None => {
                    if let Some(s) = self.log.as_deref_mut() {
                        s.upstream_sent = Some(Instant::now());
                        s.target.clear();
                        s.target.push_str(&snap.targets[up.target].authority);
                    }
                    up.deadline
                        .arm(up_fd, bounded(timeouts.upstream_response, until));
                    let client = (!facts.http10).then_some(&mut self.stream);
                    read_response_head(&mut up, limits, client, sent_continue).await
                }
            };
            // A pooled connection that fails without a word was most likely closed by the
            // origin while idle: not the target's fault, and not a breaker's failure.
            let stale = up.reused && matches!(result, Err(Failure::NoResponse));
            if result.is_err() && !stale {
                attempt.connection_failed(w.wheel.now());
            }
            match result {
                Ok(len) => {
                    if let Some(s) = self.log.as_deref_mut() {
                        s.upstream = s.upstream_sent.map(|t| t.elapsed());
                    }
                    let retry_after = up.head.header(up.buf.data(), b"retry-after");
                    attempt.responded(up.head.status(), retry_after, w.wheel.now());
                    let status = up.head.status();
                    let wait = whole
                        .then(|| {
                            let retry_after = up
                                .head
                                .header(up.buf.data(), b"retry-after")
                                .and_then(parse_retry_after);
                            retry_wait(
                                &g,
                                ex.as_deref(),
                                &mut retries,
                                false,
                                Some((status, retry_after)),
                                until,
                            )
                        })
                        .flatten();
                    if let Some(wait) = wait {
                        // The answer is dropped with its connection (its body unread) and
                        // the request goes again, to whichever target the balancer picks.
                        drop(up);
                        drop(attempt);
                        Box::pin(self.pause(wait)).await;
                        fresh_only = false;
                        continue;
                    }
                    break (up, len, attempt);
                }
                Err(Failure::NoResponse) if whole && facts.idempotent => {
                    if up.reused {
                        // A pooled connection the origin had closed: once more, on a new one.
                        fresh_only = true;
                    } else {
                        // A new connection closed without a word (an origin going down): the
                        // next target, as nginx's `proxy_next_upstream error` does.
                        tried.add(up.target - snap.backend_targets[backend].start);
                        fresh_only = false;
                        last_status = LastFailure::ClosedWithoutAnswer;
                    }
                    continue;
                }
                Err(failure) => {
                    if matches!(failure, Failure::TimedOut) {
                        let f = &mut self.req.facts;
                        f.upstream_timeouts = f.upstream_timeouts.saturating_add(1);
                    }
                    let (s, c, m) = match failure {
                        Failure::TimedOut => (
                            504,
                            "upstream_timeout",
                            "the upstream did not answer in time",
                        ),
                        Failure::Protocol => {
                            (502, "bad_gateway", "the upstream sent a malformed response")
                        }
                        Failure::NoResponse => (
                            502,
                            "bad_gateway",
                            "the upstream closed the connection without answering",
                        ),
                    };
                    return self
                        .upstream_failed(route, &mut ex, *facts, s, c, m, whole)
                        .await;
                }
            }
        };
        g.upstreams.mark_up(up.target);

        // 3. The response.
        let response = &up.head;
        let status = response.status();
        if status == 101 {
            // A switch nobody asked for, or to a protocol the gateway does not tunnel: what
            // follows on that connection is not HTTP, so it is closed, never pooled.
            let agreed = facts.upgrade
                && response
                    .header(up.buf.data(), b"upgrade")
                    .is_some_and(|p| upgrade_allowed(p, &snap.config.upgrades));
            if !agreed {
                drop(up);
                let message = if facts.upgrade {
                    "the upstream switched to a protocol that was not asked for"
                } else {
                    "the upstream switched protocols, but the request asked for no upgrade"
                };
                return self
                    .upstream_failed(route, &mut ex, *facts, 502, "bad_gateway", message, whole)
                    .await;
            }
        }
        let upgrade = status == 101;
        // (In a block: only what the relay needs stays in the task across its awaits.)
        let (client_framing, relay, up_reusable, mut tee) = {
            let up_framing = response.framing(facts.is_head);
            // How the body leaves: HTTP/1.0 clients get raw bytes and a close; HTTP/1.1
            // clients get a close-delimited body chunked, so that their connection survives.
            let (client_framing, relay) = match (up_framing, facts.http10) {
                _ if upgrade => (ClientFraming::AsIs, None),
                (BodyFraming::None, _) => (ClientFraming::AsIs, None),
                (BodyFraming::Length(n), _) => (ClientFraming::AsIs, Some(Relay::Length(n))),
                (BodyFraming::Chunked, true) => (ClientFraming::Close, Some(Relay::Chunked(false))),
                (BodyFraming::Chunked, false) => {
                    (ClientFraming::Chunked, Some(Relay::Chunked(true)))
                }
                (BodyFraming::Close, true) => {
                    (ClientFraming::Close, Some(Relay::UntilClose(false)))
                }
                (BodyFraming::Close, false) => {
                    (ClientFraming::Chunked, Some(Relay::UntilClose(true)))
                }
            };
            let up_reusable = !upgrade && response.keep_alive() && up_framing != BodyFraming::Close;
            let tee = match ex.as_mut() {
                Some(PolicyRun { pipe, ex }) if !upgrade => {
                    let ctx = Ctx::after_forward(self.client_ip(), route, Instant::now());
                    outbound(
                        pipe,
                        ex,
                        &ctx,
                        &g,
                        up.buf.data(),
                        response,
                        up_framing,
                        *facts,
                    )
                }
                _ => None,
            };
            (client_framing, relay, up_reusable, tee)
        };
        let keep_alive = !upgrade
            && facts.keep_alive
            && client_framing != ClientFraming::Close
            && !w.is_draining();
        // In a block, so that none of this takes room in the task across the awaits below.
        let status = {
            let ex_view = ex.as_ref().map(|r| &*r.ex);
            self.wbuf.clear();
            let shape = ResponseShape {
                framing: client_framing,
                keep_alive,
                client_http10: facts.http10,
                upgrade,
                extra: ex_view.map(|e| &e.response),
                status: ex_view.and_then(|e| e.status.map(|s| (s, &e.reason[..]))),
            };
            write_response_head(
                &mut self.wbuf,
                up.buf.data(),
                response,
                &shape,
                &route.response_headers,
            );
            ex_view.and_then(|e| e.status).unwrap_or(status)
        };
        up.buf.consume(resp_len);
        if let Some(s) = self.log.as_deref_mut() {
            s.bytes_out = self.wbuf.len() as u64;
        }
        if upgrade {
            self.wbuf.extend_from_slice(up.buf.data());
            let n = up.buf.len();
            up.buf.consume(n);
            up.deadline.disarm();
            return match write_out(&mut self.stream, &mut self.wbuf).await {
                Ok(()) => (Next::Upgrade(up), status),
                Err(_) => (Next::Close, status),
            };
        }
        let up_fd = up.fd();
        let outcome = match relay {
            None => write_out(&mut self.stream, &mut self.wbuf)
                .await
                .map(|_| 0)
                .map_err(|_| RelayError::Destination),
            Some(mode) => {
                let upstream = End::new(
                    &mut up.stream,
                    &up.deadline,
                    up_fd,
                    timeouts.upstream_response,
                    until,
                );
                let client = End::new(
                    &mut self.stream,
                    &self.deadline,
                    self.fd,
                    timeouts.idle,
                    until,
                );
                relay_body(
                    upstream,
                    &mut up.buf,
                    client,
                    &mut self.wbuf,
                    mode,
                    // The request's decoder is done with: reset, it decodes the response.
                    {
                        decoder = ChunkedDecoder::new();
                        &mut decoder
                    },
                    tee.as_deref_mut().map(|t| &mut t.body),
                )
                .await
            }
        };
        up.deadline.disarm();
        match outcome {
            Ok(moved) => {
                if let Some(s) = self.log.as_deref_mut() {
                    s.bytes_out += moved;
                }
                if up_reusable {
                    g.upstreams.pool.put(up, w.wheel.now());
                }
                if let Some(PolicyRun { ex, .. }) = ex {
                    ex.bytes += moved;
                    if let Some(t) = tee.filter(|t| !t.body.overflow) {
                        let CacheTee {
                            body,
                            headers,
                            ttl,
                            status,
                        } = *t;
                        ex.store(
                            &g.policies,
                            status,
                            headers.into(),
                            body.body.into(),
                            ttl,
                            Instant::now(),
                        );
                    }
                }
                (
                    if keep_alive {
                        Next::KeepAlive
                    } else {
                        Next::Close
                    },
                    status,
                )
            }
            // The response had begun: all that can be done is to cut the connection.
            Err(_) => (Next::Close, status),
        }
    }
}

impl Conn {
    /// Reads the rest of a request body into the write buffer (after the head), as long as it
    /// stays within `limit` bytes; true when the whole body is in. A larger body is left
    /// where it stands, to be streamed: that request is not retried.
    async fn buffer_body(
        &mut self,
        mode: &mut Relay,
        decoder: &mut ChunkedDecoder,
        limit: u64,
    ) -> Result<bool, RelayError> {
        let idle = self.gen.snapshot.config.timeouts.idle;
        let start = self.wbuf.len() as u64;
        loop {
            let room = (start + limit).saturating_sub(self.wbuf.len() as u64);
            match mode {
                Relay::Length(left) => {
                    if *left > room {
                        return Ok(false);
                    }
                    let take = (*left).min(self.rbuf.len() as u64) as usize;
                    self.wbuf.extend_from_slice(&self.rbuf.data()[..take]);
                    self.rbuf.consume(take);
                    *left -= take as u64;
                    if *left == 0 {
                        return Ok(true);
                    }
                }
                Relay::Chunked(_) => {
                    let used = decoder
                        .decode(self.rbuf.data(), &mut self.wbuf, true)
                        .map_err(RelayError::Codec)?;
                    self.rbuf.consume(used);
                    if decoder.is_done() {
                        return Ok(true);
                    }
                    if self.wbuf.len() as u64 > start + limit {
                        return Ok(false);
                    }
                }
                Relay::UntilClose(_) => return Ok(false),
            }
            self.deadline.arm(self.fd, idle);
            match self.rbuf.fill(&mut self.stream, 64 * 1024).await {
                Ok(n) if n > 0 => {}
                _ => {
                    return Err(RelayError::Source {
                        timed_out: self.deadline.fired(),
                    })
                }
            }
        }
    }

    /// Waits before a retry, keeping the client's connection from timing out meanwhile.
    async fn pause(&mut self, wait: std::time::Duration) {
        let idle = self.gen.snapshot.config.timeouts.idle;
        self.deadline.arm(self.fd, idle + wait);
        if !wait.is_zero() {
            monoio::time::sleep(wait).await;
        }
    }

    /// Answers a request whose body broke the framing rules or the size limit; the connection
    /// closes after it.
    async fn refuse(
        &mut self,
        facts: Facts,
        e: &CodecError,
        route: &Route,
        ex: &mut Policies<'_, '_>,
    ) -> (Next, u16) {
        self.upstream_failed(
            route,
            ex,
            facts,
            e.status(),
            e.code(),
            &e.to_string(),
            false,
        )
        .await
    }

    /// Answers a failed exchange: after `on_error`, when the request has policies. Boxed:
    /// failures are rare, and this path's state would otherwise add to every connection's
    /// task.
    #[allow(clippy::too_many_arguments)]
    fn upstream_failed<'a, 'r: 'a, 'p: 'r>(
        &'a mut self,
        route: &'a Route,
        ex: &'a mut Policies<'r, 'p>,
        facts: Facts,
        status: u16,
        code: &'a str,
        message: &'a str,
        keep_alive: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (Next, u16)> + 'a>> {
        Box::pin(self.answer_failure(route, ex, facts, status, code, message, keep_alive))
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer_failure(
        &mut self,
        route: &Route,
        ex: &mut Policies<'_, '_>,
        facts: Facts,
        status: u16,
        code: &str,
        message: &str,
        keep_alive: bool,
    ) -> (Next, u16) {
        let Some(PolicyRun { pipe, ex }) = ex else {
            return local::upstream_error(self, facts, status, code, message, keep_alive).await;
        };
        let replaced = {
            let ctx = Ctx::after_forward(self.client_ip(), route, Instant::now());
            ex.on_error(pipe, &ctx)
        };
        let answer = match replaced {
            Some(r) => Local::Policy(r),
            None => Local::Error {
                status,
                code,
                message,
            },
        };
        local::send(self, facts, &answer, keep_alive, Some(&**ex)).await
    }
}

/// The connection's local address as `ip:port`, the authority a client without Host reached.
/// Returns the length written to `out` (0 if it cannot be had).
fn local_authority(fd: std::os::fd::RawFd, out: &mut [u8; 64]) -> usize {
    use std::io::Write as _;
    // SAFETY: getsockname(2) writes at most `len` bytes into storage that outlives the call.
    let addr = unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) != 0
        {
            return 0;
        }
        socket2::SockAddr::new(storage, len)
    };
    let Some(addr) = addr.as_socket() else {
        return 0;
    };
    let mut cursor = io::Cursor::new(&mut out[..]);
    match write!(cursor, "{addr}") {
        Ok(()) => cursor.position() as usize,
        Err(_) => 0,
    }
}

/// Connects to a target under the connect timeout.
async fn connect(
    w: &super::Worker,
    snap: &crate::snapshot::Snapshot,
    target: usize,
) -> Result<Box<UpstreamConn>, ConnectError> {
    let info = &snap.targets[target];
    // A runtime timer per connect is acceptable: with pooling, connects are rare. The TLS
    // handshake, if any, is inside the connect timeout.
    let connecting = monoio::time::timeout(
        snap.config.timeouts.upstream_connect,
        crate::upstream::open(info),
    );
    match connecting.await {
        Ok(Ok(stream)) => {
            w.metrics.upstream_connected();
            Ok(UpstreamConn::new(stream, target, w.wheel.deadline()))
        }
        Ok(Err(e)) if is_local_shortage(&e) => Err(ConnectError::Local(e)),
        Ok(Err(e)) => {
            if info.tls.is_some() && e.kind() != io::ErrorKind::ConnectionRefused {
                w.connect_log.warn(
                    Instant::now(),
                    format_args!("TLS to {} failed: {e}", info.authority),
                );
            }
            Err(ConnectError::Target)
        }
        Err(_) => Err(ConnectError::TimedOut),
    }
}

/// Errors of connect(2) that come from this host running short, not from the target.
fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EADDRNOTAVAIL
                | libc::EAGAIN
        )
    )
}

/// Reads until a final (or 101) response head is in `up.buf`. Interim 1xx responses (`100
/// Continue`, `103 Early Hints`) go on to `client` (an HTTP/1.1 client; 1.0 has none) as they
/// come, except a 100 when the gateway has sent its own. Returns the head's length.
async fn read_response_head(
    up: &mut UpstreamConn,
    limits: &Limits,
    mut client: Option<&mut crate::tls::ClientIo>,
    sent_continue: bool,
) -> Result<usize, Failure> {
    let mut got_any = false;
    let mut interim = 0;
    loop {
        if !up.buf.is_empty() {
            got_any = true;
            match parse_response(up.buf.data(), limits, &mut up.head) {
                Ok(Some(n)) => {
                    let status = up.head.status();
                    if (100..200).contains(&status) && status != 101 {
                        interim += 1;
                        if interim > MAX_INTERIM {
                            return Err(Failure::Protocol);
                        }
                        if let Some(client) = client.as_deref_mut() {
                            if !(status == 100 && sent_continue) {
                                let mut out = Vec::new();
                                write_interim_head(&mut out, up.buf.data(), &up.head);
                                // A client that went away is noticed when the answer is sent.
                                let _ = write_out(client, &mut out).await;
                            }
                        }
                        up.buf.consume(n);
                        continue;
                    }
                    return Ok(n);
                }
                Ok(None) => {}
                Err(_) => return Err(Failure::Protocol),
            }
        }
        match up
            .buf
            .fill(&mut up.stream, limits.max_head_bytes + 1024)
            .await
        {
            Ok(n) if n > 0 => {}
            _ if up.deadline.fired() => return Err(Failure::TimedOut),
            _ if got_any => return Err(Failure::Protocol),
            _ => return Err(Failure::NoResponse),
        }
    }
}

/// Runs the outbound section on a response head and decides whether the response goes into
/// the cache: if so, the copy to fill as the body streams.
#[allow(clippy::too_many_arguments)]
fn outbound(
    pipe: &crate::policy::Pipeline,
    ex: &mut Exchange,
    ctx: &Ctx<'_, crate::policy::run::NoHeaders>,
    g: &super::Generation,
    data: &[u8],
    response: &ringway_core::http1::ResponseHead,
    framing: BodyFraming,
    facts: Facts,
) -> Option<Box<CacheTee>> {
    let status = response.status();
    let has = |name: &[u8]| response.header(data, name).is_some();
    ex.outbound(pipe, status, &has, &g.policies, ctx);
    if ex.cache.store_for.is_none() || facts.is_head {
        return None;
    }
    let mut cc = response
        .headers()
        .iter()
        .filter(|h| h.name.of(data).eq_ignore_ascii_case(b"cache-control"))
        .map(|h| h.value.of(data));
    let ttl = ex.store_ttl(
        pipe,
        &mut cc,
        response.header(data, b"pragma"),
        response.header(data, b"vary"),
    )?;
    let cap = g.snapshot.config.cache.max_entry_bytes;
    let expected = match framing {
        BodyFraming::Length(n) => Some(n as usize),
        BodyFraming::None => Some(0),
        _ => None,
    };
    if expected.is_some_and(|n| n > cap) {
        return None;
    }
    let mut headers = Vec::new();
    cacheable_headers(&mut headers, data, response);
    Some(Box::new(CacheTee {
        body: Tee::new(cap, expected.unwrap_or(16 * 1024)),
        headers,
        ttl,
        status: ex.status.unwrap_or(status),
    }))
}

/// Whether the request goes again under its `retry` policy, and after how long: the policy
/// retries this failure (a connect failure on every target, or the response `status`), tries
/// are left, the core's retry budget allows one, and the wait ends before the request's
/// deadline. Counts the retry.
fn retry_wait(
    g: &super::Generation,
    run: Option<&PolicyRun<'_>>,
    retries: &mut u32,
    connect_failure: bool,
    response: Option<(u16, Option<std::time::Duration>)>,
    until: Option<Instant>,
) -> Option<std::time::Duration> {
    let retry = run?.pipe.retry()?;
    let spec = &retry.spec;
    if *retries >= spec.count {
        return None;
    }
    let wanted = match response {
        Some((status, _)) => spec.retries_status(status),
        None => connect_failure && spec.on_connect_failure,
    };
    if !wanted {
        return None;
    }
    let noise = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = ahash::RandomState::new().build_hasher();
        h.write_u32(*retries);
        h.finish()
    };
    let mut wait = crate::upstream::delay(spec, *retries, noise);
    if let Some((_, Some(after))) = response.filter(|_| spec.honor_retry_after) {
        wait = after;
    }
    if until.is_some_and(|u| Instant::now() + wait >= u) {
        return None;
    }
    let now = Instant::now();
    if !g.policies.retry_budgets[retry.index]
        .borrow_mut()
        .try_retry(now)
    {
        return None;
    }
    *retries += 1;
    Some(wait)
}
