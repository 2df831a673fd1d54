//! validate-jwt through the real binary with `examples/jwt.yaml`: a valid RS256 token passes,
//! and each kind of bad token gets 401 with `WWW-Authenticate`, including the attacks
//! (`alg: none`, RS256→HS256 confusion with the public key as the secret, a 1 MiB token).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringway_tests::{workspace_dir, Client, Origin, Ringway};
use serde_json::json;

const PRIVATE: &str = "proxy/src/policy/auth/testdata/rsa_private.pem";
const PUBLIC: &str = "proxy/src/policy/auth/testdata/rsa_public.pem";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rs256(claims: &serde_json::Value) -> String {
    let pem = std::fs::read(workspace_dir().join(PRIVATE)).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn start(origin: &Origin) -> Ringway {
    let public = workspace_dir().join(PUBLIC);
    Ringway::start_file(
        "examples/jwt.yaml",
        &[
            ("RINGWAY_LISTEN", "127.0.0.1:0"),
            ("RINGWAY_WORKERS", "1"),
            ("RINGWAY_BACKEND", &origin.url()),
            ("RINGWAY_JWT_PUBLIC_KEY", public.to_str().unwrap()),
        ],
    )
}

fn call(c: &mut Client, token: &str) -> ringway_tests::Response {
    let auth = format!("Bearer {token}");
    c.request("GET", "/x", &[("Authorization", &auth)], b"")
}

#[test]
fn a_valid_token_passes_and_every_bad_one_gets_401() {
    let origin = Origin::start("o");
    let proxy = start(&origin);
    let mut c = Client::connect(proxy.addr());
    let good = json!({ "iss": "ringway-test", "aud": "api", "exp": now() + 600, "sub": "ann" });
    assert_eq!(call(&mut c, &rs256(&good)).status, 200);
    assert_eq!(origin.requests(), 1);

    let public = std::fs::read(workspace_dir().join(PUBLIC)).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    let mut tampered = rs256(&good);
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let cases: Vec<(&str, String)> = vec![
        ("alg none", unsigned),
        ("RS256 to HS256 with the public key", confused),
        ("bad signature", tampered),
        (
            "expired",
            rs256(&json!({ "iss": "ringway-test", "aud": "api", "exp": now() - 1 })),
        ),
        (
            "wrong issuer",
            rs256(&json!({ "iss": "other", "aud": "api", "exp": now() + 600 })),
        ),
        (
            "wrong audience",
            rs256(&json!({ "iss": "ringway-test", "aud": "web", "exp": now() + 600 })),
        ),
        (
            "no exp",
            rs256(&json!({ "iss": "ringway-test", "aud": "api" })),
        ),
        (
            "truncated",
            rs256(&good).rsplit_once('.').unwrap().0.to_string(),
        ),
        ("malformed base64", "!!!.@@@.###".to_string()),
        ("a token over the 8 KiB limit", "a".repeat(12 * 1024)),
    ];
    for (what, token) in cases {
        let r = call(&mut c, &token);
        assert_eq!(r.status, 401, "{what}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(
            r.text().contains("\"statusCode\": 401"),
            "{what}: {}",
            r.text()
        );
    }
    // A 1 MiB token never gets as far: the head is over the header size limit.
    let r = call(&mut c, &"a".repeat(1 << 20));
    assert_eq!(r.status, 431);
    let mut c = Client::connect(proxy.addr());
    let r = c.get("/x");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(origin.requests(), 1, "no bad token reached the backend");
}

/// The verified claims feed key templates: here a header and a rate limit per subject.
#[test]
fn claims_feed_key_templates() {
    let origin = Origin::start("o");
    let public = workspace_dir().join(PUBLIC);
    let proxy = Ringway::start(&format!(
        r#"
workers: 1
listeners: [{{ address: 127.0.0.1:0 }}]
backends: [{{ name: b, targets: [{{ url: {} }}] }}]
routes: [{{ name: all, backend: b }}]
policies:
  inbound:
    - validate-jwt:
        algorithms: [RS256]
        keys: [{{ pem_file: "{}" }}]
        required_claims: [{{ name: scope, values: [orders], match: any }}]
    - set-header: {{ name: X-User, value: "{{claim:sub}}" }}
    - rate-limit-by-key: {{ calls: 1, renewal_period: 60s, counter_key: "{{claim:sub}}" }}
"#,
        origin.url(),
        public.display()
    ));
    let mut c = Client::connect(proxy.addr());
    let token =
        |sub: &str, scope: &str| rs256(&json!({ "sub": sub, "scope": scope, "exp": now() + 600 }));
    assert_eq!(call(&mut c, &token("ann", "orders")).status, 200);
    assert_eq!(origin.last_request().unwrap().header("x-user"), Some("ann"));
    assert_eq!(
        call(&mut c, &token("ann", "orders")).status,
        429,
        "one call per subject"
    );
    assert_eq!(call(&mut c, &token("bob", "orders")).status, 200);
    let r = call(&mut c, &token("cid", "billing"));
    assert_eq!(r.status, 401, "the required claim value is missing");
}
