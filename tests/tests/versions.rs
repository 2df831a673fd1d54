//! API version sets (path segment, header and query schemes; the default version and the 404
//! that lists versions) and revisions (`/{api};rev=N/...`, offline revisions, and making
//! another revision current through the admin API as one atomic reload).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use ringway_tests::{Client, Origin, Ringway};

const TOKEN: &str = "versions-token-0123456789abcdef";

fn gateway(origins: &[&Origin], body: &str) -> Ringway {
    let mut backends = String::new();
    for o in origins {
        backends.push_str(&format!(
            "  - {{ name: {}, targets: [{{ url: {} }}] }}\n",
            o.name(),
            o.url()
        ));
    }
    let yaml = format!(
        "workers: 2\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}\n\
         backends:\n{backends}{body}"
    );
    Ringway::start(&yaml)
}

fn origin_of(r: &ringway_tests::Response) -> String {
    r.header("x-origin").unwrap_or("(none)").to_string()
}

#[test]
fn path_versions_route_by_segment_and_an_unversioned_request_lists_them() {
    let (v1, v2) = (Origin::start("v1"), Origin::start("v2"));
    let proxy = gateway(
        &[&v1, &v2],
        r#"
version_sets:
  - { name: orders, scheme: path }
apis:
  - name: orders-v1
    path: /orders
    version_set: orders
    version: v1
    backend: v1
    operations: [{ id: get, method: GET, url_template: "/items/{id}" }]
  - name: orders-v2
    path: /orders
    version_set: orders
    version: v2
    backend: v2
    operations: [{ id: get, method: GET, url_template: "/items/{id}" }]
"#,
    );
    let mut c = Client::connect(proxy.addr());
    let r = c.get("/orders/v1/items/7");
    assert_eq!((r.status, origin_of(&r)), (200, "v1".into()));
    // The version segment is not forwarded, as the API's path is not.
    assert_eq!(v1.last_request().unwrap().target, "/items/7");
    let r = c.get("/orders/v2/items/7");
    assert_eq!((r.status, origin_of(&r)), (200, "v2".into()));

    let r = c.get("/orders/items/7");
    assert_eq!(r.status, 404, "{}", r.text());
    let body: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(body["versions"], serde_json::json!(["v1", "v2"]));
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("/orders/VERSION/"));
    let r = c.get("/orders/v3/items/7");
    assert_eq!(r.status, 404);
}

#[test]
fn header_versions_fall_back_to_the_default() {
    let (v1, v2) = (Origin::start("v1"), Origin::start("v2"));
    let proxy = gateway(
        &[&v1, &v2],
        r#"
version_sets:
  - { name: pets, scheme: header, default: v1 }
apis:
  - { name: pets-v1, path: /pets, version_set: pets, version: v1, backend: v1 }
  - { name: pets-v2, path: /pets, version_set: pets, version: "2024-01-01", backend: v2 }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    let r = c.get("/pets/1");
    assert_eq!((r.status, origin_of(&r)), (200, "v1".into()));
    let r = c.request("GET", "/pets/1", &[("Api-Version", "2024-01-01")], b"");
    assert_eq!((r.status, origin_of(&r)), (200, "v2".into()));
    assert_eq!(v2.last_request().unwrap().target, "/1");
    let r = c.request("GET", "/pets/1", &[("api-version", "v1")], b"");
    assert_eq!((r.status, origin_of(&r)), (200, "v1".into()));
}

#[test]
fn query_versions_without_a_default_list_the_versions() {
    let (v1, v2) = (Origin::start("v1"), Origin::start("v2"));
    let proxy = gateway(
        &[&v1, &v2],
        r#"
version_sets:
  - { name: search, scheme: query, query: v }
apis:
  - { name: search-1, path: /search, version_set: search, version: "1", backend: v1 }
  - { name: search-2, path: /search, version_set: search, version: "2", backend: v2 }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    let r = c.get("/search?q=x&v=2");
    assert_eq!((r.status, origin_of(&r)), (200, "v2".into()));
    assert_eq!(v2.last_request().unwrap().target, "/?q=x&v=2");
    let r = c.get("/search?v=1");
    assert_eq!((r.status, origin_of(&r)), (200, "v1".into()));
    let r = c.get("/search?q=x");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("?v=VERSION"), "{}", r.text());
}

#[test]
fn version_sets_are_validated() {
    let dir = ringway_tests::TempDir::new();
    let path = dir.write(
        "bad.yaml",
        "listeners: [{ address: 127.0.0.1:0 }]\n\
         backends: [{ name: b, targets: [{ url: http://127.0.0.1:1 }] }]\n\
         version_sets:\n\
         \x20 - { name: s, scheme: path, default: v9 }\n\
         \x20 - { name: h, scheme: header, query: x }\n\
         apis:\n\
         \x20 - { name: a, path: /a, version_set: s, version: v1, backend: b }\n\
         \x20 - { name: b, path: /a, version_set: s, version: v1, backend: b }\n\
         \x20 - { name: c, path: /c, version_set: nope, version: v1, backend: b }\n\
         \x20 - { name: d, path: /d, version: v1, backend: b }\n\
         \x20 - { name: e, path: /e, backend: b, revision: 2, revisions: [{ revision: 2 }] }\n",
    );
    let out = std::process::Command::new(ringway_tests::process::ringway_bin())
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "version_sets[0].default: no API is version \"v9\" of this set (versions: v1)",
        "version_sets[1].query: only for scheme query",
        "apis[1].version: API \"a\" is already version \"v1\" of version set \"s\"",
        "apis[2].version_set: no version set named \"nope\"",
        "apis[3].version: a version needs a version_set",
        "apis[4].revisions[0].revision: 2 is the current revision",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn revisions_are_reachable_offline_ones_are_not_and_making_one_current_is_atomic() {
    let (r1, r2, r3) = (
        Origin::start("r1"),
        Origin::start("r2"),
        Origin::start("r3"),
    );
    let mut proxy = gateway(
        &[&r1, &r2, &r3],
        r#"
apis:
  - name: pets
    path: /pets
    backend: r1
    revision: 1
    change_log: the first release
    operations: [{ id: list, method: GET, url_template: / }]
    revisions:
      - revision: 2
        change_log: lists and shows pets
        backend: r2
        operations:
          - { id: list, method: GET, url_template: / }
          - { id: show, method: GET, url_template: "/{id}" }
      - { revision: 3, online: false, backend: r3, change_log: not ready }
"#,
    );
    let mut c = Client::connect(proxy.addr());
    let r = c.get("/pets/");
    assert_eq!((r.status, origin_of(&r)), (200, "r1".into()));
    assert_eq!(
        c.get("/pets/5").status,
        404,
        "revision 1 has no show operation"
    );
    let r = c.get("/pets;rev=2/5");
    assert_eq!((r.status, origin_of(&r)), (200, "r2".into()));
    assert_eq!(r2.last_request().unwrap().target, "/5");
    let r = c.get("/pets;rev=1/");
    assert_eq!(
        r.status, 404,
        "the current revision is at the API's own path"
    );
    let r = c.get("/pets;rev=3/");
    assert_eq!(r.status, 404, "an offline revision is not served");
    assert!(
        r.text().contains("revision 3 of API pets is offline"),
        "{}",
        r.text()
    );
    assert_eq!(r3.requests(), 0);

    // Under steady traffic, revision 2 becomes current in one reload: every request is
    // answered by one revision or the other, none fails.
    let admin = proxy.admin_addr();
    let addr = proxy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failed) = (Arc::clone(&stop), Arc::clone(&failed));
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = c.get("/pets/");
                let o = origin_of(&r);
                if r.status != 200 || (o != "r1" && o != "r2") {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let auth = format!("Bearer {TOKEN}");
    let r = Client::connect(admin).request(
        "POST",
        "/apis/pets/revisions/2/make-current",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"change_log": "revision 2 released"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(body["current"], 2);
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().unwrap();
    assert!(sent > 20, "{sent} requests");
    assert_eq!(failed.load(Ordering::Relaxed), 0);

    let r = c.get("/pets/5");
    assert_eq!((r.status, origin_of(&r)), (200, "r2".into()));
    let r = c.get("/pets;rev=1/");
    assert_eq!((r.status, origin_of(&r)), (200, "r1".into()));
    let r = Client::connect(admin).request(
        "GET",
        "/apis/pets/revisions",
        &[("Authorization", &auth)],
        b"",
    );
    let list: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(list[0]["revision"], 2);
    assert_eq!(list[0]["change_log"], "revision 2 released");
    assert_eq!(list[1]["revision"], 1);
    assert_eq!(list[1]["change_log"], "the first release");
    assert_eq!(list[2]["online"], false);
}
