//! Helpers shared by the head-parser targets (`request_head`, `response_head`).

#![allow(dead_code)]

use ringway_core::http1::{Header, Limits, Span};

/// Small limits taken from the first four bytes of an input, so that the limit checks
/// (431, 414, 413, too many headers) are reached with short inputs.
pub fn derived_limits(b: [u8; 4]) -> Limits {
    Limits {
        // 1..=1021 bytes.
        max_head_bytes: 1 + 4 * b[0] as usize,
        // 0..=31 header slots (0 is allowed by the codec, if not by the configuration).
        max_headers: (b[1] % 32) as usize,
        // 0..=511 bytes.
        max_uri_bytes: 2 * b[2] as usize,
        // 0 (unlimited) or up to 63 * 17.
        max_body_bytes: u64::from(b[3] % 64) * 17,
    }
}

/// The span lies within the first `n` bytes and is well-formed.
pub fn assert_span_within(what: &str, s: Span, n: usize) {
    assert!(
        s.start <= s.end && s.end as usize <= n,
        "{what} span {s:?} is not within the head's {n} bytes"
    );
}

pub fn assert_headers_within(headers: &[Header], buf: &[u8], n: usize) {
    for (i, h) in headers.iter().enumerate() {
        assert_span_within(&format!("header {i} name"), h.name, n);
        assert_span_within(&format!("header {i} value"), h.value, n);
        assert_span_within(&format!("header {i} line"), h.line, n);
        assert_eq!(
            h.line.start, h.name.start,
            "header {i}: line starts at its name"
        );
        assert!(
            h.name.end <= h.value.start && h.value.end <= h.line.end,
            "header {i}: name, value and line out of order: {h:?}"
        );
        assert!(!h.name.is_empty(), "header {i}: empty name");
        let line = h.line.of(buf);
        assert!(
            line.ends_with(b"\r\n"),
            "header {i}: line does not end in CRLF: {line:?}"
        );
        let value = h.value.of(buf);
        assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "header {i}: value holds CR, LF or NUL: {value:?}"
        );
    }
}

/// What the codec's documentation promises about an accepted head's bytes: no NUL, no bare
/// CR, lines (from the start line on) ended by CRLF, no obs-fold, and a final CRLF.
pub fn assert_strict_head(head: &[u8]) {
    assert!(!head.contains(&0), "accepted head contains NUL");
    for (i, &b) in head.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(
                head.get(i + 1),
                Some(&b'\n'),
                "accepted head has a bare CR at {i}"
            );
        }
    }
    // Empty lines before the start line are allowed (RFC 9112 2.2); from the start line on,
    // every LF follows a CR.
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .expect("an accepted head has a start line");
    for (i, &b) in head.iter().enumerate().skip(start) {
        if b == b'\n' {
            assert_eq!(head[i - 1], b'\r', "accepted head has a bare LF at {i}");
            if let Some(&next) = head.get(i + 1) {
                assert!(
                    next != b' ' && next != b'\t',
                    "accepted head has obs-fold at {}",
                    i + 1
                );
            }
        }
    }
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "accepted head does not end in CRLF CRLF"
    );
}

/// Values of every header named `name`, case-insensitively.
pub fn values<'b>(headers: &[Header], buf: &'b [u8], name: &[u8]) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|h| h.name.of(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.of(buf))
        .collect()
}

pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The non-empty elements of comma-separated header values, trimmed.
pub fn list_elements<'b>(values: &[&'b [u8]]) -> Vec<&'b [u8]> {
    values
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
        .collect()
}

/// Every element of every Content-Length value (empty ones included), parsed as 1*DIGIT.
pub fn content_lengths(values: &[&[u8]]) -> Vec<Option<u64>> {
    values
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|e| {
            let e = trim_ows(e);
            if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(e).ok()?.parse::<u64>().ok()
        })
        .collect()
}

/// Prefix lengths to re-parse: just short of the end, half, and one chosen by the input.
pub fn prefix_lengths(n: usize, pick: u8) -> Vec<usize> {
    let mut v = vec![
        n.saturating_sub(1),
        n.saturating_sub(2),
        n / 2,
        n * pick as usize / 256,
    ];
    v.sort_unstable();
    v.dedup();
    v.retain(|&p| p < n);
    v
}

/// The connection tokens, folded independently of the codec.
pub fn expected_connection(headers: &[Header], buf: &[u8]) -> ringway_core::http1::ConnectionInfo {
    let tokens = list_elements(&values(headers, buf, b"connection"));
    let has = |t: &[u8]| tokens.iter().any(|x| x.eq_ignore_ascii_case(t));
    ringway_core::http1::ConnectionInfo {
        close: has(b"close"),
        keep_alive: has(b"keep-alive"),
        upgrade: has(b"upgrade") && !values(headers, buf, b"upgrade").is_empty(),
        lists_other: tokens.iter().any(|x| {
            !(x.eq_ignore_ascii_case(b"close")
                || x.eq_ignore_ascii_case(b"keep-alive")
                || x.eq_ignore_ascii_case(b"upgrade"))
        }),
    }
}

/// Keep-alive per RFC 9112 9.3: HTTP/1.1 unless `close`, HTTP/1.0 only with `keep-alive`.
pub fn expected_keep_alive(
    version: ringway_core::http1::Version,
    c: ringway_core::http1::ConnectionInfo,
) -> bool {
    match version {
        ringway_core::http1::Version::Http11 => !c.close,
        ringway_core::http1::Version::Http10 => c.keep_alive && !c.close,
    }
}
