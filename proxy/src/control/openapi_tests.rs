//! `openapi.json` against [`ROUTES`]: every route described, nothing described that is not a
//! route, open routes open, path parameters declared, references resolved.

use std::collections::BTreeSet;

use serde_json::Value;

use super::routes::ROUTES;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn document() -> Value {
    serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is JSON")
}

fn described(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// Follows a `$ref` inside the document.
fn resolve<'d>(doc: &'d Value, v: &'d Value) -> &'d Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.strip_prefix('#').expect("a local reference"))
            .unwrap_or_else(|| panic!("{r} does not resolve")),
        None => v,
    }
}

#[test]
fn describes_every_route_and_nothing_else() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.0.3");
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(routes.len(), ROUTES.len(), "ROUTES holds a route twice");
    let described = described(&doc);
    let undescribed: Vec<_> = routes.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routes).collect();
    assert!(
        undescribed.is_empty(),
        "routes openapi.json lacks: {undescribed:?}"
    );
    assert!(
        unrouted.is_empty(),
        "openapi.json describes what ROUTES lacks: {unrouted:?}"
    );
}

#[test]
fn open_routes_need_no_token_and_the_others_the_bearer_token() {
    let doc = document();
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for route in ROUTES {
        let op = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
        let open = op
            .get("security")
            .is_some_and(|s| s.as_array().is_some_and(Vec::is_empty));
        assert_eq!(open, !route.auth, "{} {}", route.method, route.path);
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{} {} has no responses",
            route.method,
            route.path
        );
        if route.auth {
            assert!(
                op["responses"].get("401").is_some(),
                "{} {} does not say it answers 401",
                route.method,
                route.path
            );
        }
    }
}

#[test]
fn path_parameters_are_declared() {
    let doc = document();
    for route in ROUTES {
        let item = &doc["paths"][route.path];
        let op = &item[route.method.to_ascii_lowercase()];
        let declared: BTreeSet<String> = [&item["parameters"], &op["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().expect("a name").to_string())
            .collect();
        let in_path: BTreeSet<String> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        assert_eq!(declared, in_path, "{} {}", route.method, route.path);
    }
}

#[test]
fn put_config_takes_dry_run() {
    let doc = document();
    let params = doc["paths"]["/config"]["put"]["parameters"]
        .as_array()
        .expect("parameters");
    assert!(params
        .iter()
        .any(|p| p["name"] == "dry_run" && p["in"] == "query"));
}

#[test]
fn every_reference_resolves() {
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(map) => {
                if map.contains_key("$ref") {
                    resolve(doc, v);
                }
                map.values().for_each(|c| walk(doc, c));
            }
            Value::Array(items) => items.iter().for_each(|c| walk(doc, c)),
            _ => {}
        }
    }
    let doc = document();
    walk(&doc, &doc);
}

#[test]
fn the_admin_api_reference_lists_every_route_and_no_other() {
    let text = include_str!("../../../docs/admin-api.md");
    // Rows of the routes table: `| GET, PUT | `/path[?query]` | ...`.
    let mut listed: BTreeSet<(String, String)> = BTreeSet::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let ["", methods, path, ..] = cells.as_slice() else {
            continue;
        };
        let Some(path) = path.strip_prefix("`/") else {
            continue;
        };
        let path = format!("/{}", path.trim_end_matches('`'));
        let path = path
            .split(['?', '['])
            .next()
            .unwrap_or_default()
            .to_string();
        for method in methods.split(',').map(str::trim) {
            if METHODS.contains(&method.to_ascii_lowercase().as_str()) {
                listed.insert((method.to_string(), path.clone()));
            }
        }
    }
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = routes.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&routes).collect();
    assert!(
        missing.is_empty(),
        "routes docs/admin-api.md does not list: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "docs/admin-api.md lists what is no route: {extra:?}"
    );
}
