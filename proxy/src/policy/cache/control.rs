//! What the origin's and the client's caching headers allow: `Cache-Control`, `Pragma` and
//! `Vary`, read as a shared cache must (RFC 9111).
//!
//! The gateway stores for at most the policy's `duration`; the origin can only shorten that
//! (`s-maxage`, else `max-age`) or forbid storing (`no-store`, `private`, `no-cache`,
//! `Vary: *`). This gateway never revalidates, so a response that may be reused only after
//! revalidation (`no-cache`) is not stored at all, and the field-qualified forms
//! (`private="Set-Cookie"`, `no-cache="Set-Cookie"`) are treated like the plain ones rather
//! than stored with fields stripped. Invalid freshness (`max-age=abc`, `max-age=-1`) counts as
//! already stale, as RFC 9111 §4.2.1 asks. `Expires` is not read: the policy's `duration`
//! always bounds the lifetime, and `Cache-Control` takes precedence wherever both are sent.
//!
//! Request directives are parsed ([`RequestControl`]) but not applied here: APIM ignores them
//! by default, and the integrator decides.

use std::time::Duration;

/// Where RFC 9111 §1.2.2 clamps a delta-seconds value too large to represent.
const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// A status `cache-store` keeps: 200, or one the policy lists as well.
pub fn status_storable(status: u16, also: &[u16]) -> bool {
    status == 200 || also.contains(&status)
}

/// The directives of a response that decide whether, and for how long, it is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseControl {
    pub no_store: bool,
    pub private: bool,
    pub no_cache: bool,
    /// Seconds; an invalid value reads as 0.
    pub max_age: Option<u64>,
    /// Seconds; wins over `max_age` in a shared cache. An invalid value reads as 0.
    pub s_maxage: Option<u64>,
    /// `Pragma: no-cache`, which counts only when no `Cache-Control` was sent.
    pub pragma_no_cache: bool,
    /// `Vary: *`: the response varies on things no key can capture.
    pub vary_any: bool,
    has_cache_control: bool,
}

impl ResponseControl {
    /// Reads one `Cache-Control` field value; call it again for each further field line.
    /// Where a directive repeats, its first occurrence counts.
    pub fn add_cache_control(&mut self, value: &[u8]) {
        self.has_cache_control = true;
        for (name, arg) in directives(value) {
            if name.eq_ignore_ascii_case(b"no-store") {
                self.no_store = true;
            } else if name.eq_ignore_ascii_case(b"private") {
                self.private = true;
            } else if name.eq_ignore_ascii_case(b"no-cache") {
                self.no_cache = true;
            } else if name.eq_ignore_ascii_case(b"max-age") {
                self.max_age.get_or_insert(delta_seconds(arg));
            } else if name.eq_ignore_ascii_case(b"s-maxage") {
                self.s_maxage.get_or_insert(delta_seconds(arg));
            }
        }
    }

    /// Reads one `Pragma` field value.
    pub fn add_pragma(&mut self, value: &[u8]) {
        if directives(value).any(|(name, _)| name.eq_ignore_ascii_case(b"no-cache")) {
            self.pragma_no_cache = true;
        }
    }

    /// Reads one `Vary` field value.
    pub fn add_vary(&mut self, value: &[u8]) {
        if list(value).any(|name| name == b"*") {
            self.vary_any = true;
        }
    }

    /// How long this gateway may keep the response when the policy allows `duration`: `None`
    /// when it must not be stored, else `duration` lowered to `s-maxage` (or `max-age`).
    pub fn ttl(&self, duration: Duration) -> Option<Duration> {
        let no_cache = self.no_cache || (self.pragma_no_cache && !self.has_cache_control);
        if self.no_store || self.private || no_cache || self.vary_any {
            return None;
        }
        let ttl = match self.s_maxage.or(self.max_age) {
            Some(secs) => duration.min(Duration::from_secs(secs)),
            None => duration,
        };
        (!ttl.is_zero()).then_some(ttl)
    }
}

/// How long to store a response whose headers carried these values (the first line of each;
/// use [`ResponseControl`] for several), when the policy allows `duration`; `None` when it
/// must not be stored.
pub fn store_ttl(
    cache_control: Option<&[u8]>,
    pragma: Option<&[u8]>,
    vary: Option<&[u8]>,
    duration: Duration,
) -> Option<Duration> {
    let mut control = ResponseControl::default();
    if let Some(value) = cache_control {
        control.add_cache_control(value);
    }
    if let Some(value) = pragma {
        control.add_pragma(value);
    }
    if let Some(value) = vary {
        control.add_vary(value);
    }
    control.ttl(duration)
}

/// Whether every header a response's `Vary` names is one the key varies by (`keyed`, matched
/// case-insensitively). A response that varies on anything else would be served to clients it
/// was not made for; the integrator can refuse to store it.
pub fn vary_covered(vary: &[u8], keyed: &[Box<[u8]>]) -> bool {
    list(vary).all(|name| name != b"*" && keyed.iter().any(|k| k.eq_ignore_ascii_case(name)))
}

/// A request's caching directives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestControl {
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`): a stored response must not
    /// answer without revalidation, which here means going to the origin.
    pub no_cache: bool,
    /// `no-store`: the response to this request must not be stored.
    pub no_store: bool,
    /// `max-age`: the oldest response, in seconds, the client accepts.
    pub max_age: Option<u64>,
    /// `only-if-cached`: answer from the cache or with 504.
    pub only_if_cached: bool,
    pragma_no_cache: bool,
    has_cache_control: bool,
}

impl RequestControl {
    /// Reads one `Cache-Control` field value; call it again for each further field line.
    pub fn add_cache_control(&mut self, value: &[u8]) {
        self.has_cache_control = true;
        for (name, arg) in directives(value) {
            if name.eq_ignore_ascii_case(b"no-cache") {
                self.no_cache = true;
            } else if name.eq_ignore_ascii_case(b"no-store") {
                self.no_store = true;
            } else if name.eq_ignore_ascii_case(b"max-age") {
                self.max_age.get_or_insert(delta_seconds(arg));
            } else if name.eq_ignore_ascii_case(b"only-if-cached") {
                self.only_if_cached = true;
            }
        }
    }

    /// Reads one `Pragma` field value.
    pub fn add_pragma(&mut self, value: &[u8]) {
        if directives(value).any(|(name, _)| name.eq_ignore_ascii_case(b"no-cache")) {
            self.pragma_no_cache = true;
        }
    }

    /// Whether the client refuses every stored response (`no-cache`, `max-age=0`).
    pub fn bypasses_lookup(&self) -> bool {
        self.no_cache
            || (self.pragma_no_cache && !self.has_cache_control)
            || self.max_age == Some(0)
    }

    /// Whether the client accepts a stored response this many seconds old.
    pub fn accepts_age(&self, age_secs: u64) -> bool {
        match self.max_age {
            Some(max) if age_secs > max => false,
            _ => !self.bypasses_lookup(),
        }
    }
}

/// A delta-seconds argument: digits only (quoted or not); too large clamps to 2^31; anything
/// else is invalid and reads as 0, so the response counts as stale.
fn delta_seconds(arg: Option<&[u8]>) -> u64 {
    match arg {
        Some(digits) if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => digits
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .map_or(DELTA_SECONDS_MAX, |n| n.min(DELTA_SECONDS_MAX)),
        _ => 0,
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The non-empty, trimmed elements of a comma-separated list (for `Vary`).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|e| !e.is_empty())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_space(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_space(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The directives of a `Cache-Control` or `Pragma` value: `name` or `name=arg`, where `arg`
/// is a token or a quoted string (returned without its quotes; commas inside it do not
/// separate directives). Whitespace around names, `=` and arguments is skipped; anything else
/// between an argument and the next comma is ignored.
fn directives(value: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < value.len() && (is_space(value[pos]) || value[pos] == b',') {
            pos += 1;
        }
        if pos >= value.len() {
            return None;
        }
        let start = pos;
        while pos < value.len() && !matches!(value[pos], b'=' | b',' | b' ' | b'\t') {
            pos += 1;
        }
        let name = &value[start..pos];
        while pos < value.len() && is_space(value[pos]) {
            pos += 1;
        }
        let mut arg = None;
        if value.get(pos) == Some(&b'=') {
            pos += 1;
            while pos < value.len() && is_space(value[pos]) {
                pos += 1;
            }
            if value.get(pos) == Some(&b'"') {
                pos += 1;
                let start = pos;
                while pos < value.len() && value[pos] != b'"' {
                    // A quoted-pair: the escaped byte cannot end the string.
                    pos += if value[pos] == b'\\' { 2 } else { 1 };
                }
                pos = pos.min(value.len());
                arg = Some(&value[start..pos]);
                pos += 1;
            } else {
                let start = pos;
                while pos < value.len() && !matches!(value[pos], b',' | b' ' | b'\t') {
                    pos += 1;
                }
                arg = Some(&value[start..pos]);
            }
        }
        while pos < value.len() && value[pos] != b',' {
            pos += 1;
        }
        Some((name, arg))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ttl(cc: &str) -> Option<u64> {
        store_ttl(Some(cc.as_bytes()), None, None, HOUR).map(|d| d.as_secs())
    }

    fn parsed(cc: &str) -> Vec<(String, Option<String>)> {
        directives(cc.as_bytes())
            .map(|(n, a)| {
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (s(n), a.map(s))
            })
            .collect()
    }

    #[test]
    fn directive_syntax() {
        assert_eq!(
            parsed(r#" Max-Age = 60 ,private="set-cookie, x-a",, no-cache"#),
            [
                ("Max-Age".into(), Some("60".into())),
                ("private".into(), Some("set-cookie, x-a".into())),
                ("no-cache".into(), None),
            ]
        );
        assert_eq!(
            parsed(r#"a="x\"y,z", b"#),
            [("a".into(), Some(r#"x\"y,z"#.into())), ("b".into(), None)]
        );
        assert_eq!(parsed(r#"a="unterminated, b"#).len(), 1);
        assert!(parsed("").is_empty());
        assert!(parsed(" , ,").is_empty());
    }

    #[test]
    fn duration_caps_and_the_origin_lowers() {
        assert_eq!(store_ttl(None, None, None, HOUR), Some(HOUR));
        assert_eq!(ttl("public"), Some(3600));
        assert_eq!(ttl("max-age=60"), Some(60));
        assert_eq!(ttl("max-age=86400"), Some(3600));
        assert_eq!(ttl("MAX-AGE=60"), Some(60));
        assert_eq!(ttl(r#"max-age="60""#), Some(60));
        assert_eq!(ttl("max-age = 60"), Some(60));
    }

    #[test]
    fn s_maxage_wins_for_a_shared_cache() {
        assert_eq!(ttl("max-age=10, s-maxage=120"), Some(120));
        assert_eq!(ttl("s-maxage=5, max-age=600"), Some(5));
        assert_eq!(ttl("s-maxage=0, max-age=600"), None);
    }

    #[test]
    fn refusals() {
        for cc in [
            "no-store",
            "No-Store",
            "private",
            r#"private="set-cookie""#,
            "no-cache",
            r#"no-cache="set-cookie""#,
            "public, max-age=60, no-store",
            "max-age=0",
        ] {
            assert_eq!(ttl(cc), None, "{cc}");
        }
    }

    #[test]
    fn bad_numbers_count_as_stale() {
        for cc in [
            "max-age=abc",
            "max-age=-1",
            "max-age=",
            "max-age",
            "max-age=1.5",
        ] {
            assert_eq!(ttl(cc), None, "{cc}");
        }
        // Too large clamps, and the duration still caps.
        assert_eq!(ttl("max-age=99999999999999999999999"), Some(3600));
        assert_eq!(delta_seconds(Some(b"99999999999999999999999")), 1 << 31);
        // The first occurrence of a repeated directive counts.
        assert_eq!(ttl("max-age=30, max-age=3000"), Some(30));
    }

    #[test]
    fn a_quoted_no_store_is_an_argument_not_a_directive() {
        assert_eq!(ttl(r#"x-ext="no-store, private", max-age=60"#), Some(60));
    }

    #[test]
    fn pragma_counts_only_without_cache_control() {
        assert_eq!(store_ttl(None, Some(b"no-cache"), None, HOUR), None);
        assert_eq!(
            store_ttl(Some(b"max-age=60"), Some(b"no-cache"), None, HOUR),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn vary() {
        assert_eq!(store_ttl(None, None, Some(b"*"), HOUR), None);
        assert_eq!(store_ttl(None, None, Some(b"Accept, *"), HOUR), None);
        assert_eq!(store_ttl(None, None, Some(b"Accept"), HOUR), Some(HOUR));
        let keyed: Vec<Box<[u8]>> = vec![b"accept".as_slice().into()];
        assert!(vary_covered(b"Accept", &keyed));
        assert!(vary_covered(b"", &keyed));
        assert!(!vary_covered(b"Accept, Accept-Encoding", &keyed));
        assert!(!vary_covered(b"*", &keyed));
    }

    #[test]
    fn several_field_lines_combine() {
        let mut c = ResponseControl::default();
        c.add_cache_control(b"public");
        c.add_cache_control(b"max-age=90");
        assert_eq!(c.ttl(HOUR), Some(Duration::from_secs(90)));
        c.add_cache_control(b"private");
        assert_eq!(c.ttl(HOUR), None);
    }

    #[test]
    fn request_directives() {
        let req = |cc: &str| {
            let mut r = RequestControl::default();
            r.add_cache_control(cc.as_bytes());
            r
        };
        assert!(req("no-cache").bypasses_lookup());
        assert!(req("max-age=0").bypasses_lookup());
        assert!(req("NO-STORE").no_store);
        assert!(req("only-if-cached").only_if_cached);
        assert!(req("max-age=10").accepts_age(10));
        assert!(!req("max-age=10").accepts_age(11));
        assert!(req("").accepts_age(1_000_000));
        let mut pragma = RequestControl::default();
        pragma.add_pragma(b"no-cache");
        assert!(pragma.bypasses_lookup());
        pragma.add_cache_control(b"max-age=5");
        assert!(!pragma.bypasses_lookup());
    }

    #[test]
    fn storable_statuses() {
        assert!(status_storable(200, &[]));
        assert!(!status_storable(404, &[]));
        assert!(status_storable(404, &[404, 410]));
    }
}
