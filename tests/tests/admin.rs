//! The admin listener through the real binary: liveness and readiness without a token,
//! `/metrics` behind the bearer token, counters that follow the traffic, and the checks on
//! its settings.

use std::time::{Duration, Instant};

use ringway_tests::client::get;
use ringway_tests::{Client, Origin, Ringway, TempDir};

const TOKEN: &str = "admin-token-0123456789abcdef";

fn metrics(addr: std::net::SocketAddr, token: Option<&str>) -> ringway_tests::Response {
    let mut c = Client::connect(addr);
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    c.request("GET", "/metrics", &headers, b"")
}

#[test]
fn health_readiness_and_metrics_follow_the_traffic() {
    let origin = Origin::start("o");
    let mut rw = Ringway::start(&format!(
        "workers: 2\nadmin:\n  address: 127.0.0.1:0\n  token: {TOKEN}\nlisteners:\n  - address: 127.0.0.1:0\nbackends:\n  - name: o\n    targets: [{{url: {}}}]\nroutes:\n  - name: all\n    backend: o\n",
        origin.url()
    ));
    let admin = rw.admin_addr();
    assert_eq!(get(admin, "/healthz").status, 200);
    let ready = get(admin, "/readyz");
    assert_eq!(ready.status, 200);
    assert!(ready.text().contains("\"workers\":2"), "{}", ready.text());

    let refused = metrics(admin, None);
    assert_eq!(refused.status, 401);
    assert!(refused.header("www-authenticate").is_some());
    assert_eq!(metrics(admin, Some("wrong-token-0123456789")).status, 401);

    let mut c = Client::connect(rw.addr());
    for _ in 0..25 {
        assert_eq!(c.get("/x").status, 200);
    }
    assert_eq!(c.get("/status/503").status, 503);
    // Workers publish once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(admin, Some(TOKEN));
        assert_eq!(m.status, 200);
        assert!(m
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = m.text();
        let series = "api=\"all\",operation=\"\",backend=\"o\"";
        if text.contains(&format!(
            "ringway_requests_total{{{series},class=\"2xx\"}} 25\n"
        )) && text.contains(&format!(
            "ringway_requests_total{{{series},class=\"5xx\"}} 1\n"
        )) {
            assert!(
                text.contains(
                    "ringway_request_duration_seconds_count{api=\"all\",operation=\"\"} 26\n"
                ),
                "{text}"
            );
            assert!(text.contains("ringway_workers 2\n"), "{text}");
            assert!(text.contains("ringway_build_info{version="), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed the traffic:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(admin, "/nope").status, 404);
    let mut c = Client::connect(admin);
    assert_eq!(c.request("POST", "/metrics", &[], b"").status, 405);
    // The token never shows in the process's output.
    assert!(!rw.output_text().contains(TOKEN));
}

#[test]
fn an_admin_listener_off_loopback_needs_a_token() {
    let dir = TempDir::new();
    for (admin, expect) in [
        (
            "  address: 0.0.0.0:0\n",
            "admin.address: 0.0.0.0:0 is not a loopback address",
        ),
        (
            "  address: 127.0.0.1:0\n  token: short\n",
            "admin.token: must be at least 16",
        ),
        (
            "  token_file: missing.txt\n",
            "admin.token_file: cannot read",
        ),
    ] {
        let yaml = format!(
            "admin:\n{admin}listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - return_response: {{status: 200}}\n"
        );
        let file = dir.write("admin.yaml", &yaml);
        let out = ringway_tests::run_ringway(
            &["check", file.to_str().unwrap()],
            &[],
            Duration::from_secs(20),
        );
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success());
        assert!(text.contains(expect), "{text}");
        assert!(!text.contains("short\""), "{text}");
    }
}

#[test]
fn the_admin_listener_speaks_tls_when_configured() {
    use ringway_tests::tls::{Ca, ClientSetup, TlsClient};
    let ca = Ca::new("admin-ca");
    let dir = TempDir::new();
    let (cert, key) = ca.server(&["localhost"]).write(dir.path(), "admin");
    let mut rw = Ringway::start(&format!(
        "admin:\n  address: 127.0.0.1:0\n  token: {TOKEN}\n  tls: {{cert: {}, key: {}}}\nlisteners:\n  - address: 127.0.0.1:0\nroutes:\n  - return_response: {{status: 200}}\n",
        cert.display(),
        key.display()
    ));
    let admin = rw.admin_addr();
    let config = ClientSetup::new(&ca).config();
    let ready = TlsClient::connect(admin, "localhost", config.clone())
        .unwrap()
        .get("/readyz", &[])
        .unwrap();
    assert_eq!(ready.status, 200);
    let auth = format!("Bearer {TOKEN}");
    let m = TlsClient::connect(admin, "localhost", config.clone())
        .unwrap()
        .get("/metrics", &[("Authorization", &auth)])
        .unwrap();
    assert_eq!(m.status, 200);
    assert!(String::from_utf8_lossy(&m.body).contains("ringway_workers"));
    // Plain HTTP to it is not answered as HTTP.
    let mut plain = Client::connect(admin);
    plain.set_read_timeout(Duration::from_secs(3));
    plain.send_raw(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    assert!(plain.try_read_response().is_err());
}
