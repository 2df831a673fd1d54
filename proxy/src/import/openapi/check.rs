//! Checking a parsed document and listing its operations. Every problem is collected (each at
//! the pointer where it is written, so a `$ref`'d parameter's fault is reported once, in
//! `components`), and operations are only returned from a document without problems.
//!
//! This file checks the document as a whole (version, info, servers, references);
//! `paths.rs` checks the paths, their operations and parameters.

use serde_json::Value;

use super::refs::{self, follow, join};
use super::Operation;

/// A problem, before the text is searched for its line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Problem {
    pub pointer: String,
    pub message: String,
}

/// What a valid document says, besides its raw value.
pub(super) struct Checked {
    pub title: String,
    pub version: String,
    pub description: Option<String>,
    pub openapi: String,
    pub servers: Vec<String>,
    pub operations: Vec<Operation>,
}

pub(super) fn check(root: &Value) -> Result<Checked, Vec<Problem>> {
    let mut c = Checker {
        root,
        problems: Vec::new(),
    };
    let Some(doc) = root.as_object() else {
        c.problem(
            "",
            format!(
                "an OpenAPI document is a mapping with openapi, info and paths, not {}",
                kind(root)
            ),
        );
        return Err(c.problems);
    };
    if let Some(swagger) = doc.get("swagger") {
        let version = scalar_text(swagger).unwrap_or_default();
        c.problem(
            "/swagger",
            format!(
                "this is a Swagger (OpenAPI 2.0) document (`swagger: {version}`); Ringway imports \
                 OpenAPI 3.0 and 3.1: convert it first (for example with swagger2openapi, or \
                 https://converter.swagger.io)"
            ),
        );
        return Err(c.problems);
    }
    let (openapi, v31) = c.version(doc.get("openapi"));
    let (title, version, description) = c.info(doc.get("info"));
    let servers = c.servers(doc.get("servers"), "/servers");
    c.references(root, "");
    let operations = match doc.get("paths") {
        Some(paths) => c.paths(paths),
        None if v31 && (doc.contains_key("webhooks") || doc.contains_key("components")) => {
            Vec::new()
        }
        None => {
            c.problem(
                "/paths",
                "paths is missing: a document lists its operations under paths (write \
                 `paths: {}` for none)",
            );
            Vec::new()
        }
    };
    if !c.problems.is_empty() {
        let mut problems = Vec::with_capacity(c.problems.len());
        for p in c.problems {
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
        return Err(problems);
    }
    Ok(Checked {
        title,
        version,
        description,
        openapi,
        servers,
        operations,
    })
}

pub(super) struct Checker<'a> {
    pub(super) root: &'a Value,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub(super) fn problem(&mut self, pointer: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            pointer: pointer.to_string(),
            message: message.into(),
        });
    }

    /// The `openapi` field, and whether it is 3.1.
    fn version(&mut self, value: Option<&Value>) -> (String, bool) {
        let text = match value {
            None => {
                self.problem(
                    "/openapi",
                    "openapi is missing: an OpenAPI document starts with its version, such as \
                     `openapi: 3.0.3`",
                );
                return (String::new(), false);
            }
            Some(Value::String(text)) => text.clone(),
            Some(other) => {
                let written = scalar_text(other).unwrap_or_else(|| kind(other).to_string());
                self.problem(
                    "/openapi",
                    format!(
                        "openapi must be a string such as \"3.0.3\", not {written} (quote it: \
                         a bare 3.0 is a number)"
                    ),
                );
                return (written, false);
            }
        };
        let mut parts = text.splitn(3, '.');
        let (major, minor, patch) = (parts.next(), parts.next(), parts.next());
        let patch_ok = match patch {
            None => true,
            Some(p) => {
                let digits = p.split(['-', '+']).next().unwrap_or("");
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            }
        };
        match (major, minor) {
            (Some("3"), Some(minor @ ("0" | "1"))) if patch_ok => {
                let v31 = minor == "1";
                (text, v31)
            }
            _ => {
                self.problem(
                    "/openapi",
                    format!(
                        "OpenAPI {text:?} is not supported: Ringway imports OpenAPI 3.0.x and \
                         3.1.x"
                    ),
                );
                (text, false)
            }
        }
    }

    /// `info`: its title, version and description.
    fn info(&mut self, value: Option<&Value>) -> (String, String, Option<String>) {
        let Some(info) = value.and_then(Value::as_object) else {
            let message = match value {
                None => "info is missing: it gives the API's title and version".to_string(),
                Some(other) => format!(
                    "info must be a mapping with title and version, not {}",
                    kind(other)
                ),
            };
            self.problem("/info", message);
            return Default::default();
        };
        let mut field = |key: &str| match info.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => v.to_string(),
            Some(other) => {
                self.problem(
                    &join("/info", key),
                    format!("info.{key} must be a string, not {}", kind(other)),
                );
                String::new()
            }
            None => {
                self.problem(&join("/info", key), format!("info.{key} is missing"));
                String::new()
            }
        };
        let title = field("title");
        let version = field("version");
        let description = info
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        (title, version, description)
    }

    /// `servers`: their URLs with the variables' defaults put in.
    fn servers(&mut self, value: Option<&Value>, at: &str) -> Vec<String> {
        let Some(value) = value else {
            return Vec::new();
        };
        let Some(list) = value.as_array() else {
            self.problem(at, format!("servers must be a list, not {}", kind(value)));
            return Vec::new();
        };
        let mut urls = Vec::new();
        for (i, server) in list.iter().enumerate() {
            let sat = join(at, &i.to_string());
            let Some(url) = server.get("url").and_then(Value::as_str) else {
                self.problem(&join(&sat, "url"), "a server needs a url (a string)");
                continue;
            };
            let variables = server.get("variables").and_then(Value::as_object);
            let mut out = String::new();
            let mut rest = url;
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let Some(close) = rest[open..].find('}') else {
                    rest = &rest[open..];
                    break;
                };
                let name = &rest[open + 1..open + close];
                match variables
                    .and_then(|v| v.get(name))
                    .and_then(|v| v.get("default"))
                    .and_then(scalar_text)
                {
                    Some(default) => out.push_str(&default),
                    None => self.problem(
                        &join(&sat, "url"),
                        format!(
                            "server variable {{{name}}} needs a default: declare it under \
                             variables ({name}: {{default: ...}})"
                        ),
                    ),
                }
                rest = &rest[open + close + 1..];
            }
            out.push_str(rest);
            urls.push(out);
        }
        urls
    }

    /// Every `$ref` in `value` (at `at`) must be local and resolve.
    fn references(&mut self, value: &Value, at: &str) {
        match value {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref") {
                    if let Err(message) = follow(self.root, value, at) {
                        // The fault is in the first reference unless that one resolved.
                        let first = reference
                            .as_str()
                            .and_then(|r| refs::local_target(r).ok())
                            .and_then(|t| self.root.pointer(&t).map(|_| t));
                        if first.is_none() || message.contains("circular") {
                            self.problem(&join(at, "$ref"), message);
                        }
                    }
                }
                for (key, member) in map {
                    if key == "$ref" || refs::is_data_key(key, member) {
                        continue;
                    }
                    let mat = join(at, key);
                    match member {
                        Value::Object(named) if refs::is_name_map(key) => {
                            for (name, v) in named {
                                self.references(v, &join(&mat, name));
                            }
                        }
                        _ => self.references(member, &mat),
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.references(item, &join(at, &i.to_string()));
                }
            }
            _ => {}
        }
    }
}

/// A scalar as it would be written.
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
