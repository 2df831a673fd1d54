//! The developer portal of `examples/portal.yaml`, driven in a real headless Chromium
//! (`tests/browser/portal.mjs`, Playwright's `playwright-core` on Debian's `chromium`): sign
//! up, subscribe, see the key, call the API from the try-it console, regenerate the key and
//! see the old one refused, see the usage chart move, sign out and in, and a form posted
//! without the CSRF token refused. `scripts/test` installs Chromium, Node and the package.
//!
//! With `RINGWAY_SCREENSHOTS=DIR` the pages' screenshots are written there (docs/images/ holds
//! the ones docs/portal.md shows).

use std::process::Command;

use ringway_tests::{workspace_dir, Origin, Ringway, TempDir};

const TOKEN: &str = "portal-browser-token-0123456789";

#[test]
fn a_developer_signs_up_subscribes_tries_the_api_and_rotates_a_key_in_chromium() {
    let root = workspace_dir();
    let script = root.join("tests/browser/portal.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run `npm ci --prefix tests/browser` (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (scripts/test does)"
    );

    let origin = Origin::start("petstore");
    let dir = TempDir::new();
    let database = dir.path().join("portal.db");
    let shots = std::env::var("RINGWAY_SCREENSHOTS")
        .unwrap_or_else(|_| dir.path().join("shots").display().to_string());
    let mut rw = Ringway::start_file(
        root.join("examples/portal.yaml").to_str().unwrap(),
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "2"),
            ("RINGWAY_BACKEND", &origin.url()),
            ("RINGWAY_ADMIN_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_ADMIN_TOKEN", TOKEN),
            ("RINGWAY_PORTAL_DATABASE", database.to_str().unwrap()),
        ],
    );
    let admin = rw.admin_addr();
    let out = Command::new("node")
        .arg(&script)
        .env("PORTAL_URL", format!("http://{admin}/portal/"))
        .env("GATEWAY_URL", format!("http://{}", rw.addr()))
        .env("API", "petstore")
        .env("PRODUCT", "starter")
        .env("OPERATION", "listPets")
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser check failed (screenshots in {shots}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok - signed up"), "{stdout}");
    assert!(
        stdout.contains("ok - the old key is refused (401)"),
        "{stdout}"
    );
    assert!(!stdout.contains("not ok"), "{stdout}");

    // What the browser did is kept in the database: it survives a restart.
    drop(rw);
    let mut rw = Ringway::start_file(
        root.join("examples/portal.yaml").to_str().unwrap(),
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "1"),
            ("RINGWAY_BACKEND", &origin.url()),
            ("RINGWAY_ADMIN_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_ADMIN_TOKEN", TOKEN),
            ("RINGWAY_PORTAL_DATABASE", database.to_str().unwrap()),
        ],
    );
    let auth = format!("Bearer {TOKEN}");
    let r = ringway_tests::Client::connect(rw.admin_addr()).request(
        "GET",
        "/developers",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let developers: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let list = developers.as_array().unwrap();
    assert_eq!(list.len(), 1, "{developers}");
    assert_eq!(list[0]["name"], "Browser Test");
    assert_eq!(list[0]["subscriptions"].as_array().unwrap().len(), 1);
}
