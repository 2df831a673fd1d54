//! `rules[].filters` → Ringway route filters (`request_headers`, `response_headers`,
//! `rewrite`) and the `redirect` action. Mirroring, extension filters, CORS and external
//! authorization have no route-level equivalent and become notes.

use serde_json::{json, Map, Value};

use super::fields::{
    child, integer, is_hostname, join, list, mapping, one_of, required, string, text,
};
use super::matches::is_token;
use super::Diag;

/// What a rule's filters make of its Ringway route.
#[derive(Default)]
pub(super) struct Filters {
    /// `{set, add, remove}`; empty when there is nothing to edit.
    pub request_headers: Map<String, Value>,
    pub response_headers: Map<String, Value>,
    /// `{path}` or `{prefix}`: only for a route that forwards.
    pub rewrite: Option<Value>,
    pub redirect: Option<Value>,
}

/// Each filter type and the field that holds its settings.
const TYPES: [(&str, &str); 8] = [
    ("RequestHeaderModifier", "requestHeaderModifier"),
    ("ResponseHeaderModifier", "responseHeaderModifier"),
    ("RequestMirror", "requestMirror"),
    ("RequestRedirect", "requestRedirect"),
    ("URLRewrite", "urlRewrite"),
    ("ExtensionRef", "extensionRef"),
    ("CORS", "cors"),
    ("ExternalAuth", "externalAuth"),
];

/// Converts the filters of the rule at `rule_field`. `all_prefix`: whether every match of the
/// rule is a prefix match; `listener_port`: the one port the route is attached on, if one.
pub(super) fn convert(
    d: &mut Diag,
    rule_field: &str,
    filters: &[Value],
    all_prefix: bool,
    listener_port: Option<u16>,
) -> Filters {
    let mut out = Filters::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut known: Vec<&str> = vec!["type"];
    known.extend(TYPES.iter().map(|(_, key)| *key));
    for (i, v) in filters.iter().enumerate() {
        let field = format!("{rule_field}.filters[{i}]");
        let Some(filter) = mapping(d, &field, v, &known) else {
            continue;
        };
        let names: Vec<&str> = TYPES.iter().map(|(t, _)| *t).collect();
        let Some(kind) = one_of(d, &field, filter, "type", &names) else {
            if filter.get("type").is_none() {
                d.error(&join(&field, "type"), "is required");
            }
            continue;
        };
        let key = TYPES
            .iter()
            .find(|(t, _)| *t == kind)
            .map_or("", |(_, k)| *k);
        for (_, other) in TYPES.iter().filter(|(_, k)| *k != key) {
            if filter.get(*other).is_some() {
                d.error(
                    &join(&field, other),
                    format!("does not belong to a filter of type {kind}"),
                );
            }
        }
        let repeatable = matches!(kind, "RequestMirror" | "ExtensionRef");
        if !repeatable && seen.contains(&kind) {
            d.error(
                &field,
                format!("a rule may have one {kind} filter, not several"),
            );
            continue;
        }
        seen.push(kind);
        let Some(settings) = filter.get(key).filter(|v| !v.is_null()) else {
            d.error(&join(&field, key), format!("is required by type {kind}"));
            continue;
        };
        let sfield = join(&field, key);
        match kind {
            "RequestHeaderModifier" => out.request_headers = header_edits(d, &sfield, settings),
            "ResponseHeaderModifier" => out.response_headers = header_edits(d, &sfield, settings),
            "URLRewrite" => out.rewrite = rewrite(d, &sfield, settings, all_prefix),
            "RequestRedirect" => out.redirect = redirect(d, &sfield, settings, listener_port),
            "RequestMirror" => mirror(d, &sfield, settings),
            "ExtensionRef" => {
                if let Some(r) = mapping(d, &sfield, settings, &["group", "kind", "name"]) {
                    let group = string(d, &sfield, r, "group").unwrap_or_default();
                    let ext_kind = required(d, &sfield, r, "kind").unwrap_or_default();
                    let name = required(d, &sfield, r, "name").unwrap_or_default();
                    d.note(
                        &field,
                        format!(
                            "not converted: the implementation-specific filter {group}/{ext_kind} \
                             {name:?} has no Ringway equivalent; the rule runs without it"
                        ),
                    );
                }
            }
            "CORS" => d.note(
                &field,
                "not converted: write Ringway's cors policy (docs/policies.md) into the route's \
                 policies.inbound instead",
            ),
            _ => d.note(
                &field,
                format!(
                    "not converted: Ringway has no {kind} filter (validate-jwt and the other \
                     inbound policies of docs/policies.md may do the job); the rule runs without it"
                ),
            ),
        }
    }
    if seen.contains(&"RequestRedirect") && seen.contains(&"URLRewrite") {
        d.error(
            &join(rule_field, "filters"),
            "a rule may have a RequestRedirect or a URLRewrite filter, not both",
        );
    }
    out
}

/// Headers the gateway writes itself; Ringway lets no filter edit them.
const MANAGED: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// A `requestHeaderModifier` or `responseHeaderModifier` as Ringway's `{set, add, remove}`.
fn header_edits(d: &mut Diag, field: &str, v: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(m) = mapping(d, field, v, &["set", "add", "remove"]) else {
        return out;
    };
    let managed = |d: &mut Diag, at: &str, name: &str| {
        let hit = MANAGED.iter().any(|h| h.eq_ignore_ascii_case(name));
        if hit {
            d.note(
                at,
                format!(
                    "{name:?} is not edited: Ringway writes this header itself (framing, \
                     connection management, Host as the client sent it) and lets no filter \
                     change it"
                ),
            );
        }
        hit
    };
    for key in ["set", "add"] {
        let mut pairs = Map::new();
        for (i, item) in list(d, field, m, key).iter().enumerate() {
            let ifield = format!("{field}.{key}[{i}]");
            let Some(item) = mapping(d, &ifield, item, &["name", "value"]) else {
                continue;
            };
            let name = required(d, &ifield, item, "name");
            let value = text(d, &ifield, item, "value");
            if value.is_none() && item.get("value").is_none() {
                d.error(&join(&ifield, "value"), "is required");
            }
            let (Some(name), Some(value)) = (name, value) else {
                continue;
            };
            if !is_token(name) {
                d.error(
                    &join(&ifield, "name"),
                    format!("{name:?} is not a valid header name"),
                );
                continue;
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                d.error(
                    &join(&ifield, "value"),
                    "a header value may not hold control characters or line breaks",
                );
                continue;
            }
            if managed(d, &ifield, name) || pairs.keys().any(|k| k.eq_ignore_ascii_case(name)) {
                continue;
            }
            pairs.insert(name.to_string(), json!(value));
        }
        if !pairs.is_empty() {
            out.insert(key.into(), Value::Object(pairs));
        }
    }
    let mut remove = Vec::new();
    for (i, name) in list(d, field, m, "remove").iter().enumerate() {
        let ifield = format!("{field}.remove[{i}]");
        match name.as_str() {
            Some(name) if is_token(name) => {
                if !managed(d, &ifield, name) {
                    remove.push(json!(name));
                }
            }
            _ => d.error(&ifield, format!("{name} is not a header name")),
        }
    }
    if !remove.is_empty() {
        out.insert("remove".into(), Value::Array(remove));
    }
    out
}

/// A path modifier (`ReplaceFullPath` or `ReplacePrefixMatch`) and its value.
fn path_modifier<'v>(
    d: &mut Diag,
    field: &str,
    m: &'v Map<String, Value>,
) -> Option<(&'v str, &'v str)> {
    let pfield = join(field, "path");
    let p = child(
        d,
        field,
        m,
        "path",
        &["type", "replaceFullPath", "replacePrefixMatch"],
    )?;
    let kind = one_of(
        d,
        &pfield,
        p,
        "type",
        &["ReplaceFullPath", "ReplacePrefixMatch"],
    );
    if kind.is_none() && p.get("type").is_none() {
        d.error(&join(&pfield, "type"), "is required");
    }
    let kind = kind?;
    let key = if kind == "ReplaceFullPath" {
        "replaceFullPath"
    } else {
        "replacePrefixMatch"
    };
    let other = if kind == "ReplaceFullPath" {
        "replacePrefixMatch"
    } else {
        "replaceFullPath"
    };
    if p.get(other).is_some() {
        d.error(
            &join(&pfield, other),
            format!("does not belong to a path modifier of type {kind}"),
        );
    }
    let value = string(d, &pfield, p, key);
    let Some(value) = value else {
        d.error(&join(&pfield, key), format!("is required by type {kind}"));
        return None;
    };
    let bad = value
        .bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)));
    if !value.starts_with('/') || bad {
        d.error(
            &join(&pfield, key),
            format!("{value:?} must start with '/' and hold only URL path characters"),
        );
        return None;
    }
    Some((kind, value))
}

fn rewrite(d: &mut Diag, field: &str, v: &Value, all_prefix: bool) -> Option<Value> {
    let m = mapping(d, field, v, &["hostname", "path"])?;
    if let Some(host) = string(d, field, m, "hostname") {
        if !is_hostname(host) || host.starts_with('*') {
            d.error(
                &join(field, "hostname"),
                format!("{host:?} is not a hostname"),
            );
        } else {
            d.note(
                &join(field, "hostname"),
                format!(
                    "not converted: Ringway forwards the Host the client sent (no filter or \
                     backend setting changes it), so the backend sees that Host, not {host:?}"
                ),
            );
        }
    }
    let (kind, value) = path_modifier(d, field, m)?;
    if kind == "ReplaceFullPath" {
        return Some(json!({"path": value}));
    }
    if !all_prefix {
        d.note(
            &join(field, "path"),
            format!(
                "not converted: a prefix rewrite (to {value:?}) needs every match of the rule to be \
                 a PathPrefix match; the path is forwarded unchanged"
            ),
        );
        return None;
    }
    Some(json!({"prefix": value}))
}

fn redirect(d: &mut Diag, field: &str, v: &Value, listener_port: Option<u16>) -> Option<Value> {
    let known = ["scheme", "hostname", "path", "port", "statusCode"];
    let m = mapping(d, field, v, &known)?;
    let mut out = Map::new();
    let scheme = one_of(d, field, m, "scheme", &["http", "https"]);
    if let Some(scheme) = scheme {
        out.insert("scheme".into(), json!(scheme));
    }
    let host = string(d, field, m, "hostname");
    if let Some(host) = host {
        if !is_hostname(host) || host.starts_with('*') {
            d.error(
                &join(field, "hostname"),
                format!("{host:?} is not a hostname"),
            );
        }
        out.insert("host".into(), json!(host.to_ascii_lowercase()));
    }
    let port = integer(d, field, m, "port", 1..=65535);
    match (port, scheme, host, listener_port) {
        (Some(p), ..) => {
            out.insert("port".into(), json!(p));
        }
        // Without scheme or port the Gateway API keeps the listener's port; Ringway would drop
        // the port along with the host.
        (None, None, Some(_), Some(p)) => {
            out.insert("port".into(), json!(p));
        }
        _ => {}
    }
    if let Some((kind, value)) = path_modifier(d, field, m) {
        if kind == "ReplaceFullPath" {
            out.insert("path".into(), json!(value));
        } else {
            d.note(
                &join(field, "path"),
                format!(
                    "not converted: Ringway redirects replace the whole path or keep it; the \
                     matched prefix cannot be replaced by {value:?}, so the redirect keeps the \
                     request's path"
                ),
            );
        }
    }
    let status = match integer(d, field, m, "statusCode", 100..=599) {
        None => 302,
        Some(s @ (301 | 302 | 303 | 307 | 308)) => s,
        Some(s) => {
            d.note(
                &join(field, "statusCode"),
                format!("{s} is not a redirect status Ringway sends (301, 302, 303, 307, 308): 302 is used"),
            );
            302
        }
    };
    out.insert("status".into(), json!(status));
    Some(Value::Object(out))
}

fn mirror(d: &mut Diag, field: &str, v: &Value) {
    let Some(m) = mapping(d, field, v, &["backendRef", "percent", "fraction"]) else {
        return;
    };
    let target = child(
        d,
        field,
        m,
        "backendRef",
        &["group", "kind", "name", "namespace", "port"],
    )
    .and_then(|r| required(d, &join(field, "backendRef"), r, "name"));
    if target.is_none() && m.get("backendRef").is_none() {
        d.error(&join(field, "backendRef"), "is required");
        return;
    }
    let parent = field.rsplit_once('.').map_or(field, |(p, _)| p);
    d.note(
        parent,
        format!(
            "not converted: Ringway does not mirror requests; the copies meant for {:?} are not \
             sent",
            target.unwrap_or_default()
        ),
    );
}
