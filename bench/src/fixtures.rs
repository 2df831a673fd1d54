//! The inputs the criterion benches run on, kept here so that tests can check them.
//!
//! They stand for typical traffic, not worst cases: a browser's request head of about 400
//! bytes, an origin's response head, a chunked body, and routing tables of a given size whose
//! routes look like an API gateway's (exact paths, templates and prefixes per service).

use ringway::config::{load_str, Config};
use ringway::route::HeaderLookup;
use ringway_core::http1::RequestHead;

/// A browser's GET of an API resource: 400 bytes, 9 headers.
pub const BROWSER_REQUEST: &[u8] =
    b"GET /api/v1/orders/12345/items?expand=product&page=12 HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Cookie: session=7d9f0a3c1e5b2a4\r\n\
Sec-Fetch-Mode: cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
\r\n";

/// An origin's answer to a JSON API call.
pub const ORIGIN_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Thu, 26 Nov 2026 10:00:00 GMT\r\n\
Content-Type: application/json\r\n\
Content-Length: 1024\r\n\
Connection: keep-alive\r\n\
Cache-Control: private, max-age=0\r\n\
ETag: \"6751a3f2-400\"\r\n\
Vary: Accept-Encoding\r\n\
\r\n";

/// A chunked body of `total` payload bytes in chunks of `chunk` bytes (the last may be
/// shorter), with the last chunk and an empty trailer section.
pub fn chunked_body(total: usize, chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total + total / chunk.max(1) * 8 + 8);
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(b'x', n));
        out.extend_from_slice(b"\r\n");
        left -= n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A configuration of `n` routes (at least 4) to one backend. Route `i` serves service `i`:
/// by turns an exact path `/svc{i}/health`, a template `/svc{i}/orders/{id}`, a prefix
/// `/svc{i}` and a method-matched prefix `/svc{i}/admin`.
pub fn routes_config(n: usize) -> Config {
    let mut text = String::from(
        "listeners: [{address: 127.0.0.1:8080}]\n\
         backends: [{name: app, targets: [{url: http://127.0.0.1:9000}]}]\n\
         routes:\n",
    );
    for i in 0..n {
        let m = match i % 4 {
            0 => format!("{{path: {{type: exact, value: /svc{i}/health}}}}"),
            1 => format!("{{path: {{type: template, value: \"/svc{i}/orders/{{id}}\"}}}}"),
            2 => format!("{{path: {{type: prefix, value: /svc{i}}}}}"),
            _ => format!("{{path: {{type: prefix, value: /svc{i}/admin}}, method: POST}}"),
        };
        text.push_str(&format!(
            "  - {{name: r{i}, backend: app, matches: [{m}]}}\n"
        ));
    }
    load_str(&text, "bench.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

/// Paths that reach, in a table of [`routes_config`]`(n)`: an exact route, the last template,
/// the last plain prefix, and nothing (a 404 after scanning everything).
pub fn route_paths(n: usize) -> [(&'static str, String); 4] {
    let last = |kind: usize| (0..n).rev().find(|i| i % 4 == kind).expect("n >= 4");
    [
        ("exact", format!("/svc{}/health", last(0))),
        ("template_last", format!("/svc{}/orders/42", last(1))),
        ("prefix_last", format!("/svc{}/items/7", last(2))),
        ("miss", "/nothing/here".to_string()),
    ]
}

/// The router's view of a parsed request's headers, as the server gives it.
pub struct HeadHeaders<'a> {
    pub head: &'a RequestHead,
    pub buf: &'a [u8],
}

impl HeaderLookup for HeadHeaders<'_> {
    #[inline]
    fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringway::route::{RouteRequest, Router};
    use ringway_core::http1::{
        parse_request, parse_response, ChunkedDecoder, Limits, ResponseHead,
    };

    #[test]
    fn request_head_is_a_typical_browser_head() {
        assert_eq!(BROWSER_REQUEST.len(), 400);
        let mut head = RequestHead::new();
        let len = parse_request(BROWSER_REQUEST, &Limits::default(), &mut head).unwrap();
        assert_eq!(len, Some(BROWSER_REQUEST.len()));
        assert_eq!(head.headers().len(), 9);
    }

    #[test]
    fn response_head_parses() {
        let mut head = ResponseHead::new();
        let len = parse_response(ORIGIN_RESPONSE, &Limits::default(), &mut head).unwrap();
        assert_eq!(len, Some(ORIGIN_RESPONSE.len()));
        assert_eq!(head.content_length(), Some(1024));
    }

    #[test]
    fn chunked_body_decodes_to_its_payload() {
        let body = chunked_body(16 * 1024 + 5, 1024);
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let used = decoder.decode(&body, &mut out, false).unwrap();
        assert_eq!(used, body.len());
        assert!(decoder.is_done());
        assert_eq!(out.len(), 16 * 1024 + 5);
    }

    #[test]
    fn route_paths_reach_the_routes_they_name() {
        for n in [10, 1000] {
            let router = Router::build(&routes_config(n)).unwrap();
            assert_eq!(router.routes().len(), n);
            let mut head = RequestHead::new();
            parse_request(BROWSER_REQUEST, &Limits::default(), &mut head).unwrap();
            let headers = HeadHeaders {
                head: &head,
                buf: BROWSER_REQUEST,
            };
            for (what, path) in route_paths(n) {
                let req = RouteRequest {
                    host: b"shop.example.com",
                    method: b"GET",
                    path: path.as_bytes(),
                    query: b"",
                    headers: &headers,
                };
                let found = router.find(&req).map(|m| m.route.name.clone());
                // "/svc{i}/..." is route r{i}'s.
                let expected = path
                    .strip_prefix("/svc")
                    .and_then(|rest| rest.split('/').next())
                    .map(|i| format!("r{i}"));
                assert_eq!(found, expected, "{n} routes: {what} {path}");
            }
        }
    }
}
