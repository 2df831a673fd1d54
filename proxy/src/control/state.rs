//! The admin API's state views: what the node knows of its targets and limit keys, read from
//! the node-wide tables (atomics) without involving a worker.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::plane::Plane;
use crate::policy::run::{mono_ms, unix_ms};
use crate::upstream::Gate;

/// `GET /state/upstreams`: per backend and target, the breaker, health checks, drain mark,
/// and the pool's reuse counters (from the workers' published metrics).
pub fn upstreams(plane: &Plane) -> Value {
    let (snapshot, shared) = {
        let r = plane.reloader.lock().unwrap_or_else(|e| e.into_inner());
        (Arc::clone(r.snapshot()), Arc::clone(r.shared_upstreams()))
    };
    let (metrics, _) = plane.control.metrics();
    let now = Instant::now();
    let backends: Vec<Value> = snapshot
        .config
        .backends
        .iter()
        .enumerate()
        .map(|(b, backend)| {
            let label = snapshot.backend_labels[b];
            let mut counts = ringway_core::metrics::SeriesCounts::default();
            for (key, c) in &metrics.series {
                if *key as u32 == label {
                    counts.merge(c);
                }
            }
            let targets: Vec<Value> = snapshot.backend_targets[b]
                .clone()
                .map(|t| {
                    let info = &snapshot.targets[t];
                    let breaker = match shared.breaker_state(t, now) {
                        Gate::Closed => "closed",
                        Gate::HalfOpen(_) => "half_open",
                        Gate::Open => "open",
                    };
                    json!({
                        "target": info.authority,
                        "url": backend.targets[t - snapshot.backend_targets[b].start].url,
                        "address": info.addr.to_string(),
                        "breaker": breaker,
                        "healthy": shared.is_healthy(t),
                        "health_checked": backend.health_check.is_some(),
                        "drained": shared.is_drained(t),
                    })
                })
                .collect();
            json!({
                "backend": backend.name,
                "balance": format!("{:?}", backend.balance).to_lowercase(),
                "targets": targets,
                "pool": {
                    "max_idle_per_target": backend.pool.max_idle_per_target,
                    "idle_timeout_ms": backend.pool.idle_timeout.as_millis() as u64,
                    "connects": counts.upstream_connects,
                    "reuses": counts.upstream_reuses,
                    "connect_errors": counts.upstream_connect_errors,
                    "timeouts": counts.upstream_timeouts,
                },
            })
        })
        .collect();
    json!({ "generation": plane.control.generation.load(std::sync::atomic::Ordering::Relaxed), "backends": backends })
}

/// `GET /state/limits?key=K`: for each limit table, the node-wide counter of key `K` (the
/// key as the policy's template evaluates it for a request, such as a client address).
pub fn limits(plane: &Plane, key: &str) -> Value {
    let node = Arc::clone(&plane.control.node.lock().unwrap_or_else(|e| e.into_inner()));
    let snapshot = Arc::clone(
        plane
            .reloader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot(),
    );
    let tables = &snapshot.config.policy_tables;
    let hash = crate::policy::cache::key_hash(key.as_bytes());
    let now_mono = mono_ms(Instant::now());
    let now_unix = unix_ms();
    let rate: Vec<Value> = node
        .rate
        .iter()
        .zip(&tables.rate)
        .map(|((shared, _), def)| {
            json!({ "policy": def.origin, "kind": "rate-limit", "state": shared.peek(hash, now_mono) })
        })
        .collect();
    let quota: Vec<Value> = node
        .quota
        .iter()
        .zip(&tables.quota)
        .map(|((shared, _, id), def)| {
            json!({ "policy": def.origin, "name": id, "kind": "quota", "state": shared.peek(hash, now_unix) })
        })
        .collect();
    let concurrency: Vec<Value> = node
        .concurrency
        .iter()
        .zip(&tables.concurrency)
        .map(|((shared, _), def)| {
            json!({ "policy": def.origin, "kind": "limit-concurrency", "state": shared.peek(hash) })
        })
        .collect();
    json!({
        "key": key,
        "rate_limits": rate,
        "quotas": quota,
        "concurrency": concurrency,
        "note": "counters are node-wide: tokens a core has leased and not yet spent count as used",
    })
}
