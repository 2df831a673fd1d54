//! From the document as written to a [`Config`]: defaults, ranges, references, compiled
//! matchers.
//!
//! Every check records its error with the document path (`routes[1].matches[0].path.value`)
//! and carries on, so one run reports everything wrong with the file.

use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
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
    validate_in(doc, source, None)
}

/// Validates `doc`, reading the files it names relative to `dir` (default: the directory of
/// `source`).
pub(super) fn validate_in(
    mut doc: Document,
    source: &str,
    dir: Option<&Path>,
) -> Result<Config, Vec<String>> {
    let mut errors = Errors(Vec::new());
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| {
        std::path::Path::new(source)
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf()
    });
    let inputs = super::sources::expand(&mut doc, &dir, &mut errors);
    let result = validated(doc, source, &dir, inputs, errors);
    // An API's revisions and its unversioned default share what they do not set themselves,
    // so one mistake may be found once for each: it is said once.
    let mut seen = std::collections::HashSet::new();
    result.map_err(|list| {
        list.into_iter()
            .filter(|e| seen.insert(e.clone()))
            .collect()
    })
}

fn validated(
    doc: Document,
    source: &str,
    dir: &Path,
    inputs: Vec<std::path::PathBuf>,
    mut errors: Errors,
) -> Result<Config, Vec<String>> {
    let runtime = runtime(&doc.runtime, &mut errors);
    let limits = limits(&doc.limits, &mut errors);
    let timeouts = timeouts(&doc.timeouts, &mut errors);
    let listeners = listeners(&doc.listeners, dir, &mut errors);
    let backends = backends(&doc.backends, dir, &mut errors);
    let known: Vec<&str> = doc.backends.iter().map(|b| b.name.as_str()).collect();
    let mut routes: Vec<RouteConfig> = Vec::new();
    let mut route_docs = Vec::new();
    for (i, r) in doc.routes.iter().enumerate() {
        if let Some(route) = super::routes::route(i, r, &known, &mut errors) {
            routes.push(route);
            route_docs.push((i, r));
        }
    }
    let compiled = super::apis::compile(&doc, source, &known, &route_docs, &mut errors);
    for (route, pipeline) in routes.iter_mut().zip(&compiled.route_pipelines) {
        route.pipeline = *pipeline;
    }
    let cache = super::apis::cache_settings(&doc.cache, &mut errors);
    let state = super::apis::state_settings(&doc.state, source, &mut errors);
    let upgrades = upgrades(doc.upgrades.as_deref(), &mut errors);
    let admin = doc.admin.as_ref().and_then(|a| admin(a, dir, &mut errors));
    let access_log = doc
        .access_log
        .as_ref()
        .and_then(|a| access_log(a, dir, &mut errors));
    let tracing = doc.tracing.as_ref().and_then(|t| tracing(t, &mut errors));
    let portal = doc
        .portal
        .as_ref()
        .and_then(|p| super::portal::portal(p, source, dir, admin.as_ref(), &mut errors));
    let products = doc
        .products
        .iter()
        .map(|p| super::ProductInfo {
            name: p.name.clone(),
            display_name: p.display_name.clone(),
            description: p.description.clone(),
            apis: p.apis.clone(),
            approval_required: p.approval_required.unwrap_or(false),
            subscription_required: p.subscription_required.unwrap_or(true),
        })
        .collect();
    let cluster = doc
        .cluster
        .as_ref()
        .and_then(|c| super::cluster::cluster(c, dir, &mut errors));
    let max_connections_per_worker = doc.limits.max_connections_per_worker;
    if let Some(n) = max_connections_per_worker {
        if !(1..=MAX_CONNECTIONS).contains(&n) {
            errors.push(
                "limits.max_connections_per_worker",
                format!("must be from 1 to {MAX_CONNECTIONS}, not {n}"),
            );
        }
    }
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    let buffer_size = buffer_size(&doc.runtime, &mut errors);
    let accept_backlog = accept_backlog(&doc.limits, &mut errors);
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    Ok(Config {
        buffer_size,
        accept_backlog,
        cluster,
        source: source.to_owned(),
        workers: doc.workers.0,
        cpus: doc.cpus.map(|c| c.0),
        runtime,
        limits,
        timeouts,
        listeners,
        backends,
        routes,
        upgrades,
        max_connections_per_worker,
        inputs,
        portal,
        products,
        apis: compiled.apis,
        version_sets: compiled.version_sets,
        keys: compiled.keys,
        pipelines: compiled.pipelines,
        policy_tables: compiled.tables,
        vars: compiled.vars,
        cache,
        state,
        admin,
        access_log,
        tracing,
    })
}

/// The admin listener: loopback by default; off loopback it needs a token.
fn admin(a: &model::Admin, dir: &Path, errors: &mut Errors) -> Option<super::AdminSettings> {
    let text = a.address.as_deref().unwrap_or("127.0.0.1:9901").trim();
    let Ok(address) = text.parse::<SocketAddr>() else {
        errors.push(
            "admin.address",
            format!("{text:?} is not an IP:port address (write e.g. 127.0.0.1:9901)"),
        );
        return None;
    };
    let token = match (&a.token, &a.token_file) {
        (Some(_), Some(_)) => {
            errors.push("admin", "give token or token_file, not both");
            return None;
        }
        (Some(t), None) => Some(t.trim().to_string()),
        (None, Some(f)) => {
            let path = dir.join(f);
            match std::fs::read_to_string(&path) {
                Ok(t) => Some(t.trim().to_string()),
                Err(e) => {
                    errors.push(
                        "admin.token_file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
        (None, None) => None,
    };
    if token.as_deref().is_some_and(|t| t.len() < 16) {
        errors.push(
            "admin.token",
            "must be at least 16 characters (for example `ringway key new`'s key)",
        );
    }
    if token.is_none() && !address.ip().is_loopback() {
        errors.push(
            "admin.address",
            format!("{address} is not a loopback address: give token or token_file"),
        );
    }
    let tls = a
        .tls
        .as_ref()
        .and_then(|t| admin_tls("admin.tls", t, dir, errors));
    Some(super::AdminSettings {
        address,
        token: token.map(super::Secret::new),
        tls,
        metrics: a.metrics.unwrap_or(true),
    })
}

/// `admin.tls` (and `portal.tls`, at `at`): one certificate chain and key, TLS 1.2 and 1.3,
/// HTTP/1.1.
pub(super) fn admin_tls(
    at: &str,
    t: &model::AdminTls,
    dir: &Path,
    errors: &mut Errors,
) -> Option<Arc<rustls::ServerConfig>> {
    use crate::tls::server::{provider, read_certs, read_key, versions};
    let certs = read_certs(&dir.join(&t.cert)).map_err(|e| errors.push(format!("{at}.cert"), e));
    let key = read_key(&dir.join(&t.key)).map_err(|e| errors.push(format!("{at}.key"), e));
    let (Ok(certs), Ok(key)) = (certs, key) else {
        return None;
    };
    let built = provider(None).and_then(|p| {
        rustls::ServerConfig::builder_with_provider(Arc::new(p))
            .with_protocol_versions(versions(false))
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))
    });
    match built {
        Ok(mut config) => {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            config.max_early_data_size = 0;
            Some(Arc::new(config))
        }
        Err(e) => {
            errors.push(at, e);
            None
        }
    }
}

/// A fraction setting (`sample`): 0.0..=1.0, `default` when absent.
fn fraction(errors: &mut Errors, key: &str, value: Option<f64>, default: f64) -> f64 {
    match value {
        None => default,
        Some(v) if (0.0..=1.0).contains(&v) => v,
        Some(v) => {
            errors.push(
                key,
                format!("must be a fraction from 0.0 to 1.0 (0.1 logs one in ten), not {v}"),
            );
            default
        }
    }
}

/// The most lines a worker may have waiting for the access log's writer.
const MAX_BUFFER_LINES: usize = 1 << 20;

/// `access_log`: where, how much, and how much may wait.
fn access_log(
    a: &model::AccessLog,
    dir: &Path,
    errors: &mut Errors,
) -> Option<super::AccessLogSettings> {
    use super::LogDestination;
    let defaults = super::AccessLogSettings::default();
    let sample = fraction(errors, "access_log.sample", a.sample, defaults.sample);
    let buffer_lines = a.buffer_lines.unwrap_or(defaults.buffer_lines);
    if !(1..=MAX_BUFFER_LINES).contains(&buffer_lines) {
        errors.push(
            "access_log.buffer_lines",
            format!("must be from 1 to {MAX_BUFFER_LINES}, not {buffer_lines}"),
        );
    }
    let destination = match a.path.as_deref().map(str::trim) {
        None | Some("") => {
            errors.push(
                "access_log.path",
                "give stdout, stderr or a file path (relative to the configuration file)",
            );
            return None;
        }
        Some("stdout") => LogDestination::Stdout,
        Some("stderr") => LogDestination::Stderr,
        Some(p) => {
            let path = dir.join(p);
            if path.file_name().is_none() || p.ends_with('/') {
                errors.push(
                    "access_log.path",
                    format!("{} is not a file path", path.display()),
                );
                return None;
            }
            LogDestination::File(path)
        }
    };
    Some(super::AccessLogSettings {
        destination,
        sample,
        buffer_lines,
        errors_always: a.errors_always.unwrap_or(defaults.errors_always),
    })
}

/// The most spans one export may carry.
const MAX_SPAN_BATCH: usize = 100_000;

/// `tracing`: the OTLP/HTTP collector and how spans are sampled and batched.
fn tracing(t: &model::Tracing, errors: &mut Errors) -> Option<super::TracingSettings> {
    let sample = fraction(errors, "tracing.sample", t.sample, 0.01);
    let service_name = t.service_name.as_deref().unwrap_or("ringway").trim();
    if service_name.is_empty() {
        errors.push("tracing.service_name", "must not be empty");
    }
    let batch = t.batch.unwrap_or(512);
    if !(1..=MAX_SPAN_BATCH).contains(&batch) {
        errors.push(
            "tracing.batch",
            format!("must be from 1 to {MAX_SPAN_BATCH} spans, not {batch}"),
        );
    }
    let interval = duration(
        errors,
        "tracing.interval",
        t.interval,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    let timeout = duration(
        errors,
        "tracing.timeout",
        t.timeout,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    let endpoint = match t.otlp_endpoint.as_deref().map(str::trim) {
        None | Some("") => {
            errors.push(
                "tracing.otlp_endpoint",
                "give the collector's OTLP/HTTP URL (e.g. http://127.0.0.1:4318/v1/traces)",
            );
            return None;
        }
        Some(url) => match otlp_endpoint(url) {
            Ok(e) => e,
            Err(e) => {
                errors.push("tracing.otlp_endpoint", e);
                return None;
            }
        },
    };
    Some(super::TracingSettings {
        endpoint,
        sample,
        service_name: service_name.to_string(),
        batch,
        interval,
        timeout,
    })
}

/// Parses `http://host[:port][/path]` (port 80 and path `/v1/traces` by default). The host is
/// resolved at each export, not here: a collector that starts later is no reason to refuse
/// the configuration.
fn otlp_endpoint(url: &str) -> Result<super::OtlpEndpoint, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{url:?} is not a URL (write e.g. http://127.0.0.1:4318/v1/traces)"
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{url:?}: https is not supported for span export; send to a collector over \
                 http:// (a local agent or sidecar that forwards over TLS)"
            ))
        }
        _ => return Err(format!("{url:?}: scheme {scheme:?} is not http://")),
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/v1/traces"),
    };
    if authority.contains('@') {
        return Err(format!("{url:?}: the URL has no user information"));
    }
    if path.contains(['?', '#', ' ']) || path.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!(
            "{url:?}: the path takes no query, fragment or spaces"
        ));
    }
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
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let valid_host = match bare {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        }
    };
    if !valid_host {
        return Err(format!("{url:?} has no valid host"));
    }
    Ok(super::OtlpEndpoint {
        url: url.to_string(),
        authority: authority.to_string(),
        host: bare.unwrap_or(host).to_string(),
        port,
        path: path.to_string(),
    })
}

/// The most connections a worker or a listener may be given (the kernel's own ceiling on
/// descriptors per process, `fs.nr_open`, defaults to 1,048,576).
const MAX_CONNECTIONS: usize = 1 << 20;

fn upgrades(list: Option<&[String]>, errors: &mut Errors) -> Vec<String> {
    let Some(list) = list else {
        return vec!["websocket".to_string()];
    };
    let mut out = Vec::new();
    for (i, name) in list.iter().enumerate() {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !ok {
            errors.push(
                format_args!("upgrades[{i}]"),
                format!("{name:?} is not a protocol name (a token, such as websocket)"),
            );
        } else if name.eq_ignore_ascii_case("h2c") {
            errors.push(
                format_args!("upgrades[{i}]"),
                "h2c cannot be tunnelled: an upgraded HTTP/2 connection would carry requests \
                 past routing and every policy",
            );
        } else {
            out.push(name.to_ascii_lowercase());
        }
    }
    out
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
            model::RingFlags::Sqpoll => RingFlags::Sqpoll,
        },
    }
}

/// `runtime.buffer_size`: 4 KiB to 1 MiB, default 16 KiB.
fn buffer_size(r: &model::Runtime, errors: &mut Errors) -> usize {
    let size = r.buffer_size.map_or(16 * 1024, |s| s.0);
    if !(4 * 1024..=1024 * 1024).contains(&size) {
        errors.push(
            "runtime.buffer_size",
            format!("must be from 4KiB to 1MiB, not {size} bytes"),
        );
    }
    size as usize
}

/// `limits.accept_backlog`: 1 to 65535, default 4096 (the kernel caps it at
/// `net.core.somaxconn`).
fn accept_backlog(l: &model::Limits, errors: &mut Errors) -> u32 {
    let backlog = l.accept_backlog.unwrap_or(4096);
    if !(1..=65535).contains(&backlog) {
        errors.push(
            "limits.accept_backlog",
            format!("must be from 1 to 65535, not {backlog}"),
        );
    }
    backlog
}

/// The largest request head a worker will buffer (every connection may hold one).
const MAX_HEAD_BYTES: u64 = 1 << 20;
/// The largest declared body (`0` stays "unlimited"): a petabyte is no API call.
const MAX_BODY_BYTES: u64 = 1 << 50;

fn limits(l: &model::Limits, errors: &mut Errors) -> Limits {
    let defaults = Limits::default();
    let mut bounded = |key: &str, value: Option<u64>, default: usize, max: u64| -> usize {
        match value {
            None => default,
            Some(0) => {
                errors.push(format_args!("limits.{key}"), "must be greater than 0");
                default
            }
            Some(n) if n > max => {
                errors.push(
                    format_args!("limits.{key}"),
                    format!("must be at most {max}, not {n}"),
                );
                default
            }
            Some(n) => n as usize,
        }
    };
    let limits = Limits {
        max_head_bytes: bounded(
            "max_header_bytes",
            l.max_header_bytes.map(|s| s.0),
            defaults.max_head_bytes,
            MAX_HEAD_BYTES,
        ),
        max_headers: bounded(
            "max_headers",
            l.max_headers.map(|n| n as u64),
            defaults.max_headers,
            ringway_core::http1::MAX_HEADERS_CAP as u64,
        ),
        max_uri_bytes: bounded(
            "max_uri_bytes",
            l.max_uri_bytes.map(|s| s.0),
            defaults.max_uri_bytes,
            MAX_HEAD_BYTES,
        ),
        max_body_bytes: l.max_body_bytes.map_or(defaults.max_body_bytes, |s| s.0),
    };
    if limits.max_body_bytes > MAX_BODY_BYTES {
        errors.push(
            "limits.max_body_bytes",
            format!(
                "must be at most {MAX_BODY_BYTES} (or 0 for no limit), not {}",
                limits.max_body_bytes
            ),
        );
    }
    limits
}

/// One day: no wait in a request's life is sanely longer (tunnels may idle a week).
pub(super) const DAY: Duration = Duration::from_secs(24 * 3600);

/// A duration setting: `default` when absent; an error when zero (unless `zero_ok`) or above
/// `max`.
pub(super) fn duration(
    errors: &mut Errors,
    key: &str,
    value: Option<super::units::Dur>,
    default: Duration,
    max: Duration,
) -> Duration {
    match value {
        None => default,
        Some(d) if d.0.is_zero() => {
            errors.push(key, "must be greater than 0s");
            default
        }
        Some(d) if d.0 > max => {
            errors.push(
                key,
                format!("must be at most {}, not {}", show(max), show(d.0)),
            );
            default
        }
        Some(d) => d.0,
    }
}

/// A duration as the configuration writes it.
pub(super) fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn timeouts(t: &model::Timeouts, errors: &mut Errors) -> Timeouts {
    let defaults = Timeouts::default();
    let hour = Duration::from_secs(3600);
    let request = match t.request {
        // `0s` turns the whole-request deadline off.
        Some(d) if d.0.is_zero() => None,
        Some(d) if d.0 > DAY => {
            errors.push(
                "timeouts.request",
                format!("must be at most 24h (or 0s for none), not {}", show(d.0)),
            );
            defaults.request
        }
        Some(d) => Some(d.0),
        None => defaults.request,
    };
    let drain = match t.drain {
        Some(d) if d.0 > hour => {
            errors.push(
                "timeouts.drain",
                format!("must be at most 1h, not {}", show(d.0)),
            );
            defaults.drain
        }
        Some(d) => d.0,
        None => defaults.drain,
    };
    Timeouts {
        header: duration(errors, "timeouts.header", t.header, defaults.header, hour),
        idle: duration(errors, "timeouts.idle", t.idle, defaults.idle, DAY),
        upstream_connect: duration(
            errors,
            "timeouts.upstream_connect",
            t.upstream_connect,
            defaults.upstream_connect,
            hour,
        ),
        upstream_response: duration(
            errors,
            "timeouts.upstream_response",
            t.upstream_response,
            defaults.upstream_response,
            DAY,
        ),
        request,
        drain,
        tunnel_idle: duration(
            errors,
            "timeouts.tunnel_idle",
            t.tunnel_idle,
            defaults.tunnel_idle,
            7 * DAY,
        ),
    }
}

fn listeners(list: &[model::Listener], dir: &Path, errors: &mut Errors) -> Vec<Listener> {
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
        if let Some(n) = l.max_connections {
            if !(1..=MAX_CONNECTIONS).contains(&n) {
                errors.push(
                    format_args!("listeners[{i}].max_connections"),
                    format!("must be from 1 to {MAX_CONNECTIONS}, not {n}"),
                );
            }
        }
        let tls = l
            .tls
            .as_ref()
            .and_then(|t| listener_tls(&format!("listeners[{i}].tls"), t, dir, errors));
        out.push(Listener {
            name,
            address,
            max_connections: l.max_connections,
            tls,
        });
    }
    out
}

fn backends(list: &[model::Backend], dir: &Path, errors: &mut Errors) -> Vec<Backend> {
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
        let mut schemes_https = false;
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
                Ok((addr, authority, https)) => {
                    if t > 0 && https != schemes_https {
                        errors.push(
                            format_args!("{tpath}.url"),
                            "all targets of a backend use the same scheme (http:// or https://)",
                        );
                    }
                    schemes_https = https;
                    targets.push(Target {
                        url: target.url.clone(),
                        addr,
                        authority,
                        weight,
                        priority: target.priority.unwrap_or(0),
                        tls_name: None,
                    })
                }
                Err(e) => errors.push(format_args!("{tpath}.url"), e),
            }
        }
        let defaults = PoolSettings::default();
        let idle_timeout = duration(
            errors,
            &format!("{path}.pool.idle_timeout"),
            b.pool.idle_timeout,
            defaults.idle_timeout,
            DAY,
        );
        let max_idle_per_target = b
            .pool
            .max_idle_per_target
            .unwrap_or(defaults.max_idle_per_target);
        if max_idle_per_target > MAX_IDLE_PER_TARGET {
            errors.push(
                format_args!("{path}.pool.max_idle_per_target"),
                format!("must be at most {MAX_IDLE_PER_TARGET}, not {max_idle_per_target}"),
            );
        }
        let unavailable_for = duration(
            errors,
            &format!("{path}.unavailable_for"),
            b.unavailable_for,
            Duration::from_secs(5),
            DAY,
        );
        let tls = if schemes_https {
            backend_tls(&path, b.tls.as_ref(), dir, &mut targets, errors)
        } else {
            if b.tls.is_some() {
                errors.push(
                    format_args!("{path}.tls"),
                    "TLS settings need https:// target URLs",
                );
            }
            None
        };
        let balance = match b.balance {
            model::Balance::RoundRobin => Balance::RoundRobin,
            model::Balance::Weighted => Balance::Weighted,
            model::Balance::Priority => Balance::Priority,
            model::Balance::LeastRequest => Balance::LeastRequest,
            model::Balance::ConsistentHash => Balance::ConsistentHash,
        };
        out.push(Backend {
            name: b.name.clone(),
            balance,
            targets,
            pool: PoolSettings {
                max_idle_per_target,
                idle_timeout,
            },
            unavailable_for,
            hash_on: super::resilience::hash_on(&path, balance, b.hash_on.as_ref(), errors),
            circuit_breaker: super::resilience::circuit_breaker(
                &path,
                b.circuit_breaker.as_ref(),
                errors,
            ),
            health_check: super::resilience::health_check(&path, b.health_check.as_ref(), errors),
            tls,
        });
    }
    out
}

/// `min_version`: "1.2" (the default) or "1.3". Returns whether it is TLS 1.3 only.
fn min_version(path: &str, v: Option<&str>, errors: &mut Errors) -> bool {
    match v.map(str::trim) {
        None | Some("1.2") => false,
        Some("1.3") => true,
        Some(other) => {
            errors.push(
                format_args!("{path}.min_version"),
                format!("{other:?} is not a TLS version this gateway speaks (\"1.2\" or \"1.3\")"),
            );
            false
        }
    }
}

/// A listener's `tls:` block: checked, its files loaded, compiled for rustls.
fn listener_tls(
    path: &str,
    t: &model::ListenerTls,
    dir: &Path,
    errors: &mut Errors,
) -> Option<Arc<crate::tls::ServerTls>> {
    use crate::tls::server::{CertSpec, ClientAuthMode, ClientAuthSpec, ServerTlsSpec};
    let before = errors.0.len();
    if t.certificates.is_empty() {
        errors.push(
            format_args!("{path}.certificates"),
            "give at least one certificate (cert and key PEM files)",
        );
    }
    if t.certificates.iter().filter(|c| c.default).count() > 1 {
        errors.push(
            format_args!("{path}.certificates"),
            "at most one certificate is the default",
        );
    }
    let tls13_only = min_version(path, t.min_version.as_deref(), errors);
    let alpn = t
        .alpn
        .clone()
        .unwrap_or_else(|| vec!["http/1.1".to_string()]);
    for (i, p) in alpn.iter().enumerate() {
        match p.as_str() {
            "http/1.1" | "http/1.0" => {}
            "h2" => errors.push(
                format_args!("{path}.alpn[{i}]"),
                "h2 is reserved for HTTP/2, which this gateway does not serve yet",
            ),
            other => errors.push(
                format_args!("{path}.alpn[{i}]"),
                format!("{other:?} is not a protocol this gateway serves (http/1.1)"),
            ),
        }
    }
    let ticket_rotation = duration(
        errors,
        &format!("{path}.ticket_rotation"),
        t.ticket_rotation,
        Duration::from_secs(6 * 3600),
        7 * DAY,
    );
    if ticket_rotation < Duration::from_secs(60) {
        errors.push(
            format_args!("{path}.ticket_rotation"),
            "must be at least 1m",
        );
    }
    let session_cache = t.session_cache.unwrap_or(20_480);
    if session_cache > 10_000_000 {
        errors.push(
            format_args!("{path}.session_cache"),
            "must be at most 10000000 entries",
        );
    }
    for (i, c) in t.certificates.iter().enumerate() {
        for (j, n) in c.names.iter().enumerate() {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            if bare.is_empty() || bare.contains(['*', '/', ':', ' ']) {
                errors.push(
                    format_args!("{path}.certificates[{i}].names[{j}]"),
                    format!("{n:?} is not a host name (write api.example.com or *.example.com)"),
                );
            }
        }
    }
    if errors.0.len() != before {
        return None;
    }
    let spec = ServerTlsSpec {
        certificates: t
            .certificates
            .iter()
            .map(|c| CertSpec {
                cert: dir.join(&c.cert),
                key: dir.join(&c.key),
                ocsp: c.ocsp.as_ref().map(|o| dir.join(o)),
                names: c.names.clone(),
                default: c.default,
            })
            .collect(),
        tls13_only,
        cipher_suites: t.cipher_suites.clone(),
        alpn,
        session_tickets: t.session_tickets.unwrap_or(true),
        ticket_rotation,
        session_cache,
        client_auth: t.client_auth.as_ref().map(|a| ClientAuthSpec {
            mode: match a.mode {
                model::ClientAuthMode::Required => ClientAuthMode::Required,
                model::ClientAuthMode::Optional => ClientAuthMode::Optional,
            },
            ca: dir.join(&a.ca),
        }),
        watch: t.watch.unwrap_or(true),
    };
    match crate::tls::ServerTls::build(spec) {
        Ok(tls) => Some(Arc::new(tls)),
        Err(e) => {
            errors.push(path, e);
            None
        }
    }
}

/// A backend's TLS (its targets are `https://`): the client config, and each target's name.
fn backend_tls(
    path: &str,
    t: Option<&model::BackendTls>,
    dir: &Path,
    targets: &mut [Target],
    errors: &mut Errors,
) -> Option<Arc<crate::tls::UpstreamTls>> {
    let path = format!("{path}.tls");
    let empty = model::BackendTls {
        ca: None,
        sni: None,
        verify: None,
        client_cert: None,
        client_key: None,
        min_version: None,
    };
    let t = t.unwrap_or(&empty);
    let spec = crate::tls::UpstreamTlsSpec {
        ca: t.ca.as_ref().map(|c| dir.join(c)),
        sni: t.sni.clone(),
        verify: t.verify.unwrap_or(true),
        client_cert: t.client_cert.as_ref().map(|c| dir.join(c)),
        client_key: t.client_key.as_ref().map(|c| dir.join(c)),
        tls13_only: min_version(&path, t.min_version.as_deref(), errors),
    };
    let tls = match crate::tls::UpstreamTls::build(spec) {
        Ok(tls) => tls,
        Err(e) => {
            errors.push(&path, e);
            return None;
        }
    };
    for (i, target) in targets.iter_mut().enumerate() {
        let host = match target.authority.rfind(':') {
            Some(c) if !target.authority[c..].contains(']') => &target.authority[..c],
            _ => target.authority.as_str(),
        };
        match tls.server_name(host) {
            Ok(name) => target.tls_name = Some(name),
            Err(e) => errors.push(format_args!("{path}.sni (for targets[{i}])"), e),
        }
    }
    Some(Arc::new(tls))
}

/// Idle pooled connections per target per worker: beyond this they only hold descriptors.
const MAX_IDLE_PER_TARGET: usize = 10_000;

/// Parses `http[s]://host[:port][/]` and resolves it: the address, the authority as written,
/// and whether it is `https`.
fn resolve_target(url: &str) -> Result<(SocketAddr, String, bool), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{url:?} is not a URL (write e.g. http://10.0.0.5:8080)"
        ));
    };
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => {
            return Err(format!(
                "{url:?}: scheme {scheme:?} is not supported (use http:// or https://)"
            ))
        }
    };
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
        _ => (authority, if https { 443 } else { 80 }),
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
    Ok((addr, authority.to_owned(), https))
}

#[cfg(test)]
mod observability_tests {
    //! `access_log`, `tracing`, `admin.tls`/`admin.metrics` and `apis[].access_log`.

    use std::path::PathBuf;

    use super::super::{load_str, Config, LogDestination};

    const BASE: &str = "listeners: [{address: 127.0.0.1:8080}]\nbackends:\n  - name: orders\n    targets: [{url: http://127.0.0.1:9000}]\n";

    fn load_in(dir: &std::path::Path, extra: &str) -> Result<Config, Vec<String>> {
        let source = dir.join("test.yaml").display().to_string();
        load_str(&format!("{BASE}{extra}"), &source, &|_| None).map_err(|e| e.errors)
    }

    fn load(extra: &str) -> Result<Config, Vec<String>> {
        load_in(std::path::Path::new(""), extra)
    }

    /// The single error for `extra`, without its `test.yaml: ` prefix.
    fn error(extra: &str) -> String {
        let mut e = load(extra).map(|_| ()).unwrap_err();
        assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
        e.remove(0).strip_prefix("test.yaml: ").unwrap().to_string()
    }

    #[test]
    fn access_log_defaults_and_destinations() {
        let c = load("access_log: {path: logs/access.log}\n").unwrap();
        let a = c.access_log.unwrap();
        assert_eq!(
            a.destination,
            LogDestination::File(PathBuf::from("logs/access.log"))
        );
        assert_eq!(a.sample, 1.0);
        assert_eq!(a.buffer_lines, 8192);
        assert!(a.errors_always);
        let c = load(
            "access_log: {path: stdout, sample: 0.25, buffer_lines: 100, errors_always: false}\n",
        )
        .unwrap();
        let a = c.access_log.unwrap();
        assert_eq!(a.destination, LogDestination::Stdout);
        assert_eq!(
            (a.sample, a.buffer_lines, a.errors_always),
            (0.25, 100, false)
        );
        assert_eq!(
            load("access_log: {path: stderr, sample: 0}\n")
                .unwrap()
                .access_log
                .unwrap()
                .destination,
            LogDestination::Stderr
        );
        assert!(load("").unwrap().access_log.is_none());
        // Relative to the configuration file.
        let c = load_in(
            std::path::Path::new("/etc/ringway"),
            "access_log: {path: a.log}\n",
        );
        assert_eq!(
            c.unwrap().access_log.unwrap().destination,
            LogDestination::File(PathBuf::from("/etc/ringway/a.log"))
        );
    }

    #[test]
    fn access_log_errors() {
        for (extra, says) in [
            ("access_log: {sample: 0.5}", "access_log.path: give stdout, stderr or a file path"),
            ("access_log: {path: \"\"}", "access_log.path: give stdout"),
            ("access_log: {path: logs/}", "access_log.path: logs/ is not a file path"),
            (
                "access_log: {path: stdout, sample: 1.5}",
                "access_log.sample: must be a fraction from 0.0 to 1.0 (0.1 logs one in ten), not 1.5",
            ),
            ("access_log: {path: stdout, sample: -0.1}", "access_log.sample: must be a fraction"),
            (
                "access_log: {path: stdout, buffer_lines: 0}",
                "access_log.buffer_lines: must be from 1 to 1048576, not 0",
            ),
            ("access_log: {path: stdout, format: json}", "unknown field `format`"),
            ("access_log: {path: stdout, sample: often}", "access_log.sample"),
        ] {
            let e = error(&format!("{extra}\n"));
            assert!(e.contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn tracing_defaults() {
        let c =
            load("tracing: {otlp_endpoint: \"http://collector.local:4318/v1/traces\"}\n").unwrap();
        let t = c.tracing.unwrap();
        assert_eq!(t.endpoint.url, "http://collector.local:4318/v1/traces");
        assert_eq!(t.endpoint.authority, "collector.local:4318");
        assert_eq!(
            (t.endpoint.host.as_str(), t.endpoint.port),
            ("collector.local", 4318)
        );
        assert_eq!(t.endpoint.path, "/v1/traces");
        assert_eq!(t.sample, 0.01);
        assert_eq!(t.service_name, "ringway");
        assert_eq!(t.batch, 512);
        assert_eq!(t.interval, std::time::Duration::from_secs(1));
        assert_eq!(t.timeout, std::time::Duration::from_secs(2));
        let c = load(
            "tracing:\n  otlp_endpoint: \"http://[::1]\"\n  sample: 1\n  service_name: edge\n  \
             batch: 10\n  interval: 250ms\n  timeout: 5s\n",
        )
        .unwrap();
        let t = c.tracing.unwrap();
        assert_eq!((t.endpoint.host.as_str(), t.endpoint.port), ("::1", 80));
        assert_eq!(t.endpoint.authority, "[::1]");
        assert_eq!(t.endpoint.path, "/v1/traces");
        assert_eq!(
            (t.sample, t.service_name.as_str(), t.batch),
            (1.0, "edge", 10)
        );
        assert_eq!(t.interval, std::time::Duration::from_millis(250));
    }

    #[test]
    fn tracing_errors() {
        let ep = "otlp_endpoint: \"http://127.0.0.1:4318/v1/traces\"";
        for (extra, says) in [
            (
                "tracing: {otlp_endpoint: \"https://collector:4318/v1/traces\"}".to_string(),
                "tracing.otlp_endpoint: \"https://collector:4318/v1/traces\": https is not \
                 supported for span export",
            ),
            (
                "tracing: {sample: 0.5}".to_string(),
                "tracing.otlp_endpoint: give the collector's OTLP/HTTP URL",
            ),
            (
                "tracing: {otlp_endpoint: \"grpc://c:4317\"}".to_string(),
                "scheme \"grpc\" is not http://",
            ),
            (
                "tracing: {otlp_endpoint: \"http://c:0/v1/traces\"}".to_string(),
                "\"0\" is not a port",
            ),
            (
                "tracing: {otlp_endpoint: \"http://:4318\"}".to_string(),
                "has no valid host",
            ),
            (
                "tracing: {otlp_endpoint: \"http://c:4318/v1/traces?x=1\"}".to_string(),
                "the path takes no query",
            ),
            (
                format!("tracing: {{{ep}, sample: 2}}"),
                "tracing.sample: must be a fraction from 0.0 to 1.0",
            ),
            (
                format!("tracing: {{{ep}, batch: 0}}"),
                "tracing.batch: must be from 1 to 100000 spans, not 0",
            ),
            (
                format!("tracing: {{{ep}, interval: 0s}}"),
                "tracing.interval: must be greater than 0s",
            ),
            (
                format!("tracing: {{{ep}, timeout: 2m}}"),
                "tracing.timeout: must be at most 1m, not 2m",
            ),
            (
                format!("tracing: {{{ep}, service_name: \" \"}}"),
                "tracing.service_name: must not be empty",
            ),
            (
                format!("tracing: {{{ep}, protocol: grpc}}"),
                "unknown field `protocol`",
            ),
        ] {
            let e = error(&format!("{extra}\n"));
            assert!(e.contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn admin_tls_and_metrics() {
        let c = load("admin: {address: 127.0.0.1:9901}\n").unwrap();
        let admin = c.admin.unwrap();
        assert!(admin.metrics && admin.tls.is_none());
        let c = load("admin: {metrics: false}\n").unwrap();
        assert!(!c.admin.unwrap().metrics);

        let dir = std::env::temp_dir().join(format!("ringway-admin-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("admin.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("admin.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("junk.pem"), "not pem").unwrap();
        let c = load_in(&dir, "admin: {tls: {cert: admin.crt, key: admin.key}}\n").unwrap();
        let admin = c.admin.unwrap();
        let tls = admin.tls.as_ref().unwrap();
        assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(admin, admin.clone());

        let e = load_in(&dir, "admin: {tls: {cert: missing.crt, key: junk.pem}}\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].contains("admin.tls.cert: cannot read certificates from"),
            "{e:#?}"
        );
        assert!(e[0].contains("missing.crt"), "{e:#?}");
        assert!(
            e[1].contains("admin.tls.key: cannot read a private key from"),
            "{e:#?}"
        );
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        let e = load_in(&dir, "admin: {tls: {cert: admin.crt, key: other.key}}\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].contains("admin.tls: "), "{e:#?}");
        let e = error("admin: {tls: {cert: a.crt}}\n");
        assert!(e.contains("missing field `key`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn documentation_examples_load() {
        for doc in [
            include_str!("../../../docs/configuration.md"),
            include_str!("../../../docs/observability.md"),
        ] {
            let blocks = doc
                .split("```yaml\n")
                .skip(1)
                .map(|rest| rest.split("```").next().unwrap());
            let mut found = 0;
            for block in
                blocks.filter(|b| b.starts_with("access_log:") || b.starts_with("tracing:"))
            {
                let c = load(block).unwrap_or_else(|e| panic!("{block}\n{e:#?}"));
                assert!(c.access_log.is_some() || c.tracing.is_some());
                found += 1;
            }
            assert!(found >= 2, "the access_log and tracing examples");
        }
    }

    #[test]
    fn api_access_log_reaches_its_routes() {
        let c = load(
            "routes: [{name: plain, matches: [{path: {value: /plain}}], backend: orders}]\n\
             apis:\n  - {name: quiet, path: /quiet, backend: orders, access_log: false}\n  \
             - name: loud\n    path: /loud\n    backend: orders\n    operations:\n      \
             - {id: get, method: GET, url_template: /x}\n",
        )
        .unwrap();
        assert!(!c.apis[0].access_log);
        assert!(c.apis[1].access_log);
        let router = crate::route::Router::build(&c).unwrap();
        for route in router.routes() {
            let expected = !route.api.starts_with("quiet");
            assert_eq!(route.access_log, expected, "{}", route.name);
        }
        assert!(router.routes().iter().any(|r| &*r.api == "quiet"));
        assert!(router.routes().iter().any(|r| r.name == "plain"));
        let e = error("apis: [{name: a, path: /a, backend: orders, access_log: maybe}]\n");
        assert!(e.contains("access_log"), "{e}");
    }
}
