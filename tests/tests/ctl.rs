//! `ringway ctl` against the real binary's admin API: status, issuing a subscription whose key
//! then opens the API, suspending it so that the key is refused, cache purges, the upstream
//! table, and the exit statuses for refusals (1) and usage errors (2).

use std::process::Output;
use std::time::{Duration, Instant};

use ringway_tests::{run_ringway, Client, Origin, Ringway};
use serde_json::Value;

const TOKEN: &str = "ctl-admin-token-0123456789";
const KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

fn admin_url(rw: &mut Ringway) -> String {
    rw.wait_for_output(Duration::from_secs(10), "the admin line", |s| {
        s.contains("ringway: admin listening on ")
    });
    let text = rw.stderr_text();
    text.lines()
        .find_map(|l| l.strip_prefix("ringway: admin listening on "))
        .unwrap()
        .trim()
        .to_string()
}

/// Runs `ringway ctl --admin URL --token TOKEN ARGS...`.
fn ctl(admin: &str, args: &[&str]) -> Output {
    let mut all = vec!["ctl", "--admin", admin, "--token", TOKEN];
    all.extend_from_slice(args);
    run_ringway(&all, &[], Duration::from_secs(30))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "ringway ctl {what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// Calls `/orders/x` with `key` until it answers `status` (a change is applied by a reload,
/// which the admin API waits for; the loop only absorbs scheduling).
fn expect_status_with_key(gateway: std::net::SocketAddr, key: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(gateway);
        let r = c.request("GET", "/orders/x", &[(KEY_HEADER, key)], b"");
        if r.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {status} with the key, got {}: {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn gateway(origin: &Origin) -> Ringway {
    Ringway::start(&format!(
        "workers: 1\n\
         admin:\n  address: 127.0.0.1:0\n  token: {TOKEN}\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: b\n    targets: [{{url: {}}}]\n\
         products:\n  - {{name: gold, apis: [orders]}}\n\
         apis:\n  - {{name: orders, path: /orders, backend: b}}\n",
        origin.url()
    ))
}

#[test]
fn status_keys_and_purge_through_ctl() {
    let origin = Origin::start("o");
    let mut rw = gateway(&origin);
    let admin = admin_url(&mut rw);

    let out = ctl(&admin, &["status"]);
    assert_ok(&out, "status");
    assert!(stdout(&out).contains("workers:"), "{}", stdout(&out));
    let out = ctl(&admin, &["--json", "status"]);
    assert_ok(&out, "--json status");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["workers"], 1, "{status}");

    // No key yet: the product's API refuses.
    let mut c = Client::connect(rw.addr());
    assert_eq!(c.get("/orders/x").status, 401);

    let out = ctl(
        &admin,
        &[
            "--json",
            "keys",
            "issue",
            "bob",
            "--product",
            "gold",
            "--owner",
            "bob@example.com",
        ],
    );
    assert_ok(&out, "keys issue");
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    let primary = issued["primary_key"].as_str().unwrap().to_string();
    let secondary = issued["secondary_key"].as_str().unwrap().to_string();
    assert_eq!(primary.len(), 64);
    assert!(issued["subscription"]["primary_key"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    expect_status_with_key(rw.addr(), &primary, 200);
    expect_status_with_key(rw.addr(), &secondary, 200);

    // The listing shows the subscription, never its keys.
    let out = ctl(&admin, &["keys", "list"]);
    assert_ok(&out, "keys list");
    let list = stdout(&out);
    assert!(
        list.contains("bob") && list.contains("product gold"),
        "{list}"
    );
    assert!(!list.contains(&primary), "{list}");

    let out = ctl(&admin, &["keys", "suspend", "bob"]);
    assert_ok(&out, "keys suspend");
    assert!(stdout(&out).contains("suspended"), "{}", stdout(&out));
    expect_status_with_key(rw.addr(), &primary, 403);
    let out = ctl(&admin, &["keys", "activate", "bob"]);
    assert_ok(&out, "keys activate");
    expect_status_with_key(rw.addr(), &primary, 200);

    // A regenerated key replaces the old one.
    let out = ctl(&admin, &["keys", "regenerate", "bob", "primary"]);
    assert_ok(&out, "keys regenerate");
    let text = stdout(&out);
    let fresh = text
        .lines()
        .find_map(|l| l.strip_prefix("primary key:"))
        .unwrap_or_else(|| panic!("no new key in {text}"))
        .trim()
        .to_string();
    expect_status_with_key(rw.addr(), &fresh, 200);
    expect_status_with_key(rw.addr(), &primary, 401);

    let out = ctl(&admin, &["purge", "--prefix", "/orders"]);
    assert_ok(&out, "purge");
    assert!(stdout(&out).starts_with("purged"), "{}", stdout(&out));

    let out = ctl(&admin, &["upstreams"]);
    assert_ok(&out, "upstreams");
    let table = stdout(&out);
    assert!(table.starts_with("BACKEND"), "{table}");
    assert!(table.contains(&origin.addr().to_string()), "{table}");

    // Refusals exit 1 with the field and message.
    let out = ctl(&admin, &["keys", "suspend", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("path.subscription"),
        "{}",
        stderr(&out)
    );
    let out = ctl(&admin, &["keys", "issue", "bob", "--all-apis"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));

    // The keys and the token never show in the gateway's output.
    let output = rw.output_text();
    for secret in [TOKEN, &primary, &secondary, &fresh] {
        assert!(
            !output.contains(secret),
            "a secret in the output:\n{output}"
        );
    }
}

#[test]
fn config_get_redacts_and_a_bad_token_is_refused() {
    let origin = Origin::start("o");
    let mut rw = gateway(&origin);
    let admin = admin_url(&mut rw);

    let out = ctl(&admin, &["config", "get"]);
    assert_ok(&out, "config get");
    let yaml = stdout(&out);
    assert!(yaml.contains("orders"), "{yaml}");
    assert!(!yaml.contains(TOKEN), "{yaml}");

    let out = run_ringway(
        &[
            "ctl",
            "--admin",
            &admin,
            "--token",
            "wrong-token-0123456789",
            "status",
        ],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // The token from the environment.
    let out = run_ringway(
        &["ctl", "status"],
        &[("RINGWAY_ADMIN", &admin), ("RINGWAY_ADMIN_TOKEN", TOKEN)],
        Duration::from_secs(30),
    );
    assert_ok(&out, "status (environment)");
}

#[test]
fn usage_errors_exit_2_and_an_unreachable_admin_1() {
    for args in [
        &["ctl"][..],
        &["ctl", "frobnicate"],
        &["ctl", "keys", "issue", "bob"],
        &["ctl", "purge"],
        &["ctl", "drain", "b"],
        &["ctl", "--admin", "ftp://x", "status"],
    ] {
        let out = run_ringway(args, &[], Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("usage: ringway ctl"),
            "{}",
            stderr(&out)
        );
    }
    let out = run_ringway(&["ctl", "help"], &[], Duration::from_secs(10));
    assert!(out.status.success());
    assert!(stdout(&out).contains("keys regenerate"), "{}", stdout(&out));

    let closed = ringway_tests::closed_port();
    let out = run_ringway(
        &["ctl", "--admin", &format!("http://{closed}"), "status"],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the admin API"),
        "{}",
        stderr(&out)
    );
}
