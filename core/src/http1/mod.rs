//! The HTTP/1.1 codec.
//!
//! Heads are parsed with `httparse` straight out of a connection's read buffer; what is kept is
//! [`Span`]s (offsets) into that buffer, never owned strings, so parsing a head allocates nothing
//! once a connection's [`RequestHead`] has grown its header vector. The caller keeps the buffer
//! unchanged until it is done with the head, then advances past `head_len`.
//!
//! The framing rules are RFC 9112's, strict where leniency lets two parsers disagree (request
//! smuggling): Content-Length with Transfer-Encoding, conflicting lengths, bad chunk sizes,
//! obs-fold, bare CR and NUL are all rejected with 400; an unknown transfer coding is 501.

mod chunked;
mod error;
mod head;

pub use chunked::{
    encode_chunk, encode_last_chunk, ChunkedDecoder, MAX_SIZE_LINE, MAX_TRAILER_BYTES,
};
pub use error::{CodecError, CodecErrorKind};
pub use head::{parse_request, parse_response, RequestHead, ResponseHead, MAX_HEADERS_CAP};

/// A byte range of the buffer a head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn of<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// One header line: its name and value, and the whole line including its CRLF (so that runs
/// of unchanged lines can be copied out in one piece).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub name: Span,
    pub value: Span,
    pub line: Span,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    #[default]
    None,
    /// Exactly this many bytes (never 0: a zero length is `None`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    Close,
}

/// Size limits on what a peer may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line (or status line) plus headers, in bytes.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    /// 0 = unlimited.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 0,
        }
    }
}

/// Which connection-level tokens a message carried, folded from its headers while parsing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// `Connection: close` seen.
    pub close: bool,
    /// `Connection: keep-alive` seen.
    pub keep_alive: bool,
    /// `Connection: upgrade` seen and an `Upgrade` header present.
    pub upgrade: bool,
    /// The `Connection` header listed names other than close/keep-alive/upgrade: those headers
    /// are hop-by-hop too and must be removed when forwarding.
    pub lists_other: bool,
}

/// True for the headers that never cross a proxy (RFC 9110 section 7.6.1), compared
/// case-insensitively. `Upgrade` is included; a proxy passing an upgrade re-adds it.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 7] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}
