//! TLS termination through the real binary: certificates by SNI with a default, ALPN, TLS
//! versions, resumption by ticket and by session cache (across cores), reload under traffic
//! and a broken reload that keeps the old certificate, client certificates (required,
//! optional, wrong CA, expired), a stalled handshake cut by the header timeout, `curl` and
//! `openssl s_client` as clients, and `examples/tls-proxy.yaml`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringway_tests::tls::{tls_get, Ca, ClientSetup, TlsClient};
use ringway_tests::{Origin, Ringway, TempDir};
use rustls::HandshakeKind;

/// A TLS listener in front of `origin` with the given `tls:` block (indented for a listener).
fn config(origin: &Origin, workers: usize, tls: &str, extra: &str) -> String {
    format!(
        "workers: {workers}\ntimeouts:\n  header: 1s\nlisteners:\n  - name: tls\n    address: 127.0.0.1:0\n    tls:\n{tls}\nbackends:\n  - name: o\n    targets:\n      - url: {}\nroutes:\n  - backend: o\n{extra}",
        origin.url()
    )
}

fn cert_block(cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "        - cert: {}\n          key: {}\n",
        cert.display(),
        key.display()
    )
}

fn start(yaml: &str) -> Ringway {
    Ringway::start(yaml)
}

/// A TLS listener serving one certificate for `a.test` (signed by `ca`), with `settings`
/// (further `tls:` keys, indented six spaces) before it.
fn a_test_listener(
    origin: &Origin,
    dir: &TempDir,
    ca: &Ca,
    workers: usize,
    settings: &str,
) -> Ringway {
    let (c, k) = ca.server(&["a.test"]).write(dir.path(), "a");
    let tls = format!("{settings}      certificates:\n{}", cert_block(&c, &k));
    start(&config(origin, workers, &tls, ""))
}

#[test]
fn certificates_are_chosen_by_sni_with_a_default() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let a = ca.server(&["a.test"]);
    let wild = ca.server(&["*.b.test"]);
    let fallback = ca.server(&["default.test", "127.0.0.1"]);
    let (ac, ak) = a.write(dir.path(), "a");
    let (wc, wk) = wild.write(dir.path(), "wild");
    let (dc, dk) = fallback.write(dir.path(), "default");
    let tls = format!(
        "      certificates:\n{}{}{}          default: true\n",
        cert_block(&ac, &ak),
        cert_block(&wc, &wk),
        cert_block(&dc, &dk)
    );
    let rw = start(&config(&origin, 1, &tls, ""));
    let client = ClientSetup::new(&ca).config();
    let at = |sni: &str| tls_get(rw.addr(), sni, client.clone(), "/sni").unwrap();

    let r = at("a.test");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"GET /sni");
    assert_eq!(r.server_cert, a.der);
    assert_eq!(at("x.b.test").server_cert, wild.der);
    // A name no certificate holds, and no SNI at all (an IP address), get the default.
    assert_eq!(
        tls_get(rw.addr(), "127.0.0.1", client.clone(), "/")
            .unwrap()
            .server_cert,
        fallback.der
    );
    // The wildcard covers one label only; a deeper name gets the default, which the client
    // then refuses (the default does not hold that name).
    assert!(tls_get(rw.addr(), "deep.x.b.test", client.clone(), "/").is_err());
    // The request came over TLS, and the origin is told so.
    let r = at("a.test");
    assert_eq!(r.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[test]
fn alpn_offers_http1_only_and_versions_follow_min_version() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let rw = a_test_listener(&origin, &dir, &ca, 1, "      min_version: \"1.3\"\n");
    let mut setup = ClientSetup::new(&ca);
    let r = tls_get(rw.addr(), "a.test", setup.config(), "/").unwrap();
    assert_eq!(r.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(r.alpn.as_deref(), Some(&b"http/1.1"[..]));
    // A client that speaks only h2 finds no common protocol.
    setup.alpn = vec![b"h2".to_vec()];
    assert!(tls_get(rw.addr(), "a.test", setup.config(), "/").is_err());
    // No ALPN at all is fine (HTTP/1.1 is assumed).
    setup.alpn = Vec::new();
    assert_eq!(
        tls_get(rw.addr(), "a.test", setup.config(), "/")
            .unwrap()
            .status,
        200
    );
    // TLS 1.2 is refused under min_version 1.3.
    let mut old = ClientSetup::new(&ca);
    old.tls12_only = true;
    assert!(tls_get(rw.addr(), "a.test", old.config(), "/").is_err());
}

#[test]
fn sessions_resume_by_ticket_and_by_session_cache_on_any_core() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let rw = a_test_listener(&origin, &dir, &ca, 2, "");

    // TLS 1.3 tickets: the first handshake is full, the following ones resume. With two
    // workers, connections land on both cores; each resumes with what the other issued.
    let mut setup = ClientSetup::new(&ca);
    setup.tls13_only = true;
    let client = setup.config();
    let first = tls_get(rw.addr(), "a.test", client.clone(), "/").unwrap();
    assert_eq!(first.kind, Some(HandshakeKind::Full));
    for _ in 0..8 {
        let next = tls_get(rw.addr(), "a.test", client.clone(), "/").unwrap();
        assert_eq!(next.kind, Some(HandshakeKind::Resumed));
        assert_eq!(next.status, 200);
    }

    // TLS 1.2 with session ids only: the shared session cache.
    let mut setup = ClientSetup::new(&ca);
    setup.tls12_only = true;
    setup.tickets = false;
    let client = setup.config();
    let first = tls_get(rw.addr(), "a.test", client.clone(), "/").unwrap();
    assert_eq!(first.kind, Some(HandshakeKind::Full));
    for _ in 0..8 {
        let next = tls_get(rw.addr(), "a.test", client.clone(), "/").unwrap();
        assert_eq!(next.kind, Some(HandshakeKind::Resumed));
    }
}

#[test]
fn an_ocsp_response_is_stapled_and_reloaded_with_the_certificate() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let (c, k) = ca.server(&["a.test"]).write(dir.path(), "a");
    let ocsp = dir.write("a.ocsp", "stapled response one");
    let tls = format!(
        "      certificates:\n{}          ocsp: {}\n",
        cert_block(&c, &k),
        ocsp.display()
    );
    let rw = start(&config(&origin, 1, &tls, ""));
    let stapled = |version13: bool| {
        let mut setup = ClientSetup::new(&ca);
        setup.tls13_only = version13;
        setup.tls12_only = !version13;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        setup.ocsp_seen = Some(seen.clone());
        assert_eq!(
            tls_get(rw.addr(), "a.test", setup.config(), "/")
                .unwrap()
                .status,
            200
        );
        let bytes = seen.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    };
    assert_eq!(stapled(true), "stapled response one");
    assert_eq!(stapled(false), "stapled response one");
    // A new response file is picked up like a new certificate.
    replace(&ocsp, "stapled response two");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stapled(true) != "stapled response two" {
        assert!(
            Instant::now() < deadline,
            "the new OCSP response was never stapled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn without_tickets_or_cache_nothing_resumes() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let settings = "      session_tickets: false\n      session_cache: 0\n";
    let rw = a_test_listener(&origin, &dir, &ca, 1, settings);
    let client = ClientSetup::new(&ca).config();
    for _ in 0..3 {
        let r = tls_get(rw.addr(), "a.test", client.clone(), "/").unwrap();
        assert_eq!(r.kind, Some(HandshakeKind::Full));
    }
}

/// Replaces a file the way deployment tools do: write a sibling, then rename over it.
fn replace(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_changed_certificate_is_served_without_a_failed_request_and_a_broken_one_is_refused() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let old = ca.server(&["a.test"]);
    let (c, k) = old.write(dir.path(), "a");
    let tls = format!("      certificates:\n{}", cert_block(&c, &k));
    let mut rw = start(&config(&origin, 2, &tls, ""));
    let addr = rw.addr();

    // Traffic throughout: new connections (full handshakes) and a kept-alive one.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for keep_alive in [false, true] {
        let (stop, failures, answered) = (stop.clone(), failures.clone(), answered.clone());
        let client = ClientSetup::new(&ca).config();
        load.push(std::thread::spawn(move || {
            let mut kept: Option<TlsClient> = None;
            while !stop.load(Ordering::Relaxed) {
                let result = if keep_alive {
                    let c = kept.get_or_insert_with(|| {
                        TlsClient::connect(addr, "a.test", client.clone()).unwrap()
                    });
                    c.get("/", &[])
                } else {
                    tls_get(addr, "a.test", client.clone(), "/")
                };
                match result {
                    Ok(r) if r.status == 200 => answered.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let new = ca.server(&["a.test"]);
    // Key first, then the certificate: in between, the pair does not match and is refused;
    // once both are in place it is served.
    replace(&k, &new.key_pem);
    replace(&c, &new.cert_pem);
    // A fresh client config for every look: a resumed session reports the certificate of the
    // session it resumed, not the one the listener serves now.
    let served = || {
        tls_get(addr, "a.test", ClientSetup::new(&ca).config(), "/")
            .unwrap()
            .server_cert
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while served() != new.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the reload"
    );
    assert!(answered.load(Ordering::Relaxed) > 20);
    rw.wait_for_output(Duration::from_secs(5), "the reload line", |s| {
        s.contains("listener tls: certificates reloaded")
    });

    // A broken certificate: reported with its path, and the one in force keeps serving.
    replace(
        &c,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    let path = c.display().to_string();
    rw.wait_for_output(Duration::from_secs(5), "the refused reload", |s| {
        s.contains("certificates not reloaded") && s.contains(&path)
    });
    assert_eq!(served(), new.der);

    // SIGHUP reloads as well (here: a good pair again).
    let third = ca.server(&["a.test"]);
    std::fs::write(&k, &third.key_pem).unwrap();
    std::fs::write(&c, &third.cert_pem).unwrap();
    rw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served() != third.der {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mtls(mode: &str, ca: &Ca, dir: &TempDir, origin: &Origin, extra: &str) -> Ringway {
    let (c, k) = ca.server(&["a.test"]).write(dir.path(), "server");
    let client_ca = ca.write(dir.path(), "client-ca");
    let tls = format!(
        "      client_auth:\n        mode: {mode}\n        ca: {}\n      certificates:\n{}",
        client_ca.display(),
        cert_block(&c, &k)
    );
    start(&config(origin, 1, &tls, extra))
}

#[test]
fn required_client_certificates_are_verified_in_the_handshake() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let rw = mtls("required", &ca, &dir, &origin, "");
    let addr = rw.addr();

    let mut setup = ClientSetup::new(&ca);
    // No certificate: the handshake fails (TLS 1.3 reports it on the first read).
    assert!(tls_get(addr, "a.test", setup.config(), "/").is_err());
    setup.identity = Some(ca.client("alice"));
    assert_eq!(
        tls_get(addr, "a.test", setup.config(), "/").unwrap().status,
        200
    );
    // A certificate from another CA, and an expired one, fail too.
    setup.identity = Some(Ca::new("Someone Else").client("mallory"));
    assert!(tls_get(addr, "a.test", setup.config(), "/").is_err());
    setup.identity = Some(ca.expired_client("old"));
    assert!(tls_get(addr, "a.test", setup.config(), "/").is_err());
}

#[test]
fn optional_client_certificates_pass_without_one() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let rw = mtls("optional", &ca, &dir, &origin, "");
    let addr = rw.addr();
    let mut setup = ClientSetup::new(&ca);
    assert_eq!(
        tls_get(addr, "a.test", setup.config(), "/").unwrap().status,
        200
    );
    setup.identity = Some(ca.client("alice"));
    assert_eq!(
        tls_get(addr, "a.test", setup.config(), "/").unwrap().status,
        200
    );
    // A certificate that does not verify still fails the handshake.
    setup.identity = Some(Ca::new("Someone Else").client("mallory"));
    assert!(tls_get(addr, "a.test", setup.config(), "/").is_err());
}

#[test]
fn a_policy_demands_a_certificate_and_reads_its_identity() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let policies = "    policies:\n      inbound:\n        - validate-client-certificate:\n            identities:\n              - common_name: alice\n        - set-header: {name: X-Client-Subject, value: \"{client_cert:subject}\"}\n        - set-header: {name: X-Client-Fingerprint, value: \"{client_cert:fingerprint}\"}\n";
    let rw = mtls("optional", &ca, &dir, &origin, policies);
    let addr = rw.addr();
    let mut setup = ClientSetup::new(&ca);
    // No certificate: the handshake passes (optional), the policy answers 403.
    let r = tls_get(addr, "a.test", setup.config(), "/").unwrap();
    assert_eq!(r.status, 403);
    // A verified certificate of someone not listed: 403 as well.
    setup.identity = Some(ca.client("bob"));
    assert_eq!(
        tls_get(addr, "a.test", setup.config(), "/").unwrap().status,
        403
    );
    // Alice passes, and the backend is told who she is.
    let alice = ca.client("alice");
    setup.identity = Some(alice.clone());
    let r = tls_get(addr, "a.test", setup.config(), "/who").unwrap();
    assert_eq!(r.status, 200);
    let seen = origin.last_request().unwrap();
    let subject = seen.header("x-client-subject").unwrap().to_string();
    assert!(subject.contains("CN=alice"), "{subject}");
    assert!(subject.contains("O=Ringway Tests"), "{subject}");
    let fingerprint = seen.header("x-client-fingerprint").unwrap();
    assert_eq!(fingerprint.len(), 64);
    // A per-certificate rate limit keyed on {client_cert:fingerprint} would see this value:
    // it is the SHA-256 of the certificate the client presented.
    let expected: String = openssl_sha256_hex(&alice.der);
    assert_eq!(fingerprint, expected);
}

fn openssl_sha256_hex(der: &[u8]) -> String {
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(der)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_stalled_handshake_is_closed_by_the_header_timeout() {
    use std::io::{Read, Write};
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let rw = a_test_listener(&origin, &dir, &ca, 1, "");
    for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut s = std::net::TcpStream::connect(rw.addr()).unwrap();
        s.write_all(partial).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        // Closed (EOF or reset) after the 1 s header timeout, not before.
        let n = s.read(&mut buf).unwrap_or(0);
        let waited = started.elapsed();
        assert_eq!(n, 0);
        assert!(waited >= Duration::from_millis(800), "{waited:?}");
        assert!(waited < Duration::from_secs(4), "{waited:?}");
    }
    // The listener still serves.
    let client = ClientSetup::new(&ca).config();
    assert_eq!(
        tls_get(rw.addr(), "a.test", client, "/").unwrap().status,
        200
    );
}

#[test]
fn plain_http_to_a_tls_listener_is_refused_cleanly() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let rw = a_test_listener(&origin, &dir, &ca, 1, "");
    let mut plain = ringway_tests::Client::connect(rw.addr());
    plain.send_raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(plain.try_read_response().is_err());
    let client = ClientSetup::new(&ca).config();
    assert_eq!(
        tls_get(rw.addr(), "a.test", client, "/").unwrap().status,
        200
    );
}

#[test]
fn a_config_with_unreadable_or_mismatched_files_is_refused_with_the_path() {
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let (c, _) = ca.server(&["a.test"]).write(dir.path(), "a");
    let (_, other_key) = ca.server(&["b.test"]).write(dir.path(), "b");
    let missing = dir.path().join("missing.key");
    for (key, expect) in [
        (missing.clone(), missing.display().to_string()),
        (
            other_key.clone(),
            "does not belong to the certificate".to_string(),
        ),
    ] {
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:0\n    tls:\n      certificates:\n{}routes:\n  - return_response: {{status: 200}}\n",
            cert_block(&c, &key)
        );
        let file = dir.write("bad.yaml", &yaml);
        let out = ringway_tests::run_ringway(
            &["check", file.to_str().unwrap()],
            &[],
            Duration::from_secs(20),
        );
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success());
        assert!(text.contains("listeners[0].tls"), "{text}");
        assert!(text.contains(&expect), "{text}");
    }
}

fn ready_curl_and_openssl() {
    for tool in ["curl", "openssl"] {
        let found = std::process::Command::new(tool)
            .arg(if tool == "curl" {
                "--version"
            } else {
                "version"
            })
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is required by these tests (scripts/test installs it)"
        );
    }
}

#[test]
fn curl_and_openssl_s_client_talk_to_the_listener() {
    ready_curl_and_openssl();
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let rw = a_test_listener(&origin, &dir, &ca, 1, "");
    let port = rw.addr().port();

    let out = std::process::Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(&ca_file)
        .arg("--resolve")
        .arg(format!("a.test:{port}:127.0.0.1"))
        .arg(format!("https://a.test:{port}/curl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "GET /curl");

    // openssl s_client: the chain verifies, ALPN is http/1.1, and a saved session resumes.
    let sess = dir.path().join("session.pem");
    let s_client = |extra: &[&str]| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "a.test", "-alpn", "http/1.1", "-CAfile"])
            .arg(&ca_file)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let _ =
                stdin.write_all(b"GET /ossl HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
            // s_client sends what it read, then waits for the answer before closing.
            std::thread::sleep(Duration::from_millis(700));
        }
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = s_client(&["-sess_out", sess.to_str().unwrap()]);
    assert!(first.contains("Verify return code: 0 (ok)"), "{first}");
    assert!(first.contains("ALPN protocol: http/1.1"), "{first}");
    assert!(first.contains("GET /ossl"), "{first}");
    let second = s_client(&["-sess_in", sess.to_str().unwrap()]);
    assert!(second.contains("Reused,"), "{second}");
}

#[test]
fn the_tls_proxy_example_serves_with_the_given_certificate() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let ca = Ca::new("Ringway Test CA");
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    let (c, k) = leaf.write(dir.path(), "example");
    let rw = Ringway::start_file(
        "examples/tls-proxy.yaml",
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "1"),
            ("RINGWAY_BACKEND", &origin.url()),
            ("RINGWAY_TLS_CERT", c.to_str().unwrap()),
            ("RINGWAY_TLS_KEY", k.to_str().unwrap()),
        ],
    );
    let client = ClientSetup::new(&ca).config();
    let mut conn = TlsClient::connect(rw.addr(), "localhost", client).unwrap();
    for i in 0..3 {
        let r = conn.get(&format!("/ex/{i}"), &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.server_cert, leaf.der);
        assert_eq!(String::from_utf8_lossy(&r.body), format!("GET /ex/{i}"));
    }
}
