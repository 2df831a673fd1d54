//! What a document takes from other files before it is validated: the operations of
//! `apis[].openapi` documents (and their servers, as the API's backend when it names none),
//! and the routes and backends of `gateway_api` manifests. Both are read on every load, so a
//! reload picks up their changes; [`inputs_digest`] lets the reload tell whether they changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::apis::{Operation, Sections};
use super::model::Document;
use super::validate::Errors;
use crate::import::{gateway_api, openapi};

/// `gateway_api:` — Kubernetes Gateway API manifests whose routes join the configuration.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with paths and optionally service_host, namespace, listeners"
)]
pub struct GatewayApiDoc {
    /// Manifest files, or directories whose `*.yaml`, `*.yml` and `*.json` files are read.
    pub paths: Vec<String>,
    /// A Service's host name: `{name}` and `{namespace}` are replaced.
    pub service_host: Option<String>,
    /// The namespace of manifests that name none.
    pub namespace: Option<String>,
    /// Whether the listeners of the manifests' Gateways are added to the configuration's
    /// (default false: the configuration's own listeners serve the routes).
    pub listeners: Option<bool>,
}

/// Fills in the operations and backends the document takes from OpenAPI documents, and the
/// listeners, backends and routes from Gateway API manifests. Returns the files (and
/// directories) read.
pub(super) fn expand(doc: &mut Document, dir: &Path, errors: &mut Errors) -> Vec<PathBuf> {
    let mut inputs = Vec::new();
    let mut servers_backends = Vec::new();
    for (a, api) in doc.apis.iter_mut().enumerate() {
        if let Some(file) = &api.openapi {
            let apath = format!("apis[{a}].openapi");
            let path = dir.join(file);
            inputs.push(path.clone());
            if let Some(d) = load(&apath, &path, errors) {
                api.generated = operations(&d);
                if api.backend.is_none() {
                    if let Some(server) = d.servers.first() {
                        match server_backend(&api.name, server) {
                            Ok((backend, backend_path)) => {
                                api.backend = Some(format!("{}-openapi", api.name));
                                if api.backend_path.is_none() && !backend_path.is_empty() {
                                    api.backend_path = Some(backend_path);
                                }
                                servers_backends.push((apath.clone(), backend));
                            }
                            Err(e) => errors.push(
                                &apath,
                                format!(
                                    "the document's first server {server:?} cannot be the API's \
                                     backend ({e}); give the API a backend"
                                ),
                            ),
                        }
                    }
                }
                api.document = Some(Arc::new(d));
            }
        }
        for (r, rev) in api.revisions.iter_mut().enumerate() {
            if let Some(file) = &rev.openapi {
                let rpath = format!("apis[{a}].revisions[{r}].openapi");
                let path = dir.join(file);
                inputs.push(path.clone());
                if let Some(d) = load(&rpath, &path, errors) {
                    rev.generated = operations(&d);
                    rev.document = Some(Arc::new(d));
                }
            }
        }
    }
    for (apath, backend) in servers_backends {
        let name = backend["name"].as_str().unwrap_or_default().to_string();
        if doc.backends.iter().any(|b| b.name == name) {
            errors.push(
                &apath,
                format!(
                    "the backend made from the document's server would be named {name:?}, \
                     which another backend is; give the API a backend"
                ),
            );
            continue;
        }
        match serde_json::from_value(backend) {
            Ok(b) => doc.backends.push(b),
            Err(e) => errors.push(&apath, format!("the document's server: {e}")),
        }
    }
    if let Some(g) = doc.gateway_api.take() {
        inputs.extend(gateway(&g, doc, dir, errors));
    }
    inputs
}

fn load(at: &str, path: &Path, errors: &mut Errors) -> Option<openapi::Document> {
    match openapi::load(path) {
        Ok(d) => Some(d),
        Err(list) => {
            for e in list {
                errors.push(at, e);
            }
            None
        }
    }
}

/// The document's operations as the API's: path templates, methods and operation ids.
fn operations(d: &openapi::Document) -> Vec<Operation> {
    d.operations
        .iter()
        .map(|o| Operation {
            id: o.id.clone(),
            method: o.method.clone(),
            url_template: o.path.clone(),
            backend: None,
            policies: Sections::default(),
        })
        .collect()
}

/// A backend for an OpenAPI server URL: its origin as the target, its path as the API's
/// `backend_path`.
fn server_backend(api: &str, url: &str) -> Result<(serde_json::Value, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "not an absolute http or https URL".to_string())?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(['{', '}', '@']) {
        return Err("no host".to_string());
    }
    let backend = serde_json::json!({
        "name": format!("{api}-openapi"),
        "targets": [{"url": format!("{scheme}://{authority}")}],
    });
    Ok((backend, path.trim_end_matches('/').to_string()))
}

fn gateway(g: &GatewayApiDoc, doc: &mut Document, dir: &Path, errors: &mut Errors) -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = g.paths.iter().map(|p| dir.join(p)).collect();
    if paths.is_empty() {
        errors.push(
            "gateway_api.paths",
            "name at least one manifest file or directory",
        );
        return paths;
    }
    let mut options = gateway_api::Options::default();
    if let Some(h) = &g.service_host {
        options.service_host.clone_from(h);
    }
    if let Some(n) = &g.namespace {
        options.default_namespace.clone_from(n);
    }
    let files = match gateway_api::read_paths(&paths) {
        Ok(f) => f,
        Err(list) => {
            for e in list {
                errors.push("gateway_api", e);
            }
            return paths;
        }
    };
    let conversion = match gateway_api::convert(&files, &options) {
        Ok(c) => c,
        Err(list) => {
            for e in list {
                errors.push("gateway_api", e);
            }
            return paths;
        }
    };
    for note in &conversion.notes {
        log::warn!("gateway_api: {note}");
    }
    let listeners = if g.listeners.unwrap_or(false) {
        conversion.listeners
    } else {
        Vec::new()
    };
    for v in listeners {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        if doc
            .listeners
            .iter()
            .any(|l| l.name.as_deref() == Some(name.as_str()))
        {
            continue;
        }
        match serde_json::from_value(v) {
            Ok(l) => doc.listeners.push(l),
            Err(e) => errors.push("gateway_api", format!("listener {name:?}: {e}")),
        }
    }
    for v in conversion.backends {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        if doc.backends.iter().any(|b| b.name == name) {
            errors.push(
                "gateway_api",
                format!("the manifests' backend {name:?} has the name of a configured backend"),
            );
            continue;
        }
        match serde_json::from_value(v) {
            Ok(b) => doc.backends.push(b),
            Err(e) => errors.push("gateway_api", format!("backend {name:?}: {e}")),
        }
    }
    for v in conversion.routes {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        match serde_json::from_value(v) {
            Ok(r) => doc.routes.push(r),
            Err(e) => errors.push("gateway_api", format!("route {name:?}: {e}")),
        }
    }
    paths
}

/// A digest of the files a configuration read besides itself (every file of a directory,
/// with its name), to tell whether a reload would change anything.
pub fn inputs_digest(inputs: &[PathBuf]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for input in inputs {
        ctx.update(input.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        if input.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            for e in entries {
                ctx.update(e.to_string_lossy().as_bytes());
                ctx.update(&std::fs::read(&e).unwrap_or_default());
            }
        } else {
            ctx.update(&std::fs::read(input).unwrap_or_default());
        }
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
