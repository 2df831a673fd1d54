//! `Gateway` → Ringway `listeners`: one listener per port (Ringway binds each address once, so
//! Gateway listeners that share a port, the usual way to serve several hostnames, share one).
//!
//! What a Gateway listener adds to the routes attached to it (its hostname, its port) is kept in
//! [`Gateway`] for the HTTPRoute conversion.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::fields::{child, integer, is_hostname, join, list, mapping, one_of, required, string};
use super::{Diag, GROUP};

/// A Gateway as routes see it.
pub(super) struct Gateway {
    pub namespace: String,
    pub name: String,
    pub listeners: Vec<GatewayListener>,
}

pub(super) struct GatewayListener {
    pub name: String,
    pub hostname: Option<String>,
    pub port: u16,
    /// The Ringway listener serving it; None when HTTPRoutes cannot attach (TLS, TCP, UDP).
    pub ringway: Option<String>,
    /// `allowedRoutes.namespaces.from` is `Same` (the default): only HTTPRoutes of the
    /// Gateway's namespace may attach in Kubernetes.
    pub same_namespace_only: bool,
}

/// The Ringway listeners made so far.
#[derive(Default)]
pub(super) struct Listeners {
    entries: Vec<Value>,
    /// Port → (index in `entries`, protocol, the Gateway that opened it).
    by_port: HashMap<u16, (usize, String, String)>,
}

impl Listeners {
    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|l| l["name"].as_str().map(str::to_string))
            .collect()
    }

    pub fn into_entries(self) -> Vec<Value> {
        self.entries
    }

    /// The Ringway listener for `port`, opened under `name` when it is the first on the port.
    fn serve(
        &mut self,
        d: &mut Diag,
        field: &str,
        gateway: &str,
        name: &str,
        port: u16,
        protocol: &str,
    ) -> String {
        if let Some((index, other_protocol, other_gateway)) = self.by_port.get(&port) {
            let shared = self.entries[*index]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if other_protocol != protocol {
                d.note(
                    field,
                    format!(
                        "port {port} is also a {other_protocol} listener: Ringway binds an address \
                         once, so both are served by listener {shared:?} (with or without TLS \
                         for both)"
                    ),
                );
            } else if other_gateway != gateway {
                d.note(
                    field,
                    format!(
                        "port {port} is also a listener of Gateway {other_gateway}: Ringway binds \
                         an address once, so both are served by listener {shared:?}"
                    ),
                );
            }
            return shared;
        }
        let taken = |n: &str| self.entries.iter().any(|l| l["name"] == n);
        let mut unique = name.to_string();
        let mut n = 2;
        while taken(&unique) {
            unique = format!("{name}-{n}");
            n += 1;
        }
        self.by_port.insert(
            port,
            (
                self.entries.len(),
                protocol.to_string(),
                gateway.to_string(),
            ),
        );
        self.entries
            .push(json!({"name": unique, "address": format!("0.0.0.0:{port}")}));
        unique
    }
}

const LISTENER_KEYS: [&str; 6] = [
    "name",
    "hostname",
    "port",
    "protocol",
    "tls",
    "allowedRoutes",
];

/// Reads one Gateway, opening Ringway listeners for its HTTP and HTTPS listeners.
pub(super) fn read(namespace: &str, name: &str, d: &mut Diag, out: &mut Listeners) -> Gateway {
    let mut gateway = Gateway {
        namespace: namespace.to_string(),
        name: name.to_string(),
        listeners: Vec::new(),
    };
    let label = format!("{namespace}/{name}");
    let Some(spec) = spec_of(d) else {
        return gateway;
    };
    let known = [
        "gatewayClassName",
        "listeners",
        "addresses",
        "infrastructure",
        "backendTLS",
        "allowedListeners",
    ];
    let Some(spec) = mapping(d, "spec", spec, &known) else {
        return gateway;
    };
    required(d, "spec", spec, "gatewayClassName");
    if !list(d, "spec", spec, "addresses").is_empty() {
        d.note(
            "spec.addresses",
            "not converted: Ringway listeners bind 0.0.0.0; write the address into each \
             listener's address to bind one",
        );
    }
    if spec.get("infrastructure").is_some_and(|v| !v.is_null()) {
        d.note(
            "spec.infrastructure",
            "not converted: labels, annotations and parameters for the resources a Gateway \
             controller provisions have no meaning for Ringway",
        );
    }
    for key in ["backendTLS", "allowedListeners"] {
        if spec.get(key).is_some_and(|v| !v.is_null()) {
            d.note(
                &join("spec", key),
                "not converted: Ringway has no equivalent",
            );
        }
    }
    let listeners = list(d, "spec", spec, "listeners");
    if listeners.is_empty() {
        d.error("spec.listeners", "at least one listener is required");
    }
    for (i, v) in listeners.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        let Some(l) = mapping(d, &field, v, &LISTENER_KEYS) else {
            continue;
        };
        let listener_name = required(d, &field, l, "name");
        let port = integer(d, &field, l, "port", 1..=65535);
        if port.is_none() && l.get("port").is_none() {
            d.error(&join(&field, "port"), "is required");
        }
        let protocol = required(d, &field, l, "protocol");
        let hostname = string(d, &field, l, "hostname").map(str::to_ascii_lowercase);
        if let Some(h) = &hostname {
            if !is_hostname(h) {
                d.error(
                    &join(&field, "hostname"),
                    format!("{h:?} is not a hostname (DNS labels, optionally after \"*.\")"),
                );
            }
        }
        let (Some(listener_name), Some(port), Some(protocol)) = (listener_name, port, protocol)
        else {
            continue;
        };
        let port = port as u16;
        if gateway.listeners.iter().any(|l| l.name == listener_name) {
            d.error(
                &join(&field, "name"),
                format!("listener name {listener_name:?} is used twice"),
            );
        }
        let serves_http = check_protocol(d, &field, l, protocol);
        let same_namespace_only = allowed_routes(d, &field, l, namespace);
        let ringway = serves_http.then(|| {
            out.serve(
                d,
                &field,
                &label,
                &format!("{name}-{listener_name}"),
                port,
                protocol,
            )
        });
        if protocol == "HTTPS" {
            https_note(d, &field, l, ringway.as_deref(), hostname.as_deref());
        }
        gateway.listeners.push(GatewayListener {
            name: listener_name.to_string(),
            hostname,
            port,
            ringway,
            same_namespace_only,
        });
    }
    gateway
}

/// The object's `spec`, which a Gateway requires.
fn spec_of<'v>(d: &mut Diag<'v>) -> Option<&'v Value> {
    let spec = d.object.value.get("spec");
    if spec.is_none_or(Value::is_null) {
        d.error("spec", "is required");
    }
    spec.filter(|v| !v.is_null())
}

/// Whether HTTPRoutes can attach to a listener of `protocol`; notes the ones that cannot.
fn check_protocol(
    d: &mut Diag,
    field: &str,
    l: &serde_json::Map<String, Value>,
    protocol: &str,
) -> bool {
    let tls = child(
        d,
        field,
        l,
        "tls",
        &["mode", "certificateRefs", "frontendValidation", "options"],
    );
    let mode = tls.and_then(|t| {
        one_of(
            d,
            &join(field, "tls"),
            t,
            "mode",
            &["Terminate", "Passthrough"],
        )
    });
    match protocol {
        "HTTP" => {
            if tls.is_some() {
                d.error(
                    &join(field, "tls"),
                    "is only allowed with protocol HTTPS or TLS",
                );
            }
            true
        }
        "HTTPS" => {
            if mode == Some("Passthrough") {
                d.error(
                    &join(field, "tls.mode"),
                    "an HTTPS listener terminates TLS (Passthrough is for protocol TLS)",
                );
            }
            true
        }
        "TLS" | "TCP" | "UDP" => {
            d.note(
                field,
                format!(
                    "not converted: a {protocol} listener carries no HTTP routes, and Ringway \
                     listeners serve HTTP only"
                ),
            );
            false
        }
        other if other.contains('/') => {
            d.note(
                &join(field, "protocol"),
                format!("not converted: the implementation-specific protocol {other:?}"),
            );
            false
        }
        other => {
            d.error(
                &join(field, "protocol"),
                format!("{other:?} is not one of HTTP, HTTPS, TLS, TCP, UDP or a domain-prefixed protocol"),
            );
            false
        }
    }
}

/// The note for an HTTPS listener: Ringway loads PEM files where Kubernetes names Secrets.
fn https_note(
    d: &mut Diag,
    field: &str,
    l: &serde_json::Map<String, Value>,
    ringway: Option<&str>,
    hostname: Option<&str>,
) {
    let tls_field = join(field, "tls");
    let tls = l.get("tls").and_then(Value::as_object);
    let mut secrets = Vec::new();
    if let Some(tls) = tls {
        for (i, r) in list(d, &tls_field, tls, "certificateRefs")
            .iter()
            .enumerate()
        {
            let rfield = format!("{tls_field}.certificateRefs[{i}]");
            let Some(r) = mapping(d, &rfield, r, &["group", "kind", "name", "namespace"]) else {
                continue;
            };
            if let Some(name) = required(d, &rfield, r, "name") {
                let ns = string(d, &rfield, r, "namespace");
                secrets.push(match ns {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.to_string(),
                });
            }
        }
        for key in ["frontendValidation", "options"] {
            if tls.get(key).is_some_and(|v| !v.is_null()) {
                d.note(
                    &join(&tls_field, key),
                    "not converted: set the equivalent under the listener's tls (client_auth, \
                     min_version, alpn) by hand",
                );
            }
        }
    }
    let names = hostname.map_or(String::new(), |h| format!(", names: [{h:?}]"));
    let from = if secrets.is_empty() {
        String::new()
    } else {
        format!(
            " (the certificate and key of Secret {})",
            secrets.join(", ")
        )
    };
    d.note(
        &tls_field,
        format!(
            "listener {:?} is converted without TLS, so it serves plain HTTP until TLS is added: \
             Ringway terminates TLS from PEM files, not Secrets; add tls: {{certificates: \
             [{{cert: FILE, key: FILE{names}}}]}} to it{from}",
            ringway.unwrap_or_default()
        ),
    );
}

/// Notes `allowedRoutes` restrictions (Ringway does not enforce them); returns whether only
/// the Gateway's own namespace may attach.
fn allowed_routes(
    d: &mut Diag,
    field: &str,
    l: &serde_json::Map<String, Value>,
    namespace: &str,
) -> bool {
    let afield = join(field, "allowedRoutes");
    let Some(allowed) = child(d, field, l, "allowedRoutes", &["namespaces", "kinds"]) else {
        return true;
    };
    let from = child(d, &afield, allowed, "namespaces", &["from", "selector"]).and_then(|n| {
        one_of(
            d,
            &join(&afield, "namespaces"),
            n,
            "from",
            &["All", "Same", "Selector", "None"],
        )
    });
    match from {
        Some("Same") => d.note(
            &join(&afield, "namespaces.from"),
            format!(
                "not enforced: Kubernetes attaches only HTTPRoutes of namespace {namespace:?}; \
                 Ringway routes apply on every listener whatever their namespace"
            ),
        ),
        Some(from @ ("Selector" | "None")) => d.note(
            &join(&afield, "namespaces.from"),
            format!(
                "not enforced ({from}): every converted HTTPRoute that names this listener is \
                 attached, whatever its namespace"
            ),
        ),
        _ => {}
    }
    let kinds = list(d, &afield, allowed, "kinds");
    let mut http_route = kinds.is_empty();
    for (i, k) in kinds.iter().enumerate() {
        let kfield = format!("{afield}.kinds[{i}]");
        let Some(k) = mapping(d, &kfield, k, &["group", "kind"]) else {
            continue;
        };
        let group = string(d, &kfield, k, "group").unwrap_or(GROUP);
        if required(d, &kfield, k, "kind") == Some("HTTPRoute") && group == GROUP {
            http_route = true;
        }
    }
    if !http_route {
        d.note(
            &join(&afield, "kinds"),
            "not enforced: Kubernetes attaches no HTTPRoute to this listener; Ringway routes \
             apply on every listener",
        );
    }
    from.is_none_or(|f| f == "Same")
}
