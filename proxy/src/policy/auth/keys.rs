//! Subscription keys, as API Management checks them: subscriptions and products as plain data,
//! compiled once per configuration into a read-only [`KeyTable`] that every core reads without
//! a lock (share it behind an `Arc`, or clone it per core).
//!
//! The invariant that matters: the table never holds a secret. A subscription is stored with
//! the SHA-256 of its keys ([`KeyHash`], written `sha256:<hex>` in configuration), and a
//! request's key is hashed the moment it is checked; the hash is the lookup key. The presented
//! key lives only in the request's own buffer, and nothing here logs, copies or keeps it.
//! [`KeyHash`]'s `Debug` prints only its first 8 hex digits, so a `{:?}` of a subscription
//! cannot leak a whole hash either.
//!
//! What this module deliberately does not do: read configuration files, write the HTTP
//! answer, or count requests per subscription. It says who may pass ([`Access`]) and, when not,
//! why ([`Denial`], with the status and JSON body APIM would send).

use std::fmt;
use std::str::FromStr;

use ahash::AHashMap;
use ring::digest;
use subtle::ConstantTimeEq;

/// Which APIs a subscription's keys open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every API of the named product.
    Product(String),
    /// One API, by name.
    Api(String),
    /// Every API of the gateway.
    AllApis,
}

/// A subscription's lifecycle state. Only an active subscription's keys grant access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    Suspended,
    Cancelled,
}

/// One subscription: an id (for logs, metrics and per-subscription limits), its scope and
/// state, and the hashes of its primary and optional secondary key. Either key opens the same
/// scope; a second key lets a client rotate without downtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub scope: Scope,
    pub state: State,
    pub primary: KeyHash,
    pub secondary: Option<KeyHash>,
}

/// A product: a bundle of APIs, and whether calling them needs a subscription key. A product
/// that does not require one ("open") lets requests without a key through to its APIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductSpec {
    pub name: String,
    pub apis: Vec<String>,
    pub subscription_required: bool,
}

/// The SHA-256 of a subscription key. `Display` and `FromStr` use the configuration's form,
/// `sha256:` and 64 hex digits; `Debug` redacts all but the first 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

const HASH_PREFIX: &str = "sha256:";

impl KeyHash {
    /// The hash of a key given as bytes, as it arrives in a request.
    pub fn of(key: &[u8]) -> KeyHash {
        let digest = digest::digest(&digest::SHA256, key);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        KeyHash(out)
    }

    /// Compares in constant time, so the time taken says nothing about where two hashes
    /// differ.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0[..].ct_eq(&other.0[..]).into()
    }
}

/// The hash of `key`, as a subscription stores it.
pub fn hash_key(key: &str) -> KeyHash {
    KeyHash::of(key.as_bytes())
}

/// A fresh subscription key: 32 bytes from the operating system's random source, written as 64
/// lowercase hex digits. Hex rather than base64 because it needs no escaping in a header or a
/// query string, so the bytes a client sends are the bytes that were hashed.
///
/// # Panics
/// If the operating system cannot supply random bytes; no key is better than a weak one.
pub fn new_key() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    let mut key = String::with_capacity(64);
    push_hex(&mut key, &bytes);
    key
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(HASH_PREFIX.len() + 64);
        text.push_str(HASH_PREFIX);
        push_hex(&mut text, &self.0);
        f.write_str(&text)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(HASH_PREFIX.len() + 9);
        text.push_str(HASH_PREFIX);
        push_hex(&mut text, &self.0[..4]);
        text.push('…');
        f.write_str(&text)
    }
}

impl FromStr for KeyHash {
    type Err = String;

    fn from_str(text: &str) -> Result<KeyHash, String> {
        let hex = text.strip_prefix(HASH_PREFIX).ok_or_else(|| {
            "a key hash is written sha256:<64 hex digits>; to hash a key, run `ringway key hash KEY`"
                .to_string()
        })?;
        if hex.len() != 64 {
            return Err(format!(
                "a sha256 key hash has 64 hex digits, this one has {}",
                hex.len()
            ));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
                return Err(format!(
                    "a sha256 key hash has only hex digits (0-9, a-f); found {:?}",
                    String::from_utf8_lossy(pair)
                ));
            };
            *byte = hi << 4 | lo;
        }
        Ok(KeyHash(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl<'de> serde::Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<KeyHash, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a request's key is: the header when it is present and not empty (after trimming
/// spaces and tabs), else the first `query_name=` parameter of `query` (the raw query string,
/// with or without its leading `?`). An empty header counts as absent, because a client or
/// proxy that sends `Ocp-Apim-Subscription-Key:` with nothing after it has sent no key; an
/// empty query value is no key either.
///
/// The query value is used as sent, not percent-decoded: keys from [`new_key`] are hex, which
/// no encoder escapes, and decoding would need a copy of the secret.
pub fn key_from_request<'a>(
    header: Option<&'a [u8]>,
    query: &'a [u8],
    query_name: &[u8],
) -> Option<&'a [u8]> {
    if let Some(value) = header.map(trim_ows).filter(|v| !v.is_empty()) {
        return Some(value);
    }
    let query = query.strip_prefix(b"?").unwrap_or(query);
    query
        .split(|&b| b == b'&')
        .find_map(|pair| {
            let rest = pair.strip_prefix(query_name)?;
            rest.strip_prefix(b"=")
        })
        .filter(|v| !v.is_empty())
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The verdict on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A valid key of an active subscription whose scope covers the API. `subscription` indexes
    /// [`KeyTable::subscription`]; `product` is the subscription's product when it is
    /// product-scoped (else `None`).
    Granted {
        subscription: usize,
        product: Option<usize>,
    },
    /// No key, and the API belongs to a product that does not require one; `product` is the
    /// first such product in configuration order.
    Open {
        product: usize,
    },
    Denied(Denial),
}

/// Why a request was refused. `Suspended` and `Cancelled` give the same answer, as APIM's do,
/// but stay distinct for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No key in the header or the query, and no open product holds the API.
    Missing,
    /// A key no subscription has.
    Invalid,
    /// A key of a suspended subscription.
    Suspended,
    /// A key of a cancelled subscription.
    Cancelled,
    /// A key of a subscription whose scope does not cover the API; answered as `Invalid`.
    WrongScope,
}

const MISSING_BODY: &str = r#"{ "statusCode": 401, "message": "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API." }"#;
const INVALID_BODY: &str = r#"{ "statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription." }"#;
const INACTIVE_BODY: &str =
    r#"{ "statusCode": 403, "message": "Access denied due to an inactive subscription." }"#;
const MISSING_MESSAGE: &str = "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.";
const INVALID_MESSAGE: &str = "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.";
const INACTIVE_MESSAGE: &str = "Access denied due to an inactive subscription.";

impl Denial {
    /// The HTTP status APIM answers with.
    pub fn status(&self) -> u16 {
        match self {
            Denial::Missing | Denial::Invalid | Denial::WrongScope => 401,
            Denial::Suspended | Denial::Cancelled => 403,
        }
    }

    /// The JSON body APIM answers with (`Content-Type: application/json`).
    pub fn body(&self) -> &'static str {
        match self {
            Denial::Missing => MISSING_BODY,
            Denial::Invalid | Denial::WrongScope => INVALID_BODY,
            Denial::Suspended | Denial::Cancelled => INACTIVE_BODY,
        }
    }

    /// The message of [`Denial::body`], alone: what a JSON writer puts in `"message"`.
    pub fn message(&self) -> &'static str {
        match self {
            Denial::Missing => MISSING_MESSAGE,
            Denial::Invalid | Denial::WrongScope => INVALID_MESSAGE,
            Denial::Suspended | Denial::Cancelled => INACTIVE_MESSAGE,
        }
    }

    /// A short name for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Denial::Missing => "missing",
            Denial::Invalid => "invalid",
            Denial::Suspended => "suspended",
            Denial::Cancelled => "cancelled",
            Denial::WrongScope => "wrong_scope",
        }
    }
}

/// A subscription's scope with the product resolved to its index.
#[derive(Clone, Copy, Debug)]
enum Resolved {
    Product(u32),
    Api,
    AllApis,
}

/// Which stored key a lookup hit.
#[derive(Clone, Copy, Debug)]
struct Slot {
    subscription: u32,
    secondary: bool,
}

/// What the table knows about one API name: the products holding it, and the first of those
/// that is open.
#[derive(Clone, Debug, Default)]
struct ApiProducts {
    products: Vec<u32>,
    open: Option<u32>,
}

/// Subscriptions and products compiled for lookup: read-only after [`KeyTable::build`], so
/// cores share it without a lock.
#[derive(Clone)]
pub struct KeyTable {
    subscriptions: Box<[Subscription]>,
    scopes: Box<[Resolved]>,
    products: Box<[ProductSpec]>,
    by_hash: AHashMap<[u8; 32], Slot>,
    apis: AHashMap<Box<str>, ApiProducts>,
}

impl fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyTable")
            .field("subscriptions", &self.subscriptions)
            .field("products", &self.products)
            .finish_non_exhaustive()
    }
}

impl KeyTable {
    /// Every subscription's id.
    pub fn subscription_ids(&self) -> impl Iterator<Item = &str> {
        self.subscriptions.iter().map(|s| s.id.as_str())
    }

    /// Compiles subscriptions and products. Refuses duplicate subscription ids, duplicate
    /// product names, a subscription scoped to a product that does not exist, and a key hash
    /// used twice (across subscriptions, or as both keys of one): a hash must name one
    /// subscription, or a key could open the wrong scope.
    pub fn build(subs: Vec<Subscription>, products: &[ProductSpec]) -> Result<KeyTable, String> {
        let mut product_index: AHashMap<&str, u32> = AHashMap::new();
        let mut apis: AHashMap<Box<str>, ApiProducts> = AHashMap::new();
        for (i, product) in products.iter().enumerate() {
            let index = u32::try_from(i).map_err(|_| "too many products".to_string())?;
            if product_index.insert(&product.name, index).is_some() {
                return Err(format!(
                    "products[{i}]: a second product named {:?}; product names must be unique",
                    product.name
                ));
            }
            for api in &product.apis {
                let entry = apis.entry(api.as_str().into()).or_default();
                if !entry.products.contains(&index) {
                    entry.products.push(index);
                }
                if !product.subscription_required && entry.open.is_none() {
                    entry.open = Some(index);
                }
            }
        }

        let mut ids: AHashMap<&str, usize> = AHashMap::new();
        let mut by_hash: AHashMap<[u8; 32], Slot> = AHashMap::new();
        let mut scopes = Vec::with_capacity(subs.len());
        for (i, sub) in subs.iter().enumerate() {
            let index = u32::try_from(i).map_err(|_| "too many subscriptions".to_string())?;
            if let Some(first) = ids.insert(&sub.id, i) {
                return Err(format!(
                    "subscriptions[{i}]: id {:?} is already used by subscriptions[{first}]; \
                     subscription ids must be unique",
                    sub.id
                ));
            }
            scopes.push(match &sub.scope {
                Scope::Product(name) => match product_index.get(name.as_str()) {
                    Some(&p) => Resolved::Product(p),
                    None => {
                        let mut known: Vec<&str> = products.iter().map(|p| &*p.name).collect();
                        known.sort_unstable();
                        return Err(format!(
                            "subscriptions[{i}] ({:?}): no product named {name:?} (known: {})",
                            sub.id,
                            known.join(", ")
                        ));
                    }
                },
                Scope::Api(_) => Resolved::Api,
                Scope::AllApis => Resolved::AllApis,
            });
            let keys = [(sub.primary, false)]
                .into_iter()
                .chain(sub.secondary.map(|h| (h, true)));
            for (hash, secondary) in keys {
                let slot = Slot {
                    subscription: index,
                    secondary,
                };
                if let Some(other) = by_hash.insert(hash.0, slot) {
                    let owner = &subs[other.subscription as usize];
                    return Err(format!(
                        "subscriptions[{i}] ({:?}): its {} key is the same as the {} key of \
                         subscriptions[{}] ({:?}); every key must be unique (make a new one \
                         with `ringway key new`)",
                        sub.id,
                        if secondary { "secondary" } else { "primary" },
                        if other.secondary {
                            "secondary"
                        } else {
                            "primary"
                        },
                        other.subscription,
                        owner.id,
                    ));
                }
            }
        }

        Ok(KeyTable {
            subscriptions: subs.into_boxed_slice(),
            scopes: scopes.into_boxed_slice(),
            products: products.to_vec().into_boxed_slice(),
            by_hash,
            apis,
        })
    }

    /// This table with `extra` subscriptions added (those issued at run time, through the
    /// developer portal). One whose id or key is already taken, or whose product does not
    /// exist, is left out and logged: the document's subscriptions come first.
    pub fn with_runtime(&self, extra: &[Subscription]) -> KeyTable {
        let mut subs: Vec<Subscription> = self.subscriptions.to_vec();
        let mut ids: ahash::AHashSet<String> = subs.iter().map(|s| s.id.clone()).collect();
        let mut hashes: ahash::AHashSet<[u8; 32]> = subs
            .iter()
            .flat_map(|s| std::iter::once(s.primary.0).chain(s.secondary.map(|h| h.0)))
            .collect();
        for sub in extra {
            let product_ok = match &sub.scope {
                Scope::Product(p) => self.products.iter().any(|q| &q.name == p),
                _ => true,
            };
            let keys = std::iter::once(sub.primary.0).chain(sub.secondary.map(|h| h.0));
            let clash = keys.clone().any(|k| hashes.contains(&k))
                || sub.secondary.is_some_and(|s| s == sub.primary);
            if !product_ok || clash || ids.contains(&sub.id) {
                log::warn!(
                    "subscription {:?} is not in force: {}",
                    sub.id,
                    if !product_ok {
                        "its product is not in the configuration"
                    } else if clash {
                        "one of its keys is another subscription's"
                    } else {
                        "the configuration has a subscription with its id"
                    }
                );
                continue;
            }
            ids.insert(sub.id.clone());
            hashes.extend(keys);
            subs.push(sub.clone());
        }
        KeyTable::build(subs, &self.products).unwrap_or_else(|e| {
            log::error!("run-time subscriptions left out: {e}");
            self.clone()
        })
    }

    /// The subscription an [`Access::Granted`] names.
    pub fn subscription(&self, index: usize) -> &Subscription {
        &self.subscriptions[index]
    }

    /// The product an [`Access`] names.
    pub fn product(&self, index: usize) -> &ProductSpec {
        &self.products[index]
    }

    /// Decides one request to `api`, given the key it presented (see [`key_from_request`]).
    ///
    /// Hot path: one SHA-256 of the key, two hash-map lookups, no allocation. A present key is
    /// always checked, even on an API an open product holds: a wrong key is refused rather
    /// than silently downgraded to anonymous access. Scope is checked before state, so a key
    /// for another API is "invalid" whatever its subscription's state.
    pub fn check(&self, presented: Option<&[u8]>, api: &str) -> Access {
        let api_products = self.apis.get(api);
        let Some(key) = presented else {
            return match api_products.and_then(|a| a.open) {
                Some(product) => Access::Open {
                    product: product as usize,
                },
                None => Access::Denied(Denial::Missing),
            };
        };
        let hash = KeyHash::of(key);
        let Some(slot) = self.by_hash.get(&hash.0) else {
            return Access::Denied(Denial::Invalid);
        };
        let index = slot.subscription as usize;
        let sub = &self.subscriptions[index];
        // The map found the entry by this very hash, so the comparison is belt and braces: it
        // keeps the final yes/no independent of how the map compares its keys.
        let stored = if slot.secondary {
            sub.secondary.as_ref()
        } else {
            Some(&sub.primary)
        };
        if !stored.is_some_and(|stored| stored.matches(&hash)) {
            return Access::Denied(Denial::Invalid);
        }
        let product = match (self.scopes[index], &sub.scope) {
            (Resolved::AllApis, _) => None,
            (Resolved::Api, Scope::Api(name)) if name == api => None,
            (Resolved::Product(p), _) if api_products.is_some_and(|a| a.products.contains(&p)) => {
                Some(p as usize)
            }
            _ => return Access::Denied(Denial::WrongScope),
        };
        match sub.state {
            State::Active => Access::Granted {
                subscription: index,
                product,
            },
            State::Suspended => Access::Denied(Denial::Suspended),
            State::Cancelled => Access::Denied(Denial::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str =
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn sub(
        id: &str,
        scope: Scope,
        state: State,
        primary: &str,
        secondary: Option<&str>,
    ) -> Subscription {
        Subscription {
            id: id.to_string(),
            scope,
            state,
            primary: hash_key(primary),
            secondary: secondary.map(hash_key),
        }
    }

    fn product(name: &str, apis: &[&str], required: bool) -> ProductSpec {
        ProductSpec {
            name: name.to_string(),
            apis: apis.iter().map(|a| a.to_string()).collect(),
            subscription_required: required,
        }
    }

    /// Products `starter` (orders, billing; key required) and `public` (weather; open), and
    /// one subscription of each kind.
    fn table() -> KeyTable {
        KeyTable::build(
            vec![
                sub(
                    "alice",
                    Scope::Product("starter".into()),
                    State::Active,
                    "alice-1",
                    Some("alice-2"),
                ),
                sub(
                    "bob",
                    Scope::Api("orders".into()),
                    State::Active,
                    "bob-1",
                    None,
                ),
                sub("ops", Scope::AllApis, State::Active, "ops-1", None),
                sub("carol", Scope::AllApis, State::Suspended, "carol-1", None),
                sub("dave", Scope::AllApis, State::Cancelled, "dave-1", None),
            ],
            &[
                product("starter", &["orders", "billing"], true),
                product("public", &["weather"], false),
            ],
        )
        .expect("a valid table")
    }

    #[test]
    fn hashes_known_vectors() {
        assert_eq!(hash_key("abc").to_string(), ABC_SHA256);
        assert_eq!(
            hash_key("").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(KeyHash::of(b"abc"), hash_key("abc"));
    }

    #[test]
    fn hash_text_round_trips() {
        let parsed: KeyHash = ABC_SHA256.parse().expect("a valid hash");
        assert_eq!(parsed, hash_key("abc"));
        assert_eq!(parsed.to_string(), ABC_SHA256);
        let upper = ABC_SHA256.to_uppercase().replace("SHA256:", "sha256:");
        assert_eq!(upper.parse::<KeyHash>(), Ok(parsed));
    }

    #[test]
    fn malformed_hashes_are_refused() {
        let hex = &ABC_SHA256["sha256:".len()..];
        for bad in [
            hex.to_string(),                    // no prefix
            format!("sha1:{hex}"),              // another algorithm
            format!("SHA256:{hex}"),            // prefix is lowercase
            format!("sha256:{}", &hex[..62]),   // short
            format!("sha256:{hex}00"),          // long
            format!("sha256:{}zz", &hex[..62]), // not hex
            format!("sha256: {}", &hex[..63]),  // space
            "sha256:".to_string(),
            String::new(),
        ] {
            assert!(bad.parse::<KeyHash>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn new_keys_are_64_hex_digits_and_differ() {
        let (a, b) = (new_key(), new_key());
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn primary_and_secondary_keys_both_grant() {
        let t = table();
        let granted = Access::Granted {
            subscription: 0,
            product: Some(0),
        };
        assert_eq!(t.check(Some(b"alice-1"), "orders"), granted);
        assert_eq!(t.check(Some(b"alice-2"), "orders"), granted);
        assert_eq!(t.subscription(0).id, "alice");
        assert_eq!(t.product(0).name, "starter");
    }

    #[test]
    fn header_beats_query() {
        let key = key_from_request(
            Some(b"from-header"),
            b"subscription-key=from-query",
            b"subscription-key",
        );
        assert_eq!(key, Some(&b"from-header"[..]));
    }

    #[test]
    fn query_is_used_when_header_is_absent_or_empty() {
        let name = b"subscription-key";
        let query = b"?a=1&subscription-key=k1&subscription-key=k2";
        assert_eq!(key_from_request(None, query, name), Some(&b"k1"[..]));
        assert_eq!(key_from_request(Some(b""), query, name), Some(&b"k1"[..]));
        assert_eq!(
            key_from_request(Some(b" \t"), query, name),
            Some(&b"k1"[..])
        );
        assert_eq!(
            key_from_request(Some(b" k0 "), query, name),
            Some(&b"k0"[..])
        );
        // Configured names, and near misses that are not the parameter.
        assert_eq!(key_from_request(None, b"key=x", b"key"), Some(&b"x"[..]));
        assert_eq!(key_from_request(None, b"my-subscription-key=x", name), None);
        assert_eq!(key_from_request(None, b"subscription-keys=x", name), None);
        assert_eq!(key_from_request(None, b"subscription-key", name), None);
        assert_eq!(key_from_request(None, b"subscription-key=", name), None);
        assert_eq!(key_from_request(None, b"", name), None);
    }

    #[test]
    fn suspended_and_cancelled_are_403_inactive() {
        let t = table();
        assert_eq!(
            t.check(Some(b"carol-1"), "orders"),
            Access::Denied(Denial::Suspended)
        );
        assert_eq!(
            t.check(Some(b"dave-1"), "orders"),
            Access::Denied(Denial::Cancelled)
        );
        for denial in [Denial::Suspended, Denial::Cancelled] {
            assert_eq!(denial.status(), 403);
            assert_eq!(denial.body(), INACTIVE_BODY);
        }
        assert_ne!(Denial::Suspended.as_str(), Denial::Cancelled.as_str());
    }

    #[test]
    fn messages_are_the_bodies_messages() {
        for d in [
            Denial::Missing,
            Denial::Invalid,
            Denial::Suspended,
            Denial::Cancelled,
            Denial::WrongScope,
        ] {
            let body = format!(
                r#"{{ "statusCode": {}, "message": "{}" }}"#,
                d.status(),
                d.message()
            );
            assert_eq!(body, d.body());
        }
    }

    #[test]
    fn unknown_key_is_401_invalid() {
        let t = table();
        let access = t.check(Some(b"nobody"), "orders");
        assert_eq!(access, Access::Denied(Denial::Invalid));
        assert_eq!(Denial::Invalid.status(), 401);
        assert_eq!(
            Denial::Invalid.body(),
            r#"{ "statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription." }"#
        );
    }

    #[test]
    fn missing_key_is_401_unless_a_product_is_open() {
        let t = table();
        assert_eq!(t.check(None, "orders"), Access::Denied(Denial::Missing));
        assert_eq!(
            t.check(None, "not-in-any-product"),
            Access::Denied(Denial::Missing)
        );
        assert_eq!(Denial::Missing.status(), 401);
        assert_eq!(
            Denial::Missing.body(),
            r#"{ "statusCode": 401, "message": "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API." }"#
        );
        assert_eq!(t.check(None, "weather"), Access::Open { product: 1 });
        // A key presented to an open API is still checked.
        assert_eq!(
            t.check(Some(b"nobody"), "weather"),
            Access::Denied(Denial::Invalid)
        );
    }

    #[test]
    fn product_scope_covers_only_the_products_apis() {
        let t = table();
        assert!(matches!(
            t.check(Some(b"alice-1"), "billing"),
            Access::Granted {
                subscription: 0,
                ..
            }
        ));
        for api in ["weather", "unknown"] {
            assert_eq!(
                t.check(Some(b"alice-1"), api),
                Access::Denied(Denial::WrongScope)
            );
        }
        assert_eq!(Denial::WrongScope.status(), 401);
        assert_eq!(Denial::WrongScope.body(), Denial::Invalid.body());
    }

    #[test]
    fn api_scope_covers_only_its_api() {
        let t = table();
        assert_eq!(
            t.check(Some(b"bob-1"), "orders"),
            Access::Granted {
                subscription: 1,
                product: None
            }
        );
        assert_eq!(
            t.check(Some(b"bob-1"), "billing"),
            Access::Denied(Denial::WrongScope)
        );
    }

    #[test]
    fn all_apis_scope_covers_every_api() {
        let t = table();
        for api in ["orders", "billing", "weather", "in-no-product"] {
            assert_eq!(
                t.check(Some(b"ops-1"), api),
                Access::Granted {
                    subscription: 2,
                    product: None
                },
                "{api}"
            );
        }
    }

    #[test]
    fn duplicate_key_hashes_are_refused() {
        let across = KeyTable::build(
            vec![
                sub("a", Scope::AllApis, State::Active, "k", None),
                sub("b", Scope::AllApis, State::Active, "other", Some("k")),
            ],
            &[],
        )
        .unwrap_err();
        assert!(
            across.contains("secondary key is the same as the primary key"),
            "{across}"
        );
        let within = KeyTable::build(
            vec![sub("a", Scope::AllApis, State::Active, "k", Some("k"))],
            &[],
        )
        .unwrap_err();
        assert!(within.contains("subscriptions[0]"), "{within}");
        assert!(!within.contains(&hash_key("k").to_string()), "{within}");
    }

    #[test]
    fn duplicate_ids_and_unknown_products_are_refused() {
        let ids = KeyTable::build(
            vec![
                sub("a", Scope::AllApis, State::Active, "k1", None),
                sub("a", Scope::AllApis, State::Active, "k2", None),
            ],
            &[],
        )
        .unwrap_err();
        assert!(ids.contains("already used by subscriptions[0]"), "{ids}");
        let unknown = KeyTable::build(
            vec![sub(
                "a",
                Scope::Product("gold".into()),
                State::Active,
                "k",
                None,
            )],
            &[product("starter", &[], true)],
        )
        .unwrap_err();
        assert!(
            unknown.contains(r#"no product named "gold" (known: starter)"#),
            "{unknown}"
        );
        let products =
            KeyTable::build(vec![], &[product("p", &[], true), product("p", &[], false)])
                .unwrap_err();
        assert!(products.contains("products[1]"), "{products}");
    }

    #[test]
    fn debug_redacts_key_hashes() {
        let t = table();
        let full = hash_key("alice-1").to_string();
        let hex = &full["sha256:".len()..];
        for text in [format!("{:?}", t.subscription(0)), format!("{t:?}")] {
            assert!(text.contains(&format!("sha256:{}…", &hex[..8])), "{text}");
            assert!(!text.contains(&hex[..9]), "{text}");
            assert!(!text.contains("alice-1"), "{text}");
        }
    }
}
