use super::*;
use crate::http1::CodecErrorKind;

fn req(raw: &[u8]) -> Result<(RequestHead, usize), CodecError> {
    let mut head = RequestHead::new();
    match parse_request(raw, &Limits::default(), &mut head)? {
        Some(n) => Ok((head, n)),
        None => panic!("incomplete: {:?}", String::from_utf8_lossy(raw)),
    }
}

fn req_err(raw: &[u8]) -> CodecErrorKind {
    let mut head = RequestHead::new();
    match parse_request(raw, &Limits::default(), &mut head) {
        Err(e) => e.kind(),
        Ok(r) => panic!("accepted ({r:?}): {:?}", String::from_utf8_lossy(raw)),
    }
}

fn res(raw: &[u8]) -> ResponseHead {
    let mut head = ResponseHead::new();
    match parse_response(raw, &Limits::default(), &mut head) {
        Ok(Some(n)) => {
            assert_eq!(n, head.head_len());
            head
        }
        other => panic!("{other:?}: {:?}", String::from_utf8_lossy(raw)),
    }
}

fn res_err(raw: &[u8]) -> CodecErrorKind {
    let mut head = ResponseHead::new();
    match parse_response(raw, &Limits::default(), &mut head) {
        Err(e) => e.kind(),
        Ok(r) => panic!("accepted ({r:?}): {:?}", String::from_utf8_lossy(raw)),
    }
}

#[test]
fn simple_get() {
    let raw = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept:  */*  \r\n\r\nrest";
    let (h, n) = req(raw).unwrap();
    assert_eq!(n, raw.len() - 4);
    assert_eq!(h.head_len(), n);
    assert_eq!(h.method(raw), b"GET");
    assert_eq!(h.target(raw), b"/a/b?x=1&y");
    assert_eq!(h.path(raw), b"/a/b");
    assert_eq!(h.query(raw), b"x=1&y");
    assert_eq!(h.version(), Version::Http11);
    assert_eq!(h.host(raw), Some(&b"example.com"[..]));
    assert_eq!(h.header(raw, b"ACCEPT"), Some(&b"*/*"[..]));
    assert_eq!(h.header(raw, b"missing"), None);
    assert_eq!(h.framing(), BodyFraming::None);
    assert!(h.keep_alive());
    assert!(!h.expect_continue());
    assert!(h.is_idempotent(raw));
    assert!(!h.is_head(raw));
    assert_eq!(h.headers().len(), 2);
    assert_eq!(h.headers()[0].line.of(raw), b"Host: example.com\r\n");
    assert_eq!(h.headers()[1].line.of(raw), b"Accept:  */*  \r\n");
    assert_eq!(h.headers()[1].name.of(raw), b"Accept");
}

#[test]
fn header_lines_cover_the_head() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Sp: \t \r\nX: y\r\n\r\n";
    let (h, n) = req(raw).unwrap();
    let first = h.headers()[0].line.start as usize;
    assert_eq!(&raw[..first], b"GET / HTTP/1.1\r\n");
    let mut at = first;
    for header in h.headers() {
        assert_eq!(header.line.start as usize, at);
        at = header.line.end as usize;
        assert!(header.line.of(raw).ends_with(b"\r\n"));
    }
    assert_eq!(&raw[at..n], b"\r\n");
    assert_eq!(h.header(raw, b"x-empty"), Some(&b""[..]));
    assert_eq!(h.header(raw, b"x-sp"), Some(&b""[..]));
}

#[test]
fn post_with_length_and_head() {
    let raw = b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let (h, _) = req(raw).unwrap();
    assert_eq!(h.framing(), BodyFraming::Length(5));
    assert!(!h.is_idempotent(raw));

    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(req(raw).unwrap().0.framing(), BodyFraming::None);

    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(req(raw).unwrap().0.framing(), BodyFraming::Chunked);

    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n";
    assert_eq!(req(raw).unwrap().0.framing(), BodyFraming::Chunked);

    let raw = b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert!(h.is_head(raw));
    assert!(h.is_idempotent(raw));
}

#[test]
fn idempotent_methods() {
    for (m, want) in [
        ("GET", true),
        ("HEAD", true),
        ("PUT", true),
        ("DELETE", true),
        ("OPTIONS", true),
        ("TRACE", true),
        ("POST", false),
        ("PATCH", false),
        ("get", false),
    ] {
        let raw = format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n");
        let (h, _) = req(raw.as_bytes()).unwrap();
        assert_eq!(h.is_idempotent(raw.as_bytes()), want, "{m}");
    }
}

#[test]
fn absolute_form_targets() {
    let raw = b"GET http://user@Origin.example:8080/p/q?z=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert!(h.is_absolute_form());
    assert_eq!(h.host(raw), Some(&b"Origin.example:8080"[..]));
    assert_eq!(h.path(raw), b"/p/q");
    assert_eq!(h.query(raw), b"z=1");

    let raw = b"GET https://h?q HTTP/1.1\r\nHost: h\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert_eq!(h.host(raw), Some(&b"h"[..]));
    assert_eq!(h.path(raw), b"/");
    assert_eq!(h.query(raw), b"q");

    let raw = b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert_eq!(h.path(raw), b"/");
    assert_eq!(h.query(raw), b"");
}

#[test]
fn other_target_forms() {
    let raw = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert_eq!(h.path(raw), b"*");
    assert_eq!(h.query(raw), b"");
    assert!(!h.is_absolute_form());

    let raw = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert_eq!(h.path(raw), b"a.example:443");
    assert_eq!(h.host(raw), Some(&b"a.example:443"[..]));

    let raw = b"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert_eq!(h.path(raw), b"/p");
    assert_eq!(h.query(raw), b"");
}

#[test]
fn keep_alive_semantics() {
    let cases: [(&[u8], bool); 6] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
    ];
    for (raw, want) in cases {
        let (h, _) = req(raw).unwrap();
        assert_eq!(h.keep_alive(), want, "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn http10_without_host_is_fine() {
    let raw = b"GET / HTTP/1.0\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert_eq!(h.version(), Version::Http10);
    assert_eq!(h.host(raw), None);
}

#[test]
fn connection_tokens() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: , close ,keep-alive,Upgrade, X-Foo\r\nUpgrade: websocket\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert_eq!(
        h.connection(),
        ConnectionInfo {
            close: true,
            keep_alive: true,
            upgrade: true,
            lists_other: true
        }
    );

    // `upgrade` without an Upgrade header is not an upgrade.
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n";
    let (h, _) = req(raw).unwrap();
    assert_eq!(h.connection(), ConnectionInfo::default());

    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n";
    assert!(!req(raw).unwrap().0.connection().upgrade);

    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: te\r\n\r\n";
    let c = req(raw).unwrap().0.connection();
    assert!(c.lists_other && !c.close && !c.keep_alive);
}

#[test]
fn expect_continue() {
    let raw = b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
    assert!(req(raw).unwrap().0.expect_continue());
    let raw = b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n";
    assert!(!req(raw).unwrap().0.expect_continue());
    let raw = b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
    assert!(!req(raw).unwrap().0.expect_continue());
}

#[test]
fn leading_empty_lines_are_skipped() {
    let raw = b"\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    let (h, n) = req(raw).unwrap();
    assert_eq!(n, raw.len());
    assert_eq!(h.method(raw), b"GET");
    assert_eq!(h.path(raw), b"/x");
}

#[test]
fn incomplete_heads() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut head = RequestHead::new();
    for i in 0..raw.len() {
        assert_eq!(
            parse_request(&raw[..i], &Limits::default(), &mut head),
            Ok(None),
            "{i}"
        );
    }
    assert_eq!(
        parse_request(raw, &Limits::default(), &mut head),
        Ok(Some(raw.len()))
    );
}

#[test]
fn head_is_reused_without_growing() {
    let mut head = RequestHead::new();
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    parse_request(raw, &Limits::default(), &mut head).unwrap();
    let cap = head.headers.capacity();
    let raw2 = b"GET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
    parse_request(raw2, &Limits::default(), &mut head).unwrap();
    assert_eq!(head.headers().len(), 1);
    assert_eq!(head.headers.capacity(), cap);
    assert_eq!(head.host(raw2), Some(&b"b"[..]));
}

// --- the rules: each gets its own status ---

#[test]
fn malformed_request_lines() {
    for raw in [
        &b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let e = req_err(raw);
        assert_eq!(e.status(), 400, "{e:?} {}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn invalid_header_name_and_value() {
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"),
        CodecErrorKind::InvalidHeaderName
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 1\r\n\r\n"),
        CodecErrorKind::InvalidHeaderName
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"),
        CodecErrorKind::InvalidHeaderName
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"),
        CodecErrorKind::InvalidHeaderValue
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"),
        CodecErrorKind::InvalidHeaderName
    );
}

#[test]
fn obs_fold_is_rejected() {
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n"),
        CodecErrorKind::ObsFold
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"),
        CodecErrorKind::ObsFold
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
        CodecErrorKind::ObsFold
    );
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
        CodecErrorKind::ObsFold
    );
}

#[test]
fn bare_cr_is_rejected() {
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n",
        b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(
            req_err(raw),
            CodecErrorKind::BareCr,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"),
        CodecErrorKind::BareCr
    );
}

#[test]
fn bare_lf_is_rejected() {
    for raw in [
        &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX:\n\r\n",
    ] {
        assert_eq!(
            req_err(raw),
            CodecErrorKind::BareLf,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\nX: a\r\n\r\n"),
        CodecErrorKind::BareLf
    );
}

#[test]
fn nul_is_rejected() {
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"[..],
        b"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G\0T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n",
        b"GET / HTTP/1.1\0\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(
            req_err(raw),
            CodecErrorKind::Nul,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\r\nX: \0\r\n\r\n"),
        CodecErrorKind::Nul
    );
}

#[test]
fn versions() {
    assert_eq!(
        req_err(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
        CodecErrorKind::UnsupportedVersion
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
        CodecErrorKind::UnsupportedVersion
    );
    assert_eq!(req_err(b"GET / HTTP/2.0\r\n").status(), 505);
    assert_eq!(
        req_err(b"GET / HTTX/1.1\r\nHost: a\r\n\r\n"),
        CodecErrorKind::InvalidVersion
    );
    assert_eq!(req_err(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n").status(), 400);
    assert_eq!(req_err(b"GET / http/1.1\r\nHost: a\r\n\r\n").status(), 400);
    assert_eq!(
        res_err(b"HTTP/2.0 200 OK\r\n\r\n"),
        CodecErrorKind::UnsupportedVersion
    );
    assert_eq!(
        res_err(b"HTTQ/1.1 200 OK\r\n\r\n"),
        CodecErrorKind::InvalidVersion
    );
}

#[test]
fn host_rules() {
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\n\r\n"),
        CodecErrorKind::MissingHost
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nX: y\r\n\r\n"),
        CodecErrorKind::MissingHost
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
        CodecErrorKind::RepeatedHost
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
        CodecErrorKind::RepeatedHost
    );
    assert_eq!(
        req_err(b"GET http://a/ HTTP/1.1\r\n\r\n"),
        CodecErrorKind::MissingHost
    );
    for bad in ["a b", "a/b", "a@b", "a\"b", "h\u{e9}"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(
            req_err(raw.as_bytes()),
            CodecErrorKind::InvalidHost,
            "{bad:?}"
        );
    }
    for good in [
        "a.example:8080",
        "[::1]:80",
        "xn--bcher-kva.example",
        "127.0.0.1",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
        assert_eq!(
            req(raw.as_bytes()).unwrap().0.host(raw.as_bytes()),
            Some(good.as_bytes())
        );
    }
    // An empty Host is allowed (RFC 9110 7.2).
    let raw = b"GET / HTTP/1.1\r\nHost:\r\n\r\n";
    assert_eq!(req(raw).unwrap().0.host(raw), Some(&b""[..]));
}

#[test]
fn content_length_with_transfer_encoding() {
    let e = req_err(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(e, CodecErrorKind::ContentLengthWithTransferEncoding);
    let e = req_err(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(e, CodecErrorKind::ContentLengthWithTransferEncoding);
}

#[test]
fn content_length_lists() {
    let ok = |raw: &[u8]| req(raw).unwrap().0.framing();
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n"),
        BodyFraming::Length(7)
    );
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7 , 7,7\r\n\r\n"),
        BodyFraming::Length(7)
    );
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n"),
        BodyFraming::Length(7)
    );
    assert_eq!(
        req_err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"),
        CodecErrorKind::ConflictingContentLength
    );
    assert_eq!(
        req_err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 8\r\n\r\n"),
        CodecErrorKind::ConflictingContentLength
    );
}

#[test]
fn content_length_must_be_digits() {
    for v in [
        "+5",
        "-5",
        "5 5",
        "0x5",
        "5a",
        "",
        "5,",
        ",5",
        "18446744073709551616",
        "99999999999999999999999",
        "1.0",
    ] {
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(
            req_err(raw.as_bytes()),
            CodecErrorKind::InvalidContentLength,
            "{v:?}"
        );
    }
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n";
    assert_eq!(req(raw).unwrap().0.framing(), BodyFraming::Length(u64::MAX));
}

#[test]
fn transfer_encoding_rules() {
    let te = |v: &str| {
        format!("POST / HTTP/1.1\r\nHost: a\r\n{v}\r\n\r\n")
            .as_bytes()
            .to_vec()
    };
    let cases = [
        (
            "Transfer-Encoding: gzip",
            CodecErrorKind::UnknownTransferCoding,
        ),
        (
            "Transfer-Encoding: identity",
            CodecErrorKind::UnknownTransferCoding,
        ),
        (
            "Transfer-Encoding: foo",
            CodecErrorKind::UnknownTransferCoding,
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            CodecErrorKind::UnknownTransferCoding,
        ),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            CodecErrorKind::UnknownTransferCoding,
        ),
        (
            "Transfer-Encoding: chunked, gzip",
            CodecErrorKind::TransferEncodingNotChunked,
        ),
        (
            "Transfer-Encoding: chunked, chunked",
            CodecErrorKind::TransferEncodingNotChunked,
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            CodecErrorKind::TransferEncodingNotChunked,
        ),
        (
            "Transfer-Encoding: ",
            CodecErrorKind::TransferEncodingNotChunked,
        ),
        (
            "Transfer-Encoding: ,",
            CodecErrorKind::TransferEncodingNotChunked,
        ),
        (
            "Transfer-Encoding: chunked;q=1",
            CodecErrorKind::UnknownTransferCoding,
        ),
    ];
    for (header, want) in cases {
        let e = req_err(&te(header));
        assert_eq!(e, want, "{header:?}");
    }
    assert_eq!(req_err(&te("Transfer-Encoding: gzip")).status(), 501);
    assert_eq!(
        req_err(&te("Transfer-Encoding: chunked, gzip")).status(),
        400
    );
    // Split across headers, still exactly one chunked at the end.
    let raw = te("Transfer-Encoding: \r\nTransfer-Encoding: chunked");
    assert_eq!(req(&raw).unwrap().0.framing(), BodyFraming::Chunked);
}

#[test]
fn transfer_encoding_in_http10() {
    assert_eq!(
        req_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        CodecErrorKind::TransferEncodingInHttp10
    );
}

// --- limits ---

fn limits() -> Limits {
    Limits {
        max_head_bytes: 200,
        max_headers: 4,
        max_uri_bytes: 40,
        max_body_bytes: 1000,
    }
}

fn with(l: &Limits, raw: &[u8]) -> Result<Option<usize>, CodecError> {
    parse_request(raw, l, &mut RequestHead::new())
}

#[test]
fn head_size_limit() {
    let l = limits();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(200)
    );
    let e = with(&l, big.as_bytes()).unwrap_err();
    assert_eq!(e.kind(), CodecErrorKind::HeadersTooLarge);
    assert_eq!(e.status(), 431);
    // Already too large while incomplete.
    let e = with(&l, &big.as_bytes()[..201]).unwrap_err();
    assert_eq!(e.kind(), CodecErrorKind::HeadersTooLarge);
    assert_eq!(with(&l, &big.as_bytes()[..200]), Ok(None));
    // Exactly at the limit is fine, and a body after it is not counted.
    let exact = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(200 - 32)
    );
    assert_eq!(exact.len(), 200);
    let mut with_body = exact.clone().into_bytes();
    with_body.extend_from_slice(&[b'z'; 500]);
    assert_eq!(with(&l, &with_body), Ok(Some(200)));
}

#[test]
fn header_count_limit() {
    let l = limits();
    let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(with(&l, four).unwrap().is_some());
    let five = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    let e = with(&l, five).unwrap_err();
    assert_eq!(e.kind(), CodecErrorKind::TooManyHeaders);
    assert_eq!(e.status(), 431);
}

#[test]
fn uri_limit() {
    let l = limits();
    let ok = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(39));
    assert!(with(&l, ok.as_bytes()).unwrap().is_some());
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(40));
    let e = with(&l, long.as_bytes()).unwrap_err();
    assert_eq!(e.kind(), CodecErrorKind::UriTooLong);
    assert_eq!(e.status(), 414);
    // Request line incomplete but the target already too long.
    let partial = format!("GET /{}", "a".repeat(40));
    assert_eq!(
        with(&l, partial.as_bytes()).unwrap_err().kind(),
        CodecErrorKind::UriTooLong
    );
    let partial = format!("GET /{}", "a".repeat(39));
    assert_eq!(with(&l, partial.as_bytes()), Ok(None));
    // Request line complete, headers not yet.
    let partial = format!("GET /{} HTTP/1.1\r\nHo", "a".repeat(40));
    assert_eq!(
        with(&l, partial.as_bytes()).unwrap_err().kind(),
        CodecErrorKind::UriTooLong
    );
}

#[test]
fn body_limit() {
    let l = limits();
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n";
    let e = with(&l, raw).unwrap_err();
    assert_eq!(e.kind(), CodecErrorKind::BodyTooLarge);
    assert_eq!(e.status(), 413);
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n";
    assert!(with(&l, raw).unwrap().is_some());
    let unlimited = Limits {
        max_body_bytes: 0,
        ..l
    };
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n";
    assert!(with(&unlimited, raw).unwrap().is_some());
}

// --- responses ---

#[test]
fn response_basics() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A: b\r\n\r\nhello world!";
    let h = res(raw);
    assert_eq!(h.status(), 200);
    assert_eq!(h.version(), Version::Http11);
    assert_eq!(h.reason_span().of(raw), b"OK");
    assert_eq!(h.header(raw, b"x-a"), Some(&b"b"[..]));
    assert_eq!(h.framing(false), BodyFraming::Length(12));
    assert_eq!(h.head_len(), raw.len() - 12);
    assert!(h.keep_alive());
    assert_eq!(h.headers()[1].line.of(raw), b"X-A: b\r\n");

    let raw = b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n";
    let h = res(raw);
    assert_eq!(h.status(), 404);
    assert!(h.reason_span().is_empty());
    assert_eq!(h.reason_span().of(raw), b"");
    assert_eq!(h.framing(false), BodyFraming::None);

    let raw = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
    assert_eq!(res(raw).reason_span().of(raw), b"Service Unavailable");
}

#[test]
fn response_framing() {
    let chunked = res(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(chunked.framing(false), BodyFraming::Chunked);
    assert_eq!(chunked.framing(true), BodyFraming::None);

    let gz_chunked = res(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(gz_chunked.framing(false), BodyFraming::Chunked);

    let not_chunked = res(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_eq!(not_chunked.framing(false), BodyFraming::Close);
    let not_last = res(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    assert_eq!(not_last.framing(false), BodyFraming::Close);

    let close = res(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(close.framing(false), BodyFraming::Close);

    let cl = res(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    assert_eq!(cl.framing(false), BodyFraming::Length(10));
    assert_eq!(cl.framing(true), BodyFraming::None);
    assert_eq!(cl.content_length(), Some(10));

    for status in [100, 101, 103, 204, 304] {
        let raw = format!("HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(
            res(raw.as_bytes()).framing(false),
            BodyFraming::None,
            "{status}"
        );
    }
}

#[test]
fn response_errors() {
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        CodecErrorKind::ContentLengthWithTransferEncoding
    );
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        CodecErrorKind::ConflictingContentLength
    );
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
        CodecErrorKind::InvalidContentLength
    );
    assert_eq!(
        res_err(b"HTTP/1.1 20 OK\r\n\r\n"),
        CodecErrorKind::InvalidStatus
    );
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        CodecErrorKind::TransferEncodingNotChunked
    );
}

#[test]
fn response_keep_alive() {
    assert!(!res(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive());
    assert!(!res(b"HTTP/1.0 200 OK\r\n\r\n").keep_alive());
    assert!(res(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keep_alive());
    let up = res(b"HTTP/1.1 101 Switching\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert!(up.connection().upgrade);
}

#[test]
fn response_limits() {
    let l = Limits {
        max_head_bytes: 64,
        ..Limits::default()
    };
    let mut head = ResponseHead::new();
    let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "v".repeat(64));
    assert_eq!(
        parse_response(big.as_bytes(), &l, &mut head).map_err(|e| e.kind()),
        Err(CodecErrorKind::HeadersTooLarge)
    );
    assert_eq!(
        parse_response(&big.as_bytes()[..40], &l, &mut head),
        Ok(None)
    );
}

mod props {
    use super::*;
    use crate::http1::{encode_chunk, encode_last_chunk, ChunkedDecoder};
    use proptest::prelude::*;

    fn header_name() -> impl Strategy<Value = String> {
        "X-[A-Za-z0-9-]{1,12}"
    }

    fn header_value() -> impl Strategy<Value = String> {
        "[ -~]{0,30}".prop_map(|s| s.trim().to_string())
    }

    /// A valid request with random headers and a chunked or Content-Length body; returns the
    /// bytes, where the body starts, and the payload.
    fn request() -> impl Strategy<Value = (Vec<u8>, usize, Vec<u8>, bool)> {
        (
            prop::sample::select(vec!["GET", "POST", "PUT", "PATCH"]),
            "/[a-z0-9/]{0,20}(\\?[a-z0-9=&]{0,10})?",
            prop::collection::vec((header_name(), header_value()), 0..12),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..6),
            any::<bool>(),
        )
            .prop_map(|(method, target, headers, pieces, chunked)| {
                let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: h.example\r\n");
                for (n, v) in &headers {
                    raw.push_str(&format!("{n}: {v}\r\n"));
                }
                let payload: Vec<u8> = pieces.concat();
                if chunked {
                    raw.push_str("Transfer-Encoding: chunked\r\n\r\n");
                } else {
                    raw.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
                }
                let mut raw = raw.into_bytes();
                let body_at = raw.len();
                if chunked {
                    for p in &pieces {
                        encode_chunk(p.len(), &mut raw);
                        raw.extend_from_slice(p);
                        raw.extend_from_slice(b"\r\n");
                    }
                    encode_last_chunk(&mut raw);
                } else {
                    raw.extend_from_slice(&payload);
                }
                (raw, body_at, payload, chunked)
            })
    }

    fn same_head(a: &RequestHead, b: &RequestHead) {
        assert_eq!(a.method, b.method);
        assert_eq!(a.target, b.target);
        assert_eq!(a.path, b.path);
        assert_eq!(a.query, b.query);
        assert_eq!(a.headers, b.headers);
        assert_eq!(a.host, b.host);
        assert_eq!(a.framing, b.framing);
        assert_eq!(a.connection, b.connection);
        assert_eq!(a.head_len, b.head_len);
    }

    proptest! {
        #[test]
        fn split_reads_give_the_same_head_and_body(
            (raw, body_at, payload, chunked) in request(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let limits = Limits::default();
            let mut whole = RequestHead::new();
            prop_assert_eq!(parse_request(&raw, &limits, &mut whole), Ok(Some(body_at)));
            if chunked {
                prop_assert_eq!(whole.framing(), BodyFraming::Chunked);
            }

            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(raw.len() + 1)).collect();
            cuts.push(raw.len());
            cuts.sort_unstable();

            // The head, as the connection's buffer grows read by read.
            let mut head = RequestHead::new();
            let mut parsed = None;
            for &end in &cuts {
                let r = parse_request(&raw[..end], &limits, &mut head);
                if end < body_at {
                    prop_assert_eq!(r, Ok(None));
                } else {
                    prop_assert_eq!(r, Ok(Some(body_at)));
                    parsed.get_or_insert(end);
                }
            }
            prop_assert!(parsed.is_some());
            same_head(&whole, &head);

            // The body, read by read, presenting what was not consumed again.
            if chunked {
                let mut dec = ChunkedDecoder::new();
                let mut out = Vec::new();
                let mut start = body_at;
                for &end in &cuts {
                    if end <= start {
                        continue;
                    }
                    start += dec.decode(&raw[start..end], &mut out, false).unwrap();
                }
                prop_assert!(dec.is_done());
                prop_assert_eq!(start, raw.len());
                prop_assert_eq!(dec.payload_bytes(), payload.len() as u64);
                prop_assert_eq!(out, payload);
            } else {
                prop_assert_eq!(&raw[body_at..], &payload[..]);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let small = Limits { max_head_bytes: 128, max_headers: 3, max_uri_bytes: 16, max_body_bytes: 10 };
            for l in [Limits::default(), small] {
                let _ = parse_request(&bytes, &l, &mut RequestHead::new());
                let _ = parse_response(&bytes, &l, &mut ResponseHead::new());
            }
            let _ = ChunkedDecoder::new().decode(&bytes, &mut Vec::new(), true);
        }

        #[test]
        fn mutated_messages_never_panic(
            (raw, body_at, _payload, _chunked) in request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let mut raw = raw;
            for (at, byte, op) in edits {
                let i = at.index(raw.len() + 1);
                match op {
                    0 if i < raw.len() => raw[i] = byte,
                    1 => raw.insert(i, byte),
                    _ if i < raw.len() => { raw.remove(i); }
                    _ => {}
                }
            }
            let limits = Limits::default();
            let mut head = RequestHead::new();
            if let Ok(Some(n)) = parse_request(&raw, &limits, &mut head) {
                // Whatever was accepted indexes the buffer sanely.
                prop_assert!(n <= raw.len());
                for h in head.headers() {
                    prop_assert!(h.line.of(&raw).ends_with(b"\r\n"));
                }
                let _ = head.path(&raw);
                let _ = head.host(&raw);
                let _ = ChunkedDecoder::new().decode(&raw[n..], &mut Vec::new(), true);
            }
            let mut as_response = b"HTTP/1.1 200 OK\r\n".to_vec();
            as_response.extend_from_slice(&raw[body_at.min(raw.len()).min(20)..]);
            let _ = parse_response(&as_response, &limits, &mut ResponseHead::new());
        }
    }
}

mod response_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn split_reads_give_the_same_response_head(
            status in 100u16..600,
            headers in prop::collection::vec(("X-[A-Za-z0-9-]{1,12}", "[!-~]([ -~]{0,20}[!-~])?"), 0..10),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut raw = format!("HTTP/1.1 {status} Some Reason\r\n");
            for (n, v) in &headers {
                raw.push_str(&format!("{n}: {v}\r\n"));
            }
            raw.push_str("\r\nbody");
            let raw = raw.as_bytes();
            let limits = Limits::default();
            let mut whole = ResponseHead::new();
            let n = parse_response(raw, &limits, &mut whole).unwrap().unwrap();
            prop_assert_eq!(n, raw.len() - 4);
            prop_assert_eq!(whole.status(), status);
            prop_assert_eq!(whole.reason_span().of(raw), b"Some Reason");
            prop_assert_eq!(whole.headers().len(), headers.len());
            for (h, (name, value)) in whole.headers().iter().zip(&headers) {
                prop_assert_eq!(h.name.of(raw), name.as_bytes());
                prop_assert_eq!(h.value.of(raw), value.as_bytes());
            }
            let at = cut.index(raw.len() + 1);
            let mut part = ResponseHead::new();
            let r = parse_response(&raw[..at], &limits, &mut part);
            if at < n {
                prop_assert_eq!(r, Ok(None));
            } else {
                prop_assert_eq!(r, Ok(Some(n)));
                prop_assert_eq!(part.headers(), whole.headers());
                prop_assert_eq!(part.framing(false), whole.framing(false));
            }
        }
    }
}

#[test]
fn content_length_spelling_decides_whether_it_is_forwarded_as_is() {
    let plain = |raw: &[u8]| req(raw).unwrap().0.content_length_is_plain();
    assert!(plain(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(plain(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
    ));
    assert!(plain(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(!plain(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"
    ));
    assert!(!plain(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 05\r\n\r\n"
    ));
    assert!(!plain(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
    ));
    let r = res(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n");
    assert!(!r.content_length_is_plain());
    assert_eq!(r.content_length(), Some(2));
}

#[test]
fn the_status_line_is_found_after_empty_lines() {
    let raw = b"\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    let r = res(raw);
    assert_eq!(r.status_line_start(), 4);
    assert_eq!(
        &raw[r.status_line_start()..r.status_line_start() + 12],
        b"HTTP/1.1 204"
    );
    assert_eq!(res(b"HTTP/1.1 200 OK\r\n\r\n").status_line_start(), 0);
}
