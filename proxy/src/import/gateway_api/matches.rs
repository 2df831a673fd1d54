//! `rules[].matches` → Ringway `matches`. The two match the same requests: HTTPRoute's
//! `PathPrefix` is Ringway's segment-wise `prefix`, header names are case-insensitive and query
//! names case-sensitive in both, and a regular expression must match the whole value in both.

use serde_json::{json, Map, Value};

use super::fields::{join, list, mapping, one_of, required, text};
use super::Diag;

pub(super) struct Matches {
    /// At least one: a rule without matches matches every path, as prefix `/`.
    pub matches: Vec<Value>,
    /// Whether every match is a prefix match (what a prefix rewrite needs).
    pub all_prefix: bool,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Converts the matches of the rule at `field`.
pub(super) fn convert(d: &mut Diag, field: &str, list_of: &[Value]) -> Matches {
    let mut out = Matches {
        matches: Vec::new(),
        all_prefix: true,
    };
    if list_of.is_empty() {
        out.matches
            .push(json!({"path": {"type": "prefix", "value": "/"}}));
        return out;
    }
    for (m, v) in list_of.iter().enumerate() {
        let mfield = format!("{field}.matches[{m}]");
        let known = ["path", "headers", "queryParams", "method"];
        let Some(spec) = mapping(d, &mfield, v, &known) else {
            continue;
        };
        let mut entry = Map::new();
        let (kind, value) = path(d, &mfield, spec);
        out.all_prefix &= kind == "prefix";
        entry.insert("path".into(), json!({"type": kind, "value": value}));
        if let Some(method) = one_of(d, &mfield, spec, "method", &METHODS) {
            entry.insert("method".into(), json!(method));
        }
        let headers = values(d, &mfield, spec, "headers", false);
        if !headers.is_empty() {
            entry.insert("headers".into(), Value::Array(headers));
        }
        let query = values(d, &mfield, spec, "queryParams", true);
        if !query.is_empty() {
            entry.insert("query".into(), Value::Array(query));
        }
        out.matches.push(Value::Object(entry));
    }
    out
}

/// The path match: (Ringway type, value); prefix `/` when the match has none.
fn path(d: &mut Diag, field: &str, spec: &Map<String, Value>) -> (&'static str, String) {
    let pfield = join(field, "path");
    let Some(p) = spec.get("path").filter(|v| !v.is_null()) else {
        return ("prefix", "/".to_string());
    };
    let Some(p) = mapping(d, &pfield, p, &["type", "value"]) else {
        return ("prefix", "/".to_string());
    };
    let kind = one_of(
        d,
        &pfield,
        p,
        "type",
        &["Exact", "PathPrefix", "RegularExpression"],
    )
    .unwrap_or("PathPrefix");
    let value = text(d, &pfield, p, "value").unwrap_or_else(|| "/".to_string());
    let vfield = join(&pfield, "value");
    match kind {
        "RegularExpression" => {
            if let Err(e) = crate::route::full_match_regex(&value) {
                d.error(&vfield, format!("{e} (Ringway uses Rust regex syntax)"));
            }
            ("regex", value)
        }
        _ => {
            if !value.starts_with('/') {
                d.error(&vfield, format!("{value:?} must start with '/'"));
            } else if value.contains("//") || value.contains(['#', '?']) {
                d.error(
                    &vfield,
                    format!("{value:?}: a path match may not contain \"//\", '?' or '#'"),
                );
            }
            (if kind == "Exact" { "exact" } else { "prefix" }, value)
        }
    }
}

/// Header or query parameter matches. Of several with one name only the first counts, as the
/// Gateway API says (header names compared case-insensitively, query names exactly).
fn values(
    d: &mut Diag,
    match_field: &str,
    spec: &Map<String, Value>,
    key: &str,
    case_sensitive: bool,
) -> Vec<Value> {
    let field = join(match_field, key);
    let mut out: Vec<Value> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, v) in list(d, match_field, spec, key).iter().enumerate() {
        let ifield = format!("{field}[{i}]");
        let Some(m) = mapping(d, &ifield, v, &["type", "name", "value"]) else {
            continue;
        };
        let kind =
            one_of(d, &ifield, m, "type", &["Exact", "RegularExpression"]).unwrap_or("Exact");
        let name = required(d, &ifield, m, "name");
        let value = text(d, &ifield, m, "value");
        if value.is_none() && m.get("value").is_none() {
            d.error(&join(&ifield, "value"), "is required");
        }
        let (Some(name), Some(value)) = (name, value) else {
            continue;
        };
        if !case_sensitive && !is_token(name) {
            d.error(
                &join(&ifield, "name"),
                format!("{name:?} is not a valid header name"),
            );
            continue;
        }
        if case_sensitive && name.contains(['&', '=', '#']) {
            d.error(
                &join(&ifield, "name"),
                format!("{name:?}: Ringway cannot match a query parameter whose name holds '&', '=' or '#'"),
            );
            continue;
        }
        let key_name = if case_sensitive {
            name.to_string()
        } else {
            name.to_ascii_lowercase()
        };
        if names.contains(&key_name) {
            continue;
        }
        names.push(key_name);
        if kind == "RegularExpression" {
            if let Err(e) = crate::route::full_match_regex(&value) {
                d.error(
                    &join(&ifield, "value"),
                    format!("{e} (Ringway uses Rust regex syntax)"),
                );
            }
            out.push(json!({"name": name, "type": "regex", "value": value}));
        } else {
            out.push(json!({"name": name, "value": value}));
        }
    }
    out
}

/// RFC 9110 token: what a header name may be.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
