//! Downstream timeouts and the edges of graceful drain, through the real binary.

use std::thread;
use std::time::{Duration, Instant};

use ringway_tests::{expect_closed, forward_all_config, Client, Origin, Ringway, HELLO};

fn start(extra: &str) -> (Origin, Ringway) {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], extra));
    (origin, proxy)
}

#[test]
fn partial_head_is_closed_without_a_response_after_the_header_timeout() {
    let (origin, proxy) = start("timeouts:\n  header: 500ms\n");
    let mut client = Client::connect(proxy.addr());
    let started = Instant::now();
    client.send_raw(b"GET /hello HTTP/1.1\r\nHost: t\r\n");
    // Closed without a response, as nginx does.
    expect_closed(&mut client);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
    assert_eq!(origin.requests(), 0);
}

#[test]
fn trickled_head_is_cut_at_the_header_timeout() {
    let (_origin, proxy) = start("timeouts:\n  header: 1s\n");
    let mut client = Client::connect(proxy.addr());
    let started = Instant::now();
    client.send_raw(b"GET /hello HTTP/1.1\r\n");
    // One header line every 200 ms: each read is quick, the head as a whole is not.
    let mut cut = false;
    for i in 0..25 {
        thread::sleep(Duration::from_millis(200));
        let line = format!("X-Slow-{i}: v\r\n");
        if client.wire().write_all(line.as_bytes()).is_err() {
            cut = true;
            break;
        }
    }
    if !cut {
        expect_closed(&mut client);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(2600),
        "a head trickled over {elapsed:?} was not cut at the 1s header timeout"
    );
}

#[test]
fn silent_connection_is_closed_after_the_idle_timeout() {
    let (_origin, proxy) = start("timeouts:\n  idle: 500ms\n");
    let mut client = Client::connect(proxy.addr());
    let started = Instant::now();
    expect_closed(&mut client);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed too early: {:?}",
        started.elapsed()
    );
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let (_origin, proxy) = start("timeouts:\n  idle: 500ms\n");
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/hello").body, HELLO);
    let started = Instant::now();
    expect_closed(&mut client);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "idle connection closed after only {elapsed:?}"
    );
}

#[test]
fn http10_request_is_answered_and_closed() {
    let (_origin, proxy) = start("");
    let mut client = Client::connect(proxy.addr());
    client.send_raw(b"GET /hello HTTP/1.0\r\nHost: t\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, HELLO);
    expect_closed(&mut client);
}

#[test]
fn drain_deadline_bounds_the_exit() {
    let (origin, mut proxy) = start("timeouts:\n  drain: 1s\n");
    let addr = proxy.addr();
    let slow = thread::spawn(move || {
        let mut client = Client::connect(addr);
        client.send_request("GET", "/delay/6000", &[], b"");
        client.try_read_response().map(|r| r.status)
    });
    origin.wait_requests(1, Duration::from_secs(5));
    let signalled = Instant::now();
    proxy.sigterm();
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(5));
    let elapsed = signalled.elapsed();
    assert!(status.success(), "exit status {status}:\n{stderr}");
    assert!(
        elapsed < Duration::from_millis(2500),
        "drain: 1s, but the process took {elapsed:?} to exit"
    );
    // The request that outlived the drain did not get a 200.
    assert_ne!(slow.join().unwrap().ok(), Some(200));
}

#[test]
fn sigint_drains_like_sigterm() {
    let (origin, mut proxy) = start("timeouts:\n  drain: 5s\n");
    let addr = proxy.addr();
    let slow = thread::spawn(move || {
        let mut client = Client::connect(addr);
        client.send_request("GET", "/delay/500", &[], b"");
        client.try_read_response().map(|r| r.status)
    });
    origin.wait_requests(1, Duration::from_secs(5));
    proxy.signal(libc::SIGINT);
    assert_eq!(slow.join().unwrap().ok(), Some(200));
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit status {status}:\n{stderr}");
    assert!(stderr.contains("ringway: stopped"), "{stderr}");
}

#[test]
fn no_new_requests_are_served_while_draining() {
    let (origin, mut proxy) = start("timeouts:\n  drain: 5s\n");
    let addr = proxy.addr();
    let slow = thread::spawn(move || {
        let mut client = Client::connect(addr);
        client.send_request("GET", "/delay/1500", &[], b"");
        client.try_read_response().map(|r| r.status)
    });
    origin.wait_requests(1, Duration::from_secs(5));
    proxy.sigterm();
    thread::sleep(Duration::from_millis(300));
    let late = Client::try_connect(addr).and_then(|mut client| {
        client.send_request("GET", "/hello", &[], b"");
        client.try_read_response()
    });
    if let Ok(response) = &late {
        assert_ne!(
            response.status, 200,
            "a connection opened after SIGTERM was served"
        );
    }
    assert_eq!(slow.join().unwrap().ok(), Some(200));
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit status {status}:\n{stderr}");
    assert_eq!(origin.requests(), 1, "the late request reached the origin");
}
