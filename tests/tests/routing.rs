//! Routing through the real binary: host, path (exact, prefix, template, regex), method,
//! header and query matches and their precedence; 404; redirects; direct responses; header
//! filters; path rewrites. Which backend answered is read from the origin's `X-Origin`.

use ringway_tests::{Client, Origin, Response, Ringway};

struct Setup {
    a: Origin,
    _b: Origin,
    _c: Origin,
    proxy: Ringway,
}

fn start(routes: &str) -> Setup {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let c = Origin::start("c");
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n\
         \x20 - {{ name: a, targets: [{{ url: {} }}] }}\n\
         \x20 - {{ name: b, targets: [{{ url: {} }}] }}\n\
         \x20 - {{ name: c, targets: [{{ url: {} }}] }}\n\
         routes:\n{routes}",
        a.url(),
        b.url(),
        c.url()
    );
    let proxy = Ringway::start(&yaml);
    Setup {
        a,
        _b: b,
        _c: c,
        proxy,
    }
}

const MATCH_ROUTES: &str = r#"
  - hosts: [api.example.com]
    matches: [{ path: { type: prefix, value: /host } }]
    backend: a
  - hosts: ["*.example.com"]
    matches: [{ path: { type: prefix, value: /host } }]
    backend: b
  - matches: [{ path: { type: prefix, value: /host } }]
    backend: c
  - matches: [{ path: { type: exact, value: /exact } }]
    backend: a
  - matches: [{ path: { type: prefix, value: /pre } }]
    backend: b
  - matches: [{ path: { type: template, value: "/orders/{id}/items/{item}" } }]
    backend: c
  - matches: [{ path: { type: regex, value: "/re/[0-9]+" } }]
    backend: a
  - matches: [{ path: { type: prefix, value: /p } }]
    backend: a
  - matches: [{ path: { type: prefix, value: /p/long } }]
    backend: c
  - matches: [{ path: { type: exact, value: /p/x } }]
    backend: b
  - matches: [{ path: { type: exact, value: /m } }]
    backend: b
  - matches: [{ path: { type: exact, value: /m }, method: POST }]
    backend: a
  - matches: [{ path: { type: exact, value: /h } }]
    backend: c
  - matches: [{ path: { type: exact, value: /h }, headers: [{ name: x-version, value: "2" }] }]
    backend: a
  - matches: [{ path: { type: exact, value: /h }, headers: [{ name: x-tenant, type: regex, value: "^[a-z]+$" }] }]
    backend: b
  - matches: [{ path: { type: exact, value: /q } }]
    backend: c
  - matches: [{ path: { type: exact, value: /q }, query: [{ name: debug, value: "1" }] }]
    backend: a
  - matches:
      - path: { type: exact, value: /one }
      - { path: { type: exact, value: /two }, method: PUT }
    backend: b
"#;

/// Which origin answered `method target` with `headers`, or `404` when no route matched.
fn routed(client: &mut Client, method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let response = client.request(method, target, headers, b"");
    match response.status {
        200 => response
            .header("x-origin")
            .unwrap_or_else(|| panic!("200 without X-Origin for {method} {target}"))
            .to_string(),
        404 => {
            assert_eq!(
                response.json_error().as_deref(),
                Some("no_route"),
                "404 body for {method} {target}: {}",
                response.text()
            );
            "404".to_string()
        }
        other => panic!("{method} {target} answered {other}: {}", response.text()),
    }
}

fn get(client: &mut Client, target: &str) -> String {
    routed(client, "GET", target, &[])
}

#[test]
fn routes_by_host() {
    let setup = start(MATCH_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    let by_host =
        |client: &mut Client, host: &str| routed(client, "GET", "/host", &[("Host", host)]);
    assert_eq!(by_host(&mut client, "api.example.com"), "a");
    assert_eq!(
        by_host(&mut client, "API.Example.COM:9999"),
        "a",
        "host match is case-insensitive and ignores the port"
    );
    assert_eq!(by_host(&mut client, "x.example.com"), "b");
    assert_eq!(by_host(&mut client, "a.b.example.com"), "b");
    assert_eq!(
        by_host(&mut client, "example.com"),
        "c",
        "a wildcard needs one more label"
    );
    assert_eq!(by_host(&mut client, "other.test"), "c");
}

#[test]
fn routes_by_path_type() {
    let setup = start(MATCH_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    assert_eq!(get(&mut client, "/exact"), "a");
    assert_eq!(get(&mut client, "/exact?with=query"), "a");
    assert_eq!(get(&mut client, "/exact/more"), "404");

    assert_eq!(get(&mut client, "/pre"), "b");
    assert_eq!(get(&mut client, "/pre/"), "b");
    assert_eq!(get(&mut client, "/pre/deeper/still"), "b");
    assert_eq!(
        get(&mut client, "/prefix"),
        "404",
        "prefixes match whole segments"
    );

    assert_eq!(get(&mut client, "/orders/42/items/7"), "c");
    assert_eq!(get(&mut client, "/orders/42/items"), "404");
    assert_eq!(get(&mut client, "/orders/42/items/7/extra"), "404");

    assert_eq!(get(&mut client, "/re/123"), "a");
    assert_eq!(
        get(&mut client, "/re/123x"),
        "404",
        "a regex must match the whole path"
    );
    assert_eq!(get(&mut client, "/x/re/1"), "404");
}

#[test]
fn path_precedence_exact_then_longest_prefix() {
    let setup = start(MATCH_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    assert_eq!(get(&mut client, "/p/x"), "b", "exact beats prefix");
    assert_eq!(get(&mut client, "/p/y"), "a");
    assert_eq!(get(&mut client, "/p/long/z"), "c", "the longer prefix wins");
    assert_eq!(get(&mut client, "/p"), "a");
}

#[test]
fn routes_by_method_header_and_query() {
    let setup = start(MATCH_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    assert_eq!(
        routed(&mut client, "POST", "/m", &[("Content-Length", "0")]),
        "a"
    );
    assert_eq!(get(&mut client, "/m"), "b");

    assert_eq!(routed(&mut client, "GET", "/h", &[("X-Version", "2")]), "a");
    assert_eq!(routed(&mut client, "GET", "/h", &[("X-Version", "3")]), "c");
    assert_eq!(
        routed(&mut client, "GET", "/h", &[("X-Tenant", "acme")]),
        "b"
    );
    assert_eq!(
        routed(&mut client, "GET", "/h", &[("X-Tenant", "Acme1")]),
        "c"
    );
    assert_eq!(get(&mut client, "/h"), "c");

    assert_eq!(get(&mut client, "/q?debug=1"), "a");
    assert_eq!(get(&mut client, "/q?x=y&debug=1"), "a");
    assert_eq!(get(&mut client, "/q?debug=2"), "c");
    assert_eq!(get(&mut client, "/q"), "c");
}

#[test]
fn any_of_a_routes_matches_selects_it() {
    let setup = start(MATCH_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    assert_eq!(get(&mut client, "/one"), "b");
    assert_eq!(
        routed(&mut client, "PUT", "/two", &[("Content-Length", "0")]),
        "b"
    );
    assert_eq!(
        get(&mut client, "/two"),
        "404",
        "a match's conditions all apply"
    );
}

#[test]
fn no_route_is_404_json() {
    let setup = start(MATCH_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    let response = client.get("/nowhere?x=1");
    assert_eq!(response.status, 404);
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        response.headers
    );
    assert_eq!(response.json_error().as_deref(), Some("no_route"));
    assert_eq!(
        ringway_tests::json_string_field(&response.body, "message").as_deref(),
        Some("no route matches GET /nowhere")
    );
    // A 404 keeps the connection.
    assert_eq!(get(&mut client, "/exact"), "a");
}

const PRECEDENCE_ROUTES: &str = r#"
  - matches: [{ path: { type: regex, value: "/t/.*" } }]
    backend: a
  - matches: [{ path: { type: prefix, value: /t } }]
    backend: b
  - matches: [{ path: { type: template, value: "/t/{id}" } }]
    backend: c
  - matches: [{ path: { type: exact, value: /t/x } }]
    backend: a
  - matches: [{ path: { type: regex, value: "/u/[0-9]+" } }]
    backend: a
  - matches: [{ path: { type: template, value: "/v/{a}/{b}" } }]
    backend: a
  - matches: [{ path: { type: template, value: "/v/{a}/items" } }]
    backend: b
  - hosts: ["*.example.com"]
    matches: [{ path: { type: exact, value: /w } }]
    backend: a
  - hosts: ["*.b.example.com"]
    matches: [{ path: { type: exact, value: /w } }]
    backend: b
  - matches: [{ path: { type: exact, value: /hh }, headers: [{ name: x-one, value: "1" }] }]
    backend: a
  - matches:
      - path: { type: exact, value: /hh }
        headers: [{ name: x-one, value: "1" }, { name: x-two, value: "2" }]
    backend: b
  - matches: [{ path: { type: exact, value: /qq }, query: [{ name: a, value: "1" }] }]
    backend: a
  - matches: [{ path: { type: exact, value: /qq }, query: [{ name: a, value: "1" }, { name: b, value: "2" }] }]
    backend: b
"#;

#[test]
fn precedence_exact_template_prefix_regex() {
    let setup = start(PRECEDENCE_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    assert_eq!(
        get(&mut client, "/t/x"),
        "a",
        "exact beats template, prefix and regex"
    );
    assert_eq!(
        get(&mut client, "/t/y"),
        "c",
        "template beats prefix and regex"
    );
    assert_eq!(get(&mut client, "/t/y/z"), "b", "prefix beats regex");
    assert_eq!(get(&mut client, "/u/12"), "a");
    assert_eq!(
        get(&mut client, "/v/1/items"),
        "b",
        "the template with more literal characters wins"
    );
    assert_eq!(get(&mut client, "/v/1/other"), "a");
}

#[test]
fn precedence_longer_wildcard_host_wins() {
    let setup = start(PRECEDENCE_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    assert_eq!(
        routed(&mut client, "GET", "/w", &[("Host", "x.b.example.com")]),
        "b"
    );
    assert_eq!(
        routed(&mut client, "GET", "/w", &[("Host", "y.example.com")]),
        "a"
    );
    assert_eq!(
        routed(&mut client, "GET", "/w", &[("Host", "b.example.com")]),
        "a"
    );
}

#[test]
fn precedence_more_header_then_query_matches_win() {
    let setup = start(PRECEDENCE_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    assert_eq!(
        routed(&mut client, "GET", "/hh", &[("X-One", "1"), ("X-Two", "2")]),
        "b"
    );
    assert_eq!(routed(&mut client, "GET", "/hh", &[("X-One", "1")]), "a");
    assert_eq!(get(&mut client, "/qq?a=1&b=2"), "b");
    assert_eq!(get(&mut client, "/qq?a=1"), "a");
}

const FILTER_ROUTES: &str = r#"
  - matches: [{ path: { type: prefix, value: /headers } }]
    filters:
      request_headers:
        set: { x-gateway: ringway }
        add: { x-trace: "on" }
        remove: [x-internal]
      response_headers:
        set: { cache-control: no-store }
        add: { x-added: "yes" }
        remove: [server]
    backend: a
  - matches: [{ path: { type: exact, value: /rw } }]
    filters: { rewrite: { path: /v2/target } }
    backend: a
  - matches: [{ path: { type: prefix, value: /api } }]
    filters: { rewrite: { prefix: /v2 } }
    backend: a
  - matches: [{ path: { type: prefix, value: /old } }]
    redirect: { scheme: https, host: www.example.com, path: /new, status: 301 }
  - matches: [{ path: { type: exact, value: /moved } }]
    redirect: { path: /elsewhere }
  - matches: [{ path: { type: exact, value: /secure } }]
    redirect: { scheme: https, port: 8443, status: 308 }
  - matches: [{ path: { type: exact, value: /teapot } }]
    return_response:
      status: 418
      headers: { content-type: application/json, x-direct: "1" }
      body: '{"ok":true}'
  - matches: [{ path: { type: exact, value: /nothing } }]
    return_response: { status: 204 }
"#;

#[test]
fn request_header_filters_set_add_remove() {
    let setup = start(FILTER_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    let response = client.request(
        "GET",
        "/headers",
        &[
            ("X-Gateway", "client"),
            ("X-Trace", "a"),
            ("X-Internal", "secret"),
        ],
        b"",
    );
    assert_eq!(response.status, 200);
    let seen = setup.a.last_request().unwrap();
    assert_eq!(
        seen.header_all("x-gateway"),
        vec!["ringway"],
        "set replaces"
    );
    assert_eq!(
        seen.header_joined("x-trace").as_deref(),
        Some("a, on"),
        "add appends"
    );
    assert_eq!(seen.header("x-internal"), None, "remove");
}

#[test]
fn response_header_filters_set_add_remove() {
    let setup = start(FILTER_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    let response = client.get("/headers");
    assert_eq!(response.status, 200);
    assert_eq!(response.header_all("cache-control"), vec!["no-store"]);
    assert_eq!(response.header("x-added"), Some("yes"));
    assert!(
        !response
            .header_all("server")
            .contains(&"ringway-test-origin"),
        "the origin's Server header was not removed: {:?}",
        response.headers
    );
    assert_eq!(response.header("x-origin"), Some("a"));
}

#[test]
fn rewrite_path_and_prefix() {
    let setup = start(FILTER_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());

    assert_eq!(client.get("/rw?q=1").status, 200);
    assert_eq!(setup.a.last_request().unwrap().target, "/v2/target?q=1");

    assert_eq!(client.get("/api/users?page=2").status, 200);
    assert_eq!(setup.a.last_request().unwrap().target, "/v2/users?page=2");

    assert_eq!(client.get("/api/a/b").status, 200);
    assert_eq!(setup.a.last_request().unwrap().target, "/v2/a/b");
}

fn redirect(client: &mut Client, target: &str, host: &str) -> Response {
    let response = client.request("GET", target, &[("Host", host)], b"");
    assert!(
        (300..400).contains(&response.status),
        "{target} answered {}: {}",
        response.status,
        response.text()
    );
    response
}

#[test]
fn redirects_set_location_and_status() {
    let setup = start(FILTER_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());

    let full = redirect(&mut client, "/old?x=1", "h.test");
    assert_eq!(full.status, 301);
    assert_eq!(
        full.header("location"),
        Some("https://www.example.com/new?x=1")
    );

    let default = redirect(&mut client, "/moved?y=2", "h.test");
    assert_eq!(default.status, 302, "302 is the default");
    assert_eq!(
        default.header("location"),
        Some("http://h.test/elsewhere?y=2")
    );

    let port = redirect(&mut client, "/secure?z=3", "h.test:8080");
    assert_eq!(port.status, 308);
    assert_eq!(
        port.header("location"),
        Some("https://h.test:8443/secure?z=3")
    );
    assert_eq!(setup.a.requests(), 0, "redirects never reach a backend");
}

#[test]
fn pipelined_local_and_proxied_responses_stay_in_order() {
    let setup = start(FILTER_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    let targets = [
        "/headers/1",
        "/teapot",
        "/rw",
        "/moved",
        "/headers/2",
        "/nothing",
        "/api/x",
    ];
    let mut batch = Vec::new();
    for target in targets {
        batch
            .extend_from_slice(format!("GET {target} HTTP/1.1\r\nHost: h.test\r\n\r\n").as_bytes());
    }
    client.send_raw(&batch);
    let statuses: Vec<u16> = targets
        .iter()
        .map(|_| client.read_response().status)
        .collect();
    assert_eq!(statuses, vec![200, 418, 200, 302, 200, 204, 200]);
}

#[test]
fn return_response_answers_without_a_backend() {
    let setup = start(FILTER_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    let response = client.get("/teapot");
    assert_eq!(response.status, 418);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("x-direct"), Some("1"));
    assert_eq!(response.body, br#"{"ok":true}"#);

    let empty = client.get("/nothing");
    assert_eq!(empty.status, 204);
    assert!(empty.body.is_empty());

    let head = client.request("HEAD", "/teapot", &[], b"");
    assert_eq!(head.status, 418);
    assert_eq!(
        client.get("/teapot").body,
        br#"{"ok":true}"#,
        "connection usable after HEAD"
    );
    assert_eq!(setup.a.requests(), 0);
}

#[test]
fn gateway_answers_read_small_request_bodies_and_keep_the_connection() {
    let setup = start(FILTER_ROUTES);
    let mut client = Client::connect(setup.proxy.addr());
    // Content-Length and chunked bodies on routes the gateway answers itself.
    let posted = client.request("POST", "/teapot", &[], b"a small body");
    assert_eq!(posted.status, 418);
    assert!(
        !posted.closes(),
        "a small body must not cost the connection"
    );
    client.send_raw(
        b"POST /nowhere/at/all HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let missing = client.read_response();
    assert_eq!(missing.status, 404);
    assert!(!missing.closes());
    // The connection is still in step: the next request is read from the right place.
    assert_eq!(client.get("/teapot").status, 418);

    // A body past the discard limit closes the connection after the answer.
    let big = vec![b'x'; 200 * 1024];
    let mut client = Client::connect(setup.proxy.addr());
    let response = client.request("POST", "/teapot", &[], &big);
    assert_eq!(response.status, 418);
    assert!(
        response.closes(),
        "a large unread body must close the connection"
    );
    assert_eq!(setup.a.requests(), 0);
}
