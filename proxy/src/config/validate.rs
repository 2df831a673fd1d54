//! From the document as written to a [`Config`]: defaults, ranges, references, compiled
//! matchers.
//!
//! Every check records its error with the document path (`routes[1].matches[0].path.value`)
//! and carries on, so one run reports everything wrong with the file.

use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use ringway_core::http1::Limits;
use ringway_core::runtime::{Driver, RingFlags, RuntimeSettings};

use super::model::{self, Document, PathKind, ValueKind};
use super::{
    Backend, Balance, Config, Listener, PoolSettings, RouteAction, RouteConfig, Target, Timeouts,
};
use crate::route::{
    full_match_regex, DirectResponse, HeaderEdits, HeaderMatch, HostPattern, PathMatch, QueryMatch,
    Redirect, Rewrite, RouteMatch, Template, ValueMatch,
};

/// Collected errors, each `PATH: message`.
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, path: impl Display, message: impl Display) {
        self.0.push(format!("{path}: {message}"));
    }
}

pub(super) fn validate(doc: Document, source: &str) -> Result<Config, Vec<String>> {
    let mut errors = Errors(Vec::new());
    let runtime = runtime(&doc.runtime, &mut errors);
    let limits = limits(&doc.limits, &mut errors);
    let timeouts = timeouts(&doc.timeouts, &mut errors);
    let listeners = listeners(&doc.listeners, &mut errors);
    let backends = backends(&doc.backends, &mut errors);
    let known: Vec<&str> = doc.backends.iter().map(|b| b.name.as_str()).collect();
    let routes: Vec<RouteConfig> = doc
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| route(i, r, &known, &mut errors))
        .collect();
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    Ok(Config {
        source: source.to_owned(),
        workers: doc.workers.0,
        cpus: doc.cpus.map(|c| c.0),
        runtime,
        limits,
        timeouts,
        listeners,
        backends,
        routes,
    })
}

fn runtime(r: &model::Runtime, errors: &mut Errors) -> RuntimeSettings {
    let defaults = RuntimeSettings::default();
    let ring_entries = r.ring_entries.unwrap_or(defaults.ring_entries);
    if !(2..=32768).contains(&ring_entries) || !ring_entries.is_power_of_two() {
        errors.push(
            "runtime.ring_entries",
            format!("must be a power of two from 2 to 32768, not {ring_entries}"),
        );
    }
    RuntimeSettings {
        driver: match r.driver {
            model::Driver::Auto => Driver::Auto,
            model::Driver::IoUring => Driver::IoUring,
            model::Driver::Epoll => Driver::Epoll,
        },
        ring_entries,
        ring_flags: match r.ring_flags {
            model::RingFlags::None => RingFlags::None,
            model::RingFlags::CoopTaskrun => RingFlags::CoopTaskrun,
            model::RingFlags::DeferTaskrun => RingFlags::DeferTaskrun,
        },
    }
}

fn limits(l: &model::Limits, errors: &mut Errors) -> Limits {
    let defaults = Limits::default();
    let mut positive = |key: &str, value: Option<u64>, default: usize| -> usize {
        match value.map(usize::try_from) {
            None => default,
            Some(Ok(0)) => {
                errors.push(format_args!("limits.{key}"), "must be greater than 0");
                default
            }
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                errors.push(format_args!("limits.{key}"), "is too large");
                default
            }
        }
    };
    Limits {
        max_head_bytes: positive(
            "max_header_bytes",
            l.max_header_bytes.map(|s| s.0),
            defaults.max_head_bytes,
        ),
        max_headers: positive(
            "max_headers",
            l.max_headers.map(|n| n as u64),
            defaults.max_headers,
        ),
        max_uri_bytes: positive(
            "max_uri_bytes",
            l.max_uri_bytes.map(|s| s.0),
            defaults.max_uri_bytes,
        ),
        max_body_bytes: l.max_body_bytes.map_or(defaults.max_body_bytes, |s| s.0),
    }
}

fn timeouts(t: &model::Timeouts, errors: &mut Errors) -> Timeouts {
    let defaults = Timeouts::default();
    let mut positive = |key: &str, value: Option<super::units::Dur>, default: Duration| match value
    {
        None => default,
        Some(d) if d.0.is_zero() => {
            errors.push(format_args!("timeouts.{key}"), "must be greater than 0s");
            default
        }
        Some(d) => d.0,
    };
    Timeouts {
        header: positive("header", t.header, defaults.header),
        idle: positive("idle", t.idle, defaults.idle),
        upstream_connect: positive(
            "upstream_connect",
            t.upstream_connect,
            defaults.upstream_connect,
        ),
        upstream_response: positive(
            "upstream_response",
            t.upstream_response,
            defaults.upstream_response,
        ),
        request: t.request.map(|d| d.0).filter(|d| !d.is_zero()),
        drain: t.drain.map_or(defaults.drain, |d| d.0),
    }
}

fn listeners(list: &[model::Listener], errors: &mut Errors) -> Vec<Listener> {
    if list.is_empty() {
        errors.push("listeners", "at least one listener is required");
    }
    let mut out: Vec<Listener> = Vec::new();
    for (i, l) in list.iter().enumerate() {
        let name = l.name.clone().unwrap_or_else(|| format!("listener-{i}"));
        if name.is_empty() {
            errors.push(format_args!("listeners[{i}].name"), "must not be empty");
        }
        if let Some(j) = list[..i]
            .iter()
            .enumerate()
            .position(|(j, o)| o.name.clone().unwrap_or_else(|| format!("listener-{j}")) == name)
        {
            errors.push(
                format_args!("listeners[{i}].name"),
                format!("listener name {name:?} is already used by listeners[{j}]"),
            );
        }
        let address = match l.address.trim().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                errors.push(
                    format_args!("listeners[{i}].address"),
                    format!("{:?} is not an IP:port address (write e.g. 0.0.0.0:8080, or [::]:8080 for IPv6)", l.address),
                );
                continue;
            }
        };
        // Port 0 means "any free port", chosen separately for each listener.
        if let Some(j) = out
            .iter()
            .position(|o| o.address == address && address.port() != 0)
        {
            errors.push(
                format_args!("listeners[{i}].address"),
                format!("address {address} is already used by {:?}", out[j].name),
            );
        }
        out.push(Listener { name, address });
    }
    out
}

fn backends(list: &[model::Backend], errors: &mut Errors) -> Vec<Backend> {
    let mut out = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let path = format!("backends[{i}]");
        if b.name.is_empty() {
            errors.push(format_args!("{path}.name"), "must not be empty");
        }
        if let Some(j) = list[..i].iter().position(|o| o.name == b.name) {
            errors.push(
                format_args!("{path}.name"),
                format!("backend name {:?} is already used by backends[{j}]", b.name),
            );
        }
        if b.targets.is_empty() {
            errors.push(
                format_args!("{path}.targets"),
                "at least one target is required",
            );
        }
        let mut targets = Vec::new();
        for (t, target) in b.targets.iter().enumerate() {
            let tpath = format!("{path}.targets[{t}]");
            let weight = target.weight.unwrap_or(1);
            if !(1..=1000).contains(&weight) {
                errors.push(
                    format_args!("{tpath}.weight"),
                    format!("must be from 1 to 1000, not {weight}"),
                );
            }
            match resolve_target(&target.url) {
                Ok((addr, authority)) => targets.push(Target {
                    url: target.url.clone(),
                    addr,
                    authority,
                    weight,
                    priority: target.priority.unwrap_or(0),
                }),
                Err(e) => errors.push(format_args!("{tpath}.url"), e),
            }
        }
        let defaults = PoolSettings::default();
        let idle_timeout = b.pool.idle_timeout.map_or(defaults.idle_timeout, |d| d.0);
        if idle_timeout.is_zero() {
            errors.push(
                format_args!("{path}.pool.idle_timeout"),
                "must be greater than 0s",
            );
        }
        out.push(Backend {
            name: b.name.clone(),
            balance: match b.balance {
                model::Balance::RoundRobin => Balance::RoundRobin,
                model::Balance::Weighted => Balance::Weighted,
                model::Balance::Priority => Balance::Priority,
            },
            targets,
            pool: PoolSettings {
                max_idle_per_target: b
                    .pool
                    .max_idle_per_target
                    .unwrap_or(defaults.max_idle_per_target),
                idle_timeout,
            },
            unavailable_for: b.unavailable_for.map_or(Duration::from_secs(5), |d| d.0),
        });
    }
    out
}

/// Parses `http://host[:port][/]` and resolves it: the address and the authority as written.
fn resolve_target(url: &str) -> Result<(SocketAddr, String), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{url:?} is not a URL (write e.g. http://10.0.0.5:8080)"
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{url:?}: TLS upstreams are not supported yet (use http://)"
            ))
        }
        _ => {
            return Err(format!(
                "{url:?}: scheme {scheme:?} is not supported (use http://)"
            ))
        }
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "{url:?}: a target URL has no path or query (write http://host:port)"
        ));
    }
    if authority.contains('@') {
        return Err(format!("{url:?}: a target URL has no user information"));
    }
    // The port follows the last ':' unless that ':' is inside an IPv6 literal.
    let (host, port) = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            let port_text = &authority[colon + 1..];
            match port_text.parse::<u16>() {
                Ok(p) if p != 0 => (&authority[..colon], p),
                _ => return Err(format!("{url:?}: {port_text:?} is not a port (1..=65535)")),
            }
        }
        _ => (authority, 80),
    };
    if host.is_empty() || (host.starts_with('[') != host.ends_with(']')) {
        return Err(format!("{url:?} has no valid host"));
    }
    let lookup = format!("{host}:{port}");
    let addr = lookup
        .to_socket_addrs()
        .map_err(|e| format!("{url:?}: cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url:?}: {host:?} resolved to no address"))?;
    Ok((addr, authority.to_owned()))
}

fn route(
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
                Some(Rewrite::Path(p.as_bytes().into()))
            }
            (None, Some(p)) => {
                if !p.starts_with('/') {
                    errors.push(
                        format_args!("{rpath}.prefix"),
                        format!("{p:?} must start with '/'"),
                    );
                }
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

fn route_match(path: &str, spec: &model::Match, errors: &mut Errors) -> Option<RouteMatch> {
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
            name.to_ascii_lowercase().into_bytes().into()
        })
        .collect();
    HeaderEdits { set, add, remove }
}

/// Records an error unless `name` is a valid header name and `value` a valid value.
fn check_header(path: &str, name: &str, value: Option<&str>, errors: &mut Errors) {
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

/// RFC 9110 token: header names and methods.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}
