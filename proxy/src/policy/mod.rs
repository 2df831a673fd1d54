//! The policy pipeline: the `inbound`, `backend`, `outbound` and `on_error` sections of the
//! global scope, APIs, operations and routes, compiled once into plain data and run per
//! request without allocation.
//!
//! Inheritance is resolved when the configuration loads: each scope's section either holds an
//! explicit `base` (the parent's section is spliced in at that point) or replaces its parent's
//! section; a section that is not written inherits it whole, as APIM's default `<base />` does.
//! What a route carries is then one flat [`Pipeline`]. Policies that keep state (limits,
//! quotas, caches) refer to node-wide tables by index, so a policy inherited by a hundred
//! operations is still one policy with one set of counters.

pub mod auth;
pub mod cache;
pub mod edits;
pub mod limit;
pub mod run;
pub mod template;

use std::time::Duration;

use bytes::Bytes;

pub use edits::{Edits, ExistsAction};
pub use template::Template;

/// The four sections, flattened for one route or operation.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    pub inbound: Box<[Policy]>,
    pub backend: Box<[Policy]>,
    pub outbound: Box<[Policy]>,
    pub on_error: Box<[Policy]>,
}

impl Pipeline {
    pub fn is_empty(&self) -> bool {
        self.inbound.is_empty()
            && self.backend.is_empty()
            && self.outbound.is_empty()
            && self.on_error.is_empty()
    }
}

/// One compiled policy. An enum, not a trait object: the pipeline is a slice walked with a
/// `match`, and a policy's settings sit inline or behind one box made at load time.
#[derive(Clone, Debug)]
pub enum Policy {
    /// `set-header`: on the request in `inbound`, on the response elsewhere.
    SetHeader(SetHeader),
    /// `set-query-parameter`.
    SetQuery(SetHeader),
    /// `rewrite-uri`.
    RewriteUri(Box<RewriteUri>),
    /// `return-response` and `mock-response`: answer now, without the backend.
    Respond(Box<Respond>),
    /// `set-status`.
    SetStatus {
        code: u16,
        reason: Box<str>,
    },
    /// `set-backend-service`: the backend (by index) requests go to.
    SetBackend(usize),
    /// `rate-limit-by-key`.
    RateLimit(Box<Limit>),
    /// `rate-limit`: calls per subscription, with nested per-API and per-operation limits.
    SubscriptionRateLimit(Box<SubscriptionRate>),
    /// `quota-by-key`.
    Quota(Box<Limit>),
    /// `limit-concurrency`.
    Concurrency(Box<Limit>),
    /// `cache-lookup`.
    CacheLookup(Box<CacheLookup>),
    /// `cache-store`.
    CacheStore(Box<CacheStore>),
    /// `cache-lookup-value`: sets a variable from the value cache.
    LookupValue(Box<LookupValue>),
    /// `cache-store-value`.
    StoreValue(Box<StoreValue>),
    /// `cache-remove-value`.
    RemoveValue(Template),
    /// `retry` (backend section).
    Retry(Box<Retry>),
    /// `ip-filter`.
    IpFilter(Box<auth::access::IpFilter>),
    /// `check-header`.
    CheckHeader(Box<auth::access::CheckHeader>),
    /// `cors`.
    Cors(Box<auth::access::Cors>),
    /// `request-size-limit`: the largest request body, in bytes.
    RequestSizeLimit(u64),
    ValidateClientCert(Box<ValidateClientCert>),
    /// `validate-jwt`.
    ValidateJwt(Box<ValidateJwt>),
}

/// Where `validate-jwt` finds the token.
#[derive(Clone, Debug)]
pub enum TokenSource {
    /// `Authorization: Bearer TOKEN` (or another header holding `Bearer TOKEN`).
    Bearer(Box<[u8]>),
    /// A header holding the token alone.
    Header(Box<[u8]>),
    Query(Box<[u8]>),
    Cookie(Box<[u8]>),
}

/// A `validate-jwt` policy.
#[derive(Clone, Debug)]
pub struct ValidateJwt {
    pub spec: auth::jwt::JwtSpec,
    /// The key group (inline and fetched keys) tokens are checked with, when the policy has
    /// keys from a URL; otherwise `spec.keys`.
    pub remote: Option<usize>,
    pub source: TokenSource,
    pub status: u16,
    pub message: Box<str>,
}

/// `validate-client-certificate`: the TLS client certificate the connection presented (already
/// verified against the listener's CA in the handshake) must be present, within its validity
/// dates, and, when identities are listed, match one of them (all the fields an identity gives).
#[derive(Clone, Debug)]
pub struct ValidateClientCert {
    pub identities: Vec<ClientIdentity>,
    pub not_before: bool,
    pub not_after: bool,
    pub status: u16,
    pub message: Box<str>,
}

/// One accepted identity. Digests and serials are upper-case hex without colons.
#[derive(Clone, Debug, Default)]
pub struct ClientIdentity {
    pub thumbprint: Option<String>,
    pub fingerprint: Option<String>,
    pub serial_number: Option<String>,
    pub common_name: Option<String>,
    pub subject: Option<String>,
    pub issuer_subject: Option<String>,
    /// Lower case.
    pub dns_name: Option<String>,
}

impl ClientIdentity {
    pub fn is_empty(&self) -> bool {
        self.thumbprint.is_none()
            && self.fingerprint.is_none()
            && self.serial_number.is_none()
            && self.common_name.is_none()
            && self.subject.is_none()
            && self.issuer_subject.is_none()
            && self.dns_name.is_none()
    }

    /// Whether `cert` matches every field this identity gives.
    pub fn matches(&self, cert: &crate::tls::ClientCert) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_ref().is_none_or(|w| w == have);
        eq(&self.thumbprint, &cert.thumbprint)
            && self
                .fingerprint
                .as_ref()
                .is_none_or(|f| f.eq_ignore_ascii_case(&cert.fingerprint))
            && eq(&self.serial_number, &cert.serial)
            && eq(&self.common_name, &cert.common_name)
            && eq(&self.subject, &cert.subject)
            && eq(&self.issuer_subject, &cert.issuer)
            && self
                .dns_name
                .as_ref()
                .is_none_or(|d| cert.sans.iter().any(|s| s.eq_ignore_ascii_case(d)))
    }
}

impl ValidateClientCert {
    /// Whether `cert` (None: the client sent none) passes, at `now` (unix seconds).
    pub fn passes(&self, cert: Option<&crate::tls::ClientCert>, now: i64) -> bool {
        let Some(cert) = cert else {
            return false;
        };
        if self.not_before && now < cert.not_before {
            return false;
        }
        if self.not_after && now > cert.not_after {
            return false;
        }
        self.identities.is_empty() || self.identities.iter().any(|i| i.matches(cert))
    }
}

/// A `retry` policy: its settings, and its retry budget's index in each worker's table.
#[derive(Clone, Debug)]
pub struct Retry {
    pub index: usize,
    pub spec: crate::upstream::RetrySpec,
}

impl Pipeline {
    /// The backend section's `retry`, if it has one.
    pub fn retry(&self) -> Option<&Retry> {
        self.backend.iter().find_map(|p| match p {
            Policy::Retry(r) => Some(&**r),
            _ => None,
        })
    }
}

#[derive(Clone, Debug)]
pub struct SetHeader {
    /// As written (header names are sent in the case given).
    pub name: Box<[u8]>,
    /// Lower case, for looking the header up.
    pub lower: Box<[u8]>,
    pub value: Template,
    pub action: ExistsAction,
}

#[derive(Clone, Debug)]
pub struct RewriteUri {
    /// The new path, and optionally `?query`; `{name}` is a path parameter of the operation.
    pub template: Template,
    /// Keep the request's query parameters that the template does not set (APIM's
    /// `copy-unmatched-params`, default true).
    pub copy_unmatched_params: bool,
}

#[derive(Clone, Debug)]
pub struct Respond {
    pub status: u16,
    pub reason: Option<Box<str>>,
    pub headers: Vec<(Box<[u8]>, Template)>,
    pub body: Bytes,
}

/// Inclusive status ranges (`"200-299"`, `429`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl StatusRanges {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl Policy {
    /// Whether the policy reads who the request's subscription is (`{subscription}` or
    /// `{product}` in a template, `vary_by_subscription`, `rate-limit`): it can only be used
    /// where subscription keys are checked.
    pub fn reads_subscription(&self) -> bool {
        match self {
            Policy::SetHeader(s) | Policy::SetQuery(s) => s.value.reads_subscription(),
            Policy::RewriteUri(r) => r.template.reads_subscription(),
            Policy::Respond(r) => r.headers.iter().any(|(_, t)| t.reads_subscription()),
            Policy::RateLimit(l) | Policy::Quota(l) | Policy::Concurrency(l) => {
                l.key.reads_subscription()
            }
            Policy::SubscriptionRateLimit(_) => true,
            Policy::CacheLookup(c) => c.vary_by_subscription,
            Policy::LookupValue(l) => l.key.reads_subscription(),
            Policy::StoreValue(s) => s.key.reads_subscription() || s.value.reads_subscription(),
            Policy::RemoveValue(k) => k.reads_subscription(),
            Policy::SetStatus { .. }
            | Policy::SetBackend(_)
            | Policy::CacheStore(_)
            | Policy::Retry(_)
            | Policy::IpFilter(_)
            | Policy::CheckHeader(_)
            | Policy::Cors(_)
            | Policy::RequestSizeLimit(_)
            | Policy::ValidateClientCert(_)
            | Policy::ValidateJwt(_) => false,
        }
    }
}

/// A limit policy's settings; the counters live in the snapshot's table at `index`.
#[derive(Clone, Debug)]
pub struct Limit {
    pub index: usize,
    pub key: Template,
    /// Count and report, never refuse.
    pub shadow: bool,
    /// Only answers with these statuses count (rate limits and quotas).
    pub increment_condition: Option<StatusRanges>,
    /// How many calls one request counts for.
    pub increment_count: u32,
    /// For logs: where the policy was declared.
    pub origin: Box<str>,
}

/// A `rate-limit` policy: each limit counts the calls of one subscription (keyed by its id)
/// in its own table. A request without a subscription is not limited by it.
#[derive(Clone, Debug)]
pub struct SubscriptionRate {
    pub limits: Box<[SubscriptionLimit]>,
    /// Count and report, never refuse.
    pub shadow: bool,
    /// For logs: where the policy was declared.
    pub origin: Box<str>,
}

/// One limit of a `rate-limit` policy, and the calls it counts: every call (no API), the
/// calls to one API, or to one operation of it.
#[derive(Clone, Debug)]
pub struct SubscriptionLimit {
    /// The rate table's index.
    pub index: usize,
    pub api: Option<Box<str>>,
    pub operation: Option<Box<str>>,
}

impl SubscriptionLimit {
    /// Whether a call to `api`'s `operation` counts against this limit.
    pub fn applies(&self, api: &str, operation: &str) -> bool {
        self.api.as_deref().is_none_or(|a| a == api)
            && self.operation.as_deref().is_none_or(|o| o == operation)
    }
}

#[derive(Clone, Debug)]
pub struct CacheLookup {
    /// Query parameters whose values are part of the key; `*` = the whole query.
    pub vary_by_query: Vec<Box<[u8]>>,
    /// Header names (lower case) whose values are part of the key.
    pub vary_by_header: Vec<Box<[u8]>>,
    /// Cache requests that carry `Authorization`.
    pub allow_private: bool,
    /// The subscription's id is part of the key: subscriptions never share entries.
    pub vary_by_subscription: bool,
}

#[derive(Clone, Debug)]
pub struct CacheStore {
    pub duration: Duration,
    pub statuses: StatusRanges,
}

#[derive(Clone, Debug)]
pub struct LookupValue {
    pub key: Template,
    pub var: u16,
    pub default: Option<Bytes>,
}

#[derive(Clone, Debug)]
pub struct StoreValue {
    pub key: Template,
    pub value: Template,
    pub duration: Duration,
}
