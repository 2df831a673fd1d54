//! `parse_request` on arbitrary bytes: never panics, and an accepted head keeps the codec's
//! promises (spans inside the head, strict line ends, RFC 9112 framing, Host for HTTP/1.1,
//! deterministic reuse of a `RequestHead`, incremental parsing agreeing with one-shot parsing).
//!
//! The whole input is parsed with the default `Limits`; when it is at least 4 bytes long, the
//! rest after its first 4 bytes is parsed again with small limits derived from those bytes.

#![no_main]

mod common;

use common::*;
use libfuzzer_sys::fuzz_target;
use ringway_core::http1::{
    parse_request, BodyFraming, ConnectionInfo, Header, Limits, RequestHead, Span, Version,
};

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::default(), data.last().copied().unwrap_or(0));
    if let [a, b, c, d, rest @ ..] = data {
        check(rest, &derived_limits([*a, *b, *c, *d]), *a ^ *d);
    }
});

/// Everything observable about a parsed head, to compare parses.
#[derive(Debug, PartialEq)]
struct View {
    method: Span,
    target: Span,
    path_span: Span,
    path: Vec<u8>,
    query: Span,
    absolute_form: bool,
    version: Version,
    headers: Vec<Header>,
    host: Option<Span>,
    framing: BodyFraming,
    connection: ConnectionInfo,
    keep_alive: bool,
    expect_continue: bool,
    head_len: usize,
}

fn view(h: &RequestHead, buf: &[u8]) -> View {
    View {
        method: h.method_span(),
        target: h.target_span(),
        path_span: h.path_span(),
        path: h.path(buf).to_vec(),
        query: h.query_span(),
        absolute_form: h.is_absolute_form(),
        version: h.version(),
        headers: h.headers().to_vec(),
        host: h.host_span(),
        framing: h.framing(),
        connection: h.connection(),
        keep_alive: h.keep_alive(),
        expect_continue: h.expect_continue(),
        head_len: h.head_len(),
    }
}

/// A head already used for a different request with everything set, to catch state that a
/// reused head fails to reset.
fn dirty_head() -> RequestHead {
    const STOCK: &[u8] = b"POST http://user@stock.example:8080/a/b?c=d HTTP/1.1\r\n\
        Host: stock.example\r\nTransfer-Encoding: chunked\r\n\
        Connection: close, upgrade, x-foo\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\
        X-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n";
    let mut head = RequestHead::new();
    let r = parse_request(STOCK, &Limits::default(), &mut head);
    assert_eq!(r, Ok(Some(STOCK.len())), "the stock request parses");
    head
}

fn check(buf: &[u8], limits: &Limits, pick: u8) {
    let mut head = RequestHead::new();
    let result = parse_request(buf, limits, &mut head);

    // Same bytes, a head reused from another request and the same head again: same result.
    let mut dirty = dirty_head();
    let again = parse_request(buf, limits, &mut dirty);
    assert_eq!(result, again, "a reused head changes the result");
    let first = match result {
        Ok(Some(_)) => Some(view(&head, buf)),
        _ => None,
    };
    let same = parse_request(buf, limits, &mut head);
    assert_eq!(result, same, "parsing twice changes the result");

    let Ok(Some(n)) = result else {
        return;
    };
    let first = first.unwrap();
    assert_eq!(
        first,
        view(&dirty, buf),
        "a reused head holds different spans"
    );
    assert_eq!(first, view(&head, buf), "a re-parse holds different spans");
    check_accepted(buf, n, limits, &head);

    // Bytes after the head are not looked at.
    let mut cut = RequestHead::new();
    assert_eq!(parse_request(&buf[..n], limits, &mut cut), Ok(Some(n)));
    assert_eq!(
        first,
        view(&cut, &buf[..n]),
        "bytes after the head changed the head"
    );

    // A head that arrives in pieces: a prefix is incomplete, never a (shorter) head and never
    // an error, since the whole head is valid.
    for p in prefix_lengths(n, pick) {
        let r = parse_request(&buf[..p], limits, &mut cut);
        assert!(
            r == Ok(None),
            "prefix of {p} of a valid {n}-byte head gave {r:?}, expected Ok(None)"
        );
    }
}

fn check_accepted(buf: &[u8], n: usize, limits: &Limits, head: &RequestHead) {
    assert!(n <= buf.len(), "head_len {n} > buffer {}", buf.len());
    assert!(n <= limits.max_head_bytes, "head_len {n} > max_head_bytes");
    assert_eq!(head.head_len(), n);
    let bytes = &buf[..n];
    assert_strict_head(bytes);

    assert_span_within("method", head.method_span(), n);
    assert_span_within("target", head.target_span(), n);
    assert_span_within("path", head.path_span(), n);
    assert_span_within("query", head.query_span(), n);
    if let Some(host) = head.host_span() {
        assert_span_within("host", host, n);
    }
    assert_headers_within(head.headers(), buf, n);
    assert!(head.headers().len() <= limits.max_headers.min(ringway_core::http1::MAX_HEADERS_CAP));

    let method = head.method(buf);
    let target = head.target(buf);
    assert!(!method.is_empty(), "empty method");
    assert!(!target.is_empty(), "empty target");
    assert!(
        target.len() <= limits.max_uri_bytes,
        "target longer than max_uri_bytes"
    );
    for s in [method, target] {
        assert!(
            !s.iter()
                .any(|&b| b.is_ascii_whitespace() || b.is_ascii_control()),
            "whitespace or control byte in {s:?}"
        );
    }
    let t = head.target_span();
    for (what, s) in [("path", head.path_span()), ("query", head.query_span())] {
        assert!(
            t.start <= s.start && s.end <= t.end,
            "{what} {s:?} outside target {t:?}"
        );
    }
    if !head.path_span().is_empty() || !head.is_absolute_form() {
        assert_eq!(head.path(buf), head.path_span().of(buf));
    } else {
        assert_eq!(head.path(buf), b"/");
    }

    // Host: required in HTTP/1.1, never repeated, the authority of an absolute-form target.
    let hosts = values(head.headers(), buf, b"host");
    assert!(hosts.len() <= 1, "repeated Host accepted");
    if head.version() == Version::Http11 {
        assert_eq!(hosts.len(), 1, "HTTP/1.1 request without Host accepted");
        assert!(head.host(buf).is_some(), "HTTP/1.1 request without host");
    }
    if head.is_absolute_form() {
        let h = head.host_span().expect("absolute-form has a host");
        assert!(
            t.start <= h.start && h.end <= t.end,
            "authority outside the target"
        );
    } else {
        assert_eq!(
            head.host(buf),
            hosts.first().copied(),
            "host is not the Host header"
        );
    }

    // Framing (RFC 9112 6.1-6.3), strict: TE only as a single chunked, never with CL.
    let te = values(head.headers(), buf, b"transfer-encoding");
    let cl = values(head.headers(), buf, b"content-length");
    let framing = head.framing();
    assert!(framing != BodyFraming::Close, "request framing is Close");
    if !te.is_empty() {
        assert_eq!(
            framing,
            BodyFraming::Chunked,
            "Transfer-Encoding but not chunked framing"
        );
        assert!(
            cl.is_empty(),
            "Content-Length with Transfer-Encoding accepted"
        );
        assert_eq!(
            head.version(),
            Version::Http11,
            "Transfer-Encoding in HTTP/1.0 accepted"
        );
        let codings = list_elements(&te);
        assert!(
            codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"),
            "Transfer-Encoding {codings:?} accepted as chunked"
        );
    }
    match framing {
        BodyFraming::Chunked => {
            assert!(!te.is_empty(), "chunked framing without Transfer-Encoding")
        }
        BodyFraming::Length(k) => {
            assert!(k != 0, "Length(0) framing");
            assert!(!cl.is_empty(), "Length framing without Content-Length");
            for v in content_lengths(&cl) {
                assert_eq!(v, Some(k), "a Content-Length value is not {k}: {cl:?}");
            }
            if limits.max_body_bytes != 0 {
                assert!(
                    k <= limits.max_body_bytes,
                    "body over max_body_bytes accepted"
                );
            }
        }
        BodyFraming::None => {
            for v in content_lengths(&cl) {
                assert_eq!(v, Some(0), "no body but Content-Length {cl:?}");
            }
        }
        BodyFraming::Close => unreachable!(),
    }
    // Connection tokens, keep-alive and Expect.
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
    let expect = values(head.headers(), buf, b"expect")
        .iter()
        .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
    assert_eq!(
        head.expect_continue(),
        expect && head.version() == Version::Http11,
        "expect_continue"
    );
}
