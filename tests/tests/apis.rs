//! APIs, operations and the policy pipeline through the real binary: operation matching and
//! APIM's 404, base-path stripping, inheritance with and without `base`, the transform
//! policies, `on_error`, and the worked example `examples/api-gateway.yaml`.

use ringway_tests::{json_string_field, Client, Origin, Ringway};

fn gateway(origin: &Origin, body: &str) -> Ringway {
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n\
         \x20 - {{ name: orders, targets: [{{ url: {} }}] }}\n\
         \x20 - {{ name: other, targets: [{{ url: {} }}] }}\n\
         {body}",
        origin.url(),
        origin.url(),
    );
    Ringway::start(&yaml)
}

#[test]
fn operations_route_and_unknown_ones_get_apims_404() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
apis:
  - name: orders
    path: /orders
    backend: orders
    operations:
      - { id: get-order, method: GET, url_template: "/{id}" }
      - { id: create-order, method: POST, url_template: / }
      - { id: files, method: "*", url_template: "/files/*" }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    let r = c.get("/orders/42?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    // The API's path is stripped, as APIM forwards to the service URL; the query stays.
    assert_eq!(origin.last_request().unwrap().target, "/42?x=1");

    let r = c.request("POST", "/orders/", &[], b"{}");
    assert_eq!(r.status, 200);
    assert_eq!(origin.last_request().unwrap().target, "/");

    let r = c.request("DELETE", "/orders/files/a/b", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(origin.last_request().unwrap().target, "/files/a/b");

    for (method, path) in [
        ("DELETE", "/orders/42"),
        ("GET", "/orders/42/items"),
        ("GET", "/orders"),
    ] {
        let before = origin.requests();
        let r = c.request(method, path, &[], b"");
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.text(),
            "{ \"statusCode\": 404, \"message\": \"Resource not found\" }"
        );
        assert_eq!(origin.requests(), before, "a 404 never reaches the backend");
    }
    // Outside every API: the router's own 404.
    let r = c.get("/elsewhere");
    assert_eq!(r.status, 404);
    assert_eq!(r.json_error().as_deref(), Some("no_route"));
}

#[test]
fn base_path_handling_follows_strip_path_and_backend_path() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
apis:
  - name: kept
    path: /kept
    strip_path: false
    backend: orders
  - name: moved
    path: /moved/
    backend_path: /api/v2
    backend: orders
"#,
    );
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/kept/a?q=1").status, 200);
    assert_eq!(origin.last_request().unwrap().target, "/kept/a?q=1");
    assert_eq!(c.get("/moved/a/b").status, 200);
    assert_eq!(origin.last_request().unwrap().target, "/api/v2/a/b");
    assert_eq!(c.get("/moved").status, 200);
    assert_eq!(origin.last_request().unwrap().target, "/api/v2");
    // `/movedx` is not under `/moved`.
    assert_eq!(c.get("/movedx").status, 404);
}

#[test]
fn sections_inherit_through_base_and_replace_without_it() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
policies:
  inbound:
    - set-header: { name: X-Global, value: g }
  outbound:
    - set-header: { name: X-Out-Global, value: g }
apis:
  - name: orders
    path: /orders
    backend: orders
    policies:
      inbound:
        - base
        - set-header: { name: X-Api, value: "{api}" }
      outbound:
        - set-header: { name: X-Out-Api, value: a }
        - base
    operations:
      - id: inherits
        method: GET
        url_template: /a
      - id: replaces
        method: GET
        url_template: /b
        policies:
          inbound:
            - set-header: { name: X-Op, value: "{operation}" }
      - id: wraps
        method: GET
        url_template: /c
        policies:
          inbound:
            - set-header: { name: X-First, value: "1" }
            - base
routes:
  - name: plain
    matches: [{ path: { type: prefix, value: /plain } }]
    backend: other
"#,
    );
    let mut c = Client::connect(proxy.addr());

    let r = c.get("/orders/a");
    assert_eq!(r.status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("x-global"), Some("g"));
    assert_eq!(seen.header("x-api"), Some("orders"));
    assert_eq!(seen.header("x-op"), None);
    // The API's outbound puts its own header before the global one (base after it).
    assert_eq!(r.header("x-out-api"), Some("a"));
    assert_eq!(r.header("x-out-global"), Some("g"));

    c.get("/orders/b");
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("x-op"), Some("replaces"));
    assert_eq!(
        seen.header("x-global"),
        None,
        "no base: the parent's inbound is replaced"
    );
    assert_eq!(seen.header("x-api"), None);

    c.get("/orders/c");
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("x-first"), Some("1"));
    assert_eq!(seen.header("x-global"), Some("g"));
    assert_eq!(seen.header("x-api"), Some("orders"));

    // Global policies apply to plain routes too.
    let r = c.get("/plain");
    assert_eq!(origin.last_request().unwrap().header("x-global"), Some("g"));
    assert_eq!(r.header("x-out-global"), Some("g"));
}

#[test]
fn transform_policies_change_the_request_and_the_response() {
    let origin = Origin::start("o");
    let other = Origin::start("other");
    let yaml = format!(
        r#"
workers: 1
listeners: [{{ address: 127.0.0.1:0 }}]
backends:
  - {{ name: orders, targets: [{{ url: {} }}] }}
  - {{ name: other, targets: [{{ url: {} }}] }}
apis:
  - name: orders
    path: /orders
    backend: orders
    operations:
      - id: get
        method: GET
        url_template: "/{{id}}"
        policies:
          inbound:
            - rewrite-uri: {{ template: "/v2/orders/{{id}}?src=gw" }}
            - set-query-parameter: {{ name: page, value: "1", exists_action: skip }}
            - set-query-parameter: {{ name: drop, exists_action: delete }}
            - set-header: {{ name: X-Client, value: "{{header:User-Agent}}/{{ip}}" }}
            - set-header: {{ name: X-Remove, exists_action: delete }}
            - set-header: {{ name: X-Tag, value: b, exists_action: append }}
          outbound:
            - set-status: {{ code: 202, reason: Taken }}
            - set-header: {{ name: X-Origin, exists_action: delete }}
            - set-header: {{ name: X-Done, value: "yes" }}
      - id: elsewhere
        method: GET
        url_template: /elsewhere
        policies:
          inbound:
            - set-backend-service: {{ backend: other }}
      - id: canned
        method: GET
        url_template: /canned
        policies:
          inbound:
            - return-response:
                status: 418
                reason: "I'm a teapot"
                headers: {{ Content-Type: text/plain, X-Who: "{{operation}}" }}
                body: short and stout
      - id: mocked
        method: POST
        url_template: /mock
        policies:
          inbound:
            - mock-response: {{ status: 201, body: '{{"id": 1}}' }}
"#,
        origin.url(),
        other.url()
    );
    let proxy = Ringway::start(&yaml);
    let mut c = Client::connect(proxy.addr());

    let r = c.request(
        "GET",
        "/orders/7?drop=x&keep=y&page=3",
        &[("User-Agent", "t/1"), ("X-Remove", "1"), ("X-Tag", "a")],
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.reason, "Taken");
    assert_eq!(r.header("x-origin"), None);
    assert_eq!(r.header("x-done"), Some("yes"));
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.target, "/v2/orders/7?src=gw&keep=y&page=3");
    assert_eq!(seen.header("x-client"), Some("t/1/127.0.0.1"));
    assert_eq!(seen.header("x-remove"), None);
    assert_eq!(seen.header_all("x-tag"), vec!["a", "b"]);

    let before = origin.requests();
    assert_eq!(c.get("/orders/elsewhere").status, 200);
    assert_eq!(other.last_request().unwrap().target, "/elsewhere");
    assert_eq!(origin.requests(), before);

    let r = c.get("/orders/canned");
    assert_eq!(r.status, 418);
    assert_eq!(r.reason, "I'm a teapot");
    assert_eq!(r.header("x-who"), Some("canned"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "short and stout");

    let r = c.request("POST", "/orders/mock", &[("Content-Length", "2")], b"{}");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), "{\"id\": 1}");
    assert_eq!(origin.requests(), before, "answered without the backend");
}

#[test]
fn on_error_reshapes_refusals_and_backend_failures() {
    let origin = Origin::start("o");
    let dead = ringway_tests::closed_port();
    let yaml = format!(
        r#"
workers: 1
listeners: [{{ address: 127.0.0.1:0 }}]
backends:
  - {{ name: orders, targets: [{{ url: {} }}] }}
  - {{ name: dead, targets: [{{ url: "http://{dead}" }}] }}
apis:
  - name: limited
    path: /limited
    backend: orders
    policies:
      inbound:
        - rate-limit-by-key: {{ calls: 1, renewal_period: 60s, counter_key: "{{ip}}" }}
      on_error:
        - set-header: {{ name: X-Error, value: limited }}
        - set-status: {{ code: 503, reason: Slow Down }}
  - name: down
    path: /down
    backend: dead
    policies:
      on_error:
        - return-response:
            status: 503
            headers: {{ Content-Type: application/json }}
            body: '{{"error": "backend unavailable, try later"}}'
"#,
        origin.url()
    );
    let proxy = Ringway::start(&yaml);
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/limited/x").status, 200);
    let r = c.get("/limited/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.reason, "Slow Down");
    assert_eq!(r.header("x-error"), Some("limited"));
    assert!(r.header("retry-after").is_some());
    let message = json_string_field(&r.body, "message").unwrap_or_default();
    assert!(
        message.starts_with("Rate limit is exceeded"),
        "{}",
        r.text()
    );

    let r = c.get("/down/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "{\"error\": \"backend unavailable, try later\"}");
}

#[test]
fn bad_policy_configurations_are_refused_with_their_paths() {
    let dir = ringway_tests::TempDir::new();
    let path = dir.write(
        "bad.yaml",
        r#"
listeners: [{ address: 127.0.0.1:0 }]
backends: [{ name: b, targets: [{ url: "http://127.0.0.1:1" }] }]
policies:
  inbound:
    - rate-limit-by-key: { calls: 0, renewal_period: 10s, counter_key: "{nope}" }
    - cache-store: { duration: 10s }
    - base
    - base
apis:
  - name: a
    path: orders
    backend: missing
    operations:
      - { id: x, method: get, url_template: "/{id" }
      - { id: x, method: GET, url_template: /y }
"#,
    );
    let out = ringway_tests::run_ringway(
        &["check", path.to_str().unwrap()],
        &[],
        std::time::Duration::from_secs(10),
    );
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    for expected in [
        "policies.inbound[0].rate-limit-by-key.calls",
        "policies.inbound[0].rate-limit-by-key.counter_key",
        "policies.inbound[1]: cache-store cannot be used in the inbound section",
        "policies.inbound[3]: base may appear once per section",
        "apis[0].path",
        "apis[0].backend: no backend named \"missing\"",
        "apis[0].operations[0].method",
        "apis[0].operations[0].url_template",
        "apis[0].operations[1].id",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let path = dir.write(
        "unknown.yaml",
        "listeners: [{ address: 127.0.0.1:0 }]\npolicies:\n  inbound:\n    - rate-limit-by-ke: {}\n",
    );
    let out = ringway_tests::run_ringway(
        &["check", path.to_str().unwrap()],
        &[],
        std::time::Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        text.contains("unknown variant `rate-limit-by-ke`") && text.contains("rate-limit-by-key"),
        "{text}"
    );
}

/// `examples/api-gateway.yaml`, the worked example of docs/policies.md, as a user runs it.
#[test]
fn the_worked_example_serves_its_apis() {
    let origin = Origin::start("o");
    let dir = ringway_tests::TempDir::new();
    let state = dir.path().join("quota.state");
    let proxy = Ringway::start_file(
        "examples/api-gateway.yaml",
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "1"),
            ("RINGWAY_BACKEND", &origin.url()),
            ("RINGWAY_STATE", state.to_str().unwrap()),
            ("RINGWAY_RATE_CALLS", "1000"),
            ("RINGWAY_QUOTA_CALLS", "3"),
        ],
    );
    let mut c = Client::connect(proxy.addr());
    let acme = [("X-Customer", "acme")];

    let r = c.request("GET", "/orders/5", &acme, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some("1000"));
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.target, "/orders/5",
        "rewrite-uri after the API path is stripped"
    );
    assert_eq!(seen.header("x-gateway"), Some("ringway"));

    let r = c.request("GET", "/orders/5/preview", &acme, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "{\"id\": \"preview\", \"state\": \"open\"}");

    // The preview's inbound has no `base`: it replaced the API's, quota included, so it did
    // not count. Two more calls spend the quota of three.
    assert_eq!(c.request("GET", "/orders/", &acme, b"").status, 200);
    assert_eq!(c.request("GET", "/orders/", &acme, b"").status, 200);
    let r = c.request("GET", "/orders/", &acme, b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-error-source"), Some("gateway"));
    assert_eq!(r.header("x-api"), Some("orders"));
    assert!(r.header("retry-after").is_some());
    // Another customer has its own quota.
    assert_eq!(
        c.request("GET", "/orders/", &[("X-Customer", "globex")], b"")
            .status,
        200
    );

    let a = c.get("/catalog/products?page=2&utm=x");
    assert_eq!(a.header("x-cache"), Some("MISS"));
    assert_eq!(a.header("x-served-by"), Some("catalog"));
    let b = c.get("/catalog/products?page=2&utm=y");
    assert_eq!(b.header("x-cache"), Some("HIT"), "utm is not in the key");
    assert_eq!(a.body, b.body);
    assert_eq!(c.get("/catalog/nothing-here").status, 404);
}
