//! Forwarding one request to a backend and its response back to the client.
//!
//! The request head (and as much of the body as has arrived) is written to the upstream in one
//! write and kept until the response's first byte: if a pooled connection turns out to have been
//! closed by the origin before answering, an idempotent request whose body was sent whole is
//! sent again, once, on a fresh connection. A target that refuses connections is marked down
//! and the next one is tried; nothing was sent, so this is safe for any method.

use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;
use ringway_core::http1::{parse_response, BodyFraming, ChunkedDecoder, CodecError};

use super::conn::{Conn, Facts, Next};
use super::head::{
    write_request_head, write_response_head, ClientFraming, Forwarded, ResponseShape,
};
use super::io::{bounded, relay_body, write_keep, write_out, End, Relay, RelayError};
use super::local;
use crate::route::Route;
use crate::upstream::{Tried, UpstreamConn};

/// Why an attempt on one upstream connection failed.
enum Failure {
    /// Nothing came back; a stale pooled connection looks like this.
    NoResponse,
    TimedOut,
    /// The response head was malformed.
    Protocol,
}

impl Conn {
    pub(super) async fn forward(
        &mut self,
        head_len: usize,
        facts: Facts,
        route: &Route,
        prefix_len: usize,
        backend: usize,
    ) -> (Next, u16) {
        let w = Rc::clone(&self.w);
        let snap = &*w.snapshot;
        let timeouts = snap.config.timeouts;
        let limits = snap.config.limits;
        let until = timeouts.request.map(|d| Instant::now() + d);
        let up_timeout = || bounded(timeouts.upstream_response, until);

        // 1. The upstream request head, then whatever body bytes have arrived with it.
        let mut id = [0u8; 32];
        let buf = self.rbuf.data();
        let had_request_id = self.head.header(buf, b"x-request-id").is_some();
        if !had_request_id {
            self.next_request_id(&mut id);
        }
        self.wbuf.clear();
        let (ip, ip_len) = self.client_ip_raw();
        let forwarded = Forwarded {
            client_ip: &ip[..ip_len],
            request_id: &id,
            had_request_id,
            rewrite: route.rewrite.as_ref(),
            prefix_len,
            edits: &route.request_headers,
            chunked: facts.framing == BodyFraming::Chunked,
            upgrade: facts.upgrade,
        };
        write_request_head(&mut self.wbuf, buf, &self.head, &forwarded);
        self.rbuf.consume(head_len);

        let mut body = match facts.framing {
            BodyFraming::None => None,
            BodyFraming::Length(n) => Some(Relay::Length(n)),
            BodyFraming::Chunked => Some(Relay::Chunked(true)),
            BodyFraming::Close => None,
        };
        // Take what is buffered now, so a small request goes out in the first write.
        let mut decoder = ChunkedDecoder::with_limit(limits.max_body_bytes);
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
                    Err(e) => return self.refuse(facts, &e).await,
                }
                if decoder.is_done() {
                    body = None;
                }
            }
            _ => {}
        }
        let whole = body.is_none();
        if !whole && facts.expect_continue {
            let mut cont = Vec::new();
            cont.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            let _ = write_out(&mut self.stream, &mut cont).await;
        }

        // 2. A connection, the request, and the response head.
        let mut tried = Tried::default();
        let mut fresh_only = false;
        let mut last_status = (502u16, "bad_gateway", "could not connect to any target");
        let (mut up, resp_len) = loop {
            let now = w.wheel.now();
            let Some(target) = w.upstreams.choose(snap, backend, &tried, now) else {
                let (s, c, m) = last_status;
                return local::upstream_error(self, facts, s, c, m, whole).await;
            };
            let pooled = if fresh_only {
                None
            } else {
                w.upstreams.pool.take(target, now)
            };
            let mut up = match pooled {
                Some(up) => {
                    w.metrics.upstream_reused();
                    up
                }
                None => match connect(&w, snap, target).await {
                    Ok(up) => up,
                    Err(timed_out) => {
                        w.metrics.upstream_connect_failed();
                        w.upstreams.mark_down(snap, target, w.wheel.now());
                        tried.add(target - snap.backend_targets[backend].start);
                        last_status = if timed_out {
                            (
                                504,
                                "upstream_timeout",
                                "connecting to the upstream timed out",
                            )
                        } else {
                            (502, "bad_gateway", "could not connect to the upstream")
                        };
                        fresh_only = false;
                        continue;
                    }
                },
            };
            let up_fd = up.fd();
            self.up_deadline.arm(up_fd, up_timeout());
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
                    &self.up_deadline,
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
                )
                .await;
                match relayed {
                    Ok(_) => {}
                    Err(RelayError::Destination) => failed = Some(Failure::NoResponse),
                    Err(RelayError::Codec(e)) => {
                        self.up_deadline.disarm();
                        return self.refuse(facts, &e).await;
                    }
                    Err(RelayError::Source { timed_out }) => {
                        // The client went away, or stalled, mid-body.
                        self.up_deadline.disarm();
                        return (Next::Close, if timed_out { 408 } else { 400 });
                    }
                }
            }
            let result = match failed {
                Some(failure) => Err(failure),
                None => {
                    self.up_deadline.arm(up_fd, up_timeout());
                    read_response_head(&mut up, &limits, &self.up_deadline).await
                }
            };
            match result {
                Ok(len) => break (up, len),
                Err(Failure::NoResponse) if up.reused && whole && facts.idempotent => {
                    // A pooled connection the origin had closed: once more, on a new one.
                    fresh_only = true;
                    continue;
                }
                Err(failure) => {
                    self.up_deadline.disarm();
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
                    return local::upstream_error(self, facts, s, c, m, whole).await;
                }
            }
        };
        w.upstreams.mark_up(up.target);

        // 3. The response.
        let response = &up.head;
        let status = response.status();
        let upgrade = status == 101 && facts.upgrade;
        let up_framing = response.framing(facts.is_head);
        // How the body leaves: HTTP/1.0 clients get raw bytes and a close; HTTP/1.1 clients get
        // a close-delimited body chunked, so that their connection survives it.
        let (client_framing, relay) = match (up_framing, facts.http10) {
            _ if upgrade => (ClientFraming::AsIs, None),
            (BodyFraming::None, _) => (ClientFraming::AsIs, None),
            (BodyFraming::Length(n), _) => (ClientFraming::AsIs, Some(Relay::Length(n))),
            (BodyFraming::Chunked, true) => (ClientFraming::Close, Some(Relay::Chunked(false))),
            (BodyFraming::Chunked, false) => (ClientFraming::Chunked, Some(Relay::Chunked(true))),
            (BodyFraming::Close, true) => (ClientFraming::Close, Some(Relay::UntilClose(false))),
            (BodyFraming::Close, false) => (ClientFraming::Chunked, Some(Relay::UntilClose(true))),
        };
        let up_reusable = !upgrade && response.keep_alive() && up_framing != BodyFraming::Close;
        let keep_alive = !upgrade
            && facts.keep_alive
            && client_framing != ClientFraming::Close
            && !w.draining.get();
        self.wbuf.clear();
        let shape = ResponseShape {
            framing: client_framing,
            keep_alive,
            client_http10: facts.http10,
            upgrade,
        };
        write_response_head(
            &mut self.wbuf,
            up.buf.data(),
            response,
            &shape,
            &route.response_headers,
        );
        up.buf.consume(resp_len);
        if upgrade {
            self.wbuf.extend_from_slice(up.buf.data());
            let n = up.buf.len();
            up.buf.consume(n);
            self.up_deadline.disarm();
            return match write_out(&mut self.stream, &mut self.wbuf).await {
                Ok(()) => (Next::Upgrade(Box::new(up)), status),
                Err(_) => (Next::Close, status),
            };
        }
        let up_fd = up.fd();
        let outcome = match relay {
            None => write_out(&mut self.stream, &mut self.wbuf)
                .await
                .map_err(|_| RelayError::Destination),
            Some(mode) => {
                let upstream = End::new(
                    &mut up.stream,
                    &self.up_deadline,
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
                    &mut ChunkedDecoder::new(),
                )
                .await
                .map(|_| ())
            }
        };
        self.up_deadline.disarm();
        match outcome {
            Ok(()) => {
                if up_reusable {
                    w.upstreams.pool.put(up, w.wheel.now());
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
    /// Answers a request whose body broke the framing rules or the size limit; the connection
    /// closes after it.
    async fn refuse(&mut self, facts: Facts, e: &CodecError) -> (Next, u16) {
        let code = if e.status() == 413 {
            "body_too_large"
        } else {
            "bad_request"
        };
        local::upstream_error(self, facts, e.status(), code, &e.to_string(), false).await
    }
}

/// Connects to a target under the connect timeout. `Err(true)` is a timeout.
async fn connect(
    w: &super::Worker,
    snap: &crate::snapshot::Snapshot,
    target: usize,
) -> Result<UpstreamConn, bool> {
    let addr = snap.targets[target].addr;
    // A runtime timer per connect is acceptable: with pooling, connects are rare.
    let connecting = monoio::time::timeout(
        snap.config.timeouts.upstream_connect,
        TcpStream::connect_addr(addr),
    );
    match connecting.await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            w.metrics.upstream_connected();
            Ok(UpstreamConn::new(stream, target))
        }
        Ok(Err(_)) => Err(false),
        Err(_) => Err(true),
    }
}

/// Reads until a final response head is in `up.buf`, skipping interim 1xx responses other than
/// 101. Returns the head's length.
async fn read_response_head(
    up: &mut UpstreamConn,
    limits: &ringway_core::http1::Limits,
    deadline: &ringway_core::timer::Deadline,
) -> Result<usize, Failure> {
    let mut got_any = false;
    loop {
        if !up.buf.is_empty() {
            got_any = true;
            match parse_response(up.buf.data(), limits, &mut up.head) {
                Ok(Some(n)) => {
                    let status = up.head.status();
                    if (100..200).contains(&status) && status != 101 {
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
            _ if deadline.fired() => return Err(Failure::TimedOut),
            _ if got_any => return Err(Failure::Protocol),
            _ => return Err(Failure::NoResponse),
        }
    }
}
