//! Compiled request matchers: host patterns, the four path match types, method, headers and
//! query parameters.
//!
//! Everything is prepared when the configuration loads (names lowercased, regexes anchored and
//! compiled, templates split into segments) so that matching a request never allocates.

use regex::bytes::Regex;

use super::HeaderLookup;

/// A `hosts` entry, lowercased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com`.
    Exact(Box<[u8]>),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Wildcard(Box<[u8]>),
}

impl HostPattern {
    /// Parses a `hosts` entry; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let lower = text.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return Err(format!("{text:?} is not a host name"));
        }
        if name.contains('*') {
            return Err(format!(
                "{text:?}: a wildcard is only allowed as the whole first label, as in \"*.example.com\""
            ));
        }
        if name.contains(':') {
            return Err(format!(
                "{text:?}: write the host without a port (ports are ignored when matching)"
            ));
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name.split('.').all(label_ok) {
            return Err(format!(
                "{text:?} is not a host name (letters, digits, '-' and '_' in dot-separated labels)"
            ));
        }
        Ok(if wildcard {
            HostPattern::Wildcard(format!(".{name}").into_bytes().into())
        } else {
            HostPattern::Exact(name.as_bytes().into())
        })
    }
}

/// How a match tests the request path (raw bytes, before any percent-decoding).
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// The path equals the value.
    Exact(Box<[u8]>),
    /// The value (stored without a trailing `/`; `/` is stored empty) is a prefix of the path
    /// ending at a segment boundary.
    Prefix(Box<[u8]>),
    Template(Template),
    /// Anchored at both ends when compiled: it must match the whole path.
    Regex(Regex),
}

impl PathMatch {
    /// Whether `path` matches; for a prefix match, the bytes of the path it covered.
    #[inline]
    pub fn matches(&self, path: &[u8]) -> Option<usize> {
        match self {
            PathMatch::Exact(value) => (**value == *path).then_some(0),
            PathMatch::Prefix(value) => prefix_matches(value, path).then_some(value.len()),
            PathMatch::Template(template) => template.matches(path).then_some(0),
            PathMatch::Regex(regex) => regex.is_match(path).then_some(0),
        }
    }
}

#[inline]
fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    path.len() >= prefix.len()
        && path[..prefix.len()] == *prefix
        && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// `/orders/{id}/items/{item}`: literal segments must be equal, each `{name}` matches one
/// non-empty segment, and the segment counts must be equal. A last segment `*` (`/files/*`)
/// matches whatever follows, including nothing, as an APIM wildcard operation does.
#[derive(Clone, Debug)]
pub struct Template {
    segments: Box<[Segment]>,
    literal_chars: usize,
    names: Box<[String]>,
    wildcard: bool,
}

#[derive(Clone, Debug)]
enum Segment {
    Literal(Box<[u8]>),
    Param,
}

impl Template {
    /// Parses a template; the error says what is malformed.
    pub fn parse(text: &str) -> Result<Template, String> {
        if !text.starts_with('/') {
            return Err(format!("template {text:?} must start with '/'"));
        }
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let mut literal_chars = 0;
        let mut wildcard = false;
        let (body, star) = match text.strip_suffix("/*") {
            Some(body) => (body, true),
            None => (text, false),
        };
        if star {
            wildcard = true;
            if body.is_empty() {
                return Ok(Template {
                    segments: Box::default(),
                    literal_chars: 1,
                    names: Box::default(),
                    wildcard,
                });
            }
        }
        for segment in body[1..].split('/') {
            if segment == "*" {
                return Err(format!(
                    "template {text:?}: '*' may only be the last segment (/files/*)"
                ));
            }
            if let Some(inner) = segment.strip_prefix('{') {
                let Some(name) = inner.strip_suffix('}') else {
                    return Err(format!(
                        "template {text:?}: segment {segment:?} opens '{{' but does not end with '}}' (a parameter must be a whole segment)"
                    ));
                };
                let valid = name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(format!(
                        "template {text:?}: {{{name}}} is not a parameter name (letters, digits and _)"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!(
                        "template {text:?}: parameter {{{name}}} appears twice"
                    ));
                }
                names.push(name);
                segments.push(Segment::Param);
            } else if segment.contains(['{', '}']) {
                return Err(format!(
                    "template {text:?}: segment {segment:?} has a stray brace (a parameter must be a whole segment, like /{{id}}/)"
                ));
            } else {
                literal_chars += segment.len();
                segments.push(Segment::Literal(segment.as_bytes().into()));
            }
        }
        // Slashes are literal characters too.
        literal_chars += segments.len();
        Ok(Template {
            segments: segments.into(),
            literal_chars,
            names: names.iter().map(|n| n.to_string()).collect(),
            wildcard,
        })
    }

    /// The parameter names, in order.
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// Appends the spans of the parameters in `path` (which must match) to `out`.
    pub fn capture(&self, path: &[u8], out: &mut Vec<(u32, u32)>) {
        let mut at = 1;
        for segment in self.segments.iter() {
            let end = path[at.min(path.len())..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |p| at + p);
            if matches!(segment, Segment::Param) {
                out.push((at as u32, end as u32));
            }
            at = end + 1;
        }
    }

    /// Characters that are not parameters; more of them is a more specific template.
    pub fn literal_chars(&self) -> usize {
        self.literal_chars
    }

    #[inline]
    pub fn matches(&self, path: &[u8]) -> bool {
        let Some(rest) = path.strip_prefix(b"/") else {
            return false;
        };
        let mut parts = rest.split(|&b| b == b'/');
        if self.wildcard && self.segments.is_empty() {
            return true;
        }
        for segment in self.segments.iter() {
            let Some(part) = parts.next() else {
                return false;
            };
            let ok = match segment {
                Segment::Literal(literal) => literal.len() == part.len() && **literal == *part,
                Segment::Param => !part.is_empty(),
            };
            if !ok {
                return false;
            }
        }
        self.wildcard || parts.next().is_none()
    }
}

/// How a header or query value is compared.
#[derive(Clone, Debug)]
pub enum ValueMatch {
    /// Byte-for-byte, case-sensitive.
    Exact(Box<[u8]>),
    /// Anchored: must match the whole value.
    Regex(Regex),
}

impl ValueMatch {
    #[inline]
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(expected) => expected.len() == value.len() && **expected == *value,
            ValueMatch::Regex(regex) => regex.is_match(value),
        }
    }
}

/// A header match: the first value of the header named `name` (lowercase).
#[derive(Clone, Debug)]
pub struct HeaderMatch {
    pub name: Box<[u8]>,
    pub value: ValueMatch,
}

/// A query match: the first parameter named `name` (case-sensitive, not percent-decoded);
/// `?flag` without `=` has the empty value.
#[derive(Clone, Debug)]
pub struct QueryMatch {
    pub name: Box<[u8]>,
    pub value: ValueMatch,
}

/// One entry of a route's `matches`: every part must match.
#[derive(Clone, Debug)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Compared exactly (methods are case-sensitive).
    pub method: Option<Box<[u8]>>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

impl RouteMatch {
    /// The method, header and query conditions (the path is tested separately).
    #[inline]
    pub fn conditions_match<H: HeaderLookup>(
        &self,
        method: &[u8],
        headers: &H,
        query: &[u8],
    ) -> bool {
        if let Some(expected) = &self.method {
            if **expected != *method {
                return false;
            }
        }
        for m in &self.headers {
            match headers.get(&m.name) {
                Some(value) if m.value.matches(value) => {}
                _ => return false,
            }
        }
        for m in &self.query {
            match query_param(query, &m.name) {
                Some(value) if m.value.matches(value) => {}
                _ => return false,
            }
        }
        true
    }
}

/// The raw value of the first parameter named `name` in `a=1&b=2`.
#[inline]
pub fn query_param<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (key == name).then_some(value)
    })
}

/// Compiles `pattern` so that it must match a whole value.
pub fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    // Compile the pattern as written first, so an error points into what the user wrote.
    let describe = |e: regex::Error| {
        let message = e.to_string();
        // The regex crate's syntax errors span lines: the pattern, a caret, "error: ...".
        let what = message
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map(str::to_owned)
            .unwrap_or_else(|| message.split_whitespace().collect::<Vec<_>>().join(" "));
        format!("invalid regex {pattern:?}: {what}")
    };
    Regex::new(pattern).map_err(describe)?;
    Regex::new(&format!("^(?:{pattern})$")).map_err(describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_on_segment_boundaries() {
        let m = PathMatch::Prefix((*b"/abc").into());
        assert_eq!(m.matches(b"/abc"), Some(4));
        assert_eq!(m.matches(b"/abc/"), Some(4));
        assert_eq!(m.matches(b"/abc/x"), Some(4));
        assert_eq!(m.matches(b"/abcd"), None);
        assert_eq!(m.matches(b"/ab"), None);
        let root = PathMatch::Prefix((*b"").into());
        assert_eq!(root.matches(b"/"), Some(0));
        assert_eq!(root.matches(b"/anything"), Some(0));
    }

    #[test]
    fn templates() {
        let t = Template::parse("/orders/{id}/items/{item}").unwrap();
        assert!(t.matches(b"/orders/5/items/7"));
        assert!(!t.matches(b"/orders/5/items/"));
        assert!(!t.matches(b"/orders//items/7"));
        assert!(!t.matches(b"/orders/5/items/7/x"));
        assert!(!t.matches(b"/orders/5/item/7"));
        assert!(!t.matches(b"orders/5/items/7"));
        assert_eq!(t.literal_chars(), "/orders//items/".len());
        let root = Template::parse("/").unwrap();
        assert!(root.matches(b"/"));
        assert!(!root.matches(b"/a"));
        assert!(Template::parse("/a/{id").is_err());
        assert!(Template::parse("/a/x{id}").is_err());
        assert!(Template::parse("/a/{1d}").is_err());
        assert!(Template::parse("/a/{id}/{id}").is_err());
        assert!(Template::parse("a/{id}").is_err());
    }

    #[test]
    fn regex_is_anchored() {
        let m = PathMatch::Regex(full_match_regex("/v[0-9]+/.*").unwrap());
        assert!(m.matches(b"/v2/x").is_some());
        assert!(m.matches(b"/api/v2/x").is_none());
        let m = PathMatch::Regex(full_match_regex("/a|/b").unwrap());
        assert!(m.matches(b"/b").is_some());
        assert!(m.matches(b"/bc").is_none());
        assert!(full_match_regex("(")
            .unwrap_err()
            .starts_with("invalid regex \"(\": "));
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(b"a=1&b=2", b"b"), Some(&b"2"[..]));
        assert_eq!(query_param(b"a=1&a=2", b"a"), Some(&b"1"[..]));
        assert_eq!(query_param(b"flag&x=1", b"flag"), Some(&b""[..]));
        assert_eq!(query_param(b"a=x%20y", b"a"), Some(&b"x%20y"[..]));
        assert_eq!(query_param(b"A=1", b"a"), None);
        assert_eq!(query_param(b"", b"a"), None);
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            HostPattern::parse("API.Example.com").unwrap(),
            HostPattern::Exact((*b"api.example.com").into())
        );
        assert_eq!(
            HostPattern::parse("*.example.com").unwrap(),
            HostPattern::Wildcard((*b".example.com").into())
        );
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("example.com:8080").is_err());
        assert!(HostPattern::parse("").is_err());
        assert!(HostPattern::parse("a..b").is_err());
        assert!(HostPattern::parse("*").is_err());
    }
}
