//! Basic proxying through the real binary: the smoke test, gateway errors for a dead or slow
//! origin, WebSocket and refused upgrades, many concurrent clients.

use std::time::{Duration, Instant};

use ringway_tests::websocket::{WsClient, OP_BINARY, OP_TEXT};
use ringway_tests::{
    assert_hello, closed_port, forward_all_config, pattern_bytes, proxy_to, Client, Origin, Ringway,
};

#[test]
fn smoke_get_hello() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response = Client::connect(proxy.addr()).get("/hello");
    assert_hello(&response);
    assert_eq!(response.header("x-origin"), Some("a"));
    assert_eq!(origin.requests(), 1);
}

#[test]
fn dead_target_gives_502_json() {
    let dead = closed_port();
    let proxy = Ringway::start(&forward_all_config(1, &[&format!("http://{dead}")], ""));
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/hello");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.json_error().is_some(),
        "502 body is not a JSON error: {:?}",
        response.text()
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "content-type {:?}",
        response.header("content-type")
    );
    // A gateway error on a well-formed request does not cost the client its connection.
    if !response.closes() {
        assert_eq!(client.get("/hello").status, 502);
    }
}

#[test]
fn slow_origin_gives_504_after_upstream_response_timeout() {
    let origin = Origin::start("slow");
    let proxy = Ringway::start(&forward_all_config(
        1,
        &[&origin.url()],
        "timeouts:\n  upstream_response: 500ms\n",
    ));
    let started = Instant::now();
    let response = Client::connect(proxy.addr()).get("/delay/3000");
    let elapsed = started.elapsed();
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(response.json_error().is_some(), "{:?}", response.text());
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(2500),
        "504 came after {elapsed:?}"
    );
    // Fast requests still pass.
    assert_hello(&Client::connect(proxy.addr()).get("/hello"));
}

#[test]
fn refused_upgrade_stays_http() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    // The origin answers an ordinary 200 (it only upgrades /ws).
    let response = client.request(
        "GET",
        "/hello",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    );
    assert_hello(&response);
    assert_hello(&client.get("/hello"));
}

#[test]
fn websocket_echo_through_the_proxy() {
    let origin = Origin::start("ws");
    let proxy = proxy_to(&origin);
    let mut ws = WsClient::connect(proxy.addr(), "/ws");
    assert!(ws
        .handshake
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    for i in 0..5 {
        let text = format!("message {i}");
        ws.send(OP_TEXT, text.as_bytes());
        let frame = ws.recv();
        assert_eq!(frame.opcode, OP_TEXT);
        assert_eq!(frame.payload, text.as_bytes());
    }
    let big = pattern_bytes(200_000);
    ws.send(OP_BINARY, &big);
    let frame = ws.recv();
    assert_eq!(frame.opcode, OP_BINARY);
    assert!(frame.payload == big, "binary frame differs");
    let seen = origin.last_request().unwrap();
    assert!(
        seen.header("upgrade").is_some(),
        "Upgrade was not forwarded: {:?}",
        seen.headers
    );
}

#[test]
fn many_concurrent_clients_are_all_served() {
    let origin = Origin::start("a");
    let proxy = Ringway::start(&forward_all_config(2, &[&origin.url()], ""));
    let addr = proxy.addr();
    let clients: Vec<_> = (0..50)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..20 {
                    let n = (c * 20 + i) % 97 + 1;
                    let response = client.get(&format!("/bytes/{n}"));
                    assert_eq!(response.status, 200);
                    assert_eq!(response.body, pattern_bytes(n), "client {c} request {i}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    assert_eq!(origin.requests(), 1000);
}

#[test]
fn websocket_frame_sent_with_the_handshake_is_relayed() {
    let origin = Origin::start("ws");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let key = ringway_tests::websocket::base64(b"ringway-test-key");
    let mut bytes = ringway_tests::client::build_request(
        "GET",
        "/ws",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", &key),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    );
    // The first frame rides in the same write as the handshake.
    bytes.extend_from_slice(&ringway_tests::websocket::encode_frame(
        OP_TEXT,
        b"early frame",
        Some([9, 8, 7, 6]),
    ));
    client.send_raw(&bytes);
    let handshake = client.read_response_to("GET").expect("handshake response");
    assert_eq!(handshake.status, 101, "{}", handshake.text());
    let frame = ringway_tests::websocket::read_frame(client.wire()).expect("echoed frame");
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (OP_TEXT, &b"early frame"[..])
    );
}

#[test]
fn websocket_close_propagates_both_ways() {
    let origin = Origin::start("ws");
    let proxy = proxy_to(&origin);

    // The client's close frame reaches the origin, whose close frame and hang-up come back.
    let mut ws = WsClient::connect(proxy.addr(), "/ws");
    ws.send(ringway_tests::websocket::OP_CLOSE, &1000u16.to_be_bytes());
    let frame = ws.recv();
    assert_eq!(frame.opcode, ringway_tests::websocket::OP_CLOSE);
    ringway_tests::expect_closed(&mut ws.client);

    // A client that just drops the connection: the origin's side is closed too.
    let mut ws = WsClient::connect(proxy.addr(), "/ws");
    ws.send(OP_TEXT, b"before the drop");
    assert_eq!(ws.recv().payload, b"before the drop");
    drop(ws);
    origin.wait_open_at_most(0, std::time::Duration::from_secs(3));
}
