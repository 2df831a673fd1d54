//! Bringing definitions teams already have: `ringway import openapi` and `apis[].openapi`
//! (operations from an OpenAPI document, its server as the backend, errors with their place,
//! changes picked up by a reload), and `ringway import gateway-api` and `gateway_api:`
//! (HTTPRoute matches, filters and weighted backendRefs served as routes, manifests re-read on
//! reload).

use std::process::Command;

use ringway_tests::process::ringway_bin;
use ringway_tests::{workspace_dir, Client, Origin, Ringway, TempDir};

const TOKEN: &str = "import-token-0123456789abcdef";

fn ringway(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(ringway_bin())
        .args(args)
        .current_dir(workspace_dir())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn reload(rw: &mut Ringway) -> serde_json::Value {
    let auth = format!("Bearer {TOKEN}");
    let r = Client::connect(rw.admin_addr()).request(
        "POST",
        "/reload",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_str(&r.text()).unwrap()
}

#[test]
fn the_petstore_imports_to_a_configuration_that_serves_its_operations() {
    let origin = Origin::start("petstore");
    let (ok, yaml, err) = ringway(&[
        "import",
        "openapi",
        "examples/petstore-openapi.yaml",
        "--backend",
        &origin.url(),
        "--name",
        "petstore",
        "--path",
        "/petstore",
    ]);
    assert!(ok, "{err}");
    for id in [
        "listPets",
        "createPets",
        "showPetById",
        "updatePet",
        "deletePet",
    ] {
        assert!(yaml.contains(&format!("id: {id}")), "{id} in\n{yaml}");
    }
    let dir = TempDir::new();
    let file = dir.write(
        "petstore.yaml",
        &format!("workers: 1\nlisteners: [{{ address: 127.0.0.1:0 }}]\n{yaml}"),
    );
    let (ok, out, err) = ringway(&["check", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}\n{yaml}");
    let proxy = Ringway::start(&std::fs::read_to_string(&file).unwrap());
    let mut c = Client::connect(proxy.addr());
    assert_eq!(c.get("/petstore/pets?limit=2").status, 200);
    assert_eq!(origin.last_request().unwrap().target, "/pets?limit=2");
    assert_eq!(
        c.request("DELETE", "/petstore/pets/7", &[], b"").status,
        200
    );
    // Not an operation of the document: APIM's 404.
    assert_eq!(c.request("PATCH", "/petstore/pets/7", &[], b"").status, 404);
}

#[test]
fn an_invalid_document_is_refused_with_its_file_line_and_pointer() {
    let (ok, out, err) = ringway(&[
        "import",
        "openapi",
        "tests/fixtures/openapi/invalid/undeclared-path-param.yaml",
    ]);
    assert!(!ok);
    assert!(out.is_empty(), "nothing is printed: {out}");
    assert!(err.contains("undeclared-path-param.yaml: line "), "{err}");
    assert!(err.contains("at /paths/"), "{err}");

    let dir = TempDir::new();
    let bad = workspace_dir().join("tests/fixtures/openapi/invalid/bad-style.json");
    let file = dir.write(
        "api.yaml",
        &format!(
            "listeners: [{{ address: 127.0.0.1:0 }}]\n\
             backends: [{{ name: b, targets: [{{ url: http://127.0.0.1:9 }}] }}]\n\
             apis: [{{ name: a, path: /a, backend: b, openapi: {} }}]\n",
            bad.display()
        ),
    );
    let (ok, _, err) = ringway(&["check", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("apis[0].openapi: "), "{err}");
    assert!(err.contains("bad-style.json: line "), "{err}");
    assert!(err.contains("/style"), "{err}");
}

#[test]
fn an_apis_openapi_document_gives_operations_and_its_server_is_the_backend_until_a_reload_changes_it(
) {
    let origin = Origin::start("inventory");
    let dir = TempDir::new();
    let document = |extra: &str| {
        format!(
            "openapi: 3.1.0\n\
             info: {{ title: Inventory, version: '1' }}\n\
             servers: [{{ url: '{}/v1' }}]\n\
             paths:\n\
             \x20 /items/{{id}}:\n\
             \x20   parameters: [{{ name: id, in: path, required: true, schema: {{ type: string }} }}]\n\
             \x20   get: {{ operationId: getItem, responses: {{ '200': {{ description: ok }} }} }}\n\
             {extra}",
            origin.url()
        )
    };
    dir.write("inventory.yaml", &document(""));
    let config = format!(
        "workers: 1\nlisteners: [{{ address: 127.0.0.1:0 }}]\n\
         admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}\n\
         apis:\n  - name: inventory\n    path: /inventory\n    openapi: inventory.yaml\n    \
         operations:\n      - id: getItem\n        method: GET\n        url_template: /items/{{id}}\n        \
         policies: {{ inbound: [{{ set-header: {{ name: x-from, value: config }} }}] }}\n"
    );
    let path = dir.write("ringway.yaml", &config);
    let mut rw = Ringway::spawn(
        &["run".as_ref(), "--config".as_ref(), path.as_os_str()],
        &[],
        Some(dir.path()),
    );
    rw.wait_ready(std::time::Duration::from_secs(10));
    let mut c = Client::connect(rw.addr());
    assert_eq!(c.get("/inventory/items/9").status, 200);
    let seen = origin.last_request().unwrap();
    // The server's path is the backend path; the operation the configuration lists (same id)
    // replaces the generated one, policies and all.
    assert_eq!(seen.target, "/v1/items/9");
    assert_eq!(seen.header("x-from"), Some("config"));
    assert_eq!(
        Client::connect(rw.addr()).get("/inventory/stock").status,
        404
    );

    // The document changes; the configuration file does not. A reload still sees it.
    dir.write(
        "inventory.yaml",
        &document(
            "  /stock:\n    get: { operationId: getStock, responses: { '200': { description: ok } } }\n",
        ),
    );
    let answer = reload(&mut rw);
    assert_eq!(answer["applied"], true, "{answer}");
    assert_eq!(
        Client::connect(rw.addr()).get("/inventory/stock").status,
        200
    );
    assert_eq!(origin.last_request().unwrap().target, "/v1/stock");
    // Nothing changed since: nothing to reload.
    assert_eq!(reload(&mut rw)["applied"], false);
}

fn manifests(v1: &Origin, v2: &Origin, weights: (u32, u32)) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: web }}
spec:
  gatewayClassName: ringway
  listeners: [{{ name: http, protocol: HTTP, port: 80 }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: shop, namespace: store }}
spec:
  parentRefs: [{{ name: web, namespace: default }}]
  rules:
  - matches:
    - path: {{ type: PathPrefix, value: /shop }}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add: [{{ name: x-route, value: shop }}]
    backendRefs:
    - {{ name: v1, port: {}, weight: {} }}
    - {{ name: v2, port: {}, weight: {} }}
  - matches:
    - path: {{ type: PathPrefix, value: /shop }}
      headers: [{{ name: x-canary, value: "yes" }}]
    backendRefs:
    - {{ name: v2, port: {} }}
  - matches:
    - path: {{ type: Exact, value: /old }}
    filters:
    - type: RequestRedirect
      requestRedirect: {{ path: {{ type: ReplaceFullPath, replaceFullPath: /shop }}, statusCode: 301 }}
  - matches:
    - path: {{ type: PathPrefix, value: /mirror }}
    filters:
    - type: RequestMirror
      requestMirror: {{ backendRef: {{ name: v2, port: {} }} }}
    backendRefs:
    - {{ name: v1, port: {} }}
"#,
        v1.addr().port(),
        weights.0,
        v2.addr().port(),
        weights.1,
        v2.addr().port(),
        v2.addr().port(),
        v1.addr().port(),
    )
}

#[test]
fn gateway_api_manifests_are_served_as_routes_and_re_read_on_reload() {
    let (v1, v2) = (Origin::start("v1"), Origin::start("v2"));
    let dir = TempDir::new();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    dir.write("manifests/shop.yaml", &manifests(&v1, &v2, (90, 10)));

    // The command prints the same routes, and says what it could not express.
    let (ok, yaml, err) = ringway(&[
        "import",
        "gateway-api",
        dir.path().join("manifests").to_str().unwrap(),
        "--service-host",
        "127.0.0.1",
    ]);
    assert!(ok, "{err}");
    assert!(yaml.contains("balance: weighted"), "{yaml}");
    assert!(
        err.contains("spec.rules[3].filters[0]: not converted"),
        "{err}"
    );

    let config = format!(
        "workers: 1\nlisteners: [{{ address: 127.0.0.1:0 }}]\n\
         admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}\n\
         gateway_api: {{ paths: [manifests], service_host: 127.0.0.1 }}\n"
    );
    let path = dir.write("ringway.yaml", &config);
    let mut rw = Ringway::spawn(
        &["run".as_ref(), "--config".as_ref(), path.as_os_str()],
        &[],
        Some(dir.path()),
    );
    rw.wait_ready(std::time::Duration::from_secs(10));
    assert!(
        rw.stderr_text().contains("does not mirror requests"),
        "the note is logged"
    );
    let mut c = Client::connect(rw.addr());
    let split = |c: &mut Client| {
        let mut counts = (0, 0);
        for _ in 0..100 {
            let r = c.get("/shop/cart");
            assert_eq!(r.status, 200);
            match r.header("x-origin") {
                Some("v1") => counts.0 += 1,
                Some("v2") => counts.1 += 1,
                other => panic!("answered by {other:?}"),
            }
        }
        counts
    };
    assert_eq!(
        split(&mut c),
        (90, 10),
        "a weighted split is exact over 100 requests"
    );
    assert_eq!(v1.last_request().unwrap().header("x-route"), Some("shop"));
    let r = c.request("GET", "/shop/cart", &[("x-canary", "yes")], b"");
    assert_eq!(r.header("x-origin"), Some("v2"));
    let r = c.get("/old");
    assert_eq!(r.status, 301);
    assert!(
        r.header("location").unwrap().ends_with("/shop"),
        "{:?}",
        r.header("location")
    );
    assert_eq!(c.get("/mirror/x").header("x-origin"), Some("v1"));

    // The manifests change; a reload serves the new split.
    dir.write("manifests/shop.yaml", &manifests(&v1, &v2, (1, 1)));
    assert_eq!(reload(&mut rw)["applied"], true);
    let mut c = Client::connect(rw.addr());
    assert_eq!(split(&mut c), (50, 50));
}
