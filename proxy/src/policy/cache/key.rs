//! Cache keys: the text that names one stored response, and its hash.
//!
//! A key is written as
//!
//! ```text
//! {host}{path} \0 {method} \0 {query vary} \0 {header vary} \0 {extra}
//! ```
//!
//! (without the spaces). Host and path come first so that purging by prefix can remove
//! "everything under `shop.example.com/api/orders`": [`build_prefix`] writes such a prefix, and
//! a prefix ending in [`PATH_END`] matches one path exactly, with all its variants. The request
//! parser (httparse) refuses `\0` in a request target or header value, so the parts cannot run
//! into each other.
//!
//! - `host` is lowercased; a port stays (`api.example.com:8443`).
//! - `path` is kept as sent: paths are case-sensitive and are not percent-decoded.
//! - `method` is the method class: `HEAD` is answered from the `GET` entry, so both write `GET`.
//! - The query vary part takes, for each name in `vary_by_query` in the listed order, every
//!   pair of the query with that name (`name=value`, or `name` alone; as sent, not decoded),
//!   each followed by `&`; a name the query lacks writes nothing. `*` in the list stands for the whole query, its
//!   pairs sorted by name (pairs of one name keep their order), so `?b=2&a=1` and `?a=1&b=2`
//!   share an entry.
//! - The header vary part is, for each `vary_by_header` name in the listed order, the name
//!   lowercased, then `:value` if the request sent it, then `\n`.
//! - `extra` is whatever else the integrator varies by (a subscription, a user); it is last, so
//!   it needs no delimiting.
//!
//! Keys are hashed with [`key_hash`], whose seeds are fixed so that every core (and the purge
//! hub) computes the same hash for the same key. A store compares the full key on lookup, so a
//! crafted collision can at worst displace an entry, never serve the wrong one.

use std::hash::{BuildHasher, Hasher};

/// Ends the host-and-path part of a key; a purge prefix ending in it matches one path exactly.
pub const PATH_END: u8 = 0;

/// Separates the key's later parts.
const SEP: u8 = 0;

/// Query pairs split on the stack; a query with more allocates a buffer for them.
const INLINE_PAIRS: usize = 32;

/// Fixed seeds: every core must agree on a key's hash without sharing state.
static KEY_HASHER: ahash::RandomState = ahash::RandomState::with_seeds(
    0x5249_4e47_5741_5901,
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
);

/// Whether responses to `method` may be looked up and stored: `GET`, and `HEAD` (which is
/// answered from the `GET` entry).
pub fn cacheable_method(method: &[u8]) -> bool {
    method == b"GET" || method == b"HEAD"
}

/// The parts of a request its key is made of, borrowed from the parsed head.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyParts<'a> {
    pub method: &'a [u8],
    /// The `Host` (or authority), as sent; lowercased into the key.
    pub host: &'a [u8],
    pub path: &'a [u8],
    /// The query without its `?`; empty when there is none.
    pub query: &'a [u8],
    /// Anything else the key varies by (a subscription, a user); empty for nothing.
    pub extra: &'a [u8],
}

/// Writes the key of a request into `out` (cleared first; reuse one buffer per worker so that
/// building a key does not allocate). See the module documentation for the format.
///
/// `vary_by_query` and `vary_by_header` are the policy's lists; `header` returns the value
/// the request sent for a header name (matched case-insensitively by the caller), if any.
pub fn build_key<'h>(
    out: &mut Vec<u8>,
    parts: &KeyParts<'_>,
    vary_by_query: &[Box<[u8]>],
    vary_by_header: &[Box<[u8]>],
    header: impl Fn(&[u8]) -> Option<&'h [u8]>,
) {
    out.clear();
    push_lowercase(out, parts.host);
    out.extend_from_slice(parts.path);
    out.push(PATH_END);
    out.extend_from_slice(if parts.method == b"HEAD" {
        b"GET"
    } else {
        parts.method
    });
    out.push(SEP);
    push_query_vary(out, parts.query, vary_by_query);
    out.push(SEP);
    for name in vary_by_header {
        push_lowercase(out, name);
        if let Some(value) = header(name) {
            out.push(b':');
            out.extend_from_slice(value);
        }
        out.push(b'\n');
    }
    out.push(SEP);
    out.extend_from_slice(parts.extra);
}

/// Writes into `out` (cleared first) the prefix shared by every key under `host` and
/// `path_prefix`, for purging by prefix. The match is textual: `/api/order` also matches
/// `/api/orders`; end `path_prefix` with `/`, or push [`PATH_END`] after it, to stop at a
/// segment or at the exact path.
pub fn build_prefix(out: &mut Vec<u8>, host: &[u8], path_prefix: &[u8]) {
    out.clear();
    push_lowercase(out, host);
    out.extend_from_slice(path_prefix);
}

/// The hash every store indexes `key` by; the same on every core and every thread.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    let mut hasher = KEY_HASHER.build_hasher();
    hasher.write(key);
    hasher.finish()
}

fn push_lowercase(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(bytes.iter().map(u8::to_ascii_lowercase));
}

/// One query pair: `(start, name end, end)`, offsets into the query.
type Span = (u32, u32, u32);

/// Splits `query` into its non-empty pairs in one pass: into `inline` when they fit, else
/// into `spill` (a query of more than [`INLINE_PAIRS`] pairs allocates).
fn split_pairs<'s>(
    query: &[u8],
    inline: &'s mut [Span; INLINE_PAIRS],
    spill: &'s mut Vec<Span>,
) -> &'s mut [Span] {
    let mut count = 0;
    let mut start = 0;
    while start < query.len() {
        let stop = find(query, start, |w| has_byte(w, b'&') | has_byte(w, b'='));
        let (name_end, end) = if stop < query.len() && query[stop] == b'=' {
            (stop, find(query, stop + 1, |w| has_byte(w, b'&')))
        } else {
            (stop, stop)
        };
        if end > start {
            let span = (start as u32, name_end as u32, end as u32);
            if count < INLINE_PAIRS {
                inline[count] = span;
            } else {
                if spill.is_empty() {
                    spill.extend_from_slice(&inline[..]);
                }
                spill.push(span);
            }
            count += 1;
        }
        start = end + 1;
    }
    if count <= INLINE_PAIRS {
        &mut inline[..count]
    } else {
        spill
    }
}

const LOW_BITS: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of each byte of `word` equal to `b`; exact for the lowest such byte (a borrow
/// can only mark bytes above a true match).
#[inline]
fn has_byte(word: u64, b: u8) -> u64 {
    let x = word ^ (LOW_BITS * u64::from(b));
    x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS
}

/// The offset of the first byte at or after `from` that `mask` marks (see [`has_byte`]), or
/// the length: eight bytes a step, as a query is scanned on every lookup.
#[inline]
fn find(bytes: &[u8], mut from: usize, mask: impl Fn(u64) -> u64) -> usize {
    while let Some(chunk) = bytes.get(from..from + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let marked = mask(word);
        if marked != 0 {
            return from + (marked.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < bytes.len() && mask(u64::from(bytes[from])) & 0x80 == 0 {
        from += 1;
    }
    from
}

fn push_query_vary(out: &mut Vec<u8>, query: &[u8], vary_by_query: &[Box<[u8]>]) {
    if vary_by_query.is_empty() || query.is_empty() {
        return;
    }
    if query.len() > u32::MAX as usize {
        return;
    }
    let mut inline = [(0, 0, 0); INLINE_PAIRS];
    let mut spill = Vec::new();
    let spans = split_pairs(query, &mut inline, &mut spill);
    if vary_by_query.iter().any(|name| &**name == b"*") {
        // The whole query in canonical order: sorted by name, pairs of one name in the order
        // sent (an unstable sort, which needs no buffer, made stable by the position).
        spans.sort_unstable_by(|a, b| {
            let name = |s: &Span| &query[s.0 as usize..s.1 as usize];
            name(a).cmp(name(b)).then(a.0.cmp(&b.0))
        });
        for &(start, _, end) in spans.iter() {
            out.extend_from_slice(&query[start as usize..end as usize]);
            out.push(b'&');
        }
        return;
    }
    for name in vary_by_query {
        for &(start, name_end, end) in spans.iter() {
            if query[start as usize..name_end as usize] == **name {
                out.extend_from_slice(&query[start as usize..end as usize]);
                out.push(b'&');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Box<[u8]>> {
        list.iter().map(|n| n.as_bytes().into()).collect()
    }

    fn key(method: &str, host: &str, path: &str, query: &str, vary: &[&str]) -> Vec<u8> {
        let parts = KeyParts {
            method: method.as_bytes(),
            host: host.as_bytes(),
            path: path.as_bytes(),
            query: query.as_bytes(),
            extra: b"",
        };
        let mut out = Vec::new();
        build_key(&mut out, &parts, &names(vary), &[], |_| None);
        out
    }

    #[test]
    fn layout_puts_host_and_path_first() {
        let parts = KeyParts {
            method: b"GET",
            host: b"Shop.Example.COM:8443",
            path: b"/Api/Orders",
            query: b"page=2&sort=asc&debug",
            extra: b"sub-1",
        };
        let sent: &[(&[u8], &[u8])] = &[(b"accept", b"application/json")];
        let mut out = Vec::new();
        build_key(
            &mut out,
            &parts,
            &names(&["sort", "page", "missing"]),
            &names(&["Accept", "X-Tenant"]),
            |name| {
                sent.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| *v)
            },
        );
        assert_eq!(
            out,
            b"shop.example.com:8443/Api/Orders\0GET\0sort=asc&page=2&\0\
              accept:application/json\nx-tenant\n\0sub-1"
                .as_slice()
        );
    }

    #[test]
    fn head_shares_the_get_entry() {
        assert_eq!(
            key("HEAD", "h", "/p", "", &[]),
            key("GET", "h", "/p", "", &[])
        );
        assert_ne!(
            key("POST", "h", "/p", "", &[]),
            key("GET", "h", "/p", "", &[])
        );
        assert!(cacheable_method(b"HEAD") && cacheable_method(b"GET"));
        assert!(!cacheable_method(b"POST") && !cacheable_method(b"get"));
    }

    #[test]
    fn unlisted_query_parameters_do_not_vary() {
        assert_eq!(
            key("GET", "h", "/p", "a=1&utm=x", &["a"]),
            key("GET", "h", "/p", "utm=y&a=1", &["a"])
        );
        assert_ne!(
            key("GET", "h", "/p", "a=1", &["a"]),
            key("GET", "h", "/p", "a=2", &["a"])
        );
        // Present without a value, present and empty, and absent are three different keys.
        let flag = key("GET", "h", "/p", "a", &["a"]);
        let empty = key("GET", "h", "/p", "a=", &["a"]);
        let absent = key("GET", "h", "/p", "", &["a"]);
        assert!(flag != empty && empty != absent && flag != absent);
        // Repeated parameters all count.
        assert_ne!(
            key("GET", "h", "/p", "a=1&a=2", &["a"]),
            key("GET", "h", "/p", "a=1&a=3", &["a"])
        );
    }

    #[test]
    fn listed_order_is_kept_and_names_are_not_confused() {
        // `ab` is not `a`; a prefix of a name is not a match.
        assert_eq!(
            key("GET", "h", "/p", "ab=1", &["a"]),
            key("GET", "h", "/p", "", &["a"])
        );
        let k = key("GET", "h", "/p", "b=2&a=1", &["a", "b"]);
        assert!(k.ends_with(b"\0a=1&b=2&\0\0"));
    }

    #[test]
    fn a_value_may_hold_equals_signs() {
        let k = key("GET", "h", "/p", "sig=a=b==&=x&x=1", &["sig", "x"]);
        assert!(k.ends_with(b"\0sig=a=b==&x=1&\0\0"), "{k:?}");
        let k = key("GET", "h", "/p", "=x&b&a=1=2", &["*"]);
        assert!(k.ends_with(b"\0=x&a=1=2&b&\0\0"), "{k:?}");
    }

    #[test]
    fn star_sorts_the_whole_query_by_name() {
        let k = key("GET", "h", "/p", "b=2&a=1&&c&a=0", &["*"]);
        assert!(k.ends_with(b"\0a=1&a=0&b=2&c&\0\0"), "{:?}", k);
        assert_eq!(
            key("GET", "h", "/p", "x=1&y=2", &["*"]),
            key("GET", "h", "/p", "y=2&x=1", &["x", "*"])
        );
    }

    #[test]
    fn star_sorts_long_queries_too() {
        let query: Vec<String> = (0..100).rev().map(|i| format!("p{i:03}={i}")).collect();
        let k = key("GET", "h", "/p", &query.join("&"), &["*"]);
        let sorted: Vec<String> = (0..100).map(|i| format!("p{i:03}={i}&")).collect();
        let expected = format!("h/p\0GET\0{}\0\0", sorted.concat());
        assert_eq!(k, expected.as_bytes());
    }

    #[test]
    fn prefix_matches_keys_under_a_path() {
        let mut prefix = Vec::new();
        build_prefix(&mut prefix, b"H", b"/api/orders");
        assert!(key("GET", "h", "/api/orders/7", "", &[]).starts_with(&prefix));
        assert!(key("GET", "h", "/api/orders", "x=1", &["x"]).starts_with(&prefix));
        assert!(!key("GET", "h", "/api/users", "", &[]).starts_with(&prefix));
        prefix.push(PATH_END);
        assert!(key("GET", "h", "/api/orders", "x=1", &["x"]).starts_with(&prefix));
        assert!(!key("GET", "h", "/api/orders/7", "", &[]).starts_with(&prefix));
    }

    #[test]
    fn hash_is_stable_across_threads() {
        let k = key("GET", "h", "/p", "", &[]);
        let here = key_hash(&k);
        let there = std::thread::spawn(move || key_hash(&k)).join().unwrap();
        assert_eq!(here, there);
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
    }
}
