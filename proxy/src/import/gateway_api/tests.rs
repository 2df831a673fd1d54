//! The conversion of the manifests in `tests/fixtures/gateway-api/` (modelled on the Gateway
//! API's own guides and conformance tests) and of small inline ones; every result is loaded
//! through Ringway's configuration loader.

use serde_json::{json, Value};

use super::backends::fit_weights;
use super::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gateway-api")
}

fn fixture(name: &str) -> (String, String) {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (name.to_string(), text)
}

fn convert_fixture(name: &str) -> Conversion {
    match convert(&[fixture(name)], &Options::default()) {
        Ok(c) => c,
        Err(errors) => panic!("{name}: {}", show(&errors)),
    }
}

fn convert_text(text: &str) -> Result<Conversion, Vec<Error>> {
    convert(
        &[("test.yaml".to_string(), text.to_string())],
        &Options::default(),
    )
}

fn show(errors: &[Error]) -> String {
    errors
        .iter()
        .map(Error::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn route<'c>(c: &'c Conversion, name: &str) -> &'c Value {
    c.routes
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {:#?}", c.routes))
}

fn backend<'c>(c: &'c Conversion, name: &str) -> &'c Value {
    c.backends
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {:#?}", c.backends))
}

fn route_names(c: &Conversion) -> Vec<&str> {
    c.routes
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

/// The notes as `object: field: message`, for asserting on.
fn notes(c: &Conversion) -> Vec<String> {
    c.notes
        .iter()
        .map(|n| format!("{}: {}: {}", n.object, n.field, n.message))
        .collect()
}

fn has_note(c: &Conversion, object: &str, field: &str, words: &str) -> bool {
    c.notes
        .iter()
        .any(|n| n.object == object && n.field == field && n.message.contains(words))
}

/// Loads the conversion as a whole Ringway document (with a listener if it has none), its
/// Services resolved to 127.0.0.1 since cluster names do not resolve here.
fn load(c: &Conversion) -> crate::config::Config {
    let mut listeners = c.listeners.clone();
    if listeners.is_empty() {
        listeners.push(json!({"address": "127.0.0.1:0"}));
    }
    let doc = json!({"listeners": listeners, "backends": c.backends, "routes": c.routes});
    let text = serde_json::to_string_pretty(&doc).unwrap();
    match crate::config::load_str(&text, "converted.yaml", &|_| None) {
        Ok(config) => config,
        Err(e) => panic!("the conversion does not load:\n{e}\n{text}"),
    }
}

fn local() -> Options {
    Options {
        service_host: "127.0.0.1".to_string(),
        ..Options::default()
    }
}

const FIXTURES: [&str; 7] = [
    "01-http-routing.yaml",
    "02-traffic-splitting.yaml",
    "03-header-modifiers.yaml",
    "04-redirects-rewrites.yaml",
    "05-matches.yaml",
    "06-unsupported.yaml",
    "07-kubectl-list.json",
];

#[test]
fn http_routing_splits_by_host_path_and_header() {
    let c = convert_fixture("01-http-routing.yaml");
    assert_eq!(
        c.listeners,
        vec![json!({"name": "example-gateway-http", "address": "0.0.0.0:80"})]
    );
    // Ordered by namespace/name (no creation times), rules in order.
    assert_eq!(
        route_names(&c),
        [
            "default-bar-route-0",
            "default-bar-route-1",
            "default-foo-route-0",
            "default-site-0",
            "default-store-0",
            "default-store-1",
            "default-store-2",
        ]
    );
    assert_eq!(
        *route(&c, "default-store-1"),
        json!({
            "name": "default-store-1",
            "hosts": ["example.com"],
            "matches": [{
                "path": {"type": "prefix", "value": "/store"},
                "headers": [{"name": "env", "value": "canary"}],
            }],
            "backend": "default-store-v2-8080",
        })
    );
    assert_eq!(
        route(&c, "default-store-2")["matches"],
        json!([{"path": {"type": "exact", "value": "/store/checkout"}, "method": "POST"}])
    );
    assert_eq!(
        route(&c, "default-site-0")["hosts"],
        json!(["example.com", "www.example.com"])
    );
    // A rule without matches matches every path.
    assert_eq!(
        route(&c, "default-bar-route-1")["matches"],
        json!([{"path": {"type": "prefix", "value": "/"}}])
    );
    // One backend per Service port, shared by the rules that use it.
    assert_eq!(
        route(&c, "default-store-0")["backend"],
        "default-store-v1-8080"
    );
    assert_eq!(
        route(&c, "default-store-2")["backend"],
        "default-store-v1-8080"
    );
    assert_eq!(c.backends.len(), 6);
    assert_eq!(
        *backend(&c, "default-store-v1-8080"),
        json!({
            "name": "default-store-v1-8080",
            "targets": [{"url": "http://store-v1.default.svc.cluster.local:8080"}],
        })
    );
    assert_eq!(
        notes(&c),
        [
            "GatewayClass example-gateway-class: : skipped: Ringway itself is the implementation, \
          a GatewayClass has nothing to convert"
        ]
    );
}

#[test]
fn traffic_splitting_becomes_a_weighted_backend() {
    let c = convert_fixture("02-traffic-splitting.yaml");
    assert_eq!(
        c.listeners,
        vec![json!({"name": "prod-web-prod-web-gw", "address": "0.0.0.0:8080"})]
    );
    assert_eq!(
        *backend(&c, "canary-foo-route-0"),
        json!({
            "name": "canary-foo-route-0",
            "balance": "weighted",
            "targets": [
                {"url": "http://foo-v1.canary.svc.cluster.local:8080", "weight": 90},
                {"url": "http://foo-v2.canary.svc.cluster.local:8080", "weight": 10},
            ],
        })
    );
    assert_eq!(
        route(&c, "canary-foo-route-0")["backend"],
        "canary-foo-route-0"
    );
    // The header rule sends everything to foo-v2's shared backend.
    assert_eq!(
        route(&c, "canary-foo-route-1")["backend"],
        "canary-foo-v2-8080"
    );
    // Weights past 1000 are scaled, exactly here; weight 0 is left out.
    assert_eq!(
        backend(&c, "canary-checkout-0")["targets"],
        json!([
            {"url": "http://checkout-blue.canary.svc.cluster.local:80", "weight": 3},
            {"url": "http://checkout-green.canary.svc.cluster.local:80", "weight": 1},
        ])
    );
    assert!(has_note(
        &c,
        "HTTPRoute canary/checkout",
        "spec.rules[0].backendRefs",
        "weights 750000:250000 exceed Ringway's 1..=1000: scaled to 3:1 (the same ratios)"
    ));
    assert!(has_note(
        &c,
        "HTTPRoute canary/checkout",
        "spec.rules[0].backendRefs[2].weight",
        "gets no traffic"
    ));
    // A route without hostnames takes the listener's.
    assert_eq!(
        route(&c, "canary-checkout-0")["hosts"],
        json!(["*.example.com"])
    );
    assert_eq!(
        route(&c, "canary-foo-route-0")["hosts"],
        json!(["foo.example.com"])
    );
    // Cross-namespace attachment to a listener that admits only its own namespace.
    assert!(has_note(
        &c,
        "HTTPRoute canary/foo-route",
        "spec.parentRefs[0]",
        "allowedRoutes.namespaces.from: Same, the default"
    ));
}

#[test]
fn header_modifiers_become_header_filters() {
    let c = convert_fixture("03-header-modifiers.yaml");
    assert_eq!(
        route(&c, "default-header-http-echo-0")["filters"],
        json!({"request_headers": {"add": {"my-header-name": "my-header-value"}}})
    );
    // Host cannot be edited in Ringway: dropped with a note, the rest kept.
    assert_eq!(
        route(&c, "default-header-http-echo-1")["filters"],
        json!({"request_headers": {
            "set": {"my-header-name": "my-new-header-value"},
            "remove": ["x-header-remove"],
        }})
    );
    assert_eq!(
        notes(&c),
        ["HTTPRoute default/header-http-echo: spec.rules[1].filters[0].requestHeaderModifier.set[1]: \
          \"Host\" is not edited: Ringway writes this header itself (framing, connection \
          management, Host as the client sent it) and lets no filter change it"]
    );
    assert_eq!(
        route(&c, "default-header-http-echo-2")["filters"],
        json!({"response_headers": {
            "set": {"X-Header-Set": "set-overwrites-values"},
            "add": {"X-Header-Add-1": "header-add-1"},
            "remove": ["X-Header-Remove"],
        }})
    );
}

#[test]
fn redirects_and_rewrites() {
    let c = convert_fixture("04-redirects-rewrites.yaml");
    assert_eq!(
        c.listeners,
        vec![
            json!({"name": "redirect-gateway-http", "address": "0.0.0.0:80"}),
            json!({"name": "redirect-gateway-https", "address": "0.0.0.0:443"}),
        ]
    );
    assert!(has_note(
        &c,
        "Gateway default/redirect-gateway",
        "spec.listeners[1].tls",
        "add tls: {certificates: [{cert: FILE, key: FILE, names: [\"redirect.example\"]}]} to it \
         (the certificate and key of Secret redirect-gateway-cert)"
    ));
    assert_eq!(
        *route(&c, "default-http-filter-redirect-0"),
        json!({
            "name": "default-http-filter-redirect-0",
            "hosts": ["redirect.example"],
            "matches": [{"path": {"type": "prefix", "value": "/"}}],
            "redirect": {"scheme": "https", "status": 301},
        })
    );
    // The HTTPS listener's hostname, since the route names none.
    assert_eq!(
        route(&c, "default-https-route-0")["redirect"],
        json!({"path": "/paprika", "status": 302})
    );
    assert_eq!(
        route(&c, "default-https-route-0")["hosts"],
        json!(["redirect.example"])
    );
    // A prefix redirect cannot be expressed: the path is kept, with a note.
    assert_eq!(
        route(&c, "default-https-route-1")["redirect"],
        json!({"status": 302})
    );
    assert!(has_note(
        &c,
        "HTTPRoute default/https-route",
        "spec.rules[1].filters[0].requestRedirect.path",
        "the matched prefix cannot be replaced"
    ));
    assert_eq!(
        route(&c, "default-http-filter-rewrite-0")["filters"],
        json!({"rewrite": {"prefix": "/fennel"}})
    );
    assert_eq!(
        route(&c, "default-http-filter-rewrite-1")["filters"],
        json!({"rewrite": {"path": "/menu"}})
    );
    assert!(has_note(
        &c,
        "HTTPRoute default/http-filter-rewrite",
        "spec.rules[0].filters[0].urlRewrite.hostname",
        "not converted: Ringway forwards the Host the client sent"
    ));
    // Bound to one listener by sectionName, served on both.
    assert!(has_note(
        &c,
        "HTTPRoute default/http-filter-redirect",
        "spec.parentRefs",
        "attached to redirect-gateway-http in Kubernetes, the route also answers on \
         redirect-gateway-https"
    ));
}

#[test]
fn query_method_header_and_regex_matches() {
    let c = convert_fixture("05-matches.yaml");
    assert_eq!(
        route(&c, "gateway-conformance-infra-query-param-matching-1")["matches"],
        json!([{
            "path": {"type": "prefix", "value": "/"},
            "query": [
                {"name": "animal", "value": "dolphin"},
                {"name": "color", "type": "regex", "value": "blue|green"},
            ],
        }])
    );
    assert_eq!(
        route(&c, "gateway-conformance-infra-method-matching-0")["matches"],
        json!([
            {"path": {"type": "prefix", "value": "/"}, "method": "POST"},
            {"path": {"type": "prefix", "value": "/items"}, "method": "PUT"},
        ])
    );
    assert_eq!(
        route(&c, "gateway-conformance-infra-method-matching-1")["matches"][0]["headers"],
        json!([{"name": "version", "type": "regex", "value": "v[0-9]+"}])
    );
    assert_eq!(
        route(&c, "gateway-conformance-infra-regex-matching-0")["matches"],
        json!([{"path": {"type": "regex", "value": "/v[0-9]+/users/[a-z0-9-]+"}}])
    );
    assert!(has_note(
        &c,
        "Gateway gateway-conformance-infra/same-namespace",
        "spec.listeners[0].allowedRoutes.namespaces.from",
        "not enforced"
    ));
    assert_eq!(c.notes.len(), 1, "{:#?}", notes(&c));
}

#[test]
fn unsupported_parts_are_noted() {
    let c = convert_fixture("06-unsupported.yaml");
    let mirror = "HTTPRoute apps/http-filter-mirror";
    for (object, field, words) in [
        ("GRPCRoute apps/grpc-app", "", "not converted"),
        ("Service apps/foo-v1", "", "skipped"),
        (
            "Gateway infra/mirror-gateway",
            "spec.addresses",
            "bind 0.0.0.0",
        ),
        (
            "Gateway infra/mirror-gateway",
            "spec.listeners[1].tls",
            "Secret infra/grpc-cert",
        ),
        (
            mirror,
            "spec.hostnames[1]",
            "\"other.example\" matches the hostname of no listener",
        ),
        (
            mirror,
            "spec.rules[0].filters[0]",
            "does not mirror requests",
        ),
        (
            mirror,
            "spec.rules[1].sessionPersistence",
            "no session persistence",
        ),
        (
            mirror,
            "spec.rules[1].timeouts.request",
            "top-level timeouts.request: 10s",
        ),
        (
            mirror,
            "spec.rules[1].timeouts.backendRequest",
            "timeouts.upstream_response: 2s",
        ),
        (
            mirror,
            "spec.rules[2].backendRefs[0]",
            "storage.example.com/Bucket",
        ),
        (mirror, "spec.rules[2].backendRefs", "the route answers 500"),
    ] {
        assert!(
            has_note(&c, object, field, words),
            "no note {object}: {field}: {words}\n{:#?}",
            notes(&c)
        );
    }
    // ReferenceGrant is accepted silently.
    assert!(!c
        .notes
        .iter()
        .any(|n| n.object.starts_with("ReferenceGrant")));
    // The listener's wildcard keeps only the hostname under it.
    assert_eq!(
        route(&c, "apps-http-filter-mirror-0")["hosts"],
        json!(["app.mirror.example"])
    );
    assert_eq!(
        route(&c, "apps-http-filter-mirror-0")["backend"],
        "apps-foo-v1-8080"
    );
    // Retry has a Ringway policy.
    assert_eq!(
        route(&c, "apps-http-filter-mirror-1")["policies"],
        json!({"backend": [{"retry": {
            "count": 3,
            "interval": "250ms",
            "condition": {"statuses": [502, 503]},
        }}]})
    );
    // No valid backend: 500, as the Gateway API requires.
    assert_eq!(
        route(&c, "apps-http-filter-mirror-2")["return_response"],
        json!({"status": 500})
    );
    assert!(route(&c, "apps-http-filter-mirror-2")
        .get("backend")
        .is_none());
}

#[test]
fn kubectl_lists_in_json_are_ordered_by_age() {
    let c = convert_fixture("07-kubectl-list.json");
    // zeta is older than alpha: it wins the tie, so it comes first.
    assert_eq!(route_names(&c), ["web-zeta-0", "web-alpha-0"]);
    assert_eq!(
        c.listeners,
        vec![json!({"name": "edge-web", "address": "0.0.0.0:9080"})]
    );
    assert!(c.notes.is_empty(), "{:#?}", notes(&c));
}

#[test]
fn every_fixture_loads_as_a_ringway_configuration() {
    for name in FIXTURES {
        let c = convert(&[fixture(name)], &local()).unwrap();
        let config = load(&c);
        assert_eq!(config.routes.len(), c.routes.len(), "{name}");
        // The YAML fragment says the same as the values, notes aside.
        let yaml: Value = serde_yaml_ng::from_str(&c.to_yaml()).unwrap();
        assert_eq!(
            yaml,
            json!({"listeners": c.listeners, "backends": c.backends, "routes": c.routes}),
            "{name}"
        );
    }
    // And all of them at once: Gateways sharing port 80 share a listener.
    let files = read_paths(&[fixture_dir()]).unwrap();
    let all = convert(&files, &local()).unwrap();
    let config = load(&all);
    let ports: Vec<u16> = config.listeners.iter().map(|l| l.address.port()).collect();
    assert_eq!(ports, [80, 8080, 443, 8443, 9080]);
    assert!(all.notes.iter().any(|n| n
        .message
        .contains("port 80 is also a listener of Gateway default/example-gateway")));
}

#[test]
fn yaml_output_puts_notes_next_to_what_they_concern() {
    let c = convert_fixture("04-redirects-rewrites.yaml");
    let yaml = c.to_yaml();
    assert!(yaml.starts_with("# Converted from Kubernetes Gateway API manifests"));
    assert!(yaml.contains("# 6 notes say what Ringway cannot express"));
    let lines: Vec<&str> = yaml.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .rposition(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in\n{yaml}"))
    };
    // The prefix-redirect note sits right above its route.
    let route_line = at("- name: default-https-route-1");
    assert!(lines[route_line - 1].trim_start().starts_with("# 04-redirects-rewrites.yaml: HTTPRoute default/https-route: spec.rules[1].filters[0].requestRedirect.path:"));
    // The TLS note sits in the listeners section.
    let tls = at("spec.listeners[1].tls");
    assert!(tls > at("listeners:") && tls < at("backends:"));
}

#[test]
fn weights_fit_ringways_range() {
    assert_eq!(fit_weights(&[90, 10]), [90, 10]);
    assert_eq!(fit_weights(&[1000, 1]), [1000, 1]);
    // Reduced by the common divisor when that is enough: the ratio is kept exactly.
    assert_eq!(fit_weights(&[750_000, 250_000]), [3, 1]);
    assert_eq!(fit_weights(&[500_000, 1500, 2500]), [1000, 3, 5]);
    // Otherwise the nearest shares integers up to 1000 can give; no target drops to 0.
    assert_eq!(fit_weights(&[1_000_000, 1]), [1000, 1]);
    assert_eq!(fit_weights(&[333_333, 666_667]), [1, 2]);
    let w = fit_weights(&[999_983, 500_009, 7]);
    assert!(w.iter().all(|&x| (1..=1000).contains(&x)), "{w:?}");
    assert_eq!(w[2], 1);
    let share = w[1] as f64 / w.iter().sum::<u64>() as f64;
    assert!((share - 500_009.0 / 1_499_999.0).abs() < 0.001, "{w:?}");
}

#[test]
fn inexact_scaling_is_noted_with_the_shares() {
    let c = convert_text(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  rules:
  - backendRefs:
    - {name: a, port: 80, weight: 1000000}
    - {name: b, port: 80, weight: 1}
    - {name: a, port: 80, weight: 1}
",
    )
    .unwrap();
    // The same Service twice is one target with both weights.
    assert_eq!(
        backend(&c, "default-split-0")["targets"],
        json!([
            {"url": "http://a.default.svc.cluster.local:80", "weight": 1000},
            {"url": "http://b.default.svc.cluster.local:80", "weight": 1},
        ])
    );
    assert!(has_note(
        &c,
        "HTTPRoute default/split",
        "spec.rules[0].backendRefs",
        "weights 1000001:1 exceed Ringway's 1..=1000: scaled to 1000:1 (shares 99.9%, 0.1% instead of 100%, 0%)"
    ));
    load(
        &convert(
            &[(
                "t.yaml".into(),
                "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  rules:
  - backendRefs:
    - {name: a, port: 80, weight: 1000000}
    - {name: b, port: 81, weight: 3}
"
                .into(),
            )],
            &local(),
        )
        .unwrap(),
    );
}

#[test]
fn all_zero_weights_answer_500() {
    let c = convert_text(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: drained, namespace: shop}
spec:
  rules:
  - backendRefs:
    - {name: a, port: 80, weight: 0}
    - {name: b, port: 80, weight: 0}
",
    )
    .unwrap();
    assert_eq!(
        route(&c, "shop-drained-0")["return_response"],
        json!({"status": 500})
    );
    assert!(c.backends.is_empty());
    assert!(has_note(
        &c,
        "HTTPRoute shop/drained",
        "spec.rules[0].backendRefs",
        "every backendRef has weight 0: the route answers 500"
    ));
    assert!(has_note(
        &c,
        "HTTPRoute shop/drained",
        "spec.parentRefs",
        "none: in Kubernetes the route serves no Gateway"
    ));
    load(&c);
}

#[test]
fn hostnames_intersect_with_the_listener() {
    let gateway = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: x
  listeners:
  - {name: wild, protocol: HTTP, port: 80, hostname: \"*.example.com\"}
  - {name: exact, protocol: HTTP, port: 80, hostname: api.example.net}
---
";
    let c = convert_text(&format!(
        "{gateway}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [foo.example.com, \"*.bar.example.com\", \"*.example.net\", other.org]
  rules: [{{backendRefs: [{{name: s, port: 80}}]}}]
"
    ))
    .unwrap();
    assert_eq!(
        route(&c, "default-r-0")["hosts"],
        json!(["foo.example.com", "*.bar.example.com", "api.example.net"])
    );
    assert!(has_note(
        &c,
        "HTTPRoute default/r",
        "spec.hostnames[3]",
        "\"other.org\""
    ));
    // Two listeners on one port are one Ringway listener, silently.
    assert_eq!(
        c.listeners,
        vec![json!({"name": "gw-wild", "address": "0.0.0.0:80"})]
    );

    // No hostname in common with the only listener named: not attached, not converted.
    let c = convert_text(&format!(
        "{gateway}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw, sectionName: exact}}]
  hostnames: [foo.example.com]
  rules: [{{backendRefs: [{{name: s, port: 80}}]}}]
"
    ))
    .unwrap();
    assert!(c.routes.is_empty());
    assert!(has_note(
        &c,
        "HTTPRoute default/r",
        "spec.parentRefs[0]",
        "no hostname of the route matches listener \"exact\" (hostname \"api.example.net\")"
    ));
    assert!(has_note(
        &c,
        "HTTPRoute default/r",
        "spec.parentRefs",
        "attached to no listener"
    ));
}

#[test]
fn errors_name_file_line_object_and_field() {
    let text = "# a route with three mistakes
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: broken
  namespace: shop
spec:
  rules:
  - matches:
    - path:
        type: Prefix
        value: /a
    backendRefs:
    - name: a
  - backendRef:
    - name: b
      port: 80
";
    let errors = convert_text(text).unwrap_err();
    let shown: Vec<String> = errors.iter().map(Error::to_string).collect();
    assert_eq!(
        shown,
        [
            "test.yaml: line 11: HTTPRoute shop/broken: spec.rules[0].matches[0].path.type: \
             \"Prefix\" is not one of Exact, PathPrefix, RegularExpression",
            "test.yaml: line 14: HTTPRoute shop/broken: spec.rules[0].backendRefs[0].port: is \
             required for a Service backend (the Gateway API takes no default)",
            "test.yaml: line 15: HTTPRoute shop/broken: spec.rules[1].backendRef: unknown field \
             (known: name, matches, filters, backendRefs, timeouts, retry, sessionPersistence)",
        ]
    );
    assert_eq!(errors[0].line, Some(11));
    assert_eq!(errors[0].object.as_deref(), Some("HTTPRoute shop/broken"));
    assert_eq!(errors[0].field, "spec.rules[0].matches[0].path.type");

    // In the second document of a stream, and in a later file.
    let second = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n\
                  apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: g\n\
                  spec:\n  gatewayClassName: c\n  listeners:\n  - name: web\n    protocol: HTTP2\n    port: 80\n";
    let errors = convert(
        &[
            ("ok.yaml".into(), "---\n".into()),
            ("gw.yaml".into(), second.into()),
        ],
        &Options::default(),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].source, "gw.yaml");
    assert_eq!(errors[0].line, Some(13));
    assert_eq!(errors[0].field, "spec.listeners[0].protocol");

    // Syntax errors carry the line within the file.
    let errors =
        convert_text("apiVersion: v1\nkind: Service\n---\nkind: Gateway\nmetadata: x: y\n")
            .unwrap_err();
    assert_eq!(errors[0].line, Some(5), "{}", show(&errors));
    assert!(errors[0].message.starts_with("invalid YAML"));
    assert!(!errors[0].message.contains("line 1 "), "{}", show(&errors));

    // JSON, pretty-printed.
    let json_text = serde_json::to_string_pretty(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "j"},
        "spec": {"rules": [{"backendRefs": [{"name": "a", "port": 80, "weight": -1}]}]},
    }))
    .unwrap();
    let errors = convert(&[("r.json".into(), json_text.clone())], &Options::default()).unwrap_err();
    let line = errors[0].line.unwrap();
    assert!(
        json_text
            .lines()
            .nth(line - 1)
            .unwrap()
            .contains("\"weight\": -1"),
        "{}",
        show(&errors)
    );
}

#[test]
fn invalid_manifests_are_errors() {
    let route = |rule: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\n\
             spec:\n  rules:\n  - {rule}\n"
        )
    };
    for (rule, field, words) in [
        (
            "{filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}, {type: URLRewrite, urlRewrite: {hostname: a.example}}]}",
            "spec.rules[0].filters",
            "not both",
        ),
        ("{filters: [{type: Rewrite}]}", "spec.rules[0].filters[0].type", "is not one of"),
        (
            "{filters: [{type: RequestHeaderModifier}]}",
            "spec.rules[0].filters[0].requestHeaderModifier",
            "is required",
        ),
        ("{matches: [{method: get}]}", "spec.rules[0].matches[0].method", "is not one of"),
        (
            "{matches: [{path: {type: Exact, value: nope}}]}",
            "spec.rules[0].matches[0].path.value",
            "must start with '/'",
        ),
        (
            "{matches: [{path: {type: RegularExpression, value: \"(?<=a)b\"}}]}",
            "spec.rules[0].matches[0].path.value",
            "Rust regex syntax",
        ),
        (
            "{backendRefs: [{port: 80}]}",
            "spec.rules[0].backendRefs[0].name",
            "is required",
        ),
        (
            "{timeouts: {request: 10 seconds}}",
            "spec.rules[0].timeouts.request",
            "not a Gateway API duration",
        ),
    ] {
        let errors = convert_text(&route(rule)).unwrap_err();
        assert!(
            errors.iter().any(|e| e.field == field && e.message.contains(words)),
            "{rule}: expected {field}: {words}, got\n{}",
            show(&errors)
        );
    }
    // The same object twice.
    let twice = format!("{}---\n{}", route("{}"), route("{}"));
    let errors = convert_text(&twice).unwrap_err();
    assert_eq!(errors[0].line, Some(10));
    assert!(errors[0]
        .message
        .contains("defined twice (first in test.yaml line 3)"));
}

#[test]
fn prefix_rewrites_need_prefix_matches() {
    let c = convert_text(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches: [{path: {type: Exact, value: /a}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}
    backendRefs: [{name: s, port: 80}]
",
    )
    .unwrap();
    assert!(route(&c, "default-r-0").get("filters").is_none());
    assert!(has_note(
        &c,
        "HTTPRoute default/r",
        "spec.rules[0].filters[0].urlRewrite.path",
        "needs every match of the rule to be a PathPrefix match"
    ));
}

#[test]
fn notes_and_errors_display_with_their_place() {
    let note = Note {
        source: "routes.yaml".into(),
        object: "HTTPRoute default/store".into(),
        field: "spec.rules[0].filters[1]".into(),
        message: "not converted".into(),
    };
    assert_eq!(
        note.to_string(),
        "routes.yaml: HTTPRoute default/store: spec.rules[0].filters[1]: not converted"
    );
    let error = Error {
        source: "routes.yaml".into(),
        line: Some(7),
        object: Some("HTTPRoute default/store".into()),
        field: "spec.rules".into(),
        message: "expected a list".into(),
    };
    assert_eq!(
        error.to_string(),
        "routes.yaml: line 7: HTTPRoute default/store: spec.rules: expected a list"
    );
}

#[test]
fn directories_are_read_in_name_order() {
    let dir = std::env::temp_dir().join(format!("ringway-gateway-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("nested.yaml")).unwrap();
    for name in [
        "b.yaml",
        "a.yml",
        "c.json",
        ".hidden.yaml",
        "notes.txt",
        "nested.yaml/d.yaml",
    ] {
        std::fs::write(dir.join(name), format!("# {name}\n")).unwrap();
    }
    let single = dir.join("notes.txt");
    let files = read_paths(&[dir.clone(), single.clone()]).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|(n, _)| {
            PathBuf::from(n)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // A file named on its own is read whatever its extension.
    assert_eq!(names, ["a.yml", "b.yaml", "c.json", "notes.txt"]);
    assert_eq!(files[0].1, "# a.yml\n");

    let missing = dir.join("missing.yaml");
    let errors = read_paths(&[missing.clone(), dir.clone()]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].source, missing.display().to_string());
    assert!(errors[0].message.starts_with("cannot read the file"));
    std::fs::remove_dir_all(&dir).unwrap();

    // Empty and comment-only files convert to nothing.
    let c = convert(&files, &Options::default()).unwrap();
    assert!(c.listeners.is_empty() && c.routes.is_empty() && c.notes.is_empty());
}
