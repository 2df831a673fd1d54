//! `cluster:`: the Redis that a fleet of nodes shares limits, quotas, purges and the
//! configuration through (docs/cluster.md).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::{Dur, Size};
use super::validate::{duration, Errors};
use super::Secret;

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with redis, name and optionally username, password, connect_timeout, \
                 command_timeout, pool_size, tls, when_unavailable, cache"
)]
pub struct ClusterDoc {
    pub redis: String,
    pub name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Option<Dur>,
    pub command_timeout: Option<Dur>,
    pub pool_size: Option<usize>,
    pub tls: Option<ClusterTlsDoc>,
    pub when_unavailable: Option<String>,
    pub cache: Option<ClusterCacheDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with ca")]
pub struct ClusterTlsDoc {
    pub ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with enabled and optionally max_body"
)]
pub struct ClusterCacheDoc {
    #[serde(default)]
    pub enabled: bool,
    pub max_body: Option<Size>,
}

/// What a node does for a cluster-wide limit while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Each node applies the limit by itself (node-wide), as if it were alone.
    NodeLimits,
    /// Refuse (503) what the limit covers.
    Reject,
}

#[derive(Clone)]
pub struct ClusterSettings {
    /// Namespaces every key and channel: `NAME:...`.
    pub name: String,
    /// As written: `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://`.
    pub redis: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Connections per core.
    pub pool_size: usize,
    pub tls_ca: Option<PathBuf>,
    pub when_unavailable: WhenUnavailable,
    /// The shared cache tier: on, and the largest body it holds (larger ones stay local).
    pub cache: Option<usize>,
    /// What the Redis clients connect with (parsed from `redis` and the settings above).
    pub client: crate::cluster::redis::RedisSettings,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("name", &self.name)
            .field("redis", &redact_url(&self.redis))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("pool_size", &self.pool_size)
            .field("tls_ca", &self.tls_ca)
            .field("when_unavailable", &self.when_unavailable)
            .field("cache", &self.cache)
            .finish()
    }
}

pub(super) fn cluster(
    doc: &ClusterDoc,
    dir: &std::path::Path,
    errors: &mut Errors,
) -> Option<ClusterSettings> {
    let before = errors.0.len();
    let name = doc.name.clone().unwrap_or_else(|| "ringway".to_string());
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errors.push(
            "cluster.name",
            format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
        );
    }
    let connect_timeout = duration(
        errors,
        "cluster.connect_timeout",
        doc.connect_timeout,
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    let command_timeout = duration(
        errors,
        "cluster.command_timeout",
        doc.command_timeout,
        Duration::from_millis(250),
        Duration::from_secs(60),
    );
    let pool_size = doc.pool_size.unwrap_or(1);
    if !(1..=16).contains(&pool_size) {
        errors.push(
            "cluster.pool_size",
            format!("must be from 1 to 16 connections per core, not {pool_size}"),
        );
    }
    let when_unavailable = match doc.when_unavailable.as_deref() {
        None | Some("node_limits") => WhenUnavailable::NodeLimits,
        Some("reject") => WhenUnavailable::Reject,
        Some(other) => {
            errors.push(
                "cluster.when_unavailable",
                format!("{other:?}: give node_limits or reject"),
            );
            WhenUnavailable::NodeLimits
        }
    };
    let tls_ca = doc
        .tls
        .as_ref()
        .and_then(|t| t.ca.as_ref())
        .map(|ca| dir.join(ca));
    let client = match crate::cluster::redis::RedisSettings::parse(&doc.redis, tls_ca.as_deref()) {
        Ok(mut c) => {
            c.connect_timeout = connect_timeout;
            c.command_timeout = command_timeout;
            c.pool_size = pool_size;
            if doc.username.is_some() {
                c.username.clone_from(&doc.username);
            }
            if doc.password.is_some() {
                c.password.clone_from(&doc.password);
            }
            Some(c)
        }
        Err(e) => {
            errors.push("cluster.redis", e);
            None
        }
    };
    let cache = doc.cache.as_ref().filter(|c| c.enabled).map(|c| {
        c.max_body
            .map_or(64 * 1024, |s| s.0 as usize)
            .min(512 * 1024 * 1024)
    });
    let client = client?;
    (errors.0.len() == before).then(|| ClusterSettings {
        client,
        name,
        redis: doc.redis.clone(),
        username: doc.username.clone(),
        password: doc.password.clone().map(Secret::new),
        connect_timeout,
        command_timeout,
        pool_size,
        tls_ca,
        when_unavailable,
        cache,
    })
}

/// The URL with any password in it replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://<redacted>@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}
