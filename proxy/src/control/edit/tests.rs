use serde_json::json;

use super::*;
use crate::policy::auth::keys;

const HASH_A: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
const HASH_B: &str = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9";

/// A document as the loader hands it over: YAML turned into JSON.
fn doc() -> Value {
    let yaml = format!(
        r#"
admin:
  address: 127.0.0.1:9901
  token: admin-token-0123456789abcdef
listeners:
  - address: 127.0.0.1:8080
backends:
  - name: orders
    targets:
      - url: http://10.0.0.5:8080
      - url: http://orders.internal
        weight: 2
      - url: https://[::1]:8443/
    tls:
      client_cert: certs/client.pem
      client_key: certs/client.key
  - name: billing
    targets: [{{url: "http://10.0.0.9:9000"}}]
apis:
  - name: orders
    path: /orders
    backend: orders
    operations:
      - {{id: get-order, method: GET, url_template: "/{{id}}"}}
      - {{id: list-orders, method: GET, url_template: /}}
    policies:
      inbound:
        - validate-jwt:
            algorithms: [HS256]
            keys:
              - secret: this-is-a-shared-secret-of-32-bytes!
              - pem_file: keys/rs.pem
        - set-header: {{name: Authorization, value: "Basic b3JkZXJzOnB3"}}
        - set-header: {{name: X-Trace, value: "{{request_id}}"}}
        - check-header: {{name: X-Api-Key, values: [k1, k2]}}
  - name: billing
    path: /billing
    backend: billing
products:
  - name: gold
    apis: [orders]
subscriptions:
  - id: alice
    scope: {{product: gold}}
    primary_key: "{HASH_A}"
    secondary_key: "{HASH_B}"
  - id: ops
    scope: all_apis
    state: suspended
    primary_key: "{HASH_B}"
routes:
  - backend: orders
    filters:
      request_headers:
        set: {{Authorization: "Bearer upstream-token", X-Env: prod}}
"#
    );
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    serde_json::to_value(yaml).unwrap()
}

const APIS: Place = Place::Top(Collection::Apis);
const BACKENDS: Place = Place::Top(Collection::Backends);
const SUBS: Place = Place::Top(Collection::Subscriptions);

fn names(doc: &Value, place: Place) -> Vec<String> {
    list(doc, place)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i.get("name")
                .or_else(|| i.get("id"))
                .or_else(|| i.get("url"))
                .and_then(Value::as_str)
                .unwrap()
                .to_string()
        })
        .collect()
}

fn is_hash(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.parse::<keys::KeyHash>().is_ok())
}

#[test]
fn collections_name_their_keys_and_fields() {
    for c in [
        Collection::Apis,
        Collection::Backends,
        Collection::Products,
        Collection::Subscriptions,
    ] {
        assert_eq!(Collection::from_key(c.key()), Some(c));
    }
    assert_eq!(Collection::from_key("routes"), None);
    assert_eq!(Collection::Subscriptions.id_field(), "id");
    assert_eq!(Collection::Products.id_field(), "name");
}

#[test]
fn lists_and_gets_items_redacted() {
    let d = doc();
    assert_eq!(names(&d, APIS), ["orders", "billing"]);
    assert_eq!(names(&d, BACKENDS), ["orders", "billing"]);
    assert_eq!(names(&d, Place::Top(Collection::Products)), ["gold"]);
    assert_eq!(names(&d, SUBS), ["alice", "ops"]);
    assert_eq!(
        names(&d, Place::Operations { api: "orders" }),
        ["get-order", "list-orders"]
    );
    assert_eq!(
        names(&d, Place::Operations { api: "billing" }),
        [] as [&str; 0]
    );
    assert_eq!(
        names(&d, Place::Targets { backend: "billing" }),
        ["http://10.0.0.9:9000"]
    );

    let api = get(&d, APIS, "orders").unwrap();
    assert_eq!(api["path"], "/orders");
    let text = api.to_string();
    assert!(!text.contains("this-is-a-shared-secret"), "{text}");
    assert!(!text.contains("b3JkZXJzOnB3"), "{text}");
    assert!(text.contains("keys/rs.pem"), "{text}");

    let op = get(&d, Place::Operations { api: "orders" }, "list-orders").unwrap();
    assert_eq!(op["url_template"], "/");
    // Subscriptions are read as stored: hashes, never keys.
    let alice = get(&d, SUBS, "alice").unwrap();
    assert_eq!(alice["primary_key"], HASH_A);
    assert_eq!(alice["secondary_key"], HASH_B);
}

#[test]
fn a_missing_item_or_parent_is_a_404_naming_the_path_parameter() {
    let d = doc();
    let e = get(&d, APIS, "nope").unwrap_err();
    assert_eq!(
        (e.status, e.code, e.field.as_str()),
        (404, "not_found", "path.api")
    );
    assert_eq!(e.message, "no API \"nope\" (known: orders, billing)");
    let e = get(&d, Place::Operations { api: "nope" }, "x").unwrap_err();
    assert_eq!(e.field, "path.api");
    let e = list(&d, Place::Targets { backend: "nope" }).unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (404, "path.backend"));
    let e = get(&d, Place::Operations { api: "orders" }, "x").unwrap_err();
    assert_eq!(e.field, "path.operation");
    assert!(e.message.contains("in API \"orders\""), "{}", e.message);
    assert!(
        e.message.contains("get-order, list-orders"),
        "{}",
        e.message
    );
    let e = get(&d, Place::Top(Collection::Products), "silver").unwrap_err();
    assert_eq!(e.field, "path.product");
    let e = get(&d, SUBS, "bob").unwrap_err();
    assert_eq!(e.field, "path.subscription");
    let mut empty = json!({});
    let e = delete(&mut empty, BACKENDS, "b").unwrap_err();
    assert_eq!(e.message, "no backend \"b\" (none are defined)");
    assert_eq!(e.to_json()["error"], "not_found");
    assert_eq!(e.to_json()["field"], "path.backend");
}

#[test]
fn creates_items_and_refuses_a_second_with_the_same_name() {
    let mut d = doc();
    let out = create(
        &mut d,
        BACKENDS,
        json!({"name": "search", "targets": [{"url": "http://10.0.0.7:80"}]}),
    )
    .unwrap();
    assert_eq!(out.status, 201);
    assert_eq!(out.body["name"], "search");
    assert_eq!(names(&d, BACKENDS), ["orders", "billing", "search"]);

    let e = create(&mut d, BACKENDS, json!({"name": "search"})).unwrap_err();
    assert_eq!(
        (e.status, e.code, e.field.as_str()),
        (409, "conflict", "body.name")
    );
    assert!(e.message.contains("backends[search]"), "{}", e.message);
    assert!(e.message.contains("PUT /backends/search"), "{}", e.message);

    let e = create(&mut d, APIS, json!({"path": "/x"})).unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (400, "body.name"));
    let e = create(&mut d, APIS, json!({"name": 7})).unwrap_err();
    assert_eq!(e.field, "body.name");
    let e = create(&mut d, APIS, json!(["not", "an", "object"])).unwrap_err();
    assert_eq!(
        (e.status, e.code, e.field.as_str()),
        (400, "invalid_body", "body")
    );

    let out = create(
        &mut d,
        Place::Operations { api: "billing" },
        json!({"id": "pay", "method": "POST", "url_template": "/pay"}),
    )
    .unwrap();
    assert_eq!(out.status, 201);
    assert_eq!(d["apis"][1]["operations"][0]["id"], "pay");
    let e = create(
        &mut d,
        Place::Operations { api: "orders" },
        json!({"id": "get-order", "method": "GET", "url_template": "/"}),
    )
    .unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (409, "body.id"));
    assert!(
        e.message.contains("apis[orders].operations[get-order]"),
        "{}",
        e.message
    );
}

#[test]
fn creates_the_first_item_of_a_document_without_the_list() {
    let mut d = json!({"listeners": [{"address": "127.0.0.1:0"}], "apis": null});
    create(&mut d, APIS, json!({"name": "a", "path": "/a"})).unwrap();
    create(
        &mut d,
        Place::Top(Collection::Products),
        json!({"name": "p"}),
    )
    .unwrap();
    assert_eq!(d["apis"][0]["name"], "a");
    assert_eq!(d["products"][0]["name"], "p");
    let mut null = Value::Null;
    create(&mut null, BACKENDS, json!({"name": "b"})).unwrap();
    assert_eq!(null["backends"][0]["name"], "b");
}

#[test]
fn put_replaces_in_place_or_creates_at_the_end() {
    let mut d = doc();
    let out = replace(
        &mut d,
        APIS,
        "orders",
        json!({"path": "/v2/orders", "backend": "orders"}),
    )
    .unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(out.body["name"], "orders", "the name comes from the path");
    assert_eq!(d["apis"][0]["path"], "/v2/orders");
    assert!(
        d["apis"][0].get("operations").is_none(),
        "a replace is whole"
    );
    assert_eq!(names(&d, APIS), ["orders", "billing"]);

    let out = replace(
        &mut d,
        APIS,
        "search",
        json!({"name": "search", "path": "/s"}),
    )
    .unwrap();
    assert_eq!(out.status, 201);
    assert_eq!(names(&d, APIS), ["orders", "billing", "search"]);

    let e = replace(&mut d, APIS, "search", json!({"name": "other"})).unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (400, "body.name"));
    assert!(
        e.message.contains("to rename, delete the API"),
        "{}",
        e.message
    );

    let out = replace(
        &mut d,
        Place::Operations { api: "orders" },
        "get-order",
        json!({"method": "GET", "url_template": "/{id}"}),
    );
    // The API was replaced above without operations: the operation is created.
    assert_eq!(out.unwrap().status, 201);
    assert_eq!(d["apis"][0]["operations"][0]["id"], "get-order");

    let e = replace(
        &mut d,
        Place::Targets { backend: "orders" },
        "10.0.0.5:8080",
        json!({"url": "http://10.0.0.5:8080"}),
    )
    .unwrap_err();
    assert_eq!(e.status, 405);
}

#[test]
fn deletes_items_and_answers_with_the_removed_one() {
    let mut d = doc();
    let out = delete(&mut d, APIS, "orders").unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(out.body["name"], "orders");
    assert!(!out.body.to_string().contains("this-is-a-shared-secret"));
    assert_eq!(names(&d, APIS), ["billing"]);
    // A backend still referenced is removed here; validation refuses the result.
    delete(&mut d, BACKENDS, "billing").unwrap();
    assert_eq!(names(&d, BACKENDS), ["orders"]);
    let e = delete(&mut d, BACKENDS, "billing").unwrap_err();
    assert_eq!(e.status, 404);
    delete(&mut d, SUBS, "ops").unwrap();
    assert_eq!(names(&d, SUBS), ["alice"]);
}

#[test]
fn targets_are_named_by_their_authority() {
    assert_eq!(target_id("http://10.0.0.5:8080"), Some("10.0.0.5:8080"));
    assert_eq!(target_id("https://[::1]:8443/"), Some("[::1]:8443"));
    assert_eq!(target_id("http://orders.internal"), Some("orders.internal"));
    assert_eq!(target_id("10.0.0.5:8080"), None);
    assert_eq!(target_id("http://"), None);

    let d = doc();
    let b = "orders";
    assert_eq!(target_index(&d, b, "10.0.0.5:8080"), Ok(0));
    assert_eq!(target_index(&d, b, "ORDERS.internal"), Ok(1));
    assert_eq!(target_index(&d, b, "orders.internal:80"), Ok(1));
    assert_eq!(target_index(&d, b, "[::1]:8443"), Ok(2));
    assert_eq!(target_index(&d, b, "%5B::1%5D:8443"), Ok(2));
    assert!(target_index(&d, b, "orders.internal:443").is_err());
    let e = target_index(&d, b, "10.0.0.5:9999").unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (404, "path.target"));
    assert!(
        e.message
            .contains("known: 10.0.0.5:8080, orders.internal, [::1]:8443"),
        "{}",
        e.message
    );
    let e = target_index(&d, "nope", "10.0.0.5:8080").unwrap_err();
    assert_eq!(e.field, "path.backend");

    let t = get(&d, Place::Targets { backend: b }, "orders.internal").unwrap();
    assert_eq!(t["weight"], 2);
}

#[test]
fn adds_and_deletes_targets() {
    let mut d = doc();
    let place = Place::Targets { backend: "billing" };
    let out = create(
        &mut d,
        place,
        json!({"url": "http://10.0.0.10:9000", "weight": 3, "priority": 1}),
    )
    .unwrap();
    assert_eq!(out.status, 201);
    assert_eq!(d["backends"][1]["targets"][1]["weight"], 3);
    let e = create(&mut d, place, json!({"url": "http://10.0.0.10:9000/"})).unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (409, "body.url"));
    assert!(
        e.message
            .contains("backends[billing].targets[10.0.0.10:9000]"),
        "{}",
        e.message
    );
    for bad in [
        json!({"weight": 1}),
        json!({"url": "10.0.0.1:80"}),
        json!({"url": 5}),
    ] {
        let e = create(&mut d, place, bad).unwrap_err();
        assert_eq!((e.status, e.field.as_str()), (400, "body.url"));
    }
    let out = delete(&mut d, place, "10.0.0.9:9000").unwrap();
    assert_eq!(out.body["url"], "http://10.0.0.9:9000");
    assert_eq!(names(&d, place), ["http://10.0.0.10:9000"]);
    let e = create(
        &mut d,
        Place::Targets { backend: "nope" },
        json!({"url": "http://a:1"}),
    );
    assert_eq!(e.unwrap_err().field, "path.backend");
}

#[test]
fn issuing_a_subscription_generates_keys_and_stores_their_hashes() {
    let mut d = doc();
    let out = create(
        &mut d,
        SUBS,
        json!({"id": "bob", "scope": {"api": "orders"}, "owner": "bob@example.com"}),
    )
    .unwrap();
    assert_eq!(out.status, 201);
    let primary = out.body["primary_key"].as_str().unwrap().to_string();
    let secondary = out.body["secondary_key"].as_str().unwrap().to_string();
    assert_eq!(primary.len(), 64);
    assert_ne!(primary, secondary);
    let stored = &d["subscriptions"][2];
    assert_eq!(stored["id"], "bob");
    assert_eq!(stored["owner"], "bob@example.com");
    assert_eq!(
        stored["primary_key"],
        keys::hash_key(&primary).to_string().as_str()
    );
    assert_eq!(
        stored["secondary_key"],
        keys::hash_key(&secondary).to_string().as_str()
    );
    assert_eq!(out.body["subscription"], *stored);
    // Read back, it holds the hashes only.
    let read = get(&d, SUBS, "bob").unwrap().to_string();
    assert!(
        !read.contains(&primary) && !read.contains(&secondary),
        "{read}"
    );

    // A hash given is kept; `secondary_key: null` issues one key.
    let out = issue(
        &mut d,
        json!({"id": "carol", "scope": "all_apis", "primary_key": HASH_A, "secondary_key": null}),
    )
    .unwrap();
    assert!(out.body.get("primary_key").is_none());
    assert!(out.body.get("secondary_key").is_none());
    assert_eq!(d["subscriptions"][3]["primary_key"], HASH_A);
    assert!(d["subscriptions"][3].get("secondary_key").is_none());
}

#[test]
fn issuing_refuses_bad_bodies_without_repeating_keys() {
    let mut d = doc();
    let e = issue(&mut d, json!({"scope": "all_apis"})).unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (400, "body.id"));
    let e = issue(&mut d, json!({"id": "x"})).unwrap_err();
    assert_eq!(e.field, "body.scope");
    let e = issue(
        &mut d,
        json!({"id": "x", "scope": "all_apis", "state": "paused"}),
    )
    .unwrap_err();
    assert_eq!(e.field, "body.state");
    let e = issue(&mut d, json!({"id": "alice", "scope": "all_apis"})).unwrap_err();
    assert_eq!(
        (e.status, e.code, e.field.as_str()),
        (409, "conflict", "body.id")
    );
    let e = issue(
        &mut d,
        json!({"id": "x", "scope": "all_apis", "primary_key": "plain-secret-key"}),
    )
    .unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (400, "body.primary_key"));
    assert!(!e.message.contains("plain-secret-key"), "{}", e.message);
    assert_eq!(names(&d, SUBS), ["alice", "ops"], "nothing was added");
}

#[test]
fn regenerating_replaces_one_key() {
    let mut d = doc();
    let out = regenerate(&mut d, "alice", &json!({"key": "secondary"})).unwrap();
    assert_eq!(out.status, 200);
    let key = out.body["secondary_key"].as_str().unwrap();
    assert!(out.body.get("primary_key").is_none());
    assert_eq!(d["subscriptions"][0]["primary_key"], HASH_A);
    assert_eq!(
        d["subscriptions"][0]["secondary_key"],
        keys::hash_key(key).to_string().as_str()
    );
    assert_eq!(
        out.body["subscription"]["secondary_key"],
        d["subscriptions"][0]["secondary_key"]
    );

    // ops had no secondary key: regenerating gives it one.
    let out = regenerate(&mut d, "ops", &json!({"key": "secondary"})).unwrap();
    assert!(is_hash(&d["subscriptions"][1]["secondary_key"]));
    assert!(out.body["secondary_key"].is_string());

    for bad in [json!({}), json!({"key": "tertiary"}), json!(null)] {
        let e = regenerate(&mut d, "alice", &bad).unwrap_err();
        assert_eq!((e.status, e.field.as_str()), (400, "body.key"));
    }
    let e = regenerate(&mut d, "nobody", &json!({"key": "primary"})).unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (404, "path.subscription"));
}

#[test]
fn states_change_and_cancelled_is_final() {
    let mut d = doc();
    let out = suspend(&mut d, "alice").unwrap();
    assert_eq!(out.body["state"], "suspended");
    assert_eq!(d["subscriptions"][0]["state"], "suspended");
    suspend(&mut d, "alice").unwrap();
    activate(&mut d, "alice").unwrap();
    assert_eq!(d["subscriptions"][0]["state"], "active");
    activate(&mut d, "ops").unwrap();
    assert_eq!(d["subscriptions"][1]["state"], "active");
    cancel(&mut d, "alice").unwrap();
    assert_eq!(d["subscriptions"][0]["state"], "cancelled");
    cancel(&mut d, "alice").unwrap();
    for e in [
        activate(&mut d, "alice").unwrap_err(),
        suspend(&mut d, "alice").unwrap_err(),
    ] {
        assert_eq!(
            (e.status, e.code, e.field.as_str()),
            (409, "cancelled", "path.subscription")
        );
    }
    assert_eq!(d["subscriptions"][0]["state"], "cancelled");
    assert_eq!(suspend(&mut d, "zed").unwrap_err().status, 404);
    assert_eq!(SubscriptionState::Suspended.as_str(), "suspended");
}

#[test]
fn put_of_a_subscription_keeps_or_replaces_its_hashes() {
    let mut d = doc();
    let out = replace(
        &mut d,
        SUBS,
        "alice",
        json!({"scope": "all_apis", "display_name": "Alice"}),
    )
    .unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(d["subscriptions"][0]["primary_key"], HASH_A);
    assert_eq!(d["subscriptions"][0]["secondary_key"], HASH_B);
    assert_eq!(d["subscriptions"][0]["display_name"], "Alice");

    replace(
        &mut d,
        SUBS,
        "alice",
        json!({"scope": "all_apis", "primary_key": HASH_B, "secondary_key": null}),
    )
    .unwrap();
    assert_eq!(d["subscriptions"][0]["primary_key"], HASH_B);
    assert!(d["subscriptions"][0].get("secondary_key").is_none());

    let e = replace(
        &mut d,
        SUBS,
        "alice",
        json!({"scope": "all_apis", "primary_key": "not-a-hash"}),
    )
    .unwrap_err();
    assert_eq!(e.field, "body.primary_key");

    let out = replace(&mut d, SUBS, "dave", json!({"scope": {"product": "gold"}})).unwrap();
    assert_eq!(out.status, 201);
    assert!(out.body["primary_key"].is_string());
    assert!(is_hash(&d["subscriptions"][2]["primary_key"]));
    assert_eq!(d["subscriptions"][2]["id"], "dave");
    let e = replace(&mut d, SUBS, "erin", json!({})).unwrap_err();
    assert_eq!(e.field, "body.scope");
    let e = replace(
        &mut d,
        SUBS,
        "dave",
        json!({"id": "erin", "scope": "all_apis"}),
    )
    .unwrap_err();
    assert_eq!(e.field, "body.id");
}

#[test]
fn redacts_secrets_but_not_paths_or_hashes() {
    let mut d = doc();
    d["backends"][1]["tls"] = json!({
        "client_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "client_key": "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n",
    });
    d["listeners"][0]["tls"] = json!({"certificates": [
        {"cert": "certs/a.pem", "key": "certs/a.key"},
    ]});
    d["routes"].as_array_mut().unwrap().push(json!({
        "matches": [{"headers": [{"name": "authorization", "value": "Bearer let-me-in"}],
                     "query": [{"name": "page", "value": "1"}]}],
        "return_response": {"status": 200, "headers": {"Set-Cookie": "session=abc", "X-A": "b"}},
    }));
    d["admin"]["token_file"] = json!("admin.token");
    d["extra"] = json!({"password": "hunter2", "nothing": null, "token": null});
    d["tracing"] = json!({"otlp_endpoint": "http://svc:s3cr3t-pw@collector:4318/v1/traces"});
    d["access_log"] = json!({"path": "/var/log/ringway/access.log"});
    let r = redact(&d);
    let text = r.to_string();
    for secret in [
        "admin-token-0123456789abcdef",
        "this-is-a-shared-secret",
        "b3JkZXJzOnB3",
        "\"k1\"",
        "upstream-token",
        "let-me-in",
        "session=abc",
        "hunter2",
        "PRIVATE KEY",
        "s3cr3t-pw",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(r["admin"]["token"], REDACTED);
    assert_eq!(r["admin"]["token_file"], "admin.token");
    assert_eq!(r["admin"]["address"], "127.0.0.1:9901");
    let inbound = &r["apis"][0]["policies"]["inbound"];
    assert_eq!(inbound[0]["validate-jwt"]["keys"][0]["secret"], REDACTED);
    assert_eq!(
        inbound[0]["validate-jwt"]["keys"][1]["pem_file"],
        "keys/rs.pem"
    );
    assert_eq!(inbound[1]["set-header"]["value"], REDACTED);
    assert_eq!(inbound[1]["set-header"]["name"], "Authorization");
    assert_eq!(inbound[2]["set-header"]["value"], "{request_id}");
    assert_eq!(
        inbound[3]["check-header"]["values"],
        json!([REDACTED, REDACTED])
    );
    assert_eq!(
        r["routes"][0]["filters"]["request_headers"]["set"]["X-Env"],
        "prod"
    );
    assert_eq!(r["routes"][1]["matches"][0]["query"][0]["value"], "1");
    assert_eq!(r["routes"][1]["return_response"]["headers"]["X-A"], "b");
    assert_eq!(r["backends"][0]["tls"]["client_key"], "certs/client.key");
    assert_eq!(r["backends"][1]["tls"]["client_key"], REDACTED);
    assert!(r["backends"][1]["tls"]["client_cert"]
        .as_str()
        .unwrap()
        .contains("CERTIFICATE"));
    assert_eq!(
        r["listeners"][0]["tls"]["certificates"][0]["key"],
        "certs/a.key"
    );
    assert_eq!(r["subscriptions"][0]["primary_key"], HASH_A);
    assert_eq!(r["tracing"]["otlp_endpoint"], REDACTED);
    assert_eq!(r["access_log"], d["access_log"]);
    assert_eq!(r["extra"]["nothing"], Value::Null);
    assert_eq!(r["extra"]["token"], Value::Null);
    // Only secrets changed.
    assert_eq!(r["apis"][1], d["apis"][1]);
    assert_eq!(r["products"], d["products"]);
}

#[test]
fn credential_names() {
    for yes in [
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "X-Api-Key",
        "Ocp-Apim-Subscription-Key",
        "subscription-key",
        "access_token",
        "X-Client-Secret",
        "X-Signature",
    ] {
        assert!(redact::is_credential_name(yes), "{yes}");
    }
    for no in ["X-Trace", "Content-Type", "page", "X-Request-Id", "Host"] {
        assert!(!redact::is_credential_name(no), "{no}");
    }
}

#[test]
fn a_redacted_read_can_be_written_back() {
    let mut d = doc();
    let original = d["apis"][0].clone();
    let mut edited = get(&d, APIS, "orders").unwrap();
    edited["path"] = json!("/v2/orders");
    // A policy inserted first shifts the others; pairing by identity keeps the secrets.
    edited["policies"]["inbound"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"set-header": {"name": "X-New", "value": "1"}}));
    replace(&mut d, APIS, "orders", edited).unwrap();
    let stored = &d["apis"][0];
    assert_eq!(stored["path"], "/v2/orders");
    let text = stored.to_string();
    assert!(!text.contains(REDACTED), "{text}");
    assert!(text.contains("Basic b3JkZXJzOnB3"), "{text}");
    assert_eq!(
        stored["policies"]["inbound"][4],
        original["policies"]["inbound"][3]
    );

    // The whole document round-trips the same way (PUT /config).
    let current = doc();
    let mut body = redact(&current);
    restore_redacted(&mut body, &current).unwrap();
    assert_eq!(body, current);
}

#[test]
fn a_placeholder_without_a_value_to_keep_is_refused() {
    let mut d = doc();
    let mut api = get(&d, APIS, "orders").unwrap();
    api["policies"]["inbound"][1]["set-header"]["name"] = json!("Proxy-Authorization");
    // Position pairs the set-header with the old one; but it is now another header's value.
    let e = replace(&mut d, APIS, "orders", api.clone()).unwrap_err();
    assert_eq!((e.status, e.code), (400, "redacted_value"));
    assert_eq!(e.field, "body.policies.inbound[1].set-header.value");

    // A new item has nothing to keep.
    api["name"] = json!("orders-copy");
    let e = create(&mut d, APIS, api).unwrap_err();
    assert_eq!(e.code, "redacted_value");
    assert_eq!(
        e.field,
        "body.policies.inbound[0].validate-jwt.keys[0].secret"
    );
    assert_eq!(names(&d, APIS), ["orders", "billing"]);

    let mut body = json!({"admin": {"token": REDACTED}});
    let e = restore_redacted(&mut body, &json!({"admin": {}})).unwrap_err();
    assert_eq!(e.field, "body.admin.token");
}
