//! Process-level hardening through the real binary:
//!
//! - configuration maxima: durations, sizes and counts past their bounds are refused by
//!   `ringway check` and by `ringway run`, with the key named;
//! - header edits and `return_response` headers may not touch framing, connection management or
//!   `Host`; rewritten paths may hold only URL path characters; `upgrades` names tokens and
//!   never `h2c`;
//! - a worker that panics ends the process with status 70 and a message naming it, and no
//!   client hangs meanwhile;
//! - SIGHUP reloads the file (an unchanged one: nothing), SIGUSR1 without an access log is
//!   logged and ignored (SIGUSR2 upgrades: upgrade.rs); SIGTERM still drains;
//! - a second instance on an address already in use refuses to start;
//! - local answers send `100 Continue` to a client that waits for it;
//! - 413, 414 and 431 carry their JSON error codes;
//! - a response in flight when the drain starts says `Connection: close`;
//! - per-worker and per-listener connection limits hold new clients in the backlog;
//! - accept failures at the descriptor limit are logged at most about once a second.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ringway_tests::process::{parse_listeners, ringway_bin};
use ringway_tests::{
    assert_hello, closed_port, expect_closed, forward_all_config, json_error_code, run_ringway,
    Client, Origin, Ringway, TempDir, IO_TIMEOUT,
};

const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener on port 0 and one backend `a` (nothing needs to listen on its target).
const BASE: &str = "listeners:\n  - address: 127.0.0.1:0\n\
                    backends:\n  - name: a\n    targets:\n      - url: http://127.0.0.1:9\n";

fn output_of(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `ringway ARGS... FILE` on `yaml` written to a file and returns the file's path, the exit
/// code and the output.
fn run_on_file(args: &[&str], yaml: &str) -> (String, Option<i32>, String) {
    let dir = TempDir::new();
    let path = dir.write("ringway.yaml", yaml);
    let path = path.to_str().expect("UTF-8 temp path").to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&path);
    let output = run_ringway(&all, &[], CHECK_TIMEOUT);
    (path, output.status.code(), output_of(&output))
}

/// Asserts that `ringway check` refuses `yaml` with status 1 and a line
/// `FILE: KEY: ...` that contains `needle`.
fn check_refuses(yaml: &str, key: &str, needle: &str) {
    let (path, code, text) = run_on_file(&["check"], yaml);
    assert_eq!(
        code,
        Some(1),
        "`ringway check` exit status for\n{yaml}\noutput:\n{text}"
    );
    let prefix = format!("{path}: {key}:");
    assert!(
        text.lines()
            .any(|l| l.trim().starts_with(&prefix) && l.contains(needle)),
        "no line starting with {prefix:?} and containing {needle:?} for\n{yaml}\noutput:\n{text}"
    );
}

/// Asserts that `ringway check` accepts `yaml`.
fn check_accepts(yaml: &str) {
    let (_, code, text) = run_on_file(&["check"], yaml);
    assert_eq!(
        code,
        Some(0),
        "`ringway check` refused\n{yaml}\noutput:\n{text}"
    );
}

/// Asserts that `ringway run --config` refuses to start on `yaml`, naming `key`.
fn run_refuses(yaml: &str, key: &str, needle: &str) {
    let (path, code, text) = run_on_file(&["run", "--config"], yaml);
    assert_eq!(
        code,
        Some(1),
        "`ringway run` exit status for\n{yaml}\noutput:\n{text}"
    );
    let prefix = format!("{path}: {key}:");
    assert!(
        text.lines()
            .any(|l| l.trim().starts_with(&prefix) && l.contains(needle)),
        "no line starting with {prefix:?} and containing {needle:?} for\n{yaml}\noutput:\n{text}"
    );
    assert!(
        !text.contains("ringway: ready"),
        "ringway started on a refused config:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Configuration maxima
// ---------------------------------------------------------------------------------------------

/// `(section YAML, key, expected text)`: each value is past its maximum.
const OUT_OF_RANGE: &[(&str, &str, &str)] = &[
    (
        "timeouts:\n  upstream_connect: 18446744073709551615ms\n",
        "timeouts.upstream_connect",
        "must be at most 1h",
    ),
    (
        "timeouts:\n  idle: 100000h\n",
        "timeouts.idle",
        "must be at most 24h",
    ),
    (
        "timeouts:\n  header: 61m\n",
        "timeouts.header",
        "must be at most 1h",
    ),
    (
        "timeouts:\n  upstream_response: 25h\n",
        "timeouts.upstream_response",
        "must be at most 24h",
    ),
    (
        "timeouts:\n  request: 25h\n",
        "timeouts.request",
        "must be at most 24h",
    ),
    (
        "timeouts:\n  drain: 2h\n",
        "timeouts.drain",
        "must be at most 1h",
    ),
    (
        "timeouts:\n  tunnel_idle: 169h\n",
        "timeouts.tunnel_idle",
        "must be at most 168h",
    ),
    (
        "limits:\n  max_header_bytes: 1GiB\n",
        "limits.max_header_bytes",
        "must be at most 1048576",
    ),
    (
        "limits:\n  max_headers: 100000\n",
        "limits.max_headers",
        "must be at most 256",
    ),
    (
        "limits:\n  max_uri_bytes: 2MiB\n",
        "limits.max_uri_bytes",
        "must be at most 1048576",
    ),
    (
        "limits:\n  max_body_bytes: 1125899906842625\n",
        "limits.max_body_bytes",
        "must be at most 1125899906842624",
    ),
    (
        "limits:\n  max_connections_per_worker: 1048577\n",
        "limits.max_connections_per_worker",
        "must be from 1 to 1048576",
    ),
    (
        "limits:\n  max_connections_per_worker: 0\n",
        "limits.max_connections_per_worker",
        "must be from 1 to 1048576",
    ),
];

#[test]
fn check_refuses_values_past_their_maxima() {
    for (section, key, needle) in OUT_OF_RANGE {
        check_refuses(&format!("{BASE}{section}"), key, needle);
    }
}

#[test]
fn run_refuses_to_start_with_values_past_their_maxima() {
    for (section, key, needle) in OUT_OF_RANGE {
        run_refuses(&format!("{BASE}{section}"), key, needle);
    }
}

#[test]
fn check_refuses_listener_and_backend_values_past_their_maxima() {
    check_refuses(
        "listeners:\n  - address: 127.0.0.1:0\n    max_connections: 0\n",
        "listeners[0].max_connections",
        "must be from 1 to 1048576",
    );
    let backend = |extra: &str| {
        format!(
            "listeners:\n  - address: 127.0.0.1:0\n\
             backends:\n  - name: a\n    targets:\n      - url: http://127.0.0.1:9\n{extra}"
        )
    };
    check_refuses(
        &backend("    pool:\n      idle_timeout: 25h\n"),
        "backends[0].pool.idle_timeout",
        "must be at most 24h",
    );
    check_refuses(
        &backend("    pool:\n      max_idle_per_target: 10001\n"),
        "backends[0].pool.max_idle_per_target",
        "must be at most 10000",
    );
    check_refuses(
        &backend("    unavailable_for: 25h\n"),
        "backends[0].unavailable_for",
        "must be at most 24h",
    );
}

#[test]
fn check_accepts_values_at_their_maxima() {
    check_accepts(&format!(
        "{BASE}timeouts:\n  upstream_connect: 1h\n  header: 1h\n  idle: 24h\n  \
         upstream_response: 24h\n  request: 24h\n  drain: 1h\n  tunnel_idle: 168h\n\
         limits:\n  max_header_bytes: 1MiB\n  max_headers: 256\n  max_uri_bytes: 1MiB\n  \
         max_body_bytes: 1125899906842624\n  max_connections_per_worker: 1048576\n"
    ));
}

// ---------------------------------------------------------------------------------------------
// 5. Header edits, rewrites, upgrades
// ---------------------------------------------------------------------------------------------

/// Header names no configuration may edit, in assorted cases.
const MANAGED: &[&str] = &["content-length", "Transfer-Encoding", "CONNECTION", "Host"];

/// A route to backend `a` with `filters` (indented for the route's `filters:` key).
fn route_with_filters(filters: &str) -> String {
    format!("{BASE}routes:\n  - backend: a\n    filters:\n{filters}")
}

fn header_filter_cases(which: &str) {
    for name in MANAGED {
        for key in ["set", "add"] {
            let yaml = route_with_filters(&format!(
                "      {which}:\n        {key}:\n          {name}: \"5\"\n"
            ));
            check_refuses(
                &yaml,
                &format!("routes[0].filters.{which}.{key}"),
                &format!("{name:?} cannot be edited"),
            );
        }
        let yaml = route_with_filters(&format!(
            "      {which}:\n        remove:\n          - {name}\n"
        ));
        check_refuses(
            &yaml,
            &format!("routes[0].filters.{which}.remove[0]"),
            &format!("{name:?} cannot be edited"),
        );
    }
    // Ordinary names pass.
    check_accepts(&route_with_filters(&format!(
        "      {which}:\n        set:\n          X-Set: \"1\"\n        add:\n          X-Add: \"2\"\n        \
         remove:\n          - X-Remove\n"
    )));
}

#[test]
fn request_header_edits_of_managed_headers_are_refused() {
    header_filter_cases("request_headers");
}

#[test]
fn response_header_edits_of_managed_headers_are_refused() {
    header_filter_cases("response_headers");
}

#[test]
fn return_response_headers_may_not_be_managed_headers() {
    for name in MANAGED {
        let yaml = format!(
            "{BASE}routes:\n  - return_response:\n      status: 200\n      body: hi\n      \
             headers:\n        {name}: \"5\"\n"
        );
        check_refuses(
            &yaml,
            "routes[0].return_response.headers",
            &format!("{name:?} cannot be edited"),
        );
    }
    check_accepts(&format!(
        "{BASE}routes:\n  - return_response:\n      status: 200\n      body: hi\n      \
         headers:\n        Content-Type: text/plain\n"
    ));
}

#[test]
fn rewrites_hold_only_url_path_characters() {
    // Written as YAML double-quoted strings, so that the escapes reach the file as such.
    let bad = [
        r#""/a b""#,
        r#""/a\x01b""#,
        r#""/a\tb""#,
        r#""/a?b""#,
        r##""/a#b""##,
    ];
    for kind in ["path", "prefix"] {
        for value in bad {
            let yaml = route_with_filters(&format!("      rewrite:\n        {kind}: {value}\n"));
            check_refuses(
                &yaml,
                &format!("routes[0].filters.rewrite.{kind}"),
                "a rewritten path may hold only URL path characters",
            );
        }
        check_accepts(&route_with_filters(&format!(
            "      rewrite:\n        {kind}: \"/v2/a-b_c.d~e%20f\"\n"
        )));
    }
}

#[test]
fn upgrades_must_be_tokens_and_not_h2c() {
    check_refuses(&format!("{BASE}upgrades: [h2c]\n"), "upgrades[0]", "h2c");
    check_refuses(&format!("{BASE}upgrades: [H2C]\n"), "upgrades[0]", "h2c");
    check_refuses(
        &format!("{BASE}upgrades: [websocket, \"bad token\"]\n"),
        "upgrades[1]",
        "is not a protocol name",
    );
    check_accepts(&format!("{BASE}upgrades: [websocket]\n"));
}

// ---------------------------------------------------------------------------------------------
// 2. Worker death
// ---------------------------------------------------------------------------------------------

const PANIC_ENV: &[(&str, &str)] = &[("RINGWAY_TEST_PANIC_PATH", "/__panic")];

/// Whether an I/O error is a read timeout (the peer neither answered nor closed).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A client that sends one GET and reports what happened: an answer, or a refused, reset or
/// closed connection. A timeout (a hang) fails the test.
fn get_without_hanging(addr: SocketAddr, target: &str, timeout: Duration) -> Result<u16, String> {
    let mut client = match Client::try_connect(addr) {
        Ok(c) => c,
        Err(e) => return Err(format!("connect: {e}")),
    };
    client.set_read_timeout(timeout);
    let sent = client
        .wire()
        .write_all(format!("GET {target} HTTP/1.1\r\nHost: ringway.test\r\n\r\n").as_bytes());
    if let Err(e) = sent {
        return Err(format!("write: {e}"));
    }
    match client.try_read_response() {
        Ok(r) => Ok(r.status),
        Err(e) if is_timeout(&e) => {
            panic!("GET {target}: no answer and no close within {timeout:?}: the client hangs")
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

fn worker_panic_exits_70(workers: usize) {
    let origin = Origin::start("a");
    let mut proxy = Ringway::start_with_env(
        &forward_all_config(workers, &[&origin.url()], "timeouts:\n  drain: 2s\n"),
        PANIC_ENV,
    );
    proxy.report_panics_myself();
    let addr = proxy.addr();
    assert_hello(&Client::connect(addr).get("/hello"));

    let started = Instant::now();
    let panicking =
        thread::spawn(move || get_without_hanging(addr, "/__panic", Duration::from_secs(8)));
    // Other clients while the worker dies and the process exits: each gets an answer or a
    // closed connection, never silence.
    let others: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(20 * i));
                get_without_hanging(addr, "/hello", Duration::from_secs(8))
            })
        })
        .collect();
    let outcome = panicking.join().expect("the panicking client's thread");
    assert!(
        outcome.is_err(),
        "the request that panicked the worker got an answer: {outcome:?}"
    );
    for (i, other) in others.into_iter().enumerate() {
        match other.join().expect("client thread") {
            Ok(status) => assert_eq!(status, 200, "client {i}"),
            Err(_closed_or_refused) => {}
        }
    }
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(70), "exit status {status}:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the process took {:?} to exit after the panic:\n{stderr}",
        started.elapsed()
    );
    let died = stderr
        .lines()
        .find(|l| l.contains("died"))
        .unwrap_or_else(|| panic!("no line says a worker died:\n{stderr}"));
    let named = (0..workers).any(|w| died.contains(&format!("worker {w} died")));
    assert!(named, "the line does not name the worker: {died}");
    assert!(
        died.contains("injected"),
        "the line does not carry the panic message: {died}"
    );
    if workers == 1 {
        assert!(died.contains("worker 0 died"), "{died}");
    }
}

#[test]
fn a_worker_panic_exits_70_with_one_worker() {
    worker_panic_exits_70(1);
}

#[test]
fn a_worker_panic_exits_70_with_two_workers() {
    worker_panic_exits_70(2);
}

// ---------------------------------------------------------------------------------------------
// 3. Signals
// ---------------------------------------------------------------------------------------------

#[test]
fn hup_reloads_and_usr_signals_are_logged_and_ignored() {
    let origin = Origin::start("a");
    let mut proxy = Ringway::start(&forward_all_config(1, &[&origin.url()], ""));
    let mut kept = Client::connect(proxy.addr());
    assert_hello(&kept.get("/hello"));
    // SIGHUP reloads the file (here unchanged, so nothing switches); SIGUSR1 reopens the access
    // log, of which this configuration has none. (SIGUSR2 upgrades: tests/tests/upgrade.rs.)
    for (signal, expected) in [
        (libc::SIGHUP, "is unchanged; nothing to reload"),
        (libc::SIGUSR1, "SIGUSR1: ignored"),
    ] {
        proxy.signal(signal);
        let expected = expected.to_string();
        proxy.wait_for_output(Duration::from_secs(5), &expected, |text| {
            text.contains(&expected)
        });
        // Still serving, on the open connection and on a new one.
        assert_hello(&kept.get("/hello"));
        assert_hello(&Client::connect(proxy.addr()).get("/hello"));
    }
    proxy.sigterm();
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}:\n{stderr}");
    assert!(stderr.contains("SIGTERM: draining"), "{stderr}");
    assert!(stderr.contains("ringway: stopped"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// 4. Address in use
// ---------------------------------------------------------------------------------------------

fn listener_config(addr: SocketAddr) -> String {
    format!(
        "workers: 1\nlisteners:\n  - address: {addr}\n\
         routes:\n  - return_response:\n      status: 200\n      body: first\n"
    )
}

#[test]
fn a_second_instance_on_the_same_address_refuses_to_start() {
    let addr = closed_port();
    let first = Ringway::start(&listener_config(addr));
    assert_eq!(first.addr(), addr);
    assert_eq!(Client::connect(addr).get("/").text(), "first");

    let (_, code, text) = run_on_file(&["run", "--config"], &listener_config(addr));
    assert_eq!(code, Some(1), "the second instance:\n{text}");
    assert!(
        text.contains("address in use"),
        "the second instance does not say why:\n{text}"
    );
    assert!(!text.contains("ringway: ready"), "{text}");

    // Every new connection still reaches the first instance.
    for i in 0..20 {
        let response = Client::connect(addr).get("/");
        assert_eq!(response.status, 200, "request {i}");
        assert_eq!(response.text(), "first", "request {i}");
    }
}

#[test]
fn a_port_held_by_another_listener_refuses_to_start() {
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    let addr = holder.local_addr().expect("its address");
    let (_, code, text) = run_on_file(&["run", "--config"], &listener_config(addr));
    assert_eq!(code, Some(1), "ringway on a held port:\n{text}");
    assert!(
        text.contains("address in use"),
        "ringway does not say why:\n{text}"
    );
    assert!(!text.contains("ringway: ready"), "{text}");
    // The holder still gets the connections.
    let _client = TcpStream::connect(addr).expect("connect to the holder");
    let (_accepted, _) = holder.accept().expect("the holder accepts");
}

// ---------------------------------------------------------------------------------------------
// 6. Expect: 100-continue on local answers
// ---------------------------------------------------------------------------------------------

const LOCAL_ROUTE: &str = "workers: 1\nlisteners:\n  - address: 127.0.0.1:0\n\
    routes:\n  - matches:\n      - path:\n          type: prefix\n          value: /local\n    \
    return_response:\n      status: 200\n      body: local\n";

/// Sends a POST with `Expect: 100-continue` and withholds its 5-byte body until the interim
/// answer came; returns the final response. The connection must stay usable.
fn expect_continue_then_body(client: &mut Client, target: &str) -> ringway_tests::Response {
    client.send_raw(
        format!(
            "POST {target} HTTP/1.1\r\nHost: ringway.test\r\nExpect: 100-continue\r\n\
             Content-Length: 5\r\n\r\n"
        )
        .as_bytes(),
    );
    client.set_read_timeout(Duration::from_millis(500));
    let interim = client.wire().read_head(64 * 1024).unwrap_or_else(|e| {
        panic!("POST {target} with Expect: 100-continue: no interim answer within 500ms: {e}")
    });
    let interim = interim.expect("the connection closed instead of sending 100 Continue");
    assert!(
        interim.starts_with(b"HTTP/1.1 100 "),
        "expected `HTTP/1.1 100 Continue` first, got {:?}",
        String::from_utf8_lossy(&interim)
    );
    client.set_read_timeout(IO_TIMEOUT);
    client.send_raw(b"hello");
    client
        .read_response_to("POST")
        .unwrap_or_else(|e| panic!("POST {target}: final response: {e}"))
}

#[test]
fn a_local_answer_sends_100_continue() {
    let proxy = Ringway::start(LOCAL_ROUTE);
    // A first exchange, so the timing below measures only the answer.
    assert_eq!(Client::connect(proxy.addr()).get("/local").text(), "local");
    let mut client = Client::connect(proxy.addr());
    let response = expect_continue_then_body(&mut client, "/local");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "local");
    assert!(!response.closes(), "{:?}", response.headers);
    let again = client.get("/local");
    assert_eq!(again.status, 200, "second request on the connection");
    assert_eq!(again.text(), "local");
}

#[test]
fn no_route_sends_100_continue() {
    let proxy = Ringway::start(LOCAL_ROUTE);
    assert_eq!(Client::connect(proxy.addr()).get("/local").text(), "local");
    let mut client = Client::connect(proxy.addr());
    let response = expect_continue_then_body(&mut client, "/nowhere");
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(response.json_error().as_deref(), Some("no_route"));
    assert!(!response.closes(), "{:?}", response.headers);
    let again = client.get("/local");
    assert_eq!(again.status, 200, "second request on the connection");
    assert_eq!(again.text(), "local");
}

// ---------------------------------------------------------------------------------------------
// 7. Error codes of 413, 414 and 431
// ---------------------------------------------------------------------------------------------

#[test]
fn size_limits_answer_with_their_codes() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "limits:\n  max_uri_bytes: 1KiB\n  max_header_bytes: 4KiB\n  max_body_bytes: 1KiB\n",
    ));
    let addr = proxy.addr();
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(&ringway_tests::wire::encode_chunked(
        &[b'x'; 3000],
        500,
        &[],
    ));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "declared Content-Length over max_body_bytes",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n\r\n".to_vec(),
            413,
            "body_too_large",
        ),
        (
            "chunked body over max_body_bytes",
            chunked,
            413,
            "body_too_large",
        ),
        (
            "head over max_header_bytes",
            format!(
                "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "b".repeat(6000)
            )
            .into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "target over max_uri_bytes",
            format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(2000)).into_bytes(),
            414,
            "uri_too_long",
        ),
    ];
    for (what, raw, status, code) in cases {
        let mut client = Client::connect(addr);
        client.send_raw(&raw);
        let response = client
            .try_read_response()
            .unwrap_or_else(|e| panic!("{what}: reading the answer failed: {e}"));
        assert_eq!(response.status, status, "{what}: {}", response.text());
        assert_eq!(
            json_error_code(&response.body).as_deref(),
            Some(code),
            "{what}: body {:?}",
            response.text()
        );
    }
    assert_hello(&Client::connect(addr).get("/hello"));
}

// ---------------------------------------------------------------------------------------------
// 8. Drain with a request in flight on a keep-alive connection
// ---------------------------------------------------------------------------------------------

#[test]
fn a_response_in_flight_at_sigterm_closes_its_connection() {
    let origin = Origin::start("slow");
    let mut proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  drain: 8s\n",
    ));
    let mut client = Client::connect(proxy.addr());
    let first = client.get("/hello");
    assert_hello(&first);
    assert!(!first.closes(), "keep-alive before the drain");
    client.send_request("GET", "/delay/1500", &[], b"");
    origin.wait_requests(2, Duration::from_secs(5));
    // The origin answers 1.5 s from now; the drain starts within a few tens of milliseconds.
    proxy.sigterm();
    let response = client.read_response();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "delayed 1500ms\n");
    assert!(
        response.closes(),
        "a response finished during the drain must say Connection: close: {:?}",
        response.headers
    );
    expect_closed(&mut client);
    let (status, stderr) = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}:\n{stderr}");
}

// ---------------------------------------------------------------------------------------------
// 9. Connection limits
// ---------------------------------------------------------------------------------------------

fn local_answer_config(extra_listener: &str, extra: &str) -> String {
    format!(
        "workers: 1\nlisteners:\n  - address: 127.0.0.1:0\n{extra_listener}\
         routes:\n  - return_response:\n      status: 200\n      body: ok\n{extra}"
    )
}

/// Two keep-alive clients fill the limit; a third waits in the backlog unanswered until one of
/// the two leaves.
fn third_client_waits_for_a_slot(proxy: &Ringway) {
    let addr = proxy.addr();
    let mut a = Client::connect(addr);
    assert_eq!(a.get("/").status, 200);
    let mut b = Client::connect(addr);
    assert_eq!(b.get("/").status, 200);

    let mut c = Client::connect(addr);
    c.send_request("GET", "/", &[], b"");
    c.set_read_timeout(Duration::from_millis(1500));
    match c.try_read_response() {
        Err(e) if is_timeout(&e) => {}
        Err(e) => panic!("the third client was dropped instead of held: {e}"),
        Ok(r) => panic!(
            "the third client was served past the limit: {} {}",
            r.status,
            r.text()
        ),
    }
    // The two are still served meanwhile.
    assert_eq!(a.get("/").status, 200);
    assert_eq!(b.get("/").status, 200);

    drop(a);
    let freed = Instant::now();
    c.set_read_timeout(Duration::from_secs(5));
    let response = c
        .try_read_response()
        .unwrap_or_else(|e| panic!("the third client was not served once a slot freed: {e}"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        freed.elapsed() < Duration::from_secs(3),
        "the third client waited {:?} after a slot freed",
        freed.elapsed()
    );
    assert_eq!(b.get("/").status, 200);
}

#[test]
fn max_connections_per_worker_holds_new_clients_in_the_backlog() {
    let proxy = Ringway::start(&local_answer_config(
        "",
        "limits:\n  max_connections_per_worker: 2\n",
    ));
    let stderr = proxy.stderr_text();
    assert!(
        stderr.contains("each worker takes at most 2 connections"),
        "{stderr}"
    );
    third_client_waits_for_a_slot(&proxy);
}

#[test]
fn listener_max_connections_holds_new_clients_in_the_backlog() {
    let proxy = Ringway::start(&local_answer_config("    max_connections: 2\n", ""));
    let stderr = proxy.stderr_text();
    assert!(stderr.contains("each worker takes at most "), "{stderr}");
    third_client_waits_for_a_slot(&proxy);
}

// ---------------------------------------------------------------------------------------------
// 10. Accept failures at the descriptor limit
// ---------------------------------------------------------------------------------------------

/// A ringway started with RLIMIT_NOFILE set (soft and hard) before it runs, so it cannot raise
/// it. Collects stderr; killed when dropped.
struct Limited {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl Limited {
    fn start(yaml: &str, nofile: libc::rlim_t) -> (Limited, SocketAddr) {
        use std::os::unix::process::CommandExt;
        let dir = TempDir::new();
        let config = dir.write("ringway.yaml", yaml);
        let mut command = Command::new(ringway_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: setrlimit(2) is async-signal-safe and touches only the child's own limits.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn ringway");
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut limited = Limited {
            child,
            stderr,
            reader: Some(reader),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = limited.stderr_text();
            if text.lines().any(|l| l.starts_with("ringway: ready")) {
                let addr = parse_listeners(&text)
                    .first()
                    .unwrap_or_else(|| panic!("no listener line:\n{text}"))
                    .1;
                return (limited, addr);
            }
            if let Ok(Some(status)) = limited.child.try_wait() {
                thread::sleep(Duration::from_millis(50));
                panic!(
                    "ringway exited ({status}) before it was ready:\n{}",
                    limited.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ringway was not ready within 10s:\n{text}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if thread::panicking() {
            eprintln!("--- ringway output ---\n{}--- end ---", self.stderr_text());
        }
    }
}

/// A GET `/` on a fresh connection with a short read timeout: the status, or `None`.
fn try_get(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn accept_failures_at_the_descriptor_limit_are_logged_once_a_second() {
    let (proxy, addr) = Limited::start(
        &local_answer_config("", "limits:\n  max_connections_per_worker: 1000\n"),
        64,
    );
    assert_eq!(try_get(addr), Some(200), "{}", proxy.stderr_text());

    // More connections than 64 descriptors allow: the first few dozen are accepted and held
    // open (no request is sent on them); the rest wait in the backlog, and from then on every
    // accept fails with EMFILE. Connect until the first failure is logged.
    let mut clients = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_failure = loop {
        if proxy.stderr_text().contains("accept failed") {
            break Instant::now();
        }
        if clients.len() < 200 {
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                clients.push(stream);
            }
        } else {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            Instant::now() < deadline,
            "{} connections against 64 descriptors, and no accept failure was logged in 10s:\n{}",
            clients.len(),
            proxy.stderr_text()
        );
    };
    // A few more wait in the backlog, so that accepts keep failing.
    for _ in 0..20 {
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            clients.push(stream);
        }
    }
    // Watch the log for 2.5 s from the first failure: the accept loop retries every 5 to 500 ms,
    // so unthrottled there would be a dozen lines; at most one a second is logged.
    let window = Duration::from_millis(2500);
    thread::sleep(window.saturating_sub(first_failure.elapsed()));
    let stderr = proxy.stderr_text();
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    assert!(
        failures.len() <= 4,
        "{} `accept failed` lines in {window:?}; at most about one a second is expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        failures.iter().any(|l| l.contains("more like it")),
        "no line counts the failures held back:\n{}",
        failures.join("\n")
    );

    // Once the clients leave, the gateway answers again.
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if try_get(addr) == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not answer again within 10s of the clients leaving:\n{}",
            proxy.stderr_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let stderr = proxy.stderr_text();
    assert!(!stderr.contains("panicked at"), "{stderr}");
}

/// An origin that answers every request on its connection with `name` as the body.
fn named_origin(name: &'static str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A GET `/` on `stream` (kept open): the status and body, or `None`.
fn get_on(stream: &mut TcpStream) -> Option<(u16, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())?;
            if body.len() >= len {
                let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
                return Some((status, body[..len].to_string()));
            }
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_connect_that_fails_for_want_of_descriptors_marks_no_target_down() {
    let (a, b) = (named_origin("A"), named_origin("B"));
    // No pooled upstream connections: every request connects, so once the clients hold every
    // descriptor but one, the accept of the next client succeeds and its connect fails (EMFILE).
    let yaml = format!(
        "workers: 1\nlimits:\n  max_connections_per_worker: 1000\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: two\n    unavailable_for: 1h\n    pool:\n      max_idle_per_target: 0\n    targets:\n      - url: http://{a}\n      - url: http://{b}\n\
         routes:\n  - backend: two\n"
    );
    let (proxy, addr) = Limited::start(&yaml, 64);
    let mut clients = Vec::new();
    let mut overloaded = None;
    for _ in 0..80 {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            break;
        };
        match get_on(&mut stream) {
            Some((200, _)) => clients.push(stream),
            other => {
                overloaded = Some(other);
                break;
            }
        }
    }
    assert_eq!(
        overloaded.as_ref().map(|o| o.as_ref().map(|(s, _)| *s)),
        Some(Some(503)),
        "expected a 503 once descriptors ran out:\n{}",
        proxy.stderr_text()
    );
    // Descriptors back: both targets are still in rotation (a target marked down would be
    // skipped for the hour that `unavailable_for` says).
    clients.truncate(clients.len().saturating_sub(10));
    let mut client = TcpStream::connect(addr).unwrap();
    let bodies: Vec<String> = (0..4)
        .map(|_| get_on(&mut client).expect("answered").1)
        .collect();
    assert!(
        bodies.contains(&"A".to_string()) && bodies.contains(&"B".to_string()),
        "{bodies:?}\n{}",
        proxy.stderr_text()
    );
    assert!(proxy.stderr_text().contains("not marked down"));
}
