//! The `retry` policy through the real binary: retries on statuses with back-off, the count,
//! buffered bodies of non-idempotent requests, `Retry-After`, connect failures on every
//! target, and the retry budget. The origin here answers from a script of statuses and
//! records every request it gets, so each retry is visible at the origin.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ringway_tests::{closed_port, Client, Ringway};

/// Every request the origin got: (method, body).
type Log = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
/// The statuses still to give (last first), each with its `Retry-After`.
type Script = Arc<Mutex<Vec<(u16, Option<String>)>>>;

/// An origin that answers with the scripted statuses in turn (then 200), each with the
/// optional `Retry-After`, and records (method, body) of every request.
struct Flaky {
    addr: SocketAddr,
    seen: Log,
}

impl Flaky {
    fn start(script: &[(u16, Option<&str>)]) -> Flaky {
        Flaky::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    fn start_on(listener: TcpListener, script: &[(u16, Option<&str>)]) -> Flaky {
        let addr = listener.local_addr().unwrap();
        let seen: Log = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(Mutex::new(
            script
                .iter()
                .rev()
                .map(|(s, r)| (*s, r.map(str::to_string)))
                .collect(),
        ));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let method = line.split(' ').next().unwrap_or_default().to_string();
                        let mut length = 0;
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            if h == "\r\n" {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        log.lock().unwrap().push((method, body));
                        let (status, retry_after) =
                            script.lock().unwrap().pop().unwrap_or((200, None));
                        let extra = retry_after
                            .map(|r| format!("retry-after: {r}\r\n"))
                            .unwrap_or_default();
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\n{extra}content-length: 7\r\n\r\nstatus\n"
                        );
                        if writer.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Flaky { addr, seen }
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.seen.lock().unwrap().clone()
    }
}

fn gateway(target: SocketAddr, retry: &str) -> Ringway {
    Ringway::start(&format!(
        "workers: 1\n\
         listeners: [{{ address: 127.0.0.1:0 }}]\n\
         backends: [{{ name: b, targets: [{{ url: \"http://{target}\" }}] }}]\n\
         routes: [{{ name: all, backend: b }}]\n\
         policies:\n  backend:\n    - retry: {retry}\n"
    ))
}

#[test]
fn a_failing_status_is_retried_with_back_off_until_it_succeeds() {
    let origin = Flaky::start(&[(503, None), (502, None)]);
    let proxy = gateway(origin.addr, "{ count: 3, interval: 100ms }");
    let mut c = Client::connect(proxy.addr());
    let t = Instant::now();
    let r = c.get("/x");
    assert_eq!(r.status, 200);
    assert_eq!(
        origin.requests().len(),
        3,
        "two retries visible at the origin"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "waited the interval twice"
    );
}

#[test]
fn retries_stop_at_count_and_the_last_answer_goes_back() {
    let origin = Flaky::start(&[(503, None); 10]);
    let proxy = gateway(origin.addr, "{ count: 2, interval: 10ms }");
    let mut c = Client::connect(proxy.addr());
    let r = c.get("/x");
    assert_eq!(r.status, 503);
    assert_eq!(origin.requests().len(), 3);
    // Statuses the policy does not name are not retried.
    let other = Flaky::start(&[(500, None)]);
    let proxy = gateway(other.addr, "{ count: 2, interval: 10ms }");
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/x").status, 500);
    assert_eq!(other.requests().len(), 1);
}

#[test]
fn a_buffered_post_is_sent_again_whole() {
    let origin = Flaky::start(&[(503, None)]);
    let proxy = gateway(
        origin.addr,
        "{ count: 1, interval: 10ms, max_buffered_body: 64KiB }",
    );
    let mut c = Client::connect(proxy.addr());
    let body = vec![b'p'; 40_000];
    let r = c.request("POST", "/orders", &[], &body);
    assert_eq!(r.status, 200);
    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    for (method, got) in seen {
        assert_eq!(method, "POST");
        assert_eq!(got, body, "each try carries the whole body");
    }
}

#[test]
fn a_body_over_the_buffer_limit_is_streamed_and_not_retried() {
    let origin = Flaky::start(&[(503, None)]);
    let proxy = gateway(
        origin.addr,
        "{ count: 2, interval: 10ms, max_buffered_body: 1KiB }",
    );
    let mut c = Client::connect(proxy.addr());
    let body = vec![b'p'; 200_000];
    let r = c.request("POST", "/upload", &[], &body);
    assert_eq!(r.status, 503);
    assert_eq!(origin.requests().len(), 1);
    assert_eq!(origin.requests()[0].1.len(), body.len());
}

#[test]
fn retry_after_sets_the_wait() {
    let origin = Flaky::start(&[(429, Some("1"))]);
    let proxy = gateway(
        origin.addr,
        "{ count: 1, interval: 10ms, condition: { statuses: [429] } }",
    );
    let mut c = Client::connect(proxy.addr());
    let t = Instant::now();
    assert_eq!(c.get("/x").status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(origin.requests().len(), 2);
}

#[test]
fn a_target_that_refuses_connections_is_tried_again_after_the_pause() {
    // Nothing listens at first; the origin comes up while the gateway waits to retry.
    let addr = closed_port();
    let proxy = gateway(addr, "{ count: 5, interval: 200ms }");
    let starter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        Flaky::start_on(TcpListener::bind(addr).unwrap(), &[])
    });
    let mut c = Client::connect(proxy.addr());
    let t = Instant::now();
    let r = c.get("/x");
    let origin = starter.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(origin.requests().len(), 1);

    // With every retry spent, the connect failure is the answer.
    let dead = closed_port();
    let proxy = gateway(dead, "{ count: 2, interval: 50ms }");
    let mut c = Client::connect(proxy.addr());
    let t = Instant::now();
    assert_eq!(c.get("/x").status, 502);
    assert!(t.elapsed() >= Duration::from_millis(100));
}

#[test]
fn the_retry_budget_caps_retries_to_a_share_of_traffic() {
    let origin = Flaky::start(&[(503, None); 100]);
    let proxy = gateway(
        origin.addr,
        "{ count: 1, interval: 1ms, budget: { percent: 0, min_per_second: 1 } }",
    );
    let mut c = Client::connect(proxy.addr());
    for _ in 0..30 {
        assert_eq!(c.get("/x").status, 503);
    }
    let retries = origin.requests().len() - 30;
    // 0 % of traffic, plus one a second over the budget's 10 s: at most 10.
    assert!(
        (1..=10).contains(&retries),
        "{retries} retries for 30 failing requests"
    );
}
