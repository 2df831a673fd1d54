//! `parse_response` on arbitrary bytes: never panics, and an accepted head keeps the codec's
//! promises (spans inside the head, strict line ends, framing per RFC 9112 6.3 for every
//! status and for HEAD, deterministic reuse of a `ResponseHead`, incremental parsing agreeing
//! with one-shot parsing).
//!
//! The whole input is parsed with the default `Limits`; when it is at least 4 bytes long, the
//! rest after its first 4 bytes is parsed again with small limits derived from those bytes.

#![no_main]

mod common;

use common::*;
use libfuzzer_sys::fuzz_target;
use ringway_core::http1::{
    parse_response, BodyFraming, ConnectionInfo, Header, Limits, ResponseHead, Span, Version,
};

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::default(), data.last().copied().unwrap_or(0));
    if let [a, b, c, d, rest @ ..] = data {
        check(rest, &derived_limits([*a, *b, *c, *d]), *a ^ *d);
    }
});

#[derive(Debug, PartialEq)]
struct View {
    version: Version,
    status: u16,
    reason: Span,
    headers: Vec<Header>,
    content_length: Option<u64>,
    framing: BodyFraming,
    framing_for_head: BodyFraming,
    connection: ConnectionInfo,
    keep_alive: bool,
    head_len: usize,
}

fn view(h: &ResponseHead) -> View {
    View {
        version: h.version(),
        status: h.status(),
        reason: h.reason_span(),
        headers: h.headers().to_vec(),
        content_length: h.content_length(),
        framing: h.framing(false),
        framing_for_head: h.framing(true),
        connection: h.connection(),
        keep_alive: h.keep_alive(),
        head_len: h.head_len(),
    }
}

fn dirty_head() -> ResponseHead {
    const STOCK: &[u8] = b"HTTP/1.0 299 Stock Reason\r\nContent-Length: 12345\r\n\
        Connection: keep-alive, upgrade, x-foo\r\nUpgrade: h2c\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
    let mut head = ResponseHead::new();
    let r = parse_response(STOCK, &Limits::default(), &mut head);
    assert_eq!(r, Ok(Some(STOCK.len())), "the stock response parses");
    head
}

fn check(buf: &[u8], limits: &Limits, pick: u8) {
    let mut head = ResponseHead::new();
    let result = parse_response(buf, limits, &mut head);

    let mut dirty = dirty_head();
    let again = parse_response(buf, limits, &mut dirty);
    assert_eq!(result, again, "a reused head changes the result");
    let first = match result {
        Ok(Some(_)) => Some(view(&head)),
        _ => None,
    };
    let same = parse_response(buf, limits, &mut head);
    assert_eq!(result, same, "parsing twice changes the result");

    let Ok(Some(n)) = result else {
        return;
    };
    let first = first.unwrap();
    assert_eq!(first, view(&dirty), "a reused head holds different values");
    assert_eq!(first, view(&head), "a re-parse holds different values");
    check_accepted(buf, n, limits, &head);

    let mut cut = ResponseHead::new();
    assert_eq!(parse_response(&buf[..n], limits, &mut cut), Ok(Some(n)));
    assert_eq!(first, view(&cut), "bytes after the head changed the head");

    for p in prefix_lengths(n, pick) {
        let r = parse_response(&buf[..p], limits, &mut cut);
        assert!(
            r == Ok(None),
            "prefix of {p} of a valid {n}-byte head gave {r:?}, expected Ok(None)"
        );
    }
}

fn check_accepted(buf: &[u8], n: usize, limits: &Limits, head: &ResponseHead) {
    assert!(n <= buf.len(), "head_len {n} > buffer {}", buf.len());
    assert!(n <= limits.max_head_bytes, "head_len {n} > max_head_bytes");
    assert_eq!(head.head_len(), n);
    assert_strict_head(&buf[..n]);
    assert_span_within("reason", head.reason_span(), n);
    assert_headers_within(head.headers(), buf, n);
    assert!(head.headers().len() <= limits.max_headers.min(ringway_core::http1::MAX_HEADERS_CAP));
    let reason = head.reason_span().of(buf);
    assert!(
        !reason.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
        "reason holds CR, LF or NUL: {reason:?}"
    );
    let status = head.status();
    assert!(status <= 999, "status {status}");

    let connection = expected_connection(head.headers(), buf);
    assert_eq!(
        head.connection(),
        connection,
        "Connection tokens folded wrongly"
    );
    assert_eq!(
        head.keep_alive(),
        expected_keep_alive(head.version(), connection)
    );

    let te = values(head.headers(), buf, b"transfer-encoding");
    let cl = values(head.headers(), buf, b"content-length");
    let lengths = content_lengths(&cl);
    if !te.is_empty() {
        assert!(
            cl.is_empty(),
            "Content-Length with Transfer-Encoding accepted"
        );
    }
    // Every Content-Length element is valid and they agree.
    match head.content_length() {
        None => assert!(cl.is_empty(), "Content-Length {cl:?} not reported"),
        Some(k) => {
            assert!(!lengths.is_empty(), "content_length without the header");
            for v in &lengths {
                assert_eq!(*v, Some(k), "a Content-Length value is not {k}: {cl:?}");
            }
        }
    }
    let codings = list_elements(&te);
    let chunked = codings
        .iter()
        .filter(|c| c.eq_ignore_ascii_case(b"chunked"))
        .count();
    assert!(chunked <= 1, "chunked applied twice accepted: {codings:?}");
    let last_chunked = codings
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));

    assert_eq!(
        head.framing(true),
        BodyFraming::None,
        "a response to HEAD has a body"
    );
    let framing = head.framing(false);
    if (100..200).contains(&status) || status == 204 || status == 304 {
        assert_eq!(framing, BodyFraming::None, "status {status} has a body");
        return;
    }
    let expected = if !te.is_empty() {
        if last_chunked {
            BodyFraming::Chunked
        } else {
            BodyFraming::Close
        }
    } else {
        match head.content_length() {
            Some(0) => BodyFraming::None,
            Some(k) => BodyFraming::Length(k),
            None => BodyFraming::Close,
        }
    };
    assert_eq!(framing, expected, "status {status}, TE {te:?}, CL {cl:?}");
}
