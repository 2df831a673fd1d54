//! From the document as written to a [`Config`]: defaults, ranges, references, compiled
//! matchers.
//!
//! Every check records its error with the document path (`routes[1].matches[0].path.value`)
//! and carries on, so one run reports everything wrong with the file.

use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ringway_core::http1::Limits;
use ringway_core::runtime::{Driver, RingFlags, RuntimeSettings};

use super::model::{self, Document};
use super::{Backend, Balance, Config, Listener, PoolSettings, RouteConfig, Target, Timeouts};

/// Collected errors, each `PATH: message`.
pub(super) struct Errors(pub(super) Vec<String>);

impl Errors {
    pub(super) fn push(&mut self, path: impl Display, message: impl Display) {
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
        .filter_map(|(i, r)| super::routes::route(i, r, &known, &mut errors))
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
