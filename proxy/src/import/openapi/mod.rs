//! OpenAPI 3.0 and 3.1 documents as Ringway API operations: `ringway import openapi`, the
//! configuration's OpenAPI references and the developer portal all read documents here.
//!
//! A [`Document`] exists only for a document that passed every check: each operation has an
//! id Ringway accepts (unique in the document) and a path template `Template::parse`
//! accepts, every local `$ref` resolves, and every template parameter is declared. So the
//! consumers never handle a half-valid document; [`parse`] reports every problem at once,
//! each with its JSON pointer and, when it can be found, its line.
//!
//! It does not fetch external `$ref`s (`other.yaml#/...`, URLs): those are reported as
//! unsupported, to be bundled first. It does not validate schemas or examples as JSON Schema.

mod check;
mod fragment;
mod paths;
mod portal;
mod refs;
mod text;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use serde_json::Value;

/// A valid OpenAPI document and the operations it declares.
#[derive(Debug, Clone)]
pub struct Document {
    /// `info.title`.
    pub title: String,
    /// `info.version` (a YAML number is kept as it prints: `1.0`).
    pub version: String,
    /// `info.description`.
    pub description: Option<String>,
    /// The `openapi` field, such as `"3.0.3"`.
    pub openapi: String,
    /// The top-level `servers` URLs, server variables replaced by their defaults.
    pub servers: Vec<String>,
    /// Every operation under `paths`, in document order.
    pub operations: Vec<Operation>,
    /// Where the document came from, for the configuration fragment's header.
    source: String,
    /// The whole document, for the portal (which resolves `$ref`s from it).
    raw: Value,
}

/// One operation: a method on a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `operationId` (made a valid Ringway id), or `{method}-{path}` when absent, such as
    /// `get-pets-petId`. Unique in the document.
    pub id: String,
    /// Upper case: `GET`, `PUT`, ...
    pub method: String,
    /// The OpenAPI path template as written (`/pets/{petId}`); `Template::parse` accepts it.
    pub path: String,
    /// The operation's `summary`, else its path item's.
    pub summary: Option<String>,
    pub deprecated: bool,
    pub tags: Vec<String>,
}

/// One problem in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file (or other source) name.
    pub source: String,
    /// The 1-based line of the offending key, when it could be found.
    pub line: Option<usize>,
    /// A JSON pointer into the document, such as `/paths/~1pets~1{petId}/get/parameters/0/in`;
    /// empty for the whole document (syntax errors).
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.pointer.is_empty() {
            write!(f, "at {}: ", self.pointer)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Reads and checks the OpenAPI document at `path` (YAML or JSON, told apart by content).
pub fn load(path: &Path) -> Result<Document, Vec<Error>> {
    let source = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &source),
        Err(e) => Err(vec![Error {
            source,
            line: None,
            pointer: String::new(),
            message: format!("cannot read the file: {e}"),
        }]),
    }
}

/// Checks the OpenAPI document `text`; `source` names it in errors. Every error is reported,
/// not only the first.
pub fn parse(text: &str, source: &str) -> Result<Document, Vec<Error>> {
    let raw = match text::parse_value(text) {
        Ok(raw) => raw,
        Err((line, message)) => {
            return Err(vec![Error {
                source: source.to_string(),
                line,
                pointer: String::new(),
                message,
            }])
        }
    };
    match check::check(&raw) {
        Ok(checked) => Ok(Document {
            title: checked.title,
            version: checked.version,
            description: checked.description,
            openapi: checked.openapi,
            servers: checked.servers,
            operations: checked.operations,
            source: source.to_string(),
            raw,
        }),
        Err(problems) => Err(problems
            .into_iter()
            .map(|p| Error {
                source: source.to_string(),
                line: text::line_of(text, &p.pointer),
                pointer: p.pointer,
                message: p.message,
            })
            .collect()),
    }
}

impl Document {
    /// The operations for the developer portal, as a JSON array in document order, every
    /// `$ref` resolved (a recursive schema is cut where it recurs, as
    /// `{"$ref": "#/components/schemas/Node", "x-circular": true}`):
    ///
    /// ```json
    /// {"id", "method", "path", "summary", "description", "tags", "deprecated",
    ///  "parameters": [{"name", "in", "required", "description", "style", "explode",
    ///                  "schema", "example"}],
    ///  "request_body": null | {"required", "description",
    ///                          "content": {"MEDIA/TYPE": {"schema", "example"}}},
    ///  "responses": [{"status", "description", "content": {"MEDIA/TYPE": {...}}}]}
    /// ```
    ///
    /// An `example` is the document's own (`example`, else the first of `examples`), else
    /// the schema's, else one made up from the schema (types, formats, enums, defaults).
    pub fn portal_operations(&self) -> Value {
        portal::operations(&self.raw, &self.operations)
    }

    /// A commented Ringway configuration fragment (`backends:` and `apis:`) serving this
    /// document's operations under `api_path`, for `ringway import openapi FILE`. The backend
    /// is `backend` when given (a URL; its path becomes `backend_path`), else the first
    /// server's origin, else a placeholder marked `# TODO`. `api_name` names both the API and
    /// the backend; it should be a Ringway name (see [`Document::default_api_name`]).
    pub fn to_config_yaml(&self, api_name: &str, api_path: &str, backend: Option<&str>) -> String {
        fragment::config_yaml(self, api_name, api_path, backend)
    }

    /// A Ringway API name made from the title: `Swagger Petstore` gives `swagger-petstore`.
    pub fn default_api_name(&self) -> String {
        let name = refs::sanitize_id(&self.title.to_ascii_lowercase());
        if name.is_empty() {
            "api".to_string()
        } else {
            name
        }
    }
}
