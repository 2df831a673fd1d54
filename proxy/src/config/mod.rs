//! The configuration: one YAML file, loaded into a validated [`Config`].
//!
//! Loading runs in three steps: `${VAR}` substitution on the text (`env`), deserialization
//! into the document's shape (`model`, unknown keys refused, units parsed), then validation
//! (`validate`, `routes`) which collects every semantic error with its document path rather than
//! stopping at the first. `docs/configuration.md` is the contract for the format.

mod apis;
pub mod cluster;
mod env;
mod model;
mod portal;
mod products;
mod resilience;
mod routes;
mod sources;
mod units;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ringway_core::http1::Limits;
use ringway_core::runtime::RuntimeSettings;

use crate::route::{DirectResponse, HeaderEdits, HostPattern, Redirect, Rewrite, RouteMatch};

pub use apis::{
    parse_rfc3339_ms, parse_status_range, ApiConfig, CacheSettings, ConcurrencyDef,
    OperationConfig, PolicyTables, QuotaDef, RateDef, RevisionInfo, StateSettings, VersionScheme,
    VersionSet,
};
pub use portal::{PortalListener, PortalSettings, ProductInfo};
pub use sources::inputs_digest;
pub use units::{parse_cpu_list, parse_duration, parse_size};

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file name, for messages.
    pub source: String,
    /// None = one worker per allowed CPU (or per entry of `cpus`).
    pub workers: Option<usize>,
    /// CPUs to pin workers to, in order.
    pub cpus: Option<Vec<usize>>,
    pub runtime: RuntimeSettings,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub listeners: Vec<Listener>,
    pub backends: Vec<Backend>,
    /// Validated; [`crate::route::Router::build`] compiles them.
    pub routes: Vec<RouteConfig>,
    /// Protocols an `Upgrade` may switch to, lower case (`websocket` by default).
    pub upgrades: Vec<String>,
    /// Open client connections one worker serves at most; at the limit it stops accepting
    /// until one closes. None: derived from RLIMIT_NOFILE when the server starts.
    pub max_connections_per_worker: Option<usize>,
    pub apis: Vec<ApiConfig>,
    /// Version sets: APIs that are versions of one API.
    pub version_sets: Vec<VersionSet>,
    /// Subscriptions and products, compiled for the key checks of API routes (empty when the
    /// document has none). Holds key hashes only; its `Debug` shortens them.
    pub keys: crate::policy::auth::keys::KeyTable,
    /// Every flattened pipeline; routes and operations refer to them by index.
    pub pipelines: Vec<crate::policy::Pipeline>,
    /// The node-wide tables of the limit policies.
    pub policy_tables: PolicyTables,
    /// Names of the variables policies set (`{var:NAME}`), by index.
    pub vars: Vec<String>,
    pub cache: CacheSettings,
    pub state: StateSettings,
    /// The admin listener, when configured.
    pub admin: Option<AdminSettings>,
    /// Cluster mode: the Redis the nodes share, when configured.
    pub cluster: Option<cluster::ClusterSettings>,
    /// The size of the buffers each worker lends its connections (`runtime.buffer_size`).
    pub buffer_size: usize,
    /// The listen(2) backlog of every listener (`limits.accept_backlog`).
    pub accept_backlog: u32,
    /// The JSON access log, when configured.
    pub access_log: Option<AccessLogSettings>,
    /// Span export over OTLP/HTTP, when configured.
    pub tracing: Option<TracingSettings>,
    /// The files and directories the configuration read besides itself (OpenAPI documents,
    /// Gateway API manifests).
    pub inputs: Vec<std::path::PathBuf>,
    /// The developer portal, when configured.
    pub portal: Option<PortalSettings>,
    /// The products, as the portal lists them.
    pub products: Vec<ProductInfo>,
}

/// The admin listener's settings.
#[derive(Clone, Debug)]
pub struct AdminSettings {
    pub address: SocketAddr,
    /// The bearer token `/metrics` and the admin API require; None: none (loopback only).
    pub token: Option<Secret>,
    /// TLS on the admin listener, built when the configuration loads.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Whether `/metrics` is served.
    pub metrics: bool,
}

impl PartialEq for AdminSettings {
    fn eq(&self, other: &AdminSettings) -> bool {
        // A rustls configuration has no equality; two settings share TLS when they share it.
        let same_tls = match (&self.tls, &other.tls) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        };
        self.address == other.address
            && self.token == other.token
            && self.metrics == other.metrics
            && same_tls
    }
}

impl Eq for AdminSettings {}

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDestination {
    Stdout,
    Stderr,
    /// Opened for appending, created when missing; reopened on request (SIGUSR1).
    File(std::path::PathBuf),
}

impl fmt::Display for LogDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogDestination::Stdout => f.write_str("stdout"),
            LogDestination::Stderr => f.write_str("stderr"),
            LogDestination::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The access log's settings (`access_log:`).
#[derive(Clone, Debug, PartialEq)]
pub struct AccessLogSettings {
    pub destination: LogDestination,
    /// The fraction of requests logged, 0.0..=1.0.
    pub sample: f64,
    /// Lines that may wait per worker for the writer before further lines are dropped.
    pub buffer_lines: usize,
    /// Answers with a status of 400 or more are logged whatever `sample` decides.
    pub errors_always: bool,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        AccessLogSettings {
            destination: LogDestination::Stdout,
            sample: 1.0,
            buffer_lines: 8192,
            errors_always: true,
        }
    }
}

/// Where spans are sent: an OTLP/HTTP endpoint over plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpEndpoint {
    /// The URL as written.
    pub url: String,
    /// `host:port` as written (the Host header; resolved at each export).
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// The request target, starting with `/` (`/v1/traces`).
    pub path: String,
}

/// Span export's settings (`tracing:`).
#[derive(Clone, Debug, PartialEq)]
pub struct TracingSettings {
    pub endpoint: OtlpEndpoint,
    /// The fraction of new traces sampled (a valid incoming `traceparent`'s flag decides
    /// for the traces it continues), 0.0..=1.0.
    pub sample: f64,
    pub service_name: String,
    /// Spans per export, about.
    pub batch: usize,
    /// The longest a span waits before it is exported.
    pub interval: Duration,
    /// The limit on one export (connect, send, answer).
    pub timeout: Duration,
}

/// A secret from the configuration: compared and used, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    pub(crate) fn new(s: String) -> Secret {
        Secret(s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
    /// None = no limit on the whole exchange.
    pub request: Option<Duration>,
    pub drain: Duration,
    /// A WebSocket (or other upgraded) tunnel silent both ways this long is closed.
    pub tunnel_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(3),
            upstream_response: Duration::from_secs(30),
            request: Some(Duration::from_secs(300)),
            drain: Duration::from_secs(10),
            tunnel_idle: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// Open connections on this listener, across all workers (each worker takes its share).
    pub max_connections: Option<usize>,
    /// TLS termination, compiled (shared by every worker).
    pub tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub balance: Balance,
    pub targets: Vec<Target>,
    pub pool: PoolSettings,
    /// How long a target is skipped after a connect failure.
    pub unavailable_for: Duration,
    /// What picks the target under `consistent_hash` (set exactly when that is the balance).
    pub hash_on: Option<HashOn>,
    /// The circuit breaker's rules, each watched per target; empty: no breaker.
    pub circuit_breaker: Vec<BreakerRule>,
    pub health_check: Option<HealthCheck>,
    /// TLS to the targets (their URLs are `https://`).
    pub tls: Option<std::sync::Arc<crate::tls::UpstreamTls>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Weighted,
    Priority,
    /// The target with the fewest requests in flight on this worker (per weight unit).
    LeastRequest,
    /// A ring of virtual nodes keyed by [`Backend::hash_on`].
    ConsistentHash,
}

/// The part of a request that `consistent_hash` hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    /// A request header's value; the name is stored in lower case.
    Header(String),
    /// One cookie's value, by name (case-sensitive, as cookies are).
    Cookie(String),
    /// The client's address.
    Ip,
}

/// One circuit-breaker rule (APIM's `rules[]`): when responses matching it reach the
/// threshold within `interval`, the target is skipped for `trip_duration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerRule {
    pub name: String,
    pub threshold: TripThreshold,
    /// The sliding window the failures (and, for a percentage, the requests) are counted in.
    pub interval: Duration,
    /// Inclusive status ranges that count as failures.
    pub statuses: Vec<(u16, u16)>,
    /// Whether connect failures, timeouts, resets and malformed responses count as failures.
    pub connection_errors: bool,
    pub trip_duration: Duration,
    /// Stay open for the tripping response's `Retry-After` (seconds) instead, when it has one.
    pub accept_retry_after: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TripThreshold {
    /// Trip at this many failures within the interval.
    Count(u32),
    /// Trip when failures are at least `percent` of the requests within the interval, once
    /// there have been at least `min_requests`.
    Percentage { percent: u32, min_requests: u32 },
}

/// Active health checking of every target of a backend (run by worker 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Origin-form request target, starting with `/`.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passing checks that bring an unhealthy target back.
    pub healthy_threshold: u32,
    /// Consecutive failing checks that take a healthy target out.
    pub unhealthy_threshold: u32,
    /// Inclusive status ranges that pass.
    pub expected_statuses: Vec<(u16, u16)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as written.
    pub url: String,
    /// Resolved when the configuration loads.
    pub addr: SocketAddr,
    /// The authority as written (`host:port`, or `host` when the URL has no port), for the
    /// Host header and logs.
    pub authority: String,
    /// 1..=1000.
    pub weight: u32,
    /// Lower is preferred.
    pub priority: u32,
    /// The TLS server name of an `https://` target.
    pub tls_name: Option<rustls::pki_types::ServerName<'static>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_idle_per_target: usize,
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_idle_per_target: 64,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A validated route, with its matchers compiled; the router resolves its backend name.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    pub name: String,
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    /// At least one (a route written without `matches` gets prefix `/`).
    pub matches: Vec<RouteMatch>,
    pub action: RouteAction,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    pub rewrite: Option<Rewrite>,
    /// Index into `Config::pipelines`; None when no policy applies.
    pub pipeline: Option<usize>,
}

#[derive(Clone, Debug)]
pub enum RouteAction {
    /// A backend name, known to exist in `Config::backends`.
    Backend(String),
    Redirect(Redirect),
    Respond(DirectResponse),
}

/// Everything wrong with a configuration, one message per problem, each starting with the
/// source name: `SOURCE: [line L column C: ]PATH: what is wrong`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(error)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the file at `path`, taking variables from the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        errors: vec![format!("{source}: cannot read the file: {e}")],
    })?;
    load_str(&text, &source, &|name| std::env::var(name).ok())
}

/// Validates configuration `text`; `source` names it in messages and `env` looks up variables.
pub fn load_str(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let prefix = |errors: Vec<String>| ConfigError {
        errors: errors
            .into_iter()
            .map(|e| format!("{source}: {e}"))
            .collect(),
    };
    let text = env::substitute(text, env).map_err(prefix)?;
    let document = parse_document(&text).map_err(|e| prefix(vec![e]))?;
    validate::validate(document, source).map_err(prefix)
}

/// Validates a document that has no variables left to substitute (the admin API's edits of
/// the running one).
pub fn load_literal(text: &str, source: &str) -> Result<Config, ConfigError> {
    load_literal_in(text, source, None)
}

/// As [`load_literal`], reading the files the document names (certificates, OpenAPI
/// documents, manifests) relative to `dir` (default: the directory of `source`).
pub fn load_literal_in(
    text: &str,
    source: &str,
    dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let prefix = |errors: Vec<String>| ConfigError {
        errors: errors
            .into_iter()
            .map(|e| format!("{source}: {e}"))
            .collect(),
    };
    let document = parse_document(text).map_err(|e| prefix(vec![e]))?;
    validate::validate_in(document, source, dir).map_err(prefix)
}

/// The document in `text` (variables substituted) as a JSON value, for the admin API.
pub fn document_value(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<serde_json::Value, ConfigError> {
    let prefix = |errors: Vec<String>| ConfigError {
        errors: errors
            .into_iter()
            .map(|e| format!("{source}: {e}"))
            .collect(),
    };
    let text = env::substitute(text, env).map_err(prefix)?;
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_yaml_ng::from_str::<serde_json::Value>(&text).map_err(|e| prefix(vec![yaml_error(&e)]))
}

fn parse_document(text: &str) -> Result<model::Document, String> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        // An empty document is a document without keys; validation says what is missing.
        return Ok(model::Document::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e))
}

/// `line L column C: PATH: message`, from serde_yaml_ng's `PATH: message at line L column C`.
fn yaml_error(e: &serde_yaml_ng::Error) -> String {
    let message = e.to_string();
    match e.location() {
        Some(at) => {
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            let message = message.strip_suffix(&suffix).unwrap_or(&message);
            format!("line {} column {}: {message}", at.line(), at.column())
        }
        None => message,
    }
}

/// `no backend named "x" (known: a, b)`.
pub(crate) fn unknown_backend(name: &str, backends: &[Backend]) -> String {
    let known: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    unknown_backend_among(name, &known)
}

pub(crate) fn unknown_backend_among(name: &str, known: &[&str]) -> String {
    if known.is_empty() {
        format!("no backend named {name:?} (no backends are defined)")
    } else {
        format!("no backend named {name:?} (known: {})", known.join(", "))
    }
}

#[cfg(test)]
mod tests;
