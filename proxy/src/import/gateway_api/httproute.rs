//! `HTTPRoute` → Ringway `routes`: which listeners the route attaches to (and so its hosts),
//! then one Ringway route per rule, named `{namespace}-{route}-{index}`.
//!
//! Ringway routes are not bound to listeners: a route serves every listener. Where Kubernetes
//! would attach a route to only some of them, the route still serves all, with a note; what the
//! attachment decides that Ringway can express, the hosts, is kept exactly (the intersection of
//! the route's hostnames with each listener's).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::backends::{self, Backends, Choice};
use super::fields::{
    child, duration_ms, integer, is_hostname, join, list, mapping, required, ringway_duration,
    string,
};
use super::gateway::Gateway;
use super::{filters, matches, Diag, Options, GROUP};

/// What every route's conversion needs to know.
pub(super) struct Context<'a> {
    pub gateways: &'a [Gateway],
    /// Every Ringway listener made from the Gateways.
    pub listeners: Vec<String>,
    pub options: &'a Options,
}

/// Converts one HTTPRoute into Ringway routes (none when it attaches to no listener).
pub(super) fn convert(
    namespace: &str,
    name: &str,
    context: &Context,
    backends: &mut Backends,
    d: &mut Diag,
) -> Vec<Value> {
    let spec = d.object.value.get("spec").filter(|v| !v.is_null());
    let Some(spec) = spec else {
        d.error("spec", "is required");
        return Vec::new();
    };
    let known = ["parentRefs", "hostnames", "rules", "useDefaultGateways"];
    let Some(spec) = mapping(d, "spec", spec, &known) else {
        return Vec::new();
    };
    if spec.get("useDefaultGateways").is_some_and(|v| !v.is_null()) {
        d.note(
            "spec.useDefaultGateways",
            "not converted: the route is attached as its parentRefs say",
        );
    }
    let mut hostnames = Vec::new();
    for (i, h) in list(d, "spec", spec, "hostnames").iter().enumerate() {
        let field = format!("spec.hostnames[{i}]");
        match h.as_str().map(str::to_ascii_lowercase) {
            Some(h) if is_hostname(&h) => {
                if !hostnames.contains(&h) {
                    hostnames.push(h);
                }
            }
            Some(h) => d.error(
                &field,
                format!("{h:?} is not a hostname (DNS labels, optionally after \"*.\"; no IP address or port)"),
            ),
            None => d.error(&field, "expected a string"),
        }
    }
    let attachment = attach(namespace, spec, &hostnames, context, d);

    let rules = list(d, "spec", spec, "rules");
    if rules.is_empty() {
        d.note("spec.rules", "none: the route makes no Ringway route");
    }
    let mut routes = Vec::new();
    for (i, rule_value) in rules.iter().enumerate() {
        let rule = Rule {
            namespace,
            field: format!("spec.rules[{i}]"),
            name: format!("{namespace}-{name}-{i}"),
            attachment: &attachment,
        };
        if let Some(route) = rule.convert(rule_value, context.options, backends, d) {
            routes.push(route);
        }
    }
    if attachment
        .listeners
        .as_ref()
        .is_some_and(BTreeSet::is_empty)
    {
        // Converted all the same, so that its errors are reported.
        return Vec::new();
    }
    routes
}

/// The hosts a route answers for: None = any host.
type Hosts = Option<Vec<String>>;

/// Where a route is attached.
struct Attachment {
    hosts: Hosts,
    /// The Ringway listeners it serves in Kubernetes; None = every one (or unknown).
    listeners: Option<BTreeSet<String>>,
    /// Their ports, for redirects that keep the listener's port.
    ports: BTreeSet<u16>,
}

fn attach(
    namespace: &str,
    spec: &Map<String, Value>,
    hostnames: &[String],
    context: &Context,
    d: &mut Diag,
) -> Attachment {
    let own_hosts = || (!hostnames.is_empty()).then(|| hostnames.to_vec());
    let parents = list(d, "spec", spec, "parentRefs");
    let mut out = Attachment {
        hosts: Some(Vec::new()),
        listeners: Some(BTreeSet::new()),
        ports: BTreeSet::new(),
    };
    if parents.is_empty() {
        d.note(
            "spec.parentRefs",
            "none: in Kubernetes the route serves no Gateway; converted as attached to every \
             listener",
        );
        out.hosts = own_hosts();
        out.listeners = None;
    }
    for (j, parent) in parents.iter().enumerate() {
        let field = format!("spec.parentRefs[{j}]");
        let known = ["group", "kind", "namespace", "name", "sectionName", "port"];
        let Some(p) = mapping(d, &field, parent, &known) else {
            continue;
        };
        let group = string(d, &field, p, "group").unwrap_or(GROUP);
        let kind = string(d, &field, p, "kind").unwrap_or("Gateway");
        let name = required(d, &field, p, "name");
        let gw_namespace = string(d, &field, p, "namespace").unwrap_or(namespace);
        let section = string(d, &field, p, "sectionName");
        let port = integer(d, &field, p, "port", 1..=65535).map(|p| p as u16);
        let Some(name) = name else {
            continue;
        };
        if (group, kind) != (GROUP, "Gateway") {
            d.note(
                &field,
                format!(
                    "not converted: a {kind} parent (service mesh) has no Ringway equivalent; \
                     only Gateway parents attach the route"
                ),
            );
            continue;
        }
        let gateway = context
            .gateways
            .iter()
            .find(|g| g.namespace == gw_namespace && g.name == name);
        let Some(gateway) = gateway else {
            d.note(
                &field,
                format!(
                    "Gateway {gw_namespace}/{name} is not among the manifests: its listeners' \
                     hostnames are unknown, so the route is attached as to a listener without \
                     hostname, on every listener"
                ),
            );
            union(&mut out.hosts, own_hosts());
            out.listeners = None;
            continue;
        };
        let candidates: Vec<_> = gateway
            .listeners
            .iter()
            .filter(|l| section.is_none_or(|s| l.name == s) && port.is_none_or(|p| l.port == p))
            .collect();
        let which = match (section, port) {
            (Some(s), Some(p)) => format!("no listener named {s:?} on port {p}"),
            (Some(s), None) => format!("no listener named {s:?}"),
            (None, Some(p)) => format!("no listener on port {p}"),
            (None, None) => "no listener".to_string(),
        };
        if candidates.is_empty() {
            d.note(
                &field,
                format!(
                    "Gateway {gw_namespace}/{name} has {which}: Kubernetes does not attach the \
                     route through this parent, nor does the conversion"
                ),
            );
            continue;
        }
        let mut attached = false;
        for listener in candidates {
            let Some(ringway) = &listener.ringway else {
                continue;
            };
            let hosts = intersect(hostnames, listener.hostname.as_deref());
            if hosts.as_ref().is_some_and(Vec::is_empty) {
                d.note(
                    &field,
                    format!(
                        "no hostname of the route matches listener {:?} (hostname {:?}): \
                         Kubernetes does not attach the route there, nor does the conversion",
                        listener.name,
                        listener.hostname.as_deref().unwrap_or_default()
                    ),
                );
                continue;
            }
            if listener.same_namespace_only && gateway.namespace != namespace {
                d.note(
                    &field,
                    format!(
                        "listener {:?} admits only routes of namespace {:?} \
                         (allowedRoutes.namespaces.from: Same, the default), so Kubernetes does \
                         not attach this one; not enforced: converted as attached",
                        listener.name, gateway.namespace
                    ),
                );
            }
            attached = true;
            union(&mut out.hosts, hosts);
            if let Some(set) = &mut out.listeners {
                set.insert(ringway.clone());
            }
            out.ports.insert(listener.port);
        }
        if !attached {
            d.note(
                &field,
                format!("the route attaches to no HTTP listener of Gateway {gw_namespace}/{name}"),
            );
        }
    }
    if let (Some(hosts), Some(_)) = (&out.hosts, &out.listeners) {
        for (i, h) in hostnames.iter().enumerate() {
            if !hosts.is_empty() && !hosts.iter().any(|x| meet(h, x).is_some()) {
                d.note(
                    &format!("spec.hostnames[{i}]"),
                    format!(
                        "{h:?} matches the hostname of no listener the route attaches to: \
                         Kubernetes serves the route for it nowhere, and it is left out"
                    ),
                );
            }
        }
    }
    match &out.listeners {
        Some(set) if set.is_empty() => d.note(
            "spec.parentRefs",
            "not converted: the route is attached to no listener",
        ),
        Some(set) if context.listeners.iter().any(|l| !set.contains(l)) => {
            let others: Vec<&str> = context
                .listeners
                .iter()
                .filter(|l| !set.contains(*l))
                .map(String::as_str)
                .collect();
            let set: Vec<&str> = set.iter().map(String::as_str).collect();
            d.note(
                "spec.parentRefs",
                format!(
                    "Ringway routes serve every listener: attached to {} in Kubernetes, the \
                     route also answers on {}",
                    set.join(", "),
                    others.join(", ")
                ),
            );
        }
        _ => {}
    }
    out
}

/// Adds `more` to the hosts in `acc` (None, any host, absorbs everything).
fn union(acc: &mut Hosts, more: Hosts) {
    match (acc.as_mut(), more) {
        (Some(list), Some(more)) => {
            for h in more {
                if !list.contains(&h) {
                    list.push(h);
                }
            }
        }
        (Some(_), None) => *acc = None,
        (None, _) => {}
    }
}

/// The hosts of a route with `hostnames` on a listener with `listener` hostname: None = any;
/// an empty list = none (the route does not attach).
fn intersect(hostnames: &[String], listener: Option<&str>) -> Hosts {
    match (hostnames.is_empty(), listener) {
        (true, None) => None,
        (false, None) => Some(hostnames.to_vec()),
        (true, Some(l)) => Some(vec![l.to_string()]),
        (false, Some(l)) => {
            let mut out = Vec::new();
            for h in hostnames {
                if let Some(m) = meet(h, l) {
                    if !out.contains(&m) {
                        out.push(m);
                    }
                }
            }
            Some(out)
        }
    }
}

/// The more specific of two hostnames when one includes the other.
fn meet(a: &str, b: &str) -> Option<String> {
    let under = |name: &str, suffix: &str| name.ends_with(&format!(".{suffix}"));
    match (a.strip_prefix("*."), b.strip_prefix("*.")) {
        (None, None) => (a == b).then(|| a.to_string()),
        (None, Some(bs)) => under(a, bs).then(|| a.to_string()),
        (Some(as_), None) => under(b, as_).then(|| b.to_string()),
        (Some(as_), Some(bs)) => {
            if as_ == bs || under(as_, bs) {
                Some(a.to_string())
            } else if under(bs, as_) {
                Some(b.to_string())
            } else {
                None
            }
        }
    }
}

/// One rule of an HTTPRoute, becoming one Ringway route.
struct Rule<'a> {
    namespace: &'a str,
    /// `spec.rules[i]`.
    field: String,
    /// The Ringway route's name (and its weighted backend's).
    name: String,
    attachment: &'a Attachment,
}

const RULE_KEYS: [&str; 7] = [
    "name",
    "matches",
    "filters",
    "backendRefs",
    "timeouts",
    "retry",
    "sessionPersistence",
];

impl Rule<'_> {
    fn convert(
        &self,
        v: &Value,
        options: &Options,
        backends: &mut Backends,
        d: &mut Diag,
    ) -> Option<Value> {
        let field = &self.field;
        let before = d.error_count();
        let rule = mapping(d, field, v, &RULE_KEYS)?;
        string(d, field, rule, "name");
        let match_list = list(d, field, rule, "matches");
        let converted = matches::convert(d, field, match_list);
        let single_port = match self.attachment.ports.len() {
            1 => self.attachment.ports.first().copied(),
            _ => None,
        };
        let filter_list = list(d, field, rule, "filters");
        let filters = filters::convert(d, field, filter_list, converted.all_prefix, single_port);
        let refs = list(d, field, rule, "backendRefs");

        let mut route = Map::new();
        route.insert("name".into(), json!(self.name));
        if let Some(hosts) = &self.attachment.hosts {
            route.insert("hosts".into(), json!(hosts));
        }
        route.insert("matches".into(), Value::Array(converted.matches));
        let mut route_filters = Map::new();
        for (key, edits) in [
            ("request_headers", &filters.request_headers),
            ("response_headers", &filters.response_headers),
        ] {
            if !edits.is_empty() {
                route_filters.insert(key.into(), Value::Object(edits.clone()));
            }
        }

        let action = if let Some(redirect) = filters.redirect {
            if !refs.is_empty() {
                d.note(
                    &join(field, "backendRefs"),
                    "not used: the rule redirects, so no request reaches a backend",
                );
            }
            ("redirect", redirect)
        } else {
            let rule_field = field.clone();
            let choice = backends::convert(
                d,
                &rule_field,
                refs,
                self.namespace,
                &self.name,
                options,
                backends,
            );
            match choice {
                Choice::Backend(name) => ("backend", json!(name)),
                Choice::NoValidBackend => ("return_response", json!({"status": 500})),
            }
        };
        let forwards = action.0 == "backend";
        // Ringway rewrites only what it forwards.
        if let Some(rewrite) = filters.rewrite.filter(|_| forwards) {
            route_filters.insert("rewrite".into(), rewrite);
        }
        if !route_filters.is_empty() {
            route.insert("filters".into(), Value::Object(route_filters));
        }
        route.insert(action.0.into(), action.1);

        self.timeouts(d, rule);
        let retry = self.retry(d, rule);
        if let Some(retry) = retry.filter(|_| forwards) {
            route.insert("policies".into(), json!({"backend": [{"retry": retry}]}));
        }
        if rule.get("sessionPersistence").is_some_and(|v| !v.is_null()) {
            d.note(
                &join(field, "sessionPersistence"),
                "not converted: Ringway has no session persistence; balance: consistent_hash \
                 with hash_on {cookie: NAME} or {header: NAME} on the backend keeps a client on \
                 one target while the targets stay the same",
            );
        }
        (d.error_count() == before).then_some(Value::Object(route))
    }

    /// `timeouts`: checked, and noted (Ringway's timeouts are global).
    fn timeouts(&self, d: &mut Diag, rule: &Map<String, Value>) {
        let field = join(&self.field, "timeouts");
        let Some(t) = child(
            d,
            &self.field,
            rule,
            "timeouts",
            &["request", "backendRequest"],
        ) else {
            return;
        };
        let mut read = |key: &str| {
            let value = string(d, &field, t, key)?;
            let ms = duration_ms(value);
            if ms.is_none() {
                d.error(
                    &join(&field, key),
                    format!("{value:?} is not a Gateway API duration (like 10s, 500ms, 1m30s)"),
                );
            }
            ms.map(|ms| (value, ms))
        };
        let request = read("request");
        let backend = read("backendRequest");
        if let (Some((_, r)), Some((_, b))) = (request, backend) {
            if r != 0 && b > r {
                d.error(
                    &join(&field, "backendRequest"),
                    "must not be longer than request",
                );
            }
        }
        let global = |(value, ms): (&str, u64), key: &str| {
            let set = if ms == 0 {
                "0s (no limit)".to_string()
            } else {
                ringway_duration(ms)
            };
            format!(
                "{value}: not converted: Ringway's timeouts apply to every route; the nearest is \
                 the top-level timeouts.{key}: {set}"
            )
        };
        if let Some(r) = request {
            let message = global(r, "request");
            d.note(&join(&field, "request"), message);
        }
        if let Some(b) = backend {
            let message = global(b, "upstream_response");
            d.note(&join(&field, "backendRequest"), message);
        }
    }

    /// `retry` as a Ringway `retry` policy.
    fn retry(&self, d: &mut Diag, rule: &Map<String, Value>) -> Option<Value> {
        let field = join(&self.field, "retry");
        let r = child(
            d,
            &self.field,
            rule,
            "retry",
            &["codes", "attempts", "backoff"],
        )?;
        let mut codes = Vec::new();
        for (i, c) in list(d, &field, r, "codes").iter().enumerate() {
            match c.as_i64() {
                Some(c @ 400..=599) => codes.push(json!(c)),
                _ => d.error(
                    &format!("{field}.codes[{i}]"),
                    format!("{c} is not a status code from 400 to 599"),
                ),
            }
        }
        let attempts = integer(d, &field, r, "attempts", 0..=i64::from(i32::MAX)).unwrap_or(1);
        let backoff = string(d, &field, r, "backoff").and_then(|b| {
            let ms = duration_ms(b);
            if ms.is_none() {
                d.error(
                    &join(&field, "backoff"),
                    format!("{b:?} is not a Gateway API duration (like 100ms, 1s)"),
                );
            }
            ms
        });
        if attempts == 0 {
            return None;
        }
        let count = if attempts > 50 {
            d.note(
                &join(&field, "attempts"),
                format!("{attempts} retries: Ringway retries at most 50 times; 50 is used"),
            );
            50
        } else {
            attempts
        };
        // Ringway waits at least a millisecond and at most five minutes between tries.
        let interval = match backoff {
            None => 100,
            Some(ms) if ms > 300_000 => {
                d.note(
                    &join(&field, "backoff"),
                    "longer than Ringway's longest retry interval: 5m is used",
                );
                300_000
            }
            Some(ms) => ms.max(1),
        };
        let mut retry = Map::new();
        retry.insert("count".into(), json!(count));
        retry.insert("interval".into(), json!(ringway_duration(interval)));
        if !codes.is_empty() {
            retry.insert("condition".into(), json!({"statuses": codes}));
        }
        Some(Value::Object(retry))
    }
}
