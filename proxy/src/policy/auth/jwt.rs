//! `validate-jwt`: a compiled, pure verifier of JSON Web Tokens with Azure APIM's semantics
//! (allowed algorithms, signing keys inline or from a JWKS, issuers, audiences, `exp`/`nbf` with
//! clock skew, required claims).
//!
//! The invariant that matters: **a key's family decides which algorithms it verifies**, never the
//! token. An RSA public key never checks an HMAC token (the classic algorithm-confusion attack,
//! where the public key's bytes are used as the HMAC secret), and `alg: none` is never accepted.
//! Nothing but the header (`alg`, `kid`, `crit`) is read before the signature has been verified.
//!
//! It does no cryptography of its own: signatures are checked by `jsonwebtoken::crypto::verify`
//! (ring). It does no I/O either: fetching and refreshing a JWKS is [`super::jwks`]'s job, and
//! `JwtError::UnknownKid` is its cue to refresh once.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Tokens longer than this are refused before any parsing, unless a spec says otherwise.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// One `validate-jwt` policy, compiled from config by the integrator.
#[derive(Debug, Clone)]
pub struct JwtSpec {
    /// The algorithms a token may be signed with; each key further limits this to its family.
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySet,
    /// Accepted `iss` values; empty accepts any (and no) issuer.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty accepts any. A token's `aud` may be a string or an array.
    pub audiences: Vec<String>,
    pub require_exp: bool,
    pub require_nbf: bool,
    pub clock_skew: Duration,
    pub required_claims: Vec<RequiredClaim>,
    /// Longer tokens are refused (`TooLarge`) before any decoding.
    pub max_token_bytes: usize,
}

impl JwtSpec {
    /// A spec with APIM's defaults: `exp` required, `nbf` optional, no skew, any issuer and
    /// audience, no required claims, tokens up to 8 KiB.
    pub fn new(algorithms: Vec<Algorithm>, keys: KeySet) -> JwtSpec {
        JwtSpec {
            algorithms,
            keys,
            issuers: Vec::new(),
            audiences: Vec::new(),
            require_exp: true,
            require_nbf: false,
            clock_skew: Duration::ZERO,
            required_claims: Vec::new(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// A claim the token must carry: with `values` empty, present with any value; otherwise its value
/// (a string, a number or bool as written, or an array of those) must hold every listed value
/// (`match_all`) or at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredClaim {
    pub name: String,
    pub values: Vec<String>,
    pub match_all: bool,
}

/// Which algorithms a key can verify: fixed by the key material, never by a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family_of(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Family::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
        Algorithm::EdDSA => Family::Ed,
    }
}

#[derive(Clone)]
struct Key {
    key: DecodingKey,
    family: Family,
    /// Set when the key is bound to one algorithm (a JWK's `alg`, an EC key's curve).
    only: Option<Algorithm>,
}

impl Key {
    fn new(key: DecodingKey, family: Family, only: Option<Algorithm>) -> Key {
        Key { key, family, only }
    }

    fn accepts(&self, alg: Algorithm) -> bool {
        family_of(alg) == self.family && (self.only.is_none() || self.only == Some(alg))
    }
}

/// Signing keys: those with a `kid`, found by it, and those without, tried in order.
#[derive(Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Key>,
    without_kid: Vec<Key>,
    notes: Vec<String>,
}

impl KeySet {
    /// An RSA, EC (P-256/P-384) or Ed25519 public key in PEM (`BEGIN PUBLIC KEY`, or
    /// `BEGIN RSA PUBLIC KEY`), without a kid.
    pub fn from_pem_public_key(pem: &[u8]) -> Result<KeySet, String> {
        if contains(pem, b"PRIVATE KEY") {
            return Err("this PEM holds a private key; configure its public key \
                        (`openssl pkey -in key.pem -pubout`)"
                .into());
        }
        let key = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            Key::new(key, Family::Rsa, None)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            Key::new(key, Family::Ec, None)
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            Key::new(key, Family::Ed, None)
        } else {
            return Err("not a PEM public key of RSA, EC (P-256, P-384) or Ed25519".into());
        };
        Ok(KeySet::single(key))
    }

    /// An HMAC secret (HS256/384/512), without a kid.
    pub fn from_hmac_secret(secret: &[u8]) -> KeySet {
        KeySet::single(Key::new(
            DecodingKey::from_secret(secret),
            Family::Hmac,
            None,
        ))
    }

    /// An RFC 7517 key set: RSA, EC (P-256, P-384) and OKP (Ed25519) signing keys. Keys of other
    /// types, encryption keys and keys this cannot use are skipped, each with a note (`notes`).
    pub fn from_jwks_json(json: &[u8]) -> Result<KeySet, String> {
        let set: Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let Some(keys) = set.get("keys").and_then(Value::as_array) else {
            return Err("not a JWK set: no `keys` array".into());
        };
        let mut out = KeySet::default();
        for (i, jwk) in keys.iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str);
            match key_from_jwk(jwk) {
                Ok(key) => match kid {
                    Some(kid) if out.by_kid.contains_key(kid) => {
                        out.notes
                            .push(format!("keys[{i}]: kid {kid:?} repeated; first kept"));
                    }
                    Some(kid) => {
                        out.by_kid.insert(kid.to_owned(), key);
                    }
                    None => out.without_kid.push(key),
                },
                Err(why) => out.notes.push(format!("keys[{i}]: {why}; skipped")),
            }
        }
        Ok(out)
    }

    /// The same keys, all under `kid` (an inline key configured with an id). With several keys
    /// without kid only the first is kept: one kid names one key.
    pub fn with_kid(mut self, kid: &str) -> KeySet {
        if let Some(key) = self.without_kid.drain(..).next() {
            self.by_kid.insert(kid.to_owned(), key);
        }
        self
    }

    /// Adds `other`'s keys; where both have a kid, `other`'s key replaces this one's.
    pub fn merge(&mut self, other: KeySet) {
        self.by_kid.extend(other.by_kid);
        self.without_kid.extend(other.without_kid);
        self.notes.extend(other.notes);
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What was skipped while building the set, for the integrator to log.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    fn single(key: Key) -> KeySet {
        KeySet {
            without_kid: vec![key],
            ..KeySet::default()
        }
    }

    /// Checks `signature` over `message` with the key the token names (`kid`), else with the
    /// keys without kid, else with the set's only key.
    fn check(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        signature: &str,
        message: &[u8],
    ) -> Result<(), JwtError> {
        if let Some(kid) = kid {
            if let Some(key) = self.by_kid.get(kid) {
                if !key.accepts(alg) {
                    return Err(JwtError::AlgorithmNotAllowed);
                }
                return signature_ok(key, alg, signature, message);
            }
            // Keys configured without a kid may still have signed it; if none did, the kid is
            // what is unknown, and the integrator may refresh its JWKS.
            return match self.check_each(&self.without_kid, alg, signature, message) {
                Ok(()) => Ok(()),
                Err(JwtError::Malformed) => Err(JwtError::Malformed),
                Err(_) => Err(JwtError::UnknownKid(kid.to_owned())),
            };
        }
        if self.without_kid.is_empty() && self.by_kid.len() == 1 {
            let key = self.by_kid.values().next().expect("one key");
            if !key.accepts(alg) {
                return Err(JwtError::AlgorithmNotAllowed);
            }
            return signature_ok(key, alg, signature, message);
        }
        self.check_each(&self.without_kid, alg, signature, message)
    }

    fn check_each(
        &self,
        keys: &[Key],
        alg: Algorithm,
        signature: &str,
        message: &[u8],
    ) -> Result<(), JwtError> {
        let mut tried = false;
        for key in keys.iter().filter(|key| key.accepts(alg)) {
            tried = true;
            match signature_ok(key, alg, signature, message) {
                Err(JwtError::BadSignature) => continue,
                done => return done,
            }
        }
        if !tried && !keys.is_empty() {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        // No key at all to check with reads as a signature that cannot be verified.
        Err(JwtError::BadSignature)
    }
}

impl fmt::Debug for KeySet {
    // Names the keys, never their material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.by_kid.keys().collect();
        kids.sort();
        f.debug_struct("KeySet")
            .field("kids", &kids)
            .field("without_kid", &self.without_kid.len())
            .field("notes", &self.notes)
            .finish()
    }
}

fn signature_ok(
    key: &Key,
    alg: Algorithm,
    signature: &str,
    message: &[u8],
) -> Result<(), JwtError> {
    debug_assert!(key.accepts(alg), "the caller checks the key's family");
    match jsonwebtoken::crypto::verify(signature, message, &key.key, alg) {
        Ok(true) => Ok(()),
        Ok(false) => Err(JwtError::BadSignature),
        // Its only failure with a well-formed key is a signature that is not base64url.
        Err(_) => Err(JwtError::Malformed),
    }
}

fn key_from_jwk(jwk: &Value) -> Result<Key, String> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let need = |name: &str| text(name).ok_or_else(|| format!("no `{name}`"));
    if let Some(usage) = text("use") {
        if usage != "sig" {
            return Err(format!("a key for {usage:?}, not signatures"));
        }
    }
    let pinned = match text("alg") {
        None => None,
        Some(alg) => match alg.parse::<Algorithm>() {
            Ok(alg) => Some(alg),
            Err(_) => return Err(format!("alg {alg:?} is not a signing algorithm known here")),
        },
    };
    let bad = |e: jsonwebtoken::errors::Error| format!("bad key material: {e}");
    let key = match need("kty")? {
        "RSA" => Key::new(
            DecodingKey::from_rsa_components(need("n")?, need("e")?).map_err(bad)?,
            Family::Rsa,
            None,
        ),
        "EC" => {
            let (alg, len) = match need("crv")? {
                "P-256" => (Algorithm::ES256, 32),
                "P-384" => (Algorithm::ES384, 48),
                crv => return Err(format!("EC curve {crv:?} is not supported")),
            };
            let (x, y) = (need("x")?, need("y")?);
            for c in [x, y] {
                if !matches!(URL_SAFE_NO_PAD.decode(c), Ok(c) if c.len() == len) {
                    return Err(format!("EC coordinate is not {len} bytes of base64url"));
                }
            }
            let key = DecodingKey::from_ec_components(x, y).map_err(bad)?;
            Key::new(key, Family::Ec, Some(alg))
        }
        "OKP" => match need("crv")? {
            "Ed25519" => Key::new(
                DecodingKey::from_ed_components(need("x")?).map_err(bad)?,
                Family::Ed,
                Some(Algorithm::EdDSA),
            ),
            crv => return Err(format!("OKP curve {crv:?} is not supported")),
        },
        kty => return Err(format!("kty {kty:?} is not supported")),
    };
    match pinned {
        None => Ok(key),
        Some(alg) if key.accepts(alg) => Ok(Key {
            only: Some(alg),
            ..key
        }),
        Some(alg) => Err(format!("alg {alg:?} does not fit the key type")),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Why a token was refused. `description` is safe to put in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Missing,
    TooLarge,
    Malformed,
    UnknownKid(String),
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim(String),
    ClaimMismatch(String),
}

impl JwtError {
    /// For `WWW-Authenticate: Bearer error="invalid_token", error_description="..."`: plain
    /// ASCII with no quote or backslash, and nothing taken from the token.
    /// The `WWW-Authenticate` challenge for this failure (RFC 6750 3.1).
    pub fn www_authenticate(&self) -> &'static str {
        CHALLENGES[self.index()]
    }

    pub fn description(&self) -> &'static str {
        DESCRIPTIONS[self.index()]
    }

    fn index(&self) -> usize {
        match self {
            JwtError::Missing => 0,
            JwtError::TooLarge => 1,
            JwtError::Malformed => 2,
            JwtError::UnknownKid(_) => 3,
            JwtError::AlgorithmNotAllowed => 4,
            JwtError::BadSignature => 5,
            JwtError::Expired => 6,
            JwtError::NotYetValid => 7,
            JwtError::WrongIssuer => 8,
            JwtError::WrongAudience => 9,
            JwtError::MissingClaim(_) => 10,
            JwtError::ClaimMismatch(_) => 11,
        }
    }
}

/// Each failure's description, and the same as an RFC 6750 challenge, in `index` order.
macro_rules! failure_texts {
    ($($text:literal),* $(,)?) => {
        const DESCRIPTIONS: [&str; 12] = [$($text),*];
        const CHALLENGES: [&str; 12] = [$(
            concat!("Bearer error=\"invalid_token\", error_description=\"", $text, "\"")
        ),*];
    };
}

failure_texts!(
    "no bearer token was sent",
    "the token is too large",
    "the token is malformed",
    "no signing key matches the token kid",
    "the token signing algorithm is not accepted",
    "the token signature is invalid",
    "the token has expired",
    "the token is not yet valid",
    "the token issuer is not accepted",
    "the token audience is not accepted",
    "the token lacks a required claim",
    "a token claim has a value that is not accepted",
);

/// Tokens this core has verified, so that a client sending the same token again costs a
/// lookup and a comparison instead of a signature check. An entry is the whole token (compared
/// byte for byte: the hash only finds it) and its claims; the time checks (`exp`, `nbf`) run
/// again on every use. Bounded: at capacity an entry is dropped for each one added.
pub struct TokenCache {
    entries: ahash::AHashMap<u64, CachedToken>,
    capacity: usize,
}

struct CachedToken {
    /// Which policy verified it (its address: policies live as long as their snapshot).
    policy: usize,
    /// The version of the policy's keys it was verified with.
    generation: u64,
    token: Box<[u8]>,
    verified: std::rc::Rc<Verified>,
    exp: Option<u64>,
    nbf: Option<u64>,
}

/// Fixed seeds: the hash only finds an entry; the token is compared in full.
static TOKEN_HASHER: ahash::RandomState =
    ahash::RandomState::with_seeds(0x6a77_7463, 0x6163_6865, 0x746f_6b65, 0x6e73_0001);

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: ahash::AHashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn key(policy: usize, token: &[u8]) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = TOKEN_HASHER.build_hasher();
        h.write_usize(policy);
        h.write(token);
        h.finish()
    }

    /// Verifies `token` for the policy at `policy` with `keys` (version `generation` of the
    /// policy's keys), from the cache when this core has verified the same token for it before
    /// with the same version of its keys: a key removed since no longer admits a cached token.
    pub fn verify(
        &mut self,
        policy: usize,
        spec: &JwtSpec,
        keys: &KeySet,
        generation: u64,
        token: &[u8],
        now_unix_secs: u64,
    ) -> Result<std::rc::Rc<Verified>, JwtError> {
        let key = Self::key(policy, token);
        if let Some(hit) = self.entries.get(&key) {
            if hit.policy == policy && hit.generation == generation && *hit.token == *token {
                let skew = spec.clock_skew.as_secs();
                if hit
                    .exp
                    .is_some_and(|exp| exp <= now_unix_secs.saturating_sub(skew))
                {
                    return Err(JwtError::Expired);
                }
                if hit
                    .nbf
                    .is_some_and(|nbf| nbf > now_unix_secs.saturating_add(skew))
                {
                    return Err(JwtError::NotYetValid);
                }
                return Ok(std::rc::Rc::clone(&hit.verified));
            }
        }
        let verified = std::rc::Rc::new(verify_with(spec, keys, token, now_unix_secs)?);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if let Some(&victim) = self.entries.keys().next() {
                self.entries.remove(&victim);
            }
        }
        let time = |name: &str| verified.claims.get(name).and_then(Value::as_u64);
        self.entries.insert(
            key,
            CachedToken {
                policy,
                generation,
                token: token.into(),
                exp: time("exp"),
                nbf: time("nbf"),
                verified: std::rc::Rc::clone(&verified),
            },
        );
        Ok(verified)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::UnknownKid(kid) => write!(f, "{} ({kid:?})", self.description()),
            JwtError::MissingClaim(name) | JwtError::ClaimMismatch(name) => {
                write!(f, "{} ({name:?})", self.description())
            }
            _ => f.write_str(self.description()),
        }
    }
}

impl std::error::Error for JwtError {}

/// A token whose signature and claims passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub claims: Map<String, Value>,
}

impl Verified {
    /// Appends a string claim's text, or a number as written, to `out` (the `{claim:NAME}` key
    /// template); false, with nothing appended, for an absent claim or one of another type.
    pub fn claim_text(&self, name: &str, out: &mut Vec<u8>) -> bool {
        match self.claims.get(name) {
            Some(Value::String(text)) => out.extend_from_slice(text.as_bytes()),
            Some(Value::Number(n)) => write!(out, "{n}").expect("writing to a Vec"),
            _ => return false,
        }
        true
    }
}

/// The header fields read before the signature is checked; everything else waits.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Critical extensions (RFC 7515 4.1.11): this verifier understands none, so any is refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Verifies `token` against `spec` at `now_unix_secs`.
///
/// Per request. It allocates the decoded header and the claims map (the claims are handed to
/// the caller); signature checking is ring's.
pub fn verify(spec: &JwtSpec, token: &[u8], now_unix_secs: u64) -> Result<Verified, JwtError> {
    verify_with(spec, &spec.keys, token, now_unix_secs)
}

/// [`verify`] with `keys` in place of the spec's own (keys fetched from a JWKS URL).
pub fn verify_with(
    spec: &JwtSpec,
    keys: &KeySet,
    token: &[u8],
    now_unix_secs: u64,
) -> Result<Verified, JwtError> {
    if token.is_empty() {
        return Err(JwtError::Missing);
    }
    if token.len() > spec.max_token_bytes {
        return Err(JwtError::TooLarge);
    }
    let token = std::str::from_utf8(token).map_err(|_| JwtError::Malformed)?;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };

    let header = parse_header(header)?;
    let alg = header
        .alg
        .parse::<Algorithm>()
        .map_err(|_| JwtError::AlgorithmNotAllowed)?;
    if !spec.algorithms.contains(&alg) {
        return Err(JwtError::AlgorithmNotAllowed);
    }
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if header.crit.is_some() || signature.is_empty() || !signature.bytes().all(base64url) {
        return Err(JwtError::Malformed);
    }
    let signed = &token[..token.len() - signature.len() - 1];
    keys.check(header.kid.as_deref(), alg, signature, signed.as_bytes())?;

    // Signed: now the payload may be read.
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
    check_claims(spec, &claims, now_unix_secs)?;
    Ok(Verified { claims })
}

fn parse_header(encoded: &str) -> Result<Header, JwtError> {
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JwtError::Malformed)?;
    // serde would also take a JSON array for a struct; a JOSE header is an object.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(JwtError::Malformed);
    }
    serde_json::from_slice(&json).map_err(|_| JwtError::Malformed)
}

fn check_claims(spec: &JwtSpec, claims: &Map<String, Value>, now: u64) -> Result<(), JwtError> {
    let now = now as f64;
    let skew = spec.clock_skew.as_secs_f64();
    match claims.get("exp") {
        Some(exp) if numeric_date(exp)? <= now - skew => return Err(JwtError::Expired),
        None if spec.require_exp => return Err(JwtError::MissingClaim("exp".into())),
        _ => {}
    }
    match claims.get("nbf") {
        Some(nbf) if numeric_date(nbf)? > now + skew => return Err(JwtError::NotYetValid),
        None if spec.require_nbf => return Err(JwtError::MissingClaim("nbf".into())),
        _ => {}
    }
    if !spec.issuers.is_empty() {
        let iss = claims.get("iss").and_then(Value::as_str);
        if !iss.is_some_and(|iss| spec.issuers.iter().any(|ok| ok == iss)) {
            return Err(JwtError::WrongIssuer);
        }
    }
    if !spec.audiences.is_empty() {
        let accepted = |aud: &Value| {
            aud.as_str()
                .is_some_and(|aud| spec.audiences.iter().any(|ok| ok == aud))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(auds)) => auds.iter().any(accepted),
            Some(aud) => accepted(aud),
            None => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    for required in &spec.required_claims {
        let Some(value) = claims.get(&required.name) else {
            return Err(JwtError::MissingClaim(required.name.clone()));
        };
        let has = |want: &String| match value {
            Value::Array(items) => items.iter().any(|item| scalar_is(item, want)),
            value => scalar_is(value, want),
        };
        let ok = if required.values.is_empty() {
            true
        } else if required.match_all {
            required.values.iter().all(has)
        } else {
            required.values.iter().any(has)
        };
        if !ok {
            return Err(JwtError::ClaimMismatch(required.name.clone()));
        }
    }
    Ok(())
}

/// RFC 7519's NumericDate: a JSON number of seconds. Anything else is a malformed token.
fn numeric_date(value: &Value) -> Result<f64, JwtError> {
    value.as_f64().ok_or(JwtError::Malformed)
}

fn scalar_is(value: &Value, want: &str) -> bool {
    match value {
        Value::String(text) => text == want,
        // Rare: configs name numbers and booleans as text.
        Value::Number(n) => n.to_string() == want,
        Value::Bool(b) => (if *b { "true" } else { "false" }) == want,
        _ => false,
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive.
pub fn token_from_authorization(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() || token.iter().any(|&b| b == b' ' || b == b'\t') {
        return None;
    }
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header as JoseHeader};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const SECRET: &[u8] = b"ringway-test-secret-of-thirty-two-bytes!";
    const RSA_PRIVATE: &[u8] = include_bytes!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("testdata/rsa_public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("testdata/ec_private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("testdata/ec_public.pem");
    const ED_PRIVATE: &[u8] = include_bytes!("testdata/ed_private.pem");
    const ED_PUBLIC: &[u8] = include_bytes!("testdata/ed_public.pem");
    const JWKS: &[u8] = include_bytes!("testdata/jwks.json");

    fn rsa_signer() -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap()
    }

    fn ec_signer() -> EncodingKey {
        EncodingKey::from_ec_pem(EC_PRIVATE).unwrap()
    }

    fn ed_signer() -> EncodingKey {
        EncodingKey::from_ed_pem(ED_PRIVATE).unwrap()
    }

    fn hmac_signer() -> EncodingKey {
        EncodingKey::from_secret(SECRET)
    }

    fn token(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = JoseHeader::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, key).unwrap()
    }

    /// A token of any header and payload text, properly signed.
    fn raw_token(header: &[u8], payload: &[u8], alg: Algorithm, key: &EncodingKey) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
        format!("{message}.{signature}")
    }

    fn claims() -> Value {
        json!({ "sub": "alice", "iss": "https://issuer.example", "aud": "orders", "exp": NOW + 60 })
    }

    fn rsa_spec() -> JwtSpec {
        JwtSpec::new(
            vec![Algorithm::RS256],
            KeySet::from_pem_public_key(RSA_PUBLIC).unwrap(),
        )
    }

    fn hmac_spec() -> JwtSpec {
        JwtSpec::new(vec![Algorithm::HS256], KeySet::from_hmac_secret(SECRET))
    }

    fn jwks_spec() -> JwtSpec {
        JwtSpec::new(
            vec![
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::ES256,
                Algorithm::EdDSA,
                Algorithm::HS256,
            ],
            KeySet::from_jwks_json(JWKS).unwrap(),
        )
    }

    fn check(spec: &JwtSpec, token: &str) -> Result<Verified, JwtError> {
        verify(spec, token.as_bytes(), NOW)
    }

    #[test]
    fn the_token_cache_answers_repeats_and_still_checks_time() {
        let spec = hmac_spec();
        let mut cache = TokenCache::new(2);
        let cache_verify = |cache: &mut TokenCache, policy, token: &[u8], now| {
            cache.verify(policy, &spec, &spec.keys, 0, token, now)
        };
        let good = token(Algorithm::HS256, None, &claims(), &hmac_signer());
        let first = cache_verify(&mut cache, 1, good.as_bytes(), NOW).unwrap();
        let again = cache_verify(&mut cache, 1, good.as_bytes(), NOW).unwrap();
        assert!(
            std::rc::Rc::ptr_eq(&first, &again),
            "the second use is the cached one"
        );
        // Expiry is checked on every use, cached or not.
        assert_eq!(
            cache_verify(&mut cache, 1, good.as_bytes(), NOW + 60).unwrap_err(),
            JwtError::Expired
        );
        // Another policy verifies for itself; a changed token is not a hit.
        let other = cache_verify(&mut cache, 2, good.as_bytes(), NOW).unwrap();
        assert!(!std::rc::Rc::ptr_eq(&first, &other));
        let mut bad = good.clone();
        bad.push('x');
        assert!(cache_verify(&mut cache, 1, bad.as_bytes(), NOW).is_err());
        // Bounded.
        let third = token(
            Algorithm::HS256,
            None,
            &json!({ "sub": "carol", "exp": NOW + 60 }),
            &hmac_signer(),
        );
        cache_verify(&mut cache, 3, third.as_bytes(), NOW).unwrap();
        assert!(cache.len() <= 2);
    }

    #[test]
    fn the_token_cache_forgets_tokens_verified_with_older_keys() {
        let spec = rsa_spec();
        let signed = token(Algorithm::RS256, Some("k1"), &claims(), &rsa_signer());
        let with_k1 = KeySet::from_pem_public_key(RSA_PUBLIC)
            .unwrap()
            .with_kid("k1");
        let mut cache = TokenCache::new(8);
        let first = cache
            .verify(1, &spec, &with_k1, 1, signed.as_bytes(), NOW)
            .unwrap();
        let again = cache
            .verify(1, &spec, &with_k1, 1, signed.as_bytes(), NOW)
            .unwrap();
        assert!(std::rc::Rc::ptr_eq(&first, &again));
        // Version 2 no longer has k1: the cached verification does not count.
        let without = KeySet::from_pem_public_key(EC_PUBLIC)
            .unwrap()
            .with_kid("k2");
        assert_eq!(
            cache
                .verify(1, &spec, &without, 2, signed.as_bytes(), NOW)
                .unwrap_err(),
            JwtError::UnknownKid("k1".into())
        );
        // A later version that has it again verifies afresh.
        let back = cache
            .verify(1, &spec, &with_k1, 3, signed.as_bytes(), NOW)
            .unwrap();
        assert!(!std::rc::Rc::ptr_eq(&first, &back));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn verifies_rs256_es256_eddsa_and_hs256_with_pem_and_secret_keys() {
        let cases = [
            (Algorithm::RS256, RSA_PUBLIC, rsa_signer()),
            (Algorithm::PS256, RSA_PUBLIC, rsa_signer()),
            (Algorithm::ES256, EC_PUBLIC, ec_signer()),
            (Algorithm::EdDSA, ED_PUBLIC, ed_signer()),
        ];
        for (alg, public, signer) in cases {
            let spec = JwtSpec::new(vec![alg], KeySet::from_pem_public_key(public).unwrap());
            let verified = check(&spec, &token(alg, None, &claims(), &signer)).unwrap();
            assert_eq!(verified.claims["sub"], "alice", "{alg:?}");
        }
        let verified = check(
            &hmac_spec(),
            &token(Algorithm::HS256, None, &claims(), &hmac_signer()),
        );
        assert_eq!(verified.unwrap().claims["sub"], "alice");
    }

    #[test]
    fn verifies_jwks_keys_by_kid() {
        let spec = jwks_spec();
        for (alg, kid, signer) in [
            (Algorithm::RS256, "rsa-1", rsa_signer()),
            (Algorithm::ES256, "ec-1", ec_signer()),
            (Algorithm::EdDSA, "ed-1", ed_signer()),
        ] {
            let result = check(&spec, &token(alg, Some(kid), &claims(), &signer));
            assert!(result.is_ok(), "{kid}: {result:?}");
        }
    }

    #[test]
    fn jwks_skips_unusable_keys_with_a_note() {
        let keys = KeySet::from_jwks_json(JWKS).unwrap();
        assert_eq!(keys.len(), 3);
        assert!(keys.has_kid("rsa-1") && keys.has_kid("ec-1") && keys.has_kid("ed-1"));
        assert!(!keys.has_kid("enc-1") && !keys.has_kid("future-1"));
        let notes = keys.notes().join("\n");
        assert!(
            notes.contains("keys[3]") && notes.contains("\"enc\""),
            "{notes}"
        );
        assert!(
            notes.contains("keys[4]") && notes.contains("\"XYZ\""),
            "{notes}"
        );

        let short_ec = br#"{"keys":[{"kty":"EC","kid":"e","crv":"P-256","x":"AQ","y":"AQ"}]}"#;
        let keys = KeySet::from_jwks_json(short_ec).unwrap();
        assert!(keys.is_empty() && keys.notes().len() == 1);
        for not_a_set in [&b"[]"[..], b"{}", b"{\"keys\":{}}", b"not json"] {
            assert!(KeySet::from_jwks_json(not_a_set).is_err());
        }
    }

    #[test]
    fn pem_keys_refuse_private_keys_and_garbage() {
        let err = KeySet::from_pem_public_key(RSA_PRIVATE).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        assert!(KeySet::from_pem_public_key(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )
        .is_err());
        assert!(KeySet::from_pem_public_key(b"").is_err());
    }

    #[test]
    fn refuses_alg_none() {
        let payload = serde_json::to_vec(&claims()).unwrap();
        for alg in ["none", "None", "NONE"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            let unsigned = format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(&payload)
            );
            for spec in [rsa_spec(), hmac_spec(), jwks_spec()] {
                assert_eq!(
                    check(&spec, &unsigned).unwrap_err(),
                    JwtError::AlgorithmNotAllowed
                );
            }
        }
    }

    #[test]
    fn refuses_algorithms_not_listed() {
        let hs384 = token(Algorithm::HS384, None, &claims(), &hmac_signer());
        assert_eq!(
            check(&hmac_spec(), &hs384).unwrap_err(),
            JwtError::AlgorithmNotAllowed
        );
        let ps256 = token(Algorithm::PS256, None, &claims(), &rsa_signer());
        assert_eq!(
            check(&rsa_spec(), &ps256).unwrap_err(),
            JwtError::AlgorithmNotAllowed
        );
    }

    #[test]
    fn refuses_hmac_token_signed_with_the_rsa_public_key() {
        // The attacker's HMAC secret: the public key as configured (PEM text), its SPKI DER, and
        // the PKCS#1 DER that jsonwebtoken keeps inside an RSA DecodingKey (and would use as the
        // secret if asked to check HS256 with it).
        let body: String = std::str::from_utf8(RSA_PUBLIC)
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let spki = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(
            spki[24], 0x30,
            "a 2048-bit SPKI holds the PKCS#1 key from byte 24"
        );
        let secrets = [RSA_PUBLIC, &spki[..], &spki[24..]];

        // Both algorithms allowed: only the key's family stands in the way.
        let mut spec = rsa_spec();
        spec.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
        let mut by_kid = jwks_spec();
        by_kid.keys = KeySet::from_pem_public_key(RSA_PUBLIC)
            .unwrap()
            .with_kid("rsa");
        for secret in secrets {
            let forged = token(
                Algorithm::HS256,
                None,
                &claims(),
                &EncodingKey::from_secret(secret),
            );
            assert_eq!(
                check(&spec, &forged).unwrap_err(),
                JwtError::AlgorithmNotAllowed
            );
            assert_eq!(
                check(&by_kid, &forged).unwrap_err(),
                JwtError::AlgorithmNotAllowed
            );
            let forged = token(
                Algorithm::HS256,
                Some("rsa"),
                &claims(),
                &EncodingKey::from_secret(secret),
            );
            assert_eq!(
                check(&by_kid, &forged).unwrap_err(),
                JwtError::AlgorithmNotAllowed
            );
        }
        // The same through a JWKS key.
        let n_e = KeySet::from_jwks_json(JWKS).unwrap();
        assert!(n_e.has_kid("rsa-1"));
        let forged = token(
            Algorithm::HS256,
            Some("rsa-1"),
            &claims(),
            &EncodingKey::from_secret(&spki[24..]),
        );
        assert_eq!(
            check(&jwks_spec(), &forged).unwrap_err(),
            JwtError::AlgorithmNotAllowed
        );
    }

    #[test]
    fn a_jwk_alg_binds_its_key_to_that_algorithm() {
        // rsa-1 says "alg": "RS256"; a PS256 token by the same private key is refused.
        let ps256 = token(Algorithm::PS256, Some("rsa-1"), &claims(), &rsa_signer());
        assert_eq!(
            check(&jwks_spec(), &ps256).unwrap_err(),
            JwtError::AlgorithmNotAllowed
        );
    }

    #[test]
    fn unknown_kid_is_named() {
        let other = token(Algorithm::RS256, Some("rsa-2"), &claims(), &rsa_signer());
        assert_eq!(
            check(&jwks_spec(), &other).unwrap_err(),
            JwtError::UnknownKid("rsa-2".into())
        );
    }

    #[test]
    fn tokens_without_kid_use_keys_without_kid_or_the_only_key() {
        let plain = token(Algorithm::RS256, None, &claims(), &rsa_signer());
        assert!(check(&rsa_spec(), &plain).is_ok());

        let mut only = rsa_spec();
        only.keys = KeySet::from_pem_public_key(RSA_PUBLIC)
            .unwrap()
            .with_kid("k1");
        assert!(check(&only, &plain).is_ok());

        // Several keys, all with a kid: a token without one names none of them.
        only.keys.merge(
            KeySet::from_pem_public_key(EC_PUBLIC)
                .unwrap()
                .with_kid("k2"),
        );
        assert_eq!(check(&only, &plain).unwrap_err(), JwtError::BadSignature);

        // A kid the set lacks is still checked against the keys without kid.
        let mut mixed = rsa_spec();
        mixed.algorithms = jwks_spec().algorithms;
        mixed.keys.merge(KeySet::from_jwks_json(JWKS).unwrap());
        let named = token(
            Algorithm::RS256,
            Some("not-in-jwks"),
            &claims(),
            &rsa_signer(),
        );
        assert!(check(&mixed, &named).is_ok());
        // Signed by none of them: the unknown kid is reported, so that a JWKS can be refreshed.
        let by_ec = token(
            Algorithm::ES256,
            Some("not-in-jwks"),
            &claims(),
            &ec_signer(),
        );
        assert_eq!(
            check(&mixed, &by_ec).unwrap_err(),
            JwtError::UnknownKid("not-in-jwks".into())
        );
    }

    #[test]
    fn refuses_bad_signatures() {
        let good = token(Algorithm::RS256, None, &claims(), &rsa_signer());
        let (head, signature) = good.rsplit_once('.').unwrap();
        let (header, _) = head.split_once('.').unwrap();
        let mut admin = claims();
        admin["sub"] = json!("admin");
        let tampered = format!(
            "{header}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).unwrap())
        );
        assert_eq!(
            check(&rsa_spec(), &tampered).unwrap_err(),
            JwtError::BadSignature
        );

        let wrong_secret = token(
            Algorithm::HS256,
            None,
            &claims(),
            &EncodingKey::from_secret(b"guess"),
        );
        assert_eq!(
            check(&hmac_spec(), &wrong_secret).unwrap_err(),
            JwtError::BadSignature
        );

        // A signature of the right length and form, but not by the key.
        let mut spec = jwks_spec();
        spec.keys = KeySet::from_pem_public_key(ED_PUBLIC).unwrap();
        let by_ed = token(Algorithm::EdDSA, None, &claims(), &ed_signer());
        assert!(check(&spec, &by_ed).is_ok());
        let (head, _) = by_ed.rsplit_once('.').unwrap();
        let zeroed = format!("{head}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        assert_eq!(check(&spec, &zeroed).unwrap_err(), JwtError::BadSignature);
    }

    #[test]
    fn exp_and_nbf_honour_the_clock_skew() {
        let mut spec = hmac_spec();
        spec.clock_skew = Duration::from_secs(30);
        let at = |spec: &JwtSpec, exp: u64, nbf: u64| {
            let claims = json!({ "exp": exp, "nbf": nbf });
            check(
                spec,
                &token(Algorithm::HS256, None, &claims, &hmac_signer()),
            )
        };
        assert_eq!(at(&spec, NOW - 30, NOW).unwrap_err(), JwtError::Expired);
        assert!(at(&spec, NOW - 29, NOW).is_ok());
        assert_eq!(
            at(&spec, NOW + 60, NOW + 31).unwrap_err(),
            JwtError::NotYetValid
        );
        assert!(at(&spec, NOW + 60, NOW + 30).is_ok());

        spec.clock_skew = Duration::ZERO;
        assert_eq!(at(&spec, NOW, NOW).unwrap_err(), JwtError::Expired);
        assert_eq!(
            at(&spec, NOW + 60, NOW + 1).unwrap_err(),
            JwtError::NotYetValid
        );
    }

    #[test]
    fn exp_and_nbf_may_be_required() {
        let mut spec = hmac_spec();
        let no_exp = token(
            Algorithm::HS256,
            None,
            &json!({ "sub": "a" }),
            &hmac_signer(),
        );
        assert_eq!(
            check(&spec, &no_exp).unwrap_err(),
            JwtError::MissingClaim("exp".into())
        );
        spec.require_exp = false;
        assert!(check(&spec, &no_exp).is_ok());
        spec.require_nbf = true;
        assert_eq!(
            check(&spec, &no_exp).unwrap_err(),
            JwtError::MissingClaim("nbf".into())
        );

        let text_exp = token(
            Algorithm::HS256,
            None,
            &json!({ "exp": "tomorrow" }),
            &hmac_signer(),
        );
        assert_eq!(
            check(&hmac_spec(), &text_exp).unwrap_err(),
            JwtError::Malformed
        );
    }

    #[test]
    fn issuer_must_be_listed() {
        let mut spec = hmac_spec();
        spec.issuers = vec![
            "https://other.example".into(),
            "https://issuer.example".into(),
        ];
        assert!(check(
            &spec,
            &token(Algorithm::HS256, None, &claims(), &hmac_signer())
        )
        .is_ok());
        let mut wrong = claims();
        wrong["iss"] = json!("https://evil.example");
        let wrong = token(Algorithm::HS256, None, &wrong, &hmac_signer());
        assert_eq!(check(&spec, &wrong).unwrap_err(), JwtError::WrongIssuer);
        let none = token(
            Algorithm::HS256,
            None,
            &json!({ "exp": NOW + 1 }),
            &hmac_signer(),
        );
        assert_eq!(check(&spec, &none).unwrap_err(), JwtError::WrongIssuer);
    }

    #[test]
    fn audience_may_be_a_string_or_an_array() {
        let mut spec = hmac_spec();
        spec.audiences = vec!["orders".into()];
        for (aud, ok) in [
            (json!("orders"), true),
            (json!(["billing", "orders"]), true),
            (json!("billing"), false),
            (json!(["billing"]), false),
            (json!([]), false),
            (json!(7), false),
            (Value::Null, false),
        ] {
            let claims = json!({ "aud": aud, "exp": NOW + 60 });
            let result = check(
                &spec,
                &token(Algorithm::HS256, None, &claims, &hmac_signer()),
            );
            if ok {
                assert!(result.is_ok(), "{aud}");
            } else {
                assert_eq!(result.unwrap_err(), JwtError::WrongAudience, "{aud}");
            }
        }
    }

    #[test]
    fn required_claims_match_all_or_any() {
        let mut spec = hmac_spec();
        let claims =
            json!({ "exp": NOW + 60, "roles": ["reader", "writer"], "tier": "gold", "level": 3 });
        let signed = token(Algorithm::HS256, None, &claims, &hmac_signer());
        let require = |name: &str, values: &[&str], match_all: bool| RequiredClaim {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            match_all,
        };
        for (claim, ok) in [
            (require("tier", &[], false), Ok(())),
            (require("tier", &["silver", "gold"], false), Ok(())),
            (
                require("tier", &["silver", "gold"], true),
                Err(JwtError::ClaimMismatch("tier".into())),
            ),
            (require("roles", &["writer", "reader"], true), Ok(())),
            (
                require("roles", &["writer", "admin"], true),
                Err(JwtError::ClaimMismatch("roles".into())),
            ),
            (require("roles", &["writer", "admin"], false), Ok(())),
            (
                require("roles", &["admin"], false),
                Err(JwtError::ClaimMismatch("roles".into())),
            ),
            (require("level", &["3"], true), Ok(())),
            (
                require("scope", &[], false),
                Err(JwtError::MissingClaim("scope".into())),
            ),
        ] {
            let name = format!("{claim:?}");
            spec.required_claims = vec![claim];
            assert_eq!(check(&spec, &signed).map(|_| ()), ok, "{name}");
        }
    }

    #[test]
    fn refuses_malformed_tokens() {
        let good = token(Algorithm::HS256, None, &claims(), &hmac_signer());
        let (head, signature) = good.rsplit_once('.').unwrap();
        let spec = hmac_spec();
        for bad in [
            head.to_string(),                                         // two parts
            format!("{good}.x"),                                      // four parts
            format!("{head}."),                                       // empty signature
            format!("{head}.{signature}=="),                          // padded signature
            format!("{head}.{signature}!"),                           // not base64url
            format!("e30!.{}", &good[good.find('.').unwrap() + 1..]), // header not base64url
            "..".to_string(),
        ] {
            assert_eq!(
                check(&spec, &bad).unwrap_err(),
                JwtError::Malformed,
                "{bad}"
            );
        }
        assert_eq!(
            verify(&spec, b"\xff.\xfe.\xfd", NOW).unwrap_err(),
            JwtError::Malformed
        );

        let payload = serde_json::to_vec(&claims()).unwrap();
        for header in [
            &b"{\"alg\":\"HS256\""[..],
            b"[\"HS256\"]",
            b"{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
            b"{}",
        ] {
            let bad = raw_token(header, &payload, Algorithm::HS256, &hmac_signer());
            assert_eq!(check(&spec, &bad).unwrap_err(), JwtError::Malformed);
        }
        // Critical extensions are not understood, so refused.
        let crit = raw_token(
            br#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &payload,
            Algorithm::HS256,
            &hmac_signer(),
        );
        assert_eq!(check(&spec, &crit).unwrap_err(), JwtError::Malformed);
    }

    #[test]
    fn refuses_malformed_payloads_that_are_signed() {
        let header = br#"{"alg":"HS256","typ":"JWT"}"#;
        let spec = hmac_spec();
        for payload in [&b"{\"exp\": 1"[..], b"[1, 2]", b"\"text\"", b""] {
            let bad = raw_token(header, payload, Algorithm::HS256, &hmac_signer());
            assert_eq!(check(&spec, &bad).unwrap_err(), JwtError::Malformed);
        }
        // A payload that is not base64url, signed as it stands.
        let message = format!("{}.not*base64", URL_SAFE_NO_PAD.encode(header));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &hmac_signer(), Algorithm::HS256)
                .unwrap();
        assert_eq!(
            check(&spec, &format!("{message}.{signature}")).unwrap_err(),
            JwtError::Malformed
        );
    }

    #[test]
    fn refuses_large_tokens_before_decoding() {
        let spec = hmac_spec();
        let huge = vec![b'!'; 1 << 20];
        assert_eq!(verify(&spec, &huge, NOW).unwrap_err(), JwtError::TooLarge);
        assert_eq!(
            verify(&spec, &huge[..spec.max_token_bytes], NOW).unwrap_err(),
            JwtError::Malformed
        );
        assert_eq!(verify(&spec, b"", NOW).unwrap_err(), JwtError::Missing);

        let mut claims = claims();
        claims["pad"] = json!("x".repeat(9000));
        let big = token(Algorithm::HS256, None, &claims, &hmac_signer());
        assert_eq!(check(&spec, &big).unwrap_err(), JwtError::TooLarge);
        let mut roomy = hmac_spec();
        roomy.max_token_bytes = 16 * 1024;
        assert!(check(&roomy, &big).is_ok());
    }

    #[test]
    fn claim_text_writes_strings_and_numbers() {
        let verified = Verified {
            claims: json!({ "sub": "alice", "n": 42, "f": 1.5, "b": true, "o": {} })
                .as_object()
                .unwrap()
                .clone(),
        };
        let mut out = b"k:".to_vec();
        assert!(verified.claim_text("sub", &mut out));
        assert!(verified.claim_text("n", &mut out));
        assert!(verified.claim_text("f", &mut out));
        assert_eq!(out, b"k:alice421.5");
        for name in ["b", "o", "missing"] {
            assert!(!verified.claim_text(name, &mut out));
        }
        assert_eq!(out, b"k:alice421.5");
    }

    #[test]
    fn token_from_authorization_takes_bearer_tokens() {
        assert_eq!(
            token_from_authorization(b"Bearer abc.def.ghi"),
            Some(&b"abc.def.ghi"[..])
        );
        assert_eq!(
            token_from_authorization(b"bEARER   abc "),
            Some(&b"abc"[..])
        );
        for none in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearerabc",
            b"Bearer a b",
            b"",
            b"Bear",
        ] {
            assert_eq!(
                token_from_authorization(none),
                None,
                "{:?}",
                String::from_utf8_lossy(none)
            );
        }
    }

    #[test]
    fn merge_keeps_both_sets_and_prefers_the_newer_kid() {
        let mut keys = KeySet::from_jwks_json(JWKS).unwrap();
        keys.merge(KeySet::from_hmac_secret(SECRET).with_kid("rsa-1"));
        assert_eq!(keys.len(), 3);
        let mut spec = jwks_spec();
        spec.keys = keys;
        let hs = token(Algorithm::HS256, Some("rsa-1"), &claims(), &hmac_signer());
        assert!(check(&spec, &hs).is_ok());
        let rs = token(Algorithm::RS256, Some("rsa-1"), &claims(), &rsa_signer());
        assert_eq!(
            check(&spec, &rs).unwrap_err(),
            JwtError::AlgorithmNotAllowed
        );
        assert!(!format!("{:?}", spec.keys).contains("AQAB"));
    }

    #[test]
    fn descriptions_fit_a_quoted_header_parameter() {
        let all = [
            JwtError::Missing,
            JwtError::TooLarge,
            JwtError::Malformed,
            JwtError::UnknownKid("k\"".into()),
            JwtError::AlgorithmNotAllowed,
            JwtError::BadSignature,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::WrongIssuer,
            JwtError::WrongAudience,
            JwtError::MissingClaim("c".into()),
            JwtError::ClaimMismatch("c".into()),
        ];
        for error in all {
            let text = error.description();
            assert!(
                !text.is_empty()
                    && text
                        .bytes()
                        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
            );
        }
    }

    #[test]
    fn bench_fixture_tokens_verify() {
        // bench/benches/jwt.rs verifies these with the same keys and secret.
        let fixtures = [
            (
                Algorithm::RS256,
                KeySet::from_pem_public_key(RSA_PUBLIC).unwrap(),
                &include_bytes!("testdata/bench_rs256.jwt")[..],
            ),
            (
                Algorithm::ES256,
                KeySet::from_pem_public_key(EC_PUBLIC).unwrap(),
                include_bytes!("testdata/bench_es256.jwt"),
            ),
            (
                Algorithm::HS256,
                KeySet::from_hmac_secret(SECRET),
                include_bytes!("testdata/bench_hs256.jwt"),
            ),
        ];
        for (alg, keys, token) in fixtures {
            let mut spec = JwtSpec::new(vec![alg], keys);
            spec.issuers = vec!["https://issuer.example".into()];
            spec.audiences = vec!["orders".into()];
            let verified = verify(&spec, token, NOW).unwrap();
            assert_eq!(verified.claims["sub"], "bench-user", "{alg:?}");
        }
    }
}
