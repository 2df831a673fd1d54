use crate::config::{load_str, Config, ConfigError};
use crate::policy::auth::keys::{hash_key, Access};
use crate::policy::Policy;

fn load(extra: &str) -> Result<Config, ConfigError> {
    let text = format!(
        "listeners: [{{address: 127.0.0.1:8080}}]\n\
         backends: [{{name: b, targets: [{{url: http://127.0.0.1:9000}}]}}]\n\
         {extra}"
    );
    load_str(&text, "test.yaml", &|_| None)
}

fn errors(extra: &str) -> Vec<String> {
    match load(extra) {
        Ok(_) => panic!("expected errors for:\n{extra}"),
        Err(e) => e.errors,
    }
}

fn has(errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "no error contains {expected:?}:\n{errors:#?}"
    );
}

/// Two APIs (orders with two operations, weather), a product holding orders.
fn doc(extra: &str) -> String {
    format!(
        "apis:\n\
         \x20 - name: orders\n    path: /orders\n    backend: b\n    operations:\n\
         \x20     - {{id: get, method: GET, url_template: \"/{{id}}\"}}\n\
         \x20     - {{id: create, method: POST, url_template: /}}\n\
         \x20 - {{name: weather, path: /weather, backend: b}}\n\
         {extra}"
    )
}

#[test]
fn products_and_subscriptions_compile_into_the_key_table_and_the_routes() {
    let primary = hash_key("alice-1");
    let secondary = hash_key("alice-2");
    let config = load(&doc(&format!(
        "products:\n\
         \x20 - name: gold\n    display_name: Gold\n    apis: [orders]\n\
         \x20   policies: {{inbound: [base, {{set-header: {{name: X-Product, value: \"{{product}}\"}}}}]}}\n\
         subscriptions:\n\
         \x20 - id: alice\n    scope: {{product: gold}}\n    primary_key: \"{primary}\"\n\
         \x20   secondary_key: \"{secondary}\"\n    owner: alice@example.com\n\
         \x20 - {{id: ops, scope: all_apis, state: suspended, primary_key: \"{}\"}}\n",
        hash_key("ops-1")
    )))
    .expect("a valid configuration");
    assert_eq!(
        config.keys.check(Some(b"alice-2"), "orders"),
        Access::Granted {
            subscription: 0,
            product: Some(0)
        }
    );
    let orders = &config.apis[0];
    let get = &orders.operations[0];
    let keys = get
        .keys
        .as_ref()
        .expect("orders is in a product: keys are checked");
    assert_eq!(&*keys.header, b"ocp-apim-subscription-key");
    assert_eq!(&*keys.query, b"subscription-key");
    assert!(keys.required);
    // One pipeline under gold: global → gold → API → operation.
    let [(0, pipe)] = *keys.by_product else {
        panic!("{:?}", keys.by_product)
    };
    assert_ne!(pipe, get.pipeline);
    assert!(matches!(
        &*config.pipelines[pipe].inbound,
        [Policy::SetHeader(_)]
    ));
    assert!(config.pipelines[get.pipeline].inbound.is_empty());
    // Weather is in no product and says nothing: open, as before products existed.
    assert!(config.apis[1].keys.is_none());
    // Key hashes are shortened in a dump of the configuration.
    let dump = format!("{config:?}");
    assert!(!dump.contains(&primary.to_string()), "{dump}");
}

#[test]
fn reference_and_uniqueness_errors_name_their_paths() {
    let k = |n: &str| hash_key(n).to_string();
    let e = errors(&doc(&format!(
        "products:\n\
         \x20 - {{name: gold, apis: [orders, billing, orders]}}\n\
         \x20 - {{name: gold, apis: []}}\n\
         \x20 - {{name: free, apis: [weather], subscription_required: false}}\n\
         \x20 - {{name: \"bad name\"}}\n\
         subscriptions:\n\
         \x20 - {{id: a, scope: {{product: platinum}}, primary_key: \"{}\"}}\n\
         \x20 - {{id: a, scope: {{api: billing}}, primary_key: \"{}\"}}\n\
         \x20 - {{id: c, scope: {{product: free}}, primary_key: \"{}\"}}\n\
         \x20 - {{id: \"d d\", scope: all_apis, primary_key: \"{}\", display_name: \"two\\nlines\"}}\n",
        k("1"),
        k("2"),
        k("3"),
        k("4"),
    )));
    has(
        &e,
        "test.yaml: products[0].apis[1]: no API named \"billing\" (known: orders, weather)",
    );
    has(&e, "products[0].apis[2]: \"orders\" is listed twice");
    has(
        &e,
        "products[1].name: products[0] is already named \"gold\"",
    );
    has(&e, "products[3].name: \"bad name\" is not a name");
    has(&e, "subscriptions[0].scope.product: no product named \"platinum\" (known: gold, gold, free, bad name)");
    has(
        &e,
        "subscriptions[1].id: subscriptions[0] already has id \"a\"",
    );
    has(&e, "subscriptions[1].scope.api: no API named \"billing\"");
    has(
        &e,
        "subscriptions[2].scope.product: product \"free\" (products[2]) is open",
    );
    has(&e, "subscriptions[3].id: \"d d\" is not an id");
    has(
        &e,
        "subscriptions[3].display_name: may not contain control characters",
    );
}

#[test]
fn a_plaintext_key_is_refused_without_repeating_it() {
    let e = errors(&doc(
        "subscriptions:\n\
         \x20 - {id: a, scope: all_apis, primary_key: my-secret-key-123}\n\
         \x20 - {id: b, scope: all_apis, primary_key: \"sha256:0123\", secondary_key: another-secret}\n\
         \x20 - {id: c, scope: all_apis, primary_key: 98765432123, secondary_key: 3.14159}\n",
    ));
    has(&e, "subscriptions[0].primary_key: not a key hash");
    has(&e, "run `ringway key hash KEY`");
    has(&e, "subscriptions[1].primary_key: not a key hash");
    has(&e, "subscriptions[1].secondary_key: not a key hash");
    has(&e, "subscriptions[2].primary_key: not a key hash");
    has(&e, "subscriptions[2].secondary_key: not a key hash");
    let all = e.join("\n");
    for secret in [
        "my-secret-key-123",
        "another-secret",
        "98765432123",
        "3.14159",
    ] {
        assert!(!all.contains(secret), "{all}");
    }
}

#[test]
fn a_key_used_twice_is_refused() {
    let e = errors(&doc(&format!(
        "subscriptions:\n\
         \x20 - {{id: a, scope: all_apis, primary_key: \"{0}\"}}\n\
         \x20 - {{id: b, scope: all_apis, primary_key: \"{1}\", secondary_key: \"{0}\"}}\n",
        hash_key("same"),
        hash_key("other"),
    )));
    has(&e, "subscriptions[1] (\"b\"): its secondary key is the same as the primary key of subscriptions[0] (\"a\")");
}

#[test]
fn which_apis_check_keys() {
    let config = load(
        "products:\n\
         \x20 - {name: free, apis: [open-product], subscription_required: false}\n\
         apis:\n\
         \x20 - {name: plain, path: /plain, backend: b}\n\
         \x20 - {name: required, path: /required, backend: b, subscription_required: true,\n\
         \x20    subscription_key: {header: X-Key, query: key}}\n\
         \x20 - {name: optional, path: /optional, backend: b, subscription_required: false}\n\
         \x20 - {name: open-product, path: /open, backend: b}\n",
    )
    .expect("a valid configuration");
    let keys = |a: usize| config.apis[a].keys.as_ref();
    assert!(keys(0).is_none());
    let required = keys(1).unwrap();
    assert!(required.required);
    assert_eq!(
        (&*required.header, &*required.query),
        (&b"x-key"[..], &b"key"[..])
    );
    assert!(!keys(2).unwrap().required);
    // An open product's API checks keys (a key that is sent must be valid); the table lets
    // requests without one in.
    assert!(keys(3).unwrap().required);
    assert_eq!(
        config.keys.check(None, "open-product"),
        Access::Open { product: 0 }
    );

    let e = errors(
        "products:\n\
         \x20 - {name: free, apis: [a], subscription_required: false}\n\
         apis:\n\
         \x20 - {name: a, path: /a, backend: b, subscription_required: true}\n\
         \x20 - {name: c, path: /c, backend: b, subscription_key: {header: X-Key}}\n\
         \x20 - {name: d, path: /d, backend: b, subscription_required: true,\n\
         \x20    subscription_key: {header: \"X Key\", query: \"a&b\"}}\n",
    );
    has(
        &e,
        "apis[0].subscription_required: true, but the open product \"free\" (products[0])",
    );
    has(
        &e,
        "apis[1].subscription_key: this API checks no subscription key",
    );
    has(
        &e,
        "apis[2].subscription_key.header: \"X Key\" is not a valid header name",
    );
    has(
        &e,
        "apis[2].subscription_key.query: \"a&b\" is not a query parameter name",
    );
}

#[test]
fn subscription_readers_need_a_key_check() {
    // Fine on an API that checks keys, at every scope that reaches it.
    load(
        "policies:\n  inbound:\n\
         \x20   - rate-limit-by-key: {calls: 5, renewal_period: 1s, counter_key: \"{subscription}\"}\n\
         apis:\n\
         \x20 - name: a\n    path: /a\n    backend: b\n    subscription_required: true\n\
         \x20   policies:\n      inbound:\n        - base\n\
         \x20       - cache-lookup: {vary_by_subscription: true}\n\
         \x20       - rate-limit: {calls: 10, renewal_period: 1m}\n\
         \x20       - set-header: {name: X-P, value: \"{product}\"}\n",
    )
    .expect("a valid configuration");

    let e = errors(
        "policies:\n  inbound:\n\
         \x20   - rate-limit-by-key: {calls: 5, renewal_period: 1s, counter_key: \"{subscription}\"}\n\
         routes:\n  - {name: r, backend: b}\n\
         apis:\n\
         \x20 - name: a\n    path: /a\n    backend: b\n\
         \x20   operations:\n\
         \x20     - id: x\n        method: GET\n        url_template: /x\n\
         \x20       policies: {inbound: [cache-lookup: {vary_by_subscription: true}]}\n\
         \x20 - name: c\n    path: /c\n    backend: b\n\
         \x20   policies: {inbound: [rate-limit: {calls: 1, renewal_period: 1s}]}\n",
    );
    has(
        &e,
        "test.yaml: policies.inbound[0].rate-limit-by-key: reads the request's subscription",
    );
    has(
        &e,
        "but routes[0], which runs it, checks no subscription key",
    );
    has(&e, "but apis[0].operations[0], which runs it");
    has(
        &e,
        "apis[0].operations[0].policies.inbound[0].cache-lookup: reads the request's subscription",
    );
    has(
        &e,
        "apis[1].policies.inbound[0].rate-limit: reads the request's subscription",
    );
    // A scope that replaces the global section drops its reader, and with it the error.
    load(
        "policies:\n  inbound:\n\
         \x20   - set-header: {name: X-S, value: \"{subscription}\"}\n\
         routes:\n  - {name: r, backend: b, policies: {inbound: []}}\n",
    )
    .expect("the route replaced the global inbound section");
}

#[test]
fn rate_limit_nested_limits_name_known_apis_and_operations() {
    let config = load(&doc(
        "products: [{name: gold, apis: [orders]}]\n\
         policies:\n  inbound:\n\
         \x20   - rate-limit:\n        calls: 100\n        renewal_period: 1m\n        apis:\n\
         \x20         - {name: orders, calls: 50, renewal_period: 1m, operations: [{id: get, calls: 5, renewal_period: 10s}]}\n\
         \x20         - {name: weather, operations: [{id: get, calls: 5, renewal_period: 10s}]}\n",
    ));
    let e = config.expect_err("weather has no operation get");
    has(&e.errors, "policies.inbound[0].rate-limit.apis[1].operations[0].id: API \"weather\" has no operation \"get\"");

    let e = errors(&doc("products: [{name: gold, apis: [orders, weather]}]\n\
         policies:\n  inbound:\n\
         \x20   - rate-limit:\n        calls: 0\n        renewal_period: 1m\n        apis:\n\
         \x20         - {name: billing, calls: 5, renewal_period: 1m}\n\
         \x20         - {name: orders, calls: 5}\n"));
    has(&e, "policies.inbound[0].rate-limit.calls: must be from 1");
    has(
        &e,
        "policies.inbound[0].rate-limit.apis[0].name: no API named \"billing\"",
    );
    has(
        &e,
        "policies.inbound[0].rate-limit.apis[1]: give calls and renewal_period together",
    );

    let config = load(&doc(
        "products: [{name: gold, apis: [orders, weather]}]\n\
         policies:\n  inbound:\n\
         \x20   - rate-limit:\n        calls: 100\n        renewal_period: 1m\n        apis:\n\
         \x20         - {name: orders, calls: 50, renewal_period: 1m, operations: [{id: get, calls: 5, renewal_period: 10s}]}\n",
    ))
    .expect("a valid configuration");
    let calls: Vec<u64> = config.policy_tables.rate.iter().map(|r| r.calls).collect();
    assert_eq!(calls, [100, 50, 5], "one table per limit, declared once");
}
