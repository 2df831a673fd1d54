//! The developer portal's state across the nodes of a cluster: developers and the
//! subscriptions they hold are kept in two Redis hashes (`NAME:portal:developers` by email,
//! `NAME:portal:subscriptions` by id, each record JSON with its change time), and each node
//! keeps its own SQLite copy. A change is written to the hash and announced on `NAME:events`
//! (`portal NODE`); every node then merges the hashes into its copy, the newer change of a
//! record winning, and puts changed subscriptions in force. The same merge runs on every
//! periodic check, so a node that missed a message, or was cut off from Redis when it made a
//! change, converges (its newer records are written back).
//!
//! Usage per day is counted in Redis too (`NAME:portal:usage:SUBSCRIPTION`, fields
//! `DAY:requests` and `DAY:errors`), so a developer sees the whole cluster's calls.

use serde_json::{json, Value};

use super::redis::{BlockingClient, Value as Reply};
use crate::portal::store::{StoredSubscription, SubState};
use crate::portal::Portal;

pub fn developers_key(name: &str) -> Vec<u8> {
    format!("{name}:portal:developers").into_bytes()
}

pub fn subscriptions_key(name: &str) -> Vec<u8> {
    format!("{name}:portal:subscriptions").into_bytes()
}

pub fn usage_key(name: &str, subscription: &str) -> Vec<u8> {
    format!("{name}:portal:usage:{subscription}").into_bytes()
}

pub fn subscription_record(s: &StoredSubscription) -> Value {
    json!({
        "id": s.id, "owner": s.owner, "product": s.product, "state": s.state.as_str(),
        "primary_key": s.primary_key, "secondary_key": s.secondary_key,
        "created": s.created, "updated": s.updated,
    })
}

fn subscription_from(v: &Value) -> Option<StoredSubscription> {
    Some(StoredSubscription {
        id: v.get("id")?.as_str()?.to_string(),
        owner: v.get("owner")?.as_str()?.to_string(),
        product: v.get("product")?.as_str()?.to_string(),
        state: SubState::parse(v.get("state")?.as_str()?)?,
        primary_key: v.get("primary_key")?.as_str()?.to_string(),
        secondary_key: v.get("secondary_key")?.as_str()?.to_string(),
        created: v.get("created")?.as_i64()?,
        updated: v.get("updated")?.as_i64()?,
    })
}

/// Writes one subscription to the cluster's hash.
pub fn put_subscription(
    client: &BlockingClient,
    name: &str,
    s: &StoredSubscription,
) -> Result<(), String> {
    let record = subscription_record(s).to_string();
    client
        .call(&[
            b"HSET",
            &subscriptions_key(name),
            s.id.as_bytes(),
            record.as_bytes(),
        ])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Writes one developer (by email, from the local store) to the cluster's hash.
pub fn put_developer(
    client: &BlockingClient,
    name: &str,
    portal: &Portal,
    email: &str,
) -> Result<(), String> {
    let records = portal.store.developer_records()?;
    let Some((d, hash, updated)) = records.iter().find(|(d, _, _)| d.email == email) else {
        return Ok(());
    };
    let record = json!({
        "email": d.email, "name": d.name, "password": hash, "created": d.created, "updated": updated,
    })
    .to_string();
    client
        .call(&[
            b"HSET",
            &developers_key(name),
            d.email.as_bytes(),
            record.as_bytes(),
        ])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn hgetall(client: &BlockingClient, key: &[u8]) -> Result<Vec<(Vec<u8>, Value)>, String> {
    let reply = client.call(&[b"HGETALL", key]).map_err(|e| e.to_string())?;
    let Reply::Array(Some(items)) = reply else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let (Some(k), Some(v)) = (k.into_bytes(), v.into_bytes()) else {
            continue;
        };
        if let Ok(v) = serde_json::from_slice(&v) {
            out.push((k, v));
        }
    }
    Ok(out)
}

/// Merges the cluster's records with the local store, both ways. Returns whether any
/// subscription changed here (they are then to be put in force).
pub fn merge(client: &BlockingClient, name: &str, portal: &Portal) -> Result<bool, String> {
    // Developers.
    let remote = hgetall(client, &developers_key(name))?;
    for (_, v) in &remote {
        let fields = (
            v.get("email").and_then(Value::as_str),
            v.get("name").and_then(Value::as_str),
            v.get("password").and_then(Value::as_str),
            v.get("created").and_then(Value::as_i64),
            v.get("updated").and_then(Value::as_i64),
        );
        if let (Some(e), Some(n), Some(p), Some(c), Some(u)) = fields {
            portal.store.merge_developer(e, n, p, c, u)?;
        }
    }
    for (d, _, updated) in portal.store.developer_records()? {
        let theirs = remote
            .iter()
            .find(|(k, _)| k == d.email.as_bytes())
            .and_then(|(_, v)| v.get("updated").and_then(Value::as_i64));
        if theirs.is_none_or(|t| t < updated) {
            put_developer(client, name, portal, &d.email)?;
        }
    }
    // Subscriptions.
    let remote = hgetall(client, &subscriptions_key(name))?;
    let mut changed = false;
    for (_, v) in &remote {
        if let Some(s) = subscription_from(v) {
            changed |= portal.store.put_subscription(&s)?;
        }
    }
    for s in portal.store.subscriptions(None)? {
        let theirs = remote
            .iter()
            .find(|(k, _)| k == s.id.as_bytes())
            .and_then(|(_, v)| v.get("updated").and_then(Value::as_i64));
        if theirs.is_none_or(|t| t < s.updated) {
            put_subscription(client, name, &s)?;
        }
    }
    Ok(changed)
}

/// Adds a node's requests and errors of `day` to the cluster's count.
pub fn add_usage(
    client: &BlockingClient,
    name: &str,
    subscription: &str,
    day: &str,
    requests: u64,
    errors: u64,
) -> Result<(), String> {
    let key = usage_key(name, subscription);
    for (field, n) in [
        (format!("{day}:requests"), requests),
        (format!("{day}:errors"), errors),
    ] {
        if n > 0 {
            client
                .call(&[b"HINCRBY", &key, field.as_bytes(), n.to_string().as_bytes()])
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The cluster's requests and errors per day for `subscriptions`, from `since` on.
pub fn usage(
    client: &BlockingClient,
    name: &str,
    subscriptions: &[String],
    since: &str,
) -> Result<Vec<(String, u64, u64)>, String> {
    let mut by_day: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for s in subscriptions {
        let reply = client
            .call(&[b"HGETALL", &usage_key(name, s)])
            .map_err(|e| e.to_string())?;
        let Reply::Array(Some(items)) = reply else {
            continue;
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let (Some(k), Some(v)) = (k.into_bytes(), v.into_bytes()) else {
                continue;
            };
            let (k, v) = (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v),
            );
            let Some((day, what)) = k.split_once(':') else {
                continue;
            };
            if day < since {
                continue;
            }
            let n: u64 = v.parse().unwrap_or(0);
            let e = by_day.entry(day.to_string()).or_default();
            if what == "requests" {
                e.0 += n;
            } else {
                e.1 += n;
            }
        }
    }
    Ok(by_day.into_iter().map(|(d, (r, e))| (d, r, e)).collect())
}
