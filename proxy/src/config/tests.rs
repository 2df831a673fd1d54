use super::*;
use crate::route::{PathMatch, ValueMatch};
use ringway_core::runtime::{Driver, RingFlags};

fn env(name: &str) -> Option<String> {
    match name {
        "LISTEN" => Some("127.0.0.1:9090".into()),
        "UPSTREAM" => Some("10.0.0.9:81".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    load_str(text, "test.yaml", &env)
}

/// The errors for `text`, which must fail to load.
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.errors,
    }
}

/// The single error for a document made of a minimal valid base plus `extra`.
fn error_with(extra: &str) -> String {
    let text = format!("listeners: [{{address: 127.0.0.1:8080}}]\nbackends:\n  - name: orders\n    targets: [{{url: http://127.0.0.1:9000}}]\n  - name: billing\n    targets: [{{url: http://127.0.0.1:9001}}]\n{extra}");
    let mut e = errors(&text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.remove(0)
}

fn route_error(route: &str) -> String {
    error_with(&format!("routes:\n  - {route}\n"))
}

const FULL: &str = r#"
workers: 4
cpus: "0-3"
runtime:
  driver: epoll
  ring_entries: 256
  ring_flags: defer_taskrun
limits:
  max_header_bytes: 32KiB
  max_headers: 50
  max_uri_bytes: 4096
  max_body_bytes: 10MiB
timeouts:
  header: 5s
  idle: 2m
  upstream_connect: 250ms
  upstream_response: 1h
  request: 30s
  drain: 0s
listeners:
  - name: public
    address: ${LISTEN}
  - address: "[::1]:8081"
backends:
  - name: orders
    balance: weighted
    targets:
      - url: http://${UPSTREAM}
        weight: 3
        priority: 1
      - url: http://localhost/
    pool:
      max_idle_per_target: 8
      idle_timeout: 10s
    unavailable_for: 1s
  - name: billing
    targets: [{url: "http://[::1]:9000"}]
routes:
  - name: orders-api
    hosts: [API.example.com, "*.example.com"]
    matches:
      - path: { type: prefix, value: /orders/ }
        method: GET
        headers:
          - { name: X-Version, value: 2 }
          - { name: x-tenant, type: regex, value: "[a-z]+" }
        query:
          - { name: debug, value: "1" }
      - path: { type: prefix, value: /o }
    filters:
      request_headers:
        set: { X-Gateway: ringway }
        add: { x-trace: "on" }
        remove: [X-Internal]
      response_headers:
        remove: [server]
      rewrite:
        prefix: /v2/
    backend: orders
  - matches:
      - path: { type: template, value: "/users/{id}" }
      - path: { type: regex, value: "/r/[0-9]+" }
      - path: { type: exact, value: /exact }
    backend: billing
  - redirect: { scheme: https, port: 443, status: 301 }
  - return_response:
      status: 200
      headers: { content-type: application/json }
      body: '{"ok":true}'
"#;

#[test]
fn full_config_round_trip() {
    let c = load(FULL).unwrap();
    assert_eq!(c.source, "test.yaml");
    assert_eq!(c.workers, Some(4));
    assert_eq!(c.cpus, Some(vec![0, 1, 2, 3]));
    assert_eq!(c.runtime.driver, Driver::Epoll);
    assert_eq!(c.runtime.ring_entries, 256);
    assert_eq!(c.runtime.ring_flags, RingFlags::DeferTaskrun);
    assert_eq!(c.limits.max_head_bytes, 32 * 1024);
    assert_eq!(c.limits.max_headers, 50);
    assert_eq!(c.limits.max_uri_bytes, 4096);
    assert_eq!(c.limits.max_body_bytes, 10 << 20);
    assert_eq!(
        c.timeouts,
        Timeouts {
            header: Duration::from_secs(5),
            idle: Duration::from_secs(120),
            upstream_connect: Duration::from_millis(250),
            upstream_response: Duration::from_secs(3600),
            request: Some(Duration::from_secs(30)),
            drain: Duration::ZERO,
            tunnel_idle: Duration::from_secs(3600),
        }
    );
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].name, "public");
    assert_eq!(c.listeners[0].address, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(c.listeners[1].name, "listener-1");
    assert_eq!(c.listeners[1].address, "[::1]:8081".parse().unwrap());

    let orders = &c.backends[0];
    assert_eq!(orders.name, "orders");
    assert_eq!(orders.balance, Balance::Weighted);
    assert_eq!(orders.targets[0].url, "http://10.0.0.9:81");
    assert_eq!(orders.targets[0].addr, "10.0.0.9:81".parse().unwrap());
    assert_eq!(orders.targets[0].authority, "10.0.0.9:81");
    assert_eq!(orders.targets[0].weight, 3);
    assert_eq!(orders.targets[0].priority, 1);
    assert_eq!(orders.targets[1].authority, "localhost");
    assert_eq!(orders.targets[1].addr.port(), 80);
    assert!(orders.targets[1].addr.ip().is_loopback());
    assert_eq!(orders.targets[1].weight, 1);
    assert_eq!(orders.targets[1].priority, 0);
    assert_eq!(
        orders.pool,
        PoolSettings {
            max_idle_per_target: 8,
            idle_timeout: Duration::from_secs(10)
        }
    );
    assert_eq!(orders.unavailable_for, Duration::from_secs(1));
    let billing = &c.backends[1];
    assert_eq!(billing.balance, Balance::RoundRobin);
    assert_eq!(billing.targets[0].addr, "[::1]:9000".parse().unwrap());
    assert_eq!(billing.targets[0].authority, "[::1]:9000");
    assert_eq!(billing.pool, PoolSettings::default());
    assert_eq!(billing.unavailable_for, Duration::from_secs(5));

    assert_eq!(c.routes.len(), 4);
    let r = &c.routes[0];
    assert_eq!(r.name, "orders-api");
    assert_eq!(
        r.hosts,
        vec![
            HostPattern::Exact((*b"api.example.com").into()),
            HostPattern::Wildcard((*b".example.com").into())
        ]
    );
    assert_eq!(r.matches.len(), 2);
    let m = &r.matches[0];
    assert!(matches!(&m.path, PathMatch::Prefix(p) if &**p == b"/orders"));
    assert_eq!(m.method.as_deref(), Some(&b"GET"[..]));
    assert_eq!(&*m.headers[0].name, b"x-version");
    assert!(matches!(&m.headers[0].value, ValueMatch::Exact(v) if &**v == b"2"));
    assert!(m.headers[1].value.matches(b"acme"));
    assert!(!m.headers[1].value.matches(b"acme1"));
    assert_eq!(&*m.query[0].name, b"debug");
    assert!(matches!(&r.action, RouteAction::Backend(b) if b == "orders"));
    assert_eq!(
        r.request_headers.set,
        vec![((*b"x-gateway").into(), (*b"ringway").into())]
    );
    assert_eq!(
        r.request_headers.add,
        vec![((*b"x-trace").into(), (*b"on").into())]
    );
    assert_eq!(r.request_headers.remove, vec![(*b"x-internal").into()]);
    assert!(r.request_headers.touches(b"X-Internal"));
    assert!(r.request_headers.touches(b"x-gateway"));
    assert!(!r.request_headers.touches(b"x-trace"));
    assert_eq!(r.response_headers.remove, vec![(*b"server").into()]);
    assert!(r.response_headers.set.is_empty());
    assert_eq!(r.rewrite, Some(Rewrite::Prefix((*b"/v2").into())));

    let r = &c.routes[1];
    assert_eq!(r.name, "route-1");
    assert!(r.hosts.is_empty());
    assert!(matches!(r.matches[0].path, PathMatch::Template(_)));
    assert!(matches!(r.matches[1].path, PathMatch::Regex(_)));
    assert!(matches!(&r.matches[2].path, PathMatch::Exact(p) if &**p == b"/exact"));
    assert!(r.request_headers.is_empty());

    let r = &c.routes[2];
    assert!(matches!(r.matches[0].path, PathMatch::Prefix(ref p) if p.is_empty()));
    match &r.action {
        RouteAction::Redirect(rd) => assert_eq!(
            rd,
            &Redirect {
                scheme: Some("https".into()),
                host: None,
                port: Some(443),
                path: None,
                status: 301
            }
        ),
        other => panic!("{other:?}"),
    }
    match &c.routes[3].action {
        RouteAction::Respond(d) => {
            assert_eq!(d.status, 200);
            assert_eq!(
                d.headers,
                vec![("content-type".into(), "application/json".into())]
            );
            assert_eq!(&d.body[..], br#"{"ok":true}"#);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults() {
    let c = load("listeners: [{address: 0.0.0.0:8080}]").unwrap();
    assert_eq!(c.workers, None);
    assert_eq!(c.cpus, None);
    assert_eq!(c.runtime, RuntimeSettings::default());
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.listeners[0].name, "listener-0");
    assert!(c.backends.is_empty());
    assert!(c.routes.is_empty());
    let c = load("workers: auto\ncpus: 2\nlisteners: [{address: 0.0.0.0:8080}]").unwrap();
    assert_eq!(c.workers, None);
    assert_eq!(c.cpus, Some(vec![2]));
}

#[test]
fn env_errors_name_source_and_line() {
    let e = errors("workers: 2\nlisteners: [{address: ${NOT_SET}}]\n");
    assert_eq!(
        e,
        vec!["test.yaml: line 2 column 23: ${NOT_SET}: environment variable NOT_SET is not set (write ${NOT_SET:-default} to give a default)"]
    );
    let c = load("listeners: [{address: \"${NOT_SET:-127.0.0.1:1}\"}]").unwrap();
    assert_eq!(c.listeners[0].address, "127.0.0.1:1".parse().unwrap());
}

#[test]
fn yaml_errors_have_line_column_and_path() {
    let e = errors("listeners: [{address: 0.0.0.0:80}]\nbackends:\n  - name: a\n    targets:\n      - url: http://127.0.0.1:1\n      - url: http://127.0.0.1:2\n        weight: x\n");
    assert_eq!(
        e,
        vec!["test.yaml: line 7 column 17: backends[0].targets[1].weight: invalid type: string \"x\", expected u32"]
    );
    let e = errors("listeners: [{address: 0.0.0.0:80}]\ntimeouts:\n  idle: 10\n");
    assert_eq!(
        e,
        vec!["test.yaml: line 3 column 9: timeouts.idle: invalid duration 10: a duration needs a unit, like 10s or 10ms"]
    );
    let e = errors("listeners: [{address: 0.0.0.0:80}]\nruntime:\n  drivr: epoll\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(
            "test.yaml: line 3 column 3: runtime: unknown field `drivr`, expected one of `driver`"
        ),
        "{}",
        e[0]
    );
    let e = errors("listeners: [{address: 0.0.0.0:80}]\nruntime: {driver: uring}\n");
    assert!(
        e[0].contains(
            "runtime.driver: unknown variant `uring`, expected one of `auto`, `io_uring`, `epoll`"
        ),
        "{}",
        e[0]
    );
    let e = errors("listeners: [\n");
    assert!(e[0].starts_with("test.yaml: "), "{}", e[0]);
    let e = errors("workers: 0\nlisteners: [{address: 0.0.0.0:80}]\n");
    assert_eq!(
        e,
        vec!["test.yaml: line 1 column 10: workers: workers must be at least 1 (or `auto` for one per CPU)"]
    );
    let e = errors("limits: {max_body_bytes: 10XB}\nlisteners: [{address: 0.0.0.0:80}]\n");
    assert!(
        e[0].contains("limits.max_body_bytes: invalid size \"10XB\""),
        "{}",
        e[0]
    );
}

#[test]
fn empty_document_needs_a_listener() {
    assert_eq!(
        errors(""),
        vec!["test.yaml: listeners: at least one listener is required"]
    );
    assert_eq!(
        errors("# nothing\n"),
        vec!["test.yaml: listeners: at least one listener is required"]
    );
}

#[test]
fn top_level_errors() {
    assert_eq!(
        error_with("runtime: {ring_entries: 1000}\n"),
        "test.yaml: runtime.ring_entries: must be a power of two from 2 to 32768, not 1000"
    );
    assert_eq!(
        error_with("runtime: {ring_entries: 65536}\n"),
        "test.yaml: runtime.ring_entries: must be a power of two from 2 to 32768, not 65536"
    );
    assert_eq!(
        error_with("limits: {max_headers: 0}\n"),
        "test.yaml: limits.max_headers: must be greater than 0"
    );
    assert_eq!(
        error_with("timeouts: {header: 0s}\n"),
        "test.yaml: timeouts.header: must be greater than 0s"
    );
}

#[test]
fn listener_errors() {
    assert_eq!(
        errors("listeners: [{address: localhost:80}]"),
        vec!["test.yaml: listeners[0].address: \"localhost:80\" is not an IP:port address (write e.g. 0.0.0.0:8080, or [::]:8080 for IPv6)"]
    );
    assert_eq!(
        errors("listeners: [{name: a, address: 0.0.0.0:80}, {name: a, address: 0.0.0.0:81}]"),
        vec!["test.yaml: listeners[1].name: listener name \"a\" is already used by listeners[0]"]
    );
    assert_eq!(
        errors("listeners: [{address: 0.0.0.0:80}, {address: 0.0.0.0:80}]"),
        vec![
            "test.yaml: listeners[1].address: address 0.0.0.0:80 is already used by \"listener-0\""
        ]
    );
}

#[test]
fn backend_errors() {
    assert_eq!(
        error_with("  - name: orders\n    targets: [{url: http://127.0.0.1:1}]\n"),
        "test.yaml: backends[2].name: backend name \"orders\" is already used by backends[0]"
    );
    assert_eq!(
        error_with("  - name: x\n"),
        "test.yaml: backends[2].targets: at least one target is required"
    );
    let target =
        |url: &str| error_with(&format!("  - name: x\n    targets: [{{url: \"{url}\"}}]\n"));
    assert_eq!(
        target("ftp://127.0.0.1:21"),
        "test.yaml: backends[2].targets[0].url: \"ftp://127.0.0.1:21\": scheme \"ftp\" is not supported (use http:// or https://)"
    );
    assert_eq!(
        target("ftp://127.0.0.1"),
        "test.yaml: backends[2].targets[0].url: \"ftp://127.0.0.1\": scheme \"ftp\" is not supported (use http:// or https://)"
    );
    assert_eq!(
        target("127.0.0.1:80"),
        "test.yaml: backends[2].targets[0].url: \"127.0.0.1:80\" is not a URL (write e.g. http://10.0.0.5:8080)"
    );
    assert_eq!(
        target("http://127.0.0.1:80/api"),
        "test.yaml: backends[2].targets[0].url: \"http://127.0.0.1:80/api\": a target URL has no path or query (write http://host:port)"
    );
    assert_eq!(
        target("http://127.0.0.1:0"),
        "test.yaml: backends[2].targets[0].url: \"http://127.0.0.1:0\": \"0\" is not a port (1..=65535)"
    );
    assert_eq!(
        error_with("  - name: x\n    targets: [{url: \"http://127.0.0.1\", weight: 0}]\n"),
        "test.yaml: backends[2].targets[0].weight: must be from 1 to 1000, not 0"
    );
    assert_eq!(
        error_with("  - name: x\n    targets: [{url: \"http://127.0.0.1\", weight: 1001}]\n"),
        "test.yaml: backends[2].targets[0].weight: must be from 1 to 1000, not 1001"
    );
}

#[test]
fn route_action_errors() {
    assert_eq!(
        route_error("{name: a}"),
        "test.yaml: routes[0]: a route needs one action: backend, redirect or return_response"
    );
    assert_eq!(
        route_error("{backend: orders, return_response: {status: 200}}"),
        "test.yaml: routes[0]: a route has exactly one action, but this one has backend and return_response"
    );
    assert_eq!(
        route_error("{backend: orders-v2}"),
        "test.yaml: routes[0].backend: no backend named \"orders-v2\" (known: orders, billing)"
    );
    assert_eq!(
        errors("listeners: [{address: 0.0.0.0:80}]\nroutes: [{backend: x}]"),
        vec!["test.yaml: routes[0].backend: no backend named \"x\" (no backends are defined)"]
    );
    assert_eq!(
        route_error("{redirect: {status: 300}}"),
        "test.yaml: routes[0].redirect.status: must be 301, 302, 303, 307 or 308, not 300"
    );
    assert_eq!(
        route_error("{redirect: {scheme: ftp}}"),
        "test.yaml: routes[0].redirect.scheme: must be http or https, not \"ftp\""
    );
    assert_eq!(
        route_error("{redirect: {path: new}}"),
        "test.yaml: routes[0].redirect.path: \"new\" must start with '/'"
    );
    assert_eq!(
        route_error("{redirect: {port: 0}}"),
        "test.yaml: routes[0].redirect.port: must be from 1 to 65535"
    );
    assert_eq!(
        route_error("{return_response: {status: 199}}"),
        "test.yaml: routes[0].return_response.status: must be from 200 to 599, not 199"
    );
    assert_eq!(
        route_error("{return_response: {status: 600}}"),
        "test.yaml: routes[0].return_response.status: must be from 200 to 599, not 600"
    );
    assert_eq!(
        route_error("{return_response: {status: 200, headers: {\"bad name\": x}}}"),
        "test.yaml: routes[0].return_response.headers: \"bad name\" is not a valid header name"
    );
}

#[test]
fn route_match_errors() {
    let m = |matches: &str| route_error(&format!("{{backend: orders, matches: [{matches}]}}"));
    assert_eq!(
        m("{path: {type: exact, value: orders}}"),
        "test.yaml: routes[0].matches[0].path.value: \"orders\" must start with '/'"
    );
    assert_eq!(
        m("{}, {path: {type: regex, value: \"/(\"}}"),
        "test.yaml: routes[0].matches[1].path.value: invalid regex \"/(\": unclosed group"
    );
    assert_eq!(
        m("{path: {type: template, value: \"/a/{id\"}}"),
        "test.yaml: routes[0].matches[0].path.value: template \"/a/{id\": segment \"{id\" opens '{' but does not end with '}' (a parameter must be a whole segment)"
    );
    assert_eq!(
        m("{method: get}"),
        "test.yaml: routes[0].matches[0].method: methods are case-sensitive: write \"GET\", not \"get\""
    );
    assert_eq!(
        m("{method: \"G T\"}"),
        "test.yaml: routes[0].matches[0].method: \"G T\" is not an HTTP method"
    );
    assert_eq!(
        m("{headers: [{name: \"x y\", value: 1}]}"),
        "test.yaml: routes[0].matches[0].headers[0].name: \"x y\" is not a valid header name"
    );
    assert_eq!(
        m("{headers: [{name: x, type: regex, value: \"[\"}]}"),
        "test.yaml: routes[0].matches[0].headers[0].value: invalid regex \"[\": unclosed character class"
    );
    assert_eq!(
        m("{query: [{name: \"\", value: 1}]}"),
        "test.yaml: routes[0].matches[0].query[0].name: \"\" is not a query parameter name"
    );
    assert_eq!(
        route_error("{backend: orders, hosts: [\"a.*.com\"]}"),
        "test.yaml: routes[0].hosts[0]: \"a.*.com\": a wildcard is only allowed as the whole first label, as in \"*.example.com\""
    );
}

#[test]
fn filter_errors() {
    assert_eq!(
        route_error("{backend: orders, matches: [{path: {value: /a}}, {path: {type: exact, value: /b}}], filters: {rewrite: {prefix: /v2}}}"),
        "test.yaml: routes[0].filters.rewrite.prefix: a prefix rewrite needs every match of the route to be a prefix match, but matches[1] is exact"
    );
    assert_eq!(
        route_error("{backend: orders, filters: {rewrite: {prefix: /v2, path: /x}}}"),
        "test.yaml: routes[0].filters.rewrite: set either path or prefix, not both"
    );
    assert_eq!(
        route_error("{backend: orders, filters: {rewrite: {}}}"),
        "test.yaml: routes[0].filters.rewrite: set path or prefix"
    );
    assert_eq!(
        route_error("{backend: orders, filters: {rewrite: {path: x}}}"),
        "test.yaml: routes[0].filters.rewrite.path: \"x\" must start with '/'"
    );
    assert_eq!(
        route_error("{return_response: {status: 200}, filters: {rewrite: {path: /x}}}"),
        "test.yaml: routes[0].filters.rewrite: a rewrite applies only to routes with a backend"
    );
    assert_eq!(
        route_error("{backend: orders, filters: {request_headers: {set: {\"a:b\": x}}}}"),
        "test.yaml: routes[0].filters.request_headers.set: \"a:b\" is not a valid header name"
    );
    assert_eq!(
        route_error("{backend: orders, filters: {response_headers: {add: {x: \"a\\nb\"}}}}"),
        "test.yaml: routes[0].filters.response_headers.add.x: \"a\\nb\" is not a valid header value (no control characters or line breaks)"
    );
    assert_eq!(
        route_error("{backend: orders, filters: {request_headers: {remove: [\"\"]}}}"),
        "test.yaml: routes[0].filters.request_headers.remove[0]: \"\" is not a valid header name"
    );
}

#[test]
fn collects_every_error() {
    let e = errors(
        r#"
runtime: {ring_entries: 3}
listeners: [{address: nowhere}]
backends:
  - name: orders
    targets: [{url: "ftp://127.0.0.1"}]
routes:
  - backend: orders
  - backend: nope
    matches: [{path: {type: regex, value: "("}}]
  - redirect: {status: 200}
"#,
    );
    assert_eq!(
        e,
        vec![
            "test.yaml: runtime.ring_entries: must be a power of two from 2 to 32768, not 3",
            "test.yaml: listeners[0].address: \"nowhere\" is not an IP:port address (write e.g. 0.0.0.0:8080, or [::]:8080 for IPv6)",
            "test.yaml: backends[0].targets[0].url: \"ftp://127.0.0.1\": scheme \"ftp\" is not supported (use http:// or https://)",
            "test.yaml: routes[1].matches[0].path.value: invalid regex \"(\": unclosed group",
            "test.yaml: routes[1].backend: no backend named \"nope\" (known: orders)",
            "test.yaml: routes[2].redirect.status: must be 301, 302, 303, 307 or 308, not 200",
        ]
    );
    let display = ConfigError { errors: e }.to_string();
    assert_eq!(display.lines().count(), 6);
}

#[test]
fn load_file_reads_and_names_the_file() {
    let dir = std::env::temp_dir().join(format!("ringway-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gw.yaml");
    std::fs::write(
        &path,
        "listeners: [{address: 127.0.0.1:1}]\nroutes: [{backend: x}]\n",
    )
    .unwrap();
    let e = load_file(&path).unwrap_err();
    assert_eq!(
        e.errors,
        vec![format!(
            "{}: routes[0].backend: no backend named \"x\" (no backends are defined)",
            path.display()
        )]
    );
    let missing = load_file(&dir.join("missing.yaml")).unwrap_err();
    assert!(missing.errors[0].contains("missing.yaml: cannot read the file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The YAML examples in docs/configuration.md load as documented.
#[test]
fn documentation_examples_load() {
    let doc = include_str!("../../../docs/configuration.md");
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    let find = |start: &str| -> &str {
        blocks
            .iter()
            .find(|b| b.trim_start().starts_with(start.trim_start()))
            .unwrap_or_else(|| panic!("no yaml block starting with {start:?}"))
    };
    let env_example = find("listeners:\n  - address: ${RINGWAY_LISTEN");
    let c = load(env_example).unwrap();
    assert_eq!(c.listeners[0].address, "127.0.0.1:8080".parse().unwrap());

    let text = [
        find("listeners:\n  - name: public"),
        find("backends:"),
        find("routes:"),
    ]
    .concat();
    let c = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.backends[0].name, "orders");
    assert_eq!(c.routes[0].name, "orders-api");
    crate::route::Router::build(&c).unwrap();

    let listener = "listeners: [{address: 127.0.0.1:8080}]\nroutes:\n  - name: r\n";
    for action in ["    redirect:", "    return_response:"] {
        let c = load(&format!("{listener}{}", find(action))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.routes.len(), 1);
    }
}

#[test]
fn shape_errors_say_what_was_expected() {
    let e = errors("- a\n");
    assert_eq!(
        e,
        vec!["test.yaml: line 1 column 1: invalid type: sequence, expected a mapping of configuration keys (listeners, backends, routes, ...)"]
    );
    let e = errors("listeners: [foo]\n");
    assert_eq!(
        e,
        vec!["test.yaml: line 1 column 13: listeners[0]: invalid type: string \"foo\", expected a listener: a mapping with address and optionally name, max_connections, tls"]
    );
}
