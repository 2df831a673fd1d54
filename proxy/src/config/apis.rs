//! `apis`, their `operations`, and the policy sections of every scope (global `policies`, an
//! API's, an operation's and a route's): the document's shapes, and their validation and
//! compilation into [`Pipeline`]s.
//!
//! Each policy is compiled once, where it is declared; inheritance then copies the compiled
//! policy (and with it the index of its counters) into every pipeline that inherits it.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::units::{Dur, Size, Text, TextMap};
use super::validate::{duration, Errors};
use crate::policy::auth::keys::KeyTable;
use crate::policy::auth::subscription::KeyCheck;
use crate::policy::template::Scope;
use crate::policy::{
    CacheLookup, CacheStore, ExistsAction, Limit, LookupValue, Pipeline, Policy, Respond,
    RewriteUri, SetHeader, StatusRanges, StoreValue, Template,
};

// ---------------------------------------------------------------------------------------------
// The document.

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an API: a mapping with name, path, backend, operations, policies, \
                 subscription_required, subscription_key, access_log, display_name, \
                 description, openapi, version_set, version, revision, change_log, revisions"
)]
pub struct Api {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub path: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub backend: Option<String>,
    /// Remove the API's path before forwarding (default true, as APIM and Kong do).
    pub strip_path: Option<bool>,
    /// Put in front of the forwarded path (APIM's service URL path).
    pub backend_path: Option<String>,
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub policies: Sections,
    /// Whether requests need a subscription key (see `products.rs` for the default).
    pub subscription_required: Option<bool>,
    /// The header and query parameter names the key is read from.
    pub subscription_key: Option<super::products::SubscriptionKeyDoc>,
    /// Whether the API's requests are written to the access log (default true).
    pub access_log: Option<bool>,
    /// An OpenAPI 3 document (a file, relative to the configuration's directory) whose paths
    /// and methods become operations.
    pub openapi: Option<String>,
    /// The version set this API is one version of, and its version there.
    pub version_set: Option<String>,
    pub version: Option<String>,
    /// The number of the revision the API's own fields describe: the current one (default 1).
    pub revision: Option<u32>,
    /// The current revision's change-log entry.
    pub change_log: Option<String>,
    /// The API's other revisions.
    #[serde(default)]
    pub revisions: Vec<Revision>,
    /// Operations generated from `openapi` (filled in before validation).
    #[serde(skip)]
    pub generated: Vec<Operation>,
    /// The loaded `openapi` document.
    #[serde(skip)]
    pub document: Option<std::sync::Arc<crate::import::openapi::Document>>,
}

/// A revision that is not the current one: what it changes from the API's own fields (a field
/// it does not write is the API's).
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a revision: a mapping with revision and optionally online, change_log, \
                 backend, backend_path, openapi, operations, policies"
)]
pub struct Revision {
    pub revision: u32,
    /// Reachable at `{path};rev=N` (default true).
    pub online: Option<bool>,
    pub change_log: Option<String>,
    pub backend: Option<String>,
    pub backend_path: Option<String>,
    pub openapi: Option<String>,
    pub operations: Option<Vec<Operation>>,
    pub policies: Option<Sections>,
    #[serde(skip)]
    pub generated: Vec<Operation>,
    #[serde(skip)]
    pub document: Option<std::sync::Arc<crate::import::openapi::Document>>,
}

/// A version set: APIs that are versions of one API, told apart by one scheme.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a version set: a mapping with name, scheme and optionally header, query, \
                 default, display_name, description"
)]
pub struct VersionSetDoc {
    pub name: String,
    pub scheme: VersionScheme,
    /// The header the version is read from (scheme `header`; default `Api-Version`).
    pub header: Option<String>,
    /// The query parameter the version is read from (scheme `query`; default `api-version`).
    pub query: Option<String>,
    /// The version an unversioned request goes to; without one it is answered 404 with the
    /// list of versions.
    pub default: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionScheme {
    /// `/orders/v2/...`
    Path,
    /// `Api-Version: v2`
    Header,
    /// `?api-version=v2`
    Query,
}

impl VersionScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionScheme::Path => "path",
            VersionScheme::Header => "header",
            VersionScheme::Query => "query",
        }
    }
}

/// A compiled version set.
#[derive(Clone, Debug)]
pub struct VersionSet {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub scheme: VersionScheme,
    /// Lower case (scheme `header`).
    pub header: String,
    pub query: String,
    pub default: Option<String>,
    /// (version, API name), in declaration order.
    pub versions: Vec<(String, String)>,
    /// Where the set's versions answer: the first version's path (without the version) and
    /// hosts.
    pub path: String,
    pub hosts: Vec<crate::route::HostPattern>,
}

/// A revision of an API, as the portal and the admin API list them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionInfo {
    pub revision: u32,
    pub current: bool,
    pub online: bool,
    pub change_log: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an operation: a mapping with id, method, url_template and optionally policies"
)]
pub struct Operation {
    pub id: String,
    pub method: String,
    pub url_template: String,
    pub backend: Option<String>,
    #[serde(default)]
    pub policies: Sections,
}

/// A scope's policy sections. A section that is not written inherits the parent's whole.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with inbound, backend, outbound, on_error"
)]
pub struct Sections {
    pub inbound: Option<Vec<PolicyDoc>>,
    pub backend: Option<Vec<PolicyDoc>>,
    pub outbound: Option<Vec<PolicyDoc>>,
    pub on_error: Option<Vec<PolicyDoc>>,
}

/// Per-worker cache sizes.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with max_bytes, max_entry_bytes, max_value_bytes"
)]
pub struct CacheDoc {
    pub max_bytes: Option<Size>,
    pub max_entry_bytes: Option<Size>,
    pub max_value_bytes: Option<Size>,
}

/// Where runtime state (quota counters) is kept across restarts.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with path, persist_interval"
)]
pub struct StateDoc {
    pub path: Option<String>,
    pub persist_interval: Option<Dur>,
}

macro_rules! policies {
    ($( $name:literal => $variant:ident($doc:ty) ),* $(,)?) => {
        /// One policy as written: `base`, or a one-key mapping `name: settings`.
        #[derive(Debug)]
        pub enum PolicyDoc {
            Base,
            $( $variant($doc), )*
        }

        const POLICY_NAMES: &[&str] = &["base", $( $name ),*];

        impl PolicyDoc {
            fn name(&self) -> &'static str {
                match self {
                    PolicyDoc::Base => "base",
                    $( PolicyDoc::$variant(_) => $name, )*
                }
            }
        }

        impl<'de> Deserialize<'de> for PolicyDoc {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PolicyDoc, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = PolicyDoc;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a policy: `base`, or a mapping with one key, the policy's \
                                     name (such as `rate-limit-by-key: {calls: 10, ...}`)")
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<PolicyDoc, E> {
                        match s {
                            "base" => Ok(PolicyDoc::Base),
                            other => Err(E::unknown_variant(other, POLICY_NAMES)),
                        }
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<PolicyDoc, A::Error> {
                        let Some(key) = m.next_key::<String>()? else {
                            return Err(de::Error::custom("an empty mapping is not a policy"));
                        };
                        let policy = match key.as_str() {
                            "base" => {
                                let _: de::IgnoredAny = m.next_value()?;
                                PolicyDoc::Base
                            }
                            $( $name => PolicyDoc::$variant(m.next_value()?), )*
                            other => return Err(de::Error::unknown_variant(other, POLICY_NAMES)),
                        };
                        if let Some(extra) = m.next_key::<String>()? {
                            return Err(de::Error::custom(format!(
                                "one policy per list item: {extra:?} follows {key:?} in the \
                                 same mapping (start it with its own `- `)"
                            )));
                        }
                        Ok(policy)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

policies! {
    "set-header" => SetHeader(SetHeaderDoc),
    "set-query-parameter" => SetQuery(SetHeaderDoc),
    "rewrite-uri" => RewriteUri(RewriteUriDoc),
    "return-response" => ReturnResponse(ReturnResponseDoc),
    "mock-response" => MockResponse(MockResponseDoc),
    "set-status" => SetStatus(SetStatusDoc),
    "set-backend-service" => SetBackend(SetBackendDoc),
    "rate-limit-by-key" => RateLimit(RateLimitDoc),
    "rate-limit" => SubscriptionRate(SubscriptionRateDoc),
    "quota-by-key" => Quota(QuotaDoc),
    "limit-concurrency" => Concurrency(ConcurrencyDoc),
    "cache-lookup" => CacheLookup(CacheLookupDoc),
    "cache-store" => CacheStore(CacheStoreDoc),
    "cache-lookup-value" => LookupValue(LookupValueDoc),
    "cache-store-value" => StoreValue(StoreValueDoc),
    "cache-remove-value" => RemoveValue(RemoveValueDoc),
    "retry" => Retry(RetryDoc),
    "ip-filter" => IpFilter(IpFilterDoc),
    "check-header" => CheckHeader(CheckHeaderDoc),
    "cors" => Cors(CorsDoc),
    "request-size-limit" => RequestSizeLimit(SizeLimitDoc),
    "validate-jwt" => ValidateJwt(ValidateJwtDoc),
    "validate-client-certificate" => ValidateClientCert(ClientCertDoc),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpAction {
    Allow,
    Forbid,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with action, addresses and optionally trusted_proxies"
)]
pub struct IpFilterDoc {
    pub action: IpAction,
    pub addresses: Vec<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with name and optionally values, ignore_case, failed_check_httpcode, \
                 failed_check_error_message"
)]
pub struct CheckHeaderDoc {
    pub name: String,
    #[serde(default)]
    pub values: Vec<Text>,
    #[serde(default)]
    pub ignore_case: bool,
    pub failed_check_httpcode: Option<u16>,
    pub failed_check_error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with allowed_origins and optionally allowed_methods, allowed_headers, \
                 expose_headers, allow_credentials, preflight_result_max_age, \
                 terminate_unmatched_request"
)]
pub struct CorsDoc {
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    pub preflight_result_max_age: Option<u64>,
    pub terminate_unmatched_request: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with keys and optionally header_name, query_parameter_name, \
                 cookie_name, algorithms, issuers, audiences, require_expiration_time, \
                 require_not_before, clock_skew, required_claims, max_token_bytes, \
                 failed_validation_httpcode, failed_validation_error_message"
)]
pub struct ValidateJwtDoc {
    pub header_name: Option<String>,
    pub query_parameter_name: Option<String>,
    pub cookie_name: Option<String>,
    #[serde(default)]
    pub algorithms: Vec<String>,
    pub keys: Vec<JwtKeyDoc>,
    #[serde(default)]
    pub issuers: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub require_expiration_time: Option<bool>,
    #[serde(default)]
    pub require_not_before: bool,
    pub clock_skew: Option<Dur>,
    #[serde(default)]
    pub required_claims: Vec<RequiredClaimDoc>,
    pub max_token_bytes: Option<Size>,
    pub failed_validation_httpcode: Option<u16>,
    pub failed_validation_error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a key: a mapping with one of pem_file, pem, secret, jwks_file, jwks_url, \
                 openid_config_url, and optionally kid (inline keys) or refresh_interval and \
                 ca_file (fetched keys)"
)]
pub struct JwtKeyDoc {
    pub pem_file: Option<String>,
    pub pem: Option<String>,
    pub secret: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub openid_config_url: Option<String>,
    pub refresh_interval: Option<Dur>,
    pub ca_file: Option<String>,
    pub kid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with name, values, match")]
pub struct RequiredClaimDoc {
    pub name: String,
    #[serde(default)]
    pub values: Vec<Text>,
    #[serde(rename = "match", default)]
    pub match_kind: ClaimMatch,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimMatch {
    #[default]
    All,
    Any,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with identities, validate_not_before, validate_not_after, \
                 failed_validation_httpcode, failed_validation_error_message"
)]
pub struct ClientCertDoc {
    #[serde(default)]
    pub identities: Vec<ClientIdentityDoc>,
    pub validate_not_before: Option<bool>,
    pub validate_not_after: Option<bool>,
    pub failed_validation_httpcode: Option<u16>,
    pub failed_validation_error_message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an identity: a mapping with any of thumbprint, fingerprint, serial_number, \
                 common_name, subject, issuer_subject, dns_name"
)]
pub struct ClientIdentityDoc {
    pub thumbprint: Option<String>,
    pub fingerprint: Option<String>,
    pub serial_number: Option<String>,
    pub common_name: Option<String>,
    pub subject: Option<String>,
    pub issuer_subject: Option<String>,
    pub dns_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with max_bytes")]
pub struct SizeLimitDoc {
    pub max_bytes: Size,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExistsDoc {
    #[default]
    Override,
    Skip,
    Append,
    Delete,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with name, value and optionally exists_action"
)]
pub struct SetHeaderDoc {
    pub name: String,
    pub value: Option<Text>,
    #[serde(default)]
    pub exists_action: ExistsDoc,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with template and optionally copy_unmatched_params"
)]
pub struct RewriteUriDoc {
    pub template: String,
    pub copy_unmatched_params: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with status, reason, headers, body"
)]
pub struct ReturnResponseDoc {
    pub status: Option<u16>,
    pub reason: Option<String>,
    #[serde(default)]
    pub headers: TextMap,
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with status, content_type, body"
)]
pub struct MockResponseDoc {
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with code and optionally reason"
)]
pub struct SetStatusDoc {
    pub code: u16,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with backend")]
pub struct SetBackendDoc {
    pub backend: String,
}

/// `200-299`, or one status.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusesDoc {
    One(Text),
    List(Vec<Text>),
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with calls, renewal_period, counter_key and optionally \
                 increment_condition, increment_count, shadow, max_keys, scope"
)]
pub struct RateLimitDoc {
    /// `node` or `cluster` (default: cluster when `cluster:` is configured).
    pub scope: Option<String>,
    pub calls: u64,
    pub renewal_period: Dur,
    pub counter_key: String,
    pub increment_condition: Option<StatusesDoc>,
    pub increment_count: Option<u32>,
    #[serde(default)]
    pub shadow: bool,
    pub max_keys: Option<usize>,
}

/// `rate-limit`: calls per subscription, with nested per-API and per-operation limits.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with calls, renewal_period and optionally apis, shadow, max_keys"
)]
pub struct SubscriptionRateDoc {
    pub calls: u64,
    pub renewal_period: Dur,
    #[serde(default)]
    pub apis: Vec<RateApiDoc>,
    #[serde(default)]
    pub shadow: bool,
    pub max_keys: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with name and calls, renewal_period and/or operations"
)]
pub struct RateApiDoc {
    pub name: String,
    pub calls: Option<u64>,
    pub renewal_period: Option<Dur>,
    #[serde(default)]
    pub operations: Vec<RateOperationDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with id, calls, renewal_period"
)]
pub struct RateOperationDoc {
    pub id: String,
    pub calls: u64,
    pub renewal_period: Dur,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with calls and/or bandwidth, renewal_period, counter_key and \
                 optionally first_period_start, increment_condition, shadow, max_keys, name, scope"
)]
pub struct QuotaDoc {
    /// `node` or `cluster` (default: cluster when `cluster:` is configured).
    pub scope: Option<String>,
    pub name: Option<String>,
    pub calls: Option<u64>,
    pub bandwidth: Option<Size>,
    pub renewal_period: Dur,
    pub counter_key: String,
    pub first_period_start: Option<String>,
    pub increment_condition: Option<StatusesDoc>,
    #[serde(default)]
    pub shadow: bool,
    pub max_keys: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with key, max_count and optionally shadow, max_keys"
)]
pub struct ConcurrencyDoc {
    pub key: String,
    pub max_count: u64,
    #[serde(default)]
    pub shadow: bool,
    pub max_keys: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with vary_by_query, vary_by_header, allow_private"
)]
pub struct CacheLookupDoc {
    #[serde(default)]
    pub vary_by_query: Vec<String>,
    #[serde(default)]
    pub vary_by_header: Vec<String>,
    #[serde(default)]
    pub allow_private: bool,
    pub vary_by_subscription: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with duration and optionally statuses"
)]
pub struct CacheStoreDoc {
    pub duration: Dur,
    pub statuses: Option<StatusesDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with key, variable_name and optionally default_value"
)]
pub struct LookupValueDoc {
    pub key: String,
    pub variable_name: String,
    pub default_value: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with key, value, duration")]
pub struct StoreValueDoc {
    pub key: String,
    pub value: Text,
    pub duration: Dur,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with key")]
pub struct RemoveValueDoc {
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with count, interval and optionally delta, max_interval, \
                 first_fast_retry, condition, max_buffered_body, budget"
)]
pub struct RetryDoc {
    pub count: u32,
    pub interval: Dur,
    pub delta: Option<Dur>,
    pub max_interval: Option<Dur>,
    #[serde(default)]
    pub first_fast_retry: bool,
    #[serde(default)]
    pub condition: RetryConditionDoc,
    pub max_buffered_body: Option<Size>,
    #[serde(default)]
    pub budget: RetryBudgetDoc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with connect_failure, statuses, honor_retry_after"
)]
pub struct RetryConditionDoc {
    pub connect_failure: Option<bool>,
    pub statuses: Option<StatusesDoc>,
    pub honor_retry_after: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with percent, min_per_second"
)]
pub struct RetryBudgetDoc {
    pub percent: Option<u32>,
    pub min_per_second: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// The compiled form.

/// A validated API; the router turns its operations into routes.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub name: String,
    /// Without a trailing `/` (`/` is stored empty).
    pub path: String,
    pub hosts: Vec<crate::route::HostPattern>,
    pub strip_path: bool,
    pub backend_path: String,
    pub operations: Vec<OperationConfig>,
    /// The pipeline of requests under the API's path that match no operation, when the API
    /// lists none (every request then belongs to the API).
    pub pipeline: usize,
    /// The API's backend, if it has one.
    pub backend: Option<String>,
    /// The subscription check of `pipeline`'s route, when the API checks keys.
    pub keys: Option<KeyCheck>,
    /// Whether the API's requests are written to the access log.
    pub access_log: bool,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// The revision this entry serves, and whether it is the current one (served at `path`;
    /// another is served at `path;rev=N`, which `path` then already holds).
    pub revision: u32,
    pub current: bool,
    /// Every revision of the API (on each of its entries), current first.
    pub revisions: Vec<RevisionInfo>,
    /// The version set (an index into `Config::version_sets`) and this API's version there.
    pub version_set: Option<usize>,
    pub version: Option<String>,
    /// Conditions every request of the API must meet besides its path (a version header or
    /// query parameter).
    pub headers: Vec<crate::route::HeaderMatch>,
    pub query: Vec<crate::route::QueryMatch>,
    /// The OpenAPI document the operations came from.
    pub openapi: Option<std::sync::Arc<crate::import::openapi::Document>>,
}

#[derive(Clone, Debug)]
pub struct OperationConfig {
    pub id: String,
    /// The URL template as written, relative to the API's path.
    pub url_template: String,
    /// None: any method (`*`).
    pub method: Option<Box<[u8]>>,
    /// The full path template (API path + URL template).
    pub template: crate::route::Template,
    pub backend: Option<String>,
    pub pipeline: usize,
    /// The operation's subscription check, when its API checks keys.
    pub keys: Option<KeyCheck>,
}

impl ApiConfig {
    /// The API's name, with `;rev=N` for a revision that is not the current one.
    pub fn route_name(&self) -> String {
        if self.current {
            self.name.clone()
        } else {
            format!("{};rev={}", self.name, self.revision)
        }
    }
}

/// The limit and cache policies' node-wide definitions, by kind, in declaration order.
#[derive(Clone, Debug, Default)]
pub struct PolicyTables {
    pub rate: Vec<RateDef>,
    pub quota: Vec<QuotaDef>,
    pub concurrency: Vec<ConcurrencyDef>,
    /// Every `retry` policy, for each worker's retry budgets.
    pub retry: Vec<crate::upstream::RetrySpec>,
    /// `validate-jwt` keys fetched from URLs: the sources and each policy's key group.
    pub jwks: crate::policy::auth::jwks::JwksTables,
}

#[derive(Clone, Debug)]
pub struct RateDef {
    pub origin: String,
    /// Counted across every node of the cluster, through Redis.
    pub cluster: bool,
    pub calls: u64,
    pub period: Duration,
    pub max_keys: usize,
}

#[derive(Clone, Debug)]
pub struct QuotaDef {
    /// Stable name for the state file (the policy's `name`, else where it was declared).
    pub id: String,
    pub origin: String,
    /// Counted across every node of the cluster, in Redis.
    pub cluster: bool,
    pub calls: Option<u64>,
    pub bandwidth: Option<u64>,
    pub period: Duration,
    pub first_period_start_ms: u64,
    pub max_keys: usize,
}

#[derive(Clone, Debug)]
pub struct ConcurrencyDef {
    pub origin: String,
    pub max_count: u64,
    pub max_keys: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    pub max_bytes: usize,
    pub max_entry_bytes: usize,
    pub max_value_bytes: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_bytes: 64 << 20,
            max_entry_bytes: 1 << 20,
            max_value_bytes: 4 << 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSettings {
    /// None: runtime state is not kept across restarts.
    pub path: Option<std::path::PathBuf>,
    pub persist_interval: Duration,
}

/// The largest key table a limit policy may ask for per worker.
const MAX_KEYS: usize = 1 << 20;
const DEFAULT_MAX_KEYS: usize = 10_000;
/// The longest window a limit may have: a year.
const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

// ---------------------------------------------------------------------------------------------
// Compilation.

/// One section of one scope: its policies, with where `base` stands.
#[derive(Clone, Debug, Default)]
pub struct Section {
    /// None: not written (inherit the parent's whole).
    items: Option<Vec<Item>>,
}

#[derive(Clone, Debug)]
enum Item {
    Base,
    /// A policy, and where it was declared when it reads the request's subscription.
    Policy(Policy, Option<Box<str>>),
}

#[derive(Clone, Debug, Default)]
pub struct CompiledSections {
    inbound: Section,
    backend: Section,
    outbound: Section,
    on_error: Section,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Inbound,
    Backend,
    Outbound,
    OnError,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Inbound => "inbound",
            Kind::Backend => "backend",
            Kind::Outbound => "outbound",
            Kind::OnError => "on_error",
        }
    }
}

/// What every compilation shares: the backends known, the variables declared, the tables.
pub struct Compiler<'a> {
    pub backends: &'a [&'a str],
    /// Files the policies name (keys) are relative to this directory.
    pub dir: std::path::PathBuf,
    pub vars: Vec<String>,
    pub tables: PolicyTables,
    pub pipelines: Vec<Pipeline>,
    /// For each pipeline, where its policies that read the subscription were declared.
    pub subscription_readers: Vec<Vec<Box<str>>>,
    /// Every API's name and operation ids, for `rate-limit`'s nested limits.
    pub apis: Vec<(&'a str, Vec<&'a str>)>,
    /// Whether `cluster:` is configured (limits are cluster-wide by default then).
    pub cluster: bool,
}

/// The names of the variables that `cache-lookup-value` policies set, anywhere in the
/// document: templates may read them as `{var:NAME}`.
pub fn declared_vars(doc_sections: &[&Sections]) -> Vec<String> {
    let mut vars = Vec::new();
    for s in doc_sections {
        for list in [&s.inbound, &s.backend, &s.outbound, &s.on_error]
            .into_iter()
            .flatten()
        {
            for p in list {
                if let PolicyDoc::LookupValue(l) = p {
                    if !vars.contains(&l.variable_name) {
                        vars.push(l.variable_name.clone());
                    }
                }
            }
        }
    }
    vars
}

impl Compiler<'_> {
    /// A limit's `scope`: cluster-wide when it says so, or by default when `cluster:` is
    /// configured.
    fn scope(&self, path: &str, scope: Option<&str>, errors: &mut Errors) -> bool {
        match scope {
            None => self.cluster,
            Some("node") => false,
            Some("cluster") if self.cluster => true,
            Some("cluster") => {
                errors.push(
                    format_args!("{path}.scope"),
                    "cluster needs a cluster: section (the Redis the nodes share)",
                );
                false
            }
            Some(other) => {
                errors.push(
                    format_args!("{path}.scope"),
                    format!("{other:?}: give node or cluster"),
                );
                false
            }
        }
    }

    /// Compiles one scope's sections. `path` is its document path (`apis[0].policies`).
    pub fn sections(
        &mut self,
        path: &str,
        doc: &Sections,
        params: &[String],
        errors: &mut Errors,
    ) -> CompiledSections {
        CompiledSections {
            inbound: self.section(path, Kind::Inbound, doc.inbound.as_deref(), params, errors),
            backend: self.section(path, Kind::Backend, doc.backend.as_deref(), params, errors),
            outbound: self.section(
                path,
                Kind::Outbound,
                doc.outbound.as_deref(),
                params,
                errors,
            ),
            on_error: self.section(path, Kind::OnError, doc.on_error.as_deref(), params, errors),
        }
    }

    fn section(
        &mut self,
        path: &str,
        kind: Kind,
        list: Option<&[PolicyDoc]>,
        params: &[String],
        errors: &mut Errors,
    ) -> Section {
        let Some(list) = list else {
            return Section { items: None };
        };
        let mut items = Vec::new();
        let mut bases = 0;
        for (i, p) in list.iter().enumerate() {
            let ppath = format!("{path}.{}[{i}]", kind.name());
            if let PolicyDoc::Base = p {
                bases += 1;
                if bases == 2 {
                    errors.push(&ppath, "base may appear once per section");
                }
                items.push(Item::Base);
                continue;
            }
            if !allowed(kind, p) {
                errors.push(
                    &ppath,
                    format!(
                        "{} cannot be used in the {} section (it belongs in {})",
                        p.name(),
                        kind.name(),
                        belongs(p)
                    ),
                );
                continue;
            }
            let ppath = format!("{ppath}.{}", p.name());
            if let Some(policy) = self.policy(&ppath, kind, p, params, errors) {
                let reads = policy.reads_subscription().then(|| ppath.into());
                items.push(Item::Policy(policy, reads));
            }
        }
        Section { items: Some(items) }
    }

    /// Flattens `child` over `parent` (each already flattened) and registers the pipeline.
    pub fn pipeline(&mut self, scopes: &[&CompiledSections]) -> usize {
        let mut readers = Vec::new();
        let mut flat = |pick: fn(&CompiledSections) -> &Section| -> Box<[Policy]> {
            let mut out: Vec<&Item> = Vec::new();
            for scope in scopes {
                let Some(items) = &pick(scope).items else {
                    continue; // not written: the parent's section stands
                };
                let parent = std::mem::take(&mut out);
                let mut parent = Some(parent);
                for item in items {
                    match item {
                        Item::Base => out.extend(parent.take().unwrap_or_default()),
                        Item::Policy(..) => out.push(item),
                    }
                }
            }
            out.into_iter()
                .filter_map(|item| match item {
                    Item::Policy(p, reads) => {
                        readers.extend(reads.clone());
                        Some(p.clone())
                    }
                    Item::Base => None,
                })
                .collect()
        };
        let pipeline = Pipeline {
            inbound: flat(|s| &s.inbound),
            backend: flat(|s| &s.backend),
            outbound: flat(|s| &s.outbound),
            on_error: flat(|s| &s.on_error),
        };
        self.pipelines.push(pipeline);
        self.subscription_readers.push(readers);
        self.pipelines.len() - 1
    }

    /// Refuses the policies of pipeline `p` that read the subscription, when the route or
    /// API that runs it (`owner`) checks no subscription key: they would never see one.
    pub fn refuse_subscription_readers(&self, p: usize, owner: &str, errors: &mut Errors) {
        for at in &self.subscription_readers[p] {
            let message = format!(
                "{at}: reads the request's subscription ({{subscription}}, {{product}}, \
                 vary_by_subscription or rate-limit), but {owner}, which runs it, checks no \
                 subscription key: put the API in a product, set subscription_required on it, \
                 or leave the policy out of this scope"
            );
            if !errors.0.contains(&message) {
                errors.0.push(message);
            }
        }
    }

    /// The pipelines of one route under each product in `holding` (global → product →
    /// `rest`), as a key check picks them.
    pub fn product_pipelines(
        &mut self,
        global: &CompiledSections,
        products: &[CompiledSections],
        holding: &[usize],
        rest: &[&CompiledSections],
    ) -> Box<[(usize, usize)]> {
        holding
            .iter()
            .map(|&p| {
                let mut scopes = vec![global, &products[p]];
                scopes.extend_from_slice(rest);
                (p, self.pipeline(&scopes))
            })
            .collect()
    }

    fn template(
        &self,
        path: &str,
        text: &str,
        params: &[String],
        errors: &mut Errors,
    ) -> Option<Template> {
        let scope = Scope {
            vars: &self.vars,
            path_params: params,
        };
        Template::parse(text, &scope)
            .map_err(|e| errors.push(path, e))
            .ok()
    }

    fn backend(&self, path: &str, name: &str, errors: &mut Errors) -> Option<usize> {
        let found = self.backends.iter().position(|b| *b == name);
        if found.is_none() {
            errors.push(path, super::unknown_backend_among(name, self.backends));
        }
        found
    }

    fn policy(
        &mut self,
        path: &str,
        _kind: Kind,
        p: &PolicyDoc,
        params: &[String],
        errors: &mut Errors,
    ) -> Option<Policy> {
        let before = errors.0.len();
        let policy = match p {
            PolicyDoc::Base => unreachable!("handled by the caller"),
            PolicyDoc::SetHeader(d) | PolicyDoc::SetQuery(d) => {
                let query = matches!(p, PolicyDoc::SetQuery(_));
                let npath = format!("{path}.name");
                if query {
                    if d.name.is_empty() || d.name.bytes().any(|b| b"&=#? ".contains(&b)) {
                        errors.push(
                            &npath,
                            format!("{:?} is not a query parameter name", d.name),
                        );
                    }
                } else {
                    super::routes::check_header(&npath, &d.name, None, errors);
                    super::routes::check_not_managed(&npath, &d.name, errors);
                }
                let action = match d.exists_action {
                    ExistsDoc::Override => ExistsAction::Override,
                    ExistsDoc::Skip => ExistsAction::Skip,
                    ExistsDoc::Append => ExistsAction::Append,
                    ExistsDoc::Delete => ExistsAction::Delete,
                };
                let value = match (&d.value, action) {
                    (_, ExistsAction::Delete) => Template::default(),
                    (None, _) => {
                        errors.push(
                            format_args!("{path}.value"),
                            "a value is needed unless exists_action is delete",
                        );
                        Template::default()
                    }
                    (Some(v), _) => {
                        if v.0.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                            errors.push(
                                format_args!("{path}.value"),
                                "a value may not contain CR, LF or NUL",
                            );
                        }
                        self.template(&format!("{path}.value"), &v.0, params, errors)
                            .unwrap_or_default()
                    }
                };
                let s = SetHeader {
                    name: d.name.as_bytes().into(),
                    lower: d.name.to_ascii_lowercase().into_bytes().into(),
                    value,
                    action,
                };
                if query {
                    Policy::SetQuery(s)
                } else {
                    Policy::SetHeader(s)
                }
            }
            PolicyDoc::RewriteUri(d) => {
                let tpath = format!("{path}.template");
                if !d.template.starts_with('/') {
                    errors.push(&tpath, format!("{:?} must start with '/'", d.template));
                }
                let (p, _) = d.template.split_once('?').unwrap_or((&d.template, ""));
                let literal: String = p.chars().filter(|c| *c != '{' && *c != '}').collect();
                super::routes::check_rewrite_path(&tpath, &literal, errors);
                let template = self.template(&tpath, &d.template, params, errors)?;
                Policy::RewriteUri(Box::new(RewriteUri {
                    template,
                    copy_unmatched_params: d.copy_unmatched_params.unwrap_or(true),
                }))
            }
            PolicyDoc::ReturnResponse(d) => {
                let status =
                    self.status(&format!("{path}.status"), d.status.unwrap_or(200), errors);
                let mut headers = Vec::new();
                for (name, value) in &d.headers.0 {
                    let hpath = format!("{path}.headers");
                    super::routes::check_header(&hpath, name, Some(value), errors);
                    super::routes::check_not_managed(&hpath, name, errors);
                    if let Some(t) =
                        self.template(&format!("{hpath}.{name}"), value, params, errors)
                    {
                        headers.push((name.as_bytes().into(), t));
                    }
                }
                Policy::Respond(Box::new(Respond {
                    status,
                    reason: self.reason(path, d.reason.as_deref(), errors),
                    headers,
                    body: Bytes::from(d.body.clone().unwrap_or_default()),
                }))
            }
            PolicyDoc::MockResponse(d) => {
                let status =
                    self.status(&format!("{path}.status"), d.status.unwrap_or(200), errors);
                let content_type = d.content_type.as_deref().unwrap_or("application/json");
                super::routes::check_header(
                    &format!("{path}.content_type"),
                    "content-type",
                    Some(content_type),
                    errors,
                );
                let body = d.body.clone().unwrap_or_default();
                Policy::Respond(Box::new(Respond {
                    status,
                    reason: None,
                    headers: if body.is_empty() {
                        Vec::new()
                    } else {
                        vec![(
                            b"content-type"[..].into(),
                            Template::literal(content_type.as_bytes()),
                        )]
                    },
                    body: Bytes::from(body),
                }))
            }
            PolicyDoc::SetStatus(d) => {
                let code = self.status(&format!("{path}.code"), d.code, errors);
                let reason = self
                    .reason(path, d.reason.as_deref(), errors)
                    .unwrap_or_else(|| crate::server::reason(code).into());
                Policy::SetStatus { code, reason }
            }
            PolicyDoc::SetBackend(d) => {
                Policy::SetBackend(self.backend(&format!("{path}.backend"), &d.backend, errors)?)
            }
            PolicyDoc::RateLimit(d) => {
                if d.calls == 0 || d.calls > u32::MAX as u64 {
                    errors.push(
                        format_args!("{path}.calls"),
                        format!("must be from 1 to {}, not {}", u32::MAX, d.calls),
                    );
                }
                let period = duration(
                    errors,
                    &format!("{path}.renewal_period"),
                    Some(d.renewal_period),
                    Duration::from_secs(1),
                    MAX_PERIOD,
                );
                let key = self.template(
                    &format!("{path}.counter_key"),
                    &d.counter_key,
                    params,
                    errors,
                )?;
                let increment_condition = self.statuses(
                    &format!("{path}.increment_condition"),
                    d.increment_condition.as_ref(),
                    errors,
                );
                let increment_count = d.increment_count.unwrap_or(1);
                if increment_count == 0 || u64::from(increment_count) > d.calls.max(1) {
                    errors.push(
                        format_args!("{path}.increment_count"),
                        format!(
                            "must be from 1 to calls ({}), not {increment_count}",
                            d.calls
                        ),
                    );
                }
                let max_keys = self.max_keys(path, d.max_keys, errors);
                let cluster = self.scope(path, d.scope.as_deref(), errors);
                self.tables.rate.push(RateDef {
                    origin: path.to_string(),
                    cluster,
                    calls: d.calls,
                    period,
                    max_keys,
                });
                Policy::RateLimit(Box::new(Limit {
                    index: self.tables.rate.len() - 1,
                    key,
                    shadow: d.shadow,
                    increment_condition,
                    increment_count,
                    origin: path.into(),
                }))
            }
            PolicyDoc::SubscriptionRate(d) => self.subscription_rate(path, d, errors),
            PolicyDoc::Quota(d) => {
                if d.calls.is_none() && d.bandwidth.is_none() {
                    errors.push(path, "set calls, bandwidth or both");
                }
                if let Some(c) = d.calls {
                    if c == 0 || c > u32::MAX as u64 {
                        errors.push(
                            format_args!("{path}.calls"),
                            format!("must be from 1 to {}, not {c}", u32::MAX),
                        );
                    }
                }
                if d.bandwidth.is_some_and(|b| b.0 == 0) {
                    errors.push(format_args!("{path}.bandwidth"), "must be greater than 0");
                }
                let period = duration(
                    errors,
                    &format!("{path}.renewal_period"),
                    Some(d.renewal_period),
                    Duration::from_secs(3600),
                    MAX_PERIOD,
                );
                let first_period_start_ms = match &d.first_period_start {
                    None => 0,
                    Some(text) => match parse_rfc3339_ms(text) {
                        Ok(ms) => ms,
                        Err(e) => {
                            errors.push(format_args!("{path}.first_period_start"), e);
                            0
                        }
                    },
                };
                let key = self.template(
                    &format!("{path}.counter_key"),
                    &d.counter_key,
                    params,
                    errors,
                )?;
                let increment_condition = self.statuses(
                    &format!("{path}.increment_condition"),
                    d.increment_condition.as_ref(),
                    errors,
                );
                let max_keys = self.max_keys(path, d.max_keys, errors);
                let id = d.name.clone().unwrap_or_else(|| path.to_string());
                if self.tables.quota.iter().any(|q| q.id == id) {
                    errors.push(
                        format_args!("{path}.name"),
                        format!("another quota-by-key is named {id:?}"),
                    );
                }
                let cluster = self.scope(path, d.scope.as_deref(), errors);
                self.tables.quota.push(QuotaDef {
                    id,
                    origin: path.to_string(),
                    cluster,
                    calls: d.calls,
                    bandwidth: d.bandwidth.map(|b| b.0),
                    period,
                    first_period_start_ms,
                    max_keys,
                });
                Policy::Quota(Box::new(Limit {
                    index: self.tables.quota.len() - 1,
                    key,
                    shadow: d.shadow,
                    increment_condition,
                    increment_count: 1,
                    origin: path.into(),
                }))
            }
            PolicyDoc::Concurrency(d) => {
                if d.max_count == 0 || d.max_count > u32::MAX as u64 {
                    errors.push(
                        format_args!("{path}.max_count"),
                        format!("must be from 1 to {}, not {}", u32::MAX, d.max_count),
                    );
                }
                let key = self.template(&format!("{path}.key"), &d.key, params, errors)?;
                let max_keys = self.max_keys(path, d.max_keys, errors);
                self.tables.concurrency.push(ConcurrencyDef {
                    origin: path.to_string(),
                    max_count: d.max_count,
                    max_keys,
                });
                Policy::Concurrency(Box::new(Limit {
                    index: self.tables.concurrency.len() - 1,
                    key,
                    shadow: d.shadow,
                    increment_condition: None,
                    increment_count: 1,
                    origin: path.into(),
                }))
            }
            PolicyDoc::CacheLookup(d) => {
                for (i, h) in d.vary_by_header.iter().enumerate() {
                    if !super::routes::is_token(h) {
                        errors.push(
                            format_args!("{path}.vary_by_header[{i}]"),
                            format!("{h:?} is not a header name"),
                        );
                    }
                }
                for (i, q) in d.vary_by_query.iter().enumerate() {
                    if q.is_empty() || q.bytes().any(|b| b"&=#? ".contains(&b)) {
                        errors.push(
                            format_args!("{path}.vary_by_query[{i}]"),
                            format!("{q:?} is not a query parameter name (or `*`)"),
                        );
                    }
                }
                Policy::CacheLookup(Box::new(CacheLookup {
                    vary_by_query: d
                        .vary_by_query
                        .iter()
                        .map(|q| q.as_bytes().into())
                        .collect(),
                    vary_by_header: d
                        .vary_by_header
                        .iter()
                        .map(|h| h.to_ascii_lowercase().into_bytes().into())
                        .collect(),
                    allow_private: d.allow_private,
                    vary_by_subscription: d.vary_by_subscription.unwrap_or(false),
                }))
            }
            PolicyDoc::CacheStore(d) => {
                let duration = duration(
                    errors,
                    &format!("{path}.duration"),
                    Some(d.duration),
                    Duration::from_secs(60),
                    MAX_PERIOD,
                );
                let statuses = self
                    .statuses(&format!("{path}.statuses"), d.statuses.as_ref(), errors)
                    .unwrap_or(StatusRanges(vec![(200, 200)]));
                Policy::CacheStore(Box::new(CacheStore { duration, statuses }))
            }
            PolicyDoc::LookupValue(d) => {
                let key = self.template(&format!("{path}.key"), &d.key, params, errors)?;
                let var = self
                    .vars
                    .iter()
                    .position(|v| *v == d.variable_name)
                    .expect("declared_vars saw every cache-lookup-value")
                    as u16;
                Policy::LookupValue(Box::new(LookupValue {
                    key,
                    var,
                    default: d.default_value.as_ref().map(|v| Bytes::from(v.0.clone())),
                }))
            }
            PolicyDoc::StoreValue(d) => {
                let key = self.template(&format!("{path}.key"), &d.key, params, errors)?;
                let value = self.template(&format!("{path}.value"), &d.value.0, params, errors)?;
                let duration = duration(
                    errors,
                    &format!("{path}.duration"),
                    Some(d.duration),
                    Duration::from_secs(60),
                    MAX_PERIOD,
                );
                Policy::StoreValue(Box::new(StoreValue {
                    key,
                    value,
                    duration,
                }))
            }
            PolicyDoc::RemoveValue(d) => Policy::RemoveValue(self.template(
                &format!("{path}.key"),
                &d.key,
                params,
                errors,
            )?),
            PolicyDoc::IpFilter(d) => {
                let nets = |key: &str, list: &[String], errors: &mut Errors| {
                    let mut out = Vec::new();
                    for (i, a) in list.iter().enumerate() {
                        match crate::policy::auth::access::IpNet::parse(a) {
                            Ok(n) => out.push(n),
                            Err(e) => errors.push(format_args!("{path}.{key}[{i}]"), e),
                        }
                    }
                    out
                };
                let filter = crate::policy::auth::access::IpFilter {
                    allow: matches!(d.action, IpAction::Allow),
                    nets: nets("addresses", &d.addresses, errors),
                    trusted_proxies: nets("trusted_proxies", &d.trusted_proxies, errors),
                };
                Policy::IpFilter(Box::new(filter))
            }
            PolicyDoc::CheckHeader(d) => {
                super::routes::check_header(&format!("{path}.name"), &d.name, None, errors);
                let status = d.failed_check_httpcode.unwrap_or(401);
                if !(400..=599).contains(&status) {
                    errors.push(
                        format_args!("{path}.failed_check_httpcode"),
                        format!("must be from 400 to 599, not {status}"),
                    );
                }
                Policy::CheckHeader(Box::new(crate::policy::auth::access::CheckHeader {
                    name: d.name.to_ascii_lowercase().into_bytes().into(),
                    values: d.values.iter().map(|v| v.0.as_bytes().into()).collect(),
                    ignore_case: d.ignore_case,
                    status,
                    message: d
                        .failed_check_error_message
                        .clone()
                        .unwrap_or_else(|| format!("Missing or invalid header {}", d.name))
                        .into(),
                }))
            }
            PolicyDoc::Cors(d) => {
                let any = |list: &[String]| list.iter().any(|x| x == "*");
                if d.allowed_origins.is_empty() {
                    errors.push(
                        format_args!("{path}.allowed_origins"),
                        "list at least one origin, or \"*\"",
                    );
                }
                if d.allow_credentials && any(&d.allowed_origins) {
                    errors.push(
                        format_args!("{path}.allow_credentials"),
                        "credentials cannot be allowed for any origin (\"*\"): browsers refuse it; list the origins",
                    );
                }
                for (i, o) in d.allowed_origins.iter().enumerate() {
                    let host = o
                        .strip_prefix("https://")
                        .or_else(|| o.strip_prefix("http://"));
                    let ok = o == "*"
                        || host.is_some_and(|h| {
                            !h.is_empty()
                                && !h.contains('/')
                                && h.bytes().all(|b| b.is_ascii_graphic())
                        });
                    if !ok {
                        errors.push(
                            format_args!("{path}.allowed_origins[{i}]"),
                            format!("{o:?} is not an origin (scheme://host[:port], or \"*\")"),
                        );
                    }
                }
                for (i, m) in d.allowed_methods.iter().enumerate() {
                    if m != "*" && !super::routes::is_token(m) {
                        errors.push(
                            format_args!("{path}.allowed_methods[{i}]"),
                            format!("{m:?} is not a method"),
                        );
                    }
                }
                for (key, list) in [
                    ("allowed_headers", &d.allowed_headers),
                    ("expose_headers", &d.expose_headers),
                ] {
                    for (i, h) in list.iter().enumerate() {
                        if h != "*" && !super::routes::is_token(h) {
                            errors.push(
                                format_args!("{path}.{key}[{i}]"),
                                format!("{h:?} is not a header name"),
                            );
                        }
                    }
                }
                let plain = |list: &[String], upper: bool| -> Vec<Box<[u8]>> {
                    list.iter()
                        .filter(|x| *x != "*")
                        .map(|x| {
                            let x = if upper {
                                x.to_ascii_uppercase()
                            } else {
                                x.to_ascii_lowercase()
                            };
                            x.into_bytes().into()
                        })
                        .collect()
                };
                let join = |list: &[String]| -> Box<[u8]> {
                    list.iter()
                        .filter(|x| *x != "*")
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                        .into_bytes()
                        .into()
                };
                Policy::Cors(Box::new(crate::policy::auth::access::Cors {
                    origins: d
                        .allowed_origins
                        .iter()
                        .filter(|o| *o != "*")
                        .map(|o| o.as_bytes().into())
                        .collect(),
                    any_origin: any(&d.allowed_origins),
                    methods: plain(&d.allowed_methods, true),
                    any_method: any(&d.allowed_methods),
                    headers: plain(&d.allowed_headers, false),
                    any_header: any(&d.allowed_headers),
                    expose: join(&d.expose_headers),
                    credentials: d.allow_credentials,
                    max_age: d.preflight_result_max_age,
                    terminate_unmatched: d.terminate_unmatched_request.unwrap_or(true),
                    methods_text: join(&d.allowed_methods),
                    headers_text: join(&d.allowed_headers),
                }))
            }
            PolicyDoc::ValidateJwt(d) => {
                Policy::ValidateJwt(Box::new(self.validate_jwt(path, d, errors)?))
            }
            PolicyDoc::ValidateClientCert(d) => {
                let status = d.failed_validation_httpcode.unwrap_or(403);
                if !(400..=599).contains(&status) {
                    errors.push(
                        format_args!("{path}.failed_validation_httpcode"),
                        format!("must be from 400 to 599, not {status}"),
                    );
                }
                let mut identities = Vec::new();
                for (i, id) in d.identities.iter().enumerate() {
                    let hex = |v: &Option<String>, name: &str, len: usize, errors: &mut Errors| {
                        let v = v.as_ref()?;
                        let clean: String = v.chars().filter(|c| *c != ':').collect();
                        if clean.is_empty()
                            || (len > 0 && clean.len() != len)
                            || !clean.chars().all(|c| c.is_ascii_hexdigit())
                        {
                            errors.push(
                                format_args!("{path}.identities[{i}].{name}"),
                                format!(
                                    "{v:?} is not a hex digest{}",
                                    if len > 0 {
                                        format!(" of {} bytes", len / 2)
                                    } else {
                                        String::new()
                                    }
                                ),
                            );
                        }
                        Some(clean.to_ascii_uppercase())
                    };
                    let identity = crate::policy::ClientIdentity {
                        thumbprint: hex(&id.thumbprint, "thumbprint", 40, errors),
                        fingerprint: hex(&id.fingerprint, "fingerprint", 64, errors),
                        serial_number: hex(&id.serial_number, "serial_number", 0, errors),
                        common_name: id.common_name.clone(),
                        subject: id.subject.clone(),
                        issuer_subject: id.issuer_subject.clone(),
                        dns_name: id.dns_name.as_ref().map(|d| d.to_ascii_lowercase()),
                    };
                    if identity.is_empty() {
                        errors.push(
                            format_args!("{path}.identities[{i}]"),
                            "give at least one of thumbprint, fingerprint, serial_number, \
                             common_name, subject, issuer_subject, dns_name",
                        );
                    }
                    identities.push(identity);
                }
                Policy::ValidateClientCert(Box::new(crate::policy::ValidateClientCert {
                    identities,
                    not_before: d.validate_not_before.unwrap_or(true),
                    not_after: d.validate_not_after.unwrap_or(true),
                    status,
                    message: d
                        .failed_validation_error_message
                        .clone()
                        .unwrap_or_else(|| "Invalid client certificate".to_string())
                        .into(),
                }))
            }
            PolicyDoc::RequestSizeLimit(d) => {
                if d.max_bytes.0 == 0 {
                    errors.push(format_args!("{path}.max_bytes"), "must be greater than 0");
                }
                Policy::RequestSizeLimit(d.max_bytes.0)
            }
            PolicyDoc::Retry(d) => {
                let spec = retry_spec(path, d, errors);
                self.tables.retry.push(spec.clone());
                Policy::Retry(Box::new(crate::policy::Retry {
                    index: self.tables.retry.len() - 1,
                    spec,
                }))
            }
        };
        (errors.0.len() == before).then_some(policy)
    }

    fn validate_jwt(
        &mut self,
        path: &str,
        d: &ValidateJwtDoc,
        errors: &mut Errors,
    ) -> Option<crate::policy::ValidateJwt> {
        use crate::policy::auth::jwt::{JwtSpec, KeySet, RequiredClaim};
        use jsonwebtoken::Algorithm;
        let before = errors.0.len();
        let mut algorithms = Vec::new();
        for (i, a) in d.algorithms.iter().enumerate() {
            match a.parse::<Algorithm>() {
                Ok(alg) => algorithms.push(alg),
                Err(_) => errors.push(
                    format_args!("{path}.algorithms[{i}]"),
                    format!(
                        "{a:?} is not a signing algorithm (HS256, HS384, HS512, RS256, RS384, \
                         RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                    ),
                ),
            }
        }
        if d.algorithms.is_empty() {
            errors.push(
                format_args!("{path}.algorithms"),
                "list the algorithms tokens may be signed with (for example [RS256])",
            );
        }
        if d.keys.is_empty() {
            errors.push(format_args!("{path}.keys"), "give at least one key");
        }
        let mut keys = KeySet::default();
        let mut remote = Vec::new();
        for (i, k) in d.keys.iter().enumerate() {
            let kpath = format!("{path}.keys[{i}]");
            let read = |file: &str, errors: &mut Errors| -> Option<Vec<u8>> {
                let full = self.dir.join(file);
                std::fs::read(&full)
                    .map_err(|e| {
                        errors.push(&kpath, format!("cannot read {}: {e}", full.display()))
                    })
                    .ok()
            };
            let url = [&k.jwks_url, &k.openid_config_url];
            let given = [&k.pem_file, &k.pem, &k.secret, &k.jwks_file]
                .into_iter()
                .chain(url)
                .filter(|x| x.is_some())
                .count();
            if given != 1 {
                errors.push(
                    &kpath,
                    "give exactly one of pem_file, pem, secret, jwks_file, jwks_url, \
                     openid_config_url",
                );
                continue;
            }
            if let Some(url) = k.jwks_url.as_ref().or(k.openid_config_url.as_ref()) {
                let ca_file = k.ca_file.as_ref().map(|f| self.dir.join(f));
                match crate::policy::auth::jwks::SourceDef::from_config(
                    &kpath,
                    url,
                    k.openid_config_url.is_some(),
                    k.refresh_interval.map(|r| r.0),
                    ca_file.as_deref(),
                    k.kid.is_some(),
                ) {
                    Ok(source) => remote.push(source),
                    Err(e) => e.into_iter().for_each(|(p, m)| errors.push(p, m)),
                }
                continue;
            }
            if k.refresh_interval.is_some() || k.ca_file.is_some() {
                errors.push(
                    &kpath,
                    "refresh_interval and ca_file go with jwks_url or openid_config_url",
                );
                continue;
            }
            let set = if let Some(f) = &k.pem_file {
                read(f, errors).map(|pem| KeySet::from_pem_public_key(&pem))
            } else if let Some(pem) = &k.pem {
                Some(KeySet::from_pem_public_key(pem.as_bytes()))
            } else if let Some(secret) = &k.secret {
                if secret.len() < 32 {
                    errors.push(&kpath, "an HMAC secret must be at least 32 bytes");
                }
                Some(Ok(KeySet::from_hmac_secret(secret.as_bytes())))
            } else if let Some(f) = &k.jwks_file {
                read(f, errors).map(|json| KeySet::from_jwks_json(&json))
            } else {
                None
            };
            match set {
                Some(Ok(mut set)) => {
                    if let Some(kid) = &k.kid {
                        set = set.with_kid(kid);
                    }
                    keys.merge(set);
                }
                Some(Err(e)) => errors.push(&kpath, e),
                None => {}
            }
        }
        let remote = (!remote.is_empty() && errors.0.len() == before)
            .then(|| self.tables.jwks.add_group(keys.clone(), remote));
        let mut spec = JwtSpec::new(algorithms, keys);
        spec.issuers = d.issuers.clone();
        spec.audiences = d.audiences.clone();
        spec.require_exp = d.require_expiration_time.unwrap_or(true);
        spec.require_nbf = d.require_not_before;
        spec.clock_skew = d.clock_skew.map_or(Duration::ZERO, |c| c.0);
        if spec.clock_skew > Duration::from_secs(3600) {
            errors.push(format_args!("{path}.clock_skew"), "must be at most 1h");
        }
        spec.required_claims = d
            .required_claims
            .iter()
            .map(|c| RequiredClaim {
                name: c.name.clone(),
                values: c.values.iter().map(|v| v.0.clone()).collect(),
                match_all: matches!(c.match_kind, ClaimMatch::All),
            })
            .collect();
        if let Some(max) = d.max_token_bytes {
            if max.0 == 0 || max.0 > 1 << 20 {
                errors.push(
                    format_args!("{path}.max_token_bytes"),
                    "must be from 1 to 1MiB",
                );
            }
            spec.max_token_bytes = max.0 as usize;
        }
        let sources = [&d.header_name, &d.query_parameter_name, &d.cookie_name]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if sources > 1 {
            errors.push(
                path,
                "give at most one of header_name, query_parameter_name, cookie_name",
            );
        }
        let source = match (&d.header_name, &d.query_parameter_name, &d.cookie_name) {
            (Some(h), _, _) if h.eq_ignore_ascii_case("authorization") => {
                crate::policy::TokenSource::Bearer(b"authorization"[..].into())
            }
            (Some(h), _, _) => {
                super::routes::check_header(&format!("{path}.header_name"), h, None, errors);
                crate::policy::TokenSource::Header(h.to_ascii_lowercase().into_bytes().into())
            }
            (None, Some(q), _) => crate::policy::TokenSource::Query(q.as_bytes().into()),
            (None, None, Some(c)) => crate::policy::TokenSource::Cookie(c.as_bytes().into()),
            (None, None, None) => crate::policy::TokenSource::Bearer(b"authorization"[..].into()),
        };
        let status = d.failed_validation_httpcode.unwrap_or(401);
        if !(400..=599).contains(&status) {
            errors.push(
                format_args!("{path}.failed_validation_httpcode"),
                format!("must be from 400 to 599, not {status}"),
            );
        }
        (errors.0.len() == before).then(|| crate::policy::ValidateJwt {
            spec,
            remote,
            source,
            status,
            message: d
                .failed_validation_error_message
                .clone()
                .unwrap_or_else(|| "Unauthorized. Access token is missing or invalid.".to_string())
                .into(),
        })
    }

    fn status(&self, path: &str, status: u16, errors: &mut Errors) -> u16 {
        if !(200..=599).contains(&status) {
            errors.push(path, format!("must be from 200 to 599, not {status}"));
        }
        status
    }

    fn reason(&self, path: &str, reason: Option<&str>, errors: &mut Errors) -> Option<Box<str>> {
        let r = reason?;
        if r.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            errors.push(
                format_args!("{path}.reason"),
                "may not contain control characters",
            );
        }
        Some(r.into())
    }

    /// `rate-limit`: one rate table per limit (the policy's own, each nested API's and
    /// operation's), each keyed by the subscription's id.
    fn subscription_rate(
        &mut self,
        path: &str,
        d: &SubscriptionRateDoc,
        errors: &mut Errors,
    ) -> Policy {
        let max_keys = self.max_keys(path, d.max_keys, errors);
        let limit = |c: &mut Self, at: &str, calls: u64, period: Dur, errors: &mut Errors| {
            if calls == 0 || calls > u32::MAX as u64 {
                errors.push(
                    format_args!("{at}.calls"),
                    format!("must be from 1 to {}, not {calls}", u32::MAX),
                );
            }
            let period = duration(
                errors,
                &format!("{at}.renewal_period"),
                Some(period),
                Duration::from_secs(1),
                MAX_PERIOD,
            );
            c.tables.rate.push(RateDef {
                origin: at.to_string(),
                cluster: c.cluster,
                calls,
                period,
                max_keys,
            });
            c.tables.rate.len() - 1
        };
        let mut limits = vec![crate::policy::SubscriptionLimit {
            index: limit(self, path, d.calls, d.renewal_period, errors),
            api: None,
            operation: None,
        }];
        for (a, api) in d.apis.iter().enumerate() {
            let apath = format!("{path}.apis[{a}]");
            let known = self
                .apis
                .iter()
                .find(|(name, _)| *name == api.name)
                .map(|(_, ops)| ops.clone());
            if known.is_none() {
                let names: Vec<&str> = self.apis.iter().map(|(n, _)| *n).collect();
                errors.push(
                    format_args!("{apath}.name"),
                    format!("no API named {:?} (known: {})", api.name, names.join(", ")),
                );
            }
            let name: Box<str> = api.name.as_str().into();
            match (api.calls, api.renewal_period) {
                (Some(calls), Some(period)) => limits.push(crate::policy::SubscriptionLimit {
                    index: limit(self, &apath, calls, period, errors),
                    api: Some(name.clone()),
                    operation: None,
                }),
                (None, None) if !api.operations.is_empty() => {}
                _ => errors.push(
                    &apath,
                    "give calls and renewal_period together, or operations, or both",
                ),
            }
            for (o, op) in api.operations.iter().enumerate() {
                let opath = format!("{apath}.operations[{o}]");
                let operations = known.as_deref().unwrap_or_default();
                if known.is_some() && !operations.contains(&op.id.as_str()) {
                    errors.push(
                        format_args!("{opath}.id"),
                        format!(
                            "API {:?} has no operation {:?} (known: {})",
                            api.name,
                            op.id,
                            operations.join(", ")
                        ),
                    );
                }
                limits.push(crate::policy::SubscriptionLimit {
                    index: limit(self, &opath, op.calls, op.renewal_period, errors),
                    api: Some(name.clone()),
                    operation: Some(op.id.as_str().into()),
                });
            }
        }
        Policy::SubscriptionRateLimit(Box::new(crate::policy::SubscriptionRate {
            limits: limits.into(),
            shadow: d.shadow,
            origin: path.into(),
        }))
    }

    fn max_keys(&self, path: &str, value: Option<usize>, errors: &mut Errors) -> usize {
        match value {
            None => DEFAULT_MAX_KEYS,
            Some(n) if (16..=MAX_KEYS).contains(&n) => n,
            Some(n) => {
                errors.push(
                    format_args!("{path}.max_keys"),
                    format!("must be from 16 to {MAX_KEYS}, not {n}"),
                );
                DEFAULT_MAX_KEYS
            }
        }
    }

    fn statuses(
        &self,
        path: &str,
        doc: Option<&StatusesDoc>,
        errors: &mut Errors,
    ) -> Option<StatusRanges> {
        let list: Vec<&Text> = match doc? {
            StatusesDoc::One(t) => vec![t],
            StatusesDoc::List(l) => l.iter().collect(),
        };
        let mut ranges = Vec::new();
        for (i, t) in list.iter().enumerate() {
            match parse_status_range(&t.0) {
                Ok(r) => ranges.push(r),
                Err(e) => errors.push(format_args!("{path}[{i}]"), e),
            }
        }
        Some(StatusRanges(ranges))
    }
}

/// Everything `compile` produces.
pub struct Compiled {
    pub apis: Vec<ApiConfig>,
    pub version_sets: Vec<VersionSet>,
    /// Subscriptions and products, for the key checks.
    pub keys: KeyTable,
    pub pipelines: Vec<Pipeline>,
    pub tables: PolicyTables,
    pub vars: Vec<String>,
    /// For each route passed in, its pipeline (None when it has no policy).
    pub route_pipelines: Vec<Option<usize>>,
}

/// Compiles the global policies, the routes' policies and the APIs.
pub fn compile(
    doc: &super::model::Document,
    source: &str,
    backends: &[&str],
    routes: &[(usize, &super::model::Route)],
    errors: &mut Errors,
) -> Compiled {
    let mut all: Vec<&Sections> = vec![&doc.policies];
    all.extend(routes.iter().map(|(_, r)| &r.policies));
    for api in &doc.apis {
        all.push(&api.policies);
        all.extend(api.operations.iter().map(|o| &o.policies));
    }
    all.extend(doc.products.iter().map(|p| &p.policies));
    let mut c = Compiler {
        backends,
        dir: std::path::Path::new(source)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        vars: declared_vars(&all),
        tables: PolicyTables::default(),
        pipelines: Vec::new(),
        subscription_readers: Vec::new(),
        apis: doc
            .apis
            .iter()
            .map(|a| {
                let ops = a.operations.iter().map(|o| o.id.as_str()).collect();
                (a.name.as_str(), ops)
            })
            .collect(),
        cluster: doc.cluster.is_some(),
    };
    let global = c.sections("policies", &doc.policies, &[], errors);
    let products = super::products::compile(&doc.products, &doc.subscriptions, &doc.apis, errors);
    let product_sections: Vec<CompiledSections> = doc
        .products
        .iter()
        .enumerate()
        .map(|(p, product)| {
            let path = format!("products[{p}].policies");
            c.sections(&path, &product.policies, &[], errors)
        })
        .collect();

    let mut route_pipelines = Vec::new();
    for (i, r) in routes {
        let own = c.sections(&format!("routes[{i}].policies"), &r.policies, &[], errors);
        let p = c.pipeline(&[&global, &own]);
        c.refuse_subscription_readers(p, &format!("routes[{i}]"), errors);
        route_pipelines.push((!c.pipelines[p].is_empty()).then_some(p));
    }

    let version_sets = version_sets(&doc.version_sets, &doc.apis, errors);
    let mut apis = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (a, api) in doc.apis.iter().enumerate() {
        let apath = format!("apis[{a}]");
        let before = errors.0.len();
        if api.name.is_empty()
            || !api
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errors.push(
                format_args!("{apath}.name"),
                format!(
                    "{:?} is not a name (letters, digits, '-', '_', '.')",
                    api.name
                ),
            );
        } else if names.contains(&api.name.as_str()) {
            errors.push(
                format_args!("{apath}.name"),
                format!("another API is named {:?}", api.name),
            );
        }
        names.push(&api.name);
        if !api.path.starts_with('/') {
            errors.push(
                format_args!("{apath}.path"),
                format!("{:?} must start with '/'", api.path),
            );
        } else if api.path.contains(['{', '}', '?', '#', '*']) || api.path.contains("//") {
            errors.push(
                format_args!("{apath}.path"),
                format!(
                    "{:?} must be a plain path (templates belong in operations)",
                    api.path
                ),
            );
        }
        let base = api.path.trim_end_matches('/').to_string();
        let mut hosts = Vec::new();
        for (h, host) in api.hosts.iter().enumerate() {
            match crate::route::HostPattern::parse(host) {
                Ok(p) => hosts.push(p),
                Err(e) => errors.push(format_args!("{apath}.hosts[{h}]"), e),
            }
        }
        if let Some(b) = &api.backend {
            c.backend(&format!("{apath}.backend"), b, errors);
        }
        let backend_path = match &api.backend_path {
            None => String::new(),
            Some(p) => {
                if !p.starts_with('/') {
                    errors.push(
                        format_args!("{apath}.backend_path"),
                        format!("{p:?} must start with '/'"),
                    );
                }
                super::routes::check_rewrite_path(&format!("{apath}.backend_path"), p, errors);
                p.trim_end_matches('/').to_string()
            }
        };
        let api_own = c.sections(&format!("{apath}.policies"), &api.policies, &[], errors);
        let keys = products.key_settings(a, api, errors);
        let holding = &products.holding[a];
        let (version_set, version, headers, query) = version_of(&apath, api, &version_sets, errors);
        let revisions = revisions_of(&apath, api, &base, errors);
        for variant in variants(api, &revisions, &version_sets, version_set, &version) {
            let rev = variant.revision.map(|r| &api.revisions[r]);
            // What a revision does not set is the API's, and its errors are the API's.
            let ops_path = match (variant.revision, rev.and_then(|r| r.operations.as_ref())) {
                (Some(r), Some(_)) => format!("{apath}.revisions[{r}]"),
                _ => apath.clone(),
            };
            let apath = match variant.revision {
                Some(r) => format!("{apath}.revisions[{r}]"),
                None => apath.clone(),
            };
            let own = match rev.and_then(|r| r.policies.as_ref()) {
                Some(p) => c.sections(&format!("{apath}.policies"), p, &[], errors),
                None => api_own.clone(),
            };
            let written: &[Operation] = match rev {
                Some(r) => r.operations.as_deref().unwrap_or(&api.operations),
                None => &api.operations,
            };
            let generated: &[Operation] = match rev {
                Some(r) if r.openapi.is_some() => &r.generated,
                _ => &api.generated,
            };
            let api_backend = rev
                .and_then(|r| r.backend.as_ref())
                .or(api.backend.as_ref());
            let all_ops: Vec<(String, &Operation)> = written
                .iter()
                .enumerate()
                .map(|(o, op)| (format!("{ops_path}.operations[{o}]"), op))
                .chain(
                    generated
                        .iter()
                        .filter(|g| !written.iter().any(|w| w.id == g.id))
                        .map(|g| (format!("{apath}.openapi (operation {:?})", g.id), g)),
                )
                .collect();
            let api_pipeline = c.pipeline(&[&global, &own]);
            let api_by_product = if all_ops.is_empty() {
                c.product_pipelines(&global, &product_sections, holding, &[&own])
            } else {
                // The API's own route answers APIM's 404, and preflights with no product.
                Box::default()
            };
            if keys.is_none() && all_ops.is_empty() {
                c.refuse_subscription_readers(api_pipeline, &apath, errors);
            }
            let key_check = |by_product| {
                let k: &super::products::KeySettings = keys.as_ref()?;
                Some(KeyCheck {
                    header: k.header.clone(),
                    query: k.query.clone(),
                    required: k.required,
                    by_product,
                })
            };
            let mut operations = Vec::new();
            let mut ids: Vec<&str> = Vec::new();
            for (opath, op) in &all_ops {
                if op.id.is_empty()
                    || !op
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    errors.push(
                        format_args!("{opath}.id"),
                        format!("{:?} is not an id (letters, digits, '-', '_', '.')", op.id),
                    );
                } else if ids.contains(&op.id.as_str()) {
                    errors.push(
                        format_args!("{opath}.id"),
                        format!("another operation of this API has id {:?}", op.id),
                    );
                }
                ids.push(&op.id);
                let method = if op.method == "*" {
                    None
                } else {
                    if !super::routes::is_token(&op.method)
                        || op.method.bytes().any(|b| b.is_ascii_lowercase())
                    {
                        errors.push(
                            format_args!("{opath}.method"),
                            format!("{:?} is not an HTTP method in upper case (or *)", op.method),
                        );
                    }
                    Some(op.method.as_bytes().into())
                };
                if let Some(b) = &op.backend {
                    c.backend(&format!("{opath}.backend"), b, errors);
                }
                let full = if op.url_template.starts_with('/') {
                    format!("{}{}", variant.path, op.url_template)
                } else {
                    errors.push(
                        format_args!("{opath}.url_template"),
                        format!("{:?} must start with '/'", op.url_template),
                    );
                    continue;
                };
                let template = match crate::route::Template::parse(&full) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(format_args!("{opath}.url_template"), e);
                        continue;
                    }
                };
                let params = template.param_names().to_vec();
                let sections =
                    c.sections(&format!("{opath}.policies"), &op.policies, &params, errors);
                let pipeline = c.pipeline(&[&global, &own, &sections]);
                let rest = [&own, &sections];
                let by_product = c.product_pipelines(&global, &product_sections, holding, &rest);
                if keys.is_none() {
                    c.refuse_subscription_readers(pipeline, opath, errors);
                }
                operations.push(OperationConfig {
                    id: op.id.clone(),
                    url_template: op.url_template.clone(),
                    method,
                    template,
                    backend: op.backend.clone(),
                    pipeline,
                    keys: key_check(by_product),
                });
            }
            let has_backend = api_backend.is_some();
            let pipelines = &c.pipelines;
            let routes_somewhere = |p: usize| {
                pipelines[p]
                    .inbound
                    .iter()
                    .chain(pipelines[p].backend.iter())
                    .any(|x| matches!(x, Policy::SetBackend(_) | Policy::Respond(_)))
            };
            if !has_backend {
                if all_ops.is_empty() && !routes_somewhere(api_pipeline) {
                    errors.push(
                        &apath,
                        "an API needs a backend (or a set-backend-service, return-response or \
                     mock-response policy)",
                    );
                }
                for (o, op) in operations.iter().enumerate() {
                    if op.backend.is_none() && !routes_somewhere(op.pipeline) {
                        errors.push(
                        format_args!("{apath}.operations[{o}]"),
                        "this operation has no backend: set one on the API or the operation, or \
                         answer it with return-response or mock-response",
                    );
                    }
                }
            }
            let backend_path = match rev.and_then(|r| r.backend_path.as_ref()) {
                Some(p) => {
                    super::routes::check_rewrite_path(&format!("{apath}.backend_path"), p, errors);
                    p.trim_end_matches('/').to_string()
                }
                None => backend_path.clone(),
            };
            if errors.0.len() == before {
                apis.push(ApiConfig {
                    name: api.name.clone(),
                    path: variant.path.clone(),
                    hosts: hosts.clone(),
                    strip_path: api.strip_path.unwrap_or(true),
                    backend_path,
                    operations,
                    pipeline: api_pipeline,
                    backend: api_backend.cloned(),
                    keys: key_check(api_by_product),
                    access_log: api.access_log.unwrap_or(true),
                    display_name: api.display_name.clone(),
                    description: api.description.clone(),
                    revision: variant.number,
                    current: variant.revision.is_none(),
                    revisions: revisions.clone(),
                    version_set,
                    version: version.clone(),
                    headers: if variant.unversioned {
                        Vec::new()
                    } else {
                        headers.clone()
                    },
                    query: if variant.unversioned {
                        Vec::new()
                    } else {
                        query.clone()
                    },
                    openapi: match rev {
                        Some(r) if r.openapi.is_some() => r.document.clone(),
                        _ => api.document.clone(),
                    },
                });
            }
        }
    }
    Compiled {
        apis,
        version_sets,
        keys: products.table,
        pipelines: c.pipelines,
        tables: c.tables,
        vars: c.vars,
        route_pipelines,
    }
}

// ---------------------------------------------------------------------------------------------
// Versions and revisions.

/// One routed form of an API: its current revision, another online revision
/// (`path;rev=N`), or the default version of a version set reached without a version.
struct Variant {
    /// The index in `revisions`, for a revision that is not the current one.
    revision: Option<usize>,
    number: u32,
    path: String,
    /// The default version's entry for requests that name no version.
    unversioned: bool,
}

/// Compiles `version_sets`, with each set's versions from the APIs that name it.
fn version_sets(docs: &[VersionSetDoc], apis: &[Api], errors: &mut Errors) -> Vec<VersionSet> {
    let mut sets: Vec<VersionSet> = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let path = format!("version_sets[{i}]");
        if !super::products::is_name(&d.name) {
            errors.push(
                format_args!("{path}.name"),
                format!(
                    "{:?} is not a name (letters, digits, '-', '_', '.')",
                    d.name
                ),
            );
        } else if sets.iter().any(|s| s.name == d.name) {
            errors.push(
                format_args!("{path}.name"),
                format!("another version set is named {:?}", d.name),
            );
        }
        if d.header.is_some() && d.scheme != VersionScheme::Header {
            errors.push(
                format_args!("{path}.header"),
                format!(
                    "only for scheme header (this set's scheme is {})",
                    d.scheme.as_str()
                ),
            );
        }
        if d.query.is_some() && d.scheme != VersionScheme::Query {
            errors.push(
                format_args!("{path}.query"),
                format!(
                    "only for scheme query (this set's scheme is {})",
                    d.scheme.as_str()
                ),
            );
        }
        let header = d.header.as_deref().unwrap_or("Api-Version");
        if !super::routes::is_token(header) {
            errors.push(
                format_args!("{path}.header"),
                format!("{header:?} is not a header name"),
            );
        }
        let query = d.query.as_deref().unwrap_or("api-version");
        if query.is_empty()
            || query
                .bytes()
                .any(|b| b"&=#? ".contains(&b) || b.is_ascii_control())
        {
            errors.push(
                format_args!("{path}.query"),
                format!("{query:?} is not a parameter name"),
            );
        }
        let mut versions: Vec<(String, String)> = Vec::new();
        let mut place: Option<(String, Vec<crate::route::HostPattern>)> = None;
        for (a, api) in apis.iter().enumerate() {
            if api.version_set.as_deref() != Some(d.name.as_str()) {
                continue;
            }
            let Some(v) = &api.version else { continue };
            let at = api.path.trim_end_matches('/').to_string();
            match &place {
                None => {
                    let hosts = api
                        .hosts
                        .iter()
                        .filter_map(|h| crate::route::HostPattern::parse(h).ok())
                        .collect();
                    place = Some((at, hosts));
                }
                Some((p, _)) if *p != at => errors.push(
                    format_args!("apis[{a}].path"),
                    format!(
                        "{:?}, but the other versions of version set {:?} are at {p:?}: the \
                         versions of a set share their path",
                        api.path, d.name
                    ),
                ),
                Some(_) => {}
            }
            if let Some((_, other)) = versions.iter().find(|(w, _)| w == v) {
                errors.push(
                    format_args!("apis[{a}].version"),
                    format!(
                        "API {other:?} is already version {v:?} of version set {:?}",
                        d.name
                    ),
                );
                continue;
            }
            versions.push((v.clone(), api.name.clone()));
        }
        if versions.is_empty() {
            errors.push(
                &path,
                format!(
                    "no API is a version of {:?} (give APIs `version_set: {}` and a `version`)",
                    d.name, d.name
                ),
            );
        }
        if let Some(default) = &d.default {
            if !versions.iter().any(|(v, _)| v == default) {
                let known: Vec<&str> = versions.iter().map(|(v, _)| v.as_str()).collect();
                errors.push(
                    format_args!("{path}.default"),
                    format!(
                        "no API is version {default:?} of this set (versions: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        sets.push(VersionSet {
            name: d.name.clone(),
            display_name: d.display_name.clone(),
            description: d.description.clone(),
            scheme: d.scheme,
            header: header.to_ascii_lowercase(),
            query: query.to_string(),
            default: d.default.clone(),
            versions,
            path: place.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
            hosts: place.map(|p| p.1).unwrap_or_default(),
        });
    }
    sets
}

type VersionOf = (
    Option<usize>,
    Option<String>,
    Vec<crate::route::HeaderMatch>,
    Vec<crate::route::QueryMatch>,
);

/// An API's version set, its version there, and the conditions that select it (a header or
/// query parameter; the path scheme's segment is in the API's routed path, see [`variants`]).
fn version_of(apath: &str, api: &Api, sets: &[VersionSet], errors: &mut Errors) -> VersionOf {
    let none = (None, None, Vec::new(), Vec::new());
    let Some(set_name) = &api.version_set else {
        if api.version.is_some() {
            errors.push(
                format_args!("{apath}.version"),
                "a version needs a version_set (the set says how requests name versions)",
            );
        }
        return none;
    };
    let Some(index) = sets.iter().position(|s| &s.name == set_name) else {
        let known: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        errors.push(
            format_args!("{apath}.version_set"),
            format!(
                "no version set named {set_name:?} (known: {})",
                if known.is_empty() {
                    "none; declare it under version_sets".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
        return none;
    };
    let Some(version) = &api.version else {
        errors.push(
            format_args!("{apath}.version"),
            format!("an API of version set {set_name:?} needs its version (such as v2)"),
        );
        return none;
    };
    if version.is_empty()
        || !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        errors.push(
            format_args!("{apath}.version"),
            format!("{version:?} is not a version (letters, digits, '-', '_', '.', '~')"),
        );
        return none;
    }
    let set = &sets[index];
    let exact = |v: &str| crate::route::ValueMatch::Exact(v.as_bytes().into());
    match set.scheme {
        VersionScheme::Path => (Some(index), Some(version.clone()), Vec::new(), Vec::new()),
        VersionScheme::Header => (
            Some(index),
            Some(version.clone()),
            vec![crate::route::HeaderMatch {
                name: set.header.as_bytes().into(),
                value: exact(version),
            }],
            Vec::new(),
        ),
        VersionScheme::Query => (
            Some(index),
            Some(version.clone()),
            Vec::new(),
            vec![crate::route::QueryMatch {
                name: set.query.as_bytes().into(),
                value: exact(version),
            }],
        ),
    }
}

/// Checks an API's revisions; lists them, the current one first and the rest by number.
fn revisions_of(apath: &str, api: &Api, base: &str, errors: &mut Errors) -> Vec<RevisionInfo> {
    let current = api.revision.unwrap_or(1);
    if current == 0 {
        errors.push(
            format_args!("{apath}.revision"),
            "revisions are numbered from 1",
        );
    }
    if !api.revisions.is_empty() && base.is_empty() {
        errors.push(
            format_args!("{apath}.revisions"),
            "an API at / cannot have revisions (they are reached at PATH;rev=N); give it a path",
        );
    }
    let mut list = vec![RevisionInfo {
        revision: current,
        current: true,
        online: true,
        change_log: api.change_log.clone(),
    }];
    for (r, rev) in api.revisions.iter().enumerate() {
        let rpath = format!("{apath}.revisions[{r}]");
        if rev.revision == 0 {
            errors.push(
                format_args!("{rpath}.revision"),
                "revisions are numbered from 1",
            );
        } else if rev.revision == current {
            errors.push(
                format_args!("{rpath}.revision"),
                format!("{current} is the current revision (the API's `revision`)"),
            );
        } else if list.iter().any(|i| i.revision == rev.revision) {
            errors.push(
                format_args!("{rpath}.revision"),
                format!("revision {} is listed twice", rev.revision),
            );
        }
        list.push(RevisionInfo {
            revision: rev.revision,
            current: false,
            online: rev.online.unwrap_or(true),
            change_log: rev.change_log.clone(),
        });
    }
    list[1..].sort_by_key(|i| i.revision);
    list
}

/// The routed forms of an API: the current revision, each online revision at `;rev=N`, and,
/// for the default version of a version set, the current revision without a version.
fn variants(
    api: &Api,
    revisions: &[RevisionInfo],
    sets: &[VersionSet],
    set: Option<usize>,
    version: &Option<String>,
) -> Vec<Variant> {
    let base = api.path.trim_end_matches('/');
    let versioned = match (set, version) {
        (Some(s), Some(v)) if sets[s].scheme == VersionScheme::Path => format!("{base}/{v}"),
        _ => base.to_string(),
    };
    let current = revisions[0].revision;
    let mut out = vec![Variant {
        revision: None,
        number: current,
        path: versioned.clone(),
        unversioned: false,
    }];
    for (r, rev) in api.revisions.iter().enumerate() {
        if rev.online.unwrap_or(true) && rev.revision != current && rev.revision != 0 {
            out.push(Variant {
                revision: Some(r),
                number: rev.revision,
                path: format!("{versioned};rev={}", rev.revision),
                unversioned: false,
            });
        }
    }
    if let (Some(s), Some(v)) = (set, version) {
        if sets[s].default.as_deref() == Some(v.as_str()) {
            out.push(Variant {
                revision: None,
                number: current,
                path: base.to_string(),
                unversioned: true,
            });
        }
    }
    out
}

pub fn cache_settings(doc: &CacheDoc, errors: &mut Errors) -> CacheSettings {
    let d = CacheSettings::default();
    let mut size = |key: &str, v: Option<Size>, default: usize, max: u64| match v {
        None => default,
        Some(s) if s.0 == 0 || s.0 > max => {
            errors.push(
                format_args!("cache.{key}"),
                format!("must be from 1 to {max} bytes, not {}", s.0),
            );
            default
        }
        Some(s) => s.0 as usize,
    };
    let max_bytes = size("max_bytes", doc.max_bytes, d.max_bytes, 64 << 30);
    let max_entry_bytes = size(
        "max_entry_bytes",
        doc.max_entry_bytes,
        d.max_entry_bytes,
        1 << 30,
    );
    let max_value_bytes = size(
        "max_value_bytes",
        doc.max_value_bytes,
        d.max_value_bytes,
        16 << 30,
    );
    if max_entry_bytes > max_bytes {
        errors.push("cache.max_entry_bytes", "must not exceed cache.max_bytes");
    }
    CacheSettings {
        max_bytes,
        max_entry_bytes: max_entry_bytes.min(max_bytes),
        max_value_bytes,
    }
}

pub fn state_settings(doc: &StateDoc, source: &str, errors: &mut Errors) -> StateSettings {
    let persist_interval = duration(
        errors,
        "state.persist_interval",
        doc.persist_interval,
        Duration::from_secs(5),
        Duration::from_secs(3600),
    );
    let path = doc.path.as_ref().map(|p| {
        let p = std::path::PathBuf::from(p);
        if p.is_relative() {
            // Relative to the configuration file, as a person reading it would expect.
            match std::path::Path::new(source).parent() {
                Some(dir) => dir.join(p),
                None => p,
            }
        } else {
            p
        }
    });
    if let Some(p) = &path {
        if p.file_name().is_none() {
            errors.push("state.path", format!("{} is not a file path", p.display()));
        }
    }
    StateSettings {
        path,
        persist_interval,
    }
}

/// `500-599` or `429`.
pub fn parse_status_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a status or a range of statuses (like 500-599)");
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text.trim(), text.trim()),
    };
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn retry_spec(path: &str, d: &RetryDoc, errors: &mut Errors) -> crate::upstream::RetrySpec {
    if d.count == 0 || d.count > 50 {
        errors.push(
            format_args!("{path}.count"),
            format!("must be from 1 to 50, not {}", d.count),
        );
    }
    let max = Duration::from_secs(300);
    let interval = duration(
        errors,
        &format!("{path}.interval"),
        Some(d.interval),
        Duration::from_secs(1),
        max,
    );
    let delta = d.delta.map(|x| {
        duration(
            errors,
            &format!("{path}.delta"),
            Some(x),
            Duration::from_secs(1),
            max,
        )
    });
    let max_interval = d.max_interval.map(|x| {
        duration(
            errors,
            &format!("{path}.max_interval"),
            Some(x),
            Duration::from_secs(1),
            max,
        )
    });
    if max_interval.is_some() && delta.is_none() {
        errors.push(
            format_args!("{path}.max_interval"),
            "needs delta (the exponential back-off grows by delta)",
        );
    }
    let mut statuses = Vec::new();
    match &d.condition.statuses {
        None => statuses.extend([(502, 504)]),
        Some(s) => {
            let list: Vec<&Text> = match s {
                StatusesDoc::One(t) => vec![t],
                StatusesDoc::List(l) => l.iter().collect(),
            };
            for (i, t) in list.iter().enumerate() {
                match parse_status_range(&t.0) {
                    Ok(r) => statuses.push(r),
                    Err(e) => errors.push(format_args!("{path}.condition.statuses[{i}]"), e),
                }
            }
        }
    }
    let max_buffered_body = d.max_buffered_body.map_or(64 * 1024, |s| s.0);
    if max_buffered_body > 16 << 20 {
        errors.push(
            format_args!("{path}.max_buffered_body"),
            "must be at most 16MiB",
        );
    }
    let budget_percent = d.budget.percent.unwrap_or(20);
    if budget_percent > 100 {
        errors.push(
            format_args!("{path}.budget.percent"),
            "must be from 0 to 100",
        );
    }
    crate::upstream::RetrySpec {
        count: d.count,
        interval,
        delta,
        max_interval,
        first_fast_retry: d.first_fast_retry,
        on_connect_failure: d.condition.connect_failure.unwrap_or(true),
        statuses,
        honor_retry_after: d.condition.honor_retry_after.unwrap_or(true),
        max_buffered_body,
        budget_percent,
        budget_min_per_sec: d.budget.min_per_second.unwrap_or(3),
    }
}

fn allowed(kind: Kind, p: &PolicyDoc) -> bool {
    use PolicyDoc as P;
    match kind {
        Kind::Inbound => matches!(
            p,
            P::SetHeader(_)
                | P::SetQuery(_)
                | P::RewriteUri(_)
                | P::ReturnResponse(_)
                | P::MockResponse(_)
                | P::SetBackend(_)
                | P::RateLimit(_)
                | P::SubscriptionRate(_)
                | P::Quota(_)
                | P::Concurrency(_)
                | P::CacheLookup(_)
                | P::LookupValue(_)
                | P::StoreValue(_)
                | P::RemoveValue(_)
                | P::IpFilter(_)
                | P::CheckHeader(_)
                | P::Cors(_)
                | P::RequestSizeLimit(_)
                | P::ValidateJwt(_)
                | P::ValidateClientCert(_)
        ),
        Kind::Backend => matches!(p, P::Retry(_) | P::SetBackend(_)),
        Kind::Outbound => matches!(
            p,
            P::SetHeader(_)
                | P::SetStatus(_)
                | P::CacheStore(_)
                | P::LookupValue(_)
                | P::StoreValue(_)
                | P::RemoveValue(_)
        ),
        Kind::OnError => matches!(
            p,
            P::SetHeader(_) | P::SetStatus(_) | P::ReturnResponse(_) | P::MockResponse(_)
        ),
    }
}

fn belongs(p: &PolicyDoc) -> &'static str {
    use PolicyDoc as P;
    match p {
        P::Retry(_) => "backend",
        P::CacheStore(_) => "outbound",
        P::SetStatus(_) => "outbound or on_error",
        P::SetHeader(_) => "inbound, outbound or on_error",
        P::ReturnResponse(_) | P::MockResponse(_) => "inbound or on_error",
        P::SetBackend(_) => "inbound or backend",
        P::LookupValue(_) | P::StoreValue(_) | P::RemoveValue(_) => "inbound or outbound",
        _ => "inbound",
    }
}

/// `2024-01-01T00:00:00Z` or with an offset (`+02:00`), to milliseconds since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not an RFC 3339 date-time (like 2024-01-01T00:00:00Z or \
             2024-01-01T00:00:00+02:00)"
        )
    };
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        text.get(r)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let oh: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let om: i64 = rest[4..6].parse().map_err(|_| bad())?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    u64::try_from(secs)
        .map(|s| s * 1000)
        .map_err(|_| format!("{text:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("2024-01-01T00:00:00Z"),
            Ok(1_704_067_200_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-01-01T02:00:00+02:00"),
            Ok(1_704_067_200_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T12:30:15.250Z"),
            Ok(1_709_209_815_000)
        );
        assert!(parse_rfc3339_ms("2024-01-01").is_err());
        assert!(parse_rfc3339_ms("2024-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("500-599"), Ok((500, 599)));
        assert_eq!(parse_status_range("429"), Ok((429, 429)));
        assert!(parse_status_range("600").is_err());
        assert!(parse_status_range("599-500").is_err());
    }
}
