//! Header handling through the real binary: forwarded headers, hop-by-hop removal both ways,
//! verbatim targets and methods, large and repeated headers.

use ringway_tests::{assert_hello, proxy_to, Client, Origin};

#[test]
fn forwarded_headers_are_added() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());

    assert_eq!(
        client
            .request("GET", "/plain", &[("Host", "shop.example:8080")], b"")
            .status,
        200
    );
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.header_joined("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("shop.example:8080"));
    assert_eq!(seen.header_joined("via").as_deref(), Some("1.1 ringway"));
    let generated = seen
        .header("x-request-id")
        .expect("X-Request-Id generated")
        .to_string();
    assert!(!generated.is_empty());

    client.request(
        "GET",
        "/appended",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("Via", "1.0 edge"),
            ("X-Request-Id", "req-abc-123"),
        ],
        b"",
    );
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.header_joined("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(
        seen.header_joined("via").as_deref(),
        Some("1.0 edge, 1.1 ringway")
    );
    assert_eq!(seen.header_all("x-request-id"), vec!["req-abc-123"]);

    client.get("/third");
    let third = origin.last_request().unwrap();
    let another = third
        .header("x-request-id")
        .expect("X-Request-Id generated");
    assert_ne!(another, generated, "request ids must differ per request");
}

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response = Client::connect(proxy.addr()).request(
        "GET",
        "/hop-request",
        &[
            ("Connection", "keep-alive, x-foo"),
            ("X-Foo", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "x-checksum"),
            ("X-End-To-End", "kept"),
        ],
        b"",
    );
    assert_eq!(response.status, 200);
    let seen = origin.last_request().unwrap();
    for name in ["x-foo", "keep-alive", "proxy-connection", "te", "trailer"] {
        assert_eq!(
            seen.header(name),
            None,
            "{name} reached the origin: {:?}",
            seen.headers
        );
    }
    // Connection itself may only carry the proxy's own options, never the client's list.
    for value in seen.header_all("connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-foo"),
            "Connection: {value} reached the origin"
        );
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
}

#[test]
fn upgrade_header_without_upgrade_connection_is_removed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response =
        Client::connect(proxy.addr()).request("GET", "/no-upgrade", &[("Upgrade", "foo/1")], b"");
    assert_eq!(response.status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("upgrade"), None, "{:?}", seen.headers);
}

#[test]
fn hop_by_hop_response_headers_are_removed() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/hop");
    assert_eq!(response.status, 200);
    for name in ["x-bar", "keep-alive", "proxy-connection"] {
        assert_eq!(
            response.header(name),
            None,
            "{name} reached the client: {:?}",
            response.headers
        );
    }
    assert_eq!(response.header("x-kept"), Some("yes"));
    assert_hello(&client.get("/hello"));
}

#[test]
fn request_target_and_method_are_forwarded_verbatim() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let mut client = Client::connect(proxy.addr());
    let cases = [
        ("GET", "/path%20with%2Fescapes?a=%2F&b=c+d&a=2"),
        ("DELETE", "/items/7"),
        ("OPTIONS", "/cors"),
        ("PURGE", "/cache/key"),
        ("GET", "/trailing/?"),
        ("GET", "/dots/./../x"),
    ];
    let mut mismatches = Vec::new();
    for (method, target) in cases {
        let response = client.request(method, target, &[], b"");
        assert_eq!(
            response.status,
            200,
            "{method} {target}: {}",
            response.text()
        );
        let seen = origin.last_request().unwrap();
        if (seen.method.as_str(), seen.target.as_str()) != (method, target) {
            mismatches.push(format!(
                "sent {method} {target}, origin got {} {}",
                seen.method, seen.target
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    for method in ["PUT", "PATCH", "POST"] {
        let response = client.request(method, "/echo", &[], b"payload");
        assert_eq!(response.body, b"payload", "{method}");
        assert_eq!(origin.last_request().unwrap().method, method);
    }
    let empty = client.request("POST", "/echo", &[("Content-Length", "0")], b"");
    assert_eq!((empty.status, empty.body.len()), (200, 0));
    let get_with_body = client.request("GET", "/echo", &[], b"get body");
    assert_eq!(get_with_body.body, b"get body");
}

#[test]
fn large_request_header_is_forwarded_intact() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let value: String = (0..10_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let response =
        Client::connect(proxy.addr()).request("GET", "/big-header", &[("X-Big", &value)], b"");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        origin.last_request().unwrap().header("x-big"),
        Some(value.as_str())
    );
}

#[test]
fn repeated_response_headers_stay_separate() {
    let origin = Origin::start("a");
    let proxy = proxy_to(&origin);
    let response = Client::connect(proxy.addr()).get("/cookies");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header_all("set-cookie"),
        vec!["a=1; Path=/", "b=2, with comma; Path=/"]
    );
}
