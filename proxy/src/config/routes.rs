//! Validation of `routes`: hosts, matches, the action and filters, compiled into
//! [`RouteConfig`]s.
//!
//! Like the rest of validation it records every error with its path and carries on; a route
//! with any error is left out of the result (the load fails anyway).

use bytes::Bytes;

use super::model::{self, PathKind, ValueKind};
use super::validate::Errors;
use super::{RouteAction, RouteConfig};
use crate::route::{
    full_match_regex, DirectResponse, HeaderEdits, HeaderMatch, HostPattern, PathMatch, QueryMatch,
    Redirect, Rewrite, RouteMatch, Template, ValueMatch,
};

pub(super) fn route(
    i: usize,
    r: &model::Route,
    known_backends: &[&str],
    errors: &mut Errors,
) -> Option<RouteConfig> {
    let path = format!("routes[{i}]");
    let before = errors.0.len();
    let mut hosts = Vec::new();
    for (h, host) in r.hosts.iter().enumerate() {
        match HostPattern::parse(host) {
            Ok(p) => hosts.push(p),
            Err(e) => errors.push(format_args!("{path}.hosts[{h}]"), e),
        }
    }
    let mut matches = Vec::new();
    let mut all_prefix = true;
    let mut first_non_prefix = None;
    match r.matches.as_deref() {
        None | Some([]) => matches.push(RouteMatch {
            path: PathMatch::Prefix(Box::default()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }),
        Some(list) => {
            for (m, spec) in list.iter().enumerate() {
                let kind = spec.path.as_ref().map_or(PathKind::Prefix, |p| p.kind);
                if kind != PathKind::Prefix && all_prefix {
                    all_prefix = false;
                    first_non_prefix = Some((m, kind));
                }
                if let Some(compiled) = route_match(&format!("{path}.matches[{m}]"), spec, errors) {
                    matches.push(compiled);
                }
            }
        }
    }

    let actions: Vec<&str> = [
        r.backend.as_ref().map(|_| "backend"),
        r.redirect.as_ref().map(|_| "redirect"),
        r.return_response.as_ref().map(|_| "return_response"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let action = match actions.len() {
        0 => {
            errors.push(
                &path,
                "a route needs one action: backend, redirect or return_response",
            );
            None
        }
        1 => action(&path, r, known_backends, errors),
        _ => {
            errors.push(
                &path,
                format!(
                    "a route has exactly one action, but this one has {}",
                    actions.join(" and ")
                ),
            );
            None
        }
    };

    let fpath = format!("{path}.filters");
    let request_headers = header_edits(
        &format!("{fpath}.request_headers"),
        &r.filters.request_headers,
        errors,
    );
    let response_headers = header_edits(
        &format!("{fpath}.response_headers"),
        &r.filters.response_headers,
        errors,
    );
    let rewrite = r.filters.rewrite.as_ref().and_then(|rw| {
        let rpath = format!("{fpath}.rewrite");
        if r.backend.is_none() && !actions.is_empty() {
            errors.push(&rpath, "a rewrite applies only to routes with a backend");
        }
        match (&rw.path, &rw.prefix) {
            (Some(_), Some(_)) => {
                errors.push(&rpath, "set either path or prefix, not both");
                None
            }
            (None, None) => {
                errors.push(&rpath, "set path or prefix");
                None
            }
            (Some(p), None) => {
                if !p.starts_with('/') {
                    errors.push(format_args!("{rpath}.path"), format!("{p:?} must start with '/'"));
                }
                check_rewrite_path(&format!("{rpath}.path"), p, errors);
                Some(Rewrite::Path(p.as_bytes().into()))
            }
            (None, Some(p)) => {
                if !p.starts_with('/') {
                    errors.push(
                        format_args!("{rpath}.prefix"),
                        format!("{p:?} must start with '/'"),
                    );
                }
                check_rewrite_path(&format!("{rpath}.prefix"), p, errors);
                if let Some((m, kind)) = first_non_prefix {
                    errors.push(
                        format_args!("{rpath}.prefix"),
                        format!(
                            "a prefix rewrite needs every match of the route to be a prefix match, but matches[{m}] is {}",
                            kind_name(kind)
                        ),
                    );
                }
                let p = p.strip_suffix('/').unwrap_or(p);
                Some(Rewrite::Prefix(p.as_bytes().into()))
            }
        }
    });

    if errors.0.len() != before {
        return None;
    }
    Some(RouteConfig {
        name: r.name.clone().unwrap_or_else(|| format!("route-{i}")),
        hosts,
        matches,
        action: action?,
        request_headers,
        response_headers,
        rewrite,
        pipeline: None,
    })
}

fn kind_name(kind: PathKind) -> &'static str {
    match kind {
        PathKind::Exact => "exact",
        PathKind::Prefix => "prefix",
        PathKind::Template => "template",
        PathKind::Regex => "regex",
    }
}

pub(super) fn route_match(
    path: &str,
    spec: &model::Match,
    errors: &mut Errors,
) -> Option<RouteMatch> {
    let before = errors.0.len();
    let path_match = match &spec.path {
        None => PathMatch::Prefix(Box::default()),
        Some(p) => {
            let vpath = format!("{path}.path.value");
            let v = p.value.as_str();
            if p.kind != PathKind::Regex && !v.starts_with('/') {
                errors.push(&vpath, format!("{v:?} must start with '/'"));
            }
            match p.kind {
                PathKind::Exact => PathMatch::Exact(v.as_bytes().into()),
                PathKind::Prefix => {
                    let v = v.strip_suffix('/').unwrap_or(v);
                    PathMatch::Prefix(v.as_bytes().into())
                }
                PathKind::Template => match Template::parse(v) {
                    Ok(t) => PathMatch::Template(t),
                    Err(e) => {
                        if v.starts_with('/') {
                            errors.push(&vpath, e);
                        }
                        return None;
                    }
                },
                PathKind::Regex => match full_match_regex(v) {
                    Ok(re) => PathMatch::Regex(re),
                    Err(e) => {
                        errors.push(&vpath, e);
                        return None;
                    }
                },
            }
        }
    };
    let method = spec.method.as_ref().map(|m| {
        if !is_token(m) {
            errors.push(
                format_args!("{path}.method"),
                format!("{m:?} is not an HTTP method"),
            );
        } else if m.bytes().any(|b| b.is_ascii_lowercase()) {
            const KNOWN: [&str; 9] = [
                "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
            ];
            let upper = m.to_ascii_uppercase();
            if KNOWN.contains(&upper.as_str()) {
                errors.push(
                    format_args!("{path}.method"),
                    format!("methods are case-sensitive: write {upper:?}, not {m:?}"),
                );
            }
        }
        m.as_bytes().into()
    });
    let value_match = |vpath: &str, m: &model::ValueMatch, errors: &mut Errors| match m.kind {
        ValueKind::Exact => Some(ValueMatch::Exact(m.value.0.as_bytes().into())),
        ValueKind::Regex => match full_match_regex(&m.value.0) {
            Ok(re) => Some(ValueMatch::Regex(re)),
            Err(e) => {
                errors.push(format_args!("{vpath}.value"), e);
                None
            }
        },
    };
    let mut headers = Vec::new();
    for (h, m) in spec.headers.iter().enumerate() {
        let hpath = format!("{path}.headers[{h}]");
        if !is_token(&m.name) {
            errors.push(
                format_args!("{hpath}.name"),
                format!("{:?} is not a valid header name", m.name),
            );
        }
        if let Some(value) = value_match(&hpath, m, errors) {
            headers.push(HeaderMatch {
                name: m.name.to_ascii_lowercase().into_bytes().into(),
                value,
            });
        }
    }
    let mut query = Vec::new();
    for (q, m) in spec.query.iter().enumerate() {
        let qpath = format!("{path}.query[{q}]");
        if m.name.is_empty() || m.name.contains(['&', '=', '#']) {
            errors.push(
                format_args!("{qpath}.name"),
                format!("{:?} is not a query parameter name", m.name),
            );
        }
        if let Some(value) = value_match(&qpath, m, errors) {
            query.push(QueryMatch {
                name: m.name.as_bytes().into(),
                value,
            });
        }
    }
    (errors.0.len() == before).then_some(RouteMatch {
        path: path_match,
        method,
        headers,
        query,
    })
}

fn action(
    path: &str,
    r: &model::Route,
    known_backends: &[&str],
    errors: &mut Errors,
) -> Option<RouteAction> {
    if let Some(name) = &r.backend {
        if !known_backends.contains(&name.as_str()) {
            errors.push(
                format_args!("{path}.backend"),
                super::unknown_backend_among(name, known_backends),
            );
            return None;
        }
        return Some(RouteAction::Backend(name.clone()));
    }
    if let Some(rd) = &r.redirect {
        let rpath = format!("{path}.redirect");
        let before = errors.0.len();
        if let Some(s) = &rd.scheme {
            if s != "http" && s != "https" {
                errors.push(
                    format_args!("{rpath}.scheme"),
                    format!("must be http or https, not {s:?}"),
                );
            }
        }
        if let Some(h) = &rd.host {
            let ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
            if !ok {
                errors.push(
                    format_args!("{rpath}.host"),
                    format!("{h:?} is not a host name"),
                );
            }
        }
        if rd.port == Some(0) {
            errors.push(format_args!("{rpath}.port"), "must be from 1 to 65535");
        }
        if let Some(p) = &rd.path {
            if !p.starts_with('/') || !is_header_value(p) {
                errors.push(
                    format_args!("{rpath}.path"),
                    format!("{p:?} must start with '/'"),
                );
            }
        }
        let status = rd.status.unwrap_or(302);
        if ![301, 302, 303, 307, 308].contains(&status) {
            errors.push(
                format_args!("{rpath}.status"),
                format!("must be 301, 302, 303, 307 or 308, not {status}"),
            );
        }
        return (errors.0.len() == before).then(|| {
            RouteAction::Redirect(Redirect {
                scheme: rd.scheme.clone(),
                host: rd.host.clone(),
                port: rd.port,
                path: rd.path.clone(),
                status,
            })
        });
    }
    let rr = r.return_response.as_ref()?;
    let rpath = format!("{path}.return_response");
    let before = errors.0.len();
    if !(200..=599).contains(&rr.status) {
        errors.push(
            format_args!("{rpath}.status"),
            format!("must be from 200 to 599, not {}", rr.status),
        );
    }
    for (name, value) in &rr.headers.0 {
        check_header(&format!("{rpath}.headers"), name, Some(value), errors);
        check_not_managed(&format!("{rpath}.headers"), name, errors);
    }
    (errors.0.len() == before).then(|| {
        RouteAction::Respond(DirectResponse {
            status: rr.status,
            headers: rr.headers.0.clone(),
            body: Bytes::from(rr.body.clone().unwrap_or_default()),
        })
    })
}

fn header_edits(path: &str, f: &model::HeaderFilter, errors: &mut Errors) -> HeaderEdits {
    let mut pairs = |key: &str, list: &[(String, String)]| {
        list.iter()
            .map(|(name, value)| {
                check_header(&format!("{path}.{key}"), name, Some(value), errors);
                check_not_managed(&format!("{path}.{key}"), name, errors);
                (
                    name.to_ascii_lowercase().into_bytes().into(),
                    value.as_bytes().into(),
                )
            })
            .collect()
    };
    let set = pairs("set", &f.set.0);
    let add = pairs("add", &f.add.0);
    let remove = f
        .remove
        .iter()
        .enumerate()
        .map(|(i, name)| {
            check_header(&format!("{path}.remove[{i}]"), name, None, errors);
            check_not_managed(&format!("{path}.remove[{i}]"), name, errors);
            name.to_ascii_lowercase().into_bytes().into()
        })
        .collect();
    HeaderEdits { set, add, remove }
}

/// Records an error unless `name` is a valid header name and `value` a valid value.
pub(super) fn check_header(path: &str, name: &str, value: Option<&str>, errors: &mut Errors) {
    if !is_token(name) {
        errors.push(path, format!("{name:?} is not a valid header name"));
    } else if let Some(value) = value {
        if !is_header_value(value) {
            errors.push(
                format_args!("{path}.{name}"),
                format!(
                    "{value:?} is not a valid header value (no control characters or line breaks)"
                ),
            );
        }
    }
}

/// Headers the gateway writes itself, because they frame the message, manage the connection
/// or name the target: an edit of one could make the next hop read the message differently
/// (a body taken for a second request), so no filter may set, add or remove them.
const MANAGED_HEADERS: [&str; 9] = [
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

pub(super) fn check_not_managed(path: &str, name: &str, errors: &mut Errors) {
    if MANAGED_HEADERS.iter().any(|m| m.eq_ignore_ascii_case(name)) {
        errors.push(
            path,
            format!(
                "{name:?} cannot be edited: the gateway writes it itself (framing, connection \
                 management and Host follow the message, not the configuration)"
            ),
        );
    }
}

/// A rewrite's path must be a valid path as it goes on the request line: RFC 3986 `pchar`s and
/// `/`, no space, control character, `?` or `#`.
pub(super) fn check_rewrite_path(path: &str, value: &str, errors: &mut Errors) {
    let bad = value
        .bytes()
        .find(|&b| !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)));
    if let Some(b) = bad {
        let what = match b {
            b' ' => "a space".to_string(),
            b'?' | b'#' => format!("{:?}", b as char),
            0..=0x1f | 0x7f => format!("the control character 0x{b:02x}"),
            _ => format!("the byte 0x{b:02x} (percent-encode it)"),
        };
        errors.push(
            path,
            format!(
                "{value:?} contains {what}; a rewritten path may hold only URL path characters"
            ),
        );
    }
}

/// RFC 9110 token: header names and methods.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}
