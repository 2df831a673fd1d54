//! The developer portal's API through the real binary: approval of subscriptions through the
//! admin API, the CSRF and cookie rules, rate-limited sign-in, subscriptions the admin API
//! issues to developers, the portal on a listener of its own, and, in cluster mode, developers
//! and subscriptions shared by every node through a real Redis. (The browser end of it is
//! `portal_browser.rs`.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringway_tests::redis::RedisServer;
use ringway_tests::{Client, Origin, Response, Ringway, TempDir};
use serde_json::{json, Value};

const TOKEN: &str = "portal-token-0123456789abcdef";

fn config(origin: &Origin, db: &std::path::Path, extra: &str) -> String {
    format!(
        "workers: 2\n\
         listeners: [{{ address: 127.0.0.1:0 }}]\n\
         admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}\n\
         backends: [{{ name: pets, targets: [{{ url: {} }}] }}]\n\
         apis:\n  - {{ name: pets, path: /pets, backend: pets }}\n  \
         - {{ name: orders, path: /orders, backend: pets }}\n\
         products:\n  \
         - {{ name: free, apis: [pets] }}\n  \
         - {{ name: gold, apis: [pets, orders], approval_required: true }}\n\
         {extra}\
         portal:\n  database: {}\n",
        origin.url(),
        db.display()
    )
}

/// A browser's worth of state: the session cookie and the form token.
struct Browser {
    addr: SocketAddr,
    cookie: Option<String>,
    csrf: String,
}

fn cookie_of(r: &Response) -> Option<String> {
    r.header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

impl Browser {
    fn open(addr: SocketAddr) -> Browser {
        let r = Client::connect(addr).get("/portal/api/session");
        assert_eq!(r.status, 200, "{}", r.text());
        let body: Value = serde_json::from_str(&r.text()).unwrap();
        Browser {
            addr,
            cookie: cookie_of(&r),
            csrf: body["csrf"].as_str().unwrap().to_string(),
        }
    }

    fn get(&mut self, path: &str) -> (u16, Value) {
        let cookie = self.cookie.clone().unwrap_or_default();
        let r = Client::connect(self.addr).request("GET", path, &[("Cookie", &cookie)], b"");
        (
            r.status,
            serde_json::from_str(&r.text()).unwrap_or(Value::Null),
        )
    }

    fn post(&mut self, path: &str, body: Value) -> (u16, Value) {
        let cookie = self.cookie.clone().unwrap_or_default();
        let csrf = self.csrf.clone();
        let r = Client::connect(self.addr).request(
            "POST",
            path,
            &[
                ("Cookie", &cookie),
                ("X-CSRF-Token", &csrf),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        );
        if let Some(c) = cookie_of(&r) {
            self.cookie = Some(c);
        }
        let value: Value = serde_json::from_str(&r.text()).unwrap_or(Value::Null);
        if let Some(t) = value.get("csrf").and_then(Value::as_str) {
            self.csrf = t.to_string();
        }
        (r.status, value)
    }

    fn sign_up(&mut self, email: &str) {
        let (status, body) = self.post(
            "/portal/api/signup",
            json!({"email": email, "name": "Dev", "password": "a long enough password"}),
        );
        assert_eq!(status, 201, "{body}");
    }
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let r = Client::connect(addr).request(
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    (
        r.status,
        serde_json::from_str(&r.text()).unwrap_or(Value::Null),
    )
}

fn call(gateway: SocketAddr, path: &str, key: &str) -> u16 {
    Client::connect(gateway)
        .request("GET", path, &[("Ocp-Apim-Subscription-Key", key)], b"")
        .status
}

/// Waits until the gateway answers `path` with `key` by `status`, twenty times in a row: each
/// core switches to a change on its own tick (within 10 ms of the others), so one answer
/// shows one core, and a run of them, spread by SO_REUSEPORT, every core.
fn wait_status(gateway: SocketAddr, path: &str, key: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut in_a_row = 0;
    loop {
        let got = call(gateway, path, key);
        in_a_row = if got == status { in_a_row + 1 } else { 0 };
        if in_a_row == 20 {
            return;
        }
        if got == status {
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "{path} answers {got}, not {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_subscription_that_needs_approval_opens_nothing_until_the_admin_api_activates_it() {
    let origin = Origin::start("pets");
    let dir = TempDir::new();
    let mut rw = Ringway::start(&config(&origin, &dir.path().join("p.db"), ""));
    let admin_addr = rw.admin_addr();
    let mut b = Browser::open(admin_addr);
    b.sign_up("ann@example.com");

    let (status, body) = b.post("/portal/api/subscriptions", json!({"product": "gold"}));
    assert_eq!(status, 201, "{body}");
    let sub = &body["subscription"];
    assert_eq!(sub["state"], "pending");
    assert_eq!(
        sub["primary_key"],
        Value::Null,
        "no key is shown before approval"
    );
    let id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(
        b.post("/portal/api/subscriptions", json!({"product": "gold"}))
            .0,
        409
    );

    let (status, list) = admin(admin_addr, "GET", "/subscriptions?state=pending", "");
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["source"], "portal");
    assert!(list[0]["primary_key"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    let (status, body) = admin(
        admin_addr,
        "POST",
        &format!("/subscriptions/{id}/activate"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (_, mine) = b.get("/portal/api/subscriptions");
    let mine = &mine["subscriptions"][0];
    assert_eq!(mine["state"], "active");
    let key = mine["primary_key"].as_str().unwrap().to_string();
    let secondary = mine["secondary_key"].as_str().unwrap().to_string();
    let gateway = rw.addr();
    wait_status(gateway, "/orders/1", &key, 200);
    assert_eq!(call(gateway, "/pets/1", &secondary), 200);
    assert_eq!(call(gateway, "/pets/1", "not-a-key"), 401);

    // Suspended through the admin API: both keys stop at once.
    assert_eq!(
        admin(
            admin_addr,
            "POST",
            &format!("/subscriptions/{id}/suspend"),
            ""
        )
        .0,
        200
    );
    wait_status(gateway, "/orders/1", &key, 403);
    assert_eq!(
        admin(admin_addr, "GET", "/developers", "").1[0]["email"],
        "ann@example.com"
    );
}

#[test]
fn posts_need_the_form_token_json_and_the_portals_origin_and_cookies_are_locked_down() {
    let origin = Origin::start("pets");
    let dir = TempDir::new();
    let mut rw = Ringway::start(&config(&origin, &dir.path().join("p.db"), ""));
    let addr = rw.admin_addr();

    let r = Client::connect(addr).get("/portal/api/session");
    let set = r.header("set-cookie").unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/portal/"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    let cookie = cookie_of(&r).unwrap();
    let csrf = serde_json::from_str::<Value>(&r.text()).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let body = br#"{"email":"x@example.com","name":"X","password":"a long enough password"}"#;
    let post = |headers: &[(&str, &str)]| {
        Client::connect(addr).request("POST", "/portal/api/signup", headers, body)
    };
    // No session at all: refused, and no new session is handed out.
    let r = post(&[("Content-Type", "application/json")]);
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
    // A session, no token.
    let r = post(&[("Cookie", &cookie), ("Content-Type", "application/json")]);
    assert_eq!((r.status, r.json_error().as_deref()), (403, Some("csrf")));
    // A wrong token.
    let r = post(&[
        ("Cookie", &cookie),
        ("X-CSRF-Token", "nope"),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(r.status, 403);
    // A form's content type (what a cross-site form can send).
    let r = post(&[
        ("Cookie", &cookie),
        ("X-CSRF-Token", &csrf),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]);
    assert_eq!(r.status, 415);
    // Another site's page.
    let r = post(&[
        ("Cookie", &cookie),
        ("X-CSRF-Token", &csrf),
        ("Content-Type", "application/json"),
        ("Origin", "https://evil.example"),
    ]);
    assert_eq!(r.status, 403);
    let r = post(&[
        ("Cookie", &cookie),
        ("X-CSRF-Token", &csrf),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(r.status, 201, "{}", r.text());
    // Signing in replaces the session: the old cookie and token are gone.
    assert!(cookie_of(&r).is_some_and(|c| c != cookie));

    // The page is served for every portal path; assets carry their types; the API is JSON.
    let r = Client::connect(addr).get("/portal/apis/pets");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = Client::connect(addr).get("/portal/assets/app.js");
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(
        Client::connect(addr).get("/portal/assets/nope.js").status,
        404
    );
    assert_eq!(Client::connect(addr).get("/portal").status, 301);
    // The admin API still needs its token.
    assert_eq!(Client::connect(addr).get("/status").status, 401);
}

#[test]
fn sign_in_attempts_are_limited_per_email() {
    let origin = Origin::start("pets");
    let dir = TempDir::new();
    let mut rw = Ringway::start(&config(&origin, &dir.path().join("p.db"), ""));
    let addr = rw.admin_addr();
    let mut b = Browser::open(addr);
    b.sign_up("bob@example.com");
    b.post("/portal/api/signout", json!({}));
    for _ in 0..5 {
        let (status, _) = b.post(
            "/portal/api/signin",
            json!({"email": "bob@example.com", "password": "wrong password!!"}),
        );
        assert_eq!(status, 401);
    }
    let (status, body) = b.post(
        "/portal/api/signin",
        json!({"email": "bob@example.com", "password": "a long enough password"}),
    );
    assert_eq!(status, 429, "{body}");
    assert!(body["retry_after"].as_u64().unwrap() > 0);
    // Another account from elsewhere is not locked out by it.
    let mut other = Browser::open(addr);
    other.sign_up("carol@example.com");
    other.post("/portal/api/signout", json!({}));
    let (status, _) = other.post(
        "/portal/api/signin",
        json!({"email": "carol@example.com", "password": "a long enough password"}),
    );
    assert_eq!(status, 200);
}

#[test]
fn the_admin_api_issues_a_subscription_a_developer_sees_and_the_portal_can_have_its_own_listener() {
    let origin = Origin::start("pets");
    let dir = TempDir::new();
    let mut rw = Ringway::start(
        &config(&origin, &dir.path().join("p.db"), "")
            .replace("portal:\n", "portal:\n  listener: 127.0.0.1:0\n"),
    );
    let portal = rw.portal_addr();
    let admin_addr = rw.admin_addr();
    // The admin listener does not serve the portal when it has its own.
    assert_eq!(Client::connect(admin_addr).get("/portal/").status, 404);
    let r = Client::connect(portal).get("/");
    assert_eq!((r.status, r.header("location")), (302, Some("/portal/")));
    let mut b = Browser::open(portal);
    b.sign_up("dee@example.com");

    let (status, issued) = admin(
        admin_addr,
        "POST",
        "/subscriptions",
        r#"{"id": "dee-free", "owner": "dee@example.com", "scope": {"product": "free"}}"#,
    );
    assert_eq!(status, 201, "{issued}");
    let key = issued["primary_key"].as_str().unwrap().to_string();
    wait_status(rw.addr(), "/pets/1", &key, 200);
    let (_, mine) = b.get("/portal/api/subscriptions");
    assert_eq!(mine["subscriptions"][0]["id"], "dee-free");
    assert_eq!(mine["subscriptions"][0]["primary_key"], key.as_str());

    // The developer rotates the primary key in the portal: the old one stops.
    let (status, body) = b.post(
        "/portal/api/subscriptions/dee-free/regenerate",
        json!({"key": "primary"}),
    );
    assert_eq!(status, 200, "{body}");
    let new = body["subscription"]["primary_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, key);
    wait_status(rw.addr(), "/pets/1", &key, 401);
    assert_eq!(call(rw.addr(), "/pets/1", &new), 200);
    // Another developer cannot touch it.
    let mut eve = Browser::open(portal);
    eve.sign_up("eve@example.com");
    assert_eq!(
        eve.post(
            "/portal/api/subscriptions/dee-free/regenerate",
            json!({"key": "primary"})
        )
        .0,
        404
    );
}

#[test]
fn in_cluster_mode_every_node_sees_the_same_developers_subscriptions_and_usage() {
    let redis = RedisServer::start();
    let origin = Origin::start("pets");
    let (dir_a, dir_b) = (TempDir::new(), TempDir::new());
    let cluster = format!("cluster: {{ name: portal, redis: {} }}\n", redis.url());
    let mut a = Ringway::start(&config(&origin, &dir_a.path().join("a.db"), &cluster));
    let mut b = Ringway::start(&config(&origin, &dir_b.path().join("b.db"), &cluster));
    let (admin_a, admin_b) = (a.admin_addr(), b.admin_addr());

    let mut on_a = Browser::open(admin_a);
    on_a.sign_up("fay@example.com");
    let (status, body) = on_a.post("/portal/api/subscriptions", json!({"product": "free"}));
    assert_eq!(status, 201, "{body}");
    let key = body["subscription"]["primary_key"]
        .as_str()
        .unwrap()
        .to_string();

    // Node B takes the key, and the developer signs in there with the account made on A.
    wait_status(b.addr(), "/pets/1", &key, 200);
    let mut on_b = Browser::open(admin_b);
    let (status, _) = on_b.post(
        "/portal/api/signin",
        json!({"email": "fay@example.com", "password": "a long enough password"}),
    );
    assert_eq!(status, 200);
    let (_, mine) = on_b.get("/portal/api/subscriptions");
    assert_eq!(mine["subscriptions"][0]["primary_key"], key.as_str());

    // A regeneration on B reaches A.
    let id = mine["subscriptions"][0]["id"].as_str().unwrap().to_string();
    let (_, body) = on_b.post(
        &format!("/portal/api/subscriptions/{id}/regenerate"),
        json!({"key": "primary"}),
    );
    let new = body["subscription"]["primary_key"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(a.addr(), "/pets/1", &key, 401);
    wait_status(a.addr(), "/pets/1", &new, 200);

    // Calls on both nodes count in the usage either node shows.
    for _ in 0..3 {
        assert_eq!(call(a.addr(), "/pets/1", &new), 200);
        assert_eq!(call(b.addr(), "/pets/1", &new), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, usage) = on_a.get("/portal/api/usage?days=1");
        let today = usage["days"][0]["requests"].as_u64().unwrap_or(0);
        if today >= 7 {
            break;
        }
        assert!(Instant::now() < deadline, "usage on A: {usage}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn after_a_restart_a_portal_key_works_from_the_first_request() {
    let origin = Origin::start("pets");
    let dir = TempDir::new();
    let yaml = config(&origin, &dir.path().join("p.db"), "");
    let mut rw = Ringway::start(&yaml);
    let mut b = Browser::open(rw.admin_addr());
    b.sign_up("gus@example.com");
    let (status, body) = b.post("/portal/api/subscriptions", json!({"product": "free"}));
    assert_eq!(status, 201, "{body}");
    let key = body["subscription"]["primary_key"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(rw.addr(), "/pets/1", &key, 200);
    drop(rw);

    let rw = Ringway::start(&yaml);
    // Ready means the key is in force: no reload after the start is waited for.
    assert_eq!(call(rw.addr(), "/pets/1", &key), 200);
    assert!(
        !rw.stderr_text().contains("portal start"),
        "no second switch at start:\n{}",
        rw.stderr_text()
    );
}

#[test]
fn a_portal_without_sign_ups_says_so_and_refuses_them() {
    let origin = Origin::start("pets");
    let dir = TempDir::new();
    let yaml = config(&origin, &dir.path().join("p.db"), "")
        .replace("portal:\n", "portal:\n  signup: false\n");
    let mut rw = Ringway::start(&yaml);
    let mut b = Browser::open(rw.admin_addr());
    let (_, session) = b.get("/portal/api/session");
    assert_eq!(session["signup"], false);
    let (status, body) = b.post(
        "/portal/api/signup",
        json!({"email": "hal@example.com", "name": "Hal", "password": "a long enough password"}),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("signup_closed"))
    );
}
