//! Folding the headers that decide framing and connection handling.
//!
//! One pass over a parsed head's headers collects Content-Length (all values, which must
//! agree), Transfer-Encoding (all headers read as one coding list), Host, Connection tokens,
//! Upgrade and Expect. The rules that combine them differ for requests and responses and live
//! with the callers in `head.rs`; only the syntax of each value is checked here.

use crate::http1::{CodecErrorKind as K, ConnectionInfo, Header, Span};

/// The framing-relevant headers of one message, folded.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) content_length: Option<u64>,
    /// Content-Length came as one header with one plain value ("5", not "5, 5" or "05"), so
    /// it can be forwarded as it is.
    pub(super) content_length_plain: bool,
    pub(super) transfer: Option<TransferCodings>,
    pub(super) host: Option<Span>,
    pub(super) host_repeated: bool,
    pub(super) close: bool,
    pub(super) keep_alive: bool,
    pub(super) upgrade_token: bool,
    pub(super) upgrade_header: bool,
    pub(super) lists_other: bool,
    pub(super) expect_continue: bool,
}

/// Transfer-Encoding's codings, all headers read as one list.
#[derive(Clone, Copy, Default)]
pub(super) struct TransferCodings {
    pub(super) chunked_seen: bool,
    pub(super) chunked_repeated: bool,
    pub(super) last_chunked: bool,
    pub(super) other: bool,
}

impl Fields {
    pub(super) fn scan(buf: &[u8], headers: &[Header]) -> Result<Fields, K> {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name.of(buf);
            let value = h.value.of(buf);
            match name.len() {
                4 if name.eq_ignore_ascii_case(b"host") => {
                    f.host_repeated |= f.host.is_some();
                    f.host = Some(h.value);
                }
                6 if name.eq_ignore_ascii_case(b"expect") => {
                    f.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
                }
                7 if name.eq_ignore_ascii_case(b"upgrade") => f.upgrade_header = true,
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    for token in list(value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            f.close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            f.keep_alive = true;
                        } else if token.eq_ignore_ascii_case(b"upgrade") {
                            f.upgrade_token = true;
                        } else {
                            f.lists_other = true;
                        }
                    }
                }
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    f.content_length_plain = f.content_length.is_none()
                        && !value.contains(&b',')
                        && (value.len() == 1 || value.first() != Some(&b'0'));
                    for element in value.split(|&b| b == b',') {
                        let n = parse_content_length(trim_ows(element))?;
                        match f.content_length {
                            Some(m) if m != n => return Err(K::ConflictingContentLength),
                            _ => f.content_length = Some(n),
                        }
                    }
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    let te = f.transfer.get_or_insert_with(TransferCodings::default);
                    for coding in list(value) {
                        if coding.eq_ignore_ascii_case(b"chunked") {
                            te.chunked_repeated |= te.chunked_seen;
                            te.chunked_seen = true;
                            te.last_chunked = true;
                        } else {
                            te.other = true;
                            te.last_chunked = false;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(f)
    }

    pub(super) fn connection(&self) -> ConnectionInfo {
        ConnectionInfo {
            close: self.close,
            keep_alive: self.keep_alive,
            upgrade: self.upgrade_token && self.upgrade_header,
            lists_other: self.lists_other,
        }
    }
}

/// Bytes of `uri-host [":" port]`: unreserved, sub-delims, pct-encoded, IP-literal brackets.
#[inline]
pub(super) fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b)
}

/// The non-empty elements of a comma-separated list, without surrounding whitespace.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `1*DIGIT`, fitting in a u64.
fn parse_content_length(s: &[u8]) -> Result<u64, K> {
    if s.is_empty() {
        return Err(K::InvalidContentLength);
    }
    s.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(K::InvalidContentLength);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(K::InvalidContentLength)
    })
}
