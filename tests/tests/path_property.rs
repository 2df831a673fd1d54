//! Whole-path property: random sequences of requests, some malformed, written to the real
//! binary in random pieces, checked against a strict recording origin and the client's view.
//!
//! For every generated case:
//!
//! - the proxy is still running and has not panicked;
//! - the origin received exactly the requests before the first one that ends the connection
//!   (an invalid request, or one with `Connection: close`, which is itself forwarded), in
//!   order, each with the method, target, body bytes, end-to-end header values and trailers
//!   that were sent, without the client's hop-by-hop headers, and framed so that it can be
//!   read only one way; nothing after that point reached it;
//! - the client got exactly one response per request up to and including that point, in
//!   order, each the origin's answer to its own request (HEAD without a body), the invalid
//!   request answered by the gateway with a 4xx or 5xx, and then the connection was closed.
//!
//! One proxy and one origin serve every case; each case has its own client connection and tags
//! its requests `X-Probe: c<case>r<index>`, so whatever reaches the origin can be attributed.
//! After a failing case the proxy is replaced, so that shrinking runs against a healthy one
//! whose pooled upstream connections carry nothing left over from the failure. The
//! run is deterministic: a fixed seed unless `PROPTEST_RNG_SEED` is set, [`CASES`] cases unless
//! `PROPTEST_CASES` is.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use ringway_tests::recording::{field_all, Outcome, Recorded, RecordingOrigin};
use ringway_tests::{forward_all_config, Client, Response, Ringway};

const CASES: u32 = 64;
const SEED: u64 = 0x5249_4e47_5741_5931;
/// A response slower than this on loopback is a hang, not a slow proxy.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the proxy may take to close a connection it must close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the proxy may take to finish or close what it sent the origin after a case.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a keep-alive connection is watched for stray bytes after the last response.
const QUIET_WAIT: Duration = Duration::from_millis(150);

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];
const HOSTS: [&str; 4] = ["ringway.test", "example.com:8080", "127.0.0.1", "a-b.c.d"];
/// Real-world names the proxy has no reason to touch (X-Request-Id is kept when sent).
const COMMON_NAMES: [&str; 10] = [
    "Accept",
    "User-Agent",
    "Cookie",
    "Content-Type",
    "Cache-Control",
    "Accept-Language",
    "If-None-Match",
    "Authorization",
    "Referer",
    "X-Request-Id",
];
const BAD_CONTENT_LENGTHS: [&str; 8] = ["+5", "5a", "0x5", "", "-1", "5 5", "5.0", "1_0"];
const BAD_CODINGS: [&str; 5] = [
    "gzip",
    "identity",
    "chunked, identity",
    "chunked, chunked",
    "gzip, chunked",
];
const BAD_CHUNK_SIZES: [&str; 10] = [
    "zz",
    "-1",
    "0x5",
    "+5",
    "5 5",
    " 5",
    "",
    "g",
    "fffffffffffffffffffff",
    "5\0",
];
const BAD_NAMES: [&str; 9] = [
    "Bad Name", "X-A ", "X(A)", "X\"A", "", "X/A", "X@A", "X[A]", "X=A",
];
/// Request lines with `{m}` and `{t}` for the method and target.
const BAD_LINES: [&str; 7] = [
    "{m}  {t} HTTP/1.1",
    "{m} {t} HTTP/1.1 x",
    "{m} {t}",
    "{m} {t} http/1.1",
    "{m}\t{t} HTTP/1.1",
    "{m} {t}x y HTTP/1.1",
    "{m} {t} HTTP/1.2",
];

/// One client connection's worth of requests and how they are written.
#[derive(Clone, Debug)]
struct Case {
    requests: Vec<Request>,
    /// All requests written before any response is read, or one at a time.
    pipelined: bool,
    /// Where the byte stream is cut into writes (a fraction of its length, in 65536ths) and
    /// the pause in milliseconds after each cut.
    cuts: Vec<(u16, u8)>,
}

#[derive(Clone, Debug)]
struct Request {
    method: &'static str,
    target: String,
    host: &'static str,
    fields: Vec<Field>,
    /// Where among `fields` the framing fields (and a flaw's field) go.
    framing_at: Index,
    body: Vec<u8>,
    framing: Framing,
    style: Style,
    /// What makes the request invalid, if anything.
    flaw: Option<Flaw>,
}

/// Spellings that must not change what a request means.
#[derive(Clone, Copy, Debug)]
struct Style {
    colon: &'static str,
    trailing: &'static str,
    /// How framing and connection-level field names are cased: as usual, lower or upper.
    name_case: u8,
}

#[derive(Clone, Debug)]
enum Framing {
    /// No framing field: only for an empty body.
    Absent,
    Length(Repeat),
    Chunked(Chunking),
}

/// How a Content-Length is written. The proxy documents accepting a list of identical values
/// and passing it on as one value.
#[derive(Clone, Copy, Debug)]
enum Repeat {
    Once,
    List,
    Twice,
}

#[derive(Clone, Debug)]
struct Chunking {
    /// Chunk boundaries as fractions of the body length, in 65536ths.
    cuts: Vec<u16>,
    /// 0: lowercase hex, 1: uppercase, 2: zero-padded.
    hex: u8,
    /// Extension for each chunk, cycled (0 is none).
    exts: Vec<u8>,
    trailers: Vec<(String, String)>,
    coding: &'static str,
}

#[derive(Clone, Debug)]
enum Field {
    /// An end-to-end field the origin must receive as sent.
    Keep(String, String),
    /// A connection-level field: hop-by-hop, or handled by the gateway itself.
    Hop(Hop),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    /// `Connection: X-Hop-<n>` and the field it names.
    Named(u8),
    /// The same, the token in a list and in another case than the field's name.
    NamedInList(u8),
    /// `Connection` naming Content-Length, Transfer-Encoding or Host: whatever the proxy does
    /// with the token, the request must still arrive framed and addressed as sent.
    NamesEssential(u8),
    /// `Expect: 100-continue`, which the gateway answers itself and does not pass on.
    Expect,
    KeepAliveToken,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    /// `Connection: close`: the last request the connection carries.
    Close,
}

#[derive(Clone, Copy, Debug)]
enum Flaw {
    ClAndTe {
        te_first: bool,
    },
    ClList,
    TwoCl,
    BadCl(&'static str),
    BadCoding(&'static str),
    TeInHttp10,
    /// A bad size line after `after` good chunks.
    BadChunkSize {
        after: u8,
        size: &'static str,
    },
    /// Chunk data followed by something other than CRLF.
    BadChunkEnd,
    BadName(&'static str),
    BareLfInField,
    BareLfRequestLine,
    BareCr,
    ObsFold,
    Nul,
    MissingHost,
    TwoHosts,
    BadRequestLine(&'static str),
}

impl Flaw {
    /// A flaw in the body: the head is valid, so the proxy may have started forwarding.
    fn in_body(self) -> bool {
        matches!(self, Flaw::BadChunkSize { .. } | Flaw::BadChunkEnd)
    }
}

impl Request {
    /// The method a response answers: a request line that does not parse has none, and the
    /// answer to it is read as an answer to GET (with a body).
    fn method_as_sent(&self) -> &'static str {
        match self.flaw {
            Some(Flaw::BadRequestLine(_) | Flaw::BareLfRequestLine) => "GET",
            _ => self.method,
        }
    }

    fn closes(&self) -> bool {
        self.flaw.is_some()
            || self
                .fields
                .iter()
                .any(|f| matches!(f, Field::Hop(Hop::Close)))
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        vec(request_strategy(), 1..=8),
        option::weighted(0.4, (any::<Index>(), request_strategy(), flaw_strategy())),
        any::<bool>(),
        vec((any::<u16>(), 0u8..=3), 0..10),
    )
        .prop_map(|(mut requests, invalid, pipelined, cuts)| {
            if let Some((at, mut bad, flaw)) = invalid {
                bad.flaw = Some(flaw);
                requests.truncate(7);
                let at = at.index(requests.len() + 1);
                requests.insert(at, bad);
            }
            Case {
                requests,
                pipelined,
                cuts,
            }
        })
}

fn request_strategy() -> impl Strategy<Value = Request> {
    (
        select(&METHODS[..]),
        target_strategy(),
        select(&HOSTS[..]),
        vec(field_strategy(), 0..6),
        any::<Index>(),
        body_strategy(),
        framing_strategy(),
        style_strategy(),
    )
        .prop_map(
            |(method, target, host, fields, framing_at, body, framing, style)| {
                // A body needs a framing field; an absent one means no body.
                let framing = match framing {
                    Framing::Absent if !body.is_empty() => Framing::Length(Repeat::Once),
                    other => other,
                };
                Request {
                    method,
                    target,
                    host,
                    fields,
                    framing_at,
                    body,
                    framing,
                    style,
                    flaw: None,
                }
            },
        )
}

fn target_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        6 => "[A-Za-z0-9._~-]{1,8}",
        1 => select(&["%20", "%2F", "%25", "%C3%A9", ".", "..", "", "a:b@c", "!$&'()*+,;="][..])
            .prop_map(String::from),
    ];
    let query = "[A-Za-z0-9._~!$&'()*+,;=:@/?-]{0,24}";
    (vec(segment, 0..4), option::of(query)).prop_map(|(segments, query)| {
        let mut target = format!("/{}", segments.join("/"));
        if let Some(query) = query {
            target.push('?');
            target.push_str(&query);
        }
        target
    })
}

fn field_strategy() -> impl Strategy<Value = Field> {
    let name = prop_oneof![
        "X-E[A-Za-z0-9-]{0,8}",
        select(&COMMON_NAMES[..]).prop_map(String::from),
    ];
    let hop = prop_oneof![
        3 => (0u8..4).prop_map(Hop::Named),
        2 => (0u8..4).prop_map(Hop::NamedInList),
        2 => (0u8..3).prop_map(Hop::NamesEssential),
        3 => select(&[
            Hop::Expect,
            Hop::KeepAliveToken,
            Hop::KeepAlive,
            Hop::ProxyConnection,
            Hop::Te,
            Hop::Trailer,
            Hop::Upgrade,
        ][..]),
        1 => Just(Hop::Close),
    ];
    prop_oneof![
        5 => (name, value_strategy()).prop_map(|(n, v)| Field::Keep(n, v)),
        1 => hop.prop_map(Field::Hop),
    ]
}

/// Field values: visible ASCII with inner spaces and tabs, sometimes empty or with obs-text.
fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        8 => "[!-~]([ \t!-~]{0,24}[!-~])?",
        1 => "[!-~é]{1,8}",
    ]
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        4 => vec(any::<u8>(), 1..64),
        2 => vec(any::<u8>(), 64..=3000),
    ]
}

fn framing_strategy() -> impl Strategy<Value = Framing> {
    let repeat = prop_oneof![
        6 => Just(Repeat::Once),
        1 => Just(Repeat::List),
        1 => Just(Repeat::Twice),
    ];
    let chunking = (
        vec(any::<u16>(), 0..6),
        0u8..3,
        vec(0u8..5, 0..4),
        vec(("X-T[a-z0-9]{0,5}", "[!-~]([ !-~]{0,16}[!-~])?"), 0..3),
        select(&["chunked", "Chunked", "CHUNKED"][..]),
    )
        .prop_map(|(cuts, hex, exts, trailers, coding)| Chunking {
            cuts,
            hex,
            exts,
            trailers,
            coding,
        });
    prop_oneof![
        1 => Just(Framing::Absent),
        4 => repeat.prop_map(Framing::Length),
        4 => chunking.prop_map(Framing::Chunked),
    ]
}

fn style_strategy() -> impl Strategy<Value = Style> {
    (
        select(&[": ", ":", ":\t", ":  "][..]),
        select(&["", " ", "\t"][..]),
        0u8..3,
    )
        .prop_map(|(colon, trailing, name_case)| Style {
            colon,
            trailing,
            name_case,
        })
}

fn flaw_strategy() -> impl Strategy<Value = Flaw> {
    prop_oneof![
        any::<bool>().prop_map(|te_first| Flaw::ClAndTe { te_first }),
        Just(Flaw::ClList),
        Just(Flaw::TwoCl),
        select(&BAD_CONTENT_LENGTHS[..]).prop_map(Flaw::BadCl),
        select(&BAD_CODINGS[..]).prop_map(Flaw::BadCoding),
        Just(Flaw::TeInHttp10),
        (0u8..3, select(&BAD_CHUNK_SIZES[..]))
            .prop_map(|(after, size)| Flaw::BadChunkSize { after, size }),
        Just(Flaw::BadChunkEnd),
        select(&BAD_NAMES[..]).prop_map(Flaw::BadName),
        Just(Flaw::BareLfInField),
        Just(Flaw::BareLfRequestLine),
        Just(Flaw::BareCr),
        Just(Flaw::ObsFold),
        Just(Flaw::Nul),
        Just(Flaw::MissingHost),
        Just(Flaw::TwoHosts),
        select(&BAD_LINES[..]).prop_map(Flaw::BadRequestLine),
    ]
}

// ---------------------------------------------------------------------------------------------
// Rendering requests to bytes

fn cased(name: &str, case: u8) -> String {
    match case {
        1 => name.to_ascii_lowercase(),
        2 => name.to_ascii_uppercase(),
        _ => name.to_string(),
    }
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str, style: Style) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(style.colon.as_bytes());
    out.extend_from_slice(value.as_bytes());
    if !value.is_empty() {
        out.extend_from_slice(style.trailing.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn hop_lines(hop: Hop) -> Vec<(String, String)> {
    let one = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
    match hop {
        Hop::Named(n) => vec![
            ("Connection".to_string(), format!("X-Hop-{n}")),
            (format!("X-Hop-{n}"), format!("secret-{n}")),
        ],
        Hop::NamedInList(n) => vec![
            ("Connection".to_string(), format!("keep-alive, x-hop-{n}")),
            (format!("X-HOP-{n}"), format!("secret-{n}")),
        ],
        Hop::NamesEssential(n) => one(
            "Connection",
            ["Content-Length", "Transfer-Encoding", "Host"][n as usize % 3],
        ),
        Hop::Expect => one("Expect", "100-continue"),
        Hop::KeepAliveToken => one("Connection", "keep-alive"),
        Hop::KeepAlive => one("Keep-Alive", "timeout=5, max=100"),
        Hop::ProxyConnection => one("Proxy-Connection", "keep-alive"),
        Hop::Te => one("TE", "trailers"),
        Hop::Trailer => one("Trailer", "X-Ta"),
        Hop::Upgrade => one("Upgrade", "h2c"),
        Hop::Close => one("Connection", "close"),
    }
}

/// The names a hop-by-hop field makes hop-by-hop (never to reach the origin).
fn hop_names(hop: Hop) -> Vec<String> {
    match hop {
        Hop::Named(n) | Hop::NamedInList(n) => vec![format!("X-Hop-{n}")],
        Hop::Expect => vec!["Expect".to_string()],
        Hop::KeepAlive => vec!["Keep-Alive".to_string()],
        Hop::ProxyConnection => vec!["Proxy-Connection".to_string()],
        Hop::Te => vec!["TE".to_string()],
        Hop::Trailer => vec!["Trailer".to_string()],
        Hop::Upgrade => vec!["Upgrade".to_string()],
        Hop::KeepAliveToken | Hop::Close | Hop::NamesEssential(_) => Vec::new(),
    }
}

/// The body as chunks at `cuts` (never empty: an empty chunk would end the body).
fn chunk_pieces<'a>(body: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| (c as usize * body.len()) >> 16)
        .chain([0, body.len()])
        .collect();
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &body[w[0]..w[1]]).collect()
}

fn size_line(out: &mut Vec<u8>, size: usize, c: &Chunking, index: usize) {
    let hex = match c.hex {
        1 => format!("{size:X}"),
        2 => format!("00{size:x}"),
        _ => format!("{size:x}"),
    };
    out.extend_from_slice(hex.as_bytes());
    if !c.exts.is_empty() {
        let ext = match c.exts[index % c.exts.len()] {
            1 => ";a",
            2 => ";a=b",
            3 => ";name=\"q v\"",
            4 => ";a;b=1",
            _ => "",
        };
        out.extend_from_slice(ext.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn encode_chunked(body: &[u8], c: &Chunking, style: Style) -> Vec<u8> {
    let mut out = Vec::new();
    let pieces = chunk_pieces(body, &c.cuts);
    for (i, piece) in pieces.iter().enumerate() {
        size_line(&mut out, piece.len(), c, i);
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    size_line(&mut out, 0, c, pieces.len());
    for (name, value) in &c.trailers {
        push_field(&mut out, name, value, style);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// How the request's body is chunked: as generated, or as one chunk when it was not.
fn chunking_of(req: &Request) -> Chunking {
    match &req.framing {
        Framing::Chunked(c) => c.clone(),
        _ => Chunking {
            cuts: Vec::new(),
            hex: 0,
            exts: Vec::new(),
            trailers: Vec::new(),
            coding: "chunked",
        },
    }
}

/// A chunked body whose framing breaks after some good chunks.
fn broken_chunked(req: &Request, flaw: Flaw) -> Vec<u8> {
    let c = &chunking_of(req);
    let data: &[u8] = if req.body.is_empty() {
        b"hello"
    } else {
        &req.body
    };
    let pieces = chunk_pieces(data, &c.cuts);
    let mut out = Vec::new();
    let good = match flaw {
        Flaw::BadChunkSize { after, .. } => (after as usize).min(pieces.len()),
        _ => 1,
    };
    for (i, piece) in pieces.iter().take(good).enumerate() {
        size_line(&mut out, piece.len(), c, i);
        out.extend_from_slice(piece);
        if matches!(flaw, Flaw::BadChunkEnd) {
            out.extend_from_slice(b"XX\r\n0\r\n\r\n");
            return out;
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Flaw::BadChunkSize { size, .. } = flaw {
        out.extend_from_slice(size.as_bytes());
    }
    out.extend_from_slice(b"\r\n5\r\nhello\r\n0\r\n\r\n");
    out
}

/// The body data a proxy may have passed on before it met the flaw in the body.
fn data_before_flaw(req: &Request, flaw: Flaw) -> Vec<u8> {
    let data: &[u8] = if req.body.is_empty() {
        b"hello"
    } else {
        &req.body
    };
    let cuts = chunking_of(req).cuts;
    let good = match flaw {
        Flaw::BadChunkSize { after, .. } => after as usize,
        _ => 1,
    };
    chunk_pieces(data, &cuts)
        .into_iter()
        .take(good)
        .flatten()
        .copied()
        .collect()
}

fn request_line(req: &Request) -> Vec<u8> {
    let (m, t) = (req.method, req.target.as_str());
    let line = match req.flaw {
        Some(Flaw::BareLfRequestLine) => return format!("{m} {t} HTTP/1.1\n").into_bytes(),
        Some(Flaw::TeInHttp10) => format!("{m} {t} HTTP/1.0"),
        Some(Flaw::BadRequestLine(template)) => template.replace("{m}", m).replace("{t}", t),
        _ => format!("{m} {t} HTTP/1.1"),
    };
    format!("{line}\r\n").into_bytes()
}

/// The framing lines and body bytes of a request as sent.
fn framing_and_body(req: &Request) -> (Vec<u8>, Vec<u8>) {
    let style = req.style;
    let cl = cased("Content-Length", style.name_case);
    let te = cased("Transfer-Encoding", style.name_case);
    let n = req.body.len();
    let chunked_body = || encode_chunked(&req.body, &chunking_of(req), style);
    let mut lines = Vec::new();
    let body = match (req.flaw, &req.framing) {
        (Some(Flaw::ClAndTe { te_first }), _) => {
            let body = chunked_body();
            let (first, second) = ((cl, body.len().to_string()), (te, "chunked".to_string()));
            let [a, b] = if te_first {
                [second, first]
            } else {
                [first, second]
            };
            push_field(&mut lines, &a.0, &a.1, style);
            push_field(&mut lines, &b.0, &b.1, style);
            body
        }
        (Some(Flaw::ClList), _) => {
            push_field(&mut lines, &cl, &format!("{n}, {}", n + 1), style);
            req.body.clone()
        }
        (Some(Flaw::TwoCl), _) => {
            push_field(&mut lines, &cl, &n.to_string(), style);
            push_field(&mut lines, &cl, &(n + 1).to_string(), style);
            req.body.clone()
        }
        (Some(Flaw::BadCl(value)), _) => {
            push_field(&mut lines, &cl, value, style);
            req.body.clone()
        }
        (Some(Flaw::BadCoding(coding)), _) => {
            push_field(&mut lines, &te, coding, style);
            chunked_body()
        }
        (Some(Flaw::TeInHttp10), _) => {
            push_field(&mut lines, &te, "chunked", style);
            chunked_body()
        }
        (Some(flaw), _) if flaw.in_body() => {
            push_field(&mut lines, &te, "chunked", style);
            broken_chunked(req, flaw)
        }
        (_, Framing::Absent) => Vec::new(),
        (_, Framing::Length(repeat)) => {
            let value = match repeat {
                Repeat::List => format!("{n}, {n}"),
                _ => n.to_string(),
            };
            push_field(&mut lines, &cl, &value, style);
            if matches!(repeat, Repeat::Twice) {
                push_field(&mut lines, &cl, &value, style);
            }
            req.body.clone()
        }
        (_, Framing::Chunked(c)) => {
            push_field(&mut lines, &te, c.coding, style);
            encode_chunked(&req.body, c, style)
        }
    };
    (lines, body)
}

/// A field line that makes the head itself invalid, for the flaws that are one.
fn flaw_line(flaw: Option<Flaw>) -> Vec<u8> {
    let line: &[u8] = match flaw {
        Some(Flaw::BadName(name)) => return format!("{name}: v\r\n").into_bytes(),
        Some(Flaw::BareLfInField) => b"X-Lf: v\n",
        Some(Flaw::BareCr) => b"X-Cr: a\rb\r\n",
        Some(Flaw::ObsFold) => b"X-Fold: a\r\n  b\r\n",
        Some(Flaw::Nul) => b"X-Nul: a\0b\r\n",
        Some(Flaw::TwoHosts) => b"Host: other.test\r\n",
        _ => b"",
    };
    line.to_vec()
}

fn render(req: &Request, probe: &str) -> Vec<u8> {
    let style = req.style;
    let mut out = request_line(req);
    if !matches!(req.flaw, Some(Flaw::MissingHost)) {
        push_field(&mut out, "Host", req.host, style);
    }
    push_field(&mut out, "X-Probe", probe, style);
    let (framing, body) = framing_and_body(req);
    let at = req.framing_at.index(req.fields.len() + 1);
    for (i, field) in req.fields.iter().enumerate() {
        if i == at {
            out.extend_from_slice(&framing);
            out.extend_from_slice(&flaw_line(req.flaw));
        }
        match field {
            Field::Keep(name, value) => push_field(&mut out, name, value, style),
            Field::Hop(hop) => {
                for (name, value) in hop_lines(*hop) {
                    push_field(&mut out, &cased(&name, style.name_case), &value, style);
                }
            }
        }
    }
    if at == req.fields.len() {
        out.extend_from_slice(&framing);
        out.extend_from_slice(&flaw_line(req.flaw));
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

/// A case rendered for one run.
struct Sent {
    case_id: usize,
    bytes: Vec<u8>,
    /// Each request's range in `bytes`.
    spans: Vec<Range<usize>>,
    /// Where writes end, with the pause after each.
    cuts: Vec<(usize, Duration)>,
    /// The first request that ends the connection, if any.
    last: Option<usize>,
}

impl Sent {
    fn new(case: &Case, case_id: usize) -> Sent {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        for (i, req) in case.requests.iter().enumerate() {
            let start = bytes.len();
            bytes.extend_from_slice(&render(req, &probe(case_id, i)));
            spans.push(start..bytes.len());
        }
        let mut cuts: Vec<(usize, Duration)> = case
            .cuts
            .iter()
            .map(|&(at, pause)| {
                let at = (at as usize * bytes.len()) >> 16;
                (at, Duration::from_millis(pause.into()))
            })
            .filter(|&(at, _)| at > 0)
            .collect();
        cuts.sort_by_key(|&(at, _)| at);
        cuts.dedup_by_key(|&mut (at, _)| at);
        let last = case.requests.iter().position(Request::closes);
        Sent {
            case_id,
            bytes,
            spans,
            cuts,
            last,
        }
    }

    /// How many responses the client must get.
    fn answered(&self) -> usize {
        self.last.map_or(self.spans.len(), |i| i + 1)
    }

    /// The requests that must reach the origin, in order.
    fn forwarded(&self, case: &Case) -> Vec<usize> {
        (0..self.answered())
            .filter(|&i| case.requests[i].flaw.is_none())
            .collect()
    }
}

fn probe(case_id: usize, index: usize) -> String {
    format!("c{case_id}r{index}")
}

// ---------------------------------------------------------------------------------------------
// Driving one client connection

/// What the client saw.
#[derive(Default)]
struct Got {
    responses: Vec<Response>,
    read_error: Option<String>,
    /// Offset in the stream and error of a failed write.
    write_error: Option<(usize, String)>,
    /// Bytes that came after the last expected response.
    stray: Vec<u8>,
    /// Whether the proxy closed the connection at the end.
    closed: bool,
}

fn drive(addr: SocketAddr, case: &Case, sent: &Sent) -> Got {
    let mut got = Got::default();
    let mut client = match Client::try_connect(addr) {
        Ok(client) => client,
        Err(e) => {
            got.read_error = Some(format!("connect: {e}"));
            return got;
        }
    };
    client.set_read_timeout(READ_TIMEOUT);
    if case.pipelined {
        got.write_error = write_range(&mut client, sent, 0..sent.bytes.len()).err();
        for i in 0..sent.answered() {
            if !read_one(&mut client, case, i, &mut got) {
                break;
            }
        }
    } else {
        for (i, span) in sent.spans.iter().enumerate() {
            if let Err(e) = write_range(&mut client, sent, span.clone()) {
                got.write_error = Some(e);
                break;
            }
            if i < sent.answered() && !read_one(&mut client, case, i, &mut got) {
                break;
            }
        }
    }
    finish(&mut client, sent, &mut got);
    got
}

/// Writes `range` of the stream, cut and paused where the case says.
fn write_range(
    client: &mut Client,
    sent: &Sent,
    range: Range<usize>,
) -> Result<(), (usize, String)> {
    let mut from = range.start;
    let cuts = sent
        .cuts
        .iter()
        .filter(|&&(at, _)| at > range.start && at < range.end);
    for &(at, pause) in cuts.chain([&(range.end, Duration::ZERO)]) {
        client
            .wire()
            .write_all(&sent.bytes[from..at])
            .map_err(|e| (from, e.to_string()))?;
        thread::sleep(pause);
        from = at;
    }
    Ok(())
}

fn read_one(client: &mut Client, case: &Case, i: usize, got: &mut Got) -> bool {
    match client.read_response_to(case.requests[i].method_as_sent()) {
        Ok(response) => {
            got.responses.push(response);
            true
        }
        Err(e) => {
            got.read_error = Some(format!("reading response #{i}: {e}"));
            false
        }
    }
}

/// Half-closes and watches for stray bytes and the proxy's close.
fn finish(client: &mut Client, sent: &Sent, got: &mut Got) {
    let _ = client.wire().stream().shutdown(Shutdown::Write);
    let wait = if sent.last.is_some() {
        CLOSE_TIMEOUT
    } else {
        QUIET_WAIT
    };
    client.set_read_timeout(wait);
    match client.wire().read_to_close() {
        Ok(rest) => {
            got.stray = rest;
            got.closed = true;
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            got.stray = client.wire().buffered().to_vec();
        }
        Err(e) => {
            got.stray = client.wire().buffered().to_vec();
            got.closed = true;
            got.read_error.get_or_insert(format!("at the end: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checking

/// Everything one run produced, for checks and the failure report.
struct Run<'a> {
    case: &'a Case,
    sent: &'a Sent,
    seen: Vec<Recorded>,
    got: Got,
    stderr: String,
    alive: bool,
    origin_idle: bool,
}

impl Run<'_> {
    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.check_proxy(&mut problems);
        let complete = self.check_origin(&mut problems);
        self.check_client(&complete, &mut problems);
        problems
    }

    fn check_proxy(&self, problems: &mut Vec<String>) {
        if !self.alive {
            problems.push("the proxy process is gone".to_string());
        }
        if let Some(line) = self.stderr.lines().find(|l| l.contains("panicked")) {
            problems.push(format!("the proxy panicked: {line}"));
        }
        if !self.origin_idle {
            problems.push(format!(
                "a request was still half-sent to the origin {SETTLE_TIMEOUT:?} after the \
                     case ended: the proxy neither finished nor closed it"
            ));
        }
    }

    /// Checks what reached the origin; returns the complete records by request index.
    fn check_origin(&self, problems: &mut Vec<String>) -> Vec<(usize, &Recorded)> {
        let mut complete = Vec::new();
        for record in &self.seen {
            let index = record
                .header_text("x-probe")
                .and_then(|p| probe_index(&p, self.sent.case_id));
            match (&record.outcome, index) {
                (Outcome::Complete, Some(i)) => complete.push((i, record)),
                (Outcome::Violation(why), Some(i)) => problems.push(format!(
                    "request #{i} reached the origin in a form it cannot read exactly one way: \
                     {why}"
                )),
                (Outcome::Incomplete(why), Some(i)) => self.check_cut(i, record, why, problems),
                (outcome, None) => problems.push(format!(
                    "the origin got a message that carries no probe of this case (X-Probe \
                     {:?}, {outcome:?}, seq {})",
                    record.header_text("x-probe"),
                    record.seq
                )),
            }
        }
        let order: Vec<usize> = complete.iter().map(|&(i, _)| i).collect();
        let expected = self.sent.forwarded(self.case);
        if order != expected {
            problems.push(format!(
                "the origin got complete requests {order:?} (by index, in arrival order); \
                 expected exactly {expected:?}"
            ));
        }
        for &(i, record) in &complete {
            if expected.contains(&i) {
                compare(&self.case.requests[i], i, record, problems);
            }
        }
        complete
    }

    /// A request cut off at the origin is fine only where the invalid request's flaw is in
    /// its body, and only with the body data sent before the flaw.
    fn check_cut(&self, i: usize, record: &Recorded, why: &str, problems: &mut Vec<String>) {
        let flaw = self.case.requests[i].flaw;
        let allowed = match flaw {
            Some(flaw) if flaw.in_body() && Some(i) == self.sent.last => {
                data_before_flaw(&self.case.requests[i], flaw).starts_with(&record.body)
            }
            _ => false,
        };
        if !allowed {
            problems.push(format!(
                "request #{i} reached the origin cut off ({why}) after {} body bytes",
                record.body.len()
            ));
        }
    }

    fn check_client(&self, complete: &[(usize, &Recorded)], problems: &mut Vec<String>) {
        let got = &self.got;
        let answered = self.sent.answered();
        if got.responses.len() != answered {
            problems.push(format!(
                "the client got {} responses, expected {answered}{}",
                got.responses.len(),
                got.read_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
        for (i, response) in got.responses.iter().enumerate() {
            let record = complete.iter().find(|&&(j, _)| j == i).map(|&(_, r)| r);
            check_response(&self.case.requests[i], i, response, record, problems);
        }
        self.check_end(problems);
    }

    fn check_end(&self, problems: &mut Vec<String>) {
        let got = &self.got;
        if !got.stray.is_empty() {
            let after_head = got
                .responses
                .len()
                .checked_sub(1)
                .is_some_and(|i| self.case.requests[i].method_as_sent() == "HEAD");
            problems.push(format!(
                "{} bytes came after the last expected response{}: \"{}\"",
                got.stray.len(),
                if after_head {
                    ", which answered a HEAD request and so has no body"
                } else {
                    ""
                },
                show(&got.stray, 300)
            ));
        }
        if let Some(last) = self.sent.last {
            if !got.closed {
                problems.push(format!(
                    "the connection was still open {CLOSE_TIMEOUT:?} after request #{last}, \
                     which ends it"
                ));
            }
        }
        let must_be_read_up_to = self
            .sent
            .last
            .map_or(self.sent.bytes.len(), |i| self.sent.spans[i].start);
        if let Some((at, e)) = &got.write_error {
            if *at < must_be_read_up_to {
                problems.push(format!(
                    "writing at byte {at} failed ({e}) before the request that ends the \
                     connection"
                ));
            }
        }
    }
}

fn probe_index(probe: &str, case_id: usize) -> Option<usize> {
    let (case, index) = probe.strip_prefix('c')?.split_once('r')?;
    (case.parse::<usize>().ok()? == case_id).then_some(())?;
    index.parse().ok()
}

/// Compares a forwarded request with what was sent.
fn compare(req: &Request, i: usize, seen: &Recorded, problems: &mut Vec<String>) {
    let mut differs = |what: String| problems.push(format!("request #{i} at the origin: {what}"));
    if seen.method != req.method || seen.target != req.target {
        differs(format!(
            "{} {} instead of {} {}",
            seen.method, seen.target, req.method, req.target
        ));
    }
    if seen.body != req.body {
        differs(body_difference(&req.body, &seen.body));
    }
    let host = seen.header_all("host");
    if host != [req.host.as_bytes()] {
        differs(format!("Host {:?}, sent {:?}", shows(&host), req.host));
    }
    for (name, values) in kept_fields(req) {
        let arrived = seen.header_all(&name);
        if arrived != values.iter().map(|v| v.as_bytes()).collect::<Vec<_>>() {
            differs(format!("{name} {:?}, sent {values:?}", shows(&arrived)));
        }
    }
    for name in req.fields.iter().filter_map(hop_of).flat_map(hop_names) {
        let arrived = seen.header_all(&name);
        if !arrived.is_empty() {
            differs(format!(
                "hop-by-hop {name} passed on: {:?}",
                shows(&arrived)
            ));
        }
    }
    check_trailers(req, seen, &mut differs);
}

fn hop_of(field: &Field) -> Option<Hop> {
    match field {
        Field::Hop(hop) => Some(*hop),
        Field::Keep(..) => None,
    }
}

/// The end-to-end fields sent, grouped by name (case-insensitively), values in order.
fn kept_fields(req: &Request) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for field in &req.fields {
        let Field::Keep(name, value) = field else {
            continue;
        };
        match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, values)) => values.push(value.clone()),
            None => out.push((name.clone(), vec![value.clone()])),
        }
    }
    out
}

fn check_trailers(req: &Request, seen: &Recorded, differs: &mut impl FnMut(String)) {
    let Framing::Chunked(c) = &req.framing else {
        return;
    };
    for (name, value) in &c.trailers {
        let arrived = field_all(&seen.trailers, name);
        let sent: Vec<&[u8]> = c
            .trailers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
            .collect();
        if arrived != sent {
            differs(format!(
                "trailer {name} {:?}, sent {value:?} (framing {:?})",
                shows(&arrived),
                seen.framing
            ));
        }
    }
}

fn body_difference(sent: &[u8], seen: &[u8]) -> String {
    let first = sent.iter().zip(seen).position(|(a, b)| a != b);
    format!(
        "body of {} bytes, sent {} bytes; first difference at {}",
        seen.len(),
        sent.len(),
        first.map_or("the end of the shorter".to_string(), |at| format!(
            "byte {at}"
        ))
    )
}

fn check_response(
    req: &Request,
    i: usize,
    response: &Response,
    record: Option<&Recorded>,
    problems: &mut Vec<String>,
) {
    let echo = response.header("x-echo");
    if req.flaw.is_some() {
        if !(400..=599).contains(&response.status) || echo.is_some() {
            problems.push(format!(
                "invalid request #{i} was answered {} {:?} (X-Echo {echo:?}), not by the gateway \
                 with a 4xx or 5xx",
                response.status,
                show(&response.body, 200)
            ));
        }
        return;
    }
    let Some(record) = record else {
        problems.push(format!(
            "response #{i} ({} X-Echo {echo:?}) answers a request the origin never completed",
            response.status
        ));
        return;
    };
    let id = record.id();
    let body: &[u8] = if req.method == "HEAD" {
        b""
    } else {
        id.as_bytes()
    };
    if response.status != 200 || echo != Some(id.as_str()) || response.body != body {
        problems.push(format!(
            "response #{i} is {} X-Echo {echo:?} body \"{}\"; expected 200 X-Echo {id:?}",
            response.status,
            show(&response.body, 200)
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn show(bytes: &[u8], max: usize) -> String {
    let shown = bytes[..bytes.len().min(max)].escape_ascii().to_string();
    if bytes.len() > max {
        format!("{shown}... ({} more bytes)", bytes.len() - max)
    } else {
        shown
    }
}

fn shows(values: &[&[u8]]) -> Vec<String> {
    values.iter().map(|v| show(v, 200)).collect()
}

impl Run<'_> {
    fn report(&self, problems: &[String]) -> String {
        let mut out = format!(
            "case c{} ({}, {} requests, {} writes):\n",
            self.sent.case_id,
            if self.case.pipelined {
                "pipelined"
            } else {
                "one at a time"
            },
            self.case.requests.len(),
            self.sent.cuts.len() + 1
        );
        for problem in problems {
            out.push_str(&format!("  - {problem}\n"));
        }
        self.report_sent(&mut out);
        self.report_origin(&mut out);
        self.report_client(&mut out);
        let stderr: Vec<&str> = self.stderr.lines().take(30).collect();
        out.push_str(&format!(
            "proxy stderr during the case:\n  {}\n",
            stderr.join("\n  ")
        ));
        out
    }

    fn report_sent(&self, out: &mut String) {
        let cuts: Vec<usize> = self.sent.cuts.iter().map(|&(at, _)| at).collect();
        out.push_str(&format!(
            "sent {} bytes, writes cut at {cuts:?}:\n",
            self.sent.bytes.len()
        ));
        for (i, span) in self.sent.spans.iter().enumerate() {
            let kind = match self.case.requests[i].flaw {
                Some(flaw) => format!("INVALID {flaw:?}"),
                None => "valid".to_string(),
            };
            out.push_str(&format!(
                "  #{i} {kind} at {span:?}: \"{}\"\n",
                show(&self.sent.bytes[span.clone()], 1500)
            ));
        }
    }

    fn report_origin(&self, out: &mut String) {
        out.push_str(&format!("origin recorded {}:\n", self.seen.len()));
        for r in &self.seen {
            out.push_str(&format!(
                "  seq {} conn {} {:?} framing {:?} body {} bytes: \"{}\"\n",
                r.seq,
                r.connection,
                r.outcome,
                r.framing,
                r.body.len(),
                show(&r.raw, 1500)
            ));
        }
    }

    fn report_client(&self, out: &mut String) {
        out.push_str(&format!("client got {}:\n", self.got.responses.len()));
        for (i, r) in self.got.responses.iter().enumerate() {
            out.push_str(&format!(
                "  #{i} {} {:?} body \"{}\"\n",
                r.status,
                r.headers,
                show(&r.body, 300)
            ));
        }
        out.push_str(&format!(
            "  then: closed {}, read error {:?}, write error {:?}\n",
            self.got.closed, self.got.read_error, self.got.write_error
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy and origin shared by all cases

struct Bench {
    origin: RecordingOrigin,
    yaml: String,
    proxy: RefCell<Ringway>,
    /// Set when a case failed: the next case gets a fresh proxy, since a failing one may
    /// have left bytes on a pooled upstream connection, or died.
    replace: Cell<bool>,
}

static NEXT_CASE: AtomicUsize = AtomicUsize::new(0);

impl Bench {
    fn start() -> Bench {
        let origin = RecordingOrigin::start();
        // Bodies stay far below this; it is set so the generated ones are allowed whatever
        // the default becomes.
        let yaml = forward_all_config(1, &[&origin.url()], "limits:\n  max_body_bytes: 1MiB\n");
        let proxy = RefCell::new(start_proxy(&yaml));
        Bench {
            origin,
            yaml,
            proxy,
            replace: Cell::new(false),
        }
    }

    fn run(&self, case: &Case) -> Result<(), String> {
        if self.replace.take() {
            *self.proxy.borrow_mut() = start_proxy(&self.yaml);
            // The old proxy's upstream connections are closed now; let the origin finish
            // recording whatever they carried, so it is not blamed on this case.
            self.origin.wait_idle(Duration::from_secs(2));
        }
        let proxy = self.proxy.borrow();
        let sent = Sent::new(case, NEXT_CASE.fetch_add(1, Ordering::SeqCst));
        let log_start = self.origin.record_count();
        let stderr_start = proxy.stderr_text().len();
        let got = drive(proxy.addr(), case, &sent);
        // Let anything the proxy sent on after the client's last byte land at the origin.
        thread::sleep(Duration::from_millis(10));
        let origin_idle = self.origin.wait_idle(SETTLE_TIMEOUT);
        let run = Run {
            case,
            sent: &sent,
            seen: self.origin.records_from(log_start),
            got,
            stderr: proxy.stderr_text()[stderr_start..].to_string(),
            alive: is_alive(proxy.pid()),
            origin_idle,
        };
        let problems = run.check();
        if problems.is_empty() {
            return Ok(());
        }
        self.replace.set(true);
        Err(run.report(&problems))
    }
}

fn start_proxy(yaml: &str) -> Ringway {
    let mut proxy = Ringway::start(yaml);
    // Panics are checked per case, where they can be attributed and shrunk.
    proxy.report_panics_myself();
    proxy
}

/// Whether the process exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

fn runner_config() -> Config {
    // The default reads PROPTEST_* variables; fixed values apply only where none is set.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    // The report carries the raw bytes; a regression file would only repeat the seed.
    config.failure_persistence = None;
    // Bounded so that a failing run still ends in well under a minute.
    config.max_shrink_iters = 2000;
    config.max_shrink_time = 20_000;
    config
}

#[test]
fn random_request_sequences_reach_the_origin_exactly_and_are_answered_in_order() {
    let started = Instant::now();
    let bench = Bench::start();
    let config = runner_config();
    let seed = config.rng_seed;
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case_strategy(), |case| {
        bench.run(&case).map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, _)) => panic!(
            "minimal failing case after {:.1?} (seed {seed:?}):\n{reason}",
            started.elapsed()
        ),
        Err(TestError::Abort(reason)) => panic!("the property run was aborted: {reason}"),
    }
}
