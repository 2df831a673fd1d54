//! `paths`: path templates Ringway can serve, path items' fields, parameters (their
//! locations, styles, schemas, and the match between a template and its path parameters),
//! unique operationIds, and the operations' Ringway ids.

use serde_json::{Map, Value};

use super::check::{kind, scalar_text, Checker};
use super::refs::{self, follow, join};
use super::Operation;
use crate::route::Template;

/// The methods a path item may hold, as OpenAPI writes them.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The other fields of a path item.
const PATH_ITEM_FIELDS: &[&str] = &["parameters", "summary", "description", "servers", "$ref"];

const LOCATIONS: &[&str] = &["path", "query", "header", "cookie"];

/// The styles each location allows, its default first.
pub(super) fn styles(location: &str) -> &'static [&'static str] {
    match location {
        "path" => &["simple", "matrix", "label"],
        "query" => &["form", "spaceDelimited", "pipeDelimited", "deepObject"],
        "header" => &["simple"],
        "cookie" => &["form"],
        _ => &[],
    }
}

/// A declared parameter, after its `$ref`s were followed.
struct Param {
    name: String,
    location: String,
    /// Where it is listed (in a `parameters` list).
    listed_at: String,
}

/// An operation before ids are made unique.
struct Found {
    operation_id: Option<String>,
    method: String,
    path: String,
    summary: Option<String>,
    deprecated: bool,
    tags: Vec<String>,
}

impl<'a> Checker<'a> {
    /// `paths`: every operation, with an id unique in the document.
    pub(super) fn paths(&mut self, value: &'a Value) -> Vec<Operation> {
        let Some(paths) = value.as_object() else {
            self.problem(
                "/paths",
                format!(
                    "paths must be a mapping of path templates, not {}",
                    kind(value)
                ),
            );
            return Vec::new();
        };
        let mut found = Vec::new();
        // operationId -> where it was first written, and the operation there.
        let mut ids: Vec<(String, String, String)> = Vec::new();
        for (path, item) in paths {
            if path.starts_with("x-") {
                continue;
            }
            let pat = join("/paths", path);
            if !path.starts_with('/') {
                self.problem(
                    &pat,
                    format!("path {path:?} must start with '/' (write \"/{path}\")"),
                );
                continue;
            }
            let template = self.template(path, &pat);
            let (item, iat) = match follow(self.root, item, &pat) {
                Ok(resolved) => resolved,
                Err(_) => continue, // reported by `references`
            };
            let Some(item) = item.as_object() else {
                self.problem(
                    &iat,
                    format!("a path item is a mapping of methods, not {}", kind(item)),
                );
                continue;
            };
            self.path_item_keys(item, &iat);
            let shared = self.parameters(item.get("parameters"), &join(&iat, "parameters"));
            for (method, operation) in item.iter().filter(|(k, _)| METHODS.contains(&k.as_str())) {
                let oat = join(&iat, method);
                let Some(op) = operation.as_object() else {
                    self.problem(
                        &oat,
                        format!("an operation is a mapping, not {}", kind(operation)),
                    );
                    continue;
                };
                let own = self.parameters(op.get("parameters"), &join(&oat, "parameters"));
                let params = merge(&shared, &own);
                if let Some(names) = &template {
                    self.path_parameters(path, names, &params, &oat);
                }
                let operation_id = match op.get("operationId") {
                    None => None,
                    Some(Value::String(id)) => {
                        let idat = join(&oat, "operationId");
                        match ids.iter().find(|(known, _, _)| known == id) {
                            Some((_, first, what)) => {
                                let message = format!(
                                    "operationId {id:?} is already used by {what} (at {first}): \
                                     operationIds are unique in a document"
                                );
                                self.problem(&idat, message);
                            }
                            None => ids.push((
                                id.clone(),
                                idat,
                                format!("{} {path}", method.to_ascii_uppercase()),
                            )),
                        }
                        Some(id.clone())
                    }
                    Some(other) => {
                        self.problem(
                            &join(&oat, "operationId"),
                            format!("operationId must be a string, not {}", kind(other)),
                        );
                        None
                    }
                };
                found.push(Found {
                    operation_id,
                    method: method.to_ascii_uppercase(),
                    path: path.clone(),
                    summary: text(op, "summary").or_else(|| text(item, "summary")),
                    deprecated: op.get("deprecated").and_then(Value::as_bool) == Some(true),
                    tags: op
                        .get("tags")
                        .and_then(Value::as_array)
                        .map(|t| {
                            t.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
        }
        assign_ids(found)
    }

    /// The parameter names of path template `path`, or `None` (with a problem) when Ringway
    /// cannot serve it.
    fn template(&mut self, path: &str, at: &str) -> Option<Vec<String>> {
        match Template::parse(path) {
            Ok(t) => Some(t.param_names().to_vec()),
            Err(e) => {
                let partial = path[1..]
                    .split('/')
                    .find(|s| s.contains('{') && !(s.starts_with('{') && s.ends_with('}')));
                let message = match partial {
                    Some(segment) => {
                        let suggested: Vec<String> = path[1..]
                            .split('/')
                            .map(|s| whole_segment(s).unwrap_or_else(|| s.to_string()))
                            .collect();
                        format!(
                            "path template {path:?}: {segment:?} is part parameter and part \
                             text, and a Ringway template parameter must be a whole segment: \
                             write \"/{}\" (the backend then checks the rest of the segment)",
                            suggested.join("/")
                        )
                    }
                    None => format!("Ringway cannot serve this path: {e}"),
                };
                self.problem(at, message);
                None
            }
        }
    }

    fn path_item_keys(&mut self, item: &Map<String, Value>, at: &str) {
        for key in item.keys() {
            let k = key.as_str();
            if METHODS.contains(&k) || PATH_ITEM_FIELDS.contains(&k) || k.starts_with("x-") {
                continue;
            }
            let lower = k.to_ascii_lowercase();
            let message = if METHODS.contains(&lower.as_str()) {
                format!("methods are written in lower case in OpenAPI: write {lower:?}")
            } else {
                format!(
                    "{k:?} is not an HTTP method or a path-item field: expected one of {}, or {}",
                    METHODS.join(", "),
                    PATH_ITEM_FIELDS.join(", ")
                )
            };
            self.problem(&join(at, k), message);
        }
    }

    /// A `parameters` list: each parameter checked, the valid ones returned.
    fn parameters(&mut self, value: Option<&'a Value>, at: &str) -> Vec<Param> {
        let Some(value) = value else {
            return Vec::new();
        };
        let Some(list) = value.as_array() else {
            self.problem(
                at,
                format!("parameters must be a list, not {}", kind(value)),
            );
            return Vec::new();
        };
        let mut params: Vec<Param> = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let listed_at = join(at, &i.to_string());
            let Some(param) = self.parameter(item, listed_at) else {
                continue;
            };
            if let Some(first) = params
                .iter()
                .find(|p| p.name == param.name && p.location == param.location)
            {
                let message = format!(
                    "{} parameter {:?} is also listed at {}: a name is listed once per location",
                    param.location, param.name, first.listed_at
                );
                self.problem(&param.listed_at, message);
                continue;
            }
            params.push(param);
        }
        params
    }

    fn parameter(&mut self, value: &'a Value, listed_at: String) -> Option<Param> {
        let (value, at) = follow(self.root, value, &listed_at).ok()?;
        let Some(p) = value.as_object() else {
            self.problem(
                &at,
                format!(
                    "a parameter is a mapping with name, in and schema (or content), not {}",
                    kind(value)
                ),
            );
            return None;
        };
        let name = match p.get("name") {
            Some(Value::String(name)) if !name.is_empty() => Some(name.clone()),
            _ => {
                self.problem(&join(&at, "name"), "a parameter needs a name (a string)");
                None
            }
        };
        let location = match p.get("in").and_then(Value::as_str) {
            Some(l) if LOCATIONS.contains(&l) => Some(l.to_string()),
            Some(other) => {
                let hint = match other {
                    "body" | "formData" => {
                        " (OpenAPI 3 writes a body as the operation's requestBody)"
                    }
                    _ => "",
                };
                self.problem(
                    &join(&at, "in"),
                    format!(
                        "in: {other:?} is not a parameter location: expected path, query, \
                         header or cookie{hint}"
                    ),
                );
                None
            }
            None => {
                self.problem(
                    &join(&at, "in"),
                    "a parameter needs in: path, query, header or cookie",
                );
                None
            }
        };
        if let (Some(location), Some(style)) = (&location, p.get("style")) {
            let allowed = styles(location);
            if !style.as_str().is_some_and(|s| allowed.contains(&s)) {
                let written = scalar_text(style).unwrap_or_else(|| kind(style).to_string());
                self.problem(
                    &join(&at, "style"),
                    format!(
                        "style {written:?} is not valid for a {location} parameter: expected {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        if let Some(explode) = p.get("explode").filter(|e| !e.is_boolean()) {
            self.problem(
                &join(&at, "explode"),
                format!("explode must be true or false, not {}", kind(explode)),
            );
        }
        match (p.get("schema"), p.get("content")) {
            (Some(_), Some(_)) => self.problem(
                &join(&at, "content"),
                "a parameter has a schema or a content, not both",
            ),
            (None, None) => self.problem(
                &at,
                "a parameter needs a schema (or a content with one media type)",
            ),
            (None, Some(content)) => {
                let entries = content.as_object().map_or(0, Map::len);
                if entries != 1 {
                    self.problem(
                        &join(&at, "content"),
                        format!(
                            "a parameter's content has exactly one media type (this one has \
                             {entries})"
                        ),
                    );
                }
            }
            (Some(_), None) => {}
        }
        if location.as_deref() == Some("path") && p.get("required") != Some(&Value::Bool(true)) {
            self.problem(
                &join(&at, "required"),
                format!(
                    "path parameter {:?} must have required: true (a path segment is always \
                     there)",
                    name.as_deref().unwrap_or("")
                ),
            );
        }
        Some(Param {
            name: name?,
            location: location?,
            listed_at,
        })
    }

    /// Each `{name}` of the template is a declared path parameter and each declared path
    /// parameter is in the template.
    fn path_parameters(&mut self, path: &str, names: &[String], params: &[&Param], at: &str) {
        for name in names {
            let declared = params
                .iter()
                .any(|p| p.location == "path" && &p.name == name);
            if !declared {
                self.problem(
                    at,
                    format!(
                        "path parameter {{{name}}} of {path:?} is not declared: add \
                         `{{name: {name}, in: path, required: true, schema: {{type: string}}}}` \
                         to this operation's or its path item's parameters"
                    ),
                );
            }
        }
        for p in params.iter().filter(|p| p.location == "path") {
            if !names.contains(&p.name) {
                self.problem(
                    &p.listed_at,
                    format!(
                        "path parameter {:?} is not in the path template {path:?}: add \
                         {{{}}} to the path or make it a query parameter",
                        p.name, p.name
                    ),
                );
            }
        }
    }
}

/// The path item's parameters and then the operation's; an operation's replaces the path
/// item's of the same name and location, in its place.
fn merge<'p>(shared: &'p [Param], own: &'p [Param]) -> Vec<&'p Param> {
    let mut out: Vec<&Param> = shared.iter().collect();
    for p in own {
        match out
            .iter()
            .position(|q| q.name == p.name && q.location == p.location)
        {
            Some(i) => out[i] = p,
            None => out.push(p),
        }
    }
    out
}

/// Ids for the operations: the operationId made a Ringway id, else `{method}-{path}`; a
/// clash gets `-2`, `-3`, ... so that every id is unique.
fn assign_ids(found: Vec<Found>) -> Vec<Operation> {
    let mut used: Vec<String> = found
        .iter()
        .filter_map(|f| f.operation_id.as_deref().map(refs::sanitize_id))
        .filter(|id| !id.is_empty())
        .collect();
    used.dedup();
    let mut taken: Vec<String> = Vec::with_capacity(found.len());
    found
        .into_iter()
        .map(|f| {
            let explicit = f
                .operation_id
                .as_deref()
                .map(refs::sanitize_id)
                .filter(|id| !id.is_empty());
            let base = explicit.clone().unwrap_or_else(|| {
                let path = refs::sanitize_id(&f.path);
                let path = if path.is_empty() { "root" } else { &path };
                format!("{}-{path}", f.method.to_ascii_lowercase())
            });
            let mut id = base.clone();
            let mut n = 2;
            while taken.contains(&id) || (explicit.is_none() && used.contains(&id)) {
                id = format!("{base}-{n}");
                n += 1;
            }
            taken.push(id.clone());
            Operation {
                id,
                method: f.method,
                path: f.path,
                summary: f.summary,
                deprecated: f.deprecated,
                tags: f.tags,
            }
        })
        .collect()
}

/// `{name}` for a segment with one parameter and other text (`{name}.json`).
fn whole_segment(segment: &str) -> Option<String> {
    let open = segment.find('{')?;
    let close = segment[open..].find('}')? + open;
    if open == 0 && close == segment.len() - 1 {
        return None;
    }
    Some(segment[open..=close].to_string())
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}
