//! Subscription keys and products through the real binary: where the key is read (header
//! before query, configurable names), primary and secondary keys, APIM's 401 and 403 answers,
//! product policies in scope order, open products, per-subscription limits (`{subscription}`
//! counter keys and `rate-limit`), `vary_by_subscription`, keys kept out of the logs, CORS
//! preflights (which carry no key), and the worked example `examples/secure-gateway.yaml`.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringway_tests::{run_ringway, workspace_dir, Client, Origin, Response, Ringway};
use serde_json::json;

const MISSING: &str = r#"{ "statusCode": 401, "message": "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API." }"#;
const INVALID: &str = r#"{ "statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription." }"#;
const INACTIVE: &str =
    r#"{ "statusCode": 403, "message": "Access denied due to an inactive subscription." }"#;

const KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

/// The `sha256:` form of `key`, as `ringway key hash` prints it.
fn hash(key: &str) -> String {
    let out = run_ringway(&["key", "hash", key], &[], Duration::from_secs(10));
    assert!(out.status.success(), "ringway key hash failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A gateway with one worker and the backend `b` on `origin`; `{hash:KEY}` in `body` is
/// replaced by the key's hash.
fn gateway(origin: &Origin, body: &str) -> Ringway {
    let mut body = body.to_string();
    while let Some(start) = body.find("{hash:") {
        let end = start + body[start..].find('}').unwrap();
        let key = body[start + 6..end].to_string();
        body.replace_range(start..=end, &format!("\"{}\"", hash(&key)));
    }
    let yaml = format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - {{ name: b, targets: [{{ url: {} }}] }}\n\
         {body}",
        origin.url(),
    );
    Ringway::start(&yaml)
}

fn with_key(c: &mut Client, target: &str, key: &str) -> Response {
    c.request("GET", target, &[(KEY_HEADER, key)], b"")
}

fn assert_denied(r: &Response, status: u16, body: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text().trim_end(), body);
}

const ORDERS_IN_GOLD: &str = r#"
products:
  - { name: gold, apis: [orders] }
  - { name: silver, apis: [orders] }
subscriptions:
  - { id: alice, scope: { product: gold }, primary_key: {hash:alice-1}, secondary_key: {hash:alice-2} }
  - { id: sam, scope: { product: silver }, primary_key: {hash:sam-1} }
  - { id: ops, scope: all_apis, primary_key: {hash:ops-1} }
  - { id: olga, scope: { api: orders }, primary_key: {hash:olga-1} }
  - { id: wendy, scope: { api: weather }, primary_key: {hash:wendy-1} }
  - { id: sue, scope: { product: gold }, state: suspended, primary_key: {hash:sue-1} }
  - { id: carl, scope: { product: gold }, state: cancelled, primary_key: {hash:carl-1} }
  - { id: pete, scope: { product: platinum }, primary_key: {hash:pete-1} }
  - { id: paula, scope: { product: platinum }, primary_key: {hash:paula-1} }
apis:
  - name: orders
    path: /orders
    backend: b
    policies:
      on_error:
        - set-header: { name: X-Error-Source, value: gateway }
  - { name: weather, path: /weather, backend: b, subscription_required: true }
  - { name: catalog, path: /catalog, backend: b }
"#;

fn orders_gateway(origin: &Origin) -> Ringway {
    // `platinum` holds catalog only, so pete's and paula's keys are of the wrong scope for
    // orders.
    let body = ORDERS_IN_GOLD.replace(
        "  - { name: silver, apis: [orders] }\n",
        "  - { name: silver, apis: [orders] }\n  - { name: platinum, apis: [weather] }\n",
    );
    gateway(origin, &body)
}

#[test]
fn the_header_is_read_before_the_query_and_either_key_works() {
    let origin = Origin::start("o");
    let proxy = orders_gateway(&origin);
    let mut c = Client::connect(proxy.addr());

    assert_eq!(with_key(&mut c, "/orders/1", "alice-1").status, 200);
    assert_eq!(with_key(&mut c, "/orders/1", "alice-2").status, 200);
    // APIM forwards the key header as it came.
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header(KEY_HEADER), Some("alice-2"));

    assert_eq!(c.get("/orders/1?subscription-key=alice-1").status, 200);
    // The header wins: a good header with a bad query passes, a bad header with a good query
    // does not (the query is read only when the header is absent).
    let r = with_key(&mut c, "/orders/1?subscription-key=nope", "alice-1");
    assert_eq!(r.status, 200);
    let r = with_key(&mut c, "/orders/1?subscription-key=alice-1", "nope");
    assert_denied(&r, 401, INVALID);
    // An empty header is no header.
    let r = c.request(
        "GET",
        "/orders/1?subscription-key=alice-1",
        &[(KEY_HEADER, "")],
        b"",
    );
    assert_eq!(r.status, 200);

    let before = origin.requests();
    let r = c.get("/orders/1");
    assert_denied(&r, 401, MISSING);
    assert_eq!(r.header("x-error-source"), Some("gateway"), "on_error ran");
    assert_eq!(
        origin.requests(),
        before,
        "a refused request never reaches the backend"
    );
    // An API that no product holds and that sets nothing stays open.
    assert_eq!(c.get("/catalog/x").status, 200);
}

#[test]
fn renamed_header_and_query_parameter() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
subscriptions:
  - { id: app, scope: { api: orders }, primary_key: {hash:app-key} }
apis:
  - name: orders
    path: /orders
    backend: b
    subscription_required: true
    subscription_key: { header: X-Api-Key, query: api-key }
    policies:
      inbound:
        - set-header: { name: X-Api-Key, exists_action: delete }
        - set-query-parameter: { name: api-key, exists_action: delete }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    assert_eq!(
        c.request("GET", "/orders/1", &[("X-Api-Key", "app-key")], b"")
            .status,
        200
    );
    // The key is forwarded as it came unless a policy removes it, as this API's do.
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("x-api-key"), None);
    assert_eq!(c.get("/orders/1?api-key=app-key&a=1").status, 200);
    assert_eq!(origin.last_request().unwrap().target, "/1?a=1");
    // The default names are not read any more.
    assert_denied(&with_key(&mut c, "/orders/1", "app-key"), 401, MISSING);
    assert_denied(&c.get("/orders/1?subscription-key=app-key"), 401, MISSING);
}

#[test]
fn invalid_inactive_and_out_of_scope_keys_are_refused_as_apim_does() {
    let origin = Origin::start("o");
    let proxy = orders_gateway(&origin);
    let mut c = Client::connect(proxy.addr());
    assert_denied(&with_key(&mut c, "/orders/1", "unknown"), 401, INVALID);
    assert_denied(&with_key(&mut c, "/orders/1", "sue-1"), 403, INACTIVE);
    assert_denied(&with_key(&mut c, "/orders/1", "carl-1"), 403, INACTIVE);
    // Keys of another product or another API: 401, as an invalid key.
    assert_denied(&with_key(&mut c, "/orders/1", "pete-1"), 401, INVALID);
    assert_denied(&with_key(&mut c, "/orders/1", "wendy-1"), 401, INVALID);
    // API-scoped and all-APIs subscriptions.
    assert_eq!(with_key(&mut c, "/orders/1", "olga-1").status, 200);
    assert_eq!(with_key(&mut c, "/orders/1", "ops-1").status, 200);
    assert_eq!(with_key(&mut c, "/weather/1", "ops-1").status, 200);
    assert_eq!(with_key(&mut c, "/weather/1", "paula-1").status, 200);
    // An API that requires a key outside products.
    assert_denied(&c.get("/weather/1"), 401, MISSING);
}

#[test]
fn product_policies_run_between_global_and_api_scopes() {
    let origin = Origin::start("o");
    let append = |value: &str| {
        format!("{{ set-header: {{ name: X-Scope, value: {value}, exists_action: append }} }}")
    };
    let body = format!(
        r#"
policies:
  inbound: [{global}]
products:
  - name: gold
    apis: [orders]
    policies:
      inbound:
        - base
        - {product}
        - set-header: {{ name: X-Who, value: "{{subscription}}@{{product}}" }}
  - name: silver
    apis: [orders]
    policies:
      inbound: [base, {{ set-header: {{ name: X-Who, value: "silver:{{subscription}}" }} }}]
subscriptions:
  - {{ id: alice, scope: {{ product: gold }}, primary_key: {{hash:alice-1}} }}
  - {{ id: sam, scope: {{ product: silver }}, primary_key: {{hash:sam-1}} }}
  - {{ id: ops, scope: all_apis, primary_key: {{hash:ops-1}} }}
apis:
  - name: orders
    path: /orders
    backend: b
    policies:
      inbound: [base, {api}]
    operations:
      - id: get
        method: GET
        url_template: "/{{id}}"
        policies:
          inbound: [base, {operation}]
"#,
        global = append("global"),
        product = append("product"),
        api = append("api"),
        operation = append("operation"),
    );
    let proxy = gateway(&origin, &body);
    let mut c = Client::connect(proxy.addr());

    assert_eq!(with_key(&mut c, "/orders/1", "alice-1").status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.header_joined("x-scope").as_deref(),
        Some("global, product, api, operation")
    );
    assert_eq!(seen.header("x-who"), Some("alice@gold"));

    assert_eq!(with_key(&mut c, "/orders/1", "sam-1").status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.header_joined("x-scope").as_deref(),
        Some("global, api, operation")
    );
    assert_eq!(seen.header("x-who"), Some("silver:sam"));

    // An all-APIs subscription belongs to no product: no product scope.
    assert_eq!(with_key(&mut c, "/orders/1", "ops-1").status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(
        seen.header_joined("x-scope").as_deref(),
        Some("global, api, operation")
    );
    assert_eq!(seen.header("x-who"), None);
}

#[test]
fn an_open_product_lets_requests_without_a_key_in() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
products:
  - name: free
    apis: [weather]
    subscription_required: false
    policies:
      inbound:
        - set-header: { name: X-Product, value: "{product}" }
        - set-header: { name: X-Subscription, value: "[{subscription}]" }
subscriptions:
  - { id: ops, scope: all_apis, primary_key: {hash:ops-1} }
apis:
  - { name: weather, path: /weather, backend: b }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/weather/today").status, 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("x-product"), Some("free"));
    assert_eq!(seen.header("x-subscription"), Some("[]"));
    // A key that is sent is still checked.
    assert_denied(&with_key(&mut c, "/weather/today", "nope"), 401, INVALID);
    assert_eq!(with_key(&mut c, "/weather/today", "ops-1").status, 200);
}

#[test]
fn a_products_limit_keyed_by_subscription_gives_each_subscription_its_budget() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
products:
  - name: gold
    apis: [orders]
    policies:
      inbound:
        - rate-limit-by-key: { calls: 2, renewal_period: 1m, counter_key: "{product}/{subscription}" }
subscriptions:
  - { id: alice, scope: { product: gold }, primary_key: {hash:alice-1}, secondary_key: {hash:alice-2} }
  - { id: bob, scope: { product: gold }, primary_key: {hash:bob-1} }
apis:
  - { name: orders, path: /orders, backend: b }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    assert_eq!(with_key(&mut c, "/orders/1", "alice-1").status, 200);
    // Both keys of a subscription spend one budget.
    assert_eq!(with_key(&mut c, "/orders/1", "alice-2").status, 200);
    let r = with_key(&mut c, "/orders/1", "alice-1");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    for _ in 0..2 {
        assert_eq!(with_key(&mut c, "/orders/1", "bob-1").status, 200);
    }
    assert_eq!(with_key(&mut c, "/orders/1", "bob-1").status, 429);
}

#[test]
fn rate_limit_counts_calls_per_subscription_with_nested_limits() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
products:
  - name: gold
    apis: [orders]
    policies:
      inbound:
        - rate-limit:
            calls: 3
            renewal_period: 1m
            apis:
              - name: orders
                operations:
                  - { id: get, calls: 1, renewal_period: 1m }
subscriptions:
  - { id: alice, scope: { product: gold }, primary_key: {hash:alice-1} }
  - { id: bob, scope: { product: gold }, primary_key: {hash:bob-1} }
  - { id: ops, scope: all_apis, primary_key: {hash:ops-1} }
apis:
  - name: orders
    path: /orders
    backend: b
    operations:
      - { id: get, method: GET, url_template: "/{id}" }
      - { id: create, method: POST, url_template: / }
  - name: optional
    path: /optional
    backend: b
    subscription_required: false
    policies:
      inbound: [rate-limit: { calls: 1, renewal_period: 1m }]
"#,
    );
    let mut c = Client::connect(proxy.addr());
    let post = |c: &mut Client, key: &str| {
        c.request("POST", "/orders/", &[(KEY_HEADER, key)], b"")
            .status
    };
    assert_eq!(post(&mut c, "alice-1"), 200);
    assert_eq!(post(&mut c, "alice-1"), 200);
    let r = with_key(&mut c, "/orders/1", "alice-1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    // Over the operation's limit (and now the product's too).
    let r = with_key(&mut c, "/orders/2", "alice-1");
    assert_eq!(r.status, 429);
    assert!(r
        .text()
        .starts_with(r#"{ "statusCode": 429, "message": "Rate limit is exceeded. Try again in "#));
    assert_eq!(post(&mut c, "alice-1"), 429);
    // Bob's budget is his own.
    assert_eq!(with_key(&mut c, "/orders/1", "bob-1").status, 200);
    assert_eq!(with_key(&mut c, "/orders/2", "bob-1").status, 429);
    assert_eq!(post(&mut c, "bob-1"), 200);

    // A request without a subscription is not limited by rate-limit; one with a key is.
    for _ in 0..3 {
        assert_eq!(c.get("/optional/x").status, 200);
    }
    assert_eq!(with_key(&mut c, "/optional/x", "ops-1").status, 200);
    assert_eq!(with_key(&mut c, "/optional/x", "ops-1").status, 429);
}

#[test]
fn vary_by_subscription_keeps_each_subscriptions_cache_entries_apart() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
products:
  - name: gold
    apis: [private, shared]
subscriptions:
  - { id: alice, scope: { product: gold }, primary_key: {hash:alice-1} }
  - { id: bob, scope: { product: gold }, primary_key: {hash:bob-1} }
apis:
  - name: private
    path: /private
    backend: b
    policies:
      inbound: [cache-lookup: { vary_by_subscription: true }]
      outbound: [cache-store: { duration: 60s }]
  - name: shared
    path: /shared
    backend: b
    policies:
      inbound: [cache-lookup: {}]
      outbound: [cache-store: { duration: 60s }]
"#,
    );
    let mut c = Client::connect(proxy.addr());
    let get = |c: &mut Client, path: &str, key: &str| {
        let r = with_key(c, path, key);
        assert_eq!(r.status, 200);
        (r.header("x-cache").unwrap().to_string(), r.text())
    };
    let (x, alice) = get(&mut c, "/private/counter", "alice-1");
    assert_eq!(x, "MISS");
    assert_eq!(
        get(&mut c, "/private/counter", "alice-1"),
        ("HIT".into(), alice.clone())
    );
    let (x, bob) = get(&mut c, "/private/counter", "bob-1");
    assert_eq!(x, "MISS", "bob does not get alice's entry");
    assert_ne!(bob, alice);
    assert_eq!(
        get(&mut c, "/private/counter", "bob-1"),
        ("HIT".into(), bob)
    );

    // Without vary_by_subscription subscriptions share an entry, and the key check still runs
    // before the cache answers.
    let (x, first) = get(&mut c, "/shared/counter", "alice-1");
    assert_eq!(x, "MISS");
    assert_eq!(
        get(&mut c, "/shared/counter", "bob-1"),
        ("HIT".into(), first)
    );
    assert_denied(&c.get("/shared/counter"), 401, MISSING);
}

#[test]
fn keys_never_appear_in_the_logs() {
    let origin = Origin::start("o");
    let keys = ["alice-secret-k3y", "sue-secret-k3y", "made-up-secret-k3y"];
    let proxy = gateway(
        &origin,
        r#"
products:
  - name: gold
    apis: [orders]
    policies:
      inbound:
        - rate-limit-by-key: { calls: 1, renewal_period: 1m, counter_key: "{subscription}", shadow: true }
subscriptions:
  - { id: alice, scope: { product: gold }, primary_key: {hash:alice-secret-k3y} }
  - { id: sue, scope: { product: gold }, state: suspended, primary_key: {hash:sue-secret-k3y} }
apis:
  - { name: orders, path: /orders, backend: b }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    for key in keys {
        with_key(&mut c, "/orders/1", key);
        c.get(&format!("/orders/1?subscription-key={key}"));
    }
    // Over the shadow limit, so the gateway logs a line about the subscription's counter.
    assert_eq!(with_key(&mut c, "/orders/1", keys[0]).status, 200);
    drop(c);
    let (_, output) = {
        let mut proxy = proxy;
        proxy.sigterm();
        proxy.wait_exit(Duration::from_secs(10))
    };
    assert!(output.contains("shadow mode"), "{output}");
    for key in keys {
        assert!(!output.contains(key), "{key} in:\n{output}");
    }
}

#[test]
fn preflights_that_match_no_operation_are_answered_by_the_apis_cors_policy() {
    let origin = Origin::start("o");
    let proxy = gateway(
        &origin,
        r#"
apis:
  - name: orders
    path: /orders
    backend: b
    policies:
      inbound: [cors: { allowed_origins: ["https://app.example.com"], allowed_methods: [PUT] }]
    operations:
      - { id: put, method: PUT, url_template: "/{id}" }
  - name: items
    path: /items
    backend: b
    operations:
      - id: put
        method: PUT
        url_template: "/{id}"
        policies:
          inbound: [cors: { allowed_origins: ["https://app.example.com"], allowed_methods: [PUT] }]
"#,
    );
    let mut c = Client::connect(proxy.addr());
    let preflight = [
        ("Origin", "https://app.example.com"),
        ("Access-Control-Request-Method", "PUT"),
    ];
    let r = c.request("OPTIONS", "/orders/1", &preflight, b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(origin.requests(), 0);
    assert_eq!(c.request("DELETE", "/orders/1", &[], b"").status, 404);
    // At the operation scope the policy never sees a preflight: no operation takes OPTIONS.
    assert_eq!(
        c.request("OPTIONS", "/items/1", &preflight, b"").status,
        404
    );
    assert_eq!(origin.requests(), 0);
}

/// `examples/secure-gateway.yaml`, the worked example of docs/security.md, as a user runs it.
#[test]
fn the_secure_gateway_example_checks_keys_tokens_and_answers_preflights() {
    use ringway_tests::tls::{Ca, ClientSetup, TlsClient};
    let origin = Origin::start("o");
    let dir = ringway_tests::TempDir::new();
    let ca = Ca::new("Example CA");
    let (cert, key) = ca.server(&["localhost"]).write(dir.path(), "gateway");
    let proxy = Ringway::start_file(
        "examples/secure-gateway.yaml",
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_PUBLIC_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "1"),
            ("RINGWAY_BACKEND", &origin.url()),
            ("RINGWAY_TLS_CERT", cert.to_str().unwrap()),
            ("RINGWAY_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    // Over TLS on the public listener: a key opens the API, no key gets the 401.
    let mut tls = TlsClient::connect(
        proxy.addr_of("public"),
        "localhost",
        ClientSetup::new(&ca).config(),
    )
    .unwrap();
    let r = tls
        .get("/orders/7", &[(KEY_HEADER, "demo-starter-primary-key")])
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        origin.last_request().unwrap().header("x-forwarded-proto"),
        Some("https")
    );
    assert_eq!(tls.get("/orders/7", &[]).unwrap().status, 401);

    let mut c = Client::connect(proxy.addr_of("internal"));

    let r = with_key(&mut c, "/orders/42", "demo-starter-primary-key");
    assert_eq!(r.status, 200);
    assert_eq!(
        origin.last_request().unwrap().header("x-subscription"),
        Some("demo-app")
    );
    assert_eq!(
        with_key(&mut c, "/orders/42", "demo-starter-secondary-key").status,
        200
    );
    assert_denied(&c.get("/orders/42"), 401, MISSING);
    assert_denied(
        &with_key(&mut c, "/orders/42", "demo-retired-key"),
        403,
        INACTIVE,
    );

    // A browser's preflight carries no key; the gateway answers it.
    let before = origin.requests();
    let r = c.request(
        "OPTIONS",
        "/orders/",
        &[
            ("Origin", "https://app.example.com"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type, authorization, ocp-apim-subscription-key",
            ),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(
        origin.requests(),
        before,
        "preflights are answered at the gateway"
    );
    // An OPTIONS request that is not a preflight matches no operation: APIM's 404.
    let r = c.request(
        "OPTIONS",
        "/orders/",
        &[("Origin", "https://app.example.com")],
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(origin.requests(), before);
    // A browser's actual request still needs its key.
    let r = c.request(
        "GET",
        "/orders/",
        &[("Origin", "https://app.example.com")],
        b"",
    );
    assert_denied(&r, 401, MISSING);

    // The actual request: key, token and CORS headers.
    let pem = std::fs::read(workspace_dir().join("proxy/src/policy/auth/testdata/rsa_private.pem"))
        .unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = encode(
        &Header::new(Algorithm::RS256),
        &json!({ "iss": "ringway-example", "aud": "orders", "sub": "u1", "exp": exp }),
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let create = |c: &mut Client, auth: &str| {
        c.request(
            "POST",
            "/orders/",
            &[
                (KEY_HEADER, "demo-starter-primary-key"),
                ("Authorization", auth),
                ("Origin", "https://app.example.com"),
            ],
            b"{}",
        )
    };
    let r = create(&mut c, &bearer);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(r.header("ratelimit-remaining").is_some());
    let r = create(&mut c, "Bearer not-a-token");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    // `rate-limit` counts every create call (it runs before validate-jwt): ten a minute.
    for _ in 0..8 {
        assert_eq!(create(&mut c, &bearer).status, 200);
    }
    let r = create(&mut c, &bearer);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("ratelimit-limit"), Some("10"));
}
