//! Timeouts and retries through the real binary: a stale pooled connection is retried once for
//! idempotent requests only; header, idle and whole-request timeouts; `Expect: 100-continue`;
//! CONNECT refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringway_tests::{expect_closed, forward_all_config, Client, Origin, Ringway, HELLO};

/// Reads one request head byte by byte (so nothing after it is consumed); false at EOF.
fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// An origin that answers one request per connection with a keep-alive response, then closes
/// the connection shortly after without saying so: what an origin with a short keep-alive
/// timeout does to a proxy's pooled connections.
struct ForgetfulOrigin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl ForgetfulOrigin {
    fn start() -> ForgetfulOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    if !read_head(&mut stream) {
                        return;
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    std::thread::sleep(Duration::from_millis(50));
                    // Dropping the stream closes it: the proxy's pooled copy is now stale.
                });
            }
        });
        ForgetfulOrigin { addr, connections }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[test]
fn idempotent_request_on_a_stale_pooled_connection_is_retried_once() {
    let origin = ForgetfulOrigin::start();
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let mut client = Client::connect(proxy.addr());
    for round in 0..3 {
        let response = client.get("/x");
        assert_eq!(response.status, 200, "round {round}: {}", response.text());
        assert_eq!(response.body, b"ok");
        // Let the origin close the connection the proxy has just pooled.
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each round needed a new origin connection: the stale one was detected and replaced.
    assert_eq!(origin.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn a_pooled_connection_the_origin_closed_is_not_used() {
    let origin = ForgetfulOrigin::start();
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/x").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    // The pooled connection is checked before use and found closed: even a POST, which could
    // not be retried, goes out on a fresh connection.
    let response = client.request("POST", "/x", &[], b"data");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(origin.connections.load(Ordering::SeqCst), 2);
}

/// An origin that answers the first request of each connection, then reads the second and
/// closes without answering: a pooled connection that fails only once a request is on it.
fn hang_up_on_second_request() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                for round in 0..2 {
                    if !read_head(&mut stream) {
                        return;
                    }
                    if round == 0 {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    }
                }
                // Dropped with the request unanswered.
            });
        }
    });
    (addr, connections)
}

#[test]
fn non_idempotent_request_on_a_failing_pooled_connection_is_not_retried() {
    let (addr, connections) = hang_up_on_second_request();
    let proxy = Ringway::start(&forward_all_config(1, &[&format!("http://{addr}")], ""));
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/x").status, 200);
    let response = client.request("POST", "/x", &[], b"data");
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(response.json_error().as_deref(), Some("bad_gateway"));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "a POST must not be re-sent"
    );
    // The same failure for a GET is retried once, on a new connection.
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/y").status, 200);
    let response = client.get("/z");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[test]
fn header_timeout_closes_a_slow_client() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  header: 300ms\n",
    ));
    let mut client = Client::connect(proxy.addr());
    let started = Instant::now();
    client.send_raw(b"GET /hello HTTP/1.1\r\nHost: ringway.test\r\n");
    expect_closed(&mut client);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed after {elapsed:?}"
    );
    assert_eq!(origin.requests(), 0);
}

#[test]
fn header_timeout_runs_from_the_first_byte_not_per_read() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  header: 400ms\n",
    ));
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    // A byte every 100 ms never completes the head; the connection must still be cut.
    let mut cut = false;
    for _ in 0..40 {
        if stream.write_all(b"x").is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !cut {
        let mut buf = [0u8; 64];
        cut = matches!(stream.read(&mut buf), Ok(0) | Err(_));
    }
    assert!(cut, "a trickling head was not cut");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut only after {:?}",
        started.elapsed()
    );
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  idle: 300ms\n",
    ));
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/hello").body, HELLO);
    let started = Instant::now();
    expect_closed(&mut client);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn whole_request_timeout_gives_504() {
    let origin = Origin::start("slow");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  request: 500ms\n  upstream_response: 10s\n",
    ));
    let started = Instant::now();
    let response = Client::connect(proxy.addr()).get("/delay/3000");
    assert_eq!(response.status, 504, "{}", response.text());
    assert_eq!(response.json_error().as_deref(), Some("upstream_timeout"));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: ringway.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.ends_with(b"hello") {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed early: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.header("expect"),
        None,
        "Expect is answered by the gateway, not forwarded"
    );
}

#[test]
fn connect_is_refused_with_501() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let mut client = Client::connect(proxy.addr());
    client.send_raw(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 501);
    assert_eq!(origin.requests(), 0);
}
