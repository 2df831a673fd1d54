//! `validate-jwt` on the per-request path: one token verified end to end (header, signature,
//! claims, issuer and audience), with keys parsed once at compile time as the proxy does.
//!
//! RS256 and ES256 are ring's signature checks plus our parsing; HS256 is mostly our parsing, so
//! it is the figure to watch for overhead of our own.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringway::policy::auth::jwt::{verify, JwtSpec, KeySet};

mod common;

const NOW: u64 = 1_700_000_000;
const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../proxy/src/policy/auth/testdata"
);

fn spec(alg: &str, keys: KeySet) -> JwtSpec {
    let mut spec = JwtSpec::new(vec![alg.parse().unwrap()], keys);
    spec.issuers = vec!["https://issuer.example".into()];
    spec.audiences = vec!["orders".into()];
    spec
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}/{name}")).unwrap()
}

fn jwt(c: &mut Criterion) {
    let cases = [
        (
            "jwt/verify_rs256",
            spec(
                "RS256",
                KeySet::from_pem_public_key(&fixture("rsa_public.pem")).unwrap(),
            ),
            fixture("bench_rs256.jwt"),
        ),
        (
            "jwt/verify_es256",
            spec(
                "ES256",
                KeySet::from_pem_public_key(&fixture("ec_public.pem")).unwrap(),
            ),
            fixture("bench_es256.jwt"),
        ),
        (
            "jwt/verify_hs256",
            // The secret the fixture was signed with (proxy's jwt tests).
            spec(
                "HS256",
                KeySet::from_hmac_secret(b"ringway-test-secret-of-thirty-two-bytes!"),
            ),
            fixture("bench_hs256.jwt"),
        ),
    ];
    for (name, spec, token) in cases {
        assert!(
            verify(&spec, &token, NOW).is_ok(),
            "{name}: the fixture verifies"
        );
        c.bench_function(name, |b| {
            b.iter(|| verify(black_box(&spec), black_box(&token), NOW).is_ok())
        });
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = jwt
}
criterion_main!(benches);
