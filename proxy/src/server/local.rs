//! Answers the gateway gives itself: errors (as JSON), direct responses and redirects.

use std::fmt::Write as _;

use ringway_core::http1::{BodyFraming, ChunkedDecoder, RequestHead};

use super::conn::{Conn, Facts, Next};
use super::io::{send_continue, write_out};
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
}

impl Local<'_> {
    fn status(&self) -> u16 {
        match self {
            Local::Error { status, .. } | Local::Redirect { status, .. } => *status,
            Local::Direct(d, _) => d.status,
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
    send(c, facts, &answer, keep_alive).await
}

/// Reads and drops a request body; false when it could not be (too large, malformed, the
/// client went away), and the connection must close.
async fn discard_body(c: &mut Conn, framing: BodyFraming) -> bool {
    let idle = c.w.snapshot.config.timeouts.idle;
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
    write_answer(&mut c.wbuf, &answer, false, is_head, false);
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
    send(c, facts, &answer, keep_alive).await
}

async fn send(c: &mut Conn, facts: Facts, answer: &Local<'_>, keep_alive: bool) -> (Next, u16) {
    let keep_alive = keep_alive && facts.keep_alive && !c.w.is_draining();
    c.wbuf.clear();
    write_answer(&mut c.wbuf, answer, keep_alive, facts.is_head, facts.http10);
    let sent = write_out(&mut c.stream, &mut c.wbuf).await.is_ok();
    let next = if sent && keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    };
    (next, answer.status())
}

fn reason(status: u16) -> &'static str {
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

fn write_answer(
    out: &mut Vec<u8>,
    answer: &Local<'_>,
    keep_alive: bool,
    is_head: bool,
    http10: bool,
) {
    let status = answer.status();
    let mut head = String::with_capacity(128);
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nserver: ringway\r\n",
        reason(status)
    );
    out.extend_from_slice(head.as_bytes());
    let body_start;
    match answer {
        Local::Error { code, message, .. } => {
            out.extend_from_slice(b"content-type: application/json\r\n");
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
            body_start = out.len();
        }
        Local::Direct(d, edits) => {
            for (name, value) in &d.headers {
                if edits.touches(name.as_bytes()) {
                    continue;
                }
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            for (name, value) in edits.set.iter().chain(edits.add.iter()) {
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            body_start = out.len();
            out.extend_from_slice(&d.body);
        }
    }
    finish(
        out,
        body_start,
        keep_alive,
        is_head || status == 204 || status == 304,
        http10,
    );
}

/// Inserts the framing headers and the blank line before the body that starts at `body_start`.
fn finish(out: &mut Vec<u8>, body_start: usize, keep_alive: bool, no_body: bool, http10: bool) {
    let body_len = out.len() - body_start;
    let mut framing = String::with_capacity(64);
    if !no_body || body_len > 0 {
        let _ = write!(framing, "content-length: {body_len}\r\n");
    }
    if !keep_alive {
        framing.push_str("connection: close\r\n");
    } else if http10 {
        framing.push_str("connection: keep-alive\r\n");
    }
    framing.push_str("\r\n");
    let tail = out.split_off(body_start);
    out.extend_from_slice(framing.as_bytes());
    if !no_body {
        out.extend_from_slice(&tail);
    }
}

/// The `Location` of a redirect: the configured parts over the request's own.
pub(super) fn location(r: &Redirect, buf: &[u8], head: &RequestHead) -> String {
    let request_host = head
        .host(buf)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let (host_only, request_port) = split_host_port(&request_host);
    let scheme = r.scheme.as_deref().unwrap_or("http");
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
        write_answer(&mut out, &a, false, false, false);
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
        write_answer(&mut out, &a, true, true, false);
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
