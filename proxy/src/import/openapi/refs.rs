//! JSON pointers and local `$ref`s: following a chain of references to what it names (with a
//! cycle guard), and inlining every reference of a subtree for the portal, where recursion is
//! cut (never followed forever) and marked `x-circular`.

use serde_json::{Map, Value};

/// References followed in a row (`$ref` to a `$ref` ...) before giving up.
const MAX_CHAIN: usize = 32;

/// References open at once while inlining: past it, a reference is left as a marker, so that
/// a document whose schemas share deep subtrees cannot blow up the portal's answer.
const MAX_INLINE_DEPTH: usize = 12;

/// Keys whose values are data (examples, defaults, enumerations), never schemas, so a `$ref`
/// in them is a value and not a reference.
const DATA_KEYS: &[&str] = &[
    "example",
    "default",
    "enum",
    "const",
    "value",
    "externalValue",
];

/// Keys whose values map names (property names, status codes, media types, component
/// names) to objects: their keys are names, never keywords, so a property or response named
/// `default` is still a schema or a response.
const NAME_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "paths",
    "webhooks",
    "responses",
    "content",
    "headers",
    "encoding",
    "callbacks",
    "links",
    "variables",
    "schemas",
    "parameters",
    "examples",
    "requestBodies",
    "securitySchemes",
    "pathItems",
];

/// `token` escaped for a JSON pointer (`/` is `~1`, `~` is `~0`).
pub(super) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// `base` with one more token.
pub(super) fn join(base: &str, token: &str) -> String {
    format!("{base}/{}", escape(token))
}

/// The unescaped tokens of `pointer` (none for the whole document).
pub(super) fn pointer_tokens(pointer: &str) -> Vec<String> {
    match pointer.strip_prefix('/') {
        None => Vec::new(),
        Some(rest) => rest
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    }
}

/// `text` as a Ringway id: letters, digits, `-`, `_` and `.`; anything else becomes `-`
/// (runs of them one), and no `-` at either end.
pub(super) fn sanitize_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Whether `key`, in a mapping, holds data rather than OpenAPI or schema objects.
pub(super) fn is_data_key(key: &str, value: &Value) -> bool {
    DATA_KEYS.contains(&key) || key.starts_with("x-") || (key == "examples" && value.is_array())
}

/// Whether `key`'s value, when a mapping, maps names to objects.
pub(super) fn is_name_map(key: &str) -> bool {
    NAME_MAPS.contains(&key)
}

/// The pointer a local reference names (`#/components/schemas/Pet` names
/// `/components/schemas/Pet`), or why it cannot be followed.
pub(super) fn local_target(reference: &str) -> Result<String, String> {
    let Some(fragment) = reference.strip_prefix('#') else {
        return Err(format!(
            "external $ref {reference:?} is not supported: only references within the document \
             (\"#/components/...\") are followed; bundle the document first (for example with \
             `redocly bundle` or `swagger-cli bundle`)"
        ));
    };
    let fragment = percent_decode(fragment);
    if !fragment.is_empty() && !fragment.starts_with('/') {
        return Err(format!(
            "$ref {reference:?} is not a JSON pointer (write \"#/components/schemas/Name\")"
        ));
    }
    Ok(fragment)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The reference `value` holds, if it is a reference object.
pub(super) fn reference_of(value: &Value) -> Option<&Value> {
    value.as_object()?.get("$ref")
}

/// `value` (found at `pointer`) followed through `$ref`s to what they name, and that
/// target's pointer; the error says why a reference does not resolve.
pub(super) fn follow<'a>(
    root: &'a Value,
    mut value: &'a Value,
    pointer: &str,
) -> Result<(&'a Value, String), String> {
    let mut at = pointer.to_string();
    let mut seen: Vec<String> = Vec::new();
    while let Some(reference) = reference_of(value) {
        let Some(reference) = reference.as_str() else {
            return Err("$ref must be a string, such as \"#/components/schemas/Pet\"".to_string());
        };
        let target = local_target(reference)?;
        if seen.contains(&target) || seen.len() >= MAX_CHAIN {
            seen.push(target);
            return Err(format!(
                "$ref {reference:?} is circular: {} (a reference must end at an object)",
                seen.join(" -> ")
            ));
        }
        value = root
            .pointer(&target)
            .ok_or_else(|| missing(root, reference, &target))?;
        seen.push(target.clone());
        at = target;
    }
    Ok((value, at))
}

/// Why `target` names nothing: the first missing key, and what its parent has instead.
fn missing(root: &Value, reference: &str, target: &str) -> String {
    let mut at = root;
    let mut parent = String::new();
    for token in pointer_tokens(target) {
        let next = match at {
            Value::Object(map) => map.get(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(next) => {
                at = next;
                parent = join(&parent, &token);
            }
            None => {
                let place = if parent.is_empty() { "/" } else { &parent };
                let known = match at {
                    Value::Object(map) if !map.is_empty() => {
                        let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
                        names.truncate(12);
                        format!(" (known: {})", names.join(", "))
                    }
                    _ => String::new(),
                };
                return format!(
                    "$ref {reference:?} does not resolve: nothing named {token:?} at \
                     #{place}{known}"
                );
            }
        }
    }
    format!("$ref {reference:?} does not resolve")
}

/// `value` with every local reference replaced by what it names, recursively. A reference
/// already being inlined (recursion), or past [`MAX_INLINE_DEPTH`], stays a reference marked
/// `"x-circular": true`. Data (examples, defaults) is copied as it is.
pub(super) fn inline(root: &Value, value: &Value) -> Value {
    inline_in(root, value, &mut Vec::new())
}

fn inline_in(root: &Value, value: &Value, open: &mut Vec<String>) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let Ok(target) = local_target(reference) else {
                    return value.clone();
                };
                if open.contains(&target) || open.len() >= MAX_INLINE_DEPTH {
                    let mut marker = Map::new();
                    marker.insert("$ref".to_string(), Value::String(reference.clone()));
                    marker.insert("x-circular".to_string(), Value::Bool(true));
                    return Value::Object(marker);
                }
                let Some(named) = root.pointer(&target) else {
                    return value.clone();
                };
                open.push(target);
                let mut out = inline_in(root, named, open);
                open.pop();
                // Keywords beside a reference (3.1: a description, nullable) add to it.
                if let Value::Object(out) = &mut out {
                    for (key, sibling) in map.iter().filter(|(k, _)| k.as_str() != "$ref") {
                        out.insert(key.clone(), inline_member(root, key, sibling, open));
                    }
                }
                return out;
            }
            Value::Object(
                map.iter()
                    .map(|(key, v)| (key.clone(), inline_member(root, key, v, open)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| inline_in(root, v, open)).collect())
        }
        other => other.clone(),
    }
}

fn inline_member(root: &Value, key: &str, value: &Value, open: &mut Vec<String>) -> Value {
    if is_data_key(key, value) {
        return value.clone();
    }
    match value {
        Value::Object(named) if is_name_map(key) => Value::Object(
            named
                .iter()
                .map(|(name, v)| (name.clone(), inline_in(root, v, open)))
                .collect(),
        ),
        _ => inline_in(root, value, open),
    }
}
