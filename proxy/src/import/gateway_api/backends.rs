//! `rules[].backendRefs` → Ringway `backends`.
//!
//! One Service port is one backend, `{namespace}-{service}-{port}`, shared by every rule that
//! sends all its traffic there. A rule that splits traffic gets a backend of its own, named
//! after its route, with `balance: weighted` and one target per Service. Ringway weights are
//! 1..=1000 where the Gateway API allows 0..=1000000: larger ones are scaled down, keeping the
//! ratios as exactly as integers up to 1000 can.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::fields::{integer, join, list, mapping, required, string};
use super::{Diag, Options};

/// The Ringway backends made so far.
#[derive(Default)]
pub(super) struct Backends {
    entries: Vec<Value>,
    by_name: HashMap<String, usize>,
}

impl Backends {
    pub fn into_entries(self) -> Vec<Value> {
        self.entries
    }

    /// The shared backend of one Service port.
    fn service(&mut self, name: String, url: &str) -> String {
        if !self.by_name.contains_key(&name) {
            self.by_name.insert(name.clone(), self.entries.len());
            self.entries
                .push(json!({"name": name, "targets": [{"url": url}]}));
        }
        name
    }

    /// A weighted backend of one rule's own; its name is made unique if need be.
    fn weighted(&mut self, name: &str, targets: Vec<Value>) -> String {
        let mut unique = name.to_string();
        let mut n = 2;
        while self.by_name.contains_key(&unique) {
            unique = format!("{name}-{n}");
            n += 1;
        }
        self.by_name.insert(unique.clone(), self.entries.len());
        self.entries.push(json!({
            "name": unique,
            "balance": "weighted",
            "targets": targets,
        }));
        unique
    }
}

/// Where a rule's requests go.
pub(super) enum Choice {
    Backend(String),
    /// No backendRef is valid: the Gateway API answers 500.
    NoValidBackend,
}

const REF_KEYS: [&str; 7] = [
    "group",
    "kind",
    "name",
    "namespace",
    "port",
    "weight",
    "filters",
];

/// Converts the `backendRefs` of the rule at `rule_field`; `route_name` names its weighted
/// backend.
pub(super) fn convert(
    d: &mut Diag,
    rule_field: &str,
    refs: &[Value],
    namespace: &str,
    route_name: &str,
    options: &Options,
    backends: &mut Backends,
) -> Choice {
    struct Valid {
        backend: String,
        url: String,
        weight: u64,
    }
    let mut valid: Vec<Valid> = Vec::new();
    let mut invalid_weight = 0u64;
    let mut zero = 0;
    for (i, v) in refs.iter().enumerate() {
        let field = format!("{rule_field}.backendRefs[{i}]");
        let Some(r) = mapping(d, &field, v, &REF_KEYS) else {
            continue;
        };
        let group = string(d, &field, r, "group").unwrap_or("");
        let kind = string(d, &field, r, "kind").unwrap_or("Service");
        let name = required(d, &field, r, "name");
        let ns = string(d, &field, r, "namespace").unwrap_or(namespace);
        let port = integer(d, &field, r, "port", 1..=65535);
        let weight = integer(d, &field, r, "weight", 0..=1_000_000).unwrap_or(1) as u64;
        if !list(d, &field, r, "filters").is_empty() {
            d.note(
                &join(&field, "filters"),
                "not converted: Ringway applies filters per route, not per backend; the \
                 requests sent to this backend go without them",
            );
        }
        let Some(name) = name else {
            continue;
        };
        let service = group.is_empty() && kind == "Service";
        if !service {
            d.note(
                &field,
                format!(
                    "not converted: a {}{kind} backend has no Ringway equivalent (only Services, \
                     reached through the service_host template); Kubernetes answers 500 for \
                     the requests it would get",
                    if group.is_empty() {
                        String::new()
                    } else {
                        format!("{group}/")
                    }
                ),
            );
            invalid_weight += weight;
            continue;
        }
        let Some(port) = port else {
            if r.get("port").is_none_or(Value::is_null) {
                d.error(
                    &join(&field, "port"),
                    "is required for a Service backend (the Gateway API takes no default)",
                );
            }
            continue;
        };
        if weight == 0 {
            zero += 1;
            if refs.len() > 1 {
                d.note(
                    &join(&field, "weight"),
                    format!("0: Service {ns}/{name} gets no traffic, so it is left out"),
                );
            }
            continue;
        }
        let host = options
            .service_host
            .replace("{name}", name)
            .replace("{namespace}", ns);
        let url = format!("http://{host}:{port}");
        match valid.iter_mut().find(|v| v.url == url) {
            // The same Service twice: one target with both weights.
            Some(same) => same.weight += weight,
            None => valid.push(Valid {
                backend: format!("{ns}-{name}-{port}"),
                url,
                weight,
            }),
        }
    }

    if valid.is_empty() {
        let why = if refs.is_empty() {
            "the rule has no backendRefs"
        } else if zero > 0 && invalid_weight == 0 {
            "every backendRef has weight 0"
        } else {
            "no backendRef is a Service Ringway can reach"
        };
        d.note(
            &join(rule_field, "backendRefs"),
            format!("{why}: the route answers 500, as the Gateway API requires"),
        );
        return Choice::NoValidBackend;
    }
    if invalid_weight > 0 {
        let total: u64 = valid.iter().map(|v| v.weight).sum::<u64>() + invalid_weight;
        d.note(
            &join(rule_field, "backendRefs"),
            format!(
                "{}% of the traffic that Kubernetes answers with 500 (its invalid backendRefs' \
                 share) goes to the valid backends instead",
                percent(invalid_weight, total)
            ),
        );
    }
    if valid.len() == 1 {
        let v = valid.remove(0);
        return Choice::Backend(backends.service(v.backend, &v.url));
    }
    let weights: Vec<u64> = valid.iter().map(|v| v.weight).collect();
    let fitted = fit_weights(&weights);
    if fitted != weights {
        let exact = ratios_equal(&weights, &fitted);
        let shown = |w: &[u64]| w.iter().map(u64::to_string).collect::<Vec<_>>().join(":");
        let total_old: u64 = weights.iter().sum();
        let total_new: u64 = fitted.iter().sum();
        let shares = |w: &[u64], total: u64| {
            w.iter()
                .map(|&x| format!("{}%", percent(x, total)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let how = if exact {
            "the same ratios".to_string()
        } else {
            format!(
                "shares {} instead of {}",
                shares(&fitted, total_new),
                shares(&weights, total_old)
            )
        };
        d.note(
            &join(rule_field, "backendRefs"),
            format!(
                "weights {} exceed Ringway's 1..=1000: scaled to {} ({how})",
                shown(&weights),
                shown(&fitted)
            ),
        );
    }
    let targets = valid
        .iter()
        .zip(&fitted)
        .map(|(v, w)| json!({"url": v.url, "weight": w}))
        .collect();
    Choice::Backend(backends.weighted(route_name, targets))
}

/// `part` of `total` in percent, to one decimal where it is not whole.
fn percent(part: u64, total: u64) -> String {
    let tenths = (part * 1000 + total / 2) / total.max(1);
    if tenths.is_multiple_of(10) {
        format!("{}", tenths / 10)
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// Weights (all at least 1) within Ringway's 1..=1000 with the ratios of `weights`: unchanged
/// when they fit, divided by their common divisor when that makes them fit, and otherwise the
/// integers up to 1000 whose traffic shares are nearest (smallest total difference; of equally
/// near ones the smallest).
pub(super) fn fit_weights(weights: &[u64]) -> Vec<u64> {
    let max = weights.iter().copied().max().unwrap_or(1);
    if max <= 1000 {
        return weights.to_vec();
    }
    let divisor = weights.iter().copied().fold(0, gcd);
    let reduced: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let max = max / divisor;
    if max <= 1000 {
        return reduced;
    }
    let total = reduced.iter().sum::<u64>() as f64;
    let mut best: Option<(f64, Vec<u64>)> = None;
    for top in 1..=1000u64 {
        // Round to nearest, but never to 0: every target that had traffic keeps some.
        let candidate: Vec<u64> = reduced
            .iter()
            .map(|&w| {
                ((w as u128 * top as u128 * 2 + max as u128) / (2 * max as u128)).max(1) as u64
            })
            .collect();
        let sum = candidate.iter().sum::<u64>() as f64;
        let error: f64 = candidate
            .iter()
            .zip(&reduced)
            .map(|(&c, &w)| (c as f64 / sum - w as f64 / total).abs())
            .sum();
        if best.as_ref().is_none_or(|(e, _)| error < *e - 1e-12) {
            best = Some((error, candidate));
        }
    }
    best.map(|(_, w)| w)
        .unwrap_or_else(|| vec![1; weights.len()])
}

fn ratios_equal(a: &[u64], b: &[u64]) -> bool {
    let (sa, sb): (u128, u128) = (
        a.iter().map(|&x| x as u128).sum(),
        b.iter().map(|&x| x as u128).sum(),
    );
    a.iter()
        .zip(b)
        .all(|(&x, &y)| x as u128 * sb == y as u128 * sa)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
