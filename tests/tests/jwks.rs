//! validate-jwt with keys from a JWKS URL, through the real binary: a small JWK set server on
//! loopback counts its fetches and can change what it serves. Tokens with a known kid pass;
//! a kid the server starts publishing is found with exactly one more fetch however many
//! requests carry it; made-up kids cost at most one fetch per interval; a failed refresh keeps
//! the last good keys; the refresh interval picks up a changed set, and a removed key stops
//! admitting even the tokens a worker had already verified; a failed first fetch stops the
//! start with the policy's place, the URL and the reason.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringway_tests::{run_ringway, workspace_dir, Client, Origin, Ringway, TempDir};
use serde_json::{json, Value};

const TESTDATA: &str = "proxy/src/policy/auth/testdata";

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(workspace_dir().join(TESTDATA).join(name)).unwrap()
}

/// A JWK of the test keys (`rsa-1`, `ec-1`, `ed-1` in testdata/jwks.json), under `kid`.
fn jwk(of: &str, kid: &str) -> Value {
    let set: Value = serde_json::from_slice(&testdata("jwks.json")).unwrap();
    let mut key = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == of)
        .unwrap()
        .clone();
    key["kid"] = json!(kid);
    key
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `sub`, signed with the RSA (`rsa`), EC (`ec`) or Ed25519 (`ed`) test key and
/// naming `kid`.
fn token(key: &str, kid: &str, sub: &str) -> String {
    let (alg, key) = match key {
        "rsa" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&testdata("rsa_private.pem")).unwrap(),
        ),
        "ec" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&testdata("ec_private.pem")).unwrap(),
        ),
        _ => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&testdata("ed_private.pem")).unwrap(),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    encode(&header, &json!({ "sub": sub, "exp": now() + 600 }), &key).unwrap()
}

struct Served {
    status: u16,
    body: String,
}

/// A JWK set at `/jwks` (and an OpenID Connect discovery document pointing at it), counting
/// the fetches of the set.
struct JwksServer {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Served { status: 200, body }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (Arc::clone(&served), Arc::clone(&fetches));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if header == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let (status, body) = match path.as_str() {
                    "/jwks" => {
                        f.fetch_add(1, Ordering::SeqCst);
                        let served = s.lock().unwrap();
                        (served.status, served.body.clone())
                    }
                    "/.well-known/openid-configuration" => (
                        200,
                        json!({ "issuer": "test", "jwks_uri": format!("http://{addr}/jwks") })
                            .to_string(),
                    ),
                    _ => (404, String::new()),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        JwksServer {
            addr,
            served,
            fetches,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn serve(&self, status: u16, body: String) {
        *self.served.lock().unwrap() = Served { status, body };
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Waits until the set has been fetched at least `n` times.
    fn wait_for_fetches(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.fetches() < n {
            assert!(
                Instant::now() < deadline,
                "{} fetches, waited for {n}",
                self.fetches()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn config(origin: &Origin, key: &str, workers: usize) -> String {
    format!(
        r#"
workers: {workers}
listeners: [{{ address: 127.0.0.1:0 }}]
backends: [{{ name: b, targets: [{{ url: {} }}] }}]
routes: [{{ name: all, backend: b }}]
policies:
  inbound:
    - validate-jwt:
        algorithms: [RS256, ES256, EdDSA]
        keys: [{key}]
"#,
        origin.url()
    )
}

fn call(addr: SocketAddr, token: &str) -> ringway_tests::Response {
    let auth = format!("Bearer {token}");
    Client::connect(addr).request("GET", "/x", &[("Authorization", &auth)], b"")
}

/// Sends `tokens` at once, one connection each; the statuses in order.
fn call_all(addr: SocketAddr, tokens: Vec<String>) -> Vec<u16> {
    let threads: Vec<_> = tokens
        .into_iter()
        .map(|t| std::thread::spawn(move || call(addr, &t).status))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn rotated_keys_are_found_with_one_fetch() {
    let server = JwksServer::start(jwks(&[jwk("rsa-1", "rsa-1")]));
    let origin = Origin::start("o");
    let key = format!("{{ jwks_url: \"{}\" }}", server.url());
    let proxy = Ringway::start(&config(&origin, &key, 2));
    assert_eq!(server.fetches(), 1, "fetched once before serving");
    assert!(proxy.stderr_text().contains("plain http"));

    assert_eq!(
        call(proxy.addr(), &token("rsa", "rsa-1", "ann")).status,
        200
    );
    assert_eq!(
        call(proxy.addr(), &token("rsa", "rsa-1", "ann")).status,
        200
    );
    assert_eq!(server.fetches(), 1);

    // The identity provider starts signing with a new key and publishes it.
    server.serve(200, jwks(&[jwk("rsa-1", "rsa-1"), jwk("ec-1", "ec-2")]));
    let statuses = call_all(proxy.addr(), vec![token("ec", "ec-2", "bob"); 20]);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(server.fetches(), 2, "twenty requests, one refresh");
    assert_eq!(origin.requests(), 22);
    // Known now: no further fetch.
    assert_eq!(call(proxy.addr(), &token("ec", "ec-2", "bob")).status, 200);
    assert_eq!(server.fetches(), 2);
}

#[test]
fn made_up_kids_cost_at_most_one_fetch_per_interval() {
    let server = JwksServer::start(jwks(&[jwk("rsa-1", "rsa-1")]));
    let origin = Origin::start("o");
    let key = format!("{{ jwks_url: \"{}\" }}", server.url());
    let proxy = Ringway::start(&config(&origin, &key, 2));
    let started = Instant::now();
    for round in 0..3 {
        let tokens = (0..10)
            .map(|i| token("rsa", &format!("random-{round}-{i}"), "eve"))
            .collect();
        let statuses = call_all(proxy.addr(), tokens);
        assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    }
    let r = call(proxy.addr(), &token("rsa", "random-last", "eve"));
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("kid"),
        "{:?}",
        r.header("www-authenticate")
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the flood outlasted the refresh interval; the count below would not hold"
    );
    assert_eq!(
        server.fetches(),
        2,
        "the start's fetch and one for the kids"
    );
    assert_eq!(origin.requests(), 0);
    // The known key still works, without a fetch.
    assert_eq!(
        call(proxy.addr(), &token("rsa", "rsa-1", "ann")).status,
        200
    );
    assert_eq!(server.fetches(), 2);
}

#[test]
fn a_failed_refresh_keeps_the_last_good_keys_and_is_logged_once() {
    let server = JwksServer::start(jwks(&[jwk("rsa-1", "rsa-1")]));
    let origin = Origin::start("o");
    let key = format!("{{ jwks_url: \"{}\", refresh_interval: 1s }}", server.url());
    let mut proxy = Ringway::start(&config(&origin, &key, 1));
    server.serve(500, "{}".to_string());
    server.wait_for_fetches(4, Duration::from_secs(10));
    assert_eq!(
        call(proxy.addr(), &token("rsa", "rsa-1", "ann")).status,
        200
    );
    let text = proxy.stderr_text();
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("cannot refresh signing keys"))
        .collect();
    assert_eq!(failures.len(), 1, "{text}");
    assert!(failures[0].contains(&server.url()), "{}", failures[0]);
    assert!(failures[0].contains("500"), "{}", failures[0]);
    assert!(
        failures[0].contains("policies.inbound[0].validate-jwt.keys[0].jwks_url"),
        "{}",
        failures[0]
    );

    // A document that is not a JWK set is a failure too: the keys stay.
    server.serve(200, "<html>maintenance</html>".to_string());
    let seen = server.fetches();
    server.wait_for_fetches(seen + 2, Duration::from_secs(10));
    assert_eq!(
        call(proxy.addr(), &token("rsa", "rsa-1", "ann")).status,
        200
    );

    server.serve(200, jwks(&[jwk("rsa-1", "rsa-1")]));
    proxy.wait_for_output(Duration::from_secs(10), "the recovery", |text| {
        text.contains("fetched from") && text.contains("again")
    });
    assert_eq!(
        call(proxy.addr(), &token("rsa", "rsa-1", "ann")).status,
        200
    );
}

#[test]
fn the_refresh_interval_picks_up_a_changed_set_and_removed_keys_stop_admitting() {
    let server = JwksServer::start(jwks(&[jwk("rsa-1", "rsa-1")]));
    let origin = Origin::start("o");
    let key = format!("{{ jwks_url: \"{}\", refresh_interval: 1s }}", server.url());
    let mut proxy = Ringway::start(&config(&origin, &key, 1));
    // One connection: one worker, which keeps the verified token.
    let old = token("rsa", "rsa-1", "ann");
    let mut c = Client::connect(proxy.addr());
    let auth = format!("Bearer {old}");
    for _ in 0..2 {
        let r = c.request("GET", "/x", &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 200);
    }

    // rsa-1 is withdrawn, ed-1 published; the interval's refresh finds the new set before
    // any request names it (each new set is logged).
    server.serve(200, jwks(&[jwk("ed-1", "ed-1")]));
    proxy.wait_for_output(Duration::from_secs(5), "a second key set", |text| {
        text.matches("signing key(s) from").count() == 2
    });
    assert_eq!(call(proxy.addr(), &token("ed", "ed-1", "bob")).status, 200);
    let r = c.request("GET", "/x", &[("Authorization", &auth)], b"");
    assert_eq!(
        r.status, 401,
        "the token verified before is not admitted any more"
    );
}

#[test]
fn keys_from_an_openid_configuration() {
    let server = JwksServer::start(jwks(&[jwk("ec-1", "ec-1")]));
    let origin = Origin::start("o");
    let key = format!(
        "{{ openid_config_url: \"http://{}/.well-known/openid-configuration\" }}",
        server.addr
    );
    let proxy = Ringway::start(&config(&origin, &key, 1));
    assert_eq!(call(proxy.addr(), &token("ec", "ec-1", "ann")).status, 200);
    assert_eq!(call(proxy.addr(), &token("rsa", "ec-1", "ann")).status, 401);
    assert_eq!(server.fetches(), 1);
}

#[test]
fn a_failed_first_fetch_stops_the_start() {
    let server = JwksServer::start(String::new());
    server.serve(404, String::new());
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let key = format!("{{ jwks_url: \"{}\" }}", server.url());
    let file = dir.write("ringway.yaml", &config(&origin, &key, 1));
    let out = run_ringway(
        &["run", "--config", file.to_str().unwrap()],
        &[],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("policies.inbound[0].validate-jwt.keys[0].jwks_url")
            && stderr.contains(&server.url())
            && stderr.contains("404"),
        "{stderr}"
    );
    assert!(!stderr.contains("ringway: ready"), "{stderr}");
}
