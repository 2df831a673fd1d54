//! Kubernetes Gateway API manifests (`Gateway` and `HTTPRoute`, `gateway.networking.k8s.io`
//! `v1` and `v1beta1`) converted into Ringway `listeners`, `backends` and `routes`.
//!
//! The one rule: nothing in a manifest is lost silently. A manifest Kubernetes would refuse (a
//! missing required field, an unknown enum value or field, a Service `backendRef` without a
//! port) is an [`Error`] with its file, line and field, and the conversion fails; whatever is
//! valid but has no Ringway equivalent (mirroring, session persistence, per-route timeouts,
//! routes bound to one listener, ...) becomes a [`Note`] that names the field and says what was
//! done instead.
//!
//! It does not talk to a cluster: a Service is reached by name through
//! [`Options::service_host`] (Ringway resolves target hosts when it loads the configuration,
//! so the default name only resolves inside the cluster), Secrets are not read (an HTTPS
//! listener gets a note asking for PEM files), and `ReferenceGrant`s are accepted unchecked.
//!
//! Precedence follows the Gateway API: Ringway ranks matches as HTTPRoute does and breaks the
//! last tie by declaration order, so routes are emitted oldest `HTTPRoute` first (by
//! `metadata.creationTimestamp`), then by `namespace/name`, rules in their order.

mod backends;
mod fields;
mod filters;
mod gateway;
mod httproute;
mod manifest;
mod matches;
mod output;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use manifest::{Object, Source};

/// How Kubernetes names become Ringway settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The host of a Service's targets, with `{name}` and `{namespace}` replaced:
    /// `{name}.{namespace}.svc.cluster.local` by default.
    pub service_host: String,
    /// The namespace of objects whose metadata names none (`default`).
    pub default_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            service_host: "{name}.{namespace}.svc.cluster.local".to_string(),
            default_namespace: "default".to_string(),
        }
    }
}

/// The Ringway configuration made from a set of manifests: entries for the document's
/// `listeners`, `backends` and `routes` lists, and what could not be expressed.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    pub listeners: Vec<serde_json::Value>,
    pub backends: Vec<serde_json::Value>,
    pub routes: Vec<serde_json::Value>,
    pub notes: Vec<Note>,
}

/// Something valid in the manifests that Ringway cannot express, and what was done instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The file.
    pub source: String,
    /// `HTTPRoute default/store`.
    pub object: String,
    /// The field within the object: `spec.rules[0].filters[1]`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.source, self.object)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A manifest that cannot be converted: unreadable, malformed, or invalid for Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The file.
    pub source: String,
    /// 1-based; found by a best-effort scan of the text.
    pub line: Option<usize>,
    /// `HTTPRoute default/store`, when the error is within an object.
    pub object: Option<String>,
    /// The field within the object (empty for the file or object as a whole).
    pub field: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Converts the manifests in `files` (source name, text): every error in all of them, or the
/// conversion with its notes.
pub fn convert(files: &[(String, String)], options: &Options) -> Result<Conversion, Vec<Error>> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(name, text)| Source::new(name, text))
        .collect();
    let mut report = Report::default();
    let mut objects = Vec::new();
    for source in &sources {
        match manifest::read(source) {
            Ok(list) => objects.extend(list),
            Err(e) => report.errors.push(e),
        }
    }

    let mut gateways = Vec::new();
    let mut routes = Vec::new();
    let mut seen: HashMap<(String, String), &Object> = HashMap::new();
    for object in &objects {
        let Some(meta) = identify(object, options, &mut report) else {
            continue;
        };
        let label = meta.label();
        match meta.kind() {
            Kind::Gateway | Kind::HttpRoute => {
                if let Some(first) = seen.get(&(meta.kind.clone(), meta.key())) {
                    let at = first.source.name.clone();
                    let line = first.line_of("metadata.name");
                    Diag::new(object, label, &mut report).error(
                        "metadata.name",
                        format!("defined twice (first in {at} line {line})"),
                    );
                    continue;
                }
                seen.insert((meta.kind.clone(), meta.key()), object);
                if meta.kind() == Kind::Gateway {
                    gateways.push((object, meta));
                } else {
                    routes.push((object, meta));
                }
            }
            Kind::Skipped(why) => Diag::new(object, label, &mut report).note("", why),
            Kind::Accepted => {}
        }
    }

    let mut listeners = gateway::Listeners::default();
    let gateways: Vec<gateway::Gateway> = gateways
        .into_iter()
        .map(|(object, meta)| {
            let mut d = Diag::new(object, meta.label(), &mut report);
            gateway::read(&meta.namespace, &meta.name, &mut d, &mut listeners)
        })
        .collect();

    // Ringway breaks the last precedence tie by declaration order, as the Gateway API does by
    // age and then by namespace/name.
    routes.sort_by(|(_, a), (_, b)| {
        let age = |m: &Meta| (m.created.is_none(), m.created.clone());
        age(a)
            .cmp(&age(b))
            .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    let context = httproute::Context {
        gateways: &gateways,
        listeners: listeners.names(),
        options,
    };
    let mut backends = backends::Backends::default();
    let mut out_routes = Vec::new();
    for (object, meta) in &routes {
        let mut d = Diag::new(object, meta.label(), &mut report);
        out_routes.extend(httproute::convert(
            &meta.namespace,
            &meta.name,
            &context,
            &mut backends,
            &mut d,
        ));
    }

    if !report.errors.is_empty() {
        return Err(report.errors);
    }
    Ok(Conversion {
        listeners: listeners.into_entries(),
        backends: backends.into_entries(),
        routes: out_routes,
        notes: report.notes,
    })
}

/// Reads `paths`: each a manifest file, or a directory whose `*.yaml`, `*.yml` and `*.json`
/// files are read in name order (not recursively; names starting with `.` are skipped, as are
/// the `..data` links of a mounted ConfigMap).
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<(String, String)>, Vec<Error>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let fail = |path: &std::path::Path, what: &str, e: std::io::Error| Error {
        source: path.display().to_string(),
        line: None,
        object: None,
        field: String::new(),
        message: format!("cannot {what}: {e}"),
    };
    for path in paths {
        if !path.is_dir() {
            match std::fs::read_to_string(path) {
                Ok(text) => files.push((path.display().to_string(), text)),
                Err(e) => errors.push(fail(path, "read the file", e)),
            }
            continue;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(fail(path, "read the directory", e));
                continue;
            }
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| is_manifest_name(p) && p.is_file())
            .collect();
        names.sort();
        for file in names {
            match std::fs::read_to_string(&file) {
                Ok(text) => files.push((file.display().to_string(), text)),
                Err(e) => errors.push(fail(&file, "read the file", e)),
            }
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn is_manifest_name(path: &std::path::Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    !name.starts_with('.')
        && ["yaml", "yml", "json"]
            .iter()
            .any(|known| ext.eq_ignore_ascii_case(known))
}

impl Conversion {
    /// The conversion as a configuration fragment (`listeners:`, `backends:`, `routes:`): a
    /// header comment lists every note, and each note is repeated as a comment next to what it
    /// concerns.
    pub fn to_yaml(&self) -> String {
        output::to_yaml(self)
    }
}

/// Everything found wrong or lossy so far.
#[derive(Default)]
pub(crate) struct Report {
    pub errors: Vec<Error>,
    pub notes: Vec<Note>,
}

/// Where diagnostics about one object go: its file, its name for messages, and the report.
pub(crate) struct Diag<'a> {
    object: &'a Object<'a>,
    label: String,
    report: &'a mut Report,
}

impl<'a> Diag<'a> {
    fn new(object: &'a Object<'a>, label: String, report: &'a mut Report) -> Diag<'a> {
        Diag {
            object,
            label,
            report,
        }
    }

    /// Records that `field` is invalid (the conversion will fail).
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.report.errors.push(Error {
            source: self.object.source.name.clone(),
            line: Some(self.object.line_of(field)),
            object: Some(self.label.clone()),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Records that `field` could not be expressed exactly, and what was done instead.
    pub fn note(&mut self, field: &str, message: impl Into<String>) {
        self.report.notes.push(Note {
            source: self.object.source.name.clone(),
            object: self.label.clone(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// How many errors have been recorded in all, to tell whether a step added any.
    pub fn error_count(&self) -> usize {
        self.report.errors.len()
    }
}

/// An object's kind and name.
struct Meta {
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
    created: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Gateway,
    HttpRoute,
    /// Not converted; the note says why.
    Skipped(String),
    /// Read and ignored without a note (`ReferenceGrant`: Ringway has no namespaces to guard).
    Accepted,
}

const GROUP: &str = "gateway.networking.k8s.io";

impl Meta {
    fn label(&self) -> String {
        if matches!(self.kind.as_str(), "GatewayClass" | "Namespace") {
            // Cluster-scoped: no namespace.
            return format!("{} {}", self.kind, self.name);
        }
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn kind(&self) -> Kind {
        let (group, version) = self
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", self.api_version.as_str()));
        let skipped = |why: &str| Kind::Skipped(why.to_string());
        if group != GROUP {
            return match self.kind.as_str() {
                "Service" => skipped(
                    "skipped: a Service is reached through the backendRefs that name it (its \
                     host comes from the service_host template)",
                ),
                _ => skipped(&format!(
                    "skipped: {} objects are not part of the Gateway API",
                    self.api_version
                )),
            };
        }
        let converted = matches!(self.kind.as_str(), "Gateway" | "HTTPRoute");
        if converted && version != "v1" && version != "v1beta1" {
            return skipped(&format!(
                "skipped: only {GROUP}/v1 and v1beta1 are converted, not {version}"
            ));
        }
        match self.kind.as_str() {
            "Gateway" => Kind::Gateway,
            "HTTPRoute" => Kind::HttpRoute,
            "ReferenceGrant" => Kind::Accepted,
            "GatewayClass" => skipped(
                "skipped: Ringway itself is the implementation, a GatewayClass has nothing to \
                 convert",
            ),
            "GRPCRoute" | "TLSRoute" | "TCPRoute" | "UDPRoute" => skipped(&format!(
                "not converted: Ringway routes HTTP requests only, a {} has no equivalent",
                self.kind
            )),
            _ => skipped(&format!(
                "not converted: {} has no Ringway equivalent",
                self.kind
            )),
        }
    }
}

/// Reads an object's `apiVersion`, `kind` and `metadata`; None (with errors) when they are
/// missing.
fn identify(object: &Object, options: &Options, report: &mut Report) -> Option<Meta> {
    let v = &object.value;
    let text = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_string);
    let kind = text("kind").unwrap_or_default();
    let metadata = v.get("metadata");
    let meta_text = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(|x| x.as_str())
            .map(str::to_string)
    };
    let name = meta_text("name").unwrap_or_default();
    let namespace = meta_text("namespace").unwrap_or_else(|| options.default_namespace.clone());
    let label = if kind.is_empty() {
        "object".to_string()
    } else {
        format!("{kind} {namespace}/{name}")
    };
    let mut d = Diag::new(object, label, report);
    let before = d.error_count();
    let Some(api_version) = text("apiVersion") else {
        d.error(
            "apiVersion",
            "is required (a Kubernetes object needs apiVersion and kind)",
        );
        return None;
    };
    if kind.is_empty() {
        d.error(
            "kind",
            "is required (a Kubernetes object needs apiVersion and kind)",
        );
    }
    if name.is_empty() {
        d.error("metadata.name", "is required");
    }
    if d.error_count() != before {
        return None;
    }
    Some(Meta {
        api_version,
        kind,
        namespace,
        name,
        created: meta_text("creationTimestamp"),
    })
}
