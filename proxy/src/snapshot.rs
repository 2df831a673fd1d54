//! The compiled, immutable form of a configuration that workers serve from.
//!
//! Built once per (re)load on the control thread and shared read-only by every worker; nothing
//! in it changes while it serves, so workers read it without locks.

use std::net::SocketAddr;
use std::ops::Range;

use crate::config::{Config, ConfigError};
use crate::route::Router;

/// One target of one backend, flattened so that per-core tables index it directly.
#[derive(Clone, Debug)]
pub struct TargetInfo {
    pub backend: usize,
    pub addr: SocketAddr,
    pub authority: String,
    /// TLS to an `https://` target: its backend's client config and the name to send.
    pub tls: Option<TargetTls>,
}

#[derive(Clone, Debug)]
pub struct TargetTls {
    pub client: std::sync::Arc<crate::tls::UpstreamTls>,
    pub name: rustls::pki_types::ServerName<'static>,
}

pub struct Snapshot {
    pub config: Config,
    pub router: Router,
    /// Every backend's targets, backend after backend.
    pub targets: Vec<TargetInfo>,
    /// For each backend, its targets' range in `targets`.
    pub backend_targets: Vec<Range<usize>>,
    /// For each backend, its metric label id.
    pub backend_labels: Vec<u32>,
}

impl Snapshot {
    pub fn build(config: Config) -> Result<Snapshot, ConfigError> {
        let router = Router::build(&config)?;
        let mut targets = Vec::new();
        let mut backend_targets = Vec::with_capacity(config.backends.len());
        for (backend, b) in config.backends.iter().enumerate() {
            let start = targets.len();
            targets.extend(b.targets.iter().map(|t| {
                TargetInfo {
                    backend,
                    addr: t.addr,
                    authority: t.authority.clone(),
                    tls: b
                        .tls
                        .as_ref()
                        .zip(t.tls_name.as_ref())
                        .map(|(client, name)| TargetTls {
                            client: std::sync::Arc::clone(client),
                            name: name.clone(),
                        }),
                }
            }));
            backend_targets.push(start..targets.len());
        }
        let backend_labels = config
            .backends
            .iter()
            .map(|b| crate::control::labels::backend(&b.name))
            .collect();
        for id in config.keys.subscription_ids() {
            crate::control::labels::subscription(id);
        }
        Ok(Snapshot {
            backend_labels,
            config,
            router,
            targets,
            backend_targets,
        })
    }
}
