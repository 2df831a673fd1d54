//! Regression tests for request-path defects that let one client's bytes reach another, or
//! misframed a message on its way through: each drives the real binary against an origin that
//! misbehaves in one precise way.
//!
//! - `Connection` listing Content-Length, Transfer-Encoding or Host removes nothing (both ways).
//! - An unsolicited 101, and bytes an origin sends while idle, never reach a later request.
//! - A deadline armed on an upstream socket dies with that socket (no shutdown of a descriptor
//!   number since reused by another client).
//! - Absolute-form targets set Host; HTTP/1.0 requests without Host get one.
//! - A response with empty lines before its status line keeps its status line.
//! - `Content-Length: 5, 5` goes on as one value.
//! - Only configured upgrade protocols pass (`h2c` does not); tunnels half-close and idle out.
//! - 1xx interim responses reach HTTP/1.1 clients.
//! - A backend of more than 128 refusing targets ends in a 502, not a loop.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringway_tests::websocket::{WsClient, OP_TEXT};
use ringway_tests::{forward_all_config, refusing_port, Client, Origin, Ringway, HELLO};

/// What a scripted origin saw: each request head as text, with the body bytes it read.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An origin that reads requests (head, then a Content-Length body) and answers each with the
/// bytes `answer` gives for it; `answer` returning `None` closes the connection instead.
fn scripted_origin<F>(answer: F) -> (SocketAddr, Seen)
where
    F: Fn(usize, &str) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let log = Arc::clone(&log);
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut pending = Vec::new();
                loop {
                    let Some(head) = read_head(&mut stream, &mut pending) else {
                        return;
                    };
                    let len = content_length(&head);
                    while pending.len() < len {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk) {
                            Ok(n) if n > 0 => pending.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let body: Vec<u8> = pending.drain(..len).collect();
                    let index = {
                        let mut log = log.lock().unwrap();
                        log.push((head.clone(), body));
                        log.len() - 1
                    };
                    match answer(index, &head) {
                        Some(bytes) => {
                            if stream.write_all(&bytes).is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn read_head(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

fn content_length(head: &str) -> usize {
    header_values(head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Every value of header `name` in a head, in order.
fn header_values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

fn proxy_for(addr: SocketAddr, extra: &str) -> Ringway {
    Ringway::start(&forward_all_config(1, &[&format!("http://{addr}")], extra))
}

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until `done` holds for what has arrived, or the peer closes.
fn read_until(s: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !done(&got) {
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    got
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// 1. Hop-by-hop abuse.

#[test]
fn connection_cannot_remove_content_length_from_a_request() {
    let origin = Origin::start("a");
    let proxy = ringway_tests::proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    // The body, read without its Content-Length, would be a second request to the origin.
    let smuggled = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    let response = client.request(
        "POST",
        "/echo",
        &[("Connection", "content-length")],
        smuggled,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.body, smuggled, "the origin got the body as a body");
    assert_eq!(
        ringway_tests::client::get(proxy.addr(), "/hello").body,
        HELLO
    );
    let log = origin.request_log();
    assert!(
        log.iter().all(|r| r.path() != "/admin"),
        "the body was read as a request: {log:?}"
    );
    assert_eq!(log[0].header("content-length"), Some("32"));
}

#[test]
fn connection_cannot_remove_transfer_encoding_or_host() {
    let origin = Origin::start("a");
    let proxy = ringway_tests::proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let body = ringway_tests::wire::encode_chunked(b"hello world", 4, &[]);
    let response = client.request(
        "POST",
        "/echo",
        &[
            ("Connection", "transfer-encoding, host"),
            ("Transfer-Encoding", "chunked"),
        ],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.body, b"hello world");
    let seen = origin.last_request().unwrap();
    assert!(seen.chunked, "the body still went chunked");
    assert_eq!(seen.header("host"), Some("ringway.test"));
    assert_eq!(
        client.get("/hello").body,
        HELLO,
        "the connection is still in step"
    );
}

#[test]
fn connection_in_a_response_cannot_remove_its_content_length() {
    let (addr, _) = scripted_origin(|_, _| {
        Some(
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec(),
        )
    });
    let proxy = proxy_for(addr, "");
    let mut client = Client::connect(proxy.addr());
    for _ in 0..2 {
        let response = client.get("/x");
        assert_eq!(response.header("content-length"), Some("5"));
        assert_eq!(response.body, b"hello");
    }
}

// 2. Unsolicited 101 and stray bytes on idle upstream connections.

#[test]
fn an_unsolicited_101_is_a_502_and_its_connection_is_never_reused() {
    let (addr, seen) = scripted_origin(|_, head| {
        if head.starts_with("GET /switch ") {
            // A switch nobody asked for, then bytes that would answer the next request.
            Some(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstolen"
                    .to_vec(),
            )
        } else {
            Some(ok("fine"))
        }
    });
    let proxy = proxy_for(addr, "");
    let mut a = Client::connect(proxy.addr());
    let response = a.get("/switch");
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(response.json_error().as_deref(), Some("bad_gateway"));
    for path in ["/next", "/after"] {
        let mut b = Client::connect(proxy.addr());
        let response = b.get(path);
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body, b"fine",
            "{path} got another exchange's bytes"
        );
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn bytes_an_origin_sends_on_an_idle_connection_never_answer_a_later_request() {
    // The first connection answers, and once the gateway has pooled it, sends a second
    // response nobody asked for. Later connections answer normally.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                while read_head(&mut s, &mut pending).is_some() {
                    if i == 0 {
                        s.write_all(&ok("first")).unwrap();
                        std::thread::sleep(Duration::from_millis(100));
                        let _ = s.write_all(&ok("stolen"));
                    } else {
                        s.write_all(&ok("second")).unwrap();
                    }
                }
            });
        }
    });
    let proxy = proxy_for(addr, "");
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/a").body, b"first");
    std::thread::sleep(Duration::from_millis(300));
    let mut other = Client::connect(proxy.addr());
    let response = other.get("/b");
    assert_eq!(response.body, b"second", "a request got stray bytes");
}

// 3. A deadline never outlives its socket.

#[test]
fn an_upstream_deadline_never_fires_on_a_reused_descriptor() {
    // The origin answers the first request of its only connection, takes the second and
    // hangs up without answering, and stops listening: the gateway retries the GET on a new
    // connection, which is refused. The first connection's deadline (upstream_response, 1 s)
    // was armed on a descriptor that the next accepted clients get.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let origin = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut pending = Vec::new();
        read_head(&mut s, &mut pending).unwrap();
        s.write_all(&ok("one")).unwrap();
        read_head(&mut s, &mut pending).unwrap();
        drop(listener);
        drop(s);
    });
    let proxy = proxy_for(
        addr,
        "timeouts:\n  upstream_response: 1s\n  idle: 30s\n  request: 0s\n",
    );
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/one").body, b"one");
    let response = client.get("/two");
    assert_eq!(response.status, 502, "{}", response.text());
    origin.join().unwrap();
    // New clients take the lowest free descriptors, among them the one the stale deadline
    // was armed on. They idle past that deadline, then must still be served.
    let mut clients: Vec<Client> = (0..6).map(|_| Client::connect(proxy.addr())).collect();
    std::thread::sleep(Duration::from_millis(1600));
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_request("GET", "/gone", &[], b"");
        let response = c
            .try_read_response()
            .unwrap_or_else(|e| panic!("client {i} was cut off: {e}"));
        assert_eq!(response.status, 502, "client {i}");
    }
}

// 4. Host for absolute-form targets and HTTP/1.0.

#[test]
fn an_absolute_form_target_replaces_host() {
    let origin = Origin::start("a");
    let proxy = ringway_tests::proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    client.send_raw(b"GET http://a.example/x?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n");
    assert_eq!(client.read_response().status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header_all("host"), vec!["a.example"]);
    assert_eq!(seen.target, "/x?q=1");
}

#[test]
fn an_http10_request_without_host_is_forwarded_with_one() {
    let origin = Origin::start("a");
    let proxy = ringway_tests::proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    client.send_raw(b"GET /x HTTP/1.0\r\n\r\n");
    assert_eq!(client.read_response().status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.version, "HTTP/1.1");
    let host = proxy.addr().to_string();
    assert_eq!(seen.header_all("host"), vec![host.as_str()]);
}

// 5. The status line is copied from where it is.

#[test]
fn a_status_line_after_empty_lines_is_relayed_intact() {
    let (addr, _) = scripted_origin(|_, _| {
        Some(b"\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok".to_vec())
    });
    let proxy = proxy_for(addr, "");
    let mut s = raw_connect(proxy.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = read_until(&mut s, |b| b.ends_with(b"ok"));
    assert!(
        got.starts_with(b"HTTP/1.1 201 Created\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

// 6. Content-Length lists.

#[test]
fn content_length_lists_go_on_as_one_value() {
    let (addr, seen) = scripted_origin(|_, _| {
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok".to_vec())
    });
    let proxy = proxy_for(addr, "");
    let mut client = Client::connect(proxy.addr());
    client.send_raw(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello");
    let response = client.read_response();
    assert_eq!(response.header_all("content-length"), vec!["2"]);
    assert_eq!(response.body, b"ok");
    let seen = seen.lock().unwrap();
    assert_eq!(header_values(&seen[0].0, "content-length"), vec!["5"]);
    assert_eq!(seen[0].1, b"hello");
}

// 7. Upgrades.

#[test]
fn an_h2c_upgrade_is_not_forwarded() {
    let (addr, seen) = scripted_origin(|_, head| {
        if head.to_ascii_lowercase().contains("upgrade: h2c") {
            Some(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
                    .to_vec(),
            )
        } else {
            Some(ok("plain"))
        }
    });
    let proxy = proxy_for(addr, "");
    let mut client = Client::connect(proxy.addr());
    let response = client.request(
        "GET",
        "/",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        b"",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"plain");
    let seen = seen.lock().unwrap();
    let head = seen[0].0.to_ascii_lowercase();
    assert!(!head.contains("upgrade"), "{head}");
    assert!(!head.contains("http2-settings"), "{head}");
}

#[test]
fn only_allowed_protocols_of_an_upgrade_list_are_forwarded() {
    let origin = Origin::start("ws");
    let proxy = ringway_tests::proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let response = client.request(
        "GET",
        "/",
        &[("Connection", "upgrade"), ("Upgrade", "h2c, websocket")],
        b"",
    );
    assert_eq!(response.status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
}

#[test]
fn a_tunnel_passes_a_half_close_and_idles_out() {
    let origin = Origin::start("ws");
    let proxy = ringway_tests::proxy_to(&origin);
    let mut ws = WsClient::connect(proxy.addr(), "/ws");
    ws.send(OP_TEXT, b"ping");
    // The client is done sending; the echo must still come back through the tunnel.
    ws.client.wire().stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(ws.recv().payload, b"ping");

    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  tunnel_idle: 1s\n",
    ));
    let mut ws = WsClient::connect(proxy.addr(), "/ws");
    ws.send(OP_TEXT, b"hi");
    assert_eq!(ws.recv().payload, b"hi");
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = ws.client.wire().stream().read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the idle tunnel was closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

// 8. Interim responses.

#[test]
fn interim_responses_reach_http11_clients_only() {
    let (addr, _) = scripted_origin(|_, _| {
        let mut out =
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".to_vec();
        out.extend_from_slice(&ok("ok"));
        Some(out)
    });
    let proxy = proxy_for(addr, "");
    let mut s = raw_connect(proxy.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = read_until(&mut s, |b| b.ends_with(b"ok"));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{text}");
    assert!(
        text.contains("Link: </style.css>; rel=preload\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{text}");

    let mut s = raw_connect(proxy.addr());
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let got = read_until(&mut s, |b| b.ends_with(b"ok"));
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn an_origin_100_continue_is_not_doubled() {
    // The gateway answers Expect itself; the origin's own 100 must not reach the client again.
    let (addr, _) = scripted_origin(|_, _| {
        let mut out = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        out.extend_from_slice(&ok("done"));
        Some(out)
    });
    let proxy = proxy_for(addr, "");
    let mut s = raw_connect(proxy.addr());
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .unwrap();
    let got = read_until(&mut s, |b| b.ends_with(b"\r\n\r\n"));
    assert_eq!(got, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"body").unwrap();
    let got = read_until(&mut s, |b| b.ends_with(b"done"));
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

// 13. The retry loop ends.

#[test]
fn a_backend_of_many_refusing_targets_ends_in_a_502() {
    // Ports held (bound, never listening) for the whole test: a released port could be given
    // to the proxy itself, which would then forward to itself.
    let refusing: Vec<_> = (0..130).map(|_| refusing_port()).collect();
    let targets: Vec<String> = refusing
        .iter()
        .map(|r| format!("http://{}", r.addr))
        .collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let proxy = Ringway::start(&forward_all_config(1, &targets, ""));
    let mut client = Client::connect(proxy.addr());
    let started = Instant::now();
    let response = client.get("/");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(started.elapsed() < Duration::from_secs(8));
    // And again, now that every target is marked down.
    assert_eq!(client.get("/").status, 502);
}

#[test]
fn an_error_answer_to_a_malformed_head_request_has_no_body() {
    let origin = Origin::start("a");
    let proxy = ringway_tests::proxy_to(&origin);
    let mut s = raw_connect(proxy.addr());
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n")
        .unwrap();
    let got = read_until(&mut s, |_| false);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "a body followed the head: {text}"
    );
}

#[test]
fn an_idempotent_request_moves_on_from_a_target_that_hangs_up() {
    // Target one accepts, reads the request and closes without a word (an origin going
    // down); target two answers.
    let (dying, dying_seen) = scripted_origin(|_, _| None);
    let (alive, _) = scripted_origin(|_, _| Some(ok("alive")));
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&format!("http://{dying}"), &format!("http://{alive}")],
        "",
    ));
    for _ in 0..4 {
        let mut client = Client::connect(proxy.addr());
        let response = client.get("/");
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.body, b"alive");
    }
    assert!(
        !dying_seen.lock().unwrap().is_empty(),
        "target one was tried"
    );
    // A POST that reached the dying target is not sent again.
    let mut posts = (0..4).map(|_| {
        let mut client = Client::connect(proxy.addr());
        client.request("POST", "/", &[], b"data").status
    });
    assert!(posts.any(|status| status == 502));
}
