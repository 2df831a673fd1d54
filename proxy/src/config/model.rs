//! The YAML document as written: serde types mirroring `docs/configuration.md` key for key.
//!
//! Every struct denies unknown fields. Only shapes and units are checked here; meaning
//! (references, ranges, regexes) is checked in `validate`, which collects every error.

use serde::Deserialize;

use super::units::{CpuList, Dur, Size, Text, TextMap, Workers};

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of configuration keys (listeners, backends, routes, ...)"
)]
pub struct Document {
    #[serde(default)]
    pub workers: Workers,
    pub cpus: Option<CpuList>,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Protocols that `Upgrade` may switch to (default: websocket).
    pub upgrades: Option<Vec<String>>,
    #[serde(default)]
    pub apis: Vec<super::apis::Api>,
    /// The developer portal.
    pub portal: Option<super::portal::PortalDoc>,
    /// Kubernetes Gateway API manifests whose routes join the configuration.
    pub gateway_api: Option<super::sources::GatewayApiDoc>,
    /// APIs that are versions of one API.
    #[serde(default)]
    pub version_sets: Vec<super::apis::VersionSetDoc>,
    /// Bundles of APIs with a subscription requirement and a policy scope.
    #[serde(default)]
    pub products: Vec<super::products::ProductDoc>,
    /// Who may call the APIs: keys (as hashes), scopes and states.
    #[serde(default)]
    pub subscriptions: Vec<super::products::SubscriptionDoc>,
    /// The global policy scope.
    #[serde(default)]
    pub policies: super::apis::Sections,
    #[serde(default)]
    pub cache: super::apis::CacheDoc,
    #[serde(default)]
    pub state: super::apis::StateDoc,
    pub admin: Option<Admin>,
    /// Limits, quotas, purges and the configuration shared through Redis.
    pub cluster: Option<super::cluster::ClusterDoc>,
    /// The JSON access log.
    pub access_log: Option<AccessLog>,
    /// Span export over OTLP/HTTP.
    pub tracing: Option<Tracing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with address and optionally token or token_file, tls, metrics"
)]
pub struct Admin {
    pub address: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub tls: Option<AdminTls>,
    /// Whether `/metrics` is served (default true).
    pub metrics: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with cert and key")]
pub struct AdminTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with path and optionally sample, buffer_lines, errors_always"
)]
pub struct AccessLog {
    /// `stdout`, `stderr` or a file path.
    pub path: Option<String>,
    pub sample: Option<f64>,
    pub buffer_lines: Option<usize>,
    pub errors_always: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with otlp_endpoint and optionally sample, service_name, batch, \
                 interval, timeout"
)]
pub struct Tracing {
    pub otlp_endpoint: Option<String>,
    pub sample: Option<f64>,
    pub service_name: Option<String>,
    pub batch: Option<usize>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with driver, ring_entries, ring_flags, buffer_size"
)]
pub struct Runtime {
    #[serde(default)]
    pub driver: Driver,
    pub ring_entries: Option<u32>,
    #[serde(default)]
    pub ring_flags: RingFlags,
    /// The buffers a worker lends connections while a request is in flight.
    pub buffer_size: Option<Size>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    #[default]
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingFlags {
    None,
    CoopTaskrun,
    #[default]
    DeferTaskrun,
    Sqpoll,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of limits")]
pub struct Limits {
    pub max_header_bytes: Option<Size>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<Size>,
    pub max_body_bytes: Option<Size>,
    pub max_connections_per_worker: Option<usize>,
    /// The listen(2) backlog of every listener.
    pub accept_backlog: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of timeouts")]
pub struct Timeouts {
    pub header: Option<Dur>,
    pub idle: Option<Dur>,
    pub upstream_connect: Option<Dur>,
    pub upstream_response: Option<Dur>,
    pub request: Option<Dur>,
    pub drain: Option<Dur>,
    pub tunnel_idle: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a listener: a mapping with address and optionally name, max_connections, tls"
)]
pub struct Listener {
    pub name: Option<String>,
    pub address: String,
    pub max_connections: Option<usize>,
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with certificates and optionally min_version, cipher_suites, alpn, \
                 session_tickets, ticket_rotation, session_cache, client_auth, watch"
)]
pub struct ListenerTls {
    #[serde(default)]
    pub certificates: Vec<TlsCertificate>,
    pub min_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub alpn: Option<Vec<String>>,
    pub session_tickets: Option<bool>,
    pub ticket_rotation: Option<Dur>,
    pub session_cache: Option<usize>,
    pub client_auth: Option<ClientAuth>,
    pub watch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a certificate: a mapping with cert, key and optionally ocsp, names, default"
)]
pub struct TlsCertificate {
    pub cert: String,
    pub key: String,
    pub ocsp: Option<String>,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with mode (required or optional) and ca"
)]
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    pub ca: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    Required,
    Optional,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with ca, sni, verify, client_cert, client_key, min_version"
)]
pub struct BackendTls {
    pub ca: Option<String>,
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub min_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a backend: a mapping with name, targets and optionally balance, hash_on, pool, unavailable_for, circuit_breaker, health_check, tls"
)]
pub struct Backend {
    pub name: String,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub pool: Pool,
    pub unavailable_for: Option<Dur>,
    /// `consistent_hash` only.
    pub hash_on: Option<HashOn>,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub health_check: Option<HealthCheck>,
    /// TLS to the targets (`https://` URLs use it with its defaults when absent).
    pub tls: Option<BackendTls>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Weighted,
    Priority,
    LeastRequest,
    ConsistentHash,
}

/// `{header: NAME}`, `{cookie: NAME}` or `ip`.
#[derive(Debug)]
pub enum HashOn {
    Header(String),
    Cookie(String),
    Ip,
}

impl<'de> Deserialize<'de> for HashOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HashOn, D::Error> {
        use serde::de::{Error, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HashOn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("{header: NAME}, {cookie: NAME} or ip")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<HashOn, E> {
                match v {
                    "ip" => Ok(HashOn::Ip),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HashOn, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::invalid_length(0, &self));
                };
                let on = match key.as_str() {
                    "header" => HashOn::Header(map.next_value()?),
                    "cookie" => HashOn::Cookie(map.next_value()?),
                    other => return Err(A::Error::unknown_field(other, &["header", "cookie"])),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom("give one of header or cookie, not both"));
                }
                Ok(on)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with rules")]
pub struct CircuitBreaker {
    #[serde(default)]
    pub rules: Vec<BreakerRule>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a breaker rule: a mapping with failure_condition, trip_duration and optionally name, accept_retry_after"
)]
pub struct BreakerRule {
    pub name: Option<String>,
    pub failure_condition: Option<FailureCondition>,
    pub trip_duration: Option<Dur>,
    #[serde(default)]
    pub accept_retry_after: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with count or percentage, interval, status_codes, connection_errors"
)]
pub struct FailureCondition {
    pub count: Option<u32>,
    pub percentage: Option<u32>,
    pub min_requests: Option<u32>,
    pub interval: Option<Dur>,
    #[serde(default)]
    pub status_codes: Vec<StatusCodes>,
    #[serde(default)]
    pub connection_errors: bool,
}

/// `429`, or `"500-599"`, or `"5xx"`; checked in validation.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a status code (429) or a range (\"500-599\", \"5xx\")"
)]
pub enum StatusCodes {
    Code(u32),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with path, interval, timeout, healthy_threshold, unhealthy_threshold, expected_statuses"
)]
pub struct HealthCheck {
    pub path: Option<String>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub expected_statuses: Option<Vec<StatusCodes>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a target: a mapping with url and optionally weight, priority"
)]
pub struct Target {
    pub url: String,
    pub weight: Option<u32>,
    pub priority: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with max_idle_per_target, idle_timeout"
)]
pub struct Pool {
    pub max_idle_per_target: Option<usize>,
    pub idle_timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a route: a mapping with matches, filters and an action"
)]
pub struct Route {
    pub name: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub matches: Option<Vec<Match>>,
    #[serde(default)]
    pub filters: Filters,
    pub backend: Option<String>,
    pub redirect: Option<Redirect>,
    pub return_response: Option<ReturnResponse>,
    #[serde(default)]
    pub policies: super::apis::Sections,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a match: a mapping with path, method, headers, query"
)]
pub struct Match {
    pub path: Option<PathMatch>,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    #[serde(default)]
    pub query: Vec<ValueMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a path match: a mapping with type and value"
)]
pub struct PathMatch {
    #[serde(rename = "type", default)]
    pub kind: PathKind,
    pub value: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    Exact,
    #[default]
    Prefix,
    Template,
    Regex,
}

/// A header or query parameter match.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with name, value and optionally type"
)]
pub struct ValueMatch {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: ValueKind,
    pub value: Text,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    #[default]
    Exact,
    Regex,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with request_headers, response_headers, rewrite"
)]
pub struct Filters {
    #[serde(default)]
    pub request_headers: HeaderFilter,
    #[serde(default)]
    pub response_headers: HeaderFilter,
    pub rewrite: Option<Rewrite>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with set, add, remove")]
pub struct HeaderFilter {
    #[serde(default)]
    pub set: TextMap,
    #[serde(default)]
    pub add: TextMap,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with path or prefix")]
pub struct Rewrite {
    pub path: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a redirect: a mapping with scheme, host, port, path, status"
)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with status, headers, body"
)]
pub struct ReturnResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: TextMap,
    pub body: Option<String>,
}
