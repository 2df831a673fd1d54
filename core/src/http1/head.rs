//! Request and response heads, parsed in place.
//!
//! [`parse_request`] and [`parse_response`] run `httparse` over the caller's read buffer and
//! keep only [`Span`]s into it, folding the framing headers (Content-Length, Transfer-Encoding,
//! Host, Connection, Expect) as they go. This is the per-request hot path: the header vector of
//! a reused [`RequestHead`] keeps its capacity, httparse's slots live on the stack, and nothing
//! else allocates. The invariant callers rely on: every span indexes the same `buf` that was
//! parsed, so the buffer must not move or change until the head is done with.
//!
//! Parsing is strict where leniency lets two parsers frame a message differently (smuggling):
//! bare CR, bare LF line ends, NUL, obs-fold, CL with TE and conflicting lengths are refused.
//! Bodies are not handled here; see [`super::ChunkedDecoder`] for chunked ones.

use std::mem::MaybeUninit;

use super::error::CodecErrorKind as K;
use super::{BodyFraming, CodecError, ConnectionInfo, Header, Limits, Span, Version};
use classify::classify;
use fields::{is_host_byte, Fields};

mod classify;
mod fields;

/// The most header slots given to httparse (they live on the stack, uninitialised, so the
/// size costs nothing per parse). A configured `max_headers` above this is capped to it.
pub const MAX_HEADERS_CAP: usize = 256;

/// A parsed request head: spans into the buffer it was parsed from.
///
/// Reuse one per connection: [`parse_request`] clears it and keeps the header vector's
/// capacity. After `Ok(None)` or `Err` its contents are unspecified.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    method: Span,
    target: Span,
    path: Span,
    query: Span,
    /// An absolute-form target with an empty path ("http://h?q"): [`RequestHead::path`] is "/".
    path_is_implied_root: bool,
    absolute_form: bool,
    version: Version,
    headers: Vec<Header>,
    host: Option<Span>,
    framing: BodyFraming,
    connection: ConnectionInfo,
    expect_continue: bool,
    content_length_plain: bool,
    head_len: usize,
}

impl RequestHead {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method.of(buf)
    }

    #[inline]
    pub fn method_span(&self) -> Span {
        self.method
    }

    /// The request-target as sent.
    #[inline]
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.of(buf)
    }

    #[inline]
    pub fn target_span(&self) -> Span {
        self.target
    }

    /// The target's path, up to `?`. For an absolute-form target ("http://h/p?q") it is the
    /// path after the authority ("/p"), and "/" when that is empty. For authority-form
    /// ("host:443") and asterisk-form ("*") targets it is the whole target.
    #[inline]
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        if self.path_is_implied_root {
            b"/"
        } else {
            self.path.of(buf)
        }
    }

    /// The span of [`RequestHead::path`] in the buffer (empty for an implied "/").
    #[inline]
    pub fn path_span(&self) -> Span {
        self.path
    }

    /// The query after `?`, without it; empty if there is none.
    #[inline]
    pub fn query<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.query.of(buf)
    }

    #[inline]
    pub fn query_span(&self) -> Span {
        self.query
    }

    /// Whether the target is absolute-form ("http://host/path"), as sent to a forward proxy.
    #[inline]
    pub fn is_absolute_form(&self) -> bool {
        self.absolute_form
    }

    #[inline]
    pub fn version(&self) -> Version {
        self.version
    }

    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Gives back the header vector's memory when it has grown past twice `keep` slots, so
    /// that an idle connection does not hold what its largest request needed (the margin keeps
    /// a client that always sends a little more than `keep` from reallocating every time).
    #[inline]
    pub fn shrink_headers(&mut self, keep: usize) {
        if self.headers.capacity() > 2 * keep {
            self.headers.clear();
            self.headers.shrink_to(keep);
        }
    }

    /// The first value of the header `name` (compared case-insensitively).
    #[inline]
    pub fn header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        find_header(&self.headers, buf, name)
    }

    /// The authority the request is for: the absolute-form target's authority (without
    /// userinfo) when there is one, as RFC 9112 3.2.2 requires, else the Host header value.
    #[inline]
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.host.map(|s| s.of(buf))
    }

    #[inline]
    pub fn host_span(&self) -> Option<Span> {
        self.host
    }

    /// How the body is delimited: `None`, `Length` or `Chunked`, never `Close`.
    #[inline]
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    #[inline]
    pub fn connection(&self) -> ConnectionInfo {
        self.connection
    }

    /// Whether the client wants the connection kept open: for HTTP/1.1 unless it sent
    /// `Connection: close`, for HTTP/1.0 only if it sent `Connection: keep-alive`.
    #[inline]
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, self.connection)
    }

    /// `Expect: 100-continue` in an HTTP/1.1 request (ignored in HTTP/1.0, RFC 9110 10.1.1).
    #[inline]
    pub fn expect_continue(&self) -> bool {
        self.expect_continue
    }

    /// Bytes of the head: any empty lines before it, the request line, headers and final CRLF.
    #[inline]
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// Whether Content-Length (if any) came as one header with one plain value, so that it can
    /// be forwarded as it is; otherwise a proxy writes the single value itself (RFC 9110 8.6:
    /// a list of identical values is accepted, but passed on as one).
    #[inline]
    pub fn content_length_is_plain(&self) -> bool {
        self.content_length_plain
    }

    /// GET, HEAD, PUT, DELETE, OPTIONS or TRACE (RFC 9110 9.2.2): safe to retry.
    pub fn is_idempotent(&self, buf: &[u8]) -> bool {
        matches!(
            self.method(buf),
            b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
        )
    }

    #[inline]
    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method(buf) == b"HEAD"
    }
}

/// A parsed response head: spans into the buffer it was parsed from. Reuse it like
/// [`RequestHead`].
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    version: Version,
    status: u16,
    reason: Span,
    headers: Vec<Header>,
    content_length: Option<u64>,
    content_length_plain: bool,
    transfer: Transfer,
    connection: ConnectionInfo,
    /// Where the status line starts (after any empty lines before it).
    line_start: u32,
    head_len: usize,
}

/// What a response's Transfer-Encoding said about framing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Transfer {
    #[default]
    Absent,
    /// The final coding is `chunked`.
    Chunked,
    /// Present, but the final coding is not `chunked`: the body runs until close.
    NotChunked,
}

impl ResponseHead {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn status(&self) -> u16 {
        self.status
    }

    #[inline]
    pub fn version(&self) -> Version {
        self.version
    }

    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The first value of the header `name` (compared case-insensitively).
    #[inline]
    pub fn header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        find_header(&self.headers, buf, name)
    }

    /// The reason phrase (possibly empty, then positioned at the status line's CRLF).
    #[inline]
    pub fn reason_span(&self) -> Span {
        self.reason
    }

    /// The Content-Length, if one was sent (already checked to be valid and consistent).
    #[inline]
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// As [`RequestHead::content_length_is_plain`].
    #[inline]
    pub fn content_length_is_plain(&self) -> bool {
        self.content_length_plain
    }

    /// The offset of the status line in the buffer: empty lines before it are allowed
    /// (RFC 9112 2.2), so it need not start at 0.
    #[inline]
    pub fn status_line_start(&self) -> usize {
        self.line_start as usize
    }

    /// Framing per RFC 9112 6.3, given whether the request was HEAD (CONNECT is not
    /// supported): 1xx, 204, 304 and responses to HEAD have no body; Transfer-Encoding whose
    /// final coding is chunked is `Chunked`, any other Transfer-Encoding is `Close`; a
    /// Content-Length is `Length` (0 is `None`); otherwise the body runs until close.
    pub fn framing(&self, request_was_head: bool) -> BodyFraming {
        if request_was_head
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return BodyFraming::None;
        }
        match self.transfer {
            Transfer::Chunked => BodyFraming::Chunked,
            Transfer::NotChunked => BodyFraming::Close,
            Transfer::Absent => match self.content_length {
                Some(0) => BodyFraming::None,
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::Close,
            },
        }
    }

    #[inline]
    pub fn connection(&self) -> ConnectionInfo {
        self.connection
    }

    /// Whether the server lets the connection be reused (HTTP/1.1 unless `close`, HTTP/1.0
    /// only with `keep-alive`). A close-delimited body ends the connection regardless.
    #[inline]
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, self.connection)
    }

    #[inline]
    pub fn head_len(&self) -> usize {
        self.head_len
    }
}

/// Parses a request head at the start of `buf` into `head`.
///
/// Returns `Ok(Some(head_len))` when a whole head is in `buf`, `Ok(None)` when more bytes are
/// needed (after checking that what is there does not already break a limit), and `Err` on
/// bad input; the error's status is what to answer before closing the connection. Bytes after
/// the head (a body, pipelined requests) are not looked at.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<Option<usize>, CodecError> {
    // Never look past the head limit: a head not complete within it is too large anyway.
    let window = &buf[..buf.len().min(limits.max_head_bytes).min(u32::MAX as usize)];
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let slots = &mut slots[..limits.max_headers.min(MAX_HEADERS_CAP)];
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, window, slots);
    match parsed {
        Ok(httparse::Status::Complete(len)) => {
            fill_request(window, len, &req, limits, head)?;
            Ok(Some(len))
        }
        Ok(httparse::Status::Partial) => {
            let target_len = match req.path {
                Some(path) => path.len(),
                None => partial_target_len(window),
            };
            if target_len > limits.max_uri_bytes {
                Err(K::UriTooLong.into())
            } else if buf.len() > limits.max_head_bytes {
                Err(K::HeadersTooLarge.into())
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(classify(window, e, true).into()),
    }
}

/// Parses a response head at the start of `buf` into `head`; results as for
/// [`parse_request`]. An `Err` from an upstream means a 502 for the client.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    head: &mut ResponseHead,
) -> Result<Option<usize>, CodecError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes).min(u32::MAX as usize)];
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let slots = &mut slots[..limits.max_headers.min(MAX_HEADERS_CAP)];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, window, slots);
    match parsed {
        Ok(httparse::Status::Complete(len)) => {
            fill_response(window, len, &res, head)?;
            Ok(Some(len))
        }
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            Err(K::HeadersTooLarge.into())
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(classify(window, e, false).into()),
    }
}

fn fill_request(
    window: &[u8],
    len: usize,
    req: &httparse::Request<'_, '_>,
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<(), K> {
    let method = req.method.unwrap_or_default().as_bytes();
    let target = req.path.unwrap_or_default().as_bytes();
    if target.len() > limits.max_uri_bytes {
        return Err(K::UriTooLong);
    }
    let method = span_of(window, method).ok_or(K::Malformed)?;
    let target = span_of(window, target).ok_or(K::Malformed)?;
    check_line_end(window, target.end as usize)?;
    check_final_crlf(window, len)?;
    collect_headers(window, req.headers, &mut head.headers)?;

    head.method = method;
    head.target = target;
    head.version = if req.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    head.head_len = len;
    split_target(window, head);

    let fields = Fields::scan(window, &head.headers)?;
    if fields.host_repeated {
        return Err(K::RepeatedHost);
    }
    match fields.host {
        None if head.version == Version::Http11 => return Err(K::MissingHost),
        Some(host) if !host.of(window).iter().all(|&b| is_host_byte(b)) => {
            return Err(K::InvalidHost)
        }
        _ => {}
    }
    if !head.absolute_form {
        head.host = fields.host;
    }
    head.connection = fields.connection();
    head.content_length_plain = fields.content_length.is_none() || fields.content_length_plain;
    head.expect_continue = fields.expect_continue && head.version == Version::Http11;
    head.framing = match fields.transfer {
        Some(te) => {
            if head.version == Version::Http10 {
                return Err(K::TransferEncodingInHttp10);
            }
            if fields.content_length.is_some() {
                return Err(K::ContentLengthWithTransferEncoding);
            }
            if te.chunked_seen && (te.chunked_repeated || !te.last_chunked) {
                return Err(K::TransferEncodingNotChunked);
            }
            if te.other {
                return Err(K::UnknownTransferCoding);
            }
            if !te.chunked_seen {
                return Err(K::TransferEncodingNotChunked);
            }
            BodyFraming::Chunked
        }
        None => match fields.content_length {
            None | Some(0) => BodyFraming::None,
            Some(n) if limits.max_body_bytes != 0 && n > limits.max_body_bytes => {
                return Err(K::BodyTooLarge)
            }
            Some(n) => BodyFraming::Length(n),
        },
    };
    Ok(())
}

fn fill_response(
    window: &[u8],
    len: usize,
    res: &httparse::Response<'_, '_>,
    head: &mut ResponseHead,
) -> Result<(), K> {
    let line_start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line_end = check_line_end(window, line_start)?;
    check_final_crlf(window, len)?;
    collect_headers(window, res.headers, &mut head.headers)?;

    head.version = if res.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    head.status = res.code.unwrap_or_default();
    let reason = res.reason.unwrap_or_default().as_bytes();
    // httparse gives an empty reason as a static "", not a slice of the buffer.
    head.reason = match span_of(window, reason) {
        Some(span) if !reason.is_empty() => span,
        _ => {
            let at = (line_end - 1) as u32;
            Span { start: at, end: at }
        }
    };
    head.head_len = len;

    let fields = Fields::scan(window, &head.headers)?;
    head.connection = fields.connection();
    head.content_length = fields.content_length;
    head.content_length_plain = fields.content_length.is_none() || fields.content_length_plain;
    head.line_start = line_start as u32;
    head.transfer = match fields.transfer {
        None => Transfer::Absent,
        Some(_) if fields.content_length.is_some() => {
            return Err(K::ContentLengthWithTransferEncoding)
        }
        Some(te) if te.chunked_repeated => return Err(K::TransferEncodingNotChunked),
        Some(te) if te.last_chunked => Transfer::Chunked,
        Some(_) => Transfer::NotChunked,
    };
    Ok(())
}

/// Converts httparse's headers to spans, checking that each line ends in CRLF.
fn collect_headers(
    window: &[u8],
    parsed: &[httparse::Header<'_>],
    out: &mut Vec<Header>,
) -> Result<(), K> {
    out.clear();
    for h in parsed {
        let name = span_of(window, h.name.as_bytes()).ok_or(K::Malformed)?;
        let value = span_of(window, h.value).ok_or(K::Malformed)?;
        // httparse trims trailing whitespace from the value; the line runs to the LF.
        let line_end = check_line_end(window, value.end as usize)?;
        out.push(Header {
            name,
            value,
            line: Span {
                start: name.start,
                end: line_end as u32,
            },
        });
    }
    Ok(())
}

/// Finds the LF at or after `from` and checks a CR precedes it; returns the offset after it.
fn check_line_end(window: &[u8], from: usize) -> Result<usize, K> {
    let lf = window[from..]
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(K::Malformed)?
        + from;
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(K::BareLf);
    }
    Ok(lf + 1)
}

fn check_final_crlf(window: &[u8], len: usize) -> Result<(), K> {
    if len >= 2 && &window[len - 2..len] == b"\r\n" {
        Ok(())
    } else {
        Err(K::BareLf)
    }
}

/// The span `s` occupies in `window`, if it is a slice of it.
#[inline]
fn span_of(window: &[u8], s: &[u8]) -> Option<Span> {
    let start = (s.as_ptr() as usize).checked_sub(window.as_ptr() as usize)?;
    let end = start.checked_add(s.len())?;
    if end > window.len() {
        return None;
    }
    Some(Span {
        start: start as u32,
        end: end as u32,
    })
}

#[inline]
fn find_header<'b>(headers: &[Header], buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.of(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.of(buf))
}

#[inline]
fn keep_alive(version: Version, c: ConnectionInfo) -> bool {
    match version {
        Version::Http11 => !c.close,
        Version::Http10 => c.keep_alive && !c.close,
    }
}

/// Splits the target into path and query, and finds an absolute-form target's authority.
fn split_target(window: &[u8], head: &mut RequestHead) {
    let t = head.target;
    let bytes = t.of(window);
    head.host = None;
    head.path_is_implied_root = false;
    head.absolute_form = false;
    let at = |i: usize| t.start + i as u32;
    let path_start = if bytes.first() == Some(&b'/') {
        0
    } else if let Some(scheme_end) = absolute_scheme_end(bytes) {
        let auth_start = scheme_end + 3;
        let auth_end = bytes[auth_start..]
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .map_or(bytes.len(), |i| i + auth_start);
        // Drop any userinfo ("user@host").
        let host_start = bytes[auth_start..auth_end]
            .iter()
            .rposition(|&b| b == b'@')
            .map_or(auth_start, |i| auth_start + i + 1);
        head.host = Some(Span {
            start: at(host_start),
            end: at(auth_end),
        });
        head.absolute_form = true;
        auth_end
    } else {
        // authority-form ("host:port") or asterisk-form ("*"): no path to split.
        head.path = t;
        head.query = Span {
            start: t.end,
            end: t.end,
        };
        return;
    };
    let rest = &bytes[path_start..];
    let (path_end, query) = match rest.iter().position(|&b| b == b'?') {
        Some(q) => (
            path_start + q,
            Span {
                start: at(path_start + q + 1),
                end: t.end,
            },
        ),
        None => (
            bytes.len(),
            Span {
                start: t.end,
                end: t.end,
            },
        ),
    };
    head.path = Span {
        start: at(path_start),
        end: at(path_end),
    };
    head.path_is_implied_root = head.absolute_form && path_end == path_start;
    head.query = query;
}

/// For "scheme://...", the index of "://".
fn absolute_scheme_end(t: &[u8]) -> Option<usize> {
    let colon = t.iter().position(|&b| b == b':')?;
    let scheme = &t[..colon];
    let ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && t[colon..].starts_with(b"://");
    ok.then_some(colon)
}

/// How much of the request-target has arrived when the request line is still incomplete.
fn partial_target_len(window: &[u8]) -> usize {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let line = &window[start..];
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return 0;
    };
    let target = &line[sp + 1..];
    target
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(target.len())
}

#[cfg(test)]
mod tests;
