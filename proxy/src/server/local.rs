//! Answers the gateway gives itself: errors (as JSON), direct responses and redirects.

use std::fmt::Write as _;

use ringway_core::http1::{BodyFraming, ChunkedDecoder, RequestHead};

use super::conn::{Conn, Facts, Next};
use super::io::{send_continue, write_head_and_body, write_out};
use crate::policy::cache::Hit;
use crate::policy::run::Exchange;
use crate::policy::Respond;
use crate::route::{DirectResponse, HeaderEdits, Redirect};

pub(super) enum Local<'a> {
    Error {
        status: u16,
        code: &'a str,
        message: &'a str,
    },
    Direct(&'a DirectResponse, &'a HeaderEdits),
    Redirect {
        status: u16,
        location: &'a str,
    },
    /// An error in Azure API Management's shape, `{"statusCode": N, "message": "..."}`, for
    /// the policies' refusals (429, 403).
    Apim {
        status: u16,
        message: &'a str,
        retry_after: Option<u64>,
    },
    /// A policy's answer: `return-response` or `mock-response` (its headers are in the
    /// exchange's response edits).
    Policy(&'a Respond),
    /// A response from the cache.
    Cached(&'a Hit),
}

impl Local<'_> {
    fn status(&self) -> u16 {
        match self {
            Local::Error { status, .. }
            | Local::Redirect { status, .. }
            | Local::Apim { status, .. } => *status,
            Local::Direct(d, _) => d.status,
            Local::Policy(r) => r.status,
            Local::Cached(h) => h.status,
        }
    }
}

/// Bodies up to this size are read and dropped when the gateway answers a request itself, so
/// that the connection stays open; a larger body closes the connection instead.
const MAX_DISCARD: u64 = 64 * 1024;

/// Answers a routed request without an upstream. A request body is read and dropped first (up
/// to [`MAX_DISCARD`]; past it, or on bad framing, the connection closes after the answer), so
/// that no unread body is taken for the next request.
pub(super) async fn answer(
    c: &mut Conn,
    head_len: usize,
    facts: Facts,
    answer: Local<'_>,
    ex: Option<&Exchange>,
) -> (Next, u16) {
    c.rbuf.consume(head_len);
    // A client that sent `Expect: 100-continue` waits for it before the body (curl for a
    // second): a body small enough to read and drop is asked for at once; a larger one is
    // never sent, since the answer comes first and the connection closes.
    let body_to_read = match facts.framing {
        BodyFraming::Length(n) => n <= MAX_DISCARD && (c.rbuf.len() as u64) < n,
        BodyFraming::Chunked => true,
        BodyFraming::None | BodyFraming::Close => false,
    };
    if facts.expect_continue && body_to_read {
        send_continue(&mut c.stream).await;
    }
    let keep_alive = discard_body(c, facts.framing).await;
    send(c, facts, &answer, keep_alive, ex).await
}

/// Reads and drops a request body; false when it could not be (too large, malformed, the
/// client went away), and the connection must close.
async fn discard_body(c: &mut Conn, framing: BodyFraming) -> bool {
    let idle = c.gen.snapshot.config.timeouts.idle;
    match framing {
        BodyFraming::None => true,
        BodyFraming::Length(n) if n <= MAX_DISCARD => {
            let mut left = n;
            loop {
                let take = left.min(c.rbuf.len() as u64);
                c.rbuf.consume(take as usize);
                left -= take;
                if left == 0 {
                    return true;
                }
                c.deadline.arm(c.fd, idle);
                if !matches!(c.rbuf.fill(&mut c.stream, 64 * 1024).await, Ok(n) if n > 0) {
                    return false;
                }
            }
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::with_limit(MAX_DISCARD);
            let mut scratch = Vec::new();
            loop {
                match decoder.decode(c.rbuf.data(), &mut scratch, false) {
                    Ok(used) => c.rbuf.consume(used),
                    Err(_) => return false,
                }
                scratch.clear();
                if decoder.is_done() {
                    return true;
                }
                c.deadline.arm(c.fd, idle);
                if !matches!(c.rbuf.fill(&mut c.stream, 64 * 1024).await, Ok(n) if n > 0) {
                    return false;
                }
            }
        }
        BodyFraming::Length(_) | BodyFraming::Close => false,
    }
}

/// Answers a request that could not be parsed; the connection closes after it.
pub(super) async fn reject(c: &mut Conn, answer: Local<'_>) {
    c.lend_wbuf();
    // The head did not parse, but its method may have: an answer to HEAD has no body.
    let is_head = {
        let raw = c.rbuf.data();
        let start = raw
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(raw.len());
        raw[start..].starts_with(b"HEAD ")
    };
    write_answer(&mut c.wbuf, &answer, false, is_head, false, None);
    let _ = write_out(&mut c.stream, &mut c.wbuf).await;
}

/// Answers an upstream failure (or a bad body) for a request whose body has been dealt with,
/// or which closes the connection (`keep_alive` false).
pub(super) async fn upstream_error(
    c: &mut Conn,
    facts: Facts,
    status: u16,
    code: &str,
    message: &str,
    keep_alive: bool,
) -> (Next, u16) {
    let answer = Local::Error {
        status,
        code,
        message,
    };
    send(c, facts, &answer, keep_alive, None).await
}

/// Answers 503 `circuit_open` with `Retry-After: retry_after_secs`, for a backend whose every
/// target left has its circuit breaker open (as [`upstream_error`] otherwise).
pub(super) async fn circuit_open(
    c: &mut Conn,
    facts: Facts,
    retry_after_secs: u64,
    keep_alive: bool,
) -> (Next, u16) {
    let answer = Local::Error {
        status: 503,
        code: "circuit_open",
        message: "every target of the backend has its circuit breaker open; retry after the \
                  time in Retry-After",
    };
    let keep_alive = keep_alive && facts.keep_alive && !c.w.is_draining();
    c.wbuf.clear();
    let status = write_answer(
        &mut c.wbuf,
        &answer,
        keep_alive,
        facts.is_head,
        facts.http10,
        None,
    );
    // After the status line.
    let at = c.wbuf.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
    let header = format!("retry-after: {retry_after_secs}\r\n");
    c.wbuf.splice(at..at, header.bytes());
    let sent = write_out(&mut c.stream, &mut c.wbuf).await.is_ok();
    let next = if sent && keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    };
    (next, status)
}

/// Writes an answer for a request whose body has been dealt with (or which closes the
/// connection: `keep_alive` false), with the exchange's edits and status, if any.
pub(super) async fn send(
    c: &mut Conn,
    facts: Facts,
    answer: &Local<'_>,
    keep_alive: bool,
    ex: Option<&Exchange>,
) -> (Next, u16) {
    let keep_alive = keep_alive && facts.keep_alive && !c.w.is_draining();
    c.wbuf.clear();
    let status = write_answer(
        &mut c.wbuf,
        answer,
        keep_alive,
        facts.is_head,
        facts.http10,
        ex,
    );
    let sent = match answer {
        Local::Cached(hit) if !facts.is_head && !hit.body.is_empty() => {
            // The body is shared with the store: written from it, with the head, in one
            // writev, not copied.
            let iov = c.gen.policies.iovecs.borrow_mut().pop().unwrap_or_default();
            let (res, iov) = write_head_and_body(&mut c.stream, &mut c.wbuf, &hit.body, iov).await;
            c.gen.policies.iovecs.borrow_mut().push(iov);
            res.is_ok()
        }
        _ => write_out(&mut c.stream, &mut c.wbuf).await.is_ok(),
    };
    let next = if sent && keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    };
    (next, status)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn json_escape(out: &mut Vec<u8>, text: &str) {
    for ch in text.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = std::io::Write::write_fmt(out, format_args!("\\u{:04x}", c as u32));
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// Writes the answer (for a cached response, its head only: the caller sends the body) and
/// returns the status sent.
fn write_answer(
    out: &mut Vec<u8>,
    answer: &Local<'_>,
    keep_alive: bool,
    is_head: bool,
    http10: bool,
    ex: Option<&Exchange>,
) -> u16 {
    let own = answer.status();
    let (status, reason_text): (u16, &[u8]) = match ex.and_then(|e| e.status.map(|s| (s, e))) {
        Some((s, e)) => (s, &e.reason),
        None => match answer {
            Local::Policy(Respond {
                reason: Some(r), ..
            }) => (own, r.as_bytes()),
            _ => (own, reason(own).as_bytes()),
        },
    };
    let edits = ex.map(|e| &e.response);
    let touched = |name: &[u8]| edits.is_some_and(|e| e.touches(name));
    super::head::write_own_status_line(out, status, reason_text);
    if !touched(b"server") {
        out.extend_from_slice(b"server: ringway\r\n");
    }
    let json = |out: &mut Vec<u8>| {
        if !touched(b"content-type") {
            out.extend_from_slice(b"content-type: application/json\r\n");
        }
    };
    let body_start;
    let mut body_len = None;
    match answer {
        Local::Apim {
            message,
            retry_after,
            ..
        } => {
            json(out);
            if let Some(secs) = retry_after {
                if !touched(b"retry-after") {
                    out.extend_from_slice(b"retry-after: ");
                    crate::policy::run::push_u64(out, *secs);
                    out.extend_from_slice(b"\r\n");
                }
            }
            if let Some(e) = edits {
                e.write(out);
            }
            body_start = out.len();
            let _ = write!(
                SliceWriter(out),
                "{{ \"statusCode\": {own}, \"message\": \""
            );
            json_escape(out, message);
            out.extend_from_slice(b"\" }\n");
        }
        Local::Policy(r) => {
            if let Some(e) = edits {
                e.write(out);
            }
            body_start = out.len();
            out.extend_from_slice(&r.body);
        }
        Local::Cached(hit) => {
            out.extend_from_slice(&hit.headers);
            out.extend_from_slice(b"age: ");
            crate::policy::run::push_u64(out, hit.age_secs);
            out.extend_from_slice(b"\r\n");
            if let Some(e) = edits {
                e.write(out);
            }
            body_start = out.len();
            body_len = Some(hit.body.len());
        }
        Local::Error { code, message, .. } => {
            json(out);
            if let Some(e) = edits {
                e.write(out);
            }
            body_start = out.len();
            out.extend_from_slice(b"{\"error\":\"");
            json_escape(out, code);
            out.extend_from_slice(b"\",\"message\":\"");
            json_escape(out, message);
            out.extend_from_slice(b"\"}\n");
        }
        Local::Redirect { location, .. } => {
            out.extend_from_slice(b"location: ");
            out.extend_from_slice(location.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(e) = edits {
                e.write(out);
            }
            body_start = out.len();
        }
        Local::Direct(d, route_edits) => {
            for (name, value) in &d.headers {
                if route_edits.touches(name.as_bytes()) || touched(name.as_bytes()) {
                    continue;
                }
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            for (name, value) in route_edits.set.iter().chain(route_edits.add.iter()) {
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            if let Some(e) = edits {
                e.write(out);
            }
            body_start = out.len();
            out.extend_from_slice(&d.body);
        }
    }
    finish(
        out,
        body_start,
        body_len,
        keep_alive,
        is_head || status == 204 || status == 304,
        http10,
    );
    status
}

/// `io::Write` over a byte vector, for `write!` into an output buffer.
struct SliceWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Inserts the framing headers and the blank line before the body that starts at `body_start`
/// (or, with `body_len`, that the caller sends after the head).
fn finish(
    out: &mut Vec<u8>,
    body_start: usize,
    body_len: Option<usize>,
    keep_alive: bool,
    no_body: bool,
    http10: bool,
) {
    let body_len = body_len.unwrap_or(out.len() - body_start);
    if no_body {
        out.truncate(body_start);
    }
    // Appended after the body, then rotated in front of it: no second buffer.
    let end = out.len();
    if !no_body || body_len > 0 {
        out.extend_from_slice(b"content-length: ");
        crate::policy::run::push_u64(out, body_len as u64);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let framing = out.len() - end;
    out[body_start..].rotate_right(framing);
}

/// The `Location` of a redirect: the configured parts over the request's own.
/// The `Location` of a redirect; `https` says whether the request came over TLS (the scheme
/// kept when the redirect names none).
pub(super) fn location(r: &Redirect, buf: &[u8], head: &RequestHead, https: bool) -> String {
    let request_host = head
        .host(buf)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let (host_only, request_port) = split_host_port(&request_host);
    let scheme = r
        .scheme
        .as_deref()
        .unwrap_or(if https { "https" } else { "http" });
    let host = r.host.as_deref().unwrap_or(host_only);
    let port = match (r.port, &r.host, r.scheme.is_some()) {
        (Some(p), _, _) => Some(p),
        // A new host or scheme drops the request's port; otherwise it is kept.
        (None, None, false) => request_port,
        _ => None,
    };
    let mut out = String::with_capacity(64);
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(host);
    let default_port = if scheme == "https" { 443 } else { 80 };
    if let Some(p) = port.filter(|&p| p != default_port) {
        let _ = write!(out, ":{p}");
    }
    match &r.path {
        Some(p) => out.push_str(p),
        None => out.push_str(&String::from_utf8_lossy(head.path(buf))),
    }
    let query = head.query(buf);
    if !query.is_empty() {
        out.push('?');
        out.push_str(&String::from_utf8_lossy(query));
    }
    out
}

fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (&host[..h.len() + 2], port);
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_json_with_length() {
        let mut out = Vec::new();
        let a = Local::Error {
            status: 502,
            code: "bad_gateway",
            message: "connect to \"x\" failed",
        };
        write_answer(&mut out, &a, false, false, false, None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
        assert!(text.contains("content-type: application/json\r\n"));
        assert!(text.contains("connection: close\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            body,
            "{\"error\":\"bad_gateway\",\"message\":\"connect to \\\"x\\\" failed\"}\n"
        );
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[test]
    fn head_answers_have_no_body() {
        let mut out = Vec::new();
        let a = Local::Error {
            status: 404,
            code: "no_route",
            message: "m",
        };
        write_answer(&mut out, &a, true, true, false, None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n\r\n"));
        assert!(text.contains("content-length: "));
    }

    #[test]
    fn host_and_port_split() {
        assert_eq!(split_host_port("a.b:8080"), ("a.b", Some(8080)));
        assert_eq!(split_host_port("a.b"), ("a.b", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some(80)));
    }
}
