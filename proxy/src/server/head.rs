//! Writing the heads a proxied exchange sends on: the request to the upstream and the response
//! to the client.
//!
//! Unchanged header lines are copied out of the read buffer as they came (runs of them in one
//! copy); only what the proxy changes is formatted. The head goes out in the same write as the
//! first body bytes, so a small exchange costs one write each way.

use ringway_core::http1::{is_hop_by_hop, BodyFraming, Header, RequestHead, ResponseHead, Version};

use crate::policy::Edits;
use crate::route::{HeaderEdits, Rewrite};

/// What the request head to the upstream carries besides the client's own headers.
pub struct Forwarded<'a> {
    pub client_ip: &'a [u8],
    pub request_id: &'a [u8],
    /// The request had an `X-Request-Id` already.
    pub had_request_id: bool,
    pub rewrite: Option<&'a Rewrite>,
    pub prefix_len: usize,
    pub edits: &'a HeaderEdits,
    /// The body goes out chunked.
    pub chunked: bool,
    /// Pass `Connection: upgrade` and the allowed protocols of `Upgrade` through.
    pub upgrade: bool,
    /// The protocols the gateway tunnels (lower case); others are dropped from `Upgrade`.
    pub upgrades: &'a [String],
    /// The Host to send when the request has none (an HTTP/1.0 request): the authority the
    /// client reached, the connection's local address (RFC 9112 3.3).
    pub default_host: &'a [u8],
    /// Header edits made by policies.
    pub extra: Option<&'a Edits>,
    /// The request target (path and query) as policies left it, when they changed it; the
    /// route's rewrite still applies to its path.
    pub target: Option<&'a [u8]>,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// The `traceparent` to send (this hop's span).
    pub traceparent: &'a [u8],
}

/// Whether `Upgrade` names at least one protocol of `allowed`.
pub fn upgrade_allowed(value: &[u8], allowed: &[String]) -> bool {
    upgrade_tokens(value).any(|t| protocol_allowed(t, allowed))
}

fn upgrade_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// `protocol-name ["/" protocol-version]`: the name decides.
fn protocol_allowed(token: &[u8], allowed: &[String]) -> bool {
    let name = token.split(|&b| b == b'/').next().unwrap_or_default();
    allowed
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(name))
}

/// Writes `Upgrade` with only the allowed protocols of `value`.
fn write_upgrade(out: &mut Vec<u8>, value: &[u8], allowed: &[String]) {
    out.extend_from_slice(b"upgrade: ");
    let mut first = true;
    for token in upgrade_tokens(value).filter(|t| protocol_allowed(t, allowed)) {
        if !first {
            out.extend_from_slice(b", ");
        }
        first = false;
        out.extend_from_slice(token);
    }
    out.extend_from_slice(b"\r\n");
}

/// Headers that a `Connection` header can never remove: they frame the message or name its
/// target, and dropping them while the body still flows lets the next hop read the body as
/// another request (`Connection: content-length`). Listing them is ignored.
fn framing_or_host(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"host")
}

/// Whether a header named `name` is listed in any `Connection` header of the message, and
/// may be removed for it.
fn listed_in_connection(buf: &[u8], headers: &[Header], name: &[u8]) -> bool {
    !framing_or_host(name)
        && headers
            .iter()
            .filter(|h| h.name.of(buf).eq_ignore_ascii_case(b"connection"))
            .flat_map(|h| h.value.of(buf).split(|&b| b == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(name))
}

fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies every header line `keep` accepts, merging adjacent kept lines into one copy.
fn copy_headers(
    out: &mut Vec<u8>,
    buf: &[u8],
    headers: &[Header],
    mut keep: impl FnMut(&[u8]) -> bool,
) {
    let mut run: Option<(usize, usize)> = None;
    for h in headers {
        if keep(h.name.of(buf)) {
            let (s, e) = (h.line.start as usize, h.line.end as usize);
            run = match run {
                Some((rs, re)) if re == s => Some((rs, e)),
                Some((rs, re)) => {
                    out.extend_from_slice(&buf[rs..re]);
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
    }
    if let Some((rs, re)) = run {
        out.extend_from_slice(&buf[rs..re]);
    }
}

fn apply_edits(out: &mut Vec<u8>, edits: &HeaderEdits) {
    for (name, value) in edits.set.iter().chain(edits.add.iter()) {
        write_header(out, name, value);
    }
}

/// Writes the request head for the upstream.
pub fn write_request_head(out: &mut Vec<u8>, buf: &[u8], head: &RequestHead, f: &Forwarded<'_>) {
    let headers = head.headers();
    let lists_other = head.connection().lists_other;
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    let target = head.target(buf);
    match (f.rewrite, f.target) {
        // The target goes on exactly as it came, escapes and all.
        (None, None) if !head.is_absolute_form() => out.extend_from_slice(target),
        (None, Some(t)) => out.extend_from_slice(t),
        (rewrite, policy_target) => {
            let (path, query) = match policy_target {
                Some(t) => match t.iter().position(|&b| b == b'?') {
                    Some(q) => (&t[..q], Some(&t[q + 1..])),
                    None => (t, None),
                },
                None => (
                    head.path(buf),
                    target.contains(&b'?').then(|| head.query(buf)),
                ),
            };
            match rewrite {
                None => out.extend_from_slice(path),
                Some(r) => r.apply(path, f.prefix_len, out),
            }
            if let Some(query) = query {
                out.push(b'?');
                out.extend_from_slice(query);
            }
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    // An absolute-form target names the authority; the client's Host, if any, gives way to it
    // (RFC 9112 3.2.2). A request without Host (HTTP/1.0) gets one, as HTTP/1.1 requires.
    let replace_host = head.is_absolute_form() || head.host(buf).is_none();
    let rewrite_length = !head.content_length_is_plain();
    copy_headers(out, buf, headers, |name| {
        !(is_hop_by_hop(name)
            || (replace_host && name.eq_ignore_ascii_case(b"host"))
            || ((f.chunked || rewrite_length) && name.eq_ignore_ascii_case(b"content-length"))
            || name.eq_ignore_ascii_case(b"x-forwarded-for")
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
            || name.eq_ignore_ascii_case(b"x-forwarded-host")
            || name.eq_ignore_ascii_case(b"via")
            || name.eq_ignore_ascii_case(b"traceparent")
            || name.eq_ignore_ascii_case(b"expect")
            || f.edits.touches(name)
            || f.extra.is_some_and(|e| e.touches(name))
            || (lists_other && listed_in_connection(buf, headers, name)))
    });

    if replace_host {
        write_header(out, b"host", head.host(buf).unwrap_or(f.default_host));
    }
    if rewrite_length && !f.chunked {
        if let BodyFraming::Length(n) = head.framing() {
            write_content_length(out, n);
        }
    }
    // X-Forwarded-For: what earlier proxies said, then the client.
    out.extend_from_slice(b"x-forwarded-for: ");
    for h in headers {
        if h.name.of(buf).eq_ignore_ascii_case(b"x-forwarded-for") {
            out.extend_from_slice(h.value.of(buf));
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(f.client_ip);
    out.extend_from_slice(if f.https {
        b"\r\nx-forwarded-proto: https\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n"
    });
    if let Some(host) = head.host(buf) {
        write_header(out, b"x-forwarded-host", host);
    }
    if !f.edits.touches(b"traceparent") && !f.extra.is_some_and(|e| e.touches(b"traceparent")) {
        write_header(out, b"traceparent", f.traceparent);
    }
    out.extend_from_slice(b"via: ");
    for h in headers {
        if h.name.of(buf).eq_ignore_ascii_case(b"via") {
            out.extend_from_slice(h.value.of(buf));
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(if head.version() == Version::Http10 {
        b"1.0 ringway\r\n"
    } else {
        b"1.1 ringway\r\n"
    });
    if !f.had_request_id {
        write_header(out, b"x-request-id", f.request_id);
    }
    if f.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if f.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
        if let Some(up) = head.header(buf, b"upgrade") {
            write_upgrade(out, up, f.upgrades);
        }
    }
    apply_edits(out, f.edits);
    if let Some(extra) = f.extra {
        extra.write(out);
    }
    out.extend_from_slice(b"\r\n");
}

/// The status line as sent, under our version: from after "HTTP/1.x" (which the parser
/// checked) to the end of the line, wherever the line starts.
fn write_status_line(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead) {
    let line_end = head
        .headers()
        .first()
        .map_or(head.head_len() - 2, |h| h.line.start as usize);
    out.extend_from_slice(b"HTTP/1.1");
    out.extend_from_slice(&buf[head.status_line_start() + 8..line_end]);
}

/// An interim response as the client gets it: status line under our version, end-to-end
/// headers (RFC 9110 15.2: a proxy forwards 1xx; hop-by-hop fields stay behind).
pub fn write_interim_head(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead) {
    write_status_line(out, buf, head);
    copy_headers(out, buf, head.headers(), |name| !is_hop_by_hop(name));
    out.extend_from_slice(b"\r\n");
}

fn write_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// How the response body goes to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFraming {
    /// As the upstream framed it (Content-Length kept, or no body).
    AsIs,
    /// Chunked towards the client.
    Chunked,
    /// Raw bytes, then close.
    Close,
}

/// What the proxy decided about the response it sends the client.
pub struct ResponseShape<'a> {
    pub framing: ClientFraming,
    pub keep_alive: bool,
    pub client_http10: bool,
    pub upgrade: bool,
    /// Header edits made by policies.
    pub extra: Option<&'a Edits>,
    /// `set-status`: the status and reason sent instead of the upstream's.
    pub status: Option<(u16, &'a [u8])>,
}

/// Writes the response head for the client.
pub fn write_response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    shape: &ResponseShape,
    edits: &HeaderEdits,
) {
    let ResponseShape {
        framing,
        keep_alive,
        client_http10,
        upgrade,
        extra,
        status,
    } = *shape;
    let headers = head.headers();
    let lists_other = head.connection().lists_other;
    match status {
        Some((code, reason)) => write_own_status_line(out, code, reason),
        None => write_status_line(out, buf, head),
    }
    let rewrite_length = framing == ClientFraming::AsIs && !head.content_length_is_plain();
    copy_headers(out, buf, headers, |name| {
        !(is_hop_by_hop(name)
            || ((framing != ClientFraming::AsIs || rewrite_length)
                && name.eq_ignore_ascii_case(b"content-length"))
            || edits.touches(name)
            || extra.is_some_and(|e| e.touches(name))
            || (lists_other && listed_in_connection(buf, headers, name)))
    });
    match framing {
        ClientFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ClientFraming::AsIs | ClientFraming::Close => {}
    }
    if let (true, Some(n)) = (rewrite_length, head.content_length()) {
        write_content_length(out, n);
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
        if let Some(up) = head.header(buf, b"upgrade") {
            write_header(out, b"upgrade", up);
        }
    } else if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client_http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    apply_edits(out, edits);
    if let Some(extra) = extra {
        extra.write(out);
    }
    out.extend_from_slice(b"\r\n");
}

/// `HTTP/1.1 CODE REASON`.
pub fn write_own_status_line(out: &mut Vec<u8>, code: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    crate::policy::run::push_u64(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// The header lines of a response worth storing in a cache: end-to-end, not framing (a hit is
/// sent with its own Content-Length), not `Age` (a hit gets its own).
pub fn cacheable_headers(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead) {
    let headers = head.headers();
    let lists_other = head.connection().lists_other;
    copy_headers(out, buf, headers, |name| {
        !(is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"age")
            || name.eq_ignore_ascii_case(b"x-cache")
            || (lists_other && listed_in_connection(buf, headers, name)))
    });
}
