//! TLS to upstream targets through the real binary: verification against a CA file (and
//! refusal when it fails), SNI, a client certificate, and pooling (a reused connection costs
//! no handshake).

use std::sync::atomic::Ordering;

use ringway_tests::tls::{Ca, TlsOrigin};
use ringway_tests::{Client, Ringway, TempDir};

fn gateway(origin: &TlsOrigin, tls: &str) -> Ringway {
    Ringway::start(&format!(
        "workers: 1\nlisteners:\n  - address: 127.0.0.1:0\nbackends:\n  - name: secure\n    targets:\n      - url: https://127.0.0.1:{}\n    tls:\n{tls}\nroutes:\n  - backend: secure\n",
        origin.addr.port()
    ))
}

#[test]
fn a_verified_upstream_is_reached_with_sni_and_pooled() {
    let dir = TempDir::new();
    let ca = Ca::new("Origin CA");
    let origin = TlsOrigin::start("secure", &ca.server(&["origin.test"]), None);
    let ca_file = ca.write(dir.path(), "origin-ca");
    let rw = gateway(
        &origin,
        &format!("      ca: {}\n      sni: origin.test", ca_file.display()),
    );
    let mut client = Client::connect(rw.addr());
    for i in 0..5 {
        let r = client.get(&format!("/r/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("secure /r/{i}"));
    }
    assert_eq!(origin.requests.load(Ordering::SeqCst), 5);
    // One handshake: the other four requests reused the pooled TLS connection.
    assert_eq!(origin.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(
        origin.last_sni.lock().unwrap().as_deref(),
        Some("origin.test")
    );
}

#[test]
fn an_upstream_that_does_not_verify_is_refused() {
    let dir = TempDir::new();
    let theirs = Ca::new("Origin CA");
    let ours = Ca::new("Another CA");
    let origin = TlsOrigin::start("secure", &theirs.server(&["origin.test"]), None);
    let wrong = ours.write(dir.path(), "wrong-ca");
    let mut rw = gateway(
        &origin,
        &format!("      ca: {}\n      sni: origin.test", wrong.display()),
    );
    let r = ringway_tests::client::get(rw.addr(), "/");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(origin.requests.load(Ordering::SeqCst), 0);
    rw.wait_for_output(
        std::time::Duration::from_secs(5),
        "the TLS failure in the log",
        |s| s.contains("TLS to 127.0.0.1") && s.contains("certificate"),
    );
    // A certificate for another name fails too, even from the right CA.
    let right = theirs.write(dir.path(), "right-ca");
    let rw = gateway(
        &origin,
        &format!("      ca: {}\n      sni: elsewhere.test", right.display()),
    );
    assert_eq!(ringway_tests::client::get(rw.addr(), "/").status, 502);
    // verify: false accepts it (for testing setups only).
    let rw = gateway(&origin, "      verify: false");
    assert_eq!(ringway_tests::client::get(rw.addr(), "/").status, 200);
}

#[test]
fn a_client_certificate_is_presented_to_an_upstream_that_requires_one() {
    let dir = TempDir::new();
    let ca = Ca::new("Origin CA");
    let gateways = Ca::new("Gateway CA");
    let origin = TlsOrigin::start("secure", &ca.server(&["origin.test"]), Some(&gateways));
    let ca_file = ca.write(dir.path(), "origin-ca");
    let identity = gateways.client("ringway-gateway");
    let (cert, key) = identity.write(dir.path(), "gw");

    let without = gateway(
        &origin,
        &format!("      ca: {}\n      sni: origin.test", ca_file.display()),
    );
    assert_eq!(ringway_tests::client::get(without.addr(), "/").status, 502);

    let with = gateway(
        &origin,
        &format!(
            "      ca: {}\n      sni: origin.test\n      client_cert: {}\n      client_key: {}",
            ca_file.display(),
            cert.display(),
            key.display()
        ),
    );
    let r = ringway_tests::client::get(with.addr(), "/mtls");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        origin.last_client_cert.lock().unwrap().as_deref(),
        Some(&identity.der[..])
    );
}

#[test]
fn tls_settings_on_plain_targets_are_refused() {
    let dir = TempDir::new();
    let yaml = "listeners:\n  - address: 127.0.0.1:0\nbackends:\n  - name: b\n    targets:\n      - url: http://127.0.0.1:9\n    tls:\n      verify: false\nroutes:\n  - backend: b\n";
    let file = dir.write("plain-tls.yaml", yaml);
    let out = ringway_tests::run_ringway(
        &["check", file.to_str().unwrap()],
        &[],
        std::time::Duration::from_secs(20),
    );
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("backends[0].tls: TLS settings need https:// target URLs"),
        "{text}"
    );
}
